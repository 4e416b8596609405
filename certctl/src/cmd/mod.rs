//! One module per command family.

pub(crate) mod account;
pub(crate) mod deploy;
pub(crate) mod health;
pub(crate) mod issue;
pub(crate) mod persist;
pub(crate) mod report;
pub(crate) mod revoke;
pub(crate) mod run;
pub(crate) mod store;
