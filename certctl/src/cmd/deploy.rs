//! `certctl deploy` and `certctl rollback`.

use std::io::IsTerminal;
use std::process::ExitCode;

use acme_core::deploy::{self, NodeResult, Outcome, Progress};
use anyhow::Context as _;

use crate::output::{paint, print_json, Table};
use crate::{exit, Ctx};

/// Arguments of `certctl deploy`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// Certificates to deploy (all in the inventory when none is given).
    names: Vec<String>,
    /// Only nodes in this group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Only this node (repeatable).
    #[arg(long = "node", value_name = "NODE")]
    nodes: Vec<String>,
    /// Stop starting nodes once more than N have failed (overrides deploy.max_failures).
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show the plan; touch nothing.
    #[arg(long)]
    dry_run: bool,
    /// Validate, reload and verify even nodes that already serve the version.
    #[arg(long)]
    force: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Also record the deploy step in the store and write the Prometheus
    /// textfile (atomically) to FILE, keeping the figures of the other steps.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    prometheus: Option<std::path::PathBuf>,
}

/// Arguments of `certctl rollback`.
#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {
    /// The certificate.
    name: String,
    /// Only this node (repeatable; all nodes serving it by default).
    #[arg(long = "node", value_name = "NODE")]
    nodes: Vec<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// A progress bar on stderr when it is a terminal, nothing otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(ctx: &Ctx, json: bool) -> Self {
        if ctx.quiet || json || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} nodes {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Self(Some(bar))
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn planned(&self, nodes: usize) {
        if let Some(b) = &self.0 {
            b.set_length(nodes as u64);
        }
    }

    fn node_started(&self, node: &str) {
        if let Some(b) = &self.0 {
            b.set_message(node.to_string());
        }
    }

    fn node_finished(&self, node: &str, results: &[NodeResult]) {
        if let Some(b) = &self.0 {
            b.inc(1);
            if results.iter().any(NodeResult::is_failure) {
                b.println(format!("{node}: failed"));
            }
        }
    }
}

fn open_store(ctx: &Ctx) -> anyhow::Result<(acme_core::Inventory, acme_core::Store)> {
    let inv = ctx.inventory()?;
    let (store, _) = acme_core::Store::open(&inv.store)
        .with_context(|| format!("cannot open the store {}", inv.store.display()))?;
    Ok((inv, store))
}

pub(crate) async fn deploy(ctx: &Ctx, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let (inv, store, lock) = if args.dry_run {
        // Writes nothing: the store is read-only and no lock is taken.
        let inv = ctx.inventory()?;
        let store = acme_core::Store::open_read_only(&inv.store)
            .with_context(|| format!("cannot open the store {}", inv.store.display()))?;
        (inv, store, None)
    } else {
        let (inv, store) = open_store(ctx)?;
        // Two deployments of the same store never interleave.
        let lock = store.lock(ctx.lock_wait)?;
        (inv, store, Some(lock))
    };
    let opts = deploy::DeployOptions {
        names: args.names,
        groups: args.groups,
        nodes: args.nodes,
        dry_run: args.dry_run,
        max_failures: args.max_failures,
        force: args.force,
    };
    let mut rec = match (&args.prometheus, &lock) {
        // Through the store this run holds locked: an etcd store's health
        // writes are then fenced by that lock like every other write.
        (Some(_), Some(_)) => super::health::Recorder::for_store(&store),
        (Some(_), None) => super::health::Recorder::create(&inv)?,
        (None, _) => super::health::Recorder::none(),
    };
    rec.started(acme_core::report::Step::Deploy);
    let bar = Bar::new(ctx, args.json);
    let results = deploy::deploy(&inv, &store, &opts, &bar).await;
    bar.finish();
    let ok = results
        .as_ref()
        .is_ok_and(|r| !r.iter().any(NodeResult::is_failure));
    rec.ended(acme_core::report::Step::Deploy, ok);
    if let Some(path) = &args.prometheus {
        rec.write_textfile(path, None, &inv)?;
    }
    let results = results?;
    let code = show(ctx, &results, args.json)?;
    // A run that lost the store lock (etcd lease) stopped: exit 3.
    store.check_held()?;
    Ok(code)
}

pub(crate) async fn rollback(ctx: &Ctx, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let (inv, store) = open_store(ctx)?;
    let _lock = store.lock(ctx.lock_wait)?;
    let bar = Bar::new(ctx, args.json);
    let results = deploy::rollback(&inv, &store, &args.name, &args.nodes, &bar).await;
    bar.finish();
    let results = results?;
    let code = show(ctx, &results, args.json)?;
    // A run that lost the store lock (etcd lease) stopped: exit 3.
    store.check_held()?;
    Ok(code)
}

fn show(ctx: &Ctx, results: &[NodeResult], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&results)?;
    } else if results.is_empty() {
        println!("nothing to deploy: no node serves the selected certificates");
    } else {
        let mut t = Table::new(&["CERTIFICATE", "NODE", "RESULT", "VERSION", "DETAIL"]);
        let mut colours = Vec::new();
        for r in results {
            let (result, version, detail, colour) = describe(&r.outcome);
            t.row(vec![
                r.certificate.clone(),
                r.node.clone(),
                result.to_string(),
                version,
                detail,
            ]);
            colours.push(colour);
        }
        t.print(|row, col, text| {
            if col == 2 {
                paint(ctx.color, colours[row], text)
            } else {
                text.to_string()
            }
        })?;
    }
    let failed = results.iter().filter(|r| r.is_failure()).count();
    if failed > 0 {
        if !json && !ctx.quiet {
            eprintln!(
                "certctl: {failed} of {} deployments failed or were rolled back",
                results.len()
            );
        }
        Ok(ExitCode::from(exit::CRITICAL))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// (result, version, detail, colour) of one outcome.
fn describe(o: &Outcome) -> (&'static str, String, String, &'static str) {
    match o {
        Outcome::Planned { to } => ("planned", to.clone(), String::new(), "dim"),
        Outcome::Deployed { from, to } => (
            "deployed",
            to.clone(),
            format!("was {}", from.as_deref().unwrap_or("none")),
            "green",
        ),
        Outcome::Unchanged { version } => ("unchanged", version.clone(), String::new(), "dim"),
        Outcome::RolledBack {
            attempted,
            version,
            reason,
        } => (
            "rolled back",
            version.clone().unwrap_or_else(|| "none".into()),
            format!(
                "{attempted} not deployed: {}",
                acme_core::error_chain(reason)
            ),
            "red",
        ),
        Outcome::Failed { error } => ("failed", "-".into(), acme_core::error_chain(error), "red"),
        Outcome::Skipped { why } => ("skipped", "-".into(), why.to_string(), "yellow"),
        _ => ("?", String::new(), String::new(), ""),
    }
}
