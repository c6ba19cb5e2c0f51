//! `GatherND`: index tuples (the last dim of `indices`, length `k`) address the first `k`
//! dims of `data` after `batch_dims`; the output is
//! `indices.shape[..-1] ++ data.shape[batch_dims + k..]`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__GatherND.html>. Opset history: 11; 12
//! (`batch_dims`, default 0); 13 (types).

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "GatherND",
    domain: "",
    since_opset: 11,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let data = ctx.required(0)?.clone();
    let indices = ctx.required(1)?.clone();
    let b = ctx.node.attr_int("batch_dims")?.unwrap_or(0);
    let shape = match (&data.shape, &indices.shape) {
        (Some(d), Some(i)) => {
            let (r, q) = (d.rank(), i.rank());
            let b = usize::try_from(b)
                .ok()
                .filter(|&b| b < r.min(q))
                .ok_or_else(|| {
                    ctx.err(
                        format!("batch_dims {b} is not in [0, min(rank(data), rank(indices)))"),
                        "Use a batch_dims below both ranks",
                    )
                })?;
            match i.dims().last() {
                Some(Dim::Known(k)) => {
                    let k = *k;
                    if k == 0 || k > r - b {
                        return Err(ctx.err(
                            format!("indices' last dim is {k}; it must be in 1..={}", r - b),
                            "Give index tuples that address the data's leading dims",
                        ));
                    }
                    let mut dims: Vec<Dim> = i.dims()[..q - 1].to_vec();
                    dims.extend_from_slice(&d.dims()[b + k..]);
                    Some(Shape(dims))
                }
                _ => None,
            }
        }
        _ => None,
    };
    ctx.set_output(0, Fact::new(data.dtype, shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;
    use kiln_core::DataType;

    #[test]
    fn output_shapes() {
        let n = node("GatherND", &["x", "i"], &["y"], vec![]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx5x7"), fact(DataType::I64, "batchx3x2")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx3x7")));
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("4x5"), fact(DataType::I64, "3x3")],
                vec![],
            ),
            "last dim",
        );
    }
}
