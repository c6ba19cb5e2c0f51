//! Steps of kiln's own fused ops (domain [`KILN_DOMAIN`], made by `builder::rewrite` at
//! specialisation): launch, the kernel modules each needs (compiled into the plan), and the
//! library description of those that are library calls.

mod attention;
mod elementwise;
mod layer_norm;
mod nhwc;

use kiln_onnx::Node;

use super::exec::Run;
use super::libs::LibDesc;
use super::ops::node_err;
use crate::builder::lower::{Program, Step};
use crate::builder::rewrite::{self, KILN_DOMAIN};
use crate::error::Result;
use crate::kernels::gemm::MathMode;
use crate::kernels::nvrtc::library::ModuleSpec;

/// Whether `node` is one of kiln's fused ops.
pub fn is_kiln(node: &Node) -> bool {
    node.domain == KILN_DOMAIN
}

fn unknown(node: &Node) -> crate::error::EngineError {
    node_err(
        node,
        format!(
            "'{}' is not an op of the {KILN_DOMAIN} domain",
            node.op_type
        ),
    )
}

/// Enqueues a fused step (library steps of the domain go through `exec::run_lib`).
pub(crate) fn run(r: &Run<'_>, step: &Step, node: &Node) -> Result<()> {
    match node.op_type.as_str() {
        rewrite::elementwise::OP => elementwise::run(r, step, node),
        rewrite::layer_norm::OP => layer_norm::run(r, step, node),
        rewrite::attention::OP => attention::run(r, step, node),
        rewrite::nhwc::CONV_OP | rewrite::nhwc::POOL_OP | rewrite::nhwc::ENTRY_OP => {
            nhwc::run(r, step, node)
        }
        _ => Err(unknown(node)),
    }
}

/// The NVRTC modules a fused step launches.
pub fn modules(step: &Step, p: &Program, node: &Node) -> Result<Vec<ModuleSpec>> {
    match node.op_type.as_str() {
        rewrite::elementwise::OP => elementwise::modules(step, p, node),
        rewrite::layer_norm::OP => layer_norm::modules(step, p, node),
        rewrite::attention::OP => attention::modules(step, p, node),
        rewrite::nhwc::CONV_OP | rewrite::nhwc::POOL_OP | rewrite::nhwc::ENTRY_OP => {
            nhwc::modules(step, p, node)
        }
        _ => Err(unknown(node)),
    }
}

/// The library call of a fused step (`None`: it runs on NVRTC kernels).
pub fn lib_desc(step: &Step, p: &Program, math: MathMode, node: &Node) -> Result<Option<LibDesc>> {
    match node.op_type.as_str() {
        rewrite::nhwc::CONV_OP => nhwc::lib_desc(step, p, math, node),
        _ => Ok(None),
    }
}
