//! The preflight behind `certctl check`: every part of an inventory checked
//! and reported as a list of [`CheckItem`]s, offline by default and, on
//! request, against the CA, the DNS primaries and every node.
//!
//! Offline ([`offline`]) touches no network: secrets are read and decoded,
//! the files handed to ssh and TLS are looked at, exec solver programs are
//! looked up, and certificates no node serves get a warning.
//!
//! Online ([`online`]) proves the rest without deploying or leaving anything
//! behind: the account is looked up with `onlyReturnExisting` (never created),
//! each rfc2136 solver adds and always deletes a probe TXT record, and each
//! node is reached through the deploy transport, its `base_dir` written to
//! with a file only this check created (and removed), its validate command
//! run, and its probe address asked for TLS. Exec solver commands are not run:
//! they may do anything.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use serde::ser::SerializeStruct as _;
use serde::Serialize;

use crate::acme::{AccountLookup, AcmeError, CaConfig};
use crate::deploy::transport::{self, TransportError};
use crate::dns::DnsError;
use crate::inspect::{ProbeFailure, Prober, ProberError, Trust};
use crate::inventory::{Inventory, NodeConfig, SolverConfig};
use crate::names::shell_quote;
use crate::secret::{EabKeyError, SecretError, SecretSource, TsigSecretError};

/// The JSON schema name of [`Preflight`].
pub const SCHEMA: &str = "certctl.check/v1";

/// How long the online DNS check waits for every authoritative server at most.
const PROPAGATION_BOUND: Duration = Duration::from_secs(10);

/// The inventory item a check is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Subject {
    /// The ACME account and CA (`[account]`).
    Account,
    /// The fallback CA (`[account.fallback]`).
    Fallback,
    /// The report settings (`[report]`).
    Report,
    /// The store (`store`).
    Store,
    /// A solver, by name.
    Solver(String),
    /// A node, by name.
    Node(String),
    /// A certificate, by name.
    Certificate(String),
}

impl Subject {
    fn kind(&self) -> &'static str {
        match self {
            Subject::Account => "account",
            Subject::Fallback => "fallback",
            Subject::Report => "report",
            Subject::Store => "store",
            Subject::Solver(_) => "solver",
            Subject::Node(_) => "node",
            Subject::Certificate(_) => "certificate",
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Subject::Solver(n) | Subject::Node(n) | Subject::Certificate(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} {n}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It holds.
    Ok,
    /// It holds, but something is likely not what was meant.
    Warning,
    /// It fails: the run that needs it would fail.
    Error,
}

/// Why a check did not pass (kept typed; rendered with [`crate::error_chain`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A secret cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A secret file is not a regular file.
    #[error("secret file {path} ({key}) is not a regular file but a {kind}")]
    SecretNotRegular {
        /// The file.
        path: PathBuf,
        /// The inventory key that named it.
        key: &'static str,
        /// What it is instead.
        kind: &'static str,
    },
    /// A TSIG secret does not decode.
    #[error(transparent)]
    Tsig(#[from] TsigSecretError),
    /// An EAB key does not decode.
    #[error(transparent)]
    Eab(#[from] EabKeyError),
    /// A file named by the inventory cannot be opened.
    #[error("{key} {path} cannot be read")]
    File {
        /// The inventory key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file named by the inventory is not a regular file.
    #[error("{key} {path} is not a regular file but a {kind}")]
    NotRegular {
        /// The inventory key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// `probe` is not `host:port`.
    #[error("probe `{probe}` is not `host:port` (e.g. `192.0.2.10:443`): {reason}")]
    ProbeAddress {
        /// The value.
        probe: String,
        /// What is wrong.
        reason: ProbeAddressError,
    },
    /// No node serves the certificate.
    #[error("no node serves it: its groups are {}", groups_text(.groups))]
    Uncovered {
        /// The certificate's groups.
        groups: Vec<String>,
    },
    /// An exec solver's program is not there or not executable.
    #[error("{action} program `{program}` {reason}")]
    Program {
        /// `present` or `cleanup`.
        action: &'static str,
        /// The program.
        program: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No certificate uses the solver, so there is no name to probe.
    #[error("no certificate uses this solver, so there is no challenge name to probe")]
    SolverUnused,
    /// The CA or the account check failed.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// A persist solver's `persist_until` has passed: records made from it are refused.
    #[error("persist_until {until} has passed: a CA refuses a record past its persistUntil")]
    PersistUntilPassed {
        /// The configured time.
        until: time::OffsetDateTime,
    },
    /// The persistent dns-persist-01 record is missing or wrong.
    #[error(transparent)]
    Persist(#[from] Box<crate::acme::persist::NotUsed>),
    /// A key rollover was cut short after the CA took the new key: the
    /// account file still holds the old key, the pending file the new one.
    #[error("{directory}: an account key rollover was interrupted after the CA took the new key (account {url}); the store's account file still holds the old key")]
    RolloverPending {
        /// Directory URL.
        directory: String,
        /// The account URL the pending key belongs to.
        url: String,
    },
    /// The account file in the store cannot be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A DNS check failed.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The node cannot be reached or a command could not run.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// `base_dir` (or the directory it would be made in) is not writable.
    #[error("{base_dir} on {node} is not writable: {output}")]
    NotWritable {
        /// Node name.
        node: String,
        /// The directory tried.
        base_dir: String,
        /// What the shell said.
        output: String,
    },
    /// The validate command failed.
    #[error("validate command `{command}` on {node} failed (exit {}): {}", .status.code().map_or("by signal".into(), |s| s.to_string()), tail(.output))]
    Validate {
        /// Node name.
        node: String,
        /// The command.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The TLS prober could not be built (trust bundles).
    #[error(transparent)]
    Prober(#[from] ProberError),
    /// The probe address gave no TLS answer.
    #[error(transparent)]
    Probe(#[from] ProbeFailure),
    /// A local problem running the check itself.
    #[error("cannot make a private directory for ssh control sockets in {dir}")]
    ControlDir {
        /// Where.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn groups_text(groups: &[String]) -> String {
    if groups.is_empty() {
        "none (no `groups` key)".into()
    } else {
        groups
            .iter()
            .map(|g| format!("`{g}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.trim().lines().collect();
    let start = lines.len().saturating_sub(3);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        "no output".into()
    } else {
        t
    }
}

/// One check of one inventory item.
#[derive(Debug)]
pub struct CheckItem {
    /// What it is about.
    pub subject: Subject,
    /// What was checked, e.g. `tsig_secret_file` or `ssh connects`.
    pub check: String,
    /// How it came out.
    pub status: Status,
    /// What was found, for an item that passed.
    pub note: String,
    /// Why it did not pass.
    pub problem: Option<Problem>,
    /// What to do about it.
    pub fix: Option<String>,
}

impl CheckItem {
    fn ok(subject: &Subject, check: impl Into<String>, note: impl Into<String>) -> Self {
        Self {
            subject: subject.clone(),
            check: check.into(),
            status: Status::Ok,
            note: note.into(),
            problem: None,
            fix: None,
        }
    }

    fn bad(
        subject: &Subject,
        check: impl Into<String>,
        status: Status,
        problem: Problem,
        fix: impl Into<String>,
    ) -> Self {
        let fix = fix.into();
        Self {
            subject: subject.clone(),
            check: check.into(),
            status,
            note: String::new(),
            problem: Some(problem),
            fix: (!fix.is_empty()).then_some(fix),
        }
    }

    /// The finding: the note, or the problem with its sources on one line.
    pub fn detail(&self) -> String {
        match &self.problem {
            Some(p) => crate::error_chain(p),
            None => self.note.clone(),
        }
    }
}

impl Serialize for CheckItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CheckItem", 6)?;
        st.serialize_field("subject", self.subject.kind())?;
        st.serialize_field("name", &self.subject.name())?;
        st.serialize_field("check", &self.check)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("detail", &self.detail())?;
        st.serialize_field("fix", &self.fix)?;
        st.end()
    }
}

/// The result of a preflight: every check, in inventory order.
#[derive(Debug, Serialize)]
pub struct Preflight {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The inventory file.
    pub inventory: PathBuf,
    /// Whether the online checks ran.
    pub online: bool,
    /// The checks.
    pub items: Vec<CheckItem>,
}

impl Preflight {
    /// The worst status among the items ([`Status::Ok`] when there are none).
    pub fn worst(&self) -> Status {
        self.items
            .iter()
            .map(|i| i.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// How many items have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }
}

/// Runs the offline checks (no network).
pub fn offline(inv: &Inventory) -> Preflight {
    Preflight {
        schema: SCHEMA,
        inventory: inv.path.clone(),
        online: false,
        items: offline_items(inv),
    }
}

/// Runs the offline checks, then the online ones, all concurrently and
/// bounded by `deploy.concurrency` (nodes) and `renewal.concurrency`.
pub async fn online(inv: &Inventory) -> Preflight {
    let mut items = offline_items(inv);
    if let crate::store::StoreConfig::Etcd(c) = &inv.store {
        items.push(online_etcd(inv, c));
    }
    let account = online_account(inv);
    let solvers = futures::stream::iter(inv.solvers.iter())
        .map(|(name, cfg)| online_solver(inv, name, cfg))
        .buffered(inv.renewal.concurrency.max(1))
        .collect::<Vec<_>>();
    let nodes = online_nodes(inv);
    let persist = online_persist(inv);
    let (a, s, n, p) = tokio::join!(account, solvers, nodes, persist);
    items.extend(a);
    items.extend(s.into_iter().flatten());
    items.extend(n);
    items.extend(p);
    Preflight {
        schema: SCHEMA,
        inventory: inv.path.clone(),
        online: true,
        items,
    }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// A file ssh or TLS reads: it exists, is a regular file and can be opened.
fn file_item(subject: &Subject, key: &'static str, path: &Path) -> CheckItem {
    let fix = format!("point {key} at an existing, readable file");
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(source) => {
            return CheckItem::bad(
                subject,
                key,
                Status::Error,
                Problem::File {
                    key,
                    path: path.into(),
                    source,
                },
                fix,
            )
        }
    };
    if !meta.is_file() {
        let kind = kind_of(meta.file_type());
        return CheckItem::bad(
            subject,
            key,
            Status::Error,
            Problem::NotRegular {
                key,
                path: path.into(),
                kind,
            },
            fix,
        );
    }
    // Opening (not reading) proves it is readable without blocking on anything.
    match std::fs::File::open(path) {
        Ok(_) => CheckItem::ok(
            subject,
            key,
            format!("{} ({} bytes)", path.display(), meta.len()),
        ),
        Err(source) => CheckItem::bad(
            subject,
            key,
            Status::Error,
            Problem::File {
                key,
                path: path.into(),
                source,
            },
            format!(
                "make {} readable for the user certctl runs as",
                path.display()
            ),
        ),
    }
}

/// Reads a secret after checking that a file source is a regular file (a
/// FIFO would block the read).
fn read_secret(src: &SecretSource, key: &'static str) -> Result<crate::secret::Secret, Problem> {
    if let Some(path) = src.file() {
        if let Ok(meta) = std::fs::metadata(path) {
            if !meta.is_file() {
                return Err(Problem::SecretNotRegular {
                    path: path.into(),
                    key,
                    kind: kind_of(meta.file_type()),
                });
            }
        }
    }
    Ok(src.read()?)
}

fn secret_fix(p: &Problem, key: &str) -> String {
    match p {
        Problem::Secret(SecretError::LooseMode { path, .. }) => {
            format!("chmod 600 {}", path.display())
        }
        Problem::Secret(SecretError::Env { var, .. }) => {
            format!(
                "export {var} in certctl's environment (e.g. the systemd unit's EnvironmentFile)"
            )
        }
        Problem::Tsig(TsigSecretError::KeyName { .. } | TsigSecretError::Algorithm { .. }) => {
            "make tsig_key and tsig_algorithm match the key block".into()
        }
        Problem::Tsig(_) => {
            "write the base64 secret alone, or the whole block `tsig-keygen` prints".into()
        }
        Problem::Eab(_) => "copy the HMAC key exactly as the CA gave it (base64url)".into(),
        _ => format!("point {key} at an existing regular file (mode 0600)"),
    }
}

fn file_key(src: &SecretSource, file_key: &'static str, env_key: &'static str) -> &'static str {
    if src.file().is_some() {
        file_key
    } else {
        env_key
    }
}

fn eab_item(subject: &Subject, eab: &crate::inventory::EabConfig) -> CheckItem {
    let src = eab.hmac_key();
    let key = file_key(&src, "hmac_key_file", "hmac_key_env");
    let r =
        read_secret(&src, key).and_then(|s| Ok(crate::secret::decode_eab_hmac(&s, &src.origin())?));
    match r {
        Ok(k) => CheckItem::ok(
            subject,
            format!("eab {key}"),
            format!("{}: a {}-byte key", src.origin(), k.expose().len()),
        ),
        Err(p) => {
            let fix = secret_fix(&p, key);
            CheckItem::bad(subject, format!("eab {key}"), Status::Error, p, fix)
        }
    }
}

/// The store's location is usable (see [`crate::store::validate_location`]);
/// nothing is written.
fn store_item(inv: &Inventory) -> CheckItem {
    use crate::store::Location;
    let what = "usable as certctl's store";
    let dir = match &inv.store {
        crate::store::StoreConfig::Etcd(c) => {
            return match crate::store::DataKey::load(&c.key_file) {
                Ok(k) => CheckItem::ok(
                    &Subject::Store,
                    what,
                    format!(
                        "{}: data key {} in {} (`check --online` reaches the cluster)",
                        c.describe(),
                        k.id(),
                        c.key_file.display()
                    ),
                ),
                Err(e) => CheckItem::bad(
                    &Subject::Store,
                    what,
                    Status::Error,
                    Problem::Store(e.into()),
                    "make the data key with `certctl store keygen FILE` (mode 0600) and set `key_file` to it",
                ),
            };
        }
        crate::store::StoreConfig::Dir(d) => d,
    };
    match crate::store::validate_location(dir) {
        Ok(l) => CheckItem::ok(
            &Subject::Store,
            what,
            format!(
                "{}: {}",
                inv.store.display(),
                match l {
                    Location::Missing => "not there yet; the first writing command creates it",
                    Location::EmptyDirectory =>
                        "an empty directory; the first writing command marks it as certctl's",
                    Location::Marked => "certctl's store",
                    Location::UnmarkedLayout =>
                        "a store made before stores were marked; the next writing command marks it",
                }
            ),
        ),
        Err(e) => CheckItem::bad(
            &Subject::Store,
            what,
            Status::Error,
            Problem::Store(e),
            "set `store` to a new or empty directory, or to an existing certctl store",
        ),
    }
}

/// The etcd store answers, is certctl's (or not made yet), and is sealed
/// with the data key in `key_file`; nothing is written.
fn online_etcd(inv: &Inventory, c: &crate::store::EtcdConfig) -> CheckItem {
    let what = "etcd reachable, data key matches";
    match crate::Store::open_read_only(&inv.store).and_then(|s| s.names()) {
        Ok(names) => CheckItem::ok(
            &Subject::Store,
            what,
            format!("{}: {} certificates stored", c.describe(), names.len()),
        ),
        Err(e) => CheckItem::bad(
            &Subject::Store,
            what,
            Status::Error,
            Problem::Store(e),
            "start etcd (a quorum of its members) and check `endpoints`; a wrong key_file: install the store's key file",
        ),
    }
}

fn offline_items(inv: &Inventory) -> Vec<CheckItem> {
    let mut items = vec![store_item(inv)];
    let a = &inv.account;
    if let Some(p) = &a.ca_bundle {
        items.push(file_item(&Subject::Account, "ca_bundle", p));
    }
    if let Some(e) = &a.eab {
        items.push(eab_item(&Subject::Account, e));
    }
    if let Some(f) = &a.fallback {
        if let Some(p) = &f.ca_bundle {
            items.push(file_item(&Subject::Fallback, "ca_bundle", p));
        }
        if let Some(e) = &f.eab {
            items.push(eab_item(&Subject::Fallback, e));
        }
    }
    for p in &inv.report.trust {
        items.push(file_item(&Subject::Report, "trust", p));
    }
    for (name, cfg) in &inv.solvers {
        let subject = Subject::Solver(name.clone());
        match cfg {
            SolverConfig::Rfc2136(r) => {
                let src = r.tsig_secret();
                let key = file_key(&src, "tsig_secret_file", "tsig_secret_env");
                let decoded = read_secret(&src, key).and_then(|s| {
                    Ok(crate::secret::decode_tsig(
                        &s,
                        &src.origin(),
                        &r.tsig_key,
                        r.tsig_algorithm.name(),
                    )?)
                });
                items.push(match decoded {
                    Ok(k) => CheckItem::ok(
                        &subject,
                        key,
                        format!(
                            "{}: a {}-byte {} key for `{}`",
                            src.origin(),
                            k.expose().len(),
                            r.tsig_algorithm.name(),
                            r.tsig_key
                        ),
                    ),
                    Err(p) => {
                        let fix = secret_fix(&p, key);
                        CheckItem::bad(&subject, key, Status::Error, p, fix)
                    }
                });
            }
            SolverConfig::Exec(e) => {
                for (action, argv) in [("present", &e.present), ("cleanup", &e.cleanup)] {
                    items.push(program_item(&subject, action, &argv[0]));
                }
            }
            SolverConfig::Persist(p) => {
                let now = time::OffsetDateTime::now_utc();
                items.push(match p.persist_until {
                    Some(until) if until < now => CheckItem::bad(
                        &subject,
                        "persist_until",
                        Status::Error,
                        Problem::PersistUntilPassed { until },
                        "set a later persist_until and publish the new record (`certctl persist-record`)",
                    ),
                    _ => CheckItem::ok(
                        &subject,
                        "dns-persist-01",
                        match &p.fallback {
                            Some(f) => format!("no DNS secret; dns-01 fallback through `{f}`"),
                            None => "no DNS secret; no fallback".to_string(),
                        },
                    ),
                })
            }
        }
    }
    for n in &inv.nodes {
        let subject = Subject::Node(n.name.to_string());
        for (key, p) in [
            ("identity_file", &n.identity_file),
            ("known_hosts", &n.known_hosts),
            ("ssh_config", &n.ssh_config),
        ] {
            if let Some(p) = p {
                items.push(file_item(&subject, key, p));
            }
        }
        if let Some(p) = &n.probe {
            items.push(match parse_probe(p) {
                Ok(()) => CheckItem::ok(&subject, "probe", p.clone()),
                Err(reason) => CheckItem::bad(
                    &subject,
                    "probe",
                    Status::Error,
                    Problem::ProbeAddress {
                        probe: p.clone(),
                        reason,
                    },
                    "write probe as `host:port` or `[v6]:port`",
                ),
            });
        }
    }
    for c in &inv.certificates {
        let subject = Subject::Certificate(c.name.to_string());
        let served: Vec<&str> = inv.nodes_for(c).map(|n| n.name.as_str()).collect();
        items.push(if served.is_empty() {
            CheckItem::bad(
                &subject,
                "served by a node",
                Status::Warning,
                Problem::Uncovered {
                    groups: c.groups.clone(),
                },
                "add `groups = [...]` naming a group of its nodes, unless it is only kept in the store",
            )
        } else {
            CheckItem::ok(&subject, "served by a node", served.join(", "))
        });
    }
    items
}

/// `host:port` or `[v6]:port`, as the TLS probe connects to it.
fn parse_probe(p: &str) -> Result<(), ProbeAddressError> {
    if p.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = p.rsplit_once(':') else {
        return Err(ProbeAddressError::NoPort);
    };
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ProbeAddressError::Port { port: port.into() })?;
    crate::names::check_host(host).map_err(ProbeAddressError::Host)
}

/// What is wrong with a node's `probe` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeAddressError {
    /// No `:port`.
    #[error("it has no port")]
    NoPort,
    /// The port is not a number from 1 to 65535.
    #[error("port `{port}` is not a number from 1 to 65535")]
    Port {
        /// The port part.
        port: String,
    },
    /// The host part is not a host name or IP address.
    #[error(transparent)]
    Host(crate::names::HostError),
}

fn program_item(subject: &Subject, action: &'static str, program: &str) -> CheckItem {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if program.contains('/') {
        executable(Path::new(program)).then(|| PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| executable(p))
        })
    };
    let check = format!("{action} program");
    match found {
        Some(p) => CheckItem::ok(subject, check, format!("{} (not run)", p.display())),
        None => CheckItem::bad(
            subject,
            check,
            Status::Error,
            Problem::Program {
                action,
                program: program.into(),
                reason: if program.contains('/') {
                    "is not an executable file"
                } else {
                    "is not an executable file in any PATH directory"
                },
            },
            "install it or give its absolute path",
        ),
    }
}

async fn online_account(inv: &Inventory) -> Vec<CheckItem> {
    let store = crate::Store::open_existing(&inv.store).ok();
    let mut cas = vec![(Subject::Account, CaConfig::primary(inv))];
    if let Some(f) = CaConfig::fallback(inv) {
        cas.push((Subject::Fallback, f));
    }
    let checks = cas.into_iter().map(|(subject, ca)| {
        let store = store.as_ref();
        async move {
            let check = "CA directory and account";
            let stored = match store.map(|s| s.load_account(&ca.directory)) {
                Some(Err(e)) => {
                    return CheckItem::bad(
                        &subject,
                        check,
                        Status::Error,
                        Problem::Store(e),
                        "make the store's accounts/ directory readable",
                    )
                }
                Some(Ok(a)) => a,
                None => None,
            };
            match crate::acme::look_up_account(&ca, stored.as_ref()).await {
                Ok(AccountLookup::Exists(url)) => {
                    CheckItem::ok(&subject, check, format!("{}: account {url} exists", ca.directory))
                }
                Ok(_) => CheckItem::ok(
                    &subject,
                    check,
                    format!(
                        "{}: answers; no account is stored, the first renewal registers one (not created by check)",
                        ca.directory
                    ),
                ),
                Err(e) => {
                    if matches!(e, AcmeError::AccountUnknown { .. }) {
                        if let Some(url) = pending_known(&ca, store).await {
                            return CheckItem::bad(
                                &subject,
                                check,
                                Status::Warning,
                                Problem::RolloverPending {
                                    directory: ca.directory.clone(),
                                    url,
                                },
                                "keep both files; the next certctl command that talks to the CA (renew, run, account rollover) swaps the pending key in",
                            );
                        }
                    }
                    let fix = match &e {
                        AcmeError::AccountUnknown { .. } => {
                            "move the stored account file away; the next renewal registers a new account"
                        }
                        AcmeError::CaBundle { .. } => "point ca_bundle at the CA's PEM certificate",
                        _ => "check account.directory, the network path to the CA, and ca_bundle",
                    };
                    CheckItem::bad(&subject, check, Status::Error, Problem::Acme(e), fix)
                }
            }
        }
    });
    futures::future::join_all(checks).await
}

/// For every certificate with a persist solver: the persistent record of
/// each of its names on every authoritative nameserver, for this CA and the
/// stored account (the check registers no account).
async fn online_persist(inv: &Inventory) -> Vec<CheckItem> {
    let certs: Vec<_> = inv
        .certificates
        .iter()
        .filter(|c| c.persist.is_some())
        .collect();
    if certs.is_empty() {
        return Vec::new();
    }
    let check = "dns-persist-01 record";
    let ca = CaConfig::primary(inv);
    let id = match crate::Store::open_existing(&inv.store) {
        Ok(store) => {
            crate::acme::persist::identity(&ca, &store, crate::acme::persist::AccountUse::Stored)
                .await
        }
        Err(_) => Err(AcmeError::NoStoredAccount {
            directory: ca.directory.clone(),
        }),
    };
    let id = match id {
        Ok(id) => id,
        Err(e) => {
            // Without an account nothing can be checked; with a fallback the
            // first renewal still issues (through dns-01), so it is a warning.
            let fix = "run `certctl persist-record` and publish the records it prints";
            let status = |c: &crate::inventory::CertificateConfig| {
                if c.persist.as_ref().is_some_and(|p| p.fallback.is_some()) {
                    Status::Warning
                } else {
                    Status::Error
                }
            };
            let mut out = vec![CheckItem::bad(
                &Subject::Certificate(certs[0].name.to_string()),
                check,
                status(certs[0]),
                Problem::Acme(e),
                fix,
            )];
            for c in &certs[1..] {
                out.push(CheckItem::bad(
                    &Subject::Certificate(c.name.to_string()),
                    check,
                    status(c),
                    Problem::Acme(AcmeError::NoStoredAccount {
                        directory: ca.directory.clone(),
                    }),
                    fix,
                ));
            }
            return out;
        }
    };
    let id = &id;
    let checks = certs.into_iter().flat_map(|c| {
        c.domains.iter().map(move |d| async move {
            let subject = Subject::Certificate(c.name.to_string());
            let Some(p) = c.persist.as_ref() else {
                return CheckItem::ok(&subject, check, "not a persist certificate");
            };
            match crate::acme::persist::check_served(id, p.resolver.clone(), d).await {
                Ok(()) => CheckItem::ok(
                    &subject,
                    format!("{check} for {d}"),
                    format!("right on every authoritative nameserver ({})", id.version),
                ),
                Err(why) => {
                    let want = id.expected(d, p.policy, p.persist_until);
                    let fix = format!(
                        "publish TXT {} \"{}\" at your DNS provider (`certctl persist-record {}` prints it)",
                        want.name, want.value, c.name
                    );
                    let status = if p.fallback.is_some() {
                        Status::Warning
                    } else {
                        Status::Error
                    };
                    CheckItem::bad(&subject, format!("{check} for {d}"), status, Problem::Persist(Box::new(why)), fix)
                }
            }
        })
    });
    futures::future::join_all(checks).await
}

async fn online_solver(inv: &Inventory, name: &str, cfg: &SolverConfig) -> Vec<CheckItem> {
    let subject = Subject::Solver(name.to_string());
    let SolverConfig::Rfc2136(r) = cfg else {
        return Vec::new();
    };
    let check = "primary accepts a signed UPDATE";
    let Some(domain) = inv
        .certificates
        .iter()
        .find(|c| {
            c.solver == name || c.persist.as_ref().and_then(|p| p.fallback.as_deref()) == Some(name)
        })
        .and_then(|c| c.domains.first())
    else {
        return vec![CheckItem::bad(
            &subject,
            check,
            Status::Warning,
            Problem::SolverUnused,
            "remove the solver, or use it in a certificate",
        )];
    };
    let mut probe_cfg = r.clone();
    probe_cfg.propagation_timeout = r.propagation_timeout.min(PROPAGATION_BOUND);
    probe_cfg.propagation_delay = None;
    let solver = match crate::dns::Rfc2136::new(name, &probe_cfg) {
        Ok(s) => s,
        // The offline item already names a bad secret.
        Err(e) => {
            return vec![CheckItem::bad(
                &subject,
                check,
                Status::Error,
                Problem::Dns(e),
                "fix the TSIG secret (see its offline check)",
            )]
        }
    };
    use crate::dns::DnsSolver as _;
    let value = format!("certctl-preflight-{:016x}", rand::random::<u64>());
    let record = match solver.present(domain, &value).await {
        Ok(rec) => rec,
        Err(e) => {
            let fix = match &e {
                DnsError::Refused { .. } => {
                    "check tsig_key, tsig_algorithm and the secret against the server's key, and its update-policy"
                }
                _ => "check `server` and that the primary is running",
            };
            return vec![CheckItem::bad(
                &subject,
                check,
                Status::Error,
                Problem::Dns(e),
                fix,
            )];
        }
    };
    let mut items = vec![CheckItem::ok(
        &subject,
        check,
        format!(
            "added TXT `{value}` at {} in zone {} via {}",
            record.fqdn, record.zone, r.server
        ),
    )];
    let propagated = solver.wait_propagated(&record).await;
    // Always deleted, whatever the wait said.
    let cleaned = solver.cleanup(&record).await;
    let check = "every authoritative server answers";
    items.push(match propagated {
        Ok(()) if r.skip_propagation_check => {
            CheckItem::ok(&subject, check, "skipped (skip_propagation_check)")
        }
        Ok(()) => CheckItem::ok(
            &subject,
            check,
            format!("every nameserver of {} served the probe", record.zone),
        ),
        Err(e) => CheckItem::bad(
            &subject,
            check,
            Status::Error,
            Problem::Dns(e),
            "start the nameservers that did not answer, or fix the zone's NS records",
        ),
    });
    let check = "probe TXT deleted";
    items.push(match cleaned {
        Ok(()) => CheckItem::ok(&subject, check, format!("removed from {}", record.fqdn)),
        Err(e) => CheckItem::bad(
            &subject,
            check,
            Status::Error,
            Problem::Dns(e),
            format!(
                "delete TXT `{value}` at {} by hand (e.g. nsupdate)",
                record.fqdn
            ),
        ),
    });
    items
}

/// A private directory (0700) for ssh control sockets, removed on drop.
struct ControlDir(PathBuf);

impl ControlDir {
    fn new() -> Result<Self, Problem> {
        use std::os::unix::fs::DirBuilderExt;
        // Unix socket paths are short: always under /tmp.
        let parent = PathBuf::from("/tmp");
        let dir = parent.join(format!(
            "certctl-check-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| Problem::ControlDir {
                dir: parent,
                source,
            })?;
        Ok(Self(dir))
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        // Only this check's directory, which it created.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn online_nodes(inv: &Inventory) -> Vec<CheckItem> {
    if inv.nodes.is_empty() {
        return Vec::new();
    }
    let control = match ControlDir::new() {
        Ok(c) => c,
        Err(p) => {
            return vec![CheckItem::bad(
                &Subject::Node(inv.nodes[0].name.to_string()),
                "ssh connects",
                Status::Error,
                p,
                "make /tmp writable",
            )]
        }
    };
    let trust = Trust {
        system_roots: true,
        bundles: inv.report.trust.clone(),
    };
    let prober = Prober::new(&trust, inv.report.probe_timeout);
    let prober = prober.as_ref();
    let control = &control.0;
    futures::stream::iter(&inv.nodes)
        .map(|n| online_node(inv, n, control, prober))
        .buffered(inv.deploy.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn online_node(
    inv: &Inventory,
    node: &NodeConfig,
    control: &Path,
    prober: Result<&Prober, &ProberError>,
) -> Vec<CheckItem> {
    let subject = Subject::Node(node.name.to_string());
    let sni = inv
        .certificates
        .iter()
        .find(|c| inv.nodes_for(c).any(|n| n.name == node.name))
        .and_then(|c| c.domains.first())
        .map(|d| d.sni())
        .unwrap_or_else(|| node.address.clone());
    let probe = async {
        let check = "probe answers TLS";
        let address = node.probe_address();
        match prober {
            Err(e) => CheckItem::bad(
                &subject,
                check,
                Status::Error,
                Problem::Prober(e.clone()),
                "fix report.trust",
            ),
            Ok(p) => match p.probe(&address, &sni).await {
                Ok(served) => CheckItem::ok(
                    &subject,
                    check,
                    format!(
                        "{address} (SNI {sni}) sent {} certificate(s){}",
                        served.chain.len(),
                        match served.verification {
                            Ok(()) => String::new(),
                            Err(why) => format!("; chain does not verify: {why}"),
                        }
                    ),
                ),
                Err(e) => CheckItem::bad(
                    &subject,
                    check,
                    Status::Error,
                    Problem::Probe(e),
                    "start the TLS server on the node, or set probe to the address it listens on",
                ),
            },
        }
    };
    let remote = async {
        let mut items = Vec::new();
        let t = match transport::connect(node, control).await {
            Ok(t) => t,
            Err(e) => {
                let fix = match &e {
                    TransportError::Refused { .. } => "start sshd on the node, or fix address/port",
                    TransportError::HostKeyUnknown { .. }
                    | TransportError::HostKeyChanged { .. } => {
                        "verify the host key out of band and record it in known_hosts"
                    }
                    TransportError::AuthFailed { .. } => {
                        "authorize the key for the user on the node"
                    }
                    _ => "check address, port, user and ssh_config",
                };
                items.push(CheckItem::bad(
                    &subject,
                    "ssh connects",
                    Status::Error,
                    Problem::Transport(e),
                    fix,
                ));
                return items;
            }
        };
        items.push(CheckItem::ok(
            &subject,
            "ssh connects",
            match node.transport {
                crate::inventory::TransportKind::Local => "local transport".to_string(),
                crate::inventory::TransportKind::Ssh => {
                    format!(
                        "{}@{}:{} (strict host key)",
                        node.user, node.address, node.port
                    )
                }
            },
        ));
        items.push(base_dir_item(&subject, node, t.as_ref()).await);
        items.push(validate_item(&subject, node, t.as_ref()).await);
        t.close().await;
        items
    };
    let (mut items, probe) = tokio::join!(remote, probe);
    items.push(probe);
    items
}

/// The script that proves `base` writable: a file only this run can have
/// made (`set -C` refuses an existing name) is created and removed. A
/// missing `base` is fine if its nearest existing parent is writable, as
/// deploy creates it (`mkdir -p`).
fn base_dir_script(base: &str, tag: &str) -> String {
    format!(
        r#"b={b}
if [ -d "$b" ]; then
  f="$b/.certctl-preflight-{tag}"
  if o=$( (set -C; : > "$f") 2>&1 ); then rm -f "$f"; echo "@ok exists"; exit 0; fi
  printf '@no %s\n%s\n' "$b" "$o"; exit 1
fi
p=$b
while [ ! -d "$p" ]; do p=$(dirname "$p"); done
if [ -w "$p" ]; then echo "@ok missing $p"; exit 0; fi
printf '@no %s\n' "$p"; exit 1
"#,
        b = shell_quote(base),
    )
}

async fn base_dir_item(
    subject: &Subject,
    node: &NodeConfig,
    t: &dyn transport::Transport,
) -> CheckItem {
    let check = "base_dir writable";
    let base = node.base_dir.display().to_string();
    let tag = format!("{:016x}", rand::random::<u64>());
    match t.run(&base_dir_script(&base, &tag), b"").await {
        Err(e) => CheckItem::bad(subject, check, Status::Error, Problem::Transport(e), ""),
        Ok(out) => {
            let text = out.stdout_text();
            let first = text.lines().next().unwrap_or("");
            if out.status.success() && first.starts_with("@ok exists") {
                CheckItem::ok(
                    subject,
                    check,
                    format!("{base} (a probe file was written and removed)"),
                )
            } else if out.status.success() {
                let parent = first.trim_start_matches("@ok missing ").to_string();
                CheckItem::ok(
                    subject,
                    check,
                    format!("{base} does not exist yet; deploy creates it in {parent} (writable)"),
                )
            } else {
                let dir = first.strip_prefix("@no ").unwrap_or(&base).to_string();
                let said: Vec<&str> = text.lines().skip(1).collect();
                let mut output = said.join(" ").trim().to_string();
                if output.is_empty() {
                    output = out.stderr_text();
                }
                if output.is_empty() {
                    output = "permission denied or read-only file system".into();
                }
                CheckItem::bad(
                    subject,
                    check,
                    Status::Error,
                    Problem::NotWritable {
                        node: node.name.to_string(),
                        base_dir: dir,
                        output,
                    },
                    format!(
                        "make {base} writable for {} on the node (mounted read-only? owner and mode?), or set sudo = true",
                        node.user
                    ),
                )
            }
        }
    }
}

async fn validate_item(
    subject: &Subject,
    node: &NodeConfig,
    t: &dyn transport::Transport,
) -> CheckItem {
    let check = "validate command passes";
    // `exit`: the launcher's end marker would otherwise be the last status.
    let script = format!(
        "validate={}\neval \"$validate\" 2>&1 </dev/null\nexit $?\n",
        shell_quote(&node.validate)
    );
    match t.run(&script, b"").await {
        Err(e) => CheckItem::bad(subject, check, Status::Error, Problem::Transport(e), ""),
        Ok(out) if out.status.success() => {
            CheckItem::ok(subject, check, format!("`{}` exited 0", node.validate))
        }
        Ok(out) => CheckItem::bad(
            subject,
            check,
            Status::Error,
            Problem::Validate {
                node: node.name.to_string(),
                command: node.validate.clone(),
                status: out.status,
                output: format!("{}{}", out.stdout_text(), out.stderr_text()),
            },
            "fix the server configuration on the node (a deploy would be rolled back)",
        ),
    }
}

/// The account URL of a pending rollover key the CA knows, if any.
async fn pending_known(ca: &crate::acme::CaConfig, store: Option<&crate::Store>) -> Option<String> {
    let pending = store?.load_pending_account(&ca.directory).ok()??;
    match crate::acme::look_up_account(ca, Some(&pending)).await {
        Ok(AccountLookup::Exists(url)) => Some(url),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(extra: &str, secret: &str) -> (tempfile::TempDir, Inventory) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = dir.path().join("tsig.secret");
        std::fs::write(&s, secret).expect("write");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = format!(
            r#"
[account]
directory = "https://127.0.0.1:14000/dir"

[solvers.ns]
type = "rfc2136"
server = "127.0.0.1"
tsig_key = "certctl-key"
tsig_secret_file = "tsig.secret"

[[certificate]]
name = "www"
domains = ["www.example.test"]
solver = "ns"
{extra}"#
        );
        let path = dir.path().join("certctl.toml");
        let inv = Inventory::from_str(&text, &path).expect("inventory");
        (dir, inv)
    }

    fn item<'a>(p: &'a Preflight, check: &str) -> &'a CheckItem {
        p.items
            .iter()
            .find(|i| i.check == check)
            .unwrap_or_else(|| panic!("no {check} item in {p:?}"))
    }

    #[test]
    fn a_persist_until_in_the_past_is_an_error_offline() {
        let solver = |until: &str| {
            format!("\n[solvers.p]\ntype = \"persist\"\npersist_until = \"{until}\"\n")
        };
        let (_d, inv1) = inv(&solver("2001-01-01T00:00:00Z"), "c2VjcmV0");
        let p = offline(&inv1);
        let i = item(&p, "persist_until");
        assert_eq!(i.status, Status::Error, "{p:?}");
        assert!(
            crate::error_chain(i.problem.as_ref().expect("problem")).contains("has passed"),
            "{i:?}"
        );
        let (_d, inv2) = inv(&solver("2999-01-01T00:00:00Z"), "c2VjcmV0");
        assert_eq!(item(&offline(&inv2), "dns-persist-01").status, Status::Ok);
    }

    #[test]
    fn tsig_keygen_block_passes_offline() {
        let (_d, inv) = inv(
            "",
            "key \"certctl-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n",
        );
        let p = offline(&inv);
        assert_eq!(item(&p, "tsig_secret_file").status, Status::Ok, "{p:?}");
    }

    #[test]
    fn certificate_without_node_is_a_warning_naming_its_groups() {
        let (_d, inv) = inv("", "c2VjcmV0");
        let p = offline(&inv);
        let i = item(&p, "served by a node");
        assert_eq!(i.status, Status::Warning);
        assert!(i.detail().contains("no node serves it"), "{}", i.detail());
        assert_eq!(p.worst(), Status::Warning);
    }

    #[test]
    fn exec_programs_are_looked_up_not_run() {
        let s = Subject::Solver("x".into());
        assert_eq!(program_item(&s, "present", "sh").status, Status::Ok);
        let missing = program_item(&s, "cleanup", "/nonexistent/certctl-hook");
        assert_eq!(missing.status, Status::Error);
        assert!(
            missing.detail().contains("is not an executable file"),
            "{}",
            missing.detail()
        );
        let unknown = program_item(&s, "present", "certctl-no-such-hook");
        assert!(
            unknown.detail().contains("in any PATH directory"),
            "{}",
            unknown.detail()
        );
    }

    #[test]
    fn probe_must_be_host_and_port() {
        assert!(parse_probe("192.0.2.1:443").is_ok());
        assert!(parse_probe("[::1]:8443").is_ok());
        assert!(parse_probe("edge.example:443").is_ok());
        assert!(parse_probe("192.0.2.1").is_err());
        assert!(parse_probe("edge.example:https").is_err());
        assert!(parse_probe("$(x):443").is_err());
    }

    #[test]
    fn json_item_carries_subject_check_status_detail_fix() {
        let (_d, inv) = inv("", "not base64!");
        let p = offline(&inv);
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["schema"], SCHEMA);
        // The store's row comes first, then the solver's.
        assert_eq!(v["items"][0]["subject"], "store");
        let i = &v["items"][1];
        assert_eq!(i["subject"], "solver");
        assert_eq!(i["name"], "ns");
        assert_eq!(i["status"], "error");
        assert!(i["detail"]
            .as_str()
            .expect("detail")
            .contains("not valid base64"));
        assert!(i["fix"].as_str().expect("fix").contains("tsig-keygen"));
    }

    #[tokio::test]
    async fn base_dir_check_leaves_nothing_and_never_removes_a_file_it_did_not_make() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = base_dir_script(dir.path().to_str().expect("utf8"), "t1");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
        let missing = dir.path().join("a/b");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(base_dir_script(missing.to_str().expect("utf8"), "t2"))
            .output()
            .expect("sh");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("@ok missing"));
        assert!(!dir.path().join("a").exists());
        // A file of that name that this run did not make is never removed.
        let theirs = dir.path().join(".certctl-preflight-t3");
        std::fs::write(&theirs, "not ours").expect("write");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(base_dir_script(dir.path().to_str().expect("utf8"), "t3"))
            .output()
            .expect("sh");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(std::fs::read(&theirs).expect("still there"), b"not ours");
    }
}
