//! Flush batching: outcomes wait in a buffer and leave it in flushes of at most `size`, as soon as the
//! buffer holds a full flush, its oldest entry has waited `interval`, or the caller forces it (the end
//! of a pass). Size or age, whichever comes first: a busy run writes full flushes, a slow one still
//! writes within `interval`. Pure bookkeeping over a clock the caller passes in; the coordinator
//! spawns the persist tasks.

use std::time::{Duration, Instant};

/// Outcomes (or anything else) waiting to be flushed.
#[derive(Debug)]
pub(crate) struct FlushBuffer<T> {
    size: usize,
    interval: Duration,
    items: Vec<T>,
    /// When the buffer last went from empty to holding something, or last gave a flush and kept a
    /// remainder: the age the interval is measured from.
    since: Option<Instant>,
}

impl<T> FlushBuffer<T> {
    /// A buffer giving flushes of at most `size` entries (at least one) after `interval`.
    pub(crate) fn new(size: usize, interval: Duration) -> Self {
        Self {
            size: size.max(1),
            interval,
            items: Vec::new(),
            since: None,
        }
    }

    /// Adds one entry at `now`.
    pub(crate) fn push(&mut self, item: T, now: Instant) {
        if self.items.is_empty() {
            self.since = Some(now);
        }
        self.items.push(item);
    }

    /// True when a flush is due at `now`: a full one is waiting, or something is waiting and it is old
    /// enough or `force`d.
    pub(crate) fn is_due(&self, force: bool, now: Instant) -> bool {
        self.items.len() >= self.size
            || (!self.items.is_empty()
                && (force
                    || self
                        .since
                        .is_some_and(|t| now.saturating_duration_since(t) >= self.interval)))
    }

    /// Takes the next flush (the oldest entries, at most `size`); a remainder starts its wait at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Vec<T> {
        let n = self.items.len().min(self.size);
        let flush: Vec<T> = self.items.drain(..n).collect();
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
        self.since = None;
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_empty_buffer_is_never_due() {
        let buffer = FlushBuffer::<u32>::new(3, SECOND);
        let now = Instant::now();
        assert!(!buffer.is_due(true, now));
        assert!(!buffer.is_due(false, now + 10 * SECOND));
    }

    #[test]
    fn a_full_flush_is_due_at_once_and_leaves_the_rest_waiting() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(2, SECOND);
        for i in 0..5 {
            buffer.push(i, t0);
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
        let mut buffer = FlushBuffer::new(10, SECOND);
        buffer.push("a", t0);
        buffer.push("b", t0 + SECOND / 2);
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
        let mut buffer = FlushBuffer::new(2, SECOND);
        for i in 0..3 {
            buffer.push(i, t0);
        }
        let later = t0 + 3 * SECOND;
        assert_eq!(buffer.take(later), vec![0, 1]);
        assert!(!buffer.is_due(false, later + SECOND / 2));
        assert!(buffer.is_due(false, later + SECOND));
    }

    #[test]
    fn a_size_of_zero_means_one() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(0, SECOND);
        buffer.push(7, t0);
        assert!(buffer.is_due(false, t0));
        assert_eq!(buffer.take(t0), vec![7]);
    }

    #[test]
    fn clearing_forgets_the_age() {
        let t0 = Instant::now();
        let mut buffer = FlushBuffer::new(5, SECOND);
        buffer.push(1, t0);
        buffer.clear();
        assert_eq!(buffer.len(), 0);
        buffer.push(2, t0 + 10 * SECOND);
        assert!(!buffer.is_due(false, t0 + 10 * SECOND));
    }
}
