//! Crash safety of `certctl run`: SIGKILL at many points of issuance and
//! rollout never leaves a live link (in the store or on a node) pointing at
//! an incomplete version, and the next run completes the job and sweeps the
//! TXT records the killed runs left.
//!
//! Every run issues anew (`renew_before` longer than pebble's lifetimes), so
//! every kill point lands in a run that both issues and rolls out. The
//! certificates are the lab's `www` and `media`, which the nodes serve, so
//! the test holds the lab exclusively.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use acme_core::inspect::{Prober, Trust};
use certctl_lab_tests::{cert, certctl, certctl_bin, first_nodes, head, lab, show, txt, Lab};

const NODES: usize = 3;

/// Certificate, its domains, and where its challenge record lives (media is
/// CNAME-delegated into the challenge zone).
const CERTS: [(&str, &[&str], &[&str]); 2] = [
    (
        "www",
        &["www.example.test", "example.test"],
        &[
            "_acme-challenge.www.example.test",
            "_acme-challenge.example.test",
        ],
    ),
    ("media", &["media.example.test"], &["media.challenges.test"]),
];

/// Kill points by time, from early issuance to after the end (a whole run
/// takes about 2 s here)...
const DELAYS_MS: [u64; 12] = [20, 60, 120, 200, 300, 420, 560, 720, 900, 1150, 1600, 3000];

/// ... and by event, so some land mid-rollout on any machine: the moment
/// the run's new version of a certificate is in the store (node 0), or is
/// linked on node I.
const EVENTS: [(usize, &str); 5] = [
    (0, "www"),
    (1, "www"),
    (1, "media"),
    (2, "www"),
    (3, "media"),
];

/// The version `link` points at.
fn linked(link: &Path) -> Option<String> {
    std::fs::read_link(link)
        .ok()
        .and_then(|t| t.file_name().map(|v| v.to_string_lossy().into_owned()))
}

fn inventory(lab: &Lab, dir: &Path) -> PathBuf {
    lab.inventory_in(dir, |text| {
        let mut out = head(&text).to_string();
        for (name, domains, _) in CERTS {
            out.push_str(&cert(
                name,
                domains,
                "groups = [\"edge\"]\nrenew_before = \"2000d\"\n",
            ));
        }
        out.push_str(&first_nodes(&text, NODES));
        out
    })
}

fn node_base(lab: &Lab, i: usize) -> PathBuf {
    lab.dir.join(format!("nodes/node{i}/certs"))
}

/// `link` resolves to a directory holding every file non-empty, with the key
/// 0600, and is not a temporary directory; returns the version's name.
fn complete(link: &Path, files: &[&str]) -> String {
    let target = std::fs::read_link(link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    let version = target
        .file_name()
        .expect("version")
        .to_string_lossy()
        .into_owned();
    assert!(
        !version.starts_with(".tmp") && !version.starts_with(".old"),
        "{} links a temporary directory {version}",
        link.display()
    );
    for f in files {
        let p = link.join(f);
        let len = std::fs::metadata(&p).map(|m| m.len());
        // The lab's self-signed bootstrap versions (not written by certctl)
        // have no issuer chain: an empty chain.pem is how they come.
        let may_be_empty = *f == "chain.pem" && version.contains("bootstrap");
        assert!(
            len.as_ref().is_ok_and(|l| *l > 0 || may_be_empty),
            "{} is missing or empty",
            p.display()
        );
    }
    let mode = std::fs::metadata(link.join("privkey.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}/privkey.pem", link.display());
    version
}

/// Store and nodes are consistent; returns (store versions, node versions).
fn consistent(lab: &Lab, store: &Path) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut in_store = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(store.join("live")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let v = complete(
                &e.path(),
                &[
                    "privkey.pem",
                    "cert.pem",
                    "chain.pem",
                    "fullchain.pem",
                    "meta.json",
                ],
            );
            in_store.insert(name, v);
        }
    }
    let mut on_nodes = BTreeMap::new();
    for i in 1..=NODES {
        for (name, _, _) in CERTS {
            let link = node_base(lab, i).join("live").join(name);
            let v = complete(
                &link,
                &["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"],
            );
            on_nodes.insert(format!("node{i}/{name}"), v);
        }
    }
    (in_store, on_nodes)
}

fn temps_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.starts_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

fn leaf_of(version: &Path) -> Vec<u8> {
    let pem = std::fs::read(version.join("cert.pem")).expect("cert.pem");
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
    p.contents
}

#[tokio::test(flavor = "multi_thread")]
async fn run_killed_anywhere_leaves_complete_versions_and_the_next_run_finishes() {
    let lab = lab();
    let _x = lab.exclusive();
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let cfg = inventory(lab, dir.path());

    let mut phases = Vec::new();
    let mut last = consistent(lab, &store);
    let points = DELAYS_MS
        .iter()
        .map(|d| (Some(*d), None))
        .chain(EVENTS.iter().map(|e| (None, Some(*e))));
    for (n, (delay, event)) in points.enumerate() {
        let store_before: BTreeMap<&str, Option<String>> = CERTS
            .iter()
            .map(|(name, _, _)| (*name, linked(&store.join("live").join(name))))
            .collect();
        let mut child = Command::new(certctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["run", "--no-notify"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("run{n}.err"))).expect("log"))
            .spawn()
            .expect("spawn certctl run");
        if let Some(d) = delay {
            std::thread::sleep(Duration::from_millis(d));
        }
        if let Some((node, name)) = event {
            let in_store = store.join("live").join(name);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let new = linked(&in_store).filter(|v| Some(v) != store_before[name].as_ref());
                let reached = match (node, &new) {
                    (0, Some(_)) => true,
                    (i, Some(_)) => linked(&node_base(lab, i).join("live").join(name)) == new,
                    _ => false,
                };
                if reached || child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the run never got to {event:?}"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        child.kill().expect("SIGKILL"); // an exited child is fine too
        let status = child.wait().expect("wait");
        // A run that ended before the kill must have succeeded.
        let log =
            std::fs::read_to_string(dir.path().join(format!("run{n}.err"))).unwrap_or_default();
        assert!(
            status.code().is_none_or(|c| c == 0),
            "a run after a killed one failed ({status}):\n{log}"
        );
        let now = consistent(lab, &store);
        // Where the kill landed, for the log (not asserted: timing varies).
        let issued = now
            .0
            .iter()
            .filter(|(k, v)| last.0.get(*k) != Some(v))
            .count();
        let swapped = now
            .1
            .iter()
            .filter(|(k, v)| last.1.get(*k) != Some(v))
            .count();
        phases.push(format!(
            "{}: {issued}/{} new in store, {swapped}/{} node links swapped{}",
            match (delay, event) {
                (Some(d), _) => format!("{d} ms"),
                (_, Some((0, name))) => format!("new {name} in the store"),
                (_, Some((i, name))) => format!("new {name} linked on node{i}"),
                (None, None) => String::new(),
            },
            CERTS.len(),
            CERTS.len() * NODES,
            if status.success() {
                " (run had finished)"
            } else {
                ""
            }
        ));
        last = now;
    }
    eprintln!(
        "kill points ({:?} with the lab held):\n  {}",
        started.elapsed(),
        phases.join("\n  ")
    );

    // A killed run's SSH master outlives it (ControlPersist), so its remote
    // script may still be finishing a swap and reload on a node; let it.
    std::thread::sleep(Duration::from_secs(1));
    let out = certctl(&cfg, &["run", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let (in_store, on_nodes) = consistent(lab, &store);
    let prober = Prober::new(&Trust::default(), Duration::from_secs(5)).expect("prober");
    for (name, domains, challenges) in CERTS {
        let version = store.join("live").join(name);
        let leaf = leaf_of(&version);
        for i in 1..=NODES {
            assert_eq!(
                on_nodes[&format!("node{i}/{name}")],
                in_store[name],
                "node{i} links the store's {name}"
            );
            for sni in domains {
                let served = prober
                    .probe(&format!("{}:443", lab.node_addr(i)), sni)
                    .await
                    .unwrap_or_else(|e| panic!("node{i} {sni}: {e}"));
                assert!(
                    served.leaf().map(|l| l.as_ref()) == Some(leaf.as_slice()),
                    "node{i} serves the store's current {name} for {sni}"
                );
            }
            let archive = node_base(lab, i).join("archive").join(name);
            assert_eq!(temps_in(&archive), Vec::<String>::new(), "node{i}");
        }
        assert_eq!(
            temps_in(&store.join("archive").join(name)),
            Vec::<String>::new(),
            "store archive of {name}"
        );
        for c in challenges {
            assert_eq!(txt(c), "", "TXT record left at {c}");
        }
    }
}
