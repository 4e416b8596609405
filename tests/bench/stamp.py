#!/usr/bin/env python3
"""Run a command and print its output lines (stdout and stderr merged) each
prefixed with the milliseconds elapsed since the command started, then a last
line with the exit status. certctl logs without timestamps; this shows where
its wall time goes.

Usage: stamp.py TIMEOUT_SECONDS CMD [ARG...]
"""

import subprocess
import sys
import time


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 64
    limit = float(argv[1])
    t0 = time.monotonic()
    p = subprocess.Popen(argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in p.stdout:
            ms = (time.monotonic() - t0) * 1000
            sys.stdout.write(f"{ms:9.1f} ms  {line}")
            if ms > limit * 1000:
                p.kill()
                break
        rc = p.wait(timeout=max(1.0, limit - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    ms = (time.monotonic() - t0) * 1000
    sys.stdout.write(f"{ms:9.1f} ms  (exit status {rc})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
