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
