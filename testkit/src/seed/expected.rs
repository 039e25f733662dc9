//! The directory state a correct export produces: DN → attribute → values, as strings.

use std::collections::{BTreeMap, BTreeSet};

/// Attribute name → values of one entry.
pub type Entry = BTreeMap<String, BTreeSet<String>>;

/// The expected content of the directory for the seeded objects: each entry's DN, and the values of
/// the attributes the seed stages (`member` and `manager` as DNs). Operational attributes, superior
/// object classes the server may add, and entries the seed does not stage (the OUs) are not included.
///
/// DNs and values are compared as the seed writes them; servers may normalise case or spacing, so a
/// comparison with a live directory should normalise both sides the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryState {
    /// Entries by DN.
    pub entries: BTreeMap<String, Entry>,
}

impl DirectoryState {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `dn`.
    pub fn entry(&self, dn: &str) -> Option<&Entry> {
        self.entries.get(dn)
    }

    /// The values of `attribute` at `dn` (empty when either is absent).
    pub fn values(&self, dn: &str, attribute: &str) -> BTreeSet<String> {
        self.entries
            .get(dn)
            .and_then(|e| e.get(attribute))
            .cloned()
            .unwrap_or_default()
    }

    /// Sets `attribute` of `dn` to exactly `values` (removing it when empty).
    pub(crate) fn replace(
        &mut self,
        dn: &str,
        attribute: &str,
        values: impl IntoIterator<Item = String>,
    ) {
        if let Some(entry) = self.entries.get_mut(dn) {
            let values: BTreeSet<String> = values.into_iter().collect();
            if values.is_empty() {
                entry.remove(attribute);
            } else {
                entry.insert(attribute.to_string(), values);
            }
        }
    }

    /// Adds one value.
    pub(crate) fn add(&mut self, dn: &str, attribute: &str, value: String) {
        if let Some(entry) = self.entries.get_mut(dn) {
            entry
                .entry(attribute.to_string())
                .or_default()
                .insert(value);
        }
    }

    /// Removes one value (and the attribute when it empties).
    pub(crate) fn remove(&mut self, dn: &str, attribute: &str, value: &str) {
        if let Some(entry) = self.entries.get_mut(dn)
            && let Some(values) = entry.get_mut(attribute)
        {
            values.remove(value);
            if values.is_empty() {
                entry.remove(attribute);
            }
        }
    }

    /// Moves the entry at `from` to `to` (a rename or move; other entries' references to `from` are
    /// left alone, as a directory without referential integrity leaves them).
    pub(crate) fn rename(&mut self, from: &str, to: &str) {
        if let Some(entry) = self.entries.remove(from) {
            self.entries.insert(to.to_string(), entry);
        }
    }
}
