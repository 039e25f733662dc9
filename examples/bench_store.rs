//! Store benchmark: claims, loads, resolves and persists a scale template's initial provisioning
//! (Scale100k50Groups: 100,000 users and 50 groups, 100,050 Create exports) against a throwaway
//! PostgreSQL 15, with a directory that does nothing (every export succeeds; Creates get a fake
//! `entryUUID`), pages and flushes of 100. Prints exports/s and SQL statements per 100 exports as
//! `pg_stat_statements` (`track = all`) counted them, next to the store's own count and JIM's 13-25.
//! Up to `--in-flight` flushes are persisted concurrently while the next page is claimed, as the
//! streaming engine does; `--explain` logs the plans of statements over 20 ms (auto_explain).
//!
//! ```text
//! cargo run --release --example bench_store [-- --template Medium] [--durable] [--page 100]
//!     [--in-flight 2] [--explain]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use jim_export::config::{DatabaseConfig, RunOptions};
use jim_export::model::PendingExportStatus;
use jim_export::outcome::ExportOutcome;
use jim_export::store::{ClaimedExport, ExportQueue, OptimisticApplyCounts, Pass, Store};
use jim_export_testkit::seed::{self, SeedOptions, Template};
use jim_export_testkit::{Postgres, PostgresOptions};
use sqlx::{PgPool, Row};
use tokio::task::JoinSet;
use uuid::Uuid;

const KEYSET_INDEX: &str = "IX_PendingExports_ConnectedSystemId_CreatedAt_Id";

struct Args {
    template: Template,
    durable: bool,
    page: u32,
    in_flight: usize,
    explain: bool,
}

/// The command line (`--help` prints it with every default).
#[derive(clap::Parser)]
#[command(
    about = "The store's claim, resolution and persist against a directory that does nothing"
)]
struct Cli {
    /// JIM's scale template.
    #[arg(long, default_value = "Scale100k50Groups")]
    template: Template,
    /// PostgreSQL with fsync.
    #[arg(long)]
    durable: bool,
    /// Log the plans of statements over 20 ms (auto_explain).
    #[arg(long)]
    explain: bool,
    /// Flushes persisted at once while the next page is claimed (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    in_flight: u64,
    /// Exports per page and per flush.
    #[arg(long, default_value_t = 100)]
    page: u32,
}

fn args() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    Args {
        template: cli.template,
        durable: cli.durable,
        page: cli.page,
        in_flight: cli.in_flight as usize,
        explain: cli.explain,
    }
}

#[derive(Default)]
struct Totals {
    exports: u64,
    pages: u64,
    claim: Duration,
    resolve: Duration,
    persist: Duration,
    resolved: usize,
    unresolved: usize,
    not_exported: usize,
    optimistic: OptimisticApplyCounts,
}

/// What a directory that does nothing reports for an export.
fn outcome(e: ClaimedExport) -> ExportOutcome {
    let dn = e.current_dn().map(str::to_owned);
    ExportOutcome::created(e, Some(Uuid::new_v4().to_string()), dn)
}

type PersistResult = Result<(jim_export::store::PersistReport, Duration), jim_export::Error>;

fn account(t: &mut Totals, done: PersistResult) -> Result<(), Box<dyn std::error::Error>> {
    let (report, took) = done?;
    t.persist += took;
    t.exports += report.persisted.len() as u64;
    t.not_exported += report
        .persisted
        .iter()
        .filter(|p| p.status != PendingExportStatus::Exported)
        .count()
        + report.not_held.len();
    t.optimistic.add(&report.optimistic_apply);
    Ok(())
}

/// Drains one pass: claims page after page while up to `in_flight` flushes are being persisted, as
/// the streaming engine does.
async fn drain(
    q: &Arc<ExportQueue>,
    pass: Pass,
    args: &Args,
    t: &mut Totals,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut flushes: JoinSet<PersistResult> = JoinSet::new();
    let mut cursor = None;
    loop {
        let started = Instant::now();
        let mut claimed = q.claim(pass, cursor, args.page).await?;
        t.claim += started.elapsed();
        if !claimed.bad_rows.is_empty() {
            return Err(format!("{} unreadable rows", claimed.bad_rows.len()).into());
        }
        cursor = claimed.cursor.or(cursor);
        let last = claimed.is_last();
        if !claimed.exports.is_empty() {
            t.pages += 1;
            let started = Instant::now();
            let s = q.resolve_references(&mut claimed.exports).await?;
            t.resolve += started.elapsed();
            t.resolved += s.resolved;
            t.unresolved += s.awaiting_anchor + s.not_in_target_system;
            let outcomes: Vec<ExportOutcome> = claimed.exports.into_iter().map(outcome).collect();
            while flushes.len() >= args.in_flight {
                if let Some(done) = flushes.join_next().await {
                    account(t, done?)?;
                }
            }
            let q = Arc::clone(q);
            flushes.spawn(async move {
                let started = Instant::now();
                let report = q.persist(&outcomes).await?;
                Ok((report, started.elapsed()))
            });
        }
        if last {
            break;
        }
    }
    while let Some(done) = flushes.join_next().await {
        account(t, done?)?;
    }
    Ok(())
}

async fn index_scans(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT indexrelname::text, idx_scan FROM pg_stat_user_indexes \
         WHERE relname = 'PendingExports' ORDER BY indexrelname",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let mut settings = Vec::new();
    if args.explain {
        for (k, v) in [
            ("session_preload_libraries", "auto_explain"),
            ("auto_explain.log_min_duration", "20ms"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_buffers", "on"),
        ] {
            settings.push((k.to_string(), v.to_string()));
        }
    }
    let pg = Postgres::start(PostgresOptions {
        durable: args.durable,
        settings,
        ..PostgresOptions::default()
    })
    .await?;
    let db = pg.jim_database().await?;
    println!(
        "PostgreSQL 15 on port {} ({}), template {:?}, pages and flushes of {}, {} flush(es) in flight",
        pg.port(),
        if args.durable { "durable" } else { "fsync off" },
        args.template,
        args.page,
        args.in_flight
    );

    let started = Instant::now();
    let seeded = seed::seed(&db.pool, &SeedOptions::new(args.template)).await?;
    let c = seeded.counts;
    println!(
        "seeded in {:.1} s: {} pending exports ({} reference-bearing), {} attribute changes ({} references)",
        started.elapsed().as_secs_f64(),
        c.pending_exports,
        c.reference_bearing_exports,
        c.attribute_changes,
        c.reference_changes
    );

    // Measure from here: reset the statement statistics and note the index scans.
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&db.pool)
        .await?;
    let scans_before = index_scans(&db.pool).await?;

    let store = Store::connect(&DatabaseConfig::new(db.url.clone())).await?;
    let run = Instant::now();
    let queue = Arc::new(
        store
            .open(seeded.connected_system_id(), &RunOptions::default())
            .await?,
    );
    let mut t = Totals::default();
    drain(&queue, Pass::Plain, &args, &mut t).await?;
    let plain_pages = t.pages;
    drain(&queue, Pass::References, &args, &mut t).await?;
    let elapsed = run.elapsed();
    let store_statements = store.statements();
    // Closing the pool ends its sessions, which flushes their index statistics.
    drop(queue);
    store.pool().close().await;

    // Statement counts as PostgreSQL saw them (this database). With `track = all` it also lists the
    // queries PostgreSQL's foreign-key triggers run inside our statements (one per inserted CSO value
    // and key): nested, not round trips, and the same for any writer of JIM's schema.
    let rows = sqlx::query(
        "SELECT s.toplevel, s.query, s.calls, s.total_plan_time + s.total_exec_time, s.shared_blks_hit \
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = current_database() ORDER BY s.toplevel DESC, s.calls DESC",
    )
    .fetch_all(&db.pool)
    .await?;
    let (mut counted, mut nested): (i64, i64) = (0, 0);
    let mut breakdown = Vec::new();
    for r in &rows {
        let toplevel: bool = r.try_get(0)?;
        let query: String = r.try_get(1)?;
        let calls: i64 = r.try_get(2)?;
        let ms: f64 = r.try_get(3)?;
        let hits: i64 = r.try_get(4)?;
        let q = query.trim().to_ascii_uppercase();
        let control = ["BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION"]
            .iter()
            .any(|k| q.starts_with(k));
        let ours = query.contains("pg_stat_") || query.contains("pg_database");
        if control || ours {
            continue;
        }
        if toplevel {
            counted += calls;
        } else {
            nested += calls;
        }
        let head: String = query
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(64)
            .collect();
        breakdown.push((toplevel, calls, ms, hits, head));
    }
    let scans_after = index_scans(&db.pool).await?;
    let status_rows = sqlx::query(
        r#"SELECT "Status", count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 GROUP BY 1 ORDER BY 1"#,
    )
    .bind(seeded.connected_system_id())
    .fetch_all(&db.pool)
    .await?;

    let n = t.exports.max(1) as f64;
    println!();
    println!(
        "exported {} pending exports in {:.2} s: {:.0} exports/s",
        t.exports,
        elapsed.as_secs_f64(),
        n / elapsed.as_secs_f64()
    );
    println!(
        "  pages: {} plain + {} reference-bearing; time in claim {:.2} s, resolve {:.2} s, persist {:.2} s",
        plain_pages,
        t.pages - plain_pages,
        t.claim.as_secs_f64(),
        t.resolve.as_secs_f64(),
        t.persist.as_secs_f64()
    );
    println!(
        "  references resolved {}, unresolved {}; optimistic apply: {} applied, {} failed; not Exported: {}",
        t.resolved, t.unresolved, t.optimistic.applied, t.optimistic.failed, t.not_exported
    );
    for r in &status_rows {
        let status: i32 = r.try_get(0)?;
        let count: i64 = r.try_get(1)?;
        let name = PendingExportStatus::from_i32(status).map_or("?".to_string(), |s| s.to_string());
        println!("  PendingExports with Status {status} ({name}): {count}");
    }
    println!();
    println!("SQL statements (transaction control and these measurement queries excluded):");
    println!(
        "  pg_stat_statements, top-level: {counted} calls = {:.2} per 100 exports",
        counted as f64 * 100.0 / n
    );
    println!(
        "  pg_stat_statements, nested (foreign-key checks PostgreSQL runs per inserted row): {nested} = {:.1} per 100 exports",
        nested as f64 * 100.0 / n
    );
    println!(
        "  the store's own count: {store_statements} = {:.2} per 100 exports",
        store_statements as f64 * 100.0 / n
    );
    println!("  target: at most 4 per 100; JIM today: 13-25 per 100-object batch");
    println!(
        "  per statement: calls, level, PostgreSQL's planning and execution ms per export, buffer hits per export"
    );
    for (toplevel, calls, ms, hits, head) in breakdown.iter().take(10) {
        let level = if *toplevel { "top" } else { "nested" };
        println!(
            "    {calls:>8} {level:<6} {:>6.3} ms {:>6.1} hits  {head}",
            ms / n,
            *hits as f64 / n
        );
    }
    println!();
    println!("index scans on PendingExports during the run:");
    for ((name, after), (_, before)) in scans_after.iter().zip(&scans_before) {
        if after > before {
            let mark = if name == KEYSET_INDEX {
                "  <- keyset index"
            } else {
                ""
            };
            println!("  {name}: {}{mark}", after - before);
        }
    }
    if args.explain
        && let Some(dir) = pg.dir()
    {
        let copy = std::path::Path::new("target").join("bench_store_plans.log");
        std::fs::copy(dir.join("server.log"), &copy)?;
        println!("\nplans of statements over 20 ms: {}", copy.display());
    }
    if counted as f64 * 100.0 / n > 4.0 {
        println!("\nABOVE TARGET: more than 4 statements per 100 exports");
    }
    Ok(())
}
