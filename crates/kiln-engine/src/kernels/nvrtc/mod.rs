//! kiln's own CUDA kernels: CUDA C generated from templates, compiled by NVRTC once per build
//! (CUBIN for the device's exact architecture, PTX when NVRTC does not know it), cached on disk
//! and stored in the plan as [`KernelBinary`]s.
//!
//! Layout of this module:
//! - [`library`]: [`KernelLibrary`], which compiles or loads modules and hands out functions;
//!   [`cache`]: the on-disk cache (key: a hash of source, architecture and NVRTC version);
//! - [`prelude`]: the CUDA C shared by every module (storage/compute types, f16/bf16
//!   conversions without CUDA headers, NaN-propagating min/max, block reductions);
//! - [`layout`]: shape and stride math (broadcasting, dimension collapsing, launch sizes);
//! - one file per kernel family: [`unary`], [`binary`] (with Where), [`fused`] (generated
//!   chains of float elementwise ops), [`cast`], [`reduce`]
//!   (with ArgMax/ArgMin), [`softmax`], [`norm`], [`pool`], [`movement`] (Transpose, Slice,
//!   Expand, Concat, Split, Tile: strided copies), [`gather`], [`gather_nd`], [`pad`],
//!   [`resize`].
//!
//! Every launch function takes raw device addresses ([`DevicePtr`]), shapes, the element type
//! and a [`kiln_cuda::Stream`]; it checks what it can on the host (ranks, sizes, types) and
//! queues the kernel asynchronously. The caller guarantees that each address covers the
//! elements the shapes describe (the memory plan does).
//!
//! Semantics follow kiln-reference exactly where it is defined (NaN propagation of Min/Max,
//! integer division by zero giving 0, numpy casts, ONNX window and coordinate rules); f16 and
//! bf16 are computed in f32 and rounded once on store, reductions and statistics accumulate in
//! f32.

pub mod attention;
pub mod binary;
pub mod cache;
pub mod cast;
mod ffi;
pub mod fused;
pub mod gather;
pub mod gather_nd;
pub mod layout;
pub mod layout_nhwc;
pub mod library;
pub mod movement;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod prelude;
pub mod reduce;
pub mod resize;
mod rows;
pub mod softmax;
pub mod unary;

pub use kiln_core::DevicePtr;
pub use layout::{Dims, MAX_RANK};
pub use library::{KernelBinary, KernelLibrary};

use kiln_core::DataType;
use thiserror::Error;

/// What can go wrong compiling, loading or launching an NVRTC kernel.
#[derive(Debug, Error)]
pub enum KernelError {
    /// From kiln-cuda (probes, device).
    #[error(transparent)]
    Cuda(#[from] kiln_cuda::CudaError),
    /// NVRTC rejected a generated module (a bug in kiln's templates: please report it).
    #[error(
        "NVRTC failed to compile kernel module {module} for {arch}: {log}; this is a bug in \
         kiln's kernel templates, please report it with the log"
    )]
    Compile {
        module: String,
        arch: String,
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver call {op} failed for kernel {kernel}: {message}")]
    Driver {
        op: &'static str,
        kernel: String,
        message: String,
    },
    /// The op does not take this element type on the GPU.
    #[error("{op} on the GPU does not take element type {dtype}; {fix}")]
    UnsupportedType {
        op: String,
        dtype: DataType,
        fix: String,
    },
    /// Arguments the kernel cannot run with (ranks, sizes, attribute values).
    #[error("{op}: {problem}")]
    Invalid { op: String, problem: String },
    /// A stored binary does not fit this device or NVRTC.
    #[error(
        "kernel module {module} was built for {built} but this device needs {wanted}; rebuild \
         the plan on this GPU"
    )]
    WrongArch {
        module: String,
        built: String,
        wanted: String,
    },
}

/// Result alias of the NVRTC kernels.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

pub(crate) fn invalid(op: &str, problem: impl Into<String>) -> KernelError {
    KernelError::Invalid {
        op: op.to_string(),
        problem: problem.into(),
    }
}

pub(crate) fn unsupported(op: &str, dtype: DataType) -> KernelError {
    KernelError::UnsupportedType {
        op: op.to_string(),
        dtype,
        fix: "cast it to a supported type (f32, f16, bf16; integers and bool where the op \
              takes them) in the model"
            .to_string(),
    }
}
