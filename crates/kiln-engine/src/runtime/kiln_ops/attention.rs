//! Launch of the fused op (not yet written).

use kiln_onnx::Node;

use super::super::exec::Run;
use super::super::ops::node_err;
use crate::builder::lower::{Program, Step};
use crate::error::Result;
use crate::kernels::nvrtc::library::ModuleSpec;

pub(crate) fn run(_r: &Run<'_>, _step: &Step, node: &Node) -> Result<()> {
    Err(node_err(node, "not implemented yet"))
}

pub fn modules(_step: &Step, _p: &Program, _node: &Node) -> Result<Vec<ModuleSpec>> {
    Ok(Vec::new())
}
