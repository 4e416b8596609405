//! Deployment to nodes: stage, swap, validate, reload, verify, roll back.
//!
//! For each node that should serve a certificate (by group), over one SSH
//! master connection (or locally), in ONE remote shell script per node with
//! the files on its stdin:
//!
//! 1. **look** (while the served certificates are probed by TLS):
//!    `readlink live/<name>` and the checksums of the wanted version. A node
//!    whose link already points at the store's version, with complete files,
//!    and that already serves its leaf for every SNI name, is
//!    [`Outcome::Unchanged`].
//! 2. **adopt** a real `live/<name>` directory (hand-made or certbot-style)
//!    as `archive/<name>/adopted-<time>/`, so it can be rolled back to.
//! 3. **stage** the four PEM files into `archive/<name>/.tmp-<version>-<rand>/`
//!    (key first, 0600), check their SHA-256, fsync, `mv -T` into
//!    `archive/<name>/<version>/`: a half-uploaded release is never linked.
//! 4. **swap** `live/<name>`, a relative symlink, with `ln -s` + `mv -T` (one
//!    rename(2)), so key and chain change together; **validate** (on
//!    failure: links put back, [`Outcome::RolledBack`]); **reload**; **prune**
//!    old versions (never the live or the previous one).
//! 5. **verify**: fresh TLS handshakes for every SNI name must present the
//!    new leaf, polled briefly (reloads are asynchronous); otherwise the
//!    links are put back and the node reloaded ([`Outcome::RolledBack`]).
//!
//! The rollout deploys a canary first, then the rest under a concurrency
//! limit, and stops starting nodes after `max_failures` failed ones. Each
//! (certificate, node) result is recorded in the store ([`NodeState`]).

mod node;
mod read;
mod rollout;
mod script;
pub(crate) mod state;
pub(crate) mod transport;

use std::time::Duration;

use serde::Serialize;

pub use read::{read_deployed, Deployed, ReadError};
pub use rollout::{deploy, plan, rollback, Plan, PlannedNode};
pub use script::NodeStep;
pub use state::NodeState;
pub use transport::{ScriptOutput, Transport, TransportError};

use crate::inspect::probe::{ProbeFailure, ProberError};
use crate::store::StoreError;

/// What to deploy where.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Certificates to deploy; all in the inventory when empty.
    pub names: Vec<String>,
    /// Only nodes in one of these groups (all when empty).
    pub groups: Vec<String>,
    /// Only these nodes (all when empty).
    pub nodes: Vec<String>,
    /// Plan only: touch nothing, return [`Outcome::Planned`] per pair.
    pub dry_run: bool,
    /// Stop starting nodes once more than this many have failed
    /// (overrides the inventory's `deploy.max_failures`).
    pub max_failures: Option<usize>,
    /// Redeploy (validate, reload, verify) even where nothing changed.
    pub force: bool,
}

/// Told about the rollout as it goes (the CLI draws a progress bar).
pub trait Progress: Send + Sync {
    /// The plan is known: this many nodes will be worked on.
    fn planned(&self, _nodes: usize) {}
    /// Work on `node` starts.
    fn node_started(&self, _node: &str) {}
    /// `node` is done with these results.
    fn node_finished(&self, _node: &str, _results: &[NodeResult]) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// The result for one certificate on one node.
#[derive(Debug, Serialize)]
pub struct NodeResult {
    /// Certificate name.
    pub certificate: String,
    /// Node name.
    pub node: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Time spent on the node (all its certificates together).
    #[serde(serialize_with = "ser_duration_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
}

impl NodeResult {
    /// Whether this counts as a failure (for exit codes and `max_failures`).
    pub fn is_failure(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Failed { .. } | Outcome::RolledBack { .. }
        )
    }
}

fn ser_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What happened to one certificate on one node.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Dry run: this version would be deployed.
    Planned {
        /// The store's version.
        to: String,
    },
    /// The node now serves `to`.
    Deployed {
        /// The version live before (`None` if there was none).
        from: Option<String>,
        /// The version live now.
        to: String,
    },
    /// The node already served the store's version.
    Unchanged {
        /// That version.
        version: String,
    },
    /// The new version was put live but failed a check; the previous one is
    /// live again.
    RolledBack {
        /// The version tried.
        attempted: String,
        /// The version live again (`None`: no link, as before).
        version: Option<String>,
        /// Why.
        #[serde(serialize_with = "ser_error")]
        reason: NodeError,
    },
    /// The step failed; the live link was not changed (or was put back).
    Failed {
        /// Why.
        #[serde(serialize_with = "ser_error")]
        error: NodeError,
    },
    /// Not attempted.
    Skipped {
        /// Why.
        why: SkipReason,
    },
}

fn ser_error<S: serde::Serializer>(e: &NodeError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::error_chain(e))
}

/// Why a pair was not attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// Too many nodes failed (`max_failures`).
    Stopped,
    /// The canary failed, so the rest was not touched.
    CanaryFailed,
    /// The store has no version of this certificate yet.
    NotInStore,
    /// This run lost the store lock (its etcd lease): it starts no node more.
    LockLost,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::Stopped => "stopped: too many nodes failed",
            SkipReason::CanaryFailed => "the canary failed",
            SkipReason::NotInStore => "not issued yet (the store has no version)",
            SkipReason::LockLost => "not started: this run lost the store lock",
        })
    }
}

/// Why a certificate could not be deployed to (or rolled back on) a node.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node could not be reached, or a command not run.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The node's disk is full; nothing was linked.
    #[error("no space left on device on {node} at {path}: free space there and rerun (the live certificate is untouched)")]
    NoSpace {
        /// Node name.
        node: String,
        /// Where the write failed.
        path: String,
    },
    /// A file step failed on the node; nothing was linked.
    #[error("cannot {step} {path} on {node}: {stderr}")]
    Step {
        /// Node name.
        node: String,
        /// The step (`stage`, `adopt`, `swap`, ...).
        step: NodeStep,
        /// The path.
        path: String,
        /// What the shell said.
        stderr: String,
    },
    /// A path certctl would replace on the node holds something certctl did
    /// not make (no marker); it is left alone.
    #[error(
        "{path} on {node} exists but was not made by certctl (it has no .certctl-version \
         marker), so certctl leaves it alone: move it away and rerun"
    )]
    NotOurs {
        /// Node name.
        node: String,
        /// The path.
        path: String,
    },
    /// The store's live version of the certificate is damaged, so it was not
    /// sent to the node (the node keeps what it has).
    #[error(
        "certctl did not deploy `{name}` to {node}: the store's live version is damaged \
         (`certctl renew {name}` issues it anew)"
    )]
    StoreDamaged {
        /// Node name.
        node: String,
        /// Certificate name.
        name: String,
        /// What is damaged.
        #[source]
        damage: std::sync::Arc<crate::store::Damage>,
    },
    /// The node has seen a later holder of the store lock (its fencing
    /// token is higher than this run's): this run lost the lock and
    /// changed nothing on the node.
    #[error(
        "{node} refused this run's step: a later certctl run took the store lock (fence {seen} \
         in {path} is above this run's {ours}), so this run lost its lock and changed nothing \
         there; if the etcd cluster was restored from an older backup, remove {path} on the node"
    )]
    Fenced {
        /// Node name.
        node: String,
        /// The fence file on the node.
        path: String,
        /// The revision the node has seen.
        seen: i64,
        /// This run's revision.
        ours: i64,
    },
    /// `live/<name>` is neither a symlink nor a directory.
    #[error("{path} on {node} is neither a symlink nor a directory: move it away and rerun")]
    LiveNotLink {
        /// Node name.
        node: String,
        /// The path.
        path: String,
    },
    /// The validate command failed with the new version; the previous one is back.
    #[error("`{command}` failed on {node} with the new certificate, so the previous one was put back: {output}")]
    Validate {
        /// Node name.
        node: String,
        /// The command.
        command: String,
        /// Its output.
        output: String,
    },
    /// The reload command failed; the previous version is back.
    #[error("`{command}` failed on {node}, so the previous certificate was put back: {output}")]
    Reload {
        /// Node name.
        node: String,
        /// The command.
        command: String,
        /// Its output.
        output: String,
    },
    /// After reload the node still presents another leaf.
    #[error("{node} is still serving the old certificate for {sni} at {address} after reload (is the reload command right?)")]
    StillServingOld {
        /// Node name.
        node: String,
        /// SNI sent.
        sni: String,
        /// Address probed.
        address: String,
    },
    /// The verification handshake did not get a certificate.
    #[error("cannot verify {sni} on {node}")]
    Probe {
        /// Node name.
        node: String,
        /// SNI sent.
        sni: String,
        /// Why.
        #[source]
        failure: ProbeFailure,
    },
    /// The version rolled back to has no readable `cert.pem` on the node,
    /// so what it serves cannot be checked.
    #[error(
        "cannot verify {sni} on {node}: version {version} on the node has no readable cert.pem"
    )]
    NoLeaf {
        /// Node name.
        node: String,
        /// SNI that would have been checked.
        sni: String,
        /// The version.
        version: String,
    },
    /// Putting the previous version back failed too: check the node by hand.
    #[error("{node}: putting the previous certificate back failed as well ({failure}); check live/ on the node by hand")]
    RestoreFailed {
        /// Node name.
        node: String,
        /// What failed while putting it back.
        failure: Box<RestoreFailure>,
        /// The original failure.
        #[source]
        cause: Box<NodeError>,
    },
    /// A script ended without saying how (sudo refused, shell missing...).
    #[error("unexpected result on {node} ({status}): {stderr}")]
    Script {
        /// Node name.
        node: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The upload (a tar of the version's files) could not be built.
    #[error("cannot build the upload for {node}")]
    Payload {
        /// Node name.
        node: String,
        /// Why.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// The task connecting to the node panicked or was cancelled.
    #[error("the connection task for {node} failed")]
    ConnectTask {
        /// Node name.
        node: String,
        /// Why.
        #[source]
        source: std::sync::Arc<tokio::task::JoinError>,
    },
    /// Rollback found nothing to go back to.
    #[error("{node} has no version of `{name}` older than {current} to roll back to")]
    NoPrevious {
        /// Node name.
        node: String,
        /// Certificate name.
        name: String,
        /// The live version (or what live/ is).
        current: String,
    },
}

impl NodeError {
    /// The kind of this failure, for metrics and failure notices.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind;
        match self {
            NodeError::Transport(
                TransportError::ConnectTimeout { .. } | TransportError::Timeout { .. },
            ) => ErrorKind::Timeout,
            NodeError::Transport(_) | NodeError::ConnectTask { .. } => ErrorKind::Ssh,
            NodeError::Validate { .. } => ErrorKind::Validate,
            NodeError::Reload { .. } => ErrorKind::Reload,
            NodeError::StillServingOld { .. }
            | NodeError::Probe { .. }
            | NodeError::NoLeaf { .. } => ErrorKind::Verify,
            NodeError::StoreDamaged { .. } | NodeError::Fenced { .. } => ErrorKind::Store,
            NodeError::RestoreFailed { cause, .. } => cause.kind(),
            _ => ErrorKind::Node,
        }
    }
}

impl DeployError {
    /// The kind of this failure, for metrics and failure notices.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind;
        match self {
            DeployError::Store(_) | DeployError::BadCertificate { .. } => ErrorKind::Store,
            DeployError::UnknownCertificate { .. }
            | DeployError::UnknownNode { .. }
            | DeployError::UnknownGroup { .. }
            | DeployError::NotInStore { .. } => ErrorKind::Config,
            _ => ErrorKind::Other,
        }
    }
}

/// What failed while putting the previous version back on a node.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreFailure {
    /// A file step of the restore script failed.
    #[error("{step} {path}")]
    Step {
        /// The step.
        step: NodeStep,
        /// The path.
        path: String,
    },
    /// The reload after putting the links back failed.
    #[error("reload: {output}")]
    Reload {
        /// What the reload command printed.
        output: String,
    },
    /// The restore script ended without saying how.
    #[error("unexpected result ({status}): {stderr}")]
    Script {
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The node has seen a later holder of the store lock since; that
    /// run owns the node now, so nothing was put back.
    #[error("a later certctl run took over the node (fence {seen} in {path}); nothing put back")]
    Fenced {
        /// The revision the node has seen.
        seen: i64,
        /// The fence file on the node.
        path: String,
    },
    /// The node could not be reached to put it back.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A deployment failure that stops the whole run (each node's own failures
/// are results, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// A certificate name that the inventory does not have.
    #[error("no certificate `{name}` in the inventory (known: {known})")]
    UnknownCertificate {
        /// The name given.
        name: String,
        /// The inventory's names.
        known: String,
    },
    /// A node name that the inventory does not have.
    #[error("no node `{name}` in the inventory (known: {known})")]
    UnknownNode {
        /// The name given.
        name: String,
        /// The inventory's nodes.
        known: String,
    },
    /// A group no node belongs to.
    #[error("no node is in group `{name}` (groups: {known})")]
    UnknownGroup {
        /// The group given.
        name: String,
        /// The groups in use.
        known: String,
    },
    /// A certificate asked for by name has no version in the store.
    #[error("certificate `{name}` has no version in the store yet: issue it first (`certctl issue {name}`)")]
    NotInStore {
        /// The name.
        name: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The verification prober could not be built.
    #[error("cannot set up TLS verification")]
    Prober(#[source] ProberError),
    /// The private directory for SSH control sockets could not be made.
    #[error("cannot create a private directory for SSH control sockets in {dir}")]
    ControlDir {
        /// Where.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored certificate could not be read as PEM.
    #[error("stored certificate `{name}` version {version} has no PEM certificate in cert.pem: the store is damaged; reissue it")]
    BadCertificate {
        /// Name.
        name: String,
        /// Version.
        version: String,
    },
}
