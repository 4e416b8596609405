//! Waiting until every authoritative server of a zone serves a TXT value.
//! Each server is asked directly, with recursion off, so no cache can answer.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::wire::{self, rcode_mnemonic, text};
use super::zone::{Locator, Nameserver};
use super::{DnsError, TxtRecord};
use crate::inventory::PropagationConfig;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// First pause between rounds; doubles up to the cap of [`max_backoff`].
const FIRST_BACKOFF: Duration = Duration::from_millis(25);

/// Longest pause between rounds after `elapsed`: most servers catch up within
/// a second (NOTIFY + IXFR), so poll finely at first, then gently.
fn max_backoff(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(1) {
        Duration::from_millis(50)
    } else if elapsed < Duration::from_secs(5) {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    }
}
/// Bound on one query to one server.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits until every authoritative server of `record.zone` serves `record.value`
/// at `record.fqdn`, then the configured fixed delay.
pub(super) async fn wait(
    locator: &Locator,
    cfg: &PropagationConfig,
    record: &TxtRecord,
) -> Result<(), DnsError> {
    if !cfg.skip_propagation_check {
        let servers = locator.nameservers(&record.zone).await?;
        tracing::debug!(
            servers = %servers.iter().map(|s| format!("{} {}", s.name, s.addr)).collect::<Vec<_>>().join(", "),
            "checking propagation"
        );
        poll(&servers, record, cfg.propagation_timeout).await?;
    }
    if let Some(delay) = cfg.propagation_delay {
        tracing::debug!(?delay, "fixed propagation delay");
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

async fn poll(
    servers: &[Nameserver],
    record: &TxtRecord,
    timeout: Duration,
) -> Result<(), DnsError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pending: Vec<(&Nameserver, Option<NotServed>)> =
        servers.iter().map(|s| (s, None)).collect();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let bound = left.clamp(Duration::from_millis(200), QUERY_TIMEOUT);
        let checks = pending
            .iter()
            .map(|(s, _)| check(s, &record.fqdn, &record.value, bound));
        let results = futures::future::join_all(checks).await;
        pending = pending
            .into_iter()
            .zip(results)
            .filter_map(|((s, _), r)| r.err().map(|why| (s, Some(why))))
            .collect();
        if pending.is_empty() {
            tracing::info!(waited = ?start.elapsed(), "TXT record on every authoritative server");
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DnsError::PropagationTimeout {
                fqdn: record.fqdn.clone(),
                value: record.value.clone(),
                waited: start.elapsed(),
                missing: pending
                    .into_iter()
                    .filter_map(|(s, why)| {
                        why.map(|why| Unpropagated {
                            server: s.name.clone(),
                            addr: s.addr,
                            why,
                        })
                    })
                    .collect(),
            });
        }
        tokio::time::sleep(backoff.min(left)).await;
        backoff = (backoff * 2).min(max_backoff(start.elapsed()));
    }
}

/// `Ok` when `server` serves `value` at `fqdn`; else what it said instead.
async fn check(
    server: &Nameserver,
    fqdn: &str,
    value: &str,
    bound: Duration,
) -> Result<(), NotServed> {
    let msg = wire::query(
        server.addr,
        fqdn,
        RecordType::TXT,
        false,
        "TXT query",
        Some(bound),
    )
    .await
    .map_err(|e| match e {
        DnsError::Unreachable { source, .. } => NotServed::NoAnswer(Arc::new(source)),
        other => NotServed::Query(Arc::new(other)),
    })?;
    served(&msg, fqdn, value)
}

/// Whether an authoritative answer holds `value` at `fqdn`.
pub(super) fn served(msg: &Message, fqdn: &str, value: &str) -> Result<(), NotServed> {
    match msg.metadata.response_code {
        ResponseCode::NoError => {}
        code => return Err(NotServed::Rcode(code)),
    }
    if !msg.metadata.authoritative {
        return Err(NotServed::NotAuthoritative);
    }
    let values: Vec<Vec<u8>> = msg
        .answers
        .iter()
        .filter(|r| text(&r.name) == fqdn)
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().flat_map(|c| c.iter().copied()).collect()),
            _ => None,
        })
        .collect();
    if values.iter().any(|v| v.as_slice() == value.as_bytes()) {
        Ok(())
    } else {
        Err(NotServed::Absent {
            found: values.len(),
        })
    }
}

/// An authoritative server that did not show the TXT value in time.
#[derive(Debug, Clone)]
pub struct Unpropagated {
    /// Its NS name.
    pub server: String,
    /// The address asked.
    pub addr: SocketAddr,
    /// What it said instead, at the last try.
    pub why: NotServed,
}

impl fmt::Display for Unpropagated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.server, self.addr, self.why)
    }
}

/// What an authoritative server answered instead of the TXT value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NotServed {
    /// No answer in time, or the network refused.
    NoAnswer(Arc<std::io::Error>),
    /// The query failed otherwise.
    Query(Arc<DnsError>),
    /// An error code.
    Rcode(ResponseCode),
    /// An answer without the AA bit (a cache, not the zone's server).
    NotAuthoritative,
    /// The value is not among the TXT records there.
    Absent {
        /// How many TXT records there are.
        found: usize,
    },
}

impl fmt::Display for NotServed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAnswer(e) => write!(f, "no answer: {e}"),
            Self::Query(e) => write!(f, "{}", crate::error_chain(e.as_ref())),
            Self::Rcode(code) => f.write_str(&rcode_mnemonic(*code)),
            Self::NotAuthoritative => f.write_str("answer is not authoritative"),
            Self::Absent { found } => write!(f, "value not among {found} TXT record(s)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::Record;

    fn answer(values: &[&str], authoritative: bool) -> Message {
        let mut msg = Message::query();
        msg.metadata.authoritative = authoritative;
        for v in values {
            // Long values may be split into several strings; they are joined.
            let (a, b) = v.split_at(v.len() / 2);
            msg.add_answer(Record::from_rdata(
                wire::name("_acme-challenge.x.test").expect("name"),
                60,
                RData::TXT(TXT::new(vec![a.into(), b.into()])),
            ));
        }
        msg
    }

    #[test]
    fn value_among_others_is_served() {
        let msg = answer(&["other", "wanted"], true);
        assert!(served(&msg, "_acme-challenge.x.test", "wanted").is_ok());
        let e = served(&msg, "_acme-challenge.x.test", "missing")
            .expect_err("absent")
            .to_string();
        assert!(e.contains("2 TXT"), "{e}");
    }

    #[test]
    fn cached_or_negative_answers_do_not_count() {
        let msg = answer(&["wanted"], false);
        assert!(served(&msg, "_acme-challenge.x.test", "wanted").is_err());
        let mut msg = answer(&[], true);
        msg.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(
            served(&msg, "_acme-challenge.x.test", "wanted").map_err(|e| e.to_string()),
            Err("NXDOMAIN".into())
        );
    }
}
