//! `kiln build`: ONNX model -> serialised engine (trtexec --onnx ... --saveEngine ...).
//!
//! Not implemented yet: it needs kiln-engine (issue 5).

pub use super::PendingArgs as Args;

pub fn run(_args: &Args) -> anyhow::Result<()> {
    Err(super::not_implemented("build", "kiln-engine (issue 5)"))
}
