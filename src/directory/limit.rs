//! The adaptive in-flight limit: how many directory operations may be outstanding at once, found
//! while the run goes on.
//!
//! # Algorithm
//!
//! Additive increase, multiplicative decrease (AIMD) driven by operation latency and back pressure,
//! in the manner of Vector's adaptive request concurrency, with a TCP-like slow start. Time is cut
//! into windows about one round trip long (the smoothed past latency, at least
//! [`AimdSettings::min_window`]). At the end of each window the mean latency of the operations
//! completed in it is compared with an exponentially weighted moving average (EWMA, weight
//! [`AimdSettings::ewma_alpha`], 0.4) of past windows' means and of their absolute deviation. A
//! window *rises* when its mean exceeds the past mean by more than [`AimdSettings::deviation_scale`]
//! (2.5) deviations and by at least [`AimdSettings::tolerance`] (10 %); it *holds* when its mean is
//! no higher than the past mean give or take [`AimdSettings::growth_tolerance`] (2 %).
//!
//! The controller goes through three phases:
//!
//! 1. **Learning**: the first [`AimdSettings::warmup_windows`] (3) windows only learn the baseline,
//!    at the start limit. A run starts with the directory idle: latency climbs while its queue fills
//!    and the early windows would read that as congestion, cutting a good start limit (the dialect's
//!    default) by 10-25 % before anything is known.
//! 2. **Slow start**: the limit doubles after each window that holds, and after each window whose
//!    latency rose less than the operations in flight did: one where the doubling still bought
//!    [`AimdSettings::min_gain`] (10 %) more throughput by Little's law (mean in flight over mean
//!    latency), whose latency then becomes the baseline. This is BBR's start-up rule (keep growing
//!    while the delivery rate grows) beside TCP's (while delay holds): on two cores that the
//!    directory shares with the engine and the database, more in flight raises latency long before
//!    it stops paying. The first window after a doubling that neither holds nor pays puts the limit
//!    back where it was (and to the baseline measured there), so probing above the knee costs two
//!    windows, and the phase ends. Before any doubling was tried, a window that does not hold ends
//!    nothing: the limit is still the start limit, so a rise is the workload's mix changing or the
//!    directory's queue still filling, and the baseline follows it. Back pressure ends it too.
//! 3. **Congestion avoidance**: + [`AimdSettings::increase_share`] (1/16) of the limit, at least
//!    one, after each window that holds; ×[`AimdSettings::decrease_ratio`]
//!    (0.9) when latency rises, but only when the rise is confirmed by the next judged window, or is
//!    severe (more than [`AimdSettings::severe_rise`], 2×, the past mean): one noisy window (a
//!    checkpoint, a neighbour's fsync) costs nothing. Latency alone never takes the limit below
//!    [`AimdSettings::latency_floor`] (half) of its start.
//!
//! The window after a step (a doubling, a return, a cut) is not judged: its operations were mostly
//! sent under the old limit, so a doubling past the knee would look free and only show its cost a
//! window later, after it had been built upon.
//!
//! Only windows in which the limit was reached are judged and enter the averages: latency measured
//! below the limit says nothing about it, and a baseline taken at light load (the first operations
//! of a run, a lull between pages) would make the next busy window look like congestion.
//!
//! A busy (51), unavailable (52) or unwilling (53) result, a timeout, a lost connection or a failed
//! reconnect decreases the limit at once (×0.9, down to the floor of the bounds, whatever the phase),
//! at most once per window, so a burst of refusals from one overloaded moment costs 10 %, not 10 % per
//! refused operation. The past averages keep following the windows' means, so a lasting change of
//! pace (a slower network) becomes the new normal after a few windows instead of driving the limit
//! to its floor.
//!
//! # Why latency only moves the limit cautiously
//!
//! On an fsync-bound directory (slapd with a durable back end, most production servers) throughput
//! is flat beyond a modest depth and latency grows in proportion to the queue (Little's law): above
//! the knee a bigger limit costs latency but no throughput, below it throughput is lost. Latency is
//! also noisy on a shared machine. So a latency rise is weak evidence and must be confirmed, while a
//! refusal is strong evidence and acts at once; and the start limit, the dialect's vetted default,
//! is never abandoned for more than half on latency alone.
//!
//! # Why AIMD rather than a gradient
//!
//! A gradient limiter (Netflix's Gradient2: `limit × long_rtt / short_rtt + queue`) needs a stable
//! long-term latency to measure queueing against. An export mixes operations whose costs differ by
//! an order of magnitude (a base read, an Add with an fsync, a 5,000-value member Modify), and the
//! mix shifts as the run moves from Creates to reference-bearing Updates, so the ratio would read
//! those shifts as congestion. AIMD only reacts to a clear rise against recent windows and to
//! explicit refusals, which LDAP servers do give (51/52/53, dropped connections); the engine's own
//! retries absorb the operations refused while it backs off. It is also the family the
//! concurrency-limits authors recommend for a client. The increase is a share of the limit rather
//! than +1 because the knee moves with the balance of the machine (the benchmark's sweep found it at
//! 16-32 in flight before the database write path got cheaper and at 64-128 after, at 10 ms): +1 per
//! window took longer than a short run lasts to get from the start to such a knee. The cost: under
//! slow, steady saturation the limit can creep up to its bound, because each step raises latency by
//! less than the noise; the
//! bound (by default a few times the dialect's default) keeps that harmless, as extra operations only
//! queue at the server.
//!
//! The controller is pure: it is fed samples and the time, and says when the limit changes; the pool
//! applies the limit to its semaphore.
//!
//! A little over 600 lines, a quarter of them this description: the controller is one algorithm whose
//! phases share their state, so it stays in one file (its tests are in `limit/tests.rs`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use super::occupancy::{Occupancy, OccupancyStats};

/// Tuning constants of the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct AimdSettings {
    /// Factor applied to the limit on a decrease (in (0, 1)).
    pub decrease_ratio: f64,
    /// Weight of the newest window in the past-latency averages (in (0, 1]).
    pub ewma_alpha: f64,
    /// How many mean deviations above the past mean a window's latency must be to count as rising.
    pub deviation_scale: f64,
    /// The least relative rise that counts, whatever the deviation.
    pub tolerance: f64,
    /// How far (relative) above the past mean a window's latency may be and still allow growth.
    pub growth_tolerance: f64,
    /// A window whose mean is more than this multiple of the past mean cuts the limit at once;
    /// a milder rise must be confirmed by the next judged window.
    pub severe_rise: f64,
    /// The share of the start limit below which latency alone never takes the limit (back pressure
    /// still can, down to the bounds' floor).
    pub latency_floor: f64,
    /// Judged windows that only learn the baseline before latency may move the limit.
    pub warmup_windows: u32,
    /// Whether the limit doubles per window until the first sign of congestion.
    pub slow_start: bool,
    /// After slow start, a window that holds raises the limit by this share of it (at least one):
    /// the time to climb from the start to a knee several times higher stays a few dozen windows,
    /// which a run of a second or two can afford, whatever the limit's size.
    pub increase_share: f64,
    /// A slow-start doubling whose window rose is kept (and slow start goes on) when, by Little's
    /// law (mean in flight over mean latency), it still raised throughput by at least this share:
    /// on a machine whose cores the directory shares with the engine and the database, more in
    /// flight raises latency long before it stops paying.
    pub min_gain: f64,
    /// The shortest window.
    pub min_window: Duration,
}

impl Default for AimdSettings {
    fn default() -> Self {
        Self {
            decrease_ratio: 0.9,
            ewma_alpha: 0.4,
            deviation_scale: 2.5,
            tolerance: 0.1,
            growth_tolerance: 0.02,
            severe_rise: 2.0,
            latency_floor: 0.5,
            warmup_windows: 3,
            slow_start: true,
            increase_share: 1.0 / 16.0,
            min_gain: 0.10,
            min_window: Duration::from_millis(10),
        }
    }
}

/// The range the limit moves in and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitBounds {
    /// The floor (at least 1).
    pub min: u32,
    /// The ceiling.
    pub max: u32,
    /// The starting limit.
    pub initial: u32,
}

impl LimitBounds {
    /// Bounds with `min ≤ initial ≤ max` and `min ≥ 1` enforced (the floor wins over the ceiling).
    pub fn new(min: u32, max: u32, initial: u32) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self {
            min,
            max,
            initial: initial.clamp(min, max),
        }
    }
}

/// One completed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// From sending the request to its result (or failure).
    pub latency: Duration,
    /// Operations outstanding when it was sent, itself included.
    pub in_flight: u32,
    /// The directory pushed back: busy, unavailable, unwilling, a timeout, a lost connection.
    pub back_pressure: bool,
}

/// What the limit did over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// The limit now.
    pub current: u32,
    /// The lowest it has been.
    pub min: u32,
    /// The highest it has been.
    pub max: u32,
    /// Times it grew.
    pub increases: u64,
    /// Times it shrank.
    pub decreases: u64,
}

impl LimitStats {
    /// The stats of a limit that never moves.
    pub fn fixed(limit: u32) -> Self {
        Self {
            current: limit,
            min: limit,
            max: limit,
            increases: 0,
            decreases: 0,
        }
    }
}

/// An exponentially weighted mean of window latencies and of their absolute deviation, in seconds.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    mean: f64,
    deviation: f64,
}

/// The window being measured.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    latency_sum: f64,
    /// The sum of the samples' operations in flight when sent: over `samples`, the window's
    /// concurrency.
    in_flight_sum: f64,
    samples: u64,
    reached_limit: bool,
    decreased: bool,
}

impl Window {
    fn new(started: Instant) -> Self {
        Self {
            started,
            latency_sum: 0.0,
            in_flight_sum: 0.0,
            samples: 0,
            reached_limit: false,
            decreased: false,
        }
    }

    /// Operations per second by Little's law: the mean in flight over the mean latency.
    fn throughput(&self) -> f64 {
        if self.latency_sum > 0.0 {
            self.in_flight_sum / self.latency_sum
        } else {
            0.0
        }
    }
}

/// Where the controller is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Learning the baseline at the start limit; `windows` judged windows seen so far.
    Learning {
        /// Windows learnt from so far.
        windows: u32,
    },
    /// Doubling per window while latency holds.
    SlowStart,
    /// +1 per window while latency holds, ×0.9 on a confirmed rise.
    Avoidance,
}

/// The last slow-start step: the limit and baseline to go back to if the step shows congestion,
/// and the throughput measured before it, which the step must beat to stay despite a rise.
#[derive(Debug, Clone, Copy)]
struct Step {
    limit: u32,
    baseline: Baseline,
    throughput: f64,
}

/// The AIMD controller.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    settings: AimdSettings,
    bounds: LimitBounds,
    limit: u32,
    baseline: Option<Baseline>,
    window: Window,
    phase: Phase,
    /// The last judged window rose mildly: one more rise confirms it.
    suspect: bool,
    /// The limit stepped (doubled, went back, was cut) during the window now measured: its
    /// operations were mostly sent under the old limit, so it is not judged.
    settle: bool,
    step: Option<Step>,
    stats: LimitStats,
}

impl AdaptiveLimit {
    /// A controller at `bounds.initial`, its first window starting at `now`.
    pub fn new(bounds: LimitBounds, settings: AimdSettings, now: Instant) -> Self {
        let bounds = LimitBounds::new(bounds.min, bounds.max, bounds.initial);
        Self {
            settings,
            bounds,
            limit: bounds.initial,
            baseline: None,
            window: Window::new(now),
            phase: Phase::Learning { windows: 0 },
            suspect: false,
            settle: false,
            step: None,
            stats: LimitStats::fixed(bounds.initial),
        }
    }

    /// Starts from `limit` (within the bounds) instead of the bounds' start, before any operation:
    /// the limit an earlier run to the same directory ended at. The baseline is learnt there as at
    /// any start, slow start follows below the ceiling; the floor latency alone may lead to stays
    /// half the bounds' start, so a directory that has slowed since is followed down as far as
    /// from a fresh start.
    pub fn resume_at(&mut self, limit: u32) {
        self.limit = limit.clamp(self.bounds.min, self.bounds.max);
        self.stats = LimitStats::fixed(self.limit);
    }

    /// The limit in force.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The bounds it moves in.
    pub fn bounds(&self) -> LimitBounds {
        self.bounds
    }

    /// What the limit did so far.
    pub fn stats(&self) -> LimitStats {
        self.stats
    }

    /// The phase the controller is in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Takes one completed operation into account; returns the new limit when it changed.
    pub fn record(&mut self, sample: Sample, now: Instant) -> Option<u32> {
        let before = self.limit;
        if sample.back_pressure {
            // A refusal or a lost operation says more than any latency: act now, once per window,
            // and stop probing upwards.
            if !self.window.decreased {
                self.decrease(self.bounds.min);
                self.window.decreased = true;
            }
            if self.phase == Phase::SlowStart {
                self.phase = Phase::Avoidance;
                self.step = None;
            }
        } else {
            self.window.latency_sum += sample.latency.as_secs_f64();
            self.window.in_flight_sum += f64::from(sample.in_flight);
            self.window.samples += 1;
            if sample.in_flight >= self.limit {
                self.window.reached_limit = true;
            }
        }
        if now.saturating_duration_since(self.window.started) >= self.window_length() {
            self.close_window(now);
        }
        (self.limit != before).then_some(self.limit)
    }

    fn window_length(&self) -> Duration {
        let past = self
            .baseline
            .map(|b| Duration::from_secs_f64(b.mean.clamp(0.0, 60.0)))
            .unwrap_or_default();
        past.max(self.settings.min_window)
    }

    /// The lowest limit latency alone may lead to.
    fn latency_floor(&self) -> u32 {
        let share = (f64::from(self.bounds.initial) * self.settings.latency_floor).ceil() as u32;
        share.clamp(self.bounds.min, self.bounds.initial)
    }

    fn close_window(&mut self, now: Instant) {
        let window = std::mem::replace(&mut self.window, Window::new(now));
        if std::mem::take(&mut self.settle) {
            // Its operations were sent before the step: they would judge the old limit (a doubling
            // would seem free, then show its cost a window later, after it was built upon).
            return;
        }
        if window.samples == 0 || !window.reached_limit {
            // Latency measured below the limit says nothing about the limit, and a baseline taken
            // at light load (the start of a run, a lull) would make the next busy window look like
            // congestion.
            return;
        }
        let current = window.latency_sum / window.samples as f64;
        let past = match (self.phase, self.baseline) {
            (Phase::Learning { windows }, past) => {
                // While the directory's queue fills, the newest window is the best estimate of the
                // pace; earlier ones only tell how noisy it is.
                let deviation = past.map_or(0.0, |p| {
                    p.deviation
                        + self.settings.ewma_alpha * ((current - p.mean).abs() - p.deviation)
                });
                self.baseline = Some(Baseline {
                    mean: current,
                    deviation,
                });
                let windows = windows + 1;
                self.phase = if windows < self.settings.warmup_windows {
                    Phase::Learning { windows }
                } else if self.settings.slow_start && self.limit < self.bounds.max {
                    Phase::SlowStart
                } else {
                    Phase::Avoidance
                };
                return;
            }
            (_, None) => {
                self.baseline = Some(Baseline {
                    mean: current,
                    deviation: 0.0,
                });
                return;
            }
            (_, Some(past)) => past,
        };
        if !window.decreased {
            let allowance = (self.settings.deviation_scale * past.deviation)
                .max(self.settings.tolerance * past.mean);
            let rises = current > past.mean + allowance;
            let holds = current <= past.mean * (1.0 + self.settings.growth_tolerance);
            let mut stepped = false;
            if self.phase == Phase::SlowStart {
                let paid = self.step.is_some_and(|step| {
                    window.throughput() >= step.throughput * (1.0 + self.settings.min_gain)
                });
                if holds || paid {
                    // Latency held, or rose less than the operations in flight did (the doubling
                    // bought throughput all the same): double again. After a rise, what follows is
                    // judged against the latency the doubling brought, not the one before.
                    let baseline = if holds {
                        past
                    } else {
                        Baseline {
                            mean: current,
                            deviation: past.deviation,
                        }
                    };
                    self.step = Some(Step {
                        limit: self.limit,
                        baseline,
                        throughput: window.throughput(),
                    });
                    self.grow_to(self.limit.saturating_mul(2));
                    self.settle = true;
                    stepped = true;
                    if self.limit >= self.bounds.max {
                        self.phase = Phase::Avoidance;
                        self.step = None;
                    }
                    if !holds {
                        self.baseline = Some(baseline);
                        return;
                    }
                } else if let Some(step) = self.step.take() {
                    // The last doubling went past the knee: latency rose and throughput did not
                    // follow. Back to where it held, and to the baseline measured there.
                    self.phase = Phase::Avoidance;
                    self.shrink_to(step.limit);
                    self.baseline = Some(step.baseline);
                    return;
                } else {
                    // No doubling tried yet: the limit is the start limit, whose latency was just
                    // learnt, so a rise is the workload's mix moving (a follow-up round's first
                    // exports are cheap updates, its later ones renames, deletes and member
                    // changes) or the directory's queue still filling, not this limit's knee.
                    // Cutting here left a short run crawling back by a sixteenth per window from
                    // below its start, and ending slow start on a mild drift left it climbing by
                    // sixteenths from the start; the baseline follows the new pace (below) and slow
                    // start goes on. A real knee below the start shows when the next doubling
                    // does not pay and comes back; back pressure still cuts at once.
                }
            }
            if !stepped && self.phase == Phase::Avoidance {
                if rises {
                    if self.suspect || current > past.mean * self.settings.severe_rise {
                        self.decrease(self.latency_floor());
                        self.suspect = false;
                    } else {
                        self.suspect = true;
                    }
                } else {
                    self.suspect = false;
                    if holds {
                        self.increase();
                    }
                }
            }
        }
        let a = self.settings.ewma_alpha;
        let deviation = (current - past.mean).abs();
        self.baseline = Some(Baseline {
            mean: past.mean + a * (current - past.mean),
            deviation: past.deviation + a * (deviation - past.deviation),
        });
    }

    /// ×[`AimdSettings::decrease_ratio`], by at least one, not below `floor`.
    fn decrease(&mut self, floor: u32) {
        let lowered = (f64::from(self.limit) * self.settings.decrease_ratio).floor() as u32;
        let next = lowered
            .min(self.limit.saturating_sub(1))
            .max(floor)
            .max(self.bounds.min);
        self.shrink_to(next);
    }

    fn shrink_to(&mut self, next: u32) {
        if next < self.limit {
            self.settle = true;
            self.limit = next;
            self.stats.decreases += 1;
            self.stats.min = self.stats.min.min(next);
            self.stats.current = next;
        }
    }

    fn increase(&mut self) {
        let step = ((f64::from(self.limit) * self.settings.increase_share).floor() as u32).max(1);
        self.grow_to(self.limit.saturating_add(step));
    }

    fn grow_to(&mut self, next: u32) {
        let next = next.min(self.bounds.max);
        if next > self.limit {
            self.limit = next;
            self.stats.increases += 1;
            self.stats.max = self.stats.max.max(next);
            self.stats.current = next;
        }
    }
}

/// The pool's bound on operations in flight: a semaphore whose permits follow the limit, fixed or
/// adaptive. Shrinking takes free permits away at once and the rest as operations finish (a debt),
/// so operations already sent are never disturbed; growing pays the debt first, then adds permits.
pub(crate) struct InFlightGate {
    semaphore: Semaphore,
    limit: AtomicUsize,
    debt: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    occupancy: Occupancy,
    controller: Option<Mutex<AdaptiveLimit>>,
}

/// Leave to run one operation; gives its place back when dropped.
pub(crate) struct GatePermit<'a> {
    gate: &'a InFlightGate,
    permit: Option<SemaphorePermit<'a>>,
    /// Operations in flight when this one was let through, itself included.
    pub in_flight: u32,
    sent: Instant,
}

impl GatePermit<'_> {
    /// Starts the operation's clock (when its request goes out, after any wait for a connection or
    /// for the rate limit, which say nothing about the directory's pace).
    pub fn mark_sent(&mut self) {
        self.sent = Instant::now();
    }

    /// Reports how the operation went (to the adaptive controller, if any). Call once, when its
    /// result (or failure) is in.
    pub fn record(&self, back_pressure: bool) {
        self.gate.record(Sample {
            latency: self.sent.elapsed(),
            in_flight: self.in_flight,
            back_pressure,
        });
    }
}

impl Drop for GatePermit<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.gate.occupancy.leave(Instant::now());
        if let Some(permit) = self.permit.take()
            && self.gate.take_debt()
        {
            permit.forget();
        }
    }
}

impl InFlightGate {
    /// A gate that lets `limit` operations through at once, always.
    pub fn fixed(limit: u32) -> Self {
        Self::with(limit.max(1), None)
    }

    /// A gate whose limit the AIMD controller sets, starting at `bounds.initial`, or at `resume`
    /// (within the bounds) where an earlier run learnt where to be.
    pub fn adaptive(bounds: LimitBounds, settings: AimdSettings, resume: Option<u32>) -> Self {
        let mut controller = AdaptiveLimit::new(bounds, settings, Instant::now());
        if let Some(limit) = resume {
            controller.resume_at(limit);
        }
        Self::with(controller.limit(), Some(Mutex::new(controller)))
    }

    fn with(limit: u32, controller: Option<Mutex<AdaptiveLimit>>) -> Self {
        Self {
            semaphore: Semaphore::new(limit as usize),
            limit: AtomicUsize::new(limit as usize),
            debt: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            occupancy: Occupancy::new(Instant::now()),
            controller,
        }
    }

    /// Waits for a place; fails only when the gate is closed.
    pub async fn acquire(&self) -> Result<GatePermit<'_>, tokio::sync::AcquireError> {
        let permit = self.semaphore.acquire().await?;
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(in_flight, Ordering::Relaxed);
        self.occupancy.enter(Instant::now());
        Ok(GatePermit {
            gate: self,
            permit: Some(permit),
            in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
            sent: Instant::now(),
        })
    }

    /// Operations in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The most operations in flight at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// How full the gate was kept so far (the mean in flight while any were).
    pub fn occupancy(&self) -> OccupancyStats {
        self.occupancy.snapshot(Instant::now())
    }

    /// The limit in force.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// What the limit did so far.
    pub fn stats(&self) -> LimitStats {
        match &self.controller {
            Some(c) => lock(c).stats(),
            None => LimitStats::fixed(u32::try_from(self.limit()).unwrap_or(u32::MAX)),
        }
    }

    /// Feeds one completed operation to the controller and applies a changed limit.
    pub fn record(&self, sample: Sample) {
        let Some(controller) = &self.controller else {
            return;
        };
        let mut c = lock(controller);
        if let Some(next) = c.record(sample, Instant::now()) {
            // Applied under the controller's lock, so that changes land in the order decided.
            self.set_limit(next as usize);
            tracing::debug!(
                limit = next,
                back_pressure = sample.back_pressure,
                latency_us = sample.latency.as_micros() as u64,
                "in-flight limit changed"
            );
        }
    }

    fn set_limit(&self, next: usize) {
        let before = self.limit.swap(next, Ordering::Relaxed);
        if next < before {
            for _ in next..before {
                match self.semaphore.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) => {
                        self.debt.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        } else if next > before {
            let mut grow = next - before;
            while grow > 0 && self.take_debt() {
                grow -= 1;
            }
            self.semaphore.add_permits(grow);
        }
    }

    fn take_debt(&self) -> bool {
        self.debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
            .is_ok()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
