//! Name validation: what `DomainName`, `CertName` and the checks accept is
//! safe to use as a DNS name, a path component and a shell word, and
//! `shell_quote` always yields one shell word that means its input.
#![no_main]

use std::path::{Component, Path};

use acme_core::inventory::{parse_duration, parse_server};
use acme_core::{
    check_dns_name, check_host, check_label, check_remote_path, check_user, shell_quote,
};
use acme_core::{CertName, DomainName};
use hickory_proto::rr::Name;
use libfuzzer_sys::fuzz_target;

/// Characters a POSIX shell never treats specially in an unquoted word.
fn shell_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/._-+@=:,".contains(&b)
}

/// Reads a word made only of `'...'` runs and `\'`, as `sh` would, or `None`
/// if anything else (an unquoted metacharacter) appears.
fn unquote(q: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = q;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'')?;
            out.push_str(&r[..end]);
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix("\\'") {
            out.push('\'');
            rest = r;
        } else {
            return None;
        }
    }
    Some(out)
}

fn check_domain(s: &str) {
    let Ok(d) = DomainName::new(s) else { return };
    let name = d.as_str();
    assert!(name.is_ascii(), "{name:?}");
    assert_eq!(name, name.to_ascii_lowercase(), "not lower-case");
    assert!(name.len() <= 253, "{} octets", name.len());
    assert!(!name.ends_with('.'), "{name:?}");
    let base = d.challenge_base();
    assert!(!base.contains('*'), "wildcard inside {name:?}");
    assert!(base.contains('.'), "one label: {name:?}");
    for label in base.split('.') {
        assert!(!label.is_empty() && label.len() <= 63, "label {label:?}");
    }
    // Validation is idempotent.
    assert_eq!(DomainName::new(name).as_ref(), Ok(&d));
    // The names derived from it are DNS names too.
    let challenge = d.challenge_name();
    assert!(
        check_dns_name(&challenge).is_ok(),
        "challenge name {challenge:?} of accepted {name:?}"
    );
    assert!(
        Name::from_ascii(format!("{challenge}.")).is_ok(),
        "{challenge:?}"
    );
    let sni = d.sni();
    assert!(
        check_dns_name(&sni).is_ok(),
        "SNI {sni:?} of accepted {name:?}"
    );
}

fn check_cert_name(s: &str) {
    let Ok(n) = CertName::new(s) else { return };
    let n = n.as_str();
    assert!(!n.is_empty() && n.len() <= 64, "{n:?}");
    assert!(n.bytes().all(shell_safe), "{n:?} needs quoting");
    let mut parts = Path::new(n).components();
    assert!(
        matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none(),
        "{n:?} is not one path component"
    );
    assert!(check_label(n).is_ok());
}

fn check_dns(s: &str) {
    if check_dns_name(s).is_err() {
        return;
    }
    let bare = s.trim_end_matches('.');
    assert!(bare.len() <= 253, "{} octets", bare.len());
    assert!(bare.bytes().all(shell_safe), "{bare:?} needs quoting");
    // What we accept, hickory accepts as the same absolute name.
    let n = Name::from_ascii(format!("{bare}."))
        .unwrap_or_else(|e| panic!("{bare:?} accepted here, refused by hickory: {e}"));
    assert_eq!(
        n.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
        bare.to_ascii_lowercase()
    );
    assert!(check_host(s).is_ok());
}

fn check_path(s: &str) {
    if check_remote_path(Path::new(s)).is_err() {
        return;
    }
    assert!(s.starts_with('/'), "{s:?}");
    assert!(!s.split('/').any(|c| c == ".."), "{s:?}");
    // Paths are put in remote commands unquoted-safe.
    assert_eq!(shell_quote(s), s, "accepted path {s:?} needs quoting");
}

fn check_quote(s: &str) {
    let q = shell_quote(s);
    if !s.is_empty() && s.bytes().all(shell_safe) {
        assert_eq!(q, s);
        return;
    }
    assert!(
        q.starts_with('\'') && q.ends_with('\'') && q.len() >= 2,
        "{q:?}"
    );
    assert_eq!(unquote(&q).as_deref(), Some(s), "{s:?} quoted as {q:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check_domain(s);
    check_cert_name(s);
    check_dns(s);
    check_path(s);
    check_quote(s);
    // Parsers of inventory values: any string, no panic.
    let _ = check_user(s);
    let _ = parse_duration(s);
    if let Ok(server) = parse_server(s, 53) {
        assert!(!server.host.is_empty(), "{s:?}");
    }
});
