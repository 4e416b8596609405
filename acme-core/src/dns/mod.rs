//! DNS-01 solvers, CNAME following and propagation checks.
//! (Interface placeholder on main; the implementation lands from the `dns` branch.)

use std::sync::Arc;

/// A TXT record presented for one DNS-01 challenge.
#[derive(Debug, Clone)]
pub struct TxtRecord {
    /// The certificate domain it is for.
    pub domain: crate::DomainName,
    /// Absolute name holding the TXT record after following CNAMEs.
    pub fqdn: String,
    /// The zone that contains `fqdn`.
    pub zone: String,
    /// The TXT value.
    pub value: String,
}

/// A way to publish DNS-01 TXT records.
#[async_trait::async_trait]
pub trait DnsSolver: Send + Sync + std::fmt::Debug {
    /// Adds the TXT record `value` at `domain`'s `_acme-challenge` name.
    async fn present(&self, domain: &crate::DomainName, value: &str)
        -> Result<TxtRecord, DnsError>;
    /// Waits until every authoritative nameserver serves the value.
    async fn wait_propagated(&self, record: &TxtRecord) -> Result<(), DnsError>;
    /// Removes exactly this value.
    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError>;
}

/// Builds the solver named `name` from its config.
pub fn solver(
    name: &str,
    _cfg: &crate::inventory::SolverConfig,
) -> Result<Arc<dyn DnsSolver>, DnsError> {
    Err(DnsError::Unavailable { name: name.into() })
}

/// A DNS failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// Placeholder.
    #[error("solver {name} unavailable")]
    Unavailable {
        /// Solver name.
        name: String,
    },
}
