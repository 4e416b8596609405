#!/usr/bin/env bash
# certctl test lab: pebble + bind9 (primary/secondary) + N edge nodes (sshd+nginx),
# all on 127.0.0.0/8. See lab/README.md.
set -euo pipefail

LAB="${CERTCTL_LAB_DIR:-/tmp/certctl-lab}"
PROG="$(basename "$0")"
DEFAULT_NODES=5
MAX_NODES=100
# Nodes started (or stopped) at once: 100 at once on two cores let some miss
# wait_for's bound for their pid files; 5 still start all at once.
NODE_PARALLEL=20
CERT_NAMES=(www media wild)
TSIG_NAME="certctl-key"

usage() {
    cat <<EOF
Usage: $PROG <command> [args]

Lab state directory: \$CERTCTL_LAB_DIR (default /tmp/certctl-lab), now: $LAB

Commands:
  up [N]                  start/complete the lab with N edge nodes (default $DEFAULT_NODES, max $MAX_NODES); idempotent
  down                    stop every daemon by recorded PID, unmount node tmpfs; idempotent
  status                  one line per component (running/stopped)
  env                     print 'export VAR=...' lines (use: eval "\$($PROG env)")
  clean                   down, then remove the whole state directory

Fault injection:
  stop  named|named2|pebble|sshd I|nginx I
  start named|named2|pebble|sshd I|nginx I
  pebble-restart [--nonce-reject PCT]   restart pebble with PEBBLE_WFE_NONCEREJECT=PCT (default 0)
  pebble-check                          exit 0 if pebble's store answers, 1 if it hangs (pebble 2.4's
                                        deadlock; the next 'up' restarts it)
  disk-fill I | disk-free I             fill / free node I's certificate tmpfs
  nginx-break I | nginx-fix I           make node I's nginx config fail 'nginx -t' / undo

HA store (a real 3-member etcd cluster, members on 127.0.2.1..3, clients :2379):
  etcd up | down           start / stop all three members (data kept in \$LAB/etcd)
  etcd stop I | start I    stop / start member I (1..3): one down keeps quorum, two lose it
  etcd status | endpoints [https]
                           one line per member / the client URLs, comma-separated (https: the
                           TLS listeners on :2381, which want \$LAB/etcd/tls/client.pem)

Load:
  load N                  serve N more certificates (load001..loadN, lNNN.load.example.test) on every
                          node, with self-signed bootstrap material, and write \$LAB/load/certctl.toml
                          (its own store, the same nodes); load 0 removes them again
EOF
}

die()  { echo "$PROG: error: $*" >&2; exit 1; }
warn() { echo "$PROG: warning: $*" >&2; }
info() { echo "$*"; }

# ---------------------------------------------------------------- helpers

# show the tail of a log file on stderr
log_tail() {
    local f="$1"
    if [[ -s "$f" ]]; then
        echo "---- last lines of $f ----" >&2
        tail -n 20 "$f" >&2
        echo "----" >&2
    else
        echo "($f is empty or missing)" >&2
    fi
}

# pid_alive PIDFILE EXE-BASENAME: true if the pid file names a live process running EXE
pid_alive() {
    local pf="$1" exe="$2" pid comm
    [[ -s "$pf" ]] || return 1
    pid="$(head -n1 "$pf" 2>/dev/null | tr -dc '0-9')"
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # guard against PID reuse: the process must be the expected program
    comm="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$comm" == *"$exe"* ]] || return 1
    # a zombie is not alive
    [[ "$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)" != "Z" ]]
}

# true while PID exists and is not a zombie (PID 1 here may reap late)
proc_live() {
    kill -0 "$1" 2>/dev/null || return 1
    [[ "$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null)" != "Z" ]]
}

pid_of() { head -n1 "$1" 2>/dev/null | tr -dc '0-9'; }

# stop_pidfile PIDFILE EXE NAME: TERM, wait up to 10 s, then KILL; remove pid file
stop_pidfile() {
    local pf="$1" exe="$2" name="$3" pid i
    if pid_alive "$pf" "$exe"; then
        pid="$(pid_of "$pf")"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            proc_live "$pid" || break
            sleep 0.05
        done
        if proc_live "$pid"; then
            warn "$name (pid $pid) did not exit on TERM; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$pf"
}

# wait_for SECONDS CMD...: poll CMD every 0.05 s
wait_for() {
    local secs="$1" i n
    shift
    n=$((secs * 20))
    for ((i = 0; i < n; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    return 1
}

need_root() { [[ $(id -u) -eq 0 ]] || die "the lab must run as root (it binds port 53/22/443 and mounts tmpfs)"; }

check_node_index() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] && ((10#$1 >= 1 && 10#$1 <= MAX_NODES)) || die "node index must be 1..$MAX_NODES, got '${1:-}'"
}

node_addr() { echo "127.0.0.$((10 + $1))"; }
node_dir()  { echo "$LAB/nodes/node$1"; }

current_nodes() { cat "$LAB/nodes.count" 2>/dev/null || echo 0; }

# Take an exclusive lock for mutating commands. fd 9 must never leak into daemons:
# every daemon is started through `spawn`, which closes it.
take_lock() {
    mkdir -p "$LAB"
    exec 9>"$LAB/.lock"
    flock 9
}

# ---------------------------------------------------------------- packages

ensure_packages() {
    local -A bins=(
        [pebble]=pebble [named]=bind9 [tsig-keygen]=bind9 [dig]=bind9-dnsutils [nsupdate]=bind9-dnsutils
        [nginx]=nginx-light [/usr/sbin/sshd]=openssh-server [ssh]=openssh-client [ssh-keygen]=openssh-client
        [openssl]=openssl [curl]=curl [flock]=util-linux [ip]=iproute2
        [etcd]=etcd-server [etcdctl]=etcd-client
    )
    local b missing=()
    for b in "${!bins[@]}"; do
        if ! command -v "$b" >/dev/null 2>&1 && [[ ! -x "$b" ]] && [[ ! -x "/usr/sbin/$b" ]]; then
            missing+=("${bins[$b]}")
        fi
    done
    ((${#missing[@]})) || return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    info "installing missing packages: ${missing[*]}"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    # keep the packaged services (named on *:53, sshd on *:22) from starting during install
    local policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || rc=$?
    ((policy_created == 0)) || rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
    # packaged services must not grab our ports (no systemd here, but invoke-rc.d may start them)
    local svc
    for svc in named nginx ssh etcd; do
        if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
    done
}

check_loopback() {
    # all of 127/8 is local on Linux; verify one node address actually routes to lo
    if command -v ip >/dev/null 2>&1; then
        ip route get 127.0.0.50 2>/dev/null | grep -q ' dev lo' ||
            die "127.0.0.0/8 is not routed to lo; the lab needs the whole loopback /8"
    fi
}

# ---------------------------------------------------------------- lab CA

setup_ca() {
    local d="$LAB/ca"
    mkdir -p "$d"
    if [[ ! -s "$d/lab-ca.pem" || ! -s "$d/lab-ca.key" ]]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$d/lab-ca.key" -out "$d/lab-ca.pem" -days 3650 \
            -subj "/CN=certctl lab CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$d/openssl.log" ||
            { log_tail "$d/openssl.log"; die "creating the lab CA failed"; }
        chmod 600 "$d/lab-ca.key"
        rm -f "$d/server.pem"
    fi
    if [[ ! -s "$d/server.pem" || ! -s "$d/server.key" ]]; then
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" 2>"$d/openssl.log" ||
            { log_tail "$d/openssl.log"; die "creating the pebble server key failed"; }
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$d/server.ext"
        openssl x509 -req -in "$d/server.csr" -CA "$d/lab-ca.pem" -CAkey "$d/lab-ca.key" \
            -CAcreateserial -days 3650 -extfile "$d/server.ext" -out "$d/server.pem" 2>"$d/openssl.log" ||
            { log_tail "$d/openssl.log"; die "signing the pebble server certificate failed"; }
        chmod 600 "$d/server.key"
        rm -f "$d/server.csr"
    fi
}

# ---------------------------------------------------------------- bind9

setup_tsig() {
    local d="$LAB/named"
    mkdir -p "$d"
    if [[ ! -s "$d/tsig.key" || ! -s "$LAB/tsig.secret" ]]; then
        tsig-keygen -a hmac-sha256 "$TSIG_NAME" >"$d/tsig.key"
        local secret
        secret="$(sed -n 's/^[[:space:]]*secret "\(.*\)";.*/\1/p' "$d/tsig.key")"
        [[ -n "$secret" ]] || die "could not parse the secret from tsig-keygen output"
        (umask 077 && printf '%s' "$secret" >"$LAB/tsig.secret")
    fi
    chmod 600 "$LAB/tsig.secret" "$d/tsig.key"
    printf '%s' "$TSIG_NAME" >"$LAB/tsig.name"
}

write_zone_files() {
    local d="$LAB/named" serial
    serial="$(date +%s)"
    # static, rewritten every time
    cat >"$d/root.db" <<EOF
; Local root zone: recursion never leaves the machine.
\$TTL 3600
.               IN SOA  ns1.example.test. hostmaster.example.test. ( 1 3600 600 86400 60 )
.               IN NS   localhost.
localhost.      IN A    127.0.0.1
EOF
    if [[ ! -s "$d/example.test.db" ]]; then
        {
            cat <<EOF
\$TTL 60
@                   IN SOA  ns1.example.test. hostmaster.example.test. ( $serial 3600 600 86400 1 )
@                   IN NS   ns1.example.test.
@                   IN NS   ns2.example.test.
ns1                 IN A    127.0.0.1
ns2                 IN A    127.0.0.2
@                   IN A    127.0.0.11
www                 IN A    127.0.0.11
media               IN A    127.0.0.11
cdn                 IN A    127.0.0.11
*.cdn               IN A    127.0.0.11
deleg2              IN A    127.0.0.11
_acme-challenge.media   IN CNAME media.challenges.test.
_acme-challenge.deleg2  IN CNAME hop.example.test.
hop                 IN CNAME deleg2.challenges.test.
EOF
            local i
            for ((i = 1; i <= MAX_NODES; i++)); do
                printf 'n%-18s IN A    127.0.0.%d\n' "$i" $((10 + i))
            done
        } >"$d/example.test.db"
        rm -f "$d/example.test.db.jnl" "$LAB/named2/example.test.bk" "$LAB/named2/example.test.bk.jnl"
    fi
    if [[ ! -s "$d/challenges.test.db" ]]; then
        cat >"$d/challenges.test.db" <<EOF
\$TTL 60
@                   IN SOA  ns1.challenges.test. hostmaster.example.test. ( $serial 3600 600 86400 1 )
@                   IN NS   ns1.challenges.test.
@                   IN NS   ns2.challenges.test.
ns1                 IN A    127.0.0.1
ns2                 IN A    127.0.0.2
EOF
        rm -f "$d/challenges.test.db.jnl" "$LAB/named2/challenges.test.bk" "$LAB/named2/challenges.test.bk.jnl"
    fi
}

# common options block for both servers; $1 = dir, $2 = listen address
named_options() {
    local d="$1" addr="$2"
    cat <<EOF
options {
    directory "$d";
    pid-file "$d/named.pid";
    lock-file "$d/named.lock";
    session-keyfile "$d/session.key";
    managed-keys-directory "$d";
    dump-file "$d/cache_dump.db";
    statistics-file "$d/named.stats";
    memstatistics-file "$d/named.memstats";
    listen-on port 53 { $addr; };
    listen-on-v6 { none; };
    query-source address $addr;
    notify-source $addr;
    transfer-source $addr;
    recursion yes;
    allow-recursion { 127.0.0.0/8; };
    allow-query { any; };
    allow-query-cache { 127.0.0.0/8; };
    allow-transfer { 127.0.0.0/8; };
    dnssec-validation no;
    max-cache-size 32m;
    max-ncache-ttl 1;
    minimal-responses no;
    notify-delay 0;
    startup-notify-rate 1000;
    notify-rate 1000;
};
controls { };
logging {
    channel lab_log { file "$d/named.log" versions 2 size 5m; severity info; print-time yes; print-category yes; };
    category default { lab_log; };
    category lame-servers { null; };
};
zone "." { type primary; file "$LAB/named/root.db"; notify no; };
EOF
}

write_named_confs() {
    local d="$LAB/named" d2="$LAB/named2"
    mkdir -p "$d" "$d2"
    {
        echo "# Generated by lab/lab.sh: primary named on 127.0.0.1:53"
        echo "include \"$d/tsig.key\";"
        named_options "$d" 127.0.0.1
        local z
        for z in example.test challenges.test; do
            cat <<EOF
zone "$z" {
    type primary;
    file "$d/$z.db";
    update-policy { grant $TSIG_NAME zonesub TXT; };
    notify explicit;
    also-notify { 127.0.0.2; };
};
EOF
        done
    } >"$d/named.conf"
    {
        echo "# Generated by lab/lab.sh: secondary named on 127.0.0.2:53"
        named_options "$d2" 127.0.0.2
        local z
        for z in example.test challenges.test; do
            cat <<EOF
zone "$z" {
    type secondary;
    primaries { 127.0.0.1; };
    file "$d2/$z.bk";
    notify no;
    allow-notify { 127.0.0.0/8; };
};
EOF
        done
    } >"$d2/named.conf"
}

named_dir() { if [[ "$1" == named2 ]]; then echo "$LAB/named2"; else echo "$LAB/named"; fi; }
named_addr() { if [[ "$1" == named2 ]]; then echo 127.0.0.2; else echo 127.0.0.1; fi; }

start_named() {
    local which="$1" d addr
    d="$(named_dir "$which")"
    addr="$(named_addr "$which")"
    if pid_alive "$d/named.pid" named; then return 0; fi
    # named only binds addresses that are configured on an interface (it scans them),
    # so 127.0.0.2 needs an explicit alias on lo; sshd/nginx bind 127/8 without one.
    [[ "$addr" == 127.0.0.1 ]] || ensure_lo_alias "$addr"
    [[ -s "$d/named.conf" ]] || die "$which: no configuration; run '$PROG up' first"
    rm -f "$d/named.pid" "$d/named.lock"
    # BIND does not refresh a secondary zone loaded from its backup file until the SOA
    # refresh timer fires, so missed NOTIFYs would leave named2 stale: always re-transfer.
    [[ "$which" == named2 ]] && rm -f "$d"/*.bk "$d"/*.bk.jnl
    if ! named-checkconf "$d/named.conf" >"$d/checkconf.log" 2>&1; then
        log_tail "$d/checkconf.log"
        die "$which: named-checkconf failed for $d/named.conf"
    fi
    # named daemonizes; the parent exits only after the child has started (or failed)
    if ! named -4 -c "$d/named.conf" </dev/null >>"$d/named.out" 2>&1 8>&- 9>&-; then
        log_tail "$d/named.out"
        log_tail "$d/named.log"
        die "$which failed to start"
    fi
    if ! wait_for 10 dig +time=1 +tries=1 +norec @"$addr" SOA example.test; then
        log_tail "$d/named.log"
        die "$which started but does not answer on $addr:53"
    fi
    # a restarted secondary refreshes with some jitter: wait (best effort) until it has caught up
    if [[ "$which" == named2 ]] && pid_alive "$LAB/named/named.pid" named; then
        wait_for 5 secondary_in_sync || warn "named2 has not caught up with the primary yet"
    fi
}

secondary_in_sync() {
    local z a b
    for z in example.test challenges.test; do
        a="$(dig +time=1 +tries=1 +norec +short @127.0.0.1 SOA "$z" | awk '{print $3}')"
        b="$(dig +time=1 +tries=1 +norec +short @127.0.0.2 SOA "$z" | awk '{print $3}')"
        [[ -n "$a" && "$a" == "$b" ]] || return 1
    done
}

ensure_lo_alias() {
    local addr="$1"
    if ! ip -4 -o addr show dev lo | grep -q " inet $addr/"; then
        ip addr add "$addr/32" dev lo || die "could not add $addr/32 to lo (needed by named2)"
        echo "$addr" >>"$LAB/.lo-aliases"
    fi
}

remove_lo_aliases() {
    local addr
    [[ -s "$LAB/.lo-aliases" ]] || return 0
    sort -u "$LAB/.lo-aliases" | while read -r addr; do
        ip addr del "$addr/32" dev lo 2>/dev/null || true
    done
    rm -f "$LAB/.lo-aliases"
}

stop_named() {
    local d
    d="$(named_dir "$1")"
    stop_pidfile "$d/named.pid" named "$1"
}

setup_named() {
    setup_tsig
    write_zone_files
    write_named_confs
    start_named named
    start_named named2
}

# ---------------------------------------------------------------- pebble

write_pebble_conf() {
    local d="$LAB/pebble"
    mkdir -p "$d"
    cat >"$d/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:14000",
    "managementListenAddress": "127.0.0.1:15000",
    "certificate": "$LAB/ca/server.pem",
    "privateKey": "$LAB/ca/server.key",
    "httpPort": 5002,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
}

pebble_answers() {
    curl -fsS --max-time 2 --cacert "$LAB/ca/lab-ca.pem" https://127.0.0.1:14000/dir
}

# pebble 2.4's in-memory store can deadlock when many orders run at once (a
# lock-order inversion between the store's lock and an order's or an
# authorization's). A lookup by serial on the management port takes the
# store's lock: a working pebble answers it at once (404: no such serial), a
# deadlocked one never does, while its /dir still answers.
pebble_store_answers() {
    local code
    code="$(curl -sS --max-time 10 --cacert "$LAB/ca/lab-ca.pem" -o /dev/null -w '%{http_code}' \
        https://127.0.0.1:15000/cert-status-by-serial/1)" || return 1
    [[ "$code" == 404 || "$code" == 200 ]]
}

start_pebble() {
    local reject="${1:-0}" d="$LAB/pebble" pid
    if pid_alive "$d/pebble.pid" pebble; then
        if pebble_store_answers; then return 0; fi
        # A lab bug, not certctl's: restart it so later tests do not inherit it.
        warn "pebble's store does not answer (pebble 2.4's deadlock under many concurrent orders); restarting pebble"
        echo "=== $(date -Is) store deadlocked: restarting" >>"$d/pebble.log"
        stop_pebble
        reject="$(cat "$d/noncereject" 2>/dev/null || echo "$reject")"
    fi
    [[ -s "$d/pebble-config.json" ]] || write_pebble_conf
    rm -f "$d/pebble.pid"
    echo "$reject" >"$d/noncereject"
    echo "=== $(date -Is) start PEBBLE_WFE_NONCEREJECT=$reject" >>"$d/pebble.log"
    PEBBLE_VA_NOSLEEP=1 PEBBLE_AUTHZREUSE=0 PEBBLE_WFE_NONCEREJECT="$reject" \
        setsid pebble -config "$d/pebble-config.json" -dnsserver 127.0.0.1:53 \
        </dev/null >>"$d/pebble.log" 2>&1 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$d/pebble.pid"
    if ! wait_for 15 pebble_answers; then
        log_tail "$d/pebble.log"
        kill "$pid" 2>/dev/null || true
        rm -f "$d/pebble.pid"
        die "pebble did not answer on https://127.0.0.1:14000/dir"
    fi
    # pebble creates a new root/intermediate at each start: publish them for [report] trust
    local tmp="$LAB/pebble-roots.pem.tmp"
    if ! { curl -fsS --max-time 5 --cacert "$LAB/ca/lab-ca.pem" https://127.0.0.1:15000/roots/0 &&
        echo &&
        curl -fsS --max-time 5 --cacert "$LAB/ca/lab-ca.pem" https://127.0.0.1:15000/intermediates/0; } >"$tmp"; then
        log_tail "$d/pebble.log"
        die "could not fetch pebble's roots from https://127.0.0.1:15000"
    fi
    sed -i '/^$/d' "$tmp"
    mv "$tmp" "$LAB/pebble-roots.pem"
}

stop_pebble() { stop_pidfile "$LAB/pebble/pebble.pid" pebble pebble; }

# ---------------------------------------------------------------- ssh client side

# The nodes are logged into as `certctl-edge`: uid 0 (nginx reload needs it)
# with /bin/sh as its shell and an empty home. Root's login here runs a bash
# whose ~/.bashrc starts pyenv (~0.2 s for every SSH command), which no edge
# node's deploy user would; this keeps the lab's SSH cost realistic.
EDGE_USER=certctl-edge
ensure_edge_user() {
    mkdir -p "$LAB/home"
    if ! getent passwd "$EDGE_USER" >/dev/null; then
        useradd -o -u 0 -g 0 -M -d "$LAB/home" -s /bin/sh "$EDGE_USER" 2>/dev/null \
            || die "cannot create the lab user $EDGE_USER"
    fi
    # '*': no password, but not locked (sshd refuses locked accounts).
    usermod -p '*' -d "$LAB/home" "$EDGE_USER" 2>/dev/null || true
}

setup_ssh_client() {
    local d="$LAB/ssh"
    mkdir -p "$d"
    chmod 700 "$d"
    if [[ ! -s "$d/id_ed25519" ]]; then
        ssh-keygen -q -t ed25519 -N '' -C "certctl-lab" -f "$d/id_ed25519" >/dev/null
    fi
    chmod 600 "$d/id_ed25519"
    cp "$d/id_ed25519.pub" "$d/authorized_keys"
    chmod 600 "$d/authorized_keys"
    cat >"$d/config.tmp" <<'EOF'
# ssh client settings for the lab's nodes, written by lab/lab.sh. certctl reads
# this file (ssh_config in the lab's certctl.toml), and so do the runbook and
# Ansible in tests/bench. OpenSSH 9.2's default key exchange, the post-quantum
# hybrid sntrup761x25519-sha512, costs the client about 70 ms of CPU for each
# new connection; with 20 nodes sharing two cores with the controller that is
# most of a rollout. X25519 alone is the classical choice.
KexAlgorithms curve25519-sha256
EOF
    mv "$d/config.tmp" "$d/config"
    chmod 644 "$d/config"
    mkdir -p /run/sshd
    chmod 755 /run/sshd
}

write_known_hosts() {
    local n="$1" i tmp="$LAB/ssh/known_hosts.tmp"
    : >"$tmp"
    for ((i = 1; i <= n; i++)); do
        printf '%s %s\n' "$(node_addr "$i")" "$(cut -d' ' -f1,2 "$(node_dir "$i")/ssh_host_ed25519_key.pub")" >>"$tmp"
    done
    mv "$tmp" "$LAB/ssh/known_hosts"
    chmod 644 "$LAB/ssh/known_hosts"
}

# ---------------------------------------------------------------- bootstrap certificates

domains_of() {
    case "$1" in
        www) echo "www.example.test example.test" ;;
        media) echo "media.example.test" ;;
        wild) echo "*.cdn.example.test cdn.example.test" ;;
    esac
}

# self-signed bootstrap certificates, generated once and copied to each node
setup_bootstrap_certs() {
    local name d san dom
    for name in "${CERT_NAMES[@]}"; do
        d="$LAB/bootstrap/$name"
        [[ -s "$d/fullchain.pem" ]] && continue
        mkdir -p "$d"
        local -a doms
        read -ra doms <<<"$(domains_of "$name")"
        san=""
        for dom in "${doms[@]}"; do san+="${san:+,}DNS:$dom"; done
        self_signed "$d" "${doms[0]}" "$san"
    done
}

# self_signed DIR CN SAN: a self-signed P-256 version in DIR (privkey, cert,
# an empty chain, fullchain), valid 30 days
self_signed() {
    local d="$1"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/privkey.pem" -out "$d/cert.pem" -days 30 \
        -subj "/CN=$2" -addext "subjectAltName=$3" 2>"$d/openssl.log") ||
        { log_tail "$d/openssl.log"; die "bootstrap certificate for $2 failed"; }
    chmod 644 "$d/cert.pem"
    chmod 600 "$d/privkey.pem"
    : >"$d/chain.pem"
    cp "$d/cert.pem" "$d/fullchain.pem"
}

# ---------------------------------------------------------------- edge nodes

write_node_configs() {
    local i="$1" nd addr base
    nd="$(node_dir "$i")"
    addr="$(node_addr "$i")"
    base="$nd/certs"
    mkdir -p "$nd/nginx/tmp"
    cat >"$nd/sshd_config" <<EOF
# Generated by lab/lab.sh for node$i
ListenAddress $addr:22
AddressFamily inet
HostKey $nd/ssh_host_ed25519_key
PidFile $nd/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile $LAB/ssh/authorized_keys
MaxSessions 10
MaxStartups 10:30:100
LogLevel ERROR
UseDNS no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
EOF
    [[ -e "$nd/nginx/extra.conf" ]] || : >"$nd/nginx/extra.conf"
    [[ -e "$nd/nginx/load.conf" ]] || : >"$nd/nginx/load.conf"
    {
        cat <<EOF
# Generated by lab/lab.sh for node$i
worker_processes 1;
pid $nd/nginx/nginx.pid;
error_log $nd/nginx/error.log warn;
daemon on;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $nd/nginx/tmp/body;
    proxy_temp_path $nd/nginx/tmp/proxy;
    fastcgi_temp_path $nd/nginx/tmp/fastcgi;
    uwsgi_temp_path $nd/nginx/tmp/uwsgi;
    scgi_temp_path $nd/nginx/tmp/scgi;
    default_type text/plain;
    server_names_hash_bucket_size 128;
    include $nd/nginx/extra.conf;
    include $nd/nginx/load.conf;
EOF
        local name ds
        for name in "${CERT_NAMES[@]}"; do
            ds="$(domains_of "$name")"
            cat <<EOF
    server {
        listen $addr:443 ssl$([[ $name == www ]] && echo " default_server");
        server_name $ds;
        ssl_certificate $base/live/$name/fullchain.pem;
        ssl_certificate_key $base/live/$name/privkey.pem;
        return 200 "node$i\n";
    }
EOF
        done
        echo "}"
    } >"$nd/nginx/nginx.conf"
}

mount_node_certs() {
    local i="$1" nd base
    nd="$(node_dir "$i")"
    base="$nd/certs"
    mkdir -p "$base"
    if mountpoint -q "$base"; then return 0; fi
    if mount -t tmpfs -o size=4m,mode=0755 tmpfs "$base" 2>"$nd/mount.err"; then
        touch "$nd/.tmpfs"
    else
        warn "node$i: could not mount a tmpfs on $base ($(cat "$nd/mount.err")); using a plain directory (disk-fill will fill the real disk!)"
        rm -f "$nd/.tmpfs"
    fi
}

bootstrap_node_certs() {
    local i="$1" base name
    base="$(node_dir "$i")/certs"
    mkdir -p "$base/archive" "$base/live"
    for name in "${CERT_NAMES[@]}"; do
        if [[ ! -e "$base/live/$name" ]]; then
            mkdir -p "$base/archive/$name/bootstrap"
            cp -p "$LAB/bootstrap/$name/"{cert,chain,fullchain,privkey}.pem "$base/archive/$name/bootstrap/"
            chmod 600 "$base/archive/$name/bootstrap/privkey.pem"
            ln -sfn "../archive/$name/bootstrap" "$base/live/$name"
        fi
    done
}

nginx_cmd() { local nd; nd="$(node_dir "$1")"; shift; nginx -p "$nd/nginx/" -c nginx.conf "$@"; }

start_nginx() {
    local i="$1" nd
    nd="$(node_dir "$i")"
    if pid_alive "$nd/nginx/nginx.pid" nginx; then return 0; fi
    rm -f "$nd/nginx/nginx.pid"
    if ! nginx_cmd "$i" -e "$nd/nginx/error.log" </dev/null >>"$nd/nginx/start.log" 2>&1 8>&- 9>&-; then
        log_tail "$nd/nginx/error.log"
        die "node$i: nginx failed to start"
    fi
    wait_for 10 pid_alive "$nd/nginx/nginx.pid" nginx || { log_tail "$nd/nginx/error.log"; die "node$i: nginx did not write its pid file"; }
}

stop_nginx() {
    local nd
    nd="$(node_dir "$1")"
    stop_pidfile "$nd/nginx/nginx.pid" nginx "node$1 nginx"
}

start_sshd() {
    local i="$1" nd
    nd="$(node_dir "$i")"
    if pid_alive "$nd/sshd.pid" sshd; then return 0; fi
    rm -f "$nd/sshd.pid"
    mkdir -p /run/sshd
    if ! /usr/sbin/sshd -f "$nd/sshd_config" -E "$nd/sshd.log" </dev/null >>"$nd/sshd.log" 2>&1 8>&- 9>&-; then
        log_tail "$nd/sshd.log"
        die "node$i: sshd failed to start"
    fi
    wait_for 10 pid_alive "$nd/sshd.pid" sshd || { log_tail "$nd/sshd.log"; die "node$i: sshd did not write its pid file"; }
}

stop_sshd() {
    local nd
    nd="$(node_dir "$1")"
    stop_pidfile "$nd/sshd.pid" sshd "node$1 sshd"
}

# full bring-up of one node (runs in a background subshell)
node_up() {
    local i="$1" nd
    nd="$(node_dir "$i")"
    mkdir -p "$nd"
    if [[ ! -s "$nd/ssh_host_ed25519_key" ]]; then
        ssh-keygen -q -t ed25519 -N '' -C "node$i" -f "$nd/ssh_host_ed25519_key" >/dev/null
    fi
    write_node_configs "$i"
    mount_node_certs "$i"
    bootstrap_node_certs "$i"
    load_node "$i" "$(load_count)"
    start_sshd "$i"
    start_nginx "$i"
}

node_down() {
    local i="$1" nd
    nd="$(node_dir "$i")"
    [[ -d "$nd" ]] || return 0
    stop_nginx "$i"
    stop_sshd "$i"
    if mountpoint -q "$nd/certs"; then
        umount "$nd/certs" || umount -l "$nd/certs" || warn "could not unmount $nd/certs"
    fi
    rm -f "$nd/.tmpfs"
}

# node_up_done I PID: wait for node I's bring-up; its log on failure, warnings always
node_up_done() {
    local i="$1" rc=0
    wait "$2" || rc=$?
    if ((rc != 0)); then
        echo "node$i failed:" >&2
        cat "$LAB/nodes/.up-$i.log" >&2
    else
        # surface warnings (e.g. tmpfs fallback)
        grep -h 'warning' "$LAB/nodes/.up-$i.log" >&2 || true
    fi
    rm -f "$LAB/nodes/.up-$i.log"
    return "$rc"
}

setup_nodes() {
    local n="$1" i d pids=() failed=0
    # remove nodes beyond the new count
    for d in "$LAB"/nodes/node*; do
        [[ -d "$d" ]] || continue
        i="${d##*/node}"
        if [[ "$i" =~ ^[0-9]+$ ]] && ((i > n)); then (node_down "$i" && rm -rf "$d") & pids+=($!); fi
    done
    ((${#pids[@]} == 0)) || wait "${pids[@]}" || true
    pids=()
    setup_bootstrap_certs
    mkdir -p "$LAB/nodes"
    # at most NODE_PARALLEL bring-ups at once; node i waits for node i - NODE_PARALLEL
    local waited=0
    for ((i = 1; i <= n; i++)); do
        if ((i - waited > NODE_PARALLEL)); then
            waited=$((waited + 1))
            node_up_done "$waited" "${pids[waited - 1]}" || failed=1
        fi
        (node_up "$i") >"$LAB/nodes/.up-$i.log" 2>&1 &
        pids+=($!)
    done
    for ((i = waited + 1; i <= n; i++)); do
        node_up_done "$i" "${pids[i - 1]}" || failed=1
    done
    ((failed == 0)) || die "some edge nodes failed to start"
    echo "$n" >"$LAB/nodes.count"
    write_known_hosts "$n"
}

# ---------------------------------------------------------------- generated files

# inventory_header STORE: the settings every lab inventory shares
inventory_header() {
    cat <<EOF
# Generated by lab/lab.sh for the lab; do not edit.
store = "$1"

[account]
directory = "https://127.0.0.1:14000/dir"
contact = ["mailto:ops@example.test"]
ca_bundle = "$LAB/ca/lab-ca.pem"

[report]
trust = ["$LAB/pebble-roots.pem"]

[solvers.lab]
type = "rfc2136"
server = "127.0.0.1:53"
tsig_key = "$TSIG_NAME"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "$LAB/tsig.secret"
resolver = "127.0.0.1:53"
EOF
}

# inventory_nodes N: one [[node]] table per node
inventory_nodes() {
    local n="$1" i nd
    echo
    echo "# one per node"
    for ((i = 1; i <= n; i++)); do
        nd="$(node_dir "$i")"
        ((i == 1)) || echo
        cat <<EOF
[[node]]
name = "node$i"
address = "$(node_addr "$i")"
user = "$EDGE_USER"
identity_file = "$LAB/ssh/id_ed25519"
known_hosts = "$LAB/ssh/known_hosts"
ssh_config = "$LAB/ssh/config"
groups = ["edge"]
base_dir = "$nd/certs"
validate = "nginx -t -q -p $nd/nginx/ -c nginx.conf"
reload = "nginx -p $nd/nginx/ -c nginx.conf -s reload"
EOF
    done
}

write_inventory() {
    local n="$1" tmp="$LAB/certctl.toml.tmp"
    {
        inventory_header "$LAB/store"
        cat <<EOF

[[certificate]]
name = "www"
domains = ["www.example.test", "example.test"]
solver = "lab"
groups = ["edge"]

[[certificate]]
name = "media"
domains = ["media.example.test"]
solver = "lab"
groups = ["edge"]

[[certificate]]
name = "wild"
domains = ["*.cdn.example.test", "cdn.example.test"]
solver = "lab"
groups = ["edge"]
EOF
        inventory_nodes "$n"
    } >"$tmp"
    mv "$tmp" "$LAB/certctl.toml"
    mkdir -p "$LAB/store"
    # a larger lab has more nodes: the load inventory follows
    (($(load_count) == 0)) || write_load_inventory "$(load_count)" "$n"
}

# ---------------------------------------------------------------- load

# how many load certificates the nodes serve (lab.sh load N)
load_count() { cat "$LAB/load/count" 2>/dev/null || echo 0; }

load_name() { printf 'load%03d' "$1"; }
load_domain() { printf 'l%03d.load.example.test' "$1"; }

# write_load_inventory K N: K load certificates on N nodes, store $LAB/load/store
write_load_inventory() {
    local k="$1" n="$2" j tmp="$LAB/load/certctl.toml.tmp"
    {
        inventory_header "$LAB/load/store"
        for ((j = 1; j <= k; j++)); do
            printf '\n[[certificate]]\nname = "%s"\ndomains = ["%s"]\nsolver = "lab"\ngroups = ["edge"]\n' \
                "$(load_name "$j")" "$(load_domain "$j")"
        done
        inventory_nodes "$n"
    } >"$tmp"
    mv "$tmp" "$LAB/load/certctl.toml"
    install -d -m 700 "$LAB/load/store"
}

# load_node I K: node I serves load001..loadK (K=0: none); its tmpfs grows to fit
load_node() {
    local i="$1" k="$2" nd base j name size
    nd="$(node_dir "$i")"
    base="$nd/certs"
    if ((k == 0)) && [[ ! -s "$nd/nginx/load.conf" ]] && ! compgen -G "$base/live/load[0-9]*" >/dev/null; then
        return 0
    fi
    # each file takes a 4 KiB page of the tmpfs: 16 KiB a version, four versions kept
    size=$((4 + (k * 64 + 1023) / 1024))
    # grown first (a smaller size only fits once the old load is gone)
    if mountpoint -q "$base"; then mount -o remount,size="${size}m" "$base" 2>/dev/null || true; fi
    local addr dom
    addr="$(node_addr "$i")"
    {
        for ((j = 1; j <= k; j++)); do
            printf -v name 'load%03d' "$j"
            printf -v dom 'l%03d.load.example.test' "$j"
            printf 'server {\n    listen %s:443 ssl;\n    server_name %s;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n    return 200 "node%s\\n";\n}\n' \
                "$addr" "$dom" "$base/live/$name/fullchain.pem" "$base/live/$name/privkey.pem" "$i"
        done
    } >"$nd/nginx/load.conf.tmp"
    # bootstrap versions, leaving what a deployment has put there
    ((k == 0)) || cp -a -n "$LAB/bootstrap/load-$k/." "$base/" || die "node$i: could not copy the load bootstrap material to $base"
    mv "$nd/nginx/load.conf.tmp" "$nd/nginx/load.conf"
    if pid_alive "$nd/nginx/nginx.pid" nginx; then
        nginx_cmd "$i" -t -q 2>"$nd/nginx/load.err" || { cat "$nd/nginx/load.err" >&2; die "node$i: nginx -t failed with the load servers"; }
        nginx_cmd "$i" -s reload
    fi
    # what the load no longer serves goes
    for name in "$base"/live/load[0-9]*; do
        [[ -e "$name" || -L "$name" ]] || continue
        j="${name##*/load}"
        ((10#$j <= k)) || rm -rf "$name" "$base/archive/load$j"
    done
    if mountpoint -q "$base"; then
        mount -o remount,size="${size}m" "$base" || die "node$i: could not resize the tmpfs on $base to ${size}m"
    fi
}

# load_template K: $LAB/bootstrap/load-K, the archive/ and live/ trees of K load
# certificates sharing one self-signed bootstrap version, copied to each node
load_template() {
    local k="$1" d="$LAB/bootstrap/load" t j name
    ((k > 0)) || return 0
    if [[ ! -s "$d/fullchain.pem" ]]; then
        mkdir -p "$d"
        self_signed "$d" load.example.test "DNS:*.load.example.test"
    fi
    t="$LAB/bootstrap/load-$k"
    [[ -d "$t/live" ]] && return 0
    rm -rf "$t.tmp"
    mkdir -p "$t.tmp/live"
    for ((j = 1; j <= k; j++)); do
        printf -v name 'load%03d' "$j"
        mkdir -p "$t.tmp/archive/$name/bootstrap"
        ln -s "../archive/$name/bootstrap" "$t.tmp/live/$name"
    done
    for name in "$t.tmp"/archive/*/bootstrap; do
        cp -p "$d/"{cert,chain,fullchain,privkey}.pem "$name/"
    done
    mv "$t.tmp" "$t"
}

cmd_load() {
    local k="${1:-}" n i pids=() failed=0
    [[ "$k" =~ ^[0-9]+$ ]] && ((10#$k <= 999)) || die "load: N must be 0..999, got '$k'"
    k=$((10#$k))
    need_root
    take_lock
    n="$(current_nodes)"
    ((n > 0)) || die "the lab is not up; run: $PROG up"
    load_template "$k"
    for ((i = 1; i <= n; i++)); do
        (write_node_configs "$i" && load_node "$i" "$k") >"$LAB/nodes/.load-$i.log" 2>&1 &
        pids+=($!)
    done
    for ((i = 1; i <= n; i++)); do
        wait "${pids[i - 1]}" || { failed=1; echo "node$i:" >&2; cat "$LAB/nodes/.load-$i.log" >&2; }
        rm -f "$LAB/nodes/.load-$i.log"
    done
    ((failed == 0)) || die "some nodes could not take the load servers"
    if ((k > 0)); then
        mkdir -p "$LAB/load"
        echo "$k" >"$LAB/load/count"
        write_load_inventory "$k" "$n"
        info "$n nodes serve $k load certificates (load001..$(load_name "$k")); config $LAB/load/certctl.toml"
    else
        rm -rf "$LAB/load"
        info "load servers removed from $n nodes"
    fi
}

print_env() {
    local n
    n="$(current_nodes)"
    printf 'export %s=%q\n' \
        CERTCTL_LAB_DIR "$LAB" \
        CERTCTL_LAB_NODES "$n" \
        CERTCTL_LAB_CA "$LAB/ca/lab-ca.pem" \
        CERTCTL_LAB_TSIG_SECRET_FILE "$LAB/tsig.secret" \
        CERTCTL_LAB_SSH_KEY "$LAB/ssh/id_ed25519" \
        CERTCTL_LAB_KNOWN_HOSTS "$LAB/ssh/known_hosts" \
        CERTCTL_CONFIG "$LAB/certctl.toml"
}

# ---------------------------------------------------------------- etcd (the HA store)

# Three members of one real etcd cluster (Debian's etcd-server), each with its
# own loopback address and data directory: member I listens on 127.0.2.I,
# clients on :2379 (plain HTTP) and :2381 (TLS, client certificate required),
# peers on :2380. `etcd stop I` / `etcd start I` inject the loss of one member
# (quorum kept) or two (quorum lost). The TLS listener's certificates are
# signed by the lab CA ($LAB/ca/lab-ca.pem), and $LAB/etcd/tls/client.{pem,key}
# is a client certificate it accepts.
ETCD_MEMBERS=3
etcd_addr() { echo "127.0.2.$1"; }
etcd_dir() { echo "$LAB/etcd/m$1"; }
# etcd_endpoints [https]: the client URLs, comma-separated
etcd_endpoints() {
    local i out=() scheme=http port=2379
    if [[ "${1:-}" == https ]]; then scheme=https port=2381; fi
    for ((i = 1; i <= ETCD_MEMBERS; i++)); do out+=("$scheme://$(etcd_addr "$i"):$port"); done
    local IFS=,
    echo "${out[*]}"
}

# sign_lab_cert NAME EKU SAN: $LAB/etcd/tls/NAME.{pem,key}, signed by the lab CA
sign_lab_cert() {
    local name="$1" eku="$2" san="$3" d="$LAB/etcd/tls" ca="$LAB/ca"
    [[ -s "$d/$name.pem" && -s "$d/$name.key" ]] && return 0
    [[ -s "$ca/lab-ca.pem" && -s "$ca/lab-ca.key" ]] || die "no lab CA in $ca: run '$PROG up' first"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/$name.key" -out "$d/$name.csr" -subj "/CN=$name" 2>"$d/openssl.log" ||
        { log_tail "$d/openssl.log"; die "creating the key for $name failed"; }
    chmod 600 "$d/$name.key"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=$eku" ${san:+"subjectAltName=$san"} >"$d/$name.ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$ca/lab-ca.pem" -CAkey "$ca/lab-ca.key" \
        -CAcreateserial -days 3650 -extfile "$d/$name.ext" -out "$d/$name.pem" 2>"$d/openssl.log" ||
        { log_tail "$d/openssl.log"; die "signing the certificate for $name failed"; }
    rm -f "$d/$name.csr" "$d/$name.ext"
}

etcd_tls_files() {
    local i
    mkdir -p "$LAB/etcd/tls"
    chmod 700 "$LAB/etcd/tls"
    for ((i = 1; i <= ETCD_MEMBERS; i++)); do
        sign_lab_cert "m$i" serverAuth "IP:$(etcd_addr "$i")"
    done
    sign_lab_cert client clientAuth ""
}

check_member_index() {
    [[ "${1:-}" =~ ^[1-9]$ ]] && (($1 <= ETCD_MEMBERS)) || die "etcd member must be 1..$ETCD_MEMBERS, got '${1:-}'"
}

etcd_member_answers() {
    curl -fsS --max-time 1 "http://$(etcd_addr "$1"):2379/health" 2>/dev/null | grep -q '"health":"true"'
}

start_etcd_member() {
    local i="$1" d pid cluster="" j
    d="$(etcd_dir "$i")"
    if pid_alive "$d/etcd.pid" etcd; then return 0; fi
    mkdir -p "$d"
    chmod 700 "$d"
    for ((j = 1; j <= ETCD_MEMBERS; j++)); do
        cluster+="${cluster:+,}m$j=http://$(etcd_addr "$j"):2380"
    done
    etcd_tls_files
    echo "=== $(date -Is) start" >>"$d/etcd.log"
    # The --initial-* flags matter only for an empty data directory.
    setsid etcd --name "m$i" --data-dir "$d/data" \
        --listen-client-urls "http://$(etcd_addr "$i"):2379,https://$(etcd_addr "$i"):2381" \
        --advertise-client-urls "http://$(etcd_addr "$i"):2379,https://$(etcd_addr "$i"):2381" \
        --cert-file "$LAB/etcd/tls/m$i.pem" --key-file "$LAB/etcd/tls/m$i.key" \
        --trusted-ca-file "$LAB/ca/lab-ca.pem" --client-cert-auth \
        --listen-peer-urls "http://$(etcd_addr "$i"):2380" \
        --initial-advertise-peer-urls "http://$(etcd_addr "$i"):2380" \
        --initial-cluster "$cluster" --initial-cluster-token certctl-lab \
        --initial-cluster-state new \
        </dev/null >>"$d/etcd.log" 2>&1 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$d/etcd.pid"
}

stop_etcd_member() { stop_pidfile "$(etcd_dir "$1")/etcd.pid" etcd "etcd member $1"; }

# A member answers /health only once the cluster has a leader: wait for every
# running member (or, after `start I`, for that one).
wait_etcd() {
    local i
    for i in "$@"; do
        if ! wait_for 30 etcd_member_answers "$i"; then
            log_tail "$(etcd_dir "$i")/etcd.log"
            die "etcd member $i did not become healthy on http://$(etcd_addr "$i"):2379"
        fi
    done
}

etcd_env() {
    printf 'export %s=%q\n' CERTCTL_LAB_ETCD "$(etcd_endpoints)"
}

cmd_etcd() {
    local op="${1:-}" i
    (($#)) && shift
    case "$op" in
        up)
            need_root
            command -v etcd >/dev/null 2>&1 || die "etcd is not installed (apt-get install etcd-server etcd-client)"
            take_lock
            for ((i = 1; i <= ETCD_MEMBERS; i++)); do start_etcd_member "$i"; done
            wait_etcd $(seq 1 "$ETCD_MEMBERS")
            etcd_env >"$LAB/etcd/env"
            info "etcd up: $ETCD_MEMBERS members, endpoints $(etcd_endpoints)"
            ;;
        down)
            need_root
            take_lock
            for ((i = 1; i <= ETCD_MEMBERS; i++)); do stop_etcd_member "$i"; done
            info "etcd is down (data kept in $LAB/etcd)"
            ;;
        stop)
            check_member_index "${1:-}"
            need_root
            take_lock
            stop_etcd_member "$1"
            ;;
        start)
            check_member_index "${1:-}"
            need_root
            take_lock
            start_etcd_member "$1"
            # A lone member cannot answer /health without quorum: wait only
            # when a majority will be running.
            local up=0
            for ((i = 1; i <= ETCD_MEMBERS; i++)); do
                pid_alive "$(etcd_dir "$i")/etcd.pid" etcd && up=$((up + 1))
            done
            if ((up * 2 > ETCD_MEMBERS)); then wait_etcd "$1"; fi
            ;;
        endpoints) etcd_endpoints "${1:-}" ;;
        status)
            for ((i = 1; i <= ETCD_MEMBERS; i++)); do
                status_line "etcd m$i" "$(component_status "$(etcd_dir "$i")/etcd.pid" etcd) $(etcd_addr "$i"):2379"
            done
            ;;
        *) die "usage: $PROG etcd up|down|stop I|start I|status|endpoints" ;;
    esac
}

# ---------------------------------------------------------------- commands

cmd_up() {
    local n="${1:-}"
    if [[ -z "$n" ]]; then
        n="$(current_nodes)"
        ((n > 0)) || n=$DEFAULT_NODES
    fi
    [[ "$n" =~ ^[0-9]+$ ]] && ((10#$n >= 1 && 10#$n <= MAX_NODES)) || die "N must be 1..$MAX_NODES, got '$n'"
    n=$((10#$n))
    need_root
    ensure_packages
    check_loopback
    take_lock
    local t0=$SECONDS
    setup_ca
    setup_named
    write_pebble_conf
    start_pebble 0
    ensure_edge_user
    setup_ssh_client
    load_template "$(load_count)"
    setup_nodes "$n"
    write_inventory "$n"
    print_env >"$LAB/env"
    info "certctl lab up in $LAB ($((SECONDS - t0))s):"
    info "  named    127.0.0.1:53 (primary, recursive for 127/8)   named2 127.0.0.2:53 (secondary)"
    info "  pebble   https://127.0.0.1:14000/dir (mgmt :15000), CA bundle $LAB/ca/lab-ca.pem"
    info "  nodes    $n: node1..node$n at 127.0.0.11..$(node_addr "$n") (sshd :22, nginx :443)"
    info "  config   $LAB/certctl.toml   env: eval \"\$($PROG env)\"  (or source $LAB/env)"
}

cmd_down() {
    [[ -d "$LAB" ]] || { info "lab is down ($LAB does not exist)"; return 0; }
    take_lock
    local d i pids=()
    for d in "$LAB"/nodes/node*; do
        [[ -d "$d" ]] || continue
        i="${d##*/node}"
        [[ "$i" =~ ^[0-9]+$ ]] || continue
        (node_down "$i") &
        pids+=($!)
    done
    ((${#pids[@]} == 0)) || wait "${pids[@]}" || true
    local m
    for ((m = 1; m <= ETCD_MEMBERS; m++)); do stop_etcd_member "$m"; done
    stop_pebble
    stop_named named2
    stop_named named
    remove_lo_aliases
    info "lab is down"
}

status_line() { printf '%-14s %s\n' "$1" "$2"; }

component_status() {
    local pf="$1" exe="$2"
    if pid_alive "$pf" "$exe"; then echo "running (pid $(pid_of "$pf"))"; else echo "stopped"; fi
}

cmd_status() {
    local d i n
    status_line named "$(component_status "$LAB/named/named.pid" named) 127.0.0.1:53"
    status_line named2 "$(component_status "$LAB/named2/named.pid" named) 127.0.0.2:53"
    status_line pebble "$(component_status "$LAB/pebble/pebble.pid" pebble) 127.0.0.1:14000 nonce-reject=$(cat "$LAB/pebble/noncereject" 2>/dev/null || echo 0)"
    n="$(current_nodes)"
    for d in "$LAB"/nodes/node*; do
        [[ -d "$d" ]] || continue
        i="${d##*/node}"
        [[ "$i" =~ ^[0-9]+$ ]] || continue
        local extra=""
        [[ -s "$d/nginx/extra.conf" ]] && extra+=" [nginx-broken]"
        [[ -e "$d/certs/.filler" ]] && extra+=" [disk-full]"
        mountpoint -q "$d/certs" || extra+=" [no-tmpfs]"
        status_line "node$i sshd" "$(component_status "$d/sshd.pid" sshd) $(node_addr "$i"):22"
        status_line "node$i nginx" "$(component_status "$d/nginx/nginx.pid" nginx) $(node_addr "$i"):443$extra"
    done | sort -s -V -k1,1
    if [[ -d "$LAB/etcd" ]]; then cmd_etcd status; fi
    ((n > 0)) || true
}

node_arg() {
    check_node_index "${1:-}"
    local i=$((10#$1))
    [[ -d "$(node_dir "$i")" ]] || die "node$i does not exist (lab has $(current_nodes) nodes)"
    echo "$i"
}

cmd_stop() {
    need_root
    take_lock
    case "${1:-}" in
        named | named2) stop_named "$1" ;;
        pebble) stop_pebble ;;
        sshd | nginx)
            local i
            i="$(node_arg "${2:-}")"
            stop_"$1" "$i"
            ;;
        *) usage >&2; exit 2 ;;
    esac
}

cmd_start() {
    need_root
    take_lock
    case "${1:-}" in
        named | named2) start_named "$1" ;;
        pebble) start_pebble 0 ;;
        sshd | nginx)
            local i
            i="$(node_arg "${2:-}")"
            start_"$1" "$i"
            ;;
        *) usage >&2; exit 2 ;;
    esac
}

cmd_pebble_restart() {
    local pct=0
    while (($#)); do
        case "$1" in
            --nonce-reject) pct="${2:-}"; shift 2 || die "--nonce-reject needs a value" ;;
            --nonce-reject=*) pct="${1#*=}"; shift ;;
            *) die "pebble-restart: unknown argument '$1'" ;;
        esac
    done
    [[ "$pct" =~ ^[0-9]+$ ]] && ((pct <= 100)) || die "--nonce-reject must be 0..100, got '$pct'"
    need_root
    take_lock
    stop_pebble
    start_pebble "$pct"
    info "pebble restarted (PEBBLE_WFE_NONCEREJECT=$pct); new roots in $LAB/pebble-roots.pem"
}

cmd_disk() {
    local op="$1" i base
    i="$(node_arg "${2:-}")"
    base="$(node_dir "$i")/certs"
    mountpoint -q "$base" || warn "node$i: $base is not a tmpfs; $op acts on the real disk"
    if [[ "$op" == fill ]]; then
        if ! mountpoint -q "$base"; then die "refusing to fill a non-tmpfs directory"; fi
        dd if=/dev/zero of="$base/.filler" bs=64k status=none 2>/dev/null || true
        # use up any remaining fragments too
        dd if=/dev/zero of="$base/.filler2" bs=1 status=none 2>/dev/null || true
        info "node$i: $base is full ($(df -h --output=avail "$base" | tail -n1 | tr -d ' ') available)"
    else
        rm -f "$base/.filler" "$base/.filler2"
        info "node$i: $base freed ($(df -h --output=avail "$base" | tail -n1 | tr -d ' ') available)"
    fi
}

cmd_nginx_fault() {
    local op="$1" i nd
    i="$(node_arg "${2:-}")"
    nd="$(node_dir "$i")"
    if [[ "$op" == break ]]; then
        echo "certctl_lab_broken_directive on;  # injected by lab.sh nginx-break" >"$nd/nginx/extra.conf"
        info "node$i: nginx config broken (nginx -t now fails)"
    else
        : >"$nd/nginx/extra.conf"
        info "node$i: nginx config fixed"
    fi
}

cmd_clean() {
    cmd_down
    userdel "$EDGE_USER" 2>/dev/null || true
    rm -rf "$LAB"
    info "removed $LAB"
}

main() {
    local cmd="${1:-}"
    (($#)) && shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) need_root; cmd_down ;;
        status) cmd_status ;;
        env) print_env ;;
        clean) need_root; cmd_clean ;;
        stop) cmd_stop "$@" ;;
        start) cmd_start "$@" ;;
        pebble-restart) cmd_pebble_restart "$@" ;;
        disk-fill) need_root; cmd_disk fill "$@" ;;
        disk-free) need_root; cmd_disk free "$@" ;;
        nginx-break) cmd_nginx_fault break "$@" ;;
        nginx-fix) cmd_nginx_fault fix "$@" ;;
        load) cmd_load "$@" ;;
        pebble-check) pebble_store_answers ;;
        etcd) cmd_etcd "$@" ;;
        -h | --help | help) usage ;;
        "") usage >&2; exit 2 ;;
        *) echo "$PROG: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
    esac
}

main "$@"
