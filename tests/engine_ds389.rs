//! The engine against a real 389 Directory Server (the testkit's [`Ds389`]: 389-ds-base 2.3 with
//! the memberOf, referential-integrity and entryUUID plugins on, as 389 deployments commonly run
//! them), reached over StartTLS verified against the test CA and bound as the Directory Manager
//! unless a test says otherwise.
//!
//! The same checks as for slapd and Samba: the dialect detected from the root DSE, the initial
//! provisioning and a follow-up round (updates, renames, moves, manager and membership changes,
//! deletes) converging to exactly the expected directory, anchors from RFC 4527 post-read
//! (`entryUUID`, or `nsUniqueId` where the object type's external id is that), big groups written
//! in chunks, 389's refusals (a read-only database, a schema violation, a password policy) mapped
//! to JIM's outcomes, a crash with the operator's release and a stranger where the recovery goes,
//! and the server killed mid-run.
//!
//! What 389 does differently from slapd, and what the comparisons allow for: it returns an entry's
//! object classes with their superclasses (`inetOrgPerson` → `organizationalPerson`, `person`,
//! `top`) and memberOf adds `nsMemberOf` to each member; referential integrity rewrites `member`
//! values when a member is renamed or moved and removes them when it is deleted (slapd's test
//! directory keeps the old DN); DNs it rewrote come back in its own case.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jim_export::config::{
    Concurrency, DatabaseConfig, DeleteBehaviour, Dialect, DirectoryConfig, DirectoryTlsMode,
    ExportRequest, ExportSettings, RunOptions,
};
use jim_export::engine::{CancellationToken, Engine, LogLevel};
use jim_export::model::PendingExportChangeType;
use jim_export::report::{ItemStatus, RunResult};
use jim_export_testkit::ds389::{Ds389, Ds389Options};
use jim_export_testkit::seed::{
    self, DirectoryState, FollowUps, SeedOptions, SeededSystem, StagedFollowUps, Template,
};
use jim_export_testkit::support;
use jim_export_testkit::support::crash::{ChildRun, EXECUTING, wait_for};
use jim_export_testkit::support::engine::{
    Events, SEED_ATTRIBUTES, host_port, read_directory_with,
};
use jim_export_testkit::{JimDatabase, LatencyProxy, Postgres};
use ldap3::{Ldap, Mod, Scope, SearchEntry};
use sqlx::Row;
use uuid::Uuid;

/// Not a test on its own: the export run the crash test starts in a child process and kills.
#[test]
#[ignore = "the export run the crash test starts in a child process and kills"]
fn crash_child() {
    support::crash::child_main();
}

/// Object classes 389 returns beside the ones written: superclasses and memberOf's auxiliary class.
const ADDED_CLASSES: [&str; 4] = ["top", "person", "organizationalPerson", "nsMemberOf"];
/// Attributes whose values are DNs (compared without regard to case).
const DN_VALUED: [&str; 3] = ["member", "uniqueMember", "manager"];
/// `PendingExportStatus.Pending`.
const PENDING: i32 = 0;
/// `PendingExportStatus.Exported`.
const EXPORTED: i32 = 4;

/// One test's servers: a JIM database, a 389 server and the seeded system.
struct Env389 {
    db: JimDatabase,
    ds: Ds389,
    seeded: SeededSystem,
}

impl Env389 {
    /// `None` (after a printed skip) where 389 cannot run and `CI` is unset.
    async fn start(template: Template) -> Option<Env389> {
        let ds = Ds389::start_or_skip(Ds389Options::default()).await?;
        let pg = Postgres::shared().await.expect("PostgreSQL starts");
        let db = pg.jim_database().await.expect("a JIM database");
        let (host, port) = host_port(ds.ldap_url());
        let options = SeedOptions::new(template)
            .with_suffix(ds.suffix())
            .with_directory(host, port);
        let seeded = seed::seed(&db.pool, &options).await.expect("seed");
        Some(Env389 { db, ds, seeded })
    }

    /// StartTLS to `url` verified against the test CA, bound as the Directory Manager; ou=Alumni is
    /// created when a move needs it.
    fn request_to(&self, url: &str) -> ExportRequest {
        let mut directory =
            DirectoryConfig::simple(url, self.ds.admin_dn(), self.ds.admin_password());
        directory.tls.mode = Some(DirectoryTlsMode::StartTls);
        directory.tls.ca_pem = Some(self.ds.ca_pem().to_string());
        ExportRequest {
            database: DatabaseConfig::new(self.db.url.clone()),
            connected_system_id: self.seeded.connected_system_id(),
            directory,
            settings: ExportSettings {
                create_containers_as_needed: true,
                ..ExportSettings::default()
            },
            options: RunOptions::default(),
        }
    }

    fn request(&self) -> ExportRequest {
        self.request_to(self.ds.ldap_url())
    }

    async fn run(&self, engine: &Engine, request: &ExportRequest) -> (RunResult, Arc<Events>) {
        support::engine::run_collecting(engine, request).await
    }

    async fn admin(&self) -> Ldap {
        self.ds.admin_ldap().await.expect("an admin connection")
    }

    async fn directory(&self) -> DirectoryState {
        read_directory_with(self.admin().await, self.ds.suffix()).await
    }

    /// (Status, ChangeType) → count for the system's pending exports.
    async fn counts(&self) -> BTreeMap<(i32, i32), i64> {
        sqlx::query(r#"SELECT "Status", "ChangeType", count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 GROUP BY 1, 2"#)
            .bind(self.seeded.connected_system_id())
            .fetch_all(&self.db.pool)
            .await
            .expect("count pending exports")
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect()
    }

    async fn status_of(&self, pending_export: Uuid) -> Option<i32> {
        sqlx::query_scalar(r#"SELECT "Status" FROM "PendingExports" WHERE "Id" = $1"#)
            .bind(pending_export)
            .fetch_optional(&self.db.pool)
            .await
            .expect("read a status")
    }

    /// Clears every retry time, so the next run takes what an earlier one deferred or failed.
    async fn retry_now(&self) {
        jim_export_testkit::support::engine::retry_now(
            &self.db.pool,
            self.seeded.connected_system_id(),
        )
        .await;
    }

    /// The anchor JIM holds for each created CSO: DN (lower case) → anchor text.
    async fn anchors(&self) -> BTreeMap<String, String> {
        sqlx::query(
            r#"SELECT lower(d."StringValue"), a."StringValue"
               FROM "ConnectedSystemObjects" o
               JOIN "ConnectedSystemObjectAttributeValues" a ON a."ConnectedSystemObjectId" = o."Id" AND a."AttributeId" = o."ExternalIdAttributeId"
               JOIN "ConnectedSystemObjectAttributeValues" d ON d."ConnectedSystemObjectId" = o."Id" AND d."AttributeId" = o."SecondaryExternalIdAttributeId"
               WHERE o."ConnectedSystemId" = $1 AND a."StringValue" IS NOT NULL"#,
        )
        .bind(self.seeded.connected_system_id())
        .fetch_all(&self.db.pool)
        .await
        .expect("read anchors")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    /// `attribute` of every entry below the suffix: DN (lower case) → first value.
    async fn directory_values(&self, attribute: &str) -> BTreeMap<String, String> {
        let mut ldap = self.admin().await;
        let (entries, _) = ldap
            .search(
                self.ds.suffix(),
                Scope::Subtree,
                "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
                vec![attribute],
            )
            .await
            .and_then(|r| r.success())
            .expect("search the suffix");
        let _ = ldap.unbind().await;
        entries
            .into_iter()
            .map(SearchEntry::construct)
            .filter_map(|e| {
                let value = e
                    .attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
                    .and_then(|(_, v)| v.first().cloned())?;
                Some((e.dn.to_lowercase(), value))
            })
            .collect()
    }
}

/// `state` as the comparison sees it: DNs and DN values lower-cased; in the directory's state
/// (`expected` given), the object classes 389 adds removed unless the expected entry has them.
fn normalised(state: &DirectoryState, expected: Option<&DirectoryState>) -> DirectoryState {
    let mut out = DirectoryState::default();
    for (dn, entry) in &state.entries {
        let mut entry = entry.clone();
        for attribute in DN_VALUED {
            if let Some(values) = entry.get_mut(attribute) {
                *values = values.iter().map(|v| v.to_lowercase()).collect();
            }
        }
        let dn = dn.to_lowercase();
        if let (Some(classes), Some(expected)) = (entry.get_mut("objectClass"), expected) {
            let written = expected
                .entries
                .get(&dn)
                .and_then(|e| e.get("objectClass"))
                .cloned()
                .unwrap_or_default();
            classes.retain(|c| {
                written.iter().any(|w| w.eq_ignore_ascii_case(c))
                    || !ADDED_CLASSES.iter().any(|a| a.eq_ignore_ascii_case(c))
            });
        }
        out.entries.insert(dn, entry);
    }
    out
}

/// Asserts that the directory holds exactly the expected entries with exactly their values, as 389
/// stores them (see [`normalised`]).
fn assert_matches(actual: &DirectoryState, expected: &DirectoryState) {
    let expected = normalised(expected, None);
    let actual = normalised(actual, Some(&expected));
    let missing: Vec<_> = expected
        .entries
        .keys()
        .filter(|dn| !actual.entries.contains_key(*dn))
        .take(5)
        .collect();
    let extra: Vec<_> = actual
        .entries
        .keys()
        .filter(|dn| !expected.entries.contains_key(*dn))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "entries differ: missing {missing:?}, unexpected {extra:?}"
    );
    for (dn, want) in &expected.entries {
        let got = &actual.entries[dn];
        for (attribute, values) in want {
            let have = got.get(attribute).cloned().unwrap_or_default();
            assert_eq!(&have, values, "{dn}: attribute {attribute}");
        }
        // What the seed writes and the expectation no longer lists (a last member removed, a
        // manager cleared, a placeholder member) must be gone from the entry too.
        for attribute in SEED_ATTRIBUTES {
            if !want.contains_key(*attribute) {
                assert!(
                    !got.contains_key(*attribute),
                    "{dn}: attribute {attribute} should be absent, is {:?}",
                    got.get(*attribute)
                );
            }
        }
    }
}

/// What referential integrity does beside the follow-ups: `member` values of renamed or moved
/// entries follow them, those of deleted entries go.
fn with_referential_integrity(expected: &mut DirectoryState, staged: &StagedFollowUps) {
    let mut moved: BTreeMap<String, String> = BTreeMap::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    for e in &staged.exports {
        if e.change_type == PendingExportChangeType::Delete {
            deleted.insert(e.dn.to_lowercase());
        } else if let Some(to) = e.final_dn().filter(|to| *to != e.dn) {
            moved.insert(e.dn.to_lowercase(), to.to_string());
        }
    }
    for entry in expected.entries.values_mut() {
        if let Some(members) = entry.get_mut("member") {
            *members = members
                .iter()
                .filter(|m| !deleted.contains(&m.to_lowercase()))
                .map(|m| moved.get(&m.to_lowercase()).cloned().unwrap_or(m.clone()))
                .collect();
        }
    }
}

/// Every member of every group in `state` has that group in its `memberOf` (the memberOf plugin
/// followed what the engine wrote), and nobody has a group it is not a member of.
async fn assert_member_of_agrees(env: &Env389, state: &DirectoryState) {
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (dn, entry) in &state.entries {
        for member in entry.get("member").into_iter().flatten() {
            want.entry(member.to_lowercase())
                .or_default()
                .insert(dn.to_lowercase());
        }
    }
    let mut ldap = env.admin().await;
    let (entries, _) = ldap
        .search(
            env.ds.suffix(),
            Scope::Subtree,
            "(objectClass=inetOrgPerson)",
            vec!["memberOf"],
        )
        .await
        .and_then(|r| r.success())
        .expect("search users");
    let _ = ldap.unbind().await;
    let mut checked = 0;
    for entry in entries.into_iter().map(SearchEntry::construct) {
        let have: BTreeSet<String> = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
            .flat_map(|(_, v)| v.iter().map(|g| g.to_lowercase()))
            .collect();
        let expected = want.remove(&entry.dn.to_lowercase()).unwrap_or_default();
        assert_eq!(have, expected, "memberOf of {}", entry.dn);
        checked += have.len();
    }
    assert!(
        want.is_empty(),
        "members that are no user in the directory: {:?}",
        want.keys().take(5).collect::<Vec<_>>()
    );
    assert!(checked > 0, "some memberships were checked");
}

fn failures(events: &Events) -> Vec<String> {
    events
        .items()
        .iter()
        .filter(|i| i.status == ItemStatus::Failed)
        .map(|i| i.error_message.clone().unwrap_or_default())
        .collect()
}

/// The dialect comes from 389's root DSE; the initial provisioning writes every object over
/// StartTLS with its values and memberships; each anchor is the entry's `entryUUID`, read by
/// post-read (no read-back searches); memberOf agrees with what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_provisioning_on_389() {
    let Some(env) = Env389::start(Template::Small).await else {
        return;
    };
    let engine = Engine::new();
    let (result, events) = env.run(&engine, &env.request()).await;
    let objects = env.seeded.counts.pending_exports;
    assert_eq!(
        result.dialect,
        Some(Dialect::Ds389),
        "detected from the root DSE"
    );
    assert_eq!(
        (
            result.success_count,
            result.failed_count,
            result.deferred_count
        ),
        (objects, 0, 0),
        "{} {:?}",
        result.message,
        failures(&events)
    );
    let expected = env.seeded.expected_directory().unwrap();
    let actual = env.directory().await;
    assert_matches(&actual, &expected);
    assert_member_of_agrees(&env, &expected).await;

    let anchors = env.anchors().await;
    let uuids = env.directory_values("entryUUID").await;
    assert_eq!(anchors.len() as u64, objects, "every CSO has its anchor");
    for (dn, anchor) in &anchors {
        assert_eq!(
            Some(anchor),
            uuids.get(dn),
            "{dn}: the anchor is its entryUUID"
        );
    }
    assert!(
        result.metrics.operations.search <= 2,
        "anchors come back with the Add (post-read), not by reading each entry: {} searches \
         (the containers' checks: ou=People and ou=Groups)",
        result.metrics.operations.search
    );
    let logs = events.logs.lock().unwrap();
    assert!(
        !logs.iter().any(|l| l.level == LogLevel::Error),
        "no errors: {:?}",
        logs.iter()
            .filter(|l| l.level == LogLevel::Error)
            .map(|l| &l.message)
            .collect::<Vec<_>>()
    );
}

/// A follow-up round converges with memberOf and referential integrity on: renames and moves
/// (which the plugin follows in `member`), deletes of members (whose `member` values the plugin
/// removes before the engine's own removals reach the group: those then find nothing to remove and
/// are done), updates, manager and membership changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_converge_beside_memberof_and_referential_integrity() {
    let Some(env) = Env389::start(Template::Small).await else {
        return;
    };
    let engine = Engine::new();
    let request = env.request();
    let (first, events) = env.run(&engine, &request).await;
    assert_eq!(first.failed_count, 0, "{:?}", failures(&events));
    seed::confirm_exported(&env.db.pool, &env.seeded)
        .await
        .unwrap();
    let follow_ups = FollowUps {
        seed: 7,
        attribute_updates: 6,
        renames: 4,
        moves: 3,
        manager_changes: 4,
        member_add_groups: 4,
        member_remove_groups: 4,
        members_per_group: 4,
        user_deletes: 4,
        group_deletes: 1,
        ..FollowUps::default()
    };
    let staged = seed::stage_follow_ups(&env.db.pool, &env.seeded, &follow_ups)
        .await
        .unwrap();
    let (second, events) = env.run(&engine, &request).await;
    assert_eq!(
        (second.success_count as usize, second.failed_count),
        (staged.pending_exports(), 0),
        "{} {:?}",
        second.message,
        failures(&events)
    );
    assert_eq!(
        second.created_container_external_ids,
        vec![format!("ou=Alumni,{}", env.ds.suffix())]
    );
    let mut expected = env.seeded.expected_directory().unwrap();
    staged.apply(&mut expected);
    with_referential_integrity(&mut expected, &staged);
    assert_matches(&env.directory().await, &expected);
    assert_member_of_agrees(&env, &expected).await;
    let counts = env.counts().await;
    assert!(
        counts.keys().all(|(status, _)| *status == EXPORTED),
        "{counts:?}"
    );
}

/// Deletes as disables, with 389's own account lock as the disable attribute (`nsAccountLock`,
/// which JIM's connector sets to `TRUE` like any non-AD disable attribute): the entries stay, are
/// locked, and 389 refuses their bind from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_as_disables_lock_the_accounts() {
    let Some(env) = Env389::start(Template::Micro).await else {
        return;
    };
    let engine = Engine::new();
    let mut request = env.request();
    request.settings.delete_behaviour = Some(DeleteBehaviour::Disable);
    request.settings.disable_attribute = "nsAccountLock".into();
    let (first, events) = env.run(&engine, &request).await;
    assert_eq!(first.failed_count, 0, "{:?}", failures(&events));
    seed::confirm_exported(&env.db.pool, &env.seeded)
        .await
        .unwrap();
    let staged = seed::stage_follow_ups(
        &env.db.pool,
        &env.seeded,
        &FollowUps {
            seed: 3,
            user_deletes: 2,
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let leavers: Vec<String> = staged
        .exports
        .iter()
        .filter(|e| e.change_type == PendingExportChangeType::Delete)
        .map(|e| e.dn.clone())
        .collect();
    assert_eq!(leavers.len(), 2);
    // The leavers can bind until they are disabled.
    let password = "a-leavers-password-1";
    {
        let mut ldap = env.admin().await;
        for dn in &leavers {
            ldap.modify(
                dn,
                vec![Mod::Replace("userPassword", HashSet::from([password]))],
            )
            .await
            .and_then(|r| r.success())
            .expect("a password for the leaver");
        }
        let _ = ldap.unbind().await;
    }
    let url = env.ds.ldap_url().to_string();
    let bind = |dn: String| {
        let url = url.clone();
        async move {
            let (conn, mut ldap) = ldap3::LdapConnAsync::new(&url).await.expect("a connection");
            ldap3::drive!(conn);
            let rc = ldap.simple_bind(&dn, password).await.expect("an answer").rc;
            let _ = ldap.unbind().await;
            rc
        }
    };
    assert_eq!(bind(leavers[0].clone()).await, 0, "the leaver binds before");

    let (second, events) = env.run(&engine, &request).await;
    assert_eq!(
        (second.success_count as usize, second.failed_count),
        (staged.pending_exports(), 0),
        "{:?}",
        failures(&events)
    );
    for dn in &leavers {
        let entry = env
            .ds
            .read_entry(dn, &["nsAccountLock"])
            .await
            .unwrap()
            .expect("a disabled entry stays");
        let lock: Vec<String> = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("nsAccountLock"))
            .flat_map(|(_, v)| v.clone())
            .collect();
        assert_eq!(lock, vec!["TRUE".to_string()], "{dn}");
        // 389's answer to an inactivated account: unwillingToPerform ("Account inactivated").
        assert_eq!(
            bind(dn.clone()).await,
            53,
            "389 refuses a locked account's bind: {dn}"
        );
    }
}

/// Big groups go in chunks (an Add and member Modifies of 10), every member lands once, and the
/// placeholder member is never needed: each group is created with real members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_groups_are_written_in_chunks() {
    let Some(env) = Env389::start(Template::Small).await else {
        return;
    };
    let mut request = env.request();
    request.settings.modify_batch_size = 10;
    let big = (0..env.seeded.groups())
        .filter_map(|g| env.seeded.group(g))
        .max_by_key(|g| g.member_count())
        .expect("groups");
    assert!(big.member_count() >= 40, "{} members", big.member_count());
    let (result, events) = env.run(&Engine::new(), &request).await;
    assert_eq!(result.failed_count, 0, "{:?}", failures(&events));
    // Each group's Add carries its first 10 members, a Modify each further 10.
    let chunks: u64 = (0..env.seeded.groups())
        .filter_map(|g| env.seeded.group(g))
        .map(|g| g.member_count().div_ceil(10).saturating_sub(1) as u64)
        .sum();
    assert_eq!(
        result.metrics.operations.modify, chunks,
        "one Modify per further chunk of 10: {:?}",
        result.metrics.operations
    );
    let expected = env.seeded.expected_directory().unwrap();
    let actual = env.directory().await;
    assert_matches(&actual, &expected);
    assert!(
        !actual
            .entries
            .values()
            .flat_map(|e| e.get("member").into_iter().flatten())
            .any(|m| m.eq_ignore_ascii_case("cn=placeholder")),
        "no placeholder member is left"
    );
    assert_member_of_agrees(&env, &expected).await;
}

/// Groups in the `groupOfUniqueNames` shape (`uniqueMember`), which 389's schema has beside
/// `groupOfNames`: written and chunked the same way, and memberOf (configured on `uniqueMember` too)
/// follows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_unique_names() {
    let Some(env) = Env389::start(Template::Small).await else {
        return;
    };
    let biggest = (0..env.seeded.groups())
        .filter_map(|g| env.seeded.group(g))
        .map(|g| g.member_count())
        .max()
        .unwrap_or(0);
    assert!(
        biggest >= 40,
        "a group takes several chunks: {biggest} members"
    );
    let member = env.seeded.group_attribute_id("member").unwrap();
    let class = env.seeded.group_attribute_id("objectClass").unwrap();
    for sql in [
        r#"UPDATE "ConnectedSystemObjectTypes" SET "Name" = 'groupOfUniqueNames' WHERE "Id" = $1"#,
        r#"UPDATE "ConnectedSystemAttributes" SET "Name" = 'uniqueMember' WHERE "Id" = $2"#,
        r#"UPDATE "PendingExportAttributeValueChanges" SET "StringValue" = 'groupOfUniqueNames'
           WHERE "AttributeId" = $3 AND "StringValue" = 'groupOfNames'"#,
    ] {
        sqlx::query(sql)
            .bind(env.seeded.group_type_id())
            .bind(member)
            .bind(class)
            .execute(&env.db.pool)
            .await
            .unwrap();
    }
    let mut request = env.request();
    request.settings.modify_batch_size = 10;
    let (result, events) = env.run(&Engine::new(), &request).await;
    assert_eq!(result.failed_count, 0, "{:?}", failures(&events));
    let mut expected = env.seeded.expected_directory().unwrap();
    for entry in expected.entries.values_mut() {
        if let Some(members) = entry.remove("member") {
            entry.insert("uniqueMember".into(), members);
            entry.insert(
                "objectClass".into(),
                BTreeSet::from(["groupOfUniqueNames".to_string()]),
            );
        }
    }
    let mut actual = env.directory().await;
    for entry in actual.entries.values_mut() {
        if let Some(members) = entry.get_mut("uniqueMember") {
            *members = members.iter().map(|m| m.to_lowercase()).collect();
        }
    }
    for entry in expected.entries.values_mut() {
        if let Some(members) = entry.get_mut("uniqueMember") {
            *members = members.iter().map(|m| m.to_lowercase()).collect();
        }
    }
    assert!(
        expected
            .entries
            .values()
            .any(|e| e.contains_key("uniqueMember")),
        "the seed has groups"
    );
    assert_matches(&actual, &expected);
    // memberOf follows uniqueMember as it follows member.
    let mut as_members = expected.clone();
    for entry in as_members.entries.values_mut() {
        if let Some(members) = entry.remove("uniqueMember") {
            entry.insert("member".into(), members);
        }
    }
    assert_member_of_agrees(&env, &as_members).await;
}

/// Where the object types' external id is 389's own `nsUniqueId` (present on every entry, whether
/// or not the entryUUID plugin runs), the anchors are the entries' nsUniqueIds in 389's format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsuniqueid_as_the_anchor() {
    let Some(env) = Env389::start(Template::Micro).await else {
        return;
    };
    sqlx::query(
        r#"UPDATE "ConnectedSystemAttributes" SET "Name" = 'nsUniqueId' WHERE "Id" = ANY($1)"#,
    )
    .bind(vec![
        env.seeded.user_attribute_id("entryUUID").unwrap(),
        env.seeded.group_attribute_id("entryUUID").unwrap(),
    ])
    .execute(&env.db.pool)
    .await
    .unwrap();
    let (result, events) = env.run(&Engine::new(), &env.request()).await;
    assert_eq!(result.failed_count, 0, "{:?}", failures(&events));
    let anchors = env.anchors().await;
    let ids = env.directory_values("nsUniqueId").await;
    assert_eq!(anchors.len() as u64, env.seeded.counts.pending_exports);
    for (dn, anchor) in &anchors {
        assert_eq!(
            Some(anchor),
            ids.get(dn),
            "{dn}: the anchor is its nsUniqueId"
        );
        assert_eq!(anchor.split('-').count(), 4, "389's format: {anchor}");
    }
    assert!(
        events.items().iter().all(|i| i
            .anchor_changes
            .iter()
            .any(|a| a.attribute_name == "nsUniqueId")),
        "each report names the anchor it recorded"
    );
}

/// A read-only database (389's `nsslapd-readonly`: every write answered 53, unwillingToPerform) is
/// back pressure: each write is retried, then its export fails with 389's reason and goes back to
/// the queue with a retry time, nothing half-written; once writable, the next run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_fails_nothing_for_good() {
    let Some(env) = Env389::start(Template::Nano).await else {
        return;
    };
    env.ds.set_read_only(true).await.unwrap();
    let mut request = env.request();
    request.options.max_operation_retries = 1;
    let engine = Engine::new();
    let (result, events) = env.run(&engine, &request).await;
    let users = env.seeded.users() as u64;
    assert_eq!(result.success_count, 0, "{}", result.message);
    let failed = failures(&events);
    assert_eq!(
        failed.len() as u64,
        users,
        "the users' Adds fail: {failed:?}"
    );
    assert!(
        failed.iter().all(|m| m.contains("unwillingToPerform (53)")
            && m.contains("read-only")
            && m.contains("gave up after 2 attempts")),
        "{failed:?}"
    );
    let counts = env.counts().await;
    assert!(
        counts.keys().all(|(status, _)| *status == PENDING),
        "back in the queue: {counts:?}"
    );
    let without_retry_time: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "ErrorCount" > 0 AND "NextRetryAt" IS NULL"#,
    )
    .bind(env.seeded.connected_system_id())
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(without_retry_time, 0, "each failed export has a retry time");
    assert!(env.directory().await.is_empty(), "nothing was written");

    env.ds.set_read_only(false).await.unwrap();
    env.retry_now().await;
    let (again, events) = env.run(&engine, &env.request()).await;
    assert_eq!(again.failed_count, 0, "{:?}", failures(&events));
    if again.deferred_count > 0 {
        env.retry_now().await;
        let (last, events) = env.run(&engine, &env.request()).await;
        assert_eq!(
            last.failed_count + last.deferred_count,
            0,
            "{:?}",
            failures(&events)
        );
    }
    assert_matches(
        &env.directory().await,
        &env.seeded.expected_directory().unwrap(),
    );
}

/// 389's schema refusal (a second value of a single-valued attribute: objectClassViolation, 65)
/// fails that export alone with 389's reason; the others are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_violation_fails_only_its_export() {
    let Some(env) = Env389::start(Template::Nano).await else {
        return;
    };
    let user = env.seeded.user(0).unwrap();
    sqlx::query(
        r#"INSERT INTO "PendingExportAttributeValueChanges" ("Id", "PendingExportId", "AttributeId", "StringValue", "ChangeType", "Status", "ExportAttemptCount")
           VALUES ($1, $2, $3, 'A second display name', 0, 0, 0)"#,
    )
    .bind(Uuid::new_v4())
    .bind(user.ids.pending_export)
    .bind(env.seeded.user_attribute_id("displayName").unwrap())
    .execute(&env.db.pool)
    .await
    .unwrap();
    let (result, events) = env.run(&Engine::new(), &env.request()).await;
    let failed = failures(&events);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains(&user.dn)
            && failed[0].contains("objectClassViolation (65)")
            && failed[0].contains("single-valued"),
        "{}",
        failed[0]
    );
    // The groups naming the user wait for it and are deferred; everything else is written.
    let naming_user: u64 = (0..env.seeded.groups())
        .filter_map(|g| env.seeded.group(g))
        .filter(|g| g.members().any(|u| u == 0))
        .count() as u64;
    assert_eq!(result.deferred_count, naming_user, "{}", result.message);
    assert_eq!(
        result.success_count,
        env.seeded.counts.pending_exports - 1 - naming_user,
        "{}",
        result.message
    );
}

/// 389's password policy refuses a short `userPassword` written by an ordinary account
/// (constraintViolation, 19): that export fails with the policy's reason, which never carries the
/// password; an export with a password the policy accepts is written. (The Directory Manager is
/// exempt from the policy, so the engine binds as a service account here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_policy_refusal_is_reported_clearly() {
    let Some(env) = Env389::start(Template::Nano).await else {
        return;
    };
    let suffix = env.ds.suffix().to_string();
    let service = format!("cn=jim-export,{suffix}");
    let service_password = "a-long-service-password";
    {
        let mut ldap = env.admin().await;
        ldap.modify(
            "cn=config",
            vec![
                Mod::Replace("passwordCheckSyntax", HashSet::from(["on"])),
                Mod::Replace("passwordMinLength", HashSet::from(["12"])),
            ],
        )
        .await
        .and_then(|r| r.success())
        .expect("a global password policy");
        ldap.add(
            &service,
            vec![
                (
                    "objectClass",
                    HashSet::from(["top", "applicationProcess", "simpleSecurityObject"]),
                ),
                ("cn", HashSet::from(["jim-export"])),
                ("userPassword", HashSet::from([service_password])),
            ],
        )
        .await
        .and_then(|r| r.success())
        .expect("a service account");
        let aci = format!(
            "(targetattr=\"*\")(version 3.0; acl \"jim-export writes\"; allow (all)(userdn=\"ldap:///{service}\");)"
        );
        ldap.modify(
            &suffix,
            vec![Mod::Add("aci", HashSet::from([aci.as_str()]))],
        )
        .await
        .and_then(|r| r.success())
        .expect("the service account may write");
        let _ = ldap.unbind().await;
    }
    // departmentNumber becomes userPassword: user 0 gets a short one, user 1 a long one.
    let attribute = env.seeded.user_attribute_id("departmentNumber").unwrap();
    sqlx::query(
        r#"UPDATE "ConnectedSystemAttributes" SET "Name" = 'userPassword' WHERE "Id" = $1"#,
    )
    .bind(attribute)
    .execute(&env.db.pool)
    .await
    .unwrap();
    let (short, long) = ("Short-pw-1", "A-password-long-enough-1");
    for (i, password) in [(0, short), (1, long)] {
        let user = env.seeded.user(i).unwrap();
        sqlx::query(r#"UPDATE "PendingExportAttributeValueChanges" SET "StringValue" = $3 WHERE "PendingExportId" = $1 AND "AttributeId" = $2"#)
            .bind(user.ids.pending_export)
            .bind(attribute)
            .bind(password)
            .execute(&env.db.pool)
            .await
            .unwrap();
    }
    let mut request = env.request();
    request.directory.bind =
        DirectoryConfig::simple(env.ds.ldap_url(), &service, service_password).bind;
    let (result, events) = env.run(&Engine::new(), &request).await;
    let items = events.items();
    let refused = items
        .iter()
        .find(|i| i.pending_export_id == env.seeded.user(0).unwrap().ids.pending_export)
        .expect("user 0's report");
    let message = refused.error_message.clone().unwrap_or_default();
    assert_eq!(refused.status, ItemStatus::Failed, "{message}");
    assert!(
        message.contains("constraintViolation (19)")
            && message.contains("password must be at least 12 characters"),
        "{message}"
    );
    let logs = events.logs.lock().unwrap().clone();
    for text in std::iter::once(&message)
        .chain(logs.iter().map(|l| &l.message))
        .chain(std::iter::once(&result.message))
    {
        assert!(
            !text.contains(short) && !text.contains(long),
            "a password in {text}"
        );
    }
    let accepted = env.seeded.user(1).unwrap();
    assert_eq!(
        env.status_of(accepted.ids.pending_export).await,
        Some(EXPORTED),
        "{:?}",
        failures(&events)
    );
}

/// Killed after its first Adds reached 389 and before any outcome was persisted; the operator then
/// releases the stranded rows, and an unrelated entry is put where one of the claimed groups goes.
/// The recovery adopts what the killed run wrote (nothing twice, every member once), refuses the
/// stranger (that one export fails, naming the DN and why; the entry is left as it was) and
/// converges everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_then_the_operators_release_and_a_stranger() {
    let Some(env) = Env389::start(Template::Small).await else {
        return;
    };
    let proxy =
        LatencyProxy::in_front_of(env.ds.ldap_url(), Duration::from_millis(40)).expect("a proxy");
    let mut request = env.request_to(&proxy.url("ldap"));
    request.options.lease_seconds = support::crash::LEASE_SECONDS;
    // Every export claimed in the first page, none persisted before the kill, and few enough in
    // flight (4 at 40 ms a round trip: about a second and a half for the run) that the kill
    // lands mid-run however fast the machine is.
    request.options.page_size = 1_000;
    request.options.flush_interval_ms = 30_000;
    request.options.flush_size = 1_000;
    request.options.concurrency = Some(Concurrency::Fixed);
    request.options.max_in_flight = Some(4);
    let mut child = ChildRun::spawn(&request);
    let mut ldap = env.admin().await;
    let people = format!("ou=People,{}", env.ds.suffix());
    wait_for(&mut child, "the first Adds reaching 389", async || {
        support::crash::search_dns(&mut ldap, &people, "(uid=*)")
            .await
            .len()
            > 5
    })
    .await;
    proxy.pause();
    child.kill();
    proxy.drop_connections();
    proxy.resume();
    // The users the killed run wrote, whose outcome it never persisted: the recovery's to adopt.
    let mut written = Vec::new();
    for u in (0..env.seeded.users()).filter_map(|u| env.seeded.user(u)) {
        if env.status_of(u.ids.pending_export).await == Some(EXECUTING)
            && env.ds.read_entry(&u.dn, &["uid"]).await.unwrap().is_some()
        {
            written.push(u);
        }
    }
    assert!(
        written.len() > 5,
        "{} users written before the kill",
        written.len()
    );

    // A claimed group that is not in the directory yet gets a stranger at its DN.
    let mut stranger = None;
    for g in (0..env.seeded.groups()).filter_map(|g| env.seeded.group(g)) {
        if env.status_of(g.ids.pending_export).await == Some(EXECUTING)
            && env.ds.read_entry(&g.dn, &["cn"]).await.unwrap().is_none()
        {
            stranger = Some(g);
            break;
        }
    }
    let stranger = stranger.expect("a claimed group not yet written");
    let member = format!("uid=someone-else,{people}");
    ldap.add(
        &stranger.dn,
        vec![
            ("objectClass", HashSet::from(["top", "groupOfNames"])),
            ("cn", HashSet::from([stranger.cn.as_str()])),
            ("description", HashSet::from(["not JIM's"])),
            ("member", HashSet::from([member.as_str()])),
        ],
    )
    .await
    .and_then(|r| r.success())
    .expect("the stranger is added");

    let engine = Engine::new();
    let released = engine
        .release_stranded(
            &request.database,
            env.seeded.connected_system_id(),
            Duration::ZERO,
        )
        .await
        .expect("the operator's release");
    assert!(released > 0, "the killed run's rows are released");

    let direct = env.request();
    let (result, events) = env.run(&engine, &direct).await;
    let failed = failures(&events);
    assert_eq!(
        failed.len(),
        1,
        "only the stranger's group fails: {failed:?}"
    );
    assert!(
        failed[0].contains(&stranger.dn) && failed[0].contains("not taken over"),
        "{}",
        failed[0]
    );
    assert_eq!(result.deferred_count, 0, "{}", result.message);
    assert!(
        result.metrics.recovered >= written.len() as u64,
        "{} re-attempted, {} written by the killed run",
        result.metrics.recovered,
        written.len()
    );
    for u in &written {
        assert_eq!(
            env.status_of(u.ids.pending_export).await,
            Some(EXPORTED),
            "{}",
            u.dn
        );
    }
    let kept = env
        .ds
        .read_entry(&stranger.dn, &["description", "member"])
        .await
        .unwrap()
        .expect("the stranger is still there");
    assert_eq!(kept.attrs["description"], vec!["not JIM's".to_string()]);
    assert_eq!(kept.attrs["member"], vec![member.clone()]);
    let anchors = env.anchors().await;
    assert!(
        !anchors.contains_key(&stranger.dn.to_lowercase()),
        "the stranger's entryUUID is nobody's anchor"
    );

    let mut expected = env.seeded.expected_directory().unwrap();
    expected.entries.remove(&stranger.dn);
    let mut actual = env.directory().await;
    actual.entries.remove(&stranger.dn);
    assert_matches(&actual, &expected);
    let uuids = env.directory_values("entryUUID").await;
    for (dn, anchor) in &anchors {
        assert_eq!(
            Some(anchor),
            uuids.get(dn),
            "{dn}: the anchor is its entryUUID"
        );
    }
    let counts = env.counts().await;
    let exported: i64 = counts
        .iter()
        .filter(|((s, _), _)| *s == EXPORTED)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        exported as u64,
        env.seeded.counts.pending_exports - 1,
        "{counts:?}"
    );
    let _ = ldap.unbind().await;
}

/// 389 is killed mid-run (SIGKILL, as a crash) and started again: the run ends cleanly once the
/// directory stops answering (nothing left Executing, nothing recorded that 389 does not hold),
/// and the next runs converge to exactly the expected directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_mid_run_loses_nothing() {
    let Some(mut env) = Env389::start(Template::Medium).await else {
        return;
    };
    let pid = env.ds.pid().expect("389 runs");
    struct KillOnFirstBatch(i32, std::sync::atomic::AtomicBool);
    impl jim_export::engine::RunListener for KillOnFirstBatch {
        fn on_batch(&self, _: &jim_export::report::BatchReport) {
            if !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &self.0.to_string()])
                    .status();
            }
        }
    }
    let mut request = env.request();
    request.directory.connect_timeout_ms = 1_000;
    request.directory.operation_timeout_ms = 2_000;
    request.options.max_operation_retries = 2;
    request.options.flush_size = 100;
    let engine = Engine::new();
    let outcome = engine
        .run_export(
            &request,
            Arc::new(KillOnFirstBatch(
                pid,
                std::sync::atomic::AtomicBool::new(false),
            )),
            CancellationToken::new(),
        )
        .await;
    match &outcome {
        Err(e) => assert!(e.to_string().contains("stopped answering"), "{e}"),
        Ok(result) => panic!("the run should stop with an error: {}", result.message),
    }
    env.ds.kill();
    env.ds.restart().await.expect("389 starts again");
    let executing: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 2"#,
    )
    .bind(env.seeded.connected_system_id())
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(executing, 0, "nothing is left Executing");
    // Nothing is recorded as done that 389 does not hold: every Exported Create's entry is there.
    let held = env.directory().await;
    let held: BTreeSet<String> = held.entries.keys().map(|d| d.to_lowercase()).collect();
    let objects = (0..env.seeded.users())
        .filter_map(|u| env.seeded.user(u))
        .map(|u| (u.ids.pending_export, u.dn))
        .chain(
            (0..env.seeded.groups())
                .filter_map(|g| env.seeded.group(g))
                .map(|g| (g.ids.pending_export, g.dn)),
        );
    let mut exported = 0;
    for (pending_export, dn) in objects {
        if env.status_of(pending_export).await == Some(EXPORTED) {
            exported += 1;
            assert!(
                held.contains(&dn.to_lowercase()),
                "{dn} recorded as exported, not in 389"
            );
        }
    }
    assert!(
        exported > 0,
        "the first flush was persisted before the kill"
    );

    for _ in 0..3 {
        env.retry_now().await;
        let (rest, events) = env.run(&engine, &env.request()).await;
        assert_eq!(rest.failed_count, 0, "{:?}", failures(&events));
        if rest.deferred_count == 0 {
            break;
        }
    }
    assert_matches(
        &env.directory().await,
        &env.seeded.expected_directory().unwrap(),
    );
    let counts = env.counts().await;
    assert!(
        counts.keys().all(|(status, _)| *status == EXPORTED),
        "{counts:?}"
    );
}
