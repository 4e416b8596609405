//! The store as callers see it: [`Store`] over a [`Backend`], either the
//! directory store (the default) or the etcd store shared by several
//! controllers. Typed records (JSON) and the version naming live here, once;
//! a backend stores bytes.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use super::{
    aws_lc_rs_digest, ensure_nl, Audit, Damage, DirStore, Material, Release, Repair, Result,
    StoreError, StoreLock,
};
use crate::names::CertName;
use crate::secret::Secret;

/// Which store an inventory names: `store = "/path"` or a `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreConfig {
    /// The directory store at this path.
    Dir(PathBuf),
    /// The etcd store.
    Etcd(super::etcd::EtcdConfig),
}

impl StoreConfig {
    /// A short description for messages: the path, or the endpoints and prefix.
    pub fn display(&self) -> impl std::fmt::Display + '_ {
        struct D<'a>(&'a StoreConfig);
        impl std::fmt::Display for D<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.0 {
                    StoreConfig::Dir(p) => write!(f, "{}", p.display()),
                    StoreConfig::Etcd(c) => write!(f, "{}", c.describe()),
                }
            }
        }
        D(self)
    }

    /// The directory of a directory store.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            StoreConfig::Dir(p) => Some(p),
            StoreConfig::Etcd(_) => None,
        }
    }

    /// Whether there may be a store to read: a directory store's path
    /// exists; an etcd store is asked when it is opened.
    pub fn exists(&self) -> bool {
        match self {
            StoreConfig::Dir(p) => p.exists(),
            StoreConfig::Etcd(_) => true,
        }
    }
}

/// Anything [`Store::open`] accepts: a directory path or a [`StoreConfig`].
pub trait AsStoreConfig {
    /// The store it names.
    fn store_config(&self) -> Cow<'_, StoreConfig>;
}

impl AsStoreConfig for Path {
    fn store_config(&self) -> Cow<'_, StoreConfig> {
        Cow::Owned(StoreConfig::Dir(self.to_path_buf()))
    }
}

impl AsStoreConfig for PathBuf {
    fn store_config(&self) -> Cow<'_, StoreConfig> {
        Cow::Owned(StoreConfig::Dir(self.clone()))
    }
}

impl AsStoreConfig for StoreConfig {
    fn store_config(&self) -> Cow<'_, StoreConfig> {
        Cow::Borrowed(self)
    }
}

/// One account slot: the credentials for a CA directory (named by the
/// SHA-256 of its URL), or the pending key of a rollover.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AccountId {
    /// SHA-256 of the directory URL, hex.
    pub digest: String,
    /// The pending key of a rollover.
    pub pending: bool,
}

impl AccountId {
    fn for_directory(directory: &str, pending: bool) -> Self {
        AccountId {
            digest: aws_lc_rs_digest(directory.as_bytes()),
            pending,
        }
    }

    pub(crate) fn reading(&self) -> &'static str {
        if self.pending {
            "read pending account"
        } else {
            "read account"
        }
    }

    pub(crate) fn saving(&self) -> &'static str {
        if self.pending {
            "save the pending account key"
        } else {
            "save the account"
        }
    }

    pub(crate) fn removing(&self) -> &'static str {
        if self.pending {
            "remove the pending account key"
        } else {
            "remove the account"
        }
    }

    pub(crate) fn removing_file(&self) -> &'static str {
        if self.pending {
            "remove pending account"
        } else {
            "remove account"
        }
    }
}

/// A small JSON record: store-wide health, or per-certificate state.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// `health/<record>`.
    Health(&'a str),
    /// `state/<name>/<record>`.
    State {
        /// Certificate name.
        name: &'a str,
        /// Record name (`renewal`, `node-<node>`, …).
        record: &'a str,
    },
}

/// The five files of a version, as bytes.
#[derive(Clone, Copy)]
pub struct VersionFiles<'a> {
    /// `privkey.pem` (sealed by the etcd store).
    pub privkey: &'a [u8],
    /// `cert.pem`.
    pub cert: &'a [u8],
    /// `chain.pem`.
    pub chain: &'a [u8],
    /// `fullchain.pem`.
    pub fullchain: &'a [u8],
    /// `meta.json`.
    pub meta: &'a [u8],
}

impl VersionFiles<'_> {
    /// The files by name (`privkey`, `cert`, `chain`, `fullchain`, `meta`).
    pub fn all(&self) -> [(&'static str, &[u8]); 5] {
        [
            ("privkey", self.privkey),
            ("cert", self.cert),
            ("chain", self.chain),
            ("fullchain", self.fullchain),
            ("meta", self.meta),
        ]
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.all().iter().map(|(_, b)| b.len()).sum()
    }

    /// True when every file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The files of a release fetched from a backend that is not a directory.
pub(crate) struct Fetched {
    pub(crate) privkey: Secret,
    pub(crate) cert: Vec<u8>,
    pub(crate) chain: Vec<u8>,
    pub(crate) fullchain: Vec<u8>,
    pub(crate) meta: Vec<u8>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched").finish_non_exhaustive()
    }
}

impl Fetched {
    pub(crate) fn get(&self, which: &str) -> Option<Vec<u8>> {
        Some(match which {
            "privkey" => self.privkey.expose().to_vec(),
            "cert" => self.cert.clone(),
            "chain" => self.chain.clone(),
            "fullchain" => self.fullchain.clone(),
            "meta" => self.meta.clone(),
            _ => return None,
        })
    }
}

/// The fencing token of a store lock, for the nodes: `store` names the
/// store (the same for every controller sharing it), `revision` grows with
/// every new holder of its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFence {
    /// 16 hex digits naming the store: its etcd cluster and prefix.
    pub store: String,
    /// The lock key's etcd revision (a later holder's is higher).
    pub revision: i64,
}

/// A store backend. Every method is synchronous; a backend that talks to
/// the network bounds each call by a timeout.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The store for messages (a path; endpoints and prefix).
    fn describe(&self) -> String;
    /// The directory of a directory store.
    fn root(&self) -> Option<&Path>;
    /// False when opened read-only: every write is refused.
    fn is_writable(&self) -> bool;
    /// Paths whose modes are looser than certctl writes them (directory
    /// store only).
    fn loose_modes(&self) -> Result<Vec<Repair>>;
    /// Takes the exclusive store lock, waiting up to `wait`.
    fn lock(&self, wait: Duration) -> Result<StoreLock>;
    /// Ok while this process's lock is still held (always, for a store
    /// whose lock cannot be lost while the process lives).
    fn check_held(&self) -> Result<()>;
    /// The fencing token the node scripts compare while this process holds
    /// the lock (none for a store whose lock cannot be lost while the
    /// process lives).
    fn node_fence(&self) -> Option<NodeFence> {
        None
    }
    /// The account slots stored.
    fn account_ids(&self) -> Result<Vec<AccountId>>;
    /// The credentials in an account slot.
    fn read_account(&self, id: &AccountId) -> Result<Option<Secret>>;
    /// Writes credentials into an account slot.
    fn write_account(&self, id: &AccountId, json: &[u8]) -> Result<()>;
    /// Empties an account slot (empty already is fine).
    fn remove_account(&self, id: &AccountId) -> Result<()>;
    /// Moves the pending slot over the account's, atomically.
    fn promote_pending_account(&self, digest: &str) -> Result<()>;
    /// Writes a whole version at once; it is not live yet.
    fn store_version(&self, name: &str, version: &str, files: &VersionFiles<'_>) -> Result<()>;
    /// Makes `version` the live one, atomically.
    fn set_live(&self, name: &str, version: &str) -> Result<()>;
    /// Writes a whole version and makes it live. A backend that can do
    /// both in one step (etcd: one transaction) does; the default writes
    /// the version, then swaps the live pointer.
    fn store_live_version(
        &self,
        name: &str,
        version: &str,
        files: &VersionFiles<'_>,
    ) -> Result<()> {
        self.store_version(name, version, files)?;
        self.set_live(name, version)
    }
    /// The live version of `name`.
    fn live_version(&self, name: &str) -> Result<Option<String>>;
    /// A stored version.
    fn read_release(&self, name: &str, version: &str) -> Result<Release>;
    /// All versions of `name`, oldest first.
    fn versions(&self, name: &str) -> Result<Vec<String>>;
    /// Names with a live version, sorted.
    fn names(&self) -> Result<Vec<String>>;
    /// Removes old versions (see [`Store::prune`]).
    fn prune(&self, name: &str, keep: usize) -> Result<Vec<String>>;
    /// Removes one version that is not the live one (see
    /// [`Store::remove_version`]); `false` when it is left alone.
    fn remove_version(&self, name: &str, version: &str) -> Result<bool>;
    /// Where a record lives, for messages.
    fn record_path(&self, r: Record<'_>) -> PathBuf;
    /// The bytes of a record.
    fn read_record(&self, r: Record<'_>) -> Result<Option<Vec<u8>>>;
    /// Replaces a record atomically.
    fn write_record(&self, r: Record<'_>, bytes: &[u8]) -> Result<()>;
    /// The store-wide health records.
    fn health_records(&self) -> Result<Vec<String>>;
    /// The state records of `name`.
    fn state_records(&self, name: &str) -> Result<Vec<String>>;
    /// See [`Store::audit`].
    fn audit(&self, name: &str) -> Audit;
    /// See [`Store::set_aside`].
    fn set_aside(&self, damage: &mut Damage) -> Result<PathBuf>;
}

impl Backend for DirStore {
    fn describe(&self) -> String {
        self.root().display().to_string()
    }
    fn root(&self) -> Option<&Path> {
        Some(DirStore::root(self))
    }
    fn is_writable(&self) -> bool {
        DirStore::is_writable(self)
    }
    fn loose_modes(&self) -> Result<Vec<Repair>> {
        DirStore::loose_modes(self)
    }
    fn lock(&self, wait: Duration) -> Result<StoreLock> {
        DirStore::lock(self, wait)
    }
    fn check_held(&self) -> Result<()> {
        Ok(())
    }
    fn account_ids(&self) -> Result<Vec<AccountId>> {
        DirStore::account_ids(self)
    }
    fn read_account(&self, id: &AccountId) -> Result<Option<Secret>> {
        DirStore::read_account(self, id)
    }
    fn write_account(&self, id: &AccountId, json: &[u8]) -> Result<()> {
        DirStore::write_account(self, id, json)
    }
    fn remove_account(&self, id: &AccountId) -> Result<()> {
        DirStore::remove_account(self, id)
    }
    fn promote_pending_account(&self, digest: &str) -> Result<()> {
        DirStore::promote_pending_account(self, digest)
    }
    fn store_version(&self, name: &str, version: &str, files: &VersionFiles<'_>) -> Result<()> {
        DirStore::store_version(self, name, version, files)
    }
    fn set_live(&self, name: &str, version: &str) -> Result<()> {
        DirStore::set_live(self, name, version)
    }
    fn live_version(&self, name: &str) -> Result<Option<String>> {
        DirStore::live_version(self, name)
    }
    fn read_release(&self, name: &str, version: &str) -> Result<Release> {
        DirStore::read_release(self, name, version)
    }
    fn versions(&self, name: &str) -> Result<Vec<String>> {
        DirStore::versions(self, name)
    }
    fn names(&self) -> Result<Vec<String>> {
        DirStore::names(self)
    }
    fn prune(&self, name: &str, keep: usize) -> Result<Vec<String>> {
        DirStore::prune(self, name, keep)
    }
    fn remove_version(&self, name: &str, version: &str) -> Result<bool> {
        DirStore::remove_version(self, name, version)
    }
    fn record_path(&self, r: Record<'_>) -> PathBuf {
        DirStore::record_path(self, r)
    }
    fn read_record(&self, r: Record<'_>) -> Result<Option<Vec<u8>>> {
        DirStore::read_record(self, r)
    }
    fn write_record(&self, r: Record<'_>, bytes: &[u8]) -> Result<()> {
        DirStore::write_record(self, r, bytes)
    }
    fn health_records(&self) -> Result<Vec<String>> {
        DirStore::health_records(self)
    }
    fn state_records(&self, name: &str) -> Result<Vec<String>> {
        DirStore::state_records(self, name)
    }
    fn audit(&self, name: &str) -> Audit {
        DirStore::audit(self, name)
    }
    fn set_aside(&self, damage: &mut Damage) -> Result<PathBuf> {
        DirStore::set_aside(self, damage)
    }
}

/// The store: the ACME account, every issued version of every certificate,
/// the live pointers, state and health records, and the lock, in whichever
/// backend the inventory names. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The same backend when it is etcd, for what only etcd does (re-key).
    pub(super) etcd: Option<Arc<super::etcd::EtcdStore>>,
}

impl Store {
    fn with(backend: impl Backend + 'static) -> Self {
        Store {
            backend: Arc::new(backend),
            etcd: None,
        }
    }

    fn with_etcd(e: super::etcd::EtcdStore) -> Self {
        let e = Arc::new(e);
        Store {
            backend: e.clone(),
            etcd: Some(e),
        }
    }

    /// The backend, for what [`Store`] does not wrap.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Opens the store for writing. A directory store is created and marked
    /// when missing, adopted when empty, refused when it is not certctl's
    /// (see [`super::validate_location`]), and loose modes on the paths
    /// certctl wrote are tightened (the fixes are returned). An etcd store
    /// is connected to, its marker written when missing, and the data key
    /// checked against it.
    pub fn open<L: AsStoreConfig + ?Sized>(loc: &L) -> Result<(Self, Vec<Repair>)> {
        match &*loc.store_config() {
            StoreConfig::Dir(root) => {
                let (d, repairs) = DirStore::open(root)?;
                Ok((Self::with(d), repairs))
            }
            StoreConfig::Etcd(c) => Ok((
                Self::with_etcd(super::etcd::EtcdStore::open(c, super::etcd::Mode::Write)?),
                Vec::new(),
            )),
        }
    }

    /// Opens an existing store read-only: nothing is created, marked or
    /// changed, and every write is refused. A missing store is an error.
    pub fn open_existing<L: AsStoreConfig + ?Sized>(loc: &L) -> Result<Self> {
        match &*loc.store_config() {
            StoreConfig::Dir(root) => Ok(Self::with(DirStore::open_existing(root)?)),
            StoreConfig::Etcd(c) => Ok(Self::with_etcd(super::etcd::EtcdStore::open(
                c,
                super::etcd::Mode::Existing,
            )?)),
        }
    }

    /// Opens the store read-only for a dry run: a missing store is an empty
    /// one ("nothing stored yet") and still nothing is created.
    pub fn open_read_only<L: AsStoreConfig + ?Sized>(loc: &L) -> Result<Self> {
        match &*loc.store_config() {
            StoreConfig::Dir(root) => Ok(Self::with(DirStore::open_read_only(root)?)),
            StoreConfig::Etcd(c) => Ok(Self::with_etcd(super::etcd::EtcdStore::open(
                c,
                super::etcd::Mode::ReadOnly,
            )?)),
        }
    }

    /// The directory of a directory store (`None` for etcd).
    pub fn root(&self) -> Option<&Path> {
        self.backend.root()
    }

    /// The store for messages: its path, or its endpoints and prefix.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// False when opened read-only: writes are refused.
    pub fn is_writable(&self) -> bool {
        self.backend.is_writable()
    }

    /// Paths certctl wrote whose modes are looser than it writes them,
    /// without changing them (the directory store; none for etcd).
    pub fn loose_modes(&self) -> Result<Vec<Repair>> {
        self.backend.loose_modes()
    }

    /// Takes the exclusive store lock, waiting up to `wait`; a store that
    /// is still locked then names the holder.
    pub fn lock(&self, wait: Duration) -> Result<StoreLock> {
        self.backend.lock(wait)
    }

    /// Ok while this run's lock is still held. The etcd store loses it when
    /// its lease cannot be kept alive ([`StoreError::LeaseLost`]); a run
    /// asks before it changes a node and stops when it is gone.
    pub fn check_held(&self) -> Result<()> {
        self.backend.check_held()
    }

    /// The fencing token this run's node scripts carry while it holds the
    /// lock: a node refuses a script whose token is lower than one it has
    /// already seen from the same store, so a run that lost its lock
    /// between [`Store::check_held`] and a node's step changes nothing
    /// there. `None` for the directory store.
    pub fn node_fence(&self) -> Option<NodeFence> {
        self.backend.node_fence()
    }

    /// The stored ACME account credentials (JSON) for `directory`, if any.
    pub fn load_account(&self, directory: &str) -> Result<Option<Secret>> {
        self.backend
            .read_account(&AccountId::for_directory(directory, false))
    }

    /// Stores ACME account credentials (JSON, private) for `directory`.
    pub fn save_account(&self, directory: &str, json: &[u8]) -> Result<()> {
        self.backend
            .write_account(&AccountId::for_directory(directory, false), json)
    }

    /// Removes the stored account for `directory` (the CA no longer knows it).
    pub fn forget_account(&self, directory: &str) -> Result<()> {
        self.backend
            .remove_account(&AccountId::for_directory(directory, false))
    }

    /// The pending credentials (JSON) of a key rollover for `directory`
    /// that has not been settled yet, if any.
    pub fn load_pending_account(&self, directory: &str) -> Result<Option<Secret>> {
        self.backend
            .read_account(&AccountId::for_directory(directory, true))
    }

    /// Stores the credentials with the new key of a rollover beside the
    /// current ones, before the CA is asked to change keys.
    pub fn save_pending_account(&self, directory: &str, json: &[u8]) -> Result<()> {
        self.backend
            .write_account(&AccountId::for_directory(directory, true), json)
    }

    /// Removes the pending credentials (the CA kept the current key).
    pub fn forget_pending_account(&self, directory: &str) -> Result<()> {
        self.backend
            .remove_account(&AccountId::for_directory(directory, true))
    }

    /// Makes the pending credentials the account's (the CA has the new
    /// key), atomically: either is whole at every moment.
    pub fn promote_pending_account(&self, directory: &str) -> Result<()> {
        self.backend
            .promote_pending_account(&AccountId::for_directory(directory, false).digest)
    }

    /// Installs new material as a new version and makes it live: the whole
    /// version is written first, then the live pointer moves in one step,
    /// so a crash at any point leaves the previous version live.
    pub fn install(&self, name: &CertName, m: &Material) -> Result<Release> {
        let name = name.as_str();
        let stamp = m.meta.stored_at.to_offset(time::UtcOffset::UTC);
        let serial8: String = m.meta.serial.chars().take(8).collect();
        let version = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{serial8}",
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second()
        );
        let fullchain = format!("{}{}", ensure_nl(&m.cert_pem), ensure_nl(&m.chain_pem));
        let meta = serde_json::to_vec_pretty(&m.meta).map_err(|source| StoreError::Encode {
            path: PathBuf::from("archive")
                .join(name)
                .join(&version)
                .join("meta.json"),
            source,
        })?;
        let files = VersionFiles {
            privkey: m.key_pem.expose(),
            cert: m.cert_pem.as_bytes(),
            chain: m.chain_pem.as_bytes(),
            fullchain: fullchain.as_bytes(),
            meta: &meta,
        };
        self.backend.store_live_version(name, &version, &files)?;
        self.backend.read_release(name, &version)
    }

    /// Writes version `version` of `name` with exactly these bytes, not
    /// live (for `certctl store import`).
    pub fn install_version(
        &self,
        name: &str,
        version: &str,
        files: &VersionFiles<'_>,
    ) -> Result<()> {
        self.backend.store_version(name, version, files)
    }

    /// Points the live pointer of `name` at `version`, atomically.
    pub fn set_live(&self, name: &str, version: &str) -> Result<()> {
        self.backend.set_live(name, version)
    }

    /// The live release of `name`, if any.
    pub fn current(&self, name: &str) -> Result<Option<Release>> {
        match self.backend.live_version(name)? {
            Some(v) => self.backend.read_release(name, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The version the live pointer of `name` names, if any (without
    /// reading the version).
    pub fn live_version(&self, name: &str) -> Result<Option<String>> {
        self.backend.live_version(name)
    }

    /// Reads the release `version` of `name`.
    pub fn read_release(&self, name: &str, version: &str) -> Result<Release> {
        self.backend.read_release(name, version)
    }

    /// All versions of `name` certctl wrote, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<String>> {
        self.backend.versions(name)
    }

    /// Names with a live version, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        self.backend.names()
    }

    /// Removes old versions of `name`, keeping the newest `keep`, the live
    /// one and the one before it. Only a complete certctl version is removed.
    pub fn prune(&self, name: &str, keep: usize) -> Result<Vec<String>> {
        self.backend.prune(name, keep)
    }

    /// The versions of `name` that may be pruned at `now`, with the end of
    /// their certificate's validity: only versions whose certificate has
    /// expired (nothing left to revoke, roll back to or serve), never the
    /// live one, the one before it, or the newest `keep`. A version that
    /// cannot be read is left alone (a warning).
    pub fn prunable(
        &self,
        name: &str,
        keep: usize,
        now: time::OffsetDateTime,
    ) -> Result<Vec<(String, time::OffsetDateTime)>> {
        let versions = self.versions(name)?;
        let live = self.live_version(name)?;
        let mut out = Vec::new();
        for v in super::prune_candidates(&versions, live.as_deref(), keep) {
            match self.read_release(name, &v) {
                Ok(r) if r.meta.not_after <= now => out.push((v, r.meta.not_after)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(name, version = %v, error = %crate::error_chain(&e), "left alone: cannot read it")
                }
            }
        }
        Ok(out)
    }

    /// Removes the version `version` of `name` (one [`Store::prunable`]
    /// named): never the live one, and in a directory store only a
    /// complete certctl version. `false` when it was left alone. On etcd
    /// the delete is fenced by the run's lock like every write.
    pub fn remove_version(&self, name: &str, version: &str) -> Result<bool> {
        self.backend.remove_version(name, version)
    }

    fn read_typed<T: DeserializeOwned>(&self, r: Record<'_>) -> Result<Option<T>> {
        match self.backend.read_record(r)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    path: self.backend.record_path(r),
                    source,
                }),
        }
    }

    fn write_typed<T: Serialize>(&self, r: Record<'_>, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Encode {
            path: self.backend.record_path(r),
            source,
        })?;
        self.backend.write_record(r, &bytes)
    }

    /// Reads a store-wide health record (e.g. the steps of the last runs).
    pub fn read_health<T: DeserializeOwned>(&self, record: &str) -> Result<Option<T>> {
        self.read_typed(Record::Health(record))
    }

    /// Writes a store-wide health record atomically.
    pub fn write_health<T: Serialize>(&self, record: &str, value: &T) -> Result<()> {
        self.write_typed(Record::Health(record), value)
    }

    /// Reads a state record of certificate `name` (`renewal`, `node-<node>`).
    pub fn read_state<T: DeserializeOwned>(&self, name: &str, record: &str) -> Result<Option<T>> {
        self.read_typed(Record::State { name, record })
    }

    /// The names of the state records kept for certificate `name`.
    pub fn state_records(&self, name: &str) -> Result<Vec<String>> {
        self.backend.state_records(name)
    }

    /// Writes a state record atomically.
    pub fn write_state<T: Serialize>(&self, name: &str, record: &str, value: &T) -> Result<()> {
        self.write_typed(Record::State { name, record }, value)
    }
}
