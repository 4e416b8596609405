//! `certctl report --html` against the lab, looked at by a real browser:
//! headless Chromium from Debian loads the page from `file://`, its DOM is
//! checked for every certificate and node and the severity and drift marks,
//! its net log for requests, and a screenshot is kept in
//! `target/html-report/` (the README's `docs/report.png` is one of them).
//!
//! Run `cargo build -p certctl` first (the test runs the binary).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use certctl_lab_tests::{certctl, first_nodes, show};
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::Value;
use time::OffsetDateTime;

const CHROMIUM: &str = "chromium";

/// Runs headless Chromium on `url` with `args`, in a fresh profile; returns
/// its stdout. Chromium's own background requests (update checks, sign-in)
/// go to a refusing proxy on loopback and resolve no name, so nothing leaves
/// the machine; the page's requests are judged from the net log.
fn chromium(url: &str, args: &[String]) -> Result<String> {
    let found = Command::new(CHROMIUM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !found.is_ok_and(|s| s.success()) {
        bail!(
            "`{CHROMIUM}` is not installed: run `apt-get install -y chromium` (tests/run.sh installs it)"
        );
    }
    let profile = tempfile::tempdir()?;
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start chromium")?;
    // Read stdout on a thread so a large DOM never blocks the browser.
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("chromium did not finish within 120 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("chromium {args:?} {url} failed: {status}\n{err}");
    }
    Ok(out)
}

/// The URLs a page asked for in a Chromium net log: the URL requests whose
/// initiator is the page (a `file://` document has the opaque origin
/// `null`) or whose network isolation key is the page's site. Chromium's own
/// requests (initiator "not an origin", no file:// key) are not the page's.
fn page_requests(net_log: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(net_log).context("read the net log")?;
    let log: Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .context("parse the net log")?;
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_i64()
        .context("net log constants")?;
    let mut urls = Vec::new();
    for e in log["events"].as_array().context("net log events")? {
        if e["type"].as_i64() != Some(start_job) {
            continue;
        }
        let p = &e["params"];
        // The begin event carries the request; the end event only its result.
        let Some(url) = p["url"].as_str() else {
            continue;
        };
        let initiator = p["initiator"].as_str().unwrap_or_default();
        let nik = p["network_isolation_key"].as_str().unwrap_or_default();
        if initiator != "not an origin" || nik.contains("file://") {
            urls.push(url.to_string());
        }
    }
    Ok(urls)
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| certctl_lab_tests::workspace().join("target"))
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(path: &Path) -> Result<(u32, u32)> {
    let b = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    anyhow::ensure!(
        b.len() > 24 && b.starts_with(b"\x89PNG\r\n\x1a\n") && &b[12..16] == b"IHDR",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Ok((be(16), be(20)))
}

/// Puts a `www` version with 10 days left into the store at `store`, which
/// no node has: a warning, and drift on every node.
fn store_www_expiring_soon(store: &Path) -> Result<()> {
    use acme_core::store::{Material, ReleaseMeta, Store};
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::new(vec![
        "www.example.test".to_string(),
        "example.test".to_string(),
    ])?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "www.example.test");
    p.not_before = now - time::Duration::days(80);
    p.not_after = now + time::Duration::days(10);
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    let facts = acme_core::inspect::CertFacts::from_der(cert.der())?;
    let (store, _) = Store::open(store)?;
    store.install(
        &acme_core::CertName::new("www").map_err(anyhow::Error::msg)?,
        &Material {
            cert_pem: cert.pem(),
            chain_pem: String::new(),
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
                stored_at: now,
            },
        },
    )?;
    Ok(())
}

#[test]
fn html_report_of_the_lab_shows_every_certificate_and_node_in_chromium_and_fetches_nothing(
) -> Result<()> {
    let lab = certctl_lab_tests::lab();
    let _lock = lab.shared();
    let dir = tempfile::tempdir()?;
    // The lab's three certificates on its first five nodes.
    let config = lab.inventory_in(dir.path(), |t| {
        let certs = t.split("\n[[node]]\n").next().unwrap_or(&t).to_string();
        format!("{certs}\n{}", first_nodes(&t, 5))
    });
    store_www_expiring_soon(&dir.path().join("store"))?;

    let page = dir.path().join("report.html");
    let out = certctl(
        &config,
        &[
            "report",
            "--json",
            "--html",
            page.to_str().context("utf-8")?,
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("report JSON\n{}", show(&out)))?;
    let severity = v["severity"].as_str().context("severity")?;
    let code = match severity {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        _ => 3,
    };
    assert_eq!(out.status.code(), Some(code), "{}", show(&out));
    let html = std::fs::read_to_string(&page)?;
    assert!(
        !dir.path()
            .read_dir()?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".tmp-")),
        "no temp file left beside the page"
    );

    // 1. The DOM after load, and the page's requests.
    let net_log = dir.path().join("net-log.json");
    let url = format!("file://{}", page.display());
    let dom = chromium(
        &url,
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", net_log.display()),
        ],
    )?;
    assert!(dom.contains("certctl report"), "not the page:\n{dom}");
    assert!(
        dom.contains(&format!("by certctl {}", env!("CARGO_PKG_VERSION"))),
        "version"
    );
    let generated = v["generated_at"].as_str().context("generated_at")?;
    assert!(dom.contains(&format!("datetime=\"{generated}\"")), "when");
    assert!(dom.contains(&format!(
        "<span class=\"badge sev-{severity}\" data-severity=\"{severity}\">{severity}</span>"
    )));
    let certs = v["certificates"].as_array().context("certificates")?;
    assert_eq!(certs.len(), 3);
    assert_eq!(dom.matches("<details class=\"cert ").count(), certs.len());
    for c in certs {
        let name = c["name"].as_str().context("name")?;
        let sev = c["severity"].as_str().context("severity")?;
        assert!(
            dom.contains(&format!(
                "data-certificate=\"{name}\" data-severity=\"{sev}\""
            )),
            "{name} ({sev}) missing"
        );
        let nodes = c["nodes"].as_array().context("nodes")?;
        assert_eq!(nodes.len(), 5, "{name}");
        // Every node of the certificate, inside its <details>, with its severity.
        let at = dom
            .find(&format!("data-certificate=\"{name}\""))
            .context("certificate")?;
        let block = &dom[at..at + dom[at..].find("</details>").context("end")?];
        for n in nodes {
            let node = n["node"].as_str().context("node")?;
            let nsev = n["severity"].as_str().context("severity")?;
            assert!(
                block.contains(&format!("data-node=\"{node}\" data-severity=\"{nsev}\"")),
                "{name}/{node} ({nsev}) missing"
            );
        }
        for f in c["findings"].as_array().context("findings")? {
            let (kind, fsev) = (f["kind"].as_str(), f["severity"].as_str());
            assert!(
                block.contains(&format!(
                    "<li class=\"finding sev-{}",
                    fsev.context("severity")?
                )) && block.contains(&format!("data-kind=\"{}\"", kind.context("kind")?)),
                "{name}: finding {f} not marked"
            );
        }
    }
    // www: a warning in the store, drift marked on every node.
    let www = dom.find("data-certificate=\"www\"").context("www")?;
    let block = &dom[www..www + dom[www..].find("</details>").context("end")?];
    assert!(block.contains("data-kind=\"expires_soon\""), "{block}");
    assert!(
        dom.contains("class=\"cert sev-critical drift\" data-certificate=\"www\"")
            || dom.contains("class=\"cert sev-warning drift\" data-certificate=\"www\"")
            || dom.contains("class=\"cert sev-unknown drift\" data-certificate=\"www\""),
        "www not marked as drifted"
    );
    for i in 1..=5 {
        assert!(
            block.contains(&format!("drift\" data-node=\"node{i}\"")),
            "node{i}: drift not marked"
        );
    }
    assert!(block.contains("data-kind=\"deployed_drift\""));
    assert!(block.contains("<span class=\"tag drift\">drift</span>"));

    let asked = page_requests(&net_log)?;
    assert!(
        asked
            .iter()
            .all(|u| u.starts_with("file:") || u.starts_with("data:")),
        "the page fetched {asked:?}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "a URL in the page"
    );

    // The net-log check can fail: a page that loads an image over HTTP is caught.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><p>control</p><img src=\"http://127.0.0.1:9/certctl-html-control.png\">",
    )?;
    let control_log = dir.path().join("control-net-log.json");
    chromium(
        &format!("file://{}", control.display()),
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", control_log.display()),
        ],
    )?;
    assert_eq!(
        page_requests(&control_log)?,
        vec!["http://127.0.0.1:9/certctl-html-control.png".to_string()],
        "the net log check did not see the control page's request"
    );

    // 2. Screenshots, kept as artifacts: the whole page, and its top at
    // 3/4 scale for the README (docs/report.png is a copy of that one).
    let shots = target_dir().join("html-report");
    std::fs::create_dir_all(&shots)?;
    std::fs::copy(&page, shots.join("report.html"))?;
    for (file, window, scale, size) in [
        ("report.png", (1400, 2000), "1", (1400, 2000)),
        ("report-readme.png", (1280, 1240), "0.75", (960, 930)),
    ] {
        let png = shots.join(file);
        let _ = std::fs::remove_file(&png);
        chromium(
            &url,
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={},{}", window.0, window.1),
                format!("--force-device-scale-factor={scale}"),
                "--hide-scrollbars".into(),
            ],
        )?;
        assert_eq!(png_size(&png)?, size, "{}", png.display());
        eprintln!("screenshot: {}", png.display());
    }
    Ok(())
}
