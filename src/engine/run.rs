//! One export run: claim → resolve → plan → execute → persist → report, streaming, with bounded
//! queues between the stages and no barrier between batches.
//!
//! Tasks: a **claimer** (`super::claimer`) claims pages (plain exports first, then reference-bearing
//! ones, whose references it resolves in one query per page) into a small bounded channel; the
//! **coordinator** (`super::coordinator`) plans each export, holds those that name an object whose
//! Create is still in flight, feeds the directory, collects results into flushes and hands each flush
//! to a **persist** task (at most three at once); the **directory** runs many exports at once over its
//! pool; a **lease** task (`super::lease`) renews the rows the run holds. Memory is bounded by the
//! claim channel, the held exports, the flushes in flight and the full flush allowed to wait behind
//! them (`coordinator::FLUSH_BACKLOG`), whatever the queue size.
//!
//! [`pass`] is that pipeline over an open queue and an already connected directory, which it leaves
//! open: a run connects, makes one pass and closes; a watch (`super::watch`) keeps the directory and
//! makes a pass whenever something is due. This module starts the tasks, waits for them and hands
//! what they measured to `crate::report` for the result.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use super::admission::Admission;
use super::breaker::{Breaker, UNANSWERED_EXPORTS_TO_STOP};
use super::claimer::{Claimed, claim_pages};
use super::coordinator::Coordinator;
use super::flush::{FLUSH_WEIGHT_PER_EXPORT, FlushBuffer};
use super::learned::LearnedLimits;
use super::lease::renew_leases;
use super::log::Logger;
use super::metrics::{PassMeter, directory_stats_since};
use super::progress::ProgressState;
use super::{CancellationToken, RunListener};
use crate::config::{DirectoryConfig, ExportRequest};
use crate::directory::{Directory, DirectoryTuning, ExportJob, ExportResult as DirectoryResult};
use crate::error::{Error, Result};
use crate::model::ExportPhase;
use crate::plan::Planner;
use crate::report::{Counters, PassFigures, RunResult, pass_message};
use crate::store::{ClaimedPage, ExportQueue, Pass, Store};

/// Runs one export (see [`crate::engine::Engine::run_export`]).
pub(crate) async fn run(
    store: Store,
    request: &ExportRequest,
    listener: Arc<dyn RunListener>,
    cancel: CancellationToken,
    database_unverified: bool,
    limits: &LearnedLimits,
) -> Result<RunResult> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let options = &request.options;
    warn_about_transport(&Logger::new(listener.clone()), request, database_unverified);
    let prepare = async {
        let queue = Arc::new(store.open(request.connected_system_id, options).await?);
        let start = PassStart::begin(&queue, request, &listener, started_at, t0).await?;
        Ok((queue, start))
    };
    let tuning = limits.tuning(
        &request.directory,
        DirectoryTuning::from_run_options(options),
    );
    // The directory failed: the first page goes back to the queue as it was.
    let give_back =
        async |(queue, _): (Arc<ExportQueue>, PassStart)| give_back(&queue, false).await;
    let ((queue, start), directory) =
        prepare_beside_connect(prepare, &request.directory, tuning, give_back).await?;
    let outcome = pass(queue, &directory, request, listener, cancel, start).await;
    if outcome.is_ok() {
        limits.remember(&request.directory, &directory);
    }
    directory.close().await;
    outcome.map(|done| done.result)
}

/// Runs the database's side of a start (`prepare`: the queue's schema, the count of what is due, the
/// first page) and connects the directory at the same time. The two do not depend on each other, so
/// a start waits for the slower rather than for their sum (a bind, the root DSE and "Who am I?" are
/// round trips to a distant DC; opening the queue is several statements). A database failure is what
/// is reported, as soon as it happens, whatever the directory is doing (a connection in progress is
/// dropped, one already made is closed); the directory's failure is reported once the database's
/// side is ready, as when the two ran one after the other, after `undo` has been given what the
/// database's side prepared.
pub(crate) async fn prepare_beside_connect<T>(
    prepare: impl Future<Output = Result<T>>,
    config: &DirectoryConfig,
    tuning: DirectoryTuning,
    undo: impl AsyncFnOnce(T),
) -> Result<(T, Directory)> {
    let connect = Directory::connect_with(config, tuning);
    tokio::pin!(prepare, connect);
    let mut connected = None;
    let prepared = tokio::select! {
        prepared = &mut prepare => prepared,
        c = &mut connect => {
            connected = Some(c);
            prepare.await
        }
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            if let Some(Ok(directory)) = connected {
                directory.close().await;
            }
            return Err(e);
        }
    };
    let connected = match connected {
        Some(c) => c,
        None => connect.await,
    };
    match connected {
        Ok(directory) => Ok((prepared, directory)),
        Err(e) => {
            undo(prepared).await;
            Err(e.into())
        }
    }
}

/// Returns what `queue` holds to the queue (a start that went no further). When the database does
/// not answer, or `claim_failed` (a claim whose answer was lost may have marked rows the run does
/// not know it holds), the store does it in the background as soon as the database answers.
async fn give_back(queue: &ExportQueue, claim_failed: bool) {
    if claim_failed || queue.release_all().await.is_err() {
        queue.release_all_later();
    }
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

/// What a pass over the queue starts from: the run's clock, the rows due when it started, the first
/// page when it was claimed already, and the state that carries from one pass to the next in a watch.
pub(crate) struct PassStart {
    started_at: chrono::DateTime<Utc>,
    t0: Instant,
    total: u64,
    /// The plain pass's first page, claimed beside the count.
    first_page: Option<ClaimedPage>,
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
    /// Counts what is due and claims the plain pass's first page at the same time, then announces
    /// the start. The count reads every row of the system (13-23 ms in a follow-up round after an
    /// initial one, 470 ms at 1,000,000 queued) and held the first claim back by as much;
    /// [`ExportQueue::count_due`] counts the rows the claim takes whichever happens first. When
    /// either fails, what the claim took goes back to the queue.
    pub(crate) async fn begin(
        queue: &ExportQueue,
        request: &ExportRequest,
        listener: &Arc<dyn RunListener>,
        started_at: chrono::DateTime<Utc>,
        t0: Instant,
    ) -> Result<PassStart> {
        let (total, first) = tokio::join!(
            queue.count_due(),
            queue.claim(Pass::Plain, None, request.options.page_size)
        );
        let error = match (total, first) {
            (Ok(total), Ok(first)) => {
                let mut start = Self::announce(queue, request, listener, started_at, t0, total);
                start.first_page = Some(first);
                return Ok(start);
            }
            (Err(e), first) => {
                give_back(queue, first.is_err()).await;
                e
            }
            (Ok(_), Err(e)) => {
                give_back(queue, true).await;
                e
            }
        };
        Err(error)
    }

    /// Logs the start of a pass over `total` due exports and reports the `Preparing` phase.
    fn announce(
        queue: &ExportQueue,
        request: &ExportRequest,
        listener: &Arc<dyn RunListener>,
        started_at: chrono::DateTime<Utc>,
        t0: Instant,
        total: u64,
    ) -> PassStart {
        let log = Logger::new(listener.clone());
        let schema = queue.schema();
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
        PassStart {
            started_at,
            t0,
            total,
            first_page: None,
            progress,
            log,
            sequence: 0,
            statements_base: 0,
            directory_base: None,
            containers_base: 0,
        }
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
        first_page,
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
        claim_pages(
            queue.clone(),
            options.page_size,
            first_page,
            cancel.clone(),
            claim_tx,
        )
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

    let links_follow = planner.dialect().links_follow_renames();
    let mut coordinator = Coordinator {
        queue: queue.clone(),
        schema: schema.clone(),
        planner,
        directory: directory.clone(),
        handling,
        listener: listener.clone(),
        log: log.clone(),
        page_size: options.page_size.max(1) as usize,
        admission: Admission::new((options.page_size as usize) * 4 + max_active, links_follow),
        ready: VecDeque::new(),
        buffer: FlushBuffer::new(
            options.flush_size.max(1) as usize,
            (options.flush_size.max(1) as usize).saturating_mul(FLUSH_WEIGHT_PER_EXPORT),
            Duration::from_millis(options.flush_interval_ms),
        ),
        flushes: JoinSet::new(),
        sequence,
        counters: Counters::default(),
        progress,
        meter: PassMeter::new(t0, Instant::now()),
        t0,
        total,
        phase: ExportPhase::Executing,
        breaker: Breaker::new(UNANSWERED_EXPORTS_TO_STOP),
        stop_directory: stop_directory.clone(),
        not_started: 0,
        fatal: None,
    };
    // A cancel that lands before the coordinator sees it (the claimer stops first) still counts.
    let cancelled = coordinator
        .drive(claim_rx, job_tx, result_rx, &cancel)
        .await
        || cancel.is_cancelled();

    if coordinator.database_gone() {
        // A claim still retrying would only wait out another retry window; rows it may have marked
        // are returned with the rest (by the run's mark).
        claimer.abort();
    }
    let _ = claimer.await;
    let _ = runner.await;
    lease_guard.cancel();
    let _ = lease_task.await;
    let stats = directory_stats_since(directory.stats(), directory_base);
    let mut created_containers = directory.created_containers();
    created_containers.drain(..containers_base.min(created_containers.len()));

    // Whatever the run still holds (cancellation, a failure) goes back to the status it had; a row
    // the directory may have seen keeps the mark that makes its next attempt a re-attempt. When the
    // database is what stopped the run, the store returns them as soon as it answers again.
    let returned = if coordinator.database_gone() {
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
    let message = pass_message(&coordinator.counters, elapsed, cancelled);
    log.info(message.clone());
    coordinator.progress.emit(
        &*listener,
        ExportPhase::Completed,
        0,
        directory.in_flight_limit() as u32,
        &message,
        &coordinator.counters,
    );
    let result = PassFigures {
        connected_system_id: schema.connected_system_id,
        started_at,
        total,
        counters: coordinator.counters.clone(),
        created_containers,
        cancelled,
        message,
        dialect: directory.dialect(),
        directory: stats,
        sql_statements: queue.statements().saturating_sub(statements_base),
        flushes: coordinator.meter.flushes(),
        elapsed,
        first_write: coordinator.meter.first_write(),
    }
    .into_result(Utc::now());
    Ok(PassDone {
        result,
        sequence: coordinator.sequence,
    })
}
