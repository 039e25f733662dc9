//! The notifying trigger a watch listens to, and what a watch asks the queue between passes.
//!
//! The trigger is the operator's to install ([`Store::install_notify_trigger`]); the engine never
//! installs it on its own. It is statement-level with transition tables, and PostgreSQL folds identical
//! notifications of one transaction into one, so a transaction staging thousands of exports for a
//! system sends that system one notification, delivered at commit (never for work that rolls back).

use sqlx::Row;

use super::{Store, sql};
use crate::error::Result;

/// The channel the trigger notifies; the payload is the `ConnectedSystemId` as decimal text.
pub const NOTIFY_CHANNEL: &str = "jim_export_pending_exports";

/// The trigger function's name (in the schema first on the installer's `search_path`).
pub const NOTIFY_FUNCTION: &str = "jim_export_notify_pending_exports";

/// The triggers the installation creates: on `"PendingExports"` inserts and updates, and on
/// `"PendingExportAttributeValueChanges"` inserts (JIM adds changes to an existing export).
pub const NOTIFY_TRIGGERS: [&str; 3] = [
    "jim_export_notify_insert",
    "jim_export_notify_update",
    "jim_export_notify_changes",
];

/// Creates (or replaces) the trigger function and the three triggers. Runs as one implicit
/// transaction. An update notifies only when a row becomes eligible (status, due time, error count or
/// retry budget changed and the row is now what a claim would take, short of the lease), so the
/// engine's own claims and persists stay silent.
pub const INSTALL_NOTIFY_TRIGGER_SQL: &str = r#"
CREATE OR REPLACE FUNCTION jim_export_notify_pending_exports() RETURNS trigger
LANGUAGE plpgsql AS $jim$
DECLARE
    system_id integer;
BEGIN
    IF TG_TABLE_NAME = 'PendingExportAttributeValueChanges' THEN
        FOR system_id IN
            SELECT DISTINCT pe."ConnectedSystemId"
            FROM new_rows n JOIN "PendingExports" pe ON pe."Id" = n."PendingExportId"
            WHERE n."Status" IN (0, 2) AND pe."Status" IN (0, 1, 4)
        LOOP
            PERFORM pg_notify('jim_export_pending_exports', system_id::text);
        END LOOP;
    ELSIF TG_OP = 'INSERT' THEN
        FOR system_id IN SELECT DISTINCT n."ConnectedSystemId" FROM new_rows n LOOP
            PERFORM pg_notify('jim_export_pending_exports', system_id::text);
        END LOOP;
    ELSE
        FOR system_id IN
            SELECT DISTINCT n."ConnectedSystemId"
            FROM new_rows n JOIN old_rows o ON o."Id" = n."Id"
            WHERE n."Status" IN (0, 1, 4)
              AND (n."NextRetryAt" IS NULL OR n."NextRetryAt" <= now())
              AND n."ErrorCount" < n."MaxRetries"
              AND NOT (n."ChangeType" IN (0, 2) AND n."Status" = 4)
              AND (n."ChangeType" <> 1 OR EXISTS (
                    SELECT 1 FROM "PendingExportAttributeValueChanges" c
                    WHERE c."PendingExportId" = n."Id" AND c."Status" IN (0, 2)))
              AND (o."Status", o."NextRetryAt", o."ErrorCount", o."MaxRetries", o."HasUnresolvedReferences")
                  IS DISTINCT FROM
                  (n."Status", n."NextRetryAt", n."ErrorCount", n."MaxRetries", n."HasUnresolvedReferences")
        LOOP
            PERFORM pg_notify('jim_export_pending_exports', system_id::text);
        END LOOP;
    END IF;
    RETURN NULL;
END
$jim$;
DROP TRIGGER IF EXISTS jim_export_notify_insert ON "PendingExports";
DROP TRIGGER IF EXISTS jim_export_notify_update ON "PendingExports";
DROP TRIGGER IF EXISTS jim_export_notify_changes ON "PendingExportAttributeValueChanges";
CREATE TRIGGER jim_export_notify_insert AFTER INSERT ON "PendingExports"
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jim_export_notify_pending_exports();
CREATE TRIGGER jim_export_notify_update AFTER UPDATE ON "PendingExports"
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jim_export_notify_pending_exports();
CREATE TRIGGER jim_export_notify_changes AFTER INSERT ON "PendingExportAttributeValueChanges"
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jim_export_notify_pending_exports();
"#;

/// Drops the triggers and the function (nothing happens when they are absent).
pub const REMOVE_NOTIFY_TRIGGER_SQL: &str = r#"
DROP TRIGGER IF EXISTS jim_export_notify_insert ON "PendingExports";
DROP TRIGGER IF EXISTS jim_export_notify_update ON "PendingExports";
DROP TRIGGER IF EXISTS jim_export_notify_changes ON "PendingExportAttributeValueChanges";
DROP FUNCTION IF EXISTS jim_export_notify_pending_exports();
"#;

/// Counts the engine's enabled triggers on the two tables.
const COUNT_TRIGGERS: &str = r#"
SELECT count(*) FROM pg_trigger t
WHERE t.tgname = ANY($1::text[]) AND t.tgenabled <> 'D'
  AND t.tgrelid IN (to_regclass('"PendingExports"'), to_regclass('"PendingExportAttributeValueChanges"'))"#;

/// What a watch learns about a system's queue between passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchProbe {
    /// Something is eligible now.
    pub due_now: bool,
    /// Seconds until the next row becomes due (a `NextRetryAt`, or a lease on an `Executing` row
    /// expiring); `None` when no waiting row will.
    pub next_due_in: Option<f64>,
}

impl Store {
    /// Installs the notifying trigger (see [`INSTALL_NOTIFY_TRIGGER_SQL`]); needs the right to create
    /// functions and triggers on JIM's tables. Idempotent.
    pub async fn install_notify_trigger(&self) -> Result<()> {
        self.count(1);
        sqlx::raw_sql(INSTALL_NOTIFY_TRIGGER_SQL)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the notifying trigger and its function. Idempotent.
    pub async fn remove_notify_trigger(&self) -> Result<()> {
        self.count(1);
        sqlx::raw_sql(REMOVE_NOTIFY_TRIGGER_SQL)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// True when all three triggers are present and enabled.
    pub async fn notify_trigger_installed(&self) -> Result<bool> {
        self.count(1);
        let names: Vec<String> = NOTIFY_TRIGGERS.iter().map(|s| s.to_string()).collect();
        let n: i64 = sqlx::query_scalar(COUNT_TRIGGERS)
            .bind(&names)
            .fetch_one(&self.pool)
            .await?;
        Ok(n == NOTIFY_TRIGGERS.len() as i64)
    }

    /// Whether `connected_system_id` has eligible rows now and when the next waiting one becomes due
    /// (rows `Executing` past `lease_seconds` count as eligible, as for a claim). One statement.
    pub async fn watch_probe(
        &self,
        connected_system_id: i32,
        lease_seconds: u64,
    ) -> Result<WatchProbe> {
        self.count(1);
        let row = sqlx::query(sql::WATCH_PROBE)
            .bind(connected_system_id)
            .bind(lease_seconds as f64)
            .fetch_one(&self.pool)
            .await?;
        Ok(WatchProbe {
            due_now: row.try_get(0)?,
            next_due_in: row.try_get(1)?,
        })
    }
}
