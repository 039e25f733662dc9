//! Planning a claimed export: the object type's attribute definitions when the export has a CSO, else
//! the definitions its changes name (a Delete whose CSO is gone). Shared by the run and the dry run.

use crate::plan::{ExportPlan, PlanFailure, PlanInput, Planner};
use crate::store::{ClaimedExport, SystemSchema};

/// Plans `claimed` for the planner's dialect and settings.
pub(crate) fn plan(
    planner: &Planner,
    schema: &SystemSchema,
    claimed: &ClaimedExport,
) -> Result<ExportPlan, PlanFailure> {
    let export = &claimed.export;
    let cso = claimed.cso.as_ref();
    match cso.and_then(|c| schema.object_type(c.type_id)) {
        Some(object_type) => planner.plan(&PlanInput::new(export, object_type, cso)),
        None => {
            let attributes: Vec<_> = export
                .attribute_changes
                .iter()
                .filter_map(|c| schema.attribute(c.attribute_id).cloned())
                .collect();
            planner.plan(&PlanInput {
                export,
                object_type_name: None,
                attributes: &attributes,
                cso,
                created_containers: &[],
            })
        }
    }
}
