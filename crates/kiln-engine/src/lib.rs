//! kiln-engine: kiln's own GPU inference engine.
//!
//! ONNX graph (kiln-onnx) → [`builder`] passes and lowering → serialised [`plan`] →
//! [`runtime`] `Engine` (immutable, weights on the device) → `ExecutionContext` per stream.
//! Kernels come from NVRTC templates ([`kernels::nvrtc`]), cuBLASLt ([`kernels::gemm`]) and
//! cuDNN ([`kernels::conv`]).

pub mod builder;
mod error;
pub mod kernels;
pub mod plan;
pub mod runtime;

pub use builder::{Builder, prepare};
pub use error::{EngineError, Result};
pub use plan::{BuildConfig, Plan};
pub use runtime::{Engine, ExecutionContext};
