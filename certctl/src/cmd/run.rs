//! `certctl run` (the timer's job) and `certctl systemd`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::Ctx;

/// Arguments of `certctl run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {}

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

pub(crate) async fn run(_ctx: &Ctx, _args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("run is not implemented yet")
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
