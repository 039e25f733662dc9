//! Dependency ordering: a write that names an object whose Create or rename is in flight in this run
//! waits for it (a rename, so the write can name the object where it is: see [`super::renames`]). JIM
//! gives no such guarantee inside its reference pass, and Active Directory rejects a
//! member (or manager) that does not exist yet. Pure bookkeeping, no I/O.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

/// The state of a Create or rename this run executes, keyed by its CSO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    InFlight,
    Succeeded,
    Failed,
}

/// What to do with an export that names other objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Every object it names exists (or is not created by this run): send it now.
    Ready,
    /// Some named objects' Creates are still in flight: hold it until they complete.
    Wait(HashSet<Uuid>),
    /// A named object's Create failed in this run: defer it (+5 minutes, no error counted).
    DependencyFailed,
}

/// Exports released when a Create or rename completes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Released {
    /// Exports whose every dependency succeeded: send them now.
    pub ready: Vec<Uuid>,
    /// Exports one of whose dependencies failed: defer them.
    pub failed: Vec<Uuid>,
}

/// Tracks the Creates and renames of this run and the exports waiting for them.
#[derive(Debug, Default)]
pub(crate) struct Dependencies {
    writes: HashMap<Uuid, WriteState>,
    /// Waiting export → the CSOs it still waits for.
    waiting: HashMap<Uuid, HashSet<Uuid>>,
    /// CSO → exports waiting for it.
    waiters: HashMap<Uuid, Vec<Uuid>>,
    /// Waiting exports one of whose dependencies already failed (deferred once the rest complete).
    doomed: HashSet<Uuid>,
    /// The CSO a waiting Create creates (or rename renames), by export (to find cycles).
    own_of: HashMap<Uuid, Uuid>,
    /// The waiting Create (or rename) export of a CSO.
    waiting_writer: HashMap<Uuid, Uuid>,
}

impl Dependencies {
    /// Records that this run executes a Create or a rename of `cso`.
    pub fn write_claimed(&mut self, cso: Uuid) {
        self.writes.insert(cso, WriteState::InFlight);
    }

    /// True when this run claimed a Create or rename of `cso`, whatever its state now.
    pub fn tracks(&self, cso: Uuid) -> bool {
        self.writes.contains_key(&cso)
    }

    /// How an export naming `named` objects (their CSO ids) stands. `own` is the CSO the export itself
    /// creates or renames, if it does: when waiting would close a cycle (A names B, B names A, both
    /// created or renamed in this run) the export is sent at once instead, as JIM would send it, so a cycle can
    /// never stall the run; the directory then decides (OpenLDAP accepts a DN that does not exist yet,
    /// AD refuses it and the export is retried after its partner exists).
    pub fn readiness_for(
        &self,
        named: impl IntoIterator<Item = Uuid>,
        own: Option<Uuid>,
    ) -> Readiness {
        match self.readiness(named) {
            Readiness::Wait(on) if own.is_some_and(|own| self.reaches(&on, own)) => {
                Readiness::Ready
            }
            other => other,
        }
    }

    /// True when `target` is among `from`, or among what their waiting Creates and renames wait for.
    fn reaches(&self, from: &HashSet<Uuid>, target: Uuid) -> bool {
        let mut seen = HashSet::new();
        let mut stack: Vec<Uuid> = from.iter().copied().collect();
        while let Some(cso) = stack.pop() {
            if cso == target {
                return true;
            }
            if !seen.insert(cso) {
                continue;
            }
            if let Some(export) = self.waiting_writer.get(&cso)
                && let Some(deps) = self.waiting.get(export)
            {
                stack.extend(deps.iter().copied());
            }
        }
        false
    }

    /// How an export naming `named` objects (their CSO ids) stands.
    pub fn readiness(&self, named: impl IntoIterator<Item = Uuid>) -> Readiness {
        let mut pending = HashSet::new();
        for cso in named {
            match self.writes.get(&cso) {
                Some(WriteState::Failed) => return Readiness::DependencyFailed,
                Some(WriteState::InFlight) => {
                    pending.insert(cso);
                }
                Some(WriteState::Succeeded) | None => {}
            }
        }
        if pending.is_empty() {
            Readiness::Ready
        } else {
            Readiness::Wait(pending)
        }
    }

    /// Holds `export` (which creates or renames `own`, if it does) until every CSO in `on` has
    /// completed its Create or rename.
    pub fn wait(&mut self, export: Uuid, own: Option<Uuid>, on: HashSet<Uuid>) {
        if let Some(cso) = own {
            self.own_of.insert(export, cso);
            self.waiting_writer.insert(cso, export);
        }
        for cso in &on {
            self.waiters.entry(*cso).or_default().push(export);
        }
        self.waiting.insert(export, on);
    }

    /// Exports waiting for Creates or renames.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Every held export (for release on cancellation).
    pub fn drain_waiting(&mut self) -> Vec<Uuid> {
        self.waiters.clear();
        self.doomed.clear();
        self.own_of.clear();
        self.waiting_writer.clear();
        self.waiting.drain().map(|(id, _)| id).collect()
    }

    /// Records that the Create or rename of `cso` completed and returns the exports it releases.
    /// `succeeded` says whether the object exists now (a rename that failed leaves it where it was:
    /// that is success to its waiters).
    pub fn write_completed(&mut self, cso: Uuid, succeeded: bool) -> Released {
        self.writes.insert(
            cso,
            if succeeded {
                WriteState::Succeeded
            } else {
                WriteState::Failed
            },
        );
        let mut released = Released::default();
        for export in self.waiters.remove(&cso).unwrap_or_default() {
            if !succeeded {
                self.doomed.insert(export);
            }
            let done = match self.waiting.get_mut(&export) {
                Some(remaining) => {
                    remaining.remove(&cso);
                    remaining.is_empty()
                }
                None => false,
            };
            if done {
                self.waiting.remove(&export);
                if let Some(own) = self.own_of.remove(&export) {
                    self.waiting_writer.remove(&own);
                }
                if self.doomed.remove(&export) {
                    released.failed.push(export);
                } else {
                    released.ready.push(export);
                }
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn objects_not_created_in_this_run_are_ready() {
        let deps = Dependencies::default();
        assert_eq!(deps.readiness([id(1), id(2)]), Readiness::Ready);
    }

    #[test]
    fn a_write_waits_for_the_creates_it_names() {
        let mut deps = Dependencies::default();
        deps.write_claimed(id(1));
        deps.write_claimed(id(2));
        let Readiness::Wait(on) = deps.readiness([id(1), id(2), id(3)]) else {
            panic!("should wait")
        };
        assert_eq!(on, HashSet::from([id(1), id(2)]));
        deps.wait(id(100), None, on);
        assert_eq!(deps.write_completed(id(1), true), Released::default());
        assert_eq!(
            deps.write_completed(id(2), true),
            Released {
                ready: vec![id(100)],
                failed: vec![]
            }
        );
        assert_eq!(deps.readiness([id(1)]), Readiness::Ready);
    }

    #[test]
    fn a_failed_create_defers_its_waiters() {
        let mut deps = Dependencies::default();
        deps.write_claimed(id(1));
        deps.write_claimed(id(2));
        let Readiness::Wait(on) = deps.readiness([id(1), id(2)]) else {
            panic!("should wait")
        };
        deps.wait(id(100), None, on);
        assert_eq!(
            deps.write_completed(id(1), false),
            Released::default(),
            "still waits for the other"
        );
        assert_eq!(
            deps.write_completed(id(2), true),
            Released {
                ready: vec![],
                failed: vec![id(100)]
            }
        );
        assert_eq!(deps.readiness([id(1)]), Readiness::DependencyFailed);
    }

    #[test]
    fn a_cycle_of_creates_never_waits_forever() {
        // Users A (cso 1) and B (cso 2) are each other's manager, both created in this run.
        let mut deps = Dependencies::default();
        deps.write_claimed(id(1));
        deps.write_claimed(id(2));
        let Readiness::Wait(on) = deps.readiness_for([id(2)], Some(id(1))) else {
            panic!("A waits for B")
        };
        deps.wait(id(100), Some(id(1)), on);
        assert_eq!(
            deps.readiness_for([id(1)], Some(id(2))),
            Readiness::Ready,
            "B would close the cycle: send it"
        );
        // A chain without a cycle still waits.
        deps.write_claimed(id(3));
        assert!(matches!(
            deps.readiness_for([id(1)], Some(id(3))),
            Readiness::Wait(_)
        ));
        assert_eq!(
            deps.write_completed(id(2), true),
            Released {
                ready: vec![id(100)],
                failed: vec![]
            }
        );
    }

    #[test]
    fn draining_returns_every_held_export() {
        let mut deps = Dependencies::default();
        deps.write_claimed(id(1));
        deps.wait(id(100), None, HashSet::from([id(1)]));
        deps.wait(id(101), None, HashSet::from([id(1)]));
        let mut drained = deps.drain_waiting();
        drained.sort();
        assert_eq!(drained, vec![id(100), id(101)]);
        assert_eq!(deps.write_completed(id(1), true), Released::default());
    }
}
