//! The records and enums UniFFI exposes, mirroring the engine's request, result, progress, batch
//! report and queue types field for field, with the conversions to and from those types. Nothing here
//! decides anything: each conversion moves fields across, turning timestamps into `SystemTime`, ids into
//! strings and secrets into [`Secret`] objects.
//!
//! Field defaults (`#[uniffi(default = ..)]`) repeat the engine's defaults so hosts may leave fields
//! out; [`super::default_run_options`] and friends return the engine's own values, and the Python tests
//! check that the two agree. Enum fields the engine defaults (delete behaviour, container scope) are
//! optional here, because UniFFI has no default for an enum field.

use std::sync::Arc;
use std::time::SystemTime;

use uuid::Uuid;

use crate::config;
use crate::engine::LogLevel;
use crate::model::{
    ActivityRunProfileExecutionItemErrorType as CoreRunHistoryErrorType,
    ConnectedSystemContainerScope as CoreContainerScope,
    ConnectedSystemExportErrorType as CoreExportErrorType, ExportPhase as CoreExportPhase,
    ObjectChangeType as CoreObjectChangeType, PendingExportChangeType as CoreChangeType,
    PendingExportStatus as CorePendingExportStatus,
    UnresolvedReferenceHandling as CoreUnresolvedReferenceHandling,
};
use crate::report;
use crate::store;

use config::{
    DatabaseTlsMode as CoreDatabaseTlsMode, DeleteBehaviour as CoreDeleteBehaviour,
    Dialect as CoreDialect, DirectoryTlsMode as CoreDirectoryTlsMode,
};
use report::ItemStatus as CoreItemStatus;

/// Declares an FFI enum with the same variants as an engine enum, and the conversions both ways.
/// The optional `repr(i32)` form keeps JIM's numbers, so Kotlin's `.value` and Python's `.value` are
/// the integers JIM stores.
macro_rules! mirror_enum {
    (
        $(#[$meta:meta])*
        $name:ident mirrors $core:ident $(as $repr:ident)? {
            $( $(#[$vmeta:meta])* $variant:ident $(= $value:tt)? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::uniffi::Enum)]
        $(#[repr($repr)])?
        pub enum $name {
            $( $(#[$vmeta])* $variant $(= $value)? ),+
        }

        impl From<$core> for $name {
            fn from(value: $core) -> Self {
                match value {
                    $( $core::$variant => $name::$variant ),+
                }
            }
        }

        impl From<$name> for $core {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $core::$variant ),+
                }
            }
        }
    };
}

// ------------------------------------------------------------------------------------------------
// Secrets

/// A password or a connection string holding one. It is an object rather than a string so that the
/// records carrying it (Kotlin data classes, Python dataclasses) never print it: its text form is
/// `***` and nothing reads it back out.
#[derive(uniffi::Object)]
#[uniffi::export(Display, Debug)]
pub struct Secret {
    value: config::Secret,
}

#[uniffi::export]
impl Secret {
    /// Wraps `value` (e.g. a bind password decrypted by the host).
    #[uniffi::constructor]
    pub fn new(value: String) -> Arc<Self> {
        Arc::new(Self {
            value: config::Secret::new(value),
        })
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Secret {
    fn wrap(value: &config::Secret) -> Arc<Self> {
        Arc::new(Self {
            value: value.clone(),
        })
    }
}

// ------------------------------------------------------------------------------------------------
// The request

mirror_enum! {
    /// PostgreSQL's `sslmode`. Only `VerifyCa` and `VerifyFull` check the server's certificate.
    DatabaseTlsMode mirrors CoreDatabaseTlsMode {
        /// Plain TCP.
        Disable,
        /// TLS when the server offers it, unverified.
        Prefer,
        /// TLS, unverified.
        Require,
        /// TLS, certificate chain verified.
        VerifyCa,
        /// TLS, certificate chain and host name verified.
        VerifyFull,
    }
}

/// TLS to PostgreSQL, overriding the connection string's settings.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DatabaseTls {
    /// The mode; when absent, the connection string's mode (or `prefer`) applies.
    #[uniffi(default = None)]
    pub mode: Option<DatabaseTlsMode>,
    /// A CA certificate (PEM) to verify the server against.
    #[uniffi(default = None)]
    pub ca_pem: Option<String>,
    /// A file holding the CA certificate (PEM).
    #[uniffi(default = None)]
    pub ca_file: Option<String>,
}

/// How to reach JIM's database.
#[derive(Debug, Clone, uniffi::Record)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database` or the Npgsql form JIM's worker holds,
    /// `Host=…;Port=…;Username=…;Password=…;Database=…`.
    pub connection: Arc<Secret>,
    /// TLS settings that override those in the connection string.
    #[uniffi(default)]
    pub tls: DatabaseTls,
    /// Connections the engine may hold open (default 4).
    #[uniffi(default = 4)]
    pub max_connections: u32,
    /// Connect timeout in milliseconds (default 10,000).
    #[uniffi(default = 10000)]
    pub connect_timeout_ms: u64,
    /// The longest a statement may run, in milliseconds (default 30,000).
    #[uniffi(default = 30000)]
    pub statement_timeout_ms: u64,
    /// How long statements that failed because the database went away are retried, in milliseconds
    /// (default 120,000).
    #[uniffi(default = 120000)]
    pub retry_window_ms: u64,
    /// Server-side TCP keepalive idle time in seconds (default 60; 0: the server's setting).
    #[uniffi(default = 60)]
    pub keepalive_seconds: u32,
}

mirror_enum! {
    /// How TLS is established with the directory.
    DirectoryTlsMode mirrors CoreDirectoryTlsMode {
        /// Plain LDAP.
        None,
        /// LDAP upgraded with StartTLS.
        StartTls,
        /// TLS from the first byte (`ldaps://`).
        Ldaps,
    }
}

/// TLS to the directory. Certificate verification is on unless `verify` is false.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DirectoryTls {
    /// `None`, `StartTls` or `Ldaps`; when absent, `Ldaps` for `ldaps://` URLs and `None` otherwise.
    #[uniffi(default = None)]
    pub mode: Option<DirectoryTlsMode>,
    /// A CA certificate (PEM) to verify the server against, instead of the system's roots.
    #[uniffi(default = None)]
    pub ca_pem: Option<String>,
    /// A file holding the CA certificate (PEM).
    #[uniffi(default = None)]
    pub ca_file: Option<String>,
    /// Verify the server's certificate (default true).
    #[uniffi(default = true)]
    pub verify: bool,
}

/// How the engine authenticates to the directory.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum Bind {
    /// Simple bind with a DN (or, for AD, a UPN) and a password decrypted by the host.
    Simple {
        /// The bind DN.
        dn: String,
        /// The password.
        password: Arc<Secret>,
    },
    /// SASL EXTERNAL: the identity of the `ldapi://` peer (or TLS client certificate).
    SaslExternal,
    /// NTLM (SASL GSS-SPNEGO with NTLMSSP) for Active Directory; use it over TLS.
    Ntlm {
        /// The account name; without `domain` also `DOMAIN` backslash `user` or `user@dns.domain`.
        username: String,
        /// The NetBIOS domain; with it the engine binds as `DOMAIN` backslash `username`.
        domain: Option<String>,
        /// The password.
        password: Arc<Secret>,
    },
}

mirror_enum! {
    /// The kind of directory; detected from the rootDSE unless given.
    Dialect mirrors CoreDialect {
        /// Windows Active Directory.
        ActiveDirectory,
        /// Samba as an AD domain controller.
        SambaAd,
        /// OpenLDAP slapd.
        OpenLdap,
        /// 389 Directory Server.
        Ds389,
        /// Anything else.
        Generic,
    }
}

/// How to reach and authenticate to the directory.
#[derive(Debug, Clone, uniffi::Record)]
pub struct DirectoryConfig {
    /// `ldap://host:port`, `ldaps://host:port` or `ldapi://<url-encoded socket path>`; several URLs
    /// name servers of one directory, the first that answers is used.
    pub urls: Vec<String>,
    /// How to bind.
    pub bind: Bind,
    /// TLS settings.
    #[uniffi(default)]
    pub tls: DirectoryTls,
    /// Time allowed to connect, StartTLS and bind, in milliseconds (default 10,000).
    #[uniffi(default = 10000)]
    pub connect_timeout_ms: u64,
    /// Time allowed for one operation, in milliseconds (default 60,000).
    #[uniffi(default = 60000)]
    pub operation_timeout_ms: u64,
    /// The directory's dialect; detected from the rootDSE when absent.
    #[uniffi(default = None)]
    pub dialect: Option<Dialect>,
    /// Send a simple or NTLM bind's password over `ldap://` without TLS, in clear (default false:
    /// refused). For test directories on a trusted host; every such run logs a warning.
    #[uniffi(default = false)]
    pub allow_password_without_tls: bool,
}

mirror_enum! {
    /// JIM's `Delete Behaviour` setting.
    DeleteBehaviour mirrors CoreDeleteBehaviour {
        /// Send a Delete.
        Delete,
        /// Disable the entry through the disable attribute.
        Disable,
    }
}

mirror_enum! {
    /// `ConnectedSystems.UnresolvedReferenceHandling` (JIM's numbers).
    UnresolvedReferenceHandling mirrors CoreUnresolvedReferenceHandling as i32 {
        /// Report an error.
        Error = 0,
        /// Warn.
        Warn = 1,
        /// Ignore.
        Ignore = 2,
    }
}

mirror_enum! {
    /// `ConnectedSystemContainers.Scope` (JIM's numbers).
    ConnectedSystemContainerScope mirrors CoreContainerScope as i32 {
        /// The container and everything below it.
        Subtree = 0,
        /// The container's direct children.
        OneLevel = 1,
    }
}

/// One selected (or excluded) container of the managed scope.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ScopeContainer {
    /// The container's DN.
    pub dn: String,
    /// Subtree when absent.
    #[uniffi(default = None)]
    pub scope: Option<ConnectedSystemContainerScope>,
    /// True for an exclusion; the most specific container covering a DN decides.
    #[uniffi(default = false)]
    pub excluded: bool,
}

/// The connected system's LDAP export settings, as JIM's LDAP connector holds them.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ExportSettings {
    /// Delete or disable; `Delete` when absent.
    #[uniffi(default = None)]
    pub delete_behaviour: Option<DeleteBehaviour>,
    /// The attribute a disable sets (`userAccountControl` by default).
    #[uniffi(default = "userAccountControl")]
    pub disable_attribute: String,
    /// Create missing parent containers of a Create or a move.
    #[uniffi(default = false)]
    pub create_containers_as_needed: bool,
    /// The member kept in `groupOfNames` groups that would otherwise be empty.
    #[uniffi(default = "cn=placeholder")]
    pub placeholder_member_dn: String,
    /// The most values of one attribute in one Add or Modify (JIM clamps to 10-5000).
    #[uniffi(default = 1000)]
    pub modify_batch_size: u32,
    /// The containers the engine may write to; empty allows everything.
    #[uniffi(default)]
    pub managed_scope: Vec<ScopeContainer>,
    /// How unresolvable references are reported; the connected system's setting when absent.
    #[uniffi(default = None)]
    pub unresolved_reference_handling: Option<UnresolvedReferenceHandling>,
}

/// How a run behaves. Absent concurrency fields take the dialect's defaults.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RunOptions {
    /// Pending exports claimed per statement (default 100).
    #[uniffi(default = 100)]
    pub page_size: u32,
    /// Outcomes persisted per statement at most (default 100).
    #[uniffi(default = 100)]
    pub flush_size: u32,
    /// A partial flush is written after this many milliseconds (default 250).
    #[uniffi(default = 250)]
    pub flush_interval_ms: u64,
    /// Directory connections.
    #[uniffi(default = None)]
    pub connections: Option<u32>,
    /// Outstanding operations per connection.
    #[uniffi(default = None)]
    pub in_flight_per_connection: Option<u32>,
    /// True (the default) for an in-flight limit that adapts to the directory's pace, between
    /// `min_in_flight` and `max_in_flight`; false for a fixed one (the JSON's `"concurrency"`).
    #[uniffi(default = true)]
    pub adaptive_concurrency: bool,
    /// Cap on outstanding operations over all connections: the limit when concurrency is fixed,
    /// the ceiling of the adaptive limit otherwise.
    #[uniffi(default = None)]
    pub max_in_flight: Option<u32>,
    /// The floor of the adaptive limit (default 1).
    #[uniffi(default = None)]
    pub min_in_flight: Option<u32>,
    /// Cap on directory operations per second.
    #[uniffi(default = None)]
    pub ops_per_second: Option<u32>,
    /// Seconds after which a row left `Executing` by a crashed run may be claimed again (default 900).
    #[uniffi(default = 900)]
    pub lease_seconds: u64,
    /// In-run retries of an operation that met a transient condition (default 3).
    #[uniffi(default = 3)]
    pub max_operation_retries: u32,
    /// Plan and report without writing to the directory or the database.
    #[uniffi(default = false)]
    pub dry_run: bool,
    /// Run even when JIM's schema lacks the migration this engine was built against.
    #[uniffi(default = false)]
    pub skip_schema_check: bool,
    /// Least interval between progress events, in milliseconds (default 500).
    #[uniffi(default = 500)]
    pub progress_interval_ms: u64,
    /// How far the directory's clock may be behind the database's, in seconds (default 300): a
    /// re-attempted Create adopts an existing entry only if it was created after its first attempt.
    #[uniffi(default = 300)]
    pub clock_skew_seconds: u64,
    /// The least severe log record the run hands the listener's `on_log`; `Debug` when absent.
    #[uniffi(default = None)]
    pub log_level: Option<LogLevel>,
}

/// Everything one export run needs.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ExportRequest {
    /// JIM's PostgreSQL database.
    pub database: DatabaseConfig,
    /// `ConnectedSystems.Id` of the system to export.
    pub connected_system_id: i32,
    /// The target directory.
    pub directory: DirectoryConfig,
    /// The system's LDAP export settings.
    #[uniffi(default)]
    pub settings: ExportSettings,
    /// Run options.
    #[uniffi(default)]
    pub options: RunOptions,
}

impl From<DatabaseTls> for config::DatabaseTls {
    fn from(t: DatabaseTls) -> Self {
        Self {
            mode: t.mode.map(Into::into),
            ca_pem: t.ca_pem,
            ca_file: t.ca_file,
        }
    }
}

impl From<config::DatabaseTls> for DatabaseTls {
    fn from(t: config::DatabaseTls) -> Self {
        Self {
            mode: t.mode.map(Into::into),
            ca_pem: t.ca_pem,
            ca_file: t.ca_file,
        }
    }
}

impl From<DatabaseConfig> for config::DatabaseConfig {
    fn from(d: DatabaseConfig) -> Self {
        let mut c = config::DatabaseConfig::new(d.connection.value.expose());
        c.tls = d.tls.into();
        c.max_connections = d.max_connections;
        c.connect_timeout_ms = d.connect_timeout_ms;
        c.statement_timeout_ms = d.statement_timeout_ms;
        c.retry_window_ms = d.retry_window_ms;
        c.keepalive_seconds = d.keepalive_seconds;
        c
    }
}

impl From<config::DatabaseConfig> for DatabaseConfig {
    fn from(d: config::DatabaseConfig) -> Self {
        Self {
            connection: Secret::wrap(&d.connection),
            tls: d.tls.into(),
            max_connections: d.max_connections,
            connect_timeout_ms: d.connect_timeout_ms,
            statement_timeout_ms: d.statement_timeout_ms,
            retry_window_ms: d.retry_window_ms,
            keepalive_seconds: d.keepalive_seconds,
        }
    }
}

impl From<DirectoryTls> for config::DirectoryTls {
    fn from(t: DirectoryTls) -> Self {
        Self {
            mode: t.mode.map(Into::into),
            ca_pem: t.ca_pem,
            ca_file: t.ca_file,
            verify: t.verify,
        }
    }
}

impl From<config::DirectoryTls> for DirectoryTls {
    fn from(t: config::DirectoryTls) -> Self {
        Self {
            mode: t.mode.map(Into::into),
            ca_pem: t.ca_pem,
            ca_file: t.ca_file,
            verify: t.verify,
        }
    }
}

impl From<Bind> for config::Bind {
    fn from(b: Bind) -> Self {
        match b {
            Bind::Simple { dn, password } => config::Bind::Simple {
                dn,
                password: password.value.clone(),
            },
            Bind::SaslExternal => config::Bind::SaslExternal,
            Bind::Ntlm {
                username,
                domain,
                password,
            } => config::Bind::Ntlm {
                username,
                domain,
                password: password.value.clone(),
            },
        }
    }
}

impl From<config::Bind> for Bind {
    fn from(b: config::Bind) -> Self {
        match b {
            config::Bind::Simple { dn, password } => Bind::Simple {
                dn,
                password: Secret::wrap(&password),
            },
            config::Bind::SaslExternal => Bind::SaslExternal,
            config::Bind::Ntlm {
                username,
                domain,
                password,
            } => Bind::Ntlm {
                username,
                domain,
                password: Secret::wrap(&password),
            },
        }
    }
}

impl From<DirectoryConfig> for config::DirectoryConfig {
    fn from(d: DirectoryConfig) -> Self {
        Self {
            urls: d.urls,
            tls: d.tls.into(),
            bind: d.bind.into(),
            connect_timeout_ms: d.connect_timeout_ms,
            operation_timeout_ms: d.operation_timeout_ms,
            dialect: d.dialect.map(Into::into),
            allow_password_without_tls: d.allow_password_without_tls,
        }
    }
}

impl From<config::DirectoryConfig> for DirectoryConfig {
    fn from(d: config::DirectoryConfig) -> Self {
        Self {
            urls: d.urls,
            bind: d.bind.into(),
            tls: d.tls.into(),
            connect_timeout_ms: d.connect_timeout_ms,
            operation_timeout_ms: d.operation_timeout_ms,
            dialect: d.dialect.map(Into::into),
            allow_password_without_tls: d.allow_password_without_tls,
        }
    }
}

impl From<ScopeContainer> for config::ScopeContainer {
    fn from(c: ScopeContainer) -> Self {
        Self {
            dn: c.dn,
            scope: c.scope.map_or(CoreContainerScope::Subtree, Into::into),
            excluded: c.excluded,
        }
    }
}

impl From<config::ScopeContainer> for ScopeContainer {
    fn from(c: config::ScopeContainer) -> Self {
        Self {
            dn: c.dn,
            scope: Some(c.scope.into()),
            excluded: c.excluded,
        }
    }
}

impl From<ExportSettings> for config::ExportSettings {
    fn from(s: ExportSettings) -> Self {
        Self {
            delete_behaviour: s.delete_behaviour.map(Into::into).unwrap_or_default(),
            disable_attribute: s.disable_attribute,
            create_containers_as_needed: s.create_containers_as_needed,
            placeholder_member_dn: s.placeholder_member_dn,
            modify_batch_size: s.modify_batch_size,
            managed_scope: s.managed_scope.into_iter().map(Into::into).collect(),
            unresolved_reference_handling: s.unresolved_reference_handling.map(Into::into),
        }
    }
}

impl From<config::ExportSettings> for ExportSettings {
    fn from(s: config::ExportSettings) -> Self {
        Self {
            delete_behaviour: Some(s.delete_behaviour.into()),
            disable_attribute: s.disable_attribute,
            create_containers_as_needed: s.create_containers_as_needed,
            placeholder_member_dn: s.placeholder_member_dn,
            modify_batch_size: s.modify_batch_size,
            managed_scope: s.managed_scope.into_iter().map(Into::into).collect(),
            unresolved_reference_handling: s.unresolved_reference_handling.map(Into::into),
        }
    }
}

impl From<RunOptions> for config::RunOptions {
    fn from(o: RunOptions) -> Self {
        Self {
            page_size: o.page_size,
            flush_size: o.flush_size,
            flush_interval_ms: o.flush_interval_ms,
            connections: o.connections,
            in_flight_per_connection: o.in_flight_per_connection,
            concurrency: if o.adaptive_concurrency {
                config::Concurrency::Adaptive
            } else {
                config::Concurrency::Fixed
            },
            max_in_flight: o.max_in_flight,
            min_in_flight: o.min_in_flight,
            ops_per_second: o.ops_per_second,
            lease_seconds: o.lease_seconds,
            max_operation_retries: o.max_operation_retries,
            dry_run: o.dry_run,
            skip_schema_check: o.skip_schema_check,
            progress_interval_ms: o.progress_interval_ms,
            clock_skew_seconds: o.clock_skew_seconds,
            log_level: o.log_level,
        }
    }
}

impl From<config::RunOptions> for RunOptions {
    fn from(o: config::RunOptions) -> Self {
        Self {
            page_size: o.page_size,
            flush_size: o.flush_size,
            flush_interval_ms: o.flush_interval_ms,
            connections: o.connections,
            in_flight_per_connection: o.in_flight_per_connection,
            adaptive_concurrency: o.concurrency == config::Concurrency::Adaptive,
            max_in_flight: o.max_in_flight,
            min_in_flight: o.min_in_flight,
            ops_per_second: o.ops_per_second,
            lease_seconds: o.lease_seconds,
            max_operation_retries: o.max_operation_retries,
            dry_run: o.dry_run,
            skip_schema_check: o.skip_schema_check,
            progress_interval_ms: o.progress_interval_ms,
            clock_skew_seconds: o.clock_skew_seconds,
            log_level: o.log_level,
        }
    }
}

impl From<ExportRequest> for config::ExportRequest {
    fn from(r: ExportRequest) -> Self {
        Self {
            database: r.database.into(),
            connected_system_id: r.connected_system_id,
            directory: r.directory.into(),
            settings: r.settings.into(),
            options: r.options.into(),
        }
    }
}

impl From<config::ExportRequest> for ExportRequest {
    fn from(r: config::ExportRequest) -> Self {
        Self {
            database: r.database.into(),
            connected_system_id: r.connected_system_id,
            directory: r.directory.into(),
            settings: r.settings.into(),
            options: r.options.into(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Progress, batch reports and log records

mirror_enum! {
    /// The phase a progress event describes (JIM's `ExportPhase`).
    ExportPhase mirrors CoreExportPhase as i32 {
        /// Counting and connecting.
        Preparing = 0,
        /// Exports without references.
        Executing = 1,
        /// Reference-bearing exports.
        ResolvingReferences = 2,
        /// Done.
        Completed = 3,
    }
}

/// A snapshot of a run's progress.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ProgressEvent {
    /// `ConnectedSystems.Id` of the run.
    pub connected_system_id: i32,
    /// The phase.
    pub phase: ExportPhase,
    /// Eligible exports counted when the run started.
    pub total: u64,
    /// Exports with a persisted outcome so far.
    pub processed: u64,
    /// Of those, succeeded (written in part included).
    pub succeeded: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Of those, deferred.
    pub deferred: u64,
    /// Objects per second since the run started.
    pub rate: f64,
    /// Directory operations outstanding now.
    pub in_flight: u32,
    /// The in-flight limit in force now.
    pub in_flight_limit: u32,
    /// Milliseconds since the run started.
    pub elapsed_ms: u64,
    /// A short human-readable line.
    pub message: String,
}

impl From<&report::ProgressEvent> for ProgressEvent {
    fn from(e: &report::ProgressEvent) -> Self {
        Self {
            connected_system_id: e.connected_system_id,
            phase: e.phase.into(),
            total: e.total,
            processed: e.processed,
            succeeded: e.succeeded,
            failed: e.failed,
            deferred: e.deferred,
            rate: e.rate,
            in_flight: e.in_flight,
            in_flight_limit: e.in_flight_limit,
            elapsed_ms: e.elapsed_ms,
            message: e.message.clone(),
        }
    }
}

mirror_enum! {
    /// `PendingExports.ChangeType` (JIM's numbers).
    PendingExportChangeType mirrors CoreChangeType as i32 {
        /// Create.
        Create = 0,
        /// Update.
        Update = 1,
        /// Delete.
        Delete = 2,
    }
}

mirror_enum! {
    /// `PendingExports.Status` (JIM's numbers).
    PendingExportStatus mirrors CorePendingExportStatus as i32 {
        /// Waiting to be exported (or backing off).
        Pending = 0,
        /// Exported, but the confirming import did not see every change.
        ExportNotConfirmed = 1,
        /// Claimed by a run.
        Executing = 2,
        /// Out of retries.
        Failed = 3,
        /// Exported, waiting for the confirming import.
        Exported = 4,
    }
}

mirror_enum! {
    /// How one export ended in a run.
    ItemStatus mirrors CoreItemStatus {
        /// Everything writable was written.
        Succeeded,
        /// Written in part: some references are still unresolved.
        PartlyWritten,
        /// Nothing was writable now; due again in 5 minutes, no error counted.
        Deferred,
        /// The attempt failed.
        Failed,
    }
}

mirror_enum! {
    /// JIM's run-history change type (`ObjectChangeType`, JIM's numbers).
    ObjectChangeType mirrors CoreObjectChangeType as i32 {
        /// Not set.
        NotSet = 0,
        /// Added.
        Added = 1,
        /// Updated.
        Updated = 2,
        /// Deleted.
        Deleted = 3,
        /// Projected.
        Projected = 4,
        /// Joined.
        Joined = 5,
        /// Attribute flow.
        AttributeFlow = 6,
        /// Disconnected.
        Disconnected = 7,
        /// Disconnected, out of scope.
        DisconnectedOutOfScope = 8,
        /// Out of scope, join retained.
        OutOfScopeRetainJoin = 9,
        /// Drift correction.
        DriftCorrection = 10,
        /// Exported (a Create or Update).
        Exported = 11,
        /// Deprovisioned (a Delete).
        Deprovisioned = 12,
        /// No change.
        NoChange = 13,
        /// Still pending (deferred).
        PendingExport = 14,
        /// Pending export confirmed.
        PendingExportConfirmed = 15,
        /// Created.
        Created = 16,
    }
}

mirror_enum! {
    /// What a connector reports as the kind of a failed export (JIM's numbers).
    ConnectedSystemExportErrorType mirrors CoreExportErrorType as i32 {
        /// Anything else.
        General = 0,
        /// The generated DN is invalid.
        InvalidGeneratedExternalId = 1,
        /// The target lies outside the managed scope.
        OutsideManagedScope = 2,
        /// The placeholder member broke a constraint.
        PlaceholderMemberConstraintViolation = 3,
        /// Something the export needs does not exist.
        MissingDependency = 4,
        /// A concurrent change got in the way.
        ConcurrencyConflict = 5,
    }
}

mirror_enum! {
    /// `ActivityRunProfileExecutionItems.ErrorType` (JIM's numbers).
    ActivityRunProfileExecutionItemErrorType mirrors CoreRunHistoryErrorType as i32 {
        /// Not set.
        NotSet = 0,
        /// Ambiguous match.
        AmbiguousMatch = 1,
        /// Could not match the object type.
        CouldNotMatchObjectType = 2,
        /// Could not join because of an existing join.
        CouldNotJoinDueToExistingJoin = 3,
        /// Duplicate imported attributes.
        DuplicateImportedAttributes = 4,
        /// Missing external id value.
        MissingExternalIdAttributeValue = 5,
        /// Unexpected attribute.
        UnexpectedAttribute = 6,
        /// Unresolved reference.
        UnresolvedReference = 7,
        /// Unsupported external id attribute type.
        UnsupportedExternalIdAttributeType = 8,
        /// Export not confirmed.
        ExportNotConfirmed = 9,
        /// Export confirmation failed.
        ExportConfirmationFailed = 10,
        /// CSO creation failed.
        CsoCreationFailed = 11,
        /// Duplicate object.
        DuplicateObject = 12,
        /// Invalid generated external id (DN).
        InvalidGeneratedExternalId = 13,
        /// Unhandled error.
        UnhandledError = 14,
        /// Expression evaluation error.
        ExpressionEvaluationError = 15,
        /// Expression missing input.
        ExpressionMissingInput = 16,
        /// Multi-valued to single-valued.
        MultiValuedToSingleValued = 17,
        /// Delta import fell back to full import.
        DeltaImportFallbackToFullImport = 18,
        /// Import hash verification failed.
        ImportHashVerificationFailed = 19,
        /// Import attribute value error.
        ImportAttributeValueError = 20,
        /// Connector configuration error.
        ConnectorConfigurationError = 21,
        /// Could not export because of an existing CSO.
        CouldNotExportDueToExistingConnectedSystemObject = 22,
    }
}

/// A change of one anchor attribute's value on the CSO.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AnchorChange {
    /// `ConnectedSystemAttributes.Id` of the anchor attribute.
    pub attribute_id: i32,
    /// Its name (e.g. `entryUUID`, `distinguishedName`).
    pub attribute_name: String,
    /// The value before the export, if any.
    pub old_value: Option<String>,
    /// The value the export wrote.
    pub new_value: String,
}

/// One pending export's outcome.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ReportItem {
    /// `PendingExports.Id`.
    pub pending_export_id: String,
    /// The change type as claimed.
    pub change_type: PendingExportChangeType,
    /// `ConnectedSystemObjectId` of the target CSO.
    pub connected_system_object_id: Option<String>,
    /// How the export ended.
    pub status: ItemStatus,
    /// JIM's run-history change type for the item.
    pub object_change_type: ObjectChangeType,
    /// The error, for a failed export.
    pub error_message: Option<String>,
    /// The connector error type, for a failed export.
    pub error_type: Option<ConnectedSystemExportErrorType>,
    /// The run-history error type JIM's worker records for this item.
    pub run_history_error_type: Option<ActivityRunProfileExecutionItemErrorType>,
    /// `ErrorCount` after this attempt.
    pub error_count: i32,
    /// Attribute value changes written in this run.
    pub written_change_ids: Vec<String>,
    /// All of the export's attribute value changes.
    pub attribute_change_count: u32,
    /// `SourceMetaverseObjectId`.
    pub source_metaverse_object_id: Option<String>,
    /// `QueuedByRunProfileExecutionItemId`.
    pub queued_by_run_profile_execution_item_id: Option<String>,
    /// `ProvisioningSyncRuleId`.
    pub provisioning_sync_rule_id: Option<i32>,
    /// True when this run created the object in the directory.
    pub provisioned: bool,
    /// Anchor values the export changed.
    pub anchor_changes: Vec<AnchorChange>,
    /// The note naming references that cannot be resolved, if any.
    pub unresolved_reference_note: Option<String>,
}

/// The outcomes persisted by one flush.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct BatchReport {
    /// `ConnectedSystems.Id` of the run.
    pub connected_system_id: i32,
    /// 1 for the run's first flush, then 2, 3, ...
    pub sequence: u64,
    /// One item per pending export of the flush.
    pub items: Vec<ReportItem>,
}

fn id(u: Uuid) -> String {
    u.hyphenated().to_string()
}

impl From<&report::AnchorChange> for AnchorChange {
    fn from(a: &report::AnchorChange) -> Self {
        Self {
            attribute_id: a.attribute_id,
            attribute_name: a.attribute_name.clone(),
            old_value: a.old_value.clone(),
            new_value: a.new_value.clone(),
        }
    }
}

impl From<&report::ReportItem> for ReportItem {
    fn from(i: &report::ReportItem) -> Self {
        Self {
            pending_export_id: id(i.pending_export_id),
            change_type: i.change_type.into(),
            connected_system_object_id: i.connected_system_object_id.map(id),
            status: i.status.into(),
            object_change_type: i.object_change_type.into(),
            error_message: i.error_message.clone(),
            error_type: i.error_type.map(Into::into),
            run_history_error_type: i.run_history_error_type.map(Into::into),
            error_count: i.error_count,
            written_change_ids: i.written_change_ids.iter().copied().map(id).collect(),
            attribute_change_count: i.attribute_change_count,
            source_metaverse_object_id: i.source_metaverse_object_id.map(id),
            queued_by_run_profile_execution_item_id: i
                .queued_by_run_profile_execution_item_id
                .map(id),
            provisioning_sync_rule_id: i.provisioning_sync_rule_id,
            provisioned: i.provisioned,
            anchor_changes: i.anchor_changes.iter().map(Into::into).collect(),
            unresolved_reference_note: i.unresolved_reference_note.clone(),
        }
    }
}

impl From<&report::BatchReport> for BatchReport {
    fn from(b: &report::BatchReport) -> Self {
        Self {
            connected_system_id: b.connected_system_id,
            sequence: b.sequence,
            items: b.items.iter().map(Into::into).collect(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The result

/// Directory operations by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct OperationCounts {
    /// Add requests.
    pub add: u64,
    /// Modify requests.
    pub modify: u64,
    /// ModifyDN requests.
    pub modify_dn: u64,
    /// Delete requests.
    pub delete: u64,
    /// Search requests.
    pub search: u64,
}

/// How a run went, in numbers.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RunMetrics {
    /// Directory operations sent, by kind.
    pub operations: OperationCounts,
    /// SQL statements issued (transaction control not counted).
    pub sql_statements: u64,
    /// Flushes (persist statements).
    pub flushes: u64,
    /// Exports with an outcome per second of run time.
    pub objects_per_second: f64,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
    /// Milliseconds from the run call to the first directory write, if any.
    pub time_to_first_write_ms: Option<u64>,
    /// Most directory operations outstanding at once.
    pub max_in_flight: u32,
    /// Mean outstanding operations while operations were outstanding.
    pub mean_in_flight: f64,
    /// The in-flight limit at the end of the run.
    pub in_flight_limit: u32,
    /// The lowest in-flight limit so far (the limit itself when it is fixed).
    pub min_in_flight_limit: u32,
    /// The highest in-flight limit so far.
    pub max_in_flight_limit: u32,
    /// Times the adaptive limit grew.
    pub in_flight_limit_increases: u64,
    /// Times the adaptive limit shrank.
    pub in_flight_limit_decreases: u64,
    /// Operations retried in the run after a transient condition.
    pub retries: u64,
    /// Connections re-established after being lost.
    pub reconnects: u64,
    /// Exports re-attempted after an earlier attempt may have reached the directory.
    pub recovered: u64,
    /// Exports dropped because another engine took their row over after the run's lease ran out.
    pub lease_lost: u64,
    /// Median time of an export from the start of its execution to its result, in ms.
    pub export_latency_p50_ms: Option<f64>,
    /// 99th percentile of the same, in ms.
    pub export_latency_p99_ms: Option<f64>,
}

/// The result of one export run: JIM's `ExportExecutionResult` fields plus the engine's metrics.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RunResult {
    /// `ConnectedSystemId`.
    pub connected_system_id: i32,
    /// True for a dry run: nothing was written.
    pub dry_run: bool,
    /// `StartedAt`.
    pub started_at: SystemTime,
    /// `CompletedAt`.
    pub completed_at: SystemTime,
    /// `TotalPendingExports`: eligible exports when the run started.
    pub total_pending_exports: u64,
    /// `SuccessCount`, written-in-part exports included.
    pub success_count: u64,
    /// `FailedCount`.
    pub failed_count: u64,
    /// `DeferredCount`.
    pub deferred_count: u64,
    /// `PartiallyExportedCount`.
    pub partially_exported_count: u64,
    /// `UnresolvableReferenceCount`.
    pub unresolvable_reference_count: u64,
    /// `ReconciledCount` (always 0).
    pub reconciled_count: u64,
    /// `CreatedContainerExternalIds`: DNs of containers the run created.
    pub created_container_external_ids: Vec<String>,
    /// `OptimisticApplyAppliedCount`.
    pub optimistic_apply_applied_count: u64,
    /// `OptimisticApplySkippedCount`.
    pub optimistic_apply_skipped_count: u64,
    /// `OptimisticApplyFailedCount`.
    pub optimistic_apply_failed_count: u64,
    /// `OptimisticApplyUnresolvedReferenceCount`.
    pub optimistic_apply_unresolved_reference_count: u64,
    /// True when the run was cancelled; the unexecuted claims were returned.
    pub cancelled: bool,
    /// The Activity outcome message in JIM's wording.
    pub message: String,
    /// The directory's dialect.
    pub dialect: Option<Dialect>,
    /// The engine's metrics.
    pub metrics: RunMetrics,
}

impl From<report::OperationCounts> for OperationCounts {
    fn from(o: report::OperationCounts) -> Self {
        Self {
            add: o.add,
            modify: o.modify,
            modify_dn: o.modify_dn,
            delete: o.delete,
            search: o.search,
        }
    }
}

impl From<report::RunMetrics> for RunMetrics {
    fn from(m: report::RunMetrics) -> Self {
        Self {
            operations: m.operations.into(),
            sql_statements: m.sql_statements,
            flushes: m.flushes,
            objects_per_second: m.objects_per_second,
            elapsed_ms: m.elapsed_ms,
            time_to_first_write_ms: m.time_to_first_write_ms,
            max_in_flight: m.max_in_flight,
            mean_in_flight: m.mean_in_flight,
            in_flight_limit: m.in_flight_limit,
            min_in_flight_limit: m.min_in_flight_limit,
            max_in_flight_limit: m.max_in_flight_limit,
            in_flight_limit_increases: m.in_flight_limit_increases,
            in_flight_limit_decreases: m.in_flight_limit_decreases,
            retries: m.retries,
            reconnects: m.reconnects,
            recovered: m.recovered,
            lease_lost: m.lease_lost,
            export_latency_p50_ms: m.export_latency_p50_ms,
            export_latency_p99_ms: m.export_latency_p99_ms,
        }
    }
}

impl From<report::RunResult> for RunResult {
    fn from(r: report::RunResult) -> Self {
        Self {
            connected_system_id: r.connected_system_id,
            dry_run: r.dry_run,
            started_at: r.started_at.into(),
            completed_at: r.completed_at.into(),
            total_pending_exports: r.total_pending_exports,
            success_count: r.success_count,
            failed_count: r.failed_count,
            deferred_count: r.deferred_count,
            partially_exported_count: r.partially_exported_count,
            unresolvable_reference_count: r.unresolvable_reference_count,
            reconciled_count: r.reconciled_count,
            created_container_external_ids: r.created_container_external_ids,
            optimistic_apply_applied_count: r.optimistic_apply_applied_count,
            optimistic_apply_skipped_count: r.optimistic_apply_skipped_count,
            optimistic_apply_failed_count: r.optimistic_apply_failed_count,
            optimistic_apply_unresolved_reference_count: r
                .optimistic_apply_unresolved_reference_count,
            cancelled: r.cancelled,
            message: r.message,
            dialect: r.dialect.map(Into::into),
            metrics: r.metrics.into(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The queue

/// The pending exports of one (status, change type) pair.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StatusCount {
    /// `Status` as stored.
    pub status: i32,
    /// `ChangeType` as stored.
    pub change_type: i32,
    /// The status, when it is one JIM defines.
    pub known_status: Option<PendingExportStatus>,
    /// The change type, when it is one JIM defines.
    pub known_change_type: Option<PendingExportChangeType>,
    /// Rows.
    pub count: i64,
}

/// A connected system's queue at a glance.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct QueueSummary {
    /// Rows per (status, change type).
    pub by_status: Vec<StatusCount>,
    /// All rows.
    pub total: i64,
    /// Rows an export run would pick up now.
    pub executable: i64,
    /// Rows whose `NextRetryAt` has passed or is not set.
    pub due: i64,
    /// Rows backing off.
    pub not_yet_due: i64,
    /// Rows left `Executing` for longer than the lease.
    pub stranded_executing: i64,
    /// Rows with `HasUnresolvedReferences`.
    pub with_unresolved_references: i64,
    /// The oldest `LastAttemptedAt` among Failed rows.
    pub oldest_failure: Option<SystemTime>,
}

impl From<store::QueueSummary> for QueueSummary {
    fn from(s: store::QueueSummary) -> Self {
        Self {
            by_status: s
                .by_status
                .iter()
                .map(|c| StatusCount {
                    status: c.status,
                    change_type: c.change_type,
                    known_status: c.status().map(Into::into),
                    known_change_type: c.change_type().map(Into::into),
                    count: c.count,
                })
                .collect(),
            total: s.total,
            executable: s.executable,
            due: s.due,
            not_yet_due: s.not_yet_due,
            stranded_executing: s.stranded_executing,
            with_unresolved_references: s.with_unresolved_references,
            oldest_failure: s.oldest_failure.map(Into::into),
        }
    }
}
