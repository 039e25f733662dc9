//! Shared harness for the end-to-end tests against Samba AD: a JIM database on the shared
//! PostgreSQL, the process's shared Samba AD DC, an AD-shaped seeded system under its own OU, and
//! directory/database reads for assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::samba::SambaAd;
use crate::seed::{self, DirectoryState, SeedOptions, SeededAdSystem, Template};
use crate::{JimDatabase, Postgres};
use jim_export::config::{DatabaseConfig, ExportRequest, ExportSettings, RunOptions};
use jim_export::directory::entry::{RawEntry, parse_entry};
use jim_export::engine::Engine;
use jim_export::plan::dn_key;
use jim_export::report::RunResult;
use ldap3::Scope;
use sqlx::Row;
use uuid::Uuid;

use super::engine::{Events, run_collecting};

/// The attributes the AD seed stages, in its spelling.
pub const ATTRIBUTES: &[&str] = &[
    "sAMAccountName",
    "userPrincipalName",
    "givenName",
    "sn",
    "displayName",
    "cn",
    "mail",
    "title",
    "department",
    "company",
    "otherTelephone",
    "manager",
    "userAccountControl",
    "accountExpires",
    "description",
    "groupType",
    "member",
    "managedBy",
];

/// Attributes whose values are DNs (compared by DN key).
const DN_VALUED: &[&str] = &["manager", "member", "managedBy"];

/// One test's database, the shared DC and a system seeded under `OU=<tag>` of the domain.
pub struct AdEnv {
    /// The test's own JIM database.
    pub db: JimDatabase,
    /// The process's shared Samba AD domain controller.
    pub dc: &'static SambaAd,
    /// The AD-shaped connected system seeded into `db` under `root`.
    pub seeded: SeededAdSystem,
    /// `OU=<tag>,<base DN>`: the seed's suffix; everything the test writes lives below it.
    pub root: String,
}

impl AdEnv {
    /// A fresh database with `template` seeded under `OU=<tag>` (removed first if an earlier run left
    /// it), or `None` when Samba AD cannot run here outside CI (the skip is printed).
    pub async fn new(tag: &str, template: Template) -> Option<AdEnv> {
        let dc = SambaAd::shared().await?;
        let pg = Postgres::shared().await.expect("PostgreSQL starts");
        let db = pg.jim_database().await.expect("a JIM database");
        let root = format!("OU={tag},{}", dc.base_dn());
        dc.delete_tree(&root).await.expect("clear the test's OU");
        let options =
            SeedOptions::active_directory(template, &root).with_directory("127.0.0.1", 636);
        let seeded = seed::seed_ad(&db.pool, &options).await.expect("AD seed");
        Some(AdEnv {
            db,
            dc,
            seeded,
            root,
        })
    }

    /// A request exporting the seeded system over verified LDAPS with a simple bind, the engine's
    /// defaults otherwise (dialect detected), creating containers as needed.
    pub fn request(&self) -> ExportRequest {
        ExportRequest {
            database: DatabaseConfig::new(self.db.url.clone()),
            connected_system_id: self.seeded.connected_system_id(),
            directory: self.dc.directory_config(),
            settings: ExportSettings {
                create_containers_as_needed: true,
                ..ExportSettings::default()
            },
            options: RunOptions::default(),
        }
    }

    /// Runs an export with `request`, collecting its events.
    pub async fn run(&self, engine: &Engine, request: &ExportRequest) -> (RunResult, Arc<Events>) {
        let (result, events) = run_collecting(engine, request).await;
        for item in events
            .items()
            .iter()
            .filter(|i| i.status == jim_export::report::ItemStatus::Failed)
        {
            eprintln!(
                "failed: {} {:?} {:?}",
                item.pending_export_id, item.change_type, item.error_message
            );
        }
        (result, events)
    }

    /// Every user and group below the test's OU, as raw entries keyed by DN key.
    pub async fn raw_entries(&self) -> BTreeMap<String, RawEntry> {
        let mut ldap = self.dc.admin_ldap().await.expect("admin connection");
        let mut attrs: Vec<&str> = ATTRIBUTES.to_vec();
        attrs.push("objectGUID");
        attrs.push("objectClass");
        let ldap3::SearchResult(entries, result) = ldap
            .search(
                &self.root,
                Scope::Subtree,
                "(|(objectClass=user)(objectClass=group))",
                attrs,
            )
            .await
            .expect("search the test's OU");
        let _ = ldap.unbind().await;
        if result.rc == 32 {
            return BTreeMap::new();
        }
        result.success().expect("search succeeds");
        entries
            .into_iter()
            .filter_map(|e| parse_entry(e.0))
            .map(|e| (dn_key(&e.dn), e))
            .collect()
    }

    /// The directory below the test's OU in the shape of [`DirectoryState`], normalised by
    /// [`normalise`].
    pub async fn directory(&self) -> DirectoryState {
        let mut state = DirectoryState::default();
        for (key, raw) in self.raw_entries().await {
            let mut entry = BTreeMap::new();
            for (name, values) in &raw.attributes {
                let Some(canonical) = ATTRIBUTES.iter().find(|a| a.eq_ignore_ascii_case(name))
                else {
                    continue;
                };
                let values: BTreeSet<String> = values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .map(|v| {
                        if DN_VALUED.contains(canonical) {
                            dn_key(&v)
                        } else {
                            v
                        }
                    })
                    .collect();
                entry.insert(canonical.to_string(), values);
            }
            state.entries.insert(key, entry);
        }
        state
    }

    /// The raw `objectGUID` bytes of the entry at `dn`.
    pub async fn object_guid_bytes(&self, dn: &str) -> Option<Vec<u8>> {
        let entry = self
            .dc
            .read_entry(dn, &["objectGUID"])
            .await
            .expect("read the entry")?;
        entry.values("objectGUID").first().cloned()
    }

    /// Each CSO's anchor value: CSO id → (GuidValue, StringValue).
    pub async fn anchors(&self) -> BTreeMap<Uuid, (Option<Uuid>, Option<String>)> {
        let rows = sqlx::query(
            r#"SELECT o."Id", v."GuidValue", v."StringValue" FROM "ConnectedSystemObjects" o
               JOIN "ConnectedSystemObjectAttributeValues" v
                 ON v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."ExternalIdAttributeId"
               WHERE o."ConnectedSystemId" = $1"#,
        )
        .bind(self.seeded.connected_system_id())
        .fetch_all(&self.db.pool)
        .await
        .expect("read anchors");
        rows.iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    }

    /// The CSO's DN (its secondary anchor value).
    pub async fn cso_dn(&self, cso: Uuid) -> Option<String> {
        sqlx::query_scalar(
            r#"SELECT v."StringValue" FROM "ConnectedSystemObjects" o
               JOIN "ConnectedSystemObjectAttributeValues" v
                 ON v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."SecondaryExternalIdAttributeId"
               WHERE o."Id" = $1"#,
        )
        .bind(cso)
        .fetch_optional(&self.db.pool)
        .await
        .expect("read the CSO's DN")
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

    /// Attribute-change status counts of the system: Status → count.
    pub async fn change_status_counts(&self) -> BTreeMap<i32, i64> {
        let rows = sqlx::query(
            r#"SELECT c."Status", count(*) FROM "PendingExportAttributeValueChanges" c
               JOIN "PendingExports" p ON p."Id" = c."PendingExportId"
               WHERE p."ConnectedSystemId" = $1 GROUP BY 1"#,
        )
        .bind(self.seeded.connected_system_id())
        .fetch_all(&self.db.pool)
        .await
        .expect("count changes");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }
}

/// Keys the entries by DN key and DN-valued attributes' values by DN key, so that the server's
/// spelling of escapes and case does not matter.
pub fn normalise(state: &DirectoryState) -> DirectoryState {
    let mut out = DirectoryState::default();
    for (dn, entry) in &state.entries {
        let entry = entry
            .iter()
            .map(|(name, values)| {
                let values = if DN_VALUED.contains(&name.as_str()) {
                    values.iter().map(|v| dn_key(v)).collect()
                } else {
                    values.clone()
                };
                (name.clone(), values)
            })
            .collect();
        out.entries.insert(dn_key(dn), entry);
    }
    out
}

/// Asserts that `actual` holds exactly the entries of `expected` (both normalised), each with
/// exactly the expected values of every attribute `expected` lists, and none of the staged
/// attributes `expected` leaves out.
pub fn assert_directory_matches(actual: &DirectoryState, expected: &DirectoryState) {
    let expected = normalise(expected);
    super::engine::assert_directory_matches(actual, &expected);
    for (dn, want) in &expected.entries {
        let got = &actual.entries[dn];
        for attr in [
            "otherTelephone",
            "manager",
            "member",
            "managedBy",
            "company",
        ] {
            if !want.contains_key(attr) {
                assert!(
                    !got.contains_key(attr),
                    "{dn}: unexpected {attr} {:?}",
                    got.get(attr)
                );
            }
        }
    }
}
