//! The run's log lines: each goes to `tracing` and to the run's listener.

use std::sync::Arc;

use super::{LogLevel, LogRecord, RunListener};

/// Sends log records to `tracing` and to the run's listener.
#[derive(Clone)]
pub(crate) struct Logger {
    listener: Arc<dyn RunListener>,
}

impl Logger {
    pub(crate) fn new(listener: Arc<dyn RunListener>) -> Self {
        Self { listener }
    }

    fn record(&self, level: LogLevel, message: String) {
        match level {
            LogLevel::Trace => tracing::trace!("{message}"),
            LogLevel::Debug => tracing::debug!("{message}"),
            LogLevel::Info => tracing::info!("{message}"),
            LogLevel::Warn => tracing::warn!("{message}"),
            LogLevel::Error => tracing::error!("{message}"),
        }
        self.listener.on_log(&LogRecord {
            level,
            target: "jim_export::engine".into(),
            message,
        });
    }

    pub(crate) fn debug(&self, message: String) {
        self.record(LogLevel::Debug, message);
    }

    pub(crate) fn info(&self, message: String) {
        self.record(LogLevel::Info, message);
    }

    pub(crate) fn warn(&self, message: String) {
        self.record(LogLevel::Warn, message);
    }

    pub(crate) fn error(&self, message: String) {
        self.record(LogLevel::Error, message);
    }
}
