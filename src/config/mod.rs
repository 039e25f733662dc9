//! Configuration and request types (JSON through serde), following the host contract in DESIGN.md:
//! the database connection, the connected system, the directory connection, the system's export
//! settings and run options. [`ExportRequest::from_json`](crate::config::ExportRequest::from_json) and [`ExportRequest::validate`](crate::config::ExportRequest::validate) report every
//! bad field by its path; `Debug` output never shows a password.

mod database;
mod directory;
mod json;
mod log;
mod npgsql;
mod options;
mod secret;
mod settings;
mod validate;
mod watch;

use serde::{Deserialize, Serialize};

pub use database::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_KEEPALIVE_SECONDS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RETRY_WINDOW_MS, DEFAULT_STATEMENT_TIMEOUT_MS, DatabaseConfig, DatabaseTls,
    DatabaseTlsMode, EffectiveDatabase,
};
pub use directory::{
    Bind, DEFAULT_DIRECTORY_CONNECT_TIMEOUT_MS, DEFAULT_OPERATION_TIMEOUT_MS, Dialect,
    DirectoryConfig, DirectoryTls, DirectoryTlsMode,
};
pub use json::{JsonError, from_json};
pub use log::LogLevel;
pub use npgsql::{NPGSQL_KEYS, redact_connection};
pub use options::{
    Concurrency, DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_FLUSH_SIZE,
    DEFAULT_LEASE_SECONDS, DEFAULT_MAX_OPERATION_RETRIES, DEFAULT_PAGE_SIZE,
    DEFAULT_PROGRESS_INTERVAL_MS, RunOptions,
};
pub use secret::Secret;
pub use settings::{
    DEFAULT_DISABLE_ATTRIBUTE, DEFAULT_MODIFY_BATCH_SIZE, DEFAULT_PLACEHOLDER_MEMBER_DN,
    DeleteBehaviour, ExportSettings, MODIFY_BATCH_SIZE_RANGE, ScopeContainer,
};
pub use validate::{ConfigErrors, FieldError};
pub use watch::{
    DEFAULT_NOTIFY_RECHECK_MS, DEFAULT_POLL_MAX_MS, DEFAULT_POLL_MIN_MS, WakeUpMode, WatchOptions,
    WatchRequest,
};

/// Everything one export run needs: where JIM's database is, which connected system to export, how to
/// reach its directory, the system's export settings and the run's options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// JIM's PostgreSQL database.
    pub database: DatabaseConfig,
    /// `ConnectedSystems.Id` of the system to export.
    pub connected_system_id: i32,
    /// The target directory.
    pub directory: DirectoryConfig,
    /// The system's LDAP export settings.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub settings: ExportSettings,
    /// Run options.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub options: RunOptions,
}

impl ExportRequest {
    /// Parses a request from JSON and validates it. A syntax or type error names the field's path
    /// (e.g. `directory.tls.mode: unknown variant "tls"`); validation then reports every bad field.
    pub fn from_json(json: &str) -> Result<Self, ConfigErrors> {
        let request: ExportRequest =
            json::from_json(json, "request").map_err(JsonError::into_config)?;
        request.validate()?;
        Ok(request)
    }

    /// Checks every field and reports all that are invalid, each by its path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        validate_target(&self.database, self.connected_system_id, &mut errors);
        self.directory.validate("directory", &mut errors);
        self.settings.validate("settings", &mut errors);
        self.options.validate("options", &mut errors);
        errors.into_result()
    }
}

/// Checks what every call on one connected system names: the database and the system's id. Export
/// requests and the operator calls (queue summary, releasing stranded rows, resetting failures) share it.
pub fn validate_target(
    database: &DatabaseConfig,
    connected_system_id: i32,
    errors: &mut ConfigErrors,
) {
    database.validate("database", errors);
    errors.check(
        connected_system_id <= 0,
        "connected_system_id",
        "must be a positive ConnectedSystems.Id",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_json() -> serde_json::Value {
        serde_json::json!({
            "database": { "connection": "Host=127.0.0.1;Port=5432;Username=jim;Password=pg-secret;Database=jim" },
            "connected_system_id": 3,
            "directory": {
                "urls": ["ldap://127.0.0.1:389"],
                "tls": { "mode": "start_tls" },
                "bind": { "kind": "simple", "dn": "cn=admin,dc=example,dc=org", "password": "ldap-secret" }
            },
            "settings": { "managed_scope": [ { "dn": "ou=People,dc=example,dc=org" } ] }
        })
    }

    #[test]
    fn a_valid_request_parses_with_defaults() {
        let req = ExportRequest::from_json(&valid_json().to_string()).unwrap();
        assert_eq!(req.connected_system_id, 3);
        assert_eq!(req.options.page_size, 100);
        assert_eq!(req.options.lease_seconds, 900);
        assert_eq!(req.settings.modify_batch_size, 1000);
        assert_eq!(req.settings.placeholder_member_dn, "cn=placeholder");
        assert_eq!(
            req.directory.effective_tls_mode(),
            DirectoryTlsMode::StartTls
        );
        assert!(req.directory.tls.verify);
    }

    #[test]
    fn every_bad_field_is_reported_by_path() {
        let mut v = valid_json();
        v["connected_system_id"] = 0.into();
        v["database"]["connection"] = "Host=h;Port=notaport;Password=pg-secret".into();
        v["database"]["max_connections"] = 0.into();
        v["directory"]["urls"] = serde_json::json!(["ldaps://dc1:636", "http://nope", "ldap://"]);
        v["directory"]["bind"]["dn"] = "".into();
        v["directory"]["operation_timeout_ms"] = 0.into();
        v["settings"]["delete_behaviour"] = "disable".into();
        v["settings"]["disable_attribute"] = " ".into();
        v["options"]["page_size"] = 0.into();
        v["options"]["lease_seconds"] = 1.into();
        let err = ExportRequest::from_json(&v.to_string()).unwrap_err();
        let paths = err.paths();
        for expected in [
            "connected_system_id",
            "database.connection",
            "database.max_connections",
            "directory.urls[0]",
            "directory.urls[1]",
            "directory.urls[2]",
            "directory.bind.dn",
            "directory.operation_timeout_ms",
            "settings.disable_attribute",
            "options.page_size",
            "options.lease_seconds",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        let shown = err.to_string();
        assert!(
            !shown.contains("pg-secret") && !shown.contains("ldap-secret"),
            "{shown}"
        );
    }

    #[test]
    fn type_errors_name_the_path() {
        let mut v = valid_json();
        v["directory"]["tls"]["mode"] = "tls13".into();
        let err = ExportRequest::from_json(&v.to_string()).unwrap_err();
        assert_eq!(err.paths(), vec!["directory.tls.mode"], "{err}");
        let mut v = valid_json();
        v["options"]["surprise"] = true.into();
        let err = ExportRequest::from_json(&v.to_string()).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
        let err = ExportRequest::from_json("{ not json").unwrap_err();
        assert_eq!(err.paths(), vec!["request"]);
        let mut v = valid_json();
        v["settings"]["unresolved_reference_handling"] = 7.into();
        assert!(ExportRequest::from_json(&v.to_string()).is_err());
    }

    #[test]
    fn debug_output_never_shows_passwords() {
        let req = ExportRequest::from_json(&valid_json().to_string()).unwrap();
        let shown = format!("{req:?} {:?} {:#?}", req.directory.bind, req);
        assert!(!shown.contains("pg-secret"), "{shown}");
        assert!(!shown.contains("ldap-secret"), "{shown}");
        assert!(shown.contains("cn=admin,dc=example,dc=org"));
        let secret = Secret::new("x-secret");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    }

    #[test]
    fn tls_and_bind_consistency() {
        let mut v = valid_json();
        v["directory"]["urls"] = serde_json::json!(["ldap://h:389"]);
        v["directory"]["tls"] =
            serde_json::json!({ "mode": "none", "ca_pem": "-----BEGIN CERTIFICATE-----" });
        v["directory"]["bind"] = serde_json::json!({ "kind": "sasl_external" });
        let err = ExportRequest::from_json(&v.to_string()).unwrap_err();
        assert!(err.paths().contains(&"directory.tls.mode"), "{err}");
        assert!(err.paths().contains(&"directory.bind"), "{err}");
    }

    /// UniFFI takes a field's default only as a literal (`#[uniffi(default = 900)]`), so the
    /// foreign constructors state each default a second time. This pins every such literal, and
    /// every bare `#[uniffi(default)]`, to the engine's own default (the `DEFAULT_*` constant that
    /// serde and `Default` use), so Python's `RunOptions()` cannot drift from `RunOptions::default()`.
    #[test]
    fn uniffi_defaults_are_the_engine_defaults() {
        let minimal = serde_json::json!({
            "database": { "connection": "postgres://h/d" },
            "connected_system_id": 1,
            "directory": { "urls": [], "bind": { "kind": "sasl_external" } },
        });
        let request: ExportRequest = serde_json::from_value(minimal).unwrap();
        assert_eq!(request.options, RunOptions::default());
        assert_eq!(request.settings, ExportSettings::default());
        assert_eq!(request.directory.tls, DirectoryTls::default());
        assert_eq!(
            serde_json::from_str::<WatchOptions>("{}").unwrap(),
            WatchOptions::default()
        );
        fn json<T: Serialize>(value: &T) -> serde_json::Value {
            serde_json::to_value(value).expect("serialisable")
        }
        let structs: std::collections::HashMap<&str, serde_json::Value> = [
            ("ExportRequest", json(&request)),
            ("DatabaseConfig", json(&request.database)),
            ("DatabaseTls", json(&request.database.tls)),
            ("DirectoryConfig", json(&request.directory)),
            ("DirectoryTls", json(&request.directory.tls)),
            ("ExportSettings", json(&request.settings)),
            ("RunOptions", json(&request.options)),
            ("WatchOptions", json(&WatchOptions::default())),
            ("WatchRequest", json(&WatchRequest::single(request.clone()))),
        ]
        .into_iter()
        .collect();
        let sources = [
            include_str!("mod.rs"),
            include_str!("database.rs"),
            include_str!("directory.rs"),
            include_str!("options.rs"),
            include_str!("settings.rs"),
            include_str!("watch.rs"),
        ];
        let attribute = "#[cfg_attr(feature = \"uniffi\", uniffi(default";
        let mut checked = 0;
        for source in sources {
            let mut current = None;
            let mut lines = source.lines().map(str::trim);
            while let Some(line) = lines.next() {
                if let Some(name) = line.strip_prefix("pub struct ") {
                    current = name.strip_suffix(" {");
                    continue;
                }
                let Some(rest) = line.strip_prefix(attribute) else {
                    continue;
                };
                let field = lines
                    .by_ref()
                    .find_map(|l| l.strip_prefix("pub "))
                    .and_then(|l| l.split(':').next())
                    .expect("a field after the attribute");
                let name = current.expect("inside a struct");
                // ScopeContainer's defaults are checked through serde below.
                let Some(value) = structs.get(name) else {
                    assert_eq!(name, "ScopeContainer", "{name}.{field} is not checked");
                    continue;
                };
                let actual = &value[field];
                match rest.strip_prefix(" = ") {
                    Some(literal) => {
                        let literal = literal.trim_end_matches("))]");
                        let expected: serde_json::Value = serde_json::from_str(literal)
                            .unwrap_or_else(|e| panic!("{name}.{field}: {literal}: {e}"));
                        assert_eq!(actual, &expected, "{name}.{field}");
                    }
                    None => assert!(
                        actual.is_null()
                            || actual == &serde_json::json!(false)
                            || actual == &serde_json::json!([])
                            || actual.is_object(),
                        "{name}.{field}: UniFFI's type default differs from {actual}"
                    ),
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 30,
            "only {checked} defaults found: has the attribute's spelling changed?"
        );
        let scope: ScopeContainer = serde_json::from_str(r#"{"dn": "ou=x"}"#).unwrap();
        assert_eq!((scope.scope, scope.excluded), (None, false));
    }

    #[test]
    fn modify_batch_size_is_clamped_like_jim() {
        let mut s = ExportSettings {
            modify_batch_size: 1,
            ..ExportSettings::default()
        };
        assert_eq!(s.effective_modify_batch_size(), 10);
        s.modify_batch_size = 10_000;
        assert_eq!(s.effective_modify_batch_size(), 5000);
    }
}
