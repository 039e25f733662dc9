//! The listener hosts implement (Python class, Kotlin object) to receive a run's progress events,
//! batch reports and log records, and the adapter that lets the engine call it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine;
use crate::engine::LogRecord;
use crate::report::{self, BatchReport, ProgressEvent};

/// A listener method failed (raised an exception). The engine ignores it and the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum ListenerError {
    /// The host's listener raised or threw.
    #[error("the listener failed: {reason}")]
    Failed {
        /// What the host reported.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ListenerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        ListenerError::Failed { reason: e.reason }
    }
}

/// Receives a run's events: subclass it in Python, implement it in Kotlin. The engine calls it from
/// its worker threads, possibly from several runs at once, so implementations must be quick and
/// thread-safe (in Python, hand work to the event loop with `loop.call_soon_threadsafe`). An
/// exception raised by a method is ignored: it never stops the run.
#[uniffi::export(with_foreign)]
pub trait RunListener: Send + Sync {
    /// A progress snapshot, at most once per `progress_interval_ms` (phase changes always).
    fn on_progress(&self, event: ProgressEvent) -> Result<(), ListenerError>;

    /// The outcomes of one flush, after they were persisted.
    fn on_batch(&self, report: BatchReport) -> Result<(), ListenerError>;

    /// A log record.
    fn on_log(&self, record: LogRecord) -> Result<(), ListenerError>;
}

/// Calls the host's listener for the engine, converting each event, and logs the first failure of
/// the host's code (once, so a broken listener cannot flood the log).
pub(super) struct ForeignListener {
    inner: Arc<dyn RunListener>,
    failed: AtomicBool,
}

impl ForeignListener {
    pub(super) fn new(inner: Arc<dyn RunListener>) -> Self {
        Self {
            inner,
            failed: AtomicBool::new(false),
        }
    }

    fn check(&self, what: &'static str, result: Result<(), ListenerError>) {
        if let Err(e) = result
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(callback = what, error = %e, "the host's run listener failed; further failures are not logged");
        }
    }
}

impl engine::RunListener for ForeignListener {
    fn on_progress(&self, event: &report::ProgressEvent) {
        self.check("on_progress", self.inner.on_progress(event.clone()));
    }

    fn on_batch(&self, report: &report::BatchReport) {
        self.check("on_batch", self.inner.on_batch(report.clone()));
    }

    fn on_log(&self, record: &engine::LogRecord) {
        self.check("on_log", self.inner.on_log(record.clone()));
    }
}
