//! # jim-export-testkit
//!
//! Real servers and JIM-shaped data for jim-export's tests, examples and benchmarks:
//!
//! - [`postgres`]: a throwaway PostgreSQL 15 cluster with `pg_stat_statements`, and JIM's schema
//!   fixture in a template database from which each test takes its own database;
//! - [`slapd`]: a throwaway OpenLDAP slapd (mdb, `sortvals member`, no memberof/refint, StartTLS and
//!   LDAPS with a generated CA, ldapi);
//! - [`samba`]: a throwaway Samba Active Directory domain controller (LDAPS and StartTLS with a
//!   generated CA, one per machine at a time behind a file lock; skipped outside CI when it cannot
//!   run);
//! - [`ds389`]: a throwaway 389 Directory Server (memberOf, referential integrity and entryUUID
//!   plugins, StartTLS and LDAPS with a generated CA; copied from a per-machine template; skipped
//!   outside CI when it cannot run);
//! - [`tls`]: the generated test CA and server certificates;
//! - [`seed`]: deterministic seed data sized by JIM's scale templates, JIM's confirming import, and
//!   follow-up changes;
//! - [`proxy`]: a TCP proxy injecting round-trip time, pauses, dropped and refused connections;
//! - [`support`]: what the integration tests share on top of these (harnesses, row builders,
//!   assertions), one submodule per concept.
//!
//! Servers are stopped by PID when dropped, and a watchdog stops them when the test process dies.
//! Environment variables point the harness at existing servers instead (see each module).

pub mod ds389;
pub mod error;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod samba;
pub mod seed;
pub mod slapd;
pub mod support;
pub mod tls;

pub use ds389::{Ds389, Ds389Options};
pub use error::{Result, TestkitError};
pub use postgres::{JimDatabase, Postgres, PostgresOptions};
pub use proxy::{LatencyProxy, ProxyHandle, ProxyStats};
pub use samba::SambaAd;
pub use seed::{SeedOptions, SeededSystem, Template};
pub use slapd::{Slapd, SlapdOptions};
pub use tls::{ServerCert, TestCa, TlsFiles};
