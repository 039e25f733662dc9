//! The connection to the target directory: URLs, TLS, bind, timeouts and dialect.

use serde::{Deserialize, Serialize};

use super::secret::Secret;
use super::validate::ConfigErrors;

/// How to reach and authenticate to the directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `ldap://host:port`, `ldaps://host:port` or `ldapi://<url-encoded socket path>`. Several URLs name
    /// servers of the same directory (e.g. domain controllers); the engine connects to the first that
    /// answers.
    pub urls: Vec<String>,
    /// How to bind.
    pub bind: Bind,
    /// TLS settings.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub tls: DirectoryTls,
    /// Time allowed to connect (and StartTLS and bind), in milliseconds (default
    /// [`DEFAULT_DIRECTORY_CONNECT_TIMEOUT_MS`]).
    #[serde(default = "default_connect_timeout_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 10000))]
    pub connect_timeout_ms: u64,
    /// Time allowed for one operation, separate from the connect timeout (JIM couples them; a
    /// 1,000-value modify of a huge group may need longer), in milliseconds (default
    /// [`DEFAULT_OPERATION_TIMEOUT_MS`]).
    #[serde(default = "default_operation_timeout_ms")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 60000))]
    pub operation_timeout_ms: u64,
    /// The directory's dialect; detected from the rootDSE when absent.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub dialect: Option<Dialect>,
    /// Send a simple or NTLM bind's password over `ldap://` without StartTLS, in clear (default
    /// false: such a request is refused, as JIM's "Require Secure Transport" refuses it). Meant for
    /// test directories on a trusted host; every run that does it logs a warning.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub allow_password_without_tls: bool,
}

/// The default of [`DirectoryConfig::connect_timeout_ms`].
pub const DEFAULT_DIRECTORY_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// The default of [`DirectoryConfig::operation_timeout_ms`].
pub const DEFAULT_OPERATION_TIMEOUT_MS: u64 = 60_000;

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_DIRECTORY_CONNECT_TIMEOUT_MS
}

fn default_operation_timeout_ms() -> u64 {
    DEFAULT_OPERATION_TIMEOUT_MS
}

/// TLS to the directory. Certificate verification is on unless `verify` is explicitly false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct DirectoryTls {
    /// `none`, `start_tls` or `ldaps`; when absent, `ldaps` for `ldaps://` URLs and `none` otherwise.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub mode: Option<DirectoryTlsMode>,
    /// A CA certificate (PEM) to verify the server against, instead of the system's roots.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub ca_pem: Option<String>,
    /// A file holding the CA certificate (PEM).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub ca_file: Option<String>,
    /// Verify the server's certificate (default true). Turning it off logs a warning on every run.
    #[serde(default = "default_true")]
    #[cfg_attr(feature = "uniffi", uniffi(default = true))]
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
            verify: default_true(),
        }
    }
}

/// How TLS is established with the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
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
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
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
    /// NTLM (SASL GSS-SPNEGO carrying NTLMSSP), which JIM's connector offers beside simple bind for
    /// Active Directory. Use it over TLS (`ldaps://` or StartTLS): the NTLM session is neither signed
    /// nor sealed (TLS protects it, and its channel binding is sent). Windows AD accepts that; a Samba
    /// DC only with `ldap server require strong auth = allow_sasl_over_tls` (its default `yes`
    /// demands signing or sealing even over TLS).
    Ntlm {
        /// The account name (`sAMAccountName`); without `domain` it may also be `DOMAIN` backslash `user` or
        /// `user@dns.domain`.
        username: String,
        /// The NetBIOS domain; with it the engine binds as `DOMAIN` backslash `username`.
        #[serde(default)]
        domain: Option<String>,
        /// The password; never logged.
        password: Secret,
    },
}

impl Bind {
    /// The name an NTLM bind authenticates as (`DOMAIN\user`, `user@domain` or `user`), or why
    /// `username` and `domain` do not make one. `None` for other binds.
    pub fn ntlm_name(&self) -> Option<Result<String, &'static str>> {
        let Bind::Ntlm {
            username, domain, ..
        } = self
        else {
            return None;
        };
        Some(ntlm_name(username, domain.as_deref()))
    }
}

/// Composes and checks an NTLM user name the way the NTLM implementation parses it: one `\`
/// separates a NetBIOS domain from the account, else the last `@` a UPN suffix; an account name
/// holds neither separator next to a domain.
fn ntlm_name(username: &str, domain: Option<&str>) -> Result<String, &'static str> {
    let username = username.trim();
    if username.is_empty() {
        return Err("must not be empty");
    }
    match domain.map(str::trim).filter(|d| !d.is_empty()) {
        Some(domain) => {
            if domain.contains(['\\', '@']) {
                return Err("the domain must be a NetBIOS name, without '\\' or '@'");
            }
            if username.contains(['\\', '@']) {
                return Err("must be a bare account name when a domain is given (no '\\' or '@')");
            }
            Ok(format!("{domain}\\{username}"))
        }
        None => {
            if let Some((domain, account)) = username.split_once('\\') {
                if domain.is_empty() || account.is_empty() {
                    return Err("DOMAIN\\user needs both parts");
                }
                if domain.contains('@') || account.contains(['\\', '@']) {
                    return Err("mixes the DOMAIN\\user and user@domain forms");
                }
            } else if let Some((account, suffix)) = username.rsplit_once('@')
                && (account.is_empty() || suffix.is_empty())
            {
                return Err("user@domain needs both parts");
            }
            Ok(username.to_string())
        }
    }
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
            Bind::Ntlm {
                username, domain, ..
            } => f
                .debug_struct("Ntlm")
                .field("username", username)
                .field("domain", domain)
                .field("password", &"***")
                .finish(),
        }
    }
}

/// The kind of directory, which decides anchors, placeholders and concurrency defaults
/// (`ldap-export.md` §6). JIM distinguishes Samba AD from Windows AD by `vendorName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
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

impl Dialect {
    /// True when the directory itself rewrites the references it stores (linked values such as
    /// `member`) to an object it renames or moves: Active Directory and Samba AD do; OpenLDAP without
    /// refint and 389 without its referential integrity plugin (their defaults) keep the old DN.
    pub fn links_follow_renames(self) -> bool {
        matches!(self, Self::ActiveDirectory | Self::SambaAd)
    }
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
            allow_password_without_tls: false,
        }
    }

    /// The same configuration with [`DirectoryConfig::allow_password_without_tls`] set.
    pub fn allowing_password_without_tls(mut self) -> Self {
        self.allow_password_without_tls = true;
        self
    }

    /// True when a bind password would cross the network in clear: a simple or NTLM bind, no TLS,
    /// and a network (`ldap://`) URL. `ldapi://` stays on the host.
    pub fn sends_password_in_clear(&self) -> bool {
        matches!(self.bind, Bind::Simple { .. } | Bind::Ntlm { .. })
            && self.effective_tls_mode() == DirectoryTlsMode::None
            && self
                .urls
                .iter()
                .any(|u| !u.to_ascii_lowercase().starts_with("ldapi://"))
    }

    /// The refusal of a password bind without TLS that was not explicitly allowed, if this is one.
    pub fn password_refusal(&self) -> Option<String> {
        (self.sends_password_in_clear() && !self.allow_password_without_tls).then(|| {
            "would send the bind password in clear over ldap:// without TLS: use an ldaps:// URL or \
             tls.mode start_tls (or, for a test directory on a trusted host only, set \
             allow_password_without_tls to true)"
                .to_string()
        })
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
        if let Bind::Ntlm { password, .. } = &self.bind {
            if let Some(Err(reason)) = self.bind.ntlm_name() {
                errors.push(format!("{path}.bind.username"), reason);
            }
            errors.check(
                password.is_empty(),
                format!("{path}.bind.password"),
                "must not be empty",
            );
            if let Some(url) = self
                .urls
                .iter()
                .find(|u| u.to_ascii_lowercase().starts_with("ldapi://"))
            {
                errors.push(
                    format!("{path}.bind"),
                    format!("ntlm needs a network URL, not {url}"),
                );
            }
        }
        if let Some(refusal) = self.password_refusal() {
            errors.push(format!("{path}.bind"), refusal);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ntlm(username: &str, domain: Option<&str>) -> Bind {
        Bind::Ntlm {
            username: username.into(),
            domain: domain.map(str::to_string),
            password: Secret::new("hunter2"),
        }
    }

    #[test]
    fn ntlm_names_follow_the_ntlm_parser() {
        let name = |u: &str, d: Option<&str>| ntlm(u, d).ntlm_name().expect("ntlm");
        assert_eq!(
            name("Administrator", Some("GENTIAN")).unwrap(),
            "GENTIAN\\Administrator"
        );
        assert_eq!(name("GENTIAN\\svc-jim", None).unwrap(), "GENTIAN\\svc-jim");
        assert_eq!(
            name("svc-jim@gentian.local", None).unwrap(),
            "svc-jim@gentian.local"
        );
        assert_eq!(name("svc-jim", Some("  ")).unwrap(), "svc-jim");
        assert!(name("", Some("GENTIAN")).is_err());
        assert!(name("a@b", Some("GENTIAN")).is_err());
        assert!(name("svc", Some("GEN\\TIAN")).is_err());
        assert!(name("A\\B\\C", None).is_err());
        assert!(name("A\\b@c", None).is_err());
        assert!(name("\\user", None).is_err());
        assert!(name("user@", None).is_err());
        assert!(Bind::SaslExternal.ntlm_name().is_none());
    }

    #[test]
    fn ntlm_bind_json_validation_and_debug() {
        let config: DirectoryConfig = serde_json::from_value(serde_json::json!({
            "urls": ["ldaps://dc1.gentian.local"],
            "bind": {"kind": "ntlm", "username": "Administrator", "domain": "GENTIAN", "password": "hunter2"}
        }))
        .expect("json");
        assert_eq!(config.bind, ntlm("Administrator", Some("GENTIAN")));
        let debug = format!("{config:?}");
        assert!(debug.contains("Ntlm") && debug.contains("GENTIAN") && !debug.contains("hunter2"));
        let mut errors = ConfigErrors::default();
        config.validate("directory", &mut errors);
        assert!(errors.0.is_empty(), "{errors:?}");
        let back = serde_json::to_value(&config.bind).expect("serialise");
        assert_eq!(back["kind"], "ntlm");
        assert_eq!(back["domain"], "GENTIAN");

        let bad = DirectoryConfig {
            urls: vec!["ldapi://%2Frun%2Fldapi".into()],
            bind: Bind::Ntlm {
                username: "a\\b\\c".into(),
                domain: None,
                password: Secret::new(""),
            },
            ..config
        };
        let mut errors = ConfigErrors::default();
        bad.validate("directory", &mut errors);
        let paths = errors.paths();
        for p in [
            "directory.bind.username",
            "directory.bind.password",
            "directory.bind",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
    }
}
