//! End-to-end exports against real PostgreSQL (JIM's schema, seeded as JIM stages) and a real slapd:
//! the initial provisioning of users and groups, then a round of follow-up changes, asserting the
//! directory and database state, not just counts.

use jim_export::config::ExportRequest;
use jim_export::engine::Engine;
use jim_export::model::{ExportPhase, PendingExportChangeType, PendingExportStatus};
use jim_export::report::ItemStatus;
use jim_export_testkit::seed::{self, FollowUp, FollowUps, Template};
use jim_export_testkit::support::engine::{Env, assert_directory_matches};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_provisioning_writes_every_object_and_records_jims_state() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let request = env.request();
    let (result, events) = env.run(&engine, &request).await;

    let objects = env.seeded.counts.pending_exports;
    assert_eq!(result.total_pending_exports, objects);
    assert_eq!(result.success_count, objects, "{}", result.message);
    assert_eq!(
        (
            result.failed_count,
            result.deferred_count,
            result.partially_exported_count
        ),
        (0, 0, 0)
    );
    assert!(
        result.message.starts_with(&format!(
            "Export complete: {objects} succeeded, 0 failed, 0 deferred"
        )),
        "{}",
        result.message
    );
    assert!(!result.cancelled);

    // The directory holds exactly the seeded objects with their values and memberships.
    let expected = env.seeded.expected_directory().unwrap();
    assert_directory_matches(&env.directory().await, &expected);

    // JIM's state: every export Exported, every change awaiting confirmation once, CSOs still
    // PendingProvisioning with their entryUUID anchor written.
    let counts = env.pending_export_counts().await;
    assert_eq!(
        counts.get(&(
            PendingExportStatus::Exported.as_i32(),
            PendingExportChangeType::Create.as_i32()
        )),
        Some(&(objects as i64)),
        "{counts:?}"
    );
    let row = sqlx::query(
        r#"SELECT count(*) FILTER (WHERE c."Status" = 1 AND c."ExportAttemptCount" = 1 AND c."LastExportedAt" IS NOT NULL),
                  count(*) FILTER (WHERE c."UnresolvedReferenceValue" IS NOT NULL),
                  count(*)
           FROM "PendingExportAttributeValueChanges" c JOIN "PendingExports" p ON p."Id" = c."PendingExportId"
           WHERE p."ConnectedSystemId" = $1"#,
    )
    .bind(env.seeded.connected_system_id())
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    let (confirmed, unresolved, all): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (confirmed, unresolved),
        (all, 0),
        "every change ExportedPendingConfirmation, references resolved"
    );
    let anchors: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM "ConnectedSystemObjects" o
           JOIN "ConnectedSystemObjectAttributeValues" v ON v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."ExternalIdAttributeId"
           WHERE o."ConnectedSystemId" = $1 AND o."Status" = 2 AND v."StringValue" IS NOT NULL"#,
    )
    .bind(env.seeded.connected_system_id())
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(
        anchors, objects as i64,
        "each CSO got its entryUUID and stays PendingProvisioning"
    );
    assert_eq!(env.executing().await, 0);

    // Reports: one item per export, each with its provenance and its new anchor.
    let items = events.items();
    assert_eq!(items.len() as u64, objects);
    assert!(items.iter().all(|i| i.status == ItemStatus::Succeeded
        && i.provisioned
        && i.source_metaverse_object_id.is_some()));
    assert!(items.iter().all(|i| {
        i.anchor_changes
            .iter()
            .any(|a| a.attribute_name == "entryUUID")
    }));
    let progress = events.progress.lock().unwrap();
    assert_eq!(
        progress.first().map(|p| p.phase),
        Some(ExportPhase::Preparing)
    );
    assert_eq!(
        progress.last().map(|p| (p.phase, p.processed)),
        Some((ExportPhase::Completed, objects))
    );
    let logs = events.logs.lock().unwrap();
    assert!(
        logs.iter().any(|l| l
            .message
            .starts_with("MetricsCheckpoint: Export processed=")),
        "a MetricsCheckpoint per flush"
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.level == jim_export::engine::LogLevel::Error)
    );
    assert!(result.metrics.sql_statements > 0 && result.metrics.operations.add >= objects);
    assert!(result.metrics.time_to_first_write_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_changes_converge_the_directory() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let mut request = env.request();
    // Moves go to ou=Alumni, which the directory does not have yet: the engine creates it.
    request.settings.create_containers_as_needed = true;
    provision_and_confirm(&env, &engine, &request).await;

    let follow_ups = FollowUps {
        seed: 7,
        attribute_updates: 5,
        renames: 3,
        moves: 2,
        manager_changes: 3,
        member_add_groups: 3,
        member_remove_groups: 3,
        members_per_group: 4,
        user_deletes: 2,
        group_deletes: 1,
        ..FollowUps::default()
    };
    let staged = seed::stage_follow_ups(&env.db.pool, &env.seeded, &follow_ups)
        .await
        .unwrap();
    let (second, events) = env.run(&engine, &request).await;
    for item in events
        .items()
        .iter()
        .filter(|i| i.status == ItemStatus::Failed)
    {
        eprintln!("failed: {:?} {:?}", item.change_type, item.error_message);
    }
    assert_eq!(
        second.success_count as usize,
        staged.pending_exports(),
        "{}",
        second.message
    );
    assert_eq!(second.failed_count, 0, "{}", second.message);
    assert_eq!(
        second.created_container_external_ids,
        vec![format!("ou=Alumni,{}", env.slapd.suffix())]
    );

    let mut expected = env.seeded.expected_directory().unwrap();
    staged.apply(&mut expected);
    assert_directory_matches(&env.directory().await, &expected);
    assert_eq!(env.executing().await, 0);
    let items = events.items();
    assert!(
        items
            .iter()
            .filter(|i| i.change_type == PendingExportChangeType::Delete)
            .all(|i| i.object_change_type == jim_export::model::ObjectChangeType::Deprovisioned)
    );
    assert!(
        items.iter().any(|i| i
            .anchor_changes
            .iter()
            .any(|a| a.attribute_name == "distinguishedName")),
        "renames and moves report the new DN"
    );
}

/// Membership removals load only a few of a group's member rows (`store::sql`, `load_tail!`), yet
/// the placeholder rule must still see exactly when they empty a `groupOfNames`: a group losing
/// every member keeps the placeholder; a group losing three of eight or more (the loaded sample
/// comes back full) gets none. The CSOs' member rows follow the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_removals_keep_the_placeholder_rule_exact() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let request = env.request();
    provision_and_confirm(&env, &engine, &request).await;

    let mut groups: Vec<_> = (0..env.seeded.groups())
        .filter_map(|g| env.seeded.group(g))
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.member_count()));
    let (emptied, thinned) = (&groups[1], &groups[0]);
    assert!(
        emptied.member_count() >= 3 && thinned.member_count() >= 8,
        "the template's largest groups have {} and {} members",
        thinned.member_count(),
        emptied.member_count()
    );
    let follow_ups = FollowUps {
        explicit: vec![
            FollowUp::RemoveMembers {
                group: emptied.index,
                users: emptied.members().collect(),
            },
            FollowUp::RemoveMembers {
                group: thinned.index,
                users: thinned.members().take(3).collect(),
            },
        ],
        ..FollowUps::default()
    };
    let staged = seed::stage_follow_ups(&env.db.pool, &env.seeded, &follow_ups)
        .await
        .unwrap();
    assert_eq!(staged.pending_exports(), 2);
    let (second, _) = env.run(&engine, &request).await;
    assert_eq!(second.failed_count, 0, "{}", second.message);
    assert_eq!(second.success_count, 2, "{}", second.message);

    let mut expected = env.seeded.expected_directory().unwrap();
    staged.apply(&mut expected);
    let actual = env.directory().await;
    assert_eq!(
        actual.values(&emptied.dn, "member"),
        ["cn=placeholder".to_string()].into(),
        "the emptied group holds the placeholder"
    );
    let kept = expected.values(&thinned.dn, "member");
    assert_eq!(kept.len(), thinned.member_count() - 3);
    assert_eq!(
        actual.values(&thinned.dn, "member"),
        kept,
        "the thinned group keeps its other members and no placeholder"
    );

    let member = env.seeded.group_attribute_id("member").unwrap();
    let rows = |cso: uuid::Uuid| {
        let pool = env.db.pool.clone();
        async move {
            sqlx::query(
                r#"SELECT count(*) FROM "ConnectedSystemObjectAttributeValues"
                   WHERE "ConnectedSystemObjectId" = $1 AND "AttributeId" = $2"#,
            )
            .bind(cso)
            .bind(member)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get::<i64, _>(0)
        }
    };
    assert_eq!(rows(emptied.ids.cso).await, 0);
    assert_eq!(
        rows(thinned.ids.cso).await as usize,
        thinned.member_count() - 3
    );
}

/// A member or manager reference to a user that the same run renames or moves names the user's new
/// DN. The renames are plain exports and the references wait for the reference pass, which resolves
/// them from the CSOs' DNs when it claims them, possibly before the renames' new DNs are persisted:
/// the engine must still write the DN the user has once renamed, never the old one (OpenLDAP without
/// refint would keep a member pointing at nothing; AD refuses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_to_users_renamed_in_the_same_run_name_their_new_dn() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let mut request = env.request();
    request.settings.create_containers_as_needed = true;
    provision_and_confirm(&env, &engine, &request).await;

    let group = env.seeded.group(0).unwrap();
    let members: std::collections::HashSet<usize> = group.members().collect();
    let outsiders: Vec<usize> = (0..env.seeded.users())
        .filter(|u| !members.contains(u))
        .take(7)
        .collect();
    assert_eq!(outsiders.len(), 7, "the template has users outside group 0");
    let (renamed, moved, subordinate) = (&outsiders[..3], &outsiders[3..5], outsiders[6]);
    // A member renamed and removed from the group in the same run: slapd keeps the DN it was
    // added with, so the removal must name the old DN, whenever its resolution ran.
    let leaving = group.members().next().expect("group 0 has members");
    let mut explicit: Vec<FollowUp> = renamed
        .iter()
        .chain([leaving].iter())
        .map(|&user| FollowUp::Rename { user })
        .chain(moved.iter().map(|&user| FollowUp::Move { user }))
        .collect();
    explicit.push(FollowUp::AddMembers {
        group: group.index,
        users: outsiders[..6].to_vec(),
    });
    explicit.push(FollowUp::RemoveMembers {
        group: group.index,
        users: vec![leaving],
    });
    explicit.push(FollowUp::ChangeManager {
        user: subordinate,
        manager: renamed[0],
    });
    let follow_ups = FollowUps {
        explicit,
        ..FollowUps::default()
    };
    let staged = seed::stage_follow_ups(&env.db.pool, &env.seeded, &follow_ups)
        .await
        .unwrap();
    assert_eq!(staged.pending_exports(), 8);
    let (second, _) = env.run(&engine, &request).await;
    assert_eq!(second.failed_count, 0, "{}", second.message);
    assert_eq!(second.success_count, 8, "{}", second.message);

    let actual = env.directory().await;
    let member_values = actual.values(&group.dn, "member");
    for &user in renamed.iter().chain(moved) {
        let e = staged
            .export_of(seed::SeedObject::User(user))
            .expect("the user's rename or move is staged");
        let new_dn = e.new_dn.as_deref().expect("a rename or move has a new DN");
        assert!(
            member_values.contains(new_dn),
            "the group names user {user} by its new DN {new_dn}: {member_values:?}"
        );
        assert!(
            !member_values.contains(&e.dn),
            "the group does not name user {user} by its old DN {}",
            e.dn
        );
    }
    let left = staged
        .export_of(seed::SeedObject::User(leaving))
        .expect("the leaving member's rename is staged");
    assert!(
        !member_values.contains(&left.dn)
            && !member_values.contains(left.new_dn.as_deref().unwrap()),
        "the renamed member is no longer in the group: {member_values:?}"
    );
    let manager_dn = staged
        .export_of(seed::SeedObject::User(renamed[0]))
        .and_then(|e| e.new_dn.clone())
        .unwrap();
    let subordinate_dn = &staged
        .export_of(seed::SeedObject::User(subordinate))
        .unwrap()
        .dn;
    assert_eq!(
        actual.values(subordinate_dn, "manager"),
        [manager_dn].into(),
        "the manager is named by its new DN"
    );
    let mut expected = env.seeded.expected_directory().unwrap();
    staged.apply(&mut expected);
    assert_directory_matches(&actual, &expected);

    // The change rows hold the DN that was sent, for JIM's confirming import to compare.
    let change_ids: Vec<uuid::Uuid> = staged
        .export_of(seed::SeedObject::Group(group.index))
        .unwrap()
        .changes
        .iter()
        .map(|c| c.id)
        .collect();
    let recorded: std::collections::BTreeSet<String> = sqlx::query_scalar(
        r#"SELECT "StringValue" FROM "PendingExportAttributeValueChanges" WHERE "Id" = ANY($1)"#,
    )
    .bind(&change_ids)
    .fetch_all(&env.db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect::<Option<_>>()
    .expect("every member change holds its DN");
    let sent: std::collections::BTreeSet<String> = outsiders[..6]
        .iter()
        .map(|&u| {
            let e = staged.export_of(seed::SeedObject::User(u));
            e.and_then(|e| e.new_dn.clone())
                .unwrap_or_else(|| env.seeded.user(u).unwrap().dn)
        })
        .chain([left.dn.clone()])
        .collect();
    assert_eq!(
        recorded, sent,
        "the adds name new DNs, the removal the old one"
    );
}

/// A member Add that an earlier run resolved (its DN stored, its export left to retry after a
/// failure) names a user renamed since: the claim reads the user's DN now and the engine writes
/// that, where JIM would send the DN it stored (slapd keeps a member pointing at nothing; AD refuses
/// it). The change row then holds the DN sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_resolved_before_its_target_was_renamed_names_the_new_dn() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let request = env.request();
    provision_and_confirm(&env, &engine, &request).await;

    let group = env.seeded.group(0).unwrap();
    let user = (0..env.seeded.users())
        .find(|u| !group.members().any(|m| m == *u))
        .expect("a user outside group 0");
    let seeded_user = env.seeded.user(user).unwrap();
    // The user is renamed first, by a run of its own.
    let rename = seed::stage_follow_ups(
        &env.db.pool,
        &env.seeded,
        &FollowUps {
            seed: 11,
            explicit: vec![FollowUp::Rename { user }],
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let (renamed, _) = env.run(&engine, &request).await;
    assert_eq!(renamed.success_count, 1, "{}", renamed.message);
    seed::confirm_exported(&env.db.pool, &env.seeded)
        .await
        .unwrap();
    let new_dn = rename.exports[0].new_dn.clone().unwrap();

    // A member Add of the user, as an earlier run left it: resolved to the DN the user had then.
    let add = seed::stage_follow_ups(
        &env.db.pool,
        &env.seeded,
        &FollowUps {
            seed: 12,
            explicit: vec![FollowUp::AddMembers {
                group: group.index,
                users: vec![user],
            }],
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let export = &add.exports[0];
    let change = export.changes[0].id;
    sqlx::query(
        r#"UPDATE "PendingExportAttributeValueChanges"
           SET "StringValue" = $2, "UnresolvedReferenceValue" = NULL, "ResolvedReferenceCsoId" = $3
           WHERE "Id" = $1"#,
    )
    .bind(change)
    .bind(&seeded_user.dn)
    .bind(seeded_user.ids.cso)
    .execute(&env.db.pool)
    .await
    .unwrap();
    sqlx::query(r#"UPDATE "PendingExports" SET "HasUnresolvedReferences" = false WHERE "Id" = $1"#)
        .bind(export.pending_export_id)
        .execute(&env.db.pool)
        .await
        .unwrap();

    let (second, _) = env.run(&engine, &request).await;
    assert_eq!(second.success_count, 1, "{}", second.message);
    assert_eq!(second.failed_count, 0, "{}", second.message);
    let members = env.directory().await.values(&group.dn, "member");
    assert!(
        members.contains(&new_dn),
        "the group names the user by its DN now, {new_dn}: {members:?}"
    );
    assert!(!members.contains(&seeded_user.dn));
    let recorded: Option<String> = sqlx::query_scalar(
        r#"SELECT "StringValue" FROM "PendingExportAttributeValueChanges" WHERE "Id" = $1"#,
    )
    .bind(change)
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(recorded.as_deref(), Some(new_dn.as_str()));
}

/// Runs the initial provisioning, checks that nothing failed, and confirms it as JIM's import
/// would, so that a round of follow-ups can be staged on confirmed objects.
async fn provision_and_confirm(env: &Env, engine: &Engine, request: &ExportRequest) {
    let (first, _) = env.run(engine, request).await;
    assert_eq!(first.failed_count, 0, "{}", first.message);
    seed::confirm_exported(&env.db.pool, &env.seeded)
        .await
        .unwrap();
}

/// Pending export `id` is back in the queue as Pending with no error counted (a deferral).
async fn assert_deferred_without_an_error(env: &Env, id: uuid::Uuid) {
    let (status, errors): (i32, i32) =
        sqlx::query_as(r#"SELECT "Status", "ErrorCount" FROM "PendingExports" WHERE "Id" = $1"#)
            .bind(id)
            .fetch_one(&env.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (status, errors),
        (PendingExportStatus::Pending.as_i32(), 0),
        "deferred without an error"
    );
}

/// Stages one round: `dn_change` of a user outside group 0, and a member Add of that user to group 0.
/// Returns group 0, the user's staged export and the group's pending export.
async fn stage_dn_change_and_member_add(
    env: &Env,
    dn_change: impl FnOnce(usize) -> FollowUp,
) -> (seed::SeededGroup, seed::StagedExport, uuid::Uuid) {
    let group = env.seeded.group(0).unwrap();
    let user = (0..env.seeded.users())
        .find(|u| !group.members().any(|m| m == *u))
        .expect("a user outside group 0");
    let staged = seed::stage_follow_ups(
        &env.db.pool,
        &env.seeded,
        &FollowUps {
            explicit: vec![
                dn_change(user),
                FollowUp::AddMembers {
                    group: group.index,
                    users: vec![user],
                },
            ],
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let user_export = staged
        .export_of(seed::SeedObject::User(user))
        .unwrap()
        .clone();
    let add = staged
        .export_of(seed::SeedObject::Group(group.index))
        .unwrap()
        .pending_export_id;
    (group, user_export, add)
}

/// A move the plan refuses (its new DN is outside the containers the system manages) never reaches
/// the directory, so a member Add naming the user in the same run does not wait for it: it goes at
/// once, naming the DN the user keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_add_does_not_wait_for_a_move_the_plan_refuses() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let mut request = env.request();
    provision_and_confirm(&env, &engine, &request).await;

    let (group, moved, _) =
        stage_dn_change_and_member_add(&env, |user| FollowUp::Move { user }).await;
    let new_dn = moved.new_dn.clone().unwrap();
    let suffix = env.slapd.suffix();
    assert!(
        !new_dn.ends_with(&format!("ou=People,{suffix}")),
        "the move leaves ou=People: {new_dn}"
    );
    request.settings.managed_scope = ["People", "Groups"]
        .iter()
        .map(|ou| jim_export::config::ScopeContainer {
            dn: format!("ou={ou},{suffix}"),
            scope: Some(jim_export::model::ConnectedSystemContainerScope::Subtree),
            excluded: false,
        })
        .collect();

    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        (
            result.success_count,
            result.failed_count,
            result.deferred_count
        ),
        (1, 1, 0),
        "the move fails, the member Add goes: {}",
        result.message
    );
    let members = env.directory().await.values(&group.dn, "member");
    assert!(
        members.contains(&moved.dn),
        "added by the DN the user keeps: {members:?}"
    );
    let message: Option<String> =
        sqlx::query_scalar(r#"SELECT "LastErrorMessage" FROM "PendingExports" WHERE "Id" = $1"#)
            .bind(moved.pending_export_id)
            .fetch_one(&env.db.pool)
            .await
            .unwrap();
    assert!(
        message.as_deref().is_some_and(|m| m.contains("outside")),
        "{message:?}"
    );
}

/// A rename refused by an entry already at its new DN, and a member Add of the same user in the same
/// run: slapd keeps the DN a member is added with, so the Add waits for the rename instead of naming
/// the old DN (deferred, no error counted), and once the obstacle is gone the next run renames the
/// user and adds it by its new DN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_add_waits_for_a_refused_rename_of_its_member() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let request = env.request();
    provision_and_confirm(&env, &engine, &request).await;

    let (group, rename, add) =
        stage_dn_change_and_member_add(&env, |user| FollowUp::Rename { user }).await;
    let new_dn = rename.new_dn.clone().unwrap();
    let mut ldap = env.slapd.admin_ldap().await.unwrap();
    let (attr, value) = new_dn
        .split(',')
        .next()
        .and_then(|rdn| rdn.split_once('='))
        .unwrap();
    let r = ldap
        .add(
            &new_dn,
            vec![
                ("objectClass", ["inetOrgPerson"].into()),
                ("sn", ["Obstacle"].into()),
                ("cn", ["Obstacle"].into()),
                (attr, [value].into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.rc, 0, "{r}");

    let (blocked, _) = env.run(&engine, &request).await;
    assert_eq!(
        (blocked.failed_count, blocked.deferred_count),
        (1, 1),
        "{}",
        blocked.message
    );
    let members = env.directory().await.values(&group.dn, "member");
    assert!(
        !members.contains(&rename.dn),
        "the old DN was not added: {members:?}"
    );
    assert_deferred_without_an_error(&env, add).await;

    assert_eq!(ldap.delete(&new_dn).await.unwrap().rc, 0);
    env.retry_now().await;
    let (after, _) = env.run(&engine, &request).await;
    assert_eq!(after.success_count, 2, "{}", after.message);
    let members = env.directory().await.values(&group.dn, "member");
    assert!(members.contains(&new_dn), "{members:?}");
    assert!(!members.contains(&rename.dn), "{members:?}");
}

/// A rename JIM staged that another run is to make (here: waiting for its retry, then given up,
/// `Failed`), and a member Add of the same user that this run claims: slapd keeps the DN a member is
/// added with, so the Add is deferred (no error counted) instead of naming the DN the rename is
/// about to leave, both when this run resolves the reference and when an earlier run did. Once the
/// rename is due again, one run renames the user and adds it by its new DN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_add_waits_for_a_rename_another_run_makes() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let request = env.request();
    provision_and_confirm(&env, &engine, &request).await;

    let (group, rename, add) =
        stage_dn_change_and_member_add(&env, |user| FollowUp::Rename { user }).await;
    let new_dn = rename.new_dn.clone().unwrap();
    // Sets the rename's row by `sql`, makes the member Add due, and runs once: the run's counts
    // (succeeded, failed, deferred), its message, and the group's members after it.
    let step = async |sql: &'static str| {
        sqlx::query(sql)
            .bind(rename.pending_export_id)
            .execute(&env.db.pool)
            .await
            .unwrap();
        sqlx::query(r#"UPDATE "PendingExports" SET "NextRetryAt" = NULL WHERE "Id" = $1"#)
            .bind(add)
            .execute(&env.db.pool)
            .await
            .unwrap();
        let (result, _) = env.run(&engine, &request).await;
        let counts = (
            result.success_count,
            result.failed_count,
            result.deferred_count,
        );
        let members = env.directory().await.values(&group.dn, "member");
        (counts, result.message, members)
    };

    // The rename waits for its retry; the member Add is due and is resolved by this run.
    let (counts, message, members) = step(
        r#"UPDATE "PendingExports" SET "NextRetryAt" = now() + interval '1 hour' WHERE "Id" = $1"#,
    )
    .await;
    assert_eq!(counts, (0, 0, 1), "the member Add is deferred: {message}");
    assert!(
        !members.contains(&rename.dn),
        "the DN the rename leaves was not added: {members:?}"
    );
    assert_deferred_without_an_error(&env, add).await;
    let resolved: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM "PendingExportAttributeValueChanges"
           WHERE "PendingExportId" = $1 AND "ResolvedReferenceCsoId" IS NOT NULL
             AND "UnresolvedReferenceValue" IS NULL"#,
    )
    .bind(add)
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(resolved, 1, "the deferral kept the resolution");

    // The rename given up (Failed); the member Add, resolved by the earlier run, is due again.
    let (counts, message, members) = step(
        r#"UPDATE "PendingExports" SET "Status" = 3, "ErrorCount" = "MaxRetries", "NextRetryAt" = NULL
           WHERE "Id" = $1"#,
    )
    .await;
    assert_eq!(
        counts,
        (0, 0, 1),
        "deferred again, the reference read as an earlier run resolved it: {message}"
    );
    assert!(!members.contains(&rename.dn), "{members:?}");

    // The operator resets the rename: one run makes both, the Add naming the new DN.
    let (counts, message, members) = step(
        r#"UPDATE "PendingExports" SET "Status" = 0, "ErrorCount" = 0, "NextRetryAt" = NULL
           WHERE "Id" = $1"#,
    )
    .await;
    assert_eq!(counts, (2, 0, 0), "{message}");
    assert!(members.contains(&new_dn), "{members:?}");
    assert!(!members.contains(&rename.dn), "{members:?}");
}

/// Two users each renamed and each made the other's manager in the same export (JIM stages one
/// export per object), claimed in different pages: neither export waits for the other's rename (each
/// would be deferred for the other on every run), so both complete in the first run, and the one
/// claimed second names the first one's new DN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_renames_that_name_each_other_do_not_wait_for_each_other() {
    let env = Env::new(Template::Small).await;
    let engine = Engine::new();
    let mut request = env.request();
    provision_and_confirm(&env, &engine, &request).await;
    let (a, b) = (1, 2);
    let staged = seed::stage_follow_ups(
        &env.db.pool,
        &env.seeded,
        &FollowUps {
            explicit: vec![FollowUp::Rename { user: a }, FollowUp::Rename { user: b }],
            ..FollowUps::default()
        },
    )
    .await
    .unwrap();
    let export_of = |u| staged.export_of(seed::SeedObject::User(u)).unwrap().clone();
    let (ea, eb) = (export_of(a), export_of(b));
    let (new_a, new_b) = (ea.new_dn.clone().unwrap(), eb.new_dn.clone().unwrap());
    // The seeder stages one kind per object: each rename gains the manager change JIM would stage
    // beside it, unresolved (the other user's MVO id), which moves it to the reference pass.
    let manager = env.seeded.user_attribute_id("manager").unwrap();
    for (export, other) in [(&ea, b), (&eb, a)] {
        let mvo = env.seeded.user(other).unwrap().ids.mvo;
        sqlx::query(
            r#"INSERT INTO "PendingExportAttributeValueChanges"
                   ("Id", "PendingExportId", "AttributeId", "ChangeType", "Status", "ExportAttemptCount",
                    "UnresolvedReferenceValue")
               VALUES ($1, $2, $3, 1, 0, 0, $4)"#,
        )
        .bind(uuid::Uuid::new_v4())
        .bind(export.pending_export_id)
        .bind(manager)
        .bind(mvo.to_string())
        .execute(&env.db.pool)
        .await
        .unwrap();
        sqlx::query(
            r#"UPDATE "PendingExports" SET "HasUnresolvedReferences" = true WHERE "Id" = $1"#,
        )
        .bind(export.pending_export_id)
        .execute(&env.db.pool)
        .await
        .unwrap();
    }
    request.options.page_size = 1;

    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        (
            result.success_count,
            result.failed_count,
            result.deferred_count
        ),
        (2, 0, 0),
        "{}",
        result.message
    );
    let directory = env.directory().await;
    let (manager_a, manager_b) = (
        directory.values(&new_a, "manager"),
        directory.values(&new_b, "manager"),
    );
    // The first claimed names the other's DN of that time (as JIM would, and as a cycle within a
    // page goes); the second names the first's new DN.
    let a_first = manager_a.contains(&eb.dn) && manager_b.contains(&new_a);
    let b_first = manager_b.contains(&ea.dn) && manager_a.contains(&new_b);
    assert!(a_first || b_first, "{manager_a:?} {manager_b:?}");
}
