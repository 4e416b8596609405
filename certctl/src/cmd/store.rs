//! `certctl store keygen|export|import|rekey|prune`: the data key of an
//! etcd store, moving a whole store between backends, re-keying, and
//! removing expired old versions.

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
    /// Remove old versions from the store (either backend): only versions
    /// whose certificate has expired, never the live one, the one before
    /// it or the newest KEEP. Takes the store lock; with --dry-run it lists
    /// them, takes no lock and writes nothing.
    Prune {
        /// Only these certificates (every one in the store by default).
        names: Vec<String>,
        /// Versions to keep per certificate besides the live one and the
        /// one before it, expired or not.
        #[arg(long, default_value_t = 3)]
        keep: usize,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON: one object per version, removed or not.
        #[arg(long)]
        json: bool,
    },
}

/// One version `store prune` removed (or would remove).
#[derive(Debug, serde::Serialize)]
struct Pruned {
    name: String,
    version: String,
    #[serde(with = "time::serde::rfc3339")]
    not_after: time::OffsetDateTime,
    removed: bool,
}

async fn prune(
    ctx: &Ctx,
    names: Vec<String>,
    keep: usize,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inv = ctx.inventory()?;
    let (store, lock) = if dry_run {
        let store = Store::open_read_only(&inv.store)
            .with_context(|| format!("cannot open the store {}", inv.store.display()))?;
        (store, None)
    } else {
        let (s, l) = super::issue::open_store_locked(ctx, &inv)?;
        (s, Some(l))
    };
    let stored = store.names()?;
    for n in &names {
        if !stored.contains(n) {
            anyhow::bail!(
                "certificate `{n}` has no live version in the store {}; stored: {}",
                store.describe(),
                stored.join(", ")
            );
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let mut done = Vec::new();
    for name in stored
        .iter()
        .filter(|n| names.is_empty() || names.contains(n))
    {
        for (version, not_after) in store.prunable(name, keep, now)? {
            let removed = !dry_run && store.remove_version(name, &version)?;
            done.push(Pruned {
                name: name.clone(),
                version,
                not_after,
                removed,
            });
        }
    }
    store.check_held()?;
    drop(lock);
    if json {
        crate::output::print_json(&done)?;
    } else if !ctx.quiet {
        for p in &done {
            let what = match (dry_run, p.removed) {
                (true, _) => "would remove",
                (false, true) => "removed",
                (false, false) => "left alone",
            };
            println!(
                "{what} {} {} (expired {})",
                crate::output::clean(&p.name),
                crate::output::clean(&p.version),
                p.not_after.date()
            );
        }
        let removed = done.iter().filter(|p| p.removed).count();
        println!(
            "{} of {} expired old versions {} from {}",
            if dry_run { done.len() } else { removed },
            done.len(),
            if dry_run {
                "would be removed"
            } else {
                "removed"
            },
            store.describe()
        );
    }
    Ok(ExitCode::from(exit::OK))
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
        StoreCommand::Prune {
            names,
            keep,
            dry_run,
            json,
        } => prune(ctx, names, keep, dry_run, json).await,
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
