//! `Shape`: the shape of a tensor as a 1-D int64 tensor.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Shape.html>. Opset history: 1, 13 (types),
//! 15 (`start` / `end` attributes select a range of dims, negative values count from the back,
//! both clamped to `[0, rank]`), 19, 21, 23, 24, 25 (types only).
//!
//! The output's `sym_value` is the selected dims themselves, so `Shape` of `[batch, 3]` is known
//! to hold `[batch, 3]`.

use kiln_core::{DataType, Dim, Shape};

use crate::error::Result;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Shape",
    domain: "",
    since_opset: 1,
    infer,
};

fn clamp(v: i64, rank: i64) -> usize {
    let v = if v < 0 { v.saturating_add(rank) } else { v };
    v.clamp(0, rank) as usize
}

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let (start, end) = if ctx.opset >= 15 {
        (
            ctx.node.attr_int("start")?.unwrap_or(0),
            ctx.node.attr_int("end")?,
        )
    } else {
        (0, None)
    };
    let fact = match ctx.required(0)?.shape.as_ref() {
        Some(s) => {
            let rank = s.rank() as i64;
            let a = clamp(start, rank);
            let b = clamp(end.unwrap_or(rank), rank).max(a);
            let dims = s.dims().get(a..b).unwrap_or_default().to_vec();
            let mut f = Fact::tensor(DataType::I64, Shape::from_known(&[dims.len()]));
            f.sym_value = Some(dims);
            f
        }
        None => Fact::tensor(DataType::I64, Shape(vec![Dim::Unknown])),
    };
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn shape_of_symbolic_tensor() {
        let n = node("Shape", &["x"], &["s"], vec![]);
        let out = run(&DEF, 13, &n, vec![f32s("batchx3x?")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("3")));
        assert_eq!(out[0].dtype, Some(DataType::I64));
        assert_eq!(out[0].sym_value, Some(dims("batchx3x?")));
    }

    #[test]
    fn start_end_from_opset_15() {
        let attrs = || vec![("start", AttrValue::Int(1)), ("end", AttrValue::Int(-1))];
        let n = node("Shape", &["x"], &["s"], attrs());
        let out = run(&DEF, 15, &n, vec![f32s("batchx3x4x5")], vec![]).unwrap();
        assert_eq!(out[0].sym_value, Some(dims("3x4")));
        // Before 15 the attributes do not exist; the whole shape is returned.
        let out = run(&DEF, 13, &n, vec![f32s("batchx3x4x5")], vec![]).unwrap();
        assert_eq!(out[0].sym_value, Some(dims("batchx3x4x5")));
        // Clamped, and an empty range gives an empty shape.
        let n = node(
            "Shape",
            &["x"],
            &["s"],
            vec![("start", AttrValue::Int(-10)), ("end", AttrValue::Int(1))],
        );
        let out = run(&DEF, 21, &n, vec![f32s("7x3")], vec![]).unwrap();
        assert_eq!(out[0].sym_value, Some(dims("7")));
        let n = node("Shape", &["x"], &["s"], vec![("start", AttrValue::Int(5))]);
        let out = run(&DEF, 21, &n, vec![f32s("7x3")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(shape("0")));
    }

    #[test]
    fn unknown_rank_and_bad_arity() {
        let n = node("Shape", &["x"], &["s"], vec![]);
        let out = run(&DEF, 13, &n, vec![Some(Fact::default())], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown])));
        assert_eq!(out[0].sym_value, None);
        let n = node("Shape", &["x", "y"], &["s"], vec![]);
        assert_err(
            run(&DEF, 13, &n, vec![f32s("1"), f32s("1")], vec![]),
            "inputs",
        );
    }
}
