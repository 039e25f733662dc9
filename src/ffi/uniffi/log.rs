//! The log record a UniFFI listener receives, mirroring [`crate::engine::LogRecord`] (moved here from
//! the former `types.rs`, whose other records are now the core types themselves).

use crate::engine;

use engine::LogLevel as CoreLogLevel;

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Diagnostic.
    Debug,
    /// Normal operation.
    Info,
    /// Something the operator should know.
    Warn,
    /// The run failed.
    Error,
}

impl From<CoreLogLevel> for LogLevel {
    fn from(value: CoreLogLevel) -> Self {
        match value {
            CoreLogLevel::Trace => LogLevel::Trace,
            CoreLogLevel::Debug => LogLevel::Debug,
            CoreLogLevel::Info => LogLevel::Info,
            CoreLogLevel::Warn => LogLevel::Warn,
            CoreLogLevel::Error => LogLevel::Error,
        }
    }
}

impl From<LogLevel> for CoreLogLevel {
    fn from(value: LogLevel) -> Self {
        match value {
            LogLevel::Trace => CoreLogLevel::Trace,
            LogLevel::Debug => CoreLogLevel::Debug,
            LogLevel::Info => CoreLogLevel::Info,
            LogLevel::Warn => CoreLogLevel::Warn,
            LogLevel::Error => CoreLogLevel::Error,
        }
    }
}

/// One log record of a run. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// Where it comes from (e.g. `jim_export::engine`).
    pub target: String,
    /// The message.
    pub message: String,
}

impl From<&engine::LogRecord> for LogRecord {
    fn from(r: &engine::LogRecord) -> Self {
        Self {
            level: r.level.into(),
            target: r.target.clone(),
            message: r.message.clone(),
        }
    }
}
