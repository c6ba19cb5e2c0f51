//! `Gather`: picks entries of `data` along `axis` by `indices`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Gather.html>. Opset history: 1, 11 (negative
//! indices and axis), 13 (types). Output shape: `data[:axis] + indices + data[axis+1:]`.
//! Constant indices are checked against a known axis size; picking from a rank-1 `sym_value`
//! (torch's `Shape -> Gather`) gives the picked dims.

use kiln_core::Shape;

use crate::error::Result;
use crate::ops::util::{MAX_SYM_LEN, const_ints, normalize_axis, sym_input, sym_to_dims};
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Gather",
    domain: "",
    since_opset: 1,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let data = ctx.required(0)?.clone();
    let indices = ctx.required(1)?.clone();
    if let Some(dt) = indices.dtype
        && !matches!(dt, kiln_core::DataType::I64 | kiln_core::DataType::I32)
    {
        return Err(ctx.err(format!("indices are {dt}"), "Use int64 or int32 indices"));
    }
    let axis = ctx.node.attr_int("axis")?.unwrap_or(0);
    let Some(ds) = data.shape.as_ref() else {
        ctx.set_output(0, Fact::new(data.dtype, None));
        return Ok(());
    };
    let ax = normalize_axis(ctx, axis, ds.rank())?;
    let consts = const_ints(ctx, 1)?;
    if let (Some(n), Some(idx)) = (ds.dims().get(ax).and_then(|d| d.known()), &consts) {
        let n = n as i64;
        if let Some(bad) = idx.iter().find(|&&i| i < -n || i >= n) {
            return Err(ctx.err(
                format!("index {bad} is out of range for axis {ax} of size {n}"),
                format!("Use indices in [{}, {}]", -n, n - 1),
            ));
        }
    }
    let shape = indices.shape.as_ref().map(|is| {
        let mut dims = ds.dims().get(..ax).unwrap_or_default().to_vec();
        dims.extend(is.dims().iter().cloned());
        dims.extend(ds.dims().get(ax + 1..).unwrap_or_default().iter().cloned());
        Shape(dims)
    });
    let mut fact = Fact::new(data.dtype, shape);
    if ds.rank() == 1
        && let (Some(sv), Some(idx)) = (sym_input(ctx, 0), consts)
        && ctx.const_input(1).is_some_and(|t| t.dims().len() <= 1)
        && idx.len() <= MAX_SYM_LEN
    {
        let n = sv.len() as i64;
        let picked: Option<Vec<_>> = idx
            .iter()
            .map(|&i| {
                let i = if i < 0 { i + n } else { i };
                usize::try_from(i).ok().and_then(|i| sv.get(i).cloned())
            })
            .collect();
        fact.sym_value = picked.map(|v| sym_to_dims(&v));
    }
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;
    use crate::tensor::Tensor;
    use kiln_core::{DataType, Dim};

    #[test]
    fn shapes() {
        let n = node(
            "Gather",
            &["x", "i"],
            &["y"],
            vec![("axis", AttrValue::Int(1))],
        );
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx10x4"), fact(DataType::I64, "seqx2")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchxseqx2x4")));
        let n = node("Gather", &["x", "i"], &["y"], vec![]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("vocabx512"), fact(DataType::I32, "")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("512")));
    }

    #[test]
    fn scalar_index_picks_a_dim() {
        let t = Tensor::scalar("i", 0i64);
        let n = node("Gather", &["s", "i"], &["y"], vec![]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![sym("batchx3"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(Shape::scalar()));
        assert_eq!(out[0].sym_value, Some(vec![Dim::symbol("batch")]));
        let t = ints(&[-1, 0]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![sym("batchx3"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].sym_value, Some(dims("3xbatch")));
    }

    #[test]
    fn errors() {
        let n = node(
            "Gather",
            &["x", "i"],
            &["y"],
            vec![("axis", AttrValue::Int(2))],
        );
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("2x3"), fact(DataType::I64, "1")],
                vec![],
            ),
            "out of range",
        );
        let t = ints(&[3]);
        let n = node("Gather", &["x", "i"], &["y"], vec![]);
        assert_err(
            run(
                &DEF,
                13,
                &n,
                vec![f32s("3x3"), fact_of(&t)],
                vec![None, Some(&t)],
            ),
            "index 3",
        );
        assert_err(
            run(&DEF, 13, &n, vec![f32s("3x3"), f32s("1")], vec![]),
            "indices are f32",
        );
    }
}
