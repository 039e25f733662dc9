//! The benchmark: the engine against the directory's limit, a JIM-today emulation and `ldapmodify`,
//! on identical data, for the initial provisioning and a follow-up round separately.
//!
//! ```text
//! cargo run --release --example bench -- [--template MediumLarge] [--rtt 0,2,10]
//!     [--modes durable,nosync] [--strategies limit,floor,engine-sql,combined,ldapmodify,jim-today,engine]
//!     [--follow-ups 200] [--out bench-results] [--scale] [--scale-seconds 60] [--profile]
//!     [--directories slapd,samba-ad,389 | --samba | --389] [--samba-template Medium]
//!     [--samba-follow-ups 50] [--ds389-template Medium] [--fillfactor 100]
//! ```
//!
//! The parent starts a throwaway PostgreSQL 15 per mode (durable or `fsync = off`) and, per mode ×
//! RTT × strategy, a fresh slapd (durable or `dbnosync`) behind a [`LatencyProxy`] and a fresh JIM
//! database seeded with the template. Each strategy runs in its own child process (this binary
//! re-executed with `child <spec>`), so its peak RSS (`VmHWM`) and CPU seconds are its own. One child
//! runs every round of a combination (the initial round, the unmeasured retries, the follow-ups), one
//! per request on its stdin, as JIM's worker is one long-lived process: the engine's follow-ups run
//! on the `Engine` of its initial round, with its database pool open and the in-flight limit it
//! learnt. Each round reports its own CPU seconds and peak RSS (the peak is reset before each):
//!
//! - **limit**: the seeded exports read with the store's read-only peek and planned in memory before
//!   the clock starts, then the same LDAP operations through `Directory` at saturation (the
//!   dialect's connections, 4 on slapd, × 32 in flight), plain exports first, then the
//!   reference-bearing ones; no database work.
//! - **floor** (`bench/floor.rs`): exactly the row changes JIM's semantics require for the same exports,
//!   by the cheapest SQL known, no LDAP: PostgreSQL's floor for JIM's schema.
//! - **engine-sql**: the engine's own claim, resolve and persist statements for the same successful
//!   outcomes, no LDAP, one connection: what its SQL costs beside the floor's.
//! - **combined**: the limit's LDAP operations at saturation with the floor's writes beside them on the
//!   same machine: the ceiling for the engine here.
//! - **ldapmodify**: the same plans written as LDIF and applied sequentially by `ldapmodify -c -f`.
//! - **jim-today**: the emulation `DESIGN.md` defines (batches of 100 with a barrier, one connection,
//!   16 in flight, Add + base search per Create, JIM's per-batch statements one by one; then the
//!   reference-bearing exports two batches at a time on their own connections).
//! - **engine**: `Engine::run_export` with its defaults.
//!
//! Per child, PostgreSQL's WAL and row writes per table (inserts, updates and how many were HOT,
//! deletes) are measured too (`bench/dbstats.rs`). Every measurement starts after `sync`, and
//! failures a strategy's initial round left retryable are retried (unmeasured) before its
//! follow-ups are staged, so that every strategy's follow-ups meet the same directory. `--profile`
//! runs the floor and the engine with every statement's plan logged and writes where PostgreSQL's
//! time, buffers and WAL go (`bench/profile.rs`, `<out>/profile.md`) instead of the throughput
//! tables. `JIM_BENCH_TIMELINE=<file>` makes every engine run append its timeline (progress every
//! 10 ms, each persisted flush) to that file.
//!
//! SQL statements come from `pg_stat_statements` (`track = all`), reset before each child: top-level
//! statements without transaction control, with the nested ones (foreign-key triggers) beside them.
//! CPU seconds of slapd and PostgreSQL come from `/proc/<pid>/stat` before and after (PostgreSQL:
//! the postmaster, its live children and its reaped children). Results go to `<out>/results.json`,
//! `<out>/results.md` and `<out>/objects_per_second.png`. Figures are printed, never asserted.
//!
//! The Samba AD rows (`bench/samba.rs`; part of the default run, skipped with a message where the
//! DC cannot run; `--samba` runs only them) compare limit, jim-today and the engine against the
//! testkit's Samba AD domain controller on the AD seed. The 389 Directory Server rows
//! (`bench/ds389.rs`; part of the default run, skipped with a message where 389 cannot run; `--389`
//! runs only them) compare the same three against the testkit's 389 server on the slapd seed.

#[path = "bench/chart.rs"]
mod chart;
#[path = "bench/dbstats.rs"]
mod dbstats;
#[path = "bench/ds389.rs"]
mod ds389;
#[path = "bench/floor.rs"]
mod floor;
#[path = "bench/profile.rs"]
mod profile;
#[path = "bench/samba.rs"]
mod samba;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jim_export::config::{
    DatabaseConfig, Dialect, DirectoryConfig, DirectoryTls, ExportRequest, ExportSettings,
    RunOptions,
};
use jim_export::directory::{Directory, DirectoryTuning, ExportJob, ExportStatus};
use jim_export::engine::{CancellationToken, Engine, NoListener};
use jim_export::outcome::ExportOutcome;
use jim_export::plan::{ModKind, Operation, PlanInput, Planner};
use jim_export::store::{ClaimedExport, Cursor, ExportQueue, Pass, Store};
use jim_export_testkit::seed::{self, FollowUps, SeedOptions, Template};
use jim_export_testkit::{LatencyProxy, Postgres, PostgresOptions, Slapd, SlapdOptions};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const STRATEGIES: [&str; 7] = [
    "limit",
    "floor",
    "engine-sql",
    "combined",
    "ldapmodify",
    "jim-today",
    "engine",
];
/// JIM's batch size (and the emulation's page and flush).
const JIM_BATCH: u32 = 100;
/// JIM's auto-tuned Export Concurrency for OpenLDAP.
const JIM_IN_FLIGHT: u32 = 16;

fn default_jim_in_flight() -> u32 {
    JIM_IN_FLIGHT
}

// ---------------------------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------------------------

/// What the parent asks a child to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildSpec {
    strategy: String,
    database_url: String,
    connected_system_id: i32,
    ldap_url: String,
    bind_dn: String,
    password: String,
    /// Cancel the run after this long (the scale run).
    cancel_after_s: Option<u64>,
    /// TLS towards the directory (Samba AD: LDAPS verified against the test CA); none for slapd.
    #[serde(default)]
    tls: Option<DirectoryTls>,
    /// Detect the dialect from the rootDSE instead of taking OpenLDAP.
    #[serde(default)]
    detect_dialect: bool,
    /// JIM's Export Concurrency for this directory: the jim-today emulation's in-flight limit.
    #[serde(default = "default_jim_in_flight")]
    jim_in_flight: u32,
    /// The postmaster's PID, so that a strategy with work before its clock (reading and planning
    /// the queue) can measure PostgreSQL's CPU within the clock only.
    #[serde(default)]
    postgres_pid: Option<i32>,
}

/// What a child reports (one JSON line on stdout).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ChildReport {
    exports: u64,
    failed: u64,
    elapsed_s: f64,
    ldap_operations: u64,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_note: String,
    peak_rss_mb: f64,
    cpu_s: f64,
    time_to_first_write_ms: Option<u64>,
    /// The emulation's statements per batch by kind of batch (jim-today only).
    statements_per_batch: Vec<(String, u64)>,
    /// PostgreSQL's CPU seconds while the clock ran, for strategies that prepare before it (the
    /// parent's figure for the whole child would count the preparation's reads).
    #[serde(default)]
    postgres_cpu_in_clock_s: Option<f64>,
    note: String,
}

fn settings() -> ExportSettings {
    // The follow-ups move users to a container the directory does not have yet.
    ExportSettings {
        create_containers_as_needed: true,
        ..ExportSettings::default()
    }
}

fn directory_config(spec: &ChildSpec) -> DirectoryConfig {
    let mut c = DirectoryConfig::simple(&spec.ldap_url, &spec.bind_dn, &spec.password)
        .allowing_password_without_tls();
    if let Some(tls) = &spec.tls {
        c.tls = tls.clone();
    }
    c.dialect = (!spec.detect_dialect).then_some(Dialect::OpenLdap);
    c
}

/// Starts [`peak_rss_mb`] over from what the process holds live, so that each round of a child
/// reports its own peak: the heap the rounds before freed is first given back to the system (glibc
/// keeps it otherwise), then the peak is set to the current resident set (`5` to `clear_refs`,
/// Linux 4.0 and later).
fn reset_peak_rss() -> Result<()> {
    // SAFETY: malloc_trim only returns free heap pages to the system; it takes no pointers.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5")
        .map_err(|e| format!("resetting the peak RSS (/proc/self/clear_refs): {e}").into())
}

/// `VmHWM` of this process, in MB: its peak resident set since the last [`reset_peak_rss`].
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn clock_ticks() -> f64 {
    // /proc reports CPU time in USER_HZ ticks, 100 per second on every Linux architecture we run on.
    100.0
}

/// (utime + stime, cutime + cstime) of a process, in seconds.
fn proc_cpu(pid: i32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some((
        (n(11) + n(12)) / clock_ticks(),
        (n(13) + n(14)) / clock_ticks(),
    ))
}

fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of a server process and all its descendants, live or reaped (Samba's services are
/// grandchildren of its master process).
fn tree_cpu(pid: Option<i32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                && let Some(pp) = ppid(p)
            {
                parents.push((p, pp));
            }
        }
    }
    let mut total = 0.0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        // A live process's own time plus that of its reaped children.
        let (own, reaped) = proc_cpu(p).unwrap_or((0.0, 0.0));
        total += own + reaped;
        todo.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
    }
    total
}

fn own_cpu() -> f64 {
    proc_cpu(std::process::id() as i32).map_or(0.0, |(o, _)| o)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

/// Plans one claimed export as the engine does.
fn plan_job(planner: &Planner, queue: &ExportQueue, claimed: &ClaimedExport) -> ExportJob {
    let export = &claimed.export;
    let schema = queue.schema();
    let object_type = claimed
        .cso
        .as_ref()
        .and_then(|c| schema.object_type(c.type_id));
    let plan = match object_type {
        Some(t) => planner.plan(&PlanInput::new(export, t, claimed.cso.as_ref())),
        None => {
            let attributes: Vec<_> = export
                .attribute_changes
                .iter()
                .filter_map(|c| schema.attribute(c.attribute_id).cloned())
                .collect();
            planner.plan(&PlanInput {
                export,
                object_type_name: None,
                attributes: &attributes,
                cso: claimed.cso.as_ref(),
                created_containers: &[],
            })
        }
    };
    ExportJob::new(export.id, plan).reattempt(claimed.re_attempt)
}

/// Every export of the queue, read-only (peek), references resolved, planned: plain ones first.
async fn planned_jobs(
    spec: &ChildSpec,
    dialect: Dialect,
) -> Result<(Vec<ExportJob>, Vec<ExportJob>)> {
    let store = Store::connect(&DatabaseConfig::new(spec.database_url.clone())).await?;
    let queue = store
        .open(spec.connected_system_id, &RunOptions::default())
        .await?;
    let planner = Planner::new(&settings(), dialect);
    let mut passes = Vec::new();
    for pass in [Pass::Plain, Pass::References] {
        let mut jobs = Vec::new();
        let mut cursor = None;
        loop {
            let mut page = queue.peek(pass, cursor, 1000).await?;
            cursor = page.cursor.or(cursor);
            queue.resolve_references(&mut page.exports).await?;
            jobs.extend(page.exports.iter().map(|c| plan_job(&planner, &queue, c)));
            if page.is_last() {
                break;
            }
        }
        passes.push(jobs);
    }
    store.pool().close().await;
    let references = passes.pop().unwrap_or_default();
    let plain = passes.pop().unwrap_or_default();
    Ok((plain, references))
}

/// Runs `jobs` with at most `active` exports at once, timing each export. Returns (failed, latencies
/// in ms).
async fn timed_execute(
    directory: &Directory,
    jobs: Vec<ExportJob>,
    active: usize,
) -> (u64, Vec<f64>) {
    let gate = Arc::new(Semaphore::new(active));
    let mut set = JoinSet::new();
    for job in jobs {
        let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
            break;
        };
        let d = directory.clone();
        set.spawn(async move {
            let t = Instant::now();
            let r = d.execute(job).await;
            drop(permit);
            (r, t.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut failed = 0;
    let mut lat = Vec::new();
    while let Some(Ok((r, ms))) = set.join_next().await {
        if !r.is_success() {
            failed += 1;
            if failed <= 3 {
                eprintln!("    failed: {}", r.error_message().unwrap_or_default());
            }
        }
        lat.push(ms);
    }
    (failed, lat)
}

/// The directory at saturation, as the limit (and combined) drive it: the dialect's connections
/// (4 for OpenLDAP and 389, 1 for Samba AD) × 32 in flight. Samba's LDAP server takes each
/// connection in one process and its writes one transaction at a time: with 4 connections its
/// processes contended, and its CPU for the follow-ups rose by a third (0.9 → 1.2 s, 315 → 249
/// objects/s).
async fn saturating_directory(spec: &ChildSpec) -> Result<Directory> {
    Ok(Directory::connect_with(
        &directory_config(spec),
        DirectoryTuning {
            connections: None,
            in_flight_per_connection: Some(32),
            max_active_exports: Some(512),
            ..DirectoryTuning::default()
        },
    )
    .await?)
}

async fn child_limit(spec: &ChildSpec) -> Result<ChildReport> {
    let directory = saturating_directory(spec).await?;
    let (plain, references) = planned_jobs(spec, directory.dialect()).await?;
    let exports = (plain.len() + references.len()) as u64;
    // Active Directory refuses a reference to an entry that does not exist yet (OpenLDAP takes
    // it), so there the reference-bearing exports go in waves, each after the Creates it names.
    let waves = if spec.detect_dialect {
        dependency_waves(references)
    } else {
        vec![references]
    };
    let pg0 = tree_cpu(spec.postgres_pid);
    let started = Instant::now();
    let (mut failed, mut lat) = timed_execute(&directory, plain, 512).await;
    for wave in waves {
        let (f, l) = timed_execute(&directory, wave, 512).await;
        failed += f;
        lat.extend(l);
    }
    let elapsed = started.elapsed();
    let pg_in_clock = spec.postgres_pid.map(|_| tree_cpu(spec.postgres_pid) - pg0);
    lat.sort_by(f64::total_cmp);
    let ops = directory.stats().operations();
    directory.close().await;
    Ok(ChildReport {
        exports,
        failed,
        elapsed_s: elapsed.as_secs_f64(),
        ldap_operations: ops,
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p99_ms: percentile(&lat, 0.99),
        latency_note: "per export, Directory::execute call to result".into(),
        postgres_cpu_in_clock_s: pg_in_clock,
        ..ChildReport::default()
    })
}

/// Splits `jobs` into waves: a job whose values name an entry that another job of the set adds goes
/// in a later wave than that job (a cycle, which the seeds never make, ends up in the last wave).
fn dependency_waves(jobs: Vec<ExportJob>) -> Vec<Vec<ExportJob>> {
    let mut adds = std::collections::HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let Ok(plan) = &job.plan else { continue };
        for step in &plan.steps {
            if let Operation::Add { dn, .. } = &step.operation {
                adds.insert(jim_export::plan::dn_key(dn), i);
            }
        }
    }
    let named = |job: &ExportJob| -> Vec<usize> {
        let Ok(plan) = &job.plan else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for step in &plan.steps {
            let values: Vec<&Vec<u8>> = match &step.operation {
                Operation::Add { attributes, .. } => {
                    attributes.iter().flat_map(|a| &a.values).collect()
                }
                Operation::Modify { modifications, .. } => {
                    modifications.iter().flat_map(|m| &m.values).collect()
                }
                _ => Vec::new(),
            };
            for v in values {
                if let Ok(text) = std::str::from_utf8(v)
                    && text.contains('=')
                    && let Some(&j) = adds.get(&jim_export::plan::dn_key(text))
                {
                    out.push(j);
                }
            }
        }
        out
    };
    let deps: Vec<Vec<usize>> = jobs.iter().map(named).collect();
    let mut wave = vec![0usize; jobs.len()];
    for _ in 0..jobs.len() {
        let mut changed = false;
        for i in 0..jobs.len() {
            let w = deps[i]
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| wave[j] + 1)
                .max()
                .unwrap_or(0)
                .min(jobs.len());
            if w > wave[i] {
                wave[i] = w;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let depth = wave.iter().copied().max().unwrap_or(0);
    let mut waves: Vec<Vec<ExportJob>> = (0..=depth).map(|_| Vec::new()).collect();
    for (job, w) in jobs.into_iter().zip(wave) {
        waves[w].push(job);
    }
    waves
}

fn ldif_value(out: &mut String, attr: &str, v: &[u8]) {
    let safe = std::str::from_utf8(v).is_ok_and(|s| {
        !s.starts_with([' ', ':', '<']) && !s.ends_with(' ') && !s.contains(['\n', '\r', '\0'])
    });
    if safe {
        let _ = writeln!(out, "{attr}: {}", String::from_utf8_lossy(v));
    } else {
        let _ = writeln!(out, "{attr}:: {}", base64(v));
    }
}

fn base64(v: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(v.len().div_ceil(3) * 4);
    for c in v.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The plans as LDIF change records; returns the number of records.
fn write_ldif(jobs: &[ExportJob], out: &mut String) -> u64 {
    let mut records = 0;
    let mut containers = HashSet::new();
    for job in jobs {
        let Ok(plan) = &job.plan else { continue };
        for step in &plan.steps {
            records += 1;
            match &step.operation {
                Operation::EnsureContainer(c) => {
                    if !containers.insert(c.dn.clone()) {
                        records -= 1;
                        continue;
                    }
                    let _ = writeln!(out, "dn: {}\nchangetype: add", c.dn);
                    let _ = writeln!(out, "objectClass: {}", c.object_class);
                    for a in &c.attributes {
                        for v in &a.values {
                            ldif_value(out, &a.name, v);
                        }
                    }
                }
                Operation::Add { dn, attributes, .. } => {
                    let _ = writeln!(out, "dn: {dn}\nchangetype: add");
                    for a in attributes {
                        for v in &a.values {
                            ldif_value(out, &a.name, v);
                        }
                    }
                }
                Operation::Modify {
                    dn, modifications, ..
                } => {
                    let _ = writeln!(out, "dn: {dn}\nchangetype: modify");
                    for m in modifications {
                        let kind = match m.kind {
                            ModKind::Add => "add",
                            ModKind::Delete => "delete",
                            ModKind::Replace => "replace",
                        };
                        let _ = writeln!(out, "{kind}: {}", m.attribute);
                        for v in &m.values {
                            ldif_value(out, &m.attribute, v);
                        }
                        let _ = writeln!(out, "-");
                    }
                }
                Operation::ModifyDn {
                    dn,
                    new_rdn,
                    delete_old_rdn,
                    new_superior,
                    ..
                } => {
                    let _ = writeln!(
                        out,
                        "dn: {dn}\nchangetype: modrdn\nnewrdn: {new_rdn}\ndeleteoldrdn: {}",
                        u8::from(*delete_old_rdn)
                    );
                    if let Some(s) = new_superior {
                        let _ = writeln!(out, "newsuperior: {s}");
                    }
                }
                Operation::Delete { dn } => {
                    let _ = writeln!(out, "dn: {dn}\nchangetype: delete");
                }
                Operation::DisableAccount { .. } => {
                    records -= 1;
                    continue;
                }
            }
            out.push('\n');
        }
    }
    records
}

async fn child_ldapmodify(spec: &ChildSpec) -> Result<ChildReport> {
    let (plain, references) = planned_jobs(spec, Dialect::OpenLdap).await?;
    let exports = (plain.len() + references.len()) as u64;
    let mut ldif = String::new();
    let mut records = write_ldif(&plain, &mut ldif);
    records += write_ldif(&references, &mut ldif);
    let path = std::env::temp_dir().join(format!("jim-export-bench-{}.ldif", std::process::id()));
    std::fs::write(&path, ldif)?;
    let started = Instant::now();
    let out = Command::new("ldapmodify")
        .args(["-x", "-c", "-H", &spec.ldap_url, "-D", &spec.bind_dn, "-w"])
        .arg(&spec.password)
        .arg("-f")
        .arg(&path)
        .output()?;
    let elapsed = started.elapsed();
    std::fs::remove_file(&path).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = stderr.matches("ldap_").count() as u64;
    let mean = elapsed.as_secs_f64() * 1000.0 / records.max(1) as f64;
    Ok(ChildReport {
        exports,
        failed,
        elapsed_s: elapsed.as_secs_f64(),
        ldap_operations: records,
        latency_note: format!(
            "sequential; mean {mean:.2} ms per operation (no per-operation timing from the CLI)"
        ),
        // The CLI's own CPU is not ours; report it as the child's CPU from rusage below.
        note: format!("exit status {}", out.status),
        ..ChildReport::default()
    })
}

/// JIM's extra round trips that the store folds into its own statements, issued one by one.
struct JimStatements {
    pool: PgPool,
    activity_id: uuid::Uuid,
    rpei_insert: String,
}

/// An INSERT filling every NOT NULL column without a default of `table` with a neutral value
/// (`$1` for `Id` of the activity), read from the catalogue so it follows the fixture.
async fn neutral_insert(pool: &PgPool, table: &str, fixed: &[(&str, &str)]) -> Result<String> {
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = $1 AND is_nullable = 'NO' AND column_default IS NULL \
         AND is_identity = 'NO' ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        let ty: String = r.try_get(1)?;
        let v = if let Some((_, v)) = fixed.iter().find(|(c, _)| *c == name) {
            (*v).to_string()
        } else {
            match ty.as_str() {
                "uuid" => "gen_random_uuid()".into(),
                "integer" | "bigint" | "smallint" | "numeric" => "0".into(),
                "boolean" => "false".into(),
                "interval" => "interval '0'".into(),
                t if t.starts_with("timestamp") => "now()".into(),
                _ => "''".into(),
            }
        };
        cols.push(format!("\"{name}\""));
        vals.push(v);
    }
    Ok(format!(
        "INSERT INTO \"{table}\" ({}) SELECT {}",
        cols.join(", "),
        vals.join(", ")
    ))
}

impl JimStatements {
    async fn new(pool: PgPool) -> Result<Self> {
        let activity_id = uuid::Uuid::new_v4();
        let insert = neutral_insert(&pool, "Activities", &[("Id", "$1")]).await?;
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(activity_id)
            .execute(&pool)
            .await?;
        // One RPEI row per export of the batch (JIM's host inserts them through the callback).
        let rpei = neutral_insert(
            &pool,
            "ActivityRunProfileExecutionItems",
            &[("ActivityId", "$1")],
        )
        .await?
            + " FROM unnest($2::uuid[]) AS x";
        Ok(Self {
            pool,
            activity_id,
            rpei_insert: rpei,
        })
    }

    /// The page load JIM splits in 3 round trips: the store's claim is one; these are the other two.
    async fn load_extra(&self, ids: &[uuid::Uuid], csos: &[uuid::Uuid]) -> Result<u64> {
        sqlx::query(
            r#"SELECT * FROM "PendingExportAttributeValueChanges" WHERE "PendingExportId" = ANY($1)"#,
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        sqlx::query(
            r#"SELECT * FROM "ConnectedSystemObjectAttributeValues" WHERE "ConnectedSystemObjectId" = ANY($1)"#,
        )
        .bind(csos)
        .fetch_all(&self.pool)
        .await?;
        Ok(2)
    }

    async fn progress(&self, processed: i32) -> Result<u64> {
        sqlx::query(
            r#"UPDATE "Activities" SET "Message" = 'Exporting', "ObjectsProcessed" = $2 WHERE "Id" = $1"#,
        )
        .bind(self.activity_id)
        .bind(processed)
        .execute(&self.pool)
        .await?;
        Ok(1)
    }

    /// Mark Executing (W1): the store's claim already did it; JIM issues its own UPDATE. The lease
    /// token (`LastAttemptedAt`) is left alone so the store's persist still recognises the claim.
    async fn mark_executing(&self, ids: &[uuid::Uuid]) -> Result<u64> {
        sqlx::query(r#"UPDATE "PendingExports" SET "Status" = 2 WHERE "Id" = ANY($1)"#)
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(1)
    }

    /// JIM writes PEs and AVCs in two statements (W3 + W4); the store's persist writes both in one,
    /// so the AVC half is issued again on its own.
    async fn avc_update(&self, ids: &[uuid::Uuid]) -> Result<u64> {
        sqlx::query(
            r#"UPDATE "PendingExportAttributeValueChanges" SET "ExportAttemptCount" = "ExportAttemptCount" WHERE "PendingExportId" = ANY($1)"#,
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(1)
    }

    /// A batch with Creates: the anchor attribute definitions (R6) and the CSO hash reset (W5's second
    /// statement; the anchor values themselves are written by the store's persist).
    async fn creates(&self, cs: i32, csos: &[uuid::Uuid]) -> Result<u64> {
        sqlx::query(
            r#"SELECT * FROM "ConnectedSystemAttributes" a JOIN "ConnectedSystemObjectTypes" t ON t."Id" = a."ConnectedSystemObjectTypeId" WHERE t."ConnectedSystemId" = $1 AND (a."IsExternalId" OR a."IsSecondaryExternalId")"#,
        )
        .bind(cs)
        .fetch_all(&self.pool)
        .await?;
        sqlx::query(
            r#"UPDATE "ConnectedSystemObjects" SET "ImportStateHash" = NULL, "ImportStateFingerprint" = NULL WHERE "Id" = ANY($1)"#,
        )
        .bind(csos)
        .execute(&self.pool)
        .await?;
        Ok(2)
    }

    /// The host's run history for the batch (JIM: ~5-6 statements; here one multi-row INSERT).
    async fn rpei(&self, csos: &[uuid::Uuid]) -> Result<u64> {
        sqlx::query(sqlx::AssertSqlSafe(self.rpei_insert.clone()))
            .bind(self.activity_id)
            .bind(csos)
            .execute(&self.pool)
            .await?;
        Ok(1)
    }
}

/// One JIM batch: extra loads, progress, mark Executing, the directory at 16 in flight with a barrier,
/// persist, the separate AVC update, the Create statements, the run history. Returns (statements
/// issued by the emulation, failed, latencies).
async fn jim_batch(
    queue: &ExportQueue,
    jim: &JimStatements,
    directory: &Directory,
    planner: &Planner,
    mut exports: Vec<ClaimedExport>,
    processed: i32,
    in_flight: usize,
) -> Result<(u64, u64, Vec<f64>, bool)> {
    let mut statements = 1; // the claim
    let ids: Vec<uuid::Uuid> = exports.iter().map(ClaimedExport::id).collect();
    let csos: Vec<uuid::Uuid> = exports
        .iter()
        .filter_map(|e| e.export.connected_system_object_id)
        .collect();
    let before = queue.statements();
    queue.resolve_references(&mut exports).await?;
    statements += jim.load_extra(&ids, &csos).await?;
    statements += jim.progress(processed).await?;
    statements += jim.mark_executing(&ids).await?;
    let has_creates = exports
        .iter()
        .any(|e| e.export.change_type == jim_export::model::PendingExportChangeType::Create);
    let mut jobs = Vec::new();
    let mut deferred = Vec::new();
    let mut sent = Vec::new();
    for e in exports {
        if e.writable_change_ids().is_empty() && !e.unresolved.is_empty() {
            deferred.push(e);
        } else {
            jobs.push(plan_job(planner, queue, &e));
            sent.push(e);
        }
    }
    let (results, lat) = {
        let gate = Arc::new(Semaphore::new(in_flight));
        let mut set = JoinSet::new();
        for (i, job) in jobs.into_iter().enumerate() {
            let permit = Arc::clone(&gate).acquire_owned().await?;
            let d = directory.clone();
            set.spawn(async move {
                let t = Instant::now();
                let r = d.execute(job).await;
                drop(permit);
                (i, r, t.elapsed().as_secs_f64() * 1000.0)
            });
        }
        let mut results: Vec<Option<jim_export::directory::ExportResult>> =
            (0..sent.len()).map(|_| None).collect();
        let mut lat = Vec::new();
        while let Some(done) = set.join_next().await {
            let (i, r, ms) = done?;
            results[i] = Some(r);
            lat.push(ms);
        }
        (results, lat)
    };
    let mut failed = 0;
    let mut outcomes: Vec<ExportOutcome> =
        deferred.into_iter().map(ExportOutcome::deferred).collect();
    for (claimed, r) in sent.into_iter().zip(results) {
        let Some(r) = r else {
            failed += 1;
            continue;
        };
        outcomes.push(match r.status {
            ExportStatus::Succeeded => {
                ExportOutcome::created(claimed, r.external_id, r.secondary_external_id)
            }
            ExportStatus::Failed {
                error_type,
                message,
            } => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("    failed: {message}");
                }
                ExportOutcome::failed(claimed, message, error_type)
            }
            // `execute_all` never stops early and its jobs carry no fence; counted as a failure
            // should that change.
            ExportStatus::NotStarted | ExportStatus::Fenced { .. } => {
                failed += 1;
                ExportOutcome::failed(
                    claimed,
                    "not begun",
                    jim_export::model::ConnectedSystemExportErrorType::General,
                )
            }
        });
    }
    queue.persist(&outcomes).await?;
    statements += queue.statements() - before;
    statements += jim.avc_update(&ids).await?;
    if has_creates {
        statements += jim.creates(queue.connected_system_id(), &csos).await?;
    }
    statements += jim.rpei(&csos).await?;
    Ok((statements, failed, lat, has_creates))
}

async fn jim_directory(spec: &ChildSpec) -> Result<Directory> {
    Ok(Directory::connect_with(
        &directory_config(spec),
        DirectoryTuning {
            connections: Some(1),
            in_flight_per_connection: Some(spec.jim_in_flight),
            max_active_exports: Some(spec.jim_in_flight as usize),
            use_post_read: false,
            ..DirectoryTuning::default()
        },
    )
    .await?)
}

#[derive(Default)]
struct JimTotals {
    exports: u64,
    failed: u64,
    lat: Vec<f64>,
    create_batches: (u64, u64),
    other_batches: (u64, u64),
}

impl JimTotals {
    fn add(&mut self, n: usize, r: (u64, u64, Vec<f64>, bool)) {
        let (statements, failed, lat, creates) = r;
        self.exports += n as u64;
        self.failed += failed;
        self.lat.extend(lat);
        let b = if creates {
            &mut self.create_batches
        } else {
            &mut self.other_batches
        };
        b.0 += 1;
        b.1 += statements;
    }
}

async fn child_jim_today(spec: &ChildSpec) -> Result<ChildReport> {
    let store = Store::connect(&DatabaseConfig::new(spec.database_url.clone())).await?;
    let queue = Arc::new(
        store
            .open(spec.connected_system_id, &RunOptions::default())
            .await?,
    );
    let jim = Arc::new(JimStatements::new(store.pool().clone()).await?);
    let primary = jim_directory(spec).await?;
    let planner = Planner::new(&settings(), primary.dialect());
    let in_flight = spec.jim_in_flight as usize;
    let started = Instant::now();
    let mut t = JimTotals::default();
    // Plain exports: one batch at a time, one connection, a barrier after each.
    let mut cursor = None;
    loop {
        let page = queue.claim(Pass::Plain, cursor, JIM_BATCH).await?;
        cursor = page.cursor.or(cursor);
        let last = page.is_last();
        if !page.exports.is_empty() {
            let n = page.exports.len();
            let r = jim_batch(
                &queue,
                &jim,
                &primary,
                &planner,
                page.exports,
                t.exports as i32,
                in_flight,
            )
            .await?;
            t.add(n, r);
        }
        if last {
            break;
        }
    }
    // Reference-bearing exports: two batches at a time, each on its own connection.
    let shared: Arc<Mutex<(Option<Cursor>, bool, JimTotals)>> =
        Arc::new(Mutex::new((None, false, std::mem::take(&mut t))));
    let mut workers = JoinSet::new();
    for w in 0..2 {
        let directory = if w == 0 {
            primary.clone()
        } else {
            jim_directory(spec).await?
        };
        let (queue, jim, planner, shared) = (
            Arc::clone(&queue),
            Arc::clone(&jim),
            planner.clone(),
            Arc::clone(&shared),
        );
        workers.spawn(async move {
            loop {
                let (page, processed) = {
                    let mut s = shared.lock().await;
                    if s.1 {
                        break;
                    }
                    let page = queue.claim(Pass::References, s.0, JIM_BATCH).await?;
                    s.0 = page.cursor.or(s.0);
                    s.1 = page.is_last();
                    (page, s.2.exports as i32)
                };
                if page.exports.is_empty() {
                    continue;
                }
                let n = page.exports.len();
                let r = jim_batch(
                    &queue,
                    &jim,
                    &directory,
                    &planner,
                    page.exports,
                    processed,
                    in_flight,
                )
                .await?;
                shared.lock().await.2.add(n, r);
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    let mut t = std::mem::take(&mut shared.lock().await.2);
    let ops = primary.stats().operations();
    t.lat.sort_by(f64::total_cmp);
    let per = |(b, s): (u64, u64)| s.checked_div(b).unwrap_or(0);
    Ok(ChildReport {
        exports: t.exports,
        failed: t.failed,
        elapsed_s: elapsed.as_secs_f64(),
        ldap_operations: ops,
        latency_p50_ms: percentile(&t.lat, 0.5),
        latency_p99_ms: percentile(&t.lat, 0.99),
        latency_note: format!(
            "per export, Directory::execute call to result ({in_flight} in flight)"
        ),
        statements_per_batch: vec![
            ("with Creates".into(), per(t.create_batches)),
            ("without Creates".into(), per(t.other_batches)),
        ],
        note: format!(
            "{} batches with Creates, {} without; operations counted on the first connection only",
            t.create_batches.0, t.other_batches.0
        ),
        ..ChildReport::default()
    })
}

/// Overrides the engine's adaptive in-flight limit with a fixed one of N (4 connections), to
/// compare the adaptive limit with a fixed one in the same run (the parent's environment reaches
/// the children).
const ENGINE_FIXED_ENV: &str = "JIM_BENCH_ENGINE_FIXED";

/// The engine's run options: the defaults, or a fixed limit when [`ENGINE_FIXED_ENV`] says so
/// (anything but a positive number there stops the benchmark).
fn engine_options() -> RunOptions {
    let Some(n) = floor::positive_env(ENGINE_FIXED_ENV, "a positive in-flight limit") else {
        return RunOptions::default();
    };
    RunOptions {
        concurrency: Some(jim_export::config::Concurrency::Fixed),
        connections: Some(4),
        in_flight_per_connection: Some(n.div_ceil(4)),
        max_in_flight: Some(n),
        ..RunOptions::default()
    }
}

/// Names a file to which each engine run appends its timeline ([`Timeline`]), for looking into a
/// run rather than for its figures: the progress events it asks for every 10 ms cost the engine a
/// little.
const TIMELINE_ENV: &str = "JIM_BENCH_TIMELINE";

/// An engine run's timeline: its progress events (phase, processed, in flight, the in-flight limit)
/// and its persisted flushes, each with the milliseconds since the run was called, one line each
/// after a `--- run` line. It showed where a follow-up round waits (`docs/benchmark.md`).
struct Timeline {
    out: std::sync::Mutex<std::fs::File>,
    started: Instant,
}

impl Timeline {
    fn new(path: PathBuf, started: Instant) -> Result<Self> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "--- run")?;
        Ok(Self {
            out: std::sync::Mutex::new(f),
            started,
        })
    }

    /// One line; a failed write is dropped (the run matters more than its timeline).
    fn line(&self, text: String) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if let Ok(mut f) = self.out.lock() {
            let _ = writeln!(f, "{ms:9.1} {text}");
        }
    }
}

impl jim_export::engine::RunListener for Timeline {
    fn on_progress(&self, e: &jim_export::report::ProgressEvent) {
        self.line(format!(
            "progress phase={:?} total={} processed={} in_flight={} limit={}",
            e.phase, e.total, e.processed, e.in_flight, e.in_flight_limit
        ));
    }
    fn on_batch(&self, r: &jim_export::report::BatchReport) {
        self.line(format!("batch seq={} items={}", r.sequence, r.items.len()));
    }
}

async fn child_engine(spec: &ChildSpec, engine: &Engine) -> Result<ChildReport> {
    let mut request = ExportRequest {
        database: DatabaseConfig::new(spec.database_url.clone()),
        connected_system_id: spec.connected_system_id,
        directory: directory_config(spec),
        settings: settings(),
        options: engine_options(),
    };
    let token = CancellationToken::new();
    if let Some(s) = spec.cancel_after_s {
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(s)).await;
            t.cancel();
        });
    }
    let started = Instant::now();
    let listener: Arc<dyn jim_export::engine::RunListener> = match std::env::var_os(TIMELINE_ENV) {
        Some(path) => {
            request.options.progress_interval_ms = 10;
            Arc::new(Timeline::new(path.into(), started)?)
        }
        None => Arc::new(NoListener),
    };
    let r = engine.run_export(&request, listener, token).await?;
    let elapsed = started.elapsed();
    Ok(ChildReport {
        exports: r.success_count + r.failed_count + r.deferred_count,
        failed: r.failed_count,
        elapsed_s: elapsed.as_secs_f64(),
        ldap_operations: r.metrics.operations.total(),
        latency_p50_ms: r.metrics.export_latency_p50_ms,
        latency_p99_ms: r.metrics.export_latency_p99_ms,
        latency_note:
            "per export, start of its execution in Directory::run to its result (RunMetrics)".into(),
        time_to_first_write_ms: r.metrics.time_to_first_write_ms,
        note: format!(
            "{}; mean in flight {:.1}, max {}",
            r.message, r.metrics.mean_in_flight, r.metrics.max_in_flight
        ),
        ..ChildReport::default()
    })
}

/// Marks a child's report line on its stdout (anything else there is passed on to stderr).
const REPORT_PREFIX: &str = "report ";

/// The line a parent writes to a child's stdin to have it run one round.
const RUN_REQUEST: &str = "run";

/// A child: runs one round of its strategy per [`RUN_REQUEST`] line on stdin, printing a report
/// line for each, until stdin closes. The engine's rounds share one [`Engine`], as in JIM's
/// worker, which keeps one for its lifetime: the follow-ups find the database pool open and resume
/// at the in-flight limit the initial round learnt.
async fn child(spec_json: &str) -> Result<()> {
    let spec: ChildSpec = serde_json::from_str(spec_json)?;
    let engine = Engine::new();
    loop {
        let request = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await??;
        match request.trim() {
            "" => return Ok(()),
            RUN_REQUEST => {}
            other => return Err(format!("unknown request {other:?}").into()),
        }
        reset_peak_rss()?;
        let cpu0 = own_cpu();
        let mut report = match spec.strategy.as_str() {
            "limit" => child_limit(&spec).await?,
            "floor" => floor::child_floor(&spec).await?,
            "engine-sql" => floor::child_engine_sql(&spec).await?,
            "combined" => floor::child_combined(&spec).await?,
            "ldapmodify" => child_ldapmodify(&spec).await?,
            "jim-today" => child_jim_today(&spec).await?,
            "engine" => child_engine(&spec, &engine).await?,
            other => return Err(format!("unknown strategy {other}").into()),
        };
        report.cpu_s = own_cpu() - cpu0;
        report.peak_rss_mb = peak_rss_mb();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{REPORT_PREFIX}{}", serde_json::to_string(&report)?)?;
        out.flush()?;
    }
}

// ---------------------------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------------------------

struct Args {
    template: Template,
    rtts: Vec<u64>,
    modes: Vec<String>,
    strategies: Vec<String>,
    follow_ups: usize,
    out: PathBuf,
    scale: bool,
    scale_seconds: u64,
    /// Profile PostgreSQL's share instead of measuring throughput (`bench/profile.rs`).
    profile: bool,
    /// `slapd` (the mode × RTT matrix), `samba-ad` (the Samba AD rows) and/or `389` (the 389
    /// Directory Server rows).
    directories: Vec<String>,
    /// The Samba AD rows are skipped with a message when the DC cannot run here (the default run),
    /// an error when asked for.
    samba_optional: bool,
    /// The AD seed's template for the Samba AD rows.
    samba_template: Template,
    /// Objects per kind in the Samba AD follow-up round.
    samba_follow_ups: usize,
    /// The template of the 389 rows.
    ds389_template: Template,
    /// A `fillfactor` for JIM's `PendingExportAttributeValueChanges`, set before the slapd rows'
    /// seed (a storage setting JIM's operators could choose; the engine never sets it).
    fillfactor: Option<u32>,
    /// How many times each strategy of the slapd rows runs per mode and RTT, in alternating order.
    repeat: usize,
}

/// The command line (`--help` prints it with every default).
#[derive(clap::Parser)]
#[command(
    about = "The benchmark: the engine against the directory's limit, PostgreSQL's floor, \
    both together, a JIM-today emulation and ldapmodify, on identical data"
)]
struct Cli {
    /// JIM's scale template for the slapd rows.
    #[arg(long, default_value = "MediumLarge")]
    template: Template,
    /// Round-trip times injected in front of the directory, in ms.
    #[arg(long = "rtt", value_delimiter = ',', default_value = "0,2,10")]
    rtts: Vec<u64>,
    /// Durability modes of PostgreSQL and slapd.
    #[arg(long, value_delimiter = ',', default_value = "durable,nosync",
          value_parser = ["durable", "nosync"])]
    modes: Vec<String>,
    /// Strategies to run.
    #[arg(long, value_delimiter = ',', default_value = "limit,floor,engine-sql,combined,ldapmodify,jim-today,engine",
          value_parser = STRATEGIES)]
    strategies: Vec<String>,
    /// Objects per kind in the follow-up round (slapd and 389).
    #[arg(long, default_value_t = 200)]
    follow_ups: usize,
    /// Where the results go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Run 1,000,000 queued exports (Scale1m80Groups) for a window instead.
    #[arg(long)]
    scale: bool,
    /// The scale run's window, in seconds.
    #[arg(long, default_value_t = 60)]
    scale_seconds: u64,
    /// Profile PostgreSQL's share instead of measuring throughput.
    #[arg(long)]
    profile: bool,
    /// Directories to run (default: all three; Samba AD and 389 skipped with a message where
    /// their servers cannot run, an error when named).
    #[arg(long, value_delimiter = ',', value_parser = ["slapd", "samba-ad", "389"])]
    directories: Option<Vec<String>>,
    /// Only the Samba AD rows (`--directories samba-ad`).
    #[arg(long, conflicts_with_all = ["directories", "ds389"])]
    samba: bool,
    /// Only the 389 Directory Server rows (`--directories 389`).
    #[arg(long = "389", id = "ds389", conflicts_with = "directories")]
    ds389: bool,
    /// The AD seed's template for the Samba AD rows.
    #[arg(long, default_value = "Medium")]
    samba_template: Template,
    /// Objects per kind in the Samba AD follow-up round.
    #[arg(long, default_value_t = 50)]
    samba_follow_ups: usize,
    /// The template of the 389 rows.
    #[arg(long, default_value = "Medium")]
    ds389_template: Template,
    /// A fillfactor (10-100) for JIM's PendingExportAttributeValueChanges, set before the slapd
    /// rows' seed (not with --scale, whose seed is its own).
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=100), conflicts_with = "scale")]
    fillfactor: Option<u32>,
    /// Run each strategy of the slapd rows this many times per mode and RTT (in alternating order,
    /// on this noisy machine): a row is the median run, its ratios the medians of each round's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=9), conflicts_with_all = ["scale", "profile"])]
    repeat: u64,
}

fn args() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    let (directories, samba_optional) = match (cli.directories, cli.samba, cli.ds389) {
        (Some(d), _, _) => (d, false),
        (None, true, _) => (vec!["samba-ad".into()], false),
        (None, _, true) => (vec!["389".into()], false),
        (None, false, false) => (vec!["slapd".into(), "samba-ad".into(), "389".into()], true),
    };
    Args {
        template: cli.template,
        rtts: cli.rtts,
        modes: cli.modes,
        strategies: cli.strategies,
        follow_ups: cli.follow_ups,
        out: cli.out,
        scale: cli.scale,
        scale_seconds: cli.scale_seconds,
        profile: cli.profile,
        directories,
        samba_optional,
        samba_template: cli.samba_template,
        samba_follow_ups: cli.samba_follow_ups,
        ds389_template: cli.ds389_template,
        fillfactor: cli.fillfactor,
        repeat: cli.repeat as usize,
    }
}

#[derive(Debug, Clone, Serialize)]
struct Machine {
    cpu_model: String,
    cores: usize,
    memory_gb: f64,
    kernel: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_string());
    let memory_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gb: (memory_gb * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// One measured row of the table.
#[derive(Debug, Clone, Serialize)]
struct Measured {
    /// `slapd`, `samba-ad` or `389`.
    directory: String,
    mode: String,
    rtt_ms: u64,
    phase: String,
    strategy: String,
    objects_per_second: f64,
    ratio_to_limit: Option<f64>,
    sql_per_100: Option<f64>,
    sql_nested_per_100: Option<f64>,
    /// CPU seconds of the directory server (slapd or Samba).
    slapd_cpu_s: f64,
    postgres_cpu_s: f64,
    /// PostgreSQL CPU milliseconds per export.
    postgres_cpu_ms_per_export: f64,
    /// Objects/s as a ratio to `combined` (the limit's LDAP with the floor's writes beside it) of the
    /// same mode, RTT and phase.
    ratio_to_combined: Option<f64>,
    /// PostgreSQL CPU per export as a ratio to the floor's of the same mode, RTT and phase.
    postgres_cpu_to_floor: Option<f64>,
    /// WAL and row writes per table.
    database_writes: dbstats::DbWrites,
    report: ChildReport,
    /// Which round of `--repeat` this run was (0 for the first).
    #[serde(skip)]
    round: usize,
    /// With `--repeat`: every round's figures, in the order they ran; the row is the median run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rounds: Vec<RoundFigures>,
}

/// One round's figures of a row measured more than once (`--repeat`).
#[derive(Debug, Clone, Serialize)]
struct RoundFigures {
    objects_per_second: f64,
    postgres_cpu_ms_per_export: f64,
    ratio_to_limit: Option<f64>,
    ratio_to_combined: Option<f64>,
    postgres_cpu_to_floor: Option<f64>,
}

/// What one child measured.
struct Sample {
    report: ChildReport,
    directory_cpu_s: f64,
    postgres_cpu_s: f64,
    statements: i64,
    nested_statements: i64,
    database_writes: dbstats::DbWrites,
}

impl Measured {
    fn new(
        directory: &str,
        mode: &str,
        rtt_ms: u64,
        phase: &str,
        strategy: &str,
        s: Sample,
    ) -> Self {
        let n = s.report.exports.max(1) as f64;
        let sql = !matches!(strategy, "limit" | "ldapmodify");
        let row = Measured {
            directory: directory.to_string(),
            mode: mode.to_string(),
            rtt_ms,
            phase: phase.to_string(),
            strategy: strategy.to_string(),
            objects_per_second: s.report.exports as f64 / s.report.elapsed_s.max(1e-9),
            ratio_to_limit: None,
            sql_per_100: sql.then_some(s.statements as f64 * 100.0 / n),
            sql_nested_per_100: sql.then_some(s.nested_statements as f64 * 100.0 / n),
            slapd_cpu_s: s.directory_cpu_s,
            postgres_cpu_s: s.report.postgres_cpu_in_clock_s.unwrap_or(s.postgres_cpu_s),
            postgres_cpu_ms_per_export: s
                .report
                .postgres_cpu_in_clock_s
                .unwrap_or(s.postgres_cpu_s)
                * 1000.0
                / n,
            ratio_to_combined: None,
            postgres_cpu_to_floor: None,
            database_writes: s.database_writes,
            report: s.report,
            round: 0,
            rounds: Vec::new(),
        };
        eprintln!(
            "  {directory:<8} {mode:<7} rtt {rtt_ms:>2} ms {phase:<10} {strategy:<10} {:>6} exports {:>8.0} obj/s  failed {}  sql/100 {}",
            row.report.exports,
            row.objects_per_second,
            row.report.failed,
            row.sql_per_100.map_or("-".into(), |v| format!("{v:.2}"))
        );
        row
    }
}

/// Top-level and nested statement counts of `pool`'s database since the last reset.
async fn statement_counts(pool: &PgPool) -> Result<(i64, i64)> {
    let rows = sqlx::query(
        "SELECT s.toplevel, s.query, s.calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = current_database()",
    )
    .fetch_all(pool)
    .await?;
    let (mut top, mut nested) = (0, 0);
    for r in &rows {
        let toplevel: bool = r.try_get(0)?;
        let query: String = r.try_get(1)?;
        let calls: i64 = r.try_get(2)?;
        let q = query.trim().to_ascii_uppercase();
        let control = [
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "START TRANSACTION",
            "SET ",
            "SHOW ",
        ]
        .iter()
        .any(|k| q.starts_with(k));
        if control || query.contains("pg_stat_") || query.contains("information_schema") {
            continue;
        }
        if toplevel {
            top += calls;
        } else {
            nested += calls;
        }
    }
    Ok((top, nested))
}

/// A strategy's child process for every round of one combination (the initial round, the
/// unmeasured retries, the follow-ups), as JIM's worker is one process for all of its runs.
struct Session {
    strategy: String,
    process: tokio::process::Child,
    requests: tokio::process::ChildStdin,
    reports: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Session {
    /// Starts the child of `spec` (it waits for its first round).
    fn start(spec: &ChildSpec) -> Result<Session> {
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
            .arg("child")
            .arg(serde_json::to_string(spec)?)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(requests), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err("the child's stdin and stdout are not piped".into());
        };
        Ok(Session {
            strategy: spec.strategy.clone(),
            process,
            requests,
            reports: tokio::io::BufReader::new(stdout).lines(),
        })
    }

    /// Whether the child keeps database connections open between rounds: the engine keeps its
    /// pool (the other strategies close theirs at the end of each round).
    fn keeps_connections(&self) -> bool {
        self.strategy == "engine"
    }

    /// Runs one round and returns its report.
    async fn round(&mut self) -> Result<ChildReport> {
        self.requests
            .write_all(format!("{RUN_REQUEST}\n").as_bytes())
            .await?;
        self.requests.flush().await?;
        while let Some(line) = self.reports.next_line().await? {
            match line.strip_prefix(REPORT_PREFIX) {
                Some(report) => return Ok(serde_json::from_str(report)?),
                None => eprintln!("{line}"),
            }
        }
        let status = self.process.wait().await?;
        Err(format!("{} child failed: {status}", self.strategy).into())
    }

    /// Ends the child (its stdin closes) and waits for it.
    async fn finish(self) -> Result<()> {
        let Session {
            strategy,
            mut process,
            requests,
            ..
        } = self;
        drop(requests);
        let status = process.wait().await?;
        if !status.success() {
            return Err(format!("{strategy} child failed: {status}").into());
        }
        Ok(())
    }
}

fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(389)),
        None => (authority.to_string(), 389),
    }
}

/// Writes every dirty page out before a measurement (`sync`), so that no strategy pays for the
/// writeback of what came before it: the seed, another strategy's run, a directory server's copy
/// from its template or the removal of the one before it.
async fn settle_writeback() -> Result<()> {
    let status = tokio::process::Command::new("sync").status().await?;
    if !status.success() {
        return Err(format!("sync failed: {status}").into());
    }
    Ok(())
}

/// Runs one round of a session's child with the CPU of the directory server (`directory_pid`) and
/// PostgreSQL and the statement counts around it.
async fn measured(
    pg: &Postgres,
    directory_pid: Option<i32>,
    pool: &PgPool,
    session: &mut Session,
) -> Result<Sample> {
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(pool)
        .await?;
    settle_writeback().await?;
    let writes0 = dbstats::snapshot(pool).await?;
    let (pg0, d0) = (tree_cpu(pg.pid()), tree_cpu(directory_pid));
    let report = session.round().await?;
    let (pg1, d1) = (tree_cpu(pg.pid()), tree_cpu(directory_pid));
    let (statements, nested_statements) = statement_counts(pool).await?;
    let database_writes = dbstats::since(pool, &writes0, session.keeps_connections()).await?;
    Ok(Sample {
        report,
        directory_cpu_s: d1 - d0,
        postgres_cpu_s: pg1 - pg0,
        statements,
        nested_statements,
        database_writes,
    })
}

async fn one_combination(
    args: &Args,
    pg: &Postgres,
    mode: &str,
    rtt: u64,
    strategy: &str,
    mut profiles: Option<&mut Vec<profile::Profiled>>,
) -> Result<Vec<Measured>> {
    let slapd = Slapd::start(SlapdOptions {
        durable: mode == "durable",
        ..SlapdOptions::default()
    })
    .await?;
    let proxy = LatencyProxy::in_front_of(slapd.ldap_url(), Duration::from_millis(rtt))?;
    let ldap_url = proxy.url("ldap");
    let db = pg.jim_database().await?;
    if let Some(f) = args.fillfactor {
        // Pages filled to f % keep room for the change rows' new versions on their own page: with
        // no indexed column changed (their Status is not indexed), an update can then be HOT.
        // `f` is a number checked to lie in 10..=100 (DDL takes no bind parameters).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"ALTER TABLE "PendingExportAttributeValueChanges" SET (fillfactor = {f})"#
        )))
        .execute(&db.pool)
        .await?;
    }
    let (host, port) = host_port(&ldap_url);
    let seeded = seed::seed(
        &db.pool,
        &SeedOptions::new(args.template)
            .with_suffix(slapd.suffix())
            .with_directory(host, port),
    )
    .await?;
    let spec = ChildSpec {
        strategy: strategy.to_string(),
        database_url: db.url.clone(),
        connected_system_id: seeded.connected_system_id(),
        ldap_url,
        bind_dn: slapd.admin_dn().to_string(),
        password: slapd.admin_password().to_string(),
        cancel_after_s: None,
        tls: None,
        detect_dialect: false,
        jim_in_flight: JIM_IN_FLIGHT,
        postgres_pid: pg.pid(),
    };
    let mut rows = Vec::new();
    let mut session = Session::start(&spec)?;
    for phase in ["initial", "follow-ups"] {
        if phase == "follow-ups" {
            stage_follow_up_round(args, &db.pool, &seeded, &mut session).await?;
        }
        let log = pg.dir().map(profile::LogCursor::at_end);
        let sample = measured(pg, slapd.pid(), &db.pool, &mut session).await?;
        if let (Some(profiles), Some(log)) = (profiles.as_deref_mut(), log) {
            let plans = log.plans()?;
            profiles.push(profile::Profiled {
                label: format!("{strategy}, {mode}, {rtt} ms, {phase}"),
                exports: sample.report.exports,
                postgres_cpu_s: sample.postgres_cpu_s,
                statements: profile::statement_kinds(&db.pool).await?,
                parts: profile::breakdown(&plans),
                writes: sample.database_writes.clone(),
                plans: profile::sample_plans(&plans),
            });
        }
        rows.push(Measured::new("slapd", mode, rtt, phase, strategy, sample));
    }
    session.finish().await?;
    drop(proxy);
    drop(slapd);
    Ok(rows)
}

/// How many unmeasured retries [`retry_failed`] makes at most.
const RETRY_ROUNDS: usize = 5;

/// Retries, unmeasured, what a strategy's measured round left failed but retryable, until nothing
/// is left or [`RETRY_ROUNDS`] have run: what JIM's next scheduled runs do once each retry is due.
/// Every strategy's follow-ups then start from a directory holding the whole initial round. On
/// Samba AD, jim-today's Creates that name an object not there yet are refused (about 150 of
/// 1,118), and without this its follow-ups ran on a DC lacking those users and groups: no member
/// changes on the missing groups, deletes of users in fewer groups. The DC spent 2.7 ms of CPU per
/// export on that round against 4.0-4.4 for the engine's and the limit's on a complete directory,
/// at 4 in flight as at 16. Returns how many exports were retried.
async fn retry_failed(
    pool: &PgPool,
    connected_system_id: i32,
    session: &mut Session,
) -> Result<u64> {
    let mut retried = 0;
    for _ in 0..RETRY_ROUNDS {
        let due = sqlx::query(
            r#"UPDATE "PendingExports" SET "NextRetryAt" = NULL
               WHERE "ConnectedSystemId" = $1 AND "Status" = 0 AND "ErrorCount" > 0
                 AND "ErrorCount" < "MaxRetries" AND "NextRetryAt" IS NOT NULL"#,
        )
        .bind(connected_system_id)
        .execute(pool)
        .await?
        .rows_affected();
        if due == 0 {
            break;
        }
        retried += due;
        let report = session.round().await?;
        eprintln!(
            "    {}: {due} failed export(s) retried before the follow-ups (not measured), {} failed again",
            session.strategy, report.failed
        );
    }
    Ok(retried)
}

/// After a strategy's initial round: its retryable failures retried ([`retry_failed`]), JIM's
/// confirming import of what it wrote (or, for the strategies that write nothing back, of what it
/// sent), then the follow-up round staged.
async fn stage_follow_up_round(
    args: &Args,
    pool: &PgPool,
    seeded: &seed::SeededSystem,
    session: &mut Session,
) -> Result<()> {
    retry_failed(pool, seeded.connected_system_id(), session).await?;
    let strategy = session.strategy.as_str();
    if matches!(strategy, "limit" | "ldapmodify") {
        // Nothing was written back: take the directory as holding what was sent.
        seed::confirm_all_as_exported(pool, seeded).await?;
    } else {
        seed::confirm_exported(pool, seeded).await?;
    }
    seed::stage_follow_ups(
        pool,
        seeded,
        &follow_ups(args.follow_ups, seeded.counts.groups as usize),
    )
    .await?;
    Ok(())
}

/// A mixed follow-up round of about `n` objects per kind, the group-bound kinds capped to what the
/// template's groups allow (each group takes at most one pending export).
fn follow_ups(n: usize, groups: usize) -> FollowUps {
    FollowUps {
        seed: 7,
        attribute_updates: n,
        renames: n / 2,
        moves: n / 4,
        manager_changes: n / 2,
        member_add_groups: (n / 2).min(groups / 4),
        member_remove_groups: (n / 2).min(groups / 4),
        members_per_group: 5,
        user_deletes: n / 4,
        group_deletes: (n / 20).clamp(1, (groups / 10).max(1)),
        ..FollowUps::default()
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn markdown(m: &Machine, args: &Args, rows: &[Measured], jim_batches: &[(String, u64)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {} ({} cores, {} GB), Linux {}. Template {}, follow-ups: a mixed round of ~{} objects per kind (updates, renames, moves, manager and membership changes, deletes).\n",
        m.cpu_model, m.cores, m.memory_gb, m.kernel, args.template, args.follow_ups
    );
    if let Some(f) = args.fillfactor {
        let _ = writeln!(
            s,
            "`PendingExportAttributeValueChanges` with `fillfactor = {f}` (set before the seed).\n"
        );
    }
    if std::env::var_os(floor::WRITERS_ENV).is_some() {
        let _ = writeln!(
            s,
            "floor and combined write {} flushes at a time (`{}`).\n",
            floor::writers(),
            floor::WRITERS_ENV
        );
    }
    if let Some(n) = floor::positive_env(ENGINE_FIXED_ENV, "a positive in-flight limit") {
        let _ = writeln!(
            s,
            "the engine runs with a fixed in-flight limit of {n} on 4 connections (`{ENGINE_FIXED_ENV}`).\n"
        );
    }
    if args.repeat > 1 {
        let _ = writeln!(
            s,
            "Each strategy ran {} times per mode and RTT, every other round in reverse order. A row is the run with the median objects/s (the lowest and highest in parentheses, every round in `results.json`); × limit, × combined and × floor are the medians of the ratios within each round.\n",
            args.repeat
        );
    }
    s.push_str(&table("mode", "slapd", rows));
    if !jim_batches.is_empty() {
        let _ = writeln!(
            s,
            "\nJIM-today emulation, SQL statements per 100-export batch (top-level, issued one by one): {} — JIM at 199d33b: 13-25 (`export-semantics.md` §3.3).",
            jim_batches
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(s, "\n{LATENCY_NOTE}");
    s
}

/// How each strategy's latency is measured (under every table).
const LATENCY_NOTE: &str = "Latency: each export is timed, by limit and jim-today from `Directory::execute` to its result, by the engine from the start of the export's execution in `Directory::run` to its result (`RunMetrics`, an HDR histogram, within 1 %); ldapmodify is sequential (mean in the JSON). CPU s client is the strategy's own process (for ldapmodify the bench child, not the CLI).";

/// A row's objects/s, with the lowest and highest of its rounds when it ran more than once.
fn objects_per_second(r: &Measured) -> String {
    let (lo, hi) = r.rounds.iter().fold((f64::MAX, 0.0f64), |(lo, hi), x| {
        (lo.min(x.objects_per_second), hi.max(x.objects_per_second))
    });
    if r.rounds.len() > 1 {
        format!("{:.0} ({lo:.0}-{hi:.0})", r.objects_per_second)
    } else {
        format!("{:.0}", r.objects_per_second)
    }
}

/// The markdown table of `rows`; the first column is `first` (the mode for slapd rows, the
/// directory otherwise) and the server CPU column is headed `server`.
fn table(first: &str, server: &str, rows: &[Measured]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| {first} | RTT | phase | strategy | exports | objects/s | × limit | × combined | SQL/100 (nested) | PG ms/export (× floor) | WAL KB/export | HOT % | peak RSS MB | p50 / p99 ms | CPU s client / {server} / PG | failed |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} ms | {} | {} | {} | {} | {} | {} | {} | {:.2}{} | {:.1} | {} | {:.0} | {} / {} | {:.1} / {:.1} / {:.1} | {} |",
            if r.directory == "slapd" {
                &r.mode
            } else {
                &r.directory
            },
            r.rtt_ms,
            r.phase,
            r.strategy,
            r.report.exports,
            objects_per_second(r),
            fmt_opt(r.ratio_to_limit, 2),
            fmt_opt(r.ratio_to_combined, 2),
            match (r.sql_per_100, r.sql_nested_per_100) {
                (Some(a), Some(b)) => format!("{a:.2} ({b:.0})"),
                _ => "–".into(),
            },
            r.postgres_cpu_ms_per_export,
            r.postgres_cpu_to_floor
                .map_or(String::new(), |f| format!(" ({f:.2})")),
            r.database_writes.wal_bytes as f64 / 1024.0 / r.report.exports.max(1) as f64,
            r.database_writes
                .hot_share()
                .map_or("–".into(), |h| format!("{:.0}", h * 100.0)),
            r.report.peak_rss_mb,
            fmt_opt(r.report.latency_p50_ms, 1),
            fmt_opt(r.report.latency_p99_ms, 1),
            r.report.cpu_s,
            r.slapd_cpu_s,
            r.postgres_cpu_s,
            r.report.failed
        );
    }
    s
}

async fn scale_run(args: &Args, m: &Machine) -> Result<()> {
    eprintln!("scale: Scale1m80Groups (1,000,000 pending exports), seeding takes minutes ...");
    let pg = Postgres::start(PostgresOptions::default()).await?;
    let slapd = Slapd::start(SlapdOptions::default()).await?;
    let db = pg.jim_database().await?;
    let (host, port) = host_port(slapd.ldap_url());
    let started = Instant::now();
    let seeded = seed::seed(
        &db.pool,
        &SeedOptions::new(Template::Scale1m80Groups)
            .with_suffix(slapd.suffix())
            .with_directory(host, port),
    )
    .await?;
    eprintln!(
        "  seeded {} pending exports in {:.0} s",
        seeded.counts.pending_exports,
        started.elapsed().as_secs_f64()
    );
    let spec = ChildSpec {
        strategy: "engine".into(),
        database_url: db.url.clone(),
        connected_system_id: seeded.connected_system_id(),
        ldap_url: slapd.ldap_url().to_string(),
        bind_dn: slapd.admin_dn().to_string(),
        password: slapd.admin_password().to_string(),
        cancel_after_s: Some(args.scale_seconds),
        tls: None,
        detect_dialect: false,
        jim_in_flight: JIM_IN_FLIGHT,
        postgres_pid: pg.pid(),
    };
    let mut session = Session::start(&spec)?;
    let Sample {
        report,
        directory_cpu_s: slapd_cpu,
        postgres_cpu_s: pg_cpu,
        statements: top,
        ..
    } = measured(&pg, slapd.pid(), &db.pool, &mut session).await?;
    session.finish().await?;
    let out = serde_json::json!({
        "machine": m,
        "template": "Scale1m80Groups",
        "queued": seeded.counts.pending_exports,
        "cancelled_after_s": args.scale_seconds,
        "peak_rss_mb": report.peak_rss_mb,
        "time_to_first_write_ms": report.time_to_first_write_ms,
        "exports_in_window": report.exports,
        "objects_per_second": report.exports as f64 / report.elapsed_s.max(1e-9),
        "sql_per_100": top as f64 * 100.0 / report.exports.max(1) as f64,
        "slapd_cpu_s": slapd_cpu,
        "postgres_cpu_s": pg_cpu,
        "report": report,
    });
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("scale.json"),
        serde_json::to_string_pretty(&out)?,
    )?;
    println!(
        "scale: peak RSS {:.0} MB (target <= 150), first directory write after {} ms (target <= 1000), {} exports in {} s",
        report.peak_rss_mb,
        report
            .time_to_first_write_ms
            .map_or("-".into(), |v| v.to_string()),
        report.exports,
        args.scale_seconds
    );
    Ok(())
}

/// The rows of an optional directory: ratios set; `None` after a printed skip when its server cannot
/// run here and the default run asked for it.
fn optional_rows(
    name: &str,
    args: &Args,
    rows: Result<Vec<Measured>>,
) -> Result<Option<Vec<Measured>>> {
    match rows {
        Ok(mut rows) => {
            set_ratios(&mut rows);
            Ok(Some(rows))
        }
        Err(e) if args.samba_optional => {
            eprintln!("SKIPPED ({name} rows): {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Writes one directory's section into the existing outputs: `key` of `results.json` and the part
/// of `results.md` from `title` to the next heading of its level or above (or the end) are
/// replaced, or added; everything else stays as it was.
fn merge_section(
    args: &Args,
    key: &str,
    title: &str,
    json: serde_json::Value,
    markdown: &str,
) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let json_path = args.out.join("results.json");
    let mut doc: serde_json::Value = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    doc[key] = json;
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)?;
    let md_path = args.out.join("results.md");
    let existing = std::fs::read_to_string(&md_path).unwrap_or_default();
    // The section runs from its title to the next heading of its level or above (or the end).
    let start = if existing.starts_with(&format!("{title}\n")) {
        Some(0)
    } else {
        existing.find(&format!("\n{title}\n")).map(|i| i + 1)
    };
    let (before, after) = match start {
        Some(i) => {
            let body = i + title.len();
            let end = existing[body..]
                .match_indices('\n')
                .map(|(j, _)| body + j)
                .find(|&j| {
                    let line = &existing[j + 1..];
                    line.starts_with("# ") || line.starts_with("## ") || line.starts_with("### ")
                })
                .unwrap_or(existing.len());
            (&existing[..i], &existing[end..])
        }
        None => (existing.as_str(), ""),
    };
    std::fs::write(
        &md_path,
        format!(
            "{}\n{}{after}",
            before.trim_end_matches('\n'),
            markdown.trim_end_matches('\n').to_string() + "\n"
        ),
    )?;
    println!("{markdown}");
    Ok(())
}

async fn parent(args: Args) -> Result<()> {
    let m = machine();
    eprintln!(
        "machine: {} ({} cores); template {}; RTT {:?} ms; modes {:?}; strategies {:?}",
        m.cpu_model, m.cores, args.template, args.rtts, args.modes, args.strategies
    );
    if args.scale {
        return scale_run(&args, &m).await;
    }
    if args.profile {
        return profile_run(&args, &m).await;
    }
    let slapd_rows = args.directories.iter().any(|d| d == "slapd");
    let samba_rows = args.directories.iter().any(|d| d == "samba-ad");
    let ds389_rows = args.directories.iter().any(|d| d == "389");
    let mut rows = Vec::new();
    for mode in args.modes.iter().filter(|_| slapd_rows) {
        let pg = Postgres::start(PostgresOptions {
            durable: mode == "durable",
            ..PostgresOptions::default()
        })
        .await?;
        for &rtt in &args.rtts {
            for round in 0..args.repeat {
                // Every other round runs the strategies backwards, so that none always runs
                // first or last (after a cold start, before the next cell).
                let mut order: Vec<&String> = args.strategies.iter().collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for strategy in order {
                    let mut measured =
                        one_combination(&args, &pg, mode, rtt, strategy, None).await?;
                    measured.iter_mut().for_each(|r| r.round = round);
                    rows.extend(measured);
                }
            }
        }
    }
    set_ratios(&mut rows);
    let rows = median_rows(rows);
    let samba = if samba_rows {
        optional_rows("Samba AD", &args, samba::rows(&args).await)?
    } else {
        None
    };
    let ds389 = if ds389_rows {
        optional_rows("389 Directory Server", &args, ds389::rows(&args).await)?
    } else {
        None
    };
    if !slapd_rows {
        // Only the Samba AD and/or 389 rows ran: they replace their sections of the existing
        // outputs.
        if let Some(rows) = &samba {
            merge_section(
                &args,
                samba::KEY,
                samba::SECTION,
                samba::json(&args, &m, rows),
                &samba::markdown(&args, &m, rows),
            )?;
        }
        if let Some(rows) = &ds389 {
            merge_section(
                &args,
                ds389::KEY,
                ds389::SECTION,
                ds389::json(&args, &m, rows),
                &ds389::markdown(&args, &m, rows),
            )?;
        }
        println!("written to {}", args.out.display());
        return Ok(());
    }
    // Per kind of batch, from whichever run had such batches (the initial provisioning has Creates,
    // the follow-up round has none).
    let mut jim_batches: Vec<(String, u64)> = Vec::new();
    for r in rows.iter().filter(|r| r.strategy == "jim-today") {
        for (kind, n) in &r.report.statements_per_batch {
            if *n > 0 && !jim_batches.iter().any(|(k, _)| k == kind) {
                jim_batches.push((kind.clone(), *n));
            }
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let mut json = serde_json::json!({
        "machine": m,
        "template": args.template.to_string(),
        "follow_ups": args.follow_ups,
        "fillfactor": args.fillfactor,
        "repeat": args.repeat,
        "rows": rows,
    });
    let mut md = markdown(&m, &args, &rows, &jim_batches);
    if let Some(samba_rows) = &samba {
        json[samba::KEY] = samba::json(&args, &m, samba_rows);
        md.push_str(&samba::markdown(&args, &m, samba_rows));
    }
    if let Some(rows) = &ds389 {
        json[ds389::KEY] = ds389::json(&args, &m, rows);
        md.push_str(&ds389::markdown(&args, &m, rows));
    }
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(args.out.join("results.md"), &md)?;
    // The chart: initial provisioning, one group per mode and RTT.
    let mut groups = Vec::new();
    for mode in &args.modes {
        for &rtt in &args.rtts {
            groups.push(chart::Group {
                label: format!("{mode} {rtt} ms"),
                values: args
                    .strategies
                    .iter()
                    .map(|s| {
                        rows.iter()
                            .find(|r| {
                                r.mode == *mode
                                    && r.rtt_ms == rtt
                                    && r.phase == "initial"
                                    && r.strategy == *s
                            })
                            .map(|r| r.objects_per_second)
                    })
                    .collect(),
            });
        }
    }
    let series: Vec<&str> = args.strategies.iter().map(String::as_str).collect();
    chart::write(
        &args.out.join("objects_per_second.png"),
        &format!(
            "INITIAL PROVISIONING, {} - OBJECTS/S BY STRATEGY AND RTT",
            args.template
        ),
        &series,
        &groups,
    )?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{md}")?;
    writeln!(stdout, "written to {}", args.out.display())?;
    Ok(())
}

/// The profiling run: for each mode and RTT, the floor and the engine (of the strategies asked for)
/// with every statement's plan logged; writes `<out>/profile.md` and `<out>/profile.json`.
async fn profile_run(args: &Args, m: &Machine) -> Result<()> {
    let mut profiles = Vec::new();
    for mode in &args.modes {
        let pg = Postgres::start(PostgresOptions {
            durable: mode == "durable",
            settings: profile::postgres_settings(),
            ..PostgresOptions::default()
        })
        .await?;
        for &rtt in &args.rtts {
            for strategy in args
                .strategies
                .iter()
                .filter(|s| matches!(s.as_str(), "floor" | "engine-sql" | "engine" | "jim-today"))
            {
                one_combination(args, &pg, mode, rtt, strategy, Some(&mut profiles)).await?;
            }
        }
    }
    let mut md = format!(
        "Machine: {} ({} cores). Template {}. Every statement's plan was logged with ANALYZE, BUFFERS, \
         WAL and timing (auto_explain), which slows statements down: read the figures as shares and \
         per-export costs, not throughput.\n",
        m.cpu_model, m.cores, args.template
    );
    md.push_str(&profile::markdown(&profiles));
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("profile.md"), &md)?;
    std::fs::write(
        args.out.join("profile.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "machine": m,
            "template": args.template.to_string(),
            "profiles": profiles,
        }))?,
    )?;
    println!("{md}");
    println!("written to {}", args.out.display());
    Ok(())
}

/// Each row's objects/s as a ratio to the limit of the same directory, mode, RTT and phase.
fn set_ratios(rows: &mut [Measured]) {
    type Key = (String, String, u64, String, usize);
    let key = |r: &Measured| -> Key {
        (
            r.directory.clone(),
            r.mode.clone(),
            r.rtt_ms,
            r.phase.clone(),
            r.round,
        )
    };
    let of = |strategy: &str, rows: &[Measured]| -> Vec<(Key, f64, f64)> {
        rows.iter()
            .filter(|r| r.strategy == strategy)
            .map(|r| (key(r), r.objects_per_second, r.postgres_cpu_ms_per_export))
            .collect()
    };
    let (limits, combined, floors) = (of("limit", rows), of("combined", rows), of("floor", rows));
    for r in rows.iter_mut() {
        let k = key(r);
        let same = |(other, ..): &&(Key, f64, f64)| *other == k;
        r.ratio_to_limit = limits.iter().find(same).map(|l| r.objects_per_second / l.1);
        r.ratio_to_combined = combined
            .iter()
            .find(same)
            .map(|c| r.objects_per_second / c.1);
        if !matches!(r.strategy.as_str(), "limit" | "ldapmodify") {
            r.postgres_cpu_to_floor = floors
                .iter()
                .find(same)
                .filter(|f| f.2 > 0.0)
                .map(|f| r.postgres_cpu_ms_per_export / f.2);
        }
    }
}

/// The median of `values` (the lower middle one for an even count), `None` when there are none.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// One row per directory, mode, RTT, phase and strategy from rows measured in several rounds
/// (`--repeat`): the run with the median objects/s, carrying every round's figures, with each
/// ratio the median of the rounds' ratios. A ratio within a round compares runs made minutes
/// apart at most, meant to cancel a shared machine's slower and faster minutes (it does so only
/// in part: `docs/benchmark.md` gives the spread). Rows measured once are returned as they are.
fn median_rows(rows: Vec<Measured>) -> Vec<Measured> {
    let mut groups: Vec<Vec<Measured>> = Vec::new();
    for r in rows {
        match groups.iter_mut().find(|g| {
            let f = &g[0];
            f.directory == r.directory
                && f.mode == r.mode
                && f.rtt_ms == r.rtt_ms
                && f.phase == r.phase
                && f.strategy == r.strategy
        }) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
        .into_iter()
        .filter_map(|mut g| {
            if g.len() == 1 {
                return g.pop();
            }
            let rounds: Vec<RoundFigures> = g
                .iter()
                .map(|r| RoundFigures {
                    objects_per_second: r.objects_per_second,
                    postgres_cpu_ms_per_export: r.postgres_cpu_ms_per_export,
                    ratio_to_limit: r.ratio_to_limit,
                    ratio_to_combined: r.ratio_to_combined,
                    postgres_cpu_to_floor: r.postgres_cpu_to_floor,
                })
                .collect();
            let of = |f: fn(&RoundFigures) -> Option<f64>| -> Option<f64> {
                median(rounds.iter().filter_map(f).collect())
            };
            let (to_limit, to_combined, to_floor) = (
                of(|r| r.ratio_to_limit),
                of(|r| r.ratio_to_combined),
                of(|r| r.postgres_cpu_to_floor),
            );
            g.sort_by(|a, b| a.objects_per_second.total_cmp(&b.objects_per_second));
            let mut row = g.swap_remove((g.len() - 1) / 2);
            row.ratio_to_limit = to_limit;
            row.ratio_to_combined = to_combined;
            row.postgres_cpu_to_floor = to_floor;
            row.rounds = rounds;
            Some(row)
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("child") {
        let spec = argv.next().ok_or("child needs a spec")?;
        return child(&spec).await;
    }
    parent(args()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A measured run of `strategy` in `round`: 1,000 exports at `ops` objects/s, PostgreSQL
    /// `pg_ms` per export.
    fn run(strategy: &str, round: usize, ops: f64, pg_ms: f64) -> Measured {
        let mut r = Measured::new(
            "slapd",
            "nosync",
            10,
            "initial",
            strategy,
            Sample {
                report: ChildReport {
                    exports: 1000,
                    elapsed_s: 1000.0 / ops,
                    ..ChildReport::default()
                },
                directory_cpu_s: 0.0,
                postgres_cpu_s: pg_ms,
                statements: 0,
                nested_statements: 0,
                database_writes: dbstats::DbWrites::default(),
            },
        );
        r.round = round;
        r
    }

    #[test]
    fn ratios_pair_runs_of_one_round_and_the_row_is_the_median_run() {
        // Round 1 is slow for everyone: its ratios are like the other rounds', its throughput not.
        let mut rows = vec![
            run("combined", 0, 2000.0, 0.5),
            run("engine", 0, 1800.0, 0.6),
            run("combined", 1, 1000.0, 1.0),
            run("engine", 1, 900.0, 1.2),
            run("combined", 2, 2200.0, 0.5),
            run("engine", 2, 1700.0, 0.6),
        ];
        set_ratios(&mut rows);
        let rows = median_rows(rows);
        assert_eq!(rows.len(), 2);
        let engine = rows.iter().find(|r| r.strategy == "engine").unwrap();
        assert_eq!(engine.objects_per_second, 1700.0);
        assert_eq!(engine.round, 2);
        assert_eq!(engine.rounds.len(), 3);
        // Rounds' ratios 0.9, 0.9 and 0.773: the median is 0.9, which neither the median runs'
        // ratio (1,700 / 2,000 = 0.85) nor a ratio across rounds gives.
        let to_combined = engine.ratio_to_combined.unwrap();
        assert!((to_combined - 0.9).abs() < 1e-9, "{to_combined}");
        assert_eq!(objects_per_second(engine), "1700 (900-1800)");
    }

    #[test]
    fn a_row_measured_once_is_left_as_it_is() {
        let mut rows = vec![run("floor", 0, 3000.0, 0.5), run("engine", 0, 1500.0, 0.6)];
        set_ratios(&mut rows);
        let rows = median_rows(rows);
        let engine = rows.iter().find(|r| r.strategy == "engine").unwrap();
        assert!(engine.rounds.is_empty());
        assert_eq!(objects_per_second(engine), "1500");
        let to_floor = engine.postgres_cpu_to_floor.unwrap();
        assert!((to_floor - 1.2).abs() < 1e-9, "{to_floor}");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle() {
        assert_eq!(median(vec![3.0, 1.0, 4.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
