//! What the directory is given and gives back for one export: the [`ExportJob`] (its plan, whether it
//! is a re-attempt and what judges an entry it meets, its fence) and the [`ExportResult`] (how it
//! ended and what was done before a failure).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::fence::{Fence, Fenced};
use crate::model::ConnectedSystemExportErrorType;
use crate::plan::{ExportPlan, PlanFailure, ValueSubstitution};

/// Answers whether an anchor value (as JIM stores it) belongs to a connected system object other than
/// the export's own: the last check before a re-attempt adopts an existing entry ([`evidence`](super::evidence)).
pub trait AnchorRegistry: Send + Sync {
    /// The other object holding `anchor`, if any; `Err` when that cannot be told now (the database
    /// does not answer).
    fn other_holder<'a>(
        &'a self,
        anchor: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Uuid>, String>> + Send + 'a>>;
}

/// What a re-attempt needs to judge an entry it finds where its Create goes.
#[derive(Clone, Default)]
pub struct Recovery {
    /// The claim time of the first attempt that may have reached the directory.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// Who holds an anchor; without one, the anchor check is skipped.
    pub anchors: Option<Arc<dyn AnchorRegistry>>,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("first_attempt_at", &self.first_attempt_at)
            .field("anchors", &self.anchors.is_some())
            .finish()
    }
}

/// One export for the directory to run.
#[derive(Debug, Clone)]
pub struct ExportJob {
    /// The pending export's id.
    pub export_id: Uuid,
    /// Its plan, or why it could not be planned (reported without any LDAP call).
    pub plan: Result<ExportPlan, PlanFailure>,
    /// True when an earlier attempt may have written part of it: an Add that meets an entry the
    /// evidence shows to be that earlier write adopts it instead of failing ([`evidence`](super::evidence)).
    pub reattempt: bool,
    /// What the re-attempt judges an existing entry with.
    pub recovery: Recovery,
    /// The run's right to write the export; none means unbounded (no lease).
    pub fence: Option<Fence>,
}

impl ExportJob {
    /// A job from a plan (or a planning failure) for `export_id`.
    pub fn new(export_id: Uuid, plan: Result<ExportPlan, PlanFailure>) -> Self {
        Self {
            export_id,
            plan,
            reattempt: false,
            recovery: Recovery::default(),
            fence: None,
        }
    }

    /// Marks the job as a re-attempt.
    pub fn reattempt(mut self, reattempt: bool) -> Self {
        self.reattempt = reattempt;
        self
    }

    /// Sets what a re-attempt judges an existing entry with.
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = recovery;
        self
    }

    /// Fences the job's writes by its row's lease.
    pub fn fenced_by(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }
}

impl From<ExportPlan> for ExportJob {
    fn from(plan: ExportPlan) -> Self {
        Self::new(plan.export_id, Ok(plan))
    }
}

/// How an export ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportStatus {
    /// Every operation was applied (or already held).
    Succeeded,
    /// An operation failed; later ones were not sent.
    Failed {
        /// JIM's error type.
        error_type: ConnectedSystemExportErrorType,
        /// What failed, with the server's diagnostic text.
        message: String,
    },
    /// The run stopped (see [`Directory::run_until`](super::Directory::run_until)) before this export sent anything that could
    /// have taken effect: it goes back to the queue as it was, no attempt counted.
    NotStarted,
    /// The run lost its lease on the row (another engine holds it now), or could not confirm it before
    /// stopping: nothing more was written, and the outcome is not persisted. `began` says whether
    /// anything this export sent may have taken effect.
    Fenced {
        /// Why the write was refused.
        why: Fenced,
        /// Something this export sent may have taken effect.
        began: bool,
    },
}

/// What happened to one export: JIM's result fields plus what was done before a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportResult {
    /// The pending export's id.
    pub export_id: Uuid,
    /// Success or failure.
    pub status: ExportStatus,
    /// The anchor read back after a Create (JIM's `ExternalId`): set whenever the entry exists, even
    /// when a later operation failed; `None` when the read-back found nothing.
    pub external_id: Option<String>,
    /// The DN (JIM's `SecondaryExternalId`): the DN of a created entry, or the new DN after a
    /// ModifyDN, even when a later operation failed.
    pub secondary_external_id: Option<String>,
    /// True when this export's entry now exists because of it (its Add succeeded or was adopted), so
    /// a failed Create is continued as an Update rather than retried as a Create.
    pub entry_created: bool,
    /// True when an existing entry was adopted on a re-attempt.
    pub adopted: bool,
    /// The attribute changes now in the directory (all of the plan's on success; those of the
    /// completed operations on failure).
    pub written_change_ids: Vec<Uuid>,
    /// Values written instead of the staged ones (JIM's protected defaults), for the changes written.
    pub substitutions: Vec<ValueSubstitution>,
    /// Parent containers this export created.
    pub containers_created: Vec<String>,
    /// LDAP operations sent for this export, reads and retries included.
    pub operations: u32,
    /// In-run retries.
    pub retries: u32,
    /// True when it failed because the directory gave no answer (no connection, lost connections,
    /// timeouts) through every retry: a sign that the directory is down rather than that this export
    /// is wrong.
    pub no_answer: bool,
    /// Things worth logging (from planning and execution).
    pub warnings: Vec<String>,
}

impl ExportResult {
    pub(super) fn new(export_id: Uuid) -> Self {
        Self {
            export_id,
            status: ExportStatus::Succeeded,
            external_id: None,
            secondary_external_id: None,
            entry_created: false,
            adopted: false,
            written_change_ids: Vec::new(),
            substitutions: Vec::new(),
            containers_created: Vec::new(),
            operations: 0,
            retries: 0,
            no_answer: false,
            warnings: Vec::new(),
        }
    }

    /// A failure without any LDAP call (planning failed, or the task running it died).
    pub fn failed(
        export_id: Uuid,
        error_type: ConnectedSystemExportErrorType,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status: ExportStatus::Failed {
                error_type,
                message: message.into(),
            },
            ..Self::new(export_id)
        }
    }

    /// An export the run stopped before it began.
    pub fn not_started(export_id: Uuid) -> Self {
        Self {
            status: ExportStatus::NotStarted,
            ..Self::new(export_id)
        }
    }

    /// True on success.
    pub fn is_success(&self) -> bool {
        self.status == ExportStatus::Succeeded
    }

    /// The error type of a failure.
    pub fn error_type(&self) -> Option<ConnectedSystemExportErrorType> {
        match &self.status {
            ExportStatus::Failed { error_type, .. } => Some(*error_type),
            _ => None,
        }
    }

    /// The message of a failure.
    pub fn error_message(&self) -> Option<&str> {
        match &self.status {
            ExportStatus::Failed { message, .. } => Some(message),
            _ => None,
        }
    }
}
