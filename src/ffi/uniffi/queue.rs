//! The queue summary UniFFI hosts receive. [`crate::store::QueueSummary`] keeps the stored numbers
//! and decodes them on demand; this record carries both, decoded once, so Python and Kotlin need no
//! table of JIM's numbers.

use std::time::SystemTime;

use crate::model::{PendingExportChangeType, PendingExportStatus};
use crate::store;

/// The pending exports of one (status, change type) pair.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StatusCount {
    /// `Status` as stored.
    pub status: i32,
    /// `ChangeType` as stored.
    pub change_type: i32,
    /// The status, when it is one JIM defines.
    pub known_status: Option<PendingExportStatus>,
    /// The change type, when it is one JIM defines.
    pub known_change_type: Option<PendingExportChangeType>,
    /// Rows.
    pub count: i64,
}

/// A connected system's queue at a glance.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct QueueSummary {
    /// Rows per (status, change type).
    pub by_status: Vec<StatusCount>,
    /// All rows.
    pub total: i64,
    /// Rows an export run would pick up now.
    pub executable: i64,
    /// Rows whose `NextRetryAt` has passed or is not set.
    pub due: i64,
    /// Rows backing off.
    pub not_yet_due: i64,
    /// Rows left `Executing` for longer than the lease.
    pub stranded_executing: i64,
    /// Rows with `HasUnresolvedReferences`.
    pub with_unresolved_references: i64,
    /// The oldest `LastAttemptedAt` among Failed rows.
    pub oldest_failure: Option<SystemTime>,
}

impl From<store::QueueSummary> for QueueSummary {
    fn from(s: store::QueueSummary) -> Self {
        Self {
            by_status: s
                .by_status
                .iter()
                .map(|c| StatusCount {
                    status: c.status,
                    change_type: c.change_type,
                    known_status: c.status(),
                    known_change_type: c.change_type(),
                    count: c.count,
                })
                .collect(),
            total: s.total,
            executable: s.executable,
            due: s.due,
            not_yet_due: s.not_yet_due,
            stranded_executing: s.stranded_executing,
            with_unresolved_references: s.with_unresolved_references,
            oldest_failure: s.oldest_failure.map(Into::into),
        }
    }
}
