//! The renames and moves of this run, and the references that name their objects. A member or
//! manager reference carries the DN its target had when the reference was resolved: in the reference
//! pass, when its page was claimed, which can be before a rename of the target in the plain pass has
//! gone through and had its new DN persisted. Written as it was resolved, the reference would name
//! the old DN: OpenLDAP without refint keeps a member that points at nothing, Active Directory refuses
//! it. So a write naming an object whose rename is in flight waits for that rename (the dependency
//! wait of [`super::dependencies`]), and once the rename is done, a reference that still carries the
//! old DN is rewritten to the new one, together with the resolution the store persists. JIM has no
//! such rule: it resolves from the old DN, which its database keeps until the confirming import.
//! A rename that failed leaves the object where it was: where links follow the object its waiters
//! go as resolved (the directory rewrites the old DN once the rename is made); where the directory
//! keeps stored DNs they are deferred until the rename has gone through, as for a Create that
//! failed; and a ModifyDN that never got an answer leaves nobody knowing, so its waiters are
//! deferred everywhere ([`super::admission::Admission::completed`]).
//!
//! Removals are the exception where the directory does not follow renames: OpenLDAP and 389 keep the
//! DN a member was added with, so a removal names that one: the DN the group's CSO row for the
//! member holds (written by the engine's optimistic apply or JIM's import), or for a rename of this
//! run its old DN, even when the resolution already read the new one. Active Directory and Samba
//! rewrite their linked values, so there a removal names the new DN like any other write.
//!
//! A rename this run does not make (waiting for its retry after a failure, in flight in another
//! engine, given up as `Failed`, or claimed in a later page) is no in-flight write to wait for. The
//! claim and the resolution read it beside the reference ([`crate::store::ClaimedExport::pending_renames`]):
//! where the directory keeps stored DNs, a reference Add or Update naming its object is deferred
//! until the rename has been made ([`super::admission::Admitted::AwaitsRename`]). Written now, the
//! old DN would outlive the rename and could later name an unrelated entry created there.
//!
//! A reference an earlier run resolved, to an object renamed since (its export failed or wrote in
//! part then, and waited), carries the DN of that time: the claim reads the object's DN now beside
//! it ([`crate::store::ClaimedExport::moved_targets`]) and the reference is rewritten the same way.
//!
//! A finished rename is remembered only as long as a page read before its new DN was persisted can
//! still arrive: each page says how many flushes had been committed before its reads
//! ([`crate::store::ClaimedPage::flushes_before`]), and each flush how many had been committed with it.
//! So the map holds the renames of the last few flushes, whatever the run's size. Pure bookkeeping,
//! no I/O.

use std::collections::HashMap;

use uuid::Uuid;

use crate::model::{AttributeValueChange, PendingExportAttributeChangeType};
use crate::plan::dn_key;
use crate::store::{ClaimedExport, ReferenceResolution};

/// The DN a CSO's own row holds for a member, by attribute and member CSO.
type StoredDns = HashMap<(i32, Uuid), String>;

/// One rename or move of this run.
#[derive(Debug)]
struct Rename {
    /// The export that renames the object.
    export: Uuid,
    /// The DN the object had when claimed, and its [`dn_key`].
    from: String,
    from_key: String,
    /// The DN the object has now, once the rename is done (`None` while it is in flight).
    to: Option<String>,
    /// The flush count with which the new DN was persisted (see the module doc).
    persisted: Option<u64>,
}

/// The renames and moves of this run, by CSO.
#[derive(Debug, Default)]
pub(crate) struct Renames {
    by_cso: HashMap<Uuid, Rename>,
    /// The directory rewrites stored references when their object is renamed (AD's linked values):
    /// removals then name the new DN too.
    links_follow: bool,
}

impl Renames {
    /// Renames for a directory that does (`links_follow`) or does not rewrite stored references to a
    /// renamed object.
    pub(crate) fn new(links_follow: bool) -> Self {
        Self {
            by_cso: HashMap::new(),
            links_follow,
        }
    }

    /// Records that `export` renames or moves `cso` away from the DN `from`.
    pub(crate) fn claimed(&mut self, export: Uuid, cso: Uuid, from: &str) {
        self.by_cso.insert(
            cso,
            Rename {
                export,
                from: from.to_string(),
                from_key: dn_key(from),
                to: None,
                persisted: None,
            },
        );
    }

    /// True when the directory rewrites stored references to a renamed object.
    pub(crate) fn links_follow(&self) -> bool {
        self.links_follow
    }

    /// The CSO that `export` renames, while this run tracks the rename.
    pub(crate) fn renamed_by(&self, export: &ClaimedExport) -> Option<Uuid> {
        let cso = export.export.connected_system_object_id?;
        self.by_cso
            .get(&cso)
            .is_some_and(|r| r.export == export.id())
            .then_some(cso)
    }

    /// The rename of `cso` is over: its object is at `to` now, or where it was (`None`: the rename
    /// did not go through, or its outcome is unknown to this run).
    pub(crate) fn completed(&mut self, cso: Uuid, to: Option<String>) {
        match to {
            Some(to)
                if dn_key(&to) != self.by_cso.get(&cso).map_or("", |r| r.from_key.as_str()) =>
            {
                if let Some(r) = self.by_cso.get_mut(&cso) {
                    r.to = Some(to);
                }
            }
            _ => {
                self.by_cso.remove(&cso);
            }
        }
    }

    /// The new DN of `cso` was persisted by the flush committed as number `flush`.
    pub(crate) fn persisted(&mut self, cso: Uuid, flush: u64) {
        if let Some(r) = self.by_cso.get_mut(&cso)
            && r.to.is_some()
        {
            r.persisted = Some(flush);
        }
    }

    /// Forgets the renames whose new DN was persisted before a page's reads began (after `flushes`
    /// flushes): that page, and every later one, read the new DN already.
    pub(crate) fn forget_persisted(&mut self, flushes: u64) {
        self.by_cso
            .retain(|_, r| r.persisted.is_none_or(|p| p > flushes));
    }

    /// Rewrites the references of a freshly claimed export: first those a rename before this run
    /// left behind ([`Renames::follow_earlier`]), then those of this run's renames
    /// ([`Renames::retarget`]), reading the CSO's member rows once for both. Returns how many were
    /// rewritten.
    pub(crate) fn on_admit(&self, claimed: &mut ClaimedExport) -> usize {
        let stored = self.stored_member_dns(claimed);
        self.follow_earlier(claimed, &stored) + self.retarget_with(claimed, &stored)
    }

    /// Rewrites the references of `claimed` that name a renamed object by its old DN to its new DN,
    /// and records each rewrite as a resolution so the change row holds the DN that was sent. Returns
    /// how many were rewritten.
    pub(crate) fn retarget(&self, claimed: &mut ClaimedExport) -> usize {
        if self.by_cso.is_empty() {
            return 0;
        }
        let stored = self.stored_member_dns(claimed);
        self.retarget_with(claimed, &stored)
    }

    /// [`Renames::retarget`], given the CSO's stored member DNs ([`Renames::stored_member_dns`]).
    fn retarget_with(&self, claimed: &mut ClaimedExport, stored: &StoredDns) -> usize {
        if self.by_cso.is_empty() {
            return 0;
        }
        self.rewrite(claimed, |change, cso, value| {
            let Some(Rename {
                from,
                from_key,
                to: Some(to),
                ..
            }) = self.by_cso.get(&cso)
            else {
                return None;
            };
            if self.keeps_old_dn(change) {
                // The group holds the DN the member had when it was added, before this run's
                // rename: a removal names that one, however the resolution read it (the group's own
                // row for the member, when there is one, said so already: `follow_earlier`).
                (!stored.contains_key(&(change.attribute_id, cso)) && dn_key(value) == dn_key(to))
                    .then(|| from.clone())
            } else {
                (dn_key(value) == *from_key).then(|| to.clone())
            }
        })
    }

    /// Rewrites the references of `claimed` whose object was renamed or moved before this run:
    ///
    /// - a write that an earlier run resolved (and that waited since, after a failure or a partial
    ///   write) names the DN the claim read for its object now ([`ClaimedExport::moved_targets`]);
    ///   JIM sends the DN it stored;
    /// - a removal, where the directory keeps the DN a member was added with, names the DN the CSO's
    ///   own row for that member holds (the DN written or imported last, which is what the group
    ///   holds), rather than the member's DN now: otherwise a member renamed in an earlier run would
    ///   never leave the group.
    ///
    /// `stored` is the CSO's stored member DNs ([`Renames::stored_member_dns`]). Returns how many
    /// were rewritten.
    fn follow_earlier(&self, claimed: &mut ClaimedExport, stored: &StoredDns) -> usize {
        let moved: HashMap<Uuid, String> = claimed
            .moved_targets
            .iter()
            .map(|m| (m.change_id, m.dn.clone()))
            .collect();
        if moved.is_empty() && stored.is_empty() {
            return 0;
        }
        self.rewrite(claimed, |change, cso, value| {
            let now = if self.keeps_old_dn(change) {
                stored.get(&(change.attribute_id, cso))
            } else {
                moved.get(&change.id)
            };
            now.filter(|dn| dn_key(value) != dn_key(dn)).cloned()
        })
    }

    /// The DN the CSO's rows hold for each member that `claimed` removes where the directory keeps
    /// stored DNs, by attribute and member CSO (the rows the claim loaded or looked up for those
    /// changes). Empty when there is no such removal.
    fn stored_member_dns(&self, claimed: &ClaimedExport) -> StoredDns {
        let removed: std::collections::HashSet<(i32, Uuid)> = claimed
            .export
            .writable_changes()
            .filter(|c| self.keeps_old_dn(c))
            .filter_map(|c| Some((c.attribute_id, c.resolved_reference_cso_id?)))
            .collect();
        if removed.is_empty() {
            return HashMap::new();
        }
        claimed
            .cso
            .iter()
            .flat_map(|cso| &cso.values)
            .filter_map(|v| {
                let key = (v.attribute_id, v.reference_value_id?);
                let dn = v.unresolved_reference_value.as_ref()?;
                removed.contains(&key).then(|| (key, dn.clone()))
            })
            .collect()
    }

    /// True for a removal on a directory that does not follow renames: the value to remove is the
    /// DN stored when the member was added, not the object's DN now.
    fn keeps_old_dn(&self, change: &AttributeValueChange) -> bool {
        change.change_type == PendingExportAttributeChangeType::Remove && !self.links_follow
    }

    /// Rewrites each writable reference change's value to what `new_value` says for it (given the
    /// change, its CSO and its value), recording the rewrite as a resolution so the change row
    /// holds the DN that was sent.
    fn rewrite(
        &self,
        claimed: &mut ClaimedExport,
        new_value: impl Fn(&AttributeValueChange, Uuid, &str) -> Option<String>,
    ) -> usize {
        let mut rewritten = 0;
        let ClaimedExport {
            export,
            resolutions,
            ..
        } = claimed;
        for change in export
            .attribute_changes
            .iter_mut()
            .filter(|c| c.is_writable_now())
        {
            let Some(cso) = change.resolved_reference_cso_id else {
                continue;
            };
            let Some(to) = change
                .value
                .string
                .as_deref()
                .and_then(|value| new_value(change, cso, value))
            else {
                continue;
            };
            match resolutions.iter_mut().find(|r| r.change_id == change.id) {
                Some(r) => r.value.clone_from(&to),
                None => resolutions.push(ReferenceResolution {
                    change_id: change.id,
                    value: to.clone(),
                    cso_id: cso,
                }),
            }
            change.value.string = Some(to);
            rewritten += 1;
        }
        rewritten
    }

    /// True while the run tracks no rename.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_cso.is_empty()
    }

    /// Renames tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_cso.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PendingExportChangeType;
    use crate::store::MovedTarget;

    const OLD: &str = "uid=a,ou=People,dc=example,dc=org";
    const NEW: &str = "uid=b,ou=People,dc=example,dc=org";

    /// A group Update with one resolved reference change of `change_type` to `cso` holding `dn`.
    fn naming(cso: Uuid, dn: &str, change_type: PendingExportAttributeChangeType) -> ClaimedExport {
        let mut e = ClaimedExport::for_test(PendingExportChangeType::Update);
        let mut change = AttributeValueChange::for_test(e.export.id, 1, change_type);
        change.value.string = Some(dn.to_string());
        change.resolved_reference_cso_id = Some(cso);
        e.export.attribute_changes.push(change);
        e
    }

    fn value(e: &ClaimedExport) -> &str {
        e.export.attribute_changes[0]
            .value
            .string
            .as_deref()
            .unwrap()
    }

    #[test]
    fn a_reference_to_the_old_dn_names_the_new_one_once_the_rename_is_done() {
        let (cso, export) = (Uuid::new_v4(), Uuid::new_v4());
        let mut renames = Renames::new(false);
        renames.claimed(export, cso, OLD);
        let mut e = naming(cso, OLD, PendingExportAttributeChangeType::Add);
        assert_eq!(
            renames.retarget(&mut e),
            0,
            "not while the rename is in flight"
        );
        renames.completed(cso, Some(NEW.into()));
        assert_eq!(renames.retarget(&mut e), 1);
        assert_eq!(value(&e), NEW);
        assert_eq!(e.resolutions.len(), 1, "the rewrite is persisted");
        assert_eq!(e.resolutions[0].value, NEW);
        assert_eq!(e.resolutions[0].cso_id, cso);
        // A DN spelled differently but equal is the old DN too; the new DN is left alone.
        let mut upper = naming(
            cso,
            &OLD.to_uppercase(),
            PendingExportAttributeChangeType::Add,
        );
        assert_eq!(renames.retarget(&mut upper), 1);
        let mut current = naming(cso, NEW, PendingExportAttributeChangeType::Add);
        assert_eq!(renames.retarget(&mut current), 0);
        assert!(current.resolutions.is_empty());
    }

    #[test]
    fn a_resolution_of_the_run_is_rewritten_in_place() {
        let (cso, export) = (Uuid::new_v4(), Uuid::new_v4());
        let mut renames = Renames::new(false);
        renames.claimed(export, cso, OLD);
        renames.completed(cso, Some(NEW.into()));
        let mut e = naming(cso, OLD, PendingExportAttributeChangeType::Update);
        let change_id = e.export.attribute_changes[0].id;
        e.resolutions.push(ReferenceResolution {
            change_id,
            value: OLD.into(),
            cso_id: cso,
        });
        assert_eq!(renames.retarget(&mut e), 1);
        assert_eq!(e.resolutions.len(), 1);
        assert_eq!(e.resolutions[0].value, NEW);
    }

    #[test]
    fn removals_follow_the_rename_only_where_the_directory_rewrites_links() {
        let (cso, export) = (Uuid::new_v4(), Uuid::new_v4());
        // Whichever DN the resolution read (before or after the new DN was persisted), a removal
        // names the DN the group holds: the old one where links stay, the new one where they follow.
        for resolved in [OLD, NEW] {
            for (links_follow, expected) in [(false, OLD), (true, NEW)] {
                let mut renames = Renames::new(links_follow);
                renames.claimed(export, cso, OLD);
                renames.completed(cso, Some(NEW.into()));
                let mut e = naming(cso, resolved, PendingExportAttributeChangeType::Remove);
                renames.retarget(&mut e);
                assert_eq!(
                    value(&e),
                    expected,
                    "resolved to {resolved}, links_follow = {links_follow}"
                );
            }
        }
    }

    #[test]
    fn a_reference_resolved_before_a_later_rename_names_the_dn_the_claim_read() {
        let cso = Uuid::new_v4();
        // A removal is left as stored where links stay: the group holds the DN of the time it was added.
        for (change_type, links_follow, expected) in [
            (PendingExportAttributeChangeType::Add, false, NEW),
            (PendingExportAttributeChangeType::Remove, false, OLD),
            (PendingExportAttributeChangeType::Remove, true, NEW),
        ] {
            let renames = Renames::new(links_follow);
            let mut e = naming(cso, OLD, change_type);
            let change_id = e.export.attribute_changes[0].id;
            e.moved_targets.push(MovedTarget {
                change_id,
                dn: NEW.into(),
            });
            let n = renames.on_admit(&mut e);
            assert_eq!(
                value(&e),
                expected,
                "{change_type:?}, links_follow = {links_follow}"
            );
            assert_eq!(n, usize::from(expected == NEW));
            assert_eq!(e.resolutions.len(), n, "a rewrite is persisted");
        }
        // The same DN spelled otherwise is not a move.
        let renames = Renames::new(false);
        let mut e = naming(cso, OLD, PendingExportAttributeChangeType::Add);
        let change_id = e.export.attribute_changes[0].id;
        e.moved_targets.push(MovedTarget {
            change_id,
            dn: OLD.to_uppercase(),
        });
        assert_eq!(renames.on_admit(&mut e), 0);
        assert_eq!(value(&e), OLD);
    }

    #[test]
    fn a_removal_names_the_dn_the_group_holds_where_links_stay() {
        use crate::model::{
            ConnectedSystemObject, ConnectedSystemObjectJoinType, ConnectedSystemObjectStatus,
            CsoAttributeValue,
        };
        let member = Uuid::new_v4();
        for (links_follow, expected) in [(false, OLD), (true, NEW)] {
            let renames = Renames::new(links_follow);
            // Resolved from the member's DN now; the group's own row holds the DN it was added with.
            let mut e = naming(member, NEW, PendingExportAttributeChangeType::Remove);
            e.cso = Some(ConnectedSystemObject {
                id: Uuid::new_v4(),
                connected_system_id: 1,
                type_id: 1,
                external_id_attribute_id: 2,
                secondary_external_id_attribute_id: Some(3),
                status: ConnectedSystemObjectStatus::Normal,
                metaverse_object_id: None,
                join_type: ConnectedSystemObjectJoinType::Provisioned,
                values: vec![CsoAttributeValue {
                    id: Uuid::new_v4(),
                    attribute_id: 1,
                    value: Default::default(),
                    reference_value_id: Some(member),
                    unresolved_reference_value: Some(OLD.into()),
                }],
            });
            renames.on_admit(&mut e);
            assert_eq!(value(&e), expected, "links_follow = {links_follow}");
        }
    }

    #[test]
    fn a_rename_that_did_not_go_through_is_forgotten() {
        let (cso, export) = (Uuid::new_v4(), Uuid::new_v4());
        let mut renames = Renames::new(false);
        renames.claimed(export, cso, OLD);
        renames.completed(cso, None);
        assert_eq!(renames.len(), 0);
        // Nor does a "new" DN equal to the old one count as a rename.
        renames.claimed(export, cso, OLD);
        renames.completed(cso, Some(OLD.to_uppercase()));
        assert_eq!(renames.len(), 0);
    }

    #[test]
    fn a_rename_is_kept_until_a_page_read_after_its_persist() {
        let (cso, export) = (Uuid::new_v4(), Uuid::new_v4());
        let mut renames = Renames::new(false);
        renames.claimed(export, cso, OLD);
        renames.forget_persisted(10);
        assert_eq!(renames.len(), 1, "in flight");
        renames.completed(cso, Some(NEW.into()));
        renames.forget_persisted(10);
        assert_eq!(renames.len(), 1, "done, not persisted");
        renames.persisted(cso, 12);
        renames.forget_persisted(11);
        assert_eq!(
            renames.len(),
            1,
            "a page read before the 12th flush may carry the old DN"
        );
        renames.forget_persisted(12);
        assert_eq!(renames.len(), 0);
    }

    #[test]
    fn only_the_renaming_export_is_the_rename() {
        let mut renaming = ClaimedExport::for_test(PendingExportChangeType::Update);
        let cso = renaming.export.connected_system_object_id.unwrap();
        let mut renames = Renames::new(false);
        renames.claimed(renaming.id(), cso, OLD);
        assert_eq!(renames.renamed_by(&renaming), Some(cso));
        renaming.export.id = Uuid::new_v4();
        assert_eq!(renames.renamed_by(&renaming), None);
    }
}
