//! `certctl issue`, `renew`, `list` and `check`.

use std::process::ExitCode;

use acme_core::acme::{self, DueReason, RenewOptions, RenewOutcome, RenewResult};
use acme_core::Store;
use anyhow::Context as _;
use serde::Serialize;
use time::OffsetDateTime;

use crate::output::{paint, print_json, Table};
use crate::{exit, Ctx};

/// Arguments of `certctl issue`.
#[derive(Debug, clap::Args)]
pub(crate) struct IssueArgs {
    /// Certificates to obtain now (names from the inventory).
    #[arg(required = true)]
    names: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `certctl renew`.
#[derive(Debug, clap::Args)]
pub(crate) struct RenewArgs {
    /// Only these certificates (all by default).
    names: Vec<String>,
    /// Renew even if not due, and ignore a remembered Retry-After.
    #[arg(long)]
    force: bool,
    /// Say what would be renewed and why; order nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Also record the renew step in the store and write the Prometheus
    /// textfile (atomically) to FILE, keeping the figures of the other steps.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    prometheus: Option<std::path::PathBuf>,
}

/// Arguments of `certctl list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `certctl check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Also check against the CA, the DNS primaries and every node (nothing
    /// is deployed or left behind).
    #[arg(long)]
    online: bool,
    /// Print the checks as JSON (schema `certctl.check/v1`).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn issue(ctx: &Ctx, args: IssueArgs) -> anyhow::Result<ExitCode> {
    let opts = RenewOptions {
        names: args.names,
        force: true,
        dry_run: false,
    };
    renew_with(ctx, opts, args.json, None).await
}

pub(crate) async fn renew(ctx: &Ctx, args: RenewArgs) -> anyhow::Result<ExitCode> {
    let opts = RenewOptions {
        names: args.names,
        force: args.force,
        dry_run: args.dry_run,
    };
    renew_with(ctx, opts, args.json, args.prometheus.as_deref()).await
}

/// Warns about loose modes in a store opened read-only (a writing command repairs them).
pub(crate) fn warn_loose_modes(store: &Store) {
    let loose = store.loose_modes().unwrap_or_default();
    mode_lines(&loose, |r| {
        format!(
            "{} has mode {:o}, should be {:o}: run `chmod {:o} {}` (or any writing command, which repairs it)",
            r.path.display(),
            r.was,
            r.now,
            r.now,
            r.path.display()
        )
    });
}

/// How many paths a mode warning names one by one; the rest are counted.
const MODE_LINES: usize = 10;

/// Prints one warning per path, at most [`MODE_LINES`], then how many more
/// (a store of 40,000 certificates with loose modes is one screen, not
/// 40,000 lines).
fn mode_lines(
    repairs: &[acme_core::store::Repair],
    line: impl Fn(&acme_core::store::Repair) -> String,
) {
    for r in repairs.iter().take(MODE_LINES) {
        eprintln!("certctl: warning: {}", crate::output::clean(&line(r)));
    }
    if repairs.len() > MODE_LINES {
        eprintln!(
            "certctl: warning: … and {} more paths in the store with loose modes",
            repairs.len() - MODE_LINES
        );
    }
}

/// Opens the inventory's store, tells about repaired modes, and takes the lock.
pub(crate) fn open_store_locked(
    ctx: &Ctx,
    inv: &acme_core::Inventory,
) -> anyhow::Result<(Store, acme_core::store::StoreLock)> {
    let (store, repairs) = Store::open(&inv.store)?;
    mode_lines(&repairs, |r| {
        format!(
            "{} had mode {:o}; set to {:o}",
            r.path.display(),
            r.was,
            r.now
        )
    });
    let lock = store.lock(ctx.lock_wait)?;
    Ok((store, lock))
}

fn check_names(inv: &acme_core::Inventory, names: &[String]) -> anyhow::Result<()> {
    let known: std::collections::HashSet<&str> =
        inv.certificates.iter().map(|c| c.name.as_str()).collect();
    for n in names {
        if !known.contains(n.as_str()) {
            let known: Vec<&str> = inv.certificates.iter().map(|c| c.name.as_str()).collect();
            anyhow::bail!(
                "certificate `{n}` is not in {}; known: {}",
                inv.path.display(),
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// Runs a renewal and prints its outcomes; shared with `certctl run`.
pub(crate) async fn renew_outcomes(
    ctx: &Ctx,
    inv: &acme_core::Inventory,
    opts: &RenewOptions,
) -> anyhow::Result<Vec<RenewOutcome>> {
    check_names(inv, &opts.names)?;
    if opts.dry_run {
        // Writes nothing: no directory, marker, chmod, lock or state.
        let store = Store::open_read_only(&inv.store)?;
        return Ok(acme::renew(inv, &store, opts).await?);
    }
    let (store, _lock) = open_store_locked(ctx, inv)?;
    renew_locked(inv, &store, opts).await
}

/// Renews into `store`, which the caller holds locked.
async fn renew_locked(
    inv: &acme_core::Inventory,
    store: &Store,
    opts: &RenewOptions,
) -> anyhow::Result<Vec<RenewOutcome>> {
    let outcomes = acme::renew(inv, store, opts).await?;
    // A run that lost the store lock (etcd lease) is an error (exit 3).
    store.check_held()?;
    Ok(outcomes)
}

async fn renew_with(
    ctx: &Ctx,
    opts: RenewOptions,
    json: bool,
    prometheus: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use acme_core::report::Step;
    let inv = ctx.inventory()?;
    let Some(prometheus) = prometheus else {
        let outcomes = renew_outcomes(ctx, &inv, &opts).await?;
        return print_renewed(ctx, &outcomes, json);
    };
    // `--prometheus` (never with --dry-run): the health record is written
    // through the store this run holds locked, so an etcd store's health
    // writes are fenced by that lock like every other write.
    check_names(&inv, &opts.names)?;
    let (store, _lock) = open_store_locked(ctx, &inv)?;
    let mut rec = super::health::Recorder::for_store(&store);
    rec.started(Step::Renew);
    let outcomes = renew_locked(&inv, &store, &opts).await;
    let ok = outcomes.as_ref().is_ok_and(|o| {
        !o.iter()
            .any(|o| matches!(o.result, RenewResult::Failed { .. }))
    });
    rec.ended(Step::Renew, ok);
    rec.write_textfile(prometheus, None, &inv)?;
    print_renewed(ctx, &outcomes?, json)
}

/// Prints a renewal's outcomes (a table, or JSON) and gives its exit code.
fn print_renewed(ctx: &Ctx, outcomes: &[RenewOutcome], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&outcomes.iter().map(OutcomeJson::from).collect::<Vec<_>>())?;
    } else {
        print_outcomes(ctx, outcomes)?;
    }
    if json {
        print_damage(outcomes, "");
    }
    Ok(ExitCode::from(outcome_code(outcomes)))
}

/// 2 if any certificate failed or still has damaged store files, else 0.
pub(crate) fn outcome_code(outcomes: &[RenewOutcome]) -> u8 {
    if outcomes
        .iter()
        .any(|o| matches!(o.result, RenewResult::Failed { .. }) || o.unrepaired().next().is_some())
    {
        exit::CRITICAL
    } else {
        0
    }
}

pub(crate) fn print_outcomes(ctx: &Ctx, outcomes: &[RenewOutcome]) -> anyhow::Result<()> {
    let mut t = Table::new(&["CERTIFICATE", "RESULT", "DETAIL"]);
    for o in outcomes {
        let (result, detail) = match &o.result {
            RenewResult::Issued { release, reason } => (
                "issued",
                format!(
                    "{} ({reason}); expires {}",
                    release.version,
                    day(release.meta.not_after)
                ),
            ),
            RenewResult::NotDue => (
                "not due",
                o.due
                    .as_ref()
                    .map(|(at, why)| format!("due {} ({why})", day(*at)))
                    .unwrap_or_default(),
            ),
            RenewResult::WouldIssue { reason } => (
                "would issue",
                format!("{reason}; challenge {}", o.challenge),
            ),
            RenewResult::Deferred { until } => (
                "deferred",
                format!("the CA asked to wait until {}", stamp(*until)),
            ),
            RenewResult::Failed { error, .. } => ("FAILED", format!("{error:#}")),
            _ => ("?", String::new()),
        };
        let detail = match o.unrepaired().next() {
            Some(d) => format!("DAMAGED {}: {}; {detail}", d.path.display(), problem(d)),
            None => detail,
        };
        t.row(vec![o.name.clone(), result.into(), detail]);
    }
    t.print(|_, col, text| match (col, text) {
        (1, "FAILED") => paint(ctx.color, "red", text),
        (1, "issued") => paint(ctx.color, "green", text),
        (1, "deferred") => paint(ctx.color, "yellow", text),
        _ => text.to_string(),
    })?;
    for o in outcomes {
        if let RenewResult::Failed { error, .. } = &o.result {
            eprintln!(
                "certctl: {}: {}",
                crate::output::clean(&o.name),
                crate::output::clean(&anyhow_chain(error))
            );
        }
    }
    print_damage(outcomes, "");
    Ok(())
}

/// What is wrong with a damaged file, on one line.
pub(crate) fn problem(d: &acme_core::store::Damage) -> String {
    acme_core::error_chain(&d.problem)
}

/// One stderr line per damaged store file: what is wrong and what was done.
pub(crate) fn print_damage(outcomes: &[RenewOutcome], prefix: &str) {
    for o in outcomes {
        let issued = matches!(o.result, RenewResult::Issued { .. });
        for d in &o.damage {
            let done = match (&d.set_aside, d.part.is_release(), issued) {
                (Some(to), _, _) => {
                    format!("moved aside to {}; the record starts afresh", to.display())
                }
                (None, true, true) => {
                    "a new version was issued and is live; the damaged one is kept".into()
                }
                (None, true, false) => "not repaired: the next renewal issues a new version".into(),
                (None, false, _) => "not repaired: a writing renew moves it aside".into(),
            };
            eprintln!(
                "certctl: {prefix}{}: {}: {done}",
                o.name,
                acme_core::error_chain(d)
            );
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn error_line(e: &acme_core::Error) -> String {
    anyhow_chain(e)
}

fn anyhow_chain(e: &acme_core::Error) -> String {
    acme_core::error_chain(e)
}

/// One outcome, for `--json`.
#[derive(Serialize)]
pub(crate) struct OutcomeJson<'a> {
    name: String,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<DueReason>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    due_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    not_after: Option<OffsetDateTime>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    retry_after: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    damage: &'a [acme_core::store::Damage],
    challenge: &'a str,
}

impl<'a> From<&'a RenewOutcome> for OutcomeJson<'a> {
    fn from(o: &'a RenewOutcome) -> Self {
        let mut j = OutcomeJson {
            name: o.name.clone(),
            result: "",
            reason: None,
            due_at: o.due.as_ref().map(|d| d.0),
            version: None,
            not_after: None,
            retry_after: None,
            error: None,
            damage: &o.damage,
            challenge: &o.challenge,
        };
        match &o.result {
            RenewResult::Issued { release, reason } => {
                j.result = "issued";
                j.reason = Some(reason.clone());
                j.version = Some(release.version.clone());
                j.not_after = Some(release.meta.not_after);
            }
            RenewResult::NotDue => {
                j.result = "not_due";
                j.reason = o.due.as_ref().map(|d| d.1.clone());
            }
            RenewResult::WouldIssue { reason } => {
                j.result = "would_issue";
                j.reason = Some(reason.clone());
            }
            RenewResult::Deferred { until } => {
                j.result = "deferred";
                j.retry_after = Some(*until);
            }
            RenewResult::Failed { reason, error } => {
                j.result = "failed";
                j.reason = Some(reason.clone());
                j.error = Some(anyhow_chain(error));
            }
            _ => j.result = "unknown",
        }
        j
    }
}

fn day(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn stamp(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `live (reason)` when the live version is revoked, else how many older
/// versions are, else `-`.
fn revoked_cell(e: &acme_core::CertStatus) -> String {
    match e
        .revoked
        .iter()
        .find(|r| Some(&r.version) == e.version.as_ref())
    {
        Some(r) => format!("live ({})", r.reason),
        None if e.revoked.is_empty() => "-".into(),
        None => format!("{} older", e.revoked.len()),
    }
}

pub(crate) async fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<ExitCode> {
    let inv = ctx.inventory()?;
    let store = Store::open_existing(&inv.store).with_context(|| match &inv.store {
        acme_core::store::StoreConfig::Dir(_) => format!(
            "no store at {} yet: run `certctl issue` first",
            inv.store.display()
        ),
        _ => format!("cannot open the store {}", inv.store.display()),
    })?;
    warn_loose_modes(&store);
    let now = OffsetDateTime::now_utc();
    let entries = acme_core::CertStatus::list(&inv, &store, now)?;
    for e in &entries {
        for d in &e.damage {
            eprintln!(
                "certctl: {}: {}: {}",
                e.name,
                acme_core::error_chain(d),
                if d.part.is_release() {
                    "`certctl renew` issues a new version (the damaged one is kept)"
                } else {
                    "`certctl renew` moves it aside and starts the record afresh"
                }
            );
        }
    }
    // A damaged certificate counts as failed: never "ok".
    let code = if entries.iter().any(|e| !e.damage.is_empty()) {
        exit::CRITICAL
    } else {
        exit::OK
    };
    if args.json {
        print_json(&entries)?;
        return Ok(ExitCode::from(code));
    }
    let mut t = Table::new(&[
        "CERTIFICATE",
        "VERSION",
        "EXPIRES",
        "LEFT",
        "RENEW",
        "DEPLOYED",
        "REVOKED",
        "NOTE",
    ]);
    for e in &entries {
        let deployed = if e.deployments.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{}", e.deployed_current(), e.deployments.len())
        };
        t.row(vec![
            e.name.clone(),
            e.version.clone().unwrap_or_else(|| "-".into()),
            e.not_after.map(day).unwrap_or_else(|| "-".into()),
            e.days_left
                .map(|d| format!("{d}d"))
                .unwrap_or_else(|| "-".into()),
            match (&e.due_at, &e.due_reason) {
                (Some(_), Some(why)) if e.is_due(now) => format!("due now ({why})"),
                (Some(at), Some(why)) => format!("{} ({why})", day(*at)),
                _ => "not issued".into(),
            },
            deployed,
            revoked_cell(e),
            match (e.damage.first(), &e.last_error, e.in_inventory) {
                (Some(d), _, _) => format!(
                    "DAMAGED {}: {}{}",
                    d.path.display(),
                    problem(d),
                    match e.damage.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    }
                ),
                (None, _, false) => "not in inventory".into(),
                (None, Some(err), _) => format!("last error: {err}"),
                _ => String::new(),
            },
        ]);
    }
    t.print(|_, col, text| {
        if col == 6 && text.starts_with("DAMAGED") {
            paint(ctx.color, "red", text)
        } else if col == 4 && text.starts_with("due now")
            || col == 6 && text.starts_with("last error")
        {
            paint(ctx.color, "yellow", text)
        } else {
            text.to_string()
        }
    })?;
    Ok(ExitCode::from(code))
}

pub(crate) async fn check(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<ExitCode> {
    use acme_core::preflight::{self, Status};
    let inv = ctx.inventory()?;
    let report = if args.online {
        preflight::online(&inv).await
    } else {
        preflight::offline(&inv)
    };
    if args.json {
        print_json(&report)?;
    } else {
        let mut t = Table::new(&["SUBJECT", "CHECK", "STATUS", "DETAIL", "FIX"]);
        for i in &report.items {
            let status = match i.status {
                Status::Ok => "ok",
                Status::Warning => "warning",
                Status::Error => "error",
            };
            t.row(vec![
                one_line(&i.subject.to_string()),
                one_line(&i.check),
                status.into(),
                one_line(&i.detail()),
                one_line(i.fix.as_deref().unwrap_or("")),
            ]);
        }
        t.print(|_, col, text| match (col, text) {
            (2, "error") => paint(ctx.color, "red", text),
            (2, "warning") => paint(ctx.color, "yellow", text),
            (2, "ok") => paint(ctx.color, "green", text),
            _ => text.to_string(),
        })?;
        println!(
            "{}: {} ok, {} warnings, {} errors{}",
            ctx.config.display(),
            report.count(Status::Ok),
            report.count(Status::Warning),
            report.count(Status::Error),
            if args.online {
                ""
            } else {
                " (offline; `--online` checks the CA, DNS and nodes)"
            }
        );
    }
    Ok(match report.worst() {
        Status::Error => ExitCode::from(exit::CRITICAL),
        Status::Ok | Status::Warning => ExitCode::SUCCESS,
    })
}

/// A table cell on one line: control characters (from a node's output, a
/// CA's message) escaped.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
