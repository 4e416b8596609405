//! Deploys one stored certificate to the nodes of one group, the way
//! `certctl deploy <name> --group <group>` does, and prints a line per node.
//!
//! ```text
//! cargo run -p certctl-examples --example deploy -- /tmp/certctl-lab/certctl.toml www edge
//! ```

use std::path::PathBuf;
use std::time::Duration;

use acme_core::deploy::{self, DeployOptions, NoProgress, Outcome};
use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(name), Some(group)) = (args.next(), args.next(), args.next()) else {
        anyhow::bail!("usage: deploy <inventory.toml> <certificate> <group>");
    };
    acme_core::install_crypto_provider();
    let inv = acme_core::Inventory::load(&PathBuf::from(config))?;
    let (store, _repairs) = acme_core::Store::open(&inv.store)?;
    // The store lock keeps a renewal or another deployment from interleaving.
    let _lock = store.lock(Duration::from_secs(60))?;
    let opts = DeployOptions {
        names: vec![name],
        groups: vec![group],
        ..Default::default()
    };
    let results = deploy::deploy(&inv, &store, &opts, &NoProgress)
        .await
        .context("deployment could not start")?;
    for r in &results {
        let what = match &r.outcome {
            Outcome::Deployed { from, to } => {
                format!("deployed {to} (was {})", from.as_deref().unwrap_or("none"))
            }
            Outcome::Unchanged { version } => format!("already serving {version}"),
            Outcome::RolledBack { reason, .. } => {
                format!("rolled back: {}", acme_core::error_chain(reason))
            }
            Outcome::Failed { error } => format!("failed: {}", acme_core::error_chain(error)),
            Outcome::Skipped { why } => format!("skipped: {why}"),
            other => format!("{other:?}"),
        };
        println!("{} on {}: {what} ({:?})", r.certificate, r.node, r.elapsed);
    }
    if results.iter().any(|r| r.is_failure()) {
        std::process::exit(2);
    }
    Ok(())
}
