//! ACME (RFC 8555): account, orders and the DNS-01 flow.

/// An ACME failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {}
