//! `kiln serve`: the Open Inference Protocol (KServe v2 / Triton) over HTTP and gRPC, with
//! Prometheus metrics on a third port, over a model repository (kiln-serve).
//!
//! Once every model is loaded and the ports are bound it prints one line on stdout,
//! `kiln-serve listening: http=H grpc=G metrics=M` (the ports; port 0 picks a free one), and
//! serves until SIGINT or SIGTERM: then it stops accepting, lets in-flight requests finish,
//! drains every model's executor and exits 0. Works on the CPU backend here; GPU models
//! (backend kiln/auto on a machine with a GPU) go through kiln-engine and are untested on this
//! CPU-only machine.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::engine_source::parse_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model repository: DIR/<model>/<version>/model.onnx (or model.kiln) and an optional
    /// DIR/<model>/config.json.
    #[arg(long, value_name = "DIR")]
    pub model_repository: PathBuf,
    /// HTTP/REST port (0: any free port).
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    /// gRPC port (0: any free port).
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    /// Prometheus metrics port (0: any free port), plain HTTP at /metrics.
    #[arg(long, default_value_t = 8002)]
    pub metrics_port: u16,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// PEM certificate chain: serve HTTPS and gRPC over TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest request body (HTTP) or message (gRPC): bytes with an optional unit (64MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "64MiB")]
    pub max_body: usize,
    /// Seconds shutdown waits for in-flight requests before stopping the models anyway.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub drain_timeout: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let mut opts = kiln_serve::ServeOptions::new(&args.model_repository);
    opts.host = args.host.clone();
    opts.http_port = args.http_port;
    opts.grpc_port = args.grpc_port;
    opts.metrics_port = args.metrics_port;
    opts.tls = args.tls_cert.clone().zip(args.tls_key.clone());
    opts.max_body = args.max_body;
    opts.drain_timeout = Duration::from_secs(args.drain_timeout);
    kiln_serve::run_until_signal(&opts, |server| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.listening_line())?;
        out.flush()
    })?;
    Ok(())
}
