//! Continuous export ("watch"): one loop per connected system keeps its directory connected and runs a
//! pass over the queue (the same pipeline as a run) whenever something is due, until cancelled.
//!
//! Each loop waits for the earliest of: a notification for its system (when the engine's trigger is
//! installed and the watch uses it), its poll interval (100 ms after a pass that exported something,
//! doubling while idle up to `poll_max_ms`; in notification mode a slow safety re-scan instead), and the
//! moment the next waiting row comes due (`NextRetryAt`, or a lease on an `Executing` row expiring).
//! Woken, it checks the queue with one statement and runs a pass only when something is eligible.
//!
//! One listener task holds the store's `LISTEN` connection ([`Store::listen`], its own, outside the
//! store's pool). When it loses
//! the connection it reconnects and then wakes every loop, because notifications sent while it was
//! away are lost; the re-scan happens after `LISTEN` is in place again, so nothing falls in between.
//!
//! Errors after the start (the database restarting, the directory unreachable) do not end the watch:
//! the loop logs them, waits `poll_max_ms` and tries again. Cancellation lets the current pass finish
//! its in-flight operations and return its unstarted claims, as a cancelled run does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::log::Logger;
use super::run::{self, PassStart};
use super::{CancellationToken, RunListener};
use crate::config::{ExportRequest, WakeUpMode, WatchOptions, WatchRequest};
use crate::directory::{Directory, DirectoryTuning};
use crate::error::{Error, Result};
use crate::report::{WakeUps, WatchMode, WatchResult, WatchSystemResult};
use crate::store::{Heard, NOTIFY_CHANNEL, QueueListener, Store};

use tracing::instrument::WithSubscriber;

/// Pending wake-up causes a loop has not seen yet (bits of [`Wake::pending`]).
const CAUSE_NOTIFICATION: u8 = 1;
const CAUSE_RECONNECT: u8 = 2;

/// The longest pause between two attempts to reconnect the notification listener.
const MAX_LISTENER_BACKOFF: Duration = Duration::from_secs(5);

/// Lets a row that comes due be claimed on the first try despite clock rounding.
const DUE_SLACK: Duration = Duration::from_millis(20);

/// A system loop's doorbell: the listener rings it with a cause; a ring while the loop is busy is kept
/// (`Notify` stores one permit), so a notification during a pass leads to another look at the queue.
#[derive(Default)]
struct Wake {
    notify: Notify,
    pending: AtomicU8,
}

impl Wake {
    fn ring(&self, cause: u8) {
        self.pending.fetch_or(cause, Ordering::AcqRel);
        self.notify.notify_one();
    }

    fn take(&self, wake_ups: &mut WakeUps) {
        let bits = self.pending.swap(0, Ordering::AcqRel);
        if bits & CAUSE_RECONNECT != 0 {
            wake_ups.reconnect += 1;
        } else {
            wake_ups.notification += 1;
        }
    }
}

/// Runs a watch (see [`crate::engine::Engine::watch`]).
pub(crate) async fn watch(
    store: Store,
    request: &WatchRequest,
    listener: Arc<dyn RunListener>,
    cancel: CancellationToken,
    database_unverified: bool,
) -> Result<WatchResult> {
    let started_at = Utc::now();
    let log = Logger::new(listener.clone());
    let trigger_installed = store.notify_trigger_installed().await?;
    let mode = match (request.watch.effective_wake_up(), trigger_installed) {
        (WakeUpMode::Auto, true) => WatchMode::Notifications,
        _ => WatchMode::Polling,
    };
    let ids: Vec<String> = request
        .requests
        .iter()
        .map(|r| r.connected_system_id.to_string())
        .collect();
    log.info(format!(
        "watch of connected system(s) {} started, {}",
        ids.join(", "),
        match (mode, trigger_installed) {
            (WatchMode::Notifications, _) => format!(
                "woken by PostgreSQL notifications (trigger installed, channel {NOTIFY_CHANNEL})"
            ),
            (WatchMode::Polling, true) =>
                "polling (the trigger is installed but the request asks for polling)".into(),
            (WatchMode::Polling, false) => "polling (no notifying trigger installed)".into(),
        }
    ));

    let mut loops = Vec::with_capacity(request.requests.len());
    for (i, r) in request.requests.iter().enumerate() {
        let unverified = database_unverified && i == 0;
        match SystemLoop::connect(
            &store,
            r,
            &request.watch,
            mode,
            listener.clone(),
            unverified,
        )
        .await
        {
            Ok(l) => loops.push(l),
            Err(e) => {
                for l in &loops {
                    l.directory.close().await;
                }
                return Err(e);
            }
        }
    }
    let wakes: Arc<HashMap<i32, Arc<Wake>>> = Arc::new(
        loops
            .iter()
            .map(|l| (l.request.connected_system_id, l.wake.clone()))
            .collect(),
    );

    let reconnects = Arc::new(AtomicU64::new(0));
    let stop_listening = CancellationToken::new();
    let listener_task = if mode == WatchMode::Notifications {
        // LISTEN is in place before the first look at the queue, so nothing staged in between is missed.
        let notifications = match store.listen().await {
            Ok(l) => l,
            Err(e) => {
                for l in &loops {
                    l.directory.close().await;
                }
                return Err(e);
            }
        };
        Some(tokio::spawn(
            relay(
                store.clone(),
                notifications,
                wakes.clone(),
                stop_listening.clone(),
                log.clone(),
                reconnects.clone(),
            )
            .in_current_span()
            .with_current_subscriber(),
        ))
    } else {
        None
    };

    let mut tasks = JoinSet::new();
    for (i, l) in loops.into_iter().enumerate() {
        let cancel = cancel.clone();
        let span = tracing::info_span!(
            "watch_system",
            connected_system_id = l.request.connected_system_id
        );
        tasks.spawn(
            async move { (i, l.run(cancel).await) }
                .instrument(span)
                .with_current_subscriber(),
        );
    }
    let mut systems: Vec<Option<WatchSystemResult>> = vec![None; tasks.len()];
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, r)) => systems[i] = Some(r),
            Err(e) => log.error(format!("a watch loop ended abnormally: {e}")),
        }
    }
    stop_listening.cancel();
    if let Some(task) = listener_task {
        let _ = task.await;
    }

    let systems: Vec<WatchSystemResult> = systems.into_iter().flatten().collect();
    let mut wake_ups = WakeUps::default();
    for s in &systems {
        wake_ups.add(&s.wake_ups);
    }
    let passes = systems.iter().map(|s| s.passes).sum();
    let exports = systems.iter().map(|s| s.exports).sum();
    let message = format!(
        "Watch stopped: {passes} pass(es), {exports} export(s) processed, {} wake-up(s) ({} by notification, {} by poll, {} retry due)",
        wake_ups.total(),
        wake_ups.notification,
        wake_ups.poll,
        wake_ups.retry_due
    );
    log.info(message.clone());
    Ok(WatchResult {
        started_at,
        completed_at: Utc::now(),
        mode,
        trigger_installed,
        listener_reconnects: reconnects.load(Ordering::Relaxed),
        passes,
        exports,
        wake_ups,
        systems,
        message,
    })
}

/// Hands notifications to the loops of the systems they name; after any lost connection, reconnects
/// and wakes every loop for a re-scan.
async fn relay(
    store: Store,
    mut notifications: QueueListener,
    wakes: Arc<HashMap<i32, Arc<Wake>>>,
    stop: CancellationToken,
    log: Logger,
    reconnects: Arc<AtomicU64>,
) {
    let ring_all = |cause| {
        for w in wakes.values() {
            w.ring(cause);
        }
    };
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            heard = notifications.next() => heard,
        };
        match received {
            Heard::Notification(system) => {
                if let Some(w) = system.and_then(|id| wakes.get(&id)) {
                    w.ring(CAUSE_NOTIFICATION);
                }
            }
            Heard::Reconnected => {
                // The listener reconnected and listens again already.
                reconnects.fetch_add(1, Ordering::Relaxed);
                log.info("the notification listener reconnected: re-scanning the queue".into());
                ring_all(CAUSE_RECONNECT);
            }
            Heard::Lost(e) => {
                log.warn(format!(
                    "the notification listener lost its connection ({e}); reconnecting"
                ));
                let mut backoff = Duration::from_millis(200);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    match store.listen().await {
                        Ok(l) => {
                            notifications = l;
                            reconnects.fetch_add(1, Ordering::Relaxed);
                            log.info(
                                "the notification listener reconnected: re-scanning the queue"
                                    .into(),
                            );
                            ring_all(CAUSE_RECONNECT);
                            break;
                        }
                        Err(e) => {
                            log.debug(format!("reconnecting the notification listener: {e}"));
                            backoff = (backoff * 2).min(MAX_LISTENER_BACKOFF);
                        }
                    }
                }
            }
        }
    }
}

/// One connected system's loop: its request, its connected directory and its counters.
struct SystemLoop {
    store: Store,
    request: ExportRequest,
    options: WatchOptions,
    mode: WatchMode,
    directory: Directory,
    listener: Arc<dyn RunListener>,
    log: Logger,
    wake: Arc<Wake>,
    /// The last batch report's sequence number; reports number on across passes.
    sequence: u64,
    /// The last pass stopped because the directory went away: the next one first checks that it
    /// answers again, so an outage costs the exports of one pass, not of every pass while it lasts.
    directory_gone: bool,
    result: WatchSystemResult,
}

/// What a look at the queue (and the pass it may have run) found.
struct Look {
    /// The pass processed at least one export.
    worked: bool,
    /// Seconds until the next waiting row comes due.
    next_due_in: Option<f64>,
    /// The look or the pass failed.
    failed: bool,
}

impl SystemLoop {
    /// Checks the schema, opens the queue once (an unknown system fails the watch here) and connects
    /// the directory.
    async fn connect(
        store: &Store,
        request: &ExportRequest,
        options: &WatchOptions,
        mode: WatchMode,
        listener: Arc<dyn RunListener>,
        database_unverified: bool,
    ) -> Result<SystemLoop> {
        super::run::warn_about_transport(
            &Logger::new(listener.clone()),
            request,
            database_unverified,
        );
        let ((), directory) = super::run::prepare_beside_connect(
            async {
                store
                    .open(request.connected_system_id, &request.options)
                    .await
                    .map(drop)
            },
            &request.directory,
            DirectoryTuning::from_run_options(&request.options),
            async |()| {},
        )
        .await?;
        let mut request = request.clone();
        // Checked above; each pass reloads the system's attribute definitions but not the schema version.
        request.options.skip_schema_check = true;
        Ok(SystemLoop {
            store: store.clone(),
            result: WatchSystemResult {
                connected_system_id: request.connected_system_id,
                ..WatchSystemResult::default()
            },
            request,
            options: options.clone(),
            mode,
            directory,
            log: Logger::new(listener.clone()),
            listener,
            wake: Arc::new(Wake::default()),
            sequence: 0,
            directory_gone: false,
        })
    }

    async fn run(mut self, cancel: CancellationToken) -> WatchSystemResult {
        self.result.wake_ups.startup += 1;
        let mut idle_polls: u32 = 0;
        while !cancel.is_cancelled() {
            let look = self.look(&cancel).await;
            if cancel.is_cancelled() {
                break;
            }
            let interval = if look.failed {
                Duration::from_millis(self.options.poll_max_ms)
            } else if self.mode == WatchMode::Notifications {
                Duration::from_millis(self.options.notify_recheck_ms)
            } else if look.worked {
                idle_polls = 0;
                Duration::from_millis(self.options.poll_min_ms)
            } else {
                let backoff = poll_interval(&self.options, idle_polls);
                idle_polls = idle_polls.saturating_add(1);
                backoff
            };
            let due = look
                .next_due_in
                .map(|s| Duration::from_secs_f64(s.max(0.0)) + DUE_SLACK);
            let (wait, due_first) = match due {
                Some(d) if d < interval => (d, true),
                _ => (interval, false),
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = self.wake.notify.notified() => {
                    self.wake.take(&mut self.result.wake_ups);
                    // Work may follow soon after a notification; poll promptly again.
                    idle_polls = 0;
                }
                _ = tokio::time::sleep(wait) => {
                    let w = &mut self.result.wake_ups;
                    if due_first {
                        w.retry_due += 1;
                    } else if look.failed {
                        w.after_error += 1;
                    } else if self.mode == WatchMode::Notifications {
                        w.recheck += 1;
                    } else {
                        w.poll += 1;
                    }
                }
            }
        }
        self.directory.close().await;
        self.log.info(format!(
            "watch of connected system {} stopped: {} pass(es), {} export(s) processed",
            self.request.connected_system_id, self.result.passes, self.result.exports
        ));
        self.result
    }

    /// Checks the queue and runs a pass when something is due.
    async fn look(&mut self, cancel: &CancellationToken) -> Look {
        let probe = match self
            .store
            .watch_probe(
                self.request.connected_system_id,
                self.request.options.lease_seconds,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.failed(format!("checking the queue failed: {e}"));
                return Look {
                    worked: false,
                    next_due_in: None,
                    failed: true,
                };
            }
        };
        if !probe.due_now {
            return Look {
                worked: false,
                next_due_in: probe.next_due_in,
                failed: false,
            };
        }
        if self.directory_gone {
            if let Err(e) = self.directory.check_reachable().await {
                self.failed(format!("no pass: {e}"));
                return Look {
                    worked: false,
                    next_due_in: None,
                    failed: true,
                };
            }
            self.directory_gone = false;
            self.log.info(format!(
                "watch of connected system {}: the directory answers again",
                self.request.connected_system_id
            ));
        }
        self.result.passes += 1;
        match self.pass(cancel).await {
            Ok(processed) => Look {
                worked: processed > 0,
                next_due_in: probe.next_due_in,
                failed: false,
            },
            Err(e) => {
                self.result.failed_passes += 1;
                self.directory_gone = matches!(e, Error::Directory(_));
                self.failed(format!("a pass failed: {e}"));
                Look {
                    worked: false,
                    next_due_in: None,
                    failed: true,
                }
            }
        }
    }

    fn failed(&mut self, message: String) {
        self.log.warn(format!(
            "watch of connected system {}: {message}; retrying in {} ms",
            self.request.connected_system_id, self.options.poll_max_ms
        ));
        self.result.last_error = Some(message);
    }

    /// One pass over the queue with the loop's directory; returns the exports it processed.
    async fn pass(&mut self, cancel: &CancellationToken) -> Result<u64> {
        let started_at = Utc::now();
        let t0 = Instant::now();
        let statements_base = self.store.statements();
        let queue = Arc::new(
            self.store
                .open(self.request.connected_system_id, &self.request.options)
                .await?,
        );
        let mut start =
            PassStart::begin(&queue, &self.request, &self.listener, started_at, t0).await?;
        start.sequence = self.sequence;
        start.statements_base = statements_base;
        start.directory_base = Some(self.directory.stats());
        start.containers_base = self.directory.created_containers().len();
        self.directory.forget_verified_containers();
        let done = run::pass(
            queue,
            &self.directory,
            &self.request,
            self.listener.clone(),
            cancel.clone(),
            start,
        )
        .await?;
        self.sequence = done.sequence;
        let r = &done.result;
        let processed = r.success_count + r.failed_count + r.deferred_count;
        self.result.exports += processed;
        self.result.succeeded += r.success_count;
        self.result.failed += r.failed_count;
        self.result.deferred += r.deferred_count;
        Ok(processed)
    }
}

/// The polling interval after `idle_polls` polls that found nothing: `poll_min_ms` doubled each time,
/// at most `poll_max_ms`.
fn poll_interval(options: &WatchOptions, idle_polls: u32) -> Duration {
    let factor = 1u64 << idle_polls.min(20);
    Duration::from_millis(
        options
            .poll_min_ms
            .saturating_mul(factor)
            .min(options.poll_max_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_backs_off_from_the_minimum_to_the_maximum() {
        let o = WatchOptions::default();
        let steps: Vec<u128> = (0..8).map(|i| poll_interval(&o, i).as_millis()).collect();
        assert_eq!(steps, vec![100, 200, 400, 800, 1600, 3000, 3000, 3000]);
        assert_eq!(poll_interval(&o, u32::MAX).as_millis(), 3000);
    }

    #[test]
    fn a_reconnect_counts_before_a_notification() {
        let w = Wake::default();
        let mut counts = WakeUps::default();
        w.ring(CAUSE_NOTIFICATION);
        w.ring(CAUSE_RECONNECT);
        w.take(&mut counts);
        w.ring(CAUSE_NOTIFICATION);
        w.take(&mut counts);
        assert_eq!((counts.reconnect, counts.notification), (1, 1));
    }
}
