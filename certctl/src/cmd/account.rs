//! `certctl account show` and `certctl account rollover`.

use std::process::ExitCode;

use acme_core::acme::{self, CaConfig, Settled};

use crate::output::{clean, print_json};
use crate::{exit, Ctx};

/// `certctl account …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccountCommand {
    /// Print the stored account: URL, contact, key type and thumbprint
    /// (never the key). Reads the store only.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the account key (RFC 8555 §7.3.5). The new key is stored
    /// before the CA is asked and swapped in only after it accepted, so a
    /// run killed at any moment leaves a key the CA accepts.
    Rollover {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `certctl account`.
#[derive(Debug, clap::Args)]
pub(crate) struct AccountArgs {
    #[command(subcommand)]
    command: AccountCommand,
}

pub(crate) async fn account(ctx: &Ctx, args: AccountArgs) -> anyhow::Result<ExitCode> {
    let inv = ctx.inventory()?;
    let ca = CaConfig::primary(&inv);
    match args.command {
        AccountCommand::Show { json } => {
            let store = acme_core::Store::open_read_only(&inv.store)?;
            let Some(info) = acme::show_account(&ca, &store)? else {
                anyhow::bail!(
                    "no ACME account is stored for {} in {}; `certctl issue` registers one",
                    clean(&ca.directory),
                    inv.store.display()
                );
            };
            if json {
                print_json(&info)?;
            } else {
                println!("directory   {}", clean(&info.directory));
                println!("account     {}", clean(&info.url));
                let contact = if info.contact.is_empty() {
                    "-".to_string()
                } else {
                    info.contact.join(", ")
                };
                println!("contact     {}", clean(&contact));
                println!("key type    {}", info.key_type);
                println!("thumbprint  {}", info.thumbprint);
                if let Some(p) = &info.pending_thumbprint {
                    println!("pending     {p} (an interrupted rollover; the next run settles it)");
                }
            }
            Ok(ExitCode::from(exit::OK))
        }
        AccountCommand::Rollover { json } => {
            let (store, _lock) = super::issue::open_store_locked(ctx, &inv)?;
            let done = acme::roll_over_account_key(&ca, &store).await?;
            if json {
                print_json(&done)?;
            } else {
                match done.settled {
                    Settled::KeptCurrent => println!(
                        "an earlier interrupted rollover was not accepted by the CA; it was dropped"
                    ),
                    Settled::Promoted => println!(
                        "an earlier interrupted rollover was accepted by the CA; its key was swapped in first"
                    ),
                    _ => {}
                }
                println!("account     {}", clean(&done.url));
                println!("old key     {}", done.old_thumbprint);
                println!("new key     {}", done.new_thumbprint);
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}
