//! `Transpose`: permutes the dims (`perm`, default: reversed).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Transpose.html>. Opset history: 1, 13, 21, 23,
//! 24, 25 (types only).

use kiln_core::Shape;

use crate::error::Result;
use crate::ops::util::same_type;
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Transpose",
    domain: "",
    since_opset: 1,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let shape = ctx.required(0)?.shape.clone();
    let perm = ctx.node.attr_ints("perm")?.map(<[i64]>::to_vec);
    let out = match (shape, perm) {
        (None, None) => None,
        (None, Some(p)) => {
            check_perm(ctx, &p, p.len())?;
            Some(Shape(vec![kiln_core::Dim::Unknown; p.len()]))
        }
        (Some(s), None) => Some(Shape(s.0.into_iter().rev().collect())),
        (Some(s), Some(p)) => {
            let idx = check_perm(ctx, &p, s.rank())?;
            Some(Shape(
                idx.iter().filter_map(|&i| s.0.get(i).cloned()).collect(),
            ))
        }
    };
    ctx.set_output(0, same_type(ctx, 0, out));
    Ok(())
}

fn check_perm(ctx: &InferCtx<'_>, p: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(rank);
    let bad = || {
        ctx.err(
            format!("perm {p:?} is not a permutation of 0..{rank}"),
            "List each axis of the input exactly once in perm",
        )
    };
    if p.len() != rank {
        return Err(bad());
    }
    for &a in p {
        let i = usize::try_from(a).map_err(|_| bad())?;
        match seen.get_mut(i) {
            Some(s) if !*s => *s = true,
            _ => return Err(bad()),
        }
        out.push(i);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn perm_and_default() {
        let n = node(
            "Transpose",
            &["x"],
            &["y"],
            vec![("perm", AttrValue::Ints(vec![0, 2, 1]))],
        );
        let out = run(&DEF, 13, &n, vec![f32s("batchx3x4")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx4x3")));
        let n = node("Transpose", &["x"], &["y"], vec![]);
        let out = run(&DEF, 13, &n, vec![f32s("batchx3x4")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("4x3xbatch")));
    }

    #[test]
    fn bad_perm() {
        for p in [vec![0, 0, 1], vec![0, 1], vec![0, 1, 3], vec![-1, 0, 1]] {
            let n = node(
                "Transpose",
                &["x"],
                &["y"],
                vec![("perm", AttrValue::Ints(p))],
            );
            assert_err(
                run(&DEF, 13, &n, vec![f32s("2x3x4")], vec![]),
                "permutation",
            );
        }
    }
}
