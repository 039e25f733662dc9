//! The level of a run's log records, set per run in `options.log_level`.

use serde::{Deserialize, Serialize};

/// Severity of a log record (`crate::engine::LogRecord`), as in `tracing` (and
/// Microsoft.Extensions.Logging's levels minus Critical), ordered from the most verbose. As a
/// threshold (`options.log_level`) it is the least severe record a host receives; the default,
/// `Debug`, lets through every record hosts received before the library's `tracing` events reached
/// them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Diagnostic.
    #[default]
    Debug,
    /// Normal operation (e.g. `MetricsCheckpoint` lines).
    Info,
    /// Something the operator should know; expected per-object failures are never above this.
    Warn,
    /// The run itself failed.
    Error,
}

impl From<&tracing::Level> for LogLevel {
    fn from(level: &tracing::Level) -> Self {
        match *level {
            tracing::Level::TRACE => LogLevel::Trace,
            tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::ERROR => LogLevel::Error,
        }
    }
}
