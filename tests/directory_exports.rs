//! Planned exports run against the testkit's real slapd: creates with anchor read-back (post-read and
//! search), updates of every kind including rename and move, a 20,000-member group built and shrunk
//! without losing a value, deletes and disables, the placeholder member, convergence when values already
//! hold, re-attempts that adopt their own earlier write and refuse a stranger, a first attempt that
//! meets a taken DN, partial
//! progress after a failed overflow modify or a failed modify after a rename, and many exports at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jim_export::config::{DeleteBehaviour, ExportSettings, ScopeContainer};
use jim_export::directory::{AnchorRegistry, DirectoryTuning, ExportJob, ExportStatus, Recovery};
use jim_export::model::{
    ConnectedSystemContainerScope, ConnectedSystemExportErrorType, ValueSlots,
};
use jim_export_testkit::support::directory::*;
use tokio::sync::mpsc;
use uuid::Uuid;

fn defaults() -> ExportSettings {
    ExportSettings::default()
}

fn person(fx: &Fixture, uid: &str) -> Export {
    Export::create()
        .text(person::DN, C::Add, &fx.dn(&format!("uid={uid}")))
        .text(person::UID, C::Add, uid)
        .text(person::CN, C::Add, &format!("{uid} cn"))
        .text(person::SN, C::Add, "Doe")
}

#[tokio::test]
async fn create_reads_the_anchor_back_through_post_read() -> TestResult {
    let fx = Fixture::new("create-post-read").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    assert!(directory.profile().supports_post_read);
    let pt = person_type();
    let e = person(&fx, "jdoe").text(person::MAIL, C::Add, "jdoe@example.org");
    let r = run_ok(&directory, job(&defaults(), &e, &pt, None)).await;
    let dn = fx.dn("uid=jdoe");
    assert_eq!(r.secondary_external_id.as_deref(), Some(dn.as_str()));
    assert_eq!(r.external_id, fx.entry_uuid(&dn).await?);
    assert!(r.external_id.is_some());
    assert_eq!(r.operations, 1, "the anchor came back on the Add itself");
    assert!(r.entry_created);
    let mut written = r.written_change_ids.clone();
    written.sort();
    let mut expected = e.ids();
    expected.sort();
    assert_eq!(written, expected);
    assert_eq!(
        fx.values(&dn, "mail").await?,
        Some(set(["jdoe@example.org".to_string()]))
    );
    Ok(())
}

#[tokio::test]
async fn create_reads_the_anchor_back_by_search_without_post_read() -> TestResult {
    let fx = Fixture::new("create-search").await?;
    let directory = fx
        .connect(DirectoryTuning {
            use_post_read: false,
            ..DirectoryTuning::default()
        })
        .await?;
    let pt = person_type();
    let r = run_ok(
        &directory,
        job(&defaults(), &person(&fx, "asmith"), &pt, None),
    )
    .await;
    let dn = fx.dn("uid=asmith");
    assert_eq!(r.operations, 2, "an Add, then a base search");
    assert_eq!(r.external_id, fx.entry_uuid(&dn).await?);
    assert!(r.external_id.is_some());
    Ok(())
}

#[tokio::test]
async fn updates_of_every_kind_with_rename_and_move() -> TestResult {
    let fx = Fixture::new("updates").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    let settings = ExportSettings {
        create_containers_as_needed: true,
        ..defaults()
    };
    let created = person(&fx, "mover")
        .text(person::PHONE, C::Add, "+1 555 0100")
        .text(person::PHONE, C::Add, "+1 555 0101")
        .text(person::DESCRIPTION, C::Add, "to be cleared")
        .text(person::MAIL, C::Add, "old@example.org");
    run_ok(&directory, job(&settings, &created, &pt, None)).await;
    let old_dn = fx.dn("uid=mover");

    // Rename and move into a container that does not exist yet, with every change type at once.
    let new_dn = fx.dn("uid=moved,ou=Sub2,ou=Sub1");
    let update = Export::update()
        .text(person::DN, C::Update, &new_dn)
        .text(person::UID, C::Update, "moved")
        .text(person::PHONE, C::Add, "+1 555 0102")
        .text(person::PHONE, C::Remove, "+1 555 0100")
        .text(person::MAIL, C::Update, "new@example.org")
        .clear(person::DESCRIPTION)
        .value(
            person::EMPLOYEE_NUMBER,
            C::Update,
            ValueSlots {
                int: Some(4711),
                ..Default::default()
            },
        );
    let c = cso(&pt, &old_dn, &[]);
    let r = run_ok(&directory, job(&settings, &update, &pt, Some(&c))).await;
    assert_eq!(r.secondary_external_id.as_deref(), Some(new_dn.as_str()));
    assert_eq!(r.external_id, None);
    assert_eq!(r.containers_created.len(), 2, "{:?}", r.containers_created);
    assert!(!fx.exists(&old_dn).await?);
    assert_eq!(
        fx.values(&new_dn, "telephoneNumber").await?,
        Some(set(["+1 555 0101".to_string(), "+1 555 0102".to_string()]))
    );
    assert_eq!(
        fx.values(&new_dn, "mail").await?,
        Some(set(["new@example.org".to_string()]))
    );
    assert_eq!(fx.values(&new_dn, "description").await?, Some(set([])));
    assert_eq!(
        fx.values(&new_dn, "employeeNumber").await?,
        Some(set(["4711".to_string()]))
    );
    assert_eq!(
        fx.values(&new_dn, "uid").await?,
        Some(set(["moved".to_string()])),
        "the old RDN value is deleted"
    );
    assert_eq!(r.written_change_ids.len(), update.ids().len());

    // An RDN-only rename within the same parent, and a case-only change that does not rename.
    let renamed = fx.dn("uid=renamed,ou=Sub2,ou=Sub1");
    let e = Export::update().text(person::DN, C::Update, &renamed);
    let c = cso(&pt, &new_dn, &[]);
    let r = run_ok(&directory, job(&settings, &e, &pt, Some(&c))).await;
    assert_eq!(r.secondary_external_id.as_deref(), Some(renamed.as_str()));
    assert!(fx.exists(&renamed).await?);
    let e = Export::update().text(person::DN, C::Update, &renamed.to_uppercase());
    let c = cso(&pt, &renamed, &[]);
    let r = run_ok(&directory, job(&settings, &e, &pt, Some(&c))).await;
    assert_eq!(r.operations, 0);
    assert_eq!(r.secondary_external_id, None);
    Ok(())
}

#[tokio::test]
async fn large_group_is_built_and_shrunk_without_losing_a_value() -> TestResult {
    let fx = Fixture::new("large-group").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let gt = group_type();
    let dn = fx.dn("cn=everyone");
    let mut create =
        Export::create()
            .text(group::DN, C::Add, &dn)
            .text(group::CN, C::Add, "everyone");
    for i in 0..20_000 {
        create = create.text(group::MEMBER, C::Add, &member(i));
    }
    let plan = job(&defaults(), &create, &gt, None);
    let r = run_ok(&directory, plan).await;
    assert_eq!(
        r.operations, 20,
        "one Add of 1,000 and 19 overflow modifies"
    );
    let members = fx.values(&dn, "member").await?.unwrap_or_default();
    assert_eq!(members.len(), 20_000);
    assert_eq!(members, set((0..20_000).map(member)));

    // Shrink: 15,000 removals and 500 additions in one export.
    let mut shrink = Export::update();
    for i in 0..15_000 {
        shrink = shrink.text(group::MEMBER, C::Remove, &member(i));
    }
    for i in 20_000..20_500 {
        shrink = shrink.text(group::MEMBER, C::Add, &member(i));
    }
    let current: Vec<(i32, String)> = (0..20_000).map(|i| (group::MEMBER, member(i))).collect();
    let current: Vec<(i32, &str)> = current.iter().map(|(a, v)| (*a, v.as_str())).collect();
    let c = cso(&gt, &dn, &current);
    let r = run_ok(&directory, job(&defaults(), &shrink, &gt, Some(&c))).await;
    assert_eq!(r.written_change_ids.len(), 15_500);
    let expected = set((15_000..20_500).map(member));
    assert_eq!(
        fx.values(&dn, "member").await?.unwrap_or_default(),
        expected
    );

    // A replace larger than the batch (RemoveAll plus 2,500 values) keeps all 2,500 (§11.4, §11.5).
    let mut replace = Export::update().clear(group::MEMBER);
    for i in 30_000..32_500 {
        replace = replace.text(group::MEMBER, C::Update, &member(i));
    }
    let r = run_ok(&directory, job(&defaults(), &replace, &gt, Some(&c))).await;
    assert_eq!(r.operations, 3, "replace 1,000 then add 1,000 and 500");
    assert_eq!(
        fx.values(&dn, "member").await?.unwrap_or_default(),
        set((30_000..32_500).map(member))
    );
    Ok(())
}

#[tokio::test]
async fn deletes_and_disables_are_idempotent() -> TestResult {
    let fx = Fixture::new("deletes").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    run_ok(
        &directory,
        job(&defaults(), &person(&fx, "gone"), &pt, None),
    )
    .await;
    let dn = fx.dn("uid=gone");
    let c = cso(&pt, &dn, &[]);
    let r = run_ok(
        &directory,
        job(&defaults(), &Export::delete(), &pt, Some(&c)),
    )
    .await;
    assert_eq!(
        (r.external_id.as_deref(), r.secondary_external_id.as_deref()),
        (None, None)
    );
    assert!(!fx.exists(&dn).await?);
    // Deleting it again: "no such object" is success.
    run_ok(
        &directory,
        job(&defaults(), &Export::delete(), &pt, Some(&c)),
    )
    .await;

    // Disable through a configured attribute, and of a missing entry (§11.19).
    let disable = ExportSettings {
        delete_behaviour: Some(DeleteBehaviour::Disable),
        disable_attribute: "description".into(),
        ..defaults()
    };
    run_ok(
        &directory,
        job(&defaults(), &person(&fx, "disabled"), &pt, None),
    )
    .await;
    let dn = fx.dn("uid=disabled");
    let c = cso(&pt, &dn, &[]);
    run_ok(&directory, job(&disable, &Export::delete(), &pt, Some(&c))).await;
    assert!(fx.exists(&dn).await?);
    assert_eq!(
        fx.values(&dn, "description").await?,
        Some(set(["TRUE".to_string()]))
    );
    let missing = cso(&pt, &fx.dn("uid=never-there"), &[]);
    run_ok(
        &directory,
        job(&disable, &Export::delete(), &pt, Some(&missing)),
    )
    .await;
    let uac = ExportSettings {
        delete_behaviour: Some(DeleteBehaviour::Disable),
        ..defaults()
    };
    run_ok(
        &directory,
        job(&uac, &Export::delete(), &pt, Some(&missing)),
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn placeholder_member_keeps_groups_valid() -> TestResult {
    let fx = Fixture::new("placeholder").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let gt = group_type();
    let dn = fx.dn("cn=empty");
    let placeholder = "cn=placeholder".to_string();
    let create = Export::create()
        .text(group::DN, C::Add, &dn)
        .text(group::CN, C::Add, "empty");
    run_ok(&directory, job(&defaults(), &create, &gt, None)).await;
    assert_eq!(
        fx.values(&dn, "member").await?,
        Some(set([placeholder.clone()]))
    );

    // Real members arrive; JIM's CSO shows none (import hides the placeholder): it goes (§11.3).
    let add = Export::update()
        .text(group::MEMBER, C::Add, &member(1))
        .text(group::MEMBER, C::Add, &member(2));
    let c = cso(&gt, &dn, &[]);
    run_ok(&directory, job(&defaults(), &add, &gt, Some(&c))).await;
    assert_eq!(
        fx.values(&dn, "member").await?,
        Some(set([member(1), member(2)]))
    );

    // The last members leave: the placeholder comes back in the same request.
    let remove = Export::update()
        .text(group::MEMBER, C::Remove, &member(1))
        .text(group::MEMBER, C::Remove, &member(2));
    let (m1, m2) = (member(1), member(2));
    let c = cso(&gt, &dn, &[(group::MEMBER, &m1), (group::MEMBER, &m2)]);
    run_ok(&directory, job(&defaults(), &remove, &gt, Some(&c))).await;
    assert_eq!(
        fx.values(&dn, "member").await?,
        Some(set([placeholder.clone()]))
    );

    // Clearing the attribute keeps the placeholder too.
    let add = Export::update().text(group::MEMBER, C::Add, &member(3));
    run_ok(
        &directory,
        job(&defaults(), &add, &gt, Some(&cso(&gt, &dn, &[]))),
    )
    .await;
    let clear = Export::update().clear(group::MEMBER);
    let m3 = member(3);
    let c = cso(&gt, &dn, &[(group::MEMBER, &m3)]);
    run_ok(&directory, job(&defaults(), &clear, &gt, Some(&c))).await;
    assert_eq!(fx.values(&dn, "member").await?, Some(set([placeholder])));
    Ok(())
}

#[tokio::test]
async fn values_that_already_hold_converge_without_failing() -> TestResult {
    let fx = Fixture::new("converge").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let gt = group_type();
    let dn = fx.dn("cn=partial");
    fx.seed(
        &dn,
        vec![
            ("objectClass", vec!["groupOfNames"]),
            ("cn", vec!["partial"]),
            ("member", vec![&member(1), &member(2)]),
        ],
    )
    .await?;
    // Adds of which two already hold (20), removals of which one is already gone (16).
    let e = Export::update()
        .text(group::MEMBER, C::Add, &member(1))
        .text(group::MEMBER, C::Add, &member(2).to_uppercase())
        .text(group::MEMBER, C::Add, &member(3))
        .text(group::MEMBER, C::Remove, &member(9));
    let (m1, m2) = (member(1), member(2));
    let c = cso(&gt, &dn, &[(group::MEMBER, &m1), (group::MEMBER, &m2)]);
    let r = run_ok(&directory, job(&defaults(), &e, &gt, Some(&c))).await;
    assert!(r.operations > 1, "the conflict was converged, not ignored");
    assert_eq!(
        fx.values(&dn, "member").await?,
        Some(set([member(1), member(2), member(3)]))
    );
    assert_eq!(r.written_change_ids.len(), 4);
    Ok(())
}

/// The recovery context of a re-attempt whose first attempt was claimed at `first_attempt_at`.
fn recovery(
    first_attempt_at: chrono::DateTime<Utc>,
    anchors: Option<Arc<dyn AnchorRegistry>>,
) -> Recovery {
    Recovery {
        first_attempt_at: Some(first_attempt_at),
        anchors,
    }
}

/// Says every anchor belongs to another object (a CSO JIM already knows as someone else).
struct TakenAnchors(Uuid);

impl AnchorRegistry for TakenAnchors {
    fn other_holder<'a>(
        &'a self,
        _anchor: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Uuid>, String>> + Send + 'a>> {
        Box::pin(async move { Ok(Some(self.0)) })
    }
}

/// A re-attempt meets the entry its earlier attempt created (the Add's values, created after the
/// first attempt, by the identity the engine binds as): it adopts it, reports its entryUUID and
/// writes nothing.
#[tokio::test]
async fn reattempt_adopts_the_entry_its_earlier_attempt_created() -> TestResult {
    let fx = Fixture::new("adopt").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    assert_eq!(directory.identity(), Some(fx.slapd.admin_dn()));
    let pt = person_type();
    let first_attempt = Utc::now();
    let e = person(&fx, "left-behind").text(person::DESCRIPTION, C::Add, "written once");
    // The earlier attempt's Add went through (its outcome was never persisted).
    let earlier = run_ok(&directory, job(&defaults(), &e, &pt, None)).await;
    let dn = fx.dn("uid=left-behind");
    let writes = directory.stats().modifies;
    let r = run_ok(
        &directory,
        job(&defaults(), &e, &pt, None)
            .reattempt(true)
            .recovery(recovery(first_attempt, None)),
    )
    .await;
    assert!(r.adopted && r.entry_created);
    assert_eq!(r.external_id, earlier.external_id);
    assert_eq!(r.external_id, fx.entry_uuid(&dn).await?);
    assert_eq!(r.secondary_external_id.as_deref(), Some(dn.as_str()));
    assert_eq!(directory.stats().modifies, writes, "nothing rewritten");
    assert_eq!(
        fx.values(&dn, "description").await?,
        Some(set(["written once".to_string()]))
    );
    Ok(())
}

/// A re-attempted group Create whose earlier attempt's Add carried other members (the change rows came
/// in another order, so its first chunk held others): the entry is adopted and every member this
/// attempt sends ends up in it, those of its own Add included (found by the chaos test: nine members
/// of an adopted group were counted as written and never sent).
#[tokio::test]
async fn an_adopted_group_gets_the_members_its_earlier_attempt_did_not_carry() -> TestResult {
    let fx = Fixture::new("adopt-members").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let gt = group_type();
    let settings = ExportSettings {
        modify_batch_size: 10,
        ..defaults()
    };
    let dn = fx.dn("cn=chunked");
    let first_attempt = Utc::now();
    let group = |order: &[usize]| {
        let mut e =
            Export::create()
                .text(group::DN, C::Add, &dn)
                .text(group::CN, C::Add, "chunked");
        for i in order {
            e = e.text(group::MEMBER, C::Add, &member(*i));
        }
        e
    };
    // The earlier attempt: members 0..30 in this order; its Add (0..10) went through, then it died.
    let earlier = group(&(0..30).collect::<Vec<_>>());
    let mut plan = job(&settings, &earlier, &gt, None);
    if let Ok(p) = plan.plan.as_mut() {
        p.steps.truncate(1);
    }
    run_ok(&directory, plan).await;
    assert_eq!(
        fx.values(&dn, "member").await?.unwrap_or_default().len(),
        10
    );

    // The re-attempt reads the same rows in another order: its Add carries 9..19, its overflow the
    // rest. The entry is its own (one member in common): adopted, and complete afterwards.
    let order: Vec<usize> = (9..30).chain(0..9).collect();
    let mut again = group(&order);
    again.0.id = earlier.0.id;
    let r = run_ok(
        &directory,
        job(&settings, &again, &gt, None)
            .reattempt(true)
            .recovery(recovery(first_attempt, None)),
    )
    .await;
    assert!(r.adopted && r.entry_created);
    assert_eq!(
        fx.values(&dn, "member").await?.unwrap_or_default(),
        set((0..30).map(member)),
        "every member the export sends"
    );
    Ok(())
}

/// A re-attempt meets an unrelated entry at its DN (placed there after the first attempt, with
/// other values): it fails as a first attempt does, naming the DN and why, and leaves the entry as
/// it is: no Create turned into an Update, no anchor taken.
#[tokio::test]
async fn reattempt_does_not_adopt_a_stranger() -> TestResult {
    let fx = Fixture::new("stranger").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    let first_attempt = Utc::now();
    let dn = fx.dn("uid=taken");
    fx.seed(
        &dn,
        vec![
            ("objectClass", vec!["inetOrgPerson"]),
            ("uid", vec!["taken"]),
            ("cn", vec!["Someone Else"]),
            ("sn", vec!["Else"]),
            ("description", vec!["not JIM's"]),
        ],
    )
    .await?;
    let uuid_before = fx.entry_uuid(&dn).await?;
    let e = person(&fx, "taken").text(person::DESCRIPTION, C::Add, "ours");
    let r = directory
        .execute(
            job(&defaults(), &e, &pt, None)
                .reattempt(true)
                .recovery(recovery(first_attempt, None)),
        )
        .await;
    assert_eq!(
        r.error_type(),
        Some(ConnectedSystemExportErrorType::General)
    );
    let message = r.error_message().unwrap_or_default();
    assert!(message.contains("entryAlreadyExists (68)"), "{message}");
    assert!(message.contains(&dn), "{message}");
    assert!(message.contains("not taken over"), "{message}");
    assert!(
        message.contains("cn") && message.contains("Someone Else"),
        "says what differs: {message}"
    );
    assert!(!r.entry_created && !r.adopted && r.external_id.is_none());
    assert!(r.written_change_ids.is_empty());
    assert_eq!(fx.entry_uuid(&dn).await?, uuid_before);
    assert_eq!(
        fx.values(&dn, "description").await?,
        Some(set(["not JIM's".to_string()]))
    );
    Ok(())
}

/// The evidence that refuses a stranger even when its values are exactly the export's: an entry made
/// before the export was first tried, or one whose anchor another CSO holds.
#[tokio::test]
async fn reattempt_refuses_an_older_entry_or_another_objects_anchor() -> TestResult {
    let fx = Fixture::new("older").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    let e = person(&fx, "twin");
    let dn = fx.dn("uid=twin");
    // The twin is created now, by the export's own Add; the re-attempt says its first attempt was
    // an hour from now (beyond the 300 s clock allowance).
    run_ok(&directory, job(&defaults(), &e, &pt, None)).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let r = directory
        .execute(
            job(&defaults(), &e, &pt, None)
                .reattempt(true)
                .recovery(recovery(later, None)),
        )
        .await;
    let message = r.error_message().unwrap_or_default();
    assert!(
        message.contains("before this export was first tried"),
        "{message}"
    );
    assert!(!r.adopted);

    let other = Uuid::new_v4();
    let r = directory
        .execute(
            job(&defaults(), &e, &pt, None)
                .reattempt(true)
                .recovery(recovery(
                    Utc::now() - chrono::Duration::minutes(1),
                    Some(Arc::new(TakenAnchors(other))),
                )),
        )
        .await;
    let message = r.error_message().unwrap_or_default();
    assert!(message.contains(&other.to_string()), "{message}");
    assert!(!r.adopted && !r.entry_created);
    assert!(fx.exists(&dn).await?);
    Ok(())
}

#[tokio::test]
async fn first_attempt_add_of_a_taken_dn_fails() -> TestResult {
    let fx = Fixture::new("taken").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    let dn = fx.dn("uid=someone");
    fx.seed(
        &dn,
        vec![
            ("objectClass", vec!["inetOrgPerson"]),
            ("uid", vec!["someone"]),
            ("cn", vec!["Someone Else"]),
            ("sn", vec!["Else"]),
        ],
    )
    .await?;
    let r = directory
        .execute(job(&defaults(), &person(&fx, "someone"), &pt, None))
        .await;
    assert_eq!(
        r.error_type(),
        Some(ConnectedSystemExportErrorType::General)
    );
    let message = r.error_message().unwrap_or_default();
    assert!(message.contains("entryAlreadyExists (68)"), "{message}");
    assert!(!r.entry_created && !r.adopted);
    assert!(r.written_change_ids.is_empty());
    assert_eq!(
        fx.values(&dn, "cn").await?,
        Some(set(["Someone Else".to_string()]))
    );
    Ok(())
}

#[tokio::test]
async fn overflow_failure_after_the_add_reports_partial_progress() -> TestResult {
    let fx = Fixture::new("overflow").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let gt = group_type();
    let settings = ExportSettings {
        modify_batch_size: 10,
        ..defaults()
    };
    let dn = fx.dn("cn=half");
    let mut e = Export::create()
        .text(group::DN, C::Add, &dn)
        .text(group::CN, C::Add, "half");
    for i in 0..10 {
        e = e.text(group::MEMBER, C::Add, &member(i));
    }
    e = e.text(group::MEMBER, C::Add, "this is not a DN");
    let r = directory.execute(job(&settings, &e, &gt, None)).await;
    assert!(!r.is_success());
    assert!(
        r.entry_created,
        "the entry exists: the retry must be an Update"
    );
    assert_eq!(r.external_id, fx.entry_uuid(&dn).await?);
    assert!(r.external_id.is_some());
    assert_eq!(r.secondary_external_id.as_deref(), Some(dn.as_str()));
    assert_eq!(
        r.written_change_ids.len(),
        12,
        "DN, cn and the ten members of the Add"
    );
    let message = r.error_message().unwrap_or_default();
    assert!(
        message.contains("Modify of") && message.contains(&dn),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn failure_after_a_rename_reports_the_new_dn() -> TestResult {
    let fx = Fixture::new("rename-then-fail").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    run_ok(
        &directory,
        job(&defaults(), &person(&fx, "before"), &pt, None),
    )
    .await;
    let old = fx.dn("uid=before");
    let new = fx.dn("uid=after");
    let e = Export::update().text(person::DN, C::Update, &new).text(
        person::BOGUS,
        C::Update,
        "the schema has no such attribute",
    );
    let r = directory
        .execute(job(&defaults(), &e, &pt, Some(&cso(&pt, &old, &[]))))
        .await;
    assert!(!r.is_success());
    assert_eq!(r.secondary_external_id.as_deref(), Some(new.as_str()));
    assert_eq!(r.written_change_ids, vec![e.ids()[0]]);
    assert!(fx.exists(&new).await?);
    Ok(())
}

/// A rename whose target DN holds another entry fails on a first attempt and on a re-attempt
/// alike, naming the target (the DN an operator has to look at), and leaves both entries as they
/// were. The chaos test placed a stranger there and found the refusal naming only the old DN.
#[tokio::test]
async fn a_rename_onto_a_taken_dn_fails_naming_the_target() -> TestResult {
    let fx = Fixture::new("rename-taken").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    run_ok(
        &directory,
        job(&defaults(), &person(&fx, "mover"), &pt, None),
    )
    .await;
    let old = fx.dn("uid=mover");
    let target = fx.dn("uid=occupied");
    fx.seed(
        &target,
        vec![
            ("objectClass", vec!["inetOrgPerson"]),
            ("uid", vec!["occupied"]),
            ("cn", vec!["Someone Else"]),
            ("sn", vec!["Else"]),
        ],
    )
    .await?;
    let e = Export::update().text(person::DN, C::Update, &target);
    for reattempt in [false, true] {
        let r = directory
            .execute(job(&defaults(), &e, &pt, Some(&cso(&pt, &old, &[]))).reattempt(reattempt))
            .await;
        let message = r.error_message().unwrap_or_default();
        assert!(!r.is_success(), "re-attempt {reattempt}: {message}");
        assert!(
            message.contains("entryAlreadyExists (68)")
                && message.contains(&target)
                && message.contains("held by another entry"),
            "re-attempt {reattempt}: {message}"
        );
        assert!(fx.exists(&old).await?, "the entry to rename stays");
        assert_eq!(
            fx.values(&target, "cn").await?,
            Some(set(["Someone Else".to_string()])),
            "the other entry stays as it was"
        );
    }
    Ok(())
}

/// A re-attempted rename whose earlier attempt went through, with another entry created at the old
/// DN since: the object carries its anchor at the new DN, so the rename counts as done and the entry
/// at the old DN is left as it was (the identity assertion refuses to move it). When neither entry
/// is the object, the re-attempt fails naming the old DN, and neither entry is touched.
#[tokio::test]
async fn a_reattempted_rename_is_done_though_another_entry_took_the_old_dn() -> TestResult {
    let fx = Fixture::new("rename-old-taken").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    run_ok(
        &directory,
        job(&defaults(), &person(&fx, "mover"), &pt, None),
    )
    .await;
    let old = fx.dn("uid=mover");
    let new = fx.dn("uid=moved");
    let anchor = fx.entry_uuid(&old).await?.expect("the entry's entryUUID");
    let ours = cso(&pt, &old, &[(person::ENTRY_UUID, &anchor)]);
    let e = Export::update().text(person::DN, C::Update, &new);
    run_ok(&directory, job(&defaults(), &e, &pt, Some(&ours))).await;
    let stranger = vec![
        ("objectClass", vec!["inetOrgPerson"]),
        ("uid", vec!["mover"]),
        ("cn", vec!["Someone Else"]),
        ("sn", vec!["Else"]),
    ];
    fx.seed(&old, stranger).await?;
    let stranger_uuid = fx.entry_uuid(&old).await?;

    let r = directory
        .execute(job(&defaults(), &e, &pt, Some(&ours)).reattempt(true))
        .await;
    assert!(r.is_success(), "{:?}", r.error_message());
    assert_eq!(r.secondary_external_id.as_deref(), Some(new.as_str()));
    assert_eq!(fx.entry_uuid(&new).await?.as_deref(), Some(anchor.as_str()));
    assert_eq!(
        fx.entry_uuid(&old).await?,
        stranger_uuid,
        "the other entry stays"
    );

    // Another object whose rename to the same DN is re-attempted: neither entry is it, and the
    // identity assertion refuses the ModifyDN of the entry at the old DN.
    let other = cso(
        &pt,
        &old,
        &[(person::ENTRY_UUID, &Uuid::new_v4().to_string())],
    );
    let r = directory
        .execute(job(&defaults(), &e, &pt, Some(&other)).reattempt(true))
        .await;
    let message = r.error_message().unwrap_or_default();
    assert!(!r.is_success(), "{message}");
    assert!(
        message.contains("assertionFailed (122)")
            && message.contains(&old)
            && message.contains("is not this object"),
        "{message}"
    );
    assert_eq!(fx.entry_uuid(&new).await?.as_deref(), Some(anchor.as_str()));
    assert_eq!(fx.entry_uuid(&old).await?, stranger_uuid);
    Ok(())
}

/// A write to an object whose anchor JIM holds asserts that anchor (RFC 4528): where another entry
/// sits at the object's DN (the object deleted or moved outside JIM, that entry created since), a
/// Modify, a rename and a Delete are each refused with assertionFailed, naming the DN, and the entry
/// keeps its values. With the anchor of the entry that is there, the same Modify goes through.
#[tokio::test]
async fn writes_never_land_on_another_entry_at_the_objects_dn() -> TestResult {
    let fx = Fixture::new("assert-identity").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    assert!(
        directory.profile().supports_assertion,
        "slapd offers RFC 4528"
    );
    let pt = person_type();
    let dn = fx.dn("uid=taken");
    fx.seed(
        &dn,
        vec![
            ("objectClass", vec!["inetOrgPerson"]),
            ("uid", vec!["taken"]),
            ("cn", vec!["Someone Else"]),
            ("sn", vec!["Else"]),
        ],
    )
    .await?;
    let theirs = fx.entry_uuid(&dn).await?.expect("its entryUUID");
    let ours = Uuid::new_v4().to_string();
    let object = cso(&pt, &dn, &[(person::ENTRY_UUID, &ours)]);
    let elsewhere = fx.dn("uid=elsewhere");
    let cn = Export::update().text(person::CN, C::Update, "Taken Over");
    let rename = Export::update().text(person::DN, C::Update, &elsewhere);
    for (what, e) in [
        ("modify", &cn),
        ("rename", &rename),
        ("delete", &Export::delete()),
    ] {
        let r = directory
            .execute(job(&defaults(), e, &pt, Some(&object)))
            .await;
        let message = r.error_message().unwrap_or_default();
        assert!(!r.is_success(), "{what}: {message}");
        assert!(
            message.contains("assertionFailed (122)")
                && message.contains(&dn)
                && message.contains("is not this object"),
            "{what}: {message}"
        );
        assert_eq!(
            fx.entry_uuid(&dn).await?.as_deref(),
            Some(theirs.as_str()),
            "{what}"
        );
        assert_eq!(
            fx.values(&dn, "cn").await?,
            Some(set(["Someone Else".to_string()])),
            "{what}"
        );
        assert!(!fx.exists(&elsewhere).await?, "{what}");
    }
    let entry = cso(&pt, &dn, &[(person::ENTRY_UUID, &theirs)]);
    run_ok(&directory, job(&defaults(), &cn, &pt, Some(&entry))).await;
    assert_eq!(
        fx.values(&dn, "cn").await?,
        Some(set(["Taken Over".to_string()]))
    );
    Ok(())
}

#[tokio::test]
async fn plan_failures_make_no_ldap_call() -> TestResult {
    let fx = Fixture::new("scope").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let pt = person_type();
    let settings = ExportSettings {
        managed_scope: vec![ScopeContainer {
            dn: fx.dn("ou=Managed"),
            scope: Some(ConnectedSystemContainerScope::Subtree),
            excluded: false,
        }],
        ..defaults()
    };
    let before = directory.stats().operations();
    let r = directory
        .execute(job(&settings, &person(&fx, "outside"), &pt, None))
        .await;
    assert_eq!(
        r.error_type(),
        Some(ConnectedSystemExportErrorType::OutsideManagedScope)
    );
    assert_eq!(r.operations, 0);
    assert_eq!(directory.stats().operations(), before);
    assert!(!fx.exists(&fx.dn("uid=outside")).await?);
    Ok(())
}

#[tokio::test]
async fn many_exports_stream_through_with_shared_containers() -> TestResult {
    let fx = Fixture::new("stream").await?;
    let directory = fx
        .connect(DirectoryTuning {
            connections: Some(2),
            in_flight_per_connection: Some(8),
            ..DirectoryTuning::default()
        })
        .await?;
    let pt = person_type();
    let settings = ExportSettings {
        create_containers_as_needed: true,
        ..defaults()
    };
    let (job_tx, job_rx) = mpsc::channel::<ExportJob>(16);
    let (result_tx, mut result_rx) = mpsc::channel(16);
    let runner = {
        let d = directory.clone();
        tokio::spawn(async move { d.run(job_rx, result_tx).await })
    };
    let n = 300;
    let mut expected = std::collections::HashMap::new();
    let feeder_jobs: Vec<ExportJob> = (0..n)
        .map(|i| {
            let dn = fx.dn(&format!("uid=s{i},ou=Team{},ou=Shared", i % 3));
            let e = Export::create()
                .text(person::DN, C::Add, &dn)
                .text(person::UID, C::Add, &format!("s{i}"))
                .text(person::CN, C::Add, "S")
                .text(person::SN, C::Add, "S");
            expected.insert(e.0.id, dn);
            job(&settings, &e, &pt, None)
        })
        .collect();
    let feeder = tokio::spawn(async move {
        for j in feeder_jobs {
            job_tx.send(j).await.expect("the runner takes jobs");
        }
    });
    let mut seen = 0;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(60), result_rx.recv()).await? {
        assert!(r.is_success(), "{:?}", r.status);
        assert!(
            expected.remove(&r.export_id).is_some(),
            "one result per export"
        );
        seen += 1;
    }
    feeder.await?;
    runner.await?;
    assert_eq!(seen, n);
    let mut created = directory.created_containers();
    created.sort();
    assert_eq!(
        created.len(),
        4,
        "ou=Shared and three teams, each created once: {created:?}"
    );
    let stats = directory.stats();
    assert!(
        stats.peak_in_flight > 1,
        "operations were pipelined: {stats:?}"
    );
    assert!(stats.peak_in_flight <= 16);
    assert_eq!(
        fx.slapd
            .count_entries(&fx.dn("ou=Shared"), "(objectClass=inetOrgPerson)")
            .await?,
        n
    );
    Ok(())
}

/// `ExecuteAsync_EmptyList_…`, `…MaintainsPositionalOrdering…`, `…IndividualFailure_DoesNotAbortOtherExports…`,
/// `…ExceptionInOneExport_OthersStillComplete…`, `…MixedOperations_MaintainsCorrectResults…`.
#[tokio::test]
async fn execute_all_returns_one_result_per_export_in_input_order() -> TestResult {
    let fx = Fixture::new("batch").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    assert!(directory.execute_all(Vec::new()).await.is_empty());
    let pt = person_type();
    let seeded: Vec<Export> = (0..3).map(|i| person(&fx, &format!("m{i}"))).collect();
    for e in &seeded {
        run_ok(&directory, job(&defaults(), e, &pt, None)).await;
    }
    let taken = person(&fx, "m0");
    let no_dn = Export::create().text(person::UID, C::Add, "nodn");
    let update0 = Export::update().text(person::MAIL, C::Update, "m0@example.org");
    let update2 = Export::update().text(person::MAIL, C::Update, "m2@example.org");
    let cso0 = cso(&pt, &fx.dn("uid=m0"), &[]);
    let cso1 = cso(&pt, &fx.dn("uid=m1"), &[]);
    let cso2 = cso(&pt, &fx.dn("uid=m2"), &[]);
    let mut exports: Vec<(
        Export,
        Option<&jim_export::model::ConnectedSystemObject>,
        bool,
    )> = vec![
        (update0, Some(&cso0), true),
        (Export::delete(), Some(&cso1), true),
        (taken, None, false),
        (update2, Some(&cso2), true),
        (no_dn, None, false),
    ];
    for i in 0..40 {
        exports.push((person(&fx, &format!("b{i}")), None, true));
    }
    let jobs = exports
        .iter()
        .map(|(e, c, _)| job(&defaults(), e, &pt, *c))
        .collect();
    let results = directory.execute_all(jobs).await;
    assert_eq!(results.len(), exports.len());
    for ((e, _, ok), r) in exports.iter().zip(&results) {
        assert_eq!(e.0.id, r.export_id, "positional");
        assert_eq!(r.is_success(), *ok, "{:?}", r.status);
    }
    assert!(
        results[2]
            .error_message()
            .unwrap_or_default()
            .contains("entryAlreadyExists")
    );
    assert!(
        results[4]
            .error_message()
            .unwrap_or_default()
            .contains("could not be determined")
    );
    assert_eq!(results[4].operations, 0);
    assert_eq!(results[0].status, ExportStatus::Succeeded);
    assert!(!fx.exists(&fx.dn("uid=m1")).await?);
    assert_eq!(
        fx.values(&fx.dn("uid=m2"), "mail").await?,
        Some(set(["m2@example.org".to_string()]))
    );
    Ok(())
}
