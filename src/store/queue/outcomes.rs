//! Writing a flush's outcomes back: the one persist statement per flush (`sql::PERSIST`), fenced on
//! the rows this run still holds, ridden across a database restart, and read back when its answer was
//! lost; and failing rows that could not be read.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::ExportQueue;
use crate::error::{Error, Result};
use crate::model::{PendingExportChangeType, PendingExportStatus};
use crate::store::claim::BadRow;
use crate::store::outcome::ExportOutcome;
use crate::store::persist::{self, BareFailure, PersistReport, PersistedExport};
use crate::store::retry::{self, with_retries};
use crate::store::sql;

impl ExportQueue {
    /// Persists a flush of outcomes in one atomic statement, keyed by pending export and attribute value
    /// change ids, with JIM's exact column values (schema.md §5.6, export-semantics §2.5, §2.7): status,
    /// change type, error count and backoff, written-change status, reference resolutions, the anchor and
    /// DN write-back in their typed slots, optimistic apply, and the import hash cleared on every CSO
    /// whose values changed. Outcomes of rows this run no longer holds are left out and listed in
    /// [`PersistReport::not_held`]. If the statement fails and it carried optimistic-apply rows, it is
    /// retried once without them (the failure is logged and counted, never fails the exports).
    ///
    /// A change JIM's sync staged on a claimed row after the claim is not among the written ones: it
    /// stays Pending and the export ends Pending, due now (a Create that went through becomes an
    /// Update). The statement sees changes committed before it starts; one committed while it runs
    /// is left Pending on an Exported row, which JIM's confirming import turns back to Pending.
    pub async fn persist(&self, outcomes: &[ExportOutcome]) -> Result<PersistReport> {
        let _shared = self.gate.read().await;
        let mut not_held = Vec::new();
        let mut seen = HashSet::with_capacity(outcomes.len());
        let mut entries = Vec::with_capacity(outcomes.len());
        {
            let held = self.held();
            for o in outcomes {
                let id = o.pending_export_id();
                match held.get(&id) {
                    Some(h) if seen.insert(id) => entries.push((o, h.clone())),
                    _ => not_held.push(id),
                }
            }
        }
        if entries.is_empty() {
            return Ok(PersistReport {
                not_held,
                ..PersistReport::default()
            });
        }
        let built = persist::build(&entries, &[], &self.schema, true);
        let mut optimistic = built.optimistic;
        let attempt = self.run_persist(&built.arrays).await;
        let result = match attempt {
            Ok(r) => r,
            Err(e) if built.has_optimistic_rows && !matches!(e, Error::DatabaseUnavailable(_)) => {
                tracing::warn!(error = %e, exports = entries.len(), "optimistic apply failed; persisting the outcomes without it");
                let retry = persist::build(&entries, &[], &self.schema, false);
                optimistic.failed += optimistic.applied;
                optimistic.applied = 0;
                self.run_persist(&retry.arrays).await?
            }
            Err(e) => return Err(e),
        };
        let mut report = self.finish(
            entries.iter().map(|(o, _)| o.pending_export_id()),
            result,
            not_held,
            optimistic,
        );
        // Numbered after the commit, so a claim that reads the count sees what every flush up to
        // that number wrote.
        report.flush = self.flushes.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(report)
    }

    /// Records a failure for claimed rows that could not be read ([`ClaimedPage::bad_rows`](crate::store::ClaimedPage::bad_rows)): `ErrorCount
    /// + 1`, backoff, and the problem (naming the table, row and column) as `LastErrorMessage`, so an
    /// operator sees it and the row reaches Failed after `MaxRetries` attempts. One statement.
    pub async fn fail_bad_rows(&self, bad_rows: &[BadRow]) -> Result<PersistReport> {
        let _shared = self.gate.read().await;
        let mut not_held = Vec::new();
        let mut bare = Vec::new();
        {
            let held = self.held();
            for b in bad_rows {
                match held.get(&b.pending_export_id) {
                    Some(h) => bare.push(BareFailure {
                        id: b.pending_export_id,
                        token: h.token.clone(),
                        trace: h.trace_after(persist::KIND_FAILED, false),
                        message: format!("jim-export cannot read this pending export: {}", b.error),
                    }),
                    None => not_held.push(b.pending_export_id),
                }
            }
        }
        if bare.is_empty() {
            return Ok(PersistReport {
                not_held,
                ..PersistReport::default()
            });
        }
        let built = persist::build(&[], &bare, &self.schema, false);
        let result = self.run_persist(&built.arrays).await?;
        Ok(self.finish(
            bare.iter().map(|b| b.id),
            result,
            not_held,
            built.optimistic,
        ))
    }

    /// Sends the persist statement, again across a database restart. When a try failed after the
    /// statement may have committed, rows the last try did not write are read back: those no longer
    /// `Executing` were written by the earlier try and are reported as persisted.
    async fn run_persist(&self, a: &persist::PersistArrays) -> Result<PersistReport> {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let rows: Vec<PgRow> = with_retries(
            self.store.policy(),
            "persisting outcomes",
            || {
                tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.store.count(1);
                sqlx::query(sql::PERSIST)
                    .bind(&a.pe_id)
                    .bind(&a.pe_token)
                    .bind(&a.pe_kind)
                    .bind(&a.pe_msg)
                    .bind(&a.pe_exists)
                    .bind(&a.avc_id)
                    .bind(&a.avc_pe)
                    .bind(&a.avc_written)
                    .bind(&a.avc_resolved)
                    .bind(&a.avc_sval)
                    .bind(&a.avc_rcso)
                    .bind(&a.del_id)
                    .bind(&a.del_pe)
                    .bind(&a.cv_id)
                    .bind(&a.cv_pe)
                    .bind(&a.cv_cso)
                    .bind(&a.cv_attr)
                    .bind(&a.cv_new)
                    .bind(&a.cv_s)
                    .bind(&a.cv_d)
                    .bind(&a.cv_i)
                    .bind(&a.cv_l)
                    .bind(&a.cv_dec)
                    .bind(&a.cv_b)
                    .bind(&a.cv_g)
                    .bind(&a.cv_bool)
                    .bind(&a.cv_ref)
                    .bind(&a.cv_unres)
                    .bind(&a.pe_trace)
                    .bind(&a.touch_cso)
                    .bind(&a.touch_pe)
                    .fetch_all(&self.store.pool)
            },
            retry::nothing,
        )
        .await?;
        let mut report = PersistReport::default();
        for row in &rows {
            report.persisted.push(persisted_export(row)?);
        }
        if tries.load(std::sync::atomic::Ordering::Relaxed) > 1
            && report.persisted.len() < a.pe_id.len()
        {
            let written: HashSet<Uuid> = report.persisted.iter().map(|p| p.id).collect();
            let missing: Vec<Uuid> = a
                .pe_id
                .iter()
                .copied()
                .filter(|id| !written.contains(id))
                .collect();
            let earlier: Vec<PgRow> = with_retries(
                self.store.policy(),
                "reading back persisted outcomes",
                || {
                    self.store.count(1);
                    sqlx::query(sql::PERSISTED_STATE)
                        .bind(&missing)
                        .fetch_all(&self.store.pool)
                },
                retry::nothing,
            )
            .await?;
            for row in &earlier {
                report.persisted.push(persisted_export(row)?);
            }
            if !earlier.is_empty() {
                tracing::info!(
                    rows = earlier.len(),
                    "outcomes written by a persist whose answer was lost"
                );
            }
        }
        // The child rows written are those of the exports written.
        let written: HashSet<Uuid> = report.persisted.iter().map(|p| p.id).collect();
        report.changes_updated = a.avc_pe.iter().filter(|pe| written.contains(pe)).count() as u64;
        report.objects_touched = a
            .touch_cso
            .iter()
            .zip(&a.touch_pe)
            .filter(|(_, pe)| written.contains(pe))
            .map(|(cso, _)| cso)
            .collect::<HashSet<_>>()
            .len() as u64;
        Ok(report)
    }

    /// Drops persisted and lost rows from the held set and completes the report.
    fn finish(
        &self,
        sent: impl Iterator<Item = Uuid>,
        mut report: PersistReport,
        mut not_held: Vec<Uuid>,
        optimistic: persist::OptimisticApplyCounts,
    ) -> PersistReport {
        let written: HashSet<Uuid> = report.persisted.iter().map(|p| p.id).collect();
        let mut held = self.held();
        for id in sent {
            if let Some(h) = held.remove(&id) {
                h.fence.lose();
            }
            if !written.contains(&id) {
                not_held.push(id);
            }
        }
        drop(held);
        if !not_held.is_empty() {
            tracing::warn!(
                count = not_held.len(),
                "outcomes of rows this run no longer holds were not written"
            );
        }
        report.not_held = not_held;
        report.optimistic_apply = optimistic;
        report
    }
}

/// One row of a persist's answer (`sql::PERSIST`, `sql::PERSISTED_STATE`).
fn persisted_export(row: &PgRow) -> Result<PersistedExport> {
    let status: i32 = row.try_get(1)?;
    let change_type: i32 = row.try_get(2)?;
    Ok(PersistedExport {
        id: row.try_get(0)?,
        // The statement only writes Pending, Failed or Exported.
        status: PendingExportStatus::from_i32(status).unwrap_or(PendingExportStatus::Pending),
        change_type: PendingExportChangeType::from_i32(change_type).ok(),
        error_count: row.try_get(3)?,
        has_unresolved_references: row.try_get(4)?,
        next_retry_at: row.try_get(5)?,
    })
}
