//! Gathering a report: the store's versions, each node's live links and a
//! TLS probe per node and SNI name. The links are read the way a deployment
//! reaches nodes ([`crate::deploy::read_deployed`]: the deploy transport, one
//! read-only script per node, `deploy.concurrency` nodes at once); the probes
//! run meanwhile under `report.concurrency`, each bounded by
//! `report.probe_timeout`, so one slow node never holds up the others.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use time::OffsetDateTime;
use tracing::Instrument;

use super::DeployedUnknownCause;
use super::{
    assess_probe_failure, assess_served, assess_validity, worst, CertificateReport, EndpointReport,
    Finding, FindingKind, NodeReport, RenewalStatus, Report, ScanReport, ServedReport, Severity,
    StoreFacts, Thresholds, SCAN_SCHEMA, SCHEMA,
};
use crate::acme::RenewalPolicy;
use crate::deploy::{DeployError, Deployed, ReadError, TransportError};
use crate::inspect::probe::ProberError;
use crate::inspect::{Anchors, InspectError, Prober, Served, Trust};
use crate::inventory::NodeConfig;
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
    /// The nodes could not be read at all (no directory for the SSH
    /// control sockets); one node that cannot be read is a finding.
    #[error("cannot read the nodes' deployed versions")]
    Nodes(#[source] DeployError),
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

struct Probe<'a> {
    cert: usize,
    node: &'a NodeConfig,
    sni: String,
}

struct Probed {
    cert: usize,
    node: String,
    sni: String,
    result: Result<Served, crate::inspect::probe::ProbeFailure>,
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
    let mut revocations: Vec<Vec<crate::acme::Revocation>> = Vec::with_capacity(certs.len());
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
        let revoked = store
            .and_then(|s| crate::acme::revocations(s, name).ok())
            .unwrap_or_default();
        if let Some(r) = live
            .as_ref()
            .and_then(|l| revoked.iter().find(|r| r.version == l.version))
        {
            findings.push(revoked_finding(Severity::Warning, r));
        }
        revocations.push(revoked);
        if live.is_none() && audit.damage.iter().all(|d| !d.part.is_release()) {
            findings.push(Finding::new(Severity::Warning, FindingKind::NotInStore));
        }
        let facts = live.as_ref().map(|r| {
            let policy = RenewalPolicy::for_certificate(inventory, cert);
            let ari = audit
                .renewal
                .as_ref()
                .and_then(|rec| rec.ari_for(&r.meta.serial));
            let (due_at, reason, due) = crate::acme::due_at(policy, &r.meta, ari, now);
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
                    due_at,
                    due,
                    reason,
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
                jobs.push(Probe {
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
            revoked: revocations[ci].clone(),
            nodes,
            challenge: crate::acme::persist::method(cert),
        });
        lives.push(live);
    }

    // One read-only script per node reads the links of all its
    // certificates, while the probes run.
    let wanted: Vec<(&NodeConfig, Vec<&str>)> = deployed_jobs
        .values()
        .map(|(node, cs)| (*node, cs.iter().map(|c| certs[*c].name.as_str()).collect()))
        .collect();
    let names: Vec<&str> = certs.iter().map(|c| c.name.as_str()).collect();
    let probes = stream::iter(jobs)
        .map(|Probe { cert, node, sni }| {
            let prober = &prober;
            let span = tracing::info_span!("probe", certificate = names[cert], node = %node.name, sni = %sni);
            async move {
                let result = prober
                    .probe(&node.probe_address(), &sni)
                    .instrument(span)
                    .await;
                Probed {
                    cert,
                    node: node.name.to_string(),
                    sni,
                    result,
                }
            }
        })
        .buffer_unordered(inventory.report.concurrency.max(1))
        .collect::<Vec<Probed>>();
    let (read, probed) = tokio::join!(crate::deploy::read_deployed(inventory, &wanted), probes);
    let read = read.map_err(ReportError::Nodes)?;

    for ((node, cs), result) in deployed_jobs.values().zip(read) {
        for (i, &cert) in cs.iter().enumerate() {
            let live = lives[cert].as_ref();
            let Some(n) = reports[cert]
                .nodes
                .iter_mut()
                .find(|n| n.node == node.name.as_str())
            else {
                continue;
            };
            let seen = result.as_ref().map(|per_cert| per_cert.get(i));
            match seen {
                Ok(Some(Deployed::Version(v))) => {
                    if let Some(live) = live.filter(|l| l.version != *v) {
                        n.findings.push(Finding::new(
                            Severity::Warning,
                            FindingKind::DeployedDrift {
                                deployed: v.clone(),
                                live: live.version.clone(),
                            },
                        ));
                    }
                    n.deployed_version = Some(v.clone());
                }
                Ok(Some(Deployed::Missing) | None) => n
                    .findings
                    .push(Finding::new(Severity::Warning, FindingKind::NotDeployed)),
                Ok(Some(other)) => n.findings.push(Finding::new(
                    Severity::Unknown,
                    FindingKind::DeployedUnknown {
                        cause: DeployedUnknownCause::NotALink,
                        reason: format!(
                            "{}/live/{} is {}",
                            node.base_dir.display(),
                            names[cert],
                            match other {
                                Deployed::Directory => "a directory, not a link certctl made",
                                _ => "not a symbolic link",
                            }
                        ),
                    },
                )),
                Err(e) => n.findings.push(Finding::new(
                    Severity::Unknown,
                    FindingKind::DeployedUnknown {
                        cause: unknown_cause(e),
                        reason: crate::error_chain(e),
                    },
                )),
            }
        }
    }
    for Probed {
        cert,
        node,
        sni,
        result,
    } in probed
    {
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
            &revocations[cert],
        ));
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
    revoked: &[crate::acme::Revocation],
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
            if let Some(r) = cert
                .as_ref()
                .and_then(|c| revoked.iter().find(|r| r.serial == c.leaf.serial))
            {
                findings.push(revoked_finding(Severity::Critical, r));
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

fn revoked_finding(severity: Severity, r: &crate::acme::Revocation) -> Finding {
    Finding::new(
        severity,
        FindingKind::Revoked {
            version: r.version.clone(),
            serial: r.serial.clone(),
            reason: r.reason,
            revoked_at: r.at,
        },
    )
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

/// The machine-readable side of why a node's links could not be read.
fn unknown_cause(e: &ReadError) -> DeployedUnknownCause {
    match e {
        ReadError::Transport(TransportError::Timeout { .. }) => DeployedUnknownCause::Timeout,
        ReadError::Transport(_) => DeployedUnknownCause::Unreachable,
        ReadError::Busy { .. } => DeployedUnknownCause::Busy,
        _ => DeployedUnknownCause::Failed,
    }
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
    pub fn parse(s: &str, sni: Option<&str>) -> Result<Self, crate::inventory::ServerError> {
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
                let s = served_report(&t.sni, result, thresholds, anchors, now, None, &[]);
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
