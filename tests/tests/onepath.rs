//! One path to the nodes (issue 10 §1): the report reads nodes the way a
//! deployment reaches them, so a node behind a `ProxyJump` in its own
//! `ssh_config` is deployed *and* reported, and a node that cannot be read
//! over SSH but serves the store's certificate is `unknown` for the deployed
//! part (with the reason), not critical.
//!
//! The certificate comes from a throwaway CA made here, trusted through the
//! inventory's `[report] trust`, so these tests do not depend on issuance.
//! They change what nodes serve and stop sshds, so they hold the lab
//! exclusively.

use std::path::{Path, PathBuf};

use acme_core::store::{Material, ReleaseMeta};
use acme_core::{CertName, Store};
use anyhow::{Context as _, Result};
use certctl_lab_tests::{certctl, lab, set_node, show, Lab, Restore};
use serde_json::Value;

/// A store with one version of `www`, signed by a CA written beside it.
struct Issued {
    dir: tempfile::TempDir,
    ca_pem: PathBuf,
    version: String,
    serial: String,
}

fn issue_www() -> Result<Issued> {
    let dir = tempfile::tempdir()?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "certctl onepath test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let ca_pem = dir.path().join("onepath-ca.pem");
    std::fs::write(&ca_pem, ca.pem())?;

    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(vec!["www.example.test".into(), "example.test".into()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(60);
    let cert = params.signed_by(&key, &ca)?;
    let facts = acme_core::inspect::CertFacts::from_der(cert.der())?;
    let (store, _) = Store::open(&dir.path().join("store"))?;
    let release = store.install(
        &CertName::new("www").map_err(anyhow::Error::msg)?,
        &Material {
            cert_pem: cert.pem(),
            chain_pem: ca.pem(),
            key_pem: acme_core::Secret::new(key.serialize_pem().into_bytes()),
            meta: ReleaseMeta {
                domains: facts.dns_names.clone(),
                key_type: acme_core::inventory::KeyType::EcdsaP256,
                serial: facts.serial.clone(),
                issuer: facts.issuer.clone(),
                not_before: facts.not_before,
                not_after: facts.not_after,
                directory: "test".into(),
                ari_id: None,
                stored_at: now,
            },
        },
    )?;
    Ok(Issued {
        dir,
        ca_pem,
        version: release.version,
        serial: facts.serial,
    })
}

/// The lab's inventory with the store in `issued.dir` and its CA trusted.
fn inventory(lab: &Lab, issued: &Issued, edit: impl FnOnce(String) -> String) -> PathBuf {
    let ca = issued.ca_pem.display().to_string();
    lab.inventory_in(issued.dir.path(), |t| {
        edit(t.replacen("trust = [", &format!("trust = [\"{ca}\", "), 1))
    })
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(out)))
}

fn kinds(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["kind"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The report's entry for `www` on `node`.
fn www_on<'a>(report: &'a Value, node: &str) -> &'a Value {
    report["certificates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "www"))
        .and_then(|c| c["nodes"].as_array())
        .and_then(|n| n.iter().find(|n| n["node"] == node))
        .unwrap_or_else(|| panic!("no www on {node}: {report:#}"))
}

/// Every SNI name of `www` on this node entry is served the store's leaf,
/// with nothing to say about it.
fn serves_the_store_leaf(n: &Value, serial: &str) {
    let served = n["served"].as_array().expect("served");
    assert_eq!(served.len(), 2, "{n:#}");
    for s in served {
        assert_eq!(s["certificate"]["leaf"]["serial"], serial, "{s:#}");
        assert_eq!(s["severity"], "ok", "{s:#}");
    }
}

/// An ssh_config in which `hidden-node3` is node3 reached only through
/// node1 (`ProxyJump`), with the lab's own client options. The jump hop is a
/// separate `ssh` that reads only this file, so the key and known_hosts are
/// named here too.
fn jump_config(lab: &Lab, dir: &Path) -> Result<PathBuf> {
    let ssh = lab.dir.join("ssh");
    let lab_options = std::fs::read_to_string(ssh.join("config"))?;
    let text = format!(
        "Host hidden-node3\n  HostName {node3}\n  ProxyJump certctl-edge@{node1}\n\n\
         Host *\n{lab_options}\n  IdentityFile {id}\n  IdentitiesOnly yes\n  \
         UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
        node3 = lab.node_addr(3),
        node1 = lab.node_addr(1),
        id = ssh.join("id_ed25519").display(),
        kh = ssh.join("known_hosts").display(),
    );
    let path = dir.join("ssh_config");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn a_node_behind_a_proxyjump_is_deployed_and_reported() -> Result<()> {
    let lab = lab();
    let _x = lab.exclusive();
    let issued = issue_www()?;
    let ssh_config = jump_config(lab, issued.dir.path())?;
    // node3's address is a name only that ssh_config knows.
    let hidden = inventory(lab, &issued, |t| {
        let t = set_node(&t, "node3", "address", "\"hidden-node3\"");
        let t = set_node(
            &t,
            "node3",
            "ssh_config",
            &format!("\"{}\"", ssh_config.display()),
        );
        set_node(
            &t,
            "node3",
            "probe",
            &format!("\"{}:443\"", lab.node_addr(3)),
        )
    });

    let out = certctl(&hidden, &["deploy", "www", "--node", "node3", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = json(&out);
    assert_eq!(rows[0]["node"], "node3", "{rows:#}");
    assert_eq!(rows[0]["outcome"], "deployed", "{rows:#}");
    assert_eq!(rows[0]["to"], issued.version.as_str(), "{rows:#}");

    let out = certctl(&hidden, &["report", "www", "--node", "node3", "--json"]);
    let report = json(&out);
    let n = www_on(&report, "node3");
    assert_eq!(
        n["deployed_version"],
        issued.version.as_str(),
        "read through the jump host: {n:#}"
    );
    assert_eq!(kinds(n), Vec::<String>::new(), "{n:#}");
    serves_the_store_leaf(n, &issued.serial);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // The jump was the path: with node1's sshd stopped, hidden-node3 cannot
    // be read, while node3's own sshd still answers directly.
    let _restore = Restore(lab, &["start", "sshd", "1"]);
    lab.must(&["stop", "sshd", "1"]);
    let out = certctl(&hidden, &["report", "www", "--node", "node3", "--json"]);
    let report = json(&out);
    let n = www_on(&report, "node3");
    assert_eq!(kinds(n), ["deployed_unknown"], "{n:#}");
    assert_eq!(n["findings"][0]["cause"], "unreachable", "{n:#}");
    let direct = inventory(lab, &issued, |t| t);
    let out = certctl(&direct, &["report", "www", "--node", "node3", "--json"]);
    let report = json(&out);
    let n = www_on(&report, "node3");
    assert_eq!(n["deployed_version"], issued.version.as_str(), "{n:#}");
    Ok(())
}

#[test]
fn a_node_whose_sshd_is_stopped_but_serves_the_store_version_is_unknown_not_critical() -> Result<()>
{
    let lab = lab();
    let _x = lab.exclusive();
    let issued = issue_www()?;
    let config = inventory(lab, &issued, |t| t);
    let out = certctl(&config, &["deploy", "www", "--node", "node2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let _restore = Restore(lab, &["start", "sshd", "2"]);
    lab.must(&["stop", "sshd", "2"]);
    let out = certctl(&config, &["report", "www", "--node", "node2", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "unknown (3), not critical (2): {}",
        show(&out)
    );
    let report = json(&out);
    assert_eq!(report["severity"], "unknown", "{report:#}");
    let n = www_on(&report, "node2");
    assert_eq!(n["severity"], "unknown", "{n:#}");
    assert!(n["deployed_version"].is_null(), "{n:#}");
    assert_eq!(kinds(n), ["deployed_unknown"], "{n:#}");
    let f = &n["findings"][0];
    assert_eq!(f["severity"], "unknown", "{f:#}");
    assert_eq!(f["cause"], "unreachable", "{f:#}");
    let reason = f["reason"].as_str().context("reason")?;
    assert!(
        reason.contains("refused") && reason.contains("node2"),
        "the reason names the node and what failed: {reason}"
    );
    // What it serves is still checked, and it is the store's version.
    serves_the_store_leaf(n, &issued.serial);

    // The table says which part is unknown and why.
    let out = certctl(
        &config,
        &["report", "www", "--node", "node2", "--color", "never"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.contains("node2"))
        .with_context(|| format!("no node2 row:\n{table}"))?;
    assert!(
        row.contains("unknown") && row.contains("cannot read the deployed version"),
        "{table}"
    );
    Ok(())
}
