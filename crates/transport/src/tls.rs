//! TLS 1.3 for agent sessions: the server's persistent identity, and an agent-side verifier
//! that trusts exactly one pinned public key instead of certificate authorities. The same
//! identity, presented by both ends, authenticates the channel between the nodes of a
//! cluster ([`ServerIdentity::peer_server_config`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rport_protocol::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

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
    /// Key material that is not a file's: `origin` says where it was read.
    #[error("{origin}: {reason}")]
    BadPem { origin: String, reason: String },
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
        if IdentityPem::read_files(data_dir)?.is_none() {
            IdentityPem::generate()?.write_files(data_dir)?;
        }
        Self::load(&data_dir.join(KEY_FILE), &data_dir.join(CERT_FILE))
    }

    /// An operator's certificate (chain, leaf first) and key instead of the generated
    /// ones: agents may pin its key's fingerprint, or check the chain against their roots.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        Self::load(key_path, cert_path)
    }

    /// The identity a PEM text holds (as [`IdentityPem`] makes it: the certificate, then
    /// the key); errors name `origin`, where the text came from.
    pub fn from_pem(pem: &IdentityPem, origin: &str) -> Result<Self, TlsError> {
        let bad = |reason: String| TlsError::BadPem {
            origin: origin.to_owned(),
            reason,
        };
        let text = pem.as_text().as_bytes();
        let chain = rustls_pemfile::certs(&mut &text[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = rustls_pemfile::private_key(&mut &text[..])
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("no private key in it".into()))?;
        Self::assemble(chain, key, bad, bad)
    }

    fn load(key_path: &Path, cert_path: &Path) -> Result<Self, TlsError> {
        let (chain, key) = read_pem_pair(cert_path, key_path)?;
        let bad = |path: &Path, reason: String| TlsError::BadKeyMaterial {
            path: path.to_owned(),
            reason,
        };
        Self::assemble(
            chain,
            key,
            |reason| bad(cert_path, reason),
            |reason| {
                bad(
                    key_path,
                    format!("does not match {}: {reason}", cert_path.display()),
                )
            },
        )
    }

    /// Checks a chain and key read from somewhere; `bad_cert` and `bad_pair` say where.
    fn assemble(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bad_cert: impl Fn(String) -> TlsError,
        bad_pair: impl Fn(String) -> TlsError,
    ) -> Result<Self, TlsError> {
        let leaf = chain
            .first()
            .ok_or_else(|| bad_cert("no certificate in it".into()))?;
        let fingerprint =
            fingerprint_of_cert(leaf).map_err(|reason| bad_cert(reason.to_string()))?;
        let identity = Self {
            chain,
            key,
            fingerprint,
        };
        // Catch a key and certificate that do not belong together now, not at the first handshake.
        identity
            .server_config()
            .map_err(|e| bad_pair(e.to_string()))?;
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

    /// TLS 1.3 for the server end of a channel between holders of this identity (the
    /// nodes of a cluster): it presents the identity and accepts only a client that
    /// presents a certificate for the same public key and proves it holds the key.
    pub fn peer_server_config(&self, alpn: &[u8]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier = SignatureCheckingVerifier::new(SameKey(self.fingerprint));
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        // Every connection proves the key afresh: no resumption to reason about.
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// The client end of [`ServerIdentity::peer_server_config`]: presents the identity and
    /// accepts only a server with the same public key.
    pub fn peer_client_config(&self, alpn: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let verifier = SignatureCheckingVerifier::new(SameKey(self.fingerprint));
        let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

/// A key pair and its self-signed certificate as PEM text, one string: the certificate,
/// then the private key. This is how nodes sharing a database keep one identity there,
/// and how `data_dir` keeps it in two files. `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityPem(String);

impl std::fmt::Debug for IdentityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityPem(..)")
    }
}

impl IdentityPem {
    /// A new key pair (ECDSA P-256, rcgen's default) with a certificate for `rportd`.
    pub fn generate() -> Result<Self, TlsError> {
        let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec!["rportd".to_owned()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(Self(format!("{}{}", cert.pem(), key_pair.serialize_pem())))
    }

    /// Text as [`IdentityPem::as_text`] gave it; [`ServerIdentity::from_pem`] checks it.
    pub fn from_text(text: String) -> Self {
        Self(text)
    }

    pub fn as_text(&self) -> &str {
        &self.0
    }

    /// The generated identity's files in `data_dir` (`rportd-cert.pem` and
    /// `rportd-key.pem`), when both are there.
    pub fn read_files(data_dir: &Path) -> Result<Option<Self>, TlsError> {
        let key_path = data_dir.join(KEY_FILE);
        let cert_path = data_dir.join(CERT_FILE);
        if !key_path.exists() || !cert_path.exists() {
            return Ok(None);
        }
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| TlsError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let mut text = read(&cert_path)?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&read(&key_path)?);
        Ok(Some(Self(text)))
    }

    /// Writes it as `data_dir`'s identity files, the key readable by its owner only.
    pub fn write_files(&self, data_dir: &Path) -> Result<(), TlsError> {
        let (cert, key) = self.split();
        // Key first: a crash between the two writes leaves no certificate, so the next
        // start regenerates both instead of pairing a certificate with the wrong key.
        write_private(&data_dir.join(KEY_FILE), key.as_bytes())?;
        write_private(&data_dir.join(CERT_FILE), cert.as_bytes())
    }

    /// Moves `data_dir`'s identity files aside (adding `suffix` to their names), so that
    /// another identity can be written there without destroying this one; returns the
    /// new path of the key.
    pub fn move_files_aside(data_dir: &Path, suffix: &str) -> Result<PathBuf, TlsError> {
        let mut moved_key = data_dir.join(KEY_FILE);
        for name in [KEY_FILE, CERT_FILE] {
            let from = data_dir.join(name);
            let to = data_dir.join(format!("{name}.{suffix}"));
            fs::rename(&from, &to).map_err(|source| TlsError::Io { path: from, source })?;
            if name == KEY_FILE {
                moved_key = to;
            }
        }
        Ok(moved_key)
    }

    /// (certificates, private key), each as the PEM blocks of the text that hold them.
    fn split(&self) -> (String, String) {
        let mut cert = String::new();
        let mut key = String::new();
        let mut in_key = false;
        for line in self.0.lines() {
            if let Some(label) = line.strip_prefix("-----BEGIN ") {
                in_key = label.contains("PRIVATE KEY");
            }
            let part = if in_key { &mut key } else { &mut cert };
            part.push_str(line);
            part.push('\n');
        }
        (cert, key)
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

/// How one end judges the certificate the other presents (a client the server's, or the
/// server a client's), apart from the handshake signatures, which
/// [`SignatureCheckingVerifier`] checks the same way for every judge.
pub trait CertificateJudge: std::fmt::Debug + Send + Sync {
    /// Accepts or refuses the server's leaf certificate.
    fn judge(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error>;
}

/// A rustls certificate verifier (of servers, and of clients for the peer channel) that
/// asks its [`CertificateJudge`] about the certificate and checks, with the ring
/// provider's algorithms, that the other end's handshake signatures are made with that
/// certificate's key.
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

impl<J: CertificateJudge> ClientCertVerifier for SignatureCheckingVerifier<J> {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.judge.judge(end_entity)?;
        Ok(ClientCertVerified::assertion())
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

/// The public key a certificate carries, as a rustls error when it does not parse.
fn presented_key(end_entity: &CertificateDer<'_>) -> Result<Fingerprint, rustls::Error> {
    fingerprint_of_cert(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
}

/// Accepts only a certificate for one public key: between the nodes of a cluster, which
/// all hold the same key pair.
#[derive(Debug)]
struct SameKey(Fingerprint);

impl CertificateJudge for SameKey {
    fn judge(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented_key(end_entity)? == self.0 {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
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
        let presented = presented_key(end_entity)?;
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

    #[test]
    fn a_pem_identity_survives_the_database_and_the_files() {
        let pem = IdentityPem::generate().expect("generate");
        let from_text = ServerIdentity::from_pem(&pem, "test").expect("parse");
        let dir = tempfile::tempdir().expect("tempdir");
        pem.write_files(dir.path()).expect("write");
        let from_files = ServerIdentity::load_or_create(dir.path()).expect("load");
        assert_eq!(from_text.fingerprint(), from_files.fingerprint());
        let read = IdentityPem::read_files(dir.path())
            .expect("read")
            .expect("both files");
        let again = ServerIdentity::from_pem(&read, "test").expect("parse again");
        assert_eq!(again.fingerprint(), from_text.fingerprint());
        assert_eq!(format!("{pem:?}"), "IdentityPem(..)");
    }

    #[test]
    fn pem_without_a_key_is_refused_with_its_origin() {
        let pem = IdentityPem::generate().expect("generate");
        let cert_only: String = pem
            .as_text()
            .split("-----BEGIN PRIVATE KEY")
            .next()
            .expect("cert")
            .to_owned();
        let err = ServerIdentity::from_pem(&IdentityPem::from_text(cert_only), "the database")
            .expect_err("no key");
        assert!(err.to_string().starts_with("the database: "), "{err}");
        let err = ServerIdentity::from_pem(&IdentityPem::from_text("junk".into()), "the database")
            .expect_err("junk");
        assert!(err.to_string().starts_with("the database: "), "{err}");
    }

    #[test]
    fn identity_files_can_be_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        IdentityPem::generate()
            .expect("generate")
            .write_files(dir.path())
            .expect("write");
        let moved = IdentityPem::move_files_aside(dir.path(), "replaced").expect("move");
        assert!(
            moved.ends_with("rportd-key.pem.replaced"),
            "{}",
            moved.display()
        );
        assert!(IdentityPem::read_files(dir.path()).expect("read").is_none());
    }

    const PEER_ALPN: &[u8] = b"test-peer";

    /// Runs a handshake between the two configs over an in-memory pipe; returns each
    /// side's result.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> (Result<(), String>, Result<(), String>) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let server_side = async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = acceptor
                .accept(server_io)
                .await
                .map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(&byte).await.map_err(|e| e.to_string())
        };
        let client_side = async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = connector
                .connect(server_name(), client_io)
                .await
                .map_err(|e| e.to_string())?;
            // In TLS 1.3 the server judges the client's certificate after the client
            // thinks it is done: a refusal arrives on the first read.
            stream.write_all(b"x").await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        };
        tokio::join!(server_side, client_side)
    }

    fn identity() -> ServerIdentity {
        ServerIdentity::from_pem(&IdentityPem::generate().expect("generate"), "test")
            .expect("identity")
    }

    #[tokio::test]
    async fn peers_holding_the_same_key_connect() {
        let shared = identity();
        let (server, client) = handshake(
            shared.peer_server_config(PEER_ALPN).expect("server"),
            shared.peer_client_config(PEER_ALPN).expect("client"),
        )
        .await;
        assert_eq!(server, Ok(()));
        assert_eq!(client, Ok(()));
    }

    #[tokio::test]
    async fn a_server_with_another_key_is_refused_by_the_client() {
        let (ours, theirs) = (identity(), identity());
        let (_, client) = handshake(
            theirs.peer_server_config(PEER_ALPN).expect("server"),
            ours.peer_client_config(PEER_ALPN).expect("client"),
        )
        .await;
        let err = client.expect_err("another key");
        assert!(err.contains("invalid peer certificate"), "{err}");
    }

    #[tokio::test]
    async fn a_client_with_another_key_or_none_is_refused_by_the_server() {
        let (ours, theirs) = (identity(), identity());
        let server_config = ours.peer_server_config(PEER_ALPN).expect("server");
        // A client that presents another key but accepts the server's: only the
        // server's check stands between them.
        let mut impostor = (*theirs.peer_client_config(PEER_ALPN).expect("client")).clone();
        impostor
            .dangerous()
            .set_certificate_verifier(SignatureCheckingVerifier::new(SameKey(ours.fingerprint())));
        let (server, _) = handshake(Arc::clone(&server_config), Arc::new(impostor)).await;
        let err = server.expect_err("another key");
        assert!(err.contains("invalid peer certificate"), "{err}");

        // An agent's configuration presents no certificate at all.
        let (mut agent, _) = client_config(ServerPin::Exact(ours.fingerprint())).expect("agent");
        Arc::make_mut(&mut agent).alpn_protocols = vec![PEER_ALPN.to_vec()];
        let (server, _) = handshake(server_config, agent).await;
        let err = server.expect_err("no certificate");
        assert!(err.contains("certificate"), "{err}");
    }
}
