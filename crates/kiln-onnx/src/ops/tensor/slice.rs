//! `Slice`: a strided window of a tensor along some axes.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Slice.html>. Opset history: 1 (`starts`, `ends`,
//! `axes` attributes, step 1), 10 (they become inputs, plus `steps`; negative steps), 11
//! (negative axes), 13 (types). Both forms are implemented. Starts and ends are clamped as the
//! spec says (so `INT64_MAX` means "to the end"); a symbolic dim sliced `[0:end]` with step 1
//! and `end` past any size stays symbolic, any other slice of it is unknown. A rank-1
//! `sym_value` is sliced along.

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{
    IntsOperand, MAX_SYM_LEN, ints_operand, normalize_axes, sym_input, sym_to_dims,
};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Slice",
    domain: "",
    since_opset: 1,
    infer,
};

/// The indices `start, start+step, ..` of a dim of size `n` (clamped as the spec says).
fn range(start: i64, end: i64, step: i64, n: usize) -> Vec<usize> {
    if n == 0 || n > MAX_SYM_LEN {
        return Vec::new();
    }
    let n = n as i128;
    let (s, e, st) = (start as i128, end as i128, step as i128);
    let s = if s < 0 { s + n } else { s };
    let e = if e < 0 { e + n } else { e };
    let (s, e) = if st > 0 {
        (s.clamp(0, n), e.clamp(0, n))
    } else {
        (s.clamp(0, n - 1), e.clamp(-1, n - 1))
    };
    let mut out = Vec::new();
    let mut i = s;
    while (st > 0 && i < e) || (st < 0 && i > e) {
        out.push(i as usize);
        i += st;
    }
    out
}

/// Length of the slice of a dim of size `n` without materialising it.
fn len(start: i64, end: i64, step: i64, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let n = n as i128;
    let (s, e, st) = (start as i128, end as i128, step as i128);
    let s = if s < 0 { s + n } else { s };
    let e = if e < 0 { e + n } else { e };
    let l = if st > 0 {
        let (s, e) = (s.clamp(0, n), e.clamp(0, n));
        (e - s + st - 1).div_euclid(st)
    } else {
        let (s, e) = (s.clamp(0, n - 1), e.clamp(-1, n - 1));
        (s - e - st - 1).div_euclid(-st)
    };
    l.max(0) as usize
}

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    let old = ctx.opset < 10;
    if old {
        ctx.expect_inputs(1, 1)?;
    } else {
        ctx.expect_inputs(3, 5)?;
        ctx.required(1)?;
        ctx.required(2)?;
    }
    let data = ctx.required(0)?.clone();
    let get = |name: &str, i: usize| -> Result<IntsOperand> {
        if old {
            ints_operand(ctx, name, i, i64::MAX)
        } else {
            ints_operand(ctx, name, i, 0)
        }
    };
    let starts = get("starts", 1)?;
    let ends = get("ends", 2)?;
    let axes = get("axes", 3)?;
    let steps = if old {
        IntsOperand::Absent
    } else {
        get("steps", 4)?
    };
    if old && (starts == IntsOperand::Absent || ends == IntsOperand::Absent) {
        return Err(ctx.err(
            "has no 'starts' or 'ends' attribute",
            "Give both (required before opset 10)",
        ));
    }
    let Some(s) = data.shape.as_ref() else {
        ctx.set_output(0, crate::ops::Fact::new(data.dtype, None));
        return Ok(());
    };
    let rank = s.rank();
    let (IntsOperand::Known(starts), IntsOperand::Known(ends)) = (&starts, &ends) else {
        // Values unknown: the sliced axes (all of them if unknown) lose their size.
        let mut dims = s.0.clone();
        match &axes {
            IntsOperand::Known(a) => {
                for ax in normalize_axes(ctx, a, rank)? {
                    if let Some(d) = dims.get_mut(ax) {
                        *d = Dim::Unknown;
                    }
                }
            }
            _ => dims = vec![Dim::Unknown; rank],
        }
        ctx.set_output(0, crate::ops::Fact::new(data.dtype, Some(Shape(dims))));
        return Ok(());
    };
    if starts.len() != ends.len() {
        return Err(ctx.err(
            format!(
                "starts has {} entries but ends has {}",
                starts.len(),
                ends.len()
            ),
            "Give one start and one end per sliced axis",
        ));
    }
    let k = starts.len();
    let axes: Vec<i64> = match axes {
        IntsOperand::Known(a) => a,
        IntsOperand::Absent => (0..k as i64).collect(),
        IntsOperand::Unknown => {
            ctx.set_output(
                0,
                crate::ops::Fact::new(data.dtype, Some(Shape(vec![Dim::Unknown; rank]))),
            );
            return Ok(());
        }
    };
    let steps: Vec<Option<i64>> = match steps {
        IntsOperand::Known(v) => v.into_iter().map(Some).collect(),
        IntsOperand::Absent => vec![Some(1); k],
        IntsOperand::Unknown => vec![None; k],
    };
    if axes.len() != k || steps.len() != k {
        return Err(ctx.err(
            format!(
                "starts, ends, axes and steps have {k}, {k}, {} and {} entries",
                axes.len(),
                steps.len()
            ),
            "Give one of each per sliced axis",
        ));
    }
    let axes = normalize_axes(ctx, &axes, rank)?;
    let mut dims = s.0.clone();
    let mut picks: Option<Vec<usize>> = None;
    for (j, &ax) in axes.iter().enumerate() {
        let (st, en, step) = match (starts.get(j), ends.get(j), steps.get(j)) {
            (Some(a), Some(b), Some(c)) => (*a, *b, *c),
            _ => continue,
        };
        let Some(d) = dims.get_mut(ax) else { continue };
        if step == Some(0) {
            return Err(ctx.err(format!("step of axis {ax} is 0"), "Use a step other than 0"));
        }
        let Some(step) = step else {
            *d = Dim::Unknown;
            continue;
        };
        *d = match d {
            Dim::Known(n) => {
                if ax == 0 && rank == 1 && *n <= MAX_SYM_LEN {
                    picks = Some(range(st, en, step, *n));
                }
                Dim::Known(len(st, en, step, *n))
            }
            Dim::Symbol(_) if st == 0 && step == 1 && en >= i32::MAX as i64 => d.clone(),
            _ => Dim::Unknown,
        };
    }
    let mut fact = crate::ops::Fact::new(data.dtype, Some(Shape(dims)));
    if let (Some(sv), Some(p)) = (sym_input(ctx, 0), picks)
        && p.len() <= MAX_SYM_LEN
    {
        let v: Option<Vec<_>> = p.iter().map(|&i| sv.get(i).cloned()).collect();
        fact.sym_value = v.map(|v| sym_to_dims(&v));
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
    use crate::tensor::Tensor;

    fn slice(
        x: Option<Fact>,
        s: &[i64],
        e: &[i64],
        a: Option<&[i64]>,
        st: Option<&[i64]>,
    ) -> Result<Vec<Fact>> {
        let ts: Vec<Tensor> = [Some(s), Some(e), a, st]
            .iter()
            .flatten()
            .map(|v| ints(v))
            .collect();
        let mut names = vec!["x", "s", "e"];
        if a.is_some() || st.is_some() {
            names.push(if a.is_some() { "a" } else { "" });
        }
        if st.is_some() {
            names.push("t");
        }
        let n = node("Slice", &names, &["y"], vec![]);
        let mut facts = vec![x];
        let mut consts = vec![None];
        let mut it = ts.iter();
        for name in &names[1..] {
            if name.is_empty() {
                facts.push(None);
                consts.push(None);
            } else if let Some(t) = it.next() {
                facts.push(fact_of(t));
                consts.push(Some(t));
            }
        }
        run(&DEF, 13, &n, facts, consts)
    }

    #[test]
    fn known_dims_with_clamping_and_negative_steps() {
        // An empty dim with a negative step must not panic.
        let out = slice(f32s("0x3"), &[-1], &[i64::MIN], None, Some(&[-1])).unwrap();
        assert_eq!(out[0].shape, Some(shape("0x3")));
        // A long 1-D tensor (no sym_value) is sliced without listing its indices.
        let out = slice(f32s("1000000000"), &[0], &[i64::MAX], None, Some(&[2])).unwrap();
        assert_eq!(out[0].shape, Some(shape("500000000")));
        let out = slice(f32s("10x20"), &[1], &[i64::MAX], Some(&[1]), None).unwrap();
        assert_eq!(out[0].shape, Some(shape("10x19")));
        let out = slice(f32s("10x20"), &[-3, 0], &[-1, 20], None, Some(&[1, 3])).unwrap();
        assert_eq!(out[0].shape, Some(shape("2x7")));
        let out = slice(f32s("10"), &[-1], &[i64::MIN], None, Some(&[-1])).unwrap();
        assert_eq!(out[0].shape, Some(shape("10")));
        let out = slice(f32s("10"), &[8], &[2], None, Some(&[-2])).unwrap();
        assert_eq!(out[0].shape, Some(shape("3")));
        let out = slice(f32s("10"), &[5], &[2], None, None).unwrap();
        assert_eq!(out[0].shape, Some(shape("0")));
    }

    #[test]
    fn symbolic_dims() {
        let out = slice(f32s("batchxseq"), &[0], &[i64::MAX], Some(&[1]), None).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchxseq")));
        let out = slice(f32s("batchxseq"), &[1], &[i64::MAX], Some(&[-1]), None).unwrap();
        assert_eq!(
            out[0].shape,
            Some(Shape(vec![Dim::symbol("batch"), Dim::Unknown]))
        );
    }

    #[test]
    fn sym_value_is_sliced() {
        let out = slice(sym("batchx3x224x224"), &[2], &[i64::MAX], None, None).unwrap();
        assert_eq!(out[0].sym_value, Some(dims("224x224")));
        let out = slice(sym("batchx3x224x224"), &[-1], &[0], None, Some(&[-2])).unwrap();
        assert_eq!(out[0].sym_value, Some(dims("224x3")));
    }

    #[test]
    fn attribute_form_before_10() {
        let n = node(
            "Slice",
            &["x"],
            &["y"],
            vec![
                ("starts", AttrValue::Ints(vec![1])),
                ("ends", AttrValue::Ints(vec![3])),
                ("axes", AttrValue::Ints(vec![1])),
            ],
        );
        let out = run(&DEF, 9, &n, vec![f32s("4x5")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("4x2")));
        let n = node(
            "Slice",
            &["x"],
            &["y"],
            vec![("starts", AttrValue::Ints(vec![1]))],
        );
        assert_err(run(&DEF, 9, &n, vec![f32s("4x5")], vec![]), "ends");
    }

    #[test]
    fn errors() {
        assert_err(
            slice(f32s("4"), &[0], &[1], Some(&[1]), None),
            "out of range",
        );
        assert_err(slice(f32s("4"), &[0], &[1], None, Some(&[0])), "step");
        assert_err(slice(f32s("4"), &[0, 1], &[1], None, None), "entries");
        let n = node("Slice", &["x", "s"], &["y"], vec![]);
        assert_err(
            run(&DEF, 13, &n, vec![f32s("4"), sym("0")], vec![]),
            "inputs",
        );
    }
}
