//! Damaged store state (issue 9 §3 "Corrupt store state"): each kind of
//! damage is named by `list`, `report` and `renew`, counts as failed or
//! unknown (never ok), leaves the other certificate alone, and `renew`
//! repairs it: a fresh complete version for a damaged live version (the
//! damaged one is kept), a damaged record moved aside.

use std::fs;
use std::path::{Path, PathBuf};

use certctl_lab_tests::{certctl, head, lab, show, unique};

/// A store with two issued certificates, `good` and `bad`, no nodes.
struct Fixture {
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let lab = lab();
        let dir = tempfile::tempdir().expect("tempdir");
        let (good, bad) = (unique("good"), unique("bad"));
        let cfg = lab.inventory_in(dir.path(), |text| {
            format!(
                "{}\n[[certificate]]\nname = \"good\"\ndomains = [\"{good}.example.test\"]\nsolver = \"lab\"\n\
                 \n[[certificate]]\nname = \"bad\"\ndomains = [\"{bad}.example.test\"]\nsolver = \"lab\"\n",
                head(&text)
            )
        });
        let out = certctl(&cfg, &["issue", "good", "bad"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        Fixture { dir, cfg }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The live version directory of `name`.
    fn live(&self, name: &str) -> PathBuf {
        self.store()
            .join("archive")
            .join(name)
            .join(self.version(name))
    }

    fn version(&self, name: &str) -> String {
        fs::read_link(self.store().join("live").join(name))
            .expect("live link")
            .file_name()
            .expect("version")
            .to_string_lossy()
            .into_owned()
    }

    fn run(&self, args: &[&str]) -> (std::process::Output, serde_json::Value) {
        let out = certctl(&self.cfg, args);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, v)
    }
}

fn entry<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .expect("array")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn damage_paths(v: &serde_json::Value) -> Vec<String> {
    v["damage"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["path"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The files of a release directory, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("version dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Damages `bad` with `corrupt` (which returns the file that must be named),
/// then checks list, report, renew --dry-run and renew. `reissue`: the damage
/// is in the live version, so renew must issue a new one.
fn damaged_store_is_named_and_repaired(corrupt: impl FnOnce(&Fixture) -> PathBuf, reissue: bool) {
    let lab = lab();
    let _g = lab.shared();
    let f = Fixture::new();
    let good_version = f.version("good");
    let bad_version = f.version("bad");
    let bad_dir = f.store().join("archive/bad").join(&bad_version);
    let named = corrupt(&f);
    let named_s = named.display().to_string();

    // list: names the file, exit 2, the good one listed as before.
    let (out, v) = f.run(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        damage_paths(entry(&v, "bad")).contains(&named_s),
        "{named_s} not named: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&named_s),
        "{}",
        show(&out)
    );
    let good = entry(&v, "good");
    assert_eq!(good["version"], good_version.as_str(), "{v}");
    assert!(damage_paths(good).is_empty(), "{v}");
    let table = certctl(&f.cfg, &["list"]);
    assert_eq!(table.status.code(), Some(2), "{}", show(&table));
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("DAMAGED"),
        "{}",
        show(&table)
    );

    // report: the damaged certificate is unknown (exit 3), naming the file.
    let (out, v) = f.run(&["report", "--json", "--no-notify"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let certs = v["certificates"].as_array().expect("certificates");
    let bad = certs.iter().find(|c| c["name"] == "bad").expect("bad");
    assert_eq!(bad["severity"], "unknown", "{bad}");
    assert!(
        bad["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|x| x["kind"] == "store_damaged" && x["path"] == named_s.as_str()),
        "{bad}"
    );
    let good = certs.iter().find(|c| c["name"] == "good").expect("good");
    assert_eq!(good["severity"], "ok", "{good}");

    // renew --dry-run: names it, exit 2, writes nothing.
    let (out, v) = f.run(&["renew", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(damage_paths(entry(&v, "bad")).contains(&named_s), "{v}");
    assert_eq!(entry(&v, "good")["result"], "not_due", "{v}");
    if reissue {
        assert_eq!(entry(&v, "bad")["result"], "would_issue", "{v}");
    }
    assert_eq!(f.version("bad"), bad_version, "a dry run changed the store");

    // renew: repairs it; the good one is left alone.
    let (out, v) = f.run(&["renew", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&named_s),
        "{}",
        show(&out)
    );
    assert_eq!(entry(&v, "good")["result"], "not_due", "{v}");
    assert_eq!(f.version("good"), good_version);
    if reissue {
        assert_eq!(entry(&v, "bad")["result"], "issued", "{v}");
        let new = f.version("bad");
        assert_ne!(new, bad_version);
        assert_eq!(
            files(&f.live("bad")),
            [
                "cert.pem",
                "chain.pem",
                "fullchain.pem",
                "meta.json",
                "privkey.pem"
            ]
        );
        // The damaged version is kept for a look (unless it was moved away by the test).
        if named.starts_with(&bad_dir) {
            assert!(bad_dir.is_dir(), "the damaged version was removed");
        }
    } else {
        let moved = entry(&v, "bad")["damage"][0]["set_aside"]
            .as_str()
            .map(PathBuf::from)
            .expect("moved aside");
        assert!(moved.is_file(), "{}", moved.display());
        assert!(!named.exists(), "the damaged record is still in place");
    }

    // Afterwards all is well again.
    let (out, v) = f.run(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(damage_paths(entry(&v, "bad")).is_empty(), "{v}");
    let (out, _) = f.run(&["report", "--json", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn corrupt_renewal_record_is_named_and_moved_aside() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.store().join("state/bad/renewal.json");
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, b"{\"failures\": \"many\"").expect("write");
            p
        },
        false,
    );
}

#[test]
fn corrupt_node_record_is_named_and_moved_aside() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.store().join("state/bad/node-node1.json");
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, b"\x00\x01garbage").expect("write");
            p
        },
        false,
    );
}

#[test]
fn dangling_live_link_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            // The version directory goes away (moved out of the store).
            let v = f.live("bad");
            fs::rename(&v, f.dir.path().join("moved-away")).expect("move");
            f.store().join("live/bad")
        },
        true,
    );
}

#[test]
fn missing_cert_pem_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.live("bad").join("cert.pem");
            fs::remove_file(&p).expect("rm");
            p
        },
        true,
    );
}

#[test]
fn garbage_cert_pem_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.live("bad").join("cert.pem");
            fs::write(
                &p,
                b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            )
            .expect("write");
            p
        },
        true,
    );
}

#[test]
fn missing_privkey_pem_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.live("bad").join("privkey.pem");
            fs::remove_file(&p).expect("rm");
            p
        },
        true,
    );
}

#[test]
fn garbage_privkey_pem_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.live("bad").join("privkey.pem");
            fs::write(&p, b"random bytes, not a key").expect("write");
            p
        },
        true,
    );
}

#[test]
fn privkey_of_another_certificate_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.live("bad").join("privkey.pem");
            fs::copy(f.live("good").join("privkey.pem"), &p).expect("copy");
            p
        },
        true,
    );
}

#[test]
fn corrupt_meta_json_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            let p = f.live("bad").join("meta.json");
            fs::write(&p, b"{\"domains\": [").expect("write");
            p
        },
        true,
    );
}

/// Rewrites one field of `bad`'s meta.json.
fn edit_meta(f: &Fixture, field: &str, value: serde_json::Value) -> PathBuf {
    let p = f.live("bad").join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&fs::read(&p).expect("meta")).expect("json");
    meta[field] = value;
    fs::write(&p, serde_json::to_vec_pretty(&meta).expect("json")).expect("write");
    p
}

#[test]
fn meta_json_with_another_serial_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(|f| edit_meta(f, "serial", "1234abcd".into()), true);
}

#[test]
fn meta_json_with_another_expiry_is_named_and_reissued() {
    // A later not_after than the certificate's is what would hide an expiry.
    damaged_store_is_named_and_repaired(
        |f| edit_meta(f, "not_after", "2099-01-01T00:00:00Z".into()),
        true,
    );
}

#[test]
fn meta_json_with_other_domains_is_named_and_reissued() {
    damaged_store_is_named_and_repaired(
        |f| {
            let other = format!("{}.example.test", unique("other"));
            edit_meta(f, "domains", serde_json::json!([other]))
        },
        true,
    );
}

#[test]
fn a_damaged_live_version_is_never_deployed_and_the_other_certificates_are() {
    let lab = lab();
    // It changes what node1 serves.
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = lab.inventory_in(dir.path(), |t| t);
    let out = certctl(&cfg, &["issue", "www", "media"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let store = dir.path().join("store");
    let media = fs::canonicalize(store.join("live/media")).expect("live media");
    fs::write(media.join("cert.pem"), b"not a certificate\n").expect("garble");
    let node_link = lab.dir.join("nodes/node1/certs/live/media");
    let before = fs::read_link(&node_link).expect("node1 live/media");

    let out = certctl(&cfg, &["deploy", "--node", "node1", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = v.as_array().or(v["results"].as_array()).expect("results");
    let row = |c: &str| {
        rows.iter()
            .find(|r| r["certificate"] == c && r["node"] == "node1")
            .unwrap_or_else(|| panic!("no {c} row: {v}"))
            .to_string()
    };
    let media_row = row("media");
    assert!(
        media_row.contains("damaged")
            && media_row.contains(&media.join("cert.pem").display().to_string()),
        "{media_row}"
    );
    assert!(row("www").contains("deployed"), "{}", row("www"));
    assert_eq!(
        fs::read_link(&node_link).expect("node1 live/media"),
        before,
        "node1 keeps the media version it had"
    );
}
