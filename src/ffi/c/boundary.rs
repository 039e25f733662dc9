//! What every entry point does at the boundary: catch panics, check pointers and UTF-8, write
//! out-parameters only on success and the error message only on failure, and hand out strings that only
//! `jim_string_free` takes back.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, PoisonError};

use super::status::jim_status;
use crate::ffi::host::panic_message;

/// An error on its way to the host: a status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FfiError {
    pub(crate) status: jim_status,
    pub(crate) message: String,
}

impl FfiError {
    pub(crate) fn new(status: jim_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(parameter: &str) -> Self {
        Self::new(
            jim_status::NullParameter,
            format!("{parameter} must not be NULL"),
        )
    }
}

impl From<crate::Error> for FfiError {
    fn from(e: crate::Error) -> Self {
        Self::new(jim_status::from(&e), e.to_string())
    }
}

pub(crate) type FfiResult<T> = Result<T, FfiError>;

/// Runs the body of an entry point: a panic becomes `JIM_STATUS_PANIC`, an `Err` its status, and the
/// message goes to `out_error` when the host passed one. The body writes its out-parameters itself, last,
/// and only when everything else succeeded.
pub(crate) fn boundary(
    out_error: *mut *mut c_char,
    body: impl FnOnce() -> FfiResult<()>,
) -> jim_status {
    let outcome = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(outcome) => outcome,
        Err(payload) => Err(FfiError::new(
            jim_status::Panic,
            format!(
                "internal error (a bug in jim-export): {}",
                panic_message(payload.as_ref())
            ),
        )),
    };
    match outcome {
        Ok(()) => jim_status::Ok,
        Err(e) => {
            if !out_error.is_null() {
                // Allocating the message is the last thing that could panic; never let it escape.
                let message = catch_unwind(|| c_string(&e.message)).unwrap_or(std::ptr::null_mut());
                // SAFETY: the host passed a writable `char **` (checked non-NULL above).
                unsafe { *out_error = message };
            }
            e.status
        }
    }
}

/// A required NUL-terminated UTF-8 string argument, borrowed for the call.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and unchanged during the call.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, parameter: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::null(parameter));
    }
    // SAFETY: the caller guarantees a NUL-terminated string (see above).
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| {
        FfiError::new(
            jim_status::InvalidUtf8,
            format!(
                "{parameter} is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// An optional NUL-terminated UTF-8 string argument (NULL = absent).
///
/// # Safety
/// As for [`arg_str`].
pub(crate) unsafe fn arg_opt_str<'a>(
    ptr: *const c_char,
    parameter: &str,
) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { arg_str(ptr, parameter) }.map(Some)
    }
}

/// Checks that a required out-parameter is not NULL, before any work is done.
pub(crate) fn check_out<T>(ptr: *mut T, parameter: &str) -> FfiResult<()> {
    if ptr.is_null() {
        Err(FfiError::null(parameter))
    } else {
        Ok(())
    }
}

/// Writes an out-parameter.
///
/// # Safety
/// `ptr` is non-NULL (see [`check_out`]) and writable.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: forwarded from the caller.
    unsafe { ptr.write(value) };
}

/// Addresses of the strings handed to the host and not yet freed, so that `jim_string_free` refuses a
/// double free or a foreign pointer instead of corrupting the heap.
static LIVE_STRINGS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

/// A library-owned copy of `s` for the host, freed by `jim_string_free`. NUL characters (which no JSON
/// document and no message of ours contains) are shown as `\0`.
pub(crate) fn c_string(s: &str) -> *mut c_char {
    let c = CString::new(s)
        .unwrap_or_else(|_| CString::new(s.replace('\0', "\\0")).unwrap_or_default());
    let ptr = c.into_raw();
    LIVE_STRINGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(ptr.addr());
    ptr
}

/// Takes back a string made by [`c_string`]; false when `ptr` is not a live one.
pub(crate) fn free_c_string(ptr: *mut c_char) -> bool {
    let live = LIVE_STRINGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&ptr.addr());
    if live {
        // SAFETY: the address was produced by `CString::into_raw` in `c_string` and has not been taken
        // back since (it was still registered).
        drop(unsafe { CString::from_raw(ptr) });
    }
    live
}

/// Frees a string returned by this library (a result document, an error message). NULL is a no-op
/// (`JIM_STATUS_OK`).
///
/// Returns `JIM_STATUS_INVALID_HANDLE`, and frees nothing, when `s` is not a string this library
/// returned or was freed already: a double free is reported instead of corrupting the heap. Never pass
/// such strings to `free()`, and never free the static strings of `jim_version` or `jim_status_name`.
/// Safe to call from any thread, including inside callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn jim_string_free(s: *mut c_char) -> jim_status {
    boundary(std::ptr::null_mut(), || {
        if s.is_null() || free_c_string(s) {
            Ok(())
        } else {
            Err(FfiError::new(
                jim_status::InvalidHandle,
                "not a string returned by jim-export, or freed already",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_a_status_and_a_message() {
        let mut error: *mut c_char = std::ptr::null_mut();
        let status = boundary(&mut error, || panic!("boom {}", 42));
        assert_eq!(status, jim_status::Panic);
        // SAFETY: boundary wrote a string made by c_string.
        let message = unsafe { CStr::from_ptr(error) }
            .to_str()
            .unwrap()
            .to_string();
        assert!(message.contains("boom 42"), "{message}");
        assert_eq!(jim_string_free(error), jim_status::Ok);
        assert_eq!(
            jim_string_free(error),
            jim_status::InvalidHandle,
            "double free refused"
        );
    }

    #[test]
    fn out_error_is_written_only_on_failure() {
        let sentinel = std::ptr::dangling_mut::<c_char>();
        let mut error = sentinel;
        assert_eq!(boundary(&mut error, || Ok(())), jim_status::Ok);
        assert_eq!(error, sentinel);
        let status = boundary(&mut error, || Err(FfiError::null("request_json")));
        assert_eq!(status, jim_status::NullParameter);
        assert_ne!(error, sentinel);
        // SAFETY: boundary wrote a string made by c_string.
        assert_eq!(
            unsafe { CStr::from_ptr(error) }.to_str().unwrap(),
            "request_json must not be NULL"
        );
        assert_eq!(jim_string_free(error), jim_status::Ok);
        // A NULL out_error is allowed: the status alone reports the failure.
        assert_eq!(
            boundary(std::ptr::null_mut(), || Err(FfiError::null("x"))),
            jim_status::NullParameter
        );
    }

    #[test]
    fn strings_are_checked() {
        let bad = [0x7bu8, 0xff, 0xfe, 0x00];
        // SAFETY: a NUL-terminated buffer that outlives the call.
        let e = unsafe { arg_str(bad.as_ptr().cast(), "request_json") }.unwrap_err();
        assert_eq!(e.status, jim_status::InvalidUtf8);
        assert!(e.message.contains("offset 1"), "{}", e.message);
        // SAFETY: NULL is allowed.
        assert_eq!(
            unsafe { arg_opt_str(std::ptr::null(), "options_json") },
            Ok(None)
        );
        // SAFETY: NULL is reported.
        let e = unsafe { arg_str(std::ptr::null(), "request_json") }.unwrap_err();
        assert_eq!(e.status, jim_status::NullParameter);
        let s = c_string("a\0b");
        // SAFETY: c_string returns a NUL-terminated string.
        assert_eq!(unsafe { CStr::from_ptr(s) }.to_str().unwrap(), "a\\0b");
        assert_eq!(jim_string_free(s), jim_status::Ok);
        assert_eq!(jim_string_free(std::ptr::null_mut()), jim_status::Ok);
        let mut local = [0 as c_char; 4];
        assert_eq!(
            jim_string_free(local.as_mut_ptr()),
            jim_status::InvalidHandle
        );
    }
}
