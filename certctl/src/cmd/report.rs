//! `certctl report`, `certctl scan` and `certctl inspect`.

use std::process::ExitCode;

use crate::Ctx;

/// Arguments of `certctl report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {}

/// Arguments of `certctl scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScanArgs {}

/// Arguments of `certctl inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {}

pub(crate) async fn report(_ctx: &Ctx, _args: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("report is not implemented yet")
}

pub(crate) async fn scan(_ctx: &Ctx, _args: ScanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("scan is not implemented yet")
}

pub(crate) fn inspect(_ctx: &Ctx, _args: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("inspect is not implemented yet")
}
