//! `Tile`: repeats a tensor `repeats[i]` times along each axis `i`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Tile.html>. Opset history: 1 (`tiles` and
//! `axis` inputs; not implemented), 6 (`repeats`: one int64 per axis), 13 (types).

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{DimProduct, same_type, shape_from_input};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Tile",
    domain: "",
    since_opset: 6,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let input = ctx.required(0)?.shape.clone();
    ctx.required(1)?;
    let repeats = shape_from_input(ctx, 1);
    if let (Some(s), Some(r)) = (&input, &repeats)
        && s.rank() != r.rank()
    {
        return Err(ctx.err(
            format!(
                "repeats has {} entries for an input of rank {}",
                r.rank(),
                s.rank()
            ),
            "Give one repeat count per axis",
        ));
    }
    let shape = match (input, repeats) {
        (Some(s), Some(r)) => Some(Shape(
            s.dims()
                .iter()
                .zip(r.dims())
                .map(|(d, k)| match k {
                    Dim::Known(1) => d.clone(),
                    Dim::Known(_) => DimProduct::of([d, k]).to_dim(),
                    _ => Dim::Unknown,
                })
                .collect(),
        )),
        (Some(s), None) => Some(Shape(vec![Dim::Unknown; s.rank()])),
        (None, r) => r.map(|r| Shape(vec![Dim::Unknown; r.rank()])),
    };
    ctx.set_output(0, same_type(ctx, 0, shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn repeats() {
        let n = node("Tile", &["x", "r"], &["y"], vec![]);
        let t = ints(&[1, 3]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx4"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx12")));
        let t = ints(&[2, 1]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx4"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown, Dim::Known(4)])));
        let t = ints(&[2]);
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("2x4"), fact_of(&t)],
                vec![None, Some(&t)],
            ),
            "repeats",
        );
    }
}
