//! One export run: claim → resolve → plan → execute → persist → report, streaming, with bounded
//! queues between the stages and no barrier between batches.
//!
//! Tasks: a **claimer** claims pages (plain exports first, then reference-bearing ones, whose
//! references it resolves in one query per page) into a small bounded channel; the **coordinator**
//! (this module's loop) plans each export, holds those that name an object whose Create is still in
//! flight, feeds the directory, collects results into flushes and hands each flush to a **persist**
//! task (at most two at once); the **directory** runs many exports at once over its pool; a **lease**
//! task renews the rows the run holds. Memory is bounded by the claim channel, the held exports and the
//! flushes in flight, whatever the queue size.
//!
//! [`pass`] is that pipeline over an open queue and an already connected directory, which it leaves
//! open: a run connects, makes one pass and closes; a watch (`super::watch`) keeps the directory and
//! makes a pass whenever something is due.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use super::breaker::{Breaker, UNANSWERED_EXPORTS_TO_STOP};
use super::dependencies::{Dependencies, Readiness};
use super::log::Logger;
use super::reporting::{Counters, build_items};
use super::{CancellationToken, RunListener};
use crate::config::ExportRequest;
use crate::directory::{
    AnchorRegistry, Directory, DirectoryError, ExportJob, ExportResult as DirectoryResult,
    ExportStatus, OUTCOME_UNKNOWN_NOTE, Recovery,
};
use crate::error::{Error, Result};
use crate::model::{ExportPhase, PendingExportChangeType, UnresolvedReferenceHandling};
use crate::outcome::{ExportOutcome, ExportResult, Failure, Progress, Success};
use crate::plan::Planner;
use crate::report::message::{metrics_checkpoint, outcome_message, throughput_clause};
use crate::report::{BatchReport, ProgressEvent, ProgressThrottle, RunMetrics, RunResult};
use crate::store::{
    BadRow, ClaimedExport, ClaimedPage, ExportQueue, Pass, PersistReport, Store, SystemSchema,
};
use tracing::instrument::WithSubscriber;

/// Flushes persisted at once; more outcomes wait in the coordinator's buffer.
const MAX_FLUSHES_IN_FLIGHT: usize = 2;
/// How long nothing may complete before the run says what it waits for.
const STALL_REPORT_AFTER: Duration = Duration::from_secs(10);

/// What the claimer sends the coordinator.
enum Claimed {
    Page(ClaimedPage),
    Failed(Error),
}

/// Runs one export (see [`crate::engine::Engine::run_export`]).
pub(crate) async fn run(
    store: Store,
    request: &ExportRequest,
    listener: Arc<dyn RunListener>,
    cancel: CancellationToken,
    database_unverified: bool,
) -> Result<RunResult> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let options = &request.options;
    let queue = Arc::new(store.open(request.connected_system_id, options).await?);
    let start = PassStart::announce(&store, &queue, request, &listener, started_at, t0).await?;
    warn_about_transport(&start.log, request, database_unverified);
    let directory = Directory::connect(&request.directory, options).await?;
    let outcome = pass(queue, &directory, request, listener, cancel, start).await;
    directory.close().await;
    outcome.map(|done| done.result)
}

/// Warns about connections that are not protected as they should be: the directory's certificate
/// not verified, a bind password sent in clear (allowed explicitly), and (once per engine, when
/// `database_unverified`) a database connection whose TLS is not verified.
pub(crate) fn warn_about_transport(
    log: &Logger,
    request: &ExportRequest,
    database_unverified: bool,
) {
    if !request.directory.tls.verify {
        log.warn("TLS certificate verification of the directory is turned off (directory.tls.verify = false)".into());
    }
    if request.directory.sends_password_in_clear() {
        log.warn(
            "the directory bind password is sent in clear over ldap:// without TLS \
             (directory.allow_password_without_tls = true): use ldaps:// or StartTLS outside a test \
             directory"
                .into(),
        );
    }
    if database_unverified {
        log.warn(
            "the connection to JIM's database does not verify the server's certificate (SSL Mode \
             disable, allow, prefer or require): use verify-full (or verify-ca) with the server's CA; \
             this is said once per engine"
                .into(),
        );
    }
}

/// What a pass over the queue starts from: the run's clock, the rows due when it started, and the
/// state that carries from one pass to the next in a watch.
pub(crate) struct PassStart {
    started_at: chrono::DateTime<Utc>,
    t0: Instant,
    total: u64,
    progress: ProgressState,
    log: Logger,
    /// The last batch report's sequence number (reports of a watch number on across its passes).
    pub(crate) sequence: u64,
    /// The store's statement count when the pass began (run metrics count from it).
    pub(crate) statements_base: u64,
    /// The directory's counters when the pass began (a watch's directory outlives its passes).
    pub(crate) directory_base: Option<crate::directory::DirectoryStats>,
    /// Containers the directory had created before the pass.
    pub(crate) containers_base: usize,
}

impl PassStart {
    /// Counts what is due, logs the start and reports the `Preparing` phase.
    pub(crate) async fn announce(
        store: &Store,
        queue: &ExportQueue,
        request: &ExportRequest,
        listener: &Arc<dyn RunListener>,
        started_at: chrono::DateTime<Utc>,
        t0: Instant,
    ) -> Result<PassStart> {
        let log = Logger::new(listener.clone());
        let schema = queue.schema();
        let lease = Duration::from_secs(request.options.lease_seconds);
        let total = store
            .queue_summary(request.connected_system_id, lease)
            .await?
            .executable
            .max(0) as u64;
        log.info(format!(
            "export of connected system {} ({}) started: {total} pending export(s) due",
            schema.connected_system_id, schema.name
        ));
        let mut progress =
            ProgressState::new(&request.options, schema.connected_system_id, total, t0);
        progress.emit(
            &**listener,
            ExportPhase::Preparing,
            0,
            0,
            "Preparing",
            &Counters::default(),
        );
        Ok(PassStart {
            started_at,
            t0,
            total,
            progress,
            log,
            sequence: 0,
            statements_base: 0,
            directory_base: None,
            containers_base: 0,
        })
    }
}

/// A finished pass: its result and the last batch report's sequence number.
pub(crate) struct PassDone {
    pub(crate) result: RunResult,
    pub(crate) sequence: u64,
}

/// One pass over a connected system's queue with an open queue and a connected directory, which it
/// leaves open: claims until the eligible queue is exhausted or `cancel` fires, then returns what it
/// did not execute.
pub(crate) async fn pass(
    queue: Arc<ExportQueue>,
    directory: &Directory,
    request: &ExportRequest,
    listener: Arc<dyn RunListener>,
    cancel: CancellationToken,
    start: PassStart,
) -> Result<PassDone> {
    let PassStart {
        started_at,
        t0,
        total,
        progress,
        log,
        sequence,
        statements_base,
        directory_base,
        containers_base,
    } = start;
    let options = &request.options;
    let schema = queue.schema().clone();
    let handling = request
        .settings
        .unresolved_reference_handling
        .unwrap_or(schema.unresolved_reference_handling);
    let lease = Duration::from_secs(options.lease_seconds);
    let planner = Planner::new(&request.settings, directory.dialect());

    let lease_guard = CancellationToken::new();
    let lease_task = tokio::spawn(
        renew_leases(queue.clone(), lease, lease_guard.clone(), log.clone())
            .in_current_span()
            .with_current_subscriber(),
    );

    let (claim_tx, claim_rx) = mpsc::channel::<Claimed>(2);
    let claimer = tokio::spawn(
        claim_pages(queue.clone(), options.page_size, cancel.clone(), claim_tx)
            .instrument(tracing::debug_span!("claim"))
            .with_current_subscriber(),
    );

    let max_active = directory.max_in_flight() * 2;
    let (job_tx, job_rx) = mpsc::channel::<ExportJob>(max_active.max(1));
    let (result_tx, result_rx) = mpsc::channel::<DirectoryResult>(max_active.max(1));
    let stop_directory = CancellationToken::new();
    let runner = {
        let directory = directory.clone();
        let stop = stop_directory.clone();
        tokio::spawn(
            async move { directory.run_until(job_rx, result_tx, stop).await }
                .instrument(tracing::debug_span!("execute"))
                .with_current_subscriber(),
        )
    };

    let mut coordinator = Coordinator {
        queue: queue.clone(),
        schema: schema.clone(),
        planner,
        directory: directory.clone(),
        handling,
        listener: listener.clone(),
        log: log.clone(),
        connected_system_name: schema.name.clone(),
        flush_size: options.flush_size.max(1) as usize,
        page_size: options.page_size.max(1) as usize,
        flush_interval: Duration::from_millis(options.flush_interval_ms),
        max_held: (options.page_size as usize) * 4 + max_active,
        held: HashMap::new(),
        ready: VecDeque::new(),
        deps: Dependencies::default(),
        buffer: Vec::new(),
        buffer_since: None,
        flushes: JoinSet::new(),
        sequence,
        counters: Counters::default(),
        progress,
        dispatched: 0,
        completed: 0,
        first_write: None,
        flush_count: 0,
        t0,
        total,
        phase: ExportPhase::Executing,
        in_flight_samples: (0, 0),
        breaker: Breaker::new(UNANSWERED_EXPORTS_TO_STOP),
        waiting_release: Vec::new(),
        stall: (0, Instant::now()),
        stop_directory: stop_directory.clone(),
        not_started: 0,
        fatal: None,
    };
    // A cancel that lands before the coordinator sees it (the claimer stops first) still counts.
    let cancelled = coordinator
        .drive(claim_rx, job_tx, result_rx, &cancel)
        .await
        || cancel.is_cancelled();

    if matches!(coordinator.fatal, Some(Error::DatabaseUnavailable(_))) {
        // A claim still retrying would only wait out another retry window; rows it may have marked
        // are returned with the rest (by the run's mark).
        claimer.abort();
    }
    let _ = claimer.await;
    let _ = runner.await;
    lease_guard.cancel();
    let _ = lease_task.await;
    let stats = directory_stats_since(directory, directory_base);
    let mut created_containers = directory.created_containers();
    created_containers.drain(..containers_base.min(created_containers.len()));

    // Whatever the run still holds (cancellation, a failure) goes back to the status it had; a row
    // the directory may have seen keeps the mark that makes its next attempt a re-attempt. When the
    // database is what stopped the run, the store returns them as soon as it answers again.
    let unavailable = matches!(coordinator.fatal, Some(Error::DatabaseUnavailable(_)));
    let returned = if unavailable {
        Err(Error::DatabaseUnavailable("not tried".into()))
    } else {
        queue.release_all().await
    };
    if let Err(e) = returned {
        let later = queue.release_all_later();
        log.warn(format!(
            "returning {later} claim(s) failed ({e}); they are returned as soon as the database \
             answers (or reclaimed after their lease)"
        ));
    }
    if coordinator.counters.fenced > 0 {
        log.warn(format!(
            "{} export(s) were not written: another engine took their rows over after this run's \
             lease on them ran out",
            coordinator.counters.fenced
        ));
    }
    if coordinator.not_started > 0 {
        log.info(format!(
            "{} export(s) the directory had not begun went back to the queue as they were",
            coordinator.not_started
        ));
    }
    if let Some(e) = coordinator.fatal.take() {
        log.error(format!(
            "export of connected system {} stopped: {e}",
            schema.connected_system_id
        ));
        return Err(e);
    }

    let elapsed = t0.elapsed();
    let c = &coordinator.counters;
    let processed = c.processed();
    let mut message = outcome_message(
        c.succeeded,
        c.partly_written,
        c.failed,
        c.deferred,
        &throughput_clause(processed, elapsed),
    );
    if cancelled {
        // JIM's worker reports a cancelled export as such; the counts keep JIM's wording.
        message = message.replacen("Export complete:", "Export cancelled:", 1);
    }
    log.info(message.clone());
    coordinator.progress.emit(
        &*listener,
        ExportPhase::Completed,
        0,
        directory.in_flight_limit() as u32,
        &message,
        c,
    );
    let (samples, sum) = coordinator.in_flight_samples;
    let result = RunResult {
        connected_system_id: schema.connected_system_id,
        dry_run: false,
        started_at,
        completed_at: Utc::now(),
        total_pending_exports: total,
        success_count: c.succeeded,
        failed_count: c.failed,
        deferred_count: c.deferred,
        partially_exported_count: c.partly_written,
        unresolvable_reference_count: c.unresolvable_references,
        reconciled_count: 0,
        created_container_external_ids: created_containers,
        optimistic_apply_applied_count: c.optimistic_applied,
        optimistic_apply_skipped_count: c.optimistic_skipped,
        optimistic_apply_failed_count: c.optimistic_failed,
        optimistic_apply_unresolved_reference_count: c.optimistic_unresolved,
        cancelled,
        message,
        dialect: Some(directory.dialect()),
        metrics: RunMetrics {
            operations: crate::report::OperationCounts {
                add: stats.adds,
                modify: stats.modifies,
                modify_dn: stats.modify_dns,
                delete: stats.deletes,
                search: stats.searches,
            },
            sql_statements: queue.statements().saturating_sub(statements_base),
            flushes: coordinator.flush_count,
            objects_per_second: if elapsed.as_secs_f64() > 0.0 {
                processed as f64 / elapsed.as_secs_f64()
            } else {
                0.0
            },
            elapsed_ms: elapsed.as_millis() as u64,
            time_to_first_write_ms: coordinator.first_write.map(|d| d.as_millis() as u64),
            max_in_flight: stats.peak_in_flight as u32,
            mean_in_flight: if samples > 0 {
                sum as f64 / samples as f64
            } else {
                0.0
            },
            in_flight_limit: stats.in_flight_limit.current,
            min_in_flight_limit: stats.in_flight_limit.min,
            max_in_flight_limit: stats.in_flight_limit.max,
            in_flight_limit_increases: stats.in_flight_limit.increases,
            in_flight_limit_decreases: stats.in_flight_limit.decreases,
            retries: stats.retries,
            reconnects: stats.lost_connections,
            recovered: c.recovered,
            lease_lost: c.fenced + c.not_held,
            export_latency_p50_ms: stats.export_latency.p50_ms(),
            export_latency_p99_ms: stats.export_latency.p99_ms(),
        },
    };
    Ok(PassDone {
        result,
        sequence: coordinator.sequence,
    })
}

/// The directory's counters since `base` (all of them without one); the peak stays the directory's.
fn directory_stats_since(
    directory: &Directory,
    base: Option<crate::directory::DirectoryStats>,
) -> crate::directory::DirectoryStats {
    let now = directory.stats();
    let Some(b) = base else { return now };
    crate::directory::DirectoryStats {
        adds: now.adds.saturating_sub(b.adds),
        modifies: now.modifies.saturating_sub(b.modifies),
        modify_dns: now.modify_dns.saturating_sub(b.modify_dns),
        deletes: now.deletes.saturating_sub(b.deletes),
        searches: now.searches.saturating_sub(b.searches),
        connects: now.connects.saturating_sub(b.connects),
        lost_connections: now.lost_connections.saturating_sub(b.lost_connections),
        retries: now.retries.saturating_sub(b.retries),
        peak_in_flight: now.peak_in_flight,
        export_latency: now.export_latency.since(&b.export_latency),
        in_flight_limit: now.in_flight_limit,
    }
}

/// Claims pages, plain exports first and then reference-bearing ones (whose references are resolved
/// in one query per page), until both passes are exhausted or the run is cancelled.
async fn claim_pages(
    queue: Arc<ExportQueue>,
    page_size: u32,
    cancel: CancellationToken,
    tx: mpsc::Sender<Claimed>,
) {
    for pass in [Pass::Plain, Pass::References] {
        let mut cursor = None;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let page = match queue.claim(pass, cursor, page_size).await {
                Ok(mut page) => {
                    if pass == Pass::References
                        && let Err(e) = queue.resolve_references(&mut page.exports).await
                    {
                        let _ = tx.send(Claimed::Failed(e)).await;
                        return;
                    }
                    page
                }
                Err(e) => {
                    let _ = tx.send(Claimed::Failed(e)).await;
                    return;
                }
            };
            let last = page.is_last();
            cursor = page.cursor.or(cursor);
            if tx.send(Claimed::Page(page)).await.is_err() {
                return;
            }
            if last {
                break;
            }
        }
    }
}

/// Renews the lease of every held row every third of the lease, and at once when a write found its
/// window closed, until `stop` fires. A renewal that fails (the database does not answer) is tried
/// again with backoff; meanwhile the fences close once two thirds of the lease have passed, so the
/// directory writes nothing another engine could be writing too.
async fn renew_leases(
    queue: Arc<ExportQueue>,
    lease: Duration,
    stop: CancellationToken,
    log: Logger,
) {
    let period = (lease / 3).max(Duration::from_secs(1));
    let board = queue.lease_board();
    let mut next = tokio::time::Instant::now() + period;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = board.renewal_wanted() => {}
        }
        match queue.renew_leases().await {
            Ok(renewal) => {
                if failures > 0 {
                    log.info("lease renewal works again".into());
                }
                failures = 0;
                if !renewal.lost.is_empty() {
                    log.warn(format!(
                        "{} claimed row(s) were taken over by another engine after this run's lease ran out; they are not written again",
                        renewal.lost.len()
                    ));
                }
                next = tokio::time::Instant::now() + period;
            }
            Err(e) => {
                failures += 1;
                let delay = Duration::from_millis(250 * u64::from(failures.min(8)));
                if failures == 1 {
                    log.warn(format!("lease renewal failed ({e}); trying again"));
                }
                next = tokio::time::Instant::now() + delay.min(period);
            }
        }
    }
}

/// Whether an anchor belongs to another object of the system: the last evidence a re-attempted
/// Create checks before adopting an existing entry.
struct OtherHolders {
    queue: Arc<ExportQueue>,
    own: Option<Uuid>,
}

impl AnchorRegistry for OtherHolders {
    fn other_holder<'a>(
        &'a self,
        anchor: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Option<Uuid>, String>> + Send + 'a,
        >,
    > {
        Box::pin(async move {
            self.queue
                .anchor_holder(anchor, self.own)
                .await
                .map_err(|e| e.to_string())
        })
    }
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

/// A flush handed to the persist task, and what came back.
type FlushDone = (Vec<ExportOutcome>, Result<PersistReport>);

/// The run's state, owned by one task: no locks on the hot path.
struct Coordinator {
    queue: Arc<ExportQueue>,
    schema: Arc<SystemSchema>,
    planner: Planner,
    /// The directory, for sampling the operations in flight.
    directory: Directory,
    handling: UnresolvedReferenceHandling,
    listener: Arc<dyn RunListener>,
    log: Logger,
    connected_system_name: String,
    flush_size: usize,
    page_size: usize,
    flush_interval: Duration,
    /// Most exports held between claim and outcome (ready, waiting, or in the directory).
    max_held: usize,
    /// Claimed exports not yet given an outcome, by id.
    held: HashMap<Uuid, ClaimedExport>,
    /// Planned jobs waiting for the directory.
    ready: VecDeque<ExportJob>,
    deps: Dependencies,
    buffer: Vec<ExportOutcome>,
    buffer_since: Option<Instant>,
    flushes: JoinSet<FlushDone>,
    sequence: u64,
    counters: Counters,
    progress: ProgressState,
    dispatched: u64,
    completed: u64,
    first_write: Option<Duration>,
    flush_count: u64,
    t0: Instant,
    total: u64,
    phase: ExportPhase,
    in_flight_samples: (u64, u64),
    /// Stops the run when the directory has gone away (see `super::breaker`).
    breaker: Breaker,
    /// Held exports to return to the queue unsent at the next turn of the loop.
    waiting_release: Vec<Uuid>,
    /// Exports completed plus flushes persisted, and when that number last moved.
    stall: (u64, Instant),
    /// Fires with the breaker: the directory starts no more exports.
    stop_directory: CancellationToken,
    /// Exports the directory handed back unstarted.
    not_started: u64,
    fatal: Option<Error>,
}

impl Coordinator {
    /// Runs the loop until every claimed export has an outcome and every flush is persisted. Returns
    /// true when the run was cancelled.
    async fn drive(
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
            let idle = !claims_open && self.held.is_empty() && self.ready.is_empty();
            if idle {
                // Nothing left to send: let the directory finish and close its result channel.
                jobs = None;
                self.flush(true).await;
                if self.flushes.is_empty() {
                    break;
                }
            }
            let can_claim =
                claims_open && self.held.len() + self.queue_page_hint() <= self.max_held;
            tokio::select! {
                biased;
                Some(result) = results.recv() => self.on_result(result),
                Some(done) = self.flushes.join_next(), if !self.flushes.is_empty() => self.on_flushed(done),
                Some(permit) = reserve(&jobs), if !self.ready.is_empty() && !cancelled => {
                    match permit {
                        Ok(permit) => {
                            if let Some(job) = self.ready.pop_front() {
                                if self.first_write.is_none() {
                                    self.first_write = Some(self.t0.elapsed());
                                }
                                self.dispatched += 1;
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
                    self.sample_in_flight();
                    self.flush(false).await;
                    let in_flight = self.directory.in_flight() as u32;
                    let limit = self.directory.in_flight_limit() as u32;
                    let phase = self.phase;
                    self.progress.maybe_emit(&*self.listener, phase, (in_flight, limit), &self.counters);
                }
            }
            if !self.waiting_release.is_empty() {
                let ids = std::mem::take(&mut self.waiting_release);
                self.release(&ids).await;
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
        }
        self.flush(true).await;
        while let Some(done) = self.flushes.join_next().await {
            self.on_flushed(done);
        }
        cancelled
    }

    /// Logs what the run still waits for when nothing has completed for a while (once per interval):
    /// the first thing an operator looks at when a run seems stuck.
    fn report_stall(&mut self, claims_open: bool) {
        let done = self.completed + self.flush_count;
        if done != self.stall.0 {
            self.stall = (done, Instant::now());
            return;
        }
        if self.stall.1.elapsed() >= STALL_REPORT_AFTER {
            self.stall.1 = Instant::now();
            self.log.warn(format!(
                "no export has completed for {} s: {} held ({} ready, {} waiting for Creates), {} in \
                 the directory, {} outcome(s) to persist, {} flush(es) in progress, claiming {}",
                STALL_REPORT_AFTER.as_secs(),
                self.held.len(),
                self.ready.len(),
                self.deps.waiting_count(),
                self.directory.in_flight(),
                self.buffer.len(),
                self.flushes.len(),
                if claims_open { "open" } else { "done" }
            ));
        }
    }

    fn queue_page_hint(&self) -> usize {
        self.page_size
    }

    fn sample_in_flight(&mut self) {
        let n = self.directory.in_flight() as u64;
        if n > 0 {
            self.in_flight_samples.0 += 1;
            self.in_flight_samples.1 += n;
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
        ids.extend(self.deps.drain_waiting());
        for id in &ids {
            self.held.remove(id);
        }
        self.release(&ids).await;
    }

    /// True once the run stopped because the database does not answer: what it still holds goes
    /// back to the queue in the background, as soon as the database answers (see `pass`).
    fn database_gone(&self) -> bool {
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
        // Register every Create of the page first, so an export naming an object created later in the
        // same page still waits for it.
        for e in &page.exports {
            if e.export.change_type == PendingExportChangeType::Create
                && let Some(cso) = e.export.connected_system_object_id
            {
                self.deps.create_claimed(cso);
            }
        }
        for claimed in page.exports {
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
            self.release_waiters(created_cso(&claimed));
            return;
        }
        if claimed.export.writable_changes().next().is_none()
            && claimed.export.has_unresolved_changes()
        {
            // Nothing can be written now: JIM's "deferred whole".
            self.complete(ExportOutcome::deferred(claimed));
            return;
        }
        let named: HashSet<Uuid> = claimed
            .export
            .writable_changes()
            .filter_map(|c| c.resolved_reference_cso_id)
            .filter(|cso| Some(*cso) != claimed.export.connected_system_object_id)
            .collect();
        let own_create = (claimed.export.change_type == PendingExportChangeType::Create)
            .then_some(claimed.export.connected_system_object_id)
            .flatten();
        match self.deps.readiness_for(named, own_create) {
            Readiness::Ready => {
                self.plan(&claimed);
                self.held.insert(id, claimed);
            }
            Readiness::Wait(on) => {
                self.deps.wait(id, own_create, on);
                self.held.insert(id, claimed);
            }
            Readiness::DependencyFailed => self.complete(ExportOutcome::deferred(claimed)),
        }
    }

    /// Plans an export and queues it for the directory, fenced by its row's lease.
    fn plan(&mut self, claimed: &ClaimedExport) {
        let export = &claimed.export;
        let plan = super::planning::plan(&self.planner, &self.schema, claimed);
        // A row whose earlier attempt may have reached the directory (the engine's mark on it, a
        // crashed run's stale claim, a last attempt that ended not knowing what the directory
        // applied) may already be (partly) in the directory.
        let unknown_before = export
            .last_error_message
            .as_deref()
            .is_some_and(|m| m.contains(OUTCOME_UNKNOWN_NOTE));
        let recovery = Recovery {
            first_attempt_at: claimed.first_attempt_at,
            anchors: (export.change_type == PendingExportChangeType::Create).then(|| {
                Arc::new(OtherHolders {
                    queue: self.queue.clone(),
                    own: export.connected_system_object_id,
                }) as Arc<dyn AnchorRegistry>
            }),
        };
        let mut job = ExportJob::new(export.id, plan)
            .reattempt(claimed.re_attempt || unknown_before)
            .recovery(recovery);
        if let Some(fence) = self.queue.fence(export.id) {
            job = job.fenced_by(fence);
        }
        self.ready.push_back(job);
    }

    fn on_result(&mut self, result: DirectoryResult) {
        self.completed += 1;
        let Some(claimed) = self.held.remove(&result.export_id) else {
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
            self.release_waiters(created_cso(&claimed));
            return;
        }
        let Some(outcome) = to_outcome(claimed, result) else {
            // The run is stopping and this export never began: the queue still holds its claim,
            // which the end of the pass returns as it was. So do the exports waiting for it.
            for id in self.deps.drain_waiting() {
                self.held.remove(&id);
            }
            self.not_started += 1;
            return;
        };
        if let ExportResult::Failed(f) = &outcome.result {
            self.log.debug(format!(
                "pending export {} failed: {}",
                outcome.pending_export_id(),
                f.message
            ));
        }
        self.complete(outcome);
    }

    /// A Create that will have no outcome in this run (its row was fenced off): the exports waiting
    /// for its object go back to the queue unsent, to be tried again once it exists; a Create among
    /// them releases its own waiters the same way, down the chain.
    fn release_waiters(&mut self, create: Option<Uuid>) {
        let mut creates = Vec::from_iter(create);
        while let Some(cso) = creates.pop() {
            let released = self.deps.create_completed(cso, false);
            for id in released.ready.into_iter().chain(released.failed) {
                if let Some(waiter) = self.held.remove(&id) {
                    creates.extend(created_cso(&waiter));
                    self.waiting_release.push(id);
                }
            }
        }
    }

    /// Adds an outcome to the flush buffer. When it ends a Create of this run, the exports waiting for
    /// that object are released: planned if the object exists now, deferred if not (and so on down
    /// the chain, since a deferred Create releases its own waiters the same way).
    fn complete(&mut self, outcome: ExportOutcome) {
        let mut work = vec![outcome];
        while let Some(outcome) = work.pop() {
            let export = &outcome.export.export;
            let created = (export.change_type == PendingExportChangeType::Create)
                .then_some(export.connected_system_object_id)
                .flatten();
            let exists = match &outcome.result {
                ExportResult::Succeeded(_) => true,
                ExportResult::Failed(f) => f.progress.object_exists,
                ExportResult::Deferred => false,
            };
            if self.buffer.is_empty() {
                self.buffer_since = Some(Instant::now());
            }
            self.buffer.push(outcome);
            let Some(cso) = created else { continue };
            let released = self.deps.create_completed(cso, exists);
            for id in released.ready {
                if let Some(claimed) = self.held.remove(&id) {
                    self.plan(&claimed);
                    self.held.insert(id, claimed);
                }
            }
            for id in released.failed {
                if let Some(claimed) = self.held.remove(&id) {
                    self.log.debug(format!("pending export {id} deferred: an object it names was not created in this run"));
                    work.push(ExportOutcome::deferred(claimed));
                }
            }
        }
    }

    /// Hands the buffer to a persist task when it is full, old enough, or `force`d.
    async fn flush(&mut self, force: bool) {
        if self.database_gone() {
            // Nothing more can be written; the rows go back to the queue with their marks.
            self.buffer.clear();
            self.flushes.abort_all();
            return;
        }
        while self.buffer.len() >= self.flush_size
            || (!self.buffer.is_empty()
                && (force
                    || self
                        .buffer_since
                        .is_some_and(|t| t.elapsed() >= self.flush_interval)))
        {
            while self.flushes.len() >= MAX_FLUSHES_IN_FLIGHT {
                if let Some(done) = self.flushes.join_next().await {
                    self.on_flushed(done);
                }
            }
            let n = self.buffer.len().min(self.flush_size);
            let outcomes: Vec<ExportOutcome> = self.buffer.drain(..n).collect();
            self.buffer_since = if self.buffer.is_empty() {
                None
            } else {
                Some(Instant::now())
            };
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
        self.flush_count += 1;
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
            &self.connected_system_name,
        ));
    }

    fn emit_batch(&mut self, items: Vec<crate::report::ReportItem>) {
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

/// The CSO a claimed Create creates.
fn created_cso(claimed: &ClaimedExport) -> Option<Uuid> {
    let export = &claimed.export;
    (export.change_type == PendingExportChangeType::Create)
        .then_some(export.connected_system_object_id)
        .flatten()
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
                result: ExportResult::Succeeded(Success {
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
            result: ExportResult::Failed(Failure {
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

/// Progress events at a bounded rate.
struct ProgressState {
    throttle: ProgressThrottle,
    connected_system_id: i32,
    total: u64,
    t0: Instant,
}

impl ProgressState {
    fn new(
        options: &crate::config::RunOptions,
        connected_system_id: i32,
        total: u64,
        t0: Instant,
    ) -> Self {
        Self {
            throttle: ProgressThrottle::new(Duration::from_millis(options.progress_interval_ms)),
            connected_system_id,
            total,
            t0,
        }
    }

    fn maybe_emit(
        &mut self,
        listener: &dyn RunListener,
        phase: ExportPhase,
        (in_flight, limit): (u32, u32),
        counters: &Counters,
    ) {
        if self.throttle.allow(phase, Instant::now()) {
            let message = match phase {
                ExportPhase::ResolvingReferences => "Exporting reference-bearing exports",
                _ => "Exporting",
            };
            self.send(listener, phase, in_flight, limit, message, counters);
        }
    }

    fn emit(
        &mut self,
        listener: &dyn RunListener,
        phase: ExportPhase,
        in_flight: u32,
        limit: u32,
        message: &str,
        counters: &Counters,
    ) {
        self.throttle.allow(phase, Instant::now());
        self.send(listener, phase, in_flight, limit, message, counters);
    }

    fn send(
        &self,
        listener: &dyn RunListener,
        phase: ExportPhase,
        in_flight: u32,
        limit: u32,
        message: &str,
        counters: &Counters,
    ) {
        let elapsed = self.t0.elapsed();
        let processed = counters.processed();
        listener.on_progress(&ProgressEvent {
            connected_system_id: self.connected_system_id,
            phase,
            total: self.total.max(processed),
            processed,
            succeeded: counters.succeeded,
            failed: counters.failed,
            deferred: counters.deferred,
            rate: if elapsed.as_secs_f64() > 0.0 {
                processed as f64 / elapsed.as_secs_f64()
            } else {
                0.0
            },
            in_flight,
            in_flight_limit: limit,
            elapsed_ms: elapsed.as_millis() as u64,
            message: message.to_string(),
        });
    }
}
