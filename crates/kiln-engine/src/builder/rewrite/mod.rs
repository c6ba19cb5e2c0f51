//! Specialisation-time fusions: once a graph's shapes are concrete (after
//! `lower::specialize`), these rewrites replace groups of nodes with ops of kiln's own domain
//! ([`KILN_DOMAIN`]), each lowered to one step (one kernel or library call):
//!
//! - [`nhwc`]: convolutions, pools and the elementwise ops between them in NHWC (fp16/bf16);
//! - [`attention`]: MatMul → scale → mask → Softmax → MatMul (with the head transposes) as
//!   one attention kernel;
//! - [`layer_norm`]: Add → LayerNormalization as one kernel;
//! - [`elementwise`]: chains of unary/binary elementwise ops as one generated kernel.
//!
//! They run in that order (each sees what the previous left). A rewrite keeps the graph's
//! value names and types: every value it leaves has its `value_info` (new values get theirs),
//! so lowering finds concrete shapes for all of them. Ops of the kiln domain never reach a
//! stored plan: the plan holds the graph before specialisation.

pub mod attention;
pub mod elementwise;
pub mod layer_norm;
pub mod nhwc;

use kiln_core::DataType;
use kiln_onnx::Graph;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plan::Fusions;

/// The domain of kiln's own fused ops.
pub const KILN_DOMAIN: &str = "kiln";

/// The ops of [`KILN_DOMAIN`] the runtime executes.
pub const KILN_OPS: &[&str] = &[
    elementwise::OP,
    layer_norm::OP,
    attention::OP,
    nhwc::CONV_OP,
    nhwc::POOL_OP,
    nhwc::ENTRY_OP,
];

/// How many groups each rewrite replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteReport {
    pub nhwc_convs: usize,
    pub attention: usize,
    pub add_layer_norm: usize,
    pub elementwise_chains: usize,
}

/// Applies the enabled fusions to a specialised graph of an engine storing `compute`.
pub fn rewrite(
    mut g: Graph,
    compute: DataType,
    fusions: &Fusions,
) -> Result<(Graph, RewriteReport)> {
    let mut report = RewriteReport::default();
    if fusions.nhwc {
        report.nhwc_convs = nhwc::rewrite(&mut g, compute)?;
    }
    if fusions.attention {
        report.attention = attention::rewrite(&mut g, compute)?;
    }
    if fusions.add_layer_norm {
        report.add_layer_norm = layer_norm::rewrite(&mut g, compute)?;
    }
    if fusions.elementwise {
        report.elementwise_chains = elementwise::rewrite(&mut g, compute)?;
    }
    tracing::debug!(?report, "specialisation fusions");
    Ok((g, report))
}
