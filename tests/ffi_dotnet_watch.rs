//! The .NET binding's continuous export: `bindings/dotnet/tests/WatchTests.cs`, compiled with Mono's
//! `mcs` (C# 7.2) against the binding and run under `mono` with the native library, a throwaway
//! PostgreSQL and slapd. The program installs the notifying trigger, starts `WatchAsync` on an empty
//! queue and signals it runs; this test then stages pending exports (as JIM does, in one transaction);
//! the program waits for their batch reports, stops the watch through its CancellationToken and removes
//! the trigger. Afterwards the directory and database state is checked here.

use std::process::Command;
use std::time::{Duration, Instant};

use jim_export::model::PendingExportStatus;
use jim_export_testkit::seed::Template;
use jim_export_testkit::support::engine::Env;
use jim_export_testkit::support::ffi::{compile_dotnet, json, library_dir, run, scratch};
use jim_export_testkit::support::watch::{park_all, stage, user_exports, wait_for_status};
use tokio::runtime::Runtime;

#[test]
fn the_dotnet_binding_watches_installs_the_trigger_and_stops() {
    let dir = scratch("dotnet-watch");
    let exe = compile_dotnet(&dir, "WatchTests");
    let rt = Runtime::new().unwrap();
    let env = rt.block_on(Env::new(Template::Micro));
    rt.block_on(park_all(&env.db.pool, env.seeded.connected_system_id()));
    let users = user_exports(&env.seeded);
    let staged: Vec<_> = users[0..4].iter().map(|(id, _)| *id).collect();
    let marker = dir.join("watching");

    let mut mono = Command::new("mono");
    mono.arg("--debug")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", library_dir())
        .env("JIM_DOTNET_WATCH_DB", &env.db.url)
        .env(
            "JIM_DOTNET_WATCH_SYSTEM",
            env.seeded.connected_system_id().to_string(),
        )
        .env("JIM_DOTNET_WATCH_LDAP_URL", env.slapd.ldap_url())
        .env("JIM_DOTNET_WATCH_BIND_DN", env.slapd.admin_dn())
        .env("JIM_DOTNET_WATCH_PASSWORD", env.slapd.admin_password())
        .env("JIM_DOTNET_WATCH_MARKER", &marker)
        .env("JIM_DOTNET_WATCH_EXPECT", staged.len().to_string());
    let program = {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || run(mono, Duration::from_secs(300), &dir, "mono-WatchTests"))
    };

    // Stage once the program's watch runs (two rounds, each one transaction).
    let deadline = Instant::now() + Duration::from_secs(240);
    while !marker.exists() && !program.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the Mono program never started its watch"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if marker.exists() {
        rt.block_on(async {
            stage(&env.db.pool, &staged[0..1], None).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            stage(&env.db.pool, &staged[1..], None).await;
        });
    }
    let outcome = program.join().expect("the runner thread");
    eprintln!("{}", outcome.stdout);
    outcome.assert_success("the Mono watch program");
    assert!(outcome.stdout.contains("\nPASS"), "{}", outcome.stdout);
    assert!(!outcome.stdout.contains("not ok"), "{}", outcome.stdout);

    let result = json(outcome.line("WATCH"), "WATCH");
    assert_eq!(result["exports"], staged.len(), "{result}");
    assert!(rt.block_on(wait_for_status(
        &env.db.pool,
        &staged,
        PendingExportStatus::Exported.as_i32(),
        Duration::from_secs(5)
    )));
    assert_eq!(rt.block_on(env.executing()), 0);
    let directory = rt.block_on(env.directory());
    for (_, dn) in &users[0..4] {
        assert!(
            directory.entries.keys().any(|k| k.eq_ignore_ascii_case(dn)),
            "{dn} was written"
        );
    }
}
