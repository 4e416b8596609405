//! The store is certctl's only when certctl made it, and a dry run writes
//! nothing anywhere (issue 9 §1 "The store"): every dry run and every
//! read-only command, run against a missing store path and against a foreign
//! directory, leaves the tree byte for byte, mode for mode and mtime for
//! mtime as it was, and creates nothing.
//!
//! Run `cargo build -p certctl` first (the tests run the binary).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use certctl_lab_tests::{certctl, lab, show};

/// Every dry run certctl has, and the read-only commands.
const COMMANDS: &[&[&str]] = &[
    &["renew", "--dry-run"],
    &["renew", "--dry-run", "--json"],
    &["renew", "--dry-run", "--force"],
    &["deploy", "--dry-run"],
    &["deploy", "--dry-run", "--json"],
    &["list"],
    &["list", "--json"],
    &["report", "--json", "--no-notify"],
];

/// One entry of a tree: path, type and mode, size, mtime, contents.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    path: PathBuf,
    mode: u32,
    mtime: (i64, i64),
    contents: Vec<u8>,
}

/// Every path under `dir` (not following links), sorted.
fn snapshot(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).expect("stat");
        let contents = if m.is_file() {
            std::fs::read(&p).expect("read")
        } else if m.file_type().is_symlink() {
            std::fs::read_link(&p)
                .expect("readlink")
                .into_os_string()
                .into_encoded_bytes()
        } else {
            Vec::new()
        };
        if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("list") {
                todo.push(e.expect("entry").path());
            }
        }
        out.push(Entry {
            path: p,
            mode: m.mode(),
            mtime: (m.mtime(), m.mtime_nsec()),
            contents,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn inventory_with_store(dir: &Path, store: &Path) -> PathBuf {
    let default = dir.join("store");
    lab().inventory_in(dir, |text| {
        text.replace(
            &format!("store = \"{}\"", default.display()),
            &format!("store = \"{}\"", store.display()),
        )
    })
}

#[test]
fn dry_runs_and_read_only_commands_on_a_missing_store_create_nothing() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("not-yet/store");
    let cfg = inventory_with_store(dir.path(), &store);
    let before = snapshot(dir.path());
    for args in COMMANDS {
        let out = certctl(&cfg, args);
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{args:?} changed the tree:\n{}",
            show(&out)
        );
        assert!(
            !store.exists() && !dir.path().join("not-yet").exists(),
            "{args:?}"
        );
    }
    // A dry run on a missing store is "nothing stored yet", not an error.
    let out = certctl(&cfg, &["renew", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v.as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|o| o["result"] == "would_issue")),
        "{v}"
    );
    let out = certctl(&cfg, &["deploy", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn dry_runs_and_read_only_commands_refuse_a_foreign_directory_and_change_nothing() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // Someone's directory: files 0644, a subdirectory 0755, even a name
    // certctl uses, and a link.
    let foreign = dir.path().join("srv-data");
    std::fs::create_dir_all(foreign.join("archive/old")).expect("mkdir");
    for (f, text) in [
        ("index.html", "<h1>mine</h1>\n"),
        ("notes.txt", "do not touch\n"),
        ("archive/old/cert1.pem", "certbot's\n"),
    ] {
        let p = foreign.join(f);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    for d in ["", "archive", "archive/old"] {
        std::fs::set_permissions(foreign.join(d), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    std::os::unix::fs::symlink("notes.txt", foreign.join("latest")).expect("symlink");
    let cfg = inventory_with_store(dir.path(), &foreign);
    let before = snapshot(dir.path());
    for args in COMMANDS {
        let out = certctl(&cfg, args);
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{args:?} changed the tree:\n{}",
            show(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("not a certctl store"),
            "{args:?} must refuse the foreign directory:\n{}",
            show(&out)
        );
        assert!(
            stderr.contains(&foreign.display().to_string()),
            "{}",
            show(&out)
        );
    }
    // A writing command refuses it as well, before writing anything.
    let out = certctl(&cfg, &["renew"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(snapshot(dir.path()), before, "{}", show(&out));
}

#[test]
fn a_store_path_that_is_a_file_device_fifo_socket_or_root_is_refused_by_every_command() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "mine\n").expect("write");
    let fifo = dir.path().join("a-fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(st.success());
    let sock = dir.path().join("a-socket");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let link = dir.path().join("link-to-file");
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    let cases: [(&Path, &str); 6] = [
        (&file, "regular file"),
        (Path::new("/dev/null"), "device"),
        (&fifo, "FIFO"),
        (&sock, "socket"),
        (&link, "symbolic link to"),
        (Path::new("/"), "file system root"),
    ];
    // The inventory lives elsewhere, so the tree holds only what is tested.
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let before = snapshot(dir.path());
    for (store, says) in cases {
        let cfg = inventory_with_store(cfg_dir.path(), store);
        for args in [
            &["renew"][..],
            &["deploy"],
            &["renew", "--dry-run"],
            &["list"],
        ] {
            let out = certctl(&cfg, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                // `/` is refused already by the inventory, at file:line:col.
                !out.status.success()
                    && stderr.contains(says)
                    && (stderr.contains("set `store`") || stderr.contains("certctl.toml:2:9:")),
                "{} with {args:?}:\n{}",
                store.display(),
                show(&out)
            );
        }
        assert_eq!(snapshot(dir.path()), before, "{}", store.display());
    }
}

#[test]
fn a_writing_command_repairs_only_certctls_files_and_never_adds_execute() {
    use acme_core::store::{Material, ReleaseMeta};
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    let cfg = inventory_with_store(dir.path(), &store_dir);
    let inv = acme_core::Inventory::load(&cfg).expect("inventory");
    let cert = inv.certificates.first().expect("a certificate");
    let (store, _) = acme_core::Store::open(&store_dir).expect("store");
    let now = time::OffsetDateTime::now_utc();
    let release = store
        .install(
            &cert.name,
            &Material {
                cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
                chain_pem: String::new(),
                key_pem: acme_core::Secret::new(
                    b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n".to_vec(),
                ),
                meta: ReleaseMeta {
                    domains: cert.domains.iter().map(|d| d.to_string()).collect(),
                    key_type: cert.key,
                    serial: "0123abcd".into(),
                    issuer: "CN=test".into(),
                    not_before: now,
                    not_after: now + time::Duration::days(90),
                    directory: inv.account.directory.clone(),
                    ari_id: None,
                    stored_at: now,
                },
            },
        )
        .expect("install");
    drop(store);
    let chmod = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    let foreign = [store_dir.join("notes.txt"), release.dir.join("README")];
    for f in &foreign {
        std::fs::write(f, "not certctl's\n").expect("write");
        chmod(f, 0o666);
    }
    chmod(&release.file("cert"), 0o777);
    chmod(&release.file("privkey"), 0o644);
    chmod(&store_dir.join("archive"), 0o755);

    // Not due (90 days left, no ARI id): `renew <name>` only opens the store.
    let out = certctl(&cfg, &["renew", cert.name.as_str()]);
    assert!(out.status.success(), "{}", show(&out));
    let mode = |p: &Path| std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777;
    assert_eq!(mode(&release.file("cert")), 0o644, "{}", show(&out));
    assert_eq!(mode(&release.file("privkey")), 0o600);
    assert_eq!(mode(&store_dir.join("archive")), 0o700);
    for f in &foreign {
        assert_eq!(mode(f), 0o666, "{} is not certctl's", f.display());
        assert_eq!(std::fs::read(f).expect("read"), b"not certctl's\n");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("left alone"), "{}", show(&out));
}
