//! # acme-core
//!
//! The certificate lifecycle for a fleet of edge nodes, as a library:
//!
//! - [`Inventory`]: one TOML file naming certificates, DNS solvers, nodes and
//!   groups; its schema is [`inventory`].
//! - [`acme`]: ACME (RFC 8555) accounts and orders, DNS-01 only, through
//!   `instant-acme`, and the renewal policy (RFC 9773 ARI, lifetime rules).
//! - [`dns`]: DNS-01 solvers (RFC 2136 UPDATE with TSIG, exec hooks), CNAME
//!   following, and propagation checks against every authoritative server.
//! - [`Store`]: versions and `live/` links, written atomically; the rest of
//!   its vocabulary is in [`store`].
//! - [`deploy`]: staging, atomic symlink swap, validation, reload,
//!   verification and rollback on nodes over SSH.
//! - [`inspect`]: X.509 facts and TLS probes.
//! - [`report`]: the fleet expiry report and its renderers.
//! - [`preflight`]: `certctl check`, every inventory item checked offline or
//!   online.
//! - At the root: the crate's [`Error`], names ([`CertName`], [`DomainName`]
//!   and their checks), secrets ([`Secret`]), the status of every certificate
//!   ([`CertStatus`]), bounded file reads ([`read_text`]) and [`rotate`], the
//!   path after a key compromise (issue, deploy, revoke the old versions).
//!
//! Data flows one way: inventory → plan → (acme, dns) → store → deploy → report.
//! The crate never installs a tracing subscriber; it logs with spans per
//! certificate, domain and node.
//!
//! The modules named above are namespaces, each re-exporting a curated list
//! from files of its own that stay private; the helpers below them are
//! private modules whose public items are re-exported here.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod deploy;
pub mod dns;
pub mod inspect;
pub mod inventory;
pub mod preflight;
pub mod report;
pub mod store;

mod error;
mod fsread;
mod names;
mod rotate;
mod secret;
mod status;

pub use error::{chain as error_chain, Error, ErrorKind};
pub use fsread::{read_file, read_text, FileKind, NotAFile, Refused};
pub use inventory::Inventory;
pub use names::{
    check_dns_name, check_host, check_label, check_remote_path, check_user, CertName, DnsNameError,
    DomainName, HostError, LabelError, NameError, RemotePathError, UserError,
};
pub use preflight::Preflight;
pub use rotate::{rotate, CertRotation, Exposed, Kept, NotRevoked, RotateOptions};
pub use secret::{
    Base64Flaw, EabKeyError, Secret, SecretError, SecretSource, SourceError, TsigSecretError,
};
pub use status::{CertStatus, Deployment};
pub use store::Store;

/// Quotes a string as one POSIX shell word (for the fuzz targets).
#[doc(hidden)]
pub use names::shell_quote;

/// Installs aws-lc-rs as the process-wide rustls crypto provider if none is
/// installed yet. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
