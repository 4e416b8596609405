//! `certctl persist-record`: the dns-persist-01 TXT records to create once.

use std::process::ExitCode;

use acme_core::acme::persist::{self, AccountUse, Published};
use acme_core::acme::CaConfig;

use crate::output::{clean, print_json};
use crate::{exit, Ctx};

/// Arguments of `certctl persist-record`.
#[derive(Debug, clap::Args)]
pub(crate) struct PersistRecordArgs {
    /// Only these certificates (every certificate with a persist solver by default).
    names: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Create each record once through the persist solver's `fallback`
    /// (rfc2136 or exec) and check it on every authoritative nameserver.
    /// certctl never removes it.
    #[arg(long)]
    publish: bool,
    /// Write nothing anywhere: no account is registered, no record created.
    #[arg(long)]
    dry_run: bool,
}

#[derive(serde::Serialize)]
struct RecordJson<'a> {
    #[serde(flatten)]
    record: &'a persist::PlannedRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    published: Option<Published>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(crate) async fn persist_record(ctx: &Ctx, args: PersistRecordArgs) -> anyhow::Result<ExitCode> {
    let inv = ctx.inventory()?;
    let ca = CaConfig::primary(&inv);
    // The value names this account, so it needs one: the stored account,
    // else one registered now (as the first renewal would), except on --dry-run.
    let id = if args.dry_run {
        let store = acme_core::Store::open_read_only(&inv.store)?;
        persist::identity(&ca, &store, AccountUse::Stored).await?
    } else {
        let (store, _lock) = super::issue::open_store_locked(ctx, &inv)?;
        persist::identity(&ca, &store, AccountUse::StoredOrRegister).await?
    };
    let records = persist::plan(&inv, &id, &args.names)?;
    if records.is_empty() {
        anyhow::bail!(
            "no certificate in {} uses a `type = \"persist\"` solver",
            inv.path.display()
        );
    }
    let mut results = Vec::new();
    let mut failed = false;
    for r in &records {
        let (published, error) = if args.publish {
            match persist::publish(&inv, &id, r, args.dry_run).await {
                Ok(p) => (Some(p), None),
                Err(e) => {
                    failed = true;
                    (None, Some(acme_core::error_chain(&e)))
                }
            }
        } else {
            (None, None)
        };
        results.push(RecordJson {
            record: r,
            published,
            error,
        });
    }
    if args.json {
        print_json(&results)?;
    } else {
        if !ctx.quiet {
            println!(
                "; dns-persist-01 records for {} (account {}, {})",
                clean(&ca.directory),
                clean(&id.account_url),
                id.version
            );
        }
        for r in &results {
            println!(
                "{}. IN TXT \"{}\"",
                clean(&r.record.name),
                clean(&r.record.value)
            );
            if let Some(p) = r.published {
                let what = match p {
                    Published::AlreadyThere => "already on every authoritative nameserver",
                    Published::Written => "published; on every authoritative nameserver",
                    Published::WouldWrite => "would be published (--dry-run)",
                    _ => "?",
                };
                println!("; {what}");
            }
            if let Some(e) = &r.error {
                eprintln!("certctl: error: {}: {}", r.record.name, clean(e));
            }
        }
    }
    Ok(ExitCode::from(if failed {
        exit::CRITICAL
    } else {
        exit::OK
    }))
}
