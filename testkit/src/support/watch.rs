//! Staging pending exports while a watch runs, as JIM does: the seed's exports are moved aside
//! ("parked") before the watch starts, then put back a few at a time, each batch in one transaction
//! that inserts the export rows and their attribute value changes (the trigger, when installed,
//! notifies at its commit).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::seed::SeededSystem;
use sqlx::PgPool;
use uuid::Uuid;

/// Moves every pending export of `connected_system_id` (with its attribute value changes) into parking
/// tables; returns how many.
pub async fn park_all(pool: &PgPool, connected_system_id: i32) -> u64 {
    sqlx::raw_sql(
        r#"CREATE TABLE IF NOT EXISTS watch_parked_pe (LIKE "PendingExports");
           CREATE TABLE IF NOT EXISTS watch_parked_avc (LIKE "PendingExportAttributeValueChanges");"#,
    )
    .execute(pool)
    .await
    .expect("parking tables");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        r#"INSERT INTO watch_parked_avc SELECT c.* FROM "PendingExportAttributeValueChanges" c
           JOIN "PendingExports" p ON p."Id" = c."PendingExportId" WHERE p."ConnectedSystemId" = $1"#,
    )
    .bind(connected_system_id)
    .execute(&mut *tx)
    .await
    .expect("park changes");
    sqlx::query(
        r#"DELETE FROM "PendingExportAttributeValueChanges" c USING "PendingExports" p
           WHERE p."Id" = c."PendingExportId" AND p."ConnectedSystemId" = $1"#,
    )
    .bind(connected_system_id)
    .execute(&mut *tx)
    .await
    .expect("delete changes");
    sqlx::query(
        r#"INSERT INTO watch_parked_pe SELECT * FROM "PendingExports" WHERE "ConnectedSystemId" = $1"#,
    )
    .bind(connected_system_id)
    .execute(&mut *tx)
    .await
    .expect("park exports");
    let moved = sqlx::query(r#"DELETE FROM "PendingExports" WHERE "ConnectedSystemId" = $1"#)
        .bind(connected_system_id)
        .execute(&mut *tx)
        .await
        .expect("delete exports")
        .rows_affected();
    tx.commit().await.expect("commit");
    moved
}

/// Stages the parked exports `ids` again in one transaction (export rows first, then their changes, as
/// JIM's unit of work does), created now, with `NextRetryAt` = now + `not_before` when given. Returns
/// the instant right after the commit.
pub async fn stage(pool: &PgPool, ids: &[Uuid], not_before: Option<Duration>) -> Instant {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        r#"INSERT INTO "PendingExports"
           SELECT p."Id", p."ConnectedSystemId", p."ConnectedSystemObjectId", p."ChangeType", p."Status",
                  p."ErrorCount", p."MaxRetries", p."LastAttemptedAt",
                  CASE WHEN $2::float8 IS NULL THEN p."NextRetryAt"
                       ELSE now() + make_interval(secs => $2::float8) END,
                  p."LastErrorMessage", p."LastErrorStackTrace", p."SourceMetaverseObjectId",
                  p."HasUnresolvedReferences", now(), p."ProvisioningSyncRuleId",
                  p."QueuedByRunProfileExecutionItemId"
           FROM watch_parked_pe p WHERE p."Id" = ANY($1)"#,
    )
    .bind(ids)
    .bind(not_before.map(|d| d.as_secs_f64()))
    .execute(&mut *tx)
    .await
    .expect("stage exports");
    sqlx::query(
        r#"INSERT INTO "PendingExportAttributeValueChanges"
           SELECT * FROM watch_parked_avc WHERE "PendingExportId" = ANY($1)"#,
    )
    .bind(ids)
    .execute(&mut *tx)
    .await
    .expect("stage changes");
    sqlx::query(r#"DELETE FROM watch_parked_avc WHERE "PendingExportId" = ANY($1)"#)
        .bind(ids)
        .execute(&mut *tx)
        .await
        .expect("unpark changes");
    sqlx::query(r#"DELETE FROM watch_parked_pe WHERE "Id" = ANY($1)"#)
        .bind(ids)
        .execute(&mut *tx)
        .await
        .expect("unpark exports");
    tx.commit().await.expect("commit");
    Instant::now()
}

/// The seeded users' Create exports and the DNs they create, in seed order.
pub fn user_exports(seeded: &SeededSystem) -> Vec<(Uuid, String)> {
    (0..seeded.users())
        .filter_map(|i| seeded.user(i))
        .map(|u| (u.ids.pending_export, u.dn))
        .collect()
}

/// `Status` of each of `ids` (absent rows are left out).
pub async fn statuses(pool: &PgPool, ids: &[Uuid]) -> HashMap<Uuid, i32> {
    sqlx::query_as::<_, (Uuid, i32)>(
        r#"SELECT "Id", "Status" FROM "PendingExports" WHERE "Id" = ANY($1)"#,
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .expect("read statuses")
    .into_iter()
    .collect()
}

/// Waits until every one of `ids` has `Status` = `status`, for at most `limit`; true when they did.
pub async fn wait_for_status(pool: &PgPool, ids: &[Uuid], status: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        // A restarting server answers with errors for a moment; keep asking.
        let done = match sqlx::query_scalar::<_, i64>(
            r#"SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY($1) AND "Status" = $2"#,
        )
        .bind(ids)
        .bind(status)
        .fetch_one(pool)
        .await
        {
            Ok(n) => n == ids.len() as i64,
            Err(_) => false,
        };
        if done {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
