//! `kiln-reference`: executes a [`kiln_onnx::Graph`] on the CPU.
//!
//! It is kiln's correctness oracle (every GPU kernel is checked against it), the constant
//! folder of the engine builder ([`fold_constants`]) and the no-GPU backend (`--backend cpu`).
//! Readable before fast: values are `ndarray` arrays ([`Value`]); f16 and bf16 are computed in
//! f32; MatMul, Gemm and Conv (by im2col) go through `ndarray`'s GEMM (`matrixmultiply`).

mod backend;
mod error;
mod fold;
mod interpreter;
pub mod ops;
mod value;

pub use backend::{CpuContext, CpuEngine};
pub use error::{RefError, Result};
pub use fold::{FoldOptions, FoldReport, fold_constants, fold_constants_with};
pub use interpreter::Interpreter;
pub use value::Value;
