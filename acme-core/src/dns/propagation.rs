//! Waiting until every authoritative server of a zone serves a TXT value.
//! Each server is asked directly, with recursion off, so no cache can answer.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::wire::{self, rcode_mnemonic, text};
use super::zone::{Locator, Nameserver};
use super::{DnsError, TxtRecord};
use crate::inventory::PropagationConfig;

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
            servers = %servers.iter().map(label).collect::<Vec<_>>().join(", "),
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
    let mut pending: Vec<(&Nameserver, String)> =
        servers.iter().map(|s| (s, String::new())).collect();
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
            .filter_map(|((s, _), r)| r.err().map(|why| (s, why)))
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
                    .iter()
                    .map(|(s, why)| format!("{} ({why})", label(s)))
                    .collect(),
            });
        }
        tokio::time::sleep(backoff.min(left)).await;
        backoff = (backoff * 2).min(max_backoff(start.elapsed()));
    }
}

fn label(s: &Nameserver) -> String {
    format!("{} {}", s.name, s.addr)
}

/// `Ok` when `server` serves `value` at `fqdn`; else what it said instead.
async fn check(
    server: &Nameserver,
    fqdn: &str,
    value: &str,
    bound: Duration,
) -> Result<(), String> {
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
        DnsError::Unreachable { source, .. } => format!("no answer: {source}"),
        other => other.to_string(),
    })?;
    served(&msg, fqdn, value)
}

/// Whether an authoritative answer holds `value` at `fqdn`.
pub(super) fn served(msg: &Message, fqdn: &str, value: &str) -> Result<(), String> {
    match msg.metadata.response_code {
        ResponseCode::NoError => {}
        code => return Err(rcode_mnemonic(code)),
    }
    if !msg.metadata.authoritative {
        return Err("answer is not authoritative".into());
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
        Err(format!("value not among {} TXT record(s)", values.len()))
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
        assert_eq!(served(&msg, "_acme-challenge.x.test", "wanted"), Ok(()));
        let e = served(&msg, "_acme-challenge.x.test", "missing").expect_err("absent");
        assert!(e.contains("2 TXT"), "{e}");
    }

    #[test]
    fn cached_or_negative_answers_do_not_count() {
        let msg = answer(&["wanted"], false);
        assert!(served(&msg, "_acme-challenge.x.test", "wanted").is_err());
        let mut msg = answer(&[], true);
        msg.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(
            served(&msg, "_acme-challenge.x.test", "wanted"),
            Err("NXDOMAIN".into())
        );
    }
}
