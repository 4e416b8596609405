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

/// A mistake in the command line found after parsing (an invalid `--sni`,
/// a duration systemd would not accept): `main` exits with [`USAGE`].
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
