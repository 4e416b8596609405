//! `[report] notify`: a command run when a report has warnings or worse,
//! with the report's JSON on its stdin, and when a run's renewal or
//! deployment failed, with a [`FailureNotice`] (no shell; program and
//! arguments).

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt as _;

use super::{Report, Severity, Step};
use crate::ErrorKind;

/// Why the notify command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `notify` is an empty list.
    #[error("[report] notify is empty: give a program and its arguments")]
    Empty,
    /// The program could not be started or fed.
    #[error("cannot run notify command `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("notify command `{program}` failed with {status}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// It did not finish in time.
    #[error("notify command `{program}` did not finish within {timeout:?}")]
    Timeout {
        /// The program.
        program: String,
        /// The bound.
        timeout: Duration,
    },
}

/// The JSON schema identifier of [`FailureNotice`]. Fields may be added
/// within a version; renaming or removing one bumps it.
pub const FAILURE_SCHEMA: &str = "certctl.failure/v1";

/// What a run sends to `[report] notify` when a renewal or a deployment
/// failed (schema [`FAILURE_SCHEMA`]); the environment variable
/// `CERTCTL_NOTIFY_KIND` is `failure` (`report` for the report).
#[derive(Debug, Clone, Serialize)]
pub struct FailureNotice {
    /// Always [`FAILURE_SCHEMA`].
    pub schema: &'static str,
    /// This run's identifier (unix time and process id), the same in every
    /// notice and log line of one run.
    pub run_id: String,
    /// The controller's host name.
    pub host: String,
    /// When the notice was made.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What failed, in the order it happened.
    pub failures: Vec<Failure>,
}

/// One failure of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The step (`renew` or `deploy`).
    pub step: Step,
    /// The certificate, if the failure is about one.
    pub certificate: Option<String>,
    /// The node, if the failure is about one.
    pub node: Option<String>,
    /// What kind of thing failed.
    pub error_kind: ErrorKind,
    /// The error and its causes, one line.
    pub error: String,
}

impl FailureNotice {
    /// A notice of `failures` for the run `run_id`, made now on this host.
    pub fn new(run_id: String, failures: Vec<Failure>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Self {
            schema: FAILURE_SCHEMA,
            run_id,
            host,
            at: OffsetDateTime::now_utc(),
            failures,
        }
    }
}

/// Runs `command` with the report's JSON on stdin if the report's severity
/// is warning or worse (`CERTCTL_NOTIFY_KIND=report`); returns whether it
/// ran. Bounded by `timeout`.
pub async fn notify(
    command: &[String],
    report: &Report,
    timeout: Duration,
) -> Result<bool, NotifyError> {
    if report.severity == Severity::Ok {
        return Ok(false);
    }
    run_command(command, "report", report, timeout).await?;
    Ok(true)
}

/// Runs `command` with `notice`'s JSON on stdin
/// (`CERTCTL_NOTIFY_KIND=failure`). Bounded by `timeout`.
pub async fn notify_failure(
    command: &[String],
    notice: &FailureNotice,
    timeout: Duration,
) -> Result<(), NotifyError> {
    run_command(command, "failure", notice, timeout).await
}

async fn run_command(
    command: &[String],
    kind: &str,
    document: &impl Serialize,
    timeout: Duration,
) -> Result<(), NotifyError> {
    let (program, args) = command.split_first().ok_or(NotifyError::Empty)?;
    let spawn_err = |source| NotifyError::Spawn {
        program: program.clone(),
        source,
    };
    let json =
        serde_json::to_vec_pretty(document).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    let run = async {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("CERTCTL_NOTIFY_KIND", kind)
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin is not an error.
            let _ = stdin.write_all(&json).await;
        }
        let status = child.wait().await.map_err(spawn_err)?;
        if status.success() {
            Ok(())
        } else {
            Err(NotifyError::Failed {
                program: program.clone(),
                status,
            })
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| NotifyError::Timeout {
            program: program.clone(),
            timeout,
        })?
}
