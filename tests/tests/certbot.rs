//! Moving from certbot, with a real certbot tree: the Debian `certbot`
//! issues a lineage (and renews it twice) against the lab's pebble into a
//! node's `base_dir`, that node's nginx serves `live/<name>/`, and certctl
//! then deploys, deploys again (so prune runs) and rolls back. Every file
//! certbot wrote must still be there, byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use acme_core::inspect::{Prober, Trust};
use certctl_lab_tests::{certctl, head, lab, show, unique, Lab};

/// The node whose nginx gets the certbot vhost.
const NODE: usize = 4;

/// Every file under `dir` (a link as its target), by path relative to `dir`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(dir).expect("under").display().to_string();
            let meta = std::fs::symlink_metadata(&p).expect("lstat");
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                m.insert(rel, format!("-> {}", t.display()).into_bytes());
            } else if meta.is_dir() {
                todo.push(p);
            } else {
                m.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    m
}

/// Runs the real certbot: one issuance (or a forced renewal) of `domain` as
/// the lineage `name` in `le`, DNS-01 through the lab's bind9 with TSIG.
fn certbot(lab: &Lab, le: &Path, name: &str, domain: &str, renew: bool) {
    let ini = le.with_extension("rfc2136.ini");
    if !ini.exists() {
        let text = format!(
            "dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_port = 53\ndns_rfc2136_name = {}\n\
             dns_rfc2136_secret = {}\ndns_rfc2136_algorithm = HMAC-SHA256\n",
            std::fs::read_to_string(lab.dir.join("tsig.name"))
                .expect("tsig name")
                .trim(),
            std::fs::read_to_string(lab.dir.join("tsig.secret"))
                .expect("tsig secret")
                .trim()
        );
        std::fs::write(&ini, text).expect("write ini");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let work = le.with_extension("work");
    let logs = le.with_extension("logs");
    let mut c = Command::new("certbot");
    c.args(["certonly", "--dns-rfc2136", "--dns-rfc2136-credentials"])
        .arg(&ini)
        .args(["--dns-rfc2136-propagation-seconds", "1"])
        .args(["--server", "https://127.0.0.1:14000/dir"])
        .args(["--non-interactive", "--agree-tos", "-m", "ops@example.test"])
        .arg("--config-dir")
        .arg(le)
        .arg("--work-dir")
        .arg(&work)
        .arg("--logs-dir")
        .arg(&logs)
        .args(["--cert-name", name, "-d", domain, "--key-type", "ecdsa"])
        .env("REQUESTS_CA_BUNDLE", lab.dir.join("ca/lab-ca.pem"));
    if renew {
        c.arg("--force-renewal");
    }
    let out = c.output().expect("run certbot (apt-get install certbot)");
    assert!(out.status.success(), "certbot failed: {}", show(&out));
}

/// The leaf node [`NODE`] presents for `sni`, DER.
async fn served(lab: &Lab, sni: &str) -> Vec<u8> {
    let prober = Prober::new(&Trust::default(), Duration::from_secs(3)).expect("prober");
    let s = prober
        .probe(&format!("{}:443", lab.node_addr(NODE)), sni)
        .await
        .unwrap_or_else(|e| panic!("node{NODE} {sni}: {e}"));
    s.leaf().expect("a leaf").to_vec()
}

/// The first certificate of a PEM file, DER.
fn leaf_of(pem_file: &Path) -> Vec<u8> {
    let pem = std::fs::read(pem_file).expect("read pem");
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
    p.contents
}

/// Node [`NODE`]'s nginx also serves `domain` from the certbot tree `le`;
/// dropping it puts the node's extra config back and reloads.
struct Vhost {
    extra: PathBuf,
    old: Vec<u8>,
    nginx: PathBuf,
}

impl Vhost {
    fn add(lab: &Lab, le: &Path, name: &str, domain: &str) -> Self {
        let nginx = lab.dir.join(format!("nodes/node{NODE}/nginx"));
        let extra = nginx.join("extra.conf");
        let old = std::fs::read(&extra).unwrap_or_default();
        let conf = format!(
            "server {{\n    listen {}:443 ssl;\n    server_name {domain};\n    \
             ssl_certificate {le}/live/{name}/fullchain.pem;\n    \
             ssl_certificate_key {le}/live/{name}/privkey.pem;\n    return 200 \"certbot\\n\";\n}}\n",
            lab.node_addr(NODE),
            le = le.display()
        );
        std::fs::write(&extra, conf).expect("write extra.conf");
        let v = Self { extra, old, nginx };
        v.reload();
        v
    }

    fn reload(&self) {
        let out = Command::new("nginx")
            .arg("-p")
            .arg(format!("{}/", self.nginx.display()))
            .args(["-c", "nginx.conf", "-s", "reload"])
            .output()
            .expect("nginx");
        assert!(out.status.success(), "nginx reload: {}", show(&out));
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.extra, &self.old);
        self.reload();
    }
}

/// Polls until node [`NODE`] serves `leaf` for `sni` (nginx reloads
/// asynchronously), for at most 5 s.
async fn wait_served(lab: &Lab, sni: &str, leaf: &[u8]) -> bool {
    for _ in 0..50 {
        if served(lab, sni).await == leaf {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The inventory: the lab's account and solver, one certificate named like
/// the certbot lineage, and node [`NODE`] with the certbot tree as `base_dir`.
fn inventory(lab: &Lab, dir: &Path, le: &Path, name: &str, domain: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.dir.join("certctl.toml")).expect("lab inventory");
    let head = head(&text).replace(
        &format!("store = \"{}\"", lab.dir.join("store").display()),
        &format!("store = \"{}\"", dir.join("store").display()),
    );
    let node = text
        .split("[[node]]")
        .find(|b| b.contains(&format!("name = \"node{NODE}\"")))
        .expect("node block");
    let node: String = node
        .lines()
        .filter(|l| !l.starts_with("base_dir") && !l.starts_with("groups"))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("certctl.toml");
    std::fs::write(
        &path,
        format!(
            "{head}[deploy]\nkeep_versions = 1\n\n[[certificate]]\nname = \"{name}\"\n\
             domains = [\"{domain}\"]\nsolver = \"lab\"\ngroups = [\"certbot\"]\n\n\
             [[node]]{node}groups = [\"certbot\"]\nbase_dir = \"{}\"\n",
            le.display()
        ),
    )
    .expect("write inventory");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certbot_tree_is_adopted_pruned_around_and_rolled_back_to_with_every_certbot_file_kept() {
    let lab = lab();
    // It changes node4's nginx configuration.
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let le = dir.path().join("letsencrypt");
    let name = unique("cbt");
    let domain = format!("{name}.example.test");

    // A lineage of three issuances (two renewals), as certbot leaves it.
    certbot(lab, &le, &name, &domain, false);
    certbot(lab, &le, &name, &domain, true);
    certbot(lab, &le, &name, &domain, true);
    assert!(le.join(format!("archive/{name}/cert3.pem")).exists());
    assert!(le.join(format!("renewal/{name}.conf")).exists());
    let certbot_files = tree(&le);
    let certbot_leaf = leaf_of(&le.join(format!("live/{name}/cert.pem")));

    let _vhost = Vhost::add(lab, &le, &name, &domain);
    assert!(
        wait_served(lab, &domain, &certbot_leaf).await,
        "nginx serves certbot's certificate before certctl"
    );

    let config = inventory(lab, dir.path(), &le, &name, &domain);
    let store_leaf = || leaf_of(&dir.path().join(format!("store/live/{name}/cert.pem")));

    // Three certctl versions, each deployed: the first adopts certbot's live
    // directory, the third prunes certctl's first (keep_versions = 1).
    let mut versions = Vec::new();
    for round in 0..3 {
        let out = certctl(&config, &["issue", &name]);
        assert_eq!(out.status.code(), Some(0), "issue: {}", show(&out));
        let out = certctl(&config, &["deploy", "--json"]);
        assert_eq!(out.status.code(), Some(0), "deploy {round}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warnings = stderr.matches("certbot still manages").count();
        assert_eq!(
            warnings, 1,
            "certbot's renewal file is named once:\n{stderr}"
        );
        assert!(stderr.contains("certbot delete"), "{stderr}");
        assert_eq!(served(lab, &domain).await, store_leaf(), "serves certctl's");
        let link = std::fs::read_link(le.join(format!("live/{name}"))).expect("live link");
        versions.push(link.file_name().expect("version").to_owned());
    }
    let archive = le.join(format!("archive/{name}"));
    assert!(
        !archive.join(&versions[0]).exists(),
        "prune ran: certctl's first version is gone"
    );

    // Every file certbot wrote is still there, byte for byte; its live
    // directory is kept whole beside the link, at the same depth.
    let adopted: Vec<String> = std::fs::read_dir(&archive)
        .expect("archive")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("adopted-"))
        .collect();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    let kept_live = format!("live/.{name}.{}/", adopted[0]);
    let now = tree(&le);
    for (path, bytes) in &certbot_files {
        let at = path.replace(&format!("live/{name}/"), &kept_live);
        assert_eq!(
            now.get(&at),
            Some(bytes),
            "certbot's {path} (expected at {at}) is kept byte for byte"
        );
    }
    assert_eq!(
        leaf_of(&le.join(&kept_live).join("cert.pem")),
        certbot_leaf,
        "the kept live directory still resolves to certbot's files"
    );

    // Roll back twice: to certctl's second version, then to the adopted copy.
    for _ in 0..2 {
        let out = certctl(
            &config,
            &["rollback", &name, "--node", &format!("node{NODE}")],
        );
        assert_eq!(out.status.code(), Some(0), "rollback: {}", show(&out));
    }
    let link = std::fs::read_link(le.join(format!("live/{name}"))).expect("live link");
    assert_eq!(link, Path::new("../archive").join(&name).join(&adopted[0]));
    assert!(
        wait_served(lab, &domain, &certbot_leaf).await,
        "nginx serves certbot's certificate again after rolling back to the adopted version"
    );
    let now = tree(&le);
    for (path, bytes) in &certbot_files {
        let at = path.replace(&format!("live/{name}/"), &kept_live);
        assert_eq!(now.get(&at), Some(bytes), "after rollback: {path}");
    }
}
