//! X.509 facts: what a certificate says, parsed once from DER with
//! x509-parser. Input is untrusted (served chains, files on disk): every
//! failure is an [`InspectError`], never a panic.

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::Engine as _;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519, OID_SIG_ED448,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::InspectError;

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertFacts {
    /// Subject distinguished name (RFC 4514 style, e.g. `CN=www.example.com`).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// IP addresses of the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Public key algorithm and size: `ecdsa-p256`, `ecdsa-p384`, `ecdsa-p521`,
    /// `rsa-2048`, `ed25519`, `ed448`, or `unknown`.
    pub key_type: String,
    /// basicConstraints says CA.
    pub is_ca: bool,
    /// Subject key identifier, lower-case hex.
    pub subject_key_id: Option<String>,
    /// Authority key identifier (its keyIdentifier), lower-case hex.
    pub authority_key_id: Option<String>,
    /// SHA-256 of the DER encoding, lower-case hex.
    pub sha256: String,
    /// ARI certificate identifier (RFC 9773 §4.1), when the certificate has
    /// an authority key identifier.
    pub ari_id: Option<String>,
    #[serde(skip)]
    pub(crate) subject_raw: Vec<u8>,
    #[serde(skip)]
    pub(crate) issuer_raw: Vec<u8>,
    #[serde(skip)]
    pub(crate) ski_raw: Option<Vec<u8>>,
    #[serde(skip)]
    pub(crate) aki_raw: Option<Vec<u8>>,
    #[serde(skip)]
    pub(crate) public_key: Vec<u8>,
}

impl CertFacts {
    /// Parses one DER certificate. Trailing bytes after it are refused.
    pub fn from_der(der: &[u8]) -> Result<CertFacts, InspectError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|source| InspectError::Parse { source })?;
        if !rest.is_empty() {
            return Err(InspectError::TrailingData { bytes: rest.len() });
        }
        Self::from_parsed(&cert, der)
    }

    fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Result<CertFacts, InspectError> {
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let mut ski_raw = None;
        let mut aki_raw = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(n) => dns_names.push((*n).to_string()),
                            GeneralName::IPAddress(b) => {
                                if let Some(ip) = ip_from_bytes(b) {
                                    ip_addresses.push(ip);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(k) => ski_raw = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    aki_raw = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                _ => {}
            }
        }
        let serial_raw = cert.raw_serial();
        let serial = {
            let trimmed = match serial_raw.iter().position(|b| *b != 0) {
                Some(i) => &serial_raw[i..],
                None => &serial_raw[serial_raw.len().saturating_sub(1)..],
            };
            hex(trimmed)
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let ari_id = aki_raw
            .as_ref()
            .map(|aki| format!("{}.{}", b64.encode(aki), b64.encode(serial_raw)));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let spki = cert.public_key();
        Ok(CertFacts {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial,
            dns_names,
            ip_addresses,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            key_type: key_type(cert),
            is_ca: cert.is_ca(),
            subject_key_id: ski_raw.as_deref().map(hex),
            authority_key_id: aki_raw.as_deref().map(hex),
            sha256: hex(digest.as_ref()),
            ari_id,
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            ski_raw,
            aki_raw,
            public_key: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Issuer and subject are the same name (a root or a self-signed leaf).
    pub fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// `issuer` plausibly issued `self`: the issuer name matches its subject,
    /// and the key identifiers agree when both are present. (No signature
    /// check: this is for ordering and completeness, not trust.)
    pub fn is_issued_by(&self, issuer: &CertFacts) -> bool {
        if self.issuer_raw != issuer.subject_raw {
            return false;
        }
        match (&self.aki_raw, &issuer.ski_raw) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => true,
        }
    }

    /// Time left until `not_after` at `now` (negative once expired).
    pub fn time_left(&self, now: OffsetDateTime) -> time::Duration {
        self.not_after - now
    }
}

/// Parses every `CERTIFICATE` block of a PEM text, in order. Other blocks
/// (keys) are skipped; a malformed block or certificate is an error.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<CertFacts>, InspectError> {
    let mut out = Vec::new();
    for item in pem_blocks(pem)? {
        if let PemBlock::Certificate(der) = item {
            out.push(CertFacts::from_der(&der)?);
        }
    }
    Ok(out)
}

/// One PEM block of interest.
pub(crate) enum PemBlock {
    Certificate(Vec<u8>),
    /// A private key (PKCS#8, PKCS#1 or SEC1), re-encoded as PEM for rcgen.
    Key(String),
}

/// Splits PEM text into certificate and key blocks (others are skipped).
pub(crate) fn pem_blocks(pem: &[u8]) -> Result<Vec<PemBlock>, InspectError> {
    use rustls_pemfile::Item;
    let mut out = Vec::new();
    let mut reader = pem;
    loop {
        match rustls_pemfile::read_one(&mut reader) {
            Ok(None) => break,
            Ok(Some(Item::X509Certificate(der))) => out.push(PemBlock::Certificate(der.to_vec())),
            Ok(Some(Item::Pkcs8Key(k))) => {
                out.push(PemBlock::Key(to_pem("PRIVATE KEY", k.secret_pkcs8_der())))
            }
            Ok(Some(Item::Pkcs1Key(k))) => out.push(PemBlock::Key(to_pem(
                "RSA PRIVATE KEY",
                k.secret_pkcs1_der(),
            ))),
            Ok(Some(Item::Sec1Key(k))) => {
                out.push(PemBlock::Key(to_pem("EC PRIVATE KEY", k.secret_sec1_der())))
            }
            Ok(Some(_)) => {}
            Err(source) => return Err(InspectError::Pem { source }),
        }
    }
    Ok(out)
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    let _ = writeln!(s, "-----END {label}-----");
    s
}

/// The raw public key of a private key (PEM), or `None` if it cannot be read.
pub(crate) fn public_key_of(key_pem: &str) -> Option<Vec<u8>> {
    rcgen::KeyPair::from_pem(key_pem)
        .ok()
        .map(|k| k.public_key_raw().to_vec())
}

/// Whether the private key in `key_pem` (PKCS#8, PKCS#1 or SEC1 PEM) belongs
/// to the certificate `cert_der`: their public keys are compared. Any parse
/// failure is `false`. The key is never logged.
pub fn key_matches_cert(key_pem: &[u8], cert_der: &[u8]) -> bool {
    let Ok(facts) = CertFacts::from_der(cert_der) else {
        return false;
    };
    let Ok(blocks) = pem_blocks(key_pem) else {
        return false;
    };
    blocks.iter().any(|b| match b {
        PemBlock::Key(pem) => public_key_of(pem).is_some_and(|pk| pk == facts.public_key),
        PemBlock::Certificate(_) => false,
    })
}

/// Whether `host` is covered by one of the certificate's names, with the
/// RFC 6125 §6.4.3 rules as browsers apply them: a wildcard only as the whole
/// left-most label, matching exactly one label, never a bare public suffix
/// like `*.com`. IP addresses match IP SANs only. Case-insensitive.
pub fn matches_name(facts: &CertFacts, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return facts.ip_addresses.contains(&ip);
    }
    let host = host.to_ascii_lowercase();
    facts
        .dns_names
        .iter()
        .any(|pattern| name_matches(&pattern.to_ascii_lowercase(), &host))
}

fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if host.is_empty() || pattern.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        None => !pattern.contains('*') && pattern == host,
        Some(base) => {
            // `*.com` or `*.*.example.com` are never honoured.
            if base.contains('*') || !base.contains('.') {
                return false;
            }
            match host.split_once('.') {
                Some((label, rest)) => !label.is_empty() && rest == base,
                None => false,
            }
        }
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => "ecdsa-p256".into(),
            Some(c) if c == OID_NIST_EC_P384 => "ecdsa-p384".into(),
            Some(c) if c == OID_NIST_EC_P521 => "ecdsa-p521".into(),
            _ => "ecdsa-unknown".into(),
        };
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                let modulus = rsa.modulus;
                let start = modulus
                    .iter()
                    .position(|b| *b != 0)
                    .unwrap_or(modulus.len());
                let bytes = &modulus[start..];
                let bits = match bytes.first() {
                    Some(b) => (bytes.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
                    None => 0,
                };
                format!("rsa-{bits}")
            }
            _ => "rsa-unknown".into(),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return "ed25519".into();
    }
    if *alg == OID_SIG_ED448 {
        return "ed448".into();
    }
    "unknown".into()
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
