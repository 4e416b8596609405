//! The status of every certificate as the store and the inventory know it,
//! without asking the CA or any node: what `certctl list` shows. Built on the
//! typed store audit ([`Store::audit`]), so damaged files are named, never
//! guessed around.
//!
//! Certificates come in inventory order, then those only the store still
//! holds (`in_inventory: false`). Deployment records are shown only for nodes
//! that still serve the certificate (share one of its groups).

use serde::Serialize;
use time::OffsetDateTime;

use crate::acme::{self, DueReason};
use crate::deploy::NodeState;
use crate::inventory::CertificateConfig;
use crate::store::{Damage, StoreError};
use crate::{Inventory, Store};

/// One certificate of the inventory or the store. Its JSON form is
/// `certctl list --json`'s entry; optional facts are left out when unknown.
#[derive(Debug, Serialize)]
pub struct CertStatus {
    /// The certificate's name.
    pub name: String,
    /// Whether the inventory still names it.
    pub in_inventory: bool,
    /// The live version, also when it is damaged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The live version's serial (sound versions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The live version's names, else the inventory's.
    pub domains: Vec<String>,
    /// When the live version expires.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub not_after: Option<OffsetDateTime>,
    /// Whole days from `now` to `not_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// When the live version is due for renewal.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub due_at: Option<OffsetDateTime>,
    /// Why it is due then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_reason: Option<DueReason>,
    /// How many versions the store keeps.
    pub versions: usize,
    /// The last renewal error the store remembers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The deployment records of the nodes that serve it.
    pub deployments: Vec<Deployment>,
    /// The versions revoked at the CA (`certctl revoke`, `certctl rotate`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<crate::acme::Revocation>,
    /// Damaged store files; the certificate then counts as failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<Damage>,
}

/// What the store recorded about one node's copy of a certificate.
#[derive(Debug, Serialize)]
pub struct Deployment {
    /// The node's name.
    pub node: String,
    /// The record itself.
    #[serde(flatten)]
    pub state: NodeState,
}

impl CertStatus {
    /// Whether renewal is due at `now` (`false` when nothing sound is live).
    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        self.due_at.is_some_and(|at| at <= now)
    }

    /// How many recorded nodes have the live version.
    pub fn deployed_current(&self) -> usize {
        self.deployments
            .iter()
            .filter(|d| d.state.version.as_deref() == self.version.as_deref())
            .count()
    }
}

impl CertStatus {
    /// The status of every certificate of `inv` and of `store`, as of `now`.
    /// Only listing the store's certificates or their versions can fail; what
    /// is damaged is in [`CertStatus::damage`].
    pub fn list(
        inv: &Inventory,
        store: &Store,
        now: OffsetDateTime,
    ) -> Result<Vec<CertStatus>, StoreError> {
        // By name, so each lookup is one hash, not a scan (40,000 certificates).
        let by_name: std::collections::HashMap<&str, &CertificateConfig> = inv
            .certificates
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        let mut names: Vec<String> = inv
            .certificates
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        for n in store.names()? {
            if !by_name.contains_key(n.as_str()) {
                names.push(n);
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let audits = store.audit_all(&refs);
        names
            .iter()
            .zip(audits)
            .map(|(name, audit)| {
                let cfg = by_name.get(name.as_str()).copied();
                status(inv, store, cfg, name.clone(), audit, now)
            })
            .collect()
    }
}

fn status(
    inv: &Inventory,
    store: &Store,
    cfg: Option<&CertificateConfig>,
    name: String,
    audit: crate::store::Audit,
    now: OffsetDateTime,
) -> Result<CertStatus, StoreError> {
    // The live version, its files and the state records, checked whole.
    let live = audit.sound().cloned();
    let record = audit.renewal.unwrap_or_default();
    let serves = |node: &str| {
        cfg.is_some_and(|c| {
            inv.node(node)
                .is_some_and(|n| n.groups.iter().any(|g| c.groups.contains(g)))
        })
    };
    let deployments = audit
        .deployments
        .into_iter()
        .filter(|(node, _)| serves(node))
        .map(|(node, state)| Deployment { node, state })
        .collect();
    let mut s = CertStatus {
        versions: store.versions(&name)?.len(),
        revoked: acme::revocations(store, &name).unwrap_or_default(),
        name,
        in_inventory: cfg.is_some(),
        // A damaged live version still says which version it is.
        version: audit.version,
        serial: None,
        domains: cfg
            .map(|c| c.domains.iter().map(|d| d.to_string()).collect())
            .unwrap_or_default(),
        not_after: None,
        days_left: None,
        due_at: None,
        due_reason: None,
        last_error: record.last_error.clone(),
        deployments,
        damage: audit.damage,
    };
    if let Some(r) = live {
        let policy = match cfg {
            Some(c) => acme::RenewalPolicy::for_certificate(inv, c),
            None => acme::RenewalPolicy {
                ari: inv.renewal.ari,
                renew_before: inv.renewal.renew_before,
            },
        };
        let ari = record.ari_for(&r.meta.serial);
        let (at, why, _) = acme::due_at(policy, &r.meta, ari, now);
        s.days_left = Some((r.meta.not_after - now).whole_days());
        s.not_after = Some(r.meta.not_after);
        s.due_at = Some(at);
        s.due_reason = Some(why);
        s.domains = r.meta.domains;
        s.serial = Some(r.meta.serial);
        s.version = Some(r.version);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::store::Release;

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
groups = ["edge"]

[[certificate]]
name = "api"
domains = ["api.example.test"]
solver = "ns"
groups = ["core"]

[[node]]
name = "a"
address = "192.0.2.10"
groups = ["edge"]

[[node]]
name = "b"
address = "192.0.2.11"
groups = ["core"]
"#;

    fn inventory(text: &str) -> Inventory {
        Inventory::from_str(text, Path::new("/etc/certctl/certctl.toml")).expect("inventory")
    }

    /// A real self-signed certificate for `domain`, installed as `name`.
    fn installed(store: &Store, name: &str, domain: &str) -> Release {
        crate::store::install_self_signed(store, name, &[domain])
    }

    fn record(version: &str, error: Option<&str>) -> NodeState {
        NodeState {
            version: Some(version.into()),
            at: OffsetDateTime::now_utc(),
            error: error.map(String::from),
            error_kind: None,
            last_success: None,
        }
    }

    #[test]
    fn inventory_certificates_come_first_then_those_only_the_store_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        installed(&store, "old", "old.example.test");
        let s = CertStatus::list(&inventory(INV), &store, OffsetDateTime::now_utc()).expect("list");
        let names: Vec<(&str, bool)> = s
            .iter()
            .map(|c| (c.name.as_str(), c.in_inventory))
            .collect();
        assert_eq!(names, [("www", true), ("api", true), ("old", false)]);
        // Not issued: the inventory's names, no version, no due date.
        assert_eq!(s[0].domains, ["www.example.test"]);
        assert_eq!(
            (s[0].version.as_deref(), s[0].due_at, s[0].versions),
            (None, None, 0)
        );
        assert!(!s[0].is_due(OffsetDateTime::now_utc()));
        // Only in the store: its own names and dates.
        assert_eq!(s[2].domains, ["old.example.test"]);
        assert!(s[2].due_at.is_some());
    }

    #[test]
    fn a_live_version_gives_expiry_days_left_and_the_due_date_of_the_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = installed(&store, "www", "www.example.test");
        let now = r.meta.not_after - time::Duration::days(10) - time::Duration::hours(1);
        let s = CertStatus::list(&inventory(INV), &store, now).expect("list");
        let www = &s[0];
        assert_eq!(www.version.as_deref(), Some(r.version.as_str()));
        assert_eq!(www.serial.as_deref(), Some(r.meta.serial.as_str()));
        assert_eq!(www.not_after, Some(r.meta.not_after));
        assert_eq!(www.days_left, Some(10));
        assert_eq!(www.versions, 1);
        let policy = acme::RenewalPolicy {
            ari: true,
            renew_before: None,
        };
        let (at, why, _) = acme::due_at(policy, &r.meta, None, now);
        assert_eq!(
            (www.due_at, www.due_reason.as_ref()),
            (Some(at), Some(&why))
        );
        assert!(www.is_due(at) && !www.is_due(at - time::Duration::seconds(1)));
        // renew_before in the inventory moves the date.
        let text = INV.replacen(
            "groups = [\"edge\"]",
            "groups = [\"edge\"]\nrenew_before = \"30d\"",
            1,
        );
        let s = CertStatus::list(&inventory(&text), &store, now).expect("list");
        assert_eq!(
            s[0].due_at,
            Some(r.meta.not_after - time::Duration::days(30))
        );
    }

    #[test]
    fn deployment_records_are_shown_only_for_nodes_that_still_serve_the_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = installed(&store, "www", "www.example.test");
        let write =
            |node: &str, state: &NodeState| state.write(&store, "www", node).expect("write record");
        write("a", &record(&r.version, None));
        // Node b serves only `api`; node gone is no longer in the inventory.
        write("b", &record(&r.version, None));
        write("gone", &record(&r.version, None));
        let s = CertStatus::list(&inventory(INV), &store, OffsetDateTime::now_utc()).expect("list");
        let nodes: Vec<&str> = s[0].deployments.iter().map(|d| d.node.as_str()).collect();
        assert_eq!(nodes, ["a"]);
        assert_eq!(s[0].deployed_current(), 1);
        write("a", &record("older", Some("nginx -t failed")));
        let s = CertStatus::list(&inventory(INV), &store, OffsetDateTime::now_utc()).expect("list");
        assert_eq!(s[0].deployed_current(), 0);
        assert_eq!(
            s[0].deployments[0].state.error.as_deref(),
            Some("nginx -t failed")
        );
    }

    #[test]
    fn a_damaged_live_version_keeps_its_version_name_and_gets_no_due_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = installed(&store, "www", "www.example.test");
        std::fs::remove_file(r.dir.join("cert.pem")).expect("remove cert.pem");
        let s = CertStatus::list(&inventory(INV), &store, OffsetDateTime::now_utc()).expect("list");
        let www = &s[0];
        assert_eq!(www.version.as_deref(), Some(r.version.as_str()));
        assert_eq!(
            (www.serial.as_deref(), www.due_at, www.not_after),
            (None, None, None)
        );
        assert_eq!(www.damage.len(), 1, "{:?}", www.damage);
        assert_eq!(www.damage[0].path, r.dir.join("cert.pem"));
    }

    #[test]
    fn json_has_the_keys_of_list_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = installed(&store, "www", "www.example.test");
        record(&r.version, None)
            .write(&store, "www", "a")
            .expect("write");
        let s = CertStatus::list(&inventory(INV), &store, OffsetDateTime::now_utc()).expect("list");
        let v = serde_json::to_value(&s).expect("json");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().expect("object").keys().cloned().collect()
        };
        let mut www = keys(&v[0]);
        www.sort();
        assert_eq!(
            www,
            [
                "days_left",
                "deployments",
                "domains",
                "due_at",
                "due_reason",
                "in_inventory",
                "name",
                "not_after",
                "serial",
                "version",
                "versions"
            ]
        );
        let mut dep = keys(&v[0]["deployments"][0]);
        dep.sort();
        assert_eq!(dep, ["at", "error", "node", "version"]);
        // Unknown facts are left out, not null.
        let mut api = keys(&v[1]);
        api.sort();
        assert_eq!(
            api,
            ["deployments", "domains", "in_inventory", "name", "versions"]
        );
        assert!(
            v[0]["due_at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{v}"
        );
    }
}
