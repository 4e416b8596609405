//! Issuance against the lab: real pebble, real bind9 with TSIG, through the
//! `certctl` binary as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use certctl_lab_tests::{cert, certctl, head, lab, show, txt, unique, Lab, Restore};

/// An inventory with the lab's account and solver, only `certs` and no nodes.
fn inventory(lab: &Lab, dir: &Path, certs: &str) -> PathBuf {
    lab.inventory(dir, certs, 0, |t| t)
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", show(out));
}

fn live(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join("store/live").join(name);
    let target = std::fs::read_link(&link).expect("live link");
    assert!(
        target.is_relative(),
        "live link must be relative: {target:?}"
    );
    link.parent().expect("parent").join(target)
}

/// The leaf verifies against pebble's current roots through the stored chain.
fn verifies(lab: &Lab, version_dir: &Path) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(lab.pebble_roots())
        .arg("-untrusted")
        .arg(version_dir.join("chain.pem"))
        .arg(version_dir.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "chain does not verify: {}",
        show(&out)
    );
}

fn sans(version_dir: &Path) -> Vec<String> {
    let pem = std::fs::read(version_dir.join("cert.pem")).expect("cert");
    let der = pem_der(&pem);
    let (_, c) = x509_parser::parse_x509_certificate(&der).expect("parse");
    let mut v: Vec<String> = c
        .subject_alternative_name()
        .expect("san ext")
        .expect("has san")
        .value
        .general_names
        .iter()
        .map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    v.sort();
    v
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).expect("pem");
    p.contents
}

fn key_mode(version_dir: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(version_dir.join("privkey.pem"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn one_name_is_issued_verified_and_leaves_no_txt_record() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = format!("{}.example.test", unique("one"));
    let cfg = inventory(lab, dir.path(), &cert("one", &[&d], ""));
    ok(&certctl(&cfg, &["issue", "one"]));
    let v = live(dir.path(), "one");
    verifies(lab, &v);
    assert_eq!(sans(&v), vec![d.clone()]);
    assert_eq!(key_mode(&v), 0o600);
    assert_eq!(txt(&format!("_acme-challenge.{d}")), "");
}

#[test]
fn five_names_in_one_order() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let u = unique("five");
    let names: Vec<String> = (1..=5).map(|i| format!("{u}-{i}.example.test")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let cfg = inventory(lab, dir.path(), &cert("five", &refs, ""));
    ok(&certctl(&cfg, &["issue", "five"]));
    let v = live(dir.path(), "five");
    verifies(lab, &v);
    let mut want = names.clone();
    want.sort();
    assert_eq!(sans(&v), want);
    for n in &names {
        assert_eq!(txt(&format!("_acme-challenge.{n}")), "", "{n}");
    }
}

#[test]
fn wildcard_with_its_apex_shares_one_challenge_name() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = format!("{}.example.test", unique("wild"));
    let wildcard = format!("*.{base}");
    let cfg = inventory(lab, dir.path(), &cert("wild", &[&wildcard, &base], ""));
    ok(&certctl(&cfg, &["issue", "wild"]));
    let v = live(dir.path(), "wild");
    verifies(lab, &v);
    let mut want = vec![wildcard, base.clone()];
    want.sort();
    assert_eq!(sans(&v), want);
    assert_eq!(txt(&format!("_acme-challenge.{base}")), "");
}

#[test]
fn cname_delegated_names_are_solved_in_the_challenge_zone() {
    let lab = lab();
    // The delegated names are fixed in the lab, so don't race other tests on them.
    let _g = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(
        lab,
        dir.path(),
        &format!(
            "{}{}",
            cert("media", &["media.example.test"], ""),
            cert("deleg2", &["deleg2.example.test"], "")
        ),
    );
    ok(&certctl(&cfg, &["issue", "media", "deleg2"]));
    verifies(lab, &live(dir.path(), "media"));
    verifies(lab, &live(dir.path(), "deleg2"));
    assert_eq!(txt("media.challenges.test"), "");
    assert_eq!(txt("deleg2.challenges.test"), "");
}

#[test]
fn rsa_and_ecdsa_keys() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let u = unique("keys");
    let certs = format!(
        "{}{}{}",
        cert(
            "rsa",
            &[&format!("{u}-rsa.example.test")],
            "key = \"rsa-2048\""
        ),
        cert(
            "p384",
            &[&format!("{u}-p384.example.test")],
            "key = \"ecdsa-p384\""
        ),
        cert("p256", &[&format!("{u}-p256.example.test")], "")
    );
    let cfg = inventory(lab, dir.path(), &certs);
    ok(&certctl(&cfg, &["issue", "rsa", "p384", "p256"]));
    for (name, want) in [
        ("rsa", "rsaEncryption"),
        ("p384", "secp384r1"),
        ("p256", "prime256v1"),
    ] {
        let v = live(dir.path(), name);
        verifies(lab, &v);
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(v.join("cert.pem"))
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(want), "{name}: expected {want}");
        assert_eq!(key_mode(&v), 0o600);
    }
}

#[test]
fn renew_only_when_due() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = format!("{}.example.test", unique("renew"));
    let cfg = inventory(lab, dir.path(), &cert("r", &[&d], ""));
    ok(&certctl(&cfg, &["issue", "r"]));
    let first = live(dir.path(), "r");

    // Freshly issued: not due; nothing changes.
    let out = certctl(&cfg, &["renew", "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["result"], "not_due", "{v}");
    assert_eq!(live(dir.path(), "r"), first);

    // Renew 2000 days before expiry: due now. Dry run first changes nothing.
    let cfg = inventory(
        lab,
        dir.path(),
        &cert("r", &[&d], "renew_before = \"2000d\""),
    );
    let out = certctl(&cfg, &["renew", "--dry-run", "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["result"], "would_issue", "{v}");
    assert_eq!(v[0]["reason"]["rule"], "renew_before", "{v}");
    assert_eq!(live(dir.path(), "r"), first);

    let out = certctl(&cfg, &["renew", "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["result"], "issued", "{v}");
    let second = live(dir.path(), "r");
    assert_ne!(second, first);
    verifies(lab, &second);
    // The previous version is kept for rollback.
    assert!(first.join("fullchain.pem").exists());
}

#[test]
fn wrong_tsig_secret_names_key_and_server_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "d3Jvbmcgc2VjcmV0IGZvciB0ZXN0aW5nIG9ubHkhIQ==").expect("write");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let d = format!("{}.example.test", unique("tsig"));
    let cfg = lab.inventory_in(dir.path(), |text| {
        let head = head(&text).replace(
            &format!(
                "tsig_secret_file = \"{}\"",
                lab.dir.join("tsig.secret").display()
            ),
            &format!("tsig_secret_file = \"{}\"", wrong.display()),
        );
        format!("{head}\n{}", cert("t", &[&d], ""))
    });
    let out = certctl(&cfg, &["issue", "t"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certctl-key"), "{}", show(&out));
    assert!(err.contains("127.0.0.1:53"), "{}", show(&out));
    assert!(
        !err.contains("d3Jvbmcg"),
        "the secret must never be printed"
    );
    assert_eq!(txt(&format!("_acme-challenge.{d}")), "");
    assert!(!dir.path().join("store/live/t").exists());
}

#[test]
fn dns_primary_down_is_a_clear_error() {
    let lab = lab();
    let _g = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = format!("{}.example.test", unique("down"));
    let cfg = inventory(lab, dir.path(), &cert("down", &[&d], ""));
    lab.must(&["stop", "named"]);
    let _restore = Restore(lab, &["start", "named"]);
    let start = std::time::Instant::now();
    let out = certctl(&cfg, &["issue", "down"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:53"), "{}", show(&out));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "a stopped DNS server must not hang the run"
    );
    assert!(!dir.path().join("store/live/down").exists());
}

#[test]
fn nonce_rejection_is_survived() {
    let lab = lab();
    let _g = lab.exclusive();
    lab.must(&["pebble-restart", "--nonce-reject", "50"]);
    let _restore = Restore(lab, &["pebble-restart"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let u = unique("nonce");
    let certs = format!(
        "{}{}",
        cert(
            "n1",
            &[
                &format!("{u}-a.example.test"),
                &format!("{u}-b.example.test")
            ],
            ""
        ),
        cert("n2", &[&format!("{u}-c.example.test")], "")
    );
    let cfg = inventory(lab, dir.path(), &certs);
    ok(&certctl(&cfg, &["issue", "n1", "n2"]));
    verifies(lab, &live(dir.path(), "n1"));
    verifies(lab, &live(dir.path(), "n2"));
}

/// Every live link resolves to a complete version; no temp files are linked.
fn store_is_intact(dir: &Path) {
    let live_dir = dir.join("store/live");
    let Ok(rd) = std::fs::read_dir(&live_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let target = live(dir, &name);
        for f in [
            "privkey.pem",
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
            "meta.json",
        ] {
            let p = target.join(f);
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(len > 0, "{} is missing or empty", p.display());
        }
        assert_eq!(key_mode(&target), 0o600);
    }
}

#[test]
fn kill_during_issuance_leaves_store_intact_and_next_run_completes() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let u = unique("kill");
    let certs = format!(
        "{}{}{}",
        cert("k1", &[&format!("{u}-1.example.test")], ""),
        cert(
            "k2",
            &[
                &format!("{u}-2.example.test"),
                &format!("{u}-3.example.test")
            ],
            ""
        ),
        cert("k3", &[&format!("*.{u}-4.example.test")], "")
    );
    let cfg = inventory(lab, dir.path(), &certs);
    for delay_ms in [30, 80, 150, 250, 400] {
        let mut child = Command::new(certctl_lab_tests::certctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["renew", "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        store_is_intact(dir.path());
    }
    let out = certctl(&cfg, &["renew"]);
    ok(&out);
    store_is_intact(dir.path());
    for name in ["k1", "k2", "k3"] {
        verifies(lab, &live(dir.path(), name));
    }
    // The interrupted runs' TXT records were swept.
    for n in [
        format!("{u}-1"),
        format!("{u}-2"),
        format!("{u}-3"),
        format!("{u}-4"),
    ] {
        assert_eq!(txt(&format!("_acme-challenge.{n}.example.test")), "", "{n}");
    }
}

#[test]
fn two_runs_at_once_are_serialized() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = format!("{}.example.test", unique("twice"));
    let cfg = inventory(lab, dir.path(), &cert("tw", &[&d], ""));
    let spawn = || {
        Command::new(certctl_lab_tests::certctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["issue", "tw"])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (
            a.join().expect("a").expect("run a"),
            b.join().expect("b").expect("run b"),
        )
    });
    ok(&a);
    ok(&b);
    let versions = std::fs::read_dir(dir.path().join("store/archive/tw"))
        .expect("archive")
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(versions, 2, "both runs issued, one after the other");
    store_is_intact(dir.path());
}

#[test]
fn check_rejects_a_typo_with_its_position() {
    let lab = lab();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(
        lab,
        dir.path(),
        &cert("x", &["x.example.test"], "solvr = \"lab\""),
    );
    let out = certctl(&cfg, &["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `solvr`"), "{}", show(&out));
    assert!(
        err.contains(&format!("{}:", cfg.display())),
        "{}",
        show(&out)
    );
}
