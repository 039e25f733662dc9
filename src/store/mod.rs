//! The store: the engine's only way into JIM's PostgreSQL database.
//!
//! A run opens an [`ExportQueue`](crate::store::ExportQueue) for one connected system ([`Store::open`](crate::store::Store::open), which checks JIM's schema
//! version and loads the system's attribute definitions once) and then, per page of 100:
//!
//! 1. [`ExportQueue::claim`](crate::store::ExportQueue::claim) — one statement claims the next page of eligible exports in
//!    `("CreatedAt", "Id")` keyset order with JIM's predicate, marks them `Executing`
//!    (`FOR UPDATE SKIP LOCKED`, so concurrent engines get disjoint rows), and returns them with their
//!    attribute value changes and CSO context;
//! 2. [`ExportQueue::resolve_references`](crate::store::ExportQueue::resolve_references) — one query resolves the page's references (none for a page
//!    without unresolved references);
//! 3. [`ExportQueue::persist`](crate::store::ExportQueue::persist) — one statement per flush writes the outcomes, resolutions, anchors, new
//!    DNs and the optimistic apply.
//!
//! That is 2 statements per 100 plain exports and 3 per 100 reference-bearing ones, against JIM's 13-25;
//! a plain page that changes the members of a group above 500 members takes one more, the lookups of
//! the rows its changes name (`sample`).
//! [`ExportQueue::renew_leases`](crate::store::ExportQueue::renew_leases) keeps a slow run's rows from being taken over, and
//! [`ExportQueue::release`](crate::store::ExportQueue::release) returns what a cancelled run did not execute. Every statement is counted
//! ([`Store::statements`](crate::store::Store::statements)). Timestamps come from the database clock (`now()`), sessions run in UTC.

mod admin;
mod apply;
mod claim;
mod listen;
pub mod marker;
mod notify;
pub mod outcome;
mod persist;
mod queue;
mod resolve;
mod retry;
mod row_changes;
mod sample;
mod sql;
mod system;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::{QueueSummary, StatusCount};
pub use claim::{
    BadRow, ClaimedExport, ClaimedPage, Cursor, MovedTarget, Pass, PendingRename,
    ReferenceResolution, UnresolvedReference,
};
pub use listen::{Heard, QueueListener};
pub use notify::{
    INSTALL_NOTIFY_TRIGGER_SQL, NOTIFY_CHANNEL, NOTIFY_FUNCTION, NOTIFY_TRIGGERS,
    REMOVE_NOTIFY_TRIGGER_SQL, WatchProbe,
};
pub use persist::{
    DEFERRAL_DELAY_MINUTES, OptimisticApplyCounts, PersistReport, PersistedExport, retry_delay,
};
pub use queue::{ExportQueue, LeaseRenewal};
pub use resolve::ResolveSummary;
pub use retry::RetryPolicy;
pub use row_changes::{Resolution, RowChanges, ValueRowChange, row_changes};
pub use system::SystemSchema;

use crate::config::{ConfigErrors, DatabaseConfig, RunOptions};
use crate::error::{Error, Result};
use crate::schema::EXPECTED_MIGRATION;
use tracing::instrument::WithSubscriber;

/// A connection pool to JIM's database and a count of the statements issued through it. Cheap to
/// clone; clones share the pool, the count and the background work (claims of runs that ended while
/// the database did not answer, returned once it does).
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    statements: Arc<AtomicU64>,
    policy: RetryPolicy,
    background: Arc<Background>,
}

/// Work a store keeps doing after the run that started it has returned.
#[derive(Debug, Default)]
struct Background {
    tasks: TaskTracker,
    closing: CancellationToken,
}

impl Store {
    /// Connects to JIM's database: one probe connection first (so an unreachable server fails within
    /// `connect_timeout_ms` with the server's own error, not a pool timeout), then a pool of at most
    /// `max_connections` with the same acquire timeout. Sessions run in UTC, without JIT compilation.
    pub async fn connect(config: &DatabaseConfig) -> Result<Store> {
        // JIT off: every statement here is driven by index probes over at most a page or a flush of
        // rows, which compiled expressions cannot speed up, while a plan whose estimate crosses
        // `jit_above_cost` (PostgreSQL's default for JIT is on, as in JIM's `postgres` image) is
        // compiled afresh on every execution. Measured: the first claim of a follow-up round (100
        // exports) spent 122 ms compiling and 4 ms executing, and the count of what is due 15 ms;
        // together a quarter of PostgreSQL's CPU for that round (`docs/benchmark.md`).
        let options = config
            .connect_options()
            .map_err(|message| {
                let mut e = ConfigErrors::default();
                e.push("database.connection", message);
                Error::Config(e)
            })?
            .options([("TimeZone", "UTC"), ("jit", "off")]);
        let settings = config.effective().map_err(|message| {
            let mut e = ConfigErrors::default();
            e.push("database.connection", message);
            Error::Config(e)
        })?;
        let timeout = settings.connect_timeout;
        Self::probe(&options, timeout).await?;
        let mut pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .acquire_timeout(timeout);
        if let Some(idle) = settings.idle_timeout {
            pool = pool.idle_timeout(idle);
        }
        if let Some(lifetime) = settings.max_lifetime {
            pool = pool.max_lifetime(lifetime);
        }
        let pool = pool.connect_lazy_with(options);
        Ok(Self::from_pool(pool).with_policy(RetryPolicy::for_database(&settings)))
    }

    async fn probe(options: &PgConnectOptions, timeout: Duration) -> Result<()> {
        match tokio::time::timeout(timeout, options.connect()).await {
            Ok(Ok(conn)) => {
                conn.close().await.ok();
                Ok(())
            }
            Ok(Err(e)) => Err(Error::Database(format!(
                "cannot connect to JIM's database: {e}"
            ))),
            Err(_) => Err(Error::Database(format!(
                "cannot connect to JIM's database: no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// A store over an existing pool (e.g. a test database's). The pool's sessions should run in UTC;
    /// the store never relies on the session time zone for its own values.
    pub fn from_pool(pool: PgPool) -> Store {
        Store {
            pool,
            statements: Arc::new(AtomicU64::new(0)),
            policy: RetryPolicy::default(),
            background: Arc::new(Background::default()),
        }
    }

    /// The same store with another retry policy.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Store {
        self.policy = policy;
        self
    }

    /// How long statements may take and how long failing ones are tried again.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Sends a release of a run's rows until the database takes it (or the store closes), in the
    /// background: the run that held them has ended because the database did not answer.
    pub(crate) fn release_in_background(&self, release: queue::Release) {
        let store = self.clone();
        let closing = self.background.closing.clone();
        let rows = release.len();
        tracing::warn!(
            rows,
            "the database does not answer: the run's claims are returned as soon as it does"
        );
        let task = async move {
            let mut tries = 0u32;
            loop {
                let sent = retry::attempt(store.policy, release.send(&store)).await;
                match sent {
                    Ok(n) => {
                        tracing::info!(
                            rows = n,
                            "returned the claims of a run that ended while the database did not answer"
                        );
                        return;
                    }
                    Err(e) if !e.is_transient() => {
                        tracing::error!(error = %e.into_error(), rows, "could not return a run's claims; they are reclaimed after their lease");
                        return;
                    }
                    Err(_) => {}
                }
                tries += 1;
                let delay = retry::backoff(tries).max(Duration::from_secs(1));
                tokio::select! {
                    _ = closing.cancelled() => {
                        tracing::warn!(rows, "the engine closed before the database answered: the claims are reclaimed after their lease");
                        return;
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                self.background
                    .tasks
                    .spawn_on(task.with_current_subscriber(), &handle);
            }
            Err(_) => tracing::error!(
                rows,
                "no runtime to return a run's claims on; they are reclaimed after their lease"
            ),
        }
    }

    /// Background releases still waiting for the database.
    pub fn background_work(&self) -> usize {
        self.background.tasks.len()
    }

    /// Closes the store: gives background releases until `deadline` to get through, then stops them
    /// and closes the pool (connections in use are dropped when their statements end; the close
    /// itself waits at most until `deadline`).
    pub async fn close(&self, deadline: Duration) {
        let end = tokio::time::Instant::now() + deadline;
        self.background.tasks.close();
        let _ = tokio::time::timeout_at(end, self.background.tasks.wait()).await;
        self.background.closing.cancel();
        let _ = tokio::time::timeout_at(end, self.pool.close()).await;
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// SQL statements this store (and every queue opened from it) has issued, for the run metrics.
    /// Transaction control is never issued: every statement is atomic on its own.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }

    /// Refuses a database whose `__EFMigrationsHistory` does not record the migration this engine was
    /// built against ([`EXPECTED_MIGRATION`]), with an [`Error::Schema`] naming both.
    pub async fn check_schema(&self) -> Result<()> {
        self.count(1);
        let row = match sqlx::query(sql::SCHEMA_CHECK)
            .bind(EXPECTED_MIGRATION)
            .fetch_one(&self.pool)
            .await
        {
            Ok(row) => row,
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01") => {
                return Err(Error::Schema(format!(
                    "the database has no \"__EFMigrationsHistory\" table, so it is not a JIM database \
                     (this engine needs migration {EXPECTED_MIGRATION})"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let present: bool = row.try_get(0)?;
        let latest: Option<String> = row.try_get(1)?;
        if present {
            return Ok(());
        }
        Err(Error::Schema(format!(
            "JIM's database lacks migration {EXPECTED_MIGRATION}, which this engine was built against \
             (latest applied: {}); upgrade JIM or the engine, or set options.skip_schema_check",
            latest.as_deref().unwrap_or("none")
        )))
    }

    /// Opens one run's queue for `connected_system_id`: checks the schema version (unless
    /// `options.skip_schema_check`) and loads the system's object types and attribute definitions.
    /// A system that does not exist is a configuration error.
    pub async fn open(
        &self,
        connected_system_id: i32,
        options: &RunOptions,
    ) -> Result<ExportQueue> {
        if !options.skip_schema_check {
            self.check_schema().await?;
        }
        self.count(1);
        let rows = sqlx::query(sql::LOAD_SYSTEM)
            .bind(connected_system_id)
            .fetch_all(&self.pool)
            .await?;
        let Some(schema) = SystemSchema::from_rows(connected_system_id, &rows)? else {
            let mut e = ConfigErrors::default();
            e.push(
                "connected_system_id",
                format!("connected system {connected_system_id} does not exist"),
            );
            return Err(Error::Config(e));
        };
        Ok(ExportQueue::new(
            self.clone(),
            schema,
            options.lease_seconds,
        ))
    }
}
