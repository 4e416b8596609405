#!/usr/bin/env python3
"""Run a command (a certctl run) and watch, every 50 ms, what it costs the
controller and the lab's nodes:

- certctl's open file descriptors (/proc/PID/fd) against its soft limit;
- certctl's resident set (VmRSS; VmHWM at the last sample);
- the ssh client processes (certctl's masters);
- per node, the SSH connections its sshd holds (children of the node's
  listening sshd, pre-authentication ones included: what MaxStartups counts)
  and the sessions running on them (processes three levels below the
  listening sshd that are not sshd: what MaxSessions bounds per connection).

Prints one line of key=value pairs (and writes it to OUT_FILE):

    peak_fds=N fd_soft_limit=L peak_rss_kib=K peak_ssh_procs=P
    peak_conns_per_node=C peak_sessions_per_node=S peak_conns_total=T
    max_startups=M max_sessions=X samples=Z exit=RC

A process that lives for less than one sample can be missed, so the peaks
are lower bounds.

Usage: loadwatch.py LAB_DIR NODES TIMEOUT_SECONDS OUT_FILE CMD [ARG...]
(the command's own output goes to this script's stdout and stderr)
"""

import os
import subprocess
import sys
import time

INTERVAL = 0.05


def stat(pid):
    """(ppid, comm) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1 : s.rindex(")")]
    ppid = int(s[s.rindex(")") + 2 :].split()[1])
    return ppid, comm


def processes():
    """pid -> (ppid, comm) for every process now."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(d)
            if st:
                out[int(d)] = st
    return out


def children(procs):
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    return kids


def sshd_setting(lab, key, default):
    try:
        with open(os.path.join(lab, "nodes", "node1", "sshd_config")) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].lower() == key.lower():
                    return parts[1]
    except OSError:
        pass
    return default


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    lab, nodes, timeout, out_file = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    cmd = sys.argv[5:]
    masters = []
    for i in range(1, nodes + 1):
        with open(os.path.join(lab, "nodes", f"node{i}", "sshd.pid")) as f:
            masters.append(int(f.read().split()[0]))
    child = subprocess.Popen(cmd)
    deadline = time.monotonic() + timeout
    peak = dict(fds=0, rss=0, hwm=0, ssh=0, conns=0, sessions=0, total=0)
    limit = "?"
    samples = 0
    certctl = None
    while child.poll() is None and time.monotonic() < deadline:
        procs = children_of = None
        procs = processes()
        children_of = children(procs)
        if certctl is None or certctl not in procs:
            certctl = next(
                (p for p, (_, c) in procs.items() if c == "certctl" and is_descendant(p, child.pid, procs)),
                None,
            )
        if certctl is not None:
            try:
                peak["fds"] = max(peak["fds"], len(os.listdir(f"/proc/{certctl}/fd")))
                with open(f"/proc/{certctl}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            peak["rss"] = max(peak["rss"], int(line.split()[1]))
                        elif line.startswith("VmHWM:"):
                            peak["hwm"] = max(peak["hwm"], int(line.split()[1]))
                if limit == "?":
                    with open(f"/proc/{certctl}/limits") as f:
                        for line in f:
                            if line.startswith("Max open files"):
                                limit = line.split()[3]
            except OSError:
                pass
        peak["ssh"] = max(peak["ssh"], sum(1 for _, c in procs.values() if c == "ssh"))
        total = 0
        for m in masters:
            conns = children_of.get(m, [])
            total += len(conns)
            peak["conns"] = max(peak["conns"], len(conns))
            sessions = 0
            for c in conns:
                for net in children_of.get(c, []):
                    sessions += sum(1 for s in children_of.get(net, []) if procs[s][1] != "sshd")
            peak["sessions"] = max(peak["sessions"], sessions)
        peak["total"] = max(peak["total"], total)
        samples += 1
        time.sleep(INTERVAL)
    if child.poll() is None:
        child.kill()
    rc = child.wait()
    line = (
        f"peak_fds={peak['fds']} fd_soft_limit={limit} peak_rss_kib={max(peak['rss'], peak['hwm'])} "
        f"peak_ssh_procs={peak['ssh']} peak_conns_per_node={peak['conns']} "
        f"peak_sessions_per_node={peak['sessions']} peak_conns_total={peak['total']} "
        f"max_startups={sshd_setting(lab, 'MaxStartups', '10:30:100')} "
        f"max_sessions={sshd_setting(lab, 'MaxSessions', '10')} samples={samples} exit={rc}"
    )
    with open(out_file, "w") as f:
        f.write(line + "\n")
    print(line, file=sys.stderr)
    sys.exit(rc)


def is_descendant(pid, ancestor, procs):
    seen = 0
    while pid in procs and seen < 64:
        if pid == ancestor:
            return True
        pid = procs[pid][0]
        seen += 1
    return pid == ancestor


if __name__ == "__main__":
    main()
