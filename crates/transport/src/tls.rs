//! TLS 1.3 for agent sessions: the server's persistent identity, and an agent-side verifier
//! that trusts exactly one pinned public key instead of certificate authorities.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rport_protocol::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// ALPN protocol id, so a TLS endpoint of something else fails fast instead of hanging.
pub const ALPN: &[u8] = b"rport/1";

/// Encrypted bytes rustls may hold before the socket takes them. Its default, 64 KiB,
/// costs a system call per 64 KiB under load; the larger limit costs memory only while a
/// session is busy.
pub const SEND_BUFFER_LIMIT: usize = 256 * 1024;

const KEY_FILE: &str = "rportd-key.pem";
const CERT_FILE: &str = "rportd-cert.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    BadKeyMaterial { path: PathBuf, reason: String },
    #[error("generating the server key: {0}")]
    Generate(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider both sides use. AES-128-GCM first: it is the fastest suite on CPUs
/// with AES instructions, and throughput is what tunnels are judged by.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| match suite.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 2,
            _ => 1,
        });
    Arc::new(provider)
}

/// The server's key pair and self-signed certificate, created once and kept in `data_dir`.
pub struct ServerIdentity {
    /// Leaf first; a generated identity has only the leaf.
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// Loads the identity from `data_dir`, or creates and stores a new one there.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, TlsError> {
        let key_path = data_dir.join(KEY_FILE);
        let cert_path = data_dir.join(CERT_FILE);
        if key_path.exists() && cert_path.exists() {
            return Self::load(&key_path, &cert_path);
        }
        let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec!["rportd".to_owned()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        // Key first: a crash between the two writes leaves no certificate, so the next
        // start regenerates both instead of pairing a certificate with the wrong key.
        write_private(&key_path, key_pair.serialize_pem().as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
        Self::load(&key_path, &cert_path)
    }

    /// An operator's certificate (chain, leaf first) and key instead of the generated
    /// ones: agents may pin its key's fingerprint, or check the chain against their roots.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        Self::load(key_path, cert_path)
    }

    fn load(key_path: &Path, cert_path: &Path) -> Result<Self, TlsError> {
        let (chain, key) = read_pem_pair(cert_path, key_path)?;
        let bad = |path: &Path, reason: String| TlsError::BadKeyMaterial {
            path: path.to_owned(),
            reason,
        };
        let leaf = chain
            .first()
            .ok_or_else(|| bad(cert_path, "no certificate in file".into()))?;
        let fingerprint =
            fingerprint_of_cert(leaf).map_err(|reason| bad(cert_path, reason.to_string()))?;
        let identity = Self {
            chain,
            key,
            fingerprint,
        };
        // Catch a key and certificate that do not belong together now, not at the first handshake.
        identity.server_config().map_err(|e| {
            bad(
                key_path,
                format!("does not match {}: {e}", cert_path.display()),
            )
        })?;
        Ok(identity)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A TLS 1.3-only server configuration presenting this identity.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        // Session tickets let thousands of agents reconnect after a restart with cheaper
        // handshakes; the key never leaves this process.
        config.send_tls13_tickets = 1;
        Ok(Arc::new(config))
    }
}

/// A PEM certificate chain (leaf first, at least one) and its private key, read from files;
/// errors name the file.
pub fn read_pem_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let bad = |path: &Path, reason: String| TlsError::BadKeyMaterial {
        path: path.to_owned(),
        reason,
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert_path, "no certificate in file".into()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| bad(key_path, e.to_string()))?
        .ok_or_else(|| bad(key_path, "no private key in file".into()))?;
    Ok((chain, key))
}

/// Writes a file readable by its owner only, atomically (temporary file, then rename).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    let io_err = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    {
        use std::io::Write;
        let mut file = options.open(&tmp).map_err(io_err)?;
        file.write_all(contents).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
    }
    fs::rename(&tmp, path).map_err(io_err)
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo.
pub fn fingerprint_of_cert(cert: &CertificateDer<'_>) -> Result<Fingerprint, webpki::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)?;
    Ok(Fingerprint::of_public_key(
        parsed.subject_public_key_info().as_ref(),
    ))
}

/// What the agent accepts as the server's key.
#[derive(Debug, Clone, Copy)]
pub enum ServerPin {
    /// Only this key.
    Exact(Fingerprint),
    /// Any key (trust on first use); the caller reads the key seen and pins it.
    FirstUse,
}

/// Records the fingerprint the server presented, so a mismatch can be reported with both values.
#[derive(Debug, Clone, Default)]
pub struct SeenFingerprint(Arc<Mutex<Option<Fingerprint>>>);

impl SeenFingerprint {
    pub fn get(&self) -> Option<Fingerprint> {
        self.0.lock().ok().and_then(|seen| *seen)
    }

    fn set(&self, fingerprint: Fingerprint) {
        if let Ok(mut seen) = self.0.lock() {
            *seen = Some(fingerprint);
        }
    }
}

/// How a client judges the certificate a server presents, apart from the handshake
/// signatures, which [`SignatureCheckingVerifier`] checks the same way for every judge.
pub trait CertificateJudge: std::fmt::Debug + Send + Sync {
    /// Accepts or refuses the server's leaf certificate.
    fn judge(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error>;
}

/// A rustls server certificate verifier that asks its [`CertificateJudge`] about the
/// certificate and checks, with the ring provider's algorithms, that the server's
/// handshake signatures are made with that certificate's key.
#[derive(Debug)]
pub struct SignatureCheckingVerifier<J> {
    judge: J,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<J: CertificateJudge> SignatureCheckingVerifier<J> {
    pub fn new(judge: J) -> Arc<Self> {
        Arc::new(Self {
            judge,
            algorithms: crypto_provider().signature_verification_algorithms,
        })
    }
}

impl<J: CertificateJudge> ServerCertVerifier for SignatureCheckingVerifier<J> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.judge.judge(end_entity)?;
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

/// Accepts the server's key if the pin allows it; the handshake signature then proves the
/// server holds that key.
#[derive(Debug)]
struct PinnedKeyVerifier {
    pin: ServerPin,
    seen: SeenFingerprint,
}

impl CertificateJudge for PinnedKeyVerifier {
    fn judge(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let presented = fingerprint_of_cert(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        self.seen.set(presented);
        match self.pin {
            ServerPin::Exact(expected) if expected != presented => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A TLS 1.3 client configuration that trusts only the pinned server key.
pub fn client_config(
    pin: ServerPin,
) -> Result<(Arc<rustls::ClientConfig>, SeenFingerprint), TlsError> {
    let provider = crypto_provider();
    let seen = SeenFingerprint::default();
    let verifier = SignatureCheckingVerifier::new(PinnedKeyVerifier {
        pin,
        seen: seen.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok((Arc::new(config), seen))
}

/// A TLS 1.3 client configuration that checks the server's certificate chain against
/// `roots` and its name against the one the agent connects to, as a browser would: for a
/// server whose certificate comes from a CA, so that renewing it (with a new key) needs
/// no change on the agents.
pub fn client_config_with_roots(
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| TlsError::Generate(format!("certificate verifier: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Root certificates from a PEM file.
pub fn roots_from_pem(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let pem = fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| TlsError::BadKeyMaterial {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsError::BadKeyMaterial {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::BadKeyMaterial {
            path: path.to_owned(),
            reason: "no certificate in file".into(),
        });
    }
    Ok(roots)
}

/// The name agents send in SNI; the server's certificate is pinned, not matched by name.
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from("rportd")
            .map(|name| name.to_owned())
            .unwrap_or_else(|_| unreachable!("\"rportd\" is a valid DNS name")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ServerIdentity::load_or_create(dir.path()).expect("create");
        let second = ServerIdentity::load_or_create(dir.path()).expect("load");
        assert_eq!(first.fingerprint(), second.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
    }

    #[test]
    fn fingerprint_is_sha256_of_the_public_key() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = ServerIdentity::load_or_create(dir.path()).expect("create");
        let key_pem = fs::read_to_string(dir.path().join(KEY_FILE)).expect("key");
        let key_pair = rcgen::KeyPair::from_pem(&key_pem).expect("parse key");
        let digest: [u8; 32] =
            Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key_pair)).into();
        let expected = hex_colon(&digest);
        assert_eq!(identity.fingerprint().to_string(), expected);
    }

    fn hex_colon(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    #[test]
    fn corrupt_key_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        ServerIdentity::load_or_create(dir.path()).expect("create");
        fs::write(dir.path().join(KEY_FILE), "garbage").expect("write");
        let err = ServerIdentity::load_or_create(dir.path()).expect_err("must fail");
        assert!(err.to_string().contains(KEY_FILE), "{err}");
    }
}
