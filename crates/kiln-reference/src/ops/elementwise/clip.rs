//! Clip <https://onnx.ai/onnx/operators/onnx__Clip.html>: `min(max(x, min), max)` elementwise,
//! so where `min > max` every output is `max` (as the spec says from opset 13 on). NaN inputs
//! stay NaN; a NaN bound makes every output NaN (numpy's `clip`).
//!
//! Opset history: 1 (`consumed_inputs`), 6 (bounds are FLOAT attributes `min`, `max`, defaults
//! the lowest and highest f32), 11 (bounds are optional scalar inputs 1 and 2 of X's type; an
//! omitted one does not clip), 12 (integer types), 13 (bf16).

use ndarray::ArrayD;

use super::num::{Arith, Elem, Scalar};
use super::type_mismatch;
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn clip_arr<T: Arith>(a: &ArrayD<T>, lo: Option<Scalar>, hi: Option<Scalar>) -> ArrayD<T> {
    let lo: Option<T> = lo.map(T::from_scalar);
    let hi: Option<T> = hi.map(T::from_scalar);
    a.mapv(|v| {
        let v = lo.map_or(v, |l| v.max_nan(l));
        hi.map_or(v, |h| v.min_nan(h))
    })
}

/// The single element of bound input `i`, which must have X's type.
fn bound(ctx: &OpCtx<'_>, i: usize, x: &Value) -> Result<Option<Scalar>> {
    let Some(v) = ctx.input(i) else {
        return Ok(None);
    };
    if v.dtype() != x.dtype() {
        return Err(type_mismatch(ctx, 0, x, i, v));
    }
    if v.len() != 1 {
        return Err(ctx.err(
            format!(
                "input #{i} has shape {:?}; a bound must be a scalar",
                v.shape()
            ),
            "Give min and max as scalars (one element)",
        ));
    }
    let s = crate::with_array!(v, a => a.iter().next().map(|e| e.to_scalar()));
    Ok(s)
}

pub(crate) fn clip(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let (lo, hi) = if ctx.opset < 11 {
        let lo = ctx.attr_float("min", f32::MIN)?;
        let hi = ctx.attr_float("max", f32::MAX)?;
        (
            Some(Scalar::Float(f64::from(lo))),
            Some(Scalar::Float(f64::from(hi))),
        )
    } else {
        (bound(ctx, 1, x)?, bound(ctx, 2, x)?)
    };
    let y = numeric!(x, (a, wrap) => wrap(clip_arr(a, lo, hi)),
        other => return Err(ctx.bad_dtype(0, other)));
    Ok(vec![y])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    fn x() -> Value {
        f32s(&[5], &[-3.0, -1.0, 0.0, 2.0, f32::NAN])
    }

    #[test]
    fn attributes_before_11() {
        let y = run(
            clip,
            "Clip",
            6,
            vec![af("min", -1.5), af("max", 1.0)],
            &[&x()],
        )
        .unwrap();
        close(&y, &f32s(&[5], &[-1.5, -1.0, 0.0, 1.0, f32::NAN]), 0.0);
        let y = run(clip, "Clip", 6, vec![af("max", 1.0)], &[&x()]).unwrap();
        close(&y, &f32s(&[5], &[-3.0, -1.0, 0.0, 1.0, f32::NAN]), 0.0);
        let y = run(clip, "Clip", 6, vec![], &[&x()]).unwrap();
        close(&y, &x(), 0.0);
    }

    #[test]
    fn inputs_from_11() {
        let lo = f32s(&[], &[-1.5]);
        let hi = f32s(&[1], &[1.0]);
        let y = run(clip, "Clip", 13, vec![], &[&x(), &lo, &hi]).unwrap();
        close(&y, &f32s(&[5], &[-1.5, -1.0, 0.0, 1.0, f32::NAN]), 0.0);
        // Omitted min: only max clips; no bounds: identity.
        let y = run_n(clip, "Clip", 11, vec![], &[Some(&x()), None, Some(&hi)], 1).unwrap();
        close(&y[0], &f32s(&[5], &[-3.0, -1.0, 0.0, 1.0, f32::NAN]), 0.0);
        let y = run(clip, "Clip", 11, vec![], &[&x()]).unwrap();
        close(&y, &x(), 0.0);
        // min > max: everything is max.
        let y = run(
            clip,
            "Clip",
            13,
            vec![],
            &[&x(), &f32s(&[], &[2.0]), &f32s(&[], &[1.0])],
        )
        .unwrap();
        close(&y, &f32s(&[5], &[1.0, 1.0, 1.0, 1.0, f32::NAN]), 0.0);
        // Integers (12+) and f16.
        let y = run(
            clip,
            "Clip",
            12,
            vec![],
            &[&i32s(&[3], &[-5, 3, 9]), &i32s(&[], &[0]), &i32s(&[], &[5])],
        );
        assert_eq!(y.unwrap(), i32s(&[3], &[0, 3, 5]));
        let y = run(
            clip,
            "Clip",
            13,
            vec![],
            &[&f16s(&[2], &[-0.7, 0.3]), &f16s(&[], &[-0.5])],
        );
        assert_eq!(y.unwrap(), f16s(&[2], &[-0.5, 0.3]));
    }

    #[test]
    fn errors() {
        let e = run(clip, "Clip", 13, vec![], &[&x(), &f64s(&[], &[0.0])]);
        assert!(e.unwrap_err().to_string().contains("same element type"));
        let e = run(clip, "Clip", 13, vec![], &[&x(), &f32s(&[2], &[0.0, 1.0])]);
        assert!(e.unwrap_err().to_string().contains("scalar"));
        assert!(run(clip, "Clip", 13, vec![], &[&bools(&[1], &[true])]).is_err());
    }
}
