//! Two controllers sharing one store on the lab's real 3-member etcd cluster
//! (`lab.sh etcd up`): one issues while the other waits, a killed or paused
//! leader is taken over after its lease expires and can overwrite nothing,
//! one lost member is harmless, a lost quorum fails fast and changes no
//! node, a wrong data key is named and overwrites nothing, a directory
//! store moves to etcd and back unchanged, and the store works over TLS
//! with a client certificate while a refused handshake is named.
//!
//! Each test has its own key prefix in etcd (so its own store) and its own
//! two inventories, `a/` and `b/`: two controllers, as two processes with
//! their own config files and one data key file. The certificates are the
//! lab's `www` and `media`, which the nodes serve, so every test holds the
//! lab exclusively.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use certctl_lab_tests::{
    cert, certctl, certctl_bin, first_nodes, head, lab, show, txt, unique, Lab,
};

const NODES: usize = 3;

/// The lease of the tests' lock: short, so a takeover comes quickly.
const TTL_SECS: u64 = 3;

/// Certificate, its domains, and where its challenge records live.
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

/// The lab's etcd endpoints, comma-separated (brings the cluster up).
fn endpoints(lab: &Lab) -> String {
    lab.must(&["etcd", "up"]);
    let out = lab.sh(&["etcd", "endpoints"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Two controllers' inventories over one etcd store.
struct Pair {
    dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    prefix: String,
    key: PathBuf,
    endpoints: String,
}

/// A new data key file at `path`, written by `certctl store keygen`.
fn keygen(path: &Path) {
    let out = Command::new(certctl_bin())
        .args(["store", "keygen"])
        .arg(path)
        .output()
        .expect("run certctl store keygen");
    assert!(out.status.success(), "keygen: {}", show(&out));
    let mode = std::fs::metadata(path)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is written 0600");
}

/// The `[store]` table for an etcd store.
fn etcd_table(endpoints: &str, prefix: &str, key: &Path) -> String {
    let list = endpoints
        .split(',')
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "\n[store]\ntype = \"etcd\"\nendpoints = [{list}]\nprefix = \"{prefix}\"\nkey_file = \"{}\"\nlease_ttl = \"{TTL_SECS}s\"\n",
        key.display()
    )
}

/// The lab's inventory for `www` and `media` on the first nodes, with the
/// store line replaced by `table` (or kept, a directory store, when empty).
fn inventory(lab: &Lab, dir: &Path, table: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    lab.inventory_in(dir, |text| {
        let mut out = String::new();
        for line in head(&text).lines() {
            if table.is_empty() || !line.starts_with("store = ") {
                out.push_str(line);
                out.push('\n');
            }
        }
        for (name, domains, _) in CERTS {
            out.push_str(&cert(name, domains, "groups = [\"edge\"]\n"));
        }
        out.push_str(&first_nodes(&text, NODES));
        out.push_str(table);
        out
    })
}

fn pair(lab: &Lab) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("store.key");
    keygen(&key);
    let prefix = format!("/certctl-test/{}/", unique("ha"));
    let endpoints = endpoints(lab);
    let table = etcd_table(&endpoints, &prefix, &key);
    let a = inventory(lab, &dir.path().join("a"), &table);
    let b = inventory(lab, &dir.path().join("b"), &table);
    Pair {
        dir,
        a,
        b,
        prefix,
        key,
        endpoints,
    }
}

impl Pair {
    /// `etcdctl` against the lab's cluster.
    fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.endpoints)
            .arg("--command-timeout=5s")
            .args(args)
            .output()
            .expect("run etcdctl")
    }

    /// Every key and value under the prefix, as `etcdctl get` prints them.
    fn dump(&self) -> String {
        let out = self.etcdctl(&["get", "--prefix", &self.prefix]);
        assert!(out.status.success(), "etcdctl get: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys under the prefix (without it) and their modification revision,
    /// leaving out the lock and the run's health records.
    fn revisions(&self) -> BTreeMap<String, u64> {
        let out = self.etcdctl(&["get", "--prefix", &self.prefix, "-w", "json"]);
        assert!(out.status.success(), "etcdctl get: {}", show(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl json");
        let mut map = BTreeMap::new();
        for kv in v["kvs"].as_array().cloned().unwrap_or_default() {
            let key = kv["key"].as_str().expect("key");
            let key = base64_decode(key);
            let key = key.strip_prefix(&self.prefix).unwrap_or(&key).to_string();
            if key.starts_with("lock") || key.starts_with("health") {
                continue;
            }
            map.insert(key, kv["mod_revision"].as_u64().expect("mod_revision"));
        }
        map
    }

    /// Starts `certctl run` on controller `cfg`, its stderr in `log`.
    fn spawn_run(&self, cfg: &Path, log: &str) -> Child {
        Command::new(certctl_bin())
            .arg("--config")
            .arg(cfg)
            .args(["--lock-wait", "60s", "run", "--no-notify"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(log)).expect("log"))
            .spawn()
            .expect("spawn certctl run")
    }

    fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default()
    }
}

fn base64_decode(s: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("etcdctl's json is base64");
    String::from_utf8(bytes).expect("utf-8 key")
}

/// Versions of each certificate in the store of `cfg`, and the live one
/// (`certctl list --json`).
fn store_versions(cfg: &Path) -> BTreeMap<String, (usize, Option<String>)> {
    let out = certctl(cfg, &["list", "--json"]);
    assert!(out.status.success(), "list: {}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    let mut map = BTreeMap::new();
    for c in v.as_array().expect("list is an array") {
        let name = c["name"].as_str().expect("name").to_string();
        let count = c["versions"].as_u64().unwrap_or(0) as usize;
        let live = c["version"].as_str().map(str::to_string);
        map.insert(name, (count, live));
    }
    map
}

fn node_base(lab: &Lab, i: usize) -> PathBuf {
    lab.dir.join(format!("nodes/node{i}/certs"))
}

/// The version `live/<name>` links on node `i`, after checking that it is
/// complete: every file there and non-empty, the key 0600.
fn node_version(lab: &Lab, i: usize, name: &str) -> String {
    let link = node_base(lab, i).join("live").join(name);
    let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    let version = target
        .file_name()
        .expect("version")
        .to_string_lossy()
        .into_owned();
    assert!(
        !version.starts_with('.'),
        "{} links {version}",
        link.display()
    );
    for f in ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"] {
        let len = std::fs::metadata(link.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(
            len > 0 || version.contains("bootstrap"),
            "{}/{f} missing or empty",
            link.display()
        );
    }
    let mode = std::fs::metadata(link.join("privkey.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}/privkey.pem", link.display());
    version
}

/// What the nodes hold: each node's live link per certificate, and the
/// entries of each archive directory.
fn nodes_snapshot(lab: &Lab) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for i in 1..=NODES {
        for (name, _, _) in CERTS {
            map.insert(format!("node{i}/live/{name}"), node_version(lab, i, name));
            let mut entries: Vec<String> =
                std::fs::read_dir(node_base(lab, i).join("archive").join(name))
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
            entries.sort();
            map.insert(format!("node{i}/archive/{name}"), entries.join(" "));
        }
    }
    map
}

/// Every node links the store's live version of every certificate, and no
/// challenge record is left in DNS.
fn settled(lab: &Lab, cfg: &Path) {
    let store = store_versions(cfg);
    for (name, _, challenges) in CERTS {
        let (count, live) = &store[name];
        assert_eq!(*count, 1, "{name} was issued exactly once: {store:?}");
        let live = live.as_ref().expect("a live version");
        for i in 1..=NODES {
            assert_eq!(&node_version(lab, i, name), live, "node{i} links {name}");
        }
        for c in challenges {
            assert_eq!(txt(c), "", "TXT record left at {c}");
        }
    }
}

/// Waits (up to 60 s) until `reached` or the child exits.
fn wait_until(child: &mut Child, what: &str, mut reached: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reached() {
        if child.try_wait().expect("try_wait").is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "the run never got to {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The live version of `name` in etcd, read directly.
fn etcd_live(p: &Pair, name: &str) -> String {
    let key = format!("{}live/{name}", p.prefix);
    let out = p.etcdctl(&["get", &key, "--print-value-only"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_controllers_started_together_issue_each_certificate_once() {
    let lab = lab();
    let _x = lab.exclusive();
    let p = pair(lab);
    let mut a = p.spawn_run(&p.a, "a.err");
    let mut b = p.spawn_run(&p.b, "b.err");
    let (sa, sb) = (a.wait().expect("wait a"), b.wait().expect("wait b"));
    assert!(sa.success(), "controller a: {sa}\n{}", p.log("a.err"));
    assert!(sb.success(), "controller b: {sb}\n{}", p.log("b.err"));
    settled(lab, &p.a);
    assert_eq!(store_versions(&p.a), store_versions(&p.b));

    // Only ciphertext of the keys reaches etcd.
    let dump = p.dump();
    assert!(!dump.is_empty(), "the store is in etcd under {}", p.prefix);
    assert!(
        !dump.contains("PRIVATE KEY"),
        "a private key is readable in etcd"
    );
    let exported = p.dir.path().join("exported");
    let out = certctl(
        &p.a,
        &["store", "export", exported.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "export: {}", show(&out));
    for (name, _, _) in CERTS {
        let key = std::fs::read_to_string(exported.join("live").join(name).join("privkey.pem"))
            .expect("exported key");
        let body = key.lines().nth(1).expect("a base64 line");
        assert!(body.len() >= 40, "a real key line");
        assert!(!dump.contains(body), "{name}'s key is readable in etcd");
    }
}

/// SIGKILL the leader: while its challenge record is in DNS, once its new
/// version is live in the store, and once one node links it. The other
/// controller's next run waits out the lease, completes the work, and
/// issues nothing twice.
#[test]
fn a_killed_leader_is_taken_over_and_nothing_is_issued_twice() {
    let lab = lab();
    let _x = lab.exclusive();
    for point in [
        "challenge in DNS",
        "version in the store",
        "linked on node2",
    ] {
        let p = pair(lab);
        let before = nodes_snapshot(lab);
        let mut a = p.spawn_run(&p.a, "a.err");
        wait_until(&mut a, point, || match point {
            "challenge in DNS" => !txt("_acme-challenge.www.example.test").is_empty(),
            "version in the store" => !etcd_live(&p, "www").is_empty(),
            _ => {
                let live = etcd_live(&p, "www");
                !live.is_empty()
                    && std::fs::read_link(node_base(lab, 2).join("live/www"))
                        .is_ok_and(|t| t.ends_with(&live))
            }
        });
        a.kill().expect("SIGKILL");
        let status = a.wait().expect("wait");
        eprintln!(
            "{point}: a {}",
            if status.success() {
                "had finished"
            } else {
                "killed"
            }
        );
        // A killed run's ssh master may still finish a node's swap.
        std::thread::sleep(Duration::from_millis(500));
        let out = certctl(&p.b, &["--lock-wait", "60s", "run", "--no-notify"]);
        assert_eq!(out.status.code(), Some(0), "{point}: {}", show(&out));
        settled(lab, &p.b);
        assert_ne!(
            nodes_snapshot(lab),
            before,
            "{point}: the nodes got the new versions"
        );
    }
}

/// SIGSTOP the leader past its lease; the other controller completes; the
/// resumed leader's writes are refused, it exits with a clear error, and no
/// node and no stored version changes.
#[test]
fn a_paused_leader_resumes_fenced_and_changes_nothing() {
    let lab = lab();
    let _x = lab.exclusive();
    let p = pair(lab);
    let mut a = p.spawn_run(&p.a, "a.err");
    wait_until(&mut a, "challenge in DNS", || {
        !txt("_acme-challenge.www.example.test").is_empty()
    });
    let pid = a.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill")
        .success());
    // Its lease has at least two thirds of its TTL left: a run that will not
    // wait is refused and told who holds the lock.
    let out = certctl(&p.b, &["--lock-wait", "0s", "issue", "www"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("locked by another certctl run") && err.contains(&format!("pid {pid}")),
        "the waiting run names the holder: {err}"
    );
    std::thread::sleep(Duration::from_secs(TTL_SECS + 2));
    let out = certctl(&p.b, &["--lock-wait", "60s", "run", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "b: {}", show(&out));
    settled(lab, &p.b);
    let nodes = nodes_snapshot(lab);
    let stored = p.revisions();

    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill")
        .success());
    let status = a.wait().expect("wait");
    let log = p.log("a.err");
    assert_eq!(status.code(), Some(3), "the resumed leader exits 3:\n{log}");
    assert!(
        log.contains("lease") || log.contains("lock"),
        "the resumed leader says it lost the store lock:\n{log}"
    );
    assert_eq!(
        nodes_snapshot(lab),
        nodes,
        "the resumed leader changed a node"
    );
    assert_eq!(
        p.revisions(),
        stored,
        "the resumed leader wrote to the store"
    );
    settled(lab, &p.b);
}

/// Sends `signal` to the process whose pid is `pid`.
fn signal(pid: &str, signal: &str) {
    assert!(Command::new("kill")
        .args([signal, pid])
        .status()
        .expect("kill")
        .success());
}

/// Lets stopped processes go on (and kills a controller) however the test ends.
struct Resume(Vec<String>);

impl Drop for Resume {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-CONT", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The leader checks its lease before each node, then waits for the node's
/// SSH connection; paused there past its lease, it resumes after the other
/// controller has renewed and deployed a newer version. The node itself
/// refuses the stale leader's step (its fence file holds the later lock
/// holder's higher revision), so the older version never goes back over the
/// newer one.
#[test]
fn a_node_refuses_a_leader_paused_between_its_lease_check_and_the_nodes_step() {
    let lab = lab();
    let _x = lab.exclusive();
    let p = pair(lab);
    let fences_before = fences(lab, 1);
    // Node1 is the canary; time enough to hold its SSH banner back.
    for cfg in [&p.a, &p.b] {
        let text = std::fs::read_to_string(cfg).expect("inventory");
        let text = text.replace("\n[[node]]\n", "\n[[node]]\nconnect_timeout = \"60s\"\n");
        std::fs::write(cfg, text).expect("inventory");
    }
    let sshd = std::fs::read_to_string(lab.dir.join("nodes/node1/sshd.pid"))
        .expect("node1's sshd pid")
        .trim()
        .to_string();
    signal(&sshd, "-STOP");
    let mut resume = Resume(vec![sshd.clone()]);
    let mut a = p.spawn_run(&p.a, "a.err");
    resume.0.push(a.id().to_string());
    wait_until(&mut a, "both versions live", || {
        !etcd_live(&p, "www").is_empty() && !etcd_live(&p, "media").is_empty()
    });
    // A goes on to deploy: it checks its lease, then waits for node1.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        a.try_wait().expect("try_wait").is_none(),
        "a is still running: {}",
        p.log("a.err")
    );
    let old = etcd_live(&p, "www");
    let pid = a.id().to_string();
    signal(&pid, "-STOP");
    signal(&sshd, "-CONT");
    std::thread::sleep(Duration::from_secs(TTL_SECS + 2));

    // B takes over: a newer version of www, deployed everywhere.
    let out = certctl(&p.b, &["--lock-wait", "60s", "renew", "--force", "www"]);
    assert_eq!(out.status.code(), Some(0), "b renew: {}", show(&out));
    let new = etcd_live(&p, "www");
    assert_ne!(new, old, "b renewed www");
    let out = certctl(&p.b, &["--lock-wait", "60s", "deploy"]);
    assert_eq!(out.status.code(), Some(0), "b deploy: {}", show(&out));
    for i in 1..=NODES {
        assert!(
            node_version(lab, i, "www").ends_with(new.rsplit('/').next().unwrap_or(&new)),
            "node{i} links b's newer www"
        );
    }
    let nodes = nodes_snapshot(lab);

    signal(&pid, "-CONT");
    let status = a.wait().expect("wait");
    let log = p.log("a.err");
    assert_eq!(status.code(), Some(3), "the resumed leader exits 3:\n{log}");
    assert_eq!(
        nodes_snapshot(lab),
        nodes,
        "the stale leader put an older version back on a node:\n{log}"
    );
    assert!(
        log.contains("refused this run's step"),
        "node1 itself refused the stale leader:\n{log}"
    );
    // This store's token on node1 is b's: one fence file (per store) new
    // or raised since the test began, holding a lock revision.
    let after = fences(lab, 1);
    let changed: Vec<_> = after
        .iter()
        .filter(|(n, v)| fences_before.get(*n) != Some(*v))
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "one fence file for this store: {changed:?}"
    );
    assert!(
        changed[0].1.trim().parse::<u64>().is_ok(),
        "a lock revision: {changed:?}"
    );
}

/// Node `i`'s fence files (one per store that deployed there) and contents.
fn fences(lab: &Lab, i: usize) -> BTreeMap<String, String> {
    std::fs::read_dir(node_base(lab, i))
        .expect("node base")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".certctl-fence-"))
        .map(|n| {
            let v = std::fs::read_to_string(node_base(lab, i).join(&n)).unwrap_or_default();
            (n, v)
        })
        .collect()
}

/// A report over an etcd prefix that holds no store yet reads it as empty,
/// like a directory store that does not exist yet, and creates nothing
/// there, even with `--prometheus`.
#[test]
fn a_report_on_an_empty_prefix_is_empty_and_creates_no_store() {
    let lab = lab();
    let _s = lab.shared();
    let p = pair(lab);
    let textfile = p.dir.path().join("certctl.prom");
    let out = certctl(
        &p.a,
        &[
            "report",
            "--json",
            "--no-notify",
            "--prometheus",
            textfile.to_str().expect("utf-8"),
        ],
    );
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "a report, not an error: {}",
        show(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    for c in v["certificates"].as_array().expect("certificates") {
        assert!(
            c["store"].is_null() || c["store"]["version"].is_null(),
            "nothing stored: {c}"
        );
    }
    assert!(textfile.exists(), "the textfile is written");
    assert_eq!(p.dump(), "", "the report created keys under {}", p.prefix);
}

/// A version of `www` whose self-signed certificate ended `days_ago` days
/// ago (a negative number: it is still valid).
fn aged_version(store: &acme_core::Store, serial: u8, days_ago: i64) -> String {
    let now = time::OffsetDateTime::now_utc();
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["www.example.test".to_string()]).expect("params");
    params.not_after = now - time::Duration::days(days_ago);
    params.not_before = params.not_after - time::Duration::days(90);
    params.serial_number = Some(rcgen::SerialNumber::from(vec![serial]));
    let cert = params.self_signed(&key).expect("cert");
    let m = acme_core::store::Material {
        cert_pem: cert.pem(),
        chain_pem: String::new(),
        key_pem: acme_core::Secret::new(key.serialize_pem().into_bytes()),
        meta: acme_core::store::ReleaseMeta {
            domains: vec!["www.example.test".into()],
            key_type: acme_core::inventory::KeyType::EcdsaP256,
            serial: format!("{serial:02x}"),
            issuer: "CN=rcgen self signed cert".into(),
            not_before: params.not_before,
            not_after: params.not_after,
            directory: "https://ca.test/dir".into(),
            ari_id: None,
            stored_at: now + time::Duration::seconds(i64::from(serial)),
        },
    };
    let name = acme_core::CertName::new("www").expect("name");
    store.install(&name, &m).expect("install").version
}

/// `certctl store prune` on an etcd store (moved in from a directory
/// store): --dry-run lists the expired old versions and removes nothing;
/// then exactly those go, while the live one, the one before it and any
/// still valid stay.
#[test]
fn store_prune_removes_only_expired_old_versions() {
    // `list --json` (its exit code says media was never issued).
    let www = |cfg: &Path| -> (u64, Option<String>) {
        let out = certctl(cfg, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
        let c = v
            .as_array()
            .expect("array")
            .iter()
            .find(|c| c["name"] == "www")
            .expect("www")
            .clone();
        (
            c["versions"].as_u64().unwrap_or(0),
            c["version"].as_str().map(String::from),
        )
    };
    let lab = lab();
    let _s = lab.shared();
    let p = pair(lab);
    let src = p.dir.path().join("src");
    let (store, _) = acme_core::Store::open(&src).expect("open");
    // Oldest first, all expired but the newest (the live one); the one
    // before the live one stays whatever its age.
    let versions: Vec<String> = [(1, 30), (2, 20), (3, 10), (4, 5), (5, -5)]
        .into_iter()
        .map(|(serial, days_ago)| aged_version(&store, serial, days_ago))
        .collect();
    let out = certctl(&p.a, &["store", "import", src.to_str().expect("utf-8")]);
    assert!(out.status.success(), "import: {}", show(&out));

    let out = certctl(
        &p.a,
        &["store", "prune", "--keep", "1", "--dry-run", "--json"],
    );
    assert!(out.status.success(), "prune --dry-run: {}", show(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let would: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["version"].as_str().expect("version"))
        .collect();
    assert_eq!(
        would,
        [
            versions[0].as_str(),
            versions[1].as_str(),
            versions[2].as_str()
        ]
    );
    assert_eq!(www(&p.a).0, 5, "--dry-run removed nothing");

    let out = certctl(&p.a, &["store", "prune", "--keep", "1"]);
    assert!(out.status.success(), "prune: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 of 3 expired old versions removed"),
        "{text}"
    );
    let (count, live) = www(&p.a);
    assert_eq!(
        count, 2,
        "left: the one before the live one, and the live one"
    );
    assert_eq!(live.as_deref(), Some(versions[4].as_str()));
    let dump = p.dump();
    for v in &versions[..3] {
        assert!(!dump.contains(&format!("/{v}/")), "{v} is gone whole");
    }
    for v in &versions[3..] {
        assert!(dump.contains(&format!("/{v}/")), "{v} stays");
    }
}

#[test]
fn with_one_etcd_member_down_runs_still_succeed() {
    let lab = lab();
    let _x = lab.exclusive();
    let p = pair(lab);
    lab.must(&["etcd", "stop", "1"]);
    let _restore = certctl_lab_tests::Restore(lab, &["etcd", "start", "1"]);
    let out = certctl(&p.a, &["run", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    settled(lab, &p.a);
}

/// Two members down: runs fail clearly and change no node; once the members
/// are back, the next run completes.
#[test]
fn without_quorum_runs_fail_clearly_and_change_no_node() {
    let lab = lab();
    let _x = lab.exclusive();
    let p = pair(lab);
    let out = certctl(&p.a, &["run", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let nodes = nodes_snapshot(lab);

    lab.must(&["etcd", "stop", "2"]);
    lab.must(&["etcd", "stop", "3"]);
    {
        let _restore = certctl_lab_tests::Restore(lab, &["etcd", "start", "2"]);
        let _restore3 = certctl_lab_tests::Restore(lab, &["etcd", "start", "3"]);
        for args in [
            &["run", "--no-notify"][..],
            &["issue", "www"][..],
            &["deploy"][..],
        ] {
            let out = certctl(&p.a, args);
            assert_ne!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("etcd"), "{args:?} names etcd: {err}");
            assert_eq!(nodes_snapshot(lab), nodes, "{args:?} changed a node");
        }
    }
    let out = certctl(&p.a, &["issue", "www"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = certctl(&p.a, &["run", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let store = store_versions(&p.a);
    assert_eq!(store["www"].0, 2, "www issued again once quorum was back");
    for i in 1..=NODES {
        assert_eq!(
            Some(node_version(lab, i, "www")),
            store["www"].1,
            "node{i} links the new www"
        );
    }
}

#[test]
fn a_wrong_key_file_is_named_and_nothing_is_overwritten() {
    let lab = lab();
    let _x = lab.exclusive();
    let p = pair(lab);
    let out = certctl(&p.a, &["run", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let nodes = nodes_snapshot(lab);
    let stored = p.revisions();

    let wrong = p.dir.path().join("wrong.key");
    keygen(&wrong);
    let text = std::fs::read_to_string(&p.a).expect("inventory");
    let cfg = p.dir.path().join("wrong.toml");
    std::fs::write(
        &cfg,
        text.replace(&p.key.display().to_string(), &wrong.display().to_string()),
    )
    .expect("write");
    for args in [
        &["run", "--no-notify"][..],
        &["deploy"][..],
        &["issue", "www"][..],
    ] {
        let out = certctl(&cfg, args);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&wrong.display().to_string()),
            "{args:?} names the key file: {err}"
        );
        assert_eq!(p.revisions(), stored, "{args:?} overwrote the store");
        assert_eq!(nodes_snapshot(lab), nodes, "{args:?} changed a node");
    }

    // A missing key file is as clear.
    std::fs::remove_file(&wrong).expect("rm");
    let out = certctl(&cfg, &["list"]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&wrong.display().to_string()),
        "{}",
        show(&out)
    );
}

/// The parts of a report that must not depend on the store's backend.
fn report_facts(cfg: &Path) -> serde_json::Value {
    let out = certctl(cfg, &["report", "--json"]);
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 1),
        "report: {}",
        show(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    let certs = v["certificates"].as_array().expect("certificates");
    serde_json::Value::Array(
        certs
            .iter()
            .map(|c| {
                let mut store = c["store"].clone();
                if let Some(o) = store.as_object_mut() {
                    o.remove("seconds_left");
                }
                let nodes: Vec<serde_json::Value> = c["nodes"]
                    .as_array()
                    .expect("nodes")
                    .iter()
                    .map(|n| {
                        serde_json::json!({
                            "node": n["node"],
                            "severity": n["severity"],
                            "deployed_version": n["deployed_version"],
                            "served": n["served"].as_array().map(|s| s.iter().map(|s| {
                                s["certificate"]["leaf"]["serial"].clone()
                            }).collect::<Vec<_>>()),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": c["name"],
                    "severity": c["severity"],
                    "findings": c["findings"],
                    "store": store,
                    "nodes": nodes,
                })
            })
            .collect(),
    )
}

/// SHA-256 of every file under `archive/` of a directory store.
fn archive_hashes(store: &Path) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let archive = store.join("archive");
    for cert in std::fs::read_dir(&archive).expect("archive").flatten() {
        for version in std::fs::read_dir(cert.path()).expect("versions").flatten() {
            let vname = version.file_name().to_string_lossy().into_owned();
            if vname.starts_with('.') {
                continue;
            }
            for f in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
                let out = Command::new("sha256sum")
                    .arg(version.path().join(f))
                    .output()
                    .expect("sha256sum");
                let sum = String::from_utf8_lossy(&out.stdout);
                map.insert(
                    format!("{}/{vname}/{f}", cert.file_name().to_string_lossy()),
                    sum.split_whitespace().next().unwrap_or("").to_string(),
                );
            }
        }
    }
    map
}

/// The demo's way of working (a directory store) moved to etcd: the report
/// is the same from both, and the store exported back holds the same bytes.
/// Then the data key is rotated, and the old key no longer opens it.
#[test]
fn a_directory_store_moves_to_etcd_and_back_with_the_same_report() {
    let lab = lab();
    let _x = lab.exclusive();
    let p = pair(lab);
    let dir_cfg = inventory(lab, &p.dir.path().join("dir"), "");
    let dir_store = p.dir.path().join("dir/store");
    let out = certctl(&dir_cfg, &["run", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let out = certctl(
        &p.a,
        &["store", "import", dir_store.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(0), "import: {}", show(&out));
    // Importing again is a no-op, not an error and not an overwrite.
    let stored = p.revisions();
    let out = certctl(
        &p.a,
        &["store", "import", dir_store.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(0), "import again: {}", show(&out));
    assert_eq!(p.revisions(), stored, "a second import rewrote the store");

    assert_eq!(report_facts(&dir_cfg), report_facts(&p.a));
    assert_eq!(store_versions(&dir_cfg), store_versions(&p.a));

    let back = p.dir.path().join("back");
    let out = certctl(&p.b, &["store", "export", back.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "export: {}", show(&out));
    let hashes = archive_hashes(&dir_store);
    assert!(!hashes.is_empty());
    assert_eq!(archive_hashes(&back), hashes);

    // Rotating the data key: the new key opens everything, the old none.
    let new_key = p.dir.path().join("new.key");
    keygen(&new_key);
    let out = certctl(&p.a, &["store", "rekey", new_key.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "rekey: {}", show(&out));
    // Re-running a finished rotation is harmless.
    let out = certctl(&p.a, &["store", "rekey", new_key.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "rekey again: {}", show(&out));
    let text = std::fs::read_to_string(&p.a).expect("inventory");
    let rotated = p.dir.path().join("rotated.toml");
    std::fs::write(
        &rotated,
        text.replace(&p.key.display().to_string(), &new_key.display().to_string()),
    )
    .expect("write");
    let again = p.dir.path().join("again");
    let out = certctl(
        &rotated,
        &["store", "export", again.to_str().expect("utf-8")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "export after rekey: {}",
        show(&out)
    );
    assert_eq!(archive_hashes(&again), hashes);
    let old = p.dir.path().join("old");
    let out = certctl(&p.a, &["store", "export", old.to_str().expect("utf-8")]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the old key still opens the store"
    );
}

/// The `[store]` table of `p`, with the lab's TLS listeners (`https://…:2381`)
/// instead of plain HTTP and `extra` (tls_ca, tls_cert, tls_key lines).
fn tls_inventory(lab: &Lab, p: &Pair, name: &str, extra: &str) -> PathBuf {
    let out = lab.sh(&["etcd", "endpoints", "https"]);
    let https = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(https.starts_with("https://"), "{}", show(&out));
    let table = etcd_table(&https, &p.prefix, &p.key) + extra;
    inventory(lab, &p.dir.path().join(name), &table)
}

#[test]
fn a_store_over_tls_with_a_client_certificate_works_and_a_refused_handshake_is_named() {
    let lab = lab();
    let _s = lab.shared();
    let p = pair(lab);
    let tls = lab.dir.join("etcd/tls");
    let lab_ca = lab.dir.join("ca/lab-ca.pem");
    let good = tls_inventory(
        lab,
        &p,
        "tls",
        &format!(
            "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            lab_ca.display(),
            tls.join("client.pem").display(),
            tls.join("client.key").display()
        ),
    );
    // The TLS listeners take nothing else: a store written through them was
    // written over TLS, with the client certificate.
    let out = certctl(&good, &["issue", "www"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = certctl(&good, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("www"),
        "{}",
        show(&out)
    );
    let stored = p.revisions();
    assert!(
        stored.keys().any(|k| k.starts_with("live/www")),
        "the version is in etcd: {stored:?}"
    );
    // Over plain HTTP the same store reads the same.
    let plain = certctl(&p.a, &["list", "--json"]);
    assert_eq!(plain.stdout, out.stdout, "{}", show(&plain));

    // A CA that did not sign the members' certificates.
    let other = p.dir.path().join("other-ca.pem");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other, params.self_signed(&key).expect("ca").pem()).expect("write");
    // No client certificate, to a cluster that wants one.
    let anonymous = format!("tls_ca = \"{}\"\n", lab_ca.display());
    for (name, extra, says) in [
        (
            "wrong-ca",
            format!(
                "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                other.display(),
                tls.join("client.pem").display(),
                tls.join("client.key").display()
            ),
            "UnknownIssuer",
        ),
        ("anonymous", anonymous, "BadCertificate"),
    ] {
        let cfg = tls_inventory(lab, &p, name, &extra);
        let out = certctl(&cfg, &["issue", "www"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{name}: {}", show(&out));
        assert!(
            err.contains("TLS with etcd member https://127.0.2.") && err.contains(says),
            "{name}: names the member and why: {}",
            show(&out)
        );
        assert_eq!(p.revisions(), stored, "{name}: the store changed");
    }

    // A client key others may read is refused before any connection.
    let loose = p.dir.path().join("loose.key");
    std::fs::copy(tls.join("client.key"), &loose).expect("copy");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cfg = tls_inventory(
        lab,
        &p,
        "loose",
        &format!(
            "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            lab_ca.display(),
            tls.join("client.pem").display(),
            loose.display()
        ),
    );
    let out = certctl(&cfg, &["list"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        show(&out)
    );
}
