//! The store's persist side against a real PostgreSQL with JIM's schema: every outcome kind with the
//! exact column values JIM writes, backoff and the Failed transition, reference resolution, anchor and
//! DN write-back, optimistic apply, and a change added to a claimed row during the run.

use chrono::Duration as Minutes;
use jim_export::model::{
    ConnectedSystemExportErrorType, PendingExportChangeType, PendingExportStatus,
    UnresolvedReferenceReason, ValueSlots,
};
use jim_export::outcome::{Disposition, ExportOutcome, Failure, Progress, Success};
use jim_export::store::{ClaimedExport, ExportQueue, Pass, retry_delay};
use jim_export_testkit::support::store::*;
use uuid::Uuid;

async fn claim_one(q: &ExportQueue, pass: Pass) -> ClaimedExport {
    let mut page = q.claim(pass, None, 100).await.expect("claim");
    assert_eq!(page.exports.len(), 1, "one export claimed");
    page.exports.remove(0)
}

fn failed(export: ClaimedExport, message: &str) -> ExportOutcome {
    ExportOutcome::failed(export, message, ConnectedSystemExportErrorType::General)
}

#[tokio::test]
async fn success_exports_and_marks_written_changes() {
    let fx = Fixture::new().await;
    let now = fx.now().await;
    let cso = fx.cso(false, Some("CN=Ann"), None, 0).await;
    let pe = fx
        .pe(UPDATE, Some(cso))
        .errors(2, 5)
        .next_retry(now - Minutes::minutes(1))
        .insert(&fx)
        .await;
    let pending = fx
        .avc(pe, fx.attrs.mail, ADD, AVC_PENDING, ValueSlots::text("a@x"))
        .await;
    let retried = fx
        .avc(
            pe,
            fx.attrs.description,
            SET,
            AVC_EXPORTED_NOT_CONFIRMED,
            ValueSlots::text("d"),
        )
        .await;
    let awaiting = fx
        .avc(
            pe,
            fx.attrs.mail,
            ADD,
            AVC_EXPORTED_PENDING_CONFIRMATION,
            ValueSlots::text("o@x"),
        )
        .await;
    let failed_change = fx
        .avc(pe, fx.attrs.mail, ADD, AVC_FAILED, ValueSlots::text("f@x"))
        .await;
    let q = fx.queue().await;
    let claimed = claim_one(&q, Pass::Plain).await;
    let mut writable = claimed.writable_change_ids();
    writable.sort();
    let mut want = vec![pending, retried, failed_change];
    want.sort();
    assert_eq!(
        writable, want,
        "Pending, ExportedNotConfirmed and Failed changes are re-sent"
    );
    let before = fx.pe_row(pe).await;
    let awaiting_before = fx.avc_row(awaiting).await;

    let statements = fx.store.statements();
    let report = q
        .persist(&[ExportOutcome::succeeded(claimed)])
        .await
        .expect("persist");
    assert_eq!(
        fx.store.statements() - statements,
        1,
        "one statement per flush"
    );
    assert_eq!(report.persisted[0].status, PendingExportStatus::Exported);
    assert_eq!(
        fx.pe_row(pe).await,
        PeRow {
            status: EXPORTED,
            // The claim's mark gives way to what JIM had there.
            last_error_stack_trace: Some("earlier trace".into()),
            ..before.clone()
        },
        "only Status changes; ErrorCount, NextRetryAt and the error text are kept, as JIM does"
    );
    for id in [pending, retried] {
        let c = fx.avc_row(id).await;
        assert_eq!(
            (c.status, c.export_attempt_count),
            (AVC_EXPORTED_PENDING_CONFIRMATION, 1)
        );
        assert!(
            c.last_exported_at.expect("LastExportedAt")
                >= before.last_attempted_at.expect("claim time")
        );
    }
    assert_eq!(
        fx.avc_row(awaiting).await,
        awaiting_before,
        "awaiting confirmation: untouched"
    );
    let f = fx.avc_row(failed_change).await;
    assert_eq!(
        (f.status, f.export_attempt_count, f.last_exported_at),
        (AVC_FAILED, 0, None)
    );
    assert_eq!(fx.executing_count().await, 0);
}

#[tokio::test]
async fn a_create_writes_its_anchor_in_the_typed_slot_and_stays_pending_provisioning() {
    let fx = Fixture::new().await;
    let mvo = fx.mvo().await;
    let cso = fx
        .cso(false, Some("CN=Ann,OU=People,DC=x"), Some(mvo), 2)
        .await;
    let dn_row = fx.values_of(cso, fx.attrs.dn).await[0].id;
    let pe = fx.pe(CREATE, Some(cso)).insert(&fx).await;
    fx.avc(
        pe,
        fx.attrs.dn,
        SET,
        AVC_PENDING,
        ValueSlots::text("CN=Ann,OU=People,DC=x"),
    )
    .await;
    fx.avc(
        pe,
        fx.attrs.mail,
        ADD,
        AVC_PENDING,
        ValueSlots::text("ann@x"),
    )
    .await;
    // A second type whose anchor is a database-generated number.
    let row_type = fx.object_type(fx.cs, "row").await;
    let key = fx.attribute(row_type, "id", 2, 0, true, false).await;
    let row_cso = fx.cso_in(fx.cs, row_type, key, None, None, 2).await;
    let row_pe = fx.pe(CREATE, Some(row_cso)).insert(&fx).await;
    let mvo_link = fx.values_of(cso, fx.attrs.dn).await;
    let before = fx.cso_state(cso).await;

    let q = fx.queue().await;
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    let guid = Uuid::new_v4();
    let outcomes: Vec<ExportOutcome> = page
        .exports
        .into_iter()
        .map(|e| {
            if e.id() == pe {
                ExportOutcome::created(
                    e,
                    Some(guid.to_string().to_uppercase()),
                    Some("cn=Ann,ou=People,dc=x".into()),
                )
            } else {
                ExportOutcome::created(e, Some("42".into()), None)
            }
        })
        .collect();
    let report = q.persist(&outcomes).await.expect("persist");
    assert_eq!(report.persisted.len(), 2);
    assert_eq!(report.objects_touched, 2);

    let row = fx.pe_row(pe).await;
    assert_eq!((row.status, row.change_type), (EXPORTED, CREATE));
    let guids = fx.values_of(cso, fx.attrs.guid).await;
    assert_eq!(guids.len(), 1);
    assert_eq!(
        (guids[0].guid, guids[0].string.clone()),
        (Some(guid), None),
        "Guid anchor in GuidValue"
    );
    let dns = fx.values_of(cso, fx.attrs.dn).await;
    assert_eq!(dns.len(), 1);
    assert_eq!(dns[0].id, dn_row, "the DN row is updated in place");
    assert_eq!(
        dns[0].string.as_deref(),
        Some("cn=Ann,ou=People,dc=x"),
        "the DN as the server has it"
    );
    let mails = fx.values_of(cso, fx.attrs.mail).await;
    assert_eq!(
        mails.iter().map(|m| m.string.clone()).collect::<Vec<_>>(),
        vec![Some("ann@x".to_string())]
    );
    let after = fx.cso_state(cso).await;
    assert_eq!(
        after.status, 2,
        "the CSO stays PendingProvisioning until the confirming import"
    );
    assert_eq!(after.last_updated, before.last_updated);
    assert_eq!((after.hash, after.fingerprint), (None, None));

    assert_eq!(fx.pe_row(row_pe).await.status, EXPORTED);
    assert_eq!(fx.values_of(cso, fx.attrs.dn).await.len(), mvo_link.len());
    let keys = fx.values_of(row_cso, key).await;
    assert_eq!(
        (keys[0].int, keys[0].string.clone()),
        (Some(42), None),
        "Number anchor in IntValue"
    );
}

#[tokio::test]
async fn failures_back_off_for_error_counts_one_to_six_then_fail() {
    let fx = Fixture::new().await;
    let cso = fx.cso(false, Some("CN=Ann"), None, 2).await;
    let mvo = fx.mvo().await;
    fx.exec_id(
        r#"UPDATE "ConnectedSystemObjects" SET "MetaverseObjectId" = $1"#,
        mvo,
    )
    .await;
    let pe = fx.pe(CREATE, Some(cso)).errors(0, 7).insert(&fx).await;
    let change = fx
        .avc(pe, fx.attrs.mail, ADD, AVC_PENDING, ValueSlots::text("a@x"))
        .await;
    let change_before = fx.avc_row(change).await;
    let q = fx.queue().await;
    for n in 1..=7 {
        if n > 1 {
            fx.make_due(pe).await;
        }
        let claimed = claim_one(&q, Pass::Plain).await;
        let before = fx.pe_row(pe).await;
        let message = format!("server said no ({n})");
        q.persist(&[failed(claimed, &message)])
            .await
            .expect("persist");
        let row = fx.pe_row(pe).await;
        let attempted = row.last_attempted_at.expect("LastAttemptedAt");
        assert!(attempted >= before.last_attempted_at.expect("claim time"));
        assert_eq!(
            row.next_retry_at.expect("NextRetryAt") - attempted,
            retry_delay(n),
            "ErrorCount {n}"
        );
        assert_eq!(
            row,
            PeRow {
                status: if n >= 7 { FAILED } else { PENDING },
                error_count: n,
                last_attempted_at: row.last_attempted_at,
                next_retry_at: row.next_retry_at,
                last_error_message: Some(message),
                last_error_stack_trace: None,
                ..before
            }
        );
        assert_eq!(
            fx.avc_row(change).await,
            change_before,
            "a failure leaves the changes alone"
        );
        let state = fx.cso_state(cso).await;
        assert_eq!(
            state.status, 2,
            "the CSO stays PendingProvisioning after a failed Create"
        );
        assert!(
            state.hash.is_some(),
            "a failure without progress touches no CSO value"
        );
    }
    let linked: Option<Uuid> = sqlx::query_scalar(
        r#"SELECT "MetaverseObjectId" FROM "ConnectedSystemObjects" WHERE "Id" = $1"#,
    )
    .bind(cso)
    .fetch_one(&fx.pool)
    .await
    .expect("MVO link");
    assert_eq!(
        linked,
        Some(mvo),
        "the CSO keeps its MVO link for the retry"
    );
    let minutes: Vec<i64> = (1..=6).map(|n| retry_delay(n).num_minutes()).collect();
    assert_eq!(minutes, vec![2, 4, 8, 16, 32, 60]);
    fx.make_due(pe).await;
    assert!(
        q.claim(Pass::Plain, None, 100)
            .await
            .expect("claim")
            .exports
            .is_empty(),
        "Failed is terminal"
    );

    // JIM's default MaxRetries of 5: the fifth failure fails the export.
    let pe5 = fx.pe(CREATE, None).errors(4, 5).insert(&fx).await;
    let claimed = claim_one(&q, Pass::Plain).await;
    q.persist(&[failed(claimed, "fifth")])
        .await
        .expect("persist");
    let row = fx.pe_row(pe5).await;
    assert_eq!((row.status, row.error_count), (FAILED, 5));
}

#[tokio::test]
async fn a_deferral_waits_five_minutes_without_counting_an_error() {
    let fx = Fixture::new().await;
    let cso = fx.cso(false, Some("CN=Ann"), None, 2).await;
    let pe = fx.pe(CREATE, Some(cso)).unresolved().insert(&fx).await;
    let absent = Uuid::new_v4().to_string();
    let change = fx.avc_ref(pe, fx.attrs.manager, SET, &absent).await;
    let q = fx.queue().await;
    let mut claimed = claim_one(&q, Pass::References).await;
    let summary = q
        .resolve_references(std::slice::from_mut(&mut claimed))
        .await
        .expect("resolve");
    assert_eq!(summary.not_in_target_system, 1);
    assert!(claimed.writable_change_ids().is_empty());
    let before = fx.pe_row(pe).await;
    let change_before = fx.avc_row(change).await;
    q.persist(&[ExportOutcome::deferred(claimed)])
        .await
        .expect("persist");
    let row = fx.pe_row(pe).await;
    let attempted = row.last_attempted_at.expect("LastAttemptedAt");
    assert_eq!(row.next_retry_at, Some(attempted + Minutes::minutes(5)));
    assert_eq!(
        row,
        PeRow {
            status: PENDING,
            has_unresolved: true,
            last_attempted_at: row.last_attempted_at,
            next_retry_at: row.next_retry_at,
            // Nothing was sent: the column is back as it was before the claim.
            last_error_stack_trace: Some("earlier trace".into()),
            ..before
        },
        "Create stays a Create, ErrorCount and the error text unchanged"
    );
    assert_eq!(fx.avc_row(change).await, change_before);
}

#[tokio::test]
async fn a_partial_write_flips_create_to_update_and_the_next_run_sends_the_rest() {
    let fx = Fixture::new().await;
    let boss_mvo = fx.mvo().await;
    let cso = fx.cso(false, Some("CN=Ann"), None, 2).await;
    let pe = fx.pe(CREATE, Some(cso)).unresolved().insert(&fx).await;
    let mail = fx
        .avc(
            pe,
            fx.attrs.mail,
            ADD,
            AVC_PENDING,
            ValueSlots::text("ann@x"),
        )
        .await;
    let manager = fx
        .avc_ref(pe, fx.attrs.manager, SET, &boss_mvo.to_string())
        .await;
    let manager_before = fx.avc_row(manager).await;
    let q = fx.queue().await;

    let mut claimed = claim_one(&q, Pass::References).await;
    q.resolve_references(std::slice::from_mut(&mut claimed))
        .await
        .expect("resolve");
    assert_eq!(
        claimed.unresolved[0].reason,
        UnresolvedReferenceReason::NotInTargetSystem
    );
    assert_eq!(claimed.writable_change_ids(), vec![mail]);
    let before = fx.pe_row(pe).await;
    let guid = Uuid::new_v4().to_string();
    let report = q
        .persist(&[ExportOutcome::created(
            claimed,
            Some(guid),
            Some("CN=Ann".into()),
        )])
        .await
        .expect("persist");
    assert_eq!(
        report.persisted[0].change_type,
        Some(PendingExportChangeType::Update)
    );
    assert_eq!(report.optimistic_apply.unresolved_references, 1);
    let row = fx.pe_row(pe).await;
    let attempted = row.last_attempted_at.expect("LastAttemptedAt");
    assert_eq!(
        row,
        PeRow {
            status: PENDING,
            change_type: UPDATE,
            has_unresolved: true,
            last_error_stack_trace: Some("earlier trace".into()),
            last_attempted_at: Some(attempted),
            next_retry_at: Some(attempted + Minutes::minutes(5)),
            ..before
        }
    );
    let m = fx.avc_row(mail).await;
    assert_eq!(
        (m.status, m.export_attempt_count),
        (AVC_EXPORTED_PENDING_CONFIRMATION, 1)
    );
    assert_eq!(
        fx.avc_row(manager).await,
        manager_before,
        "the unresolved reference stays Pending, untouched"
    );
    assert!(
        fx.values_of(cso, fx.attrs.manager).await.is_empty(),
        "no unresolved reference stamped on the CSO"
    );

    // The manager is provisioned; the next run sends only the reference, as an Update.
    let boss = fx.cso(false, Some("CN=Boss"), Some(boss_mvo), 2).await;
    fx.make_due(pe).await;
    let mut claimed = claim_one(&q, Pass::References).await;
    assert_eq!(claimed.export.change_type, PendingExportChangeType::Update);
    let summary = q
        .resolve_references(std::slice::from_mut(&mut claimed))
        .await
        .expect("resolve");
    assert_eq!(summary.resolved, 1);
    assert_eq!(claimed.writable_change_ids(), vec![manager]);
    q.persist(&[ExportOutcome::succeeded(claimed)])
        .await
        .expect("persist");
    let row = fx.pe_row(pe).await;
    assert_eq!(
        (row.status, row.has_unresolved, row.change_type),
        (EXPORTED, false, UPDATE)
    );
    let c = fx.avc_row(manager).await;
    assert_eq!(
        (
            c.status,
            c.string_value.as_deref(),
            c.unresolved_reference_value,
            c.resolved_reference_cso_id
        ),
        (
            AVC_EXPORTED_PENDING_CONFIRMATION,
            Some("CN=Boss"),
            None,
            Some(boss)
        )
    );
    assert_eq!(
        fx.avc_row(mail).await.export_attempt_count,
        1,
        "the mail was not sent again"
    );
    let refs = fx.values_of(cso, fx.attrs.manager).await;
    assert_eq!(
        (refs[0].reference, refs[0].unresolved.as_deref()),
        (Some(boss), Some("CN=Boss"))
    );
}

#[tokio::test]
async fn references_resolve_to_the_dn_or_primary_anchor_or_stay_unresolved_with_a_reason() {
    let fx = Fixture::new().await;
    let other = fx.connected_system("other").await;
    let other_type = fx.object_type(other, "user").await;
    let other_anchor = fx
        .attribute(other_type, "objectGUID", 6, 0, true, false)
        .await;
    let (m_dn, m_no_anchor, m_absent, m_guid_only, m_elsewhere, m_empty_row) = (
        fx.mvo().await,
        fx.mvo().await,
        fx.mvo().await,
        fx.mvo().await,
        fx.mvo().await,
        fx.mvo().await,
    );
    let empty_row = fx.cso(false, None, Some(m_empty_row), 2).await;
    fx.cso_value(empty_row, fx.attrs.dn, ValueSlots::default())
        .await;
    let with_dn = fx.cso(false, Some("CN=One,DC=x"), Some(m_dn), 0).await;
    fx.cso_value(
        with_dn,
        fx.attrs.guid,
        ValueSlots {
            guid: Some(Uuid::new_v4()),
            ..Default::default()
        },
    )
    .await;
    fx.cso(false, None, Some(m_no_anchor), 2).await;
    let guid_only = fx.cso(false, None, Some(m_guid_only), 0).await;
    let anchor = Uuid::new_v4();
    fx.cso_value(
        guid_only,
        fx.attrs.guid,
        ValueSlots {
            guid: Some(anchor),
            ..Default::default()
        },
    )
    .await;
    let elsewhere = fx
        .cso_in(other, other_type, other_anchor, None, Some(m_elsewhere), 0)
        .await;
    fx.cso_value(
        elsewhere,
        other_anchor,
        ValueSlots {
            guid: Some(Uuid::new_v4()),
            ..Default::default()
        },
    )
    .await;

    let group = fx.cso(true, Some("CN=G,DC=x"), None, 0).await;
    let pe = fx.pe(UPDATE, Some(group)).unresolved().insert(&fx).await;
    let member = fx.attrs.member;
    let c_dn = fx.avc_ref(pe, member, ADD, &m_dn.to_string()).await;
    let c_no_anchor = fx.avc_ref(pe, member, ADD, &m_no_anchor.to_string()).await;
    let c_absent = fx.avc_ref(pe, member, ADD, &m_absent.to_string()).await;
    let c_guid = fx.avc_ref(pe, member, ADD, &m_guid_only.to_string()).await;
    let c_elsewhere = fx.avc_ref(pe, member, ADD, &m_elsewhere.to_string()).await;
    let c_garbage = fx.avc_ref(pe, member, ADD, "not-a-guid").await;
    let c_empty_row = fx.avc_ref(pe, member, ADD, &m_empty_row.to_string()).await;

    let q = fx.queue().await;
    let mut claimed = claim_one(&q, Pass::References).await;
    let statements = fx.store.statements();
    let s = q
        .resolve_references(std::slice::from_mut(&mut claimed))
        .await
        .expect("resolve");
    assert_eq!(fx.store.statements() - statements, 1, "one query per page");
    assert_eq!(
        (s.resolved, s.awaiting_anchor, s.not_in_target_system),
        (2, 2, 3)
    );
    let change = |id: Uuid| {
        claimed
            .export
            .attribute_changes
            .iter()
            .find(|c| c.id == id)
            .expect("change")
    };
    assert_eq!(
        change(c_dn).value.string.as_deref(),
        Some("CN=One,DC=x"),
        "secondary anchor preferred"
    );
    assert_eq!(change(c_dn).resolved_reference_cso_id, Some(with_dn));
    assert_eq!(change(c_dn).unresolved_reference_value, None);
    assert_eq!(
        change(c_guid).value.string,
        Some(anchor.to_string()),
        "primary anchor as fallback"
    );
    let reason = |id: Uuid| {
        claimed
            .unresolved
            .iter()
            .find(|u| u.change_id == id)
            .map(|u| u.reason)
    };
    assert_eq!(
        reason(c_no_anchor),
        Some(UnresolvedReferenceReason::AwaitingAnchor)
    );
    assert_eq!(
        reason(c_absent),
        Some(UnresolvedReferenceReason::NotInTargetSystem)
    );
    assert_eq!(
        reason(c_elsewhere),
        Some(UnresolvedReferenceReason::NotInTargetSystem)
    );
    assert_eq!(
        reason(c_garbage),
        Some(UnresolvedReferenceReason::NotInTargetSystem)
    );
    assert_eq!(
        reason(c_empty_row),
        Some(UnresolvedReferenceReason::AwaitingAnchor),
        "an anchor row that holds no value keeps the reference unresolved"
    );
    assert!(claimed.export.has_unresolved_references);
    // Nothing is written before the outcome.
    assert_eq!(
        fx.avc_row(c_dn).await.unresolved_reference_value,
        Some(m_dn.to_string())
    );

    // The export fails; the resolutions are persisted anyway, and nothing is marked written.
    q.persist(&[failed(claimed, "unavailable")])
        .await
        .expect("persist");
    let c = fx.avc_row(c_dn).await;
    assert_eq!(
        (
            c.status,
            c.string_value.as_deref(),
            c.unresolved_reference_value,
            c.resolved_reference_cso_id
        ),
        (AVC_PENDING, Some("CN=One,DC=x"), None, Some(with_dn))
    );
    assert_eq!(
        fx.avc_row(c_guid).await.resolved_reference_cso_id,
        Some(guid_only)
    );
    assert_eq!(
        fx.avc_row(c_no_anchor).await.unresolved_reference_value,
        Some(m_no_anchor.to_string())
    );
    let row = fx.pe_row(pe).await;
    assert_eq!(
        (row.error_count, row.has_unresolved, row.status),
        (1, true, PENDING)
    );
}

#[tokio::test]
async fn a_failure_after_progress_records_the_progress() {
    let fx = Fixture::new().await;
    let cso = fx.cso(false, Some("CN=New,DC=x"), None, 2).await;
    let pe = fx.pe(CREATE, Some(cso)).insert(&fx).await;
    let dn = fx
        .avc(
            pe,
            fx.attrs.dn,
            SET,
            AVC_PENDING,
            ValueSlots::text("CN=New,DC=x"),
        )
        .await;
    let mail = fx
        .avc(pe, fx.attrs.mail, ADD, AVC_PENDING, ValueSlots::text("n@x"))
        .await;
    let desc = fx
        .avc(
            pe,
            fx.attrs.description,
            SET,
            AVC_PENDING,
            ValueSlots::text("d"),
        )
        .await;
    let q = fx.queue().await;
    let claimed = claim_one(&q, Pass::Plain).await;
    let guid = Uuid::new_v4();
    let outcome = ExportOutcome {
        export: claimed,
        result: Disposition::Failed(Failure {
            message: "overflow modify refused".into(),
            error_type: ConnectedSystemExportErrorType::General,
            progress: Progress {
                object_exists: true,
                written_changes: vec![dn, mail],
                external_id: Some(guid.to_string()),
                secondary_external_id: Some("CN=New,DC=x".into()),
            },
        }),
    };
    let report = q.persist(&[outcome]).await.expect("persist");
    assert_eq!(
        report.persisted[0].change_type,
        Some(PendingExportChangeType::Update)
    );
    let row = fx.pe_row(pe).await;
    assert_eq!(
        (row.status, row.change_type, row.error_count),
        (PENDING, UPDATE, 1)
    );
    assert_eq!(
        row.next_retry_at.unwrap() - row.last_attempted_at.unwrap(),
        retry_delay(1)
    );
    assert_eq!(
        fx.avc_row(dn).await.status,
        AVC_EXPORTED_PENDING_CONFIRMATION
    );
    assert_eq!(
        fx.avc_row(mail).await.status,
        AVC_EXPORTED_PENDING_CONFIRMATION
    );
    assert_eq!(fx.avc_row(desc).await.status, AVC_PENDING);
    assert_eq!(
        fx.values_of(cso, fx.attrs.guid).await[0].guid,
        Some(guid),
        "the anchor is kept"
    );
    assert!(
        fx.values_of(cso, fx.attrs.mail).await.is_empty(),
        "no optimistic apply for a failure"
    );
    assert_eq!(fx.cso_state(cso).await.hash, None);
}

#[tokio::test]
async fn a_rename_writes_the_new_dn() {
    let fx = Fixture::new().await;
    let cso = fx.cso(false, Some("CN=Ann,OU=A,DC=x"), None, 0).await;
    let pe = fx.pe(UPDATE, Some(cso)).insert(&fx).await;
    fx.avc(
        pe,
        fx.attrs.dn,
        SET,
        AVC_PENDING,
        ValueSlots::text("CN=Ann,OU=B,DC=x"),
    )
    .await;
    let q = fx.queue().await;
    let claimed = claim_one(&q, Pass::Plain).await;
    let written_changes = claimed.writable_change_ids();
    let outcome = ExportOutcome {
        export: claimed,
        result: Disposition::Succeeded(Success {
            written_changes,
            external_id: None,
            secondary_external_id: Some("CN=Ann,OU=B,DC=x".into()),
        }),
    };
    q.persist(&[outcome]).await.expect("persist");
    let dns = fx.values_of(cso, fx.attrs.dn).await;
    assert_eq!(
        dns.iter().map(|d| d.string.clone()).collect::<Vec<_>>(),
        vec![Some("CN=Ann,OU=B,DC=x".into())]
    );
    assert_eq!(fx.pe_row(pe).await.status, EXPORTED);
    assert_eq!(fx.cso_state(cso).await.hash, None);
}

#[tokio::test]
async fn a_change_added_during_the_run_stays_pending_and_keeps_the_export_due() {
    let fx = Fixture::new().await;
    let cso = fx.cso(false, Some("CN=Ann"), None, 2).await;
    let pe = fx.pe(CREATE, Some(cso)).insert(&fx).await;
    let sent = fx
        .avc(pe, fx.attrs.mail, ADD, AVC_PENDING, ValueSlots::text("a@x"))
        .await;
    let q = fx.queue().await;
    let claimed = claim_one(&q, Pass::Plain).await;
    // JIM's sync stages another change on the claimed row while the export is in flight.
    let late = fx
        .avc(
            pe,
            fx.attrs.description,
            SET,
            AVC_PENDING,
            ValueSlots::text("late"),
        )
        .await;
    let late_before = fx.avc_row(late).await;
    q.persist(&[ExportOutcome::succeeded(claimed)])
        .await
        .expect("persist");
    let row = fx.pe_row(pe).await;
    assert_eq!(
        (row.status, row.change_type, row.has_unresolved),
        (PENDING, UPDATE, false)
    );
    assert_eq!(row.next_retry_at, row.last_attempted_at, "due now");
    assert!(row.next_retry_at.unwrap() <= fx.now().await);
    assert_eq!(
        fx.avc_row(sent).await.status,
        AVC_EXPORTED_PENDING_CONFIRMATION
    );
    assert_eq!(
        fx.avc_row(late).await,
        late_before,
        "the late change was not sent: still Pending"
    );
    let again = claim_one(&q, Pass::Plain).await;
    assert_eq!(
        again.writable_change_ids(),
        vec![late],
        "the export is eligible again, as an Update"
    );
    assert_eq!(again.export.change_type, PendingExportChangeType::Update);
}

#[tokio::test]
async fn a_successful_delete_is_exported_and_touches_no_values() {
    let fx = Fixture::new().await;
    let cso = fx.cso(false, Some("CN=Gone"), None, 0).await;
    let pe = fx.pe(DELETE, Some(cso)).insert(&fx).await;
    let before_state = fx.cso_state(cso).await;
    let q = fx.queue().await;
    let claimed = claim_one(&q, Pass::Plain).await;
    let before = fx.pe_row(pe).await;
    let report = q
        .persist(&[ExportOutcome::succeeded(claimed)])
        .await
        .expect("persist");
    assert_eq!(report.optimistic_apply.skipped, 1);
    assert_eq!(
        fx.pe_row(pe).await,
        PeRow {
            status: EXPORTED,
            last_error_stack_trace: Some("earlier trace".into()),
            ..before
        }
    );
    assert_eq!(fx.cso_state(cso).await, before_state);
    assert_eq!(fx.values_of(cso, fx.attrs.dn).await.len(), 1);
    // Exported Deletes are never claimed again.
    assert!(
        q.claim(Pass::Plain, None, 100)
            .await
            .expect("claim")
            .exports
            .is_empty()
    );
}

#[tokio::test]
async fn optimistic_apply_mirrors_add_update_remove_remove_all_and_references() {
    let fx = Fixture::new().await;
    // A group with two members; the export adds a third, re-adds the second and removes the first.
    let (m1, m2, m3) = (fx.mvo().await, fx.mvo().await, fx.mvo().await);
    let u1 = fx.cso(false, Some("CN=U1,DC=x"), Some(m1), 0).await;
    let u2 = fx.cso(false, Some("CN=U2,DC=x"), Some(m2), 0).await;
    let u3 = fx.cso(false, Some("CN=U3,DC=x"), Some(m3), 0).await;
    let group = fx.cso(true, Some("CN=G,DC=x"), None, 0).await;
    fx.cso_value_full(
        group,
        fx.attrs.member,
        ValueSlots::default(),
        Some(u1),
        Some("CN=U1,DC=x"),
    )
    .await;
    let kept = fx
        .cso_value_full(
            group,
            fx.attrs.member,
            ValueSlots::default(),
            Some(u2),
            Some("CN=U2,DC=x"),
        )
        .await;
    let g_pe = fx.pe(UPDATE, Some(group)).unresolved().insert(&fx).await;
    fx.avc_ref(g_pe, fx.attrs.member, ADD, &m3.to_string())
        .await;
    fx.avc_ref(g_pe, fx.attrs.member, ADD, &m2.to_string())
        .await;
    fx.avc_ref(g_pe, fx.attrs.member, REMOVE, &m1.to_string())
        .await;

    // A user: Update replaces two values; RemoveAll clears; a Decimal is skipped.
    let user = fx.cso(false, Some("CN=Ann,DC=x"), None, 0).await;
    fx.cso_value(user, fx.attrs.description, ValueSlots::text("old one"))
        .await;
    fx.cso_value(user, fx.attrs.description, ValueSlots::text("old two"))
        .await;
    fx.cso_value(user, fx.attrs.mail, ValueSlots::text("a@x"))
        .await;
    fx.cso_value(user, fx.attrs.mail, ValueSlots::text("b@x"))
        .await;
    let u_pe = fx.pe(UPDATE, Some(user)).insert(&fx).await;
    fx.avc(
        u_pe,
        fx.attrs.description,
        SET,
        AVC_PENDING,
        ValueSlots::text("new"),
    )
    .await;
    fx.avc(
        u_pe,
        fx.attrs.mail,
        REMOVE_ALL,
        AVC_PENDING,
        ValueSlots::default(),
    )
    .await;
    let cost = ValueSlots {
        decimal: Some(rust_decimal::Decimal::new(25, 1)),
        ..Default::default()
    };
    fx.avc(u_pe, fx.attrs.cost, SET, AVC_PENDING, cost).await;

    // Another user: Add when absent, Add of a present value, Remove, and an Update equal to the single
    // existing value (left alone).
    let bob = fx.cso(false, Some("CN=Bob,DC=x"), None, 0).await;
    fx.cso_value(bob, fx.attrs.mail, ValueSlots::text("y@x"))
        .await;
    fx.cso_value(bob, fx.attrs.mail, ValueSlots::text("z@x"))
        .await;
    let same = fx
        .cso_value(bob, fx.attrs.description, ValueSlots::text("same"))
        .await;
    let b_pe = fx.pe(UPDATE, Some(bob)).insert(&fx).await;
    fx.avc(
        b_pe,
        fx.attrs.mail,
        ADD,
        AVC_PENDING,
        ValueSlots::text("x@x"),
    )
    .await;
    fx.avc(
        b_pe,
        fx.attrs.mail,
        ADD,
        AVC_PENDING,
        ValueSlots::text("y@x"),
    )
    .await;
    fx.avc(
        b_pe,
        fx.attrs.mail,
        REMOVE,
        AVC_PENDING,
        ValueSlots::text("z@x"),
    )
    .await;
    fx.avc(
        b_pe,
        fx.attrs.description,
        SET,
        AVC_PENDING,
        ValueSlots::text("same"),
    )
    .await;
    let user_before = fx.cso_state(user).await;

    let q = fx.queue().await;
    let plain = q.claim(Pass::Plain, None, 100).await.expect("claim plain");
    let mut refs = q
        .claim(Pass::References, None, 100)
        .await
        .expect("claim references");
    let s = q
        .resolve_references(&mut refs.exports)
        .await
        .expect("resolve");
    assert_eq!(s.resolved, 3);
    let outcomes: Vec<ExportOutcome> = plain
        .exports
        .into_iter()
        .chain(refs.exports)
        .map(ExportOutcome::succeeded)
        .collect();
    let report = q.persist(&outcomes).await.expect("persist");
    assert_eq!(report.persisted.len(), 3);
    assert_eq!(report.optimistic_apply.applied, 3);
    assert_eq!(report.objects_touched, 3);

    let members = fx.values_of(group, fx.attrs.member).await;
    let got: Vec<(Option<Uuid>, Option<String>)> = members
        .iter()
        .map(|m| (m.reference, m.unresolved.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(u2), Some("CN=U2,DC=x".into())),
            (Some(u3), Some("CN=U3,DC=x".into()))
        ]
    );
    assert_eq!(members[0].id, kept, "the re-added member is not duplicated");
    let strings = |rows: Vec<ValueRow>| {
        rows.into_iter()
            .map(|r| r.string.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strings(fx.values_of(user, fx.attrs.description).await),
        vec!["new"]
    );
    assert!(fx.values_of(user, fx.attrs.mail).await.is_empty());
    assert!(
        fx.values_of(user, fx.attrs.cost).await.is_empty(),
        "Decimal is not applied"
    );
    assert_eq!(
        strings(fx.values_of(bob, fx.attrs.mail).await),
        vec!["x@x", "y@x"]
    );
    assert_eq!(fx.values_of(bob, fx.attrs.description).await[0].id, same);
    let after = fx.cso_state(user).await;
    assert_eq!(
        (after.status, after.last_updated),
        (user_before.status, user_before.last_updated)
    );
    assert_eq!((after.hash, after.fingerprint), (None, None));
    assert_eq!(fx.cso_state(group).await.hash, None);
}

#[tokio::test]
async fn resolvable_members_are_written_now_and_the_rest_stay_pending() {
    let fx = Fixture::new().await;
    let (m1, m2, m3) = (fx.mvo().await, fx.mvo().await, fx.mvo().await);
    let u1 = fx.cso(false, Some("CN=U1,DC=x"), Some(m1), 0).await;
    let u2 = fx.cso(false, Some("CN=U2,DC=x"), Some(m2), 2).await;
    fx.cso(false, None, Some(m3), 2).await;
    let group = fx.cso(true, Some("CN=G,DC=x"), None, 0).await;
    let pe = fx.pe(UPDATE, Some(group)).unresolved().insert(&fx).await;
    let c1 = fx.avc_ref(pe, fx.attrs.member, ADD, &m1.to_string()).await;
    let c2 = fx.avc_ref(pe, fx.attrs.member, ADD, &m2.to_string()).await;
    let c3 = fx.avc_ref(pe, fx.attrs.member, ADD, &m3.to_string()).await;
    let c3_before = fx.avc_row(c3).await;
    let q = fx.queue().await;
    let mut claimed = claim_one(&q, Pass::References).await;
    q.resolve_references(std::slice::from_mut(&mut claimed))
        .await
        .expect("resolve");
    let mut writable = claimed.writable_change_ids();
    writable.sort();
    let mut want = vec![c1, c2];
    want.sort();
    assert_eq!(writable, want);
    q.persist(&[ExportOutcome::succeeded(claimed)])
        .await
        .expect("persist");
    for (c, cso, dn) in [(c1, u1, "CN=U1,DC=x"), (c2, u2, "CN=U2,DC=x")] {
        let r = fx.avc_row(c).await;
        assert_eq!(
            (
                r.status,
                r.string_value.as_deref(),
                r.unresolved_reference_value,
                r.resolved_reference_cso_id
            ),
            (AVC_EXPORTED_PENDING_CONFIRMATION, Some(dn), None, Some(cso))
        );
    }
    assert_eq!(fx.avc_row(c3).await, c3_before);
    let row = fx.pe_row(pe).await;
    assert_eq!(
        (
            row.status,
            row.change_type,
            row.has_unresolved,
            row.error_count
        ),
        (PENDING, UPDATE, true, 0)
    );
    assert_eq!(
        row.next_retry_at,
        Some(row.last_attempted_at.unwrap() + Minutes::minutes(5))
    );
    assert_eq!(
        fx.values_of(group, fx.attrs.member).await.len(),
        2,
        "only written members are applied"
    );
}

#[tokio::test]
async fn an_optimistic_apply_failure_is_counted_and_never_fails_the_export() {
    let fx = Fixture::new().await;
    // Make the database refuse one particular CSO value, so only the optimistic apply can fail.
    fx.exec(
        r#"CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
           BEGIN
               IF NEW."StringValue" = 'poison' THEN RAISE EXCEPTION 'refused by test trigger'; END IF;
               RETURN NEW;
           END $$ LANGUAGE plpgsql"#,
    )
    .await;
    fx.exec(
        r#"CREATE TRIGGER refuse_poison BEFORE INSERT ON "ConnectedSystemObjectAttributeValues"
           FOR EACH ROW EXECUTE FUNCTION refuse_poison()"#,
    )
    .await;
    let cso = fx.cso(false, Some("CN=Ann"), None, 2).await;
    let pe = fx.pe(CREATE, Some(cso)).insert(&fx).await;
    let change = fx
        .avc(
            pe,
            fx.attrs.mail,
            ADD,
            AVC_PENDING,
            ValueSlots::text("poison"),
        )
        .await;
    let ok_cso = fx.cso(false, Some("CN=Bob"), None, 2).await;
    let ok_pe = fx.pe(CREATE, Some(ok_cso)).insert(&fx).await;
    fx.avc(
        ok_pe,
        fx.attrs.mail,
        ADD,
        AVC_PENDING,
        ValueSlots::text("fine"),
    )
    .await;
    let q = fx.queue().await;
    let page = q.claim(Pass::Plain, None, 100).await.expect("claim");
    let guid = Uuid::new_v4();
    let outcomes: Vec<ExportOutcome> = page
        .exports
        .into_iter()
        .map(|e| ExportOutcome::created(e, Some(guid.to_string()), None))
        .collect();
    let statements = fx.store.statements();
    let report = q
        .persist(&outcomes)
        .await
        .expect("the flush is persisted anyway");
    assert_eq!(
        fx.store.statements() - statements,
        2,
        "the retry without optimistic apply"
    );
    assert_eq!(report.optimistic_apply.failed, 2);
    assert_eq!(report.optimistic_apply.applied, 0);
    assert_eq!(fx.pe_row(pe).await.status, EXPORTED);
    assert_eq!(fx.pe_row(ok_pe).await.status, EXPORTED);
    assert_eq!(
        fx.avc_row(change).await.status,
        AVC_EXPORTED_PENDING_CONFIRMATION
    );
    assert!(fx.values_of(cso, fx.attrs.mail).await.is_empty());
    assert_eq!(
        fx.values_of(cso, fx.attrs.guid).await[0].guid,
        Some(guid),
        "the anchor write-back stays"
    );
}

/// A membership change on a group larger than the claim's sample reads the sample and the rows the
/// change can match, not the member list (`store::sql`, `load_tail!`): a resolved change's rows
/// come with the claim, an unresolved one's with the resolution query. Optimistic apply must end as
/// it would with every row loaded: an Add of a present member adds nothing, a Remove deletes the
/// member's row, and a member known only by its DN is matched by that DN. A one-member group comes
/// back whole, its member once.
#[tokio::test]
async fn membership_changes_on_a_large_group_load_only_the_rows_they_name() {
    // The claim reads this many rows of a member list before it looks members up by value
    // (`store::sql::SAMPLE_ROWS`).
    const SAMPLE: usize = 500;
    const MEMBERS: usize = SAMPLE + 100;
    let fx = Fixture::new().await;
    let member = fx.attrs.member;
    let mut users = Vec::new();
    for i in 0..MEMBERS + 3 {
        let mvo = fx.mvo().await;
        let dn = format!("CN=U{i},DC=x");
        let cso = fx.cso(false, Some(&dn), Some(mvo), 0).await;
        users.push((mvo, cso, dn));
    }
    // Members inserted last, which the sample (index order: here the order of insertion) does not
    // reach: their rows come from the probes by value.
    let (present, readded, dn_only) = (
        &users[MEMBERS - 1],
        &users[MEMBERS - 2],
        &users[MEMBERS + 1],
    );
    let (new_a, new_b) = (&users[MEMBERS], &users[MEMBERS + 2]);
    let plain_group = fx.cso(true, Some("CN=A,DC=x"), None, 0).await;
    let ref_group = fx.cso(true, Some("CN=B,DC=x"), None, 0).await;
    for group in [plain_group, ref_group] {
        let ids: Vec<Uuid> = users[..MEMBERS].iter().map(|u| u.1).collect();
        let dns: Vec<String> = users[..MEMBERS].iter().map(|u| u.2.clone()).collect();
        sqlx::query(
            r#"INSERT INTO "ConnectedSystemObjectAttributeValues"
                 ("Id", "AttributeId", "ConnectedSystemObjectId", "ReferenceValueId", "UnresolvedReferenceValue")
               SELECT gen_random_uuid(), $1, $2, r, d FROM unnest($3::uuid[], $4::text[]) AS m(r, d)"#,
        )
        .bind(member)
        .bind(group)
        .bind(&ids)
        .bind(&dns)
        .execute(&fx.pool)
        .await
        .expect("member rows");
        fx.cso_value_full(group, member, ValueSlots::default(), None, Some(&dn_only.2))
            .await;
    }
    let small_group = fx.cso(true, Some("CN=C,DC=x"), None, 0).await;
    fx.cso_value_full(
        small_group,
        member,
        ValueSlots::default(),
        Some(present.1),
        Some(&present.2),
    )
    .await;

    let changes = [
        (REMOVE, present),
        (ADD, readded),
        (ADD, new_a),
        (REMOVE, dn_only),
        (ADD, new_b),
    ];
    // The plain pass: changes JIM stored resolved (the referenced CSO and its DN).
    let resolved = |pe: Uuid, kind: i32, user: &(Uuid, Uuid, String)| {
        let (fx, cso, dn) = (&fx, user.1, user.2.clone());
        async move {
            let id = fx
                .avc(pe, member, kind, AVC_PENDING, ValueSlots::text(&dn))
                .await;
            sqlx::query(
                r#"UPDATE "PendingExportAttributeValueChanges" SET "ResolvedReferenceCsoId" = $2 WHERE "Id" = $1"#,
            )
            .bind(id)
            .bind(cso)
            .execute(&fx.pool)
            .await
            .expect("resolved change");
        }
    };
    let plain_pe = fx.pe(UPDATE, Some(plain_group)).insert(&fx).await;
    for (kind, user) in changes {
        resolved(plain_pe, kind, user).await;
    }
    let small_pe = fx.pe(UPDATE, Some(small_group)).insert(&fx).await;
    resolved(small_pe, REMOVE, present).await;
    // The reference pass: the same changes still naming MVOs.
    let ref_pe = fx
        .pe(UPDATE, Some(ref_group))
        .unresolved()
        .insert(&fx)
        .await;
    for (kind, user) in changes {
        fx.avc_ref(ref_pe, member, kind, &user.0.to_string()).await;
    }

    let q = fx.queue().await;
    // The large group's page costs a second statement, the lookups by value; the small group's not.
    let before = q.statements();
    let mut plain = q.claim(Pass::Plain, None, 1).await.expect("claim plain");
    assert_eq!(plain.exports.len(), 1);
    assert_eq!(q.statements() - before, 2, "the claim and its lookups");
    let before = q.statements();
    let small = q
        .claim(Pass::Plain, plain.cursor, 100)
        .await
        .expect("claim the small group");
    assert_eq!(q.statements() - before, 1, "the claim alone");
    plain.exports.extend(small.exports);
    let mut refs = q
        .claim(Pass::References, None, 100)
        .await
        .expect("claim references");
    q.resolve_references(&mut refs.exports)
        .await
        .expect("resolve");
    let members_loaded = |e: &ClaimedExport| -> Vec<(Option<Uuid>, Option<String>)> {
        e.cso
            .as_ref()
            .expect("CSO")
            .values
            .iter()
            .filter(|v| v.attribute_id == member)
            .map(|v| (v.reference_value_id, v.unresolved_reference_value.clone()))
            .collect()
    };
    let mut exports: Vec<ClaimedExport> = plain.exports.into_iter().chain(refs.exports).collect();
    assert_eq!(exports.len(), 3);
    for e in &exports {
        let loaded = members_loaded(e);
        if e.export.id == small_pe {
            assert_eq!(
                loaded,
                vec![(Some(present.1), Some(present.2.clone()))],
                "the one member, once"
            );
            continue;
        }
        // The sample, and the three named rows if it missed them.
        assert!(
            (SAMPLE..=SAMPLE + 3).contains(&loaded.len()),
            "{} of {} member rows loaded for export {}",
            loaded.len(),
            MEMBERS + 1,
            e.export.id
        );
        for want in [
            (Some(present.1), Some(present.2.clone())),
            (Some(readded.1), Some(readded.2.clone())),
            (None, Some(dn_only.2.clone())),
        ] {
            assert!(
                loaded.contains(&want),
                "export {} lacks the named row {want:?}",
                e.export.id
            );
        }
    }

    exports.sort_by_key(|e| e.export.id);
    let outcomes: Vec<ExportOutcome> = exports.into_iter().map(ExportOutcome::succeeded).collect();
    let report = q.persist(&outcomes).await.expect("persist");
    assert_eq!(report.persisted.len(), 3);
    assert_eq!(report.optimistic_apply.applied, 3);

    for group in [plain_group, ref_group] {
        let rows = fx.values_of(group, member).await;
        let mut got: Vec<Uuid> = rows.iter().filter_map(|r| r.reference).collect();
        got.sort();
        let mut want: Vec<Uuid> = users[..MEMBERS - 1].iter().map(|u| u.1).collect();
        want.extend([new_a.1, new_b.1]);
        want.sort();
        assert_eq!(got, want, "group {group}: members after the apply");
        assert_eq!(
            rows.len(),
            want.len(),
            "group {group}: the DN-only row is gone and nothing is doubled"
        );
    }
    assert!(fx.values_of(small_group, member).await.is_empty());
}
