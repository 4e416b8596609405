//! The rollout: which certificates go to which nodes (the plan), the canary
//! first, then the rest under the concurrency limit, stopping after too many
//! failed nodes; and the same machinery for `rollback`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::inspect::probe::{Prober, Trust};
use crate::inventory::NodeConfig;
use crate::names::DomainName;
use crate::store::Store;
use crate::Inventory;

use super::node::{leaf_der, serves, sha256_hex, CertJob, NodeCtx};
use super::state::NodeState;
use super::transport::{self, Transport, TransportError};
use super::{DeployError, DeployOptions, NodeError, NodeResult, Outcome, Progress, SkipReason};

/// Bound on one verification handshake.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Which certificates go to which nodes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Nodes to work on, in inventory order.
    pub nodes: Vec<PlannedNode>,
    /// (certificate, node) pairs left out because the store has no version.
    pub not_in_store: Vec<(String, String)>,
    /// (certificate, node, damage) left out because the store's live
    /// version is damaged: failed, never deployed.
    pub damaged: Vec<(String, String, std::sync::Arc<crate::store::Damage>)>,
}

/// One node of the plan.
#[derive(Debug, Clone)]
pub struct PlannedNode {
    /// Node name.
    pub node: String,
    /// (certificate, store version) to deploy there.
    pub certificates: Vec<(String, String)>,
    /// Deployed first, alone.
    pub canary: bool,
}

/// The names, deduplicated, in inventory order.
fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut seen = BTreeSet::new();
    let v: Vec<&str> = names.filter(|n| seen.insert(*n)).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn check_nodes(inv: &Inventory, nodes: &[String], groups: &[String]) -> Result<(), DeployError> {
    for n in nodes {
        if inv.node(n).is_none() {
            return Err(DeployError::UnknownNode {
                name: n.clone(),
                known: known(inv.nodes.iter().map(|n| n.name.as_str())),
            });
        }
    }
    for g in groups {
        if !inv.nodes.iter().any(|n| n.groups.contains(g)) {
            return Err(DeployError::UnknownGroup {
                name: g.clone(),
                known: known(
                    inv.nodes
                        .iter()
                        .flat_map(|n| n.groups.iter().map(String::as_str)),
                ),
            });
        }
    }
    Ok(())
}

fn node_selected(n: &NodeConfig, nodes: &[String], groups: &[String]) -> bool {
    (nodes.is_empty() || nodes.iter().any(|x| x == n.name.as_str()))
        && (groups.is_empty() || n.groups.iter().any(|g| groups.contains(g)))
}

/// Works out the plan: no network, only the store's live versions are read.
pub fn plan(inv: &Inventory, store: &Store, opts: &DeployOptions) -> Result<Plan, DeployError> {
    for name in &opts.names {
        if inv.certificate(name).is_none() {
            return Err(DeployError::UnknownCertificate {
                name: name.clone(),
                known: known(inv.certificates.iter().map(|c| c.name.as_str())),
            });
        }
    }
    check_nodes(inv, &opts.nodes, &opts.groups)?;
    let mut plan = Plan::default();
    let mut per_node: Vec<Vec<(String, String)>> = vec![Vec::new(); inv.nodes.len()];
    for cert in &inv.certificates {
        let name = cert.name.as_str();
        if !opts.names.is_empty() && !opts.names.iter().any(|n| n == name) {
            continue;
        }
        // A damaged live version (dangling link, garbage PEM, a key that is
        // not the certificate's) is never sent to a node.
        let audit = store.audit(name);
        let damage = audit
            .damage
            .into_iter()
            .find(|d| d.part.is_release())
            .map(std::sync::Arc::new);
        let version = match &damage {
            Some(_) => None,
            None => audit.release.map(|r| r.version),
        };
        if version.is_none() && damage.is_none() && !opts.names.is_empty() {
            return Err(DeployError::NotInStore { name: name.into() });
        }
        for (i, n) in inv.nodes.iter().enumerate() {
            let serves = n.groups.iter().any(|g| cert.groups.contains(g));
            if !serves || !node_selected(n, &opts.nodes, &opts.groups) {
                continue;
            }
            match (&version, &damage) {
                (_, Some(d)) => {
                    plan.damaged
                        .push((name.to_string(), n.name.to_string(), d.clone()))
                }
                (Some(v), None) => per_node[i].push((name.to_string(), v.clone())),
                (None, None) => plan
                    .not_in_store
                    .push((name.to_string(), n.name.to_string())),
            }
        }
    }
    for (n, certs) in inv.nodes.iter().zip(per_node) {
        if !certs.is_empty() {
            plan.nodes.push(PlannedNode {
                node: n.name.to_string(),
                certificates: certs,
                canary: inv.deploy.canary.iter().any(|c| c == n.name.as_str()),
            });
        }
    }
    if !plan.nodes.iter().any(|n| n.canary) {
        if let Some(first) = plan.nodes.first_mut() {
            first.canary = true;
        }
    }
    Ok(plan)
}

/// A private directory (0700) for the SSH control sockets, removed on drop.
pub(super) struct ControlDir(PathBuf);

impl ControlDir {
    pub(super) fn new() -> Result<Self, DeployError> {
        use std::os::unix::fs::DirBuilderExt;
        // Unix socket paths are short (108 bytes) and ssh adds ~40 of its
        // own: a long TMPDIR falls back to /tmp.
        let mut parent = std::env::temp_dir();
        if parent.as_os_str().len() > 48 {
            parent = PathBuf::from("/tmp");
        }
        Self::clean_stale(&parent);
        let dir = parent.join(format!(
            "certctl-ssh-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| DeployError::ControlDir {
                dir: parent,
                source,
            })?;
        Ok(Self(dir))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    /// Removes the directories of certctl runs that were killed (their pid
    /// is gone); their masters exit by themselves once idle.
    fn clean_stale(parent: &Path) {
        // Without /proc, a live run cannot be told from a dead one.
        if !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(parent) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("certctl-ssh-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Connecting = JoinHandle<Result<Box<dyn Transport>, TransportError>>;

/// Starts connecting to `node` now, at most `limit` at once. A canary opens
/// `gate` once connected; the others wait for it, so the canary's handshake
/// does not compete with the whole fleet's.
fn start_connect(
    node: &NodeConfig,
    dir: &Path,
    limit: &Arc<Semaphore>,
    gate: &Arc<Semaphore>,
    canary: bool,
) -> Connecting {
    let node = node.clone();
    let dir = dir.to_path_buf();
    let (limit, gate) = (limit.clone(), gate.clone());
    let span = tracing::debug_span!("connect", node = %node.name);
    tokio::spawn(
        async move {
            if !canary {
                drop(gate.acquire().await);
            }
            let permit = limit.acquire_owned().await;
            let started = Instant::now();
            let t = transport::connect(&node, &dir).await;
            tracing::debug!(elapsed = ?started.elapsed(), ok = t.is_ok(), "connected");
            drop(permit);
            if canary {
                gate.add_permits(Semaphore::MAX_PERMITS / 2);
            }
            t
        }
        .instrument(span),
    )
}

async fn close(c: Connecting) {
    if let Ok(Ok(t)) = c.await {
        t.close().await;
    }
}

fn connected(
    r: Result<Result<Box<dyn Transport>, TransportError>, tokio::task::JoinError>,
    node: &str,
) -> Result<Box<dyn Transport>, NodeError> {
    match r {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(NodeError::ConnectTask {
            node: node.into(),
            source: std::sync::Arc::new(e),
        }),
    }
}

fn snis_of(inv: &Inventory, name: &str, meta_domains: &[String]) -> Vec<String> {
    let from_meta: Vec<String> = meta_domains
        .iter()
        .filter_map(|d| DomainName::new(d).ok())
        .map(|d| d.sni())
        .collect();
    if !from_meta.is_empty() {
        return from_meta;
    }
    inv.certificate(name)
        .map(|c| c.domains.iter().map(DomainName::sni).collect())
        .unwrap_or_default()
}

fn load_job(
    inv: &Inventory,
    store: &Store,
    name: &str,
    version: &str,
) -> Result<CertJob, DeployError> {
    let r = store.read_release(name, version)?;
    let key = crate::secret::Secret::new(r.read("privkey")?);
    let public = [r.read("cert")?, r.read("chain")?, r.read("fullchain")?];
    let leaf = leaf_der(&public[0]).ok_or_else(|| DeployError::BadCertificate {
        name: name.into(),
        version: version.into(),
    })?;
    let sums = [
        sha256_hex(key.expose()),
        sha256_hex(&public[0]),
        sha256_hex(&public[1]),
        sha256_hex(&public[2]),
    ];
    Ok(CertJob {
        name: name.into(),
        version: version.into(),
        snis: snis_of(inv, name, &r.meta.domains),
        key,
        public,
        sums,
        leaf,
    })
}

fn record(store: &Store, results: &[NodeResult]) {
    for r in results {
        let prior = NodeState::read(store, &r.certificate, &r.node)
            .ok()
            .flatten();
        let now = time::OffsetDateTime::now_utc();
        let (prior_version, prior_success) = prior
            .map(|p| (p.version, p.last_success))
            .unwrap_or_default();
        let (version, error, last_success) = match &r.outcome {
            Outcome::Deployed { to, .. } => (Some(to.clone()), None, Some(now)),
            Outcome::Unchanged { version } => (Some(version.clone()), None, Some(now)),
            Outcome::RolledBack {
                version, reason, ..
            } => (version.clone(), Some(reason), prior_success),
            Outcome::Failed { error } => (prior_version, Some(error), prior_success),
            Outcome::Planned { .. } | Outcome::Skipped { .. } => continue,
        };
        let s = NodeState {
            version,
            at: now,
            error: error.map(|e| crate::error_chain(e)),
            error_kind: error.map(NodeError::kind),
            last_success,
        };
        if let Err(e) = s.write(store, &r.certificate, &r.node) {
            tracing::warn!(certificate = %r.certificate, node = %r.node, error = %crate::error_chain(&e), "cannot record the deployment state");
        }
    }
}

struct Runner<'a> {
    inv: &'a Inventory,
    /// The SSH control sockets' directory.
    control: &'a Path,
    store: &'a Store,
    jobs: HashMap<String, Arc<CertJob>>,
    prober: Prober,
    force: bool,
    progress: &'a dyn Progress,
}

impl Runner<'_> {
    async fn run(&self, pn: &PlannedNode, conn: Connecting) -> Vec<NodeResult> {
        let start = Instant::now();
        self.progress.node_started(&pn.node);
        let Some(node) = self.inv.node(&pn.node) else {
            return Vec::new();
        };
        let jobs: Vec<Arc<CertJob>> = pn
            .certificates
            .iter()
            .filter_map(|(c, _)| self.jobs.get(c).cloned())
            .collect();
        // What is served now is probed while the connection comes up; only
        // where the store's record does not already say the node has an
        // older version (then it is deployed anyway, and the probe is wasted).
        let addr = node.probe_address();
        let probes = jobs.iter().map(|j| {
            let recorded = NodeState::read(self.store, &j.name, &pn.node)
                .ok()
                .flatten()
                .and_then(|s| s.version);
            let worth = recorded.is_none_or(|v| v == j.version);
            let (prober, addr) = (&self.prober, addr.as_str());
            async move { worth && serves(prober, addr, j).await }
        });
        let (conn, served) = tokio::join!(conn, futures::future::join_all(probes));
        tracing::debug!(elapsed = ?start.elapsed(), "connected and probed");
        let mut conn = connected(conn, &pn.node);
        if let Ok(t) = &conn {
            if !t.alive().await {
                tracing::debug!("the master connection closed while waiting; connecting again");
                conn = transport::connect(node, self.control)
                    .await
                    .map_err(NodeError::from);
            }
        }
        let outcomes = match conn {
            Err(e) => jobs
                .iter()
                .map(|_| Outcome::Failed { error: e.clone() })
                .collect(),
            Ok(t) => {
                let cx = NodeCtx {
                    node,
                    transport: t.as_ref(),
                    prober: &self.prober,
                    keep_versions: self.inv.deploy.keep_versions,
                    force: self.force,
                    fence: self.store.node_fence(),
                };
                let o = cx.deploy(&jobs, &served).await;
                t.close().await;
                o
            }
        };
        let results: Vec<NodeResult> = jobs
            .iter()
            .zip(outcomes)
            .map(|(j, outcome)| NodeResult {
                certificate: j.name.clone(),
                node: pn.node.clone(),
                outcome,
                elapsed: start.elapsed(),
            })
            .collect();
        for r in &results {
            match &r.outcome {
                Outcome::Failed { error } => {
                    tracing::warn!(certificate = %r.certificate, error = %crate::error_chain(error), "deployment failed")
                }
                Outcome::RolledBack { reason, .. } => {
                    tracing::warn!(certificate = %r.certificate, reason = %crate::error_chain(reason), "rolled back")
                }
                o => tracing::info!(certificate = %r.certificate, outcome = ?o, "done"),
            }
        }
        record(self.store, &results);
        self.progress.node_finished(&pn.node, &results);
        results
    }
}

fn skipped(pn: &PlannedNode, why: SkipReason) -> Vec<NodeResult> {
    pn.certificates
        .iter()
        .map(|(c, _)| NodeResult {
            certificate: c.clone(),
            node: pn.node.clone(),
            outcome: Outcome::Skipped { why },
            elapsed: Duration::ZERO,
        })
        .collect()
}

/// Deploys the store's live versions to the nodes that should serve them:
/// canary first, then the rest under `deploy.concurrency`. Returns one
/// result per (certificate, node); a node's failure is a result, not an
/// error. The caller holds the store lock.
pub async fn deploy(
    inv: &Inventory,
    store: &Store,
    opts: &DeployOptions,
    progress: &dyn Progress,
) -> Result<Vec<NodeResult>, DeployError> {
    let plan = plan(inv, store, opts)?;
    let mut results: Vec<NodeResult> = plan
        .not_in_store
        .iter()
        .map(|(c, n)| NodeResult {
            certificate: c.clone(),
            node: n.clone(),
            outcome: Outcome::Skipped {
                why: SkipReason::NotInStore,
            },
            elapsed: Duration::ZERO,
        })
        .collect();
    results.extend(plan.damaged.iter().map(|(c, n, d)| NodeResult {
        certificate: c.clone(),
        node: n.clone(),
        outcome: Outcome::Failed {
            error: NodeError::StoreDamaged {
                node: n.clone(),
                name: c.clone(),
                damage: d.clone(),
            },
        },
        elapsed: Duration::ZERO,
    }));
    if opts.dry_run {
        for pn in &plan.nodes {
            for (c, v) in &pn.certificates {
                results.push(NodeResult {
                    certificate: c.clone(),
                    node: pn.node.clone(),
                    outcome: Outcome::Planned { to: v.clone() },
                    elapsed: Duration::ZERO,
                });
            }
        }
        return Ok(results);
    }
    let mut jobs = HashMap::new();
    for pn in &plan.nodes {
        for (c, v) in &pn.certificates {
            if !jobs.contains_key(c) {
                jobs.insert(c.clone(), Arc::new(load_job(inv, store, c, v)?));
            }
        }
    }
    let control = ControlDir::new()?;
    let runner = Runner {
        inv,
        control: control.path(),
        store,
        jobs,
        prober: Prober::new(&Trust::default(), PROBE_TIMEOUT)
            .map_err(DeployError::Prober)?
            .with_limit(inv.report.concurrency),
        force: opts.force,
        progress,
    };
    progress.planned(plan.nodes.len());
    let concurrency = inv.deploy.concurrency.max(1);
    let max_failures = opts.max_failures.or(inv.deploy.max_failures);
    let limit = Arc::new(Semaphore::new(concurrency));
    let gate = Arc::new(Semaphore::new(0));
    // The rest of the fleet connects while the canary deploys, so it is
    // connected by the time the canary has passed.
    let mut conns: Vec<Option<Connecting>> = plan
        .nodes
        .iter()
        .map(|pn| {
            inv.node(&pn.node)
                .map(|n| start_connect(n, control.path(), &limit, &gate, pn.canary))
        })
        .collect();
    let mut by_node: Vec<Vec<NodeResult>> = (0..plan.nodes.len()).map(|_| Vec::new()).collect();

    let runner = &runner;
    let plan = &plan;
    let canaries: Vec<usize> = (0..plan.nodes.len())
        .filter(|i| plan.nodes[*i].canary)
        .collect();
    // A run that lost its lock (etcd lease) changes no node after it knows.
    store.check_held()?;
    let canary_runs = canaries.iter().filter_map(|&i| {
        let conn = conns[i].take()?;
        let span = tracing::info_span!("node", node = %plan.nodes[i].node, canary = true);
        Some(async move { (i, runner.run(&plan.nodes[i], conn).await) }.instrument(span))
    });
    let mut canary_failed = false;
    for (i, r) in futures::future::join_all(canary_runs).await {
        canary_failed |= r.iter().any(NodeResult::is_failure);
        by_node[i] = r;
    }

    let failed_nodes = AtomicUsize::new(usize::from(canary_failed));
    let rest: Vec<(usize, Connecting)> = conns
        .iter_mut()
        .enumerate()
        .filter_map(|(i, c)| c.take().map(|c| (i, c)))
        .collect();
    let failed_nodes = &failed_nodes;
    let done: Vec<(usize, Vec<NodeResult>)> = futures::stream::iter(rest)
        .map(|(i, conn)| async move {
            let pn = &plan.nodes[i];
            if canary_failed {
                close(conn).await;
                return (i, skipped(pn, SkipReason::CanaryFailed));
            }
            if max_failures.is_some_and(|m| failed_nodes.load(Ordering::SeqCst) > m) {
                close(conn).await;
                return (i, skipped(pn, SkipReason::Stopped));
            }
            if let Err(e) = store.check_held() {
                tracing::error!(node = %pn.node, error = %crate::error::chain(&e), "not starting this node");
                close(conn).await;
                return (i, skipped(pn, SkipReason::LockLost));
            }
            let span = tracing::info_span!("node", node = %pn.node);
            let r = runner.run(pn, conn).instrument(span).await;
            if r.iter().any(NodeResult::is_failure) {
                failed_nodes.fetch_add(1, Ordering::SeqCst);
            }
            (i, r)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (i, r) in done {
        by_node[i] = r;
    }
    results.extend(by_node.into_iter().flatten());
    Ok(results)
}

/// Puts the version before the live one back on each node that serves
/// `name` (or only on `nodes`), then validates, reloads and verifies like a
/// deployment. The caller holds the store lock.
pub async fn rollback(
    inv: &Inventory,
    store: &Store,
    name: &str,
    nodes: &[String],
    progress: &dyn Progress,
) -> Result<Vec<NodeResult>, DeployError> {
    let Some(cert) = inv.certificate(name) else {
        return Err(DeployError::UnknownCertificate {
            name: name.into(),
            known: known(inv.certificates.iter().map(|c| c.name.as_str())),
        });
    };
    check_nodes(inv, nodes, &[])?;
    let targets: Vec<&NodeConfig> = inv
        .nodes_for(cert)
        .filter(|n| node_selected(n, nodes, &[]))
        .collect();
    let snis: Vec<String> = cert.domains.iter().map(DomainName::sni).collect();
    let prober = Prober::new(&Trust::default(), PROBE_TIMEOUT)
        .map_err(DeployError::Prober)?
        .with_limit(inv.report.concurrency);
    let control = ControlDir::new()?;
    progress.planned(targets.len());
    let concurrency = inv.deploy.concurrency.max(1);
    let dir = control.path();
    let (prober, snis) = (&prober, &snis);
    let mut done: Vec<(usize, NodeResult)> = futures::stream::iter(targets.into_iter().enumerate())
        .map(|(i, node)| {
            let span = tracing::info_span!("rollback", node = %node.name, certificate = name);
            async move {
                let start = Instant::now();
                progress.node_started(node.name.as_str());
                let held = store.check_held();
                let outcome = match held {
                    Err(e) => {
                        tracing::error!(error = %crate::error::chain(&e), "not starting this node");
                        Outcome::Skipped {
                            why: SkipReason::LockLost,
                        }
                    }
                    Ok(()) => match transport::connect(node, dir).await {
                        Err(e) => Outcome::Failed { error: e.into() },
                        Ok(t) => {
                            let cx = NodeCtx {
                                node,
                                transport: t.as_ref(),
                                prober,
                                keep_versions: inv.deploy.keep_versions,
                                force: false,
                                fence: store.node_fence(),
                            };
                            let o = cx.rollback(name, snis).await;
                            t.close().await;
                            o
                        }
                    },
                };
                let r = NodeResult {
                    certificate: name.into(),
                    node: node.name.to_string(),
                    outcome,
                    elapsed: start.elapsed(),
                };
                record(store, std::slice::from_ref(&r));
                progress.node_finished(node.name.as_str(), std::slice::from_ref(&r));
                (i, r)
            }
            .instrument(span)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &str = r#"
[account]
directory = "letsencrypt-staging"

[solvers.ns]
type = "rfc2136"
server = "192.0.2.1"
tsig_key = "certctl"
tsig_secret_env = "TSIG"

[deploy]
canary = ["b"]

[[certificate]]
name = "www"
domains = ["www.example.com"]
solver = "ns"
groups = ["edge"]

[[certificate]]
name = "api"
domains = ["api.example.com"]
solver = "ns"
groups = ["core"]

[[node]]
name = "a"
address = "192.0.2.10"
groups = ["edge"]

[[node]]
name = "b"
address = "192.0.2.11"
groups = ["edge", "core"]

[[node]]
name = "c"
address = "192.0.2.12"
groups = ["core"]
"#;

    fn setup() -> (tempfile::TempDir, Inventory, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let inv = Inventory::from_str(INV, Path::new("/x/certctl.toml")).expect("inventory");
        let (store, _) = Store::open(dir.path()).expect("store");
        crate::store::install_self_signed(&store, "www", &["www.example.com"]);
        (dir, inv, store)
    }

    #[test]
    fn plan_follows_groups_filters_and_canary() {
        let (_d, inv, store) = setup();
        let p = plan(&inv, &store, &DeployOptions::default()).expect("plan");
        let nodes: Vec<(&str, usize, bool)> = p
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.certificates.len(), n.canary))
            .collect();
        assert_eq!(nodes, [("a", 1, false), ("b", 1, true)]);
        // api is not issued: reported per node, not an error
        assert_eq!(
            p.not_in_store,
            [
                ("api".to_string(), "b".to_string()),
                ("api".into(), "c".into())
            ]
        );
        let only_a = DeployOptions {
            nodes: vec!["a".into()],
            ..Default::default()
        };
        let p = plan(&inv, &store, &only_a).expect("plan");
        assert_eq!(p.nodes.len(), 1);
        assert!(
            p.nodes[0].canary,
            "the first node is the canary when the configured one is filtered out"
        );
    }

    #[test]
    fn plan_refuses_unknown_names() {
        let (_d, inv, store) = setup();
        let bad = |o: DeployOptions| plan(&inv, &store, &o).expect_err("refused").to_string();
        assert!(bad(DeployOptions {
            names: vec!["nope".into()],
            ..Default::default()
        })
        .contains("known: www, api"));
        assert!(bad(DeployOptions {
            nodes: vec!["z".into()],
            ..Default::default()
        })
        .contains("no node `z`"));
        assert!(bad(DeployOptions {
            groups: vec!["g".into()],
            ..Default::default()
        })
        .contains("groups: edge, core"));
        assert!(bad(DeployOptions {
            names: vec!["api".into()],
            ..Default::default()
        })
        .contains("certctl issue api"));
    }
}
