//! The local store: the ACME account, every issued version of every
//! certificate, the `live/<name>` links, and small state files (renewal
//! back-off, deployments). Every write is atomic (temp file, fsync, rename,
//! fsync of the directory); keys are 0600 and directories 0700; one lock per
//! store keeps two certctl processes from interleaving.
//!
//! ```text
//! <root>/lock
//! <root>/accounts/<sha256 of directory URL>.json
//! <root>/archive/<name>/<version>/{cert,chain,fullchain,privkey}.pem, meta.json
//! <root>/live/<name> -> ../archive/<name>/<version>
//! <root>/state/<name>/renewal.json, node-<node>.json
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
    #[error("store: {path} is corrupt: {reason}; move it away to start that record afresh")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// No such certificate version.
    #[error("store has no version {version} of certificate `{name}`")]
    NoSuchVersion {
        /// Certificate name.
        name: String,
        /// Version.
        version: String,
    },
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

/// The local store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
}

/// The exclusive store lock, released on drop (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
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
}

impl Release {
    /// Path of one of the PEM files (`cert`, `chain`, `fullchain`, `privkey`).
    pub fn file(&self, which: &str) -> PathBuf {
        self.dir.join(format!("{which}.pem"))
    }

    /// Reads one of the PEM files.
    pub fn read(&self, which: &str) -> Result<Vec<u8>> {
        let p = self.file(which);
        crate::fsread::read_file(&p, crate::fsread::FileKind::Pem).map_err(io_err("read", &p))
    }
}

/// The four files of a release, in upload order (key first, so a linked
/// release always has its key).
pub const RELEASE_FILES: [&str; 4] = ["privkey", "cert", "chain", "fullchain"];

impl Store {
    /// Opens (creating if needed) the store at `root`, tightening any loose
    /// modes on directories and key files; the fixes are returned.
    pub fn open(root: &Path) -> Result<(Self, Vec<Repair>)> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for d in ["", "accounts", "archive", "live", "state"] {
            let p = root.join(d);
            create_dir_private(&p)?;
        }
        let repairs = store.repair_modes()?;
        for r in &repairs {
            tracing::warn!(path = %r.path.display(), was = format!("{:o}", r.was), now = format!("{:o}", r.now), "tightened loose permissions in the store");
        }
        Ok((store, repairs))
    }

    /// Opens an existing store read-only: no directories are created.
    pub fn open_existing(root: &Path) -> Result<Self> {
        fs::metadata(root).map_err(io_err("open store", root))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn repair_modes(&self) -> Result<Vec<Repair>> {
        self.check_modes(true)
    }

    /// Paths whose modes are looser than the store wants (keys and accounts
    /// 0600, directories 0700), without changing them: for read-only commands,
    /// which report them; a writing command repairs them.
    pub fn loose_modes(&self) -> Result<Vec<Repair>> {
        self.check_modes(false)
    }

    fn check_modes(&self, repair: bool) -> Result<Vec<Repair>> {
        let mut repairs = Vec::new();
        let mut fix = |p: &Path, want: u32| -> Result<()> {
            let meta = fs::symlink_metadata(p).map_err(io_err("inspect", p))?;
            if meta.file_type().is_symlink() {
                return Ok(());
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & !want != 0 {
                if repair {
                    fs::set_permissions(p, fs::Permissions::from_mode(want))
                        .map_err(io_err("chmod", p))?;
                }
                repairs.push(Repair {
                    path: p.to_path_buf(),
                    was: mode,
                    now: want,
                });
            }
            Ok(())
        };
        for d in ["", "accounts", "archive", "live", "state"] {
            fix(&self.root.join(d), 0o700)?;
        }
        for entry in read_dir_sorted(&self.root.join("accounts"))? {
            fix(&entry, 0o600)?;
        }
        for name_dir in read_dir_sorted(&self.root.join("archive"))? {
            fix(&name_dir, 0o700)?;
            for v in read_dir_sorted(&name_dir)? {
                fix(&v, 0o700)?;
                let key = v.join("privkey.pem");
                if key.exists() {
                    fix(&key, 0o600)?;
                }
            }
        }
        Ok(repairs)
    }

    /// Takes the exclusive store lock, waiting up to `wait`.
    pub fn lock(&self, wait: Duration) -> Result<StoreLock> {
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
        Ok(StoreLock { _file: file })
    }

    fn account_path(&self, directory: &str) -> PathBuf {
        let digest = aws_lc_rs_digest(directory.as_bytes());
        self.root.join("accounts").join(format!("{digest}.json"))
    }

    /// The stored ACME account credentials (JSON) for `directory`, if any.
    pub fn load_account(&self, directory: &str) -> Result<Option<crate::secret::Secret>> {
        let p = self.account_path(directory);
        match crate::fsread::read_file(&p, crate::fsread::FileKind::Account) {
            Ok(b) => Ok(Some(crate::secret::Secret::new(b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read account", &p)(e)),
        }
    }

    /// Stores ACME account credentials (JSON, mode 0600) for `directory`.
    pub fn save_account(&self, directory: &str, json: &[u8]) -> Result<()> {
        write_atomic(&self.account_path(directory), json, 0o600)
    }

    /// Removes the stored account for `directory` (the CA no longer knows it).
    pub fn forget_account(&self, directory: &str) -> Result<()> {
        let p = self.account_path(directory);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove account", &p)(e)),
        }
    }

    fn archive_dir(&self, name: &str) -> PathBuf {
        self.root.join("archive").join(name)
    }

    fn live_link(&self, name: &str) -> PathBuf {
        self.root.join("live").join(name)
    }

    /// Installs new material as a new version and makes it live.
    ///
    /// The version directory is written under a temporary name, each file
    /// fsynced, then renamed into place; only then is `live/<name>` swapped
    /// with one rename(2). A crash at any point leaves the previous version live.
    pub fn install(&self, name: &CertName, m: &Material) -> Result<Release> {
        let name = name.as_str();
        let archive = self.archive_dir(name);
        create_dir_private(&archive)?;
        self.clean_temp(&archive);
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
        let tmp = archive.join(format!(".tmp-{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        create_dir_private(&tmp)?;
        let fullchain = format!("{}{}", ensure_nl(&m.cert_pem), ensure_nl(&m.chain_pem));
        let meta = serde_json::to_vec_pretty(&m.meta).map_err(|e| StoreError::Corrupt {
            path: tmp.join("meta.json"),
            reason: e.to_string(),
        })?;
        let files: [(&str, &[u8], u32); 5] = [
            ("privkey.pem", m.key_pem.expose(), 0o600),
            ("cert.pem", m.cert_pem.as_bytes(), 0o644),
            ("chain.pem", m.chain_pem.as_bytes(), 0o644),
            ("fullchain.pem", fullchain.as_bytes(), 0o644),
            ("meta.json", &meta, 0o644),
        ];
        let written = (|| {
            for (f, bytes, mode) in files {
                write_new(&tmp.join(f), bytes, mode)?;
            }
            sync_dir(&tmp)?;
            let dest = archive.join(&version);
            fs::rename(&tmp, &dest).map_err(io_err("rename into place", &dest))?;
            sync_dir(&archive)
        })();
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.set_live(name, &version)?;
        self.read_release(name, &version)
    }

    /// Points `live/<name>` at `version` with one rename(2).
    pub fn set_live(&self, name: &str, version: &str) -> Result<()> {
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

    /// The live release of `name`, if any.
    pub fn current(&self, name: &str) -> Result<Option<Release>> {
        let link = self.live_link(name);
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read live link", &link)(e)),
        };
        let Some(version) = target.file_name().and_then(|v| v.to_str()) else {
            return Err(StoreError::Corrupt {
                path: link,
                reason: format!("link target {} has no version", target.display()),
            });
        };
        self.read_release(name, version).map(Some)
    }

    /// Reads the release `version` of `name`.
    pub fn read_release(&self, name: &str, version: &str) -> Result<Release> {
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
        })
    }

    /// All complete versions of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<String>> {
        let mut v: Vec<String> = read_dir_sorted(&self.archive_dir(name))?
            .into_iter()
            .filter_map(|p| p.file_name().and_then(|f| f.to_str()).map(String::from))
            .filter(|f| !f.starts_with('.'))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Names with a live link, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = read_dir_sorted(&self.root.join("live"))?
            .into_iter()
            .filter_map(|p| p.file_name().and_then(|f| f.to_str()).map(String::from))
            .filter(|f| !f.starts_with('.'))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Removes old versions of `name`, keeping the newest `keep`, the live one
    /// and the one before it.
    pub fn prune(&self, name: &str, keep: usize) -> Result<Vec<String>> {
        let versions = self.versions(name)?;
        let live = self.current(name)?.map(|r| r.version);
        let live_idx = live
            .as_ref()
            .and_then(|l| versions.iter().position(|v| v == l));
        let mut removed = Vec::new();
        let cut = versions.len().saturating_sub(keep.max(1));
        for (i, v) in versions.iter().enumerate().take(cut) {
            let protected = Some(i) == live_idx || live_idx.is_some_and(|l| l > 0 && i == l - 1);
            if !protected {
                let p = self.archive_dir(name).join(v);
                fs::remove_dir_all(&p).map_err(io_err("remove old version", &p))?;
                removed.push(v.clone());
            }
        }
        if !removed.is_empty() {
            sync_dir(&self.archive_dir(name))?;
        }
        Ok(removed)
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.root.join("state").join(name)
    }

    /// Reads a state record of certificate `name` (`renewal`, `node-<node>`).
    pub fn read_state<T: DeserializeOwned>(&self, name: &str, record: &str) -> Result<Option<T>> {
        read_json(&self.state_dir(name).join(format!("{record}.json")))
    }

    /// The names of the state records kept for certificate `name`.
    pub fn state_records(&self, name: &str) -> Result<Vec<String>> {
        Ok(read_dir_sorted(&self.state_dir(name))?
            .into_iter()
            .filter_map(|p| {
                let f = p.file_name()?.to_str()?;
                f.strip_suffix(".json")
                    .filter(|stem| !stem.starts_with('.'))
                    .map(String::from)
            })
            .collect())
    }

    /// Writes a state record atomically.
    pub fn write_state<T: Serialize>(&self, name: &str, record: &str, value: &T) -> Result<()> {
        let dir = self.state_dir(name);
        create_dir_private(&dir)?;
        let path = dir.join(format!("{record}.json"));
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes, 0o600)
    }
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
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
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
}
