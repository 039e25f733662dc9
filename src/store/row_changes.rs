//! The row changes that JIM's semantics require for a set of successful exports, as plain data: which
//! pending exports end `Exported`, which attribute value changes were written or resolved, and what the
//! anchor write-back and optimistic apply do to the CSOs' attribute values.
//!
//! The persist statement ([`ExportQueue::persist`](super::ExportQueue::persist)) derives the same
//! changes inside PostgreSQL, fenced by the lease and with JIM's state machine for partial writes,
//! failures and deferrals. This form exists for the benchmark's *floor*: the cheapest way to write
//! exactly these rows is the bound the persist statement is measured against.

use uuid::Uuid;

use super::apply::{self, Anchors};
use super::outcome::{Disposition, ExportOutcome};
use super::system::SystemSchema;
use crate::model::{PendingExportAttributeChangeStatus, PendingExportChangeType, ValueSlots};

/// One row of `ConnectedSystemObjectAttributeValues` to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRowChange {
    /// The row's `Id` (a new id when `is_new`).
    pub id: Uuid,
    /// Insert (true) or update in place (false).
    pub is_new: bool,
    /// The CSO the row belongs to.
    pub cso_id: Uuid,
    /// `AttributeId`.
    pub attribute_id: i32,
    /// The typed value slots.
    pub value: ValueSlots,
    /// `ReferenceValueId`: the referenced CSO.
    pub reference_value_id: Option<Uuid>,
    /// `UnresolvedReferenceValue`: the referenced DN, kept beside the id.
    pub unresolved_reference_value: Option<String>,
}

/// A reference change resolved during the run: its `StringValue` becomes the DN, its
/// `UnresolvedReferenceValue` is cleared and `ResolvedReferenceCsoId` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The attribute value change.
    pub change_id: Uuid,
    /// The resolved DN.
    pub value: String,
    /// The referenced CSO.
    pub cso_id: Uuid,
}

/// The row changes of a set of successful exports (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowChanges {
    /// Pending exports that end `Exported` (everything owed was written).
    pub exported: Vec<Uuid>,
    /// Attribute value changes that move to ExportedPendingConfirmation with `ExportAttemptCount + 1`
    /// and `LastExportedAt = now()` (written while Pending or ExportedNotConfirmed).
    pub written: Vec<Uuid>,
    /// Reference changes resolved during the run.
    pub resolutions: Vec<Resolution>,
    /// CSO attribute value rows to delete.
    pub value_deletes: Vec<Uuid>,
    /// CSO attribute value rows to update or insert.
    pub value_rows: Vec<ValueRowChange>,
    /// CSOs whose attribute values change (their `ImportStateHash` and `ImportStateFingerprint` are
    /// cleared), each once.
    pub touched_csos: Vec<Uuid>,
    /// Outcomes these changes do not model (failures, deferrals, partial writes): their pending
    /// exports, listed so a caller can refuse them.
    pub not_modelled: Vec<Uuid>,
}

/// The row changes of `outcomes` (successful ones; others are listed in `not_modelled`).
pub fn row_changes(outcomes: &[ExportOutcome], schema: &SystemSchema) -> RowChanges {
    let mut rc = RowChanges::default();
    let mut touched = std::collections::HashSet::new();
    for outcome in outcomes {
        let claimed = &outcome.export;
        let export = &claimed.export;
        let Disposition::Succeeded(success) = &outcome.result else {
            rc.not_modelled.push(export.id);
            continue;
        };
        let written: std::collections::HashSet<&Uuid> = success.written_changes.iter().collect();
        // The persist statement's rule: a success ends Exported when it is a Delete or when no change
        // that was Pending or ExportedNotConfirmed is left unwritten.
        let owes = export.attribute_changes.iter().any(|c| {
            matches!(
                c.status,
                PendingExportAttributeChangeStatus::Pending
                    | PendingExportAttributeChangeStatus::ExportedNotConfirmed
            ) && !written.contains(&c.id)
        });
        if owes && export.change_type != PendingExportChangeType::Delete {
            rc.not_modelled.push(export.id);
            continue;
        }
        rc.exported.push(export.id);
        for c in &export.attribute_changes {
            if written.contains(&c.id)
                && matches!(
                    c.status,
                    PendingExportAttributeChangeStatus::Pending
                        | PendingExportAttributeChangeStatus::ExportedNotConfirmed
                )
            {
                rc.written.push(c.id);
            }
        }
        rc.resolutions
            .extend(claimed.resolutions.iter().map(|r| Resolution {
                change_id: r.change_id,
                value: r.value.clone(),
                cso_id: r.cso_id,
            }));
        let Some(cso) = claimed.cso.as_ref() else {
            continue;
        };
        let optimistic = export.change_type != PendingExportChangeType::Delete;
        let (delta, _) = apply::cso_delta(
            cso,
            &export.attribute_changes,
            &success.written_changes,
            optimistic,
            Anchors {
                external_id: success.external_id.as_deref(),
                secondary_external_id: success.secondary_external_id.as_deref(),
            },
            schema,
        );
        if (!delta.deletes.is_empty() || !delta.upserts.is_empty()) && touched.insert(cso.id) {
            rc.touched_csos.push(cso.id);
        }
        rc.value_deletes.extend(delta.deletes);
        rc.value_rows
            .extend(delta.upserts.into_iter().map(|r| ValueRowChange {
                id: r.id,
                is_new: r.is_new,
                cso_id: cso.id,
                attribute_id: r.attribute_id,
                value: r.value,
                reference_value_id: r.reference_value_id,
                unresolved_reference_value: r.unresolved_reference_value,
            }));
    }
    rc
}
