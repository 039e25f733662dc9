//! Scenario 8's OpenLDAP steps that involve export (`tests-and-scale.md` §2.3), replayed against real
//! PostgreSQL and slapd: initial sync, a forward membership change, drift in the target reasserted by
//! corrective exports, a new group, and a group deleted. Each step asserts the directory against the
//! source's membership and the database against JIM's states.

use chrono::Utc;
use jim_export::engine::Engine;
use jim_export::model::{
    ConnectedSystemObjectJoinType, ConnectedSystemObjectStatus, PendingExportAttributeChangeType,
    PendingExportChangeType, PendingExportStatus,
};
use jim_export_testkit::seed::{self, FollowUp, FollowUps, METAVERSE_GROUP_TYPE_ID, Template};
use jim_export_testkit::support::engine::{
    Env, assert_directory_matches, entry_values, read_directory,
};
use sqlx::PgPool;
use uuid::Uuid;

/// Stages one pending export of `change_type` for `cso` with member changes (MVO ids), as JIM's sync
/// stages a membership change or drift correction.
async fn stage_member_update(
    pool: &PgPool,
    system: i32,
    cso: Uuid,
    member_attr: i32,
    changes: &[(Uuid, PendingExportAttributeChangeType)],
) {
    let pe = Uuid::new_v4();
    sqlx::query(
        r#"INSERT INTO "PendingExports" ("Id", "ConnectedSystemId", "ConnectedSystemObjectId", "ChangeType", "Status", "ErrorCount", "MaxRetries", "HasUnresolvedReferences", "CreatedAt")
           VALUES ($1, $2, $3, $4, 0, 0, 5, true, $5)"#,
    )
    .bind(pe)
    .bind(system)
    .bind(cso)
    .bind(PendingExportChangeType::Update.as_i32())
    .bind(Utc::now())
    .execute(pool)
    .await
    .unwrap();
    for (mvo, kind) in changes {
        sqlx::query(
            r#"INSERT INTO "PendingExportAttributeValueChanges" ("Id", "PendingExportId", "AttributeId", "UnresolvedReferenceValue", "ChangeType", "Status", "ExportAttemptCount")
               VALUES ($1, $2, $3, $4, $5, 0, 0)"#,
        )
        .bind(Uuid::new_v4())
        .bind(pe)
        .bind(member_attr)
        .bind(mvo.to_string())
        .bind(kind.as_i32())
        .execute(pool)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_8_openldap_export_steps() {
    let env = Env::new(Template::Small).await;
    let pool = &env.db.pool;
    let system = env.seeded.connected_system_id();
    let engine = Engine::new();
    let request = env.request();
    let member_attr = env.seeded.group_attribute_id("member").unwrap();
    let mut expected = env.seeded.expected_directory().unwrap();

    // Step 1, InitialSync: every user and group, identical member counts.
    let (initial, _) = env.run(&engine, &request).await;
    assert_eq!(
        initial.failed_count + initial.deferred_count,
        0,
        "{}",
        initial.message
    );
    assert_directory_matches(&read_directory(&env.slapd).await, &expected);
    seed::confirm_exported(pool, &env.seeded).await.unwrap();

    // Step 2, ForwardSync: +2 members and -1 member on one group.
    let group = env.seeded.group(5).unwrap();
    let members: Vec<usize> = group.members().collect();
    let outsiders: Vec<usize> = (0..env.seeded.users())
        .filter(|u| !members.contains(u))
        .take(2)
        .collect();
    let staged = seed::stage_follow_ups(
        pool,
        &env.seeded,
        &FollowUps {
            seed: 11,
            explicit: vec![FollowUp::AddMembers {
                group: 5,
                users: outsiders.clone(),
            }],
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let (forward, _) = env.run(&engine, &request).await;
    assert_eq!(
        (forward.success_count, forward.failed_count),
        (1, 0),
        "{}",
        forward.message
    );
    staged.apply(&mut expected);
    seed::confirm_exported(pool, &env.seeded).await.unwrap();
    let staged = seed::stage_follow_ups(
        pool,
        &env.seeded,
        &FollowUps {
            seed: 12,
            explicit: vec![FollowUp::RemoveMembers {
                group: 5,
                users: vec![members[0]],
            }],
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let (forward, _) = env.run(&engine, &request).await;
    assert_eq!(
        (forward.success_count, forward.failed_count),
        (1, 0),
        "{}",
        forward.message
    );
    staged.apply(&mut expected);
    assert_directory_matches(&read_directory(&env.slapd).await, &expected);
    let in_group = entry_values(&env.slapd, &group.dn, "member").await.unwrap();
    assert_eq!(
        in_group.len(),
        members.len() + 2 - 1,
        "identical member count"
    );
    seed::confirm_exported(pool, &env.seeded).await.unwrap();

    // Step 3, DetectDrift: someone edits the target directly (adds a user to one group, removes a
    // member from another). Step 4, ReassertState: JIM's sync stages corrective exports, and the export
    // restores the source's membership.
    let drift_add = env.seeded.group(6).unwrap();
    let drift_remove = env.seeded.group(7).unwrap();
    let intruder = (0..env.seeded.users())
        .find(|u| !drift_add.members().any(|m| m == *u))
        .unwrap();
    let intruder_dn = env.seeded.user(intruder).unwrap().dn;
    let victim = drift_remove.members().next().unwrap();
    let victim_dn = env.seeded.user(victim).unwrap().dn;
    let mut ldap = env.slapd.admin_ldap().await.unwrap();
    ldap.modify(
        &drift_add.dn,
        vec![ldap3::Mod::Add("member", [intruder_dn.as_str()].into())],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &drift_remove.dn,
        vec![ldap3::Mod::Delete("member", [victim_dn.as_str()].into())],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    assert!(
        entry_values(&env.slapd, &drift_add.dn, "member")
            .await
            .unwrap()
            .contains(&intruder_dn)
    );
    stage_member_update(
        pool,
        system,
        drift_add.ids.cso,
        member_attr,
        &[(
            env.seeded.user_mvo_id(intruder),
            PendingExportAttributeChangeType::Remove,
        )],
    )
    .await;
    stage_member_update(
        pool,
        system,
        drift_remove.ids.cso,
        member_attr,
        &[(
            env.seeded.user_mvo_id(victim),
            PendingExportAttributeChangeType::Add,
        )],
    )
    .await;
    let (reassert, _) = env.run(&engine, &request).await;
    assert_eq!(
        (reassert.success_count, reassert.failed_count),
        (2, 0),
        "{}",
        reassert.message
    );
    assert_directory_matches(&read_directory(&env.slapd).await, &expected);

    // Step 5, NewGroup: a new source group with members is provisioned with target-domain member DNs.
    let (mvo, cso, pe) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let dn = format!("cn=Project-Scenario8Test,ou=Groups,{}", env.slapd.suffix());
    let group_type = env.seeded.group_type_id();
    let attr = |name: &str| env.seeded.group_attribute_id(name).unwrap();
    sqlx::query(r#"INSERT INTO "MetaverseObjects" ("Id", "Created", "TypeId", "Status", "DeletionInitiatedByType", "Origin", "CachedDisplayName", "ScopeReviewPending") VALUES ($1, now(), $2, 0, 0, 0, 'Project-Scenario8Test', false)"#)
        .bind(mvo)
        .bind(METAVERSE_GROUP_TYPE_ID)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        r#"INSERT INTO "ConnectedSystemObjects" ("Id", "Created", "TypeId", "ConnectedSystemId", "ExternalIdAttributeId", "SecondaryExternalIdAttributeId", "Status", "MetaverseObjectId", "JoinType", "ScopeReviewPending")
           VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, false)"#,
    )
    .bind(cso)
    .bind(group_type)
    .bind(system)
    .bind(attr("entryUUID"))
    .bind(attr("distinguishedName"))
    .bind(ConnectedSystemObjectStatus::PendingProvisioning.as_i32())
    .bind(mvo)
    .bind(ConnectedSystemObjectJoinType::Provisioned.as_i32())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(r#"INSERT INTO "ConnectedSystemObjectAttributeValues" ("Id", "AttributeId", "ConnectedSystemObjectId", "StringValue") VALUES ($1, $2, $3, $4)"#)
        .bind(Uuid::new_v4())
        .bind(attr("distinguishedName"))
        .bind(cso)
        .bind(&dn)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        r#"INSERT INTO "PendingExports" ("Id", "ConnectedSystemId", "ConnectedSystemObjectId", "ChangeType", "Status", "ErrorCount", "MaxRetries", "SourceMetaverseObjectId", "HasUnresolvedReferences", "CreatedAt")
           VALUES ($1, $2, $3, 0, 0, 0, 5, $4, true, now())"#,
    )
    .bind(pe)
    .bind(system)
    .bind(cso)
    .bind(mvo)
    .execute(pool)
    .await
    .unwrap();
    let new_members = [3usize, 4, 9];
    let mut rows: Vec<(
        i32,
        Option<String>,
        Option<String>,
        PendingExportAttributeChangeType,
    )> = vec![
        (
            attr("distinguishedName"),
            Some(dn.clone()),
            None,
            PendingExportAttributeChangeType::Update,
        ),
        (
            attr("objectClass"),
            Some("groupOfNames".into()),
            None,
            PendingExportAttributeChangeType::Add,
        ),
        (
            attr("cn"),
            Some("Project-Scenario8Test".into()),
            None,
            PendingExportAttributeChangeType::Update,
        ),
        (
            attr("description"),
            Some("Scenario 8 test group".into()),
            None,
            PendingExportAttributeChangeType::Update,
        ),
    ];
    for u in new_members {
        rows.push((
            attr("member"),
            None,
            Some(env.seeded.user_mvo_id(u).to_string()),
            PendingExportAttributeChangeType::Add,
        ));
    }
    for (attribute, string, unresolved, kind) in rows {
        sqlx::query(
            r#"INSERT INTO "PendingExportAttributeValueChanges" ("Id", "PendingExportId", "AttributeId", "StringValue", "UnresolvedReferenceValue", "ChangeType", "Status", "ExportAttemptCount")
               VALUES ($1, $2, $3, $4, $5, $6, 0, 0)"#,
        )
        .bind(Uuid::new_v4())
        .bind(pe)
        .bind(attribute)
        .bind(string)
        .bind(unresolved)
        .bind(kind.as_i32())
        .execute(pool)
        .await
        .unwrap();
    }
    let (new_group, _) = env.run(&engine, &request).await;
    assert_eq!(
        (new_group.success_count, new_group.failed_count),
        (1, 0),
        "{}",
        new_group.message
    );
    let want: std::collections::BTreeSet<String> = new_members
        .iter()
        .map(|u| env.seeded.user(*u).unwrap().dn)
        .collect();
    assert_eq!(
        entry_values(&env.slapd, &dn, "member")
            .await
            .expect("the new group exists"),
        want,
        "target-domain member DNs"
    );
    let status: i32 =
        sqlx::query_scalar(r#"SELECT "Status" FROM "PendingExports" WHERE "Id" = $1"#)
            .bind(pe)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(status, PendingExportStatus::Exported.as_i32());

    // Step 6, DeleteGroup: the source group is deleted, its Delete export removes it from the target.
    seed::confirm_exported(pool, &env.seeded).await.unwrap();
    let doomed = env.seeded.group(8).unwrap();
    let staged = seed::stage_follow_ups(
        pool,
        &env.seeded,
        &FollowUps {
            seed: 13,
            explicit: vec![FollowUp::DeleteGroup { group: 8 }],
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let (delete, _) = env.run(&engine, &request).await;
    assert_eq!(
        (delete.success_count, delete.failed_count),
        (1, 0),
        "{}",
        delete.message
    );
    assert!(
        entry_values(&env.slapd, &doomed.dn, "member")
            .await
            .is_none(),
        "the group is gone"
    );
    staged.apply(&mut expected);
    expected.entries.insert(
        dn.clone(),
        read_directory(&env.slapd).await.entries[&dn].clone(),
    );
    assert_directory_matches(&read_directory(&env.slapd).await, &expected);
    assert_eq!(env.executing().await, 0);
}
