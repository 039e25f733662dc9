//! Test certificates: a throwaway certificate authority generated with `rcgen`, server certificates
//! it signs for `localhost` and `127.0.0.1`, and a `rustls` client configuration that trusts a given
//! CA, so tests verify StartTLS and LDAPS (or PostgreSQL TLS) against a private CA the way a
//! production host would.
//!
//! ```no_run
//! # fn demo() -> jim_export_testkit::Result<()> {
//! use jim_export_testkit::tls::{TestCa, client_config};
//! let ca = TestCa::new("jim-export test CA")?;
//! let server = ca.server_cert(&[])?; // SANs DNS:localhost, IP:127.0.0.1
//! let files = server.write_to(std::path::Path::new("tls"))?;
//! let config = client_config(ca.cert_pem())?; // trusts only this CA
//! # let _ = (files, config); Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{IoContext, Result, TestkitError};

/// A self-signed certificate authority that signs server certificates for tests.
///
/// Two `TestCa`s are unrelated: a client that trusts one refuses servers certified by the other,
/// which is how tests prove that certificates are really verified (see [`TestCa::unrelated`]).
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signing key stays out of Debug output.
        f.debug_struct("TestCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn cert_error(what: &str) -> impl FnOnce(rcgen::Error) -> TestkitError + '_ {
    move |e| TestkitError::Certificate(format!("{what}: {e}"))
}

impl TestCa {
    /// Generates a new CA (ECDSA P-256) whose subject common name is `common_name`.
    pub fn new(common_name: &str) -> Result<TestCa> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(cert_error("CA parameters"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "jim-export tests");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let key = KeyPair::generate().map_err(cert_error("CA key"))?;
        let cert = params
            .self_signed(&key)
            .map_err(cert_error("CA certificate"))?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A second CA, unrelated to any other: for "a server certified by an unknown CA is refused" tests.
    pub fn unrelated() -> Result<TestCa> {
        TestCa::new("jim-export unrelated test CA")
    }

    /// The CA certificate (PEM), the trust anchor clients load.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a server certificate with SANs `DNS:localhost`, `IP:127.0.0.1` and `extra_names` (each a
    /// DNS name or an IP address).
    pub fn server_cert(&self, extra_names: &[&str]) -> Result<ServerCert> {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        for name in extra_names {
            if !names.iter().any(|n| n == name) {
                names.push((*name).to_string());
            }
        }
        let mut params = CertificateParams::new(names.clone())
            .map_err(cert_error("server certificate names"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "jim-export tests");
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let key = KeyPair::generate().map_err(cert_error("server key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_error("server certificate"))?;
        Ok(ServerCert {
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            names,
        })
    }

    /// A `rustls` client configuration that trusts only this CA.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        client_config(&self.cert_pem)
    }
}

/// A server certificate, its private key and the CA that signed it, all PEM.
#[derive(Clone)]
pub struct ServerCert {
    /// The signing CA's certificate.
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
    /// The subject alternative names the certificate carries.
    pub names: Vec<String>,
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("names", &self.names)
            .field("key_pem", &"***")
            .finish_non_exhaustive()
    }
}

/// Where [`ServerCert::write_to`] put the files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `ca.pem`: the CA certificate.
    pub ca: PathBuf,
    /// `server.pem`: the server certificate.
    pub cert: PathBuf,
    /// `server.key`: the private key, mode 0600.
    pub key: PathBuf,
}

impl ServerCert {
    /// Writes `ca.pem`, `server.pem` and `server.key` (mode 0600) into `dir`, creating it if needed.
    pub fn write_to(&self, dir: &Path) -> Result<TlsFiles> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        std::fs::write(&files.ca, &self.ca_pem)
            .io_context(|| format!("writing {}", files.ca.display()))?;
        std::fs::write(&files.cert, &self.cert_pem)
            .io_context(|| format!("writing {}", files.cert.display()))?;
        std::fs::write(&files.key, &self.key_pem)
            .io_context(|| format!("writing {}", files.key.display()))?;
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))
            .io_context(|| format!("restricting {}", files.key.display()))?;
        Ok(files)
    }
}

/// A `rustls` client configuration (ring provider, TLS 1.2 and 1.3) that trusts exactly the
/// certificates in `ca_pem`, for ldap3 (`LdapConnSettings::set_config`) or any rustls client.
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert =
            cert.map_err(|e| TestkitError::Certificate(format!("reading the CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TestkitError::Certificate(format!("trusting the CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(TestkitError::Certificate(
            "the CA PEM holds no certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TestkitError::Certificate(format!("TLS protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn server_cert_is_signed_by_its_ca_and_names_loopback() {
        let ca = TestCa::new("unit CA").expect("CA");
        let cert = ca.server_cert(&["ldap.test", "localhost"]).expect("cert");
        assert_eq!(cert.names, ["localhost", "127.0.0.1", "ldap.test"]);
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        assert_eq!(cert.ca_pem, ca.cert_pem());
        assert!(!format!("{cert:?}").contains("PRIVATE KEY"));

        // Verify the chain with rustls' own verifier, as a client would.
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("pem"))
                .expect("add");
            Arc::new(r)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let leaf = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("leaf");
        let now = rustls::pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1", "ldap.test"] {
            let server_name = rustls::pki_types::ServerName::try_from(name).expect("name");
            verifier
                .verify_server_cert(&leaf, &[], &server_name, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = TestCa::unrelated().expect("other CA");
        let other_roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(CertificateDer::from_pem_slice(other.cert_pem().as_bytes()).expect("pem"))
                .expect("add");
            Arc::new(r)
        };
        let other_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            other_roots,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        assert!(
            other_verifier
                .verify_server_cert(&leaf, &[], &name, &[], now)
                .is_err()
        );
    }

    #[test]
    fn client_config_rejects_empty_pem() {
        assert!(client_config("").is_err());
        let ca = TestCa::new("unit CA").expect("CA");
        assert!(client_config(ca.cert_pem()).is_ok());
    }
}
