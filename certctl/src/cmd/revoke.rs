//! `certctl revoke`.

use std::process::ExitCode;

use acme_core::acme::{self, RevocationReason};

use crate::output::{clean, print_json};
use crate::{exit, Ctx};

/// Arguments of `certctl revoke`.
#[derive(Debug, clap::Args)]
pub(crate) struct RevokeArgs {
    /// The certificate (name from the inventory or the store).
    name: String,
    /// The version to revoke (default: the live one).
    #[arg(long)]
    version: Option<String>,
    /// The reason (RFC 5280): unspecified, keyCompromise (signed with the
    /// certificate's own key), affiliationChanged, superseded,
    /// cessationOfOperation.
    #[arg(long, default_value = "unspecified", value_parser = parse_reason)]
    reason: RevocationReason,
    /// Revoke even though nodes still serve this version.
    #[arg(long)]
    force: bool,
    /// Print the store's record as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_reason(s: &str) -> Result<RevocationReason, acme::UnknownReason> {
    s.parse()
}

pub(crate) async fn revoke(ctx: &Ctx, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let inv = ctx.inventory()?;
    let (store, _lock) = super::issue::open_store_locked(ctx, &inv)?;
    let version = match args.version {
        Some(v) => v,
        None => match store.current(&args.name)? {
            Some(r) => r.version,
            None => anyhow::bail!(
                "`{}` has no live version in {}; name one with --version",
                clean(&args.name),
                inv.store.display()
            ),
        },
    };
    let serving = acme::nodes_with_version(&store, &args.name, &version)?;
    if !serving.is_empty() {
        if !args.force {
            eprintln!(
                "certctl: refused: version {} of `{}` is still served by {} (certctl's deployment records); deploy a newer version first (`certctl rotate {}`), or pass --force to revoke it while served",
                clean(&version),
                clean(&args.name),
                clean(&serving.join(", ")),
                clean(&args.name),
            );
            return Ok(ExitCode::from(exit::CRITICAL));
        }
        eprintln!(
            "certctl: warning: revoking version {} of `{}` while {} still serve it (--force)",
            clean(&version),
            clean(&args.name),
            clean(&serving.join(", "))
        );
    }
    let rec = acme::revoke(&inv, &store, &args.name, &version, args.reason).await?;
    if args.json {
        print_json(&rec)?;
    } else {
        println!(
            "revoked {} version {} (serial {}) at {}: {}, signed by the {}{}",
            clean(&args.name),
            clean(&rec.version),
            rec.serial,
            clean(&rec.directory),
            rec.reason,
            match rec.signed_by {
                acme::SignedBy::CertificateKey => "certificate's own key",
                _ => "account key",
            },
            if rec.already {
                " (the CA had it revoked already)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::from(exit::OK))
}

/// Arguments of `certctl rotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct RotateArgs {
    /// Certificates to rotate (names from the inventory).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    names: Vec<String>,
    /// Every certificate of the inventory.
    #[arg(long)]
    all: bool,
    /// The reason given to the CA for the old versions; keyCompromise
    /// signs each revocation with the old certificate's own key.
    #[arg(long, default_value = "superseded", value_parser = parse_reason)]
    reason: RevocationReason,
    /// Revoke old versions even where a node could not be moved.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn rotate(ctx: &Ctx, args: RotateArgs) -> anyhow::Result<ExitCode> {
    let inv = ctx.inventory()?;
    for n in &args.names {
        if inv.certificate(n).is_none() {
            anyhow::bail!(
                "certificate `{}` is not in {}",
                clean(n),
                inv.path.display()
            );
        }
    }
    let (store, _lock) = super::issue::open_store_locked(ctx, &inv)?;
    let opts = acme_core::RotateOptions {
        names: args.names,
        reason: args.reason,
        force: args.force,
    };
    let rows = acme_core::rotate(&inv, &store, &opts, &acme_core::deploy::NoProgress).await?;
    let complete = rows.iter().all(|r| r.complete());
    if args.json {
        print_json(&rows)?;
    } else {
        for r in &rows {
            let new = r.new_version.as_deref().unwrap_or("-");
            println!(
                "{}: new version {}{} on {}/{} nodes; revoked {}",
                clean(&r.name),
                clean(new),
                if r.new_version.is_some() && !r.issued_now {
                    " (issued by an earlier rotate)"
                } else {
                    ""
                },
                r.moved.len(),
                r.moved.len() + r.exposed.len(),
                if r.revoked.is_empty() {
                    "nothing".to_string()
                } else {
                    r.revoked
                        .iter()
                        .map(|v| clean(&v.version))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            if let Some(e) = &r.issue_error {
                println!("  NOT ISSUED: {}", clean(&acme_core::error_chain(e)));
            }
            if let Some(t) = r.deferred_until {
                println!("  NOT ISSUED: the CA asks to wait until {t}");
            }
            for e in &r.exposed {
                println!(
                    "  EXPOSED: {} still has version {}{}",
                    clean(&e.node),
                    clean(e.version.as_deref().unwrap_or("(none)")),
                    match &e.outcome {
                        Some(o) => format!(
                            " (deploy: {})",
                            clean(&serde_json::to_string(o).unwrap_or_default())
                        ),
                        None => String::new(),
                    }
                );
            }
            for k in &r.kept {
                println!(
                    "  NOT REVOKED: version {} stays valid while {} {} it (run `certctl rotate {}` again once {} reachable, or --force)",
                    clean(&k.version),
                    clean(&k.nodes.join(", ")),
                    if k.nodes.len() == 1 { "has" } else { "have" },
                    clean(&r.name),
                    if k.nodes.len() == 1 { "it is" } else { "they are" },
                );
            }
            for n in &r.not_revoked {
                println!(
                    "  NOT REVOKED: version {}: {}",
                    clean(&n.version),
                    clean(&acme_core::error_chain(&n.error))
                );
            }
        }
    }
    Ok(ExitCode::from(if complete {
        exit::OK
    } else {
        exit::CRITICAL
    }))
}
