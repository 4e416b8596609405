//! Sealing secrets at rest for a shared store: private keys and ACME account
//! keys are encrypted with AES-256-GCM (aws-lc-rs) under the data key read
//! from `key_file`, with the store key path as associated data (a sealed
//! value moved to another key does not open) and a random nonce per seal.
//!
//! A sealed value is ASCII: `certctl-sealed-v1:<key id>:<base64(nonce ‖
//! ciphertext ‖ tag)>`. The key id (first 8 bytes of SHA-256 of the key, hex)
//! tells a reader which key it needs, so a wrong key is named, never guessed.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;

/// The envelope's prefix.
const PREFIX: &str = "certctl-sealed-v1:";

/// Failures to read a data key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file cannot be read (missing, permissions).
    #[error("cannot read the data key file {}", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error("the data key file {} has mode {mode:o}; it must be private: chmod 600 {}", .file.display(), .file.display())]
    Loose {
        /// The file.
        file: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The file does not hold one line of base64 for 32 bytes.
    #[error("the data key file {} does not hold a data key (one line of base64 for 32 bytes, as `certctl store keygen` writes)", .file.display())]
    Malformed {
        /// The file.
        file: PathBuf,
    },
    /// `keygen` found the file already there.
    #[error("{} exists; refusing to overwrite a data key (choose a new file name)", .file.display())]
    Exists {
        /// The file.
        file: PathBuf,
    },
    /// `keygen` could not write the file.
    #[error("cannot write the data key file {}", .file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Failures to open a sealed value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The value is not a sealed envelope (a plaintext value where a sealed
    /// one belongs, or garbage).
    #[error("the value is not sealed by certctl")]
    NotSealed,
    /// The value was sealed under another key.
    #[error("it is sealed with data key {sealed_with}, but the key file holds key {have}")]
    OtherKey {
        /// The key id in the envelope.
        sealed_with: String,
        /// The key id of the key given.
        have: String,
    },
    /// Authentication failed: tampered, or moved to another store key.
    #[error("it does not authenticate (tampered with, or moved from another key path)")]
    Tampered,
}

/// A 256-bit data key, read from `key_file`. No `Debug` of the key bytes.
pub struct DataKey {
    key: LessSafeKey,
    id: String,
    file: PathBuf,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The key id of raw key bytes: first 8 bytes of SHA-256, hex.
fn key_id(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw);
    d.as_ref()[..8].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Refuses a key file group or others may read (or write).
pub fn check_key_file_mode(file: &Path) -> Result<(), KeyFileError> {
    match std::fs::metadata(file) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Err(KeyFileError::Loose {
            file: file.to_path_buf(),
            mode: m.permissions().mode() & 0o7777,
        }),
        Ok(_) => Ok(()),
        Err(source) => Err(KeyFileError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}

impl DataKey {
    /// Reads the data key from `file` (mode 0600 or tighter).
    pub fn load(file: &Path) -> Result<Self, KeyFileError> {
        check_key_file_mode(file)?;
        let text = std::fs::read_to_string(file).map_err(|source| KeyFileError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let malformed = || KeyFileError::Malformed {
            file: file.to_path_buf(),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| malformed())?;
        Self::from_raw(&raw, file).ok_or_else(malformed)
    }

    fn from_raw(raw: &[u8], file: &Path) -> Option<Self> {
        if raw.len() != 32 {
            return None;
        }
        let key = UnboundKey::new(&AES_256_GCM, raw).ok()?;
        Some(DataKey {
            key: LessSafeKey::new(key),
            id: key_id(raw),
            file: file.to_path_buf(),
        })
    }

    /// Writes a new random key to `file` (which must not exist), mode 0600.
    pub fn generate(file: &Path) -> Result<Self, KeyFileError> {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| KeyFileError::Write {
            file: file.to_path_buf(),
            source: std::io::Error::other("no randomness"),
        })?;
        let text = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                    file: file.to_path_buf(),
                },
                _ => KeyFileError::Write {
                    file: file.to_path_buf(),
                    source,
                },
            })?;
        let write = |f: &mut std::fs::File| -> std::io::Result<()> {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            writeln!(f, "{text}")?;
            f.sync_all()
        };
        write(&mut f).map_err(|source| KeyFileError::Write {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_raw(&raw, file).ok_or_else(|| KeyFileError::Malformed {
            file: file.to_path_buf(),
        })
    }

    /// The key id: first 8 bytes of SHA-256 of the key, hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Seals `plain` for the store key `aad` with a fresh random nonce.
    pub fn seal(&self, aad: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // aws-lc-rs's RNG does not fail on a working system; an all-zero
        // nonce would be reused, so refuse to go on without randomness.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's random number generator works");
        let mut buf = plain.to_vec();
        #[allow(clippy::expect_used)]
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals any input below 64 GiB");
        let mut body = nonce.to_vec();
        body.extend_from_slice(&buf);
        format!(
            "{PREFIX}{}:{}",
            self.id,
            base64::engine::general_purpose::STANDARD.encode(body)
        )
        .into_bytes()
    }

    /// Opens a value sealed by [`DataKey::seal`] for the store key `aad`.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<crate::secret::Secret, SealError> {
        let (id, body) = parse(sealed)?;
        if id != self.id {
            return Err(SealError::OtherKey {
                sealed_with: id.to_string(),
                have: self.id.clone(),
            });
        }
        if body.len() < NONCE_LEN {
            return Err(SealError::NotSealed);
        }
        let (nonce, ct) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::NotSealed)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| SealError::Tampered)?;
        Ok(crate::secret::Secret::new(plain.to_vec()))
    }
}

/// The key id a sealed value names, if it is one.
pub fn sealed_with(sealed: &[u8]) -> Option<String> {
    parse(sealed).ok().map(|(id, _)| id.to_string())
}

fn parse(sealed: &[u8]) -> Result<(&str, Vec<u8>), SealError> {
    let text = std::str::from_utf8(sealed).map_err(|_| SealError::NotSealed)?;
    let rest = text.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
    let (id, b64) = rest.split_once(':').ok_or(SealError::NotSealed)?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| SealError::NotSealed)?;
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, name: &str) -> DataKey {
        DataKey::generate(&dir.join(name)).expect("keygen")
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_path_and_shows_no_plaintext() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key(dir.path(), "k");
        let plain = b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        let sealed = k.seal("/certctl/archive/www/v1/privkey", plain);
        assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
        assert_eq!(sealed_with(&sealed).as_deref(), Some(k.id()));
        let opened = k
            .open("/certctl/archive/www/v1/privkey", &sealed)
            .expect("open");
        assert_eq!(opened.expose(), plain);
        // A fresh nonce each time: the same input seals differently.
        assert_ne!(sealed, k.seal("/certctl/archive/www/v1/privkey", plain));
        // The reloaded key file is the same key.
        let again = DataKey::load(&dir.path().join("k")).expect("load");
        assert_eq!(again.id(), k.id());
    }

    #[test]
    fn a_wrong_key_is_named_by_id_and_never_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (key(dir.path(), "a"), key(dir.path(), "b"));
        let sealed = a.seal("/p/accounts/x", b"secret");
        match b.open("/p/accounts/x", &sealed) {
            Err(SealError::OtherKey { sealed_with, have }) => {
                assert_eq!(sealed_with, a.id());
                assert_eq!(have, b.id());
            }
            other => panic!("expected OtherKey, got {other:?}"),
        }
    }

    #[test]
    fn tampered_ciphertext_and_a_moved_value_do_not_authenticate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key(dir.path(), "k");
        let sealed = k.seal("/p/archive/www/v1/privkey", b"secret");
        assert!(matches!(
            k.open("/p/archive/www/v2/privkey", &sealed),
            Err(SealError::Tampered)
        ));
        let (id, mut body) = parse(&sealed).expect("parse");
        let last = body.len() - 1;
        body[last] ^= 1;
        let forged = format!(
            "{PREFIX}{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(body)
        );
        assert!(matches!(
            k.open("/p/archive/www/v1/privkey", forged.as_bytes()),
            Err(SealError::Tampered)
        ));
        assert!(matches!(
            k.open("/p/x", b"-----BEGIN PRIVATE KEY-----"),
            Err(SealError::NotSealed)
        ));
    }

    #[test]
    fn keygen_refuses_an_existing_file_and_load_refuses_a_loose_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("k");
        let _k = DataKey::generate(&f).expect("keygen");
        let mode = std::fs::metadata(&f).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            DataKey::generate(&f),
            Err(KeyFileError::Exists { .. })
        ));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = DataKey::load(&f).expect_err("loose");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::write(dir.path().join("bad"), "not base64!\n").expect("write");
        std::fs::set_permissions(
            dir.path().join("bad"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        assert!(matches!(
            DataKey::load(&dir.path().join("bad")),
            Err(KeyFileError::Malformed { .. })
        ));
    }
}
