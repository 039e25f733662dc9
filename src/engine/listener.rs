//! How a run talks back to its host while it goes on: progress, batch reports and log records.

use serde::{Deserialize, Serialize};

use crate::report::{BatchReport, ProgressEvent};

/// Severity of a [`LogRecord`], as in `tracing` (and Microsoft.Extensions.Logging's levels minus
/// Critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Diagnostic.
    Debug,
    /// Normal operation (e.g. `MetricsCheckpoint` lines).
    Info,
    /// Something the operator should know; expected per-object failures are never above this.
    Warn,
    /// The run itself failed.
    Error,
}

/// One log record of a run. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// Where it comes from (e.g. `jim_export::engine`).
    pub target: String,
    /// The message.
    pub message: String,
}

/// Receives a run's events. Called from the engine's worker threads, possibly concurrently from
/// several runs; implementations must be quick and must not call back into the engine's run.
pub trait RunListener: Send + Sync {
    /// A progress snapshot, at most once per `progress_interval_ms` (phase changes always).
    fn on_progress(&self, event: &ProgressEvent) {
        let _ = event;
    }

    /// The outcomes of one flush, after they were persisted.
    fn on_batch(&self, report: &BatchReport) {
        let _ = report;
    }

    /// A log record (at `Info` and above, plus `Debug` detail the host may drop).
    fn on_log(&self, record: &LogRecord) {
        let _ = record;
    }
}

/// A listener that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoListener;

impl RunListener for NoListener {}
