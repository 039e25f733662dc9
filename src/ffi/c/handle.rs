//! Opaque handles checked against a registry of live handles.
//!
//! A handle the host holds is a token, not the address of Rust memory: the library never dereferences
//! it. Every call looks the token up in the registry of its handle type first, so a freed handle, a
//! double free, a handle of another type or a stray pointer is reported as `JIM_STATUS_INVALID_HANDLE`
//! instead of touching freed memory. Tokens come from one counter and are never reused, so a freed
//! handle stays invalid even after new handles are made (unlike heap addresses, which malloc reuses).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::boundary::{FfiError, FfiResult};
use super::status::jim_status;

/// The next token; 0 is never handed out (it is NULL).
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

/// The live handles of one type: token → the shared state behind the handle.
pub(crate) struct Registry<T> {
    /// The C type name, for messages (`jim_engine`).
    type_name: &'static str,
    live: Mutex<BTreeMap<usize, T>>,
}

impl<T: Clone> Registry<T> {
    pub(crate) const fn new(type_name: &'static str) -> Self {
        Self {
            type_name,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers `value` and returns its handle.
    pub(crate) fn insert<H>(&self, value: T) -> FfiResult<*mut H> {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        if token == 0 || token == usize::MAX {
            // Only reachable after 2^64 (2^32 on 32-bit targets) handles; refuse rather than reuse.
            return Err(FfiError::new(
                jim_status::Runtime,
                "no more handles can be created in this process",
            ));
        }
        self.lock().insert(token, value);
        Ok(std::ptr::without_provenance_mut(token))
    }

    /// The state behind a live handle.
    pub(crate) fn get<H>(&self, handle: *const H, parameter: &str) -> FfiResult<T> {
        if handle.is_null() {
            return Err(FfiError::null(parameter));
        }
        self.lock()
            .get(&handle.addr())
            .cloned()
            .ok_or_else(|| self.invalid(parameter))
    }

    /// Unregisters a live handle and returns its state; later calls with it fail.
    pub(crate) fn remove<H>(&self, handle: *const H, parameter: &str) -> FfiResult<T> {
        if handle.is_null() {
            return Err(FfiError::null(parameter));
        }
        self.lock()
            .remove(&handle.addr())
            .ok_or_else(|| self.invalid(parameter))
    }

    fn invalid(&self, parameter: &str) -> FfiError {
        FfiError::new(
            jim_status::InvalidHandle,
            format!(
                "{parameter} is not a live {}: it was freed already, or it is not a handle of this type",
                self.type_name
            ),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, T>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;

    #[test]
    fn freed_and_foreign_handles_are_refused() {
        let reg: Registry<u32> = Registry::new("jim_thing");
        let other: Registry<u32> = Registry::new("jim_other");
        let h: *mut A = reg.insert(7).unwrap();
        assert_eq!(reg.get(h, "thing").unwrap(), 7);
        assert_eq!(
            other.get(h, "thing").unwrap_err().status,
            jim_status::InvalidHandle,
            "a handle of another type"
        );
        assert_eq!(reg.remove(h, "thing").unwrap(), 7);
        let e = reg.get(h, "thing").unwrap_err();
        assert_eq!(e.status, jim_status::InvalidHandle);
        assert!(
            e.message.contains("thing is not a live jim_thing"),
            "{}",
            e.message
        );
        assert_eq!(
            reg.remove(h, "thing").unwrap_err().status,
            jim_status::InvalidHandle
        );
        let h2: *mut A = reg.insert(8).unwrap();
        assert_ne!(h, h2, "tokens are never reused");
        assert_eq!(
            reg.get(std::ptr::null::<A>(), "thing").unwrap_err().status,
            jim_status::NullParameter
        );
    }
}
