//! `Expand`: broadcasts a tensor to a shape given as an int64 input (numpy rules, so the
//! result may be larger than the given shape).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Expand.html>. Opset history: 8, 13 (types).

use crate::error::Result;
use crate::ops::util::{broadcast, same_type, shape_from_input};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Expand",
    domain: "",
    since_opset: 8,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let input = ctx.required(0)?.shape.clone();
    ctx.required(1)?;
    let target = shape_from_input(ctx, 1);
    let shape = match (input, target) {
        (Some(a), Some(b)) => Some(broadcast(ctx, &a, &b)?),
        _ => None,
    };
    ctx.set_output(0, same_type(ctx, 0, shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;
    use kiln_core::{Dim, Shape};

    #[test]
    fn broadcast_to_shape() {
        let n = node("Expand", &["x", "s"], &["y"], vec![]);
        let t = ints(&[2, 1, 6]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("3x1"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("2x3x6")));
        let out = run(&DEF, 13, &n, vec![f32s("1x4"), sym("batchx1")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx4")));
        // Values unknown, length known: rank known.
        let mut s = sym("?x?");
        if let Some(f) = s.as_mut() {
            f.sym_value = None;
        }
        let out = run(&DEF, 13, &n, vec![f32s("1x4"), s], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown, Dim::Known(4)])));
        let t = ints(&[3, 5]);
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("3x4"), fact_of(&t)],
                vec![None, Some(&t)],
            ),
            "broadcast",
        );
    }
}
