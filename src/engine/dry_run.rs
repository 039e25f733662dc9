//! A dry run: claim nothing, write nothing. Reads the queue in the order a run would, resolves
//! references (reads only), plans every export for the directory's dialect and reports what a run
//! would do: one batch report per page, with the planning failures (outside the managed scope, an
//! invalid DN) a run would record and the exports it would defer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::RunListener;
use crate::config::ExportRequest;
use crate::directory::Directory;
use crate::error::Result;
use crate::model::ConnectedSystemExportErrorType;
use crate::plan::Planner;
use crate::report::message::preview_message;
use crate::report::{BatchReport, ItemStatus, ReportItem, RunMetrics, RunResult};
use crate::store::{ClaimedExport, Pass, Store};

/// Runs a dry run of `request` (see the module docs).
pub(crate) async fn dry_run(
    store: Store,
    request: &ExportRequest,
    listener: Arc<dyn RunListener>,
    database_unverified: bool,
) -> Result<RunResult> {
    let log = super::log::Logger::new(listener.clone());
    super::run::warn_about_transport(&log, request, database_unverified);
    let started_at = Utc::now();
    let t0 = Instant::now();
    let options = &request.options;
    let queue = store.open(request.connected_system_id, options).await?;
    let schema = queue.schema().clone();
    let total = store
        .queue_summary(
            request.connected_system_id,
            Duration::from_secs(options.lease_seconds),
        )
        .await?
        .executable
        .max(0) as u64;
    // The dialect decides the plan; reading the rootDSE writes nothing.
    let dialect = match request.directory.dialect {
        Some(d) => d,
        None => {
            let directory = Directory::connect(&request.directory, options).await?;
            let d = directory.dialect();
            directory.close().await;
            d
        }
    };
    let planner = Planner::new(&request.settings, dialect);
    let (mut would_export, mut would_fail, mut would_defer, mut sequence) =
        (0u64, 0u64, 0u64, 0u64);
    for pass in [Pass::Plain, Pass::References] {
        let mut cursor = None;
        loop {
            let mut page = queue.peek(pass, cursor, options.page_size).await?;
            if pass == Pass::References {
                queue.resolve_references(&mut page.exports).await?;
            }
            let mut items = Vec::with_capacity(page.exports.len());
            for claimed in &page.exports {
                let item = preview_item(claimed, &schema, &planner);
                match item.status {
                    ItemStatus::Failed => would_fail += 1,
                    ItemStatus::Deferred => would_defer += 1,
                    _ => would_export += 1,
                }
                items.push(item);
            }
            for bad in &page.bad_rows {
                would_fail += 1;
                log.warn(format!(
                    "pending export {} cannot be read: {}",
                    bad.pending_export_id, bad.error
                ));
            }
            if !items.is_empty() {
                sequence += 1;
                listener.on_batch(&BatchReport {
                    connected_system_id: schema.connected_system_id,
                    sequence,
                    items,
                });
            }
            let last = page.is_last();
            cursor = page.cursor.or(cursor);
            if last {
                break;
            }
        }
    }
    let elapsed = t0.elapsed();
    let planned = would_export + would_fail + would_defer;
    Ok(RunResult {
        connected_system_id: schema.connected_system_id,
        dry_run: true,
        started_at,
        completed_at: Utc::now(),
        total_pending_exports: total,
        success_count: would_export,
        failed_count: would_fail,
        deferred_count: would_defer,
        partially_exported_count: 0,
        unresolvable_reference_count: 0,
        reconciled_count: 0,
        created_container_external_ids: Vec::new(),
        optimistic_apply_applied_count: 0,
        optimistic_apply_skipped_count: 0,
        optimistic_apply_failed_count: 0,
        optimistic_apply_unresolved_reference_count: 0,
        cancelled: false,
        message: preview_message(planned),
        dialect: Some(dialect),
        metrics: RunMetrics {
            sql_statements: queue.statements(),
            elapsed_ms: elapsed.as_millis() as u64,
            ..RunMetrics::default()
        },
    })
}

/// What a run would report for one export, judged by planning alone.
fn preview_item(
    claimed: &ClaimedExport,
    schema: &crate::store::SystemSchema,
    planner: &Planner,
) -> ReportItem {
    let export = &claimed.export;
    let nothing_writable =
        export.writable_changes().next().is_none() && export.has_unresolved_changes();
    let failure = if nothing_writable {
        None
    } else {
        super::planning::plan(planner, schema, claimed).err()
    };
    let status = match (&failure, nothing_writable) {
        (Some(_), _) => ItemStatus::Failed,
        (None, true) => ItemStatus::Deferred,
        (None, false) => ItemStatus::Succeeded,
    };
    let error_type: Option<ConnectedSystemExportErrorType> = failure.as_ref().map(|f| f.error_type);
    ReportItem {
        pending_export_id: export.id,
        change_type: export.change_type,
        connected_system_object_id: export.connected_system_object_id,
        status,
        object_change_type: ReportItem::object_change_type_for(export.change_type, status),
        error_message: failure.map(|f| f.message),
        error_type,
        run_history_error_type: error_type.map(|t| t.run_history_error_type()),
        error_count: export.error_count,
        written_change_ids: Vec::new(),
        attribute_change_count: export.attribute_changes.len() as u32,
        source_metaverse_object_id: export.source_metaverse_object_id,
        queued_by_run_profile_execution_item_id: export.queued_by_run_profile_execution_item_id,
        provisioning_sync_rule_id: export.provisioning_sync_rule_id,
        provisioned: false,
        anchor_changes: Vec::new(),
        unresolved_reference_note: None,
    }
}
