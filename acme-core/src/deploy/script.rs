//! The remote shell scripts, built as text (no I/O here, so they are unit
//! tested and run against a local directory in tests). Every value that comes
//! from the inventory, the store or a node passes through [`shell_quote`].
//!
//! One script per node keeps round trips down: `deploy` (look, adopt, stage,
//! swap, validate, reload, prune), and `restore` only when verification
//! fails. `rollback` uses `inspect` (read-only), then `restore`.
//!
//! Ownership on a node: certctl removes only what it can prove it made.
//! Every version directory it stages carries [`VERSION_MARKER`], every copy
//! it adopts [`ADOPTED_MARKER`], every upload directory [`STAGE_MARKER`];
//! prune deletes marked versions only, and the sweeps of leftovers delete
//! marked directories only. A `live/<name>` certctl did not make (a real
//! directory, certbot's lineage of file links, a link pointing elsewhere) is
//! copied as the version `adopted-<time>` and the original is kept, renamed
//! at the same depth to `live/.<name>.adopted-<time>` (its relative links
//! still resolve); nothing of it is deleted. Adopted copies are never pruned.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::names::shell_quote;
use crate::secret::Secret;
use crate::store::NodeFence;

/// What `live/<name>` is on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Live {
    /// A symlink, with its target as read by `readlink`.
    Link(String),
    /// A real directory (hand-managed, or certbot-style with file symlinks).
    Dir,
    /// Nothing there.
    Missing,
    /// Something else (a regular file...).
    Other,
}

impl Live {
    /// The version a link points at (the last path component).
    pub(crate) fn version(&self) -> Option<&str> {
        match self {
            Live::Link(t) => version_of(t),
            _ => None,
        }
    }
}

/// The version a link target names: its last path component (`None` for an
/// empty target). The one reader of link targets.
pub(crate) fn version_of(target: &str) -> Option<&str> {
    let v = target.trim().trim_end_matches('/').rsplit('/').next()?;
    (!v.is_empty()).then_some(v)
}

/// What `inspect` found for one certificate on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inspected {
    /// The live link.
    pub(crate) live: Live,
    /// SHA-256 (hex) of each file of the wanted version, by file name.
    pub(crate) sums: BTreeMap<String, String>,
    /// Version directories in the node's archive, newest first (by mtime).
    pub(crate) versions: Vec<String>,
}

impl Default for Inspected {
    fn default() -> Self {
        Self {
            live: Live::Missing,
            sums: BTreeMap::new(),
            versions: Vec::new(),
        }
    }
}

/// The file in every version directory certctl staged on a node: what
/// prune may delete.
pub(crate) const VERSION_MARKER: &str = ".certctl-version";
/// The file in every copy certctl made of a `live/<name>` it adopted: kept
/// until the user removes it.
pub(crate) const ADOPTED_MARKER: &str = ".certctl-adopted";
/// The file in every upload directory (`archive/.stage-<rand>`).
pub(crate) const STAGE_MARKER: &str = ".certctl-stage";

const PRELUDE: &str = r#"set -u
fail() { printf '@fail %s %s\n' "$1" "$2"; exit 1; }
"#;

/// The read-only first look: for each `(name, version)`, the live link, the
/// checksums of that version's files, and the archive's versions by age.
pub(crate) fn inspect(base: &str, certs: &[(&str, &str)]) -> String {
    let mut s = String::from(PRELUDE);
    let _ = writeln!(s, "b={}", shell_quote(base));
    s.push_str(
        r#"insp() {
  n=$1; l="$b/live/$1"; d="$b/archive/$1/$2"
  if [ -L "$l" ]; then printf 'live %s link %s\n' "$n" "$(readlink "$l")"
  elif [ -d "$l" ]; then printf 'live %s dir\n' "$n"
  elif [ -e "$l" ]; then printf 'live %s other\n' "$n"
  else printf 'live %s missing\n' "$n"; fi
  if [ -n "$2" ] && [ -d "$d" ]; then
    (cd "$d" && sha256sum privkey.pem cert.pem chain.pem fullchain.pem 2>/dev/null) |
      while read -r h f; do printf 'sum %s %s %s\n' "$n" "$f" "$h"; done
  fi
  # versions are directories holding a certificate: certbot's cert1.pem... are not
  ls -1t "$b/archive/$n" 2>/dev/null | while read -r x; do
    [ -f "$b/archive/$n/$x/cert.pem" ] && printf 'ver %s %s\n' "$n" "$x"
  done
}
"#,
    );
    for (name, version) in certs {
        let _ = writeln!(s, "insp {} {}", shell_quote(name), shell_quote(version));
    }
    s
}

/// Parses what [`inspect`] printed.
pub(crate) fn parse_inspect(out: &str) -> BTreeMap<String, Inspected> {
    let mut m: BTreeMap<String, Inspected> = BTreeMap::new();
    for line in out.lines() {
        let mut it = line.splitn(3, ' ');
        let (Some(kind), Some(name), rest) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let e = m.entry(name.to_string()).or_default();
        let rest = rest.unwrap_or("");
        match kind {
            "live" => {
                e.live = match rest.split_once(' ') {
                    Some(("link", t)) => Live::Link(t.to_string()),
                    _ => match rest {
                        "dir" => Live::Dir,
                        "missing" => Live::Missing,
                        _ => Live::Other,
                    },
                }
            }
            "sum" => {
                if let Some((f, h)) = rest.split_once(' ') {
                    e.sums.insert(f.to_string(), h.to_string());
                }
            }
            "ver" if !rest.is_empty() => e.versions.push(rest.to_string()),
            _ => {}
        }
    }
    m
}

/// One certificate's part of the `deploy` script.
#[derive(Debug, Clone)]
pub(crate) struct CertDeploy {
    /// Certificate name.
    pub(crate) name: String,
    /// Version to link.
    pub(crate) version: String,
    /// Whether the node was seen serving this version's leaf for every SNI
    /// name just before (then a node already linked to it is unchanged).
    pub(crate) served: bool,
    /// SHA-256 hex of privkey, cert, chain, fullchain; the files themselves
    /// are in the payload (see [`payload`]).
    pub(crate) sums: [String; 4],
}

/// Everything the `deploy` script needs for one node.
#[derive(Debug, Clone)]
pub(crate) struct DeployScript {
    /// The node's base directory.
    pub(crate) base: String,
    /// A random token for temporary names.
    pub(crate) token: String,
    /// `owner[:group]` for `chown`, if set.
    pub(crate) chown: Option<String>,
    /// The validate command (a shell command line from the inventory).
    pub(crate) validate: String,
    /// The reload command.
    pub(crate) reload: String,
    /// Versions to keep per certificate (the live and previous are kept too).
    pub(crate) keep: usize,
    /// The version name a real `live/<name>` directory is adopted under.
    pub(crate) adopt_as: String,
    /// Activate even certificates that are already linked and served.
    pub(crate) force: bool,
    /// The certificates, in payload order.
    pub(crate) certs: Vec<CertDeploy>,
    /// The store lock's fencing token (etcd store), see [`FENCE`].
    pub(crate) fence: Option<NodeFence>,
}

/// A certificate to relink: `target` is the link target to set, `None` to
/// remove the link.
#[derive(Debug, Clone)]
pub(crate) struct Relink {
    /// Certificate name.
    pub(crate) name: String,
    /// The target.
    pub(crate) target: Option<String>,
}

/// Serializes certctl's scripts on a node (another controller, or a killed
/// run whose SSH master still finishes its script): `flock` on
/// `<base>/.certctl.lock`, where the node has `flock`.
const LOCK: &str = r#"[ -d "$b" ] || mkdir -p "$b" || fail base "$b"
if command -v flock >/dev/null 2>&1; then
  exec 9>>"$b/.certctl.lock" || fail lock "$b/.certctl.lock"
  flock -w 60 9 || fail lock "$b/.certctl.lock (another certctl run held it for 60 s)"
fi
"#;

/// The one parser of a node's `ls -l live/`, shared by the `deploy` script
/// and the read-only [`super::read`] script: one `ls` gives every
/// certificate's link target, `l<i>` for the certificate with index `i`
/// (see `idx`, written per script). Each line is cut apart on its own: large
/// strings make sh's pattern matching slow.
pub(crate) const READ_LINKS: &str = r#"read_links() {
  out=$(ls -l "$b/live" 2>/dev/null)
  while IFS= read -r x; do
    case "$x" in *" -> "*) ;; *) continue ;; esac
    nm=${x%% -> *}; nm=${nm##* }; idx "$nm"
    if [ -n "$i" ]; then eval "l$i=\${x#* -> }"; fi
  done <<EOF
$out
EOF
}
"#;

const FUNCTIONS: &str = r#"# Few processes: forks are the cost of a node's step, so tests and globs are
# builtins and each external command does all its files at once.
# check DIR SUM1..4: the four files of DIR have these SHA-256 sums.
check() {
  sha256sum -c --status 2>/dev/null <<EOF
$2  $1/privkey.pem
$3  $1/cert.pem
$4  $1/chain.pem
$5  $1/fullchain.pem
EOF
}
# mine DIR: DIR is a version directory certctl staged (it carries the marker).
mine() { [ -f "$1/$vm" ] && [ ! -L "$1" ]; }
# Versions to stage, as NAME/VERSION words, and the sums their files must have.
s="$b/archive/.stage-$r"; need=; sums=; dirs=
# stage_all: unpacks the versions in $need from the tar payload on stdin into
# a private directory, checks every sum, fsyncs, then renames each version
# directory into place, so a half-uploaded version never exists.
stage_all() {
  # what a killed run left (the node lock is held); only marked upload directories
  for x in "$b"/archive/.stage-*; do [ -f "$x/$sm" ] && rm -rf "$x"; done
  [ -n "$need" ] || return 0
  [ -d "$b/archive" ] || mkdir -p "$b/archive" || fail stage "$b/archive"
  mkdir -m 700 "$s" || fail stage "$s"
  true >"$s/$sm" || { rm -rf "$s"; fail stage "$s"; }
  umask 022
  tar -x -f - -C "$s" --no-same-owner $need || { rm -rf "$s"; fail stage "$s"; }
  umask 077
  sha256sum -c --status <<EOF || { rm -rf "$s"; fail stage "$s"; }
$sums
EOF
  for x in $need; do true >"$s/$x/$vm" || { rm -rf "$s"; fail stage "$s/$x"; }; done
  if [ -n "$own" ]; then chown -R "$own" "$s" || { rm -rf "$s"; fail stage "$s"; }; fi
  sync "$s"/*/*/*.pem "$s"/*/* || { rm -rf "$s"; fail stage "$s"; }
  mk=
  for x in $need; do [ -d "$b/archive/${x%%/*}" ] || mk="$mk $b/archive/${x%%/*}"; done
  if [ -n "$mk" ]; then mkdir $mk || { rm -rf "$s"; fail stage "$mk"; }; fi
  for x in $need; do
    a="$b/archive/${x%%/*}"; v="${x#*/}"
    for y in "$a"/.tmp-* "$a"/.old-*; do
      if mine "$y" || { [ -f "$y/$am" ] && [ ! -L "$y" ]; }; then rm -rf "$y"; fi
    done
    # an incomplete version is replaced only if certctl made it
    if [ -e "$a/$v" ] || [ -L "$a/$v" ]; then
      mine "$a/$v" || { rm -rf "$s"; fail foreign "$a/$v"; }
      mv -T "$a/$v" "$a/.old-$v-$r" || { rm -rf "$s"; fail stage "$a/$v"; }
    fi
    mv -T "$s/$x" "$a/$v" || { rm -rf "$s"; fail stage "$a/$v"; }
    [ -e "$a/.old-$v-$r" ] && rm -rf "$a/.old-$v-$r"
    dirs="$dirs $a"
  done
  rm -rf "$s"
}
# adopt NAME AS: copies a live/NAME certctl did not make (a directory, or a
# link elsewhere) as the version AS (marked adopted: never pruned), keeps the
# original as live/.NAME.AS (same depth, so its relative links still
# resolve), and links live/NAME to the copy. Deletes nothing it did not make.
adopt() {
  a="$b/archive/$1"; l="$b/live/$1"; adopted=$2
  # a second adoption within the same second gets the run's token too
  if [ -e "$a/$2" ] || [ -L "$a/$2" ] || [ -e "$b/live/.$1.$2" ] || [ -L "$b/live/.$1.$2" ]; then adopted="$2-$r"; fi
  t="$a/.tmp-$adopted-$r"; k="$b/live/.$1.$adopted"
  if [ -e "$k" ] || [ -L "$k" ]; then fail adopt "$k"; fi
  [ -d "$a" ] || mkdir -p "$a" || fail adopt "$a"
  mkdir "$t" || fail adopt "$t"
  { true >"$t/$am" && cp -RL "$l/." "$t/" && chmod 755 "$t" && sync "$t" && mv -T "$t" "$a/$adopted"; } ||
    { rm -rf "$t"; fail adopt "$a/$adopted"; }
  mv -T "$l" "$k" || fail adopt "$l"
  ln -s "../archive/$1/$adopted" "$l" || { mv -T "$k" "$l"; fail adopt "$l"; }
  printf '@adopted %s %s\n' "$1" "$k"
}
link() {
  l="$b/live/$1"; t="$b/live/.$1.tmp-$r"
  [ -L "$t" ] && rm -f "$t"
  ln -s "$2" "$t" && mv -T "$t" "$l" || { rm -f "$t"; return 1; }
}
relink() { if [ -n "$2" ]; then link "$1" "$2"; else rm -f "$b/live/$1"; fi; }
# cert NAME VERSION SERVED SUM1..4: queues the version for staging if the
# node lacks it whole; sets $cur (the previous link target) and $go (1 if it
# must be linked).
# cert NAME VERSION SERVED SUM1..4, with $i its index: see below.
cert() {
  n=$1; v=$2; l="$b/live/$1"; go=0; cur=
  if [ -L "$l" ]; then
    eval "cur=\${l$i-}"
    [ -n "$cur" ] || cur=$(readlink "$l")
    kind=link
  elif [ -d "$l" ]; then kind=dir
  elif [ -e "$l" ]; then kind=other
  else kind=missing; fi
  if [ "$kind" = other ]; then printf '@cert %s other\n' "$n"; return 0; fi
  # a link certctl did not make (pointing outside archive/NAME/) is adopted, not replaced
  if [ "$kind" = link ]; then case "$cur" in "../archive/$n/"*) ;; *) kind=dir ;; esac; fi
  # certbot still renews this lineage: say so (the controller warns once)
  [ -f "$b/renewal/$n.conf" ] && printf '@certbot %s %s\n' "$n" "$b/renewal/$n.conf"
  complete=0
  if [ -d "$b/archive/$n/$v" ] && check "$b/archive/$n/$v" "$4" "$5" "$6" "$7"; then
    complete=1
    # the store's exact files: certctl's own (a version staged before markers existed)
    [ -f "$b/archive/$n/$v/$vm" ] || true >"$b/archive/$n/$v/$vm" 2>/dev/null
  fi
  if [ "$kind" = link ] && [ "${cur##*/}" = "$v" ] && [ $complete = 1 ] && [ "$3" = 1 ]; then
    printf '@cert %s unchanged\n' "$n"; return 0
  fi
  if [ "$kind" = dir ]; then adopt "$n" "$adopt"; cur="../archive/$n/$adopted"; fi
  if [ $complete = 0 ]; then
    need="$need $n/$v"
    sums="$sums$4  $s/$n/$v/privkey.pem
$5  $s/$n/$v/cert.pem
$6  $s/$n/$v/chain.pem
$7  $s/$n/$v/fullchain.pem
"
  fi
  go=1
  printf '@cert %s activate %s\n' "$n" "$cur"
}
# prune NAME VERSION PREVIOUS-TARGET, with $i its index: queues NAME for
# prune_all if its archive holds more versions than it keeps.
pn=
prune() {
  set -- "$1" "$2" "${3##*/}" "$b/archive/$1"/*
  [ $# -le $((keep + 4)) ] && return 0
  pn="$pn $1"; eval "pv$i=\$2 pp$i=\$3"
}
# pick NAME: sets $v and $p, the version and previous version queued for NAME.
pick() { idx "$1"; eval "v=\${pv$i-} p=\${pp$i-}"; }
# prune_all: one `ls -t` over every queued archive, one `rm`; per archive keeps
# the newest $keep certctl versions (with the version) and the previous one,
# and deletes only version directories certctl made and marked: adopted
# copies, certbot's files and anything else in the archive stay.
prune_all() {
  [ -n "$pn" ] || return 0
  set --; for x in $pn; do set -- "$@" "$b/archive/$x"; done
  nm=; del=; i=0
  if [ $# -eq 1 ]; then nm=${1##*/}; pick "$nm"; fi
  out=$(ls -1t "$@" 2>/dev/null)
  while IFS= read -r x; do
    case "$x" in
      '') continue ;;
      "$b"/archive/*:) nm=${x%:}; nm=${nm##*/}; pick "$nm"; i=0; continue ;;
    esac
    [ -n "$nm" ] || continue
    case "$x" in .*|*..*|*[!A-Za-z0-9._-]*) continue ;; esac
    mine "$b/archive/$nm/$x" || continue
    [ "$x" = "$v" ] && continue
    i=$((i + 1))
    [ "$i" -lt "$keep" ] && continue
    [ "$x" = "$p" ] && continue
    del="$del $b/archive/$nm/$x"
  done <<EOF
$out
EOF
  if [ -n "$del" ]; then rm -rf $del; fi
}
"#;

/// The swapped links are durable before the node is told to use them.
const SYNC_LIVE: &str = "sync \"$b/live\" 2>/dev/null\n";

/// Validate, then reload ([`RELOAD`]); on failure put the links back
/// (`undo`) first. The commands are the inventory's shell command lines,
/// run by `eval` in a subshell (one process less than `sh -c`).
const VALIDATE: &str = r#"if ! o=$(eval "$validate" 2>&1); then undo; printf '@validate\n%s\n' "$o"; exit 3; fi
"#;

/// The reload after [`VALIDATE`].
const RELOAD: &str = r#"if ! o=$(eval "$reload" 2>&1); then undo; (eval "$reload") >/dev/null 2>&1; printf '@reload\n%s\n' "$o"; exit 4; fi
"#;

/// A node clock reading in nanoseconds (GNU `date`); elsewhere whatever
/// `date` makes of `%N`, which [`parse_times`] then ignores.
const NOW: &str = "$(date +%s%N 2>/dev/null)";

/// The store's fencing token on a node, checked right after the node lock
/// (so before anything is staged or linked): `fence STORE REVISION`. The
/// file `<base>/.certctl-fence-<store>` holds the highest lock revision a
/// script of that store has carried here; a lower one is refused with
/// `@fenced <seen>` and the node is left as it was. The file is certctl's
/// own: one holding anything but a number is not replaced (`@fail foreign`).
const FENCE: &str = r#"fence() {
  ff="$b/.certctl-fence-$1"
  if [ -L "$ff" ] || { [ -e "$ff" ] && [ ! -f "$ff" ]; }; then cat >/dev/null; fail foreign "$ff"; fi
  if [ -f "$ff" ]; then
    seen=; IFS= read -r seen < "$ff" || :
    case "$seen" in ''|*[!0-9]*) cat >/dev/null; fail foreign "$ff" ;; esac
    if [ "$seen" -gt "$2" ]; then cat >/dev/null; printf '@fenced %s %s\n' "$seen" "$ff"; exit 0; fi
    [ "$seen" = "$2" ] && return 0
  fi
  { printf '%s\n' "$2" > "$ff.$r" && mv -f "$ff.$r" "$ff"; } || { rm -f "$ff.$r"; cat >/dev/null; fail base "$ff"; }
}
"#;

fn header(s: &mut String, base: &str, token: &str, chown: Option<&str>, fence: Option<&NodeFence>) {
    s.push_str(PRELUDE);
    s.push_str("umask 077\n");
    let _ = writeln!(s, "b={}", shell_quote(base));
    let _ = writeln!(s, "r={}", shell_quote(token));
    let _ = writeln!(s, "own={}", shell_quote(chown.unwrap_or("")));
    let _ = writeln!(
        s,
        "vm={VERSION_MARKER} am={ADOPTED_MARKER} sm={STAGE_MARKER}"
    );
    s.push_str(LOCK);
    if let Some(f) = fence {
        s.push_str(FENCE);
        // The store id is hex digits: nothing to quote.
        let _ = writeln!(s, "fence {} {}", shell_quote(&f.store), f.revision);
    }
    s.push_str(READ_LINKS);
    s.push_str(FUNCTIONS);
}

/// The four files of a version, in payload order.
pub(crate) const FILES: [&str; 4] = ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"];

/// The `deploy` script's payload: a tar stream holding
/// `<name>/<version>/<file>` for each certificate, the key with mode 0600
/// and the others 0644, so one `tar` process on the node unpacks every
/// version it needs. The buffer is sized up front, so no copy of a key is
/// left behind by a reallocation, and it is wiped when dropped.
pub(crate) fn payload(certs: &[(&str, &str, [&[u8]; 4])]) -> std::io::Result<Secret> {
    let block = |n: usize| n.div_ceil(512) * 512;
    // A header, a long-name header and its name block, the data; two end blocks.
    let size: usize = certs
        .iter()
        .flat_map(|(name, version, files)| {
            files
                .iter()
                .map(move |f| 3 * 512 + block(name.len() + version.len() + 16) + block(f.len()))
        })
        .sum::<usize>()
        + 2 * 512;
    let mut tar = tar::Builder::new(Vec::with_capacity(size));
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (name, version, files) in certs {
        for (file, data) in FILES.iter().zip(files) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            h.set_mode(if *file == "privkey.pem" { 0o600 } else { 0o644 });
            h.set_mtime(mtime);
            tar.append_data(&mut h, format!("{name}/{version}/{file}"), *data)?;
        }
    }
    let bytes = tar.into_inner()?;
    debug_assert!(bytes.len() <= size, "the payload outgrew its buffer");
    Ok(Secret::new(bytes))
}

/// The relative link target of `version` of `name`, as seen from `live/`.
pub(crate) fn link_target(name: &str, version: &str) -> String {
    format!("../archive/{name}/{version}")
}

/// The one script a deployment runs on a node, payload on stdin: per
/// certificate, read the live link and the checksums of the wanted version;
/// skip it if already linked, complete and served; else adopt a real
/// `live/<name>` directory, stage the files (or consume them if the version
/// is complete). Then swap every link, validate, reload and prune. Prints
/// `@cert <name> unchanged|other|activate <previous target>` per
/// certificate, then a marker: `@fail <step> <path>` (exit 1), `@validate`
/// (exit 3) or `@reload` (exit 4) followed by the command's output, or
/// `@ok`. On any failure after a swap every link is put back first.
pub(crate) fn deploy(d: &DeployScript) -> String {
    let mut s = String::new();
    header(
        &mut s,
        &d.base,
        &d.token,
        d.chown.as_deref(),
        d.fence.as_ref(),
    );
    let _ = writeln!(s, "t0={NOW}");
    let _ = writeln!(s, "keep={}", d.keep.max(1));
    let _ = writeln!(s, "adopt={}", shell_quote(&d.adopt_as));
    let _ = writeln!(s, "validate={}", shell_quote(&d.validate));
    let _ = writeln!(s, "reload={}", shell_quote(&d.reload));
    // idx NAME: sets $i to the certificate's index in this script, or empty.
    s.push_str("idx() {\n  case \"$1\" in\n");
    for (i, c) in d.certs.iter().enumerate() {
        let _ = writeln!(s, "    {}) i={i} ;;", shell_quote(&c.name));
    }
    s.push_str("    *) i= ;;\n  esac\n}\nread_links\n");
    for (i, c) in d.certs.iter().enumerate() {
        let _ = writeln!(
            s,
            "i={i}; cert {} {} {} {} {} {} {}; g{i}=$go; p{i}=$cur",
            shell_quote(&c.name),
            shell_quote(&c.version),
            u8::from(c.served && !d.force),
            shell_quote(&c.sums[0]),
            shell_quote(&c.sums[1]),
            shell_quote(&c.sums[2]),
            shell_quote(&c.sums[3]),
        );
    }
    s.push_str("stage_all\n");
    s.push_str("restore_all() {\n  :\n");
    for (i, c) in d.certs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  if [ \"$g{i}\" = 1 ]; then relink {} \"$p{i}\"; fi",
            shell_quote(&c.name)
        );
    }
    s.push_str("}\n");
    let any: String = (0..d.certs.len()).map(|i| format!("$g{i}")).collect();
    let _ = writeln!(
        s,
        "case \"{any}\" in *1*) ;; *) printf '@ok\\n'; exit 0 ;; esac"
    );
    // The renamed version directories are durable before any link points there.
    s.push_str("if [ -n \"$dirs\" ]; then sync $dirs || fail stage \"$dirs\"; fi\n");
    s.push_str("[ -d \"$b/live\" ] || mkdir -p \"$b/live\" || fail swap \"$b/live\"\n");
    for (i, c) in d.certs.iter().enumerate() {
        let _ = writeln!(
            s,
            "if [ \"$g{i}\" = 1 ]; then link {n} {t} || {{ restore_all; fail swap \"$b/live/\"{n}; }}; fi",
            n = shell_quote(&c.name),
            t = shell_quote(&link_target(&c.name, &c.version))
        );
    }
    s.push_str(SYNC_LIVE);
    let _ = writeln!(s, "t1={NOW}");
    s.push_str(VALIDATE.replace("undo", "restore_all").as_str());
    let _ = writeln!(s, "t2={NOW}");
    s.push_str(RELOAD.replace("undo", "restore_all").as_str());
    let _ = writeln!(s, "t3={NOW}");
    for (i, c) in d.certs.iter().enumerate() {
        let _ = writeln!(
            s,
            "if [ \"$g{i}\" = 1 ]; then i={i}; prune {} {} \"$p{i}\"; fi",
            shell_quote(&c.name),
            shell_quote(&c.version)
        );
    }
    s.push_str("prune_all\n");
    s.push_str("printf '@time %s %s %s %s\\n' \"$t0\" \"$t1\" \"$t2\" \"$t3\"\n");
    s.push_str("printf '@ok\\n'\n");
    s
}

/// How long the `deploy` script's steps took on the node, by its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeTimes {
    /// From the script's start (after its lock) to the swapped links synced:
    /// reading links, staging, swapping.
    pub(crate) stage: Duration,
    /// The validate command.
    pub(crate) validate: Duration,
    /// The reload command.
    pub(crate) reload: Duration,
}

/// The `deploy` script's `@time t0 t1 t2 t3` line (nanoseconds since the
/// epoch), or `None` where the node's `date` has no `%N` or the clock went
/// backwards.
pub(crate) fn parse_times(stdout: &str) -> Option<NodeTimes> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("@time "))?;
    let t: Vec<u64> = line
        .split(' ')
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    // Seconds alone (a `date` that prints nothing for %N) are not nanoseconds.
    let [t0, t1, t2, t3] = t[..] else {
        return None;
    };
    if t0 < 1_000_000_000_000_000 {
        return None;
    }
    let span = |a: u64, b: u64| b.checked_sub(a).map(Duration::from_nanos);
    Some(NodeTimes {
        stage: span(t0, t1)?,
        validate: span(t1, t2)?,
        reload: span(t2, t3)?,
    })
}

/// What the `deploy` script decided for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertStep {
    /// Already linked, complete and served.
    Unchanged,
    /// `live/<name>` is neither a link nor a directory.
    Other,
    /// Linked (or to be); the previous link target, if there was a link.
    Activate(Option<String>),
}

/// The per-certificate lines of the `deploy` script's output.
pub(crate) fn parse_steps(stdout: &str) -> BTreeMap<String, CertStep> {
    let mut m = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("@cert ") else {
            continue;
        };
        let mut it = rest.splitn(3, ' ');
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        let step = match kind {
            "unchanged" => CertStep::Unchanged,
            "activate" => CertStep::Activate(it.next().filter(|t| !t.is_empty()).map(String::from)),
            _ => CertStep::Other,
        };
        m.insert(name.to_string(), step);
    }
    m
}

/// Relinks `go` and reloads (validating first if `validate` is given): after
/// a failed verification, and for `rollback`. If validation or reload fails,
/// `undo` is relinked. After `@ok`, the `cert.pem` now live for each linked
/// certificate of `go` is printed, for the caller to verify.
pub(crate) fn restore(
    base: &str,
    token: &str,
    go: &[Relink],
    validate: Option<&str>,
    reload: &str,
    undo: &[Relink],
    fence: Option<&NodeFence>,
) -> String {
    let mut s = String::new();
    header(&mut s, base, token, None, fence);
    s.push_str("undo_all() {\n  :\n");
    for u in undo {
        let _ = writeln!(
            s,
            "  relink {} {}",
            shell_quote(&u.name),
            shell_quote(u.target.as_deref().unwrap_or(""))
        );
    }
    s.push_str("}\n");
    for g in go {
        let _ = writeln!(
            s,
            "relink {n} {t} || {{ undo_all; fail swap \"$b/live/\"{n}; }}",
            n = shell_quote(&g.name),
            t = shell_quote(g.target.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(s, "validate={}", shell_quote(validate.unwrap_or("true")));
    let _ = writeln!(s, "reload={}", shell_quote(reload));
    s.push_str(SYNC_LIVE);
    s.push_str(VALIDATE.replace("undo", "undo_all").as_str());
    s.push_str(RELOAD.replace("undo", "undo_all").as_str());
    s.push_str("printf '@ok\\n'\n");
    for g in go.iter().filter(|g| g.target.is_some()) {
        let _ = writeln!(
            s,
            "cat \"$b/live/\"{}/cert.pem 2>/dev/null || true",
            shell_quote(&g.name)
        );
    }
    s
}

/// The node-side step a script names in its `@fail <step> <path>` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeStep {
    /// Making the base directory.
    Base,
    /// Taking the node-side lock (`<base>/.certctl.lock`).
    Lock,
    /// Staging a version's files into `archive/<name>/`.
    Stage,
    /// Adopting a `live/<name>` certctl did not make.
    Adopt,
    /// Swapping (or putting back) the `live/<name>` link.
    Swap,
    /// A path to replace holds something certctl did not make.
    Foreign,
}

impl NodeStep {
    /// The word the scripts print after `@fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStep::Base => "base",
            NodeStep::Lock => "lock",
            NodeStep::Stage => "stage",
            NodeStep::Adopt => "adopt",
            NodeStep::Swap => "swap",
            NodeStep::Foreign => "foreign",
        }
    }

    /// The step a script's `@fail` word names (`None`: not a step of ours).
    fn parse(word: &str) -> Option<Self> {
        [
            NodeStep::Base,
            NodeStep::Lock,
            NodeStep::Stage,
            NodeStep::Adopt,
            NodeStep::Swap,
            NodeStep::Foreign,
        ]
        .into_iter()
        .find(|s| s.as_str() == word)
    }
}

impl std::fmt::Display for NodeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure marker from a script's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Marker {
    /// `@ok`, with what followed it.
    Ok(String),
    /// `@fail <step> <path>`.
    Fail { step: NodeStep, path: String },
    /// `@validate` and the command's output.
    Validate(String),
    /// `@reload` and the command's output.
    Reload(String),
    /// `@fenced <seen> <path>`: the node has seen a later lock holder's
    /// fencing token (`seen`, in the file `path`); nothing was changed.
    Fenced { seen: i64, path: String },
    /// No marker (the script did not get far: sudo, shell missing...), or
    /// a `@fail` naming no step of ours.
    None,
}

/// Finds the marker in a script's stdout.
pub(crate) fn marker(stdout: &str) -> Marker {
    for (i, line) in stdout.lines().enumerate() {
        let rest = || {
            stdout
                .lines()
                .skip(i + 1)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        };
        if line == "@ok" {
            let after: Vec<&str> = stdout.lines().skip(i + 1).collect();
            return Marker::Ok(after.join("\n"));
        }
        if let Some(f) = line.strip_prefix("@fail ") {
            let (word, path) = f.split_once(' ').unwrap_or((f, ""));
            return match NodeStep::parse(word) {
                Some(step) => Marker::Fail {
                    step,
                    path: path.into(),
                },
                None => Marker::None,
            };
        }
        if let Some(f) = line.strip_prefix("@fenced ") {
            let (seen, path) = f.split_once(' ').unwrap_or((f, ""));
            if let Ok(seen) = seen.parse() {
                return Marker::Fenced {
                    seen,
                    path: path.into(),
                };
            }
        }
        if line == "@validate" {
            return Marker::Validate(rest());
        }
        if line == "@reload" {
            return Marker::Reload(rest());
        }
    }
    Marker::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    fn sh(script: &str, stdin: &[u8]) -> (i32, String) {
        use std::io::Write;
        let mut c = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        let _ = c.stdin.take().expect("stdin").write_all(stdin);
        let out = c.wait_with_output().expect("wait");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    const PARTS: [&[u8]; 4] = [b"KEY\n", b"CERT\n", b"", b"CERT\nCHAIN\n"];

    fn payload() -> Vec<u8> {
        super::payload(&[("www", "v2", PARTS)])
            .expect("payload")
            .expose()
            .to_vec()
    }

    fn script(base: &str, validate: &str, served: bool) -> DeployScript {
        DeployScript {
            base: base.into(),
            token: "t1".into(),
            chown: None,
            validate: validate.into(),
            reload: "true".into(),
            keep: 2,
            adopt_as: "adopted-x".into(),
            force: false,
            certs: vec![CertDeploy {
                name: "www".into(),
                version: "v2".into(),
                served,
                sums: PARTS.map(super::super::node::sha256_hex),
            }],
            fence: None,
        }
    }

    /// A version directory as certctl stages it: marked as its own.
    fn certctl_version(dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(VERSION_MARKER), b"").expect("marker");
    }

    fn node_with(base: &Path, versions: &[&str], live: &str) {
        for v in versions {
            certctl_version(&base.join("archive/www").join(v));
            // distinct mtimes, oldest first
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        std::fs::create_dir_all(base.join("live")).expect("mkdir");
        std::os::unix::fs::symlink(format!("../archive/www/{live}"), base.join("live/www"))
            .expect("link");
    }

    #[test]
    fn deploy_stages_swaps_prunes_then_is_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        node_with(dir.path(), &["v0", "v1", "v9"], "v1");
        certctl_version(&dir.path().join("archive/www/.tmp-v9-dead"));
        std::fs::create_dir_all(dir.path().join("archive/www/.tmp-not-ours")).expect("mkdir");
        let (code, out) = sh(&deploy(&script(base, "true", false)), &payload());
        assert_eq!(code, 0, "{out}");
        assert_eq!(marker(&out), Marker::Ok(String::new()));
        assert_eq!(
            parse_steps(&out)["www"],
            CertStep::Activate(Some("../archive/www/v1".into()))
        );
        let link = std::fs::read_link(dir.path().join("live/www")).expect("link");
        assert_eq!(link.to_str(), Some("../archive/www/v2"));
        let v2 = dir.path().join("archive/www/v2");
        assert_eq!(
            std::fs::read(v2.join("fullchain.pem")).expect("read"),
            b"CERT\nCHAIN\n"
        );
        let mode = std::fs::metadata(v2.join("privkey.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // keep 2: v2 and the newest other (v9); v1 is the previous one
        assert!(dir.path().join("archive/www/v9").exists());
        assert!(dir.path().join("archive/www/v1").exists(), "previous kept");
        assert!(!dir.path().join("archive/www/v0").exists(), "pruned");
        assert!(!dir.path().join("archive/www/.tmp-v9-dead").exists());
        assert!(
            dir.path().join("archive/www/.tmp-not-ours").exists(),
            "an unmarked leftover is not certctl's to remove"
        );
        assert!(
            v2.join(VERSION_MARKER).exists(),
            "a staged version is marked"
        );

        // Linked, complete and served: nothing to do (a failing validate
        // command proves it is not run), stdin consumed.
        let (code, out) = sh(&deploy(&script(base, "false", true)), &payload());
        assert_eq!(code, 0, "{out}");
        assert_eq!(parse_steps(&out)["www"], CertStep::Unchanged);
        assert_eq!(marker(&out), Marker::Ok(String::new()));

        // Linked and complete but not served: validate and reload again.
        let (code, out) = sh(&deploy(&script(base, "true", false)), &payload());
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            parse_steps(&out)["www"],
            CertStep::Activate(Some("../archive/www/v2".into()))
        );

        // inspect (used by rollback) sees versions newest first
        let (_, out) = sh(&inspect(base, &[("www", "v2")]), b"");
        let m = parse_inspect(&out);
        assert_eq!(m["www"].live.version(), Some("v2"));
        assert_eq!(m["www"].sums.len(), 4);
        assert_eq!(
            m["www"].versions.first().map(String::as_str),
            Some("v2"),
            "{:?}",
            m["www"].versions
        );
    }

    #[test]
    fn failed_validation_puts_the_old_link_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        node_with(dir.path(), &["v1"], "v1");
        let (code, out) = sh(
            &deploy(&script(base, "echo 'bad config'; false", false)),
            &payload(),
        );
        assert_eq!(code, 3);
        assert_eq!(marker(&out), Marker::Validate("bad config".into()));
        let link = std::fs::read_link(dir.path().join("live/www")).expect("link");
        assert_eq!(link.to_str(), Some("../archive/www/v1"));
    }

    #[test]
    fn short_upload_never_becomes_a_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let whole = payload();
        let (code, out) = sh(&deploy(&script(base, "true", false)), &whole[..1000]);
        assert_eq!(code, 1, "{out}");
        assert!(matches!(
            marker(&out),
            Marker::Fail {
                step: NodeStep::Stage,
                ..
            }
        ));
        assert!(!dir.path().join("archive/www/v2").exists());
        assert!(!dir.path().join("live/www").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("archive"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "staging directory removed: {left:?}");
    }

    #[test]
    fn a_second_adoption_within_the_same_second_gets_its_own_name() {
        // Regression: both adoptions were named adopted-<second>; the second failed.
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        for round in ["FIRST", "SECOND"] {
            let live = dir.path().join("live/www");
            if std::fs::symlink_metadata(&live).is_ok() {
                std::fs::remove_file(&live).expect("unlink the link");
            }
            std::fs::create_dir_all(&live).expect("mkdir");
            std::fs::write(live.join("cert.pem"), round).expect("write");
            let (code, out) = sh(&deploy(&script(base, "true", false)), &payload());
            assert_eq!(code, 0, "{round}: {out}");
        }
        let adopted: Vec<String> = std::fs::read_dir(dir.path().join("archive/www"))
            .expect("archive")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("adopted-x"))
            .collect();
        assert_eq!(adopted.len(), 2, "{adopted:?}");
        let held: Vec<Vec<u8>> = adopted
            .iter()
            .map(|a| {
                std::fs::read(dir.path().join("archive/www").join(a).join("cert.pem"))
                    .expect("copy")
            })
            .collect();
        assert!(held.contains(&b"FIRST".to_vec()) && held.contains(&b"SECOND".to_vec()));
    }

    #[test]
    fn a_real_directory_is_adopted_and_can_be_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let live = dir.path().join("live/www");
        std::fs::create_dir_all(&live).expect("mkdir");
        std::fs::write(dir.path().join("old-cert.pem"), b"OLD\n").expect("write");
        std::os::unix::fs::symlink("../../old-cert.pem", live.join("cert.pem")).expect("link");
        let (code, out) = sh(&deploy(&script(base, "true", false)), &payload());
        assert_eq!(code, 0, "{out}");
        let previous = "../archive/www/adopted-x";
        assert_eq!(
            parse_steps(&out)["www"],
            CertStep::Activate(Some(previous.into()))
        );
        let adopted = dir.path().join("archive/www/adopted-x/cert.pem");
        assert_eq!(std::fs::read(&adopted).expect("adopted copy"), b"OLD\n");
        assert!(dir
            .path()
            .join("archive/www/adopted-x")
            .join(ADOPTED_MARKER)
            .exists());
        // The original is kept whole, at the same depth: its relative link still resolves.
        let kept = dir.path().join("live/.www.adopted-x");
        assert_eq!(
            std::fs::read_link(kept.join("cert.pem")).expect("kept link"),
            Path::new("../../old-cert.pem")
        );
        assert_eq!(
            std::fs::read(kept.join("cert.pem")).expect("kept"),
            b"OLD\n"
        );
        assert!(out.contains("@adopted www "), "{out}");
        let go = [Relink {
            name: "www".into(),
            target: Some(previous.into()),
        }];
        let (code, out) = sh(
            &restore(base, "t2", &go, Some("true"), "true", &[], None),
            b"",
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            std::fs::read_link(&live).expect("link").to_str(),
            Some(previous)
        );
        assert_eq!(marker(&out), Marker::Ok("OLD".into()));
    }

    #[test]
    fn one_prune_pass_keeps_each_certificates_newest_and_previous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        std::fs::create_dir_all(dir.path().join("live")).expect("mkdir");
        for name in ["a", "b"] {
            for v in ["v0", "v1", "v9"] {
                certctl_version(&dir.path().join("archive").join(name).join(v));
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
            std::os::unix::fs::symlink(
                format!("../archive/{name}/v1"),
                dir.path().join("live").join(name),
            )
            .expect("link");
        }
        let mut d = script(base, "true", false);
        d.certs = ["a", "b"]
            .iter()
            .map(|n| CertDeploy {
                name: (*n).into(),
                version: "v2".into(),
                served: false,
                sums: PARTS.map(super::super::node::sha256_hex),
            })
            .collect();
        let upload = super::payload(&[("a", "v2", PARTS), ("b", "v2", PARTS)]).expect("payload");
        let (code, out) = sh(&deploy(&d), upload.expose());
        assert_eq!(code, 0, "{out}");
        for name in ["a", "b"] {
            let mut left: Vec<String> = std::fs::read_dir(dir.path().join("archive").join(name))
                .expect("archive")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            // keep 2: v2 (live) and the newest other (v9), plus v1 (previous)
            assert_eq!(left, ["v1", "v2", "v9"], "{name}");
            assert_eq!(
                parse_steps(&out)[name],
                CertStep::Activate(Some(format!("../archive/{name}/v1")))
            );
        }
    }

    /// Runs `script` the way a node does: through the launcher, on stdin.
    fn launched(script: &str, payload: &[u8]) -> (i32, String) {
        let mut stdin = super::super::transport::framed(script).into_bytes();
        stdin.extend_from_slice(payload);
        sh(super::super::transport::LAUNCHER, &stdin)
    }

    /// Every file under `dir` (links as their targets), with its bytes.
    fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                let rel = p.strip_prefix(dir).expect("under").display().to_string();
                let meta = std::fs::symlink_metadata(&p).expect("lstat");
                if meta.file_type().is_symlink() {
                    let t = std::fs::read_link(&p).expect("readlink");
                    m.insert(rel, format!("-> {}", t.display()).into_bytes());
                } else if meta.is_dir() {
                    todo.push(p);
                } else {
                    m.insert(rel, std::fs::read(&p).expect("read"));
                }
            }
        }
        m
    }

    /// A certbot lineage of two issuances under `base`, as certbot lays it out.
    fn certbot_lineage(base: &Path) {
        let a = base.join("archive/www");
        std::fs::create_dir_all(&a).expect("mkdir");
        for n in 1..=2 {
            for f in ["cert", "chain", "fullchain", "privkey"] {
                std::fs::write(a.join(format!("{f}{n}.pem")), format!("{f} {n}\n")).expect("w");
            }
        }
        let l = base.join("live/www");
        std::fs::create_dir_all(&l).expect("mkdir");
        for f in ["cert", "chain", "fullchain", "privkey"] {
            std::os::unix::fs::symlink(
                format!("../../archive/www/{f}2.pem"),
                l.join(format!("{f}.pem")),
            )
            .expect("link");
        }
        std::fs::write(l.join("README"), b"certbot's README\n").expect("w");
        std::fs::create_dir_all(base.join("renewal")).expect("mkdir");
        std::fs::write(base.join("renewal/www.conf"), b"version = 2.1.0\n").expect("w");
    }

    #[test]
    fn prune_and_adoption_never_remove_a_file_of_a_certbot_lineage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        certbot_lineage(dir.path());
        let before = tree(dir.path());
        // Five deploys of new versions, keep 2: prune runs on every one after the second.
        for n in 2..7 {
            let v = format!("v{n}");
            let mut d = script(base, "true", false);
            d.certs[0].version = v.clone();
            d.adopt_as = "adopted-20261202T000000Z".into();
            let upload = super::payload(&[("www", &v, PARTS)]).expect("payload");
            let (code, out) = sh(&deploy(&d), upload.expose());
            assert_eq!(code, 0, "{out}");
            assert!(
                out.contains("@certbot www "),
                "certbot's renewal file is reported: {out}"
            );
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        let after = tree(dir.path());
        for (path, bytes) in &before {
            // certbot's live directory is kept whole, renamed at the same depth
            let now = path.replace("live/www/", "live/.www.adopted-20261202T000000Z/");
            assert_eq!(
                after.get(&now),
                Some(bytes),
                "{path} (now {now}) is certbot's"
            );
        }
        // Its links still resolve to certbot's files.
        let kept = dir.path().join("live/.www.adopted-20261202T000000Z");
        assert_eq!(
            std::fs::read(kept.join("fullchain.pem")).expect("kept"),
            b"fullchain 2\n"
        );
        // The adopted copy is certctl's, holds what certbot served, and is never pruned.
        let adopted = dir.path().join("archive/www/adopted-20261202T000000Z");
        assert_eq!(
            std::fs::read(adopted.join("fullchain.pem")).expect("copy"),
            b"fullchain 2\n"
        );
        // certctl's own versions were pruned to keep 2 (the live v6 and the previous v5).
        let ours: Vec<_> = ["v2", "v3", "v4", "v5", "v6"]
            .into_iter()
            .filter(|v| dir.path().join("archive/www").join(v).exists())
            .collect();
        assert_eq!(ours, ["v5", "v6"]);
        // inspect (rollback) sees versions and the adopted copy, never certbot's files.
        let (_, out) = sh(&inspect(base, &[("www", "")]), b"");
        let versions = &parse_inspect(&out)["www"].versions;
        assert!(
            versions.iter().all(|v| !v.ends_with(".pem")),
            "{versions:?}"
        );
        assert!(
            versions.iter().any(|v| v.starts_with("adopted-")),
            "{versions:?}"
        );
    }

    #[test]
    fn a_link_pointing_elsewhere_is_adopted_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let elsewhere = dir.path().join("letsencrypt-live-www");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        std::fs::write(elsewhere.join("cert.pem"), b"ELSEWHERE\n").expect("w");
        std::fs::create_dir_all(dir.path().join("live")).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("live/www")).expect("link");
        let (code, out) = sh(&deploy(&script(base, "true", false)), &payload());
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            parse_steps(&out)["www"],
            CertStep::Activate(Some("../archive/www/adopted-x".into()))
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("live/.www.adopted-x")).expect("kept link"),
            elsewhere
        );
        assert_eq!(
            std::fs::read(elsewhere.join("cert.pem")).expect("untouched"),
            b"ELSEWHERE\n"
        );
    }

    #[test]
    fn a_directory_at_the_version_path_that_certctl_did_not_make_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        node_with(dir.path(), &["v1"], "v1");
        let foreign = dir.path().join("archive/www/v2");
        std::fs::create_dir_all(&foreign).expect("mkdir");
        std::fs::write(foreign.join("notes.txt"), b"mine\n").expect("w");
        let (code, out) = sh(&deploy(&script(base, "true", false)), &payload());
        assert_eq!(code, 1, "{out}");
        assert!(
            matches!(
                marker(&out),
                Marker::Fail {
                    step: NodeStep::Foreign,
                    ..
                }
            ),
            "{out}"
        );
        assert_eq!(
            std::fs::read(foreign.join("notes.txt")).expect("kept"),
            b"mine\n"
        );
        let link = std::fs::read_link(dir.path().join("live/www")).expect("link");
        assert_eq!(link.to_str(), Some("../archive/www/v1"));
    }

    #[test]
    fn six_hundred_certificates_in_one_script_and_one_upload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let names: Vec<String> = (0..600).map(|i| format!("c{i:03}")).collect();
        let mut d = script(base, "true", false);
        d.certs = names
            .iter()
            .map(|n| CertDeploy {
                name: n.clone(),
                version: "v1".into(),
                served: false,
                sums: PARTS.map(super::super::node::sha256_hex),
            })
            .collect();
        let text = deploy(&d);
        assert!(text.len() > 128 * 1024, "larger than one argument may be");
        let files: Vec<(&str, &str, [&[u8]; 4])> =
            names.iter().map(|n| (n.as_str(), "v1", PARTS)).collect();
        let upload = super::payload(&files).expect("payload");
        let (code, out) = launched(&text, upload.expose());
        assert_eq!(code, 0, "{out}");
        assert_eq!(marker(&out), Marker::Ok(String::new()));
        for n in [&names[0], &names[599]] {
            let v = dir.path().join("archive").join(n).join("v1");
            assert_eq!(std::fs::read(v.join("cert.pem")).expect("cert"), b"CERT\n");
            let mode = std::fs::metadata(v.join("privkey.pem"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{n}");
            let link = std::fs::read_link(dir.path().join("live").join(n)).expect("link");
            assert_eq!(link, Path::new("../archive").join(n).join("v1"));
        }
    }

    #[test]
    fn a_script_cut_short_is_not_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let text = deploy(&script(base, "true", false));
        let framed = super::super::transport::framed(&text);
        // the connection dropped after the first half of the script
        let (code, out) = sh(
            super::super::transport::LAUNCHER,
            &framed.as_bytes()[..framed.len() / 2],
        );
        assert_eq!(code, 125, "{out}");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "nothing done"
        );
    }

    fn fence(revision: i64) -> Option<NodeFence> {
        Some(NodeFence {
            store: "00112233aabbccdd".into(),
            revision,
        })
    }

    #[test]
    fn a_node_refuses_a_script_of_a_lock_holder_older_than_one_it_has_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        node_with(dir.path(), &["v1"], "v1");
        let file = dir.path().join(".certctl-fence-00112233aabbccdd");

        // The later holder (revision 20) deploys first: its token is kept.
        let mut later = script(base, "true", false);
        later.fence = fence(20);
        let (code, out) = sh(&deploy(&later), &payload());
        assert_eq!(code, 0, "{out}");
        assert_eq!(marker(&out), Marker::Ok(String::new()));
        assert_eq!(std::fs::read_to_string(&file).expect("fence"), "20\n");

        // The earlier holder (revision 10, its lease since lost) comes back
        // with an older version: refused before anything is staged or linked.
        let mut stale = script(base, "true", false);
        stale.fence = fence(10);
        stale.certs[0].version = "v0".into();
        let (code, out) = sh(&deploy(&stale), &payload());
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            marker(&out),
            Marker::Fenced {
                seen: 20,
                path: file.to_str().expect("utf8").into()
            }
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("live/www"))
                .expect("link")
                .to_str(),
            Some("../archive/www/v2"),
            "the later holder's link stays"
        );
        assert!(
            !dir.path().join("archive/www/v0").exists(),
            "nothing staged"
        );
        assert_eq!(std::fs::read_to_string(&file).expect("fence"), "20\n");

        // Nor may it put a link back after a failed verification.
        let go = [Relink {
            name: "www".into(),
            target: Some("../archive/www/v1".into()),
        }];
        let (_, out) = sh(
            &restore(base, "t3", &go, None, "true", &[], fence(10).as_ref()),
            b"",
        );
        assert!(
            matches!(marker(&out), Marker::Fenced { seen: 20, .. }),
            "{out}"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("live/www"))
                .expect("link")
                .to_str(),
            Some("../archive/www/v2")
        );

        // A still later holder raises it; the same holder again passes.
        let mut next = script(base, "true", false);
        next.fence = fence(31);
        for _ in 0..2 {
            let (code, out) = sh(&deploy(&next), &payload());
            assert_eq!(code, 0, "{out}");
            assert_eq!(marker(&out), Marker::Ok(String::new()), "{out}");
        }
        assert_eq!(std::fs::read_to_string(&file).expect("fence"), "31\n");
        // Another store's token is its own file: no interference.
        let mut other = script(base, "true", false);
        other.fence = Some(NodeFence {
            store: "ffffffffffffffff".into(),
            revision: 1,
        });
        let (_, out) = sh(&deploy(&other), &payload());
        assert_eq!(marker(&out), Marker::Ok(String::new()), "{out}");
    }

    #[test]
    fn a_fence_path_certctl_did_not_write_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        node_with(dir.path(), &["v1"], "v1");
        let file = dir.path().join(".certctl-fence-00112233aabbccdd");
        std::fs::write(&file, "someone else's notes\n").expect("write");
        let mut d = script(base, "true", false);
        d.fence = fence(5);
        let (code, out) = sh(&deploy(&d), &payload());
        assert_ne!(code, 0, "{out}");
        assert_eq!(
            marker(&out),
            Marker::Fail {
                step: NodeStep::Foreign,
                path: file.to_str().expect("utf8").into()
            }
        );
        assert_eq!(
            std::fs::read_to_string(&file).expect("kept"),
            "someone else's notes\n"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("live/www"))
                .expect("link")
                .to_str(),
            Some("../archive/www/v1"),
            "nothing linked"
        );
    }

    #[test]
    fn scripts_on_one_node_wait_for_each_other() {
        if Command::new("flock").arg("--version").output().is_err() {
            eprintln!("skipped: no flock(1) here");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let lock = dir.path().join(".certctl.lock");
        let done = dir.path().join("first-done");
        // Another run holds the node: it finishes (writes first-done) only
        // after the second script has started.
        let mut first = Command::new("flock")
            .arg(&lock)
            .args([
                "sh",
                "-c",
                "sleep 0.5; touch \"$0\"",
                done.to_str().expect("utf8"),
            ])
            .spawn()
            .expect("flock");
        while Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock")
            .success()
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let validate = format!("test -e {}", shell_quote(done.to_str().expect("utf8")));
        let (code, out) = launched(&deploy(&script(base, &validate, false)), &payload());
        let _ = first.wait();
        assert_eq!(
            code, 0,
            "the second script ran before the first let go: {out}"
        );
    }

    #[test]
    fn hostile_values_stay_quoted() {
        let mut d = script("/srv/$(reboot)", "nginx -t; echo \"$HOME\"", false);
        d.certs[0].version = "v`id`".into();
        let s = deploy(&d);
        assert!(s.contains("b='/srv/$(reboot)'"), "{s}");
        assert!(s.contains("'v`id`'"), "{s}");
        assert!(s.contains("validate='nginx -t; echo \"$HOME\"'"), "{s}");
    }

    #[test]
    fn every_fail_word_in_the_scripts_is_a_node_step() {
        let src = include_str!("script.rs");
        let mut seen = 0;
        for piece in src.split("fail ").skip(1) {
            let word: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            // `fail` as the shell function: followed by a step word and a path.
            let rest = &piece[word.len()..];
            if word.is_empty() || !(rest.starts_with(" \"") || rest.starts_with(" \\\"")) {
                continue;
            }
            assert!(
                NodeStep::parse(&word).is_some(),
                "`fail {word}` is not a NodeStep"
            );
            seen += 1;
        }
        assert!(seen >= 6, "found only {seen} fail calls");
        assert_eq!(
            marker("@fail swap /b/live/www\n"),
            Marker::Fail {
                step: NodeStep::Swap,
                path: "/b/live/www".into()
            }
        );
        assert_eq!(marker("@fail frobnicate /x\n"), Marker::None);
    }

    #[test]
    fn parse_times_reads_the_nodes_clock_and_ignores_what_is_not_nanoseconds() {
        let out = "@cert www activate\n@time 1700000000000000000 1700000000100000000 1700000000350000000 1700000000400000000\n@ok\n";
        assert_eq!(
            parse_times(out),
            Some(NodeTimes {
                stage: Duration::from_millis(100),
                validate: Duration::from_millis(250),
                reload: Duration::from_millis(50),
            })
        );
        // A `date` without %N: literal N, a bare %N, or seconds only.
        assert_eq!(
            parse_times("@time 1700000000N 1700000000N 1700000000N 1700000000N\n"),
            None
        );
        assert_eq!(
            parse_times("@time 1700000000%N 1700000000%N 1700000000%N 1700000000%N\n"),
            None
        );
        assert_eq!(
            parse_times("@time 1700000000 1700000000 1700000001 1700000001\n"),
            None
        );
        // Missing readings, a clock stepped back, no line at all.
        assert_eq!(parse_times("@time    \n"), None);
        assert_eq!(parse_times("@time 1700000000200000000 1700000000100000000 1700000000300000000 1700000000400000000\n"), None);
        assert_eq!(parse_times("@ok\n"), None);
    }

    #[test]
    fn deploy_reports_its_phases_on_a_gnu_date() {
        let gnu = Command::new("date")
            .arg("+%N")
            .output()
            .is_ok_and(|o| o.stdout.iter().take_while(|b| b.is_ascii_digit()).count() == 9);
        if !gnu {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        node_with(dir.path(), &["v1"], "v1");
        let (code, out) = sh(&deploy(&script(base, "sleep 0.05", false)), &payload());
        assert_eq!(code, 0, "{out}");
        let t = parse_times(&out).expect("an @time line");
        assert!(t.validate >= Duration::from_millis(50), "{t:?}");
    }
}
