//! The exec solver: the user's own commands add and remove the TXT record
//! (see the module docs of [`crate::dns`] for their environment).

use std::process::Stdio;

use tracing::Instrument as _;

use super::zone::Locator;
use super::{propagation, DnsError, DnsSolver, TxtRecord};
use crate::inventory::{ExecConfig, PropagationConfig, SolverConfig};
use crate::DomainName;

/// How much of a failed command's stderr is kept.
const STDERR_TAIL_LINES: usize = 10;
const STDERR_TAIL_BYTES: usize = 2048;

/// Exec hook solver.
#[derive(Debug)]
pub struct Exec {
    solver: String,
    cfg: ExecConfig,
    propagation: PropagationConfig,
    locator: Locator,
}

/// The variables given to a command (added to certctl's own environment).
pub(super) fn env(action: &str, record: &TxtRecord, ttl: u32) -> Vec<(&'static str, String)> {
    vec![
        ("CERTCTL_ACTION", action.into()),
        ("CERTCTL_DOMAIN", record.domain.as_str().into()),
        ("CERTCTL_FQDN", record.fqdn.clone()),
        ("CERTCTL_ZONE", record.zone.clone()),
        ("CERTCTL_TXT_VALUE", record.value.clone()),
        ("CERTCTL_TTL", ttl.to_string()),
    ]
}

/// The last lines of `stderr`, at most [`STDERR_TAIL_BYTES`].
pub(super) fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    let joined = lines[start..].join("\n");
    if joined.len() <= STDERR_TAIL_BYTES {
        return joined;
    }
    let mut cut = joined.len() - STDERR_TAIL_BYTES;
    while !joined.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &joined[cut..])
}

impl Exec {
    /// Builds the solver `solver` from its config.
    pub fn new(solver: &str, cfg: &ExecConfig) -> Self {
        let propagation = SolverConfig::Exec(cfg.clone()).propagation();
        Self {
            solver: solver.into(),
            cfg: cfg.clone(),
            locator: Locator::new(propagation.resolver.clone()),
            propagation,
        }
    }

    async fn run(&self, action: &'static str, record: &TxtRecord) -> Result<(), DnsError> {
        let argv = match action {
            "present" => &self.cfg.present,
            _ => &self.cfg.cleanup,
        };
        let command = argv.join(" ");
        let Some((program, args)) = argv.split_first() else {
            return Err(DnsError::ExecSpawn {
                action,
                command,
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
            });
        };
        let child = tokio::process::Command::new(program)
            .args(args)
            .envs(env(action, record, self.cfg.ttl))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DnsError::ExecSpawn {
                action,
                command: command.clone(),
                source,
            })?;
        // On timeout the future is dropped with the child, which kills it.
        let output = tokio::time::timeout(self.cfg.timeout, child.wait_with_output())
            .await
            .map_err(|_| DnsError::ExecTimeout {
                action,
                command: command.clone(),
                timeout: self.cfg.timeout,
            })?
            .map_err(|source| DnsError::ExecSpawn {
                action,
                command: command.clone(),
                source,
            })?;
        tracing::debug!(
            %command,
            status = %output.status,
            stdout = %String::from_utf8_lossy(&output.stdout).trim_end(),
            "exec solver command finished"
        );
        if !output.status.success() {
            return Err(DnsError::Exec {
                action,
                command,
                status: output.status,
                stderr_tail: tail(&output.stderr),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DnsSolver for Exec {
    async fn present(&self, domain: &DomainName, value: &str) -> Result<TxtRecord, DnsError> {
        let span = tracing::info_span!("dns", domain = %domain, solver = %self.solver);
        async {
            let (fqdn, zone) = self.locator.locate(domain).await?;
            let record = TxtRecord {
                domain: DomainName::new(domain.challenge_base()).unwrap_or_else(|_| domain.clone()),
                fqdn,
                zone,
                value: value.into(),
            };
            self.run("present", &record).await?;
            tracing::info!(fqdn = %record.fqdn, zone = %record.zone, "TXT record presented by command");
            Ok(record)
        }
        .instrument(span)
        .await
    }

    async fn present_at(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.run("present", record).await?;
        tracing::info!(fqdn = %record.fqdn, zone = %record.zone, "persistent TXT record presented by command");
        Ok(())
    }

    async fn wait_propagated(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let span = tracing::info_span!("dns", domain = %record.domain, solver = %self.solver);
        propagation::wait(&self.locator, &self.propagation, record)
            .instrument(span)
            .await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let span = tracing::info_span!("dns", domain = %record.domain, solver = %self.solver);
        async {
            self.run("cleanup", record).await?;
            tracing::info!(fqdn = %record.fqdn, "TXT record removed by command");
            Ok(())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record() -> TxtRecord {
        TxtRecord {
            domain: DomainName::new("cdn.example.test").expect("domain"),
            fqdn: "cdn.challenges.test".into(),
            zone: "challenges.test".into(),
            value: "abc_-123".into(),
        }
    }

    fn exec(present: &[&str], timeout: Duration) -> Exec {
        let cfg = ExecConfig {
            present: present.iter().map(|s| s.to_string()).collect(),
            cleanup: vec!["true".into()],
            timeout,
            ttl: 30,
            propagation_timeout: Duration::from_secs(1),
            propagation_delay: None,
            resolver: None,
            skip_propagation_check: true,
        };
        Exec::new("hook", &cfg)
    }

    #[test]
    fn env_names_every_fact() {
        let env = env("cleanup", &record(), 30);
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("<unset>")
        };
        assert_eq!(get("CERTCTL_ACTION"), "cleanup");
        assert_eq!(get("CERTCTL_DOMAIN"), "cdn.example.test");
        assert_eq!(get("CERTCTL_FQDN"), "cdn.challenges.test");
        assert_eq!(get("CERTCTL_ZONE"), "challenges.test");
        assert_eq!(get("CERTCTL_TXT_VALUE"), "abc_-123");
        assert_eq!(get("CERTCTL_TTL"), "30");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let err: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail(err.as_bytes());
        assert!(t.starts_with("line 21\n"), "{t}");
        assert!(t.ends_with("line 30"), "{t}");
        let long = "é".repeat(5000);
        assert!(tail(long.as_bytes()).len() <= STDERR_TAIL_BYTES + "…".len());
    }

    #[tokio::test]
    async fn failure_reports_command_status_and_stderr() {
        let e = exec(
            &[
                "sh",
                "-c",
                "echo \"no such zone $CERTCTL_ZONE\" >&2; exit 3",
            ],
            Duration::from_secs(10),
        )
        .run("present", &record())
        .await
        .expect_err("exit 3");
        let s = e.to_string();
        assert!(s.contains("present command `sh -c"), "{s}");
        assert!(s.contains("exit status: 3"), "{s}");
        assert!(s.contains("no such zone challenges.test"), "{s}");
    }

    #[tokio::test]
    async fn hung_command_is_killed_at_the_timeout() {
        let e = exec(&["sleep", "30"], Duration::from_millis(200))
            .run("present", &record())
            .await
            .expect_err("timeout");
        assert!(matches!(e, DnsError::ExecTimeout { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let e = exec(&["/nonexistent/hook"], Duration::from_secs(1))
            .run("present", &record())
            .await
            .expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/hook"), "{e}");
    }
}
