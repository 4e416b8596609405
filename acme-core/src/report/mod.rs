//! The fleet expiry report and its renderers.
//!
//! For every certificate of the inventory: the store's live version, and on
//! every node that should serve it, the version deployed (the node's
//! `live/<name>` link) and the certificate actually served for every SNI name
//! (a TLS probe). Problems are [`Finding`]s with a [`Severity`]; the worst
//! severity is the exit status.
//!
//! The model and its assessment are pure ([`assess_served`],
//! [`assess_validity`]); [`gather`] does the I/O (store, SSH, TLS) with
//! bounded concurrency. Renderers: [`Report::rows`] for a table, `serde` for
//! JSON (schema [`SCHEMA`]), [`render_prometheus`] for node_exporter's
//! textfile collector, [`render_html`] for a self-contained page to look
//! at; [`write_textfile`] adds certctl's own [`Health`] (the steps of the
//! last runs, renewal and deployment records). [`notify`] and
//! [`notify_failure`] run `[report] notify` with the report or a
//! [`FailureNotice`].

mod files;
mod gather;
mod health;
mod html;
mod notify;
pub(crate) mod prometheus;

pub use files::{assess_files, FileAssessment, InspectReport, INSPECT_SCHEMA};
pub use gather::{gather, scan, ReportError, ReportOptions, ScanTarget};
pub use health::{render_health, write_textfile, Health, Step, StepHealth};
pub use html::{render_html, write_html};
pub use notify::{notify, notify_failure, Failure, FailureNotice, NotifyError, FAILURE_SCHEMA};
pub use prometheus::{render_prometheus, write_prometheus};

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::acme::DueReason;
use crate::inspect::{
    analyze_chain, human_duration, human_signed, matches_name, Anchors, CertFacts, ChainIssue,
    ProbeFailure, Served,
};

/// The JSON schema identifier of [`Report`]. Fields may be added within a
/// version; renaming or removing one bumps it.
pub const SCHEMA: &str = "certctl.report/v1";
/// The JSON schema identifier of [`ScanReport`].
pub const SCAN_SCHEMA: &str = "certctl.scan/v1";

/// How bad a finding is. Ordered: `ok < warning < unknown < critical`, so the
/// worst of a set is its maximum (a critical certificate is never hidden by
/// an unreachable node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing to do.
    Ok,
    /// Needs attention before it becomes critical.
    Warning,
    /// Could not be determined (node unreachable, probe timed out).
    Unknown,
    /// Clients fail or will fail soon.
    Critical,
}

impl Severity {
    /// The monitoring-plugin exit status: 0 ok, 1 warning, 2 critical, 3 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Unknown => "unknown",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Time-left thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// Below this much time left: warning.
    #[serde(rename = "warning_seconds", with = "secs")]
    pub warning: Duration,
    /// Below this much time left: critical.
    #[serde(rename = "critical_seconds", with = "secs")]
    pub critical: Duration,
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// What a finding is about. Serialised with a `kind` tag (snake_case).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// The store has no version of this certificate yet.
    NotInStore,
    /// The store's record of this certificate could not be read.
    StoreUnreadable {
        /// Why.
        reason: String,
    },
    /// A store file of this certificate is damaged (see [`crate::store::Damage`]).
    StoreDamaged {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Past `not_after`.
    Expired {
        /// End of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// Less time left than a threshold.
    ExpiresSoon {
        /// End of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
        /// Seconds left.
        seconds_left: i64,
    },
    /// Before `not_before`.
    NotYetValid {
        /// Start of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_before: OffsetDateTime,
    },
    /// The served certificate does not cover the SNI name.
    HostnameMismatch {
        /// The name asked for.
        sni: String,
        /// The names it covers.
        names: Vec<String>,
    },
    /// The served chain does not verify against the trust anchors.
    Untrusted {
        /// The verifier's reason.
        reason: String,
    },
    /// A self-signed certificate (issuer = subject) that is not trusted,
    /// e.g. a bootstrap placeholder.
    SelfSigned,
    /// The chain lacks an intermediate.
    IncompleteChain {
        /// The missing issuer.
        issuer: String,
    },
    /// The chain ends at an intermediate whose root is not a trust anchor.
    UnknownRoot {
        /// The root's name.
        issuer: String,
        /// The intermediate it issued.
        intermediate: String,
    },
    /// A file's first certificate is a CA; the leaf comes later.
    LeafNotFirst {
        /// Index of the leaf in the file (0 = first).
        position: usize,
    },
    /// The chain is not leaf first, each followed by its issuer.
    ChainOrder {
        /// Index whose successor is not its issuer.
        position: usize,
    },
    /// An intermediate expires before the leaf.
    IntermediateExpiresFirst {
        /// The intermediate.
        subject: String,
        /// Its end of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// The node serves another certificate than the store's live one.
    ServedDrift {
        /// Serial served.
        served_serial: String,
        /// Serial of the store's live version.
        store_serial: String,
    },
    /// The node's live link points at another version than the store's.
    DeployedDrift {
        /// Version on the node.
        deployed: String,
        /// The store's live version.
        live: String,
    },
    /// A revoked version (`certctl revoke`, `certctl rotate`): critical when
    /// a node serves it, a warning while it is still the store's live one.
    Revoked {
        /// The revoked version.
        version: String,
        /// Its serial.
        serial: String,
        /// The reason given to the CA.
        reason: crate::acme::RevocationReason,
        /// When the CA accepted the revocation.
        #[serde(with = "time::serde::rfc3339")]
        revoked_at: OffsetDateTime,
    },
    /// The node has no live link for this certificate.
    NotDeployed,
    /// The deployed version could not be read (the node could not be
    /// reached over SSH, or `live/<name>` is not a link); what is served is
    /// still probed and assessed on its own.
    DeployedUnknown {
        /// Why, for programs.
        cause: DeployedUnknownCause,
        /// Why, for people (the error and its sources).
        reason: String,
    },
    /// Connection refused, address unreachable, or name not resolved.
    Unreachable {
        /// Why.
        reason: String,
    },
    /// No TLS answer within the probe timeout.
    ProbeTimeout {
        /// The bound, in milliseconds.
        timeout_ms: u64,
    },
    /// The TLS handshake failed before a certificate was seen.
    HandshakeFailed {
        /// Why.
        reason: String,
    },
    /// The private key beside the certificate does not belong to it.
    KeyMismatch {
        /// The key file.
        key: String,
    },
    /// A file could not be read or parsed.
    Unreadable {
        /// Why.
        reason: String,
    },
}

impl FindingKind {
    /// The snake_case name (the JSON `kind`, the Prometheus `kind` label).
    pub fn name(&self) -> &'static str {
        match self {
            FindingKind::NotInStore => "not_in_store",
            FindingKind::StoreUnreadable { .. } => "store_unreadable",
            FindingKind::StoreDamaged { .. } => "store_damaged",
            FindingKind::Expired { .. } => "expired",
            FindingKind::ExpiresSoon { .. } => "expires_soon",
            FindingKind::NotYetValid { .. } => "not_yet_valid",
            FindingKind::HostnameMismatch { .. } => "hostname_mismatch",
            FindingKind::Untrusted { .. } => "untrusted",
            FindingKind::SelfSigned => "self_signed",
            FindingKind::IncompleteChain { .. } => "incomplete_chain",
            FindingKind::UnknownRoot { .. } => "unknown_root",
            FindingKind::LeafNotFirst { .. } => "leaf_not_first",
            FindingKind::ChainOrder { .. } => "chain_order",
            FindingKind::IntermediateExpiresFirst { .. } => "intermediate_expires_first",
            FindingKind::ServedDrift { .. } => "served_drift",
            FindingKind::DeployedDrift { .. } => "deployed_drift",
            FindingKind::Revoked { .. } => "revoked",
            FindingKind::NotDeployed => "not_deployed",
            FindingKind::DeployedUnknown { .. } => "deployed_unknown",
            FindingKind::Unreachable { .. } => "unreachable",
            FindingKind::ProbeTimeout { .. } => "probe_timeout",
            FindingKind::HandshakeFailed { .. } => "handshake_failed",
            FindingKind::KeyMismatch { .. } => "key_mismatch",
            FindingKind::Unreadable { .. } => "unreadable",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::inspect::date;
        match self {
            FindingKind::NotInStore => f.write_str("not in the store yet (run `certctl issue`)"),
            FindingKind::StoreUnreadable { reason } => {
                write!(f, "store record unreadable: {reason}")
            }
            FindingKind::StoreDamaged { path, problem } => {
                write!(f, "store file {} is damaged: {problem}", path.display())
            }
            FindingKind::Expired { not_after } => write!(f, "expired {}", date(*not_after)),
            FindingKind::ExpiresSoon { seconds_left, .. } => write!(
                f,
                "expires in {}",
                human_duration(Duration::from_secs((*seconds_left).max(0).unsigned_abs()))
            ),
            FindingKind::NotYetValid { not_before } => {
                write!(f, "not valid before {}", date(*not_before))
            }
            FindingKind::HostnameMismatch { sni, names } => {
                write!(f, "not valid for {sni} (covers {})", names.join(", "))
            }
            FindingKind::Untrusted { reason } => write!(f, "untrusted: {reason}"),
            FindingKind::SelfSigned => f.write_str("self-signed certificate served"),
            FindingKind::IncompleteChain { issuer } => {
                write!(f, "incomplete chain: intermediate `{issuer}` not sent")
            }
            FindingKind::UnknownRoot {
                issuer,
                intermediate,
            } => write!(
                f,
                "root `{issuer}` (issuer of intermediate `{intermediate}`) is not a trust anchor here"
            ),
            FindingKind::LeafNotFirst { position } => write!(
                f,
                "chain out of order: the leaf is certificate {} of the file, after a CA certificate (it must come first)",
                position + 1
            ),
            FindingKind::ChainOrder { position } => write!(
                f,
                "chain out of order at certificate {position} (each must be followed by its issuer)"
            ),
            FindingKind::IntermediateExpiresFirst { subject, not_after } => write!(
                f,
                "intermediate `{subject}` expires {} before the leaf",
                date(*not_after)
            ),
            FindingKind::ServedDrift {
                served_serial,
                store_serial,
            } => write!(
                f,
                "serves serial {} but the store's live one is {} (run `certctl deploy`)",
                short(served_serial),
                short(store_serial)
            ),
            FindingKind::DeployedDrift { deployed, live } => write!(
                f,
                "node has version {deployed}, store has {live} (run `certctl deploy`)"
            ),
            FindingKind::Revoked {
                version,
                serial,
                reason,
                revoked_at,
            } => write!(
                f,
                "version {version} (serial {}) was revoked {} ({reason}); deploy a newer version (`certctl rotate`)",
                short(serial),
                date(*revoked_at)
            ),
            FindingKind::NotDeployed => f.write_str("not deployed on the node"),
            FindingKind::DeployedUnknown { reason, .. } => {
                write!(f, "cannot read the deployed version: {reason}")
            }
            FindingKind::Unreachable { reason } => write!(f, "unreachable: {reason}"),
            FindingKind::ProbeTimeout { timeout_ms } => {
                write!(f, "no TLS answer within {timeout_ms} ms")
            }
            FindingKind::HandshakeFailed { reason } => write!(f, "TLS handshake failed: {reason}"),
            FindingKind::KeyMismatch { key } => {
                write!(f, "private key {key} does not belong to this certificate")
            }
            FindingKind::Unreadable { reason } => f.write_str(reason),
        }
    }
}

/// Why a node's deployed version is unknown (the `cause` of a
/// `deployed_unknown` finding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeployedUnknownCause {
    /// The node could not be reached, or the read not run (SSH, sudo).
    Unreachable,
    /// The read did not finish in time.
    Timeout,
    /// Another certctl run held the node lock for the whole wait.
    Busy,
    /// The read ran but gave no answer.
    Failed,
    /// `live/<name>` is a directory or a file, not a link.
    NotALink,
}

/// Sort key putting `node2` before `node10`.
fn natural(s: &str) -> (&str, u64, &str) {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = s.split_at(s.len() - digits);
    (head, tail.parse().unwrap_or(0), s)
}

fn short(serial: &str) -> &str {
    serial.get(..16).unwrap_or(serial)
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What.
    #[serde(flatten)]
    pub kind: FindingKind,
    /// For people.
    pub message: String,
}

impl Finding {
    /// A finding of `kind` at `severity`.
    pub fn new(severity: Severity, kind: FindingKind) -> Self {
        let message = kind.to_string();
        Self {
            severity,
            kind,
            message,
        }
    }
}

/// The worst severity of `findings` (ok when empty).
pub fn worst<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Severity {
    findings
        .into_iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// The fleet report.
///
/// JSON (`certctl report --json`), schema `certctl.report/v1`:
///
/// ```text
/// {
///   "schema": "certctl.report/v1",
///   "generated_at": RFC 3339,
///   "severity": "ok" | "warning" | "unknown" | "critical",   // worst of all
///   "certificates": [{
///     "name", "domains": [..], "severity",
///     "thresholds": {"warning_seconds", "critical_seconds"},
///     "store": null | {"version", "serial", "issuer", "directory", "key_type", "domains",
///                      "not_before", "not_after", "seconds_left",
///                      "renewal": {"due_at", "due", "reason": DueReason}},
///     "findings": [Finding],                 // about the store's version
///     "revoked": [{"version", "serial", "reason", "signed_by", "directory", "at", "already"}],
///                                            // left out when none
///     "nodes": [{
///       "node", "probe_address", "severity",
///       "deployed_version": null | string,   // the node's live link target
///       "findings": [Finding],               // deployment, drift; "deployed_unknown"
///                                            // has "cause": "unreachable"|"timeout"|
///                                            // "busy"|"failed"|"not_a_link", "reason"
///       "served": [{
///         "sni", "severity", "elapsed_ms": null | int,
///         "certificate": null | {"leaf": CertFacts, "chain": [CertFacts], "trusted", "verification_error"},
///         "findings": [Finding]
///       }]
///     }]
///   }]
/// }
/// Finding = {"severity", "kind": snake_case name, "message", ..kind-specific fields}
/// DueReason = {"rule": "ari", "start", "end"} | {"rule": "lifetime", "fraction"}
///           | {"rule": "renew_before", "seconds"}   // as in `renew --json` and `list --json`
/// CertFacts = {"subject", "issuer", "serial", "dns_names", "ip_addresses", "not_before",
///              "not_after", "key_type", "is_ca", "subject_key_id", "authority_key_id",
///              "sha256", "ari_id"}
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// When the report was made.
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// The worst severity of everything below.
    pub severity: Severity,
    /// Per certificate, in inventory order.
    pub certificates: Vec<CertificateReport>,
}

/// One certificate across the store and the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateReport {
    /// The inventory name.
    pub name: String,
    /// The names it should cover.
    pub domains: Vec<String>,
    /// The worst severity of its store and nodes.
    pub severity: Severity,
    /// Thresholds in force for it.
    pub thresholds: Thresholds,
    /// The store's live version, if any.
    pub store: Option<StoreFacts>,
    /// Findings about the store's version.
    pub findings: Vec<Finding>,
    /// The versions the store records as revoked (`certctl revoke`,
    /// `certctl rotate`), oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<crate::acme::Revocation>,
    /// The nodes that should serve it.
    pub nodes: Vec<NodeReport>,
    /// The challenge it is issued with (`dns-01`, `dns-persist-01`, or
    /// `dns-persist-01 (fallback dns-01 via <solver>)`).
    pub challenge: String,
}

/// The store's live version.
#[derive(Debug, Clone, Serialize)]
pub struct StoreFacts {
    /// Version (directory name).
    pub version: String,
    /// Serial, lower-case hex.
    pub serial: String,
    /// Issuer name.
    pub issuer: String,
    /// ACME directory that issued it (the fallback CA's, if that one did).
    pub directory: String,
    /// Key algorithm.
    pub key_type: crate::inventory::KeyType,
    /// Names in the certificate.
    pub domains: Vec<String>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Seconds left at report time (negative once expired).
    pub seconds_left: i64,
    /// When renewal is due.
    pub renewal: RenewalStatus,
}

/// Renewal due date of the store's version.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalStatus {
    /// When renewal is due.
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    /// Due at report time.
    pub due: bool,
    /// The rule that set `due_at`.
    pub reason: DueReason,
}

/// One node for one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Node name.
    pub node: String,
    /// The TLS address probed.
    pub probe_address: String,
    /// The worst severity of its findings and probes.
    pub severity: Severity,
    /// The version its live link points at, if known.
    pub deployed_version: Option<String>,
    /// Deployment findings (drift, not deployed, unknown).
    pub findings: Vec<Finding>,
    /// One probe per SNI name of the certificate.
    pub served: Vec<ServedReport>,
}

/// One probe: what a node serves for one SNI name.
#[derive(Debug, Clone, Serialize)]
pub struct ServedReport {
    /// The SNI name sent.
    pub sni: String,
    /// The worst severity of its findings.
    pub severity: Severity,
    /// Handshake duration, when it completed.
    pub elapsed_ms: Option<u64>,
    /// What was served, when a certificate was seen.
    pub certificate: Option<ServedCert>,
    /// Findings about it.
    pub findings: Vec<Finding>,
}

/// A served chain.
#[derive(Debug, Clone, Serialize)]
pub struct ServedCert {
    /// The leaf.
    pub leaf: CertFacts,
    /// The other certificates sent, in order (unparsable ones left out).
    pub chain: Vec<CertFacts>,
    /// The chain verified for the SNI name against the trust anchors.
    pub trusted: bool,
    /// Why it did not.
    pub verification_error: Option<String>,
}

impl ServedCert {
    /// When the served chain stops working: the earliest end of validity of
    /// the leaf and the intermediates sent (roots left out). The table's
    /// EXPIRES/LEFT, `scan`'s and the Prometheus
    /// `certctl_certificate_chain_not_after_seconds` use it.
    pub fn chain_not_after(&self) -> OffsetDateTime {
        crate::inspect::not_after_of(&self.leaf, &self.chain)
    }
}

/// A validity finding for a certificate valid from `not_before` to
/// `not_after`, at `now`. `served` certificates that are not yet valid are
/// critical (clients refuse them); stored ones are a warning.
pub fn assess_validity(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    thresholds: Thresholds,
    now: OffsetDateTime,
    served: bool,
) -> Option<Finding> {
    if now < not_before {
        let sev = if served {
            Severity::Critical
        } else {
            Severity::Warning
        };
        return Some(Finding::new(sev, FindingKind::NotYetValid { not_before }));
    }
    if now >= not_after {
        return Some(Finding::new(
            Severity::Critical,
            FindingKind::Expired { not_after },
        ));
    }
    let left = not_after - now;
    let kind = FindingKind::ExpiresSoon {
        not_after,
        seconds_left: left.whole_seconds(),
    };
    let under = |d: Duration| time::Duration::try_from(d).is_ok_and(|d| left <= d);
    if under(thresholds.critical) {
        Some(Finding::new(Severity::Critical, kind))
    } else if under(thresholds.warning) {
        Some(Finding::new(Severity::Warning, kind))
    } else {
        None
    }
}

/// Assesses one handshake's result for `sni`: validity, name, trust, chain
/// shape. Pure.
pub fn assess_served(
    served: &Served,
    sni: &str,
    thresholds: Thresholds,
    anchors: &Anchors,
    now: OffsetDateTime,
) -> (Option<ServedCert>, Vec<Finding>) {
    let mut findings = Vec::new();
    let Some(leaf_der) = served.leaf() else {
        findings.push(Finding::new(
            Severity::Critical,
            FindingKind::HandshakeFailed {
                reason: "no certificate presented".into(),
            },
        ));
        return (None, findings);
    };
    let leaf = match CertFacts::from_der(leaf_der) {
        Ok(l) => l,
        Err(e) => {
            findings.push(Finding::new(
                Severity::Critical,
                FindingKind::Untrusted {
                    reason: crate::error_chain(&e),
                },
            ));
            return (None, findings);
        }
    };
    let rest: Vec<CertFacts> = served
        .chain
        .iter()
        .skip(1)
        .filter_map(|d| CertFacts::from_der(d).ok())
        .collect();
    let mut explained = false;
    if let Some(f) = assess_validity(leaf.not_before, leaf.not_after, thresholds, now, true) {
        explained |= matches!(
            f.kind,
            FindingKind::Expired { .. } | FindingKind::NotYetValid { .. }
        );
        findings.push(f);
    }
    if !matches_name(&leaf, sni) {
        explained = true;
        findings.push(Finding::new(
            Severity::Critical,
            FindingKind::HostnameMismatch {
                sni: sni.to_string(),
                names: leaf
                    .dns_names
                    .iter()
                    .cloned()
                    .chain(leaf.ip_addresses.iter().map(|i| i.to_string()))
                    .collect(),
            },
        ));
    }
    let trusted = served.verification.is_ok();
    if leaf.is_self_issued() && !trusted {
        explained = true;
        findings.push(Finding::new(Severity::Critical, FindingKind::SelfSigned));
    } else {
        let mut full = Vec::with_capacity(rest.len() + 1);
        full.push(leaf.clone());
        full.extend(rest.iter().cloned());
        for issue in analyze_chain(&full, anchors) {
            explained |= matches!(
                issue,
                ChainIssue::MissingIntermediate { .. } | ChainIssue::UnknownRoot { .. }
            );
            findings.extend(chain_finding(issue, thresholds, now));
        }
    }
    if let (Err(reason), false) = (&served.verification, explained) {
        findings.push(Finding::new(
            Severity::Critical,
            FindingKind::Untrusted {
                reason: reason.to_string(),
            },
        ));
    }
    let cert = ServedCert {
        leaf,
        chain: rest,
        trusted,
        verification_error: served.verification.as_ref().err().map(ToString::to_string),
    };
    (Some(cert), findings)
}

/// The finding for a chain issue: a missing intermediate or unknown root is
/// critical (most clients fail), as is a file whose leaf is not first (nginx
/// refuses it); an out-of-order chain is a warning. An intermediate that
/// expires before the leaf takes its severity from its own time left under
/// `thresholds` (the chain breaks then, whatever the leaf says), and is at
/// least a warning.
pub fn chain_finding(
    issue: ChainIssue,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Option<Finding> {
    Some(match issue {
        ChainIssue::MissingIntermediate { issuer } => {
            Finding::new(Severity::Critical, FindingKind::IncompleteChain { issuer })
        }
        ChainIssue::UnknownRoot {
            issuer,
            intermediate,
        } => Finding::new(
            Severity::Critical,
            FindingKind::UnknownRoot {
                issuer,
                intermediate,
            },
        ),
        ChainIssue::LeafNotFirst { position } => {
            Finding::new(Severity::Critical, FindingKind::LeafNotFirst { position })
        }
        ChainIssue::NotInOrder { position } => {
            Finding::new(Severity::Warning, FindingKind::ChainOrder { position })
        }
        ChainIssue::IntermediateExpiresFirst {
            subject, not_after, ..
        } => {
            let left = not_after - now;
            let under = |d: Duration| time::Duration::try_from(d).is_ok_and(|d| left <= d);
            let severity = if left <= time::Duration::ZERO || under(thresholds.critical) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            Finding::new(
                severity,
                FindingKind::IntermediateExpiresFirst { subject, not_after },
            )
        }
        // An empty chain is reported by the caller in its own terms.
        _ => return None,
    })
}

/// The finding for a probe that saw no certificate.
pub fn assess_probe_failure(failure: &ProbeFailure) -> Finding {
    match failure {
        ProbeFailure::Resolve { source, .. } | ProbeFailure::Connect { source, .. } => {
            Finding::new(
                Severity::Unknown,
                FindingKind::Unreachable {
                    reason: source.to_string(),
                },
            )
        }
        ProbeFailure::NoAddress { .. } => Finding::new(
            Severity::Unknown,
            FindingKind::Unreachable {
                reason: "no address".into(),
            },
        ),
        ProbeFailure::Timeout { timeout, .. } => Finding::new(
            Severity::Unknown,
            FindingKind::ProbeTimeout {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
        ),
        ProbeFailure::Handshake { source, .. } => Finding::new(
            Severity::Critical,
            FindingKind::HandshakeFailed {
                reason: source.to_string(),
            },
        ),
        ProbeFailure::InvalidSni { .. } => Finding::new(
            Severity::Critical,
            FindingKind::HandshakeFailed {
                reason: "invalid SNI name: invalid dns name".into(),
            },
        ),
    }
}

/// One line of the table for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Certificate name.
    pub certificate: String,
    /// `store` or the node name.
    pub place: String,
    /// Version (store) or deployed version (node).
    pub version: String,
    /// Serial(s) stored or served, shortened.
    pub serial: String,
    /// Earliest end of validity (of the served chains, for a node), as a date.
    pub expires: String,
    /// Time left, for people (`21d`, `-2d`), `-` when unknown.
    pub left: String,
    /// Seconds left, for sorting (`i64::MAX` when unknown).
    pub seconds_left: i64,
    /// The row's worst severity.
    pub severity: Severity,
    /// Its findings' messages.
    pub notes: String,
}

impl Report {
    /// The worst severity.
    pub fn exit_code(&self) -> u8 {
        self.severity.exit_code()
    }

    /// Every finding with where it is: (certificate, node, sni, finding).
    pub fn findings(&self) -> impl Iterator<Item = (&str, Option<&str>, Option<&str>, &Finding)> {
        self.certificates.iter().flat_map(|c| {
            let store = c
                .findings
                .iter()
                .map(move |f| (c.name.as_str(), None, None, f));
            let nodes = c.nodes.iter().flat_map(move |n| {
                let node = n
                    .findings
                    .iter()
                    .map(move |f| (c.name.as_str(), Some(n.node.as_str()), None, f));
                let served = n.served.iter().flat_map(move |s| {
                    s.findings.iter().map(move |f| {
                        (
                            c.name.as_str(),
                            Some(n.node.as_str()),
                            Some(s.sni.as_str()),
                            f,
                        )
                    })
                });
                node.chain(served)
            });
            store.chain(nodes)
        })
    }

    /// Table rows, one for each certificate's store version and one per
    /// (certificate, node), sorted by urgency: worst severity first, then
    /// least time left, then name.
    pub fn rows(&self) -> Vec<Row> {
        let now = self.generated_at;
        let mut rows = Vec::new();
        for c in &self.certificates {
            let (version, serial, expires, seconds_left) = match &c.store {
                Some(s) => (
                    s.version.clone(),
                    short(&s.serial).to_string(),
                    Some(s.not_after),
                    s.seconds_left,
                ),
                None => ("-".into(), "-".into(), None, i64::MAX),
            };
            let mut notes: Vec<String> = c.findings.iter().map(|f| f.message.clone()).collect();
            if c.challenge != "dns-01" {
                notes.push(format!("challenge {}", c.challenge));
            }
            if let Some(s) = &c.store {
                if s.renewal.due {
                    notes.push(format!("renewal due ({})", s.renewal.reason));
                }
            }
            rows.push(Row {
                certificate: c.name.clone(),
                place: "store".into(),
                version,
                serial,
                expires: expires
                    .map(crate::inspect::date)
                    .unwrap_or_else(|| "-".into()),
                left: expires
                    .map(|e| human_signed(e - now))
                    .unwrap_or_else(|| "-".into()),
                seconds_left,
                severity: worst(&c.findings),
                notes: notes.join("; "),
            });
            for n in &c.nodes {
                let mut serials: Vec<&str> = n
                    .served
                    .iter()
                    .filter_map(|s| s.certificate.as_ref().map(|c| short(&c.leaf.serial)))
                    .collect();
                serials.dedup();
                let not_after = n
                    .served
                    .iter()
                    .filter_map(|s| s.certificate.as_ref().map(ServedCert::chain_not_after))
                    .min();
                let mut notes: Vec<String> = n.findings.iter().map(|f| f.message.clone()).collect();
                for s in &n.served {
                    for f in &s.findings {
                        let m = format!("{}: {}", s.sni, f.message);
                        if !notes.contains(&m) {
                            notes.push(m);
                        }
                    }
                }
                rows.push(Row {
                    certificate: c.name.clone(),
                    place: n.node.clone(),
                    version: n.deployed_version.clone().unwrap_or_else(|| {
                        let unknown = n
                            .findings
                            .iter()
                            .any(|f| matches!(f.kind, FindingKind::DeployedUnknown { .. }));
                        if unknown { "unknown" } else { "-" }.into()
                    }),
                    serial: if serials.is_empty() {
                        "-".into()
                    } else {
                        serials.join(",")
                    },
                    expires: not_after
                        .map(crate::inspect::date)
                        .unwrap_or_else(|| "-".into()),
                    left: not_after
                        .map(|e| human_signed(e - now))
                        .unwrap_or_else(|| "-".into()),
                    seconds_left: not_after.map_or(i64::MAX, |e| (e - now).whole_seconds()),
                    severity: n.severity,
                    notes: notes.join("; "),
                });
            }
        }
        rows.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.seconds_left.cmp(&b.seconds_left))
                .then_with(|| a.certificate.cmp(&b.certificate))
                .then_with(|| natural(&a.place).cmp(&natural(&b.place)))
        });
        rows
    }
}

/// The result of `certctl scan`: endpoints outside the inventory.
///
/// JSON schema `certctl.scan/v1`:
/// `{"schema", "generated_at", "severity", "endpoints": [{"address", "sni",
/// "severity", "elapsed_ms", "certificate": null | ServedCert, "findings": [Finding]}]}`
/// with `ServedCert` and `Finding` as in [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// Always [`SCAN_SCHEMA`].
    pub schema: &'static str,
    /// When the scan ran.
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// The worst severity.
    pub severity: Severity,
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// One per endpoint, in the order given.
    pub endpoints: Vec<EndpointReport>,
}

/// One scanned endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    /// `host:port` probed.
    pub address: String,
    /// SNI name sent.
    pub sni: String,
    /// The worst severity of its findings.
    pub severity: Severity,
    /// Handshake duration, when it completed.
    pub elapsed_ms: Option<u64>,
    /// What was served.
    pub certificate: Option<ServedCert>,
    /// Findings.
    pub findings: Vec<Finding>,
}

#[cfg(test)]
mod tests;
