//! Fusion: chains of unary/binary elementwise ops as one generated kernel (not yet written: the rewrite changes nothing).

use kiln_core::DataType;
use kiln_onnx::Graph;

use crate::error::Result;

/// The fused op's type in the kiln domain.
pub const OP: &str = "Elementwise";

/// Rewrites every matching group of `g`; returns how many.
pub fn rewrite(_g: &mut Graph, _compute: DataType) -> Result<usize> {
    Ok(0)
}
