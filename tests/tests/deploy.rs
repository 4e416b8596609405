//! Deployment against the lab's real sshd + nginx nodes: atomic swap,
//! verification by TLS handshake, rollback on a broken config or a reload
//! that does nothing, unreachable nodes, unknown host keys, a full disk,
//! concurrent runs and a run killed half way.
//!
//! Certificates come from a throwaway CA made here (rcgen), installed in a
//! temporary store, so these tests do not depend on issuance. Each test
//! changes what nodes serve, so it holds the lab exclusively.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use acme_core::deploy::{self, DeployOptions, NoProgress, NodeResult, Outcome};
use acme_core::inspect::{Prober, Trust};
use acme_core::inventory::KeyType;
use acme_core::store::{Material, ReleaseMeta};
use acme_core::{CertName, Inventory, Store};
use certctl_lab_tests::{certctl, lab, set_node, show, Lab};

/// Nodes used by these tests (node1 is the canary).
const NODES: usize = 5;

const CERTS: [(&str, &[&str]); 3] = [
    ("www", &["www.example.test", "example.test"]),
    ("media", &["media.example.test"]),
    ("wild", &["*.cdn.example.test", "cdn.example.test"]),
];

/// The SNI names probed for a certificate (a wildcard gets a label).
fn snis(name: &str) -> Vec<String> {
    let (_, domains) = CERTS.iter().find(|(n, _)| *n == name).expect("known cert");
    domains
        .iter()
        .map(|d| match d.strip_prefix("*.") {
            Some(base) => format!("certctl-probe.{base}"),
            None => d.to_string(),
        })
        .collect()
}

/// The lab's inventory cut down to the first `n` nodes.
fn keep_nodes(text: &str, n: usize) -> String {
    let mut parts = text.split("\n[[node]]\n");
    let mut out = parts.next().expect("head").to_string();
    for block in parts.take(n) {
        out.push_str("\n[[node]]\n");
        out.push_str(block.trim_end());
        out.push('\n');
    }
    out
}

struct Fleet {
    dir: tempfile::TempDir,
    config: PathBuf,
    inv: Inventory,
    store: Store,
}

impl Fleet {
    fn new(lab: &Lab, edit: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = lab.inventory_in(dir.path(), |t| edit(keep_nodes(&t, NODES)));
        let inv = Inventory::load(&config).expect("inventory");
        let (store, _) = Store::open(&inv.store).expect("store");
        Self {
            dir,
            config,
            inv,
            store,
        }
    }

    /// Installs a new version of every certificate; returns the leaves (DER).
    fn issue(&self) -> BTreeMap<String, Vec<u8>> {
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "certctl deploy test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");
        let mut leaves = BTreeMap::new();
        for (name, domains) in CERTS {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(
                domains.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            )
            .expect("params");
            let serial = random_serial();
            params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .expect("ns");
            params.not_before = now;
            params.not_after = now + time::Duration::days(30);
            let cert = params.signed_by(&key, &ca).expect("sign");
            let m = Material {
                cert_pem: cert.pem(),
                chain_pem: ca.pem(),
                key_pem: acme_core::Secret::new(key.serialize_pem().into_bytes()),
                meta: ReleaseMeta {
                    domains: domains.iter().map(|d| d.to_string()).collect(),
                    key_type: KeyType::EcdsaP256,
                    serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
                    issuer: "CN=certctl deploy test CA".into(),
                    not_before: now,
                    not_after: now + time::Duration::days(30),
                    directory: "test".into(),
                    ari_id: None,
                    stored_at: now,
                },
            };
            self.store
                .install(&CertName::new(name).expect("name"), &m)
                .expect("install");
            leaves.insert(name.to_string(), cert.der().to_vec());
        }
        leaves
    }

    async fn deploy(&self) -> Vec<NodeResult> {
        deploy::deploy(
            &self.inv,
            &self.store,
            &DeployOptions::default(),
            &NoProgress,
        )
        .await
        .expect("deploy runs")
    }

    fn version(&self, name: &str) -> String {
        self.store
            .current(name)
            .expect("store")
            .expect("issued")
            .version
    }
}

/// 8 random bytes, positive as a DER integer.
fn random_serial() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let mut b = h.finish().to_be_bytes();
    b[0] = (b[0] & 0x7f) | 1;
    b
}

fn prober() -> Prober {
    Prober::new(&Trust::default(), Duration::from_secs(3)).expect("prober")
}

/// The leaf node `i` serves for `sni`.
async fn served(lab: &Lab, i: usize, sni: &str) -> Vec<u8> {
    let s = prober()
        .probe(&format!("{}:443", lab.node_addr(i)), sni)
        .await
        .unwrap_or_else(|e| panic!("node{i} {sni}: {e}"));
    s.leaf().expect("a leaf").to_vec()
}

/// Every SNI name of every certificate on node `i` presents `leaves`.
async fn assert_serves(lab: &Lab, i: usize, leaves: &BTreeMap<String, Vec<u8>>) {
    for (name, leaf) in leaves {
        for sni in snis(name) {
            assert!(
                served(lab, i, &sni).await == *leaf,
                "node{i} does not serve the expected {name} leaf for {sni}"
            );
        }
    }
}

async fn serving_now(lab: &Lab, i: usize) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for (name, _) in CERTS {
        m.insert(name.to_string(), served(lab, i, &snis(name)[0]).await);
    }
    m
}

fn results_of<'a>(r: &'a [NodeResult], node: &str) -> Vec<&'a NodeResult> {
    r.iter().filter(|x| x.node == node).collect()
}

fn all_deployed(r: &[NodeResult], nodes: impl IntoIterator<Item = usize>) {
    for i in nodes {
        let mine = results_of(r, &format!("node{i}"));
        assert_eq!(mine.len(), CERTS.len(), "{r:#?}");
        for x in mine {
            assert!(
                matches!(x.outcome, Outcome::Deployed { .. }),
                "node{i} {}: {:?}",
                x.certificate,
                x.outcome
            );
        }
    }
}

fn base_dir(lab: &Lab, i: usize) -> PathBuf {
    lab.dir.join(format!("nodes/node{i}/certs"))
}

/// live/<name> on node `i` is a relative link to a directory with all four files.
fn assert_live_link_valid(lab: &Lab, i: usize, name: &str) -> String {
    let link = base_dir(lab, i).join("live").join(name);
    let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    assert!(
        target.is_relative(),
        "{} -> {}",
        link.display(),
        target.display()
    );
    for f in ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"] {
        assert!(link.join(f).is_file(), "{}/{f} missing", link.display());
    }
    target
        .file_name()
        .and_then(|v| v.to_str())
        .expect("version")
        .to_string()
}

/// Runs `lab.sh` commands when dropped (puts faults right even on failure).
struct Undo<'a>(&'a Lab, Vec<Vec<&'static str>>);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for args in &self.1 {
            let _ = self.0.sh(args);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_serves_new_leaf_everywhere_and_second_run_changes_nothing() {
    let lab = lab();
    let _x = lab.exclusive();
    let fleet = Fleet::new(lab, |t| t);
    let leaves = fleet.issue();

    // A dry run shows the plan and touches nothing.
    let link = base_dir(lab, 2).join("live/www");
    let before = std::fs::read_link(&link).expect("link");
    let out = certctl(&fleet.config, &["deploy", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = json.as_array().expect("array");
    assert_eq!(rows.len(), NODES * CERTS.len(), "{json:#}");
    assert!(rows.iter().all(|r| r["outcome"] == "planned"), "{json:#}");
    assert_eq!(std::fs::read_link(&link).expect("link"), before);

    let out = certctl(&fleet.config, &["deploy", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = json.as_array().expect("array");
    assert_eq!(rows.len(), NODES * CERTS.len(), "{json:#}");
    assert!(rows.iter().all(|r| r["outcome"] == "deployed"), "{json:#}");
    for i in 1..=NODES {
        assert_serves(lab, i, &leaves).await;
        for (name, _) in CERTS {
            assert_eq!(assert_live_link_valid(lab, i, name), fleet.version(name));
            let key = base_dir(lab, i).join("live").join(name).join("privkey.pem");
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&key).expect("key").permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fleet.dir.path().join("store/state/www/node-node3.json")).expect("state"),
    )
    .expect("state json");
    assert_eq!(state["version"], fleet.version("www").as_str());

    // Nothing changed: every node is skipped, and the table says so.
    let out = certctl(&fleet.config, &["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table.matches("unchanged").count(),
        NODES * CERTS.len(),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_nginx_config_is_rolled_back_and_the_rest_deploys() {
    let lab = lab();
    let _x = lab.exclusive();
    let fleet = Fleet::new(lab, |t| t);
    let _undo = Undo(lab, vec![vec!["nginx-fix", "3"]]);
    lab.must(&["nginx-break", "3"]);
    let before = serving_now(lab, 3).await;
    let live_before = std::fs::read_link(base_dir(lab, 3).join("live/www")).expect("link");
    fleet.issue();

    let r = fleet.deploy().await;
    all_deployed(&r, [1, 2, 4, 5]);
    for x in results_of(&r, "node3") {
        match &x.outcome {
            Outcome::RolledBack { reason, .. } => {
                let msg = acme_core::error_chain(reason);
                assert!(
                    msg.contains("nginx -t") && msg.contains("previous one was put back"),
                    "{msg}"
                );
            }
            o => panic!("node3 {}: {o:?}", x.certificate),
        }
    }
    assert_eq!(
        serving_now(lab, 3).await,
        before,
        "node3 still serves the old certificates"
    );
    assert_eq!(
        std::fs::read_link(base_dir(lab, 3).join("live/www")).expect("link"),
        live_before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_without_sshd_is_reported_and_completed_on_the_next_run() {
    let lab = lab();
    let _x = lab.exclusive();
    let fleet = Fleet::new(lab, |t| t);
    let _undo = Undo(lab, vec![vec!["start", "sshd", "4"]]);
    lab.must(&["stop", "sshd", "4"]);
    let leaves = fleet.issue();

    let r = fleet.deploy().await;
    all_deployed(&r, [1, 2, 3, 5]);
    for x in results_of(&r, "node4") {
        match &x.outcome {
            Outcome::Failed { error } => {
                let msg = acme_core::error_chain(error);
                assert!(msg.contains("node4") && msg.contains("refused"), "{msg}");
            }
            o => panic!("node4: {o:?}"),
        }
    }
    let state = deploy::NodeState::read(&fleet.store, "www", "node4")
        .expect("state")
        .expect("recorded");
    assert!(state.error.is_some_and(|e| e.contains("refused")));

    lab.must(&["start", "sshd", "4"]);
    let r = fleet.deploy().await;
    all_deployed(&r, [4]);
    for x in r.iter().filter(|x| x.node != "node4") {
        assert!(matches!(x.outcome, Outcome::Unchanged { .. }), "{x:?}");
    }
    assert_serves(lab, 4, &leaves).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_canary_or_too_many_failures_stop_the_rollout() {
    let lab = lab();
    let _x = lab.exclusive();
    // One node at a time, so "stop starting new nodes" is observable.
    let fleet = Fleet::new(lab, |t| {
        t.replacen(
            "\n[[node]]\n",
            "\n[deploy]\nconcurrency = 1\n\n[[node]]\n",
            1,
        )
    });
    let _undo = Undo(
        lab,
        vec![vec!["start", "sshd", "1"], vec!["start", "sshd", "2"]],
    );
    fleet.issue();

    // The canary (node1) fails: nobody else is touched.
    lab.must(&["stop", "sshd", "1"]);
    let r = fleet.deploy().await;
    assert!(results_of(&r, "node1")
        .iter()
        .all(|x| matches!(x.outcome, Outcome::Failed { .. })));
    for x in r.iter().filter(|x| x.node != "node1") {
        assert!(
            matches!(
                x.outcome,
                Outcome::Skipped {
                    why: deploy::SkipReason::CanaryFailed
                }
            ),
            "{x:?}"
        );
    }
    lab.must(&["start", "sshd", "1"]);

    // node2 fails; with max_failures 0 no node after it starts.
    lab.must(&["stop", "sshd", "2"]);
    let opts = DeployOptions {
        max_failures: Some(0),
        ..Default::default()
    };
    let r = deploy::deploy(&fleet.inv, &fleet.store, &opts, &NoProgress)
        .await
        .expect("deploy runs");
    all_deployed(&r, [1]);
    assert!(results_of(&r, "node2")
        .iter()
        .all(|x| matches!(x.outcome, Outcome::Failed { .. })));
    for i in 3..=NODES {
        for x in results_of(&r, &format!("node{i}")) {
            assert!(
                matches!(
                    x.outcome,
                    Outcome::Skipped {
                        why: deploy::SkipReason::Stopped
                    }
                ),
                "{x:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn node_that_keeps_serving_the_old_certificate_is_rolled_back() {
    let lab = lab();
    let _x = lab.exclusive();
    let fleet = Fleet::new(lab, |t| set_node(&t, "node2", "reload", "\"true\""));
    let before = serving_now(lab, 2).await;
    let leaves = fleet.issue();

    let r = fleet.deploy().await;
    all_deployed(&r, [1, 3, 4, 5]);
    for x in results_of(&r, "node2") {
        match &x.outcome {
            Outcome::RolledBack {
                reason, version, ..
            } => {
                let msg = acme_core::error_chain(reason);
                assert!(msg.contains("still serving the old certificate"), "{msg}");
                let live = std::fs::read_link(base_dir(lab, 2).join("live").join(&x.certificate))
                    .expect("link");
                assert_eq!(
                    live.file_name().and_then(|v| v.to_str()),
                    version.as_deref()
                );
            }
            o => panic!("node2: {o:?}"),
        }
    }
    assert_eq!(serving_now(lab, 2).await, before);
    assert_serves(lab, 3, &leaves).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_key_is_refused_with_a_clear_message() {
    let lab = lab();
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let known = dir.path().join("known_hosts");
    let text = std::fs::read_to_string(lab.dir.join("ssh/known_hosts")).expect("known_hosts");
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{} ", lab.node_addr(5))))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&known, without).expect("write");
    let known_s = known.display().to_string();
    let fleet = Fleet::new(lab, |t| {
        set_node(&t, "node5", "known_hosts", &format!("\"{known_s}\""))
    });
    let before = serving_now(lab, 5).await;
    let leaves = fleet.issue();

    // Through the CLI: a failed node makes the exit code 2.
    let out = certctl(&fleet.config, &["deploy", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for r in json.as_array().expect("array") {
        if r["node"] == "node5" {
            assert_eq!(r["outcome"], "failed", "{r}");
            let msg = r["error"].as_str().expect("error");
            assert!(
                msg.contains(&format!(
                    "host key of node5 (127.0.0.15) is not in {known_s}"
                )) && msg.contains("ssh-keyscan"),
                "{msg}"
            );
        } else {
            assert_eq!(r["outcome"], "deployed", "{r}");
        }
    }
    assert_eq!(serving_now(lab, 5).await, before);
    assert_serves(lab, 4, &leaves).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_fails_cleanly_and_keeps_the_old_certificate() {
    let lab = lab();
    let _x = lab.exclusive();
    let fleet = Fleet::new(lab, |t| t);
    let _undo = Undo(lab, vec![vec!["disk-free", "3"]]);
    lab.must(&["disk-fill", "3"]);
    let before = serving_now(lab, 3).await;
    fleet.issue();

    let r = fleet.deploy().await;
    all_deployed(&r, [1, 2, 4, 5]);
    for x in results_of(&r, "node3") {
        match &x.outcome {
            Outcome::Failed { error } => {
                let msg = acme_core::error_chain(error);
                assert!(
                    msg.contains("no space left on device on node3 at ")
                        && msg.contains("free space"),
                    "{msg}"
                );
            }
            o => panic!("node3: {o:?}"),
        }
    }
    assert_eq!(serving_now(lab, 3).await, before);
    let archive = base_dir(lab, 3).join("archive");
    let staged: Vec<_> = std::fs::read_dir(&archive)
        .expect("archive")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".stage-"))
        .collect();
    assert!(
        staged.is_empty(),
        "temporary upload left in {}: {staged:?}",
        archive.display()
    );
    for (name, _) in CERTS {
        assert_live_link_valid(lab, 3, name);
        let temps: Vec<_> = std::fs::read_dir(archive.join(name))
            .expect("archive")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(
            temps.is_empty(),
            "temporary directory left in {name}'s archive"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deploys_at_once_are_serialized_and_both_succeed() {
    let lab = lab();
    let _x = lab.exclusive();
    let fleet = Fleet::new(lab, |t| t);
    let leaves = fleet.issue();
    let spawn = || {
        std::process::Command::new(certctl_lab_tests::certctl_bin())
            .args(["--config"])
            .arg(&fleet.config)
            .args(["deploy", "www", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn certctl")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    assert_eq!(a.status.code(), Some(0), "{}", show(&a));
    assert_eq!(b.status.code(), Some(0), "{}", show(&b));
    let outcomes = |o: &std::process::Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| r["outcome"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (oa, ob) = (outcomes(&a), outcomes(&b));
    // One did the work, the other found it done: they did not interleave.
    let deployed = |v: &[String]| v.iter().all(|o| o == "deployed");
    let unchanged = |v: &[String]| v.iter().all(|o| o == "unchanged");
    assert!(
        (deployed(&oa) && unchanged(&ob)) || (deployed(&ob) && unchanged(&oa)),
        "{oa:?} / {ob:?}"
    );
    let www: BTreeMap<String, Vec<u8>> = leaves.into_iter().filter(|(n, _)| n == "www").collect();
    for i in 1..=NODES {
        assert_serves(lab, i, &www).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_rollout_leaves_valid_links_and_the_next_run_completes() {
    let lab = lab();
    let _x = lab.exclusive();
    // A slow reload on the later nodes, so the kill lands mid-rollout.
    let fleet = Fleet::new(lab, |mut t| {
        for i in 2..=NODES {
            let nd = lab.dir.join(format!("nodes/node{i}/nginx/"));
            t = set_node(
                &t,
                &format!("node{i}"),
                "reload",
                &format!(
                    "\"sleep 2; nginx -p {} -c nginx.conf -s reload\"",
                    nd.display()
                ),
            );
        }
        t
    });
    let leaves = fleet.issue();
    let version = fleet.version("www");
    let mut child = std::process::Command::new(certctl_lab_tests::certctl_bin())
        .arg("--config")
        .arg(&fleet.config)
        .arg("deploy")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until a non-canary node has its new link (it is now reloading).
    let link2 = base_dir(lab, 2).join("live/www");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_link(&link2)
        .ok()
        .and_then(|t| t.file_name().map(|v| v.to_string_lossy().into_owned()))
        != Some(version.clone())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "node2 never got the new link"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    for i in 1..=NODES {
        for (name, _) in CERTS {
            assert_live_link_valid(lab, i, name);
        }
    }
    let out = certctl(&fleet.config, &["deploy", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for i in 1..=NODES {
        assert_serves(lab, i, &leaves).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_live_directory_is_adopted_and_rollback_returns_to_it() {
    let lab = lab();
    let _x = lab.exclusive();
    let fleet = Fleet::new(lab, |t| t);
    // node5's live/media becomes a plain directory, as a hand-run setup has.
    let live = base_dir(lab, 5).join("live/media");
    let old_files = std::fs::canonicalize(&live).expect("resolve");
    let tmp = base_dir(lab, 5).join("live/.media-plain");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).expect("mkdir");
    for f in ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"] {
        std::fs::copy(old_files.join(f), tmp.join(f)).expect("copy");
    }
    std::fs::remove_file(&live).expect("unlink");
    std::fs::rename(&tmp, &live).expect("rename");
    let before = served(lab, 5, "media.example.test").await;
    let leaves = fleet.issue();

    let r = fleet.deploy().await;
    let media5 = r
        .iter()
        .find(|x| x.node == "node5" && x.certificate == "media")
        .expect("result");
    match &media5.outcome {
        Outcome::Deployed { from: Some(f), .. } => assert!(f.starts_with("adopted-"), "{f}"),
        o => panic!("{o:?}"),
    }
    assert_live_link_valid(lab, 5, "media");
    assert_eq!(served(lab, 5, "media.example.test").await, leaves["media"]);

    let out = certctl(
        &fleet.config,
        &["rollback", "media", "--node", "node5", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let adopted = assert_live_link_valid(lab, 5, "media");
    assert!(adopted.starts_with("adopted-"), "{adopted}");
    assert_eq!(served(lab, 5, "media.example.test").await, before);
    let out = certctl(&fleet.config, &["rollback", "nope"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no certificate `nope`"));
}

/// Not a check: prints the wall time of `certctl deploy` (3 certificates)
/// to `CERTCTL_BENCH_NODES` nodes (default 5; the lab must have that many),
/// for a fresh version and for a second, unchanged run, over
/// `CERTCTL_BENCH_TRANSPORT` (`ssh`, or `local` to see the cost without SSH). Run with
/// `cargo test -p certctl-lab-tests --test deploy -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, run by hand"]
fn measure_rollout_wall_time() {
    let lab = lab();
    let n: usize = std::env::var("CERTCTL_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(NODES);
    let _x = lab.exclusive();
    // Grow the lab if needed (never shrink it: others use it too).
    let running: usize = std::fs::read_to_string(lab.dir.join("nodes.count"))
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    if running < n {
        lab.must(&["up", &n.to_string()]);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = std::env::var("CERTCTL_BENCH_TRANSPORT").unwrap_or_else(|_| "ssh".into());
    let config = lab.inventory_in(dir.path(), |t| {
        let mut t = keep_nodes(&t, n);
        for i in 1..=n {
            t = set_node(
                &t,
                &format!("node{i}"),
                "transport",
                &format!("\"{transport}\""),
            );
        }
        t
    });
    let inv = Inventory::load(&config).expect("inventory");
    let (store, _) = Store::open(&inv.store).expect("store");
    let fleet = Fleet {
        dir,
        config,
        inv,
        store,
    };
    for round in 1..=3 {
        fleet.issue();
        for run in ["new version", "unchanged"] {
            let t = std::time::Instant::now();
            let out = certctl(&fleet.config, &["deploy", "--json"]);
            let wall = t.elapsed();
            assert_eq!(out.status.code(), Some(0), "{}", show(&out));
            eprintln!(
                "round {round}: {n} nodes x 3 certificates over {transport}, {run}: {wall:?}"
            );
        }
    }
    if std::env::var_os("CERTCTL_BENCH_KEEP").is_some() {
        eprintln!("kept {}", fleet.config.display());
        let _ = fleet.dir.keep();
    }
}

/// The other nodes connect while the canary deploys; a canary slower than
/// the SSH masters' idle limit (ControlPersist, 30 s) must not cost them
/// their connections.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_canary_does_not_strand_the_other_nodes() {
    let lab = lab();
    let _x = lab.exclusive();
    let nginx = lab.dir.join("nodes/node1/nginx/");
    let slow = format!(
        "\"sleep 35 && nginx -t -q -p {} -c nginx.conf\"",
        nginx.display()
    );
    let fleet = Fleet::new(lab, |t| set_node(&t, "node1", "validate", &slow));
    let leaves = fleet.issue();
    let r = fleet.deploy().await;
    all_deployed(&r, 1..=NODES);
    for i in 1..=NODES {
        assert_serves(lab, i, &leaves).await;
    }
}
