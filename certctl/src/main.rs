//! `certctl`: the command-line face of `acme-core`. Parses arguments, sets up
//! logging and the runtime, calls the library, prints results, and maps them
//! to the documented exit codes. It holds no logic of its own.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod cmd;
mod exit;
mod output;

/// Certificate lifecycle for nginx edge fleets: ACME DNS-01 issuance, atomic
/// deployment over SSH, and fleet expiry reports.
#[derive(Debug, Parser)]
#[command(
    name = "certctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 ok; 1 warning; 2 critical or an item failed; 3 could not run; 64 usage error."
)]
pub(crate) struct Cli {
    /// The inventory file.
    #[arg(long, short = 'c', global = true, env = "CERTCTL_CONFIG", default_value = acme_core::inventory::DEFAULT_PATH)]
    config: PathBuf,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Colour in tables: auto (on a TTY unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = output::ColorChoice::Auto)]
    color: output::ColorChoice,
    /// How long to wait for another certctl run holding the store lock.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    lock_wait: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Obtain certificates now (whether due or not).
    Issue(cmd::issue::IssueArgs),
    /// Renew the certificates that are due.
    Renew(cmd::issue::RenewArgs),
    /// List the store: versions, expiry, renewal due dates, deployments.
    List(cmd::issue::ListArgs),
    /// Check the inventory, its secrets and files offline; with --online also
    /// the CA, DNS and every node.
    Check(cmd::issue::CheckArgs),
    /// Deploy stored certificates to their nodes.
    Deploy(cmd::deploy::DeployArgs),
    /// Put the previous version back on nodes.
    Rollback(cmd::deploy::RollbackArgs),
    /// Fleet expiry report: store, deployed and served certificates.
    Report(cmd::report::ReportArgs),
    /// Probe TLS endpoints outside the inventory.
    Scan(cmd::report::ScanArgs),
    /// Inspect PEM files on disk.
    Inspect(cmd::report::InspectArgs),
    /// Renew what is due, deploy what nodes lack, then report (for timers).
    Run(cmd::run::RunArgs),
    /// Revoke a stored version at the CA (refused while nodes serve it).
    #[command(disable_version_flag = true)]
    Revoke(cmd::revoke::RevokeArgs),
    /// After a key compromise: issue with fresh keys, deploy, then revoke
    /// the old versions once every node is verified on the new one.
    Rotate(cmd::revoke::RotateArgs),
    /// The ACME account: show it, or change its key.
    Account(cmd::account::AccountArgs),
    /// Print (or --publish once) the dns-persist-01 TXT records: one per
    /// domain, naming this CA and this ACME account.
    PersistRecord(cmd::persist::PersistRecordArgs),
    /// The store itself: the etcd data key, export, import, re-key.
    Store(cmd::store::StoreArgs),
    /// Print systemd service and timer units.
    Systemd(cmd::run::SystemdArgs),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages into a directory.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

/// What every command gets: global options, resolved.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) config: PathBuf,
    pub(crate) quiet: bool,
    pub(crate) color: bool,
    pub(crate) stdout_tty: bool,
    pub(crate) lock_wait: std::time::Duration,
}

impl Ctx {
    /// Loads and validates the inventory.
    pub(crate) fn inventory(&self) -> anyhow::Result<acme_core::Inventory> {
        acme_core::Inventory::load(&self.config).map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "invalid inventory (fix it, then check with `certctl check --config {}`)",
                self.config.display()
            ))
        })
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, acme_core::inventory::DurationError> {
    acme_core::inventory::parse_duration(s)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    // The message quotes the argument as given: escaped, line by line.
                    let text = e.render().to_string();
                    for line in text.lines() {
                        eprintln!("{}", output::escape(line));
                    }
                    ExitCode::from(exit::USAGE)
                }
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("certctl: error: {}", output::error_text(&e));
            if e.chain().any(|c| c.is::<exit::UsageError>()) {
                return ExitCode::from(exit::USAGE);
            }
            ExitCode::from(exit::ERROR)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging(cli.verbose, cli.quiet);
    acme_core::install_crypto_provider();
    let stdout_tty = std::io::stdout().is_terminal();
    let ctx = Ctx {
        config: cli.config,
        quiet: cli.quiet,
        color: cli.color.enabled(stdout_tty),
        stdout_tty,
        lock_wait: cli.lock_wait,
    };
    match cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "certctl", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            write_man(&dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Systemd(args) => return cmd::run::systemd(&ctx, args),
        Command::Inspect(args) => return cmd::report::inspect(&ctx, args),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Issue(a) => cmd::issue::issue(&ctx, a).await,
            Command::Renew(a) => cmd::issue::renew(&ctx, a).await,
            Command::List(a) => cmd::issue::list(&ctx, a).await,
            Command::Deploy(a) => cmd::deploy::deploy(&ctx, a).await,
            Command::Rollback(a) => cmd::deploy::rollback(&ctx, a).await,
            Command::Report(a) => cmd::report::report(&ctx, a).await,
            Command::Scan(a) => cmd::report::scan(&ctx, a).await,
            Command::Run(a) => cmd::run::run(&ctx, a).await,
            Command::Check(a) => cmd::issue::check(&ctx, a).await,
            Command::Revoke(a) => cmd::revoke::revoke(&ctx, a).await,
            Command::Rotate(a) => cmd::revoke::rotate(&ctx, a).await,
            Command::Account(a) => cmd::account::account(&ctx, a).await,
            Command::PersistRecord(a) => cmd::persist::persist_record(&ctx, a).await,
            Command::Store(a) => cmd::store::store(&ctx, a).await,
            Command::Systemd(_)
            | Command::Inspect(_)
            | Command::Completions { .. }
            | Command::Man { .. } => unreachable!("handled before the runtime starts"),
        }
    })
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,acme_core=info,certctl=info",
        (false, 2) => "info,acme_core=debug,certctl=debug",
        (false, _) => "debug,acme_core=trace,certctl=trace",
    };
    let filter = EnvFilter::try_from_env("CERTCTL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // journald keeps plain lines readable; no ANSI unless stderr is a TTY.
    let _ = tracing_subscriber::fmt()
        .fmt_fields(log_fields())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .without_time()
        .try_init();
}

/// Log fields cleaned like every other human line ([`output::clean`]): a
/// node's stderr or a CA's error text in a log field cannot start a fake log
/// line (LF, CR), reorder text (bidi) or drive the terminal.
fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let v = output::clean(&format!("{value:?}"));
        if field.name() == "message" {
            write!(w, "{v}")
        } else {
            write!(w, "{field}={v}")
        }
    })
    .delimited(" ")
}

fn write_man(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut pages = vec![(String::from("certctl"), cmd.clone())];
    for sub in cmd.get_subcommands() {
        pages.push((format!("certctl-{}", sub.get_name()), sub.clone()));
    }
    for (name, page) in pages {
        let page = page.name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn log_lines_escape_untrusted_fields_and_stay_one_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(log_fields())
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(sub, || {
            let stderr = "nginx: ok\nWARN fake line\x1b[2J\u{202e}";
            tracing::warn!(node = "n1", stderr = %stderr, "reload said {}", "a\rb");
        });
        let text = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            !text.contains('\x1b') && !text.contains('\u{202e}') && !text.contains('\r'),
            "{text:?}"
        );
        assert!(
            text.contains(r"stderr=nginx: ok\nWARN fake line\x1b[2J\u{202e}"),
            "{text:?}"
        );
        assert!(text.contains(r"reload said a\rb"), "{text:?}");
    }
}
