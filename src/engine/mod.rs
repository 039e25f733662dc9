//! **engine**: the streaming export run, claim → resolve → plan → execute → persist → report, and the
//! operator calls. One [`Engine`](crate::engine::Engine) serves concurrent runs (for different connected systems, or the same
//! one from several engines, which then cooperate through the store's claims) and shares its database
//! pools between them.
//!
//! The engine is async and expects a tokio multi-thread runtime; it never builds one. The C ABI and
//! UniFFI layers own the runtime and drive the engine on it.

mod admission;
mod breaker;
mod claimer;
mod coordinator;
mod dependencies;
mod dry_run;
mod flush;
mod learned;
mod lease;
mod listener;
mod log;
mod metrics;
mod planning;
mod progress;
mod renames;
mod reporting;
mod run;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;
use tracing::instrument::WithSubscriber;

pub use listener::{ListenerGate, LogLevel, LogRecord, NoListener, RunListener};
pub use tokio_util::sync::CancellationToken;

use crate::config::{ConfigErrors, DatabaseConfig, ExportRequest, WatchRequest, validate_target};
use crate::error::Result;
use crate::report::{RunResult, WatchResult};
use crate::store::{QueueSummary, Store};

/// The export engine: runs exports and answers operator calls. Cheap to share (`Arc`); every method
/// takes `&self` and may be called concurrently. Keep one for the host's lifetime: it holds the
/// database pools, and each directory's run resumes at the in-flight limit the last one learnt.
#[derive(Debug, Default)]
pub struct Engine {
    /// Database pools by connection string, shared by every run and call on the same database.
    stores: Mutex<HashMap<String, Store>>,
    /// The warning about an unverified database connection was given (it is given once).
    warned_database_tls: AtomicBool,
    /// Where each directory's adaptive in-flight limit ended, for the next run to resume at.
    limits: learned::LearnedLimits,
}

impl Engine {
    /// A new engine with no open connections.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Runs one export of `request.connected_system_id` to the end of its eligible queue, or until
    /// `cancel` fires (then in-flight operations finish or time out, their outcomes are persisted and
    /// unexecuted claims are returned). Per-export failures are data in the result and the batch
    /// reports; `Err` means the run could not proceed (invalid request, database or directory
    /// unreachable, wrong schema).
    pub async fn run_export(
        &self,
        request: &ExportRequest,
        listener: Arc<dyn RunListener>,
        cancel: CancellationToken,
    ) -> Result<RunResult> {
        request.validate()?;
        let span = tracing::info_span!(
            "export_run",
            connected_system_id = request.connected_system_id
        );
        // Nothing the run leaves behind (a task still winding down) calls the host once it returned
        // or its caller dropped it.
        let gate = ListenerGate::new(listener);
        let _closing = gate.close_on_drop();
        let listener: Arc<dyn RunListener> = gate;
        let logs = log::run_dispatch(&listener, request.options.log_level.unwrap_or_default());
        let run = async {
            let store = self.store(&request.database).await?;
            let unverified = self.first_unverified_database(&request.database);
            if request.options.dry_run {
                dry_run::dry_run(store, request, listener, unverified).await
            } else {
                run::run(store, request, listener, cancel, unverified, &self.limits).await
            }
        }
        .instrument(span);
        match logs {
            Some(logs) => run.with_subscriber(logs).await,
            None => run.await,
        }
    }

    /// The queue of a connected system: counts by status and change type, due and not yet due,
    /// rows stranded in `Executing` for longer than `lease`, and the oldest failure. An invalid
    /// database configuration or system id is an [`Error::Config`](crate::Error::Config) naming each
    /// bad field, before anything is contacted (as for the other operator calls).
    pub async fn queue_summary(
        &self,
        database: &DatabaseConfig,
        connected_system_id: i32,
        lease: Duration,
    ) -> Result<QueueSummary> {
        check_target(database, connected_system_id)?;
        self.store(database)
            .await?
            .queue_summary(connected_system_id, lease)
            .await
    }

    /// Returns rows left `Executing` longer than `older_than` (by a crashed or killed run) to Pending;
    /// returns how many. With a zero duration it releases every `Executing` row: only when no engine
    /// is running on the system.
    pub async fn release_stranded(
        &self,
        database: &DatabaseConfig,
        connected_system_id: i32,
        older_than: Duration,
    ) -> Result<u64> {
        check_target(database, connected_system_id)?;
        self.store(database)
            .await?
            .release_stranded(connected_system_id, older_than)
            .await
    }

    /// Resets `Failed` exports of a connected system to Pending with `ErrorCount` 0 and the error
    /// fields and retry time cleared (what JIM's unused `RetryFailedExportsAsync` intends); returns
    /// how many.
    pub async fn reset_failed(
        &self,
        database: &DatabaseConfig,
        connected_system_id: i32,
    ) -> Result<u64> {
        check_target(database, connected_system_id)?;
        self.store(database)
            .await?
            .reset_failed(connected_system_id)
            .await
    }

    /// Exports continuously until `cancel` fires: for each connected system of `request`, keeps its
    /// directory connected and runs a pass over its queue (reported through `listener` like a run:
    /// progress, batch reports, logs) whenever something is due, woken by PostgreSQL notifications when
    /// the trigger of [`Engine::install_notify_trigger`] is installed, by polling with adaptive backoff
    /// otherwise, and when a row's `NextRetryAt` comes due. On cancellation the current passes finish
    /// their in-flight operations and return their unexecuted claims. `Err` only when the watch cannot
    /// start (invalid request, database or directory unreachable, unknown system, wrong schema); later
    /// errors are logged and retried.
    pub async fn watch(
        &self,
        request: &WatchRequest,
        listener: Arc<dyn RunListener>,
        cancel: CancellationToken,
    ) -> Result<WatchResult> {
        request.validate()?;
        let first = &request.requests[0];
        let span = tracing::info_span!("export_watch", systems = request.requests.len());
        let gate = ListenerGate::new(listener);
        let _closing = gate.close_on_drop();
        let listener: Arc<dyn RunListener> = gate;
        // One listener for every system: it gets the most detailed level any of them asks for.
        let level = request
            .requests
            .iter()
            .map(|r| r.options.log_level.unwrap_or_default())
            .min()
            .unwrap_or_default();
        let logs = log::run_dispatch(&listener, level);
        let watch = async {
            let store = self.store(&first.database).await?;
            let unverified = self.first_unverified_database(&first.database);
            watch::watch(store, request, listener, cancel, unverified).await
        }
        .instrument(span);
        match logs {
            Some(logs) => watch.with_subscriber(logs).await,
            None => watch.await,
        }
    }

    /// Installs the trigger that makes a watch react at once to staged pending exports
    /// ([`notify_trigger_sql`]): an operator action, needing the right to create functions and
    /// triggers on JIM's tables. Idempotent. Watches already running keep their mode until restarted.
    pub async fn install_notify_trigger(&self, database: &DatabaseConfig) -> Result<()> {
        check_database(database)?;
        self.store(database).await?.install_notify_trigger().await
    }

    /// Removes the notifying trigger and its function. Idempotent. Running watches in notification
    /// mode then notice new work only at their safety re-scan.
    pub async fn remove_notify_trigger(&self, database: &DatabaseConfig) -> Result<()> {
        check_database(database)?;
        self.store(database).await?.remove_notify_trigger().await
    }

    /// True when the notifying trigger is installed and enabled.
    pub async fn notify_trigger_installed(&self, database: &DatabaseConfig) -> Result<bool> {
        check_database(database)?;
        self.store(database).await?.notify_trigger_installed().await
    }

    /// True the first time a run on this engine uses a database connection whose TLS is not verified
    /// (the engine warns once).
    fn first_unverified_database(&self, database: &DatabaseConfig) -> bool {
        database.tls_unverified() && !self.warned_database_tls.swap(true, Ordering::Relaxed)
    }

    /// Closes every database pool: background work (claims of runs that ended while the database
    /// did not answer) gets until `deadline` to get through.
    pub async fn close(&self, deadline: Duration) {
        let stores: Vec<Store> = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        let end = tokio::time::Instant::now() + deadline;
        for store in stores {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            store.close(left).await;
        }
    }

    /// The shared store for a database configuration, connecting on first use.
    async fn store(&self, database: &DatabaseConfig) -> Result<Store> {
        let key = database.connection.expose().to_string();
        if let Some(store) = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(store.clone());
        }
        let store = Store::connect(database).await?;
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        Ok(stores.entry(key).or_insert(store).clone())
    }
}

/// Checks an operator call's database and connected system, as a run checks its request.
fn check_target(database: &DatabaseConfig, connected_system_id: i32) -> Result<()> {
    let mut errors = ConfigErrors::default();
    validate_target(database, connected_system_id, &mut errors);
    Ok(errors.into_result()?)
}

/// Checks the database configuration of a trigger call.
fn check_database(database: &DatabaseConfig) -> Result<()> {
    let mut errors = ConfigErrors::default();
    database.validate("database", &mut errors);
    Ok(errors.into_result()?)
}

/// The SQL that installs the notifying trigger on JIM's `"PendingExports"` (and its attribute value
/// changes), for an operator or a migration to run; [`Engine::install_notify_trigger`] runs the same.
/// It notifies channel [`crate::store::NOTIFY_CHANNEL`] with the `ConnectedSystemId` when exports are
/// staged or made eligible again, once per system and transaction.
pub fn notify_trigger_sql() -> &'static str {
    crate::store::INSTALL_NOTIFY_TRIGGER_SQL
}

/// The SQL that removes the notifying trigger and its function.
pub fn notify_trigger_removal_sql() -> &'static str {
    crate::store::REMOVE_NOTIFY_TRIGGER_SQL
}
