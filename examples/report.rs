//! Embedding the fleet report: load an inventory, gather the report (store,
//! deployed versions over SSH, TLS probes of every node and SNI name), then
//! print the most urgent rows and the Prometheus text.
//!
//! ```text
//! cargo run -p certctl-examples --example report -- /tmp/certctl-lab/certctl.toml
//! ```

use std::process::ExitCode;

use acme_core::report::{self, ReportOptions};
use acme_core::{Inventory, Store};
use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    acme_core::install_crypto_provider();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| acme_core::inventory::DEFAULT_PATH.to_string());
    let inventory = Inventory::load(std::path::Path::new(&path))?;
    // Reading needs no lock; a store that does not exist yet is empty.
    let store = match inventory.store.exists() {
        true => Some(Store::open_existing(&inventory.store)?),
        false => None,
    };
    let report = report::gather(&inventory, store.as_ref(), &ReportOptions::default())
        .await
        .context("gather the report")?;
    for row in report.rows().iter().take(10) {
        println!(
            "{:<9} {:<12} {:<10} {:>8}  {}",
            row.severity, row.certificate, row.place, row.left, row.notes
        );
    }
    print!("\n{}", report::render_prometheus(&report));
    Ok(ExitCode::from(report.exit_code()))
}
