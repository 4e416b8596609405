//! dns-persist-01 (draft-ietf-acme-dns-persist): the persistent
//! `_validation-persist.<domain>` TXT record a domain owner publishes once,
//! naming the CA (an issuer domain name) and the ACME account; the CA then
//! validates by looking it up, with no DNS write by the client.
//!
//! This module owns the record's text: which draft the CA speaks
//! ([`DraftVersion::select`], the ONE place that choice is made), the value
//! to publish ([`PersistIdentity::expected`]), and whether a set of TXT
//! values holds a usable record for an identifier ([`PersistIdentity::check`]),
//! with the reason when not ([`RecordProblem`]).

use std::fmt;

use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;

use crate::dns::persist::record_name;
use crate::inventory::PersistPolicy;
use crate::DomainName;

/// The challenge type's name (draft §3).
pub const DNS_PERSIST_01: &str = "dns-persist-01";

/// The draft revision whose record format the CA expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum DraftVersion {
    /// -00/-01: the challenge object lists `issuer-domain-names` (-01 §3.1);
    /// `accounturi` is the account URL itself (-01 §4).
    #[serde(rename = "draft-01")]
    Draft01,
    /// -02: the challenge object and the directory's `meta` list
    /// `issuerDomainNames` (-02 §3.1, §7.6); `accounturi` is the directory's
    /// `accountHashPrefix` + `sha-256/` + a hash of the domain, the account
    /// key's thumbprint and the account URL (-02 §4.1).
    #[serde(rename = "draft-02")]
    Draft02,
}

impl DraftVersion {
    /// What the CA says it speaks: -02 when its directory `meta` carries
    /// `accountHashPrefix` or `issuerDomainNames`, or the challenge object
    /// `issuerDomainNames`; -01 otherwise (`issuer-domain-names`).
    pub fn select(meta: &Value, challenge: Option<&Value>) -> Self {
        let in_meta =
            meta.get("accountHashPrefix").is_some() || meta.get("issuerDomainNames").is_some();
        let in_challenge = challenge.is_some_and(|c| c.get("issuerDomainNames").is_some());
        if in_meta || in_challenge {
            Self::Draft02
        } else {
            Self::Draft01
        }
    }

    /// The issuer domain names the CA offers: the challenge object's, else the
    /// directory's (-02 `meta.issuerDomainNames`; for -01, `meta.caaIdentities`,
    /// which -01 §3.1 names as their source).
    fn issuer_names(self, meta: &Value, challenge: Option<&Value>) -> Vec<String> {
        let (in_challenge, in_meta) = match self {
            Self::Draft01 => ("issuer-domain-names", "caaIdentities"),
            Self::Draft02 => ("issuerDomainNames", "issuerDomainNames"),
        };
        let list = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(normalize_issuer)
                        .collect()
                })
                .unwrap_or_default()
        };
        let from_challenge = list(challenge.and_then(|c| c.get(in_challenge)));
        if !from_challenge.is_empty() {
            return from_challenge;
        }
        list(meta.get(in_meta))
    }

    /// The `accounturi` value for `domain` (its base, no wildcard label).
    fn account_uri(self, id: &PersistIdentity, domain: &str) -> String {
        match self {
            Self::Draft01 => id.account_url.clone(),
            Self::Draft02 => {
                // -02 §4.1: SHA-256 over len(domain) || domain || thumbprint || account URL.
                use aws_lc_rs::digest;
                let mut input = Vec::with_capacity(1 + domain.len() + 128);
                input.push(u8::try_from(domain.len()).unwrap_or(u8::MAX));
                input.extend_from_slice(domain.as_bytes());
                input.extend_from_slice(id.thumbprint.as_bytes());
                input.extend_from_slice(id.account_url.as_bytes());
                let hash = digest::digest(&digest::SHA256, &input);
                format!(
                    "{}sha-256/{}",
                    id.hash_prefix.as_deref().unwrap_or_default(),
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_ref())
                )
            }
        }
    }
}

impl fmt::Display for DraftVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Draft01 => "draft-ietf-acme-dns-persist-01",
            Self::Draft02 => "draft-ietf-acme-dns-persist-02",
        })
    }
}

/// Issuer domain names are compared lower-case, without a trailing dot (§3.1).
fn normalize_issuer(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// This account at this CA, as the persistent record names it.
#[derive(Debug, Clone)]
pub struct PersistIdentity {
    /// The record format.
    pub version: DraftVersion,
    /// The CA's issuer domain names, sorted; the first is the one published.
    pub issuers: Vec<String>,
    /// The account URL (RFC 8555 §7.3).
    pub account_url: String,
    /// The account key's RFC 7638 thumbprint (used by -02's hash).
    pub thumbprint: String,
    /// -02's `accountHashPrefix` from the directory.
    pub hash_prefix: Option<String>,
}

/// The record to publish: name and value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PersistRecord {
    /// `_validation-persist.<domain>`.
    pub name: String,
    /// The TXT value.
    pub value: String,
}

/// Why the CA's directory and challenge do not allow a persistent record.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Neither the challenge nor the directory names an issuer domain name.
    #[error("the CA names no issuer domain name (no `issuer-domain-names`/`issuerDomainNames` in its challenge, no `issuerDomainNames`/`caaIdentities` in its directory): it does not support dns-persist-01")]
    NoIssuerDomainName,
    /// More than the draft allows (§3.1: at most 10).
    #[error("the CA names {count} issuer domain names; the draft allows at most 10 (§3.1)")]
    TooManyIssuers {
        /// How many.
        count: usize,
    },
    /// -02 without the directory's `accountHashPrefix`.
    #[error("the CA speaks draft -02 but its directory has no `accountHashPrefix` (-02 §4.1)")]
    NoHashPrefix,
}

impl PersistIdentity {
    /// The identity from the CA's directory `meta`, the challenge object if
    /// there is one, and the account.
    pub fn new(
        meta: &Value,
        challenge: Option<&Value>,
        account_url: &str,
        thumbprint: &str,
    ) -> Result<Self, IdentityError> {
        let version = DraftVersion::select(meta, challenge);
        let mut issuers = version.issuer_names(meta, challenge);
        issuers.sort();
        issuers.dedup();
        if issuers.is_empty() {
            return Err(IdentityError::NoIssuerDomainName);
        }
        if issuers.len() > 10 {
            return Err(IdentityError::TooManyIssuers {
                count: issuers.len(),
            });
        }
        let hash_prefix = meta
            .get("accountHashPrefix")
            .and_then(Value::as_str)
            .map(str::to_string);
        if version == DraftVersion::Draft02 && hash_prefix.is_none() {
            return Err(IdentityError::NoHashPrefix);
        }
        Ok(Self {
            version,
            issuers,
            account_url: account_url.to_string(),
            thumbprint: thumbprint.to_string(),
            hash_prefix,
        })
    }

    /// The record to publish for `domain` (§4: `<issuer>; accounturi=<uri>`,
    /// then `policy=wildcard` and `persistUntil=<unix seconds>` when asked).
    pub fn expected(
        &self,
        domain: &DomainName,
        policy: Option<PersistPolicy>,
        until: Option<OffsetDateTime>,
    ) -> PersistRecord {
        let base = domain.challenge_base();
        let mut value = format!(
            "{}; accounturi={}",
            self.issuers[0],
            self.version.account_uri(self, base)
        );
        if policy == Some(PersistPolicy::Wildcard) {
            value.push_str("; policy=wildcard");
        }
        if let Some(u) = until {
            value.push_str(&format!("; persistUntil={}", u.unix_timestamp()));
        }
        PersistRecord {
            name: record_name(domain),
            value,
        }
    }

    /// Whether `values` (the TXT values at the record's name) hold a record
    /// that validates `identifier` for this account at `now` (§4, §5).
    pub fn check(
        &self,
        identifier: &DomainName,
        values: &[String],
        now: OffsetDateTime,
    ) -> Result<(), RecordProblem> {
        let wildcard = identifier.as_str().starts_with("*.");
        let ours = self.version.account_uri(self, identifier.challenge_base());
        let parsed: Vec<Parsed> = values.iter().filter_map(|v| Parsed::parse(v)).collect();
        if parsed.is_empty() {
            return Err(RecordProblem::Missing);
        }
        let for_us: Vec<&Parsed> = parsed
            .iter()
            .filter(|p| self.issuers.contains(&p.issuer))
            .collect();
        if for_us.is_empty() {
            return Err(RecordProblem::WrongCa {
                found: parsed.iter().map(|p| p.issuer.clone()).collect(),
                expected: self.issuers.clone(),
            });
        }
        let mine: Vec<&&Parsed> = for_us
            .iter()
            .filter(|p| p.account.as_deref() == Some(ours.as_str()))
            .collect();
        if mine.is_empty() {
            return Err(RecordProblem::WrongAccount {
                found: for_us.iter().filter_map(|p| p.account.clone()).collect(),
                expected: ours,
            });
        }
        let mut problem = None;
        for p in mine {
            if wildcard && !p.wildcard {
                problem.get_or_insert(RecordProblem::NoWildcardPolicy {
                    identifier: identifier.to_string(),
                });
                continue;
            }
            match p.until {
                Some(u) if u < now.unix_timestamp() => {
                    problem = Some(RecordProblem::Expired { persist_until: u });
                    continue;
                }
                _ => return Ok(()),
            }
        }
        Err(problem.unwrap_or(RecordProblem::Missing))
    }
}

/// What is wrong with the persistent record for one identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordProblem {
    /// No TXT record of the draft's form at the name.
    #[error("no dns-persist-01 record (missing)")]
    Missing,
    /// Records only for other CAs.
    #[error("the record names another CA ({}), not this CA ({})", .found.join(", "), .expected.join(", "))]
    WrongCa {
        /// The issuer domain names found.
        found: Vec<String>,
        /// This CA's.
        expected: Vec<String>,
    },
    /// Records for this CA, only for other accounts.
    #[error("the record is for another account ({}), not this account ({expected})", .found.join(", "))]
    WrongAccount {
        /// The `accounturi` values found.
        found: Vec<String>,
        /// This account's.
        expected: String,
    },
    /// A wildcard identifier and no `policy=wildcard` (§5).
    #[error("{identifier} is a wildcard and the record has no `policy=wildcard` (draft §5)")]
    NoWildcardPolicy {
        /// The identifier.
        identifier: String,
    },
    /// `persistUntil` is in the past (§4).
    #[error("the record's persistUntil={persist_until} ({}) has passed", unix_text(*.persist_until))]
    Expired {
        /// The record's value, Unix seconds.
        persist_until: i64,
    },
}

fn unix_text(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// One TXT value read as the draft's issue-value (RFC 8659 §4.2 syntax:
/// `issuer-domain-name *(";" tag "=" value)`; tags case-insensitive, §4).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    issuer: String,
    account: Option<String>,
    wildcard: bool,
    until: Option<i64>,
}

impl Parsed {
    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let issuer = normalize_issuer(parts.next()?);
        if issuer.is_empty() || issuer.contains('=') || issuer.contains(' ') {
            return None;
        }
        let mut out = Parsed {
            issuer,
            account: None,
            wildcard: false,
            until: None,
        };
        for p in parts {
            let Some((tag, val)) = p.split_once('=') else {
                continue;
            };
            let val = val.trim();
            match tag.trim().to_ascii_lowercase().as_str() {
                "accounturi" => out.account = Some(val.to_string()),
                "policy" => out.wildcard = val.eq_ignore_ascii_case("wildcard"),
                // A malformed timestamp never validates (§4, CA guidelines: `malformed`).
                "persistuntil" => out.until = Some(val.parse().unwrap_or(i64::MIN)),
                _ => {}
            }
        }
        Some(out)
    }
}

/// The challenge type as instant-acme sees it (it has no named variant).
pub(super) fn challenge_type() -> instant_acme::ChallengeType {
    instant_acme::ChallengeType::Unknown(DNS_PERSIST_01.to_string())
}

/// Why dns-persist-01 was not used for an identifier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotUsed {
    /// The CA's authorization offers no dns-persist-01 challenge.
    #[error("the CA does not offer dns-persist-01 for it")]
    NotOffered,
    /// Talking to the CA about the challenge failed.
    #[error("reading the dns-persist-01 challenge")]
    Ca(#[source] Box<super::AcmeError>),
    /// The CA's directory or challenge do not describe a usable record.
    #[error(transparent)]
    Identity(IdentityError),
    /// The record's zone or nameservers could not be found.
    #[error("looking up the persistent record")]
    Dns(#[source] crate::dns::DnsError),
    /// An authoritative server could not be read.
    #[error("{fqdn} on {server} {addr}: {why}")]
    Unreadable {
        /// The record's name.
        fqdn: String,
        /// The server's NS name.
        server: String,
        /// The address asked.
        addr: std::net::SocketAddr,
        /// What it answered instead.
        why: crate::dns::NotServed,
    },
    /// An authoritative server serves no usable record.
    #[error("{fqdn} on {server} {addr}: {problem}")]
    Record {
        /// The record's name.
        fqdn: String,
        /// The server's NS name.
        server: String,
        /// The address asked.
        addr: std::net::SocketAddr,
        /// What is wrong.
        problem: RecordProblem,
    },
}

impl NotUsed {
    /// The record problem, when that is the reason.
    pub fn record_problem(&self) -> Option<&RecordProblem> {
        match self {
            Self::Record { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// Checks the persistent record for `identifier` on every authoritative
/// nameserver of its zone; the first server that lacks a usable one is the error.
pub async fn check_served(
    id: &PersistIdentity,
    resolver: Option<crate::inventory::Server>,
    identifier: &DomainName,
) -> Result<(), NotUsed> {
    let at = crate::dns::persist::locate(resolver.clone(), identifier)
        .await
        .map_err(NotUsed::Dns)?;
    let served = crate::dns::persist::served(resolver, &at)
        .await
        .map_err(NotUsed::Dns)?;
    let now = OffsetDateTime::now_utc();
    for s in served {
        let values = s.values.map_err(|why| NotUsed::Unreadable {
            fqdn: at.fqdn.clone(),
            server: s.server.clone(),
            addr: s.addr,
            why,
        })?;
        id.check(identifier, &values, now)
            .map_err(|problem| NotUsed::Record {
                fqdn: at.fqdn.clone(),
                server: s.server.clone(),
                addr: s.addr,
                problem,
            })?;
    }
    Ok(())
}

/// How [`identity`] finds the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountUse {
    /// Only a stored account; none is an error.
    Stored,
    /// The stored account, or register one at the CA (as the first renewal would).
    StoredOrRegister,
}

/// This account's identity at `ca` for the persistent record, from the
/// CA's directory (no order is made, so no challenge object: the issuer
/// domain names come from the directory's `meta`, see [`DraftVersion`]).
pub async fn identity(
    ca: &super::CaConfig,
    store: &crate::Store,
    account: AccountUse,
) -> Result<PersistIdentity, super::AcmeError> {
    if account == AccountUse::StoredOrRegister {
        // Registers (and stores) the account when there is none.
        super::Issuer::connect(ca, store).await?;
    }
    let info =
        super::show_account(ca, store)?.ok_or_else(|| super::AcmeError::NoStoredAccount {
            directory: ca.directory.clone(),
        })?;
    let http = super::client::CaClient::new(
        ca.ca_bundle.as_deref(),
        super::client::RetryLog::default(),
        super::client::Health::default(),
    )?;
    let jws = super::jws::JwsClient::connect(Box::new(http), &ca.directory)
        .await
        .map_err(|source| super::AcmeError::Server {
            directory: ca.directory.clone(),
            step: "loading the directory",
            source,
        })?;
    PersistIdentity::new(jws.meta(), None, &info.url, &info.thumbprint).map_err(|source| {
        super::AcmeError::PersistUnsupported {
            directory: ca.directory.clone(),
            source,
        }
    })
}

/// The dns-01 solver an order of `cert` uses: its own, or for a persist
/// solver its `fallback`, or [`NoDnsSolver`] when it has none (the order
/// then never writes DNS: it fails first with the record's problem).
pub(super) fn dns_solver(
    inv: &crate::Inventory,
    cert: &crate::inventory::CertificateConfig,
) -> Result<std::sync::Arc<dyn crate::dns::DnsSolver>, crate::dns::DnsError> {
    let name = match &cert.persist {
        Some(p) => match &p.fallback {
            Some(f) => f.as_str(),
            None => {
                return Ok(std::sync::Arc::new(NoDnsSolver {
                    solver: cert.solver.clone(),
                }))
            }
        },
        None => cert.solver.as_str(),
    };
    match inv.solvers.get(name) {
        Some(cfg) => crate::dns::solver(name, cfg),
        None => Err(crate::dns::DnsError::NotADnsSolver {
            solver: name.to_string(),
        }),
    }
}

/// The dns-01 "solver" of a persist solver without a fallback: it writes nothing.
#[derive(Debug)]
pub(super) struct NoDnsSolver {
    solver: String,
}

#[async_trait::async_trait]
impl crate::dns::DnsSolver for NoDnsSolver {
    async fn present(
        &self,
        _: &DomainName,
        _: &str,
    ) -> Result<crate::dns::TxtRecord, crate::dns::DnsError> {
        Err(self.refuse())
    }
    async fn wait_propagated(&self, _: &crate::dns::TxtRecord) -> Result<(), crate::dns::DnsError> {
        Err(self.refuse())
    }
    async fn cleanup(&self, _: &crate::dns::TxtRecord) -> Result<(), crate::dns::DnsError> {
        // Nothing was written, so nothing is left to remove.
        Ok(())
    }
    async fn present_at(&self, _: &crate::dns::TxtRecord) -> Result<(), crate::dns::DnsError> {
        Err(self.refuse())
    }
}

impl NoDnsSolver {
    fn refuse(&self) -> crate::dns::DnsError {
        crate::dns::DnsError::NotADnsSolver {
            solver: self.solver.clone(),
        }
    }
}

/// The challenge `cert` is answered with, as `renew --dry-run` and the
/// report say it: `dns-01`, `dns-persist-01`, or
/// `dns-persist-01 (fallback dns-01 via <solver>)`.
pub fn method(cert: &crate::inventory::CertificateConfig) -> String {
    match &cert.persist {
        None => "dns-01".to_string(),
        Some(p) => match &p.fallback {
            None => DNS_PERSIST_01.to_string(),
            Some(f) => format!("{DNS_PERSIST_01} (fallback dns-01 via {f})"),
        },
    }
}

/// One persistent record a certificate needs (`certctl persist-record`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedRecord {
    /// The certificate.
    pub certificate: String,
    /// Its names this record validates (a wildcard and its base share one).
    pub domains: Vec<String>,
    /// The record's name.
    pub name: String,
    /// The TXT value.
    pub value: String,
    /// The draft whose format it follows.
    pub draft: DraftVersion,
}

/// Why a record was not planned or published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The certificate does not use a persist solver.
    #[error("certificate `{certificate}` does not use a `type = \"persist\"` solver")]
    NotPersist {
        /// The certificate.
        certificate: String,
    },
    /// The persist solver has no dns-01 solver to write with.
    #[error("the persist solver of `{certificate}` has no `fallback` dns-01 solver to publish through; create the record at your DNS provider by hand")]
    NoWriter {
        /// The certificate.
        certificate: String,
    },
    /// Writing or checking the record failed.
    #[error("publishing {name}")]
    Dns {
        /// The record's name.
        name: String,
        /// Why.
        #[source]
        source: crate::dns::DnsError,
    },
}

/// The records the certificates `names` (all persist certificates when
/// empty) need, one per record name.
pub fn plan(
    inv: &crate::Inventory,
    id: &PersistIdentity,
    names: &[String],
) -> Result<Vec<PlannedRecord>, PublishError> {
    let mut out: Vec<PlannedRecord> = Vec::new();
    for c in &inv.certificates {
        if !names.is_empty() && !names.iter().any(|n| n == c.name.as_str()) {
            continue;
        }
        let Some(p) = &c.persist else {
            if names.is_empty() {
                continue;
            }
            return Err(PublishError::NotPersist {
                certificate: c.name.to_string(),
            });
        };
        for d in &c.domains {
            let want = id.expected(d, p.policy, p.persist_until);
            match out
                .iter_mut()
                .find(|r| r.certificate == c.name.as_str() && r.name == want.name)
            {
                Some(r) => r.domains.push(d.to_string()),
                None => out.push(PlannedRecord {
                    certificate: c.name.to_string(),
                    domains: vec![d.to_string()],
                    name: want.name,
                    value: want.value,
                    draft: id.version,
                }),
            }
        }
    }
    Ok(out)
}

/// What `--publish` did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Published {
    /// Every authoritative server already served a right record: nothing written.
    AlreadyThere,
    /// Written through the fallback solver and seen on every authoritative server.
    Written,
    /// `--dry-run`: it would be written.
    WouldWrite,
}

/// Creates `record` once through the certificate's `fallback` solver
/// (rfc2136 or exec) and waits until every authoritative server serves it;
/// nothing is written when it is already right everywhere, or on `dry_run`.
/// certctl never removes it.
pub async fn publish(
    inv: &crate::Inventory,
    id: &PersistIdentity,
    record: &PlannedRecord,
    dry_run: bool,
) -> Result<Published, PublishError> {
    let cert = inv
        .certificate(&record.certificate)
        .ok_or_else(|| PublishError::NotPersist {
            certificate: record.certificate.clone(),
        })?;
    let Some(p) = &cert.persist else {
        return Err(PublishError::NotPersist {
            certificate: record.certificate.clone(),
        });
    };
    let fallback = p
        .fallback
        .as_deref()
        .ok_or_else(|| PublishError::NoWriter {
            certificate: record.certificate.clone(),
        })?;
    let dns = |source| PublishError::Dns {
        name: record.name.clone(),
        source,
    };
    let first = record
        .domains
        .first()
        .and_then(|d| DomainName::new(d).ok())
        .ok_or_else(|| PublishError::NotPersist {
            certificate: record.certificate.clone(),
        })?;
    let mut right = true;
    for d in record
        .domains
        .iter()
        .filter_map(|d| DomainName::new(d).ok())
    {
        if check_served(id, p.resolver.clone(), &d).await.is_err() {
            right = false;
        }
    }
    if right {
        return Ok(Published::AlreadyThere);
    }
    if dry_run {
        return Ok(Published::WouldWrite);
    }
    let cfg = inv
        .solvers
        .get(fallback)
        .ok_or_else(|| PublishError::NoWriter {
            certificate: record.certificate.clone(),
        })?;
    let solver = crate::dns::solver(fallback, cfg).map_err(dns)?;
    // The persist solver's resolver, else the writing solver's.
    let resolver = p.resolver.clone().or_else(|| cfg.propagation().resolver);
    let at = crate::dns::persist::locate(resolver.clone(), &first)
        .await
        .map_err(dns)?;
    crate::dns::persist::publish(&solver, resolver, &at, &record.value, &cfg.propagation())
        .await
        .map_err(dns)?;
    Ok(Published::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> DomainName {
        DomainName::new(s).expect("domain")
    }

    fn id01() -> PersistIdentity {
        let ch = json!({"type": "dns-persist-01", "url": "https://ca/ch/1", "status": "pending",
            "issuer-domain-names": ["Ca.Example.", "other.example"]});
        PersistIdentity::new(&json!({}), Some(&ch), "https://ca/acct/7", "thumb").expect("identity")
    }

    #[test]
    fn a_tokenless_dns_persist_challenge_parses_with_instant_acme() {
        // The object Let's Encrypt's staging first sent: no `token` at all.
        let authz = json!({
            "identifier": {"type": "dns", "value": "www.example.test"},
            "status": "pending",
            "challenges": [
                {"type": "dns-persist-01", "url": "https://ca/ch/1", "status": "pending",
                 "issuer-domain-names": ["ca.example"]},
                {"type": "dns-01", "url": "https://ca/ch/2", "status": "pending", "token": "tok"},
                {"type": "brand-new-02", "url": "https://ca/ch/3", "status": "pending"}
            ]
        });
        let state: instant_acme::AuthorizationState =
            serde_json::from_value(authz).expect("a tokenless challenge parses");
        assert_eq!(
            state.challenges[0].r#type,
            instant_acme::ChallengeType::Unknown(DNS_PERSIST_01.into())
        );
        assert!(state.challenges[0].token.is_empty());
        assert_eq!(
            state.challenges[1].r#type,
            instant_acme::ChallengeType::Dns01
        );
    }

    #[test]
    fn draft_01_record_is_issuer_and_account_url() {
        let id = id01();
        assert_eq!(id.version, DraftVersion::Draft01);
        let r = id.expected(&d("www.example.test"), None, None);
        assert_eq!(r.name, "_validation-persist.www.example.test");
        assert_eq!(r.value, "ca.example; accounturi=https://ca/acct/7");
        let until = OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("time");
        let r = id.expected(
            &d("*.example.test"),
            Some(PersistPolicy::Wildcard),
            Some(until),
        );
        assert_eq!(r.name, "_validation-persist.example.test");
        assert_eq!(
            r.value,
            "ca.example; accounturi=https://ca/acct/7; policy=wildcard; persistUntil=1767225600"
        );
    }

    #[test]
    fn draft_02_is_chosen_by_the_directory_and_hashes_the_account() {
        let meta =
            json!({"issuerDomainNames": ["ca.example"], "accountHashPrefix": "https://ca/h/"});
        let id = PersistIdentity::new(&meta, None, "https://ca/acct/7", "thumb").expect("id");
        assert_eq!(id.version, DraftVersion::Draft02);
        let r = id.expected(&d("www.example.test"), None, None);
        let uri = r
            .value
            .strip_prefix("ca.example; accounturi=https://ca/h/sha-256/")
            .expect(&r.value);
        assert_eq!(uri.len(), 43, "base64url of 32 bytes: {uri}");
        // The hash binds the domain: another name gives another value.
        let other = id.expected(&d("api.example.test"), None, None);
        assert_ne!(r.value, other.value);
        assert!(id
            .check(
                &d("www.example.test"),
                std::slice::from_ref(&r.value),
                OffsetDateTime::now_utc()
            )
            .is_ok());
        assert!(matches!(
            id.check(
                &d("api.example.test"),
                &[r.value],
                OffsetDateTime::now_utc()
            ),
            Err(RecordProblem::WrongAccount { .. })
        ));
        assert_eq!(
            PersistIdentity::new(
                &json!({"issuerDomainNames": ["ca.example"]}),
                None,
                "u",
                "t"
            )
            .err(),
            Some(IdentityError::NoHashPrefix)
        );
    }

    #[test]
    fn every_problem_is_named() {
        let id = id01();
        let now = OffsetDateTime::now_utc();
        let www = d("www.example.test");
        assert_eq!(id.check(&www, &[], now), Err(RecordProblem::Missing));
        assert_eq!(
            id.check(&www, &["unrelated text".into()], now),
            Err(RecordProblem::Missing)
        );
        assert!(matches!(
            id.check(
                &www,
                &["other-ca.test; accounturi=https://ca/acct/7".into()],
                now
            ),
            Err(RecordProblem::WrongCa { .. })
        ));
        assert!(matches!(
            id.check(
                &www,
                &["ca.example; accounturi=https://ca/acct/8".into()],
                now
            ),
            Err(RecordProblem::WrongAccount { .. })
        ));
        let plain = "CA.example; AccountURI=https://ca/acct/7".to_string();
        assert_eq!(id.check(&www, std::slice::from_ref(&plain), now), Ok(()));
        assert!(matches!(
            id.check(&d("*.example.test"), &[plain], now),
            Err(RecordProblem::NoWildcardPolicy { .. })
        ));
        let past = format!(
            "ca.example; accounturi=https://ca/acct/7; persistUntil={}",
            now.unix_timestamp() - 10
        );
        assert!(matches!(
            id.check(&www, &[past], now),
            Err(RecordProblem::Expired { .. })
        ));
        let good = "ca.example; accounturi=https://ca/acct/7; policy=wildcard".to_string();
        assert_eq!(id.check(&d("*.example.test"), &[good], now), Ok(()));
    }

    #[test]
    fn the_method_and_the_dns01_solver_follow_the_persist_solver() {
        let text = |fallback: &str| {
            format!(
                r#"
[account]
directory = "https://ca.test/dir"
[solvers.ns]
type = "exec"
present = ["true"]
cleanup = ["true"]
[solvers.p]
type = "persist"
{fallback}
[[certificate]]
name = "a"
domains = ["a.example.test"]
solver = "p"
[[certificate]]
name = "b"
domains = ["b.example.test"]
solver = "ns"
"#
            )
        };
        let path = std::path::Path::new("/nonexistent/c.toml");
        let inv = crate::Inventory::from_str(&text(""), path).expect("inventory");
        assert_eq!(method(&inv.certificates[0]), "dns-persist-01");
        assert_eq!(method(&inv.certificates[1]), "dns-01");
        // No fallback: a solver that writes nothing and refuses to.
        let s = dns_solver(&inv, &inv.certificates[0]).expect("solver");
        assert!(format!("{s:?}").contains("NoDnsSolver"), "{s:?}");
        let inv = crate::Inventory::from_str(&text("fallback = \"ns\""), path).expect("inventory");
        assert_eq!(
            method(&inv.certificates[0]),
            "dns-persist-01 (fallback dns-01 via ns)"
        );
        let s = dns_solver(&inv, &inv.certificates[0]).expect("solver");
        assert!(format!("{s:?}").contains("Exec"), "{s:?}");
    }

    #[test]
    fn a_ca_without_issuer_names_does_not_support_it() {
        assert_eq!(
            PersistIdentity::new(&json!({}), None, "u", "t").err(),
            Some(IdentityError::NoIssuerDomainName)
        );
    }
}
