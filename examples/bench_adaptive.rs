//! The adaptive in-flight limit against a sweep of fixed limits, and its course when the directory
//! turns slow in the middle of a run.
//!
//! ```text
//! cargo run --release --example bench_adaptive -- [--template Medium] [--rtt 0,10]
//!     [--modes durable,nosync] [--limits 4,8,16,32,64,128] [--repeat 5] [--slowdown-rtt 10]
//!     [--no-sweep] [--out DIR] [--render results.json]
//! ```
//!
//! Per mode (durable: PostgreSQL with fsync and slapd without `dbnosync`; nosync: neither syncs), RTT
//! and strategy, a fresh slapd behind a [`LatencyProxy`] and a fresh JIM database seeded with the
//! template; then `Engine::run_export` of the initial provisioning with either a fixed limit
//! (`concurrency: fixed`, 4 connections) or the defaults (adaptive). The adaptive run is compared
//! with the best fixed limit of the same mode and RTT (which it does not know in advance).
//!
//! Each (mode, RTT) cell runs every strategy `--repeat` times, round by round, the order rotated
//! each round, so that load from elsewhere on the machine (fsync-bound runs are very sensitive to
//! it) falls on fixed and adaptive runs alike; the comparison uses the medians. Every run samples
//! the limit from the progress events (every 100 ms), so the adaptive limit's course is kept.
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
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    template: Template,
    rtts: Vec<u64>,
    modes: Vec<String>,
    limits: Vec<u32>,
    slowdown_rtt: u64,
    /// Runs of each strategy per cell.
    repeat: usize,
    /// Run the sweep (else only the slow-down runs).
    sweep: bool,
    /// Measure nothing: render the tables and chart again from this `results.json`.
    render: Option<PathBuf>,
    out: PathBuf,
}

/// The command line (`--help` prints it with every default).
#[derive(clap::Parser)]
#[command(about = "The adaptive in-flight limit against a sweep of fixed limits")]
struct Cli {
    /// JIM's scale template.
    #[arg(long, default_value = "Medium")]
    template: Template,
    /// Round-trip times injected in front of the directory, in ms.
    #[arg(long = "rtt", value_delimiter = ',', default_value = "0,10")]
    rtts: Vec<u64>,
    /// Durability modes of PostgreSQL and slapd.
    #[arg(long, value_delimiter = ',', default_value = "durable,nosync",
          value_parser = ["durable", "nosync"])]
    modes: Vec<String>,
    /// The fixed limits to compare with.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32,64,128")]
    limits: Vec<u32>,
    /// The RTT of the slow-down run's middle third, in ms.
    #[arg(long, default_value_t = 10)]
    slowdown_rtt: u64,
    /// Runs of each strategy per cell (at least 1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Only the slow-down runs.
    #[arg(long)]
    no_sweep: bool,
    /// Measure nothing: render the tables and chart again from this results.json.
    #[arg(long)]
    render: Option<PathBuf>,
    /// Where the results go.
    #[arg(long, default_value = "bench-results/adaptive")]
    out: PathBuf,
}

fn args() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    Args {
        template: cli.template,
        rtts: cli.rtts,
        modes: cli.modes,
        limits: cli.limits,
        slowdown_rtt: cli.slowdown_rtt,
        repeat: cli.repeat as usize,
        sweep: !cli.no_sweep,
        render: cli.render,
        out: cli.out,
    }
}

/// One engine run of the sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Which round of the cell it ran in.
    #[serde(default)]
    round: usize,
    /// The limit over time: (ms since the start, limit), at each change.
    #[serde(default)]
    limit_trace: Vec<(u64, u32)>,
}

/// One sample of the slow-down run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Sample {
    elapsed_ms: u64,
    rtt_ms: u64,
    processed: u64,
    in_flight: u32,
    limit: u32,
}

/// Records progress and, when `switch` is set, moves the proxy's RTT at a third and two thirds of
/// the exports.
struct SlowDown {
    proxy: ProxyHandle,
    switch: bool,
    total: u64,
    slow_rtt: Duration,
    state: Mutex<(u8, Vec<Sample>)>,
}

impl RunListener for SlowDown {
    fn on_progress(&self, e: &ProgressEvent) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.switch {
            if s.0 == 0 && e.processed * 3 >= self.total {
                self.proxy.set_rtt(self.slow_rtt);
                s.0 = 1;
            } else if s.0 == 1 && e.processed * 3 >= self.total * 2 {
                self.proxy.set_rtt(Duration::ZERO);
                s.0 = 2;
            }
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
    db: JimDatabase,
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
    let mut directory = DirectoryConfig::simple(&url, slapd.admin_dn(), slapd.admin_password())
        .allowing_password_without_tls();
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
        db,
        slapd,
        proxy,
        request,
        total: seeded.counts.users + seeded.counts.groups,
    })
}

fn options(limit: Option<u32>) -> RunOptions {
    match limit {
        Some(l) => RunOptions {
            concurrency: Some(Concurrency::Fixed),
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
        round: 0,
        limit_trace: Vec::new(),
    }
}

/// Drops a run's database, so that a long sweep does not fill the disk.
async fn drop_database(pg: &Postgres, db: JimDatabase) {
    use sqlx::Connection as _;
    db.pool.close().await;
    if let Ok(mut admin) = sqlx::PgConnection::connect_with(&pg.admin_options()).await {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.name);
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
        {
            eprintln!("  could not drop {}: {e}", db.name);
        }
        let _ = admin.close().await;
    }
}

/// The limit at each change, from a run's progress samples.
fn limit_trace(samples: &[Sample]) -> Vec<(u64, u32)> {
    let mut trace: Vec<(u64, u32)> = Vec::new();
    for s in samples.iter().filter(|s| s.limit > 0) {
        if trace.last().is_none_or(|&(_, l)| l != s.limit) {
            trace.push((s.elapsed_ms, s.limit));
        }
    }
    trace
}

async fn sweep_one(
    pg: &Postgres,
    args: &Args,
    mode: &str,
    rtt: u64,
    limit: Option<u32>,
    round: usize,
) -> Result<Row> {
    let mut s = setup(pg, args.template, mode, rtt).await?;
    s.request.options = options(limit);
    s.request.options.progress_interval_ms = 100;
    let listener = Arc::new(SlowDown {
        proxy: s.proxy.handle(),
        switch: false,
        total: s.total,
        slow_rtt: Duration::ZERO,
        state: Mutex::new((0, Vec::new())),
    });
    let started = Instant::now();
    let r = Engine::new()
        .run_export(&s.request, listener.clone(), CancellationToken::new())
        .await?;
    let strategy = limit.map_or("adaptive".to_string(), |l| format!("fixed {l}"));
    let mut row = row(mode, rtt, strategy, &r, started.elapsed());
    row.round = round;
    if limit.is_none() {
        row.limit_trace = limit_trace(&listener.state.lock().unwrap_or_else(|p| p.into_inner()).1);
    }
    eprintln!(
        "  {mode:<7} rtt {rtt:>2} ms round {round} {:<10} {:>6} exports {:>7.0} obj/s  failed {}  limit {}..{} (end {}, +{} -{})  mean in flight {:.1}",
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
    drop_database(pg, s.db).await;
    Ok(row)
}

async fn slowdown(pg: &Postgres, args: &Args, mode: &str) -> Result<(Row, Vec<Sample>)> {
    let mut s = setup(pg, args.template, mode, 0).await?;
    s.request.options.progress_interval_ms = 100;
    let listener = Arc::new(SlowDown {
        proxy: s.proxy.handle(),
        switch: true,
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
    drop(s.proxy);
    drop(s.slapd);
    drop_database(pg, s.db).await;
    Ok((row, samples))
}

/// The median runs of one strategy in one cell.
#[derive(Debug, Clone, Serialize)]
struct Cell {
    mode: String,
    rtt_ms: u64,
    strategy: String,
    runs: usize,
    median_objects_per_second: f64,
    min_objects_per_second: f64,
    max_objects_per_second: f64,
    /// Median over the runs of each run's obj/s divided by the median obj/s of its round (all
    /// strategies of the cell run in that round): the machine's pace, which drifts between rounds,
    /// divided out.
    median_round_relative: f64,
    /// Median over the runs of the mean operations in flight.
    median_mean_in_flight: f64,
    /// The median adaptive run's limit course (empty for fixed limits).
    limit_trace: Vec<(u64, u32)>,
    limit_min: u32,
    limit_max: u32,
    limit_final: u32,
    failed: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn cells(args: &Args, rows: &[Row]) -> Vec<Cell> {
    let mut out = Vec::new();
    for mode in &args.modes {
        for &rtt in &args.rtts {
            let strategies = args
                .limits
                .iter()
                .map(|l| format!("fixed {l}"))
                .chain(["adaptive".to_string()]);
            for strategy in strategies {
                let mut runs: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.mode == *mode && r.rtt_ms == rtt && r.strategy == strategy)
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                runs.sort_by(|a, b| a.objects_per_second.total_cmp(&b.objects_per_second));
                let mid = runs[(runs.len() - 1) / 2];
                let ops: Vec<f64> = runs.iter().map(|r| r.objects_per_second).collect();
                let relative: Vec<f64> = runs
                    .iter()
                    .map(|r| {
                        let round = median(
                            rows.iter()
                                .filter(|o| {
                                    o.mode == *mode && o.rtt_ms == rtt && o.round == r.round
                                })
                                .map(|o| o.objects_per_second)
                                .collect(),
                        );
                        r.objects_per_second / round.max(1e-9)
                    })
                    .collect();
                out.push(Cell {
                    mode: mode.clone(),
                    rtt_ms: rtt,
                    strategy,
                    runs: runs.len(),
                    median_objects_per_second: median(ops.clone()),
                    median_round_relative: median(relative),
                    min_objects_per_second: ops.first().copied().unwrap_or(0.0),
                    max_objects_per_second: ops.last().copied().unwrap_or(0.0),
                    median_mean_in_flight: median(runs.iter().map(|r| r.mean_in_flight).collect()),
                    limit_trace: mid.limit_trace.clone(),
                    limit_min: runs.iter().map(|r| r.limit_min).min().unwrap_or(0),
                    limit_max: runs.iter().map(|r| r.limit_max).max().unwrap_or(0),
                    limit_final: mid.limit_final,
                    failed: runs.iter().map(|r| r.failed).sum(),
                });
            }
        }
    }
    out
}

fn markdown(args: &Args, cells: &[Cell], slow: &[(Row, Vec<Sample>)]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Adaptive in-flight limit vs fixed limits ({}, initial provisioning)\n",
        args.template
    );
    let _ = writeln!(
        md,
        "Medians of {} runs per strategy and cell, interleaved (order rotated each round). \
         \"round-normalised\": the median of each run's obj/s over the median of its round, \
         as a share of the best fixed limit's (drift of the machine's pace between rounds divided \
         out).\n",
        args.repeat
    );
    let _ = writeln!(
        md,
        "| mode | RTT ms | strategy | runs | median obj/s | min..max obj/s | vs best fixed | round-normalised vs best fixed | mean in flight | limit min..max (end of median run) | failed |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for c in cells {
        let best = cells
            .iter()
            .filter(|b| b.mode == c.mode && b.rtt_ms == c.rtt_ms && b.strategy != "adaptive")
            .map(|b| b.median_objects_per_second)
            .fold(0.0f64, f64::max);
        let best_relative = cells
            .iter()
            .filter(|b| b.mode == c.mode && b.rtt_ms == c.rtt_ms && b.strategy != "adaptive")
            .map(|b| b.median_round_relative)
            .fold(0.0f64, f64::max);
        let strategy = if c.strategy == "adaptive" {
            "**adaptive**".to_string()
        } else {
            c.strategy.clone()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {:.0}..{:.0} | {} | {:.0} % | {:.1} | {}..{} ({}) | {} |",
            c.mode,
            c.rtt_ms,
            strategy,
            c.runs,
            c.median_objects_per_second,
            c.min_objects_per_second,
            c.max_objects_per_second,
            if best > 0.0 {
                format!("{:.0} %", 100.0 * c.median_objects_per_second / best)
            } else {
                "-".into()
            },
            100.0 * c.median_round_relative / best_relative.max(1e-9),
            c.median_mean_in_flight,
            c.limit_min,
            c.limit_max,
            c.limit_final,
            c.failed
        );
    }
    let _ = writeln!(
        md,
        "\n## The adaptive limit over time (median run per cell; ms: limit, at each change)\n"
    );
    for c in cells.iter().filter(|c| c.strategy == "adaptive") {
        let course: Vec<String> = c
            .limit_trace
            .iter()
            .map(|(ms, l)| format!("{ms}: {l}"))
            .collect();
        let _ = writeln!(md, "- {} {} ms: {}", c.mode, c.rtt_ms, course.join(", "));
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
    let mut args = args();
    if let Some(file) = args.render.clone() {
        let (rows, slow) = load(&mut args, &file)?;
        return write(&args, &rows, &slow);
    }
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
            let strategies: Vec<Option<u32>> =
                args.limits.iter().map(|&l| Some(l)).chain([None]).collect();
            for round in 0..args.repeat {
                // Rotated each round: no strategy always runs first or last.
                let k = strategies.len();
                for i in 0..k {
                    let limit = strategies[(i + round * 3) % k];
                    rows.push(sweep_one(&pg, &args, mode, rtt, limit, round).await?);
                }
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
    write(&args, &rows, &slow)
}

/// A slow-down run and its samples.
type SlowRun = (Row, Vec<Sample>);

/// Reads the runs of an earlier `results.json`; the modes, RTTs, limits and repeat are taken from
/// it.
fn load(args: &mut Args, file: &std::path::Path) -> Result<(Vec<Row>, Vec<SlowRun>)> {
    #[derive(Deserialize)]
    struct Slow {
        run: Row,
        samples: Vec<Sample>,
    }
    #[derive(Deserialize)]
    struct Saved {
        template: String,
        #[serde(default)]
        repeat: Option<usize>,
        rows: Vec<Row>,
        slowdown: Vec<Slow>,
    }
    let saved: Saved = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    args.template = saved.template.parse()?;
    args.repeat = saved.repeat.unwrap_or(1);
    let mut modes: Vec<String> = Vec::new();
    let mut rtts = Vec::new();
    let mut limits = Vec::new();
    for r in &saved.rows {
        if !modes.contains(&r.mode) {
            modes.push(r.mode.clone());
        }
        if !rtts.contains(&r.rtt_ms) {
            rtts.push(r.rtt_ms);
        }
        if let Some(l) = r
            .strategy
            .strip_prefix("fixed ")
            .and_then(|l| l.parse::<u32>().ok())
            && !limits.contains(&l)
        {
            limits.push(l);
        }
    }
    limits.sort_unstable();
    if !modes.is_empty() {
        (args.modes, args.rtts, args.limits) = (modes, rtts, limits);
    }
    let slow = saved
        .slowdown
        .into_iter()
        .map(|s| (s.run, s.samples))
        .collect();
    Ok((saved.rows, slow))
}

/// Writes the tables, the JSON and the chart.
fn write(args: &Args, rows: &[Row], slow: &[(Row, Vec<Sample>)]) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let cells = cells(args, rows);
    let md = markdown(args, &cells, slow);
    std::fs::write(args.out.join("results.md"), &md)?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "template": args.template.to_string(),
            "repeat": args.repeat,
            "cells": cells,
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
                        cells
                            .iter()
                            .find(|c| c.mode == *mode && c.rtt_ms == rtt && c.strategy == *s)
                            .map(|c| c.median_objects_per_second)
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
                "ADAPTIVE VS FIXED IN-FLIGHT LIMITS, {} - MEDIAN OBJECTS/S",
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
