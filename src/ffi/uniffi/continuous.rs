//! Continuous export ("watch") for UniFFI hosts: the engine's `watch` and notifying-trigger methods.
//! The request and result records are the core's own ([`crate::config::WatchRequest`],
//! [`crate::report::WatchResult`]).

use std::sync::Arc;

use super::{CancelToken, DatabaseConfig, ExportEngine, ExportError, RunListener};
use crate::config::{WatchOptions, WatchRequest};
use crate::engine::{self, CancellationToken};
use crate::report::WatchResult;

/// The engine's default watch options.
#[uniffi::export]
pub fn default_watch_options() -> WatchOptions {
    WatchOptions::default()
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
        let gate = super::host_listener(listener);
        let listener: Arc<dyn engine::RunListener> = gate.clone();
        let token: CancellationToken = cancel.token.child_token();
        let engine = self.host.engine().clone();
        let run_token = token.clone();
        self.spawn(token, Some(gate), async move {
            engine
                .watch(&request, listener, run_token)
                .await
                .map_err(ExportError::from)
        })
        .await
    }

    /// Installs the notifying trigger on JIM's `"PendingExports"` (an operator action; idempotent).
    pub async fn install_notify_trigger(
        &self,
        database: DatabaseConfig,
    ) -> Result<(), ExportError> {
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
