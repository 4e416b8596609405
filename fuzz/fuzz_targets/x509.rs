//! Certificate chains an attacker controls: a node serves any chain it likes,
//! and trust bundles and deployed files are files a user points at. Covers
//! acme-core's public code that takes such bytes: `inspect::parse_pem_chain`,
//! `CertFacts::from_der` (what issuance, the report and `inspect` read),
//! `analyze_chain`, `matches_name`, `key_matches_cert`, and the prober's
//! `Prober::new` (bundle loading) and `Prober::verify` (no network).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use acme_core::inspect::{ProberError, Trust};
use acme_core::inspect::{
    analyze_chain, key_matches_cert, matches_name, parse_pem_chain, Anchors, CertFacts, Prober,
};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::CertificateDer;

/// The lab's Pebble roots; the seed `seed-pebble-wild-fullchain.pem` verifies against them.
const ROOTS: &[u8] = include_bytes!("../corpus/x509/seed-pebble-roots.pem");
const SNI: &str = "cdn.example.test";

struct Fixture {
    prober: Prober,
    anchors: Anchors,
    bundle: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let roots = dir.path().join("roots.pem");
        std::fs::write(&roots, ROOTS).expect("write roots");
        let trust = Trust {
            system_roots: false,
            bundles: vec![roots],
        };
        let prober = Prober::new(&trust, Duration::from_secs(1)).expect("prober");
        let mut anchors = Anchors::new();
        for f in parse_pem_chain(ROOTS).expect("roots parse") {
            anchors.add(&f);
        }
        Fixture {
            prober,
            anchors,
            bundle: dir.path().join("bundle.pem"),
            _dir: dir,
        }
    })
}

/// The facts acme-core reads agree with x509-parser and are well-formed.
fn check_facts(f: &CertFacts) {
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        hex(&f.serial) && !f.serial.starts_with("00"),
        "serial {:?}",
        f.serial
    );
    assert!(
        f.sha256.len() == 64 && hex(&f.sha256),
        "sha256 {:?}",
        f.sha256
    );
    let _ = matches_name(f, SNI);
    let _ = f.is_issued_by(f);
}
fuzz_target!(|data: &[u8]| {
    let f = fixture();

    // PEM as the store, the CA and trust bundles hold it; else the input is one DER certificate.
    let pem: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &data[..])
        .filter_map(Result::ok)
        .collect();
    let chain = if pem.is_empty() {
        vec![CertificateDer::from(data.to_vec())]
    } else {
        pem.clone()
    };
    // PEM through inspect: the same certificates rustls-pemfile finds, each with sound facts.
    if let Ok(facts) = parse_pem_chain(data) {
        assert_eq!(
            facts.len(),
            pem.len(),
            "parse_pem_chain and rustls-pemfile disagree"
        );
        for f in &facts {
            check_facts(f);
        }
        let _ = analyze_chain(&facts, &f.anchors);
    }
    // DER: what CertFacts reads, x509-parser reads too.
    for der in &chain {
        if let Ok(facts) = CertFacts::from_der(der) {
            assert!(x509_parser::parse_x509_certificate(der).is_ok());
            check_facts(&facts);
        }
    }
    // The input as a private key file beside the first certificate.
    let _ = key_matches_cert(data, &chain[0]);

    // A served chain is verified without panicking; one that verifies has a readable leaf.
    if f.prober.verify(&chain, SNI).is_ok() {
        let leaf = &chain[0];
        assert!(
            x509_parser::parse_x509_certificate(leaf).is_ok(),
            "verified leaf that x509-parser cannot read"
        );
    }

    // The input as a trust bundle: no certificate in it means EmptyBundle.
    std::fs::write(&f.bundle, data).expect("write bundle");
    let trust = Trust {
        system_roots: false,
        bundles: vec![f.bundle.clone()],
    };
    match Prober::new(&trust, Duration::from_secs(1)) {
        Ok(_) => assert!(
            !pem.is_empty(),
            "a bundle without certificates was accepted"
        ),
        Err(ProberError::EmptyBundle { path }) => assert_eq!(path, f.bundle),
        Err(e) => panic!("unexpected prober error: {e:?}"),
    }
});
