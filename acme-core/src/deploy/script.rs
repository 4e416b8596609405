//! The remote shell scripts, built as text (no I/O here, so they are unit
//! tested and run against a local directory in tests). Every value that comes
//! from the inventory, the store or a node passes through [`shell_quote`].
//!
//! One script per phase keeps round trips down: `inspect` (read-only), then
//! `activate` (stage, adopt, swap, validate, reload, prune), and `restore`
//! only when verification fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::names::{check_label, shell_quote};

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
            Live::Link(t) => t.trim_end_matches('/').rsplit('/').next(),
            _ => None,
        }
    }
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
  ls -1t "$b/archive/$n" 2>/dev/null | while read -r x; do printf 'ver %s %s\n' "$n" "$x"; done
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

/// The new files of one version, as sizes of the bytes that follow on stdin
/// (privkey, cert, chain, fullchain).
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    /// Byte counts in [`crate::store::RELEASE_FILES`] order.
    pub(crate) sizes: [usize; 4],
}

/// One certificate's part of the `activate` script.
#[derive(Debug, Clone)]
pub(crate) struct CertActivation {
    /// Certificate name.
    pub(crate) name: String,
    /// Version to link.
    pub(crate) version: String,
    /// Files to stage first, if the version is not complete on the node.
    pub(crate) upload: Option<Upload>,
    /// Adopt a real `live/<name>` directory under this version name first.
    pub(crate) adopt_as: Option<String>,
    /// What to put back on failure: the previous link target, or `None` to
    /// remove the link.
    pub(crate) previous: Option<String>,
    /// Old versions to delete after a successful reload.
    pub(crate) prune: Vec<String>,
}

/// Everything `activate` needs for one node.
#[derive(Debug, Clone)]
pub(crate) struct Activation {
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
    /// The certificates.
    pub(crate) certs: Vec<CertActivation>,
}

const FUNCTIONS: &str = r#"put() {
  head -c "$2" > "$t/$1" && chmod "$3" "$t/$1" && [ "$(wc -c < "$t/$1")" -eq "$2" ] ||
    { e="$t/$1"; rm -rf "$t"; fail stage "$e"; }
}
stage() {
  a="$b/archive/$1"; t="$a/.tmp-$2-$r"
  mkdir -p "$a" "$b/live" || fail stage "$a"
  rm -rf "$a"/.tmp-* "$a"/.old-*
  mkdir "$t" || fail stage "$t"
  put privkey.pem "$3" 600
  put cert.pem "$4" 644
  put chain.pem "$5" 644
  put fullchain.pem "$6" 644
  chmod 755 "$t"
  if [ -n "$own" ]; then chown "$own" "$t" "$t"/*.pem || { rm -rf "$t"; fail stage "$t"; }; fi
  sync "$t"/*.pem "$t" 2>/dev/null || sync
  if [ -e "$a/$2" ]; then mv -T "$a/$2" "$a/.old-$2-$r" || { rm -rf "$t"; fail stage "$a/$2"; }; fi
  mv -T "$t" "$a/$2" || { rm -rf "$t"; fail stage "$a/$2"; }
  rm -rf "$a/.old-$2-$r"
  sync "$a" 2>/dev/null || true
}
adopt() {
  a="$b/archive/$1"; l="$b/live/$1"; t="$a/.tmp-$2-$r"
  mkdir -p "$a" || fail adopt "$a"
  cp -RL "$l" "$t" && chmod 755 "$t" && sync && mv -T "$t" "$a/$2" || { rm -rf "$t"; fail adopt "$a/$2"; }
  mv -T "$l" "$b/live/.$1.old-$r" || fail adopt "$l"
  ln -s "../archive/$1/$2" "$l" || { mv -T "$b/live/.$1.old-$r" "$l"; fail adopt "$l"; }
  rm -rf "$b/live/.$1.old-$r"
}
link() {
  l="$b/live/$1"; t="$b/live/.$1.tmp-$r"
  rm -f "$t"
  ln -s "$2" "$t" && mv -T "$t" "$l" || { rm -f "$t"; return 1; }
}
unlink_live() { rm -f "$b/live/$1"; }
"#;

fn restore_lines(s: &mut String, certs: &[CertActivation]) {
    for c in certs {
        match &c.previous {
            Some(p) => {
                let _ = writeln!(s, "  link {} {}", shell_quote(&c.name), shell_quote(p));
            }
            None => {
                let _ = writeln!(s, "  unlink_live {}", shell_quote(&c.name));
            }
        }
    }
}

fn header(s: &mut String, base: &str, token: &str, chown: Option<&str>) {
    s.push_str(PRELUDE);
    s.push_str("umask 077\n");
    let _ = writeln!(s, "b={}", shell_quote(base));
    let _ = writeln!(s, "r={}", shell_quote(token));
    let _ = writeln!(s, "own={}", shell_quote(chown.unwrap_or("")));
    s.push_str(FUNCTIONS);
}

/// The relative link target of `version` of `name`, as seen from `live/`.
pub(crate) fn link_target(name: &str, version: &str) -> String {
    format!("../archive/{name}/{version}")
}

/// Adopt, stage, swap all links, validate, reload, prune. Markers on stdout:
/// `@fail <step> <path>` (exit 1), `@validate` (exit 3) or `@reload` (exit 4)
/// followed by the command's output, `@ok`. On any failure after a swap every
/// link is put back first.
pub(crate) fn activate(a: &Activation) -> String {
    let mut s = String::new();
    header(&mut s, &a.base, &a.token, a.chown.as_deref());
    s.push_str("restore_all() {\n  :\n");
    restore_lines(&mut s, &a.certs);
    s.push_str("}\n");
    // Adopt first, so the adopted copy is older than the new version.
    for c in &a.certs {
        if let Some(v) = &c.adopt_as {
            let _ = writeln!(s, "adopt {} {}", shell_quote(&c.name), shell_quote(v));
        }
    }
    for c in &a.certs {
        if let Some(u) = &c.upload {
            let _ = writeln!(
                s,
                "stage {} {} {} {} {} {}",
                shell_quote(&c.name),
                shell_quote(&c.version),
                u.sizes[0],
                u.sizes[1],
                u.sizes[2],
                u.sizes[3]
            );
        }
    }
    s.push_str("mkdir -p \"$b/live\" || fail swap \"$b/live\"\n");
    for c in &a.certs {
        let target = link_target(&c.name, &c.version);
        let _ = writeln!(
            s,
            "link {n} {t} || {{ restore_all; fail swap \"$b/live/\"{n}; }}",
            n = shell_quote(&c.name),
            t = shell_quote(&target)
        );
    }
    s.push_str("sync \"$b/live\" 2>/dev/null || true\n");
    let _ = writeln!(
        s,
        "if ! o=$(sh -c {} 2>&1); then restore_all; printf '@validate\\n%s\\n' \"$o\"; exit 3; fi",
        shell_quote(&a.validate)
    );
    let _ = writeln!(
        s,
        "if ! o=$(sh -c {r} 2>&1); then restore_all; sh -c {r} >/dev/null 2>&1; printf '@reload\\n%s\\n' \"$o\"; exit 4; fi",
        r = shell_quote(&a.reload)
    );
    for c in &a.certs {
        for v in &c.prune {
            // Only names certctl could have made; never the live or new one.
            if check_label(v).is_ok() && *v != c.version {
                let _ = writeln!(
                    s,
                    "rm -rf \"$b/archive/\"{}/{}",
                    shell_quote(&c.name),
                    shell_quote(v)
                );
            }
        }
    }
    s.push_str("printf '@ok\\n'\n");
    s
}

/// Puts the given links back and reloads: after a failed verification, and
/// for `rollback` (where `certs[i].previous` is the version to go back to and
/// `validate` is checked first). With `show_cert`, prints the restored
/// version's `cert.pem` after `@ok` so the caller can verify it.
pub(crate) fn restore(
    base: &str,
    token: &str,
    certs: &[CertActivation],
    validate: Option<&str>,
    reload: &str,
    undo: &[CertActivation],
) -> String {
    let mut s = String::new();
    header(&mut s, base, token, None);
    s.push_str("undo_all() {\n  :\n");
    restore_lines(&mut s, undo);
    s.push_str("}\n");
    for c in certs {
        match &c.previous {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "link {n} {p} || {{ undo_all; fail swap \"$b/live/\"{n}; }}",
                    n = shell_quote(&c.name),
                    p = shell_quote(p)
                );
            }
            None => {
                let _ = writeln!(s, "unlink_live {}", shell_quote(&c.name));
            }
        }
    }
    if let Some(v) = validate {
        let _ = writeln!(
            s,
            "if ! o=$(sh -c {} 2>&1); then undo_all; printf '@validate\\n%s\\n' \"$o\"; exit 3; fi",
            shell_quote(v)
        );
    }
    let _ = writeln!(
        s,
        "if ! o=$(sh -c {r} 2>&1); then undo_all; sh -c {r} >/dev/null 2>&1; printf '@reload\\n%s\\n' \"$o\"; exit 4; fi",
        r = shell_quote(reload)
    );
    s.push_str("printf '@ok\\n'\n");
    for c in certs.iter().filter(|c| c.previous.is_some()) {
        let _ = writeln!(
            s,
            "cat \"$b/live/\"{}/cert.pem 2>/dev/null || true",
            shell_quote(&c.name)
        );
    }
    s
}

/// A failure marker from a script's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Marker {
    /// `@ok`, with what followed it.
    Ok(String),
    /// `@fail <step> <path>`.
    Fail { step: String, path: String },
    /// `@validate` and the command's output.
    Validate(String),
    /// `@reload` and the command's output.
    Reload(String),
    /// No marker: the script did not get far (sudo, shell missing...).
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
            let (step, path) = f.split_once(' ').unwrap_or((f, ""));
            return Marker::Fail {
                step: step.into(),
                path: path.into(),
            };
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

    fn files() -> (Vec<u8>, [usize; 4]) {
        let parts: [&[u8]; 4] = [b"KEY\n", b"CERT\n", b"", b"CERT\nCHAIN\n"];
        (parts.concat(), parts.map(|p| p.len()))
    }

    fn activation(base: &str, validate: &str, previous: Option<String>) -> Activation {
        Activation {
            base: base.into(),
            token: "t1".into(),
            chown: None,
            validate: validate.into(),
            reload: "true".into(),
            certs: vec![CertActivation {
                name: "www".into(),
                version: "v2".into(),
                upload: Some(Upload { sizes: files().1 }),
                adopt_as: None,
                previous,
                prune: vec!["v0".into(), "../../etc".into()],
            }],
        }
    }

    #[test]
    fn activate_stages_swaps_and_prunes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        std::fs::create_dir_all(dir.path().join("archive/www/v1")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("archive/www/v0")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("archive/www/.tmp-v9-dead")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("live")).expect("mkdir");
        std::os::unix::fs::symlink("../archive/www/v1", dir.path().join("live/www")).expect("link");
        let script = activate(&activation(base, "true", Some("../archive/www/v1".into())));
        let (code, out) = sh(&script, &files().0);
        assert_eq!(code, 0, "{out}");
        assert_eq!(marker(&out), Marker::Ok(String::new()));
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
        assert!(!dir.path().join("archive/www/v0").exists(), "pruned");
        assert!(dir.path().join("archive/www/v1").exists(), "previous kept");
        assert!(!dir.path().join("archive/www/.tmp-v9-dead").exists());

        // inspect sees the new state
        let (_, out) = sh(&inspect(base, &[("www", "v2")]), b"");
        let m = parse_inspect(&out);
        let www = &m["www"];
        assert_eq!(www.live, Live::Link("../archive/www/v2".into()));
        assert_eq!(www.live.version(), Some("v2"));
        assert_eq!(www.sums.len(), 4);
        assert_eq!(www.versions.first().map(String::as_str), Some("v2"));
    }

    #[test]
    fn failed_validation_puts_the_old_link_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        std::fs::create_dir_all(dir.path().join("archive/www/v1")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("live")).expect("mkdir");
        std::os::unix::fs::symlink("../archive/www/v1", dir.path().join("live/www")).expect("link");
        let script = activate(&activation(
            base,
            "echo 'bad config'; false",
            Some("../archive/www/v1".into()),
        ));
        let (code, out) = sh(&script, &files().0);
        assert_eq!(code, 3);
        assert_eq!(marker(&out), Marker::Validate("bad config".into()));
        let link = std::fs::read_link(dir.path().join("live/www")).expect("link");
        assert_eq!(link.to_str(), Some("../archive/www/v1"));
    }

    #[test]
    fn short_upload_never_becomes_a_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let script = activate(&activation(base, "true", None));
        let (code, out) = sh(&script, b"KEY\nCE");
        assert_eq!(code, 1, "{out}");
        assert!(matches!(marker(&out), Marker::Fail { step, .. } if step == "stage"));
        assert!(!dir.path().join("archive/www/v2").exists());
        assert!(!dir.path().join("live/www").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("archive/www"))
            .expect("dir")
            .collect();
        assert!(left.is_empty(), "temp dir removed");
    }

    #[test]
    fn a_real_directory_is_adopted_and_can_be_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_str().expect("utf8");
        let live = dir.path().join("live/www");
        std::fs::create_dir_all(&live).expect("mkdir");
        std::fs::write(dir.path().join("old-cert.pem"), b"OLD\n").expect("write");
        std::os::unix::fs::symlink("../../old-cert.pem", live.join("cert.pem")).expect("link");
        let mut a = activation(base, "true", Some("../archive/www/adopted-x".into()));
        a.certs[0].adopt_as = Some("adopted-x".into());
        let (code, out) = sh(&activate(&a), &files().0);
        assert_eq!(code, 0, "{out}");
        let adopted = dir.path().join("archive/www/adopted-x/cert.pem");
        assert_eq!(std::fs::read(&adopted).expect("adopted copy"), b"OLD\n");
        let restore = restore(base, "t2", &a.certs, None, "true", &[]);
        let (code, out) = sh(&restore, b"");
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            std::fs::read_link(&live).expect("link").to_str(),
            Some("../archive/www/adopted-x")
        );
        assert_eq!(marker(&out), Marker::Ok("OLD".into()));
    }

    #[test]
    fn hostile_values_stay_quoted() {
        let mut a = activation("/srv/$(reboot)", "nginx -t; echo '", None);
        a.certs[0].version = "v`id`".into();
        let s = activate(&a);
        assert!(s.contains("b='/srv/$(reboot)'"), "{s}");
        assert!(s.contains("'v`id`'"), "{s}");
        assert!(!s.contains("../../etc"), "unsafe prune names are dropped");
    }
}
