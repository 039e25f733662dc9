//! What a successful export changes on its CSO's attribute values, computed in memory from the values
//! loaded at claim time, in O(changes + loaded values) with hash indexes (a 100,000-member group costs
//! 100,000 hash operations, never a nested scan). For a large attribute whose changes are all
//! reference Adds and Removes the claim loads a sample and the rows those changes can match, not the
//! whole attribute (`super::sql`, `load_tail!`): the result is the same, since an Add or a Remove
//! looks at no other row.
//!
//! - **optimistic apply** (JIM #1079, export-semantics §2.5 step 4): the written changes are mirrored onto
//!   the CSO so that JIM's confirming import finds them: Add adds the value if absent; Update replaces all
//!   values unless exactly one equal value exists (an Update with no value clears the attribute, as the
//!   directory now has it); Remove deletes matching values; RemoveAll deletes all. References are stored
//!   as `ReferenceValueId` = the resolved CSO and `UnresolvedReferenceValue` = the DN; unresolved changes
//!   and Decimal or NotSet attributes are skipped;
//! - **anchor write-back**: the primary anchor the directory assigned goes into the typed slot of the
//!   CSO's `ExternalIdAttributeId` (#1386), the DN after a create, rename or move into the
//!   `SecondaryExternalIdAttributeId` row, updating the existing row or inserting one.
//!
//! The result is a set of row deletions, updates and insertions that never touch one row twice.

use std::collections::HashMap;

use uuid::Uuid;

use super::system::SystemSchema;
use crate::model::{
    AttributeDataType, AttributeValueChange, ConnectedSystemObject,
    PendingExportAttributeChangeType, SlotValue, ValueSlots, canonical_decimal,
};

/// One row of `ConnectedSystemObjectAttributeValues` to update (`is_new == false`) or insert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueRow {
    pub id: Uuid,
    pub is_new: bool,
    pub attribute_id: i32,
    pub value: ValueSlots,
    pub reference_value_id: Option<Uuid>,
    pub unresolved_reference_value: Option<String>,
}

/// The changes to one CSO's attribute values.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct CsoDelta {
    pub deletes: Vec<Uuid>,
    pub upserts: Vec<ValueRow>,
}

#[cfg(test)]
impl CsoDelta {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.upserts.is_empty()
    }
}

/// What optimistic apply did for one export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ApplyCounts {
    /// Written changes mirrored onto the CSO (including ones that were already there).
    pub applied_changes: usize,
    /// Changes left out because their reference is unresolved.
    pub unresolved: usize,
}

/// Value identity for comparisons: the populated slot for ordinary attributes; for references the
/// referenced CSO id and, separately, the DN (case-insensitive), so that a row known only by its DN
/// matches a change that carries the resolved id and the DN (see `WorkingSet::row_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Text(String),
    Int(i32),
    Long(i64),
    Decimal(String),
    DateTime(i64),
    Bytes(Vec<u8>),
    Guid(Uuid),
    Bool(bool),
    RefId(Uuid),
    RefDn(String),
}

fn slot_key(v: &ValueSlots) -> Option<Key> {
    Some(match v.first_populated()? {
        SlotValue::Text(s) => Key::Text(s.to_owned()),
        SlotValue::Number(i) => Key::Int(i),
        SlotValue::LongNumber(l) => Key::Long(l),
        SlotValue::Decimal(d) => Key::Decimal(canonical_decimal(&d)),
        SlotValue::DateTime(d) => Key::DateTime(d.timestamp_micros()),
        SlotValue::Binary(b) => Key::Bytes(b.to_vec()),
        SlotValue::Guid(g) => Key::Guid(g),
        SlotValue::Boolean(b) => Key::Bool(b),
    })
}

fn ref_keys(id: Option<Uuid>, dn: Option<&str>) -> Vec<Key> {
    let mut keys = Vec::with_capacity(2);
    if let Some(id) = id {
        keys.push(Key::RefId(id));
    }
    if let Some(dn) = dn.filter(|d| !d.is_empty()) {
        keys.push(Key::RefDn(dn.to_lowercase()));
    }
    keys
}

#[derive(Debug, Clone)]
struct Row {
    existing: bool,
    alive: bool,
    modified: bool,
    data: ValueRow,
}

/// The values of one attribute while changes are applied in order.
#[derive(Debug, Default)]
struct AttrSet {
    rows: Vec<usize>,
    index: HashMap<Key, Vec<usize>>,
    alive: usize,
}

/// The CSO's loaded values plus everything applied so far.
struct WorkingSet<'a> {
    schema: &'a SystemSchema,
    cso_id: Uuid,
    rows: Vec<Row>,
    attrs: HashMap<i32, AttrSet>,
    loaded: HashMap<i32, Vec<usize>>,
}

impl<'a> WorkingSet<'a> {
    fn new(cso: &ConnectedSystemObject, schema: &'a SystemSchema) -> Self {
        let mut rows = Vec::with_capacity(cso.values.len());
        let mut loaded: HashMap<i32, Vec<usize>> = HashMap::new();
        for v in &cso.values {
            loaded.entry(v.attribute_id).or_default().push(rows.len());
            rows.push(Row {
                existing: true,
                alive: true,
                modified: false,
                data: ValueRow {
                    id: v.id,
                    is_new: false,
                    attribute_id: v.attribute_id,
                    value: v.value.clone(),
                    reference_value_id: v.reference_value_id,
                    unresolved_reference_value: v.unresolved_reference_value.clone(),
                },
            });
        }
        Self {
            schema,
            cso_id: cso.id,
            rows,
            attrs: HashMap::new(),
            loaded,
        }
    }

    fn is_reference(&self, attribute_id: i32) -> bool {
        self.schema
            .attribute(attribute_id)
            .is_some_and(|a| a.data_type == AttributeDataType::Reference)
    }

    /// A stored reference row that names its object by id is that object, whatever its DN says: it is
    /// keyed by the id alone, as JIM matches references (`ReferenceValueId`). Only a row known by
    /// nothing but its DN is keyed by the DN. For a large attribute the claim loads the rows these
    /// keys can match (`super::sql`'s named probes; a DN only in its exact letter case), so the two
    /// must agree.
    fn row_keys(&self, r: &ValueRow) -> Vec<Key> {
        if self.is_reference(r.attribute_id) {
            match r.reference_value_id {
                Some(id) => vec![Key::RefId(id)],
                None => ref_keys(None, r.unresolved_reference_value.as_deref()),
            }
        } else {
            slot_key(&r.value).into_iter().collect()
        }
    }

    /// The attribute's set, built from the loaded values on first use.
    fn attr(&mut self, attribute_id: i32) -> &mut AttrSet {
        if !self.attrs.contains_key(&attribute_id) {
            let mut set = AttrSet::default();
            for &i in self
                .loaded
                .get(&attribute_id)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                for k in self.row_keys(&self.rows[i].data) {
                    set.index.entry(k).or_default().push(i);
                }
                set.rows.push(i);
                set.alive += 1;
            }
            self.attrs.insert(attribute_id, set);
        }
        self.attrs.entry(attribute_id).or_default()
    }

    /// An alive row of the attribute matching any of `keys`.
    fn find(&mut self, attribute_id: i32, keys: &[Key]) -> Option<usize> {
        self.attr(attribute_id);
        let set = &self.attrs[&attribute_id];
        keys.iter()
            .filter_map(|k| set.index.get(k))
            .flatten()
            .copied()
            .find(|&i| self.rows[i].alive)
    }

    fn insert(&mut self, row: ValueRow) {
        let keys = self.row_keys(&row);
        let i = self.rows.len();
        let attribute_id = row.attribute_id;
        self.rows.push(Row {
            existing: false,
            alive: true,
            modified: false,
            data: row,
        });
        let set = self.attr(attribute_id);
        for k in keys {
            set.index.entry(k).or_default().push(i);
        }
        set.rows.push(i);
        set.alive += 1;
    }

    fn kill(&mut self, i: usize) {
        if self.rows[i].alive {
            self.rows[i].alive = false;
            let attribute_id = self.rows[i].data.attribute_id;
            if let Some(set) = self.attrs.get_mut(&attribute_id) {
                set.alive -= 1;
            }
        }
    }

    fn remove_matching(&mut self, attribute_id: i32, keys: &[Key]) {
        self.attr(attribute_id);
        let hits: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.attrs[&attribute_id].index.get(k))
            .flatten()
            .copied()
            .collect();
        for i in hits {
            self.kill(i);
        }
    }

    fn remove_all(&mut self, attribute_id: i32) {
        let rows = self.attr(attribute_id).rows.clone();
        for i in rows {
            self.kill(i);
        }
        // Dead rows never come back; dropping them keeps repeated clears linear.
        let set = self.attr(attribute_id);
        set.rows.clear();
        set.index.clear();
    }

    /// A row to insert. Its id is time-ordered (UUID v7; JIM takes any client-made GUID, and makes
    /// v4 ones): a run's new rows then go to one region of the primary key's index rather than to
    /// random leaf pages, which after a checkpoint cost a full-page image each and, in an index
    /// larger than memory, a read (`docs/benchmark.md`, "Time-ordered ids").
    fn new_row(&self, attribute_id: i32) -> ValueRow {
        ValueRow {
            id: Uuid::now_v7(),
            is_new: true,
            attribute_id,
            value: ValueSlots::default(),
            reference_value_id: None,
            unresolved_reference_value: None,
        }
    }

    /// Applies one written change; returns false when it is skipped (unresolved, unsupported type, or no
    /// value where one is needed).
    fn apply_change(&mut self, change: &AttributeValueChange) -> bool {
        let Some(def) = self.schema.attribute(change.attribute_id) else {
            return false;
        };
        if matches!(
            def.data_type,
            AttributeDataType::Decimal | AttributeDataType::NotSet
        ) {
            return false;
        }
        let attribute_id = change.attribute_id;
        let mut row = self.new_row(attribute_id);
        let keys = if def.data_type == AttributeDataType::Reference {
            row.reference_value_id = change.resolved_reference_cso_id;
            row.unresolved_reference_value = change.value.string.clone().filter(|s| !s.is_empty());
            ref_keys(
                row.reference_value_id,
                row.unresolved_reference_value.as_deref(),
            )
        } else {
            row.value = change.value.clone();
            row.value.decimal = None;
            slot_key(&row.value).into_iter().collect()
        };
        match change.change_type {
            PendingExportAttributeChangeType::RemoveAll => self.remove_all(attribute_id),
            PendingExportAttributeChangeType::Update if keys.is_empty() => {
                self.remove_all(attribute_id)
            }
            _ if keys.is_empty() => return false,
            PendingExportAttributeChangeType::Add => {
                if self.find(attribute_id, &keys).is_none() {
                    self.insert(row);
                }
            }
            PendingExportAttributeChangeType::Remove => self.remove_matching(attribute_id, &keys),
            PendingExportAttributeChangeType::Update => {
                let single_equal =
                    self.attr(attribute_id).alive == 1 && self.find(attribute_id, &keys).is_some();
                if !single_equal {
                    self.remove_all(attribute_id);
                    self.insert(row);
                }
            }
        }
        true
    }

    /// Writes `value` as the attribute's single value: the first alive row is updated in place (unless it
    /// already holds it), or a row is inserted.
    fn set_single(&mut self, attribute_id: i32, value: ValueSlots) {
        self.attr(attribute_id);
        let set = &self.attrs[&attribute_id];
        let alive = set.rows.iter().copied().find(|&i| self.rows[i].alive);
        match alive {
            Some(i) => {
                let r = &mut self.rows[i];
                if r.data.value != value || r.data.reference_value_id.is_some() {
                    r.data.value = value;
                    r.data.reference_value_id = None;
                    r.data.unresolved_reference_value = None;
                    r.modified = true;
                }
            }
            None => {
                let mut row = self.new_row(attribute_id);
                row.value = value;
                self.insert(row);
            }
        }
    }

    fn into_delta(self) -> CsoDelta {
        let mut delta = CsoDelta::default();
        for r in self.rows {
            match (r.existing, r.alive) {
                (true, false) => delta.deletes.push(r.data.id),
                (true, true) if r.modified => delta.upserts.push(r.data),
                (false, true) => delta.upserts.push(r.data),
                _ => {}
            }
        }
        delta
    }
}

/// Anchors an export reported: the primary anchor (`ExternalId`) and the DN (`SecondaryExternalId`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Anchors<'a> {
    pub external_id: Option<&'a str>,
    pub secondary_external_id: Option<&'a str>,
}

/// Computes the CSO delta for one export: optimistic apply of `written` changes (when `optimistic`),
/// then the anchor write-back. The CSO is the one loaded at claim time.
pub(crate) fn cso_delta(
    cso: &ConnectedSystemObject,
    changes: &[AttributeValueChange],
    written: &[Uuid],
    optimistic: bool,
    anchors: Anchors<'_>,
    schema: &SystemSchema,
) -> (CsoDelta, ApplyCounts) {
    let mut ws = WorkingSet::new(cso, schema);
    let mut counts = ApplyCounts::default();
    if optimistic {
        let written: std::collections::HashSet<&Uuid> = written.iter().collect();
        for change in changes {
            if change.is_unresolved_reference() {
                counts.unresolved += 1;
                continue;
            }
            if written.contains(&change.id) && ws.apply_change(change) {
                counts.applied_changes += 1;
            }
        }
    }
    if let Some(anchor) = anchors.external_id.filter(|s| !s.is_empty())
        && cso.external_id_attribute_id > 0
    {
        let data_type = schema
            .attribute(cso.external_id_attribute_id)
            .map_or(AttributeDataType::Text, |a| a.data_type);
        let value = ValueSlots::from_anchor(data_type, anchor);
        if value.string.is_some()
            && data_type != AttributeDataType::Text
            && data_type != AttributeDataType::NotSet
        {
            tracing::error!(
                cso_id = %ws.cso_id,
                attribute_id = cso.external_id_attribute_id,
                %data_type,
                "anchor does not parse as its attribute's type; stored as text"
            );
        }
        ws.set_single(cso.external_id_attribute_id, value);
    }
    if let (Some(dn), Some(attr)) = (
        anchors.secondary_external_id.filter(|s| !s.is_empty()),
        cso.secondary_external_id_attribute_id,
    ) {
        ws.set_single(attr, ValueSlots::text(dn));
    }
    (ws.into_delta(), counts)
}

#[cfg(test)]
mod tests;
