//! `certctl rotate`: the path after a key compromise, as one call. For each
//! certificate: issue with a fresh key (never `reuse_key`), deploy with the
//! usual canary, verification and rollback, and once every node that should
//! serve it is verified on the new version, revoke the older versions. A
//! node that could not be moved keeps its version, and that version is not
//! revoked unless forced; the result says which certificate is still
//! exposed where. A rotation left incomplete is finished by the next call
//! without issuing again (`state/<name>/rotation.json`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::acme::{self, RenewOptions, RenewResult, Revocation, RevocationReason};
use crate::deploy::{self, DeployOptions, NodeState, Outcome, Progress};
use crate::inventory::Inventory;
use crate::store::Store;

/// The state record of a rotation in progress.
const RECORD: &str = "rotation";

/// What to rotate and how.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Certificates to rotate; all in the inventory when empty.
    pub names: Vec<String>,
    /// The reason given to the CA for the old versions.
    pub reason: RevocationReason,
    /// Revoke old versions even where a node still has them.
    pub force: bool,
}

/// The rotation a certificate is in, as the store records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RotationRecord {
    /// The version this rotation issued.
    version: String,
    /// The reason it gives the CA.
    reason: RevocationReason,
    /// Whether every node moved and every old version is revoked.
    done: bool,
}

/// One node left on an old version.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct Exposed {
    /// The node.
    pub node: String,
    /// The version it still has, as certctl's records say (`None`: none).
    pub version: Option<String>,
    /// What the deployment did there, when it was attempted.
    pub outcome: Option<Outcome>,
}

/// An old version not revoked because nodes still have it.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct Kept {
    /// The version.
    pub version: String,
    /// The nodes that have it.
    pub nodes: Vec<String>,
}

/// An old version the CA did not revoke.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct NotRevoked {
    /// The version.
    pub version: String,
    /// Why.
    #[serde(serialize_with = "ser_error")]
    pub error: crate::acme::AcmeError,
}

fn ser_error<S: serde::Serializer, E: std::error::Error + 'static>(
    e: &E,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::error_chain(e))
}

fn ser_opt_error<S: serde::Serializer>(e: &Option<crate::Error>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.collect_str(&crate::error_chain(e)),
        None => s.serialize_none(),
    }
}

/// What a rotation did for one certificate.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct CertRotation {
    /// Certificate name.
    pub name: String,
    /// The version with the fresh key (`None`: issuance failed).
    pub new_version: Option<String>,
    /// Whether this call issued it (`false`: an earlier rotation did).
    pub issued_now: bool,
    /// Why issuance failed.
    #[serde(serialize_with = "ser_opt_error")]
    pub issue_error: Option<crate::Error>,
    /// The CA asked to wait until then before ordering again.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deferred_until: Option<OffsetDateTime>,
    /// Nodes verified on the new version.
    pub moved: Vec<String>,
    /// Nodes that should serve it and are not on the new version.
    pub exposed: Vec<Exposed>,
    /// Old versions revoked now.
    pub revoked: Vec<Revocation>,
    /// Old versions left unrevoked because nodes have them.
    pub kept: Vec<Kept>,
    /// Old versions the CA did not revoke.
    pub not_revoked: Vec<NotRevoked>,
}

impl CertRotation {
    /// Every node is on the new version and every old version is revoked.
    pub fn complete(&self) -> bool {
        self.new_version.is_some()
            && self.exposed.is_empty()
            && self.kept.is_empty()
            && self.not_revoked.is_empty()
    }
}

/// Rotates the certificates of `opts` (see the module documentation).
/// Fails as a whole only when the run cannot start (unknown names, the
/// store, the deployment plan); each certificate's failures are in its
/// [`CertRotation`].
pub async fn rotate(
    inv: &Inventory,
    store: &Store,
    opts: &RotateOptions,
    progress: &dyn Progress,
) -> Result<Vec<CertRotation>, crate::Error> {
    let names: Vec<String> = if opts.names.is_empty() {
        inv.certificates
            .iter()
            .map(|c| c.name.to_string())
            .collect()
    } else {
        opts.names.clone()
    };
    let mut rows: Vec<CertRotation> = names
        .iter()
        .map(|n| CertRotation {
            name: n.clone(),
            new_version: None,
            issued_now: false,
            issue_error: None,
            deferred_until: None,
            moved: Vec::new(),
            exposed: Vec::new(),
            revoked: Vec::new(),
            kept: Vec::new(),
            not_revoked: Vec::new(),
        })
        .collect();

    // 1. A fresh key for every certificate not already in a rotation whose
    // version is live.
    let mut to_issue = Vec::new();
    for row in &mut rows {
        let live = store.current(&row.name)?.map(|r| r.version);
        let record: Option<RotationRecord> = store.read_state(&row.name, RECORD)?;
        match record {
            Some(r) if !r.done && live.as_deref() == Some(r.version.as_str()) => {
                row.new_version = Some(r.version);
            }
            _ => to_issue.push(row.name.clone()),
        }
    }
    if !to_issue.is_empty() {
        let mut fresh = inv.clone();
        for c in &mut fresh.certificates {
            c.reuse_key = false;
        }
        let outcomes = acme::renew(
            &fresh,
            store,
            &RenewOptions {
                names: to_issue,
                force: true,
                dry_run: false,
            },
        )
        .await?;
        for o in outcomes {
            let Some(row) = rows.iter_mut().find(|r| r.name == o.name) else {
                continue;
            };
            match o.result {
                RenewResult::Issued { release, .. } => {
                    store.write_state(
                        &row.name,
                        RECORD,
                        &RotationRecord {
                            version: release.version.clone(),
                            reason: opts.reason,
                            done: false,
                        },
                    )?;
                    row.new_version = Some(release.version);
                    row.issued_now = true;
                }
                RenewResult::Failed { error, .. } => row.issue_error = Some(error),
                RenewResult::Deferred { until } => row.deferred_until = Some(until),
                _ => {}
            }
        }
    }

    // 2. Deploy what was issued, the usual way.
    let deploy_names: Vec<String> = rows
        .iter()
        .filter(|r| r.new_version.is_some())
        .map(|r| r.name.clone())
        .collect();
    let mut results = if deploy_names.is_empty() {
        Vec::new()
    } else {
        deploy::deploy(
            inv,
            store,
            &DeployOptions {
                names: deploy_names,
                ..DeployOptions::default()
            },
            progress,
        )
        .await?
    };

    // 3. Who moved; revoke what no node has any more.
    let now = OffsetDateTime::now_utc();
    for row in &mut rows {
        let Some(cert) = inv.certificate(&row.name) else {
            continue;
        };
        for node in inv.nodes_for(cert) {
            let node = node.name.as_str();
            let had = NodeState::read(store, &row.name, node)?.and_then(|s| s.version);
            if row.new_version.is_some() && had == row.new_version {
                row.moved.push(node.to_string());
            } else {
                let outcome = results
                    .iter()
                    .position(|r| r.certificate == row.name && r.node == node)
                    .map(|i| results.swap_remove(i).outcome);
                row.exposed.push(Exposed {
                    node: node.to_string(),
                    version: had,
                    outcome,
                });
            }
        }
        let Some(new) = row.new_version.clone() else {
            continue;
        };
        let already: Vec<String> = acme::revocations(store, &row.name)?
            .into_iter()
            .map(|r| r.version)
            .collect();
        for v in store.versions(&row.name)? {
            if v == new || already.contains(&v) {
                continue;
            }
            // An expired version needs no revocation.
            match store.read_release(&row.name, &v) {
                Ok(r) if r.meta.not_after > now => {}
                _ => continue,
            }
            let on: Vec<String> = row
                .exposed
                .iter()
                .filter(|e| e.version.as_deref() == Some(v.as_str()))
                .map(|e| e.node.clone())
                .collect();
            if !on.is_empty() && !opts.force {
                row.kept.push(Kept {
                    version: v,
                    nodes: on,
                });
                continue;
            }
            match acme::revoke(inv, store, &row.name, &v, opts.reason).await {
                Ok(rec) => row.revoked.push(rec),
                Err(error) => row.not_revoked.push(NotRevoked { version: v, error }),
            }
        }
        if row.complete() {
            store.write_state(
                &row.name,
                RECORD,
                &RotationRecord {
                    version: new,
                    reason: opts.reason,
                    done: true,
                },
            )?;
        }
    }
    Ok(rows)
}
