//! What a child cost PostgreSQL besides CPU: WAL (`pg_stat_wal`) and the row writes per table
//! (`pg_stat_user_tables`: inserts, updates, of which HOT, deletes), each as the difference of two
//! snapshots taken around the child.
//!
//! Backends publish their statistics when their transaction ends (at most once a second), at exit,
//! and, when they went idle with statistics held back, ten seconds later. A strategy that closes its
//! connections at the end of its round has published everything within a short pause; the engine
//! keeps its pool open between rounds (as in JIM's worker), so its round's second snapshot waits
//! for its idle connections to publish ([`IDLE_PUBLISH`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

use super::Result;

/// The tables an export writes.
const TABLES: [&str; 4] = [
    "PendingExports",
    "PendingExportAttributeValueChanges",
    "ConnectedSystemObjects",
    "ConnectedSystemObjectAttributeValues",
];

/// Row writes to one table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TableWrites {
    pub table: String,
    pub inserted: i64,
    pub updated: i64,
    /// Updates that stayed on their page and added no index entries.
    pub hot_updated: i64,
    pub deleted: i64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default)]
pub struct DbCounters {
    wal_records: i64,
    wal_fpi: i64,
    wal_bytes: i64,
    tables: Vec<TableWrites>,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DbWrites {
    pub wal_records: i64,
    /// Full-page images (none with `full_page_writes = off`, the `nosync` mode).
    pub wal_fpi: i64,
    pub wal_bytes: i64,
    pub tables: Vec<TableWrites>,
}

impl DbWrites {
    /// The share of updates that were HOT, over the tables written.
    pub fn hot_share(&self) -> Option<f64> {
        let (hot, all) = self
            .tables
            .iter()
            .fold((0, 0), |(h, a), t| (h + t.hot_updated, a + t.updated));
        (all > 0).then(|| hot as f64 / all as f64)
    }
}

/// Makes every open connection of `pool` publish its pending statistics (an idle backend otherwise
/// holds them for up to ten seconds, and the seeding's writes would be counted in the next child's).
async fn publish(pool: &PgPool) -> Result<()> {
    let mut held = Vec::new();
    for _ in 0..pool.size() {
        let mut conn = pool.acquire().await?;
        // Flushed when the statement ends, before the backend waits for the next one.
        sqlx::query("SELECT pg_stat_force_next_flush()")
            .execute(&mut *conn)
            .await?;
        held.push(conn);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Reads the counters now.
pub async fn snapshot(pool: &PgPool) -> Result<DbCounters> {
    publish(pool).await?;
    let wal = sqlx::query("SELECT wal_records, wal_fpi, wal_bytes::int8 FROM pg_stat_wal")
        .fetch_one(pool)
        .await?;
    let rows = sqlx::query(
        "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables \
         WHERE relname = ANY($1)",
    )
    .bind(TABLES)
    .fetch_all(pool)
    .await?;
    let mut tables = Vec::new();
    for r in rows {
        tables.push(TableWrites {
            table: r.try_get(0)?,
            inserted: r.try_get(1)?,
            updated: r.try_get(2)?,
            hot_updated: r.try_get(3)?,
            deleted: r.try_get(4)?,
        });
    }
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(DbCounters {
        wal_records: wal.try_get(0)?,
        wal_fpi: wal.try_get(1)?,
        wal_bytes: wal.try_get(2)?,
        tables,
    })
}

/// How long an idle backend may hold statistics back: PostgreSQL's `PGSTAT_IDLE_INTERVAL` (10 s
/// since PostgreSQL 15), plus a margin. Without this wait the engine's follow-ups showed 0.1 KB of
/// WAL per export and no HOT updates, and its initial rounds too little WAL.
const IDLE_PUBLISH: Duration = Duration::from_millis(10_500);

/// The writes since `before`, after the pause that lets exited backends report, or, when the
/// round's connections stay open (`idle_connections`), idle ones ([`IDLE_PUBLISH`]).
pub async fn since(pool: &PgPool, before: &DbCounters, idle_connections: bool) -> Result<DbWrites> {
    let pause = if idle_connections {
        IDLE_PUBLISH
    } else {
        Duration::from_millis(700)
    };
    tokio::time::sleep(pause).await;
    let after = snapshot(pool).await?;
    let tables = after
        .tables
        .iter()
        .map(|a| {
            let b = before
                .tables
                .iter()
                .find(|b| b.table == a.table)
                .cloned()
                .unwrap_or_default();
            TableWrites {
                table: a.table.clone(),
                inserted: a.inserted - b.inserted,
                updated: a.updated - b.updated,
                hot_updated: a.hot_updated - b.hot_updated,
                deleted: a.deleted - b.deleted,
            }
        })
        .collect();
    Ok(DbWrites {
        wal_records: after.wal_records - before.wal_records,
        wal_fpi: after.wal_fpi - before.wal_fpi,
        wal_bytes: after.wal_bytes - before.wal_bytes,
        tables,
    })
}
