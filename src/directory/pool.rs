//! A pool of ldap3 connections, each carrying many outstanding operations.
//!
//! ldap3 multiplexes operations over one connection by message id, and its request queue is
//! unbounded, so the pool bounds the work itself: a semaphore per connection (the server's useful
//! depth, e.g. 8 on OpenLDAP) and one over all connections. A connection that dies is replaced on its
//! next use (URLs tried in order, the first that answers wins); operations lost with it report
//! "outcome unknown" so the executor reads before retrying. Every request carries its own timeout,
//! separate from the connect timeout. Opening one connection (URLs, TLS, bind) is `connect`'s.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::exop::WhoAmI;
use ldap3::{Ldap, LdapError, LdapResult, Mod, Scope};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinSet;

use super::classify::{TransportError, is_back_pressure_result};
use super::dialect::{ROOT_DSE_ATTRIBUTES, RootDse};
use super::entry::{RawEntry, parse_entry};
use super::limit::{AimdSettings, GatePermit, InFlightGate, LimitBounds, LimitStats};
use super::rate::RateLimiter;
use crate::plan::{Attribute, ModKind, Modification};

mod connect;

pub(crate) use connect::Connector;

/// Sizes and limits of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolLimits {
    pub connections: usize,
    pub in_flight_per_connection: usize,
    /// The fixed limit, or the adaptive limit's ceiling.
    pub max_in_flight: usize,
    /// The adaptive limit's bounds; `None` for a fixed limit.
    pub adaptive: Option<LimitBounds>,
    /// Where an adaptive limit resumes (within its bounds).
    pub resume: Option<u32>,
    pub ops_per_second: Option<u32>,
    pub operation_timeout: Duration,
}

#[derive(Clone)]
struct Live {
    ldap: Ldap,
    generation: u64,
}

struct Slot {
    permits: Semaphore,
    live: Mutex<Option<Live>>,
    connecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

/// Counters of what the pool did.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub adds: AtomicU64,
    pub modifies: AtomicU64,
    pub modify_dns: AtomicU64,
    pub deletes: AtomicU64,
    pub searches: AtomicU64,
    pub connects: AtomicU64,
    pub lost_connections: AtomicU64,
}

/// The pool.
pub(crate) struct Pool {
    connector: Connector,
    slots: Vec<Slot>,
    global: InFlightGate,
    rate: Option<RateLimiter>,
    next_slot: AtomicUsize,
    limits: PoolLimits,
    drivers: Mutex<JoinSet<()>>,
    pub counters: Counters,
}

/// A connection lent to one operation, with its permits.
struct Lease<'a> {
    slot: usize,
    live: Live,
    global: GatePermit<'a>,
    _slot: SemaphorePermit<'a>,
}

impl Pool {
    /// Operations outstanding right now.
    pub(crate) fn in_flight(&self) -> usize {
        self.global.in_flight()
    }

    /// The most operations outstanding at once so far.
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.global.peak()
    }

    /// How full the pool was kept so far.
    pub(crate) fn occupancy(&self) -> super::OccupancyStats {
        self.global.occupancy()
    }

    /// The in-flight limit in force.
    pub(crate) fn in_flight_limit(&self) -> usize {
        self.global.limit()
    }

    /// How the in-flight limit moved.
    pub(crate) fn limit_stats(&self) -> LimitStats {
        self.global.stats()
    }

    pub fn new(connector: Connector, limits: PoolLimits, drivers: JoinSet<()>) -> Self {
        let slots = (0..limits.connections.max(1))
            .map(|_| Slot {
                permits: Semaphore::new(limits.in_flight_per_connection.max(1)),
                live: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
            })
            .collect();
        Self {
            connector,
            slots,
            global: match limits.adaptive {
                Some(bounds) => {
                    InFlightGate::adaptive(bounds, AimdSettings::default(), limits.resume)
                }
                None => {
                    InFlightGate::fixed(u32::try_from(limits.max_in_flight).unwrap_or(u32::MAX))
                }
            },
            rate: limits.ops_per_second.map(RateLimiter::new),
            next_slot: AtomicUsize::new(0),
            limits,
            drivers: Mutex::new(drivers),
            counters: Counters::default(),
        }
    }

    pub fn limits(&self) -> &PoolLimits {
        &self.limits
    }

    /// Puts an open connection into slot 0.
    pub fn adopt_connection(&self, ldap: Ldap) {
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        let generation = self.slots[0].generation.fetch_add(1, Ordering::Relaxed) + 1;
        *lock(&self.slots[0].live) = Some(Live { ldap, generation });
    }

    /// Reads the root DSE over `ldap`.
    pub async fn read_root_dse(ldap: &mut Ldap, timeout: Duration) -> RootDse {
        let mut root = RootDse::default();
        ldap.with_timeout(timeout);
        let Ok(result) = ldap
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                ROOT_DSE_ATTRIBUTES.to_vec(),
            )
            .await
        else {
            return root;
        };
        for entry in result.0.into_iter().filter_map(|e| parse_entry(e.0)) {
            for (name, values) in entry.attributes {
                root.insert(
                    &name,
                    values
                        .into_iter()
                        .map(|v| String::from_utf8_lossy(&v).into_owned()),
                );
            }
        }
        root
    }

    /// Asks "Who am I?" (RFC 4532) over `ldap`: the DN the connection is bound as, or `None` when the
    /// server does not say (no support, an anonymous bind, an authorization id that is not a DN).
    pub async fn who_am_i(ldap: &mut Ldap, timeout: Duration) -> Option<String> {
        ldap.with_timeout(timeout);
        let (exop, _) = ldap.extended(WhoAmI).await.ok()?.success().ok()?;
        // Decoded here: ldap3's own parser panics on an authorization id that is not UTF-8.
        let id = String::from_utf8(exop.val?).ok()?;
        let dn = id.strip_prefix("dn:")?.trim();
        (!dn.is_empty()).then(|| dn.to_string())
    }

    async fn lease(&self) -> Result<Lease<'_>, TransportError> {
        let global = self
            .global
            .acquire()
            .await
            .map_err(|_| TransportError::NotSent("the pool is closed".into()))?;
        if let Some(rate) = &self.rate {
            rate.acquire().await;
        }
        let n = self.slots.len();
        let start = self.next_slot.fetch_add(1, Ordering::Relaxed) % n;
        let mut chosen = None;
        for i in 0..n {
            let s = (start + i) % n;
            if let Ok(p) = self.slots[s].permits.try_acquire() {
                chosen = Some((s, p));
                break;
            }
        }
        let (slot, permit) = match chosen {
            Some(c) => c,
            None => (
                start,
                self.slots[start]
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| TransportError::NotSent("the pool is closed".into()))?,
            ),
        };
        let live = match self.live(slot).await {
            Ok(live) => live,
            Err(e) => {
                // No connection could be made: the directory is refusing or gone.
                global.record(true);
                return Err(e);
            }
        };
        Ok(Lease {
            slot,
            live,
            global,
            _slot: permit,
        })
    }

    /// The slot's connection if it is still open. One found closed (its driver saw the socket go) is
    /// dropped and counted as lost.
    fn current(&self, slot: usize) -> Option<Live> {
        let mut guard = lock(&self.slots[slot].live);
        let mut live = guard.clone()?;
        if live.ldap.is_closed() {
            *guard = None;
            self.counters
                .lost_connections
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(live)
    }

    /// Opens the slot's connection unless it has one.
    pub async fn open_slot(&self, slot: usize) -> Result<(), TransportError> {
        self.live(slot).await.map(|_| ())
    }

    async fn live(&self, slot: usize) -> Result<Live, TransportError> {
        if let Some(l) = self.current(slot) {
            return Ok(l);
        }
        let s = &self.slots[slot];
        let _one_at_a_time = s.connecting.lock().await;
        if let Some(l) = self.current(slot) {
            return Ok(l);
        }
        let ldap = self
            .connector
            .connect(&self.drivers)
            .await
            .map_err(|e| TransportError::Unavailable(e.to_string()))?;
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        let generation = s.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let live = Live { ldap, generation };
        *lock(&s.live) = Some(live.clone());
        tracing::debug!(slot, generation, "directory connection opened");
        Ok(live)
    }

    fn invalidate(&self, slot: usize, generation: u64) {
        let mut guard = lock(&self.slots[slot].live);
        if guard.as_ref().is_some_and(|l| l.generation == generation) {
            *guard = None;
            self.counters
                .lost_connections
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs one request on a leased connection with the operation timeout, mapping ldap3's errors
    /// and dropping the connection when it is gone.
    async fn call<T, F, Fut>(&self, write: bool, f: F) -> Result<T, TransportError>
    where
        F: FnOnce(Ldap) -> Fut,
        Fut: Future<Output = ldap3::result::Result<T>>,
        T: ResultCode,
    {
        let mut lease = self.lease().await?;
        if write {
            // The last word on the lease, right before the request goes out.
            crate::fence::check_write()
                .await
                .map_err(TransportError::Fenced)?;
        }
        let mut ldap = lease.live.ldap.clone();
        ldap.with_timeout(self.limits.operation_timeout);
        lease.global.mark_sent();
        let outcome = f(ldap)
            .await
            .map_err(|e| map_error(e, self.limits.operation_timeout));
        match &outcome {
            Ok(r) => lease
                .global
                .record(is_back_pressure_result(r.result_code(), r.result_text())),
            // A request the client refused to build says nothing about the directory.
            Err(TransportError::Client(_)) => {}
            // Timeouts and lost connections.
            Err(_) => {
                lease.global.record(true);
                self.invalidate(lease.slot, lease.live.generation);
            }
        }
        outcome
    }

    pub async fn add(
        &self,
        dn: &str,
        attributes: &[Attribute],
        controls: Vec<RawControl>,
    ) -> Result<LdapResult, TransportError> {
        self.counters.adds.fetch_add(1, Ordering::Relaxed);
        let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attributes
            .iter()
            .map(|a| {
                (
                    a.name.as_bytes().to_vec(),
                    a.values.iter().cloned().collect(),
                )
            })
            .collect();
        let dn = dn.to_string();
        self.call(true, |mut ldap| async move {
            with_controls(&mut ldap, controls);
            ldap.add(&dn, attrs).await
        })
        .await
    }

    pub async fn modify(
        &self,
        dn: &str,
        modifications: &[Modification],
        controls: Vec<RawControl>,
    ) -> Result<LdapResult, TransportError> {
        self.counters.modifies.fetch_add(1, Ordering::Relaxed);
        let mods: Vec<Mod<Vec<u8>>> = modifications
            .iter()
            .map(|m| {
                let name = m.attribute.as_bytes().to_vec();
                let values: HashSet<Vec<u8>> = m.values.iter().cloned().collect();
                match m.kind {
                    ModKind::Add => Mod::Add(name, values),
                    ModKind::Delete => Mod::Delete(name, values),
                    ModKind::Replace => Mod::Replace(name, values),
                }
            })
            .collect();
        let dn = dn.to_string();
        self.call(true, |mut ldap| async move {
            with_controls(&mut ldap, controls);
            ldap.modify(&dn, mods).await
        })
        .await
    }

    pub async fn modify_dn(
        &self,
        dn: &str,
        new_rdn: &str,
        delete_old_rdn: bool,
        new_superior: Option<&str>,
        controls: Vec<RawControl>,
    ) -> Result<LdapResult, TransportError> {
        self.counters.modify_dns.fetch_add(1, Ordering::Relaxed);
        let (dn, rdn, sup) = (
            dn.to_string(),
            new_rdn.to_string(),
            new_superior.map(str::to_string),
        );
        self.call(true, |mut ldap| async move {
            with_controls(&mut ldap, controls);
            ldap.modifydn(&dn, &rdn, delete_old_rdn, sup.as_deref())
                .await
        })
        .await
    }

    pub async fn delete(
        &self,
        dn: &str,
        controls: Vec<RawControl>,
    ) -> Result<LdapResult, TransportError> {
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        let dn = dn.to_string();
        self.call(true, |mut ldap| async move {
            with_controls(&mut ldap, controls);
            ldap.delete(&dn).await
        })
        .await
    }

    /// A base-scope read of `dn` for `attributes` (`1.1` for none): the entry when it exists, with
    /// the result (32 when it does not).
    pub async fn read(
        &self,
        dn: &str,
        attributes: &[&str],
    ) -> Result<(Option<RawEntry>, LdapResult), TransportError> {
        self.counters.searches.fetch_add(1, Ordering::Relaxed);
        let dn = dn.to_string();
        let attrs: Vec<String> = if attributes.is_empty() {
            vec!["1.1".to_string()]
        } else {
            attributes.iter().map(|a| a.to_string()).collect()
        };
        let result = self
            .call(false, |mut ldap| async move {
                ldap.search(&dn, Scope::Base, "(objectClass=*)", attrs)
                    .await
            })
            .await?;
        let entry = result.0.into_iter().find_map(|e| parse_entry(e.0));
        Ok((entry, result.1))
    }

    /// Unbinds every open connection; their drivers then end.
    pub async fn close(&self) {
        for s in &self.slots {
            let live = lock(&s.live).take();
            if let Some(mut l) = live {
                let _ = tokio::time::timeout(Duration::from_secs(2), l.ldap.unbind()).await;
            }
        }
    }
}

/// The LDAP result code of an operation's response (what the in-flight limit reads back pressure
/// from).
trait ResultCode {
    fn result_code(&self) -> u32;
    fn result_text(&self) -> &str;
}

impl ResultCode for LdapResult {
    fn result_code(&self) -> u32 {
        self.rc
    }
    fn result_text(&self) -> &str {
        &self.text
    }
}

impl ResultCode for ldap3::SearchResult {
    fn result_code(&self) -> u32 {
        self.1.rc
    }
    fn result_text(&self) -> &str {
        &self.1.text
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn map_error(e: LdapError, timeout: Duration) -> TransportError {
    match e {
        LdapError::OpSend { .. } => {
            TransportError::NotSent("the connection was already closed".into())
        }
        LdapError::ResultRecv { .. } | LdapError::IdScrubSend { .. } => {
            TransportError::OutcomeUnknown("the connection was lost before the result came".into())
        }
        LdapError::Timeout { .. } => {
            TransportError::OutcomeUnknown(format!("no result within {} ms", timeout.as_millis()))
        }
        LdapError::EndOfStream | LdapError::Io { .. } => {
            TransportError::OutcomeUnknown(e.to_string())
        }
        other => TransportError::Client(other.to_string()),
    }
}

/// Attaches `controls` to the request `ldap` sends next (none: nothing to attach).
fn with_controls(ldap: &mut Ldap, controls: Vec<RawControl>) {
    if !controls.is_empty() {
        ldap.with_controls(controls);
    }
}
