//! Copying a whole store between backends (`certctl store export` and
//! `import`): accounts, every version, the live pointers, state and health
//! records. Nothing in the target is overwritten: an identical item is
//! skipped, a different version under the same name is an error, and a
//! differing live pointer or record is kept as the target has it. Every
//! version written is read back and compared file by file (SHA-256).

use super::api::{Record, VersionFiles};
use super::{Store, StoreError};

/// What a copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Versions written and verified.
    pub versions: usize,
    /// Versions already in the target with the same hashes.
    pub identical: usize,
    /// Live pointers set.
    pub live: usize,
    /// Live pointers the target already had at another version (kept).
    pub live_kept: usize,
    /// Account slots written (identical ones are skipped).
    pub accounts: usize,
    /// State and health records written.
    pub records: usize,
    /// Records the target already had with other contents (kept).
    pub records_kept: usize,
}

/// Why a copy stopped. What was written before stays (a re-run skips it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// Reading or writing a store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The target holds another version under the same name and version.
    #[error("{what} {name} {version} is already in the target with other contents ({file} differs); nothing was overwritten")]
    Differs {
        /// `version` or `account`.
        what: &'static str,
        /// Certificate name (or account digest).
        name: String,
        /// Version (or `pending`/`current`).
        version: String,
        /// The differing file.
        file: &'static str,
    },
    /// A version read back from the target does not hash as the source.
    #[error("version {version} of `{name}`: {file} in the target does not match the source (SHA-256 differs); the target store is damaged")]
    Verify {
        /// Certificate name.
        name: String,
        /// Version.
        version: String,
        /// The file.
        file: &'static str,
    },
}

fn sha256(b: &[u8]) -> aws_lc_rs::digest::Digest {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
}

/// The five files of a stored version, as bytes.
fn version_bytes(
    store: &Store,
    name: &str,
    version: &str,
) -> Result<Vec<(&'static str, Vec<u8>)>, StoreError> {
    let r = store.read_release(name, version)?;
    ["privkey", "cert", "chain", "fullchain", "meta"]
        .into_iter()
        .map(|f| r.read(f).map(|b| (f, b)))
        .collect()
}

/// The first file whose SHA-256 differs, if any.
fn first_difference(
    a: &[(&'static str, Vec<u8>)],
    b: &[(&'static str, Vec<u8>)],
) -> Option<&'static str> {
    a.iter()
        .zip(b)
        .find(|((_, x), (_, y))| sha256(x).as_ref() != sha256(y).as_ref())
        .map(|((f, _), _)| *f)
}

/// Copies everything in `from` into `to` (see the module docs).
pub fn copy(from: &Store, to: &Store) -> Result<Copied, CopyError> {
    let mut done = Copied::default();
    let (src, dst) = (from.backend(), to.backend());
    for id in src.account_ids()? {
        let Some(json) = src.read_account(&id)? else {
            continue;
        };
        match dst.read_account(&id)? {
            Some(have) if have.expose() == json.expose() => {}
            Some(_) => {
                return Err(CopyError::Differs {
                    what: "account",
                    name: id.digest.clone(),
                    version: if id.pending { "pending" } else { "current" }.into(),
                    file: "account key",
                })
            }
            None => {
                dst.write_account(&id, json.expose())?;
                done.accounts += 1;
            }
        }
    }
    for name in from.names()? {
        let have = to.versions(&name)?;
        for version in from.versions(&name)? {
            let files = version_bytes(from, &name, &version)?;
            if have.contains(&version) {
                let theirs = version_bytes(to, &name, &version)?;
                if let Some(file) = first_difference(&files, &theirs) {
                    return Err(CopyError::Differs {
                        what: "version",
                        name,
                        version,
                        file,
                    });
                }
                done.identical += 1;
                continue;
            }
            let get = |f: &str| {
                files
                    .iter()
                    .find(|(n, _)| *n == f)
                    .map(|(_, b)| b.as_slice())
                    .unwrap_or_default()
            };
            to.install_version(
                &name,
                &version,
                &VersionFiles {
                    privkey: get("privkey"),
                    cert: get("cert"),
                    chain: get("chain"),
                    fullchain: get("fullchain"),
                    meta: get("meta"),
                },
            )?;
            let back = version_bytes(to, &name, &version)?;
            if let Some(file) = first_difference(&files, &back) {
                return Err(CopyError::Verify {
                    name,
                    version,
                    file,
                });
            }
            done.versions += 1;
        }
        if let Some(live) = from.live_version(&name)? {
            match to.live_version(&name)? {
                None => {
                    to.set_live(&name, &live)?;
                    done.live += 1;
                }
                Some(l) if l == live => {}
                Some(_) => done.live_kept += 1,
            }
        }
        for record in src.state_records(&name)? {
            copy_record(
                from,
                to,
                Record::State {
                    name: &name,
                    record: &record,
                },
                &mut done,
            )?;
        }
    }
    for record in src.health_records()? {
        copy_record(from, to, Record::Health(&record), &mut done)?;
    }
    Ok(done)
}

fn copy_record(
    from: &Store,
    to: &Store,
    r: Record<'_>,
    done: &mut Copied,
) -> Result<(), StoreError> {
    let Some(bytes) = from.backend().read_record(r)? else {
        return Ok(());
    };
    match to.backend().read_record(r)? {
        Some(have) if have == bytes => {}
        Some(_) => done.records_kept += 1,
        None => {
            to.backend().write_record(r, &bytes)?;
            done.records += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::install_self_signed;

    #[test]
    fn a_directory_store_copies_whole_then_skips_what_is_identical_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, _) = Store::open(&dir.path().join("a")).expect("a");
        let r = install_self_signed(&a, "www", &["www.example.test"]);
        a.save_account("https://ca.test/dir", b"{\"k\":1}")
            .expect("account");
        a.write_state("www", "renewal", &serde_json::json!({"failures": 0}))
            .expect("state");
        let (b, _) = Store::open(&dir.path().join("b")).expect("b");
        let c = copy(&a, &b).expect("copy");
        assert_eq!(
            (c.versions, c.live, c.accounts, c.records, c.identical),
            (1, 1, 1, 1, 0)
        );
        for f in ["privkey", "cert", "chain", "fullchain", "meta"] {
            let copied = b.current("www").expect("b").expect("live");
            assert_eq!(copied.read(f).expect("b"), r.read(f).expect("a"), "{f}");
        }
        let again = copy(&a, &b).expect("again");
        assert_eq!((again.versions, again.identical, again.accounts), (0, 1, 0));

        // Another store with other bytes under the same name and version.
        let (x, _) = Store::open(&dir.path().join("x")).expect("x");
        let other = VersionFiles {
            privkey: b"other key",
            cert: b"other cert",
            chain: b"",
            fullchain: b"other cert",
            meta: &r.read("meta").expect("meta"),
        };
        x.install_version("www", &r.version, &other)
            .expect("install");
        x.set_live("www", &r.version).expect("live");
        match copy(&x, &b) {
            Err(CopyError::Differs { name, version, .. }) => {
                assert_eq!(
                    (name.as_str(), version.as_str()),
                    ("www", r.version.as_str())
                );
            }
            other => panic!("expected Differs, got {other:?}"),
        }
        let kept = b.current("www").expect("b").expect("live");
        assert_eq!(
            kept.read("privkey").expect("key"),
            r.read("privkey").expect("key")
        );
    }
}
