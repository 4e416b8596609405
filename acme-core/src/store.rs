//! The local store: the ACME account, every issued version of every
//! certificate, the `live/<name>` links, and small state files (renewal
//! back-off, deployments). Every write is atomic (temp file, fsync, rename,
//! fsync of the directory); keys are 0600 and directories 0700; one lock per
//! store keeps two certctl processes from interleaving.
//!
//! A store is certctl's only when certctl made it: [`Store::open`] writes the
//! marker [`MARKER`] into a directory it creates or adopts (missing or empty),
//! and refuses everything else that is not already marked (see
//! [`validate_location`]). Mode repair, pruning and every other change touch
//! only the paths below, never a file certctl did not write.
//!
//! ```text
//! <root>/.certctl-store
//! <root>/lock
//! <root>/accounts/<sha256 of directory URL>.json
//! <root>/archive/<name>/<version>/{cert,chain,fullchain,privkey}.pem, meta.json
//! <root>/live/<name> -> ../archive/<name>/<version>
//! <root>/state/<name>/renewal.json, node-<node>.json
//! <root>/health/run.json
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use time::OffsetDateTime;

use crate::inventory::KeyType;
use crate::names::CertName;

mod api;
mod audit;
mod copy;
mod etcd;
mod etcd_tls;
pub mod seal;
pub use api::{
    AccountId, AsStoreConfig, Backend, NodeFence, Record, Store, StoreConfig, VersionFiles,
};
#[cfg(test)]
pub(crate) use audit::install_self_signed;
pub use audit::{Audit, Damage, Part, Problem};
pub use copy::{copy, Copied, CopyError};
#[cfg(test)]
pub(crate) use etcd::{seal_live_key_elsewhere, test_store as etcd_test_store};
pub use etcd::{EtcdConfig, Rekeyed, CONNECT_TIMEOUT, MAX_REQUEST_BYTES, REQUEST_TIMEOUT};
pub use etcd_tls::EtcdTls;
pub use seal::{DataKey, KeyFileError, SealError};

/// A store failure. Each names the path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on a store path failed.
    #[error("store: cannot {action} {path}{hint}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// A hint for the fix, e.g. about free space.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the store lock.
    #[error("store {path} is locked by another certctl run{holder}; waited {waited:?} (it will be free when that run ends)")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// ` (pid N)` if known.
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A state or metadata file could not be parsed.
    #[error("store: {path} is corrupt (move it away to start that record afresh)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded as JSON (a bug: report it).
    #[error("store: cannot encode {path} as JSON")]
    Encode {
        /// The file it was for.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// `live/<name>` points at a target without a version component.
    #[error("store: {path} is corrupt: link target {} has no version; move it away to start that record afresh", .target.display())]
    LinkWithoutVersion {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// No such certificate version.
    #[error("store has no version {version} of certificate `{name}`")]
    NoSuchVersion {
        /// Certificate name.
        name: String,
        /// Version.
        version: String,
    },
    /// The path cannot be a store: certctl did not make it and will not
    /// write there. Nothing was changed.
    #[error("store {path}{via} cannot be used: {found}; {fix}", via = via_link(.resolved), fix = .found.fix())]
    Refused {
        /// The store path as configured.
        path: PathBuf,
        /// Where the path leads when it is a symbolic link.
        resolved: Option<PathBuf>,
        /// What is there.
        found: Found,
    },
    /// A release file is missing (a store that is not a directory).
    #[error("store: {} is missing", .path.display())]
    NoSuchFile {
        /// The file (or etcd key).
        path: PathBuf,
    },
    /// An etcd request failed: the cluster is unreachable, has no quorum,
    /// or refused it. Nothing was changed by this request.
    #[error("store {store}: cannot {action} (is etcd running and does it have a quorum?)")]
    Etcd {
        /// What was being done.
        action: &'static str,
        /// The store (endpoints and prefix).
        store: String,
        /// The client's error (boxed: it is large).
        #[source]
        source: Box<etcd_client::Error>,
    },
    /// A `tls_ca`, `tls_cert` or `tls_key` file of an etcd store could not be read.
    #[error("store: cannot read {} (etcd TLS)", .file.display())]
    EtcdTlsRead {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A `tls_ca`, `tls_cert` or `tls_key` file does not hold what it should.
    #[error("store: {} does not hold {want} (etcd TLS); check the [store] table's tls_ca, tls_cert and tls_key", .file.display())]
    EtcdTlsFile {
        /// The file.
        file: PathBuf,
        /// What it should hold.
        want: &'static str,
    },
    /// The TLS handshake with an etcd member failed: its certificate is not
    /// signed by `tls_ca` or does not name the endpoint's host, or it
    /// refused this controller's client certificate (or its absence).
    #[error("store: TLS with etcd member {endpoint} failed; check tls_ca (the CA of the members' certificates, which must name the endpoint's host) and, if the cluster runs with --client-cert-auth, tls_cert and tls_key")]
    EtcdTls {
        /// The endpoint, `https://host:port`.
        endpoint: String,
        /// The handshake's error.
        #[source]
        source: io::Error,
    },
    /// An etcd request got no answer in time (no quorum, or unreachable).
    #[error("store {store}: cannot {action}: no answer within {after:?} (is etcd running and does it have a quorum?)")]
    EtcdTimeout {
        /// What was being done.
        action: &'static str,
        /// The store.
        store: String,
        /// The bound.
        after: Duration,
    },
    /// Another controller holds the etcd store lock.
    #[error("store {store} is locked by another certctl run{holder}; waited {waited:?} (it will be free when that run ends or its lease expires)")]
    EtcdLocked {
        /// The store.
        store: String,
        /// ` (host H, pid P, since T)` if known.
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A write of a run whose lock is no longer its own was refused.
    #[error("store {store}: refused to write {key}: this run no longer holds the store lock (its lease expired, e.g. while it was paused; another controller may have taken over); nothing more is written")]
    Fenced {
        /// The store.
        store: String,
        /// The key it tried to write.
        key: String,
    },
    /// The lock's lease could not be kept alive: the run stops writing.
    #[error("store {store}: the lock's lease (TTL {ttl:?}) was lost; this run stops here and changes nothing more")]
    LeaseLost {
        /// The store.
        store: String,
        /// The lease TTL.
        ttl: Duration,
    },
    /// A compare-and-swap found the key changed since it was read.
    #[error("store: {key} changed while this run was writing it; run again")]
    LiveMoved {
        /// The key.
        key: String,
    },
    /// A version would not fit into one etcd request.
    #[error("store: version {version} of certificate `{name}` is {bytes} bytes, over etcd's request limit of {limit} bytes (raise etcd's --max-request-bytes, or use a smaller key or chain)")]
    TooLarge {
        /// Certificate name.
        name: String,
        /// Version.
        version: String,
        /// Size of its request.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The version already exists.
    #[error("store already has version {version} of certificate `{name}`")]
    VersionExists {
        /// Certificate name.
        name: String,
        /// Version.
        version: String,
    },
    /// The data key file is missing, loose or malformed.
    #[error(transparent)]
    DataKey(#[from] KeyFileError),
    /// The data key is not the one the store is sealed with.
    #[error("the store is sealed with data key {store_key}, but key_file {} holds key {have}: install the store's key file on this controller (after `certctl store rekey`, the new one); nothing was changed", .file.display())]
    WrongDataKey {
        /// The key file.
        file: PathBuf,
        /// Its key id.
        have: String,
        /// The key id the store names.
        store_key: String,
    },
    /// A sealed value does not open with the data key.
    #[error("store: {key} cannot be unsealed with the data key in {}; nothing was changed", .file.display())]
    Sealed {
        /// The etcd key.
        key: String,
        /// The key file.
        file: PathBuf,
        /// Why (boxed: keeps the error small).
        #[source]
        source: Box<SealError>,
    },
    /// No store under the prefix yet.
    #[error("store {store} does not exist yet (no marker): run `certctl issue` or `certctl store import` first")]
    EtcdNoStore {
        /// The store.
        store: String,
    },
    /// The prefix holds something that is not a certctl store.
    #[error("store {store}: {key} is not certctl's marker; refusing to use this prefix (choose another `prefix`)")]
    EtcdNotAStore {
        /// The store.
        store: String,
        /// The marker key.
        key: String,
    },
    /// A write on an etcd store opened read-only.
    #[error("store {store} is open read-only: refusing to {action}")]
    EtcdReadOnly {
        /// The store.
        store: String,
        /// The write that was refused.
        action: &'static str,
    },
    /// A re-key to another key is under way.
    #[error(
        "store {store}: a re-key to data key {to} is under way; finish it with that key file first"
    )]
    RekeyUnderWay {
        /// The store.
        store: String,
        /// The key id being re-keyed to.
        to: String,
    },
    /// A live version could not be read or unsealed, so it cannot be
    /// judged; certctl does not issue anew over it.
    #[error("store: {} cannot be read or unsealed (a wrong key_file, or the store unreachable); not issuing a new version over it", .path.display())]
    Unverified {
        /// The file or etcd key.
        path: PathBuf,
    },
    /// The etcd client's runtime could not be started.
    #[error("store: cannot start the etcd client's runtime")]
    Runtime(#[source] io::Error),
    /// A write on a store opened read-only (`--dry-run`, `list`, `report`).
    #[error("store {path} is open read-only: refusing to {action}")]
    ReadOnly {
        /// The store root.
        path: PathBuf,
        /// The write that was refused.
        action: &'static str,
    },
}

fn via_link(resolved: &Option<PathBuf>) -> String {
    resolved
        .as_ref()
        .map(|r| format!(" (a symbolic link to {})", r.display()))
        .unwrap_or_default()
}

/// The name of the marker file certctl writes into the root of a store it
/// created or adopted.
pub const MARKER: &str = ".certctl-store";

/// The marker's first line; the number is the store format.
const MARKER_HEAD: &str = "certctl-store";
/// The store format this certctl writes and reads.
const STORE_FORMAT: u32 = 1;
/// A marker is one short line and a comment; anything larger is not ours.
const MARKER_MAX: u64 = 4096;

/// What was found at a store path that cannot be a store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Found {
    /// The path is empty (`store = ""`).
    EmptyPath,
    /// The file system root.
    FilesystemRoot,
    /// A regular file.
    RegularFile,
    /// A block or character device.
    Device,
    /// A named pipe (FIFO).
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A symbolic link to nothing.
    DanglingLink {
        /// The link's target.
        target: PathBuf,
    },
    /// A directory that holds other things and is not a certctl store.
    ForeignDirectory {
        /// How many entries are not certctl's.
        count: usize,
        /// The first few of them, relative to the path.
        examples: Vec<PathBuf>,
    },
    /// A marker this certctl cannot accept.
    BadMarker {
        /// What is wrong with it.
        problem: MarkerProblem,
    },
}

/// What is wrong with a store's marker file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarkerProblem {
    /// It is not a regular file (a directory, a link, a FIFO…).
    NotAFile,
    /// It is larger than a marker can be.
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// Its first line is not certctl's.
    Unrecognised,
    /// A newer certctl made the store.
    NewerFormat {
        /// The store format in the marker.
        format: u32,
    },
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::EmptyPath => f.write_str("the path is empty"),
            Found::FilesystemRoot => f.write_str("it is the file system root"),
            Found::RegularFile => f.write_str("it is a regular file, not a directory"),
            Found::Device => f.write_str("it is a device, not a directory"),
            Found::Fifo => f.write_str("it is a named pipe (FIFO), not a directory"),
            Found::Socket => f.write_str("it is a socket, not a directory"),
            Found::DanglingLink { target } => write!(
                f,
                "it is a symbolic link to {}, which does not exist",
                target.display()
            ),
            Found::ForeignDirectory { count, examples } => {
                write!(
                    f,
                    "it is a non-empty directory that is not a certctl store (no {MARKER} marker; {count} foreign entr{}: ",
                    if *count == 1 { "y" } else { "ies" }
                )?;
                for (i, e) in examples.iter().enumerate() {
                    // Debug quotes and escapes control characters in untrusted names.
                    write!(f, "{}{:?}", if i > 0 { ", " } else { "" }, e)?;
                }
                if *count > examples.len() {
                    f.write_str(", …")?;
                }
                f.write_str(")")
            }
            Found::BadMarker { problem } => match problem {
                MarkerProblem::NotAFile => write!(f, "its {MARKER} is not a regular file"),
                MarkerProblem::TooLarge { size } => write!(
                    f,
                    "its {MARKER} has {size} bytes, more than a marker's {MARKER_MAX}"
                ),
                MarkerProblem::Unrecognised => {
                    write!(f, "its {MARKER} does not start with `{MARKER_HEAD} <format>`")
                }
                MarkerProblem::NewerFormat { format } => write!(
                    f,
                    "it is a store of format {format}, made by a newer certctl (this one reads format {STORE_FORMAT})"
                ),
            },
        }
    }
}

impl Found {
    /// What to do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            Found::EmptyPath | Found::FilesystemRoot => {
                "set `store` to a directory of certctl's own, e.g. \"/var/lib/certctl\" (certctl creates it)"
            }
            Found::RegularFile | Found::Device | Found::Fifo | Found::Socket | Found::DanglingLink { .. } => {
                "set `store` to a new or empty directory (certctl creates a missing one), or to an existing certctl store"
            }
            Found::ForeignDirectory { .. } => {
                "set `store` to a new or empty directory, or to an existing certctl store; certctl never writes into a directory it did not make"
            }
            Found::BadMarker { problem: MarkerProblem::NewerFormat { .. } } => {
                "run the newer certctl that made it, or set `store` to another directory"
            }
            Found::BadMarker { .. } => {
                "if this is a certctl store, move the marker away and point `store` at it again (certctl re-marks a store it recognises); otherwise set `store` to another directory"
            }
        }
    }
}

/// What a store path holds, as far as certctl is concerned: a place it may
/// use. Anything else is a [`StoreError::Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// Nothing there yet: a writing command creates and marks the store.
    Missing,
    /// An empty directory: a writing command adopts it (writes the marker).
    EmptyDirectory,
    /// A directory with certctl's marker.
    Marked,
    /// A directory with only certctl's layout, made before stores were
    /// marked: a writing command adds the marker.
    UnmarkedLayout,
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| {
        let hint = match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => " (the disk is full: free space there and run again; the previous version is untouched)",
            Some(libc::EACCES) | Some(libc::EPERM) => " (permission denied: run as the store's owner)",
            Some(libc::EROFS) => " (read-only file system: make the store writable, e.g. ReadWritePaths= in the unit)",
            _ => "",
        };
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            hint,
            source,
        }
    }
}

/// A fix applied when the store was opened (modes that were too loose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The path.
    pub path: PathBuf,
    /// Mode found.
    pub was: u32,
    /// Mode set.
    pub now: u32,
}

/// The directory store (the default backend).
#[derive(Debug)]
pub(crate) struct DirStore {
    root: PathBuf,
    /// False for a store opened read-only: every write is refused.
    writable: bool,
}

/// The exclusive store lock, released on drop (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _held: Held,
}

/// What keeps a lock held.
#[derive(Debug)]
enum Held {
    /// The directory store's `flock(2)` on `<root>/lock`.
    File(#[allow(dead_code)] File),
    /// The etcd store's lease (revoked on drop).
    Etcd(#[allow(dead_code)] etcd::LockGuard),
}

/// New certificate material to install.
pub struct Material {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The issuer chain, PEM (may be empty).
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: crate::secret::Secret,
    /// Facts recorded beside the files.
    pub meta: ReleaseMeta,
}

/// Facts about a release, stored as `meta.json` so listing needs no parsing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseMeta {
    /// The names in the certificate.
    pub domains: Vec<String>,
    /// Key algorithm.
    pub key_type: KeyType,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Validity start.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Validity end.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// ACME directory that issued it.
    pub directory: String,
    /// ARI certificate identifier (RFC 9773 §4.1), if computed.
    #[serde(default)]
    pub ari_id: Option<String>,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub stored_at: OffsetDateTime,
}

/// A stored version of a certificate.
#[derive(Debug, Clone)]
pub struct Release {
    /// Certificate name.
    pub name: String,
    /// Version (directory name).
    pub version: String,
    /// The version directory.
    pub dir: PathBuf,
    /// Its facts.
    pub meta: ReleaseMeta,
    /// The files as fetched from a store that is not a directory (etcd:
    /// fetched in one read, the key unsealed); `None` for the directory
    /// store, whose files are read from `dir`.
    pub(crate) fetched: Option<std::sync::Arc<api::Fetched>>,
}

impl Release {
    /// Path of one of the PEM files (`cert`, `chain`, `fullchain`,
    /// `privkey`), or `meta` for `meta.json`. For the etcd store this is
    /// the key's path under the prefix, for messages.
    pub fn file(&self, which: &str) -> PathBuf {
        match (which, &self.fetched) {
            (_, Some(_)) => self.dir.join(which),
            ("meta", None) => self.dir.join("meta.json"),
            (_, None) => self.dir.join(format!("{which}.pem")),
        }
    }

    /// Reads one of the PEM files (or `meta`, the bytes of `meta.json`),
    /// from whichever store the release came from.
    pub fn read(&self, which: &str) -> Result<Vec<u8>> {
        if let Some(f) = &self.fetched {
            return f.get(which).ok_or_else(|| StoreError::NoSuchFile {
                path: self.file(which),
            });
        }
        let p = self.file(which);
        let kind = if which == "meta" {
            crate::fsread::FileKind::State
        } else {
            crate::fsread::FileKind::Pem
        };
        crate::fsread::read_file(&p, kind).map_err(io_err("read", &p))
    }
}

/// The four files of a release, in upload order (key first, so a linked
/// release always has its key).
pub const RELEASE_FILES: [&str; 4] = ["privkey", "cert", "chain", "fullchain"];

impl DirStore {
    /// Opens the store at `root` for writing: creates and marks it when the
    /// path is missing, adopts (marks) an empty directory, marks a store made
    /// before stores were marked, and refuses everything else (see
    /// [`validate_location`]). Then tightens loose modes on the paths certctl
    /// wrote; the fixes are returned.
    pub(crate) fn open(root: &Path) -> Result<(Self, Vec<Repair>)> {
        let location = validate_location(root)?;
        let store = DirStore {
            root: root.to_path_buf(),
            writable: true,
        };
        if location == Location::Missing {
            create_dir_private(root)?;
        }
        if location != Location::Marked {
            write_marker(root)?;
            if location == Location::UnmarkedLayout {
                tracing::warn!(path = %root.display(), "marked an existing certctl store as certctl's (wrote {MARKER}; stores made before this version had no marker)");
            }
        }
        for d in ["accounts", "archive", "live", "state"] {
            create_dir_private(&root.join(d))?;
        }
        let repairs = store.repair_modes()?;
        for r in repairs.iter().take(10) {
            tracing::debug!(path = %r.path.display(), was = format!("{:o}", r.was), now = format!("{:o}", r.now), "tightened loose permissions in the store");
        }
        Ok((store, repairs))
    }

    /// Opens an existing store read-only: nothing is created, marked or
    /// changed, and every write is refused. A missing store is an error; a
    /// path that cannot be a store is refused as by [`Store::open`].
    pub(crate) fn open_existing(root: &Path) -> Result<Self> {
        if validate_location(root)? == Location::Missing {
            // The OS's own words: no such file or directory.
            fs::metadata(root).map_err(io_err("open store", root))?;
        }
        Ok(DirStore {
            root: root.to_path_buf(),
            writable: false,
        })
    }

    /// Opens the store read-only for a dry run: like [`Store::open_existing`],
    /// but a missing store is an empty one ("nothing stored yet") and still
    /// nothing is created.
    pub(crate) fn open_read_only(root: &Path) -> Result<Self> {
        validate_location(root)?;
        Ok(DirStore {
            root: root.to_path_buf(),
            writable: false,
        })
    }

    /// The store's root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// False when opened read-only ([`Store::open_existing`],
    /// [`Store::open_read_only`]): writes are refused.
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    fn writable(&self, action: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(StoreError::ReadOnly {
                path: self.root.clone(),
                action,
            })
        }
    }

    fn repair_modes(&self) -> Result<Vec<Repair>> {
        self.writable("repair modes")?;
        self.check_modes(true)
    }

    /// Paths certctl wrote whose modes are looser than it writes them (keys,
    /// accounts, state and the lock 0600, other files 0644, directories
    /// 0700), without changing them: for read-only commands, which report
    /// them; a writing command repairs them.
    pub(crate) fn loose_modes(&self) -> Result<Vec<Repair>> {
        self.check_modes(false)
    }

    /// Walks only certctl's layout (never following a link); anything else
    /// found is foreign and left alone. A repair only removes bits.
    fn check_modes(&self, repair: bool) -> Result<Vec<Repair>> {
        let mut repairs = Vec::new();
        let mut foreign: Vec<PathBuf> = Vec::new();
        let mut fix = |p: &Path, want: u32| -> Result<()> {
            let meta = match fs::symlink_metadata(p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("inspect", p)(e)),
            };
            let ft = meta.file_type();
            if !(ft.is_dir() || ft.is_file()) {
                return Ok(());
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode & !want != 0 {
                let now = mode & want;
                if repair {
                    fs::set_permissions(p, fs::Permissions::from_mode(now))
                        .map_err(io_err("chmod", p))?;
                }
                repairs.push(Repair {
                    path: p.to_path_buf(),
                    was: mode,
                    now,
                });
            }
            Ok(())
        };
        if !self.root.is_dir() {
            return Ok(repairs);
        }
        fix(&self.root, 0o700)?;
        for (p, name, ft) in entries(&self.root)? {
            match (name.as_str(), ft.is_dir(), ft.is_file()) {
                ("accounts" | "archive" | "live" | "state" | "health", true, _) => fix(&p, 0o700)?,
                ("lock", _, true) => fix(&p, 0o600)?,
                (MARKER, _, true) => fix(&p, 0o644)?,
                _ if is_temp_name(&name) => {}
                _ => foreign.push(p),
            }
        }
        for (p, name, ft) in entries(&self.root.join("accounts"))? {
            if ft.is_file() && is_account_file(&name) {
                fix(&p, 0o600)?;
            } else if !is_temp_name(&name) {
                foreign.push(p);
            }
        }
        for (p, record, ft) in entries(&self.root.join("health"))? {
            if ft.is_file() && record.ends_with(".json") && !record.starts_with('.') {
                fix(&p, 0o600)?;
            } else if !is_temp_name(&record) {
                foreign.push(p);
            }
        }
        for (name_dir, name, ft) in entries(&self.root.join("archive"))? {
            if !ft.is_dir() || CertName::new(&name).is_err() {
                foreign.push(name_dir);
                continue;
            }
            fix(&name_dir, 0o700)?;
            for (v, version, ft) in entries(&name_dir)? {
                if version.starts_with(".tmp-") {
                    continue; // an install under way or torn; cleaned by the next install
                }
                if !ft.is_dir() || !is_version_name(&version) {
                    foreign.push(v);
                    continue;
                }
                fix(&v, 0o700)?;
                for (f, want) in VERSION_FILES {
                    fix(&v.join(f), want)?;
                }
            }
        }
        for (name_dir, name, ft) in entries(&self.root.join("state"))? {
            if !ft.is_dir() || CertName::new(&name).is_err() {
                foreign.push(name_dir);
                continue;
            }
            fix(&name_dir, 0o700)?;
            for (p, record, ft) in entries(&name_dir)? {
                if ft.is_file() && record.ends_with(".json") && !record.starts_with('.') {
                    fix(&p, 0o600)?;
                } else if !is_temp_name(&record) {
                    foreign.push(p);
                }
            }
        }
        if let Some(first) = foreign.first() {
            tracing::warn!(store = %self.root.display(), count = foreign.len(), first = ?first, "left alone: entries in the store that certctl did not write (modes unchanged)");
        }
        Ok(repairs)
    }

    /// Takes the exclusive store lock, waiting up to `wait`.
    pub(crate) fn lock(&self, wait: Duration) -> Result<StoreLock> {
        self.writable("take the lock")?;
        let path = self.root.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        let start = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= wait {
                        let holder = fs::read_to_string(&path)
                            .ok()
                            .and_then(|s| s.trim().parse::<u32>().ok())
                            .map(|p| format!(" (pid {p})"))
                            .unwrap_or_default();
                        return Err(StoreError::Locked {
                            path,
                            holder,
                            waited: start.elapsed(),
                        });
                    }
                    std::thread::sleep(delay.min(wait.saturating_sub(start.elapsed())));
                    delay = (delay * 2).min(Duration::from_millis(250));
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
            }
        }
        // Record who holds it, for the message a waiting run prints.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(StoreLock {
            _held: Held::File(file),
        })
    }

    /// `accounts/<digest>.json` or `accounts/<digest>.pending.json`.
    fn account_path(&self, id: &AccountId) -> PathBuf {
        let suffix = if id.pending { ".pending.json" } else { ".json" };
        self.root
            .join("accounts")
            .join(format!("{}{suffix}", id.digest))
    }

    /// The account slots stored, by file name.
    pub(crate) fn account_ids(&self) -> Result<Vec<AccountId>> {
        Ok(entries(&self.root.join("accounts"))?
            .into_iter()
            .filter(|(_, n, ft)| ft.is_file() && is_account_file(n))
            .filter_map(|(_, n, _)| {
                let stem = n.strip_suffix(".json")?;
                Some(match stem.strip_suffix(".pending") {
                    Some(d) => AccountId {
                        digest: d.to_string(),
                        pending: true,
                    },
                    None => AccountId {
                        digest: stem.to_string(),
                        pending: false,
                    },
                })
            })
            .collect())
    }

    /// Account credentials in slot `id`, `None` if there are none.
    pub(crate) fn read_account(&self, id: &AccountId) -> Result<Option<crate::secret::Secret>> {
        let p = self.account_path(id);
        match crate::fsread::read_file(&p, crate::fsread::FileKind::Account) {
            Ok(b) => Ok(Some(crate::secret::Secret::new(b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(id.reading(), &p)(e)),
        }
    }

    /// Stores credentials (JSON, mode 0600) in slot `id`.
    pub(crate) fn write_account(&self, id: &AccountId, json: &[u8]) -> Result<()> {
        self.writable(id.saving())?;
        write_atomic(&self.account_path(id), json, 0o600)
    }

    /// Removes the credentials in slot `id` (gone already is fine), durably.
    pub(crate) fn remove_account(&self, id: &AccountId) -> Result<()> {
        self.writable(id.removing())?;
        let p = self.account_path(id);
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(p.parent().unwrap_or(Path::new("."))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(id.removing_file(), &p)(e)),
        }
    }

    /// Makes the pending credentials the account's (the CA has the new
    /// key): one `rename(2)` over the current file, then an fsync of the
    /// directory, so either file is whole at every moment.
    pub(crate) fn promote_pending_account(&self, digest: &str) -> Result<()> {
        self.writable("promote the pending account key")?;
        let from = self.account_path(&AccountId {
            digest: digest.into(),
            pending: true,
        });
        let to = self.account_path(&AccountId {
            digest: digest.into(),
            pending: false,
        });
        fs::rename(&from, &to).map_err(io_err("promote pending account", &to))?;
        sync_dir(to.parent().unwrap_or(Path::new(".")))
    }

    fn archive_dir(&self, name: &str) -> PathBuf {
        self.root.join("archive").join(name)
    }

    fn live_link(&self, name: &str) -> PathBuf {
        self.root.join("live").join(name)
    }

    /// Writes version `version` of `name` (not live yet).
    ///
    /// The version directory is written under a temporary name, each file
    /// fsynced, then renamed into place. A crash at any point leaves no
    /// version (a leftover temporary directory is cleaned by the next one).
    pub(crate) fn store_version(
        &self,
        name: &str,
        version: &str,
        v: &VersionFiles<'_>,
    ) -> Result<()> {
        self.writable("install a version")?;
        let archive = self.archive_dir(name);
        create_dir_private(&archive)?;
        self.clean_temp(&archive);
        let tmp = archive.join(format!(".tmp-{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        create_dir_private(&tmp)?;
        let files: [(&str, &[u8], u32); 5] = [
            ("privkey.pem", v.privkey, 0o600),
            ("cert.pem", v.cert, 0o644),
            ("chain.pem", v.chain, 0o644),
            ("fullchain.pem", v.fullchain, 0o644),
            ("meta.json", v.meta, 0o644),
        ];
        let written = (|| {
            for (f, bytes, mode) in files {
                write_new(&tmp.join(f), bytes, mode)?;
            }
            sync_dir(&tmp)?;
            let dest = archive.join(version);
            fs::rename(&tmp, &dest).map_err(io_err("rename into place", &dest))?;
            sync_dir(&archive)
        })();
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Points `live/<name>` at `version` with one rename(2).
    pub(crate) fn set_live(&self, name: &str, version: &str) -> Result<()> {
        self.writable("swap a live link")?;
        let target = Path::new("..").join("archive").join(name).join(version);
        if !self.archive_dir(name).join(version).is_dir() {
            return Err(StoreError::NoSuchVersion {
                name: name.into(),
                version: version.into(),
            });
        }
        let live = self.root.join("live");
        let tmp = live.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("create link", &tmp))?;
        let link = self.live_link(name);
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("swap live link", &link)(e));
        }
        sync_dir(&live)
    }

    fn clean_temp(&self, archive: &Path) {
        if let Ok(rd) = fs::read_dir(archive) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// The version `live/<name>` points at, if any.
    pub(crate) fn live_version(&self, name: &str) -> Result<Option<String>> {
        let link = self.live_link(name);
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read live link", &link)(e)),
        };
        let Some(version) = target.file_name().and_then(|v| v.to_str()) else {
            return Err(StoreError::LinkWithoutVersion { path: link, target });
        };
        Ok(Some(version.to_string()))
    }

    /// Reads the release `version` of `name`.
    pub(crate) fn read_release(&self, name: &str, version: &str) -> Result<Release> {
        let dir = self.archive_dir(name).join(version);
        let meta_path = dir.join("meta.json");
        let meta: ReleaseMeta = match read_json(&meta_path)? {
            Some(m) => m,
            None => {
                return Err(StoreError::NoSuchVersion {
                    name: name.into(),
                    version: version.into(),
                })
            }
        };
        Ok(Release {
            name: name.into(),
            version: version.into(),
            dir,
            meta,
            fetched: None,
        })
    }

    /// All versions of `name` certctl wrote (a version-named directory with
    /// its `meta.json`), oldest first; anything else in `archive/<name>/` is
    /// not a version.
    pub(crate) fn versions(&self, name: &str) -> Result<Vec<String>> {
        let mut v: Vec<String> = entries(&self.archive_dir(name))?
            .into_iter()
            .filter(|(p, f, ft)| {
                ft.is_dir()
                    && is_version_name(f)
                    && fs::symlink_metadata(p.join("meta.json")).is_ok_and(|m| m.is_file())
            })
            .map(|(_, f, _)| f)
            .collect();
        v.sort();
        Ok(v)
    }

    /// Names with a live link, sorted.
    pub(crate) fn names(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = read_dir_sorted(&self.root.join("live"))?
            .into_iter()
            .filter_map(|p| p.file_name().and_then(|f| f.to_str()).map(String::from))
            .filter(|f| !f.starts_with('.'))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Removes old versions of `name`, keeping the newest `keep`, the live one
    /// and the one before it. Only a complete certctl version (exactly the
    /// files [`Store::install`] writes) is removed; a version directory
    /// holding anything else is left alone.
    pub(crate) fn prune(&self, name: &str, keep: usize) -> Result<Vec<String>> {
        self.writable("prune")?;
        let versions = self.versions(name)?;
        let live = self.live_version(name)?;
        let mut removed = Vec::new();
        for v in prune_candidates(&versions, live.as_deref(), keep) {
            if self.remove_version(name, &v)? {
                removed.push(v);
            }
        }
        Ok(removed)
    }

    /// Removes the version `version` of `name` if it is a complete certctl
    /// version and not the live one; `false` (and a warning) when it is
    /// left alone.
    pub(crate) fn remove_version(&self, name: &str, version: &str) -> Result<bool> {
        self.writable("remove an old version")?;
        if self.live_version(name)?.as_deref() == Some(version) {
            tracing::warn!(name, version, "left alone: it is the live version");
            return Ok(false);
        }
        let p = self.archive_dir(name).join(version);
        if !is_complete_version(&p)? {
            tracing::warn!(path = %p.display(), "left alone: not a complete certctl version (it holds files certctl did not write, or lacks some)");
            return Ok(false);
        }
        fs::remove_dir_all(&p).map_err(io_err("remove old version", &p))?;
        sync_dir(&self.archive_dir(name))?;
        Ok(true)
    }

    /// The file of a health or state record.
    pub(crate) fn record_path(&self, r: Record<'_>) -> PathBuf {
        match r {
            Record::Health(record) => self.root.join("health").join(format!("{record}.json")),
            Record::State { name, record } => self.state_dir(name).join(format!("{record}.json")),
        }
    }

    /// The bytes of a record; `None` if it does not exist.
    pub(crate) fn read_record(&self, r: Record<'_>) -> Result<Option<Vec<u8>>> {
        let path = self.record_path(r);
        match crate::fsread::read_file(&path, crate::fsread::FileKind::State) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Writes a record atomically (mode 0600).
    pub(crate) fn write_record(&self, r: Record<'_>, bytes: &[u8]) -> Result<()> {
        self.writable(match r {
            Record::Health(_) => "write health",
            Record::State { .. } => "write state",
        })?;
        let path = self.record_path(r);
        if let Some(dir) = path.parent() {
            create_dir_private(dir)?;
        }
        write_atomic(&path, bytes, 0o600)
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.root.join("state").join(name)
    }

    /// The names of the records in `health/`.
    pub(crate) fn health_records(&self) -> Result<Vec<String>> {
        Ok(stems(read_dir_sorted(&self.root.join("health"))?))
    }

    /// The names of the state records kept for certificate `name`.
    pub(crate) fn state_records(&self, name: &str) -> Result<Vec<String>> {
        Ok(stems(read_dir_sorted(&self.state_dir(name))?))
    }
}

/// The `<stem>` of every `<stem>.json` that is not hidden.
fn stems(paths: Vec<PathBuf>) -> Vec<String> {
    paths
        .into_iter()
        .filter_map(|p| {
            let f = p.file_name()?.to_str()?;
            f.strip_suffix(".json")
                .filter(|stem| !stem.starts_with('.'))
                .map(String::from)
        })
        .collect()
}

/// The versions (oldest first) a prune removes: all but the newest `keep`,
/// never the live one nor the one before it.
fn prune_candidates(versions: &[String], live: Option<&str>, keep: usize) -> Vec<String> {
    let live_idx = live.and_then(|l| versions.iter().position(|v| v == l));
    let cut = versions.len().saturating_sub(keep.max(1));
    versions
        .iter()
        .enumerate()
        .take(cut)
        .filter(|(i, _)| !(Some(*i) == live_idx || live_idx.is_some_and(|l| l > 0 && *i == l - 1)))
        .map(|(_, v)| v.clone())
        .collect()
}

/// SHA-256 hex digest, used to name account files by directory URL.
fn aws_lc_rs_digest(data: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn ensure_nl(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// The files of a version directory and the modes certctl writes them with.
const VERSION_FILES: [(&str, u32); 5] = [
    ("privkey.pem", 0o600),
    ("cert.pem", 0o644),
    ("chain.pem", 0o644),
    ("fullchain.pem", 0o644),
    ("meta.json", 0o644),
];

/// Says what `path` holds and whether certctl may use it as its store,
/// without writing anything (for `certctl check` and every open).
///
/// Accepted: a missing path; an empty directory; a directory with certctl's
/// [`MARKER`]; and a directory made by certctl before stores were marked,
/// recognised strictly: its entries are only `lock` (a file), `accounts/`,
/// `archive/`, `live/` and `state/` (real directories, at least one of them),
/// `accounts/` holds only account files and `live/` only links, and
/// `archive/<x>`, `state/<x>` are directories. A symbolic link is followed
/// once and its target judged. Everything else is [`StoreError::Refused`]:
/// an empty path, `/`, a file, a device, a FIFO, a socket, a dangling link,
/// a directory with anything else in it, a marker that is not certctl's.
pub fn validate_location(path: &Path) -> Result<Location> {
    let refuse = |found: Found, resolved: Option<PathBuf>| StoreError::Refused {
        path: path.to_path_buf(),
        resolved,
        found,
    };
    if path.as_os_str().is_empty() {
        return Err(refuse(Found::EmptyPath, None));
    }
    if lexically_normal(path) == Path::new("/") {
        return Err(refuse(Found::FilesystemRoot, None));
    }
    let link_meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Location::Missing),
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    let (meta, resolved) = if link_meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(io_err("read link", path))?;
        match fs::metadata(path) {
            Ok(m) => (m, Some(fs::canonicalize(path).unwrap_or(target))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refuse(Found::DanglingLink { target }, None))
            }
            Err(e) => return Err(io_err("inspect", path)(e)),
        }
    } else {
        (link_meta, None)
    };
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let found = if ft.is_dir() {
        None
    } else if ft.is_file() {
        Some(Found::RegularFile)
    } else if ft.is_fifo() {
        Some(Found::Fifo)
    } else if ft.is_socket() {
        Some(Found::Socket)
    } else {
        Some(Found::Device)
    };
    if let Some(found) = found {
        return Err(refuse(found, resolved));
    }
    if fs::canonicalize(path).is_ok_and(|c| c == Path::new("/")) {
        return Err(refuse(Found::FilesystemRoot, resolved));
    }
    match read_marker(path) {
        Ok(Some(())) => return Ok(Location::Marked),
        Ok(None) => {}
        Err(MarkerRead::Bad(problem)) => {
            return Err(refuse(Found::BadMarker { problem }, resolved))
        }
        Err(MarkerRead::Io(e)) => return Err(e),
    }
    let mut foreign: Vec<PathBuf> = Vec::new();
    let mut layout = false;
    let mut lock = false;
    for (p, name, ft) in entries(path)? {
        match (name.as_str(), ft.is_dir(), ft.is_file()) {
            ("accounts" | "archive" | "live" | "state", true, _) => {
                layout = true;
                for (_, inner, ift) in entries(&p)? {
                    let ok = match name.as_str() {
                        "accounts" => {
                            ift.is_file() && (is_account_file(&inner) || is_temp_name(&inner))
                        }
                        "live" => ift.is_symlink(),
                        _ => ift.is_dir(),
                    };
                    if !ok {
                        foreign.push(Path::new(&name).join(inner));
                    }
                }
            }
            ("lock", _, true) => lock = true,
            _ if ft.is_file() && is_marker_temp(&name) => {}
            _ => foreign.push(PathBuf::from(name)),
        }
    }
    if !foreign.is_empty() || (lock && !layout) {
        if foreign.is_empty() {
            foreign.push(PathBuf::from("lock"));
        }
        foreign.sort();
        return Err(refuse(
            Found::ForeignDirectory {
                count: foreign.len(),
                examples: foreign.into_iter().take(3).collect(),
            },
            resolved,
        ));
    }
    Ok(if layout {
        Location::UnmarkedLayout
    } else {
        Location::EmptyDirectory
    })
}

enum MarkerRead {
    Bad(MarkerProblem),
    Io(StoreError),
}

/// Reads `<dir>/.certctl-store`: `Ok(None)` when there is none.
fn read_marker(dir: &Path) -> std::result::Result<Option<()>, MarkerRead> {
    use std::io::Read as _;
    let p = dir.join(MARKER);
    let meta = match fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(MarkerRead::Io(io_err("inspect", &p)(e))),
    };
    if !meta.is_file() {
        return Err(MarkerRead::Bad(MarkerProblem::NotAFile));
    }
    if meta.len() > MARKER_MAX {
        return Err(MarkerRead::Bad(MarkerProblem::TooLarge {
            size: meta.len(),
        }));
    }
    let mut text = String::new();
    File::open(&p)
        .and_then(|f| f.take(MARKER_MAX).read_to_string(&mut text))
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => MarkerRead::Bad(MarkerProblem::Unrecognised),
            _ => MarkerRead::Io(io_err("read", &p)(e)),
        })?;
    let first = text.lines().next().unwrap_or("");
    let format = first
        .strip_prefix(MARKER_HEAD)
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or(MarkerRead::Bad(MarkerProblem::Unrecognised))?;
    if format > STORE_FORMAT {
        return Err(MarkerRead::Bad(MarkerProblem::NewerFormat { format }));
    }
    Ok(Some(()))
}

/// Writes the marker atomically (0644: it is no secret).
fn write_marker(root: &Path) -> Result<()> {
    let text = format!(
        "{MARKER_HEAD} {STORE_FORMAT}\n# certctl created or adopted this directory as its store. It changes and\n# removes only what it wrote here. Do not copy this file into other directories.\n"
    );
    write_atomic(&root.join(MARKER), text.as_bytes(), 0o644)
}

/// The temp name [`write_atomic`] uses for the marker, `..certctl-store.tmp-<pid>`
/// (another run creating the same store at the same moment writes one).
fn is_marker_temp(name: &str) -> bool {
    name.strip_prefix(".")
        .and_then(|n| n.strip_prefix(MARKER))
        .and_then(|n| n.strip_prefix(".tmp-"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// A temp name certctl writes beside a file: `.<file>.tmp-<pid>`.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// `<sha256 hex>.json`, as [`Store::save_account`] names it, or
/// `<sha256 hex>.pending.json` ([`Store::save_pending_account`]).
fn is_account_file(name: &str) -> bool {
    name.strip_suffix(".json")
        .map(|h| h.strip_suffix(".pending").unwrap_or(h))
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// `YYYYMMDDTHHMMSSZ-<up to 8 hex>`, as [`Store::install`] names a version.
fn is_version_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
        && b.len() <= 17 + 8
        && b[17..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// A real directory holding exactly the files [`Store::install`] writes,
/// each a regular file.
fn is_complete_version(dir: &Path) -> Result<bool> {
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(false);
    }
    let found = entries(dir)?;
    Ok(found.len() == VERSION_FILES.len()
        && found
            .iter()
            .all(|(_, n, ft)| ft.is_file() && VERSION_FILES.iter().any(|(f, _)| f == n)))
}

/// `path` with `.` and `..` resolved lexically (no file system access).
pub(crate) fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The entries of `dir` (path, name, type without following links), sorted;
/// empty if `dir` does not exist. Names that are not UTF-8 keep a lossy name.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, String, fs::FileType)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(io_err("list", dir))?;
        let ft = e.file_type().map_err(io_err("inspect", &e.path()))?;
        v.push((e.path(), e.file_name().to_string_lossy().into_owned(), ft));
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e)),
    }
}

/// Reads and parses a JSON file; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match crate::fsread::read_file(path, crate::fsread::FileKind::State) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub(crate) fn create_dir_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(io_err("create directory", dir)(e)),
    }
}

/// Writes a new file (it must not exist) with `mode`, and fsyncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err("create", path))?;
    // The umask may have narrowed the mode; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("chmod", path))?;
    f.write_all(bytes).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("fsync", path))
}

/// Replaces `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory. On failure the old file is untouched and the temp
/// file removed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let res = write_new(&tmp, bytes, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename into place", path)))
        .and_then(|()| sync_dir(dir));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn material(serial: &str) -> Material {
        let now = OffsetDateTime::now_utc();
        Material {
            cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            chain_pem: "-----BEGIN CERTIFICATE-----\nAB==\n-----END CERTIFICATE-----".into(),
            key_pem: Secret::new(
                b"-----BEGIN PRIVATE KEY-----\nAC==\n-----END PRIVATE KEY-----\n".to_vec(),
            ),
            meta: ReleaseMeta {
                domains: vec!["www.example.test".into()],
                key_type: KeyType::EcdsaP256,
                serial: serial.into(),
                issuer: "CN=test".into(),
                not_before: now,
                not_after: now + time::Duration::days(90),
                directory: "https://ca.test/dir".into(),
                ari_id: None,
                stored_at: now,
            },
        }
    }

    #[test]
    fn a_pending_account_key_is_0600_counts_as_the_stores_own_and_is_promoted_by_rename() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let ca = "https://ca.test/dir";
        store.save_account(ca, b"{\"old\":1}").expect("save");
        store
            .save_pending_account(ca, b"{\"new\":1}")
            .expect("pending");
        let pending = dir
            .path()
            .join("accounts")
            .join(format!("{}.pending.json", aws_lc_rs_digest(ca.as_bytes())));
        assert_eq!(
            fs::metadata(&pending).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        // Reopening does not call it foreign; loose modes are still fixed.
        fs::set_permissions(&pending, fs::Permissions::from_mode(0o644)).expect("chmod");
        let (store, repairs) = Store::open(dir.path()).expect("reopen");
        assert!(repairs.iter().any(|r| r.path == pending), "{repairs:?}");
        assert_eq!(
            store
                .load_pending_account(ca)
                .expect("load")
                .expect("some")
                .expose(),
            b"{\"new\":1}"
        );
        store.promote_pending_account(ca).expect("promote");
        assert_eq!(
            store
                .load_account(ca)
                .expect("load")
                .expect("some")
                .expose(),
            b"{\"new\":1}"
        );
        assert!(store.load_pending_account(ca).expect("load").is_none());
        store.save_pending_account(ca, b"{}").expect("pending");
        store.forget_pending_account(ca).expect("forget");
        assert!(store.load_pending_account(ca).expect("load").is_none());
    }

    #[test]
    fn install_makes_a_live_version_with_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let name = CertName::new("www").expect("name");
        let r = store.install(&name, &material("aa01")).expect("install");
        let key_mode = fs::metadata(r.file("privkey"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let link = fs::read_link(dir.path().join("live/www")).expect("link");
        assert!(link.is_relative());
        assert_eq!(
            store.current("www").expect("cur").expect("some").version,
            r.version
        );
        let full = String::from_utf8(r.read("fullchain").expect("read")).expect("utf8");
        assert_eq!(full.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn loose_key_modes_are_repaired_and_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = store
            .install(&CertName::new("www").expect("name"), &material("bb02"))
            .expect("install");
        fs::set_permissions(r.file("privkey"), fs::Permissions::from_mode(0o644)).expect("chmod");
        let (_, repairs) = Store::open(dir.path()).expect("reopen");
        assert_eq!(repairs.len(), 1);
        assert_eq!(repairs[0].was, 0o644);
        let mode = fs::metadata(r.file("privkey"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn read_only_check_reports_loose_modes_without_changing_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = store
            .install(&CertName::new("www").expect("name"), &material("ee05"))
            .expect("install");
        fs::set_permissions(r.file("privkey"), fs::Permissions::from_mode(0o640)).expect("chmod");
        let loose = Store::open_existing(dir.path())
            .expect("open")
            .loose_modes()
            .expect("check");
        assert_eq!(loose.len(), 1);
        assert_eq!(loose[0].path, r.file("privkey"));
        let mode = fs::metadata(r.file("privkey"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "a read-only check must not change modes");
    }

    #[test]
    fn second_lock_waits_then_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let _held = store.lock(Duration::ZERO).expect("first");
        let e = store.lock(Duration::from_millis(50)).expect_err("second");
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
    }

    #[test]
    fn leftover_temp_dirs_are_ignored_and_cleaned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let name = CertName::new("www").expect("name");
        store.install(&name, &material("cc03")).expect("install");
        let torn = dir.path().join("archive/www/.tmp-torn-1");
        fs::create_dir_all(&torn).expect("mkdir");
        assert_eq!(store.versions("www").expect("v").len(), 1);
        store.install(&name, &material("dd04")).expect("install 2");
        assert!(!torn.exists());
    }

    #[test]
    fn prune_keeps_live_and_previous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let name = CertName::new("www").expect("name");
        let mut versions = Vec::new();
        for i in 0..5 {
            let mut m = material(&format!("{i:02}000000"));
            m.meta.stored_at += time::Duration::seconds(i);
            versions.push(store.install(&name, &m).expect("install").version);
        }
        // Roll back to the third; it and the second must survive keep=1.
        store.set_live("www", &versions[2]).expect("set live");
        let removed = store.prune("www", 1).expect("prune");
        let left = store.versions("www").expect("versions");
        assert!(
            left.contains(&versions[2]) && left.contains(&versions[1]),
            "{left:?}"
        );
        assert!(left.contains(&versions[4]));
        assert_eq!(removed.len(), 2);
    }

    #[test]
    fn only_expired_versions_beside_the_live_one_and_the_one_before_are_prunable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let name = CertName::new("www").expect("name");
        let now = OffsetDateTime::now_utc();
        let mut versions = Vec::new();
        for i in 0..6 {
            let mut m = material(&format!("{i:02}000000"));
            m.meta.stored_at += time::Duration::seconds(i);
            // 0..=3 expired, 4 and 5 valid
            m.meta.not_after = now + time::Duration::days(if i < 4 { -1 } else { 30 });
            versions.push(store.install(&name, &m).expect("install").version);
        }
        // Rolled back to an expired one: it and the one before it stay.
        store.set_live("www", &versions[1]).expect("set live");
        let prunable: Vec<String> = store
            .prunable("www", 1, now)
            .expect("prunable")
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(prunable, vec![versions[2].clone(), versions[3].clone()]);
        // A file certctl did not write in one: that version is left alone.
        fs::write(
            dir.path()
                .join("archive/www")
                .join(&versions[3])
                .join("notes.txt"),
            b"mine",
        )
        .expect("write");
        assert!(store.remove_version("www", &versions[2]).expect("remove"));
        assert!(!store
            .remove_version("www", &versions[3])
            .expect("left alone"));
        assert!(!store
            .remove_version("www", &versions[1])
            .expect("live left alone"));
        let left = store.versions("www").expect("versions");
        assert_eq!(
            left,
            vec![
                versions[0].clone(),
                versions[1].clone(),
                versions[3].clone(),
                versions[4].clone(),
                versions[5].clone()
            ]
        );
        assert_eq!(
            fs::read(
                dir.path()
                    .join("archive/www")
                    .join(&versions[3])
                    .join("notes.txt")
            )
            .expect("kept"),
            b"mine"
        );
        // keep=6: nothing old enough.
        assert!(store.prunable("www", 6, now).expect("prunable").is_empty());
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    fn refused(path: &Path) -> Found {
        match Store::open(path) {
            Err(StoreError::Refused { found, .. }) => found,
            other => panic!("{} should be refused, got {other:?}", path.display()),
        }
    }

    /// Every path below `dir`, with its mode and (for files) contents.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
        let mut out = vec![(dir.to_path_buf(), mode(dir), Vec::new())];
        for (p, _, ft) in entries(dir).expect("list") {
            if ft.is_dir() {
                out.extend(snapshot(&p));
            } else {
                let bytes = if ft.is_file() {
                    fs::read(&p).expect("read")
                } else {
                    Vec::new()
                };
                out.push((p.clone(), mode(&p), bytes));
            }
        }
        out
    }

    #[test]
    fn a_new_store_is_created_with_the_marker_and_reopened_as_marked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("a/b/store");
        assert_eq!(validate_location(&root).expect("check"), Location::Missing);
        Store::open(&root).expect("open");
        let marker = fs::read_to_string(root.join(MARKER)).expect("marker");
        assert!(marker.starts_with("certctl-store 1\n"), "{marker}");
        assert_eq!(validate_location(&root).expect("check"), Location::Marked);
        Store::open(&root).expect("reopen");
    }

    #[test]
    fn an_empty_directory_is_adopted_and_marked() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            validate_location(dir.path()).expect("check"),
            Location::EmptyDirectory
        );
        Store::open(dir.path()).expect("open");
        assert_eq!(
            validate_location(dir.path()).expect("check"),
            Location::Marked
        );
        assert!(dir.path().join("archive").is_dir());
    }

    #[test]
    fn a_store_another_run_is_creating_at_the_same_moment_is_accepted() {
        // Two runs open a new store at once: one finds the other's marker
        // being written (regression: `issue::two_runs_at_once_are_serialized`).
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(format!(".{MARKER}.tmp-4242")), b"x").expect("write");
        assert_eq!(
            validate_location(dir.path()).expect("check"),
            Location::EmptyDirectory
        );
        Store::open(dir.path()).expect("open");
    }

    #[test]
    fn empty_path_and_root_are_refused() {
        assert_eq!(refused(Path::new("")), Found::EmptyPath);
        assert_eq!(refused(Path::new("/")), Found::FilesystemRoot);
        assert_eq!(refused(Path::new("/tmp/..")), Found::FilesystemRoot);
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("to-root");
        std::os::unix::fs::symlink("/", &link).expect("symlink");
        assert_eq!(refused(&link), Found::FilesystemRoot);
    }

    #[test]
    fn a_regular_file_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("store");
        fs::write(&file, "mine").expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Store::open(&file).expect_err("file");
        let text = e.to_string();
        assert!(
            text.contains("regular file") && text.contains("set `store`"),
            "{text}"
        );
        assert_eq!(fs::read(&file).expect("read"), b"mine");
        assert_eq!(mode(&file), 0o644);
    }

    #[test]
    fn a_device_is_refused() {
        assert_eq!(refused(Path::new("/dev/null")), Found::Device);
    }

    #[test]
    fn a_fifo_is_refused_without_opening_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(st.success());
        // Opening a FIFO for reading would block: the check must not.
        assert_eq!(refused(&fifo), Found::Fifo);
        assert!(matches!(
            Store::open_read_only(&fifo),
            Err(StoreError::Refused {
                found: Found::Fifo,
                ..
            })
        ));
    }

    #[test]
    fn a_socket_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        assert_eq!(refused(&sock), Found::Socket);
    }

    #[test]
    fn a_symlink_to_a_file_is_refused_naming_its_target_and_a_dangling_one_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        fs::write(&file, "x").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let e = Store::open(&link).expect_err("link to file");
        assert!(
            matches!(
                &e,
                StoreError::Refused {
                    found: Found::RegularFile,
                    resolved: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("symbolic link to"), "{e}");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).expect("symlink");
        assert!(matches!(refused(&dangling), Found::DanglingLink { .. }));
        assert!(
            !dir.path().join("nowhere").exists(),
            "nothing created through the link"
        );
    }

    #[test]
    fn a_symlink_to_a_store_directory_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        fs::create_dir(&real).expect("mkdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        Store::open(&link).expect("open through the link");
        assert!(real.join(MARKER).is_file());
    }

    #[test]
    fn a_foreign_directory_is_refused_and_nothing_in_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("etc");
        fs::create_dir(&root).expect("mkdir");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        for f in ["passwd", "hosts"] {
            fs::write(root.join(f), f).expect("write");
            fs::set_permissions(root.join(f), fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        // Even with some of certctl's names beside the foreign files.
        fs::create_dir(root.join("archive")).expect("mkdir");
        let before = snapshot(&root);
        let e = Store::open(&root).expect_err("foreign");
        let StoreError::Refused {
            found: Found::ForeignDirectory { count, examples },
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*count, 2);
        assert_eq!(examples, &[PathBuf::from("hosts"), PathBuf::from("passwd")]);
        assert!(e.to_string().contains("\"hosts\""), "{e}");
        assert!(Store::open_existing(&root).is_err() && Store::open_read_only(&root).is_err());
        assert_eq!(snapshot(&root), before);
    }

    #[test]
    fn a_marker_that_is_not_certctls_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(MARKER), "something else\n").expect("write");
        assert_eq!(
            refused(dir.path()),
            Found::BadMarker {
                problem: MarkerProblem::Unrecognised
            }
        );
        fs::write(dir.path().join(MARKER), "certctl-store 7\n").expect("write");
        assert_eq!(
            refused(dir.path()),
            Found::BadMarker {
                problem: MarkerProblem::NewerFormat { format: 7 }
            }
        );
        fs::remove_file(dir.path().join(MARKER)).expect("rm");
        fs::create_dir(dir.path().join(MARKER)).expect("mkdir");
        assert_eq!(
            refused(dir.path()),
            Found::BadMarker {
                problem: MarkerProblem::NotAFile
            }
        );
    }

    #[test]
    fn an_unmarked_store_with_only_certctls_layout_is_migrated_with_a_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let name = CertName::new("www").expect("name");
        store.install(&name, &material("ab12")).expect("install");
        store
            .write_state("www", "renewal", &serde_json::json!({}))
            .expect("state");
        store
            .save_account("https://ca.test/dir", b"{}")
            .expect("account");
        drop(store.lock(Duration::ZERO).expect("lock"));
        // As certctl left stores before it marked them.
        fs::remove_file(dir.path().join(MARKER)).expect("rm marker");
        assert_eq!(
            validate_location(dir.path()).expect("check"),
            Location::UnmarkedLayout
        );
        let (store, _) = Store::open(dir.path()).expect("migrate");
        assert_eq!(
            validate_location(dir.path()).expect("check"),
            Location::Marked
        );
        assert!(store.current("www").expect("cur").is_some());
    }

    #[test]
    fn an_unmarked_directory_with_certctls_names_and_anything_else_is_not_migrated() {
        for extra in [
            "notes.txt",
            "accounts/key.pem",
            "live/regular-file",
            "archive/file",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            for d in ["accounts", "archive", "live", "state"] {
                fs::create_dir(dir.path().join(d)).expect("mkdir");
            }
            fs::write(dir.path().join(extra), "x").expect("write");
            match Store::open(dir.path()) {
                Err(StoreError::Refused {
                    found: Found::ForeignDirectory { examples, .. },
                    ..
                }) => {
                    assert_eq!(examples, vec![PathBuf::from(extra)], "{extra}")
                }
                other => panic!("{extra}: {other:?}"),
            }
            assert!(!dir.path().join(MARKER).exists(), "{extra}: not marked");
        }
        // A lone `lock` file is no evidence of a store.
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("lock"), "1\n").expect("write");
        assert!(matches!(
            refused(dir.path()),
            Found::ForeignDirectory { .. }
        ));
    }

    #[test]
    fn mode_repair_leaves_foreign_files_alone_and_never_adds_execute() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = store
            .install(&CertName::new("www").expect("name"), &material("cd34"))
            .expect("install");
        // Someone drops files into the store after it was made.
        let foreign = [
            dir.path().join("README"),
            dir.path().join("accounts/backup.tar"),
            r.dir.join("notes.txt"),
            dir.path().join("archive/www/old-certs"),
        ];
        for f in &foreign[..3] {
            fs::write(f, "x").expect("write");
            fs::set_permissions(f, fs::Permissions::from_mode(0o666)).expect("chmod");
        }
        fs::create_dir(&foreign[3]).expect("mkdir");
        fs::set_permissions(&foreign[3], fs::Permissions::from_mode(0o777)).expect("chmod");
        fs::set_permissions(r.file("cert"), fs::Permissions::from_mode(0o666)).expect("chmod");
        fs::set_permissions(r.file("privkey"), fs::Permissions::from_mode(0o640)).expect("chmod");
        fs::set_permissions(r.file("chain"), fs::Permissions::from_mode(0o400)).expect("chmod");
        fs::set_permissions(&r.dir, fs::Permissions::from_mode(0o755)).expect("chmod");

        let (_, repairs) = Store::open(dir.path()).expect("reopen");
        let fixed: Vec<&Path> = repairs.iter().map(|r| r.path.as_path()).collect();
        assert_eq!(fixed.len(), 3, "{repairs:?}");
        assert_eq!(mode(&r.file("cert")), 0o644);
        assert_eq!(mode(&r.file("privkey")), 0o600);
        assert_eq!(
            mode(&r.file("chain")),
            0o400,
            "tight modes are not loosened"
        );
        assert_eq!(mode(&r.dir), 0o700);
        for f in &foreign[..3] {
            assert_eq!(mode(f), 0o666, "{} is not certctl's", f.display());
        }
        assert_eq!(mode(&foreign[3]), 0o777);
        for r in &repairs {
            assert_eq!(r.now & !r.was, 0, "a repair only removes bits: {r:?}");
        }
        for f in RELEASE_FILES {
            assert_eq!(
                mode(&r.file(f)) & 0o111,
                0,
                "{f} never gets the execute bit"
            );
        }
    }

    #[test]
    fn a_read_only_store_refuses_every_write_and_a_missing_one_reads_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let store = Store::open_read_only(&missing).expect("dry run on a missing store");
        assert!(store.names().expect("names").is_empty());
        assert!(store.current("www").expect("current").is_none());
        assert!(store
            .load_account("https://ca.test/dir")
            .expect("account")
            .is_none());
        assert!(matches!(
            store.lock(Duration::ZERO),
            Err(StoreError::ReadOnly { .. })
        ));
        assert!(matches!(
            store.write_state("www", "renewal", &1),
            Err(StoreError::ReadOnly { .. })
        ));
        assert!(matches!(
            store.install(&CertName::new("www").expect("name"), &material("ef56")),
            Err(StoreError::ReadOnly { .. })
        ));
        assert!(matches!(
            store.save_account("d", b"{}"),
            Err(StoreError::ReadOnly { .. })
        ));
        assert!(matches!(
            store.prune("www", 1),
            Err(StoreError::ReadOnly { .. })
        ));
        assert!(!missing.exists(), "nothing was created");
    }

    #[test]
    fn prune_leaves_a_version_directory_certctl_did_not_complete_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let name = CertName::new("www").expect("name");
        let mut versions = Vec::new();
        for i in 0..4 {
            let mut m = material(&format!("{i:02}000000"));
            m.meta.stored_at += time::Duration::seconds(i);
            versions.push(store.install(&name, &m).expect("install").version);
        }
        // Oldest: someone added a file; a lookalike with only meta.json; a
        // certbot-style lineage file beside them.
        let archive = dir.path().join("archive/www");
        fs::write(archive.join(&versions[0]).join("keep-me.txt"), "mine").expect("write");
        let lookalike = archive.join("20000101T000000Z-00");
        fs::create_dir(&lookalike).expect("mkdir");
        fs::write(lookalike.join("meta.json"), "{}").expect("write");
        fs::write(archive.join("cert1.pem"), "certbot's").expect("write");

        let removed = store.prune("www", 1).expect("prune");
        assert_eq!(removed, vec![versions[1].clone()]);
        assert!(archive.join(&versions[0]).join("keep-me.txt").exists());
        assert!(lookalike.join("meta.json").exists());
        assert_eq!(
            fs::read(archive.join("cert1.pem")).expect("read"),
            b"certbot's"
        );
    }
}
