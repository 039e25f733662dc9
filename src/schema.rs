//! The version of JIM's schema this engine was built against.

/// The latest EF Core migration at JIM commit `199d33b38`, which this engine's queries were written and
/// tested against (`../shared/jim/schema.md` §1.9). A database whose `__EFMigrationsHistory` lacks it is
/// refused unless the caller overrides the check.
pub const EXPECTED_MIGRATION: &str = "20260821115123_AddSchemaRefreshRemovalWorkerTask";

/// The EF Core product version JIM records beside its migrations (EF Core 10.0.11).
pub const EF_PRODUCT_VERSION: &str = "10.0.11";
