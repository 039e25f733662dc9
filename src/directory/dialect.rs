//! Which directory this is, from its root DSE, and what follows from that: how anchors come back,
//! whether RFC 4527 post-read is available, and how much concurrency it takes (`ldap-export.md` §1,
//! §6; `notes/anchors.md` §2).
//!
//! Detection follows JIM's rules in order, plus 389-ds: an AD capability OID
//! (`1.2.840.113556.1.4.800` AD DS, `…1851` AD LDS) means Samba AD when `vendorName` says Samba, else
//! Active Directory; then `vendorName` containing OpenLDAP, or `structuralObjectClass` containing
//! OpenLDAP (`OpenLDAProotDSE`), means OpenLDAP; `vendorName` "389 Project" or "Red Hat" means 389-ds;
//! anything else (an empty root DSE included) is generic.

use std::collections::HashMap;

use crate::config::Dialect;
use crate::plan::AnchorEncoding;

/// The AD DS capability OID (`LDAP_CAP_ACTIVE_DIRECTORY_OID`).
pub const AD_DS_CAPABILITY: &str = "1.2.840.113556.1.4.800";
/// The AD LDS capability OID (`LDAP_CAP_ACTIVE_DIRECTORY_ADAM_OID`).
pub const AD_LDS_CAPABILITY: &str = "1.2.840.113556.1.4.1851";
/// The RFC 4527 post-read control.
pub const POST_READ_CONTROL: &str = "1.3.6.1.1.13.2";

/// The RFC 4528 assertion control: the server applies the operation only if the entry matches a
/// filter.
pub const ASSERTION_CONTROL: &str = "1.3.6.1.1.12";
/// The RFC 4532 "Who am I?" extended operation.
pub const WHO_AM_I_EXTENSION: &str = "1.3.6.1.4.1.4203.1.11.3";

/// The root DSE attributes the engine reads.
pub const ROOT_DSE_ATTRIBUTES: &[&str] = &[
    "supportedCapabilities",
    "supportedControl",
    "supportedExtension",
    "vendorName",
    "vendorVersion",
    "structuralObjectClass",
    "namingContexts",
    "dnsHostName",
];

/// JIM's Export Concurrency after auto-tune for AD and OpenLDAP (operations in flight on its one
/// connection), for comparison with our defaults.
pub const JIM_TUNED_CONCURRENCY: u32 = 16;
/// JIM's default Export Concurrency (Samba AD, generic).
pub const JIM_DEFAULT_CONCURRENCY: u32 = 4;

/// A root DSE: attribute names (lower-cased) to values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootDse {
    attributes: HashMap<String, Vec<String>>,
}

impl RootDse {
    /// A root DSE from (name, values) pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Self {
        let mut attributes: HashMap<String, Vec<String>> = HashMap::new();
        for (name, values) in pairs {
            attributes
                .entry(name.to_ascii_lowercase())
                .or_default()
                .extend(values.into_iter().map(str::to_string));
        }
        Self { attributes }
    }

    /// Adds values of an attribute.
    pub fn insert(&mut self, name: &str, values: impl IntoIterator<Item = String>) {
        self.attributes
            .entry(name.to_ascii_lowercase())
            .or_default()
            .extend(values);
    }

    /// The values of an attribute (case-insensitive name).
    pub fn values(&self, name: &str) -> &[String] {
        self.attributes
            .get(&name.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    fn any_contains(&self, name: &str, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        self.values(name)
            .iter()
            .any(|v| v.to_ascii_lowercase().contains(&needle))
    }

    fn has_value(&self, name: &str, value: &str) -> bool {
        self.values(name).iter().any(|v| v.trim() == value)
    }

    /// The dialect, by the rules in the module documentation.
    pub fn dialect(&self) -> Dialect {
        if self.has_value("supportedCapabilities", AD_DS_CAPABILITY)
            || self.has_value("supportedCapabilities", AD_LDS_CAPABILITY)
        {
            return if self.any_contains("vendorName", "samba") {
                Dialect::SambaAd
            } else {
                Dialect::ActiveDirectory
            };
        }
        if self.any_contains("vendorName", "openldap")
            || self.any_contains("structuralObjectClass", "openldap")
        {
            return Dialect::OpenLdap;
        }
        if self.any_contains("vendorName", "389 project")
            || self.any_contains("vendorName", "red hat")
        {
            return Dialect::Ds389;
        }
        Dialect::Generic
    }

    /// True when the RFC 4527 post-read control is advertised (AD does not).
    pub fn supports_post_read(&self) -> bool {
        self.has_value("supportedControl", POST_READ_CONTROL)
    }

    /// True when the RFC 4528 assertion control is advertised.
    pub fn supports_assertion(&self) -> bool {
        self.has_value("supportedControl", ASSERTION_CONTROL)
    }

    /// True when the RFC 4532 "Who am I?" operation is advertised.
    pub fn supports_who_am_i(&self) -> bool {
        self.has_value("supportedExtension", WHO_AM_I_EXTENSION)
    }
}

/// What the engine assumes about the directory it writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryProfile {
    /// The dialect (configured, or detected from the root DSE).
    pub dialect: Dialect,
    /// True when the dialect came from the root DSE rather than the configuration.
    pub detected: bool,
    /// `vendorName` and `vendorVersion`, when the server gives them.
    pub vendor: Option<String>,
    /// True when the root DSE advertises the post-read control: anchors then come back on the Add.
    pub supports_post_read: bool,
    /// True when the root DSE advertises the assertion control: a write to a known object then
    /// asserts the object's anchor, so it never lands on another entry at the object's DN.
    pub supports_assertion: bool,
    /// The anchor attribute the dialect uses when the object type flags none.
    pub anchor_attribute: &'static str,
    /// How that anchor comes back.
    pub anchor_encoding: AnchorEncoding,
    /// Default number of connections.
    pub connections: u32,
    /// Default number of operations in flight on each connection.
    pub in_flight_per_connection: u32,
}

impl DirectoryProfile {
    /// The profile for a root DSE; `configured` overrides the detected dialect.
    pub fn from_root_dse(root: &RootDse, configured: Option<Dialect>) -> Self {
        let dialect = configured.unwrap_or_else(|| root.dialect());
        let vendor = {
            let name = root.values("vendorName").join(" ");
            let version = root.values("vendorVersion").join(" ");
            let v = format!("{name} {version}").trim().to_string();
            (!v.is_empty()).then_some(v)
        };
        Self {
            supports_post_read: root.supports_post_read(),
            supports_assertion: root.supports_assertion(),
            detected: configured.is_none(),
            vendor,
            ..Self::for_dialect(dialect)
        }
    }

    /// The defaults of a dialect, without a root DSE (no post-read assumed).
    pub fn for_dialect(dialect: Dialect) -> Self {
        let (anchor_attribute, anchor_encoding) = match dialect {
            Dialect::ActiveDirectory | Dialect::SambaAd => {
                ("objectGUID", AnchorEncoding::MicrosoftGuid)
            }
            _ => ("entryUUID", AnchorEncoding::Text),
        };
        let (connections, in_flight_per_connection) = concurrency_defaults(dialect);
        Self {
            dialect,
            detected: false,
            vendor: None,
            supports_post_read: false,
            supports_assertion: false,
            anchor_attribute,
            anchor_encoding,
            connections,
            in_flight_per_connection,
        }
    }

    /// Total operations in flight by default.
    pub fn max_in_flight(&self) -> u32 {
        self.connections * self.in_flight_per_connection
    }
}

/// (connections, operations in flight per connection) by dialect:
///
/// - OpenLDAP: slapd lets one connection use at most half its threads (8 of the default 16); more
///   only queues, so spread over 4 connections × 8 (32 in flight; JIM: 16 on one connection).
/// - 389-ds: `nsslapd-maxthreadsperconn` defaults to 5, so 4 × 5.
/// - Active Directory: about 4 LDAP threads per DC core, shared by all clients; 4 × 4 = 16 fits a
///   4-core DC (JIM: 16 after its auto-tune).
/// - Samba AD: conservative, as JIM (4 on one connection).
/// - Generic: unknown limits; 2 × 4.
pub fn concurrency_defaults(dialect: Dialect) -> (u32, u32) {
    match dialect {
        Dialect::OpenLdap => (4, 8),
        Dialect::Ds389 => (4, 5),
        Dialect::ActiveDirectory => (4, 4),
        Dialect::SambaAd => (1, JIM_DEFAULT_CONCURRENCY),
        Dialect::Generic => (2, 4),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Root DSEs of the directories no test server here provides, as those servers publish them.

    use super::RootDse;

    /// A Windows Server 2019 domain controller (AD DS).
    pub fn windows_ad() -> RootDse {
        RootDse::from_pairs([
            (
                "supportedCapabilities",
                vec![
                    "1.2.840.113556.1.4.800",
                    "1.2.840.113556.1.4.1670",
                    "1.2.840.113556.1.4.1791",
                    "1.2.840.113556.1.4.1935",
                    "1.2.840.113556.1.4.2080",
                    "1.2.840.113556.1.4.2237",
                ],
            ),
            (
                "supportedControl",
                vec![
                    "1.2.840.113556.1.4.319",
                    "1.2.840.113556.1.4.801",
                    "1.2.840.113556.1.4.473",
                    "1.2.840.113556.1.4.528",
                    "1.2.840.113556.1.4.417",
                    "1.2.840.113556.1.4.619",
                    "1.2.840.113556.1.4.841",
                    "1.2.840.113556.1.4.529",
                    "1.2.840.113556.1.4.805",
                    "1.2.840.113556.1.4.521",
                    "1.2.840.113556.1.4.970",
                    "1.2.840.113556.1.4.1338",
                    "1.2.840.113556.1.4.474",
                    "1.2.840.113556.1.4.1339",
                    "1.2.840.113556.1.4.1340",
                    "1.2.840.113556.1.4.1413",
                    "2.16.840.1.113730.3.4.9",
                    "2.16.840.1.113730.3.4.10",
                    "1.2.840.113556.1.4.1504",
                    "1.2.840.113556.1.4.1852",
                    "1.2.840.113556.1.4.802",
                    "1.2.840.113556.1.4.1907",
                    "1.2.840.113556.1.4.1948",
                    "1.2.840.113556.1.4.1974",
                    "1.2.840.113556.1.4.1341",
                    "1.2.840.113556.1.4.2026",
                    "1.2.840.113556.1.4.2064",
                    "1.2.840.113556.1.4.2065",
                    "1.2.840.113556.1.4.2066",
                    "1.2.840.113556.1.4.2090",
                    "1.2.840.113556.1.4.2205",
                    "1.2.840.113556.1.4.2204",
                    "1.2.840.113556.1.4.2206",
                    "1.2.840.113556.1.4.2211",
                    "1.2.840.113556.1.4.2239",
                    "1.2.840.113556.1.4.2255",
                    "1.2.840.113556.1.4.2256",
                    "1.2.840.113556.1.4.2309",
                ],
            ),
            (
                "supportedExtension",
                vec![
                    "1.3.6.1.4.1.1466.20037",
                    "1.3.6.1.4.1.1466.101.119.1",
                    "1.2.840.113556.1.4.1781",
                    "1.3.6.1.4.1.4203.1.11.3",
                    "1.2.840.113556.1.4.2212",
                ],
            ),
            ("dnsHostName", vec!["DC01.corp.example.com"]),
            (
                "namingContexts",
                vec![
                    "DC=corp,DC=example,DC=com",
                    "CN=Configuration,DC=corp,DC=example,DC=com",
                ],
            ),
            ("domainControllerFunctionality", vec!["7"]),
        ])
    }

    /// An AD LDS (ADAM) instance.
    pub fn ad_lds() -> RootDse {
        RootDse::from_pairs([
            (
                "supportedCapabilities",
                vec![
                    "1.2.840.113556.1.4.1851",
                    "1.2.840.113556.1.4.1670",
                    "1.2.840.113556.1.4.1791",
                ],
            ),
            (
                "supportedControl",
                vec!["1.2.840.113556.1.4.319", "1.2.840.113556.1.4.1413"],
            ),
        ])
    }

    /// Samba 4.17 as an AD domain controller (as `notes/toolchain.md` §5.3 recorded it).
    pub fn samba_ad() -> RootDse {
        RootDse::from_pairs([
            (
                "supportedCapabilities",
                vec![
                    "1.2.840.113556.1.4.800",
                    "1.2.840.113556.1.4.1670",
                    "1.2.840.113556.1.4.1791",
                    "1.2.840.113556.1.4.1935",
                    "1.2.840.113556.1.4.2080",
                ],
            ),
            (
                "supportedControl",
                vec![
                    "1.2.840.113556.1.4.841",
                    "1.2.840.113556.1.4.319",
                    "1.2.840.113556.1.4.473",
                    "1.2.840.113556.1.4.1504",
                    "1.2.840.113556.1.4.801",
                    "1.2.840.113556.1.4.805",
                    "1.2.840.113556.1.4.1338",
                    "1.2.840.113556.1.4.529",
                    "1.2.840.113556.1.4.417",
                    "1.2.840.113556.1.4.2064",
                    "1.2.840.113556.1.4.1413",
                    "1.2.840.113556.1.4.1339",
                    "1.2.840.113556.1.4.1340",
                    "1.2.840.113556.1.4.1341",
                    "1.2.840.113556.1.4.2066",
                    "1.2.840.113556.1.4.528",
                    "1.2.840.113556.1.4.2065",
                ],
            ),
            ("supportedExtension", vec!["1.3.6.1.4.1.1466.20037"]),
            ("vendorName", vec!["Samba Team (https://www.samba.org)"]),
            ("vendorVersion", vec!["4.17.12-Debian"]),
            ("dnsHostName", vec!["dc1.example.test"]),
            ("domainControllerFunctionality", vec!["4"]),
        ])
    }

    /// 389 Directory Server 2.x.
    pub fn ds389() -> RootDse {
        RootDse::from_pairs([
            (
                "supportedControl",
                vec![
                    "2.16.840.1.113730.3.4.2",
                    "2.16.840.1.113730.3.4.3",
                    "2.16.840.1.113730.3.4.4",
                    "2.16.840.1.113730.3.4.5",
                    "1.2.840.113556.1.4.473",
                    "2.16.840.1.113730.3.4.9",
                    "2.16.840.1.113730.3.4.16",
                    "2.16.840.1.113730.3.4.15",
                    "2.16.840.1.113730.3.4.17",
                    "2.16.840.1.113730.3.4.19",
                    "1.3.6.1.1.13.1",
                    "1.3.6.1.1.13.2",
                    "1.3.6.1.4.1.42.2.27.8.5.1",
                    "1.3.6.1.4.1.42.2.27.9.5.2",
                    "1.2.840.113556.1.4.319",
                    "1.3.6.1.4.1.42.2.27.9.5.8",
                    "1.3.6.1.4.1.4203.666.5.16",
                    "2.16.840.1.113730.3.4.14",
                    "2.16.840.1.113730.3.4.20",
                    "1.3.6.1.4.1.1466.29539.12",
                    "2.16.840.1.113730.3.4.12",
                    "2.16.840.1.113730.3.4.18",
                    "2.16.840.1.113730.3.4.13",
                    "1.3.6.1.4.1.4203.1.9.1.1",
                    "1.2.840.113556.1.4.1413",
                ],
            ),
            (
                "supportedExtension",
                vec![
                    "2.16.840.1.113730.3.5.7",
                    "2.16.840.1.113730.3.5.8",
                    "1.3.6.1.4.1.4203.1.11.3",
                    "1.3.6.1.4.1.4203.1.11.1",
                    "1.3.6.1.4.1.1466.20037",
                ],
            ),
            ("vendorName", vec!["389 Project"]),
            ("vendorVersion", vec!["389-Directory/2.4.5 B2024.017.0000"]),
            ("namingContexts", vec!["dc=example,dc=com"]),
        ])
    }

    /// Red Hat Directory Server 11.
    pub fn rhds() -> RootDse {
        RootDse::from_pairs([
            ("supportedControl", vec!["1.3.6.1.1.13.2"]),
            ("vendorName", vec!["Red Hat, Inc."]),
            ("vendorVersion", vec!["Red Hat-Directory/11.7"]),
        ])
    }

    /// OpenLDAP slapd 2.5 (as the test server here publishes it).
    pub fn openldap() -> RootDse {
        RootDse::from_pairs([
            ("structuralObjectClass", vec!["OpenLDAProotDSE"]),
            (
                "supportedControl",
                vec![
                    "1.3.6.1.4.1.4203.1.9.1.1",
                    "2.16.840.1.113730.3.4.18",
                    "2.16.840.1.113730.3.4.2",
                    "1.3.6.1.4.1.4203.1.10.1",
                    "1.3.6.1.1.22",
                    "1.2.840.113556.1.4.319",
                    "1.2.826.0.1.3344810.2.3",
                    "1.3.6.1.1.13.2",
                    "1.3.6.1.1.13.1",
                    "1.3.6.1.1.12",
                ],
            ),
            ("namingContexts", vec!["dc=example,dc=org"]),
        ])
    }

    /// An unknown server (ApacheDS).
    pub fn apacheds() -> RootDse {
        RootDse::from_pairs([
            ("vendorName", vec!["Apache Software Foundation"]),
            ("vendorVersion", vec!["2.0.0.AM26"]),
            ("supportedControl", vec!["1.2.840.113556.1.4.319"]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn detects_each_dialect_from_its_root_dse() {
        assert_eq!(windows_ad().dialect(), Dialect::ActiveDirectory);
        assert_eq!(ad_lds().dialect(), Dialect::ActiveDirectory);
        assert_eq!(samba_ad().dialect(), Dialect::SambaAd);
        assert_eq!(ds389().dialect(), Dialect::Ds389);
        assert_eq!(rhds().dialect(), Dialect::Ds389);
        assert_eq!(openldap().dialect(), Dialect::OpenLdap);
        assert_eq!(apacheds().dialect(), Dialect::Generic);
        assert_eq!(RootDse::default().dialect(), Dialect::Generic);
        let vendor_only = RootDse::from_pairs([("vendorName", vec!["OpenLDAP Foundation"])]);
        assert_eq!(vendor_only.dialect(), Dialect::OpenLdap);
    }

    #[test]
    fn post_read_is_taken_from_supported_controls() {
        assert!(
            !windows_ad().supports_post_read(),
            "AD does not support RFC 4527"
        );
        assert!(!samba_ad().supports_post_read());
        assert!(ds389().supports_post_read());
        assert!(openldap().supports_post_read());
        assert!(!apacheds().supports_post_read());
    }

    #[test]
    fn assertion_is_taken_from_supported_controls() {
        assert!(openldap().supports_assertion());
        assert!(!windows_ad().supports_assertion());
        assert!(!apacheds().supports_assertion());
        assert!(DirectoryProfile::from_root_dse(&openldap(), None).supports_assertion);
        assert!(!DirectoryProfile::for_dialect(Dialect::OpenLdap).supports_assertion);
    }

    #[test]
    fn anchors_by_dialect() {
        let ad = DirectoryProfile::from_root_dse(&windows_ad(), None);
        assert_eq!(ad.anchor_attribute, "objectGUID");
        assert_eq!(ad.anchor_encoding, AnchorEncoding::MicrosoftGuid);
        let samba = DirectoryProfile::from_root_dse(&samba_ad(), None);
        assert_eq!(samba.anchor_encoding, AnchorEncoding::MicrosoftGuid);
        assert_eq!(
            samba.vendor.as_deref(),
            Some("Samba Team (https://www.samba.org) 4.17.12-Debian")
        );
        let ol = DirectoryProfile::from_root_dse(&openldap(), None);
        assert_eq!(
            (ol.anchor_attribute, ol.anchor_encoding),
            ("entryUUID", AnchorEncoding::Text)
        );
        assert!(ol.supports_post_read && ol.detected);
        let forced = DirectoryProfile::from_root_dse(&openldap(), Some(Dialect::Generic));
        assert_eq!(forced.dialect, Dialect::Generic);
        assert!(!forced.detected);
        assert!(
            forced.supports_post_read,
            "capabilities still come from the server"
        );
    }

    #[test]
    fn concurrency_defaults_follow_server_limits() {
        let ol = DirectoryProfile::for_dialect(Dialect::OpenLdap);
        assert_eq!(ol.in_flight_per_connection, 8, "half of slapd's 16 threads");
        assert!(ol.connections > 1);
        assert_eq!(
            DirectoryProfile::for_dialect(Dialect::Ds389).in_flight_per_connection,
            5
        );
        assert_eq!(
            DirectoryProfile::for_dialect(Dialect::ActiveDirectory).max_in_flight(),
            JIM_TUNED_CONCURRENCY
        );
        assert_eq!(
            DirectoryProfile::for_dialect(Dialect::SambaAd).max_in_flight(),
            JIM_DEFAULT_CONCURRENCY
        );
        assert!(
            DirectoryProfile::for_dialect(Dialect::Generic).max_in_flight()
                >= JIM_DEFAULT_CONCURRENCY
        );
    }
}
