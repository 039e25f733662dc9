//! A run's progress events: sent at a bounded rate while exports complete (phase changes and the
//! final event always go), each carrying the run's counts, rate and in-flight figures.

use std::time::{Duration, Instant};

use super::RunListener;
use crate::model::ExportPhase;
use crate::report::{Counters, ProgressEvent, ProgressThrottle};

/// Progress events at a bounded rate.
pub(crate) struct ProgressState {
    throttle: ProgressThrottle,
    connected_system_id: i32,
    total: u64,
    t0: Instant,
}

impl ProgressState {
    pub(crate) fn new(
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

    pub(crate) fn maybe_emit(
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

    pub(crate) fn emit(
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::RunOptions;
    use crate::engine::LogRecord;
    use crate::report::BatchReport;

    #[derive(Default)]
    struct Events(Mutex<Vec<ProgressEvent>>);

    impl RunListener for Events {
        fn on_progress(&self, event: &ProgressEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
        fn on_batch(&self, _: &BatchReport) {}
        fn on_log(&self, _: &LogRecord) {}
    }

    fn state(total: u64) -> ProgressState {
        let options = RunOptions {
            progress_interval_ms: 60_000,
            ..RunOptions::default()
        };
        ProgressState::new(&options, 7, total, Instant::now())
    }

    #[test]
    fn events_within_the_interval_are_held_back_but_a_phase_change_goes() {
        let events = Events::default();
        let mut progress = state(10);
        let counters = Counters::default();
        progress.maybe_emit(&events, ExportPhase::Executing, (1, 4), &counters);
        progress.maybe_emit(&events, ExportPhase::Executing, (2, 4), &counters);
        progress.maybe_emit(&events, ExportPhase::ResolvingReferences, (3, 4), &counters);
        let seen = events.0.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].in_flight, 1);
        assert_eq!(seen[1].phase, ExportPhase::ResolvingReferences);
        assert_eq!(seen[1].message, "Exporting reference-bearing exports");
    }

    #[test]
    fn an_explicit_event_always_goes_and_carries_the_counts() {
        let events = Events::default();
        let mut progress = state(2);
        let counters = Counters {
            succeeded: 2,
            failed: 1,
            deferred: 1,
            ..Counters::default()
        };
        progress.maybe_emit(&events, ExportPhase::Executing, (0, 4), &counters);
        progress.emit(
            &events,
            ExportPhase::Executing,
            0,
            4,
            "still going",
            &counters,
        );
        let seen = events.0.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let last = &seen[1];
        assert_eq!(last.connected_system_id, 7);
        assert_eq!((last.succeeded, last.failed, last.deferred), (2, 1, 1));
        assert_eq!(last.processed, counters.processed());
        // More processed than the run counted at its start (rows queued meanwhile): the total follows.
        assert_eq!(last.total, counters.processed().max(2));
        assert_eq!(last.message, "still going");
    }
}
