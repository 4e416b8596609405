//! Gathering a report: the store's versions, each node's live link (over
//! SSH, or directly for local nodes) and a TLS probe per node and SNI name.
//! Everything runs concurrently under `report.concurrency`, each probe bounded
//! by `report.probe_timeout` and each SSH read by the node's connect timeout,
//! so one slow node never holds up the others.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{
    assess_probe_failure, assess_served, assess_validity, worst, CertificateReport, EndpointReport,
    Finding, FindingKind, NodeReport, RenewalStatus, Report, ScanReport, ServedReport, Severity,
    StoreFacts, Thresholds, SCAN_SCHEMA, SCHEMA,
};
use crate::inspect::probe::ProberError;
use crate::inspect::{Anchors, InspectError, Prober, RenewalPolicy, RenewalWindow, Served, Trust};
use crate::inventory::{NodeConfig, TransportKind};
use crate::store::{Release, Store};
use crate::Inventory;

/// Why a report could not be made at all (a failing node or certificate is
/// a finding, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A certificate asked for is not in the inventory.
    #[error("certificate `{name}` is not in the inventory; known certificates: {known}")]
    UnknownCertificate {
        /// The name asked for.
        name: String,
        /// The names defined.
        known: String,
    },
    /// A node asked for is not in the inventory.
    #[error("node `{name}` is not in the inventory; known nodes: {known}")]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The names defined.
        known: String,
    },
    /// The TLS prober could not be set up (trust bundles).
    #[error("cannot set up TLS probes (check [report] trust)")]
    Prober(#[source] ProberError),
    /// The trust anchors could not be read.
    #[error("cannot load trust anchors (check [report] trust)")]
    Anchors(#[source] InspectError),
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Certificate names; empty means all.
    pub certificates: Vec<String>,
    /// Node names; empty means all.
    pub nodes: Vec<String>,
    /// The report's "now" (for time left and due dates).
    pub now: OffsetDateTime,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            certificates: Vec::new(),
            nodes: Vec::new(),
            now: OffsetDateTime::now_utc(),
        }
    }
}

enum Job<'a> {
    Deployed {
        certs: Vec<usize>,
        node: &'a NodeConfig,
    },
    Probe {
        cert: usize,
        node: &'a NodeConfig,
        sni: String,
    },
}

enum Outcome {
    Deployed {
        certs: Vec<usize>,
        node: String,
        result: Result<Vec<Result<Option<String>, String>>, String>,
    },
    Probe {
        cert: usize,
        node: String,
        sni: String,
        result: Result<Served, crate::inspect::probe::ProbeFailure>,
    },
}

/// Gathers the fleet report. `store` is `None` when there is no store yet
/// (every certificate is then "not in store").
pub async fn gather(
    inventory: &Inventory,
    store: Option<&Store>,
    opts: &ReportOptions,
) -> Result<Report, ReportError> {
    let certs = select_certificates(inventory, &opts.certificates)?;
    for n in &opts.nodes {
        if inventory.node(n).is_none() {
            return Err(ReportError::UnknownNode {
                name: n.clone(),
                known: known(inventory.nodes.iter().map(|n| n.name.as_str())),
            });
        }
    }
    let trust = Trust {
        system_roots: true,
        bundles: inventory.report.trust.clone(),
    };
    let prober =
        Prober::new(&trust, inventory.report.probe_timeout).map_err(ReportError::Prober)?;
    let anchors = Anchors::from_trust(&trust).map_err(ReportError::Anchors)?;
    let now = opts.now;

    let mut reports = Vec::with_capacity(certs.len());
    let mut lives: Vec<Option<Release>> = Vec::with_capacity(certs.len());
    let mut jobs = Vec::new();
    let mut deployed_jobs: std::collections::BTreeMap<&str, (&NodeConfig, Vec<usize>)> =
        std::collections::BTreeMap::new();
    for (ci, cert) in certs.iter().enumerate() {
        let (warning, critical) = inventory.thresholds(cert);
        let thresholds = Thresholds { warning, critical };
        let name = cert.name.as_str();
        let mut findings = Vec::new();
        // The store's side, checked whole: a damaged file makes the
        // certificate unknown (never ok), and a damaged live version gives no
        // store facts to judge by.
        let audit = store.map(|s| s.audit(name)).unwrap_or_default();
        for d in &audit.damage {
            findings.push(Finding::new(
                Severity::Unknown,
                FindingKind::StoreDamaged {
                    path: d.path.clone(),
                    problem: crate::error::chain(&d.problem),
                },
            ));
        }
        let live = audit.sound().cloned();
        if live.is_none() && audit.damage.iter().all(|d| !d.part.is_release()) {
            findings.push(Finding::new(Severity::Warning, FindingKind::NotInStore));
        }
        let facts = live.as_ref().map(|r| {
            let policy = RenewalPolicy::for_certificate(inventory, cert);
            let ari = audit
                .renewal
                .as_ref()
                .and_then(|rec| rec.ari.as_ref())
                .filter(|a| a.serial == r.meta.serial)
                .map(|a| a.window);
            let seed = r.meta.ari_id.as_deref().unwrap_or(&r.meta.serial);
            let w = RenewalWindow::compute(
                policy,
                r.meta.not_before,
                r.meta.not_after,
                ari,
                seed.as_bytes(),
            );
            findings.extend(assess_validity(
                r.meta.not_before,
                r.meta.not_after,
                thresholds,
                now,
                false,
            ));
            StoreFacts {
                version: r.version.clone(),
                serial: r.meta.serial.clone(),
                issuer: r.meta.issuer.clone(),
                directory: r.meta.directory.clone(),
                key_type: r.meta.key_type,
                domains: r.meta.domains.clone(),
                not_before: r.meta.not_before,
                not_after: r.meta.not_after,
                seconds_left: (r.meta.not_after - now).whole_seconds(),
                renewal: RenewalStatus {
                    due_at: w.due_at,
                    due: w.is_due(now),
                    reason: w.reason,
                },
            }
        });
        let mut nodes = Vec::new();
        for node in inventory.nodes_for(cert) {
            if !opts.nodes.is_empty() && !opts.nodes.iter().any(|n| n == node.name.as_str()) {
                continue;
            }
            nodes.push(NodeReport {
                node: node.name.to_string(),
                probe_address: node.probe_address(),
                severity: Severity::Ok,
                deployed_version: None,
                findings: Vec::new(),
                served: Vec::new(),
            });
            deployed_jobs
                .entry(node.name.as_str())
                .or_insert_with(|| (node, Vec::new()))
                .1
                .push(ci);
            for d in &cert.domains {
                jobs.push(Job::Probe {
                    cert: ci,
                    node,
                    sni: d.sni(),
                });
            }
        }
        reports.push(CertificateReport {
            name: name.to_string(),
            domains: cert.domains.iter().map(|d| d.to_string()).collect(),
            severity: Severity::Ok,
            thresholds,
            store: facts,
            findings,
            nodes,
        });
        lives.push(live);
    }

    // One SSH command per node reads the links of all its certificates.
    for (_, (node, certs)) in deployed_jobs {
        jobs.push(Job::Deployed { certs, node });
    }
    // SSH sessions per node are bounded by the node's own limit.
    let sessions: HashMap<&str, Arc<Semaphore>> = inventory
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                Arc::new(Semaphore::new(n.max_sessions.max(1))),
            )
        })
        .collect();
    let names: Vec<&str> = certs.iter().map(|c| c.name.as_str()).collect();
    let outcomes: Vec<Outcome> = stream::iter(jobs)
        .map(|job| {
            let prober = &prober;
            let sessions = &sessions;
            let names = &names;
            async move {
                match job {
                    Job::Deployed { certs, node } => {
                        let span = tracing::info_span!("deployed", node = %node.name);
                        let wanted: Vec<&str> = certs.iter().map(|c| names[*c]).collect();
                        let result = async {
                            let _permit = match sessions.get(node.name.as_str()) {
                                Some(s) => s.clone().acquire_owned().await.ok(),
                                None => None,
                            };
                            deployed_versions(node, &wanted).await
                        }
                        .instrument(span)
                        .await;
                        Outcome::Deployed {
                            certs,
                            node: node.name.to_string(),
                            result,
                        }
                    }
                    Job::Probe { cert, node, sni } => {
                        let span = tracing::info_span!("probe", certificate = names[cert], node = %node.name, sni = %sni);
                        let result = prober
                            .probe(&node.probe_address(), &sni)
                            .instrument(span)
                            .await;
                        Outcome::Probe {
                            cert,
                            node: node.name.to_string(),
                            sni,
                            result,
                        }
                    }
                }
            }
        })
        .buffer_unordered(inventory.report.concurrency.max(1))
        .collect()
        .await;

    for outcome in outcomes {
        match outcome {
            Outcome::Deployed {
                certs,
                node,
                result,
            } => {
                for (i, cert) in certs.into_iter().enumerate() {
                    let result = match &result {
                        Ok(per_cert) => per_cert.get(i).cloned().unwrap_or(Ok(None)),
                        Err(e) => Err(e.clone()),
                    };
                    let live = lives[cert].as_ref();
                    let Some(n) = reports[cert].nodes.iter_mut().find(|n| n.node == node) else {
                        continue;
                    };
                    match result {
                        Ok(Some(v)) => {
                            if let Some(live) = live.filter(|l| l.version != v) {
                                n.findings.push(Finding::new(
                                    Severity::Warning,
                                    FindingKind::DeployedDrift {
                                        deployed: v.clone(),
                                        live: live.version.clone(),
                                    },
                                ));
                            }
                            n.deployed_version = Some(v);
                        }
                        Ok(None) => n
                            .findings
                            .push(Finding::new(Severity::Warning, FindingKind::NotDeployed)),
                        Err(reason) => n.findings.push(Finding::new(
                            Severity::Unknown,
                            FindingKind::DeployedUnknown { reason },
                        )),
                    }
                }
            }
            Outcome::Probe {
                cert,
                node,
                sni,
                result,
            } => {
                let thresholds = reports[cert].thresholds;
                let store_serial = lives[cert].as_ref().map(|l| l.meta.serial.clone());
                let Some(n) = reports[cert].nodes.iter_mut().find(|n| n.node == node) else {
                    continue;
                };
                n.served.push(served_report(
                    &sni,
                    result,
                    thresholds,
                    &anchors,
                    now,
                    store_serial.as_deref(),
                ));
            }
        }
    }

    for (ci, c) in reports.iter_mut().enumerate() {
        let order: Vec<String> = certs[ci].domains.iter().map(|d| d.sni()).collect();
        for n in &mut c.nodes {
            n.served
                .sort_by_key(|s| order.iter().position(|o| *o == s.sni).unwrap_or(usize::MAX));
            n.severity = worst(&n.findings).max(
                n.served
                    .iter()
                    .map(|s| s.severity)
                    .max()
                    .unwrap_or(Severity::Ok),
            );
        }
        c.severity = worst(&c.findings).max(
            c.nodes
                .iter()
                .map(|n| n.severity)
                .max()
                .unwrap_or(Severity::Ok),
        );
    }
    let severity = reports
        .iter()
        .map(|c| c.severity)
        .max()
        .unwrap_or(Severity::Ok);
    Ok(Report {
        schema: SCHEMA,
        generated_at: now,
        severity,
        certificates: reports,
    })
}

fn served_report(
    sni: &str,
    result: Result<Served, crate::inspect::probe::ProbeFailure>,
    thresholds: Thresholds,
    anchors: &Anchors,
    now: OffsetDateTime,
    store_serial: Option<&str>,
) -> ServedReport {
    let (certificate, findings, elapsed_ms) = match result {
        Ok(served) => {
            let (cert, mut findings) = assess_served(&served, sni, thresholds, anchors, now);
            if let (Some(c), Some(store_serial)) = (&cert, store_serial) {
                if c.leaf.serial != store_serial {
                    findings.push(Finding::new(
                        Severity::Warning,
                        FindingKind::ServedDrift {
                            served_serial: c.leaf.serial.clone(),
                            store_serial: store_serial.to_string(),
                        },
                    ));
                }
            }
            let ms = u64::try_from(served.elapsed.as_millis()).unwrap_or(u64::MAX);
            (cert, findings, Some(ms))
        }
        Err(f) => (None, vec![assess_probe_failure(&f)], None),
    };
    ServedReport {
        sni: sni.to_string(),
        severity: worst(&findings),
        elapsed_ms,
        certificate,
        findings,
    }
}

fn select_certificates<'a>(
    inventory: &'a Inventory,
    names: &[String],
) -> Result<Vec<&'a crate::inventory::CertificateConfig>, ReportError> {
    if names.is_empty() {
        return Ok(inventory.certificates.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            inventory
                .certificate(n)
                .ok_or_else(|| ReportError::UnknownCertificate {
                    name: n.clone(),
                    known: known(inventory.certificates.iter().map(|c| c.name.as_str())),
                })
        })
        .collect()
}

fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// The version `node` has deployed for certificate `cert`: the last path
/// component of its `<base_dir>/live/<cert>` link; `None` when there is no
/// link. Local nodes are read directly; SSH nodes with the system `ssh`
/// (batch mode, strict host key checking), bounded by the node's connect
/// timeout plus a few seconds. Errors are messages for the report.
pub async fn deployed_version(node: &NodeConfig, cert: &str) -> Result<Option<String>, String> {
    match deployed_versions(node, &[cert]).await?.pop() {
        Some(r) => r,
        None => Ok(None),
    }
}

/// The versions `node` has deployed for each of `certs`, read with one
/// command (one SSH connection); the outer error is for the whole node.
pub async fn deployed_versions(
    node: &NodeConfig,
    certs: &[&str],
) -> Result<Vec<Result<Option<String>, String>>, String> {
    if node.transport == TransportKind::Local {
        let mut out = Vec::new();
        for c in certs {
            out.push(local_readlink(node, c).await);
        }
        return Ok(out);
    }
    ssh_readlinks(node, certs).await
}

async fn local_readlink(node: &NodeConfig, cert: &str) -> Result<Option<String>, String> {
    let link = node.base_dir.join("live").join(cert);
    match tokio::fs::read_link(&link).await {
        Ok(target) => Ok(version_of(&target.to_string_lossy())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read link {}: {e}", link.display())),
    }
}

fn version_of(target: &str) -> Option<String> {
    let t = target.trim().trim_end_matches('/');
    let v = Path::new(t).file_name()?.to_str()?;
    (!v.is_empty()).then(|| v.to_string())
}

async fn ssh_readlinks(
    node: &NodeConfig,
    certs: &[&str],
) -> Result<Vec<Result<Option<String>, String>>, String> {
    use crate::names::shell_quote;
    let sudo = if node.sudo { "sudo -n " } else { "" };
    // One line per certificate: `L<target>`, `-` (no link) or `!` (not a link).
    let mut remote = String::new();
    for c in certs {
        let p = shell_quote(&node.base_dir.join("live").join(c).to_string_lossy());
        remote.push_str(&format!(
            "if {sudo}test -L {p}; then printf 'L%s\\n' \"$({sudo}readlink -- {p})\"; \
             elif {sudo}test -e {p}; then echo '!'; else echo -; fi; "
        ));
    }
    let connect = node.connect_timeout.as_secs().max(1);
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("ConnectTimeout={connect}"));
    if let Some(kh) = &node.known_hosts {
        cmd.arg("-o")
            .arg(format!("UserKnownHostsFile={}", kh.display()));
    }
    if let Some(id) = &node.identity_file {
        cmd.arg("-i").arg(id).args(["-o", "IdentitiesOnly=yes"]);
    }
    cmd.arg("-p")
        .arg(node.port.to_string())
        .arg(format!("{}@{}", node.user, node.address))
        .arg("--")
        .arg(remote)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let bound = node.connect_timeout + Duration::from_secs(5);
    let out = match tokio::time::timeout(bound, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("cannot run ssh: {e}")),
        Err(_) => return Err(format!("ssh gave no answer within {bound:?}")),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = stderr.trim();
        return Err(match (out.status.code(), msg.is_empty()) {
            (Some(255), true) => "ssh failed (status 255)".into(),
            (_, false) => format!("ssh: {}", msg.lines().last().unwrap_or(msg)),
            (code, true) => format!("remote command failed (status {code:?})"),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    Ok(certs
        .iter()
        .map(|_| match lines.next() {
            Some(l) if l.starts_with('L') => Ok(version_of(&l[1..])),
            Some("-") => Ok(None),
            Some("!") => Err("live path is not a symbolic link".to_string()),
            _ => Err("unexpected answer from the node".to_string()),
        })
        .collect())
}

/// One endpoint to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanTarget {
    /// `host:port` to connect to.
    pub address: String,
    /// SNI name to send (and to check the certificate against).
    pub sni: String,
}

impl ScanTarget {
    /// Parses `host`, `host:port`, `[v6]:port` or a bare IPv6 address (port
    /// 443 by default); the SNI name is `sni` or the host.
    pub fn parse(s: &str, sni: Option<&str>) -> Result<Self, String> {
        let server = crate::inventory::parse_server(s.trim(), 443)?;
        let address = server.to_string();
        Ok(Self {
            address,
            sni: sni.map(str::to_string).unwrap_or(server.host),
        })
    }
}

/// Scans endpoints outside the inventory, concurrently (`concurrency`),
/// each bounded by `timeout`.
pub async fn scan(
    targets: &[ScanTarget],
    trust: &Trust,
    timeout: Duration,
    thresholds: Thresholds,
    concurrency: usize,
    now: OffsetDateTime,
) -> Result<ScanReport, ReportError> {
    let prober = Prober::new(trust, timeout).map_err(ReportError::Prober)?;
    let anchors = Anchors::from_trust(trust).map_err(ReportError::Anchors)?;
    let mut endpoints: Vec<(usize, EndpointReport)> = stream::iter(targets.iter().enumerate())
        .map(|(i, t)| {
            let prober = &prober;
            let anchors = &anchors;
            let span = tracing::info_span!("scan", address = %t.address, sni = %t.sni);
            async move {
                let result = prober.probe(&t.address, &t.sni).await;
                let s = served_report(&t.sni, result, thresholds, anchors, now, None);
                (
                    i,
                    EndpointReport {
                        address: t.address.clone(),
                        sni: s.sni,
                        severity: s.severity,
                        elapsed_ms: s.elapsed_ms,
                        certificate: s.certificate,
                        findings: s.findings,
                    },
                )
            }
            .instrument(span)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    endpoints.sort_by_key(|(i, _)| *i);
    let endpoints: Vec<EndpointReport> = endpoints.into_iter().map(|(_, e)| e).collect();
    Ok(ScanReport {
        schema: SCAN_SCHEMA,
        generated_at: now,
        severity: endpoints
            .iter()
            .map(|e| e.severity)
            .max()
            .unwrap_or(Severity::Ok),
        thresholds,
        endpoints,
    })
}
