//! UniFFI's `uniffi-bindgen` command, pinned to the same UniFFI version as the `jim-export` library
//! (a bindgen of another version reads the library's metadata wrongly or refuses it).
//!
//! It is its own workspace member so that the library never depends on the generator (clap,
//! `uniffi_bindgen`, goblin, askama). Generate bindings from the built library:
//!
//! ```text
//! cargo run -p uniffi-bindgen -- generate target/debug/libjim_export.so --language kotlin \
//!     --out-dir bindings/kotlin --no-format
//! ```
//!
//! maturin finds this binary itself when it builds the Python wheel (`bindings/python`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
