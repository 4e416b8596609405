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
    eprintln!("kills that left a pending key: {pending_seen} of 9");
    ok(&certctl(&cfg, &["issue", "kill"]));
}
