//! The connection to JIM's PostgreSQL database: a URL or the Npgsql keyword string JIM's worker holds.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::secret::Secret;
use super::validate::ConfigErrors;

/// How to reach JIM's database.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database?sslmode=…` or the Npgsql form JIM's worker holds,
    /// `Host=…;Port=…;Username=…;Password=…;Database=…` (`SSL Mode`, `Root Certificate`, `Timeout`
    /// and `Application Name` are understood; pooling keys are accepted and ignored).
    pub connection: Secret,
    /// TLS settings that override those in the connection string.
    #[serde(default)]
    pub tls: DatabaseTls,
    /// Connections the engine may hold open (default 4).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connect timeout in milliseconds (default 10,000).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_max_connections() -> u32 {
    4
}

fn default_connect_timeout_ms() -> u64 {
    10_000
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
        }
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
        let raw = self.connection.expose().trim();
        if raw.is_empty() {
            return Err("is empty".into());
        }
        let mut options = if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            PgConnectOptions::from_str(raw).map_err(|e| {
                format!(
                    "is not a valid PostgreSQL URL ({})",
                    scrub(&e.to_string(), raw)
                )
            })?
        } else {
            parse_keyword_string(raw)?
        };
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

/// Npgsql keys that only tune Npgsql's own pooling or logging; the engine manages its own pool.
const IGNORED_NPGSQL_KEYS: &[&str] = &[
    "pooling",
    "minimumpoolsize",
    "minpoolsize",
    "maximumpoolsize",
    "maxpoolsize",
    "connectionidlelifetime",
    "connectionpruninginterval",
    "connectionlifetime",
    "commandtimeout",
    "includeerrordetail",
    "includeerrordetails",
    "keepalive",
    "tcpkeepalive",
    "enlist",
    "multiplexing",
    "noresetonclose",
    "maxautoprepare",
    "autopreparemininusages",
    "servercompatibilitymode",
    "trustservercertificate",
    "logparameters",
];

/// Parses the Npgsql keyword form into sqlx options.
fn parse_keyword_string(raw: &str) -> Result<PgConnectOptions, String> {
    let mut options = PgConnectOptions::new_without_pgpass();
    let mut unknown = Vec::new();
    for (key, value) in split_keywords(raw)? {
        match normalise_key(&key).as_str() {
            "host" | "server" => {
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
                options = options.ssl_mode(mode);
            }
            "rootcertificate" | "sslrootcert" => options = options.ssl_root_cert(&value),
            "timeout" => {
                let _: u64 = value
                    .parse()
                    .map_err(|_| format!("has an invalid Timeout '{value}'"))?;
            }
            k if IGNORED_NPGSQL_KEYS.contains(&k) => {}
            _ => unknown.push(key),
        }
    }
    if !unknown.is_empty() {
        return Err(format!("has unknown keys: {}", unknown.join(", ")));
    }
    Ok(options)
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
