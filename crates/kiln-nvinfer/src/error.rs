//! The error type of `kiln-nvinfer`.

use std::fmt;

use kiln_core::BackendError;
use thiserror::Error;

/// How to point kiln at TensorRT (part of every "not found" message).
pub const HOW_TO_FIX: &str = "install TensorRT 10 or 11 and set KILN_TENSORRT_DIR to the folder \
     holding libnvinfer.so.<major> (e.g. /usr/local/TensorRT/lib), or add that folder to \
     LD_LIBRARY_PATH";

/// One error the ONNX parser reported, with the node it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParserError {
    pub code: i32,
    pub description: String,
    /// Index of the node in the graph (`-1` when the error concerns no node).
    pub node: i32,
    pub node_name: String,
    pub node_operator: String,
    /// Where in the parser the error arose (file, line, function).
    pub origin: String,
}

impl fmt::Display for ParserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.node >= 0 {
            write!(
                f,
                "node {} '{}' ({}): ",
                self.node, self.node_name, self.node_operator
            )?;
        }
        write!(f, "{} (code {})", self.description, self.code)
    }
}

/// Everything that can go wrong in `kiln-nvinfer`. Messages say what failed and what to do.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum NvInferError {
    /// No candidate library could be opened.
    #[error("TensorRT is not installed or not found: {library} could not be loaded (searched: {}); {}", searched.join("; "), HOW_TO_FIX)]
    LibraryMissing {
        library: &'static str,
        searched: Vec<String>,
    },
    /// A library lacks an entry point kiln calls.
    #[error(
        "{path} lacks the symbol {symbol}: it is not a TensorRT 10 or 11 library kiln can use; {}",
        HOW_TO_FIX
    )]
    SymbolMissing { path: String, symbol: &'static str },
    /// The library reports a major version kiln has no slot table for.
    #[error(
        "{path} reports TensorRT {found}; kiln supports TensorRT 10.x and 11.x only: install one of those, or point KILN_TENSORRT_DIR at one"
    )]
    UnsupportedVersion { path: String, found: String },
    /// A method newer than the loaded library.
    #[error(
        "{method} needs TensorRT {major}.{needed_minor} or newer; the loaded library is {loaded}: upgrade TensorRT"
    )]
    SlotTooNew {
        method: &'static str,
        major: u32,
        needed_minor: u32,
        loaded: String,
    },
    /// A run-time check of the ABI (section 8 of the ABI facts) failed: the slot tables do not
    /// match this library.
    #[error(
        "TensorRT ABI self-check failed: {check}; this TensorRT build does not match kiln's slot tables for {version} (please report it with the output of `kiln -vv`)"
    )]
    SelfCheck { check: String, version: String },
    /// A call returned null or false; TensorRT's own messages went to the log.
    #[error("TensorRT {call} failed{}; see the TensorRT messages logged above (run with -v)", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    CallFailed { call: &'static str, detail: String },
    /// The ONNX parser rejected the model; every error with its node.
    #[error("the TensorRT ONNX parser rejected {source_name} with {} error(s):\n{}", errors.len(), errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Parse {
        source_name: String,
        errors: Vec<ParserError>,
    },
    /// An argument TensorRT cannot take (too many dims, a NUL in a name, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The request does not suit this TensorRT major (e.g. precision flags on TRT 11).
    #[error("{0}")]
    Unsupported(String),
    /// Reading or writing an engine or model file.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A CUDA error from kiln-cuda (host execution path).
    #[error("CUDA: {0}")]
    Cuda(String),
}

pub type Result<T, E = NvInferError> = std::result::Result<T, E>;

impl From<kiln_cuda::CudaError> for NvInferError {
    fn from(e: kiln_cuda::CudaError) -> Self {
        NvInferError::Cuda(e.to_string())
    }
}

impl From<NvInferError> for BackendError {
    fn from(e: NvInferError) -> Self {
        match e {
            NvInferError::Unsupported(what) => BackendError::Unsupported {
                backend: crate::BACKEND.into(),
                what,
            },
            other => BackendError::Runtime {
                backend: crate::BACKEND.into(),
                message: other.to_string(),
            },
        }
    }
}
