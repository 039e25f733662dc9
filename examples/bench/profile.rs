//! The profiling mode (`--profile`): where PostgreSQL's time, buffers and WAL go, per statement kind
//! and per data-modifying part of a statement.
//!
//! PostgreSQL runs with `auto_explain` logging every top-level statement's plan with `ANALYZE`,
//! `BUFFERS`, `WAL` and timing as JSON; the parts are the plan's CTE subplans (the persist statement's
//! status transitions, change rows, value deletes, updates and inserts, hash reset), each with its own
//! time, buffer hits and WAL, and the foreign-key triggers the statement fired. `pg_stat_statements`
//! gives the totals per statement kind. Timing every plan node slows every statement down, so the
//! profile's figures are shares and per-export costs, never the benchmark's throughput.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Row};

use super::Result;

/// Server settings that make PostgreSQL log the plans.
pub fn postgres_settings() -> Vec<(String, String)> {
    [
        (
            "shared_preload_libraries",
            "pg_stat_statements,auto_explain",
        ),
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_buffers", "on"),
        ("auto_explain.log_wal", "on"),
        ("auto_explain.log_timing", "on"),
        ("auto_explain.log_triggers", "on"),
        ("auto_explain.log_format", "json"),
        ("auto_explain.log_nested_statements", "off"),
        ("pg_stat_statements.track_planning", "on"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What a statement is, by its text (as `pg_stat_statements` keeps it: constants become `$n`).
pub fn kind(query: &str) -> &'static str {
    if query.contains("WITH pe_in AS") {
        "engine: persist"
    } else if query.contains("claimed AS (") && query.contains("FOR UPDATE OF pe SKIP LOCKED") {
        "engine: claim + load"
    } else if query.contains(r#"x."MetaverseObjectId" = m.id"#) {
        "store: resolve references"
    } else if query.contains("SET \"LastAttemptedAt\" = now()")
        && query.contains("RETURNING t.\"Id\"")
    {
        "engine: renew leases"
    } else if query.contains("SELECT count(*)") && query.contains("LIKE $3") {
        "store: count what is due"
    } else if query.contains(r#"FROM "ConnectedSystems" s"#)
        || query.contains(r#"FROM "__EFMigrationsHistory""#)
    {
        "store: load the system, check the schema"
    } else if query.contains("claimed AS (") {
        "read-only peek (before the clock)"
    } else if query.contains("WITH pe AS (") && query.contains("vals AS (") {
        "floor: outcome"
    } else if query.starts_with(r#"UPDATE "PendingExports" SET "Status" ="#)
        && query.contains(r#""LastAttemptedAt" = now() WHERE "Id" = ANY"#)
    {
        "floor: mark Executing"
    } else if query.contains("FOR KEY SHARE OF x") {
        "foreign-key checks"
    } else {
        "other"
    }
}

/// Where the server log is and how far it had been read.
pub struct LogCursor {
    path: PathBuf,
    offset: u64,
}

impl LogCursor {
    /// The end of the cluster's log now (the testkit writes it to `server.log` in the cluster's folder).
    pub fn at_end(cluster_dir: &Path) -> LogCursor {
        let path = cluster_dir.join("server.log");
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        LogCursor { path, offset }
    }

    /// The plans logged since the cursor, as JSON documents.
    pub fn plans(&self) -> Result<Vec<Value>> {
        let text = std::fs::read(&self.path)?;
        let text = String::from_utf8_lossy(&text[(self.offset as usize).min(text.len())..]);
        let mut plans = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(doc) = current.as_mut() {
                if let Some(rest) = line.strip_prefix('\t') {
                    doc.push_str(rest);
                    doc.push('\n');
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<Value>(doc) {
                    plans.push(v);
                }
                current = None;
            }
            if let Some((_, after)) = line.split_once(" plan:") {
                let mut doc = after.trim_start().to_string();
                doc.push('\n');
                current = Some(doc);
            }
        }
        if let Some(doc) = current
            && let Ok(v) = serde_json::from_str::<Value>(&doc)
        {
            plans.push(v);
        }
        Ok(plans)
    }
}

/// One part's totals over all plans of a kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Part {
    pub kind: String,
    pub part: String,
    pub executions: u64,
    pub time_ms: f64,
    pub shared_hit: i64,
    pub shared_read: i64,
    pub shared_dirtied: i64,
    pub wal_records: i64,
    pub wal_bytes: i64,
    pub wal_fpi: i64,
}

fn num(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A node's figures: time (all loops), buffers and WAL, inclusive of its children.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    time_ms: f64,
    hit: i64,
    read: i64,
    dirtied: i64,
    wal_records: i64,
    wal_bytes: i64,
    wal_fpi: i64,
}

impl Figures {
    fn of(node: &Value) -> Figures {
        Figures {
            time_ms: node
                .get("Actual Total Time")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
                * node
                    .get("Actual Loops")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0),
            hit: num(node, "Shared Hit Blocks"),
            read: num(node, "Shared Read Blocks"),
            dirtied: num(node, "Shared Dirtied Blocks"),
            wal_records: num(node, "WAL Records"),
            wal_bytes: num(node, "WAL Bytes"),
            wal_fpi: num(node, "WAL FPI"),
        }
    }

    fn minus(self, o: Figures) -> Figures {
        Figures {
            time_ms: (self.time_ms - o.time_ms).max(0.0),
            hit: (self.hit - o.hit).max(0),
            read: (self.read - o.read).max(0),
            dirtied: (self.dirtied - o.dirtied).max(0),
            wal_records: (self.wal_records - o.wal_records).max(0),
            wal_bytes: (self.wal_bytes - o.wal_bytes).max(0),
            wal_fpi: (self.wal_fpi - o.wal_fpi).max(0),
        }
    }

    fn plus(self, o: Figures) -> Figures {
        Figures {
            time_ms: self.time_ms + o.time_ms,
            hit: self.hit + o.hit,
            read: self.read + o.read,
            dirtied: self.dirtied + o.dirtied,
            wal_records: self.wal_records + o.wal_records,
            wal_bytes: self.wal_bytes + o.wal_bytes,
            wal_fpi: self.wal_fpi + o.wal_fpi,
        }
    }
}

/// The figures of the CTE scans below `node` (the first scan of a CTE runs it, so its figures
/// include that CTE's own work), not descending into other CTE subplans.
fn cte_scans(node: &Value) -> Figures {
    let mut sum = Figures::default();
    for child in node
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if child.get("Node Type").and_then(Value::as_str) == Some("CTE Scan") {
            sum = sum.plus(Figures::of(child));
        } else if child
            .get("Subplan Name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with("CTE "))
        {
            continue;
        } else {
            sum = sum.plus(cte_scans(child));
        }
    }
    sum
}

/// Adds `node`'s own work (its figures less the CTEs it read, which are counted as theirs).
///
/// A node that is itself a CTE scan (the persist's top node reads `pe_upd`) ran that CTE, whose
/// figures are counted under the CTE's name: its own are what it took beyond them.
fn add_node(part: &mut Part, node: &Value) {
    let read = match node.get("CTE Name").and_then(Value::as_str) {
        Some(name) if node.get("Node Type").and_then(Value::as_str) == Some("CTE Scan") => {
            let mut found = Vec::new();
            ctes(node, &mut found);
            found
                .into_iter()
                .filter(|(cte, _)| *cte == name)
                .fold(Figures::default(), |sum, (_, cte)| {
                    sum.plus(Figures::of(cte))
                })
        }
        _ => cte_scans(node),
    };
    let f = Figures::of(node).minus(read);
    part.executions += 1;
    part.time_ms += f.time_ms;
    part.shared_hit += f.hit;
    part.shared_read += f.read;
    part.shared_dirtied += f.dirtied;
    part.wal_records += f.wal_records;
    part.wal_bytes += f.wal_bytes;
    part.wal_fpi += f.wal_fpi;
}

/// The CTE subplans under `node` (not descending into one: its figures include its children).
fn ctes<'a>(node: &'a Value, out: &mut Vec<(&'a str, &'a Value)>) {
    if let Some(name) = node.get("Subplan Name").and_then(Value::as_str)
        && let Some(cte) = name.strip_prefix("CTE ")
    {
        out.push((cte, node));
        return;
    }
    for child in node
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        ctes(child, out);
    }
}

/// Per kind and part: the statement's top node, each CTE, each foreign-key trigger, each counted
/// without the CTEs it read.
pub fn breakdown(plans: &[Value]) -> Vec<Part> {
    let mut parts: BTreeMap<(String, String), Part> = BTreeMap::new();
    for p in plans {
        let query = p.get("Query Text").and_then(Value::as_str).unwrap_or("");
        let kind = kind(query).to_string();
        let Some(plan) = p.get("Plan") else { continue };
        let mut entry = |part: &str| {
            parts
                .entry((kind.clone(), part.to_string()))
                .or_insert_with(|| Part {
                    kind: kind.clone(),
                    part: part.to_string(),
                    ..Part::default()
                })
                .clone()
        };
        let mut updates: Vec<Part> = Vec::new();
        let mut whole = entry("(the statement's own node)");
        add_node(&mut whole, plan);
        updates.push(whole);
        let mut found = Vec::new();
        ctes(plan, &mut found);
        for (name, node) in found {
            let mut part = entry(&format!("CTE {name}"));
            add_node(&mut part, node);
            updates.push(part);
        }
        for t in p
            .get("Triggers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let relation = t.get("Relation").and_then(Value::as_str).unwrap_or("?");
            let mut part = entry(&format!("FK triggers on {relation}"));
            part.executions += t.get("Calls").and_then(Value::as_u64).unwrap_or(0);
            part.time_ms += t.get("Time").and_then(Value::as_f64).unwrap_or(0.0);
            updates.push(part);
        }
        for u in updates {
            parts.insert((u.kind.clone(), u.part.clone()), u);
        }
    }
    parts.into_values().collect()
}

/// `pg_stat_statements` totals per kind of statement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatementKind {
    pub kind: String,
    pub calls: i64,
    /// How many of the calls PostgreSQL planned (a cached generic plan is not counted).
    pub plans: i64,
    pub rows: i64,
    pub plan_ms: f64,
    pub exec_ms: f64,
    pub shared_hit: i64,
    pub shared_read: i64,
    pub wal_bytes: i64,
    pub wal_fpi: i64,
}

/// The statement totals of the current database since the last reset, by kind.
pub async fn statement_kinds(pool: &PgPool) -> Result<Vec<StatementKind>> {
    let rows = sqlx::query(
        "SELECT s.query, s.calls, s.rows, s.total_exec_time, s.shared_blks_hit, s.shared_blks_read, \
                s.wal_bytes::int8, s.wal_fpi, s.total_plan_time, s.plans \
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = current_database()",
    )
    .fetch_all(pool)
    .await?;
    let mut kinds: BTreeMap<&'static str, StatementKind> = BTreeMap::new();
    for r in rows {
        let query: String = r.try_get(0)?;
        let q = query.trim().to_ascii_uppercase();
        if ["BEGIN", "COMMIT", "ROLLBACK", "SET ", "SHOW "]
            .iter()
            .any(|k| q.starts_with(k))
            || query.contains("pg_stat_")
        {
            continue;
        }
        let k = kind(&query);
        let e = kinds.entry(k).or_insert_with(|| StatementKind {
            kind: k.to_string(),
            ..StatementKind::default()
        });
        e.calls += r.try_get::<i64, _>(1)?;
        e.rows += r.try_get::<i64, _>(2)?;
        e.exec_ms += r.try_get::<f64, _>(3)?;
        e.shared_hit += r.try_get::<i64, _>(4)?;
        e.shared_read += r.try_get::<i64, _>(5)?;
        e.wal_bytes += r.try_get::<i64, _>(6)?;
        e.wal_fpi += r.try_get::<i64, _>(7)?;
        e.plan_ms += r.try_get::<f64, _>(8)?;
        e.plans += r.try_get::<i64, _>(9)?;
    }
    Ok(kinds.into_values().collect())
}

/// One profiled child: its label, its exports, PostgreSQL's CPU, and the breakdowns.
#[derive(Debug, Clone, Serialize)]
pub struct Profiled {
    pub label: String,
    pub exports: u64,
    pub postgres_cpu_s: f64,
    pub statements: Vec<StatementKind>,
    pub parts: Vec<Part>,
    pub writes: super::dbstats::DbWrites,
    /// One logged plan per statement kind (the sixth of its kind, or its last), to read the plan's
    /// shape from.
    pub plans: BTreeMap<String, Value>,
}

/// One plan per kind: the sixth logged (past the cold start), or the last when there are fewer.
pub fn sample_plans(plans: &[Value]) -> BTreeMap<String, Value> {
    let mut seen: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    for p in plans {
        let query = p.get("Query Text").and_then(Value::as_str).unwrap_or("");
        let e = seen
            .entry(kind(query).to_string())
            .or_insert((0, Value::Null));
        if e.0 < 6 {
            e.0 += 1;
            e.1 = p.clone();
        }
    }
    seen.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// The profile as markdown.
pub fn markdown(profiles: &[Profiled]) -> String {
    let mut s = String::new();
    for p in profiles {
        let n = p.exports.max(1) as f64;
        let _ = writeln!(
            s,
            "\n#### {}: {} exports, PostgreSQL CPU {:.2} ms per export\n",
            p.label,
            p.exports,
            p.postgres_cpu_s * 1000.0 / n
        );
        let _ = writeln!(
            s,
            "| statement kind | calls | planned | plan ms per export | exec ms per export | buffer hits per export | WAL bytes per export | WAL FPI |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for k in &p.statements {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {:.3} | {:.0} | {:.0} | {} |",
                k.kind,
                k.calls,
                k.plans,
                k.plan_ms / n,
                k.exec_ms / n,
                k.shared_hit as f64 / n,
                k.wal_bytes as f64 / n,
                k.wal_fpi
            );
        }
        let _ = writeln!(
            s,
            "\n| part (auto_explain, timed) | executions | ms per export | buffer hits per export | dirtied per export | WAL bytes per export | WAL FPI |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for part in &p.parts {
            let _ = writeln!(
                s,
                "| {}: {} | {} | {:.3} | {:.1} | {:.2} | {:.0} | {} |",
                part.kind,
                part.part,
                part.executions,
                part.time_ms / n,
                part.shared_hit as f64 / n,
                part.shared_dirtied as f64 / n,
                part.wal_bytes as f64 / n,
                part.wal_fpi
            );
        }
        let _ = writeln!(
            s,
            "\n| table | inserted | updated | of which HOT | deleted |\n|---|---|---|---|---|"
        );
        for t in &p.writes.tables {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} ({:.0} %) | {} |",
                t.table,
                t.inserted,
                t.updated,
                t.hot_updated,
                if t.updated > 0 {
                    t.hot_updated as f64 * 100.0 / t.updated as f64
                } else {
                    0.0
                },
                t.deleted
            );
        }
        let _ = writeln!(
            s,
            "\nWAL: {} records, {:.1} KB per export, {} full-page images.",
            p.writes.wal_records,
            p.writes.wal_bytes as f64 / 1024.0 / n,
            p.writes.wal_fpi
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement whose top node reads a data-modifying CTE, as the persist's does: the CTE's work
    /// is counted once, under the CTE, and the top node keeps only what it took beyond it.
    #[test]
    fn a_top_cte_scan_is_not_counted_twice() {
        let plan = serde_json::json!({
            "Query Text": "WITH pe_in AS (SELECT 1) SELECT 1",
            "Plan": {
                "Node Type": "CTE Scan", "CTE Name": "pe_upd", "Actual Total Time": 10.0,
                "Actual Loops": 1, "Shared Hit Blocks": 22,
                "Plans": [
                    {"Node Type": "ModifyTable", "Subplan Name": "CTE pe_upd",
                     "Actual Total Time": 9.0, "Actual Loops": 1, "Shared Hit Blocks": 22,
                     "Plans": [{"Node Type": "CTE Scan", "CTE Name": "state",
                                "Actual Total Time": 2.0, "Actual Loops": 1,
                                "Shared Hit Blocks": 2}]},
                    {"Node Type": "Aggregate", "Subplan Name": "CTE state",
                     "Actual Total Time": 2.0, "Actual Loops": 1, "Shared Hit Blocks": 2}
                ]
            }
        });
        let parts = breakdown(&[plan]);
        let part = |name: &str| {
            parts
                .iter()
                .find(|p| p.part == name)
                .unwrap_or_else(|| panic!("no part {name}"))
        };
        let top = part("(the statement's own node)");
        assert_eq!((top.time_ms, top.shared_hit), (1.0, 0));
        let upd = part("CTE pe_upd");
        assert_eq!((upd.time_ms, upd.shared_hit), (7.0, 20));
        let state = part("CTE state");
        assert_eq!((state.time_ms, state.shared_hit), (2.0, 2));
    }
}
