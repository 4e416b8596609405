//! `certctl report`, `certctl scan` and `certctl inspect`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use acme_core::inspect::{human_signed, Anchors, Trust};
use acme_core::report::{self, ReportOptions, ScanTarget, Severity, Thresholds};
use anyhow::Context as _;
use time::OffsetDateTime;

use crate::exit::UsageError;
use crate::output::{paint, print_json, Table};
use crate::Ctx;

/// Arguments of `certctl report`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: the worst finding: 0 ok, 1 warning, 2 critical, 3 unknown (e.g. a node unreachable) or error."
)]
pub(crate) struct ReportArgs {
    /// Certificates to report on (all when none).
    names: Vec<String>,
    /// Print JSON (schema certctl.report/v1) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the report as a Prometheus textfile (atomically) to FILE.
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page (atomically) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Only these nodes (repeatable).
    #[arg(long = "node", value_name = "N")]
    nodes: Vec<String>,
    /// Do not run `[report] notify` even when there are findings.
    #[arg(long)]
    no_notify: bool,
}

/// Arguments of `certctl scan`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: the worst finding: 0 ok, 1 warning, 2 critical, 3 unknown (unreachable) or error."
)]
pub(crate) struct ScanArgs {
    /// Endpoints: host, host:port, `[v6]:port` (port 443 by default).
    #[arg(required_unless_present = "from_file")]
    targets: Vec<String>,
    /// SNI name to send (default: each endpoint's host).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Read more endpoints from a file: one `host[:port] [sni]` per line, `#` comments.
    #[arg(long, value_name = "LIST")]
    from_file: Option<PathBuf>,
    /// Print JSON (schema certctl.scan/v1).
    #[arg(long)]
    json: bool,
    /// Time left below which a certificate is a warning.
    #[arg(long, default_value = "21d", value_parser = crate::parse_duration)]
    warning: Duration,
    /// Time left below which a certificate is critical.
    #[arg(long, default_value = "7d", value_parser = crate::parse_duration)]
    critical: Duration,
    /// Extra trust anchors (PEM), besides the system roots (repeatable).
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,
    /// Do not trust the system roots (only --ca-file).
    #[arg(long)]
    no_system_roots: bool,
    /// Bound on each probe (connect and handshake).
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    timeout: Duration,
    /// Probes at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// Arguments of `certctl inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Directories are walked for *.pem, *.crt, *.cer, *.cert and *.key files; a certificate's \
                  private key is looked for in the same directory (privkey.pem, *.key).\n\
                  Exit status: the worst finding: 0 ok, 1 warning, 2 critical, 3 unreadable file."
)]
pub(crate) struct InspectArgs {
    /// PEM files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print JSON (schema certctl.inspect/v1).
    #[arg(long)]
    json: bool,
    /// Time left below which a certificate is a warning.
    #[arg(long, default_value = "21d", value_parser = crate::parse_duration)]
    warning: Duration,
    /// Time left below which a certificate is critical.
    #[arg(long, default_value = "7d", value_parser = crate::parse_duration)]
    critical: Duration,
    /// Extra trust anchors (PEM) for chain completeness, besides the system roots.
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,
}

fn exit(s: Severity) -> ExitCode {
    ExitCode::from(exit_code(s))
}

fn color_of(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "green",
        Severity::Warning | Severity::Unknown => "yellow",
        Severity::Critical => "red",
    }
}

fn thresholds(warning: Duration, critical: Duration) -> anyhow::Result<Thresholds> {
    if critical > warning {
        return Err(UsageError(format!(
            "--critical ({}) must not be longer than --warning ({})",
            acme_core::inspect::human_duration(critical),
            acme_core::inspect::human_duration(warning)
        ))
        .into());
    }
    Ok(Thresholds { warning, critical })
}

pub(crate) async fn report(ctx: &Ctx, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let inventory = ctx.inventory()?;
    // Read-only: no lock, nothing created; a missing store is an empty one.
    let store = if inventory.store.exists() {
        match acme_core::Store::open_existing(&inventory.store) {
            Ok(s) => Some(s),
            // An etcd prefix with no store yet reads as empty, like a
            // directory store that does not exist yet.
            Err(acme_core::store::StoreError::EtcdNoStore { .. }) => None,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot open the store {}",
                    inventory.store.display()
                )))
            }
        }
    } else {
        None
    };
    if let Some(s) = &store {
        super::issue::warn_loose_modes(s);
    }
    let opts = ReportOptions {
        certificates: args.names,
        nodes: args.nodes,
        now: OffsetDateTime::now_utc(),
    };
    let out = ReportOutput {
        json: args.json,
        html: args.html,
        notify: !args.no_notify,
    };
    // With --prometheus the report step's figures are kept in the store
    // (which then is written: its health record); without, nothing is.
    let mut rec = match (&args.prometheus, &store) {
        (Some(_), Some(_)) => super::health::Recorder::if_exists(&inventory)?,
        // No store (nor an etcd prefix holding one): nothing is created.
        _ => super::health::Recorder::none(),
    };
    rec.started(acme_core::report::Step::Report);
    let emitted = emit(ctx, &inventory, store.as_ref(), &opts, &out).await;
    rec.ended(acme_core::report::Step::Report, emitted.is_ok());
    let emitted = emitted?;
    if emitted.notify_failed {
        rec.notify_failed();
    }
    if let Some(path) = &args.prometheus {
        rec.write_textfile(path, Some(&emitted.report), &inventory)?;
    }
    Ok(exit(emitted.report.severity))
}

/// How a report is delivered.
pub(crate) struct ReportOutput {
    pub(crate) json: bool,
    pub(crate) html: Option<PathBuf>,
    pub(crate) notify: bool,
}

/// A report made and delivered.
pub(crate) struct Emitted {
    pub(crate) report: report::Report,
    /// The notify command failed (it was said on stderr).
    pub(crate) notify_failed: bool,
}

/// Gathers the report, prints it, runs the notify hook. Shared with
/// `certctl run`; the caller writes the textfile.
pub(crate) async fn emit(
    ctx: &Ctx,
    inventory: &acme_core::Inventory,
    store: Option<&acme_core::Store>,
    opts: &ReportOptions,
    out: &ReportOutput,
) -> anyhow::Result<Emitted> {
    let report = report::gather(inventory, store, opts).await?;
    if let Some(path) = &out.html {
        report::write_html(&report, env!("CARGO_PKG_VERSION"), path)
            .with_context(|| format!("cannot write the HTML report {}", path.display()))?;
    }
    if out.json {
        print_json(&report)?;
    } else {
        print_report_table(ctx, &report)?;
    }
    let mut notify_failed = false;
    if let (Some(cmd), true) = (&inventory.report.notify, out.notify) {
        if let Err(e) = report::notify(cmd, &report, super::health::NOTIFY_TIMEOUT).await {
            // The report itself is complete; say so and keep its status.
            eprintln!(
                "certctl: warning: {}",
                crate::output::error_text(&anyhow::Error::new(e))
            );
            notify_failed = true;
        }
    }
    Ok(Emitted {
        report,
        notify_failed,
    })
}

/// The exit code for a report severity (monitoring-plugin convention).
pub(crate) fn exit_code(s: Severity) -> u8 {
    match s {
        Severity::Ok => crate::exit::OK,
        Severity::Warning => crate::exit::WARNING,
        Severity::Critical => crate::exit::CRITICAL,
        Severity::Unknown => crate::exit::ERROR,
    }
}

fn print_report_table(ctx: &Ctx, report: &report::Report) -> anyhow::Result<()> {
    let rows = report.rows();
    let mut t = Table::new(&[
        "CERTIFICATE",
        "WHERE",
        "VERSION",
        "SERIAL",
        "EXPIRES",
        "LEFT",
        "STATUS",
        "NOTES",
    ]);
    for r in &rows {
        t.row(vec![
            r.certificate.clone(),
            r.place.clone(),
            r.version.clone(),
            r.serial.clone(),
            r.expires.clone(),
            r.left.clone(),
            r.severity.to_string(),
            r.notes.clone(),
        ]);
    }
    t.print(|row, col, text| match col {
        6 => paint(ctx.color, color_of(rows[row].severity), text),
        _ => text.to_string(),
    })?;
    // The summary is for people; scripts reading the table get rows only.
    if ctx.stdout_tty && !ctx.quiet {
        let count = |s: Severity| rows.iter().filter(|r| r.severity == s).count();
        println!(
            "\n{} certificate(s), {} row(s): {} critical, {} unknown, {} warning; overall {}",
            report.certificates.len(),
            rows.len(),
            count(Severity::Critical),
            count(Severity::Unknown),
            count(Severity::Warning),
            report.severity
        );
    }
    Ok(())
}

/// Checks an SNI name: a DNS host name (or an IP address, which is sent as
/// no SNI and matched against IP SANs).
fn check_sni(sni: &str) -> Result<(), String> {
    acme_core::check_host(sni).map_err(|m| format!("SNI name `{sni}` is invalid: {m}"))
}

fn read_target_list(path: &std::path::Path, sni: Option<&str>) -> anyhow::Result<Vec<ScanTarget>> {
    let text = acme_core::read_text(path, acme_core::FileKind::List)
        .with_context(|| format!("cannot read endpoint list {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let addr = words.next().unwrap_or("");
        let line_sni = words.next().or(sni);
        let t = line_sni
            .map_or(Ok(()), check_sni)
            .and_then(|()| ScanTarget::parse(addr, line_sni).map_err(|e| e.to_string()))
            .map_err(|m| {
                anyhow::anyhow!(
                    "{}:{}: {m}; expected `host[:port] [sni]`",
                    path.display(),
                    i + 1
                )
            })?;
        out.push(t);
    }
    Ok(out)
}

pub(crate) async fn scan(ctx: &Ctx, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let th = thresholds(args.warning, args.critical)?;
    // A name that cannot be a TLS server name is the caller's mistake, not a
    // finding about the endpoint.
    if let Some(sni) = &args.sni {
        check_sni(sni).map_err(|m| UsageError(format!("--sni: {m}")))?;
    }
    let mut targets = Vec::new();
    for t in &args.targets {
        targets.push(
            ScanTarget::parse(t, args.sni.as_deref()).map_err(|e| UsageError(e.to_string()))?,
        );
    }
    if let Some(f) = &args.from_file {
        targets.extend(read_target_list(f, args.sni.as_deref())?);
    }
    anyhow::ensure!(!targets.is_empty(), "no endpoints to scan");
    let trust = Trust {
        system_roots: !args.no_system_roots,
        bundles: args.ca_files,
    };
    let scan = report::scan(
        &targets,
        &trust,
        args.timeout,
        th,
        args.concurrency,
        OffsetDateTime::now_utc(),
    )
    .await?;
    if args.json {
        print_json(&scan)?;
        return Ok(exit(scan.severity));
    }
    let now = scan.generated_at;
    let mut t = Table::new(&[
        "ENDPOINT", "SNI", "STATUS", "TRUST", "NAME", "EXPIRES", "LEFT", "NOTES",
    ]);
    for e in &scan.endpoints {
        let (trust, name, expires, left) = match &e.certificate {
            Some(c) => (
                if c.trusted { "trusted" } else { "untrusted" },
                if acme_core::inspect::matches_name(&c.leaf, &e.sni) {
                    "ok"
                } else {
                    "mismatch"
                },
                // When the chain stops working: an intermediate sent that
                // expires first counts (as in the report and Prometheus).
                c.chain_not_after().date().to_string(),
                human_signed(c.chain_not_after() - now),
            ),
            None => ("-", "-", "-".into(), "-".into()),
        };
        let notes: Vec<&str> = e.findings.iter().map(|f| f.message.as_str()).collect();
        t.row(vec![
            e.address.clone(),
            e.sni.clone(),
            e.severity.to_string(),
            trust.into(),
            name.into(),
            expires,
            left,
            notes.join("; "),
        ]);
    }
    let sev: Vec<Severity> = scan.endpoints.iter().map(|e| e.severity).collect();
    t.print(|row, col, text| match col {
        2 => paint(ctx.color, color_of(sev[row]), text),
        _ => text.to_string(),
    })?;
    Ok(exit(scan.severity))
}

pub(crate) fn inspect(ctx: &Ctx, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let th = thresholds(args.warning, args.critical)?;
    let anchors = Anchors::from_trust(&Trust {
        system_roots: true,
        bundles: args.ca_files,
    })
    .context("cannot load trust anchors")?;
    let now = OffsetDateTime::now_utc();
    let files = acme_core::inspect::inspect_paths(&args.paths, &anchors);
    let report = report::assess_files(files, th, now);
    if args.json {
        print_json(&report)?;
        return Ok(exit(report.severity));
    }
    let mut t = Table::new(&[
        "FILE", "CERTS", "SUBJECT", "EXPIRES", "LEFT", "KEY", "STATUS", "NOTES",
    ]);
    for f in &report.files {
        // The leaf (or the first certificate when there is none).
        let first = f.file.certificates.get(f.file.leaf.unwrap_or(0));
        let key = match (&f.file.key, f.file.keys) {
            (Some(k), _) if k.matches => "matches".to_string(),
            (Some(_), _) => "MISMATCH".to_string(),
            (None, n) if n > 0 => format!("{n} key(s)"),
            (None, _) => "-".to_string(),
        };
        let notes: Vec<&str> = f.findings.iter().map(|x| x.message.as_str()).collect();
        t.row(vec![
            f.file.path.display().to_string(),
            f.file.certificates.len().to_string(),
            first
                .map(|c| match c.dns_names.first() {
                    Some(n) if c.dns_names.len() > 1 => {
                        format!("{n} (+{})", c.dns_names.len() - 1)
                    }
                    Some(n) => n.clone(),
                    None => c.subject.clone(),
                })
                .unwrap_or_else(|| "-".into()),
            first
                .map(|c| c.not_after.date().to_string())
                .unwrap_or_else(|| "-".into()),
            first
                .map(|c| human_signed(c.not_after - now))
                .unwrap_or_else(|| "-".into()),
            key,
            f.severity.to_string(),
            notes.join("; "),
        ]);
    }
    let sev: Vec<Severity> = report.files.iter().map(|f| f.severity).collect();
    t.print(|row, col, text| match col {
        6 => paint(ctx.color, color_of(sev[row]), text),
        _ => text.to_string(),
    })?;
    Ok(exit(report.severity))
}
