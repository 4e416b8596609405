//! The persistent dns-persist-01 record in DNS (draft-ietf-acme-dns-persist
//! §3–§4): where it lives (`_validation-persist.<domain>`, CNAMEs followed as
//! for DNS-01), what every authoritative nameserver of its zone serves there
//! (asked directly, recursion off, as the propagation check does), and
//! publishing it once through a dns-01 solver. Nothing here removes it.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use super::propagation::{self, NotServed};
use super::wire::{self, text};
use super::zone::Locator;
use super::{DnsError, DnsSolver, TxtRecord};
use crate::inventory::{PropagationConfig, Server};
use crate::DomainName;

/// The label the draft puts in front of the domain (§3: the "Authorization
/// Domain Name" is `_validation-persist.<FQDN>`).
pub const PERSIST_PREFIX: &str = "_validation-persist.";

/// The record's name for `domain` (a wildcard reduced to its base).
pub fn record_name(domain: &DomainName) -> String {
    format!("{PERSIST_PREFIX}{}", domain.challenge_base())
}

/// What one authoritative server serves at the record's name.
#[derive(Debug, Clone)]
pub struct ServedTxt {
    /// The server's NS name.
    pub server: String,
    /// The address asked.
    pub addr: SocketAddr,
    /// The TXT values there (each one's strings joined), or why none could be read.
    pub values: Result<Vec<String>, NotServed>,
}

/// Where the record lives: its name after CNAMEs and its zone.
#[derive(Debug, Clone)]
pub struct Located {
    /// The certificate domain (wildcard reduced to its base).
    pub domain: DomainName,
    /// The name that holds the TXT record, after CNAMEs.
    pub fqdn: String,
    /// The zone that contains it.
    pub zone: String,
}

/// Finds `_validation-persist.<domain>`'s final name and zone through `resolver`.
pub async fn locate(resolver: Option<Server>, domain: &DomainName) -> Result<Located, DnsError> {
    let locator = Locator::new(resolver);
    let (fqdn, zone) = locator.locate_name(&record_name(domain)).await?;
    Ok(Located {
        domain: DomainName::new(domain.challenge_base()).unwrap_or_else(|_| domain.clone()),
        fqdn,
        zone,
    })
}

/// The TXT values every authoritative nameserver of the record's zone serves.
pub async fn served(resolver: Option<Server>, at: &Located) -> Result<Vec<ServedTxt>, DnsError> {
    let locator = Locator::new(resolver);
    let servers = locator.nameservers(&at.zone).await?;
    let asks = servers.iter().map(|s| async move {
        let values = txt_at(s.addr, &at.fqdn).await;
        ServedTxt {
            server: s.name.clone(),
            addr: s.addr,
            values,
        }
    });
    Ok(futures::future::join_all(asks).await)
}

async fn txt_at(addr: SocketAddr, fqdn: &str) -> Result<Vec<String>, NotServed> {
    let msg = wire::query(addr, fqdn, RecordType::TXT, false, "TXT query", None)
        .await
        .map_err(|e| match e {
            DnsError::Unreachable { source, .. } => NotServed::NoAnswer(Arc::new(source)),
            other => NotServed::Query(Arc::new(other)),
        })?;
    match msg.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => return Err(NotServed::Rcode(code)),
    }
    if !msg.metadata.authoritative {
        return Err(NotServed::NotAuthoritative);
    }
    Ok(msg
        .answers
        .iter()
        .filter(|r| text(&r.name) == fqdn)
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// Creates the record once through `solver` and waits until every
/// authoritative server serves it (the DNS-01 propagation check). The record
/// is never removed by certctl: it is meant to stay.
pub async fn publish(
    solver: &Arc<dyn DnsSolver>,
    resolver: Option<Server>,
    at: &Located,
    value: &str,
    propagation: &PropagationConfig,
) -> Result<TxtRecord, DnsError> {
    let record = TxtRecord {
        domain: at.domain.clone(),
        fqdn: at.fqdn.clone(),
        zone: at.zone.clone(),
        value: value.to_string(),
    };
    solver.present_at(&record).await?;
    let cfg = PropagationConfig {
        resolver: resolver.clone(),
        skip_propagation_check: false,
        ..propagation.clone()
    };
    propagation::wait(&Locator::new(resolver), &cfg, &record).await?;
    Ok(record)
}
