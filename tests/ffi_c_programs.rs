//! C programs against the generated header, built with `gcc -Wall -Wextra -Werror` and run as child
//! processes: the C host (`examples/c/export_host.c`) exports against a throwaway PostgreSQL and slapd,
//! linked once with the shared library (run under valgrind) and once with the static one; the misuse
//! tests (`examples/c/misuse.c`) run plain, static and under valgrind. Each export asserts the
//! directory and database state it produced.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jim_export::model::{PendingExportChangeType, PendingExportStatus};
use jim_export_testkit::seed::Template;
use jim_export_testkit::support::engine::{Env, assert_directory_matches};
use jim_export_testkit::support::ffi::{
    Link, compile_c, counters, json, run, scratch, valgrind_args,
};
use tokio::runtime::Runtime;

/// Writes the host's two request files for `env`.
fn request_files(env: &Env, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let request = dir.join("request.json");
    let summary = dir.join("summary_request.json");
    std::fs::write(&request, serde_json::to_string(&env.request()).unwrap()).unwrap();
    let summary_request = serde_json::json!({
        "database": { "connection": env.db.url },
        "connected_system_id": env.seeded.connected_system_id(),
    });
    std::fs::write(&summary, summary_request.to_string()).unwrap();
    (request, summary)
}

/// Runs the C host linked as `link` (under valgrind when asked) and checks the export it did.
fn host_exports(link: Link, valgrind: bool) {
    let dir = scratch(&format!("c-host-{link:?}"));
    let exe = compile_c("export_host", link, &dir);
    let rt = Runtime::new().unwrap();
    let env = rt.block_on(Env::new(Template::Small));
    let objects = env.seeded.counts.pending_exports;
    let (request, summary) = request_files(&env, &dir);

    let mut command = if valgrind {
        let mut c = Command::new("valgrind");
        c.args(valgrind_args()).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    command.arg(&request).arg(&summary);
    let outcome = run(command, Duration::from_secs(600), &dir, "export_host");
    outcome.assert_success(&format!("export_host ({link:?}, valgrind: {valgrind})"));
    eprintln!(
        "export_host ({link:?}, valgrind: {valgrind}) took {:.1} s",
        outcome.elapsed.as_secs_f64()
    );

    // What the host printed.
    assert!(
        outcome
            .line("VERSION")
            .is_some_and(|v| v.starts_with(env!("CARGO_PKG_VERSION"))),
        "{}",
        outcome.stdout
    );
    let result = json(outcome.line("RESULT"), "RESULT");
    assert_eq!(result["success_count"], objects, "{result}");
    assert_eq!(result["failed_count"], 0, "{result}");
    assert_eq!(result["cancelled"], false);
    let events = counters(outcome.line("EVENTS"));
    assert_eq!(events.get("items"), Some(&objects), "{events:?}");
    assert_eq!(events.get("completed"), Some(&1), "{events:?}");
    assert!(
        events
            .get("batches")
            .is_some_and(|b| *b >= 1 && Some(b) == events.get("max_sequence")),
        "{events:?}"
    );
    assert!(events.get("logs").is_some_and(|l| *l > 0), "{events:?}");
    let queue = json(outcome.line("QUEUE"), "QUEUE");
    assert_eq!(queue["total"], objects, "{queue}");
    assert_eq!(queue["executable"], 0, "{queue}");

    // What the export did to the directory and to JIM's database.
    assert_directory_matches(
        &rt.block_on(env.directory()),
        &env.seeded.expected_directory().unwrap(),
    );
    let counts = rt.block_on(env.pending_export_counts());
    let exported_creates = (
        PendingExportStatus::Exported.as_i32(),
        PendingExportChangeType::Create.as_i32(),
    );
    assert_eq!(
        counts.get(&exported_creates),
        Some(&(objects as i64)),
        "{counts:?}"
    );
    assert_eq!(rt.block_on(env.executing()), 0);
}

#[test]
fn the_c_host_exports_through_the_shared_library_under_valgrind() {
    host_exports(Link::Shared, true);
}

#[test]
fn the_c_host_exports_through_the_static_library() {
    host_exports(Link::Static, false);
}

#[test]
fn c_misuse_returns_errors_and_never_crashes_or_leaks() {
    let dir = scratch("c-misuse");
    for link in [Link::Shared, Link::Static] {
        let exe = compile_c("misuse", link, &dir);
        let outcome = run(
            Command::new(&exe),
            Duration::from_secs(120),
            &dir,
            &format!("misuse-{link:?}"),
        );
        outcome.assert_success(&format!("misuse ({link:?})"));
        assert!(!outcome.stdout.contains("not ok"), "{}", outcome.stdout);
        assert!(
            outcome
                .stdout
                .lines()
                .filter(|l| l.starts_with("ok "))
                .count()
                > 50,
            "{}",
            outcome.stdout
        );
        if link == Link::Shared {
            let mut valgrind = Command::new("valgrind");
            valgrind.args(valgrind_args()).arg(&exe);
            let checked = run(valgrind, Duration::from_secs(600), &dir, "misuse-valgrind");
            checked.assert_success("misuse under valgrind");
            assert!(!checked.stdout.contains("not ok"), "{}", checked.stdout);
            eprintln!(
                "misuse under valgrind took {:.1} s",
                checked.elapsed.as_secs_f64()
            );
        }
    }
}
