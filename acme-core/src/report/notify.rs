//! `[report] notify`: a command run when a report has warnings or worse,
//! with the report's JSON on its stdin (no shell; program and arguments).

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use super::{Report, Severity};

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

/// Runs `command` with the report's JSON on stdin if the report's severity
/// is warning or worse; returns whether it ran. Bounded by `timeout`.
pub async fn notify(
    command: &[String],
    report: &Report,
    timeout: Duration,
) -> Result<bool, NotifyError> {
    if report.severity == Severity::Ok {
        return Ok(false);
    }
    let (program, args) = command.split_first().ok_or(NotifyError::Empty)?;
    let spawn_err = |source| NotifyError::Spawn {
        program: program.clone(),
        source,
    };
    let json =
        serde_json::to_vec_pretty(report).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    let run = async {
        let mut child = tokio::process::Command::new(program)
            .args(args)
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
            Ok(true)
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
