//! Cancellation handles: the host makes one per run (or shares one between runs), passes it to
//! `jim_engine_run` and fires it from any thread. These functions have no `out_error` parameter: their
//! only failures are NULL arguments and invalid handles, which the status says completely.

use tokio_util::sync::CancellationToken;

use super::boundary::{FfiResult, boundary, check_out, write_out};
use super::handle::Registry;
use super::status::jim_status;

/// A cancellation handle (opaque). Made by `jim_cancel_new`, fired by `jim_cancel_cancel`, released by
/// `jim_cancel_free`. Cancellation is one-way: once fired, a handle stays cancelled, and a run started
/// with it stops at once. The library never dereferences the pointer; it is checked against the live
/// handles, so a freed handle is reported, not used.
#[allow(non_camel_case_types)]
pub struct jim_cancel {
    _private: [u8; 0],
}

static CANCELS: Registry<CancellationToken> = Registry::new("jim_cancel");

/// The token behind a live cancellation handle.
pub(crate) fn token(cancel: *const jim_cancel, parameter: &str) -> FfiResult<CancellationToken> {
    CANCELS.get(cancel, parameter)
}

/// Makes a cancellation handle and writes it to `*out_cancel`.
///
/// Ownership: the caller owns the handle and releases it with `jim_cancel_free`. It may be freed while a
/// run that was given it is still going: the run keeps its own reference. `out_cancel` must not be NULL;
/// it is written only on success.
///
/// # Safety
/// `out_cancel` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_cancel_new(out_cancel: *mut *mut jim_cancel) -> jim_status {
    boundary(std::ptr::null_mut(), || {
        check_out(out_cancel, "out_cancel")?;
        let handle = CANCELS.insert(CancellationToken::new())?;
        // SAFETY: checked non-NULL; the host passed a writable `jim_cancel **`.
        unsafe { write_out(out_cancel, handle) };
        Ok(())
    })
}

/// Fires a cancellation handle: every run given this handle stops claiming new work, lets the directory
/// operations in flight finish (or time out), persists their outcomes, returns its unexecuted claims
/// to Pending and returns a result with `"cancelled": true`. Firing it again does nothing.
///
/// Thread safety: callable from any thread at any time, including from inside a callback of the run it
/// cancels. Does not block. Returns `JIM_STATUS_INVALID_HANDLE` for a freed handle.
#[unsafe(no_mangle)]
pub extern "C" fn jim_cancel_cancel(cancel: *const jim_cancel) -> jim_status {
    boundary(std::ptr::null_mut(), || {
        token(cancel, "cancel")?.cancel();
        Ok(())
    })
}

/// Writes whether the handle was fired to `*out_cancelled`. `out_cancelled` must not be NULL; it is
/// written only on success. Callable from any thread.
///
/// # Safety
/// `out_cancelled` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn jim_cancel_is_cancelled(
    cancel: *const jim_cancel,
    out_cancelled: *mut bool,
) -> jim_status {
    boundary(std::ptr::null_mut(), || {
        check_out(out_cancelled, "out_cancelled")?;
        let cancelled = token(cancel, "cancel")?.is_cancelled();
        // SAFETY: checked non-NULL; the host passed a writable `bool *`.
        unsafe { write_out(out_cancelled, cancelled) };
        Ok(())
    })
}

/// Releases a cancellation handle. NULL is a no-op. A handle freed already (or not a `jim_cancel`)
/// returns `JIM_STATUS_INVALID_HANDLE` and nothing happens. Freeing does not fire the handle: runs that
/// were given it keep running. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn jim_cancel_free(cancel: *mut jim_cancel) -> jim_status {
    boundary(std::ptr::null_mut(), || {
        if !cancel.is_null() {
            CANCELS.remove(cancel, "cancel")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_cancel_free() {
        let mut c: *mut jim_cancel = std::ptr::null_mut();
        // SAFETY (this test): every out-pointer is NULL or a live local.
        assert_eq!(unsafe { jim_cancel_new(&mut c) }, jim_status::Ok);
        assert!(!c.is_null());
        let mut fired = true;
        assert_eq!(
            unsafe { jim_cancel_is_cancelled(c, &mut fired) },
            jim_status::Ok
        );
        assert!(!fired);
        let t = token(c, "cancel").unwrap();
        assert_eq!(jim_cancel_cancel(c), jim_status::Ok);
        assert_eq!(jim_cancel_cancel(c), jim_status::Ok, "idempotent");
        assert!(t.is_cancelled());
        assert_eq!(
            unsafe { jim_cancel_is_cancelled(c, &mut fired) },
            jim_status::Ok
        );
        assert!(fired);
        assert_eq!(jim_cancel_free(c), jim_status::Ok);
        assert_eq!(jim_cancel_free(c), jim_status::InvalidHandle);
        assert_eq!(jim_cancel_cancel(c), jim_status::InvalidHandle);
        assert_eq!(jim_cancel_free(std::ptr::null_mut()), jim_status::Ok);
        assert_eq!(
            unsafe { jim_cancel_new(std::ptr::null_mut()) },
            jim_status::NullParameter
        );
        assert_eq!(
            unsafe { jim_cancel_is_cancelled(std::ptr::null(), &mut fired) },
            jim_status::NullParameter
        );
    }
}
