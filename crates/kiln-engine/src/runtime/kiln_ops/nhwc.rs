//! Steps of the NHWC region ops (`builder::rewrite::nhwc`): [`CONV_OP`] is one cuDNN
//! convolution in [`ConvLayout::Nhwc`] with FusedConv's bias / ReLU / residual epilogue (run by
//! `exec::run_lib`, which reads X, W, B, Z at inputs 0..3); [`POOL_OP`] runs the NHWC pooling
//! kernels of `kernels::nvrtc::pool`; [`ENTRY_OP`] the NCHW → NHWC entry of
//! `kernels::nvrtc::layout_nhwc` (from X's type, f32 where lowering left an engine input
//! uncast, into Y's, zero channels past X's).

use kiln_onnx::{FusedActivation, MS_DOMAIN, Node};

use super::super::exec::Run;
use super::super::libs::LibDesc;
use super::super::ops::{node_err, pool_window};
use crate::builder::lower::{Program, Step};
use crate::builder::rewrite::nhwc::{CONV_OP, ENTRY_OP, POOL_ATTR, POOL_OP};
use crate::error::Result;
use crate::kernels::conv::{ConvDesc, ConvLayout};
use crate::kernels::gemm::MathMode;
use crate::kernels::nvrtc::layout_nhwc;
use crate::kernels::nvrtc::library::ModuleSpec;
use crate::kernels::nvrtc::pool::{self, PoolKind, Window2d};

/// `[n, h, w, c]` as `[n, c, h, w]`.
fn nchw(d: &[usize]) -> Option<[usize; 4]> {
    match *d {
        [n, h, w, c] => Some([n, c, h, w]),
        _ => None,
    }
}

fn dims<'p>(node: &Node, step: &Step, p: &'p Program, i: usize) -> Result<&'p [usize]> {
    step.inputs
        .get(i)
        .copied()
        .flatten()
        .map(|t| p.tensors[t].dims.as_slice())
        .ok_or_else(|| node_err(node, format!("input {i} is missing")))
}

fn out_dims<'p>(node: &Node, step: &Step, p: &'p Program) -> Result<&'p [usize]> {
    step.outputs
        .first()
        .map(|&t| p.tensors[t].dims.as_slice())
        .ok_or_else(|| node_err(node, "no output"))
}

/// Whether the convolution ends in ReLU (its `activation` read as FusedConv's).
fn relu(node: &Node) -> Result<bool> {
    if node.attr("activation").is_none() {
        return Ok(false);
    }
    let probe = Node {
        op_type: "FusedConv".into(),
        domain: MS_DOMAIN.into(),
        ..node.clone()
    };
    match FusedActivation::of_node(&probe).map_err(|e| node_err(node, e))? {
        FusedActivation::Identity => Ok(false),
        FusedActivation::Relu => Ok(true),
        other => Err(node_err(
            node,
            format!("activation {other:?}: the NHWC convolution runs ReLU (or none) only"),
        )),
    }
}

/// The cuDNN description of an [`CONV_OP`] step: X `[n, h, w, c]`, W `[k, kh, kw, c/g]`,
/// optional bias `[k]` and residual of Y's shape, Y `[n, oh, ow, k]`.
pub fn lib_desc(step: &Step, p: &Program, math: MathMode, node: &Node) -> Result<Option<LibDesc>> {
    if node.op_type != CONV_OP {
        return Ok(None);
    }
    let bad = |what: &str, d: &[usize]| node_err(node, format!("{what} {d:?} is not rank 4"));
    let x = dims(node, step, p, 0)?;
    let w = dims(node, step, p, 1)?;
    let xn = nchw(x).ok_or_else(|| bad("input", x))?;
    let [k, r, s, cg] = <[usize; 4]>::try_from(w).map_err(|_| bad("weights", w))?;
    let ints = |name: &str, len: usize, default: usize| -> Result<Vec<usize>> {
        match node.attr_ints(name).map_err(|e| node_err(node, e))? {
            None => Ok(vec![default; len]),
            Some(v) if v.len() == len && v.iter().all(|&i| i >= 0) => {
                Ok(v.iter().map(|&i| i as usize).collect())
            }
            Some(v) => Err(node_err(node, format!("{name} {v:?}"))),
        }
    };
    let group = node
        .attr_int("group")
        .map_err(|e| node_err(node, e))?
        .unwrap_or(1)
        .max(1) as usize;
    let has = |i: usize| step.inputs.get(i).copied().flatten().is_some();
    let desc = ConvDesc::from_onnx(
        math,
        ConvLayout::Nhwc,
        &xn,
        &[k, cg, r, s],
        &ints("pads", 4, 0)?,
        &ints("strides", 2, 1)?,
        &ints("dilations", 2, 1)?,
        group,
    )
    .map_err(|e| node_err(node, e))?
    .with_epilogue(has(2), relu(node)?, has(3));
    let o = desc.output_dims();
    let want = [o[0], o[2], o[3], o[1]];
    let y = out_dims(node, step, p)?;
    if y != want {
        return Err(node_err(
            node,
            format!("cuDNN's NHWC output {want:?} differs from the declared {y:?}"),
        ));
    }
    if has(2) && dims(node, step, p, 2)? != [k] {
        return Err(node_err(node, format!("bias is not [{k}]")));
    }
    if has(3) && dims(node, step, p, 3)? != y {
        return Err(node_err(node, format!("residual is not {y:?}")));
    }
    Ok(Some(LibDesc::Conv(desc)))
}

/// What a [`POOL_OP`] step computes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pool {
    Window { kind: PoolKind, window: Window2d },
    Global { max: bool },
}

/// The pool of a [`POOL_OP`] step, with `[n, c]` of its input; errors name the node.
fn pool_of(node: &Node, step: &Step, p: &Program) -> Result<(Pool, [usize; 4])> {
    let x = dims(node, step, p, 0)?;
    let y = out_dims(node, step, p)?;
    let bad = |d: &[usize]| node_err(node, format!("{d:?} is not rank 4"));
    let (xn, yn) = (
        nchw(x).ok_or_else(|| bad(x))?,
        nchw(y).ok_or_else(|| bad(y))?,
    );
    if xn[..2] != yn[..2] {
        return Err(node_err(node, format!("pooling {x:?} into {y:?}")));
    }
    let op = node
        .attr_string(POOL_ATTR)
        .map_err(|e| node_err(node, e))?
        .ok_or_else(|| node_err(node, format!("no '{POOL_ATTR}' attribute")))?;
    let pool = match op.as_str() {
        "MaxPool" | "AveragePool" => {
            let kind = if op == "MaxPool" {
                PoolKind::Max
            } else {
                PoolKind::Average {
                    count_include_pad: node
                        .attr_int("count_include_pad")
                        .map_err(|e| node_err(node, e))?
                        .unwrap_or(0)
                        != 0,
                }
            };
            Pool::Window {
                kind,
                window: pool_window(node, &xn, &yn)?,
            }
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            if yn[2] * yn[3] != 1 {
                return Err(node_err(node, format!("global pool into {y:?}")));
            }
            Pool::Global {
                max: op == "GlobalMaxPool",
            }
        }
        other => return Err(node_err(node, format!("pool '{other}'"))),
    };
    Ok((pool, xn))
}

/// An [`ENTRY_OP`] step: (X type, Y type), `[n, c, h * w]` of X and Y's channels.
fn entry_of(
    node: &Node,
    step: &Step,
    p: &Program,
) -> Result<(
    (kiln_core::DataType, kiln_core::DataType),
    [usize; 3],
    usize,
)> {
    let x = dims(node, step, p, 0)?;
    let y = out_dims(node, step, p)?;
    match (x, y) {
        (&[n, c, h, w], &[yn, yh, yw, cp]) if [n, h, w] == [yn, yh, yw] && cp >= c => {
            let xt = step.inputs[0].map(|t| p.tensors[t].dtype);
            let yt = p.tensors[step.outputs[0]].dtype;
            let xt = xt.ok_or_else(|| node_err(node, "input 0 is missing"))?;
            Ok(((xt, yt), [n, c, h * w], cp))
        }
        _ => Err(node_err(
            node,
            format!("an NHWC entry cannot turn {x:?} into {y:?}"),
        )),
    }
}

pub(crate) fn run(r: &Run<'_>, step: &Step, node: &Node) -> Result<()> {
    if node.op_type == CONV_OP {
        return Err(node_err(
            node,
            "an NHWC convolution runs as a cuDNN call, but the step has no library call \
             (rebuild the plan)",
        ));
    }
    let p = &r.prep.program;
    if node.op_type == ENTRY_OP {
        let (types, [n, c, hw], cp) = entry_of(node, step, p)?;
        let (x, y) = (step.inputs[0].unwrap_or_default(), step.outputs[0]);
        let (px, py) = (r.ptr(x)?, r.ptr(y)?);
        return layout_nhwc::nchw_to_nhwc(&r.engine.kernels, r.stream, types, n, c, hw, cp, px, py)
            .map_err(|e| node_err(node, e));
    }
    if node.op_type != POOL_OP {
        return Err(node_err(node, "not an NHWC op"));
    }
    let (pool, [n, c, h, w]) = pool_of(node, step, p)?;
    let x = step.inputs.first().copied().flatten();
    let x = x.ok_or_else(|| node_err(node, "input 0 is missing"))?;
    let y = *step
        .outputs
        .first()
        .ok_or_else(|| node_err(node, "no output"))?;
    let dt = p.tensors[x].dtype;
    let (px, py) = (r.ptr(x)?, r.ptr(y)?);
    let (lib, s) = (&r.engine.kernels, r.stream);
    let e = |x: crate::kernels::nvrtc::KernelError| node_err(node, x);
    match pool {
        Pool::Window { kind, window } => {
            pool::pool2d_nhwc(lib, s, dt, kind, n, c, &window, px, py).map_err(e)
        }
        Pool::Global { max } => {
            pool::global_pool_nhwc(lib, s, dt, max, n, h * w, c, px, py).map_err(e)
        }
    }
}

pub fn modules(step: &Step, p: &Program, node: &Node) -> Result<Vec<ModuleSpec>> {
    if node.op_type == ENTRY_OP {
        let ((xt, yt), _, _) = entry_of(node, step, p)?;
        let m = layout_nhwc::module(xt, yt).map_err(|e| node_err(node, e))?;
        return Ok(vec![m]);
    }
    if node.op_type != POOL_OP {
        return Ok(Vec::new());
    }
    // Checked at build time rather than at the first run.
    pool_of(node, step, p)?;
    let x = step.inputs.first().copied().flatten();
    let x = x.ok_or_else(|| node_err(node, "input 0 is missing"))?;
    let m = pool::nhwc_module(p.tensors[x].dtype).map_err(|e| node_err(node, e))?;
    Ok(vec![m])
}
