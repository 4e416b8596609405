//! Chain analysis of a served or on-disk chain (leaf first): order, missing
//! intermediates or roots, intermediates that expire before the leaf. Names
//! and key identifiers only; trust (signatures) is the prober's job.
//!
//! Words: a *root* is a self-issued CA certificate (a trust anchor); an
//! *intermediate* is any other CA certificate. A root that is sent is never
//! called an intermediate, and a missing issuer of an intermediate is called
//! the root.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;

use super::facts::CertFacts;
use super::probe::Trust;
use super::InspectError;

/// Something wrong with the shape of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChainIssue {
    /// No certificate at all.
    Empty,
    /// A file whose first certificate is a CA: the leaf is at `position`
    /// (nginx and most servers need the leaf first).
    LeafNotFirst {
        /// Index of the leaf in the file.
        position: usize,
    },
    /// The certificate at `position + 1` did not issue the one at `position`
    /// (each certificate must be followed by its issuer).
    NotInOrder {
        /// Index (0 = leaf) of the certificate whose successor is wrong.
        position: usize,
    },
    /// The chain stops at the leaf, whose issuer is neither in the chain
    /// nor a trust anchor: an intermediate is missing.
    MissingIntermediate {
        /// The issuer name that is missing.
        issuer: String,
    },
    /// The chain stops at an intermediate whose issuer (its root) is neither
    /// sent nor a trust anchor.
    UnknownRoot {
        /// The root's name.
        issuer: String,
        /// The intermediate it issued, the last certificate of the path.
        intermediate: String,
    },
    /// An intermediate expires before the leaf, so the chain breaks early.
    IntermediateExpiresFirst {
        /// Index of the intermediate.
        position: usize,
        /// Its subject.
        subject: String,
        /// Its end of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
}

impl std::fmt::Display for ChainIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainIssue::Empty => f.write_str("no certificate"),
            ChainIssue::LeafNotFirst { position } => write!(
                f,
                "the leaf is certificate {} of the file; it must come first, followed by its issuer",
                position + 1
            ),
            ChainIssue::NotInOrder { position } => write!(
                f,
                "chain out of order: certificate {} is not the issuer of certificate {position}",
                position + 1
            ),
            ChainIssue::MissingIntermediate { issuer } => {
                write!(f, "incomplete chain: issuer `{issuer}` is missing")
            }
            ChainIssue::UnknownRoot {
                issuer,
                intermediate,
            } => write!(
                f,
                "root `{issuer}` (issuer of `{intermediate}`) is not a known trust anchor"
            ),
            ChainIssue::IntermediateExpiresFirst {
                subject, not_after, ..
            } => write!(
                f,
                "intermediate `{subject}` expires {} before the leaf",
                super::date(*not_after)
            ),
        }
    }
}

/// Trust anchors by name and key identifier, for completeness checks.
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    anchors: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Anchors {
    /// No anchors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one anchor (DER). Unparsable anchors are refused.
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), InspectError> {
        let f = CertFacts::from_der(der)?;
        self.add(&f);
        Ok(())
    }

    /// Adds one anchor.
    pub fn add(&mut self, f: &CertFacts) {
        self.anchors
            .push((f.subject_raw.clone(), f.ski_raw.clone()));
    }

    /// The anchors of `trust`: the system roots (if enabled) and the bundles.
    /// Unparsable system roots are skipped; an unreadable bundle is an error.
    pub fn from_trust(trust: &Trust) -> Result<Self, InspectError> {
        let mut a = Anchors::new();
        if trust.system_roots {
            for der in rustls_native_certs::load_native_certs().certs {
                let _ = a.add_der(&der);
            }
        }
        for path in &trust.bundles {
            a.add_pem_file(path)?;
        }
        Ok(a)
    }

    /// Adds every certificate of a PEM file.
    pub fn add_pem_file(&mut self, path: &Path) -> Result<(), InspectError> {
        let pem = crate::fsread::read_file(path, crate::fsread::FileKind::CaBundle).map_err(
            |source| InspectError::Read {
                path: path.to_path_buf(),
                source,
            },
        )?;
        for f in super::parse_pem_chain(&pem)? {
            self.add(&f);
        }
        Ok(())
    }

    /// How many anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// No anchors.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// An anchor could have issued `cert` (name and key identifier agree).
    pub fn knows_issuer_of(&self, cert: &CertFacts) -> bool {
        self.anchors.iter().any(|(subject, ski)| {
            *subject == cert.issuer_raw
                && match (&cert.aki_raw, ski) {
                    (Some(aki), Some(ski)) => aki == ski,
                    _ => true,
                }
        })
    }
}

/// The earliest end of validity of a chain (leaf first): the leaf and the
/// intermediates sent; roots (self-issued) are left out, since clients use
/// their own copy of a trust anchor. `None` for an empty chain.
pub fn chain_not_after(chain: &[CertFacts]) -> Option<OffsetDateTime> {
    let (leaf, rest) = chain.split_first()?;
    Some(not_after_of(leaf, rest))
}

/// [`chain_not_after`] of `leaf` followed by `rest`.
pub(crate) fn not_after_of(leaf: &CertFacts, rest: &[CertFacts]) -> OffsetDateTime {
    rest.iter()
        .filter(|c| !c.is_self_issued())
        .map(|c| c.not_after)
        .fold(leaf.not_after, OffsetDateTime::min)
}

/// Analyses a chain (leaf first) against `anchors`.
pub fn analyze_chain(chain: &[CertFacts], anchors: &Anchors) -> Vec<ChainIssue> {
    let Some(leaf) = chain.first() else {
        return vec![ChainIssue::Empty];
    };
    let mut issues = Vec::new();
    for (i, pair) in chain.windows(2).enumerate() {
        if let [child, parent] = pair {
            if !child.is_issued_by(parent) {
                issues.push(ChainIssue::NotInOrder { position: i });
            }
        }
    }
    // Follow issuers from the leaf through the chain, in any order.
    let mut current = 0;
    let mut visited = vec![false; chain.len()];
    loop {
        visited[current] = true;
        let cert = &chain[current];
        if cert.is_self_issued() {
            break;
        }
        let next = (0..chain.len()).find(|&j| !visited[j] && cert.is_issued_by(&chain[j]));
        match next {
            Some(j) => current = j,
            None => {
                if !anchors.knows_issuer_of(cert) {
                    issues.push(if current == 0 {
                        ChainIssue::MissingIntermediate {
                            issuer: cert.issuer.clone(),
                        }
                    } else {
                        ChainIssue::UnknownRoot {
                            issuer: cert.issuer.clone(),
                            intermediate: cert.subject.clone(),
                        }
                    });
                }
                break;
            }
        }
    }
    for (i, c) in chain.iter().enumerate().skip(1) {
        if !c.is_self_issued() && c.not_after < leaf.not_after {
            issues.push(ChainIssue::IntermediateExpiresFirst {
                position: i,
                subject: c.subject.clone(),
                not_after: c.not_after,
            });
        }
    }
    issues
}
