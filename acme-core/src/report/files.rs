//! Assessment of PEM files on disk (`certctl inspect`): the same findings
//! and severities as the fleet report, per file.

use serde::Serialize;
use time::OffsetDateTime;

use super::{assess_validity, chain_finding, worst, Finding, FindingKind, Severity, Thresholds};
use crate::inspect::FileReport;

/// The JSON schema identifier of [`InspectReport`].
pub const INSPECT_SCHEMA: &str = "certctl.inspect/v1";

/// The result of `certctl inspect`.
///
/// JSON schema `certctl.inspect/v1`: `{"schema", "generated_at", "severity",
/// "thresholds": {"warning_seconds", "critical_seconds"}, "files": [{"path",
/// "certificates": [CertFacts], "leaf": null | index, "keys", "chain_issues": [{"kind", ..}],
/// "key": null | {"path", "matches"}, "error": null | string, "severity",
/// "findings": [Finding]}]}` with `CertFacts` and `Finding` as in
/// [`super::Report`].
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// Always [`INSPECT_SCHEMA`].
    pub schema: &'static str,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// The worst severity.
    pub severity: Severity,
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// One per file, in walk order.
    pub files: Vec<FileAssessment>,
}

/// One file with its findings.
#[derive(Debug, Clone, Serialize)]
pub struct FileAssessment {
    /// What the file holds.
    #[serde(flatten)]
    pub file: FileReport,
    /// The worst severity of its findings.
    pub severity: Severity,
    /// Findings: validity of its first certificate, chain shape, key match,
    /// read errors.
    pub findings: Vec<Finding>,
}

/// Assesses inspected files at `now`.
pub fn assess_files(
    files: Vec<FileReport>,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> InspectReport {
    let files: Vec<FileAssessment> = files
        .into_iter()
        .map(|file| {
            let mut findings = Vec::new();
            if let Some(reason) = &file.error {
                findings.push(Finding::new(
                    Severity::Unknown,
                    FindingKind::Unreadable {
                        reason: reason.clone(),
                    },
                ));
            }
            // The leaf's validity (the first certificate when there is no leaf).
            if let Some(first) = file.certificates.get(file.leaf.unwrap_or(0)) {
                findings.extend(assess_validity(
                    first.not_before,
                    first.not_after,
                    thresholds,
                    now,
                    false,
                ));
            }
            for issue in &file.chain_issues {
                findings.extend(chain_finding(issue.clone(), thresholds, now));
            }
            if let Some(k) = file.key.as_ref().filter(|k| !k.matches) {
                findings.push(Finding::new(
                    Severity::Critical,
                    FindingKind::KeyMismatch {
                        key: k.path.display().to_string(),
                    },
                ));
            }
            FileAssessment {
                severity: worst(&findings),
                file,
                findings,
            }
        })
        .collect();
    InspectReport {
        schema: INSPECT_SCHEMA,
        generated_at: now,
        severity: files
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok),
        thresholds,
        files,
    }
}
