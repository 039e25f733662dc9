//! The AD dialect end to end: `Engine::run_export` against real PostgreSQL (JIM's schema, seeded in
//! the shape of Scenario 8's Samba AD target) and a real Samba AD domain controller. Initial
//! provisioning of users and groups with `member`, `manager` and `managedBy` in one run (AD refuses a
//! member that does not exist, so the dependency ordering is exercised for real), `objectGUID` read
//! back as raw bytes into the CSO's Guid slot, updates of every kind, rename, a move into an OU the
//! engine creates, disable by `userAccountControl` read-modify-write, deletes (one already gone),
//! a partial write, a re-run that changes nothing, and the StartTLS and NTLM binds.
//!
//! The DC is shared by the tests of this process (one per machine at a time: its ports are fixed),
//! so each test works under its own OU. Outside CI the tests skip when Samba cannot run here.

use jim_export::config::{Concurrency, DeleteBehaviour, Dialect};
use jim_export::engine::Engine;
use jim_export::model::{
    PendingExportAttributeChangeType as AvcType, PendingExportChangeType, PendingExportStatus,
};
use jim_export::plan::{build_rdn, dn_key};
use jim_export::report::ItemStatus;
use jim_export_testkit::seed;
use jim_export_testkit::seed::{AdExport, AdValue, SeedObject, Template, stage_ad_exports};
use jim_export_testkit::support;
use jim_export_testkit::support::ad::{AdEnv, assert_directory_matches};
use sqlx::Row;
use uuid::Uuid;

const EXPORTED: i32 = 4;

/// Every user and group of Micro (10 users with every kind of DN escaping, 12 groups with members,
/// managers and managedBy) in one run with the engine's defaults: the dialect is detected as Samba
/// AD with its concurrency (1 connection × 4), the OU chain is created, the directory holds exactly
/// the staged values, each CSO holds its entry's `objectGUID` in its Guid slot, and after JIM's
/// confirming import a second run has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_provisioning_on_samba_ad() {
    let Some(env) = AdEnv::new("e2eprov", Template::Micro).await else {
        return;
    };
    let engine = Engine::new();
    let request = env.request();
    let (result, events) = env.run(&engine, &request).await;

    let objects = env.seeded.counts.pending_exports;
    assert_eq!(objects, 22);
    assert_eq!(result.dialect, Some(Dialect::SambaAd));
    assert_eq!(result.success_count, objects, "{}", result.message);
    assert_eq!(
        (
            result.failed_count,
            result.deferred_count,
            result.partially_exported_count
        ),
        (0, 0, 0),
        "{}",
        result.message
    );
    // Adaptive concurrency from Samba's default (1 connection × 4), with a ceiling of four times it.
    assert!(
        result.metrics.max_in_flight_limit <= 16 && result.metrics.max_in_flight <= 16,
        "{:?}",
        result.metrics
    );
    let mut created: Vec<String> = result
        .created_container_external_ids
        .iter()
        .map(|d| dn_key(d))
        .collect();
    created.sort();
    let mut want: Vec<String> = [
        env.root.clone(),
        format!("OU=CorpManaged,{}", env.root),
        env.seeded.users_ou(),
        env.seeded.groups_ou(),
    ]
    .iter()
    .map(|d| dn_key(d))
    .collect();
    want.sort();
    assert_eq!(created, want, "the engine created the OU chain");

    assert_directory_matches(&env.directory().await, &env.seeded.expected_directory());

    // objectGUID: 16 raw bytes in the directory; the CSO's Guid slot holds them in Microsoft order.
    let anchors = env.anchors().await;
    for dn in env
        .seeded
        .users
        .iter()
        .map(|u| (u.ids.cso, &u.dn))
        .chain(env.seeded.groups.iter().map(|g| (g.ids.cso, &g.dn)))
    {
        let (cso, dn) = dn;
        let raw = env
            .object_guid_bytes(dn)
            .await
            .expect("the entry has an objectGUID");
        assert_eq!(raw.len(), 16, "{dn}");
        let bytes: [u8; 16] = raw.as_slice().try_into().unwrap();
        let (guid, text) = anchors.get(&cso).cloned().expect("an anchor value");
        assert_eq!(guid, Some(Uuid::from_bytes_le(bytes)), "{dn}: Guid slot");
        assert_eq!(text, None, "{dn}: a Guid anchor is not kept as text");
    }
    let items = events.items();
    assert_eq!(items.len() as u64, objects);
    // The report carries each new anchor as JIM prints a Guid.
    for u in &env.seeded.users {
        let raw = env.object_guid_bytes(&u.dn).await.unwrap();
        let printed = Uuid::from_bytes_le(raw.try_into().unwrap()).to_string();
        let item = items
            .iter()
            .find(|i| i.pending_export_id == u.ids.pending_export)
            .expect("an item per export");
        assert!(
            item.anchor_changes
                .iter()
                .any(|a| a.attribute_name == "objectGUID" && a.new_value == printed),
            "{:?}",
            item.anchor_changes
        );
    }
    assert!(items.iter().all(|i| {
        i.status == ItemStatus::Succeeded
            && i.anchor_changes
                .iter()
                .any(|a| a.attribute_name == "objectGUID")
    }));

    // JIM's state: every export Exported, every change awaiting confirmation.
    let counts = env.pending_export_counts().await;
    assert_eq!(
        counts.get(&(EXPORTED, PendingExportChangeType::Create.as_i32())),
        Some(&(objects as i64)),
        "{counts:?}"
    );
    let changes = env.change_status_counts().await;
    assert_eq!(
        changes.keys().copied().collect::<Vec<_>>(),
        vec![1],
        "{changes:?}"
    );

    // JIM's confirming import, then a run with nothing to do.
    let confirmed = seed::confirm_ad_exported(&env.db.pool, &env.seeded)
        .await
        .unwrap();
    assert_eq!(confirmed.provisioned_objects, objects);
    let before = env.directory().await;
    let (again, _) = env.run(&engine, &request).await;
    assert_eq!(again.total_pending_exports, 0, "{}", again.message);
    assert_eq!(
        again.metrics.operations.add
            + again.metrics.operations.modify
            + again.metrics.operations.modify_dn
            + again.metrics.operations.delete,
        0
    );
    assert_eq!(env.directory().await, before);
    assert!(env.pending_export_counts().await.is_empty());
}

/// Updates of every kind, a rename (to a name that needs escaping), a move into an OU the engine
/// creates, a manager change, member adds and removes, a member clear, `managedBy` change, then an
/// enable and a disable by `userAccountControl` read-modify-write, then deletes (one object already
/// gone from the directory, which Samba reports in its own way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_changes_on_samba_ad() {
    let Some(env) = AdEnv::new("e2efup", Template::Micro).await else {
        return;
    };
    let s = &env.seeded;
    let engine = Engine::new();
    let request = env.request();
    provision_and_confirm(&env, &engine, &request).await;
    let mut expected = env.seeded.expected_directory();

    // Round 1: updates, rename, move, references.
    let u = |i: usize| &s.users[i];
    let g = |i: usize| &s.groups[i];
    let renamed_display = "Brennan, Benedict \"Ben\" (S8-1)";
    let renamed_dn = format!("{},{}", build_rdn("CN", renamed_display), s.users_ou());
    let moved_dn = format!(
        "{},{}",
        u(2).dn.split_once(",OU=").unwrap().0,
        s.leavers_ou()
    );
    let outsider = (0..s.users.len())
        .find(|i| !g(0).members.contains(i) && ![1, 2].contains(i))
        .expect("a user outside group 0");
    // Preferably one whose DN needs escaping (AD matches the value by the DN it names).
    let stays_put = |m: &&usize| ![1, 2].contains(*m);
    let leaving = *g(0)
        .members
        .iter()
        .filter(stays_put)
        .find(|&&m| m % 7 != 0)
        .or_else(|| g(0).members.iter().find(stays_put))
        .expect("a member of group 0 that stays put");
    assert_ne!(
        leaving % 7,
        0,
        "Micro's group 0 has a member with an escaped DN"
    );
    let round1 = vec![
        AdExport::update(SeedObject::User(0))
            .with(
                "title",
                AvcType::Update,
                AdValue::Text("Principal Architect".into()),
            )
            .with(
                "otherTelephone",
                AvcType::Add,
                AdValue::Text("+1 555 0100".into()),
            )
            .with(
                "otherTelephone",
                AvcType::Add,
                AdValue::Text("+1 555 0101".into()),
            )
            .with(
                "department",
                AvcType::Update,
                AdValue::Text("R&D, Zürich".into()),
            )
            .with(
                "accountExpires",
                AvcType::Update,
                AdValue::Long(134_000_000_000_000_000),
            ),
        AdExport::update(SeedObject::User(1))
            .with(
                "distinguishedName",
                AvcType::Update,
                AdValue::Text(renamed_dn.clone()),
            )
            .with(
                "displayName",
                AvcType::Update,
                AdValue::Text(renamed_display.into()),
            ),
        AdExport::update(SeedObject::User(2)).with(
            "distinguishedName",
            AvcType::Update,
            AdValue::Text(moved_dn.clone()),
        ),
        AdExport::update(SeedObject::User(3)).with("manager", AvcType::Update, AdValue::User(0)),
        AdExport::update(SeedObject::Group(0))
            .with("member", AvcType::Add, AdValue::User(outsider))
            .with("member", AvcType::Remove, AdValue::User(leaving))
            .with("managedBy", AvcType::Update, AdValue::User(4)),
        AdExport::update(SeedObject::Group(1)).with("member", AvcType::RemoveAll, AdValue::None),
    ];
    stage_ad_exports(&env.db.pool, s, &round1, None)
        .await
        .unwrap();
    let (result, events) = env.run(&engine, &request).await;
    assert_eq!(result.success_count, 6, "{}", result.message);
    assert_eq!(result.failed_count, 0, "{}", result.message);
    assert_eq!(
        result
            .created_container_external_ids
            .iter()
            .map(|d| dn_key(d))
            .collect::<Vec<_>>(),
        vec![dn_key(&s.leavers_ou())],
        "the move's new OU is created"
    );
    assert!(events.items().iter().any(|i| {
        i.anchor_changes.iter().any(|a| {
            a.attribute_name == "distinguishedName" && dn_key(&a.new_value) == dn_key(&renamed_dn)
        })
    }));
    expected.replace_values(&u(0).dn, "title", ["Principal Architect"]);
    expected.replace_values(&u(0).dn, "otherTelephone", ["+1 555 0100", "+1 555 0101"]);
    expected.replace_values(&u(0).dn, "department", ["R&D, Zürich"]);
    expected.replace_values(&u(0).dn, "accountExpires", ["134000000000000000"]);
    expected.move_entry(&u(1).dn, &renamed_dn);
    expected.replace_values(&renamed_dn, "displayName", [renamed_display]);
    expected.replace_values(&renamed_dn, "cn", [renamed_display]);
    expected.move_entry(&u(2).dn, &moved_dn);
    expected.replace_values(&u(3).dn, "manager", [u(0).dn.as_str()]);
    let mut members: Vec<String> = g(0)
        .members
        .iter()
        .filter(|&&m| m != leaving)
        .chain([outsider].iter())
        .map(|&m| u(m).dn.clone())
        .collect();
    // AD rewrites references to renamed and moved objects (its own referential integrity).
    members
        .iter_mut()
        .for_each(|d| fix_moved(d, &u(1).dn, &renamed_dn, &u(2).dn, &moved_dn));
    expected.replace_values(&g(0).dn, "member", members.iter().map(String::as_str));
    expected.replace_values(&g(0).dn, "managedBy", [u(4).dn.as_str()]);
    expected.replace_values(&g(1).dn, "member", []);
    expected.rewrite_references(&u(1).dn, &renamed_dn);
    expected.rewrite_references(&u(2).dn, &moved_dn);
    assert_directory_matches(&env.directory().await, &expected);
    // The CSOs of the renamed and moved users hold their new DNs.
    assert_eq!(
        env.cso_dn(u(1).ids.cso).await.map(|d| dn_key(&d)),
        Some(dn_key(&renamed_dn))
    );
    assert_eq!(
        env.cso_dn(u(2).ids.cso).await.map(|d| dn_key(&d)),
        Some(dn_key(&moved_dn))
    );
    assert_eq!(
        env.pending_export_counts().await,
        [((EXPORTED, PendingExportChangeType::Update.as_i32()), 6)].into()
    );
    seed::confirm_ad_exported(&env.db.pool, s).await.unwrap();

    // Round 2: remove one value, clear an attribute, enable an account (no password needed).
    let round2 = vec![
        AdExport::update(SeedObject::User(0))
            .with(
                "otherTelephone",
                AvcType::Remove,
                AdValue::Text("+1 555 0100".into()),
            )
            .with("company", AvcType::RemoveAll, AdValue::None)
            // JIM's protected attribute: a clear writes "never expires".
            .with("accountExpires", AvcType::RemoveAll, AdValue::None),
        AdExport::update(SeedObject::User(4)).with(
            "userAccountControl",
            AvcType::Update,
            AdValue::Int(512 | 0x20),
        ),
    ];
    stage_ad_exports(&env.db.pool, s, &round2, None)
        .await
        .unwrap();
    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (2, 0),
        "{}",
        result.message
    );
    expected.replace_values(&u(0).dn, "otherTelephone", ["+1 555 0101"]);
    expected.replace_values(&u(0).dn, "company", []);
    expected.replace_values(&u(0).dn, "accountExpires", ["9223372036854775807"]);
    expected.replace_values(&u(4).dn, "userAccountControl", ["544"]);
    assert_directory_matches(&env.directory().await, &expected);
    seed::confirm_ad_exported(&env.db.pool, s).await.unwrap();

    // Round 3: Delete Behaviour Disable on user 4 (enabled, password not required): the engine
    // reads userAccountControl and sets 0x2, keeping the other bits.
    // A disable of an account already gone holds (§11.19 fixed).
    env.dc.delete_tree(&u(8).dn).await.unwrap();
    forget(&mut expected, &u(8).dn);
    stage_ad_exports(
        &env.db.pool,
        s,
        &[
            AdExport::delete(SeedObject::User(4)),
            AdExport::delete(SeedObject::User(8)),
        ],
        None,
    )
    .await
    .unwrap();
    let mut disable = env.request();
    disable.settings.delete_behaviour = Some(DeleteBehaviour::Disable);
    let (result, _) = env.run(&engine, &disable).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (2, 0),
        "{}",
        result.message
    );
    expected.replace_values(&u(4).dn, "userAccountControl", ["546"]);
    assert_directory_matches(&env.directory().await, &expected);
    seed::confirm_ad_exported(&env.db.pool, s).await.unwrap();
    // A confirmed disable leaves the CSO (the object still exists); re-link it for round 4 by
    // leaving it alone.

    // Round 4: deletes, one of an object already gone (Samba: noSuchObject, or 80 with 00002030).
    let gone = 5;
    env.dc.delete_tree(&u(gone).dn).await.unwrap();
    forget(&mut expected, &u(gone).dn);
    let round4 = vec![
        AdExport::delete(SeedObject::User(gone)),
        AdExport::delete(SeedObject::User(6)),
        AdExport::delete(SeedObject::Group(2)),
    ];
    stage_ad_exports(&env.db.pool, s, &round4, None)
        .await
        .unwrap();
    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (3, 0),
        "{}",
        result.message
    );
    forget(&mut expected, &u(6).dn);
    forget(&mut expected, &g(2).dn);
    assert_directory_matches(&env.directory().await, &expected);
    let report = seed::confirm_ad_exported(&env.db.pool, s).await.unwrap();
    assert_eq!(report.deleted_objects, 3);
    assert!(env.pending_export_counts().await.is_empty());

    // Round 5: a member that no longer exists in the directory (removed behind JIM's back) is
    // refused by AD; the export fails, counts an error and is retried later, nothing else changes.
    let vanished = 7;
    env.dc.delete_tree(&u(vanished).dn).await.unwrap();
    let target = (3..s.groups.len())
        .find(|&k| !g(k).members.contains(&vanished))
        .expect("a group without user 7");
    let ids = stage_ad_exports(
        &env.db.pool,
        s,
        &[AdExport::update(SeedObject::Group(target)).with(
            "member",
            AvcType::Add,
            AdValue::User(vanished),
        )],
        None,
    )
    .await
    .unwrap();
    let (result, events) = env.run(&engine, &request).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (0, 1),
        "{}",
        result.message
    );
    let item = events
        .items()
        .into_iter()
        .find(|i| i.pending_export_id == ids[0])
        .unwrap();
    assert_eq!(item.status, ItemStatus::Failed);
    // Samba: noSuchObject (32) with 00000525, which is not the group missing.
    let message = item.error_message.clone().unwrap_or_default();
    assert!(
        message.contains("00000525") && message.contains("A DN among the values does not exist"),
        "{message}"
    );
    let row = sqlx::query(r#"SELECT "Status", "ErrorCount", "NextRetryAt" > now() FROM "PendingExports" WHERE "Id" = $1"#)
        .bind(ids[0])
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), PendingExportStatus::Pending.as_i32());
    assert_eq!(row.get::<i32, _>(1), 1);
    assert!(row.get::<bool, _>(2), "retried with backoff");
    let members = env.directory().await.entries[&dn_key(&g(target).dn)]
        .get("member")
        .cloned()
        .unwrap_or_default();
    assert!(!members.contains(&dn_key(&u(vanished).dn)));
}

/// What AD answers when a member change already holds: adding a member that is already there is
/// `entryAlreadyExists` (68, ERROR_MEMBER_IN_GROUP) and removing one that is not is
/// `unwillingToPerform` (53, ERROR_MEMBER_NOT_IN_GROUP), not 20 and 16 as on other directories. The
/// engine converges them value by value (a drift reassert, a re-attempt after a crash), without
/// taking 53 for back pressure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_changes_that_already_hold_converge_on_samba_ad() {
    let Some(env) = AdEnv::new("e2ehold", Template::Micro).await else {
        return;
    };
    let s = &env.seeded;
    let engine = Engine::new();
    let request = env.request();
    provision_and_confirm(&env, &engine, &request).await;
    let group = &s.groups[3];
    let member = group.members[0];
    let outsider = (0..s.users.len())
        .find(|i| !group.members.contains(i))
        .expect("a user outside the group");
    let newcomer = (0..s.users.len())
        .find(|&i| !group.members.contains(&i) && i != outsider)
        .expect("a second user outside the group");
    // Drift behind JIM's back: the member is already there, the outsider is gone already.
    stage_ad_exports(
        &env.db.pool,
        s,
        &[AdExport::update(SeedObject::Group(3))
            .with("member", AvcType::Add, AdValue::User(member))
            .with("member", AvcType::Add, AdValue::User(newcomer))
            .with("member", AvcType::Remove, AdValue::User(outsider))],
        None,
    )
    .await
    .unwrap();
    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (1, 0),
        "{}",
        result.message
    );
    assert_eq!(
        result.metrics.retries, 0,
        "no in-run retries: not back pressure"
    );
    let mut expected = s.expected_directory();
    expected
        .entries
        .get_mut(&group.dn)
        .unwrap()
        .get_mut("member")
        .unwrap()
        .insert(s.users[newcomer].dn.clone());
    assert_directory_matches(&env.directory().await, &expected);
}

/// The AD seed stages what Scenario 8 stages for a Samba target (no directory needed): one Create per
/// object, users' `userAccountControl` 514 as a Number, `objectGUID` (Guid) as the CSOs' anchor,
/// references as MVO ids, and Micro's counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ad_seed_stages_scenario_8s_samba_shape() {
    let pg = jim_export_testkit::Postgres::shared()
        .await
        .expect("PostgreSQL starts");
    let db = pg.jim_database().await.expect("a JIM database");
    let options = jim_export_testkit::SeedOptions::active_directory(
        Template::Micro,
        "OU=seedonly,DC=gentian,DC=local",
    );
    let s = seed::seed_ad(&db.pool, &options).await.unwrap();
    let c = s.counts;
    assert_eq!((c.users, c.groups, c.memberships), (10, 12, 60));
    assert_eq!(c.pending_exports, 22);
    assert_eq!(c.connected_system_objects, 22);
    assert_eq!(c.metaverse_objects, 22);
    let managed = s.groups.iter().filter(|g| g.managed_by.is_some()).count() as u64;
    let mails = s.groups.iter().filter(|g| g.mail.is_some()).count() as u64;
    assert_eq!(
        c.attribute_changes,
        c.users * 13 + c.managers + c.groups * 7 + mails + c.memberships + managed
    );
    let row = sqlx::query(
        r#"SELECT count(*) FILTER (WHERE a."Name" = 'userAccountControl' AND c."IntValue" = 514 AND c."StringValue" IS NULL),
                  count(*) FILTER (WHERE a."Type" = 5 AND c."UnresolvedReferenceValue" IS NOT NULL AND c."StringValue" IS NULL),
                  count(DISTINCT p."Id") FILTER (WHERE p."ChangeType" = 0 AND p."Status" = 0),
                  count(DISTINCT p."Id") FILTER (WHERE p."HasUnresolvedReferences")
           FROM "PendingExportAttributeValueChanges" c
           JOIN "PendingExports" p ON p."Id" = c."PendingExportId"
           JOIN "ConnectedSystemAttributes" a ON a."Id" = c."AttributeId"
           WHERE p."ConnectedSystemId" = $1"#,
    )
    .bind(s.connected_system_id())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>(0), 10);
    assert_eq!(row.get::<i64, _>(1) as u64, c.reference_changes);
    assert_eq!(row.get::<i64, _>(2), 22);
    assert_eq!(row.get::<i64, _>(3) as u64, c.reference_bearing_exports);
    let anchors: Vec<(String, i32, bool)> = sqlx::query_as(
        r#"SELECT DISTINCT a."Name", a."Type", a."IsExternalId" FROM "ConnectedSystemObjects" o
           JOIN "ConnectedSystemAttributes" a ON a."Id" = o."ExternalIdAttributeId"
           WHERE o."ConnectedSystemId" = $1 AND o."Status" = 2"#,
    )
    .bind(s.connected_system_id())
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(anchors, vec![("objectGUID".to_string(), 6, true)]);
    let types: Vec<String> = sqlx::query_scalar(
        r#"SELECT "Name" FROM "ConnectedSystemObjectTypes" WHERE "ConnectedSystemId" = $1 ORDER BY "Id""#,
    )
    .bind(s.connected_system_id())
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(types, ["user", "group"]);
    assert_eq!(s.expected_directory().len(), 22);
}

/// A group whose Create names a member with no CSO in the system: written without it, kept Pending
/// as an Update owing the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_write_on_samba_ad() {
    let Some(env) = AdEnv::new("e2epart", Template::Nano).await else {
        return;
    };
    let group = env.seeded.groups[0].clone();
    let member_attr = env.seeded.group_attribute_id("member").unwrap();
    support::engine::add_unresolvable_reference(
        &env.db.pool,
        group.ids.pending_export,
        member_attr,
    )
    .await;

    let engine = Engine::new();
    let (result, events) = env.run(&engine, &env.request()).await;
    assert_eq!(result.failed_count, 0, "{}", result.message);
    assert_eq!(result.partially_exported_count, 1, "{}", result.message);
    assert_eq!(result.unresolvable_reference_count, 1);
    let row = sqlx::query(r#"SELECT "Status", "ChangeType", "HasUnresolvedReferences", "ErrorCount" FROM "PendingExports" WHERE "Id" = $1"#)
        .bind(group.ids.pending_export)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), PendingExportStatus::Pending.as_i32());
    assert_eq!(
        row.get::<i32, _>(1),
        PendingExportChangeType::Update.as_i32()
    );
    assert!(row.get::<bool, _>(2));
    assert_eq!(row.get::<i32, _>(3), 0);
    let item = events
        .items()
        .into_iter()
        .find(|i| i.pending_export_id == group.ids.pending_export)
        .unwrap();
    assert_eq!(item.status, ItemStatus::PartlyWritten);
    // The group exists with its resolvable members and its objectGUID anchor.
    let mut expected = env.seeded.expected_directory();
    expected
        .entries
        .retain(|dn, _| dn == &group.dn || !dn.contains("OU=Entitlements"));
    let actual = env.directory().await;
    let key = dn_key(&group.dn);
    let got = actual.entries.get(&key).expect("the group is written");
    assert_eq!(
        got.get("member").map(|m| m.len()),
        Some(group.members.len()),
        "the resolvable members are written"
    );
    let (guid, _) = env.anchors().await[&group.ids.cso];
    let raw = env.object_guid_bytes(&group.dn).await.unwrap();
    assert_eq!(guid, Some(Uuid::from_bytes_le(raw.try_into().unwrap())));
}

/// The same export over StartTLS (simple bind) and over LDAPS with an NTLM bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_ntlm_binds_export() {
    for (tag, ntlm) in [("e2estarttls", false), ("e2entlm", true)] {
        let Some(env) = AdEnv::new(tag, Template::Nano).await else {
            return;
        };
        let mut request = env.request();
        request.directory = if ntlm {
            env.dc.ntlm_directory_config()
        } else {
            env.dc.starttls_directory_config()
        };
        // Fixed concurrency: exactly Samba's default, one connection × 4 in flight.
        request.options.concurrency = Some(Concurrency::Fixed);
        let (result, _) = env.run(&Engine::new(), &request).await;
        assert_eq!(result.dialect, Some(Dialect::SambaAd));
        assert_eq!(result.metrics.in_flight_limit, 4, "{:?}", result.metrics);
        assert!(result.metrics.max_in_flight <= 4, "{:?}", result.metrics);
        assert_eq!(
            (result.success_count, result.failed_count),
            (env.seeded.counts.pending_exports, 0),
            "{tag}: {}",
            result.message
        );
        assert_directory_matches(&env.directory().await, &env.seeded.expected_directory());
    }
}

/// Removes a deleted entry and, as AD does for linked attributes, every reference to it.
fn forget(expected: &mut seed::DirectoryState, dn: &str) {
    expected.entries.remove(dn);
    for e in expected.entries.values_mut() {
        for attr in ["member", "manager", "managedBy"] {
            if let Some(v) = e.get_mut(attr) {
                v.remove(dn);
                if v.is_empty() {
                    e.remove(attr);
                }
            }
        }
    }
}

/// References to users that the same run renames or moves, on a directory that keeps its links
/// (AD rewrites stored references to a renamed object): a member Add of a moved user and a manager
/// set to a renamed one name the new DNs (AD refuses a DN that no longer exists), and a member
/// Remove of the renamed user names its new DN too, the one the group holds by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_to_users_renamed_in_the_same_run_on_samba_ad() {
    let Some(env) = AdEnv::new("e2eren", Template::Micro).await else {
        return;
    };
    let s = &env.seeded;
    let engine = Engine::new();
    let request = env.request();
    provision_and_confirm(&env, &engine, &request).await;
    let mut expected = env.seeded.expected_directory();

    let u = |i: usize| &s.users[i];
    let (group, renamed, moved) = (0..s.groups.len())
        .find_map(|g| {
            let members = &s.groups[g].members;
            let renamed = *members.iter().find(|&&m| m != 0)?;
            let moved = (1..s.users.len()).find(|m| !members.contains(m) && *m != renamed)?;
            Some((g, renamed, moved))
        })
        .expect("Micro has a group with a member and a non-member besides user 0");
    let renamed_display = "Renamed In Run (S8)";
    let renamed_dn = format!("{},{}", build_rdn("CN", renamed_display), s.users_ou());
    let moved_dn = format!(
        "{},{}",
        u(moved).dn.split_once(",OU=").unwrap().0,
        s.leavers_ou()
    );
    let exports = vec![
        AdExport::update(SeedObject::User(renamed))
            .with(
                "distinguishedName",
                AvcType::Update,
                AdValue::Text(renamed_dn.clone()),
            )
            .with(
                "displayName",
                AvcType::Update,
                AdValue::Text(renamed_display.into()),
            ),
        AdExport::update(SeedObject::User(moved)).with(
            "distinguishedName",
            AvcType::Update,
            AdValue::Text(moved_dn.clone()),
        ),
        AdExport::update(SeedObject::User(0)).with(
            "manager",
            AvcType::Update,
            AdValue::User(renamed),
        ),
        AdExport::update(SeedObject::Group(group))
            .with("member", AvcType::Add, AdValue::User(moved))
            .with("member", AvcType::Remove, AdValue::User(renamed)),
    ];
    stage_ad_exports(&env.db.pool, s, &exports, None)
        .await
        .unwrap();
    let (result, events) = env.run(&engine, &request).await;
    for item in events
        .items()
        .iter()
        .filter(|i| i.status == ItemStatus::Failed)
    {
        eprintln!("failed: {:?} {:?}", item.change_type, item.error_message);
    }
    assert_eq!(result.failed_count, 0, "{}", result.message);
    assert_eq!(result.success_count, 4, "{}", result.message);

    expected.move_entry(&u(renamed).dn, &renamed_dn);
    expected.replace_values(&renamed_dn, "displayName", [renamed_display]);
    expected.replace_values(&renamed_dn, "cn", [renamed_display]);
    expected.move_entry(&u(moved).dn, &moved_dn);
    let members: Vec<String> = s.groups[group]
        .members
        .iter()
        .filter(|&&m| m != renamed)
        .map(|&m| u(m).dn.clone())
        .chain([moved_dn.clone()])
        .collect();
    expected.replace_values(
        &s.groups[group].dn,
        "member",
        members.iter().map(String::as_str),
    );
    expected.rewrite_references(&u(renamed).dn, &renamed_dn);
    expected.rewrite_references(&u(moved).dn, &moved_dn);
    expected.replace_values(&u(0).dn, "manager", [renamed_dn.as_str()]);
    assert_directory_matches(&env.directory().await, &expected);
}

/// Runs the initial provisioning, checks that nothing failed, and confirms it as JIM's import
/// would, so that follow-ups can be staged on confirmed objects.
async fn provision_and_confirm(
    env: &AdEnv,
    engine: &Engine,
    request: &jim_export::config::ExportRequest,
) {
    let (first, _) = env.run(engine, request).await;
    assert_eq!(first.failed_count, 0, "{}", first.message);
    seed::confirm_ad_exported(&env.db.pool, &env.seeded)
        .await
        .unwrap();
}

/// Replaces `from` (a renamed or moved DN) in `dn` when it is that DN.
fn fix_moved(
    dn: &mut String,
    renamed_from: &str,
    renamed_to: &str,
    moved_from: &str,
    moved_to: &str,
) {
    if dn == renamed_from {
        *dn = renamed_to.to_string();
    } else if dn == moved_from {
        *dn = moved_to.to_string();
    }
}

/// Edits of an expected directory state in the seed's DN spelling.
trait Expect {
    fn replace_values<'a>(
        &mut self,
        dn: &str,
        attr: &str,
        values: impl IntoIterator<Item = &'a str>,
    );
    fn move_entry(&mut self, from: &str, to: &str);
    fn rewrite_references(&mut self, from: &str, to: &str);
}

impl Expect for seed::DirectoryState {
    fn replace_values<'a>(
        &mut self,
        dn: &str,
        attr: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) {
        let entry = self
            .entries
            .get_mut(dn)
            .unwrap_or_else(|| panic!("no {dn}"));
        let values: std::collections::BTreeSet<String> =
            values.into_iter().map(str::to_string).collect();
        if values.is_empty() {
            entry.remove(attr);
        } else {
            entry.insert(attr.to_string(), values);
        }
    }

    fn move_entry(&mut self, from: &str, to: &str) {
        let entry = self
            .entries
            .remove(from)
            .unwrap_or_else(|| panic!("no {from}"));
        self.entries.insert(to.to_string(), entry);
    }

    /// AD keeps references pointing at a renamed or moved object.
    fn rewrite_references(&mut self, from: &str, to: &str) {
        for e in self.entries.values_mut() {
            for attr in ["member", "manager", "managedBy"] {
                if let Some(v) = e.get_mut(attr)
                    && v.remove(from)
                {
                    v.insert(to.to_string());
                }
            }
        }
    }
}

/// A Create whose earlier attempt wrote the entry and died before recording it (its row left
/// `Executing` past the lease): the re-attempt meets the entry (68), finds it is its own (created
/// after the first attempt, holding the values it sends, its objectGUID held by no other object) and
/// adopts it, reading its `objectGUID`, without writing it (AD refuses any modify of the RDN
/// attribute, 67, even to the same value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattempted_create_adopts_the_entry_on_samba_ad() {
    let Some(env) = AdEnv::new("e2eadopt", Template::Nano).await else {
        return;
    };
    let engine = Engine::new();
    let request = env.request();
    let (first, _) = env.run(&engine, &request).await;
    assert_eq!(first.failed_count, 0, "{}", first.message);
    // As if the run had died after the user's Add: the row Executing with a stale lease, its changes
    // Pending, no anchor recorded.
    let user = env.seeded.users[1].clone();
    let group = env.seeded.groups[0].clone();
    for pe in [user.ids.pending_export, group.ids.pending_export] {
        strand_as_executing(&env, pe).await;
    }
    sqlx::query(
        r#"DELETE FROM "ConnectedSystemObjectAttributeValues" v USING "ConnectedSystemObjects" o
           WHERE v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."ExternalIdAttributeId" AND o."Id" = ANY($1)"#,
    )
    .bind(vec![user.ids.cso, group.ids.cso])
    .execute(&env.db.pool)
    .await
    .unwrap();
    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (2, 0),
        "{}",
        result.message
    );
    assert_eq!(result.metrics.recovered, 2);
    assert_directory_matches(&env.directory().await, &env.seeded.expected_directory());
    let anchors = env.anchors().await;
    for (cso, dn) in [(user.ids.cso, &user.dn), (group.ids.cso, &group.dn)] {
        let raw = env.object_guid_bytes(dn).await.unwrap();
        assert_eq!(
            anchors.get(&cso).and_then(|a| a.0),
            Some(Uuid::from_bytes_le(raw.try_into().unwrap())),
            "{dn}"
        );
    }
}

/// A naming collision met by a recovery: an account JIM never created holds the DN of a Create that a
/// crashed run had claimed (so the Create is a re-attempt). The recovery must not take it over: the
/// export fails as a first attempt would, naming the DN and why, and the account keeps its values and
/// its objectGUID; no CSO records it as an anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattempted_create_does_not_take_over_an_account_holding_its_dn_on_samba_ad() {
    let Some(env) = AdEnv::new("e2ecollide", Template::Nano).await else {
        return;
    };
    let user = env.seeded.users[0].clone();
    let parent = user.dn.split_once(',').map(|(_, p)| p.to_string()).unwrap();
    env.dc.ensure_ou(&parent).await.unwrap();
    let mut ldap = env.dc.admin_ldap().await.unwrap();
    let cn = user
        .dn
        .split(',')
        .next()
        .and_then(|rdn| rdn.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap();
    ldap.add(
        &user.dn,
        vec![
            ("objectClass", ["user"].into()),
            ("cn", [cn.as_str()].into()),
            ("sAMAccountName", ["collider"].into()),
            ("description", ["somebody else's account"].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let _ = ldap.unbind().await;
    let guid_before = env.object_guid_bytes(&user.dn).await.unwrap();
    strand_as_executing(&env, user.ids.pending_export).await;

    let (result, events) = env.run(&Engine::new(), &env.request()).await;
    assert_eq!(result.failed_count, 1, "{}", result.message);
    let item = events
        .items()
        .into_iter()
        .find(|i| i.pending_export_id == user.ids.pending_export)
        .expect("the collision is reported");
    let message = item.error_message.unwrap_or_default();
    assert!(message.contains("entryAlreadyExists"), "{message}");
    assert!(message.contains("not taken over"), "{message}");
    assert!(
        message.to_lowercase().contains(&user.dn.to_lowercase()),
        "{message}"
    );
    assert!(message.contains("collider"), "says what differs: {message}");
    let entry = env
        .dc
        .read_entry(&user.dn, &["sAMAccountName", "description"])
        .await
        .unwrap()
        .expect("the account is still there");
    assert_eq!(entry.first_text("sAMAccountName"), Some("collider"));
    assert_eq!(
        entry.first_text("description"),
        Some("somebody else's account")
    );
    assert_eq!(env.object_guid_bytes(&user.dn).await.unwrap(), guid_before);
    assert_eq!(
        env.anchors().await.get(&user.ids.cso).and_then(|a| a.0),
        None,
        "no CSO took the account's objectGUID"
    );
}

/// As if a run had died after sending the export: its row `Executing` with a lease long expired, its
/// changes Pending again.
async fn strand_as_executing(env: &AdEnv, pending_export: Uuid) {
    sqlx::query(
        r#"UPDATE "PendingExports" SET "Status" = 2, "LastAttemptedAt" = now() - interval '2 hours' WHERE "Id" = $1"#,
    )
    .bind(pending_export)
    .execute(&env.db.pool)
    .await
    .unwrap();
    sqlx::query(
        r#"UPDATE "PendingExportAttributeValueChanges" SET "Status" = 0, "ExportAttemptCount" = 0 WHERE "PendingExportId" = $1"#,
    )
    .bind(pending_export)
    .execute(&env.db.pool)
    .await
    .unwrap();
}

/// A re-attempted Create whose DN is free while another entry holds its `sAMAccountName`: AD answers
/// the Add with 68 although nothing is at the DN, so there is nothing to adopt. The engine sends the
/// Add once more (the entry might have vanished between the Add and the adoption) and then fails the
/// export with a message naming the clash, instead of spending every retry on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattempted_create_clashing_on_samaccountname_fails_on_samba_ad() {
    let Some(env) = AdEnv::new("e2eclash", Template::Nano).await else {
        return;
    };
    let engine = Engine::new();
    let mut request = env.request();
    request.options.max_operation_retries = 5;
    let (first, _) = env.run(&engine, &request).await;
    assert_eq!(first.failed_count, 0, "{}", first.message);
    // As if the run had died after the user's Add, and the entry had then been renamed in the
    // directory: its sAMAccountName lives on under another DN.
    let user = env.seeded.users[1].clone();
    strand_as_executing(&env, user.ids.pending_export).await;
    let mut ldap = env.dc.admin_ldap().await.unwrap();
    ldap.modifydn(&user.dn, "CN=Clash Holder", true, None)
        .await
        .unwrap()
        .success()
        .unwrap();
    let _ = ldap.unbind().await;

    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (0, 1),
        "{}",
        result.message
    );
    assert_eq!(
        result.metrics.retries, 1,
        "one more Add, not every retry: {:?}",
        result.metrics
    );
    let message: Option<String> =
        sqlx::query_scalar(r#"SELECT "LastErrorMessage" FROM "PendingExports" WHERE "Id" = $1"#)
            .bind(user.ids.pending_export)
            .fetch_one(&env.db.pool)
            .await
            .unwrap();
    let message = message.unwrap_or_default();
    assert!(
        message.contains("no entry is at that DN") && message.contains("sAMAccountName"),
        "{message}"
    );
    assert!(
        env.object_guid_bytes(&user.dn).await.is_none(),
        "nothing was created at {}",
        user.dn
    );
}

/// Small (100 users, 31 groups, 490 memberships) with Modify Batch Size 10, JIM's minimum: groups
/// are created with their first ten members and the rest follow in overflow modifies, on AD's
/// linked `member` attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_member_writes_on_samba_ad() {
    let Some(env) = AdEnv::new("e2echunk", Template::Small).await else {
        return;
    };
    let mut request = env.request();
    request.settings.modify_batch_size = 10;
    let (result, _) = env.run(&Engine::new(), &request).await;
    assert_eq!(
        (result.success_count, result.failed_count),
        (env.seeded.counts.pending_exports, 0),
        "{}",
        result.message
    );
    let overflow: u64 = env
        .seeded
        .groups
        .iter()
        .map(|g| (g.members.len() as u64).saturating_sub(1) / 10)
        .sum();
    assert!(overflow > 0);
    assert!(
        result.metrics.operations.modify >= overflow,
        "{:?}",
        result.metrics.operations
    );
    assert_directory_matches(&env.directory().await, &env.seeded.expected_directory());
}
