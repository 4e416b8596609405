//! X.509 facts, TLS probes and the renewal policy.

/// An inspection failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {}
