//! The lease task: keeps the run's claims alive while it works on them, so another engine does not
//! take the rows over, and closes the fences in time when it cannot.

use std::sync::Arc;
use std::time::Duration;

use super::CancellationToken;
use super::log::Logger;
use crate::store::ExportQueue;

/// Renews the lease of every held row every third of the lease, and at once when a write found its
/// window closed, until `stop` fires. A renewal that fails (the database does not answer) is tried
/// again with backoff; meanwhile the fences close once two thirds of the lease have passed, so the
/// directory writes nothing another engine could be writing too.
pub(crate) async fn renew_leases(
    queue: Arc<ExportQueue>,
    lease: Duration,
    stop: CancellationToken,
    log: Logger,
) {
    let period = (lease / 3).max(Duration::from_secs(1));
    let board = queue.lease_board();
    let mut next = tokio::time::Instant::now() + period;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = board.renewal_wanted() => {}
        }
        match queue.renew_leases().await {
            Ok(renewal) => {
                if failures > 0 {
                    log.info("lease renewal works again".into());
                }
                failures = 0;
                if !renewal.lost.is_empty() {
                    log.warn(format!(
                        "{} claimed row(s) were taken over by another engine after this run's lease ran out; they are not written again",
                        renewal.lost.len()
                    ));
                }
                next = tokio::time::Instant::now() + period;
            }
            Err(e) => {
                failures += 1;
                let delay = Duration::from_millis(250 * u64::from(failures.min(8)));
                if failures == 1 {
                    log.warn(format!("lease renewal failed ({e}); trying again"));
                }
                next = tokio::time::Instant::now() + delay.min(period);
            }
        }
    }
}
