//! `Trilu`: keeps the upper (`upper = 1`, default) or lower triangle of the last two dims,
//! shifted by the optional diagonal offset `k`; the shape is the input's.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Trilu.html>. Opset history: 14.

use crate::error::Result;
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Trilu",
    domain: "",
    since_opset: 14,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 2)?;
    let x = ctx.required(0)?.clone();
    if let Some(s) = &x.shape
        && s.rank() < 2
    {
        return Err(ctx.err(
            format!("input {s} has rank below 2"),
            "Give a matrix or a batch of matrices",
        ));
    }
    if let Some(s) = ctx.input_shape(1)
        && s.rank() != 0
    {
        return Err(ctx.err(format!("k has shape {s}"), "Give k as an int64 scalar"));
    }
    ctx.set_output(0, crate::ops::Fact::new(x.dtype, x.shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn same_shape() {
        let n = node("Trilu", &["x", "k"], &["y"], vec![]);
        let out = run(
            &DEF,
            14,
            &n,
            vec![f32s("seqxseq"), fact(kiln_core::DataType::I64, "")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0], f32s("seqxseq").unwrap());
        assert_err(
            run(&DEF, 14, &n, vec![f32s("4"), None], vec![]),
            "rank below 2",
        );
        assert_err(
            run(&DEF, 14, &n, vec![f32s("4x4"), sym("1")], vec![]),
            "k has shape",
        );
    }
}
