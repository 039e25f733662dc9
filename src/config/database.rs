//! The connection to JIM's PostgreSQL database: a URL or the Npgsql keyword string JIM's worker holds.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::secret::Secret;
use super::validate::ConfigErrors;

/// How to reach JIM's database.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database?sslmode=…` or the Npgsql form JIM's worker holds,
    /// `Host=…;Port=…;Username=…;Password=…;Database=…`. Every Npgsql key is either honoured or
    /// refused with an error naming it (see [`NPGSQL_KEYS`]); a key that corresponds to a field below
    /// (`Timeout`, `Command Timeout`, `Maximum Pool Size`, `Tcp Keepalive Time`) wins over that field.
    pub connection: Secret,
    /// TLS settings that override those in the connection string.
    #[serde(default)]
    pub tls: DatabaseTls,
    /// Connections the engine may hold open (default 4).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connect timeout in milliseconds (default 10,000); also bounds the wait for a pooled connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The longest a statement may run, in milliseconds (default 30,000, Npgsql's `Command Timeout`):
    /// PostgreSQL's `statement_timeout` on every session, and a client-side deadline 5 s longer that
    /// also ends a wait on a server that stopped answering altogether.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// How long a run keeps retrying statements that failed because the database went away (a
    /// restart, a failover, a lost connection), in milliseconds (default 120,000). Past it the run
    /// ends with a database error and its claims go back to the queue as soon as the database answers.
    #[serde(default = "default_retry_window_ms")]
    pub retry_window_ms: u64,
    /// TCP keepalive on the server's end of each connection, in seconds of idleness before the first
    /// probe (default 60; 0 leaves the server's setting): PostgreSQL then ends the session of an engine
    /// whose host died and releases its row locks. (The engine's own waits are bounded by the
    /// statement deadline; sqlx cannot set keepalive on the client's socket.)
    #[serde(default = "default_keepalive_seconds")]
    pub keepalive_seconds: u32,
}

fn default_max_connections() -> u32 {
    4
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}

fn default_statement_timeout_ms() -> u64 {
    30_000
}

fn default_retry_window_ms() -> u64 {
    120_000
}

fn default_keepalive_seconds() -> u32 {
    60
}

/// The client-side deadline of a statement beyond the server's `statement_timeout`.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

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

impl EffectiveDatabase {
    /// The store's retry policy.
    pub fn retry_policy(&self) -> crate::store::RetryPolicy {
        crate::store::RetryPolicy {
            window: self.retry_window,
            deadline: self.statement_timeout + DEADLINE_MARGIN,
            include_error_detail: self.include_error_detail,
        }
    }
}

/// TLS to PostgreSQL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseTls {
    /// The mode; when absent, the connection string's mode (or `prefer`) applies.
    pub mode: Option<DatabaseTlsMode>,
    /// A CA certificate (PEM) to verify the server against.
    pub ca_pem: Option<String>,
    /// A file holding the CA certificate (PEM).
    pub ca_file: Option<String>,
}

/// PostgreSQL's `sslmode`. Only `verify_ca` and `verify_full` check the server's certificate;
/// `prefer` (libpq's default) silently falls back to an unverified or plain connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

    /// The retry policy of a configuration with every default (for stores built over a test pool).
    pub fn default_retry_policy() -> crate::store::RetryPolicy {
        crate::store::RetryPolicy {
            window: Duration::from_millis(default_retry_window_ms()),
            deadline: Duration::from_millis(default_statement_timeout_ms()) + DEADLINE_MARGIN,
            include_error_detail: false,
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

/// Removes any copy of the raw connection string from a parser's message.
fn scrub(message: &str, raw: &str) -> String {
    message.replace(raw, "<connection string>")
}

/// The connection string with its password replaced by `***`, for debug output.
pub fn redact_connection(raw: &str) -> String {
    let raw = raw.trim();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        let (scheme, rest) = raw.split_once("://").unwrap_or(("postgres", raw));
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => authority.to_string(),
        };
        // A password may also arrive as a query parameter.
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query = query
                    .split('&')
                    .map(|p| {
                        if p.to_ascii_lowercase().starts_with("password=") {
                            "password=***".to_string()
                        } else {
                            p.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("&");
                format!("{path}?{query}")
            }
            None => tail.to_string(),
        };
        format!("{scheme}://{authority}{tail}")
    } else {
        match split_keywords(raw) {
            Ok(pairs) => pairs
                .into_iter()
                .map(|(k, v)| {
                    if is_password_key(&k) {
                        format!("{k}=***")
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect::<Vec<_>>()
                .join(";"),
            Err(_) => "<unparseable connection string>".into(),
        }
    }
}

fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn is_password_key(key: &str) -> bool {
    matches!(normalise_key(key).as_str(), "password" | "psw" | "pwd")
}

/// Splits `Key=Value;Key="quoted;value"` into pairs, as .NET's connection-string builder does.
fn split_keywords(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ';' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err("has an entry without a key".into());
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('"' | '\'')) => {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == q {
                        // A doubled quote is a literal quote.
                        if chars.peek() == Some(&q) {
                            chars.next();
                            value.push(q);
                            continue;
                        }
                        closed = true;
                        break;
                    }
                    value.push(c);
                }
                if !closed {
                    return Err(format!("has an unterminated quoted value for key '{key}'"));
                }
                while chars.peek().is_some_and(|c| *c != ';') {
                    chars.next();
                }
            }
            _ => {
                while let Some(c) = chars.peek().copied() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_string();
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// What the connection string's keys set besides sqlx's own options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeySettings {
    connect_timeout: Option<Duration>,
    statement_timeout: Option<Duration>,
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    /// (idle seconds, interval seconds); (0, 0) turns the engine's keepalive off.
    keepalive: Option<(u32, u32)>,
    include_error_detail: bool,
    trust_server_certificate: bool,
}

/// Every Npgsql connection-string key the engine knows, by its normalised name (lower case, no
/// spaces), with what the engine does with it. Keys not listed, and listed keys with a value the
/// engine cannot honour, are refused with an error naming the key.
pub const NPGSQL_KEYS: &[(&str, &str)] = &[
    (
        "host / server",
        "the server (one host; a path starting with / is a Unix socket folder)",
    ),
    ("port", "the port"),
    ("database / db", "the database"),
    ("username / user id / uid", "the role"),
    ("password / pwd / psw", "the password (never logged)"),
    ("application name", "application_name"),
    ("search path", "search_path"),
    ("options", "`-c name=value` settings for each session"),
    (
        "ssl mode / sslmode",
        "TLS mode: disable, allow, prefer, require, verify-ca, verify-full",
    ),
    ("root certificate / sslrootcert", "the CA certificate file"),
    (
        "ssl certificate / ssl key",
        "a client certificate and its (unencrypted) key",
    ),
    (
        "trust server certificate",
        "true only with modes that do not verify (prefer, require)",
    ),
    ("check certificate revocation", "false only"),
    (
        "timeout",
        "connect timeout in seconds (wins over connect_timeout_ms)",
    ),
    (
        "command timeout",
        "statement timeout in seconds, 1 or more (wins over statement_timeout_ms)",
    ),
    (
        "tcp keepalive",
        "true: server-side keepalive at the engine's times; false: the server's settings",
    ),
    (
        "tcp keepalive time / tcp keepalive interval",
        "server-side keepalive times in milliseconds",
    ),
    ("keepalive", "0 only: the engine sends no keepalive queries"),
    ("pooling", "true only: the engine always pools"),
    (
        "maximum pool size / max pool size",
        "the pool's size (wins over max_connections)",
    ),
    ("minimum pool size / min pool size", "connections kept open"),
    (
        "connection idle lifetime",
        "seconds before an idle connection is closed",
    ),
    (
        "connection lifetime",
        "seconds before a connection is replaced (0: never)",
    ),
    (
        "include error detail",
        "database errors carry the server's DETAIL",
    ),
    (
        "log parameters",
        "false only: the engine never logs statement parameters",
    ),
    ("encoding / client encoding", "UTF8 only"),
    ("timezone", "UTC only: the engine's sessions run in UTC"),
    ("enlist / multiplexing / load balance hosts", "false only"),
    (
        "persist security info",
        "accepted: the engine never shows the password",
    ),
    ("target session attributes", "any only"),
    ("server compatibility mode", "none only"),
];

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!(
            "has an invalid {key} '{value}' (expected true or false)"
        )),
    }
}

fn parse_number<T: FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("has an invalid {key} '{value}'"))
}

/// A key the engine refuses with a value other than `allowed` (compared case-insensitively).
fn only(key: &str, value: &str, allowed: &[&str], why: &str) -> Result<(), String> {
    let v = value
        .trim()
        .to_ascii_lowercase()
        .replace(['-', '_', ' '], "");
    if allowed.iter().any(|a| *a == v) {
        Ok(())
    } else {
        Err(format!(
            "sets {key}={value}, which jim-export cannot honour: {why}"
        ))
    }
}

/// Parses the Npgsql keyword form into sqlx options and the engine's settings. Every key is honoured or
/// refused (see [`NPGSQL_KEYS`]); errors name the key, never the password.
fn parse_keyword_string(raw: &str) -> Result<(PgConnectOptions, KeySettings), String> {
    let mut options = PgConnectOptions::new_without_pgpass();
    let mut keys = KeySettings::default();
    let mut unknown = Vec::new();
    let mut keepalive_on: Option<bool> = None;
    let (mut keepalive_idle, mut keepalive_interval) = (None::<u32>, None::<u32>);
    let (mut client_cert, mut client_key) = (None::<String>, None::<String>);
    let mut ssl_mode = None;
    for (key, value) in split_keywords(raw)? {
        match normalise_key(&key).as_str() {
            "host" | "server" => {
                if value.contains(',') {
                    return Err(format!(
                        "names several hosts in {key}, which jim-export cannot honour: give one host"
                    ));
                }
                options = if value.starts_with('/') {
                    options.socket(&value)
                } else {
                    options.host(&value)
                };
            }
            "port" => {
                let port: u16 = value
                    .parse()
                    .map_err(|_| format!("has an invalid Port '{value}'"))?;
                options = options.port(port);
            }
            "database" | "db" => options = options.database(&value),
            "username" | "user" | "userid" | "uid" => options = options.username(&value),
            "password" | "psw" | "pwd" => options = options.password(&value),
            "applicationname" => options = options.application_name(&value),
            "searchpath" => options = options.options([("search_path", value.as_str())]),
            "options" => {
                for (name, setting) in parse_session_options(&value)? {
                    options = options.options([(name.as_str(), setting.as_str())]);
                }
            }
            "sslmode" => {
                let mode = match value.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
                    "disable" => PgSslMode::Disable,
                    "allow" => PgSslMode::Allow,
                    "prefer" => PgSslMode::Prefer,
                    "require" => PgSslMode::Require,
                    "verifyca" => PgSslMode::VerifyCa,
                    "verifyfull" => PgSslMode::VerifyFull,
                    _ => return Err(format!("has an unknown SSL Mode '{value}'")),
                };
                ssl_mode = Some(mode);
                options = options.ssl_mode(mode);
            }
            "rootcertificate" | "sslrootcert" => options = options.ssl_root_cert(&value),
            "sslcertificate" | "sslcert" => client_cert = Some(value.clone()),
            "sslkey" => client_key = Some(value.clone()),
            "sslpassword" => {
                return Err(format!(
                    "sets {key}, which jim-export cannot honour: give an unencrypted key file"
                ));
            }
            "trustservercertificate" => keys.trust_server_certificate = parse_bool(&key, &value)?,
            "checkcertificaterevocation" => {
                if parse_bool(&key, &value)? {
                    return Err(format!(
                        "sets {key}=true, which jim-export cannot honour: it does not check revocation lists"
                    ));
                }
            }
            "timeout" => {
                let secs: u64 = parse_number(&key, &value)?;
                keys.connect_timeout = Some(Duration::from_secs(secs.max(1)));
            }
            "commandtimeout" => {
                let secs: u64 = parse_number(&key, &value)?;
                if secs == 0 {
                    return Err(format!(
                        "sets {key}=0 (no limit), which jim-export cannot honour: every database wait is bounded"
                    ));
                }
                keys.statement_timeout = Some(Duration::from_secs(secs));
            }
            "tcpkeepalive" => keepalive_on = Some(parse_bool(&key, &value)?),
            "tcpkeepalivetime" => {
                let ms: u64 = parse_number(&key, &value)?;
                keepalive_idle = Some(ms.div_ceil(1000).clamp(1, 86_400) as u32);
            }
            "tcpkeepaliveinterval" => {
                let ms: u64 = parse_number(&key, &value)?;
                keepalive_interval = Some(ms.div_ceil(1000).clamp(1, 86_400) as u32);
            }
            "keepalive" => {
                let secs: u64 = parse_number(&key, &value)?;
                if secs > 0 {
                    return Err(format!(
                        "sets {key}={secs}, which jim-export cannot honour: it sends no keepalive queries; \
                         use Tcp Keepalive (server-side) instead, its waits are bounded by Command Timeout"
                    ));
                }
            }
            "pooling" => {
                if !parse_bool(&key, &value)? {
                    return Err(format!(
                        "sets {key}=false, which jim-export cannot honour: it always pools its connections"
                    ));
                }
            }
            "maximumpoolsize" | "maxpoolsize" => {
                keys.max_connections = Some(parse_number::<u32>(&key, &value)?.max(1))
            }
            "minimumpoolsize" | "minpoolsize" => {
                keys.min_connections = Some(parse_number(&key, &value)?)
            }
            "connectionidlelifetime" => {
                let secs: u64 = parse_number(&key, &value)?;
                keys.idle_timeout = Some(Duration::from_secs(secs.max(1)));
            }
            "connectionlifetime" | "loadbalancetimeout" => {
                let secs: u64 = parse_number(&key, &value)?;
                keys.max_lifetime = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "includeerrordetail" | "includeerrordetails" => {
                keys.include_error_detail = parse_bool(&key, &value)?
            }
            "logparameters" => only(
                &key,
                &value,
                &["false"],
                "it never logs statement parameters, which may hold personal data",
            )?,
            "encoding" | "clientencoding" => only(
                &key,
                &value,
                &["utf8", "unicode"],
                "it speaks UTF-8 to PostgreSQL",
            )?,
            "timezone" => only(&key, &value, &["utc", "etc/utc"], "its sessions run in UTC")?,
            "enlist" | "multiplexing" | "loadbalancehosts" => {
                only(&key, &value, &["false"], "not supported")?
            }
            "persistsecurityinfo" => {
                parse_bool(&key, &value)?;
            }
            "targetsessionattributes" => {
                only(&key, &value, &["any"], "it connects to the one host given")?
            }
            "servercompatibilitymode" => only(&key, &value, &["none"], "not supported")?,
            _ => unknown.push(key),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "has keys jim-export does not know and so cannot honour: {}",
            unknown.join(", ")
        ));
    }
    if keys.trust_server_certificate
        && matches!(ssl_mode, Some(PgSslMode::VerifyCa | PgSslMode::VerifyFull))
    {
        return Err(
            "sets Trust Server Certificate=true with an SSL Mode that verifies the server: choose one"
                .into(),
        );
    }
    match (client_cert, client_key) {
        (Some(cert), Some(key)) => options = options.ssl_client_cert(cert).ssl_client_key(key),
        (None, None) => {}
        _ => return Err("gives SSL Certificate or SSL Key without the other".into()),
    }
    keys.keepalive = match (keepalive_on, keepalive_idle, keepalive_interval) {
        (Some(false), _, _) => Some((0, 0)),
        (_, None, None) => None,
        (_, idle, interval) => {
            let idle = idle.unwrap_or(default_keepalive_seconds());
            Some((idle, interval.unwrap_or(idle.min(10))))
        }
    };
    Ok((options, keys))
}

/// The `-c name=value` (or `--name=value`) settings of Npgsql's `Options` key.
fn parse_session_options(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut words = value.split_whitespace();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words
                .next()
                .ok_or("has an Options value ending in -c")?
                .to_string()
        } else if let Some(rest) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            rest.to_string()
        } else {
            return Err(format!(
                "has an Options value jim-export cannot honour ('{word}'): use -c name=value"
            ));
        };
        let (name, v) = setting
            .split_once('=')
            .ok_or_else(|| format!("has an Options setting without a value ('{setting}')"))?;
        out.push((name.replace('-', "_"), v.to_string()));
    }
    Ok(out)
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
        assert_eq!(
            e.retry_policy().deadline,
            Duration::from_secs(45) + DEADLINE_MARGIN
        );
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
