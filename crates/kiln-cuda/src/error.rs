//! The one error type of `kiln-cuda`.

use thiserror::Error;

/// Everything that can go wrong in `kiln-cuda`. Each message says what failed and what to do.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CudaError {
    /// A shared library could not be opened under any of the names kiln (and cudarc) look for.
    #[error(
        "CUDA library {library} not found (searched: {}); {fix}",
        searched.join(", ")
    )]
    LibraryMissing {
        library: &'static str,
        searched: Vec<String>,
        fix: String,
    },
    /// A library was found but lacks a symbol that kiln calls.
    #[error(
        "{library} ({path}) lacks the symbol {symbol}; it is too old for kiln: install a newer \
         {library} (CUDA driver ≥ 12.0, cuDNN 9) or point LD_LIBRARY_PATH at a newer copy"
    )]
    SymbolMissing {
        library: &'static str,
        path: String,
        symbol: &'static str,
    },
    /// The driver loaded but there is no usable device.
    #[error(
        "no CUDA device: {reason}; check `nvidia-smi`, CUDA_VISIBLE_DEVICES and that the \
         NVIDIA kernel driver is loaded"
    )]
    NoDevice { reason: String },
    /// A device index beyond the number of devices.
    #[error("CUDA device {index} does not exist: {count} device(s) visible (indices 0..{count})")]
    DeviceIndex { index: usize, count: usize },
    /// A CUDA driver call returned an error.
    #[error("CUDA driver call {op} failed: {message}")]
    Driver { op: &'static str, message: String },
    /// The request does not fit the allocator's limit or the device memory.
    #[error(
        "out of device memory: {requested} bytes requested, {free} bytes free; free buffers, \
         lower the batch size or raise the allocator limit"
    )]
    OutOfMemory { requested: usize, free: usize },
    /// An arena has no room left for a request.
    #[error(
        "arena exhausted: {requested} bytes requested at offset {offset}, capacity {capacity}; \
         the memory plan under-counted, rebuild the plan"
    )]
    ArenaFull {
        requested: usize,
        offset: usize,
        capacity: usize,
    },
    /// A copy or view whose sizes do not match.
    #[error("size mismatch in {what}: {left} bytes vs {right} bytes")]
    SizeMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    /// NVRTC could not compile a kernel.
    #[error("NVRTC failed to compile {kernel}: {log}")]
    Compile { kernel: String, log: String },
    /// The driver lacks a feature kiln asked for (for example graph update).
    #[error("{feature} is not supported by this CUDA driver ({detail}); update the NVIDIA driver")]
    Unsupported {
        feature: &'static str,
        detail: String,
    },
    /// A captured graph could not be updated in place; re-instantiate it.
    #[error("CUDA graph update rejected ({reason}); capture and instantiate the graph again")]
    GraphUpdate { reason: String },
    /// An argument outside what the call accepts.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl CudaError {
    /// Wraps a cudarc driver error with the name of the call that failed.
    pub(crate) fn driver(op: &'static str, err: cudarc::driver::DriverError) -> Self {
        CudaError::Driver {
            op,
            message: err.to_string(),
        }
    }

    /// True for an out-of-memory error, from the limit or from the driver.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, CudaError::OutOfMemory { .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;

/// Extension to wrap cudarc results with the call's name.
pub(crate) trait DriverContext<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> DriverContext<T> for std::result::Result<T, cudarc::driver::DriverError> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|e| CudaError::driver(op, e))
    }
}
