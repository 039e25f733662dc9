//! **engine**: the streaming export run, claim → resolve → plan → execute → persist → report, and the
//! operator calls. One [`Engine`] serves concurrent runs (for different connected systems, or the same
//! one from several engines, which then cooperate through the store's claims) and shares its database
//! pools between them.
//!
//! The engine is async and expects a tokio multi-thread runtime; it never builds one. The C ABI and
//! UniFFI layers own the runtime and drive the engine on it.

mod dependencies;
mod dry_run;
mod listener;
mod planning;
mod reporting;
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

pub use listener::{LogLevel, LogRecord, NoListener, RunListener};
pub use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseConfig, ExportRequest};
use crate::error::Result;
use crate::report::RunResult;
use crate::store::{QueueSummary, Store};

/// The export engine: runs exports and answers operator calls. Cheap to share (`Arc`); every method
/// takes `&self` and may be called concurrently.
#[derive(Debug, Default)]
pub struct Engine {
    /// Database pools by connection string, shared by every run and call on the same database.
    stores: Mutex<HashMap<String, Store>>,
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
        async {
            let store = self.store(&request.database).await?;
            if request.options.dry_run {
                dry_run::dry_run(store, request, listener).await
            } else {
                run::run(store, request, listener, cancel).await
            }
        }
        .instrument(span)
        .await
    }

    /// The queue of a connected system: counts by status and change type, due and not yet due,
    /// rows stranded in `Executing` for longer than `lease`, and the oldest failure.
    pub async fn queue_summary(
        &self,
        database: &DatabaseConfig,
        connected_system_id: i32,
        lease: Duration,
    ) -> Result<QueueSummary> {
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
        self.store(database)
            .await?
            .reset_failed(connected_system_id)
            .await
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
