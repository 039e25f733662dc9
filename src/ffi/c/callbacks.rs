//! The host's callbacks for one run, adapted to the engine's [`RunListener`].

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use serde::Serialize;

use crate::engine::{ListenerGate, LogLevel, LogRecord, RunListener};
use crate::report::{BatchReport, ProgressEvent};

/// Severity of a log record passed to `jim_callbacks.on_log`. The numbers match .NET's
/// `Microsoft.Extensions.Logging.LogLevel` (Trace 0 … Error 4), so a .NET host can cast them.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum jim_log_level {
    /// Very detailed diagnostics.
    Trace = 0,
    /// Diagnostics.
    Debug = 1,
    /// Normal operation (e.g. JIM's `MetricsCheckpoint` lines).
    Info = 2,
    /// Something the operator should know.
    Warn = 3,
    /// The run failed.
    Error = 4,
}

impl From<LogLevel> for jim_log_level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => jim_log_level::Trace,
            LogLevel::Debug => jim_log_level::Debug,
            LogLevel::Info => jim_log_level::Info,
            LogLevel::Warn => jim_log_level::Warn,
            LogLevel::Error => jim_log_level::Error,
        }
    }
}

/// A callback receiving one JSON document: `user_data` as given in `jim_callbacks`, then the document as
/// NUL-terminated UTF-8 and its length in bytes (without the NUL). The document is valid only during the
/// call: copy what you keep.
#[allow(non_camel_case_types)]
pub type jim_json_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, json: *const c_char, json_len: usize)>;

/// A callback receiving one log record: `user_data`, the record's level (so a host can drop records
/// cheaply), then the record as a JSON document (NUL-terminated UTF-8 and its length), valid only during
/// the call.
#[allow(non_camel_case_types)]
pub type jim_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: jim_log_level,
        json: *const c_char,
        json_len: usize,
    ),
>;

/// The callbacks of one `jim_engine_run` call. Every function pointer may be NULL (that event is not
/// reported). The struct is copied at the start of the call; `user_data` is passed back unchanged and
/// must stay valid until `jim_engine_run` returns. No callback is called after `jim_engine_run` returns.
///
/// Threads: callbacks run on the engine's worker threads, never on the thread that called
/// `jim_engine_run`, and may run concurrently with each other (make them thread-safe). They must return
/// quickly (a slow `on_batch` slows the run down: the engine waits for it) and must not call
/// `jim_engine_run`, `jim_engine_free` or the operator calls (those return `JIM_STATUS_WRONG_THREAD`);
/// `jim_cancel_cancel` and `jim_string_free` are allowed.
///
/// Payloads (all JSON objects; enum values are JIM's C# member names as strings, timestamps RFC 3339
/// UTC; hosts must ignore members they do not know, since new ones may be added):
///
/// `on_progress`: `{"connected_system_id": int, "phase": "Preparing"|"Executing"|"ResolvingReferences"|
/// "Completed", "total": int, "processed": int, "succeeded": int, "failed": int, "deferred": int,
/// "rate": number (objects/s), "in_flight": int, "in_flight_limit": int, "elapsed_ms": int,
/// "message": string}`. At most one per `options.progress_interval_ms`; phase changes always.
///
/// `on_batch`: the outcomes of one flush, after they were persisted to JIM's database:
/// `{"connected_system_id": int, "sequence": int (1, 2, ...), "items": [item, ...]}`, each item
/// `{"pending_export_id": uuid, "change_type": "Create"|"Update"|"Delete",
/// "connected_system_object_id": uuid|null, "status": "succeeded"|"partly_written"|"deferred"|"failed",
/// "object_change_type": "Exported"|"Deprovisioned"|"PendingExport" (JIM's ObjectChangeType 11/12/14),
/// "error_message": string|null, "error_type": ConnectedSystemExportErrorType name|null,
/// "run_history_error_type": ActivityRunProfileExecutionItemErrorType name|null
/// ("InvalidGeneratedExternalId" 13, "UnhandledError" 14, "UnresolvedReference" 7), "error_count": int,
/// "written_change_ids": [uuid, ...], "attribute_change_count": int,
/// "source_metaverse_object_id": uuid|null, "queued_by_run_profile_execution_item_id": uuid|null,
/// "provisioning_sync_rule_id": int|null, "provisioned": bool, "anchor_changes": [{"attribute_id": int,
/// "attribute_name": string, "old_value": string|null, "new_value": string}, ...],
/// "unresolved_reference_note": string|null}`.
///
/// `on_log`: `{"level": "trace"|"debug"|"info"|"warn"|"error", "target": string, "message": string}`:
/// every `tracing` event of the library during the run (`target` is its module, e.g.
/// `jim_export::store::queue` or `jim_export::directory::execute`; the run's own lines have
/// `jim_export::engine`), the event's fields appended to `message` as ` name=value`. Only records at
/// or above the level the request sets in `"options": {"log_level": "trace"|"debug"|"info"|"warn"|
/// "error"}` (`"debug"` when absent) are formatted and passed; with `on_log` NULL none are made.
/// Records never contain secrets.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct jim_callbacks {
    /// Passed as the first argument of every callback; the library never dereferences it.
    pub user_data: *mut c_void,
    /// Progress snapshots.
    pub on_progress: jim_json_callback,
    /// Batch reports: the per-export outcomes the host turns into its run-history rows.
    pub on_batch: jim_json_callback,
    /// Log records of the run.
    pub on_log: jim_log_callback,
}

/// The host's callbacks as the engine's listener. The run and watch calls put it behind a
/// [`ListenerGate`](crate::engine::ListenerGate) that they close before returning, so no callback
/// runs once they returned, even if some engine task were still alive.
pub(crate) struct HostListener {
    callbacks: jim_callbacks,
}

// SAFETY: the host guarantees (documented on `jim_callbacks`) that the callbacks may be called from any
// thread, concurrently, with `user_data`, until `jim_engine_run` returns; the gate the calls close
// ensures none is called after that. The library never dereferences `user_data`.
unsafe impl Send for HostListener {}
// SAFETY: as above; the struct is never mutated after construction.
unsafe impl Sync for HostListener {}

impl HostListener {
    /// The host's callbacks behind a gate the caller closes before it returns to the host.
    pub(crate) fn gated(callbacks: jim_callbacks) -> Arc<ListenerGate> {
        ListenerGate::new(Arc::new(Self { callbacks }))
    }

    /// Serialises `payload` and hands it to `call`.
    fn deliver(&self, payload: &impl Serialize, call: impl FnOnce(*const c_char, usize)) {
        // Serialising our own report types cannot fail, and JSON never holds a raw NUL; a document that
        // somehow cannot be built is dropped rather than sent half-made.
        let Ok(json) = serde_json::to_string(payload) else {
            return;
        };
        let len = json.len();
        let Ok(c) = CString::new(json) else {
            return;
        };
        call(c.as_ptr(), len);
    }
}

impl RunListener for HostListener {
    fn on_progress(&self, event: &ProgressEvent) {
        if let Some(cb) = self.callbacks.on_progress {
            // SAFETY: a callback the host registered; `json` lives until the call returns.
            self.deliver(event, |json, len| unsafe {
                cb(self.callbacks.user_data, json, len)
            });
        }
    }

    fn on_batch(&self, report: &BatchReport) {
        if let Some(cb) = self.callbacks.on_batch {
            // SAFETY: as above.
            self.deliver(report, |json, len| unsafe {
                cb(self.callbacks.user_data, json, len)
            });
        }
    }

    fn on_log(&self, record: &LogRecord) {
        if let Some(cb) = self.callbacks.on_log {
            let level = jim_log_level::from(record.level);
            // SAFETY: as above.
            self.deliver(record, |json, len| unsafe {
                cb(self.callbacks.user_data, level, json, len)
            });
        }
    }

    fn wants_logs(&self) -> bool {
        self.callbacks.on_log.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::sync::Mutex;

    use super::*;
    use crate::model::ExportPhase;

    #[derive(Default)]
    struct Seen {
        progress: Vec<serde_json::Value>,
        logs: Vec<(jim_log_level, serde_json::Value)>,
    }

    unsafe extern "C" fn on_progress(user_data: *mut c_void, json: *const c_char, len: usize) {
        // SAFETY: the test passes a `Mutex<Seen>` as user data and the library a valid string.
        let (seen, s) = unsafe { (&*(user_data as *const Mutex<Seen>), CStr::from_ptr(json)) };
        assert_eq!(s.to_bytes().len(), len);
        let v = serde_json::from_slice(s.to_bytes()).unwrap();
        seen.lock().unwrap().progress.push(v);
    }

    unsafe extern "C" fn on_log(
        user_data: *mut c_void,
        level: jim_log_level,
        json: *const c_char,
        len: usize,
    ) {
        // SAFETY: as above.
        let (seen, s) = unsafe { (&*(user_data as *const Mutex<Seen>), CStr::from_ptr(json)) };
        assert_eq!(s.to_bytes().len(), len);
        let v = serde_json::from_slice(s.to_bytes()).unwrap();
        seen.lock().unwrap().logs.push((level, v));
    }

    fn event() -> ProgressEvent {
        ProgressEvent {
            connected_system_id: 3,
            phase: ExportPhase::Executing,
            total: 10,
            processed: 4,
            succeeded: 3,
            failed: 1,
            deferred: 0,
            rate: 12.5,
            in_flight: 2,
            in_flight_limit: 16,
            elapsed_ms: 320,
            message: "4 of 10".into(),
        }
    }

    #[test]
    fn events_reach_the_host_as_json_until_closed() {
        let seen = Mutex::new(Seen::default());
        let listener = HostListener::gated(jim_callbacks {
            user_data: &seen as *const Mutex<Seen> as *mut c_void,
            on_progress: Some(on_progress),
            on_batch: None,
            on_log: Some(on_log),
        });
        let as_listener: Arc<dyn RunListener> = listener.clone();
        as_listener.on_progress(&event());
        as_listener.on_batch(&BatchReport {
            connected_system_id: 3,
            sequence: 1,
            items: vec![],
        });
        as_listener.on_log(&LogRecord {
            level: LogLevel::Warn,
            target: "jim_export::engine".into(),
            message: "hello \u{e9}".into(),
        });
        listener.close();
        as_listener.on_progress(&event());
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.progress.len(), 1, "nothing after close");
        assert_eq!(seen.progress[0]["phase"], "Executing");
        assert_eq!(seen.progress[0]["processed"], 4);
        assert_eq!(seen.logs.len(), 1);
        assert_eq!(seen.logs[0].0, jim_log_level::Warn);
        assert_eq!(seen.logs[0].1["level"], "warn");
        assert_eq!(seen.logs[0].1["message"], "hello \u{e9}");
    }

    #[test]
    fn log_levels_match_dotnet() {
        // Microsoft.Extensions.Logging.LogLevel: Trace 0, Debug 1, Information 2, Warning 3, Error 4.
        assert_eq!(jim_log_level::from(LogLevel::Trace) as u32, 0);
        assert_eq!(jim_log_level::from(LogLevel::Debug) as u32, 1);
        assert_eq!(jim_log_level::from(LogLevel::Info) as u32, 2);
        assert_eq!(jim_log_level::from(LogLevel::Warn) as u32, 3);
        assert_eq!(jim_log_level::from(LogLevel::Error) as u32, 4);
    }
}
