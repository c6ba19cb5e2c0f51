//! `Reshape`: the same elements under a new shape.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Reshape.html>. Opset history: 1 (shape as an
//! attribute; not implemented), 5 (shape as an int64 input: `0` copies the input's dim at the
//! same position, one `-1` is inferred from the element count), 13, 14 (`allowzero`: with 1, a
//! `0` means an empty dim), 19, 21, 23, 24, 25 (types only).
//!
//! Symbolic dims: the target's elements may be symbolic (`Shape -> Gather -> Concat` chains);
//! the one dim that is `-1` or otherwise not known is derived from the element count with
//! [`DimProduct`], so `[batch, 2048, 1, 1] -> [-1, 2048]` gives `[batch, 2048]`. When a target
//! element is not known, the element count still fixes it (whatever its value, a valid model
//! keeps the count), which also covers `-1`s that travelled through `sym_value` (where negative
//! numbers are stored as unknown). A target symbol is taken as the output dim; a symbol that is
//! 0 at run time under `allowzero = 0` is not modelled.

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::{DimProduct, SymInt, same_type, sym_input};
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Reshape",
    domain: "",
    since_opset: 5,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let data = ctx.required(0)?.clone();
    ctx.required(1)?;
    let allowzero = ctx.opset >= 14 && ctx.node.attr_int("allowzero")?.unwrap_or(0) != 0;
    let target = match sym_input(ctx, 1) {
        Some(t) => t,
        None => {
            let rank = match ctx.input_shape(1).map(Shape::dims) {
                Some([Dim::Known(n)]) => Some(*n),
                _ => None,
            };
            let shape = rank.map(|r| Shape(vec![Dim::Unknown; r]));
            ctx.set_output(0, same_type(ctx, 0, shape));
            return Ok(());
        }
    };
    let in_shape = data.shape.as_ref();
    let mut dims = Vec::with_capacity(target.len());
    let mut open = Vec::new();
    let mut minus_one = None;
    for (i, t) in target.iter().enumerate() {
        let d = match t {
            SymInt::Int(0) if !allowzero => match in_shape {
                Some(s) => s.dims().get(i).cloned().ok_or_else(|| {
                    ctx.err(
                        format!(
                            "target shape element #{i} is 0 (copy the input's dim) but the \
                             input {s} has rank {}",
                            s.rank()
                        ),
                        "Use explicit sizes in the target shape",
                    )
                })?,
                None => Dim::Unknown,
            },
            SymInt::Int(-1) => {
                if minus_one.replace(i).is_some() {
                    return Err(ctx.err(
                        "target shape has more than one -1",
                        "Use -1 for at most one dim",
                    ));
                }
                if allowzero && target.contains(&SymInt::Int(0)) {
                    return Err(ctx.err(
                        "target shape has both -1 and 0 with allowzero = 1",
                        "Use explicit sizes, or allowzero = 0",
                    ));
                }
                Dim::Unknown
            }
            SymInt::Int(n) if *n < 0 => {
                return Err(ctx.err(
                    format!("target shape element #{i} is {n}"),
                    "Use sizes >= 0, or -1 for one inferred dim",
                ));
            }
            other => other.to_dim(),
        };
        if d == Dim::Unknown {
            open.push(i);
        }
        dims.push(d);
    }
    if let Some(s) = in_shape {
        let total = DimProduct::of(s.dims());
        if let [i] = open.as_slice() {
            let others =
                DimProduct::of(dims.iter().enumerate().filter(|(j, _)| j != i).map(|x| x.1));
            match total.div(&others) {
                Some(q) => dims[*i] = q.to_dim(),
                None if total.exact
                    && others.exact
                    && total.symbols.is_empty()
                    && others.symbols.is_empty()
                    && others.coeff != 0 =>
                {
                    return Err(ctx.err(
                        format!(
                            "cannot reshape {s} ({} elements) to {}: not a multiple of {}",
                            total.coeff,
                            Shape(dims.clone()),
                            others.coeff
                        ),
                        "Fix the target shape so the element count is kept",
                    ));
                }
                None => {}
            }
        } else if open.is_empty() {
            let out = DimProduct::of(dims.iter());
            if total.exact && out.exact && total != out && total.symbols == out.symbols {
                return Err(ctx.err(
                    format!(
                        "cannot reshape {s} ({} elements) to {}",
                        total.to_dim(),
                        Shape(dims.clone())
                    ),
                    "Fix the target shape so the element count is kept",
                ));
            }
        }
    }
    let mut fact = same_type(ctx, 0, Some(Shape(dims)));
    if let Some(sv) = &data.sym_value
        && fact.shape.as_ref().is_some_and(|s| s.rank() <= 1)
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

    fn reshape(opset: i64, x: &str, target: &[i64]) -> Result<Vec<crate::ops::Fact>> {
        let n = node("Reshape", &["x", "s"], &["y"], vec![]);
        let t = ints(target);
        run(
            &DEF,
            opset,
            &n,
            vec![f32s(x), fact_of(&t)],
            vec![None, Some(&t)],
        )
    }

    #[test]
    fn minus_one_with_symbolic_batch() {
        let out = reshape(13, "batchx2048x1x1", &[-1, 2048]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx2048")));
        assert_eq!(out[0].dtype, Some(DataType::F32));
        let out = reshape(13, "2x3x4", &[0, -1]).unwrap();
        assert_eq!(out[0].shape, Some(shape("2x12")));
        let out = reshape(13, "batchx3x4", &[0, 4, -1]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx4x3")));
        // batch*seq*64 / 64 is not one dim.
        let out = reshape(13, "batchxseqx64", &[-1, 64]).unwrap();
        assert_eq!(
            out[0].shape,
            Some(Shape(vec![Dim::Unknown, Dim::Known(64)]))
        );
        // 3*batch is not a dim either.
        let out = reshape(13, "batchx3x4", &[-1, 4]).unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown, Dim::Known(4)])));
    }

    #[test]
    fn allowzero_from_opset_14() {
        let n = node(
            "Reshape",
            &["x", "s"],
            &["y"],
            vec![("allowzero", AttrValue::Int(1))],
        );
        let t = ints(&[0, 5]);
        let out = run(
            &DEF,
            14,
            &n,
            vec![f32s("0x5"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("0x5")));
        let t = ints(&[0, 5]);
        let out = run(
            &DEF,
            14,
            &n,
            vec![f32s("3x5"), fact_of(&t)],
            vec![None, Some(&t)],
        );
        assert_err(out, "cannot reshape");
        // Before 14 the attribute does not exist: 0 copies.
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("3x5"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("3x5")));
    }

    #[test]
    fn symbolic_target_and_unknown_element() {
        let n = node("Reshape", &["x", "s"], &["y"], vec![]);
        // [batch, ?] where ? was a -1 that travelled through sym_value.
        let mut s = sym("batchx?");
        let out = run(
            &DEF,
            13,
            &n,
            vec![f32s("batchx2048x1x1"), s.clone()],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx2048")));
        // Target of unknown values but known length: rank only.
        if let Some(f) = s.as_mut() {
            f.sym_value = None;
        }
        let out = run(&DEF, 13, &n, vec![f32s("batchx2048x1x1"), s], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown; 2])));
        // Nothing known about the target: rank unknown.
        let out = run(&DEF, 13, &n, vec![f32s("4"), Some(Fact::default())], vec![]).unwrap();
        assert_eq!(out[0].shape, None);
    }

    #[test]
    fn errors_name_the_node() {
        assert_err(reshape(13, "2x3", &[-1, -1]), "more than one -1");
        assert_err(reshape(13, "2x3", &[4, -1]), "cannot reshape");
        assert_err(reshape(13, "2x3", &[5]), "cannot reshape");
        assert_err(reshape(13, "2x3", &[-2, 3]), "-2");
        assert_err(reshape(13, "6", &[0, 0]), "rank 1");
        let n = node("Reshape", &["x"], &["y"], vec![]);
        assert_err(run(&DEF, 13, &n, vec![f32s("2")], vec![]), "inputs");
    }

    #[test]
    fn sym_value_passes_through_rank_one() {
        let n = node("Reshape", &["x", "s"], &["y"], vec![]);
        let t = ints(&[-1]);
        let out = run(
            &DEF,
            13,
            &n,
            vec![sym("batchx3"), fact_of(&t)],
            vec![None, Some(&t)],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("2")));
        assert_eq!(out[0].sym_value, Some(dims("batchx3")));
    }
}
