//! `Range`: `start, start + delta, ..` up to (excluding) `limit`; all three are scalars.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Range.html>. Opset history: 11. The length is
//! `max(ceil((limit - start) / delta), 0)` when the three are constants; `Range(0, n, 1)` with
//! `n` known symbolically (`Gather(Shape(x), 1)`) has length `n`.

use kiln_core::{DataType, Dim, Shape};

use crate::error::Result;
use crate::ops::util::{MAX_SYM_LEN, SymInt, sym_input, sym_to_dims};
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Range",
    domain: "",
    since_opset: 11,
    infer,
};

fn scalar(ctx: &InferCtx<'_>, i: usize) -> Option<SymInt> {
    match sym_input(ctx, i)?.as_slice() {
        [x] => Some(x.clone()),
        _ => None,
    }
}

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(3, 3)?;
    let mut dtype = None;
    for i in 0..3 {
        let f = ctx.required(i)?;
        if let Some(s) = &f.shape
            && s.rank() > 1
        {
            return Err(ctx.err(format!("input #{i} has shape {s}"), "Give scalars"));
        }
        if let (Some(a), Some(b)) = (dtype, f.dtype)
            && a != b
        {
            return Err(ctx.err(
                format!("inputs are {a} and {b}"),
                "Give start, limit and delta of one type",
            ));
        }
        dtype = dtype.or(f.dtype);
    }
    let mut sym = None;
    let len = match (scalar(ctx, 0), scalar(ctx, 1), scalar(ctx, 2)) {
        (_, _, Some(SymInt::Int(0))) => {
            return Err(ctx.err("delta is 0", "Use a delta other than 0"));
        }
        (Some(SymInt::Int(s)), Some(SymInt::Int(l)), Some(SymInt::Int(d))) => {
            let (num, den) = if d > 0 {
                (l as i128 - s as i128, d as i128)
            } else {
                (s as i128 - l as i128, -(d as i128))
            };
            let n = (num + den - 1).div_euclid(den).max(0);
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n <= MAX_SYM_LEN {
                let v: Vec<SymInt> = (0..n as i128)
                    .map(|k| {
                        i64::try_from(s as i128 + k * d as i128)
                            .map_or(SymInt::Unknown, SymInt::Int)
                    })
                    .collect();
                sym = Some(sym_to_dims(&v));
            }
            Dim::Known(n)
        }
        (Some(SymInt::Int(0)), Some(l), Some(SymInt::Int(1))) => l.to_dim(),
        _ => match [0, 1, 2].map(|i| ctx.const_input(i).and_then(|t| t.to_f32_vec().ok())) {
            [Some(s), Some(l), Some(d)] => match (s.first(), l.first(), d.first()) {
                (Some(&s), Some(&l), Some(&d)) if d != 0.0 => {
                    let n = ((l as f64 - s as f64) / d as f64).ceil().max(0.0);
                    if n.is_finite() && n < usize::MAX as f64 {
                        Dim::Known(n as usize)
                    } else {
                        Dim::Unknown
                    }
                }
                (_, _, Some(_)) => return Err(ctx.err("delta is 0", "Use a delta other than 0")),
                _ => Dim::Unknown,
            },
            _ => Dim::Unknown,
        },
    };
    let mut fact = Fact::new(dtype, Some(Shape(vec![len])));
    if matches!(dtype, Some(DataType::I64 | DataType::I32)) {
        fact.sym_value = sym;
    }
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;
    use crate::tensor::Tensor;

    fn range(s: &Tensor, l: Option<&Tensor>, d: &Tensor, limit: Option<Fact>) -> Result<Vec<Fact>> {
        let n = node("Range", &["s", "l", "d"], &["y"], vec![]);
        let lf = limit.or_else(|| l.and_then(fact_of));
        run(
            &DEF,
            11,
            &n,
            vec![fact_of(s), lf, fact_of(d)],
            vec![Some(s), l, Some(d)],
        )
    }

    #[test]
    fn constant_ranges() {
        let i = |v: i64| Tensor::scalar("c", v);
        let out = range(&i(0), Some(&i(5)), &i(2), None).unwrap();
        assert_eq!(out[0].shape, Some(shape("3")));
        assert_eq!(out[0].sym_value, Some(dims("0x2x4")));
        let out = range(&i(10), Some(&i(4)), &i(-3), None).unwrap();
        assert_eq!(out[0].sym_value, Some(dims("10x7")));
        let out = range(&i(5), Some(&i(0)), &i(1), None).unwrap();
        assert_eq!(out[0].shape, Some(shape("0")));
        let f = |v: f32| Tensor::scalar("c", v);
        let out = range(&f(0.0), Some(&f(1.0)), &f(0.3), None).unwrap();
        assert_eq!(out[0], Fact::tensor(DataType::F32, shape("4")));
        assert_err(range(&i(0), Some(&i(5)), &i(0), None), "delta is 0");
    }

    #[test]
    fn symbolic_limit() {
        let i = |v: i64| Tensor::scalar("c", v);
        let mut seq = Fact::tensor(DataType::I64, Shape::scalar());
        seq.sym_value = Some(dims("seq"));
        let out = range(&i(0), None, &i(1), Some(seq.clone())).unwrap();
        assert_eq!(out[0].shape, Some(shape("seq")));
        let out = range(&i(1), None, &i(1), Some(seq)).unwrap();
        assert_eq!(out[0].shape, Some(Shape(vec![Dim::Unknown])));
    }
}
