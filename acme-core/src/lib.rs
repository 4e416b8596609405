//! # acme-core
//!
//! The certificate lifecycle for a fleet of edge nodes, as a library:
//!
//! - [`Inventory`]: one TOML file naming certificates, DNS solvers, nodes and groups.
//! - [`acme`]: ACME (RFC 8555) accounts and orders, DNS-01 only, through `instant-acme`.
//! - [`dns`]: DNS-01 solvers (RFC 2136 UPDATE with TSIG, exec hooks), CNAME
//!   following, and propagation checks against every authoritative server.
//! - [`Store`]: the local store of versions and `live/` links, written atomically.
//! - [`deploy`]: staging, atomic symlink swap, validation, reload, verification
//!   and rollback on nodes over SSH.
//! - [`inspect`]: X.509 facts, TLS probes, and the renewal policy.
//! - [`report`]: the fleet expiry report and its renderers.
//! - [`preflight`]: `certctl check`, every inventory item checked offline or online.
//! - [`fsread`]: every input file is read through it: regular files only,
//!   bounded by kind, never blocking on a FIFO or device.
//! - [`status`]: every certificate as the store and the inventory know it (`certctl list`).
//!
//! Data flows one way: inventory → plan → (acme, dns) → store → deploy → report.
//! The crate never installs a tracing subscriber; it logs with spans per
//! certificate, domain and node.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod deploy;
pub mod dns;
mod error;
pub mod fsread;
pub mod inspect;
pub mod inventory;
pub mod names;
pub mod preflight;
pub mod report;
pub mod secret;
pub mod status;
pub mod store;

pub use error::{chain as error_chain, Error};
pub use inventory::Inventory;
pub use names::{CertName, DomainName};
pub use preflight::Preflight;
pub use store::Store;

/// Installs aws-lc-rs as the process-wide rustls crypto provider if none is
/// installed yet. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
