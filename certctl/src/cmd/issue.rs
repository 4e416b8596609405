//! `certctl issue`, `renew`, `list` and `check`.

use std::process::ExitCode;

use crate::Ctx;

/// Arguments of `certctl issue`.
#[derive(Debug, clap::Args)]
pub(crate) struct IssueArgs {}

/// Arguments of `certctl renew`.
#[derive(Debug, clap::Args)]
pub(crate) struct RenewArgs {}

/// Arguments of `certctl list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {}

/// Arguments of `certctl check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {}

pub(crate) async fn issue(_ctx: &Ctx, _args: IssueArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

pub(crate) async fn renew(_ctx: &Ctx, _args: RenewArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

pub(crate) async fn list(_ctx: &Ctx, _args: ListArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

pub(crate) fn check(ctx: &Ctx, _args: CheckArgs) -> anyhow::Result<ExitCode> {
    let inv = ctx.inventory()?;
    println!(
        "{}: ok ({} certificates, {} solvers, {} nodes)",
        ctx.config.display(),
        inv.certificates.len(),
        inv.solvers.len(),
        inv.nodes.len()
    );
    Ok(ExitCode::SUCCESS)
}
