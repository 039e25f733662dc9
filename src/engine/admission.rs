//! Admission and the held exports: every claimed export the run has not yet given an outcome, and
//! whether each may go to the directory now, must wait for a Create or rename of this run (the
//! dependency wait, [`super::dependencies`]; a reference to a renamed object is rewritten to its new
//! DN, [`super::renames`]), or is deferred. The held map is what bounds the run's memory between claim
//! and outcome: the coordinator claims another page only while [`Admission::has_room`]. Pure
//! bookkeeping; planning, the directory and the queue stay with the coordinator.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::dependencies::{Dependencies, Readiness};
use super::renames::Renames;
use crate::directory::OUTCOME_UNKNOWN_NOTE;
use crate::model::{PendingExportAttributeChangeType, PendingExportChangeType};
use crate::store::outcome::{Disposition, ExportOutcome};
use crate::store::{ClaimedExport, PendingRename, PersistReport};

/// What admission decided for a freshly claimed export.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Held and free to go: plan it now.
    Ready(Uuid),
    /// Held until the Creates and renames of the objects it names complete.
    Waiting,
    /// Not held: nothing can be written now (every writable change is missing and some reference is
    /// unresolved, JIM's "deferred whole"), or an object it names failed to be created (or, where
    /// stored DNs stay, renamed) in this run.
    Deferred(Box<ClaimedExport>),
    /// Not held, deferred: where stored DNs stay, it adds or sets a reference to an object that JIM
    /// has staged a rename for which this run does not make (waiting for a retry, in flight in
    /// another run, given up): written now, the reference would go on naming the old DN after the
    /// rename.
    AwaitsRename(Box<ClaimedExport>, PendingRename),
}

/// What the completion of a Create or rename released.
#[derive(Debug, Default)]
pub(crate) struct Released {
    /// Exports (still held) whose every dependency exists now: plan them.
    pub ready: Vec<Uuid>,
    /// Exports no longer held because an object they name was not created (or not renamed where
    /// stored DNs stay, or nobody knows where it is): defer them.
    pub deferred: Vec<ClaimedExport>,
}

/// The held exports and their dependencies.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Most exports held between claim and outcome (ready, waiting, or in the directory).
    max_held: usize,
    /// Claimed exports not yet given an outcome, by id.
    held: HashMap<Uuid, ClaimedExport>,
    deps: Dependencies,
    renames: Renames,
    /// Exports no longer held that go back to the queue unsent (see [`Admission::take_released`]).
    released: Vec<Uuid>,
}

impl Admission {
    /// Admission holding at most about `max_held` exports, for a directory that does
    /// (`links_follow`, AD's linked values) or does not rewrite stored references to a renamed object.
    pub(crate) fn new(max_held: usize, links_follow: bool) -> Self {
        Self {
            max_held,
            held: HashMap::new(),
            deps: Dependencies::default(),
            renames: Renames::new(links_follow),
            released: Vec::new(),
        }
    }

    /// True when another page of `page_size` exports fits.
    pub(crate) fn has_room(&self, page_size: usize) -> bool {
        self.held.len() + page_size <= self.max_held
    }

    /// Exports held.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// True when nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Exports waiting for a Create or rename.
    pub(crate) fn waiting_count(&self) -> usize {
        self.deps.waiting_count()
    }

    /// A held export.
    pub(crate) fn get(&self, id: &Uuid) -> Option<&ClaimedExport> {
        self.held.get(id)
    }

    /// Stops holding an export (it has a result, or goes back to the queue).
    pub(crate) fn take(&mut self, id: &Uuid) -> Option<ClaimedExport> {
        self.held.remove(id)
    }

    /// Registers every Create of a page before any of its exports is admitted, so an export naming an
    /// object created later in the same page still waits for it.
    pub(crate) fn register_creates(&mut self, exports: &[ClaimedExport]) {
        for e in exports {
            if let Some(cso) = created_cso(e) {
                self.deps.write_claimed(cso);
            }
        }
    }

    /// Registers that `claimed` renames or moves its object away from the DN `from`, before any export
    /// of its page is admitted: writes naming the object wait for the rename, then name its new DN.
    pub(crate) fn register_rename(&mut self, claimed: &ClaimedExport, from: &str) {
        if let Some(cso) = claimed.export.connected_system_object_id {
            self.renames.claimed(claimed.id(), cso, from);
            self.deps.write_claimed(cso);
        }
    }

    /// A page whose reads began after `flushes` flushes were committed arrived: renames persisted by
    /// then need not be remembered (see [`super::renames`]).
    pub(crate) fn page_read_after(&mut self, flushes: u64) {
        self.renames.forget_persisted(flushes);
    }

    /// A flush of `outcomes` was persisted: notes which renames' new DNs it wrote (see
    /// [`super::renames`]). Nothing to do while the run tracks no rename.
    pub(crate) fn flushed(&mut self, outcomes: &[ExportOutcome], report: &PersistReport) {
        if report.flush == 0 || self.renames.is_empty() {
            return;
        }
        let written: HashSet<Uuid> = report.persisted.iter().map(|p| p.id).collect();
        for outcome in outcomes
            .iter()
            .filter(|o| written.contains(&o.pending_export_id()))
        {
            if let Some(cso) = self.renames.renamed_by(&outcome.export) {
                self.renames.persisted(cso, report.flush);
            }
        }
    }

    /// The object `claimed` creates or renames in this run, if it does.
    pub(crate) fn own_write(&self, claimed: &ClaimedExport) -> Option<Uuid> {
        created_cso(claimed).or_else(|| self.renames.renamed_by(claimed))
    }

    /// Decides for a freshly claimed export whose row the run still holds.
    pub(crate) fn admit(&mut self, mut claimed: ClaimedExport) -> Admitted {
        self.renames.on_admit(&mut claimed);
        let export = &claimed.export;
        if export.writable_changes().next().is_none() && export.has_unresolved_changes() {
            return Admitted::Deferred(Box::new(claimed));
        }
        if let Some(rename) = self.renamed_elsewhere(&claimed) {
            return Admitted::AwaitsRename(Box::new(claimed), rename);
        }
        let export = &claimed.export;
        let named: HashSet<Uuid> = export
            .writable_changes()
            .filter_map(|c| c.resolved_reference_cso_id)
            .filter(|cso| Some(*cso) != export.connected_system_object_id)
            .collect();
        let own = self.own_write(&claimed);
        let id = claimed.id();
        match self.deps.readiness_for(named, own) {
            Readiness::Ready => {
                self.held.insert(id, claimed);
                Admitted::Ready(id)
            }
            Readiness::Wait(on) => {
                self.deps.wait(id, own, on);
                self.held.insert(id, claimed);
                Admitted::Waiting
            }
            Readiness::DependencyFailed => Admitted::Deferred(Box::new(claimed)),
        }
    }

    /// Where the directory keeps stored DNs: the first rename outside this run (see
    /// [`ClaimedExport::pending_renames`], kept to those the plan makes) of an object that `claimed`
    /// adds or sets a reference to. A rename this run claimed is the dependency wait's
    /// ([`Dependencies`]); a removal names the DN the directory holds, which the rename does not
    /// change, so it goes; and so does the reference of an export that renames its own object to
    /// an object whose renaming export names that object back.
    fn renamed_elsewhere(&self, claimed: &ClaimedExport) -> Option<PendingRename> {
        if self.renames.links_follow() || claimed.pending_renames.is_empty() {
            return None;
        }
        let export = &claimed.export;
        let renames_itself = self.renames.renamed_by(claimed).is_some();
        claimed
            .pending_renames
            .iter()
            .filter(|r| Some(r.cso_id) != export.connected_system_object_id)
            .filter(|r| !self.deps.tracks(r.cso_id))
            // Two exports that rename their objects and name each other would each be deferred for
            // the other on every run: sent at once instead, as a cycle within the run is.
            .filter(|r| !(renames_itself && r.names_back(claimed)))
            .find(|r| {
                export.writable_changes().any(|c| {
                    c.resolved_reference_cso_id == Some(r.cso_id)
                        && c.change_type != PendingExportAttributeChangeType::Remove
                })
            })
            .cloned()
    }

    /// An export got its outcome: when it is a Create or rename of this run, the exports waiting for
    /// its object are released (and those naming a renamed object name its new DN).
    pub(crate) fn completed(&mut self, outcome: &ExportOutcome) -> Released {
        if let Some(cso) = created_cso(&outcome.export) {
            let exists = match &outcome.result {
                Disposition::Succeeded(_) => true,
                Disposition::Failed(f) => f.progress.object_exists,
                Disposition::Deferred => false,
            };
            return self.write_completed(cso, exists);
        }
        let Some(cso) = self.renames.renamed_by(&outcome.export) else {
            return Released::default();
        };
        // Where the object is now: the new DN once the ModifyDN went through, even if a later
        // operation of the export failed; then its waiters go, naming that DN. A rename that did
        // not go through leaves the object where it was: where links follow the object (AD) its
        // waiters go, naming the old DN, which the directory rewrites once the rename is made;
        // where the directory keeps stored DNs, a write naming the old DN would keep naming it
        // after the rename, so the waiters are deferred, as for a Create that failed, and go once
        // the rename has. And where the ModifyDN's answer never came, nobody knows where the
        // object is: deferred too, to be resolved again after the next attempt has read it.
        let links_follow = self.renames.links_follow();
        let (to, release) = match &outcome.result {
            Disposition::Succeeded(s) => (s.secondary_external_id.clone(), true),
            Disposition::Failed(f) => match &f.progress.secondary_external_id {
                Some(dn) => (Some(dn.clone()), true),
                None => (
                    None,
                    links_follow && !f.message.contains(OUTCOME_UNKNOWN_NOTE),
                ),
            },
            Disposition::Deferred => (None, links_follow),
        };
        self.renames.completed(cso, to);
        self.write_completed(cso, release)
    }

    /// The Create or rename of `cso` got its outcome: `exists` says whether its waiters may go now
    /// (the object exists, and is where they will name it; see [`Admission::completed`]).
    fn write_completed(&mut self, cso: Uuid, exists: bool) -> Released {
        let released = self.deps.write_completed(cso, exists);
        let mut ready = Vec::with_capacity(released.ready.len());
        for id in released.ready {
            if let Some(held) = self.held.get_mut(&id) {
                self.renames.retarget(held);
                ready.push(id);
            }
        }
        Released {
            ready,
            deferred: released
                .failed
                .into_iter()
                .filter_map(|id| self.held.remove(&id))
                .collect(),
        }
    }

    /// An export that will have no outcome in this run (its row was fenced off): when it creates or
    /// renames an object, the exports waiting for that object stop being held and go back to the
    /// queue unsent, to be tried again once it exists where they name it; a Create or rename among
    /// them releases its own waiters the same way, down the chain.
    pub(crate) fn abandon(&mut self, claimed: &ClaimedExport) {
        let mut writes = Vec::from_iter(self.abandoned_write(claimed));
        while let Some(cso) = writes.pop() {
            let released = self.deps.write_completed(cso, false);
            for id in released.ready.into_iter().chain(released.failed) {
                if let Some(waiter) = self.held.remove(&id) {
                    writes.extend(self.abandoned_write(&waiter));
                    self.released.push(id);
                }
            }
        }
    }

    /// The object `claimed` would have created or renamed; a rename is forgotten (where the object
    /// ends up is not this run's to know).
    fn abandoned_write(&mut self, claimed: &ClaimedExport) -> Option<Uuid> {
        let own = self.own_write(claimed);
        if let Some(cso) = self.renames.renamed_by(claimed) {
            self.renames.completed(cso, None);
        }
        own
    }

    /// The exports [`Admission::abandon`] let go since the last call, to return to the queue.
    pub(crate) fn take_released(&mut self) -> Vec<Uuid> {
        std::mem::take(&mut self.released)
    }

    /// Stops holding every export that waits for a Create and returns their ids (the run is stopping:
    /// they go back to the queue as they were).
    pub(crate) fn drain_waiting(&mut self) -> Vec<Uuid> {
        let ids = self.deps.drain_waiting();
        for id in &ids {
            self.held.remove(id);
        }
        ids
    }
}

/// The CSO a claimed Create creates.
pub(crate) fn created_cso(claimed: &ClaimedExport) -> Option<Uuid> {
    let export = &claimed.export;
    (export.change_type == PendingExportChangeType::Create)
        .then_some(export.connected_system_object_id)
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttributeValueChange, PendingExportAttributeChangeType};

    fn export(change_type: PendingExportChangeType) -> ClaimedExport {
        ClaimedExport::for_test(change_type)
    }

    fn change(e: &mut ClaimedExport, resolved: Option<Uuid>, unresolved: Option<&str>) {
        e.export.attribute_changes.push(AttributeValueChange {
            unresolved_reference_value: unresolved.map(str::to_string),
            resolved_reference_cso_id: resolved,
            ..AttributeValueChange::for_test(e.export.id, 1, PendingExportAttributeChangeType::Add)
        });
    }

    /// An Update naming the object `cso` (a resolved reference to it).
    fn naming(cso: Uuid) -> ClaimedExport {
        let mut e = export(PendingExportChangeType::Update);
        change(&mut e, Some(cso), None);
        e
    }

    fn cso_of(e: &ClaimedExport) -> Uuid {
        e.export.connected_system_object_id.unwrap_or_default()
    }

    #[test]
    fn an_export_with_only_unresolved_references_is_deferred_whole() {
        let mut admission = Admission::new(10, false);
        let mut e = export(PendingExportChangeType::Update);
        change(&mut e, None, Some("mvo"));
        assert!(matches!(admission.admit(e), Admitted::Deferred(_)));
        assert!(admission.is_empty());
    }

    #[test]
    fn an_export_naming_nothing_in_flight_is_ready_and_held() {
        let mut admission = Admission::new(10, false);
        let e = naming(Uuid::new_v4());
        let id = e.id();
        assert!(matches!(admission.admit(e), Admitted::Ready(r) if r == id));
        assert!(admission.get(&id).is_some());
        assert_eq!(admission.len(), 1);
    }

    #[test]
    fn an_export_naming_a_create_of_the_page_waits_and_goes_when_it_succeeds() {
        let mut admission = Admission::new(10, false);
        let create = export(PendingExportChangeType::Create);
        let member = naming(cso_of(&create));
        let member_id = member.id();
        // The member comes first in the page; the Create registered up front still holds it back.
        admission.register_creates(&[member.clone(), create.clone()]);
        assert!(matches!(admission.admit(member), Admitted::Waiting));
        assert!(matches!(
            admission.admit(create.clone()),
            Admitted::Ready(_)
        ));
        assert_eq!(admission.waiting_count(), 1);
        admission.take(&create.id());
        let released = admission.write_completed(cso_of(&create), true);
        assert_eq!(released.ready, vec![member_id]);
        assert!(released.deferred.is_empty());
        assert!(admission.get(&member_id).is_some());
    }

    #[test]
    fn waiters_of_a_failed_create_are_deferred_and_no_longer_held() {
        let mut admission = Admission::new(10, false);
        let create = export(PendingExportChangeType::Create);
        let member = naming(cso_of(&create));
        let member_id = member.id();
        admission.register_creates(std::slice::from_ref(&create));
        assert!(matches!(admission.admit(member), Admitted::Waiting));
        let released = admission.write_completed(cso_of(&create), false);
        assert!(released.ready.is_empty());
        assert_eq!(
            released.deferred.iter().map(|e| e.id()).collect::<Vec<_>>(),
            vec![member_id]
        );
        assert!(admission.get(&member_id).is_none());
        // Later exports naming it are deferred at once.
        assert!(matches!(
            admission.admit(naming(cso_of(&create))),
            Admitted::Deferred(_)
        ));
    }

    #[test]
    fn an_abandoned_create_returns_its_waiters_down_the_chain() {
        let mut admission = Admission::new(10, false);
        let group = export(PendingExportChangeType::Create);
        // A Create that names the group (say, a user whose manager it is) and a member of that user.
        let mut user = export(PendingExportChangeType::Create);
        change(&mut user, Some(cso_of(&group)), None);
        let member = naming(cso_of(&user));
        let (user_id, member_id) = (user.id(), member.id());
        admission.register_creates(&[group.clone(), user.clone()]);
        assert!(matches!(admission.admit(user), Admitted::Waiting));
        assert!(matches!(admission.admit(member), Admitted::Waiting));
        admission.abandon(&group);
        let mut released = admission.take_released();
        released.sort();
        let mut expected = vec![user_id, member_id];
        expected.sort();
        assert_eq!(released, expected);
        assert!(admission.is_empty());
        assert!(admission.take_released().is_empty());
    }

    #[test]
    fn an_export_naming_a_renamed_object_waits_and_then_names_its_new_dn() {
        const OLD: &str = "uid=a,ou=People,dc=example,dc=org";
        const NEW: &str = "uid=b,ou=People,dc=example,dc=org";
        let mut admission = Admission::new(10, false);
        let rename = export(PendingExportChangeType::Update);
        let cso = cso_of(&rename);
        let mut member = naming(cso);
        member.export.attribute_changes[0].value.string = Some(OLD.into());
        let member_id = member.id();
        admission.register_rename(&rename, OLD);
        assert_eq!(admission.own_write(&rename), Some(cso));
        assert!(matches!(
            admission.admit(rename.clone()),
            Admitted::Ready(_)
        ));
        assert!(matches!(admission.admit(member), Admitted::Waiting));
        let renamed = admission.take(&rename.id()).unwrap();
        let outcome = ExportOutcome::created(renamed, None, Some(NEW.into()));
        let released = admission.completed(&outcome);
        assert_eq!(released.ready, vec![member_id]);
        let held = admission.get(&member_id).unwrap();
        assert_eq!(
            held.export.attribute_changes[0].value.string.as_deref(),
            Some(NEW)
        );
        // A later page read before the rename was persisted names the new DN at once.
        let mut late = naming(cso);
        late.export.attribute_changes[0].value.string = Some(OLD.into());
        let late_id = late.id();
        assert!(matches!(admission.admit(late), Admitted::Ready(_)));
        assert_eq!(
            admission.get(&late_id).unwrap().export.attribute_changes[0]
                .value
                .string
                .as_deref(),
            Some(NEW)
        );
    }

    #[test]
    fn a_failed_rename_releases_its_waiters_where_links_follow_and_defers_them_elsewhere() {
        const OLD: &str = "uid=a,ou=People,dc=example,dc=org";
        for links_follow in [true, false] {
            let mut admission = Admission::new(10, links_follow);
            let rename = export(PendingExportChangeType::Update);
            let mut member = naming(cso_of(&rename));
            member.export.attribute_changes[0].value.string = Some(OLD.into());
            let member_id = member.id();
            admission.register_rename(&rename, OLD);
            assert!(matches!(admission.admit(member), Admitted::Waiting));
            let outcome = ExportOutcome::failed(
                rename,
                "refused",
                crate::model::ConnectedSystemExportErrorType::General,
            );
            let released = admission.completed(&outcome);
            if links_follow {
                assert_eq!(
                    released.ready,
                    vec![member_id],
                    "the object is where it was"
                );
                assert!(released.deferred.is_empty());
                assert_eq!(
                    admission.get(&member_id).unwrap().export.attribute_changes[0]
                        .value
                        .string
                        .as_deref(),
                    Some(OLD)
                );
            } else {
                assert!(released.ready.is_empty());
                assert_eq!(
                    released.deferred.iter().map(|e| e.id()).collect::<Vec<_>>(),
                    vec![member_id],
                    "a stored old DN would outlive the rename"
                );
            }
        }
    }

    #[test]
    fn waiters_of_a_rename_whose_outcome_is_unknown_are_deferred() {
        const OLD: &str = "uid=a,ou=People,dc=example,dc=org";
        let mut admission = Admission::new(10, false);
        let rename = export(PendingExportChangeType::Update);
        let member = naming(cso_of(&rename));
        let member_id = member.id();
        admission.register_rename(&rename, OLD);
        assert!(matches!(admission.admit(member), Admitted::Waiting));
        let outcome = ExportOutcome::failed(
            rename.clone(),
            format!("timed out (gave up after 3 attempts) {OUTCOME_UNKNOWN_NOTE}"),
            crate::model::ConnectedSystemExportErrorType::General,
        );
        let released = admission.completed(&outcome);
        assert!(released.ready.is_empty());
        assert_eq!(
            released.deferred.iter().map(|e| e.id()).collect::<Vec<_>>(),
            vec![member_id]
        );
        assert!(matches!(
            admission.admit(naming(cso_of(&rename))),
            Admitted::Deferred(_)
        ));
    }

    /// `e` names `cso` by a change of `change_type`, whose rename another run is to make.
    fn naming_a_renamed(cso: Uuid, change_type: PendingExportAttributeChangeType) -> ClaimedExport {
        let mut e = naming(cso);
        e.export.attribute_changes[0].change_type = change_type;
        e.pending_renames.push(PendingRename {
            cso_id: cso,
            export_id: Uuid::new_v4(),
            attribute_id: 2,
            from: "uid=a,ou=People,dc=example,dc=org".into(),
            to: "uid=b,ou=People,dc=example,dc=org".into(),
            names: Vec::new(),
        });
        e
    }

    #[test]
    fn a_reference_to_an_object_another_run_renames_waits_where_stored_dns_stay() {
        let cso = Uuid::new_v4();
        let mut admission = Admission::new(10, false);
        assert!(matches!(
            admission.admit(naming_a_renamed(cso, PendingExportAttributeChangeType::Add)),
            Admitted::AwaitsRename(_, r) if r.cso_id == cso
        ));
        assert!(matches!(
            admission.admit(naming_a_renamed(
                cso,
                PendingExportAttributeChangeType::Update
            )),
            Admitted::AwaitsRename(..)
        ));
        assert!(admission.is_empty(), "a deferral is not held");
        // A removal names the DN the directory holds, which the rename does not change.
        assert!(matches!(
            admission.admit(naming_a_renamed(
                cso,
                PendingExportAttributeChangeType::Remove
            )),
            Admitted::Ready(_)
        ));
        // An export renaming its own object, whose renamed target's export names that object back
        // (by its CSO, or by the MVO it has not resolved yet), does not wait: the two would defer
        // each other on every run. One that does not rename still waits.
        let mut mutual = naming_a_renamed(cso, PendingExportAttributeChangeType::Add);
        mutual.pending_renames[0].names = vec![Uuid::new_v4(), cso_of(&mutual)];
        assert!(matches!(
            admission.admit(mutual.clone()),
            Admitted::AwaitsRename(..)
        ));
        admission.register_rename(&mutual, "uid=c,ou=People,dc=example,dc=org");
        assert!(matches!(admission.admit(mutual), Admitted::Ready(_)));
        let mut by_mvo = naming_a_renamed(cso, PendingExportAttributeChangeType::Add);
        let mvo = Uuid::new_v4();
        by_mvo.export.source_metaverse_object_id = Some(mvo);
        by_mvo.pending_renames[0].names = vec![mvo];
        admission.register_rename(&by_mvo, "uid=d,ou=People,dc=example,dc=org");
        assert!(matches!(admission.admit(by_mvo), Admitted::Ready(_)));
        // Where links follow the object (AD), the directory rewrites the old DN after the rename.
        let mut follows = Admission::new(10, true);
        assert!(matches!(
            follows.admit(naming_a_renamed(cso, PendingExportAttributeChangeType::Add)),
            Admitted::Ready(_)
        ));
    }

    #[test]
    fn a_rename_this_run_makes_is_the_dependency_waits() {
        let mut admission = Admission::new(10, false);
        let rename = export(PendingExportChangeType::Update);
        admission.register_rename(&rename, "uid=a,ou=People,dc=example,dc=org");
        let member = naming_a_renamed(cso_of(&rename), PendingExportAttributeChangeType::Add);
        assert!(matches!(admission.admit(member), Admitted::Waiting));
    }

    #[test]
    fn draining_the_waiters_stops_holding_them() {
        let mut admission = Admission::new(10, false);
        let create = export(PendingExportChangeType::Create);
        let member = naming(cso_of(&create));
        let member_id = member.id();
        admission.register_creates(std::slice::from_ref(&create));
        admission.admit(member);
        admission.admit(create);
        assert_eq!(admission.drain_waiting(), vec![member_id]);
        assert_eq!(admission.len(), 1);
    }

    #[test]
    fn room_counts_what_is_held_plus_a_page() {
        let mut admission = Admission::new(3, false);
        assert!(admission.has_room(3));
        admission.admit(naming(Uuid::new_v4()));
        assert!(admission.has_room(2));
        assert!(!admission.has_room(3));
    }

    #[test]
    fn only_a_create_creates_a_cso() {
        let create = export(PendingExportChangeType::Create);
        assert_eq!(
            created_cso(&create),
            create.export.connected_system_object_id
        );
        assert_eq!(created_cso(&export(PendingExportChangeType::Update)), None);
    }
}
