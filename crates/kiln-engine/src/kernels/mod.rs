//! GPU kernels used by the engine's lowered steps.
//!
//! - [`nvrtc`]: CUDA C generated from templates, compiled by NVRTC (elementwise, reductions,
//!   normalisation, pooling, data movement).
//! - [`gemm`]: cuBLASLt matrix multiplication.
//! - [`conv`]: cuDNN convolutions.

pub mod conv;
pub mod gemm;
pub mod nvrtc;
