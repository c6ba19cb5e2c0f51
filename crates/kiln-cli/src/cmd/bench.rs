//! `kiln bench`: latency and throughput of an engine on a CUDA stream.
//!
//! Not implemented yet: it needs kiln-engine (issue 5).

pub use super::PendingArgs as Args;

pub fn run(_args: &Args) -> anyhow::Result<()> {
    Err(super::not_implemented("bench", "kiln-engine (issue 5)"))
}
