//! The C ABI called as a C host calls it, without servers: versions, the committed header, handles,
//! misuse, runtime shutdown, threads and cancellation plumbing. Runs against real servers are in
//! `tests/ffi_c*.rs`.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, c_char};
use std::net::TcpListener;
use std::ptr::{null, null_mut};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::engine::live_threads;
use super::*;

const HEADER: &str = include_str!("../../../include/jim_export.h");

/// Takes a string the library returned, checking it frees exactly once.
fn take(s: *mut c_char) -> String {
    assert!(!s.is_null());
    // SAFETY: the library returned a NUL-terminated string.
    let owned = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string();
    assert_eq!(jim_string_free(s), jim_status::Ok);
    owned
}

fn new_engine(options: Option<&str>) -> Result<*mut jim_engine, (jim_status, String)> {
    let options = options.map(|o| CString::new(o).unwrap());
    let mut engine: *mut jim_engine = null_mut();
    let mut error: *mut c_char = null_mut();
    // SAFETY: valid strings and out-pointers.
    let status = unsafe {
        jim_engine_new(
            options.as_ref().map_or(null(), |o| o.as_ptr()),
            &mut engine,
            &mut error,
        )
    };
    if status == jim_status::Ok {
        assert!(error.is_null(), "no message on success");
        Ok(engine)
    } else {
        assert!(engine.is_null(), "no engine on failure");
        Err((status, take(error)))
    }
}

/// Calls `jim_engine_run` with a string argument; returns the status and the result or message.
fn run(
    engine: *const jim_engine,
    request: &[u8],
    cancel: *const jim_cancel,
) -> (jim_status, String) {
    let request = CString::new(request).unwrap();
    let sentinel = std::ptr::dangling_mut::<c_char>();
    let mut result = sentinel;
    let mut error = sentinel;
    // SAFETY: valid strings and out-pointers.
    let status = unsafe {
        jim_engine_run(
            engine,
            request.as_ptr(),
            null(),
            cancel,
            &mut result,
            &mut error,
        )
    };
    if status == jim_status::Ok {
        assert_eq!(error, sentinel, "out_error untouched on success");
        (status, take(result))
    } else {
        assert_eq!(result, sentinel, "out_result_json untouched on failure");
        (status, take(error))
    }
}

fn request(database_url: &str, connect_timeout_ms: u64) -> String {
    serde_json::json!({
        "database": { "connection": database_url, "connect_timeout_ms": connect_timeout_ms },
        "connected_system_id": 1,
        "directory": {
            "urls": ["ldap://127.0.0.1:1"],
            "allow_password_without_tls": true,
            "bind": { "kind": "simple", "dn": "cn=admin,dc=example,dc=org", "password": "ldap-secret" }
        }
    })
    .to_string()
}

#[test]
fn version_strings() {
    // SAFETY: jim_version returns a pointer to a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(jim_version()) };
    assert_eq!(v.to_str().unwrap(), crate::VERSION);
    assert_eq!(jim_abi_version(), JIM_EXPORT_ABI_VERSION);
}

#[test]
fn committed_header_is_fresh() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/jim_export.h"));
    assert!(
        generated == HEADER,
        "include/jim_export.h is stale: regenerate it with `JIM_EXPORT_WRITE_HEADER=1 cargo build` and commit it"
    );
}

#[test]
fn header_version_matches_cargo() {
    let expected = [
        ("JIM_EXPORT_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("JIM_EXPORT_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("JIM_EXPORT_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ];
    for (name, value) in expected {
        let line = format!("#define {name} {value}\n");
        assert!(
            HEADER.contains(&line),
            "{name} in src/ffi/c/mod.rs must be {value} (Cargo.toml's version)"
        );
    }
    assert!(HEADER.contains(&format!(
        "#define JIM_EXPORT_ABI_VERSION {JIM_EXPORT_ABI_VERSION}\n"
    )));
    for status in jim_status::ALL {
        assert!(
            HEADER.contains(&format!("  {} = {},\n", status.name(), status as u32)),
            "{status:?}"
        );
    }
}

/// Every member of every JSON document the library produces or accepts is described in the header.
#[test]
fn header_documents_every_json_member() {
    use crate::config::ExportRequest;
    use crate::engine::{LogLevel, LogRecord};
    use crate::model::{
        ActivityRunProfileExecutionItemErrorType, ConnectedSystemExportErrorType, ExportPhase,
        ObjectChangeType, PendingExportChangeType,
    };
    use crate::report::{
        AnchorChange, BatchReport, ItemStatus, ProgressEvent, ReportItem, RunMetrics, RunResult,
    };

    fn keys(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.insert(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    let now = chrono::Utc::now();
    let result = RunResult {
        connected_system_id: 1,
        dry_run: false,
        started_at: now,
        completed_at: now,
        total_pending_exports: 0,
        success_count: 0,
        failed_count: 0,
        deferred_count: 0,
        partially_exported_count: 0,
        unresolvable_reference_count: 0,
        reconciled_count: 0,
        created_container_external_ids: vec![],
        optimistic_apply_applied_count: 0,
        optimistic_apply_skipped_count: 0,
        optimistic_apply_failed_count: 0,
        optimistic_apply_unresolved_reference_count: 0,
        cancelled: false,
        message: String::new(),
        dialect: None,
        metrics: RunMetrics::default(),
    };
    let progress = ProgressEvent {
        connected_system_id: 1,
        phase: ExportPhase::Executing,
        total: 0,
        processed: 0,
        succeeded: 0,
        failed: 0,
        deferred: 0,
        rate: 0.0,
        in_flight: 0,
        in_flight_limit: 0,
        elapsed_ms: 0,
        message: String::new(),
    };
    let batch = BatchReport {
        connected_system_id: 1,
        sequence: 1,
        items: vec![ReportItem {
            pending_export_id: uuid::Uuid::nil(),
            change_type: PendingExportChangeType::Create,
            connected_system_object_id: None,
            status: ItemStatus::Failed,
            object_change_type: ObjectChangeType::Exported,
            error_message: None,
            error_type: Some(ConnectedSystemExportErrorType::General),
            run_history_error_type: Some(ActivityRunProfileExecutionItemErrorType::UnhandledError),
            error_count: 1,
            written_change_ids: vec![],
            attribute_change_count: 0,
            source_metaverse_object_id: None,
            queued_by_run_profile_execution_item_id: None,
            provisioning_sync_rule_id: None,
            provisioned: false,
            anchor_changes: vec![AnchorChange {
                attribute_id: 1,
                attribute_name: String::new(),
                old_value: None,
                new_value: String::new(),
            }],
            unresolved_reference_note: None,
        }],
    };
    let log = LogRecord {
        level: LogLevel::Info,
        target: String::new(),
        message: String::new(),
    };
    let full_request = serde_json::json!({
        "database": { "connection": "postgres://u:p@h/d", "tls": { "mode": "require", "ca_file": "x" } },
        "connected_system_id": 1,
        "directory": {
            "urls": ["ldap://h"], "tls": { "mode": "start_tls", "ca_file": "x" },
            "bind": { "kind": "simple", "dn": "cn=a", "password": "p" }, "dialect": "open_ldap"
        },
        "settings": {
            "managed_scope": [{ "dn": "ou=a" }], "unresolved_reference_handling": "Warn"
        },
        "options": {
            "connections": 1, "in_flight_per_connection": 1, "max_in_flight": 1, "ops_per_second": 1
        }
    });
    let request = ExportRequest::from_json(&full_request.to_string()).unwrap();

    let mut members = BTreeSet::new();
    for doc in [
        serde_json::to_value(&result).unwrap(),
        serde_json::to_value(&progress).unwrap(),
        serde_json::to_value(&batch).unwrap(),
        serde_json::to_value(&log).unwrap(),
        serde_json::to_value(&request).unwrap(),
    ] {
        keys(&doc, &mut members);
    }
    let missing: Vec<_> = members
        .iter()
        .filter(|m| !HEADER.contains(&format!("\"{m}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "document these JSON members in the doc comments of src/ffi/c (they land in the header): {missing:?}"
    );
}

#[test]
fn engine_new_and_free_join_the_runtime_threads() {
    let engine = new_engine(Some(
        r#"{"worker_threads": 2, "shutdown_timeout_ms": 5000}"#,
    ))
    .unwrap();
    let live = live_threads(engine).unwrap();
    // The workers count themselves in as they start: give them a moment to get there.
    let started = std::time::Instant::now();
    while live.load(Ordering::SeqCst) < 2 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(live.load(Ordering::SeqCst), 2, "the engine's workers run");
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
    // Each thread counts itself out before it ends, and freeing joins them: the count is 0 at once.
    // (The kernel may list a joined thread in /proc a moment longer, so /proc is no test of the join.)
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "freeing joined the engine's threads"
    );
    assert_eq!(
        jim_engine_free(engine),
        jim_status::InvalidHandle,
        "double free"
    );
    assert_eq!(jim_engine_free(null_mut()), jim_status::Ok);
    // NULL options = defaults.
    let engine = new_engine(None).unwrap();
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}

#[test]
fn engine_options_are_checked() {
    let (status, message) = new_engine(Some("{ worker_threads: 2")).unwrap_err();
    assert_eq!(status, jim_status::InvalidJson, "{message}");
    assert!(
        message.contains("options_json is not valid JSON"),
        "{message}"
    );
    let (status, message) = new_engine(Some(r#"{"workers": 2}"#)).unwrap_err();
    assert_eq!(status, jim_status::InvalidRequest, "{message}");
    assert!(message.contains("workers"), "{message}");
    let (status, message) = new_engine(Some(r#"{"worker_threads": 100000}"#)).unwrap_err();
    assert_eq!(status, jim_status::InvalidRequest, "{message}");
    assert!(message.contains("worker_threads"), "{message}");
    let (status, _) = new_engine(Some(r#"{"worker_threads": -1}"#)).unwrap_err();
    assert_eq!(status, jim_status::InvalidRequest);
    // SAFETY: NULL out-pointers are reported, not written.
    let status = unsafe { jim_engine_new(null(), null_mut(), null_mut()) };
    assert_eq!(status, jim_status::NullParameter);
    let bad = [b'{', 0xc3, 0x28, b'}', 0];
    let mut engine: *mut jim_engine = null_mut();
    let mut error: *mut c_char = null_mut();
    // SAFETY: a NUL-terminated buffer and valid out-pointers.
    let status = unsafe { jim_engine_new(bad.as_ptr().cast(), &mut engine, &mut error) };
    assert_eq!(status, jim_status::InvalidUtf8);
    assert!(engine.is_null());
    assert!(take(error).contains("options_json is not valid UTF-8"));
}

#[test]
fn run_arguments_are_checked() {
    let engine = new_engine(Some(r#"{"worker_threads": 1}"#)).unwrap();
    let (status, message) = run(engine, b"{\"database\": ", null());
    assert_eq!(status, jim_status::InvalidJson, "{message}");
    assert!(message.contains("line 1"), "{message}");
    let (status, message) = run(engine, b"[]", null());
    assert_eq!(status, jim_status::InvalidRequest, "{message}");
    let mut bad_fields: serde_json::Value =
        serde_json::from_str(&request("postgres://u:pg-secret@127.0.0.1:1/jim", 100)).unwrap();
    bad_fields["connected_system_id"] = 0.into();
    bad_fields["directory"]["urls"] = serde_json::json!(["http://nope"]);
    let (status, message) = run(engine, bad_fields.to_string().as_bytes(), null());
    assert_eq!(status, jim_status::InvalidRequest, "{message}");
    assert!(message.contains("connected_system_id"), "{message}");
    assert!(message.contains("directory.urls[0]"), "{message}");
    assert!(
        !message.contains("pg-secret") && !message.contains("ldap-secret"),
        "{message}"
    );
    let (status, message) = run(engine, b"{\"database\": \"\xff\"}", null());
    assert_eq!(status, jim_status::InvalidUtf8, "{message}");
    assert!(message.contains("request_json"), "{message}");

    // NULL arguments, each named.
    let req = CString::new("{}").unwrap();
    let mut out: *mut c_char = null_mut();
    let mut error: *mut c_char = null_mut();
    // SAFETY: NULL arguments are reported, not used.
    let status = unsafe { jim_engine_run(engine, null(), null(), null(), &mut out, &mut error) };
    assert_eq!(status, jim_status::NullParameter);
    assert!(take(error).contains("request_json"));
    // SAFETY: as above.
    let status =
        unsafe { jim_engine_run(engine, req.as_ptr(), null(), null(), null_mut(), &mut error) };
    assert_eq!(status, jim_status::NullParameter);
    assert!(take(error).contains("out_result_json"));
    // SAFETY: as above; a NULL out_error is allowed.
    let status =
        unsafe { jim_engine_run(null(), req.as_ptr(), null(), null(), &mut out, null_mut()) };
    assert_eq!(status, jim_status::NullParameter);
    assert!(out.is_null());

    // A cancellation handle is not an engine, and a freed cancellation handle is refused.
    let mut cancel: *mut jim_cancel = null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { jim_cancel_new(&mut cancel) }, jim_status::Ok);
    let (status, message) = run(cancel.cast(), b"{}", null());
    assert_eq!(status, jim_status::InvalidHandle, "{message}");
    assert!(
        message.contains("engine is not a live jim_engine"),
        "{message}"
    );
    assert_eq!(jim_cancel_free(cancel), jim_status::Ok);
    let valid = request("postgres://u:p@127.0.0.1:1/jim", 100);
    let (status, message) = run(engine, valid.as_bytes(), cancel);
    assert_eq!(status, jim_status::InvalidHandle, "{message}");
    assert!(
        message.contains("cancel is not a live jim_cancel"),
        "{message}"
    );

    // An unreachable database is a database error that names no secret.
    let (status, message) = run(engine, valid.as_bytes(), null());
    assert_eq!(status, jim_status::Database, "{message}");
    assert!(!message.contains("ldap-secret"), "{message}");

    assert_eq!(jim_engine_free(engine), jim_status::Ok);
    let (status, message) = run(engine, valid.as_bytes(), null());
    assert_eq!(
        status,
        jim_status::InvalidHandle,
        "a run on a freed engine: {message}"
    );
}

#[test]
fn operator_calls_check_their_requests() {
    let engine = new_engine(Some(r#"{"worker_threads": 1}"#)).unwrap();
    type OperatorFn = unsafe extern "C" fn(
        *const jim_engine,
        *const c_char,
        *mut *mut c_char,
        *mut *mut c_char,
    ) -> jim_status;
    let calls: [(&str, OperatorFn); 3] = [
        ("queue_summary", jim_engine_queue_summary),
        ("release_stranded", jim_engine_release_stranded),
        ("reset_failed", jim_engine_reset_failed),
    ];
    for (name, call) in calls {
        let attempt = |json: &str| {
            let json = CString::new(json).unwrap();
            let mut out: *mut c_char = null_mut();
            let mut error: *mut c_char = null_mut();
            // SAFETY: valid strings and out-pointers.
            let status = unsafe { call(engine, json.as_ptr(), &mut out, &mut error) };
            assert!(out.is_null(), "{name}: no answer on failure");
            (status, take(error))
        };
        let (status, message) = attempt("nope");
        assert_eq!(status, jim_status::InvalidJson, "{name}: {message}");
        let (status, message) =
            attempt(r#"{"database": {"connection": "Host=h;Port=x"}, "connected_system_id": 0}"#);
        assert_eq!(status, jim_status::InvalidRequest, "{name}: {message}");
        assert!(message.contains("database.connection"), "{name}: {message}");
        assert!(message.contains("connected_system_id"), "{name}: {message}");
        let (status, message) = attempt(r#"{"connected_system_id": 1}"#);
        assert_eq!(status, jim_status::InvalidRequest, "{name}: {message}");
        assert!(message.contains("database"), "{name}: {message}");
        let (status, message) = attempt(
            r#"{"database": {"connection": "postgres://u:pg-secret@127.0.0.1:1/x", "connect_timeout_ms": 100}, "connected_system_id": 1}"#,
        );
        assert_eq!(status, jim_status::Database, "{name}: {message}");
        assert!(!message.contains("pg-secret"), "{name}: {message}");
    }
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
}

#[test]
fn blocking_calls_are_refused_on_runtime_threads() {
    let engine = new_engine(Some(r#"{"worker_threads": 1}"#)).unwrap();
    let engine_token = engine.addr();
    // A thread inside a tokio runtime, as a callback on an engine worker thread would be.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (free_status, run_status) = rt.block_on(async move {
        let engine: *mut jim_engine = std::ptr::without_provenance_mut(engine_token);
        let free_status = jim_engine_free(engine);
        let (run_status, message) = run(engine, b"{}", null());
        assert!(message.contains("tokio runtime"), "{message}");
        (free_status, run_status)
    });
    assert_eq!(free_status, jim_status::WrongThread);
    assert_eq!(run_status, jim_status::WrongThread);
    assert_eq!(
        jim_engine_free(engine),
        jim_status::Ok,
        "the engine stayed alive"
    );
}

/// A run on an engine that another thread frees while the run is in progress returns an error, and the
/// free waits for the run before joining the runtime's threads.
#[test]
fn freeing_the_engine_during_a_run_ends_the_run_with_an_error() {
    // A "database" that accepts connections and never answers, so the run is reliably in progress.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://u:p@127.0.0.1:{}/jim",
        black_hole.local_addr().unwrap().port()
    );
    let engine = new_engine(Some(r#"{"worker_threads": 2}"#)).unwrap();
    let engine_token = engine.addr();
    let live = live_threads(engine).unwrap();
    let runner = std::thread::spawn(move || {
        let engine: *const jim_engine = std::ptr::without_provenance(engine_token);
        run(engine, request(&url, 3_000).as_bytes(), null())
    });
    // The run has reached the database: it is inside jim_engine_run.
    let (_connection, _) = black_hole.accept().unwrap();
    assert_eq!(jim_engine_free(engine), jim_status::Ok);
    let (status, message) = runner.join().unwrap();
    assert_eq!(status, jim_status::EngineClosed, "{message}");
    assert!(message.contains("freed during the run"), "{message}");
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "freeing joined the engine's threads"
    );
}
