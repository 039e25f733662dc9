//! # jim-export
//!
//! A Rust export engine for JIM (an open-source identity manager). It reads JIM's pending-export queue
//! straight from JIM's PostgreSQL database, applies the changes to LDAP directories with pipelined,
//! concurrent operations, and writes the outcomes back in a few batched statements.
//!
//! The data flows one way: **claim → resolve → plan → execute → persist → report**. This crate holds
//! the domain model ([`model`]), the host-facing configuration ([`config`]) and the stages of that
//! pipeline: the queue's claim, reference resolution and persist in [`store`], the pure planning in
//! [`plan`], execution against the directory in [`directory`], the run that drives them in
//! [`engine`] and what it reports in [`report`]; `ffi` exposes it to C/.NET hosts and UniFFI
//! (Python, Kotlin).

#![deny(unsafe_code)]

/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod directory;
/// cbindgen:ignore
pub mod engine;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod fence;
pub mod ffi;
/// cbindgen:ignore
pub mod model;
/// cbindgen:ignore
pub mod plan;
/// cbindgen:ignore
pub mod report;
/// cbindgen:ignore
pub mod schema;
/// cbindgen:ignore
pub mod store;

pub use error::{Error, Result, RowError};
/// One export's outcome, the boundary between execution and persistence; it lives with the store
/// that persists it ([`store::outcome`]).
pub use store::outcome;

#[cfg(feature = "uniffi")]
uniffi::setup_scaffolding!();

/// This crate's version, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
