//! Operator queries on a connected system's queue: a summary, releasing stranded rows, resetting
//! failed exports.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, sql};
use crate::error::Result;
use crate::model::{PendingExportChangeType, PendingExportStatus};

/// The pending exports of one (status, change type) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// `Status` as stored (a number JIM does not define is shown as it is).
    pub status: i32,
    /// `ChangeType` as stored.
    pub change_type: i32,
    /// Rows.
    pub count: i64,
}

impl StatusCount {
    /// The status, when it is one JIM defines.
    pub fn status(&self) -> Option<PendingExportStatus> {
        PendingExportStatus::from_i32(self.status).ok()
    }

    /// The change type, when it is one JIM defines.
    pub fn change_type(&self) -> Option<PendingExportChangeType> {
        PendingExportChangeType::from_i32(self.change_type).ok()
    }
}

/// A connected system's queue at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSummary {
    /// Rows per (status, change type).
    pub by_status: Vec<StatusCount>,
    /// All rows.
    pub total: i64,
    /// Rows an export run would pick up now (JIM's predicate, plus `Executing` rows past the lease).
    pub executable: i64,
    /// Rows whose `NextRetryAt` has passed or is not set.
    pub due: i64,
    /// Rows backing off (`NextRetryAt` in the future).
    pub not_yet_due: i64,
    /// Rows left `Executing` for longer than the lease (a crashed run's).
    pub stranded_executing: i64,
    /// Rows with `HasUnresolvedReferences`.
    pub with_unresolved_references: i64,
    /// The oldest `LastAttemptedAt` among Failed rows.
    pub oldest_failure: Option<DateTime<Utc>>,
}

impl Store {
    /// Summarises `connected_system_id`'s queue: counts by status and change type, due and not yet due,
    /// rows stranded in `Executing` for longer than `lease`, and the oldest failure. One statement.
    pub async fn queue_summary(
        &self,
        connected_system_id: i32,
        lease: Duration,
    ) -> Result<QueueSummary> {
        self.count(1);
        let rows = sqlx::query(sql::QUEUE_SUMMARY)
            .bind(connected_system_id)
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        let mut s = QueueSummary::default();
        for row in rows {
            let count: i64 = row.try_get(2)?;
            s.by_status.push(StatusCount {
                status: row.try_get(0)?,
                change_type: row.try_get(1)?,
                count,
            });
            s.total += count;
            s.due += row.try_get::<i64, _>(3)?;
            s.not_yet_due += row.try_get::<i64, _>(4)?;
            s.stranded_executing += row.try_get::<i64, _>(5)?;
            s.with_unresolved_references += row.try_get::<i64, _>(6)?;
            s.executable += row.try_get::<i64, _>(7)?;
            let oldest: Option<DateTime<Utc>> = row.try_get(8)?;
            s.oldest_failure = match (s.oldest_failure, oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(s)
    }

    /// Returns rows left `Executing` for longer than `older_than` to Pending (use a zero duration to
    /// release every `Executing` row, only when no engine is running). One statement; returns the rows.
    pub async fn release_stranded(
        &self,
        connected_system_id: i32,
        older_than: Duration,
    ) -> Result<u64> {
        self.count(1);
        let done = sqlx::query(sql::RELEASE_STRANDED)
            .bind(connected_system_id)
            .bind(older_than.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Resets every Failed export of the system to Pending with `ErrorCount` 0 and the error fields and
    /// `NextRetryAt` cleared (JIM's `RetryFailedExportsAsync`). One statement; returns the rows.
    pub async fn reset_failed(&self, connected_system_id: i32) -> Result<u64> {
        self.count(1);
        let done = sqlx::query(sql::RESET_FAILED)
            .bind(connected_system_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
