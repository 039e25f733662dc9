//! Foreign interfaces: the C ABI (`c`) that .NET P/Invoke and C hosts use, and the UniFFI exports
//! (`uniffi`) that the Python and Kotlin bindings are generated from. These layers only convert
//! and delegate; the core never imports them.

pub mod c;
#[cfg(feature = "uniffi")]
pub mod uniffi;
