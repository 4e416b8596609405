//! Issues one certificate with `acme-core` alone, no CLI.
//!
//! ```text
//! cargo run -p certctl-examples --example issue_one -- /tmp/certctl-lab/certctl.toml www
//! ```
//!
//! It reads the inventory, opens and locks the store, registers (or reuses)
//! the ACME account, solves the DNS-01 challenges with the certificate's
//! solver and stores the result as the new live version.

use std::path::PathBuf;
use std::time::Duration;

use acme_core::acme::{self, RenewOptions, RenewResult};
use acme_core::{Inventory, Store};
use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    acme_core::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let usage = "usage: issue_one <inventory> <name>";
    let config = PathBuf::from(args.next().context(usage)?);
    let name = args.next().context(usage)?;

    let inventory = Inventory::load(&config)?;
    let (store, _repairs) = Store::open(&inventory.store)?;
    let _lock = store.lock(Duration::from_secs(60))?;

    let opts = RenewOptions {
        names: vec![name.clone()],
        force: true,
        dry_run: false,
    };
    for outcome in acme::renew(&inventory, &store, &opts).await? {
        match outcome.result {
            RenewResult::Issued { release, .. } => println!(
                "{}: version {} (serial {}), valid until {}, files in {}",
                release.name,
                release.version,
                release.meta.serial,
                release.meta.not_after,
                release.dir.display()
            ),
            RenewResult::Failed { error, .. } => {
                return Err(anyhow::Error::new(error).context(format!("issuing {name}")))
            }
            other => println!("{}: {other:?}", outcome.name),
        }
    }
    Ok(())
}
