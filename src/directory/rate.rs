//! An optional cap on directory operations per second.
//!
//! Our own small token bucket (GCRA: one "theoretical arrival time" behind a mutex) rather than
//! `governor`: there is one call site, one limiter per run and no keyed limits, and it runs on tokio's
//! clock so tests can pause time; governor would add dashmap and quanta for that.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces operations out to at most `per_second`, allowing a burst of a tenth of a second's worth.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter for `per_second` operations per second (at least 1).
    pub fn new(per_second: u32) -> Self {
        let per_second = per_second.max(1);
        let interval = Duration::from_secs(1) / per_second;
        let burst = (per_second / 10).max(1);
        Self {
            interval,
            tolerance: interval * (burst - 1),
            next: Mutex::new(None),
        }
    }

    /// Waits for the next slot.
    pub async fn acquire(&self) {
        let now = Instant::now();
        let ready = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let tat = next.map_or(now, |t| t.max(now));
            *next = Some(tat + self.interval);
            tat.checked_sub(self.tolerance).unwrap_or(now)
        };
        if ready > now {
            tokio::time::sleep_until(ready).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_operations_out() {
        let limiter = RateLimiter::new(5);
        let begin = Instant::now();
        for _ in 0..11 {
            limiter.acquire().await;
        }
        // The first goes at once, the other ten one every 200 ms.
        assert_eq!(begin.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn allows_a_short_burst() {
        let limiter = RateLimiter::new(100);
        let begin = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert!(
            begin.elapsed() < Duration::from_millis(100),
            "{:?}",
            begin.elapsed()
        );
        for _ in 0..100 {
            limiter.acquire().await;
        }
        let elapsed = begin.elapsed();
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed <= Duration::from_millis(1100),
            "{elapsed:?}"
        );
    }
}
