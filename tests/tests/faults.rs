//! Faults of a user's world, injected for real in the lab, through the
//! `certctl` binary: what the user depends on when each happens (a message
//! naming the thing and the fix, nothing lost, no TXT record left, the other
//! items still done). `tests/FAULTS.md` maps every fault to its test, here
//! or in `issue.rs`, `dns.rs` and `deploy.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use acme_core::inspect::{Prober, Trust};
use certctl_lab_tests::{
    cert, certctl, certctl_bin, lab, set_node, show, txt, unique, Lab, Restore,
};

fn no_txt_left(domains: &[&str]) {
    for d in domains {
        let name = format!("_acme-challenge.{}", d.trim_start_matches("*."));
        assert_eq!(txt(&name), "", "TXT record left at {name}");
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The version directory `store/live/<name>` points at, if any.
fn live(store: &Path, name: &str) -> Option<PathBuf> {
    let link = store.join("live").join(name);
    let target = std::fs::read_link(&link).ok()?;
    Some(link.parent().expect("parent").join(target))
}

/// Every live link resolves to a complete version (never a temp directory);
/// no temporary version is left in the archive.
fn store_is_intact(store: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(store.join("live"))
        .expect("live")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let v = live(store, &name).expect("live link");
        let vname = v
            .file_name()
            .expect("version")
            .to_string_lossy()
            .into_owned();
        assert!(
            !vname.starts_with(".tmp"),
            "{name} links a temp dir {vname}"
        );
        for f in [
            "privkey.pem",
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
            "meta.json",
        ] {
            let len = std::fs::metadata(v.join(f)).map(|m| m.len()).unwrap_or(0);
            assert!(len > 0, "{}/{f} is missing or empty", v.display());
        }
        let mode = std::fs::metadata(v.join("privkey.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", v.display());
        let temps: Vec<String> = std::fs::read_dir(store.join("archive").join(&name))
            .expect("archive")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with(".tmp"))
            .collect();
        assert!(temps.is_empty(), "temporary versions left: {temps:?}");
    }
}

/// The leaf (DER) node `i` presents for `sni`.
fn served(lab: &Lab, i: usize, sni: &str) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let prober = Prober::new(&Trust::default(), Duration::from_secs(5)).expect("prober");
        let s = prober
            .probe(&format!("{}:443", lab.node_addr(i)), sni)
            .await
            .unwrap_or_else(|e| panic!("node{i} {sni}: {e}"));
        s.leaf().expect("a leaf").to_vec()
    })
}

/// The leaf (DER) of a version directory.
fn leaf_of(version: &Path) -> Vec<u8> {
    let pem = std::fs::read(version.join("cert.pem")).expect("cert.pem");
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
    p.contents
}

#[test]
fn acme_server_down_names_the_directory_and_keeps_the_store() {
    let lab = lab();
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let d = format!("{}.example.test", unique("acmedown"));
    let cfg = lab.inventory(dir.path(), &cert("a", &[&d], ""), 0, |t| t);
    let out = certctl(&cfg, &["issue", "a"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let first = live(&store, "a").expect("issued");

    lab.must(&["stop", "pebble"]);
    let restore = Restore(lab, &["start", "pebble"]);
    let out = certctl(&cfg, &["issue", "a"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("https://127.0.0.1:14000/dir") && err.contains("refused"),
        "the message names the directory and why: {}",
        show(&out)
    );
    assert_eq!(live(&store, "a"), Some(first.clone()), "store untouched");
    store_is_intact(&store);
    no_txt_left(&[&d]);

    // Back up (with no memory of the account): the next run registers anew by itself.
    drop(restore);
    let out = certctl(&cfg, &["issue", "a"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert_ne!(live(&store, "a"), Some(first));
    store_is_intact(&store);
    no_txt_left(&[&d]);
}

#[test]
fn nameserver_that_never_shows_the_record_is_named_and_the_record_removed() {
    let lab = lab();
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let d = format!("{}.example.test", unique("ns2down"));
    let cfg = lab.inventory(dir.path(), &cert("p", &[&d], ""), 0, |t| {
        t.replacen(
            "\nresolver = \"127.0.0.1:53\"\n",
            "\nresolver = \"127.0.0.1:53\"\npropagation_timeout = \"2s\"\n",
            1,
        )
    });
    assert!(std::fs::read_to_string(&cfg)
        .expect("inventory")
        .contains("propagation_timeout = \"2s\""));
    lab.must(&["stop", "named2"]);
    let _restore = Restore(lab, &["start", "named2"]);
    let out = certctl(&cfg, &["issue", "p"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("_acme-challenge.{d}"))
            && err.contains("127.0.0.2:53")
            && err.contains("propagation_timeout"),
        "the message names the record, the server that lacks it and the knob: {}",
        show(&out)
    );
    no_txt_left(&[&d]);
    assert_eq!(live(&store, "p"), None, "nothing was stored");
}

#[test]
fn node_whose_reload_fails_keeps_its_certificate_and_the_others_deploy() {
    let lab = lab();
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let domains = ["www.example.test", "example.test"];
    let cfg = lab.inventory(
        dir.path(),
        &cert("www", &domains, "groups = [\"edge\"]"),
        3,
        |t| set_node(&t, "node2", "reload", "\"false\""),
    );
    let out = certctl(&cfg, &["issue", "www"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let new_leaf = leaf_of(&live(&store, "www").expect("issued"));
    let before: Vec<Vec<u8>> = domains.iter().map(|d| served(lab, 2, d)).collect();
    let link2 = lab.dir.join("nodes/node2/certs/live/www");
    let link2_before = std::fs::read_link(&link2).expect("node2 link");
    assert!(before.iter().all(|l| *l != new_leaf));

    let out = certctl(&cfg, &["deploy", "--json"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for r in rows {
        if r["node"] == "node2" {
            assert_eq!(r["outcome"], "rolled_back", "{r}");
            let reason = r["reason"].as_str().expect("reason");
            assert!(
                reason.contains("`false` failed on node2") && reason.contains("put back"),
                "{reason}"
            );
        } else {
            assert_eq!(r["outcome"], "deployed", "{r}");
        }
    }
    for d in domains {
        for i in [1, 3] {
            assert!(served(lab, i, d) == new_leaf, "node{i} serves the new {d}");
        }
    }
    let after: Vec<Vec<u8>> = domains.iter().map(|d| served(lab, 2, d)).collect();
    assert!(
        after == before,
        "node2 still serves its previous certificate"
    );
    assert_eq!(std::fs::read_link(&link2).expect("link"), link2_before);
}

/// Unmounts a tmpfs when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn store_disk_full_fails_cleanly_and_keeps_the_previous_version() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir(&store).expect("mkdir");
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&store)
        .output()
        .expect("mount");
    assert!(out.status.success(), "mount tmpfs: {}", show(&out));
    let _unmount = Unmount(store.clone());

    let d = format!("{}.example.test", unique("full"));
    let cfg = lab.inventory(dir.path(), &cert("f", &[&d], ""), 0, |t| t);
    let out = certctl(&cfg, &["issue", "f"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let first = live(&store, "f").expect("issued");
    let filler = store.join("filler");
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .arg("bs=4k")
        .output()
        .expect("dd");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left"),
        "dd fills the store: {}",
        show(&out)
    );
    let full = std::fs::metadata(&filler).expect("filler").len();

    // Completely full, and with a page or two left (the failure then comes
    // later: after the order, at writing the new version).
    for free_pages in [0u64, 1, 2] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .expect("filler");
        f.set_len(full - free_pages * 4096).expect("truncate");
        drop(f);
        let out = certctl(&cfg, &["issue", "f"]);
        assert_eq!(
            code(&out),
            Some(2),
            "{free_pages} pages free: {}",
            show(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!("cannot write {}/", store.display()))
                && err.contains("the disk is full"),
            "{free_pages} pages free: the message names the path and says the disk is full: {}",
            show(&out)
        );
        assert_eq!(
            live(&store, "f"),
            Some(first.clone()),
            "previous version live"
        );
        store_is_intact(&store);
        no_txt_left(&[&d]);
    }
}

#[test]
fn two_runs_at_once_issue_once() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = format!("{}.example.test", unique("tworuns"));
    let cfg = lab.inventory(dir.path(), &cert("t", &[&d], ""), 0, |t| t);
    let spawn = || {
        Command::new(certctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["run", "--no-notify"])
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
    assert_eq!(code(&a), Some(0), "{}", show(&a));
    assert_eq!(code(&b), Some(0), "{}", show(&b));
    let issued = [&a, &b]
        .iter()
        .filter(|o| stderr(o).contains("renew: t issued"))
        .count();
    assert_eq!(issued, 1, "one run issued, the other found it done");
    let versions = std::fs::read_dir(dir.path().join("store/archive/t"))
        .expect("archive")
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(versions, 1);
    store_is_intact(&dir.path().join("store"));
    no_txt_left(&[&d]);
}
