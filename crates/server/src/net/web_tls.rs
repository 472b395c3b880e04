//! Certificates for the HTTPS rportd serves to browsers and scripts (the API and the
//! tunnel proxy): the operator's files, or a self-signed one kept in `data_dir`; and the
//! TLS client the proxy uses towards devices, which rarely have a valid certificate.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rport_transport::tls::{
    CertificateJudge, SignatureCheckingVerifier, TlsError, crypto_provider, read_pem_pair,
    write_private,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain and its key.
pub struct WebCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for WebCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCert")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl WebCert {
    /// PEM files as an operator gives them: the certificate chain, leaf first, and its key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let (chain, key) = read_pem_pair(cert_path, key_path)?;
        let bad = |path: &Path, reason: String| TlsError::BadKeyMaterial {
            path: path.to_owned(),
            reason,
        };
        let cert = Self { chain, key };
        // A key that does not belong to the certificate fails now, not at the first visitor.
        cert.server_config().map_err(|e| {
            bad(
                key_path,
                format!("does not match {}: {e}", cert_path.display()),
            )
        })?;
        Ok(cert)
    }

    /// A self-signed certificate for `names` (DNS names or IP addresses), kept in
    /// `data_dir` as `{stem}-cert.pem` and `{stem}-key.pem` and made again when the names
    /// change.
    pub fn self_signed(data_dir: &Path, stem: &str, names: &[String]) -> Result<Self, TlsError> {
        let cert_path = data_dir.join(format!("{stem}-cert.pem"));
        let key_path = data_dir.join(format!("{stem}-key.pem"));
        let names_path = data_dir.join(format!("{stem}-names.txt"));
        let wanted = names.join("\n");
        let current = fs::read_to_string(&names_path).ok();
        if current.as_deref() == Some(wanted.as_str()) && cert_path.exists() && key_path.exists() {
            return Self::load(&cert_path, &key_path);
        }
        let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key_pair = rcgen::KeyPair::generate().map_err(generate)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rportd (self-signed)");
        let cert = params.self_signed(&key_pair).map_err(generate)?;
        write_private(&key_path, key_pair.serialize_pem().as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
        write_private(&names_path, wanted.as_bytes())?;
        Self::load(&cert_path, &key_path)
    }

    /// TLS 1.2 and 1.3 only, HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A TLS client that accepts any certificate the device presents. The tunnel already
/// reached the right device through its authenticated agent; what TLS adds on that last
/// hop is encryption the device insists on, not identity.
pub fn device_client_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier = SignatureCheckingVerifier::new(AnyDeviceCertificate);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyDeviceCertificate;

impl CertificateJudge for AnyDeviceCertificate {
    fn judge(&self, _end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_kept_until_the_names_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["*.tunnels.example.com".to_owned(), "localhost".to_owned()];
        WebCert::self_signed(dir.path(), "proxy", &names).expect("generate");
        let first = fs::read(dir.path().join("proxy-cert.pem")).expect("cert");
        WebCert::self_signed(dir.path(), "proxy", &names).expect("load");
        assert_eq!(
            fs::read(dir.path().join("proxy-cert.pem")).expect("cert"),
            first
        );
        WebCert::self_signed(dir.path(), "proxy", &names[1..]).expect("regenerate");
        assert_ne!(
            fs::read(dir.path().join("proxy-cert.pem")).expect("cert"),
            first
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_with_the_file_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        WebCert::self_signed(dir.path(), "a", &["a.example".to_owned()]).expect("a");
        WebCert::self_signed(dir.path(), "b", &["b.example".to_owned()]).expect("b");
        let err = WebCert::load(
            &dir.path().join("a-cert.pem"),
            &dir.path().join("b-key.pem"),
        )
        .expect_err("mismatch");
        let text = err.to_string();
        assert!(
            text.contains("b-key.pem") && text.contains("a-cert.pem"),
            "{text}"
        );
    }
}
