//! The coordinator: the one task of a pass that owns its state and wires the stages together. It takes
//! claimed pages from the claimer, admits each export ([`Admission`]), plans the ready ones, feeds the
//! directory, turns the directory's results into outcomes, batches them into flushes ([`FlushBuffer`])
//! and hands each flush to a persist task (at most [`MAX_FLUSHES_IN_FLIGHT`] at once; while a full
//! flush waits behind them ([`FLUSH_BACKLOG`]), the directory gets nothing new). Owned by one task, so
//! nothing on the hot path takes a lock, and it never waits for a flush while it could take a
//! result or feed the directory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use uuid::Uuid;

use super::admission::{Admission, Admitted};
use super::breaker::Breaker;
use super::claimer::Claimed;
use super::flush::FlushBuffer;
use super::log::Logger;
use super::metrics::PassMeter;
use super::progress::ProgressState;
use super::reporting::build_items;
use super::{CancellationToken, RunListener};
use crate::directory::{
    Directory, DirectoryError, ExportJob, ExportResult as DirectoryResult, ExportStatus,
};
use crate::error::{Error, Result};
use crate::model::{ExportPhase, UnresolvedReferenceHandling};
use crate::plan::Planner;
use crate::report::message::metrics_checkpoint;
use crate::report::{BatchReport, Counters, ReportItem};
use crate::store::outcome::{Disposition, ExportOutcome, Failure, Progress, Success};
use crate::store::{BadRow, ClaimedExport, ClaimedPage, ExportQueue, PersistReport, SystemSchema};

/// Flushes persisted at once; more outcomes wait in the coordinator's buffer. Three rather than two:
/// with two, PostgreSQL's cores sat idle between one flush's end and the next one's arrival
/// (`nosync` 10 ms, 15 alternating pairs, measured while the coordinator still waited for a free
/// slot: +6 % objects/s on average; durable unchanged; see `docs/benchmark.md`). With the claim,
/// three fill the default pool of four connections.
pub(crate) const MAX_FLUSHES_IN_FLIGHT: usize = 3;
/// Full flushes that may wait in the buffer behind those in flight before the directory is sent
/// nothing new. It bounds the outcomes held in memory when PostgreSQL is slower than the directory
/// (outcomes free their admission slot, so admission alone would let the buffer grow with the
/// queue), and it keeps the directory from running ahead of the persist: on a machine the two
/// share, the CPU the directory and the engine would spend running ahead is PostgreSQL's, the
/// bottleneck. Measured at `nosync` 10 ms against the coordinator that waited for a free slot
/// (eight alternating pairs each): a backlog of 1 made the initial round 2.0 % faster (7 of 8), a
/// backlog of 3 made it 2.2 % slower (1 of 8).
pub(crate) const FLUSH_BACKLOG: usize = 1;
/// How long nothing may complete before the run says what it waits for.
const STALL_REPORT_AFTER: Duration = Duration::from_secs(10);

/// A flush handed to the persist task, and what came back.
type FlushDone = (Vec<ExportOutcome>, Result<PersistReport>);

/// The pass's state, owned by one task: no locks on the hot path.
pub(crate) struct Coordinator {
    pub(crate) queue: Arc<ExportQueue>,
    pub(crate) schema: Arc<SystemSchema>,
    pub(crate) planner: Planner,
    /// The directory, for sampling the operations in flight.
    pub(crate) directory: Directory,
    pub(crate) handling: UnresolvedReferenceHandling,
    pub(crate) listener: Arc<dyn RunListener>,
    pub(crate) log: Logger,
    pub(crate) page_size: usize,
    /// The held exports and what they wait for.
    pub(crate) admission: Admission,
    /// Planned jobs waiting for the directory.
    pub(crate) ready: VecDeque<ExportJob>,
    pub(crate) buffer: FlushBuffer<ExportOutcome>,
    pub(crate) flushes: JoinSet<FlushDone>,
    /// The last batch report's sequence number.
    pub(crate) sequence: u64,
    pub(crate) counters: Counters,
    pub(crate) progress: ProgressState,
    pub(crate) meter: PassMeter,
    pub(crate) t0: Instant,
    pub(crate) total: u64,
    pub(crate) phase: ExportPhase,
    /// Stops the run when the directory has gone away (see `super::breaker`).
    pub(crate) breaker: Breaker,
    /// Fires with the breaker: the directory starts no more exports.
    pub(crate) stop_directory: CancellationToken,
    /// Exports the directory handed back unstarted.
    pub(crate) not_started: u64,
    pub(crate) fatal: Option<Error>,
}

impl Coordinator {
    /// Runs the loop until every claimed export has an outcome and every flush is persisted. Returns
    /// true when the run was cancelled.
    pub(crate) async fn drive(
        &mut self,
        mut claims: mpsc::Receiver<Claimed>,
        jobs: mpsc::Sender<ExportJob>,
        mut results: mpsc::Receiver<DirectoryResult>,
        cancel: &CancellationToken,
    ) -> bool {
        let mut jobs = Some(jobs);
        let mut claims_open = true;
        let mut cancelled = false;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if (cancelled || self.fatal.is_some()) && claims_open {
                claims_open = false;
                self.stop_claiming(&mut claims).await;
            }
            let idle = !claims_open && self.admission.is_empty() && self.ready.is_empty();
            if idle {
                // Nothing left to send: let the directory finish and close its result channel.
                jobs = None;
                self.flush(true);
                if self.flushes.is_empty() && self.buffer.len() == 0 {
                    break;
                }
            }
            let can_claim = claims_open && self.admission.has_room(self.page_size);
            let backlogged = self.buffer.holds_full_flushes(FLUSH_BACKLOG);
            tokio::select! {
                biased;
                Some(result) = results.recv() => {
                    self.on_result(result);
                    self.flush(false);
                }
                Some(done) = self.flushes.join_next(), if !self.flushes.is_empty() => {
                    // The next flush goes out now, not at the next tick: a slot left empty is
                    // PostgreSQL's cores idle.
                    self.on_flushed(done);
                    self.flush(false);
                }
                Some(permit) = reserve(&jobs), if !self.ready.is_empty() && !cancelled && !backlogged => {
                    match permit {
                        Ok(permit) => {
                            if let Some(job) = self.ready.pop_front() {
                                self.meter.dispatched(Instant::now());
                                self.queue.set_dispatched(job.export_id, true);
                                permit.send(job);
                            }
                        }
                        Err(_) => {
                            self.fatal.get_or_insert(Error::Database("the directory executor stopped unexpectedly".into()));
                        }
                    }
                }
                claimed = claims.recv(), if can_claim => match claimed {
                    Some(Claimed::Page(page)) => self.on_page(page).await,
                    Some(Claimed::Failed(e)) => { self.fatal.get_or_insert(e); }
                    None => {
                        claims_open = false;
                        self.phase = ExportPhase::Executing;
                    }
                },
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    self.log.info("export cancelled: finishing operations in flight and returning unexecuted claims".into());
                    self.release_unstarted().await;
                }
                _ = tick.tick() => {
                    self.report_stall(claims_open);
                    self.flush(false);
                    let in_flight = self.directory.in_flight() as u32;
                    let limit = self.directory.in_flight_limit() as u32;
                    let phase = self.phase;
                    self.progress.maybe_emit(&*self.listener, phase, (in_flight, limit), &self.counters);
                }
            }
            let released = self.admission.take_released();
            if !released.is_empty() {
                self.release(&released).await;
            }
            if self.fatal.is_some() && !cancelled {
                // A run-fatal error (database, claims): stop sending, let the directory finish what it
                // has, persist what happened and return the rest.
                cancelled = true;
                self.release_unstarted().await;
            }
        }
        drop(jobs);
        // Drain results of jobs that were in the directory when the channel closed.
        while let Some(result) = results.recv().await {
            self.on_result(result);
            self.flush(false);
        }
        self.finish_flushes().await;
        cancelled
    }

    /// Persists everything still buffered, at most [`MAX_FLUSHES_IN_FLIGHT`] at once, and waits for
    /// every flush.
    async fn finish_flushes(&mut self) {
        loop {
            self.flush(true);
            let Some(done) = self.flushes.join_next().await else {
                // Nothing in flight after a forced flush: nothing is buffered either.
                break;
            };
            self.on_flushed(done);
        }
    }

    /// Logs what the run still waits for when nothing has completed for a while (once per interval):
    /// the first thing an operator looks at when a run seems stuck.
    fn report_stall(&mut self, claims_open: bool) {
        if self.meter.stalled(Instant::now(), STALL_REPORT_AFTER) {
            self.log.warn(format!(
                "no export has completed for {} s: {} held ({} ready, {} waiting for Creates or renames), {} in \
                 the directory, {} outcome(s) to persist, {} flush(es) in progress, claiming {}",
                STALL_REPORT_AFTER.as_secs(),
                self.admission.len(),
                self.ready.len(),
                self.admission.waiting_count(),
                self.directory.in_flight(),
                self.buffer.len(),
                self.flushes.len(),
                if claims_open { "open" } else { "done" }
            ));
        }
    }

    /// Stops taking pages; pages already claimed are returned unexecuted.
    async fn stop_claiming(&mut self, claims: &mut mpsc::Receiver<Claimed>) {
        claims.close();
        let mut ids = Vec::new();
        while let Some(claimed) = claims.recv().await {
            if let Claimed::Page(page) = claimed {
                ids.extend(page.exports.iter().map(|e| e.id()));
                ids.extend(page.bad_rows.iter().map(|b| b.pending_export_id));
            }
        }
        self.release(&ids).await;
    }

    /// Returns claimed exports that have not reached the directory (ready or waiting).
    async fn release_unstarted(&mut self) {
        let mut ids: Vec<Uuid> = self.ready.drain(..).map(|j| j.export_id).collect();
        for id in &ids {
            self.admission.take(id);
        }
        ids.extend(self.admission.drain_waiting());
        self.release(&ids).await;
    }

    /// True once the run stopped because the database does not answer: what it still holds goes
    /// back to the queue in the background, as soon as the database answers (see `super::run::pass`).
    pub(crate) fn database_gone(&self) -> bool {
        matches!(self.fatal, Some(Error::DatabaseUnavailable(_)))
    }

    async fn release(&mut self, ids: &[Uuid]) {
        if ids.is_empty() || self.database_gone() {
            return;
        }
        match self.queue.release(ids).await {
            Err(e @ Error::DatabaseUnavailable(_)) => {
                self.log.warn(format!(
                    "returning {} unexecuted claim(s) failed: {e}",
                    ids.len()
                ));
                self.fatal.get_or_insert(e);
            }
            Ok(n) => self.log.debug(format!("returned {n} unexecuted claim(s)")),
            Err(e) => self.log.warn(format!(
                "returning {} unexecuted claim(s) failed: {e}; they are reclaimed after the lease",
                ids.len()
            )),
        }
    }

    async fn on_page(&mut self, page: ClaimedPage) {
        if !page.bad_rows.is_empty() {
            self.fail_bad_rows(page.bad_rows).await;
        }
        if page
            .exports
            .iter()
            .any(|e| e.export.has_unresolved_references)
        {
            self.phase = ExportPhase::ResolvingReferences;
        }
        self.admission.page_read_after(page.flushes_before);
        self.admission.register_creates(&page.exports);
        for claimed in &page.exports {
            if let Some(from) = super::planning::renamed_from(&self.planner, &self.schema, claimed)
            {
                self.admission.register_rename(claimed, &from);
            }
        }
        for mut claimed in page.exports {
            if !claimed.pending_renames.is_empty() {
                super::planning::keep_renames_the_plan_makes(
                    &self.planner,
                    &self.schema,
                    &mut claimed,
                );
            }
            self.admit(claimed);
        }
    }

    /// Decides what to do with a freshly claimed export: defer it, hold it for a Create, or plan it.
    /// One whose row the run no longer holds (taken over while the page waited) is dropped unsent.
    fn admit(&mut self, claimed: ClaimedExport) {
        let id = claimed.id();
        if self.queue.fence(id).is_none_or(|f| f.is_lost()) {
            self.counters.fenced += 1;
            self.log.debug(format!(
                "pending export {id} not written: another engine took its row over"
            ));
            self.admission.abandon(&claimed);
            return;
        }
        match self.admission.admit(claimed) {
            Admitted::Ready(id) => self.plan(id),
            Admitted::Waiting => {}
            Admitted::Deferred(claimed) => self.complete(ExportOutcome::deferred(*claimed)),
            Admitted::AwaitsRename(claimed, rename) => {
                self.log.debug(format!(
                    "pending export {} deferred: it names '{}', which pending export {} renames to \
                     '{}' and has not yet; the directory would keep the old DN",
                    claimed.id(),
                    rename.from,
                    rename.export_id,
                    rename.to
                ));
                self.complete(ExportOutcome::deferred(*claimed));
            }
        }
    }

    /// Plans a held export and queues it for the directory, fenced by its row's lease.
    fn plan(&mut self, id: Uuid) {
        if let Some(claimed) = self.admission.get(&id) {
            let job = super::planning::job(&self.planner, &self.schema, &self.queue, claimed);
            self.ready.push_back(job);
        }
    }

    fn on_result(&mut self, result: DirectoryResult) {
        self.meter.completed();
        let Some(claimed) = self.admission.take(&result.export_id) else {
            self.log.warn(format!(
                "the directory reported export {} which the run does not hold",
                result.export_id
            ));
            return;
        };
        if result.status == ExportStatus::NotStarted {
            self.queue.set_dispatched(result.export_id, false);
        }
        for w in &result.warnings {
            self.log
                .debug(format!("pending export {}: {w}", result.export_id));
        }
        if let Some(why) = self.breaker.record(&result) {
            // The fatal path stops claiming and returns what has not reached the directory; the
            // directory hands back what it has not begun, and finishes only what may have taken
            // effect.
            self.log.warn(format!(
                "stopping the run: cannot reach the directory: {why}"
            ));
            self.stop_directory.cancel();
            self.fatal
                .get_or_insert(Error::Directory(DirectoryError::Connect(why)));
        }
        if let ExportStatus::Fenced { why, began } = result.status {
            // Not written, not persisted: another engine holds the row now, or the run is stopping
            // without a confirmed lease (then the end of the pass returns the row, keeping the mark
            // when something may have reached the directory).
            self.queue.set_dispatched(claimed.id(), began);
            self.counters.fenced += 1;
            self.log.debug(format!(
                "pending export {} not written: {why:?}",
                claimed.id()
            ));
            self.admission.abandon(&claimed);
            return;
        }
        let Some(outcome) = to_outcome(claimed, result) else {
            // The run is stopping and this export never began: the queue still holds its claim,
            // which the end of the pass returns as it was. So do the exports waiting for it.
            self.admission.drain_waiting();
            self.not_started += 1;
            return;
        };
        if let Disposition::Failed(f) = &outcome.result {
            self.log.debug(format!(
                "pending export {} failed: {}",
                outcome.pending_export_id(),
                f.message
            ));
        }
        self.complete(outcome);
    }

    /// Adds an outcome to the flush buffer. When it ends a Create or rename of this run, the exports
    /// waiting for that object are released: planned if the object exists now (naming it where it
    /// is), deferred if not (and so on down the chain, since a deferred Create releases its own
    /// waiters the same way).
    fn complete(&mut self, outcome: ExportOutcome) {
        let mut work = vec![outcome];
        while let Some(outcome) = work.pop() {
            let released = self.admission.completed(&outcome);
            let weight = persist_weight(&outcome);
            self.buffer.push(outcome, weight, Instant::now());
            for id in released.ready {
                self.plan(id);
            }
            for claimed in released.deferred {
                self.log.debug(format!(
                    "pending export {} deferred: an object it names was not created in this run",
                    claimed.id()
                ));
                work.push(ExportOutcome::deferred(claimed));
            }
        }
    }

    /// Hands the buffer to persist tasks while it is due (full, old enough, or `force`d) and fewer
    /// than [`MAX_FLUSHES_IN_FLIGHT`] are out; what is left waits for a flush to end. Never waits
    /// itself: the loop takes the flushes that end, and stops feeding the directory while the
    /// buffer holds [`FLUSH_BACKLOG`] full flushes.
    pub(crate) fn flush(&mut self, force: bool) {
        if self.database_gone() {
            // Nothing more can be written; the rows go back to the queue with their marks.
            self.buffer.clear();
            self.flushes.abort_all();
            return;
        }
        while self.flushes.len() < MAX_FLUSHES_IN_FLIGHT
            && self.buffer.is_due(force, Instant::now())
        {
            let outcomes = self.buffer.take(Instant::now());
            let queue = self.queue.clone();
            let span = tracing::debug_span!("persist", size = outcomes.len());
            self.flushes.spawn(
                async move {
                    let report = queue.persist(&outcomes).await;
                    (outcomes, report)
                }
                .instrument(span)
                .with_current_subscriber(),
            );
        }
    }

    async fn fail_bad_rows(&mut self, bad_rows: Vec<BadRow>) {
        for b in &bad_rows {
            self.log.warn(format!(
                "pending export {} cannot be read: {}",
                b.pending_export_id, b.error
            ));
        }
        match self.queue.fail_bad_rows(&bad_rows).await {
            Ok(report) => {
                self.counters.failed += report.persisted.len() as u64;
                let items = report
                    .persisted
                    .iter()
                    .map(|p| super::reporting::bad_row_item(p, &bad_rows))
                    .collect();
                self.emit_batch(items);
            }
            Err(e) => {
                self.fatal.get_or_insert(e);
            }
        }
    }

    fn on_flushed(&mut self, done: std::result::Result<FlushDone, tokio::task::JoinError>) {
        let (outcomes, report) = match done {
            Ok(d) => d,
            Err(e) => {
                self.fatal
                    .get_or_insert(Error::Database(format!("a persist task failed: {e}")));
                return;
            }
        };
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                self.fatal.get_or_insert(e);
                return;
            }
        };
        self.meter.flushed();
        self.admission.flushed(&outcomes, &report);
        let items = build_items(
            &outcomes,
            &report,
            &self.schema,
            self.handling,
            &mut self.counters,
        );
        if !report.not_held.is_empty() {
            self.log.warn(format!(
                "{} outcome(s) were not written: another engine took the rows over after their lease expired",
                report.not_held.len()
            ));
        }
        self.emit_batch(items);
        self.log.info(metrics_checkpoint(
            self.counters.processed(),
            self.t0.elapsed(),
            self.total,
            &self.schema.name,
        ));
    }

    fn emit_batch(&mut self, items: Vec<ReportItem>) {
        if items.is_empty() {
            return;
        }
        self.sequence += 1;
        let report = BatchReport {
            connected_system_id: self.schema.connected_system_id,
            sequence: self.sequence,
            items,
        };
        self.listener.on_batch(&report);
    }
}

/// What persisting `outcome` costs, in the unit of [`super::flush::FLUSH_WEIGHT_PER_EXPORT`]: one
/// row written per attribute change (its status, and its value in the CSO's optimistic apply), one
/// for the export.
fn persist_weight(outcome: &ExportOutcome) -> usize {
    outcome.export.export.attribute_changes.len() + 1
}

/// A slot for one job in the directory's queue, or never (when the queue is closed).
async fn reserve(
    jobs: &Option<mpsc::Sender<ExportJob>>,
) -> Option<std::result::Result<mpsc::Permit<'_, ExportJob>, mpsc::error::SendError<()>>> {
    match jobs {
        Some(tx) => Some(tx.reserve().await),
        None => std::future::pending().await,
    }
}

/// Maps the directory's result for an export to the outcome the store persists; `None` for an
/// export that never began, which has nothing to persist.
fn to_outcome(claimed: ClaimedExport, result: DirectoryResult) -> Option<ExportOutcome> {
    Some(match result.status {
        ExportStatus::NotStarted | ExportStatus::Fenced { .. } => return None,
        ExportStatus::Succeeded => {
            // Every writable change of the claimed export is accounted for, as JIM marks every change
            // it handed the connector (the plan leaves some without an LDAP write of their own, e.g.
            // the unchanged DN); a change staged after the claim is not in the snapshot and stays
            // Pending.
            let written_changes = claimed.writable_change_ids();
            ExportOutcome {
                export: claimed,
                result: Disposition::Succeeded(Success {
                    written_changes,
                    external_id: result.external_id,
                    secondary_external_id: result.secondary_external_id,
                }),
            }
        }
        ExportStatus::Failed {
            error_type,
            message,
        } => ExportOutcome {
            export: claimed,
            result: Disposition::Failed(Failure {
                message,
                error_type,
                progress: Progress {
                    object_exists: result.entry_created,
                    written_changes: result.written_change_ids,
                    external_id: result.external_id,
                    secondary_external_id: result.secondary_external_id,
                },
            }),
        },
    })
}

#[cfg(test)]
mod tests;
