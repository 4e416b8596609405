#!/usr/bin/env bash
# certctl benchmarks against real peers, on the lab (lab/lab.sh), loopback only.
#
#   bash tests/bench/run.sh [--runs N] [--only SECTION] [--lego-five-runs N]
#   FLEET_SIZES=5 bash tests/bench/run.sh --only fleet --runs 1    (a quick smoke run)
#
# Sections (each a function `section_<name>`; all run unless --only picks one):
#   issue   one-name and five-name DNS-01 issuance: certctl vs lego vs certbot
#   deploy  one new version to 5 and 20 nodes: certctl vs an scp runbook vs ansible-core
#   scan    1,000 TLS endpoints: certctl scan vs an openssl loop vs blackbox exporter
#   list    certctl list and certctl inspect over 10,000 certificates
#   plan    certctl renew --dry-run beside certctl list over 10,000, 40,000 and 100,000 certificates
#   load    one run renewing 200 certificates and deploying them to 20 nodes
#   fleet   deploy 1 and 2 certificates, report, idle run at 5, 20, 50, 100 nodes
#           (FLEET_SIZES="5 20 50 100"; grows the lab to the largest), runbook and
#           Ansible at 20, Ansible at 100; per-phase breakdown per node from -vv
#   persist one-name issuance with dns-persist-01 (record published once, untimed)
#           vs dns-01 (rfc2136), both against the same FAKE ACME CA (fake-acme)
#   store   renew of 50 certificates and report over 20 nodes: the etcd store (the
#           lab's 3-member cluster) beside the directory store
#
# Every (tool, case) runs N times; the table shows medians over the runs that
# produced a certificate. Results: target/bench/<section>.md (the table) and
# target/bench/<section>.csv (one row per run). Targets are printed beside the
# figures, never asserted. Needs root (the lab binds :53/:22/:443, lego runs in
# a private mount namespace).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/tests/bench"
LAB="${CERTCTL_LAB_DIR:-/tmp/certctl-lab}"
OUT="$ROOT/target/bench"
CERTCTL="$ROOT/target/release/certctl"
PROG="tests/bench/run.sh"
SECTIONS=(issue deploy scan list plan load fleet persist store)
LAB_NODES=20
ACME_DIR="https://127.0.0.1:14000/dir"
EMAIL="bench@example.test"

RUNS=5
LEGO_FIVE_RUNS=1
ONLY=""

usage() {
    cat <<EOF
Usage: bash $PROG [--runs N] [--only SECTION] [--lego-five-runs N]

  --runs N             runs per tool and case (default $RUNS, 1..50)
  --only SECTION       run one section: ${SECTIONS[*]}
  --lego-five-runs N   runs of lego's five-name case (default $LEGO_FIVE_RUNS, at most --runs);
                       lego solves rfc2136 challenges one at a time, 60 s apart, so each
                       such run takes about 4 minutes
Results go to $OUT/<section>.{md,csv}.
FLEET_SIZES (environment; default "5 20 50 100"): the fleet section's node counts;
the lab grows to the largest (lab.sh up N) and stays that size afterwards.
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
info() { echo "$PROG: $*" >&2; }

# ---------------------------------------------------------------- arguments

parse_args() {
    while (($#)); do
        case "$1" in
            --runs) RUNS="${2:-}"; shift 2 || die "--runs needs a value" ;;
            --runs=*) RUNS="${1#*=}"; shift ;;
            --only) ONLY="${2:-}"; shift 2 || die "--only needs a value" ;;
            --only=*) ONLY="${1#*=}"; shift ;;
            --lego-five-runs) LEGO_FIVE_RUNS="${2:-}"; shift 2 || die "--lego-five-runs needs a value" ;;
            --lego-five-runs=*) LEGO_FIVE_RUNS="${1#*=}"; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument '$1'" ;;
        esac
    done
    [[ "$RUNS" =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 50)) || die "--runs must be 1..50, got '$RUNS'"
    [[ "$LEGO_FIVE_RUNS" =~ ^[0-9]+$ ]] || die "--lego-five-runs must be a number, got '$LEGO_FIVE_RUNS'"
    ((LEGO_FIVE_RUNS <= RUNS)) || LEGO_FIVE_RUNS=$RUNS
    if [[ -n "$ONLY" ]]; then
        local s
        for s in "${SECTIONS[@]}"; do [[ "$s" == "$ONLY" ]] && return 0; done
        die "unknown section '$ONLY'; sections: ${SECTIONS[*]}"
    fi
}

# ---------------------------------------------------------------- setup

ensure_packages() {
    local missing=()
    command -v lego >/dev/null 2>&1 || missing+=(lego)
    command -v certbot >/dev/null 2>&1 || missing+=(certbot)
    dpkg -s python3-certbot-dns-rfc2136 >/dev/null 2>&1 || missing+=(python3-certbot-dns-rfc2136)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
    command -v ansible-playbook >/dev/null 2>&1 || missing+=(ansible-core)
    command -v prometheus-blackbox-exporter >/dev/null 2>&1 || missing+=(prometheus-blackbox-exporter)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v ss >/dev/null 2>&1 || missing+=(iproute2)
    command -v pgrep >/dev/null 2>&1 || missing+=(procps)
    command -v scp >/dev/null 2>&1 || missing+=(openssh-client)
    /usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 || missing+=(python3-cryptography)
    ((${#missing[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}) and not root to install them"
    info "installing ${missing[*]}"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install failed"
}

build_certctl() {
    info "building certctl (release)"
    local log="$TMP/build.log"
    if ! (cd "$ROOT" && timeout 3600 cargo build --release -p certctl) >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "cargo build --release -p certctl failed"
    fi
    [[ -x "$CERTCTL" ]] || die "$CERTCTL missing after the build"
}

# Start (or complete) the lab, never with fewer nodes than are running, then
# hold the lab tests' shared lock so no test restarts pebble or named under us.
start_lab() {
    local n=$LAB_NODES running
    running="$(cat "$LAB/nodes.count" 2>/dev/null || echo 0)"
    [[ "$running" =~ ^[0-9]+$ ]] || running=0
    ((running > n)) && n=$running
    info "starting the lab with $n nodes"
    if ! bash "$ROOT/lab/lab.sh" up "$n" >"$TMP/lab.log" 2>&1; then
        tail -n 30 "$TMP/lab.log" >&2
        die "the lab did not start"
    fi
    [[ -s "$LAB/certctl.toml" && -s "$LAB/tsig.secret" && -s "$LAB/ca/lab-ca.pem" ]] ||
        die "the lab is up but $LAB lacks certctl.toml, tsig.secret or ca/lab-ca.pem"
    exec 8>"$LAB/.test-lock"
    flock -s -w 900 8 || die "waited 15 min for the lab tests' lock ($LAB/.test-lock)"
}

# ---------------------------------------------------------------- measuring

# Prefix for the measured command (lego runs inside a mount namespace).
WRAP=()

# timed SECS TFILE LOG CMD...: run CMD under /usr/bin/time (wall, user, sys, max RSS
# KiB into TFILE), output into LOG, killed with its process group after SECS.
timed() {
    local secs="$1" tfile="$2" log="$3"
    shift 3
    rm -f "$tfile"
    timeout -k 5 "$secs" "${WRAP[@]}" /usr/bin/time -o "$tfile" -f '%e %U %S %M' "$@" >"$log" 2>&1
}

# cert_covers PEM NAME...: PEM's first certificate names every NAME
cert_covers() {
    local pem="$1" san n
    shift
    [[ -s "$pem" ]] || return 1
    san="$(openssl x509 -in "$pem" -noout -ext subjectAltName 2>/dev/null)" || return 1
    for n in "$@"; do
        [[ "$san" == *"DNS:$n"* ]] || return 1
    done
}

# row SECTION TOOL CASE RUN OK RC TFILE LOG WHY: one CSV row from TFILE (written by
# `timed`); OK (1 or 0) is the caller's check of the result, WHY says what a failed
# check expected. A run without a time line counts as failed.
row() {
    local section="$1" tool="$2" case="$3" run="$4" ok="$5" rc="$6" tfile="$7" log="$8" why="$9"
    local wall="" user="" sys="" rss="" cpu=""
    if [[ -s "$tfile" ]]; then
        read -r wall user sys rss < <(tail -n 1 "$tfile") || true
        [[ "$rss" =~ ^[0-9]+$ ]] || { wall="" rss=""; }
    fi
    [[ -n "$wall" ]] || ok=0
    [[ -n "$wall" ]] && cpu="$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
    echo "$section,$tool,$case,$run,$ok,$rc,$wall,$cpu,$rss" >>"$CSV"
    if ((ok)); then
        printf '  %-8s %-10s run %d: %6ss wall %6ss CPU %6.1f MiB\n' "$tool" "$case" "$run" \
            "$wall" "$cpu" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" >&2
    else
        {
            local what="exit $rc"
            ((rc == 124 || rc == 137)) && what="timed out"
            echo "  $tool $case run $run FAILED ($what; $why)"
            echo "  ---- last lines of $tool's output ----"
            tail -n 15 "$log" | sed 's/^/  | /'
        } >&2
    fi
}

# record SECTION TOOL CASE RUN RC TFILE LOG PEM NAME...: one CSV row; a run counts as
# ok only if the tool exited 0 and PEM is a certificate for every NAME.
record() {
    local section="$1" tool="$2" case="$3" run="$4" rc="$5" tfile="$6" log="$7" pem="$8"
    shift 8
    local ok=0
    if ((rc == 0)) && cert_covers "$pem" "$@"; then ok=1; fi
    row "$section" "$tool" "$case" "$run" "$ok" "$rc" "$tfile" "$log" "no certificate for $* at $pem"
}

# ---------------------------------------------------------------- section: issue

# Names for one run: fresh every run and every invocation, so nothing is cached.
issue_names() {
    local run="$1" tool="$2" count="$3" i
    for ((i = 1; i <= count; i++)); do
        echo "b$run-$tool-$i-$STAMP.example.test"
    done
}

# certctl_config DIR NAME...: an inventory in DIR from the lab's, with its own store
# and one certificate `bench` for NAMEs (no [[certificate]] of the lab's).
certctl_config() {
    local dir="$1"
    shift
    mkdir -p "$dir"
    awk -v store="$dir/store" '
        /^store[ \t]*=/ { print "store = \"" store "\""; next }
        /^\[\[certificate\]\]/ { skip = 1; next }
        /^\[/ { skip = 0 }
        !skip { print }
    ' "$LAB/certctl.toml" >"$dir/certctl.toml"
    {
        echo
        echo "[[certificate]]"
        echo 'name = "bench"'
        printf 'domains = ['
        local n sep=""
        for n in "$@"; do printf '%s"%s"' "$sep" "$n"; sep=", "; done
        echo "]"
        echo 'solver = "lab"'
    } >>"$dir/certctl.toml"
}

issue_certctl() {
    local run="$1" case="$2" count="$3" dir names
    dir="$TMP/certctl/$case-$run"
    mapfile -t names < <(issue_names "$run" certctl "$count")
    certctl_config "$dir" "${names[@]}"
    mkdir -m 700 "$dir/store"
    cp -a "$TMP/certctl/warm/store/accounts" "$dir/store/accounts"
    local rc=0
    WRAP=()
    timed 120 "$dir/time" "$dir/log" "$CERTCTL" --config "$dir/certctl.toml" issue bench || rc=$?
    record issue certctl "$case" "$run" "$rc" "$dir/time" "$dir/log" \
        "$dir/store/live/bench/fullchain.pem" "${names[@]}"
}

lego_env() {
    export RFC2136_NAMESERVER=127.0.0.1:53 RFC2136_TSIG_KEY=certctl-key
    export RFC2136_TSIG_ALGORITHM=hmac-sha256. LEGO_CA_CERTIFICATES="$LAB/ca/lab-ca.pem"
    RFC2136_TSIG_SECRET="$(cat "$LAB/tsig.secret")"
    export RFC2136_TSIG_SECRET
    unset RFC2136_SEQUENCE_INTERVAL RFC2136_PROPAGATION_TIMEOUT RFC2136_POLLING_INTERVAL
}

# lego's propagation check dials the zone's NS names (ns1.example.test) through the
# system resolver, which knows nothing of *.test here. Rather than turning the check
# off (--dns.disable-cp), lego runs in a private mount namespace whose
# /etc/resolv.conf names the lab's resolver; the host's file is untouched.
lego_wrap() {
    echo "nameserver 127.0.0.1" >"$TMP/lego/resolv.conf"
    WRAP=(unshare -m --propagation private sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        "$TMP/lego/resolv.conf")
}

lego_args() {
    local path="$1" n
    shift
    printf '%s\n' --server "$ACME_DIR" --accept-tos --email "$EMAIL" --path "$path" \
        --dns rfc2136 --dns.resolvers 127.0.0.1:53
    for n in "$@"; do printf '%s\n' --domains "$n"; done
    echo run
}

issue_lego() {
    local run="$1" case="$2" count="$3" dir names args
    dir="$TMP/lego/$case-$run"
    mapfile -t names < <(issue_names "$run" lego "$count")
    mkdir -p "$dir/path"
    cp -a "$TMP/lego/warm/path/accounts" "$dir/path/accounts"
    mapfile -t args < <(lego_args "$dir/path" "${names[@]}")
    local rc=0 secs=180
    ((count > 1)) && secs=$((count * 90))
    lego_wrap
    timed "$secs" "$dir/time" "$dir/log" lego "${args[@]}" || rc=$?
    WRAP=()
    record issue lego "$case" "$run" "$rc" "$dir/time" "$dir/log" \
        "$dir/path/certificates/${names[0]}.crt" "${names[@]}"
}

certbot_args() {
    local dir="$1" n
    shift
    printf '%s\n' certonly --dns-rfc2136 --dns-rfc2136-credentials "$TMP/certbot/rfc2136.ini" \
        --dns-rfc2136-propagation-seconds 1 --server "$ACME_DIR" --non-interactive --agree-tos \
        -m "$EMAIL" --config-dir "$dir/config" --work-dir "$dir/work" --logs-dir "$dir/logs" \
        --cert-name bench
    for n in "$@"; do printf '%s\n' -d "$n"; done
}

issue_certbot() {
    local run="$1" case="$2" count="$3" dir names args
    dir="$TMP/certbot/$case-$run"
    mapfile -t names < <(issue_names "$run" certbot "$count")
    mkdir -p "$dir/config"
    cp -a "$TMP/certbot/warm/config/accounts" "$dir/config/accounts"
    mapfile -t args < <(certbot_args "$dir" "${names[@]}")
    local rc=0
    WRAP=()
    REQUESTS_CA_BUNDLE="$LAB/ca/lab-ca.pem" timed 300 "$dir/time" "$dir/log" certbot "${args[@]}" || rc=$?
    record issue certbot "$case" "$run" "$rc" "$dir/time" "$dir/log" \
        "$dir/config/live/bench/fullchain.pem" "${names[@]}"
}

# One untimed-for-the-table issuance per tool: registers the ACME account that the
# measured runs reuse, and warms the page cache.
issue_warm_up() {
    local rc names args
    mkdir -p "$TMP/certctl" "$TMP/lego" "$TMP/certbot"
    (umask 077 && printf 'dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_port = 53\ndns_rfc2136_name = %s\ndns_rfc2136_secret = %s\ndns_rfc2136_algorithm = HMAC-SHA256\n' \
        "$(cat "$LAB/tsig.name")" "$(cat "$LAB/tsig.secret")" >"$TMP/certbot/rfc2136.ini")
    lego_env

    mapfile -t names < <(issue_names w certctl 1)
    certctl_config "$TMP/certctl/warm" "${names[@]}"
    rc=0
    timed 120 "$TMP/certctl/warm/time" "$TMP/certctl/warm/log" \
        "$CERTCTL" --config "$TMP/certctl/warm/certctl.toml" issue bench || rc=$?
    [[ $rc -eq 0 && -d "$TMP/certctl/warm/store/accounts" ]] ||
        { tail -n 15 "$TMP/certctl/warm/log" >&2; die "certctl warm-up issuance failed (exit $rc)"; }

    mkdir -p "$TMP/lego/warm"
    mapfile -t names < <(issue_names w lego 1)
    mapfile -t args < <(lego_args "$TMP/lego/warm/path" "${names[@]}")
    rc=0
    lego_wrap
    timed 180 "$TMP/lego/warm/time" "$TMP/lego/warm.log" lego "${args[@]}" || rc=$?
    WRAP=()
    [[ $rc -eq 0 && -d "$TMP/lego/warm/path/accounts" ]] ||
        { tail -n 15 "$TMP/lego/warm.log" >&2; die "lego warm-up issuance failed (exit $rc)"; }

    mapfile -t names < <(issue_names w certbot 1)
    mapfile -t args < <(certbot_args "$TMP/certbot/warm" "${names[@]}")
    rc=0
    mkdir -p "$TMP/certbot/warm"
    REQUESTS_CA_BUNDLE="$LAB/ca/lab-ca.pem" timed 300 "$TMP/certbot/warm/time" "$TMP/certbot/warm.log" \
        certbot "${args[@]}" || rc=$?
    [[ $rc -eq 0 && -d "$TMP/certbot/warm/config/accounts" ]] ||
        { tail -n 15 "$TMP/certbot/warm.log" >&2; die "certbot warm-up issuance failed (exit $rc)"; }
}

section_issue() {
    CSV="$OUT/issue.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    info "issue: warm-up (one issuance per tool, registers the accounts)"
    issue_warm_up
    local run
    # interleave the tools run by run, so drift on the machine spreads evenly
    for ((run = 1; run <= RUNS; run++)); do
        info "issue: run $run of $RUNS"
        issue_certctl "$run" one-name 1
        issue_lego "$run" one-name 1
        issue_certbot "$run" one-name 1
        issue_certctl "$run" five-names 5
        ((run > LEGO_FIVE_RUNS)) || issue_lego "$run" five-names 5
        issue_certbot "$run" five-names 5
    done
    # a -vv log, with milliseconds since start, of one more certctl issuance per case,
    # to see where its time goes (not in the table)
    local names dir count
    : >"$OUT/issue-certctl-vv.log"
    for count in 1 5; do
        dir="$TMP/certctl/trace-$count"
        mapfile -t names < <(issue_names t certctl "$count")
        certctl_config "$dir" "${names[@]}"
        mkdir -m 700 "$dir/store"
        cp -a "$TMP/certctl/warm/store/accounts" "$dir/store/accounts"
        echo "# certctl -vv issue, $count name(s), account reused" >>"$OUT/issue-certctl-vv.log"
        python3 "$BENCH/stamp.py" 120 "$CERTCTL" -vv --color never --config "$dir/certctl.toml" \
            issue bench >>"$OUT/issue-certctl-vv.log" 2>&1 || true
    done

    local notes="$TMP/issue.notes"
    {
        echo "Medians over the runs that produced a certificate for every name (checked with openssl); $RUNS runs per tool and case, lego five-names only $LEGO_FIVE_RUNS (lego solves rfc2136 challenges one at a time with its default RFC2136_SEQUENCE_INTERVAL of 60 s, about 4 min per run)."
        echo "Fresh names every run (b<run>-<tool>-<i>-$STAMP.example.test); pebble runs with PEBBLE_AUTHZREUSE=0 and PEBBLE_VA_NOSLEEP=1."
        echo "Every tool registers its ACME account once in an untimed warm-up issuance; each measured run starts from an empty state directory holding only a copy of that account (certctl: store/accounts, lego: path/accounts, certbot: config/accounts)."
        echo "certctl $("$CERTCTL" --version | awk '{print $2}'): default settings, \`certctl --config X issue bench\`, an inventory made from the lab's with a temp store; wall time includes process start and store writes."
        echo "lego $(dpkg-query -W -f '${Version}' lego 2>/dev/null) (Debian): \`--dns rfc2136 --dns.resolvers 127.0.0.1:53\`, provider defaults (propagation check on, polling 2 s, sequence interval 60 s); run in a private mount namespace whose /etc/resolv.conf names 127.0.0.1, because its propagation check resolves the zone's NS names through the system resolver, which does not know *.test here (--dns.disable-cp not used)."
        echo "certbot $(dpkg-query -W -f '${Version}' certbot 2>/dev/null) (Debian) with dns-rfc2136: \`--dns-rfc2136-propagation-seconds 1\` (its default is 60 s)."
        echo "Wall, CPU (user+sys) and peak RSS from /usr/bin/time around the tool's own process (children included); $(nproc) CPUs; all traffic on 127.0.0.0/8."
        echo "Where certctl's time goes: target/bench/issue-certctl-vv.log (one more one-name and five-name issuance with -vv, each line stamped with ms since start; not in the table)."
        load_note
    } >"$notes"
    echo
    python3 "$BENCH/summarise.py" issue "$CSV" "$OUT/issue.md" "$notes"
    echo
    info "wrote $OUT/issue.md and $OUT/issue.csv"
}

# ---------------------------------------------------------------- section: deploy

DEPLOY_CASES=(5 20)
SSH_KEY="$LAB/ssh/id_ed25519"
# certctl's TMPDIR while deploying: its ssh control sockets go there (and are
# found there by procpeak.py); short, as a socket path has at most 107 bytes.
SSHTMP=""
KNOWN_HOSTS="$LAB/ssh/known_hosts"
# The lab's ssh client settings (KexAlgorithms curve25519-sha256), used by every
# tool; certctl-sntrup is certctl with ssh's own default key exchange instead.
SSH_CONFIG="$LAB/ssh/config"

# node_field I KEY: KEY's value (a TOML string) in the lab inventory's node I.
node_field() {
    awk -v want="$1" -v key="$2" '
        /^\[\[node\]\]/ { count++; cur = (count == want); next }
        /^\[/ { cur = 0 }
        cur && $1 == key { sub(/^[^=]*=[ \t]*"/, ""); sub(/"[ \t]*$/, ""); print; exit }
    ' "$LAB/certctl.toml"
}

# deploy_config DIR N [NAME DOMAINS]: an inventory in DIR from the lab's, with its own
# store, only the certificate NAME (default `www`) for DOMAINS (a TOML array) and the
# first N [[node]] tables.
deploy_config() {
    local dir="$1" n="$2" name="${3:-www}" domains="${4:-[\"www.example.test\", \"example.test\"]}"
    mkdir -p "$dir"
    awk -v store="$dir/store" -v max="$n" '
        /^store[ \t]*=/ { print "store = \"" store "\""; next }
        /^\[\[certificate\]\]/ { skip = 1; next }
        /^\[\[node\]\]/ { nodes++; skip = nodes > max; if (!skip) print; next }
        /^\[/ { skip = 0 }
        !skip { print }
    ' "$LAB/certctl.toml" >"$dir/certctl.toml"
    printf '\n[[certificate]]\nname = "%s"\ndomains = %s\nsolver = "lab"\ngroups = ["edge"]\n' \
        "$name" "$domains" >>"$dir/certctl.toml"
    local have
    have="$(grep -c '^\[\[node\]\]' "$dir/certctl.toml")"
    ((have == n)) || die "the lab inventory has $have nodes, the deploy case needs $n"
}

# served_ok N SERIAL [SNI]: nodes 1..N serve SERIAL (openssl's `serial=HEX`) for
# SNI (default www.example.test); a reload takes effect within moments, so each
# node gets 20 tries 0.1 s apart.
served_ok() {
    local n="$1" want="$2" sni="${3:-www.example.test}" i try got
    for ((i = 1; i <= n; i++)); do
        for ((try = 0; try < 20; try++)); do
            got="$(openssl s_client -connect "127.0.0.$((10 + i)):443" -servername "$sni" \
                </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null)" || true
            [[ "$got" == "$want" ]] && break
            sleep 0.1
        done
        [[ "$got" == "$want" ]] || { info "node$i serves ${got:-nothing} for $sni, expected $want"; return 1; }
    done
}

# deploy_new_version DIR: issue a new version of `www` into DIR's store (untimed);
# sets VERSION and SERIAL (openssl's `serial=HEX`).
deploy_new_version() {
    local dir="$1" rc=0
    timeout 120 "$CERTCTL" --config "$dir/certctl.toml" issue www >"$dir/issue.log" 2>&1 || rc=$?
    ((rc == 0)) || { tail -n 15 "$dir/issue.log" >&2; die "certctl issue www failed (exit $rc)"; }
    VERSION="$(basename "$(readlink "$dir/store/live/www")")"
    SERIAL="$(openssl x509 -in "$dir/store/live/www/cert.pem" -noout -serial)"
    [[ -n "$VERSION" && "$SERIAL" == serial=* ]] || die "no new version of www in $dir/store"
}

# deploy_certctl RUN N [TOOL]: TOOL certctl (the lab's ssh_config) or
# certctl-sntrup (ssh's default key exchange).
deploy_certctl() {
    local run="$1" n="$2" tool="${3:-certctl}" rc=0 ok=0
    local dir="$TMP/deploy/$tool-$n"
    deploy_new_version "$dir"
    local version="$VERSION" serial="$SERIAL"
    WRAP=(env TMPDIR="$SSHTMP/$n")
    timed 120 "$dir/time" "$dir/log" "$CERTCTL" --config "$dir/certctl.toml" deploy www || rc=$?
    WRAP=()
    ((rc == 0)) && served_ok "$n" "$serial" && ok=1
    row deploy "$tool" "$n-nodes" "$run" "$ok" "$rc" "$dir/time" "$dir/log" \
        "expected exit 0 and $serial ($version) served by nodes 1..$n"
}

# The runbook and Ansible deploy a version the store of certctl's case holds.
deploy_stage() {
    local n="$1" tool="$2" version="$3" stage="$TMP/deploy/$2-$1/stage"
    rm -rf "$stage"
    mkdir -p "$stage/$version"
    cp "$TMP/deploy/certctl-$n/store/live/www/"{privkey,cert,chain,fullchain}.pem "$stage/$version/"
    chmod 600 "$stage/$version/privkey.pem"
    chmod 644 "$stage/$version/"{cert,chain,fullchain}.pem
    echo "$stage"
}

deploy_runbook() {
    local run="$1" n="$2" dir="$TMP/deploy/runbook-$2" stage rc=0 ok=0
    deploy_new_version "$TMP/deploy/certctl-$n"
    local version="$VERSION" serial="$SERIAL"
    stage="$(deploy_stage "$n" runbook "$version")"
    timed 300 "$dir/time" "$dir/log" sh "$BENCH/runbook.sh" "$dir/nodes.tsv" "$stage" "$version" \
        "$SSH_KEY" "$KNOWN_HOSTS" "$SSH_CONFIG" || rc=$?
    ((rc == 0)) && served_ok "$n" "$serial" && ok=1
    row deploy runbook "$n-nodes" "$run" "$ok" "$rc" "$dir/time" "$dir/log" \
        "expected exit 0 and $serial ($version) served by nodes 1..$n (checked after the run)"
}

# Ansible's ssh masters persist (ControlPersist=60s) after it exits: each run gets
# its own control directory, so every run connects afresh as certctl's does, and
# the masters are stopped afterwards by PID.
stop_ssh_masters() {
    local marker="$1" pid
    for pid in $(pgrep -f -- "$marker" || true); do
        kill "$pid" 2>/dev/null || true
    done
}

deploy_ansible() {
    local run="$1" n="$2" dir="$TMP/deploy/ansible-$2" stage rc=0 ok=0
    deploy_new_version "$TMP/deploy/certctl-$n"
    local version="$VERSION" serial="$SERIAL"
    stage="$(deploy_stage "$n" ansible "$version")"
    local cp="$dir/cp-$run"
    mkdir -p "$cp"
    sed "s|@CP@|$cp|" "$dir/ansible.cfg.in" >"$dir/ansible.cfg"
    WRAP=(env ANSIBLE_CONFIG="$dir/ansible.cfg" ANSIBLE_HOME="$dir/home" ANSIBLE_NOCOLOR=1)
    timed 600 "$dir/time" "$dir/log" ansible-playbook -i "$dir/inventory.yml" "$BENCH/deploy.yml" \
        -e "src=$stage/$version" -e "version=$version" -e "expected_serial=${serial#serial=}" || rc=$?
    WRAP=()
    stop_ssh_masters "$cp/"
    ((rc == 0)) && served_ok "$n" "$serial" && ok=1
    row deploy ansible "$n-nodes" "$run" "$ok" "$rc" "$dir/time" "$dir/log" \
        "expected exit 0 and $serial ($version) served by nodes 1..$n"
}

# Per case: certctl's inventory and store (one untimed issuance and deploy), the
# runbook's node list, Ansible's inventory and configuration.
deploy_prepare() {
    local n="$1" i d rc=0 tool
    mkdir -p "$SSHTMP/$n"
    for tool in certctl certctl-sntrup; do
        d="$TMP/deploy/$tool-$n"
        deploy_config "$d" "$n"
        [[ $tool == certctl ]] || sed -i '/^ssh_config = /d' "$d/certctl.toml"
        deploy_new_version "$d"
        TMPDIR="$SSHTMP/$n" timeout 120 "$CERTCTL" --config "$d/certctl.toml" deploy www \
            >"$d/warm.log" 2>&1 || rc=$?
        ((rc == 0)) || { tail -n 15 "$d/warm.log" >&2; die "$tool warm-up deploy to $n nodes failed (exit $rc)"; }
    done

    peer_files "$TMP/deploy" "$n"
}

# peer_files DIR N: the runbook's node list (DIR/runbook-N/nodes.tsv) and Ansible's
# inventory and configuration (DIR/ansible-N/) for the first N lab nodes.
peer_files() {
    local top="$1" n="$2" i
    mkdir -p "$top/runbook-$n" "$top/ansible-$n/home"
    : >"$top/runbook-$n/nodes.tsv"
    {
        echo "edge:"
        echo "  vars:"
        echo "    ansible_user: certctl-edge"
        echo "    ansible_ssh_private_key_file: '$SSH_KEY'"
        echo "    ansible_ssh_common_args: '-F $SSH_CONFIG -o UserKnownHostsFile=$KNOWN_HOSTS'"
        echo "    ansible_python_interpreter: /usr/bin/python3"
        echo "  hosts:"
    } >"$top/ansible-$n/inventory.yml"
    for ((i = 1; i <= n; i++)); do
        local addr base validate reload
        addr="$(node_field "$i" address)"
        base="$(node_field "$i" base_dir)"
        validate="$(node_field "$i" validate)"
        reload="$(node_field "$i" reload)"
        [[ -n "$addr" && -n "$base" && -n "$validate" && -n "$reload" ]] ||
            die "node $i of $LAB/certctl.toml lacks address, base_dir, validate or reload"
        printf '%s\t%s\t%s\t%s\n' "$addr" "$base" "$validate" "$reload" >>"$top/runbook-$n/nodes.tsv"
        {
            echo "    node$i:"
            echo "      ansible_host: $addr"
            echo "      base_dir: '$base'"
            echo "      validate_cmd: '$validate'"
            echo "      reload_cmd: '$reload'"
        } >>"$top/ansible-$n/inventory.yml"
    done
    cat >"$top/ansible-$n/ansible.cfg.in" <<CFG
[defaults]
forks = 20
host_key_checking = True
retry_files_enabled = False
local_tmp = $top/ansible-$n/home/tmp

[ssh_connection]
pipelining = True
control_path_dir = @CP@
CFG
}

section_deploy() {
    CSV="$OUT/deploy.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    command -v ansible-playbook >/dev/null || die "ansible-playbook is missing"
    local n run
    SSHTMP="$(mktemp -d /tmp/cbs.XXXX)"
    for n in "${DEPLOY_CASES[@]}"; do
        info "deploy: preparing the $n-node case (one untimed issuance and deploy)"
        deploy_prepare "$n"
    done
    for ((run = 1; run <= RUNS; run++)); do
        info "deploy: run $run of $RUNS"
        for n in "${DEPLOY_CASES[@]}"; do
            deploy_certctl "$run" "$n"
            deploy_certctl "$run" "$n" certctl-sntrup
            deploy_runbook "$run" "$n"
            deploy_ansible "$run" "$n"
        done
    done

    # One more certctl deploy per case under procpeak.py, which watches the ssh
    # masters certctl starts (they fork into the background, out of /usr/bin/time's
    # sight), and one with -vv, stamped, to see where the time goes.
    local extra="$TMP/deploy.ssh" d
    : >"$extra"
    : >"$OUT/deploy-certctl-vv.log"
    for n in "${DEPLOY_CASES[@]}"; do
        d="$TMP/deploy/certctl-$n"
        deploy_new_version "$d"
        TMPDIR="$SSHTMP/$n" python3 "$BENCH/procpeak.py" "$SSHTMP/$n/" 120 \
            "$d/ssh.txt" "$CERTCTL" --config "$d/certctl.toml" deploy www >"$d/ssh.log" 2>&1 || true
        echo "$n $(cat "$d/ssh.txt" 2>/dev/null)" >>"$extra"
        deploy_new_version "$d"
        echo "# certctl -vv deploy www, $n nodes" >>"$OUT/deploy-certctl-vv.log"
        TMPDIR="$SSHTMP/$n" python3 "$BENCH/stamp.py" 120 "$CERTCTL" -vv --color never \
            --config "$d/certctl.toml" deploy www >>"$OUT/deploy-certctl-vv.log" 2>&1 || true
    done

    local notes="$TMP/deploy.notes"
    {
        echo "One new version of the \`www\` certificate (www.example.test, example.test; issued untimed by certctl before every run) deployed to the first 5 and to all 20 lab nodes; $RUNS runs per tool and case, tools interleaved; medians over the runs that succeeded."
        echo "A run counts only if the tool exited 0 and afterwards every node served the new serial for www.example.test (openssl s_client, untimed)."
        echo "certctl $("$CERTCTL" --version | awk '{print $2}'): \`certctl deploy www\`, default [deploy] settings (concurrency 20, first node as canary): stage, atomic swap, validate, reload, TLS verification of both SNI names on every node."
        echo "ssh: certctl, the runbook and Ansible all read the lab's ssh_config ($SSH_CONFIG: KexAlgorithms curve25519-sha256); certctl-sntrup is certctl with ssh's own default key exchange (OpenSSH $(ssh -V 2>&1 | sed -n 's/^OpenSSH_\([^ ,]*\).*/\1/p'): sntrup761x25519-sha512), which costs each new connection about 70 ms more client CPU."
        echo "runbook: tests/bench/runbook.sh, node after node: \`scp -r\` of the version directory, then one \`ssh\` running \`ln -sfn\`, the node's validate and reload commands; no ControlMaster, no verification."
        echo "ansible-core $(dpkg-query -W -f '${Version}' ansible-core 2>/dev/null) (Debian): tests/bench/deploy.yml with forks = 20, pipelining, ControlPersist default (60 s; a fresh control directory per run, masters stopped after it), gather_facts off, python3 named: file, copy ×4 (key 0600), temp link + \`mv -T\`, validate, reload handler, then \`openssl s_client | openssl x509 -serial\` on each node for both SNI names."
        echo "Wall, CPU (user+sys) and peak RSS from /usr/bin/time around the tool's own process; CPU includes waited-for children (runbook: every scp and ssh; Ansible: its workers and ssh clients). certctl's ssh masters fork into the background, so neither its CPU nor its RSS includes them; see the next line."
        while read -r n line; do
            echo "certctl's ssh processes, $n nodes (one more deploy, sampled every 20 ms by tests/bench/procpeak.py): $line (procs counts each master twice: ssh -f forks; peak_rss_sum is the largest sum of their resident sets at one moment; cpu_s is not in the table's CPU)."
        done <"$extra"
        echo "Where certctl's time goes: target/bench/deploy-certctl-vv.log (one more deploy per case with -vv, lines stamped with ms since start)."
        echo "$(nproc) CPUs; all traffic on 127.0.0.0/8."
        load_note
    } >"$notes"
    echo
    python3 "$BENCH/summarise.py" deploy "$CSV" "$OUT/deploy.md" "$notes"
    echo
    info "wrote $OUT/deploy.md and $OUT/deploy.csv"
}

# ---------------------------------------------------------------- section: scan

SCAN_NAMES=50    # per node: h1..h50.cdn.example.test, all under the `wild` certificate
OPENSSL_EVERY=10 # the openssl loop does every 10th endpoint (100 of 1,000) ...
BLACKBOX_PORT=""

# timed_out SECS TFILE OUT ERR CMD...: like `timed`, stdout into OUT, stderr into ERR.
timed_out() {
    local secs="$1" tfile="$2" out="$3" err="$4"
    shift 4
    rm -f "$tfile"
    timeout -k 5 "$secs" "${WRAP[@]}" /usr/bin/time -o "$tfile" -f '%e %U %S %M' "$@" >"$out" 2>"$err"
}

# cpu_ticks PID: user and system clock ticks of PID so far.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}

scan_prepare() {
    local nodes="$1" i k d="$TMP/scan"
    mkdir -p "$d/certctl" "$d/openssl" "$d/blackbox"
    : >"$d/list.txt"
    for ((i = 1; i <= nodes; i++)); do
        for ((k = 1; k <= SCAN_NAMES; k++)); do
            echo "127.0.0.$((10 + i)):443 h$k.cdn.example.test" >>"$d/list.txt"
        done
    done
    awk -v every="$OPENSSL_EVERY" 'NR % every == 1' "$d/list.txt" >"$d/sample.txt"
    cat "$LAB/pebble-roots.pem" "$LAB/ca/lab-ca.pem" >"$d/roots.pem"

    # What the nodes serve for *.cdn.example.test is whatever the last test left
    # (maybe from an earlier pebble, whose root the lab no longer has): issue `wild`
    # afresh and deploy it to every node first, untimed, so every tool scans the
    # same trusted certificate.
    local rc=0
    deploy_config "$d/wild" "$nodes" wild '["*.cdn.example.test", "cdn.example.test"]'
    { timeout 120 "$CERTCTL" --config "$d/wild/certctl.toml" issue wild &&
        timeout 120 "$CERTCTL" --config "$d/wild/certctl.toml" deploy wild; } \
        >"$d/wild/log" 2>&1 || rc=$?
    ((rc == 0)) || { tail -n 15 "$d/wild/log" >&2; die "issuing and deploying \`wild\` to $nodes nodes failed (exit $rc)"; }

    # blackbox: a tcp+TLS module per SNI name (its tcp prober takes the SNI from
    # the module, not the target), so 50 modules × 20 node addresses
    {
        echo "modules:"
        for ((k = 1; k <= SCAN_NAMES; k++)); do
            printf '  tls_h%d:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n      tls: true\n      tls_config:\n        server_name: h%d.cdn.example.test\n        ca_file: %s\n' \
                "$k" "$k" "$d/roots.pem"
        done
    } >"$d/blackbox/config.yml"
    local port
    for port in $(seq 19115 19135); do
        ss -Hltn "sport = :$port" | grep -q . || { BLACKBOX_PORT=$port; break; }
    done
    [[ -n "$BLACKBOX_PORT" ]] || die "no free port in 19115..19135 for the blackbox exporter"
    awk -v port="$BLACKBOX_PORT" '{ split($2, h, "."); sub(/^h/, "", h[1])
        printf "url = \"http://127.0.0.1:%s/probe?module=tls_h%s&target=%s\"\n", port, h[1], $1 }' \
        "$d/list.txt" >"$d/blackbox/urls.cfg"
}

BLACKBOX_PID=""

blackbox_start() {
    local d="$TMP/scan/blackbox" i
    prometheus-blackbox-exporter --config.file="$d/config.yml" \
        --web.listen-address="127.0.0.1:$BLACKBOX_PORT" >"$d/exporter.log" 2>&1 &
    BLACKBOX_PID=$!
    for ((i = 0; i < 50; i++)); do
        curl -fs "http://127.0.0.1:$BLACKBOX_PORT/-/healthy" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 15 "$d/exporter.log" >&2
    die "the blackbox exporter did not answer on 127.0.0.1:$BLACKBOX_PORT within 5 s"
}

blackbox_stop() {
    [[ -n "$BLACKBOX_PID" ]] || return 0
    kill "$BLACKBOX_PID" 2>/dev/null || true
    wait "$BLACKBOX_PID" 2>/dev/null || true
    BLACKBOX_PID=""
}

scan_certctl() {
    local run="$1" n="$2" d="$TMP/scan/certctl" rc=0 ok=0 good
    timed_out 120 "$d/time" "$d/out.json" "$d/log" "$CERTCTL" scan --from-file "$TMP/scan/list.txt" \
        --json --ca-file "$LAB/pebble-roots.pem" --ca-file "$LAB/ca/lab-ca.pem" || rc=$?
    good="$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(sum(1 for e in d["endpoints"] if e.get("certificate") and e["certificate"]["leaf"]["not_after"]))' \
        "$d/out.json" 2>/dev/null)" || good=0
    ((rc == 0 && good == n)) && ok=1
    row scan certctl "$n-endpoints" "$run" "$ok" "$rc" "$d/time" "$d/log" \
        "expected exit 0 and a certificate from each of $n endpoints, got $good"
}

scan_openssl() {
    local run="$1" n="$2" d="$TMP/scan/openssl" rc=0 ok=0 good
    timed_out 600 "$d/time" "$d/out" "$d/log" sh "$BENCH/openssl-loop.sh" "$TMP/scan/sample.txt" \
        "$TMP/scan/roots.pem" || rc=$?
    good="$(grep -c 'notAfter=' "$d/out")" || good=0
    ((rc == 0 && good == n)) && ok=1
    row scan openssl-loop "$n-endpoints" "$run" "$ok" "$rc" "$d/time" "$d/log" \
        "expected a notAfter line for each of $n endpoints, got $good"
}

# The exporter does the probing: its CPU during the run (from /proc) is added to
# curl's, and the peak RSS is the larger of curl's and the exporter's (VmHWM).
scan_blackbox() {
    local run="$1" n="$2" d="$TMP/scan/blackbox" rc=0 ok=0 good u0 s0 u1 s1 hwm
    read -r u0 s0 < <(cpu_ticks "$BLACKBOX_PID")
    timed_out 300 "$d/time" "$d/out" "$d/log" curl -s --parallel --parallel-max 32 \
        --config "$d/urls.cfg" || rc=$?
    read -r u1 s1 < <(cpu_ticks "$BLACKBOX_PID")
    hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$BLACKBOX_PID/status")"
    if [[ -s "$d/time" ]]; then
        local wall user sys rss
        read -r wall user sys rss < <(tail -n 1 "$d/time")
        awk -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) \
            -v hz="$(getconf CLK_TCK)" -v h="$hwm" \
            'BEGIN { printf "%s %.2f %.2f %d\n", w, u + du / hz, s + ds / hz, (h > r ? h : r) }' >>"$d/time"
    fi
    good="$(grep -c '^probe_success 1' "$d/out")" || good=0
    ((rc == 0 && good == n)) && ok=1
    row scan blackbox "$n-endpoints" "$run" "$ok" "$rc" "$d/time" "$d/log" \
        "expected probe_success 1 for each of $n endpoints, got $good"
}

section_scan() {
    CSV="$OUT/scan.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    command -v prometheus-blackbox-exporter >/dev/null || die "prometheus-blackbox-exporter is missing"
    local nodes=20 total sample run
    scan_prepare "$nodes"
    total="$(wc -l <"$TMP/scan/list.txt")"
    sample="$(wc -l <"$TMP/scan/sample.txt")"
    blackbox_start
    # one untimed pass each warms the page cache and the exporter
    "$CERTCTL" scan --from-file "$TMP/scan/list.txt" --json --ca-file "$LAB/pebble-roots.pem" \
        --ca-file "$LAB/ca/lab-ca.pem" >/dev/null 2>&1 || true
    curl -s --parallel --parallel-max 32 --config "$TMP/scan/blackbox/urls.cfg" >/dev/null 2>&1 || true
    for ((run = 1; run <= RUNS; run++)); do
        info "scan: run $run of $RUNS"
        scan_certctl "$run" "$total"
        scan_openssl "$run" "$sample"
        scan_blackbox "$run" "$total"
    done
    blackbox_stop
    # certctl logs nothing per probe, even with -vv; its JSON has each probe's time
    local per_probe
    per_probe="$(python3 -c 'import json, statistics, sys
e = sorted(x["elapsed_ms"] for x in json.load(open(sys.argv[1]))["endpoints"])
print(f"median {statistics.median(e):.0f} ms, 95th percentile {e[int(len(e) * 0.95) - 1]} ms, max {e[-1]} ms")' \
        "$TMP/scan/certctl/out.json" 2>/dev/null)" || per_probe="(not available)"

    local notes="$TMP/scan.notes"
    {
        echo "$total TLS endpoints: $nodes lab nginx nodes (127.0.0.11..$((10 + nodes)):443) × $SCAN_NAMES SNI names h1..h$SCAN_NAMES.cdn.example.test, all served the \`wild\` certificate (*.cdn.example.test) issued by the lab's pebble; $RUNS runs per tool, tools interleaved, after one untimed pass of certctl and blackbox; medians over the runs that got a certificate from every endpoint."
        echo "certctl $("$CERTCTL" --version | awk '{print $2}'): \`certctl scan --from-file LIST --json --ca-file pebble-roots.pem --ca-file lab-ca.pem\` (default concurrency 64, timeout 5 s); ok when every endpoint in the JSON has a certificate."
        echo "openssl-loop: tests/bench/openssl-loop.sh, \`openssl s_client -connect … -servername … -CAfile … </dev/null | openssl x509 -noout -enddate\` one endpoint after another. It MEASURES ONLY $sample endpoints (every ${OPENSSL_EVERY}th of the list, so every node and name mix) — about 0.1 s each, 1,000 would take ~2 min a run; its row is scaled ×$((total / sample)) to $total endpoints in the table (the CSV keeps the measured $sample)."
        echo "blackbox: prometheus-blackbox-exporter $(dpkg-query -W -f '${Version}' prometheus-blackbox-exporter 2>/dev/null) (Debian) on 127.0.0.1:$BLACKBOX_PORT, one tcp+tls module per SNI name (its tcp prober takes SNI from the module), probed through /probe?module=…&target=… by ONE curl with --parallel --parallel-max 32 (kept-alive connections, as a Prometheus scrape would; xargs -P 32 curl spends most of its time starting 1,000 curls). Its CPU is curl's plus the exporter's during the run (/proc/PID/stat); its peak RSS is the exporter's VmHWM (larger than curl's). The exporter was started before and stopped (by PID) after the runs; ok when all $total answers say probe_success 1."
        echo "Wall, CPU (user+sys) and peak RSS from /usr/bin/time; $(nproc) CPUs, shared with the 20 nginx nodes doing the handshakes' server side; all traffic on 127.0.0.0/8."
        echo "certctl's time per probe (connect + handshake, 64 at once, from elapsed_ms in the last run's JSON): $per_probe."
        load_note
    } >"$notes"
    echo
    SCALE_OPENSSL="$((total / sample))" python3 "$BENCH/summarise.py" scan "$CSV" "$OUT/scan.md" "$notes"
    echo
    info "wrote $OUT/scan.md and $OUT/scan.csv"
}

# ---------------------------------------------------------------- section: list

LIST_COUNT=10000

# The store, inspect tree and inventory fragment are made once (tests/bench/gen_certs.py)
# into target/bench/cache and reused while their `done` file says LIST_COUNT.
list_prepare() {
    local cache="$OUT/cache/certs-$LIST_COUNT"
    if [[ "$(cat "$cache/done" 2>/dev/null)" != "$LIST_COUNT" ]]; then
        info "list: generating $LIST_COUNT certificates into $cache (once)"
        /usr/bin/python3 "$BENCH/gen_certs.py" "$cache" "$LIST_COUNT" lab edge ||
            die "generating the certificates failed"
    fi
    LIST_CACHE="$cache"
    mkdir -p "$TMP/list"
    awk -v store="$cache/store" '
        /^store[ \t]*=/ { print "store = \"" store "\""; next }
        /^\[\[certificate\]\]/ { skip = 1; next }
        /^\[/ { skip = 0 }
        !skip { print }
    ' "$LAB/certctl.toml" >"$TMP/list/certctl.toml"
    { echo; cat "$cache/certificates.toml"; } >>"$TMP/list/certctl.toml"
}

# json_count FILE KEY: length of the top-level array FILE (KEY empty) or FILE[KEY].
json_count() {
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(len(d[sys.argv[2]] if sys.argv[2] else d))' "$1" "$2" 2>/dev/null || echo 0
}

# list_one RUN CASE KEY CMD...: one timed run of CMD (a certctl command printing
# JSON whose top-level array, or array KEY, has an entry per certificate).
list_one() {
    local run="$1" case="$2" key="$3" d="$TMP/list/$2" rc=0 ok=0 good
    shift 3
    mkdir -p "$d"
    # the timed run writes to /dev/null; the count is checked on an untimed one
    timed_out 120 "$d/time" /dev/null "$d/log" "$@" || rc=$?
    if ((run == 1)); then
        "$@" >"$d/out.json" 2>/dev/null || true
        json_count "$d/out.json" "$key" >"$d/count"
    fi
    good="$(cat "$d/count")"
    # inspect's exit status is the worst finding (1 warning, 2 critical); 3 is an error
    ((rc <= 2 && good == LIST_COUNT)) && ok=1
    row list certctl "$case" "$run" "$ok" "$rc" "$d/time" "$d/log" \
        "expected exit 0..2 and $LIST_COUNT entries in the JSON, got $good"
}

section_list() {
    CSV="$OUT/list.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    list_prepare
    local run
    # warm the page cache
    "$CERTCTL" --config "$TMP/list/certctl.toml" list --json >/dev/null 2>&1 || true
    "$CERTCTL" inspect "$LIST_CACHE/inspect" --json --ca-file "$LIST_CACHE/ca.pem" >/dev/null 2>&1 || true
    for ((run = 1; run <= RUNS; run++)); do
        info "list: run $run of $RUNS"
        list_one "$run" list "" "$CERTCTL" --config "$TMP/list/certctl.toml" list --json
        list_one "$run" inspect files "$CERTCTL" inspect "$LIST_CACHE/inspect" --json \
            --ca-file "$LIST_CACHE/ca.pem"
    done

    local notes="$TMP/list.notes"
    {
        echo "$LIST_COUNT distinct certificates (own name, serial and validity; one shared leaf key, one bench CA), made once by tests/bench/gen_certs.py into target/bench/cache/certs-$LIST_COUNT (generated $(date -u -r "$LIST_CACHE/done" +%Y-%m-%d)); $RUNS runs each after one untimed warm-up; page cache warm."
        echo "\`certctl list --json >/dev/null\`: a store with $LIST_COUNT names in live/ and archive/ (one version each, meta.json beside the PEM files) and an inventory with the lab's solvers and 20 nodes plus $LIST_COUNT [[certificate]] tables in group edge (so every name is looked up on every node's deployment record)."
        echo "\`certctl inspect DIR --json --ca-file bench-ca.pem >/dev/null\`: $LIST_COUNT leaf PEM files, 100 per directory."
        echo "A run counts when the exit status is 0..2 (list: 0; inspect: its worst finding, 1 warning or 2 critical, as some certificates are near expiry) and the JSON of an untimed run of the same command has $LIST_COUNT entries."
        echo "Wall, CPU (user+sys) and peak RSS from /usr/bin/time; $(nproc) CPUs."
        load_note
    } >"$notes"
    echo
    python3 "$BENCH/summarise.py" list "$CSV" "$OUT/list.md" "$notes"
    echo
    info "wrote $OUT/list.md and $OUT/list.csv"
}

# ---------------------------------------------------------------- section: plan

PLAN_COUNTS=(10000 40000 100000)

# renew --dry-run (every certificate's live version, files and records checked,
# due dates decided, nothing ordered) beside list, at three store sizes: the
# figures show whether planning grows linearly. Stores from gen_certs.py, made once.
section_plan() {
    CSV="$OUT/plan.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    local n run
    for n in "${PLAN_COUNTS[@]}"; do
        LIST_COUNT=$n
        list_prepare
        local cfg="$TMP/list/certctl.toml"
        "$CERTCTL" --config "$cfg" renew --dry-run --json >/dev/null 2>&1 || true
        "$CERTCTL" --config "$cfg" list --json >/dev/null 2>&1 || true
        for ((run = 1; run <= RUNS; run++)); do
            info "plan: $n certificates, run $run of $RUNS"
            list_one "$run" "list-$n" "" "$CERTCTL" --config "$cfg" list --json
            list_one "$run" "renew-dry-run-$n" "" "$CERTCTL" --config "$cfg" renew --dry-run --json
        done
        rm -rf "$TMP/list"
    done
    LIST_COUNT=10000

    local notes="$TMP/plan.notes"
    {
        echo "Stores of ${PLAN_COUNTS[*]} distinct certificates made once by tests/bench/gen_certs.py into target/bench/cache/certs-N (one version each); inventory: the lab's solvers and nodes plus N [[certificate]] tables; $RUNS runs each after one untimed warm-up; page cache warm."
        echo "\`certctl renew --dry-run --json >/dev/null\`: reads every live link, meta.json, cert.pem, privkey.pem (parsed, and checked to belong to the certificate), chain.pem, fullchain.pem and the state records, and decides what is due; orders nothing. \`certctl list --json >/dev/null\` does the same checks and prints the store."
        echo "A run counts when the exit status is 0..2 and the JSON of an untimed run has N entries."
        echo "Wall, CPU (user+sys) and peak RSS from /usr/bin/time; $(nproc) CPUs."
        load_note
    } >"$notes"
    echo
    python3 "$BENCH/summarise.py" plan "$CSV" "$OUT/plan.md" "$notes"
    echo
    info "wrote $OUT/plan.md and $OUT/plan.csv"
}

# ---------------------------------------------------------------- section: load

LOAD_CERTS=200
LOAD_RUNS=3 # at most; each run renews and deploys every load certificate
# Orders in flight at once ([renewal] concurrency; certctl's default is 16).
# With 16, the lab's pebble 2.4 stopped answering new-order requests in 2 of
# 2 attempts at this section (a lock-order inversion in its in-memory store,
# seen in a goroutine dump earlier): the more orders in flight, the likelier.
LOAD_ORDERS=4
# Nodes worked on at once ([deploy] concurrency; default 20) and TLS probes in
# flight ([report] concurrency, which also bounds a rollout's verification;
# default 256). Every node's validate and reload with 200 more servers cost
# about 0.5 s of CPU; 20 of them at once, beside 256 handshakes, on two cores
# that other builds were also using (load average above 20), left some
# verification handshakes unanswered past their 3 s bound, and certctl rolled
# those nodes back (2 of 2 untimed first runs on 2026-12-04 exited 2 so).
LOAD_NODES_AT_ONCE=5
LOAD_PROBES_AT_ONCE=32

# load_fresh_ca DIR: restart pebble (its state, roots and accounts go) and drop
# the store's account, so every run starts against a CA holding no orders.
load_fresh_ca() {
    local d="$1"
    bash "$ROOT/lab/lab.sh" pebble-restart >>"$d/lab.log" 2>&1 || { tail -n 15 "$d/lab.log" >&2; die "lab.sh pebble-restart failed"; }
    rm -f "$d/store/accounts/"*.json
}

# load_why LOG: what a failed run's output says about the CA.
load_why() {
    if grep -q 'has answered none of certctl.s requests' "$1"; then
        echo "pebble stopped answering: certctl's stall breaker gave up on it (pebble 2.4's order-lock deadlock?)"
    elif grep -q 'did not answer within' "$1"; then
        echo "pebble left requests unanswered (pebble 2.4's order-lock deadlock?)"
    fi
}

# One certctl run that renews $LOAD_CERTS certificates and deploys them to
# $LAB_NODES nodes (then reports), watched by loadwatch.py; checked by served.py.
section_load() {
    CSV="$OUT/load.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    local d="$TMP/load" runs=$((RUNS < LOAD_RUNS ? RUNS : LOAD_RUNS)) run rc i
    mkdir -p "$d"
    : >"$d/lab.log"
    info "load: the lab's nodes serve $LOAD_CERTS more certificates (lab.sh load $LOAD_CERTS)"
    bash "$ROOT/lab/lab.sh" load "$LOAD_CERTS" >>"$d/lab.log" 2>&1 || { cat "$d/lab.log" >&2; die "lab.sh load $LOAD_CERTS failed"; }
    LOAD_ON=1
    # The load inventory names every running node; the section deploys to the
    # first $LAB_NODES (a larger lab may be up, e.g. for the fleet section).
    awk -v store="$d/store" -v max="$LAB_NODES" '
        /^store[ \t]*=/ { print "store = \"" store "\""; next }
        /^\[\[node\]\]/ { nodes++; skip = nodes > max; if (!skip) print; next }
        /^\[/ { skip = 0 }
        !skip { print }
    ' "$LAB/load/certctl.toml" >"$d/certctl.toml"
    printf '\n[renewal]\nconcurrency = %d\n\n[deploy]\nconcurrency = %d\n' "$LOAD_ORDERS" "$LOAD_NODES_AT_ONCE" >>"$d/certctl.toml"
    # the lab's inventory has a [report] table: the probe bound goes into it
    sed -i "s/^\[report\]\$/[report]\nconcurrency = $LOAD_PROBES_AT_ONCE/" "$d/certctl.toml"
    ((LAB_NODES == $(grep -c '^\[\[node\]\]' "$d/certctl.toml"))) || die "the lab has fewer than $LAB_NODES nodes"
    info "load: first issuance and deployment (untimed, against a fresh pebble)"
    load_fresh_ca "$d"
    rc=0
    timeout 600 "$CERTCTL" --config "$d/certctl.toml" run >"$d/warm.log" 2>&1 || rc=$?
    cp "$d/warm.log" "$OUT/load-warm.log"
    if ((rc != 0)); then
        tail -n 15 "$d/warm.log" >&2
        local why
        why="$(load_why "$d/warm.log")"
        die "the untimed first load run failed (exit $rc)${why:+: $why}"
    fi
    # From now on every certificate is due at every run.
    sed -i 's/^\[renewal\]$/[renewal]\nrenew_before = "3000d"/' "$d/certctl.toml"
    ls "$d/store/live" >"$d/names.txt"
    local addrs=()
    for ((i = 1; i <= LAB_NODES; i++)); do addrs+=("127.0.0.$((10 + i))"); done
    : >"$d/watch.all"
    for ((run = 1; run <= runs; run++)); do
        info "load: run $run of $runs"
        # A fresh pebble and a new ACME account for every run (untimed): pebble
        # keeps every order in memory and slows as they pile up; certctl
        # registers the account again, as it does after any CA reset.
        load_fresh_ca "$d"
        rc=0
        WRAP=(python3 "$BENCH/loadwatch.py" "$LAB" "$LAB_NODES" 600 "$d/watch.txt")
        timed 600 "$d/time" "$d/log" "$CERTCTL" --config "$d/certctl.toml" run || rc=$?
        WRAP=()
        local renewed deployed ok=0 served why
        renewed="$(grep -c 'renew: .* issued' "$d/log" || true)"
        deployed="$(grep -c 'deploy: .*: deployed' "$d/log" || true)"
        served="$(python3 "$BENCH/served.py" "$d/store" 'l{num}.load.example.test' "$d/names.txt" "${addrs[@]}" 2>"$d/served.err")" || true
        if ((rc == 0)) && [[ "$renewed" == "$LOAD_CERTS" && "$deployed" == "$((LOAD_CERTS * LAB_NODES))" ]] &&
            [[ "$served" == "served_ok=$((LOAD_CERTS * LAB_NODES)) "* ]]; then
            ok=1
        fi
        why="$(load_why "$d/log")"
        row load certctl "$LOAD_CERTS-certs-$LAB_NODES-nodes" "$run" "$ok" "$rc" "$d/time" "$d/log" \
            "expected exit 0, $LOAD_CERTS renewed, $((LOAD_CERTS * LAB_NODES)) deployed and served; got $renewed, $deployed, $served${why:+; $why}"
        echo "$run renewed=$renewed deployed=$deployed $served $(cat "$d/watch.txt" 2>/dev/null)${why:+ ca=\"$why\"}" >>"$d/watch.all"
        echo "  $(tail -n 1 "$d/watch.all")" >&2
        cp "$d/log" "$OUT/load-run$run.log"
    done
    bash "$ROOT/lab/lab.sh" load 0 >>"$d/lab.log" 2>&1 || info "warning: lab.sh load 0 failed; see $d/lab.log"
    LOAD_ON=0

    local notes="$TMP/load.notes"
    {
        echo "One \`certctl run\` (renew what is due, deploy, report) with $LOAD_CERTS certificates (one name each, l001..l$LOAD_CERTS.load.example.test) on the first $LAB_NODES lab nodes, every certificate due (\`renew_before = \"3000d\"\`, pebble's certificates live 5 years); after one untimed first issuance and deployment. $runs runs; each renews $LOAD_CERTS certificates through DNS-01, deploys $((LOAD_CERTS * LAB_NODES)) (certificate, node) pairs with verification, and probes them all for the report."
        echo "\`[renewal] concurrency = $LOAD_ORDERS\` (orders in flight; certctl's default is 16), \`[deploy] concurrency = $LOAD_NODES_AT_ONCE\` (nodes at once; default 20) and \`[report] concurrency = $LOAD_PROBES_AT_ONCE\` (TLS probes in flight, verification included; default 256): see the comments in run.sh. Pebble is restarted (untimed) before the first issuance and before every run, with a new ACME account each time: pebble 2.4 stopped answering new-order requests with 16 orders in flight (2 of 2 attempts at this section before). A failed run says whether certctl found the CA silent (its stall breaker, or a request timeout). Logs of each run: target/bench/load-runN.log."
        echo "Every node serves the $LOAD_CERTS load certificates besides the lab's own (lab.sh load $LOAD_CERTS): an \`nginx -t\` on a node takes about 0.25 s of CPU, and every node's validate and reload run on the same $(nproc) CPUs as certctl, pebble and bind9."
        echo "A run counts when certctl exited 0, its output names $LOAD_CERTS renewals and $((LOAD_CERTS * LAB_NODES)) deployments, and tests/bench/served.py (Python's ssl, not certctl) finds every node serving every certificate's new leaf."
        echo "Wall, CPU and peak RSS from /usr/bin/time around certctl (its ssh masters are not in its CPU)."
        echo "Watched every 50 ms by tests/bench/loadwatch.py (peaks are lower bounds): certctl's open file descriptors and soft limit, its resident set, the ssh processes, and on the nodes' side the SSH connections each node's sshd holds (pre-authentication ones included, as MaxStartups counts them) and the sessions running on them (MaxSessions bounds them per connection). Per run:"
        while read -r line; do echo "run $line"; done <"$d/watch.all"
        load_note
    } >"$notes"
    echo
    python3 "$BENCH/summarise.py" load "$CSV" "$OUT/load.md" "$notes"
    echo
    info "wrote $OUT/load.md and $OUT/load.csv"
}

# ---------------------------------------------------------------- section: fleet

FLEET_SIZES="${FLEET_SIZES:-5 20 50 100}"
FLEET_PEERS_AT=20  # the runbook and Ansible deploy one certificate at this size
FLEET_ANSIBLE_ALSO_AT=100
FLEET_CSV_HEAD="section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib,nodes,machine_cpu_s,peak_fds,leftover"

# fleet_timed TFILE LOG LINGER CMD...: CMD under fleetwatch.py (its ssh masters and
# other leftovers included, LINGER seconds allowed to end by themselves); sets RC.
fleet_timed() {
    local tfile="$1" log="$2" linger="$3"
    shift 3
    RC=0
    rm -f "$tfile"
    python3 "$BENCH/fleetwatch.py" "$tfile" 600 "$linger" "$@" >"$log" 2>&1 || RC=$?
}

# fleet_row TOOL CASE N RUN OK TFILE LOG WHY: one CSV row from fleetwatch.py's line.
fleet_row() {
    local tool="$1" case="$2" n="$3" run="$4" ok="$5" tfile="$6" log="$7" why="$8"
    local wall="" cpu="" machine="" rss="" fds="" left="" line
    line="$(cat "$tfile" 2>/dev/null || true)"
    kv() { sed -n "s/.*\<$1=\([0-9.]*\).*/\1/p" <<<"$line"; }
    wall="$(kv wall_s)" cpu="$(kv cpu_s)" machine="$(kv machine_cpu_s)"
    rss="$(kv maxrss_kib)" fds="$(kv peak_fds)" left="$(kv leftover)"
    [[ -n "$wall" ]] || ok=0
    echo "fleet,$tool,$case,$run,$ok,$RC,$wall,$cpu,$rss,$n,$machine,$fds,$left" >>"$CSV"
    if ((ok)); then
        printf '  %-8s %-9s %3d nodes run %d: %6ss wall %6ss CPU (%s ms/node) %6ss machine %5.1f MiB %4s fds\n' \
            "$tool" "$case" "$n" "$run" "$wall" "$cpu" "$(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.1f", c * 1000 / n }')" \
            "$machine" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" "$fds" >&2
    else
        # the whole output of a failed run is kept
        cp "$log" "$OUT/fleet-failed-$tool-$case-$n-run$run.log" 2>/dev/null || true
        {
            local what="exit $RC"
            ((RC == 124 || RC == 137)) && what="timed out"
            echo "  $tool $case $n nodes run $run FAILED ($what; $why; log: target/bench/fleet-failed-$tool-$case-$n-run$run.log)"
            echo "  ---- last lines of $tool's output ----"
            tail -n 15 "$log" | sed 's/^/  | /'
        } >&2
    fi
}

# fleet_config DIR N: an inventory with its own store, `www` and `media`, the first N nodes.
fleet_config() {
    local dir="$1" n="$2"
    deploy_config "$dir" "$n"
    printf '\n[[certificate]]\nname = "media"\ndomains = ["media.example.test"]\nsolver = "lab"\ngroups = ["edge"]\n' \
        >>"$dir/certctl.toml"
}

# fleet_issue DIR NAME...: new versions of NAMEs in DIR's store (untimed); sets
# SERIAL_<name> (openssl's `serial=HEX`) and VERSION_<name>.
fleet_issue() {
    local dir="$1" rc=0 name
    shift
    timeout 120 "$CERTCTL" --config "$dir/certctl.toml" issue "$@" >"$dir/issue.log" 2>&1 || rc=$?
    ((rc == 0)) || { tail -n 15 "$dir/issue.log" >&2; die "certctl issue $* failed (exit $rc)"; }
    for name in "$@"; do
        printf -v "VERSION_$name" '%s' "$(basename "$(readlink "$dir/store/live/$name")")"
        printf -v "SERIAL_$name" '%s' "$(openssl x509 -in "$dir/store/live/$name/cert.pem" -noout -serial)"
    done
}

# fleet_report_ok DIR N: the report's JSON in DIR/report.json holds 2 × N (certificate,
# node) rows, every node serving the store's version, and no finding (every node
# does serve it, nothing is near expiry: any finding would be untrue).
fleet_report_ok() {
    python3 "$BENCH/fleetreport.py" "$1/report.json" "$2" www media >"$1/report.check" 2>&1
}

fleet_certctl() {
    local run="$1" n="$2" dir="$TMP/fleet/$n" ok why
    local -a cmd=(env TMPDIR="$SSHTMP/$n" "$CERTCTL" --config "$dir/certctl.toml")

    fleet_issue "$dir" www
    fleet_timed "$dir/t.deploy1" "$dir/deploy1.log" 5 "${cmd[@]}" deploy www
    ok=0
    ((RC == 0)) && served_ok "$n" "$SERIAL_www" && ok=1
    fleet_row certctl deploy-1 "$n" "$run" "$ok" "$dir/t.deploy1" "$dir/deploy1.log" \
        "expected exit 0 and www $SERIAL_www ($VERSION_www) served by nodes 1..$n"

    fleet_issue "$dir" www media
    fleet_timed "$dir/t.deploy2" "$dir/deploy2.log" 5 "${cmd[@]}" deploy www media
    ok=0
    ((RC == 0)) && served_ok "$n" "$SERIAL_www" && served_ok "$n" "$SERIAL_media" media.example.test && ok=1
    fleet_row certctl deploy-2 "$n" "$run" "$ok" "$dir/t.deploy2" "$dir/deploy2.log" \
        "expected exit 0, www $SERIAL_www and media $SERIAL_media served by nodes 1..$n"

    # stdout (the JSON) apart from stderr
    fleet_timed "$dir/t.report" "$dir/report.log" 5 sh -c 'exec "$@" >"$0"' "$dir/report.json" \
        "${cmd[@]}" report --json
    ok=0
    ((RC == 0)) && fleet_report_ok "$dir" "$n" && ok=1
    fleet_row certctl report "$n" "$run" "$ok" "$dir/t.report" "$dir/report.log" \
        "expected exit 0 and 2 × $n rows, all served, no finding: $(tail -n 3 "$dir/report.check" 2>/dev/null | tr '\n' ' ')"

    local before after
    before="$(readlink "$dir/store/live/www") $(readlink "$dir/store/live/media")"
    fleet_timed "$dir/t.run" "$dir/run.log" 5 "${cmd[@]}" run
    after="$(readlink "$dir/store/live/www") $(readlink "$dir/store/live/media")"
    ok=0
    why="expected exit 0, no new version ($before), nothing deployed, www $SERIAL_www and media $SERIAL_media still served"
    if ((RC == 0)) && [[ "$before" == "$after" ]] && ! grep -q ': deployed' "$dir/run.log" &&
        served_ok "$n" "$SERIAL_www" && served_ok "$n" "$SERIAL_media" media.example.test; then
        ok=1
    fi
    fleet_row certctl run-idle "$n" "$run" "$ok" "$dir/t.run" "$dir/run.log" "$why"
}

# fleet_peer TOOL RUN N: the runbook or Ansible deploys a new version of `www`
# (issued untimed by certctl into the fleet store of size N).
fleet_peer() {
    local tool="$1" run="$2" n="$3" dir="$TMP/fleet/$3" pdir="$TMP/fleet/$1-$3" ok=0
    fleet_issue "$dir" www
    local version="$VERSION_www" serial="$SERIAL_www" stage="$pdir/stage"
    rm -rf "$stage"
    mkdir -p "$stage/$version"
    cp "$dir/store/live/www/"{privkey,cert,chain,fullchain}.pem "$stage/$version/"
    chmod 600 "$stage/$version/privkey.pem"
    chmod 644 "$stage/$version/"{cert,chain,fullchain}.pem
    if [[ $tool == runbook ]]; then
        fleet_timed "$pdir/time" "$pdir/log" 0 sh "$BENCH/runbook.sh" "$pdir/nodes.tsv" "$stage" \
            "$version" "$SSH_KEY" "$KNOWN_HOSTS" "$SSH_CONFIG"
    else
        local cp="$pdir/cp-$run"
        mkdir -p "$cp"
        sed "s|@CP@|$cp|" "$pdir/ansible.cfg.in" >"$pdir/ansible.cfg"
        # its ssh masters persist for ControlPersist (60 s): linger 0 ends them
        # (SIGTERM) at once, and their CPU is counted
        fleet_timed "$pdir/time" "$pdir/log" 0 env ANSIBLE_CONFIG="$pdir/ansible.cfg" \
            ANSIBLE_HOME="$pdir/home" ANSIBLE_NOCOLOR=1 ansible-playbook -i "$pdir/inventory.yml" \
            "$BENCH/deploy.yml" -e "src=$stage/$version" -e "version=$version" \
            -e "expected_serial=${serial#serial=}"
    fi
    ((RC == 0)) && served_ok "$n" "$serial" && ok=1
    fleet_row "$tool" deploy-1 "$n" "$run" "$ok" "$pdir/time" "$pdir/log" \
        "expected exit 0 and www $serial ($version) served by nodes 1..$n"
}

section_fleet() {
    CSV="$OUT/fleet.csv"
    echo "$FLEET_CSV_HEAD" >"$CSV"
    rm -f "$OUT"/fleet-failed-*.log
    local n run max=0 d rc
    for n in $FLEET_SIZES; do ((n > max)) && max=$n; done
    local have
    have="$(cat "$LAB/nodes.count" 2>/dev/null || echo 0)"
    if ((have < max)); then
        info "fleet: growing the lab to $max nodes (lab.sh up $max)"
        bash "$ROOT/lab/lab.sh" up "$max" >"$TMP/lab-fleet.log" 2>&1 ||
            { tail -n 30 "$TMP/lab-fleet.log" >&2; die "lab.sh up $max failed"; }
    fi
    SSHTMP="${SSHTMP:-$(mktemp -d /tmp/cbs.XXXX)}"
    for n in $FLEET_SIZES; do
        d="$TMP/fleet/$n"
        mkdir -p "$SSHTMP/$n"
        info "fleet: preparing $n nodes (untimed: issue www and media, deploy both)"
        fleet_config "$d" "$n"
        fleet_issue "$d" www media
        rc=0
        TMPDIR="$SSHTMP/$n" timeout 300 "$CERTCTL" --config "$d/certctl.toml" deploy www media \
            >"$d/warm.log" 2>&1 || rc=$?
        ((rc == 0)) || { tail -n 15 "$d/warm.log" >&2; die "warm-up deploy to $n nodes failed (exit $rc)"; }
        if ((n == FLEET_PEERS_AT || n == FLEET_ANSIBLE_ALSO_AT)); then peer_files "$TMP/fleet" "$n"; fi
        for ((run = 1; run <= RUNS; run++)); do
            info "fleet: $n nodes, run $run of $RUNS"
            fleet_certctl "$run" "$n"
            if ((n == FLEET_PEERS_AT)); then
                fleet_peer runbook "$run" "$n"
                fleet_peer ansible "$run" "$n"
            elif ((n == FLEET_ANSIBLE_ALSO_AT && run == 1)); then
                fleet_peer ansible "$run" "$n"
            fi
        done
        # Where a deploy's time goes, node by node: one more deploy of one
        # certificate with -vv (not in the table); its log is kept.
        fleet_issue "$d" www
        rc=0
        TMPDIR="$SSHTMP/$n" timeout 300 "$CERTCTL" -vv --color never --config "$d/certctl.toml" \
            deploy www >"$OUT/fleet-vv-$n.log" 2>&1 || rc=$?
        if ((rc == 0)) && served_ok "$n" "$SERIAL_www"; then
            echo "$n" >>"$TMP/fleet.phased"
        else
            info "fleet: the -vv deploy to $n nodes failed (exit $rc); no phase breakdown for it"
        fi
    done

    local notes="$TMP/fleet.notes" sizes=()
    mapfile -t sizes <"$TMP/fleet.phased" 2>/dev/null || true
    {
        echo "Per size N (the first N lab nodes; $RUNS run(s) each), certctl with its default [deploy] settings (concurrency 20, first node as canary) and an inventory of two certificates, \`www\` (www.example.test, example.test) and \`media\` (media.example.test), with its own store: deploy-1 = \`certctl deploy www\` of a new version issued (untimed) just before; deploy-2 = \`certctl deploy www media\`, both new; report = \`certctl report --json\` (2 × N certificate-node pairs); run-idle = \`certctl run\` with nothing due and everything deployed."
        echo "A run counts only if the tool exited 0 and afterwards every node served the new serial for every SNI name deployed (openssl s_client, untimed); the report only if its JSON has 2 × N rows, each node serving the store's version, and no finding (tests/bench/fleetreport.py: all true, so any finding would be false); run-idle only if it made no version, deployed nothing and the nodes still serve what they did."
        echo "Peers (deploy-1 only): the runbook (tests/bench/runbook.sh, node after node, no verification) and ansible-core (tests/bench/deploy.yml, forks 20, pipelining) at $FLEET_PEERS_AT nodes, Ansible also once at $FLEET_ANSIBLE_ALSO_AT."
        echo "Measured by tests/bench/fleetwatch.py, a child subreaper: wall until the tool exited; CPU = user+sys of the tool and every process it started, its ssh ControlPersist masters included (they are reparented to the watcher and reaped by it; Ansible's are stopped with SIGTERM when it exits, then counted); machine = CPU seconds all $(nproc) CPUs were busy over the wall time (/proc/stat), whatever ran, the lab's sshd and nginx included; peak RSS = the tool's own largest process; peak fds = the tool's own open file descriptors, sampled every 20 ms."
        echo "Targets (printed, never asserted): a verified deploy to 100 nodes ≤ 10 s; report over 100 nodes × 2 certificates ≤ 3 s with no untrue finding; certctl's CPU ≤ 20 ms per node for a deploy."
        if ((${#sizes[@]})); then
            echo "Per-phase breakdown from one more \`certctl -vv deploy www\` per size (target/bench/fleet-vv-N.log), node by node: see the second table."
        fi
        echo "$(nproc) CPUs; all traffic on 127.0.0.0/8; the lab's nodes share these CPUs with certctl."
        load_note
    } >"$notes"
    local phase_args=()
    for n in "${sizes[@]}"; do phase_args+=("$n=$OUT/fleet-vv-$n.log"); done
    echo
    python3 "$BENCH/summarise.py" fleet "$CSV" "$OUT/fleet.md" "$notes" "${phase_args[@]}"
    echo
    info "wrote $OUT/fleet.md and $OUT/fleet.csv"
}


# ---------------------------------------------------------------- section: persist

# persist_config DIR DIRECTORY SOLVER NAME...: an inventory in DIR for the FAKE CA at
# DIRECTORY, one certificate `bench` for NAMEs solved by SOLVER (`persist`, which has
# no DNS credentials, or the lab's rfc2136 `lab`).
persist_config() {
    local dir="$1" directory="$2" solver="$3"
    shift 3
    mkdir -p "$dir"
    {
        echo "store = \"$dir/store\""
        echo "[account]"
        echo "directory = \"$directory\""
        echo "[solvers.persist]"
        echo 'type = "persist"'
        echo 'resolver = "127.0.0.1:53"'
        if [[ "$solver" == lab ]]; then
            awk '/^\[solvers.lab\]/ { on = 1 } /^$/ { on = 0 } on' "$LAB/certctl.toml"
        fi
        echo "[[certificate]]"
        echo 'name = "bench"'
        printf 'domains = ['
        local n sep=""
        for n in "$@"; do printf '%s"%s"' "$sep" "$n"; sep=", "; done
        echo "]"
        echo "solver = \"$solver\""
    } >"$dir/certctl.toml"
}

# nsupdate_lab COMMANDS: one signed UPDATE to the lab's primary.
nsupdate_lab() {
    printf 'server 127.0.0.1\n%ssend\n' "$1" | nsupdate -k "$LAB/named/tsig.key"
}

PERSIST_NAMES=()
FAKE_PID=""
section_persist() {
    CSV="$OUT/persist.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    info "persist: building the FAKE ACME CA (fake-acme, release)"
    (cd "$ROOT" && cargo build --release -q -p certctl-lab-tests --bin fake-acme) >"$TMP/fake-build.log" 2>&1 ||
        { tail -n 20 "$TMP/fake-build.log" >&2; die "cargo build of fake-acme failed"; }
    local fifo="$TMP/fake-acme.out"
    "$ROOT/target/release/fake-acme" >"$fifo" 2>"$TMP/fake-acme.err" &
    FAKE_PID=$!
    local directory="" i
    for ((i = 0; i < 100; i++)); do
        directory="$(head -n 1 "$fifo" 2>/dev/null || true)"
        [[ -n "$directory" ]] && break
        sleep 0.05
    done
    [[ "$directory" == http://127.0.0.1:* ]] || die "the FAKE ACME CA did not start"
    # Warm-up: one account, registered by `persist-record`, copied into every run's store.
    local warm="$TMP/persist/warm"
    persist_config "$warm" "$directory" persist "warm-$STAMP.example.test"
    "$CERTCTL" --config "$warm/certctl.toml" persist-record >/dev/null ||
        die "persist-record (account registration) failed"
    local run name dir value rc
    for ((run = 1; run <= RUNS; run++)); do
        info "persist: run $run of $RUNS"
        # dns-persist-01: the record is published once, before (untimed), as a user would.
        name="p$run-$STAMP.example.test"
        dir="$TMP/persist/persist-$run"
        persist_config "$dir" "$directory" persist "$name"
        mkdir -m 700 "$dir/store"
        cp -a "$warm/store/accounts" "$dir/store/accounts"
        value="$("$CERTCTL" --config "$dir/certctl.toml" persist-record --json --dry-run |
            python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["value"])')"
        PERSIST_NAMES+=("_validation-persist.$name")
        nsupdate_lab "update add _validation-persist.$name 60 TXT \"$value\"
"
        for ((i = 0; i < 100; i++)); do
            dig +short +norec @127.0.0.2 TXT "_validation-persist.$name" | grep -q accounturi && break
            sleep 0.05
        done
        rc=0
        WRAP=()
        timed 120 "$dir/time" "$dir/log" "$CERTCTL" --config "$dir/certctl.toml" issue bench || rc=$?
        record persist certctl dns-persist-01 "$run" "$rc" "$dir/time" "$dir/log" \
            "$dir/store/live/bench/fullchain.pem" "$name"
        # dns-01 through the lab's rfc2136 solver, same FAKE CA, same account.
        name="d$run-$STAMP.example.test"
        dir="$TMP/persist/dns01-$run"
        persist_config "$dir" "$directory" lab "$name"
        mkdir -m 700 "$dir/store"
        cp -a "$warm/store/accounts" "$dir/store/accounts"
        rc=0
        timed 120 "$dir/time" "$dir/log" "$CERTCTL" --config "$dir/certctl.toml" issue bench || rc=$?
        record persist certctl dns-01 "$run" "$rc" "$dir/time" "$dir/log" \
            "$dir/store/live/bench/fullchain.pem" "$name"
    done
    persist_stop
    {
        echo "# dns-persist-01 vs dns-01 against the same FAKE ACME CA"
        echo
        echo "One-name issuance, \`certctl issue bench\`, $RUNS runs each, interleaved; fresh names every run; the account registered once (untimed) and copied into each run's store."
        echo "dns-persist-01: the \`_validation-persist\` record is published before the run (untimed; that is the point of it) and the run writes no DNS. dns-01: the lab's rfc2136 solver writes, waits for both nameservers, cleans up."
        echo "The CA is the project's FAKE (tests/src/fake_acme.rs): validates synchronously by asking the lab's bind9, so CA-side latency is near zero; the figures compare the client-side work of the two challenges, not a real CA."
        echo
        python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["ok"] == "1"]
med = {}
print("| challenge | runs ok | median wall s | median CPU s | median max RSS MiB |")
print("|---|---|---|---|---|")
for case in ["dns-persist-01", "dns-01"]:
    rs = [r for r in rows if r["case"] == case]
    if not rs:
        print(f"| {case} | 0 | - | - | - |")
        continue
    w = statistics.median(float(r["wall_s"]) for r in rs)
    c = statistics.median(float(r["cpu_s"]) for r in rs)
    m = statistics.median(float(r["maxrss_kib"]) for r in rs) / 1024
    med[case] = w
    print(f"| {case} | {len(rs)} | {w:.2f} | {c:.2f} | {m:.1f} |")
if len(med) == 2 and med["dns-persist-01"] > 0:
    print()
    print(f"Ratio of medians (wall): dns-01 / dns-persist-01 = {med['dns-01'] / med['dns-persist-01']:.2f}")
PY
        echo
        load_note
    } >"$OUT/persist.md"
    cat "$OUT/persist.md"
    info "wrote $OUT/persist.md and $OUT/persist.csv"
}

# Stops the FAKE CA and removes the records the section published (the zone is shared).
persist_stop() {
    [[ -n "$FAKE_PID" ]] && { kill "$FAKE_PID" 2>/dev/null || true; wait "$FAKE_PID" 2>/dev/null || true; }
    FAKE_PID=""
    local n
    for n in "${PERSIST_NAMES[@]}"; do
        nsupdate_lab "update delete $n TXT
" || true
    done
    PERSIST_NAMES=()
}

# ---------------------------------------------------------------- section: store

STORE_CERTS=50
STORE_NODES=20

# store_config DIR TABLE: the lab's inventory with STORE_CERTS one-name
# certificates and no node (renew only), its store replaced by TABLE (a
# `store = "..."` line or an etcd [store] table).
store_config() {
    local dir="$1" table="$2" i
    mkdir -p "$dir"
    awk '
        /^store[ \t]*=/ { next }
        /^\[\[certificate\]\]/ || /^\[\[node\]\]/ { skip = 1; next }
        /^\[/ { skip = 0 }
        !skip { print }
    ' "$LAB/certctl.toml" >"$dir/certctl.toml"
    {
        # pebble 2.4 deadlocks with many orders of one account in flight
        printf '\n[renewal]\nconcurrency = 4\n'
        for ((i = 1; i <= STORE_CERTS; i++)); do
            printf '\n[[certificate]]\nname = "s%03d"\ndomains = ["s%03d-%s.example.test"]\nsolver = "lab"\n' "$i" "$i" "$STAMP"
        done
    } >>"$dir/certctl.toml"
    store_table "$dir/certctl.toml" "$table"
}

# etcd_table PREFIX: the [store] table for the lab's etcd under PREFIX.
etcd_table() {
    local list
    list="$(bash "$ROOT/lab/lab.sh" etcd endpoints | sed 's/[^,]*/"&"/g; s/,/, /g')"
    printf '[store]\ntype = "etcd"\nendpoints = [%s]\nprefix = "%s"\nkey_file = "%s"\n' "$list" "$1" "$TMP/store/data.key"
}

# store_report_config DIR TABLE: the lab's inventory (www, media, wild) on the
# first STORE_NODES nodes, its store replaced by TABLE.
store_report_config() {
    local dir="$1" table="$2"
    mkdir -p "$dir"
    awk -v max="$STORE_NODES" '
        /^store[ \t]*=/ { next }
        /^\[\[node\]\]/ { nodes++; skip = nodes > max; if (!skip) print; next }
        /^\[/ { skip = 0 }
        !skip { print }
    ' "$LAB/certctl.toml" >"$dir/certctl.toml"
    store_table "$dir/certctl.toml" "$table"
}

# store_table FILE TABLE: a `store = "..."` line goes first (a top-level key),
# a [store] table last.
store_table() {
    if [[ $2 == "store = "* ]]; then
        sed -i "1i $2" "$1"
    else
        printf '\n%s\n' "$2" >>"$1"
    fi
}

section_store() {
    CSV="$OUT/store.csv"
    echo "section,tool,case,run,ok,rc,wall_s,cpu_s,maxrss_kib" >"$CSV"
    local d="$TMP/store" run rc backend n
    mkdir -p "$d"
    info "store: the lab's 3-member etcd cluster (lab.sh etcd up)"
    bash "$ROOT/lab/lab.sh" etcd up >"$d/etcd.log" 2>&1 || { cat "$d/etcd.log" >&2; die "lab.sh etcd up failed"; }
    "$CERTCTL" store keygen "$d/data.key" >/dev/null || die "certctl store keygen failed"

    # renew: STORE_CERTS certificates into an empty store, a new store and
    # account every run, directory and etcd in turn.
    for ((run = 1; run <= RUNS; run++)); do
        for backend in dir etcd; do
            local rd="$d/renew-$backend-$run"
            if [[ $backend == dir ]]; then
                store_config "$rd" "store = \"$rd/store\""
            else
                store_config "$rd" "$(etcd_table "/certctl-bench/$STAMP/renew-$run/")"
            fi
            rc=0
            timed 600 "$rd/time" "$rd/log" "$CERTCTL" --config "$rd/certctl.toml" renew || rc=$?
            n="$("$CERTCTL" --config "$rd/certctl.toml" list --json 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if c.get("version")))' 2>/dev/null || echo 0)"
            local ok=0
            ((rc == 0 && n == STORE_CERTS)) && ok=1
            row store "certctl-$backend" "renew-$STORE_CERTS" "$run" "$ok" "$rc" "$rd/time" "$rd/log" \
                "expected exit 0 and $STORE_CERTS stored certificates, got $n"
        done
    done

    # report: the lab's 3 certificates on STORE_NODES nodes, deployed once from
    # a directory store, the same store imported into etcd.
    info "store: deploying the lab's certificates to $STORE_NODES nodes (untimed)"
    store_report_config "$d/rep-dir" "store = \"$d/rep-dir/store\""
    store_report_config "$d/rep-etcd" "$(etcd_table "/certctl-bench/$STAMP/report/")"
    "$CERTCTL" --config "$d/rep-dir/certctl.toml" run --no-notify >"$d/rep-warm.log" 2>&1 ||
        { tail -n 15 "$d/rep-warm.log" >&2; die "the untimed run for the report failed"; }
    "$CERTCTL" --config "$d/rep-etcd/certctl.toml" store import "$d/rep-dir/store" >"$d/import.log" 2>&1 ||
        { cat "$d/import.log" >&2; die "store import into etcd failed"; }
    for ((run = 1; run <= RUNS; run++)); do
        for backend in dir etcd; do
            local rd="$d/rep-$backend"
            rc=0
            timed 120 "$rd/time-$run" "$rd/log-$run" "$CERTCTL" --config "$rd/certctl.toml" report --json || rc=$?
            local sev ok=0
            sev="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["severity"])' "$rd/log-$run" 2>/dev/null || echo none)"
            ((rc == 0)) && [[ $sev == ok ]] && ok=1
            row store "certctl-$backend" "report-$STORE_NODES-nodes" "$run" "$ok" "$rc" "$rd/time-$run" "$rd/log-$run" \
                "expected exit 0 and severity ok, got $sev"
        done
    done

    local notes="$TMP/store.notes"
    {
        echo "renew-$STORE_CERTS: \`certctl renew\` of $STORE_CERTS one-name certificates (DNS-01 against pebble + bind9) into an empty store, with a new ACME account each run; \`[renewal] concurrency = 4\` (pebble 2.4 deadlocks with many orders of one account in flight). The etcd store is the lab's 3-member cluster (lab.sh etcd up, loopback), one prefix per run, keys sealed with a data key file."
        echo "report-$STORE_NODES-nodes: \`certctl report --json\` over the lab's 3 certificates on $STORE_NODES nodes (store, node state records and a TLS probe of every name on every node), the directory store as deployed by one untimed run, and the same store imported into etcd (\`certctl store import\`). A run counts when the report exits 0 with severity ok."
        echo "Wall, CPU and peak RSS from /usr/bin/time around certctl; directory and etcd runs alternate, so both see the same machine."
        load_note
    } >"$notes"
    echo
    python3 "$BENCH/summarise.py" store "$CSV" "$OUT/store.md" "$notes"
    echo
    info "wrote $OUT/store.md and $OUT/store.csv"
}

# ---------------------------------------------------------------- main

# The machine may be shared (other lab tests, builds): say how busy it was.
LOAD0=""
load_note() {
    echo "1-minute load average when the section started: $LOAD0, when it ended: $(cut -d' ' -f1 /proc/loadavg) ($(nproc) CPUs)."
}

LOAD_ON=0
cleanup() {
    blackbox_stop
    persist_stop
    ((LOAD_ON == 0)) || bash "$ROOT/lab/lab.sh" load 0 >/dev/null 2>&1 || true
    [[ -n "${TMP:-}" && -d "$TMP" ]] && rm -rf "$TMP"
    [[ -n "${SSHTMP:-}" && -d "$SSHTMP" ]] && rm -rf "$SSHTMP"
    return 0
}

main() {
    parse_args "$@"
    [[ $(id -u) -eq 0 ]] || die "run as root: the lab needs it, and lego runs in a mount namespace"
    ensure_packages
    TMP="$(mktemp -d /tmp/certctl-bench.XXXXXX)"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    STAMP="$(date +%s)"
    mkdir -p "$OUT"
    build_certctl
    start_lab
    local s
    for s in "${SECTIONS[@]}"; do
        [[ -z "$ONLY" || "$ONLY" == "$s" ]] || continue
        LOAD0="$(cut -d' ' -f1 /proc/loadavg)"
        "section_$s"
    done
}

main "$@"
