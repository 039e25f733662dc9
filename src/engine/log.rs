//! A run's logs: the run's own summary lines ([`Logger`]) and every `tracing` event of this library
//! that happens inside the run, carried to the run's listener ([`RunLog`]).
//!
//! Why a dispatcher per run rather than a global subscriber: the library never installs a global
//! subscriber behind its host's back, several runs of one process each report to their own host
//! listener, and a Rust host's own subscriber must keep seeing every event. So each run gets a
//! [`tracing::Dispatch`] that hands the run's events to its listener and forwards everything (spans
//! included) to the dispatcher that was current when the run started. The run's future runs with it
//! as the default, and every task the run spawns carries it along
//! (`WithSubscriber::with_current_subscriber`), since tokio tasks do not inherit a default.
//! Events after the run returned reach nobody: the listener is the run's [`super::ListenerGate`].

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};

use super::{LogLevel, LogRecord, RunListener};

/// The target of the run's own summary lines (what hosts have always seen there).
const ENGINE_TARGET: &str = "jim_export::engine";

/// Only this library's events reach a host: sqlx's statement log (SQL text) and other crates'
/// internals stay with the host's own subscriber, if any.
const OUR_TARGETS: &str = "jim_export";

/// Writes the run's own log lines as `tracing` events (target `jim_export::engine`); the run's
/// [`RunLog`] hands them to its listener with every other event of the run.
#[derive(Clone)]
pub(crate) struct Logger {
    /// Unused since the lines travel through `tracing`; kept so the call sites did not change while
    /// `run.rs` was being split. Remove with them.
    _listener: Arc<dyn RunListener>,
}

impl Logger {
    pub(crate) fn new(listener: Arc<dyn RunListener>) -> Self {
        Self {
            _listener: listener,
        }
    }

    fn record(&self, level: LogLevel, message: String) {
        match level {
            LogLevel::Trace => tracing::trace!(target: ENGINE_TARGET, "{message}"),
            LogLevel::Debug => tracing::debug!(target: ENGINE_TARGET, "{message}"),
            LogLevel::Info => tracing::info!(target: ENGINE_TARGET, "{message}"),
            LogLevel::Warn => tracing::warn!(target: ENGINE_TARGET, "{message}"),
            LogLevel::Error => tracing::error!(target: ENGINE_TARGET, "{message}"),
        }
    }

    pub(crate) fn debug(&self, message: String) {
        self.record(LogLevel::Debug, message);
    }

    pub(crate) fn info(&self, message: String) {
        self.record(LogLevel::Info, message);
    }

    pub(crate) fn warn(&self, message: String) {
        self.record(LogLevel::Warn, message);
    }

    pub(crate) fn error(&self, message: String) {
        self.record(LogLevel::Error, message);
    }
}

/// The dispatcher a run (or watch) makes current for itself and its tasks, or `None` when its
/// listener takes no logs (then the run leaves the current dispatcher alone and costs nothing).
pub(crate) fn run_dispatch(listener: &Arc<dyn RunListener>, level: LogLevel) -> Option<Dispatch> {
    if !listener.wants_logs() {
        return None;
    }
    let outer = tracing::dispatcher::get_default(Dispatch::clone);
    Some(Dispatch::new(RunLog {
        listener: listener.clone(),
        level,
        // The outer dispatcher's own hint is not public; the process-wide maximum bounds it.
        outer_max: LevelFilter::current(),
        outer,
    }))
}

thread_local! {
    /// Set while this thread hands a record to a listener: an event raised meanwhile (by the
    /// listener's adapter, say) is not handed to a listener again, so a failing listener cannot
    /// feed itself.
    static DELIVERING: Cell<bool> = const { Cell::new(false) };
}

/// Hands a run's events at or above `level` to its listener and forwards everything to `outer`.
///
/// Spans belong to `outer` alone (their ids are its ids): the records carry the event's own fields,
/// not those of the spans around it.
pub(crate) struct RunLog {
    listener: Arc<dyn RunListener>,
    level: LogLevel,
    outer_max: LevelFilter,
    outer: Dispatch,
}

impl RunLog {
    /// True for the events the listener gets; decided from static metadata alone, so a filtered
    /// callsite is turned off once (its interest) instead of being looked at on every hit.
    fn wants(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && LogLevel::from(metadata.level()) >= self.level
            && metadata.target().starts_with(OUR_TARGETS)
    }

    fn deliver(&self, event: &Event<'_>) {
        if DELIVERING.with(Cell::get) {
            return;
        }
        let metadata = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        let record = LogRecord {
            level: LogLevel::from(metadata.level()),
            target: metadata.target().to_string(),
            message: text.finish(),
        };
        /// Clears the flag however the listener returns.
        struct Delivering;
        impl Drop for Delivering {
            fn drop(&mut self) {
                DELIVERING.with(|d| d.set(false));
            }
        }
        DELIVERING.with(|d| d.set(true));
        let _delivering = Delivering;
        self.listener.on_log(&record);
    }
}

impl Subscriber for RunLog {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let outer = self.outer.register_callsite(metadata);
        if !self.wants(metadata) {
            outer
        } else if outer.is_always() {
            Interest::always()
        } else {
            // Ours always, the outer's perhaps: `enabled` asks it per event.
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let ours = match self.level {
            LogLevel::Trace => LevelFilter::TRACE,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        };
        Some(ours.max(self.outer_max))
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.wants(metadata) || self.outer.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.outer.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.outer.record(span, values)
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.outer.record_follows_from(span, follows)
    }

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        if self.wants(metadata) {
            self.deliver(event);
        }
        if self.outer.enabled(metadata) {
            self.outer.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.outer.enter(span)
    }

    fn exit(&self, span: &Id) {
        self.outer.exit(span)
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.outer.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.outer.try_close(id)
    }

    fn current_span(&self) -> tracing_core::span::Current {
        self.outer.current_span()
    }
}

/// An event's message and fields as one line: `message name=value …`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        let mut line = self.message;
        line.push_str(&self.fields);
        line
    }

    /// Field names that may hold a secret: the engine never logs one, this is the net under that.
    fn is_secret(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        ["password", "secret", "pwd", "credential", "token"]
            .iter()
            .any(|s| name.contains(s))
    }

    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if field.name() == "message" {
            let _ = self.message.write_fmt(value);
        } else if Self::is_secret(field.name()) {
            let _ = write!(self.fields, " {}=[redacted]", field.name());
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing::instrument::WithSubscriber;

    use super::*;
    use crate::engine::ListenerGate;

    #[derive(Default)]
    struct Keep(Mutex<Vec<LogRecord>>);

    impl RunListener for Keep {
        fn on_log(&self, record: &LogRecord) {
            self.0.lock().unwrap().push(record.clone());
        }
    }

    impl Keep {
        fn messages(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.message.clone())
                .collect()
        }
    }

    /// Counts the events it sees: the "host's own subscriber" of a Rust host.
    #[derive(Default)]
    struct Outer(AtomicUsize);

    impl Subscriber for Outer {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(7)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn dispatch(listener: Arc<dyn RunListener>, level: LogLevel) -> Dispatch {
        run_dispatch(&listener, level).unwrap()
    }

    #[test]
    fn events_at_the_level_reach_the_listener_with_their_fields_and_the_outer_subscriber_too() {
        let outer = Arc::new(Outer::default());
        let keep = Arc::new(Keep::default());
        tracing::subscriber::with_default(outer.clone(), || {
            let run = dispatch(keep.clone(), LogLevel::Info);
            tracing::dispatcher::with_default(&run, || {
                tracing::debug!(rows = 3, "below the level");
                tracing::info!(rows = 3, what = "claim", "the database answers again");
                tracing::warn!(target: "sqlx::query", "SELECT 1");
                Logger::new(keep.clone()).warn("a summary line".into());
                let span = tracing::info_span!("flush", size = 2);
                let _in = span.enter();
                tracing::error!(error = %"boom", "failed");
            });
        });
        assert_eq!(
            keep.messages(),
            vec![
                "the database answers again rows=3 what=claim",
                "a summary line",
                "failed error=boom"
            ]
        );
        let records = keep.0.lock().unwrap();
        assert_eq!(records[0].level, LogLevel::Info);
        assert_eq!(records[0].target, "jim_export::engine::log::tests");
        assert_eq!(records[1].target, ENGINE_TARGET);
        assert_eq!(records[1].level, LogLevel::Warn);
        assert_eq!(
            outer.0.load(Ordering::SeqCst),
            5,
            "the outer subscriber saw every event, filtered or not"
        );
    }

    #[test]
    fn fields_that_may_hold_a_secret_are_redacted() {
        let keep = Arc::new(Keep::default());
        let run = dispatch(keep.clone(), LogLevel::Trace);
        tracing::dispatcher::with_default(&run, || {
            tracing::info!(
                password = "hunter2",
                bind_secret = "s",
                dn = "cn=a",
                "bound"
            );
        });
        assert_eq!(
            keep.messages(),
            vec!["bound password=[redacted] bind_secret=[redacted] dn=cn=a"]
        );
    }

    #[test]
    fn each_run_gets_only_its_own_events_and_nothing_after_its_gate_closed() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (a, b) = (Arc::new(Keep::default()), Arc::new(Keep::default()));
        let gate_a = ListenerGate::new(a.clone());
        let gate_a_listener: Arc<dyn RunListener> = gate_a.clone();
        let run_a = dispatch(gate_a_listener, LogLevel::Debug);
        let run_b = dispatch(b.clone(), LogLevel::Debug);
        rt.block_on(async {
            let task_a = async {
                tracing::info!("a in the run");
                // A task the run spawns carries the run's dispatcher along.
                tokio::spawn(async { tracing::info!("a in a task") }.with_current_subscriber())
                    .await
                    .unwrap();
            }
            .with_subscriber(run_a.clone());
            let task_b = async { tracing::info!("b in the run") }.with_subscriber(run_b);
            tokio::join!(task_a, task_b);
        });
        gate_a.close();
        tracing::dispatcher::with_default(&run_a, || tracing::info!("a after the run"));
        assert_eq!(a.messages(), vec!["a in the run", "a in a task"]);
        assert_eq!(b.messages(), vec!["b in the run"]);
    }

    #[test]
    fn a_listener_that_takes_no_logs_gets_no_dispatcher() {
        let none: Arc<dyn RunListener> = Arc::new(crate::engine::NoListener);
        assert!(run_dispatch(&none, LogLevel::Trace).is_none());
    }

    /// A listener whose `on_log` itself logs (as the UniFFI adapter does when the host's code
    /// fails).
    struct Loud(AtomicUsize);

    impl RunListener for Loud {
        fn on_log(&self, _: &LogRecord) {
            self.0.fetch_add(1, Ordering::SeqCst);
            tracing::warn!("the host's run listener failed");
        }
    }

    #[test]
    fn an_event_raised_while_delivering_is_not_delivered_again() {
        let loud = Arc::new(Loud(AtomicUsize::new(0)));
        let run = dispatch(loud.clone(), LogLevel::Debug);
        tracing::dispatcher::with_default(&run, || tracing::info!("once"));
        assert_eq!(loud.0.load(Ordering::SeqCst), 1);
    }
}
