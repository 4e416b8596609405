//! The crate's error type: one variant per area, each wrapping that area's
//! own error with the facts.

/// Any failure of the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The inventory is invalid (a caller's mistake).
    #[error(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// ACME issuance failed.
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    /// A DNS-01 solver failed.
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    /// Deployment failed.
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    /// Certificate inspection failed.
    #[error(transparent)]
    Inspect(#[from] crate::inspect::InspectError),
    /// The fleet report could not be gathered.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// The report's notify command failed.
    #[error(transparent)]
    Notify(#[from] crate::report::NotifyError),
}

/// What kind of thing failed, in a small fixed vocabulary: the
/// `error_kind` label of certctl's metrics and the `error_kind` field of its
/// failure notice. Never free text, so a metric keeps few series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The inventory or a secret (the operator's input).
    Config,
    /// The local store.
    Store,
    /// DNS: an UPDATE refused or unanswered, a record that did not propagate.
    Dns,
    /// The ACME server refused or failed.
    Acme,
    /// The ACME server asked to come back later (Retry-After, rate limit).
    RateLimited,
    /// An order or step did not finish in time.
    Timeout,
    /// A node could not be reached over SSH, or a command not run there.
    Ssh,
    /// A file step on a node failed (disk full, a path certctl did not make).
    Node,
    /// The node's validate command refused the new certificate.
    Validate,
    /// The node's reload command failed.
    Reload,
    /// After reload the node did not serve the new certificate.
    Verify,
    /// The notify command failed.
    Notify,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The label value (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Store => "store",
            ErrorKind::Dns => "dns",
            ErrorKind::Acme => "acme",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Ssh => "ssh",
            ErrorKind::Node => "node",
            ErrorKind::Validate => "validate",
            ErrorKind::Reload => "reload",
            ErrorKind::Verify => "verify",
            ErrorKind::Notify => "notify",
            ErrorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The kind of this error, for metrics and failure notices.
    pub fn kind(&self) -> ErrorKind {
        use crate::acme::AcmeError;
        match self {
            Error::Inventory(_) | Error::Secret(_) => ErrorKind::Config,
            Error::Store(_) => ErrorKind::Store,
            Error::Acme(AcmeError::RateLimited { .. }) => ErrorKind::RateLimited,
            Error::Acme(AcmeError::Timeout { .. }) => ErrorKind::Timeout,
            Error::Acme(_) => ErrorKind::Acme,
            Error::Dns(_) => ErrorKind::Dns,
            Error::Deploy(e) => e.kind(),
            Error::Notify(_) => ErrorKind::Notify,
            Error::Inspect(_) | Error::Report(_) => ErrorKind::Other,
        }
    }
}

/// An error and its sources on one line, `: `-separated, leaving out a
/// source whose message is already there (for logs, state files and tables).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{msg}")]
    struct E {
        msg: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(msg: &'static str, source: Option<E>) -> E {
        E {
            msg,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn chain_joins_every_source_with_colons() {
        let err = e(
            "cannot deploy",
            Some(e("ssh failed", Some(e("refused", None)))),
        );
        assert_eq!(chain(&err), "cannot deploy: ssh failed: refused");
    }

    #[test]
    fn chain_prints_a_repeated_source_message_once() {
        let err = e(
            "cannot read x: permission denied",
            Some(e("permission denied", None)),
        );
        assert_eq!(chain(&err), "cannot read x: permission denied");
    }
}
