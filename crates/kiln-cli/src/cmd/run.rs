//! `kiln run`: one inference of an engine or a model on given or random inputs.
//!
//! Not implemented yet: it needs kiln-reference (issue 3) for the CPU backend and kiln-engine (issue 5) for the GPU.

pub use super::PendingArgs as Args;

pub fn run(_args: &Args) -> anyhow::Result<()> {
    Err(super::not_implemented(
        "run",
        "kiln-reference (issue 3) for the CPU backend and kiln-engine (issue 5) for the GPU",
    ))
}
