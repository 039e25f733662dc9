//! **directory**: runs planned exports against an LDAP directory (ldap3), pipelined over several
//! connections.
//!
//! [`Directory::connect`](crate::directory::Directory::connect) opens the first connection (URLs tried in order; simple bind or SASL
//! EXTERNAL; ldaps or StartTLS verified against the system roots or a given CA), reads the root DSE to
//! learn the [dialect](crate::directory::DirectoryProfile) and whether post-read is available, and sizes the pool from
//! the run options or the dialect's defaults. Then:
//!
//! - [`Directory::execute`](crate::directory::Directory::execute) runs one [`ExportJob`](crate::directory::ExportJob): its operations strictly in order, each under the
//!   pool's bounds (per connection, in total, optional ops/s), with transient conditions retried in
//!   the run and partial progress reported in the [`ExportResult`](crate::directory::ExportResult);
//! - [`Directory::run`](crate::directory::Directory::run) takes jobs from a channel and sends each result as soon as its export
//!   completes, many exports at once and no batch barrier; [`Directory::execute_all`](crate::directory::Directory::execute_all) does the same
//!   for a batch, returning results in input order.
//!
//! Result codes are read in one place, [`classify`](crate::directory::classify).

pub mod classify;
pub mod dialect;
pub mod entry;
pub mod evidence;
mod execute;
mod job;
pub mod latency;
pub mod limit;
pub mod occupancy;
mod pool;
mod rate;
mod tls;
mod tuning;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Dialect, DirectoryConfig, RunOptions};
use crate::model::ConnectedSystemExportErrorType;
use tracing::instrument::WithSubscriber;

pub use crate::fence::{Fence, Fenced};
pub use dialect::{DirectoryProfile, RootDse, concurrency_defaults};
pub use job::{AnchorRegistry, ExportJob, ExportResult, ExportStatus, Recovery};
pub use tuning::DirectoryTuning;
use tuning::Sizing;

/// Appended to the message of an export that gave up after an operation whose outcome is unknown (a
/// timeout, or a connection lost after sending). The message is stored as `LastErrorMessage`, and the
/// engine treats the next attempt of such an export as a re-attempt: it reads the directory first and
/// adopts what the earlier attempt already wrote, instead of failing on it.
pub const OUTCOME_UNKNOWN_NOTE: &str =
    "[outcome unknown: the next attempt reads the directory first]";
pub use entry::RawEntry;
pub use latency::ExportLatency;
pub use occupancy::OccupancyStats;
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
    /// How full the directory was kept: the time-weighted mean in flight while any were.
    pub occupancy: OccupancyStats,
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
    /// Connections being opened ahead of use ([`Directory::warm_up`]).
    warm_up: Mutex<JoinSet<()>>,
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
        // "Who am I?" goes out beside the root DSE's read instead of after it (one round trip, not
        // two, to a distant DC). A server without the extended operation answers it with an error
        // (RFC 4511 §4.12), and its answer is only believed where the root DSE lists the operation.
        let mut beside = first.clone();
        let (root, identity) = tokio::join!(
            pool::Pool::read_root_dse(&mut first, operation_timeout),
            pool::Pool::who_am_i(&mut beside, operation_timeout),
        );
        let profile = DirectoryProfile::from_root_dse(&root, config.dialect);
        let identity = identity.filter(|_| root.supports_who_am_i());
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
            resume: tuning.resume_in_flight,
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
        let directory = Directory {
            inner: Arc::new(Inner {
                pool,
                profile,
                identity,
                tuning,
                containers: Containers::default(),
                retries: AtomicU64::new(0),
                export_latency: latency::SharedLatency::default(),
                warm_up: Mutex::new(JoinSet::new()),
            }),
        };
        directory.warm_up();
        Ok(directory)
    }

    /// Opens the pool's other connections in the background, all at once, so that the first
    /// exports do not wait for a connection each (a bind is a round trip, TLS two more) while the
    /// run is still claiming its first page. A connection that cannot be made now is left to the
    /// first operation that needs it, which tries again and reports what it meets.
    fn warm_up(&self) {
        let mut tasks = self.inner.warm_up.lock().unwrap_or_else(|p| p.into_inner());
        for slot in 1..self.inner.pool.limits().connections {
            // The task holds the directory until its connect ends (bounded by the connect
            // timeout); `close` aborts it.
            let inner = self.inner.clone();
            tasks.spawn(async move {
                if let Err(e) = inner.pool.open_slot(slot).await {
                    tracing::debug!(slot, error = %e, "opening a connection ahead of use failed");
                }
            });
        }
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
            tokio::spawn(async move { this.run(job_rx, result_tx).await }.with_current_subscriber())
        };
        let feeder = tokio::spawn(
            async move {
                for job in jobs {
                    if job_tx.send(job).await.is_err() {
                        break;
                    }
                }
            }
            .with_current_subscriber(),
        );
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
                            }.with_current_subscriber());
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
            occupancy: self.inner.pool.occupancy(),
            in_flight_limit: self.inner.pool.limit_stats(),
            export_latency: self.inner.export_latency.snapshot(),
        }
    }

    /// Unbinds every connection.
    pub async fn close(&self) {
        self.inner
            .warm_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
        self.inner.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
