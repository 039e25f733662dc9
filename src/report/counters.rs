//! The run's tallies of JIM's result fields, kept as the batch report items are built and read when
//! the run's result is assembled.

/// The run's counts of JIM's result fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub succeeded: u64,
    pub failed: u64,
    pub deferred: u64,
    pub partly_written: u64,
    pub unresolvable_references: u64,
    pub optimistic_applied: u64,
    pub optimistic_skipped: u64,
    pub optimistic_failed: u64,
    pub optimistic_unresolved: u64,
    pub not_held: u64,
    pub recovered: u64,
    /// Exports the directory refused to write because the run's lease on their row was gone.
    pub fenced: u64,
}

impl Counters {
    /// Exports with a persisted outcome.
    pub fn processed(&self) -> u64 {
        self.succeeded + self.failed + self.deferred
    }
}
