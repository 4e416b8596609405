//! Secrets never leave their files: no command, at any verbosity, in any
//! output format, on success or failure, prints the TSIG secret, a private
//! key or the ACME account key; key files are 0600 in the store and on the
//! nodes, and a loosened one is repaired. Hostile names in the inventory or
//! on the command line are refused before anything runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use certctl_lab_tests::{certctl, lab, show, unique, Lab};

const NODES: usize = 2;

/// The lab's inventory with only `certs`, the first `nodes` nodes, after `edit`.
fn inventory(
    lab: &Lab,
    dir: &Path,
    file: &str,
    certs: &str,
    nodes: usize,
    edit: impl FnOnce(String) -> String,
) -> PathBuf {
    let path = lab.inventory(dir, certs, nodes, edit);
    let renamed = dir.join(file);
    std::fs::rename(&path, &renamed).expect("rename inventory");
    renamed
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
}

/// Files matching `<dir>/*/*/<file>` (archive layout: name/version/file).
fn in_archive(dir: &Path, file: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for name in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for version in std::fs::read_dir(name.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = version.path().join(file);
            if p.is_file() {
                v.push(p);
            }
        }
    }
    v
}

/// Standard or URL-safe base64 (padding optional) to bytes.
fn b64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            other => panic!("not base64: {other:#x}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every form in which a secret (base64 text) could leak.
fn forms(what: &str, b64: &str) -> Vec<(String, String)> {
    let b64 = b64.trim();
    let h = hex(&b64_decode(b64));
    vec![
        (format!("{what} (base64)"), b64.to_string()),
        (format!("{what} (hex)"), h.clone()),
        (format!("{what} (HEX)"), h.to_uppercase()),
    ]
}

/// The base64 body lines of a PEM private key long enough to be unique.
fn key_lines(path: &Path) -> Vec<(String, String)> {
    let pem = std::fs::read_to_string(path).expect("key");
    assert!(pem.contains("PRIVATE KEY"), "{}", path.display());
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .map(|l| (format!("a line of {}", path.display()), l.to_string()))
        .collect()
}

/// The account key: the whole value, in both base64 alphabets, and a run
/// from where the private scalar starts (the head is a fixed DER prefix).
fn account_key_forms(store: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(store.join("accounts"))
        .expect("accounts")
        .flatten()
    {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path()).expect("account")).expect("json");
        let key = json["credentials"]["key_pkcs8"]
            .as_str()
            .expect("key_pkcs8")
            .to_string();
        assert!(key.len() > 100, "{key}");
        let what = format!("account key in {}", e.path().display());
        v.push((format!("{what} (middle)"), key[48..88].to_string()));
        v.push((
            format!("{what} (standard base64)"),
            key.replace('-', "+").replace('_', "/"),
        ));
        v.extend(forms(&what, &key));
    }
    assert!(!v.is_empty(), "an account was stored");
    v
}

fn assert_no_secret(outputs: &[(String, Output)], secrets: &[(String, String)]) {
    for (cmd, out) in outputs {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for (what, s) in secrets {
            assert!(
                !text.contains(s.as_str()),
                "`certctl {cmd}` printed the {what}"
            );
        }
    }
}

#[test]
fn no_command_prints_a_secret() {
    let lab = lab();
    let _x = lab.exclusive(); // deploys www to the nodes
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let www = "[[certificate]]\nname = \"www\"\ndomains = [\"www.example.test\", \"example.test\"]\nsolver = \"lab\"\ngroups = [\"edge\"]\n";
    let cfg = inventory(lab, dir.path(), "good.toml", www, NODES, |t| t);
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(
        &wrong,
        "c2VjcmV0cyBtdXN0IG5ldmVyIGJlIHByaW50ZWQgYnkgY2VydGN0bA==",
    )
    .expect("write");
    chmod(&wrong, 0o600);
    let lab_secret = lab.dir.join("tsig.secret");
    let bad = inventory(lab, dir.path(), "bad.toml", www, NODES, |t| {
        let from = format!("tsig_secret_file = \"{}\"", lab_secret.display());
        assert!(t.contains(&from));
        t.replace(
            &from,
            &format!("tsig_secret_file = \"{}\"", wrong.display()),
        )
    });

    let mut outputs = Vec::new();
    for (config, args, want) in [
        (&cfg, &["-vvv", "run", "--no-notify"][..], 0),
        (&cfg, &["-vvv", "issue", "www"][..], 0),
        (&cfg, &["-vvv", "deploy"][..], 0),
        (&cfg, &["-vvv", "report", "--json"][..], 0),
        (&cfg, &["-vvv", "list", "--json"][..], 0),
        (&cfg, &["-vvv", "check"][..], 0),
        (&cfg, &["-vvv", "renew"][..], 0),
        (&bad, &["-vvv", "issue", "www"][..], 2),
    ] {
        let out = certctl(config, args);
        assert_eq!(out.status.code(), Some(want), "{args:?}: {}", show(&out));
        outputs.push((args.join(" "), out));
    }
    let all: String = outputs
        .iter()
        .map(|(_, o)| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert!(
        all.contains("DEBUG"),
        "-vvv logs at debug level and below (else this test proves little)"
    );

    let mut secrets = forms(
        "TSIG secret",
        &std::fs::read_to_string(&lab_secret).expect("tsig secret"),
    );
    secrets.extend(forms(
        "wrong TSIG secret",
        &std::fs::read_to_string(&wrong).expect("wrong secret"),
    ));
    secrets.extend(account_key_forms(&store));
    let mut keys = in_archive(&store.join("archive"), "privkey.pem");
    assert!(keys.len() >= 2, "run and issue each stored a key: {keys:?}");
    for i in 1..=NODES {
        let base = lab.dir.join(format!("nodes/node{i}/certs"));
        keys.extend(in_archive(&base.join("archive"), "privkey.pem"));
        let live = base.join("live/www/privkey.pem");
        assert_eq!(mode(&live), 0o600, "{}", live.display());
    }
    for k in &keys {
        assert_eq!(mode(k), 0o600, "{}", k.display());
        secrets.extend(key_lines(k));
    }
    for e in std::fs::read_dir(store.join("accounts"))
        .expect("accounts")
        .flatten()
    {
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
    }
    assert_no_secret(&outputs, &secrets);
}

#[test]
fn loosened_key_files_are_repaired_and_named() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let d = format!("{}.example.test", unique("perm"));
    let cert = format!("[[certificate]]\nname = \"p\"\ndomains = [\"{d}\"]\nsolver = \"lab\"\n");
    let cfg = inventory(lab, dir.path(), "certctl.toml", &cert, 0, |t| t);
    let out = certctl(&cfg, &["issue", "p"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let version = store
        .join("live")
        .join(std::fs::read_link(store.join("live/p")).expect("live"));
    let key = std::fs::canonicalize(version.join("privkey.pem")).expect("key");
    let account = std::fs::read_dir(store.join("accounts"))
        .expect("accounts")
        .flatten()
        .next()
        .expect("an account")
        .path();
    chmod(&key, 0o644);
    chmod(&account, 0o644);
    // The next command that opens the store for writing (here a renewal
    // with nothing due) repairs them.
    let out = certctl(&cfg, &["renew"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for p in [&key, &account] {
        assert_eq!(mode(p), 0o600, "{} repaired", p.display());
        let path = p.display().to_string();
        assert!(
            err.lines()
                .any(|l| l.contains("warning") && l.contains(&path) && l.contains("644")),
            "the warning names {}: {}",
            p.display(),
            show(&out)
        );
    }
}

#[test]
fn hostile_names_are_refused_and_nothing_runs() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let pwned = PathBuf::from(format!("/tmp/pwned-{}", std::process::id()));
    let _ = std::fs::remove_file(&pwned);
    let touch = format!("touch {}", pwned.display());
    let d = format!("{}.example.test", unique("hostile"));
    let cert = |name: &str, domain: &str| {
        format!(
            "[[certificate]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\nsolver = \"lab\"\ngroups = [\"edge\"]\n"
        )
    };
    let good = cert("h", &d);
    let node1 = |key: &str, value: &str| {
        let key = key.to_string();
        let value = value.to_string();
        move |t: String| {
            let line = t
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .expect("node1 has the key")
                .to_string();
            t.replacen(&line, &format!("{key} = \"{value}\""), 1)
        }
    };
    let cases: Vec<(&str, String, PathBuf)> = vec![
        (
            "certificate name",
            "../../etc".into(),
            inventory(
                lab,
                dir.path(),
                "name.toml",
                &cert("../../etc", &d),
                1,
                |t| t,
            ),
        ),
        (
            "domain",
            format!("$({touch}).example.test"),
            inventory(
                lab,
                dir.path(),
                "domain.toml",
                &cert("h", &format!("$({touch}).example.test")),
                1,
                |t| t,
            ),
        ),
        (
            "base_dir",
            format!("/tmp/x; {touch}"),
            inventory(
                lab,
                dir.path(),
                "base.toml",
                &good,
                1,
                node1("base_dir", &format!("/tmp/x; {touch}")),
            ),
        ),
        (
            "address",
            format!("-oProxyCommand={touch}"),
            inventory(
                lab,
                dir.path(),
                "address.toml",
                &good,
                1,
                node1("address", &format!("-oProxyCommand={touch}")),
            ),
        ),
    ];
    for (what, value, cfg) in &cases {
        assert!(std::fs::read_to_string(cfg)
            .expect("cfg")
            .contains(value.as_str()));
        for args in [&["check"][..], &["run", "--no-notify"], &["deploy"]] {
            let out = certctl(cfg, args);
            assert_eq!(
                out.status.code(),
                Some(3),
                "{what} {args:?}: {}",
                show(&out)
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("{}:", cfg.display())) && err.contains(value.as_str()),
                "{what}: the message names the file, line and value: {}",
                show(&out)
            );
        }
        assert!(
            !dir.path().join("store/live").exists(),
            "{what}: nothing ran"
        );
    }

    // Hostile names on the command line, against a valid inventory.
    let cfg = inventory(lab, dir.path(), "good.toml", &good, 1, |t| t);
    for args in [
        &["issue", "../../etc"][..],
        &["deploy", "../h"],
        &["rollback", &format!("$({touch})")],
        &["rollback", "h", "--node", &format!("x; {touch}")],
    ] {
        let out = certctl(&cfg, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(args[args.len() - 1]),
            "{args:?}: the message names it: {}",
            show(&out)
        );
    }
    assert!(!pwned.exists(), "a hostile name was executed");
}
