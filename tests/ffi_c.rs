//! The C ABI called the way a C host calls it (the `extern "C"` functions, raw pointers, C callbacks),
//! against real servers: a throwaway PostgreSQL with JIM's schema and seeded exports, and a throwaway
//! slapd. Each export asserts the directory and database state it produced, not only the result.
//!
//! The calls run on plain test threads, never inside a tokio runtime: a host thread, as in C or .NET.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::{null, null_mut};
use std::sync::Mutex;

use jim_export::ffi::c::{
    jim_callbacks, jim_cancel, jim_cancel_cancel, jim_cancel_free, jim_cancel_is_cancelled,
    jim_cancel_new, jim_engine, jim_engine_free, jim_engine_new, jim_engine_queue_summary,
    jim_engine_release_stranded, jim_engine_reset_failed, jim_engine_run, jim_log_level,
    jim_status, jim_string_free,
};
use jim_export::model::{PendingExportChangeType, PendingExportStatus};
use jim_export_testkit::Postgres;
use jim_export_testkit::seed::{self, SeedOptions, Template};
use jim_export_testkit::support::engine::{Env, assert_directory_matches};
use serde_json::Value;
use tokio::runtime::Runtime;

type Answer = Result<Value, (jim_status, String)>;

/// Takes a library string.
fn take(s: *mut c_char) -> String {
    assert!(!s.is_null());
    // SAFETY: the library returned a NUL-terminated string.
    let owned = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    assert_eq!(jim_string_free(s), jim_status::Ok);
    owned
}

fn new_engine() -> *mut jim_engine {
    let options = CString::new(r#"{"worker_threads": 2}"#).unwrap();
    let mut engine = null_mut();
    // SAFETY: valid string and out-pointers.
    let status = unsafe { jim_engine_new(options.as_ptr(), &mut engine, null_mut()) };
    assert_eq!(status, jim_status::Ok);
    engine
}

fn run(
    engine: *const jim_engine,
    request: &Value,
    callbacks: Option<&jim_callbacks>,
    cancel: *const jim_cancel,
) -> Answer {
    let request = CString::new(request.to_string()).unwrap();
    let mut result = null_mut();
    let mut error = null_mut();
    // SAFETY: valid strings, callbacks and out-pointers that outlive the call.
    let status = unsafe {
        jim_engine_run(
            engine,
            request.as_ptr(),
            callbacks.map_or(null(), |c| c as *const jim_callbacks),
            cancel,
            &mut result,
            &mut error,
        )
    };
    if status == jim_status::Ok {
        Ok(serde_json::from_str(&take(result)).expect("the result is JSON"))
    } else {
        assert!(result.is_null());
        Err((status, take(error)))
    }
}

type OperatorFn = unsafe extern "C" fn(
    *const jim_engine,
    *const c_char,
    *mut *mut c_char,
    *mut *mut c_char,
) -> jim_status;

fn operator(call: OperatorFn, engine: *const jim_engine, request: &Value) -> Answer {
    let request = CString::new(request.to_string()).unwrap();
    let mut out = null_mut();
    let mut error = null_mut();
    // SAFETY: valid strings and out-pointers.
    let status = unsafe { call(engine, request.as_ptr(), &mut out, &mut error) };
    if status == jim_status::Ok {
        Ok(serde_json::from_str(&take(out)).expect("the answer is JSON"))
    } else {
        Err((status, take(error)))
    }
}

/// What the C callbacks received, and what they tried.
#[derive(Default)]
struct Recorder {
    engine: usize,
    cancel: usize,
    cancel_after_batches: usize,
    progress: Mutex<Vec<Value>>,
    batches: Mutex<Vec<Value>>,
    logs: Mutex<Vec<(u32, Value)>>,
    threads: Mutex<BTreeSet<String>>,
    /// Statuses of the calls a callback must not make (free and run on its own engine).
    reentry: Mutex<Vec<(&'static str, jim_status)>>,
}

impl Recorder {
    fn callbacks(&self) -> jim_callbacks {
        jim_callbacks {
            user_data: self as *const Recorder as *mut c_void,
            on_progress: Some(on_progress),
            on_batch: Some(on_batch),
            on_log: Some(on_log),
        }
    }

    fn items(&self) -> Vec<Value> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["items"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// # Safety
/// `user_data` is a live `Recorder`; `json` a NUL-terminated string of `len` bytes.
unsafe fn document(
    user_data: *mut c_void,
    json: *const c_char,
    len: usize,
) -> (&'static Recorder, Value) {
    // SAFETY: as documented; the recorder outlives the run.
    let (recorder, bytes) = unsafe {
        (
            &*(user_data as *const Recorder),
            CStr::from_ptr(json).to_bytes(),
        )
    };
    // A panic must not unwind into the library: record a marker instead.
    let value = if bytes.len() == len {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let name = std::thread::current().name().unwrap_or("").to_string();
    if let Ok(mut threads) = recorder.threads.lock() {
        threads.insert(name);
    }
    (recorder, value)
}

unsafe extern "C" fn on_progress(user_data: *mut c_void, json: *const c_char, len: usize) {
    // SAFETY: forwarded from the library's contract.
    let (recorder, value) = unsafe { document(user_data, json, len) };
    let first = match recorder.progress.lock() {
        Ok(mut p) => {
            p.push(value);
            p.len() == 1
        }
        Err(_) => false,
    };
    if first && recorder.engine != 0 {
        // Inside a callback, blocking calls on the engine are refused, not deadlocked.
        let engine: *mut jim_engine = std::ptr::without_provenance_mut(recorder.engine);
        let free = jim_engine_free(engine);
        let mut out = null_mut();
        // SAFETY: valid (static) strings and out-pointers.
        let run =
            unsafe { jim_engine_run(engine, c"{}".as_ptr(), null(), null(), &mut out, null_mut()) };
        if let Ok(mut r) = recorder.reentry.lock() {
            r.push(("jim_engine_free", free));
            r.push(("jim_engine_run", run));
        }
    }
}

unsafe extern "C" fn on_batch(user_data: *mut c_void, json: *const c_char, len: usize) {
    // SAFETY: forwarded from the library's contract.
    let (recorder, value) = unsafe { document(user_data, json, len) };
    let count = match recorder.batches.lock() {
        Ok(mut b) => {
            b.push(value);
            b.len()
        }
        Err(_) => 0,
    };
    if recorder.cancel_after_batches > 0 && count == recorder.cancel_after_batches {
        // Cancelling from inside a callback is allowed.
        let _ = jim_cancel_cancel(std::ptr::without_provenance(recorder.cancel));
    }
}

unsafe extern "C" fn on_log(
    user_data: *mut c_void,
    level: jim_log_level,
    json: *const c_char,
    len: usize,
) {
    // SAFETY: forwarded from the library's contract.
    let (recorder, value) = unsafe { document(user_data, json, len) };
    if let Ok(mut logs) = recorder.logs.lock() {
        logs.push((level as u32, value));
    }
}

fn request(env: &Env) -> Value {
    serde_json::to_value(env.request()).unwrap()
}

fn database_request(env: &Env) -> Value {
    serde_json::json!({
        "database": { "connection": env.db.url },
        "connected_system_id": env.seeded.connected_system_id(),
    })
}

#[test]
fn an_export_through_the_c_abi_writes_the_directory_and_reports_through_callbacks() {
    let rt = Runtime::new().unwrap();
    let env = rt.block_on(Env::new(Template::Small));
    let objects = env.seeded.counts.pending_exports;
    let engine = new_engine();
    let recorder = Recorder {
        engine: engine.addr(),
        ..Recorder::default()
    };
    let callbacks = recorder.callbacks();

    let result = run(engine, &request(&env), Some(&callbacks), null()).expect("the export runs");

    assert_eq!(result["total_pending_exports"], objects, "{result}");
    assert_eq!(result["success_count"], objects, "{result}");
    assert_eq!(result["failed_count"], 0);
    assert_eq!(result["deferred_count"], 0);
    assert_eq!(result["cancelled"], false);
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Export complete: {objects} succeeded")),
        "{result}"
    );
    assert!(result["metrics"]["operations"]["add"].as_u64().unwrap() >= objects);

    // The directory and JIM's database hold what the export did.
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

    // Callbacks: one batch item per export with its provenance, progress from Preparing to Completed,
    // log records whose level argument matches the document, all on the engine's worker threads.
    let items = recorder.items();
    assert_eq!(items.len() as u64, objects);
    assert!(
        items
            .iter()
            .all(|i| i["status"] == "succeeded" && i["object_change_type"] == "Exported")
    );
    assert!(
        items
            .iter()
            .all(|i| i["provisioned"] == true && i["source_metaverse_object_id"].is_string())
    );
    let ids: BTreeSet<&str> = items
        .iter()
        .filter_map(|i| i["pending_export_id"].as_str())
        .collect();
    assert_eq!(ids.len() as u64, objects, "one item per pending export");
    let sequences: Vec<u64> = recorder
        .batches
        .lock()
        .unwrap()
        .iter()
        .filter_map(|b| b["sequence"].as_u64())
        .collect();
    let mut sorted = sequences.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=sequences.len() as u64).collect::<Vec<_>>());
    let progress = recorder.progress.lock().unwrap();
    assert_eq!(
        progress.first().map(|p| p["phase"].clone()),
        Some("Preparing".into())
    );
    assert_eq!(
        progress.last().map(|p| p["phase"].clone()),
        Some("Completed".into())
    );
    assert_eq!(
        progress.last().map(|p| p["processed"].clone()),
        Some(objects.into())
    );
    let logs = recorder.logs.lock().unwrap();
    assert!(logs.iter().any(|(_, l)| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("MetricsCheckpoint"))
    }));
    let names = ["trace", "debug", "info", "warn", "error"];
    assert!(
        logs.iter()
            .all(|(level, l)| l["level"] == names[*level as usize]),
        "{logs:?}"
    );
    // Not only the run's own lines: the `tracing` events of the directory and the store too
    // (`options.log_level` absent: debug and above).
    for module in ["jim_export::directory", "jim_export::store"] {
        assert!(
            logs.iter()
                .any(|(_, l)| l["target"].as_str().is_some_and(|t| t.starts_with(module))),
            "no {module} event in {logs:?}"
        );
    }
    assert!(
        logs.iter()
            .any(|(level, l)| *level == jim_log_level::Debug as u32
                && l["message"].as_str().is_some_and(
                    |m| m.starts_with("connected system's schema loaded connected_system_id=")
                )),
        "{logs:?}"
    );
    let threads = recorder.threads.lock().unwrap();
    assert!(
        threads.iter().all(|t| t.starts_with("jim-export-")),
        "callbacks ran on {threads:?}"
    );
    assert_eq!(
        *recorder.reentry.lock().unwrap(),
        vec![
            ("jim_engine_free", jim_status::WrongThread),
            ("jim_engine_run", jim_status::WrongThread)
        ],
        "blocking calls inside a callback are refused"
    );

    // The queue summary through the ABI agrees with the database.
    let summary = operator(jim_engine_queue_summary, engine, &database_request(&env)).unwrap();
    assert_eq!(summary["total"], objects);
    assert_eq!(summary["executable"], 0);
    assert_eq!(summary["stranded_executing"], 0);
    let rows = summary["by_status"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{summary}");
    assert_eq!(rows[0]["status_name"], "Exported");
    assert_eq!(rows[0]["change_type_name"], "Create");
    assert_eq!(rows[0]["count"], objects);

    // A second run finds nothing to do.
    let again = run(engine, &request(&env), None, null()).unwrap();
    assert_eq!(again["total_pending_exports"], 0, "{again}");
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}

#[test]
fn an_unknown_connected_system_is_an_invalid_request_naming_it() {
    let rt = Runtime::new().unwrap();
    let db = rt.block_on(async {
        Postgres::shared()
            .await
            .unwrap()
            .jim_database()
            .await
            .unwrap()
    });
    let engine = new_engine();
    let request = serde_json::json!({
        "database": { "connection": db.url },
        "connected_system_id": 999_999,
        "directory": {
            "urls": ["ldap://127.0.0.1:1"],
            "allow_password_without_tls": true,
            "bind": { "kind": "simple", "dn": "cn=admin,dc=example,dc=org", "password": "ldap-secret" }
        }
    });
    let (status, message) = run(engine, &request, None, null()).unwrap_err();
    assert_eq!(status, jim_status::InvalidRequest, "{message}");
    assert!(
        message.contains("connected system 999999 does not exist"),
        "{message}"
    );
    assert!(!message.contains("ldap-secret"), "{message}");
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}

#[test]
fn a_cancel_handle_fired_mid_run_stops_the_run_and_strands_nothing() {
    let rt = Runtime::new().unwrap();
    let env = rt.block_on(Env::new(Template::Small));
    let objects = env.seeded.counts.pending_exports;
    let engine = new_engine();
    let mut cancel = null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { jim_cancel_new(&mut cancel) }, jim_status::Ok);
    let recorder = Recorder {
        cancel: cancel.addr(),
        cancel_after_batches: 1,
        ..Recorder::default()
    };
    let callbacks = recorder.callbacks();
    // Small pages and one operation in flight, so most of the queue is still unclaimed at the cancel.
    let mut request = request(&env);
    request["options"]["page_size"] = 10.into();
    request["options"]["flush_size"] = 5.into();
    request["options"]["connections"] = 1.into();
    request["options"]["in_flight_per_connection"] = 1.into();
    // Ten rows stay locked: however late the cancel lands, the run cannot drain the queue.
    let (hold, _held) = rt.block_on(env.hold_rows(10));

    let result = run(engine, &request, Some(&callbacks), cancel)
        .expect("a cancelled run still returns its result");
    rt.block_on(hold.rollback()).unwrap();
    assert_eq!(result["cancelled"], true, "{result}");
    let succeeded = result["success_count"].as_u64().unwrap();
    assert!(succeeded > 0 && succeeded < objects, "{result}");
    let mut fired = false;
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { jim_cancel_is_cancelled(cancel, &mut fired) },
        jim_status::Ok
    );
    assert!(fired);

    // Nothing is left Executing: what completed is Exported, the rest is back to Pending.
    assert_eq!(rt.block_on(env.executing()), 0);
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
        exported as u64,
        succeeded - result["partially_exported_count"].as_u64().unwrap()
    );
    assert_eq!((exported + pending) as u64, objects, "{counts:?}");
    // The directory holds exactly the objects the reports say were written.
    let items = recorder.items();
    assert_eq!(
        items.len() as u64,
        succeeded
            + result["failed_count"].as_u64().unwrap()
            + result["deferred_count"].as_u64().unwrap()
    );
    let written = items
        .iter()
        .filter(|i| i["status"] == "succeeded" || i["status"] == "partly_written")
        .count();
    assert_eq!(rt.block_on(env.directory()).len(), written);

    // The next run (a fresh handle) exports the rest.
    let rest = run(engine, &self::request(&env), None, null()).unwrap();
    assert_eq!(
        rest["success_count"].as_u64().unwrap() + exported as u64,
        objects,
        "{rest}"
    );
    assert_directory_matches(
        &rt.block_on(env.directory()),
        &env.seeded.expected_directory().unwrap(),
    );
    assert_eq!(jim_cancel_free(cancel), jim_status::Ok);
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}

#[test]
fn operator_calls_read_and_repair_the_queue() {
    let rt = Runtime::new().unwrap();
    let (db, seeded) = rt.block_on(async {
        let db = Postgres::shared()
            .await
            .unwrap()
            .jim_database()
            .await
            .unwrap();
        let options = SeedOptions::new(Template::Micro)
            .with_suffix("dc=example,dc=org")
            .with_directory("127.0.0.1", 389);
        let seeded = seed::seed(&db.pool, &options).await.unwrap();
        (db, seeded)
    });
    let cs = seeded.connected_system_id();
    let objects = seeded.counts.pending_exports as i64;
    let engine = new_engine();
    let base =
        serde_json::json!({ "database": { "connection": db.url }, "connected_system_id": cs });

    let summary = operator(jim_engine_queue_summary, engine, &base).unwrap();
    assert_eq!(summary["connected_system_id"], cs);
    assert_eq!(summary["total"], objects);
    assert_eq!(summary["executable"], objects);
    assert_eq!(summary["by_status"][0]["status_name"], "Pending");

    // Three rows stranded by a crashed run two hours ago, one claimed just now, two failed for good.
    rt.block_on(async {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(r#"SELECT "Id" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 ORDER BY "Id""#)
            .bind(cs)
            .fetch_all(&db.pool)
            .await
            .unwrap();
        sqlx::query(r#"UPDATE "PendingExports" SET "Status" = 2, "LastAttemptedAt" = now() - interval '2 hours' WHERE "Id" = ANY($1)"#)
            .bind(&ids[0..3])
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(r#"UPDATE "PendingExports" SET "Status" = 2, "LastAttemptedAt" = now() WHERE "Id" = $1"#)
            .bind(ids[3])
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(r#"UPDATE "PendingExports" SET "Status" = 3, "ErrorCount" = 5, "LastErrorMessage" = 'boom', "LastAttemptedAt" = now() WHERE "Id" = ANY($1)"#)
            .bind(&ids[4..6])
            .execute(&db.pool)
            .await
            .unwrap();
    });
    let mut with_lease = base.clone();
    with_lease["lease_seconds"] = 3600.into();
    let summary = operator(jim_engine_queue_summary, engine, &with_lease).unwrap();
    assert_eq!(summary["stranded_executing"], 3, "{summary}");
    assert!(summary["oldest_failure"].is_string(), "{summary}");

    let mut release = base.clone();
    release["older_than_seconds"] = 3600.into();
    assert_eq!(
        operator(jim_engine_release_stranded, engine, &release).unwrap(),
        serde_json::json!({ "released": 3 })
    );
    assert_eq!(
        operator(jim_engine_reset_failed, engine, &base).unwrap(),
        serde_json::json!({ "reset": 2 })
    );

    let (pending, executing, failed, errors): (i64, i64, i64, i64) = rt.block_on(async {
        sqlx::query_as(
            r#"SELECT count(*) FILTER (WHERE "Status" = 0), count(*) FILTER (WHERE "Status" = 2),
                      count(*) FILTER (WHERE "Status" = 3), count(*) FILTER (WHERE "ErrorCount" > 0 OR "LastErrorMessage" IS NOT NULL)
               FROM "PendingExports" WHERE "ConnectedSystemId" = $1"#,
        )
        .bind(cs)
        .fetch_one(&db.pool)
        .await
        .unwrap()
    });
    assert_eq!(
        (pending, executing, failed, errors),
        (objects - 1, 1, 0, 0),
        "the recent claim is kept"
    );
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}

#[test]
fn an_unreachable_directory_is_a_directory_error_and_strands_nothing() {
    let rt = Runtime::new().unwrap();
    let (db, seeded) = rt.block_on(async {
        let db = Postgres::shared()
            .await
            .unwrap()
            .jim_database()
            .await
            .unwrap();
        let options = SeedOptions::new(Template::Nano)
            .with_suffix("dc=example,dc=org")
            .with_directory("127.0.0.1", 1);
        let seeded = seed::seed(&db.pool, &options).await.unwrap();
        (db, seeded)
    });
    let engine = new_engine();
    let request = serde_json::json!({
        "database": { "connection": db.url },
        "connected_system_id": seeded.connected_system_id(),
        "directory": {
            "urls": ["ldap://127.0.0.1:1"],
            "connect_timeout_ms": 2000,
            "allow_password_without_tls": true,
            "bind": { "kind": "simple", "dn": "cn=admin,dc=example,dc=org", "password": "ldap-secret" }
        }
    });
    let (status, message) = run(engine, &request, None, null()).unwrap_err();
    assert_eq!(status, jim_status::Directory, "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("ldap-secret"), "{message}");
    let executing: i64 = rt.block_on(async {
        sqlx::query_scalar(r#"SELECT count(*) FROM "PendingExports" WHERE "Status" = 2"#)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    });
    assert_eq!(executing, 0);
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}

/// Secure by default through the C ABI: a simple bind's password over `ldap://` without TLS is
/// refused (naming the field and the opt-in, without the secret) unless the request allows it, and
/// then every run logs a warning through `on_log`; the database connection whose TLS is not verified
/// (the test cluster's URL has no sslmode: libpq's `prefer`) is warned about once per engine. The
/// runs are dry runs: they write nothing.
#[test]
fn a_password_without_tls_is_refused_unless_allowed_and_then_every_run_warns() {
    let rt = Runtime::new().unwrap();
    let env = rt.block_on(Env::new(Template::Nano));
    let engine = new_engine();
    let mut clear = request(&env);
    clear["directory"]
        .as_object_mut()
        .unwrap()
        .remove("allow_password_without_tls");
    clear["options"]["dry_run"] = true.into();
    let (status, message) = run(engine, &clear, None, null()).unwrap_err();
    assert_eq!(status, jim_status::InvalidRequest, "{message}");
    assert!(
        message.contains("directory.bind") && message.contains("allow_password_without_tls"),
        "{message}"
    );
    assert!(!message.contains(env.slapd.admin_password()), "{message}");

    clear["directory"]["allow_password_without_tls"] = true.into();
    let warnings = |recorder: &Recorder, text: &str| -> usize {
        recorder
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|(level, record)| {
                *level == jim_log_level::Warn as u32
                    && record["message"].as_str().unwrap_or("").contains(text)
            })
            .count()
    };
    // The second run asks for warnings and errors only.
    let runs: Vec<Recorder> = (0..2)
        .map(|i| {
            let recorder = Recorder::default();
            let mut request = clear.clone();
            if i == 1 {
                request["options"]["log_level"] = "warn".into();
            }
            run(engine, &request, Some(&recorder.callbacks()), null()).expect("an allowed dry run");
            recorder
        })
        .collect();
    for recorder in &runs {
        assert_eq!(warnings(recorder, "sent in clear"), 1, "every run warns");
    }
    let levels = |recorder: &Recorder| -> BTreeSet<u32> {
        recorder
            .logs
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| *l)
            .collect()
    };
    assert!(
        levels(&runs[0]).contains(&(jim_log_level::Debug as u32)),
        "debug records by default"
    );
    assert!(
        levels(&runs[1])
            .iter()
            .all(|l| *l >= jim_log_level::Warn as u32),
        "{:?}",
        runs[1].logs.lock().unwrap()
    );
    let unverified = "does not verify the server's certificate";
    assert_eq!(warnings(&runs[0], unverified), 1, "the first run warns");
    assert_eq!(warnings(&runs[1], unverified), 0, "once per engine");
    assert_eq!(jim_engine_free(engine), jim_status::Ok);

    // A new engine warns about the database once again.
    let engine = new_engine();
    let recorder = Recorder::default();
    run(engine, &clear, Some(&recorder.callbacks()), null()).expect("an allowed dry run");
    assert_eq!(warnings(&recorder, unverified), 1);
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}
