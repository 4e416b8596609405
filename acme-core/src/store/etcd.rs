//! The etcd store: the same store, shared by two or three controllers
//! through an etcd cluster (v3 API; etcd 3.4 and later).
//!
//! Layout under the prefix `<p>` (default `/certctl/`):
//!
//! ```text
//! <p>marker                                  {"certctl":"store","key_id":…,"rekey_to":…}
//! <p>accounts/<sha256 of directory URL>      sealed account JSON
//! <p>accounts/<sha256>.pending               sealed pending rollover key
//! <p>archive/<name>/<version>/privkey        sealed PKCS#8 PEM
//! <p>archive/<name>/<version>/{cert,chain,fullchain}   PEM
//! <p>archive/<name>/<version>/meta           meta.json bytes
//! <p>live/<name>                             the live version's name
//! <p>state/<name>/<record>                   JSON (renewal, node-<node>, txt-journal)
//! <p>health/<record>                         JSON
//! <p>lock/<lease id hex>                     etcd lock API keys (one per waiting run)
//! <p>holders/<lease id hex>                  {"host","pid","since"} of a lock holder
//! ```
//!
//! A version is written in one transaction (all five keys). A new version
//! ([`super::Store::install`]) moves `live/<name>` in that same transaction,
//! and only if that key's mod_revision has not moved since it was read; a
//! version made live later (`set_live`, an import) is swapped in by the same
//! compare-and-swap. A version whose transaction would exceed
//! [`MAX_REQUEST_BYTES`] is refused before anything is sent. The lock is the etcd lock API on a lease
//! kept alive in the background; every write of a locked run is a
//! transaction that also compares the lock key's create_revision, so a run
//! that lost its lease (paused past the TTL, cut off) writes nothing more.
//! Private keys and account keys are sealed ([`super::seal`]) before they
//! leave the process.
//!
//! etcd-client is async and the store API is not: the store owns a small
//! tokio runtime (one worker) and every call is spawned there and waited
//! for on a std channel ([`wait_on`]), safe from inside the caller's
//! own runtime. Each call is bounded ([`REQUEST_TIMEOUT`]) so a cluster
//! without quorum fails a run fast.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, LockOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use serde::{Deserialize, Serialize};

use super::api::{AccountId, Backend, Fetched, NodeFence, Record, VersionFiles};
use super::etcd_tls::{self, EtcdTls, TlsChannel};
use super::seal::DataKey;
#[cfg(test)]
use super::seal::SealError;
use super::{Audit, Damage, Release, ReleaseMeta, Repair, Result, StoreError, StoreLock};
use crate::secret::Secret;

/// etcd's default `--max-request-bytes` (1.5 MiB): a version whose one
/// transaction would be larger is refused.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Room kept in a request for the keys, compares and framing.
const REQUEST_OVERHEAD: usize = 4096;
/// Bound on connecting to an endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one request (a cluster without quorum does not answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[store]` table with `type = "etcd"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs: all `http://host:port`, or all `https://host:port`
    /// (then `tls` is set).
    pub endpoints: Vec<String>,
    /// Key prefix, ending in `/`.
    pub prefix: String,
    /// The file holding the data key (mode 0600).
    pub key_file: PathBuf,
    /// The lock lease's TTL.
    pub lease_ttl: Duration,
    /// TLS to the members: set for `https://` endpoints.
    pub tls: Option<EtcdTls>,
}

impl EtcdConfig {
    /// `etcd <endpoints> prefix <p>`, for messages.
    pub fn describe(&self) -> String {
        format!("etcd {} prefix {}", self.endpoints.join(","), self.prefix)
    }
}

/// How [`EtcdStore::open`] treats a prefix with no store yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Writable; the marker is written when missing.
    Write,
    /// Read-only; a missing store is an error.
    Existing,
    /// Read-only; a missing store reads as empty.
    ReadOnly,
}

/// `<p>marker`: the store is certctl's, and which data key seals it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    certctl: String,
    key_id: String,
    #[serde(default)]
    rekey_to: Option<String>,
}

/// Who holds the lock, attached to its lease.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    #[serde(with = "time::serde::rfc3339")]
    since: time::OffsetDateTime,
}

/// The lock this process holds: the fence every write compares.
#[derive(Debug)]
struct Fence {
    /// The lock key and its create_revision, once the lock is ours.
    lock: std::sync::OnceLock<(Vec<u8>, i64)>,
    /// The etcd cluster's id, from the lock's answer (names the store in
    /// the node fence with the prefix).
    cluster: std::sync::OnceLock<u64>,
    lease: i64,
    ttl: Duration,
    lost: AtomicBool,
    last_ack: Mutex<Instant>,
}

impl Fence {
    fn is_lost(&self) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return true;
        }
        let since = self
            .last_ack
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX);
        if since >= self.ttl {
            self.lost.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }
}

/// The runtime and client, shared with the lock guard.
struct Inner {
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    describe: String,
    fence: Mutex<Option<Arc<Fence>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run inside the caller's runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Inner {
    /// Runs the request `make` builds on the store's runtime, bounded by
    /// `limit`. A request an endpoint could not take (`Unavailable`: a
    /// member down, no connection) is sent again, to whichever member the
    /// client picks, until the bound; a cluster that has lost its quorum
    /// thus fails the call after `limit`.
    fn run_for<T, F, Fut>(&self, action: &'static str, limit: Duration, make: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>> + Send,
    {
        let timeout = || StoreError::EtcdTimeout {
            action,
            store: self.describe.clone(),
            after: limit,
        };
        let Some(rt) = &self.rt else {
            return Err(timeout());
        };
        let client = self.client.clone();
        let deadline = tokio::time::Instant::now() + limit;
        let handle = wait_on(rt, async move {
            let mut delay = Duration::from_millis(20);
            loop {
                let attempt = tokio::time::timeout_at(deadline, make(client.clone())).await;
                match attempt {
                    Ok(Err(e)) if unavailable(&e) => {
                        if tokio::time::Instant::now() + delay >= deadline {
                            return Ok(Err(e));
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_millis(500));
                    }
                    Ok(r) => return Ok(r),
                    Err(elapsed) => return Err(elapsed),
                }
            }
        });
        match handle {
            Some(Ok(Ok(v))) => Ok(v),
            Some(Ok(Err(source))) => Err(StoreError::Etcd {
                action,
                store: self.describe.clone(),
                source: Box::new(source),
            }),
            Some(Err(_)) | None => Err(timeout()),
        }
    }

    fn run<T, F, Fut>(&self, action: &'static str, make: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>> + Send,
    {
        self.run_for(action, REQUEST_TIMEOUT, make)
    }

    fn fence(&self) -> Option<Arc<Fence>> {
        self.fence.lock().ok().and_then(|f| f.clone())
    }
}

/// Whether the request never reached a member that could serve it (sent
/// again to another member).
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// The etcd lock held by this process; dropping it revokes the lease (the
/// lock key and holder record go with it).
pub(crate) struct LockGuard {
    inner: Arc<Inner>,
    fence: Arc<Fence>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lease", &self.fence.lease)
            .finish_non_exhaustive()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Ok(mut f) = self.inner.fence.lock() {
            *f = None;
        }
        let lease = self.fence.lease;
        let _ = self
            .inner
            .run("revoke the lock lease", move |mut c| async move {
                c.lease_revoke(lease).await
            });
    }
}

/// The etcd backend.
#[derive(Debug)]
pub(crate) struct EtcdStore {
    inner: Arc<Inner>,
    cfg: EtcdConfig,
    key: Arc<DataKey>,
    writable: bool,
}

/// One stored value.
struct Kv {
    key: String,
    value: Vec<u8>,
    mod_revision: i64,
}

impl EtcdStore {
    /// Connects, checks the marker and the data key.
    pub(crate) fn open(cfg: &EtcdConfig, mode: Mode) -> Result<Self> {
        let key = Arc::new(DataKey::load(&cfg.key_file)?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("certctl-etcd")
            .enable_all()
            .build()
            .map_err(StoreError::Runtime)?;
        let tls = cfg
            .tls
            .as_ref()
            .map(EtcdTls::load)
            .transpose()?
            .map(Arc::new);
        // etcd-client is built without its (ring) TLS: with TLS it is given
        // `http://` URLs that `TlsChannel` connects to as `https://`.
        let endpoints: Vec<String> = cfg
            .endpoints
            .iter()
            .map(|e| match e.strip_prefix("https://") {
                Some(rest) => format!("http://{rest}"),
                None => e.clone(),
            })
            .collect();
        let describe = cfg.describe();
        let channel = tls.as_ref().map(|t| TlsChannel {
            tls: t.tonic(),
            connect_timeout: CONNECT_TIMEOUT,
            timeout: REQUEST_TIMEOUT,
        });
        let connect = wait_on(&rt, async move {
            let opts = ConnectOptions::new()
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(REQUEST_TIMEOUT);
            let bound = CONNECT_TIMEOUT + REQUEST_TIMEOUT;
            match channel {
                None => tokio::time::timeout(bound, Client::connect(endpoints, Some(opts))).await,
                Some(channel) => {
                    tokio::time::timeout(
                        bound,
                        Client::connect_with_balanced_channel(endpoints, Some(opts), channel),
                    )
                    .await
                }
            }
        });
        let client = match connect {
            Some(Ok(Ok(c))) => c,
            Some(Ok(Err(source))) => {
                rt.shutdown_background();
                return Err(StoreError::Etcd {
                    action: "connect",
                    store: describe,
                    source: Box::new(source),
                });
            }
            _ => {
                rt.shutdown_background();
                return Err(StoreError::EtcdTimeout {
                    action: "connect",
                    store: describe,
                    after: CONNECT_TIMEOUT + REQUEST_TIMEOUT,
                });
            }
        };
        let store = EtcdStore {
            inner: Arc::new(Inner {
                rt: Some(rt),
                client,
                describe,
                fence: Mutex::new(None),
            }),
            cfg: cfg.clone(),
            key,
            writable: mode == Mode::Write,
        };
        match (store.check_marker(mode), tls) {
            (Ok(()), _) => Ok(store),
            // Over TLS, "no answer" may be a handshake a member refused:
            // name it if so.
            (Err(e @ (StoreError::Etcd { .. } | StoreError::EtcdTimeout { .. })), Some(tls)) => {
                let endpoints = cfg.endpoints.clone();
                let found = store
                    .inner
                    .rt
                    .as_ref()
                    .and_then(|rt| {
                        wait_on(
                            rt,
                            async move { etcd_tls::diagnose(&tls, &endpoints).await },
                        )
                    })
                    .flatten();
                Err(found.unwrap_or(e))
            }
            (Err(e), _) => Err(e),
        }
    }

    fn k(&self, rel: &str) -> String {
        format!("{}{rel}", self.cfg.prefix)
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn get(&self, action: &'static str, key: String) -> Result<Option<Kv>> {
        let kv = self.inner.run(action, move |mut c| {
            let key = key.clone();
            async move {
                let r = c.get(key, None).await?;
                Ok(r.kvs().first().map(|kv| Kv {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                }))
            }
        })?;
        Ok(kv)
    }

    fn get_prefix(&self, action: &'static str, prefix: String, keys_only: bool) -> Result<Vec<Kv>> {
        self.inner.run(action, move |mut c| {
            let prefix = prefix.clone();
            async move {
                let mut o = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Ascend);
                if keys_only {
                    o = o.with_keys_only();
                }
                let r = c.get(prefix, Some(o)).await?;
                Ok(r.kvs()
                    .iter()
                    .map(|kv| Kv {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        value: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                    })
                    .collect())
            }
        })
    }

    /// The names directly below `rel` (`<p><rel><name>[/…]`), sorted, unique.
    fn children(&self, action: &'static str, rel: &str) -> Result<Vec<String>> {
        let base = self.k(rel);
        let mut v: Vec<String> = self
            .get_prefix(action, base.clone(), true)?
            .into_iter()
            .filter_map(|kv| {
                let rest = kv.key.strip_prefix(&base)?;
                Some(rest.split('/').next()?.to_string())
            })
            .filter(|s| !s.is_empty())
            .collect();
        v.dedup();
        Ok(v)
    }

    fn writable(&self, action: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(StoreError::EtcdReadOnly {
                store: self.describe(),
                action,
            })
        }
    }

    /// Runs a write transaction: `ops` if `compares` hold and, when this
    /// process holds the lock, the lock key is still ours. `Ok(false)` when
    /// one of `compares` failed (the caller says what that means);
    /// [`StoreError::Fenced`] when the lock is no longer ours.
    /// Writes `bytes` at `key` (fenced, as every write) only if the key's
    /// mod_revision is still `rev`; `LiveMoved` if another writer got there.
    fn put_if_unmoved(
        &self,
        action: &'static str,
        key: &str,
        rev: i64,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let unmoved = Compare::mod_revision(key.to_string(), CompareOp::Equal, rev);
        let put = TxnOp::put(key.to_string(), bytes, None);
        if self.write(action, key, vec![unmoved], vec![put])? {
            Ok(())
        } else {
            Err(StoreError::LiveMoved {
                key: key.to_string(),
            })
        }
    }

    fn write(
        &self,
        action: &'static str,
        what: &str,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<bool> {
        self.writable(action)?;
        let fence = self.inner.fence();
        let held = fence.as_ref().and_then(|f| f.lock.get().cloned());
        if let Some(f) = &fence {
            if f.is_lost() {
                return Err(self.lease_lost());
            }
        }
        if let Some((lock_key, revision)) = &held {
            compares.push(Compare::create_revision(
                lock_key.clone(),
                CompareOp::Equal,
                *revision,
            ));
        }
        let check = held
            .as_ref()
            .map(|(k, _)| vec![TxnOp::get(k.clone(), None)])
            .unwrap_or_default();
        let txn = Txn::new().when(compares).and_then(ops).or_else(check);
        let resp = self.inner.run(action, move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        if resp.succeeded() {
            return Ok(true);
        }
        if let (Some(f), Some((_, revision))) = (&fence, &held) {
            let ours = resp.op_responses().into_iter().any(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .is_some_and(|kv| kv.create_revision() == *revision),
                _ => false,
            });
            if !ours {
                f.lost.store(true, Ordering::SeqCst);
                return Err(StoreError::Fenced {
                    store: self.describe(),
                    key: what.to_string(),
                });
            }
        }
        Ok(false)
    }

    fn lease_lost(&self) -> StoreError {
        StoreError::LeaseLost {
            store: self.describe(),
            ttl: self.cfg.lease_ttl,
        }
    }

    fn read_marker(&self) -> Result<Option<(Marker, i64)>> {
        let key = self.k("marker");
        match self.get("read the store marker", key.clone())? {
            None => Ok(None),
            Some(kv) => match serde_json::from_slice::<Marker>(&kv.value) {
                Ok(m) if m.certctl == "store" => Ok(Some((m, kv.mod_revision))),
                _ => Err(StoreError::EtcdNotAStore {
                    store: self.describe(),
                    key,
                }),
            },
        }
    }

    fn check_marker(&self, mode: Mode) -> Result<()> {
        let marker = match self.read_marker()? {
            Some((m, _)) => m,
            None => match mode {
                Mode::ReadOnly => return Ok(()),
                Mode::Existing => {
                    return Err(StoreError::EtcdNoStore {
                        store: self.describe(),
                    })
                }
                Mode::Write => {
                    let m = Marker {
                        certctl: "store".into(),
                        key_id: self.key.id().to_string(),
                        rekey_to: None,
                    };
                    let key = self.k("marker");
                    let bytes = encode(&key, &m)?;
                    // Two controllers creating it at once: the second finds it.
                    let created = self.write(
                        "create the store marker",
                        &key,
                        vec![Compare::version(key.clone(), CompareOp::Equal, 0)],
                        vec![TxnOp::put(key.clone(), bytes, None)],
                    )?;
                    if created {
                        tracing::info!(store = %self.describe(), "created the store (wrote its marker)");
                        return Ok(());
                    }
                    match self.read_marker()? {
                        Some((m, _)) => m,
                        None => {
                            return Err(StoreError::EtcdNoStore {
                                store: self.describe(),
                            })
                        }
                    }
                }
            },
        };
        if marker.key_id != self.key.id() {
            return Err(StoreError::WrongDataKey {
                file: self.key.file().to_path_buf(),
                have: self.key.id().to_string(),
                store_key: marker.key_id,
            });
        }
        Ok(())
    }

    fn seal(&self, key: &str, plain: &[u8]) -> Vec<u8> {
        self.key.seal(key, plain)
    }

    fn unseal(&self, key: &str, sealed: &[u8]) -> Result<Secret> {
        self.key
            .open(key, sealed)
            .map_err(|source| StoreError::Sealed {
                key: key.to_string(),
                file: self.key.file().to_path_buf(),
                source: Box::new(source),
            })
    }

    fn account_key(&self, id: &AccountId) -> String {
        let suffix = if id.pending { ".pending" } else { "" };
        self.k(&format!("accounts/{}{suffix}", id.digest))
    }

    fn version_prefix(&self, name: &str, version: &str) -> String {
        self.k(&format!("archive/{name}/{version}/"))
    }

    /// Deletes every key of one version in one (fenced) transaction.
    fn delete_version(&self, name: &str, version: &str) -> Result<()> {
        let base = self.version_prefix(name, version);
        self.write(
            "remove an old version",
            &base,
            Vec::new(),
            vec![TxnOp::delete(
                base.clone(),
                Some(DeleteOptions::new().with_prefix()),
            )],
        )?;
        Ok(())
    }

    fn record_key(&self, r: Record<'_>) -> String {
        match r {
            Record::Health(record) => self.k(&format!("health/{record}")),
            Record::State { name, record } => self.k(&format!("state/{name}/{record}")),
        }
    }

    /// The files of a version as stored (the key still sealed).
    fn fetch_version(&self, name: &str, version: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let base = self.version_prefix(name, version);
        Ok(self
            .get_prefix("read a version", base.clone(), false)?
            .into_iter()
            .filter_map(|kv| Some((kv.key.strip_prefix(&base)?.to_string(), kv.value)))
            .collect())
    }

    fn holder(&self) -> String {
        let lock = self.k("lock/");
        let first = self.inner.run("find the lock holder", move |mut c| {
            let lock = lock.clone();
            async move {
                let o = GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1);
                let r = c.get(lock, Some(o)).await?;
                Ok(r.kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()))
            }
        });
        let Ok(Some(key)) = first else {
            return String::new();
        };
        let lease = key.rsplit('/').next().unwrap_or_default().to_string();
        match self.get("read the lock holder", self.k(&format!("holders/{lease}"))) {
            Ok(Some(kv)) => match serde_json::from_slice::<Holder>(&kv.value) {
                Ok(h) => format!(
                    " (host {}, pid {}, since {})",
                    h.host
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect::<String>(),
                    h.pid,
                    h.since
                        .replace_nanosecond(0)
                        .ok()
                        .and_then(|t| t
                            .format(&time::format_description::well_known::Rfc3339)
                            .ok())
                        .unwrap_or_default()
                ),
                Err(_) => format!(" (lease {lease})"),
            },
            _ => format!(" (lease {lease})"),
        }
    }

    /// Writes a version in one transaction; with `live`, the live pointer
    /// moves in the same transaction, if it has not moved since read.
    fn put_version(
        &self,
        name: &str,
        version: &str,
        files: &VersionFiles<'_>,
        live: bool,
    ) -> Result<()> {
        let base = self.version_prefix(name, version);
        let mut ops = Vec::new();
        let mut bytes = REQUEST_OVERHEAD;
        for (which, content) in files.all() {
            let key = format!("{base}{which}");
            let value = if which == "privkey" {
                self.seal(&key, content)
            } else {
                content.to_vec()
            };
            bytes += key.len() + value.len();
            ops.push(TxnOp::put(key, value, None));
        }
        if bytes > MAX_REQUEST_BYTES {
            return Err(StoreError::TooLarge {
                name: name.to_string(),
                version: version.to_string(),
                bytes,
                limit: MAX_REQUEST_BYTES,
            });
        }
        let meta = format!("{base}meta");
        let mut compares = vec![Compare::version(meta.clone(), CompareOp::Equal, 0)];
        let live_key = self.k(&format!("live/{name}"));
        if live {
            let seen = self
                .get("read the live pointer", live_key.clone())?
                .map_or(0, |kv| kv.mod_revision);
            compares.push(Compare::mod_revision(
                live_key.clone(),
                CompareOp::Equal,
                seen,
            ));
            ops.push(TxnOp::put(
                live_key.clone(),
                version.as_bytes().to_vec(),
                None,
            ));
        }
        if !self.write("install a version", &meta, compares, ops)? {
            if self.versions(name)?.iter().any(|v| v == version) {
                return Err(StoreError::VersionExists {
                    name: name.to_string(),
                    version: version.to_string(),
                });
            }
            return Err(StoreError::LiveMoved { key: live_key });
        }
        Ok(())
    }

    /// Re-seals every sealed value under `new` (see `certctl store rekey`).
    /// Needs the lock. Re-runnable: values already under `new` are counted
    /// and skipped; the marker names `new` only when all are done.
    pub(crate) fn rekey(&self, new: &DataKey) -> Result<Rekeyed> {
        if self.inner.fence().is_none() {
            return Err(StoreError::EtcdReadOnly {
                store: self.describe(),
                action: "re-key without the lock",
            });
        }
        let marker_key = self.k("marker");
        let Some((mut marker, rev)) = self.read_marker()? else {
            return Err(StoreError::EtcdNoStore {
                store: self.describe(),
            });
        };
        match &marker.rekey_to {
            Some(to) if to != new.id() => {
                return Err(StoreError::RekeyUnderWay {
                    store: self.describe(),
                    to: to.clone(),
                })
            }
            Some(_) => {}
            None => {
                marker.rekey_to = Some(new.id().to_string());
                let bytes = encode(&marker_key, &marker)?;
                self.put_if_unmoved("start the re-key", &marker_key, rev, bytes)?;
            }
        }
        let mut done = Rekeyed::default();
        let mut sealed = self.get_prefix("list the accounts", self.k("accounts/"), false)?;
        sealed.extend(
            self.get_prefix("list the versions", self.k("archive/"), false)?
                .into_iter()
                .filter(|kv| kv.key.ends_with("/privkey")),
        );
        for kv in sealed {
            if super::seal::sealed_with(&kv.value).as_deref() == Some(new.id()) {
                done.already += 1;
                continue;
            }
            let plain = self.unseal(&kv.key, &kv.value)?;
            let resealed = new.seal(&kv.key, plain.expose());
            self.put_if_unmoved("re-seal a value", &kv.key, kv.mod_revision, resealed)?;
            done.resealed += 1;
        }
        let Some((mut marker, rev)) = self.read_marker()? else {
            return Err(StoreError::EtcdNoStore {
                store: self.describe(),
            });
        };
        marker.key_id = new.id().to_string();
        marker.rekey_to = None;
        let bytes = encode(&marker_key, &marker)?;
        self.put_if_unmoved("finish the re-key", &marker_key, rev, bytes)?;
        Ok(done)
    }
}

/// What a re-key did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    /// Values sealed again under the new key.
    pub resealed: usize,
    /// Values found already under the new key (an earlier, interrupted run).
    pub already: usize,
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        path: PathBuf::from(key),
        source,
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Backend for EtcdStore {
    fn describe(&self) -> String {
        EtcdStore::describe(self)
    }

    fn root(&self) -> Option<&Path> {
        None
    }

    fn is_writable(&self) -> bool {
        self.writable
    }

    fn loose_modes(&self) -> Result<Vec<Repair>> {
        Ok(Vec::new())
    }

    fn lock(&self, wait: Duration) -> Result<StoreLock> {
        self.writable("take the lock")?;
        let ttl = self.cfg.lease_ttl;
        let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
        let lease = self
            .inner
            .run("grant the lock lease", move |mut c| async move {
                Ok(c.lease_grant(ttl_secs, None).await?.id())
            })?;
        let holder = Holder {
            host: host_name(),
            pid: std::process::id(),
            since: time::OffsetDateTime::now_utc(),
        };
        let holder_key = self.k(&format!("holders/{lease:x}"));
        let holder_bytes = encode(&holder_key, &holder)?;
        let fence = Arc::new(Fence {
            lock: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
            lease,
            ttl,
            lost: AtomicBool::new(false),
            last_ack: Mutex::new(Instant::now()),
        });
        let revoke = |inner: &Inner| {
            let _ = inner.run("revoke the lock lease", move |mut c| async move {
                c.lease_revoke(lease).await
            });
        };
        if let Err(e) = self.inner.run("record the lock holder", move |mut c| {
            let (k, v) = (holder_key.clone(), holder_bytes.clone());
            async move { c.put(k, v, Some(PutOptions::new().with_lease(lease))).await }
        }) {
            revoke(&self.inner);
            return Err(e);
        }
        // Keep the lease alive from now on (also while waiting).
        let ka_fence = fence.clone();
        let mut c = self.inner.client.clone();
        if let Some(rt) = &self.inner.rt {
            rt.spawn(async move {
                let tick = (ttl / 3).max(Duration::from_millis(500));
                let mut keeper = None;
                loop {
                    tokio::time::sleep(tick).await;
                    if keeper.is_none() {
                        keeper = c.lease_keep_alive(lease).await.ok();
                    }
                    let Some((k, s)) = keeper.as_mut() else {
                        if ka_fence.is_lost() {
                            break;
                        }
                        continue;
                    };
                    let answer = tokio::time::timeout(tick, async {
                        k.keep_alive().await?;
                        s.message().await
                    })
                    .await;
                    match answer {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => {
                            if let Ok(mut t) = ka_fence.last_ack.lock() {
                                *t = Instant::now();
                            }
                        }
                        Ok(Ok(Some(_))) => {
                            // The lease is gone: expired while we could not renew it.
                            ka_fence.lost.store(true, Ordering::SeqCst);
                            break;
                        }
                        _ => keeper = None,
                    }
                    if ka_fence.is_lost() {
                        break;
                    }
                }
            });
        }
        let lock_prefix = self.k("lock/");
        let lock_name = self.k("lock");
        let busy = !self
            .get_prefix("look at the lock", lock_prefix, true)?
            .is_empty();
        let limit = if busy {
            wait
        } else {
            wait.max(REQUEST_TIMEOUT)
        };
        let start = Instant::now();
        let got = if busy && wait.is_zero() {
            Err(StoreError::EtcdTimeout {
                action: "take the lock",
                store: self.describe(),
                after: wait,
            })
        } else {
            self.inner.run_for("take the lock", limit, move |mut c| {
                let lock_name = lock_name.clone();
                async move {
                    let r = c
                        .lock(lock_name, Some(LockOptions::new().with_lease(lease)))
                        .await?;
                    let key = r.key().to_vec();
                    let g = c.get(key.clone(), None).await?;
                    let cluster = g.header().map_or(0, |h| h.cluster_id());
                    Ok((key, g.kvs().first().map(|kv| kv.create_revision()), cluster))
                }
            })
        };
        let (lock_key, revision) = match got {
            Ok((key, Some(rev), cluster)) => {
                let _ = fence.cluster.set(cluster);
                (key, rev)
            }
            Ok((_, None, _)) => {
                revoke(&self.inner);
                return Err(self.lease_lost());
            }
            Err(StoreError::EtcdTimeout { .. }) => {
                let holder = self.holder();
                revoke(&self.inner);
                return Err(StoreError::EtcdLocked {
                    store: self.describe(),
                    holder,
                    waited: start.elapsed(),
                });
            }
            Err(e) => {
                revoke(&self.inner);
                return Err(e);
            }
        };
        let _ = fence.lock.set((lock_key, revision));
        if let Ok(mut f) = self.inner.fence.lock() {
            *f = Some(fence.clone());
        }
        Ok(StoreLock {
            _held: super::Held::Etcd(LockGuard {
                inner: self.inner.clone(),
                fence,
            }),
        })
    }

    fn node_fence(&self) -> Option<NodeFence> {
        let f = self.inner.fence()?;
        let (_, revision) = f.lock.get()?;
        let cluster = f.cluster.get()?;
        let mut named = cluster.to_be_bytes().to_vec();
        named.extend_from_slice(self.cfg.prefix.as_bytes());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &named);
        Some(NodeFence {
            store: digest.as_ref()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            revision: *revision,
        })
    }

    fn check_held(&self) -> Result<()> {
        let Some(f) = self.inner.fence() else {
            return Ok(());
        };
        if f.is_lost() {
            return Err(self.lease_lost());
        }
        let Some((key, revision)) = f.lock.get().cloned() else {
            return Ok(());
        };
        let rev = self.inner.run("check the lock", move |mut c| {
            let key = key.clone();
            async move {
                Ok(c.get(key, None)
                    .await?
                    .kvs()
                    .first()
                    .map(|kv| kv.create_revision()))
            }
        })?;
        if rev != Some(revision) {
            f.lost.store(true, Ordering::SeqCst);
            return Err(self.lease_lost());
        }
        Ok(())
    }

    fn account_ids(&self) -> Result<Vec<AccountId>> {
        Ok(self
            .children("list the accounts", "accounts/")?
            .into_iter()
            .map(|n| match n.strip_suffix(".pending") {
                Some(d) => AccountId {
                    digest: d.to_string(),
                    pending: true,
                },
                None => AccountId {
                    digest: n,
                    pending: false,
                },
            })
            .collect())
    }

    fn read_account(&self, id: &AccountId) -> Result<Option<Secret>> {
        let key = self.account_key(id);
        match self.get(id.reading(), key.clone())? {
            None => Ok(None),
            Some(kv) => self.unseal(&key, &kv.value).map(Some),
        }
    }

    fn write_account(&self, id: &AccountId, json: &[u8]) -> Result<()> {
        let key = self.account_key(id);
        let sealed = self.seal(&key, json);
        self.write(
            id.saving(),
            &key,
            Vec::new(),
            vec![TxnOp::put(key.clone(), sealed, None)],
        )
        .map(drop)
    }

    fn remove_account(&self, id: &AccountId) -> Result<()> {
        let key = self.account_key(id);
        self.write(
            id.removing(),
            &key,
            Vec::new(),
            vec![TxnOp::delete(key.clone(), None)],
        )
        .map(drop)
    }

    fn promote_pending_account(&self, digest: &str) -> Result<()> {
        let from = self.account_key(&AccountId {
            digest: digest.into(),
            pending: true,
        });
        let to = self.account_key(&AccountId {
            digest: digest.into(),
            pending: false,
        });
        let Some(kv) = self.get("read pending account", from.clone())? else {
            return Err(StoreError::NoSuchFile {
                path: PathBuf::from(from),
            });
        };
        let plain = self.unseal(&from, &kv.value)?;
        let sealed = self.seal(&to, plain.expose());
        if !self.write(
            "promote the pending account key",
            &to,
            vec![Compare::mod_revision(
                from.clone(),
                CompareOp::Equal,
                kv.mod_revision,
            )],
            vec![
                TxnOp::put(to.clone(), sealed, None),
                TxnOp::delete(from.clone(), None),
            ],
        )? {
            return Err(StoreError::LiveMoved { key: from });
        }
        Ok(())
    }

    fn store_version(&self, name: &str, version: &str, files: &VersionFiles<'_>) -> Result<()> {
        self.put_version(name, version, files, false)
    }

    fn store_live_version(
        &self,
        name: &str,
        version: &str,
        files: &VersionFiles<'_>,
    ) -> Result<()> {
        self.put_version(name, version, files, true)
    }

    fn set_live(&self, name: &str, version: &str) -> Result<()> {
        let live = self.k(&format!("live/{name}"));
        let current = self.get("read the live pointer", live.clone())?;
        let seen = current.as_ref().map_or(0, |kv| kv.mod_revision);
        let meta = format!("{}meta", self.version_prefix(name, version));
        let compares = vec![
            Compare::mod_revision(live.clone(), CompareOp::Equal, seen),
            Compare::version(meta, CompareOp::Greater, 0),
        ];
        if self.write(
            "swap the live pointer",
            &live,
            compares,
            vec![TxnOp::put(live.clone(), version.as_bytes().to_vec(), None)],
        )? {
            return Ok(());
        }
        if self.versions(name)?.iter().all(|v| v != version) {
            return Err(StoreError::NoSuchVersion {
                name: name.into(),
                version: version.into(),
            });
        }
        Err(StoreError::LiveMoved { key: live })
    }

    fn live_version(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .get("read the live pointer", self.k(&format!("live/{name}")))?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    fn read_release(&self, name: &str, version: &str) -> Result<Release> {
        let mut files = self.fetch_version(name, version)?;
        let base = self.version_prefix(name, version);
        let no_version = || StoreError::NoSuchVersion {
            name: name.into(),
            version: version.into(),
        };
        let meta_bytes = files.remove("meta").ok_or_else(no_version)?;
        let meta: ReleaseMeta =
            serde_json::from_slice(&meta_bytes).map_err(|source| StoreError::Corrupt {
                path: PathBuf::from(format!("{base}meta")),
                source,
            })?;
        let privkey = match files.remove("privkey") {
            Some(sealed) => self.unseal(&format!("{base}privkey"), &sealed)?,
            None => {
                return Err(StoreError::NoSuchFile {
                    path: PathBuf::from(format!("{base}privkey")),
                })
            }
        };
        let mut take = |which: &str| files.remove(which).unwrap_or_default();
        let fetched = Fetched {
            privkey,
            cert: take("cert"),
            chain: take("chain"),
            fullchain: take("fullchain"),
            meta: meta_bytes,
        };
        Ok(Release {
            name: name.into(),
            version: version.into(),
            dir: PathBuf::from(base.trim_end_matches('/')),
            meta,
            fetched: Some(Arc::new(fetched)),
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<String>> {
        let base = self.k(&format!("archive/{name}/"));
        let mut v: Vec<String> = self
            .get_prefix("list the versions", base.clone(), true)?
            .into_iter()
            .filter_map(|kv| {
                let rest = kv.key.strip_prefix(&base)?;
                let (version, file) = rest.split_once('/')?;
                (file == "meta").then(|| version.to_string())
            })
            .collect();
        v.sort();
        Ok(v)
    }

    fn names(&self) -> Result<Vec<String>> {
        self.children("list the certificates", "live/")
    }

    fn prune(&self, name: &str, keep: usize) -> Result<Vec<String>> {
        self.writable("prune")?;
        let versions = self.versions(name)?;
        let live = self.live_version(name)?;
        let mut removed = Vec::new();
        for v in super::prune_candidates(&versions, live.as_deref(), keep) {
            self.delete_version(name, &v)?;
            removed.push(v);
        }
        Ok(removed)
    }

    fn remove_version(&self, name: &str, version: &str) -> Result<bool> {
        self.writable("remove an old version")?;
        if self.live_version(name)?.as_deref() == Some(version) {
            tracing::warn!(name, version, "left alone: it is the live version");
            return Ok(false);
        }
        self.delete_version(name, version)?;
        Ok(true)
    }

    fn record_path(&self, r: Record<'_>) -> PathBuf {
        PathBuf::from(self.record_key(r))
    }

    fn read_record(&self, r: Record<'_>) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get("read a record", self.record_key(r))?
            .map(|kv| kv.value))
    }

    fn write_record(&self, r: Record<'_>, bytes: &[u8]) -> Result<()> {
        let key = self.record_key(r);
        let action = match r {
            Record::Health(_) => "write health",
            Record::State { .. } => "write state",
        };
        self.write(
            action,
            &key,
            Vec::new(),
            vec![TxnOp::put(key.clone(), bytes.to_vec(), None)],
        )
        .map(drop)
    }

    fn health_records(&self) -> Result<Vec<String>> {
        Ok(self
            .children("list the health records", "health/")?
            .into_iter()
            .filter(|r| !r.contains(".damaged-"))
            .collect())
    }

    fn state_records(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .children("list the state records", &format!("state/{name}/"))?
            .into_iter()
            .filter(|r| !r.contains(".damaged-"))
            .collect())
    }

    fn audit(&self, name: &str) -> Audit {
        let mut audit = Audit::default();
        let live = self.k(&format!("live/{name}"));
        match self.live_version(name) {
            Ok(None) => {}
            Err(e) => audit.damage.push(Damage::new(
                PathBuf::from(&live),
                super::Part::LiveLink,
                super::Problem::Store(Box::new(e)),
            )),
            Ok(Some(version)) => match self.fetch_version(name, &version) {
                Err(e) => audit.damage.push(Damage::new(
                    PathBuf::from(&live),
                    super::Part::LiveLink,
                    super::Problem::Store(Box::new(e)),
                )),
                Ok(files) if files.is_empty() => audit.damage.push(Damage::new(
                    PathBuf::from(&live),
                    super::Part::LiveLink,
                    super::Problem::DanglingLink {
                        target: PathBuf::from(self.version_prefix(name, &version)),
                    },
                )),
                Ok(files) => {
                    audit.version = Some(version.clone());
                    let base = self.version_prefix(name, &version);
                    let key_path = format!("{base}privkey");
                    let unseal = |v: &[u8]| self.key.open(&key_path, v);
                    let source = super::audit::Source {
                        path: &|which: &str| PathBuf::from(format!("{base}{which}")),
                        read: &|which: &str| match files.get(which) {
                            None => Err(super::Problem::Missing),
                            Some(v) if which == "privkey" => unseal(v)
                                .map(|s| s.expose().to_vec())
                                .map_err(super::Problem::Sealed),
                            Some(v) => Ok(v.clone()),
                        },
                        present: &|which: &str| {
                            if files.contains_key(which) {
                                Ok(())
                            } else {
                                Err(super::Problem::Missing)
                            }
                        },
                    };
                    let meta = super::audit::check_release(&source, &mut audit);
                    let get = |which: &str| files.get(which).cloned().unwrap_or_default();
                    audit.release = meta.map(|meta| Release {
                        name: name.to_string(),
                        version: version.clone(),
                        dir: PathBuf::from(base.trim_end_matches('/')),
                        meta,
                        fetched: Some(Arc::new(Fetched {
                            privkey: files
                                .get("privkey")
                                .and_then(|v| unseal(v).ok())
                                .unwrap_or_else(|| Secret::new(Vec::new())),
                            cert: get("cert"),
                            chain: get("chain"),
                            fullchain: get("fullchain"),
                            meta: get("meta"),
                        })),
                    });
                }
            },
        }
        let base = self.k(&format!("state/{name}/"));
        match self.get_prefix("read the state records", base.clone(), false) {
            Err(e) => audit.damage.push(Damage::new(
                PathBuf::from(&base),
                super::Part::RenewalRecord,
                super::Problem::Store(Box::new(e)),
            )),
            Ok(kvs) => {
                for kv in kvs {
                    let Some(record) = kv.key.strip_prefix(&base) else {
                        continue;
                    };
                    if record.contains(".damaged-") {
                        continue;
                    }
                    let record = record.to_string();
                    super::audit::check_record(
                        &mut audit,
                        PathBuf::from(&kv.key),
                        &record,
                        Ok(kv.value),
                    );
                }
            }
        }
        audit
    }

    fn set_aside(&self, damage: &mut Damage) -> Result<PathBuf> {
        let from = damage.path.to_string_lossy().into_owned();
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let to = format!("{from}.damaged-{stamp}");
        let Some(kv) = self.get("read a damaged record", from.clone())? else {
            return Err(StoreError::NoSuchFile {
                path: damage.path.clone(),
            });
        };
        if !self.write(
            "move aside",
            &from,
            vec![Compare::mod_revision(
                from.clone(),
                CompareOp::Equal,
                kv.mod_revision,
            )],
            vec![
                TxnOp::put(to.clone(), kv.value, None),
                TxnOp::delete(from.clone(), None),
            ],
        )? {
            return Err(StoreError::LiveMoved { key: from });
        }
        damage.set_aside = Some(PathBuf::from(&to));
        Ok(PathBuf::from(to))
    }
}

impl super::Store {
    /// Re-seals every sealed value of an etcd store under `new` (the
    /// `certctl store rekey` command); needs the lock. `None` for a
    /// directory store, which seals nothing.
    pub fn rekey(&self, new: &DataKey) -> Option<Result<Rekeyed>> {
        self.etcd.as_ref().map(|e| e.rekey(new))
    }
}

/// For tests across the crate: an etcd store on the endpoints in
/// `CERTCTL_TEST_ETCD` under a fresh prefix, or `None` (with a line saying
/// the test is skipped).
#[cfg(test)]
pub(crate) fn test_store(dir: &Path, test: &str) -> Option<super::Store> {
    let Ok(v) = std::env::var("CERTCTL_TEST_ETCD") else {
        println!(
            "skipped {test}: set CERTCTL_TEST_ETCD=http://host:2379[,…] to run it against etcd"
        );
        return None;
    };
    let key_file = dir.join("store.key");
    if !key_file.exists() {
        DataKey::generate(&key_file).expect("keygen");
    }
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let cfg = EtcdConfig {
        endpoints: v.split(',').map(|e| e.trim().to_string()).collect(),
        prefix: format!("/certctl-test/{test}-{}-{stamp}/", std::process::id()),
        key_file,
        lease_ttl: Duration::from_secs(3),
        tls: None,
    };
    Some(
        super::Store::open(&super::StoreConfig::Etcd(cfg))
            .expect("open the etcd store")
            .0,
    )
}

/// For tests across the crate: seals the live private key of `name` under
/// another data key, as a store re-keyed elsewhere would hold it.
#[cfg(test)]
pub(crate) fn seal_live_key_elsewhere(store: &super::Store, name: &str, dir: &Path) {
    let e = store.etcd.as_ref().expect("an etcd store");
    let version = e.live_version(name).expect("live").expect("a live version");
    let key = format!("{}privkey", e.version_prefix(name, &version));
    let plain = e
        .unseal(
            &key,
            &e.get("test", key.clone()).expect("get").expect("key").value,
        )
        .expect("unseal");
    let other = DataKey::generate(&dir.join("elsewhere.key")).expect("keygen");
    let sealed = other.seal(&key, plain.expose());
    e.write(
        "test",
        &key,
        Vec::new(),
        vec![TxnOp::put(key.clone(), sealed, None)],
    )
    .expect("put");
}

/// Runs `fut` on the store's own runtime and blocks this thread until it
/// ends; `None` if the task died without an answer.
///
/// The answer comes back on a std channel, not through the task's
/// `JoinHandle`: polling a `JoinHandle` from a thread inside the caller's
/// tokio runtime spends the caller's cooperative budget, and once it is spent
/// every poll returns `Pending` at once and wakes itself, a busy loop that
/// never ends (a `renew` of 50 certificates spun there at 100 % CPU).
fn wait_on<T, F>(rt: &tokio::runtime::Runtime, fut: F) -> Option<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{install_self_signed, Store, StoreConfig};

    /// The endpoints in `CERTCTL_TEST_ETCD`, or `None` (the test is skipped).
    fn endpoints(test: &str) -> Option<Vec<String>> {
        match std::env::var("CERTCTL_TEST_ETCD") {
            Ok(v) if !v.trim().is_empty() => {
                Some(v.split(',').map(|e| e.trim().to_string()).collect())
            }
            _ => {
                println!("skipped {test}: set CERTCTL_TEST_ETCD=http://host:2379[,…] to run it against etcd");
                None
            }
        }
    }

    /// A fresh prefix and data key for one test.
    fn config(endpoints: Vec<String>, dir: &Path, test: &str) -> EtcdConfig {
        let key_file = dir.join("store.key");
        if !key_file.exists() {
            DataKey::generate(&key_file).expect("keygen");
        }
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        EtcdConfig {
            endpoints,
            prefix: format!("/certctl-test/{test}-{}-{stamp}/", std::process::id()),
            key_file,
            lease_ttl: Duration::from_secs(3),
            tls: None,
        }
    }

    fn raw_values(store: &Store, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let e = store.etcd.as_ref().expect("etcd");
        e.get_prefix("test", prefix.to_string(), false)
            .expect("get")
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect()
    }

    /// The store is called from inside the CLI's tokio runtime, many times
    /// in one poll of one task (a renew of 50 certificates reads hundreds of
    /// records). Waiting on the store's own runtime must not spend that
    /// task's cooperative budget: it once spun forever at 100 % CPU there.
    #[test]
    fn hundreds_of_calls_from_inside_one_runtime_task_all_answer() {
        let Some(ep) = endpoints("etcd budget") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(ep, dir.path(), "budget");
        let (store, _) = Store::open(&StoreConfig::Etcd(cfg)).expect("open");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let answered = rt.block_on(async move {
                let mut n = 0;
                for _ in 0..600 {
                    store.live_version("www").expect("read");
                    n += 1;
                }
                n
            });
            let _ = tx.send(answered);
        });
        let answered = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("600 reads from inside a runtime task answered within 2 minutes");
        assert_eq!(answered, 600);
    }

    #[test]
    fn expired_old_versions_are_removed_whole_and_the_live_one_never() {
        let Some(ep) = endpoints("etcd prune") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(ep, dir.path(), "prune");
        let (store, _) = Store::open(&StoreConfig::Etcd(cfg.clone())).expect("open");
        let mut versions = Vec::new();
        for i in 0..4 {
            if i > 0 {
                // version names are by the second
                std::thread::sleep(Duration::from_millis(1050));
            }
            versions.push(install_self_signed(&store, "www", &["www.example.test"]).version);
        }
        assert_eq!(store.versions("www").expect("versions"), versions);
        // Not expired yet: nothing to prune.
        let now = time::OffsetDateTime::now_utc();
        assert!(store.prunable("www", 1, now).expect("prunable").is_empty());
        // Once they have all expired: all but the live one and the one before.
        let later = time::OffsetDateTime::new_utc(
            time::Date::from_calendar_date(4097, time::Month::January, 1).expect("date"),
            time::Time::MIDNIGHT,
        );
        let prunable: Vec<String> = store
            .prunable("www", 1, later)
            .expect("prunable")
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(prunable, versions[..2].to_vec());
        let _lock = store.lock(Duration::ZERO).expect("lock");
        for v in &prunable {
            assert!(store.remove_version("www", v).expect("remove"));
        }
        assert!(!store
            .remove_version("www", &versions[3])
            .expect("live left alone"));
        assert_eq!(
            store.versions("www").expect("versions"),
            versions[2..].to_vec()
        );
        for (k, _) in raw_values(&store, &cfg.prefix) {
            assert!(
                !prunable.iter().any(|v| k.contains(&format!("/{v}/"))),
                "{k} is left of a removed version"
            );
        }
        assert!(store.audit("www").sound().is_some());
    }

    #[test]
    fn a_version_is_stored_sealed_made_live_by_compare_and_swap_and_read_back() {
        let Some(ep) = endpoints("etcd install") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(ep, dir.path(), "install");
        let (store, _) = Store::open(&StoreConfig::Etcd(cfg.clone())).expect("open");
        let r = install_self_signed(&store, "www", &["www.example.test"]);
        assert_eq!(
            store.live_version("www").expect("live"),
            Some(r.version.clone())
        );
        let again = store.current("www").expect("current").expect("some");
        assert_eq!(
            again.read("privkey").expect("key"),
            r.read("privkey").expect("key")
        );
        assert!(
            String::from_utf8_lossy(&again.read("privkey").expect("key")).contains("PRIVATE KEY")
        );
        assert!(
            store.audit("www").sound().is_some(),
            "{:?}",
            store.audit("www").damage
        );
        for (k, v) in raw_values(&store, &cfg.prefix) {
            assert!(
                !String::from_utf8_lossy(&v).contains("PRIVATE KEY"),
                "{k} is plaintext"
            );
        }
        match store.set_live("www", "20990101T000000Z-00") {
            Err(StoreError::NoSuchVersion { .. }) => {}
            other => panic!("expected NoSuchVersion, got {other:?}"),
        }
        // The live pointer moved by another writer between read and write: refused.
        let e = store.etcd.as_ref().expect("etcd");
        let live = e.k("live/www");
        let seen = e
            .get("test", live.clone())
            .expect("get")
            .expect("live")
            .mod_revision;
        e.write(
            "test",
            &live,
            Vec::new(),
            vec![TxnOp::put(live.clone(), r.version.clone(), None)],
        )
        .expect("put");
        assert!(!e
            .write(
                "test",
                &live,
                vec![Compare::mod_revision(live.clone(), CompareOp::Equal, seen)],
                vec![TxnOp::put(live.clone(), "x", None)],
            )
            .expect("txn"));
        // A second data key is refused, naming the file.
        let other = dir.path().join("other.key");
        DataKey::generate(&other).expect("keygen");
        let wrong = EtcdConfig {
            key_file: other.clone(),
            ..cfg.clone()
        };
        match Store::open(&StoreConfig::Etcd(wrong)) {
            Err(err @ StoreError::WrongDataKey { .. }) => {
                assert!(
                    err.to_string().contains(&other.display().to_string()),
                    "{err}"
                );
            }
            other => panic!("expected WrongDataKey, got {other:?}"),
        }
        // Too large for one request.
        let big = vec![b'a'; MAX_REQUEST_BYTES];
        let files = VersionFiles {
            privkey: b"k",
            cert: &big,
            chain: b"",
            fullchain: b"",
            meta: b"{}",
        };
        match store.install_version("www", "20990101T000000Z-01", &files) {
            Err(StoreError::TooLarge { limit, .. }) => assert_eq!(limit, MAX_REQUEST_BYTES),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn a_run_whose_lease_is_gone_has_every_write_refused() {
        let Some(ep) = endpoints("etcd fencing") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(ep, dir.path(), "fence");
        let (a, _) = Store::open(&StoreConfig::Etcd(cfg.clone())).expect("open a");
        let (b, _) = Store::open(&StoreConfig::Etcd(cfg.clone())).expect("open b");
        let lock_a = a.lock(Duration::ZERO).expect("lock a");
        a.write_state("www", "renewal", &serde_json::json!({"a": 1}))
            .expect("fenced write");
        a.check_held().expect("held");
        // B waits, then names the holder.
        match b.lock(Duration::from_millis(500)) {
            Err(err @ StoreError::EtcdLocked { .. }) => {
                let text = err.to_string();
                assert!(
                    text.contains(&format!("pid {}", std::process::id())),
                    "{text}"
                );
            }
            other => panic!("expected EtcdLocked, got {other:?}"),
        }
        // The lease ends behind A's back (as when it was paused past the TTL).
        let ea = a.etcd.as_ref().expect("etcd");
        let lease = ea.inner.fence().expect("fence").lease;
        ea.inner
            .run(
                "test",
                move |mut c| async move { c.lease_revoke(lease).await },
            )
            .expect("revoke");
        let _lock_b = b.lock(Duration::from_secs(5)).expect("b takes over");
        // The nodes tell them apart: same store, B's token is the higher.
        let (fa, fb) = (
            a.node_fence().expect("a's fence"),
            b.node_fence().expect("b's fence"),
        );
        assert_eq!(fa.store, fb.store);
        assert!(fb.revision > fa.revision, "{fa:?} {fb:?}");
        match a.write_state("www", "renewal", &serde_json::json!({"a": 2})) {
            Err(StoreError::Fenced { .. }) | Err(StoreError::LeaseLost { .. }) => {}
            other => panic!("expected a refused write, got {other:?}"),
        }
        assert!(matches!(a.check_held(), Err(StoreError::LeaseLost { .. })));
        let seen: serde_json::Value = b.read_state("www", "renewal").expect("read").expect("some");
        assert_eq!(seen, serde_json::json!({"a": 1}));
        drop(lock_a);
    }

    #[test]
    fn a_store_exported_to_a_directory_and_imported_back_has_the_same_hashes() {
        let Some(ep) = endpoints("etcd export/import") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(ep, dir.path(), "copy");
        let (etcd, _) = Store::open(&StoreConfig::Etcd(cfg.clone())).expect("open");
        install_self_signed(&etcd, "www", &["www.example.test"]);
        install_self_signed(&etcd, "api", &["api.example.test"]);
        etcd.save_account("https://ca.test/dir", b"{\"k\":1}")
            .expect("account");
        etcd.write_state("www", "renewal", &serde_json::json!({"failures": 0}))
            .expect("state");
        let (out, _) = Store::open(&dir.path().join("export")).expect("dir");
        let c = crate::store::copy(&etcd, &out).expect("export");
        assert_eq!((c.versions, c.live, c.accounts, c.records), (2, 2, 1, 1));
        // Into a fresh etcd prefix, then again: the second run changes nothing.
        let cfg2 = config(cfg.endpoints.clone(), dir.path(), "copy2");
        let (back, _) = Store::open(&StoreConfig::Etcd(cfg2)).expect("open 2");
        let c = crate::store::copy(&out, &back).expect("import");
        assert_eq!((c.versions, c.identical), (2, 0));
        let c = crate::store::copy(&out, &back).expect("import again");
        assert_eq!(
            (c.versions, c.identical, c.accounts, c.records),
            (0, 2, 0, 0)
        );
        for name in ["www", "api"] {
            let a = etcd.current(name).expect("a").expect("some");
            let b = back.current(name).expect("b").expect("some");
            for f in ["privkey", "cert", "chain", "fullchain", "meta"] {
                assert_eq!(a.read(f).expect("a"), b.read(f).expect("b"), "{name} {f}");
            }
        }
        assert_eq!(
            back.load_account("https://ca.test/dir")
                .expect("load")
                .expect("some")
                .expose(),
            b"{\"k\":1}"
        );
    }

    #[test]
    fn a_key_sealed_under_another_data_key_is_unreadable_not_damage_to_reissue_over() {
        let Some(ep) = endpoints("etcd foreign seal") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(ep, dir.path(), "foreign");
        let (store, _) = Store::open(&StoreConfig::Etcd(cfg)).expect("open");
        let r = install_self_signed(&store, "www", &["www.example.test"]);
        let other = DataKey::generate(&dir.path().join("other.key")).expect("keygen");
        let e = store.etcd.as_ref().expect("etcd");
        let key = format!("{}privkey", e.version_prefix("www", &r.version));
        let foreign = other.seal(&key, &r.read("privkey").expect("key"));
        e.write(
            "test",
            &key,
            Vec::new(),
            vec![TxnOp::put(key.clone(), foreign, None)],
        )
        .expect("put");
        let audit = store.audit("www");
        assert!(audit.sound().is_none());
        assert!(
            audit.damage.iter().any(|d| matches!(
                d.problem,
                super::super::Problem::Sealed(SealError::OtherKey { .. })
            )),
            "{:?}",
            audit.damage
        );
        match store.current("www") {
            Err(StoreError::Sealed { key: k, .. }) => assert_eq!(k, key),
            other => panic!("expected Sealed, got {other:?}"),
        }
    }
}
