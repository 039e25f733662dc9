//! Turning a flush of outcomes into the arrays of the one persist statement (`sql::PERSIST`), and what
//! the statement reports back.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::apply::{self, Anchors};
use super::claim::Held;
use super::outcome::{Disposition, ExportOutcome};
use super::system::SystemSchema;
use crate::model::{PendingExportChangeType, PendingExportStatus};

/// The retry delay after a failed attempt: `min(2^error_count, 60)` minutes, where `error_count` is the
/// count *after* the failure was added (JIM's `CalculateNextRetryTime`). The persist statement computes
/// the same in SQL from the row; this is the reference for tests and reports.
pub fn retry_delay(error_count: i32) -> chrono::Duration {
    let n = error_count.clamp(0, 6) as u32;
    chrono::Duration::minutes(i64::from((1u32 << n).min(60)))
}

/// The delay before a deferred or partly written export is looked at again (JIM: 5 minutes).
pub const DEFERRAL_DELAY_MINUTES: i64 = 5;

/// One export as the persist statement left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedExport {
    /// The pending export.
    pub id: Uuid,
    /// Its new status: Exported, Pending (retry, deferral, partial write, or changes still owed) or Failed.
    pub status: PendingExportStatus,
    /// Its change type now (a Create that created the object but still owes something is an Update);
    /// `None` when the row holds a number JIM does not define (a bad row).
    pub change_type: Option<PendingExportChangeType>,
    /// `ErrorCount` now.
    pub error_count: i32,
    /// `HasUnresolvedReferences` now.
    pub has_unresolved_references: bool,
    /// `NextRetryAt` now.
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Optimistic-apply counters for a flush (JIM's `OptimisticApply*` result fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptimisticApplyCounts {
    /// Successful exports whose written values were mirrored onto their CSO.
    pub applied: usize,
    /// Successful exports not applied: Deletes and exports without a CSO.
    pub skipped: usize,
    /// Exports whose apply failed (logged as a warning; the exports still succeeded).
    pub failed: usize,
    /// Changes left out because their reference is still unresolved.
    pub unresolved_references: usize,
}

impl OptimisticApplyCounts {
    /// Adds another flush's counters.
    pub fn add(&mut self, other: &OptimisticApplyCounts) {
        self.applied += other.applied;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.unresolved_references += other.unresolved_references;
    }
}

/// What one persist call wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersistReport {
    /// The exports written, with their new state.
    pub persisted: Vec<PersistedExport>,
    /// Outcomes not written because this run no longer holds the row: its lease was taken over by
    /// another engine (or the row changed status), it was never claimed by this queue, or it was already
    /// persisted or released.
    pub not_held: Vec<Uuid>,
    /// Attribute value change rows updated (written, resolved, or both).
    pub changes_updated: u64,
    /// CSOs whose attribute values changed (anchor write-back, new DN, optimistic apply); their import
    /// hash and fingerprint are now NULL.
    pub objects_touched: u64,
    /// Optimistic-apply counters.
    pub optimistic_apply: OptimisticApplyCounts,
    /// This flush's number among the run's committed flushes (1 for the first; 0 when nothing was
    /// written): a page whose [`ClaimedPage::flushes_before`](crate::store::ClaimedPage::flushes_before)
    /// is at least this read what it wrote.
    pub flush: u64,
}

/// The bind arrays of `sql::PERSIST`.
#[derive(Debug, Default)]
pub(crate) struct PersistArrays {
    pub pe_id: Vec<Uuid>,
    pub pe_token: Vec<String>,
    pub pe_kind: Vec<i32>,
    pub pe_msg: Vec<Option<String>>,
    pub pe_exists: Vec<bool>,
    pub pe_trace: Vec<Option<String>>,
    pub avc_id: Vec<Uuid>,
    pub avc_pe: Vec<Uuid>,
    pub avc_written: Vec<bool>,
    pub avc_resolved: Vec<bool>,
    pub avc_sval: Vec<Option<String>>,
    pub avc_rcso: Vec<Option<Uuid>>,
    pub del_id: Vec<Uuid>,
    pub del_pe: Vec<Uuid>,
    pub cv_id: Vec<Uuid>,
    pub cv_pe: Vec<Uuid>,
    pub cv_cso: Vec<Uuid>,
    pub cv_attr: Vec<i32>,
    pub cv_new: Vec<bool>,
    pub cv_s: Vec<Option<String>>,
    pub cv_d: Vec<Option<DateTime<Utc>>>,
    pub cv_i: Vec<Option<i32>>,
    pub cv_l: Vec<Option<i64>>,
    pub cv_dec: Vec<Option<Decimal>>,
    pub cv_b: Vec<Option<Vec<u8>>>,
    pub cv_g: Vec<Option<Uuid>>,
    pub cv_bool: Vec<Option<bool>>,
    pub cv_ref: Vec<Option<Uuid>>,
    pub cv_unres: Vec<Option<String>>,
    /// CSOs whose values change, with their export: their import hash is cleared.
    pub touch_cso: Vec<Uuid>,
    pub touch_pe: Vec<Uuid>,
}

/// Outcome kinds as the persist statement numbers them.
pub(crate) const KIND_SUCCEEDED: i32 = 0;
pub(crate) const KIND_FAILED: i32 = 1;
pub(crate) const KIND_DEFERRED: i32 = 2;

/// An entry for a row that is only failed (a bad row): no changes, no CSO work.
pub(crate) struct BareFailure {
    pub id: Uuid,
    pub token: String,
    pub trace: Option<String>,
    pub message: String,
}

/// The arrays for a flush, and what optimistic apply will do.
pub(crate) struct Built {
    pub arrays: PersistArrays,
    pub optimistic: OptimisticApplyCounts,
    /// True when the arrays carry optimistic-apply rows (so a failed statement can be retried without).
    pub has_optimistic_rows: bool,
}

/// Builds the arrays for `outcomes` whose rows are held (`tokens`), computing each CSO's delta from the
/// values loaded at claim time. With `optimistic == false` only the anchor write-back is included.
pub(crate) fn build(
    outcomes: &[(&ExportOutcome, Held)],
    bare: &[BareFailure],
    schema: &SystemSchema,
    optimistic: bool,
) -> Built {
    let mut a = PersistArrays::default();
    let mut counts = OptimisticApplyCounts::default();
    let mut has_optimistic_rows = false;
    for (outcome, held) in outcomes {
        let claimed = &outcome.export;
        let pe = claimed.export.id;
        let (kind, msg, exists, written, anchors): (
            i32,
            Option<String>,
            bool,
            &[Uuid],
            Anchors<'_>,
        ) = match &outcome.result {
            Disposition::Succeeded(s) => (
                KIND_SUCCEEDED,
                None,
                false,
                &s.written_changes,
                Anchors {
                    external_id: s.external_id.as_deref(),
                    secondary_external_id: s.secondary_external_id.as_deref(),
                },
            ),
            Disposition::Failed(f) => (
                KIND_FAILED,
                Some(f.message.clone()),
                f.progress.object_exists,
                &f.progress.written_changes,
                Anchors {
                    external_id: f.progress.external_id.as_deref(),
                    secondary_external_id: f.progress.secondary_external_id.as_deref(),
                },
            ),
            Disposition::Deferred => (KIND_DEFERRED, None, false, &[], Anchors::default()),
        };
        a.pe_id.push(pe);
        a.pe_token.push(held.token.clone());
        a.pe_kind.push(kind);
        a.pe_msg.push(msg);
        a.pe_exists.push(exists);
        a.pe_trace.push(held.trace_after(kind, held.dispatched));

        // Written marks and resolutions, merged per change so each change row is updated once.
        let known: HashSet<Uuid> = claimed
            .export
            .attribute_changes
            .iter()
            .map(|c| c.id)
            .collect();
        // Per change: written, and the resolution (value, CSO) if any.
        type Marks<'a> = (bool, Option<(&'a str, Uuid)>);
        let mut per_change: HashMap<Uuid, Marks<'_>> = HashMap::new();
        for id in written.iter().filter(|id| known.contains(id)) {
            per_change.entry(*id).or_default().0 = true;
        }
        for r in &claimed.resolutions {
            per_change.entry(r.change_id).or_default().1 = Some((r.value.as_str(), r.cso_id));
        }
        for (id, (w, r)) in per_change {
            a.avc_id.push(id);
            a.avc_pe.push(pe);
            a.avc_written.push(w);
            a.avc_resolved.push(r.is_some());
            a.avc_sval.push(r.map(|(s, _)| s.to_owned()));
            a.avc_rcso.push(r.map(|(_, c)| c));
        }

        let is_delete = claimed.export.change_type == PendingExportChangeType::Delete;
        let apply_here = kind == KIND_SUCCEEDED && !is_delete;
        let Some(cso) = claimed.cso.as_ref() else {
            if kind == KIND_SUCCEEDED {
                counts.skipped += 1;
            }
            continue;
        };
        if kind == KIND_SUCCEEDED && is_delete {
            counts.skipped += 1;
        }
        let (delta, n) = apply::cso_delta(
            cso,
            &claimed.export.attribute_changes,
            written,
            apply_here && optimistic,
            anchors,
            schema,
        );
        if apply_here && optimistic {
            counts.applied += 1;
            counts.unresolved_references += n.unresolved;
            has_optimistic_rows |= n.applied_changes > 0;
        }
        if !delta.deletes.is_empty() || !delta.upserts.is_empty() {
            a.touch_cso.push(cso.id);
            a.touch_pe.push(pe);
        }
        for id in delta.deletes {
            a.del_id.push(id);
            a.del_pe.push(pe);
        }
        for row in delta.upserts {
            a.cv_id.push(row.id);
            a.cv_pe.push(pe);
            a.cv_cso.push(cso.id);
            a.cv_attr.push(row.attribute_id);
            a.cv_new.push(row.is_new);
            let v = row.value;
            a.cv_s.push(v.string);
            a.cv_d.push(v.date_time);
            a.cv_i.push(v.int);
            a.cv_l.push(v.long);
            a.cv_dec.push(v.decimal);
            a.cv_b.push(v.bytes);
            a.cv_g.push(v.guid);
            a.cv_bool.push(v.boolean);
            a.cv_ref.push(row.reference_value_id);
            a.cv_unres.push(row.unresolved_reference_value);
        }
    }
    for f in bare {
        a.pe_id.push(f.id);
        a.pe_token.push(f.token.clone());
        a.pe_kind.push(KIND_FAILED);
        a.pe_msg.push(Some(f.message.clone()));
        a.pe_exists.push(false);
        a.pe_trace.push(f.trace.clone());
    }
    Built {
        arrays: a,
        optimistic: counts,
        has_optimistic_rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_sixty_minute_cap() {
        let minutes: Vec<i64> = (1..=8).map(|n| retry_delay(n).num_minutes()).collect();
        assert_eq!(minutes, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0).num_minutes(), 1);
        assert_eq!(retry_delay(i32::MAX).num_minutes(), 60);
        assert_eq!(retry_delay(-3).num_minutes(), 1);
    }
}
