//! `certctl run` (the timer's job) and `certctl systemd`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::exit::UsageError;
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
#[derive(Debug, Clone, clap::Args)]
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
    /// Have the service write the Prometheus textfile FILE (`run --prometheus`;
    /// its directory becomes writable for the service too).
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
}

/// Renew what is due, deploy what nodes lack, then report: one exit code, the
/// worst of the three (an item that failed counts as critical). Each step's
/// start and end is recorded in the store's health record; a failed renewal
/// or deployment is sent to `[report] notify` as a failure notice.
pub(crate) async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<ExitCode> {
    use acme_core::acme::{RenewOptions, RenewResult};
    use acme_core::deploy::{DeployOptions, NoProgress, Outcome};
    use acme_core::report::Step;

    let inv = ctx.inventory()?;
    if let Some(max) = args.random_delay.filter(|d| !d.is_zero()) {
        let wait =
            std::time::Duration::from_millis(rand::random_range(0..max.as_millis().max(1) as u64));
        tracing::info!(?wait, "random delay before the run");
        tokio::time::sleep(wait).await;
    }
    let run_id = super::health::run_id();
    let mut code = 0u8;
    let mut failures = Vec::new();
    let (store, lock) = super::issue::open_store_locked(ctx, &inv)?;
    let mut rec = super::health::Recorder::for_store(&store);
    rec.started(Step::Run);

    // 1. Renew what is due.
    rec.started(Step::Renew);
    let before = failures.len();
    match acme_core::acme::renew(&inv, &store, &RenewOptions::default()).await {
        Ok(outcomes) => {
            for o in &outcomes {
                match &o.result {
                    RenewResult::Issued { release, reason } => eprintln!(
                        "certctl: renew: {} issued {} ({reason})",
                        crate::output::clean(&o.name),
                        release.version
                    ),
                    RenewResult::Failed { error, .. } => {
                        eprintln!(
                            "certctl: renew: {} FAILED: {}",
                            o.name,
                            crate::output::clean(&super::issue::error_line(error))
                        );
                        failures.push(super::health::failure(
                            Step::Renew,
                            Some(&o.name),
                            None,
                            error.kind(),
                            error,
                        ));
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
        }
        Err(e) => {
            failures.push(super::health::failure(
                Step::Renew,
                None,
                None,
                e.kind(),
                &e,
            ));
            eprintln!(
                "certctl: renew: {}",
                crate::output::error_text(&anyhow::Error::new(e))
            );
            code = code.max(crate::exit::ERROR);
        }
    }
    rec.ended(Step::Renew, failures.len() == before);
    // A run that lost the store lock (etcd lease) deploys nothing: exit 3.
    store.check_held()?;

    // 2. Deploy what nodes lack (nodes already serving the version are skipped).
    rec.started(Step::Deploy);
    let before = failures.len();
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
                    Outcome::Failed { error: e } | Outcome::RolledBack { reason: e, .. } => {
                        eprintln!(
                            "certctl: deploy: {} on {}: {}",
                            r.certificate,
                            r.node,
                            serde_json::to_string(&r.outcome).unwrap_or_default()
                        );
                        failures.push(super::health::failure(
                            Step::Deploy,
                            Some(&r.certificate),
                            Some(&r.node),
                            e.kind(),
                            e,
                        ));
                    }
                    _ => {}
                }
            }
            if results.iter().any(|r| r.is_failure()) {
                code = code.max(crate::exit::CRITICAL);
            }
        }
        Err(e) => {
            failures.push(super::health::failure(
                Step::Deploy,
                None,
                None,
                e.kind(),
                &e,
            ));
            eprintln!(
                "certctl: deploy: {}",
                crate::output::error_text(&anyhow::Error::new(e))
            );
            code = code.max(crate::exit::CRITICAL);
        }
    }
    rec.ended(Step::Deploy, failures.len() == before);
    store.check_held()?;
    drop(lock);

    // 3. Report (read-only; the lock is released).
    rec.started(Step::Report);
    let store = acme_core::Store::open_existing(&inv.store).ok();
    let out = super::report::ReportOutput {
        json: args.json,
        html: None,
        notify: !args.no_notify,
    };
    let emitted = super::report::emit(
        ctx,
        &inv,
        store.as_ref(),
        &acme_core::report::ReportOptions::default(),
        &out,
    )
    .await;
    rec.ended(Step::Report, emitted.is_ok());
    let (report, report_error) = match emitted {
        Ok(e) => {
            if e.notify_failed {
                rec.notify_failed();
            }
            code = code.max(super::report::exit_code(e.report.severity));
            (Some(e.report), None)
        }
        // Returned last, as before: `main` prints it (a broken pipe is success).
        Err(e) => (None, Some(e)),
    };
    rec.ended(Step::Run, failures.is_empty() && report.is_some());

    // A failed renewal or deployment is told, whatever the report says.
    if !failures.is_empty() && !args.no_notify {
        super::health::notify_failures(&inv, &mut rec, run_id, failures).await;
    }
    if let Some(path) = &args.prometheus {
        rec.write_textfile(path, report.as_ref(), &inv)?;
    }
    match report_error {
        Some(e) => Err(e),
        None => Ok(ExitCode::from(code)),
    }
}

/// One word of a unit file value, quoted for systemd (systemd.syntax(7),
/// systemd.service(5) "Command lines"): wrapped in double quotes with `\\`
/// and `"` escaped when it holds whitespace, a quote, a backslash or `;`;
/// `%` doubled (specifiers are expanded everywhere); in the arguments of a
/// command line (`exec`) `$` doubled too (environment variables are
/// expanded there, but not in the command's own path).
/// Values must hold no control character (checked before).
fn systemd_quote(s: &str, exec: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' if exec => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// Refuses a value that would break a unit file: a newline or any other
/// control character.
fn check_unit_value(what: &str, s: &str) -> Result<(), UsageError> {
    match s.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(UsageError(format!(
            "{what} `{}` holds a control character ({}); unit files take one value per line",
            crate::output::clean(s),
            crate::output::clean(&c.to_string())
        ))),
    }
}

/// A systemd time span (systemd.time(7)): numbers each followed by an
/// optional unit, e.g. `1h`, `30min`, `1h 30min`, `90` (seconds).
fn check_timespan(s: &str) -> Result<(), String> {
    const UNITS: [&str; 34] = [
        "usec", "us", "µs", "msec", "ms", "seconds", "second", "sec", "s", "minutes", "minute",
        "min", "m", "hours", "hour", "hr", "h", "days", "day", "d", "weeks", "week", "w", "months",
        "month", "M", "years", "year", "y", "nsec", "ns", "μs", "secs", "mins",
    ];
    let bad = || format!("`{s}` is not a systemd time span (e.g. `1h`, `30min`, `1h 30min`)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    while !rest.is_empty() {
        let num = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (n, tail) = rest.split_at(num);
        if n.is_empty() || n.parse::<f64>().is_err() {
            return Err(bad());
        }
        let tail = tail.trim_start();
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_len);
        if !unit.is_empty() && !UNITS.contains(&unit) {
            return Err(bad());
        }
        rest = after.trim_start();
    }
    Ok(())
}

/// A structural check of a systemd calendar expression (systemd.time(7)):
/// a shorthand (`daily`, `hourly`, ...), or `[weekdays] [date] [time]
/// [timezone]` with at least a date or a time, each field made of numbers,
/// `*`, ranges (`..`), lists (`,`) and repetitions (`/`), and hours, minutes
/// and seconds in range. `systemd-analyze calendar` is the full judge (the
/// lab test compares); this catches typos without needing systemd.
fn check_on_calendar(s: &str) -> Result<(), String> {
    const SHORTHANDS: [&str; 9] = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
    ];
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let bad = |why: &str| {
        format!("`{s}` is not a systemd calendar expression ({why}; e.g. `daily`, `*-*-* 00/6:00:00`, `Mon..Fri 02:30`)")
    };
    let t = s.trim();
    if SHORTHANDS.contains(&t) {
        return Ok(());
    }
    let mut words: Vec<&str> = t.split_whitespace().collect();
    if words.is_empty() {
        return Err(bad("it is empty"));
    }
    let is_day = |w: &str| {
        let l = w.to_ascii_lowercase();
        DAYS.iter()
            .any(|d| l.len() >= 3 && (l == *d || (l.starts_with(d) && l.ends_with("day"))))
    };
    if words[0].starts_with(|c: char| c.is_ascii_alphabetic()) && !words[0].contains(':') {
        let ok = words[0].split(',').flat_map(|p| p.split("..")).all(is_day);
        if ok {
            words.remove(0);
        }
    }
    // A trailing time zone (`UTC`, `Europe/Berlin`).
    if words.len() > 1 {
        if let Some(last) = words.last() {
            if last.starts_with(|c: char| c.is_ascii_alphabetic())
                && last
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '-'))
            {
                words.pop();
            }
        }
    }
    if words.is_empty() {
        return Ok(()); // weekdays alone: every such day at midnight
    }
    if words.len() > 2 {
        return Err(bad("too many fields"));
    }
    let atoms = |field: &str, allowed: &dyn Fn(char) -> bool| field.chars().all(allowed);
    let mut have_time = false;
    for (i, w) in words.iter().enumerate() {
        if w.contains(':') {
            if i + 1 != words.len() || have_time {
                return Err(bad("the time must come last"));
            }
            have_time = true;
            if !atoms(w, &|c| {
                c.is_ascii_digit() || matches!(c, '*' | ',' | '.' | '/' | ':')
            }) {
                return Err(bad("a time holds digits, `*`, `,`, `..`, `/` and `:`"));
            }
            let parts: Vec<&str> = w.split(':').collect();
            if !(2..=3).contains(&parts.len()) {
                return Err(bad("a time is HH:MM or HH:MM:SS"));
            }
            for (p, max) in parts.iter().zip([23u32, 59, 59]) {
                if p.is_empty() {
                    return Err(bad("an empty time field"));
                }
                for n in p.split([',', '/']).flat_map(|x| x.split("..")) {
                    let whole = n.split('.').next().unwrap_or("");
                    if whole.is_empty() && n != "*" && !n.is_empty() {
                        return Err(bad("a malformed number"));
                    }
                    if let Ok(v) = whole.parse::<u32>() {
                        if v > max {
                            return Err(bad(&format!("{v} is out of range (at most {max})")));
                        }
                    }
                }
            }
        } else if w.contains('-') {
            if i != 0 {
                return Err(bad("the date must come before the time"));
            }
            if !atoms(w, &|c| {
                c.is_ascii_digit() || matches!(c, '*' | ',' | '.' | '/' | '-' | '~')
            }) {
                return Err(bad("a date holds digits, `*`, `,`, `..`, `/`, `~` and `-`"));
            }
            if w.split(['-', '~']).any(str::is_empty) {
                return Err(bad("an empty date field"));
            }
        } else {
            return Err(bad(&format!(
                "`{w}` is neither a weekday, a date nor a time"
            )));
        }
    }
    Ok(())
}

/// Checks the arguments of `certctl systemd` (a mistake is a usage error).
fn check_systemd_args(
    args: &SystemdArgs,
    config: &std::path::Path,
    store: &std::path::Path,
) -> Result<(), UsageError> {
    let text = |p: &std::path::Path, what: &str| -> Result<String, UsageError> {
        let s = p.to_str().ok_or_else(|| {
            UsageError(format!(
                "{what} {} is not valid UTF-8, which a unit file cannot hold",
                crate::output::clean(&p.to_string_lossy())
            ))
        })?;
        check_unit_value(what, s)?;
        if !p.is_absolute() {
            return Err(UsageError(format!(
                "{what} `{}` must be an absolute path in a unit file",
                crate::output::clean(s)
            )));
        }
        Ok(s.to_string())
    };
    text(&args.binary, "--binary")?;
    text(config, "--config")?;
    text(store, "the inventory's store")?;
    if let Some(p) = &args.prometheus {
        text(p, "--prometheus")?;
        if p.parent().is_none_or(|d| d == std::path::Path::new("/")) || p.file_name().is_none() {
            return Err(UsageError(format!(
                "--prometheus `{}` must be a file in a directory other than /",
                crate::output::clean(&p.to_string_lossy())
            )));
        }
    }
    check_unit_value("--on-calendar", &args.on_calendar)?;
    check_unit_value("--randomized-delay", &args.randomized_delay)?;
    check_on_calendar(&args.on_calendar)
        .map_err(|m| UsageError(format!("--on-calendar: {}", crate::output::clean(&m))))?;
    check_timespan(&args.randomized_delay)
        .map_err(|m| UsageError(format!("--randomized-delay: {}", crate::output::clean(&m))))?;
    Ok(())
}

/// The service and timer units, hardened; `store` must stay writable.
/// Values are quoted for systemd ([`systemd_quote`]); call
/// [`check_systemd_args`] first.
fn units(
    args: &SystemdArgs,
    config: &std::path::Path,
    store: &std::path::Path,
) -> (String, String) {
    let service =
        format!(
            "\
# certctl.service — written by `certctl systemd`
[Unit]
Description=certctl: renew due certificates, deploy them to the edge nodes, report expiry
Documentation=man:certctl(1)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={binary} --config {config} run{textfile}
# Logs go to the journal as plain lines; -v for more detail.
SyslogIdentifier=certctl
UMask=0077
# Hardening: the store is the only place certctl writes to.
ProtectSystem=strict
ReadWritePaths={store}{textfile_dir}
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
            // The command itself is not subject to `$` expansion, its arguments are.
            binary = systemd_quote(&args.binary.to_string_lossy(), false),
            config = systemd_quote(&config.to_string_lossy(), true),
            store = systemd_quote(&store.to_string_lossy(), false),
            textfile = args.prometheus.as_ref().map_or(String::new(), |p| format!(
                " --prometheus {}",
                systemd_quote(&p.to_string_lossy(), true)
            )),
            textfile_dir = args.prometheus.as_ref().and_then(|p| p.parent()).map_or(
                String::new(),
                |d| format!(" {}", systemd_quote(&d.to_string_lossy(), false))
            ),
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
        cal = args.on_calendar.trim().replace('%', "%%"),
        delay = args.randomized_delay.trim(),
    );
    (service, timer)
}

pub(crate) fn systemd(ctx: &Ctx, args: SystemdArgs) -> anyhow::Result<ExitCode> {
    // The units run `certctl --config <file>`: that file must exist, and
    // its store is the one path the service may write.
    let config = if ctx.config.is_absolute() {
        ctx.config.clone()
    } else {
        std::env::current_dir()?.join(&ctx.config)
    };
    if !config.is_file() {
        return Err(UsageError(format!(
            "the inventory {} does not exist (or is not a file); the units would run with it: \
             pass the one the timer should use with -c/--config",
            crate::output::clean(&config.to_string_lossy())
        ))
        .into());
    }
    // The etcd store writes nothing locally: the units' one writable path is
    // then /tmp, which `PrivateTmp=yes` makes the unit's own.
    let store = match ctx.inventory()?.store.dir() {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("/tmp"),
    };
    let store = if store.is_absolute() {
        store
    } else {
        std::env::current_dir()?.join(store)
    };
    check_systemd_args(&args, &config, &store)?;
    let (service, timer) = units(&args, &config, &store);
    match &args.output_dir {
        Some(dir) => {
            for name in ["certctl.service", "certctl.timer"] {
                may_replace(&dir.join(name))?;
            }
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

/// A unit file certctl may write at `path`: none there yet, or one that
/// `certctl systemd` wrote (its first line says so). Anything else is the
/// user's, and is left alone.
fn may_replace(path: &std::path::Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    let ours = meta.is_file()
        && std::fs::read(path).is_ok_and(|b| {
            b.split(|c| *c == b'\n')
                .next()
                .is_some_and(|l| l.ends_with("written by `certctl systemd`".as_bytes()))
        });
    if ours {
        return Ok(());
    }
    Err(crate::exit::UsageError(format!(
        "{} exists and was not written by `certctl systemd`, so certctl leaves it alone: \
         move it away, or run `certctl systemd` without --output-dir and install the units yourself",
        crate::output::clean(&path.to_string_lossy())
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_file_certctl_did_not_write_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("certctl.service");
        assert!(may_replace(&p).is_ok(), "nothing there yet");
        std::fs::write(
            &p,
            "# certctl.service — written by `certctl systemd`\n[Unit]\n",
        )
        .expect("w");
        assert!(may_replace(&p).is_ok(), "certctl's own");
        std::fs::write(&p, "[Unit]\nDescription=mine\n").expect("w");
        let e = may_replace(&p).expect_err("the user's").to_string();
        assert!(e.contains("leaves it alone"), "{e}");
        std::fs::remove_file(&p).expect("rm");
        std::os::unix::fs::symlink("/etc/hostname", &p).expect("link");
        assert!(may_replace(&p).is_err(), "a link is not replaced");
    }

    #[test]
    fn service_keeps_the_store_writable_and_is_hardened() {
        let args = SystemdArgs {
            binary: "/usr/bin/certctl".into(),
            on_calendar: "hourly".into(),
            randomized_delay: "10m".into(),
            output_dir: None,
            prometheus: None,
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
        assert!(!service.contains("--prometheus"));
    }

    #[test]
    fn a_textfile_is_written_by_the_service_and_its_directory_writable() {
        let args = SystemdArgs {
            binary: "/usr/bin/certctl".into(),
            on_calendar: "daily".into(),
            randomized_delay: "1h".into(),
            output_dir: None,
            prometheus: Some("/var/lib/prometheus/node-exporter/certctl.prom".into()),
        };
        let c = std::path::Path::new("/etc/certctl/c.toml");
        let st = std::path::Path::new("/var/lib/certctl");
        assert!(check_systemd_args(&args, c, st).is_ok());
        let (service, _) = units(&args, c, st);
        assert!(
            service.contains(
                "ExecStart=/usr/bin/certctl --config /etc/certctl/c.toml run --prometheus /var/lib/prometheus/node-exporter/certctl.prom\n"
            ),
            "{service}"
        );
        assert!(
            service.contains("ReadWritePaths=/var/lib/certctl /var/lib/prometheus/node-exporter\n"),
            "{service}"
        );
        for bad in ["certctl.prom", "/certctl.prom", "/var/lib/x\n.prom"] {
            let a = SystemdArgs {
                prometheus: Some(bad.into()),
                ..args.clone()
            };
            assert!(check_systemd_args(&a, c, st).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unit_values_are_quoted_for_systemd() {
        assert_eq!(
            systemd_quote("/etc/certctl/c.toml", true),
            "/etc/certctl/c.toml"
        );
        assert_eq!(
            systemd_quote("/srv/my certs/100%/c.toml", true),
            "\"/srv/my certs/100%%/c.toml\""
        );
        assert_eq!(systemd_quote("/a/$HOME/%i", true), "/a/$$HOME/%%i");
        assert_eq!(systemd_quote("/a/$HOME", false), "/a/$HOME");
        assert_eq!(systemd_quote("/a\"b\\c", true), "\"/a\\\"b\\\\c\"");
        assert_eq!(systemd_quote("/x;y", true), "\"/x;y\"");
        let args = SystemdArgs {
            binary: "/usr/bin/certctl".into(),
            on_calendar: "daily".into(),
            randomized_delay: "1h".into(),
            output_dir: None,
            prometheus: None,
        };
        let (service, _) = units(
            &args,
            "/etc/my certs/%h.toml".as_ref(),
            "/srv/st 1".as_ref(),
        );
        assert!(
            service.contains("ExecStart=/usr/bin/certctl --config \"/etc/my certs/%%h.toml\" run"),
            "{service}"
        );
        assert!(
            service.contains("ReadWritePaths=\"/srv/st 1\""),
            "{service}"
        );
    }

    #[test]
    fn newlines_relative_paths_and_bad_durations_are_refused() {
        let good = SystemdArgs {
            binary: "/usr/bin/certctl".into(),
            on_calendar: "*-*-* 00/6:00:00".into(),
            randomized_delay: "1h 30min".into(),
            output_dir: None,
            prometheus: None,
        };
        let c = std::path::Path::new("/etc/certctl/c.toml");
        let st = std::path::Path::new("/var/lib/certctl");
        assert!(check_systemd_args(&good, c, st).is_ok());
        let with = |f: &dyn Fn(&mut SystemdArgs)| {
            let mut a = SystemdArgs {
                binary: good.binary.clone(),
                on_calendar: good.on_calendar.clone(),
                randomized_delay: good.randomized_delay.clone(),
                output_dir: None,
                prometheus: good.prometheus.clone(),
            };
            f(&mut a);
            check_systemd_args(&a, c, st).map_err(|e| e.0)
        };
        let e = with(&|a| a.on_calendar = "daily\nExecStartPre=/bin/evil".into()).expect_err("nl");
        assert!(e.contains("control character") && !e.contains('\n'), "{e}");
        let e = with(&|a| a.binary = "/usr/bin/cert\nctl".into()).expect_err("nl");
        assert!(e.starts_with("--binary"), "{e}");
        let e = with(&|a| a.binary = "certctl".into()).expect_err("relative");
        assert!(e.contains("absolute"), "{e}");
        let e = with(&|a| a.randomized_delay = "1 hour and a bit".into()).expect_err("span");
        assert!(e.starts_with("--randomized-delay"), "{e}");
        let e = with(&|a| a.on_calendar = "every day".into()).expect_err("cal");
        assert!(e.starts_with("--on-calendar"), "{e}");
        assert!(check_systemd_args(&good, "/etc/a\rb".as_ref(), st).is_err());
        assert!(check_systemd_args(&good, c, "/var/lib\n".as_ref()).is_err());
    }

    /// The pure checks agree with `systemd-analyze` (when installed) on a
    /// set of good and bad values.
    #[test]
    fn calendar_and_timespan_checks_agree_with_systemd_analyze() {
        let calendars = [
            ("daily", true),
            ("hourly", true),
            ("*-*-* 00/6:00:00", true),
            ("Mon..Fri 02:30", true),
            ("Sat,Sun *-*-* 03:00:00 UTC", true),
            ("*-*-01 04:00", true),
            ("*:0/15", true),
            ("2027-01-01", true),
            ("every day", false),
            ("*-*-* 25:00:00", false),
            ("*-*-* 12:61", false),
            ("", false),
            ("Funday 10:00", false),
        ];
        let spans = [
            ("1h", true),
            ("30min", true),
            ("1h 30min", true),
            ("90", true),
            ("2.5s", true),
            ("10m", true),
            ("1 hour", true),
            ("", false),
            ("soon", false),
            ("1h and more", false),
            ("-5s", false),
        ];
        for (c, ok) in calendars {
            assert_eq!(check_on_calendar(c).is_ok(), ok, "OnCalendar `{c}`");
        }
        for (d, ok) in spans {
            assert_eq!(check_timespan(d).is_ok(), ok, "time span `{d}`");
        }
        let Ok(probe) = std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
        else {
            return; // not installed: the lab test requires it
        };
        if !probe.status.success() {
            return;
        }
        for (c, ok) in calendars.iter().filter(|(c, _)| !c.is_empty()) {
            let st = std::process::Command::new("systemd-analyze")
                .args(["calendar", c])
                .output()
                .expect("systemd-analyze calendar");
            assert_eq!(st.status.success(), *ok, "systemd-analyze calendar `{c}`");
        }
        for (d, ok) in spans.iter().filter(|(d, _)| !d.is_empty()) {
            let st = std::process::Command::new("systemd-analyze")
                .args(["timespan", d])
                .output()
                .expect("systemd-analyze timespan");
            assert_eq!(st.status.success(), *ok, "systemd-analyze timespan `{d}`");
        }
    }
}
