//! `certctl scan`, `certctl inspect` and `certctl report` against real TLS
//! servers: an in-process rustls server serving crafted certificates (one
//! per SNI name), PEM files on disk, and the lab's nginx nodes.
//!
//! Run `cargo build -p certctl` first (the tests run the binary).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use certctl_lab_tests::{certctl_bin, show};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

// ------------------------------------------------------------------ crafted PKI

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn params(cn: &str, sans: &[&str], days: (i64, i64)) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = OffsetDateTime::now_utc();
    p.not_before = now + Duration::days(days.0);
    p.not_after = now + Duration::days(days.1);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn ca(cn: &str, days: (i64, i64), parent: Option<&Ca>) -> Result<Ca> {
    let mut p = params(cn, &[], days)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate()?;
    let cert = match parent {
        Some(parent) => p.signed_by(&key, &parent.issuer())?,
        None => p.self_signed(&key)?,
    };
    Ok(Ca {
        params: p,
        key,
        der: cert.der().to_vec(),
        pem: cert.pem(),
    })
}

/// A leaf and its key; the chain to serve is chosen by the caller.
fn leaf(sans: &[&str], days: (i64, i64), issuer: Option<&Ca>) -> Result<(Vec<u8>, KeyPair)> {
    let (der, _, key) = leaf_pem(sans, days, issuer)?;
    Ok((der, key))
}

/// A leaf as DER and PEM, and its key.
fn leaf_pem(
    sans: &[&str],
    days: (i64, i64),
    issuer: Option<&Ca>,
) -> Result<(Vec<u8>, String, KeyPair)> {
    let p = params(sans[0], sans, days)?;
    let key = KeyPair::generate()?;
    let cert = match issuer {
        Some(ca) => p.signed_by(&key, &ca.issuer())?,
        None => p.self_signed(&key)?,
    };
    Ok((cert.der().to_vec(), cert.pem(), key))
}

// ------------------------------------------------------------- the TLS server

#[derive(Debug)]
struct BySni(HashMap<String, Arc<CertifiedKey>>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello.server_name().and_then(|n| self.0.get(n).cloned())
    }
}

/// An in-process TLS server on 127.0.0.200 (ephemeral port) presenting a
/// chain per SNI name; stopped on drop.
struct TlsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    fn start(chains: Vec<(&str, Vec<Vec<u8>>, &KeyPair)>) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut map = HashMap::new();
        for (sni, chain, key) in chains {
            let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            let signer = provider.key_provider.load_private_key(key_der)?;
            let chain = chain.into_iter().map(CertificateDer::from).collect();
            map.insert(sni.to_string(), Arc::new(CertifiedKey::new(chain, signer)));
        }
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni(map)));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.200:0")
            .context("bind 127.0.0.200 (loopback /8)")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                let _ = acceptor.accept(tcp).await;
                            });
                        }
                    }
                }
            });
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(certctl_bin())
        .args(args)
        .output()
        .expect("run certctl")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON: {e}\n{}", show(out)))
}

fn finding_kinds(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["kind"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------- scan

#[test]
fn scan_gives_the_right_verdict_for_each_broken_certificate() -> Result<()> {
    let root = ca("Scan Test Root", (-30, 3650), None)?;
    let int = ca("Scan Test Intermediate", (-30, 3000), Some(&root))?;
    let short_int = ca("Scan Test Short Intermediate", (-30, 30), Some(&root))?;
    let dying_int = ca("Scan Test Dying Intermediate", (-300, 4), Some(&root))?;
    let dir = tempfile::tempdir()?;
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, &root.pem)?;

    let (good, good_k) = leaf(&["good.scan.test"], (-1, 89), Some(&int))?;
    let (expired, expired_k) = leaf(&["expired.scan.test"], (-90, -1), Some(&int))?;
    let (soon, soon_k) = leaf(&["soon.scan.test"], (-76, 14), Some(&int))?;
    let (notyet, notyet_k) = leaf(&["notyet.scan.test"], (2, 92), Some(&int))?;
    let (other, other_k) = leaf(&["other.scan.test"], (-1, 89), Some(&int))?;
    let (selfsigned, selfsigned_k) = leaf(&["selfsigned.scan.test"], (-1, 89), None)?;
    let (missing, missing_k) = leaf(&["missing.scan.test"], (-1, 89), Some(&int))?;
    let (early, early_k) = leaf(&["early.scan.test"], (-1, 89), Some(&short_int))?;
    let (dying, dying_k) = leaf(&["dying.scan.test"], (-1, 89), Some(&dying_int))?;
    let server = TlsServer::start(vec![
        ("good.scan.test", vec![good, int.der.clone()], &good_k),
        (
            "expired.scan.test",
            vec![expired, int.der.clone()],
            &expired_k,
        ),
        ("soon.scan.test", vec![soon, int.der.clone()], &soon_k),
        ("notyet.scan.test", vec![notyet, int.der.clone()], &notyet_k),
        ("wrong.scan.test", vec![other, int.der.clone()], &other_k),
        ("selfsigned.scan.test", vec![selfsigned], &selfsigned_k),
        ("missing.scan.test", vec![missing], &missing_k),
        (
            "early.scan.test",
            vec![early, short_int.der.clone()],
            &early_k,
        ),
        (
            "dying.scan.test",
            vec![dying, dying_int.der.clone()],
            &dying_k,
        ),
    ])?;
    let addr = server.addr.to_string();
    let ca_file = root_pem.to_str().context("utf-8 path")?;

    // (sni, exit status, finding kinds)
    let cases: [(&str, i32, &[&str]); 9] = [
        ("good.scan.test", 0, &[]),
        ("expired.scan.test", 2, &["expired"]),
        ("soon.scan.test", 1, &["expires_soon"]),
        ("notyet.scan.test", 2, &["not_yet_valid"]),
        ("wrong.scan.test", 2, &["hostname_mismatch"]),
        ("selfsigned.scan.test", 2, &["self_signed"]),
        ("missing.scan.test", 2, &["incomplete_chain"]),
        ("early.scan.test", 1, &["intermediate_expires_first"]),
        // 4 days left on the intermediate: critical under the 7-day
        // threshold, although the leaf has 89.
        ("dying.scan.test", 2, &["intermediate_expires_first"]),
    ];
    for (sni, status, kinds) in cases {
        let out = run(&["scan", &addr, "--sni", sni, "--ca-file", ca_file, "--json"]);
        assert_eq!(out.status.code(), Some(status), "{sni}: {}", show(&out));
        let v = json(&out);
        assert_eq!(v["schema"], "certctl.scan/v1");
        let e = &v["endpoints"][0];
        assert_eq!(e["sni"], sni);
        assert_eq!(finding_kinds(e), kinds.to_vec(), "{sni}: {e:#}");
        assert!(e["certificate"]["leaf"]["serial"].is_string(), "{sni}");
        assert_eq!(
            e["certificate"]["trusted"],
            kinds
                .iter()
                .all(|k| *k == "expires_soon" || *k == "intermediate_expires_first"),
            "{sni}: {e:#}"
        );
    }

    // All at once from a list, plus a closed port: one line each, worst wins.
    let list = dir.path().join("endpoints.txt");
    let mut text = String::from("# endpoints\n");
    for (sni, _, _) in cases {
        text.push_str(&format!("{addr} {sni}\n"));
    }
    text.push_str("127.0.0.200:1 closed.scan.test\n");
    std::fs::write(&list, text)?;
    let out = run(&[
        "scan",
        "--from-file",
        list.to_str().context("utf-8")?,
        "--ca-file",
        ca_file,
        "--color",
        "never",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 1 + cases.len() + 1, "{table}");
    let closed = table
        .lines()
        .find(|l| l.contains("closed.scan.test"))
        .context("closed line")?;
    assert!(
        closed.contains("unknown") && closed.contains("unreachable"),
        "{closed}"
    );
    let good_line = table
        .lines()
        .find(|l| l.contains("good.scan.test"))
        .context("good line")?;
    assert!(
        good_line.contains(" ok ") && good_line.contains("trusted"),
        "{good_line}"
    );
    // The table's LEFT is the chain's: the intermediate's 4 days.
    let dying_line = table
        .lines()
        .find(|l| l.contains("dying.scan.test"))
        .context("dying line")?;
    assert!(
        dying_line.contains("critical")
            && (dying_line.contains(" 3d") || dying_line.contains(" 4d")),
        "{dying_line}"
    );

    // Only the closed port: unknown.
    let out = run(&["scan", "127.0.0.200:1", "--sni", "x.scan.test"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    Ok(())
}

// ----------------------------------------------------------------- inspect

#[test]
fn inspect_checks_files_chains_and_keys_on_disk() -> Result<()> {
    let root = ca("Inspect Root", (-30, 3650), None)?;
    let int = ca("Inspect Intermediate", (-30, 3000), Some(&root))?;
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("live/www");
    std::fs::create_dir_all(&live)?;
    let (_, www, www_k) = leaf_pem(&["www.example.test"], (-1, 89), Some(&int))?;
    std::fs::write(live.join("fullchain.pem"), format!("{www}{}", int.pem))?;
    std::fs::write(live.join("privkey.pem"), www_k.serialize_pem())?;

    let old = dir.path().join("old");
    std::fs::create_dir_all(&old)?;
    let (_, expired, _) = leaf_pem(&["old.example.test"], (-90, -2), Some(&int))?;
    std::fs::write(old.join("old.crt"), format!("{expired}{}", int.pem))?;
    std::fs::write(old.join("old.key"), KeyPair::generate()?.serialize_pem())?;

    // The ok directory alone: exit 0, key matches.
    let out = run(&[
        "inspect",
        live.to_str().context("utf-8")?,
        "--json",
        "--ca-file",
        &write_root(dir.path(), &root)?,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json(&out);
    assert_eq!(v["schema"], "certctl.inspect/v1");
    let full = v["files"]
        .as_array()
        .and_then(|f| {
            f.iter().find(|f| {
                f["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("fullchain.pem"))
            })
        })
        .context("fullchain in report")?;
    assert_eq!(full["key"]["matches"], true, "{full:#}");
    assert_eq!(full["certificates"].as_array().map(Vec::len), Some(2));

    // Everything: the expired one with a foreign key is critical.
    let out = run(&["inspect", dir.path().to_str().context("utf-8")?, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let v = json(&out);
    let oldf = v["files"]
        .as_array()
        .and_then(|f| {
            f.iter()
                .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with("old.crt")))
        })
        .context("old.crt in report")?;
    let kinds = finding_kinds(oldf);
    assert!(kinds.contains(&"expired".to_string()), "{oldf:#}");
    assert!(kinds.contains(&"key_mismatch".to_string()), "{oldf:#}");

    // A file that is not PEM at all, named directly: unknown (3).
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n",
    )?;
    let out = run(&["inspect", junk.to_str().context("utf-8")?]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    Ok(())
}

/// Runs certctl with a watchdog: kills it and fails after 10 s.
fn run_bounded(args: &[&str]) -> Result<Output> {
    let mut child = Command::new(certctl_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let start = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            child.kill()?;
            let out = child.wait_with_output()?;
            anyhow::bail!("certctl {args:?} hung for 10 s:\n{}", show(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

#[test]
fn inspect_of_a_fifo_or_dev_zero_returns_at_once_with_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("cert.pem");
    assert!(Command::new("mkfifo").arg(&fifo).status()?.success());
    let fifo_s = fifo.to_str().context("utf-8")?;
    for (path, says) in [
        (fifo_s, "is a FIFO (named pipe), not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
    ] {
        let out = run_bounded(&["inspect", path])?;
        assert_eq!(out.status.code(), Some(3), "{}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(path) && stdout.contains(says),
            "{}",
            show(&out)
        );
        let out = run_bounded(&["inspect", "--json", path])?;
        assert_eq!(out.status.code(), Some(3), "{}", show(&out));
        assert_eq!(finding_kinds(&json(&out)["files"][0]), vec!["unreadable"]);
    }
    // A FIFO given as a trust anchor file: refused, not waited on.
    let out = run_bounded(&["inspect", "/dev/null", "--ca-file", fifo_s])?;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FIFO"),
        "{}",
        show(&out)
    );
    // The inventory too.
    let out = run_bounded(&["--config", fifo_s, "check"])?;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FIFO"),
        "{}",
        show(&out)
    );
    // And an endpoint list.
    let out = run_bounded(&["scan", "--from-file", fifo_s])?;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FIFO"),
        "{}",
        show(&out)
    );
    Ok(())
}

#[test]
fn control_characters_are_escaped_in_tables_and_exact_in_json() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let evil = "evil\x1b]0;pwned\x07\x1b[2J\u{202e}lmth.pem\nnext";
    let path = dir.path().join(evil);
    std::fs::write(&path, b"")?;
    let root = ca("Escape Root", (-30, 3650), None)?;
    let (_, cert, _) = leaf_pem(&["bad\x1b[31m.example.test"], (-1, 89), Some(&root))?;
    let cert_path = dir.path().join("sans.pem");
    std::fs::write(&cert_path, cert)?;
    let out = run(&[
        "inspect",
        path.to_str().context("utf-8")?,
        cert_path.to_str().context("utf-8")?,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\x07') && !stdout.contains('\u{202e}'),
        "{stdout:?}"
    );
    assert_eq!(
        stdout.lines().count(),
        3,
        "a header and one line per file: {stdout:?}"
    );
    assert!(
        stdout.contains(r"evil\x1b]0;pwned\x07\x1b[2J\u{202e}lmth.pem\nnext"),
        "{stdout}"
    );
    assert!(stdout.contains(r"bad\x1b[31m.example.test"), "{stdout}");
    // JSON keeps the exact bytes (serde escapes them as JSON requires).
    let out = run(&[
        "inspect",
        "--json",
        path.to_str().context("utf-8")?,
        cert_path.to_str().context("utf-8")?,
    ]);
    let v = json(&out);
    let paths: Vec<&str> = v["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with(evil)), "{paths:?}");
    let sans: Vec<&str> = v["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f["certificates"][0]["dns_names"][0].as_str())
        .collect();
    assert_eq!(sans, vec!["bad\x1b[31m.example.test"]);
    // A name on the command line, in the final error line.
    let out = run(&["scan", "\x1b[31mhost\u{202e}:443"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b')
            && !stderr.contains('\u{202e}')
            && stderr.contains(r"\x1b[31mhost\u{202e}"),
        "{stderr:?}"
    );
    // And in a usage error from the argument parser.
    let out = run(&["--lock-wait", "\x1b[31mx\u{202e}\x07", "list"]);
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\u{202e}') && !stderr.contains('\x07'),
        "{stderr:?}"
    );
    assert!(stderr.contains(r"\u{202e}"), "{stderr:?}");
    Ok(())
}

#[test]
fn scan_with_an_invalid_sni_is_a_usage_error() {
    for sni in ["not a name", "exa..mple.test", "-x.test", "a\nb"] {
        let out = run(&["scan", "127.0.0.200:1", &format!("--sni={sni}")]);
        assert_eq!(out.status.code(), Some(64), "--sni {sni:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--sni: SNI name"), "{stderr}");
        assert!(!stderr.contains("critical"), "{stderr}");
    }
    // A bad --critical/--warning pair is one too.
    let out = run(&[
        "scan",
        "127.0.0.200:1",
        "--critical",
        "30d",
        "--warning",
        "7d",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
}

fn write_root(dir: &Path, root: &Ca) -> Result<String> {
    let p = dir.join("inspect-root.pem");
    std::fs::write(&p, &root.pem)?;
    Ok(p.to_string_lossy().into_owned())
}

// ------------------------------------------------------------- report (lab)

/// Points node `i`'s live links at the lab's self-signed bootstrap
/// certificates and reloads its nginx; puts the previous links back (and
/// reloads) on drop.
struct Bootstrapped {
    base: PathBuf,
    nginx_prefix: PathBuf,
    saved: Vec<(String, PathBuf)>,
}

const STAGED: &str = "report-test-bootstrap";

impl Bootstrapped {
    fn new(lab_dir: &Path, i: usize) -> Result<Self> {
        let node = lab_dir.join(format!("nodes/node{i}"));
        let mut g = Bootstrapped {
            base: node.join("certs"),
            nginx_prefix: node.join("nginx"),
            saved: Vec::new(),
        };
        for name in ["www", "media", "wild"] {
            let link = g.base.join("live").join(name);
            let previous = std::fs::read_link(&link).with_context(|| format!("{link:?}"))?;
            let staged = g.base.join("archive").join(name).join(STAGED);
            std::fs::create_dir_all(&staged)?;
            for f in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
                std::fs::copy(lab_dir.join("bootstrap").join(name).join(f), staged.join(f))?;
            }
            swap(
                &link,
                &Path::new("..").join("archive").join(name).join(STAGED),
            )?;
            g.saved.push((name.to_string(), previous));
        }
        g.reload()?;
        Ok(g)
    }

    fn reload(&self) -> Result<()> {
        let st = Command::new("nginx")
            .arg("-p")
            .arg(&self.nginx_prefix)
            .args(["-c", "nginx.conf", "-s", "reload"])
            .output()?;
        anyhow::ensure!(
            st.status.success(),
            "nginx reload failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        Ok(())
    }
}

fn swap(link: &Path, target: &Path) -> Result<()> {
    let tmp = link.with_extension("report-test-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)?;
    Ok(())
}

impl Drop for Bootstrapped {
    fn drop(&mut self) {
        for (name, previous) in &self.saved {
            let _ = swap(&self.base.join("live").join(name), previous);
            let _ = std::fs::remove_dir_all(self.base.join("archive").join(name).join(STAGED));
        }
        let _ = self.reload();
    }
}

/// Stops a lab component; starts it again on drop.
struct Stopped<'a> {
    lab: &'a certctl_lab_tests::Lab,
    what: [&'a str; 2],
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.lab.must(&["start", self.what[0], self.what[1]]);
    }
}

/// Waits until node `i` serves the self-signed bootstrap certificate (nginx
/// reloads asynchronously); not an assertion, a settle.
fn wait_for_self_signed(i: usize) {
    let addr = format!("127.0.0.{}:443", 10 + i);
    for _ in 0..100 {
        let out = run(&["scan", &addr, "--sni", "www.example.test", "--json"]);
        if serde_json::from_slice::<Value>(&out.stdout)
            .is_ok_and(|v| finding_kinds(&v["endpoints"][0]).contains(&"self_signed".into()))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn report_on_the_lab_flags_bootstrap_certificates_and_a_stopped_node() -> Result<()> {
    let lab = certctl_lab_tests::lab();
    let _lock = lab.exclusive();
    let _b1 = Bootstrapped::new(&lab.dir, 1)?;
    let _b2 = Bootstrapped::new(&lab.dir, 2)?;
    lab.must(&["stop", "nginx", "3"]);
    let _stopped = Stopped {
        lab,
        what: ["nginx", "3"],
    };
    wait_for_self_signed(1);
    wait_for_self_signed(2);

    let dir = tempfile::tempdir()?;
    let config = lab.inventory_in(dir.path(), |t| t);
    let prom = dir.path().join("certctl.prom");
    let out = certctl_lab_tests::certctl(
        &config,
        &[
            "report",
            "--json",
            "--prometheus",
            prom.to_str().context("utf-8")?,
            "--node",
            "node1",
            "--node",
            "node2",
            "--node",
            "node3",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let v = json(&out);
    assert_eq!(v["schema"], "certctl.report/v1");
    assert_eq!(v["severity"], "critical");
    let certs = v["certificates"].as_array().context("certificates")?;
    assert_eq!(certs.len(), 3);
    for c in certs {
        let name = c["name"].as_str().context("name")?;
        assert!(c["store"].is_null(), "{name}");
        assert_eq!(finding_kinds(c), vec!["not_in_store"], "{name}");
        let nodes = c["nodes"].as_array().context("nodes")?;
        assert_eq!(nodes.len(), 3, "{name}");
        let domains = c["domains"].as_array().map(Vec::len).unwrap_or(0);
        for n in nodes {
            let node = n["node"].as_str().context("node")?;
            let served = n["served"].as_array().context("served")?;
            assert_eq!(served.len(), domains, "{name}/{node}: one probe per name");
            for s in served {
                let kinds = finding_kinds(s);
                if node == "node3" {
                    assert!(s["certificate"].is_null(), "{name}/{node}");
                    assert_eq!(kinds, vec!["unreachable"], "{name}/{node}: {s:#}");
                } else {
                    assert!(
                        s["certificate"]["leaf"]["serial"].is_string(),
                        "{name}/{node}"
                    );
                    assert!(
                        kinds.contains(&"self_signed".into()),
                        "{name}/{node}: {s:#}"
                    );
                }
            }
            if node != "node3" {
                assert_eq!(
                    n["deployed_version"], STAGED,
                    "{name}/{node}: read over SSH"
                );
            } else {
                assert!(
                    n["deployed_version"].is_string(),
                    "sshd of node3 still answers"
                );
            }
        }
    }

    // The Prometheus textfile is valid and says the same.
    let text = std::fs::read_to_string(&prom)?;
    assert!(
        text.contains(
            "certctl_probe_success{certificate=\"www\",node=\"node3\",sni=\"www.example.test\"} 0"
        ),
        "{text}"
    );
    assert!(
        text.contains("kind=\"self_signed\",severity=\"critical\"} 1"),
        "{text}"
    );
    promtool_check(&prom)?;

    // The table: most urgent first, one row per store and node.
    let out = certctl_lab_tests::certctl(
        &config,
        &["report", "--color", "never", "--node", "node3", "www"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "only unknown and warning left: {}",
        show(&out)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = table.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert!(
        rows[0].starts_with("www") && rows[0].contains("node3") && rows[0].contains("unreachable"),
        "{table}"
    );
    assert!(
        rows[1].contains("store") && rows[1].contains("not in the store"),
        "{table}"
    );
    Ok(())
}

fn promtool_check(path: &Path) -> Result<()> {
    let status = Command::new("promtool").arg("--version").output();
    if status.is_err() {
        let apt = Command::new("apt-get")
            .args(["install", "-y", "-qq", "prometheus"])
            .output();
        if !apt.is_ok_and(|o| o.status.success())
            || Command::new("promtool").arg("--version").output().is_err()
        {
            eprintln!("\n*** WARNING: promtool is not installed and could not be installed: the Prometheus textfile was NOT checked ***\n");
            return Ok(());
        }
    }
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(path)?)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn report_shows_store_facts_renewal_and_drift_against_the_nodes() -> Result<()> {
    use acme_core::store::{Material, ReleaseMeta, Store};
    let lab = certctl_lab_tests::lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    let config = lab.inventory_in(dir.path(), |t| t);

    // A stored `www` that no node has: 80 of 90 days used, so renewal is due
    // (lifetime rule) and 10 days left is a warning.
    let root = ca("Drift Root", (-100, 3650), None)?;
    let (der, cert_pem, key) = leaf_pem(
        &["www.example.test", "example.test"],
        (-80, 10),
        Some(&root),
    )?;
    let facts = acme_core::inspect::CertFacts::from_der(&der)?;
    let (store, _) = Store::open(&dir.path().join("store"))?;
    let release = store.install(
        &acme_core::CertName::new("www").map_err(anyhow::Error::msg)?,
        &Material {
            cert_pem,
            chain_pem: root.pem.clone(),
            key_pem: acme_core::Secret::new(key.serialize_pem().into_bytes()),
            meta: ReleaseMeta {
                domains: facts.dns_names.clone(),
                key_type: acme_core::inventory::KeyType::EcdsaP256,
                serial: facts.serial.clone(),
                issuer: facts.issuer.clone(),
                not_before: facts.not_before,
                not_after: facts.not_after,
                directory: "https://127.0.0.1:14000/dir".into(),
                ari_id: facts.ari_id.clone(),
                stored_at: OffsetDateTime::now_utc(),
            },
        },
    )?;

    let out = certctl_lab_tests::certctl(&config, &["report", "www", "--json", "--node", "node1"]);
    let v = json(&out);
    let c = &v["certificates"][0];
    assert_eq!(c["store"]["version"], release.version.as_str(), "{c:#}");
    assert_eq!(c["store"]["serial"], facts.serial.as_str());
    assert_eq!(c["store"]["renewal"]["due"], true, "{c:#}");
    assert_eq!(c["store"]["renewal"]["reason"]["rule"], "lifetime");
    assert_eq!(finding_kinds(c), vec!["expires_soon"]);
    assert_eq!(c["findings"][0]["severity"], "warning");
    let n = &c["nodes"][0];
    assert_eq!(finding_kinds(n), vec!["deployed_drift"], "{n:#}");
    for s in n["served"].as_array().context("served")? {
        assert!(
            finding_kinds(s).contains(&"served_drift".to_string()),
            "{s:#}"
        );
    }
    assert!(out.status.code().unwrap_or(0) >= 1, "{}", show(&out));
    Ok(())
}
