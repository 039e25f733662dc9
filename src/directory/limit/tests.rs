//! Tests of the adaptive in-flight limit: the controller fed synthetic latencies and refusals.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn ok(latency_ms: u64, in_flight: u32) -> Sample {
    Sample {
        latency: MS * latency_ms as u32,
        in_flight,
        back_pressure: false,
    }
}

fn refused() -> Sample {
    Sample {
        latency: MS,
        in_flight: 1,
        back_pressure: true,
    }
}

/// Feeds `windows` windows of `per_window` samples each at the given latency, with the pool
/// full (or idle when `saturated` is false); returns the time reached.
fn run(
    c: &mut AdaptiveLimit,
    mut now: Instant,
    windows: u32,
    latency_ms: u64,
    saturated: bool,
) -> Instant {
    let step = Duration::from_millis(latency_ms.max(10)) / 4;
    for _ in 0..windows {
        for _ in 0..4 {
            now += step;
            let in_flight = if saturated { c.limit() } else { 1 };
            c.record(ok(latency_ms, in_flight), now);
        }
    }
    now
}

fn controller(min: u32, max: u32, initial: u32) -> (AdaptiveLimit, Instant) {
    let t0 = Instant::now();
    (
        AdaptiveLimit::new(
            LimitBounds::new(min, max, initial),
            AimdSettings::default(),
            t0,
        ),
        t0,
    )
}

#[test]
fn bounds_are_ordered_and_at_least_one() {
    assert_eq!(
        LimitBounds::new(0, 0, 0),
        LimitBounds {
            min: 1,
            max: 1,
            initial: 1
        }
    );
    assert_eq!(LimitBounds::new(4, 2, 1).max, 4, "the floor wins");
    assert_eq!(LimitBounds::new(1, 64, 100).initial, 64);
}

fn controller_with(settings: AimdSettings, min: u32, max: u32, initial: u32) -> AdaptiveLimit {
    AdaptiveLimit::new(
        LimitBounds::new(min, max, initial),
        settings,
        Instant::now(),
    )
}

#[test]
fn slow_start_doubles_per_window_while_latency_holds_and_the_limit_is_used() {
    let (mut c, t0) = controller(1, 16, 4);
    run(&mut c, t0, 30, 2, true);
    assert_eq!(c.limit(), 16, "grew to the ceiling and stopped there");
    let s = c.stats();
    assert_eq!(
        (s.increases, s.decreases, s.max),
        (2, 0, 16),
        "4 -> 8 -> 16"
    );
    assert_eq!(c.phase(), Phase::Avoidance);
}

#[test]
fn without_slow_start_it_grows_by_one_per_window() {
    let settings = AimdSettings {
        slow_start: false,
        ..AimdSettings::default()
    };
    let mut c = controller_with(settings, 1, 16, 4);
    let t0 = Instant::now();
    let t = run(&mut c, t0, 3, 2, true);
    assert_eq!(c.limit(), 4, "the learning windows do not move it");
    let t = run(&mut c, t, 1, 2, true);
    assert_eq!(c.limit(), 5);
    run(&mut c, t, 30, 2, true);
    let s = c.stats();
    assert_eq!((c.limit(), s.increases, s.decreases), (16, 12, 0));
}

#[test]
fn after_slow_start_a_big_limit_grows_by_a_share_of_itself() {
    let settings = AimdSettings {
        slow_start: false,
        ..AimdSettings::default()
    };
    let mut c = controller_with(settings, 1, 256, 64);
    let t0 = Instant::now();
    let t = run(&mut c, t0, 3, 2, true);
    assert_eq!(c.limit(), 64, "the learning windows do not move it");
    let t = run(&mut c, t, 1, 2, true);
    assert_eq!(c.limit(), 68, "64 + 64/16");
    run(&mut c, t, 1, 2, true);
    assert_eq!(c.limit(), 72, "68 + 68/16 (floored)");
}

#[test]
fn the_start_limit_is_kept_while_the_directory_queue_fills() {
    let (mut c, t0) = controller(1, 128, 32);
    // Latency climbs as the idle directory's queue fills: 1, 3, then 6 ms.
    let t = run(&mut c, t0, 1, 1, true);
    let t = run(&mut c, t, 1, 3, true);
    run(&mut c, t, 1, 6, true);
    assert_eq!(c.limit(), 32);
    assert_eq!(c.stats().decreases, 0);
    assert_eq!(
        c.phase(),
        Phase::SlowStart,
        "baseline learnt from the last window"
    );
}

#[test]
fn a_mild_drift_at_the_start_limit_does_not_end_slow_start() {
    let (mut c, t0) = controller(1, 128, 32);
    let t = run(&mut c, t0, 3, 20, true);
    // 5 % slower: neither holding (2 %) nor rising (10 %), the queue still filling.
    let t = run(&mut c, t, 1, 21, true);
    assert_eq!((c.limit(), c.phase()), (32, Phase::SlowStart));
    // The baseline follows it, so the same pace soon holds, and slow start doubles.
    run(&mut c, t, 3, 21, true);
    assert_eq!((c.limit(), c.phase()), (64, Phase::SlowStart));
}

#[test]
fn slow_start_goes_back_to_the_last_limit_that_held() {
    let (mut c, t0) = controller(1, 128, 32);
    let t = run(&mut c, t0, 3, 4, true);
    let t = run(&mut c, t, 1, 4, true);
    assert_eq!(c.limit(), 64, "latency held at 32: doubled");
    // The next window's operations were mostly sent at 32: not judged, whatever their latency.
    let t = run(&mut c, t, 1, 5, true);
    assert_eq!((c.limit(), c.phase()), (64, Phase::SlowStart));
    // Past the knee: twice the operations outstanding, twice the latency (Little's law).
    let t = run(&mut c, t, 1, 8, true);
    assert_eq!(c.limit(), 32, "back to where latency held, not 64 × 0.9");
    assert_eq!(c.phase(), Phase::Avoidance);
    // And the baseline is the one measured at 32: after a settling window, latency as before
    // holds, and it grows by a sixteenth.
    let t = run(&mut c, t, 1, 8, true);
    assert_eq!(c.limit(), 32);
    run(&mut c, t, 1, 4, true);
    assert_eq!(c.limit(), 34);
    assert_eq!(c.stats().decreases, 1);
}

/// Feeds samples at `latency_ms`, one a millisecond with the pool full, until `count` windows have
/// closed (exactly, unlike [`run`], whose windows may straddle its calls); returns the time.
fn windows(c: &mut AdaptiveLimit, mut now: Instant, count: u32, latency_ms: u64) -> Instant {
    for _ in 0..count {
        let started = c.window.started;
        while c.window.started == started {
            now += MS;
            let in_flight = c.limit();
            c.record(ok(latency_ms, in_flight), now);
        }
    }
    now
}

#[test]
fn a_doubling_that_raises_latency_but_still_pays_is_kept_and_slow_start_goes_on() {
    let (mut c, t) = controller(1, 256, 32);
    let mut t = windows(&mut c, t, 4, 10);
    assert_eq!(c.limit(), 64, "latency held at 32: doubled");
    t = windows(&mut c, t, 1, 12);
    // Twice the operations in flight for 1.4 times the latency: 43 % more throughput, although
    // the window rose well past the tolerance. Kept, and doubled again.
    t = windows(&mut c, t, 1, 14);
    assert_eq!((c.limit(), c.phase()), (128, Phase::SlowStart));
    assert_eq!(c.stats().decreases, 0);
    t = windows(&mut c, t, 1, 14);
    // 128 for 1.95 times the latency at 64: 3 % more, short of the 10 % asked. Back to 64, and to
    // the baseline measured there, which the same latency now holds to: +1/16.
    t = windows(&mut c, t, 1, 27);
    assert_eq!((c.limit(), c.phase()), (64, Phase::Avoidance));
    windows(&mut c, t, 2, 14);
    assert_eq!(c.limit(), 68);
    assert_eq!(c.stats().decreases, 1);
}

#[test]
fn a_doubling_that_buys_too_little_goes_back_even_when_latency_did_not_rise_much() {
    let (mut c, t) = controller(1, 128, 32);
    let t = windows(&mut c, t, 5, 10);
    assert_eq!(c.limit(), 64, "doubled, then its settling window");
    // 1.9 times the latency for twice the operations: 5 % more, short of the 10 % asked.
    windows(&mut c, t, 1, 19);
    assert_eq!((c.limit(), c.phase()), (32, Phase::Avoidance));

    // A limit the pipeline never fills: the window reached 64 once, but ran 23 in flight on
    // average at about the same latency: no gain, so back.
    let (mut c, t) = controller(1, 128, 32);
    let mut t = windows(&mut c, t, 5, 10);
    assert_eq!(c.limit(), 64);
    let mut sent = 0;
    while c.limit() == 64 && sent < 100 {
        t += MS;
        let in_flight = if sent == 0 { 64 } else { 23 };
        c.record(ok(11, in_flight), t);
        sent += 1;
    }
    assert_eq!((c.limit(), c.phase()), (32, Phase::Avoidance));
}

#[test]
fn one_noisy_window_does_not_cut_the_limit_but_a_confirmed_rise_does() {
    let (mut c, t0) = controller(1, 32, 32);
    let t = run(&mut c, t0, 5, 2, true);
    let t = run(&mut c, t, 1, 3, true);
    assert_eq!(c.limit(), 32, "a 50 % rise in one window is only suspected");
    let t = run(&mut c, t, 3, 2, true);
    assert_eq!(c.stats().decreases, 0, "and forgotten when latency is back");
    let t = run(&mut c, t, 3, 2, true);
    let t = run(&mut c, t, 1, 3, true);
    assert_eq!(c.limit(), 32);
    run(&mut c, t, 1, 5, true);
    assert_eq!(c.limit(), 28, "the next window rose again: confirmed, ×0.9");
}

#[test]
fn latency_alone_never_takes_the_limit_below_half_its_start() {
    // A baseline that hardly moves, so that every slow window reads as a severe rise.
    let settings = AimdSettings {
        ewma_alpha: 0.01,
        ..AimdSettings::default()
    };
    let mut c = controller_with(settings, 1, 32, 32);
    let t = run(&mut c, Instant::now(), 5, 1, true);
    let t = run(&mut c, t, 20, 10, true);
    assert_eq!(c.limit(), 16, "{:?}", c.stats());
    // Refusals still can.
    assert_eq!(c.record(refused(), t + Duration::from_millis(50)), Some(14));
}

#[test]
fn back_pressure_ends_slow_start() {
    let (mut c, t0) = controller(1, 128, 8);
    let t = run(&mut c, t0, 4, 2, true);
    assert_eq!((c.limit(), c.phase()), (16, Phase::SlowStart));
    assert_eq!(c.record(refused(), t + MS), Some(14));
    assert_eq!(c.phase(), Phase::Avoidance);
    run(&mut c, t + MS, 1, 2, true);
    assert!(c.limit() <= 15, "grows by one at most now: {}", c.limit());
}

#[test]
fn does_not_grow_when_the_limit_is_not_reached() {
    let (mut c, t0) = controller(1, 16, 4);
    run(&mut c, t0, 30, 2, false);
    assert_eq!(c.limit(), 4);
    assert_eq!(c.stats().increases, 0);
}

#[test]
fn latency_at_light_load_is_no_baseline_for_a_busy_pool() {
    let (mut c, t0) = controller(1, 64, 32);
    // A lull: few operations, fast.
    let t = run(&mut c, t0, 10, 1, false);
    // The pool fills: latency five times the lull's, steady.
    run(&mut c, t, 10, 5, true);
    assert_eq!(c.stats().decreases, 0, "{:?}", c.stats());
    assert!(c.limit() > 32, "and it grows: {}", c.limit());
}

#[test]
fn shrinks_when_latency_rises_then_recovers_when_it_settles() {
    let (mut c, t0) = controller(1, 32, 32);
    let t = run(&mut c, t0, 10, 1, true);
    assert_eq!(c.limit(), 32);
    let t = run(&mut c, t, 1, 20, true);
    assert!(c.limit() < 32, "a 20× rise cuts the limit: {}", c.limit());
    let t = run(&mut c, t, 3, 20, true);
    let low = c.limit();
    assert!(
        low >= 16,
        "at most a few cuts before the new pace is the norm"
    );
    // Latency steady at the new level: the limit is used again and grows.
    run(&mut c, t, 20, 20, true);
    assert!(c.limit() > low, "{} > {low}", c.limit());
    assert!(c.stats().min <= low);
}

#[test]
fn back_pressure_cuts_at_once_but_once_per_window() {
    let (mut c, t0) = controller(1, 64, 20);
    let t = run(&mut c, t0, 5, 1, false);
    assert_eq!(c.record(refused(), t), Some(18), "20 × 0.9");
    assert_eq!(c.record(refused(), t), None, "same window");
    assert_eq!(c.record(refused(), t + MS), None);
    let t = t + Duration::from_millis(20);
    c.record(ok(1, 1), t);
    assert_eq!(
        c.record(refused(), t + MS),
        Some(16),
        "next window: 18 × 0.9"
    );
    assert_eq!(c.stats().decreases, 2);
}

#[test]
fn never_leaves_its_bounds() {
    let (mut c, mut t) = controller(3, 8, 8);
    for _ in 0..100 {
        t += Duration::from_millis(50);
        c.record(refused(), t);
    }
    assert_eq!(c.limit(), 3);
    assert_eq!(c.stats().min, 3);
    run(&mut c, t, 100, 1, true);
    assert_eq!(c.limit(), 8);
    assert_eq!(c.stats().max, 8);
}

#[test]
fn small_limits_still_move() {
    let (mut c, t0) = controller(1, 4, 2);
    assert_eq!(c.record(refused(), t0), Some(1), "2 × 0.9 floors to 1");
    assert_eq!(c.record(refused(), t0 + Duration::from_secs(1)), None);
}

#[test]
fn steady_noise_does_not_cut_the_limit() {
    let (mut c, mut t) = controller(1, 32, 32);
    for i in 0..400u64 {
        t += Duration::from_millis(3);
        // Latency alternating 0.9 / 1.1 ms around 1 ms.
        let latency = Duration::from_micros(if i % 2 == 0 { 900 } else { 1100 });
        c.record(
            Sample {
                latency,
                in_flight: 32,
                back_pressure: false,
            },
            t,
        );
    }
    assert_eq!(c.stats().decreases, 0);
}

#[tokio::test]
async fn the_gate_follows_the_limit_without_disturbing_operations_in_flight() {
    let gate = InFlightGate::adaptive(LimitBounds::new(1, 8, 4), AimdSettings::default(), None);
    let held: Vec<_> = futures_hold(&gate, 4).await;
    assert_eq!(gate.in_flight(), 4);
    assert!(gate.semaphore.try_acquire().is_err(), "4 of 4 in use");
    // Shrink to 2 while all 4 are out: the debt is paid as they come back.
    gate.set_limit(2);
    drop(held);
    assert_eq!(gate.in_flight(), 0);
    assert_eq!(gate.semaphore.available_permits(), 2);
    // Grow to 6: two more places.
    gate.set_limit(6);
    assert_eq!(gate.semaphore.available_permits(), 6);
    // Shrink with free places: taken at once.
    gate.set_limit(3);
    assert_eq!(gate.semaphore.available_permits(), 3);
    // Shrink with one out, then grow back before it returns: the debt is cancelled, not paid.
    let all = futures_hold(&gate, 3).await;
    gate.set_limit(1);
    gate.set_limit(2);
    drop(all);
    assert_eq!(gate.semaphore.available_permits(), 2);
    assert_eq!(gate.limit(), 2);
    assert_eq!(gate.peak(), 4);
}

#[tokio::test]
async fn a_fixed_gate_never_moves() {
    let gate = InFlightGate::fixed(3);
    let p = gate.acquire().await.expect("open");
    p.record(true);
    drop(p);
    assert_eq!(gate.limit(), 3);
    assert_eq!(gate.stats(), LimitStats::fixed(3));
}

#[tokio::test]
async fn back_pressure_through_the_gate_lowers_its_limit() {
    let gate = InFlightGate::adaptive(LimitBounds::new(1, 32, 20), AimdSettings::default(), None);
    let p = gate.acquire().await.expect("open");
    p.record(true);
    drop(p);
    assert_eq!(gate.limit(), 18);
    assert_eq!(gate.semaphore.available_permits(), 18);
    assert_eq!(gate.stats().decreases, 1);
}

async fn futures_hold(gate: &InFlightGate, n: usize) -> Vec<GatePermit<'_>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(gate.acquire().await.expect("open"));
    }
    held
}

#[test]
fn a_rise_before_any_doubling_is_the_workload_changing_not_a_reason_to_cut() {
    let (mut c, t0) = controller(1, 128, 32);
    let t = run(&mut c, t0, 3, 10, true);
    assert_eq!(c.phase(), Phase::SlowStart);
    // The mix turns slower at the start limit (a follow-up round reaching its renames and member
    // changes): 2.5 × the learnt latency, a severe rise.
    let t = run(&mut c, t, 1, 25, true);
    assert_eq!((c.limit(), c.phase()), (32, Phase::SlowStart));
    assert_eq!(c.stats().decreases, 0, "no cut below the start limit");
    // The baseline follows the new pace, and the limit grows again from the start, not from below.
    run(&mut c, t, 40, 25, true);
    assert_eq!(c.stats().decreases, 0);
    assert!(c.limit() > 32, "{:?}", c.stats());
}

#[test]
fn a_resumed_limit_starts_where_it_was_learnt_and_still_follows_a_slower_directory_down() {
    let (mut c, t0) = controller(1, 128, 32);
    c.resume_at(96);
    assert_eq!((c.limit(), c.stats().current, c.stats().max), (96, 96, 96));
    // The baseline is learnt at the resumed limit, then slow start goes on from there.
    let t = run(&mut c, t0, 3, 10, true);
    assert_eq!(c.phase(), Phase::SlowStart);
    run(&mut c, t, 2, 10, true);
    assert_eq!(c.limit(), 128, "{:?}", c.stats());

    // A directory that has slowed since: latency alone takes the limit below half the resumed
    // start, down to half of the bounds' start (16), as from a fresh start. (A baseline that hardly
    // moves, so that every slow window reads as a severe rise.)
    let settings = AimdSettings {
        ewma_alpha: 0.01,
        ..AimdSettings::default()
    };
    let mut c = controller_with(settings, 1, 128, 32);
    c.resume_at(128);
    let t = run(&mut c, Instant::now(), 5, 1, true);
    run(&mut c, t, 60, 10, true);
    assert_eq!(c.limit(), 16, "{:?}", c.stats());

    // Outside the bounds, the bounds win.
    let (mut high, _) = controller(1, 64, 32);
    high.resume_at(500);
    assert_eq!(high.limit(), 64);
    let (mut low, _) = controller(8, 64, 32);
    low.resume_at(0);
    assert_eq!(low.limit(), 8);
}
