//! Assembling a pass's [`RunResult`]: JIM's result fields from the run's counters, the outcome
//! message in JIM's wording, and the engine's metrics from the pass's and the directory's
//! measurements. The engine gathers the figures ([`PassFigures`]); what they mean for the host is
//! decided here, in one place.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::counters::Counters;
use super::message::{outcome_message, throughput_clause};
use super::result::{OperationCounts, RunMetrics, RunResult};
use crate::config::Dialect;
use crate::directory::DirectoryStats;

/// Everything a finished pass measured.
#[derive(Debug)]
pub(crate) struct PassFigures {
    /// The system exported.
    pub connected_system_id: i32,
    /// When the pass started.
    pub started_at: DateTime<Utc>,
    /// Exports due when it started.
    pub total: u64,
    /// The counts of JIM's result fields.
    pub counters: Counters,
    /// Containers the directory created during the pass.
    pub created_containers: Vec<String>,
    /// True when the pass was cancelled.
    pub cancelled: bool,
    /// The outcome message ([`pass_message`]).
    pub message: String,
    /// The directory's dialect.
    pub dialect: Dialect,
    /// The directory's counters over the pass.
    pub directory: DirectoryStats,
    /// SQL statements the pass sent.
    pub sql_statements: u64,
    /// Flushes persisted.
    pub flushes: u64,
    /// The pass's duration.
    pub elapsed: Duration,
    /// Time to the first export sent to the directory.
    pub first_write: Option<Duration>,
}

/// The outcome message of a pass, in JIM's wording (a cancelled export says so, with the same counts).
pub(crate) fn pass_message(counters: &Counters, elapsed: Duration, cancelled: bool) -> String {
    let message = outcome_message(
        counters.succeeded,
        counters.partly_written,
        counters.failed,
        counters.deferred,
        &throughput_clause(counters.processed(), elapsed),
    );
    if cancelled {
        // JIM's worker reports a cancelled export as such; the counts keep JIM's wording.
        message.replacen("Export complete:", "Export cancelled:", 1)
    } else {
        message
    }
}

impl PassFigures {
    /// The run's result, completed at `completed_at`.
    pub(crate) fn into_result(self, completed_at: DateTime<Utc>) -> RunResult {
        let c = &self.counters;
        let stats = &self.directory;
        let secs = self.elapsed.as_secs_f64();
        RunResult {
            connected_system_id: self.connected_system_id,
            dry_run: false,
            started_at: self.started_at,
            completed_at,
            total_pending_exports: self.total,
            success_count: c.succeeded,
            failed_count: c.failed,
            deferred_count: c.deferred,
            partially_exported_count: c.partly_written,
            unresolvable_reference_count: c.unresolvable_references,
            reconciled_count: 0,
            created_container_external_ids: self.created_containers,
            optimistic_apply_applied_count: c.optimistic_applied,
            optimistic_apply_skipped_count: c.optimistic_skipped,
            optimistic_apply_failed_count: c.optimistic_failed,
            optimistic_apply_unresolved_reference_count: c.optimistic_unresolved,
            cancelled: self.cancelled,
            message: self.message,
            dialect: Some(self.dialect),
            metrics: RunMetrics {
                operations: OperationCounts {
                    add: stats.adds,
                    modify: stats.modifies,
                    modify_dn: stats.modify_dns,
                    delete: stats.deletes,
                    search: stats.searches,
                },
                sql_statements: self.sql_statements,
                flushes: self.flushes,
                objects_per_second: if secs > 0.0 {
                    c.processed() as f64 / secs
                } else {
                    0.0
                },
                elapsed_ms: self.elapsed.as_millis() as u64,
                time_to_first_write_ms: self.first_write.map(|d| d.as_millis() as u64),
                max_in_flight: stats.peak_in_flight as u32,
                mean_in_flight: stats.occupancy.mean_in_flight(),
                in_flight_limit: stats.in_flight_limit.current,
                min_in_flight_limit: stats.in_flight_limit.min,
                max_in_flight_limit: stats.in_flight_limit.max,
                in_flight_limit_increases: stats.in_flight_limit.increases,
                in_flight_limit_decreases: stats.in_flight_limit.decreases,
                retries: stats.retries,
                reconnects: stats.lost_connections,
                recovered: c.recovered,
                // Rows another engine took over: refused by their fence before the write, or found
                // no longer held when the outcome was persisted.
                lease_lost: c.fenced + c.not_held,
                export_latency_p50_ms: stats.export_latency.p50_ms(),
                export_latency_p99_ms: stats.export_latency.p99_ms(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::OccupancyStats;
    use crate::directory::limit::LimitStats;

    fn counters() -> Counters {
        Counters {
            succeeded: 6,
            partly_written: 1,
            failed: 2,
            deferred: 2,
            fenced: 3,
            not_held: 1,
            recovered: 4,
            ..Counters::default()
        }
    }

    #[test]
    fn a_cancelled_pass_says_so_with_the_same_counts() {
        let done = pass_message(&counters(), Duration::from_secs(2), false);
        let cancelled = pass_message(&counters(), Duration::from_secs(2), true);
        assert!(
            done.starts_with("Export complete: 6 succeeded (1 written in part"),
            "{done}"
        );
        assert!(done.contains("2 failed, 2 deferred"), "{done}");
        assert_eq!(
            cancelled,
            done.replacen("Export complete:", "Export cancelled:", 1)
        );
    }

    #[test]
    fn the_result_carries_the_counts_and_the_metrics() {
        let started_at = Utc::now();
        let figures = PassFigures {
            connected_system_id: 7,
            started_at,
            total: 12,
            counters: counters(),
            created_containers: vec!["ou=new,dc=example,dc=org".into()],
            cancelled: false,
            message: "done".into(),
            dialect: Dialect::OpenLdap,
            directory: DirectoryStats {
                adds: 3,
                modifies: 5,
                modify_dns: 1,
                deletes: 2,
                searches: 4,
                retries: 6,
                lost_connections: 1,
                peak_in_flight: 9,
                occupancy: OccupancyStats {
                    busy: Duration::from_secs(1),
                    operation_time: Duration::from_millis(4_500),
                },
                in_flight_limit: LimitStats {
                    current: 8,
                    min: 2,
                    max: 16,
                    increases: 3,
                    decreases: 1,
                },
                ..DirectoryStats::default()
            },
            sql_statements: 11,
            flushes: 2,
            elapsed: Duration::from_secs(2),
            first_write: Some(Duration::from_millis(150)),
        };
        let result = figures.into_result(started_at);
        assert_eq!(result.connected_system_id, 7);
        assert!(!result.dry_run);
        assert_eq!(result.total_pending_exports, 12);
        assert_eq!(
            (
                result.success_count,
                result.failed_count,
                result.deferred_count
            ),
            (6, 2, 2)
        );
        assert_eq!(result.partially_exported_count, 1);
        assert_eq!(result.reconciled_count, 0);
        assert_eq!(result.dialect, Some(Dialect::OpenLdap));
        assert_eq!(result.created_container_external_ids.len(), 1);
        let m = &result.metrics;
        assert_eq!(m.operations.total(), 15);
        assert_eq!(m.sql_statements, 11);
        assert_eq!(m.flushes, 2);
        assert_eq!(m.objects_per_second, 5.0);
        assert_eq!(m.elapsed_ms, 2000);
        assert_eq!(m.time_to_first_write_ms, Some(150));
        assert_eq!(m.max_in_flight, 9);
        assert_eq!(m.mean_in_flight, 4.5);
        assert_eq!(
            (
                m.in_flight_limit,
                m.min_in_flight_limit,
                m.max_in_flight_limit
            ),
            (8, 2, 16)
        );
        assert_eq!(
            (m.in_flight_limit_increases, m.in_flight_limit_decreases),
            (3, 1)
        );
        assert_eq!((m.retries, m.reconnects, m.recovered), (6, 1, 4));
        assert_eq!(m.lease_lost, 4);
    }

    #[test]
    fn no_time_means_no_rate() {
        let figures = PassFigures {
            connected_system_id: 1,
            started_at: Utc::now(),
            total: 0,
            counters: counters(),
            created_containers: Vec::new(),
            cancelled: true,
            message: String::new(),
            dialect: Dialect::OpenLdap,
            directory: DirectoryStats::default(),
            sql_statements: 0,
            flushes: 0,
            elapsed: Duration::ZERO,
            first_write: None,
        };
        let result = figures.into_result(Utc::now());
        assert!(result.cancelled);
        assert_eq!(result.metrics.objects_per_second, 0.0);
        assert_eq!(result.metrics.time_to_first_write_ms, None);
    }
}
