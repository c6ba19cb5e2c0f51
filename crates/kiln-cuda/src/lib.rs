//! `kiln-cuda`: kiln's memory and stream manager over [`cudarc`].
//!
//! - [`probe`]: before any cudarc call, each CUDA library (driver, NVRTC, cuBLAS, cuBLASLt,
//!   cuDNN) is opened under the names cudarc will use and checked for the symbols kiln calls;
//!   absence is an `Err` ([`CudaError::LibraryMissing`], [`CudaError::NoDevice`], ...), never a
//!   panic. [`Probe`] reports versions for the engine's plan header.
//! - [`Device`] and [`list_devices`]: GPUs with name, compute capability, memory, SMs, L2.
//! - [`Stream`], [`StreamPool`] (priorities), [`Event`] (ordering, `elapsed_ms`).
//! - [`CachingAllocator`] over [`RawAllocator`]: size classes, per-stream free lists with
//!   stream-ordered reuse, stats, a hard limit, OOM recovery. [`DeviceAllocator`] is its CUDA
//!   form, handing out [`DeviceBuffer`]s; [`DeviceArena`] carves one allocation per execution
//!   context into 256-byte-aligned regions ([`Arena`] is the CPU-side bookkeeping).
//! - [`PinnedBuffer`] / [`PinnedPool`]: page-locked host memory with typed `bytemuck` views.
//! - [`copy`]: async H2D / D2H / D2D, and [`Overlap`] (double-buffered copy/compute overlap).
//! - [`graph`]: capture, instantiate, replay, update.
//! - [`AxpbKernel`]: a tiny NVRTC kernel for tests and benches.
//!
//! All `unsafe` code lives in the private `ffi` module, each block with its safety argument.
//!
//! # Features
//! `cuda-13000` (default) binds the CUDA 13.0 API; `--no-default-features --features cuda-12`
//! binds CUDA 12.8 for machines whose driver or libraries are CUDA 12. Libraries are always
//! loaded at run time, so the crate builds and its CPU tests run without CUDA.
//!
//! # What has been run where
//! The allocator bookkeeping, arena, probe behaviour without libraries, typed views and range
//! checks are unit-tested on CPU (`cargo test -p kiln-cuda`). Everything that touches a GPU
//! (devices, streams, events, copies, the CUDA allocator backend, NVRTC, graphs, overlap) was
//! written without a GPU at hand and is exercised by `tests/gpu.rs`
//! (`cargo test -p kiln-cuda --release --test gpu`) and `examples/cuda_bench.rs`
//! (`cargo run -p kiln-cuda --release --example cuda_bench -- out.json`) on a CUDA machine;
//! without one both say so and succeed.
#![deny(unsafe_code)]

pub mod alloc;
pub mod arena;
pub mod copy;
mod device;
mod error;
mod event;
mod ffi;
pub mod graph;
mod kernels;
mod memory;
pub mod pinned;
pub mod probe;
mod stream;

pub use alloc::{AllocStats, Block, CachingAllocator, RawAllocator, RawError, size_class};
pub use arena::{ARENA_ALIGN, Arena, Region};
pub use copy::{Chunk, Overlap};
pub use device::{Device, DeviceInfo, device_count, list_devices};
pub use error::{CudaError, Result};
pub use event::Event;
pub use graph::{CapturedGraph, Graph};
pub use kernels::AxpbKernel;
pub use memory::{CudaRaw, DeviceAllocator, DeviceArena, DeviceBuffer, DeviceMemory, DeviceView};
pub use pinned::{PinnedBuffer, PinnedPool};
pub use probe::{Library, LibraryInfo, Probe};
pub use stream::{Priority, Stream, StreamPool};

/// The cudarc version this crate is built on, re-exported for cuBLAS/cuDNN users.
pub use cudarc;
