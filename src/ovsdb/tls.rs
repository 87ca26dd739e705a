//! `ssl:` sessions: TLS over TCP with a client certificate, on rustls (ring provider,
//! the same one kube uses).
//!
//! Trust follows OVS's own SSL model (`--private-key`, `--certificate`, `--ca-cert`): the
//! server must present a certificate chain signed by the given CA — a private CA of the
//! fabric, as `ovs-pki` makes — and must ask for and accept our client certificate.
//! Like OVS, the server's name is NOT matched against its certificate: certificates made
//! by `ovs-pki` carry no subjectAltName, and switches are usually reached by IP address.
//! Chain, validity period and signatures are verified as usual; only the name check is
//! skipped, and only after the chain verified.
//!
//! The PEM files are read on every connect, so rotated certificates are picked up by the
//! next reconnect.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// The PEM files of an `ssl:` session (as `--private-key`, `--certificate`, `--ca-cert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Our private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// Our certificate (chain), signed by a CA the server trusts.
    pub certificate: PathBuf,
    /// The CA certificate(s) the server's certificate must chain to.
    pub ca_certificate: PathBuf,
}

fn read_certs(path: &PathBuf, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Accepts a chain the CA verified even when the server name does not match (see module).
#[derive(Debug)]
struct CaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verified {
            // The name is checked last, after the chain: here the chain is good.
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Builds the client configuration from the PEM files; errors name the file and the cause.
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.ca_certificate, "CA certificate")? {
        roots
            .add(ca)
            .map_err(|e| format!("CA certificate {}: {e}", files.ca_certificate.display()))?;
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("CA certificate {}: {e}", files.ca_certificate.display()))?;
    let chain = read_certs(&files.certificate, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .map_err(|e| format!("private key {}: {e}", files.private_key.display()))?;
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CaOnly(webpki)))
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            format!(
                "certificate {} / private key: {e}",
                files.certificate.display()
            )
        })
}

/// Explains the usual handshake failures in words an operator can act on.
pub fn explain(error: &std::io::Error) -> String {
    let text = error.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (the server's certificate is not signed by the configured CA certificate)"
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        " (the server's certificate is outside its validity period)"
    } else if text.contains("alert") || text.contains("reset") || text.contains("eof") {
        " (the server may have refused our client certificate)"
    } else {
        ""
    };
    format!("TLS handshake: {text}{hint}")
}
