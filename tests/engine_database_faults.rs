//! PostgreSQL going away under a run, on a cluster of each test's own (the tests restart and freeze
//! it): a restart in the middle of a run is ridden out (statements are sent again once it answers);
//! a server frozen (SIGSTOP) for longer than the statement timeout is ridden out too (the client's
//! deadline ends each wait, and the statements are sent again); and a server that stays away for
//! longer than the retry window ends the run with a clear error, after which its claims are returned
//! as soon as the database answers again, and the next run converges. In every case: nothing lost,
//! nothing left `Executing`, every object in the directory once with its values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jim_export::Error;
use jim_export::config::{Concurrency, DatabaseConfig, DirectoryConfig, ExportRequest};
use jim_export::engine::{CancellationToken, Engine};
use jim_export::report::RunResult;
use jim_export_testkit::seed::{self, SeedOptions, Template};
use jim_export_testkit::support::engine::{Env, Events, assert_directory_matches, host_port};
use jim_export_testkit::{LatencyProxy, Postgres, PostgresOptions, Slapd, SlapdOptions};

/// A cluster of the test's own, a slapd behind a latency proxy (so a run of the Small template lasts
/// a couple of seconds), and the seeded system.
struct Faults {
    pg: Postgres,
    env: Env,
    proxy: LatencyProxy,
}

impl Faults {
    async fn new() -> Faults {
        let pg = Postgres::start(PostgresOptions::default())
            .await
            .expect("PostgreSQL starts");
        let db = pg.jim_database().await.expect("a JIM database");
        let slapd = Slapd::start(SlapdOptions::default())
            .await
            .expect("slapd starts");
        let (host, port) = host_port(slapd.ldap_url());
        let options = SeedOptions::new(Template::Small)
            .with_suffix(slapd.suffix())
            .with_directory(host, port);
        let seeded = seed::seed(&db.pool, &options).await.expect("seed");
        let proxy = LatencyProxy::in_front_of(slapd.ldap_url(), Duration::from_millis(30))
            .expect("an LDAP proxy");
        Faults {
            pg,
            env: Env { db, slapd, seeded },
            proxy,
        }
    }

    fn request(&self) -> ExportRequest {
        let mut request = self.env.request();
        request.directory = DirectoryConfig::simple(
            self.proxy.url("ldap"),
            self.env.slapd.admin_dn(),
            self.env.slapd.admin_password(),
        )
        .allowing_password_without_tls();
        request.options.concurrency = Some(Concurrency::Fixed);
        request.options.connections = Some(2);
        request.options.max_in_flight = Some(4);
        request.options.flush_size = 10;
        request.options.page_size = 25;
        request
    }

    /// Rows of the system Exported so far (the test's own pool reconnects after a restart).
    async fn exported(&self) -> i64 {
        loop {
            match sqlx::query_scalar(
                r#"SELECT count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 4"#,
            )
            .bind(self.env.seeded.connected_system_id())
            .fetch_one(&self.env.db.pool)
            .await
            {
                Ok(n) => return n,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits until `n` rows are Exported.
    async fn until_exported(&self, n: i64) {
        let end = Instant::now() + Duration::from_secs(60);
        while self.exported().await < n {
            assert!(Instant::now() < end, "no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every row Exported with no error counted, nothing Executing, and the directory as expected.
    async fn assert_converged(&self) {
        let counts = self.env.pending_export_counts().await;
        assert_eq!(self.env.executing().await, 0, "{counts:?}");
        let total = self.env.seeded.counts.pending_exports as i64;
        assert_eq!(
            self.exported().await,
            total,
            "every export Exported: {counts:?}"
        );
        let errors: i64 = sqlx::query_scalar(
            r#"SELECT count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "ErrorCount" > 0"#,
        )
        .bind(self.env.seeded.connected_system_id())
        .fetch_one(&self.env.db.pool)
        .await
        .unwrap();
        assert_eq!(errors, 0, "no export counted an error");
        assert_directory_matches(
            &self.env.directory().await,
            &self.env.seeded.expected_directory().unwrap(),
        );
    }
}

/// Runs an export in the background, returning its task.
fn spawn_run(
    engine: Arc<Engine>,
    request: ExportRequest,
) -> tokio::task::JoinHandle<(jim_export::Result<RunResult>, Arc<Events>)> {
    tokio::spawn(async move {
        let events = Arc::new(Events::default());
        let result = engine
            .run_export(&request, events.clone(), CancellationToken::new())
            .await;
        (result, events)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_in_the_middle_of_a_run_is_ridden_out() {
    let mut f = Faults::new().await;
    let total = f.env.seeded.counts.pending_exports as i64;
    let engine = Arc::new(Engine::new());
    let run = spawn_run(engine.clone(), f.request());
    f.until_exported(total / 4).await;
    let started = Instant::now();
    // A fast shutdown (every session ended, as in a real restart), down for two seconds, then up.
    tokio::task::block_in_place(|| f.pg.restart_after(Duration::from_secs(2)))
        .expect("PostgreSQL restarts");
    let at_restart = f.exported().await;
    eprintln!(
        "PostgreSQL was restarted ({:.1} s) with {at_restart} of {total} exported",
        started.elapsed().as_secs_f64()
    );
    assert!(
        at_restart < total,
        "the restart came in the middle of the run"
    );
    let (result, _) = run.await.expect("the run's task");
    let result = result.expect("the run rides the restart out");
    eprintln!("{}", result.message);
    assert_eq!(result.failed_count, 0, "{}", result.message);
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_frozen_past_the_statement_timeout_is_ridden_out() {
    let f = Faults::new().await;
    let total = f.env.seeded.counts.pending_exports as i64;
    let mut request = f.request();
    // Statements may take 2 s on the server; the client waits 7 s before giving one up.
    request.database.statement_timeout_ms = 2_000;
    let engine = Arc::new(Engine::new());
    let run = spawn_run(engine.clone(), request);
    f.until_exported(total / 4).await;
    f.pg.freeze().expect("freeze PostgreSQL");
    let frozen = Instant::now();
    tokio::time::sleep(Duration::from_secs(9)).await;
    f.pg.thaw().expect("thaw PostgreSQL");
    eprintln!(
        "PostgreSQL was frozen for {:.1} s",
        frozen.elapsed().as_secs_f64()
    );
    let (result, _) = run.await.expect("the run's task");
    let result = result.expect("the run rides the freeze out");
    eprintln!("{}", result.message);
    assert_eq!(result.failed_count, 0, "{}", result.message);
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_away_past_the_retry_window_ends_the_run_and_its_claims_return_when_it_answers()
{
    let f = Faults::new().await;
    let total = f.env.seeded.counts.pending_exports as i64;
    let mut request = f.request();
    request.database.statement_timeout_ms = 1_000;
    request.database.retry_window_ms = 3_000;
    let engine = Arc::new(Engine::new());
    let run = spawn_run(engine.clone(), request.clone());
    f.until_exported(total / 4).await;
    f.pg.freeze().expect("freeze PostgreSQL");
    let frozen = Instant::now();
    let (result, _) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run ends while the database is still away")
        .expect("the run's task");
    let ended_after = frozen.elapsed();
    let error = result.expect_err("the run ends with an error");
    eprintln!(
        "the run ended {:.1} s into the outage: {error}",
        ended_after.as_secs_f64()
    );
    assert!(matches!(error, Error::DatabaseUnavailable(_)), "{error:?}");
    assert!(error.to_string().contains("did not answer"), "{error}");
    f.pg.thaw().expect("thaw PostgreSQL");
    let thawed = Instant::now();

    // The engine that ran it returns its claims as soon as the database answers: nothing stays
    // Executing until the lease (900 s) would run out.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if f.env.executing().await == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the claims were returned once the database answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the claims were back {:.1} s after the database answered",
        thawed.elapsed().as_secs_f64()
    );
    assert!(
        ended_after < Duration::from_secs(30),
        "the run gave up within about its retry window"
    );
    // The next run converges: what the stopped run had written is re-attempted, not created twice.
    let mut again = request;
    again.database = DatabaseConfig::new(f.env.db.url.clone());
    loop {
        let events = Arc::new(Events::default());
        let result = engine
            .run_export(&again, events.clone(), CancellationToken::new())
            .await
            .expect("the next run");
        eprintln!("{}", result.message);
        assert_eq!(result.failed_count, 0, "{}", result.message);
        if result.success_count == 0 {
            break;
        }
        if f.exported().await == total {
            break;
        }
        // Rows the stopped run deferred come due after five minutes; make them due now.
        sqlx::query(r#"UPDATE "PendingExports" SET "NextRetryAt" = NULL WHERE "Status" = 0"#)
            .execute(&f.env.db.pool)
            .await
            .unwrap();
    }
    f.assert_converged().await;
}
