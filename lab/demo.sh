#!/usr/bin/env bash
# The main job on the lab, end to end:
#   start the lab (pebble, bind9, 3 edge nodes of sshd + nginx) → issue the
#   certificates through ACME DNS-01 → deploy them to the nodes (atomic swap,
#   nginx -t, reload, TLS verification) → print the fleet expiry report.
# Usage: bash lab/demo.sh        (as root; installs the Debian packages it needs)
# Running it again renews nothing (not due), changes no node, and reports again.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=${CERTCTL_LAB_DIR:-/tmp/certctl-lab}

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }

step "build certctl (release)"
cargo build --release --locked -p certctl
certctl=$PWD/target/release/certctl

step "start the lab"
running=$(cat "$LAB/nodes.count" 2>/dev/null || echo 0)
nodes=3
((running > nodes)) && nodes=$running   # never take nodes away from a running lab
bash lab/lab.sh up "$nodes"

# The demo's inventory: the lab's, with its own store and the first 3 nodes.
demo=$LAB/demo
mkdir -p "$demo"
python3 - "$LAB/certctl.toml" "$demo/certctl.toml" "$demo/store" <<'PY'
import re, sys
src, dst, store = sys.argv[1:]
text = open(src).read()
text = re.sub(r'^store = .*$', f'store = "{store}"', text, count=1, flags=re.M)
parts = text.split("[[node]]")
keep = [p for p in parts[1:] if re.search(r'name = "node[123]"\n', p)]
open(dst, "w").write(parts[0] + "".join("[[node]]" + p for p in keep))
PY
export CERTCTL_CONFIG=$demo/certctl.toml

step "certctl check"
"$certctl" check

step "certctl renew   (issues what is due: everything, on the first run)"
"$certctl" renew

step "certctl deploy  (canary first; stage, swap, nginx -t, reload, verify every SNI name)"
"$certctl" deploy

step "certctl list"
"$certctl" list

step "certctl report  (store, deployed and served, per node and SNI name)"
set +e
"$certctl" report --prometheus "$demo/certctl.prom"
status=$?
set -e
echo
echo "report exit status: $status (0 ok, 1 warning, 2 critical, 3 unknown)"
echo "Prometheus textfile: $demo/certctl.prom"
echo "inventory: $CERTCTL_CONFIG   lab: bash lab/lab.sh status | down"
exit $status
