//! The run's right to write a claimed export to the directory: a fence around its lease.
//!
//! A claim gives the run a lease on each row (`LastAttemptedAt` + the lease, renewed every third of
//! it). The persist statement is fenced by the lease token in SQL; the directory writes are fenced
//! here. Each claimed row gets a [`Fence`](crate::fence::Fence) that says until when, by this process's monotonic clock, the
//! lease is certainly still ours: the instant the claim (or the last renewal) statement was *sent*
//! plus two thirds of the lease. The database's clock started the lease no earlier than that, so the
//! fence closes a third of the lease before any other engine could take the row, however this process
//! was delayed (a stall, a SIGSTOP, a database that stopped answering renewals).
//!
//! Before every write of an export the directory calls [`Fence::writable`](crate::fence::Fence::writable): within the window it
//! returns at once; past it, it asks for a renewal and waits until the renewal either extends the
//! window or finds the row lost (another engine took it over); a lost row is never written again.
//!
//! What this cannot stop: an operation already handed to the socket when the process froze. It was
//! sent within the lease, and every write the engine sends converges when repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// Another engine holds the row now (its lease passed and it was claimed again).
    Lost,
    /// The run is stopping and the lease could not be confirmed.
    Stopped,
}

/// Shared by the fences of one queue: renewals announce themselves here, and fences that found their
/// window closed ask for one.
#[derive(Debug, Default)]
pub struct LeaseBoard {
    changed: Notify,
    wanted: Notify,
}

impl LeaseBoard {
    /// Wakes fences waiting for a renewal (call after every renewal, successful or not).
    pub fn announce(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves when a fence asks for a renewal.
    pub async fn renewal_wanted(&self) {
        self.wanted.notified().await;
    }
}

/// The base of the fences' clock: windows are stored as nanoseconds since it.
fn base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn to_nanos(at: Instant) -> u64 {
    at.saturating_duration_since(base()).as_nanos() as u64
}

#[derive(Debug)]
struct Inner {
    /// Nanoseconds since [`base`] until which writes are allowed; `u64::MAX` for no limit.
    until: AtomicU64,
    lost: AtomicBool,
    board: Arc<LeaseBoard>,
}

/// One claimed row's write window. Cheap to clone; clones share the window.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Inner>);

impl Fence {
    /// A fence that never closes (for work without a lease: benchmarks, dry runs, tests).
    pub fn open() -> Fence {
        Fence(Arc::new(Inner {
            until: AtomicU64::new(u64::MAX),
            lost: AtomicBool::new(false),
            board: Arc::new(LeaseBoard::default()),
        }))
    }

    /// A fence for a lease of `lease` taken by a statement sent at `sent`.
    pub fn new(board: Arc<LeaseBoard>, sent: Instant, lease: Duration) -> Fence {
        let fence = Fence(Arc::new(Inner {
            until: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            board,
        }));
        fence.renewed(sent, lease);
        fence
    }

    /// The window a lease of `lease` gives when its statement was sent at `sent`.
    pub fn window(sent: Instant, lease: Duration) -> Instant {
        sent + lease.mul_f64(2.0 / 3.0)
    }

    /// Records a renewal sent at `sent` (it never shortens the window).
    pub fn renewed(&self, sent: Instant, lease: Duration) {
        let until = to_nanos(Self::window(sent, lease));
        self.0.until.fetch_max(until, Ordering::AcqRel);
    }

    /// Records that the row is no longer ours.
    pub fn lose(&self) {
        self.0.lost.store(true, Ordering::Release);
        self.0.board.announce();
    }

    /// True once the row was found taken over.
    pub fn is_lost(&self) -> bool {
        self.0.lost.load(Ordering::Acquire)
    }

    /// True when a write may go out now without waiting.
    pub fn is_open(&self) -> bool {
        !self.is_lost() && to_nanos(Instant::now()) < self.0.until.load(Ordering::Acquire)
    }

    /// Waits until the row may be written: at once within the window; otherwise until a renewal
    /// extends it, the row is found lost, or `stop` fires.
    pub async fn writable(&self, stop: &CancellationToken) -> Result<(), Fenced> {
        loop {
            if self.is_lost() {
                return Err(Fenced::Lost);
            }
            if self.is_open() {
                return Ok(());
            }
            let changed = self.0.board.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // Checked again after registering, so a renewal in between is not missed.
            if self.is_lost() {
                return Err(Fenced::Lost);
            }
            if self.is_open() {
                return Ok(());
            }
            self.0.board.wanted.notify_one();
            tokio::select! {
                _ = &mut changed => {}
                _ = stop.cancelled() => {
                    return if self.is_lost() { Err(Fenced::Lost) } else { Err(Fenced::Stopped) };
                }
                // A renewal that is itself failing announces after each try; this bounds a missed one.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

tokio::task_local! {
    /// The fence of the export the current task writes, with the run's stop token.
    static WRITES: (Fence, CancellationToken);
}

/// Runs `work` (one export's execution) with `fence` guarding every directory write it sends
/// ([`check_write`]).
pub async fn guard<F: std::future::Future>(
    fence: Option<Fence>,
    stop: CancellationToken,
    work: F,
) -> F::Output {
    match fence {
        Some(fence) => WRITES.scope((fence, stop), work).await,
        None => work.await,
    }
}

/// Called by the connection pool right before it sends a write, after it has a connection and an
/// in-flight slot: waits as [`Fence::writable`] does for the current task's export (at once when no
/// fence guards the task). Checking here rather than before queueing for a slot means a write that
/// waited for one is still fenced by the lease as it is when it goes out.
pub async fn check_write() -> Result<(), Fenced> {
    let Ok((fence, stop)) = WRITES.try_with(|(f, s)| (f.clone(), s.clone())) else {
        return Ok(());
    };
    fence.writable(&stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_fence_never_closes() {
        let f = Fence::open();
        assert!(f.is_open());
        assert_eq!(f.writable(&CancellationToken::new()).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_is_two_thirds_of_the_lease_from_the_claim() {
        let board = Arc::new(LeaseBoard::default());
        let sent = Instant::now();
        let f = Fence::new(board.clone(), sent, Duration::from_secs(30));
        assert!(f.is_open());
        assert_eq!(
            Fence::window(sent, Duration::from_secs(30)) - sent,
            Duration::from_secs(20)
        );
        f.renewed(sent - Duration::from_secs(60), Duration::from_secs(30));
        assert!(f.is_open(), "a late renewal never shortens the window");
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_window_a_write_waits_for_the_renewal() {
        let board = Arc::new(LeaseBoard::default());
        let f = Fence::new(
            board.clone(),
            Instant::now() - Duration::from_secs(100),
            Duration::from_secs(30),
        );
        assert!(!f.is_open());
        let stop = CancellationToken::new();
        let waiter = {
            let (f, stop) = (f.clone(), stop.clone());
            tokio::spawn(async move { f.writable(&stop).await })
        };
        board.renewal_wanted().await;
        f.renewed(Instant::now(), Duration::from_secs(30));
        board.announce();
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_row_is_never_written_and_a_stop_ends_the_wait() {
        let board = Arc::new(LeaseBoard::default());
        let f = Fence::new(
            board.clone(),
            Instant::now() - Duration::from_secs(100),
            Duration::from_secs(30),
        );
        let stop = CancellationToken::new();
        let waiter = {
            let (f, stop) = (f.clone(), stop.clone());
            tokio::spawn(async move { f.writable(&stop).await })
        };
        board.renewal_wanted().await;
        f.lose();
        assert_eq!(waiter.await.unwrap(), Err(Fenced::Lost));
        assert!(!f.is_open());

        let g = Fence::new(
            board,
            Instant::now() - Duration::from_secs(100),
            Duration::from_secs(30),
        );
        stop.cancel();
        assert_eq!(g.writable(&stop).await, Err(Fenced::Stopped));
    }
}
