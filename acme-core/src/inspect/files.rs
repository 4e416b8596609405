//! PEM files on disk: certificates, chains and keys, and whether each
//! certificate's private key (in the same directory) belongs to it. The only
//! I/O of the inspect module: reading the files given and walking directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chain::{analyze_chain, Anchors, ChainIssue};
use super::facts::{pem_blocks, public_key_of, CertFacts, PemBlock};

/// File name endings picked up when walking a directory.
const PEM_EXTENSIONS: [&str; 5] = ["pem", "crt", "cer", "cert", "key"];

/// What one file holds.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its certificates, in file order.
    pub certificates: Vec<CertFacts>,
    /// Index in `certificates` of the leaf (the first non-CA certificate),
    /// when there is one; not 0 means the file is out of order.
    pub leaf: Option<usize>,
    /// How many private keys it holds (never their content).
    pub keys: usize,
    /// Shape problems of the chain (files with a leaf and more certificates).
    pub chain_issues: Vec<ChainIssue>,
    /// The private key found for the first certificate, if the file's
    /// directory holds any key.
    pub key: Option<KeyCheck>,
    /// Why the file could not be read or parsed.
    pub error: Option<String>,
}

/// The result of matching a certificate with a private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyCheck {
    /// The key file (the matching one, or the likeliest candidate).
    pub path: PathBuf,
    /// The key's public key is the certificate's.
    pub matches: bool,
}

/// Inspects files and directories (walked recursively; symbolic links to
/// directories are followed only when given directly). A path that cannot be
/// read becomes a report with an error; nothing aborts the walk.
pub fn inspect_paths(paths: &[PathBuf], anchors: &Anchors) -> Vec<FileReport> {
    // Files grouped by directory, so keys are matched per directory.
    let mut groups: BTreeMap<PathBuf, Vec<(PathBuf, bool)>> = BTreeMap::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk(p, &mut groups, &mut errors),
            Ok(_) => groups.entry(parent(p)).or_default().push((p.clone(), true)),
            Err(e) => errors.push(error_report(p, format!("cannot read: {e}"))),
        }
    }
    let mut out = errors;
    for (dir, files) in groups {
        out.extend(inspect_dir(&dir, files, anchors));
    }
    out
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn error_report(path: &Path, error: String) -> FileReport {
    FileReport {
        path: path.to_path_buf(),
        certificates: Vec::new(),
        leaf: None,
        keys: 0,
        chain_issues: Vec::new(),
        key: None,
        error: Some(error),
    }
}

fn has_pem_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PEM_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn is_key_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "privkey.pem" || name.ends_with(".key") || name.ends_with("-key.pem")
}

fn walk(
    dir: &Path,
    groups: &mut BTreeMap<PathBuf, Vec<(PathBuf, bool)>>,
    errors: &mut Vec<FileReport>,
) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) => {
                errors.push(error_report(&d, format!("cannot list: {e}")));
                continue;
            }
        };
        let mut files = Vec::new();
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if has_pem_extension(&path) {
                // Regular files and symbolic links to files (certbot's live/).
                if ft.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                files.push((path, false));
            }
        }
        if !files.is_empty() {
            files.sort();
            groups.entry(d).or_default().extend(files);
        }
    }
}

/// One parsed file, before key matching.
struct Parsed {
    path: PathBuf,
    certs: Vec<CertFacts>,
    keys: Vec<String>,
    error: Option<String>,
    /// Holds PEM blocks that are neither certificates nor keys, and nothing else.
    other_pem: bool,
}

fn parse_file(path: &Path) -> Parsed {
    let mut p = Parsed {
        path: path.to_path_buf(),
        certs: Vec::new(),
        keys: Vec::new(),
        error: None,
        other_pem: false,
    };
    let bytes = match crate::fsread::read_file(path, crate::fsread::FileKind::Pem) {
        Ok(b) => b,
        Err(e) => {
            p.error = Some(match crate::fsread::refused(&e) {
                Some(r) => r.to_string(),
                None => format!("cannot read: {e}"),
            });
            return p;
        }
    };
    match pem_blocks(&bytes) {
        Ok(blocks) => {
            for b in blocks {
                match b {
                    PemBlock::Certificate(der) => match CertFacts::from_der(&der) {
                        Ok(f) => p.certs.push(f),
                        Err(e) => {
                            p.error = Some(format!("certificate {}: {e}", p.certs.len() + 1));
                            break;
                        }
                    },
                    PemBlock::Key(k) => p.keys.push(k),
                }
            }
        }
        Err(e) => p.error = Some(crate::error_chain(&e)),
    }
    if p.error.is_none() && p.certs.is_empty() && p.keys.is_empty() {
        p.other_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
        p.error = Some(if bytes.trim_ascii().is_empty() {
            "empty file: no certificate or private key".to_string()
        } else if p.other_pem {
            "no certificate or private key (only other PEM blocks, e.g. DH parameters)".to_string()
        } else {
            format!(
                "not PEM: no `-----BEGIN CERTIFICATE-----` or private key block in {} bytes",
                bytes.len()
            )
        });
    }
    p
}

fn inspect_dir(dir: &Path, files: Vec<(PathBuf, bool)>, anchors: &Anchors) -> Vec<FileReport> {
    let explicit_only = files.iter().all(|(_, explicit)| *explicit);
    let mut parsed: Vec<(Parsed, bool)> = files
        .iter()
        .map(|(p, explicit)| (parse_file(p), *explicit))
        .collect();
    // Keys: from the files themselves, and for files named on the command
    // line, from their key-named siblings.
    let mut key_files: Vec<(PathBuf, Vec<String>)> = parsed
        .iter()
        .filter(|(p, _)| !p.keys.is_empty())
        .map(|(p, _)| (p.path.clone(), p.keys.clone()))
        .collect();
    let mut sibling_errors = Vec::new();
    let needs_keys = parsed.iter().any(|(p, _)| p.certs.iter().any(|c| !c.is_ca));
    if explicit_only && needs_keys {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut siblings: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_key_name(p) && !files.iter().any(|(f, _)| f == p))
                .collect();
            siblings.sort();
            for s in siblings {
                let sp = parse_file(&s);
                if !sp.keys.is_empty() {
                    key_files.push((s, sp.keys));
                } else if let Some(error) = sp.error {
                    // A key file that cannot be used is said, not skipped.
                    sibling_errors.push(error_report(&s, error));
                }
            }
        }
    }
    // Public keys, computed once and only when some certificate needs them.
    let mut publics: Option<Vec<(PathBuf, Vec<u8>)>> = None;
    let mut out = Vec::with_capacity(parsed.len());
    for (p, explicit) in parsed.drain(..) {
        if !explicit && p.other_pem {
            continue; // e.g. DH parameters found while walking
        }
        let leaf_at = p.certs.iter().position(|c| !c.is_ca);
        let mut report = FileReport {
            path: p.path.clone(),
            keys: p.keys.len(),
            chain_issues: Vec::new(),
            key: None,
            error: p.error,
            certificates: Vec::new(),
            leaf: leaf_at,
        };
        if let Some(at) = leaf_at {
            let leaf = &p.certs[at];
            if at > 0 {
                // Analyse the chain as it should be (leaf first, the rest in
                // file order), and say the file is out of order.
                report
                    .chain_issues
                    .push(ChainIssue::LeafNotFirst { position: at });
            }
            if p.certs.len() > 1 {
                let mut ordered = Vec::with_capacity(p.certs.len());
                ordered.push(leaf.clone());
                ordered.extend(
                    p.certs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != at)
                        .map(|(_, c)| c.clone()),
                );
                report.chain_issues.extend(analyze_chain(&ordered, anchors));
            }
            if !key_files.is_empty() {
                let publics = publics.get_or_insert_with(|| {
                    key_files
                        .iter()
                        .flat_map(|(path, keys)| {
                            keys.iter()
                                .filter_map(|k| public_key_of(k).map(|pk| (path.clone(), pk)))
                        })
                        .collect()
                });
                report.key = Some(
                    match publics.iter().find(|(_, pk)| *pk == leaf.public_key) {
                        Some((path, _)) => KeyCheck {
                            path: path.clone(),
                            matches: true,
                        },
                        None => KeyCheck {
                            path: likeliest_key(&p.path, &key_files),
                            matches: false,
                        },
                    },
                );
            }
        }
        report.certificates = p.certs;
        out.push(report);
    }
    out.extend(sibling_errors);
    out
}

/// The key file a certificate most likely pairs with: same stem, else
/// `privkey.pem`, else the first.
fn likeliest_key(cert: &Path, keys: &[(PathBuf, Vec<String>)]) -> PathBuf {
    let stem = cert.file_stem();
    keys.iter()
        .find(|(k, _)| k.file_stem() == stem && k != cert)
        .or_else(|| {
            keys.iter()
                .find(|(k, _)| k.file_name().is_some_and(|n| n == "privkey.pem"))
        })
        .or(keys.first())
        .map(|(k, _)| k.clone())
        .unwrap_or_default()
}
