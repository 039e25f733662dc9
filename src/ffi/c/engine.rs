//! The engine handle (a [`Host`]: the engine, its own tokio runtime and its calls in progress), the
//! blocking run call and the operator calls.

use std::ffi::c_char;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::boundary::{
    FfiError, FfiResult, arg_opt_str, arg_str, boundary, c_string, check_out, write_out,
};
use super::callbacks::{HostListener, jim_callbacks};
use super::cancel::{self, jim_cancel};
use super::handle::Registry;
use super::json::{encode_json, invalid_request, parse_json};
use super::operator;
use super::status::jim_status;
use crate::config::{ConfigErrors, ExportRequest};
use crate::engine::{Engine, ListenerGate, NoListener, RunListener};
use crate::ffi::host::{DEFAULT_CLOSE_TIMEOUT, DEFAULT_STOP_TIMEOUT, Host, HostError, HostOptions};
use crate::report::RunResult;

/// An export engine (opaque): a tokio runtime with its worker threads, and the engine's database pools.
/// Made by `jim_engine_new`, released by `jim_engine_free`.
///
/// Thread safety: every function taking a `const jim_engine *` may be called from several host threads
/// at once (e.g. runs for different connected systems in parallel). The library never dereferences the
/// pointer; it is checked against the live engines, so a freed engine is reported
/// (`JIM_STATUS_INVALID_HANDLE`), not used.
#[allow(non_camel_case_types)]
pub struct jim_engine {
    _private: [u8; 0],
}

static ENGINES: Registry<Arc<Host>> = Registry::new("jim_engine");

/// `jim_engine_new`'s options document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineOptions {
    /// Worker threads of the engine's runtime; 0 = one per CPU core.
    #[serde(default)]
    worker_threads: usize,
    /// How long `jim_engine_free` waits for the runtime's threads to stop, in milliseconds.
    #[serde(default = "default_shutdown_timeout_ms")]
    shutdown_timeout_ms: u64,
    /// How long `jim_engine_free` waits for cancelled runs to persist what they did and return their
    /// claims, and for claims of runs that ended while the database did not answer to be returned,
    /// before it stops the runtime, in milliseconds.
    #[serde(default = "default_close_timeout_ms")]
    close_timeout_ms: u64,
}

fn default_shutdown_timeout_ms() -> u64 {
    millis(DEFAULT_STOP_TIMEOUT)
}

fn default_close_timeout_ms() -> u64 {
    millis(DEFAULT_CLOSE_TIMEOUT)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An upper bound that catches unit mistakes (seconds given as milliseconds and the like).
const MAX_SHUTDOWN_TIMEOUT_MS: u64 = 600_000;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            worker_threads: 0,
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            close_timeout_ms: default_close_timeout_ms(),
        }
    }
}

impl EngineOptions {
    fn host_options(&self) -> HostOptions {
        HostOptions {
            worker_threads: self.worker_threads,
            close_timeout: Duration::from_millis(self.close_timeout_ms),
            stop_timeout: Duration::from_millis(self.shutdown_timeout_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = match self.host_options().validate("worker_threads") {
            Ok(()) => ConfigErrors::default(),
            Err(errors) => errors,
        };
        errors.check(
            self.shutdown_timeout_ms > MAX_SHUTDOWN_TIMEOUT_MS,
            "shutdown_timeout_ms",
            format!("must be at most {MAX_SHUTDOWN_TIMEOUT_MS}"),
        );
        errors.check(
            self.close_timeout_ms > MAX_SHUTDOWN_TIMEOUT_MS,
            "close_timeout_ms",
            format!("must be at most {MAX_SHUTDOWN_TIMEOUT_MS}"),
        );
        errors.into_result()
    }
}

pub(super) fn engine_closed(what: &str) -> FfiError {
    FfiError::new(jim_status::EngineClosed, what.to_string())
}

impl From<HostError> for FfiError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Closed => engine_closed("the engine was freed"),
            HostError::Abandoned => engine_closed("the engine was freed during the call"),
            HostError::Panicked(_) => FfiError::new(jim_status::Panic, e.to_string()),
            HostError::Runtime(_) => FfiError::new(jim_status::Runtime, e.to_string()),
        }
    }
}

/// Refuses blocking calls on a thread that runs a tokio runtime: an engine's worker thread (inside a
/// callback), where blocking would deadlock or panic, or a Rust host's own async context.
fn check_thread(function: &str) -> FfiResult<()> {
    if Handle::try_current().is_ok() {
        return Err(FfiError::new(
            jim_status::WrongThread,
            format!(
                "{function} was called on a thread that runs a tokio runtime (e.g. inside a jim-export \
                 callback); call it from a host thread"
            ),
        ));
    }
    Ok(())
}

/// Looks up a live engine on a host thread and runs `body` with it.
pub(super) fn with_engine<T>(
    engine: *const jim_engine,
    function: &str,
    body: impl FnOnce(&Host) -> FfiResult<T>,
) -> FfiResult<T> {
    let host = ENGINES.get(engine, "engine")?;
    check_thread(function)?;
    body(&host)
}

/// Makes an export engine with its own multi-thread tokio runtime, and writes it to `*out_engine`.
///
/// `options_json` may be NULL (defaults) or a JSON object:
/// `{"worker_threads": int (default 0 = one per CPU core, at most 512),
///   "close_timeout_ms": int (default 30000: how long jim_engine_free waits for cancelled runs to
///   persist what they did and return their claims, and for the database to take back claims of runs
///   it did not answer for), "shutdown_timeout_ms": int (default 10000: how long jim_engine_free then
///   waits for the runtime's threads)}`. Unknown members are refused (`JIM_STATUS_INVALID_REQUEST`).
///
/// Ownership: the caller owns the engine and releases it with `jim_engine_free`, which stops its
/// threads. `out_engine` must not be NULL; it is written only on success. On failure a message is
/// written to `*out_error` (when `out_error` is not NULL), to be freed with `jim_string_free`.
///
/// # Safety
/// `options_json` is NULL or a NUL-terminated string valid during the call; `out_engine` and `out_error`
/// are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_new(
    options_json: *const c_char,
    out_engine: *mut *mut jim_engine,
    out_error: *mut *mut c_char,
) -> jim_status {
    boundary(out_error, || {
        check_out(out_engine, "out_engine")?;
        // SAFETY: the caller passes NULL or a NUL-terminated string valid during the call.
        let options = match unsafe { arg_opt_str(options_json, "options_json") }? {
            Some(json) => parse_json::<EngineOptions>(json, "options_json")?,
            None => EngineOptions::default(),
        };
        options.validate().map_err(invalid_request)?;
        let host = Arc::new(Host::new(options.host_options())?);
        let handle = ENGINES.insert(host)?;
        // SAFETY: checked non-NULL; the host passed a writable `jim_engine **`.
        unsafe { write_out(out_engine, handle) };
        Ok(())
    })
}

/// Releases an engine: cancels its runs in progress (each returns `JIM_STATUS_ENGINE_CLOSED` after
/// persisting what it completed and returning its unexecuted claims), waits until every call on it has
/// returned and closes its database pools (both within `close_timeout_ms`; a call still running then,
/// e.g. one waiting on a database that stopped answering, is ended and its rows are reclaimed after
/// their lease), shuts its runtime down and joins its worker threads (waiting at most
/// `shutdown_timeout_ms` for them). After it returns no library thread of this engine runs, so a
/// managed host (Mono, .NET) can exit.
///
/// NULL is a no-op. An engine freed already returns `JIM_STATUS_INVALID_HANDLE` and nothing happens.
/// Calling it on one of the engine's own threads (inside a callback) returns `JIM_STATUS_WRONG_THREAD`
/// and leaves the engine alive. Blocks the calling thread; call it from a host thread.
#[unsafe(no_mangle)]
pub extern "C" fn jim_engine_free(engine: *mut jim_engine) -> jim_status {
    boundary(std::ptr::null_mut(), || {
        if engine.is_null() {
            return Ok(());
        }
        ENGINES.get(engine, "engine")?;
        check_thread("jim_engine_free")?;
        ENGINES.remove(engine, "engine")?.close();
        Ok(())
    })
}

/// Runs one export of a connected system's pending-export queue to its end (or until cancelled), and
/// writes the result document to `*out_result_json`. Blocks the calling thread for the whole run: call
/// it on a thread of your own (the .NET binding uses a dedicated thread). Several runs may go on at
/// once on one engine, each on its own host thread.
///
/// `request_json` (required) is the export request, a JSON object:
/// `{"database": {"connection": URL or Npgsql string "Host=…;Port=…;Username=…;Password=…;Database=…",
///   "tls": {"mode": "disable"|"prefer"|"require"|"verify_ca"|"verify_full", "ca_pem": string,
///   "ca_file": string} (optional), "max_connections": int (default 4), "connect_timeout_ms": int
///   (default 10000), "statement_timeout_ms": int (default 30000: PostgreSQL's statement_timeout,
///   and a client deadline 5 s longer), "retry_window_ms": int (default 120000: how long statements
///   that failed because the database went away are retried), "keepalive_seconds": int (default 60:
///   server-side TCP keepalive; 0 = the server's)},
///  "connected_system_id": int (ConnectedSystems.Id),
///  "directory": {"urls": ["ldap://host:389" | "ldaps://host:636" | "ldapi://…", ...],
///   "tls": {"mode": "none"|"start_tls"|"ldaps", "ca_pem": string, "ca_file": string, "verify": bool
///   (default true)} (optional), "bind": {"kind": "simple", "dn": string, "password": string} |
///   {"kind": "ntlm", "username": string, "domain": string (optional, NetBIOS), "password": string} |
///   {"kind": "sasl_external"}, "connect_timeout_ms": int (default 10000), "operation_timeout_ms": int
///   (default 60000), "dialect": "active_directory"|"samba_ad"|"open_ldap"|"ds389"|"generic" (default:
///   detected), "allow_password_without_tls": bool (default false: a simple or NTLM bind over
///   ldap:// without StartTLS is refused; true sends the password in clear and logs a warning on
///   every run)},
///  "settings": {"delete_behaviour": "delete"|"disable", "disable_attribute": string,
///   "create_containers_as_needed": bool, "placeholder_member_dn": string, "modify_batch_size": int
///   (10-5000), "managed_scope": [{"dn": string, "scope": "Subtree"|"OneLevel", "excluded": bool}],
///   "unresolved_reference_handling": "Error"|"Warn"|"Ignore"} (optional, JIM's LDAP connector
///   settings),
///  "options": {"page_size": int (100), "flush_size": int (100), "flush_interval_ms": int (1000),
///   "connections": int, "in_flight_per_connection": int, "concurrency": "adaptive"|"fixed"
///   (adaptive), "max_in_flight": int (the fixed limit, or the adaptive limit's ceiling),
///   "min_in_flight": int (1; the adaptive limit's floor), "ops_per_second": int,
///   "lease_seconds": int (900), "max_operation_retries": int (3), "dry_run": bool,
///   "skip_schema_check": bool, "progress_interval_ms": int (500), "clock_skew_seconds": int (300:
///   how far the directory's clock may be behind the database's when a re-attempt judges whether an
///   existing entry is its own earlier write), "log_level": "trace"|"debug"|"info"|"warn"|"error"
///   (debug: the least severe record `on_log` receives)} (optional)}`.
/// Unknown members are refused. Passwords are never logged or echoed in errors.
///
/// The result document (JIM's `ExportExecutionResult` fields plus metrics):
/// `{"connected_system_id": int, "dry_run": bool, "started_at": timestamp, "completed_at": timestamp,
///   "total_pending_exports": int, "success_count": int, "failed_count": int, "deferred_count": int,
///   "partially_exported_count": int, "unresolvable_reference_count": int, "reconciled_count": int,
///   "created_container_external_ids": [string], "optimistic_apply_applied_count": int,
///   "optimistic_apply_skipped_count": int, "optimistic_apply_failed_count": int,
///   "optimistic_apply_unresolved_reference_count": int, "cancelled": bool, "message": string (JIM's
///   Activity outcome message), "dialect": string|null,
///   "metrics": {"operations": {"add": int, "modify": int, "modify_dn": int, "delete": int,
///   "search": int}, "sql_statements": int, "flushes": int, "objects_per_second": number,
///   "elapsed_ms": int, "time_to_first_write_ms": int|null, "max_in_flight": int,
///   "mean_in_flight": number, "in_flight_limit": int, "min_in_flight_limit": int,
///   "max_in_flight_limit": int, "in_flight_limit_increases": int, "in_flight_limit_decreases": int,
///   "retries": int, "reconnects": int, "recovered": int, "lease_lost": int,
///   "export_latency_p50_ms": number|null,
///   "export_latency_p99_ms": number|null}}`. Per-export failures are data (in the
///   counts and the batch reports), not errors.
///
/// `callbacks` may be NULL (no events); see `jim_callbacks`. `cancel` may be NULL; when given, firing
/// it (`jim_cancel_cancel`, from any thread) makes the run stop early and return `JIM_STATUS_OK` with
/// `"cancelled": true` in the result. `out_result_json` must not be NULL; it is written only on success
/// and freed by the caller with `jim_string_free`. On failure `*out_error` (when `out_error` is not
/// NULL) receives a message to free with `jim_string_free`: `JIM_STATUS_INVALID_JSON`,
/// `JIM_STATUS_INVALID_REQUEST` (bad fields by path, or an unknown connected system),
/// `JIM_STATUS_DATABASE`, `JIM_STATUS_SCHEMA`, `JIM_STATUS_DIRECTORY`, `JIM_STATUS_ENGINE_CLOSED` (the
/// engine was freed by another thread), `JIM_STATUS_WRONG_THREAD` (called inside a callback), ...
///
/// # Safety
/// `request_json` is a NUL-terminated string valid during the call; `callbacks` is NULL or points to a
/// `jim_callbacks` readable during the call, whose functions and `user_data` stay usable from any thread
/// until this function returns; `out_result_json` and `out_error` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_run(
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
                Ok(None)
            } else {
                cancel::token(cancel, "cancel").map(Some)
            }
        };
        // SAFETY: forwarded from the caller.
        unsafe {
            long_call::<ExportRequest>(engine, request_json, callbacks, cancel, out_result_json)
        }
    })
}

/// What `jim_engine_run` and `jim_engine_watch` differ in: the request and result documents and how
/// the engine carries the request out.
pub(super) trait LongCall: DeserializeOwned + Send + 'static {
    /// The result document.
    type Output: Serialize + Send + 'static;
    /// The C function, for messages.
    const FUNCTION: &'static str;
    /// What the call does, for messages (`run`, `watch`).
    const WHAT: &'static str;
    /// Carries the request out on the engine (the future runs on the engine's runtime).
    fn start(
        self,
        engine: Arc<Engine>,
        listener: Arc<dyn RunListener>,
        token: CancellationToken,
    ) -> impl Future<Output = crate::Result<Self::Output>> + Send + 'static;
    /// What a call that freeing the engine stopped left behind, for the message.
    fn stopped(output: &Self::Output) -> String;
}

impl LongCall for ExportRequest {
    type Output = RunResult;
    const FUNCTION: &'static str = "jim_engine_run";
    const WHAT: &'static str = "run";

    async fn start(
        self,
        engine: Arc<Engine>,
        listener: Arc<dyn RunListener>,
        token: CancellationToken,
    ) -> crate::Result<RunResult> {
        engine.run_export(&self, listener, token).await
    }

    fn stopped(result: &RunResult) -> String {
        format!(
            "its completed outcomes are persisted and its unexecuted claims returned ({})",
            result.message
        )
    }
}

/// The shared body of `jim_engine_run` and `jim_engine_watch`: checks the arguments (`cancel`
/// resolves the cancellation handle, after the others), parses the request once (the engine checks
/// its fields before it contacts anything), carries it out on the engine's runtime with the host's
/// callbacks and a child of the host's cancellation (so freeing the engine cancels this call alone),
/// and writes the result document.
///
/// # Safety
/// As for `jim_engine_run`.
pub(super) unsafe fn long_call<R: LongCall>(
    engine: *const jim_engine,
    request_json: *const c_char,
    callbacks: *const jim_callbacks,
    cancel: impl FnOnce() -> FfiResult<Option<CancellationToken>>,
    out_result_json: *mut *mut c_char,
) -> FfiResult<()> {
    check_out(out_result_json, "out_result_json")?;
    // SAFETY: the caller passes a NUL-terminated string valid during the call.
    let request = unsafe { arg_str(request_json, "request_json") }?;
    // SAFETY: the caller passes NULL or a readable `jim_callbacks`; it is copied here.
    let callbacks = unsafe { callbacks.as_ref() }.copied();
    let cancel = cancel()?;
    let result = with_engine(engine, R::FUNCTION, |host| {
        let request = parse_json::<R>(request, "request_json")?;
        let (gate, listener) = listener(callbacks);
        let token = cancel.map_or_else(CancellationToken::new, |c| c.child_token());
        let work = request.start(host.engine().clone(), listener, token.clone());
        ended(host, host.block_on(token, gate, work), R::WHAT, R::stopped)
    })?;
    let json = encode_json(&result, "result")?;
    // SAFETY: checked non-NULL; the host passed a writable `char **`.
    unsafe { write_out(out_result_json, c_string(&json)) };
    Ok(())
}

/// The host's callbacks as the engine's listener, behind a gate the host closes when the call ends.
fn listener(callbacks: Option<jim_callbacks>) -> (Option<Arc<ListenerGate>>, Arc<dyn RunListener>) {
    match callbacks.map(HostListener::gated) {
        Some(gate) => (Some(gate.clone()), gate),
        None => (None, Arc::new(NoListener)),
    }
}

/// The answer of a run or watch (`what`): when the engine was freed while it went on, it was told to
/// stop (and did, or had just finished), so the call reports the free rather than a result the host
/// can no longer act on; `stopped` says what the stopped call left behind.
fn ended<T>(
    host: &Host,
    outcome: Result<crate::Result<T>, HostError>,
    what: &str,
    stopped: impl FnOnce(&T) -> String,
) -> FfiResult<T> {
    let freed = !host.is_open();
    match outcome? {
        Ok(result) if freed => Err(engine_closed(&format!(
            "the engine was freed during the {what}, which stopped: {}",
            stopped(&result)
        ))),
        Ok(result) => Ok(result),
        Err(e) if freed => Err(engine_closed(&format!(
            "the engine was freed during the {what}, which then ended with: {e}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Writes the queue of a connected system to `*out_json`: counts by status and change type, what a run
/// would pick up now, what is backing off, rows stranded in `Executing` past the lease, and the oldest
/// failure.
///
/// `request_json`: `{"database": {...as in jim_engine_run}, "connected_system_id": int,
/// "lease_seconds": int (default 900)}`. The document written:
/// `{"connected_system_id": int, "by_status": [{"status": int (PendingExportStatus), "status_name":
/// string|null, "change_type": int (PendingExportChangeType), "change_type_name": string|null,
/// "count": int}], "total": int, "executable": int, "due": int, "not_yet_due": int,
/// "stranded_executing": int, "with_unresolved_references": int, "oldest_failure": timestamp|null}`.
///
/// Ownership, NULL and out-parameters as for `jim_engine_run`. Blocks; call it from a host thread.
///
/// # Safety
/// `request_json` is a NUL-terminated string valid during the call; `out_json` and `out_error` are NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_queue_summary(
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
            "jim_engine_queue_summary",
            operator::queue_summary,
        )
    }
}

/// Returns to Pending the rows of a connected system left `Executing` (by a crashed or killed run) for
/// longer than `older_than_seconds`, and writes `{"released": int}` to `*out_json`.
///
/// `request_json`: `{"database": {...}, "connected_system_id": int, "older_than_seconds": int (default
/// 900, the default lease)}`. `0` releases every `Executing` row: only when no engine is running an
/// export of that system. Ownership, NULL and out-parameters as for `jim_engine_run`. Blocks; call it
/// from a host thread.
///
/// # Safety
/// As for `jim_engine_queue_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_release_stranded(
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
            "jim_engine_release_stranded",
            operator::release_stranded,
        )
    }
}

/// Resets the `Failed` exports of a connected system to Pending with `ErrorCount` 0 and their error
/// fields and retry time cleared, and writes `{"reset": int}` to `*out_json`.
///
/// `request_json`: `{"database": {...}, "connected_system_id": int}`. Ownership, NULL and out-parameters
/// as for `jim_engine_run`. Blocks; call it from a host thread.
///
/// # Safety
/// As for `jim_engine_queue_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_engine_reset_failed(
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
            "jim_engine_reset_failed",
            operator::reset_failed,
        )
    }
}

/// The shared body of the operator calls: parse, run on the engine's runtime, write the answer.
///
/// # Safety
/// As for `jim_engine_queue_summary`.
pub(super) unsafe fn operator_call<F, Fut>(
    engine: *const jim_engine,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
    out_error: *mut *mut c_char,
    function: &str,
    call: F,
) -> jim_status
where
    F: FnOnce(Arc<Engine>, &str) -> FfiResult<Fut>,
    Fut: Future<Output = FfiResult<String>> + Send + 'static,
{
    boundary(out_error, || {
        check_out(out_json, "out_json")?;
        // SAFETY: the caller passes a NUL-terminated string valid during the call.
        let request = unsafe { arg_str(request_json, "request_json") }?;
        let json = with_engine(engine, function, |host| {
            let future = call(host.engine().clone(), request)?;
            host.block_on(CancellationToken::new(), None, future)?
        })?;
        // SAFETY: checked non-NULL; the host passed a writable `char **`.
        unsafe { write_out(out_json, c_string(&json)) };
        Ok(())
    })
}

/// The live-thread count of an engine's runtime (for tests; it outlives the engine).
#[cfg(test)]
pub(crate) fn live_threads(
    engine: *const jim_engine,
) -> Option<Arc<std::sync::atomic::AtomicUsize>> {
    ENGINES
        .get(engine, "engine")
        .ok()
        .map(|host| host.live_threads())
}
