//! `Flatten`: a 2-D view, `[d0 * .. * d(axis-1), d(axis) * .. * dn]`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Flatten.html>. Opset history: 1 (`axis` in
//! `[0, rank]`, default 1), 9 (types), 11 (negative `axis`, counted from the back), 13, 21, 23,
//! 24, 25 (types only). Products of dims follow [`crate::ops::util::DimProduct`]: `[batch, 512,
//! 7, 7]` gives `[batch, 25088]`.

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{dim_product, same_type};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Flatten",
    domain: "",
    since_opset: 1,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let axis = ctx.node.attr_int("axis")?.unwrap_or(1);
    let shape = match ctx.required(0)?.shape.as_ref() {
        None => Shape(vec![Dim::Unknown, Dim::Unknown]),
        Some(s) => {
            let r = s.rank() as i64;
            let lo = if ctx.opset >= 11 { -r } else { 0 };
            if axis < lo || axis > r {
                return Err(ctx.err(
                    format!(
                        "axis {axis} is out of range for rank {r} (opset {})",
                        ctx.opset
                    ),
                    format!("Use an axis in [{lo}, {r}]"),
                ));
            }
            let a = if axis < 0 { axis + r } else { axis } as usize;
            let (head, tail) = s.dims().split_at(a.min(s.rank()));
            Shape(vec![dim_product(head), dim_product(tail)])
        }
    };
    ctx.set_output(0, same_type(ctx, 0, Some(shape)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    fn flat(opset: i64, axis: Option<i64>, x: &str) -> Result<Vec<crate::ops::Fact>> {
        let attrs = axis
            .map(|a| vec![("axis", AttrValue::Int(a))])
            .unwrap_or_default();
        run(
            &DEF,
            opset,
            &node("Flatten", &["x"], &["y"], attrs),
            vec![f32s(x)],
            vec![],
        )
    }

    #[test]
    fn flatten_symbolic_and_known() {
        let out = flat(13, None, "batchx512x7x7").unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx25088")));
        let out = flat(13, Some(0), "2x3").unwrap();
        assert_eq!(out[0].shape, Some(shape("1x6")));
        let out = flat(13, Some(2), "2x3").unwrap();
        assert_eq!(out[0].shape, Some(shape("6x1")));
        let out = flat(13, Some(-1), "batchx3x4").unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown, Dim::Known(4)])));
    }

    #[test]
    fn negative_axis_only_from_opset_11() {
        assert_err(flat(9, Some(-1), "2x3"), "out of range");
        assert_err(flat(13, Some(3), "2x3"), "out of range");
        assert_err(flat(13, Some(-3), "2x3"), "out of range");
    }
}
