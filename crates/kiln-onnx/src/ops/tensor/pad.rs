//! `Pad`: adds `pads` elements before and after each axis (`[x1_begin, x2_begin, ..,
//! x1_end, x2_end, ..]`; negative values remove).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Pad.html>. Opset history: 1 (`paddings`
//! attribute), 2 (`pads` and `value` attributes), 11 (`pads` and `constant_value` become
//! inputs), 13 (types), 18 (optional `axes` input), 19 (`wrap` mode), 21, 23, 24, 25 (types).
//! Modes: `constant` (default), `reflect`, `edge`, `wrap`.

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{IntsOperand, ints_operand, normalize_axes, same_type};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Pad",
    domain: "",
    since_opset: 2,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    let max_inputs = match ctx.opset {
        ..11 => 1,
        11..18 => 3,
        _ => 4,
    };
    ctx.expect_inputs(1, max_inputs)?;
    let mode = ctx
        .node
        .attr_string("mode")?
        .unwrap_or_else(|| "constant".into());
    let modes: &[&str] = if ctx.opset >= 19 {
        &["constant", "reflect", "edge", "wrap"]
    } else {
        &["constant", "reflect", "edge"]
    };
    if !modes.contains(&mode.as_str()) {
        return Err(ctx.err(
            format!(
                "mode '{mode}' is not one of {modes:?} (opset {})",
                ctx.opset
            ),
            "Use one of the listed modes",
        ));
    }
    let input = ctx.required(0)?.shape.clone();
    let pads = ints_operand(ctx, "pads", 1, 11)?;
    if pads == IntsOperand::Absent {
        return Err(ctx.err(
            "has no pads",
            "Give the pads (attribute before opset 11, input from 11)",
        ));
    }
    let axes = if ctx.opset >= 18 {
        ints_operand(ctx, "axes", 3, 18)?
    } else {
        IntsOperand::Absent
    };
    let Some(s) = input else {
        ctx.set_output(0, same_type(ctx, 0, None));
        return Ok(());
    };
    let rank = s.rank();
    let (IntsOperand::Known(pads), axes) = (pads, axes) else {
        ctx.set_output(0, same_type(ctx, 0, Some(Shape(vec![Dim::Unknown; rank]))));
        return Ok(());
    };
    let axes: Vec<usize> = match axes {
        IntsOperand::Known(a) => normalize_axes(ctx, &a, rank)?,
        IntsOperand::Absent => (0..rank).collect(),
        IntsOperand::Unknown => {
            ctx.set_output(0, same_type(ctx, 0, Some(Shape(vec![Dim::Unknown; rank]))));
            return Ok(());
        }
    };
    let k = axes.len();
    if pads.len() != 2 * k {
        return Err(ctx.err(
            format!("pads has {} entries for {k} axes", pads.len()),
            "Give a begin and an end pad per axis",
        ));
    }
    let mut dims = s.0.clone();
    for (j, &ax) in axes.iter().enumerate() {
        let (Some(&b), Some(&e), Some(d)) = (pads.get(j), pads.get(j + k), dims.get_mut(ax)) else {
            continue;
        };
        *d = match d {
            Dim::Known(n) => {
                let v = (*n as i128) + b as i128 + e as i128;
                let v = usize::try_from(v).map_err(|_| {
                    ctx.err(
                        format!("pads {b} and {e} shrink axis {ax} of size {n} below 0"),
                        "Fix the pads",
                    )
                })?;
                Dim::Known(v)
            }
            _ if b == 0 && e == 0 => d.clone(),
            _ => Dim::Unknown,
        };
    }
    ctx.set_output(0, same_type(ctx, 0, Some(Shape(dims))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn attribute_before_11_input_after() {
        let n = node(
            "Pad",
            &["x"],
            &["y"],
            vec![("pads", AttrValue::Ints(vec![0, 0, 1, 2, 0, 0, 1, 2]))],
        );
        let out = run(&DEF, 2, &n, vec![f32s("batchx3x4x4")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx3x6x8")));
        let t = ints(&[0, 1, 0, -1]);
        let n = node(
            "Pad",
            &["x", "p"],
            &["y"],
            vec![("mode", AttrValue::String(b"reflect".to_vec()))],
        );
        let out = run(
            &DEF,
            11,
            &n,
            vec![f32s("4x5"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("4x5")));
        let n = node("Pad", &["x"], &["y"], vec![]);
        assert_err(run(&DEF, 11, &n, vec![f32s("4x5")], vec![]), "no pads");
    }

    #[test]
    fn axes_from_18_and_wrap_from_19() {
        let p = ints(&[1, 1]);
        let a = ints(&[-1]);
        let n = node(
            "Pad",
            &["x", "p", "", "a"],
            &["y"],
            vec![("mode", AttrValue::String(b"wrap".to_vec()))],
        );
        let out = run(
            &DEF,
            19,
            &n,
            vec![f32s("batchx5"), fact_of(&p), None, fact_of(&a)],
            vec![None, Some(&p), None, Some(&a)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx7")));
        assert_err(
            run(
                &DEF,
                18,
                &n,
                vec![f32s("batchx5"), fact_of(&p), None, fact_of(&a)],
                vec![None, Some(&p), None, Some(&a)],
            ),
            "wrap",
        );
    }

    #[test]
    fn errors() {
        let t = ints(&[0, -5]);
        let n = node("Pad", &["x", "p"], &["y"], vec![]);
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("4"), fact_of(&t)],
                vec![None, Some(&t)],
            ),
            "below 0",
        );
        let t = ints(&[0, 1, 2]);
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("4"), fact_of(&t)],
                vec![None, Some(&t)],
            ),
            "entries",
        );
    }
}
