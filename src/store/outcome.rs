//! One export's outcome: the boundary between execution and persistence. It lives in the store,
//! which persists it, so the store never reaches back into a module that depends on it (re-exported as
//! `crate::outcome`).
//!
//! The execute stage turns each claimed export into an [`ExportOutcome`]: the claimed export itself
//! (owned, with the references resolved during the run) and what happened to it in the directory. The
//! persist stage ([`ExportQueue::persist`]) borrows a flush of outcomes and writes them in one
//! statement without re-reading any row; the report stage reads them afterwards.
//!
//! [`ExportQueue::persist`]: crate::store::ExportQueue::persist

use uuid::Uuid;

use super::claim::ClaimedExport;
use crate::model::ConnectedSystemExportErrorType;

/// What happened to one claimed export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOutcome {
    /// The export as claimed (and resolved).
    pub export: ClaimedExport,
    /// What the directory did with it.
    pub result: Disposition,
}

/// What becomes of one export after its directory work, as the store persists it: succeeded, failed
/// or deferred. (The directory's own report of an export, with its status, warnings and partial
/// progress, is [`crate::directory::ExportResult`]; the engine turns that into a disposition; `crate::directory::classify::Verdict` is the
/// verdict on one LDAP operation.)
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Everything the export owed was written (references that are still unresolved excepted: the
    /// export then stays Pending and owes them, JIM's partial write).
    Succeeded(Success),
    /// The directory refused or could not be reached; the export counts a failed attempt.
    Failed(Failure),
    /// Nothing was writable (every change is an unresolved reference): nothing was sent, the export is
    /// looked at again in 5 minutes without counting an error.
    Deferred,
}

/// A successful export.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Success {
    /// The attribute value changes this export accounted for: every change that was writable and sent,
    /// normally [`ClaimedExport::writable_change_ids`]. They move to ExportedPendingConfirmation. A
    /// writable change not listed here stays Pending and keeps the export Pending (due now).
    pub written_changes: Vec<Uuid>,
    /// The primary anchor the directory assigned or reported (`objectGUID`, `entryUUID`), written into
    /// the typed slot of the CSO's anchor attribute.
    pub external_id: Option<String>,
    /// The object's DN as the directory has it after a create, rename or move.
    pub secondary_external_id: Option<String>,
}

/// A failed export.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The message stored as `LastErrorMessage`.
    pub message: String,
    /// The kind of failure, for the run history.
    pub error_type: ConnectedSystemExportErrorType,
    /// What was achieved before the failure.
    pub progress: Progress,
}

/// Progress made by an export before a later operation of it failed. It is recorded with the failure so
/// that a retry does not repeat it: a created object turns the Create into an Update, its anchor and new
/// DN are written, and changes that were written are marked as such.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Progress {
    /// The object exists in the directory now (the Create's add went through).
    pub object_exists: bool,
    /// Changes that were written before the failure.
    pub written_changes: Vec<Uuid>,
    /// The primary anchor, when it was read back.
    pub external_id: Option<String>,
    /// The DN after a create, rename or move that went through.
    pub secondary_external_id: Option<String>,
}

impl ExportOutcome {
    /// Success with every writable change written and no anchors reported.
    pub fn succeeded(export: ClaimedExport) -> Self {
        let written_changes = export.writable_change_ids();
        Self {
            export,
            result: Disposition::Succeeded(Success {
                written_changes,
                ..Success::default()
            }),
        }
    }

    /// Success with every writable change written and the anchors the directory reported.
    pub fn created(
        export: ClaimedExport,
        external_id: Option<String>,
        secondary_external_id: Option<String>,
    ) -> Self {
        let written_changes = export.writable_change_ids();
        Self {
            export,
            result: Disposition::Succeeded(Success {
                written_changes,
                external_id,
                secondary_external_id,
            }),
        }
    }

    /// A failure without progress.
    pub fn failed(
        export: ClaimedExport,
        message: impl Into<String>,
        error_type: ConnectedSystemExportErrorType,
    ) -> Self {
        Self {
            export,
            result: Disposition::Failed(Failure {
                message: message.into(),
                error_type,
                progress: Progress::default(),
            }),
        }
    }

    /// A deferral: nothing was writable.
    pub fn deferred(export: ClaimedExport) -> Self {
        Self {
            export,
            result: Disposition::Deferred,
        }
    }

    /// The pending export's id.
    pub fn pending_export_id(&self) -> Uuid {
        self.export.export.id
    }
}
