//! `Where`: `condition ? X : Y` elementwise, with numpy broadcasting of all three.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Where.html>. Opset history: 9, 16 (bfloat16).

use kiln_core::DataType;

use crate::error::Result;
use crate::ops::util::broadcast_all;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Where",
    domain: "",
    since_opset: 9,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(3, 3)?;
    let c = ctx.required(0)?.clone();
    let x = ctx.required(1)?.clone();
    let y = ctx.required(2)?.clone();
    if let Some(dt) = c.dtype
        && dt != DataType::Bool
    {
        return Err(ctx.err(
            format!("condition is {dt}"),
            "Give a bool condition (Cast it)",
        ));
    }
    if let (Some(a), Some(b)) = (x.dtype, y.dtype)
        && a != b
    {
        return Err(ctx.err(format!("X is {a} but Y is {b}"), "Give X and Y of one type"));
    }
    let shape = match (&c.shape, &x.shape, &y.shape) {
        (Some(a), Some(b), Some(d)) => Some(broadcast_all(ctx, [a, b, d])?),
        _ => None,
    };
    ctx.set_output(0, Fact::new(x.dtype.or(y.dtype), shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn broadcasts_three() {
        let n = node("Where", &["c", "x", "y"], &["z"], vec![]);
        let out = run(
            &DEF,
            16,
            &n,
            vec![
                fact(DataType::Bool, "1x1xseqxseq"),
                f32s("batchx8x1x1"),
                f32s(""),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0], f32s("batchx8xseqxseq").unwrap());
        assert_err(
            run(&DEF, 16, &n, vec![f32s("1"), f32s("1"), f32s("1")], vec![]),
            "condition",
        );
        assert_err(
            run(
                &DEF,
                16,
                &n,
                vec![fact(DataType::Bool, "2"), f32s("3"), f32s("1")],
                vec![],
            ),
            "broadcast",
        );
    }
}
