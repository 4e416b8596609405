//! `certctl run` end to end on the lab, the fallback CA, and the CLI's
//! generated documentation.

use std::path::{Path, PathBuf};
use std::process::Command;

use certctl_lab_tests::{certctl, head, lab, show, Lab};

/// The lab's inventory with its own store and only nodes `1..=n`.
fn inventory(lab: &Lab, dir: &Path, n: usize, edit: impl FnOnce(String) -> String) -> PathBuf {
    lab.inventory_in(dir, |text| {
        let mut parts = text.split("\n[[node]]\n");
        let mut out = parts.next().unwrap_or_default().to_string();
        for p in parts {
            let keep = (1..=n).any(|i| p.contains(&format!("name = \"node{i}\"\n")));
            if keep {
                out.push_str("\n[[node]]\n");
                out.push_str(p);
            }
        }
        edit(out)
    })
}

/// The serial (lower hex, no leading zeros) a node serves for `sni`.
fn served_serial(addr: &str, sni: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr}:443 -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
        .trim_start_matches('0')
        .to_string()
}

#[test]
fn run_on_a_fresh_store_ends_with_every_node_serving_a_pebble_certificate() {
    let lab = lab();
    let _g = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = inventory(lab, dir.path(), 3, |t| t);
    let prom = dir.path().join("certctl.prom");
    let out = certctl(
        &cfg,
        &[
            "run",
            "--no-notify",
            "--prometheus",
            prom.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let list = certctl(&cfg, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    for cert in v.as_array().expect("array") {
        let serial = cert["serial"]
            .as_str()
            .expect("issued")
            .trim_start_matches('0');
        let domains: Vec<&str> = cert["domains"]
            .as_array()
            .expect("domains")
            .iter()
            .filter_map(|d| d.as_str())
            .collect();
        for i in 1..=3 {
            for d in &domains {
                let sni = d.replace("*.", "probe.");
                assert_eq!(
                    served_serial(&lab.node_addr(i), &sni),
                    serial,
                    "node{i} {sni} serves another certificate"
                );
            }
        }
    }
    assert!(std::fs::read_to_string(&prom)
        .expect("textfile")
        .contains("certctl_certificate_not_after_seconds"));

    // A second run renews nothing, changes no node, and still reports ok.
    let again = certctl(&cfg, &["run", "--no-notify", "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !err.contains("issued") && !err.contains("deployed"),
        "{}",
        show(&again)
    );
}

#[test]
fn fallback_ca_issues_when_the_first_is_down_and_the_report_says_so() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let pebble = "https://127.0.0.1:14000/dir";
    let name = format!("fb-{}.example.test", std::process::id());
    let cfg = inventory(lab, dir.path(), 0, |t| {
        let head = head(&t).to_string();
        // Nothing listens on port 9: the primary CA is down.
        let head = head.replacen(
            &format!("directory = \"{pebble}\""),
            "directory = \"https://127.0.0.1:9/dir\"",
            1,
        );
        let bundle = lab.dir.join("ca/lab-ca.pem");
        let head = head.replacen(
            "[report]",
            &format!(
                "[account.fallback]\ndirectory = \"{pebble}\"\nca_bundle = \"{}\"\n\n[report]",
                bundle.display()
            ),
            1,
        );
        format!(
            "{head}\n[[certificate]]\nname = \"fb\"\ndomains = [\"{name}\"]\nsolver = \"lab\"\n"
        )
    });
    let out = certctl(&cfg, &["issue", "fb"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = certctl(&cfg, &["report", "--json", "--no-notify"]);
    let v: serde_json::Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(v["certificates"][0]["store"]["directory"], pebble, "{v}");
}

#[test]
fn man_pages_and_completions_are_generated_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(certctl_lab_tests::certctl_bin())
        .arg("man")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out));
    for page in [
        "certctl.1",
        "certctl-deploy.1",
        "certctl-report.1",
        "certctl-run.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let out = Command::new(certctl_lab_tests::certctl_bin())
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rollback"));
    // A usage error has its own exit code.
    let out = Command::new(certctl_lab_tests::certctl_bin())
        .args(["deploy", "--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn systemd_units_pass_systemd_analyze() {
    let Ok(which) = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
    else {
        return;
    };
    if !which.status.success() {
        eprintln!("systemd-analyze is not installed; skipping the unit verification");
        return;
    }
    let lab = lab();
    let _g = lab.shared();
    // A config, a store and a binary whose paths hold a space, `%` and `$`.
    let dir = tempfile::Builder::new()
        .prefix("certctl units %h $USER ")
        .tempdir()
        .expect("tempdir");
    let config = inventory(lab, dir.path(), 1, |t| t);
    std::fs::create_dir_all(dir.path().join("store")).expect("store dir");
    let bin = dir.path().join("bin dir %i").join("certctl");
    std::fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(certctl_lab_tests::certctl_bin(), &bin).expect("symlink");
    let units = dir.path().join("units");
    std::fs::create_dir(&units).expect("units dir");
    let out = Command::new(certctl_lab_tests::certctl_bin())
        .arg("--config")
        .arg(&config)
        .args(["systemd", "--binary"])
        .arg(&bin)
        .arg("--output-dir")
        .arg(&units)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out));
    let service = std::fs::read_to_string(units.join("certctl.service")).expect("service");
    // `$` is expanded in arguments, not in the command's path.
    let quoted = |p: &Path, arg: bool| {
        let s = p.display().to_string().replace('%', "%%");
        format!("\"{}\"", if arg { s.replace('$', "$$") } else { s })
    };
    let exec = format!(
        "ExecStart={} --config {} run",
        quoted(&bin, false),
        quoted(&config, true)
    );
    assert!(service.contains(&exec), "{exec}\n{service}");
    assert!(
        service.contains(&format!(
            "ReadWritePaths=\"{}\"",
            dir.path()
                .join("store")
                .display()
                .to_string()
                .replace('%', "%%")
        )),
        "{service}"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("certctl.service"))
        .arg(units.join("certctl.timer"))
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // The man page is not installed here; anything else is a unit error.
    let problems: Vec<&str> = err.lines().filter(|l| !l.contains("man certctl")).collect();
    assert!(problems.is_empty(), "{err}");
}

#[test]
fn systemd_refuses_a_missing_config_newlines_and_bad_durations() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("units")).expect("units dir");
    let run = |args: &[&str]| {
        Command::new(certctl_lab_tests::certctl_bin())
            .args(args)
            .arg("--output-dir")
            .arg(dir.path().join("units"))
            .output()
            .expect("run")
    };
    let out = run(&["--config", "/nonexistent/certctl.toml", "systemd"]);
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/certctl.toml does not exist"),
        "{}",
        show(&out)
    );
    let lab = lab();
    let _g = lab.shared();
    let config = inventory(lab, dir.path(), 1, |t| t);
    let config = config.to_str().expect("utf-8");
    for (args, says) in [
        (
            &["--on-calendar", "daily\nExecStartPre=/bin/touch /tmp/x"][..],
            "control character",
        ),
        (&["--on-calendar", "every day"][..], "--on-calendar"),
        (&["--randomized-delay", "an hour"][..], "--randomized-delay"),
        (&["--binary", "/usr/bin/cert\nctl"][..], "--binary"),
    ] {
        let mut a = vec!["--config", config, "systemd"];
        a.extend_from_slice(args);
        let out = run(&a);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            show(&out)
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("units"))
                .expect("units")
                .count(),
            0,
            "nothing written"
        );
    }
}
