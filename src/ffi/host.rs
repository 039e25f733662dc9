//! The hosted engine both bindings drive: the [`Engine`], the tokio runtime it runs on, the registry of
//! calls in progress, cancel-all, and a graceful close with one deadline.
//!
//! The C ABI (`jim_engine`) blocks a host thread on [`Host::block_on`]; UniFFI (`ExportEngine`)
//! awaits [`Host::call`] from the host's event loop. Either way the work runs as a task on the
//! engine's runtime, never on the host's thread, and:
//!
//! - every call is registered with its cancellation token until its task ends, however it ends, so
//!   [`Host::cancel_all`] reaches every run and [`Host::close`] knows what it waits for;
//! - a caller that stops waiting (a cancelled asyncio task or Kotlin job, the future dropped) cancels
//!   the call's token and closes its listener gate: the run winds down on the runtime without calling
//!   into a host that stopped listening, and no host callback runs after the call returned;
//! - closing refuses new calls, cancels those in progress, waits for them and for the database pools
//!   until one deadline, then stops the runtime and joins its threads (a managed host such as Mono
//!   hangs at exit while they live).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigErrors;
use crate::engine::{Engine, ListenerGate};

/// The start of the name of every thread of an engine's runtime (the engine's serial number follows),
/// so a host's thread dump tells whose they are.
pub(crate) const THREAD_NAME_PREFIX: &str = "jim-export-";

/// The most worker threads an engine may ask for: a bound that catches unit mistakes.
pub(crate) const MAX_WORKER_THREADS: usize = 512;

/// How long closing waits, by default, for cancelled calls to persist what they did and return their
/// claims, and for the database pools to close.
pub(crate) const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the runtime's threads get to stop, by default, once the calls are done or abandoned.
pub(crate) const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers engines for their thread names.
static ENGINE_SERIAL: AtomicU64 = AtomicU64::new(1);

/// How to build a [`Host`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostOptions {
    /// Worker threads of the runtime; 0 = one per CPU core.
    pub(crate) worker_threads: usize,
    /// The deadline of [`Host::close`] for calls and database pools.
    pub(crate) close_timeout: Duration,
    /// How long the runtime's threads then get to stop.
    pub(crate) stop_timeout: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            worker_threads: 0,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }
}

impl HostOptions {
    /// Checks the thread count; `path` names the field in the binding's own terms.
    pub(crate) fn validate(&self, path: &str) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        errors.check(
            self.worker_threads > MAX_WORKER_THREADS,
            path,
            format!("must be at most {MAX_WORKER_THREADS} (0 = one per CPU core)"),
        );
        errors.into_result()
    }
}

/// Why a call on the hosted engine did not produce the work's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    /// The engine was closing or closed when the call came.
    #[error("the engine is closed")]
    Closed,
    /// The runtime stopped while the call ran: it outlived the close deadline.
    #[error("the engine was closed during the call")]
    Abandoned,
    /// The work panicked (a bug in jim-export).
    #[error("internal error (a bug in jim-export): {0}")]
    Panicked(String),
    /// The runtime could not be started.
    #[error("cannot start the engine's runtime: {0}")]
    Runtime(String),
}

/// The calls in progress, by registration number.
#[derive(Debug, Default)]
struct Calls {
    state: Mutex<CallState>,
    /// Notified whenever the last call in progress ends.
    idle: Condvar,
}

#[derive(Debug)]
struct CallState {
    /// False once closing began: new calls are refused.
    open: bool,
    next_id: u64,
    tokens: HashMap<u64, CancellationToken>,
}

impl Default for CallState {
    fn default() -> Self {
        Self {
            open: true,
            next_id: 1,
            tokens: HashMap::new(),
        }
    }
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a call registered until it is dropped: by the call's task as it ends, or with the task when
/// the runtime stops.
struct Registration {
    calls: Arc<Calls>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.calls.lock();
        state.tokens.remove(&self.id);
        if state.tokens.is_empty() {
            self.calls.idle.notify_all();
        }
    }
}

/// Cancels a call's token and closes its listener gate when the caller stops waiting before the call
/// ended; closes the gate alone when it ended. A caller that stopped waiting may be a host that is
/// exiting: a Python interpreter that is finalizing aborts the process when an engine thread calls
/// into it, so the winding-down run must not reach it.
struct CallerGone {
    token: Option<CancellationToken>,
    gate: Option<Arc<ListenerGate>>,
}

impl Drop for CallerGone {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
        if let Some(gate) = self.gate.take() {
            gate.close();
        }
    }
}

/// An engine with its own multi-thread runtime, shared by every call of one binding's engine object.
pub(crate) struct Host {
    engine: Arc<Engine>,
    /// `None` once closed.
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    calls: Arc<Calls>,
    close_timeout: Duration,
    stop_timeout: Duration,
    /// How many of the runtime's threads are alive. A thread counts itself out as it ends, before the
    /// join in `close` returns, so tests can check that closing really stopped them.
    #[cfg_attr(not(test), allow(dead_code))]
    live_threads: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("running", &self.is_running())
            .field("active_calls", &self.active_calls())
            .finish()
    }
}

impl Host {
    /// Starts the runtime (threads named `jim-export-<serial>`) with a fresh [`Engine`].
    pub(crate) fn new(options: HostOptions) -> Result<Self, HostError> {
        let thread_name = format!(
            "{THREAD_NAME_PREFIX}{}",
            ENGINE_SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let live_threads = Arc::new(AtomicUsize::new(0));
        let (started, stopped) = (live_threads.clone(), live_threads.clone());
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .enable_all()
            .thread_name(thread_name)
            .on_thread_start(move || {
                started.fetch_add(1, Ordering::SeqCst);
            })
            .on_thread_stop(move || {
                stopped.fetch_sub(1, Ordering::SeqCst);
            });
        if options.worker_threads > 0 {
            builder.worker_threads(options.worker_threads);
        }
        let runtime = builder
            .build()
            .map_err(|e| HostError::Runtime(e.to_string()))?;
        Ok(Self {
            engine: Arc::new(Engine::new()),
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            calls: Arc::default(),
            close_timeout: options.close_timeout,
            stop_timeout: options.stop_timeout,
            live_threads,
        })
    }

    /// The engine the calls drive.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Runs `work` as a task on the engine's runtime, registered with `token` (which
    /// [`Host::cancel_all`] and [`Host::close`] cancel), and waits for it. When the caller stops
    /// waiting, `token` is cancelled and `gate` closed, and the task winds down on its own; when the
    /// call ends, `gate` is closed, so no callback reaches the host after it returned.
    pub(crate) async fn call<T, F>(
        &self,
        token: CancellationToken,
        gate: Option<Arc<ListenerGate>>,
        work: F,
    ) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let registration = self.register(token.clone())?;
        let mut caller_gone = CallerGone {
            token: Some(token),
            gate,
        };
        let task = self.handle.spawn(async move {
            let _registration = registration;
            work.await
        });
        let outcome = task.await;
        caller_gone.token = None;
        drop(caller_gone);
        outcome.map_err(|e| {
            if e.is_panic() {
                HostError::Panicked(panic_message(e.into_panic().as_ref()))
            } else {
                HostError::Abandoned
            }
        })
    }

    /// [`Host::call`] for a blocking caller: blocks the calling (host) thread until the call ended.
    /// The caller must not be on a thread that runs a tokio runtime.
    pub(crate) fn block_on<T, F>(
        &self,
        token: CancellationToken,
        gate: Option<Arc<ListenerGate>>,
        work: F,
    ) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.handle.block_on(self.call(token, gate, work))
    }

    fn register(&self, token: CancellationToken) -> Result<Registration, HostError> {
        let mut state = self.calls.lock();
        if !state.open {
            return Err(HostError::Closed);
        }
        let id = state.next_id;
        state.next_id += 1;
        state.tokens.insert(id, token);
        Ok(Registration {
            calls: self.calls.clone(),
            id,
        })
    }

    /// Cancels every call in progress (runs return their results marked cancelled); later calls are
    /// accepted. Only UniFFI offers it to hosts (the C ABI cancels through its cancel handles).
    #[cfg_attr(not(feature = "uniffi"), allow(dead_code))]
    pub(crate) fn cancel_all(&self) {
        for token in self.calls.lock().tokens.values() {
            token.cancel();
        }
    }

    /// Calls in progress, including cancelled ones still winding down.
    pub(crate) fn active_calls(&self) -> usize {
        self.calls.lock().tokens.len()
    }

    /// True until closing began.
    pub(crate) fn is_open(&self) -> bool {
        self.calls.lock().open
    }

    /// True until closed.
    pub(crate) fn is_running(&self) -> bool {
        self.runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Waits until no call is in progress or `end` passed; true when none is.
    fn wait_idle(&self, end: Instant) -> bool {
        let mut state = self.calls.lock();
        while !state.tokens.is_empty() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .calls
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// [`Host::close_within`] the close timeout the host was built with.
    pub(crate) fn close(&self) {
        self.close_within(self.close_timeout);
    }

    /// Closes the engine: refuses new calls, cancels those in progress and waits, until one deadline
    /// `grace` from now, for them to persist their outcomes and return their claims and for the
    /// database pools to close (background returns of claims included); then stops the runtime,
    /// ending what is left (its rows are reclaimed after their lease), and joins its threads within
    /// the stop timeout. Idempotent. On one of the runtime's own threads (a listener closing its
    /// engine) it cannot wait: the runtime then stops in the background.
    pub(crate) fn close_within(&self, grace: Duration) {
        let end = Instant::now() + grace;
        let Some(runtime) = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        {
            let mut state = self.calls.lock();
            state.open = false;
            state.tokens.values().for_each(CancellationToken::cancel);
        }
        if Handle::try_current().is_ok() {
            // Blocking here would deadlock or panic.
            runtime.shutdown_background();
            return;
        }
        if !self.wait_idle(end) {
            tracing::warn!(
                calls = self.active_calls(),
                "calls still running at the close deadline are ended; rows they hold are reclaimed after their lease"
            );
        }
        let left = end.saturating_duration_since(Instant::now());
        runtime.block_on(self.engine.close(left));
        runtime.shutdown_timeout(self.stop_timeout);
    }

    /// The live-thread count of the runtime (for tests; it outlives the host).
    #[cfg(test)]
    pub(crate) fn live_threads(&self) -> Arc<AtomicUsize> {
        self.live_threads.clone()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.close();
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{NoListener, RunListener};

    fn host(workers: usize) -> Host {
        Host::new(HostOptions {
            worker_threads: workers,
            ..HostOptions::default()
        })
        .unwrap()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn calls_run_on_the_runtime_and_close_joins_its_threads() {
        let host = host(2);
        let live = host.live_threads();
        let name = host
            .block_on(CancellationToken::new(), None, async {
                std::thread::current().name().map(str::to_string)
            })
            .unwrap()
            .unwrap();
        assert!(name.starts_with(THREAD_NAME_PREFIX), "{name}");
        assert_ne!(std::thread::current().name(), Some(name.as_str()));
        assert_eq!(host.active_calls(), 0);
        wait_for("the workers", || live.load(Ordering::SeqCst) == 2);
        host.close();
        assert_eq!(live.load(Ordering::SeqCst), 0, "closing joined the threads");
        assert!(!host.is_running() && !host.is_open());
        let refused = host.block_on(CancellationToken::new(), None, async {});
        assert_eq!(refused, Err(HostError::Closed));
        host.close();
    }

    #[test]
    fn a_panic_is_reported_not_propagated() {
        let host = host(1);
        let e = host
            .block_on::<(), _>(CancellationToken::new(), None, async { panic!("boom") })
            .unwrap_err();
        assert_eq!(e, HostError::Panicked("boom".into()));
        assert_eq!(host.active_calls(), 0);
    }

    #[test]
    fn cancel_all_reaches_every_call_and_the_host_stays_open() {
        let host = Arc::new(host(2));
        let mut waiters = Vec::new();
        for _ in 0..2 {
            let host = host.clone();
            waiters.push(std::thread::spawn(move || {
                let token = CancellationToken::new();
                let seen = token.clone();
                host.block_on(token, None, async move { seen.cancelled().await })
            }));
        }
        wait_for("two calls", || host.active_calls() == 2);
        host.cancel_all();
        for w in waiters {
            w.join().unwrap().unwrap();
        }
        assert_eq!(host.active_calls(), 0);
        assert!(host.is_open());
        host.block_on(CancellationToken::new(), None, async {})
            .unwrap();
    }

    #[test]
    fn close_cancels_calls_and_waits_for_them_to_wind_down() {
        let host = Arc::new(host(2));
        let wound_down = Arc::new(AtomicUsize::new(0));
        let caller = {
            let (host, wound_down) = (host.clone(), wound_down.clone());
            std::thread::spawn(move || {
                let token = CancellationToken::new();
                let seen = token.clone();
                host.block_on(token, None, async move {
                    seen.cancelled().await;
                    // The run persists what it did after the cancellation.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    wound_down.fetch_add(1, Ordering::SeqCst);
                })
            })
        };
        wait_for("the call", || host.active_calls() == 1);
        host.close_within(Duration::from_secs(10));
        assert_eq!(wound_down.load(Ordering::SeqCst), 1, "close waited");
        caller.join().unwrap().unwrap();
    }

    #[test]
    fn close_ends_a_call_that_outlives_the_deadline() {
        let host = Arc::new(host(1));
        let caller = {
            let host = host.clone();
            std::thread::spawn(move || {
                host.block_on(CancellationToken::new(), None, std::future::pending::<()>())
            })
        };
        wait_for("the call", || host.active_calls() == 1);
        let started = Instant::now();
        host.close_within(Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(caller.join().unwrap(), Err(HostError::Abandoned));
        assert_eq!(host.active_calls(), 0, "the runtime dropped the task");
    }

    #[test]
    fn a_caller_that_stops_waiting_cancels_the_call_and_closes_its_gate() {
        let host = host(1);
        let gate = ListenerGate::new(Arc::new(NoListener) as Arc<dyn RunListener>);
        let token = CancellationToken::new();
        let seen = token.clone();
        let call = host.call(token.clone(), Some(gate.clone()), async move {
            seen.cancelled().await;
        });
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        caller.block_on(async {
            let mut call = std::pin::pin!(call);
            // Polled once, so the task starts, then dropped as a cancelled host task would be.
            let polled = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(call.as_mut().poll(cx).is_ready())
            })
            .await;
            assert!(!polled);
        });
        assert!(token.is_cancelled());
        assert!(gate.is_closed());
        wait_for("the task to end", || host.active_calls() == 0);
    }

    #[test]
    fn a_finished_call_closes_its_gate_without_cancelling() {
        let host = host(1);
        let gate = ListenerGate::new(Arc::new(NoListener) as Arc<dyn RunListener>);
        let token = CancellationToken::new();
        host.block_on(token.clone(), Some(gate.clone()), async {})
            .unwrap();
        assert!(gate.is_closed());
        assert!(!token.is_cancelled());
    }

    #[test]
    fn the_thread_count_is_bounded() {
        let mut options = HostOptions::default();
        options.validate("worker_threads").unwrap();
        options.worker_threads = MAX_WORKER_THREADS + 1;
        let e = options.validate("worker_threads").unwrap_err();
        assert_eq!(e.paths(), ["worker_threads"]);
    }
}
