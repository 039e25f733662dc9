//! One run's handle on one connected system's pending-export queue.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use super::claim::{self, BadRow, ClaimedExport, ClaimedPage, Cursor, Held, Pass};
use super::persist::{self, BareFailure, PersistReport, PersistedExport};
use super::resolve::{self, AnchorRow, ResolveSummary, Target};
use super::sql;
use super::system::SystemSchema;
use crate::error::Result;
use crate::model::{PendingExportChangeType, PendingExportStatus, ValueSlots};
use crate::outcome::ExportOutcome;

/// What a lease renewal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// Rows whose lease was renewed.
    pub renewed: usize,
    /// Rows this run held but no longer does (another engine took them over after the lease expired, or
    /// the row left `Executing`); the run must not persist them.
    pub lost: Vec<Uuid>,
}

/// A run's handle on one connected system's queue: claims pages, resolves references, renews leases,
/// persists outcomes and releases what it did not execute. It remembers the rows it holds (with the
/// `LastAttemptedAt` it gave each, the lease token), so every write is fenced: a row another engine took
/// over after an expired lease is never overwritten. Share it behind an `Arc`; every method takes `&self`
/// and several persists may be in flight at once.
#[derive(Debug)]
pub struct ExportQueue {
    store: Store,
    schema: Arc<SystemSchema>,
    lease_seconds: f64,
    held: Mutex<HashMap<Uuid, Held>>,
    /// Persists and releases hold it shared; a renewal holds it exclusively, so a persist never carries a
    /// lease token that a concurrent renewal has just replaced.
    gate: tokio::sync::RwLock<()>,
}

impl ExportQueue {
    pub(crate) fn new(store: Store, schema: SystemSchema, lease_seconds: u64) -> Self {
        Self {
            store,
            schema: Arc::new(schema),
            lease_seconds: lease_seconds as f64,
            held: Mutex::new(HashMap::new()),
            gate: tokio::sync::RwLock::new(()),
        }
    }

    /// The connected system's object types and attribute definitions (loaded once, when the queue was
    /// opened).
    pub fn schema(&self) -> &Arc<SystemSchema> {
        &self.schema
    }

    /// The connected system.
    pub fn connected_system_id(&self) -> i32 {
        self.schema.connected_system_id
    }

    /// Statements issued through this queue's store so far.
    pub fn statements(&self) -> u64 {
        self.store.statements()
    }

    /// Rows this run currently holds (claimed, not yet persisted or released).
    pub fn held_count(&self) -> usize {
        self.held().len()
    }

    fn held(&self) -> MutexGuard<'_, HashMap<Uuid, Held>> {
        // The map stays consistent even if a holder panicked: every update is a single insert or remove.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims the next page of `pass` after `after` (`None` for the first page): at most `limit`
    /// eligible exports in `("CreatedAt", "Id")` order, marked `Executing` with `LastAttemptedAt = now()`,
    /// skipping rows another engine holds, with their attribute value changes and CSO context. One
    /// statement. Rows left `Executing` longer than the lease are claimed again and flagged
    /// [`ClaimedExport::re_attempt`].
    pub async fn claim(
        &self,
        pass: Pass,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<ClaimedPage> {
        let limit = limit.max(1);
        let references = pass == Pass::References;
        let query = match after {
            None => sqlx::query(sql::CLAIM_FIRST),
            Some(_) => sqlx::query(sql::CLAIM_AFTER),
        };
        let mut query = query
            .bind(self.schema.connected_system_id)
            .bind(references)
            .bind(self.lease_seconds)
            .bind(i64::from(limit));
        if let Some(c) = after {
            query = query.bind(c.created_at).bind(c.id);
        }
        self.store.count(1);
        let rows = query.fetch_all(&self.store.pool).await?;
        let (page, keys) = claim::decode_page(&rows, &self.schema, limit as usize)?;
        let mut held = self.held();
        for k in keys {
            held.insert(k.id, k.held);
        }
        drop(held);
        for bad in &page.bad_rows {
            tracing::warn!(pending_export_id = %bad.pending_export_id, error = %bad.error, "claimed a row that cannot be read");
        }
        Ok(page)
    }

    /// A dry run's look at the next page of `pass` after `after`: what [`ExportQueue::claim`] would
    /// return, read without locking or marking anything and without the run holding the rows. One
    /// statement.
    pub async fn peek(&self, pass: Pass, after: Option<Cursor>, limit: u32) -> Result<ClaimedPage> {
        let limit = limit.max(1);
        let query = match after {
            None => sqlx::query(sql::PEEK_FIRST),
            Some(_) => sqlx::query(sql::PEEK_AFTER),
        };
        let mut query = query
            .bind(self.schema.connected_system_id)
            .bind(pass == Pass::References)
            .bind(self.lease_seconds)
            .bind(i64::from(limit));
        if let Some(c) = after {
            query = query.bind(c.created_at).bind(c.id);
        }
        self.store.count(1);
        let rows = query.fetch_all(&self.store.pool).await?;
        let (page, _keys) = claim::decode_page(&rows, &self.schema, limit as usize)?;
        Ok(page)
    }

    /// Resolves the unresolved reference changes of `exports` in one query: each referenced MVO's CSO in
    /// this connected system, its secondary anchor (the DN) preferred, the primary as fallback. Resolved
    /// changes are rewritten in place (`StringValue`, `UnresolvedReferenceValue = None`,
    /// `ResolvedReferenceCsoId`) and listed in [`ClaimedExport::resolutions`], which the persist step
    /// writes with the outcome; the others are listed in [`ClaimedExport::unresolved`] with their reason.
    /// No statement when nothing is unresolved.
    pub async fn resolve_references(
        &self,
        exports: &mut [ClaimedExport],
    ) -> Result<ResolveSummary> {
        let wanted = resolve::wanted_mvo_ids(exports);
        let mut targets: HashMap<Uuid, Target> = HashMap::new();
        if !wanted.is_empty() {
            let anchor_attributes = self.schema.anchor_attribute_ids();
            self.store.count(1);
            let rows = sqlx::query(sql::RESOLVE)
                .bind(self.schema.connected_system_id)
                .bind(&wanted)
                .bind(&anchor_attributes)
                .fetch_all(&self.store.pool)
                .await?;
            for row in rows {
                let mvo: Uuid = row.try_get(0)?;
                let cso_id: Uuid = row.try_get(1)?;
                let target = targets.entry(mvo).or_insert_with(|| Target {
                    cso_id,
                    anchors: Vec::new(),
                });
                if let Some(value_id) = row.try_get::<Option<Uuid>, _>(2)? {
                    target.anchors.push(AnchorRow {
                        value_id,
                        attribute_id: row.try_get(3)?,
                        value: ValueSlots {
                            string: row.try_get(4)?,
                            guid: row.try_get(5)?,
                            int: row.try_get(6)?,
                            long: row.try_get(7)?,
                            decimal: row.try_get(8)?,
                            ..ValueSlots::default()
                        },
                    });
                }
            }
        }
        Ok(resolve::apply(exports, &targets, &self.schema))
    }

    /// Renews the lease on every row this run holds (`LastAttemptedAt = now()`), so that no other engine
    /// takes them over while they are in flight. Call it well within the lease (e.g. every third of it).
    /// One statement (none when nothing is held).
    pub async fn renew_leases(&self) -> Result<LeaseRenewal> {
        let _exclusive = self.gate.write().await;
        let (ids, tokens): (Vec<Uuid>, Vec<DateTime<Utc>>) =
            self.held().iter().map(|(id, h)| (*id, h.token)).unzip();
        if ids.is_empty() {
            return Ok(LeaseRenewal::default());
        }
        self.store.count(1);
        let rows = sqlx::query(sql::RENEW)
            .bind(&ids)
            .bind(&tokens)
            .fetch_all(&self.store.pool)
            .await?;
        let mut renewed = HashMap::with_capacity(rows.len());
        for row in rows {
            renewed.insert(
                row.try_get::<Uuid, _>(0)?,
                row.try_get::<DateTime<Utc>, _>(1)?,
            );
        }
        let mut held = self.held();
        let mut lost = Vec::new();
        for id in ids {
            match renewed.get(&id) {
                Some(token) => {
                    if let Some(h) = held.get_mut(&id) {
                        h.token = *token;
                    }
                }
                None => {
                    held.remove(&id);
                    lost.push(id);
                }
            }
        }
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "rows were taken over after their lease expired"
            );
        }
        Ok(LeaseRenewal {
            renewed: renewed.len(),
            lost,
        })
    }

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
                    Some(h) if seen.insert(id) => entries.push((o, *h)),
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
            Err(e) if built.has_optimistic_rows => {
                tracing::warn!(error = %e, exports = entries.len(), "optimistic apply failed; persisting the outcomes without it");
                let retry = persist::build(&entries, &[], &self.schema, false);
                optimistic.failed += optimistic.applied;
                optimistic.applied = 0;
                self.run_persist(&retry.arrays).await?
            }
            Err(e) => return Err(e),
        };
        Ok(self.finish(
            entries.iter().map(|(o, _)| o.pending_export_id()),
            result,
            not_held,
            optimistic,
        ))
    }

    /// Records a failure for claimed rows that could not be read ([`ClaimedPage::bad_rows`]): `ErrorCount
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
                        token: h.token,
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

    async fn run_persist(&self, a: &persist::PersistArrays) -> Result<PersistReport> {
        self.store.count(1);
        let rows = sqlx::query(sql::PERSIST)
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
            .fetch_all(&self.store.pool)
            .await?;
        let mut report = PersistReport::default();
        for row in rows {
            let status: i32 = row.try_get(1)?;
            let change_type: i32 = row.try_get(2)?;
            report.persisted.push(PersistedExport {
                id: row.try_get(0)?,
                // The statement only writes Pending, Failed or Exported.
                status: PendingExportStatus::from_i32(status)
                    .unwrap_or(PendingExportStatus::Pending),
                change_type: PendingExportChangeType::from_i32(change_type).ok(),
                error_count: row.try_get(3)?,
                has_unresolved_references: row.try_get(4)?,
                next_retry_at: row.try_get(5)?,
            });
            report.changes_updated = row.try_get::<i64, _>(6)?.max(0) as u64;
            report.objects_touched = row.try_get::<i64, _>(7)?.max(0) as u64;
        }
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
            held.remove(&id);
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

    /// Returns claimed rows that were not executed (cancellation, shutdown) to the status and
    /// `LastAttemptedAt` they had before the claim; rows recovered from an expired lease go back to
    /// Pending. Rows not held are ignored. One statement; returns the number of rows restored.
    pub async fn release(&self, ids: &[Uuid]) -> Result<usize> {
        let _shared = self.gate.read().await;
        let entries: Vec<(Uuid, Held)> = {
            let held = self.held();
            ids.iter()
                .filter_map(|id| held.get(id).map(|h| (*id, *h)))
                .collect()
        };
        self.release_entries(entries).await
    }

    /// Releases every row this run still holds (see [`ExportQueue::release`]).
    pub async fn release_all(&self) -> Result<usize> {
        let _shared = self.gate.read().await;
        let entries: Vec<(Uuid, Held)> = self.held().iter().map(|(id, h)| (*id, *h)).collect();
        self.release_entries(entries).await
    }

    async fn release_entries(&self, entries: Vec<(Uuid, Held)>) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = entries.iter().map(|(id, _)| *id).collect();
        let tokens: Vec<DateTime<Utc>> = entries.iter().map(|(_, h)| h.token).collect();
        let prev: Vec<i32> = entries.iter().map(|(_, h)| h.previous_status).collect();
        let prev_at: Vec<Option<DateTime<Utc>>> = entries
            .iter()
            .map(|(_, h)| h.previous_attempted_at)
            .collect();
        self.store.count(1);
        let rows = sqlx::query(sql::RELEASE)
            .bind(&ids)
            .bind(&tokens)
            .bind(&prev)
            .bind(&prev_at)
            .fetch_all(&self.store.pool)
            .await?;
        let mut held = self.held();
        for id in &ids {
            held.remove(id);
        }
        Ok(rows.len())
    }
}
