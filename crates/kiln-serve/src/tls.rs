//! Optional TLS (rustls with the ring provider): the PEM certificate chain and key are read
//! once; HTTP goes through [`TlsListener`] (handshakes run concurrently, off the accept loop)
//! and gRPC through tonic's own rustls support with the same PEM files.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::ServeError;

/// A loaded certificate and key.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

fn tls_err(path: &Path, what: &str, e: impl std::fmt::Display) -> ServeError {
    ServeError::Load(format!("{} ({what}): {e}", path.display()))
}

/// Reads the PEM certificate chain `cert` and private key `key`.
pub fn load(cert: &Path, key: &Path) -> Result<Tls, ServeError> {
    let cert_pem = std::fs::read(cert).map_err(|e| tls_err(cert, "TLS certificate", e))?;
    let key_pem = std::fs::read(key).map_err(|e| tls_err(key, "TLS key", e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(cert, "TLS certificate", e))?;
    if certs.is_empty() {
        return Err(tls_err(
            cert,
            "TLS certificate",
            "no PEM CERTIFICATE block in the file",
        ));
    }
    let private =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| tls_err(key, "TLS key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Load(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| tls_err(cert, "certificate and key do not match or are unusable", e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_pem,
        key_pem,
    })
}

/// An axum listener that hands out TLS streams: a task accepts TCP connections and runs each
/// handshake in its own task (bounded by 10 s), so a slow client holds up no other.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accepting a TLS connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let out = tx.clone();
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    match hs.await {
                        Ok(Ok(stream)) => {
                            let _ = out.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {addr} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {addr} timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        TlsListener { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use crate::grpc::pb;
    use crate::server::{ServeOptions, Server};

    #[test]
    fn bad_pem_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let e = super::load(&cert, &key).err().unwrap().to_string();
        assert!(e.contains("cert.pem"), "{e}");
        let e = super::load(&dir.path().join("none.pem"), &key)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("none.pem"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn https_and_grpc_over_tls_answer() {
        let dir = tempfile::tempdir().unwrap();
        let vdir = dir.path().join("mlp/1");
        std::fs::create_dir_all(&vdir).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mlp_legacy.onnx");
        std::fs::copy(fixture, vdir.join("model.onnx")).unwrap();
        std::fs::write(dir.path().join("mlp/config.json"), r#"{"backend": "cpu"}"#).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = certified.cert.pem();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        let mut opts = ServeOptions::new(dir.path());
        (opts.http_port, opts.grpc_port, opts.metrics_port) = (0, 0, 0);
        opts.tls = Some((cert.clone(), key.clone()));
        let server = Server::start(&opts).await.unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(
            b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");

        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
            .domain_name("localhost");
        let channel = tonic::transport::Channel::from_shared(format!(
            "https://127.0.0.1:{}",
            server.grpc.port()
        ))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
        let mut c = pb::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel);
        let live = c
            .server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(live.live);
        server.shutdown().await;
    }
}
