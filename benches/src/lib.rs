//! kiln's criterion suites (in `benches/`) and what they share:
//!
//! - `benches/load.rs`: the ONNX loader on in-memory models (CPU only).
//! - `benches/engines.rs`: kiln-engine's compute-only, transfer-inclusive and multi-stream
//!   throughput per model × precision × batch (needs a CUDA GPU; skips visibly without one).
//! - [`gpu_time`]: the criterion measurement that reads CUDA events.
//! - [`setup`]: the engines bench's cases and profiles, decided without a GPU.
//!
//! The python scripts in `benches/python/` time PyTorch for comparison (`torch_compare.py`,
//! `torch_zoo_bench.py`) and merge the results (`compare_merge.py`, used by `cargo xtask
//! compare`).

pub mod gpu_time;
pub mod setup;
