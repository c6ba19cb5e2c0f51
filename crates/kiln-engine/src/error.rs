//! Errors of the engine: building, plan files and running.

use kiln_core::BackendError;
use thiserror::Error;

/// Everything kiln-engine can fail with. Messages say what to do.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("model: {0}")]
    Onnx(#[from] kiln_onnx::OnnxError),
    #[error("reference interpreter (constant folding / shape specialisation): {0}")]
    Reference(#[from] kiln_reference::RefError),
    #[error("CUDA: {0}")]
    Cuda(#[from] kiln_cuda::CudaError),
    #[error(
        "the model has {} node(s) kiln-engine cannot build yet:\n{}",
        nodes.len(),
        nodes.join("\n")
    )]
    UnsupportedNodes { nodes: Vec<String> },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid plan: {0}")]
    BadPlan(String),
    #[error("{what}; rebuild the plan on this machine (kiln build)")]
    PlanMismatch { what: String },
    #[error("build configuration: {0}")]
    Config(String),
    #[error("graph pass '{pass}': {message}")]
    Pass { pass: &'static str, message: String },
    #[error("lowering node '{node}' ({op}): {message}")]
    Lowering {
        node: String,
        op: String,
        message: String,
    },
    #[error("memory plan: {0}")]
    Memory(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Results of kiln-engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<EngineError> for BackendError {
    fn from(e: EngineError) -> BackendError {
        match e {
            EngineError::Backend(b) => b,
            EngineError::Unsupported(what) => BackendError::Unsupported {
                backend: "kiln".into(),
                what,
            },
            other => BackendError::Runtime {
                backend: "kiln".into(),
                message: other.to_string(),
            },
        }
    }
}
