//! The exit codes, fixed and documented (monitoring-plugin convention, so a
//! cron job or a Nagios-style check can use them directly).

/// Everything is fine.
pub(crate) const OK: u8 = 0;
/// A warning threshold was crossed (report), nothing failed.
pub(crate) const WARNING: u8 = 1;
/// A critical finding, or an item (a certificate, a node) failed.
pub(crate) const CRITICAL: u8 = 2;
/// The command could not run (invalid inventory, store locked, internal error).
pub(crate) const ERROR: u8 = 3;
/// The command line was wrong.
pub(crate) const USAGE: u8 = 64;
