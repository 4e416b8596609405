use std::time::Duration;

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use super::*;
use crate::acme::{RenewalPolicy, RenewalWindow};
use crate::inspect::testutil::{intermediate, leaf, root};
use crate::inspect::CertFacts;

const TH: Thresholds = Thresholds {
    warning: Duration::from_secs(21 * 86_400),
    critical: Duration::from_secs(7 * 86_400),
};

fn served(chain: &[&[u8]], verification: Result<(), String>) -> Served {
    Served {
        chain: chain
            .iter()
            .map(|d| CertificateDer::from(d.to_vec()))
            .collect(),
        verification: verification.map_err(|why| {
            crate::inspect::probe::VerifyError::Rejected(rustls::Error::General(why))
        }),
        elapsed: Duration::from_millis(3),
    }
}

fn kinds(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.kind.name()).collect()
}

#[test]
fn validity_thresholds() {
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::DAY;
    let at = |days: i64| {
        assess_validity(
            now - day * 30,
            now + time::Duration::days(days),
            TH,
            now,
            true,
        )
    };
    assert_eq!(at(60), None);
    assert_eq!(at(20).map(|f| f.severity), Some(Severity::Warning));
    assert_eq!(at(6).map(|f| f.severity), Some(Severity::Critical));
    let expired = at(-1).expect("finding");
    assert_eq!(
        (expired.kind.name(), expired.severity),
        ("expired", Severity::Critical)
    );
    let future = assess_validity(now + day, now + day * 90, TH, now, true).expect("finding");
    assert_eq!(future.kind.name(), "not_yet_valid");
    assert_eq!(future.severity, Severity::Critical);
    let stored = assess_validity(now + day, now + day * 90, TH, now, false).expect("finding");
    assert_eq!(stored.severity, Severity::Warning);
}

#[test]
fn self_signed_is_one_finding_not_also_untrusted() {
    let (der, _) = leaf(&["www.example.test"], (-1, 89), None);
    let s = served(
        &[&der],
        Err("invalid peer certificate: UnknownIssuer".into()),
    );
    let (cert, f) = assess_served(
        &s,
        "www.example.test",
        TH,
        &Anchors::new(),
        OffsetDateTime::now_utc(),
    );
    assert_eq!(kinds(&f), vec!["self_signed"]);
    assert_eq!(worst(&f), Severity::Critical);
    assert!(!cert.expect("cert").trusted);
}

#[test]
fn served_chain_problems_are_named() {
    let now = OffsetDateTime::now_utc();
    let ca = root("Root", (-10, 3650));
    let int = intermediate("Int", (-10, 3000), &ca);
    let mut anchors = Anchors::new();
    anchors.add(&CertFacts::from_der(&ca.der).expect("root"));
    let (der, _) = leaf(&["a.test"], (-1, 89), Some(&int));

    let good = served(&[&der, &int.der], Ok(()));
    let (_, f) = assess_served(&good, "a.test", TH, &anchors, now);
    assert!(f.is_empty(), "{f:?}");

    let (_, f) = assess_served(&good, "b.test", TH, &anchors, now);
    assert_eq!(kinds(&f), vec!["hostname_mismatch"]);

    let missing = served(&[&der], Err("UnknownIssuer".into()));
    let (_, f) = assess_served(&missing, "a.test", TH, &anchors, now);
    assert_eq!(kinds(&f), vec!["incomplete_chain"]);

    let other_ca = root("Other", (-10, 3650));
    let (foreign, _) = leaf(&["a.test"], (-1, 89), Some(&other_ca));
    let untrusted = served(&[&foreign, &other_ca.der], Err("UnknownIssuer".into()));
    let (_, f) = assess_served(&untrusted, "a.test", TH, &anchors, now);
    assert_eq!(kinds(&f), vec!["untrusted"]);

    let (old, _) = leaf(&["a.test"], (-90, -1), Some(&int));
    let expired = served(&[&old, &int.der], Err("expired".into()));
    let (_, f) = assess_served(&expired, "a.test", TH, &anchors, now);
    assert_eq!(kinds(&f), vec!["expired"]);

    let short_int = intermediate("Short", (-10, 30), &ca);
    let (l, _) = leaf(&["a.test"], (-1, 89), Some(&short_int));
    let early = served(&[&l, &short_int.der], Ok(()));
    let (_, f) = assess_served(&early, "a.test", TH, &anchors, now);
    assert_eq!(kinds(&f), vec!["intermediate_expires_first"]);
    assert_eq!(worst(&f), Severity::Warning);

    let garbage = served(&[b"not a certificate"], Err("bad".into()));
    let (cert, f) = assess_served(&garbage, "a.test", TH, &anchors, now);
    assert!(cert.is_none());
    assert_eq!(worst(&f), Severity::Critical);
}

#[test]
fn probe_failures_map_to_severities() {
    let f = assess_probe_failure(&ProbeFailure::Connect {
        address: "127.0.0.1:1".into(),
        source: std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )),
    });
    assert_eq!(
        (f.kind.name(), f.severity),
        ("unreachable", Severity::Unknown)
    );
    let f = assess_probe_failure(&ProbeFailure::Timeout {
        address: "x:1".into(),
        timeout: Duration::from_secs(2),
    });
    assert_eq!(f.kind, FindingKind::ProbeTimeout { timeout_ms: 2000 });
    assert_eq!(
        Severity::Critical.max(Severity::Unknown),
        Severity::Critical
    );
    assert_eq!(Severity::Unknown.exit_code(), 3);
    assert_eq!(Severity::Warning.max(Severity::Ok).exit_code(), 1);
}

/// A small report: `www` in the store and served by n1 (fine) and n2
/// (expired, tricky label characters in the SNI).
fn sample() -> Report {
    let now = OffsetDateTime::now_utc();
    let (der, _) = leaf(&["www.example.test"], (-10, 80), None);
    let facts = CertFacts::from_der(&der).expect("facts");
    let w = RenewalWindow::compute(
        RenewalPolicy::default(),
        facts.not_before,
        facts.not_after,
        None,
        b"x",
    );
    let ok_served = ServedReport {
        sni: "www.example.test".into(),
        severity: Severity::Ok,
        elapsed_ms: Some(4),
        certificate: Some(ServedCert {
            leaf: facts.clone(),
            chain: vec![],
            trusted: true,
            verification_error: None,
        }),
        findings: vec![],
    };
    let bad = Finding::new(
        Severity::Unknown,
        FindingKind::Unreachable {
            reason: "refused \"x\"\\\n".into(),
        },
    );
    Report {
        schema: SCHEMA,
        generated_at: now,
        severity: Severity::Unknown,
        certificates: vec![CertificateReport {
            name: "www".into(),
            domains: vec!["www.example.test".into()],
            severity: Severity::Unknown,
            thresholds: TH,
            store: Some(StoreFacts {
                version: "v1".into(),
                serial: facts.serial.clone(),
                issuer: facts.issuer.clone(),
                directory: "https://ca.test/dir".into(),
                key_type: crate::inventory::KeyType::EcdsaP256,
                domains: facts.dns_names.clone(),
                not_before: facts.not_before,
                not_after: facts.not_after,
                seconds_left: (facts.not_after - now).whole_seconds(),
                renewal: RenewalStatus {
                    due_at: w.due_at,
                    due: w.is_due(now),
                    reason: w.reason,
                },
            }),
            findings: vec![],
            revoked: Vec::new(),
            challenge: "dns-01".into(),
            nodes: vec![
                NodeReport {
                    node: "n1".into(),
                    probe_address: "127.0.0.11:443".into(),
                    severity: Severity::Ok,
                    deployed_version: Some("v1".into()),
                    findings: vec![],
                    served: vec![ok_served],
                },
                NodeReport {
                    node: "n2".into(),
                    probe_address: "127.0.0.12:443".into(),
                    severity: Severity::Unknown,
                    deployed_version: None,
                    findings: vec![],
                    served: vec![ServedReport {
                        sni: "we\"ird\\name".into(),
                        severity: Severity::Unknown,
                        elapsed_ms: None,
                        certificate: None,
                        findings: vec![bad],
                    }],
                },
            ],
        }],
    }
}

#[test]
fn json_has_the_documented_schema() {
    let v = serde_json::to_value(sample()).expect("json");
    assert_eq!(v["schema"], "certctl.report/v1");
    assert_eq!(v["severity"], "unknown");
    let c = &v["certificates"][0];
    for k in [
        "name",
        "domains",
        "severity",
        "thresholds",
        "store",
        "findings",
        "nodes",
    ] {
        assert!(c.get(k).is_some(), "certificate.{k} missing: {c}");
    }
    assert_eq!(c["thresholds"]["warning_seconds"], 21 * 86_400);
    let store = &c["store"];
    for k in [
        "version",
        "serial",
        "issuer",
        "key_type",
        "not_before",
        "not_after",
        "seconds_left",
    ] {
        assert!(store.get(k).is_some(), "store.{k} missing");
    }
    assert_eq!(store["renewal"]["reason"]["rule"], "lifetime");
    let n2 = &c["nodes"][1];
    for k in [
        "node",
        "probe_address",
        "severity",
        "deployed_version",
        "findings",
        "served",
    ] {
        assert!(n2.get(k).is_some(), "node.{k} missing");
    }
    let f = &n2["served"][0]["findings"][0];
    assert_eq!(f["kind"], "unreachable");
    assert_eq!(f["severity"], "unknown");
    assert!(f["message"]
        .as_str()
        .expect("message")
        .starts_with("unreachable"));
    let leaf = &c["nodes"][0]["served"][0]["certificate"]["leaf"];
    for k in [
        "subject",
        "serial",
        "dns_names",
        "not_after",
        "key_type",
        "sha256",
    ] {
        assert!(leaf.get(k).is_some(), "leaf.{k} missing");
    }
}

#[test]
fn rows_are_sorted_by_urgency() {
    let rows = sample().rows();
    assert_eq!(rows[0].place, "n2");
    assert_eq!(rows[0].severity, Severity::Unknown);
    assert!(rows[0].notes.contains("unreachable"));
    assert_eq!(rows.len(), 3);
}

#[test]
fn prometheus_labels_are_escaped_and_families_typed() {
    assert_eq!(prometheus::escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    let text = prometheus::render_prometheus(&sample());
    assert!(text.contains("# TYPE certctl_certificate_not_after_seconds gauge"));
    assert!(text.contains("certctl_certificate_not_after_seconds{certificate=\"www\",source=\"store\",node=\"\",sni=\"\",serial=\""));
    assert!(text.contains("source=\"served\",node=\"n1\",sni=\"www.example.test\""));
    assert!(text.contains(
        "certctl_finding{certificate=\"www\",node=\"n2\",sni=\"we\\\"ird\\\\name\",kind=\"unreachable\",severity=\"unknown\"} 1"
    ));
    assert!(text.contains(
        "certctl_probe_success{certificate=\"www\",node=\"n2\",sni=\"we\\\"ird\\\\name\"} 0"
    ));
    assert!(text.contains("\ncertctl_report_timestamp_seconds "));
    // A write without a report keeps exactly these families from the old file.
    for line in text.lines() {
        let name = match line.strip_prefix("# ") {
            Some(rest) => rest.split(' ').nth(1).expect("name"),
            None => line.split(['{', ' ']).next().expect("name"),
        };
        assert!(prometheus::REPORT_FAMILIES.contains(&name), "{name}");
    }
    for line in text.lines() {
        assert!(!line.is_empty());
        if !line.starts_with('#') {
            let value = line.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    // promtool, when installed, is the judge (the lab test requires it).
    if let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn scan_targets_parse() {
    let t = ScanTarget::parse("example.test", None).expect("parse");
    assert_eq!(
        (t.address.as_str(), t.sni.as_str()),
        ("example.test:443", "example.test")
    );
    let t = ScanTarget::parse("127.0.0.1:8443", Some("www.example.test")).expect("parse");
    assert_eq!(
        (t.address.as_str(), t.sni.as_str()),
        ("127.0.0.1:8443", "www.example.test")
    );
    let t = ScanTarget::parse("[::1]:8443", None).expect("parse");
    assert_eq!(t.address, "[::1]:8443");
    assert!(ScanTarget::parse("host:notaport", None).is_err());
}

#[test]
fn files_are_assessed_like_served_certificates() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = root("Root", (-10, 3650));
    let (der, _) = leaf(&["a.test"], (-90, -1), Some(&ca));
    std::fs::write(
        dir.path().join("cert.pem"),
        crate::inspect::testutil::pem(&[&der, &ca.der]),
    )
    .expect("write");
    let wrong = rcgen::KeyPair::generate().expect("key");
    std::fs::write(dir.path().join("privkey.pem"), wrong.serialize_pem()).expect("write");
    let files = crate::inspect::inspect_paths(&[dir.path().to_path_buf()], &Anchors::new());
    let r = assess_files(files, TH, OffsetDateTime::now_utc());
    assert_eq!(r.schema, INSPECT_SCHEMA);
    assert_eq!(r.severity, Severity::Critical);
    let cert = r
        .files
        .iter()
        .find(|f| f.file.path.ends_with("cert.pem"))
        .expect("cert.pem");
    assert_eq!(kinds(&cert.findings), vec!["expired", "key_mismatch"]);
    let v = serde_json::to_value(&r).expect("json");
    assert!(v["files"][0].get("path").is_some(), "flattened file facts");
}

#[test]
fn intermediate_with_four_days_left_is_critical_whatever_the_leaf_says() {
    let now = OffsetDateTime::now_utc();
    let ca = root("Root", (-10, 3650));
    let short_int = intermediate("Short Int", (-300, 4), &ca);
    let mut anchors = Anchors::new();
    anchors.add(&CertFacts::from_der(&ca.der).expect("root"));
    let (l, _) = leaf(&["www.example.test"], (-1, 80), Some(&short_int));
    let s = served(&[&l, &short_int.der, &ca.der], Ok(()));
    let (cert, f) = assess_served(&s, "www.example.test", TH, &anchors, now);
    assert_eq!(kinds(&f), vec!["intermediate_expires_first"]);
    assert_eq!(
        worst(&f),
        Severity::Critical,
        "4 days left under a 7-day threshold"
    );
    let cert = cert.expect("cert");
    let int_end = CertFacts::from_der(&short_int.der).expect("int").not_after;
    assert_eq!(cert.chain_not_after(), int_end, "the root sent is left out");
    // 15 days left is a warning, not yet critical.
    let mid_int = intermediate("Mid Int", (-300, 15), &ca);
    let (l2, _) = leaf(&["www.example.test"], (-1, 80), Some(&mid_int));
    let (_, f) = assess_served(
        &served(&[&l2, &mid_int.der], Ok(())),
        "www.example.test",
        TH,
        &anchors,
        now,
    );
    assert_eq!(worst(&f), Severity::Warning);

    // The table and the Prometheus textfile agree with the finding.
    let mut r = sample();
    let n1 = &mut r.certificates[0].nodes[0];
    n1.served[0].certificate = Some(cert);
    n1.served[0].severity = worst(&f);
    n1.severity = Severity::Critical;
    let row = r
        .rows()
        .into_iter()
        .find(|row| row.place == "n1")
        .expect("n1 row");
    assert!(
        (3 * 86_400..=4 * 86_400).contains(&row.seconds_left),
        "LEFT is the intermediate's: {}",
        row.seconds_left
    );
    assert!(
        row.left.starts_with('3') || row.left.starts_with('4'),
        "{}",
        row.left
    );
    let text = prometheus::render_prometheus(&r);
    assert!(text.contains("# TYPE certctl_certificate_chain_not_after_seconds gauge"));
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "certctl_certificate_chain_not_after_seconds{certificate=\"www\",node=\"n1\"",
            )
        })
        .expect("chain series");
    assert!(
        line.ends_with(&format!(" {}", int_end.unix_timestamp())),
        "{line}"
    );
}

#[test]
fn a_missing_root_is_called_root_not_intermediate() {
    let now = OffsetDateTime::now_utc();
    let ca = root("Private Root", (-10, 3650));
    let int = intermediate("Int", (-10, 3000), &ca);
    let (l, _) = leaf(&["a.test"], (-1, 89), Some(&int));
    let s = served(&[&l, &int.der], Err("UnknownIssuer".into()));
    let (_, f) = assess_served(&s, "a.test", TH, &Anchors::new(), now);
    assert_eq!(kinds(&f), vec!["unknown_root"]);
    assert_eq!(worst(&f), Severity::Critical);
    assert!(
        f[0].message.starts_with("root `CN=Private Root`"),
        "{}",
        f[0].message
    );
    assert!(!f[0].message.contains("intermediate `CN=Private Root`"));
}

fn write(path: &std::path::Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn chain_with_the_intermediate_first_is_a_finding_and_the_key_is_checked_against_the_leaf() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = root("Root", (-10, 3650));
    let int = intermediate("Int", (-10, 3000), &ca);
    let (der, key) = leaf(&["a.test"], (-1, 5), Some(&int));
    let pem = crate::inspect::testutil::pem;
    write(&dir.path().join("fullchain.pem"), pem(&[&int.der, &der]));
    write(&dir.path().join("privkey.pem"), key.serialize_pem());
    let mut anchors = Anchors::new();
    anchors.add(&CertFacts::from_der(&ca.der).expect("root"));
    let files = crate::inspect::inspect_paths(&[dir.path().join("fullchain.pem")], &anchors);
    let r = assess_files(files, TH, OffsetDateTime::now_utc());
    let f = &r.files[0];
    assert_eq!(f.file.leaf, Some(1));
    assert_eq!(
        f.file.key.as_ref().map(|k| k.matches),
        Some(true),
        "key vs the leaf"
    );
    // The leaf's 5 days left count (not the intermediate's 3000), and the order.
    assert_eq!(kinds(&f.findings), vec!["expires_soon", "leaf_not_first"]);
    assert_eq!(f.severity, Severity::Critical);
    // A wrong key is still a mismatch when the leaf is second.
    write(
        &dir.path().join("privkey.pem"),
        rcgen::KeyPair::generate().expect("key").serialize_pem(),
    );
    let files = crate::inspect::inspect_paths(&[dir.path().join("fullchain.pem")], &anchors);
    assert_eq!(files[0].key.as_ref().map(|k| k.matches), Some(false));
    // A sibling key file that cannot be used is reported, not skipped.
    write(&dir.path().join("privkey.pem"), b"garbage");
    let files = crate::inspect::inspect_paths(&[dir.path().join("fullchain.pem")], &anchors);
    let key = files
        .iter()
        .find(|f| f.path.ends_with("privkey.pem"))
        .expect("privkey.pem reported");
    assert!(
        key.error.as_deref().is_some_and(|e| e.contains("not PEM")),
        "{key:?}"
    );
}

#[test]
fn empty_random_and_fifo_files_are_errors_not_ok() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    write(&d.join("empty.pem"), b"");
    write(
        &d.join("random.crt"),
        [0x8fu8, 0x00, 0x13, 0xfe, 0x42, 0x99, 0x07],
    );
    write(
        &d.join("dhparam.pem"),
        "-----BEGIN DH PARAMETERS-----\nMAYCAQACAQI=\n-----END DH PARAMETERS-----\n",
    );
    let st = std::process::Command::new("mkfifo")
        .arg(d.join("pipe.pem"))
        .status()
        .expect("mkfifo");
    assert!(st.success());
    // Named one by one: each is an error (exit 3), none is "ok".
    for (name, says) in [
        ("empty.pem", "empty file"),
        ("random.crt", "not PEM"),
        ("dhparam.pem", "no certificate or private key"),
        ("pipe.pem", "FIFO"),
    ] {
        let files = crate::inspect::inspect_paths(&[d.join(name)], &Anchors::new());
        let r = assess_files(files, TH, OffsetDateTime::now_utc());
        assert_eq!(r.severity, Severity::Unknown, "{name}");
        assert_eq!(kinds(&r.files[0].findings), vec!["unreadable"], "{name}");
        assert!(
            r.files[0].findings[0].message.contains(says),
            "{name}: {}",
            r.files[0].findings[0].message
        );
    }
    // Walking the directory reports the same files, except DH parameters.
    let files = crate::inspect::inspect_paths(&[d.to_path_buf()], &Anchors::new());
    let mut seen: Vec<String> = files
        .iter()
        .filter(|f| f.error.is_some())
        .map(|f| {
            f.path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["empty.pem", "pipe.pem", "random.crt"]);
    assert_eq!(files.len(), 3, "{files:?}");
}

#[tokio::test]
async fn notify_gets_the_json_only_when_something_is_wrong() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("got.json");
    let cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("cat > {}", out.display()),
    ];
    let mut r = sample();
    assert!(notify(&cmd, &r, Duration::from_secs(10))
        .await
        .expect("ran"));
    let got: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
    assert_eq!(got["schema"], SCHEMA);
    std::fs::remove_file(&out).expect("rm");
    r.severity = Severity::Ok;
    assert!(!notify(&cmd, &r, Duration::from_secs(10)).await.expect("ok"));
    assert!(!out.exists());
    let failing = vec!["false".to_string()];
    r.severity = Severity::Warning;
    assert!(matches!(
        notify(&failing, &r, Duration::from_secs(10)).await,
        Err(NotifyError::Failed { .. })
    ));
}

#[test]
fn an_unreadable_node_says_the_deployed_part_is_unknown_and_why() {
    let mut r = sample();
    let n1 = &mut r.certificates[0].nodes[0];
    n1.deployed_version = None;
    n1.severity = Severity::Unknown;
    n1.findings.push(Finding::new(
        Severity::Unknown,
        FindingKind::DeployedUnknown {
            cause: DeployedUnknownCause::Unreachable,
            reason: "ssh to n1 (127.0.0.11:22) was refused: is sshd running there?".into(),
        },
    ));
    let v = serde_json::to_value(&r).expect("json");
    let f = &v["certificates"][0]["nodes"][0]["findings"][0];
    assert_eq!(f["kind"], "deployed_unknown");
    assert_eq!(f["severity"], "unknown");
    assert_eq!(f["cause"], "unreachable");
    assert!(
        f["reason"].as_str().is_some_and(|s| s.contains("refused")),
        "{f}"
    );
    // What it serves is still reported beside it.
    assert!(v["certificates"][0]["nodes"][0]["served"][0]["certificate"].is_object());
    let row = r
        .rows()
        .into_iter()
        .find(|r| r.place == "n1")
        .expect("n1 row");
    assert_eq!(row.version, "unknown");
    assert!(
        row.notes
            .contains("cannot read the deployed version: ssh to n1"),
        "{}",
        row.notes
    );
    assert_eq!(
        r.certificates[0].nodes[0].severity.exit_code(),
        3,
        "unknown, not critical"
    );
}

// ------------------------------------------------------------------- HTML

/// The tag names of `page`: every `<` the renderer writes starts a tag of
/// its own, so an escaped string can add none.
fn tags(page: &str) -> Vec<&str> {
    page.split('<')
        .skip(1)
        .map(|t| t.split('>').next().unwrap_or(t))
        .collect()
}

const TAGS: &[&str] = &[
    "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p",
    "span", "time", "section", "main", "div", "svg", "rect", "line", "text", "path", "circle",
    "details", "summary", "b", "br", "small", "code", "i", "table", "thead", "tbody", "tr", "th",
    "td", "ul", "li",
];

fn assert_only_own_markup(page: &str) {
    for tag in tags(page) {
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        assert!(TAGS.contains(&name), "unexpected tag <{tag}>");
        let lower = tag.to_ascii_lowercase();
        for attr in [" src=", " href=", " on", " style=", " xmlns", " action="] {
            assert!(!lower.contains(attr), "attribute `{attr}` in <{tag}>");
        }
    }
}

fn assert_fetches_nothing(page: &str) {
    assert!(page.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    ));
    let lower = page.to_ascii_lowercase();
    for bad in [
        "http://", "https://", "@import", "<script", "<link", "<img", "<iframe",
    ] {
        assert!(!lower.contains(bad), "`{bad}` in the page");
    }
    for (i, _) in lower.match_indices("url(") {
        assert!(
            lower[i + 4..].starts_with("data:"),
            "url( to other than data:"
        );
    }
    for (i, _) in lower.match_indices("//") {
        let before = &lower[..i];
        assert!(
            !before.ends_with("src=\"") && !before.ends_with("href=\""),
            "protocol-relative URL"
        );
    }
}

#[test]
fn html_has_every_certificate_and_node_marks_severity_and_fetches_nothing() {
    let mut r = sample();
    // A second certificate, not in the store: critical, listed first.
    let mut media = r.certificates[0].clone();
    media.name = "media".into();
    media.store = None;
    media.severity = Severity::Critical;
    media.findings = vec![Finding::new(Severity::Critical, FindingKind::NotInStore)];
    media.nodes.truncate(1);
    media.nodes[0].node = "n3".into();
    r.certificates.push(media);
    r.severity = Severity::Critical;
    let page = render_html(&r, "9.8.7");
    assert_only_own_markup(&page);
    assert_fetches_nothing(&page);
    assert!(page.contains("by certctl 9.8.7"), "version shown");
    assert!(page.contains(&format!(
        "<time datetime=\"{}\">",
        r.generated_at
            .format(&time::format_description::well_known::Rfc3339)
            .expect("rfc3339")
    )));
    let media_at = page.find("data-certificate=\"media\"").expect("media");
    let www_at = page.find("data-certificate=\"www\"").expect("www");
    assert!(media_at < www_at, "critical first");
    for n in ["n1", "n2", "n3"] {
        assert!(page.contains(&format!("data-node=\"{n}\"")), "{n}");
    }
    assert!(page.contains(
        "class=\"cert sev-critical\" data-certificate=\"media\" data-severity=\"critical\" open"
    ));
    assert!(page.contains("data-certificate=\"www\" data-severity=\"unknown\" open"));
    // n1 matches the store: named on the "match" line, no row of its own.
    assert!(page.contains("<span class=\"node\" data-node=\"n1\" data-severity=\"ok\">n1</span>"));
    assert!(page.contains("<tr class=\"sev-unknown\" data-node=\"n2\" data-severity=\"unknown\">"));
    assert!(page.contains("data-kind=\"unreachable\""));
    assert!(page.contains("data-kind=\"not_in_store\""));
    // The ACME directory URL is not shown: the page holds no URL at all.
    assert!(!page.contains("ca.test"));
}

#[test]
fn html_escapes_every_untrusted_string() {
    let evil = "<script>alert(1)</script>\"'&\u{202e}x";
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;\\u{202e}x";
    assert_eq!(html::escape(evil), escaped);
    let mut r = sample();
    let c = &mut r.certificates[0];
    c.name = format!("name{evil}");
    c.domains = vec![format!("domain{evil}")];
    let store = c.store.as_mut().expect("store");
    store.version = format!("version{evil}");
    store.issuer = format!("issuer{evil}");
    store.serial = format!("<b>{evil}");
    c.findings = vec![Finding::new(
        Severity::Warning,
        FindingKind::StoreUnreadable {
            reason: format!("store{evil}"),
        },
    )];
    let n = &mut c.nodes[0];
    n.node = format!("node{evil}");
    n.probe_address = format!("addr{evil}");
    n.deployed_version = Some(format!("deployed{evil}"));
    n.findings = vec![Finding::new(
        Severity::Warning,
        FindingKind::DeployedDrift {
            deployed: format!("d{evil}"),
            live: "v1".into(),
        },
    )];
    let s = &mut n.served[0];
    s.sni = format!("sni{evil}");
    let leaf = &mut s.certificate.as_mut().expect("served").leaf;
    leaf.subject = format!("subject{evil}");
    leaf.serial = format!("serial{evil}");
    c.nodes[1].served[0].findings = vec![Finding::new(
        Severity::Critical,
        FindingKind::HandshakeFailed {
            reason: format!("error{evil}"),
        },
    )];
    let page = render_html(&r, &format!("version{evil}"));
    assert_only_own_markup(&page);
    assert!(!page.contains('\u{202e}'));
    for what in [
        "name", "domain", "version", "issuer", "store", "node", "addr", "deployed", "sni",
        "subject", "error",
    ] {
        assert!(
            page.contains(&format!("{what}{escaped}")),
            "{what} is missing or not escaped"
        );
    }
    assert!(page.contains("&lt;b&gt;&lt;script"), "short serial escaped");
}

#[test]
fn html_of_two_hundred_certificates_on_twenty_nodes_lists_every_one_urgent_first() {
    let base = sample();
    let template = base.certificates[0].clone();
    let plain = template.nodes[0].clone();
    let mut r = base.clone();
    r.certificates.clear();
    for i in 0..200 {
        let mut c = template.clone();
        c.name = format!("cert{i}");
        c.severity = Severity::Ok;
        c.nodes = (1..=20)
            .map(|j| NodeReport {
                node: format!("node{j}"),
                ..plain.clone()
            })
            .collect();
        if i == 137 {
            // One drifted node on one certificate.
            c.severity = Severity::Warning;
            let n = &mut c.nodes[6];
            n.severity = Severity::Warning;
            n.deployed_version = Some("v0".into());
            n.findings = vec![Finding::new(
                Severity::Warning,
                FindingKind::DeployedDrift {
                    deployed: "v0".into(),
                    live: "v1".into(),
                },
            )];
        }
        r.certificates.push(c);
    }
    r.severity = Severity::Warning;
    let page = render_html(&r, "0.1.0");
    assert_only_own_markup(&page);
    assert_fetches_nothing(&page);
    for i in 0..200 {
        assert!(
            page.contains(&format!("data-certificate=\"cert{i}\"")),
            "cert{i}"
        );
    }
    for j in 1..=20 {
        assert!(page.contains(&format!("data-node=\"node{j}\"")), "node{j}");
    }
    // The warning first and open; the 199 ok ones closed, their matching
    // nodes named on one line each instead of a row each.
    let first = page.find("<details").expect("details");
    assert!(page[first..].starts_with(
        "<details class=\"cert sev-warning drift\" data-certificate=\"cert137\" data-severity=\"warning\" open>"
    ));
    assert_eq!(page.matches(" open>").count(), 1);
    assert_eq!(
        page.matches("<tr class=").count(),
        1,
        "one row: the drifted node"
    );
    assert!(page.contains("<tr class=\"sev-warning drift\" data-node=\"node7\""));
    assert!(page.contains("20 match the store") && page.contains("19 match the store"));
    assert!(page.contains("<span class=\"count drift\">1 with drift</span>"));
    // cert2 before cert10 among equals.
    assert!(page.find("\"cert2\"") < page.find("\"cert10\""));
    eprintln!("page of 200 × 20: {} bytes", page.len());
}
