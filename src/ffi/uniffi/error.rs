//! The one error type UniFFI hosts see, and its mapping from the engine's [`crate::Error`]. Python
//! raises it as `ExportError.<Variant>`, Kotlin as `ExportException.<Variant>`. No variant carries a
//! secret: the engine's messages never hold one.
//!
//! Variant fields are named `reason` rather than `message`, because Kotlin exceptions already have a
//! `message` property (it shows the fields).

use crate::config::ConfigErrors;
use crate::directory::DirectoryError;
use crate::error::Error;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldError {
    /// Where the field is, e.g. `directory.urls[1]` or `options.page_size`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a directory could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum DirectoryErrorKind {
    /// No URL could be reached, or the directory stopped answering mid-run.
    Connect,
    /// The directory refused the bind.
    Bind,
    /// TLS could not be set up or the server's certificate was refused.
    Tls,
}

/// Why a call of the engine failed. Per-export failures are not errors: they are outcomes in the run
/// result and the batch reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum ExportError {
    /// The request is invalid; every bad field is listed by its path.
    #[error("invalid request: {}", render(errors))]
    InvalidRequest {
        /// The invalid fields.
        errors: Vec<FieldError>,
    },
    /// PostgreSQL could not be reached or a statement failed.
    #[error("database error: {reason}")]
    Database {
        /// The server's or the driver's message.
        reason: String,
    },
    /// A row of JIM's database holds a value the engine cannot read.
    #[error("{table} row {row_id}: column {column}: {reason}")]
    InvalidRow {
        /// The table, e.g. `PendingExports`.
        table: String,
        /// The row's id.
        row_id: String,
        /// The column.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The directory could not be reached, or refused the bind or TLS; or it stopped answering mid-run
    /// (the exports done by then are persisted, the rest are left as they were).
    #[error("directory error: {reason}")]
    Directory {
        /// Which step failed.
        kind: DirectoryErrorKind,
        /// The message, naming the URL and bind DN, never the password.
        reason: String,
    },
    /// JIM's schema is not the one this engine was built against.
    #[error("schema check failed: {reason}")]
    Schema {
        /// What differs.
        reason: String,
    },
    /// The run was cancelled before it could produce a result.
    #[error("cancelled")]
    Cancelled,
    /// The engine was shut down; create a new one.
    #[error("the engine has been shut down")]
    Shutdown,
    /// A defect in the engine (a panic in a run, a runtime that could not start). Please report it.
    #[error("internal error: {reason}")]
    Internal {
        /// What happened.
        reason: String,
    },
}

fn render(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<ConfigErrors> for ExportError {
    fn from(e: ConfigErrors) -> Self {
        ExportError::InvalidRequest {
            errors: e
                .0
                .into_iter()
                .map(|f| FieldError {
                    path: f.path,
                    reason: f.message,
                })
                .collect(),
        }
    }
}

impl From<DirectoryError> for ExportError {
    fn from(e: DirectoryError) -> Self {
        let kind = match &e {
            DirectoryError::Connect(_) => DirectoryErrorKind::Connect,
            DirectoryError::Bind(_) => DirectoryErrorKind::Bind,
            DirectoryError::Tls(_) => DirectoryErrorKind::Tls,
        };
        ExportError::Directory {
            kind,
            reason: e.to_string(),
        }
    }
}

impl From<Error> for ExportError {
    fn from(e: Error) -> Self {
        match e {
            Error::Config(errors) => errors.into(),
            Error::Row(row) => ExportError::InvalidRow {
                table: row.table.to_string(),
                row_id: row.row_id,
                column: row.column.to_string(),
                reason: row.problem,
            },
            Error::Database(reason) => ExportError::Database { reason },
            e @ Error::DatabaseUnavailable(_) => ExportError::Database {
                reason: e.to_string(),
            },
            Error::Directory(d) => d.into(),
            Error::Schema(reason) => ExportError::Schema { reason },
            Error::Cancelled => ExportError::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RowError;

    #[test]
    fn every_engine_error_maps_to_its_variant() {
        let mut config = ConfigErrors::default();
        config.push("directory.urls[0]", "bad scheme");
        config.push("options.page_size", "must be at least 1");
        let ExportError::InvalidRequest { errors } = Error::Config(config).into() else {
            panic!("not InvalidRequest");
        };
        assert_eq!(
            errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["directory.urls[0]", "options.page_size"]
        );
        assert_eq!(errors[1].reason, "must be at least 1");

        let row = RowError {
            table: "PendingExports",
            row_id: "42".into(),
            column: "Status",
            problem: "9 is not a known PendingExportStatus value".into(),
        };
        assert!(matches!(
            Error::Row(row).into(),
            ExportError::InvalidRow { ref table, ref column, .. } if table == "PendingExports" && column == "Status"
        ));
        assert_eq!(
            ExportError::from(Error::Database("refused".into())),
            ExportError::Database {
                reason: "refused".into()
            }
        );
        assert!(matches!(
            Error::Directory(DirectoryError::Bind("invalid credentials".into())).into(),
            ExportError::Directory {
                kind: DirectoryErrorKind::Bind,
                ..
            }
        ));
        assert_eq!(
            ExportError::from(Error::Schema("x".into())),
            ExportError::Schema { reason: "x".into() }
        );
        assert_eq!(ExportError::from(Error::Cancelled), ExportError::Cancelled);
    }

    #[test]
    fn invalid_request_message_lists_every_field() {
        let mut config = ConfigErrors::default();
        config.push("a", "one");
        config.push("b.c", "two");
        let shown = ExportError::from(config).to_string();
        assert_eq!(shown, "invalid request: a: one; b.c: two");
    }
}
