//! Reductions: ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd, ReduceL2, and ArgMax.
//!
//! Spec pages `https://onnx.ai/onnx/operators/onnx__<Op>.html`:
//! - [ReduceSum](https://onnx.ai/onnx/operators/onnx__ReduceSum.html): 1, 11, 13. `axes`
//!   moves from an attribute to an optional second input at 13, which also adds
//!   `noop_with_empty_axes`.
//! - [ReduceMean](https://onnx.ai/onnx/operators/onnx__ReduceMean.html),
//!   [ReduceProd](https://onnx.ai/onnx/operators/onnx__ReduceProd.html),
//!   [ReduceL2](https://onnx.ai/onnx/operators/onnx__ReduceL2.html): 1, 11, 13, 18;
//!   [ReduceMax](https://onnx.ai/onnx/operators/onnx__ReduceMax.html),
//!   [ReduceMin](https://onnx.ai/onnx/operators/onnx__ReduceMin.html): 1, 11, 12, 13, 18, 20.
//!   `axes` becomes an input at 18; 11 allows negative axes, 12/13/20 widen the types.
//! - [ArgMax](https://onnx.ai/onnx/operators/onnx__ArgMax.html): 1, 11, 12, 13. One `axis`
//!   (default 0); 12 adds `select_last_index` (values only). The output is int64.
//!
//! `keepdims` (default 1) keeps reduced dims as 1. With no axes every dim is reduced, unless
//! `noop_with_empty_axes` = 1 (input form only), which makes the op an identity. Axes given by
//! a non-constant input leave the reduced dims unknown (rank kept with `keepdims`, or known
//! from the axes' length without).

use kiln_core::{DataType, Dim, Shape};

use super::common::{const_ints, expect_outputs, flag_attr, int_attr, normalize_axes};
use crate::error::Result;
use crate::ops::util::normalize_axis;
use crate::ops::{Fact, InferCtx, OpDef};

/// Which axes a reduction reduces.
enum Axes {
    All,
    /// Identity (`noop_with_empty_axes` with no axes).
    None,
    Some(Vec<i64>),
    /// Given by an input whose value is not known; the count when its shape is.
    Unknown(Option<usize>),
}

fn read_axes(ctx: &InferCtx<'_>, input_from: i64) -> Result<Axes> {
    if ctx.opset < input_from {
        ctx.expect_inputs(1, 1)?;
        return Ok(match ctx.node.attr_ints("axes")? {
            Some(v) if !v.is_empty() => Axes::Some(v.to_vec()),
            _ => Axes::All,
        });
    }
    ctx.expect_inputs(1, 2)?;
    if ctx.node.attr("axes").is_some() {
        return Err(ctx.err(
            format!(
                "has an 'axes' attribute, which {} takes as input #1 from opset {input_from}",
                ctx.node.op_type
            ),
            "Pass the axes as an int64 input (or export with an older opset)",
        ));
    }
    let noop = flag_attr(ctx, "noop_with_empty_axes", false)?;
    let empty = if noop { Axes::None } else { Axes::All };
    if ctx.input(1).is_none() {
        return Ok(empty);
    }
    if let Some(v) = const_ints(ctx, 1, "axes")? {
        return Ok(if v.is_empty() { empty } else { Axes::Some(v) });
    }
    let count = ctx
        .input_shape(1)
        .and_then(|s| s.dims().first())
        .and_then(Dim::known);
    Ok(match count {
        Some(0) => empty,
        c => Axes::Unknown(c),
    })
}

fn reduced(x: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    let mut dims = Vec::with_capacity(x.rank());
    for (i, d) in x.dims().iter().enumerate() {
        if !axes.contains(&i) {
            dims.push(d.clone());
        } else if keepdims {
            dims.push(Dim::Known(1));
        }
    }
    Shape(dims)
}

fn infer_reduce(ctx: &mut InferCtx<'_>, input_from: i64) -> Result<()> {
    expect_outputs(ctx, 1, 1)?;
    let axes = read_axes(ctx, input_from)?;
    let keepdims = flag_attr(ctx, "keepdims", true)?;
    let x = ctx.required(0)?.clone();
    let shape = match (&x.shape, axes) {
        (None, _) => None,
        (Some(s), Axes::None) => Some(s.clone()),
        (Some(s), Axes::All) => Some(reduced(s, &(0..s.rank()).collect::<Vec<_>>(), keepdims)),
        (Some(s), Axes::Some(v)) => Some(reduced(s, &normalize_axes(ctx, &v, s.rank())?, keepdims)),
        (Some(s), Axes::Unknown(_)) if keepdims => Some(Shape(vec![Dim::Unknown; s.rank()])),
        (Some(s), Axes::Unknown(Some(k))) => {
            let r = s.rank().checked_sub(k).ok_or_else(|| {
                ctx.err(
                    format!("reduces {k} axes of a rank-{} input", s.rank()),
                    "Give at most one axis per dim",
                )
            })?;
            Some(Shape(vec![Dim::Unknown; r]))
        }
        (Some(_), Axes::Unknown(None)) => None,
    };
    ctx.set_output(0, Fact::new(x.dtype, shape));
    Ok(())
}

fn infer_argmax(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    expect_outputs(ctx, 1, 1)?;
    let axis = int_attr(ctx, "axis", 0)?;
    let keepdims = flag_attr(ctx, "keepdims", true)?;
    flag_attr(ctx, "select_last_index", false)?;
    let x = ctx.required(0)?.clone();
    let shape = match &x.shape {
        Some(s) => Some(reduced(
            s,
            &[normalize_axis(ctx, axis, s.rank())?],
            keepdims,
        )),
        None => None,
    };
    ctx.set_output(0, Fact::new(Some(DataType::I64), shape));
    Ok(())
}

macro_rules! reduce_ops {
    ($($name:ident = $op:literal, $f:ident, axes input from $v:literal;)*) => {
        $(
            fn $f(ctx: &mut InferCtx<'_>) -> Result<()> {
                infer_reduce(ctx, $v)
            }
            #[doc = concat!("`", $op, "`")]
            pub(super) const $name: OpDef = OpDef {
                op_type: $op,
                domain: "",
                since_opset: 1,
                infer: $f,
            };
        )*
    };
}

reduce_ops!(
    REDUCE_SUM = "ReduceSum", infer_sum, axes input from 13;
    REDUCE_MEAN = "ReduceMean", infer_mean, axes input from 18;
    REDUCE_MAX = "ReduceMax", infer_max, axes input from 18;
    REDUCE_MIN = "ReduceMin", infer_min, axes input from 18;
    REDUCE_PROD = "ReduceProd", infer_prod, axes input from 18;
    REDUCE_L2 = "ReduceL2", infer_l2, axes input from 18;
);

/// `ArgMax`
pub(super) const ARG_MAX: OpDef = OpDef {
    op_type: "ArgMax",
    domain: "",
    since_opset: 1,
    infer: infer_argmax,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nn::test_util::*;

    const ALL: [&OpDef; 6] = [
        &REDUCE_SUM,
        &REDUCE_MEAN,
        &REDUCE_MAX,
        &REDUCE_MIN,
        &REDUCE_PROD,
        &REDUCE_L2,
    ];

    #[test]
    fn axes_attribute_form() {
        for def in ALL {
            let a = vec![ints("axes", &[2, 3])];
            let out = infer(def, 11, a, vec![f32s("batchx64x7x7")], 1).unwrap();
            assert_eq!(out_shape(&out), "[batch, 64, 1, 1]", "{}", def.op_type);
            let a = vec![ints("axes", &[-1]), int("keepdims", 0)];
            let out = infer(def, 11, a, vec![f32s("batchxseqx768")], 1).unwrap();
            assert_eq!(out_shape(&out), "[batch, seq]");
            // No axes: everything.
            let out = infer(def, 11, vec![int("keepdims", 0)], vec![f32s("bx3")], 1).unwrap();
            assert_eq!(out_shape(&out), "[]");
            let out = infer(def, 11, vec![], vec![f32s("bx3")], 1).unwrap();
            assert_eq!(out_shape(&out), "[1, 1]");
            assert_err(
                infer(def, 11, vec![ints("axes", &[2])], vec![f32s("bx3")], 1),
                def.op_type,
                &["axis 2 is out of range"],
            );
            assert_err(
                infer(def, 11, vec![ints("axes", &[1, -1])], vec![f32s("bx3")], 1),
                def.op_type,
                &["listed twice"],
            );
        }
    }

    #[test]
    fn axes_input_form_by_opset() {
        let axes = i64s("axes", &[1]);
        for (def, v) in ALL
            .iter()
            .map(|d| (*d, if d.op_type == "ReduceSum" { 13 } else { 18 }))
        {
            let n = node(def, 2, 1, vec![int("keepdims", 0)]);
            let ins = vec![f32s("batchx4x5"), t(DataType::I64, "1")];
            let out = run(def, &n, v, ins, vec![None, Some(&axes)]).unwrap();
            assert_eq!(out_shape(&out), "[batch, 5]", "{}", def.op_type);
            // Unknown axes value: with keepdims the rank stays, without it the axes' length
            // gives it.
            let ins = vec![f32s("batchx4x5"), t(DataType::I64, "2")];
            let out = run(def, &n, v, ins.clone(), vec![]).unwrap();
            assert_eq!(out_shape(&out), "[?]");
            let n2 = node(def, 2, 1, vec![]);
            let out = run(def, &n2, v, ins, vec![]).unwrap();
            assert_eq!(out_shape(&out), "[?, ?, ?]");
            // Axes omitted: all, or identity with noop_with_empty_axes.
            let out = infer(def, v, vec![], vec![f32s("batchx4")], 1).unwrap();
            assert_eq!(out_shape(&out), "[1, 1]");
            let a = vec![int("noop_with_empty_axes", 1)];
            let out = infer(def, v, a, vec![f32s("batchx4"), None], 1).unwrap();
            assert_eq!(out_shape(&out), "[batch, 4]");
            // The attribute is gone in the input form.
            assert_err(
                infer(def, v, vec![ints("axes", &[0])], vec![f32s("4")], 1),
                def.op_type,
                &["'axes' attribute", "input #1"],
            );
            // And the input does not exist before it.
            let ins = vec![f32s("batchx4"), t(DataType::I64, "1")];
            assert_err(
                infer(def, v - 1, vec![], ins, 1),
                def.op_type,
                &["has 2 inputs"],
            );
        }
    }

    #[test]
    fn argmax() {
        let out = infer(
            &ARG_MAX,
            13,
            vec![int("axis", -1)],
            vec![f32s("batchx1000")],
            1,
        );
        let out = out.unwrap();
        assert_eq!(out_shape(&out), "[batch, 1]");
        assert_eq!(out[0].dtype, Some(DataType::I64));
        let a = vec![int("keepdims", 0), int("select_last_index", 1)];
        let out = infer(&ARG_MAX, 13, a, vec![t(DataType::F16, "3xbatch")], 1).unwrap();
        assert_eq!(out_shape(&out), "[batch]");
        assert_err(
            infer(&ARG_MAX, 13, vec![int("axis", 2)], vec![f32s("3x4")], 1),
            "ArgMax",
            &["axis 2 is out of range for rank 2"],
        );
    }

    use kiln_core::DataType;
}
