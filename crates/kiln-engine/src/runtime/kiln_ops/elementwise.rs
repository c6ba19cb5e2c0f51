//! Launch of `kiln::Elementwise` (a chain of float elementwise ops made by
//! `builder::rewrite::elementwise`): one generated kernel of `kernels::nvrtc::fused`, its
//! expression in the node's `expr` attribute, its inputs the step's inputs in order.

use kiln_core::DataType;
use kiln_onnx::Node;

use super::super::exec::Run;
use super::super::ops::node_err;
use crate::builder::lower::{Program, Step, TensorInfo};
use crate::builder::rewrite::elementwise::EXPR_ATTR;
use crate::error::Result;
use crate::kernels::nvrtc::binary::Operand;
use crate::kernels::nvrtc::fused;
use crate::kernels::nvrtc::library::ModuleSpec;

/// The node's expression.
fn expr(node: &Node) -> Result<String> {
    node.attr_string(EXPR_ATTR)
        .map_err(|e| node_err(node, e))?
        .ok_or_else(|| node_err(node, format!("attribute '{EXPR_ATTR}' is missing")))
}

/// A tensor of the program with its id.
type Tensor<'p> = (usize, &'p TensorInfo);

/// The step's input tensors (every input present) and its one output.
fn tensors<'p>(step: &Step, p: &'p Program, node: &Node) -> Result<(Vec<Tensor<'p>>, Tensor<'p>)> {
    let ins = step
        .inputs
        .iter()
        .enumerate()
        .map(|(i, id)| {
            id.map(|id| (id, &p.tensors[id]))
                .ok_or_else(|| node_err(node, format!("input {i} is missing")))
        })
        .collect::<Result<Vec<_>>>()?;
    let [out] = step.outputs.as_slice() else {
        return Err(node_err(
            node,
            format!("{} outputs where the op has one", step.outputs.len()),
        ));
    };
    Ok((ins, (*out, &p.tensors[*out])))
}

pub(crate) fn run(r: &Run<'_>, step: &Step, node: &Node) -> Result<()> {
    let text = expr(node)?;
    let (ins, (y, yt)) = tensors(step, &r.prep.program, node)?;
    let operands = ins
        .iter()
        .map(|&(id, t)| {
            Ok(Operand {
                ptr: r.ptr(id)?,
                shape: &t.dims,
                dtype: t.dtype,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    fused::launch(
        &r.engine.kernels,
        r.stream,
        &text,
        &operands,
        r.ptr(y)?,
        yt.dtype,
        &yt.dims,
    )
    .map_err(|e| node_err(node, e))
}

pub fn modules(step: &Step, p: &Program, node: &Node) -> Result<Vec<ModuleSpec>> {
    let text = expr(node)?;
    let (ins, (_, yt)) = tensors(step, p, node)?;
    let types: Vec<DataType> = ins.iter().map(|(_, t)| t.dtype).collect();
    let m = fused::module(&text, &types, yt.dtype).map_err(|e| node_err(node, e))?;
    // The shapes must broadcast to the output (checked here so a bad plan fails the build).
    let shapes: Vec<&[usize]> = ins.iter().map(|(_, t)| t.dims.as_slice()).collect();
    fused::geometry(&shapes, &yt.dims, fused::vector_width(&types, yt.dtype))
        .map_err(|e| node_err(node, e))?;
    Ok(vec![m])
}
