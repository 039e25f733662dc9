//! Crash consistency at chosen points: the engine, running in a child process against real PostgreSQL
//! and slapd with injected latency, is killed with SIGKILL at chosen points of a Small-template run
//! (random kill points are `engine_chaos`'s); once the killed run's claims are past their lease (10 s, the shortest allowed), the
//! engine runs again in this process until nothing is due, and the test asserts convergence:
//!
//! - every expected object is in the directory exactly once (the full DN set under the suffix, and
//!   each user's `employeeNumber` once), with exactly the expected values;
//! - every pending export is in a legal final state, in practice all `Exported`; nothing
//!   `Executing`; no error counted; every attribute change written once (one attempt);
//! - every CSO's anchor is the `entryUUID` of its entry;
//! - Creates whose entry the killed run had written were adopted by the re-attempt (the same entry,
//!   its entryUUID reported; no `entryAlreadyExists` failure), counted as recovered.
//!
//! The chosen points:
//! - after the first Adds reached slapd, before any outcome was persisted;
//! - in the middle of a chunked member write (modify batch size 10, so a big group is one Add and
//!   several Modify requests), some chunks written and not all;
//! - after the ModifyDN of a follow-up rename reached slapd, before its outcome was persisted;
//! - in the middle of a flush: some rows `Exported`, others of the same run `Executing`, and the
//!   next persist statement in progress in the database (held there by row locks the test takes);
//! - and, not killed but frozen (SIGSTOP) past its lease, a run that resumes after another run
//!   finished its rows: everything it still does is fenced off.
//!
//! For the first three the test pauses the latency proxy the moment it sees the state, checks the
//! database, kills the child, and lets the proxy deliver what it held (or drop it), as a network
//! delivers requests late (or loses them).
//!
//! The child is this test binary, re-run with an environment variable selecting the ignored
//! `crash_child` test (as `testkit/tests/servers.rs` does for its crash helper), so no extra binary
//! is built. Scenarios run one after another (a lock), each on its own database and slapd.

use std::time::{Duration, Instant};

use jim_export::engine::Engine;
use jim_export::model::PendingExportChangeType;
use jim_export_testkit::seed::{self, FollowUpKind, FollowUps};
use jim_export_testkit::support::crash::*;
use uuid::Uuid;

/// Scenarios run one at a time: each drives slapd, PostgreSQL and a child engine hard on a 2-core
/// machine, and the kill points are found by polling.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the scenarios' lock; `None` (skip) when the tests are pointed at an existing directory
/// (`JIM_TEST_LDAP_URL`), since every scenario needs a directory of its own.
async fn begin() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    if std::env::var_os("JIM_TEST_LDAP_URL").is_some() {
        eprintln!("skipped: the crash scenarios need a throwaway slapd each");
        return None;
    }
    Some(SERIAL.lock().await)
}

/// Not a test on its own: the export run the scenarios start in a child process and kill
/// ([`jim_export_testkit::support::crash::child_main`]).
#[test]
#[ignore = "the export run the crash scenarios start in a child process and kill"]
fn crash_child() {
    child_main();
}

// ------------------------------------------------------------------------------------------------
// The chosen kill points
// ------------------------------------------------------------------------------------------------

/// Killed after the first Adds reached slapd and before any outcome was persisted: on the re-run the
/// Creates whose entries exist are adopted (read back, anchored, converged), not failed, and none is
/// created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_first_adds_reach_the_directory() {
    let Some(_serial) = begin().await else {
        return;
    };
    let mut s = Scenario::new("first adds", Duration::from_millis(40), None).await;
    let mut request = s.child_request();
    // Large, slow flushes keep the first persist seconds away, so the kill lands before it even on
    // a loaded machine.
    request.options.flush_interval_ms = 3_000;
    request.options.flush_size = 1_000;
    let mut child = ChildRun::spawn(&request);
    let mut ldap = s.admin_ldap().await;
    let suffix = s.env.slapd.suffix().to_string();
    wait_for(&mut child, "the first Add reaching slapd", async || {
        objects_in_directory(&mut ldap, &suffix).await > 0
    })
    .await;
    s.ldap_proxy.pause();
    let at_kill = s.statuses().await;
    let ran = child.kill();
    s.ldap_proxy.resume();
    s.mark("run until kill");
    assert_eq!(
        at_kill.exported, 0,
        "killed before any outcome was persisted: {at_kill:?}"
    );
    assert!(at_kill.executing > 0, "{at_kill:?}");
    let reached = s.unpersisted_creates_in_directory().await;
    eprintln!(
        "[{}] killed after {ran:?}: {} Create(s) in the directory without a persisted outcome",
        s.name,
        reached.len()
    );
    assert!(!reached.is_empty());

    let runs = s.converge(&request).await;
    let expected = s.env.seeded.expected_directory().unwrap();
    s.assert_converged(&expected, &runs).await;
    s.assert_recovered(&reached, &runs).await;
    s.print_timings();
}

/// Killed in the middle of a chunked member write: with a modify batch size of 10, a big group's
/// Create is one Add and several member Modify requests; the kill lands when some but not all
/// chunks reached slapd. The re-run adopts the group and writes every member exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_a_chunked_member_write() {
    let Some(_serial) = begin().await else {
        return;
    };
    let mut s = Scenario::new("chunked members", Duration::from_millis(40), None).await;
    let mut request = s.child_request();
    request.settings.modify_batch_size = 10;
    let batch = 10;
    let big = (0..s.env.seeded.groups())
        .filter_map(|g| s.env.seeded.group(g))
        .max_by_key(|g| g.member_count())
        .expect("groups");
    let members = big.member_count();
    assert!(
        members >= 4 * batch,
        "the biggest group ({members} members) takes several chunks"
    );
    let mut child = ChildRun::spawn(&request);
    let mut ldap = s.admin_ldap().await;
    let mut seen = 0;
    wait_for(&mut child, "a partly written member list", async || {
        seen = value_count(&mut ldap, &big.dn, "member").await;
        seen > batch && seen + batch < members
    })
    .await;
    s.ldap_proxy.pause();
    let status = s.status_of(big.ids.pending_export).await;
    let ran = child.kill();
    // The chunk in flight is lost with the connection, as on a network that breaks.
    s.ldap_proxy.drop_connections();
    s.ldap_proxy.resume();
    s.mark("run until kill");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let landed = value_count(&mut ldap, &big.dn, "member").await;
    eprintln!(
        "[{}] killed after {ran:?} with {landed} of {members} members of {} written",
        s.name, big.dn
    );
    assert_eq!(status, EXECUTING, "the group's outcome was not persisted");
    assert!(
        landed > batch && landed < members,
        "the member list is partial: {landed} of {members}"
    );
    let reached = s.unpersisted_creates_in_directory().await;
    assert!(reached.contains_key(&big.ids.pending_export));

    let runs = s.converge(&request).await;
    let expected = s.env.seeded.expected_directory().unwrap();
    s.assert_converged(&expected, &runs).await;
    s.assert_recovered(&reached, &runs).await;
    s.print_timings();
}

/// Killed after the ModifyDN of a follow-up rename reached the directory and before its outcome was
/// persisted: the re-run finds the entry gone from the old DN and present at the new one, counts the
/// rename as done and finishes the export; the other follow-ups (updates, moves, membership and
/// manager changes, deletes) converge too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_a_rename_reaches_the_directory() {
    let Some(_serial) = begin().await else {
        return;
    };
    // Latency on the database too: the run's last claims and its flush take longer, which widens the
    // window between the rename and its persisted outcome.
    let mut s = Scenario::new(
        "rename",
        Duration::from_millis(40),
        Some(Duration::from_millis(40)),
    )
    .await;
    // The initial provisioning, uninterrupted, then JIM's confirming import and a round of follow-ups.
    let mut direct = s.direct_request();
    direct.settings.create_containers_as_needed = true;
    let (first, _) = s.env.run(&Engine::new(), &direct).await;
    assert_eq!(first.failed_count, 0, "{}", first.message);
    seed::confirm_exported(&s.env.db.pool, &s.env.seeded)
        .await
        .expect("confirm");
    let follow_ups = FollowUps {
        seed: 5,
        attribute_updates: 5,
        renames: 6,
        moves: 3,
        manager_changes: 3,
        member_add_groups: 3,
        member_remove_groups: 3,
        members_per_group: 4,
        user_deletes: 2,
        group_deletes: 1,
        ..FollowUps::default()
    };
    let staged = seed::stage_follow_ups(&s.env.db.pool, &s.env.seeded, &follow_ups)
        .await
        .expect("stage");
    s.mark("initial export and follow-ups");

    let renames: Vec<(Uuid, String)> = staged
        .of_kind(FollowUpKind::Rename)
        .filter_map(|e| Some((e.pending_export_id, e.new_dn.as_ref()?.to_lowercase())))
        .collect();
    assert!(!renames.is_empty());
    let mut request = s.child_request();
    request.settings.create_containers_as_needed = true;
    request.options.flush_interval_ms = 3_000;
    let mut child = ChildRun::spawn(&request);
    let mut ldap = s.admin_ldap().await;
    let suffix = s.env.slapd.suffix().to_string();
    let mut renamed = None;
    wait_for(&mut child, "a rename reaching slapd", async || {
        let present = search_dns(&mut ldap, &suffix, "(objectClass=inetOrgPerson)").await;
        renamed = renames.iter().find(|(_, dn)| present.contains(dn)).cloned();
        renamed.is_some()
    })
    .await;
    s.ldap_proxy.pause();
    let (renamed_id, new_dn) = renamed.expect("a renamed entry");
    let status = s.status_of(renamed_id).await;
    let ran = child.kill();
    s.ldap_proxy.resume();
    s.mark("run until kill");
    eprintln!("[{}] killed after {ran:?}, {new_dn} renamed", s.name);
    assert_eq!(status, EXECUTING, "the rename's outcome was not persisted");

    let runs = s.converge(&request).await;
    let mut expected = s.env.seeded.expected_directory().unwrap();
    staged.apply(&mut expected);
    s.assert_converged(&expected, &runs).await;
    s.assert_recovered(&Reached::from([(renamed_id, None)]), &runs)
        .await;
    let items = runs[0].1.items();
    let item = items
        .iter()
        .find(|i| i.pending_export_id == renamed_id)
        .expect("the rename is reported");
    assert_eq!(item.change_type, PendingExportChangeType::Update);
    assert!(
        item.anchor_changes.iter().any(
            |a| a.attribute_name == "distinguishedName" && a.new_value.to_lowercase() == new_dn
        ),
        "the re-run reports the new DN: {:?}",
        item.anchor_changes
    );
    s.print_timings();
}

/// Killed in the middle of a flush: with small flushes and latency on the database connection too,
/// the run goes until the first rows are Exported while others of the same run are still
/// Executing. The test then takes row locks (SKIP LOCKED, so it never waits on the engine) on the
/// rows still Executing, so the engine's next persist statement stops inside the database, and
/// kills the engine while that statement is in progress. Releasing the locks lets the orphaned
/// statement finish (committing, or aborting if the server notices the lost client first): either
/// way the outcomes committed before the kill stay and the rest is re-attempted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_a_flush() {
    let Some(_serial) = begin().await else {
        return;
    };
    let mut s = Scenario::new(
        "mid-flush",
        Duration::from_millis(20),
        Some(Duration::from_millis(30)),
    )
    .await;
    let mut request = s.child_request();
    request.options.flush_size = 10;
    request.options.page_size = 50;
    let mut child = ChildRun::spawn(&request);
    let mut first = Statuses::default();
    wait_for(&mut child, "the first persisted outcomes", async || {
        first = s.statuses().await;
        first.exported > 0 && first.executing > 0
    })
    .await;
    let mut locks = s.env.db.pool.begin().await.expect("a transaction");
    let locked: Vec<Uuid> = sqlx::query_scalar(
        r#"SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 2 FOR UPDATE SKIP LOCKED"#,
    )
    .bind(s.system())
    .fetch_all(&mut *locks)
    .await
    .expect("lock the executing rows");
    assert!(!locked.is_empty());
    wait_for(&mut child, "a persist statement in progress", async || {
        persists_in_progress(&s, true).await > 0
    })
    .await;
    let at_kill = s.statuses().await;
    let ran = child.kill();
    assert!(
        persists_in_progress(&s, true).await > 0,
        "the killed engine's persist is still in the database"
    );
    locks.rollback().await.expect("release the locks");
    s.mark("run until kill");
    let end = Instant::now() + Duration::from_secs(30);
    while persists_in_progress(&s, false).await > 0 {
        assert!(Instant::now() < end, "the orphaned persist statement ends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = s.statuses().await;
    eprintln!(
        "[{}] killed after {ran:?} at {at_kill:?} (first flush {} row(s)) with a persist in progress; \
         it {} after the engine died",
        s.name,
        first.exported,
        if after.exported > at_kill.exported {
            format!(
                "committed {} more row(s)",
                after.exported - at_kill.exported
            )
        } else {
            "committed nothing".to_string()
        }
    );
    assert!(after.executing > 0, "{after:?}");
    let reached = s.unpersisted_creates_in_directory().await;

    let runs = s.converge(&request).await;
    let expected = s.env.seeded.expected_directory().unwrap();
    s.assert_converged(&expected, &runs).await;
    s.assert_recovered(&reached, &runs).await;
    s.print_timings();
}

/// Not killed but frozen (SIGSTOP) with its pipeline full, once the first rows are Exported: its
/// lease expires, a re-run re-attempts and finishes everything, and only then does the frozen run
/// resume (SIGCONT) and carry on with what it held: its late writes to the directory find their
/// work done, and its outcomes, renewals and releases are fenced by the lease token (in the engine
/// once a renewal found the rows lost, else by the persist statement itself), so the database is
/// exactly as the re-run left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_frozen_past_its_lease_changes_nothing_when_it_resumes() {
    let Some(_serial) = begin().await else {
        return;
    };
    let mut s = Scenario::new(
        "frozen",
        Duration::from_millis(20),
        Some(Duration::from_millis(20)),
    )
    .await;
    let mut request = s.child_request();
    request.options.flush_size = 10;
    request.options.page_size = 50;
    let mut child = ChildRun::spawn(&request);
    wait_for(&mut child, "the first persisted outcomes", async || {
        let now = s.statuses().await;
        now.exported > 0 && now.executing > 0
    })
    .await;
    child.signal("STOP");
    let at_freeze = s.statuses().await;
    s.mark("run until frozen");

    let runs = s.converge(&request).await;
    let expected = s.env.seeded.expected_directory().unwrap();
    s.assert_converged(&expected, &runs).await;
    let calls = persist_calls(&s).await;
    child.signal("CONT");
    child.finish(Duration::from_secs(60)).await;
    let late_persists = persist_calls(&s).await - calls;
    s.mark("resumed run");
    let output = child.output();
    let ended = output
        .lines()
        .find(|l| l.contains("CHILD-DONE") || l.contains("CHILD-ERROR"))
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "[{}] frozen at {at_freeze:?}; resumed after the re-run, it sent {late_persists} persist statement(s) \
         and ended: {ended}",
        s.name
    );
    // It ends by returning, not by a panic: normally, or with an error when a timer that ran
    // through the freeze (the pool's acquire timeout) has expired.
    assert!(
        ended.contains("CHILD-DONE") || ended.contains("CHILD-ERROR"),
        "the resumed run ends:\n{output}"
    );
    s.assert_converged(&expected, &runs).await;
    s.print_timings();
}

/// Two engine processes with different leases, one frozen (SIGSTOP) past its own lease. Engine A takes
/// a 10 s lease and is frozen with rows in flight; engine B, taking a 600 s lease of its own, runs at
/// once and leaves A's rows alone (A's lease has not run out), then, once A's 10 s have passed, takes
/// them over: expiry is judged by the lease A took, not by B's. When A resumes, its fences stop every
/// write for the rows it lost (nothing but its closing unbinds reaches the directory after the
/// resume), its outcomes are not persisted, and it reports them as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_with_different_leases_and_one_frozen_past_its_own() {
    let Some(_serial) = begin().await else {
        return;
    };
    let mut s = Scenario::new("two leases", Duration::from_millis(30), None).await;
    let mut a = s.child_request();
    a.options.lease_seconds = LEASE_SECONDS;
    a.options.flush_size = 10;
    a.options.page_size = 25;
    a.options.concurrency = Some(jim_export::config::Concurrency::Fixed);
    a.options.connections = Some(2);
    a.options.max_in_flight = Some(4);
    let mut child_a = ChildRun::spawn(&a);
    wait_for(
        &mut child_a,
        "engine A's first persisted outcomes",
        async || {
            let now = s.statuses().await;
            now.exported > 0 && now.executing > 0
        },
    )
    .await;
    child_a.signal("STOP");
    let frozen_at = Instant::now();
    s.mark("engine A until frozen");
    let a_rows: Vec<Uuid> = sqlx::query_scalar(
        r#"SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 2"#,
    )
    .bind(s.system())
    .fetch_all(&s.env.db.pool)
    .await
    .unwrap();
    assert!(!a_rows.is_empty());
    let oldest_claim: f64 = sqlx::query_scalar(
        r#"SELECT EXTRACT(EPOCH FROM now() - min("LastAttemptedAt"))::float8 FROM "PendingExports"
           WHERE "Id" = ANY($1)"#,
    )
    .bind(&a_rows)
    .fetch_one(&s.env.db.pool)
    .await
    .unwrap();

    // Engine B, in a process of its own, with a long lease: A's rows are not B's yet.
    let mut b = s.direct(&a);
    b.options.lease_seconds = 600;
    b.options.concurrency = Some(jim_export::config::Concurrency::Adaptive);
    b.options.max_in_flight = None;
    let mut child_b = ChildRun::spawn(&b);
    child_b.finish(Duration::from_secs(60)).await;
    assert!(child_b.printed("CHILD-DONE"), "{}", child_b.output());
    let into_lease = frozen_at.elapsed().as_secs_f64() + oldest_claim;
    let still_a: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY($1) AND "Status" = 2"#,
    )
    .bind(&a_rows)
    .fetch_one(&s.env.db.pool)
    .await
    .unwrap();
    if into_lease < LEASE_SECONDS as f64 - 1.0 {
        assert_eq!(
            still_a,
            a_rows.len() as i64,
            "within A's lease, B left A's rows alone"
        );
    } else {
        eprintln!(
            "[{}] B ended {into_lease:.1} s into A's lease: not checked",
            s.name
        );
    }
    s.mark("engine B within A's lease");

    // Past A's own 10 s lease, B (still with its 600 s lease) takes A's rows over.
    s.wait_for_lease().await;
    let mut child_b = ChildRun::spawn(&b);
    child_b.finish(Duration::from_secs(60)).await;
    let taken = child_b
        .result()
        .unwrap_or_else(|| panic!("B's result:\n{}", child_b.output()));
    assert!(
        taken["metrics"]["recovered"].as_u64().unwrap_or(0) >= a_rows.len() as u64,
        "B re-attempted A's rows: {taken}"
    );
    let after_b = s.statuses().await;
    assert_eq!(after_b.executing, 0, "{after_b:?}");
    s.mark("engine B after A's lease");

    // A resumes: it must not write any of the rows it lost.
    let before = s.ldap_proxy.stats().bytes_to_upstream;
    child_a.signal("CONT");
    child_a.finish(Duration::from_secs(40)).await;
    let sent = s.ldap_proxy.stats().bytes_to_upstream - before;
    let output = child_a.output();
    eprintln!(
        "[{}] A resumed and sent {sent} byte(s) to the directory; it ended: {}",
        s.name,
        output
            .lines()
            .find(|l| l.starts_with("CHILD-DONE") || l.starts_with("CHILD-ERROR"))
            .unwrap_or_default()
    );
    // An LDAP unbind is 7 bytes per connection; any write is far more.
    assert!(
        sent <= 7 * 2,
        "engine A wrote to the directory after losing its rows ({sent} bytes):\n{output}"
    );
    if let Some(result) = child_a.result() {
        assert!(
            result["metrics"]["lease_lost"].as_u64().unwrap_or(0) > 0,
            "A counts its lost rows: {result}"
        );
    }
    assert_eq!(s.statuses().await, after_b, "A persisted nothing");
    let expected = s.env.seeded.expected_directory().unwrap();
    s.assert_converged(&expected, &[]).await;
    s.print_timings();
}

/// A child that runs to the end exports everything (the harness itself works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unkilled_child_exports_everything() {
    let Some(_serial) = begin().await else {
        return;
    };
    let mut s = Scenario::new("unkilled", Duration::from_millis(20), None).await;
    let mut child = ChildRun::spawn(&s.child_request());
    child.finish(Duration::from_secs(120)).await;
    assert!(
        child.printed("CHILD-DONE Export complete"),
        "{}",
        child.output()
    );
    s.mark("run");
    let expected = s.env.seeded.expected_directory().unwrap();
    s.assert_converged(&expected, &[]).await;
    s.print_timings();
}
