//! DNS-01 solvers against the lab's bind9: primary 127.0.0.1 (takes TSIG
//! UPDATEs) and secondary 127.0.0.2 (fed by NOTIFY). Every test writes its own
//! random value, so tests (and other suites) can share the names.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acme_core::dns::{self, DnsError, DnsSolver};
use acme_core::inventory::{Server, SolverConfig};
use acme_core::{DomainName, Inventory};
use certctl_lab_tests::{lab, show, Lab};

const PRIMARY: &str = "127.0.0.1";
const SECONDARY: &str = "127.0.0.2";

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A value no other test (or run) uses.
fn unique_value(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn domain(s: &str) -> DomainName {
    DomainName::new(s).expect("valid domain")
}

/// The lab's `lab` solver config, as loaded from its inventory, asking the lab's resolver.
fn lab_solver_config(lab: &Lab, dir: &Path, edit: impl FnOnce(String) -> String) -> SolverConfig {
    let path = lab.inventory_in(dir, edit);
    let inv = Inventory::load(&path).expect("lab inventory loads");
    let mut cfg = inv.solvers["lab"].clone();
    if let SolverConfig::Rfc2136(c) = &mut cfg {
        c.resolver.get_or_insert(Server {
            host: PRIMARY.into(),
            port: 53,
        });
        c.propagation_timeout = Duration::from_secs(20);
    }
    cfg
}

fn lab_solver(lab: &Lab, dir: &Path) -> Arc<dyn DnsSolver> {
    dns::solver("lab", &lab_solver_config(lab, dir, |t| t)).expect("solver builds")
}

/// The TXT values `server` serves at `name`, asked without recursion.
fn dig_txt(server: &str, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            &format!("@{server}"),
            "+norec",
            "+short",
            "+time=2",
            "+tries=1",
            "TXT",
            name,
        ])
        .output()
        .expect("run dig");
    assert!(out.status.success(), "dig failed: {}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_matches('"').to_string())
        .collect()
}

/// Waits (bounded) until `server` stops serving `value` at `name`: the
/// secondary learns of deletions through NOTIFY, a few ms later.
fn gone_from(server: &str, name: &str, value: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if !dig_txt(server, name).iter().any(|v| v == value) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn on_both(name: &str, value: &str) -> bool {
    [PRIMARY, SECONDARY]
        .iter()
        .all(|s| dig_txt(s, name).iter().any(|v| v == value))
}

/// Restarts a stopped lab component when dropped, also when the test fails.
struct Restore<'a> {
    lab: &'a Lab,
    what: &'static str,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let out = self.lab.sh(&["start", self.what]);
        if !out.status.success() {
            eprintln!("could not restart {}: {}", self.what, show(&out));
        }
    }
}

fn stop<'a>(lab: &'a Lab, what: &'static str) -> Restore<'a> {
    lab.must(&["stop", what]);
    Restore { lab, what }
}

#[tokio::test]
async fn plain_name_is_presented_on_every_server_and_cleaned_up() -> TestResult {
    let lab = lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let solver = lab_solver(lab, dir.path());
    let value = unique_value("plain");

    let record = solver.present(&domain("www.example.test"), &value).await?;
    assert_eq!(record.fqdn, "_acme-challenge.www.example.test");
    assert_eq!(record.zone, "example.test");
    solver.wait_propagated(&record).await?;
    assert!(on_both(&record.fqdn, &value), "value on both servers");

    solver.cleanup(&record).await?;
    assert!(gone_from(PRIMARY, &record.fqdn, &value));
    assert!(gone_from(SECONDARY, &record.fqdn, &value));
    // Cleanup is idempotent.
    solver.cleanup(&record).await?;
    Ok(())
}

#[tokio::test]
async fn cname_delegated_name_is_written_in_the_challenge_zone() -> TestResult {
    let lab = lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let solver = lab_solver(lab, dir.path());
    let value = unique_value("cname");

    let record = solver
        .present(&domain("media.example.test"), &value)
        .await?;
    assert_eq!(record.fqdn, "media.challenges.test");
    assert_eq!(record.zone, "challenges.test");
    solver.wait_propagated(&record).await?;
    assert!(on_both("media.challenges.test", &value));
    // Nothing was written at the CNAME's owner.
    assert!(!dig_txt(PRIMARY, "_acme-challenge.media.example.test")
        .iter()
        .any(|v| v == &value));

    solver.cleanup(&record).await?;
    assert!(gone_from(PRIMARY, "media.challenges.test", &value));
    assert!(gone_from(SECONDARY, "media.challenges.test", &value));
    Ok(())
}

#[tokio::test]
async fn two_hop_cname_chain_is_followed_to_the_end() -> TestResult {
    let lab = lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let solver = lab_solver(lab, dir.path());
    let value = unique_value("hop2");

    let record = solver
        .present(&domain("deleg2.example.test"), &value)
        .await?;
    assert_eq!(record.fqdn, "deleg2.challenges.test");
    assert_eq!(record.zone, "challenges.test");
    solver.wait_propagated(&record).await?;
    assert!(on_both("deleg2.challenges.test", &value));
    solver.cleanup(&record).await?;
    assert!(gone_from(PRIMARY, "deleg2.challenges.test", &value));
    Ok(())
}

#[tokio::test]
async fn wildcard_and_apex_share_a_name_and_keep_each_others_value() -> TestResult {
    let lab = lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let solver = lab_solver(lab, dir.path());
    let wild_value = unique_value("wild");
    let apex_value = unique_value("apex");

    let wild = solver
        .present(&domain("*.cdn.example.test"), &wild_value)
        .await?;
    let apex = solver
        .present(&domain("cdn.example.test"), &apex_value)
        .await?;
    assert_eq!(wild.domain.as_str(), "cdn.example.test");
    assert_eq!(wild.fqdn, apex.fqdn);
    solver.wait_propagated(&wild).await?;
    solver.wait_propagated(&apex).await?;
    assert!(on_both(&wild.fqdn, &wild_value));
    assert!(on_both(&wild.fqdn, &apex_value));

    solver.cleanup(&wild).await?;
    assert!(gone_from(PRIMARY, &wild.fqdn, &wild_value));
    let left = dig_txt(PRIMARY, &apex.fqdn);
    assert!(left.contains(&apex_value), "apex value kept: {left:?}");

    solver.cleanup(&apex).await?;
    assert!(gone_from(PRIMARY, &apex.fqdn, &apex_value));
    Ok(())
}

#[tokio::test]
async fn wrong_tsig_secret_names_key_and_server_and_writes_nothing() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let lab = lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let wrong = dir.path().join("wrong.secret");
    // Valid base64 of 32 bytes, just not the lab's secret.
    std::fs::write(&wrong, "c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhISE=")?;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600))?;
    let cfg = lab_solver_config(lab, dir.path(), |t| {
        t.replace(
            &format!("\"{}\"", lab.dir.join("tsig.secret").display()),
            &format!("\"{}\"", wrong.display()),
        )
    });
    let solver = dns::solver("lab", &cfg)?;
    let value = unique_value("badsig");

    let err = solver
        .present(&domain("n1.example.test"), &value)
        .await
        .expect_err("a wrong secret must be refused");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, DnsError::Refused { .. }), "{err:?}");
    assert!(msg.contains("`certctl-key`"), "{msg}");
    assert!(msg.contains("127.0.0.1:53"), "{msg}");
    assert!(msg.contains("tsig_secret_file"), "{msg}");
    assert!(!dig_txt(PRIMARY, "_acme-challenge.n1.example.test").contains(&value));
    Ok(())
}

#[tokio::test]
async fn unknown_tsig_key_is_reported_as_badkey() -> TestResult {
    let lab = lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let cfg = lab_solver_config(lab, dir.path(), |t| {
        t.replace("tsig_key = \"certctl-key\"", "tsig_key = \"no-such-key\"")
    });
    let solver = dns::solver("lab", &cfg)?;
    let err = solver
        .present(&domain("n1.example.test"), &unique_value("badkey"))
        .await
        .expect_err("an unknown key must be refused");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("BADKEY"), "{msg}");
    assert!(msg.contains("`no-such-key`"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn stopped_primary_fails_within_seconds_with_a_clear_error() -> TestResult {
    let lab = lab();
    let _lock = lab.exclusive();
    let dir = tempfile::tempdir()?;
    let solver = lab_solver(lab, dir.path());
    let value = unique_value("down");
    let _restore = stop(lab, "named");

    // Bounded here so a hang fails the test instead of stalling the suite.
    let bound = Duration::from_secs(20);
    let err = tokio::time::timeout(bound, solver.present(&domain("n2.example.test"), &value))
        .await?
        .expect_err("named is stopped");
    assert!(matches!(err, DnsError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("127.0.0.1:53"), "{msg}");
    assert!(msg.contains("is the DNS server running"), "{msg}");

    // The UPDATE itself (TCP) fails the same way.
    let record = dns::TxtRecord {
        domain: domain("n2.example.test"),
        fqdn: "_acme-challenge.n2.example.test".into(),
        zone: "example.test".into(),
        value,
    };
    let err = tokio::time::timeout(bound, solver.cleanup(&record))
        .await?
        .expect_err("named is stopped");
    eprintln!("{err}");
    assert!(
        matches!(&err, DnsError::Unreachable { what, .. } if what.contains("UPDATE")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn stopped_secondary_is_named_in_the_propagation_timeout() -> TestResult {
    let lab = lab();
    let _lock = lab.exclusive();
    let dir = tempfile::tempdir()?;
    let mut cfg = lab_solver_config(lab, dir.path(), |t| t);
    if let SolverConfig::Rfc2136(c) = &mut cfg {
        c.propagation_timeout = Duration::from_secs(2);
    }
    let solver = dns::solver("lab", &cfg)?;
    let value = unique_value("nosecondary");
    let restore = stop(lab, "named2");

    let record = solver.present(&domain("n3.example.test"), &value).await?;
    let err = solver
        .wait_propagated(&record)
        .await
        .expect_err("the secondary is stopped");
    match &err {
        DnsError::PropagationTimeout { missing, fqdn, .. } => {
            assert_eq!(fqdn, "_acme-challenge.n3.example.test");
            assert_eq!(missing.len(), 1, "{missing:?}");
            assert!(
                missing[0].to_string().contains("127.0.0.2:53"),
                "{missing:?}"
            );
        }
        other => panic!("expected PropagationTimeout, got {other:?}"),
    }
    eprintln!("{err}");
    assert!(err.to_string().contains("127.0.0.2"), "{err}");

    solver.cleanup(&record).await?;
    assert!(gone_from(PRIMARY, &record.fqdn, &value));
    drop(restore);
    Ok(())
}

#[tokio::test]
async fn exec_solver_runs_nsupdate_hooks_end_to_end() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let lab = lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let hook = dir.path().join("hook.sh");
    let env_log = dir.path().join("env.log");
    let key_file = lab.dir.join("named/tsig.key");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
set -eu
env | grep '^CERTCTL_' | sort >> '{log}'
case "$CERTCTL_ACTION" in
  present) change="update add $CERTCTL_FQDN. $CERTCTL_TTL TXT \"$CERTCTL_TXT_VALUE\"" ;;
  cleanup) change="update delete $CERTCTL_FQDN. TXT \"$CERTCTL_TXT_VALUE\"" ;;
  *) echo "unknown action $CERTCTL_ACTION" >&2; exit 2 ;;
esac
nsupdate -k '{key}' <<EOF
server 127.0.0.1 53
zone $CERTCTL_ZONE
$change
send
EOF
"#,
            log = env_log.display(),
            key = key_file.display(),
        ),
    )?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    let hook_text = hook.display().to_string();
    let path = lab.inventory_in(dir.path(), |t| {
        format!(
            "{t}\n[solvers.hook]\ntype = \"exec\"\npresent = [\"{hook_text}\"]\ncleanup = [\"{hook_text}\"]\n\
             timeout = \"20s\"\nttl = 42\nresolver = \"127.0.0.1:53\"\npropagation_timeout = \"20s\"\n"
        )
    });
    let inv = Inventory::load(&path)?;
    let solver = dns::solver("hook", &inv.solvers["hook"])?;
    let value = unique_value("exec");

    let record = solver
        .present(&domain("media.example.test"), &value)
        .await?;
    assert_eq!(record.fqdn, "media.challenges.test");
    solver.wait_propagated(&record).await?;
    assert!(on_both("media.challenges.test", &value));
    solver.cleanup(&record).await?;
    assert!(gone_from(PRIMARY, "media.challenges.test", &value));
    assert!(gone_from(SECONDARY, "media.challenges.test", &value));

    let env = std::fs::read_to_string(&env_log)?;
    for line in [
        "CERTCTL_ACTION=present",
        "CERTCTL_ACTION=cleanup",
        "CERTCTL_DOMAIN=media.example.test",
        "CERTCTL_FQDN=media.challenges.test",
        "CERTCTL_ZONE=challenges.test",
        "CERTCTL_TTL=42",
        &format!("CERTCTL_TXT_VALUE={value}"),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
    }
    Ok(())
}
