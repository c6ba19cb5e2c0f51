//! `kiln compare`: an engine's outputs against the CPU reference, within the precision's tolerance.
//!
//! Not implemented yet: it needs kiln-reference (issue 3) as the oracle and kiln-engine (issue 5) to compare against it.

pub use super::PendingArgs as Args;

pub fn run(_args: &Args) -> anyhow::Result<()> {
    Err(super::not_implemented(
        "compare",
        "kiln-reference (issue 3) as the oracle and kiln-engine (issue 5) to compare against it",
    ))
}
