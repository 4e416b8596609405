//! The steps on one node: inspect, activate (stage, swap, validate, reload,
//! prune), verify, restore; and rollback to the previous version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::inspect::probe::Prober;
use crate::inventory::NodeConfig;
use crate::secret::Secret;
use crate::store::NodeFence;

use super::script::{
    self, version_of, CertDeploy, CertStep, DeployScript, Live, Marker, NodeStep, Relink,
};
use super::transport::{ScriptOutput, Transport};
use super::{NodeError, Outcome, RestoreFailure};

/// How long verification polls for the new leaf after a reload.
const VERIFY_FOR: Duration = Duration::from_secs(5);
/// Rounds in a row that must all show the new leaf.
const CONFIRM_ROUNDS: u32 = 3;
/// Pause between confirmation rounds.
const CONFIRM_GAP: Duration = Duration::from_millis(40);
/// Names probed by one confirmation round.
const CONFIRM_SAMPLE: usize = 8;

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
    /// The four files, in payload order.
    fn files(&self) -> [&[u8]; 4] {
        [
            self.key.expose(),
            &self.public[0],
            &self.public[1],
            &self.public[2],
        ]
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

/// Probes every SNI name of `job` at `addr` once; true if all present its leaf.
pub(crate) async fn serves(prober: &Prober, addr: &str, job: &CertJob) -> bool {
    let probes = job.snis.iter().map(|sni| prober.probe(addr, sni));
    futures::future::join_all(probes).await.iter().all(|r| {
        r.as_ref()
            .ok()
            .and_then(|s| s.leaf())
            .is_some_and(|l| l.as_ref() == job.leaf.as_slice())
    })
}

/// What one node needs to run its steps.
pub(crate) struct NodeCtx<'a> {
    pub(crate) node: &'a NodeConfig,
    pub(crate) transport: &'a dyn Transport,
    pub(crate) prober: &'a Prober,
    pub(crate) keep_versions: usize,
    pub(crate) force: bool,
    /// The store lock's fencing token, carried by every script that
    /// changes the node.
    pub(crate) fence: Option<NodeFence>,
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

    fn fenced(&self, seen: i64, path: String) -> NodeError {
        NodeError::Fenced {
            node: self.name(),
            path,
            seen,
            ours: self.fence.as_ref().map_or(0, |f| f.revision),
        }
    }

    fn step_error(&self, step: NodeStep, path: String, out: &ScriptOutput) -> NodeError {
        let stderr = out.stderr_text();
        if step == NodeStep::Foreign {
            return NodeError::NotOurs {
                node: self.name(),
                path,
            };
        }
        // The shell's message is the only signal of a full disk (the tools
        // exit 1 for every failure), so it is read here and nowhere else.
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

    /// Says what the deploy script adopted, and warns (once per certificate
    /// and run) that certbot still manages a lineage certctl now serves.
    fn tell_ownership(&self, stdout: &str) {
        use std::sync::{Mutex, OnceLock};
        static CERTBOT_WARNED: OnceLock<Mutex<std::collections::BTreeSet<String>>> =
            OnceLock::new();
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("@adopted ") {
                let (name, kept) = rest.split_once(' ').unwrap_or((rest, ""));
                tracing::info!(
                    node = %self.node.name,
                    "live/{name} was not made by certctl: copied as an adopted version \
                     (kept for rollback, never pruned); the original is kept at {kept}"
                );
            } else if let Some(rest) = line.strip_prefix("@certbot ") {
                let (name, conf) = rest.split_once(' ').unwrap_or((rest, ""));
                let first = CERTBOT_WARNED
                    .get_or_init(Default::default)
                    .lock()
                    .map(|mut w| w.insert(name.to_string()))
                    .unwrap_or(true);
                if first {
                    tracing::warn!(
                        node = %self.node.name,
                        "certbot still manages the lineage `{name}` ({conf} exists): stop its \
                         renewals, or they fight certctl's: move that file aside (e.g. to \
                         {conf}.disabled; certbot reads only *.conf) or disable certbot's timer \
                         if it manages nothing else. Do not run `certbot delete` on this \
                         lineage now: it removes the files under live/{name}/ and the whole \
                         archive/{name}/, which hold certctl's versions"
                    );
                }
            }
        }
    }

    /// Polls until every SNI name of every certificate presents its new
    /// leaf, or the deadline; one result per certificate. A reload is
    /// asynchronous and the old worker keeps accepting for a moment after
    /// the new one starts, so one good answer is not enough: once every name
    /// has shown its new leaf, [`CONFIRM_ROUNDS`] rounds in a row,
    /// [`CONFIRM_GAP`] apart, must show only new leaves. Which worker answers
    /// is a property of the node, not of a name, so with many names a
    /// confirmation round probes [`CONFIRM_SAMPLE`] of them, in turn.
    async fn verify(&self, certs: &[(&[String], &[u8])]) -> Vec<Result<(), NodeError>> {
        let addr = self.node.probe_address();
        let pairs: Vec<(usize, &str)> = certs
            .iter()
            .enumerate()
            .flat_map(|(i, (snis, _))| snis.iter().map(move |s| (i, s.as_str())))
            .collect();
        let n = pairs.len();
        let started = Instant::now();
        let deadline = started + VERIFY_FOR;
        let mut good = vec![false; n];
        let mut errors: Vec<Option<NodeError>> = vec![None; n];
        let mut good_rounds = 0;
        let mut delay = Duration::from_millis(20);
        let mut turn = 0;
        loop {
            let round_started = Instant::now();
            let probe: Vec<usize> = if good.contains(&false) {
                (0..n).filter(|&i| !good[i]).collect()
            } else if n <= CONFIRM_SAMPLE {
                (0..n).collect()
            } else {
                turn += CONFIRM_SAMPLE;
                (turn..turn + CONFIRM_SAMPLE).map(|k| k % n).collect()
            };
            let results = futures::future::join_all(
                probe.iter().map(|&i| self.prober.probe(&addr, pairs[i].1)),
            )
            .await;
            for (&i, r) in probe.iter().zip(results) {
                let (cert, sni) = pairs[i];
                let e = match r {
                    Ok(s) if s.leaf().is_some_and(|l| l.as_ref() == certs[cert].1) => None,
                    Ok(_) => Some(NodeError::StillServingOld {
                        node: self.name(),
                        sni: sni.to_string(),
                        address: addr.clone(),
                    }),
                    Err(failure) => Some(NodeError::Probe {
                        node: self.name(),
                        sni: sni.to_string(),
                        failure,
                    }),
                };
                good[i] = e.is_none();
                errors[i] = e;
            }
            if !good.contains(&false) {
                good_rounds += 1;
                if good_rounds >= CONFIRM_ROUNDS {
                    return vec![Ok(()); certs.len()];
                }
                tokio::time::sleep(CONFIRM_GAP).await;
                continue;
            }
            good_rounds = 0;
            // Only a round begun after the deadline fails: under load a
            // round may wait for probe slots well past it.
            if round_started + delay > deadline {
                let mut out = vec![Ok(()); certs.len()];
                for (i, e) in errors.into_iter().enumerate() {
                    if let (Some(e), Ok(())) = (e, &out[pairs[i].0]) {
                        out[pairs[i].0] = Err(e);
                    }
                }
                return out;
            }
            tokio::time::sleep(delay).await;
            // A reload normally lands within tens of milliseconds: poll
            // finely for a while, then gently.
            let cap = if started.elapsed() < Duration::from_millis(1500) {
                Duration::from_millis(40)
            } else {
                Duration::from_millis(400)
            };
            delay = (delay * 2).min(cap);
        }
    }

    /// Deploys `jobs` to this node with one script; `served[i]` says whether
    /// the node was just seen serving job `i`'s leaf for every SNI name. One
    /// outcome per job, in order.
    pub(crate) async fn deploy(&self, jobs: &[Arc<CertJob>], served: &[bool]) -> Vec<Outcome> {
        let base = self.base();
        let files: Vec<(&str, &str, [&[u8]; 4])> = jobs
            .iter()
            .map(|j| (j.name.as_str(), j.version.as_str(), j.files()))
            .collect();
        // Holds the private keys: wiped when dropped.
        let payload = match script::payload(&files) {
            Ok(p) => p,
            Err(e) => {
                let source = Arc::new(e);
                return fail_all(jobs.len(), || NodeError::Payload {
                    node: self.name(),
                    source: source.clone(),
                });
            }
        };
        let certs = jobs
            .iter()
            .zip(served)
            .map(|(j, s)| CertDeploy {
                name: j.name.clone(),
                version: j.version.clone(),
                served: *s,
                sums: j.sums.clone(),
            })
            .collect();
        let d = DeployScript {
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
            keep: self.keep_versions,
            adopt_as: adopted_name(),
            force: self.force,
            certs,
            fence: self.fence.clone(),
        };
        let started = Instant::now();
        let ran = self
            .transport
            .run(&script::deploy(&d), payload.expose())
            .await;
        drop(payload);
        let script_took = started.elapsed();
        tracing::debug!(elapsed = ?script_took, "deploy script done");
        let out = match ran {
            Ok(out) => out,
            Err(e) => return fail_all(jobs.len(), || e.clone().into()),
        };
        let text = out.stdout_text();
        let times = script::parse_times(&text);
        self.tell_ownership(&text);
        let steps = script::parse_steps(&text);
        let failure: Option<(NodeError, bool)> = match script::marker(&text) {
            Marker::Ok(_) => None,
            Marker::Fail { step, path } => Some((self.step_error(step, path, &out), false)),
            Marker::Validate(output) => Some((
                NodeError::Validate {
                    node: self.name(),
                    command: self.node.validate.clone(),
                    output: said(output),
                },
                true,
            )),
            Marker::Reload(output) => Some((
                NodeError::Reload {
                    node: self.name(),
                    command: self.node.reload.clone(),
                    output: said(output),
                },
                true,
            )),
            Marker::Fenced { seen, path } => Some((self.fenced(seen, path), false)),
            Marker::None => Some((self.script_error(&out), false)),
        };

        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(jobs.len());
        // (job index, previous link target) of the certificates linked anew.
        let mut linked: Vec<(usize, Option<String>)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let outcome = match (steps.get(&job.name), &failure) {
                (Some(CertStep::Unchanged), _) => Some(Outcome::Unchanged {
                    version: job.version.clone(),
                }),
                (Some(CertStep::Other), _) => Some(Outcome::Failed {
                    error: NodeError::LiveNotLink {
                        node: self.name(),
                        path: format!("{base}/live/{}", job.name),
                    },
                }),
                (Some(CertStep::Activate(prev)), Some((e, true))) => Some(Outcome::RolledBack {
                    attempted: job.version.clone(),
                    version: prev.as_deref().and_then(version_of).map(str::to_string),
                    reason: e.clone(),
                }),
                (_, Some((e, _))) => Some(Outcome::Failed { error: e.clone() }),
                (Some(CertStep::Activate(prev)), None) => {
                    linked.push((i, prev.clone()));
                    None
                }
                (None, None) => Some(Outcome::Failed {
                    error: self.script_error(&out),
                }),
            };
            outcomes.push(outcome);
        }
        if linked.is_empty() {
            return outcomes.into_iter().flatten().collect();
        }

        // Verify every linked certificate at once.
        let checks: Vec<(&[String], &[u8])> = linked
            .iter()
            .map(|(i, _)| (jobs[*i].snis.as_slice(), jobs[*i].leaf.as_slice()))
            .collect();
        let started = Instant::now();
        let verified = self.verify(&checks).await;
        tracing::debug!(elapsed = ?started.elapsed(), "verified");
        // One line with every phase, for the fleet benchmark: the script as
        // certctl waited for it, and its steps by the node's clock.
        if let Some(t) = times {
            tracing::debug!(
                script = ?script_took,
                stage = ?t.stage,
                validate = ?t.validate,
                reload = ?t.reload,
                verify = ?started.elapsed(),
                "phases"
            );
        }
        let mut to_restore = Vec::new();
        let mut reasons = BTreeMap::new();
        for ((i, prev), v) in linked.iter().zip(verified) {
            let job = &jobs[*i];
            let from = prev.as_deref().and_then(version_of).map(str::to_string);
            match v {
                Ok(()) => {
                    outcomes[*i] = Some(Outcome::Deployed {
                        from,
                        to: job.version.clone(),
                    })
                }
                // The link already pointed there: nothing to put back.
                Err(e) if from.as_deref() == Some(job.version.as_str()) => {
                    outcomes[*i] = Some(Outcome::Failed { error: e })
                }
                Err(e) => {
                    to_restore.push(Relink {
                        name: job.name.clone(),
                        target: prev.clone(),
                    });
                    reasons.insert(*i, (e, from));
                }
            }
        }
        if to_restore.is_empty() {
            return outcomes.into_iter().flatten().collect();
        }
        tracing::warn!(node = %self.node.name, "verification failed; putting the previous certificate back");
        let restore = script::restore(
            &base,
            &token(),
            &to_restore,
            None,
            &self.node.reload,
            &[],
            self.fence.as_ref(),
        );
        let restored = match self.transport.run(&restore, b"").await {
            Ok(out) => match script::marker(&out.stdout_text()) {
                Marker::Ok(_) => Ok(()),
                Marker::Fail { step, path } => Err(RestoreFailure::Step { step, path }),
                Marker::Reload(output) => Err(RestoreFailure::Reload { output }),
                Marker::Fenced { seen, path } => Err(RestoreFailure::Fenced { seen, path }),
                _ => Err(RestoreFailure::Script {
                    status: out.status,
                    stderr: out.stderr_text(),
                }),
            },
            Err(e) => Err(e.into()),
        };
        for (i, (reason, from)) in reasons {
            outcomes[i] = Some(match &restored {
                Ok(()) => Outcome::RolledBack {
                    attempted: jobs[i].version.clone(),
                    version: from,
                    reason,
                },
                Err(failure) => Outcome::Failed {
                    error: NodeError::RestoreFailed {
                        node: self.name(),
                        failure: Box::new(failure.clone()),
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
            Ok(out) if out.status.success() => script::parse_inspect(&out.stdout_text())
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
        let current_target = match &seen.live {
            Live::Link(t) => t.clone(),
            _ => script::link_target(name, &current),
        };
        let target = |t: String| Relink {
            name: name.into(),
            target: Some(t),
        };
        let go = [target(script::link_target(name, &previous))];
        let undo = [target(current_target)];
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
                    self.fence.as_ref(),
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
                            output: said(output),
                        },
                    }
                }
                Marker::Reload(output) => {
                    return Outcome::Failed {
                        error: NodeError::Reload {
                            node: self.name(),
                            command: self.node.reload.clone(),
                            output: said(output),
                        },
                    }
                }
                Marker::Fenced { seen, path } => {
                    return Outcome::Failed {
                        error: self.fenced(seen, path),
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
            // One certificate in, one result out.
            Some(leaf) => self
                .verify(&[(snis, leaf.as_slice())])
                .await
                .into_iter()
                .find(Result::is_err)
                .unwrap_or(Ok(())),
            None => Err(NodeError::NoLeaf {
                node: self.name(),
                sni: snis.first().cloned().unwrap_or_default(),
                version: previous.clone(),
            }),
        };
        match verified {
            Ok(()) => Outcome::Deployed {
                from: Some(current),
                to: previous,
            },
            Err(e) => {
                let back = script::restore(
                    &base,
                    &token(),
                    &undo,
                    None,
                    &self.node.reload,
                    &[],
                    self.fence.as_ref(),
                );
                let _ = self.transport.run(&back, b"").await;
                Outcome::Failed { error: e }
            }
        }
    }
}

fn fail_all(n: usize, e: impl Fn() -> NodeError) -> Vec<Outcome> {
    (0..n).map(|_| Outcome::Failed { error: e() }).collect()
}

/// A command's output for a message; says so when there was none.
fn said(output: String) -> String {
    if output.trim().is_empty() {
        "it printed nothing and exited non-zero".into()
    } else {
        output
    }
}
