//! What a continuous export ("watch") returns when it stops: per connected system, the passes it ran,
//! what they exported and what woke it up.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How the watch learnt of new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    /// PostgreSQL notifications from the engine's trigger, with a slow safety re-scan.
    Notifications,
    /// Polling with adaptive backoff.
    Polling,
}

/// Wake-ups by cause. Each wake-up checks the queue (one statement) and runs a pass when something is
/// due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct WakeUps {
    /// The first look at the queue when the watch started.
    pub startup: u64,
    /// A notification from the trigger.
    pub notification: u64,
    /// A poll (polling mode).
    pub poll: u64,
    /// A row's `NextRetryAt` (or an `Executing` row's lease) came due.
    pub retry_due: u64,
    /// The notification listener reconnected: notifications sent meanwhile are lost, so it re-scans.
    pub reconnect: u64,
    /// The safety re-scan of notification mode.
    pub recheck: u64,
    /// A retry after a pass or a queue check failed (e.g. the database restarting).
    pub after_error: u64,
}

impl WakeUps {
    /// All wake-ups.
    pub fn total(&self) -> u64 {
        self.startup
            + self.notification
            + self.poll
            + self.retry_due
            + self.reconnect
            + self.recheck
            + self.after_error
    }

    /// Adds another system's counts.
    pub fn add(&mut self, other: &WakeUps) {
        self.startup += other.startup;
        self.notification += other.notification;
        self.poll += other.poll;
        self.retry_due += other.retry_due;
        self.reconnect += other.reconnect;
        self.recheck += other.recheck;
        self.after_error += other.after_error;
    }
}

/// One connected system's part of a watch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct WatchSystemResult {
    /// `ConnectedSystems.Id`.
    pub connected_system_id: i32,
    /// Passes over the queue (each like one `run_export`, reported through the listener as such).
    pub passes: u64,
    /// Passes that stopped on an error (retried after a pause).
    pub failed_passes: u64,
    /// Exports processed over all passes (succeeded, failed or deferred).
    pub exports: u64,
    /// Exports that succeeded.
    pub succeeded: u64,
    /// Exports that failed.
    pub failed: u64,
    /// Exports deferred.
    pub deferred: u64,
    /// What woke the system's loop up.
    pub wake_ups: WakeUps,
    /// The last error a pass or queue check met, if any.
    pub last_error: Option<String>,
}

/// A finished watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct WatchResult {
    /// When the watch started.
    pub started_at: DateTime<Utc>,
    /// When it stopped.
    pub completed_at: DateTime<Utc>,
    /// Notifications or polling.
    pub mode: WatchMode,
    /// Whether the notifying trigger was installed when the watch started.
    pub trigger_installed: bool,
    /// Times the notification listener lost its connection and reconnected.
    pub listener_reconnects: u64,
    /// Passes over all systems.
    pub passes: u64,
    /// Exports processed over all systems.
    pub exports: u64,
    /// Wake-ups over all systems.
    pub wake_ups: WakeUps,
    /// Per connected system, in request order.
    pub systems: Vec<WatchSystemResult>,
    /// A one-line summary for the host's log.
    pub message: String,
}
