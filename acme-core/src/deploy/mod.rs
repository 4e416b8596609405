//! Deployment to nodes: stage, swap, validate, reload, verify, roll back.

/// A deployment failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {}
