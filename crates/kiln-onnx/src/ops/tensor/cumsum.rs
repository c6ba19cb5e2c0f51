//! `CumSum`: running sums along the axis given by a scalar input (`exclusive` and `reverse`
//! attributes change the values, not the shape).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__CumSum.html>. Opset history: 11, 14 (types).

use crate::error::Result;
use crate::ops::util::{const_ints, normalize_axis};
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "CumSum",
    domain: "",
    since_opset: 11,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let x = ctx.required(0)?.clone();
    ctx.required(1)?;
    if let Some(s) = ctx.input_shape(1)
        && s.rank() > 1
    {
        return Err(ctx.err(format!("axis has shape {s}"), "Give the axis as a scalar"));
    }
    if let (Some(s), Some(axis)) = (&x.shape, const_ints(ctx, 1)?) {
        match axis.as_slice() {
            [a] => {
                normalize_axis(ctx, *a, s.rank())?;
            }
            _ => return Err(ctx.err("axis is not one value", "Give the axis as a scalar")),
        }
    }
    ctx.set_output(0, Fact::new(x.dtype, x.shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;
    use crate::tensor::Tensor;

    #[test]
    fn axis_checked() {
        let n = node("CumSum", &["x", "a"], &["y"], vec![]);
        let t = Tensor::scalar("a", -1i64);
        let out = run(
            &DEF,
            14,
            &n,
            vec![f32s("batchx5"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0], f32s("batchx5").unwrap());
        let t = Tensor::scalar("a", 2i32);
        assert_err(
            run(
                &DEF,
                14,
                &n,
                vec![f32s("batchx5"), fact_of(&t)],
                vec![None, Some(&t)],
            ),
            "out of range",
        );
    }
}
