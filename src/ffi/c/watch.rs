//! The continuous export ("watch") call and the notifying trigger's operator calls.

use std::ffi::{CString, c_char};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::boundary::{FfiError, FfiResult, boundary};
use super::callbacks::jim_callbacks;
use super::cancel::{self, jim_cancel};
use super::engine::{LongCall, jim_engine, long_call, operator_call};
use super::json::parse_json;
use super::status::jim_status;
use crate::config::{DatabaseConfig, WatchRequest};
use crate::engine::{Engine, RunListener};
use crate::report::WatchResult;

/// Watches one or several connected systems and exports continuously until `cancel` fires (or the
/// engine is freed), then writes the watch's summary to `*out_result_json`. Blocks the calling thread
/// for the whole watch: call it on a thread of your own. `cancel` is required (without it the watch
/// could only end with the engine).
///
/// `request_json` (required): `{"requests": [export request, ...] (one per connected system, each as
/// `jim_engine_run`'s request_json; all with the same database connection and different
/// connected_system_id, none a dry run), "watch": {"wake_up": "auto"|"poll" (default "auto":
/// notifications when the trigger of jim_engine_install_notify_trigger is installed, polling otherwise),
/// "poll_min_ms": int (100: the poll interval after a pass that exported something), "poll_max_ms": int
/// (3000: the longest, reached by doubling while idle), "notify_recheck_ms": int (60000: the safety
/// re-scan with notifications)} (optional)}`. Unknown members are refused.
///
/// While it runs, each pass over a system's queue is reported through `callbacks` exactly as a
/// `jim_engine_run` (progress from "Preparing" to "Completed", batch reports whose `sequence` numbers
/// on across passes, logs); the first log record says whether the watch uses notifications or polling.
/// Rows whose `NextRetryAt` comes due are picked up when it does. Errors after the start (the database
/// restarting, the directory unreachable) are logged and retried, not returned.
///
/// The result document: `{"started_at": timestamp, "completed_at": timestamp, "mode":
/// "notifications"|"polling", "trigger_installed": bool, "listener_reconnects": int, "passes": int,
/// "exports": int, "wake_ups": wake-ups, "systems": [{"connected_system_id": int, "passes": int,
/// "failed_passes": int, "exports": int, "succeeded": int, "failed": int, "deferred": int, "wake_ups":
/// wake-ups, "last_error": string|null}], "message": string}`, where wake-ups is `{"startup": int,
/// "notification": int, "poll": int, "retry_due": int, "reconnect": int, "recheck": int,
/// "after_error": int}`.
///
/// Stopping: firing `cancel` lets the passes in progress finish their in-flight operations, persist
/// their outcomes and return their unexecuted claims (nothing is left `Executing`); then the call
/// returns `JIM_STATUS_OK`. Errors as for `jim_engine_run` (only for a watch that cannot start:
/// invalid request, database or directory unreachable, unknown system, wrong schema), and
/// `JIM_STATUS_ENGINE_CLOSED` when the engine was freed during the watch. Ownership, callbacks and
/// out-parameters as for `jim_engine_run`.
///
/// # Safety
/// As for `jim_engine_run`; `cancel` must be a live cancellation handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_watch(
    engine: *const jim_engine,
    request_json: *const c_char,
    callbacks: *const jim_callbacks,
    cancel: *const jim_cancel,
    out_result_json: *mut *mut c_char,
    out_error: *mut *mut c_char,
) -> jim_status {
    boundary(out_error, || {
        let cancel = || {
            if cancel.is_null() {
                return Err(FfiError::new(
                    jim_status::NullParameter,
                    "cancel must not be NULL: it is how a watch is stopped",
                ));
            }
            cancel::token(cancel, "cancel").map(Some)
        };
        // SAFETY: forwarded from the caller.
        unsafe {
            long_call::<WatchRequest>(engine, request_json, callbacks, cancel, out_result_json)
        }
    })
}

impl LongCall for WatchRequest {
    type Output = WatchResult;
    const FUNCTION: &'static str = "jim_engine_watch";
    const WHAT: &'static str = "watch";

    async fn start(
        self,
        engine: Arc<Engine>,
        listener: Arc<dyn RunListener>,
        token: CancellationToken,
    ) -> crate::Result<WatchResult> {
        engine.watch(&self, listener, token).await
    }

    fn stopped(result: &WatchResult) -> String {
        result.message.clone()
    }
}

/// The trigger calls' request: the database only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerRequest {
    database: DatabaseConfig,
}

fn parse_trigger_request(json: &str) -> FfiResult<TriggerRequest> {
    parse_json(json, "request_json")
}

fn trigger_answer(installed: bool) -> String {
    serde_json::json!({
        "installed": installed,
        "channel": crate::store::NOTIFY_CHANNEL,
    })
    .to_string()
}

/// Installs the notifying trigger on JIM's `"PendingExports"` (the SQL of `jim_notify_trigger_sql`),
/// so that watches started afterwards are woken at once by PostgreSQL notifications instead of
/// polling. An operator action, never done implicitly: it needs the right to create functions and
/// triggers on JIM's tables. Idempotent. Writes `{"installed": true, "channel": string}`.
///
/// `request_json`: `{"database": {...as in jim_engine_run}}`. Ownership, NULL and out-parameters as
/// for `jim_engine_queue_summary`. Blocks; call it from a host thread.
///
/// # Safety
/// As for `jim_engine_queue_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_install_notify_trigger(
    engine: *const jim_engine,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
    out_error: *mut *mut c_char,
) -> jim_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        operator_call(
            engine,
            request_json,
            out_json,
            out_error,
            "jim_engine_install_notify_trigger",
            |engine: Arc<Engine>, json: &str| {
                let r = parse_trigger_request(json)?;
                Ok(async move {
                    engine.install_notify_trigger(&r.database).await?;
                    Ok(trigger_answer(true))
                })
            },
        )
    }
}

/// Removes the notifying trigger and its function (watches then poll once restarted). Idempotent.
/// Writes `{"installed": false, "channel": string}`. Request, ownership and out-parameters as for
/// `jim_engine_install_notify_trigger`.
///
/// # Safety
/// As for `jim_engine_queue_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_remove_notify_trigger(
    engine: *const jim_engine,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
    out_error: *mut *mut c_char,
) -> jim_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        operator_call(
            engine,
            request_json,
            out_json,
            out_error,
            "jim_engine_remove_notify_trigger",
            |engine: Arc<Engine>, json: &str| {
                let r = parse_trigger_request(json)?;
                Ok(async move {
                    engine.remove_notify_trigger(&r.database).await?;
                    Ok(trigger_answer(false))
                })
            },
        )
    }
}

/// Whether the notifying trigger is installed and enabled: writes `{"installed": bool, "channel":
/// string}`. Request, ownership and out-parameters as for `jim_engine_install_notify_trigger`.
///
/// # Safety
/// As for `jim_engine_queue_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_notify_trigger_status(
    engine: *const jim_engine,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
    out_error: *mut *mut c_char,
) -> jim_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        operator_call(
            engine,
            request_json,
            out_json,
            out_error,
            "jim_engine_notify_trigger_status",
            |engine: Arc<Engine>, json: &str| {
                let r = parse_trigger_request(json)?;
                Ok(async move {
                    let installed = engine.notify_trigger_installed(&r.database).await?;
                    Ok(trigger_answer(installed))
                })
            },
        )
    }
}

fn static_c_string(cell: &'static OnceLock<CString>, text: &str) -> *const c_char {
    cell.get_or_init(|| CString::new(text.replace('\0', "")).unwrap_or_default())
        .as_ptr()
}

/// The SQL that installs the notifying trigger (what `jim_engine_install_notify_trigger` runs), for an
/// operator or a database migration to apply by hand: a function and three statement-level triggers
/// that `NOTIFY jim_export_pending_exports` with the `ConnectedSystemId` when pending exports are
/// staged or made eligible again (once per system and transaction, at commit).
///
/// The pointer refers to static memory owned by the library: never free it. Safe to call from any
/// thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn jim_notify_trigger_sql() -> *const c_char {
    static SQL: OnceLock<CString> = OnceLock::new();
    static_c_string(&SQL, crate::engine::notify_trigger_sql())
}

/// The SQL that removes the notifying trigger and its function. Static memory, as for
/// `jim_notify_trigger_sql`.
#[unsafe(no_mangle)]
pub extern "C" fn jim_notify_trigger_removal_sql() -> *const c_char {
    static SQL: OnceLock<CString> = OnceLock::new();
    static_c_string(&SQL, crate::engine::notify_trigger_removal_sql())
}

#[cfg(test)]
mod tests {
    use std::ffi::{CStr, CString};
    use std::ptr::null_mut;

    use super::super::{jim_cancel_free, jim_cancel_new, jim_engine_free, jim_engine_new};
    use super::*;

    fn take(s: *mut c_char) -> String {
        assert!(!s.is_null());
        // SAFETY: the library returned a NUL-terminated string.
        let owned = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string();
        assert_eq!(super::super::jim_string_free(s), jim_status::Ok);
        owned
    }

    fn watch_call(
        engine: *const jim_engine,
        request: &str,
        cancel: *const jim_cancel,
    ) -> (jim_status, String) {
        let request = CString::new(request).unwrap();
        let mut result = null_mut();
        let mut error = null_mut();
        // SAFETY: valid strings and out-pointers.
        let status = unsafe {
            jim_engine_watch(
                engine,
                request.as_ptr(),
                std::ptr::null(),
                cancel,
                &mut result,
                &mut error,
            )
        };
        if status == jim_status::Ok {
            (status, take(result))
        } else {
            assert!(result.is_null());
            (status, take(error))
        }
    }

    #[test]
    fn a_watch_needs_a_cancel_handle_and_a_valid_request() {
        let mut engine = null_mut();
        // SAFETY: valid out-pointers.
        assert_eq!(
            unsafe { jim_engine_new(std::ptr::null(), &mut engine, null_mut()) },
            jim_status::Ok
        );
        let (status, message) = watch_call(engine, r#"{"requests": []}"#, std::ptr::null());
        assert_eq!(status, jim_status::NullParameter, "{message}");
        let mut cancel = null_mut();
        // SAFETY: a valid out-pointer.
        assert_eq!(unsafe { jim_cancel_new(&mut cancel) }, jim_status::Ok);
        let (status, message) = watch_call(engine, r#"{"requests": []}"#, cancel);
        assert_eq!(status, jim_status::InvalidRequest, "{message}");
        assert!(message.contains("requests"), "{message}");
        let (status, message) = watch_call(engine, r#"{"requests": [], "nope": 1}"#, cancel);
        assert_eq!(status, jim_status::InvalidRequest, "{message}");
        let (status, _) = watch_call(engine, "{", cancel);
        assert_eq!(status, jim_status::InvalidJson);
        assert_eq!(jim_cancel_free(cancel), jim_status::Ok);
        assert_eq!(jim_engine_free(engine), jim_status::Ok);
    }

    #[test]
    fn the_trigger_sql_is_static_text() {
        // SAFETY: static NUL-terminated strings.
        let install = unsafe { CStr::from_ptr(jim_notify_trigger_sql()) }
            .to_str()
            .unwrap();
        assert!(install.contains("pg_notify('jim_export_pending_exports'"));
        assert_eq!(jim_notify_trigger_sql(), jim_notify_trigger_sql());
        // SAFETY: as above.
        let remove = unsafe { CStr::from_ptr(jim_notify_trigger_removal_sql()) }
            .to_str()
            .unwrap();
        assert!(remove.contains("DROP FUNCTION IF EXISTS jim_export_notify_pending_exports"));
    }
}
