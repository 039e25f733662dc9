//! What a run returns: every field of JIM's `ExportExecutionResult` that applies
//! (`export-semantics.md` §1.3), plus the engine's metrics.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Dialect;

/// The result of one export run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct RunResult {
    /// `ConnectedSystemId`.
    pub connected_system_id: i32,
    /// True for a dry run (JIM's `PreviewOnly`): nothing was written to the directory or the database.
    pub dry_run: bool,
    /// `StartedAt`.
    pub started_at: DateTime<Utc>,
    /// `CompletedAt`.
    pub completed_at: DateTime<Utc>,
    /// `TotalPendingExports`: eligible exports when the run started.
    pub total_pending_exports: u64,
    /// `SuccessCount`, written-in-part exports included (as JIM counts them).
    pub success_count: u64,
    /// `FailedCount`.
    pub failed_count: u64,
    /// `DeferredCount`.
    pub deferred_count: u64,
    /// `PartiallyExportedCount`: written in part, still owing references (also in `success_count`).
    pub partially_exported_count: u64,
    /// `UnresolvableReferenceCount`: reference values whose MVO has no CSO in the target system.
    pub unresolvable_reference_count: u64,
    /// `ReconciledCount`: always 0. JIM's pre-export Create+Delete reconciliation cannot find a pair
    /// while `IX_PendingExports_ConnectedSystemObjectId_Unique` holds (export-semantics §2.1 step 3).
    pub reconciled_count: u64,
    /// `CreatedContainerExternalIds`: DNs of containers the run created.
    pub created_container_external_ids: Vec<String>,
    /// `OptimisticApplyAppliedCount`.
    pub optimistic_apply_applied_count: u64,
    /// `OptimisticApplySkippedCount`.
    pub optimistic_apply_skipped_count: u64,
    /// `OptimisticApplyFailedCount`.
    pub optimistic_apply_failed_count: u64,
    /// `OptimisticApplyUnresolvedReferenceCount`.
    pub optimistic_apply_unresolved_reference_count: u64,
    /// True when the run was cancelled; the unexecuted claims were returned.
    pub cancelled: bool,
    /// The Activity outcome message in JIM's wording (`Export complete: … succeeded, … failed, …
    /// deferred in … (avg … obj/s)`), or the preview message for a dry run.
    pub message: String,
    /// The directory's dialect (detected from the rootDSE unless configured).
    pub dialect: Option<Dialect>,
    /// The engine's metrics.
    pub metrics: RunMetrics,
}

/// Directory operations by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct OperationCounts {
    /// Add requests (entries and containers).
    pub add: u64,
    /// Modify requests.
    pub modify: u64,
    /// ModifyDN requests.
    pub modify_dn: u64,
    /// Delete requests.
    pub delete: u64,
    /// Search requests (anchor read-back, UAC reads, container checks, convergence reads).
    pub search: u64,
}

impl OperationCounts {
    /// All operations.
    pub fn total(&self) -> u64 {
        self.add + self.modify + self.modify_dn + self.delete + self.search
    }
}

/// How the run went, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct RunMetrics {
    /// Directory operations sent, by kind.
    pub operations: OperationCounts,
    /// SQL statements issued (transaction control not counted).
    pub sql_statements: u64,
    /// Flushes (persist statements).
    pub flushes: u64,
    /// Exports with an outcome per second of run time.
    pub objects_per_second: f64,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
    /// Milliseconds from the run call to the first directory write, if any.
    pub time_to_first_write_ms: Option<u64>,
    /// Most directory operations outstanding at once.
    pub max_in_flight: u32,
    /// Mean directory operations outstanding while any were, weighted by time (never above
    /// `max_in_flight`).
    pub mean_in_flight: f64,
    /// The in-flight limit at the end of the run.
    pub in_flight_limit: u32,
    /// The lowest in-flight limit so far (the limit itself when it is fixed).
    #[serde(default)]
    pub min_in_flight_limit: u32,
    /// The highest in-flight limit so far.
    #[serde(default)]
    pub max_in_flight_limit: u32,
    /// Times the adaptive limit grew.
    #[serde(default)]
    pub in_flight_limit_increases: u64,
    /// Times the adaptive limit shrank (rising latency, busy, unavailable, unwilling, timeouts, lost
    /// connections).
    #[serde(default)]
    pub in_flight_limit_decreases: u64,
    /// Operations retried in the run after a transient condition.
    pub retries: u64,
    /// Connections re-established after being lost.
    pub reconnects: u64,
    /// Exports re-attempted after an earlier attempt may have reached the directory (a crashed or
    /// stopped run's claim, a failure whose outcome was unknown).
    pub recovered: u64,
    /// Exports dropped from the run because another engine took their row over after this run's lease
    /// on it ran out (or it could not be confirmed before the run stopped): nothing more was written
    /// for them and no outcome was persisted.
    #[serde(default)]
    pub lease_lost: u64,
    /// Median time of an export from the start of its execution in the directory to its result,
    /// in milliseconds (within 1 %); `None` when no export was executed.
    #[serde(default)]
    pub export_latency_p50_ms: Option<f64>,
    /// 99th percentile of the same, in milliseconds.
    #[serde(default)]
    pub export_latency_p99_ms: Option<f64>,
}
