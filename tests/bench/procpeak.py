#!/usr/bin/env python3
"""Run a command and watch the processes whose command line contains MARKER
(e.g. the ssh masters certctl starts: they fork into the background, so
/usr/bin/time and `ps --ppid` miss them). Samples /proc every 20 ms while the
command runs and until the marked processes are gone (at most 5 s after it),
then prints one line:

    procs=N peak_rss_sum_kib=K rss_hwm_sum_kib=H cpu_s=C exit=RC

N distinct marked processes were seen; K is the largest sum of their resident
sets at one sample; H sums each one's own peak (VmHWM), an upper bound on K; C
sums their user+system CPU seconds at the last sample each was seen. A process
that lives for less than one sample interval can be missed.

Usage: procpeak.py MARKER TIMEOUT_SECONDS OUT_FILE CMD [ARG...]
(the command's own output goes to this script's stdout and stderr)
"""

import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
INTERVAL = 0.02
LINGER = 5.0


def marked(marker):
    """pid -> (rss_kib, hwm_kib, cpu_s) of the marked processes now."""
    out = {}
    me = str(os.getpid())  # our own command line holds the marker too
    for d in os.listdir("/proc"):
        if not d.isdigit() or d == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker not in f.read():
                    continue
            rss = hwm = 0
            with open(f"/proc/{d}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm = int(line.split()[1])
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            out[int(d)] = (rss, hwm, cpu)
        except (OSError, IndexError, ValueError):
            continue
    return out


def main(argv):
    if len(argv) < 5:
        sys.stderr.write(__doc__)
        return 64
    marker = argv[1].encode()
    limit = float(argv[2])
    out_file = argv[3]
    t0 = time.monotonic()
    p = subprocess.Popen(argv[4:])
    seen = {}
    peak_sum = 0
    rc = None
    gone_at = None
    while True:
        now = marked(marker)
        for pid, v in now.items():
            seen[pid] = v
        peak_sum = max(peak_sum, sum(v[0] for v in now.values()))
        if rc is None:
            rc = p.poll()
            if rc is None and time.monotonic() - t0 > limit:
                p.kill()
                rc = p.wait()
            if rc is not None:
                gone_at = time.monotonic()
        if rc is not None and (not now or time.monotonic() - gone_at > LINGER):
            break
        time.sleep(INTERVAL)
    with open(out_file, "w") as f:
        f.write(
            f"procs={len(seen)} peak_rss_sum_kib={peak_sum} "
            f"rss_hwm_sum_kib={sum(v[1] for v in seen.values())} "
            f"cpu_s={sum(v[2] for v in seen.values()):.2f} exit={rc}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
