//! One run's handle on one connected system's pending-export queue: claiming pages, holding the
//! claimed rows, resolving references and renewing leases. Writing outcomes back is in `outcomes`,
//! returning what a run did not execute in `release`.

mod outcomes;
mod release;

pub(crate) use release::Release;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::Store;
use super::claim::{self, ClaimedExport, ClaimedPage, Cursor, Held, Pass, StagedRename};
use super::marker::run_pattern;
use super::resolve::{self, AnchorRow, ResolveSummary, Target};
use super::retry::{self, with_retries};
use super::sample::{self, OwnerProbes, ResolvedProbes};
use super::sql;
use super::system::SystemSchema;
use crate::error::Result;
use crate::fence::{Fence, LeaseBoard};
use crate::model::{CsoAttributeValue, ValueSlots};

/// What a lease renewal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// Rows whose lease was renewed.
    pub renewed: usize,
    /// Rows this run held but no longer does (another engine took them over after the lease expired, or
    /// the row left `Executing`); the run must not persist them.
    pub lost: Vec<Uuid>,
}

/// A run's handle on one connected system's queue: claims pages, resolves references, renews leases,
/// persists outcomes and releases what it did not execute. It remembers the rows it holds with the mark
/// its claim wrote on each (`super::marker`, which names this run: the lease token), so every write is
/// fenced: a row another engine took over after an expired lease is never overwritten. Each held row
/// also has a [`Fence`] the directory checks before writing it. Every statement is bounded and retried
/// across a database restart (`super::retry`). Share it behind an `Arc`; every method takes `&self` and
/// several persists may be in flight at once.
#[derive(Debug)]
pub struct ExportQueue {
    store: Store,
    schema: Arc<SystemSchema>,
    lease: Duration,
    /// This run's id, written into the mark of every row it claims.
    run_id: Uuid,
    held: Mutex<HashMap<Uuid, Held>>,
    board: Arc<LeaseBoard>,
    /// Persists and releases hold it shared; a renewal holds it exclusively, so a row a persist has
    /// just written (and not yet dropped from the held set) never looks lost to a renewal.
    gate: tokio::sync::RwLock<()>,
    /// Flushes committed so far: numbers each flush ([`PersistReport::flush`]) and tells each page how
    /// many had been committed before its reads began ([`ClaimedPage::flushes_before`]).
    flushes: AtomicU64,
}

impl ExportQueue {
    pub(crate) fn new(store: Store, schema: SystemSchema, lease_seconds: u64) -> Self {
        Self {
            store,
            schema: Arc::new(schema),
            lease: Duration::from_secs(lease_seconds),
            run_id: Uuid::new_v4(),
            held: Mutex::new(HashMap::new()),
            board: Arc::new(LeaseBoard::default()),
            gate: tokio::sync::RwLock::new(()),
            flushes: AtomicU64::new(0),
        }
    }

    /// The id this run writes into the marks of the rows it claims.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The lease the run takes on each row.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Where the run's fences learn of renewals and ask for them.
    pub fn lease_board(&self) -> Arc<LeaseBoard> {
        self.board.clone()
    }

    /// The write window of a held row (`None` when the run does not hold it).
    pub fn fence(&self, id: Uuid) -> Option<Fence> {
        self.held().get(&id).map(|h| h.fence.clone())
    }

    /// Records that a held export was handed to the directory (`true`) or handed back by it unstarted
    /// (`false`): a row going back to the queue without an outcome keeps the mark that says its export
    /// may have reached the directory only in the first case.
    pub fn set_dispatched(&self, id: Uuid, dispatched: bool) {
        if let Some(h) = self.held().get_mut(&id) {
            h.dispatched = dispatched;
        }
    }

    fn lease_seconds(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// The connected system's object types and attribute definitions (loaded once, when the queue was
    /// opened).
    pub fn schema(&self) -> &Arc<SystemSchema> {
        &self.schema
    }

    /// The connected system.
    pub fn connected_system_id(&self) -> i32 {
        self.schema.connected_system_id
    }

    /// Statements issued through this queue's store so far.
    pub fn statements(&self) -> u64 {
        self.store.statements()
    }

    /// Rows this run currently holds (claimed, not yet persisted or released).
    pub fn held_count(&self) -> usize {
        self.held().len()
    }

    fn held(&self) -> MutexGuard<'_, HashMap<Uuid, Held>> {
        // The map stays consistent even if a holder panicked: every update is a single insert or remove.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exports due for this run: those eligible now (JIM's executable-exports predicate with
    /// lease recovery, as [`Store::queue_summary`](super::Store::queue_summary) counts them) and
    /// those this run has claimed already, so that the count may run beside the run's first claim
    /// and still give the same number. One statement.
    pub async fn count_due(&self) -> Result<u64> {
        let count: i64 = with_retries(
            self.store.policy(),
            "counting the exports due",
            || {
                self.store.count(1);
                sqlx::query_scalar(sql::COUNT_DUE)
                    .bind(self.schema.connected_system_id)
                    .bind(self.lease_seconds())
                    .bind(run_pattern(self.run_id))
                    .fetch_one(&self.store.pool)
            },
            retry::nothing,
        )
        .await?;
        Ok(count.max(0) as u64)
    }

    /// Claims the next page of `pass` after `after` (`None` for the first page): at most `limit`
    /// eligible exports in `("CreatedAt", "Id")` order, marked `Executing` with `LastAttemptedAt = now()`,
    /// skipping rows another engine holds, with their attribute value changes and CSO context. One
    /// statement, and one more when a large attribute's sample came back full and resolved changes
    /// name rows outside it (`super::sample`). Rows left `Executing` longer than the lease are
    /// claimed again and flagged [`ClaimedExport::re_attempt`].
    pub async fn claim(
        &self,
        pass: Pass,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<ClaimedPage> {
        let limit = limit.max(1);
        let references = pass == Pass::References;
        let mut sent = Instant::now();
        let flushes_before = self.flushes.load(Ordering::SeqCst);
        let rows: Vec<PgRow> = with_retries(
            self.store.policy(),
            "claiming pending exports",
            || {
                sent = Instant::now();
                let query = match after {
                    None => sqlx::query(sql::CLAIM_FIRST),
                    Some(_) => sqlx::query(sql::CLAIM_AFTER),
                };
                let mut query = query
                    .bind(self.schema.connected_system_id)
                    .bind(references)
                    .bind(self.lease_seconds())
                    .bind(i64::from(limit))
                    .bind(self.run_id);
                if let Some(c) = after {
                    query = query.bind(c.created_at).bind(c.id);
                }
                self.store.count(1);
                query.fetch_all(&self.store.pool)
            },
            // A claim whose answer was lost may have marked rows this run does not know it holds.
            || self.release_unheld(),
        )
        .await?;
        let (mut page, keys) = claim::decode_page(&rows, &self.schema, limit as usize)?;
        page.flushes_before = flushes_before;
        {
            let mut held = self.held();
            for mut k in keys {
                k.held.fence = Fence::new(self.board.clone(), sent, self.lease);
                held.insert(k.id, k.held);
            }
        }
        self.probe_full_samples(&mut page.exports).await?;
        for bad in &page.bad_rows {
            tracing::warn!(pending_export_id = %bad.pending_export_id, error = %bad.error, "claimed a row that cannot be read");
        }
        Ok(page)
    }

    /// A dry run's look at the next page of `pass` after `after`: what [`ExportQueue::claim`] would
    /// return, read without locking or marking anything and without the run holding the rows. One
    /// statement, and the claim's lookups when it needs them.
    pub async fn peek(&self, pass: Pass, after: Option<Cursor>, limit: u32) -> Result<ClaimedPage> {
        let limit = limit.max(1);
        let flushes_before = self.flushes.load(Ordering::SeqCst);
        let rows: Vec<PgRow> = with_retries(
            self.store.policy(),
            "reading pending exports",
            || {
                let query = match after {
                    None => sqlx::query(sql::PEEK_FIRST),
                    Some(_) => sqlx::query(sql::PEEK_AFTER),
                };
                let mut query = query
                    .bind(self.schema.connected_system_id)
                    .bind(pass == Pass::References)
                    .bind(self.lease_seconds())
                    .bind(i64::from(limit));
                if let Some(c) = after {
                    query = query.bind(c.created_at).bind(c.id);
                }
                self.store.count(1);
                query.fetch_all(&self.store.pool)
            },
            retry::nothing,
        )
        .await?;
        let (mut page, _keys) = claim::decode_page(&rows, &self.schema, limit as usize)?;
        page.flushes_before = flushes_before;
        self.probe_full_samples(&mut page.exports).await?;
        Ok(page)
    }

    /// Looks up the rows of large attributes that the claim's sample left out and the page's
    /// resolved reference changes can match (`sql::PROBE`, see `super::sample`), and adds them to
    /// the exports' CSOs. No statement when no sample came back full; unresolved changes get theirs
    /// from [`ExportQueue::resolve_references`].
    async fn probe_full_samples(&self, exports: &mut [ClaimedExport]) -> Result<()> {
        let probes = ResolvedProbes::of(exports);
        if probes.is_empty() {
            return Ok(());
        }
        let rows: Vec<PgRow> = with_retries(
            self.store.policy(),
            "looking up the member rows the changes name",
            || {
                self.store.count(1);
                sqlx::query(sql::PROBE)
                    .bind(&probes.owners)
                    .bind(&probes.attributes)
                    .bind(&probes.targets)
                    .bind(&probes.dns)
                    .fetch_all(&self.store.pool)
            },
            retry::nothing,
        )
        .await?;
        let mut owned = Vec::with_capacity(rows.len());
        for row in &rows {
            owned.extend(owned_value(row)?);
        }
        sample::add_owned_values(exports, owned);
        Ok(())
    }

    /// Returns to Pending the rows still `Executing` under this run's mark that it does not hold (a
    /// claim whose answer was lost). Their mark stays.
    async fn release_unheld(&self) -> std::result::Result<(), sqlx::Error> {
        let held: Vec<Uuid> = self.held().keys().copied().collect();
        self.store.count(1);
        let done = sqlx::query(sql::RELEASE_UNHELD)
            .bind(self.schema.connected_system_id)
            .bind(run_pattern(self.run_id))
            .bind(&held)
            .execute(&self.store.pool)
            .await?;
        if done.rows_affected() > 0 {
            tracing::info!(
                rows = done.rows_affected(),
                "returned rows a claim marked before its answer was lost"
            );
        }
        Ok(())
    }

    /// Resolves the unresolved reference changes of `exports` in one query: each referenced MVO's CSO in
    /// this connected system, its secondary anchor (the DN) preferred, the primary as fallback. Resolved
    /// changes are rewritten in place (`StringValue`, `UnresolvedReferenceValue = None`,
    /// `ResolvedReferenceCsoId`) and listed in [`ClaimedExport::resolutions`], which the persist step
    /// writes with the outcome; the others are listed in [`ClaimedExport::unresolved`] with their reason.
    /// No statement when nothing is unresolved.
    pub async fn resolve_references(
        &self,
        exports: &mut [ClaimedExport],
    ) -> Result<ResolveSummary> {
        let wanted = resolve::wanted_mvo_ids(exports);
        let mut targets: HashMap<Uuid, Target> = HashMap::new();
        let mut owned = Vec::new();
        if !wanted.is_empty() {
            let anchor_attributes = self.schema.anchor_attribute_ids();
            let probes = OwnerProbes::of(exports);
            let rows: Vec<PgRow> = with_retries(
                self.store.policy(),
                "resolving references",
                || {
                    self.store.count(1);
                    sqlx::query(sql::RESOLVE)
                        .bind(self.schema.connected_system_id)
                        .bind(&wanted)
                        .bind(&anchor_attributes)
                        .bind(&probes.owners)
                        .bind(&probes.attributes)
                        .bind(&probes.mvos)
                        .fetch_all(&self.store.pool)
                },
                retry::nothing,
            )
            .await?;
            for row in rows {
                let kind: i32 = row.try_get(0)?;
                if kind == 1 {
                    owned.extend(owned_value(&row)?);
                    continue;
                }
                let key: Uuid = row.try_get(1)?;
                let cso_id: Uuid = row.try_get(2)?;
                let target = targets.entry(key).or_insert_with(|| Target {
                    cso_id,
                    ..Target::default()
                });
                if kind == 2 {
                    target.rename = Some(StagedRename {
                        cso_id,
                        export_id: row.try_get(3)?,
                        attribute_id: row.try_get(4)?,
                        to: row.try_get(5)?,
                        names: claim::parse_names(row.try_get::<Option<&str>, _>(14)?),
                    });
                    continue;
                }
                if let Some(value_id) = row.try_get::<Option<Uuid>, _>(3)? {
                    target.anchors.push(AnchorRow {
                        value_id,
                        attribute_id: row.try_get(4)?,
                        value: value_slots(&row)?,
                    });
                }
            }
        }
        sample::add_owned_values(exports, owned);
        Ok(resolve::apply(exports, &targets, &self.schema))
    }

    /// The CSO of this system, other than `except`, whose primary anchor is `anchor` (the directory's
    /// value in JIM's external-id form), if any. One statement, tried again across a database restart.
    pub async fn anchor_holder(&self, anchor: &str, except: Option<Uuid>) -> Result<Option<Uuid>> {
        let attributes = self.schema.primary_anchor_attribute_ids();
        let guid = Uuid::parse_str(anchor.trim()).ok();
        let rows: Vec<PgRow> = with_retries(
            self.store.policy(),
            "checking who holds an anchor",
            || {
                self.store.count(1);
                sqlx::query(sql::ANCHOR_HOLDER)
                    .bind(self.schema.connected_system_id)
                    .bind(&attributes)
                    .bind(anchor.trim())
                    .bind(guid)
                    .bind(except)
                    .fetch_all(&self.store.pool)
            },
            retry::nothing,
        )
        .await?;
        match rows.first() {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// Renews the lease on every row this run holds (`LastAttemptedAt = now()` where the row is still
    /// `Executing` under the run's mark), so that no other engine takes them over while they are in
    /// flight, and opens their fences for another two thirds of the lease. Rows found taken over are
    /// dropped from the held set, their fences closed for good, and listed in [`LeaseRenewal::lost`].
    /// Call it well within the lease (every third of it). One statement (none when nothing is held),
    /// tried once: the caller tries again (a statement sent twice does no harm). Fences waiting for a
    /// renewal are told of the result either way.
    pub async fn renew_leases(&self) -> Result<LeaseRenewal> {
        let result = self.renew_once().await;
        self.board.announce();
        result
    }

    async fn renew_once(&self) -> Result<LeaseRenewal> {
        let _exclusive = self.gate.write().await;
        let (ids, tokens): (Vec<Uuid>, Vec<String>) = self
            .held()
            .iter()
            .map(|(id, h)| (*id, h.token.clone()))
            .unzip();
        if ids.is_empty() {
            return Ok(LeaseRenewal::default());
        }
        let sent = Instant::now();
        self.store.count(1);
        let rows = retry::attempt(
            self.store.policy(),
            sqlx::query(sql::RENEW)
                .bind(&ids)
                .bind(&tokens)
                .fetch_all(&self.store.pool),
        )
        .await
        .map_err(retry::Failure::into_error)?;
        let mut renewed = HashSet::with_capacity(rows.len());
        for row in rows {
            renewed.insert(row.try_get::<Uuid, _>(0)?);
        }
        let mut held = self.held();
        let mut lost = Vec::new();
        for id in ids {
            if renewed.contains(&id) {
                if let Some(h) = held.get(&id) {
                    h.fence.renewed(sent, self.lease);
                }
            } else if let Some(h) = held.remove(&id) {
                // Gone from the held set since the statement was built: persisted or released.
                // Otherwise another engine holds it now.
                h.fence.lose();
                lost.push(id);
            }
        }
        drop(held);
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "rows were taken over after their lease expired; they are not written again"
            );
        }
        Ok(LeaseRenewal {
            renewed: renewed.len(),
            lost,
        })
    }
}

/// The value slots of a `sql::RESOLVE` or `sql::PROBE` row, in columns 5-12 for every kind of row.
fn value_slots(row: &PgRow) -> std::result::Result<ValueSlots, sqlx::Error> {
    Ok(ValueSlots {
        string: row.try_get(5)?,
        guid: row.try_get(6)?,
        int: row.try_get(7)?,
        long: row.try_get(8)?,
        decimal: row.try_get(9)?,
        date_time: row.try_get(10)?,
        bytes: row.try_get(11)?,
        boolean: row.try_get(12)?,
    })
}

/// A row of a large attribute that a lookup found (`sql::PROBE`, `sql::RESOLVE`'s rows of kind 1):
/// the exporting CSO it belongs to and the row.
fn owned_value(row: &PgRow) -> std::result::Result<Option<(Uuid, CsoAttributeValue)>, sqlx::Error> {
    let Some(id) = row.try_get::<Option<Uuid>, _>(3)? else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get(1)?,
        CsoAttributeValue {
            id,
            attribute_id: row.try_get(4)?,
            value: value_slots(row)?,
            reference_value_id: row.try_get(13)?,
            unresolved_reference_value: row.try_get(14)?,
        },
    )))
}
