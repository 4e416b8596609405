//! Certificate chains an attacker controls: a node serves any chain it likes,
//! and trust bundles are files a user points at. Covers the public acme-core
//! code that takes such chains today, `Prober::new` (trust bundle loading) and
//! `Prober::verify` (chain verification, no network), plus the parsers
//! acme-core feeds certificates to (rustls-pemfile, x509-parser) called the
//! way the issuance code reads a new leaf. It does not cover acme-core's
//! private `leaf_facts`; it only mirrors the calls it makes.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use acme_core::inspect::probe::{ProberError, Trust};
use acme_core::inspect::Prober;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::ParsedExtension;

/// The lab's Pebble roots; the seed `seed-pebble-wild-fullchain.pem` verifies against them.
const ROOTS: &[u8] = include_bytes!("../corpus/x509/seed-pebble-roots.pem");
const SNI: &str = "cdn.example.test";

struct Fixture {
    prober: Prober,
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
        Fixture {
            prober,
            bundle: dir.path().join("bundle.pem"),
            _dir: dir,
        }
    })
}

/// What the issuance code reads from a leaf: serial, issuer, validity as
/// `OffsetDateTime`, and the authority key identifier.
fn leaf_facts(der: &[u8]) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return;
    };
    let serial: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(serial.len(), cert.raw_serial().len() * 2);
    let _ = cert.issuer().to_string();
    for t in [cert.validity().not_before, cert.validity().not_after] {
        let _ = time::OffsetDateTime::from_unix_timestamp(t.timestamp());
    }
    for e in cert.extensions() {
        if let ParsedExtension::AuthorityKeyIdentifier(a) = e.parsed_extension() {
            let _ = a.key_identifier.as_ref().map(|k| k.0.len());
        }
        if let ParsedExtension::SubjectAlternativeName(san) = e.parsed_extension() {
            let _ = san.general_names.len();
        }
    }
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
    for der in &chain {
        leaf_facts(der);
    }

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
