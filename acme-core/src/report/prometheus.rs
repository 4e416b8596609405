//! The report as a Prometheus text exposition (for node_exporter's textfile
//! collector), written atomically so the collector never reads half a file.
//!
//! Metrics (all gauges; timestamps are absolute unix seconds):
//!
//! - `certctl_certificate_not_after_seconds{certificate,source,node,sni,serial}`
//!   and `certctl_certificate_not_before_seconds{..}`: `source="store"` (node
//!   and sni empty) or `source="served"` (one per node and SNI name).
//! - `certctl_certificate_chain_not_after_seconds{certificate,node,sni,serial}`:
//!   when a served chain stops working: the earliest end of validity of the
//!   leaf and the intermediates sent (roots left out). Alert on this one: an
//!   intermediate that expires before the leaf lowers it.
//! - `certctl_certificate_renewal_due_seconds{certificate}`: when renewal is due.
//! - `certctl_probe_success{certificate,node,sni}`: 1 if a certificate was served.
//! - `certctl_probe_duration_seconds{certificate,node,sni}`: handshake time.
//! - `certctl_finding{certificate,node,sni,kind,severity}`: number of findings.
//! - `certctl_certificate_severity{certificate}`: worst severity, 0 ok,
//!   1 warning, 2 critical, 3 unknown.
//! - `certctl_report_timestamp_seconds`: when the report was made.
//!
//! certctl's own health (steps, renewals, deployments, notify failures) is
//! rendered beside these by [`super::write_textfile`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::Report;
use crate::store::{write_atomic, StoreError};

/// Escapes a label value: backslash, double quote and newline.
pub(crate) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The families [`render_prometheus`] writes (the report's own), so a write
/// without a report can keep them from the previous file.
pub(crate) const REPORT_FAMILIES: [&str; 9] = [
    "certctl_certificate_not_after_seconds",
    "certctl_certificate_not_before_seconds",
    "certctl_certificate_chain_not_after_seconds",
    "certctl_certificate_renewal_due_seconds",
    "certctl_certificate_severity",
    "certctl_probe_success",
    "certctl_probe_duration_seconds",
    "certctl_finding",
    "certctl_report_timestamp_seconds",
];

/// One metric family: its help, type and samples.
pub(crate) struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, String)>,
}

impl Family {
    /// A gauge.
    pub(crate) fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: "gauge",
            samples: Vec::new(),
        }
    }

    /// A counter.
    pub(crate) fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            kind: "counter",
            ..Self::new(name, help)
        }
    }

    /// Adds a sample; label values are escaped.
    pub(crate) fn push(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let mut l = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                l.push(',');
            }
            let _ = write!(l, "{k}=\"{}\"", escape_label(v));
        }
        self.samples.push((l, value.to_string()));
    }

    /// Appends the family (nothing when it has no sample).
    pub(crate) fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", self.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
            }
        }
    }
}

/// Renders the report as Prometheus text.
pub fn render_prometheus(report: &Report) -> String {
    let mut not_after = Family::new(
        "certctl_certificate_not_after_seconds",
        "End of validity of a certificate (unix time), in the store or as served.",
    );
    let mut not_before = Family::new(
        "certctl_certificate_not_before_seconds",
        "Start of validity of a certificate (unix time), in the store or as served.",
    );
    let mut chain_not_after = Family::new(
        "certctl_certificate_chain_not_after_seconds",
        "When a served chain stops working (unix time): earliest end of validity of its leaf and intermediates.",
    );
    let mut due = Family::new(
        "certctl_certificate_renewal_due_seconds",
        "When renewal of the store's certificate is due (unix time).",
    );
    let mut severity = Family::new(
        "certctl_certificate_severity",
        "Worst severity for a certificate: 0 ok, 1 warning, 2 critical, 3 unknown.",
    );
    let mut success = Family::new(
        "certctl_probe_success",
        "1 if the TLS probe of a node and SNI name saw a certificate, else 0.",
    );
    let mut duration = Family::new(
        "certctl_probe_duration_seconds",
        "Duration of the TLS handshake of a probe.",
    );
    let mut finding = Family::new(
        "certctl_finding",
        "Number of findings of a kind and severity for a certificate, node and SNI name.",
    );
    let mut counts: BTreeMap<[String; 5], u32> = BTreeMap::new();
    for c in &report.certificates {
        let name = c.name.as_str();
        severity.push(&[("certificate", name)], c.severity.exit_code());
        if let Some(s) = &c.store {
            let labels = [
                ("certificate", name),
                ("source", "store"),
                ("node", ""),
                ("sni", ""),
                ("serial", s.serial.as_str()),
            ];
            not_after.push(&labels, s.not_after.unix_timestamp());
            not_before.push(&labels, s.not_before.unix_timestamp());
            due.push(&[("certificate", name)], s.renewal.due_at.unix_timestamp());
        }
        for n in &c.nodes {
            for s in &n.served {
                let probe = [
                    ("certificate", name),
                    ("node", n.node.as_str()),
                    ("sni", s.sni.as_str()),
                ];
                success.push(&probe, u8::from(s.certificate.is_some()));
                if let Some(ms) = s.elapsed_ms {
                    duration.push(&probe, format!("{:.3}", ms as f64 / 1000.0));
                }
                if let Some(cert) = &s.certificate {
                    let labels = [
                        ("certificate", name),
                        ("source", "served"),
                        ("node", n.node.as_str()),
                        ("sni", s.sni.as_str()),
                        ("serial", cert.leaf.serial.as_str()),
                    ];
                    not_after.push(&labels, cert.leaf.not_after.unix_timestamp());
                    not_before.push(&labels, cert.leaf.not_before.unix_timestamp());
                    chain_not_after.push(
                        &[
                            ("certificate", name),
                            ("node", n.node.as_str()),
                            ("sni", s.sni.as_str()),
                            ("serial", cert.leaf.serial.as_str()),
                        ],
                        cert.chain_not_after().unix_timestamp(),
                    );
                }
            }
        }
    }
    for (cert, node, sni, f) in report.findings() {
        let key = [
            cert.to_string(),
            node.unwrap_or("").to_string(),
            sni.unwrap_or("").to_string(),
            f.kind.name().to_string(),
            f.severity.as_str().to_string(),
        ];
        *counts.entry(key).or_default() += 1;
    }
    for ([cert, node, sni, kind, sev], n) in &counts {
        finding.push(
            &[
                ("certificate", cert),
                ("node", node),
                ("sni", sni),
                ("kind", kind),
                ("severity", sev),
            ],
            n,
        );
    }
    let mut ts = Family::new(
        "certctl_report_timestamp_seconds",
        "When the report was made (unix time).",
    );
    ts.push(&[], report.generated_at.unix_timestamp());

    let mut out = String::new();
    for f in [
        &not_after,
        &not_before,
        &chain_not_after,
        &due,
        &severity,
        &success,
        &duration,
        &finding,
        &ts,
    ] {
        f.write(&mut out);
    }
    out
}

/// Writes the rendered report to `path` atomically (mode 0644).
pub fn write_prometheus(report: &Report, path: &Path) -> Result<(), StoreError> {
    write_atomic(path, render_prometheus(report).as_bytes(), 0o644)
}
