//! `Unsqueeze`: inserts dims of size 1 at `axes` (positions in the output).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Unsqueeze.html>. Opset history: 1 (`axes`
//! attribute), 11 (negative axes), 13 (`axes` becomes a required int64 input), 21, 23, 24, 25
//! (types only). A scalar's `sym_value` carries over to the rank-1 result (torch's
//! `Gather -> Unsqueeze -> Concat` shape chains).

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{IntsOperand, ints_operand, normalize_axes, same_type};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Unsqueeze",
    domain: "",
    since_opset: 1,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    if ctx.opset >= 13 {
        ctx.expect_inputs(2, 2)?;
        ctx.required(1)?;
    } else {
        ctx.expect_inputs(1, 1)?;
    }
    let data = ctx.required(0)?.clone();
    let shape = match ints_operand(ctx, "axes", 1, 13)? {
        IntsOperand::Absent => {
            return Err(ctx.err(
                "has no axes",
                "Give the axes to insert (attribute before opset 13, input from 13)",
            ));
        }
        IntsOperand::Unknown => None,
        IntsOperand::Known(axes) => match &data.shape {
            None => None,
            Some(s) => {
                let rank = s.rank() + axes.len();
                let axes = normalize_axes(ctx, &axes, rank)?;
                let mut src = s.dims().iter();
                let dims = (0..rank)
                    .map(|i| {
                        if axes.contains(&i) {
                            Dim::Known(1)
                        } else {
                            src.next().cloned().unwrap_or(Dim::Unknown)
                        }
                    })
                    .collect();
                Some(Shape(dims))
            }
        },
    };
    let mut fact = same_type(ctx, 0, shape);
    if let Some(sv) = &data.sym_value
        && fact.shape.as_ref().is_some_and(|s| s.rank() == 1)
    {
        fact.sym_value = Some(sv.clone());
    }
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::Fact;
    use crate::ops::tensor::testutil::*;
    use kiln_core::DataType;

    #[test]
    fn attribute_and_input_forms() {
        let n = node(
            "Unsqueeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![0, -1]))],
        );
        let out = run(&DEF, 11, &n, vec![f32s("batchx3")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("1xbatchx3x1")));
        let t = ints(&[1]);
        let n = node("Unsqueeze", &["x", "a"], &["y"], vec![]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx3"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx1x3")));
        // Axes not known before run time: shape unknown.
        let out = run(&DEF, 13, &n, vec![f32s("batchx3"), sym("?")], vec![]).unwrap();
        assert_eq!(out[0].shape, None);
    }

    #[test]
    fn scalar_sym_value_becomes_rank_one() {
        let mut s = Fact::tensor(DataType::I64, Shape::scalar());
        s.sym_value = Some(dims("batch"));
        let n = node(
            "Unsqueeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![0]))],
        );
        let out = run(&DEF, 11, &n, vec![Some(s)], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("1")));
        assert_eq!(out[0].sym_value, Some(dims("batch")));
    }

    #[test]
    fn errors() {
        let n = node(
            "Unsqueeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![3]))],
        );
        assert_err(run(&DEF, 11, &n, vec![f32s("2x3")], vec![]), "out of range");
        let n = node("Unsqueeze", &["x"], &["y"], vec![]);
        assert_err(run(&DEF, 11, &n, vec![f32s("2x3")], vec![]), "no axes");
        assert_err(run(&DEF, 13, &n, vec![f32s("2x3")], vec![]), "inputs");
    }
}
