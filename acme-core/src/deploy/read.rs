//! Reading what nodes have deployed, read-only: which version each
//! `<base_dir>/live/<name>` link points at. The report's one way to look at
//! nodes, through the same transport as a deployment (one multiplexed SSH
//! master per node, the node's `ssh_config`, known_hosts, `max_sessions` and
//! timeouts), under `deploy.concurrency` nodes at once, with a script that
//! writes nothing and waits for a deployment in progress (a shared hold of
//! the node lock, where certctl made one).

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use tracing::Instrument as _;

use crate::inventory::NodeConfig;
use crate::names::shell_quote;
use crate::Inventory;

use super::rollout::ControlDir;
use super::script::{self, Live};
use super::transport::{self, TransportError};
use super::DeployError;

/// How long the read waits for another certctl run's script on the node
/// (it holds the node lock while it swaps links).
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a node has at `<base_dir>/live/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deployed {
    /// A symlink to this version (the last component of its target).
    Version(String),
    /// Nothing there: not deployed.
    Missing,
    /// A real directory (hand-made or certbot-style), not a link certctl made.
    Directory,
    /// Something else (a regular file, a link with an empty target).
    Other,
}

impl From<&Live> for Deployed {
    fn from(l: &Live) -> Self {
        match l {
            Live::Link(_) => l
                .version()
                .map_or(Deployed::Other, |v| Deployed::Version(v.to_string())),
            Live::Dir => Deployed::Directory,
            Live::Missing => Deployed::Missing,
            Live::Other => Deployed::Other,
        }
    }
}

/// Why a node's deployed versions could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The node could not be reached, or the script not run.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Another certctl run held the node lock for the whole wait.
    #[error(
        "another certctl run on {node} held {lock} for {waited:?}; report again once it is done"
    )]
    Busy {
        /// Node name.
        node: String,
        /// The lock file.
        lock: PathBuf,
        /// How long the read waited.
        waited: Duration,
    },
    /// The script ended without an answer (sudo refused, no shell...).
    #[error("reading {} on {node} failed ({status}): {stderr}", .base.join("live").display())]
    Script {
        /// Node name.
        node: String,
        /// The node's base directory.
        base: PathBuf,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// The read-only script: waits for a shared hold of the node lock if
/// certctl made one (never creates it, nor anything else), then prints one
/// `live <name> link <target>|dir|other|missing` line per certificate, the
/// lines [`script::parse_inspect`] reads, then `@ok`; or `@busy` if the lock
/// stayed held. Link targets come from one `ls -l` ([`script::READ_LINKS`]).
pub(crate) fn read_links(base: &str, certs: &[&str], lock_wait: Duration) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("set -u\n");
    let _ = writeln!(s, "b={}", shell_quote(base));
    let _ = writeln!(
        s,
        r#"if [ -r "$b/.certctl.lock" ] && command -v flock >/dev/null 2>&1; then
  exec 9<"$b/.certctl.lock"
  flock -s -w {} 9 || {{ printf '@busy\n'; exit 0; }}
fi"#,
        lock_wait.as_secs().max(1)
    );
    s.push_str("idx() {\n  case \"$1\" in\n");
    for (i, c) in certs.iter().enumerate() {
        let _ = writeln!(s, "    {}) i={i} ;;", shell_quote(c));
    }
    s.push_str("    *) i= ;;\n  esac\n}\n");
    s.push_str(script::READ_LINKS);
    s.push_str(
        r#"look() {
  n=$1; l="$b/live/$1"
  if [ -L "$l" ]; then
    eval "t=\${l$i-}"
    [ -n "$t" ] || t=$(readlink "$l")
    printf 'live %s link %s\n' "$n" "$t"
  elif [ -d "$l" ]; then printf 'live %s dir\n' "$n"
  elif [ -e "$l" ]; then printf 'live %s other\n' "$n"
  else printf 'live %s missing\n' "$n"; fi
}
read_links
"#,
    );
    for (i, c) in certs.iter().enumerate() {
        let _ = writeln!(s, "i={i}; look {}", shell_quote(c));
    }
    s.push_str("printf '@ok\\n'\n");
    s
}

/// Reads `certs` on a node that ran [`read_links`]: one entry per
/// certificate, in order.
fn parse(
    node: &NodeConfig,
    certs: &[&str],
    lock_wait: Duration,
    out: &transport::ScriptOutput,
) -> Result<Vec<Deployed>, ReadError> {
    let text = out.stdout_text();
    if text.lines().any(|l| l == "@busy") {
        return Err(ReadError::Busy {
            node: node.name.to_string(),
            lock: node.base_dir.join(".certctl.lock"),
            waited: lock_wait,
        });
    }
    if !out.status.success() || !text.lines().any(|l| l == "@ok") {
        return Err(ReadError::Script {
            node: node.name.to_string(),
            base: node.base_dir.clone(),
            status: out.status,
            stderr: out.stderr_text(),
        });
    }
    let seen = script::parse_inspect(&text);
    Ok(certs
        .iter()
        .map(|c| {
            seen.get(*c)
                .map_or(Deployed::Missing, |i| Deployed::from(&i.live))
        })
        .collect())
}

/// Reads which version of each of `certs` `node` has deployed, over
/// `transport` (one script run, one session).
pub(crate) async fn read_node(
    node: &NodeConfig,
    transport: &dyn transport::Transport,
    certs: &[&str],
) -> Result<Vec<Deployed>, ReadError> {
    read_waiting(node, transport, certs, LOCK_WAIT).await
}

async fn read_waiting(
    node: &NodeConfig,
    transport: &dyn transport::Transport,
    certs: &[&str],
    lock_wait: Duration,
) -> Result<Vec<Deployed>, ReadError> {
    let base = node.base_dir.to_string_lossy();
    // The transport bounds the run by command_timeout; a read needs less.
    let bound = node
        .command_timeout
        .min(lock_wait + Duration::from_secs(10));
    let script = read_links(&base, certs, lock_wait);
    let ran = tokio::time::timeout(bound, transport.run(&script, b"")).await;
    let out = match ran {
        Ok(r) => r?,
        Err(_) => {
            return Err(TransportError::Timeout {
                node: node.name.to_string(),
                after: bound,
            }
            .into())
        }
    };
    parse(node, certs, lock_wait, &out)
}

/// Reads what each of `wanted`'s nodes has deployed for its certificates:
/// one result per node, in order, each with one [`Deployed`] per
/// certificate. At most `deploy.concurrency` nodes are connected at once,
/// each over one master connection (closed once read). A node that cannot
/// be read is an error in its own slot; the whole call fails only if the
/// private directory for the control sockets cannot be made.
pub async fn read_deployed(
    inventory: &Inventory,
    wanted: &[(&NodeConfig, Vec<&str>)],
) -> Result<Vec<Result<Vec<Deployed>, ReadError>>, DeployError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let control = ControlDir::new()?;
    let dir = control.path();
    let mut done: Vec<(usize, Result<Vec<Deployed>, ReadError>)> =
        futures::stream::iter(wanted.iter().enumerate())
            .map(|(i, (node, certs))| {
                let span = tracing::info_span!("read", node = %node.name);
                async move {
                    let start = std::time::Instant::now();
                    let r = match transport::connect(node, dir).await {
                        Err(e) => Err(e.into()),
                        Ok(t) => {
                            let connected = start.elapsed();
                            let r = read_node(node, t.as_ref(), certs).await;
                            tracing::debug!(connect = ?connected, script = ?(start.elapsed() - connected), "read");
                            t.close().await;
                            r
                        }
                    };
                    (i, r)
                }
                .instrument(span)
            })
            .buffer_unordered(inventory.deploy.concurrency.max(1))
            .collect()
            .await;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn local_node(base: &Path) -> NodeConfig {
        let inv = crate::Inventory::from_str(
            &format!(
                r#"
[account]
directory = "letsencrypt-staging"

[[node]]
name = "here"
transport = "local"
base_dir = "{}"
"#,
                base.display()
            ),
            Path::new("/x/certctl.toml"),
        )
        .expect("inventory");
        inv.nodes[0].clone()
    }

    fn tree(base: &Path) {
        std::fs::create_dir_all(base.join("archive/www/v2")).expect("mkdir");
        std::fs::create_dir_all(base.join("live/certbot")).expect("mkdir");
        std::os::unix::fs::symlink("../archive/www/v2", base.join("live/www")).expect("link");
        std::fs::write(base.join("live/file"), b"x").expect("file");
    }

    /// Every file under `base` with its mtime, to prove nothing was written.
    fn snapshot(base: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut v = Vec::new();
        let mut stack = vec![base.to_path_buf()];
        while let Some(d) = stack.pop() {
            let md = std::fs::symlink_metadata(&d).expect("stat");
            v.push((d.clone(), md.modified().expect("mtime")));
            if md.is_dir() {
                for e in std::fs::read_dir(&d).expect("dir") {
                    stack.push(e.expect("entry").path());
                }
            }
        }
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_read_names_each_links_version_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("certs");
        tree(&base);
        let before = snapshot(dir.path());
        let node = local_node(&base);
        let t = transport::LocalTransport::new(&node);
        let got = read_node(&node, &t, &["www", "certbot", "file", "media"])
            .await
            .expect("read");
        assert_eq!(
            got,
            [
                Deployed::Version("v2".into()),
                Deployed::Directory,
                Deployed::Other,
                Deployed::Missing
            ]
        );
        assert_eq!(snapshot(dir.path()), before, "a read changes nothing");
    }

    #[tokio::test]
    async fn a_missing_base_directory_is_not_deployed_and_is_not_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("nothing-here");
        let node = local_node(&base);
        let t = transport::LocalTransport::new(&node);
        let got = read_node(&node, &t, &["www"]).await.expect("read");
        assert_eq!(got, [Deployed::Missing]);
        assert!(!base.exists(), "the read made no directory");
    }

    #[tokio::test]
    async fn a_read_waits_for_the_node_lock_and_says_so_when_it_stays_held() {
        if std::process::Command::new("flock")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: no flock(1) here");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("certs");
        tree(&base);
        let lock = base.join(".certctl.lock");
        std::fs::write(&lock, b"").expect("lock file");
        let node = local_node(&base);
        // A deployment holds the lock (exclusively) longer than the read is
        // willing to wait.
        let mut holder = std::process::Command::new("flock")
            .arg(&lock)
            .args(["sleep", "2"])
            .spawn()
            .expect("flock");
        while std::process::Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock")
            .success()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = transport::LocalTransport::new(&node);
        let got = read_waiting(&node, &t, &["www"], Duration::from_secs(1)).await;
        let _ = holder.wait();
        assert!(
            matches!(got, Err(ReadError::Busy { ref lock, .. }) if lock.ends_with(".certctl.lock")),
            "{got:?}"
        );
        // Once it is free, the read goes through.
        let got = read_node(&node, &t, &["www"]).await.expect("read");
        assert_eq!(got, [Deployed::Version("v2".into())]);
    }

    #[test]
    fn hostile_names_stay_quoted() {
        let s = read_links("/srv/$(reboot)", &["a'b"], LOCK_WAIT);
        assert!(s.contains("b='/srv/$(reboot)'"), "{s}");
        assert!(s.contains(r#"look 'a'\''b'"#), "{s}");
    }
}
