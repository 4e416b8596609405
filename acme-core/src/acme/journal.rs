//! The TXT journal: the DNS-01 records an order may have left in DNS,
//! written before they are created, so a run killed before its cleanup has
//! them removed by the next run (`state/<name>/txt-journal.json`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dns::DnsSolver;
use crate::store::{Store, StoreError};
use crate::DomainName;

/// State record listing TXT records that may exist in DNS.
const TXT_JOURNAL: &str = "txt-journal";

/// A TXT record an order created or was about to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    domain: String,
    value: String,
}

/// Removes TXT records left by a run that died before its cleanup: each is
/// presented again (a no-op if it exists) to learn where it lives, then removed.
pub(super) async fn sweep(
    store: &Store,
    name: &str,
    solver: &Arc<dyn DnsSolver>,
) -> Result<(), crate::Error> {
    let entries: Vec<JournalEntry> = store.read_state(name, TXT_JOURNAL)?.unwrap_or_default();
    if entries.is_empty() {
        return Ok(());
    }
    tracing::info!(
        certificate = name,
        records = entries.len(),
        "removing TXT records left by an interrupted run"
    );
    for e in &entries {
        let Ok(domain) = DomainName::new(&e.domain) else {
            continue;
        };
        let rec = solver.present(&domain, &e.value).await?;
        solver.cleanup(&rec).await?;
    }
    clear(store, name)?;
    Ok(())
}

/// Records that the TXT records `pending` (domain, value) may exist for `name`.
pub(super) fn record(
    store: &Store,
    name: &str,
    pending: &[(DomainName, String)],
) -> Result<(), StoreError> {
    let entries: Vec<JournalEntry> = pending
        .iter()
        .map(|(d, v)| JournalEntry {
            domain: d.as_str().to_string(),
            value: v.clone(),
        })
        .collect();
    store.write_state(name, TXT_JOURNAL, &entries)
}

/// Records that no TXT record of `name` is left in DNS.
pub(super) fn clear(store: &Store, name: &str) -> Result<(), StoreError> {
    store.write_state(name, TXT_JOURNAL, &Vec::<JournalEntry>::new())
}
