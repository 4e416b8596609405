//! Secrets (TSIG secrets, EAB keys): read from a file or an environment
//! variable, held in a type that never prints its value.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

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

/// A secret's source is configured wrongly ([`SecretSource::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Neither the file nor the variable is set.
    #[error("a secret is needed: set {file_key} or {env_key}")]
    Missing {
        /// The file key (`tsig_secret_file`).
        file_key: &'static str,
        /// The variable key (`tsig_secret_env`).
        env_key: &'static str,
    },
    /// Both are set.
    #[error("set only one of {file_key} and {env_key}")]
    Both {
        /// The file key.
        file_key: &'static str,
        /// The variable key.
        env_key: &'static str,
    },
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
    /// The file, if the secret comes from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where the secret comes from, for messages: the file's path or `$VAR`.
    pub fn origin(&self) -> String {
        match (&self.file, &self.env) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(v)) => format!("${v}"),
            (None, None) => "(no source)".into(),
        }
    }

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
    pub fn check(&self) -> Result<(), SourceError> {
        match (&self.file, &self.env) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            (None, None) => Err(SourceError::Missing {
                file_key: self.file_key,
                env_key: self.env_key,
            }),
            (Some(_), Some(_)) => Err(SourceError::Both {
                file_key: self.file_key,
                env_key: self.env_key,
            }),
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

/// A TSIG secret that cannot be used as it is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsigSecretError {
    /// Neither bare base64 nor a `tsig-keygen` block.
    #[error("the TSIG secret from {origin} is not valid base64 ({flaw}); give the base64 secret alone, or the whole `key \"name\" {{ algorithm ...; secret \"...\"; }};` block that `tsig-keygen` prints")]
    Base64 {
        /// File path or `$VAR`.
        origin: String,
        /// What is wrong, without the secret's bytes.
        flaw: Base64Flaw,
    },
    /// It starts like a `tsig-keygen` block but is not one.
    #[error("the TSIG key block in {origin} cannot be read: {problem}; expected `key \"name\" {{ algorithm hmac-sha256; secret \"...\"; }};` as `tsig-keygen` prints it")]
    Block {
        /// File path or `$VAR`.
        origin: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The block is for another key name than `tsig_key`.
    #[error("the TSIG key block in {origin} is for key `{block}`, but tsig_key is `{inventory}`: set tsig_key = \"{block}\", or use the block of key `{inventory}`")]
    KeyName {
        /// File path or `$VAR`.
        origin: String,
        /// The name in the block.
        block: String,
        /// `tsig_key` in the inventory.
        inventory: String,
    },
    /// The block names another algorithm than `tsig_algorithm`.
    #[error("the TSIG key block in {origin} uses algorithm `{block}`, but tsig_algorithm is `{inventory}`: set tsig_algorithm = \"{block}\", or use a key made with `tsig-keygen -a {inventory}`")]
    Algorithm {
        /// File path or `$VAR`.
        origin: String,
        /// The algorithm in the block.
        block: String,
        /// `tsig_algorithm` in the inventory.
        inventory: String,
    },
    /// The secret decodes to nothing.
    #[error("the TSIG secret from {origin} decodes to no bytes")]
    Empty {
        /// File path or `$VAR`.
        origin: String,
    },
}

/// Decodes a TSIG secret read from `origin`: bare base64, or the
/// `key "name" { algorithm ...; secret "..."; };` block that `tsig-keygen`
/// prints, whose key name and algorithm must then be `key` and `algorithm`
/// (names compared without case and trailing dot).
pub(crate) fn decode_tsig(
    secret: &Secret,
    origin: &str,
    key: &str,
    algorithm: &str,
) -> Result<Secret, TsigSecretError> {
    let text = String::from_utf8_lossy(secret.expose());
    let text = text.trim();
    let b64 = if text.starts_with("key") && text.contains('{') {
        let block = parse_key_block(text).map_err(|problem| TsigSecretError::Block {
            origin: origin.into(),
            problem,
        })?;
        let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
        if norm(&block.name) != norm(key) {
            return Err(TsigSecretError::KeyName {
                origin: origin.into(),
                block: block.name,
                inventory: key.into(),
            });
        }
        if norm(&block.algorithm) != norm(algorithm) {
            return Err(TsigSecretError::Algorithm {
                origin: origin.into(),
                block: block.algorithm,
                inventory: algorithm.into(),
            });
        }
        block.secret
    } else {
        text.to_string()
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| TsigSecretError::Base64 {
            origin: origin.into(),
            flaw: Base64Flaw::from(e),
        })?;
    if bytes.is_empty() {
        return Err(TsigSecretError::Empty {
            origin: origin.into(),
        });
    }
    Ok(Secret::new(bytes))
}

/// The fields of one `key` statement in BIND's syntax.
struct KeyBlock {
    name: String,
    algorithm: String,
    secret: String,
}

/// Parses `key "name" { algorithm a; secret "s"; };` (the `tsig-keygen`
/// output; `#`, `//` comments and bare words allowed, as named.conf does).
fn parse_key_block(text: &str) -> Result<KeyBlock, &'static str> {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let line = line.split("//").next().unwrap_or("");
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if "{};".contains(c) {
                tokens.push(c.to_string());
                chars.next();
            } else if c == '"' {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(ch) => s.push(ch),
                        None => return Err("a quoted string is not closed"),
                    }
                }
                tokens.push(s);
            } else {
                let mut s = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || "{};\"".contains(ch) {
                        break;
                    }
                    s.push(ch);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    let mut t = tokens.into_iter();
    if t.next().as_deref() != Some("key") {
        return Err("it does not start with `key`");
    }
    let name = t.next().ok_or("the key name is missing")?;
    if t.next().as_deref() != Some("{") {
        return Err("`{` is missing after the key name");
    }
    let (mut algorithm, mut secret) = (None, None);
    loop {
        let word = t.next().ok_or("the closing `};` is missing")?;
        if word == "}" {
            break;
        }
        let value = t.next().ok_or("a statement has no value")?;
        if t.next().as_deref() != Some(";") {
            return Err("a statement does not end with `;`");
        }
        match word.as_str() {
            "algorithm" => algorithm = Some(value),
            "secret" => secret = Some(value),
            _ => return Err("it holds a statement other than `algorithm` and `secret`"),
        }
    }
    if !matches!(t.next().as_deref(), Some(";") | None) || t.next().is_some() {
        return Err("there is text after the closing `};`");
    }
    Ok(KeyBlock {
        name,
        algorithm: algorithm.ok_or("it has no `algorithm` statement")?,
        secret: secret.ok_or("it has no `secret` statement")?,
    })
}

/// What is wrong with base64 text, without quoting the text: the decoder's
/// own message names the offending byte, which is part of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base64Flaw {
    /// A character outside the alphabet.
    #[error("a character outside the alphabet at offset {offset}")]
    Character {
        /// Byte offset in the trimmed text.
        offset: usize,
    },
    /// The length is not possible for base64.
    #[error("its length is not possible for base64")]
    Length,
    /// The last symbol or the padding is wrong.
    #[error("its ending (last symbol or padding) is wrong")]
    Ending,
}

impl From<base64::DecodeError> for Base64Flaw {
    fn from(e: base64::DecodeError) -> Self {
        match e {
            base64::DecodeError::InvalidByte(offset, _) => Base64Flaw::Character { offset },
            base64::DecodeError::InvalidLength(_) => Base64Flaw::Length,
            _ => Base64Flaw::Ending,
        }
    }
}

/// An EAB HMAC key that is not base64url (RFC 8555 §7.3.4).
#[derive(Debug, thiserror::Error)]
#[error(
    "the EAB hmac key from {origin} is not base64url ({flaw}); copy it exactly as the CA gave it"
)]
pub struct EabKeyError {
    /// File path or `$VAR`.
    pub origin: String,
    /// What is wrong, without the key's bytes.
    pub flaw: Base64Flaw,
}

/// Decodes an EAB HMAC key (base64url, padding optional).
pub(crate) fn decode_eab_hmac(secret: &Secret, origin: &str) -> Result<Secret, EabKeyError> {
    let text = secret.expose().trim_ascii();
    let unpadded = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(unpadded)
        .map(Secret::new)
        .map_err(|e| EabKeyError {
            origin: origin.into(),
            flaw: Base64Flaw::from(e),
        })
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

    const KEYGEN: &str =
        "key \"certctl-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n";

    fn tsig(text: &str, key: &str, alg: &str) -> Result<Vec<u8>, TsigSecretError> {
        decode_tsig(&Secret::new(text.as_bytes().to_vec()), "f", key, alg)
            .map(|s| s.expose().to_vec())
    }

    #[test]
    fn tsig_secret_is_bare_base64_or_the_tsig_keygen_block() {
        assert_eq!(
            tsig("c2VjcmV0", "k", "hmac-sha256").expect("bare"),
            b"secret"
        );
        assert_eq!(
            tsig(KEYGEN, "certctl-key.", "hmac-sha256").expect("block"),
            b"secret"
        );
    }

    #[test]
    fn tsig_block_for_another_key_or_algorithm_names_both() {
        let e = tsig(KEYGEN, "other", "hmac-sha256")
            .expect_err("name")
            .to_string();
        assert!(e.contains("`certctl-key`") && e.contains("`other`"), "{e}");
        let e = tsig(KEYGEN, "certctl-key", "hmac-sha512")
            .expect_err("alg")
            .to_string();
        assert!(
            e.contains("`hmac-sha256`") && e.contains("`hmac-sha512`"),
            "{e}"
        );
    }

    #[test]
    fn tsig_garbage_says_what_is_accepted() {
        let e = tsig("not base64!", "k", "hmac-sha256")
            .expect_err("bad")
            .to_string();
        assert!(
            e.contains("tsig-keygen") && e.contains("base64 secret alone"),
            "{e}"
        );
        let e = tsig("key \"k\" { algorithm hmac-sha256; };", "k", "hmac-sha256")
            .expect_err("no secret")
            .to_string();
        assert!(e.contains("no `secret`"), "{e}");
    }

    #[test]
    fn eab_key_is_base64url_with_or_without_padding() {
        let ok = |t: &str| decode_eab_hmac(&Secret::new(t.as_bytes().to_vec()), "f");
        assert_eq!(ok("c2VjcmV0").expect("plain").expose(), b"secret");
        assert_eq!(ok("c2VjcmV0Pz8-").expect("url").expose(), b"secret??>");
        assert!(ok("c2Vj cmV0!").is_err());
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
