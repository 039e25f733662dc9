//! TLS to the directory (rustls with the ring provider).
//!
//! We always hand ldap3 our own `ClientConfig`. Without one, ldap3 0.12 loads the system roots with
//! rustls-native-certs and, if *any* certificate in the store fails to load, silently uses an empty
//! store; we keep every root that loads and fail clearly when none does. Verification is on unless the
//! host sets `verify = false`, which logs a warning at every connection.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::DirectoryError;
use crate::config::DirectoryTls;

/// Builds the client configuration for `tls`.
pub fn client_config(tls: &DirectoryTls) -> Result<Arc<ClientConfig>, DirectoryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DirectoryError::Tls(format!("TLS setup failed: {e}")))?;
    if !tls.verify {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth();
        return Ok(Arc::new(config));
    }
    let roots = root_store(tls)?;
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

fn root_store(tls: &DirectoryTls) -> Result<RootCertStore, DirectoryError> {
    let mut store = RootCertStore::empty();
    let pem_source = match (&tls.ca_pem, &tls.ca_file) {
        (Some(pem), _) => Some(("directory.tls.ca_pem", pem.as_bytes().to_vec())),
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| {
                DirectoryError::Tls(format!("cannot read directory.tls.ca_file '{path}': {e}"))
            })?;
            Some(("directory.tls.ca_file", bytes))
        }
        (None, None) => None,
    };
    if let Some((field, pem)) = pem_source {
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| DirectoryError::Tls(format!("{field} is not valid PEM: {e}")))?;
            store.add(cert).map_err(|e| {
                DirectoryError::Tls(format!("{field} holds an unusable certificate: {e}"))
            })?;
        }
        if store.is_empty() {
            return Err(DirectoryError::Tls(format!("{field} holds no certificate")));
        }
        return Ok(store);
    }
    let loaded = rustls_native_certs::load_native_certs();
    let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(DirectoryError::Tls(
            "no trusted root certificates could be loaded from this system; give directory.tls.ca_pem or ca_file"
                .into(),
        ));
    }
    if !loaded.errors.is_empty() {
        tracing::debug!(
            errors = loaded.errors.len(),
            added,
            "some system root certificates could not be loaded"
        );
    }
    Ok(store)
}

/// The explicit opt-out: accepts any certificate, but still checks handshake signatures so the peer
/// must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_input_is_reported_by_field() {
        let tls = DirectoryTls {
            ca_pem: Some(
                "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into(),
            ),
            ..DirectoryTls::default()
        };
        let e = client_config(&tls).unwrap_err().to_string();
        assert!(e.contains("directory.tls.ca_pem"), "{e}");
        let tls = DirectoryTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..DirectoryTls::default()
        };
        let e = client_config(&tls).unwrap_err().to_string();
        assert!(e.contains("directory.tls.ca_file"), "{e}");
        let tls = DirectoryTls {
            ca_pem: Some("no pem here".into()),
            ..DirectoryTls::default()
        };
        assert!(client_config(&tls).is_err());
    }

    #[test]
    fn opt_out_builds() {
        let tls = DirectoryTls {
            verify: false,
            ..DirectoryTls::default()
        };
        assert!(client_config(&tls).is_ok());
    }
}
