//! Consolidation and chunking of an Update's modifications (`ldap-export.md` §3.3, §3.4), with the
//! fixes of §11.4 and §11.5.
//!
//! Changes are grouped per (attribute, LDAP operation) in order of first appearance: `Add` → add,
//! `Update` → replace, `Remove` → delete, `RemoveAll` → replace with no values. When an attribute has a
//! replace group, its final value set is stated by that one replace: the attribute's added values join
//! it and its removed values leave it, so no value is dropped whatever order the changes came in (JIM
//! emits only the clear and drops the rest). Each group is then cut into chunks of at most the modify
//! batch size; a replace larger than a chunk becomes a replace of the first chunk followed by adds, so
//! nothing is lost (JIM sends several replaces and keeps only the last).

use std::collections::HashMap;

use uuid::Uuid;

use super::encode::protected_default;
use super::{ModKind, Modification, ValueSubstitution};
use crate::model::PendingExportAttributeChangeType;

/// One staged change, resolved to its attribute name and encoded value.
#[derive(Debug, Clone)]
pub(super) struct Staged<'a> {
    pub id: Uuid,
    pub attribute: &'a str,
    pub kind: PendingExportAttributeChangeType,
    pub value: Option<Vec<u8>>,
}

/// The values of one modification group, without duplicates, each with the changes that carry it.
/// Removal leaves a tombstone so that it stays O(1) however large the group.
#[derive(Debug, Clone, Default)]
pub(super) struct ValueSet {
    values: Vec<Option<(Vec<u8>, Vec<Uuid>)>>,
    index: HashMap<Vec<u8>, usize>,
}

impl ValueSet {
    fn push(&mut self, value: Vec<u8>, id: Option<Uuid>) {
        match self.index.get(&value) {
            Some(&i) => {
                if let Some((_, ids)) = &mut self.values[i] {
                    ids.extend(id);
                }
            }
            None => {
                self.index.insert(value.clone(), self.values.len());
                self.values.push(Some((value, id.into_iter().collect())));
            }
        }
    }

    /// Removes a value; returns the ids that carried it.
    fn remove(&mut self, value: &[u8]) -> Option<Vec<Uuid>> {
        let i = self.index.remove(value)?;
        self.values[i].take().map(|(_, ids)| ids)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The values in insertion order, each with its change ids.
    pub fn into_vec(self) -> Vec<(Vec<u8>, Vec<Uuid>)> {
        self.values.into_iter().flatten().collect()
    }
}

/// One (attribute, operation) group.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub attribute: String,
    pub key: String,
    pub kind: ModKind,
    pub values: ValueSet,
    /// Changes this group writes without a value of their own (a clear, a value removed from a
    /// replace); they travel with the group's first chunk.
    pub ids_without_value: Vec<Uuid>,
    /// True for the placeholder member.
    pub placeholder: bool,
}

impl Group {
    pub fn new(attribute: &str, kind: ModKind) -> Self {
        Self {
            attribute: attribute.to_string(),
            key: attribute.to_ascii_lowercase(),
            kind,
            values: ValueSet::default(),
            ids_without_value: Vec::new(),
            placeholder: false,
        }
    }

    pub fn push_value(&mut self, value: Vec<u8>, id: Option<Uuid>) {
        self.values.push(value, id);
    }

    /// Adds the placeholder member as a value of this group.
    pub fn push_placeholder(&mut self, dn: &str) {
        self.values.push(dn.as_bytes().to_vec(), None);
        self.placeholder = true;
    }

    pub fn placeholder(attribute: &str, kind: ModKind, dn: &str) -> Self {
        let mut g = Self::new(attribute, kind);
        g.values.push(dn.as_bytes().to_vec(), None);
        g.placeholder = true;
        g
    }
}

/// The result of consolidation.
#[derive(Debug, Default)]
pub(super) struct Consolidated {
    pub groups: Vec<Group>,
    pub unsent: Vec<Uuid>,
    pub substitutions: Vec<ValueSubstitution>,
    pub warnings: Vec<String>,
}

impl Consolidated {
    /// The group of `attribute` (case-insensitive) with `kind`, if any.
    #[cfg(test)]
    pub fn group(&self, attribute: &str, kind: ModKind) -> Option<&Group> {
        let key = attribute.to_ascii_lowercase();
        self.groups.iter().find(|g| g.key == key && g.kind == kind)
    }
}

/// Groups the staged changes (already filtered to writable, non-RDN ones).
pub(super) fn consolidate(changes: &[Staged<'_>]) -> Consolidated {
    let mut out = Consolidated::default();
    let mut positions: HashMap<(String, ModKind), usize> = HashMap::new();
    let mut group_for = |groups: &mut Vec<Group>, attribute: &str, kind: ModKind| -> usize {
        *positions
            .entry((attribute.to_ascii_lowercase(), kind))
            .or_insert_with(|| {
                groups.push(Group::new(attribute, kind));
                groups.len() - 1
            })
    };
    for change in changes {
        use PendingExportAttributeChangeType as C;
        match (change.kind, &change.value) {
            (C::Add, None) => {
                out.unsent.push(change.id);
                out.warnings.push(format!(
                    "change {} adds no value to '{}'; nothing sent",
                    change.id, change.attribute
                ));
            }
            (C::Remove, None) => {
                out.unsent.push(change.id);
                out.warnings.push(format!(
                    "change {} removes no value from '{}'; nothing sent",
                    change.id, change.attribute
                ));
            }
            (C::Add, Some(v)) => {
                let i = group_for(&mut out.groups, change.attribute, ModKind::Add);
                out.groups[i].values.push(v.clone(), Some(change.id));
            }
            (C::Remove, Some(v)) => {
                let i = group_for(&mut out.groups, change.attribute, ModKind::Delete);
                out.groups[i].values.push(v.clone(), Some(change.id));
            }
            (C::Update, Some(v)) => {
                let i = group_for(&mut out.groups, change.attribute, ModKind::Replace);
                out.groups[i].values.push(v.clone(), Some(change.id));
            }
            (C::Update, None) | (C::RemoveAll, _) => {
                let i = group_for(&mut out.groups, change.attribute, ModKind::Replace);
                out.groups[i].ids_without_value.push(change.id);
            }
        }
    }
    merge_into_replace(&mut out.groups);
    apply_protected_defaults(&mut out);
    out
}

/// Folds the add and delete groups of an attribute that also has a replace group into that replace.
fn merge_into_replace(groups: &mut Vec<Group>) {
    let replaced: Vec<String> = groups
        .iter()
        .filter(|g| g.kind == ModKind::Replace)
        .map(|g| g.key.clone())
        .collect();
    for key in replaced {
        let Some(r) = groups
            .iter()
            .position(|g| g.key == key && g.kind == ModKind::Replace)
        else {
            continue;
        };
        let mut absorbed = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            if g.key == key && g.kind != ModKind::Replace {
                absorbed.push(i);
            }
        }
        let mut adds = Vec::new();
        let mut deletes = Vec::new();
        for &i in absorbed.iter().rev() {
            let g = groups.remove(i);
            match g.kind {
                ModKind::Add => adds.push(g),
                _ => deletes.push(g),
            }
        }
        let r = r - absorbed.iter().filter(|&&i| i < r).count();
        let replace = &mut groups[r];
        for g in adds.into_iter().rev() {
            for (v, ids) in g.values.into_vec() {
                for id in ids {
                    replace.values.push(v.clone(), Some(id));
                }
            }
        }
        for g in deletes {
            for (v, ids) in g.values.into_vec() {
                if let Some(carried) = replace.values.remove(&v) {
                    replace.ids_without_value.extend(carried);
                }
                replace.ids_without_value.extend(ids);
            }
        }
    }
}

/// A clear of a protected attribute writes its default instead (JIM's `accountExpires`).
fn apply_protected_defaults(out: &mut Consolidated) {
    for g in &mut out.groups {
        if g.kind != ModKind::Replace || !g.values.is_empty() {
            continue;
        }
        if let Some(default) = protected_default(&g.attribute) {
            g.values.push(default.as_bytes().to_vec(), None);
            for id in &g.ids_without_value {
                out.substitutions.push(ValueSubstitution {
                    change_id: *id,
                    attribute: g.attribute.clone(),
                    value: default.to_string(),
                });
            }
        }
    }
}

/// One Modify request: its modifications and the changes it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub modifications: Vec<Modification>,
    pub change_ids: Vec<Uuid>,
}

/// Cuts the groups into requests of at most `batch` values per modification: the first request holds
/// every group's first chunk; each further request holds one more chunk, in group order then chunk
/// order (`ldap-export.md` §3.4). A replace's later chunks are adds.
pub(super) fn chunk(groups: Vec<Group>, batch: usize) -> Vec<Request> {
    let batch = batch.max(1);
    let mut base = Request {
        modifications: Vec::new(),
        change_ids: Vec::new(),
    };
    let mut overflow = Vec::new();
    for g in groups {
        let Group {
            attribute,
            kind,
            values,
            ids_without_value,
            placeholder,
            ..
        } = g;
        base.change_ids.extend(ids_without_value);
        if values.is_empty() {
            // A replace with no values clears; an add or delete with none would be meaningless.
            if kind == ModKind::Replace {
                base.modifications.push(Modification {
                    kind,
                    attribute,
                    values: Vec::new(),
                    placeholder,
                });
            }
            continue;
        }
        let values = values.into_vec();
        let mut chunks = values.chunks(batch);
        let mut first = true;
        for c in chunks.by_ref() {
            let m = Modification {
                kind: if first || kind != ModKind::Replace {
                    kind
                } else {
                    ModKind::Add
                },
                attribute: attribute.clone(),
                values: c.iter().map(|(v, _)| v.clone()).collect(),
                placeholder,
            };
            let ids = c.iter().flat_map(|(_, ids)| ids.iter().copied());
            if first {
                base.modifications.push(m);
                base.change_ids.extend(ids);
                first = false;
            } else {
                overflow.push(Request {
                    modifications: vec![m],
                    change_ids: ids.collect(),
                });
            }
        }
    }
    let mut out = Vec::with_capacity(overflow.len() + 1);
    if !base.modifications.is_empty() {
        out.push(base);
    } else if !base.change_ids.is_empty() {
        // Nothing to send but ids to account for: hand them to the first overflow request, if any.
        if let Some(first) = overflow.first_mut() {
            first.change_ids.extend(base.change_ids);
        }
    }
    out.extend(overflow);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PendingExportAttributeChangeType as C;

    fn staged<'a>(attribute: &'a str, kind: C, value: Option<&str>) -> Staged<'a> {
        Staged {
            id: Uuid::new_v4(),
            attribute,
            kind,
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn members(kind: C, n: usize, prefix: &str) -> Vec<(String, C)> {
        (0..n)
            .map(|i| (format!("cn={prefix}{i},dc=x"), kind))
            .collect()
    }

    fn to_staged(v: &[(String, C)]) -> Vec<Staged<'_>> {
        v.iter()
            .map(|(value, kind)| staged("member", *kind, Some(value)))
            .collect()
    }

    fn shape(requests: &[Request]) -> Vec<Vec<(ModKind, usize)>> {
        requests
            .iter()
            .map(|r| {
                r.modifications
                    .iter()
                    .map(|m| (m.kind, m.values.len()))
                    .collect()
            })
            .collect()
    }

    /// `ConsolidateModifications_SingleAttributeChange_…`, `…MultipleSameAttributeAdds…`,
    /// `…LargeMemberCount…`.
    #[test]
    fn adds_of_one_attribute_form_one_group() {
        for n in [1, 5, 200] {
            let v = members(C::Add, n, "u");
            let c = consolidate(&to_staged(&v));
            assert_eq!(c.groups.len(), 1);
            assert_eq!(c.groups[0].kind, ModKind::Add);
            assert_eq!(c.groups[0].values.len(), n);
        }
    }

    /// `ConsolidateModifications_MixedAddAndRemove_CreatesSeparateConsolidationsAsync`,
    /// `…DifferentAttributes_NotConsolidatedAsync`.
    #[test]
    fn separate_groups_per_attribute_and_operation() {
        let mut v = members(C::Add, 3, "a");
        v.extend(members(C::Remove, 2, "r"));
        let c = consolidate(&to_staged(&v));
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.group("member", ModKind::Add).unwrap().values.len(), 3);
        assert_eq!(c.group("MEMBER", ModKind::Delete).unwrap().values.len(), 2);
        let c = consolidate(&[
            staged("displayName", C::Update, Some("D")),
            staged("description", C::Update, Some("E")),
        ]);
        assert_eq!(c.groups.len(), 2);
    }

    /// `BuildModifyRequests_SmallMemberAdd_…`, `…ConsolidatesMultipleMemberAdds_IntoSingleModification…`.
    #[test]
    fn small_add_is_one_request_with_one_modification() {
        let v = members(C::Add, 5, "u");
        let r = chunk(consolidate(&to_staged(&v)).groups, 100);
        assert_eq!(shape(&r), vec![vec![(ModKind::Add, 5)]]);
        assert_eq!(r[0].change_ids.len(), 5);
    }

    /// `BuildModifyRequests_LargeMemberAdd_ChunksIntoMultipleRequestsAsync`: 120 at 50 → 50, 50, 20.
    #[test]
    fn large_add_is_chunked() {
        let v = members(C::Add, 120, "u");
        let r = chunk(consolidate(&to_staged(&v)).groups, 50);
        assert_eq!(
            shape(&r),
            vec![
                vec![(ModKind::Add, 50)],
                vec![(ModKind::Add, 50)],
                vec![(ModKind::Add, 20)]
            ]
        );
        assert_eq!(r.iter().map(|r| r.change_ids.len()).sum::<usize>(), 120);
    }

    /// `…ExactBatchSize…`, `…BatchSizePlusOne…`, `…DefaultBatchSize_HoldsOneThousand…`,
    /// `…DefaultBatchSizePlusOne…`.
    #[test]
    fn batch_boundaries() {
        for (n, batch, expected) in [
            (100, 100, vec![100]),
            (101, 100, vec![100, 1]),
            (1000, 1000, vec![1000]),
            (1001, 1000, vec![1000, 1]),
        ] {
            let v = members(C::Add, n, "u");
            let r = chunk(consolidate(&to_staged(&v)).groups, batch);
            let sizes: Vec<usize> = r.iter().map(|r| r.modifications[0].values.len()).collect();
            assert_eq!(sizes, expected, "{n}@{batch}");
        }
    }

    /// `BuildModifyRequests_NoChanges_ReturnsEmptyListAsync`.
    #[test]
    fn no_changes_no_requests() {
        assert!(chunk(consolidate(&[]).groups, 100).is_empty());
    }

    /// `BuildModifyRequests_MixedAddsAndRemoves_ChunkedSeparatelyAsync`: 80 adds + 30 removes at 50 →
    /// [add 50 + delete 30], [add 30].
    #[test]
    fn mixed_adds_and_removes() {
        let mut v = members(C::Add, 80, "a");
        v.extend(members(C::Remove, 30, "r"));
        let r = chunk(consolidate(&to_staged(&v)).groups, 50);
        assert_eq!(
            shape(&r),
            vec![
                vec![(ModKind::Add, 50), (ModKind::Delete, 30)],
                vec![(ModKind::Add, 30)]
            ]
        );
        assert_eq!(r[0].change_ids.len(), 80);
        assert_eq!(r[1].change_ids.len(), 30);
    }

    /// `BuildModifyRequests_SingleValuedAttribute_NotChunkedAsync`.
    #[test]
    fn single_valued_update() {
        let r = chunk(
            consolidate(&[staged("displayName", C::Update, Some("D"))]).groups,
            100,
        );
        assert_eq!(shape(&r), vec![vec![(ModKind::Replace, 1)]]);
    }

    /// §11.4: a replace larger than a chunk is replace(first chunk) then adds, never several
    /// replaces.
    #[test]
    fn large_replace_is_replace_then_adds() {
        let v = members(C::Update, 120, "u");
        let r = chunk(consolidate(&to_staged(&v)).groups, 50);
        assert_eq!(
            shape(&r),
            vec![
                vec![(ModKind::Replace, 50)],
                vec![(ModKind::Add, 50)],
                vec![(ModKind::Add, 20)]
            ]
        );
        let sent: usize = r.iter().map(|r| r.modifications[0].values.len()).sum();
        assert_eq!(sent, 120, "no value lost");
    }

    /// §11.5: RemoveAll with other values of the attribute states the final set in one replace,
    /// whatever the order.
    #[test]
    fn remove_all_keeps_the_other_values() {
        for order in [0, 1] {
            let mut changes = vec![
                staged("member", C::Add, Some("cn=new,dc=x")),
                staged("member", C::Update, Some("cn=set,dc=x")),
                staged("member", C::Remove, Some("cn=set,dc=x")),
                staged("member", C::Remove, Some("cn=old,dc=x")),
            ];
            let clear = staged("member", C::RemoveAll, None);
            if order == 0 {
                changes.insert(0, clear);
            } else {
                changes.push(clear);
            }
            let c = consolidate(&changes);
            assert_eq!(c.groups.len(), 1, "one replace states the final set");
            let r = chunk(c.groups, 50);
            assert_eq!(r.len(), 1);
            let m = &r[0].modifications[0];
            assert_eq!(m.kind, ModKind::Replace);
            assert_eq!(m.values, vec![b"cn=new,dc=x".to_vec()]);
            assert_eq!(r[0].change_ids.len(), 5, "every change is accounted for");
        }
    }

    #[test]
    fn clears_and_nulls() {
        let c = consolidate(&[
            staged("description", C::RemoveAll, None),
            staged("title", C::Update, None),
            staged("mail", C::Add, None),
            staged("cn", C::Remove, None),
        ]);
        assert_eq!(c.unsent.len(), 2);
        assert_eq!(c.warnings.len(), 2);
        let r = chunk(c.groups, 10);
        assert_eq!(
            shape(&r),
            vec![vec![(ModKind::Replace, 0), (ModKind::Replace, 0)]]
        );
    }

    /// §3.3: clearing accountExpires writes "never expires" and records the substitution.
    #[test]
    fn protected_default_replaces_a_clear() {
        for kind in [C::RemoveAll, C::Update] {
            let change = staged("accountExpires", kind, None);
            let id = change.id;
            let c = consolidate(&[change]);
            assert_eq!(c.substitutions.len(), 1);
            assert_eq!(c.substitutions[0].change_id, id);
            let r = chunk(c.groups, 10);
            assert_eq!(
                r[0].modifications[0].values,
                vec![b"9223372036854775807".to_vec()]
            );
            assert_eq!(r[0].modifications[0].kind, ModKind::Replace);
        }
    }

    #[test]
    fn duplicate_values_are_sent_once() {
        let c = consolidate(&[
            staged("member", C::Add, Some("cn=a,dc=x")),
            staged("member", C::Add, Some("cn=a,dc=x")),
        ]);
        let r = chunk(c.groups, 10);
        assert_eq!(r[0].modifications[0].values.len(), 1);
        assert_eq!(r[0].change_ids.len(), 2);
    }
}
