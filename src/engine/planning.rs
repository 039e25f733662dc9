//! Planning a claimed export: the object type's attribute definitions when the export has a CSO, else
//! the definitions its changes name (a Delete whose CSO is gone). Shared by the run and the dry run;
//! the run then makes the plan a job for the directory ([`job`]).

use std::sync::Arc;

use uuid::Uuid;

use crate::directory::{AnchorRegistry, ExportJob, OUTCOME_UNKNOWN_NOTE, Recovery};
use crate::model::PendingExportChangeType;
use crate::plan::{ExportPlan, PlanFailure, PlanInput, Planner};
use crate::store::{ClaimedExport, ExportQueue, SystemSchema};

/// Plans `claimed` for the planner's dialect and settings.
pub(crate) fn plan(
    planner: &Planner,
    schema: &SystemSchema,
    claimed: &ClaimedExport,
) -> Result<ExportPlan, PlanFailure> {
    with_input(schema, claimed, |input| planner.plan(input))
}

/// The DN `claimed` renames or moves its object away from, when its plan would do so
/// ([`Planner::rename`]).
pub(crate) fn renamed_from(
    planner: &Planner,
    schema: &SystemSchema,
    claimed: &ClaimedExport,
) -> Option<String> {
    if claimed.export.change_type != PendingExportChangeType::Update {
        return None;
    }
    with_input(schema, claimed, |input| {
        planner.rename(input).map(|(from, _)| from.to_string())
    })
}

/// Keeps, of the renames outside this run that `claimed`'s references name objects by (see
/// [`ClaimedExport::pending_renames`]), those its plan would make: a change of the DN attribute
/// ([`crate::model::AttributeDefinition::is_distinguished_name`]) to a DN the plan accepts
/// ([`Planner::moves_to`]). One the plan refuses never reaches the directory, so nothing need
/// wait for it.
pub(crate) fn keep_renames_the_plan_makes(
    planner: &Planner,
    schema: &SystemSchema,
    claimed: &mut ClaimedExport,
) {
    claimed.pending_renames.retain(|r| {
        schema
            .attribute(r.attribute_id)
            .is_some_and(|a| a.is_distinguished_name())
            && planner.moves_to(&r.from, &r.to)
    });
}

/// Calls `f` with the planner's view of `claimed`.
fn with_input<R>(
    schema: &SystemSchema,
    claimed: &ClaimedExport,
    f: impl FnOnce(&PlanInput<'_>) -> R,
) -> R {
    let export = &claimed.export;
    let cso = claimed.cso.as_ref();
    match cso.and_then(|c| schema.object_type(c.type_id)) {
        Some(object_type) => f(&PlanInput::new(export, object_type, cso)),
        None => {
            let attributes: Vec<_> = export
                .attribute_changes
                .iter()
                .filter_map(|c| schema.attribute(c.attribute_id).cloned())
                .collect();
            f(&PlanInput {
                export,
                object_type_name: None,
                attributes: &attributes,
                cso,
                created_containers: &[],
            })
        }
    }
}

/// Plans `claimed` and makes it the directory's job, fenced by its row's lease.
pub(crate) fn job(
    planner: &Planner,
    schema: &SystemSchema,
    queue: &Arc<ExportQueue>,
    claimed: &ClaimedExport,
) -> ExportJob {
    let export = &claimed.export;
    let plan = plan(planner, schema, claimed);
    // A row whose earlier attempt may have reached the directory (the engine's mark on it, a crashed
    // run's stale claim, a last attempt that ended not knowing what the directory applied) may already
    // be (partly) in the directory.
    let unknown_before = export
        .last_error_message
        .as_deref()
        .is_some_and(|m| m.contains(OUTCOME_UNKNOWN_NOTE));
    let recovery = Recovery {
        first_attempt_at: claimed.first_attempt_at,
        anchors: (export.change_type == PendingExportChangeType::Create).then(|| {
            Arc::new(OtherHolders {
                queue: queue.clone(),
                own: export.connected_system_object_id,
            }) as Arc<dyn AnchorRegistry>
        }),
    };
    let mut job = ExportJob::new(export.id, plan)
        .reattempt(claimed.re_attempt || unknown_before)
        .recovery(recovery);
    if let Some(fence) = queue.fence(export.id) {
        job = job.fenced_by(fence);
    }
    job
}

/// Whether an anchor belongs to another object of the system: the last evidence a re-attempted
/// Create checks before adopting an existing entry.
struct OtherHolders {
    queue: Arc<ExportQueue>,
    own: Option<Uuid>,
}

impl AnchorRegistry for OtherHolders {
    fn other_holder<'a>(
        &'a self,
        anchor: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Option<Uuid>, String>> + Send + 'a,
        >,
    > {
        Box::pin(async move {
            self.queue
                .anchor_holder(anchor, self.own)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
