#!/usr/bin/env python3
"""Check a `certctl report --json` of the fleet section against what is true
there: every named certificate is in the store, on exactly N nodes, each node
has its store version deployed and serves its leaf (same serial) with a
trusted chain for every SNI name, and nothing is due. Then no finding is true,
so the report must hold none, at any level. Prints what it found; exits 0 only
if all holds.

Usage: fleetreport.py REPORT_JSON N NAME...
"""

import json
import sys


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 64
    with open(argv[1]) as f:
        report = json.load(f)
    n = int(argv[2])
    names = argv[3:]
    bad = []
    certs = {c["name"]: c for c in report.get("certificates", [])}
    rows = served = 0
    for name in names:
        c = certs.get(name)
        if c is None:
            bad.append(f"{name}: not in the report")
            continue
        store = c.get("store") or {}
        if not store:
            bad.append(f"{name}: no store facts")
        if c.get("findings"):
            bad.append(f"{name}: findings {[x.get('kind') for x in c['findings']]}")
        if (store.get("renewal") or {}).get("due"):
            bad.append(f"{name}: reported due")
        nodes = c.get("nodes", [])
        if len(nodes) != n:
            bad.append(f"{name}: {len(nodes)} nodes, expected {n}")
        for node in nodes:
            rows += 1
            where = f"{name}@{node.get('node')}"
            if node.get("deployed_version") != store.get("version"):
                bad.append(f"{where}: deployed {node.get('deployed_version')}, store {store.get('version')}")
            if node.get("findings"):
                bad.append(f"{where}: findings {[x.get('kind') for x in node['findings']]}")
            for s in node.get("served", []):
                cert = s.get("certificate") or {}
                leaf = cert.get("leaf") or {}
                if s.get("findings"):
                    bad.append(f"{where} {s.get('sni')}: findings {[x.get('kind') for x in s['findings']]}")
                elif leaf.get("serial") != store.get("serial") or not cert.get("trusted"):
                    bad.append(f"{where} {s.get('sni')}: serves {leaf.get('serial')} trusted={cert.get('trusted')}, store {store.get('serial')}")
                else:
                    served += 1
    if report.get("severity") != "ok":
        bad.append(f"report severity {report.get('severity')}")
    print(f"rows={rows} served_ok={served} untrue_or_unexpected={len(bad)}")
    for b in bad[:10]:
        print(b)
    return 0 if not bad and rows == n * len(names) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
