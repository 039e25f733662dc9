//! The .NET binding (`bindings/dotnet/`) compiled with Mono's `mcs` (C# 7.2) and run under `mono`
//! against the native library, a throwaway PostgreSQL and slapd: a full export through a typed
//! request, cancellation through a CancellationToken, a throwing batch handler, bad input surfacing as
//! typed exceptions, a run on an engine disposed by another thread, and a clean process exit (the
//! program disposes its engines; without the native runtime's shutdown Mono would hang at exit and
//! the deadline below would fail the test). Afterwards the directory and database state each export
//! produced is checked here.

use std::process::Command;
use std::time::Duration;

use jim_export::model::{PendingExportChangeType, PendingExportStatus};
use jim_export_testkit::seed::Template;
use jim_export_testkit::support::engine::{Env, assert_directory_matches};
use jim_export_testkit::support::ffi::{compile_dotnet, json, library_dir, run, scratch};
use tokio::runtime::Runtime;

#[test]
fn the_dotnet_binding_exports_cancels_reports_bad_input_and_exits_cleanly() {
    let dir = scratch("dotnet");
    let exe = compile_dotnet(&dir, "ExportTests");
    let rt = Runtime::new().unwrap();
    // Three systems: one exported in full, one cancelled twice (token, throwing handler), one whose
    // engine is disposed under a throttled run. The last gets its own queue so the two earlier
    // interruptions cannot leave it nothing to do.
    let (full, partial, slow) = rt.block_on(async {
        tokio::join!(
            Env::new(Template::Small),
            Env::new(Template::Small),
            Env::new(Template::Small)
        )
    });
    let objects = full.seeded.counts.pending_exports;
    let partial_objects = partial.seeded.counts.pending_exports;

    // The system to cancel: small pages, one operation in flight, so a cancel lands mid-queue.
    let mut cancel_request = serde_json::to_value(partial.request()).unwrap();
    cancel_request["options"]["page_size"] = 10.into();
    cancel_request["options"]["flush_size"] = 5.into();
    cancel_request["options"]["connections"] = 1.into();
    cancel_request["options"]["in_flight_per_connection"] = 1.into();
    let cancel_file = dir.join("cancel_request.json");
    std::fs::write(&cancel_file, cancel_request.to_string()).unwrap();
    // The same system throttled to 5 operations/s: still running when the engine is disposed under it.
    // The third system, as small-stepped and throttled to 5 operations/s: still running when the
    // engine is disposed under it (its 131 exports take half a minute at that rate).
    let mut slow_request = serde_json::to_value(slow.request()).unwrap();
    slow_request["options"] = cancel_request["options"].clone();
    slow_request["options"]["ops_per_second"] = 5.into();
    let slow_file = dir.join("slow_request.json");
    std::fs::write(&slow_file, slow_request.to_string()).unwrap();
    let unknown_request = serde_json::json!({
        "database": { "connection": full.db.url },
        "connected_system_id": 999_999,
        "directory": {
            "urls": [full.slapd.ldap_url()],
            "allow_password_without_tls": true,
            "bind": { "kind": "simple", "dn": full.slapd.admin_dn(), "password": full.slapd.admin_password() }
        }
    });
    let unknown_file = dir.join("unknown_request.json");
    std::fs::write(&unknown_file, unknown_request.to_string()).unwrap();

    // Ten rows of each interrupted system stay locked while the program runs: however late its
    // interruptions land, the runs cannot drain a queue (they claim with SKIP LOCKED).
    let (hold, held) = rt.block_on(partial.hold_rows(10));
    let (slow_hold, slow_held) = rt.block_on(slow.hold_rows(10));
    let mut mono = Command::new("mono");
    mono.arg("--debug")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", library_dir())
        .env("JIM_DOTNET_TEST_DB", &full.db.url)
        .env(
            "JIM_DOTNET_TEST_SYSTEM",
            full.seeded.connected_system_id().to_string(),
        )
        .env("JIM_DOTNET_TEST_OBJECTS", objects.to_string())
        .env("JIM_DOTNET_TEST_LDAP_URL", full.slapd.ldap_url())
        .env("JIM_DOTNET_TEST_BIND_DN", full.slapd.admin_dn())
        .env("JIM_DOTNET_TEST_PASSWORD", full.slapd.admin_password())
        .env("JIM_DOTNET_TEST_CANCEL_REQUEST", &cancel_file)
        .env(
            "JIM_DOTNET_TEST_CANCEL_OBJECTS",
            partial_objects.to_string(),
        )
        .env("JIM_DOTNET_TEST_SLOW_REQUEST", &slow_file)
        .env("JIM_DOTNET_TEST_UNKNOWN_REQUEST", &unknown_file);
    let outcome = run(mono, Duration::from_secs(600), &dir, "mono-ExportTests");
    rt.block_on(hold.rollback()).expect("release the held rows");
    rt.block_on(slow_hold.rollback())
        .expect("release the held rows");
    eprintln!("{}", outcome.stdout);
    outcome.assert_success(
        "the Mono test program (a hang at exit would have been killed at the deadline)",
    );
    assert!(outcome.stdout.contains("\nPASS"), "{}", outcome.stdout);
    assert!(!outcome.stdout.contains("not ok"), "{}", outcome.stdout);
    eprintln!(
        "the Mono program took {:.1} s",
        outcome.elapsed.as_secs_f64()
    );

    // The full export: the directory holds every seeded object; JIM's rows say Exported.
    let result = json(outcome.line("EXPORT"), "EXPORT");
    assert_eq!(result["success_count"], objects, "{result}");
    assert_directory_matches(
        &rt.block_on(full.directory()),
        &full.seeded.expected_directory().unwrap(),
    );
    let counts = rt.block_on(full.pending_export_counts());
    let exported_creates = (
        PendingExportStatus::Exported.as_i32(),
        PendingExportChangeType::Create.as_i32(),
    );
    assert_eq!(
        counts.get(&exported_creates),
        Some(&(objects as i64)),
        "{counts:?}"
    );
    assert_eq!(rt.block_on(full.executing()), 0);

    // The interrupted runs (token cancelled, handler threw, engine disposed): nothing stranded, each
    // export either Exported by one of them or back to Pending, and the directory holds exactly the
    // objects they wrote.
    let results = |labels: &[&str]| -> Vec<serde_json::Value> {
        labels
            .iter()
            .filter_map(|l| outcome.line(l).map(|_| json(outcome.line(l), l)))
            .collect()
    };
    let cancelled = results(&["CANCEL", "CALLBACK_FAILURE"]);
    assert_eq!(cancelled.len(), 2, "{}", outcome.stdout);
    assert_interrupted(&rt, &partial, &cancelled, &held);
    let disposed = results(&["DISPOSED"]);
    assert_eq!(disposed.len(), 1, "{}", outcome.stdout);
    assert_interrupted(&rt, &slow, &disposed, &slow_held);
}

/// What interrupted runs of one system leave: nothing `Executing`, each export `Exported` by one of
/// them or back to `Pending`, the held rows never claimed, one entry per export written.
fn assert_interrupted(
    rt: &Runtime,
    env: &Env,
    interrupted: &[serde_json::Value],
    held: &[uuid::Uuid],
) {
    assert!(
        interrupted.iter().all(|r| r["cancelled"] == true),
        "{interrupted:?}"
    );
    assert_eq!(rt.block_on(env.executing()), 0, "no row left Executing");
    let counts = rt.block_on(env.pending_export_counts());
    let exported: i64 = counts
        .iter()
        .filter(|((s, _), _)| *s == PendingExportStatus::Exported.as_i32())
        .map(|(_, n)| n)
        .sum();
    let pending: i64 = counts
        .iter()
        .filter(|((s, _), _)| *s == PendingExportStatus::Pending.as_i32())
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        (exported + pending) as u64,
        env.seeded.counts.pending_exports,
        "{counts:?}"
    );
    let fully_written: u64 = interrupted
        .iter()
        .map(|r| {
            r["success_count"].as_u64().unwrap() - r["partially_exported_count"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(exported as u64, fully_written, "{counts:?} {interrupted:?}");
    assert!(exported > 0, "{counts:?}");
    let untouched: i64 = rt.block_on(async {
        sqlx::query_scalar(
            r#"SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY($1) AND "Status" = 0
               AND "ErrorCount" = 0 AND "LastAttemptedAt" IS NULL"#,
        )
        .bind(held)
        .fetch_one(&env.db.pool)
        .await
        .unwrap()
    });
    assert_eq!(
        untouched,
        held.len() as i64,
        "the held rows were never claimed"
    );
    let written: i64 = rt.block_on(async {
        sqlx::query_scalar(
            r#"SELECT count(DISTINCT p."Id") FROM "PendingExports" p
               JOIN "PendingExportAttributeValueChanges" c ON c."PendingExportId" = p."Id"
               WHERE p."ConnectedSystemId" = $1 AND c."Status" = 1"#,
        )
        .bind(env.seeded.connected_system_id())
        .fetch_one(&env.db.pool)
        .await
        .unwrap()
    });
    assert_eq!(
        rt.block_on(env.directory()).len() as i64,
        written,
        "one entry per export written"
    );
}
