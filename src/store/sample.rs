//! Large multi-valued attributes (a group's members): the claim reads such an attribute only up to
//! a sample (`sql::load_tail!`, [`SAMPLE_ROWS`]). A sample that came back short is every row; a full
//! one is not, and then the rows the export's changes can match are looked up by value: here is
//! which samples came back full and which lookups they need, and where the rows found go.
//!
//! Counting the sample here rather than in the claim keeps the claim's read of a small group one
//! streamed index range: deciding fullness in SQL meant materializing and counting every sample
//! (0.2-0.3 ms of PostgreSQL time per export at 200 members, `bench_groups` with 100 groups).

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::claim::ClaimedExport;
use super::resolve::parse_mvo_id;
use super::sql::SAMPLE_ROWS;
use crate::model::{
    AttributeValueChange, CsoAttributeValue, PendingExportAttributeChangeType,
    PendingExportChangeType,
};

/// The attributes of `claimed`'s CSO whose sample came back full: those holding at least as many
/// loaded rows as the claim's sample for them (`SAMPLE_ROWS`, or two more than the export's changes
/// on the attribute if that is more; the same rule as `sql::load_tail!`'s `n.sample`). Empty for a
/// Create (the claim reads its CSO whole) and for an export without a CSO.
///
/// An attribute the claim read whole can be counted here too when it is that large; looking its
/// rows up again finds only rows already loaded, which [`add_owned_values`] drops.
pub(crate) fn full_samples(claimed: &ClaimedExport) -> HashSet<i32> {
    let Some(cso) = claimed.cso.as_ref() else {
        return HashSet::new();
    };
    if claimed.export.change_type == PendingExportChangeType::Create {
        return HashSet::new();
    }
    let mut changes_on: HashMap<i32, usize> = HashMap::new();
    for c in &claimed.export.attribute_changes {
        *changes_on.entry(c.attribute_id).or_default() += 1;
    }
    let mut loaded: HashMap<i32, usize> = HashMap::new();
    for v in &cso.values {
        *loaded.entry(v.attribute_id).or_default() += 1;
    }
    changes_on
        .into_iter()
        .filter(|(attribute, changes)| {
            loaded.get(attribute).copied().unwrap_or(0) >= SAMPLE_ROWS.max(changes + 2)
        })
        .map(|(attribute, _)| attribute)
        .collect()
}

/// The lookups (`sql::PROBE`) for reference changes resolved at claim time on a full sample, as
/// four parallel arrays: for each Add or Remove naming a CSO, the exporting CSO, the change's
/// attribute, the referenced CSO and the change's DN (for a stored row known by its DN alone).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ResolvedProbes {
    pub owners: Vec<Uuid>,
    pub attributes: Vec<i32>,
    pub targets: Vec<Uuid>,
    pub dns: Vec<Option<String>>,
}

impl ResolvedProbes {
    pub(crate) fn of(exports: &[ClaimedExport]) -> Self {
        let mut probes = ResolvedProbes::default();
        for (owner, c) in changes_on_full_samples(exports) {
            let Some(target) = c.resolved_reference_cso_id else {
                continue;
            };
            if !matches!(
                c.change_type,
                PendingExportAttributeChangeType::Add | PendingExportAttributeChangeType::Remove
            ) {
                continue;
            }
            probes.owners.push(owner);
            probes.attributes.push(c.attribute_id);
            probes.targets.push(target);
            probes.dns.push(c.value.string.clone());
        }
        probes
    }

    /// True when there is nothing to look up (no statement is sent).
    pub(crate) fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// The lookups the resolution query (`sql::RESOLVE`'s rows of kind 1) makes for unresolved
/// reference changes on a full sample, as three parallel arrays: the exporting CSO, the change's
/// attribute and the referenced MVO. The resolution finds the MVO's CSO and looks up its rows as
/// [`ResolvedProbes`]' are looked up.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct OwnerProbes {
    pub owners: Vec<Uuid>,
    pub attributes: Vec<i32>,
    pub mvos: Vec<Uuid>,
}

impl OwnerProbes {
    pub(crate) fn of(exports: &[ClaimedExport]) -> Self {
        let mut probes = OwnerProbes::default();
        for (owner, c) in changes_on_full_samples(exports) {
            if !c.is_unresolved_reference() {
                continue;
            }
            let Some(mvo) = c
                .unresolved_reference_value
                .as_deref()
                .and_then(parse_mvo_id)
            else {
                continue;
            };
            probes.owners.push(owner);
            probes.attributes.push(c.attribute_id);
            probes.mvos.push(mvo);
        }
        probes
    }
}

/// The changes of `exports` on attributes whose sample came back full ([`full_samples`]), each
/// with the exporting CSO.
fn changes_on_full_samples(
    exports: &[ClaimedExport],
) -> impl Iterator<Item = (Uuid, &AttributeValueChange)> {
    exports.iter().flat_map(|claimed| {
        let full = full_samples(claimed);
        let owner = claimed.cso.as_ref().map(|c| c.id);
        claimed
            .export
            .attribute_changes
            .iter()
            .filter(move |c| full.contains(&c.attribute_id))
            .filter_map(move |c| Some((owner?, c)))
    })
}

/// Adds the value rows a lookup found (`(exporting CSO, row)`) to the CSO of every export of
/// `exports` it belongs to, once: the claim may already have loaded the same row.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AttributeValueChange, ConnectedSystemObject, ConnectedSystemObjectJoinType,
        ConnectedSystemObjectStatus, ValueSlots,
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

    /// A group export with `loaded` member rows loaded and one Add per CSO in `targets`, resolved
    /// at claim time (the plain pass), each with its DN.
    fn resolved_group_export(loaded: usize, targets: &[Uuid]) -> ClaimedExport {
        let mut e = group_export(PendingExportChangeType::Update, loaded, &[]);
        e.export.attribute_changes = targets
            .iter()
            .enumerate()
            .map(|(i, t)| AttributeValueChange {
                value: ValueSlots::text(format!("uid=u{i},dc=example")),
                resolved_reference_cso_id: Some(*t),
                ..AttributeValueChange::for_test(
                    e.export.id,
                    MEMBER,
                    PendingExportAttributeChangeType::Add,
                )
            })
            .collect();
        e
    }

    /// Resolved changes on a full sample are looked up by CSO and DN; a short sample, a Create and
    /// a change that is not an Add or a Remove send nothing.
    #[test]
    fn resolved_changes_on_a_full_sample_are_looked_up() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let short = resolved_group_export(SAMPLE_ROWS - 1, &[a]);
        let full = resolved_group_export(SAMPLE_ROWS, &[a, b]);
        let mut create = resolved_group_export(SAMPLE_ROWS, &[a]);
        create.export.change_type = PendingExportChangeType::Create;
        let mut replace = resolved_group_export(SAMPLE_ROWS, &[a]);
        replace.export.attribute_changes[0].change_type = PendingExportAttributeChangeType::Update;
        let owner = full.cso.as_ref().unwrap().id;
        let probes = ResolvedProbes::of(&[short, full, create, replace]);
        assert_eq!(probes.owners, vec![owner, owner]);
        assert_eq!(probes.attributes, vec![MEMBER, MEMBER]);
        assert_eq!(probes.targets, vec![a, b]);
        assert_eq!(
            probes.dns,
            vec![
                Some("uid=u0,dc=example".to_string()),
                Some("uid=u1,dc=example".to_string())
            ]
        );
    }

    /// Only the attribute whose sample is full is probed: another attribute's changes on the same
    /// CSO are not.
    #[test]
    fn only_the_full_attribute_is_probed() {
        let a = Uuid::new_v4();
        let mut e = resolved_group_export(SAMPLE_ROWS, &[a]);
        let mut other = e.export.attribute_changes[0].clone();
        other.attribute_id = MEMBER + 1;
        e.export.attribute_changes.push(other);
        assert_eq!(full_samples(&e), HashSet::from([MEMBER]));
        assert_eq!(ResolvedProbes::of(&[e]).attributes, vec![MEMBER]);
    }
}
