//! Shared harness for the engine's end-to-end tests: a JIM database on the shared PostgreSQL, a
//! throwaway slapd, a seeded connected system, requests for it, and directory/database assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::seed::{self, DirectoryState, SeedOptions, SeededSystem, Template};
use crate::slapd::{self, Slapd, SlapdOptions};
use crate::{JimDatabase, Postgres};
use jim_export::config::{
    DatabaseConfig, DirectoryConfig, ExportRequest, ExportSettings, RunOptions,
};
use jim_export::engine::{CancellationToken, Engine, LogRecord, RunListener};
use jim_export::report::{BatchReport, ProgressEvent, RunResult};
use ldap3::{Scope, SearchEntry};
use sqlx::Row;
use uuid::Uuid;

/// One test's servers and seeded system.
pub struct Env {
    /// The test's own JIM database.
    pub db: JimDatabase,
    /// The test's own slapd.
    pub slapd: Slapd,
    /// The connected system seeded into `db` for `slapd`.
    pub seeded: SeededSystem,
}

impl Env {
    /// A fresh database with `template` seeded for a fresh slapd.
    pub async fn new(template: Template) -> Env {
        Self::with(SeedOptions::new(template), SlapdOptions::default()).await
    }

    /// A fresh database and slapd, seeded with `options` (suffix and directory filled in).
    pub async fn with(options: SeedOptions, slapd_options: SlapdOptions) -> Env {
        let pg = Postgres::shared().await.expect("PostgreSQL starts");
        let db = pg.jim_database().await.expect("a JIM database");
        let slapd = Slapd::start(slapd_options).await.expect("slapd starts");
        let (host, port) = host_port(slapd.ldap_url());
        let options = options
            .with_suffix(slapd.suffix())
            .with_directory(host, port);
        let seeded = seed::seed(&db.pool, &options).await.expect("seed");
        Env { db, slapd, seeded }
    }

    /// A request exporting the seeded system to the slapd over plain LDAP.
    pub fn request(&self) -> ExportRequest {
        ExportRequest {
            database: DatabaseConfig::new(self.db.url.clone()),
            connected_system_id: self.seeded.connected_system_id(),
            directory: DirectoryConfig::simple(
                self.slapd.ldap_url(),
                self.slapd.admin_dn(),
                self.slapd.admin_password(),
            )
            .allowing_password_without_tls(),
            settings: ExportSettings::default(),
            options: RunOptions::default(),
        }
    }

    /// Runs an export with `request`, collecting its events.
    pub async fn run(&self, engine: &Engine, request: &ExportRequest) -> (RunResult, Arc<Events>) {
        run_collecting(engine, request).await
    }

    /// The directory's content under the suffix's containers, in the shape of [`DirectoryState`].
    pub async fn directory(&self) -> DirectoryState {
        read_directory(&self.slapd).await
    }

    /// Status counts of the system's pending exports: (Status, ChangeType) → count.
    pub async fn pending_export_counts(&self) -> BTreeMap<(i32, i32), i64> {
        let rows = sqlx::query(
            r#"SELECT "Status", "ChangeType", count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 GROUP BY 1, 2"#,
        )
        .bind(self.seeded.connected_system_id())
        .fetch_all(&self.db.pool)
        .await
        .expect("count pending exports");
        rows.iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect()
    }

    /// Locks the last `count` pending exports (in claim order) in an open transaction: the engine
    /// claims with `FOR UPDATE SKIP LOCKED`, so no run takes them while the transaction lives. Tests
    /// that interrupt runs hold some, so that the runs cannot drain the queue by chance however late
    /// the interruption lands. Roll the transaction back to release them.
    pub async fn hold_rows(
        &self,
        count: i64,
    ) -> (sqlx::Transaction<'static, sqlx::Postgres>, Vec<Uuid>) {
        let mut tx = self.db.pool.begin().await.expect("a transaction");
        let ids: Vec<Uuid> = sqlx::query_scalar(
            r#"SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 0
               ORDER BY "CreatedAt" DESC, "Id" DESC LIMIT $2 FOR UPDATE"#,
        )
        .bind(self.seeded.connected_system_id())
        .bind(count)
        .fetch_all(&mut *tx)
        .await
        .expect("lock rows");
        assert_eq!(ids.len() as i64, count, "rows to hold");
        (tx, ids)
    }

    /// Clears every retry time of the system's rows, so the next run takes what an earlier one
    /// deferred or failed (JIM's backoff is minutes; a test cannot wait that long).
    pub async fn retry_now(&self) {
        retry_now(&self.db.pool, self.seeded.connected_system_id()).await;
    }

    /// Rows left `Executing`.
    pub async fn executing(&self) -> i64 {
        sqlx::query_scalar(r#"SELECT count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 2"#)
            .bind(self.seeded.connected_system_id())
            .fetch_one(&self.db.pool)
            .await
            .expect("count executing")
    }
}

/// Clears every retry time of connected system `connected_system_id`'s rows, so the next run takes
/// what an earlier one deferred or failed.
pub async fn retry_now(pool: &sqlx::PgPool, connected_system_id: i32) {
    sqlx::query(
        r#"UPDATE "PendingExports" SET "NextRetryAt" = NULL WHERE "ConnectedSystemId" = $1"#,
    )
    .bind(connected_system_id)
    .execute(pool)
    .await
    .expect("clear retry times");
}

/// `ldap://h:p` → (h, p).
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (h, p) = authority.rsplit_once(':').expect("a port");
    (h.to_string(), p.parse().expect("a numeric port"))
}

/// Reads every entry below the suffix's `ou=People`, `ou=Groups` and `ou=Alumni` (not the OUs
/// themselves), keeping the attributes the seed's expected state uses.
pub async fn read_directory(slapd: &Slapd) -> DirectoryState {
    let ldap = slapd.admin_ldap().await.expect("admin connection");
    read_directory_with(ldap, slapd.suffix()).await
}

/// [`read_directory`] over an admin connection to any directory with the seed's layout under
/// `suffix` (unbound when done).
pub async fn read_directory_with(mut ldap: ldap3::Ldap, suffix: &str) -> DirectoryState {
    let mut state = DirectoryState::default();
    for ou in ["People", "Groups", "Alumni"] {
        let base = format!("ou={ou},{suffix}");
        let (entries, _) = match ldap
            .search(&base, Scope::OneLevel, "(objectClass=*)", vec!["*"])
            .await
        {
            Ok(r) => match r.success() {
                Ok(ok) => ok,
                Err(_) => continue, // the container does not exist
            },
            Err(e) => panic!("search {base}: {e}"),
        };
        for raw in entries {
            let entry = SearchEntry::construct(raw);
            let mut attrs = BTreeMap::new();
            for (name, values) in entry.attrs {
                let name = canonical_attribute(&name);
                attrs.insert(name, values.into_iter().collect::<BTreeSet<String>>());
            }
            state.entries.insert(entry.dn, attrs);
        }
    }
    let _ = ldap.unbind().await;
    state
}

/// The attributes the seed writes, spelled as the seed spells them.
pub const SEED_ATTRIBUTES: &[&str] = &[
    "objectClass",
    "uid",
    "employeeNumber",
    "givenName",
    "sn",
    "displayName",
    "cn",
    "mail",
    "title",
    "departmentNumber",
    "o",
    "manager",
    "description",
    "member",
    "uniqueMember",
];

/// The seed's spelling of an attribute name (slapd answers with the schema's).
fn canonical_attribute(name: &str) -> String {
    SEED_ATTRIBUTES
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |k| k.to_string())
}

/// Asserts that `actual` holds exactly the entries of `expected`, each with exactly the expected values
/// of every attribute `expected` lists (other operational or extra attributes are ignored).
pub fn assert_directory_matches(actual: &DirectoryState, expected: &DirectoryState) {
    let actual_dns: BTreeSet<&String> = actual.entries.keys().collect();
    let expected_dns: BTreeSet<&String> = expected.entries.keys().collect();
    let missing: Vec<_> = expected_dns.difference(&actual_dns).take(5).collect();
    let extra: Vec<_> = actual_dns.difference(&expected_dns).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "entries differ: missing {missing:?}, unexpected {extra:?}"
    );
    for (dn, want) in &expected.entries {
        let got = &actual.entries[dn];
        for (attr, values) in want {
            let have = got.get(attr).cloned().unwrap_or_default();
            assert_eq!(&have, values, "{dn}: attribute {attr}");
        }
    }
}

/// Adds to `pending_export` an Add of a reference in `attribute` to an MVO that has no CSO in any
/// system (JIM's `UnresolvedReferenceValue`), so the export can write everything else but that value.
/// Returns the MVO's id.
pub async fn add_unresolvable_reference(
    pool: &sqlx::PgPool,
    pending_export: Uuid,
    attribute: i32,
) -> Uuid {
    let mvo = Uuid::new_v4();
    sqlx::query(
        r#"INSERT INTO "PendingExportAttributeValueChanges" ("Id", "PendingExportId", "AttributeId", "UnresolvedReferenceValue", "ChangeType", "Status", "ExportAttemptCount")
           VALUES ($1, $2, $3, $4, 0, 0, 0)"#,
    )
    .bind(Uuid::new_v4())
    .bind(pending_export)
    .bind(attribute)
    .bind(mvo.to_string())
    .execute(pool)
    .await
    .unwrap();
    mvo
}

/// Every event a run reported.
#[derive(Default)]
pub struct Events {
    /// Progress events, in the order they came.
    pub progress: Mutex<Vec<ProgressEvent>>,
    /// Batch reports, in the order they came.
    pub batches: Mutex<Vec<BatchReport>>,
    /// Log records, in the order they came.
    pub logs: Mutex<Vec<LogRecord>>,
}

impl RunListener for Events {
    fn on_progress(&self, event: &ProgressEvent) {
        self.progress.lock().unwrap().push(event.clone());
    }
    fn on_batch(&self, report: &BatchReport) {
        self.batches.lock().unwrap().push(report.clone());
    }
    fn on_log(&self, record: &LogRecord) {
        self.logs.lock().unwrap().push(record.clone());
    }
}

impl Events {
    /// All report items, in report order.
    pub fn items(&self) -> Vec<jim_export::report::ReportItem> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.items.clone())
            .collect()
    }
}

/// Reads one entry's attribute values.
pub async fn entry_values(slapd: &Slapd, dn: &str, attr: &str) -> Option<BTreeSet<String>> {
    let mut ldap = slapd.admin_ldap().await.expect("admin connection");
    let entry = slapd::read_entry(&mut ldap, dn, &[attr])
        .await
        .expect("read entry")?;
    Some(
        entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.iter().cloned().collect())
            .unwrap_or_default(),
    )
}

/// Runs an export with `request` to its end (it must not fail), collecting its events.
pub async fn run_collecting(engine: &Engine, request: &ExportRequest) -> (RunResult, Arc<Events>) {
    let events = Arc::new(Events::default());
    let result = engine
        .run_export(request, events.clone(), CancellationToken::new())
        .await
        .expect("the export runs");
    (result, events)
}
