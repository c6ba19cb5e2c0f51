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
