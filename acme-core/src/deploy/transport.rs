//! How commands reach a node: over one multiplexed SSH master connection per
//! node (the `openssh` crate, native mux), or on the controller itself
//! (`transport = "local"`). Every step is a POSIX shell script that reaches
//! `sh` on stdin, ahead of its payload (see [`LAUNCHER`]), so the steps do
//! not care which.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::inventory::{NodeConfig, TransportKind};
use crate::names::shell_quote;

/// What a remote script printed and how it ended.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl ScriptOutput {
    /// Standard output as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (lossy), trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// A way to run steps on one node.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Runs `script` with `sh` on the node (through `sudo -n` if the node
    /// asks for it), writing `stdin` to it, bounded by the node's command
    /// timeout. A non-zero exit is not an error here: the caller reads it.
    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ScriptOutput, TransportError>;

    /// Writes `bytes` to `path` on the node with `mode`, replacing it
    /// atomically (temp file in the same directory, fsync, rename).
    async fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), TransportError> {
        let p = path.to_string_lossy();
        let tmp = format!("{p}.tmp-certctl");
        let script = format!(
            "set -e; umask 077; head -c {len} > {t}; chmod {mode:o} {t}; sync {t}; mv -f {t} {p}",
            len = bytes.len(),
            t = shell_quote(&tmp),
            p = shell_quote(&p),
        );
        let out = self.run(&script, bytes).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(TransportError::Write {
                node: self.node().to_string(),
                path: path.to_path_buf(),
                stderr: out.stderr_text(),
            })
        }
    }

    /// The node's name (for messages).
    fn node(&self) -> &str;

    /// Whether the connection still works (an SSH master exits once idle
    /// for its ControlPersist time, e.g. while a slow canary runs).
    async fn alive(&self) -> bool {
        true
    }

    /// Closes the connection (a no-op for `local`).
    async fn close(self: Box<Self>);
}

/// A transport failure: the node could not be reached or a command could not
/// be run at all.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The node's host key is not in the known_hosts file (strict checking).
    #[error("host key of {node} ({address}) is not in {known_hosts}: verify it and add it with `ssh-keyscan -p {port} {address} >> {known_hosts}`")]
    HostKeyUnknown {
        /// Node name.
        node: String,
        /// SSH address.
        address: String,
        /// SSH port.
        port: u16,
        /// The known_hosts file checked.
        known_hosts: String,
    },
    /// The node presented a host key different from the recorded one.
    #[error("host key of {node} ({address}) differs from the one in {known_hosts}: the host was reinstalled or someone is in the middle; verify the new key out of band, then replace its line in {known_hosts}")]
    HostKeyChanged {
        /// Node name.
        node: String,
        /// SSH address.
        address: String,
        /// The known_hosts file checked.
        known_hosts: String,
    },
    /// Nothing listens on the SSH port.
    #[error("ssh to {node} ({address}:{port}) was refused: is sshd running there?")]
    Refused {
        /// Node name.
        node: String,
        /// SSH address.
        address: String,
        /// SSH port.
        port: u16,
    },
    /// The server refused the key.
    #[error("ssh to {node} ({user}@{address}) was denied: the key {identity} is not authorized for {user} there")]
    AuthFailed {
        /// Node name.
        node: String,
        /// Remote user.
        user: String,
        /// SSH address.
        address: String,
        /// Identity file used.
        identity: String,
    },
    /// The connection was not established in time.
    #[error("ssh to {node} ({address}) did not connect within {after:?}")]
    ConnectTimeout {
        /// Node name.
        node: String,
        /// SSH address.
        address: String,
        /// The bound.
        after: Duration,
    },
    /// Another SSH connection failure; `detail` is what ssh said.
    #[error("ssh to {node} ({address}) failed: {detail}")]
    Connect {
        /// Node name.
        node: String,
        /// SSH address.
        address: String,
        /// ssh's message.
        detail: String,
    },
    /// The master connection broke while running a command.
    #[error("ssh session to {node} failed while running a command")]
    Session {
        /// Node name.
        node: String,
        /// What went wrong.
        #[source]
        source: Arc<openssh::Error>,
    },
    /// The master connection was closed while running a command.
    #[error("ssh session to {node} failed while running a command: the connection was closed (sshd stopped or the node went away)")]
    Disconnected {
        /// Node name.
        node: String,
    },
    /// The node's session limit was shut down (the transport is closing).
    #[error("ssh session to {node} failed while running a command: session limit closed")]
    SessionsClosed {
        /// Node name.
        node: String,
    },
    /// A local command could not be started.
    #[error("cannot run `sh` on the controller for local node {node}")]
    Spawn {
        /// Node name.
        node: String,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A command ran longer than `command_timeout`.
    #[error("a command on {node} did not finish within {after:?} (raise command_timeout if the node is just slow)")]
    Timeout {
        /// Node name.
        node: String,
        /// The bound.
        after: Duration,
    },
    /// A file could not be written.
    #[error("cannot write {path} on {node}: {stderr}")]
    Write {
        /// Node name.
        node: String,
        /// Remote path.
        path: PathBuf,
        /// The shell's message.
        stderr: String,
    },
}

/// Connects to `node`: an SSH master connection with its control socket in
/// `control_dir` (a private directory), or the local transport.
pub(crate) async fn connect(
    node: &NodeConfig,
    control_dir: &Path,
) -> Result<Box<dyn Transport>, TransportError> {
    match node.transport {
        TransportKind::Local => Ok(Box::new(LocalTransport::new(node))),
        TransportKind::Ssh => Ok(Box::new(SshTransport::connect(node, control_dir).await?)),
    }
}

/// The one command a node runs: it reads a length line, then that many bytes
/// of script, and evaluates the script, which reads its payload from the
/// rest of stdin. A script of any size passes this way (Linux limits one
/// argument to 128 KiB, about 200 certificates' worth), and a script cut
/// short by a lost connection is refused, not half run: it must end with
/// the line `: certctl-script-end`.
pub(crate) const LAUNCHER: &str = r#"IFS= read -r n && s=$(head -c "$n") && case "$s" in *': certctl-script-end') eval "$s" ;; *) echo 'certctl: the script arrived incomplete' >&2; exit 125 ;; esac"#;

/// The last line of every script sent through [`LAUNCHER`].
const SCRIPT_END: &str = ": certctl-script-end\n";

/// What precedes the payload on stdin: the length line and the script.
pub(crate) fn framed(script: &str) -> String {
    let body_len = script.len() + 1 + SCRIPT_END.len();
    format!("{body_len}\n{script}\n{SCRIPT_END}")
}

/// Writes the framed script, then the payload, to a script's stdin, then
/// closes it. A script that exits early closes its stdin; that is its
/// answer, read from its status, so a failed write is not an error here.
async fn feed(mut input: impl tokio::io::AsyncWrite + Unpin, script: &str, payload: &[u8]) {
    if input.write_all(framed(script).as_bytes()).await.is_ok() {
        let _ = input.write_all(payload).await;
    }
    let _ = input.shutdown().await;
}

/// Feeds a started script its framed text and payload while its output is
/// read (a script may print before it has read all of its payload).
async fn exchange<E>(
    input: Option<impl tokio::io::AsyncWrite + Unpin>,
    script: &str,
    payload: &[u8],
    output: impl std::future::Future<Output = Result<std::process::Output, E>>,
) -> Result<ScriptOutput, E> {
    let fed = async {
        if let Some(input) = input {
            feed(input, script, payload).await;
        }
    };
    let ((), out) = tokio::join!(fed, output);
    let out = out?;
    Ok(ScriptOutput {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// `work` bounded by the node's command timeout.
async fn within(
    node: &str,
    after: Duration,
    work: impl std::future::Future<Output = Result<ScriptOutput, TransportError>>,
) -> Result<ScriptOutput, TransportError> {
    tokio::time::timeout(after, work).await.unwrap_or_else(|_| {
        Err(TransportError::Timeout {
            node: node.to_string(),
            after,
        })
    })
}

fn launcher_argv(sudo: bool) -> Vec<&'static str> {
    let mut v = Vec::with_capacity(5);
    if sudo {
        v.extend(["sudo", "-n"]);
    }
    v.extend(["sh", "-c", LAUNCHER]);
    v
}

/// Commands on the controller itself.
#[derive(Debug)]
pub(crate) struct LocalTransport {
    node: String,
    sudo: bool,
    timeout: Duration,
}

impl LocalTransport {
    /// A local transport with `node`'s sudo and timeout settings.
    pub(crate) fn new(node: &NodeConfig) -> Self {
        Self {
            node: node.name.to_string(),
            sudo: node.sudo,
            timeout: node.command_timeout,
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ScriptOutput, TransportError> {
        let argv = launcher_argv(self.sudo);
        let mut cmd = tokio::process::Command::new(argv[0]);
        cmd.args(&argv[1..]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let spawn_err = |e: std::io::Error| TransportError::Spawn {
            node: self.node.clone(),
            source: Arc::new(e),
        };
        let work = async {
            let mut child = cmd.spawn().map_err(spawn_err)?;
            let input = child.stdin.take();
            exchange(input, script, stdin, child.wait_with_output())
                .await
                .map_err(spawn_err)
        };
        within(&self.node, self.timeout, work).await
    }

    fn node(&self) -> &str {
        &self.node
    }

    async fn close(self: Box<Self>) {}
}

/// Commands over one SSH master connection, multiplexed.
pub(crate) struct SshTransport {
    node: String,
    session: openssh::Session,
    sessions: Arc<Semaphore>,
    sudo: bool,
    timeout: Duration,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl SshTransport {
    /// Opens the master connection to `node` (strict host key checking).
    pub(crate) async fn connect(
        node: &NodeConfig,
        control_dir: &Path,
    ) -> Result<Self, TransportError> {
        let mut b = openssh::SessionBuilder::default();
        b.known_hosts_check(openssh::KnownHosts::Strict)
            .user(node.user.clone())
            .port(node.port)
            .connect_timeout(node.connect_timeout)
            .server_alive_interval(Duration::from_secs(5))
            .control_directory(control_dir)
            // A master whose certctl died exits by itself once idle.
            .control_persist(openssh::ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(30).unwrap_or(std::num::NonZeroUsize::MIN),
            ));
        if let Some(k) = &node.known_hosts {
            b.user_known_hosts_file(k);
        }
        if let Some(k) = &node.identity_file {
            b.keyfile(k);
        }
        if let Some(c) = &node.ssh_config {
            b.config_file(c);
        }
        // ssh's ConnectTimeout bounds TCP and the banner; this bounds the rest
        // (key exchange, authentication).
        let bound = node.connect_timeout + Duration::from_secs(5);
        let session = match tokio::time::timeout(bound, b.connect_mux(&node.address)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(classify_connect(node, &e)),
            Err(_) => {
                return Err(TransportError::ConnectTimeout {
                    node: node.name.to_string(),
                    address: node.address.clone(),
                    after: bound,
                })
            }
        };
        Ok(Self {
            node: node.name.to_string(),
            session,
            sessions: Arc::new(Semaphore::new(node.max_sessions.max(1))),
            sudo: node.sudo,
            timeout: node.command_timeout,
        })
    }
}

fn known_hosts_name(node: &NodeConfig) -> String {
    node.known_hosts
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into())
}

/// Turns what ssh said into a typed error with a fix.
fn classify_connect(node: &NodeConfig, e: &openssh::Error) -> TransportError {
    let detail = match e {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        other => other.to_string(),
    };
    classify_ssh_message(node, &detail)
}

/// ssh says why a connection failed only in its message (its exit status is
/// 255 for every cause), so that text is the one signal there is.
fn classify_ssh_message(node: &NodeConfig, detail: &str) -> TransportError {
    let name = node.name.to_string();
    let address = node.address.clone();
    let lower = detail.to_ascii_lowercase();
    if lower.contains("remote host identification has changed")
        || lower.contains("has changed and you have requested strict checking")
    {
        TransportError::HostKeyChanged {
            node: name,
            address,
            known_hosts: known_hosts_name(node),
        }
    } else if lower.contains("host key is known for")
        || lower.contains("host key verification failed")
    {
        TransportError::HostKeyUnknown {
            node: name,
            address,
            port: node.port,
            known_hosts: known_hosts_name(node),
        }
    } else if lower.contains("connection refused") {
        TransportError::Refused {
            node: name,
            address,
            port: node.port,
        }
    } else if lower.contains("permission denied") {
        TransportError::AuthFailed {
            node: name,
            user: node.user.clone(),
            address,
            identity: node
                .identity_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(ssh's default keys)".into()),
        }
    } else if lower.contains("timed out") {
        TransportError::ConnectTimeout {
            node: name,
            address,
            after: node.connect_timeout,
        }
    } else {
        TransportError::Connect {
            node: name,
            address,
            detail: detail.lines().last().unwrap_or(detail).trim().to_string(),
        }
    }
}

#[async_trait]
impl Transport for SshTransport {
    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ScriptOutput, TransportError> {
        let _permit =
            self.sessions
                .acquire()
                .await
                .map_err(|_| TransportError::SessionsClosed {
                    node: self.node.clone(),
                })?;
        let session_err = |e: openssh::Error| match e {
            openssh::Error::Disconnected | openssh::Error::RemoteProcessTerminated => {
                TransportError::Disconnected {
                    node: self.node.clone(),
                }
            }
            other => TransportError::Session {
                node: self.node.clone(),
                source: Arc::new(other),
            },
        };
        // The remote user's shell gets `sh -c '<launcher>'`; the script
        // follows on stdin.
        let command = launcher_argv(self.sudo)
            .into_iter()
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let work = async {
            let mut child = self
                .session
                .raw_command(&command)
                .stdin(openssh::Stdio::piped())
                .stdout(openssh::Stdio::piped())
                .stderr(openssh::Stdio::piped())
                .spawn()
                .await
                .map_err(session_err)?;
            let input = child.stdin().take();
            exchange(input, script, stdin, child.wait_with_output())
                .await
                .map_err(session_err)
        };
        within(&self.node, self.timeout, work).await
    }

    fn node(&self) -> &str {
        &self.node
    }

    async fn alive(&self) -> bool {
        self.session.check().await.is_ok()
    }

    async fn close(self: Box<Self>) {
        if let Err(e) = self.session.close().await {
            tracing::debug!(node = %self.node, error = %e, "closing the ssh master");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeConfig {
        let inv = crate::Inventory::from_str(
            r#"
[account]
directory = "letsencrypt-staging"

[[node]]
name = "node3"
address = "127.0.0.13"
known_hosts = "/lab/known_hosts"
identity_file = "/lab/id"
"#,
            Path::new("/x/certctl.toml"),
        )
        .expect("inventory");
        inv.nodes[0].clone()
    }

    #[test]
    fn ssh_messages_become_errors_with_a_fix() {
        let n = node();
        let unknown = classify_ssh_message(
            &n,
            "No ED25519 host key is known for 127.0.0.13 and you have requested strict checking.\r\nHost key verification failed.",
        );
        assert_eq!(
            unknown.to_string(),
            "host key of node3 (127.0.0.13) is not in /lab/known_hosts: verify it and add it with `ssh-keyscan -p 22 127.0.0.13 >> /lab/known_hosts`"
        );
        let changed = classify_ssh_message(
            &n,
            "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.",
        );
        assert!(matches!(changed, TransportError::HostKeyChanged { .. }));
        let refused = classify_ssh_message(
            &n,
            "ssh: connect to host 127.0.0.13 port 22: Connection refused",
        );
        assert!(refused.to_string().contains("is sshd running"), "{refused}");
        let denied = classify_ssh_message(&n, "root@127.0.0.13: Permission denied (publickey).");
        assert!(denied.to_string().contains("/lab/id"), "{denied}");
    }

    #[tokio::test]
    async fn local_transport_feeds_stdin_and_reports_status() {
        let mut n = node();
        n.transport = TransportKind::Local;
        let t = LocalTransport::new(&n);
        let out = t
            .run("head -c 3; echo; exit 7", b"abcdef")
            .await
            .expect("run");
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(out.stdout_text(), "abc\n");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        t.write_file(&p, b"data", 0o640).await.expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"data");
    }
}
