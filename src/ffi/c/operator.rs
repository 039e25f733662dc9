//! The operator calls' request and answer documents. The requests are checked by the engine's own
//! operator calls, so the C ABI and UniFFI refuse the same fields.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::boundary::FfiResult;
use super::json::{encode_json, parse_json};
use crate::config::DatabaseConfig;
use crate::engine::Engine;
use crate::store::QueueSummary;

fn default_lease_seconds() -> u64 {
    crate::config::RunOptions::default().lease_seconds
}

/// `jim_engine_queue_summary`'s request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSummaryRequest {
    database: DatabaseConfig,
    connected_system_id: i32,
    #[serde(default = "default_lease_seconds")]
    lease_seconds: u64,
}

/// `jim_engine_release_stranded`'s request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseStrandedRequest {
    database: DatabaseConfig,
    connected_system_id: i32,
    #[serde(default = "default_lease_seconds")]
    older_than_seconds: u64,
}

/// `jim_engine_reset_failed`'s request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetFailedRequest {
    database: DatabaseConfig,
    connected_system_id: i32,
}

/// One (status, change type) row of the queue summary.
#[derive(Debug, Serialize)]
struct StatusCountDoc {
    status: i32,
    status_name: Option<&'static str>,
    change_type: i32,
    change_type_name: Option<&'static str>,
    count: i64,
}

/// The queue summary document.
#[derive(Debug, Serialize)]
struct QueueSummaryDoc {
    connected_system_id: i32,
    by_status: Vec<StatusCountDoc>,
    total: i64,
    executable: i64,
    due: i64,
    not_yet_due: i64,
    stranded_executing: i64,
    with_unresolved_references: i64,
    oldest_failure: Option<DateTime<Utc>>,
}

impl QueueSummaryDoc {
    fn new(connected_system_id: i32, s: QueueSummary) -> Self {
        Self {
            connected_system_id,
            by_status: s
                .by_status
                .iter()
                .map(|row| StatusCountDoc {
                    status: row.status,
                    status_name: row.status().map(|v| v.name()),
                    change_type: row.change_type,
                    change_type_name: row.change_type().map(|v| v.name()),
                    count: row.count,
                })
                .collect(),
            total: s.total,
            executable: s.executable,
            due: s.due,
            not_yet_due: s.not_yet_due,
            stranded_executing: s.stranded_executing,
            with_unresolved_references: s.with_unresolved_references,
            oldest_failure: s.oldest_failure,
        }
    }
}

/// Parses a queue-summary request; the returned future answers it on the engine's runtime.
pub(crate) fn queue_summary(
    engine: Arc<Engine>,
    json: &str,
) -> FfiResult<impl Future<Output = FfiResult<String>> + Send + use<>> {
    let r: QueueSummaryRequest = parse_json(json, "request_json")?;
    Ok(async move {
        let summary = engine
            .queue_summary(
                &r.database,
                r.connected_system_id,
                Duration::from_secs(r.lease_seconds),
            )
            .await?;
        encode_json(
            &QueueSummaryDoc::new(r.connected_system_id, summary),
            "answer",
        )
    })
}

/// Parses a release-stranded request; the returned future carries it out.
pub(crate) fn release_stranded(
    engine: Arc<Engine>,
    json: &str,
) -> FfiResult<impl Future<Output = FfiResult<String>> + Send + use<>> {
    let r: ReleaseStrandedRequest = parse_json(json, "request_json")?;
    Ok(async move {
        let released = engine
            .release_stranded(
                &r.database,
                r.connected_system_id,
                Duration::from_secs(r.older_than_seconds),
            )
            .await?;
        encode_json(&serde_json::json!({ "released": released }), "answer")
    })
}

/// Parses a reset-failed request; the returned future carries it out.
pub(crate) fn reset_failed(
    engine: Arc<Engine>,
    json: &str,
) -> FfiResult<impl Future<Output = FfiResult<String>> + Send + use<>> {
    let r: ResetFailedRequest = parse_json(json, "request_json")?;
    Ok(async move {
        let reset = engine
            .reset_failed(&r.database, r.connected_system_id)
            .await?;
        encode_json(&serde_json::json!({ "reset": reset }), "answer")
    })
}
