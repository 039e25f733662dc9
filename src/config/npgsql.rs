//! Npgsql's keyword form of a connection string (`Host=…;Port=…;Username=…;Password=…`), the form
//! JIM's worker holds: splitting it as .NET does, honouring or refusing every key by name, and
//! redacting its password for debug output. Kept apart from [`super::database`] because it is a
//! parser of its own, with its own rules, that the rest of the configuration never needs to read.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Removes any copy of the raw connection string from a parser's message.
pub(super) fn scrub(message: &str, raw: &str) -> String {
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
pub(super) struct KeySettings {
    pub(super) connect_timeout: Option<Duration>,
    pub(super) statement_timeout: Option<Duration>,
    pub(super) max_connections: Option<u32>,
    pub(super) min_connections: Option<u32>,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_lifetime: Option<Duration>,
    /// (idle seconds, interval seconds); (0, 0) turns the engine's keepalive off.
    pub(super) keepalive: Option<(u32, u32)>,
    pub(super) include_error_detail: bool,
    pub(super) trust_server_certificate: bool,
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
pub(super) fn parse_keyword_string(raw: &str) -> Result<(PgConnectOptions, KeySettings), String> {
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
            let idle = idle.unwrap_or(super::database::DEFAULT_KEEPALIVE_SECONDS);
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
