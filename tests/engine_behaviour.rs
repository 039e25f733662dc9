//! The engine's behaviour beyond the happy path, against real PostgreSQL and slapd: partial writes,
//! dependency ordering, bad rows, cancellation, a directory that goes away, operator calls, and
//! concurrent runs (two systems; two runs on one system).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jim_export::engine::{CancellationToken, Engine, RunListener};
use jim_export::model::{
    ConnectedSystemExportErrorType, PendingExportChangeType, PendingExportStatus,
};
use jim_export::report::{BatchReport, ItemStatus};
use jim_export_testkit::LatencyProxy;
use jim_export_testkit::seed::{self, SeedOptions, Template};
use jim_export_testkit::slapd::{Slapd, SlapdOptions};
use jim_export_testkit::support;
use jim_export_testkit::support::engine::{
    Env, Events, assert_directory_matches, host_port, read_directory,
};
use ldap3::Scope;
use sqlx::Row;

/// A group member whose MVO has no CSO in the target system: JIM writes the group without it, keeps the
/// export Pending with the reference owed, flips the Create to an Update, and (under Error handling)
/// names the reference in the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_to_an_object_outside_the_system_is_a_partial_write() {
    let env = Env::new(Template::Nano).await;
    let group = env.seeded.group(0).unwrap();
    let member_attr = env.seeded.group_attribute_id("member").unwrap();
    let ghost = support::engine::add_unresolvable_reference(
        &env.db.pool,
        group.ids.pending_export,
        member_attr,
    )
    .await;

    let engine = Engine::new();
    let (result, events) = env.run(&engine, &env.request()).await;
    assert_eq!(result.failed_count, 0, "{}", result.message);
    assert_eq!(result.partially_exported_count, 1);
    assert_eq!(result.unresolvable_reference_count, 1);
    assert!(
        result
            .message
            .contains("(1 written in part, awaiting references)"),
        "{}",
        result.message
    );

    let row = sqlx::query(r#"SELECT "Status", "ChangeType", "HasUnresolvedReferences", "ErrorCount", "NextRetryAt" > now() + interval '4 minutes' FROM "PendingExports" WHERE "Id" = $1"#)
        .bind(group.ids.pending_export)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), PendingExportStatus::Pending.as_i32());
    assert_eq!(
        row.get::<i32, _>(1),
        PendingExportChangeType::Update.as_i32(),
        "a partly written Create becomes an Update"
    );
    assert!(row.get::<bool, _>(2));
    assert_eq!(row.get::<i32, _>(3), 0, "a partial write counts no error");
    assert!(row.get::<bool, _>(4), "due again in 5 minutes");
    let members = support::engine::entry_values(&env.slapd, &group.dn, "member")
        .await
        .expect("the group exists");
    assert_eq!(
        members.len(),
        group.member_count(),
        "the resolvable members are written"
    );
    let item = events
        .items()
        .into_iter()
        .find(|i| i.pending_export_id == group.ids.pending_export)
        .unwrap();
    assert_eq!(item.status, ItemStatus::PartlyWritten);
    let note = item
        .unresolved_reference_note
        .expect("Error handling names the reference");
    assert!(
        note.contains(&ghost.to_string()) && note.contains("member"),
        "{note}"
    );
}

/// An export naming an object whose Create is in flight in the same run waits for it: with 10 ms of
/// latency injected, every manager and every group member is created before the entry that names it
/// (slapd's entryCSN carries microseconds). The run reports its per-export latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_the_creates_they_name() {
    let env = Env::new(Template::Small).await;
    let proxy = LatencyProxy::in_front_of(env.slapd.ldap_url(), Duration::from_millis(10)).unwrap();
    let mut request = env.request();
    request.directory.urls = vec![proxy.url("ldap")];
    let engine = Engine::new();
    let (result, _) = env.run(&engine, &request).await;
    assert_eq!(
        result.failed_count + result.deferred_count,
        0,
        "{}",
        result.message
    );
    // Every export took at least one round trip through the proxy: its 10 ms are a floor.
    let m = &result.metrics;
    let (p50, p99) = (
        m.export_latency_p50_ms.expect("exports ran, so a median"),
        m.export_latency_p99_ms.expect("and a 99th percentile"),
    );
    assert!(p50 >= 9.0 && p50 <= p99, "p50 {p50} ms, p99 {p99} ms");

    let mut ldap = env.slapd.admin_ldap().await.unwrap();
    let (entries, _) = ldap
        .search(
            env.slapd.suffix(),
            Scope::Subtree,
            "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
            vec!["entryCSN", "manager", "member"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let entries: Vec<_> = entries
        .into_iter()
        .map(ldap3::SearchEntry::construct)
        .collect();
    let csn: std::collections::HashMap<String, String> = entries
        .iter()
        .map(|e| (e.dn.to_lowercase(), e.attrs["entryCSN"][0].clone()))
        .collect();
    let mut checked = 0;
    for e in &entries {
        for named in e
            .attrs
            .get("manager")
            .into_iter()
            .chain(e.attrs.get("member"))
            .flatten()
        {
            let named_csn = csn.get(&named.to_lowercase()).expect("named entries exist");
            assert!(
                named_csn < &e.attrs["entryCSN"][0],
                "{named} was created after {} which names it",
                e.dn
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "checked {checked} references");
}

/// A row the engine cannot read (an unknown enum number) and an export with a malformed DN fail alone,
/// with clear messages; the others are exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_fail_only_themselves() {
    let env = Env::new(Template::Nano).await;
    let bad_enum = env.seeded.user(0).unwrap();
    let bad_dn = env.seeded.user(1).unwrap();
    sqlx::query(r#"UPDATE "PendingExportAttributeValueChanges" SET "ChangeType" = 9 WHERE "PendingExportId" = $1 AND "AttributeId" = $2"#)
        .bind(bad_enum.ids.pending_export)
        .bind(env.seeded.user_attribute_id("title").unwrap())
        .execute(&env.db.pool)
        .await
        .unwrap();
    sqlx::query(r#"UPDATE "PendingExportAttributeValueChanges" SET "StringValue" = 'uid=,ou=People,' || $3 WHERE "PendingExportId" = $1 AND "AttributeId" = $2"#)
        .bind(bad_dn.ids.pending_export)
        .bind(env.seeded.user_attribute_id("distinguishedName").unwrap())
        .bind(env.slapd.suffix())
        .execute(&env.db.pool)
        .await
        .unwrap();

    let engine = Engine::new();
    let (result, events) = env.run(&engine, &env.request()).await;
    let objects = env.seeded.counts.pending_exports;
    assert_eq!(result.failed_count, 2, "{}", result.message);
    // Groups naming the user whose Create failed in this run wait for it, then are deferred
    // (+5 minutes, no error counted); everything else is exported.
    assert_eq!(
        result.success_count + result.deferred_count,
        objects - 2,
        "{}",
        result.message
    );
    let deferred: Vec<_> = events
        .items()
        .into_iter()
        .filter(|i| i.status == ItemStatus::Deferred)
        .collect();
    assert_eq!(deferred.len() as u64, result.deferred_count);
    let bad_user = bad_dn.ids.mvo.to_string();
    for item in &deferred {
        let names_bad_user: bool = sqlx::query_scalar(
            r#"SELECT EXISTS (SELECT 1 FROM "PendingExportAttributeValueChanges" WHERE "PendingExportId" = $1 AND "ResolvedReferenceCsoId" = $2)"#,
        )
        .bind(item.pending_export_id)
        .bind(bad_dn.ids.cso)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
        assert!(
            names_bad_user,
            "only exports naming the failed Create are deferred ({bad_user})"
        );
    }
    let items = events.items();
    let enum_item = items
        .iter()
        .find(|i| i.pending_export_id == bad_enum.ids.pending_export)
        .unwrap();
    let msg = enum_item.error_message.as_deref().unwrap();
    assert!(
        msg.contains("PendingExportAttributeValueChanges")
            && msg.contains("ChangeType")
            && msg.contains('9'),
        "{msg}"
    );
    let dn_item = items
        .iter()
        .find(|i| i.pending_export_id == bad_dn.ids.pending_export)
        .unwrap();
    assert_eq!(
        dn_item.error_type,
        Some(ConnectedSystemExportErrorType::InvalidGeneratedExternalId),
        "{:?}",
        dn_item.error_message
    );
    assert_eq!(env.executing().await, 0);
}

/// Cancelling mid-run: operations in flight finish, their outcomes are persisted, the rest is returned
/// to the status it had, and nothing is left Executing; the directory holds exactly what was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_persists_what_happened_and_returns_the_rest() {
    struct CancelOnFirstBatch(CancellationToken, Events);
    impl RunListener for CancelOnFirstBatch {
        fn on_batch(&self, report: &BatchReport) {
            self.1.on_batch(report);
            self.0.cancel();
        }
    }
    let env = Env::new(Template::Medium).await;
    let proxy = LatencyProxy::in_front_of(env.slapd.ldap_url(), Duration::from_millis(5)).unwrap();
    let mut request = env.request();
    request.directory.urls = vec![proxy.url("ldap")];
    let cancel = CancellationToken::new();
    let listener = Arc::new(CancelOnFirstBatch(cancel.clone(), Events::default()));
    let engine = Engine::new();
    let started = Instant::now();
    let result = engine
        .run_export(&request, listener.clone(), cancel)
        .await
        .unwrap();
    assert!(result.cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a cancelled run ends promptly"
    );
    assert!(
        result.success_count > 0 && result.success_count < env.seeded.counts.pending_exports,
        "{}",
        result.message
    );
    assert_eq!(env.executing().await, 0, "nothing is left Executing");
    let counts = env.pending_export_counts().await;
    let exported = counts.get(&(4, 0)).copied().unwrap_or(0);
    let pending = counts.get(&(0, 0)).copied().unwrap_or(0);
    assert_eq!(exported as u64, result.success_count);
    assert_eq!(
        (exported + pending) as u64,
        env.seeded.counts.pending_exports,
        "{counts:?}"
    );
    let in_directory = read_directory(&env.slapd).await.len() as i64;
    assert_eq!(
        in_directory, exported,
        "the directory holds exactly the exports recorded as done"
    );

    // The next run finishes the job.
    let (rest, _) = env.run(&engine, &env.request()).await;
    assert_eq!(rest.success_count as i64, pending, "{}", rest.message);
    assert_directory_matches(
        &read_directory(&env.slapd).await,
        &env.seeded.expected_directory().unwrap(),
    );
}

/// The directory goes away mid-run: the run stops with an error once exports in a row fail without an
/// answer, instead of failing the rest of the queue; nothing is left Executing; every export not
/// applied is Pending, with a retry time when it counted an attempt, untouched when it never began;
/// nothing is recorded as done that the directory does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_goes_away_ends_the_run_cleanly() {
    struct KillOnFirstBatch(LatencyProxy);
    impl RunListener for KillOnFirstBatch {
        fn on_batch(&self, report: &BatchReport) {
            self.0.refuse_new(true);
            self.0.drop_connections();
            if std::env::var_os("JIM_TEST_VERBOSE").is_some() {
                for i in report
                    .items
                    .iter()
                    .filter(|i| i.error_message.is_some())
                    .take(1)
                {
                    eprintln!("failure: {:?}", i.error_message);
                }
            }
        }
        fn on_progress(&self, e: &jim_export::report::ProgressEvent) {
            if std::env::var_os("JIM_TEST_VERBOSE").is_some() {
                eprintln!("progress: {e:?}");
            }
        }
        fn on_log(&self, r: &jim_export::engine::LogRecord) {
            if std::env::var_os("JIM_TEST_VERBOSE").is_some() {
                eprintln!("log: {r:?}");
            }
        }
    }
    let env = Env::new(Template::Medium).await;
    let proxy = LatencyProxy::in_front_of(env.slapd.ldap_url(), Duration::from_millis(2)).unwrap();
    let mut request = env.request();
    request.directory.urls = vec![proxy.url("ldap")];
    request.directory.connect_timeout_ms = 1_000;
    request.directory.operation_timeout_ms = 2_000;
    request.options.max_operation_retries = 2;
    // At most 32 operations in flight, so at most 64 exports in the directory at once.
    request.options.max_in_flight = Some(32);
    let engine = Engine::new();
    let started = Instant::now();
    let outcome = engine
        .run_export(
            &request,
            Arc::new(KillOnFirstBatch(proxy)),
            CancellationToken::new(),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(env.executing().await, 0, "nothing is left Executing");
    let rows = sqlx::query(r#"SELECT "Status", "NextRetryAt" IS NOT NULL, "ErrorCount" FROM "PendingExports" WHERE "ConnectedSystemId" = $1"#)
        .bind(env.seeded.connected_system_id())
        .fetch_all(&env.db.pool)
        .await
        .unwrap();
    let exported = rows.iter().filter(|r| r.get::<i32, _>(0) == 4).count();
    assert!(
        rows.iter().all(|r| matches!(r.get::<i32, _>(0), 0 | 4)),
        "only Pending or Exported"
    );
    assert!(
        rows.iter()
            .filter(|r| r.get::<i32, _>(0) == 0 && r.get::<i32, _>(2) > 0)
            .all(|r| r.get::<bool, _>(1)),
        "a failed attempt carries a retry time"
    );
    // Nothing is recorded as done that the directory does not hold. Adds whose response was lost with
    // the connection may be in the directory while their export is Pending: the next run adopts them.
    let in_directory = read_directory(&env.slapd).await.len();
    assert!(
        in_directory >= exported,
        "{in_directory} entries, {exported} recorded as exported"
    );
    // The run stops once the directory has gone away, instead of failing the rest of the queue: the
    // exports in the directory when it went (at most 64) count an attempt, and at most a few begun
    // before the run stopped (measured: exactly 64 in all).
    match &outcome {
        Err(e) => assert!(e.to_string().contains("stopped answering"), "{e}"),
        Ok(result) => panic!("the run should stop with an error: {}", result.message),
    }
    let errored = rows.iter().filter(|r| r.get::<i32, _>(2) > 0).count();
    let untouched = rows
        .iter()
        .filter(|r| r.get::<i32, _>(0) == 0 && r.get::<i32, _>(2) == 0)
        .count();
    eprintln!(
        "directory gone: {exported} exported, {errored} counted a failed attempt, {untouched} untouched, of {}",
        rows.len()
    );
    assert!(
        errored <= 96,
        "{errored} exports counted a failed attempt ({exported} exported, {untouched} untouched)"
    );
    assert!(
        untouched > rows.len() / 4,
        "the rest of the queue is untouched: {untouched} of {}",
        rows.len()
    );

    // When the directory is back, the next runs converge without a single duplicate or failure.
    env.retry_now().await;
    let (rest, _) = env.run(&engine, &env.request()).await;
    assert_eq!(rest.failed_count, 0, "{}", rest.message);
    if rest.deferred_count > 0 {
        env.retry_now().await;
        let (last, _) = env.run(&engine, &env.request()).await;
        assert_eq!(
            last.failed_count + last.deferred_count,
            0,
            "{}",
            last.message
        );
    }
    assert_directory_matches(
        &read_directory(&env.slapd).await,
        &env.seeded.expected_directory().unwrap(),
    );
    assert_eq!(env.executing().await, 0);
}

/// A run opens the queue and connects the directory at the same time. The database's verdict comes
/// first whatever the directory does: an unknown system is reported while the directory is still
/// silent (a listener that never answers: the connect would wait its full timeout), and also when
/// the directory refused at once; a directory that refuses a good system's run is a directory error
/// that leaves nothing claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_heard_first_when_a_run_starts() {
    let env = Env::new(Template::Nano).await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refusing = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let engine = Engine::new();
    let start_fails = |request: jim_export::config::ExportRequest| {
        let engine = &engine;
        async move {
            engine
                .run_export(
                    &request,
                    Arc::new(Events::default()),
                    CancellationToken::new(),
                )
                .await
                .expect_err("the run cannot start")
        }
    };
    for url in [
        format!("ldap://127.0.0.1:{}", silent.local_addr().unwrap().port()),
        format!("ldap://127.0.0.1:{refusing}"),
    ] {
        let mut request = env.request();
        request.connected_system_id = 987_654;
        request.directory.urls = vec![url.clone()];
        request.directory.connect_timeout_ms = 120_000;
        let started = Instant::now();
        let e = start_fails(request).await;
        assert!(
            e.to_string()
                .contains("connected system 987654 does not exist"),
            "{url}: {e}"
        );
        // Not a timing figure: the directory's connect would take two minutes.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{url}: waited for the directory"
        );
    }
    let mut request = env.request();
    request.directory.urls = vec![format!("ldap://127.0.0.1:{refusing}")];
    let e = start_fails(request).await;
    assert!(e.to_string().contains("cannot reach the directory"), "{e}");
    assert_eq!(env.executing().await, 0);
}

/// A row's state that a claim changes and a release restores.
type ClaimState = (
    uuid::Uuid,
    i32,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<String>,
);

/// The system's rows' [`ClaimState`], by id.
async fn claim_state(env: &Env) -> Vec<ClaimState> {
    sqlx::query_as(
        r#"SELECT "Id", "Status", "LastAttemptedAt", "LastErrorStackTrace" FROM "PendingExports"
           WHERE "ConnectedSystemId" = $1 ORDER BY "Id""#,
    )
    .bind(env.seeded.connected_system_id())
    .fetch_all(&env.db.pool)
    .await
    .expect("read the rows")
}

/// A run claims its first page while the directory connects, beside its count of what is due; when
/// the directory then fails, that page goes back exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_page_is_claimed_while_the_directory_connects_and_given_back_when_it_fails() {
    let env = Env::new(Template::Nano).await;
    let before = claim_state(&env).await;
    // A listener that accepts and never answers: the bind waits out the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut request = env.request();
    request.directory.urls = vec![format!(
        "ldap://127.0.0.1:{}",
        silent.local_addr().unwrap().port()
    )];
    request.directory.connect_timeout_ms = 10_000;
    let engine = Engine::new();
    let events = Arc::new(Events::default());
    let run = engine.run_export(&request, events.clone(), CancellationToken::new());
    tokio::pin!(run);
    let claimed = loop {
        tokio::select! {
            r = &mut run => panic!("the run ended before its first page was seen claimed: {:?}", r.map(|r| r.message)),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                let n = env.executing().await;
                if n > 0 {
                    break n;
                }
            }
        }
    };
    assert!(claimed > 0);
    let e = run.await.expect_err("the directory never answers");
    assert!(
        !e.to_string().contains("database"),
        "a directory failure: {e}"
    );
    assert_eq!(
        claim_state(&env).await,
        before,
        "every row back with the status, time and trace it had"
    );
}

/// The operator calls: the queue summary, releasing stranded rows, resetting Failed exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_calls() {
    let env = Env::new(Template::Nano).await;
    let engine = Engine::new();
    let database = env.request().database;
    let system = env.seeded.connected_system_id();
    let lease = Duration::from_secs(900);
    let summary = engine
        .queue_summary(&database, system, lease)
        .await
        .unwrap();
    assert_eq!(summary.total as u64, env.seeded.counts.pending_exports);
    assert_eq!(summary.executable, summary.total);

    let (a, b) = (
        env.seeded.user(0).unwrap().ids.pending_export,
        env.seeded.user(1).unwrap().ids.pending_export,
    );
    sqlx::query(r#"UPDATE "PendingExports" SET "Status" = 2, "LastAttemptedAt" = now() - interval '1 hour' WHERE "Id" = $1"#)
        .bind(a)
        .execute(&env.db.pool)
        .await
        .unwrap();
    sqlx::query(r#"UPDATE "PendingExports" SET "Status" = 3, "ErrorCount" = 5, "LastErrorMessage" = 'x', "LastAttemptedAt" = now() - interval '2 hours', "NextRetryAt" = now() + interval '1 hour' WHERE "Id" = $1"#)
        .bind(b)
        .execute(&env.db.pool)
        .await
        .unwrap();
    let summary = engine
        .queue_summary(&database, system, lease)
        .await
        .unwrap();
    assert_eq!(summary.stranded_executing, 1);
    assert!(summary.oldest_failure.is_some());
    assert_eq!(
        engine
            .release_stranded(&database, system, lease)
            .await
            .unwrap(),
        1
    );
    assert_eq!(engine.reset_failed(&database, system).await.unwrap(), 1);
    let row = sqlx::query(r#"SELECT "Status", "ErrorCount", "LastErrorMessage", "NextRetryAt" FROM "PendingExports" WHERE "Id" = $1"#)
        .bind(b)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!((row.get::<i32, _>(0), row.get::<i32, _>(1)), (0, 0));
    assert!(
        row.get::<Option<String>, _>(2).is_none()
            && row
                .get::<Option<chrono::DateTime<chrono::Utc>>, _>(3)
                .is_none()
    );
    let summary = engine
        .queue_summary(&database, system, lease)
        .await
        .unwrap();
    assert_eq!(summary.executable, summary.total);
}

/// One engine serves two connected systems at once (two suffixes of one slapd), and two runs on the
/// same system cooperate through the claims: every export happens exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_export_everything_exactly_once() {
    let pg = jim_export_testkit::Postgres::shared().await.unwrap();
    let db = pg.jim_database().await.unwrap();
    let slapd = Slapd::start(SlapdOptions {
        suffixes: vec!["dc=one,dc=test".into(), "dc=two,dc=test".into()],
        ..SlapdOptions::default()
    })
    .await
    .unwrap();
    let (host, port) = host_port(slapd.ldap_url());
    let one = seed::seed(
        &db.pool,
        &SeedOptions::new(Template::Small)
            .with_suffix("dc=one,dc=test")
            .with_directory(host.clone(), port),
    )
    .await
    .unwrap();
    let two = seed::seed(
        &db.pool,
        &SeedOptions::new(Template::Small)
            .with_seed(2)
            .with_suffix("dc=two,dc=test")
            .with_directory(host, port),
    )
    .await
    .unwrap();
    let request_for =
        |system: &seed::SeededSystem, suffix: &str| jim_export::config::ExportRequest {
            database: jim_export::config::DatabaseConfig::new(db.url.clone()),
            connected_system_id: system.connected_system_id(),
            directory: jim_export::config::DirectoryConfig::simple(
                slapd.ldap_url(),
                slapd.admin_dn_for(suffix).unwrap(),
                slapd.admin_password(),
            )
            .allowing_password_without_tls(),
            settings: Default::default(),
            options: jim_export::config::RunOptions {
                page_size: 20,
                ..Default::default()
            },
        };
    let (r1, r2) = (
        request_for(&one, "dc=one,dc=test"),
        request_for(&two, "dc=two,dc=test"),
    );
    let engine = Engine::new();
    let second_engine = Engine::new();
    // System one twice at once (two engines), system two alongside on the first engine.
    let (a, b, c) = tokio::join!(
        engine.run_export(&r1, Arc::new(Events::default()), CancellationToken::new()),
        second_engine.run_export(&r1, Arc::new(Events::default()), CancellationToken::new()),
        engine.run_export(&r2, Arc::new(Events::default()), CancellationToken::new()),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(
        a.failed_count + b.failed_count + c.failed_count,
        0,
        "{} / {} / {}",
        a.message,
        b.message,
        c.message
    );
    assert_eq!(
        a.success_count + b.success_count,
        one.counts.pending_exports,
        "each export of system one exactly once"
    );
    assert_eq!(c.success_count, two.counts.pending_exports);
    for (system, suffix) in [(&one, "dc=one,dc=test"), (&two, "dc=two,dc=test")] {
        let mut ldap = slapd.admin_ldap_for(suffix).await.unwrap();
        let count = jim_export_testkit::slapd::count_entries(
            &mut ldap,
            suffix,
            "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
        )
        .await
        .unwrap();
        assert_eq!(count as u64, system.counts.pending_exports, "{suffix}");
    }
}

/// A dry run plans and reports every export without writing to the directory or the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing() {
    let env = Env::new(Template::Nano).await;
    let mut request = env.request();
    request.options.dry_run = true;
    // One export outside the managed scope: the dry run reports the failure a run would record.
    request.settings.managed_scope = vec![jim_export::config::ScopeContainer {
        dn: format!("ou=Groups,{}", env.slapd.suffix()),
        scope: Some(jim_export::model::ConnectedSystemContainerScope::Subtree),
        excluded: false,
    }];
    let before: Vec<(i32, i32, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        r#"SELECT "Status", "ErrorCount", "LastAttemptedAt" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 ORDER BY "Id""#,
    )
    .bind(env.seeded.connected_system_id())
    .fetch_all(&env.db.pool)
    .await
    .unwrap();
    let engine = Engine::new();
    let (result, events) = env.run(&engine, &request).await;
    assert!(result.dry_run);
    let users = env.seeded.counts.users;
    assert_eq!(
        result.failed_count, users,
        "users are outside the scope: {}",
        result.message
    );
    assert_eq!(result.success_count, env.seeded.counts.groups);
    assert_eq!(
        result.message,
        format!(
            "Preview complete: {} export(s) would be processed",
            env.seeded.counts.pending_exports
        )
    );
    assert_eq!(
        events.items().len() as u64,
        env.seeded.counts.pending_exports
    );
    let after: Vec<(i32, i32, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        r#"SELECT "Status", "ErrorCount", "LastAttemptedAt" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 ORDER BY "Id""#,
    )
    .bind(env.seeded.connected_system_id())
    .fetch_all(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(before, after, "the database is untouched");
    assert!(
        read_directory(&env.slapd).await.is_empty(),
        "the directory is untouched"
    );
    let resolved: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM "PendingExportAttributeValueChanges" WHERE "ResolvedReferenceCsoId" IS NOT NULL"#)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(resolved, 0, "resolutions are not persisted");
}
