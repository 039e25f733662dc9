//! `store::row_changes` (the benchmark floor's input) against the persist statement, on a real
//! PostgreSQL with a seeded connected system: for the same successful outcomes, the rows the persist
//! writes are exactly the ones `row_changes` lists, for the initial provisioning (creates, groups
//! with resolved member references) and for a follow-up round (updates, renames, moves, membership
//! changes, deletes).

use std::collections::{BTreeMap, BTreeSet};

use jim_export::config::{DatabaseConfig, RunOptions};
use jim_export::model::PendingExportChangeType;
use jim_export::outcome::ExportOutcome;
use jim_export::store::{ExportQueue, Pass, RowChanges, Store, row_changes};
use jim_export_testkit::Postgres;
use jim_export_testkit::seed::{self, FollowUps, SeedOptions, Template};
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// Claims every eligible export (plain pass first), resolves references, and takes each as a full
/// success: a fresh anchor and a DN for Creates.
async fn claim_all_as_successes(queue: &ExportQueue) -> Vec<ExportOutcome> {
    let mut outcomes = Vec::new();
    for pass in [Pass::Plain, Pass::References] {
        let mut cursor = None;
        loop {
            let mut page = queue.claim(pass, cursor, 100).await.expect("claim");
            cursor = page.cursor.or(cursor);
            queue
                .resolve_references(&mut page.exports)
                .await
                .expect("resolve");
            let last = page.is_last();
            for claimed in page.exports {
                outcomes.push(match claimed.export.change_type {
                    PendingExportChangeType::Create => {
                        let dn = format!("cn=created-{},dc=example,dc=org", claimed.export.id);
                        ExportOutcome::created(claimed, Some(Uuid::new_v4().to_string()), Some(dn))
                    }
                    _ => ExportOutcome::succeeded(claimed),
                });
            }
            if last {
                break;
            }
        }
    }
    outcomes
}

/// A CSO attribute value row: its CSO, attribute, and the slots the seeds use (text, GUID,
/// reference id and DN).
type ValueKey = (
    Uuid,
    i32,
    Option<String>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
);

async fn value_rows(pool: &PgPool, system: i32) -> BTreeMap<Uuid, ValueKey> {
    sqlx::query(
        r#"SELECT v."Id", v."ConnectedSystemObjectId", v."AttributeId", v."StringValue", v."GuidValue",
                  v."ReferenceValueId", v."UnresolvedReferenceValue"
           FROM "ConnectedSystemObjectAttributeValues" v
           JOIN "ConnectedSystemObjects" o ON o."Id" = v."ConnectedSystemObjectId"
           WHERE o."ConnectedSystemId" = $1"#,
    )
    .bind(system)
    .fetch_all(pool)
    .await
    .expect("value rows")
    .into_iter()
    .map(|r| {
        (
            r.get(0),
            (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)),
        )
    })
    .collect()
}

fn multiset<'a>(keys: impl Iterator<Item = &'a ValueKey>) -> BTreeMap<&'a ValueKey, usize> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// (Status, ExportAttemptCount, StringValue, UnresolvedReferenceValue, ResolvedReferenceCsoId) per change.
type ChangeRow = (i32, i32, Option<String>, Option<String>, Option<Uuid>);

async fn change_rows(pool: &PgPool, system: i32) -> BTreeMap<Uuid, ChangeRow> {
    sqlx::query(
        r#"SELECT a."Id", a."Status", a."ExportAttemptCount", a."StringValue",
                  a."UnresolvedReferenceValue", a."ResolvedReferenceCsoId"
           FROM "PendingExportAttributeValueChanges" a
           JOIN "PendingExports" p ON p."Id" = a."PendingExportId"
           WHERE p."ConnectedSystemId" = $1"#,
    )
    .bind(system)
    .fetch_all(pool)
    .await
    .expect("change rows")
    .into_iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
    .collect()
}

async fn exported(pool: &PgPool, system: i32) -> BTreeSet<Uuid> {
    sqlx::query_scalar(
        r#"SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 4"#,
    )
    .bind(system)
    .fetch_all(pool)
    .await
    .expect("exported")
    .into_iter()
    .collect()
}

/// Persists `outcomes` and checks that what changed is exactly `rc`.
async fn persist_and_compare(pool: &PgPool, queue: &ExportQueue, system: i32) -> RowChanges {
    let outcomes = claim_all_as_successes(queue).await;
    assert!(!outcomes.is_empty());
    let rc = row_changes(&outcomes, queue.schema());
    assert!(rc.not_modelled.is_empty(), "{:?}", rc.not_modelled);

    let (values0, changes0, exported0) = (
        value_rows(pool, system).await,
        change_rows(pool, system).await,
        exported(pool, system).await,
    );
    for chunk in outcomes.chunks(100) {
        let report = queue.persist(chunk).await.expect("persist");
        assert!(report.not_held.is_empty());
    }
    let (values1, changes1, exported1) = (
        value_rows(pool, system).await,
        change_rows(pool, system).await,
        exported(pool, system).await,
    );

    // Pending exports: exactly the listed ones became Exported.
    let newly: BTreeSet<Uuid> = exported1.difference(&exported0).copied().collect();
    assert_eq!(
        newly,
        rc.exported.iter().copied().collect(),
        "the exports that end Exported"
    );

    // Attribute value changes: the written ones moved to ExportedPendingConfirmation with one more
    // attempt; the resolved ones hold the DN and the CSO; nothing else changed.
    let written: BTreeSet<Uuid> = rc.written.iter().copied().collect();
    let resolved: BTreeMap<Uuid, (&str, Uuid)> = rc
        .resolutions
        .iter()
        .map(|r| (r.change_id, (r.value.as_str(), r.cso_id)))
        .collect();
    for (id, before) in &changes0 {
        let after = changes1.get(id).expect("no change row disappears");
        let mut want = before.clone();
        if written.contains(id) {
            want.0 = 1;
            want.1 += 1;
        }
        if let Some((dn, cso)) = resolved.get(id) {
            want.2 = Some(dn.to_string());
            want.3 = None;
            want.4 = Some(*cso);
        }
        assert_eq!(after, &want, "change {id}");
    }

    // CSO attribute values: the listed deletes are gone, the listed updates hold the listed values,
    // the listed inserts are there (under ids of the persist's own), and nothing else changed.
    let mut want: BTreeMap<Uuid, ValueKey> = values0.clone();
    for id in &rc.value_deletes {
        assert!(want.remove(id).is_some(), "a deleted row existed: {id}");
    }
    let key = |r: &jim_export::store::ValueRowChange| -> ValueKey {
        (
            r.cso_id,
            r.attribute_id,
            r.value.string.clone(),
            r.value.guid,
            r.reference_value_id,
            r.unresolved_reference_value.clone(),
        )
    };
    let mut inserted = Vec::new();
    for r in &rc.value_rows {
        if r.is_new {
            inserted.push(key(r));
        } else {
            assert!(
                want.insert(r.id, key(r)).is_some(),
                "an updated row existed: {r:?}"
            );
        }
    }
    let expected = multiset(want.values().chain(inserted.iter()));
    let actual = multiset(values1.values());
    assert_eq!(
        actual, expected,
        "the CSO attribute values after the persist"
    );
    rc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floors_rows_are_the_rows_the_persist_writes() {
    let pg = Postgres::shared().await.expect("postgres");
    let db = pg.jim_database().await.expect("database");
    let seeded = seed::seed(&db.pool, &SeedOptions::new(Template::Small))
        .await
        .expect("seed");
    let system = seeded.connected_system_id();
    let store = Store::connect(&DatabaseConfig::new(db.url.clone()))
        .await
        .expect("store");
    let queue = store
        .open(system, &RunOptions::default())
        .await
        .expect("queue");

    let initial = persist_and_compare(&db.pool, &queue, system).await;
    assert_eq!(initial.exported.len() as u64, seeded.counts.pending_exports);
    assert!(
        !initial.resolutions.is_empty(),
        "member references resolved"
    );
    assert!(
        initial.value_rows.iter().any(|r| r.is_new),
        "optimistic apply inserts"
    );

    seed::confirm_exported(&db.pool, &seeded)
        .await
        .expect("confirm");
    seed::stage_follow_ups(
        &db.pool,
        &seeded,
        &FollowUps {
            seed: 7,
            attribute_updates: 20,
            renames: 10,
            moves: 5,
            manager_changes: 10,
            member_add_groups: 5,
            member_remove_groups: 5,
            members_per_group: 5,
            user_deletes: 5,
            group_deletes: 1,
            ..FollowUps::default()
        },
    )
    .await
    .expect("follow-ups");
    let queue = store
        .open(system, &RunOptions::default())
        .await
        .expect("queue");
    let follow_ups = persist_and_compare(&db.pool, &queue, system).await;
    assert!(!follow_ups.value_deletes.is_empty(), "removals delete rows");
    assert!(!follow_ups.value_rows.is_empty(), "replacements write rows");
}
