//! Flush batching: outcomes wait in a buffer and leave it in flushes of at most `size` entries and
//! `weight` units of work, as soon as the buffer holds a full flush, its oldest entry has waited
//! `interval`, or the caller forces it (the end of a pass). Size or age, whichever comes first: a
//! busy run writes full flushes, a slow one still writes within `interval`. The weight keeps
//! flushes of even cost, an export's weight being what its persist writes (a row per attribute
//! change). Without it a page of large groups was one flush: in MediumLarge's last page, 100 groups
//! with 10,261 changes made a statement of 410 ms, the end of the run, where the usual flush of 100
//! Creates (1,300 changes) takes 50-90 ms and two run side by side; at 500,000 objects a page of
//! big groups would be one transaction of hundreds of thousands of rows. Pure bookkeeping over a
//! clock the caller passes in; the coordinator spawns the persist tasks.

use std::time::{Duration, Instant};

/// The weight of a full flush of exports per export it may hold: a flush closes at `flush_size`
/// exports or at this many times `flush_size` attribute changes, whichever comes first. 16 lets the
/// usual export (MediumLarge's Creates carry 12-13 changes) fill a flush by count.
pub(crate) const FLUSH_WEIGHT_PER_EXPORT: usize = 16;

/// Outcomes (or anything else) waiting to be flushed.
#[derive(Debug)]
pub(crate) struct FlushBuffer<T> {
    size: usize,
    max_weight: usize,
    interval: Duration,
    /// The entries with their weights, oldest first.
    items: Vec<(T, usize)>,
    /// The sum of the waiting entries' weights.
    weight: usize,
    /// When the buffer last went from empty to holding something, or last gave a flush and kept a
    /// remainder: the age the interval is measured from.
    since: Option<Instant>,
}

impl<T> FlushBuffer<T> {
    /// A buffer giving flushes of at most `size` entries (at least one) and `max_weight` weight (an
    /// entry heavier than that is a flush of its own) after `interval`.
    pub(crate) fn new(size: usize, max_weight: usize, interval: Duration) -> Self {
        Self {
            size: size.max(1),
            max_weight: max_weight.max(1),
            interval,
            items: Vec::new(),
            weight: 0,
            since: None,
        }
    }

    /// Adds one entry of `weight` at `now`.
    pub(crate) fn push(&mut self, item: T, weight: usize, now: Instant) {
        if self.items.is_empty() {
            self.since = Some(now);
        }
        self.items.push((item, weight));
        self.weight = self.weight.saturating_add(weight);
    }

    /// True when a flush is due at `now`: a full one is waiting (by count or weight), or something
    /// is waiting and it is old enough or `force`d.
    pub(crate) fn is_due(&self, force: bool, now: Instant) -> bool {
        self.items.len() >= self.size
            || self.weight >= self.max_weight
            || (!self.items.is_empty()
                && (force
                    || self
                        .since
                        .is_some_and(|t| now.saturating_duration_since(t) >= self.interval)))
    }

    /// Takes the next flush: the oldest entries, at most `size` of them and at most `max_weight` in
    /// all (always at least one); a remainder starts its wait at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Vec<T> {
        let mut n = 0;
        let mut weight = 0usize;
        for (_, w) in self.items.iter().take(self.size) {
            if n > 0 && weight.saturating_add(*w) > self.max_weight {
                break;
            }
            weight = weight.saturating_add(*w);
            n += 1;
        }
        self.weight -= weight;
        let flush: Vec<T> = self.items.drain(..n).map(|(item, _)| item).collect();
        self.since = if self.items.is_empty() {
            None
        } else {
            Some(now)
        };
        flush
    }

    /// Drops everything waiting (nothing more can be written).
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.weight = 0;
        self.since = None;
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// True when at least `flushes` full flushes (at least one) are waiting, by count or by weight.
    pub(crate) fn holds_full_flushes(&self, flushes: usize) -> bool {
        let flushes = flushes.max(1);
        self.items.len() >= self.size.saturating_mul(flushes)
            || self.weight >= self.max_weight.saturating_mul(flushes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_empty_buffer_is_never_due() {
        let buffer = FlushBuffer::<u32>::new(3, usize::MAX, SECOND);
        let now = Instant::now();
        assert!(!buffer.is_due(true, now));
        assert!(!buffer.is_due(false, now + 10 * SECOND));
    }

    #[test]
    fn a_full_flush_is_due_at_once_and_leaves_the_rest_waiting() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(2, usize::MAX, SECOND);
        for i in 0..5 {
            buffer.push(i, 1, t0);
        }
        assert!(buffer.is_due(false, t0));
        assert_eq!(buffer.take(t0), vec![0, 1]);
        assert_eq!(buffer.take(t0), vec![2, 3]);
        // One left: not a full flush, and it has not waited.
        assert!(!buffer.is_due(false, t0));
        assert_eq!(buffer.len(), 1);
    }

    #[test]
    fn a_partial_flush_waits_for_the_interval_unless_forced() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(10, usize::MAX, SECOND);
        buffer.push("a", 1, t0);
        buffer.push("b", 1, t0 + SECOND / 2);
        assert!(!buffer.is_due(false, t0 + SECOND / 2));
        assert!(buffer.is_due(true, t0 + SECOND / 2));
        // The age counts from the first entry, not the last.
        assert!(buffer.is_due(false, t0 + SECOND));
        assert_eq!(buffer.take(t0 + SECOND), vec!["a", "b"]);
        assert!(!buffer.is_due(true, t0 + 5 * SECOND));
    }

    #[test]
    fn a_remainder_waits_a_new_interval_from_the_flush() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(2, usize::MAX, SECOND);
        for i in 0..3 {
            buffer.push(i, 1, t0);
        }
        let later = t0 + 3 * SECOND;
        assert_eq!(buffer.take(later), vec![0, 1]);
        assert!(!buffer.is_due(false, later + SECOND / 2));
        assert!(buffer.is_due(false, later + SECOND));
    }

    #[test]
    fn a_size_of_zero_means_one() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(0, usize::MAX, SECOND);
        buffer.push(7, 1, t0);
        assert!(buffer.is_due(false, t0));
        assert_eq!(buffer.take(t0), vec![7]);
    }

    #[test]
    fn clearing_forgets_the_age() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(5, usize::MAX, SECOND);
        buffer.push(1, 1, t0);
        buffer.clear();
        assert_eq!(buffer.len(), 0);
        buffer.push(2, 1, t0 + 10 * SECOND);
        assert!(!buffer.is_due(false, t0 + 10 * SECOND));
    }

    #[test]
    fn a_flush_closes_at_its_weight_and_a_heavy_entry_goes_alone() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(100, 10, SECOND);
        buffer.push('a', 4, t0);
        buffer.push('b', 4, t0);
        assert!(!buffer.is_due(false, t0), "8 of 10: neither full nor old");
        buffer.push('c', 4, t0);
        assert!(buffer.is_due(false, t0), "12 of 10: due by weight");
        assert_eq!(buffer.take(t0), vec!['a', 'b'], "c would take it over 10");
        buffer.push('d', 25, t0);
        buffer.push('e', 1, t0);
        assert!(buffer.is_due(false, t0));
        assert_eq!(buffer.take(t0), vec!['c'], "d does not fit beside c");
        assert_eq!(buffer.take(t0), vec!['d'], "heavier than a flush: alone");
        assert!(!buffer.is_due(false, t0), "1 of 10 left");
        assert_eq!(buffer.take(t0), vec!['e']);
        assert_eq!(buffer.len(), 0);
    }

    #[test]
    fn a_backlog_counts_full_flushes_by_count_or_by_weight() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(2, 10, SECOND);
        for i in 0..3 {
            buffer.push(i, 1, t0);
        }
        assert!(buffer.holds_full_flushes(1));
        assert!(
            !buffer.holds_full_flushes(2),
            "3 entries: one full flush and a half"
        );
        buffer.push(3, 1, t0);
        assert!(buffer.holds_full_flushes(2));
        assert!(buffer.holds_full_flushes(0), "zero means one");
        // Few entries, but heavy: 25 of weight is two flushes of 10 and a half.
        let mut heavy = FlushBuffer::new(100, 10, SECOND);
        heavy.push('a', 20, t0);
        heavy.push('b', 5, t0);
        assert!(heavy.holds_full_flushes(2));
        assert!(!heavy.holds_full_flushes(3));
        // A backlog is always due, so a free slot always finds work.
        assert!(heavy.is_due(false, t0));
    }

    #[test]
    fn clearing_forgets_the_weight() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(100, 10, SECOND);
        buffer.push(1, 50, t0);
        buffer.clear();
        buffer.push(2, 1, t0);
        assert!(!buffer.is_due(false, t0));
    }
}
