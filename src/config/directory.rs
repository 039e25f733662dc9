//! The connection to the target directory: URLs, TLS, bind, timeouts and dialect.

use serde::{Deserialize, Serialize};

use super::secret::Secret;
use super::validate::ConfigErrors;

/// How to reach and authenticate to the directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `ldap://host:port`, `ldaps://host:port` or `ldapi://<url-encoded socket path>`. Several URLs name
    /// servers of the same directory (e.g. domain controllers); the engine connects to the first that
    /// answers.
    pub urls: Vec<String>,
    /// TLS settings.
    #[serde(default)]
    pub tls: DirectoryTls,
    /// How to bind.
    pub bind: Bind,
    /// Time allowed to connect (and StartTLS and bind), in milliseconds (default 10,000).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for one operation, separate from the connect timeout (JIM couples them; a
    /// 1,000-value modify of a huge group may need longer), in milliseconds (default 60,000).
    #[serde(default = "default_operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// The directory's dialect; detected from the rootDSE when absent.
    #[serde(default)]
    pub dialect: Option<Dialect>,
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}

fn default_operation_timeout_ms() -> u64 {
    60_000
}

/// TLS to the directory. Certificate verification is on unless `verify` is explicitly false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryTls {
    /// `none`, `start_tls` or `ldaps`; when absent, `ldaps` for `ldaps://` URLs and `none` otherwise.
    #[serde(default)]
    pub mode: Option<DirectoryTlsMode>,
    /// A CA certificate (PEM) to verify the server against, instead of the system's roots.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// A file holding the CA certificate (PEM).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Verify the server's certificate (default true). Turning it off logs a warning on every run.
    #[serde(default = "default_true")]
    pub verify: bool,
}

fn default_true() -> bool {
    true
}

impl Default for DirectoryTls {
    fn default() -> Self {
        Self {
            mode: None,
            ca_pem: None,
            ca_file: None,
            verify: true,
        }
    }
}

/// How TLS is established with the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryTlsMode {
    /// Plain LDAP.
    None,
    /// LDAP upgraded with the StartTLS extended operation.
    StartTls,
    /// TLS from the first byte (`ldaps://`).
    Ldaps,
}

/// How the engine authenticates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Bind {
    /// Simple bind with a DN (or, for AD, a UPN) and a password, decrypted by the host.
    Simple {
        /// The bind DN.
        dn: String,
        /// The password; never logged.
        password: Secret,
    },
    /// SASL EXTERNAL: the identity of the `ldapi://` peer (or TLS client certificate).
    SaslExternal,
}

impl std::fmt::Debug for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bind::Simple { dn, .. } => f
                .debug_struct("Simple")
                .field("dn", dn)
                .field("password", &"***")
                .finish(),
            Bind::SaslExternal => f.write_str("SaslExternal"),
        }
    }
}

/// The kind of directory, which decides anchors, placeholders and concurrency defaults
/// (`ldap-export.md` §6). JIM distinguishes Samba AD from Windows AD by `vendorName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Windows Active Directory (AD DS or AD LDS).
    ActiveDirectory,
    /// Samba acting as an AD domain controller.
    SambaAd,
    /// OpenLDAP slapd.
    OpenLdap,
    /// 389 Directory Server / Red Hat Directory Server.
    #[serde(rename = "389ds")]
    Ds389,
    /// Anything else.
    Generic,
}

impl DirectoryConfig {
    /// A configuration with one URL and a simple bind, other fields at their defaults.
    pub fn simple(
        url: impl Into<String>,
        dn: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            urls: vec![url.into()],
            tls: DirectoryTls::default(),
            bind: Bind::Simple {
                dn: dn.into(),
                password: Secret::new(password),
            },
            connect_timeout_ms: default_connect_timeout_ms(),
            operation_timeout_ms: default_operation_timeout_ms(),
            dialect: None,
        }
    }

    /// The TLS mode in force: the explicit one, else implied by the first URL's scheme.
    pub fn effective_tls_mode(&self) -> DirectoryTlsMode {
        self.tls.mode.unwrap_or_else(|| {
            if self
                .urls
                .first()
                .is_some_and(|u| u.to_ascii_lowercase().starts_with("ldaps://"))
            {
                DirectoryTlsMode::Ldaps
            } else {
                DirectoryTlsMode::None
            }
        })
    }

    /// Records every invalid field under `path`.
    pub fn validate(&self, path: &str, errors: &mut ConfigErrors) {
        if self.urls.is_empty() {
            errors.push(
                format!("{path}.urls"),
                "must name at least one directory URL",
            );
        }
        let mode = self.effective_tls_mode();
        for (i, url) in self.urls.iter().enumerate() {
            let field = format!("{path}.urls[{i}]");
            let lower = url.to_ascii_lowercase();
            let scheme = lower.split_once("://").map(|(s, _)| s);
            match scheme {
                Some("ldap") | Some("ldaps") | Some("ldapi") => {}
                _ => {
                    errors.push(field, "must start with ldap://, ldaps:// or ldapi://");
                    continue;
                }
            }
            let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
            if scheme != Some("ldapi") && rest.split(['/', '?']).next().is_none_or(str::is_empty) {
                errors.push(field.clone(), "has no host");
            }
            match (scheme, mode) {
                (Some("ldaps"), DirectoryTlsMode::Ldaps) => {}
                (Some("ldaps"), _) => errors.push(field, "is ldaps:// but tls.mode is not ldaps"),
                (_, DirectoryTlsMode::Ldaps) => {
                    errors.push(field, "tls.mode is ldaps but the URL is not ldaps://")
                }
                (Some("ldapi"), DirectoryTlsMode::StartTls) => {
                    errors.push(field, "StartTLS over ldapi:// is not supported")
                }
                _ => {}
            }
        }
        if let Bind::Simple { dn, password } = &self.bind {
            errors.check(
                dn.trim().is_empty(),
                format!("{path}.bind.dn"),
                "must not be empty",
            );
            errors.check(
                password.is_empty(),
                format!("{path}.bind.password"),
                "must not be empty",
            );
        }
        if matches!(self.bind, Bind::SaslExternal)
            && !self
                .urls
                .iter()
                .all(|u| u.to_ascii_lowercase().starts_with("ldapi://"))
        {
            errors.push(format!("{path}.bind"), "sasl_external needs ldapi:// URLs");
        }
        errors.check(
            self.connect_timeout_ms == 0,
            format!("{path}.connect_timeout_ms"),
            "must be greater than 0",
        );
        errors.check(
            self.operation_timeout_ms == 0,
            format!("{path}.operation_timeout_ms"),
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
        if mode == DirectoryTlsMode::None
            && (self.tls.ca_pem.is_some() || self.tls.ca_file.is_some())
        {
            errors.push(
                format!("{path}.tls.mode"),
                "a CA is given but TLS is off (use start_tls or ldaps)",
            );
        }
    }
}
