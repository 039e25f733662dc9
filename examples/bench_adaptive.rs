//! The adaptive in-flight limit against a sweep of fixed limits, and its course when the directory
//! turns slow in the middle of a run.
//!
//! ```text
//! cargo run --release --example bench_adaptive -- [--template Medium] [--rtt 0,10]
//!     [--modes durable,nosync] [--limits 4,8,16,32,64,128] [--slowdown-rtt 10] [--no-sweep]
//!     [--out DIR]
//! ```
//!
//! Per mode (durable: PostgreSQL with fsync and slapd without `dbnosync`; nosync: neither syncs), RTT
//! and strategy, a fresh slapd behind a [`LatencyProxy`] and a fresh JIM database seeded with the
//! template; then `Engine::run_export` of the initial provisioning with either a fixed limit
//! (`concurrency: fixed`, 4 connections) or the defaults (adaptive). The adaptive run is compared
//! with the best fixed limit of the same mode and RTT (which it does not know in advance).
//!
//! The slow-down run (per mode): the adaptive engine at 0 ms RTT; when a third of the exports are
//! done the proxy's RTT is raised to `--slowdown-rtt`, and at two thirds put back to 0. The limit is
//! sampled from the progress events (every 100 ms) and printed over time.
//!
//! Results go to `<out>/results.json`, `<out>/results.md` and `<out>/objects_per_second.png`. Figures
//! are printed, never asserted.

#[path = "bench/chart.rs"]
mod chart;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jim_export::config::{
    Concurrency, DatabaseConfig, Dialect, DirectoryConfig, ExportRequest, ExportSettings,
    RunOptions,
};
use jim_export::engine::{CancellationToken, Engine, RunListener};
use jim_export::report::{ProgressEvent, RunResult};
use jim_export_testkit::seed::{self, SeedOptions, Template};
use jim_export_testkit::{
    JimDatabase, LatencyProxy, Postgres, PostgresOptions, ProxyHandle, Slapd, SlapdOptions,
};
use serde::Serialize;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    template: Template,
    rtts: Vec<u64>,
    modes: Vec<String>,
    limits: Vec<u32>,
    slowdown_rtt: u64,
    /// Run the sweep (else only the slow-down runs).
    sweep: bool,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        template: Template::Medium,
        rtts: vec![0, 10],
        modes: vec!["durable".into(), "nosync".into()],
        limits: vec![4, 8, 16, 32, 64, 128],
        slowdown_rtt: 10,
        sweep: true,
        out: PathBuf::from("bench-results/adaptive"),
    };
    let mut it = std::env::args().skip(1);
    fn numbers<T: std::str::FromStr>(v: &str) -> Result<Vec<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        Ok(v.split(',')
            .map(|s| s.trim().parse::<T>())
            .collect::<std::result::Result<_, _>>()?)
    }
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--template" => a.template = value()?.parse()?,
            "--rtt" => a.rtts = numbers(&value()?)?,
            "--modes" => a.modes = value()?.split(',').map(|s| s.trim().into()).collect(),
            "--limits" => a.limits = numbers(&value()?)?,
            "--slowdown-rtt" => a.slowdown_rtt = value()?.parse()?,
            "--no-sweep" => a.sweep = false,
            "--out" => a.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    for m in &a.modes {
        if m != "durable" && m != "nosync" {
            return Err(format!("unknown mode {m} (durable, nosync)").into());
        }
    }
    Ok(a)
}

/// One engine run of the sweep.
#[derive(Debug, Clone, Serialize)]
struct Row {
    mode: String,
    rtt_ms: u64,
    /// `fixed N` or `adaptive`.
    strategy: String,
    exports: u64,
    failed: u64,
    elapsed_s: f64,
    objects_per_second: f64,
    mean_in_flight: f64,
    max_in_flight: u32,
    limit_final: u32,
    limit_min: u32,
    limit_max: u32,
    limit_increases: u64,
    limit_decreases: u64,
    retries: u64,
}

/// One sample of the slow-down run.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sample {
    elapsed_ms: u64,
    rtt_ms: u64,
    processed: u64,
    in_flight: u32,
    limit: u32,
}

/// Records progress and moves the proxy's RTT at a third and two thirds of the exports.
struct SlowDown {
    proxy: ProxyHandle,
    total: u64,
    slow_rtt: Duration,
    state: Mutex<(u8, Vec<Sample>)>,
}

impl RunListener for SlowDown {
    fn on_progress(&self, e: &ProgressEvent) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 == 0 && e.processed * 3 >= self.total {
            self.proxy.set_rtt(self.slow_rtt);
            s.0 = 1;
        } else if s.0 == 1 && e.processed * 3 >= self.total * 2 {
            self.proxy.set_rtt(Duration::ZERO);
            s.0 = 2;
        }
        s.1.push(Sample {
            elapsed_ms: e.elapsed_ms,
            rtt_ms: self.proxy.rtt().as_millis() as u64,
            processed: e.processed,
            in_flight: e.in_flight,
            limit: e.in_flight_limit,
        });
    }
}

struct Setup {
    _db: JimDatabase,
    slapd: Slapd,
    proxy: LatencyProxy,
    request: ExportRequest,
    total: u64,
}

async fn setup(pg: &Postgres, template: Template, mode: &str, rtt: u64) -> Result<Setup> {
    let slapd = Slapd::start(SlapdOptions {
        durable: mode == "durable",
        ..SlapdOptions::default()
    })
    .await?;
    let proxy = LatencyProxy::in_front_of(slapd.ldap_url(), Duration::from_millis(rtt))?;
    let url = proxy.url("ldap");
    let addr = proxy.addr();
    let db = pg.jim_database().await?;
    let seeded = seed::seed(
        &db.pool,
        &SeedOptions::new(template)
            .with_suffix(slapd.suffix())
            .with_directory(addr.ip().to_string(), addr.port()),
    )
    .await?;
    let mut directory = DirectoryConfig::simple(&url, slapd.admin_dn(), slapd.admin_password());
    directory.dialect = Some(Dialect::OpenLdap);
    let request = ExportRequest {
        database: DatabaseConfig::new(db.url.clone()),
        connected_system_id: seeded.connected_system_id(),
        directory,
        settings: ExportSettings {
            create_containers_as_needed: true,
            ..ExportSettings::default()
        },
        options: RunOptions::default(),
    };
    Ok(Setup {
        _db: db,
        slapd,
        proxy,
        request,
        total: seeded.counts.users + seeded.counts.groups,
    })
}

fn options(limit: Option<u32>) -> RunOptions {
    match limit {
        Some(l) => RunOptions {
            concurrency: Concurrency::Fixed,
            connections: Some(4),
            in_flight_per_connection: Some(l.div_ceil(4)),
            max_in_flight: Some(l),
            ..RunOptions::default()
        },
        None => RunOptions::default(),
    }
}

fn row(mode: &str, rtt: u64, strategy: String, r: &RunResult, elapsed: Duration) -> Row {
    let m = &r.metrics;
    let exports = r.success_count + r.failed_count + r.deferred_count;
    Row {
        mode: mode.into(),
        rtt_ms: rtt,
        strategy,
        exports,
        failed: r.failed_count,
        elapsed_s: elapsed.as_secs_f64(),
        objects_per_second: exports as f64 / elapsed.as_secs_f64().max(1e-9),
        mean_in_flight: m.mean_in_flight,
        max_in_flight: m.max_in_flight,
        limit_final: m.in_flight_limit,
        limit_min: m.min_in_flight_limit,
        limit_max: m.max_in_flight_limit,
        limit_increases: m.in_flight_limit_increases,
        limit_decreases: m.in_flight_limit_decreases,
        retries: m.retries,
    }
}

async fn sweep_one(
    pg: &Postgres,
    args: &Args,
    mode: &str,
    rtt: u64,
    limit: Option<u32>,
) -> Result<Row> {
    let mut s = setup(pg, args.template, mode, rtt).await?;
    s.request.options = options(limit);
    let started = Instant::now();
    let r = Engine::new()
        .run_export(
            &s.request,
            Arc::new(jim_export::engine::NoListener),
            CancellationToken::new(),
        )
        .await?;
    let strategy = limit.map_or("adaptive".to_string(), |l| format!("fixed {l}"));
    let row = row(mode, rtt, strategy, &r, started.elapsed());
    eprintln!(
        "  {mode:<7} rtt {rtt:>2} ms {:<10} {:>6} exports {:>7.0} obj/s  failed {}  limit {}..{} (end {}, +{} -{})  mean in flight {:.1}",
        row.strategy,
        row.exports,
        row.objects_per_second,
        row.failed,
        row.limit_min,
        row.limit_max,
        row.limit_final,
        row.limit_increases,
        row.limit_decreases,
        row.mean_in_flight
    );
    drop(s.proxy);
    drop(s.slapd);
    Ok(row)
}

async fn slowdown(pg: &Postgres, args: &Args, mode: &str) -> Result<(Row, Vec<Sample>)> {
    let mut s = setup(pg, args.template, mode, 0).await?;
    s.request.options.progress_interval_ms = 100;
    let listener = Arc::new(SlowDown {
        proxy: s.proxy.handle(),
        total: s.total,
        slow_rtt: Duration::from_millis(args.slowdown_rtt),
        state: Mutex::new((0, Vec::new())),
    });
    let started = Instant::now();
    let r = Engine::new()
        .run_export(&s.request, listener.clone(), CancellationToken::new())
        .await?;
    let row = row(
        mode,
        0,
        format!("adaptive, {} ms mid-run", args.slowdown_rtt),
        &r,
        started.elapsed(),
    );
    let samples = listener
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .1
        .clone();
    Ok((row, samples))
}

fn markdown(args: &Args, rows: &[Row], slow: &[(Row, Vec<Sample>)]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Adaptive in-flight limit vs fixed limits ({}, initial provisioning)\n",
        args.template
    );
    let _ = writeln!(
        md,
        "| mode | RTT ms | strategy | exports | failed | obj/s | vs best fixed | mean in flight | limit min..max (end) | +/- |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let best = rows
            .iter()
            .filter(|b| b.mode == r.mode && b.rtt_ms == r.rtt_ms && b.strategy != "adaptive")
            .map(|b| b.objects_per_second)
            .fold(0.0f64, f64::max);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {:.1} | {}..{} ({}) | +{} -{} |",
            r.mode,
            r.rtt_ms,
            r.strategy,
            r.exports,
            r.failed,
            r.objects_per_second,
            if best > 0.0 {
                format!("{:.0} %", 100.0 * r.objects_per_second / best)
            } else {
                "-".into()
            },
            r.mean_in_flight,
            r.limit_min,
            r.limit_max,
            r.limit_final,
            r.limit_increases,
            r.limit_decreases
        );
    }
    for (r, samples) in slow {
        let _ = writeln!(
            md,
            "\n## {} slapd turning slow mid-run ({}): {} exports, {:.0} obj/s, limit {}..{} (+{} -{})\n",
            r.mode,
            r.strategy,
            r.exports,
            r.objects_per_second,
            r.limit_min,
            r.limit_max,
            r.limit_increases,
            r.limit_decreases
        );
        let _ = writeln!(md, "| ms | RTT ms | processed | in flight | limit |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for s in samples {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                s.elapsed_ms, s.rtt_ms, s.processed, s.in_flight, s.limit
            );
        }
    }
    md
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    eprintln!(
        "template {}; RTT {:?} ms; modes {:?}; fixed limits {:?}",
        args.template, args.rtts, args.modes, args.limits
    );
    let mut rows = Vec::new();
    let mut slow = Vec::new();
    for mode in &args.modes {
        let pg = Postgres::start(PostgresOptions {
            durable: mode == "durable",
            ..PostgresOptions::default()
        })
        .await?;
        for &rtt in args.rtts.iter().filter(|_| args.sweep) {
            for limit in args.limits.iter().map(|&l| Some(l)).chain([None]) {
                rows.push(sweep_one(&pg, &args, mode, rtt, limit).await?);
            }
        }
        let (r, samples) = slowdown(&pg, &args, mode).await?;
        eprintln!(
            "  {mode:<7} slow-down run: {:.0} obj/s, limit {}..{} (+{} -{}), {} samples",
            r.objects_per_second,
            r.limit_min,
            r.limit_max,
            r.limit_increases,
            r.limit_decreases,
            samples.len()
        );
        slow.push((r, samples));
    }
    std::fs::create_dir_all(&args.out)?;
    let md = markdown(&args, &rows, &slow);
    std::fs::write(args.out.join("results.md"), &md)?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "template": args.template.to_string(),
            "rows": rows,
            "slowdown": slow.iter().map(|(r, s)| serde_json::json!({"run": r, "samples": s})).collect::<Vec<_>>(),
        }))?,
    )?;
    let series: Vec<String> = args
        .limits
        .iter()
        .map(|l| format!("fixed {l}"))
        .chain(["adaptive".to_string()])
        .collect();
    let mut groups = Vec::new();
    for mode in &args.modes {
        for &rtt in &args.rtts {
            groups.push(chart::Group {
                label: format!("{mode} {rtt} ms"),
                values: series
                    .iter()
                    .map(|s| {
                        rows.iter()
                            .find(|r| r.mode == *mode && r.rtt_ms == rtt && r.strategy == *s)
                            .map(|r| r.objects_per_second)
                    })
                    .collect(),
            });
        }
    }
    let names: Vec<&str> = series.iter().map(String::as_str).collect();
    if !rows.is_empty() {
        chart::write(
            &args.out.join("objects_per_second.png"),
            &format!(
                "ADAPTIVE VS FIXED IN-FLIGHT LIMITS, {} - OBJECTS/S",
                args.template
            ),
            &names,
            &groups,
        )?;
    }
    println!("{md}");
    println!("written to {}", args.out.display());
    Ok(())
}
