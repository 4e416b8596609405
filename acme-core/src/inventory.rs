//! The inventory: one TOML file that says which certificates exist, how their
//! DNS-01 challenges are solved, which nodes serve them, and how they are watched.
//!
//! Parsing is pure (no I/O besides reading the file and, on request, secrets):
//! [`Inventory::from_str`] checks syntax, unknown keys, and every cross-reference,
//! and each error carries `file:line:col`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::names::{self, CertName, DomainName};
use crate::secret::SecretSource;

mod problem;
pub use problem::Problem;

/// The default inventory path, overridden by `--config` or `CERTCTL_CONFIG`.
pub const DEFAULT_PATH: &str = "/etc/certctl/certctl.toml";

/// Let's Encrypt's production directory, selected with `directory = "letsencrypt"`.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory, selected with `directory = "letsencrypt-staging"`.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// A validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Where it was read from (for messages and relative paths).
    pub path: PathBuf,
    /// The store: a directory (`store = "/path"`, the default) or a
    /// `[store]` table (`type = "dir"` or `type = "etcd"`).
    pub store: crate::store::StoreConfig,
    /// The ACME account and CA.
    pub account: AccountConfig,
    /// Renewal defaults.
    pub renewal: RenewalConfig,
    /// Expiry report settings.
    pub report: ReportConfig,
    /// Rollout settings.
    pub deploy: DeployConfig,
    /// Named DNS-01 solvers.
    pub solvers: BTreeMap<String, SolverConfig>,
    /// The certificates, in file order.
    pub certificates: Vec<CertificateConfig>,
    /// The nodes, in file order.
    pub nodes: Vec<NodeConfig>,
}

/// The ACME account and the CA it lives at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Directory URL, or the presets `letsencrypt` / `letsencrypt-staging`.
    #[serde(deserialize_with = "de_directory")]
    pub directory: String,
    /// Contact URLs (`mailto:`), sent to the CA and updated when they change.
    #[serde(default)]
    pub contact: Vec<String>,
    /// Extra trust anchors (PEM) for the CA's HTTPS endpoint, for private or test CAs.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// External account binding, for CAs that require it (RFC 8555 §7.3.4).
    #[serde(default)]
    pub eab: Option<EabConfig>,
    /// Certificate profile to request, where the CA offers profiles.
    #[serde(default)]
    pub profile: Option<String>,
    /// A second CA used when the first one fails (issuer fallback).
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
}

/// A second ACME directory tried when the first fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// Directory URL or preset, as in [`AccountConfig::directory`].
    #[serde(deserialize_with = "de_directory")]
    pub directory: String,
    /// Extra trust anchors for this CA's HTTPS endpoint.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// External account binding for this CA.
    #[serde(default)]
    pub eab: Option<EabConfig>,
}

/// External account binding credentials (RFC 8555 §7.3.4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EabConfig {
    /// Key identifier given by the CA.
    pub kid: String,
    /// File holding the base64url HMAC key.
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
    /// Environment variable holding the base64url HMAC key.
    #[serde(default)]
    pub hmac_key_env: Option<String>,
}

impl EabConfig {
    /// Where the HMAC key comes from.
    pub fn hmac_key(&self) -> SecretSource {
        SecretSource::new(
            "hmac_key_file",
            self.hmac_key_file.clone(),
            "hmac_key_env",
            self.hmac_key_env.clone(),
        )
    }
}

/// Renewal defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalConfig {
    /// How many orders run at once.
    #[serde(default = "default_order_concurrency")]
    pub concurrency: usize,
    /// Renew this long before expiry instead of the lifetime rule (per-certificate override exists).
    #[serde(default, with = "opt_duration")]
    pub renew_before: Option<Duration>,
    /// Use the CA's ARI window (RFC 9773) when it offers one.
    #[serde(default = "yes")]
    pub ari: bool,
    /// Bound on waiting for the CA to validate and issue one order.
    #[serde(default = "default_order_timeout", with = "duration")]
    pub order_timeout: Duration,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        Self {
            concurrency: default_order_concurrency(),
            renew_before: None,
            ari: true,
            order_timeout: default_order_timeout(),
        }
    }
}

/// Expiry report settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Time left below which a certificate is a warning.
    #[serde(default = "default_warning", with = "duration")]
    pub warning: Duration,
    /// Time left below which a certificate is critical.
    #[serde(default = "default_critical", with = "duration")]
    pub critical: Duration,
    /// Extra trust anchors (PEM) for served chains, besides the system roots.
    #[serde(default)]
    pub trust: Vec<PathBuf>,
    /// Bound on one TLS probe (connect and handshake).
    #[serde(default = "default_probe_timeout", with = "duration")]
    pub probe_timeout: Duration,
    /// How many TLS probes run at once (the report, and a rollout's verification).
    #[serde(default = "default_probe_concurrency")]
    pub concurrency: usize,
    /// Command run on warning or critical, the report's JSON on its stdin.
    #[serde(default)]
    pub notify: Option<Vec<String>>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            warning: default_warning(),
            critical: default_critical(),
            trust: Vec::new(),
            probe_timeout: default_probe_timeout(),
            concurrency: default_probe_concurrency(),
            notify: None,
        }
    }
}

/// Rollout settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// How many nodes are worked on at once.
    #[serde(default = "default_node_concurrency")]
    pub concurrency: usize,
    /// Nodes deployed first, alone; empty means the first node of the plan.
    #[serde(default)]
    pub canary: Vec<String>,
    /// Stop the rollout once more nodes than this have failed.
    #[serde(default)]
    pub max_failures: Option<usize>,
    /// Versions kept on each node (the live and the previous one are always kept).
    #[serde(default = "default_keep_versions")]
    pub keep_versions: usize,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            concurrency: default_node_concurrency(),
            canary: Vec::new(),
            max_failures: None,
            keep_versions: default_keep_versions(),
        }
    }
}

/// A named DNS-01 solver.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SolverConfig {
    /// RFC 2136 dynamic UPDATE signed with TSIG.
    Rfc2136(Rfc2136Config),
    /// Commands run to present and clean up the TXT record.
    Exec(ExecConfig),
    /// dns-persist-01 (draft-ietf-acme-dns-persist): one persistent
    /// `_validation-persist` TXT record, no DNS write at issuance.
    Persist(PersistConfig),
}

/// dns-persist-01 settings: the certificate that names this solver wants
/// the persistent record; `fallback` (a dns-01 solver) is used when the CA
/// does not offer the challenge or the record is not right.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistConfig {
    /// `wildcard` lets the record cover `*.<domain>` and subdomains (draft §4, §5).
    #[serde(default)]
    pub policy: Option<PersistPolicy>,
    /// Until when the record may be used for new validations (RFC 3339; the
    /// record carries it as `persistUntil=<unix seconds>`).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub persist_until: Option<time::OffsetDateTime>,
    /// A dns-01 solver (`rfc2136` or `exec`) in `[solvers]`: used when the CA
    /// does not offer dns-persist-01 or the record is missing or wrong, and by
    /// `certctl persist-record --publish`.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Resolver used to find the zone and its nameservers, `host[:port]`;
    /// the system resolver when absent.
    #[serde(default, deserialize_with = "de_opt_server")]
    pub resolver: Option<Server>,
}

/// The `policy` of a persistent record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistPolicy {
    /// `policy=wildcard`: the record also covers wildcards and subdomains.
    Wildcard,
}

impl SolverConfig {
    /// Propagation settings shared by all solver kinds.
    pub fn propagation(&self) -> PropagationConfig {
        macro_rules! prop {
            ($c:expr) => {
                PropagationConfig {
                    propagation_timeout: $c.propagation_timeout,
                    propagation_delay: $c.propagation_delay,
                    resolver: $c.resolver.clone(),
                    skip_propagation_check: $c.skip_propagation_check,
                }
            };
        }
        match self {
            SolverConfig::Rfc2136(c) => prop!(c),
            SolverConfig::Exec(c) => prop!(c),
            SolverConfig::Persist(c) => PropagationConfig {
                resolver: c.resolver.clone(),
                ..PropagationConfig::default()
            },
        }
    }
}

/// RFC 2136 + TSIG solver settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The zone's primary server, `host[:port]` (port 53 by default).
    #[serde(deserialize_with = "de_server")]
    pub server: Server,
    /// TSIG key name.
    pub tsig_key: String,
    /// TSIG algorithm.
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// File holding the TSIG secret (base64).
    #[serde(default)]
    pub tsig_secret_file: Option<PathBuf>,
    /// Environment variable holding the TSIG secret (base64).
    #[serde(default)]
    pub tsig_secret_env: Option<String>,
    /// TTL of the TXT records.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Give up waiting for all authoritative servers after this long.
    #[serde(default = "default_propagation_timeout", with = "duration")]
    pub propagation_timeout: Duration,
    /// A fixed wait after the record is visible everywhere (none by default).
    #[serde(default, with = "opt_duration")]
    pub propagation_delay: Option<Duration>,
    /// Resolver used to find zones, CNAMEs and nameservers, `host[:port]`;
    /// the system resolver when absent.
    #[serde(default, deserialize_with = "de_opt_server")]
    pub resolver: Option<Server>,
    /// Skip the propagation check (only for solvers whose API already guarantees it).
    #[serde(default)]
    pub skip_propagation_check: bool,
}

impl Rfc2136Config {
    /// Where the TSIG secret comes from.
    pub fn tsig_secret(&self) -> SecretSource {
        SecretSource::new(
            "tsig_secret_file",
            self.tsig_secret_file.clone(),
            "tsig_secret_env",
            self.tsig_secret_env.clone(),
        )
    }
}

/// Exec solver settings. The commands receive `CERTCTL_ACTION`, `CERTCTL_DOMAIN`,
/// `CERTCTL_FQDN`, `CERTCTL_ZONE`, `CERTCTL_TXT_VALUE` and `CERTCTL_TTL`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// Command (program and arguments, no shell) that creates the TXT record.
    pub present: Vec<String>,
    /// Command that removes it.
    pub cleanup: Vec<String>,
    /// Bound on each command.
    #[serde(default = "default_exec_timeout", with = "duration")]
    pub timeout: Duration,
    /// TTL passed to the commands.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Give up waiting for all authoritative servers after this long.
    #[serde(default = "default_propagation_timeout", with = "duration")]
    pub propagation_timeout: Duration,
    /// A fixed wait after the record is visible everywhere (none by default).
    #[serde(default, with = "opt_duration")]
    pub propagation_delay: Option<Duration>,
    /// Resolver used to find zones, CNAMEs and nameservers, `host[:port]`;
    /// the system resolver when absent.
    #[serde(default, deserialize_with = "de_opt_server")]
    pub resolver: Option<Server>,
    /// Skip the propagation check (only for solvers whose API already guarantees it).
    #[serde(default)]
    pub skip_propagation_check: bool,
}

/// How propagation is checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropagationConfig {
    /// Give up waiting for all authoritative servers after this long.
    #[serde(default = "default_propagation_timeout", with = "duration")]
    pub propagation_timeout: Duration,
    /// A fixed wait after the record is visible everywhere (none by default).
    #[serde(default, with = "opt_duration")]
    pub propagation_delay: Option<Duration>,
    /// Resolver used to find zones, CNAMEs and nameservers, `host[:port]`;
    /// the system resolver when absent.
    #[serde(default, deserialize_with = "de_opt_server")]
    pub resolver: Option<Server>,
    /// Skip the propagation check (only for solvers whose API already guarantees it).
    #[serde(default)]
    pub skip_propagation_check: bool,
}

impl Default for PropagationConfig {
    fn default() -> Self {
        Self {
            propagation_timeout: default_propagation_timeout(),
            propagation_delay: None,
            resolver: None,
            skip_propagation_check: false,
        }
    }
}

/// A DNS server address: a host name or IP, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Host name or IP address.
    pub host: String,
    /// UDP/TCP port.
    pub port: u16,
}

impl Server {
    /// The socket address when `host` is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// TSIG algorithms (RFC 8945).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    /// HMAC-SHA256, the default.
    #[default]
    HmacSha256,
    /// HMAC-SHA384.
    HmacSha384,
    /// HMAC-SHA512.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as the inventory and `tsig-keygen` write it.
    pub fn name(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// A certificate to obtain and keep renewed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// Short name: the store directory and the node's `live/<name>`.
    pub name: CertName,
    /// The names it covers; the first is the subject. Wildcards allowed.
    pub domains: Vec<DomainName>,
    /// Key algorithm and size.
    #[serde(default)]
    pub key: KeyType,
    /// Name of the solver in `[solvers]`.
    pub solver: String,
    /// Keep the private key across renewals (a new key per issuance by default).
    #[serde(default)]
    pub reuse_key: bool,
    /// Renew this long before expiry, overriding the lifetime rule.
    #[serde(default, with = "opt_duration")]
    pub renew_before: Option<Duration>,
    /// Certificate profile, overriding the account's.
    #[serde(default)]
    pub profile: Option<String>,
    /// Node groups that serve it.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Report warning threshold override.
    #[serde(default, with = "opt_duration")]
    pub warning: Option<Duration>,
    /// Report critical threshold override.
    #[serde(default, with = "opt_duration")]
    pub critical: Option<Duration>,
    /// The dns-persist-01 settings of its solver, when that is `type =
    /// "persist"` (filled in at load; not a key of its own).
    #[serde(skip)]
    pub persist: Option<PersistConfig>,
}

/// Private key algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (default).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// RSA 2048 bits.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA 3072 bits.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA 4096 bits.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        })
    }
}

/// An edge node that serves certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Short unique name.
    #[serde(deserialize_with = "names::de_node_name")]
    pub name: CertName,
    /// How certificates reach it.
    #[serde(default)]
    pub transport: TransportKind,
    /// SSH host name or IP address.
    #[serde(default)]
    pub address: String,
    /// SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// SSH user.
    #[serde(default = "default_user")]
    pub user: String,
    /// SSH private key file.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file checked strictly (the user's default when absent).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// An ssh_config file read instead of `~/.ssh/config` and
    /// `/etc/ssh/ssh_config` (`ssh -F`), e.g. for `ProxyJump` or `KexAlgorithms`.
    #[serde(default)]
    pub ssh_config: Option<PathBuf>,
    /// Groups it belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Remote base directory holding `archive/` and `live/`.
    #[serde(default = "default_base_dir")]
    pub base_dir: PathBuf,
    /// Command that checks the server configuration.
    #[serde(default = "default_validate")]
    pub validate: String,
    /// Command that makes the server load the new material.
    #[serde(default = "default_reload")]
    pub reload: String,
    /// TLS address probed after reload, `host:port`; the node's address on 443 by default.
    #[serde(default)]
    pub probe: Option<String>,
    /// Run remote commands through `sudo -n`.
    #[serde(default)]
    pub sudo: bool,
    /// Owner of the uploaded files (`chown`), if set.
    #[serde(default)]
    pub owner: Option<String>,
    /// Group of the uploaded files (`chgrp`), if set.
    #[serde(default)]
    pub group: Option<String>,
    /// Bound on the SSH connection set-up.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Bound on each remote command.
    #[serde(default = "default_command_timeout", with = "duration")]
    pub command_timeout: Duration,
    /// At most this many SSH sessions at once on this node (below sshd's MaxSessions).
    #[serde(default = "default_node_sessions")]
    pub max_sessions: usize,
}

impl NodeConfig {
    /// The address probed after deployment.
    pub fn probe_address(&self) -> String {
        match &self.probe {
            Some(p) => p.clone(),
            None if self.address.contains(':') => format!("[{}]:443", self.address),
            None => format!("{}:443", self.address),
        }
    }
}

/// How a node is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Over SSH (default).
    #[default]
    Ssh,
    /// The controller itself, no SSH.
    Local,
}

/// An inventory error, with where it is and what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read inventory {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Syntax, type, unknown key, or a value that fails validation.
    #[error("{}:{line}:{column}: {problem}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what was expected (all of the message: not a
        /// source, so it is printed once).
        problem: Box<Problem>,
    },
    /// A secret could not be read from its file or environment variable.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

/// The file as deserialized, before cross-checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default = "default_raw_store")]
    store: RawStore,
    account: AccountConfig,
    #[serde(default)]
    renewal: RenewalConfig,
    #[serde(default)]
    report: ReportConfig,
    #[serde(default)]
    deploy: DeployConfig,
    #[serde(default)]
    solvers: BTreeMap<String, SolverConfig>,
    #[serde(default)]
    certificate: Vec<CertificateConfig>,
    #[serde(default)]
    node: Vec<NodeConfig>,
}

impl Inventory {
    /// Reads and validates the inventory at `path`. Touches no network.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text = crate::fsread::read_text(path, crate::fsread::FileKind::Inventory).map_err(
            |source| InventoryError::Read {
                path: path.to_path_buf(),
                source,
            },
        )?;
        Self::from_str(&text, path)
    }

    /// Parses and validates inventory text; `path` is used for messages and to
    /// resolve relative paths (against the file's directory).
    #[allow(clippy::should_implement_trait)] // it needs the path too
    pub fn from_str(text: &str, path: &Path) -> Result<Self, InventoryError> {
        let raw: RawInventory = toml::from_str(text).map_err(|error| {
            let offset = error.span().map(|s| s.start).unwrap_or(0);
            invalid_at(path, text, offset, Problem::Syntax { error })
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let store = store_config(raw.store, base, path).map_err(|(key, problem)| {
            let at = match key {
                Some(k) => locate(text, &[Key::Name("store"), Key::Name(k)]),
                None => locate(text, &[Key::Name("store")]),
            };
            invalid_at(path, text, at, problem)
        })?;
        let mut inv = Inventory {
            path: path.to_path_buf(),
            store,
            account: raw.account,
            renewal: raw.renewal,
            report: raw.report,
            deploy: raw.deploy,
            solvers: raw.solvers,
            certificates: raw.certificate,
            nodes: raw.node,
        };
        inv.refuse_option_like_files()
            .map_err(|(loc, problem)| invalid_at(path, text, locate(text, &loc), problem))?;
        inv.resolve_paths(base);
        inv.validate()
            .map_err(|(loc, problem)| invalid_at(path, text, locate(text, &loc), problem))?;
        for i in 0..inv.certificates.len() {
            let persist = inv.persist_for(&inv.certificates[i]).cloned();
            inv.certificates[i].persist = persist;
        }
        Ok(inv)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| *p = resolve(base, p);
        if let Some(p) = self.account.ca_bundle.as_mut() {
            fix(p)
        }
        if let Some(fb) = self.account.fallback.as_mut() {
            if let Some(p) = fb.ca_bundle.as_mut() {
                fix(p)
            }
            if let Some(p) = fb.eab.as_mut().and_then(|e| e.hmac_key_file.as_mut()) {
                fix(p)
            }
        }
        if let Some(p) = self
            .account
            .eab
            .as_mut()
            .and_then(|e| e.hmac_key_file.as_mut())
        {
            fix(p)
        }
        self.report.trust.iter_mut().for_each(fix);
        for s in self.solvers.values_mut() {
            if let SolverConfig::Rfc2136(r) = s {
                if let Some(p) = r.tsig_secret_file.as_mut() {
                    fix(p)
                }
            }
        }
        for n in &mut self.nodes {
            if let Some(p) = n.identity_file.as_mut() {
                fix(p)
            }
            if let Some(p) = n.known_hosts.as_mut() {
                fix(p)
            }
            if let Some(p) = n.ssh_config.as_mut() {
                fix(p)
            }
        }
    }

    /// Refuses ssh file settings that read like an option (`-oProxyCommand=...`),
    /// before relative paths are resolved.
    fn refuse_option_like_files(&self) -> Result<(), (Vec<Key>, Problem)> {
        for (i, n) in self.nodes.iter().enumerate() {
            for (k, p) in [
                ("identity_file", &n.identity_file),
                ("known_hosts", &n.known_hosts),
                ("ssh_config", &n.ssh_config),
            ] {
                let Some(p) = p else { continue };
                if looks_like_option(p) {
                    return Err((
                        vec![Key::Name("node"), Key::Idx(i), Key::Name(k)],
                        Problem::OptionLikeFile {
                            key: k,
                            path: p.clone(),
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// Cross-checks; an error is a key path into the document and a message.
    fn validate(&self) -> Result<(), (Vec<Key>, Problem)> {
        use Key::{Idx, Name};
        let a = &self.account;
        if !(a.directory.starts_with("https://") || a.directory.starts_with("http://")) {
            return Err((
                vec![Name("account"), Name("directory")],
                Problem::DirectoryNotUrl {
                    directory: a.directory.clone(),
                },
            ));
        }
        for (i, c) in a.contact.iter().enumerate() {
            if !c.starts_with("mailto:") || c.len() <= "mailto:".len() {
                return Err((
                    vec![Name("account"), Name("contact"), Idx(i)],
                    Problem::ContactNotMailto { contact: c.clone() },
                ));
            }
        }
        if let Some(eab) = &a.eab {
            eab.hmac_key()
                .check()
                .map_err(|e| (vec![Name("account"), Name("eab")], Problem::Secret(e)))?;
        }
        for (name, s) in &self.solvers {
            let at = |k: &'static str| vec![Name("solvers"), Key::Owned(name.clone()), Name(k)];
            match s {
                SolverConfig::Rfc2136(r) => {
                    r.tsig_secret()
                        .check()
                        .map_err(|e| (at("tsig_key"), Problem::Secret(e)))?;
                    names::check_dns_name(&r.tsig_key).map_err(|source| {
                        (
                            at("tsig_key"),
                            Problem::TsigKeyName {
                                key: r.tsig_key.clone(),
                                reason: source,
                            },
                        )
                    })?;
                }
                SolverConfig::Exec(e) => {
                    if e.present.is_empty() {
                        return Err((at("present"), Problem::NoProgram { key: "present" }));
                    }
                    if e.cleanup.is_empty() {
                        return Err((at("cleanup"), Problem::NoProgram { key: "cleanup" }));
                    }
                }
                SolverConfig::Persist(p) => {
                    if let Some(fb) = &p.fallback {
                        match self.solvers.get(fb) {
                            Some(SolverConfig::Rfc2136(_) | SolverConfig::Exec(_)) => {}
                            Some(SolverConfig::Persist(_)) => {
                                return Err((
                                    at("fallback"),
                                    Problem::PersistFallbackNotDns01 { solver: fb.clone() },
                                ))
                            }
                            None => {
                                let known: BTreeSet<&str> =
                                    self.solvers.keys().map(String::as_str).collect();
                                return Err((
                                    at("fallback"),
                                    Problem::UnknownSolver {
                                        solver: fb.clone(),
                                        known: list(&known),
                                    },
                                ));
                            }
                        }
                    }
                }
            }
        }
        if self.renewal.concurrency == 0 {
            return Err((
                vec![Name("renewal"), Name("concurrency")],
                Problem::Zero { key: "concurrency" },
            ));
        }
        if self.deploy.concurrency == 0 {
            return Err((
                vec![Name("deploy"), Name("concurrency")],
                Problem::Zero { key: "concurrency" },
            ));
        }
        if self.report.critical > self.report.warning {
            return Err((
                vec![Name("report"), Name("critical")],
                Problem::CriticalOverWarning,
            ));
        }

        let mut node_names = BTreeSet::new();
        // Lower-cased name → the first node with it (one lookup per node: linear).
        let mut node_folded: std::collections::HashMap<String, &NodeConfig> =
            std::collections::HashMap::new();
        let mut groups = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let at = |k: &'static str| vec![Name("node"), Idx(i), Name(k)];
            if !node_names.insert(n.name.as_str()) {
                return Err((
                    at("name"),
                    Problem::Duplicate {
                        kind: "node",
                        name: n.name.to_string(),
                    },
                ));
            }
            if let Some(other) = node_folded
                .get(&n.name.as_str().to_ascii_lowercase())
                .copied()
                .or_else(|| {
                    node_folded.insert(n.name.as_str().to_ascii_lowercase(), n);
                    None
                })
            {
                return Err((
                    at("name"),
                    Problem::CaseDuplicate {
                        kind: "node",
                        name: n.name.to_string(),
                        first: other.name.to_string(),
                    },
                ));
            }
            if n.transport == TransportKind::Ssh && n.address.is_empty() {
                return Err((
                    vec![Name("node"), Idx(i)],
                    Problem::NoAddress {
                        node: n.name.to_string(),
                    },
                ));
            }
            if !n.address.is_empty() {
                names::check_host(&n.address).map_err(|source| {
                    (
                        at("address"),
                        Problem::Address {
                            address: n.address.clone(),
                            reason: source,
                        },
                    )
                })?;
            }
            names::check_remote_path(&n.base_dir).map_err(|source| {
                (
                    at("base_dir"),
                    Problem::BaseDir {
                        base_dir: n.base_dir.clone(),
                        reason: source,
                    },
                )
            })?;
            for (k, v) in [
                ("user", Some(&n.user)),
                ("owner", n.owner.as_ref()),
                ("group", n.group.as_ref()),
            ] {
                if let Some(v) = v {
                    names::check_user(v).map_err(|source| {
                        (
                            at(k),
                            Problem::User {
                                key: k,
                                value: v.clone(),
                                reason: source,
                            },
                        )
                    })?;
                }
            }
            if n.max_sessions == 0 {
                return Err((
                    at("max_sessions"),
                    Problem::Zero {
                        key: "max_sessions",
                    },
                ));
            }
            for (j, g) in n.groups.iter().enumerate() {
                names::check_label(g).map_err(|source| {
                    (
                        vec![Name("node"), Idx(i), Name("groups"), Idx(j)],
                        Problem::GroupName {
                            group: g.clone(),
                            reason: source,
                        },
                    )
                })?;
                groups.insert(g.as_str());
            }
        }
        for (j, c) in self.deploy.canary.iter().enumerate() {
            if !node_names.contains(c.as_str()) {
                return Err((
                    vec![Name("deploy"), Name("canary"), Idx(j)],
                    Problem::UnknownCanary {
                        canary: c.clone(),
                        known: list(&node_names),
                    },
                ));
            }
        }

        let mut cert_names = BTreeSet::new();
        // Lower-cased name → the first certificate with it (linear, not a scan per certificate).
        let mut cert_folded: std::collections::HashMap<String, &CertificateConfig> =
            std::collections::HashMap::new();
        for (i, c) in self.certificates.iter().enumerate() {
            let at = |k: &'static str| vec![Name("certificate"), Idx(i), Name(k)];
            if !cert_names.insert(c.name.as_str()) {
                return Err((
                    at("name"),
                    Problem::Duplicate {
                        kind: "certificate",
                        name: c.name.to_string(),
                    },
                ));
            }
            if let Some(other) = cert_folded
                .get(&c.name.as_str().to_ascii_lowercase())
                .copied()
                .or_else(|| {
                    cert_folded.insert(c.name.as_str().to_ascii_lowercase(), c);
                    None
                })
            {
                // On a case-insensitive file system (or to a human) they are one directory.
                return Err((
                    at("name"),
                    Problem::CaseDuplicate {
                        kind: "certificate",
                        name: c.name.to_string(),
                        first: other.name.to_string(),
                    },
                ));
            }
            if c.domains.is_empty() {
                return Err((at("domains"), Problem::NoDomains));
            }
            let mut seen = BTreeSet::new();
            for (j, d) in c.domains.iter().enumerate() {
                if !seen.insert(d.as_str()) {
                    return Err((
                        vec![Name("certificate"), Idx(i), Name("domains"), Idx(j)],
                        Problem::DomainTwice {
                            domain: d.to_string(),
                        },
                    ));
                }
            }
            if !self.solvers.contains_key(&c.solver) {
                let known: BTreeSet<&str> = self.solvers.keys().map(String::as_str).collect();
                return Err((
                    at("solver"),
                    Problem::UnknownSolver {
                        solver: c.solver.clone(),
                        known: list(&known),
                    },
                ));
            }
            for (j, g) in c.groups.iter().enumerate() {
                if !groups.contains(g.as_str()) {
                    return Err((
                        vec![Name("certificate"), Idx(i), Name("groups"), Idx(j)],
                        Problem::GroupWithoutNode {
                            group: g.clone(),
                            known: list(&groups),
                        },
                    ));
                }
            }
            if let (Some(w), Some(cr)) = (c.warning, c.critical) {
                if cr > w {
                    return Err((at("critical"), Problem::CriticalOverWarning));
                }
            }
        }
        Ok(())
    }

    /// The certificate called `name`.
    pub fn certificate(&self, name: &str) -> Option<&CertificateConfig> {
        self.certificates.iter().find(|c| c.name.as_str() == name)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// The nodes that should serve `cert`, in file order.
    pub fn nodes_for<'a>(
        &'a self,
        cert: &'a CertificateConfig,
    ) -> impl Iterator<Item = &'a NodeConfig> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.groups.iter().any(|g| cert.groups.contains(g)))
    }

    /// The dns-persist-01 settings of `cert`, when its solver is `type = "persist"`.
    pub fn persist_for(&self, cert: &CertificateConfig) -> Option<&PersistConfig> {
        match self.solvers.get(&cert.solver) {
            Some(SolverConfig::Persist(p)) => Some(p),
            _ => None,
        }
    }

    /// Warning and critical thresholds for `cert`.
    pub fn thresholds(&self, cert: &CertificateConfig) -> (Duration, Duration) {
        (
            cert.warning.unwrap_or(self.report.warning),
            cert.critical.unwrap_or(self.report.critical),
        )
    }
}

/// A file given to ssh that starts with `-` (or whose name does) could be
/// read as an option.
fn looks_like_option(p: &Path) -> bool {
    p.to_string_lossy().starts_with('-')
        || p.file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with('-'))
}

fn list(set: &BTreeSet<&str>) -> Vec<String> {
    set.iter().map(|s| s.to_string()).collect()
}

/// Refuses a `store` value that cannot name a store of its own: empty (it
/// would resolve to the inventory's directory), the file system root, or a
/// path that resolves to the inventory's directory or to the inventory file.
/// What is on disk there is judged when the store is opened.
fn check_store_path(raw: &Path, base: &Path, inventory: &Path) -> Result<(), Problem> {
    if raw.as_os_str().is_empty() {
        return Err(Problem::StoreEmpty);
    }
    let resolved = crate::store::lexically_normal(&resolve(base, raw));
    if resolved == Path::new("/") {
        return Err(Problem::StoreIsRoot {
            store: raw.to_path_buf(),
        });
    }
    let inv_dir = crate::store::lexically_normal(base);
    if resolved == inv_dir || resolved == crate::store::lexically_normal(inventory) {
        return Err(Problem::StoreIsInventory {
            store: raw.to_path_buf(),
            is_file: resolved != inv_dir,
            resolved,
        });
    }
    Ok(())
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A step of a key path into the TOML document.
#[derive(Debug, Clone)]
enum Key {
    Name(&'static str),
    Owned(String),
    Idx(usize),
}

/// Byte offset of the value at `path`, or of the deepest existing parent.
fn locate(text: &str, path: &[Key]) -> usize {
    use toml::de::{DeTable, DeValue};
    let Ok(root) = DeTable::parse(text) else {
        return 0;
    };
    let mut offset = 0;
    let mut table = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for key in path {
        let next = match (key, table, value) {
            (Key::Name(k), Some(t), _) => t.get(*k),
            (Key::Owned(k), Some(t), _) => t.get(k.as_str()),
            (Key::Name(k), None, Some(v)) => v.get(*k),
            (Key::Owned(k), None, Some(v)) => v.get(k.as_str()),
            (Key::Idx(i), None, Some(v)) => v.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        offset = next.span().start;
        table = None;
        value = Some(next.get_ref());
    }
    offset
}

fn invalid_at(path: &Path, text: &str, offset: usize, problem: Problem) -> InventoryError {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    InventoryError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        problem: Box::new(problem),
    }
}

fn de_directory<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    Ok(match s.as_str() {
        "letsencrypt" => LETSENCRYPT.to_string(),
        "letsencrypt-staging" => LETSENCRYPT_STAGING.to_string(),
        _ => s,
    })
}

/// Parses `host[:port]`, `[v6]:port` or a bare IPv6 address; port 53 by default.
pub fn parse_server(s: &str, default_port: u16) -> Result<Server, ServerError> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(Server {
            host: ip.to_string(),
            port: default_port,
        });
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(Server {
            host: sa.ip().to_string(),
            port: sa.port(),
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| ServerError::Port {
                input: s.into(),
                port: p.into(),
            })?,
        ),
        None => (s, default_port),
    };
    names::check_host(host).map_err(|problem| ServerError::Host {
        input: s.into(),
        problem,
    })?;
    Ok(Server {
        host: host.to_string(),
        port,
    })
}

fn de_server<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Server, D::Error> {
    let s = String::deserialize(d)?;
    parse_server(&s, 53).map_err(serde::de::Error::custom)
}

fn de_opt_server<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Server>, D::Error> {
    de_server(d).map(Some)
}

/// Parses a duration such as `90s`, `15m`, `2h`, `21d` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError { input: s.into() };
    let s = s.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match rest[..unit_len].trim() {
            "ms" => {
                total = total.checked_add(n / 1000).ok_or_else(err)?;
                rest = &rest[unit_len..];
                continue;
            }
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return Err(err()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs(total))
}

/// A server (`host[:port]`) that [`parse_server`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The port is not a number from 1 to 65535.
    #[error("`{input}`: port `{port}` is not a number from 1 to 65535")]
    Port {
        /// What was given.
        input: String,
        /// The port part.
        port: String,
    },
    /// The host is neither an IP address nor a DNS name.
    #[error("`{input}`: {problem}")]
    Host {
        /// What was given.
        input: String,
        /// What is wrong with the host.
        problem: names::HostError,
    },
}

/// A duration that [`parse_duration`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a duration; expected a number and a unit, e.g. `90s`, `15m`, `2h`, `21d`"
)]
pub struct DurationError {
    /// What was given.
    pub input: String,
}

mod duration {
    use super::*;
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_duration {
    use super::*;
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

fn default_raw_store() -> RawStore {
    RawStore::Path(PathBuf::from("/var/lib/certctl"))
}

/// `store`: a directory path, or a `[store]` table.
enum RawStore {
    Path(PathBuf),
    Table(Box<RawStoreTable>),
}

impl<'de> Deserialize<'de> for RawStore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawStore;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a directory path, or a [store] table with `type = \"dir\"` or `type = \"etcd\"`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawStore, E> {
                Ok(RawStore::Path(PathBuf::from(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawStore, A::Error> {
                RawStoreTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawStore::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which store backend a `[store]` table selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    Dir,
    Etcd,
}

/// The `[store]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoreTable {
    #[serde(rename = "type")]
    kind: StoreKind,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    endpoints: Option<Vec<String>>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default, with = "opt_duration")]
    lease_ttl: Option<Duration>,
    #[serde(default)]
    tls_ca: Option<PathBuf>,
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
}

/// The etcd lock lease's TTL when `lease_ttl` is not set.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// Validates `store` into the store it names; an error says which key of
/// the `[store]` table is wrong (for its line).
fn store_config(
    raw: RawStore,
    base: &Path,
    inventory: &Path,
) -> Result<crate::store::StoreConfig, (Option<&'static str>, Problem)> {
    use crate::store::{EtcdConfig, StoreConfig};
    let t = match raw {
        RawStore::Path(p) => {
            check_store_path(&p, base, inventory).map_err(|e| (None, e))?;
            return Ok(StoreConfig::Dir(resolve(base, &p)));
        }
        RawStore::Table(t) => t,
    };
    let kind = t.kind;
    let not_for = |key: &'static str, set: bool| {
        if set {
            Err((Some(key), Problem::StoreKeyNotFor { key, kind: "dir" }))
        } else {
            Ok(())
        }
    };
    if kind == StoreKind::Dir {
        not_for("endpoints", t.endpoints.is_some())?;
        not_for("prefix", t.prefix.is_some())?;
        not_for("key_file", t.key_file.is_some())?;
        not_for("lease_ttl", t.lease_ttl.is_some())?;
        not_for("tls_ca", t.tls_ca.is_some())?;
        not_for("tls_cert", t.tls_cert.is_some())?;
        not_for("tls_key", t.tls_key.is_some())?;
        let Some(p) = t.path else {
            return Err((
                None,
                Problem::StoreKeyMissing {
                    key: "path",
                    kind: "dir",
                },
            ));
        };
        check_store_path(&p, base, inventory).map_err(|e| (Some("path"), e))?;
        return Ok(StoreConfig::Dir(resolve(base, &p)));
    }
    if t.path.is_some() {
        return Err((
            Some("path"),
            Problem::StoreKeyNotFor {
                key: "path",
                kind: "etcd",
            },
        ));
    }
    let endpoints = t.endpoints.unwrap_or_default();
    if endpoints.is_empty() {
        return Err((
            None,
            Problem::StoreKeyMissing {
                key: "endpoints",
                kind: "etcd",
            },
        ));
    }
    for e in &endpoints {
        let ok = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', ' ', '?', '#']));
        if !ok {
            return Err((
                Some("endpoints"),
                Problem::StoreEndpoint {
                    endpoint: e.clone(),
                },
            ));
        }
    }
    let https = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    if https != 0 && https != endpoints.len() {
        return Err((Some("endpoints"), Problem::StoreEndpointsMixed));
    }
    let tls = store_tls(https != 0, t.tls_ca, t.tls_cert, t.tls_key, base)?;
    let prefix = t.prefix.unwrap_or_else(|| "/certctl/".into());
    if !prefix.starts_with('/')
        || !prefix.ends_with('/')
        || prefix.len() < 3
        || prefix.contains("//")
    {
        return Err((Some("prefix"), Problem::StorePrefix { prefix }));
    }
    let Some(key_file) = t.key_file else {
        return Err((
            None,
            Problem::StoreKeyMissing {
                key: "key_file",
                kind: "etcd",
            },
        ));
    };
    let key_file = resolve(base, &key_file);
    if let Err(crate::store::KeyFileError::Loose { file, mode }) =
        crate::store::seal::check_key_file_mode(&key_file)
    {
        return Err((Some("key_file"), Problem::KeyFileLoose { file, mode }));
    }
    let lease_ttl = t.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
    if lease_ttl < Duration::from_secs(2) || lease_ttl.subsec_nanos() != 0 {
        return Err((Some("lease_ttl"), Problem::LeaseTtl { ttl: lease_ttl }));
    }
    Ok(StoreConfig::Etcd(EtcdConfig {
        endpoints,
        prefix,
        key_file,
        lease_ttl,
        tls,
    }))
}

/// The TLS settings of an etcd `[store]`: `tls_ca` exactly when the
/// endpoints are `https://`, `tls_cert` and `tls_key` together, and the key
/// private (mode 0600), as for `key_file`.
fn store_tls(
    https: bool,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    base: &Path,
) -> Result<Option<crate::store::EtcdTls>, (Option<&'static str>, Problem)> {
    if !https {
        for (key, set) in [
            ("tls_ca", ca.is_some()),
            ("tls_cert", cert.is_some()),
            ("tls_key", key.is_some()),
        ] {
            if set {
                return Err((Some(key), Problem::StoreTlsWithHttp { key }));
            }
        }
        return Ok(None);
    }
    let Some(ca) = ca else {
        return Err((Some("endpoints"), Problem::StoreTlsCaMissing));
    };
    let client = match (cert, key) {
        (None, None) => None,
        (Some(_), None) => {
            return Err((
                Some("tls_cert"),
                Problem::StoreTlsPair {
                    set: "tls_cert",
                    missing: "tls_key",
                },
            ))
        }
        (None, Some(_)) => {
            return Err((
                Some("tls_key"),
                Problem::StoreTlsPair {
                    set: "tls_key",
                    missing: "tls_cert",
                },
            ))
        }
        (Some(cert), Some(key)) => {
            let key = resolve(base, &key);
            if let Err(crate::store::KeyFileError::Loose { file, mode }) =
                crate::store::seal::check_key_file_mode(&key)
            {
                return Err((Some("tls_key"), Problem::TlsKeyLoose { file, mode }));
            }
            Some((resolve(base, &cert), key))
        }
    };
    Ok(Some(crate::store::EtcdTls {
        ca: resolve(base, &ca),
        client,
    }))
}
fn default_order_concurrency() -> usize {
    16
}
fn default_order_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_warning() -> Duration {
    Duration::from_secs(21 * 86_400)
}
fn default_critical() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_probe_concurrency() -> usize {
    256
}
fn default_node_concurrency() -> usize {
    20
}
fn default_keep_versions() -> usize {
    3
}
fn default_ttl() -> u32 {
    60
}
fn default_exec_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_propagation_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_ssh_port() -> u16 {
    22
}
fn default_user() -> String {
    "root".into()
}
fn default_base_dir() -> PathBuf {
    PathBuf::from("/etc/nginx/certs")
}
fn default_validate() -> String {
    "nginx -t".into()
}
fn default_reload() -> String {
    "systemctl reload nginx".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_node_sessions() -> usize {
    4
}
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[account]
directory = "letsencrypt-staging"

[solvers.ns]
type = "rfc2136"
server = "192.0.2.1"
tsig_key = "certctl"
tsig_secret_env = "TSIG"

[[certificate]]
name = "www"
domains = ["www.example.com", "*.example.com"]
solver = "ns"
"#;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::from_str(text, Path::new("/etc/certctl/certctl.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("should be rejected").to_string()
    }

    #[test]
    fn minimal_inventory_gets_defaults() {
        let inv = parse(MINIMAL).expect("valid");
        assert_eq!(inv.account.directory, LETSENCRYPT_STAGING);
        assert_eq!(
            inv.store,
            crate::store::StoreConfig::Dir(PathBuf::from("/var/lib/certctl"))
        );
        let c = inv.certificate("www").expect("www");
        assert_eq!(c.key, KeyType::EcdsaP256);
        assert_eq!(c.domains[1].as_str(), "*.example.com");
        let SolverConfig::Rfc2136(r) = &inv.solvers["ns"] else {
            panic!("rfc2136 expected")
        };
        assert_eq!(r.server.port, 53);
        assert_eq!(r.tsig_algorithm, TsigAlgorithm::HmacSha256);
    }

    #[test]
    fn a_persist_solver_needs_no_secret_and_its_fallback_must_be_dns01() {
        let persist = MINIMAL.replace(
            "solver = \"ns\"",
            "solver = \"p\"",
        ) + "\n[solvers.p]\ntype = \"persist\"\npolicy = \"wildcard\"\npersist_until = \"2030-01-01T00:00:00Z\"\nfallback = \"ns\"\n";
        let inv = parse(&persist).expect("a persist solver loads");
        let p = inv.certificates[0]
            .persist
            .as_ref()
            .expect("the certificate sees it");
        assert_eq!(p.policy, Some(PersistPolicy::Wildcard));
        assert_eq!(p.fallback.as_deref(), Some("ns"));
        assert_eq!(p.persist_until.map(|t| t.year()), Some(2030));

        let e = err(&persist.replace("fallback = \"ns\"", "fallback = \"p\""));
        assert!(e.contains("a fallback must be a dns-01 solver"), "{e}");
        let e = err(&persist.replace("fallback = \"ns\"", "fallback = \"nope\""));
        assert!(e.contains("solver `nope` is not defined"), "{e}");
        let e = err(&persist.replace("policy = \"wildcard\"", "policy = \"subdomains\""));
        assert!(e.contains("wildcard"), "{e}");
    }

    #[test]
    fn unknown_key_is_rejected_with_position() {
        let text = MINIMAL.replace("solver = \"ns\"", "solver = \"ns\"\nrenew_befor = \"3d\"");
        let e = err(&text);
        assert!(e.starts_with("/etc/certctl/certctl.toml:15:1:"), "{e}");
        assert!(e.contains("renew_befor"), "{e}");
    }

    #[test]
    fn undefined_solver_points_at_the_reference() {
        let text = MINIMAL.replace("solver = \"ns\"", "solver = \"nss\"");
        let e = err(&text);
        assert!(e.starts_with("/etc/certctl/certctl.toml:14:10:"), "{e}");
        assert!(
            e.contains("solver `nss` is not defined; known solvers: `ns`"),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_names_the_expected_form() {
        let text = MINIMAL.replace(
            "solver = \"ns\"",
            "solver = \"ns\"\nrenew_before = \"3 fortnights\"",
        );
        let e = err(&text);
        assert!(e.contains(":15:16:"), "{e}");
        assert!(e.contains("expected a number and a unit"), "{e}");
    }

    #[test]
    fn secret_needs_exactly_one_source() {
        let text = MINIMAL.replace("tsig_secret_env = \"TSIG\"", "");
        let e = err(&text);
        assert!(e.contains("tsig_secret_file or tsig_secret_env"), "{e}");
    }

    #[test]
    fn hostile_names_are_refused() {
        let e = err(&MINIMAL.replace("name = \"www\"", "name = \"../../etc\""));
        assert!(e.contains("certificate name"), "{e}");
        let e = err(&MINIMAL.replace("www.example.com", "$(reboot).example.com"));
        assert!(e.contains("not a valid DNS name"), "{e}");
    }

    const NODE: &str = "\n[[node]]\nname = \"edge1\"\naddress = \"192.0.2.10\"\n";

    #[test]
    fn option_looking_identity_file_is_refused() {
        let text = format!("{MINIMAL}{NODE}identity_file = \"-oProxyCommand=touch /tmp/x\"\n");
        let e = err(&text);
        assert!(
            e.contains("identity_file `-oProxyCommand=touch /tmp/x` looks like an ssh option"),
            "{e}"
        );
    }

    #[test]
    fn names_that_differ_only_in_case_are_refused() {
        let twice = MINIMAL.to_string()
            + "\n[[certificate]]\nname = \"WWW\"\ndomains = [\"a.example.com\"]\nsolver = \"ns\"\n";
        let e = err(&twice);
        assert!(
            e.contains("certificate `WWW` differs from certificate `www` only in case"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("\"*.example.com\"", "\"WWW.example.com\""));
        assert!(
            e.contains("domain `www.example.com` is listed twice"),
            "{e}"
        );
        let nodes = format!("{MINIMAL}{NODE}{}", NODE.replace("edge1", "EDGE1"));
        let e = err(&nodes);
        assert!(
            e.contains("node `EDGE1` differs from node `edge1` only in case"),
            "{e}"
        );
    }

    #[test]
    fn ip_address_domain_is_refused_at_load() {
        let e = err(&MINIMAL.replace("www.example.com", "192.0.2.7"));
        assert!(e.contains("DNS-01 cannot validate an IP address"), "{e}");
    }

    #[test]
    fn bad_node_name_says_node_name() {
        let e = err(&format!("{MINIMAL}{}", NODE.replace("edge1", "../edge")));
        assert!(e.contains("node name `../edge`"), "{e}");
        assert!(!e.contains("certificate name"), "{e}");
    }

    #[test]
    fn group_without_node_is_an_error() {
        let text = MINIMAL.replace("solver = \"ns\"", "solver = \"ns\"\ngroups = [\"edge\"]");
        let e = err(&text);
        assert!(e.contains("group `edge` has no node"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let text = MINIMAL.replace(
            "directory = \"letsencrypt-staging\"",
            "directory = \"https://127.0.0.1:14000/dir\"\nca_bundle = \"ca.pem\"",
        );
        let inv = parse(&text).expect("valid");
        assert_eq!(
            inv.account.ca_bundle,
            Some(PathBuf::from("/etc/certctl/ca.pem"))
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("21d"), Ok(Duration::from_secs(21 * 86_400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn servers_parse() {
        assert_eq!(parse_server("10.0.0.1", 53).map(|s| s.port), Ok(53));
        assert_eq!(
            parse_server("ns1.example.com:5353", 53).map(|s| s.port),
            Ok(5353)
        );
        assert_eq!(
            parse_server("[::1]:53", 53).map(|s| s.host),
            Ok("::1".to_string())
        );
        assert!(parse_server("ns1:x", 53).is_err());
        assert_eq!(
            parse_server("ns1:x", 53),
            Err(ServerError::Port {
                input: "ns1:x".into(),
                port: "x".into()
            })
        );
        let bad_host = parse_server("ns_1..x:53", 53).expect_err("empty label");
        assert!(
            matches!(
                &bad_host,
                ServerError::Host {
                    problem: names::HostError(names::DnsNameError::EmptyLabel),
                    ..
                }
            ),
            "{bad_host:?}"
        );
        assert_eq!(
            bad_host.to_string(),
            "`ns_1..x:53`: not a host name or IP address: it has an empty label"
        );
        assert_eq!(
            parse_duration("5 parsecs").map_err(|e| e.input),
            Err("5 parsecs".to_string())
        );
    }

    #[test]
    fn store_that_is_empty_root_or_the_inventory_itself_is_refused_at_its_line() {
        for (value, says) in [
            ("", "store is empty"),
            ("/", "file system root"),
            ("/var/..", "file system root"),
            ("//", "file system root"),
            (".", "the inventory's own directory"),
            ("./", "the inventory's own directory"),
            ("sub/..", "the inventory's own directory"),
            ("certctl.toml", "the inventory's own file"),
        ] {
            let e = err(&format!("store = \"{value}\"\n{MINIMAL}"));
            assert!(
                e.starts_with("/etc/certctl/certctl.toml:1:9: "),
                "{value:?}: {e}"
            );
            assert!(
                e.contains(says) && e.contains("/var/lib/certctl"),
                "{value:?}: {e}"
            );
        }
        for fine in ["/var/lib/certctl", "store", "../certctl-store"] {
            let inv = parse(&format!("store = \"{fine}\"\n{MINIMAL}")).expect(fine);
            assert_ne!(
                inv.store,
                crate::store::StoreConfig::Dir(PathBuf::from("/etc/certctl"))
            );
        }
    }

    fn key_file(mode: u32) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("store.key");
        std::fs::write(&f, "unused\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (dir, f)
    }

    fn etcd_store(body: &str) -> String {
        format!("{MINIMAL}\n[store]\n{body}")
    }

    #[test]
    fn an_etcd_store_table_parses_with_defaults() {
        let (_d, f) = key_file(0o600);
        let inv = parse(&etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"http://127.0.0.21:2379\", \"http://127.0.0.22:2379\"]\nkey_file = \"{}\"\n",
            f.display()
        )))
        .expect("valid");
        assert_eq!(
            inv.store,
            crate::store::StoreConfig::Etcd(crate::store::EtcdConfig {
                endpoints: vec![
                    "http://127.0.0.21:2379".into(),
                    "http://127.0.0.22:2379".into()
                ],
                prefix: "/certctl/".into(),
                key_file: f.clone(),
                lease_ttl: Duration::from_secs(10),
                tls: None,
            })
        );
        let inv = parse(&etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"http://e:2379\"]\nprefix = \"/x/\"\nlease_ttl = \"30s\"\nkey_file = \"{}\"\n",
            f.display()
        )))
        .expect("valid");
        let crate::store::StoreConfig::Etcd(c) = inv.store else {
            panic!("etcd expected")
        };
        assert_eq!(
            (c.prefix.as_str(), c.lease_ttl),
            ("/x/", Duration::from_secs(30))
        );
        let inv = parse(&etcd_store("type = \"dir\"\npath = \"/srv/certctl\"\n")).expect("dir");
        assert_eq!(
            inv.store,
            crate::store::StoreConfig::Dir(PathBuf::from("/srv/certctl"))
        );
    }

    #[test]
    fn a_store_table_with_a_typo_a_missing_key_file_or_a_tls_mismatch_is_refused_at_its_line() {
        let (_d, f) = key_file(0o600);
        let e = err(&etcd_store(&format!(
            "type = \"etcd\"\nendpoint = [\"http://e:2379\"]\nkey_file = \"{}\"\n",
            f.display()
        )));
        assert!(e.contains("unknown field `endpoint`"), "{e}");
        let e = err(&etcd_store(
            "type = \"etcd\"\nendpoints = [\"http://e:2379\"]\n",
        ));
        assert!(
            e.contains("needs `key_file`") && e.contains("certctl store keygen"),
            "{e}"
        );
        let line_of = |text: &str, key: &str| {
            1 + text
                .lines()
                .position(|l| l.starts_with(key))
                .expect("the key's line")
        };
        let text = etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"http://e:2379\"]\nkey_file = \"{}\"\ntls_ca = \"/ca.pem\"\n",
            f.display()
        ));
        let e = err(&text);
        assert!(
            e.contains("`tls_ca` is set but the endpoints are `http://`")
                && e.contains(&format!(":{}:", line_of(&text, "tls_ca"))),
            "{e}"
        );
        let e = err(&etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"https://e:2379\", \"http://f:2379\"]\nkey_file = \"{}\"\n",
            f.display()
        )));
        assert!(e.contains("mix `http://` and `https://`"), "{e}");
        let e = err(&etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"https://e:2379\"]\nkey_file = \"{}\"\n",
            f.display()
        )));
        assert!(e.contains("need `tls_ca`"), "{e}");
        let text = etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"https://e:2379\"]\nkey_file = \"{}\"\ntls_ca = \"/ca.pem\"\ntls_cert = \"/c.pem\"\n",
            f.display()
        ));
        let e = err(&text);
        assert!(
            e.contains("`tls_cert` needs `tls_key`")
                && e.contains(&format!(":{}:", line_of(&text, "tls_cert"))),
            "{e}"
        );
        let e = err(&etcd_store("type = \"zookeeper\"\n"));
        assert!(e.contains("zookeeper"), "{e}");
        let e = err(&etcd_store(
            "type = \"dir\"\nendpoints = [\"http://e:2379\"]\npath = \"/x\"\n",
        ));
        assert!(e.contains("`endpoints` is not a setting"), "{e}");
    }

    #[test]
    fn an_etcd_client_key_others_may_read_is_refused_and_a_private_one_taken() {
        let (_d, f) = key_file(0o600);
        let (_d2, loose) = key_file(0o640);
        let text = etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"https://e:2379\"]\nkey_file = \"{f}\"\ntls_ca = \"/ca.pem\"\ntls_cert = \"/c.pem\"\ntls_key = \"{k}\"\n",
            f = f.display(),
            k = loose.display()
        ));
        let e = err(&text);
        assert!(
            e.contains(&format!("tls_key {} has mode 640", loose.display()))
                && e.contains("chmod 600"),
            "{e}"
        );
        let text = etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"https://e:2379\"]\nkey_file = \"{f}\"\ntls_ca = \"/ca.pem\"\ntls_cert = \"/c.pem\"\ntls_key = \"{f}\"\n",
            f = f.display()
        ));
        let inv = parse(&text).expect("valid");
        let crate::store::StoreConfig::Etcd(cfg) = inv.store else {
            panic!("an etcd store")
        };
        assert_eq!(
            cfg.tls,
            Some(crate::store::EtcdTls {
                ca: "/ca.pem".into(),
                client: Some(("/c.pem".into(), f.clone())),
            })
        );
        assert_eq!(cfg.endpoints, ["https://e:2379"]);
    }

    #[test]
    fn a_key_file_others_may_read_is_refused_naming_the_file_and_chmod() {
        let (_d, f) = key_file(0o644);
        let text = etcd_store(&format!(
            "type = \"etcd\"\nendpoints = [\"http://e:2379\"]\nkey_file = \"{}\"\n",
            f.display()
        ));
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with("key_file"))
            .expect("key_file line");
        let e = err(&text);
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        assert!(
            e.contains(&format!(":{line}:")),
            "points at the key_file line: {e}"
        );
    }
}
