//! `certctl check` (offline) and `certctl check --online` against the lab:
//! each broken input or broken component is named with its fix and exits 2,
//! an inventory that cannot load exits 3, warnings alone exit 0, and the
//! online run leaves no TXT record and no file behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use certctl_lab_tests::{
    certctl, first_nodes, head, lab, set_node, show, txt, unique, Lab, Restore,
};
use serde_json::Value;

/// The lab's inventory with one certificate on a unique domain, the first
/// `nodes` nodes, each with its own fresh `base_dir` inside the node's certs
/// tree (so nothing else writes there meanwhile); returns the inventory, the
/// domain and the base directories.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    domain: String,
    bases: Vec<PathBuf>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for b in &self.bases {
            // Directories this test made.
            let _ = std::fs::remove_dir_all(b);
        }
    }
}

fn setup(lab: &Lab, nodes: usize, edit: impl FnOnce(String) -> String) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = format!("{}.example.test", unique("check"));
    let label = unique("check-base");
    let bases: Vec<PathBuf> = (1..=nodes)
        .map(|i| lab.dir.join(format!("nodes/node{i}/certs/{label}")))
        .collect();
    for b in &bases {
        std::fs::create_dir(b).expect("create base_dir");
    }
    let config = lab.inventory_in(dir.path(), |text| {
        let mut out = format!(
            "{}\n[[certificate]]\nname = \"c\"\ndomains = [\"{domain}\"]\nsolver = \"lab\"\ngroups = [\"edge\"]\n",
            head(&text)
        );
        out.push_str(&first_nodes(&text, nodes));
        for (i, b) in bases.iter().enumerate() {
            out = set_node(
                &out,
                &format!("node{}", i + 1),
                "base_dir",
                &format!("\"{}\"", b.display()),
            );
        }
        edit(out)
    });
    Setup {
        _dir: dir,
        config,
        domain,
        bases,
    }
}

fn check(config: &Path, online: bool) -> (Output, Value) {
    let mut args = vec!["check", "--json"];
    if online {
        args.push("--online");
    }
    let out = certctl(config, &args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

/// The item about `subject` (`node node2`, `solver lab`, `account`) and `check`.
fn item<'a>(v: &'a Value, subject: &str, check: &str) -> &'a Value {
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| {
            let s = match i["name"].as_str() {
                Some(n) => format!("{} {n}", i["subject"].as_str().unwrap_or("")),
                None => i["subject"].as_str().unwrap_or("").to_string(),
            };
            s == subject && i["check"] == check
        })
        .unwrap_or_else(|| panic!("no item {subject} / {check} in {v:#}"))
}

fn errors(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["status"] == "error")
        .map(|i| format!("{} {} {}", i["subject"], i["name"], i["check"]))
        .collect()
}

fn assert_error(v: &Value, subject: &str, check: &str, says: &str) {
    let i = item(v, subject, check);
    assert_eq!(i["status"], "error", "{i:#}");
    let detail = i["detail"].as_str().expect("detail");
    assert!(detail.contains(says), "{subject} / {check}: {detail}");
    assert!(
        i["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "no fix: {i:#}"
    );
}

/// Every file under the node base directories, with its content.
fn files(bases: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(p).expect("read_dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            }
            out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
        }
    }
    let mut out = BTreeMap::new();
    for b in bases {
        walk(b, &mut out);
    }
    out
}

fn no_txt_left(domain: &str) {
    let name = format!("_acme-challenge.{domain}");
    assert_eq!(txt(&name), "", "TXT record left at {name}");
}

/// Runs the online check and asserts that it left nothing behind.
fn online(s: &Setup) -> (Output, Value) {
    let before = files(&s.bases);
    let (out, v) = check(&s.config, true);
    no_txt_left(&s.domain);
    assert_eq!(
        files(&s.bases),
        before,
        "files left on nodes\n{}",
        show(&out)
    );
    (out, v)
}

/// Whether `lab.sh status` shows the component (`named2`, `node2 sshd`) stopped.
fn stopped(lab: &Lab, component: &str) -> bool {
    let out = lab.sh(&["status"]);
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        l.strip_prefix(component)
            .is_some_and(|rest| rest.trim_start().starts_with("stopped"))
    })
}

/// Injects a fault with `lab.sh inject`, runs the online check, and tries
/// again (at most three times) if the fault was undone meanwhile: another
/// test binary's `lab.sh up` restarts stopped components without the test
/// lock.
fn online_under(
    lab: &Lab,
    s: &Setup,
    inject: &[&str],
    holds: impl Fn() -> bool,
) -> (Output, Value) {
    for _ in 0..3 {
        lab.must(inject);
        let r = online(s);
        if holds() {
            return r;
        }
        eprintln!("the fault {inject:?} was undone during the run; again");
    }
    panic!("the fault {inject:?} did not hold during three runs");
}

fn write_secret(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write secret");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

fn with_tsig_file(text: String, path: &Path) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with("tsig_secret_file = "))
        .expect("tsig_secret_file line")
        .to_string();
    text.replace(&line, &format!("tsig_secret_file = \"{}\"", path.display()))
}

fn lab_secret(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir.join("tsig.secret"))
        .expect("lab secret")
        .trim()
        .to_string()
}

#[test]
fn offline_check_names_each_bad_secret_kind_and_exits_2() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let loose = write_secret(dir.path(), "loose", &lab_secret(lab), 0o644);
    let garbage = write_secret(dir.path(), "garbage", "not base64!", 0o600);
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let subdir = dir.path().join("a-directory");
    std::fs::create_dir(&subdir).expect("mkdir");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing",
            dir.path().join("nope").display().to_string(),
            "cannot read secret file",
        ),
        ("loose mode", loose.display().to_string(), "chmod 600"),
        (
            "not base64",
            garbage.display().to_string(),
            "not valid base64",
        ),
        (
            "FIFO",
            fifo.display().to_string(),
            "not a regular file but a FIFO",
        ),
        (
            "directory",
            subdir.display().to_string(),
            "not a regular file but a directory",
        ),
    ];
    for (what, path, says) in cases {
        let s = setup(lab, 1, |t| with_tsig_file(t, Path::new(&path)));
        let (out, v) = check(&s.config, false);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", show(&out));
        assert_error(&v, "solver lab", "tsig_secret_file", says);
    }
    // An unset environment variable.
    let s = setup(lab, 1, |t| {
        let line = t
            .lines()
            .find(|l| l.starts_with("tsig_secret_file = "))
            .expect("line")
            .to_string();
        t.replace(&line, "tsig_secret_env = \"CERTCTL_CHECK_TEST_UNSET\"")
    });
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(
        &v,
        "solver lab",
        "tsig_secret_env",
        "CERTCTL_CHECK_TEST_UNSET",
    );
    // An EAB key that is not base64url.
    let eab = write_secret(dir.path(), "eab", "not+base64url/", 0o600);
    let s = setup(lab, 1, |t| {
        t.replace(
            "[report]",
            &format!(
                "[account.eab]\nkid = \"kid-1\"\nhmac_key_file = \"{}\"\n\n[report]",
                eab.display()
            ),
        )
    });
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(&v, "account", "eab hmac_key_file", "not base64url");
}

#[test]
fn tsig_keygen_block_is_accepted_and_a_mismatched_one_names_both_keys() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let block = |name: &str, alg: &str| {
        format!(
            "key \"{name}\" {{\n\talgorithm {alg};\n\tsecret \"{}\";\n}};\n",
            lab_secret(lab)
        )
    };
    let good = write_secret(
        dir.path(),
        "block",
        &block("certctl-key", "hmac-sha256"),
        0o600,
    );
    let s = setup(lab, 1, |t| with_tsig_file(t, &good));
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(item(&v, "solver lab", "tsig_secret_file")["status"], "ok");
    // The solver itself signs with the block's secret: the primary accepts it.
    let (out, v) = online(&s);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        item(&v, "solver lab", "primary accepts a signed UPDATE")["status"],
        "ok"
    );

    let other = write_secret(
        dir.path(),
        "other",
        &block("other-key", "hmac-sha256"),
        0o600,
    );
    let s = setup(lab, 1, |t| with_tsig_file(t, &other));
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(&v, "solver lab", "tsig_secret_file", "`other-key`");
    assert_error(&v, "solver lab", "tsig_secret_file", "`certctl-key`");
    let alg = write_secret(
        dir.path(),
        "alg",
        &block("certctl-key", "hmac-sha512"),
        0o600,
    );
    let s = setup(lab, 1, |t| with_tsig_file(t, &alg));
    let (_, v) = check(&s.config, false);
    assert_error(&v, "solver lab", "tsig_secret_file", "`hmac-sha512`");
    assert_error(&v, "solver lab", "tsig_secret_file", "`hmac-sha256`");
}

#[test]
fn offline_check_names_missing_or_special_ssh_and_tls_files() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-known-hosts");
    let s = setup(lab, 2, |t| {
        let t = set_node(
            &t,
            "node2",
            "known_hosts",
            &format!("\"{}\"", missing.display()),
        );
        let bundle = t
            .lines()
            .find(|l| l.starts_with("ca_bundle = "))
            .expect("ca_bundle")
            .to_string();
        t.replace(&bundle, "ca_bundle = \"/dev/null\"")
    });
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(&v, "node node2", "known_hosts", "cannot be read");
    assert_eq!(item(&v, "node node1", "known_hosts")["status"], "ok");
    assert_error(
        &v,
        "account",
        "ca_bundle",
        "not a regular file but a device",
    );
}

#[test]
fn option_looking_identity_file_is_refused_at_load() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 1, |t| {
        set_node(
            &t,
            "node1",
            "identity_file",
            "\"-oProxyCommand=touch /tmp/pwned\"",
        )
    });
    let out = certctl(&s.config, &["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("identity_file `-oProxyCommand=touch /tmp/pwned` looks like an ssh option"),
        "{err}"
    );
}

#[test]
fn names_that_differ_only_in_case_are_refused_at_load() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 1, |t| {
        t + "\n[[certificate]]\nname = \"C\"\ndomains = [\"c2.example.test\"]\nsolver = \"lab\"\n"
    });
    let out = certctl(&s.config, &["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("certificate `C` differs from certificate `c` only in case"),
        "{}",
        show(&out)
    );
    let s = setup(lab, 1, |t| {
        t.replace(
            "\"]\nsolver",
            "\", \"WWW.EXAMPLE.TEST\", \"www.example.test\"]\nsolver",
        )
    });
    let out = certctl(&s.config, &["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("domain `www.example.test` is listed twice"),
        "{}",
        show(&out)
    );
}

#[test]
fn ip_address_as_a_dns01_domain_is_refused_at_load() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 1, |t| {
        t.replace("\"]\nsolver", "\", \"192.0.2.10\"]\nsolver")
    });
    let out = certctl(&s.config, &["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DNS-01 cannot validate an IP address"),
        "{}",
        show(&out)
    );
}

#[test]
fn bad_node_name_is_called_a_node_name() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 1, |t| {
        t.replace("name = \"node1\"", "name = \"node/1\"")
    });
    let out = certctl(&s.config, &["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node name `node/1`"), "{err}");
    assert!(!err.contains("certificate name"), "{err}");
}

#[test]
fn certificate_no_node_serves_is_a_warning_naming_its_groups_and_exits_0() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 1, |t| {
        t + "\n[[certificate]]\nname = \"orphan\"\ndomains = [\"orphan.example.test\"]\nsolver = \"lab\"\n"
    });
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let i = item(&v, "certificate orphan", "served by a node");
    assert_eq!(i["status"], "warning", "{i:#}");
    assert!(
        i["detail"]
            .as_str()
            .expect("detail")
            .contains("no node serves it"),
        "{i:#}"
    );
    // The table prints it too.
    let out = certctl(&s.config, &["check"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("warning") && table.contains("1 warnings"),
        "{table}"
    );
}

#[test]
fn online_check_passes_on_the_lab_and_leaves_nothing_behind() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 2, |t| t);
    let (out, v) = online(&s);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(errors(&v).is_empty(), "{v:#}");
    assert_eq!(v["schema"], "certctl.check/v1");
    assert_eq!(v["online"], true);
    for check in [
        "ssh connects",
        "base_dir writable",
        "validate command passes",
        "probe answers TLS",
    ] {
        assert_eq!(item(&v, "node node2", check)["status"], "ok", "{check}");
    }
    let acct = item(&v, "account", "CA directory and account");
    assert_eq!(acct["status"], "ok");
    // No account was created: the check never registers one.
    assert!(
        !s._dir.path().join("store/accounts").exists(),
        "check wrote an account into the store"
    );
    for check in [
        "primary accepts a signed UPDATE",
        "every authoritative server answers",
        "probe TXT deleted",
    ] {
        assert_eq!(item(&v, "solver lab", check)["status"], "ok", "{check}");
    }
}

#[test]
fn online_check_finds_the_stored_account_and_changes_nothing_in_the_store() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 1, |t| t);
    let out = certctl(&s.config, &["issue", "c"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let accounts = s._dir.path().join("store/accounts");
    let before: Vec<_> = std::fs::read_dir(&accounts)
        .expect("accounts")
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read")))
        .collect();
    assert_eq!(before.len(), 1);
    let (out, v) = online(&s);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let acct = item(&v, "account", "CA directory and account");
    assert_eq!(acct["status"], "ok", "{acct:#}");
    assert!(
        acct["detail"].as_str().expect("detail").contains("exists"),
        "{acct:#}"
    );
    let after: Vec<_> = std::fs::read_dir(&accounts)
        .expect("accounts")
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read")))
        .collect();
    assert_eq!(after, before, "check changed the stored account");
}

#[test]
fn online_check_names_a_wrong_tsig_secret() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // Valid base64, the right length, not the server's key.
    let wrong = write_secret(
        dir.path(),
        "wrong",
        "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
        0o600,
    );
    let s = setup(lab, 1, |t| with_tsig_file(t, &wrong));
    let (out, v) = online(&s);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(
        &v,
        "solver lab",
        "primary accepts a signed UPDATE",
        "BADSIG",
    );
    assert_eq!(errors(&v).len(), 1, "{v:#}");
}

#[test]
fn online_check_names_a_stopped_secondary() {
    let lab = lab();
    let _g = lab.exclusive();
    let s = setup(lab, 1, |t| t);
    let _restore = Restore(lab, &["start", "named2"]);
    let (out, v) = online_under(lab, &s, &["stop", "named2"], || stopped(lab, "named2"));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(
        &v,
        "solver lab",
        "every authoritative server answers",
        "127.0.0.2",
    );
    assert_eq!(
        item(&v, "solver lab", "primary accepts a signed UPDATE")["status"],
        "ok"
    );
    assert_eq!(item(&v, "solver lab", "probe TXT deleted")["status"], "ok");
}

#[test]
fn online_check_names_a_node_with_sshd_down() {
    let lab = lab();
    let _g = lab.exclusive();
    let s = setup(lab, 2, |t| t);
    let _restore = Restore(lab, &["start", "sshd", "2"]);
    let (out, v) = online_under(lab, &s, &["stop", "sshd", "2"], || {
        stopped(lab, "node2 sshd")
    });
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(&v, "node node2", "ssh connects", "is sshd running");
    assert_eq!(item(&v, "node node1", "base_dir writable")["status"], "ok");
    assert_eq!(errors(&v).len(), 1, "{v:#}");
}

#[test]
fn online_check_names_a_node_with_a_broken_nginx_config() {
    let lab = lab();
    let _g = lab.exclusive();
    let s = setup(lab, 2, |t| t);
    let _restore = Restore(lab, &["nginx-fix", "2"]);
    let extra = lab.dir.join("nodes/node2/nginx/extra.conf");
    let (out, v) = online_under(lab, &s, &["nginx-break", "2"], || {
        std::fs::read_to_string(&extra).is_ok_and(|t| t.contains("certctl_lab_broken_directive"))
    });
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(
        &v,
        "node node2",
        "validate command passes",
        "certctl_lab_broken_directive",
    );
    assert_eq!(
        item(&v, "node node1", "validate command passes")["status"],
        "ok"
    );
    assert_eq!(errors(&v).len(), 1, "{v:#}");
}

/// Remounts node `i`'s certs tmpfs read-write when dropped.
struct Writable(PathBuf);

impl Drop for Writable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mount")
            .args(["-o", "remount,rw"])
            .arg(&self.0)
            .status();
    }
}

#[test]
fn online_check_names_a_node_whose_base_dir_is_read_only() {
    let lab = lab();
    let _g = lab.exclusive();
    let s = setup(lab, 2, |t| t);
    let certs = lab.dir.join("nodes/node2/certs");
    if !lab.dir.join("nodes/node2/.tmpfs").exists() {
        eprintln!("skipped: node2's certs are not a tmpfs here (lab.sh could not mount one)");
        return;
    }
    let ro = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&certs)
        .status()
        .expect("mount");
    assert!(ro.success(), "remount read-only failed");
    let _restore = Writable(certs);
    let (out, v) = online(&s);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(
        &v,
        "node node2",
        "base_dir writable",
        "Read-only file system",
    );
    assert_eq!(item(&v, "node node1", "base_dir writable")["status"], "ok");
    assert_eq!(errors(&v).len(), 1, "{v:#}");
}

#[test]
fn check_refuses_a_store_that_is_not_certctls_and_writes_nothing_there() {
    let lab = lab();
    let _g = lab.shared();
    let s = setup(lab, 1, |t| t);
    // A foreign, non-empty directory as the store.
    let foreign = s._dir.path().join("store");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(foreign.join("notes.txt"), b"mine\n").expect("write");
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_error(
        &v,
        "store",
        "usable as certctl's store",
        "not a certctl store",
    );
    let names: Vec<_> = std::fs::read_dir(&foreign)
        .expect("store dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["notes.txt"], "check wrote into a foreign directory");
    // A missing store is fine and is not created.
    std::fs::remove_dir_all(&foreign).expect("rm");
    let (out, v) = check(&s.config, false);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        item(&v, "store", "usable as certctl's store")["status"],
        "ok"
    );
    assert!(!foreign.exists(), "check created the store");
}
