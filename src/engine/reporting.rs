//! Turning persisted outcomes into the host's batch report items and the run's counters.

use std::collections::HashMap;

use uuid::Uuid;

use crate::model::{
    ActivityRunProfileExecutionItemErrorType, PendingExportChangeType, UnresolvedReferenceHandling,
    UnresolvedReferenceReason,
};
use crate::report::{AnchorChange, Counters, ItemStatus, ReportItem};
use crate::store::outcome::{Disposition, ExportOutcome};
use crate::store::{PersistReport, PersistedExport, SystemSchema};

/// Builds one report item per persisted outcome, counting as it goes. Outcomes whose rows this run no
/// longer held (another engine took them over) are counted and left out.
pub(crate) fn build_items(
    outcomes: &[ExportOutcome],
    report: &PersistReport,
    schema: &SystemSchema,
    handling: UnresolvedReferenceHandling,
    counters: &mut Counters,
) -> Vec<ReportItem> {
    let persisted: HashMap<Uuid, &PersistedExport> =
        report.persisted.iter().map(|p| (p.id, p)).collect();
    counters.optimistic_applied += report.optimistic_apply.applied as u64;
    counters.optimistic_skipped += report.optimistic_apply.skipped as u64;
    counters.optimistic_failed += report.optimistic_apply.failed as u64;
    counters.optimistic_unresolved += report.optimistic_apply.unresolved_references as u64;
    let mut items = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let Some(after) = persisted.get(&outcome.pending_export_id()) else {
            counters.not_held += 1;
            continue;
        };
        items.push(item(outcome, after, schema, handling, counters));
    }
    items
}

fn item(
    outcome: &ExportOutcome,
    after: &PersistedExport,
    schema: &SystemSchema,
    handling: UnresolvedReferenceHandling,
    counters: &mut Counters,
) -> ReportItem {
    let claimed = &outcome.export;
    let export = &claimed.export;
    if claimed.re_attempt {
        counters.recovered += 1;
    }
    let unresolvable: Vec<_> = claimed
        .unresolved
        .iter()
        .filter(|u| u.reason == UnresolvedReferenceReason::NotInTargetSystem)
        .collect();
    counters.unresolvable_references += unresolvable.len() as u64;
    let (status, written, error_message, error_type, external_id, secondary, created) =
        match &outcome.result {
            Disposition::Succeeded(s) => {
                let status = if after.has_unresolved_references {
                    ItemStatus::PartlyWritten
                } else {
                    ItemStatus::Succeeded
                };
                (
                    status,
                    s.written_changes.clone(),
                    None,
                    None,
                    s.external_id.clone(),
                    s.secondary_external_id.clone(),
                    export.change_type == PendingExportChangeType::Create,
                )
            }
            Disposition::Failed(f) => (
                ItemStatus::Failed,
                f.progress.written_changes.clone(),
                Some(f.message.clone()),
                Some(f.error_type),
                f.progress.external_id.clone(),
                f.progress.secondary_external_id.clone(),
                export.change_type == PendingExportChangeType::Create && f.progress.object_exists,
            ),
            Disposition::Deferred => (
                ItemStatus::Deferred,
                Vec::new(),
                None,
                None,
                None,
                None,
                false,
            ),
        };
    match status {
        ItemStatus::Succeeded => counters.succeeded += 1,
        ItemStatus::PartlyWritten => {
            counters.succeeded += 1;
            counters.partly_written += 1;
        }
        ItemStatus::Failed => counters.failed += 1,
        ItemStatus::Deferred => counters.deferred += 1,
    }

    let mut anchor_changes = Vec::new();
    if let Some(cso) = &claimed.cso {
        if let Some(new) = external_id.filter(|v| !v.is_empty()) {
            let old = claimed.primary_anchor();
            if old.as_deref() != Some(new.as_str()) {
                anchor_changes.push(AnchorChange {
                    attribute_id: cso.external_id_attribute_id,
                    attribute_name: attribute_name(schema, cso.external_id_attribute_id),
                    old_value: old,
                    new_value: new,
                });
            }
        }
        if let (Some(new), Some(attr)) = (
            secondary.filter(|v| !v.is_empty()),
            cso.secondary_external_id_attribute_id,
        ) {
            let old = claimed.current_dn().map(str::to_string);
            if old.as_deref() != Some(new.as_str()) {
                anchor_changes.push(AnchorChange {
                    attribute_id: attr,
                    attribute_name: attribute_name(schema, attr),
                    old_value: old,
                    new_value: new,
                });
            }
        }
    }

    let unresolved_reference_note =
        (handling == UnresolvedReferenceHandling::Error && !unresolvable.is_empty()).then(|| {
            unresolved_note(
                &unresolvable
                    .iter()
                    .map(|u| {
                        (
                            attribute_name(schema, u.attribute_id),
                            u.metaverse_object_id.as_str(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        });
    let run_history_error_type = match (&error_type, &unresolved_reference_note) {
        (Some(t), _) => Some(t.run_history_error_type()),
        (None, Some(_)) => Some(ActivityRunProfileExecutionItemErrorType::UnresolvedReference),
        (None, None) => None,
    };
    ReportItem {
        pending_export_id: export.id,
        change_type: export.change_type,
        connected_system_object_id: export.connected_system_object_id,
        status,
        object_change_type: ReportItem::object_change_type_for(export.change_type, status),
        error_message,
        error_type,
        run_history_error_type,
        error_count: after.error_count,
        written_change_ids: written,
        attribute_change_count: export.attribute_changes.len() as u32,
        source_metaverse_object_id: export.source_metaverse_object_id,
        queued_by_run_profile_execution_item_id: export.queued_by_run_profile_execution_item_id,
        provisioning_sync_rule_id: export.provisioning_sync_rule_id,
        provisioned: created,
        anchor_changes,
        unresolved_reference_note,
    }
}

fn attribute_name(schema: &SystemSchema, id: i32) -> String {
    schema
        .attribute(id)
        .map_or_else(|| format!("attribute {id}"), |a| a.name.clone())
}

/// The note JIM attaches, under Error handling, to an export whose references name objects that have
/// no CSO in the target system: each reference as `attribute -> MVO id`, the first three named.
pub(crate) fn unresolved_note(references: &[(String, &str)]) -> String {
    const SHOWN: usize = 3;
    let described: Vec<String> = references
        .iter()
        .map(|(attr, mvo)| format!("{attr} -> {mvo}"))
        .collect();
    let mut summary = described
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if described.len() > SHOWN {
        summary.push_str(&format!("; and {} more", described.len() - SHOWN));
    }
    format!(
        "{} reference value(s) could not be written because the referenced Metaverse Object has no Connected \
         System Object in this Connected System: {summary}. The referenced object is out of scope for every \
         Synchronisation Rule into this system, or has not been provisioned yet. Everything else on this export \
         was written; the reference is retried on the deferred cadence and written when the object appears.",
        described.len()
    )
}

/// The item for a claimed row the engine could not read (its failure was persisted as such).
pub(crate) fn bad_row_item(
    persisted: &PersistedExport,
    bad_rows: &[crate::store::BadRow],
) -> ReportItem {
    let message = bad_rows
        .iter()
        .find(|b| b.pending_export_id == persisted.id)
        .map(|b| format!("jim-export cannot read this pending export: {}", b.error));
    let change_type = persisted
        .change_type
        .unwrap_or(PendingExportChangeType::Update);
    ReportItem {
        pending_export_id: persisted.id,
        change_type,
        connected_system_object_id: None,
        status: ItemStatus::Failed,
        object_change_type: ReportItem::object_change_type_for(change_type, ItemStatus::Failed),
        error_message: message,
        error_type: Some(crate::model::ConnectedSystemExportErrorType::General),
        run_history_error_type: Some(ActivityRunProfileExecutionItemErrorType::UnhandledError),
        error_count: persisted.error_count,
        written_change_ids: Vec::new(),
        attribute_change_count: 0,
        source_metaverse_object_id: None,
        queued_by_run_profile_execution_item_id: None,
        provisioning_sync_rule_id: None,
        provisioned: false,
        anchor_changes: Vec::new(),
        unresolved_reference_note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_three_references_then_counts_the_rest() {
        let refs: Vec<(String, &str)> = (0..5).map(|i| (format!("member{i}"), "mvo")).collect();
        let note = unresolved_note(&refs);
        assert!(
            note.starts_with("5 reference value(s) could not be written"),
            "{note}"
        );
        assert!(
            note.contains("member0 -> mvo; member1 -> mvo; member2 -> mvo; and 2 more"),
            "{note}"
        );
    }
}
