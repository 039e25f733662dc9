//! Continuous export ("watch") against real PostgreSQL and slapd: exports staged after the watch
//! started are picked up with the notifying trigger and without it (polling), across a PostgreSQL
//! restart, and when a row's `NextRetryAt` comes due; stopping leaves nothing `Executing`.

use std::sync::Arc;
use std::time::Duration;

use jim_export::config::{DatabaseConfig, WakeUpMode, WatchOptions, WatchRequest};
use jim_export::engine::{CancellationToken, Engine};
use jim_export::model::PendingExportStatus;
use jim_export::report::{WatchMode, WatchResult};
use jim_export_testkit::seed::{self, SeedOptions, Template};
use jim_export_testkit::slapd::{Slapd, SlapdOptions};
use jim_export_testkit::support;
use jim_export_testkit::support::engine::{Env, Events, host_port};
use jim_export_testkit::support::watch::{park_all, stage, user_exports, wait_for_status};
use jim_export_testkit::{LatencyProxy, Postgres, PostgresOptions};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Generous: the assertions are about behaviour, not speed, on a loaded two-core machine.
const PICKED_UP_WITHIN: Duration = Duration::from_secs(15);

fn exported() -> i32 {
    PendingExportStatus::Exported.as_i32()
}

/// A running watch and what it reports.
struct Running {
    cancel: CancellationToken,
    events: Arc<Events>,
    task: JoinHandle<WatchResult>,
}

impl Running {
    fn start(engine: Arc<Engine>, request: WatchRequest) -> Running {
        let cancel = CancellationToken::new();
        let events = Arc::new(Events::default());
        let task = {
            let (cancel, events) = (cancel.clone(), events.clone());
            tokio::spawn(async move {
                engine
                    .watch(&request, events, cancel)
                    .await
                    .expect("the watch runs")
            })
        };
        Running {
            cancel,
            events,
            task,
        }
    }

    async fn stop(self) -> (WatchResult, Arc<Events>) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the watch stops")
            .expect("the watch task ends normally");
        (result, self.events)
    }

    fn logged(&self, needle: &str) -> bool {
        self.events
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.message.contains(needle))
    }
}

fn watch_request(env: &Env, options: WatchOptions) -> WatchRequest {
    WatchRequest {
        requests: vec![env.request()],
        watch: options,
    }
}

fn ids(exports: &[(Uuid, String)]) -> Vec<Uuid> {
    exports.iter().map(|(id, _)| *id).collect()
}

/// Whether every one of `exports` is Exported within [`PICKED_UP_WITHIN`].
async fn exported_in_time(pool: &sqlx::PgPool, exports: &[(Uuid, String)]) -> bool {
    wait_for_status(pool, &ids(exports), exported(), PICKED_UP_WITHIN).await
}

async fn assert_in_directory(env: &Env, exports: &[(Uuid, String)]) {
    let dir = env.directory().await;
    for (_, dn) in exports {
        assert!(
            dir.entries.keys().any(|k| k.eq_ignore_ascii_case(dn)),
            "{dn} is in the directory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_picks_up_exports_staged_after_the_start() {
    let env = Env::new(Template::Micro).await;
    let system = env.seeded.connected_system_id();
    park_all(&env.db.pool, system).await;
    let users = user_exports(&env.seeded);
    let engine = Arc::new(Engine::new());
    let watch = Running::start(engine, watch_request(&env, WatchOptions::default()));

    // Let the watch start and go idle, then stage two rounds with a pause between them (so the second
    // is found by a backed-off poll).
    tokio::time::sleep(Duration::from_millis(500)).await;
    stage(&env.db.pool, &ids(&users[0..3]), None).await;
    assert!(
        exported_in_time(&env.db.pool, &users[0..3]).await,
        "the first round is exported"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stage(&env.db.pool, &ids(&users[3..5]), None).await;
    assert!(
        exported_in_time(&env.db.pool, &users[3..5]).await,
        "the second round is exported"
    );
    assert!(watch.logged("polling (no notifying trigger installed)"));

    let (result, events) = watch.stop().await;
    assert_eq!(result.mode, WatchMode::Polling);
    assert!(!result.trigger_installed);
    assert_eq!(result.exports, 5, "{result:?}");
    assert!(result.passes >= 2, "{result:?}");
    assert_eq!(result.wake_ups.notification, 0);
    assert!(result.wake_ups.poll >= 2, "{result:?}");
    assert_eq!(result.systems[0].succeeded, 5);
    assert_eq!(env.executing().await, 0);
    assert_in_directory(&env, &users[0..5]).await;
    // Batch reports number on across passes.
    let sequences: Vec<u64> = events
        .batches
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.sequence)
        .collect();
    assert!(sequences.windows(2).all(|w| w[1] > w[0]), "{sequences:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_pick_up_exports_staged_after_the_start() {
    let env = Env::new(Template::Micro).await;
    let system = env.seeded.connected_system_id();
    let database = DatabaseConfig::new(env.db.url.clone());
    let engine = Arc::new(Engine::new());
    assert!(!engine.notify_trigger_installed(&database).await.unwrap());
    engine.install_notify_trigger(&database).await.unwrap();
    engine.install_notify_trigger(&database).await.unwrap(); // idempotent
    assert!(engine.notify_trigger_installed(&database).await.unwrap());
    park_all(&env.db.pool, system).await;
    let users = user_exports(&env.seeded);

    // A long poll interval and safety re-scan: only a notification can find the work in time.
    let options = WatchOptions {
        poll_min_ms: 60_000,
        poll_max_ms: 60_000,
        notify_recheck_ms: 600_000,
        ..WatchOptions::default()
    };
    let watch = Running::start(engine.clone(), watch_request(&env, options));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in [0..2, 2..3, 3..6] {
        stage(&env.db.pool, &ids(&users[round.clone()]), None).await;
        assert!(
            wait_for_status(
                &env.db.pool,
                &ids(&users[round.clone()]),
                exported(),
                PICKED_UP_WITHIN
            )
            .await,
            "round {round:?} is exported"
        );
    }
    assert!(watch.logged("woken by PostgreSQL notifications"));
    let (result, _) = watch.stop().await;
    assert_eq!(result.mode, WatchMode::Notifications);
    assert_eq!(result.exports, 6, "{result:?}");
    assert!(result.wake_ups.notification >= 3, "{result:?}");
    assert_eq!((result.wake_ups.poll, result.wake_ups.recheck), (0, 0));
    assert_eq!(env.executing().await, 0);
    assert_in_directory(&env, &users[0..6]).await;

    // Asked to poll, the watch ignores the trigger; removed, it is gone.
    let polling = WatchOptions {
        wake_up: Some(WakeUpMode::Poll),
        ..WatchOptions::default()
    };
    let watch = Running::start(engine.clone(), watch_request(&env, polling));
    stage(&env.db.pool, &ids(&users[6..7]), None).await;
    assert!(exported_in_time(&env.db.pool, &users[6..7]).await);
    let (result, _) = watch.stop().await;
    assert_eq!(result.mode, WatchMode::Polling);
    assert!(result.trigger_installed);
    engine.remove_notify_trigger(&database).await.unwrap();
    assert!(!engine.notify_trigger_installed(&database).await.unwrap());
    engine.remove_notify_trigger(&database).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_next_retry_at_comes_due_is_picked_up_when_it_does() {
    let env = Env::new(Template::Micro).await;
    park_all(&env.db.pool, env.seeded.connected_system_id()).await;
    let users = user_exports(&env.seeded);
    // Polls far apart: only the due time can wake the watch in time.
    let options = WatchOptions {
        wake_up: Some(WakeUpMode::Poll),
        poll_min_ms: 60_000,
        poll_max_ms: 60_000,
        ..WatchOptions::default()
    };
    let engine = Arc::new(Engine::new());
    // Staged before the start, due 5 s later: the first look (well within that, even on a loaded
    // machine) finds nothing due but learns when.
    stage(
        &env.db.pool,
        &ids(&users[0..1]),
        Some(Duration::from_secs(5)),
    )
    .await;
    let watch = Running::start(engine, watch_request(&env, options));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        support::watch::statuses(&env.db.pool, &ids(&users[0..1]))
            .await
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![PendingExportStatus::Pending.as_i32()],
        "not exported before it is due"
    );
    assert!(exported_in_time(&env.db.pool, &users[0..1]).await);
    let (result, _) = watch.stop().await;
    assert_eq!(result.exports, 1);
    assert!(result.wake_ups.retry_due >= 1, "{result:?}");
    assert_eq!(result.wake_ups.poll, 0, "{result:?}");
    assert_eq!(env.executing().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_pass_leaves_nothing_executing() {
    let env = Env::new(Template::Small).await;
    park_all(&env.db.pool, env.seeded.connected_system_id()).await;
    let users = user_exports(&env.seeded);
    let engine = Arc::new(Engine::new());
    let mut request = watch_request(&env, WatchOptions::default());
    // Small pages and flushes, one operation at a time: the stop lands mid-pass.
    request.requests[0].options.page_size = 5;
    request.requests[0].options.flush_size = 5;
    request.requests[0].options.connections = Some(1);
    request.requests[0].options.in_flight_per_connection = Some(1);
    let watch = Running::start(engine, request);
    stage(&env.db.pool, &ids(&users), None).await;
    // Stop at the first batch report.
    let deadline = std::time::Instant::now() + PICKED_UP_WITHIN;
    while watch.events.batches.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "a batch is reported");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (result, _) = watch.stop().await;
    assert_eq!(env.executing().await, 0, "nothing is left Executing");
    let counts = env.pending_export_counts().await;
    let exported_rows: i64 = counts
        .iter()
        .filter(|((s, _), _)| *s == exported())
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        exported_rows as u64, result.systems[0].succeeded,
        "{counts:?}"
    );
    assert!(
        (exported_rows as usize) < users.len(),
        "the stop came before the end ({exported_rows} of {})",
        users.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_is_survived_in_both_modes() {
    // A cluster of its own: the test restarts it.
    let mut pg = Postgres::start(PostgresOptions::default())
        .await
        .expect("PostgreSQL starts");
    let db = pg.jim_database().await.expect("a JIM database");
    let slapd = Slapd::start(SlapdOptions::default())
        .await
        .expect("slapd starts");
    let (host, port) = host_port(slapd.ldap_url());
    let options = SeedOptions::new(Template::Micro)
        .with_suffix(slapd.suffix())
        .with_directory(host, port);
    let seeded = seed::seed(&db.pool, &options).await.expect("seed");
    let env = Env { db, slapd, seeded };
    let database = DatabaseConfig::new(env.db.url.clone());
    let engine = Arc::new(Engine::new());
    engine.install_notify_trigger(&database).await.unwrap();
    park_all(&env.db.pool, env.seeded.connected_system_id()).await;
    let users = user_exports(&env.seeded);

    let notified = Running::start(
        engine.clone(),
        watch_request(
            &env,
            WatchOptions {
                notify_recheck_ms: 600_000,
                ..WatchOptions::default()
            },
        ),
    );
    let mut poll_request = watch_request(
        &env,
        WatchOptions {
            wake_up: Some(WakeUpMode::Poll),
            ..WatchOptions::default()
        },
    );
    // The same system watched twice (as two engines would): the claims keep them apart. A second
    // engine, so that the two do not share a pool.
    poll_request.requests[0].database.max_connections = 2;
    let polled = Running::start(Arc::new(Engine::new()), poll_request);

    tokio::time::sleep(Duration::from_millis(500)).await;
    stage(&env.db.pool, &ids(&users[0..2]), None).await;
    assert!(exported_in_time(&env.db.pool, &users[0..2]).await);

    pg.restart().expect("PostgreSQL restarts");
    // The test's own pool reconnects as well (its connections died with the server).
    let mut staged = false;
    for _ in 0..100 {
        if sqlx::query("SELECT 1").execute(&env.db.pool).await.is_ok() {
            staged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(staged, "the database answers after the restart");
    stage(&env.db.pool, &ids(&users[2..5]), None).await;
    assert!(
        wait_for_status(
            &env.db.pool,
            &ids(&users[2..5]),
            exported(),
            Duration::from_secs(30)
        )
        .await,
        "exports staged after the restart are picked up"
    );
    // The poller may have exported all of them while the notified watch's listener was still
    // backing off between reconnect attempts: wait for the reconnect itself, not only its effect.
    let mut reconnected = false;
    for _ in 0..300 {
        if notified.logged("the notification listener reconnected") {
            reconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reconnected, "the notified watch's listener reconnects");

    let (n, _) = notified.stop().await;
    let (p, _) = polled.stop().await;
    assert_eq!(n.mode, WatchMode::Notifications);
    assert!(n.listener_reconnects >= 1, "{n:?}");
    assert!(n.wake_ups.reconnect >= 1, "{n:?}");
    assert_eq!(p.mode, WatchMode::Polling);
    assert_eq!(n.exports + p.exports, 5, "{n:?}\n{p:?}");
    assert_eq!(env.executing().await, 0);
    assert_in_directory(&env, &users[0..5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_watch_request_names_the_field() {
    let env = Env::new(Template::Nano).await;
    let mut second = env.request();
    second.database = DatabaseConfig::new("postgres://elsewhere/db");
    second.options.dry_run = true;
    let request = WatchRequest {
        requests: vec![env.request(), second],
        watch: WatchOptions {
            poll_max_ms: 1,
            ..WatchOptions::default()
        },
    };
    let err = Engine::new()
        .watch(
            &request,
            Arc::new(Events::default()),
            CancellationToken::new(),
        )
        .await
        .expect_err("refused");
    let text = err.to_string();
    for path in [
        "requests[1].database.connection",
        "requests[1].connected_system_id",
        "requests[1].options.dry_run",
        "watch.poll_max_ms",
    ] {
        assert!(text.contains(path), "{text} names {path}");
    }
}

/// Notifications received within `wait` (and no more after a quiet 300 ms).
async fn drain(listener: &mut sqlx::postgres::PgListener, wait: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, listener.recv()).await {
        got.push(n.payload().to_string());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_notifies_once_per_transaction_and_not_for_the_engines_own_writes() {
    let env = Env::new(Template::Micro).await;
    let system = env.seeded.connected_system_id();
    let engine = Engine::new();
    engine
        .install_notify_trigger(&DatabaseConfig::new(env.db.url.clone()))
        .await
        .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&env.db.pool)
        .await
        .unwrap();
    listener
        .listen(jim_export::store::NOTIFY_CHANNEL)
        .await
        .unwrap();
    park_all(&env.db.pool, system).await;
    assert_eq!(
        drain(&mut listener, Duration::from_millis(300)).await.len(),
        0
    );

    // Five exports staged in one transaction (ten statements' worth of rows): one notification.
    let users = user_exports(&env.seeded);
    let five = ids(&users[0..5]);
    stage(&env.db.pool, &five, None).await;
    assert_eq!(
        drain(&mut listener, Duration::from_secs(2)).await,
        vec![system.to_string()]
    );

    // The engine's claims and persists are silent.
    let (result, _) = env.run(&engine, &env.request()).await;
    assert_eq!(result.success_count, 5, "{}", result.message);
    assert_eq!(
        drain(&mut listener, Duration::from_millis(500)).await.len(),
        0
    );

    // Made Pending again but not due: silent; then due: one notification.
    sqlx::query(
        r#"UPDATE "PendingExports" SET "Status" = 0, "NextRetryAt" = now() + interval '1 hour'
           WHERE "Id" = ANY($1)"#,
    )
    .bind(&five[0..2])
    .execute(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(
        drain(&mut listener, Duration::from_millis(500)).await.len(),
        0
    );
    sqlx::query(r#"UPDATE "PendingExports" SET "NextRetryAt" = NULL WHERE "Id" = ANY($1)"#)
        .bind(&five[0..2])
        .execute(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(
        drain(&mut listener, Duration::from_secs(2)).await,
        vec![system.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watch_serves_several_connected_systems() {
    let first = Env::new(Template::Nano).await;
    // A second system in the same database, exporting to a slapd of its own.
    let slapd = Slapd::start(SlapdOptions::default())
        .await
        .expect("slapd starts");
    let (host, port) = host_port(slapd.ldap_url());
    let options = SeedOptions::new(Template::Nano)
        .with_seed(2)
        .with_suffix(slapd.suffix())
        .with_directory(host, port);
    let seeded = seed::seed(&first.db.pool, &options).await.expect("seed");
    let second = Env {
        db: first.db.clone(),
        slapd,
        seeded,
    };
    for env in [&first, &second] {
        park_all(&env.db.pool, env.seeded.connected_system_id()).await;
    }
    let request = WatchRequest {
        requests: vec![first.request(), second.request()],
        watch: WatchOptions::default(),
    };
    let watch = Running::start(Arc::new(Engine::new()), request);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = user_exports(&first.seeded);
    let b = user_exports(&second.seeded);
    stage(&first.db.pool, &ids(&a[0..2]), None).await;
    stage(&first.db.pool, &ids(&b[0..3]), None).await;
    assert!(exported_in_time(&first.db.pool, &a[0..2]).await);
    assert!(exported_in_time(&first.db.pool, &b[0..3]).await);
    let (result, _) = watch.stop().await;
    assert_eq!(result.systems.len(), 2);
    assert_eq!(
        (result.systems[0].exports, result.systems[1].exports),
        (2, 3),
        "{result:?}"
    );
    assert_in_directory(&first, &a[0..2]).await;
    assert_in_directory(&second, &b[0..3]).await;
    assert_eq!(first.executing().await + second.executing().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_restart_between_passes_is_survived() {
    let mut env = Env::new(Template::Micro).await;
    park_all(&env.db.pool, env.seeded.connected_system_id()).await;
    let users = user_exports(&env.seeded);
    let watch = Running::start(
        Arc::new(Engine::new()),
        watch_request(&env, WatchOptions::default()),
    );
    stage(&env.db.pool, &ids(&users[0..2]), None).await;
    assert!(exported_in_time(&env.db.pool, &users[0..2]).await);
    env.slapd.restart().await.expect("slapd restarts");
    stage(&env.db.pool, &ids(&users[2..4]), None).await;
    assert!(
        exported_in_time(&env.db.pool, &users[2..4]).await,
        "exports staged after the directory restarted are written: {:?}",
        support::watch::statuses(&env.db.pool, &ids(&users[2..4])).await
    );
    let (result, _) = watch.stop().await;
    assert_eq!(result.exports, 4, "{result:?}");
    assert_eq!(env.executing().await, 0);
    assert_in_directory(&env, &users[0..4]).await;
}

/// An OU the watch found in one pass and an administrator deleted before the next: the next pass
/// reads it again and creates it, instead of trusting what it saw earlier and failing every Add below
/// it for the rest of the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_deleted_between_passes_is_created_again() {
    let env = Env::new(Template::Micro).await;
    park_all(&env.db.pool, env.seeded.connected_system_id()).await;
    let users = user_exports(&env.seeded);
    let mut request = watch_request(&env, WatchOptions::default());
    request.requests[0].settings.create_containers_as_needed = true;
    let watch = Running::start(Arc::new(Engine::new()), request);
    stage(&env.db.pool, &ids(&users[0..2]), None).await;
    assert!(exported_in_time(&env.db.pool, &users[0..2]).await);
    let people = format!("ou=People,{}", env.slapd.suffix());
    let mut ldap = env.slapd.admin_ldap().await.expect("admin bind");
    for dn in users[0..2]
        .iter()
        .map(|(_, dn)| dn.as_str())
        .chain([people.as_str()])
    {
        ldap.delete(dn)
            .await
            .expect("delete")
            .success()
            .unwrap_or_else(|e| panic!("delete {dn}: {e}"));
    }
    let _ = ldap.unbind().await;

    stage(&env.db.pool, &ids(&users[2..4]), None).await;
    assert!(
        exported_in_time(&env.db.pool, &users[2..4]).await,
        "exports below the deleted OU are written: {:?}",
        support::watch::statuses(&env.db.pool, &ids(&users[2..4])).await
    );
    let (result, _) = watch.stop().await;
    assert_eq!(result.systems[0].failed, 0, "{result:?}");
    assert_eq!(result.exports, 4, "{result:?}");
    assert_in_directory(&env, &users[2..4]).await;
}

/// The directory goes away while the watch is idle and exports arrive: the pass that meets the outage
/// stops once 16 exports in a row fail without an answer, and hands the rest back untouched; while
/// the outage lasts the watch only asks the directory whether it answers, claiming nothing, so the
/// outage costs one pass, not an attempt of every export per pass. When the directory is back, the
/// untouched exports go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_one_pass_not_the_queue() {
    let env = Env::new(Template::Small).await;
    park_all(&env.db.pool, env.seeded.connected_system_id()).await;
    let users = user_exports(&env.seeded);
    let proxy = LatencyProxy::in_front_of(env.slapd.ldap_url(), Duration::from_millis(2)).unwrap();
    let mut request = watch_request(
        &env,
        WatchOptions {
            wake_up: Some(WakeUpMode::Poll),
            poll_min_ms: 100,
            poll_max_ms: 300,
            ..WatchOptions::default()
        },
    );
    let export = &mut request.requests[0];
    export.directory.urls = vec![proxy.url("ldap")];
    export.directory.connect_timeout_ms = 1_000;
    export.directory.operation_timeout_ms = 2_000;
    export.options.max_operation_retries = 2;
    export.options.max_in_flight = Some(16);
    let watch = Running::start(Arc::new(Engine::new()), request);
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.refuse_new(true);
    proxy.drop_connections();
    stage(&env.db.pool, &ids(&users), None).await;
    let attempted = || async {
        sqlx::query_scalar::<_, i64>(
            r#"SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY($1) AND "ErrorCount" > 0"#,
        )
        .bind(ids(&users))
        .fetch_one(&env.db.pool)
        .await
        .unwrap()
    };
    // The first pass meets the outage and stops.
    let deadline = std::time::Instant::now() + PICKED_UP_WITHIN;
    while !watch.logged("stopped answering") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(watch.logged("stopped answering"), "the pass stopped");
    // Several looks later, the outage has cost nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_the_pass = attempted().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_the_outage = attempted().await;
    eprintln!(
        "outage: {after_the_pass} of {} exports counted a failed attempt",
        users.len()
    );
    assert!(
        after_the_pass > 0 && after_the_pass <= 48,
        "at most the exports in the directory (32) and a few begun before the pass stopped: {after_the_pass}"
    );
    assert_eq!(
        after_the_outage, after_the_pass,
        "no pass while the directory is gone"
    );

    proxy.refuse_new(false);
    // Without an error counted: the exports the pass never began, and any it deferred (a user whose
    // manager's Create failed in the outage waits five minutes, as JIM's deferral does, and is not
    // expected within this test).
    let untouched: Vec<Uuid> = sqlx::query_scalar(
        r#"SELECT "Id" FROM "PendingExports" WHERE "Id" = ANY($1) AND "ErrorCount" = 0
           AND ("NextRetryAt" IS NULL OR "NextRetryAt" <= now())"#,
    )
    .bind(ids(&users))
    .fetch_all(&env.db.pool)
    .await
    .unwrap();
    let deferred: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY($1) AND "ErrorCount" = 0
           AND "NextRetryAt" > now() + interval '4 minutes'"#,
    )
    .bind(ids(&users))
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(
        untouched.len() as i64 + deferred,
        users.len() as i64 - after_the_pass
    );
    assert!(
        wait_for_status(&env.db.pool, &untouched, exported(), PICKED_UP_WITHIN).await,
        "the untouched exports go out once the directory answers"
    );
    assert!(watch.logged("the directory answers again"));
    let (result, _) = watch.stop().await;
    assert_eq!(result.systems[0].failed_passes, 1, "{result:?}");
    assert_eq!(env.executing().await, 0);
}
