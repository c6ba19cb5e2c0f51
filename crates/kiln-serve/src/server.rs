//! Starting and stopping the server: the repository is loaded, the HTTP, gRPC and metrics
//! listeners are bound (port 0 picks a free port), and on shutdown the listeners stop
//! accepting, in-flight requests finish (their executors keep running until the transports are
//! done), then every executor drains and stops.
//!
//! TLS (optional, rustls): HTTP and gRPC use the same PEM certificate chain and key; the
//! metrics port stays plain HTTP (scraped from inside the cluster).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::Core;
use crate::error::ServeError;
use crate::http::{self, HttpState};
use crate::repository::Repository;
use crate::tls;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub repository: PathBuf,
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    /// PEM certificate chain and private key: HTTPS and gRPC over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest request body (HTTP) or message (gRPC), in bytes.
    pub max_body: usize,
    /// How long shutdown waits for in-flight requests before it stops the executors anyway.
    pub drain_timeout: Duration,
}

impl ServeOptions {
    pub fn new(repository: impl Into<PathBuf>) -> ServeOptions {
        ServeOptions {
            repository: repository.into(),
            host: "127.0.0.1".into(),
            http_port: 8000,
            grpc_port: 8001,
            metrics_port: 8002,
            tls: None,
            max_body: 64 << 20,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// A running server.
pub struct Server {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub core: Arc<Core>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
}

async fn bind(host: &str, port: u16, what: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind((host, port)).await.map_err(|e| {
        ServeError::Load(format!(
            "cannot listen for {what} on {host}:{port}: {e} (pass another port, or 0 for any \
             free port)"
        ))
    })
}

/// Resolves when `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

impl Server {
    /// Loads every model of the repository (a model that fails to load fails the start, naming
    /// it), binds the listeners and starts serving.
    pub async fn start(opts: &ServeOptions) -> Result<Server, ServeError> {
        let repo = Arc::new(Repository::new(&opts.repository)?);
        let names = repo.scan();
        if names.is_empty() {
            tracing::warn!(
                "the model repository {} holds no model (DIR/<model>/<version>/model.onnx)",
                opts.repository.display()
            );
        }
        {
            let repo = repo.clone();
            tokio::task::spawn_blocking(move || -> Result<(), ServeError> {
                for name in &names {
                    repo.load(name).map_err(|e| {
                        let text = e.to_string();
                        if text.contains(&format!("'{name}'")) {
                            e
                        } else {
                            ServeError::Load(format!("loading model '{name}': {text}"))
                        }
                    })?;
                }
                Ok(())
            })
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))??;
        }
        let core = Arc::new(Core::new(repo));
        let tls = match &opts.tls {
            Some((cert, key)) => Some(tls::load(cert, key)?),
            None => None,
        };
        let http_l = bind(&opts.host, opts.http_port, "HTTP").await?;
        let grpc_l = bind(&opts.host, opts.grpc_port, "gRPC").await?;
        let metrics_l = bind(&opts.host, opts.metrics_port, "metrics").await?;
        let addr = |l: &TcpListener| {
            l.local_addr()
                .map_err(|e| ServeError::Internal(format!("local address: {e}")))
        };
        let (http, grpc, metrics) = (addr(&http_l)?, addr(&grpc_l)?, addr(&metrics_l)?);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let router = http::router(HttpState {
            core: core.clone(),
            max_body: opts.max_body,
        });
        let rx = stop_rx.clone();
        tasks.push(match &tls {
            None => tokio::spawn(async move {
                // Answers go out at once, not after the client's delayed ACK.
                let http_l = axum::serve::ListenerExt::tap_io(http_l, |tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!("TCP_NODELAY on an HTTP connection: {e}");
                    }
                });
                let r = axum::serve(http_l, router)
                    .with_graceful_shutdown(stopped(rx))
                    .await;
                if let Err(e) = r {
                    tracing::error!("HTTP server: {e}");
                }
            }),
            Some(t) => {
                let listener = tls::TlsListener::new(http_l, t.acceptor.clone());
                tokio::spawn(async move {
                    let r = axum::serve(listener, router)
                        .with_graceful_shutdown(stopped(rx))
                        .await;
                    if let Err(e) = r {
                        tracing::error!("HTTPS server: {e}");
                    }
                })
            }
        });

        let rx = stop_rx.clone();
        let grpc_future = crate::grpc::serve(
            core.clone(),
            grpc_l,
            tls.as_ref(),
            opts.max_body,
            stopped(rx),
        )?;
        tasks.push(tokio::spawn(async move {
            if let Err(e) = grpc_future.await {
                tracing::error!("gRPC server: {e}");
            }
        }));

        let rx = stop_rx.clone();
        let metrics_router = http::metrics_router(core.clone());
        tasks.push(tokio::spawn(async move {
            let r = axum::serve(metrics_l, metrics_router)
                .with_graceful_shutdown(stopped(rx))
                .await;
            if let Err(e) = r {
                tracing::error!("metrics server: {e}");
            }
        }));
        core.set_ready(true);
        Ok(Server {
            http,
            grpc,
            metrics,
            core,
            stop,
            tasks,
            drain_timeout: opts.drain_timeout,
        })
    }

    /// The line `kiln serve` prints once it listens (scripts parse it).
    pub fn listening_line(&self) -> String {
        format!(
            "kiln-serve listening: http={} grpc={} metrics={}",
            self.http.port(),
            self.grpc.port(),
            self.metrics.port()
        )
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), then drains
    /// and stops every executor.
    pub async fn shutdown(self) {
        self.core.set_ready(false);
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(self.drain_timeout, all).await.is_err() {
            tracing::warn!(
                "in-flight requests still running after {:?}; stopping the executors anyway",
                self.drain_timeout
            );
        }
        let repo = self.core.repo.clone();
        let _ = tokio::task::spawn_blocking(move || repo.shutdown()).await;
        tracing::info!("kiln-serve stopped");
    }
}

/// Runs a server on a new multi-threaded runtime until SIGINT or SIGTERM, then shuts it down
/// gracefully. `on_listening` is called once the ports are bound (e.g. to print
/// [`Server::listening_line`]).
pub fn run_until_signal(
    opts: &ServeOptions,
    on_listening: impl FnOnce(&Server) -> std::io::Result<()>,
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln-serve")
        .build()
        .map_err(|e| ServeError::Internal(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let server = Server::start(opts).await?;
        on_listening(&server).map_err(|e| ServeError::Internal(e.to_string()))?;
        shutdown_signal().await;
        tracing::warn!("shutting down: draining in-flight requests");
        server.shutdown().await;
        Ok(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
