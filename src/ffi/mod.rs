//! Foreign interfaces: the C ABI (`c`) that .NET P/Invoke and C hosts use, and the UniFFI exports
//! (`uniffi`) that the Python and Kotlin bindings are generated from. These layers only convert
//! and delegate; the core never imports them. Both drive one hosted engine (`host`): the runtime,
//! the calls in progress and the graceful close.

pub mod c;
mod host;
#[cfg(feature = "uniffi")]
pub mod uniffi;
