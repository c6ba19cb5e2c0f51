//! `kiln-serve`: kiln as a model server speaking the Open Inference Protocol (KServe v2, the
//! protocol Triton speaks) over HTTP/REST and gRPC, with Prometheus metrics on their own port.
//! Every model version runs behind a `kiln_batch::Executor` with the batching policy of its
//! `config.json`.
//!
//! ```text
//! repository.rs  DIR/<model>/<version>/model.onnx|model.kiln + DIR/<model>/config.json;
//!                load at startup, load/unload/index API
//! config.rs      config.json schema (backend, precision, max_batch, profiles, batching)
//! engines.rs     CPU reference engine, or kiln-engine per GPU with a plan cache
//! core.rs        transport-independent requests, checks, inference, metadata, readiness
//! tensor.rs      protocol datatypes <-> kiln DataType, JSON data <-> bytes
//! stats.rs       per-model statistics (statistics extension)
//! http.rs        axum routes; http_codec.rs: JSON + binary tensor data extension
//! grpc.rs        tonic GRPCInferenceService (proto/grpc_predict_v2.proto via protox)
//! metrics.rs     OpenMetrics text: server counters + each executor's metrics
//! server.rs      listeners (port 0 = any free port), TLS (tls.rs), graceful shutdown
//! ```
//!
//! What works where: everything runs and is tested on a CPU-only machine with the CPU
//! reference backend (unit tests; the HTTP round trip in `http_tests.rs`). The GPU path
//! (`engines.rs`: kiln-engine builds, the plan cache, several GPUs) compiles against
//! kiln-engine's API but has not run here: there is no GPU on this machine.

pub mod config;
pub mod core;
pub mod engines;
pub mod error;
pub mod grpc;
pub mod http;
pub mod http_codec;
pub mod metrics;
pub mod repository;
pub mod server;
pub mod stats;
pub mod tensor;
pub mod tls;

#[cfg(test)]
mod grpc_tests;
#[cfg(test)]
mod http_tests;

pub use crate::config::ModelConfig;
pub use crate::core::{Core, InferRequest, InferResponse};
pub use crate::error::ServeError;
/// The generated gRPC messages, server and client (package `inference`).
pub use crate::grpc::pb as grpc_proto;
pub use crate::repository::Repository;
pub use crate::server::{ServeOptions, Server, run_until_signal, shutdown_signal};
