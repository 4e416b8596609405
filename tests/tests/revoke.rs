//! Account key rollover (RFC 8555 §7.3.5) and revocation (§7.6) against the
//! lab's pebble, through the `certctl` binary; the states a killed rollover
//! leaves are made with the library's own steps and by SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use acme_core::acme::{self, AccountKeyRollover, AccountLookup, CaConfig};
use certctl_lab_tests::{cert, certctl, lab, show, unique, Lab};

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An inventory with one certificate `name` for a fresh domain, no nodes.
fn inventory(lab: &Lab, dir: &Path, name: &str) -> PathBuf {
    let d = format!("{}.example.test", unique(name));
    lab.inventory(dir, &cert(name, &[&d], ""), 0, |t| t)
}

fn show_json(cfg: &Path) -> serde_json::Value {
    let out = ok(&certctl(cfg, &["account", "show", "--json"]));
    serde_json::from_str(&out).expect("json")
}

fn ca_and_store(cfg: &Path) -> (CaConfig, acme_core::Store) {
    acme_core::install_crypto_provider();
    let inv = acme_core::Inventory::load(cfg).expect("inventory");
    let (store, _) = acme_core::Store::open(&inv.store).expect("store");
    (CaConfig::primary(&inv), store)
}

/// What pebble says about the account JSON `stored`.
async fn lookup(ca: &CaConfig, stored: &[u8]) -> Result<AccountLookup, acme::AcmeError> {
    acme::look_up_account(ca, Some(&acme_core::Secret::new(stored.to_vec()))).await
}

fn account_file(dir: &Path) -> PathBuf {
    let accounts = dir.join("store/accounts");
    std::fs::read_dir(&accounts)
        .expect("accounts")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".json") && !n.ends_with(".pending.json") && !n.starts_with('.')
        })
        .expect("an account file")
}

fn pending_exists(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("store/accounts"))
        .expect("accounts")
        .any(|e| {
            e.expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".pending.json")
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn account_show_prints_url_contact_key_type_and_thumbprint_never_the_key() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(lab, dir.path(), "acct");
    ok(&certctl(&cfg, &["issue", "acct"]));
    let info = show_json(&cfg);
    assert!(
        info["url"]
            .as_str()
            .expect("url")
            .starts_with("https://127.0.0.1:14000/"),
        "{info}"
    );
    assert_eq!(info["key_type"], "ecdsa-p256");
    assert_eq!(info["thumbprint"].as_str().expect("thumb").len(), 43);
    assert!(info["pending_thumbprint"].is_null());
    // The key itself is printed nowhere.
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(account_file(dir.path())).expect("read"))
            .expect("json");
    let key = stored["credentials"]["key_pkcs8"].as_str().expect("key");
    let table = ok(&certctl(&cfg, &["account", "show"]));
    assert!(table.contains(info["thumbprint"].as_str().expect("thumb")));
    assert!(!table.contains(&key[..20]) && !info.to_string().contains(&key[..20]));
}

#[tokio::test(flavor = "multi_thread")]
async fn rollover_changes_the_key_the_old_one_is_refused_and_issuance_goes_on() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(lab, dir.path(), "roll");
    ok(&certctl(&cfg, &["issue", "roll"]));
    let before = show_json(&cfg);
    let old = std::fs::read(account_file(dir.path())).expect("read");
    let out: serde_json::Value =
        serde_json::from_str(&ok(&certctl(&cfg, &["account", "rollover", "--json"])))
            .expect("json");
    assert_eq!(out["old_thumbprint"], before["thumbprint"]);
    let after = show_json(&cfg);
    assert_eq!(after["thumbprint"], out["new_thumbprint"]);
    assert_ne!(after["thumbprint"], before["thumbprint"]);
    assert_eq!(after["url"], before["url"], "same account");
    assert!(!pending_exists(dir.path()));
    let (ca, _) = ca_and_store(&cfg);
    // Pebble no longer knows the old key, and knows the new one.
    assert!(
        matches!(
            lookup(&ca, &old).await,
            Err(acme::AcmeError::AccountUnknown { .. })
        ),
        "the old key still works"
    );
    let new = std::fs::read(account_file(dir.path())).expect("read");
    assert_eq!(
        lookup(&ca, &new).await.expect("lookup"),
        AccountLookup::Exists(after["url"].as_str().expect("url").to_string())
    );
    ok(&certctl(&cfg, &["issue", "roll"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn rollover_cut_after_storing_the_new_key_keeps_the_old_key_on_the_next_run() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(lab, dir.path(), "cut1");
    ok(&certctl(&cfg, &["issue", "cut1"]));
    let before = show_json(&cfg);
    let (ca, store) = ca_and_store(&cfg);
    // The state a kill leaves between storing the key and telling the CA.
    let (step, _) = AccountKeyRollover::prepare(&ca, &store)
        .await
        .expect("prepare");
    let pending = step.new_thumbprint();
    drop(step);
    let mid = show_json(&cfg);
    assert_eq!(mid["thumbprint"], before["thumbprint"]);
    assert_eq!(mid["pending_thumbprint"], pending.as_str());
    // The next run settles it: the CA never took the new key.
    ok(&certctl(&cfg, &["issue", "cut1"]));
    let after = show_json(&cfg);
    assert_eq!(after["thumbprint"], before["thumbprint"]);
    assert!(after["pending_thumbprint"].is_null());
    assert!(!pending_exists(dir.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn rollover_cut_after_the_ca_accepted_swaps_the_new_key_in_on_the_next_run() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(lab, dir.path(), "cut2");
    ok(&certctl(&cfg, &["issue", "cut2"]));
    let before = show_json(&cfg);
    let (ca, store) = ca_and_store(&cfg);
    // The state a kill leaves between the CA's yes and the swap.
    let (step, _) = AccountKeyRollover::prepare(&ca, &store)
        .await
        .expect("prepare");
    step.tell_ca().await.expect("keyChange");
    let pending = step.new_thumbprint();
    drop(step);
    // The stored key is the old one, which the CA no longer accepts.
    let old = std::fs::read(account_file(dir.path())).expect("read");
    assert!(matches!(
        lookup(&ca, &old).await,
        Err(acme::AcmeError::AccountUnknown { .. })
    ));
    // The preflight (which writes nothing) says so, as a warning, and never
    // advises moving the account file away.
    let out = certctl(&cfg, &["check", "--online", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let acct = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["check"] == "CA directory and account")
        .expect("account row");
    assert_eq!(acct["status"], "warning", "{acct}");
    assert!(
        !acct.to_string().contains("move the stored account"),
        "{acct}"
    );
    assert!(pending_exists(dir.path()), "check wrote nothing");
    ok(&certctl(&cfg, &["issue", "cut2"]));
    let after = show_json(&cfg);
    assert_eq!(after["thumbprint"], pending.as_str());
    assert_eq!(after["url"], before["url"]);
    assert!(!pending_exists(dir.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn rollover_killed_with_sigkill_at_several_moments_leaves_a_key_the_ca_accepts() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(lab, dir.path(), "kill");
    ok(&certctl(&cfg, &["issue", "kill"]));
    let (ca, _) = ca_and_store(&cfg);
    let mut pending_seen = 0;
    for delay_ms in [0u64, 10, 30, 60, 100, 150, 200, 300, 500] {
        let mut child = std::process::Command::new(certctl_lab_tests::certctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["account", "rollover"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if pending_exists(dir.path()) {
            pending_seen += 1;
        }
        // The next run settles whatever was left and rolls over again.
        ok(&certctl(&cfg, &["account", "rollover"]));
        assert!(!pending_exists(dir.path()));
        let stored = std::fs::read(account_file(dir.path())).expect("read");
        assert!(
            matches!(lookup(&ca, &stored).await, Ok(AccountLookup::Exists(_))),
            "after a kill at {delay_ms} ms the stored key is not the CA's"
        );
    }
    eprintln!("timed kills that left a pending key: {pending_seen} of 9");
    // Killed the moment the pending key appears, or up to 16 ms later:
    // while keyChange is on its way, or after the CA answered and before
    // the swap.
    let (mut cut, mut accepted) = (0, 0);
    for after_us in [0u64, 500, 1000, 2000, 4000, 8000, 16000] {
        let mut child = std::process::Command::new(certctl_lab_tests::certctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["account", "rollover"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let start = std::time::Instant::now();
        while !pending_exists(dir.path())
            && child.try_wait().expect("wait").is_none()
            && start.elapsed() < Duration::from_secs(30)
        {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(after_us));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if pending_exists(dir.path()) {
            cut += 1;
            let stored = std::fs::read(account_file(dir.path())).expect("read");
            if matches!(
                lookup(&ca, &stored).await,
                Err(acme::AcmeError::AccountUnknown { .. })
            ) {
                // The CA took the new key; the store still holds the old one.
                accepted += 1;
            }
        }
        ok(&certctl(&cfg, &["account", "show"]));
        ok(&certctl(&cfg, &["account", "rollover"]));
        assert!(!pending_exists(dir.path()));
        let stored = std::fs::read(account_file(dir.path())).expect("read");
        assert!(
            matches!(lookup(&ca, &stored).await, Ok(AccountLookup::Exists(_))),
            "after a kill with the pending key stored, the stored key is not the CA's"
        );
    }
    assert!(cut > 0, "no kill landed while the pending key was stored");
    eprintln!(
        "kills at the pending key that left it: {cut} of 7, {accepted} of them after the CA took the new key"
    );
    ok(&certctl(&cfg, &["issue", "kill"]));
}

/// Pebble's management API on the serial (hex) of the live version of
/// `name`: its `Status` ("Valid" or "Revoked") and the whole answer.
fn pebble_status(dir: &Path, name: &str) -> (String, serde_json::Value) {
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("store/live").join(name).join("meta.json")).expect("meta"),
    )
    .expect("json");
    let serial = meta["serial"].as_str().expect("serial");
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10"])
        .arg(format!(
            "https://127.0.0.1:15000/cert-status-by-serial/{serial}"
        ))
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("pebble said {}", show(&out)));
    (v["Status"].as_str().unwrap_or_default().to_string(), v)
}

fn list_json(cfg: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&certctl(cfg, &["list", "--json"]))).expect("json")
}

#[test]
fn revoke_by_the_account_key_is_recorded_listed_and_reported() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(lab, dir.path(), "rva");
    ok(&certctl(&cfg, &["issue", "rva"]));
    assert_eq!(pebble_status(dir.path(), "rva").0, "Valid");
    let rec: serde_json::Value = serde_json::from_str(&ok(&certctl(
        &cfg,
        &["revoke", "rva", "--reason", "superseded", "--json"],
    )))
    .expect("json");
    assert_eq!(rec["signed_by"], "account");
    assert_eq!(rec["reason"], "superseded");
    assert_eq!(rec["already"], false);
    let (status, whole) = pebble_status(dir.path(), "rva");
    assert_eq!(status, "Revoked", "{whole}");
    // The store's record, in list and report.
    let list = list_json(&cfg);
    let revoked = &list[0]["revoked"];
    assert_eq!(revoked[0]["version"], list[0]["version"], "{list}");
    assert!(ok(&certctl(&cfg, &["list"])).contains("live (superseded)"));
    let out = certctl(&cfg, &["report", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let findings = report["certificates"][0]["findings"]
        .as_array()
        .expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "revoked" && f["severity"] == "warning"),
        "{report}"
    );
    // Again: the CA says it is revoked already, which is not a failure.
    let again: serde_json::Value =
        serde_json::from_str(&ok(&certctl(&cfg, &["revoke", "rva", "--json"]))).expect("json");
    assert_eq!(again["already"], true);
}

#[test]
fn revoke_for_key_compromise_is_signed_by_the_certificates_own_key() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, key) in [("rvk", "ecdsa-p256"), ("rvr", "rsa-2048")] {
        let d = format!("{}.example.test", unique(name));
        let cfg = lab.inventory(
            dir.path(),
            &cert(name, &[&d], &format!("key = \"{key}\"")),
            0,
            |t| t,
        );
        ok(&certctl(&cfg, &["issue", name]));
        let rec: serde_json::Value = serde_json::from_str(&ok(&certctl(
            &cfg,
            &["revoke", name, "--reason", "keyCompromise", "--json"],
        )))
        .expect("json");
        assert_eq!(rec["signed_by"], "certificate_key", "{key}");
        let (status, whole) = pebble_status(dir.path(), name);
        assert_eq!(status, "Revoked", "{key}: {whole}");
    }
}

#[test]
fn revoke_refuses_a_version_nodes_serve_names_them_and_a_forced_one_is_critical() {
    let lab = lab();
    // It deploys to the shared nodes.
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = lab.inventory(
        dir.path(),
        &cert(
            "www",
            &["www.example.test", "example.test"],
            "groups = [\"edge\"]",
        ),
        2,
        |t| t,
    );
    ok(&certctl(&cfg, &["issue", "www"]));
    ok(&certctl(&cfg, &["deploy"]));
    let out = certctl(&cfg, &["revoke", "www", "--reason", "keyCompromise"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node1") && err.contains("node2") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        pebble_status(dir.path(), "www").0,
        "Valid",
        "nothing revoked"
    );
    assert!(list_json(&cfg)[0]["revoked"].is_null());

    ok(&certctl(
        &cfg,
        &["revoke", "www", "--reason", "keyCompromise", "--force"],
    ));
    assert_eq!(pebble_status(dir.path(), "www").0, "Revoked");
    let out = certctl(&cfg, &["report", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for node in report["certificates"][0]["nodes"]
        .as_array()
        .expect("nodes")
    {
        let served = node["served"].as_array().expect("served");
        assert!(
            served.iter().all(|s| s["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .any(|f| f["kind"] == "revoked" && f["severity"] == "critical")),
            "{node}"
        );
    }
    // Leave the nodes serving a certificate that is not revoked.
    ok(&certctl(&cfg, &["issue", "www"]));
    ok(&certctl(&cfg, &["deploy"]));
}

/// Pebble's status of version `version` of `name`.
fn pebble_status_of(dir: &Path, name: &str, version: &str) -> String {
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("store/archive")
                .join(name)
                .join(version)
                .join("meta.json"),
        )
        .expect("meta"),
    )
    .expect("json");
    let serial = meta["serial"].as_str().expect("serial");
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10"])
        .arg(format!(
            "https://127.0.0.1:15000/cert-status-by-serial/{serial}"
        ))
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("pebble said {}", show(&out)));
    v["Status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn rotate_all_with_a_node_down_reports_it_keeps_its_version_valid_and_completes_later() {
    let lab = lab();
    // It deploys to the shared nodes and stops node3's sshd.
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let names = ["www", "media", "wild"];
    let certs = [
        cert(
            "www",
            &["www.example.test", "example.test"],
            "groups = [\"edge\"]\nreuse_key = true",
        ),
        cert("media", &["media.example.test"], "groups = [\"edge\"]"),
        cert(
            "wild",
            &["*.cdn.example.test", "cdn.example.test"],
            "groups = [\"edge\"]",
        ),
    ]
    .concat();
    let cfg = lab.inventory(dir.path(), &certs, 5, |t| t);
    ok(&certctl(&cfg, &["issue", "www", "media", "wild"]));
    ok(&certctl(&cfg, &["deploy"]));
    let list = list_json(&cfg);
    let old: Vec<String> = names
        .iter()
        .map(|n| {
            list.as_array()
                .expect("rows")
                .iter()
                .find(|r| r["name"] == *n)
                .expect("row")["version"]
                .as_str()
                .expect("version")
                .to_string()
        })
        .collect();

    let _restore = certctl_lab_tests::Restore(lab, &["start", "sshd", "3"]);
    lab.must(&["stop", "sshd", "3"]);
    let out = certctl(
        &cfg,
        &["rotate", "--all", "--reason", "keyCompromise", "--json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut new = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let r = rows
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["name"] == *n)
            .expect("row");
        let v = r["new_version"].as_str().expect("issued").to_string();
        assert_ne!(v, old[i]);
        assert_eq!(r["moved"].as_array().expect("moved").len(), 4, "{r}");
        assert_eq!(r["exposed"][0]["node"], "node3", "{r}");
        assert_eq!(r["exposed"][0]["version"], old[i].as_str(), "{r}");
        assert_eq!(r["kept"][0]["version"], old[i].as_str(), "{r}");
        assert_eq!(r["kept"][0]["nodes"][0], "node3", "{r}");
        assert_eq!(r["revoked"].as_array().expect("revoked").len(), 0, "{r}");
        assert_eq!(pebble_status_of(dir.path(), n, &old[i]), "Valid", "{n}");
        new.push(v);
    }
    // The new key is fresh even where reuse_key is set.
    let key = |v: &str| {
        std::fs::read(
            dir.path()
                .join("store/archive/www")
                .join(v)
                .join("privkey.pem"),
        )
        .expect("key")
    };
    assert_ne!(key(&old[0]), key(&new[0]));

    // Again while node3 is down: nothing issued again, the same report in words.
    let out = certctl(&cfg, &["rotate", "--all", "--reason", "keyCompromise"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for (i, n) in names.iter().enumerate() {
        assert!(
            text.contains(&format!(
                "{n}: new version {} (issued by an earlier rotate)",
                new[i]
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("EXPOSED: node3 still has version {}", old[i])),
            "{text}"
        );
    }
    assert!(text.contains("NOT REVOKED"), "{text}");

    lab.must(&["start", "sshd", "3"]);
    let out = certctl(
        &cfg,
        &["rotate", "--all", "--reason", "keyCompromise", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for (i, n) in names.iter().enumerate() {
        let r = rows
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["name"] == *n)
            .expect("row");
        assert_eq!(r["new_version"], new[i].as_str(), "not issued again: {r}");
        assert_eq!(r["issued_now"], false);
        assert_eq!(r["moved"].as_array().expect("moved").len(), 5, "{r}");
        assert_eq!(r["revoked"][0]["version"], old[i].as_str(), "{r}");
        assert_eq!(r["revoked"][0]["signed_by"], "certificate_key", "{r}");
        assert_eq!(pebble_status_of(dir.path(), n, &old[i]), "Revoked", "{n}");
    }
    // The store's record shows it, and nothing revoked is served.
    let list = ok(&certctl(&cfg, &["list"]));
    assert!(list.contains("1 older"), "{list}");
    let out = certctl(&cfg, &["report", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        !report.to_string().contains("\"kind\":\"revoked\""),
        "{report}"
    );
    for (i, n) in names.iter().enumerate() {
        let c = report["certificates"]
            .as_array()
            .expect("certificates")
            .iter()
            .find(|c| c["name"] == *n)
            .expect("certificate");
        assert_eq!(c["revoked"][0]["version"], old[i].as_str(), "{c}");
        assert_eq!(c["revoked"][0]["reason"], "keyCompromise", "{c}");
    }
}
