#!/usr/bin/env bash
# The Debian package, built and installed on this machine (as root):
# builds it with packaging/build-deb.sh, checks its file list and conffiles,
# installs it with dpkg -i, checks the installed binary, man page, units,
# shipped inventory and store directory, purges it and checks that purge
# kept the store; then installs over that kept store (left as it was) and
# purges again. Refuses to install when a certctl package, or any file the
# package would install, or /var/lib/certctl, is already on the machine:
# those are the admin's, not this test's. Runs on the same machine from
# several worktrees take turns (a lock around install ... purge).
# Usage: bash tests/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
# check "what" command...: the command's success is the check.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
summary() { echo "package: $passed passed, $failed failed"; }
die() {
    echo "package: $*" >&2
    summary
    exit 1
}

store=/var/lib/certctl
unit_dir=/usr/lib/systemd/system

# dpkg knows no certctl package: never heard of, or purged ("un").
not_known() {
    local st
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' certctl 2>/dev/null || true)
    [[ -z ${st// /} || $st == un* ]]
}

((EUID == 0)) || die "run as root (dpkg -i)"

if ! command -v man >/dev/null || ! command -v systemd-analyze >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db systemd >/dev/null
fi

# --- build
bash packaging/build-deb.sh
version=$(cargo metadata --format-version 1 --no-deps --locked |
    sed -n 's/.*"name":"certctl","version":"\([^"]*\)".*/\1/p')
[[ -n $version ]] || die "cannot read certctl's version from cargo metadata"
arch=$(dpkg --print-architecture)
deb="$root/target/debian/certctl_${version}_${arch}.deb" # build-deb.sh builds in the workspace's target/
check "built $deb" test -f "$deb"
[[ -f $deb ]] || die "no package to test"

# --- contents: every path the package installs, as ./path
listing=$(dpkg-deb -c "$deb")
files=$(awk '{print $6}' <<<"$listing" | sed 's,^\./,/,')
has() { grep -qx -- "$1" <<<"$files"; }
mode_of() { awk -v p=".$1" '$6 == p {print $1}' <<<"$listing"; }
check "binary /usr/bin/certctl, 0755" test "$(mode_of /usr/bin/certctl)" = "-rwxr-xr-x"
check "man page certctl.1.gz" has /usr/share/man/man1/certctl.1.gz
for sub in check issue renew list deploy rollback report scan inspect run systemd completions man; do
    has "/usr/share/man/man1/certctl-$sub.1.gz" || bad "man page certctl-$sub.1.gz"
done
ok "a man page per subcommand"
check "bash completion" has /usr/share/bash-completion/completions/certctl
check "zsh completion" has /usr/share/zsh/vendor-completions/_certctl
check "fish completion" has /usr/share/fish/vendor_completions.d/certctl.fish
check "certctl.service" has $unit_dir/certctl.service
check "certctl.timer" has $unit_dir/certctl.timer
check "inventory /etc/certctl/certctl.toml, 0644" test "$(mode_of /etc/certctl/certctl.toml)" = "-rw-r--r--"
check "full example under /usr/share/doc/certctl/examples/" has /usr/share/doc/certctl/examples/certctl.toml
check "copyright file" has /usr/share/doc/certctl/copyright
# Whatever contrib/prometheus/ and contrib/notify/ hold is shipped, by name.
for d in prometheus notify; do
    [[ -d contrib/$d ]] || continue
    while IFS= read -r f; do
        check "contrib/$d/$f shipped, 0644" \
            test "$(mode_of "/usr/share/doc/certctl/$d/$f")" = "-rw-r--r--"
    done < <(cd "contrib/$d" && find . -type f | sed 's,^\./,,' | sort)
done
check "no store directory in the package (postinst makes it)" \
    bash -c "! grep -q '^/var/lib/certctl' <<<\"\$1\"" _ "$files"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
conffiles="$tmp/control"
dpkg-deb -e "$deb" "$conffiles"
check "conffiles: exactly /etc/certctl/certctl.toml" \
    test "$(cat "$conffiles/conffiles")" = /etc/certctl/certctl.toml

# --- the machine is shared: one package test at a time installs (another
# worktree's run waits here; the empty lock file stays, as lock files do).
exec 9>/run/lock/certctl-package-test.lock
flock -w 3600 9 || die "another tests/package.sh held /run/lock/certctl-package-test.lock for an hour"

not_known ||
    die "a certctl package is already on this machine (dpkg: $(dpkg-query -W -f='${db:Status-Abbrev}' certctl)); this test installs and purges its own, so it leaves yours alone: remove it first"
[[ ! -e $store && ! -L $store ]] ||
    die "$store already exists; this test must create it (through the package) to check it, and never touches yours"
# Refuse to install over a file somebody else put there: dpkg would replace
# it, and purge would delete it.
while IFS= read -r p; do
    [[ $p == */ || -z $p ]] && continue
    if [[ -e $p || -L $p ]]; then
        die "$p already exists and is not from a certctl package; this test would replace it: move it away first"
    fi
done < <(awk '$1 !~ /^d/ {print $6}' <<<"$listing" | sed 's,^\./,/,')

# --- install. From here on, undo what the test did on any exit.
installed=0
marker="$store/left-by-tests-package.sh"
cleanup() {
    if ((installed)); then dpkg --purge certctl >/dev/null 2>&1 || true; fi
    rm -f "$marker"
    # The store is ours only if it holds nothing but what this test put there.
    if [[ -d $store ]]; then rmdir "$store" 2>/dev/null || echo "package: left $store (not empty)" >&2; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Unit links that exist before (the admin's own `certctl systemd --output-dir`).
links() { find /etc/systemd/system -name 'certctl.*' 2>/dev/null | sort; }
links_before=$(links)

# Include our paths even where dpkg.cfg.d excludes docs and man pages (slim images).
dpkg_install() {
    dpkg --path-include='/usr/share/man/man1/certctl*' \
        --path-include='/usr/share/doc/certctl/*' -i "$deb" >"$tmp/dpkg.log" 2>&1 ||
        { cat "$tmp/dpkg.log"; return 1; }
}
installed=1
check "dpkg -i" dpkg_install

check "certctl --version from /usr/bin says $version" \
    bash -c '[[ $(/usr/bin/certctl --version) == "certctl $1" ]]' _ "$version"
check "man -w certctl finds the installed page" \
    bash -c '[[ $(man -w certctl) == /usr/share/man/man1/certctl.1.gz ]]'
check "man certctl renders" bash -c 'man certctl 2>/dev/null | head -n 20 | grep -q certctl'
check "man certctl-run renders" bash -c 'man certctl-run 2>/dev/null | head -n 20 | grep -q certctl-run'

check "the service runs /usr/bin/certctl with /etc/certctl/certctl.toml" \
    grep -qx "ExecStart=/usr/bin/certctl --config /etc/certctl/certctl.toml run" $unit_dir/certctl.service
check "the service may write the store" grep -qx "ReadWritePaths=$store" $unit_dir/certctl.service
verify_out="$tmp/verify"
if systemd-analyze verify $unit_dir/certctl.service $unit_dir/certctl.timer >"$verify_out" 2>&1 &&
    [[ ! -s $verify_out ]]; then
    ok "systemd-analyze verify: clean"
else
    bad "systemd-analyze verify:"
    sed 's/^/    /' "$verify_out"
fi
check "units not enabled (no new certctl.* link in /etc/systemd/system)" \
    test "$(links)" = "$links_before"

check "certctl check on the shipped inventory" \
    /usr/bin/certctl --config /etc/certctl/certctl.toml check
check_json=$(/usr/bin/certctl --config /etc/certctl/certctl.toml check --json || true)
check "certctl check: nothing in error or warning" \
    bash -c '! grep -Eq "\"status\": *\"(error|warning)\"" <<<"$1"' _ "$check_json"

check "$store created 0700 root:root" test "$(stat -c '%a %U:%G %F' $store)" = "700 root:root directory"

# --- purge: the binary goes, the store stays
touch "$marker"
check "dpkg --purge" dpkg --purge certctl
installed=0
check "binary removed" test ! -e /usr/bin/certctl
check "units removed" test ! -e $unit_dir/certctl.service -a ! -e $unit_dir/certctl.timer
check "conffile removed by purge" test ! -e /etc/certctl/certctl.toml
check "store kept by purge, with its contents" test -d $store -a -f "$marker"
check "dpkg forgets the package" not_known

# --- install over a store that exists: its mode is left as it is
chmod 0750 $store # the test's own directory, standing in for the admin's
installed=1
check "dpkg -i over an existing store" dpkg_install
check "existing store's mode untouched (0750)" test "$(stat -c '%a' $store)" = 750
check "existing store's contents untouched" test -f "$marker"
check "dpkg --purge again" dpkg --purge certctl
installed=0
check "store kept again" test -d $store -a -f "$marker"

summary
((failed == 0))
