//! Reference resolution (JIM's `TryResolveReferencesFromLookup`, export-semantics §2.3 step 4): a
//! reference change holds the referenced MVO's id until it is rewritten to the anchor of that MVO's CSO
//! in the target system: the secondary anchor (the DN) when the CSO has a value row for it, else the
//! primary anchor. A CSO without an anchor value keeps the change unresolved ("awaiting anchor"); an MVO
//! without a CSO there is "not in target system".

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::claim::{ClaimedExport, ReferenceResolution, UnresolvedReference};
use super::sql::SAMPLE_ROWS;
use super::system::SystemSchema;
use crate::model::{
    CsoAttributeValue, PendingExportChangeType, UnresolvedReferenceReason, ValueSlots,
};

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

/// The rows of exporting CSOs the resolution query looks up for unresolved changes (`sql::RESOLVE`'s
/// rows of kind 1), as three parallel arrays: for each unresolved reference change of an Update or
/// Delete with a CSO, that CSO, the change's attribute and the referenced MVO. Only where the claim
/// read a full sample of the attribute (`sql::load_tail!`): anything less is every row it has. A
/// Create is left out: the claim read its CSO whole.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct OwnerProbes {
    pub owners: Vec<Uuid>,
    pub attributes: Vec<i32>,
    pub mvos: Vec<Uuid>,
}

impl OwnerProbes {
    pub(crate) fn of(exports: &[ClaimedExport]) -> Self {
        let mut probes = OwnerProbes::default();
        for claimed in exports {
            let Some(cso) = claimed.cso.as_ref() else {
                continue;
            };
            if claimed.export.change_type == PendingExportChangeType::Create {
                continue;
            }
            let unresolved: Vec<(i32, Uuid)> = claimed
                .export
                .attribute_changes
                .iter()
                .filter(|c| c.is_unresolved_reference())
                .filter_map(|c| {
                    let mvo = c
                        .unresolved_reference_value
                        .as_deref()
                        .and_then(parse_mvo_id)?;
                    Some((c.attribute_id, mvo))
                })
                .collect();
            if unresolved.is_empty() {
                continue;
            }
            let mut changes_on: HashMap<i32, usize> = HashMap::new();
            for c in &claimed.export.attribute_changes {
                *changes_on.entry(c.attribute_id).or_default() += 1;
            }
            let mut loaded: HashMap<i32, usize> = HashMap::new();
            for v in &cso.values {
                *loaded.entry(v.attribute_id).or_default() += 1;
            }
            for (attribute_id, mvo) in unresolved {
                let sample = SAMPLE_ROWS.max(changes_on.get(&attribute_id).map_or(0, |n| n + 2));
                if loaded.get(&attribute_id).copied().unwrap_or(0) < sample {
                    continue;
                }
                probes.owners.push(cso.id);
                probes.attributes.push(attribute_id);
                probes.mvos.push(mvo);
            }
        }
        probes
    }
}

/// Adds the value rows the resolution query found (`(exporting CSO, row)`) to the CSO of every export
/// of `exports` it belongs to, once: the claim may already have loaded the same row.
pub(crate) fn add_owned_values(
    exports: &mut [ClaimedExport],
    rows: Vec<(Uuid, CsoAttributeValue)>,
) {
    if rows.is_empty() {
        return;
    }
    let mut by_owner: HashMap<Uuid, Vec<CsoAttributeValue>> = HashMap::new();
    for (owner, row) in rows {
        by_owner.entry(owner).or_default().push(row);
    }
    for claimed in exports.iter_mut() {
        let Some(cso) = claimed.cso.as_mut() else {
            continue;
        };
        let Some(rows) = by_owner.get(&cso.id) else {
            continue;
        };
        let mut present: HashSet<Uuid> = cso.values.iter().map(|v| v.id).collect();
        for row in rows {
            if present.insert(row.id) {
                cso.values.push(row.clone());
            }
        }
    }
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
    use crate::model::{
        AttributeValueChange, ConnectedSystemObject, ConnectedSystemObjectJoinType,
        ConnectedSystemObjectStatus, PendingExportAttributeChangeType,
    };

    const MEMBER: i32 = 7;

    fn member_row(cso: Uuid) -> CsoAttributeValue {
        CsoAttributeValue {
            id: Uuid::new_v4(),
            attribute_id: MEMBER,
            value: ValueSlots::default(),
            reference_value_id: Some(cso),
            unresolved_reference_value: None,
        }
    }

    /// A group export with `loaded` member rows loaded and one unresolved Add per MVO in `mvos`.
    fn group_export(
        change_type: PendingExportChangeType,
        loaded: usize,
        mvos: &[Uuid],
    ) -> ClaimedExport {
        let mut e = ClaimedExport::for_test(change_type);
        e.export.attribute_changes = mvos
            .iter()
            .map(|m| AttributeValueChange {
                unresolved_reference_value: Some(m.to_string()),
                ..AttributeValueChange::for_test(
                    e.export.id,
                    MEMBER,
                    PendingExportAttributeChangeType::Add,
                )
            })
            .collect();
        e.cso = Some(ConnectedSystemObject {
            id: Uuid::new_v4(),
            connected_system_id: 1,
            type_id: 1,
            external_id_attribute_id: 1,
            secondary_external_id_attribute_id: Some(2),
            status: ConnectedSystemObjectStatus::Normal,
            metaverse_object_id: None,
            join_type: ConnectedSystemObjectJoinType::Provisioned,
            values: (0..loaded).map(|_| member_row(Uuid::new_v4())).collect(),
        });
        e
    }

    /// Probes go out only where the claim's sample came back full: a short one is every row.
    #[test]
    fn only_a_full_sample_sends_probes_and_a_create_never() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let short = group_export(PendingExportChangeType::Update, SAMPLE_ROWS - 1, &[a]);
        let full = group_export(PendingExportChangeType::Update, SAMPLE_ROWS, &[a, b]);
        let create = group_export(PendingExportChangeType::Create, SAMPLE_ROWS, &[a]);
        let owner = full.cso.as_ref().unwrap().id;
        let probes = OwnerProbes::of(&[short, full, create]);
        assert_eq!(probes.owners, vec![owner, owner]);
        assert_eq!(probes.attributes, vec![MEMBER, MEMBER]);
        assert_eq!(probes.mvos, vec![a, b]);
    }

    /// With more changes than the sample's floor, the sample is the changes plus two.
    #[test]
    fn the_sample_grows_with_the_changes() {
        let mvos: Vec<Uuid> = (0..SAMPLE_ROWS).map(|_| Uuid::new_v4()).collect();
        let short = group_export(PendingExportChangeType::Update, SAMPLE_ROWS + 1, &mvos);
        assert!(OwnerProbes::of(&[short]).owners.is_empty());
        let full = group_export(PendingExportChangeType::Update, SAMPLE_ROWS + 2, &mvos);
        assert_eq!(OwnerProbes::of(&[full]).owners.len(), SAMPLE_ROWS);
    }

    /// Found rows join the CSO they belong to, once each, whatever the claim already loaded.
    #[test]
    fn owned_values_join_their_cso_once() {
        let mut exports = vec![
            group_export(PendingExportChangeType::Update, 1, &[]),
            group_export(PendingExportChangeType::Update, 0, &[]),
        ];
        let first = exports[0].cso.clone().unwrap();
        let known = first.values[0].clone();
        let new = member_row(Uuid::new_v4());
        add_owned_values(
            &mut exports,
            vec![
                (first.id, known.clone()),
                (first.id, new.clone()),
                (first.id, new.clone()),
            ],
        );
        assert_eq!(exports[0].cso.as_ref().unwrap().values, vec![known, new]);
        assert!(exports[1].cso.as_ref().unwrap().values.is_empty());
    }

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
