#!/usr/bin/env bash
# Runs every fuzz target for a few seconds, starting from its committed seeds.
#   bash fuzz/smoke.sh                   # 10 s per target
#   FUZZ_SECONDS=300 bash fuzz/smoke.sh  # longer
#   bash fuzz/smoke.sh dns_wire x509     # only these targets
# The seeds are copied to a temp dir, so a run never grows fuzz/corpus/.
# Exits non-zero if any target crashes or fails a property, printing the
# input that did it (kept under fuzz/artifacts/<target>/).
#
# cargo-fuzz needs nightly-only rustc flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$PWD

seconds=${FUZZ_SECONDS:-10}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Dependencies built with sanitizer flags cannot be shared with the workspace's
# target dir; keep them outside the checkout so a fresh clone on the same
# machine rebuilds only acme-core and the targets.
export CARGO_TARGET_DIR=${CERTCTL_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/certctl/fuzz-target}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

start=$SECONDS
# Default flags: ASan (for the dependencies' unsafe code), debug assertions
# and overflow checks on, optimised.
build_log=$(mktemp)
build() {
    if ! cargo fuzz build "$@" >"$build_log" 2>&1; then
        cat "$build_log" >&2
        echo "fuzz smoke: build failed" >&2
        exit 1
    fi
}
if (($#)); then
    for t in "${targets[@]}"; do build "$t"; done
else
    build
fi
rm -f "$build_log"
echo "built ${#targets[@]} targets in $((SECONDS - start)) s (target dir $CARGO_TARGET_DIR)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    corpus=$work/$t
    mkdir -p "$corpus"
    cp "$fuzz_dir/corpus/$t"/seed* "$corpus"/ 2>/dev/null || true
    log=$work/$t.log
    printf '%-14s ' "$t"
    if cargo fuzz run "$t" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
        rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
        echo "ok: ${runs:-?} runs in ${seconds} s (${rate:-?}/s, peak RSS ${rss:-?} MB)"
    else
        echo "FAILED"
        grep -E -A 2 "panicked at|ERROR: libFuzzer" "$log" | head -n 20 | sed 's/^/    /'
        grep -E "Test unit written to" "$log" | sed 's/^.*Test unit written to /    crash input: /'
        failed+=("$t")
    fi
done
echo "fuzz smoke: ${#targets[@]} targets, $((SECONDS - start)) s in all"
if ((${#failed[@]})); then
    echo "fuzz smoke FAILED: ${failed[*]}; reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <crash input> (in fuzz/)" >&2
    exit 1
fi
