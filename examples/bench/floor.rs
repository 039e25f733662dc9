//! The database's floor for JIM's schema: exactly the row changes JIM's semantics require for the
//! seeded exports, written by the cheapest SQL known, with no LDAP; and `combined`, the limit's LDAP
//! operations at saturation with the floor's writes beside them on the same machine.
//!
//! Before the clock starts, every export is read (the store's read-only peek), its references resolved
//! and its plan made, and its outcome taken as the success the directory would report (a fresh
//! `entryUUID` for each Create, the plan's DN). [`jim_export::store::row_changes`] turns those outcomes
//! into the rows the engine's persist writes for them. The clock then runs, per flush of
//! `FLUSH` exports (the engine's default), in the order the engine would claim them:
//!
//! 1. the rows marked `Executing` (JIM's W1: `Status`, `LastAttemptedAt`), one statement;
//! 2. the outcome, one statement of data-modifying CTEs: the pending exports `Exported`, the written
//!    attribute value changes ExportedPendingConfirmation with their attempt count and time (and the
//!    resolved references' values), the CSO attribute values the anchor write-back and the optimistic
//!    apply delete, update and insert, and the import hash of the CSOs they touch cleared where set.
//!
//! Nothing is read back and nothing is fenced: what is left is the cost of the rows themselves.
//!
//! `engine-sql` is the engine's own statements for the same outcomes, with no LDAP either: its claims
//! (page by page, as a run claims), reference resolution and persists, one after the other on one
//! connection, as the floor writes. Beside the floor it shows what the engine's SQL costs PostgreSQL
//! by itself, apart from whatever running beside the directory adds.

use std::time::{Duration, Instant};

use jim_export::config::{DatabaseConfig, Dialect, RunOptions};
use jim_export::directory::ExportJob;
use jim_export::model::PendingExportChangeType;
use jim_export::outcome::ExportOutcome;
use jim_export::plan::Planner;
use jim_export::store::{ClaimedExport, Pass, RowChanges, Store, row_changes};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    ChildReport, ChildSpec, Result, dependency_waves, percentile, plan_job, saturating_directory,
    settings, tree_cpu,
};

/// Exports per flush: the engine's default flush size.
const FLUSH: usize = 100;

/// The outcome the directory would report for a fully successful export.
fn success(claimed: ClaimedExport, job: &ExportJob) -> ExportOutcome {
    let plan = job.plan.as_ref().ok();
    match claimed.export.change_type {
        PendingExportChangeType::Create => {
            let dn = plan.map(|p| p.dn.clone());
            ExportOutcome::created(claimed, Some(Uuid::new_v4().to_string()), dn)
        }
        PendingExportChangeType::Update if plan.is_some_and(|p| p.previous_dn.is_some()) => {
            let dn = plan.map(|p| p.dn.clone());
            ExportOutcome::created(claimed, None, dn)
        }
        _ => ExportOutcome::succeeded(claimed),
    }
}

/// Every export of the queue in claim order (plain ones first), with its job and its flush's rows.
struct Prepared {
    jobs: Vec<ExportJob>,
    /// How many of `jobs` (the first ones) are plain.
    plain: usize,
    /// Per flush: the pending exports it marks `Executing`, and its row changes.
    flushes: Vec<(Vec<Uuid>, RowChanges)>,
    /// What the preparation took (connecting, reading, resolving, planning, the row changes): work
    /// the engine does inside its clock, reported beside the figures it is left out of.
    took: Duration,
}

async fn prepare(spec: &ChildSpec, dialect: Dialect) -> Result<Prepared> {
    let started = Instant::now();
    let store = Store::connect(&DatabaseConfig::new(spec.database_url.clone())).await?;
    let queue = store
        .open(spec.connected_system_id, &RunOptions::default())
        .await?;
    let planner = Planner::new(&settings(), dialect);
    let mut jobs = Vec::new();
    let mut outcomes = Vec::new();
    let mut plain = 0;
    for pass in [Pass::Plain, Pass::References] {
        let mut cursor = None;
        loop {
            let mut page = queue.peek(pass, cursor, 1000).await?;
            cursor = page.cursor.or(cursor);
            queue.resolve_references(&mut page.exports).await?;
            let last = page.is_last();
            for claimed in page.exports {
                let job = plan_job(&planner, &queue, &claimed);
                outcomes.push(success(claimed, &job));
                jobs.push(job);
            }
            if last {
                break;
            }
        }
        if pass == Pass::Plain {
            plain = jobs.len();
        }
    }
    let mut flushes = Vec::new();
    for chunk in outcomes.chunks(FLUSH) {
        let ids = chunk.iter().map(|o| o.pending_export_id()).collect();
        let rows = row_changes(chunk, queue.schema());
        if !rows.not_modelled.is_empty() {
            return Err(format!(
                "the floor models full successes only; {} export(s) would not end Exported",
                rows.not_modelled.len()
            )
            .into());
        }
        flushes.push((ids, rows));
    }
    store.pool().close().await;
    Ok(Prepared {
        jobs,
        plain,
        flushes,
        took: started.elapsed(),
    })
}

const MARK_EXECUTING: &str = r#"UPDATE "PendingExports" SET "Status" = 2, "LastAttemptedAt" = now() WHERE "Id" = ANY($1::uuid[])"#;

const OUTCOME: &str = r#"
WITH pe AS (
    UPDATE "PendingExports" SET "Status" = 4, "HasUnresolvedReferences" = false
    WHERE "Id" = ANY($1::uuid[])
),
avc AS (
    UPDATE "PendingExportAttributeValueChanges" a SET
        "Status" = CASE WHEN w.written THEN 1 ELSE a."Status" END,
        "ExportAttemptCount" = a."ExportAttemptCount" + CASE WHEN w.written THEN 1 ELSE 0 END,
        "LastExportedAt" = CASE WHEN w.written THEN now() ELSE a."LastExportedAt" END,
        "StringValue" = COALESCE(w.sval, a."StringValue"),
        "UnresolvedReferenceValue" = CASE WHEN w.sval IS NULL THEN a."UnresolvedReferenceValue" END,
        "ResolvedReferenceCsoId" = COALESCE(w.rcso, a."ResolvedReferenceCsoId")
    FROM unnest($2::uuid[], $3::bool[], $4::text[], $5::uuid[]) AS w(id, written, sval, rcso)
    WHERE a."Id" = w.id
),
del AS (
    DELETE FROM "ConnectedSystemObjectAttributeValues" WHERE "Id" = ANY($6::uuid[])
),
vals AS (
    SELECT * FROM unnest($7::uuid[], $8::bool[], $9::uuid[], $10::int4[], $11::text[], $12::timestamptz[],
                         $13::int4[], $14::int8[], $15::numeric[], $16::bytea[], $17::uuid[], $18::bool[],
                         $19::uuid[], $20::text[])
        AS i(id, is_new, cso, attr, sval, dval, ival, lval, decval, bval, gval, boolval, ref, unresolved)
),
upd AS (
    UPDATE "ConnectedSystemObjectAttributeValues" v SET
        "StringValue" = i.sval, "DateTimeValue" = i.dval, "IntValue" = i.ival, "LongValue" = i.lval,
        "DecimalValue" = i.decval, "ByteValue" = i.bval, "GuidValue" = i.gval, "BoolValue" = i.boolval,
        "ReferenceValueId" = i.ref, "UnresolvedReferenceValue" = i.unresolved
    FROM vals i
    WHERE NOT i.is_new AND v."Id" = i.id
),
ins AS (
    INSERT INTO "ConnectedSystemObjectAttributeValues"
        ("Id", "AttributeId", "ConnectedSystemObjectId", "StringValue", "DateTimeValue", "IntValue",
         "LongValue", "ByteValue", "GuidValue", "BoolValue", "ReferenceValueId", "UnresolvedReferenceValue",
         "DecimalValue")
    SELECT i.id, i.attr, i.cso, i.sval, i.dval, i.ival, i.lval, i.bval, i.gval, i.boolval, i.ref,
           i.unresolved, i.decval
    FROM vals i WHERE i.is_new
)
UPDATE "ConnectedSystemObjects" SET "ImportStateHash" = NULL, "ImportStateFingerprint" = NULL
WHERE "Id" = ANY($21::uuid[])
  AND ("ImportStateHash" IS NOT NULL OR "ImportStateFingerprint" IS NOT NULL)"#;

/// Writes one flush: the `Executing` mark, then the outcome.
async fn write_flush(pool: &PgPool, ids: &[Uuid], rows: &RowChanges) -> Result<()> {
    sqlx::query(MARK_EXECUTING).bind(ids).execute(pool).await?;
    // Each change once: written, resolved, or both.
    let mut changes: std::collections::BTreeMap<Uuid, (bool, Option<&str>, Option<Uuid>)> = rows
        .written
        .iter()
        .map(|id| (*id, (true, None, None)))
        .collect();
    for r in &rows.resolutions {
        let e = changes.entry(r.change_id).or_insert((false, None, None));
        e.1 = Some(r.value.as_str());
        e.2 = Some(r.cso_id);
    }
    let avc_id: Vec<Uuid> = changes.keys().copied().collect();
    let avc_written: Vec<bool> = changes.values().map(|c| c.0).collect();
    let avc_sval: Vec<Option<&str>> = changes.values().map(|c| c.1).collect();
    let avc_rcso: Vec<Option<Uuid>> = changes.values().map(|c| c.2).collect();
    let v = &rows.value_rows;
    sqlx::query(OUTCOME)
        .bind(&rows.exported)
        .bind(&avc_id)
        .bind(&avc_written)
        .bind(&avc_sval)
        .bind(&avc_rcso)
        .bind(&rows.value_deletes)
        .bind(v.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.is_new).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.cso_id).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.attribute_id).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.string.clone()).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.date_time).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.int).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.long).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.decimal).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.bytes.clone()).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.guid).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value.boolean).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.reference_value_id).collect::<Vec<_>>())
        .bind(
            v.iter()
                .map(|r| r.unresolved_reference_value.clone())
                .collect::<Vec<_>>(),
        )
        .bind(&rows.touched_csos)
        .execute(pool)
        .await?;
    Ok(())
}

/// Flushes written at once, each on its own connection: as many as the engine keeps in flight
/// (`MAX_FLUSHES_IN_FLIGHT` in `engine/coordinator.rs`), so that the ceiling is not one the engine
/// could beat by writing two flushes while the floor writes one. Flushes touch disjoint rows.
const WRITERS: usize = 3;
/// Overrides [`WRITERS`] for the floor and combined, to measure how the writes scale with
/// connections (the parent's environment reaches the children).
pub const WRITERS_ENV: &str = "JIM_BENCH_FLOOR_WRITERS";

/// [`WRITERS`], or the number [`WRITERS_ENV`] gives.
pub fn writers() -> usize {
    positive_env(WRITERS_ENV, "a positive number of connections").map_or(WRITERS, |n| n as usize)
}

/// The positive number the environment variable `name` holds, if it is set; anything else there
/// stops the benchmark with `what` it should be (a typo must not measure the default under
/// another name).
pub fn positive_env(name: &str, what: &str) -> Option<u32> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse::<u32>() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("{name}={v:?}: {what}"),
    }
}

/// Writes every flush, [`writers`] at a time, in claim order.
async fn write_all(spec: &ChildSpec, flushes: &[(Vec<Uuid>, RowChanges)]) -> Result<()> {
    let writers = writers();
    // Without JIT, as the engine's sessions: no statement here profits from compiled expressions.
    let options: sqlx::postgres::PgConnectOptions = spec.database_url.parse()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(writers as u32)
        .connect_with(options.options([("jit", "off")]))
        .await?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let writer = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((ids, rows)) = flushes.get(i) else {
                return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
            };
            write_flush(&pool, ids, rows).await?;
        }
    };
    let results = futures::future::join_all((0..writers).map(|_| writer())).await;
    pool.close().await;
    results
        .into_iter()
        .collect::<std::result::Result<Vec<()>, _>>()?;
    Ok(())
}

/// The floor: the rows only.
pub async fn child_floor(spec: &ChildSpec) -> Result<ChildReport> {
    let prepared = prepare(spec, Dialect::OpenLdap).await?;
    let exports = prepared.jobs.len() as u64;
    let pg0 = tree_cpu(spec.postgres_pid);
    let started = Instant::now();
    write_all(spec, &prepared.flushes).await?;
    Ok(ChildReport {
        exports,
        elapsed_s: started.elapsed().as_secs_f64(),
        postgres_cpu_in_clock_s: spec.postgres_pid.map(|_| tree_cpu(spec.postgres_pid) - pg0),
        note: format!(
            "{} flushes of {FLUSH}, {} at a time: the Executing mark and one outcome statement each; \
             read and planned in {:.2} s before the clock",
            prepared.flushes.len(),
            writers(),
            prepared.took.as_secs_f64()
        ),
        ..ChildReport::default()
    })
}

/// The combined ceiling: the limit's LDAP operations at saturation and the floor's writes at once.
pub async fn child_combined(spec: &ChildSpec) -> Result<ChildReport> {
    let directory = saturating_directory(spec).await?;
    let prepared = prepare(spec, directory.dialect()).await?;
    let exports = prepared.jobs.len() as u64;
    let took = prepared.took;
    // Plain exports first, then the reference-bearing ones, as the limit runs them.
    let mut plain = prepared.jobs;
    let references = plain.split_off(prepared.plain);
    // Active Directory refuses a member that does not exist yet: there the reference-bearing exports
    // go in waves, as the limit sends them.
    let waves = if spec.detect_dialect {
        dependency_waves(references)
    } else {
        vec![references]
    };
    let pg0 = tree_cpu(spec.postgres_pid);
    let started = Instant::now();
    let ldap = async {
        let (mut failed, mut lat) = super::timed_execute(&directory, plain, 512).await;
        for wave in waves {
            let (f, l) = super::timed_execute(&directory, wave, 512).await;
            failed += f;
            lat.extend(l);
        }
        let t = started.elapsed();
        lat.sort_by(f64::total_cmp);
        (failed, lat, t)
    };
    let sql = async {
        let r = write_all(spec, &prepared.flushes).await;
        (r, started.elapsed())
    };
    let ((failed, lat, ldap_s), (written, sql_s)) = tokio::join!(ldap, sql);
    written?;
    let elapsed = started.elapsed();
    let pg_in_clock = spec.postgres_pid.map(|_| tree_cpu(spec.postgres_pid) - pg0);
    let ops = directory.stats().operations();
    directory.close().await;
    Ok(ChildReport {
        exports,
        failed,
        postgres_cpu_in_clock_s: pg_in_clock,
        elapsed_s: elapsed.as_secs_f64(),
        ldap_operations: ops,
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p99_ms: percentile(&lat, 0.99),
        latency_note: "per export, Directory::execute call to result".into(),
        note: format!(
            "LDAP done after {:.2} s, the floor's writes after {:.2} s; read and planned in {:.2} s \
             before the clock",
            ldap_s.as_secs_f64(),
            sql_s.as_secs_f64(),
            took.as_secs_f64()
        ),
        ..ChildReport::default()
    })
}

/// The engine's statements for the same successful outcomes, no LDAP (see the module documentation).
pub async fn child_engine_sql(spec: &ChildSpec) -> Result<ChildReport> {
    let mut database = DatabaseConfig::new(spec.database_url.clone());
    database.max_connections = 1;
    let store = Store::connect(&database).await?;
    let queue = store
        .open(spec.connected_system_id, &RunOptions::default())
        .await?;
    let planner = Planner::new(&settings(), Dialect::OpenLdap);
    let started = Instant::now();
    let mut exports = 0u64;
    for pass in [Pass::Plain, Pass::References] {
        let mut cursor = None;
        loop {
            let mut page = queue.claim(pass, cursor, FLUSH as u32).await?;
            cursor = page.cursor.or(cursor);
            queue.resolve_references(&mut page.exports).await?;
            let last = page.is_last();
            let outcomes: Vec<ExportOutcome> = page
                .exports
                .into_iter()
                .map(|claimed| {
                    let job = plan_job(&planner, &queue, &claimed);
                    success(claimed, &job)
                })
                .collect();
            exports += outcomes.len() as u64;
            if !outcomes.is_empty() {
                let report = queue.persist(&outcomes).await?;
                if !report.not_held.is_empty() {
                    return Err("the engine-sql run lost rows it held".into());
                }
            }
            if last {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    store.pool().close().await;
    Ok(ChildReport {
        exports,
        elapsed_s: elapsed.as_secs_f64(),
        note: format!("pages and flushes of {FLUSH} on one connection"),
        ..ChildReport::default()
    })
}
