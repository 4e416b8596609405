//! `certctl deploy` and `certctl rollback`.

use std::process::ExitCode;

use crate::Ctx;

/// Arguments of `certctl deploy`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {}

/// Arguments of `certctl rollback`.
#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {}

pub(crate) async fn deploy(_ctx: &Ctx, _args: DeployArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("deploy is not implemented yet")
}

pub(crate) async fn rollback(_ctx: &Ctx, _args: RollbackArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rollback is not implemented yet")
}
