//! The crate's error type: run-fatal conditions only. A per-export failure (an LDAP result code, a bad
//! value, an unresolved reference) is data in that export's outcome, never an `Err`.

use crate::config::ConfigErrors;
use crate::model::UnknownEnumValue;

/// Everything that can stop a call of this library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request or configuration is invalid; every bad field is named.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A row of JIM's database holds a value this engine cannot read.
    #[error(transparent)]
    Row(#[from] RowError),
    /// PostgreSQL could not be reached or a statement failed. The message never holds SQL text or secrets.
    #[error("database error: {0}")]
    Database(String),
    /// PostgreSQL stopped answering mid-run for longer than the retry window
    /// (`database.retry_window_ms`): what was being done, for how long, and the last error. The run's
    /// claims go back to the queue as soon as the database answers again. Hosts see it as a database
    /// error.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// The directory could not be reached, or refused the bind or TLS.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// JIM's schema is not the one this engine was built against.
    #[error("schema check failed: {0}")]
    Schema(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        // sqlx's Display for connection errors can include the host but never the password; statement
        // errors carry the server's message, not our SQL text.
        Error::Database(e.to_string())
    }
}

/// A value read from one row that the engine cannot interpret, e.g. an enum number JIM does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table} row {row_id}: column {column}: {problem}")]
pub struct RowError {
    /// The table, e.g. `PendingExports`.
    pub table: &'static str,
    /// The row's id.
    pub row_id: String,
    /// The column, e.g. `Status`.
    pub column: &'static str,
    /// What is wrong with the value.
    pub problem: String,
}

impl RowError {
    /// An unknown enum value in `table.column` of row `row_id`.
    pub fn unknown_enum(
        table: &'static str,
        row_id: impl ToString,
        column: &'static str,
        e: UnknownEnumValue,
    ) -> Self {
        Self {
            table,
            row_id: row_id.to_string(),
            column,
            problem: e.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
