//! How full the directory was kept: the time-weighted mean of the operations in flight over the time
//! any were. Kept as two integrals (busy time, and operation time: in-flight count × time) updated at
//! every entry and exit, so a short run is measured as exactly as a long one; sampling on a timer
//! missed runs shorter than its interval and could not be compared with the peak. The mean can never
//! exceed the peak, since no instant had more in flight than the peak.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The two integrals; their ratio is the mean in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OccupancyStats {
    /// Time during which at least one operation was in flight.
    pub busy: Duration,
    /// The integral of the in-flight count over time (one operation in flight for one second adds
    /// one second).
    pub operation_time: Duration,
}

impl OccupancyStats {
    /// Mean operations in flight while any were (0 when none ever were).
    pub fn mean_in_flight(&self) -> f64 {
        if self.busy.is_zero() {
            0.0
        } else {
            self.operation_time.as_secs_f64() / self.busy.as_secs_f64()
        }
    }

    /// What accrued since `base` (a snapshot taken earlier of the same gate).
    pub fn since(&self, base: &OccupancyStats) -> OccupancyStats {
        OccupancyStats {
            busy: self.busy.saturating_sub(base.busy),
            operation_time: self.operation_time.saturating_sub(base.operation_time),
        }
    }
}

/// The running integrals, advanced under a lock at each entry and exit (two uncontended locks per
/// directory operation, far below an operation's cost).
#[derive(Debug)]
pub(crate) struct Occupancy {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    in_flight: u32,
    since: Instant,
    totals: OccupancyStats,
}

impl State {
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.since);
        if self.in_flight > 0 {
            self.totals.busy += dt;
            self.totals.operation_time += dt.saturating_mul(self.in_flight);
        }
        self.since = now.max(self.since);
    }
}

impl Occupancy {
    /// Nothing in flight yet.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                since: now,
                totals: OccupancyStats::default(),
            }),
        }
    }

    /// One operation entered at `now`.
    pub(crate) fn enter(&self, now: Instant) {
        let mut s = self.lock();
        s.advance(now);
        s.in_flight = s.in_flight.saturating_add(1);
    }

    /// One operation left at `now`.
    pub(crate) fn leave(&self, now: Instant) {
        let mut s = self.lock();
        s.advance(now);
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// The integrals up to `now`, the interval still open included.
    pub(crate) fn snapshot(&self, now: Instant) -> OccupancyStats {
        let mut s = self.lock();
        s.advance(now);
        s.totals
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two counters and an instant, consistent after every statement: a panic
        // elsewhere while holding the lock cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_mean_is_weighted_by_time_and_leaves_idle_time_out() {
        let t0 = Instant::now();
        let o = Occupancy::new(t0);
        assert_eq!(o.snapshot(t0).mean_in_flight(), 0.0);
        // Idle 100 ms, then 1 in flight for 10 ms, 3 for 30 ms, idle 500 ms, 2 for 20 ms.
        o.enter(t0 + 100 * MS);
        o.enter(t0 + 110 * MS);
        o.enter(t0 + 110 * MS);
        o.leave(t0 + 140 * MS);
        o.leave(t0 + 140 * MS);
        o.leave(t0 + 140 * MS);
        o.enter(t0 + 640 * MS);
        o.enter(t0 + 640 * MS);
        let s = o.snapshot(t0 + 660 * MS);
        assert_eq!(s.busy, 60 * MS);
        assert_eq!(s.operation_time, 10 * MS + 90 * MS + 40 * MS);
        assert!((s.mean_in_flight() - 140.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn a_run_shorter_than_any_timer_is_still_measured() {
        let t0 = Instant::now();
        let o = Occupancy::new(t0);
        for i in 0..32u32 {
            o.enter(t0 + i * Duration::from_micros(10));
        }
        for i in 0..32u32 {
            o.leave(t0 + 2 * MS + i * Duration::from_micros(10));
        }
        let mean = o.snapshot(t0 + 3 * MS).mean_in_flight();
        assert!(mean > 1.0 && mean <= 32.0, "{mean}");
    }

    #[test]
    fn the_mean_never_exceeds_the_peak() {
        let t0 = Instant::now();
        let o = Occupancy::new(t0);
        let mut peak = 0u32;
        let mut in_flight = 0u32;
        // A deterministic walk of entries and exits.
        for step in 0..1_000u32 {
            let now = t0 + step * MS;
            if in_flight == 0 || (step * 7919) % 5 < 3 {
                o.enter(now);
                in_flight += 1;
            } else {
                o.leave(now);
                in_flight -= 1;
            }
            peak = peak.max(in_flight);
        }
        let mean = o.snapshot(t0 + 1_000 * MS).mean_in_flight();
        assert!(mean >= 1.0 && mean <= f64::from(peak), "{mean} > {peak}");
    }

    #[test]
    fn since_gives_a_later_pass_its_own_share() {
        let t0 = Instant::now();
        let o = Occupancy::new(t0);
        o.enter(t0);
        o.enter(t0);
        o.leave(t0 + 10 * MS);
        o.leave(t0 + 10 * MS);
        let base = o.snapshot(t0 + 20 * MS);
        o.enter(t0 + 30 * MS);
        o.leave(t0 + 40 * MS);
        let pass = o.snapshot(t0 + 50 * MS).since(&base);
        assert_eq!(pass.busy, 10 * MS);
        assert_eq!(pass.mean_in_flight(), 1.0);
    }
}
