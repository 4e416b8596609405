//! X.509 facts and TLS probes (when a certificate is due is
//! [`crate::acme::RenewalPolicy`]'s).
//!
//! - [`CertFacts`]: what a certificate says (parsed with x509-parser; input
//!   is untrusted, so failures are errors, never panics).
//! - [`analyze_chain`]: order, missing intermediates, intermediates that
//!   expire first.
//! - [`matches_name`], [`key_matches_cert`].
//! - [`inspect_paths`]: PEM files on disk (the only file I/O here).
//! - [`Prober`]: TLS handshakes that record the served chain.

mod chain;
mod facts;
mod files;
pub(crate) mod probe;

pub(crate) use chain::not_after_of;
pub use chain::{analyze_chain, chain_not_after, Anchors, ChainIssue};
pub use facts::{key_matches_cert, matches_name, parse_pem_chain, CertFacts};
pub use files::{inspect_paths, FileReport, KeyCheck};
pub use probe::{ProbeFailure, Prober, ProberError, Served, Trust};

use std::path::PathBuf;

/// An inspection failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The bytes are not a valid DER X.509 certificate (untrusted input).
    #[error("not a valid X.509 certificate")]
    Parse {
        /// The parser's error.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// A valid certificate is followed by more bytes (untrusted input).
    #[error("not a valid X.509 certificate: {bytes} bytes of trailing data after the certificate")]
    TrailingData {
        /// How many bytes follow the certificate.
        bytes: usize,
    },
    /// The PEM text is malformed (untrusted input).
    #[error("malformed PEM")]
    Pem {
        /// The PEM reader's error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `2025-01-31 12:00 UTC`.
pub(crate) fn date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `21d`, `3d4h`, `5h`, `12m`, `40s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) if m > 0 => format!("{h}h{m}m"),
        (0, h, _) => format!("{h}h"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// A signed time span for people: `21d`, `-3d4h` (in the past).
pub fn human_signed(d: time::Duration) -> String {
    let abs = std::time::Duration::from_secs(d.whole_seconds().unsigned_abs());
    if d.is_negative() {
        format!("-{}", human_duration(abs))
    } else {
        human_duration(abs)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! rcgen-made certificates for the unit tests.
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use time::{Duration, OffsetDateTime};

    /// A CA with its key.
    pub(crate) struct Ca {
        pub(crate) params: CertificateParams,
        pub(crate) key: KeyPair,
        pub(crate) der: Vec<u8>,
    }

    impl Ca {
        pub(crate) fn issuer(&self) -> Issuer<'_, &KeyPair> {
            Issuer::from_params(&self.params, &self.key)
        }
    }

    fn params(cn: &str, sans: &[&str], days: (i64, i64)) -> CertificateParams {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let now = OffsetDateTime::now_utc();
        p.not_before = now + Duration::days(days.0);
        p.not_after = now + Duration::days(days.1);
        p.use_authority_key_identifier_extension = true;
        p
    }

    /// A root CA (self-signed).
    pub(crate) fn root(cn: &str, days: (i64, i64)) -> Ca {
        let mut p = params(cn, &[], days);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let der = p.self_signed(&key).expect("sign").der().to_vec();
        Ca {
            params: p,
            key,
            der,
        }
    }

    /// An intermediate CA signed by `parent`.
    pub(crate) fn intermediate(cn: &str, days: (i64, i64), parent: &Ca) -> Ca {
        let mut p = params(cn, &[], days);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let der = p
            .signed_by(&key, &parent.issuer())
            .expect("sign")
            .der()
            .to_vec();
        Ca {
            params: p,
            key,
            der,
        }
    }

    /// A leaf for `sans` signed by `issuer` (or self-signed), with its key.
    pub(crate) fn leaf(sans: &[&str], days: (i64, i64), issuer: Option<&Ca>) -> (Vec<u8>, KeyPair) {
        let p = params(sans.first().copied().unwrap_or("leaf"), sans, days);
        let key = KeyPair::generate().expect("key");
        let cert = match issuer {
            Some(ca) => p.signed_by(&key, &ca.issuer()),
            None => p.self_signed(&key),
        }
        .expect("sign");
        (cert.der().to_vec(), key)
    }

    /// PEM of DER certificates.
    pub(crate) fn pem(ders: &[&[u8]]) -> String {
        use base64::Engine as _;
        let mut out = String::new();
        for d in ders {
            let b64 = base64::engine::general_purpose::STANDARD.encode(d);
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            for c in b64.as_bytes().chunks(64) {
                out.push_str(&String::from_utf8_lossy(c));
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn facts_of_an_rcgen_leaf() {
        let ca = root("Test Root", (-10, 3650));
        let (der, _) = leaf(&["www.example.com", "10.0.0.1"], (-1, 89), Some(&ca));
        let f = CertFacts::from_der(&der).expect("parses");
        assert_eq!(f.subject, "CN=www.example.com");
        assert_eq!(f.issuer, "CN=Test Root");
        assert_eq!(f.dns_names, vec!["www.example.com"]);
        assert_eq!(
            f.ip_addresses,
            vec!["10.0.0.1".parse::<std::net::IpAddr>().expect("ip")]
        );
        assert_eq!(f.key_type, "ecdsa-p256");
        assert!(!f.is_ca);
        assert_eq!(f.sha256.len(), 64);
        assert!(!f.serial.is_empty() && !f.serial.starts_with("00"));
        assert!(f.authority_key_id.is_some());
        let ari = f.ari_id.as_deref().expect("ari id");
        let (aki, serial) = ari.split_once('.').expect("dot");
        assert!(!aki.contains('=') && !serial.contains('='));
        let root_facts = CertFacts::from_der(&ca.der).expect("root");
        assert!(root_facts.is_ca && root_facts.is_self_issued());
        assert!(f.is_issued_by(&root_facts));
    }

    #[test]
    fn ari_identifier_matches_rfc_9773_example() {
        // RFC 9773 §4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4
        // and serial 00:87:65:43:21 give `aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE`.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ];
        let serial = [0x00, 0x87, 0x65, 0x43, 0x21];
        assert_eq!(
            format!("{}.{}", b64.encode(aki), b64.encode(serial)),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        // And the same construction from a certificate with that serial.
        let ca = root("R", (-1, 10));
        let mut p = rcgen::CertificateParams::new(vec!["a.test".to_string()]).expect("p");
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        p.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().expect("key");
        let der = p
            .signed_by(&key, &ca.issuer())
            .expect("sign")
            .der()
            .to_vec();
        let f = CertFacts::from_der(&der).expect("parse");
        assert_eq!(f.serial, "87654321");
        assert!(f.ari_id.as_deref().expect("id").ends_with(".AIdlQyE"));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let ca = root("R", (-1, 10));
        let (der, _) = leaf(&["a.test"], (-1, 10), Some(&ca));
        assert!(CertFacts::from_der(&[]).is_err());
        assert!(CertFacts::from_der(b"\x30\x82\xff\xff").is_err());
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert!(CertFacts::from_der(&der[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(CertFacts::from_der(&trailing).is_err());
        // Flipping bytes may or may not parse, but must never panic.
        for i in (0..der.len()).step_by(7) {
            let mut d = der.clone();
            d[i] ^= 0xff;
            let _ = CertFacts::from_der(&d);
        }
        assert!(
            parse_pem_chain(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert_eq!(parse_pem_chain(b"no pem here").expect("empty").len(), 0);
    }

    #[test]
    fn pem_chain_keeps_order_and_skips_keys() {
        let ca = root("R", (-1, 10));
        let int = intermediate("I", (-1, 10), &ca);
        let (der, key) = leaf(&["a.test"], (-1, 5), Some(&int));
        let text = format!(
            "{}{}{}",
            pem(&[&der]),
            key.serialize_pem(),
            pem(&[&int.der])
        );
        let chain = parse_pem_chain(text.as_bytes()).expect("parse");
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].subject, "CN=I");
        assert!(key_matches_cert(key.serialize_pem().as_bytes(), &der));
        let other = rcgen::KeyPair::generate().expect("key");
        assert!(!key_matches_cert(other.serialize_pem().as_bytes(), &der));
        assert!(!key_matches_cert(b"garbage", &der));
    }

    fn facts_for(names: &[&str]) -> CertFacts {
        let (der, _) = leaf(names, (-1, 10), None);
        CertFacts::from_der(&der).expect("parse")
    }

    #[test]
    fn wildcards_match_one_left_most_label() {
        let f = facts_for(&["*.cdn.example.test", "cdn.example.test"]);
        assert!(matches_name(&f, "a.cdn.example.test"));
        assert!(matches_name(&f, "A.CDN.Example.Test."));
        assert!(matches_name(&f, "cdn.example.test"));
        assert!(!matches_name(&f, "a.b.cdn.example.test"), "one label only");
        assert!(!matches_name(&f, "example.test"));
        assert!(!matches_name(&f, ".cdn.example.test"));
        let f = facts_for(&["*.com", "a*.example.test", "www.example.test"]);
        assert!(
            !matches_name(&f, "example.com"),
            "no public-suffix wildcard"
        );
        assert!(
            !matches_name(&f, "ab.example.test"),
            "partial wildcards refused"
        );
        assert!(matches_name(&f, "www.example.test"));
        assert!(!matches_name(&f, "wwww.example.test"));
        let f = facts_for(&["127.0.0.1"]);
        assert!(matches_name(&f, "127.0.0.1"));
        assert!(!matches_name(&f, "127.0.0.2"));
    }

    #[test]
    fn chain_analysis_finds_order_gaps_and_early_intermediates() {
        let ca = root("Root", (-10, 3650));
        let int = intermediate("Int", (-10, 30), &ca);
        let (der, _) = leaf(&["a.test"], (-1, 89), Some(&int));
        let leaf_f = CertFacts::from_der(&der).expect("leaf");
        let int_f = CertFacts::from_der(&int.der).expect("int");
        let root_f = CertFacts::from_der(&ca.der).expect("root");
        let mut anchors = Anchors::new();
        anchors.add(&root_f);

        let good = analyze_chain(&[leaf_f.clone(), int_f.clone()], &anchors);
        assert_eq!(
            good,
            vec![ChainIssue::IntermediateExpiresFirst {
                position: 1,
                subject: "CN=Int".into(),
                not_after: int_f.not_after
            }]
        );
        let missing = analyze_chain(std::slice::from_ref(&leaf_f), &anchors);
        assert_eq!(
            missing,
            vec![ChainIssue::MissingIntermediate {
                issuer: "CN=Int".into()
            }]
        );
        let swapped = analyze_chain(&[leaf_f.clone(), root_f.clone(), int_f.clone()], &anchors);
        assert!(swapped.contains(&ChainIssue::NotInOrder { position: 0 }));
        assert!(!swapped
            .iter()
            .any(|i| matches!(i, ChainIssue::MissingIntermediate { .. })));
        // Without the root as anchor, a chain ending at the intermediate is incomplete.
        // The missing issuer of an intermediate is the root, and is called so.
        let unknown = analyze_chain(&[leaf_f.clone(), int_f.clone()], &Anchors::new());
        assert!(unknown.contains(&ChainIssue::UnknownRoot {
            issuer: "CN=Root".into(),
            intermediate: "CN=Int".into(),
        }));
        assert!(!unknown
            .iter()
            .any(|i| matches!(i, ChainIssue::MissingIntermediate { .. })));
        let msg = unknown
            .iter()
            .find(|i| matches!(i, ChainIssue::UnknownRoot { .. }))
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(msg.starts_with("root `CN=Root`"), "{msg}");
        // A root that is sent is not an intermediate expiring first, and the
        // chain's end of validity leaves it out.
        let short_root = root("Short Root", (-10, 20));
        let int2 = intermediate("Int2", (-10, 60), &short_root);
        let (der2, _) = leaf(&["c.test"], (-1, 89), Some(&int2));
        let sent = [
            CertFacts::from_der(&der2).expect("leaf"),
            CertFacts::from_der(&int2.der).expect("int"),
            CertFacts::from_der(&short_root.der).expect("root"),
        ];
        let issues = analyze_chain(&sent, &Anchors::new());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            matches!(&issues[0], ChainIssue::IntermediateExpiresFirst { subject, .. } if subject == "CN=Int2")
        );
        assert_eq!(chain_not_after(&sent), Some(sent[1].not_after));
        assert_eq!(chain_not_after(&[]), None);
        // A self-signed leaf is complete (trust is judged elsewhere).
        let ss = facts_for(&["b.test"]);
        assert!(analyze_chain(&[ss], &Anchors::new()).is_empty());
        assert_eq!(analyze_chain(&[], &anchors), vec![ChainIssue::Empty]);
    }

    #[test]
    fn directory_inspection_matches_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = root("Root", (-10, 3650));
        let (der, key) = leaf(&["a.test"], (-1, 89), Some(&ca));
        let d = dir.path().join("live/a");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("fullchain.pem"), pem(&[&der, &ca.der])).expect("write");
        std::fs::write(d.join("privkey.pem"), key.serialize_pem()).expect("write");
        let e = dir.path().join("other");
        std::fs::create_dir_all(&e).expect("mkdir");
        std::fs::write(e.join("site.crt"), pem(&[&der])).expect("write");
        let wrong = rcgen::KeyPair::generate().expect("key");
        std::fs::write(e.join("site.key"), wrong.serialize_pem()).expect("write");
        std::fs::write(
            e.join("junk.pem"),
            "-----BEGIN CERTIFICATE-----\n%%\n-----END CERTIFICATE-----\n",
        )
        .expect("write");

        let reports = inspect_paths(&[dir.path().to_path_buf()], &Anchors::new());
        let by_name = |n: &str| {
            reports
                .iter()
                .find(|r| r.path.ends_with(n))
                .unwrap_or_else(|| panic!("{n} in {reports:?}"))
        };
        let full = by_name("live/a/fullchain.pem");
        assert_eq!(full.certificates.len(), 2);
        assert!(full.chain_issues.is_empty(), "{:?}", full.chain_issues);
        assert_eq!(full.key.as_ref().map(|k| k.matches), Some(true));
        let site = by_name("other/site.crt");
        assert_eq!(
            site.key,
            Some(KeyCheck {
                path: e.join("site.key"),
                matches: false
            })
        );
        assert!(by_name("junk.pem").error.is_some());
        assert_eq!(by_name("privkey.pem").keys, 1);
        // A file named directly finds its sibling key.
        let one = inspect_paths(&[d.join("fullchain.pem")], &Anchors::new());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].key.as_ref().map(|k| k.matches), Some(true));
        let missing = inspect_paths(&[dir.path().join("nope.pem")], &Anchors::new());
        assert!(missing[0].error.is_some());
    }

    #[test]
    fn human_durations() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_secs(21 * 86_400)), "21d");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d4h"
        );
        assert_eq!(human_duration(Duration::from_secs(5 * 3600 + 60)), "5h1m");
        assert_eq!(human_duration(Duration::from_secs(40)), "40s");
        assert_eq!(human_signed(time::Duration::hours(-50)), "-2d2h");
    }
}
