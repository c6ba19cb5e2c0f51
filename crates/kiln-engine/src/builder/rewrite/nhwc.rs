//! Fusion: convolutions, pools and the elementwise ops between them in NHWC (not yet
//! written: the rewrite changes nothing).

use kiln_core::DataType;
use kiln_onnx::Graph;

use crate::error::Result;

/// A convolution (FusedConv semantics) on NHWC tensors.
pub const CONV_OP: &str = "NhwcConv";
/// A pool on NHWC tensors.
pub const POOL_OP: &str = "NhwcPool";

/// Rewrites the graph's convolutions to NHWC; returns how many.
pub fn rewrite(_g: &mut Graph, _compute: DataType) -> Result<usize> {
    Ok(0)
}
