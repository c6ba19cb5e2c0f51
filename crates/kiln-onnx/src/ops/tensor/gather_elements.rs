//! `GatherElements`: picks one element of `data` per element of `indices` along `axis`; the
//! output has the indices' shape.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__GatherElements.html>. Opset history: 11, 13
//! (types).

use crate::error::Result;
use crate::ops::util::normalize_axis;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "GatherElements",
    domain: "",
    since_opset: 11,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let data = ctx.required(0)?.clone();
    let indices = ctx.required(1)?.clone();
    let axis = ctx.node.attr_int("axis")?.unwrap_or(0);
    let rank = data
        .shape
        .as_ref()
        .or(indices.shape.as_ref())
        .map(|s| s.rank());
    if let (Some(d), Some(i)) = (&data.shape, &indices.shape)
        && d.rank() != i.rank()
    {
        return Err(ctx.err(
            format!("data {d} and indices {i} have different ranks"),
            "Give indices of the data's rank",
        ));
    }
    if let Some(r) = rank {
        normalize_axis(ctx, axis, r)?;
    }
    ctx.set_output(0, Fact::new(data.dtype, indices.shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;
    use kiln_core::DataType;

    #[test]
    fn indices_shape() {
        let n = node(
            "GatherElements",
            &["x", "i"],
            &["y"],
            vec![("axis", AttrValue::Int(-1))],
        );
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx10"), fact(DataType::I64, "batchx3")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx3")));
        assert_eq!(out[0].dtype, Some(DataType::F32));
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("2x10"), fact(DataType::I64, "3")],
                vec![],
            ),
            "ranks",
        );
        let n = node(
            "GatherElements",
            &["x", "i"],
            &["y"],
            vec![("axis", AttrValue::Int(2))],
        );
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("2x10"), fact(DataType::I64, "2x3")],
                vec![],
            ),
            "out of range",
        );
    }
}
