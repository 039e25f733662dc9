//! Run options: paging, flushing, concurrency, leases and dry runs.

use serde::{Deserialize, Serialize};

use super::LogLevel;
use super::validate::ConfigErrors;

/// How a run behaves. Every field has a default; `null` concurrency fields take the dialect's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// Pending exports claimed per statement (default [`DEFAULT_PAGE_SIZE`], JIM's batch size).
    #[serde(default = "default_page_size")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 100))]
    pub page_size: u32,
    /// Outcomes persisted per statement at most (default [`DEFAULT_FLUSH_SIZE`]). A flush also
    /// closes once its exports carry 16 × this many attribute changes (1,600 by default), so
    /// that exports carrying many values, large groups, are written in flushes of the usual cost
    /// side by side.
    #[serde(default = "default_flush_size")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 100))]
    pub flush_size: u32,
    /// A partial flush is written after this many milliseconds (default
    /// [`DEFAULT_FLUSH_INTERVAL_MS`]).
    #[serde(default = "default_flush_interval_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 1000))]
    pub flush_interval_ms: u64,
    /// Directory connections; the dialect's default when absent.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub connections: Option<u32>,
    /// Outstanding operations per connection; the dialect's default when absent.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub in_flight_per_connection: Option<u32>,
    /// How the in-flight limit is set; [`Concurrency::Adaptive`] when absent (optional because UniFFI
    /// has no default for an enum field).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub concurrency: Option<Concurrency>,
    /// Cap on outstanding operations over all connections. With `fixed` concurrency it is the limit
    /// (connections × per-connection when absent, as before); with `adaptive` it is the ceiling the
    /// limit may grow to (when absent: connections × per-connection if `in_flight_per_connection` is
    /// given, else four times the dialect's default, at most 256).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub max_in_flight: Option<u32>,
    /// The floor of the adaptive limit (default 1); ignored with `fixed` concurrency.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub min_in_flight: Option<u32>,
    /// Cap on directory operations per second; none when absent.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub ops_per_second: Option<u32>,
    /// Seconds after which a row left `Executing` by a crashed run may be claimed again (default
    /// [`DEFAULT_LEASE_SECONDS`]).
    #[serde(default = "default_lease_seconds")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 900))]
    pub lease_seconds: u64,
    /// In-run retries of an operation that met a transient condition (default
    /// [`DEFAULT_MAX_OPERATION_RETRIES`]).
    #[serde(default = "default_max_operation_retries")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 3))]
    pub max_operation_retries: u32,
    /// Plan and report without writing to the directory or the database.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub dry_run: bool,
    /// Run even when JIM's `__EFMigrationsHistory` lacks the migration this engine was built against.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub skip_schema_check: bool,
    /// Least interval between progress events, in milliseconds (default
    /// [`DEFAULT_PROGRESS_INTERVAL_MS`]).
    #[serde(default = "default_progress_interval_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 500))]
    pub progress_interval_ms: u64,
    /// How far the directory's clock may be behind the database's, in seconds (default
    /// [`DEFAULT_CLOCK_SKEW_SECONDS`], Kerberos's limit in an AD domain). A re-attempted Create
    /// adopts an existing entry only if it was created after the export's first attempt, by this
    /// allowance.
    #[serde(default = "default_clock_skew_seconds")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 300))]
    pub clock_skew_seconds: u64,
    /// The least severe log record the run hands its listener's `on_log` (`trace`, `debug`, `info`,
    /// `warn`, `error`); `debug` when absent, every record hosts received before.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub log_level: Option<LogLevel>,
}

/// The default of [`RunOptions::page_size`].
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The default of [`RunOptions::flush_size`].
pub const DEFAULT_FLUSH_SIZE: u32 = 100;
/// The default of [`RunOptions::flush_interval_ms`]. A second, so that against a slow directory
/// (389's follow-ups at 65-77 objects/s) a flush still carries most of a batch: at 250 ms it
/// carried about 19 exports, and the run took 6.59 statements per 100 exports instead of 3.72.
/// Where the directory keeps up, flushes fill by size long before the interval.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
/// The default of [`RunOptions::lease_seconds`].
pub const DEFAULT_LEASE_SECONDS: u64 = 900;
/// The default of [`RunOptions::max_operation_retries`].
pub const DEFAULT_MAX_OPERATION_RETRIES: u32 = 3;
/// The default of [`RunOptions::progress_interval_ms`].
pub const DEFAULT_PROGRESS_INTERVAL_MS: u64 = 500;
/// The default of [`RunOptions::clock_skew_seconds`].
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 300;

/// How the limit on directory operations in flight is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Found while the run goes on: it starts at the dialect's default, grows while operation
    /// latency holds and shrinks when it rises or the directory pushes back (busy, unavailable,
    /// unwilling, timeouts, lost connections), between `min_in_flight` and `max_in_flight`.
    #[default]
    Adaptive,
    /// Constant: `max_in_flight`, or connections × per-connection.
    Fixed,
}

fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}
fn default_flush_size() -> u32 {
    DEFAULT_FLUSH_SIZE
}
fn default_flush_interval_ms() -> u64 {
    DEFAULT_FLUSH_INTERVAL_MS
}
fn default_lease_seconds() -> u64 {
    DEFAULT_LEASE_SECONDS
}
fn default_max_operation_retries() -> u32 {
    DEFAULT_MAX_OPERATION_RETRIES
}
fn default_progress_interval_ms() -> u64 {
    DEFAULT_PROGRESS_INTERVAL_MS
}
fn default_clock_skew_seconds() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            page_size: default_page_size(),
            flush_size: default_flush_size(),
            flush_interval_ms: default_flush_interval_ms(),
            connections: None,
            in_flight_per_connection: None,
            concurrency: None,
            max_in_flight: None,
            min_in_flight: None,
            ops_per_second: None,
            lease_seconds: default_lease_seconds(),
            max_operation_retries: default_max_operation_retries(),
            dry_run: false,
            skip_schema_check: false,
            progress_interval_ms: default_progress_interval_ms(),
            clock_skew_seconds: default_clock_skew_seconds(),
            log_level: None,
        }
    }
}

impl RunOptions {
    /// The concurrency in effect: the one given, else [`Concurrency::default`].
    pub fn effective_concurrency(&self) -> Concurrency {
        self.concurrency.unwrap_or_default()
    }

    /// Records every invalid field under `path`.
    pub fn validate(&self, path: &str, errors: &mut ConfigErrors) {
        let range = |errors: &mut ConfigErrors, name: &str, value: u64, lo: u64, hi: u64| {
            errors.check(
                value < lo || value > hi,
                format!("{path}.{name}"),
                format!("must be between {lo} and {hi} (got {value})"),
            );
        };
        range(errors, "page_size", self.page_size.into(), 1, 10_000);
        range(errors, "flush_size", self.flush_size.into(), 1, 10_000);
        range(
            errors,
            "flush_interval_ms",
            self.flush_interval_ms,
            1,
            60_000,
        );
        if let Some(v) = self.connections {
            range(errors, "connections", v.into(), 1, 64);
        }
        if let Some(v) = self.in_flight_per_connection {
            range(errors, "in_flight_per_connection", v.into(), 1, 1024);
        }
        if let Some(v) = self.max_in_flight {
            range(errors, "max_in_flight", v.into(), 1, 4096);
        }
        if let Some(v) = self.min_in_flight {
            range(errors, "min_in_flight", v.into(), 1, 4096);
            errors.check(
                self.max_in_flight.is_some_and(|max| v > max),
                format!("{path}.min_in_flight"),
                format!(
                    "must not exceed max_in_flight ({})",
                    self.max_in_flight.unwrap_or_default()
                ),
            );
        }
        if let Some(v) = self.ops_per_second {
            range(errors, "ops_per_second", v.into(), 1, 1_000_000);
        }
        range(
            errors,
            "lease_seconds",
            self.lease_seconds,
            10,
            7 * 24 * 3600,
        );
        range(
            errors,
            "max_operation_retries",
            self.max_operation_retries.into(),
            0,
            20,
        );
        range(
            errors,
            "progress_interval_ms",
            self.progress_interval_ms,
            10,
            3_600_000,
        );
        range(
            errors,
            "clock_skew_seconds",
            self.clock_skew_seconds,
            0,
            86_400,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_adaptive_unless_asked_fixed() {
        let o: RunOptions = serde_json::from_str("{}").expect("defaults");
        assert_eq!(o.effective_concurrency(), Concurrency::Adaptive);
        let o: RunOptions =
            serde_json::from_str(r#"{"concurrency":"fixed","max_in_flight":8}"#).expect("fixed");
        assert_eq!(
            (o.effective_concurrency(), o.max_in_flight),
            (Concurrency::Fixed, Some(8))
        );
        assert!(serde_json::from_str::<RunOptions>(r#"{"concurrency":"fast"}"#).is_err());
    }

    #[test]
    fn min_in_flight_is_checked_against_its_range_and_the_ceiling() {
        let mut errors = ConfigErrors::default();
        RunOptions {
            min_in_flight: Some(0),
            ..RunOptions::default()
        }
        .validate("options", &mut errors);
        assert_eq!(errors.paths(), vec!["options.min_in_flight"]);
        let mut errors = ConfigErrors::default();
        RunOptions {
            min_in_flight: Some(16),
            max_in_flight: Some(8),
            ..RunOptions::default()
        }
        .validate("options", &mut errors);
        assert_eq!(errors.paths(), vec!["options.min_in_flight"]);
        let mut errors = ConfigErrors::default();
        RunOptions {
            min_in_flight: Some(4),
            max_in_flight: Some(8),
            ..RunOptions::default()
        }
        .validate("options", &mut errors);
        assert!(errors.paths().is_empty());
    }
}
