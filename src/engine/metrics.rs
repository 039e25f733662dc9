//! A pass's own measurements: when the first export went to the directory, how many went and came
//! back, flushes persisted, and whether the pass has stalled.
//! The directory's counters are its own; [`directory_stats_since`] gives a pass its share of them,
//! since a watch's directory outlives its passes. Pure bookkeeping over a clock the caller passes in.

use std::time::{Duration, Instant};

use crate::directory::DirectoryStats;

/// What one pass measures as it goes.
#[derive(Debug)]
pub(crate) struct PassMeter {
    t0: Instant,
    dispatched: u64,
    completed: u64,
    flushes: u64,
    first_write: Option<Duration>,
    /// Exports completed plus flushes persisted, and when that number last moved.
    progress_mark: (u64, Instant),
}

impl PassMeter {
    /// A meter for a pass whose clock started at `t0`, created at `now`.
    pub(crate) fn new(t0: Instant, now: Instant) -> Self {
        Self {
            t0,
            dispatched: 0,
            completed: 0,
            flushes: 0,
            first_write: None,
            progress_mark: (0, now),
        }
    }

    /// One export handed to the directory at `now`; the first one is the pass's first write.
    pub(crate) fn dispatched(&mut self, now: Instant) {
        if self.first_write.is_none() {
            self.first_write = Some(now.saturating_duration_since(self.t0));
        }
        self.dispatched += 1;
    }

    /// One result back from the directory.
    pub(crate) fn completed(&mut self) {
        self.completed += 1;
    }

    /// One flush persisted.
    pub(crate) fn flushed(&mut self) {
        self.flushes += 1;
    }

    /// Flushes persisted so far.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Time from the start of the pass to its first write, if it wrote.
    pub(crate) fn first_write(&self) -> Option<Duration> {
        self.first_write
    }

    /// True when nothing has completed and nothing was persisted for `after` up to `now`; it then
    /// waits another `after` before saying so again.
    pub(crate) fn stalled(&mut self, now: Instant, after: Duration) -> bool {
        let done = self.completed + self.flushes;
        if done != self.progress_mark.0 {
            self.progress_mark = (done, now);
            return false;
        }
        if now.saturating_duration_since(self.progress_mark.1) >= after {
            self.progress_mark.1 = now;
            return true;
        }
        false
    }
}

/// The directory's counters since `base` (all of them without one); the peak and the in-flight limit
/// stay the directory's, as they describe it rather than a pass.
pub(crate) fn directory_stats_since(
    now: DirectoryStats,
    base: Option<DirectoryStats>,
) -> DirectoryStats {
    let Some(b) = base else { return now };
    DirectoryStats {
        adds: now.adds.saturating_sub(b.adds),
        modifies: now.modifies.saturating_sub(b.modifies),
        modify_dns: now.modify_dns.saturating_sub(b.modify_dns),
        deletes: now.deletes.saturating_sub(b.deletes),
        searches: now.searches.saturating_sub(b.searches),
        connects: now.connects.saturating_sub(b.connects),
        lost_connections: now.lost_connections.saturating_sub(b.lost_connections),
        retries: now.retries.saturating_sub(b.retries),
        peak_in_flight: now.peak_in_flight,
        occupancy: now.occupancy.since(&b.occupancy),
        export_latency: now.export_latency.since(&b.export_latency),
        in_flight_limit: now.in_flight_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::OccupancyStats;
    use crate::directory::limit::LimitStats;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_write_is_the_first_dispatch_only() {
        let t0 = Instant::now();
        let mut meter = PassMeter::new(t0, t0);
        assert_eq!(meter.first_write(), None);
        meter.dispatched(t0 + 2 * SECOND);
        meter.dispatched(t0 + 5 * SECOND);
        assert_eq!(meter.first_write(), Some(2 * SECOND));
        assert_eq!(meter.dispatched, 2);
    }

    #[test]
    fn a_stall_is_reported_once_per_interval_until_something_moves() {
        let t0 = Instant::now();
        let after = 10 * SECOND;
        let mut meter = PassMeter::new(t0, t0);
        assert!(!meter.stalled(t0 + 9 * SECOND, after));
        assert!(meter.stalled(t0 + 10 * SECOND, after));
        // Said once; again only after another interval.
        assert!(!meter.stalled(t0 + 15 * SECOND, after));
        assert!(meter.stalled(t0 + 20 * SECOND, after));
        // A completion or a flush restarts the wait.
        meter.completed();
        assert!(!meter.stalled(t0 + 21 * SECOND, after));
        assert!(!meter.stalled(t0 + 30 * SECOND, after));
        meter.flushed();
        assert!(!meter.stalled(t0 + 31 * SECOND, after));
        assert!(meter.stalled(t0 + 41 * SECOND, after));
        assert_eq!(meter.flushes(), 1);
    }

    #[test]
    fn directory_counters_count_from_the_base_but_the_peak_and_limit_do_not() {
        let base = DirectoryStats {
            adds: 5,
            modifies: 7,
            retries: 1,
            peak_in_flight: 30,
            occupancy: OccupancyStats {
                busy: SECOND,
                operation_time: 2 * SECOND,
            },
            ..DirectoryStats::default()
        };
        let limit = LimitStats {
            current: 12,
            ..LimitStats::default()
        };
        let now = DirectoryStats {
            adds: 8,
            modifies: 7,
            deletes: 2,
            retries: 4,
            peak_in_flight: 40,
            occupancy: OccupancyStats {
                busy: 3 * SECOND,
                operation_time: 8 * SECOND,
            },
            in_flight_limit: limit,
            ..DirectoryStats::default()
        };
        let since = directory_stats_since(now.clone(), Some(base));
        assert_eq!(since.adds, 3);
        assert_eq!(since.modifies, 0);
        assert_eq!(since.deletes, 2);
        assert_eq!(since.retries, 3);
        assert_eq!(since.peak_in_flight, 40);
        // The pass's own busy time (2 s) and operation time (6 s): a mean of 3 in flight.
        assert_eq!(since.occupancy.mean_in_flight(), 3.0);
        assert_eq!(since.in_flight_limit, limit);
        assert_eq!(directory_stats_since(now.clone(), None), now);
    }
}
