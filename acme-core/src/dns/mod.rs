//! DNS-01 solvers, CNAME following and propagation checks.

/// A DNS failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {}
