//! Shared harness of the crash tests (`engine_crash`, `engine_chaos`): a child process running one
//! export (the test binary re-run with `CHILD_REQUEST_ENV` set, selecting its ignored `crash_child`
//! test, which calls [`child_main`]), a scenario's servers (a fresh JIM database and slapd, latency
//! proxies in front of them for the child), observations of the database and the directory, and the
//! convergence checks every crash scenario ends with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::engine::{Env, Events, assert_directory_matches, read_directory};
use crate::LatencyProxy;
use crate::seed::{DirectoryState, Template};
use jim_export::config::{DatabaseConfig, DirectoryConfig, ExportRequest};
use jim_export::engine::{CancellationToken, Engine};
use jim_export::report::{ItemStatus, RunResult};
use ldap3::{Ldap, Scope, SearchEntry};
use sqlx::Row;
use uuid::Uuid;

/// Carries the child's request (JSON); its presence makes `crash_child` run.
pub const CHILD_REQUEST_ENV: &str = "JIM_EXPORT_CRASH_CHILD_REQUEST";
/// The shortest lease the engine accepts.
pub const LEASE_SECONDS: u64 = 10;
// `PendingExportStatus` values: the row builder's names, so both spell them alike.
pub use super::store::{EXECUTING, EXPORTED, FAILED, PENDING};
/// How long a child may take to reach a kill point.
pub const KILL_POINT_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of each crash test binary's ignored `crash_child` test: runs one export of the request in
/// `JIM_EXPORT_CRASH_CHILD_REQUEST` and prints how it ended; it exits when its standard input closes
/// (the parent died), so it never outlives the test. Without the variable it does nothing.
pub fn child_main() {
    let Ok(json) = std::env::var(CHILD_REQUEST_ENV) else {
        return;
    };
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(3);
    });
    let request =
        ExportRequest::from_json(&json).unwrap_or_else(|e| panic!("the parent's request: {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(Engine::new().run_export(
        &request,
        Arc::new(ChildLog),
        CancellationToken::new(),
    ));
    match outcome {
        Ok(result) => {
            println!(
                "CHILD-RESULT {}",
                serde_json::to_string(&result).unwrap_or_default()
            );
            println!("CHILD-DONE {}", result.message);
        }
        Err(e) => println!("CHILD-ERROR {e}"),
    }
}

/// The child's listener: its log records (debug and up) go to its standard error, which the parent
/// shows when the child misbehaves.
struct ChildLog;

impl jim_export::engine::RunListener for ChildLog {
    fn on_progress(&self, _event: &jim_export::report::ProgressEvent) {}

    fn on_batch(&self, _report: &jim_export::report::BatchReport) {}

    fn on_log(&self, record: &jim_export::engine::LogRecord) {
        eprintln!("CHILD-LOG {:?} {}", record.level, record.message);
    }
}

/// A running child engine; killed (SIGKILL) when dropped.
pub struct ChildRun {
    /// The child process (this test binary running `crash_child`).
    pub child: Child,
    /// Held open: the child exits when it closes.
    pub _stdin: Option<ChildStdin>,
    /// When the child was spawned.
    pub started: Instant,
    /// Everything the child printed on stdout and stderr so far.
    pub output: Arc<Mutex<String>>,
    /// The threads copying the child's stdout and stderr into `output`; joined once the child has
    /// ended, so that what it printed last is read before anyone looks at it.
    pub readers: Vec<std::thread::JoinHandle<()>>,
}

impl ChildRun {
    /// Starts this test binary's `crash_child` test on `request`.
    pub fn spawn(request: &ExportRequest) -> ChildRun {
        let json = serde_json::to_string(request).expect("the request serialises");
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_REQUEST_ENV, json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child starts");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            // Whole lines, so that a log line on stderr never lands inside the result line on
            // stdout (a long line reaches the pipe in several writes).
            readers.push(std::thread::spawn(move || {
                let mut stream = std::io::BufReader::new(stream);
                let mut line = Vec::new();
                while let Ok(n) = stream.read_until(b'\n', &mut line) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&line));
                    line.clear();
                }
            }));
        }
        ChildRun {
            _stdin: child.stdin.take(),
            child,
            started: Instant::now(),
            output,
            readers,
        }
    }

    /// Whether the child has ended; once it has, everything it printed is in `output`.
    pub fn exited(&mut self) -> bool {
        let ended = matches!(self.child.try_wait(), Ok(Some(_)));
        if ended {
            self.drain();
        }
        ended
    }

    /// Waits for the reader threads: the child's pipes are closed once it has ended, so they finish
    /// as soon as they have copied the last bytes. Without this, a child that printed its result and
    /// exited could look as if it had printed nothing.
    pub fn drain(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// SIGKILL, then reap. Returns how long the child had run.
    pub fn kill(&mut self) -> Duration {
        let ran = self.started.elapsed();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
        ran
    }

    /// Sends a signal (`STOP`, `CONT`) with the system's `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(status.success(), "kill -{name} {}", self.child.id());
    }

    /// Waits for the child to end by itself.
    pub async fn finish(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.exited() {
            if Instant::now() >= end {
                panic!(
                    "the child did not finish in {timeout:?}:\n{}\n{}",
                    self.output(),
                    self.stacks()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every thread's stack of the (stuck) child, when gdb is there to tell.
    pub fn stacks(&self) -> String {
        Command::new("gdb")
            .args([
                "-p",
                &self.child.id().to_string(),
                "-batch",
                "-ex",
                "thread apply all bt",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("(no stacks: {e})"))
    }

    /// The run result the child printed, once it has ended.
    pub fn result(&self) -> Option<serde_json::Value> {
        let out = self.output.lock().unwrap();
        // The test harness may print "test crash_child ... " before it on the same line.
        out.lines()
            .find_map(|l| l.split_once("CHILD-RESULT ").map(|(_, j)| j))
            .and_then(|j| serde_json::from_str(j).ok())
    }

    /// True when the child printed `needle` (anywhere, not only in [`ChildRun::output`]'s tail).
    pub fn printed(&self, needle: &str) -> bool {
        self.output.lock().unwrap().contains(needle)
    }

    /// The end of what the child printed, and the line saying how it ended wherever it is.
    pub fn output(&self) -> String {
        let out = self.output.lock().unwrap();
        let start = out.char_indices().rev().nth(4000).map_or(0, |(i, _)| i);
        let ended: Vec<&str> = out[..start]
            .lines()
            .filter(|l| l.contains("CHILD-DONE") || l.contains("CHILD-ERROR"))
            .collect();
        format!("{}{}", ended.join("\n"), &out[start..])
    }
}

impl Drop for ChildRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it says the kill point is reached (then returns, the child still running),
/// failing if the child ends first.
pub async fn wait_for(child: &mut ChildRun, what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + KILL_POINT_TIMEOUT;
    loop {
        if probe().await {
            return;
        }
        assert!(
            !child.exited(),
            "the child ended before {what}:\n{}",
            child.output()
        );
        assert!(
            Instant::now() < end,
            "no {what} within {KILL_POINT_TIMEOUT:?}:\n{}",
            child.output()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ------------------------------------------------------------------------------------------------
// A scenario's servers and observations
// ------------------------------------------------------------------------------------------------

/// Pending export counts of the system by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statuses {
    /// `Pending` rows.
    pub pending: i64,
    /// `Executing` rows (claimed, not yet persisted).
    pub executing: i64,
    /// `Failed` rows.
    pub failed: i64,
    /// `Exported` rows.
    pub exported: i64,
    /// Rows in any other status.
    pub other: i64,
}

/// One scenario's servers: a fresh JIM database and slapd with the Small template seeded, a latency
/// proxy in front of slapd (and optionally one in front of PostgreSQL) for the child, and the DNs the
/// directory held before any export.
pub struct Scenario {
    /// The scenario's name, in its timing line.
    pub name: String,
    /// The scenario's database, slapd and seeded system.
    pub env: Env,
    /// The proxy in front of slapd that the child goes through.
    pub ldap_proxy: LatencyProxy,
    /// The proxy in front of PostgreSQL, when the child goes through one.
    pub pg_proxy: Option<LatencyProxy>,
    /// Every DN the directory held before any export, lower-cased.
    pub baseline: BTreeSet<String>,
    /// When the scenario began setting up.
    pub started: Instant,
    /// Each phase's duration, in order ([`Scenario::mark`]).
    pub timings: Vec<(String, Duration)>,
    /// When the last phase ended.
    pub last_mark: Instant,
}

impl Scenario {
    /// Fresh servers for scenario `name`, with `ldap_rtt` (and `pg_rtt`, if any) added to the
    /// child's round trips.
    pub async fn new(name: &str, ldap_rtt: Duration, pg_rtt: Option<Duration>) -> Scenario {
        let started = Instant::now();
        let env = Env::new(Template::Small).await;
        let ldap_proxy =
            LatencyProxy::in_front_of(env.slapd.ldap_url(), ldap_rtt).expect("an LDAP proxy");
        let pg_proxy = pg_rtt
            .map(|rtt| LatencyProxy::in_front_of(&env.db.url, rtt).expect("a PostgreSQL proxy"));
        let mut scenario = Scenario {
            name: name.to_string(),
            env,
            ldap_proxy,
            pg_proxy,
            baseline: BTreeSet::new(),
            started,
            timings: Vec::new(),
            last_mark: started,
        };
        scenario.baseline = scenario.all_dns().await;
        scenario.mark("setup");
        scenario
    }

    /// Records the time since the previous mark.
    pub fn mark(&mut self, phase: &str) {
        let now = Instant::now();
        self.timings.push((phase.to_string(), now - self.last_mark));
        self.last_mark = now;
    }

    /// Prints the scenario's total time and each phase's on stderr.
    pub fn print_timings(&self) {
        let phases: Vec<String> = self
            .timings
            .iter()
            .map(|(p, d)| format!("{p} {:.1}s", d.as_secs_f64()))
            .collect();
        eprintln!(
            "[{}] {:.1}s: {}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            phases.join(", ")
        );
    }

    /// The seeded connected system's id.
    pub fn system(&self) -> i32 {
        self.env.seeded.connected_system_id()
    }

    /// The request the child runs: through the proxies, with a short lease.
    pub fn child_request(&self) -> ExportRequest {
        let mut request = self.direct_request();
        request.directory = DirectoryConfig::simple(
            self.ldap_proxy.url("ldap"),
            self.env.slapd.admin_dn(),
            self.env.slapd.admin_password(),
        )
        .allowing_password_without_tls();
        if let Some(proxy) = &self.pg_proxy {
            let port = proxy.upstream().port();
            let url = self.env.db.url.replacen(
                &format!(":{port}/"),
                &format!(":{}/", proxy.addr().port()),
                1,
            );
            assert_ne!(
                url, self.env.db.url,
                "the database URL names the proxied port"
            );
            request.database = DatabaseConfig::new(url);
        }
        request
    }

    /// A request straight to the servers, with a short lease.
    pub fn direct_request(&self) -> ExportRequest {
        let mut request = self.env.request();
        request.options.lease_seconds = LEASE_SECONDS;
        request
    }

    /// `request` (the child's settings and options) straight to the servers: the re-runs' request.
    pub fn direct(&self, request: &ExportRequest) -> ExportRequest {
        let direct = self.direct_request();
        ExportRequest {
            database: direct.database,
            directory: direct.directory,
            ..request.clone()
        }
    }

    /// An LDAP connection to slapd (not through the proxy), bound as the admin.
    pub async fn admin_ldap(&self) -> Ldap {
        self.env
            .slapd
            .admin_ldap()
            .await
            .expect("an admin connection")
    }

    /// Every DN under the suffix, lower-cased.
    pub async fn all_dns(&self) -> BTreeSet<String> {
        let mut ldap = self.admin_ldap().await;
        let dns = search_dns(&mut ldap, self.env.slapd.suffix(), "(objectClass=*)").await;
        let _ = ldap.unbind().await;
        dns
    }

    /// The system's pending exports counted by status.
    pub async fn statuses(&self) -> Statuses {
        let rows = sqlx::query(r#"SELECT "Status", count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 GROUP BY 1"#)
            .bind(self.system())
            .fetch_all(&self.env.db.pool)
            .await
            .expect("count statuses");
        let mut s = Statuses::default();
        for row in rows {
            let n: i64 = row.get(1);
            match row.get::<i32, _>(0) {
                PENDING => s.pending += n,
                EXECUTING => s.executing += n,
                FAILED => s.failed += n,
                EXPORTED => s.exported += n,
                _ => s.other += n,
            }
        }
        s
    }

    /// The status of one pending export.
    pub async fn status_of(&self, pending_export: Uuid) -> i32 {
        sqlx::query_scalar(r#"SELECT "Status" FROM "PendingExports" WHERE "Id" = $1"#)
            .bind(pending_export)
            .fetch_one(&self.env.db.pool)
            .await
            .expect("read a status")
    }

    /// The seeded Creates: lower-cased DN → pending export id.
    pub fn seeded_creates(&self) -> BTreeMap<String, Uuid> {
        let seeded = &self.env.seeded;
        let users = (0..seeded.users())
            .filter_map(|i| seeded.user(i))
            .map(|u| (u.dn.to_lowercase(), u.ids.pending_export));
        let groups = (0..seeded.groups())
            .filter_map(|g| seeded.group(g))
            .map(|g| (g.dn.to_lowercase(), g.ids.pending_export));
        users.chain(groups).collect()
    }

    /// Seeded Creates whose entry is in the directory while their row is still `Executing` (written
    /// by the killed run, outcome never persisted), with the entry's entryUUID.
    pub async fn unpersisted_creates_in_directory(&self) -> Reached {
        self.settle().await;
        let present = self.entry_uuids().await;
        let executing: BTreeSet<Uuid> = sqlx::query_scalar(
            r#"SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 2"#,
        )
        .bind(self.system())
        .fetch_all(&self.env.db.pool)
        .await
        .expect("read executing rows")
        .into_iter()
        .collect();
        self.seeded_creates()
            .into_iter()
            .filter(|(_, id)| executing.contains(id))
            .filter_map(|(dn, id)| Some((id, Some(present.get(&dn)?.clone()))))
            .collect()
    }

    /// Lets what a killed child left in flight land: requests the proxies still deliver, and
    /// statements the database received before the kill (a persist may still commit then; its
    /// session ends once it finds the client gone).
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'",
            )
            .fetch_one(&self.env.db.pool)
            .await
            .expect("read pg_stat_activity");
            if active == 0 {
                return;
            }
            assert!(
                Instant::now() < end,
                "[{}] statements of the killed run still run",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every row a killed run left `Executing` is past its lease (by the database clock,
    /// which is the one the claim compares with).
    pub async fn wait_for_lease(&self) {
        let remaining: Option<f64> = sqlx::query_scalar(
            r#"SELECT EXTRACT(EPOCH FROM max("LastAttemptedAt") + make_interval(secs => $2) - now())::float8
               FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 2"#,
        )
        .bind(self.system())
        .bind(LEASE_SECONDS as f64)
        .fetch_one(&self.env.db.pool)
        .await
        .expect("read the lease");
        if let Some(secs) = remaining.filter(|s| *s > 0.0) {
            tokio::time::sleep(Duration::from_secs_f64(secs) + Duration::from_millis(250)).await;
        }
    }

    /// Once the killed runs' claims are past their lease, runs the engine in this process with the
    /// child's settings and options (straight to the servers) until nothing is due, at most four
    /// times, and returns every run's result and events.
    pub async fn converge(
        &mut self,
        child_request: &ExportRequest,
    ) -> Vec<(RunResult, Arc<Events>)> {
        self.wait_for_lease().await;
        self.mark("lease wait");
        self.converge_now(child_request).await
    }

    /// [`Scenario::converge`] without waiting for leases: for rows that some way back to the queue
    /// (the operator's release, a cancelled or stopped run) has already returned.
    pub async fn converge_now(
        &mut self,
        child_request: &ExportRequest,
    ) -> Vec<(RunResult, Arc<Events>)> {
        let engine = Engine::new();
        let request = self.direct(child_request);
        let mut runs = Vec::new();
        for attempt in 0..4 {
            if attempt > 0 {
                // A row whose export failed is Pending with a NextRetryAt minutes ahead (JIM's
                // backoff); the test cannot wait that long, so it makes such rows due now. (Nothing is
                // expected to fail: failures are printed below and error counts asserted afterwards.)
                sqlx::query(r#"UPDATE "PendingExports" SET "NextRetryAt" = NULL WHERE "ConnectedSystemId" = $1 AND "Status" = 0"#)
                    .bind(self.system())
                    .execute(&self.env.db.pool)
                    .await
                    .expect("make failed rows due");
            }
            let (result, events) = self.env.run(&engine, &request).await;
            for item in events
                .items()
                .iter()
                .filter(|i| i.status == ItemStatus::Failed)
            {
                eprintln!(
                    "[{}] re-run failure: {:?} {:?}: {:?}",
                    self.name, item.change_type, item.pending_export_id, item.error_message
                );
            }
            runs.push((result, events));
            let s = self.statuses().await;
            if s.pending == 0 && s.executing == 0 {
                break;
            }
        }
        self.mark(&format!("{} re-run(s)", runs.len()));
        runs
    }

    /// Asserts the converged state (see the module docs) against `expected`.
    pub async fn assert_converged(
        &self,
        expected: &DirectoryState,
        runs: &[(RunResult, Arc<Events>)],
    ) {
        self.assert_converged_except(expected, runs, &BTreeSet::new())
            .await;
    }

    /// [`Scenario::assert_converged`], except that the exports in `refused` (whose earlier attempts
    /// were rightly refused, e.g. by a stranger at their DN) may have counted errors on the way.
    pub async fn assert_converged_except(
        &self,
        expected: &DirectoryState,
        runs: &[(RunResult, Arc<Events>)],
        refused: &BTreeSet<Uuid>,
    ) {
        let name = &self.name;
        // The database: a legal final state for every row, in practice all Exported.
        let s = self.statuses().await;
        assert_eq!(s.executing, 0, "[{name}] rows left Executing: {s:?}");
        let illegal: i64 = sqlx::query_scalar(
            r#"SELECT count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1
               AND NOT ("Status" IN (3, 4) OR ("Status" = 0 AND "NextRetryAt" IS NOT NULL))"#,
        )
        .bind(self.system())
        .fetch_one(&self.env.db.pool)
        .await
        .unwrap();
        assert_eq!(illegal, 0, "[{name}] rows in no legal final state: {s:?}");
        assert_eq!(
            (s.pending, s.failed, s.other),
            (0, 0, 0),
            "[{name}] every export ends Exported: {s:?}"
        );
        let refused_ids: Vec<Uuid> = refused.iter().copied().collect();
        let row = sqlx::query(
            r#"SELECT count(*) FILTER (WHERE p."ErrorCount" <> 0 AND p."Id" <> ALL($2)),
                      (SELECT count(*) FROM "PendingExportAttributeValueChanges" c JOIN "PendingExports" q ON q."Id" = c."PendingExportId"
                       WHERE q."ConnectedSystemId" = $1 AND NOT (c."Status" = 1 AND c."ExportAttemptCount" = 1))
               FROM "PendingExports" p WHERE p."ConnectedSystemId" = $1"#,
        )
        .bind(self.system())
        .bind(&refused_ids)
        .fetch_one(&self.env.db.pool)
        .await
        .unwrap();
        let (with_errors, changes_off): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(with_errors, 0, "[{name}] no export failed on the way");
        assert_eq!(
            changes_off, 0,
            "[{name}] every attribute change written once (ExportedPendingConfirmation, one attempt)"
        );

        // No re-attempt met its own earlier write as a failure.
        for (result, events) in runs {
            let conflicts: Vec<_> = events
                .items()
                .into_iter()
                .filter(|i| i.status == ItemStatus::Failed)
                .filter(|i| !refused.contains(&i.pending_export_id))
                .filter_map(|i| i.error_message)
                .filter(|m| m.to_lowercase().contains("already"))
                .collect();
            assert!(
                conflicts.is_empty(),
                "[{name}] re-attempts failed on their own writes: {conflicts:?} ({})",
                result.message
            );
        }

        // The directory: exactly the expected entries and values, each object once.
        let actual = read_directory(&self.env.slapd).await;
        assert_directory_matches(&actual, expected);
        let alumni = format!("ou=alumni,{}", self.env.slapd.suffix().to_lowercase());
        let objects: BTreeSet<String> = self
            .all_dns()
            .await
            .into_iter()
            .filter(|dn| !self.baseline.contains(dn) && *dn != alumni)
            .collect();
        let wanted: BTreeSet<String> = expected
            .entries
            .keys()
            .map(|dn| dn.to_lowercase())
            .collect();
        assert_eq!(
            objects.difference(&wanted).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "[{name}] unexpected entries under the suffix"
        );
        assert_eq!(
            objects.len(),
            wanted.len(),
            "[{name}] entries under the suffix"
        );
        let mut employees: HashMap<String, usize> = HashMap::new();
        for entry in actual.entries.values() {
            for number in entry.get("employeeNumber").into_iter().flatten() {
                *employees.entry(number.clone()).or_default() += 1;
            }
        }
        let twice: Vec<_> = employees.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "[{name}] users in the directory more than once: {twice:?}"
        );

        // Every object's CSO carries its entry's entryUUID as anchor (adopted entries were read back).
        let uuids = self.entry_uuids().await;
        let anchors = self.cso_anchors().await;
        for dn in &wanted {
            let csos: Vec<&(Option<String>, i64)> = anchors
                .get(dn)
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            assert_eq!(csos.len(), 1, "[{name}] one CSO has the DN {dn}");
            let (anchor, count) = csos[0];
            assert_eq!(*count, 1, "[{name}] {dn}: one anchor value");
            assert_eq!(
                anchor.as_ref(),
                uuids.get(dn),
                "[{name}] {dn}: the CSO's anchor is the entry's entryUUID"
            );
        }
    }

    /// Lower-cased DN → entryUUID of every entry under the suffix.
    pub async fn entry_uuids(&self) -> HashMap<String, String> {
        let mut ldap = self.admin_ldap().await;
        let (entries, _) = ldap
            .search(
                self.env.slapd.suffix(),
                Scope::Subtree,
                "(objectClass=*)",
                vec!["entryUUID"],
            )
            .await
            .and_then(|r| r.success())
            .expect("read entryUUIDs");
        let _ = ldap.unbind().await;
        entries
            .into_iter()
            .map(SearchEntry::construct)
            .filter_map(|e| {
                Some((
                    e.dn.to_lowercase(),
                    e.attrs.get("entryUUID")?.first()?.clone(),
                ))
            })
            .collect()
    }

    /// Lower-cased DN → (anchor, number of anchor values) of each CSO of the system.
    pub async fn cso_anchors(&self) -> HashMap<String, Vec<(Option<String>, i64)>> {
        let rows = sqlx::query(
            r#"SELECT (SELECT v."StringValue" FROM "ConnectedSystemObjectAttributeValues" v
                       WHERE v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."SecondaryExternalIdAttributeId" LIMIT 1),
                      (SELECT v."StringValue" FROM "ConnectedSystemObjectAttributeValues" v
                       WHERE v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."ExternalIdAttributeId" LIMIT 1),
                      (SELECT count(*) FROM "ConnectedSystemObjectAttributeValues" v
                       WHERE v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."ExternalIdAttributeId")
               FROM "ConnectedSystemObjects" o WHERE o."ConnectedSystemId" = $1"#,
        )
        .bind(self.system())
        .fetch_all(&self.env.db.pool)
        .await
        .expect("read CSO anchors");
        let mut out: HashMap<String, Vec<(Option<String>, i64)>> = HashMap::new();
        for row in rows {
            if let Some(dn) = row.get::<Option<String>, _>(0) {
                out.entry(dn.to_lowercase())
                    .or_default()
                    .push((row.get(1), row.get(2)));
            }
        }
        out
    }

    /// Asserts that the exports in `reached` (their writes reached the directory before the kill)
    /// succeeded on the first re-run, as re-attempts; a Create adopted the entry that was there (the
    /// same entryUUID, reported as the new anchor), rather than failing or replacing it.
    pub async fn assert_recovered(&self, reached: &Reached, runs: &[(RunResult, Arc<Events>)]) {
        let name = &self.name;
        let (first, events) = &runs[0];
        assert!(
            first.metrics.recovered >= reached.len() as u64,
            "[{name}] {} re-attempt(s) recovered, {} export(s) had reached the directory",
            first.metrics.recovered,
            reached.len()
        );
        let items: HashMap<Uuid, _> = events
            .items()
            .into_iter()
            .map(|i| (i.pending_export_id, i))
            .collect();
        let uuids = self.entry_uuids().await;
        let creates: HashMap<Uuid, String> = self
            .seeded_creates()
            .into_iter()
            .map(|(dn, id)| (id, dn))
            .collect();
        for (id, entry_uuid) in reached {
            let item = items
                .get(id)
                .unwrap_or_else(|| panic!("[{name}] the first re-run reported export {id}"));
            assert_eq!(
                item.status,
                ItemStatus::Succeeded,
                "[{name}] export {id}: {:?}",
                item.error_message
            );
            if let (Some(dn), Some(entry_uuid)) = (creates.get(id), entry_uuid) {
                assert!(item.provisioned, "[{name}] {dn} reported as provisioned");
                assert_eq!(
                    uuids.get(dn),
                    Some(entry_uuid),
                    "[{name}] {dn}: the entry the killed run created is still there"
                );
                let anchor = item
                    .anchor_changes
                    .iter()
                    .find(|a| a.attribute_name == "entryUUID");
                assert_eq!(
                    anchor.map(|a| &a.new_value),
                    uuids.get(dn),
                    "[{name}] {dn}: the adopted entry's entryUUID is reported"
                );
            }
        }
    }
}

/// Exports whose writes reached the directory before the kill, with the entryUUID of the entry a
/// Create made.
pub type Reached = BTreeMap<Uuid, Option<String>>;

/// Lower-cased DNs of the entries under `base` matching `filter`.
pub async fn search_dns(ldap: &mut Ldap, base: &str, filter: &str) -> BTreeSet<String> {
    let (entries, _) = ldap
        .search(base, Scope::Subtree, filter, vec!["1.1"])
        .await
        .and_then(|r| r.success())
        .expect("search the directory");
    entries
        .into_iter()
        .map(|e| SearchEntry::construct(e).dn.to_lowercase())
        .collect()
}

/// Users and groups in the directory.
pub async fn objects_in_directory(ldap: &mut Ldap, suffix: &str) -> usize {
    search_dns(
        ldap,
        suffix,
        "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
    )
    .await
    .len()
}

/// Values of `attribute` of `dn` (0 when the entry is absent).
pub async fn value_count(ldap: &mut Ldap, dn: &str, attribute: &str) -> usize {
    let (entries, _) = match ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec![attribute])
        .await
    {
        Ok(r) if r.1.rc == 32 => return 0,
        Ok(r) => r.success().expect("read an entry"),
        Err(e) => panic!("read {dn}: {e}"),
    };
    entries
        .into_iter()
        .map(SearchEntry::construct)
        .flat_map(|e| {
            e.attrs
                .into_iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(attribute))
                .flat_map(|(_, v)| v)
        })
        .count()
}

/// Persist statements the database has completed (pg_stat_statements counts them).
pub async fn persist_calls(s: &Scenario) -> i64 {
    sqlx::query_scalar(
        r#"SELECT COALESCE(sum(p.calls), 0)::int8 FROM pg_stat_statements p JOIN pg_database d ON d.oid = p.dbid
           WHERE d.datname = current_database() AND p.query LIKE '%WITH pe_in AS%' AND p.query NOT LIKE '%pg_stat%'"#,
    )
    .fetch_one(&s.env.db.pool)
    .await
    .expect("read pg_stat_statements")
}

/// Persist statements (the flush's `WITH pe_in AS ...`) running in the database for another
/// session, or only those waiting on a lock.
pub async fn persists_in_progress(s: &Scenario, waiting_on_lock: bool) -> i64 {
    sqlx::query_scalar(
        r#"SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'
             AND query LIKE '%WITH pe_in AS%' AND (NOT $1 OR wait_event_type = 'Lock')"#,
    )
    .bind(waiting_on_lock)
    .fetch_one(&s.env.db.pool)
    .await
    .expect("read pg_stat_activity")
}

/// A small deterministic generator (splitmix64), so a seed always gives the same scenario.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// One element of `from` (not empty), uniformly.
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.range(0, from.len() as u64) as usize]
    }
}

/// Objects written to the directory plus outcomes persisted.
pub async fn progress(s: &Scenario, ldap: &mut Ldap, suffix: &str) -> u64 {
    objects_in_directory(ldap, suffix).await as u64 + s.statuses().await.exported as u64
}
