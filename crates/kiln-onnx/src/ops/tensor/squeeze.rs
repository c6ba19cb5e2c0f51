//! `Squeeze`: removes dims of size 1 (those listed in `axes`, or all of them).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Squeeze.html>. Opset history: 1 (`axes`
//! attribute), 11 (negative axes), 13 (`axes` becomes an optional int64 input), 21, 23, 24, 25
//! (types only). Without axes, a dim that is not known to be 1 or not makes the rank unknown.
//! A rank-1 `sym_value` of one element becomes a scalar's.

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{IntsOperand, ints_operand, normalize_axes, same_type};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Squeeze",
    domain: "",
    since_opset: 1,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, if ctx.opset >= 13 { 2 } else { 1 })?;
    let data = ctx.required(0)?.clone();
    let axes = ints_operand(ctx, "axes", 1, 13)?;
    let shape = match (&data.shape, axes) {
        (None, _) | (_, IntsOperand::Unknown) => None,
        (Some(s), IntsOperand::Absent) => {
            if s.dims().iter().all(Dim::is_known) {
                Some(Shape(
                    s.dims()
                        .iter()
                        .filter(|d| **d != Dim::Known(1))
                        .cloned()
                        .collect(),
                ))
            } else {
                None
            }
        }
        (Some(s), IntsOperand::Known(axes)) => {
            let axes = normalize_axes(ctx, &axes, s.rank())?;
            let mut out = Vec::with_capacity(s.rank());
            for (i, d) in s.dims().iter().enumerate() {
                if !axes.contains(&i) {
                    out.push(d.clone());
                } else if let Dim::Known(n) = d
                    && *n != 1
                {
                    return Err(ctx.err(
                        format!("cannot squeeze axis {i} of {s}: its size is {n}, not 1"),
                        "Squeeze only axes of size 1",
                    ));
                }
            }
            Some(Shape(out))
        }
    };
    let mut fact = same_type(ctx, 0, shape);
    if let Some(sv) = &data.sym_value
        && sv.len() == 1
        && fact.shape.as_ref().is_some_and(|s| s.rank() == 0)
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
    use crate::ops::tensor::testutil::*;

    #[test]
    fn axes_attribute_before_13_input_after() {
        let n = node(
            "Squeeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![-1, 2]))],
        );
        let out = run(&DEF, 11, &n, vec![f32s("batchx3x1x1")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx3")));
        let t = ints(&[2, 3]);
        let n = node("Squeeze", &["x", "a"], &["y"], vec![]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx3x1x1"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx3")));
        // At 13 the attribute is not read: without the input every size-1 dim goes, but with
        // a symbolic dim the rank is unknown.
        let n = node(
            "Squeeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![2]))],
        );
        let out = run(&DEF, 13, &n, vec![f32s("batchx3x1x1")], vec![]).unwrap();
        assert_eq!(out[0].shape, None);
        let out = run(&DEF, 13, &n, vec![f32s("1x3x1x1")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("3")));
    }

    #[test]
    fn sym_value_to_scalar() {
        let n = node(
            "Squeeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![0]))],
        );
        let out = run(&DEF, 11, &n, vec![sym("batch")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(Shape::scalar()));
        assert_eq!(out[0].sym_value, Some(dims("batch")));
    }

    #[test]
    fn errors() {
        let n = node(
            "Squeeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![1]))],
        );
        assert_err(run(&DEF, 11, &n, vec![f32s("1x3")], vec![]), "not 1");
        let n = node(
            "Squeeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![2]))],
        );
        assert_err(run(&DEF, 11, &n, vec![f32s("1x3")], vec![]), "out of range");
        let n = node(
            "Squeeze",
            &["x"],
            &["y"],
            vec![("axes", AttrValue::Ints(vec![0, -2]))],
        );
        assert_err(run(&DEF, 11, &n, vec![f32s("1x3")], vec![]), "twice");
    }
}
