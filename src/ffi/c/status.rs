//! The one status enum of the C ABI and the one place that maps the engine's errors onto it.

use std::ffi::{CStr, c_char};

use crate::error::Error;

/// What every fallible function of the C ABI returns. `JIM_STATUS_OK` (0) is success; every other value
/// is an error, described in words by the string written to the function's `out_error` parameter.
///
/// The values are part of the ABI: they never change and are never reused. Ranges: 0 success; 1-19 the
/// caller's mistakes (bad arguments, handles, threads); 20-39 a call that could not complete (database,
/// schema, directory, cancellation); 90-99 faults inside the library.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum jim_status {
    /// Success. Out-parameters were written; `out_error` was not.
    Ok = 0,
    /// A required pointer argument was NULL; the message names it.
    NullParameter = 1,
    /// A string argument is not valid UTF-8; the message names it and the byte offset.
    InvalidUtf8 = 2,
    /// A JSON argument is not JSON at all (a syntax error); the message gives line and column.
    InvalidJson = 3,
    /// A JSON argument is JSON but not a valid request or options document, or names something that
    /// does not exist (e.g. an unknown connected system); the message names every bad field by its path,
    /// e.g. `directory.urls[0]`.
    InvalidRequest = 4,
    /// A handle argument is not a live handle of the expected type: it was freed already, or it is not a
    /// handle this library returned. Nothing was done.
    InvalidHandle = 5,
    /// The engine was freed (by another thread) before or during the call; a run in progress was
    /// cancelled, the outcomes it completed were persisted and its unexecuted claims returned.
    EngineClosed = 6,
    /// The function was called on a thread where it must not block: one of an engine's own worker threads
    /// (inside a callback) or any thread running a tokio runtime. Nothing was done.
    WrongThread = 7,
    /// The engine's runtime could not be built (e.g. the system refused to start threads).
    Runtime = 8,
    /// JIM's PostgreSQL database could not be reached, or a statement failed.
    Database = 20,
    /// JIM's database does not have the schema (migration) this engine was built against.
    Schema = 21,
    /// A row of JIM's database holds a value the engine cannot read; the message names table, row and
    /// column.
    Data = 22,
    /// The run was cancelled before it could start its work.
    Cancelled = 23,
    /// The directory could not be reached, or refused the bind or TLS; or it stopped answering mid-run
    /// (the outcomes of the exports done by then are persisted, the rest are left as they were).
    Directory = 24,
    /// The call failed for another reason; the message says why.
    Failed = 29,
    /// The library panicked (a bug). The panic was caught; the handle arguments remain usable.
    Panic = 99,
}

impl jim_status {
    /// The C name of the value, e.g. `JIM_STATUS_OK`, as a static C string.
    pub const fn c_name(self) -> &'static CStr {
        match self {
            jim_status::Ok => c"JIM_STATUS_OK",
            jim_status::NullParameter => c"JIM_STATUS_NULL_PARAMETER",
            jim_status::InvalidUtf8 => c"JIM_STATUS_INVALID_UTF8",
            jim_status::InvalidJson => c"JIM_STATUS_INVALID_JSON",
            jim_status::InvalidRequest => c"JIM_STATUS_INVALID_REQUEST",
            jim_status::InvalidHandle => c"JIM_STATUS_INVALID_HANDLE",
            jim_status::EngineClosed => c"JIM_STATUS_ENGINE_CLOSED",
            jim_status::WrongThread => c"JIM_STATUS_WRONG_THREAD",
            jim_status::Runtime => c"JIM_STATUS_RUNTIME",
            jim_status::Database => c"JIM_STATUS_DATABASE",
            jim_status::Schema => c"JIM_STATUS_SCHEMA",
            jim_status::Data => c"JIM_STATUS_DATA",
            jim_status::Cancelled => c"JIM_STATUS_CANCELLED",
            jim_status::Directory => c"JIM_STATUS_DIRECTORY",
            jim_status::Failed => c"JIM_STATUS_FAILED",
            jim_status::Panic => c"JIM_STATUS_PANIC",
        }
    }

    /// The C name of the value, e.g. `JIM_STATUS_OK`.
    pub fn name(self) -> &'static str {
        // The names are ASCII literals.
        self.c_name().to_str().unwrap_or("JIM_STATUS_UNKNOWN")
    }

    /// Every value, in numeric order.
    pub(crate) const ALL: [jim_status; 16] = [
        jim_status::Ok,
        jim_status::NullParameter,
        jim_status::InvalidUtf8,
        jim_status::InvalidJson,
        jim_status::InvalidRequest,
        jim_status::InvalidHandle,
        jim_status::EngineClosed,
        jim_status::WrongThread,
        jim_status::Runtime,
        jim_status::Database,
        jim_status::Schema,
        jim_status::Data,
        jim_status::Cancelled,
        jim_status::Directory,
        jim_status::Failed,
        jim_status::Panic,
    ];
}

impl From<&Error> for jim_status {
    fn from(e: &Error) -> Self {
        // A variant added to `Error` later maps to FAILED until it gets its own value here.
        #[allow(unreachable_patterns)]
        match e {
            Error::Config(_) => jim_status::InvalidRequest,
            Error::Row(_) => jim_status::Data,
            Error::Database(_) | Error::DatabaseUnavailable(_) => jim_status::Database,
            Error::Directory(_) => jim_status::Directory,
            Error::Schema(_) => jim_status::Schema,
            Error::Cancelled => jim_status::Cancelled,
            _ => jim_status::Failed,
        }
    }
}

/// The name of a status value as a static NUL-terminated string, e.g. `"JIM_STATUS_INVALID_JSON"`, or
/// `"JIM_STATUS_UNKNOWN"` for a number this library does not define. Never free the pointer. Safe to
/// call from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn jim_status_name(status: u32) -> *const c_char {
    jim_status::ALL
        .iter()
        .find(|s| **s as u32 == status)
        .map_or(c"JIM_STATUS_UNKNOWN", |s| s.c_name())
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_fixed() {
        // The ABI promises these numbers forever; a change here breaks every compiled host.
        let expected: [(jim_status, u32); 16] = [
            (jim_status::Ok, 0),
            (jim_status::NullParameter, 1),
            (jim_status::InvalidUtf8, 2),
            (jim_status::InvalidJson, 3),
            (jim_status::InvalidRequest, 4),
            (jim_status::InvalidHandle, 5),
            (jim_status::EngineClosed, 6),
            (jim_status::WrongThread, 7),
            (jim_status::Runtime, 8),
            (jim_status::Database, 20),
            (jim_status::Schema, 21),
            (jim_status::Data, 22),
            (jim_status::Cancelled, 23),
            (jim_status::Directory, 24),
            (jim_status::Failed, 29),
            (jim_status::Panic, 99),
        ];
        for (status, value) in expected {
            assert_eq!(status as u32, value, "{status:?}");
        }
        assert_eq!(jim_status::ALL.map(|s| s as u32), expected.map(|(_, v)| v));
    }

    #[test]
    fn names_match_the_header() {
        for status in jim_status::ALL {
            // SAFETY: jim_status_name returns a static NUL-terminated string.
            let c = unsafe { CStr::from_ptr(jim_status_name(status as u32)) };
            assert_eq!(c.to_str().unwrap(), status.name());
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(jim_status_name(12345)) };
        assert_eq!(unknown.to_str().unwrap(), "JIM_STATUS_UNKNOWN");
    }
}
