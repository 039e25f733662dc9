//! Pending exports and their attribute value changes (`PendingExports`, `PendingExportAttributeValueChanges`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enums::{
    PendingExportAttributeChangeStatus, PendingExportAttributeChangeType, PendingExportChangeType,
    PendingExportStatus,
};
use super::value::ValueSlots;

/// JIM's default `MaxRetries` for a pending export (the model initialiser; the column has no default).
pub const DEFAULT_MAX_RETRIES: i32 = 5;

/// One row of `PendingExports`: a Create, Update or Delete owed to one connected system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingExport {
    /// `Id`.
    pub id: Uuid,
    /// `ConnectedSystemId`: the target system.
    pub connected_system_id: i32,
    /// `ConnectedSystemObjectId`: the target CSO (NULL only for a Delete whose CSO is gone).
    pub connected_system_object_id: Option<Uuid>,
    /// `ChangeType`.
    pub change_type: PendingExportChangeType,
    /// `Status`.
    pub status: PendingExportStatus,
    /// `ErrorCount`: failed attempts so far.
    pub error_count: i32,
    /// `MaxRetries`: the export becomes `Failed` when `ErrorCount` reaches it.
    pub max_retries: i32,
    /// `LastAttemptedAt`.
    pub last_attempted_at: Option<DateTime<Utc>>,
    /// `NextRetryAt`: not eligible before this instant.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// `LastErrorMessage`.
    pub last_error_message: Option<String>,
    /// `LastErrorStackTrace`.
    pub last_error_stack_trace: Option<String>,
    /// `SourceMetaverseObjectId`: the MVO whose change caused this export.
    pub source_metaverse_object_id: Option<Uuid>,
    /// `HasUnresolvedReferences`: some change still holds an MVO id instead of a value.
    pub has_unresolved_references: bool,
    /// `CreatedAt`: keyset ordering column, together with `Id`.
    pub created_at: DateTime<Utc>,
    /// `ProvisioningSyncRuleId`: set on provisioning Creates.
    pub provisioning_sync_rule_id: Option<i32>,
    /// `QueuedByRunProfileExecutionItemId`: the run-history item that staged this export.
    pub queued_by_run_profile_execution_item_id: Option<Uuid>,
    /// The export's rows of `PendingExportAttributeValueChanges`.
    pub attribute_changes: Vec<AttributeValueChange>,
}

/// One row of `PendingExportAttributeValueChanges`: one value of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeValueChange {
    /// `Id`.
    pub id: Uuid,
    /// `PendingExportId`.
    pub pending_export_id: Uuid,
    /// `AttributeId`: the attribute definition in `ConnectedSystemAttributes`.
    pub attribute_id: i32,
    /// The typed value slots.
    pub value: ValueSlots,
    /// `UnresolvedReferenceValue`: the referenced MVO id (as text) while a reference is unresolved.
    pub unresolved_reference_value: Option<String>,
    /// `ChangeType`.
    pub change_type: PendingExportAttributeChangeType,
    /// `Status`.
    pub status: PendingExportAttributeChangeStatus,
    /// `ExportAttemptCount`.
    pub export_attempt_count: i32,
    /// `LastExportedAt`.
    pub last_exported_at: Option<DateTime<Utc>>,
    /// `LastImportedValue`: written by JIM's confirming import on a mismatch.
    pub last_imported_value: Option<String>,
    /// `ResolvedReferenceCsoId`: the referenced CSO once the reference is resolved.
    pub resolved_reference_cso_id: Option<Uuid>,
}

impl AttributeValueChange {
    /// True while the change carries an MVO id rather than a value (JIM's `IsUnresolvedReference`).
    pub fn is_unresolved_reference(&self) -> bool {
        self.unresolved_reference_value
            .as_deref()
            .is_some_and(|s| !s.is_empty())
    }

    /// True when the change may be sent now (JIM's `IsWritableNow`): resolved and not already awaiting
    /// confirmation. Pending, ExportedNotConfirmed and Failed changes are all re-sent.
    pub fn is_writable_now(&self) -> bool {
        !self.is_unresolved_reference()
            && self.status != PendingExportAttributeChangeStatus::ExportedPendingConfirmation
    }
}

impl PendingExport {
    /// The changes that may be sent now (JIM's `ForConnector` filter).
    pub fn writable_changes(&self) -> impl Iterator<Item = &AttributeValueChange> {
        self.attribute_changes
            .iter()
            .filter(|c| c.is_writable_now())
    }

    /// True when at least one change is still an unresolved reference.
    pub fn has_unresolved_changes(&self) -> bool {
        self.attribute_changes
            .iter()
            .any(AttributeValueChange::is_unresolved_reference)
    }
}

#[cfg(test)]
impl AttributeValueChange {
    /// A Pending change of `attribute_id` with no value, never attempted: what unit tests fill in.
    pub(crate) fn for_test(
        pending_export_id: Uuid,
        attribute_id: i32,
        change_type: PendingExportAttributeChangeType,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            pending_export_id,
            attribute_id,
            value: ValueSlots::default(),
            unresolved_reference_value: None,
            change_type,
            status: PendingExportAttributeChangeStatus::Pending,
            export_attempt_count: 0,
            last_exported_at: None,
            last_imported_value: None,
            resolved_reference_cso_id: None,
        }
    }
}

#[cfg(test)]
impl PendingExport {
    /// A claimed (`Executing`) export of `change_type` in connected system 1, for a new CSO, with no
    /// changes yet: what unit tests build their exports on.
    pub(crate) fn for_test(change_type: PendingExportChangeType) -> Self {
        Self {
            id: Uuid::new_v4(),
            connected_system_id: 1,
            connected_system_object_id: Some(Uuid::new_v4()),
            change_type,
            status: PendingExportStatus::Executing,
            error_count: 0,
            max_retries: 5,
            last_attempted_at: None,
            next_retry_at: None,
            last_error_message: None,
            last_error_stack_trace: None,
            source_metaverse_object_id: None,
            has_unresolved_references: false,
            created_at: Utc::now(),
            provisioning_sync_rule_id: None,
            queued_by_run_profile_execution_item_id: None,
            attribute_changes: Vec::new(),
        }
    }
}
