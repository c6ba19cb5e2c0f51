//! `kiln-nvinfer`: TensorRT 10 and 11 for kiln, loaded at run time through `libloading`, with
//! no headers, no C++ shim and no build-time dependency. It implements kiln-core's
//! [`Engine`](kiln_core::Engine) / [`ExecutionContext`](kiln_core::ExecutionContext), so
//! whatever takes a kiln engine takes a TensorRT one (`--backend tensorrt`).
//!
//! # What has been checked, and against what
//! **This binding has been checked against a C++ ABI test double and the published ABI facts
//! (shared/tensorrt-abi.md, read from NVIDIA's public headers), not against a real TensorRT:**
//! TensorRT cannot be installed on kiln's machines. The double (`tests/double/`, compiled by
//! `g++` through the `cc` crate for the tests only) declares the public objects, the apiv
//! V-classes, ILogger and the ONNX parser interfaces of both majors as C++ classes in slot
//! order, checks with the compiler's own member-pointer layout that every method sits at the
//! slot the facts give, and records every call. If real TensorRT disagrees with the facts,
//! the run-time self-checks below are meant to catch it before any harm.
//!
//! # Layers
//! - [`sys`]: `#[repr(C)]` structs (`Dims64`), enum values, the two slot tables.
//! - `library` (probing, see [`LoadOptions`]), `logger`, `ffi`: the only `unsafe` code;
//!   virtual calls through the table, null checks, RAII handles (deleting destructor, slot 1),
//!   results instead of nulls.
//! - [`TensorRt`], [`BuildOptions`], [`TrtEngine`], [`TrtContext`]: the safe API.
//!
//! # Loading
//! `libnvinfer.so.11` then `.so.10` (and `libnvonnxparser.so.<major>`) are searched in the
//! explicit folder of [`LoadOptions::dir`], then `$KILN_TENSORRT_DIR`, then the system path
//! (`LD_LIBRARY_PATH`, the ld.so cache). The table is picked by `getInferLibMajorVersion()`;
//! a slot newer than `getInferLibMinorVersion()` is refused with an error.
//!
//! # Self-checks (before first use)
//! `IBuilder::getLogger` and `IRuntime::getLogger` return kiln's logger;
//! `INetworkDefinition::getBuilder` the builder (not on 10.8, whose network slots moved);
//! `getPImpl` of runtime, engine and context the object itself; `IExecutionContext::getEngine`
//! the engine. Any failure is [`NvInferError::SelfCheck`].
//!
//! # Lifetimes
//! Children hold their parent: config and network keep the builder alive, the parser the
//! network, contexts the engine, the engine its runtime; every object keeps the libraries
//! and the logger. So destruction is always config/network before builder, contexts before
//! engine before runtime, logger last.
#![deny(unsafe_code)]

mod builder;
mod engine;
mod error;
mod ffi;
mod library;
mod logger;
pub mod sys;

use std::sync::Arc;

pub use builder::{BuildOptions, Model, SerializedEngine};
pub use engine::{TrtContext, TrtEngine};
pub use error::{HOW_TO_FIX, NvInferError, ParserError, Result};
pub use ffi::NetworkTensor;
pub use library::{ENV_DIR, LoadOptions, SUPPORTED_MAJORS, Version};

/// The backend name (`Engine::backend`).
pub const BACKEND: &str = "tensorrt";

/// A loaded TensorRT: libraries, version, slot table and logger.
#[derive(Clone)]
pub struct TensorRt {
    shared: Arc<ffi::Shared>,
}

impl std::fmt::Debug for TensorRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shared.api)
    }
}

impl TensorRt {
    /// Finds and opens TensorRT (see [`LoadOptions`]); `Err` says what was searched and how
    /// to fix it.
    pub fn load(opts: &LoadOptions) -> Result<TensorRt> {
        let api = library::Api::load(opts)?;
        let logger = logger::Logger::new(api.table);
        Ok(TensorRt {
            shared: Arc::new(ffi::Shared { api, logger }),
        })
    }

    /// The loaded version.
    pub fn version(&self) -> Version {
        self.shared.api.version
    }

    /// The libnvinfer that was opened.
    pub fn library_path(&self) -> &str {
        &self.shared.api.path
    }
}

/// Loads TensorRT with the default search and reports its version (the CLI's probe).
pub fn probe(opts: &LoadOptions) -> Result<Version> {
    TensorRt::load(opts).map(|t| t.version())
}
