//! The steps on one node: inspect, activate (stage, swap, validate, reload,
//! prune), verify, restore; and rollback to the previous version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::inspect::probe::{ProbeFailure, Prober};
use crate::inventory::NodeConfig;
use crate::secret::Secret;

use super::script::{self, Activation, CertActivation, Inspected, Live, Marker, Upload};
use super::transport::{ScriptOutput, Transport};
use super::{NodeError, Outcome};

/// How long verification polls for the new leaf after a reload.
const VERIFY_FOR: Duration = Duration::from_secs(5);
/// Rounds in a row that must all show the new leaf.
const CONFIRM_ROUNDS: u32 = 3;
/// Pause between confirmation rounds.
const CONFIRM_GAP: Duration = Duration::from_millis(50);

/// A stored version, loaded once and shared by every node.
pub(crate) struct CertJob {
    pub(crate) name: String,
    pub(crate) version: String,
    /// SNI names to verify, one per certificate name.
    pub(crate) snis: Vec<String>,
    pub(crate) key: Secret,
    /// cert, chain, fullchain.
    pub(crate) public: [Vec<u8>; 3],
    /// SHA-256 hex of privkey, cert, chain, fullchain.
    pub(crate) sums: [String; 4],
    /// The leaf, DER.
    pub(crate) leaf: Vec<u8>,
}

impl CertJob {
    fn sizes(&self) -> [usize; 4] {
        [
            self.key.expose().len(),
            self.public[0].len(),
            self.public[1].len(),
            self.public[2].len(),
        ]
    }

    fn append_payload(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.key.expose());
        for p in &self.public {
            buf.extend_from_slice(p);
        }
    }

    fn complete_on(&self, found: &Inspected) -> bool {
        crate::store::RELEASE_FILES
            .iter()
            .zip(&self.sums)
            .all(|(f, sum)| found.sums.get(&format!("{f}.pem")) == Some(sum))
    }
}

/// The leaf DER of the first certificate in `pem`.
pub(crate) fn leaf_der(pem: &[u8]) -> Option<Vec<u8>> {
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .and_then(|r| r.ok())
        .map(|d| d.to_vec())
}

/// SHA-256, lower-case hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What one node needs to run its steps.
pub(crate) struct NodeCtx<'a> {
    pub(crate) node: &'a NodeConfig,
    pub(crate) transport: &'a dyn Transport,
    pub(crate) prober: &'a Prober,
    pub(crate) keep_versions: usize,
    pub(crate) force: bool,
}

fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn adopted_name() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "adopted-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl NodeCtx<'_> {
    fn name(&self) -> String {
        self.node.name.to_string()
    }

    fn base(&self) -> String {
        self.node.base_dir.to_string_lossy().into_owned()
    }

    fn script_error(&self, out: &ScriptOutput) -> NodeError {
        NodeError::Script {
            node: self.name(),
            status: out.status,
            stderr: out.stderr_text(),
        }
    }

    fn step_error(&self, step: String, path: String, out: &ScriptOutput) -> NodeError {
        let stderr = out.stderr_text();
        if stderr.contains("No space left on device") || stderr.contains("Disk quota exceeded") {
            NodeError::NoSpace {
                node: self.name(),
                path,
            }
        } else {
            NodeError::Step {
                node: self.name(),
                step,
                path,
                stderr,
            }
        }
    }

    /// Probes every SNI name of `job` once; true if all present its leaf.
    async fn serves(&self, job: &CertJob) -> bool {
        let addr = self.node.probe_address();
        let probes = job.snis.iter().map(|sni| self.prober.probe(&addr, sni));
        futures::future::join_all(probes).await.iter().all(|r| {
            r.as_ref()
                .ok()
                .and_then(|s| s.leaf())
                .is_some_and(|l| l.as_ref() == job.leaf.as_slice())
        })
    }

    /// Polls until every SNI name presents `leaf`, or the deadline. A reload
    /// is asynchronous and the old worker keeps accepting for a moment after
    /// the new one starts, so one good answer is not enough: the new leaf
    /// must be seen on [`CONFIRM_ROUNDS`] rounds in a row, [`CONFIRM_GAP`] apart.
    async fn verify(&self, snis: &[String], leaf: &[u8]) -> Result<(), NodeError> {
        let addr = self.node.probe_address();
        let deadline = Instant::now() + VERIFY_FOR;
        let mut delay = Duration::from_millis(20);
        let mut good_rounds = 0;
        loop {
            let results =
                futures::future::join_all(snis.iter().map(|sni| self.prober.probe(&addr, sni)))
                    .await;
            let mut last: Option<NodeError> = None;
            for (sni, r) in snis.iter().zip(results) {
                match r {
                    Ok(s) if s.leaf().is_some_and(|l| l.as_ref() == leaf) => {}
                    Ok(_) => {
                        last = Some(NodeError::StillServingOld {
                            node: self.name(),
                            sni: sni.clone(),
                            address: addr.clone(),
                        })
                    }
                    Err(failure) => {
                        last = Some(NodeError::Probe {
                            node: self.name(),
                            sni: sni.clone(),
                            failure,
                        })
                    }
                }
            }
            match last {
                None => {
                    good_rounds += 1;
                    if good_rounds >= CONFIRM_ROUNDS {
                        return Ok(());
                    }
                    tokio::time::sleep(CONFIRM_GAP).await;
                }
                Some(e) if Instant::now() + delay > deadline => return Err(e),
                Some(_) => {
                    good_rounds = 0;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(400));
                }
            }
        }
    }

    /// Deploys `jobs` to this node; one outcome per job, in order.
    pub(crate) async fn deploy(&self, jobs: &[Arc<CertJob>]) -> Vec<Outcome> {
        let base = self.base();
        let pairs: Vec<(&str, &str)> = jobs
            .iter()
            .map(|j| (j.name.as_str(), j.version.as_str()))
            .collect();
        let inspect_script = script::inspect(&base, &pairs);
        // The first look and the probes of what is served now, at once.
        let (looked, serving) = tokio::join!(
            self.transport.run(&inspect_script, b""),
            futures::future::join_all(jobs.iter().map(|j| self.serves(j)))
        );
        let found = match looked {
            Ok(out) if out.status == Some(0) => script::parse_inspect(&out.stdout_text()),
            Ok(out) => return fail_all(jobs.len(), || self.script_error(&out)),
            Err(e) => return fail_all(jobs.len(), || e.clone().into()),
        };

        let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
        let mut work: Vec<(usize, CertActivation)> = Vec::new();
        let mut payload = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let seen = found.get(&job.name).cloned().unwrap_or_default();
            let complete = job.complete_on(&seen);
            let linked = seen.live.version() == Some(job.version.as_str());
            if linked && complete && serving[i] && !self.force {
                outcomes[i] = Some(Outcome::Unchanged {
                    version: job.version.clone(),
                });
                continue;
            }
            let (previous, adopt_as) = match &seen.live {
                Live::Link(t) => (Some(t.clone()), None),
                Live::Missing => (None, None),
                Live::Dir => {
                    let a = adopted_name();
                    (Some(script::link_target(&job.name, &a)), Some(a))
                }
                Live::Other => {
                    outcomes[i] = Some(Outcome::Failed {
                        error: NodeError::LiveNotLink {
                            node: self.name(),
                            path: format!("{base}/live/{}", job.name),
                        },
                    });
                    continue;
                }
            };
            let upload = (!complete).then(|| {
                job.append_payload(&mut payload);
                Upload { sizes: job.sizes() }
            });
            let prev_version = seen.live.version().map(str::to_string);
            let prune = prune_list(
                &seen.versions,
                &job.version,
                prev_version.as_deref(),
                self.keep_versions,
            );
            work.push((
                i,
                CertActivation {
                    name: job.name.clone(),
                    version: job.version.clone(),
                    upload,
                    adopt_as,
                    previous,
                    prune,
                },
            ));
        }
        if work.is_empty() {
            return outcomes.into_iter().flatten().collect();
        }

        let activation = Activation {
            base: base.clone(),
            token: token(),
            chown: match (&self.node.owner, &self.node.group) {
                (Some(o), Some(g)) => Some(format!("{o}:{g}")),
                (Some(o), None) => Some(o.clone()),
                (None, Some(g)) => Some(format!(":{g}")),
                (None, None) => None,
            },
            validate: self.node.validate.clone(),
            reload: self.node.reload.clone(),
            certs: work.iter().map(|(_, c)| c.clone()).collect(),
        };
        let ran = self
            .transport
            .run(&script::activate(&activation), &payload)
            .await;
        drop(payload);
        let failure: Option<(NodeError, bool)> = match ran {
            Err(e) => Some((e.into(), false)),
            Ok(out) => match script::marker(&out.stdout_text()) {
                Marker::Ok(_) => None,
                Marker::Fail { step, path } => Some((self.step_error(step, path, &out), false)),
                Marker::Validate(output) => Some((
                    NodeError::Validate {
                        node: self.name(),
                        command: self.node.validate.clone(),
                        output,
                    },
                    true,
                )),
                Marker::Reload(output) => Some((
                    NodeError::Reload {
                        node: self.name(),
                        command: self.node.reload.clone(),
                        output,
                    },
                    true,
                )),
                Marker::None => Some((self.script_error(&out), false)),
            },
        };
        if let Some((err, rolled_back)) = failure {
            for (i, c) in &work {
                let e = err.clone();
                outcomes[*i] = Some(if rolled_back {
                    Outcome::RolledBack {
                        attempted: c.version.clone(),
                        version: previous_version(c),
                        reason: e,
                    }
                } else {
                    Outcome::Failed { error: e }
                });
            }
            return outcomes.into_iter().flatten().collect();
        }

        // Verify every certificate at once.
        let checks = work
            .iter()
            .map(|(i, _)| self.verify(&jobs[*i].snis, &jobs[*i].leaf));
        let verified = futures::future::join_all(checks).await;
        let mut to_restore = Vec::new();
        let mut reasons = BTreeMap::new();
        for ((i, c), v) in work.iter().zip(verified) {
            match v {
                Ok(()) => {
                    outcomes[*i] = Some(Outcome::Deployed {
                        from: previous_version(c),
                        to: c.version.clone(),
                    })
                }
                // Nothing was swapped (the link already pointed there).
                Err(e) if previous_version(c).as_deref() == Some(c.version.as_str()) => {
                    outcomes[*i] = Some(Outcome::Failed { error: e })
                }
                Err(e) => {
                    to_restore.push(c.clone());
                    reasons.insert(*i, e);
                }
            }
        }
        if to_restore.is_empty() {
            return outcomes.into_iter().flatten().collect();
        }
        tracing::warn!(node = %self.node.name, "verification failed; putting the previous certificate back");
        let restore = script::restore(&base, &token(), &to_restore, None, &self.node.reload, &[]);
        let restored = match self.transport.run(&restore, b"").await {
            Ok(out) => match script::marker(&out.stdout_text()) {
                Marker::Ok(_) => Ok(()),
                Marker::Fail { step, path } => Err(format!("{step} {path}")),
                Marker::Reload(o) => Err(format!("reload: {o}")),
                _ => Err(self.script_error(&out).to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        for (i, c) in &work {
            let Some(reason) = reasons.remove(i) else {
                continue;
            };
            outcomes[*i] = Some(match &restored {
                Ok(()) => Outcome::RolledBack {
                    attempted: c.version.clone(),
                    version: previous_version(c),
                    reason,
                },
                Err(step) => Outcome::Failed {
                    error: NodeError::RestoreFailed {
                        node: self.name(),
                        step: step.clone(),
                        cause: Box::new(reason),
                    },
                },
            });
        }
        outcomes.into_iter().flatten().collect()
    }

    /// Points `live/<name>` back at the version before the live one, then
    /// validates, reloads and verifies.
    pub(crate) async fn rollback(&self, name: &str, snis: &[String]) -> Outcome {
        let base = self.base();
        let looked = self
            .transport
            .run(&script::inspect(&base, &[(name, "")]), b"")
            .await;
        let seen = match looked {
            Ok(out) if out.status == Some(0) => script::parse_inspect(&out.stdout_text())
                .remove(name)
                .unwrap_or_default(),
            Ok(out) => {
                return Outcome::Failed {
                    error: self.script_error(&out),
                }
            }
            Err(e) => return Outcome::Failed { error: e.into() },
        };
        let Some(current) = seen.live.version().map(str::to_string) else {
            return Outcome::Failed {
                error: NodeError::NoPrevious {
                    node: self.name(),
                    name: name.into(),
                    current: format!("{:?}", seen.live).to_lowercase(),
                },
            };
        };
        let older = seen
            .versions
            .iter()
            .skip_while(|v| **v != current)
            .skip(1)
            .find(|v| !v.starts_with('.'));
        let Some(previous) = older.cloned() else {
            return Outcome::Failed {
                error: NodeError::NoPrevious {
                    node: self.name(),
                    name: name.into(),
                    current,
                },
            };
        };
        let Live::Link(current_target) = &seen.live else {
            unreachable!("a version implies a link")
        };
        let target = |t: String| CertActivation {
            name: name.into(),
            version: previous.clone(),
            upload: None,
            adopt_as: None,
            previous: Some(t),
            prune: Vec::new(),
        };
        let go = [target(script::link_target(name, &previous))];
        let undo = [target(current_target.clone())];
        let run = self
            .transport
            .run(
                &script::restore(
                    &base,
                    &token(),
                    &go,
                    Some(&self.node.validate),
                    &self.node.reload,
                    &undo,
                ),
                b"",
            )
            .await;
        let cert_pem = match run {
            Err(e) => return Outcome::Failed { error: e.into() },
            Ok(out) => match script::marker(&out.stdout_text()) {
                Marker::Ok(pem) => pem,
                Marker::Fail { step, path } => {
                    return Outcome::Failed {
                        error: self.step_error(step, path, &out),
                    }
                }
                Marker::Validate(output) => {
                    return Outcome::Failed {
                        error: NodeError::Validate {
                            node: self.name(),
                            command: self.node.validate.clone(),
                            output,
                        },
                    }
                }
                Marker::Reload(output) => {
                    return Outcome::Failed {
                        error: NodeError::Reload {
                            node: self.name(),
                            command: self.node.reload.clone(),
                            output,
                        },
                    }
                }
                Marker::None => {
                    return Outcome::Failed {
                        error: self.script_error(&out),
                    }
                }
            },
        };
        let verified = match leaf_der(cert_pem.as_bytes()) {
            Some(leaf) => self.verify(snis, &leaf).await,
            None => Err(NodeError::Probe {
                node: self.name(),
                sni: snis.first().cloned().unwrap_or_default(),
                failure: ProbeFailure::Handshake {
                    address: self.node.probe_address(),
                    sni: String::new(),
                    reason: format!("version {previous} on the node has no readable cert.pem"),
                },
            }),
        };
        match verified {
            Ok(()) => Outcome::Deployed {
                from: Some(current),
                to: previous,
            },
            Err(e) => {
                let back = script::restore(&base, &token(), &undo, None, &self.node.reload, &[]);
                let _ = self.transport.run(&back, b"").await;
                Outcome::Failed { error: e }
            }
        }
    }
}

fn previous_version(c: &CertActivation) -> Option<String> {
    c.previous
        .as_deref()
        .map(|t| Live::Link(t.to_string()))
        .and_then(|l| l.version().map(str::to_string))
}

fn fail_all(n: usize, e: impl Fn() -> NodeError) -> Vec<Outcome> {
    (0..n).map(|_| Outcome::Failed { error: e() }).collect()
}

/// Versions to delete: all but the newest `keep` (counting the new one),
/// never the new one nor the previous one; only names certctl could have
/// made (dot-names are temporary and cleaned by staging).
pub(crate) fn prune_list(
    newest_first: &[String],
    new: &str,
    previous: Option<&str>,
    keep: usize,
) -> Vec<String> {
    newest_first
        .iter()
        .filter(|v| v.as_str() != new && !v.starts_with('.'))
        .skip(keep.max(1).saturating_sub(1))
        .filter(|v| Some(v.as_str()) != previous)
        .filter(|v| crate::names::check_label(v).is_ok())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_newest_live_and_previous() {
        let v: Vec<String> = ["v4", "v3", "v2", "v1", "bootstrap"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // new v5, previous v1 (rolled back earlier), keep 3 → keep v5 v4 v3 + v1
        assert_eq!(prune_list(&v, "v5", Some("v1"), 3), ["v2", "bootstrap"]);
        // keep 1 still keeps the previous one
        assert_eq!(
            prune_list(&v, "v5", Some("v4"), 1),
            ["v3", "v2", "v1", "bootstrap"]
        );
        // redeploying a version already in the archive does not count it twice
        assert_eq!(
            prune_list(&v, "v4", Some("v3"), 2),
            ["v2", "v1", "bootstrap"]
        );
    }
}
