//! [TopK](https://onnx.ai/onnx/operators/onnx__TopK.html): 1, 10, 11, 24.
//!
//! The k largest (or smallest) elements along `axis` (default -1): Values of X's type and
//! Indices of int64, both X's shape with the axis dim set to k. Up to 9, k is the `k`
//! attribute; from 10, the second input (a 1-element int64 tensor). 11 adds `largest` and
//! `sorted` (values only) and negative axes; 24 widens the types. k is taken from a constant
//! input, or from a symbolic value (a dim computed by `Shape -> Gather`); otherwise the axis
//! dim is unknown.

use kiln_core::{DataType, Dim, Shape};

use super::common::{expect_outputs, flag_attr, input_as_dims, int_attr, to_size};
use crate::error::Result;
use crate::ops::util::normalize_axis;
use crate::ops::{Fact, InferCtx, OpDef};

fn read_k(ctx: &InferCtx<'_>) -> Result<Dim> {
    if ctx.opset < 10 {
        ctx.expect_inputs(1, 1)?;
        let Some(k) = ctx.node.attr_int("k")? else {
            return Err(ctx.err(
                "attribute 'k' is missing",
                "TopK before opset 10 needs the 'k' attribute",
            ));
        };
        return Ok(Dim::Known(to_size(ctx, k, "attribute 'k'")?));
    }
    ctx.expect_inputs(2, 2)?;
    ctx.required(1)?;
    if let Some(s) = ctx.input_shape(1)
        && s.element_count().ok().flatten().is_some_and(|n| n != 1)
    {
        return Err(ctx.err(
            format!("K (input #1) has shape {s}; it must hold one value"),
            "Give K as a 1-element int64 tensor",
        ));
    }
    Ok(match input_as_dims(ctx, 1, "K")?.as_deref() {
        Some([k]) => k.clone(),
        _ => Dim::Unknown,
    })
}

fn infer_topk(ctx: &mut InferCtx<'_>) -> Result<()> {
    expect_outputs(ctx, 2, 2)?;
    let k = read_k(ctx)?;
    let axis = int_attr(ctx, "axis", -1)?;
    flag_attr(ctx, "largest", true)?;
    flag_attr(ctx, "sorted", true)?;
    let x = ctx.required(0)?.clone();
    let shape = match &x.shape {
        None => None,
        Some(s) => {
            let a = normalize_axis(ctx, axis, s.rank())?;
            let mut dims = s.0.clone();
            if let (Some(Dim::Known(n)), Dim::Known(kv)) = (dims.get(a), &k)
                && kv > n
            {
                return Err(ctx.err(
                    format!("k = {kv} is larger than the axis' size {n}"),
                    "Use a k no larger than the dim along 'axis'",
                ));
            }
            if let Some(slot) = dims.get_mut(a) {
                *slot = k;
            }
            Some(Shape(dims))
        }
    };
    ctx.set_output(0, Fact::new(x.dtype, shape.clone()));
    ctx.set_output(1, Fact::new(Some(DataType::I64), shape));
    Ok(())
}

/// `TopK`
pub(super) const TOPK: OpDef = OpDef {
    op_type: "TopK",
    domain: "",
    since_opset: 1,
    infer: infer_topk,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nn::test_util::*;

    #[test]
    fn k_from_constant_symbol_or_attribute() {
        let n = node(&TOPK, 2, 2, vec![]);
        let k = i64s("k", &[5]);
        let ins = || vec![f32s("batchx1000"), t(DataType::I64, "1")];
        let out = run(&TOPK, &n, 11, ins(), vec![None, Some(&k)]).unwrap();
        assert_eq!(out_shape(&out), "[batch, 5]");
        assert_eq!(out[0].dtype, Some(DataType::F32));
        assert_eq!(out[1].dtype, Some(DataType::I64));
        assert_eq!(out[1].shape, out[0].shape);
        // Not constant: unknown dim.
        let out = run(&TOPK, &n, 11, ins(), vec![]).unwrap();
        assert_eq!(out_shape(&out), "[batch, ?]");
        // A symbolic K (e.g. from Shape): the symbol.
        let ins = vec![f32s("batchxseq"), sym(vec![Dim::symbol("seq")])];
        let out = run(&TOPK, &n, 11, ins, vec![]).unwrap();
        assert_eq!(out_shape(&out), "[batch, seq]");
        // Opset 1-9: the attribute, with a positive axis.
        let a = vec![int("k", 3), int("axis", 0)];
        let out = infer(&TOPK, 9, a, vec![f32s("10xbatch")], 2).unwrap();
        assert_eq!(out_shape(&out), "[3, batch]");
    }

    #[test]
    fn topk_errors() {
        let n = node(&TOPK, 2, 2, vec![]);
        let k = i64s("k", &[50]);
        let ins = vec![f32s("bx10"), t(DataType::I64, "1")];
        assert_err(
            run(&TOPK, &n, 11, ins, vec![None, Some(&k)]),
            "TopK",
            &["k = 50", "10"],
        );
        let k = i64s("k", &[-1]);
        let ins = vec![f32s("bx10"), t(DataType::I64, "1")];
        assert_err(
            run(&TOPK, &n, 11, ins, vec![None, Some(&k)]),
            "TopK",
            &["negative"],
        );
        assert_err(
            infer(&TOPK, 9, vec![], vec![f32s("10")], 2),
            "TopK",
            &["'k' is missing"],
        );
        assert_err(
            infer(&TOPK, 11, vec![], vec![f32s("10")], 2),
            "TopK",
            &["has 1 inputs"],
        );
        let ins = vec![f32s("bx10"), t(DataType::I64, "2")];
        assert_err(infer(&TOPK, 11, vec![], ins, 2), "TopK", &["one value"]);
        let ins = vec![f32s("bx10"), t(DataType::I64, "1")];
        assert_err(
            infer(&TOPK, 11, vec![int("axis", 2)], ins.clone(), 2),
            "TopK",
            &["axis 2"],
        );
        assert_err(infer(&TOPK, 11, vec![], ins, 1), "TopK", &["has 1 outputs"]);
    }
}
