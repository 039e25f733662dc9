//! The connection to JIM's PostgreSQL database: a URL or the Npgsql keyword string JIM's worker holds.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::npgsql::{KeySettings, parse_keyword_string, redact_connection, scrub};
use super::secret::Secret;
use super::validate::ConfigErrors;

/// How to reach JIM's database.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database?sslmode=…` or the Npgsql form JIM's worker holds,
    /// `Host=…;Port=…;Username=…;Password=…;Database=…`. Every Npgsql key is either honoured or
    /// refused with an error naming it (see [`NPGSQL_KEYS`](crate::config::NPGSQL_KEYS)); a key that corresponds to a field below
    /// (`Timeout`, `Command Timeout`, `Maximum Pool Size`, `Tcp Keepalive Time`) wins over that field.
    pub connection: Secret,
    /// TLS settings that override those in the connection string.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub tls: DatabaseTls,
    /// Connections the engine may hold open (default [`DEFAULT_MAX_CONNECTIONS`]).
    #[serde(default = "default_max_connections")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 4))]
    pub max_connections: u32,
    /// Connect timeout in milliseconds (default [`DEFAULT_CONNECT_TIMEOUT_MS`]); also bounds the wait
    /// for a pooled connection.
    #[serde(default = "default_connect_timeout_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 10000))]
    pub connect_timeout_ms: u64,
    /// The longest a statement may run, in milliseconds (default [`DEFAULT_STATEMENT_TIMEOUT_MS`],
    /// Npgsql's `Command Timeout`): PostgreSQL's `statement_timeout` on every session, and a
    /// client-side deadline 5 s longer that also ends a wait on a server that stopped answering
    /// altogether.
    #[serde(default = "default_statement_timeout_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 30000))]
    pub statement_timeout_ms: u64,
    /// How long a run keeps retrying statements that failed because the database went away (a
    /// restart, a failover, a lost connection), in milliseconds (default [`DEFAULT_RETRY_WINDOW_MS`]).
    /// Past it the run ends with a database error and its claims go back to the queue as soon as the
    /// database answers.
    #[serde(default = "default_retry_window_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 120000))]
    pub retry_window_ms: u64,
    /// TCP keepalive on the server's end of each connection, in seconds of idleness before the first
    /// probe (default [`DEFAULT_KEEPALIVE_SECONDS`]; 0 leaves the server's setting): PostgreSQL then
    /// ends the session of an engine whose host died and releases its row locks. (The engine's own
    /// waits are bounded by the statement deadline; sqlx cannot set keepalive on the client's socket.)
    #[serde(default = "default_keepalive_seconds")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 60))]
    pub keepalive_seconds: u32,
}

/// The default of [`DatabaseConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// The default of [`DatabaseConfig::connect_timeout_ms`].
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// The default of [`DatabaseConfig::statement_timeout_ms`].
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;
/// The default of [`DatabaseConfig::retry_window_ms`].
pub const DEFAULT_RETRY_WINDOW_MS: u64 = 120_000;
/// The default of [`DatabaseConfig::keepalive_seconds`].
pub const DEFAULT_KEEPALIVE_SECONDS: u32 = 60;

fn default_max_connections() -> u32 {
    DEFAULT_MAX_CONNECTIONS
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

fn default_statement_timeout_ms() -> u64 {
    DEFAULT_STATEMENT_TIMEOUT_MS
}

fn default_retry_window_ms() -> u64 {
    DEFAULT_RETRY_WINDOW_MS
}

fn default_keepalive_seconds() -> u32 {
    DEFAULT_KEEPALIVE_SECONDS
}

/// The database settings in effect: the JSON fields with the connection string's keys applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveDatabase {
    /// Connect (and pool acquire) timeout.
    pub connect_timeout: Duration,
    /// Pool size limit.
    pub max_connections: u32,
    /// Connections kept open (`Minimum Pool Size`, default 0).
    pub min_connections: u32,
    /// Idle connections closed after this (`Connection Idle Lifetime`).
    pub idle_timeout: Option<Duration>,
    /// Connections replaced after this (`Connection Lifetime`).
    pub max_lifetime: Option<Duration>,
    /// The server's `statement_timeout`.
    pub statement_timeout: Duration,
    /// How long failing statements are retried.
    pub retry_window: Duration,
    /// Server-side keepalive: idle seconds, probe interval seconds (0, 0 = the server's settings).
    pub keepalive: (u32, u32),
    /// Database errors carry the server's DETAIL (`Include Error Detail`).
    pub include_error_detail: bool,
}

/// TLS to PostgreSQL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct DatabaseTls {
    /// The mode; when absent, the connection string's mode (or `prefer`) applies.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub mode: Option<DatabaseTlsMode>,
    /// A CA certificate (PEM) to verify the server against.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub ca_pem: Option<String>,
    /// A file holding the CA certificate (PEM).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub ca_file: Option<String>,
}

/// PostgreSQL's `sslmode`. Only `verify_ca` and `verify_full` check the server's certificate;
/// `prefer` (libpq's default) silently falls back to an unverified or plain connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum DatabaseTlsMode {
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

impl From<DatabaseTlsMode> for PgSslMode {
    fn from(mode: DatabaseTlsMode) -> Self {
        match mode {
            DatabaseTlsMode::Disable => PgSslMode::Disable,
            DatabaseTlsMode::Prefer => PgSslMode::Prefer,
            DatabaseTlsMode::Require => PgSslMode::Require,
            DatabaseTlsMode::VerifyCa => PgSslMode::VerifyCa,
            DatabaseTlsMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("connection", &redact_connection(self.connection.expose()))
            .field("tls", &self.tls)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("retry_window_ms", &self.retry_window_ms)
            .field("keepalive_seconds", &self.keepalive_seconds)
            .finish()
    }
}

impl DatabaseConfig {
    /// A configuration with defaults for everything but the connection string.
    pub fn new(connection: impl Into<String>) -> Self {
        Self {
            connection: Secret::new(connection),
            tls: DatabaseTls::default(),
            max_connections: default_max_connections(),
            connect_timeout_ms: default_connect_timeout_ms(),
            statement_timeout_ms: default_statement_timeout_ms(),
            retry_window_ms: default_retry_window_ms(),
            keepalive_seconds: default_keepalive_seconds(),
        }
    }

    /// The settings in effect: these fields, with the connection string's corresponding keys winning.
    pub fn effective(&self) -> Result<EffectiveDatabase, String> {
        let keys = self.parsed()?.1;
        let ms = Duration::from_millis;
        Ok(EffectiveDatabase {
            connect_timeout: keys
                .connect_timeout
                .unwrap_or(ms(self.connect_timeout_ms))
                .max(ms(1)),
            max_connections: keys.max_connections.unwrap_or(self.max_connections).max(1),
            min_connections: keys.min_connections.unwrap_or(0),
            idle_timeout: keys.idle_timeout,
            max_lifetime: keys.max_lifetime,
            statement_timeout: keys
                .statement_timeout
                .unwrap_or(ms(self.statement_timeout_ms))
                .max(ms(1)),
            retry_window: ms(self.retry_window_ms),
            keepalive: match keys.keepalive {
                Some(k) => k,
                None => (self.keepalive_seconds, self.keepalive_seconds.min(10)),
            },
            include_error_detail: keys.include_error_detail,
        })
    }

    /// Records every invalid field under `path`.
    pub fn validate(&self, path: &str, errors: &mut ConfigErrors) {
        if let Err(message) = self.connect_options() {
            errors.push(format!("{path}.connection"), message);
        }
        errors.check(
            self.max_connections == 0,
            format!("{path}.max_connections"),
            "must be at least 1",
        );
        errors.check(
            self.connect_timeout_ms == 0,
            format!("{path}.connect_timeout_ms"),
            "must be greater than 0",
        );
        errors.check(
            !(100..=3_600_000).contains(&self.statement_timeout_ms),
            format!("{path}.statement_timeout_ms"),
            format!(
                "must be between 100 and 3600000 (got {}): every database wait is bounded",
                self.statement_timeout_ms
            ),
        );
        errors.check(
            self.retry_window_ms > 86_400_000,
            format!("{path}.retry_window_ms"),
            format!("must be at most 86400000 (got {})", self.retry_window_ms),
        );
        errors.check(
            self.keepalive_seconds > 86_400,
            format!("{path}.keepalive_seconds"),
            format!("must be at most 86400 (got {})", self.keepalive_seconds),
        );
        if self.tls.ca_pem.is_some() && self.tls.ca_file.is_some() {
            errors.push(format!("{path}.tls"), "give ca_pem or ca_file, not both");
        }
        if let Some(pem) = &self.tls.ca_pem {
            errors.check(
                !pem.contains("-----BEGIN CERTIFICATE-----"),
                format!("{path}.tls.ca_pem"),
                "is not a PEM certificate",
            );
        }
    }

    /// The sqlx connect options this configuration describes. The error message names the problem
    /// (an unknown key, a bad port) but never repeats the password.
    pub fn connect_options(&self) -> Result<PgConnectOptions, String> {
        let (mut options, _) = self.parsed()?;
        let settings = self.effective()?;
        let mut session = vec![(
            "statement_timeout",
            settings.statement_timeout.as_millis().to_string(),
        )];
        let (idle, interval) = settings.keepalive;
        if idle > 0 {
            session.push(("tcp_keepalives_idle", idle.to_string()));
            session.push(("tcp_keepalives_interval", interval.max(1).to_string()));
            session.push(("tcp_keepalives_count", "6".to_string()));
        }
        options = options.options(session.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some(mode) = self.tls.mode {
            options = options.ssl_mode(mode.into());
        }
        if let Some(pem) = &self.tls.ca_pem {
            options = options.ssl_root_cert_from_pem(pem.as_bytes().to_vec());
        }
        if let Some(file) = &self.tls.ca_file {
            options = options.ssl_root_cert(file);
        }
        Ok(options)
    }
}

impl DatabaseConfig {
    /// The connection string parsed: sqlx's options and the keys that tune the engine.
    fn parsed(&self) -> Result<(PgConnectOptions, KeySettings), String> {
        let raw = self.connection.expose().trim();
        if raw.is_empty() {
            return Err("is empty".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(raw).map_err(|e| {
                format!(
                    "is not a valid PostgreSQL URL ({})",
                    scrub(&e.to_string(), raw)
                )
            })?;
            Ok((options, KeySettings::default()))
        } else {
            parse_keyword_string(raw)
        }
    }

    /// True when the database connection may go unverified or in clear (`disable`, `allow`,
    /// `prefer`, `require`): the engine warns about it once.
    pub fn tls_unverified(&self) -> bool {
        match self.connect_options() {
            Ok(o) => !matches!(
                o.get_ssl_mode(),
                PgSslMode::VerifyCa | PgSslMode::VerifyFull
            ),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npgsql_keyword_string() {
        let cfg = DatabaseConfig::new(
            "Host=db.example;Port=5433;Username=jim;Password='se;cret';Database=jim;SSL Mode=VerifyFull;Maximum Pool Size=30",
        );
        let opts = cfg.connect_options().unwrap();
        assert_eq!(opts.get_host(), "db.example");
        assert_eq!(opts.get_port(), 5433);
        assert_eq!(opts.get_username(), "jim");
        assert_eq!(opts.get_database(), Some("jim"));
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::VerifyFull));
    }

    #[test]
    fn unknown_keys_and_bad_ports_are_reported_without_the_password() {
        let cfg = DatabaseConfig::new("Host=h;Port=x;Password=topsecret");
        let err = cfg.connect_options().unwrap_err();
        assert!(err.contains("Port"), "{err}");
        assert!(!err.contains("topsecret"));
        let err = DatabaseConfig::new("Host=h;Flavour=mint;Password=topsecret")
            .connect_options()
            .unwrap_err();
        assert!(
            err.contains("Flavour") && !err.contains("topsecret"),
            "{err}"
        );
    }

    #[test]
    fn url_form_and_tls_override() {
        let mut cfg = DatabaseConfig::new("postgres://jim:pw@127.0.0.1:5499/jim");
        cfg.tls.mode = Some(DatabaseTlsMode::VerifyCa);
        let opts = cfg.connect_options().unwrap();
        assert_eq!(opts.get_port(), 5499);
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::VerifyCa));
    }

    #[test]
    fn connection_string_keys_that_tune_the_engine_win_over_the_fields() {
        let cfg = DatabaseConfig::new(
            "Host=h;Username=u;Password=p;Database=d;Timeout=5;Command Timeout=45;Maximum Pool Size=30;\
             Minimum Pool Size=2;Connection Idle Lifetime=120;Connection Lifetime=0;Tcp Keepalive=true;\
             Tcp Keepalive Time=20000;Tcp Keepalive Interval=5000;Include Error Detail=true;Pooling=true;\
             Keepalive=0;Encoding=UTF8;Timezone=UTC;Enlist=false;Log Parameters=false",
        );
        let e = cfg.effective().unwrap();
        assert_eq!(e.connect_timeout, Duration::from_secs(5));
        assert_eq!(e.statement_timeout, Duration::from_secs(45));
        assert_eq!((e.max_connections, e.min_connections), (30, 2));
        assert_eq!(e.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(e.max_lifetime, None);
        assert_eq!(e.keepalive, (20, 5));
        assert!(e.include_error_detail);
        assert_eq!(e.statement_timeout, Duration::from_secs(45));
        let session = cfg.connect_options().unwrap();
        let options = session.get_options().unwrap_or_default();
        assert!(options.contains("statement_timeout=45000"), "{options}");
        assert!(options.contains("tcp_keepalives_idle=20"), "{options}");
        assert!(options.contains("tcp_keepalives_interval=5"), "{options}");
    }

    #[test]
    fn defaults_bound_every_wait_and_keep_the_server_alert() {
        let cfg = DatabaseConfig::new("postgres://jim@h/jim");
        let e = cfg.effective().unwrap();
        assert_eq!(e.statement_timeout, Duration::from_secs(30));
        assert_eq!(e.retry_window, Duration::from_secs(120));
        assert_eq!(e.keepalive, (60, 10));
        let options = cfg.connect_options().unwrap();
        let options = options.get_options().unwrap_or_default();
        assert!(options.contains("statement_timeout=30000"), "{options}");
        assert!(options.contains("tcp_keepalives_idle=60"), "{options}");
        // Tcp Keepalive=false leaves the server's own settings.
        let off = DatabaseConfig::new("Host=h;Tcp Keepalive=false")
            .effective()
            .unwrap();
        assert_eq!(off.keepalive, (0, 0));
    }

    #[test]
    fn keys_the_engine_cannot_honour_are_refused_by_name() {
        for (raw, word) in [
            ("Host=h;Command Timeout=0", "Command Timeout"),
            ("Host=h;Keepalive=30", "Keepalive"),
            ("Host=h;Pooling=false", "Pooling"),
            ("Host=h;Log Parameters=true", "Log Parameters"),
            ("Host=h;Timezone=Europe/Paris", "Timezone"),
            ("Host=h;Encoding=LATIN1", "Encoding"),
            ("Host=h;Multiplexing=true", "Multiplexing"),
            ("Host=h1,h2", "several hosts"),
            (
                "Host=h;Target Session Attributes=primary",
                "Target Session Attributes",
            ),
            ("Host=h;SSL Password=x", "SSL Password"),
            ("Host=h;SSL Key=/k", "SSL Certificate or SSL Key"),
            (
                "Host=h;Check Certificate Revocation=true",
                "Check Certificate Revocation",
            ),
            (
                "Host=h;SSL Mode=VerifyFull;Trust Server Certificate=true",
                "Trust Server Certificate",
            ),
            ("Host=h;Read Buffer Size=8192", "Read Buffer Size"),
            ("Host=h;Options=--foo", "Options"),
        ] {
            let err = DatabaseConfig::new(raw).connect_options().unwrap_err();
            assert!(err.contains(word), "{raw}: {err}");
        }
    }

    #[test]
    fn session_options_are_passed_on() {
        let cfg = DatabaseConfig::new("Host=h;Options=-c lock_timeout=5s -c search_path=jim");
        let opts = cfg.connect_options().unwrap();
        let options = opts.get_options().unwrap_or_default();
        assert!(options.contains("lock_timeout=5s"), "{options}");
        assert!(options.contains("search_path=jim"), "{options}");
    }

    #[test]
    fn only_verifying_modes_count_as_verified() {
        assert!(DatabaseConfig::new("postgres://h/d").tls_unverified());
        assert!(DatabaseConfig::new("Host=h;SSL Mode=Require").tls_unverified());
        assert!(!DatabaseConfig::new("Host=h;SSL Mode=VerifyFull").tls_unverified());
        let mut cfg = DatabaseConfig::new("Host=h");
        cfg.tls.mode = Some(DatabaseTlsMode::VerifyCa);
        assert!(!cfg.tls_unverified());
    }

    #[test]
    fn debug_never_shows_the_password() {
        for raw in [
            "postgres://jim:hunter2@h:1/db",
            "postgres://jim@h:1/db?password=hunter2",
            "Host=h;Password=hunter2;Database=db",
            "Host=h;PWD=\"hunter2\"",
        ] {
            let cfg = DatabaseConfig::new(raw);
            let shown = format!("{cfg:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
}
