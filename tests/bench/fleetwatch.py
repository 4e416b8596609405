#!/usr/bin/env python3
"""Run a command and measure what it costs, its background processes included
(certctl's ssh masters fork away from it with `ssh -f`; Ansible's persist for
ControlPersist). This script makes itself a child subreaper, so every process
the command leaves behind is reparented to it and reaped by it, and the CPU of
the whole tree lands in its children's rusage.

Prints one line of key=value pairs (and writes it to OUT_FILE):

    wall_s=W cpu_s=C machine_cpu_s=M maxrss_kib=R peak_fds=F fd_soft_limit=L
    leftover=K exit=RC

W: from the start until the command exited. C: user+system CPU of the command
and of every process it started, the ones that outlived it too, reaped at the
end. M: CPU seconds the whole machine was busy (/proc/stat: all but idle and
iowait) over W, whatever ran. R: the command's own peak resident set (its
largest waited-for process). F: the peak of the command's open file
descriptors, sampled every 20 ms (a lower bound). K: processes still alive
LINGER seconds after the command exited (stopped with SIGTERM, then counted).
The exit status is the command's (124 if it was killed at TIMEOUT).

Usage: fleetwatch.py OUT_FILE TIMEOUT_SECONDS LINGER_SECONDS CMD [ARG...]
(the command's own output goes to this script's stdout and stderr)
"""

import ctypes
import os
import resource
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
INTERVAL = 0.02
PR_SET_CHILD_SUBREAPER = 36


def busy_ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is inside user)
    return sum(fields[:8]) - fields[3] - fields[4]


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def children():
    """Our children now (the orphans reparented to us)."""
    out = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
    except OSError:
        pass
    return out


def cpu(ru):
    return ru.ru_utime + ru.ru_stime


def main(argv):
    if len(argv) < 5:
        sys.stderr.write(__doc__)
        return 64
    out_file, limit, linger = argv[1], float(argv[2]), float(argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.stderr.write("fleetwatch.py: prctl(PR_SET_CHILD_SUBREAPER) failed\n")
        return 70
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    b0 = busy_ticks()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        try:
            os.execvp(argv[4], argv[4:])
        finally:
            os._exit(127)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    total = 0.0
    peak_fds = 0
    rc = None
    maxrss = 0
    while rc is None:
        peak_fds = max(peak_fds, fds(pid))
        # reap whatever has ended: the command, or orphans of it
        while True:
            try:
                p, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                p = 0
            if p == 0:
                break
            total += cpu(ru)
            if p == pid:
                rc = os.waitstatus_to_exitcode(status)
                if rc < 0:
                    rc = 128 - rc
                maxrss = ru.ru_maxrss
                break
        if rc is None and time.monotonic() - t0 > limit:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            _, status, ru = os.wait4(pid, 0)
            total += cpu(ru)
            maxrss = ru.ru_maxrss
            rc = 124
        if rc is None:
            time.sleep(INTERVAL)
    wall = time.monotonic() - t0
    machine = (busy_ticks() - b0) / TICK
    # what the command left running: give it LINGER seconds, then TERM it
    deadline = time.monotonic() + linger
    leftover = 0
    while True:
        try:
            p, status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if p:
            total += cpu(ru)
            continue
        if time.monotonic() > deadline:
            left = children()
            leftover = len(left)
            for c in left:
                try:
                    os.kill(c, signal.SIGTERM)
                except OSError:
                    pass
            kill_at = time.monotonic() + 5
            while True:
                try:
                    p, _, ru = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if p:
                    total += cpu(ru)
                    continue
                if time.monotonic() > kill_at:
                    for c in children():
                        try:
                            os.kill(c, signal.SIGKILL)
                        except OSError:
                            pass
                time.sleep(INTERVAL)
            break
        time.sleep(INTERVAL)
    line = (
        f"wall_s={wall:.2f} cpu_s={total:.2f} machine_cpu_s={machine:.2f} "
        f"maxrss_kib={maxrss} peak_fds={peak_fds} fd_soft_limit={soft} "
        f"leftover={leftover} exit={rc}\n"
    )
    with open(out_file, "w") as f:
        f.write(line)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
