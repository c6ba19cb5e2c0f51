//! `Concat`: joins tensors along `axis`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Concat.html>. Opset history: 1 (`axis` optional,
//! default 1; not implemented), 4 (`axis` required), 11 (negative axis), 13 (types). The dims
//! off the axis must agree; the axis dim is the sum (a lone symbol plus zeros stays a symbol).
//! Rank-1 inputs whose values are known (constants or `sym_value`s) give a `sym_value`.

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{MAX_SYM_LEN, normalize_axis, sym_input, sym_to_dims};
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Concat",
    domain: "",
    since_opset: 4,
    infer,
};

/// Two dims that must be equal: the better-known one, or an error if both are known and differ.
fn unify(ctx: &InferCtx<'_>, a: &Dim, b: &Dim, axis: usize) -> Result<Dim> {
    Ok(match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => {
            return Err(ctx.err(
                format!("inputs differ in dim {axis} ({x} vs {y}), which is not the concat axis"),
                "Concatenate tensors whose other dims are equal",
            ));
        }
        (Dim::Known(_), _) => a.clone(),
        (_, Dim::Known(_)) => b.clone(),
        (Dim::Symbol(x), Dim::Symbol(y)) if x == y => a.clone(),
        (Dim::Unknown, _) => b.clone(),
        (_, Dim::Unknown) => a.clone(),
        _ => a.clone(),
    })
}

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    let n = ctx.num_inputs();
    ctx.expect_inputs(1, usize::MAX)?;
    let axis = ctx.node.attr_int("axis")?.ok_or_else(|| {
        ctx.err(
            "has no 'axis' attribute",
            "Set axis (required since opset 4)",
        )
    })?;
    let mut dtype = None;
    let mut shapes = Vec::with_capacity(n);
    for i in 0..n {
        let f = ctx.required(i)?;
        dtype = dtype.or(f.dtype);
        shapes.push(f.shape.clone());
    }
    let rank = shapes.iter().flatten().map(Shape::rank).next();
    let shape = match rank {
        None => None,
        Some(rank) => {
            let ax = normalize_axis(ctx, axis, rank)?;
            let mut dims = vec![Dim::Unknown; rank];
            let (mut sum, mut syms, mut exact) = (0usize, Vec::new(), true);
            for s in &shapes {
                let Some(s) = s else {
                    exact = false;
                    continue;
                };
                if s.rank() != rank {
                    return Err(ctx.err(
                        format!("inputs have ranks {rank} and {}", s.rank()),
                        "Concatenate tensors of one rank",
                    ));
                }
                for (i, d) in s.dims().iter().enumerate() {
                    if i == ax {
                        match d {
                            Dim::Known(k) => match sum.checked_add(*k) {
                                Some(v) => sum = v,
                                None => exact = false,
                            },
                            Dim::Symbol(x) => syms.push(x.clone()),
                            Dim::Unknown => exact = false,
                        }
                    } else if let Some(slot) = dims.get_mut(i) {
                        *slot = unify(ctx, slot, d, i)?;
                    }
                }
            }
            if let Some(slot) = dims.get_mut(ax) {
                *slot = match (exact, syms.as_slice()) {
                    (true, []) => Dim::Known(sum),
                    (true, [x]) if sum == 0 => Dim::Symbol(x.clone()),
                    _ => Dim::Unknown,
                };
            }
            Some(Shape(dims))
        }
    };
    let mut fact = Fact::new(dtype, shape);
    if rank == Some(1) {
        let mut all = Vec::new();
        for i in 0..n {
            match sym_input(ctx, i) {
                Some(v) => all.extend(v),
                None => {
                    all.clear();
                    break;
                }
            }
        }
        if (!all.is_empty() || n == 0) && all.len() <= MAX_SYM_LEN {
            fact.sym_value = Some(sym_to_dims(&all));
        }
    }
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    fn concat(axis: i64, inputs: &[Option<Fact>]) -> Result<Vec<Fact>> {
        let names: Vec<String> = (0..inputs.len()).map(|i| format!("x{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let n = node(
            "Concat",
            &refs,
            &["y"],
            vec![("axis", AttrValue::Int(axis))],
        );
        run(&DEF, 13, &n, inputs.to_vec(), vec![])
    }

    #[test]
    fn sums_axis_and_unifies_others() {
        let out = concat(1, &[f32s("batchx3x4"), f32s("?x5x4")]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx8x4")));
        let out = concat(-1, &[f32s("2xseq"), f32s("2x0")]).unwrap();
        assert_eq!(out[0].shape, Some(shape("2xseq")));
        let out = concat(0, &[f32s("2x3"), f32s("batchx3")]).unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown, Dim::Known(3)])));
    }

    #[test]
    fn sym_values_concatenate() {
        let t = ints(&[-1]);
        let n = node(
            "Concat",
            &["a", "b"],
            &["y"],
            vec![("axis", AttrValue::Int(0))],
        );
        let out = run(
            &DEF,
            13,
            &n,
            vec![sym("batch"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("2")));
        // -1 is not a dim: it is kept as unknown.
        assert_eq!(
            out[0].sym_value,
            Some(vec![Dim::symbol("batch"), Dim::Unknown])
        );
        let out = concat(0, &[sym("batch"), f32s("1")]).unwrap();
        assert_eq!(out[0].sym_value, None);
    }

    #[test]
    fn errors() {
        assert_err(concat(0, &[f32s("2x3"), f32s("2x4")]), "dim 1");
        assert_err(concat(2, &[f32s("2x3"), f32s("2x4")]), "out of range");
        assert_err(concat(0, &[f32s("2x3"), f32s("2")]), "ranks");
        let n = node("Concat", &["a"], &["y"], vec![]);
        assert_err(run(&DEF, 13, &n, vec![f32s("2")], vec![]), "axis");
    }
}
