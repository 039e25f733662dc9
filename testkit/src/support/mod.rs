//! What jim-export's integration tests (and the benchmark examples) share, one submodule per concept:
//!
//! - [`engine`]: an [`engine::Env`] (a JIM database, a slapd, a seeded connected system) to run the
//!   engine against, its events, and reads and assertions of what the directory holds;
//! - [`directory`]: JIM-shaped object types, pending exports and CSOs for driving the `directory`
//!   layer on its own, one OU per test;
//! - [`store`]: a row builder that inserts exactly the JIM rows a store case needs and reads them
//!   back whole;
//! - [`watch`]: staging pending exports while a watch runs, as JIM does;
//! - [`crash`]: a child process running one export to be killed, a scenario's servers behind latency
//!   proxies, and the convergence checks every crash scenario ends with;
//! - [`ad`]: the Samba AD counterpart of [`engine`];
//! - [`ffi`]: the library cargo built, the foreign toolchains, and child processes with a deadline.
//!
//! This lives in the testkit rather than in a `tests/support` module because each file in `tests/` is
//! its own crate: a module it includes with `mod` has every item it does not use reported as dead
//! code, which pushed each helper file into a blanket `#![allow(dead_code)]`. In this library (a
//! dev-dependency) public items are its interface, so nothing is reported, and the examples use it
//! like any crate instead of including files from `tests/` with `#[path]`.
//!
//! These helpers fail by panicking with a message, as assertions do: they run only inside tests and
//! benchmarks, where a panic is the failure report.

pub mod ad;
pub mod crash;
pub mod directory;
pub mod engine;
pub mod ffi;
pub mod store;
pub mod watch;
