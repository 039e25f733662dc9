//! How a run talks back to its host while it goes on: progress, batch reports and log records.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

pub use crate::config::LogLevel;
use crate::report::{BatchReport, ProgressEvent};

/// One log record of a run: a `tracing` event of this library (`jim_export::…` targets) that
/// happened inside the run. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// Where it comes from: the module path of the event (e.g. `jim_export::store::queue`), or
    /// `jim_export::engine` for the run's own summary lines.
    pub target: String,
    /// The message, followed by the event's fields as ` name=value` in the order they were given
    /// (as `tracing`'s text formatter writes them).
    pub message: String,
}

/// Receives a run's events. Called from the engine's worker threads, possibly concurrently from
/// several runs; implementations must be quick and must not call back into the engine's run.
pub trait RunListener: Send + Sync {
    /// A progress snapshot, at most once per `progress_interval_ms` (phase changes always).
    fn on_progress(&self, event: &ProgressEvent) {
        let _ = event;
    }

    /// The outcomes of one flush, after they were persisted.
    fn on_batch(&self, report: &BatchReport) {
        let _ = report;
    }

    /// A log record at or above the run's `options.log_level`.
    fn on_log(&self, record: &LogRecord) {
        let _ = record;
    }

    /// False when this listener ignores [`RunListener::on_log`]: the run then does not collect log
    /// records at all (no formatting, no per-event dispatch).
    fn wants_logs(&self) -> bool {
        true
    }
}

/// A listener that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoListener;

impl RunListener for NoListener {
    fn wants_logs(&self) -> bool {
        false
    }
}

/// A run's listener that can be closed. Once [`ListenerGate::close`] has returned, the host's
/// listener is never called again and this gate no longer holds it: callbacks in progress on other
/// threads have finished and new ones are dropped.
///
/// Why: a run may outlive the host's interest in it. Work that is still winding down (a run whose
/// host stopped waiting, a task that ends after the run returned) must not call into a host that may
/// be tearing itself down: a Python interpreter that is finalizing ends any thread that calls into
/// it, which aborts the process when that thread is an engine thread. Closing also releases the
/// host's listener object on the closing thread, not on whichever engine thread drops it last.
pub struct ListenerGate {
    state: Mutex<GateState>,
    idle: Condvar,
}

struct GateState {
    listener: Option<Arc<dyn RunListener>>,
    /// Callbacks in progress.
    active: usize,
}

thread_local! {
    /// The gates whose callbacks this thread is inside (a listener that closes its own gate must not
    /// wait for itself).
    static INSIDE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl ListenerGate {
    /// A gate open on `listener`.
    pub fn new(listener: Arc<dyn RunListener>) -> Arc<ListenerGate> {
        Arc::new(ListenerGate {
            state: Mutex::new(GateState {
                listener: Some(listener),
                active: 0,
            }),
            idle: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id(&self) -> usize {
        self as *const ListenerGate as usize
    }

    /// Stops calling the host's listener and waits for the callbacks in progress on other threads
    /// (callbacks are meant to be quick). Idempotent.
    pub fn close(&self) {
        let mut state = self.lock();
        let listener = state.listener.take();
        let reentrant = INSIDE.with(|inside| inside.borrow().contains(&self.id()));
        if !reentrant {
            while state.active > 0 {
                state = self.idle.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
        drop(state);
        // Released outside the lock: dropping a host object may call into the host.
        drop(listener);
    }

    /// A guard that closes this gate when dropped (however the run's future ends: returned,
    /// failed, or dropped by its caller).
    pub fn close_on_drop(self: &Arc<Self>) -> CloseOnDrop {
        CloseOnDrop(self.clone())
    }

    /// True once [`ListenerGate::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().listener.is_none()
    }

    fn call(&self, f: impl FnOnce(&dyn RunListener)) {
        let listener = {
            let mut state = self.lock();
            let Some(listener) = state.listener.clone() else {
                return;
            };
            state.active += 1;
            listener
        };
        /// Leaves the callback however it ends (a host that unwinds included).
        struct Leave<'a>(&'a ListenerGate, Option<Arc<dyn RunListener>>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                INSIDE.with(|inside| {
                    let mut inside = inside.borrow_mut();
                    if let Some(i) = inside.iter().rposition(|g| *g == self.0.id()) {
                        inside.remove(i);
                    }
                });
                // The last reference may be this one when the gate closed meanwhile from inside
                // the callback: release it before the closer is told.
                drop(self.1.take());
                let mut state = self.0.lock();
                state.active -= 1;
                if state.active == 0 {
                    self.0.idle.notify_all();
                }
            }
        }
        INSIDE.with(|inside| inside.borrow_mut().push(self.id()));
        let leave = Leave(self, Some(listener));
        if let Some(l) = leave.1.as_deref() {
            f(l);
        }
        drop(leave);
    }
}

/// Closes a [`ListenerGate`] when dropped.
pub struct CloseOnDrop(Arc<ListenerGate>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl RunListener for ListenerGate {
    fn on_progress(&self, event: &ProgressEvent) {
        self.call(|l| l.on_progress(event));
    }

    fn on_batch(&self, report: &BatchReport) {
        self.call(|l| l.on_batch(report));
    }

    fn on_log(&self, record: &LogRecord) {
        self.call(|l| l.on_log(record));
    }

    fn wants_logs(&self) -> bool {
        self.lock()
            .listener
            .as_ref()
            .is_some_and(|l| l.wants_logs())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn record() -> LogRecord {
        LogRecord {
            level: LogLevel::Info,
            target: "t".into(),
            message: "m".into(),
        }
    }

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl RunListener for Counting {
        fn on_log(&self, _: &LogRecord) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_closed_gate_calls_nothing_and_lets_the_listener_go() {
        let counting = Arc::new(Counting::default());
        let gate = ListenerGate::new(counting.clone());
        gate.on_log(&record());
        gate.close();
        gate.on_log(&record());
        gate.close();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        assert!(gate.is_closed());
        assert_eq!(
            Arc::strong_count(&counting),
            1,
            "the gate let the listener go"
        );
    }

    /// A listener that blocks in `on_log` until told to return.
    struct Blocking {
        entered: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
        returned: AtomicUsize,
    }

    impl RunListener for Blocking {
        fn on_log(&self, _: &LogRecord) {
            let _ = self.entered.lock().unwrap().send(());
            let _ = self.release.lock().unwrap().recv();
            self.returned.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn closing_waits_for_a_callback_in_progress() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let blocking = Arc::new(Blocking {
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
            returned: AtomicUsize::new(0),
        });
        let gate = ListenerGate::new(blocking.clone());
        let caller = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.on_log(&record()))
        };
        entered.recv().unwrap();
        let (closed_tx, closed) = mpsc::channel();
        let closer = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.close();
                closed_tx.send(()).unwrap();
            })
        };
        assert!(
            closed.recv_timeout(Duration::from_millis(200)).is_err(),
            "close returned while a callback was still running"
        );
        release.send(()).unwrap();
        closed.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(blocking.returned.load(Ordering::SeqCst), 1);
        caller.join().unwrap();
        closer.join().unwrap();
        assert_eq!(Arc::strong_count(&blocking), 1);
    }

    /// A listener that closes its own gate from inside a callback (a host shutting down from its
    /// listener).
    struct Closing(Mutex<Option<Arc<ListenerGate>>>, AtomicUsize);

    impl RunListener for Closing {
        fn on_log(&self, _: &LogRecord) {
            self.1.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = self.0.lock().unwrap().take() {
                gate.close();
            }
        }
    }

    #[test]
    fn a_listener_may_close_its_own_gate() {
        let closing = Arc::new(Closing(Mutex::new(None), AtomicUsize::new(0)));
        let gate = ListenerGate::new(closing.clone());
        *closing.0.lock().unwrap() = Some(gate.clone());
        gate.on_log(&record());
        gate.on_log(&record());
        assert!(gate.is_closed());
        assert_eq!(closing.1.load(Ordering::SeqCst), 1);
        assert_eq!(Arc::strong_count(&closing), 1);
    }
}
