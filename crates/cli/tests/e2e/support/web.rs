//! For the HTTP proxy tests: web servers on the "device" side (plain HTTP and HTTPS with a
//! self-signed certificate), and an HTTPS client that takes any certificate, names any host
//! in SNI and can speak WebSocket. Both run on a tokio runtime of their own, so the tests
//! stay synchronous like the others.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use rport_transport::tls::{CertificateJudge, SignatureCheckingVerifier};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

type Body = BoxBody<Bytes, hyper::Error>;

pub struct Web {
    pub rt: tokio::runtime::Runtime,
}

/// The byte at `index` of a `/big` body: deterministic, so the client can check it.
pub fn big_byte(index: u64) -> u8 {
    (index.wrapping_mul(31).wrapping_add(index >> 13) % 251) as u8
}

pub fn big_digest(len: u64) -> Vec<u8> {
    let mut hasher = Sha256::new();
    let mut chunk = Vec::with_capacity(64 * 1024);
    let mut index = 0;
    while index < len {
        chunk.clear();
        let end = (index + 64 * 1024).min(len);
        chunk.extend((index..end).map(big_byte));
        hasher.update(&chunk);
        index = end;
    }
    hasher.finalize().to_vec()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// The device's web application, `name` telling servers apart:
/// `/hello` answers with what it saw, `/big?bytes=N` streams N bytes, `POST /echo` streams
/// the body back, `/ws` is a WebSocket echo.
async fn device_app(
    name: Arc<str>,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let seen = |h: header::HeaderName| {
        request
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path = request.uri().path().to_owned();
    let response = match path.as_str() {
        "/hello" => {
            let mut response = text(StatusCode::OK, format!("hello from {name}"));
            let headers = response.headers_mut();
            for (out, value) in [
                ("x-seen-host", seen(header::HOST)),
                (
                    "x-seen-xff",
                    seen(header::HeaderName::from_static("x-forwarded-for")),
                ),
                (
                    "x-seen-proto",
                    seen(header::HeaderName::from_static("x-forwarded-proto")),
                ),
                (
                    "x-seen-auth",
                    if request.headers().contains_key(header::AUTHORIZATION) {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_owned(),
                ),
                ("x-device", name.to_string()),
            ] {
                if let Ok(value) = http::HeaderValue::from_str(&value) {
                    headers.insert(out, value);
                }
            }
            response
        }
        "/big" => {
            let len: u64 = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let chunks = (0..len).step_by(64 * 1024).map(move |start| {
                let end = (start + 64 * 1024).min(len);
                Ok::<_, Infallible>(Frame::data(Bytes::from(
                    (start..end).map(big_byte).collect::<Vec<u8>>(),
                )))
            });
            Response::new(
                StreamBody::new(futures_util::stream::iter(chunks))
                    .map_err(|never: Infallible| match never {})
                    .boxed(),
            )
        }
        "/echo" => Response::new(request.into_body().boxed()),
        "/ws" => {
            let key = seen(header::SEC_WEBSOCKET_KEY);
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let _ = websocket_echo(TokioIo::new(upgraded)).await;
                }
            });
            let mut response = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
            headers.insert(
                header::CONNECTION,
                http::HeaderValue::from_static("Upgrade"),
            );
            if let Ok(accept) = http::HeaderValue::from_str(&websocket_accept(&key)) {
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
            response
        }
        _ => text(StatusCode::NOT_FOUND, format!("{name}: no {path}")),
    };
    Ok(response)
}

fn websocket_accept(key: &str) -> String {
    use base64::Engine;
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// Echoes WebSocket frames (small ones, as the tests send) until the peer closes.
async fn websocket_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let len = usize::from(head[1] & 0x7f);
        let mut mask = [0u8; 4];
        io.read_exact(&mut mask).await?;
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await?;
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        let mut frame = vec![head[0], len as u8];
        frame.extend_from_slice(&payload);
        io.write_all(&frame).await?;
    }
}

#[derive(Debug)]
struct AnyCertificate;

impl CertificateJudge for AnyCertificate {
    fn judge(&self, _: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        Ok(())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client config that takes any certificate, for `versions`.
pub fn client_tls(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(SignatureCheckingVerifier::new(AnyCertificate))
        .with_no_client_auth();
    Arc::new(config)
}

/// A self-signed PEM certificate and key for `names`, as an operator would configure.
pub fn self_signed_pem(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

/// A connection of the test client.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

/// What the client got: status, headers, whole body.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Web {
    pub fn new() -> Self {
        Self {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// A plain HTTP server on the device side.
    pub fn device_http(&self, name: &str) -> SocketAddr {
        self.device(name, None)
    }

    /// An HTTPS server with a self-signed certificate on the device side.
    pub fn device_https(&self, name: &str) -> SocketAddr {
        let (cert, key) = self_signed_pem(&["device.local"]);
        let certs = rustls_pemfile::certs(&mut cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = rustls_pemfile::private_key(&mut key.as_bytes())
            .expect("key")
            .expect("key");
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("config");
        self.device(
            name,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
    }

    fn device(&self, name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
        let name: Arc<str> = Arc::from(name);
        self.rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind device");
            let address = listener.local_addr().expect("address");
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let name = Arc::clone(&name);
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            device_app(Arc::clone(&name), request)
                        });
                        let builder = hyper::server::conn::http1::Builder::new();
                        match tls {
                            None => {
                                let _ = builder
                                    .serve_connection(TokioIo::new(socket), service)
                                    .with_upgrades()
                                    .await;
                            }
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(socket).await {
                                    let _ = builder
                                        .serve_connection(TokioIo::new(stream), service)
                                        .with_upgrades()
                                        .await;
                                }
                            }
                        }
                    });
                }
            });
            address
        })
    }

    /// An HTTPS connection to `address` naming `sni`, from `from` (a loopback address) if
    /// given; the error when TLS or TCP fails.
    pub fn connect(
        &self,
        address: SocketAddr,
        sni: &str,
        from: Option<IpAddr>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Client, String> {
        let sni = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
        self.rt.block_on(async move {
            let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            if let Some(from) = from {
                socket
                    .bind(SocketAddr::new(from, 0))
                    .map_err(|e| e.to_string())?;
            }
            let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(address))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let connector = tokio_rustls::TlsConnector::from(tls);
            let stream =
                tokio::time::timeout(Duration::from_secs(10), connector.connect(sni, stream))
                    .await
                    .map_err(|_| "TLS timed out".to_owned())?
                    .map_err(|e| format!("TLS: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection.with_upgrades());
            Ok(Client { sender })
        })
    }

    /// Sends a request on `client` and reads the whole answer.
    pub fn send(&self, client: &mut Client, request: Request<Full<Bytes>>) -> Result<Got, String> {
        self.rt.block_on(async {
            client.sender.ready().await.map_err(|e| e.to_string())?;
            let response =
                tokio::time::timeout(Duration::from_secs(60), client.sender.send_request(request))
                    .await
                    .map_err(|_| "request timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Got {
                status,
                headers,
                body,
            })
        })
    }

    /// Upgrades `client` to WebSocket at `path` and sends `message` in one masked text
    /// frame; returns the text echoed back.
    pub fn websocket_echo(
        &self,
        mut client: Client,
        request: Request<Full<Bytes>>,
        message: &str,
    ) -> Result<String, String> {
        let message = message.to_owned();
        self.rt.block_on(async move {
            client.sender.ready().await.map_err(|e| e.to_string())?;
            let response = client
                .sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                return Err(format!("no upgrade: {}", response.status()));
            }
            let mut io = TokioIo::new(
                hyper::upgrade::on(response)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            let mask = [0x37u8, 0xfa, 0x21, 0x3d];
            let mut frame = vec![0x81, 0x80 | message.len() as u8];
            frame.extend_from_slice(&mask);
            frame.extend(message.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            io.write_all(&frame).await.map_err(|e| e.to_string())?;
            let mut head = [0u8; 2];
            tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut head))
                .await
                .map_err(|_| "no echo".to_owned())?
                .map_err(|e| e.to_string())?;
            let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
            io.read_exact(&mut payload)
                .await
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&payload).into_owned())
        })
    }
}

/// A GET request for `path` at `host`, with extra headers.
pub fn get(host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    request("GET", host, path, headers, Bytes::new())
}

pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body)).expect("request")
}

/// A CA and a server certificate it signed for `names`: (CA PEM, server chain PEM, server
/// key PEM).
pub fn ca_signed_pem(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    let cert = params.signed_by(&key, &ca).expect("signed");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
