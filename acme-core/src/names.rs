//! Names that come from the inventory or from servers, validated before use:
//! certificate and node names become path components, domains become DNS
//! queries and SANs, and both may reach a remote shell. Anything that is not
//! plainly safe is refused here, once, with a message that says why.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A certificate or node name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, no `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CertName(String);

impl CertName {
    /// Validates `s` as a certificate or node name.
    pub fn new(s: &str) -> Result<Self, NameError> {
        check_label(s).map_err(|problem| NameError::Certificate {
            name: s.into(),
            problem,
        })?;
        Ok(Self(s.to_string()))
    }

    /// Validates `s` as a node name: the same rules, worded for a node.
    pub fn node(s: &str) -> Result<Self, NameError> {
        check_label(s).map_err(|problem| NameError::Node {
            name: s.into(),
            problem,
        })?;
        Ok(Self(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Deserializes a node name, with errors that say "node name".
pub(crate) fn de_node_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CertName, D::Error> {
    let s = String::deserialize(d)?;
    CertName::node(&s).map_err(serde::de::Error::custom)
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CertName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CertName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The label put in front of a domain for its DNS-01 TXT record (RFC 8555 §8.4).
const CHALLENGE_PREFIX: &str = "_acme-challenge.";

/// A DNS name for a certificate: lower-case ASCII (IDNs in their `xn--` form),
/// optionally starting with `*.`, at most 253 octets, labels of at most 63.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DomainName(String);

impl DomainName {
    /// Validates `s` as a certificate domain (a trailing dot is dropped, case folded).
    pub fn new(s: &str) -> Result<Self, NameError> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let bare = lower.strip_prefix("*.").unwrap_or(&lower);
        if !s.is_ascii() {
            return Err(NameError::DomainNotAscii { name: s.into() });
        }
        let unbracketed = bare.trim_start_matches('[').trim_end_matches(']');
        if unbracketed.parse::<std::net::IpAddr>().is_ok() {
            return Err(NameError::DomainIsIp { name: s.into() });
        }
        check_dns_name(bare).map_err(|problem| NameError::DomainInvalid {
            name: s.into(),
            problem,
        })?;
        if !bare.contains('.') {
            return Err(NameError::DomainOneLabel { name: s.into() });
        }
        // DNS-01 needs `_acme-challenge.<base>` to be a DNS name too (RFC 8555 §8.4).
        let octets = CHALLENGE_PREFIX.len() + bare.len();
        if octets > 253 {
            return Err(NameError::ChallengeTooLong {
                name: s.into(),
                octets,
            });
        }
        Ok(Self(lower))
    }

    /// The name as written in the certificate (`*.example.com` for wildcards).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a wildcard name.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name the DNS-01 challenge is about: the wildcard's base (RFC 8555 §8.4).
    pub fn challenge_base(&self) -> &str {
        self.0.strip_prefix("*.").unwrap_or(&self.0)
    }

    /// `_acme-challenge.<base>`, where the TXT record goes.
    pub fn challenge_name(&self) -> String {
        format!("{CHALLENGE_PREFIX}{}", self.challenge_base())
    }

    /// A host name to use as SNI for this name (a wildcard gets a label in front).
    pub fn sni(&self) -> String {
        match self.0.strip_prefix("*.") {
            Some(base) => format!("certctl-probe.{base}"),
            None => self.0.clone(),
        }
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DomainName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A short name used as a path component and in remote commands.
pub fn check_label(s: &str) -> Result<(), LabelError> {
    if s.is_empty() {
        return Err(LabelError::Empty);
    }
    if s.len() > 64 {
        return Err(LabelError::TooLong { length: s.len() });
    }
    let first_ok = s.as_bytes()[0].is_ascii_alphanumeric();
    let all_ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !first_ok || !all_ok || s.contains("..") {
        return Err(LabelError::Characters);
    }
    Ok(())
}

/// A DNS name (no wildcard) in LDH form, with `_` allowed in labels (for
/// `_acme-challenge` and TSIG key names).
pub fn check_dns_name(s: &str) -> Result<(), DnsNameError> {
    let s = s.trim_end_matches('.');
    if s.is_empty() {
        return Err(DnsNameError::Empty);
    }
    if s.len() > 253 {
        return Err(DnsNameError::TooLong { octets: s.len() });
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err(DnsNameError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(DnsNameError::LabelTooLong {
                label: label.into(),
            });
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(DnsNameError::LabelCharacters {
                label: label.into(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DnsNameError::LabelHyphen {
                label: label.into(),
            });
        }
    }
    Ok(())
}

/// A host name or IP literal for SSH or DNS.
pub fn check_host(s: &str) -> Result<(), HostError> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    check_dns_name(s).map_err(HostError)
}

/// A remote user or group name.
pub fn check_user(s: &str) -> Result<(), UserError> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(UserError)
    }
}

/// A remote absolute directory: no `..`, no shell-special characters.
pub fn check_remote_path(p: &Path) -> Result<(), RemotePathError> {
    let Some(s) = p.to_str() else {
        return Err(RemotePathError::NotUtf8);
    };
    if !s.starts_with('/') {
        return Err(RemotePathError::Relative);
    }
    if s.split('/').any(|c| c == "..") {
        return Err(RemotePathError::DotDot);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
    {
        return Err(RemotePathError::Characters);
    }
    Ok(())
}

/// Why a certificate name, node name or domain is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Not a valid certificate name.
    #[error("certificate name `{name}`: {problem}")]
    Certificate {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: LabelError,
    },
    /// Not a valid node name.
    #[error("node name `{name}`: {problem}")]
    Node {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: LabelError,
    },
    /// A domain with non-ASCII characters (an IDN not in its `xn--` form).
    #[error(
        "domain `{name}` is not ASCII; write internationalized names in their xn-- (punycode) form"
    )]
    DomainNotAscii {
        /// The domain given.
        name: String,
    },
    /// A domain that is an IP address.
    #[error(
        "domain `{name}` is an IP address: DNS-01 cannot validate an IP address (there is no \
         DNS name to put the TXT record under); list DNS names only"
    )]
    DomainIsIp {
        /// The domain given.
        name: String,
    },
    /// A domain that is not a DNS name.
    #[error("domain `{name}` is not a valid DNS name: {problem}")]
    DomainInvalid {
        /// The domain given.
        name: String,
        /// What is wrong with it.
        problem: DnsNameError,
    },
    /// A domain of one label.
    #[error("domain `{name}` is not a valid DNS name: it needs at least two labels")]
    DomainOneLabel {
        /// The domain given.
        name: String,
    },
    /// A domain whose `_acme-challenge.` name would be too long.
    #[error(
        "domain `{name}` is too long for DNS-01: its challenge name `{CHALLENGE_PREFIX}...` \
         would be {octets} octets, at most 253 are allowed"
    )]
    ChallengeTooLong {
        /// The domain given.
        name: String,
        /// The challenge name's length.
        octets: usize,
    },
}

/// What is wrong with a short name ([`check_label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// It is empty.
    #[error("must not be empty")]
    Empty,
    /// It is longer than 64 characters.
    #[error("must be at most 64 characters")]
    TooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// It holds other characters, starts with one, or holds `..`.
    #[error(
        "must start with a letter or digit and contain only letters, digits, `.`, `_` and `-` (no `..`)"
    )]
    Characters,
}

/// What is wrong with a DNS name ([`check_dns_name`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsNameError {
    /// It is empty.
    #[error("it is empty")]
    Empty,
    /// It is longer than 253 octets.
    #[error("it is {octets} octets long, at most 253 are allowed")]
    TooLong {
        /// Its length.
        octets: usize,
    },
    /// It has an empty label (`a..b`, a leading dot).
    #[error("it has an empty label")]
    EmptyLabel,
    /// A label is longer than 63 octets.
    #[error("label `{label}` is longer than 63 octets")]
    LabelTooLong {
        /// The label.
        label: String,
    },
    /// A label holds other characters than letters, digits, `-` and `_`.
    #[error("label `{label}` may hold only letters, digits, `-` and `_`")]
    LabelCharacters {
        /// The label.
        label: String,
    },
    /// A label starts or ends with `-`.
    #[error("label `{label}` starts or ends with `-`")]
    LabelHyphen {
        /// The label.
        label: String,
    },
}

/// A host that is neither an IP address nor a DNS name ([`check_host`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a host name or IP address: {0}")]
pub struct HostError(pub DnsNameError);

/// A remote user or group name that is refused ([`check_user`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected a user or group name: letters, digits, `_`, `-`, `.`")]
pub struct UserError;

/// What is wrong with a remote directory ([`check_remote_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemotePathError {
    /// It is not UTF-8.
    #[error("is not valid UTF-8")]
    NotUtf8,
    /// It is relative.
    #[error("must be an absolute path")]
    Relative,
    /// It holds a `..` component.
    #[error("must not contain `..`")]
    DotDot,
    /// It holds a shell-special or other character.
    #[error("may hold only letters, digits and `/ . _ - + @`")]
    Characters,
}

/// Quotes `s` for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@=:,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_names() {
        assert!(CertName::new("www").is_ok());
        assert!(CertName::new("media-2.v1").is_ok());
        for bad in [
            "",
            "../../etc",
            "..",
            ".hidden",
            "a/b",
            "$(reboot)",
            "a b",
            "x..y",
        ] {
            assert!(CertName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domains() {
        let d = DomainName::new("*.CDN.Example.test.").expect("valid");
        assert_eq!(d.as_str(), "*.cdn.example.test");
        assert!(d.is_wildcard());
        assert_eq!(d.challenge_name(), "_acme-challenge.cdn.example.test");
        assert!(DomainName::new("xn--bcher-kva.example").is_ok());
        for bad in [
            "bücher.example",
            "$(reboot).example.com",
            "a..b",
            "-a.example",
            "localhost",
            "*.*.example.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "a.".repeat(127)),
        ] {
            assert!(DomainName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ip_addresses_are_not_dns01_domains() {
        for ip in ["192.0.2.1", "::1", "2001:db8::1", "[2001:db8::1]"] {
            let err = DomainName::new(ip).expect_err(ip);
            assert!(matches!(err, NameError::DomainIsIp { .. }), "{err:?}");
            let e = err.to_string();
            assert!(e.contains("DNS-01 cannot validate an IP address"), "{e}");
        }
    }

    #[test]
    fn node_name_errors_say_node_name() {
        let err = CertName::node("../x").expect_err("bad");
        assert_eq!(
            err,
            NameError::Node {
                name: "../x".into(),
                problem: LabelError::Characters
            }
        );
        let e = err.to_string();
        assert!(e.starts_with("node name `../x`"), "{e}");
    }

    /// Found by the `domain_names` fuzz target: a 253-octet domain was accepted,
    /// but its `_acme-challenge.` name cannot exist, so DNS-01 could never work.
    #[test]
    fn fuzz_domain_names_challenge_name_too_long() {
        let long = |last: usize| {
            let l63 = "a".repeat(63);
            format!("{l63}.{l63}.{l63}.{}.test", "d".repeat(last))
        };
        let longest = long(40);
        assert_eq!(longest.len() + CHALLENGE_PREFIX.len(), 253);
        let d = DomainName::new(&longest).expect("challenge name fits");
        assert!(check_dns_name(&d.challenge_name()).is_ok());
        assert!(check_dns_name(&d.sni()).is_ok());
        let one_more = long(41);
        let err = DomainName::new(&one_more).expect_err("challenge name too long");
        assert!(
            matches!(err, NameError::ChallengeTooLong { octets: 254, .. }),
            "{err:?}"
        );
        let e = err.to_string();
        assert!(
            e.contains("too long for DNS-01") && e.contains("254 octets"),
            "{e}"
        );
        let wildcard = format!("*.{one_more}");
        assert!(DomainName::new(&wildcard).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/etc/nginx"), "/etc/nginx");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn remote_paths() {
        assert!(check_remote_path(Path::new("/etc/nginx/certs")).is_ok());
        assert!(check_remote_path(Path::new("etc")).is_err());
        assert!(check_remote_path(Path::new("/etc/../root")).is_err());
        assert!(check_remote_path(Path::new("/tmp/$(reboot)")).is_err());
    }
}
