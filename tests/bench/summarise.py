#!/usr/bin/env python3
"""Summarise the per-run CSV of a benchmark section into one Markdown table.

Usage: summarise.py SECTION CSV OUT_MD NOTES_FILE [N=VV_LOG...]
  (SECTION: issue, deploy, scan, list, plan, load, fleet, store; the N=VV_LOG pairs, fleet
  only, are `certctl -vv deploy` logs to N nodes for the per-phase breakdown)

Reads rows `section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib`, prints the
table (medians over successful runs), the ratios of certctl to each peer and
the targets beside the measured figures, and writes the same text to OUT_MD.
Targets are printed, never asserted: the exit status is 0 whenever the input
could be read.
"""

import csv
import statistics
import sys

TOOLS = ["certctl", "lego", "certbot"]
CASES = ["one-name", "five-names"]

DEPLOY_TOOLS = ["certctl", "certctl-sntrup", "runbook", "ansible"]
DEPLOY_CASES = ["5-nodes", "20-nodes"]


def load(path, section):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["section"] == section:
                rows.append(r)
    return rows


def med(values):
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    return "–" if v is None else f"{v:.{digits}f}"


def ratio(num, den):
    if num is None or den is None or den == 0:
        return "–"
    return f"{num / den:.1f}×"


def summarise(rows, tools=TOOLS, cases=CASES):
    """(tool, case) -> dict(ok, n, wall, cpu, rss_mib)."""
    out = {}
    for tool in tools:
        for case in cases:
            rs = [r for r in rows if r["tool"] == tool and r["case"] == case]
            if not rs:
                continue
            ok = [r for r in rs if r["ok"] == "1"]
            out[(tool, case)] = {
                "ok": len(ok),
                "n": len(rs),
                "wall": med([float(r["wall_s"]) for r in ok]),
                "cpu": med([float(r["cpu_s"]) for r in ok]),
                "rss": med([int(r["maxrss_kib"]) / 1024 for r in ok]),
            }
    return out


def target_line(label, value, limit, unit, fmt_digits=2, strict=False, at_least=False):
    if value is None:
        verdict = "no successful run"
    elif at_least:
        verdict = "met" if value >= limit else "NOT met"
    elif value < limit or (value == limit and not strict):
        verdict = "met"
    else:
        verdict = "NOT met"
    u = f" {unit}" if unit else ""
    op = "≥" if at_least else "<" if strict else "≤"
    return f"| {label} | {op} {limit:g}{u} | {fmt(value, fmt_digits)}{u} | {verdict} |"


def share(s, a, b):
    """Wall of a ÷ wall of b (keys into the summary), or None."""
    x, y = s.get(a, {}).get("wall"), s.get(b, {}).get("wall")
    if x is None or not y:
        return None
    return x / y


def figures_table(s):
    lines = ["| tool | case | runs ok | median wall s | median CPU s | median peak RSS MiB |"]
    lines.append("|---|---|---|---|---|---|")
    for (tool, case), v in s.items():
        lines.append(
            f"| {tool} | {case} | {v['ok']}/{v['n']} | {fmt(v['wall'])} | "
            f"{fmt(v['cpu'])} | {fmt(v['rss'], 1)} |"
        )
    return lines


def ratios_table(s, cases, peers):
    lines = ["Ratios (peer ÷ certctl; above 1× means certctl is faster or smaller):", ""]
    lines.append("| case | vs | wall | CPU | peak RSS |")
    lines.append("|---|---|---|---|---|")
    for case in cases:
        c = s.get(("certctl", case))
        if c is None:
            continue
        for peer in peers:
            p = s.get((peer, case))
            if p is None:
                continue
            lines.append(
                f"| {case} | {peer} | {ratio(p['wall'], c['wall'])} | "
                f"{ratio(p['cpu'], c['cpu'])} | {ratio(p['rss'], c['rss'])} |"
            )
    return lines


def with_notes(lines, notes):
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def deploy_report(rows, notes):
    s = summarise(rows, DEPLOY_TOOLS, DEPLOY_CASES)
    lines = ["## Deploy (one new certificate version to 5 and 20 lab nodes, over SSH)", ""]
    lines += figures_table(s)
    lines += [""] + ratios_table(s, DEPLOY_CASES, ["runbook", "ansible"])
    c20 = ("certctl", "20-nodes")
    rss = max(
        [s[k]["rss"] for k in [("certctl", c) for c in DEPLOY_CASES] if k in s and s[k]["rss"] is not None],
        default=None,
    )
    lines += ["", "Targets (printed, not asserted):", ""]
    lines.append("| target | limit | measured | |")
    lines.append("|---|---|---|---|")
    lines.append(target_line("certctl 20 nodes, median wall", s.get(c20, {}).get("wall"), 2.0, "s"))
    lines.append(
        target_line(
            "certctl-sntrup 20 nodes (ssh's default key exchange), median wall",
            s.get(("certctl-sntrup", "20-nodes"), {}).get("wall"),
            2.0,
            "s",
        )
    )
    lines.append(target_line("certctl 20 nodes, wall ÷ Ansible's", share(s, c20, ("ansible", "20-nodes")), 0.2, "", 3))
    lines.append(
        target_line("certctl 20 nodes, wall ÷ runbook's", share(s, c20, ("runbook", "20-nodes")), 1, "", 3, strict=True)
    )
    lines.append(target_line("certctl's own peak RSS (worse case)", rss, 50, "MiB", 1))
    return with_notes(lines, notes)


def issue_report(rows, notes):
    s = summarise(rows)
    lines = ["## Issuance (ACME DNS-01 against the lab's pebble + bind9)", ""]
    lines.append("| tool | case | runs ok | median wall s | median CPU s | median peak RSS MiB |")
    lines.append("|---|---|---|---|---|---|")
    most = max((v["n"] for v in s.values()), default=0)
    for (tool, case), v in s.items():
        fewer = f" (only {v['n']} run{'s' if v['n'] != 1 else ''}, see notes)" if v["n"] < most else ""
        lines.append(
            f"| {tool} | {case} | {v['ok']}/{v['n']}{fewer} | {fmt(v['wall'])} | "
            f"{fmt(v['cpu'])} | {fmt(v['rss'], 1)} |"
        )
    lines += ["", "Ratios (peer ÷ certctl; above 1× means certctl is faster or smaller):", ""]
    lines.append("| case | vs | wall | CPU | peak RSS |")
    lines.append("|---|---|---|---|---|")
    for case in CASES:
        c = s.get(("certctl", case))
        if c is None:
            continue
        for peer in ["lego", "certbot"]:
            p = s.get((peer, case))
            if p is None:
                continue
            lines.append(
                f"| {case} | {peer} | {ratio(p['wall'], c['wall'])} | "
                f"{ratio(p['cpu'], c['cpu'])} | {ratio(p['rss'], c['rss'])} |"
            )
    one = s.get(("certctl", "one-name"), {})
    five = s.get(("certctl", "five-names"), {})
    lego_one = s.get(("lego", "one-name"), {})
    lines += ["", "Targets (printed, not asserted):", ""]
    lines.append("| target | limit | measured | |")
    lines.append("|---|---|---|---|")
    lines.append(target_line("certctl one name, median wall", one.get("wall"), 0.3, "s"))
    share = None
    if one.get("wall") is not None and lego_one.get("wall"):
        share = one["wall"] / lego_one["wall"]
    lines.append(target_line("certctl one name, wall ÷ lego's", share, 0.2, "", 3))
    lines.append(target_line("certctl five names, median wall", five.get("wall"), 1.0, "s"))
    rss = max([v for v in (one.get("rss"), five.get("rss")) if v is not None], default=None)
    lines.append(target_line("certctl peak RSS (worse case)", rss, 30, "MiB", 1))
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def scan_report(rows, notes):
    import os

    scale = int(os.environ.get("SCALE_OPENSSL", "1"))
    tools = sorted({r["tool"] for r in rows}, key=["certctl", "openssl-loop", "blackbox"].index)
    s = {}
    for tool in tools:
        cases = sorted({r["case"] for r in rows if r["tool"] == tool})
        s.update(summarise(rows, [tool], cases))
    full = None
    for (tool, case), v in list(s.items()):
        if tool == "openssl-loop" and scale != 1:
            measured = int(case.split("-")[0])
            full = f"{measured * scale}-endpoints"
            s[("openssl-loop ×%d (extrapolated)" % scale, full)] = {
                **v,
                "wall": None if v["wall"] is None else v["wall"] * scale,
                "cpu": None if v["cpu"] is None else v["cpu"] * scale,
            }
    lines = ["## Scan (TLS endpoints served by the lab's nginx nodes)", ""]
    lines += figures_table(s)
    c = next((v for (t, _), v in s.items() if t == "certctl"), {})
    o = next((v for (t, _), v in s.items() if t.startswith("openssl-loop ×")), None)
    if o is None:
        o = next((v for (t, _), v in s.items() if t == "openssl-loop"), {})
    b = next((v for (t, _), v in s.items() if t == "blackbox"), {})
    lines += ["", "Ratios (peer ÷ certctl, same number of endpoints; above 1× means certctl is faster or smaller):", ""]
    lines.append("| vs | wall | CPU | peak RSS |")
    lines.append("|---|---|---|---|")
    for name, p in [("openssl loop (extrapolated)" if scale != 1 else "openssl loop", o), ("blackbox exporter", b)]:
        if p and c:
            lines.append(
                f"| {name} | {ratio(p.get('wall'), c.get('wall'))} | {ratio(p.get('cpu'), c.get('cpu'))} | "
                f"{ratio(p.get('rss'), c.get('rss'))} |"
            )
    speedup = None
    if c.get("wall") and o and o.get("wall") is not None:
        speedup = o["wall"] / c["wall"]
    lines += ["", "Targets (printed, not asserted):", ""]
    lines.append("| target | limit | measured | |")
    lines.append("|---|---|---|---|")
    lines.append(target_line("certctl 1,000 endpoints, median wall", c.get("wall"), 2.0, "s"))
    lines.append(target_line("openssl loop's wall ÷ certctl's", speedup, 20, "×", 1, at_least=True))
    return with_notes(lines, notes)


def list_report(rows, notes):
    cases = sorted({r["case"] for r in rows}, key=lambda c: (not c.startswith("list"), c))
    s = summarise(rows, ["certctl"], cases)
    lines = ["## List and inspect (10,000 certificates)", ""]
    lines += figures_table(s)
    lines += ["", "Targets (printed, not asserted):", ""]
    lines.append("| target | limit | measured | |")
    lines.append("|---|---|---|---|")
    for (tool, case), v in s.items():
        what = "certctl list" if case.startswith("list") else "certctl inspect"
        lines.append(target_line(f"{what}, median wall", v["wall"], 1.0, "s"))
        lines.append(target_line(f"{what}, peak RSS", v["rss"], 100, "MiB", 1))
    return with_notes(lines, notes)


def plan_report(rows, notes):
    def key(c):
        what, n = c.rsplit("-", 1)
        return (int(n), what != "list")

    cases = sorted({r["case"] for r in rows}, key=key)
    s = summarise(rows, ["certctl"], cases)
    lines = ["## Planning: renew --dry-run beside list (10,000 / 40,000 / 100,000 certificates)", ""]
    lines += figures_table(s)
    lines += ["", "Targets (printed, not asserted):", ""]
    lines.append("| target | limit | measured | |")
    lines.append("|---|---|---|---|")
    v = s.get(("certctl", "renew-dry-run-40000"), {})
    lines.append(target_line("certctl renew --dry-run, 40,000 certificates, median wall", v.get("wall"), 2.0, "s"))
    return with_notes(lines, notes)


def load_report(rows, notes):
    cases = sorted({r["case"] for r in rows})
    s = summarise(rows, ["certctl"], cases)
    lines = ["## Load (one certctl run: 200 certificates renewed and deployed to 20 nodes)", ""]
    lines += figures_table(s)
    watched = []
    for n in notes:
        if n.startswith("run "):
            kv = dict(w.split("=", 1) for w in n.split()[2:] if "=" in w)
            watched.append((n.split()[1], kv))
    lines += ["", "Watched during each run (tests/bench/loadwatch.py, every 50 ms):", ""]
    lines.append(
        "| run | renewed | deployed | served (checked by Python) | certctl peak fds / soft limit | "
        "certctl peak RSS MiB | ssh processes | SSH connections per node / MaxStartups | "
        "sessions per node / MaxSessions |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for run, kv in watched:
        g = lambda k: kv.get(k, "?")  # noqa: E731
        rss = g("peak_rss_kib")
        rss = f"{int(rss) / 1024:.1f}" if rss.isdigit() else "?"
        lines.append(
            f"| {run} | {g('renewed')} | {g('deployed')} | {g('served_ok')} | {g('peak_fds')} / {g('fd_soft_limit')} | "
            f"{rss} | {g('peak_ssh_procs')} | {g('peak_conns_per_node')} / {g('max_startups')} | "
            f"{g('peak_sessions_per_node')} / {g('max_sessions')} |"
        )

    def worst(key):
        vals = [int(kv[key]) for _, kv in watched if kv.get(key, "").isdigit()]
        return max(vals) if vals else None

    def first_int(key, default):
        for _, kv in watched:
            v = kv.get(key, "").split(":")[0]
            if v.isdigit():
                return int(v)
        return default

    rss = worst("peak_rss_kib")
    lines += ["", "Targets (printed, not asserted):", ""]
    lines.append("| target | limit | measured | |")
    lines.append("|---|---|---|---|")
    lines.append(target_line("certctl's open fds, worst run (1024 is the usual default soft limit)", worst("peak_fds"), 1024, "", 0))
    lines.append(
        target_line(
            "SSH connections at once on one node (sshd's MaxStartups starts refusing at its first number)",
            worst("peak_conns_per_node"),
            first_int("max_startups", 10),
            "",
            0,
            strict=True,
        )
    )
    lines.append(
        target_line(
            "sessions at once on one node (MaxSessions)", worst("peak_sessions_per_node"), first_int("max_sessions", 10), "", 0
        )
    )
    lines.append(target_line("certctl's peak RSS, worst run", None if rss is None else rss / 1024, 100, "MiB", 1))
    return with_notes(lines, notes)


REPORTS = {
    "issue": issue_report,
    "deploy": deploy_report,
    "scan": scan_report,
    "list": list_report,
    "plan": plan_report,
    "load": load_report,
    "fleet": None,  # fleet_report, below: it also takes the -vv logs
}


FLEET_CASES = ["deploy-1", "deploy-2", "report", "run-idle"]
FLEET_TOOLS = ["certctl", "runbook", "ansible"]
PHASES = ["connect", "session", "stage", "validate", "reload", "verify", "node"]
UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}


def duration_ms(text):
    """A Rust Duration's Debug form (850ns, 12.5µs, 3.2ms, 1.5s) in ms, or None."""
    import re

    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def phases_of(log_path):
    """node -> {phase: ms} from a `certctl -vv deploy` log: the `connected`
    line of each node's connect span and the one `phases` line per node."""
    import re

    node_re = re.compile(r"\bnode=([A-Za-z0-9_.-]+)")
    field_re = re.compile(r"\b(\w+)=([0-9.]+(?:ns|µs|us|ms|s))\b")
    out = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            kind = "phases" if " phases" in line else "connected" if " connected" in line else None
            if kind is None or "connected and probed" in line:
                continue
            nodes = node_re.findall(line)
            if not nodes:
                continue
            fields = {k: duration_ms(v) for k, v in field_re.findall(line)}
            d = out.setdefault(nodes[-1], {})
            if kind == "connected" and fields.get("elapsed") is not None:
                d["connect"] = fields["elapsed"]
            elif kind == "phases":
                for k in ("script", "stage", "validate", "reload", "verify"):
                    if fields.get(k) is not None:
                        d[k] = fields[k]
    for d in out.values():
        if all(k in d for k in ("script", "stage", "validate", "reload")):
            # what the script's own clock does not see: the ssh session over the
            # master, the shell's start, the upload, prune
            d["session"] = max(0.0, d["script"] - d["stage"] - d["validate"] - d["reload"])
        if all(k in d for k in ("connect", "script", "verify")):
            d["node"] = d["connect"] + d["script"] + d["verify"]
    return {k: v for k, v in out.items() if "script" in v}


def pct(values, q):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def fleet_phase_lines(phase_logs):
    lines = [
        "Per node, one `certctl -vv deploy www` per size (ms; median / 90th percentile over the nodes):",
        "",
        "| nodes | nodes timed | " + " | ".join(PHASES) + " |",
        "|---|---|" + "---|" * len(PHASES),
    ]
    for n, path in phase_logs:
        try:
            per = phases_of(path)
        except OSError:
            continue
        cells = []
        for p in PHASES:
            vals = [d[p] for d in per.values() if p in d]
            m, q = pct(vals, 0.5), pct(vals, 0.9)
            cells.append("–" if m is None else f"{m:.0f} / {q:.0f}")
        lines.append(f"| {n} | {len(per)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "connect: the ssh master's start to authenticated (certctl's `connected`); session: the "
        "node script as certctl waited for it minus what the node's clock saw (ssh session over the "
        "master, shell start, upload, prune); stage: reading links, staging, swapping (node clock); "
        "validate, reload: the node's commands (node clock); verify: TLS probes until the new leaf "
        "shows 3 rounds in a row; node: connect + script + verify.",
    ]
    return lines


def fleet_report(rows, notes, phase_logs=()):
    groups = {}
    for r in rows:
        groups.setdefault((r["tool"], r["case"], int(r["nodes"])), []).append(r)

    def order(k):
        tool, case, n = k
        return (FLEET_CASES.index(case) if case in FLEET_CASES else 9, n, FLEET_TOOLS.index(tool) if tool in FLEET_TOOLS else 9)

    lines = ["## Fleet: 5 to 100 nodes", ""]
    lines.append(
        "| case | nodes | tool | runs ok | wall s | CPU s (incl. ssh) | CPU ms/node | machine busy CPU s | peak RSS MiB | peak fds |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for k in sorted(groups, key=order):
        tool, case, n = k
        rs = groups[k]
        ok = [r for r in rs if r["ok"] == "1"]
        v = {
            "ok": len(ok),
            "n": len(rs),
            "wall": med([float(r["wall_s"]) for r in ok]),
            "cpu": med([float(r["cpu_s"]) for r in ok]),
            "machine": med([float(r["machine_cpu_s"]) for r in ok]),
            "rss": med([int(r["maxrss_kib"]) / 1024 for r in ok]),
            "fds": med([int(r["peak_fds"]) for r in ok]),
        }
        summary[k] = v
        per = None if v["cpu"] is None else v["cpu"] * 1000 / n
        lines.append(
            f"| {case} | {n} | {tool} | {v['ok']}/{v['n']} | {fmt(v['wall'])} | {fmt(v['cpu'])} | "
            f"{fmt(per, 1)} | {fmt(v['machine'])} | {fmt(v['rss'], 1)} | {fmt(v['fds'], 0)} |"
        )
    sizes = sorted({k[2] for k in summary if k[0] == "certctl"})
    big = 100 if 100 in sizes else (sizes[-1] if sizes else 100)
    lines += ["", "Targets (printed, not asserted):", ""]
    lines.append("| target | limit | measured | |")
    lines.append("|---|---|---|---|")
    for case in ("deploy-1", "deploy-2"):
        v = summary.get(("certctl", case, big), {})
        lines.append(target_line(f"certctl {case}, {big} nodes, verified, median wall", v.get("wall"), 10, "s"))
    v = summary.get(("certctl", "report", big), {})
    lines.append(target_line(f"certctl report, {big} nodes × 2 certificates, no untrue finding, median wall", v.get("wall"), 3, "s"))
    for n in sizes:
        for case in ("deploy-1", "deploy-2"):
            v = summary.get(("certctl", case, n), {})
            per = None if v.get("cpu") is None else v["cpu"] * 1000 / n
            lines.append(target_line(f"certctl {case}, {n} nodes, CPU per node (ssh included)", per, 20, "ms", 1))
    if big != 100:
        lines += ["", f"(100 nodes not measured in this run; targets shown at {big}.)"]
    if phase_logs:
        lines += [""] + fleet_phase_lines(phase_logs)
    return with_notes(lines, notes)


def store_report(rows, notes):
    cases = sorted({r["case"] for r in rows})
    s = summarise(rows, ["certctl-dir", "certctl-etcd"], cases)
    lines = ["## Store backends (the etcd store beside the directory store)", ""]
    lines += figures_table(s)
    lines += ["", "Ratios (etcd ÷ directory; above 1× means the etcd store is slower or larger; no target):", ""]
    lines.append("| case | wall | CPU | peak RSS |")
    lines.append("|---|---|---|---|")
    for case in cases:
        d, e = s.get(("certctl-dir", case)), s.get(("certctl-etcd", case))
        if d is None or e is None:
            continue
        lines.append(
            f"| {case} | {ratio(e['wall'], d['wall'])} | {ratio(e['cpu'], d['cpu'])} | {ratio(e['rss'], d['rss'])} |"
        )
    return with_notes(lines, notes)


REPORTS["store"] = store_report


def main(argv):
    if len(argv) < 5 or argv[1] not in REPORTS or (len(argv) > 5 and argv[1] != "fleet"):
        sys.stderr.write(__doc__)
        return 64
    section, csv_path, out_md, notes_path = argv[1:5]
    with open(notes_path) as f:
        notes = [l.rstrip("\n") for l in f if l.strip()]
    if section == "fleet":
        logs = [(int(a.split("=", 1)[0]), a.split("=", 1)[1]) for a in argv[5:]]
        text = fleet_report(load(csv_path, section), notes, logs)
    else:
        text = REPORTS[section](load(csv_path, section), notes)
    sys.stdout.write(text)
    with open(out_md, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
