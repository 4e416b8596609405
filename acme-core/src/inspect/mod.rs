//! X.509 facts, TLS probes and the renewal policy.

pub mod probe;

pub use probe::{Prober, Served, Trust};

/// An inspection failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {}
