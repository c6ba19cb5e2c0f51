//! `Split`: cuts a tensor into parts along `axis`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Split.html>. Opset history: 1 (`split` as an
//! attribute or a second input; not implemented), 2 (`split` attribute, default: equal parts,
//! one per output), 11 (negative axis), 13 (`split` becomes an optional int64 input), 18
//! (`num_outputs` attribute: equal parts, the last one smaller when the size does not divide).

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{IntsOperand, ints_operand, normalize_axis};
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Split",
    domain: "",
    since_opset: 2,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, if ctx.opset >= 13 { 2 } else { 1 })?;
    let data = ctx.required(0)?.clone();
    let outs = ctx.num_outputs();
    if outs == 0 {
        return Err(ctx.err("has no outputs", "Give Split at least one output"));
    }
    let axis = ctx.node.attr_int("axis")?.unwrap_or(0);
    let num_outputs = if ctx.opset >= 18 {
        ctx.node.attr_int("num_outputs")?
    } else {
        None
    };
    let split = ints_operand(ctx, "split", 1, 13)?;
    if let Some(k) = num_outputs {
        if k < 1 || k as usize != outs {
            return Err(ctx.err(
                format!("num_outputs is {k} but the node has {outs} outputs"),
                "Make num_outputs equal to the number of outputs",
            ));
        }
        if split != IntsOperand::Absent {
            return Err(ctx.err("has both num_outputs and split", "Give only one of them"));
        }
    }
    if let IntsOperand::Known(v) = &split
        && v.len() != outs
    {
        return Err(ctx.err(
            format!("split {v:?} has {} entries for {outs} outputs", v.len()),
            "Give one size per output",
        ));
    }
    let Some(s) = data.shape.as_ref() else {
        for i in 0..outs {
            ctx.set_output(i, Fact::new(data.dtype, None));
        }
        return Ok(());
    };
    let ax = normalize_axis(ctx, axis, s.rank())?;
    let dim = s.dims().get(ax).cloned().unwrap_or(Dim::Unknown);
    let sizes: Vec<Dim> = match (&split, &dim) {
        (IntsOperand::Known(v), _) => {
            let mut sizes = Vec::with_capacity(v.len());
            for &x in v {
                let x = usize::try_from(x).map_err(|_| {
                    ctx.err(format!("split {v:?} has a negative size"), "Use sizes >= 0")
                })?;
                sizes.push(Dim::Known(x));
            }
            let total: Option<usize> = sizes
                .iter()
                .filter_map(Dim::known)
                .try_fold(0usize, |a, b| a.checked_add(b));
            if let (Dim::Known(n), Some(t)) = (&dim, total)
                && *n != t
            {
                return Err(ctx.err(
                    format!("split {v:?} adds up to {t} but axis {ax} of {s} is {n}"),
                    "Make the sizes add up to the axis's size",
                ));
            }
            sizes
        }
        (IntsOperand::Unknown, _) => vec![Dim::Unknown; outs],
        (IntsOperand::Absent, Dim::Known(n)) => {
            let n = *n;
            if n % outs == 0 {
                vec![Dim::Known(n / outs); outs]
            } else if num_outputs.is_some() {
                let chunk = n.div_ceil(outs);
                let rest = chunk
                    .checked_mul(outs - 1)
                    .and_then(|used| n.checked_sub(used))
                    .ok_or_else(|| {
                        ctx.err(
                            format!("axis {ax} of size {n} cannot be cut into {outs} parts"),
                            "Use fewer outputs",
                        )
                    })?;
                let mut v = vec![Dim::Known(chunk); outs - 1];
                v.push(Dim::Known(rest));
                v
            } else {
                return Err(ctx.err(
                    format!("axis {ax} of {s} (size {n}) does not split into {outs} equal parts"),
                    "Give the split sizes, or use a number of outputs that divides the size",
                ));
            }
        }
        (IntsOperand::Absent, d) if outs == 1 => vec![d.clone()],
        (IntsOperand::Absent, _) => vec![Dim::Unknown; outs],
    };
    for (i, d) in sizes.into_iter().enumerate() {
        let mut dims = s.0.clone();
        if let Some(slot) = dims.get_mut(ax) {
            *slot = d;
        }
        ctx.set_output(i, Fact::new(data.dtype, Some(Shape(dims))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn equal_parts_and_attribute_split() {
        let n = node(
            "Split",
            &["x"],
            &["a", "b"],
            vec![("axis", AttrValue::Int(-1))],
        );
        let out = run(&DEF, 11, &n, vec![f32s("batchx6")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx3")));
        assert_eq!(out[1].shape, Some(shape("batchx3")));
        let n = node(
            "Split",
            &["x"],
            &["a", "b"],
            vec![
                ("axis", AttrValue::Int(1)),
                ("split", AttrValue::Ints(vec![2, 4])),
            ],
        );
        let out = run(&DEF, 11, &n, vec![f32s("batchx6")], vec![]).unwrap();
        assert_eq!(out[1].shape, Some(shape("batchx4")));
        assert_err(
            run(&DEF, 11, &n, vec![f32s("batchx7")], vec![]),
            "adds up to",
        );
    }

    #[test]
    fn split_input_from_13_and_num_outputs_from_18() {
        let t = ints(&[1, 5]);
        let n = node(
            "Split",
            &["x", "s"],
            &["a", "b"],
            vec![("axis", AttrValue::Int(1))],
        );
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("2x6"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("2x1")));
        assert_eq!(out[1].shape, Some(shape("2x5")));
        let n = node(
            "Split",
            &["x"],
            &["a", "b", "c"],
            vec![("num_outputs", AttrValue::Int(3))],
        );
        let out = run(&DEF, 18, &n, vec![f32s("7")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("3")));
        assert_eq!(out[2].shape, Some(shape("1")));
        // Without num_outputs an uneven split is an error.
        let n = node("Split", &["x"], &["a", "b", "c"], vec![]);
        assert_err(run(&DEF, 18, &n, vec![f32s("7")], vec![]), "equal parts");
        let n = node(
            "Split",
            &["x"],
            &["a", "b"],
            vec![("num_outputs", AttrValue::Int(3))],
        );
        assert_err(run(&DEF, 18, &n, vec![f32s("6")], vec![]), "num_outputs");
    }

    #[test]
    fn symbolic_axis() {
        let n = node("Split", &["x"], &["a", "b"], vec![]);
        let out = run(&DEF, 13, &n, vec![f32s("batchx6")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown, Dim::Known(6)])));
        let n = node(
            "Split",
            &["x"],
            &["a", "b"],
            vec![("axis", AttrValue::Int(2))],
        );
        assert_err(
            run(&DEF, 13, &n, vec![f32s("batchx6")], vec![]),
            "out of range",
        );
    }
}
