//! The adaptive in-flight limit against real slapd servers: it grows on a fast directory from a low
//! start, falls when the round trip rises mid-run (latency injected at a proxy), and backs off when
//! the server throttles connections, without failing exports that succeed on a retry. Directions
//! and bounds are asserted, never timings.

use std::collections::HashMap;
use std::time::Duration;

use jim_export::config::RunOptions;
use jim_export::config::{Concurrency, DirectoryConfig, ExportSettings};
use jim_export::directory::{Directory, DirectoryTuning, ExportJob};
use jim_export::engine::Engine;
use jim_export::model::ExportPhase;
use jim_export_testkit::seed::Template;
use jim_export_testkit::support;
use jim_export_testkit::support::directory::*;
use jim_export_testkit::{LatencyProxy, Slapd, SlapdOptions};
use tokio::sync::mpsc;
use uuid::Uuid;

/// `n` person Creates under `base`, with the DN each will have.
fn creates(base: &str, prefix: &str, n: usize) -> (Vec<ExportJob>, HashMap<Uuid, String>) {
    let pt = person_type();
    let settings = ExportSettings::default();
    let mut jobs = Vec::with_capacity(n);
    let mut dns = HashMap::with_capacity(n);
    for i in 0..n {
        let uid = format!("{prefix}{i}");
        let dn = format!("uid={uid},{base}");
        let e = Export::create()
            .text(person::DN, C::Add, &dn)
            .text(person::UID, C::Add, &uid)
            .text(person::CN, C::Add, "A")
            .text(person::SN, C::Add, "A");
        dns.insert(e.0.id, dn);
        jobs.push(job(&settings, &e, &pt, None));
    }
    (jobs, dns)
}

/// Streams `jobs` through `directory.run`, calling `each(results_so_far)` after every result; every
/// export must succeed.
async fn stream(
    directory: &Directory,
    jobs: Vec<ExportJob>,
    mut each: impl FnMut(usize),
) -> Result<usize, Box<dyn std::error::Error>> {
    let (job_tx, job_rx) = mpsc::channel::<ExportJob>(64);
    let (result_tx, mut result_rx) = mpsc::channel(64);
    let runner = {
        let d = directory.clone();
        tokio::spawn(async move { d.run(job_rx, result_tx).await })
    };
    let feeder = tokio::spawn(async move {
        for j in jobs {
            if job_tx.send(j).await.is_err() {
                break;
            }
        }
    });
    let mut seen = 0;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(120), result_rx.recv()).await? {
        assert!(r.is_success(), "{:?}", r.status);
        seen += 1;
        each(seen);
    }
    feeder.await?;
    runner.await?;
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_grows_on_a_fast_directory_from_a_low_start() -> TestResult {
    let fx = Fixture::new("adaptive-grow").await?;
    let directory = fx
        .connect(DirectoryTuning {
            connections: Some(2),
            initial_in_flight: Some(2),
            max_in_flight: Some(24),
            ..DirectoryTuning::default()
        })
        .await?;
    assert!(directory.is_adaptive());
    assert_eq!(directory.in_flight_limit(), 2);
    assert_eq!(directory.max_in_flight(), 24);
    let (jobs, _) = creates(&fx.base, "g", 600);
    stream(&directory, jobs, |_| {}).await?;
    let stats = directory.stats();
    let limit = stats.in_flight_limit;
    assert!(
        limit.increases > 0 && limit.max > 2,
        "the limit grew from 2: {limit:?}"
    );
    assert!(limit.max <= 24, "and stayed under its ceiling: {limit:?}");
    assert!(stats.peak_in_flight > 2, "{stats:?}");
    assert!(stats.peak_in_flight <= 24, "{stats:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_falls_when_the_round_trip_rises_mid_run() -> TestResult {
    let fx = Fixture::new("adaptive-rtt").await?;
    let proxy = LatencyProxy::in_front_of(fx.slapd.ldap_url(), Duration::ZERO)?;
    let config = DirectoryConfig::simple(
        proxy.url("ldap"),
        fx.slapd.admin_dn(),
        fx.slapd.admin_password(),
    )
    .allowing_password_without_tls();
    let directory = Directory::connect_with(
        &config,
        DirectoryTuning {
            connections: Some(2),
            max_in_flight: Some(32),
            ..DirectoryTuning::default()
        },
    )
    .await?;
    // Enough operations before the rise for the controller to have learnt the fast pace (a few
    // windows at its limit): a rise while it is still learning is its baseline, not a change. And
    // enough after it for several windows at the new pace: with the test's siblings sharing the two
    // cores, the fast pace's windows are noisy, and 300 operations after the rise once closed too
    // few windows to show it (the limit held at 28).
    let (jobs, dns) = creates(&fx.base, "r", 1000);
    let handle = proxy.handle();
    let (mut before, mut lowest_after) = (0usize, usize::MAX);
    let d = directory.clone();
    stream(&directory, jobs, |seen| {
        if seen == 400 {
            before = d.in_flight_limit();
            handle.set_rtt(Duration::from_millis(25));
        } else if seen > 400 {
            lowest_after = lowest_after.min(d.in_flight_limit());
        }
    })
    .await?;
    let limit = directory.stats().in_flight_limit;
    assert!(
        lowest_after < before,
        "the limit fell after the RTT rose: {before} -> {lowest_after} ({limit:?})"
    );
    assert!(limit.decreases > 0, "{limit:?}");
    assert!(limit.min >= 1 && limit.max <= 32, "{limit:?}");
    for dn in dns.values().take(20) {
        assert!(fx.exists(dn).await?, "{dn} was created");
    }
    Ok(())
}

/// slapd lets one connection execute at most half its threads at once and queues the rest as
/// "pending"; a bound connection with more than `conn_max_pending_auth` pending operations is
/// closed by the server (the operations on it are lost). With 4 threads and at most 2 pending, a
/// connection carrying more than 4 operations is cut: the pool's defaults (8 per connection) are far
/// above that, so the limit must come down, and every export still succeeds through the executor's
/// retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_backs_off_when_the_server_throttles_connections() -> TestResult {
    let slapd = Slapd::start(SlapdOptions {
        durable: true,
        threads: Some(4),
        extra_global: vec!["conn_max_pending_auth 2".into()],
        ..SlapdOptions::default()
    })
    .await?;
    let base = format!("ou=People,{}", slapd.suffix());
    let config =
        DirectoryConfig::simple(slapd.ldap_url(), slapd.admin_dn(), slapd.admin_password())
            .allowing_password_without_tls();
    let directory = Directory::connect_with(
        &config,
        DirectoryTuning {
            connections: Some(2),
            max_in_flight: Some(16),
            initial_in_flight: Some(16),
            max_operation_retries: 8,
            retry_backoff: Duration::from_millis(100),
            ..DirectoryTuning::default()
        },
    )
    .await?;
    let (jobs, dns) = creates(&base, "t", 300);
    let n = stream(&directory, jobs, |_| {}).await?;
    assert_eq!(n, 300);
    let stats = directory.stats();
    let limit = stats.in_flight_limit;
    eprintln!("throttled: {stats:?}");
    assert!(
        stats.lost_connections > 0 || stats.retries > 0,
        "the server pushed back: {stats:?}"
    );
    assert!(limit.decreases > 0, "the limit backed off: {limit:?}");
    assert!(limit.min < 16, "{limit:?}");
    assert_eq!(
        slapd
            .count_entries(&base, "(&(objectClass=inetOrgPerson)(uid=t*))")
            .await?,
        dns.len(),
        "every export is in the directory"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_limit_never_moves() -> TestResult {
    let fx = Fixture::new("adaptive-fixed").await?;
    let directory = fx
        .connect(DirectoryTuning {
            connections: Some(2),
            concurrency: Concurrency::Fixed,
            max_in_flight: Some(6),
            ..DirectoryTuning::default()
        })
        .await?;
    assert!(!directory.is_adaptive());
    let (jobs, _) = creates(&fx.base, "f", 200);
    stream(&directory, jobs, |_| {}).await?;
    let stats = directory.stats();
    assert_eq!(stats.in_flight_limit.current, 6);
    assert_eq!(
        (
            stats.in_flight_limit.increases,
            stats.in_flight_limit.decreases
        ),
        (0, 0)
    );
    assert!(stats.peak_in_flight <= 6, "{stats:?}");
    Ok(())
}

/// Through the engine: progress events carry the limit in force, and the run's metrics say how it
/// moved; a fixed limit is reported as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reports_the_limit_in_progress_and_metrics() {
    let env = support::engine::Env::new(Template::Small).await;
    let engine = Engine::new();
    let mut request = env.request();
    request.options.progress_interval_ms = 10;
    let (result, events) = env.run(&engine, &request).await;
    assert!(
        result.failed_count == 0 && result.success_count > 0,
        "{result:?}"
    );
    let m = &result.metrics;
    assert!(
        m.min_in_flight_limit >= 1
            && m.min_in_flight_limit <= m.in_flight_limit
            && m.in_flight_limit <= m.max_in_flight_limit
            && m.max_in_flight_limit <= 128,
        "{m:?}"
    );
    assert!(m.max_in_flight <= m.max_in_flight_limit, "{m:?}");
    // Both count directory operations outstanding (the mean over samples taken while any were).
    assert!(
        m.mean_in_flight >= 1.0 && m.mean_in_flight <= f64::from(m.max_in_flight),
        "{m:?}"
    );
    let progress = events.progress.lock().unwrap().clone();
    let executing: Vec<_> = progress
        .iter()
        .filter(|p| p.phase != ExportPhase::Preparing)
        .collect();
    assert!(!executing.is_empty());
    assert!(
        executing
            .iter()
            .all(|p| p.in_flight_limit >= m.min_in_flight_limit
                && p.in_flight_limit <= m.max_in_flight_limit),
        "{executing:?}"
    );
    assert_eq!(
        progress.last().map(|p| (p.phase, p.in_flight_limit)),
        Some((ExportPhase::Completed, m.in_flight_limit))
    );

    let env = support::engine::Env::new(Template::Nano).await;
    let mut request = env.request();
    request.options = RunOptions {
        concurrency: Some(Concurrency::Fixed),
        max_in_flight: Some(5),
        ..RunOptions::default()
    };
    let (result, _) = env.run(&engine, &request).await;
    let m = &result.metrics;
    assert_eq!(
        (
            m.in_flight_limit,
            m.min_in_flight_limit,
            m.max_in_flight_limit,
            m.in_flight_limit_increases + m.in_flight_limit_decreases
        ),
        (5, 5, 5, 0)
    );
}

/// One engine remembers where each directory's limit ended: the next run on the same engine starts
/// there (its first progress report while executing names that limit), not at the dialect's 32; a
/// new engine starts at 32. The first run is held at 40 or more (`min_in_flight`), so where it ends
/// differs from 32 whatever the controller does; each run stops at its first progress report while
/// executing, so the queue lasts for all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_run_on_an_engine_resumes_at_the_limit_the_last_one_ended_at() {
    use jim_export::engine::{CancellationToken, RunListener};
    use jim_export::report::ProgressEvent;
    use std::sync::{Arc, Mutex};

    /// Cancels the run at its first progress report while executing and keeps that report's limit.
    struct FirstLimit {
        cancel: CancellationToken,
        limit: Mutex<Option<u32>>,
    }
    impl RunListener for FirstLimit {
        fn on_progress(&self, e: &ProgressEvent) {
            if e.phase == ExportPhase::Executing {
                self.limit.lock().unwrap().get_or_insert(e.in_flight_limit);
                self.cancel.cancel();
            }
        }
    }
    /// Runs until the first progress report while executing: (its limit, the limit at the end).
    async fn first_limit(
        engine: &Engine,
        request: &jim_export::config::ExportRequest,
    ) -> (Option<u32>, u32) {
        let cancel = CancellationToken::new();
        let listener = Arc::new(FirstLimit {
            cancel: cancel.clone(),
            limit: Mutex::new(None),
        });
        let result = engine
            .run_export(request, listener.clone(), cancel)
            .await
            .unwrap();
        let first = *listener.limit.lock().unwrap();
        (first, result.metrics.in_flight_limit)
    }

    let env = support::engine::Env::new(Template::Medium).await;
    let mut request = env.request();
    request.options.progress_interval_ms = 10;
    let engine = Engine::new();

    let mut held = request.clone();
    held.options.min_in_flight = Some(40);
    let (first, learnt) = first_limit(&engine, &held).await;
    assert_eq!(
        first,
        Some(40),
        "the dialect's 32, raised to the floor asked for"
    );
    assert!(learnt >= 40, "{learnt}");

    let (second, _) = first_limit(&engine, &request).await;
    assert_eq!(second, Some(learnt), "resumed where the first run ended");

    let (fresh, _) = first_limit(&Engine::new(), &request).await;
    assert_eq!(fresh, Some(32), "another engine knows nothing");
}
