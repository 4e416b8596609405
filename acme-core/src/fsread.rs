//! Reading one input file safely: only a regular file, and at most a bound
//! that fits what the file is. Every file certctl reads (secrets, PEM files,
//! the inventory, endpoint lists, store state) goes through [`read_file`].
//!
//! Why: a FIFO given where a file is expected blocks `open(2)` forever, and a
//! device such as `/dev/zero` never ends, so a plain `fs::read` hangs or eats
//! memory until the OOM killer.
//!
//! How, and the race: the path's metadata (following symbolic links, as
//! certbot's `live/` needs) is checked first, so a FIFO, device, socket or
//! directory is refused without opening it (opening some devices has side
//! effects). The path can still be swapped between that check and the
//! `open(2)`; so the file is opened with `O_NONBLOCK` (opening a FIFO then
//! returns at once instead of waiting for a writer; on a regular file the
//! flag changes nothing) and `O_NOCTTY`, and the *open file's* own metadata
//! (`fstat`) is checked again before a byte is read. Reading stops one byte
//! past the bound, so a file that grows after the check is refused as well.

use std::fmt;
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// What a file is, which sets its size bound and names it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A secret (TSIG secret, EAB key): 64 KiB.
    Secret,
    /// A PEM certificate, chain or key: 1 MiB.
    Pem,
    /// A CA bundle or trust anchors (PEM): 16 MiB (system bundles are ~200 KiB).
    CaBundle,
    /// The inventory (TOML): 64 MiB (100,000 certificates take about 11 MiB).
    Inventory,
    /// An endpoint list (`scan --from-file`): 16 MiB.
    List,
    /// A store state or metadata record (JSON): 1 MiB.
    State,
    /// Stored ACME account credentials (JSON): 64 KiB.
    Account,
}

impl FileKind {
    /// The most bytes read from a file of this kind.
    pub fn limit(self) -> u64 {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        match self {
            FileKind::Secret | FileKind::Account => 64 * KIB,
            FileKind::Pem | FileKind::State => MIB,
            FileKind::Inventory => 64 * MIB,
            FileKind::CaBundle | FileKind::List => 16 * MIB,
        }
    }

    /// For people: `a secret`, `a PEM file`.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Secret => "a secret file",
            FileKind::Pem => "a PEM file",
            FileKind::CaBundle => "a CA bundle",
            FileKind::Inventory => "the inventory",
            FileKind::List => "an endpoint list",
            FileKind::State => "a store record",
            FileKind::Account => "an account file",
        }
    }
}

/// What was found where a regular file was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAFile {
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device (e.g. `/dev/zero`, a terminal).
    CharDevice,
    /// A block device (a disk).
    BlockDevice,
    /// Anything else.
    Other,
}

impl NotAFile {
    fn of(t: std::fs::FileType) -> Option<Self> {
        Some(if t.is_file() {
            return None;
        } else if t.is_dir() {
            NotAFile::Directory
        } else if t.is_fifo() {
            NotAFile::Fifo
        } else if t.is_socket() {
            NotAFile::Socket
        } else if t.is_char_device() {
            NotAFile::CharDevice
        } else if t.is_block_device() {
            NotAFile::BlockDevice
        } else {
            NotAFile::Other
        })
    }
}

impl fmt::Display for NotAFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotAFile::Directory => "a directory",
            NotAFile::Fifo => "a FIFO (named pipe)",
            NotAFile::Socket => "a socket",
            NotAFile::CharDevice => "a character device",
            NotAFile::BlockDevice => "a block device",
            NotAFile::Other => "not a regular file",
        })
    }
}

/// A file refused before or while reading it. Carried inside the
/// [`io::Error`] that [`read_file`] returns (`io::Error::get_ref`), so every
/// caller's existing "cannot read PATH" error keeps it as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// Not a regular file.
    #[error("{path} is {found}, not a regular file ({kind} must be a regular file)", kind = .kind.describe())]
    NotRegular {
        /// The path given.
        path: PathBuf,
        /// What the file should be.
        kind: FileKind,
        /// What it is.
        found: NotAFile,
    },
    /// Larger than the bound for its kind.
    #[error("{path} is larger than the {limit}-byte bound for {kind} ({size} bytes{more})",
        kind = .kind.describe(), more = if *.at_least { " or more" } else { "" })]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// What the file should be.
        kind: FileKind,
        /// The bound, in bytes.
        limit: u64,
        /// Its size (or as much as was read, when `at_least`).
        size: u64,
        /// The file grew while it was read: `size` is a lower bound.
        at_least: bool,
    },
}

impl From<Refused> for io::Error {
    fn from(r: Refused) -> Self {
        let kind = match r {
            Refused::NotRegular { .. } => io::ErrorKind::InvalidInput,
            Refused::TooLarge { .. } => io::ErrorKind::FileTooLarge,
        };
        io::Error::new(kind, r)
    }
}

/// The [`Refused`] inside `e`, if [`read_file`] refused the file.
pub(crate) fn refused(e: &io::Error) -> Option<&Refused> {
    e.get_ref().and_then(|i| i.downcast_ref::<Refused>())
}

fn check(path: &Path, kind: FileKind, meta: &std::fs::Metadata) -> Result<(), Refused> {
    if let Some(found) = NotAFile::of(meta.file_type()) {
        return Err(Refused::NotRegular {
            path: path.to_path_buf(),
            kind,
            found,
        });
    }
    if meta.len() > kind.limit() {
        return Err(Refused::TooLarge {
            path: path.to_path_buf(),
            kind,
            limit: kind.limit(),
            size: meta.len(),
            at_least: false,
        });
    }
    Ok(())
}

/// Reads the regular file at `path` (symbolic links followed), at most
/// `kind.limit()` bytes. A FIFO, socket, device or directory is refused
/// without blocking, as is a larger file; both as an [`io::Error`] carrying
/// [`Refused`]. Other errors (not found, permission denied) are the OS's.
pub fn read_file(path: &Path, kind: FileKind) -> io::Result<Vec<u8>> {
    check(path, kind, &std::fs::metadata(path)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    check(path, kind, &meta)?;
    let limit = kind.limit();
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut buf)?;
    let read = buf.len() as u64;
    if read > limit {
        return Err(Refused::TooLarge {
            path: path.to_path_buf(),
            kind,
            limit,
            size: read,
            at_least: true,
        }
        .into());
    }
    Ok(buf)
}

/// [`read_file`] for text: invalid UTF-8 is an [`io::ErrorKind::InvalidData`]
/// error, as with `fs::read_to_string`.
pub fn read_text(path: &Path, kind: FileKind) -> io::Result<String> {
    String::from_utf8(read_file(path, kind)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn refusal(path: &Path, kind: FileKind) -> Refused {
        let start = Instant::now();
        let e = read_file(path, kind).expect_err("refused");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        match e.into_inner().map(|i| i.downcast::<Refused>()) {
            Some(Ok(r)) => *r,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[test]
    fn a_fifo_is_refused_at_once_without_blocking() {
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = dir.path().join("fifo.pem");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(st.success());
        let r = refusal(&fifo, FileKind::Pem);
        assert!(
            matches!(
                r,
                Refused::NotRegular {
                    found: NotAFile::Fifo,
                    kind: FileKind::Pem,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(r.to_string().contains("FIFO"), "{r}");
        // Through a symbolic link, too.
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&fifo, &link).expect("symlink");
        assert!(matches!(
            refusal(&link, FileKind::Secret),
            Refused::NotRegular {
                found: NotAFile::Fifo,
                ..
            }
        ));
    }

    #[test]
    fn dev_zero_a_directory_and_a_socket_are_refused() {
        assert!(matches!(
            refusal(Path::new("/dev/zero"), FileKind::Pem),
            Refused::NotRegular {
                found: NotAFile::CharDevice,
                ..
            }
        ));
        let dir = tempfile::tempdir().expect("tmp");
        assert!(matches!(
            refusal(dir.path(), FileKind::Inventory),
            Refused::NotRegular {
                found: NotAFile::Directory,
                ..
            }
        ));
        let sock = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let r = refusal(&sock, FileKind::State);
        assert!(
            matches!(
                r,
                Refused::NotRegular {
                    found: NotAFile::Socket,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(
            r.to_string()
                .contains("a store record must be a regular file"),
            "{r}"
        );
    }

    #[test]
    fn a_file_over_its_bound_is_refused_with_the_bound_and_size() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("secret");
        let size = FileKind::Secret.limit() + 1;
        std::fs::write(&p, vec![b'a'; size as usize]).expect("write");
        let r = refusal(&p, FileKind::Secret);
        assert!(
            matches!(
                r,
                Refused::TooLarge {
                    limit: 65_536,
                    size: 65_537,
                    at_least: false,
                    ..
                }
            ),
            "{r:?}"
        );
        let msg = r.to_string();
        assert!(
            msg.contains("65536-byte bound for a secret file") && msg.contains("65537 bytes"),
            "{msg}"
        );
        // The same bytes are fine as a PEM file, and exactly the bound is fine.
        assert_eq!(
            read_file(&p, FileKind::Pem).expect("pem").len() as u64,
            size
        );
        std::fs::write(&p, vec![b'a'; FileKind::Secret.limit() as usize]).expect("write");
        assert!(read_file(&p, FileKind::Secret).is_ok());
    }

    #[test]
    fn missing_files_keep_the_os_error() {
        let e = read_file(Path::new("/nonexistent/x.pem"), FileKind::Pem).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(refused(&e).is_none());
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, b"\xff\xfe").expect("write");
        assert_eq!(
            read_text(&p, FileKind::Inventory).expect_err("utf8").kind(),
            io::ErrorKind::InvalidData
        );
    }
}
