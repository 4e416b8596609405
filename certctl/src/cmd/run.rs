//! `certctl run` (the timer's job) and `certctl systemd`.

use std::process::ExitCode;

use crate::Ctx;

/// Arguments of `certctl run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {}

/// Arguments of `certctl systemd`.
#[derive(Debug, clap::Args)]
pub(crate) struct SystemdArgs {}

pub(crate) async fn run(_ctx: &Ctx, _args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("run is not implemented yet")
}

pub(crate) fn systemd(_ctx: &Ctx, _args: SystemdArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("systemd is not implemented yet")
}
