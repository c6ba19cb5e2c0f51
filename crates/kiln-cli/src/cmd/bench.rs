//! `kiln bench`: latency and throughput of an engine on a CUDA stream.
//!
//! Not implemented yet: its wiring to kiln-engine comes with issue 9.

pub use super::PendingArgs as Args;

pub fn run(_args: &Args) -> anyhow::Result<()> {
    Err(super::not_implemented(
        "bench",
        "the CLI wiring of kiln-engine (issue 9)",
    ))
}
