//! `kiln compare`: an engine's outputs against the CPU reference, within the precision's tolerance.
//!
//! Not implemented yet: the oracle (kiln-reference) exists; the engine to compare against it comes
//! with the CLI wiring of kiln-engine (issue 9).

pub use super::PendingArgs as Args;

pub fn run(_args: &Args) -> anyhow::Result<()> {
    Err(super::not_implemented(
        "compare",
        "the CLI wiring of kiln-engine (issue 9) to compare against the CPU reference",
    ))
}
