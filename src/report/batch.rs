//! The per-flush batch report: one item per pending export, carrying what JIM's worker needs to write
//! its run-history rows (RPEIs, causal edges, change history), update its CSO cache and stage initial
//! passwords. The provenance ids are captured from the claimed row, so the host never needs to read
//! the pending export again (JIM invariant 12).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{
    ActivityRunProfileExecutionItemErrorType, ConnectedSystemExportErrorType, ObjectChangeType,
    PendingExportChangeType,
};

/// The outcomes persisted by one flush.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct BatchReport {
    /// `ConnectedSystems.Id` of the run.
    pub connected_system_id: i32,
    /// 1 for the run's first flush, then 2, 3, ...
    pub sequence: u64,
    /// One item per pending export of the flush.
    pub items: Vec<ReportItem>,
}

/// How one export ended in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Everything writable was written; the export waits for JIM's confirming import.
    Succeeded,
    /// Written in part: some references are still unresolved, the export stays Pending and owes them
    /// (JIM counts it as succeeded and as written in part).
    PartlyWritten,
    /// Nothing was writable now (or a Create it depends on failed); due again in 5 minutes, no error
    /// counted.
    Deferred,
    /// The attempt failed; `error_count` says how many attempts failed so far.
    Failed,
}

/// A change of one anchor attribute's value on the CSO, so the host can update its CSO cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct AnchorChange {
    /// `ConnectedSystemAttributes.Id` of the anchor attribute.
    pub attribute_id: i32,
    /// Its name (e.g. `entryUUID`, `distinguishedName`).
    pub attribute_name: String,
    /// The value before the export (as JIM renders anchors), if any.
    pub old_value: Option<String>,
    /// The value the export wrote.
    pub new_value: String,
}

/// One pending export's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ReportItem {
    /// `PendingExports.Id`.
    pub pending_export_id: Uuid,
    /// The change type as claimed (a partly written Create is persisted as an Update, but reported as
    /// the Create it was).
    pub change_type: PendingExportChangeType,
    /// `ConnectedSystemObjectId` of the target CSO.
    pub connected_system_object_id: Option<Uuid>,
    /// How the export ended.
    pub status: ItemStatus,
    /// JIM's run-history change type for the item: Exported (11), Deprovisioned (12, a Delete) or
    /// PendingExport (14, deferred).
    pub object_change_type: ObjectChangeType,
    /// The error, for a failed export (never a secret).
    pub error_message: Option<String>,
    /// The connector error type, for a failed export.
    pub error_type: Option<ConnectedSystemExportErrorType>,
    /// The run-history error type JIM's worker records for this item, if any (13 for an invalid
    /// generated DN, 14 for other failures, 7 for an unresolved reference under Error handling).
    pub run_history_error_type: Option<ActivityRunProfileExecutionItemErrorType>,
    /// `ErrorCount` after this attempt.
    pub error_count: i32,
    /// Attribute value changes written in this run (now ExportedPendingConfirmation).
    pub written_change_ids: Vec<Uuid>,
    /// All of the export's attribute value changes.
    pub attribute_change_count: u32,
    /// `SourceMetaverseObjectId`.
    pub source_metaverse_object_id: Option<Uuid>,
    /// `QueuedByRunProfileExecutionItemId`.
    pub queued_by_run_profile_execution_item_id: Option<Uuid>,
    /// `ProvisioningSyncRuleId` (set on provisioning Creates).
    pub provisioning_sync_rule_id: Option<i32>,
    /// True when this run created the object in the directory: the host stages its initial password
    /// when `provisioning_sync_rule_id` asks for one.
    pub provisioned: bool,
    /// Anchor values the export changed (a new `entryUUID`/`objectGUID`, a new DN).
    pub anchor_changes: Vec<AnchorChange>,
    /// Under the system's Error handling, the note naming references that cannot be resolved because
    /// the referenced object has no CSO in this system (JIM's unresolved-reference message).
    pub unresolved_reference_note: Option<String>,
}

impl ReportItem {
    /// JIM's run-history change type for an export of `change_type` that ended with `status`.
    pub fn object_change_type_for(
        change_type: PendingExportChangeType,
        status: ItemStatus,
    ) -> ObjectChangeType {
        match (status, change_type) {
            (ItemStatus::Deferred, _) => ObjectChangeType::PendingExport,
            (_, PendingExportChangeType::Delete) => ObjectChangeType::Deprovisioned,
            _ => ObjectChangeType::Exported,
        }
    }
}
