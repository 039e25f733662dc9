//! A continuous export ("watch") request: one export request per connected system, all on the same
//! JIM database, and how the watch learns that there is work.

use serde::{Deserialize, Serialize};

use super::{ConfigErrors, ExportRequest};

/// How a watch learns that pending exports were staged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum WakeUpMode {
    /// PostgreSQL notifications when the engine's trigger is installed on `"PendingExports"` (see
    /// [`crate::engine::notify_trigger_sql`]), polling otherwise.
    #[default]
    Auto,
    /// Polling only, even when the trigger is installed.
    Poll,
}

/// How a watch waits between passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct WatchOptions {
    /// Notifications or polling; [`WakeUpMode::Auto`] when absent (optional because UniFFI has no
    /// default for an enum field).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub wake_up: Option<WakeUpMode>,
    /// The polling interval right after a pass that exported something, in milliseconds (default
    /// [`DEFAULT_POLL_MIN_MS`]).
    #[serde(default = "default_poll_min_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 100))]
    pub poll_min_ms: u64,
    /// The longest polling interval, reached after a run of idle polls, in milliseconds (default
    /// [`DEFAULT_POLL_MAX_MS`]).
    #[serde(default = "default_poll_max_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 3000))]
    pub poll_max_ms: u64,
    /// With notifications, a safety re-scan this often even without one, in milliseconds (default
    /// [`DEFAULT_NOTIFY_RECHECK_MS`]): covers a trigger dropped while the watch runs.
    #[serde(default = "default_notify_recheck_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 60000))]
    pub notify_recheck_ms: u64,
}

/// The default of [`WatchOptions::poll_min_ms`].
pub const DEFAULT_POLL_MIN_MS: u64 = 100;
/// The default of [`WatchOptions::poll_max_ms`].
pub const DEFAULT_POLL_MAX_MS: u64 = 3_000;
/// The default of [`WatchOptions::notify_recheck_ms`].
pub const DEFAULT_NOTIFY_RECHECK_MS: u64 = 60_000;

fn default_poll_min_ms() -> u64 {
    DEFAULT_POLL_MIN_MS
}

fn default_poll_max_ms() -> u64 {
    DEFAULT_POLL_MAX_MS
}

fn default_notify_recheck_ms() -> u64 {
    DEFAULT_NOTIFY_RECHECK_MS
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            wake_up: None,
            poll_min_ms: default_poll_min_ms(),
            poll_max_ms: default_poll_max_ms(),
            notify_recheck_ms: default_notify_recheck_ms(),
        }
    }
}

impl WatchOptions {
    /// The wake-up mode in effect: the one given, else [`WakeUpMode::default`].
    pub fn effective_wake_up(&self) -> WakeUpMode {
        self.wake_up.unwrap_or_default()
    }
}

/// Upper bound on the intervals (one hour), catching seconds given as milliseconds the other way.
const MAX_INTERVAL_MS: u64 = 3_600_000;

/// A continuous export of one or several connected systems: each request names its system, its
/// directory, settings and run options; all must name the same database (the watch shares one pool
/// and one notification listener between them) and different systems.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    /// One export request per connected system.
    pub requests: Vec<ExportRequest>,
    /// How the watch waits for work.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub watch: WatchOptions,
}

impl WatchRequest {
    /// A watch of one connected system with the default watch options.
    pub fn single(request: ExportRequest) -> Self {
        Self {
            requests: vec![request],
            watch: WatchOptions::default(),
        }
    }

    /// Parses a watch request from JSON and validates it; errors name the field's path
    /// (`requests[1].directory.urls[0]`).
    pub fn from_json(json: &str) -> Result<Self, ConfigErrors> {
        let request: WatchRequest =
            super::from_json(json, "request").map_err(super::JsonError::into_config)?;
        request.validate()?;
        Ok(request)
    }

    /// Checks every request (paths prefixed `requests[i].`) and the watch options.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        errors.check(
            self.requests.is_empty(),
            "requests",
            "must name at least one connected system",
        );
        let first = self.requests.first();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.requests.iter().enumerate() {
            if let Err(e) = r.validate() {
                for f in e.0 {
                    errors.push(format!("requests[{i}].{}", f.path), f.message);
                }
            }
            if let Some(first) = first
                && first.database.connection.expose() != r.database.connection.expose()
            {
                errors.push(
                    format!("requests[{i}].database.connection"),
                    "every request of a watch must name the same database as requests[0]",
                );
            }
            errors.check(
                !seen.insert(r.connected_system_id),
                format!("requests[{i}].connected_system_id"),
                "names a connected system another request of the watch already names",
            );
            errors.check(
                r.options.dry_run,
                format!("requests[{i}].options.dry_run"),
                "a watch cannot be a dry run",
            );
        }
        let w = &self.watch;
        errors.check(
            w.poll_min_ms < 10 || w.poll_min_ms > MAX_INTERVAL_MS,
            "watch.poll_min_ms",
            format!("must be between 10 and {MAX_INTERVAL_MS}"),
        );
        errors.check(
            w.poll_max_ms < w.poll_min_ms || w.poll_max_ms > MAX_INTERVAL_MS,
            "watch.poll_max_ms",
            format!("must be between watch.poll_min_ms and {MAX_INTERVAL_MS}"),
        );
        errors.check(
            w.notify_recheck_ms < 1_000 || w.notify_recheck_ms > MAX_INTERVAL_MS,
            "watch.notify_recheck_ms",
            format!("must be between 1000 and {MAX_INTERVAL_MS}"),
        );
        errors.into_result()
    }
}
