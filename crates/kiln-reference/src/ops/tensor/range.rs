//! Range <https://onnx.ai/onnx/operators/onnx__Range.html>: `start, start + delta, ...` up to
//! `limit` (exclusive), from three scalar inputs of one type.
//!
//! Opset history: 11 introduces it for f32, f64, int16, int32, int64; 27 adds f16 and bf16
//! with the `stash_type` attribute (1 = compute in f32, the default; 11 = in f64).
//!
//! The element count is `max(ceil((limit - start) / delta), 0)`. Integers are computed
//! exactly (in i128). For f32 and f64 the count and the values `start + i * delta` are
//! computed in f64 and rounded to the type, as the ONNX reference (numpy `arange`) does;
//! f16 and bf16 compute in the `stash_type` precision (f32 before opset 27). A zero, NaN or
//! infinite step, and a count above the CPU reference's element limit, are errors.

use half::{bf16, f16};
use ndarray::{Array1, ArrayD};

use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{Elem, MAX_ELEMENTS};

/// The single element of input `i`, of type `T` (input 0's type, checked by the caller).
fn scalar<T: Elem>(ctx: &OpCtx<'_>, i: usize) -> Result<T> {
    let v = ctx.required(i)?;
    let a = T::get(v).ok_or_else(|| {
        ctx.err(
            format!("input #{i} has element type {}, unlike input #0", v.dtype()),
            "Give start, limit and delta of one element type",
        )
    })?;
    match a.len() {
        1 => Ok(a.iter().next().cloned().unwrap_or_default()),
        n => Err(ctx.err(
            format!("input #{i} has {n} elements where a scalar was expected"),
            "Give start, limit and delta as scalars",
        )),
    }
}

fn too_many(ctx: &OpCtx<'_>, count: String) -> crate::RefError {
    ctx.err(
        format!("the range has {count} elements (the CPU reference allows {MAX_ELEMENTS})"),
        "Check start, limit and delta",
    )
}

fn zero_step(ctx: &OpCtx<'_>) -> crate::RefError {
    ctx.err("delta is 0", "Give a non-zero delta")
}

fn int_range<T>(ctx: &OpCtx<'_>) -> Result<ArrayD<T>>
where
    T: Elem + Copy + Into<i128> + TryFrom<i128>,
{
    let (s, l, d): (i128, i128, i128) = (
        scalar::<T>(ctx, 0)?.into(),
        scalar::<T>(ctx, 1)?.into(),
        scalar::<T>(ctx, 2)?.into(),
    );
    if d == 0 {
        return Err(zero_step(ctx));
    }
    let (num, den) = if d > 0 { (l - s, d) } else { (s - l, -d) };
    let count = if num > 0 { (num + den - 1) / den } else { 0 };
    let n = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| too_many(ctx, count.to_string()))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..count {
        // Every value lies between start and limit, so it fits T.
        let v = T::try_from(s + i * d).map_err(|_| too_many(ctx, count.to_string()))?;
        out.push(v);
    }
    Ok(Array1::from_vec(out).into_dyn())
}

/// The element count of a float range, from f64 bounds.
fn float_count(ctx: &OpCtx<'_>, s: f64, l: f64, d: f64) -> Result<usize> {
    if d == 0.0 {
        return Err(zero_step(ctx));
    }
    let c = ((l - s) / d).ceil();
    if c.is_nan() || !s.is_finite() || !d.is_finite() {
        return Err(ctx.err(
            format!("start {s}, limit {l}, delta {d} give no finite element count"),
            "Give finite start and delta",
        ));
    }
    if c <= 0.0 {
        return Ok(0);
    }
    if c > MAX_ELEMENTS as f64 {
        return Err(too_many(ctx, c.to_string()));
    }
    Ok(c as usize)
}

/// f32/f64 ranges: count and values in f64, rounded to `T`.
fn float_range<T: Elem + Copy + Into<f64>>(ctx: &OpCtx<'_>) -> Result<ArrayD<T>> {
    let (s, l, d): (f64, f64, f64) = (
        scalar::<T>(ctx, 0)?.into(),
        scalar::<T>(ctx, 1)?.into(),
        scalar::<T>(ctx, 2)?.into(),
    );
    let n = float_count(ctx, s, l, d)?;
    Ok(Array1::from_iter((0..n).map(|i| T::from_f64(s + i as f64 * d))).into_dyn())
}

/// f16/bf16 ranges: values in the `stash_type` precision, rounded to `T`.
fn half_range<T: Elem + Copy>(ctx: &OpCtx<'_>, widen: fn(T) -> f64) -> Result<ArrayD<T>> {
    let (s, l, d) = (
        widen(scalar::<T>(ctx, 0)?),
        widen(scalar::<T>(ctx, 1)?),
        widen(scalar::<T>(ctx, 2)?),
    );
    let stash = if ctx.opset >= 27 {
        ctx.attr_int("stash_type", 1)?
    } else {
        1
    };
    let n = float_count(ctx, s, l, d)?;
    let vals: Vec<T> = match stash {
        1 => {
            let (s, d) = (s as f32, d as f32);
            (0..n)
                .map(|i| T::from_f64(f64::from(s + i as f32 * d)))
                .collect()
        }
        11 => (0..n).map(|i| T::from_f64(s + i as f64 * d)).collect(),
        k => {
            return Err(ctx.err(
                format!("stash_type {k} is not supported"),
                "Use stash_type 1 (float) or 11 (double)",
            ));
        }
    };
    Ok(Array1::from_vec(vals).into_dyn())
}

/// Range: see the module doc.
pub(crate) fn range(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let v = ctx.required(0)?;
    Ok(vec![match v {
        Value::F32(_) => Value::F32(float_range::<f32>(ctx)?),
        Value::F64(_) => Value::F64(float_range::<f64>(ctx)?),
        Value::F16(_) => Value::F16(half_range::<f16>(ctx, f16::to_f64)?),
        Value::BF16(_) => Value::BF16(half_range::<bf16>(ctx, bf16::to_f64)?),
        Value::I16(_) => Value::I16(int_range::<i16>(ctx)?),
        Value::I32(_) => Value::I32(int_range::<i32>(ctx)?),
        Value::I64(_) => Value::I64(int_range::<i64>(ctx)?),
        other => return Err(ctx.bad_dtype(0, other)),
    }])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use ndarray::IxDyn;

    fn r(start: Value, limit: Value, delta: Value) -> Value {
        run1(
            range,
            "Range",
            11,
            vec![],
            &[Some(start), Some(limit), Some(delta)],
        )
    }

    fn si(x: i64) -> Value {
        i64s(&[], &[x])
    }

    fn sf(x: f32) -> Value {
        f32s(&[], &[x])
    }

    #[test]
    fn spec_examples_int() {
        check(&r(si(3), si(9), si(3)), &[2], &[3., 6.]);
        check(&r(si(10), si(4), si(-2)), &[3], &[10., 8., 6.]);
        check(&r(si(5), si(5), si(1)), &[0], &[]);
        check(&r(si(5), si(1), si(1)), &[0], &[]);
        check(&r(si(0), si(7), si(3)), &[3], &[0., 3., 6.]);
        let y = r(i32s(&[], &[-3]), i32s(&[], &[3]), i32s(&[], &[2]));
        assert_eq!(y, i32s(&[3], &[-3, -1, 1]));
        let y = r(
            Value::I16(ArrayD::from_elem(IxDyn(&[]), i16::MIN)),
            Value::I16(ArrayD::from_elem(IxDyn(&[]), i16::MAX)),
            Value::I16(ArrayD::from_elem(IxDyn(&[]), i16::MAX)),
        );
        check(&y, &[3], &[-32768., -1., 32766.]);
    }

    #[test]
    fn floats() {
        // numpy: np.arange(1, 5, 0.5, dtype=np.float32)
        check(
            &r(sf(1.0), sf(5.0), sf(0.5)),
            &[8],
            &[1., 1.5, 2., 2.5, 3., 3.5, 4., 4.5],
        );
        check(&r(sf(10.0), sf(6.0), sf(-3.0)), &[2], &[10., 7.]);
        // numpy: len(np.arange(0, 1, 0.1)) == 10 (count from the f32 values in f64).
        assert_eq!(r(sf(0.0), sf(1.0), sf(0.1)).len(), 10);
        let d = |x: f64| Value::F64(ArrayD::from_elem(IxDyn(&[]), x));
        check(&r(d(0.0), d(1.0), d(0.25)), &[4], &[0., 0.25, 0.5, 0.75]);
        let h = |x: f32| Value::F16(ArrayD::from_elem(IxDyn(&[]), f16::from_f32(x)));
        let y = run1(
            range,
            "Range",
            27,
            vec![],
            &[Some(h(0.0)), Some(h(2.0)), Some(h(0.5))],
        );
        check(&y, &[4], &[0., 0.5, 1., 1.5]);
        let b = |x: f32| Value::BF16(ArrayD::from_elem(IxDyn(&[]), bf16::from_f32(x)));
        let y = run1(
            range,
            "Range",
            27,
            vec![("stash_type", a1(11))],
            &[Some(b(4.0)), Some(b(1.0)), Some(b(-1.0))],
        );
        check(&y, &[3], &[4., 3., 2.]);
        let e = run_err(
            range,
            "Range",
            27,
            vec![("stash_type", a1(10))],
            &[Some(b(4.0)), Some(b(1.0)), Some(b(-1.0))],
        );
        assert!(e.contains("stash_type"), "{e}");
    }

    #[test]
    fn errors() {
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(si(0)), Some(si(5)), Some(si(0))],
        );
        assert!(e.contains("delta is 0"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(sf(0.0)), Some(sf(5.0)), Some(sf(0.0))],
        );
        assert!(e.contains("delta is 0"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(si(0)), Some(si(i64::MAX)), Some(si(1))],
        );
        assert!(e.contains("elements"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(si(i64::MIN)), Some(si(i64::MAX)), Some(si(1))],
        );
        assert!(e.contains("elements"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(sf(0.0)), Some(sf(1e30)), Some(sf(1e-30))],
        );
        assert!(e.contains("elements"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(sf(0.0)), Some(sf(f32::INFINITY)), Some(sf(1.0))],
        );
        assert!(e.contains("elements"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(sf(f32::NAN)), Some(sf(1.0)), Some(sf(1.0))],
        );
        assert!(e.contains("finite"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(si(0)), Some(sf(1.0)), Some(si(1))],
        );
        assert!(e.contains("one element type"), "{e}");
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(si(0)), Some(ints(&[1, 2])), Some(si(1))],
        );
        assert!(e.contains("scalar"), "{e}");
        let u = Value::U8(ArrayD::from_elem(IxDyn(&[]), 1u8));
        let e = run_err(
            range,
            "Range",
            11,
            vec![],
            &[Some(u.clone()), Some(u.clone()), Some(u)],
        );
        assert!(e.contains("element type"), "{e}");
    }
}
