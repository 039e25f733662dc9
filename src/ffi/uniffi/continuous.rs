//! Continuous export ("watch") for UniFFI hosts: the request and result records and the engine's
//! `watch` and notifying-trigger methods.

use std::sync::Arc;
use std::time::SystemTime;

use super::{CancelToken, DatabaseConfig, ExportEngine, ExportError, ExportRequest, RunListener};
use crate::config;
use crate::engine::{self, CancellationToken};
use crate::report;

/// How a watch learns that pending exports were staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum WakeUpMode {
    /// Notifications when the engine's trigger is installed, polling otherwise.
    Auto,
    /// Polling only.
    Poll,
}

/// How a watch waits between passes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct WatchOptions {
    /// Notifications or polling (`None`: [`WakeUpMode::Auto`]).
    #[uniffi(default = None)]
    pub wake_up: Option<WakeUpMode>,
    /// The poll interval after a pass that exported something, in milliseconds.
    #[uniffi(default = 100)]
    pub poll_min_ms: u64,
    /// The longest poll interval, reached by doubling while idle, in milliseconds.
    #[uniffi(default = 3000)]
    pub poll_max_ms: u64,
    /// With notifications, the safety re-scan interval, in milliseconds.
    #[uniffi(default = 60000)]
    pub notify_recheck_ms: u64,
}

/// A continuous export of one or several connected systems on one database.
#[derive(Debug, Clone, uniffi::Record)]
pub struct WatchRequest {
    /// One export request per connected system (same database, different systems, no dry run).
    pub requests: Vec<ExportRequest>,
    /// How the watch waits for work.
    pub watch: WatchOptions,
}

/// How the watch learnt of new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum WatchMode {
    /// PostgreSQL notifications from the engine's trigger.
    Notifications,
    /// Polling with adaptive backoff.
    Polling,
}

/// Wake-ups by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct WakeUps {
    /// The first look at the queue.
    pub startup: u64,
    /// Notifications from the trigger.
    pub notification: u64,
    /// Polls.
    pub poll: u64,
    /// A row's `NextRetryAt` (or a lease) came due.
    pub retry_due: u64,
    /// The notification listener reconnected.
    pub reconnect: u64,
    /// Safety re-scans in notification mode.
    pub recheck: u64,
    /// Retries after an error.
    pub after_error: u64,
}

/// One connected system's part of a watch.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct WatchSystemResult {
    /// `ConnectedSystems.Id`.
    pub connected_system_id: i32,
    /// Passes over the queue.
    pub passes: u64,
    /// Passes that stopped on an error.
    pub failed_passes: u64,
    /// Exports processed.
    pub exports: u64,
    /// Exports that succeeded.
    pub succeeded: u64,
    /// Exports that failed.
    pub failed: u64,
    /// Exports deferred.
    pub deferred: u64,
    /// What woke the system's loop up.
    pub wake_ups: WakeUps,
    /// The last error met, if any.
    pub last_error: Option<String>,
}

/// A finished watch.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct WatchResult {
    /// When it started.
    pub started_at: SystemTime,
    /// When it stopped.
    pub completed_at: SystemTime,
    /// Notifications or polling.
    pub mode: WatchMode,
    /// Whether the trigger was installed at the start.
    pub trigger_installed: bool,
    /// Reconnections of the notification listener.
    pub listener_reconnects: u64,
    /// Passes over all systems.
    pub passes: u64,
    /// Exports processed over all systems.
    pub exports: u64,
    /// Wake-ups over all systems.
    pub wake_ups: WakeUps,
    /// Per connected system, in request order.
    pub systems: Vec<WatchSystemResult>,
    /// A one-line summary.
    pub message: String,
}

impl From<WatchOptions> for config::WatchOptions {
    fn from(o: WatchOptions) -> Self {
        Self {
            wake_up: match o.wake_up {
                None | Some(WakeUpMode::Auto) => config::WakeUpMode::Auto,
                Some(WakeUpMode::Poll) => config::WakeUpMode::Poll,
            },
            poll_min_ms: o.poll_min_ms,
            poll_max_ms: o.poll_max_ms,
            notify_recheck_ms: o.notify_recheck_ms,
        }
    }
}

impl From<WatchRequest> for config::WatchRequest {
    fn from(r: WatchRequest) -> Self {
        Self {
            requests: r.requests.into_iter().map(Into::into).collect(),
            watch: r.watch.into(),
        }
    }
}

impl From<report::WakeUps> for WakeUps {
    fn from(w: report::WakeUps) -> Self {
        Self {
            startup: w.startup,
            notification: w.notification,
            poll: w.poll,
            retry_due: w.retry_due,
            reconnect: w.reconnect,
            recheck: w.recheck,
            after_error: w.after_error,
        }
    }
}

impl From<report::WatchResult> for WatchResult {
    fn from(r: report::WatchResult) -> Self {
        Self {
            started_at: r.started_at.into(),
            completed_at: r.completed_at.into(),
            mode: match r.mode {
                report::WatchMode::Notifications => WatchMode::Notifications,
                report::WatchMode::Polling => WatchMode::Polling,
            },
            trigger_installed: r.trigger_installed,
            listener_reconnects: r.listener_reconnects,
            passes: r.passes,
            exports: r.exports,
            wake_ups: r.wake_ups.into(),
            systems: r
                .systems
                .into_iter()
                .map(|s| WatchSystemResult {
                    connected_system_id: s.connected_system_id,
                    passes: s.passes,
                    failed_passes: s.failed_passes,
                    exports: s.exports,
                    succeeded: s.succeeded,
                    failed: s.failed,
                    deferred: s.deferred,
                    wake_ups: s.wake_ups.into(),
                    last_error: s.last_error,
                })
                .collect(),
            message: r.message,
        }
    }
}

/// The engine's default watch options.
#[uniffi::export]
pub fn default_watch_options() -> WatchOptions {
    let o = config::WatchOptions::default();
    WatchOptions {
        wake_up: None,
        poll_min_ms: o.poll_min_ms,
        poll_max_ms: o.poll_max_ms,
        notify_recheck_ms: o.notify_recheck_ms,
    }
}

/// The SQL that installs the notifying trigger, for an operator or a migration to apply by hand.
#[uniffi::export]
pub fn notify_trigger_sql() -> String {
    engine::notify_trigger_sql().to_string()
}

/// The SQL that removes the notifying trigger and its function.
#[uniffi::export]
pub fn notify_trigger_removal_sql() -> String {
    engine::notify_trigger_removal_sql().to_string()
}

#[uniffi::export]
impl ExportEngine {
    /// Exports continuously until `cancel` is cancelled (or the awaiting task is; `cancel` comes before
    /// the optional `listener` since it is how a watch ends): each pass over a
    /// system's queue is reported to `listener` like a run; staged exports are picked up within a
    /// fraction of a second (notifications when the trigger is installed, polling otherwise), rows
    /// whose `NextRetryAt` comes due when it does. Stopping lets the passes in progress finish their
    /// in-flight operations and return their unexecuted claims. Fails only when the watch cannot
    /// start.
    #[uniffi::method(default(listener = None))]
    pub async fn watch(
        &self,
        request: WatchRequest,
        cancel: Arc<CancelToken>,
        listener: Option<Arc<dyn RunListener>>,
    ) -> Result<WatchResult, ExportError> {
        let request = config::WatchRequest::from(request);
        let gate = super::host_listener(listener);
        let listener: Arc<dyn engine::RunListener> = gate.clone();
        let token: CancellationToken = cancel.token.child_token();
        let engine = self.host.engine().clone();
        let run_token = token.clone();
        self.spawn(token, Some(gate), async move {
            engine
                .watch(&request, listener, run_token)
                .await
                .map(WatchResult::from)
                .map_err(ExportError::from)
        })
        .await
    }

    /// Installs the notifying trigger on JIM's `"PendingExports"` (an operator action; idempotent).
    pub async fn install_notify_trigger(
        &self,
        database: DatabaseConfig,
    ) -> Result<(), ExportError> {
        let database = config::DatabaseConfig::from(database);
        let engine = self.host.engine().clone();
        self.spawn(CancellationToken::new(), None, async move {
            engine
                .install_notify_trigger(&database)
                .await
                .map_err(ExportError::from)
        })
        .await
    }

    /// Removes the notifying trigger and its function (idempotent).
    pub async fn remove_notify_trigger(&self, database: DatabaseConfig) -> Result<(), ExportError> {
        let database = config::DatabaseConfig::from(database);
        let engine = self.host.engine().clone();
        self.spawn(CancellationToken::new(), None, async move {
            engine
                .remove_notify_trigger(&database)
                .await
                .map_err(ExportError::from)
        })
        .await
    }

    /// True when the notifying trigger is installed and enabled.
    pub async fn notify_trigger_installed(
        &self,
        database: DatabaseConfig,
    ) -> Result<bool, ExportError> {
        let database = config::DatabaseConfig::from(database);
        let engine = self.host.engine().clone();
        self.spawn(CancellationToken::new(), None, async move {
            engine
                .notify_trigger_installed(&database)
                .await
                .map_err(ExportError::from)
        })
        .await
    }
}
