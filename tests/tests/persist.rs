//! dns-persist-01 (issue 13) against the lab's real bind9 and the FAKE ACME
//! CA (`fake-acme`, started per test on a free port): no CA on this machine
//! speaks dns-persist-01, so the CA is a FAKE; DNS is real. Every test uses
//! its own names under `example.test` and removes the records it published
//! (the zone is shared), also when it fails.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use certctl_lab_tests::{certctl, lab, show, txt, unique};

const TSIG_KEY_FILE: &str = "named/tsig.key";

/// The FAKE ACME CA as a child process, killed when dropped.
struct FakeCa {
    child: Child,
    directory: String,
}

impl FakeCa {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-acme"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the FAKE ACME CA");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the FAKE CA prints its directory");
        assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
        Self {
            child,
            directory: line.trim().to_string(),
        }
    }
}

impl Drop for FakeCa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes every TXT record at the names it holds when dropped (nsupdate,
/// signed with the lab's TSIG key).
struct Records(Vec<String>);

impl Drop for Records {
    fn drop(&mut self) {
        for name in &self.0 {
            nsupdate(&format!("update delete {name} TXT\n"));
        }
    }
}

fn nsupdate(commands: &str) {
    use std::io::Write as _;
    let key = lab().dir.join(TSIG_KEY_FILE);
    let mut child = Command::new("nsupdate")
        .arg("-k")
        .arg(&key)
        .stdin(Stdio::piped())
        .spawn()
        .expect("nsupdate");
    let script = format!("server 127.0.0.1\n{commands}send\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "nsupdate failed");
}

/// What a user does at their DNS provider: creates the record by hand,
/// then waits until both lab nameservers serve it (the secondary learns of
/// it through NOTIFY; bounded).
fn publish_by_hand(name: &str, value: &str) {
    nsupdate(&format!("update add {name} 60 TXT \"{value}\"\n"));
    for server in ["127.0.0.1", "127.0.0.2"] {
        let mut tries = 0;
        loop {
            let out = Command::new("dig")
                .args(["+short", "+norec", &format!("@{server}"), "TXT", name])
                .output()
                .expect("dig");
            if String::from_utf8_lossy(&out.stdout).contains(value) {
                break;
            }
            tries += 1;
            assert!(tries < 200, "{server} never served {name}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// An inventory with only a persist solver (no DNS credentials at all), or
/// with `extra` solver settings (a fallback) appended.
fn inventory(
    dir: &Path,
    ca: &FakeCa,
    domains: &[&str],
    persist_extra: &str,
    more: &str,
) -> PathBuf {
    let list = domains
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"store = "{store}"

[account]
directory = "{directory}"

[solvers.persist]
type = "persist"
resolver = "127.0.0.1:53"
{persist_extra}
{more}
[[certificate]]
name = "p"
domains = [{list}]
solver = "persist"
"#,
        store = dir.join("store").display(),
        directory = ca.directory,
    );
    let path = dir.join("certctl.toml");
    std::fs::write(&path, text).expect("write inventory");
    path
}

/// The lab's rfc2136 solver (with its TSIG key), as a `[solvers.lab]` block.
fn lab_solver_block() -> String {
    let text = std::fs::read_to_string(lab().dir.join("certctl.toml")).expect("lab inventory");
    let start = text.find("[solvers.lab]").expect("lab solver");
    let end = text[start..]
        .find("\n\n")
        .map(|e| start + e)
        .unwrap_or(text.len());
    format!("{}\n", &text[start..end])
}

/// `certctl persist-record --json`: the records' names and values.
fn records(config: &Path) -> Vec<(String, String)> {
    let out = certctl(config, &["persist-record", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name").to_string(),
                r["value"].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

fn journal(dir: &Path) -> PathBuf {
    dir.join("store/state/p/txt-journal.json")
}

#[test]
fn persist_record_alone_issues_with_no_dns_credentials_and_no_dns_write() {
    let lab = lab();
    let _g = lab.shared();
    let ca = FakeCa::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("{}.example.test", unique("persist-only"));
    let config = inventory(dir.path(), &ca, &[&name], "", "");
    let text = std::fs::read_to_string(&config).expect("read");
    assert!(!text.contains("tsig") && !text.contains("exec"), "{text}");

    let recs = records(&config);
    assert_eq!(recs.len(), 1);
    let (rname, value) = &recs[0];
    assert_eq!(rname, &format!("_validation-persist.{name}"));
    // -01 format: `<issuer>; accounturi=<account URL>` (the FAKE CA's issuer name).
    assert!(
        value.starts_with("fake-ca.test; accounturi=http://127.0.0.1:") && value.contains("/acct/"),
        "{value}"
    );
    let _cleanup = Records(vec![rname.clone()]);
    publish_by_hand(rname, value);

    let out = certctl(&config, &["check", "--online"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("dns-persist-01 record for {name}"))
            && stdout.contains("right on every authoritative nameserver"),
        "{}",
        show(&out)
    );

    let out = certctl(&config, &["renew", "--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("challenge dns-persist-01"),
        "{}",
        show(&out)
    );

    let out = certctl(&config, &["issue", "p"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("issued"),
        "{}",
        show(&out)
    );
    let cert = std::fs::read_to_string(dir.path().join("store/live/p/cert.pem")).expect("cert");
    assert!(cert.contains("BEGIN CERTIFICATE"));
    // No DNS write: no `_acme-challenge` record, and no TXT journal entry.
    assert_eq!(txt(&format!("_acme-challenge.{name}")), "");
    assert!(!journal(dir.path()).exists(), "a TXT journal was written");
    // The persistent record is still there: certctl never removes it.
    assert!(txt(rname).contains("accounturi="));
    // The report says which challenge the certificate uses.
    let out = certctl(&config, &["report", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(
        v["certificates"][0]["challenge"],
        "dns-persist-01",
        "{}",
        show(&out)
    );
}

#[test]
fn missing_record_falls_back_to_the_dns01_solver() {
    let lab = lab();
    let _g = lab.shared();
    let ca = FakeCa::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("{}.example.test", unique("persist-fallback"));
    let _cleanup = Records(vec![
        format!("_validation-persist.{name}"),
        format!("_acme-challenge.{name}"),
    ]);
    let config = inventory(
        dir.path(),
        &ca,
        &[&name],
        "fallback = \"lab\"",
        &lab_solver_block(),
    );
    // The account exists (persist-record registered it); the record does not.
    records(&config);

    let out = certctl(&config, &["check", "--online"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("missing") && stdout.contains("warning"),
        "a missing record with a fallback is a warning: {}",
        show(&out)
    );
    let out = certctl(&config, &["issue", "p", "-v"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("falling back to dns-01"),
        "{}",
        show(&out)
    );
    // The dns-01 record was cleaned up as usual.
    assert_eq!(txt(&format!("_acme-challenge.{name}")), "");
}

/// Publishes `edit(value)` for `domains[0]` and expects issuance to fail
/// with `expected` in its message, and `check --online` to name it too.
fn refused(tag: &str, domains: &[&str], edit: impl Fn(&str) -> String, expected: &str) {
    let lab = lab();
    let _g = lab.shared();
    let ca = FakeCa::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = inventory(dir.path(), &ca, domains, "", "");
    let recs = records(&config);
    let (rname, value) = &recs[0];
    let _cleanup = Records(vec![rname.clone()]);
    publish_by_hand(rname, &edit(value));

    let out = certctl(&config, &["check", "--online"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(expected),
        "{tag}: check --online should say {expected:?}: {}",
        show(&out)
    );
    let out = certctl(&config, &["issue", "p"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains(expected),
        "{tag}: issue should say {expected:?}: {}",
        show(&out)
    );
    assert!(!dir.path().join("store/live/p").exists());
}

#[test]
fn a_record_for_another_account_is_refused_and_named() {
    let name = format!("{}.example.test", unique("persist-acct"));
    refused(
        "another account",
        &[&name],
        |v| v.replace("/acct/0", "/acct/999"),
        "another account",
    );
}

#[test]
fn a_record_for_another_ca_is_refused_and_named() {
    let name = format!("{}.example.test", unique("persist-ca"));
    refused(
        "another CA",
        &[&name],
        |v| v.replace("fake-ca.test", "other-ca.example"),
        "another CA",
    );
}

#[test]
fn a_wildcard_without_the_policy_is_refused_and_named() {
    let name = format!("{}.example.test", unique("persist-wild"));
    let wildcard = format!("*.{name}");
    refused(
        "wildcard",
        &[&wildcard],
        |v| v.to_string(),
        "policy=wildcard",
    );
}

#[test]
fn an_expired_persist_until_is_refused_and_named() {
    let name = format!("{}.example.test", unique("persist-expired"));
    refused(
        "expired",
        &[&name],
        |v| format!("{v}; persistUntil=1000000000"),
        "persistUntil=1000000000",
    );
}

#[test]
fn publish_through_rfc2136_then_issue_with_the_tsig_key_removed() {
    let lab = lab();
    let _g = lab.shared();
    let ca = FakeCa::start(&["--draft", "02"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("{}.example.test", unique("persist-publish"));
    let wildcard = format!("*.{name}");
    let rname = format!("_validation-persist.{name}");
    let _cleanup = Records(vec![rname.clone()]);
    let config = inventory(
        dir.path(),
        &ca,
        &[&name, &wildcard],
        "fallback = \"lab\"\npolicy = \"wildcard\"",
        &lab_solver_block(),
    );

    // --dry-run writes nothing (and registers no account).
    let out = certctl(&config, &["persist-record", "--publish", "--dry-run"]);
    assert_eq!(out.status.code(), Some(3), "no account yet: {}", show(&out));
    assert_eq!(txt(&rname), "");

    let out = certctl(&config, &["persist-record", "--publish"]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("published; on every authoritative nameserver"),
        "{stdout}"
    );
    // -02 format: the directory's accountHashPrefix + sha-256/<hash>, wildcard policy.
    let served = txt(&rname);
    assert!(
        served.contains("accounturi=http://127.0.0.1:")
            && served.contains("/account-hash/sha-256/")
            && served.contains("policy=wildcard"),
        "{served}"
    );
    // Published once: a second run finds it and writes nothing.
    let out = certctl(&config, &["persist-record", "--publish"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already on every authoritative nameserver"),
        "{}",
        show(&out)
    );

    // The TSIG key leaves the inventory; issuance needs no DNS secret.
    let config = inventory(
        dir.path(),
        &ca,
        &[&name, &wildcard],
        "policy = \"wildcard\"",
        "",
    );
    let text = std::fs::read_to_string(&config).expect("read");
    assert!(!text.contains("tsig"), "{text}");
    let out = certctl(&config, &["issue", "p"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!journal(dir.path()).exists());
    assert!(txt(&rname).contains("policy=wildcard"), "the record stays");
}
