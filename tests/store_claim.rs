//! The store's claim side against a real PostgreSQL with JIM's schema: the eligibility predicate row by
//! row, keyset paging, concurrent claimers, leases, release, the schema guard, bad rows and the
//! operator queries.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Duration as Minutes;
use jim_export::Error;
use jim_export::config::RunOptions;
use jim_export::model::{PendingExportStatus, ValueSlots};
use jim_export::outcome::ExportOutcome;
use jim_export::store::marker::Marker;
use jim_export::store::{ExportQueue, Pass, Store};
use jim_export_testkit::Postgres;
use jim_export_testkit::support::store::*;
use uuid::Uuid;

async fn claim_all(q: &ExportQueue, pass: Pass, page: u32) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let p = q.claim(pass, cursor, page).await.expect("claim");
        ids.extend(p.exports.iter().map(|e| e.id()));
        ids.extend(p.bad_rows.iter().map(|b| b.pending_export_id));
        cursor = p.cursor.or(cursor);
        if p.is_last() {
            return ids;
        }
    }
}

#[tokio::test]
async fn eligibility_predicate_row_by_row() {
    let fx = Fixture::new().await;
    let now = fx.now().await;
    let cso = || fx.cso(false, Some("CN=x"), None, 2);
    let mut eligible = Vec::new();
    let mut ineligible = Vec::new();

    // Statuses: Pending, ExportNotConfirmed and (for an Update with a change to send) Exported are
    // eligible; a fresh Executing row and a Failed row are not.
    eligible.push(fx.pe(CREATE, Some(cso().await)).insert(&fx).await);
    let enc = fx
        .pe(UPDATE, Some(cso().await))
        .status(EXPORT_NOT_CONFIRMED)
        .insert(&fx)
        .await;
    fx.avc(
        enc,
        fx.attrs.mail,
        ADD,
        AVC_EXPORTED_NOT_CONFIRMED,
        ValueSlots::text("a@x"),
    )
    .await;
    eligible.push(enc);
    let exported_update = fx
        .pe(UPDATE, Some(cso().await))
        .status(EXPORTED)
        .insert(&fx)
        .await;
    fx.avc(
        exported_update,
        fx.attrs.mail,
        ADD,
        AVC_PENDING,
        ValueSlots::text("b@x"),
    )
    .await;
    eligible.push(exported_update);
    ineligible.push(
        fx.pe(CREATE, Some(cso().await))
            .status(EXECUTING)
            .attempted(now)
            .insert(&fx)
            .await,
    );
    ineligible.push(
        fx.pe(CREATE, Some(cso().await))
            .status(FAILED)
            .errors(5, 5)
            .insert(&fx)
            .await,
    );
    // Retry time: future excluded, past included.
    ineligible.push(
        fx.pe(CREATE, Some(cso().await))
            .next_retry(now + Minutes::minutes(3))
            .insert(&fx)
            .await,
    );
    eligible.push(
        fx.pe(CREATE, Some(cso().await))
            .next_retry(now - Minutes::minutes(3))
            .insert(&fx)
            .await,
    );
    // Retry count: ErrorCount == MaxRetries excluded, below included.
    ineligible.push(
        fx.pe(CREATE, Some(cso().await))
            .errors(5, 5)
            .insert(&fx)
            .await,
    );
    eligible.push(
        fx.pe(CREATE, Some(cso().await))
            .errors(4, 5)
            .insert(&fx)
            .await,
    );
    // Updates need a Pending or ExportedNotConfirmed change.
    let awaiting = fx.pe(UPDATE, Some(cso().await)).insert(&fx).await;
    fx.avc(
        awaiting,
        fx.attrs.mail,
        ADD,
        AVC_EXPORTED_PENDING_CONFIRMATION,
        ValueSlots::text("c@x"),
    )
    .await;
    ineligible.push(awaiting);
    let only_failed = fx.pe(UPDATE, Some(cso().await)).insert(&fx).await;
    fx.avc(
        only_failed,
        fx.attrs.mail,
        ADD,
        AVC_FAILED,
        ValueSlots::text("d@x"),
    )
    .await;
    ineligible.push(only_failed);
    ineligible.push(fx.pe(UPDATE, Some(cso().await)).insert(&fx).await);
    let mixed = fx.pe(UPDATE, Some(cso().await)).insert(&fx).await;
    fx.avc(
        mixed,
        fx.attrs.mail,
        ADD,
        AVC_FAILED,
        ValueSlots::text("e@x"),
    )
    .await;
    fx.avc(
        mixed,
        fx.attrs.mail,
        ADD,
        AVC_PENDING,
        ValueSlots::text("f@x"),
    )
    .await;
    eligible.push(mixed);
    // Exported Creates and Deletes wait for the confirming import; a Pending Delete goes.
    ineligible.push(
        fx.pe(CREATE, Some(cso().await))
            .status(EXPORTED)
            .insert(&fx)
            .await,
    );
    ineligible.push(
        fx.pe(DELETE, Some(cso().await))
            .status(EXPORTED)
            .insert(&fx)
            .await,
    );
    eligible.push(fx.pe(DELETE, None).insert(&fx).await);
    // Another system's rows and reference-bearing rows are not in this pass.
    let other = fx.connected_system("other").await;
    ineligible.push(fx.pe(CREATE, None).system(other).insert(&fx).await);
    let with_refs = fx
        .pe(CREATE, Some(cso().await))
        .unresolved()
        .insert(&fx)
        .await;

    let before: Vec<PeRow> = futures_rows(&fx, &ineligible).await;
    let q = fx.queue().await;
    // What a run counts as due: the eligible rows of both passes, as the operator's summary counts
    // them.
    let due = eligible.len() as u64 + 1;
    let summary = fx
        .store
        .queue_summary(fx.cs, Duration::from_secs(900))
        .await
        .expect("summary");
    assert_eq!(summary.executable as u64, due);
    assert_eq!(q.count_due().await.expect("count"), due);
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    // The run counts beside its first claim: the rows it claimed still count for it, whichever of
    // the two the database saw first, and not for another run, for which they are held.
    assert_eq!(q.count_due().await.expect("count"), due, "after its claim");
    assert_eq!(
        fx.queue().await.count_due().await.expect("count"),
        1,
        "another run sees only the reference-bearing row"
    );
    assert!(page.bad_rows.is_empty());
    assert!(page.is_last());
    let claimed: Vec<Uuid> = page.exports.iter().map(|e| e.id()).collect();
    assert_eq!(
        claimed, eligible,
        "exactly the eligible rows, in CreatedAt order"
    );
    for e in &page.exports {
        let row = fx.pe_row(e.id()).await;
        assert_eq!(row.status, EXECUTING);
        assert_eq!(row.last_attempted_at, e.export.last_attempted_at);
        assert!(row.last_attempted_at.unwrap() >= now);
        assert!(!e.re_attempt);
    }
    assert_eq!(
        page.exports[1].previous_status,
        PendingExportStatus::ExportNotConfirmed
    );
    assert_eq!(
        page.exports[2].previous_status,
        PendingExportStatus::Exported
    );
    assert_eq!(
        futures_rows(&fx, &ineligible).await,
        before,
        "ineligible rows untouched"
    );

    let refs = q
        .claim(Pass::References, None, 100)
        .await
        .expect("claim references");
    assert_eq!(
        refs.exports.iter().map(|e| e.id()).collect::<Vec<_>>(),
        vec![with_refs]
    );
}

async fn futures_rows(fx: &Fixture, ids: &[Uuid]) -> Vec<PeRow> {
    let mut rows = Vec::new();
    for id in ids {
        rows.push(fx.pe_row(*id).await);
    }
    rows
}

/// Gives the user CSO a GUID anchor (returned), a `mail` value and a `description` value.
async fn anchor_mail_and_description(fx: &Fixture, cso: Uuid, mail: &str) -> Uuid {
    let guid = Uuid::new_v4();
    fx.cso_value(
        cso,
        fx.attrs.guid,
        ValueSlots {
            guid: Some(guid),
            ..Default::default()
        },
    )
    .await;
    fx.cso_value(cso, fx.attrs.mail, ValueSlots::text(mail))
        .await;
    fx.cso_value(cso, fx.attrs.description, ValueSlots::text("not touched"))
        .await;
    guid
}

#[tokio::test]
async fn claim_loads_changes_and_the_cso_context() {
    let fx = Fixture::new().await;
    let mvo = fx.mvo().await;
    let cso = fx
        .cso(false, Some("CN=Ann,OU=People,DC=x"), Some(mvo), 0)
        .await;
    let guid = anchor_mail_and_description(&fx, cso, "old@x").await;
    let pe = fx.pe(UPDATE, Some(cso)).insert(&fx).await;
    let c1 = fx
        .avc(
            pe,
            fx.attrs.mail,
            ADD,
            AVC_PENDING,
            ValueSlots::text("new@x"),
        )
        .await;
    let c2 = fx
        .avc(
            pe,
            fx.attrs.mail,
            REMOVE,
            AVC_PENDING,
            ValueSlots::text("old@x"),
        )
        .await;

    let q = fx.queue().await;
    let before = fx.store.statements();
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    assert_eq!(
        fx.store.statements() - before,
        1,
        "claim and load are one statement"
    );
    let e = &page.exports[0];
    let mut ids: Vec<Uuid> = e.export.attribute_changes.iter().map(|c| c.id).collect();
    ids.sort();
    let mut want = vec![c1, c2];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(e.current_dn(), Some("CN=Ann,OU=People,DC=x"));
    assert_eq!(e.primary_anchor(), Some(guid.to_string()));
    let o = e.cso.as_ref().expect("CSO context");
    assert_eq!(o.type_id, fx.user_type);
    assert_eq!(o.metaverse_object_id, Some(mvo));
    let attrs: HashSet<i32> = o.values.iter().map(|v| v.attribute_id).collect();
    assert_eq!(
        attrs,
        HashSet::from([fx.attrs.dn, fx.attrs.guid, fx.attrs.mail]),
        "anchors and touched attributes only"
    );
    let schema = q.schema();
    assert_eq!(
        schema.attribute(fx.attrs.mail).map(|a| a.name.as_str()),
        Some("mail")
    );
    assert_eq!(
        schema.object_type(fx.group_type).map(|t| t.name.as_str()),
        Some("group")
    );
}

/// A Create's CSO is read whole and filtered (`store::sql`, `load_tail`): the result must be the
/// same as an update's attribute-by-attribute probes, each value once however many changes name it.
#[tokio::test]
async fn a_creates_cso_context_holds_its_anchors_and_touched_attributes_once() {
    let fx = Fixture::new().await;
    let cso = fx.cso(false, Some("CN=Bo,OU=People,DC=x"), None, 0).await;
    // What an earlier attempt of the same Create wrote, and a value it does not touch.
    let guid = anchor_mail_and_description(&fx, cso, "bo@x").await;
    let pe = fx.pe(CREATE, Some(cso)).insert(&fx).await;
    for value in ["bo@x", "bo2@x"] {
        fx.avc(pe, fx.attrs.mail, ADD, AVC_PENDING, ValueSlots::text(value))
            .await;
    }

    let q = fx.queue().await;
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    let e = &page.exports[0];
    assert_eq!(e.export.attribute_changes.len(), 2);
    assert_eq!(e.current_dn(), Some("CN=Bo,OU=People,DC=x"));
    assert_eq!(e.primary_anchor(), Some(guid.to_string()));
    let o = e.cso.as_ref().expect("CSO context");
    let mut attrs: Vec<i32> = o.values.iter().map(|v| v.attribute_id).collect();
    attrs.sort();
    let mut want = vec![fx.attrs.dn, fx.attrs.guid, fx.attrs.mail];
    want.sort();
    assert_eq!(
        attrs, want,
        "anchors and touched attributes, each value once"
    );
}

#[tokio::test]
async fn keyset_paging_with_identical_created_at_visits_every_row_once() {
    let fx = Fixture::new().await;
    let at = base_time();
    let mut plain = Vec::new();
    let mut refs = Vec::new();
    for i in 0..500 {
        let b = fx.pe(CREATE, None).created(at);
        if i % 2 == 0 {
            plain.push(b.insert(&fx).await);
        } else {
            refs.push(b.unresolved().insert(&fx).await);
        }
    }
    let q = fx.queue().await;
    for (pass, mut all) in [(Pass::Plain, plain), (Pass::References, refs)] {
        let statements = fx.store.statements();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let p = q.claim(pass, cursor, 100).await.expect("claim");
            seen.extend(p.exports.iter().map(|e| e.id()));
            cursor = p.cursor.or(cursor);
            if p.is_last() {
                break;
            }
        }
        assert_eq!(
            fx.store.statements() - statements,
            3,
            "ceil(250 / 100) page claims, no rescans, no probe"
        );
        all.sort();
        assert_eq!(
            seen, all,
            "{pass:?}: each row exactly once, ordered by Id within one CreatedAt"
        );
    }
}

#[tokio::test]
async fn a_full_page_of_reference_rows_does_not_end_the_plain_pass() {
    let fx = Fixture::new().await;
    for _ in 0..150 {
        fx.pe(CREATE, None).unresolved().insert(&fx).await;
    }
    let mut plain = Vec::new();
    for _ in 0..50 {
        plain.push(fx.pe(CREATE, None).insert(&fx).await);
    }
    let q = fx.queue().await;
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    assert_eq!(
        page.exports.iter().map(|e| e.id()).collect::<Vec<_>>(),
        plain
    );
    let refs = q
        .claim(Pass::References, None, 100)
        .await
        .expect("claim references");
    assert_eq!(refs.exports.len(), 100);
}

#[tokio::test]
async fn an_empty_queue_gives_an_empty_page() {
    let fx = Fixture::new().await;
    let q = fx.queue().await;
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    assert!(page.exports.is_empty() && page.bad_rows.is_empty());
    assert_eq!((page.claimed, page.cursor), (0, None));
    assert!(page.is_last());
    assert_eq!(q.release_all().await.expect("release"), 0);
    assert_eq!(q.renew_leases().await.expect("renew").renewed, 0);
}

#[tokio::test]
async fn two_concurrent_claimers_receive_disjoint_rows() {
    let fx = Fixture::new().await;
    let mut all = HashSet::new();
    for _ in 0..600 {
        all.insert(fx.pe(CREATE, None).insert(&fx).await);
    }
    // Two engines: separate stores (separate pools, so really concurrent sessions).
    let pg = Postgres::shared().await.expect("postgres");
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(pg.options_for(&fx.db.name))
        .await
        .expect("second pool");
    let a = fx.queue().await;
    let b = Store::from_pool(other_pool)
        .open(fx.cs, &RunOptions::default())
        .await
        .expect("queue b");
    let (ra, rb) = tokio::join!(
        claim_all(&a, Pass::Plain, 25),
        claim_all(&b, Pass::Plain, 25)
    );
    let sa: HashSet<Uuid> = ra.iter().copied().collect();
    let sb: HashSet<Uuid> = rb.iter().copied().collect();
    assert_eq!(sa.len(), ra.len(), "no row twice for one claimer");
    assert_eq!(sb.len(), rb.len());
    assert!(sa.is_disjoint(&sb), "claimers never share a row");
    assert_eq!(&sa | &sb, all, "together they claim every row");
    assert!(!sa.is_empty() && !sb.is_empty(), "both claimers got work");
}

#[tokio::test]
async fn rows_left_executing_past_the_lease_are_reclaimed_as_re_attempts() {
    let fx = Fixture::new().await;
    let now = fx.now().await;
    let crashed = fx
        .pe(CREATE, None)
        .status(EXECUTING)
        .attempted(now - Minutes::minutes(20))
        .insert(&fx)
        .await;
    let live = fx
        .pe(CREATE, None)
        .status(EXECUTING)
        .attempted(now - Minutes::minutes(1))
        .insert(&fx)
        .await;
    let crashed_before = fx.pe_row(crashed).await;
    let q = fx.queue().await; // lease 900 s
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    assert_eq!(page.exports.len(), 1);
    let e = &page.exports[0];
    assert_eq!(e.id(), crashed);
    assert!(e.re_attempt);
    assert_eq!(e.previous_status, PendingExportStatus::Executing);
    assert_eq!(
        fx.pe_row(live).await.status,
        EXECUTING,
        "a live run's row is left alone"
    );

    // Released without executing, a recovered row goes back to Pending (not Executing), and keeps
    // the engine's mark: the crashed run may have reached the directory, so its next attempt is a
    // re-attempt too.
    assert_eq!(q.release_all().await.expect("release"), 1);
    let row = fx.pe_row(crashed).await;
    let mark = row.last_error_stack_trace.clone().expect("marked");
    let parsed = Marker::parse(&mark).expect("the engine's mark");
    assert_eq!(parsed.lease_seconds, 900);
    assert_eq!(
        Some(parsed.since),
        crashed_before.last_attempted_at,
        "the first attempt is the crashed run's claim"
    );
    assert_eq!(
        row,
        PeRow {
            status: PENDING,
            last_error_stack_trace: Some(mark),
            ..crashed_before
        }
    );
    let again = q.claim(Pass::Plain, None, 100).await.expect("claim again");
    assert_eq!(again.exports.len(), 1);
    assert!(again.exports[0].re_attempt, "still a re-attempt");
    assert_eq!(
        again.exports[0].first_attempt_at,
        crashed_before.last_attempted_at
    );
}

#[tokio::test]
async fn lease_renewal_keeps_a_slow_runs_rows_from_a_second_claimer() {
    let fx = Fixture::new().await;
    for _ in 0..15 {
        fx.pe(CREATE, None).insert(&fx).await;
    }
    // Runs A and B take 3 s leases; A renews, B does not. Run D takes the default 900 s lease and
    // does not renew within the test.
    let a = fx.store.open(fx.cs, &Fixture::options(3)).await.expect("a");
    let b = fx.store.open(fx.cs, &Fixture::options(3)).await.expect("b");
    let d = fx.queue().await;
    let pa = a.claim(Pass::Plain, None, 5).await.expect("claim a");
    let pb = b.claim(Pass::Plain, pa.cursor, 5).await.expect("claim b");
    let pd = d.claim(Pass::Plain, pb.cursor, 5).await.expect("claim d");
    assert_eq!(
        (pa.exports.len(), pb.exports.len(), pd.exports.len()),
        (5, 5, 5)
    );
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let renewal = a.renew_leases().await.expect("renew");
    assert_eq!(renewal.renewed, 5);
    assert!(renewal.lost.is_empty());
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    // A reclaimer with a short lease of its own judges each row by the lease its owner took: B's
    // lapsed 3 s lease, not D's 900 s one, and not A's renewed one.
    let c = fx
        .store
        .open(fx.cs, &Fixture::options(3))
        .await
        .expect("queue c");
    let pc = c.claim(Pass::Plain, None, 100).await.expect("claim c");
    let taken: HashSet<Uuid> = pc.exports.iter().map(|e| e.id()).collect();
    let b_ids: HashSet<Uuid> = pb.exports.iter().map(|e| e.id()).collect();
    assert_eq!(taken, b_ids, "only the lapsed rows are taken over");
    assert!(pc.exports.iter().all(|e| e.re_attempt));

    // The run that lost its rows can no longer write them, nor write to the directory for them.
    let fences: Vec<_> = pb
        .exports
        .iter()
        .map(|e| b.fence(e.id()).expect("held"))
        .collect();
    let lost = b.renew_leases().await.expect("renew b");
    assert_eq!(lost.lost.len(), 5);
    assert!(fences.iter().all(|f| f.is_lost() && !f.is_open()));
    let outcomes: Vec<ExportOutcome> = pb
        .exports
        .into_iter()
        .map(ExportOutcome::succeeded)
        .collect();
    let report = b.persist(&outcomes).await.expect("persist b");
    assert!(report.persisted.is_empty());
    assert_eq!(report.not_held.len(), 5);
    // A's renewed rows are still A's to persist.
    let outcomes: Vec<ExportOutcome> = pa
        .exports
        .into_iter()
        .map(ExportOutcome::succeeded)
        .collect();
    let report = a.persist(&outcomes).await.expect("persist a");
    assert_eq!(report.persisted.len(), 5);
    assert!(
        report
            .persisted
            .iter()
            .all(|p| p.status == PendingExportStatus::Exported)
    );
    // C still holds B's former rows, D its own.
    for id in &b_ids {
        assert_eq!(fx.pe_row(*id).await.status, EXECUTING);
    }
    assert_eq!(d.release_all().await.expect("release d"), 5);
}

#[tokio::test]
async fn release_after_cancellation_leaves_no_row_executing() {
    let fx = Fixture::new().await;
    let now = fx.now().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let pe = match i % 3 {
            0 => fx.pe(CREATE, None).insert(&fx).await,
            1 => {
                fx.pe(CREATE, None)
                    .status(EXPORT_NOT_CONFIRMED)
                    .attempted(now - Minutes::hours(2))
                    .insert(&fx)
                    .await
            }
            _ => {
                let cso = fx.cso(false, Some("CN=u"), None, 0).await;
                let pe = fx.pe(UPDATE, Some(cso)).status(EXPORTED).insert(&fx).await;
                fx.avc(pe, fx.attrs.mail, ADD, AVC_PENDING, ValueSlots::text("m@x"))
                    .await;
                pe
            }
        };
        ids.push(pe);
    }
    let before = futures_rows(&fx, &ids).await;
    let q = fx.queue().await;
    let p1 = q.claim(Pass::Plain, None, 10).await.expect("claim 1");
    let p2 = q.claim(Pass::Plain, p1.cursor, 10).await.expect("claim 2");
    assert_eq!(q.held_count(), 20);
    // Some of the first page completed before the cancel; the rest was never executed.
    let done: Vec<ExportOutcome> = p1
        .exports
        .into_iter()
        .take(4)
        .map(ExportOutcome::succeeded)
        .collect();
    q.persist(&done).await.expect("persist");
    let released = q.release_all().await.expect("release");
    assert_eq!(released, 16);
    assert_eq!(q.held_count(), 0);
    assert_eq!(fx.executing_count().await, 0, "no row left Executing");
    let done_ids: HashSet<Uuid> = done.iter().map(|o| o.pending_export_id()).collect();
    for (id, b) in ids.iter().zip(before) {
        if !done_ids.contains(id) {
            assert_eq!(
                fx.pe_row(*id).await,
                b,
                "released rows are exactly as before the claim"
            );
        }
    }
    drop(p2);
}

#[tokio::test]
async fn the_schema_guard_refuses_an_unknown_schema() {
    let fx = Fixture::new().await;
    fx.store
        .check_schema()
        .await
        .expect("the fixture carries the expected migration");
    fx.exec(r#"DELETE FROM "__EFMigrationsHistory""#).await;
    fx.exec(r#"INSERT INTO "__EFMigrationsHistory" VALUES ('20250101000000_Older', '9.0.0')"#)
        .await;
    match fx.store.open(fx.cs, &RunOptions::default()).await {
        Err(Error::Schema(m)) => {
            assert!(m.contains(jim_export::schema::EXPECTED_MIGRATION), "{m}");
            assert!(m.contains("20250101000000_Older"), "{m}");
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
    let skip = RunOptions {
        skip_schema_check: true,
        ..RunOptions::default()
    };
    fx.store
        .open(fx.cs, &skip)
        .await
        .expect("the override opens the queue");

    // A database that is not JIM's at all.
    let pg = Postgres::shared().await.expect("postgres");
    let empty = pg.create_empty_database().await.expect("empty database");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pg.options_for(&empty))
        .await
        .expect("pool");
    match Store::from_pool(pool).check_schema().await {
        Err(Error::Schema(m)) => assert!(m.contains("__EFMigrationsHistory"), "{m}"),
        other => panic!("expected a schema error, got {other:?}"),
    }
    // An unknown connected system is a configuration error naming the field.
    match fx.store.open(9999, &skip).await {
        Err(Error::Config(e)) => assert_eq!(e.paths(), vec!["connected_system_id"]),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_row_fails_only_itself() {
    let fx = Fixture::new().await;
    let good1 = fx.pe(CREATE, None).insert(&fx).await;
    let bad_pe = fx.pe(CREATE, None).insert(&fx).await;
    let bad_change = fx.pe(CREATE, None).insert(&fx).await;
    let bad_avc = fx
        .avc(
            bad_change,
            fx.attrs.mail,
            9,
            AVC_PENDING,
            ValueSlots::text("x"),
        )
        .await;
    let good2 = fx.pe(CREATE, None).insert(&fx).await;
    fx.exec_id(
        r#"UPDATE "PendingExports" SET "ChangeType" = 7 WHERE "Id" = $1"#,
        bad_pe,
    )
    .await;

    let q = fx.queue().await;
    let page = q
        .claim(Pass::Plain, None, 100)
        .await
        .expect("bad rows do not fail the page");
    assert_eq!(
        page.exports.iter().map(|e| e.id()).collect::<Vec<_>>(),
        vec![good1, good2]
    );
    assert_eq!(page.claimed, 4);
    assert_eq!(page.bad_rows.len(), 2);
    let by_id = |id: Uuid| {
        page.bad_rows
            .iter()
            .find(|b| b.pending_export_id == id)
            .expect("bad row")
    };
    let e = &by_id(bad_pe).error;
    assert_eq!(
        (e.table, e.column, e.row_id.clone()),
        ("PendingExports", "ChangeType", bad_pe.to_string())
    );
    assert!(
        e.to_string()
            .contains("7 is not a known PendingExportChangeType value"),
        "{e}"
    );
    let e = &by_id(bad_change).error;
    assert_eq!(
        (e.table, e.column, e.row_id.clone()),
        (
            "PendingExportAttributeValueChanges",
            "ChangeType",
            bad_avc.to_string()
        )
    );

    // Recording the failure counts an attempt and names the problem; the good rows go on.
    let report = q
        .fail_bad_rows(&page.bad_rows)
        .await
        .expect("fail bad rows");
    assert_eq!(report.persisted.len(), 2);
    let row = fx.pe_row(bad_pe).await;
    assert_eq!(
        (row.status, row.error_count, row.change_type),
        (PENDING, 1, 7)
    );
    let message = row.last_error_message.unwrap_or_default();
    assert!(
        message.contains("PendingExports row") && message.contains("column ChangeType"),
        "{message}"
    );
    let outcomes: Vec<ExportOutcome> = page
        .exports
        .into_iter()
        .map(ExportOutcome::succeeded)
        .collect();
    let report = q.persist(&outcomes).await.expect("persist the good rows");
    assert_eq!(report.persisted.len(), 2);
    assert_eq!(fx.executing_count().await, 0);
}

#[tokio::test]
async fn operator_queries_summarise_release_and_reset() {
    let fx = Fixture::new().await;
    let now = fx.now().await;
    fx.pe(CREATE, None).insert(&fx).await;
    fx.pe(CREATE, None)
        .next_retry(now + Minutes::minutes(10))
        .insert(&fx)
        .await;
    let stranded = fx
        .pe(CREATE, None)
        .status(EXECUTING)
        .attempted(now - Minutes::hours(1))
        .insert(&fx)
        .await;
    let failed = fx
        .pe(DELETE, None)
        .status(FAILED)
        .errors(5, 5)
        .attempted(now - Minutes::hours(3))
        .insert(&fx)
        .await;
    fx.pe(CREATE, None).unresolved().insert(&fx).await;

    let s = fx
        .store
        .queue_summary(fx.cs, Duration::from_secs(900))
        .await
        .expect("summary");
    assert_eq!(s.total, 5);
    assert_eq!(s.executable, 3, "two Pending plus the stranded row");
    assert_eq!(s.not_yet_due, 1);
    assert_eq!(s.due, 4);
    assert_eq!(s.stranded_executing, 1);
    assert_eq!(s.with_unresolved_references, 1);
    assert_eq!(s.oldest_failure, Some(now - Minutes::hours(3)));
    let pending_creates = s
        .by_status
        .iter()
        .find(|c| c.status == PENDING && c.change_type == CREATE)
        .expect("row");
    assert_eq!(pending_creates.count, 3);
    assert_eq!(pending_creates.status(), Some(PendingExportStatus::Pending));

    assert_eq!(
        fx.store
            .release_stranded(fx.cs, Duration::from_secs(900))
            .await
            .expect("release"),
        1
    );
    assert_eq!(fx.pe_row(stranded).await.status, PENDING);
    assert_eq!(fx.store.reset_failed(fx.cs).await.expect("reset"), 1);
    let row = fx.pe_row(failed).await;
    assert_eq!(
        (
            row.status,
            row.error_count,
            row.next_retry_at,
            row.last_error_message,
            row.last_error_stack_trace
        ),
        (PENDING, 0, None, None, None)
    );
}

#[tokio::test]
async fn the_engines_sessions_run_in_utc_without_jit() {
    let pg = Postgres::shared().await.expect("postgres");
    let db = pg.jim_database().await.expect("database");
    // The cluster's own default is JIT on (as in JIM's image); the engine's sessions turn it off.
    let server_default: String =
        sqlx::query_scalar("SELECT boot_val FROM pg_settings WHERE name = 'jit'")
            .fetch_one(&db.pool)
            .await
            .expect("jit's default");
    assert_eq!(server_default, "on");
    let store = Store::connect(&jim_export::config::DatabaseConfig::new(db.url.clone()))
        .await
        .expect("store");
    let mut conn = store.pool().acquire().await.expect("a session");
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&mut *conn)
        .await
        .expect("SHOW jit");
    let zone: String = sqlx::query_scalar("SHOW TimeZone")
        .fetch_one(&mut *conn)
        .await
        .expect("SHOW TimeZone");
    assert_eq!((jit.as_str(), zone.as_str()), ("off", "UTC"));
}
