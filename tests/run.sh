#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a warm one:
#   static checks (fmt, clippy -D warnings, docs), unit and API tests,
#   integration tests against the real lab (pebble, bind9, sshd + nginx
#   nodes on 127.0.0.0/8), and a short run of every fuzz target.
# Usage: bash tests/run.sh            (CERTCTL_LAB_NODES=N to size the lab; default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CERTCTL_LAB_NODES=${CERTCTL_LAB_NODES:-5}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n=== %s\n' "$*"; }

step "packages"
need=()
for p in pebble bind9 bind9-dnsutils nginx-light openssh-server openssh-client openssl prometheus time certbot python3-certbot-dns-rfc2136 etcd-server etcd-client protobuf-compiler; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    # Debian's maintainer scripts must not start the packaged daemons on our ports.
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi
# The HTML report's browser test (tests/tests/html.rs) loads the page in headless Chromium.
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "ok installed"; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "ok"

step "rustfmt"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked

step "alert rules (promtool)"
# contrib/prometheus/: the rules certctl ships, and their unit tests.
(cd contrib/prometheus && promtool check rules certctl.rules.yml && promtool test rules certctl.rules.test.yml)

step "lab"
lab_dir=${CERTCTL_LAB_DIR:-/tmp/certctl-lab}
running=$(cat "$lab_dir/nodes.count" 2>/dev/null || echo 0)
# Read the status whole first: under pipefail, grep -q closing the pipe early
# would fail the pipeline and make a running lab look stopped (and stop it).
lab_status=$(bash lab/lab.sh status 2>/dev/null || true)
if grep -q "pebble.*running" <<<"$lab_status"; then
    was_up=1
else
    was_up=0
fi
# Never shrink a lab somebody else is using; stop it only if we started it.
((running > CERTCTL_LAB_NODES)) && CERTCTL_LAB_NODES=$running
bash lab/lab.sh up "$CERTCTL_LAB_NODES"
if ((was_up == 0)) && [[ -z ${CERTCTL_KEEP_LAB:-} ]]; then
    trap 'bash "$root/lab/lab.sh" down >/dev/null 2>&1 || true' EXIT
fi
# The HA store's tests (tests/tests/ha.rs, and the etcd store's own tests)
# share one real 3-member etcd cluster; `lab.sh down` stops it too.
bash lab/lab.sh etcd up
export CERTCTL_TEST_ETCD=${CERTCTL_TEST_ETCD:-$(bash lab/lab.sh etcd endpoints)}

step "tests (unit, API, lab)"
test_log=$(mktemp)
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$test_log"
test_status=${PIPESTATUS[0]}
set -e
passed=$(grep -E '^test result:' "$test_log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$test_log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
rm -f "$test_log"
((test_status == 0)) || { echo "tests: ${passed:-0} passed, ${failed:-?} failed"; exit "$test_status"; }

step "docs"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet

step "debian package"
bash tests/package.sh

if [[ -x fuzz/smoke.sh ]]; then
    step "fuzz smoke"
    bash fuzz/smoke.sh
fi

step "done"
echo "tests: ${passed} passed, ${failed} failed"
