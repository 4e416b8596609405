//! Secrets (TSIG secrets, EAB keys): read from a file or an environment
//! variable, held in a type that never prints its value.

use std::fmt;
use std::path::PathBuf;

/// Secret bytes. `Debug` and `Display` print `<redacted>`; the memory is
/// overwritten when dropped.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes as a secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Callers must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: volatile-free overwrite is enough for our threat model
        // (core dumps and reused heap), and needs no unsafe code.
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from: exactly one of a file or an environment variable.
#[derive(Debug, Clone)]
pub struct SecretSource {
    file_key: &'static str,
    file: Option<PathBuf>,
    env_key: &'static str,
    env: Option<String>,
}

/// A secret could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cannot read secret file {path} ({key})")]
    File {
        /// The file.
        path: PathBuf,
        /// The inventory key that named it.
        key: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret file is readable by group or others.
    #[error("secret file {path} has mode {mode:o}; run `chmod 600 {path}`")]
    LooseMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The environment variable is unset or empty.
    #[error("environment variable {var} ({key}) is not set")]
    Env {
        /// The variable.
        var: String,
        /// The inventory key that named it.
        key: &'static str,
    },
    /// The secret is empty.
    #[error("the secret from {origin} is empty")]
    Empty {
        /// File path or variable name.
        origin: String,
    },
}

impl SecretSource {
    /// A source that may be a file (`file_key`) or a variable (`env_key`).
    pub fn new(
        file_key: &'static str,
        file: Option<PathBuf>,
        env_key: &'static str,
        env: Option<String>,
    ) -> Self {
        Self {
            file_key,
            file,
            env_key,
            env,
        }
    }

    /// Checks that exactly one origin is configured (no I/O).
    pub fn check(&self) -> Result<(), String> {
        match (&self.file, &self.env) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            (None, None) => Err(format!(
                "a secret is needed: set {} or {}",
                self.file_key, self.env_key
            )),
            (Some(_), Some(_)) => Err(format!(
                "set only one of {} and {}",
                self.file_key, self.env_key
            )),
        }
    }

    /// Reads the secret, trimmed of surrounding whitespace. A file must not be
    /// readable by group or others.
    pub fn read(&self) -> Result<Secret, SecretError> {
        use std::os::unix::fs::PermissionsExt;
        let (bytes, origin) = if let Some(path) = &self.file {
            let err = |source| SecretError::File {
                path: path.clone(),
                key: self.file_key,
                source,
            };
            let meta = std::fs::metadata(path).map_err(err)?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::LooseMode {
                    path: path.clone(),
                    mode,
                });
            }
            (
                crate::fsread::read_file(path, crate::fsread::FileKind::Secret).map_err(err)?,
                path.display().to_string(),
            )
        } else if let Some(var) = &self.env {
            let v = std::env::var(var).map_err(|_| SecretError::Env {
                var: var.clone(),
                key: self.env_key,
            })?;
            (v.into_bytes(), format!("${var}"))
        } else {
            return Err(SecretError::Empty {
                origin: "(no source)".into(),
            });
        };
        let raw = Secret::new(bytes);
        let trimmed = raw.expose().trim_ascii();
        if trimmed.is_empty() {
            return Err(SecretError::Empty { origin });
        }
        Ok(Secret::new(trimmed.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn loose_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s");
        std::fs::write(&p, "c2VjcmV0\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let src = SecretSource::new("f", Some(p.clone()), "e", None);
        let e = src.read().expect_err("loose").to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(src.read().expect("ok").expose(), b"c2VjcmV0");
    }

    #[test]
    fn a_fifo_as_secret_file_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tsig.secret");
        let st = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&p)
            .status()
            .expect("mkfifo");
        assert!(st.success());
        let src = SecretSource::new("tsig_secret_file", Some(p), "e", None);
        let e = src.read().expect_err("fifo");
        assert!(matches!(e, SecretError::File { .. }), "{e:?}");
        let msg = crate::error_chain(&e);
        assert!(
            msg.contains("FIFO") && msg.contains("tsig_secret_file"),
            "{msg}"
        );
    }
}
