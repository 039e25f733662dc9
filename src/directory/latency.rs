//! Per-export latency: how long each export took from the start of its execution to its result,
//! kept in an HDR histogram so that a run of a million exports costs a few kilobytes, not a
//! million samples.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The longest latency told apart from longer ones (an hour, in microseconds); longer ones count as
/// an hour.
const MAX_MICROS: u64 = 3_600_000_000;
/// Two significant figures: percentiles within 1 %, a histogram of about 25 KB.
const SIGNIFICANT_FIGURES: u8 = 2;

/// A distribution of export latencies (microsecond resolution). Snapshots of a directory's
/// distribution subtract ([`ExportLatency::since`]) to give the latencies of one pass.
#[derive(Debug, Clone)]
pub struct ExportLatency {
    // `None` only if the histogram could not be sized, which the constants above rule out; then
    // nothing is recorded rather than a panic.
    histogram: Option<Histogram<u64>>,
}

impl Default for ExportLatency {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_FIGURES).ok(),
        }
    }
}

impl PartialEq for ExportLatency {
    fn eq(&self, other: &Self) -> bool {
        self.histogram == other.histogram
    }
}

impl Eq for ExportLatency {}

impl ExportLatency {
    /// Records one export's latency.
    pub fn record(&mut self, latency: Duration) {
        if let Some(h) = &mut self.histogram {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            h.saturating_record(micros.clamp(1, MAX_MICROS));
        }
    }

    /// Exports recorded.
    pub fn count(&self) -> u64 {
        self.histogram.as_ref().map_or(0, Histogram::len)
    }

    /// The latency at `quantile` (0.0 to 1.0) in milliseconds, or `None` when nothing was recorded.
    pub fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        let h = self.histogram.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(quantile.clamp(0.0, 1.0)) as f64 / 1000.0)
    }

    /// The median latency in milliseconds.
    pub fn p50_ms(&self) -> Option<f64> {
        self.quantile_ms(0.5)
    }

    /// The 99th percentile latency in milliseconds.
    pub fn p99_ms(&self) -> Option<f64> {
        self.quantile_ms(0.99)
    }

    /// What was recorded after `base` (an earlier snapshot of the same distribution).
    pub fn since(&self, base: &ExportLatency) -> ExportLatency {
        let mut out = self.clone();
        if let (Some(h), Some(b)) = (&mut out.histogram, &base.histogram)
            && h.subtract(b).is_err()
        {
            // Not an earlier snapshot of this distribution: everything counts.
            out = self.clone();
        }
        out
    }
}

/// A distribution shared by the tasks that record into it.
#[derive(Debug, Default)]
pub(crate) struct SharedLatency(Mutex<ExportLatency>);

impl SharedLatency {
    /// Records one export's latency.
    pub(crate) fn record(&self, latency: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(latency);
    }

    /// The distribution so far.
    pub(crate) fn snapshot(&self) -> ExportLatency {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_recorded_latencies() {
        let mut l = ExportLatency::default();
        assert_eq!((l.count(), l.p50_ms(), l.p99_ms()), (0, None, None));
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.count(), 100);
        let (p50, p99) = (l.p50_ms().unwrap(), l.p99_ms().unwrap());
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.0).contains(&p99), "{p99}");
    }

    #[test]
    fn since_an_earlier_snapshot_keeps_only_the_later_latencies() {
        let mut l = ExportLatency::default();
        l.record(Duration::from_millis(500));
        let base = l.clone();
        l.record(Duration::from_millis(2));
        l.record(Duration::from_millis(2));
        let pass = l.since(&base);
        assert_eq!(pass.count(), 2);
        assert!(pass.p99_ms().unwrap() < 3.0);
    }

    #[test]
    fn a_zero_or_huge_latency_is_clamped_not_lost() {
        let mut l = ExportLatency::default();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10 * 3600));
        assert_eq!(l.count(), 2);
    }
}
