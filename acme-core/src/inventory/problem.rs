//! What is wrong with an inventory value: one variant per rule, each with the
//! values it judged and, where another check failed, that check's typed error.
//! `InventoryError::Invalid` adds where (`file:line:col`). A problem is a
//! whole message (the name checks' errors are part of it, not a source), so
//! `to_string()` of the inventory error says everything once.

use std::path::PathBuf;

use crate::names::{DnsNameError, HostError, LabelError, RemotePathError, UserError};
use crate::secret::SourceError;

fn store_key_hint(key: &str) -> &'static str {
    match key {
        "key_file" => {
            " (the data key that seals private keys; make one with `certctl store keygen FILE`)"
        }
        "endpoints" => {
            " (e.g. [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"http://10.0.0.3:2379\"])"
        }
        "path" => " (e.g. \"/var/lib/certctl\")",
        _ => "",
    }
}

/// The fix shared by every refused `store` value.
const STORE_FIX: &str = "expected a directory of certctl's own, e.g. \"/var/lib/certctl\"";

/// One rule an inventory broke, with the facts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Syntax, type or unknown key: what the TOML reader said.
    #[error("{}", syntax_message(.error))]
    Syntax {
        /// The reader's error (its position is the `Invalid` error's).
        error: toml::de::Error,
    },
    /// `store = ""` would be the inventory's own directory.
    #[error("store is empty; {STORE_FIX}")]
    StoreEmpty,
    /// `store` is the file system root.
    #[error("store `{}` is the file system root; {STORE_FIX}", .store.display())]
    StoreIsRoot {
        /// The value as written.
        store: PathBuf,
    },
    /// `store` resolves to the inventory's directory or to the inventory file.
    #[error(
        "store `{}` resolves to {}, the inventory's own {}; {STORE_FIX}",
        .store.display(),
        .resolved.display(),
        part(*.is_file)
    )]
    StoreIsInventory {
        /// The value as written.
        store: PathBuf,
        /// Where it resolves to.
        resolved: PathBuf,
        /// The inventory file itself (else its directory).
        is_file: bool,
    },
    /// A `[store]` key that belongs to the other backend.
    #[error("store: `{key}` is not a setting of a `type = \"{kind}\"` store; remove it")]
    StoreKeyNotFor {
        /// The key.
        key: &'static str,
        /// The backend.
        kind: &'static str,
    },
    /// A `[store]` key the backend needs is missing.
    #[error("store: a `type = \"{kind}\"` store needs `{key}`{}", store_key_hint(.key))]
    StoreKeyMissing {
        /// The key.
        key: &'static str,
        /// The backend.
        kind: &'static str,
    },
    /// A TLS setting with `http://` endpoints.
    #[error("store: `{key}` is set but the endpoints are `http://`; write them as `https://host:port` to reach etcd over TLS, or remove `{key}`")]
    StoreTlsWithHttp {
        /// The key.
        key: &'static str,
    },
    /// `https://` endpoints without `tls_ca`.
    #[error("store: `https://` endpoints need `tls_ca`, the PEM file of the CA that signs the etcd members' certificates")]
    StoreTlsCaMissing,
    /// One of `tls_cert` and `tls_key` without the other.
    #[error("store: `{set}` needs `{missing}` (the client certificate and its key go together, for a cluster with --client-cert-auth); add `{missing}` or remove `{set}`")]
    StoreTlsPair {
        /// The key that is set.
        set: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// Endpoints of both schemes.
    #[error("store: endpoints mix `http://` and `https://`; reach every member the same way")]
    StoreEndpointsMixed,
    /// An etcd endpoint that is not `http://host:port` or `https://host:port`.
    #[error("store: endpoint `{endpoint}` is not `http://host:port` or `https://host:port`")]
    StoreEndpoint {
        /// The value as written.
        endpoint: String,
    },
    /// An etcd prefix that is not `/…/`.
    #[error("store: prefix `{prefix}` must start and end with `/`, e.g. \"/certctl/\"")]
    StorePrefix {
        /// The value as written.
        prefix: String,
    },
    /// The etcd client key may be read by group or others.
    #[error("store: tls_key {} has mode {mode:o}; a private key must be private: chmod 600 {}", .file.display(), .file.display())]
    TlsKeyLoose {
        /// The file.
        file: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The data key file may be read by group or others.
    #[error("store: key_file {} has mode {mode:o}; the data key must be private: chmod 600 {}", .file.display(), .file.display())]
    KeyFileLoose {
        /// The file.
        file: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A lock lease TTL etcd cannot take.
    #[error("store: lease_ttl {ttl:?} must be whole seconds, at least 2s (e.g. \"10s\")")]
    LeaseTtl {
        /// The value.
        ttl: std::time::Duration,
    },
    /// An ssh file setting that ssh would read as an option.
    #[error(
        "{key} `{}` looks like an ssh option, not a file; give the file's path (e.g. `/root/.ssh/{}`)",
        .path.display(),
        example_file(.key)
    )]
    OptionLikeFile {
        /// `identity_file`, `known_hosts` or `ssh_config`.
        key: &'static str,
        /// The value as written.
        path: PathBuf,
    },
    /// `[account] directory` is not a URL nor a known CA's name.
    #[error(
        "directory `{directory}` is not a URL; expected an https:// URL, `letsencrypt` or `letsencrypt-staging`"
    )]
    DirectoryNotUrl {
        /// The value as written.
        directory: String,
    },
    /// An `[account] contact` that is not a `mailto:` URL.
    #[error("contact `{contact}` must be a mailto: URL, e.g. `mailto:ops@example.com`")]
    ContactNotMailto {
        /// The value as written.
        contact: String,
    },
    /// A secret's source (EAB key, TSIG secret) is not set up right.
    #[error("{0}")]
    Secret(SourceError),
    /// A TSIG key name that is not a DNS name.
    #[error("tsig_key `{key}`: {reason}")]
    TsigKeyName {
        /// The value as written.
        key: String,
        /// Why it is not a DNS name.
        reason: DnsNameError,
    },
    /// An exec solver setting that names no program.
    #[error("{key} must name a program")]
    NoProgram {
        /// `present` or `cleanup`.
        key: &'static str,
    },
    /// A count that must be at least 1.
    #[error("{key} must be at least 1")]
    Zero {
        /// `concurrency` or `max_sessions`.
        key: &'static str,
    },
    /// A critical threshold longer than the warning one.
    #[error("critical must not be longer than warning")]
    CriticalOverWarning,
    /// Two nodes or two certificates with one name.
    #[error("{kind} `{name}` is defined twice")]
    Duplicate {
        /// `node` or `certificate`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Two names that differ only in case (one directory on a
    /// case-insensitive file system, and to a human).
    #[error(
        "{kind} `{name}` differs from {kind} `{first}` only in case; give {kind}s names that differ in more than case"
    )]
    CaseDuplicate {
        /// `node` or `certificate`.
        kind: &'static str,
        /// This name.
        name: String,
        /// The name defined first.
        first: String,
    },
    /// An SSH node without an address.
    #[error("node `{node}` needs an `address` (host name or IP)")]
    NoAddress {
        /// The node.
        node: String,
    },
    /// A node address that is not a host name or IP address.
    #[error("address `{address}`: {reason}")]
    Address {
        /// The value as written.
        address: String,
        /// Why it is refused.
        reason: HostError,
    },
    /// A `base_dir` that is not a safe absolute path.
    #[error("base_dir `{}`: {reason}", .base_dir.display())]
    BaseDir {
        /// The value as written.
        base_dir: PathBuf,
        /// Why it is refused.
        reason: RemotePathError,
    },
    /// A user or group name that is refused.
    #[error("{key} `{value}`: {reason}")]
    User {
        /// `user`, `owner` or `group`.
        key: &'static str,
        /// The value as written.
        value: String,
        /// Why it is refused.
        reason: UserError,
    },
    /// A group name that is not a label.
    #[error("group `{group}`: {reason}")]
    GroupName {
        /// The value as written.
        group: String,
        /// Why it is refused.
        reason: LabelError,
    },
    /// A canary that is not a node.
    #[error("canary `{canary}` is not a node; known nodes: {}", list(.known))]
    UnknownCanary {
        /// The value as written.
        canary: String,
        /// The nodes there are.
        known: Vec<String>,
    },
    /// A certificate without domains.
    #[error("domains must list at least one name")]
    NoDomains,
    /// A domain listed twice in one certificate.
    #[error("domain `{domain}` is listed twice (names are compared without case)")]
    DomainTwice {
        /// The domain.
        domain: String,
    },
    /// A certificate's solver that is not defined.
    #[error(
        "solver `{solver}` is not defined; known solvers: {} (add a [solvers.{solver}] table)",
        list(.known)
    )]
    UnknownSolver {
        /// The value as written.
        solver: String,
        /// The solvers there are.
        known: Vec<String>,
    },
    /// A persist solver's `fallback` that is itself a persist solver.
    #[error("solver `{solver}` is a persist solver; a fallback must be a dns-01 solver (`rfc2136` or `exec`)")]
    PersistFallbackNotDns01 {
        /// The value as written.
        solver: String,
    },
    /// A certificate's group that no node is in.
    #[error("group `{group}` has no node; groups used by nodes: {}", list(.known))]
    GroupWithoutNode {
        /// The value as written.
        group: String,
        /// The groups nodes are in.
        known: Vec<String>,
    },
}

fn part(is_file: bool) -> &'static str {
    if is_file {
        "file"
    } else {
        "directory"
    }
}

fn example_file(key: &str) -> &str {
    if key == "identity_file" {
        "id_ed25519"
    } else {
        key
    }
}

fn syntax_message(e: &toml::de::Error) -> String {
    e.message().trim_end().replace('\n', "; ")
}

/// `a`, `b`, or `(none)`.
fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
