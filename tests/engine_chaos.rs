//! Chaos: the engine, in child processes against real PostgreSQL and slapd with injected latency, is
//! killed (SIGKILL) at random points drawn afresh on every run, again and again, with every way back
//! to the queue between the kills and obstacles in the recovery's path, and must always converge to
//! exactly what one clean run leaves.
//!
//! The seed is printed at the start; `JIM_EXPORT_CHAOS_SEED=<n>` replays one (the draws depend only
//! on it, the kill points on progress, not on the machine's speed). `JIM_EXPORT_CHAOS_KILLS` sets how
//! many kills a run makes (default 30).
//!
//! Each episode is a fresh JIM database and slapd with the Small template, and one of:
//! - **initial** provisioning (users, then groups with their members, managers);
//! - **follow-ups**: after a clean initial run and JIM's confirming import, a round of mixed
//!   follow-ups (updates, renames, moves, manager and membership changes, deletes);
//! - **chunked**: initial provisioning with a modify batch size of 10, so big groups are written in
//!   chunks and kills fall between them;
//! - **three engines**: three child engines drain one queue at once and one of them is killed.
//!
//! Every kill is checked to have landed mid-run: the child had not finished, something was written
//! (objects in the directory or outcomes persisted since it started) and something was left (rows
//! not yet in their final state). A draw whose child finished first is not counted (and the run fails
//! if too many miss). Between kills one way back to the queue is drawn: the operator's
//! `release_stranded`, the lease running out, a recovery run cancelled part way (the cancel's release),
//! a recovery run that loses its directory part way (the directory-gone breaker's release), or none
//! (the next engine starts while the killed one's rows are still leased). The next child then often
//! re-attempts what the killed one left, and is killed in turn (a kill during a recovery).
//!
//! Obstacles: after a kill, an unrelated entry is sometimes placed where a claimed Create goes (or
//! where a follow-up rename goes). The recovery must refuse it, as a first attempt would, and leave it
//! untouched; once the test removes it, the export converges like the others.
//!
//! At the end of each episode: every expected entry once with exactly its values, every row
//! Exported, nothing Executing, no error counted (but by the refused exports and the exports the
//! breaker failed), every change written once, every CSO anchored on its entry's entryUUID, and every
//! entry a killed run created still the same entry (no entry written twice).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jim_export::config::ExportRequest;
use jim_export::engine::{CancellationToken, Engine, RunListener};
use jim_export::report::{BatchReport, ItemStatus, RunResult};
use jim_export::store::marker::Marker;
use jim_export_testkit::ProxyHandle;
use jim_export_testkit::seed::{self, FollowUpKind, FollowUps, StagedFollowUps};
use jim_export_testkit::support::crash::*;
use jim_export_testkit::support::engine::Events;
use ldap3::Ldap;
use sqlx::Row;
use uuid::Uuid;

/// Replays one run's draws.
const SEED_ENV: &str = "JIM_EXPORT_CHAOS_SEED";
/// How many kills a run makes.
const KILLS_ENV: &str = "JIM_EXPORT_CHAOS_KILLS";
/// The default number of kills.
const DEFAULT_KILLS: usize = 30;
/// Draws whose child finished before its kill point, at most, per kill made.
const MAX_MISS_RATIO: f64 = 1.0;

/// Not a test on its own: the export run the chaos starts in child processes and kills.
#[test]
#[ignore = "the export run the chaos test starts in child processes and kills"]
fn crash_child() {
    child_main();
}

/// The phases an episode runs kills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Initial,
    FollowUps,
    Chunked,
    ThreeEngines,
}

/// Every kind, each of which a run must kill in.
const KINDS: [Kind; 4] = [
    Kind::Initial,
    Kind::FollowUps,
    Kind::Chunked,
    Kind::ThreeEngines,
];

/// Episodes a run may add, once its kills are made, for a kind in which every draw missed.
const MAKE_UP_EPISODES: usize = 4;

/// Ways back to the queue between kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WayBack {
    OperatorRelease,
    Lease,
    CancelledRecovery,
    BreakerRecovery,
    None,
}

/// What a chaos run did.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    misses: usize,
    by_kind: BTreeMap<Kind, usize>,
    ways: BTreeMap<WayBack, usize>,
    kills_during_recovery: usize,
    strangers_refused: usize,
    leases_waited: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_with_every_way_back_converges() {
    if std::env::var_os("JIM_TEST_LDAP_URL").is_some() {
        eprintln!("skipped: the chaos test needs a throwaway slapd per episode");
        return;
    }
    let seed = match std::env::var(SEED_ENV) {
        Ok(s) => s.trim().parse().expect("JIM_EXPORT_CHAOS_SEED is a number"),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    };
    let kills: usize = std::env::var(KILLS_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    eprintln!("chaos seed {seed} ({kills} kills; replay with {SEED_ENV}={seed})");
    let mut rng = SplitMix(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    // Every kind once, in a drawn order, then drawn kinds until the kills are made. A kind still
    // without a kill (every draw missed: a short run can finish before its kill lands; or a small
    // budget never reached it) then gets episodes of its own, up to `MAKE_UP_EPISODES` in all, so
    // that a run kills in every kind by design, not by luck.
    let mut kinds = KINDS;
    for i in (1..kinds.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        kinds.swap(i, j);
    }
    let mut episode = 0;
    while tally.kills < kills {
        let kind = kinds
            .get(episode)
            .copied()
            .unwrap_or_else(|| rng.pick(&KINDS));
        let left = kills - tally.kills;
        run_episode(episode, kind, left, &mut rng, &mut tally).await;
        episode += 1;
    }
    for _ in 0..MAKE_UP_EPISODES {
        let Some(kind) = KINDS
            .into_iter()
            .find(|k| tally.by_kind.get(k).copied().unwrap_or(0) == 0)
        else {
            break;
        };
        eprintln!("[chaos] no kill during {kind:?} yet: one more episode of it");
        run_episode(episode, kind, 1, &mut rng, &mut tally).await;
        episode += 1;
    }
    assert!(
        (tally.misses as f64) <= MAX_MISS_RATIO * (tally.kills as f64),
        "too many draws missed the run (seed {seed}): {tally:?}"
    );
    eprintln!(
        "chaos seed {seed}: {} kills in {episode} episodes, {:.0} s: {tally:?}",
        tally.kills,
        started.elapsed().as_secs_f64()
    );
    for kind in KINDS {
        assert!(
            tally.by_kind.get(&kind).copied().unwrap_or(0) > 0,
            "no kill during {kind:?} (seed {seed})"
        );
    }
    if kills >= DEFAULT_KILLS {
        for way in [
            WayBack::OperatorRelease,
            WayBack::Lease,
            WayBack::CancelledRecovery,
            WayBack::BreakerRecovery,
        ] {
            assert!(
                tally.ways.get(&way).copied().unwrap_or(0) > 0,
                "no {way:?} (seed {seed}): {tally:?}"
            );
        }
        assert!(
            tally.kills_during_recovery > 0,
            "no kill during a recovery run (seed {seed})"
        );
        assert!(
            tally.strangers_refused > 0,
            "no stranger placed (seed {seed})"
        );
    }
}

/// One episode's servers, request and what it has to check at the end.
struct Episode {
    s: Scenario,
    kind: Kind,
    request: ExportRequest,
    ldap: Ldap,
    suffix: String,
    /// The rows whose final state counts for "something left": all of the system's (initial) or the
    /// staged follow-ups'.
    rows: Option<Vec<Uuid>>,
    staged: Option<StagedFollowUps>,
    /// DN → entryUUID of the objects' entries seen after kills (must stay the same entries).
    seen: BTreeMap<String, String>,
    /// Strangers placed: the export's id, the stranger's DN and entryUUID.
    strangers: Vec<(Uuid, String, String)>,
    /// Exports that the breaker (or a refusal) failed on the way: their errors are expected.
    exempt: BTreeSet<Uuid>,
}

async fn run_episode(n: usize, kind: Kind, left: usize, rng: &mut SplitMix, tally: &mut Tally) {
    let rtt = Duration::from_millis(rng.pick(&[30, 40, 50]));
    let pg_rtt = rng.pick(&[None, Some(Duration::from_millis(5))]);
    let mut s = Scenario::new(&format!("chaos {n} {kind:?}"), rtt, pg_rtt).await;
    let mut request = s.child_request();
    request.options.flush_size = rng.pick(&[5, 10, 25]);
    request.options.page_size = rng.pick(&[10, 25, 50]);
    request.options.lease_seconds = LEASE_SECONDS;
    // A few operations in flight, so that a run of the Small template lasts a second or more and the
    // kill points (drawn over its progress) fall inside it.
    request.options.concurrency = Some(jim_export::config::Concurrency::Fixed);
    request.options.connections = Some(2);
    request.options.max_in_flight = Some(rng.pick(&[4, 6, 8]));
    request.settings.modify_batch_size = match kind {
        Kind::Chunked => 10,
        _ => rng.pick(&[10, 1000]),
    };
    request.settings.create_containers_as_needed = true;
    let mut expected = s.env.seeded.expected_directory().unwrap();
    let mut staged = None;
    if kind == Kind::FollowUps {
        let (first, _) = s.env.run(&Engine::new(), &s.direct(&request)).await;
        assert_eq!(first.failed_count, 0, "{}", first.message);
        seed::confirm_exported(&s.env.db.pool, &s.env.seeded)
            .await
            .expect("confirm");
        let follow_ups = FollowUps {
            seed: rng.next_u64(),
            reference_moved_users: true,
            ..FollowUps::mixed(6)
        };
        let st = seed::stage_follow_ups(&s.env.db.pool, &s.env.seeded, &follow_ups)
            .await
            .expect("stage");
        st.apply(&mut expected);
        staged = Some(st);
        s.mark("initial export and follow-ups");
    }
    let ldap = s.admin_ldap().await;
    let suffix = s.env.slapd.suffix().to_string();
    let rows = staged
        .as_ref()
        .map(|st| st.exports.iter().map(|e| e.pending_export_id).collect());
    let mut ep = Episode {
        s,
        kind,
        request,
        ldap,
        suffix,
        rows,
        staged,
        seen: BTreeMap::new(),
        strangers: Vec::new(),
        exempt: BTreeSet::new(),
    };
    eprintln!(
        "[{}] rtt {rtt:?}, database rtt {pg_rtt:?}, flush {}, page {}, modify batch {}",
        ep.s.name,
        ep.request.options.flush_size,
        ep.request.options.page_size,
        ep.request.settings.modify_batch_size
    );

    let rounds = match kind {
        Kind::ThreeEngines => rng.range(1, 3) as usize,
        _ => rng.range(2, 5) as usize,
    }
    .min(left.max(1));
    for round in 0..rounds {
        let landed = match kind {
            Kind::ThreeEngines => ep.kill_one_of_three(rng, tally).await,
            _ => ep.kill_one(rng, tally).await,
        };
        if !landed {
            // The child finished the queue: nothing left to kill in this episode.
            break;
        }
        ep.maybe_place_stranger(rng, tally).await;
        let way = ep.draw_way_back(rng, tally, round + 1 == rounds);
        ep.way_back(way, tally).await;
    }
    ep.s.mark("kills");

    // The recovery: whatever is still leased comes back by the operator's release, then runs until
    // nothing is due.
    ep.operator_release().await;
    let mut runs = ep.s.converge_now(&ep.request).await;
    if !ep.strangers.is_empty() {
        ep.check_strangers_refused(tally).await;
        runs.extend(ep.remove_strangers_and_converge().await);
    }
    ep.s.assert_converged_except(&expected, &runs, &ep.exempt)
        .await;
    ep.assert_same_entries().await;
    let _ = ep.ldap.unbind().await;
    ep.s.print_timings();
}

impl Episode {
    /// Progress: objects in the directory plus outcomes persisted (initial), or staged follow-ups
    /// persisted.
    async fn progress(&mut self) -> u64 {
        match &self.rows {
            Some(rows) => self.exported_of(rows).await,
            None => {
                objects_in_directory(&mut self.ldap, &self.suffix).await as u64
                    + self.s.statuses().await.exported as u64
            }
        }
    }

    /// The most progress a run can make.
    fn full_progress(&self) -> u64 {
        match &self.rows {
            Some(rows) => rows.len() as u64,
            None => 2 * self.s.env.seeded.counts.pending_exports,
        }
    }

    /// The most progress the next run can make: rows still leased by a killed run, rows waiting out
    /// a retry delay (exports a recovery failed when its directory went away), and the exports a
    /// stranger blocks, cannot progress (counted twice in the initial phase: object and outcome).
    /// A kill point drawn above this would only be missed.
    async fn reachable_progress(&self) -> u64 {
        let leased = self.s.statuses().await.executing as u64;
        let blocked = leased + self.rows_not_due().await + 2 * self.strangers.len() as u64;
        let weight = if self.rows.is_some() { 1 } else { 2 };
        self.full_progress().saturating_sub(weight * blocked)
    }

    /// Rows of this episode that are neither final nor due: failed for good, or retried later.
    async fn rows_not_due(&self) -> u64 {
        sqlx::query_scalar::<_, i64>(
            r#"SELECT count(*) FROM "PendingExports"
               WHERE "ConnectedSystemId" = $1 AND ($2::uuid[] IS NULL OR "Id" = ANY($2))
                 AND ("Status" = 3 OR ("Status" IN (0, 1) AND "NextRetryAt" > now()))"#,
        )
        .bind(self.s.system())
        .bind(self.rows.as_deref())
        .fetch_one(&self.s.env.db.pool)
        .await
        .expect("count rows not due") as u64
    }

    async fn exported_of(&self, rows: &[Uuid]) -> u64 {
        sqlx::query_scalar::<_, i64>(
            r#"SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY($1) AND "Status" = 4"#,
        )
        .bind(rows)
        .fetch_one(&self.s.env.db.pool)
        .await
        .expect("count exported") as u64
    }

    /// Rows not yet in their final state.
    async fn rows_left(&self) -> u64 {
        match &self.rows {
            Some(rows) => rows.len() as u64 - self.exported_of(rows).await,
            None => {
                let st = self.s.statuses().await;
                (st.pending + st.executing + st.failed + st.other) as u64
            }
        }
    }

    /// Rows a next attempt re-attempts: the engine's mark on a row that is not Exported.
    async fn marked_rows(&self) -> i64 {
        sqlx::query_scalar(
            r#"SELECT count(*) FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" <> 4
               AND "LastErrorStackTrace" LIKE 'jim-export: lease %'"#,
        )
        .bind(self.s.system())
        .fetch_one(&self.s.env.db.pool)
        .await
        .expect("count marked rows")
    }

    /// Draws a kill point past the current progress and below the end, runs a child to it and kills
    /// it there. Returns false when the child finished first (a miss, not counted).
    async fn kill_one(&mut self, rng: &mut SplitMix, tally: &mut Tally) -> bool {
        for _ in 0..3 {
            let start = self.progress().await;
            let full = self.reachable_progress().await;
            if start + 2 > full {
                return false;
            }
            let during_recovery = self.marked_rows().await > 0;
            let span = full - start;
            // Chunked episodes aim late, where the groups (written last) are.
            let lo = if self.kind == Kind::Chunked {
                span / 2
            } else {
                1
            };
            let target = start + rng.range(lo.max(1), span.saturating_sub(1).max(lo.max(1) + 1));
            let delay = Duration::from_millis(rng.range(0, 30));
            let mut child = ChildRun::spawn(&self.request);
            let mut reached = false;
            let end = Instant::now() + KILL_POINT_TIMEOUT;
            while Instant::now() < end {
                if child.exited() {
                    break;
                }
                if self.progress().await >= target {
                    reached = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if reached {
                tokio::time::sleep(delay).await;
            }
            let finished = child.exited();
            let ran = child.kill();
            if finished {
                assert!(
                    child.printed("CHILD-DONE"),
                    "[{}] the child failed:\n{}",
                    self.s.name,
                    child.output()
                );
                tally.misses += 1;
                eprintln!(
                    "[{}] a draw missed: the child finished after {ran:?} before progress {target}",
                    self.s.name
                );
                continue;
            }
            assert!(
                reached,
                "[{}] the child is stuck:\n{}",
                self.s.name,
                child.output()
            );
            self.s.settle().await;
            let written = self.progress().await;
            let left = self.rows_left().await;
            if left == 0 {
                // Its last statements were already in the database: the kill ended nothing.
                tally.misses += 1;
                eprintln!(
                    "[{}] a draw missed: the child had sent its last outcomes when killed",
                    self.s.name
                );
                continue;
            }
            // The kill landed mid-run: something was written, something was left.
            assert!(
                written > start,
                "[{}] nothing written before the kill: progress {start} -> {written}",
                self.s.name
            );
            tally.kills += 1;
            *tally.by_kind.entry(self.kind).or_default() += 1;
            if during_recovery {
                tally.kills_during_recovery += 1;
            }
            self.remember_entries().await;
            eprintln!(
                "[{}] kill {}: after {ran:?} at progress {written} of {} (target {target}), {left} row(s) left{}",
                self.s.name,
                tally.kills,
                self.full_progress(),
                if during_recovery {
                    ", during a recovery"
                } else {
                    ""
                }
            );
            return true;
        }
        false
    }

    /// Three children drain the queue at once; one (drawn) is killed at a drawn point, the others
    /// finish what they can.
    async fn kill_one_of_three(&mut self, rng: &mut SplitMix, tally: &mut Tally) -> bool {
        let start = self.progress().await;
        let full = self.reachable_progress().await;
        if start + 2 > full {
            return false;
        }
        let during_recovery = self.marked_rows().await > 0;
        let target = start + rng.range(1, (full - start) / 2 + 1);
        let victim = rng.range(0, 3) as usize;
        let mut children: Vec<ChildRun> = (0..3).map(|_| ChildRun::spawn(&self.request)).collect();
        let end = Instant::now() + KILL_POINT_TIMEOUT;
        let mut reached = false;
        while Instant::now() < end {
            if children[victim].exited() {
                break;
            }
            if self.progress().await >= target {
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let finished = children[victim].exited();
        let ran = children[victim].kill();
        let left_at_kill = self.rows_left().await;
        for (i, c) in children.iter_mut().enumerate() {
            if i != victim {
                c.finish(Duration::from_secs(120)).await;
                assert!(
                    c.printed("CHILD-DONE"),
                    "[{}] a surviving engine failed:\n{}",
                    self.s.name,
                    c.output()
                );
            }
        }
        if finished || !reached || left_at_kill == 0 {
            tally.misses += 1;
            eprintln!("[{}] a draw missed: the victim finished first", self.s.name);
            return !finished;
        }
        self.s.settle().await;
        let written = self.progress().await;
        assert!(
            written > start && left_at_kill > 0,
            "[{}] the kill landed mid-run: progress {start} -> {written}, {left_at_kill} row(s) left",
            self.s.name
        );
        tally.kills += 1;
        *tally.by_kind.entry(self.kind).or_default() += 1;
        if during_recovery {
            tally.kills_during_recovery += 1;
        }
        self.remember_entries().await;
        eprintln!(
            "[{}] kill {}: engine {victim} of three after {ran:?}, the others finished; {} row(s) left to the victim's claims",
            self.s.name,
            tally.kills,
            self.rows_left().await
        );
        true
    }

    /// Records the entryUUID of every object entry now in the directory.
    async fn remember_entries(&mut self) {
        let strangers: BTreeSet<String> = self
            .strangers
            .iter()
            .map(|(_, dn, _)| dn.to_lowercase())
            .collect();
        let people = format!("ou=people,{}", self.suffix.to_lowercase());
        let groups = format!("ou=groups,{}", self.suffix.to_lowercase());
        for (dn, uuid) in self.s.entry_uuids().await {
            if (dn.ends_with(&people) || dn.ends_with(&groups))
                && dn != people
                && dn != groups
                && !strangers.contains(&dn)
            {
                self.seen.entry(dn).or_insert(uuid);
            }
        }
    }

    /// Sometimes (always, until one was placed, from the tenth kill on) puts an unrelated entry where
    /// a claimed Create (or a staged rename) goes.
    async fn maybe_place_stranger(&mut self, rng: &mut SplitMix, tally: &mut Tally) {
        let overdue = tally.strangers_refused == 0 && tally.kills >= 10;
        if rng.range(0, 3) != 0 && !overdue {
            return;
        }
        let present: BTreeSet<String> = self.s.entry_uuids().await.into_keys().collect();
        let candidates: Vec<(Uuid, String)> = match &self.staged {
            None => {
                let executing: BTreeSet<Uuid> = sqlx::query_scalar(
                    r#"SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "Status" = 2"#,
                )
                .bind(self.s.system())
                .fetch_all(&self.s.env.db.pool)
                .await
                .expect("read executing rows")
                .into_iter()
                .collect();
                let seeded = &self.s.env.seeded;
                // Not on the manager chain of a user a stranger already blocks: a user whose
                // manager's Create is refused is deferred (no error), again on every run, so its
                // own refusal would never show.
                let managers = |i: usize| {
                    std::iter::successors(seeded.user(i).and_then(|u| u.values.manager), |&m| {
                        seeded.user(m).and_then(|u| u.values.manager)
                    })
                };
                let blocked: BTreeSet<usize> = (0..seeded.users())
                    .filter(|&i| {
                        seeded.user(i).is_some_and(|u| {
                            self.strangers
                                .iter()
                                .any(|(e, _, _)| *e == u.ids.pending_export)
                        })
                    })
                    .collect();
                (0..seeded.users())
                    .filter(|&i| {
                        !managers(i).any(|m| blocked.contains(&m))
                            && !blocked.iter().any(|&b| managers(b).any(|m| m == i))
                    })
                    .filter_map(|i| seeded.user(i))
                    .filter(|u| executing.contains(&u.ids.pending_export))
                    .filter(|u| !present.contains(&u.dn.to_lowercase()))
                    .map(|u| (u.ids.pending_export, u.dn.clone()))
                    .collect()
            }
            Some(st) => {
                let mut out = Vec::new();
                for e in st.of_kind(FollowUpKind::Rename) {
                    let Some(new_dn) = &e.new_dn else { continue };
                    if e.new_dn.as_deref().is_some_and(|n| n.contains("ou=Alumni")) {
                        continue;
                    }
                    if !present.contains(&new_dn.to_lowercase())
                        && present.contains(&e.dn.to_lowercase())
                        && self.exported_of(&[e.pending_export_id]).await == 0
                    {
                        out.push((e.pending_export_id, new_dn.clone()));
                    }
                }
                out
            }
        };
        if candidates.is_empty() {
            return;
        }
        let (export, dn) = candidates[rng.range(0, candidates.len() as u64) as usize].clone();
        let rdn = dn.split(',').next().unwrap_or_default();
        let (attr, value) = rdn.split_once('=').unwrap_or(("uid", "stranger"));
        let mut attrs: Vec<(&str, std::collections::HashSet<&str>)> = vec![
            ("objectClass", ["inetOrgPerson"].into()),
            ("sn", ["Stranger"].into()),
            (
                "description",
                ["placed by the chaos test, not JIM's"].into(),
            ),
        ];
        if attr.eq_ignore_ascii_case("cn") {
            attrs.push(("cn", [value].into()));
        } else {
            attrs.push((attr, [value].into()));
            attrs.push(("cn", ["A Stranger"].into()));
        }
        let r = self.ldap.add(&dn, attrs).await.expect("add a stranger");
        assert_eq!(r.rc, 0, "[{}] placing a stranger at {dn}: {r}", self.s.name);
        let uuid = self
            .s
            .entry_uuids()
            .await
            .get(&dn.to_lowercase())
            .cloned()
            .expect("the stranger's entryUUID");
        eprintln!("[{}] a stranger is placed at {dn}", self.s.name);
        self.strangers.push((export, dn, uuid));
        self.exempt.insert(export);
        tally.strangers_refused += 1;
    }

    /// Draws the way back after a kill: one not taken yet in this run while there is one, so that every
    /// run takes each (the lease runs out once per run: it costs its ten seconds), then any but the
    /// lease.
    fn draw_way_back(&self, rng: &mut SplitMix, tally: &Tally, last: bool) -> WayBack {
        let taken = |w: WayBack| tally.ways.get(&w).copied().unwrap_or(0) > 0;
        let untaken: Vec<WayBack> = [
            WayBack::OperatorRelease,
            WayBack::Lease,
            WayBack::CancelledRecovery,
            WayBack::BreakerRecovery,
        ]
        .into_iter()
        .filter(|w| !taken(*w))
        .collect();
        if !untaken.is_empty() {
            return rng.pick(&untaken);
        }
        let mut ways = vec![
            WayBack::OperatorRelease,
            WayBack::CancelledRecovery,
            WayBack::BreakerRecovery,
        ];
        if !last && self.kind != Kind::ThreeEngines {
            ways.push(WayBack::None);
        }
        rng.pick(&ways)
    }

    async fn way_back(&mut self, way: WayBack, tally: &mut Tally) {
        *tally.ways.entry(way).or_default() += 1;
        eprintln!("[{}] way back: {way:?}", self.s.name);
        match way {
            WayBack::OperatorRelease => self.operator_release().await,
            WayBack::Lease => {
                tally.leases_waited += 1;
                self.s.wait_for_lease().await;
            }
            WayBack::CancelledRecovery => {
                self.operator_release().await;
                self.interrupted_recovery(false).await;
            }
            WayBack::BreakerRecovery => {
                self.operator_release().await;
                self.interrupted_recovery(true).await;
            }
            WayBack::None => {}
        }
        self.assert_marks_kept().await;
    }

    /// The operator's call: every row left `Executing` goes back to Pending (keeping its mark).
    async fn operator_release(&self) {
        let engine = Engine::new();
        engine
            .release_stranded(&self.request.database, self.s.system(), Duration::ZERO)
            .await
            .expect("release stranded rows");
    }

    /// A recovery run in this process that is cancelled at its first batch report, or whose
    /// directory goes away then (every connection refused: the breaker ends the run).
    async fn interrupted_recovery(&mut self, directory_goes: bool) {
        // Through the latency proxies, as the children run, so the run is still going when it is
        // interrupted.
        let mut request = self.request.clone();
        if directory_goes {
            request.directory.operation_timeout_ms = 500;
            request.directory.connect_timeout_ms = 500;
            request.options.max_operation_retries = 0;
        }
        let cancel = CancellationToken::new();
        let events = Arc::new(Events::default());
        let listener = Arc::new(Interrupt {
            events: events.clone(),
            cancel: (!directory_goes).then(|| cancel.clone()),
            proxy: directory_goes.then(|| self.s.ldap_proxy.handle()),
            fired: AtomicBool::new(false),
        });
        let outcome = Engine::new()
            .run_export(&request, listener.clone(), cancel)
            .await;
        self.s.ldap_proxy.refuse_new(false);
        match (&outcome, directory_goes) {
            (Ok(r), false) => eprintln!("[{}] cancelled recovery: {}", self.s.name, r.message),
            (Err(e), true) => eprintln!("[{}] recovery stopped: {e}", self.s.name),
            (Ok(r), true) => eprintln!(
                "[{}] recovery finished before its directory went: {}",
                self.s.name, r.message
            ),
            (Err(e), false) => panic!("[{}] a cancelled recovery failed: {e}", self.s.name),
        }
        // Exports the run failed because the directory went away count an error, rightly.
        for item in events.items() {
            if item.status == ItemStatus::Failed {
                self.exempt.insert(item.pending_export_id);
            }
        }
        assert_eq!(
            self.s.statuses().await.executing,
            0,
            "[{}] the interrupted recovery returned its claims",
            self.s.name
        );
        self.remember_entries().await;
    }

    /// Every row a killed run claimed and did not finish still carries the engine's mark after the
    /// way back, so its next attempt reads the directory first.
    async fn assert_marks_kept(&self) {
        let rows = sqlx::query(
            r#"SELECT "Id", "Status", "LastErrorStackTrace" FROM "PendingExports"
               WHERE "ConnectedSystemId" = $1 AND "Status" IN (0, 2) AND "LastAttemptedAt" IS NOT NULL"#,
        )
        .bind(self.s.system())
        .fetch_all(&self.s.env.db.pool)
        .await
        .expect("read attempted rows");
        for row in rows {
            let trace: Option<String> = row.get(2);
            let deferred_only = trace.is_none();
            // A row that was only ever deferred (nothing sent) has no mark; every other attempted
            // row that is not final must keep one.
            if deferred_only {
                continue;
            }
            assert!(
                trace.as_deref().and_then(Marker::parse).is_some(),
                "[{}] row {} lost the mark: {trace:?}",
                self.s.name,
                row.get::<Uuid, _>(0)
            );
        }
    }

    /// The strangers' exports were refused (never Exported, the error naming the DN), their entries
    /// left as they were, and no CSO took a stranger's entryUUID as its anchor.
    async fn check_strangers_refused(&self, _tally: &mut Tally) {
        let uuids = self.s.entry_uuids().await;
        for (export, dn, uuid) in &self.strangers {
            assert_eq!(
                uuids.get(&dn.to_lowercase()),
                Some(uuid),
                "[{}] the stranger at {dn} is still the same entry",
                self.s.name
            );
            let row = sqlx::query(
                r#"SELECT "Status", "ErrorCount", "LastErrorMessage" FROM "PendingExports" WHERE "Id" = $1"#,
            )
            .bind(export)
            .fetch_one(&self.s.env.db.pool)
            .await
            .expect("read the refused export");
            let (status, errors, message): (i32, i32, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            let message = message.unwrap_or_default();
            assert!(
                status != EXPORTED && errors > 0,
                "[{}] the export meant for {dn} was refused ({status}, {errors} errors)",
                self.s.name
            );
            assert!(
                message.contains("entryAlreadyExists")
                    && message.to_lowercase().contains(&dn.to_lowercase()),
                "[{}] the refusal names the DN: {message}",
                self.s.name
            );
            let description = self
                .s
                .env
                .slapd
                .read_entry(dn, &["description"])
                .await
                .expect("read the stranger")
                .and_then(|e| e.attrs.get("description").cloned())
                .unwrap_or_default();
            assert_eq!(
                description,
                vec!["placed by the chaos test, not JIM's".to_string()],
                "[{}] the stranger at {dn} was not written",
                self.s.name
            );
            let anchored: i64 = sqlx::query_scalar(
                r#"SELECT count(*) FROM "ConnectedSystemObjectAttributeValues" v
                   JOIN "ConnectedSystemObjects" o ON o."Id" = v."ConnectedSystemObjectId"
                   WHERE o."ConnectedSystemId" = $1 AND (v."StringValue" = $2 OR v."GuidValue"::text = $2)"#,
            )
            .bind(self.s.system())
            .bind(uuid)
            .fetch_one(&self.s.env.db.pool)
            .await
            .expect("look for the stranger's anchor");
            assert_eq!(
                anchored, 0,
                "[{}] no CSO took the stranger's anchor",
                self.s.name
            );
        }
        eprintln!(
            "[{}] {} stranger(s) refused and left untouched",
            self.s.name,
            self.strangers.len()
        );
    }

    /// The operator removes the strangers and makes their exports due; the engine converges them.
    async fn remove_strangers_and_converge(&mut self) -> Vec<(RunResult, Arc<Events>)> {
        for (_, dn, _) in &self.strangers {
            let r = self.ldap.delete(dn).await.expect("delete a stranger");
            assert_eq!(r.rc, 0, "{r}");
        }
        Engine::new()
            .reset_failed(&self.request.database, self.s.system())
            .await
            .expect("reset failed exports");
        self.s.converge_now(&self.request).await
    }

    /// Every object entry seen after a kill is still the same entry (the same entryUUID): a crash
    /// never made the engine delete and create an object again.
    async fn assert_same_entries(&self) {
        if self.staged.is_some() {
            // Follow-ups rename, move and delete entries on purpose.
            return;
        }
        let now = self.s.entry_uuids().await;
        for (dn, uuid) in &self.seen {
            assert_eq!(
                now.get(dn),
                Some(uuid),
                "[{}] {dn} is the entry a killed run created",
                self.s.name
            );
        }
    }
}

/// A recovery run's listener: at the first batch report it cancels the run, or makes the directory
/// go away (every connection dropped and new ones refused).
struct Interrupt {
    events: Arc<Events>,
    cancel: Option<CancellationToken>,
    proxy: Option<ProxyHandle>,
    fired: AtomicBool,
}

impl RunListener for Interrupt {
    fn on_progress(&self, event: &jim_export::report::ProgressEvent) {
        self.events.on_progress(event);
    }

    fn on_batch(&self, report: &BatchReport) {
        self.events.on_batch(report);
        if !self.fired.swap(true, Ordering::SeqCst) {
            if let Some(c) = &self.cancel {
                c.cancel();
            }
            if let Some(p) = &self.proxy {
                p.refuse_new(true);
                p.drop_connections();
            }
        }
    }

    fn on_log(&self, record: &jim_export::engine::LogRecord) {
        self.events.on_log(record);
    }
}
