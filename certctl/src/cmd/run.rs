//! `certctl run` (the timer's job) and `certctl systemd`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::Ctx;

/// Arguments of `certctl run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Sleep a random time up to this long first, so many controllers spread out.
    #[arg(long, value_parser = crate::parse_duration, value_name = "DURATION")]
    random_delay: Option<std::time::Duration>,
    /// Also write the report as a Prometheus textfile (atomically).
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
    /// Print the final report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Do not run the inventory's notify hook.
    #[arg(long)]
    no_notify: bool,
    /// Stop the rollout once more than this many nodes failed.
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
}

/// Arguments of `certctl systemd`.
#[derive(Debug, clap::Args)]
pub(crate) struct SystemdArgs {
    /// Path of the certctl binary in the units.
    #[arg(long, default_value = "/usr/local/bin/certctl")]
    binary: PathBuf,
    /// How often the timer fires (systemd OnCalendar syntax).
    #[arg(long, default_value = "*-*-* 00/6:00:00")]
    on_calendar: String,
    /// Random delay before each run, so a fleet of controllers spreads out.
    #[arg(long, default_value = "1h")]
    randomized_delay: String,
    /// Write certctl.service and certctl.timer into this directory instead of printing them.
    #[arg(long)]
    output_dir: Option<PathBuf>,
}

/// Renew what is due, deploy what nodes lack, then report: one exit code, the
/// worst of the three (an item that failed counts as critical).
pub(crate) async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<ExitCode> {
    use acme_core::acme::{RenewOptions, RenewResult};
    use acme_core::deploy::{DeployOptions, NoProgress, Outcome};

    let inv = ctx.inventory()?;
    if let Some(max) = args.random_delay.filter(|d| !d.is_zero()) {
        let wait =
            std::time::Duration::from_millis(rand::random_range(0..max.as_millis().max(1) as u64));
        tracing::info!(?wait, "random delay before the run");
        tokio::time::sleep(wait).await;
    }
    let mut code = 0u8;
    {
        let (store, _lock) = super::issue::open_store_locked(ctx, &inv)?;

        // 1. Renew what is due.
        let outcomes = acme_core::acme::renew(&inv, &store, &RenewOptions::default()).await?;
        for o in &outcomes {
            match &o.result {
                RenewResult::Issued { release, reason } => eprintln!(
                    "certctl: renew: {} issued {} ({reason})",
                    o.name, release.version
                ),
                RenewResult::Failed { error, .. } => {
                    eprintln!(
                        "certctl: renew: {} FAILED: {}",
                        o.name,
                        super::issue::error_line(error)
                    )
                }
                RenewResult::Deferred { until } => eprintln!(
                    "certctl: renew: {} deferred: the CA asked to wait until {until}",
                    o.name
                ),
                _ => {}
            }
        }
        super::issue::print_damage(&outcomes, "renew: ");
        code = code.max(super::issue::outcome_code(&outcomes));

        // 2. Deploy what nodes lack (nodes already serving the version are skipped).
        let opts = DeployOptions {
            max_failures: args.max_failures,
            ..Default::default()
        };
        match acme_core::deploy::deploy(&inv, &store, &opts, &NoProgress).await {
            Ok(results) => {
                for r in &results {
                    match &r.outcome {
                        Outcome::Deployed { to, .. } => {
                            eprintln!(
                                "certctl: deploy: {} on {}: deployed {to}",
                                r.certificate, r.node
                            )
                        }
                        Outcome::Unchanged { .. } | Outcome::Planned { .. } => {}
                        other if r.is_failure() => eprintln!(
                            "certctl: deploy: {} on {}: {}",
                            r.certificate,
                            r.node,
                            serde_json::to_string(other).unwrap_or_default()
                        ),
                        _ => {}
                    }
                }
                if results.iter().any(|r| r.is_failure()) {
                    code = code.max(crate::exit::CRITICAL);
                }
            }
            Err(e) => {
                eprintln!("certctl: deploy: {:#}", anyhow::Error::new(e));
                code = code.max(crate::exit::CRITICAL);
            }
        }
    }

    // 3. Report (read-only; the lock is released).
    let store = acme_core::Store::open_existing(&inv.store).ok();
    let out = super::report::ReportOutput {
        json: args.json,
        prometheus: args.prometheus,
        notify: !args.no_notify,
    };
    let severity = super::report::emit(
        ctx,
        &inv,
        store.as_ref(),
        &acme_core::report::ReportOptions::default(),
        &out,
    )
    .await?;
    code = code.max(super::report::exit_code(severity));
    Ok(ExitCode::from(code))
}

/// The service and timer units, hardened; `store` must stay writable.
fn units(
    args: &SystemdArgs,
    config: &std::path::Path,
    store: &std::path::Path,
) -> (String, String) {
    let service = format!(
        "\
# certctl.service — written by `certctl systemd`
[Unit]
Description=certctl: renew due certificates, deploy them to the edge nodes, report expiry
Documentation=man:certctl(1)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={binary} --config {config} run
# Logs go to the journal as plain lines; -v for more detail.
SyslogIdentifier=certctl
UMask=0077
# Hardening: the store is the only place certctl writes to.
ProtectSystem=strict
ReadWritePaths={store}
PrivateTmp=yes
PrivateDevices=yes
ProtectHome=read-only
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
CapabilityBoundingSet=
# A stuck run must not block the next timer forever.
TimeoutStartSec=1h
",
        binary = args.binary.display(),
        config = config.display(),
        store = store.display(),
    );
    let timer = format!(
        "\
# certctl.timer — written by `certctl systemd`
[Unit]
Description=Run certctl regularly

[Timer]
OnCalendar={cal}
RandomizedDelaySec={delay}
Persistent=true

[Install]
WantedBy=timers.target
",
        cal = args.on_calendar,
        delay = args.randomized_delay,
    );
    (service, timer)
}

pub(crate) fn systemd(ctx: &Ctx, args: SystemdArgs) -> anyhow::Result<ExitCode> {
    // The store path comes from the inventory when it is readable.
    let store = acme_core::Inventory::load(&ctx.config)
        .map(|inv| inv.store)
        .unwrap_or_else(|_| PathBuf::from("/var/lib/certctl"));
    let config = if ctx.config.is_absolute() {
        ctx.config.clone()
    } else {
        std::env::current_dir()?.join(&ctx.config)
    };
    let (service, timer) = units(&args, &config, &store);
    match &args.output_dir {
        Some(dir) => {
            for (name, text) in [("certctl.service", &service), ("certctl.timer", &timer)] {
                let path = dir.join(name);
                acme_core::store::write_atomic(&path, text.as_bytes(), 0o644)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            println!("then: systemctl daemon-reload && systemctl enable --now certctl.timer");
        }
        None => print!("{service}\n{timer}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keeps_the_store_writable_and_is_hardened() {
        let args = SystemdArgs {
            binary: "/usr/bin/certctl".into(),
            on_calendar: "hourly".into(),
            randomized_delay: "10m".into(),
            output_dir: None,
        };
        let (service, timer) = units(&args, "/etc/certctl/c.toml".as_ref(), "/srv/certs".as_ref());
        assert!(service.contains("ExecStart=/usr/bin/certctl --config /etc/certctl/c.toml run"));
        assert!(service.contains("ReadWritePaths=/srv/certs"));
        for line in [
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
        ] {
            assert!(service.contains(line), "{line}");
        }
        assert!(timer.contains("OnCalendar=hourly") && timer.contains("RandomizedDelaySec=10m"));
    }
}
