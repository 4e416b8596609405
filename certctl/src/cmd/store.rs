//! `certctl store keygen|export|import|rekey`: the data key of an etcd
//! store, moving a whole store between backends, and re-keying.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use acme_core::store::{Copied, DataKey, StoreConfig, StoreError};
use acme_core::Store;
use anyhow::Context as _;

use crate::{exit, Ctx};

/// `certctl store …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum StoreCommand {
    /// Write a new random 32-byte data key (base64, one line, mode 0600)
    /// for `key_file`; refuses an existing FILE.
    Keygen {
        /// The file to create.
        file: PathBuf,
    },
    /// Copy the inventory's store into a new directory store at DIR (which
    /// must be missing or empty), verifying every version's hashes.
    Export {
        /// The directory store to create.
        dir: PathBuf,
    },
    /// Copy the directory store at DIR into the inventory's store,
    /// verifying every version's hashes; identical versions are skipped, a
    /// different one under the same name is an error (nothing is
    /// overwritten). Takes the store lock.
    Import {
        /// The directory store to read.
        dir: PathBuf,
    },
    /// Re-seal every sealed value of the etcd store under the key in
    /// NEW_KEY_FILE (made by `certctl store keygen`). Takes the store lock;
    /// re-run it until it completes if it is interrupted. Then install
    /// NEW_KEY_FILE as `key_file` on every controller.
    Rekey {
        /// The new data key.
        new_key_file: PathBuf,
    },
}

/// Arguments of `certctl store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

fn counts(c: &Copied) -> String {
    format!(
        "{} versions copied and verified, {} already there (identical), {} live pointers set{}, {} accounts, {} records{}",
        c.versions,
        c.identical,
        c.live,
        if c.live_kept > 0 {
            format!(" ({} kept: the target's live version differs)", c.live_kept)
        } else {
            String::new()
        },
        c.accounts,
        c.records,
        if c.records_kept > 0 {
            format!(" ({} kept as the target has them)", c.records_kept)
        } else {
            String::new()
        },
    )
}

fn empty_or_missing(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                anyhow::bail!(
                    "{} is not empty; export writes into a new directory only (give a new path)",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", dir.display()))),
    }
}

pub(crate) async fn store(ctx: &Ctx, args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Keygen { file } => {
            let key = DataKey::generate(&file)?;
            if !ctx.quiet {
                println!(
                    "wrote data key {} to {} (mode 0600); copy it to every controller and set `key_file` to it",
                    key.id(),
                    file.display()
                );
            }
            Ok(ExitCode::from(exit::OK))
        }
        StoreCommand::Export { dir } => {
            let inv = ctx.inventory()?;
            empty_or_missing(&dir)?;
            let from = Store::open_existing(&inv.store)
                .with_context(|| format!("cannot open the store {}", inv.store.display()))?;
            let (to, _) = Store::open(&dir)?;
            let c = acme_core::store::copy(&from, &to)?;
            if !ctx.quiet {
                println!(
                    "exported {} to {}: {}",
                    inv.store.display(),
                    dir.display(),
                    counts(&c)
                );
            }
            Ok(ExitCode::from(exit::OK))
        }
        StoreCommand::Import { dir } => {
            let inv = ctx.inventory()?;
            let from = Store::open_existing(&dir)
                .with_context(|| format!("cannot open the directory store {}", dir.display()))?;
            let (to, lock) = super::issue::open_store_locked(ctx, &inv)?;
            let c = acme_core::store::copy(&from, &to)?;
            to.check_held()?;
            drop(lock);
            if !ctx.quiet {
                println!(
                    "imported {} into {}: {}",
                    dir.display(),
                    inv.store.display(),
                    counts(&c)
                );
            }
            Ok(ExitCode::from(exit::OK))
        }
        StoreCommand::Rekey { new_key_file } => {
            let inv = ctx.inventory()?;
            let StoreConfig::Etcd(cfg) = &inv.store else {
                anyhow::bail!(
                    "the store {} is a directory store, which seals nothing; rekey is for an etcd store",
                    inv.store.display()
                );
            };
            let new = DataKey::load(&new_key_file)?;
            let (store, lock) = match super::issue::open_store_locked(ctx, &inv) {
                Err(e) => {
                    if let Some(StoreError::WrongDataKey { store_key, .. }) =
                        e.downcast_ref::<StoreError>()
                    {
                        if store_key == new.id() {
                            println!(
                                "the store is already sealed with data key {} ({}): install {} as key_file ({}) on every controller",
                                new.id(),
                                new_key_file.display(),
                                new_key_file.display(),
                                cfg.key_file.display()
                            );
                            return Ok(ExitCode::from(exit::OK));
                        }
                    }
                    return Err(e);
                }
                Ok(s) => s,
            };
            let Some(done) = store.rekey(&new) else {
                anyhow::bail!("the store is not an etcd store");
            };
            let done = done?;
            drop(lock);
            println!(
                "re-sealed {} values under data key {} ({} were already); now replace key_file ({}) with {} on every controller",
                done.resealed,
                new.id(),
                done.already,
                cfg.key_file.display(),
                new_key_file.display()
            );
            Ok(ExitCode::from(exit::OK))
        }
    }
}
