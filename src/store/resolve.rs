//! Reference resolution (JIM's `TryResolveReferencesFromLookup`, export-semantics §2.3 step 4): a
//! reference change holds the referenced MVO's id until it is rewritten to the anchor of that MVO's CSO
//! in the target system: the secondary anchor (the DN) when the CSO has a value row for it, else the
//! primary anchor. A CSO without an anchor value keeps the change unresolved ("awaiting anchor"); an MVO
//! without a CSO there is "not in target system".

use std::collections::HashMap;

use uuid::Uuid;

use super::claim::{ClaimedExport, ReferenceResolution, StagedRename, UnresolvedReference};
use super::system::SystemSchema;
use crate::model::{PendingExportAttributeChangeType, UnresolvedReferenceReason, ValueSlots};

/// What one resolution call did, summed over the page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveSummary {
    /// Changes rewritten to an anchor.
    pub resolved: usize,
    /// Changes whose referenced object has a CSO in the target system without an anchor value yet.
    pub awaiting_anchor: usize,
    /// Changes whose referenced object has no CSO in the target system (or whose stored id is not a GUID).
    pub not_in_target_system: usize,
}

/// One anchor value row of a referenced CSO, as the resolution query returns it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AnchorRow {
    pub value_id: Uuid,
    pub attribute_id: i32,
    pub value: ValueSlots,
}

/// A referenced MVO's CSO in the target system and its anchor value rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Target {
    pub cso_id: Uuid,
    pub anchors: Vec<AnchorRow>,
    /// The DN change staged for the CSO that no export has made yet.
    pub rename: Option<StagedRename>,
}

/// Parses the MVO id JIM stores in `UnresolvedReferenceValue` (.NET writes the "D" form; braces and the
/// bare 32-digit form parse too).
pub(crate) fn parse_mvo_id(raw: &str) -> Option<Uuid> {
    Uuid::parse_str(raw.trim()).ok()
}

/// The anchor a reference to `target` is written as: the secondary anchor row if the CSO has one
/// (even when it holds no value, as JIM does), else the primary anchor row; `None` when that row holds no
/// value or there is none.
pub(crate) fn anchor_for(target: &Target, schema: &SystemSchema) -> Option<String> {
    let is_secondary = |r: &&AnchorRow| {
        schema
            .attribute(r.attribute_id)
            .is_some_and(|a| a.is_secondary_external_id)
    };
    let is_primary = |r: &&AnchorRow| {
        schema
            .attribute(r.attribute_id)
            .is_some_and(|a| a.is_external_id)
    };
    // Several rows for one anchor attribute should not exist; take the lowest id so the choice is stable.
    let chosen = target
        .anchors
        .iter()
        .filter(is_secondary)
        .min_by_key(|r| r.value_id)
        .or_else(|| {
            target
                .anchors
                .iter()
                .filter(is_primary)
                .min_by_key(|r| r.value_id)
        })?;
    chosen.value.reference_string().filter(|s| !s.is_empty())
}

/// Applies the lookup to every unresolved reference change of `exports`, rewriting resolved changes in
/// place and recording the resolution and the reasons for the rest.
pub(crate) fn apply(
    exports: &mut [ClaimedExport],
    targets: &HashMap<Uuid, Target>,
    schema: &SystemSchema,
) -> ResolveSummary {
    let mut summary = ResolveSummary::default();
    for claimed in exports.iter_mut() {
        claimed.unresolved.clear();
        for change in claimed.export.attribute_changes.iter_mut() {
            if !change.is_unresolved_reference() {
                continue;
            }
            let raw = change
                .unresolved_reference_value
                .clone()
                .unwrap_or_default();
            let target = parse_mvo_id(&raw).and_then(|m| targets.get(&m));
            let reason = match target {
                None => UnresolvedReferenceReason::NotInTargetSystem,
                Some(t) => match anchor_for(t, schema) {
                    Some(anchor) => {
                        if let Some(staged) = &t.rename
                            && change.change_type != PendingExportAttributeChangeType::Remove
                            && !claimed.pending_renames.iter().any(|r| r.cso_id == t.cso_id)
                        {
                            claimed
                                .pending_renames
                                .push(staged.clone().named_by(anchor.clone()));
                        }
                        change.value.string = Some(anchor.clone());
                        change.unresolved_reference_value = None;
                        change.resolved_reference_cso_id = Some(t.cso_id);
                        claimed.resolutions.push(ReferenceResolution {
                            change_id: change.id,
                            value: anchor,
                            cso_id: t.cso_id,
                        });
                        summary.resolved += 1;
                        continue;
                    }
                    None => UnresolvedReferenceReason::AwaitingAnchor,
                },
            };
            match reason {
                UnresolvedReferenceReason::AwaitingAnchor => summary.awaiting_anchor += 1,
                _ => summary.not_in_target_system += 1,
            }
            claimed.unresolved.push(UnresolvedReference {
                change_id: change.id,
                attribute_id: change.attribute_id,
                metaverse_object_id: raw,
                reason,
            });
        }
        claimed.export.has_unresolved_references = claimed.export.has_unresolved_changes();
    }
    summary
}

/// The distinct parseable MVO ids the unresolved reference changes of `exports` point at.
pub(crate) fn wanted_mvo_ids(exports: &[ClaimedExport]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = exports
        .iter()
        .flat_map(|e| &e.export.attribute_changes)
        .filter(|c| c.is_unresolved_reference())
        .filter_map(|c| {
            c.unresolved_reference_value
                .as_deref()
                .and_then(parse_mvo_id)
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mvo_ids_parse_in_dotnet_forms() {
        let id = Uuid::parse_str("6f1c2b0a-8f6e-4d63-9a3b-2f3c1d0e9a11").unwrap();
        assert_eq!(
            parse_mvo_id("6f1c2b0a-8f6e-4d63-9a3b-2f3c1d0e9a11"),
            Some(id)
        );
        assert_eq!(
            parse_mvo_id("{6F1C2B0A-8F6E-4D63-9A3B-2F3C1D0E9A11}"),
            Some(id)
        );
        assert_eq!(parse_mvo_id("6f1c2b0a8f6e4d639a3b2f3c1d0e9a11"), Some(id));
        assert_eq!(parse_mvo_id("CN=someone,DC=example"), None);
    }
}
