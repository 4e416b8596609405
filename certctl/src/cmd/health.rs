//! certctl's own health for the commands that record it (`run` always;
//! `renew`, `deploy` and `report` with `--prometheus`): each step's start and
//! end in the store, failed notify commands, the textfile, and the failure
//! notice. Recording never fails a command: a record that cannot be written
//! is a warning.

use std::path::Path;
use std::time::Duration;

use acme_core::report::{self, Failure, FailureNotice, Health, Report, Step};
use acme_core::{Inventory, Store};
use anyhow::Context as _;
use time::OffsetDateTime;

/// How long a notify command may take before it is killed.
pub(crate) const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// Records steps into the store's health record (when it has a store).
pub(crate) struct Recorder {
    store: Option<Store>,
    health: Health,
}

impl Recorder {
    /// A recorder writing into `inv`'s store, which is created if missing
    /// (for commands that create it anyway: run, renew, deploy).
    pub(crate) fn create(inv: &Inventory) -> anyhow::Result<Self> {
        let (store, _) = Store::open(&inv.store)
            .with_context(|| format!("cannot open the store {}", inv.store.display()))?;
        Ok(Self::with(Some(store)))
    }

    /// A recorder writing into `inv`'s store if there is one (the report,
    /// which never creates a store).
    pub(crate) fn if_exists(inv: &Inventory) -> anyhow::Result<Self> {
        if !inv.store.exists() {
            return Ok(Self::with(None));
        }
        Self::create(inv)
    }

    /// A recorder that records nothing.
    pub(crate) fn none() -> Self {
        Self::with(None)
    }

    /// A recorder writing into `store`, the one the run holds locked (an
    /// etcd store's writes are then fenced by that lock too).
    pub(crate) fn for_store(store: &Store) -> Self {
        Self::with(Some(store.clone()))
    }

    fn with(store: Option<Store>) -> Self {
        let health = store
            .as_ref()
            .and_then(|s| Health::read(s).ok())
            .unwrap_or_default();
        Self { store, health }
    }

    /// Applies `f` to the stored record (read again first, so a concurrent
    /// command's figures are kept) and writes it back.
    fn update(&mut self, f: impl FnOnce(&mut Health)) {
        let Some(store) = &self.store else {
            return;
        };
        match Health::read(store) {
            Ok(h) => self.health = h,
            Err(e) => {
                tracing::warn!(error = %acme_core::error_chain(&e), "cannot read the health record; writing it anew")
            }
        }
        f(&mut self.health);
        if let Err(e) = self.health.write(store) {
            eprintln!(
                "certctl: warning: cannot record certctl's health: {}",
                crate::output::error_text(&anyhow::Error::new(e))
            );
        }
    }

    /// `step` starts now.
    pub(crate) fn started(&mut self, step: Step) {
        let now = OffsetDateTime::now_utc();
        self.update(|h| h.started(step, now));
    }

    /// `step` ends now, well if `ok`.
    pub(crate) fn ended(&mut self, step: Step, ok: bool) {
        let now = OffsetDateTime::now_utc();
        self.update(|h| h.ended(step, now, ok));
    }

    /// A notify command failed now: counted.
    pub(crate) fn notify_failed(&mut self) {
        let now = OffsetDateTime::now_utc();
        self.update(|h| h.notify_failed(now));
    }

    /// Writes the textfile (atomically): `report`'s families, or the ones
    /// already in the file, and the health figures.
    pub(crate) fn write_textfile(
        &self,
        path: &Path,
        report: Option<&Report>,
        inv: &Inventory,
    ) -> anyhow::Result<()> {
        report::write_textfile(path, report, &self.health, inv, self.store.as_ref())
            .with_context(|| format!("cannot write the Prometheus textfile {}", path.display()))
    }
}

/// This run's identifier: unix time and process id.
pub(crate) fn run_id() -> String {
    format!(
        "{}-{}",
        OffsetDateTime::now_utc().unix_timestamp(),
        std::process::id()
    )
}

/// A failure of `step` for these facts, from a library error.
pub(crate) fn failure(
    step: Step,
    certificate: Option<&str>,
    node: Option<&str>,
    kind: acme_core::ErrorKind,
    error: &(dyn std::error::Error + 'static),
) -> Failure {
    Failure {
        step,
        certificate: certificate.map(String::from),
        node: node.map(String::from),
        error_kind: kind,
        error: acme_core::error_chain(error),
    }
}

/// Sends the failure notice to `[report] notify`; a failing command is a
/// warning and counted, never an error of the run.
pub(crate) async fn notify_failures(
    inv: &Inventory,
    rec: &mut Recorder,
    run_id: String,
    failures: Vec<Failure>,
) {
    let Some(cmd) = &inv.report.notify else {
        return;
    };
    let notice = FailureNotice::new(run_id, failures);
    if let Err(e) = report::notify_failure(cmd, &notice, NOTIFY_TIMEOUT).await {
        eprintln!(
            "certctl: warning: the failure notice was not delivered: {}",
            crate::output::error_text(&anyhow::Error::new(e))
        );
        rec.notify_failed();
    }
}
