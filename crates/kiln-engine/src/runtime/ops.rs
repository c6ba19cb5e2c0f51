//! Node steps on the NVRTC kernels: the op's attributes and constant inputs (from the
//! specialised graph) become the launch arguments of E2's kernel families. [`modules_for`]
//! names the modules a step needs, so the builder compiles them into the plan.

use kiln_core::DataType;
use kiln_onnx::Node;

use crate::builder::lower::{Program, Step, StepKind, window_pads};
use crate::error::{EngineError, Result};
use crate::kernels::nvrtc::gather_nd::GatherNdGeometry;
use crate::kernels::nvrtc::library::ModuleSpec;
use crate::kernels::nvrtc::pool::{PoolKind, Window2d};
use crate::kernels::nvrtc::reduce::ReduceOp;
use crate::kernels::nvrtc::unary::UnaryOp;
use crate::kernels::nvrtc::{
    binary, cast, gather, gather_nd, layout, movement, norm, pad, pool, reduce, resize, softmax,
    unary,
};

pub(crate) fn node_err(node: &Node, message: impl std::fmt::Display) -> EngineError {
    EngineError::Lowering {
        node: node.name.clone(),
        op: node.op_type.clone(),
        message: message.to_string(),
    }
}

/// The unary kernel of an op (`None`: not a unary op). `clip` holds Clip's constant bounds.
pub fn unary_op(node: &Node, clip: (Option<f32>, Option<f32>)) -> Result<Option<UnaryOp>> {
    let f = |n: &str, d: f32| -> Result<f32> {
        Ok(node
            .attr_float(n)
            .map_err(|e| node_err(node, e))?
            .unwrap_or(d))
    };
    use UnaryOp as U;
    Ok(Some(match node.op_type.as_str() {
        "Relu" => U::Relu,
        "LeakyRelu" => U::LeakyRelu {
            alpha: f("alpha", 0.01)?,
        },
        "Sigmoid" => U::Sigmoid,
        "HardSigmoid" => U::HardSigmoid {
            alpha: f("alpha", 0.2)?,
            beta: f("beta", 0.5)?,
        },
        "HardSwish" => U::HardSwish,
        "Tanh" => U::Tanh,
        "Gelu" => {
            let approx = node
                .attr_string("approximate")
                .map_err(|e| node_err(node, e))?
                .unwrap_or_else(|| "none".into());
            if approx == "tanh" {
                U::GeluTanh
            } else {
                U::Gelu
            }
        }
        "Erf" => U::Erf,
        "Softplus" => U::Softplus,
        "Elu" => U::Elu {
            alpha: f("alpha", 1.0)?,
        },
        "Selu" => U::Selu {
            alpha: f("alpha", 1.673_263_2)?,
            gamma: f("gamma", 1.050_701)?,
        },
        "Mish" => U::Mish,
        "Sqrt" => U::Sqrt,
        "Reciprocal" => U::Reciprocal,
        "Exp" => U::Exp,
        "Log" => U::Log,
        "Abs" => U::Abs,
        "Neg" => U::Neg,
        "Floor" => U::Floor,
        "Ceil" => U::Ceil,
        "Round" => U::Round,
        "Not" => U::Not,
        "IsNaN" => U::IsNaN,
        "Clip" => {
            let (lo, hi) = if node.attr("min").is_some() || node.attr("max").is_some() {
                (
                    node.attr_float("min").map_err(|e| node_err(node, e))?,
                    node.attr_float("max").map_err(|e| node_err(node, e))?,
                )
            } else {
                clip
            };
            U::Clip {
                min: lo.unwrap_or(f32::NEG_INFINITY),
                max: hi.unwrap_or(f32::INFINITY),
            }
        }
        _ => return Ok(None),
    }))
}

/// The binary kernel of an op.
pub fn binary_op(op: &str) -> Option<binary::BinaryOp> {
    use binary::BinaryOp as B;
    Some(match op {
        "Add" | "Sum" => B::Add,
        "Sub" => B::Sub,
        "Mul" => B::Mul,
        "Div" => B::Div,
        "Pow" => B::Pow,
        "Min" => B::Min,
        "Max" => B::Max,
        "PRelu" => B::PRelu,
        "Equal" => B::Equal,
        "Less" => B::Less,
        "Greater" => B::Greater,
        "LessOrEqual" => B::LessOrEqual,
        "GreaterOrEqual" => B::GreaterOrEqual,
        "And" => B::And,
        "Or" => B::Or,
        "Xor" => B::Xor,
        _ => return None,
    })
}

/// The reduction of an op.
pub fn reduce_op(op: &str) -> Option<ReduceOp> {
    Some(match op {
        "ReduceSum" => ReduceOp::Sum,
        "ReduceMean" => ReduceOp::Mean,
        "ReduceMax" => ReduceOp::Max,
        "ReduceMin" => ReduceOp::Min,
        "ReduceProd" => ReduceOp::Prod,
        "ReduceL1" => ReduceOp::L1,
        "ReduceL2" => ReduceOp::L2,
        "ReduceSumSquare" => ReduceOp::SumSquare,
        "ReduceLogSumExp" => ReduceOp::LogSumExp,
        _ => return None,
    })
}

/// Whether the reduction takes its axes as input 1 at `opset` (attribute before).
pub fn reduce_axes_input(op: &str, opset: i64) -> bool {
    if op == "ReduceSum" {
        opset >= 13
    } else {
        opset >= 18
    }
}

/// Reduced axes (sorted, deduplicated) of a reduction over `rank` axes; `None` means a copy
/// (`noop_with_empty_axes` with no axes).
pub fn reduce_axes(axes: Option<Vec<i64>>, rank: usize, noop: bool) -> Result<Option<Vec<usize>>> {
    let axes = axes.unwrap_or_default();
    if axes.is_empty() {
        return Ok(if noop {
            None
        } else {
            Some((0..rank).collect())
        });
    }
    let mut v = Vec::with_capacity(axes.len());
    for a in axes {
        v.push(
            layout::norm_axis(a, rank, "reduce")
                .map_err(|e| EngineError::Unsupported(e.to_string()))?,
        );
    }
    v.sort_unstable();
    v.dedup();
    Ok(Some(v))
}

/// Per-axis `(start, step)` of a Slice over `dims` from its (constant) starts, ends, axes,
/// steps.
pub fn slice_params(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<(Vec<i64>, Vec<i64>, Vec<usize>)> {
    let r = dims.len();
    let mut st = vec![0i64; r];
    let mut sp = vec![1i64; r];
    let mut out = dims.to_vec();
    let default_axes: Vec<i64> = (0..starts.len() as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    if ends.len() != starts.len() || axes.len() != starts.len() {
        return Err(EngineError::Unsupported(format!(
            "Slice with {} starts, {} ends, {} axes",
            starts.len(),
            ends.len(),
            axes.len()
        )));
    }
    for (i, &a) in axes.iter().enumerate() {
        let a = layout::norm_axis(a, r, "slice")
            .map_err(|e| EngineError::Unsupported(e.to_string()))?;
        let step = steps.and_then(|s| s.get(i).copied()).unwrap_or(1);
        let (s, n) = movement::slice_axis(dims[a], starts[i], ends[i], step)
            .map_err(|e| EngineError::Unsupported(e.to_string()))?;
        st[a] = s;
        sp[a] = step;
        out[a] = n;
    }
    Ok((st, sp, out))
}

/// Full-rank ONNX pads from a Pad's `pads` and optional `axes`.
pub fn pad_full(rank: usize, pads: &[i64], axes: Option<&[i64]>) -> Result<Vec<i64>> {
    let Some(axes) = axes else {
        if pads.len() != 2 * rank {
            return Err(EngineError::Unsupported(format!(
                "{} pads for rank {rank}",
                pads.len()
            )));
        }
        return Ok(pads.to_vec());
    };
    let k = axes.len();
    if pads.len() != 2 * k {
        return Err(EngineError::Unsupported(format!(
            "{} pads for {k} axes",
            pads.len()
        )));
    }
    let mut full = vec![0i64; 2 * rank];
    for (i, &a) in axes.iter().enumerate() {
        let a = layout::norm_axis(a, rank, "pad")
            .map_err(|e| EngineError::Unsupported(e.to_string()))?;
        full[a] = pads[i];
        full[rank + a] = pads[k + i];
    }
    Ok(full)
}

/// The 2-D window of a MaxPool/AveragePool over `x` (`[N, C, H, W]` or `[N, C, W]`) giving
/// `y`.
pub fn pool_window(node: &Node, x: &[usize], y: &[usize]) -> Result<Window2d> {
    if !(3..=4).contains(&x.len()) || y.len() != x.len() {
        return Err(node_err(
            node,
            format!("pooling of {x:?} (1-D and 2-D only)"),
        ));
    }
    let sp = x.len() - 2;
    let kernel: Vec<usize> = node
        .attr_ints("kernel_shape")
        .map_err(|e| node_err(node, e))?
        .ok_or_else(|| node_err(node, "no kernel_shape"))?
        .iter()
        .map(|&k| k.max(0) as usize)
        .collect();
    if kernel.len() != sp {
        return Err(node_err(node, "kernel_shape does not match the rank"));
    }
    let pads = window_pads(node, &x[2..], &kernel)?;
    let ints = |n: &str| -> Result<Vec<usize>> {
        Ok(match node.attr_ints(n).map_err(|e| node_err(node, e))? {
            Some(v) => v.iter().map(|&s| s.max(0) as usize).collect(),
            None => vec![1; sp],
        })
    };
    let (strides, dil) = (ints("strides")?, ints("dilations")?);
    if strides.len() != sp || dil.len() != sp || pads.iter().any(|&p| p < 0) {
        return Err(node_err(node, "strides, dilations or pads do not fit"));
    }
    let two = |v: &[usize], fill: usize| -> [usize; 2] {
        if v.len() == 1 {
            [fill, v[0]]
        } else {
            [v[0], v[1]]
        }
    };
    let pb: Vec<usize> = pads[..sp].iter().map(|&p| p as usize).collect();
    let pe: Vec<usize> = pads[sp..].iter().map(|&p| p as usize).collect();
    Ok(Window2d {
        input: two(&x[2..], 1),
        output: two(&y[2..], 1),
        kernel: two(&kernel, 1),
        strides: two(&strides, 1),
        dilations: two(&dil, 1),
        pad_begin: two(&pb, 0),
        pad_end: two(&pe, 0),
    })
}

/// The pooling kind of a MaxPool/AveragePool.
pub fn pool_kind(node: &Node) -> Result<PoolKind> {
    Ok(if node.op_type == "MaxPool" {
        PoolKind::Max
    } else {
        PoolKind::Average {
            count_include_pad: node
                .attr_int("count_include_pad")
                .map_err(|e| node_err(node, e))?
                .unwrap_or(0)
                != 0,
        }
    })
}

/// The unary ops (one list, owned by the lowering).
pub(crate) use crate::builder::lower::UNARY_OPS as UNARY;

/// Whether a node of `op` has a GPU implementation in the runtime (NVRTC or a library).
pub fn wired(op: &str) -> bool {
    UNARY.contains(&op)
        || binary_op(op).is_some()
        || reduce_op(op).is_some()
        || matches!(
            op,
            // BatchNormalization: Mul + Add after specialisation (builder::lower); Mean:
            // Add steps then a Div (builder::passes::variadic_to_binary)
            "BatchNormalization"
                | "Mean"
                | "Identity"
                | "Dropout"
                | "Cast"
                | "Where"
                | "ArgMax"
                | "ArgMin"
                | "Softmax"
                | "LogSoftmax"
                | "LayerNormalization"
                | "GroupNormalization"
                | "InstanceNormalization"
                | "MaxPool"
                | "AveragePool"
                | "GlobalAveragePool"
                | "GlobalMaxPool"
                | "Transpose"
                | "Concat"
                | "Split"
                | "Slice"
                | "Expand"
                | "Tile"
                | "Gather"
                | "GatherND"
                | "Pad"
                | "Resize"
                | "Gemm"
                | "MatMul"
                | "Conv"
                | "ConvTranspose"
                | "FusedConv"
                | "FusedGemm"
        )
}

/// Host-side check of a lowered program: every step's kernel modules exist for its element
/// types and every library step has a valid description. Returns every failing node (the
/// build reports them together).
pub fn check_program(p: &Program, math: crate::kernels::gemm::MathMode) -> Vec<String> {
    let mut bad = Vec::new();
    for step in &p.steps {
        let r = modules_for(step, p)
            .and_then(|_| super::libs::lib_desc(step, p, math))
            .and_then(|_| check_types(step, p))
            .and_then(|_| check_operands(step, p));
        if let Err(e) = r {
            let what = match &step.kind {
                StepKind::Node(n) => format!("node #{} '{}': {}", n.index, n.name, n.op_type),
                other => format!("{other:?} step"),
            };
            bad.push(format!("  {what}: {e}"));
        }
    }
    bad
}

/// Element types the GPU path takes for ops whose kernels are float-only.
fn check_types(step: &Step, p: &Program) -> Result<()> {
    let StepKind::Node(node) = &step.kind else {
        return Ok(());
    };
    if super::kiln_ops::is_kiln(node) {
        return Ok(());
    }
    let Some(Some(x)) = step.inputs.first() else {
        return Ok(());
    };
    let dt = p.tensors[*x].dtype;
    let float_only = matches!(
        node.op_type.as_str(),
        "Gemm"
            | "MatMul"
            | "Conv"
            | "ConvTranspose"
            | "FusedConv"
            | "FusedGemm"
            | "Softmax"
            | "LogSoftmax"
            | "LayerNormalization"
    ) || reduce_op(&node.op_type).is_some();
    if float_only && !matches!(dt, DataType::F32 | DataType::F16 | DataType::BF16) {
        return Err(node_err(
            node,
            format!("the GPU path takes f32/f16/bf16 here, not {dt}"),
        ));
    }
    if UNARY.contains(&node.op_type.as_str()) {
        let u = unary_op(node, (None, None))?.ok_or_else(|| node_err(node, "not a unary op"))?;
        if !unary::supports(&u, dt) {
            return Err(node_err(node, format!("no {dt} kernel")));
        }
    }
    Ok(())
}

/// The step output that holds node output `pos` (`None`: the node leaves it out). Lowering
/// gives a step only the node's non-empty outputs, in order.
pub(crate) fn output_slot(node: &Node, step: &Step, pos: usize) -> Option<usize> {
    if node.outputs.get(pos).is_none_or(String::is_empty) {
        return None;
    }
    let k = node.outputs[..pos].iter().filter(|o| !o.is_empty()).count();
    step.outputs.get(k).copied()
}

/// The GatherND geometry of a step (data dims, indices dims, `batch_dims`).
pub(crate) fn gather_nd_geometry(
    node: &Node,
    step: &Step,
    p: &Program,
) -> Result<GatherNdGeometry> {
    let t = |i: usize| {
        step.inputs
            .get(i)
            .copied()
            .flatten()
            .map(|id| &p.tensors[id])
            .ok_or_else(|| node_err(node, format!("input {i} is missing")))
    };
    let (data, idx) = (t(0)?, t(1)?);
    if !matches!(idx.dtype, DataType::I64 | DataType::I32) {
        return Err(node_err(
            node,
            format!("indices of type {} (int64 or int32 only)", idx.dtype),
        ));
    }
    let b = node
        .attr_int("batch_dims")
        .map_err(|e| node_err(node, e))?
        .unwrap_or(0);
    GatherNdGeometry::new(&data.dims, &idx.dims, b).map_err(|e| node_err(node, e))
}

/// Operand checks of the node steps whose launch would otherwise find the problem at run
/// time: binary steps take exactly two inputs, pooling windows fit the kernels, MaxPool's
/// `Indices` are int64, LayerNormalization's statistics are f32, GatherND's shapes fit.
fn check_operands(step: &Step, p: &Program) -> Result<()> {
    let StepKind::Node(node) = &step.kind else {
        return Ok(());
    };
    let op = node.op_type.as_str();
    let dims = |id: Option<usize>| id.map_or(&[][..], |i| p.tensors[i].dims.as_slice());
    if binary_op(op).is_some() && step.inputs.len() != 2 {
        return Err(node_err(
            node,
            format!(
                "{} inputs where the kernel takes two (the builder's variadic-to-binary pass \
                 rewrites Sum/Min/Max/Mean; rebuild the plan)",
                step.inputs.len()
            ),
        ));
    }
    match op {
        "MaxPool" | "AveragePool" => {
            let x = dims(step.inputs.first().copied().flatten());
            let y = dims(step.outputs.first().copied());
            pool_window(node, x, y)?;
            if let Some(i) = output_slot(node, step, 1)
                && p.tensors[i].dtype != DataType::I64
            {
                return Err(node_err(node, "Indices must be int64"));
            }
        }
        "LayerNormalization" => {
            for pos in [1, 2] {
                if let Some(i) = output_slot(node, step, pos)
                    && p.tensors[i].dtype != DataType::F32
                {
                    return Err(node_err(
                        node,
                        format!(
                            "output {pos} is stored as {}; the kernel writes f32 statistics",
                            p.tensors[i].dtype
                        ),
                    ));
                }
            }
        }
        "GatherND" => {
            let g = gather_nd_geometry(node, step, p)?;
            let y = dims(step.outputs.first().copied());
            if g.out_shape != y {
                return Err(node_err(
                    node,
                    format!("GatherND gives {:?}, inferred {y:?}", g.out_shape),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Modules a step launches (compiled into the plan by the builder).
pub fn modules_for(step: &Step, p: &Program) -> Result<Vec<ModuleSpec>> {
    let t = |id: Option<&Option<usize>>| id.copied().flatten().map(|i| &p.tensors[i]);
    let first = t(step.inputs.first());
    let dt = first.map_or(DataType::F32, |x| x.dtype);
    let size = |d: DataType| d.size_in_bytes();
    fn k<T>(r: crate::kernels::nvrtc::Result<T>) -> Result<T> {
        r.map_err(|e| EngineError::Unsupported(e.to_string()))
    }
    let node = match &step.kind {
        StepKind::Copy => return Ok(Vec::new()),
        StepKind::Cast => {
            let out = p.tensors[step.outputs[0]].dtype;
            return Ok(if out == dt {
                vec![]
            } else {
                vec![k(cast::module(dt))?]
            });
        }
        StepKind::Pad { .. } => return Ok(vec![k(pad::module(size(dt)))?]),
        StepKind::Node(n) => n,
    };
    if super::kiln_ops::is_kiln(node) {
        return super::kiln_ops::modules(step, p, node);
    }
    let op = node.op_type.as_str();
    let out_dt = step.outputs.first().map_or(dt, |&o| p.tensors[o].dtype);
    Ok(match op {
        _ if UNARY.contains(&op) => vec![k(unary::module(dt))?],
        _ if binary_op(op).is_some() => vec![k(binary::module(dt))?],
        _ if reduce_op(op).is_some() || op == "ArgMax" || op == "ArgMin" => {
            let mut v = vec![k(reduce::module(dt))?];
            if reduce_op(op).is_some() {
                v.extend(k(movement::modules(size(dt)))?);
            }
            v
        }
        "Where" => vec![k(binary::where_module(size(out_dt)))?],
        "Cast" if out_dt != dt => vec![k(cast::module(dt))?],
        "Softmax" | "LogSoftmax" => vec![k(softmax::module(dt))?],
        "LayerNormalization" | "GroupNormalization" | "InstanceNormalization" => {
            vec![k(norm::module(dt))?]
        }
        "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" => {
            vec![k(pool::module(dt))?]
        }
        "Transpose" | "Concat" | "Split" | "Slice" | "Expand" | "Tile" => {
            k(movement::modules(size(dt)))?
        }
        "Gather" => k(gather::modules(size(dt)))?,
        "GatherND" => vec![k(gather_nd::module(size(dt)))?],
        "Resize" => vec![k(resize::module(dt))?],
        "Pad" => vec![k(pad::module(size(dt)))?],
        "Gemm" | "FusedGemm" => k(movement::modules(size(out_dt)))?,
        _ => Vec::new(),
    })
}

#[path = "ops_run.rs"]
mod run;

#[path = "ops_resize.rs"]
mod resize_host;
pub use resize_host::{ResizePlan, resize_inputs, resize_plan};

pub(crate) use run::{fill_bytes, run_node};
