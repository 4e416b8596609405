//! What the store remembers about each (certificate, node): the version the
//! node's live link points at after the last run, when, and the last error.
//! Stored as `state/<name>/node-<node>.json`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// The deployment record of one certificate on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The version the node's live link points at (as far as certctl knows),
    /// `None` if it never got one.
    pub version: Option<String>,
    /// When this record was written.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The last run's error for this node, if it failed or was rolled back.
    #[serde(default)]
    pub error: Option<String>,
    /// The kind of that error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<crate::ErrorKind>,
    /// When a deploy last ended with the node holding the store's version
    /// (deployed, or found already there); kept across failures.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub last_success: Option<OffsetDateTime>,
}

/// The record name of `node` inside a certificate's state directory.
pub(crate) fn record_name(node: &str) -> String {
    format!("node-{node}")
}

impl NodeState {
    /// Reads the record of certificate `name` on `node`.
    pub fn read(store: &Store, name: &str, node: &str) -> Result<Option<Self>, StoreError> {
        store.read_state(name, &record_name(node))
    }

    /// Writes this record of certificate `name` on `node`.
    pub(crate) fn write(&self, store: &Store, name: &str, node: &str) -> Result<(), StoreError> {
        store.write_state(name, &record_name(node), self)
    }
}
