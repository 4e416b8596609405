//! Checking what the store holds for one certificate, file by file: the
//! `live/` link, the live version's `meta.json` and PEM files (and that they
//! agree), and the state records. A damaged file is a [`Damage`] naming the
//! path and what is wrong; `list`, `report` and `renew` show it and treat the
//! certificate as failed or unknown, never as ok.
//!
//! Nothing here deletes: a damaged version stays where it is (normal pruning
//! may remove it later), and a damaged state record is only ever moved aside
//! ([`Store::set_aside`]) so it can still be looked at.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{io_err, DirStore, ReleaseMeta, Result, Store};
use crate::acme::RenewalRecord;
use crate::deploy::NodeState;
use crate::inspect::{CertFacts, InspectError};
use crate::store::Release;

/// Largest `meta.json`, state record or PEM file the store reads.
const MAX_FILE: u64 = 1 << 20;

/// Which part of a certificate's store state a [`Damage`] is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "part", content = "node", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Part {
    /// `live/<name>`.
    LiveLink,
    /// The live version's `meta.json`.
    Meta,
    /// The live version's `cert.pem`.
    Cert,
    /// The live version's `privkey.pem`.
    Key,
    /// The live version's `chain.pem`.
    Chain,
    /// The live version's `fullchain.pem`.
    Fullchain,
    /// `state/<name>/renewal.json`.
    RenewalRecord,
    /// `state/<name>/node-<node>.json`.
    NodeRecord(String),
}

impl Part {
    /// Whether the damage is in the live version itself (link, meta or PEM
    /// files): only a new version repairs it.
    pub fn is_release(&self) -> bool {
        !matches!(self, Part::RenewalRecord | Part::NodeRecord(_))
    }
}

/// What is wrong with a store file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file does not exist.
    #[error("it is missing")]
    Missing,
    /// `live/<name>` points at a version directory that does not exist.
    #[error("it points at {target}, which does not exist")]
    DanglingLink {
        /// The link's target, as stored.
        target: PathBuf,
    },
    /// `live/<name>` points somewhere that is not a version of this certificate.
    #[error("it points at {target}, which is not a version of this certificate")]
    ForeignTarget {
        /// The link's target, as stored.
        target: PathBuf,
    },
    /// `live/<name>` is not a symbolic link.
    #[error("it is not a symbolic link")]
    NotALink,
    /// A file where a regular file belongs is a directory, FIFO, device….
    #[error("it is not a regular file")]
    NotAFile,
    /// The file is larger than the store ever writes.
    #[error("it is larger than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: u64,
    },
    /// The file could not be read.
    #[error("it cannot be read")]
    Unreadable(#[source] io::Error),
    /// The JSON does not parse as this record.
    #[error("it is not a valid record")]
    BadJson(#[source] serde_json::Error),
    /// No PEM certificate in `cert.pem`.
    #[error("it holds no PEM certificate")]
    NoCertificate,
    /// The certificate does not parse.
    #[error("its certificate cannot be parsed")]
    BadCertificate(#[source] InspectError),
    /// `privkey.pem` holds no private key that certctl can load.
    #[error("it holds no usable private key")]
    NoPrivateKey,
    /// The private key is not the one of `cert.pem`.
    #[error("its private key does not belong to the certificate in cert.pem")]
    KeyMismatch,
    /// `fullchain.pem` does not start with the certificate of `cert.pem`.
    #[error("it does not start with the certificate in cert.pem")]
    FullchainMismatch,
    /// A sealed value (etcd store) does not open with the data key: a
    /// wrong `key_file`, or tampering. Never a reason to issue anew.
    #[error("it cannot be unsealed")]
    Sealed(#[source] super::seal::SealError),
    /// The store could not be read (etcd unreachable, no quorum).
    #[error("it cannot be read from the store")]
    Store(#[source] Box<super::StoreError>),
    /// `meta.json` says something else than the certificate it describes.
    #[error("it says the {field} is {recorded}, but cert.pem says {actual}")]
    Disagrees {
        /// The field (`serial`, `not_after`, `domains`…).
        field: &'static str,
        /// What `meta.json` says.
        recorded: String,
        /// What the certificate says.
        actual: String,
    },
}

/// One damaged file of a certificate's store state.
#[derive(Debug, thiserror::Error)]
#[error("store file {path} is damaged")]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// Which part of the state it is.
    pub part: Part,
    /// What is wrong with it.
    #[source]
    pub problem: Problem,
    /// Where it was moved by [`Store::set_aside`], if it was.
    pub set_aside: Option<PathBuf>,
}

impl Damage {
    pub(super) fn new(path: PathBuf, part: Part, problem: Problem) -> Self {
        Damage {
            path,
            part,
            problem,
            set_aside: None,
        }
    }
}

impl Serialize for Damage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("Damage", 4)?;
        st.serialize_field("path", &self.path)?;
        st.serialize_field("part", &self.part)?;
        st.serialize_field("problem", &crate::error::chain(&self.problem))?;
        st.serialize_field("set_aside", &self.set_aside)?;
        st.end()
    }
}

/// What the store holds for one certificate, checked whole.
#[derive(Debug, Default)]
pub struct Audit {
    /// The version `live/<name>` points at (even a missing one).
    pub version: Option<String>,
    /// The live release as `meta.json` describes it, when that parses (it
    /// may still be damaged: see [`Audit::sound`]).
    pub release: Option<Release>,
    /// The renewal record, when present and readable.
    pub renewal: Option<RenewalRecord>,
    /// The deployment records that parse, by node.
    pub deployments: Vec<(String, NodeState)>,
    /// Everything found damaged.
    pub damage: Vec<Damage>,
}

impl Audit {
    /// The live release if nothing about it is damaged; `None` when there is
    /// no live version or it is damaged (a new version is the repair).
    pub fn sound(&self) -> Option<&Release> {
        if self.release_damage().next().is_some() {
            None
        } else {
            self.release.as_ref()
        }
    }

    /// The damage in the live version (link, meta, PEM files).
    pub fn release_damage(&self) -> impl Iterator<Item = &Damage> {
        self.damage.iter().filter(|d| d.part.is_release())
    }
}

impl Store {
    /// [`Store::audit`] of every name, in order, spread over the machine's
    /// cores: each audit reads six files and parses a certificate and a key,
    /// so a plan over 40,000 certificates is bound by that work.
    pub fn audit_all(&self, names: &[&str]) -> Vec<Audit> {
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, 8);
        if threads == 1 || names.len() < 64 {
            return names.iter().map(|n| self.audit(n)).collect();
        }
        let chunk = names.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = names
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(|n| self.audit(n)).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(v) => v,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }

    /// Checks everything the store holds for certificate `name`: the live
    /// link, the live version's files and their agreement with `meta.json`,
    /// and the state records. Never fails: what cannot be read is damage.
    pub fn audit(&self, name: &str) -> Audit {
        self.backend().audit(name)
    }

    /// Moves a damaged state record aside, to `<file>.damaged-<unix time>`
    /// beside it (the etcd store: to that key), so the record starts afresh
    /// while the bad one is kept for a look. Only state records are moved; a
    /// damaged version is repaired by issuing a new one, never by touching
    /// it. Returns the new path.
    pub fn set_aside(&self, damage: &mut Damage) -> Result<PathBuf> {
        self.backend().set_aside(damage)
    }
}

impl DirStore {
    /// [`Store::audit`] for the directory store.
    pub(crate) fn audit(&self, name: &str) -> Audit {
        let mut audit = Audit::default();
        self.audit_release(name, &mut audit);
        self.audit_records(name, &mut audit);
        audit
    }

    fn audit_release(&self, name: &str, audit: &mut Audit) {
        let link = self.live_link(name);
        let mut damage = |path: PathBuf, part: Part, problem: Problem| {
            audit.damage.push(Damage::new(path, part, problem));
        };
        match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return damage(link, Part::LiveLink, Problem::Unreadable(e)),
            Ok(m) if !m.file_type().is_symlink() => {
                return damage(link, Part::LiveLink, Problem::NotALink)
            }
            Ok(_) => {}
        }
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) => return damage(link, Part::LiveLink, Problem::Unreadable(e)),
        };
        // certctl writes `../archive/<name>/<version>`; anything else is not ours to follow.
        let version = target
            .strip_prefix(Path::new("..").join("archive").join(name))
            .ok()
            .and_then(|v| v.to_str())
            .filter(|v| !v.is_empty() && !v.contains('/') && !v.starts_with('.'))
            .map(String::from);
        let Some(version) = version else {
            return damage(link, Part::LiveLink, Problem::ForeignTarget { target });
        };
        audit.version = Some(version.clone());
        let dir = self.archive_dir(name).join(&version);
        if !dir.is_dir() {
            return damage(link, Part::LiveLink, Problem::DanglingLink { target });
        }
        let path = |which: &str| match which {
            "meta" => dir.join("meta.json"),
            _ => dir.join(format!("{which}.pem")),
        };
        let source = Source {
            path: &path,
            read: &|which: &str| read_file(&path(which)),
            present: &|which: &str| regular_file(&path(which)),
        };
        let meta = check_release(&source, audit);
        audit.release = meta.map(|meta| Release {
            name: name.to_string(),
            version,
            dir: dir.clone(),
            meta,
            fetched: None,
        });
    }

    fn audit_records(&self, name: &str, audit: &mut Audit) {
        let records = match fs::read_dir(self.state_dir(name)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                // Without the listing no record can be trusted: the renewal
                // record stands for them all.
                let path = self.state_dir(name);
                audit.damage.push(Damage::new(
                    path,
                    Part::RenewalRecord,
                    Problem::Unreadable(e),
                ));
                return;
            }
        };
        let mut files: Vec<(PathBuf, String)> = records
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_str()?.to_string();
                let stem = file.strip_suffix(".json")?;
                (!stem.starts_with('.')).then(|| (e.path(), stem.to_string()))
            })
            .collect();
        files.sort();
        for (path, stem) in files {
            if record_part(&stem).is_some() {
                let bytes = read_file(&path);
                check_record(audit, path, &stem, bytes);
            }
        }
    }

    /// [`Store::set_aside`] for the directory store.
    pub(crate) fn set_aside(&self, damage: &mut Damage) -> Result<PathBuf> {
        debug_assert!(!damage.part.is_release());
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut name = damage.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".damaged-{stamp}"));
        let to = damage.path.with_file_name(name);
        fs::rename(&damage.path, &to).map_err(io_err("move aside", &damage.path))?;
        if let Some(dir) = to.parent() {
            super::sync_dir(dir)?;
        }
        damage.set_aside = Some(to.clone());
        Ok(to)
    }
}

/// How [`check_release`] reaches the files of the live version: their
/// paths (for messages), their bytes, and whether one is there at all.
pub(super) struct Source<'a> {
    /// The path of `meta`, `cert`, `privkey`, `chain` or `fullchain`.
    pub(super) path: &'a dyn Fn(&str) -> PathBuf,
    /// Reads one of them (the key unsealed).
    pub(super) read: &'a dyn Fn(&str) -> std::result::Result<Vec<u8>, Problem>,
    /// Whether one is there (the chain is only checked for presence).
    pub(super) present: &'a dyn Fn(&str) -> std::result::Result<(), Problem>,
}

/// Checks the live version's files and their agreement with its meta;
/// returns the meta when it parses.
pub(super) fn check_release(src: &Source<'_>, audit: &mut Audit) -> Option<ReleaseMeta> {
    let mut damage = |path: PathBuf, part: Part, problem: Problem| {
        audit.damage.push(Damage::new(path, part, problem));
    };
    let meta_path = (src.path)("meta");
    let meta = match (src.read)("meta") {
        Ok(b) => serde_json::from_slice::<ReleaseMeta>(&b).map_err(Problem::BadJson),
        Err(p) => Err(p),
    };
    let meta = match meta {
        Ok(m) => Some(m),
        Err(p) => {
            damage(meta_path.clone(), Part::Meta, p);
            None
        }
    };

    let cert_path = (src.path)("cert");
    let cert = (src.read)("cert").and_then(|pem| {
        let der = leaf_der(&pem)?;
        let facts = CertFacts::from_der(&der).map_err(Problem::BadCertificate)?;
        Ok((pem, der, facts))
    });
    let cert = match cert {
        Ok(c) => Some(c),
        Err(p) => {
            damage(cert_path, Part::Cert, p);
            None
        }
    };

    let key_path = (src.path)("privkey");
    let key = (src.read)("privkey").map(crate::secret::Secret::new);
    match (&key, &cert) {
        (Err(_), _) => {}
        (Ok(key), Some((_, der, _))) => {
            if !crate::inspect::key_matches_cert(key.expose(), der) {
                let problem = if loads_a_key(key) {
                    Problem::KeyMismatch
                } else {
                    Problem::NoPrivateKey
                };
                damage(key_path.clone(), Part::Key, problem);
            }
        }
        (Ok(key), None) => {
            if !loads_a_key(key) {
                damage(key_path.clone(), Part::Key, Problem::NoPrivateKey);
            }
        }
    }
    if let Err(p) = key {
        damage(key_path, Part::Key, p);
    }

    if let Err(p) = (src.present)("chain") {
        damage((src.path)("chain"), Part::Chain, p);
    }
    let full_path = (src.path)("fullchain");
    match (src.read)("fullchain") {
        Err(p) => damage(full_path, Part::Fullchain, p),
        Ok(full) => {
            if let Some((pem, _, _)) = &cert {
                if !full.starts_with(pem.trim_ascii_end()) {
                    damage(full_path, Part::Fullchain, Problem::FullchainMismatch);
                }
            }
        }
    }

    if let (Some(meta), Some((_, _, facts))) = (&meta, &cert) {
        if let Some(problem) = disagreement(meta, facts) {
            damage(meta_path, Part::Meta, problem);
        }
    }
    meta
}

/// Which part a state record named `stem` is, if certctl audits it.
fn record_part(stem: &str) -> Option<Part> {
    if stem == crate::acme::renewal::RECORD {
        Some(Part::RenewalRecord)
    } else {
        stem.strip_prefix("node-")
            .map(|node| Part::NodeRecord(node.to_string()))
    }
}

/// Checks one state record (`renewal`, `node-<node>`) read as `bytes`.
pub(super) fn check_record(
    audit: &mut Audit,
    path: PathBuf,
    stem: &str,
    bytes: std::result::Result<Vec<u8>, Problem>,
) {
    let Some(part) = record_part(stem) else {
        return;
    };
    let parsed = bytes.and_then(|b| match &part {
        Part::RenewalRecord => serde_json::from_slice::<RenewalRecord>(&b)
            .map(|r| audit.renewal = Some(r))
            .map_err(Problem::BadJson),
        Part::NodeRecord(node) => serde_json::from_slice::<NodeState>(&b)
            .map(|s| audit.deployments.push((node.clone(), s)))
            .map_err(Problem::BadJson),
        _ => Ok(()),
    });
    if let Err(p) = parsed {
        audit.damage.push(Damage::new(path, part, p));
    }
}

/// The first certificate of PEM text, as DER.
fn leaf_der(pem: &[u8]) -> std::result::Result<Vec<u8>, Problem> {
    let mut reader = pem;
    loop {
        match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(rustls_pemfile::Item::X509Certificate(der))) => return Ok(der.to_vec()),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Problem::NoCertificate),
            Err(source) => return Err(Problem::BadCertificate(InspectError::Pem { source })),
        }
    }
}

fn loads_a_key(key: &crate::secret::Secret) -> bool {
    std::str::from_utf8(key.expose()).is_ok_and(|pem| rcgen::KeyPair::from_pem(pem).is_ok())
}

/// What `meta.json` says that the certificate does not, if anything.
fn disagreement(meta: &ReleaseMeta, cert: &CertFacts) -> Option<Problem> {
    let differ = |field, recorded: String, actual: String| {
        Some(Problem::Disagrees {
            field,
            recorded,
            actual,
        })
    };
    if !meta.serial.eq_ignore_ascii_case(&cert.serial) {
        return differ("serial", meta.serial.clone(), cert.serial.clone());
    }
    if meta.not_after != cert.not_after {
        return differ(
            "not_after",
            meta.not_after.to_string(),
            cert.not_after.to_string(),
        );
    }
    if meta.not_before != cert.not_before {
        return differ(
            "not_before",
            meta.not_before.to_string(),
            cert.not_before.to_string(),
        );
    }
    let lower = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|d| d.to_ascii_lowercase()).collect();
        v.sort_unstable();
        v
    };
    let (recorded, actual) = (lower(&meta.domains), lower(&cert.dns_names));
    if recorded != actual {
        return differ("domains", recorded.join(", "), actual.join(", "));
    }
    if meta.key_type.to_string() != cert.key_type {
        return differ("key type", meta.key_type.to_string(), cert.key_type.clone());
    }
    if meta.issuer != cert.issuer {
        return differ("issuer", meta.issuer.clone(), cert.issuer.clone());
    }
    if let (Some(recorded), Some(actual)) = (&meta.ari_id, &cert.ari_id) {
        if recorded != actual {
            return differ("ARI identifier", recorded.clone(), actual.clone());
        }
    }
    None
}

fn regular_file(path: &Path) -> std::result::Result<(), Problem> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(Problem::NotAFile),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Problem::Missing),
        Err(e) => Err(Problem::Unreadable(e)),
    }
}

/// Reads a store file of at most [`MAX_FILE`] bytes. Opened non-blocking and
/// checked to be a regular file first, so a FIFO put there never hangs a run.
fn read_file(path: &Path) -> std::result::Result<Vec<u8>, Problem> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Problem::Missing,
            _ => Problem::Unreadable(e),
        })?;
    let meta = file.metadata().map_err(Problem::Unreadable)?;
    if !meta.is_file() {
        return Err(Problem::NotAFile);
    }
    if meta.len() > MAX_FILE {
        return Err(Problem::TooLarge { limit: MAX_FILE });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    (&file)
        .take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(Problem::Unreadable)?;
    if buf.len() as u64 > MAX_FILE {
        return Err(Problem::TooLarge { limit: MAX_FILE });
    }
    Ok(buf)
}

/// For tests across the crate: installs a real self-signed certificate for
/// `domains`, with its key, as the live version of `name` (a sound release).
#[cfg(test)]
pub(crate) fn install_self_signed(store: &Store, name: &str, domains: &[&str]) -> Release {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(domains.iter().map(|d| d.to_string()).collect::<Vec<_>>())
            .expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let facts = crate::inspect::parse_pem_chain(cert.pem().as_bytes())
        .expect("parse")
        .remove(0);
    let m = crate::store::Material {
        cert_pem: cert.pem(),
        chain_pem: String::new(),
        key_pem: crate::secret::Secret::new(key.serialize_pem().into_bytes()),
        meta: ReleaseMeta {
            domains: facts.dns_names.clone(),
            key_type: crate::inventory::KeyType::EcdsaP256,
            serial: facts.serial.clone(),
            issuer: facts.issuer.clone(),
            not_before: facts.not_before,
            not_after: facts.not_after,
            directory: "https://ca.test/dir".into(),
            ari_id: facts.ari_id.clone(),
            stored_at: time::OffsetDateTime::now_utc(),
        },
    };
    store
        .install(&crate::names::CertName::new(name).expect("name"), &m)
        .expect("install")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real self-signed certificate and its key, installed as `www`.
    fn installed(store: &Store) -> Release {
        install_self_signed(store, "www", &["www.example.test"])
    }

    #[test]
    fn a_sound_release_has_no_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = installed(&store);
        let a = store.audit("www");
        assert!(a.damage.is_empty(), "{:?}", a.damage);
        assert_eq!(a.sound().map(|s| &s.version), Some(&r.version));
        let none = store.audit("nothing");
        assert!(none.damage.is_empty() && none.sound().is_none());
    }

    #[test]
    fn meta_that_disagrees_with_the_certificate_is_damage_in_meta_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let r = installed(&store);
        let mut meta = r.meta.clone();
        meta.not_after += time::Duration::days(365);
        let path = r.dir.join("meta.json");
        fs::write(&path, serde_json::to_vec(&meta).expect("json")).expect("write");
        let a = store.audit("www");
        assert!(a.sound().is_none());
        assert_eq!(a.damage.len(), 1, "{:?}", a.damage);
        assert_eq!(a.damage[0].path, path);
        assert!(matches!(
            a.damage[0].problem,
            Problem::Disagrees {
                field: "not_after",
                ..
            }
        ));
    }

    #[test]
    fn a_fifo_in_place_of_a_record_is_damage_not_a_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        installed(&store);
        let state = dir.path().join("state/www");
        fs::create_dir_all(&state).expect("mkdir");
        let fifo = state.join("renewal.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let a = store.audit("www");
        assert_eq!(a.damage.len(), 1, "{:?}", a.damage);
        assert!(matches!(a.damage[0].problem, Problem::NotAFile));
        // A damaged record does not make the release unsound.
        assert!(a.sound().is_some());
    }

    #[test]
    fn a_damaged_record_is_moved_aside_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        installed(&store);
        let state = dir.path().join("state/www");
        fs::create_dir_all(&state).expect("mkdir");
        fs::write(state.join("node-edge1.json"), b"{").expect("write");
        let mut a = store.audit("www");
        let to = store.set_aside(&mut a.damage[0]).expect("set aside");
        assert_eq!(fs::read(&to).expect("kept"), b"{");
        assert!(store.audit("www").damage.is_empty());
        assert_eq!(a.damage[0].set_aside.as_ref(), Some(&to));
    }
}
