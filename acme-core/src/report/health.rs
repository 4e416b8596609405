//! certctl's own health: when each step of the last runs started and ended
//! and whether it succeeded, and how many notify commands failed (the
//! store-wide record `health/run.json`), rendered with the renewal and
//! deployment records into the Prometheus textfile.
//!
//! Every write renders the whole textfile from the store, so a run of one
//! step updates that step's figures and keeps the others'. The report's
//! figures come from the report when one was made, else from the textfile
//! already there (certctl's own previous write), so `certctl renew
//! --prometheus` does not erase them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::prometheus::{Family, REPORT_FAMILIES};
use super::{render_prometheus, Report};
use crate::acme::RenewalRecord;
use crate::deploy::NodeState;
use crate::inventory::Inventory;
use crate::store::{write_atomic, Store, StoreError};

/// The store-wide record (`health/run.json`) holding [`Health`].
const RECORD: &str = "run";

/// A step of certctl's work, as the `step` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// A whole `certctl run` (renew, deploy and report).
    Run,
    /// Renewal of what is due.
    Renew,
    /// Deployment to the nodes.
    Deploy,
    /// The expiry report.
    Report,
}

impl Step {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Run => "run",
            Step::Renew => "renew",
            Step::Deploy => "deploy",
            Step::Report => "report",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a step last started and ended, and how it went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepHealth {
    /// When it last started.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_start: Option<OffsetDateTime>,
    /// When it last ended (before `last_start`: it is running, or died).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_end: Option<OffsetDateTime>,
    /// When it last ended without a failure.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// Whether the last end was a success.
    #[serde(default)]
    pub last_ok: Option<bool>,
}

/// certctl's own health, kept in the store between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Per step.
    #[serde(default)]
    pub steps: BTreeMap<Step, StepHealth>,
    /// Notify commands that failed or timed out, ever.
    #[serde(default)]
    pub notify_failures: u64,
    /// When the last one failed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub notify_last_failure: Option<OffsetDateTime>,
}

impl Health {
    /// Reads the store's record (an empty one if there is none yet).
    pub fn read(store: &Store) -> Result<Self, StoreError> {
        Ok(store.read_health(RECORD)?.unwrap_or_default())
    }

    /// Writes it atomically.
    pub fn write(&self, store: &Store) -> Result<(), StoreError> {
        store.write_health(RECORD, self)
    }

    /// `step` started at `at`.
    pub fn started(&mut self, step: Step, at: OffsetDateTime) {
        self.steps.entry(step).or_default().last_start = Some(at);
    }

    /// `step` ended at `at`, well if `ok`.
    pub fn ended(&mut self, step: Step, at: OffsetDateTime, ok: bool) {
        let s = self.steps.entry(step).or_default();
        s.last_end = Some(at);
        s.last_ok = Some(ok);
        if ok {
            s.last_success = Some(at);
        }
    }

    /// A notify command failed at `at`.
    pub fn notify_failed(&mut self, at: OffsetDateTime) {
        self.notify_failures = self.notify_failures.saturating_add(1);
        self.notify_last_failure = Some(at);
    }
}

/// The report's families from a textfile certctl wrote before (the lines of
/// its families only), so a write without a report keeps them.
fn report_part_of(existing: &str) -> String {
    let mut out = String::new();
    for line in existing.lines() {
        let name = match line.strip_prefix("# ") {
            Some(rest) => rest.split(' ').nth(1).unwrap_or(""),
            None => line.split(['{', ' ']).next().unwrap_or(""),
        };
        if REPORT_FAMILIES.contains(&name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Renders certctl's health families: the steps and notify failures from
/// `health`, the renewal and deployment records of the inventory's
/// certificates and nodes from `store`, and when the file is written (`now`).
pub fn render_health(
    health: &Health,
    inventory: &Inventory,
    store: Option<&Store>,
    now: OffsetDateTime,
) -> String {
    let step = |name, help| Family::new(name, help);
    let mut start = step(
        "certctl_run_last_start_timestamp_seconds",
        "When a step of certctl last started (unix time).",
    );
    let mut end = step(
        "certctl_run_last_end_timestamp_seconds",
        "When a step of certctl last ended (unix time); older than the start while it runs or after it died.",
    );
    let mut success = step(
        "certctl_run_last_success_timestamp_seconds",
        "When a step of certctl last ended without a failure (unix time; 0: never).",
    );
    let mut result = step(
        "certctl_run_last_result",
        "1 if the last end of a step of certctl was a success, 0 if it failed.",
    );
    for (s, h) in &health.steps {
        let l = [("step", s.as_str())];
        if let Some(t) = h.last_start {
            start.push(&l, t.unix_timestamp());
        }
        if let Some(t) = h.last_end {
            end.push(&l, t.unix_timestamp());
        }
        success.push(&l, h.last_success.map_or(0, OffsetDateTime::unix_timestamp));
        if let Some(ok) = h.last_ok {
            result.push(&l, u8::from(ok));
        }
    }
    let mut attempt = Family::new(
        "certctl_renewal_last_attempt_timestamp_seconds",
        "When an order for a certificate was last attempted (unix time).",
    );
    let mut renewed = Family::new(
        "certctl_renewal_last_success_timestamp_seconds",
        "When an order for a certificate last succeeded (unix time).",
    );
    let mut failures = Family::new(
        "certctl_renewal_consecutive_failures",
        "Orders for a certificate that failed in a row since the last success, with the last error's kind.",
    );
    let mut deployed = Family::new(
        "certctl_deploy_last_success_timestamp_seconds",
        "When a deploy last left a node holding the store's version of a certificate (unix time).",
    );
    let mut version = Family::new(
        "certctl_node_version_info",
        "The version of a certificate a node holds, as far as certctl's last deploy knows (always 1).",
    );
    if let Some(store) = store {
        let nodes: BTreeSet<&str> = inventory.nodes.iter().map(|n| n.name.as_str()).collect();
        for c in &inventory.certificates {
            let name = c.name.as_str();
            let l = [("certificate", name)];
            if let Ok(Some(r)) = RenewalRecord::read(store, name) {
                if let Some(t) = r.last_attempt {
                    attempt.push(&l, t.unix_timestamp());
                }
                if let Some(t) = r.last_success {
                    renewed.push(&l, t.unix_timestamp());
                }
                let kind = match (r.failures, r.error_kind) {
                    (0, _) => "none",
                    (_, Some(k)) => k.as_str(),
                    (_, None) => "other",
                };
                failures.push(&[("certificate", name), ("error_kind", kind)], r.failures);
            }
            for record in store.state_records(name).unwrap_or_default() {
                let Some(node) = record.strip_prefix("node-") else {
                    continue;
                };
                if !nodes.contains(node) {
                    continue;
                }
                let Ok(Some(s)) = NodeState::read(store, name, node) else {
                    continue;
                };
                let l = [("certificate", name), ("node", node)];
                if let Some(t) = s.last_success {
                    deployed.push(&l, t.unix_timestamp());
                }
                if let Some(v) = &s.version {
                    version.push(&[("certificate", name), ("node", node), ("version", v)], 1);
                }
            }
        }
    }
    let mut notify = Family::counter(
        "certctl_notify_failures_total",
        "Notify commands that failed or timed out.",
    );
    notify.push(&[], health.notify_failures);
    let mut notify_last = Family::new(
        "certctl_notify_last_failure_timestamp_seconds",
        "When a notify command last failed (unix time).",
    );
    if let Some(t) = health.notify_last_failure {
        notify_last.push(&[], t.unix_timestamp());
    }
    let mut written = Family::new(
        "certctl_textfile_written_timestamp_seconds",
        "When certctl wrote this file (unix time).",
    );
    written.push(&[], now.unix_timestamp());
    let mut out = String::new();
    for f in [
        &start,
        &end,
        &success,
        &result,
        &attempt,
        &renewed,
        &failures,
        &deployed,
        &version,
        &notify,
        &notify_last,
        &written,
    ] {
        f.write(&mut out);
    }
    out
}

/// Writes the whole textfile to `path` atomically (mode 0644): the report's
/// families (from `report`, or else kept from the file already at `path`),
/// then [`render_health`].
pub fn write_textfile(
    path: &Path,
    report: Option<&Report>,
    health: &Health,
    inventory: &Inventory,
    store: Option<&Store>,
) -> Result<(), StoreError> {
    let mut text = match report {
        Some(r) => render_prometheus(r),
        None => std::fs::read_to_string(path)
            .map(|t| report_part_of(&t))
            .unwrap_or_default(),
    };
    text.push_str(&render_health(
        health,
        inventory,
        store,
        OffsetDateTime::now_utc(),
    ));
    write_atomic(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_without_a_report_keeps_only_the_report_families() {
        let old = "\
# HELP certctl_probe_success 1 if ...
# TYPE certctl_probe_success gauge
certctl_probe_success{certificate=\"www\",node=\"n1\",sni=\"a\"} 1
# HELP certctl_run_last_result x
# TYPE certctl_run_last_result gauge
certctl_run_last_result{step=\"report\"} 1
certctl_report_timestamp_seconds 17
";
        let kept = report_part_of(old);
        assert!(kept.contains("certctl_probe_success{certificate=\"www\""));
        assert!(kept.contains("# TYPE certctl_probe_success gauge"));
        assert!(kept.contains("certctl_report_timestamp_seconds 17"));
        assert!(!kept.contains("certctl_run_last_result"), "{kept}");
    }

    const INV: &str = r#"
[account]
directory = "letsencrypt-staging"

[solvers.ns]
type = "rfc2136"
server = "192.0.2.1"
tsig_key = "certctl"
tsig_secret_env = "TSIG"

[[certificate]]
name = "www"
domains = ["www.example.test"]
solver = "ns"

[[node]]
name = "a"
address = "192.0.2.10"
"#;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).expect("t")
    }

    #[test]
    fn a_step_keeps_its_last_success_across_a_failure() {
        let mut h = Health::default();
        h.started(Step::Renew, t(10));
        h.ended(Step::Renew, t(20), true);
        h.started(Step::Renew, t(30));
        h.ended(Step::Renew, t(40), false);
        h.started(Step::Deploy, t(50));
        h.notify_failed(t(60));
        let inv = Inventory::from_str(INV, Path::new("/etc/certctl/certctl.toml")).expect("inv");
        let text = render_health(&h, &inv, None, t(70));
        for line in [
            "certctl_run_last_start_timestamp_seconds{step=\"renew\"} 30",
            "certctl_run_last_end_timestamp_seconds{step=\"renew\"} 40",
            "certctl_run_last_success_timestamp_seconds{step=\"renew\"} 20",
            "certctl_run_last_result{step=\"renew\"} 0",
            "certctl_run_last_start_timestamp_seconds{step=\"deploy\"} 50",
            "certctl_run_last_success_timestamp_seconds{step=\"deploy\"} 0",
            "# TYPE certctl_notify_failures_total counter",
            "certctl_notify_failures_total 1",
            "certctl_notify_last_failure_timestamp_seconds 60",
            "certctl_textfile_written_timestamp_seconds 70",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("certctl_run_last_end_timestamp_seconds{step=\"deploy\"}"));
    }

    #[test]
    fn renewal_and_node_records_become_series_and_the_health_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let inv = Inventory::from_str(INV, Path::new("/etc/certctl/certctl.toml")).expect("inv");
        let r = RenewalRecord {
            last_attempt: Some(t(100)),
            last_success: Some(t(50)),
            failures: 3,
            error_kind: Some(crate::ErrorKind::Dns),
            ..Default::default()
        };
        store.write_state("www", "renewal", &r).expect("renewal");
        let n = NodeState {
            version: Some("v2".into()),
            at: t(90),
            error: None,
            error_kind: None,
            last_success: Some(t(90)),
        };
        store.write_state("www", "node-a", &n).expect("node a");
        store
            .write_state("www", "node-gone", &n)
            .expect("node gone");
        let mut h = Health::default();
        h.ended(Step::Run, t(80), true);
        h.write(&store).expect("write");
        assert_eq!(Health::read(&store).expect("read"), h);
        assert!(store.loose_modes().expect("modes").is_empty());
        let text = render_health(&h, &inv, Some(&store), t(200));
        for line in [
            "certctl_renewal_last_attempt_timestamp_seconds{certificate=\"www\"} 100",
            "certctl_renewal_last_success_timestamp_seconds{certificate=\"www\"} 50",
            "certctl_renewal_consecutive_failures{certificate=\"www\",error_kind=\"dns\"} 3",
            "certctl_deploy_last_success_timestamp_seconds{certificate=\"www\",node=\"a\"} 90",
            "certctl_node_version_info{certificate=\"www\",node=\"a\",version=\"v2\"} 1",
            "certctl_run_last_success_timestamp_seconds{step=\"run\"} 80",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("node=\"gone\""),
            "a node no longer in the inventory: {text}"
        );
    }
}
