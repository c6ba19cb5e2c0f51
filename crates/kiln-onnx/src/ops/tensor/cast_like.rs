//! `CastLike`: converts elements to the type of a second input.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__CastLike.html>. Opset history: 15, 19
//! (`saturate`), 21, 23, 24, 25 (types).

use crate::error::Result;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "CastLike",
    domain: "",
    since_opset: 15,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let x = ctx.required(0)?.clone();
    let dtype = ctx.required(1)?.dtype;
    let mut fact = Fact::new(dtype, x.shape);
    if let (Some(from), Some(to)) = (x.dtype, dtype)
        && from.is_integer()
        && to.is_integer()
    {
        fact.sym_value = x.sym_value;
    }
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;
    use kiln_core::DataType;

    #[test]
    fn takes_the_target_type() {
        let n = node("CastLike", &["x", "t"], &["y"], vec![]);
        let out = run(
            &DEF,
            15,
            &n,
            vec![f32s("batchx3"), fact(DataType::BF16, "")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0], fact(DataType::BF16, "batchx3").unwrap());
        assert_err(
            run(
                &DEF,
                15,
                &node("CastLike", &["x"], &["y"], vec![]),
                vec![f32s("1")],
                vec![],
            ),
            "inputs",
        );
    }
}
