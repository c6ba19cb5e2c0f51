//! `kiln-cuda`: kiln's memory and stream manager over [`cudarc`].
//!
//! - [`probe`]: before any cudarc call, each CUDA library (driver, NVRTC, cuBLAS, cuBLASLt,
//!   cuDNN) is opened under the names cudarc will use and checked for the symbols kiln calls;
//!   absence is an `Err` ([`CudaError::LibraryMissing`], [`CudaError::NoDevice`], ...), never a
//!   panic. [`Probe`] reports versions for the engine's plan header.
//! - [`Device`] and [`list_devices`]: GPUs with name, compute capability, memory, SMs, L2.
//! - [`Stream`], [`StreamPool`] (priorities), [`Event`] (ordering, `elapsed_ms`);
//!   [`ForeignStream`]: a stream kiln did not create, by its raw handle, checked once to belong
//!   to the device, then ordered against kiln's streams with events.
//! - [`CachingAllocator`] over [`RawAllocator`]: size classes, per-stream free lists with
//!   stream-ordered reuse, stats, a hard limit, OOM recovery. [`DeviceAllocator`] is its CUDA
//!   form, handing out [`DeviceBuffer`]s; [`DeviceArena`] carves one allocation per execution
//!   context into 256-byte-aligned regions ([`Arena`] is the CPU-side bookkeeping).
//! - [`PinnedBuffer`] / [`PinnedPool`]: page-locked host memory with typed `bytemuck` views.
//! - [`copy`]: async H2D / D2H / D2D, and [`Overlap`] (double-buffered copy/compute overlap).
//! - [`graph`]: capture, instantiate, replay, update.
//! - [`AxpbKernel`]: a tiny NVRTC kernel for tests and benches.
//!
//! All `unsafe` blocks that reach CUDA live in the private `ffi` module, each with its safety
//! argument. The only public `unsafe fn`s take raw stream handles ([`ForeignStream::from_raw`],
//! [`Event::record_on_raw`], [`Event::wait_on_raw`]): they state their contract and forward to
//! `ffi`.
//!
//! # Features
//! `cuda-13000` (default) binds the CUDA 13.0 API; `--no-default-features --features cuda-12`
//! binds CUDA 12.8 for machines whose driver or libraries are CUDA 12. The two cannot be on
//! together (cudarc's bindings would clash), hence `--no-default-features`. Libraries are always
//! loaded at run time, so the crate builds and its CPU tests run without CUDA.
//!
//! # What has been run where
//! - On CPU, in CI: the allocator bookkeeping (over a fake backend), the arena, probe behaviour
//!   without libraries (an `Err` naming the library, never a panic), typed views and range
//!   checks (`cargo test -p kiln-cuda`). The GPU test runner and the bench run too and report
//!   that there is no device.
//! - On one H100 (driver CUDA 13.0, NVRTC 13.0, cuBLAS 13.1, cuDNN 9.14), release build with the
//!   default `cuda-13000` feature: all 12 tests of `tests/gpu.rs` passed and the bench ran
//!   (results in `perf/h100-cuda13.json`). The `cuda-12` build is only compiled, never run.
//!
//! To run the GPU tests on a CUDA machine: `KILN_GPU_REQUIRED=1 cargo test -p kiln-cuda
//! --release --test gpu` (or the binary from `cargo test -p kiln-cuda --release --no-run`), with
//! `LD_LIBRARY_PATH=/usr/local/cuda/lib64` if NVRTC is not on the loader's path. The bench:
//! `cargo run -p kiln-cuda --release --example cuda_bench -- out.json`.
#![deny(unsafe_code)]

pub mod alloc;
pub mod arena;
pub mod copy;
mod device;
mod error;
mod event;
mod ffi;
pub mod gpu_test;
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
pub use stream::{ForeignStream, Priority, Stream, StreamPool};

/// The cudarc version this crate is built on, re-exported for cuBLAS/cuDNN users.
pub use cudarc;
