//! Progress events, emitted at a bounded rate while a run goes on.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::ExportPhase;

/// A snapshot of a run's progress, for the host's progress display (JIM copies it into its Activity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ProgressEvent {
    /// `ConnectedSystems.Id` of the run.
    pub connected_system_id: i32,
    /// The phase (JIM's `ExportPhase`): Preparing, Executing (plain exports), ResolvingReferences
    /// (reference-bearing exports), Completed.
    pub phase: ExportPhase,
    /// Eligible exports counted when the run started (more may become due while it runs).
    pub total: u64,
    /// Exports with a persisted outcome so far.
    pub processed: u64,
    /// Of those, succeeded (written in part included).
    pub succeeded: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Of those, deferred.
    pub deferred: u64,
    /// Objects per second since the run started.
    pub rate: f64,
    /// Directory operations outstanding right now.
    pub in_flight: u32,
    /// The in-flight limit in force right now.
    pub in_flight_limit: u32,
    /// Milliseconds since the run started.
    pub elapsed_ms: u64,
    /// A short human-readable line.
    pub message: String,
}

/// Lets progress events through at most once per interval (phase changes and the final event always
/// pass), so a host that writes each event to its database is not flooded.
#[derive(Debug)]
pub struct ProgressThrottle {
    interval: Duration,
    last: Option<Instant>,
    last_phase: Option<ExportPhase>,
}

impl ProgressThrottle {
    /// A throttle passing at most one event per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            last_phase: None,
        }
    }

    /// True when an event for `phase` may be emitted now; records the emission.
    pub fn allow(&mut self, phase: ExportPhase, now: Instant) -> bool {
        let phase_changed = self.last_phase != Some(phase);
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.interval);
        if phase_changed || due || phase == ExportPhase::Completed {
            self.last = Some(now);
            self.last_phase = Some(phase);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_passes_phase_changes_and_spaced_events() {
        let mut t = ProgressThrottle::new(Duration::from_millis(500));
        let t0 = Instant::now();
        assert!(t.allow(ExportPhase::Preparing, t0));
        assert!(
            t.allow(ExportPhase::Executing, t0),
            "a phase change always passes"
        );
        assert!(!t.allow(ExportPhase::Executing, t0 + Duration::from_millis(100)));
        assert!(t.allow(ExportPhase::Executing, t0 + Duration::from_millis(600)));
        assert!(t.allow(ExportPhase::Completed, t0 + Duration::from_millis(601)));
    }
}
