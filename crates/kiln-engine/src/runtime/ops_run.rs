//! Launches of the NVRTC kernels for one node step.

use kiln_core::{DataType, DevicePtr};
use kiln_onnx::Node;

use super::*;
use crate::builder::lower::Step;
use crate::kernels::nvrtc::binary::Operand;
use crate::kernels::nvrtc::norm::LayerNormIo;
use crate::kernels::nvrtc::pad::PadMode;
use crate::runtime::exec::Run;

/// Runs one node step on the NVRTC kernels (library ops are handled by the caller).
pub(crate) fn run_node(r: &Run<'_>, step: &Step, node: &Node) -> Result<()> {
    let lib = &r.engine.kernels;
    let s = r.stream;
    let op = node.op_type.as_str();
    let e = |x: crate::kernels::nvrtc::KernelError| node_err(node, x);
    let input = |i: usize| -> Result<usize> {
        step.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| node_err(node, format!("input {i} is missing")))
    };
    let out = |i: usize| -> Result<usize> {
        step.outputs
            .get(i)
            .copied()
            .ok_or_else(|| node_err(node, format!("output {i} is missing")))
    };
    let tensors = &r.prep.program.tensors;
    let x = input(0)?;
    let (xd, dt) = (tensors[x].dims.as_slice(), tensors[x].dtype);
    let px = r.ptr(x)?;
    let y = out(0)?;
    let (yd, ydt) = (tensors[y].dims.as_slice(), tensors[y].dtype);
    let py = r.ptr(y)?;
    let n = yd.iter().product::<usize>();
    let opset = r.prep.opset;
    let ints = |i: usize| r.const_i64(step, i, node);
    let attr_i = |name: &str, d: i64| -> Result<i64> {
        Ok(node
            .attr_int(name)
            .map_err(|x| node_err(node, x))?
            .unwrap_or(d))
    };
    let axis = |d: i64, rank: usize| -> Result<usize> {
        layout::norm_axis(attr_i("axis", d)?, rank, op).map_err(e)
    };
    if UNARY.contains(&op) {
        let clip = if op == "Clip" {
            (r.const_f32(step, 1, node)?, r.const_f32(step, 2, node)?)
        } else {
            (None, None)
        };
        let u = unary_op(node, clip)?.ok_or_else(|| node_err(node, "not unary"))?;
        return unary::unary(lib, s, u, dt, px, py, n).map_err(e);
    }
    if let Some(b) = binary_op(op) {
        let x1 = input(1)?;
        if step.inputs.len() > 2 {
            return Err(node_err(node, "more than two inputs"));
        }
        let a = Operand {
            ptr: px,
            shape: xd,
            dtype: dt,
        };
        let bo = Operand {
            ptr: r.ptr(x1)?,
            shape: &tensors[x1].dims,
            dtype: tensors[x1].dtype,
        };
        return binary::binary(lib, s, b, a, bo, py).map_err(e);
    }
    if let Some(red) = reduce_op(op) {
        let axes = if reduce_axes_input(op, opset) {
            ints(1)?
        } else {
            node.attr_ints("axes")
                .map_err(|x| node_err(node, x))?
                .map(<[i64]>::to_vec)
        };
        let noop = attr_i("noop_with_empty_axes", 0)? != 0;
        return match reduce_axes(axes, xd.len(), noop)? {
            None => r.copy(x, y),
            Some(axes) => reduce::reduce(lib, s, red, dt, xd, &axes, px, py).map_err(e),
        };
    }
    match op {
        "Identity" | "Dropout" => r.copy(x, y),
        "Cast" => {
            if ydt == dt {
                r.copy(x, y)
            } else {
                cast::cast(lib, s, dt, ydt, px, py, n).map_err(e)
            }
        }
        "Where" => {
            let (x1, x2) = (input(1)?, input(2)?);
            let opnd = |id: usize| -> Result<Operand<'_>> {
                Ok(Operand {
                    ptr: r.ptr(id)?,
                    shape: &tensors[id].dims,
                    dtype: tensors[id].dtype,
                })
            };
            binary::where_(lib, s, opnd(x)?, opnd(x1)?, opnd(x2)?, py).map_err(e)
        }
        "ArgMax" | "ArgMin" => {
            let a = axis(0, xd.len())?;
            let last = attr_i("select_last_index", 0)? != 0;
            let geo = layout::split_at_axis(xd, a);
            reduce::arg_extreme(lib, s, dt, op == "ArgMax", last, geo, px, py).map_err(e)
        }
        "Softmax" | "LogSoftmax" => {
            let legacy = opset < 13;
            let a = axis(if legacy { 1 } else { -1 }, xd.len())?;
            let geo = softmax::softmax_geometry(xd, a, legacy).map_err(e)?;
            softmax::softmax(lib, s, dt, geo, op == "LogSoftmax", px, py).map_err(e)
        }
        "LayerNormalization" => {
            let a = axis(-1, xd.len())?;
            let (rows, cols) = (
                xd[..a].iter().product::<usize>(),
                xd[a..].iter().product::<usize>(),
            );
            let sc = input(1)?;
            let bias = step.inputs.get(2).copied().flatten();
            let eps = node
                .attr_float("epsilon")
                .map_err(|x| node_err(node, x))?
                .unwrap_or(1e-5);
            // Mean (output 1) and InvStdDev (output 2): f32 tensors (lowering keeps them f32
            // in every engine), by position since either may be left out.
            let stat = |pos: usize| -> Result<DevicePtr> {
                match output_slot(node, step, pos) {
                    None => Ok(DevicePtr(0)),
                    Some(o) if tensors[o].dtype == DataType::F32 => r.ptr(o),
                    Some(o) => Err(node_err(
                        node,
                        format!(
                            "output {pos} is {}, the kernel writes f32",
                            tensors[o].dtype
                        ),
                    )),
                }
            };
            let io = LayerNormIo {
                x: px,
                scale: r.ptr(sc)?,
                bias: bias.map_or(Ok(DevicePtr(0)), |b| r.ptr(b))?,
                y: py,
                mean: stat(1)?,
                inv_std: stat(2)?,
            };
            let lens = (
                tensors[sc].dims.iter().product::<usize>(),
                bias.map_or(0, |b| tensors[b].dims.iter().product::<usize>()),
            );
            norm::layer_norm(lib, s, dt, rows, cols, lens, eps, io).map_err(e)
        }
        "GroupNormalization" | "InstanceNormalization" => {
            if xd.len() < 2 {
                return Err(node_err(node, "input rank below 2"));
            }
            let (sc, b) = (input(1)?, input(2)?);
            let c = xd[1];
            let groups = if op == "InstanceNormalization" {
                c
            } else {
                attr_i("num_groups", 0)?.max(0) as usize
            };
            let per_group = tensors[sc].dims.iter().product::<usize>() == groups && groups != c;
            let eps = node
                .attr_float("epsilon")
                .map_err(|x| node_err(node, x))?
                .unwrap_or(1e-5);
            let geo = (xd[0], c, xd[2..].iter().product());
            let io = (px, r.ptr(sc)?, r.ptr(b)?, py);
            norm::group_norm(lib, s, dt, geo, groups, per_group, eps, io).map_err(e)
        }
        "MaxPool" | "AveragePool" => {
            let w = pool_window(node, xd, yd)?;
            let nc = xd[0] * xd[1];
            match output_slot(node, step, 1) {
                Some(ix) if op == "MaxPool" => {
                    let indices = pool::PoolIndices {
                        ptr: r.ptr(ix)?,
                        column_major: attr_i("storage_order", 0)? != 0,
                    };
                    pool::max_pool2d_with_indices(lib, s, dt, nc, &w, px, py, indices).map_err(e)
                }
                _ => pool::pool2d(lib, s, dt, pool_kind(node)?, nc, &w, px, py).map_err(e),
            }
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            if xd.len() < 2 {
                return Err(node_err(node, "input rank below 2"));
            }
            let rows = xd[0] * xd[1];
            let len = xd[2..].iter().product();
            pool::global_pool(lib, s, dt, op == "GlobalMaxPool", rows, len, px, py).map_err(e)
        }
        "Transpose" => {
            let perm: Vec<usize> = node
                .attr_ints("perm")
                .map_err(|x| node_err(node, x))?
                .unwrap_or(&[])
                .iter()
                .map(|&p| p.max(0) as usize)
                .collect();
            movement::transpose(lib, s, dt, xd, &perm, px, py).map_err(e)
        }
        "Concat" => {
            let a = axis(0, yd.len())?;
            let mut ins = Vec::new();
            for id in step.inputs.iter().flatten() {
                ins.push((r.ptr(*id)?, tensors[*id].dims.as_slice()));
            }
            movement::concat(lib, s, dt, &ins, a, py).map_err(e)
        }
        "Split" => {
            let a = axis(0, xd.len())?;
            let sizes: Vec<usize> = step.outputs.iter().map(|&o| tensors[o].dims[a]).collect();
            let outs = step
                .outputs
                .iter()
                .map(|&o| r.ptr(o))
                .collect::<Result<Vec<_>>>()?;
            movement::split(lib, s, dt, xd, a, &sizes, px, &outs).map_err(e)
        }
        "Slice" => {
            let (starts, ends, axes, steps) = if opset < 10 {
                let g = |n: &str| -> Result<Option<Vec<i64>>> {
                    Ok(node
                        .attr_ints(n)
                        .map_err(|x| node_err(node, x))?
                        .map(<[i64]>::to_vec))
                };
                (g("starts")?, g("ends")?, g("axes")?, None)
            } else {
                (ints(1)?, ints(2)?, ints(3)?, ints(4)?)
            };
            let (starts, ends) = starts
                .zip(ends)
                .ok_or_else(|| node_err(node, "no starts/ends"))?;
            let (st, sp, od) = slice_params(xd, &starts, &ends, axes.as_deref(), steps.as_deref())?;
            if od != yd {
                return Err(node_err(
                    node,
                    format!("slice gives {od:?}, inferred {yd:?}"),
                ));
            }
            movement::slice(lib, s, dt, xd, &st, &sp, yd, px, py).map_err(e)
        }
        "Expand" => movement::expand(lib, s, dt, xd, yd, px, py).map_err(e),
        "Tile" => {
            let reps: Vec<usize> = ints(1)?
                .ok_or_else(|| node_err(node, "no repeats"))?
                .iter()
                .map(|&v| v.max(0) as usize)
                .collect();
            movement::tile(lib, s, dt, xd, &reps, px, py).map_err(e)
        }
        "Gather" => {
            let ix = input(1)?;
            let a = axis(0, xd.len())?;
            let count = tensors[ix].dims.iter().product();
            let geo = layout::split_at_axis(xd, a);
            let it = tensors[ix].dtype;
            gather::gather(lib, s, dt, it, geo, count, px, r.ptr(ix)?, py).map_err(e)
        }
        "Resize" => {
            let plan = resize_plan(node, opset, xd, |i| r.constant(step, i, node))?;
            if plan.out_shape != yd {
                return Err(node_err(
                    node,
                    format!("Resize gives {:?}, inferred {yd:?}", plan.out_shape),
                ));
            }
            resize::resize(lib, s, dt, plan.settings, xd, yd, &plan.scales, px, py).map_err(e)
        }
        "GatherND" => {
            let ix = input(1)?;
            let geo = gather_nd_geometry(node, step, &r.prep.program)?;
            let it = tensors[ix].dtype;
            gather_nd::gather_nd(lib, s, dt, it, &geo, px, r.ptr(ix)?, py).map_err(e)
        }
        "Pad" => {
            let mode = match node
                .attr_string("mode")
                .map_err(|x| node_err(node, x))?
                .as_deref()
                .unwrap_or("constant")
            {
                "constant" => PadMode::Constant,
                "reflect" => PadMode::Reflect,
                "edge" => PadMode::Edge,
                "wrap" => PadMode::Wrap,
                m => return Err(node_err(node, format!("mode '{m}'"))),
            };
            let (pads, value, axes) = if opset < 11 {
                let p = node
                    .attr_ints("pads")
                    .map_err(|x| node_err(node, x))?
                    .map(<[i64]>::to_vec);
                let v = node.attr_float("value").map_err(|x| node_err(node, x))?;
                (p, v.map(f64::from), None)
            } else {
                (ints(1)?, r.const_f64(step, 2, node)?, ints(3)?)
            };
            let pads = pads.ok_or_else(|| node_err(node, "no pads"))?;
            let full = pad_full(xd.len(), &pads, axes.as_deref())?;
            let fill = fill_bytes(dt, value.unwrap_or(0.0))?;
            pad::pad(lib, s, dt, xd, &full, mode, &fill, px, py).map_err(e)
        }
        other => Err(EngineError::Unsupported(format!(
            "no GPU kernel is wired for {other} (node '{}')",
            node.name
        ))),
    }
}

/// The bytes of `v` as one element of `dt`.
pub(crate) fn fill_bytes(dt: DataType, v: f64) -> Result<Vec<u8>> {
    Ok(match dt {
        DataType::F32 => (v as f32).to_le_bytes().to_vec(),
        DataType::F64 => v.to_le_bytes().to_vec(),
        DataType::F16 => half::f16::from_f64(v).to_le_bytes().to_vec(),
        DataType::BF16 => half::bf16::from_f64(v).to_le_bytes().to_vec(),
        DataType::I64 => (v as i64).to_le_bytes().to_vec(),
        DataType::I32 => (v as i32).to_le_bytes().to_vec(),
        DataType::Bool | DataType::U8 => vec![u8::from(v != 0.0)],
        DataType::I8 => (v as i8).to_le_bytes().to_vec(),
        other => {
            return Err(EngineError::Unsupported(format!("Pad of {other} tensors")));
        }
    })
}
