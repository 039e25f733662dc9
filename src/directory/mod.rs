//! **directory**: runs planned exports against an LDAP directory (ldap3), pipelined over several
//! connections.
//!
//! [`Directory::connect`] opens the first connection (URLs tried in order; simple bind or SASL
//! EXTERNAL; ldaps or StartTLS verified against the system roots or a given CA), reads the root DSE to
//! learn the [dialect](DirectoryProfile) and whether post-read is available, and sizes the pool from
//! the run options or the dialect's defaults. Then:
//!
//! - [`Directory::execute`] runs one [`ExportJob`]: its operations strictly in order, each under the
//!   pool's bounds (per connection, in total, optional ops/s), with transient conditions retried in
//!   the run and partial progress reported in the [`ExportResult`];
//! - [`Directory::run`] takes jobs from a channel and sends each result as soon as its export
//!   completes, many exports at once and no batch barrier; [`Directory::execute_all`] does the same
//!   for a batch, returning results in input order.
//!
//! Result codes are read in one place, [`classify`].

pub mod classify;
pub mod dialect;
pub mod entry;
pub mod evidence;
mod execute;
pub mod latency;
pub mod limit;
mod pool;
mod rate;
mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Concurrency, Dialect, DirectoryConfig, RunOptions};
use crate::model::ConnectedSystemExportErrorType;
use crate::plan::{ExportPlan, PlanFailure, ValueSubstitution};

pub use crate::fence::{Fence, Fenced};
pub use dialect::{DirectoryProfile, RootDse, concurrency_defaults};

/// Appended to the message of an export that gave up after an operation whose outcome is unknown (a
/// timeout, or a connection lost after sending). The message is stored as `LastErrorMessage`, and the
/// engine treats the next attempt of such an export as a re-attempt: it reads the directory first and
/// adopts what the earlier attempt already wrote, instead of failing on it.
pub const OUTCOME_UNKNOWN_NOTE: &str =
    "[outcome unknown: the next attempt reads the directory first]";
pub use entry::RawEntry;
pub use latency::ExportLatency;
pub use rate::RateLimiter;

/// A condition that stops the run: nobody answers, the bind or TLS is refused. Messages name the URL
/// and the bind DN, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// No URL could be reached, or (from a run) the directory stopped answering mid-run.
    #[error("cannot reach the directory: {0}")]
    Connect(String),
    /// The directory refused the bind.
    #[error("{0}")]
    Bind(String),
    /// TLS could not be set up or the server's certificate was refused.
    #[error("{0}")]
    Tls(String),
}

/// How hard to drive the directory. `None` fields take the dialect's defaults
/// ([`concurrency_defaults`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTuning {
    /// Connections.
    pub connections: Option<u32>,
    /// Outstanding operations per connection.
    pub in_flight_per_connection: Option<u32>,
    /// Outstanding operations over all connections: the limit with [`Concurrency::Fixed`]
    /// (connections × per connection when absent); the ceiling with [`Concurrency::Adaptive`]
    /// (connections × per connection when that is given, else four times the dialect's default,
    /// at most 256).
    pub max_in_flight: Option<u32>,
    /// Whether the in-flight limit adapts to the directory's pace or stays fixed.
    pub concurrency: Concurrency,
    /// The adaptive limit's floor (default 1).
    pub min_in_flight: Option<u32>,
    /// Where the adaptive limit starts (default: connections × per connection, within the bounds).
    pub initial_in_flight: Option<u32>,
    /// Cap on operations per second.
    pub ops_per_second: Option<u32>,
    /// In-run retries of an operation that met a transient condition.
    pub max_operation_retries: u32,
    /// The first retry's delay; it doubles with each further retry (capped at 5 s).
    pub retry_backoff: Duration,
    /// Read anchors back through RFC 4527 post-read when the server advertises it (else a base
    /// search after the Add).
    pub use_post_read: bool,
    /// Exports in progress at once in [`Directory::run`] and [`Directory::execute_all`] (default:
    /// twice the operations in flight, so that every free slot finds work).
    pub max_active_exports: Option<usize>,
    /// How far the directory's clock may be behind the database's when a re-attempt judges whether an
    /// existing entry was created after the export's first attempt (see [`evidence`]).
    pub clock_skew: Duration,
}

impl Default for DirectoryTuning {
    fn default() -> Self {
        Self {
            connections: None,
            in_flight_per_connection: None,
            max_in_flight: None,
            concurrency: Concurrency::default(),
            min_in_flight: None,
            initial_in_flight: None,
            ops_per_second: None,
            max_operation_retries: 3,
            retry_backoff: Duration::from_millis(250),
            use_post_read: true,
            max_active_exports: None,
            clock_skew: Duration::from_secs(crate::config::DEFAULT_CLOCK_SKEW_SECONDS),
        }
    }
}

impl DirectoryTuning {
    /// The tuning a run's options ask for.
    pub fn from_run_options(options: &RunOptions) -> Self {
        Self {
            connections: options.connections,
            in_flight_per_connection: options.in_flight_per_connection,
            max_in_flight: options.max_in_flight,
            concurrency: options.effective_concurrency(),
            min_in_flight: options.min_in_flight,
            ops_per_second: options.ops_per_second,
            max_operation_retries: options.max_operation_retries,
            clock_skew: Duration::from_secs(options.clock_skew_seconds),
            ..Self::default()
        }
    }
}

/// Answers whether an anchor value (as JIM stores it) belongs to a connected system object other than
/// the export's own: the last check before a re-attempt adopts an existing entry ([`evidence`]).
pub trait AnchorRegistry: Send + Sync {
    /// The other object holding `anchor`, if any; `Err` when that cannot be told now (the database
    /// does not answer).
    fn other_holder<'a>(
        &'a self,
        anchor: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Uuid>, String>> + Send + 'a>>;
}

/// What a re-attempt needs to judge an entry it finds where its Create goes.
#[derive(Clone, Default)]
pub struct Recovery {
    /// The claim time of the first attempt that may have reached the directory.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// Who holds an anchor; without one, the anchor check is skipped.
    pub anchors: Option<Arc<dyn AnchorRegistry>>,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("first_attempt_at", &self.first_attempt_at)
            .field("anchors", &self.anchors.is_some())
            .finish()
    }
}

/// One export for the directory to run.
#[derive(Debug, Clone)]
pub struct ExportJob {
    /// The pending export's id.
    pub export_id: Uuid,
    /// Its plan, or why it could not be planned (reported without any LDAP call).
    pub plan: Result<ExportPlan, PlanFailure>,
    /// True when an earlier attempt may have written part of it: an Add that meets an entry the
    /// evidence shows to be that earlier write adopts it instead of failing ([`evidence`]).
    pub reattempt: bool,
    /// What the re-attempt judges an existing entry with.
    pub recovery: Recovery,
    /// The run's right to write the export; none means unbounded (no lease).
    pub fence: Option<Fence>,
}

impl ExportJob {
    /// A job from a plan (or a planning failure) for `export_id`.
    pub fn new(export_id: Uuid, plan: Result<ExportPlan, PlanFailure>) -> Self {
        Self {
            export_id,
            plan,
            reattempt: false,
            recovery: Recovery::default(),
            fence: None,
        }
    }

    /// Marks the job as a re-attempt.
    pub fn reattempt(mut self, reattempt: bool) -> Self {
        self.reattempt = reattempt;
        self
    }

    /// Sets what a re-attempt judges an existing entry with.
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = recovery;
        self
    }

    /// Fences the job's writes by its row's lease.
    pub fn fenced_by(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }
}

impl From<ExportPlan> for ExportJob {
    fn from(plan: ExportPlan) -> Self {
        Self::new(plan.export_id, Ok(plan))
    }
}

/// How an export ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportStatus {
    /// Every operation was applied (or already held).
    Succeeded,
    /// An operation failed; later ones were not sent.
    Failed {
        /// JIM's error type.
        error_type: ConnectedSystemExportErrorType,
        /// What failed, with the server's diagnostic text.
        message: String,
    },
    /// The run stopped (see [`Directory::run_until`]) before this export sent anything that could
    /// have taken effect: it goes back to the queue as it was, no attempt counted.
    NotStarted,
    /// The run lost its lease on the row (another engine holds it now), or could not confirm it before
    /// stopping: nothing more was written, and the outcome is not persisted. `began` says whether
    /// anything this export sent may have taken effect.
    Fenced {
        /// Why the write was refused.
        why: Fenced,
        /// Something this export sent may have taken effect.
        began: bool,
    },
}

/// What happened to one export: JIM's result fields plus what was done before a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportResult {
    /// The pending export's id.
    pub export_id: Uuid,
    /// Success or failure.
    pub status: ExportStatus,
    /// The anchor read back after a Create (JIM's `ExternalId`): set whenever the entry exists, even
    /// when a later operation failed; `None` when the read-back found nothing.
    pub external_id: Option<String>,
    /// The DN (JIM's `SecondaryExternalId`): the DN of a created entry, or the new DN after a
    /// ModifyDN, even when a later operation failed.
    pub secondary_external_id: Option<String>,
    /// True when this export's entry now exists because of it (its Add succeeded or was adopted), so
    /// a failed Create is continued as an Update rather than retried as a Create.
    pub entry_created: bool,
    /// True when an existing entry was adopted on a re-attempt.
    pub adopted: bool,
    /// The attribute changes now in the directory (all of the plan's on success; those of the
    /// completed operations on failure).
    pub written_change_ids: Vec<Uuid>,
    /// Values written instead of the staged ones (JIM's protected defaults), for the changes written.
    pub substitutions: Vec<ValueSubstitution>,
    /// Parent containers this export created.
    pub containers_created: Vec<String>,
    /// LDAP operations sent for this export, reads and retries included.
    pub operations: u32,
    /// In-run retries.
    pub retries: u32,
    /// True when it failed because the directory gave no answer (no connection, lost connections,
    /// timeouts) through every retry: a sign that the directory is down rather than that this export
    /// is wrong.
    pub no_answer: bool,
    /// Things worth logging (from planning and execution).
    pub warnings: Vec<String>,
}

impl ExportResult {
    fn new(export_id: Uuid) -> Self {
        Self {
            export_id,
            status: ExportStatus::Succeeded,
            external_id: None,
            secondary_external_id: None,
            entry_created: false,
            adopted: false,
            written_change_ids: Vec::new(),
            substitutions: Vec::new(),
            containers_created: Vec::new(),
            operations: 0,
            retries: 0,
            no_answer: false,
            warnings: Vec::new(),
        }
    }

    /// A failure without any LDAP call (planning failed, or the task running it died).
    pub fn failed(
        export_id: Uuid,
        error_type: ConnectedSystemExportErrorType,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status: ExportStatus::Failed {
                error_type,
                message: message.into(),
            },
            ..Self::new(export_id)
        }
    }

    /// An export the run stopped before it began.
    pub fn not_started(export_id: Uuid) -> Self {
        Self {
            status: ExportStatus::NotStarted,
            ..Self::new(export_id)
        }
    }

    /// True on success.
    pub fn is_success(&self) -> bool {
        self.status == ExportStatus::Succeeded
    }

    /// The error type of a failure.
    pub fn error_type(&self) -> Option<ConnectedSystemExportErrorType> {
        match &self.status {
            ExportStatus::Failed { error_type, .. } => Some(*error_type),
            _ => None,
        }
    }

    /// The message of a failure.
    pub fn error_message(&self) -> Option<&str> {
        match &self.status {
            ExportStatus::Failed { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Counters over the directory's lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryStats {
    /// Adds sent (containers included).
    pub adds: u64,
    /// Modifies sent.
    pub modifies: u64,
    /// ModifyDNs sent.
    pub modify_dns: u64,
    /// Deletes sent.
    pub deletes: u64,
    /// Base-scope reads sent.
    pub searches: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connections found dead and replaced.
    pub lost_connections: u64,
    /// In-run retries.
    pub retries: u64,
    /// The most operations in flight at once.
    pub peak_in_flight: u64,
    /// The in-flight limit now (and how it moved, when it adapts).
    pub in_flight_limit: limit::LimitStats,
    /// Each export's time from the start of its execution to its result, for exports run by
    /// [`Directory::run`] and [`Directory::execute_all`].
    pub export_latency: ExportLatency,
}

impl DirectoryStats {
    /// Every operation sent.
    pub fn operations(&self) -> u64 {
        self.adds + self.modifies + self.modify_dns + self.deletes + self.searches
    }
}

/// The ceiling of an adaptive limit when none is configured, as a multiple of the dialect's
/// default: room to grow where a directory is faster (or farther) than its defaults assume.
const ADAPTIVE_HEADROOM: u32 = 4;
/// The highest default ceiling of an adaptive limit.
const ADAPTIVE_DEFAULT_CEILING: u32 = 256;

/// How the pool is sized from the tuning and the dialect's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sizing {
    connections: u32,
    per_connection: u32,
    /// The fixed limit, or the adaptive ceiling.
    max_in_flight: u32,
    adaptive: Option<limit::LimitBounds>,
}

impl Sizing {
    fn new(tuning: &DirectoryTuning, profile: &DirectoryProfile) -> Self {
        let connections = tuning.connections.unwrap_or(profile.connections).max(1);
        let per_connection = tuning
            .in_flight_per_connection
            .unwrap_or(profile.in_flight_per_connection)
            .max(1);
        let start = connections.saturating_mul(per_connection);
        match tuning.concurrency {
            Concurrency::Fixed => Self {
                connections,
                per_connection,
                max_in_flight: tuning.max_in_flight.unwrap_or(start).clamp(1, start),
                adaptive: None,
            },
            Concurrency::Adaptive => {
                // An explicit per-connection depth is a hard cap (a server limit); otherwise the
                // connections are deepened so that the ceiling can be reached.
                let ceiling = match (tuning.max_in_flight, tuning.in_flight_per_connection) {
                    (Some(max), Some(_)) => max.clamp(1, start),
                    (Some(max), None) => max.max(1),
                    (None, Some(_)) => start,
                    (None, None) => start
                        .saturating_mul(ADAPTIVE_HEADROOM)
                        .min(ADAPTIVE_DEFAULT_CEILING)
                        .max(start),
                };
                let per_connection = if tuning.in_flight_per_connection.is_some() {
                    per_connection
                } else {
                    per_connection.max(ceiling.div_ceil(connections))
                };
                let bounds = limit::LimitBounds::new(
                    tuning.min_in_flight.unwrap_or(1).min(ceiling),
                    ceiling,
                    tuning.initial_in_flight.unwrap_or(start),
                );
                Self {
                    connections,
                    per_connection,
                    max_in_flight: bounds.max,
                    adaptive: Some(bounds),
                }
            }
        }
    }
}

/// Parent containers seen in this run: each is checked and created once, whatever the number of
/// exports that need it at the same time.
#[derive(Default)]
struct Containers {
    verified: Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>,
    created: Mutex<Vec<String>>,
}

struct Inner {
    pool: pool::Pool,
    profile: DirectoryProfile,
    /// The DN the connections are bound as ("Who am I?"), when the server says.
    identity: Option<String>,
    tuning: DirectoryTuning,
    containers: Containers,
    retries: AtomicU64,
    export_latency: latency::SharedLatency,
}

/// A connected directory: the pool, what the directory is, and the run's container registry. Cheap to
/// clone; clones share everything.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("profile", &self.inner.profile)
            .field("connections", &self.inner.pool.limits().connections)
            .field("max_in_flight", &self.inner.pool.limits().max_in_flight)
            .finish()
    }
}

impl Directory {
    /// Connects with the tuning a run's options ask for.
    pub async fn connect(
        config: &DirectoryConfig,
        options: &RunOptions,
    ) -> Result<Directory, DirectoryError> {
        Self::connect_with(config, DirectoryTuning::from_run_options(options)).await
    }

    /// Connects, reads the root DSE and sizes the pool. Must run inside a tokio runtime (connection
    /// drivers are spawned on it).
    pub async fn connect_with(
        config: &DirectoryConfig,
        tuning: DirectoryTuning,
    ) -> Result<Directory, DirectoryError> {
        let connector = pool::Connector::new(config)?;
        let drivers = Mutex::new(JoinSet::new());
        let mut first = connector.connect(&drivers).await?;
        let operation_timeout = Duration::from_millis(config.operation_timeout_ms);
        let root = pool::Pool::read_root_dse(&mut first, operation_timeout).await;
        let profile = DirectoryProfile::from_root_dse(&root, config.dialect);
        let identity = if root.supports_who_am_i() {
            pool::Pool::who_am_i(&mut first, operation_timeout).await
        } else {
            None
        };
        let sizing = Sizing::new(&tuning, &profile);
        let (connections, per_connection, max_in_flight) = (
            sizing.connections,
            sizing.per_connection,
            sizing.max_in_flight,
        );
        let limits = pool::PoolLimits {
            connections: connections as usize,
            in_flight_per_connection: per_connection as usize,
            max_in_flight: max_in_flight as usize,
            adaptive: sizing.adaptive,
            ops_per_second: tuning.ops_per_second,
            operation_timeout,
        };
        tracing::info!(
            dialect = ?profile.dialect,
            detected = profile.detected,
            post_read = profile.supports_post_read,
            connections,
            per_connection,
            max_in_flight,
            adaptive = ?sizing.adaptive,
            "directory connected"
        );
        let drivers = drivers.into_inner().unwrap_or_else(|p| p.into_inner());
        let pool = pool::Pool::new(connector, limits, drivers);
        pool.adopt_connection(first);
        Ok(Directory {
            inner: Arc::new(Inner {
                pool,
                profile,
                identity,
                tuning,
                containers: Containers::default(),
                retries: AtomicU64::new(0),
                export_latency: latency::SharedLatency::default(),
            }),
        })
    }

    /// What the directory is (dialect, post-read, defaults).
    pub fn profile(&self) -> &DirectoryProfile {
        &self.inner.profile
    }

    /// The dialect plans should be made for.
    pub fn dialect(&self) -> Dialect {
        self.inner.profile.dialect
    }

    /// The DN the engine is bound as, when the directory answers "Who am I?" with one.
    pub fn identity(&self) -> Option<&str> {
        self.inner.identity.as_deref()
    }

    /// The most operations in flight the pool ever allows: the fixed limit, or the adaptive limit's
    /// ceiling.
    pub fn max_in_flight(&self) -> usize {
        self.inner.pool.limits().max_in_flight
    }

    /// The in-flight limit in force now (it moves when concurrency is adaptive).
    pub fn in_flight_limit(&self) -> usize {
        self.inner.pool.in_flight_limit()
    }

    /// True when the in-flight limit adapts to the directory's pace.
    pub fn is_adaptive(&self) -> bool {
        self.inner.pool.limits().adaptive.is_some()
    }

    /// Operations outstanding right now.
    pub fn in_flight(&self) -> usize {
        self.inner.pool.in_flight()
    }

    /// The number of connections.
    pub fn connections(&self) -> usize {
        self.inner.pool.limits().connections
    }

    /// Runs one export: its operations in order, transient conditions retried, partial progress
    /// reported. Never fails as a call; failures are in the result.
    pub async fn execute(&self, job: ExportJob) -> ExportResult {
        let stop = CancellationToken::new();
        let fence = job.fence.clone();
        crate::fence::guard(fence, stop.clone(), self.inner.execute(job, &stop)).await
    }

    /// Runs a batch concurrently (bounded) and returns the results in input order.
    pub async fn execute_all(&self, jobs: Vec<ExportJob>) -> Vec<ExportResult> {
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.export_id).collect();
        let (job_tx, job_rx) = mpsc::channel(self.max_active_exports());
        let (result_tx, mut result_rx) = mpsc::channel(self.max_active_exports());
        let runner = {
            let this = self.clone();
            tokio::spawn(async move { this.run(job_rx, result_tx).await })
        };
        let feeder = tokio::spawn(async move {
            for job in jobs {
                if job_tx.send(job).await.is_err() {
                    break;
                }
            }
        });
        let mut by_id: HashMap<Uuid, ExportResult> = HashMap::with_capacity(ids.len());
        while let Some(r) = result_rx.recv().await {
            by_id.insert(r.export_id, r);
        }
        let _ = feeder.await;
        let _ = runner.await;
        ids.into_iter()
            .map(|id| {
                by_id.remove(&id).unwrap_or_else(|| {
                    ExportResult::failed(
                        id,
                        ConnectedSystemExportErrorType::General,
                        "the export was not run (duplicate id in the batch, or the run stopped)",
                    )
                })
            })
            .collect()
    }

    /// Takes jobs from `jobs` until it closes and sends each export's result to `results` as soon as
    /// it completes; many exports run at once (bounded by [`DirectoryTuning::max_active_exports`]).
    /// Returns when every job taken has a result, or early when `results` is closed.
    pub async fn run(&self, jobs: mpsc::Receiver<ExportJob>, results: mpsc::Sender<ExportResult>) {
        self.run_until(jobs, results, CancellationToken::new())
            .await
    }

    /// [`Directory::run`] that can be told to stop starting exports: once `stop` fires, every job not
    /// yet begun, and every one whose attempts so far cannot have taken effect (no step completed but
    /// container checks, no operation's outcome unknown), ends as [`ExportStatus::NotStarted`]
    /// instead of being tried (again). Exports that may have changed the directory run to their end.
    pub async fn run_until(
        &self,
        mut jobs: mpsc::Receiver<ExportJob>,
        results: mpsc::Sender<ExportResult>,
        stop: CancellationToken,
    ) {
        let max_active = self.max_active_exports();
        let mut running: JoinSet<ExportResult> = JoinSet::new();
        let mut ids: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                done = running.join_next_with_id(), if !running.is_empty() => {
                    let result = match done {
                        Some(Ok((id, r))) => { ids.remove(&id); r }
                        Some(Err(e)) => {
                            let export_id = ids.remove(&e.id()).unwrap_or_default();
                            ExportResult::failed(
                                export_id,
                                ConnectedSystemExportErrorType::General,
                                format!("the export's task ended abnormally: {e}"),
                            )
                        }
                        None => continue,
                    };
                    if results.send(result).await.is_err() {
                        running.abort_all();
                        return;
                    }
                }
                job = jobs.recv(), if open && running.len() < max_active => {
                    match job {
                        Some(job) => {
                            let export_id = job.export_id;
                            let this = self.clone();
                            let stop = stop.clone();
                            let handle = running.spawn(async move {
                                let started = std::time::Instant::now();
                                let fence = job.fence.clone();
                                let result = crate::fence::guard(
                                    fence,
                                    stop.clone(),
                                    this.inner.execute(job, &stop),
                                )
                                .await;
                                if !matches!(result.status, ExportStatus::NotStarted | ExportStatus::Fenced { .. }) {
                                    this.inner.export_latency.record(started.elapsed());
                                }
                                result
                            });
                            ids.insert(handle.id(), export_id);
                        }
                        None => open = false,
                    }
                }
                else => break,
            }
        }
    }

    fn max_active_exports(&self) -> usize {
        self.inner
            .tuning
            .max_active_exports
            .unwrap_or(self.max_in_flight() * 2)
            .max(1)
    }

    /// Whether the directory answers at all: one base read of the root DSE over the pool (opening a
    /// connection if none is open). Any LDAP result counts as an answer. A watch asks before its next
    /// pass once a pass stopped because the directory went away, so a long outage claims nothing.
    pub async fn check_reachable(&self) -> Result<(), DirectoryError> {
        match self.inner.pool.read("", &[]).await {
            Ok(_) => Ok(()),
            Err(e) => Err(DirectoryError::Connect(e.to_string())),
        }
    }

    /// Forgets which containers were found or created, so the next export needing one reads it again.
    /// A watch calls it before each pass: between passes an administrator may have deleted an OU, and
    /// a container remembered from hours ago would fail every Add below it until the watch ends.
    pub fn forget_verified_containers(&self) {
        self.inner
            .containers
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Containers created in this run so far (JIM's `CreatedContainerExternalIds`), across batches.
    pub fn created_containers(&self) -> Vec<String> {
        self.inner
            .containers
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the directory did so far.
    pub fn stats(&self) -> DirectoryStats {
        let c = &self.inner.pool.counters;
        DirectoryStats {
            adds: c.adds.load(Ordering::Relaxed),
            modifies: c.modifies.load(Ordering::Relaxed),
            modify_dns: c.modify_dns.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            searches: c.searches.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            lost_connections: c.lost_connections.load(Ordering::Relaxed),
            retries: self.inner.retries.load(Ordering::Relaxed),
            peak_in_flight: self.inner.pool.peak_in_flight() as u64,
            in_flight_limit: self.inner.pool.limit_stats(),
            export_latency: self.inner.export_latency.snapshot(),
        }
    }

    /// Unbinds every connection.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(tuning: DirectoryTuning, dialect: Dialect) -> Sizing {
        Sizing::new(&tuning, &DirectoryProfile::for_dialect(dialect))
    }

    #[test]
    fn adaptive_by_default_from_the_dialect_default_with_room_to_grow() {
        let s = sizing(DirectoryTuning::default(), Dialect::OpenLdap);
        let bounds = s.adaptive.expect("adaptive by default");
        assert_eq!((bounds.min, bounds.initial, bounds.max), (1, 32, 128));
        assert_eq!((s.connections, s.max_in_flight), (4, 128));
        assert_eq!(s.per_connection, 32, "deep enough to reach the ceiling");
        let samba = sizing(DirectoryTuning::default(), Dialect::SambaAd);
        let b = samba.adaptive.expect("adaptive");
        assert_eq!((b.initial, b.max, samba.per_connection), (4, 16, 16));
    }

    #[test]
    fn explicit_values_bound_the_adaptive_limit() {
        // A per-connection depth is a server limit: the ceiling stays within it.
        let s = sizing(
            DirectoryTuning {
                connections: Some(2),
                in_flight_per_connection: Some(8),
                ..DirectoryTuning::default()
            },
            Dialect::OpenLdap,
        );
        let b = s.adaptive.expect("adaptive");
        assert_eq!((b.initial, b.max, s.per_connection), (16, 16, 8));
        // A total cap alone: connections deepen to reach it; the start is clamped under it.
        let s = sizing(
            DirectoryTuning {
                max_in_flight: Some(64),
                min_in_flight: Some(4),
                ..DirectoryTuning::default()
            },
            Dialect::ActiveDirectory,
        );
        let b = s.adaptive.expect("adaptive");
        assert_eq!((b.min, b.initial, b.max, s.per_connection), (4, 16, 64, 16));
        let s = sizing(
            DirectoryTuning {
                max_in_flight: Some(2),
                ..DirectoryTuning::default()
            },
            Dialect::OpenLdap,
        );
        let b = s.adaptive.expect("adaptive");
        assert_eq!((b.initial, b.max), (2, 2));
    }

    #[test]
    fn fixed_keeps_the_limit_as_before() {
        let fixed = |max_in_flight| DirectoryTuning {
            concurrency: Concurrency::Fixed,
            max_in_flight,
            ..DirectoryTuning::default()
        };
        let s = sizing(fixed(None), Dialect::OpenLdap);
        assert_eq!(
            (s.adaptive, s.max_in_flight, s.per_connection),
            (None, 32, 8)
        );
        assert_eq!(sizing(fixed(Some(10)), Dialect::OpenLdap).max_in_flight, 10);
        assert_eq!(
            sizing(fixed(Some(1000)), Dialect::OpenLdap).max_in_flight,
            32,
            "clamped to connections × per connection"
        );
    }
}
