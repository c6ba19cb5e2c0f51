//! Unary math: one tensor in, one of the same shape out.
//!
//! Float functions compute f32 and f64 in their own precision, f16 and bf16 in f32 (rounded
//! back). Types beyond an op's list in the spec are accepted where the result is well defined.
//!
//! - Sqrt <https://onnx.ai/onnx/operators/onnx__Sqrt.html>, Reciprocal
//!   <https://onnx.ai/onnx/operators/onnx__Reciprocal.html>, Exp
//!   <https://onnx.ai/onnx/operators/onnx__Exp.html>, Log
//!   <https://onnx.ai/onnx/operators/onnx__Log.html>, Floor
//!   <https://onnx.ai/onnx/operators/onnx__Floor.html>, Ceil
//!   <https://onnx.ai/onnx/operators/onnx__Ceil.html>: floats; 1, 6 (drops
//!   `consumed_inputs`), 13 (bf16).
//! - Round <https://onnx.ai/onnx/operators/onnx__Round.html>: half to even. 11, 22 (bf16).
//! - Erf <https://onnx.ai/onnx/operators/onnx__Erf.html>: 9 (floats and integers: an integer
//!   result is erf truncated toward zero), 13 (floats only, bf16).
//! - Abs <https://onnx.ai/onnx/operators/onnx__Abs.html>: 1, 6 (integers), 13 (bf16);
//!   `abs(MIN)` wraps to MIN as numpy.
//! - Neg <https://onnx.ai/onnx/operators/onnx__Neg.html>: 1, 6 (signed integers), 13 (bf16);
//!   wrapping.
//! - Sign <https://onnx.ai/onnx/operators/onnx__Sign.html>: -1, 0 or 1; NaN stays NaN. 9, 13.
//! - IsNaN <https://onnx.ai/onnx/operators/onnx__IsNaN.html>: bool output. 9, 13 (bf16), 20.
//! - IsInf <https://onnx.ai/onnx/operators/onnx__IsInf.html>: bool output; `detect_positive`,
//!   `detect_negative` (both 1) pick which infinities count. 10 (f32, f64), 20 (f16, bf16).
//! - Sin, Cos, Tan, Asin, Acos, Atan (7, 22), Sinh, Cosh, Asinh, Acosh, Atanh (9, 22):
//!   <https://onnx.ai/onnx/operators/onnx__Sin.html> and siblings.

use super::float_unary;
use super::num::{Arith, Elem, Float, Scalar};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

macro_rules! float_fn {
    ($($name:ident => $method:ident),* $(,)?) => {$(
        pub(crate) fn $name(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
            Ok(vec![float_unary!(ctx, |x: T| Float::$method(x))?])
        }
    )*};
}

float_fn!(
    sqrt => sqrt,
    exp => exp,
    log => ln,
    floor => floor,
    ceil => ceil,
    round => round_ties_even,
    sin => sin,
    cos => cos,
    tan => tan,
    asin => asin,
    acos => acos,
    atan => atan,
    sinh => sinh,
    cosh => cosh,
    asinh => asinh,
    acosh => acosh,
    atanh => atanh,
);

pub(crate) fn reciprocal(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![float_unary!(ctx, |x: T| T::c(1.0) / x)?])
}

pub(crate) fn erf(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    if x.dtype().is_integer() {
        let y = numeric!(x,
            (a, wrap) => wrap(a.mapv(|v| Elem::from_scalar(Scalar::Float(super::num::erf64(v.to_f64()))))),
            other => return Err(ctx.bad_dtype(0, other)));
        return Ok(vec![y]);
    }
    Ok(vec![float_unary!(ctx, |x: T| Float::error_fn(x))?])
}

pub(crate) fn abs(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    Ok(vec![numeric!(x, (a, wrap) => wrap(a.mapv(Arith::abs)),
        other => return Err(ctx.bad_dtype(0, other)))])
}

pub(crate) fn neg(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    Ok(vec![numeric!(x, (a, wrap) => wrap(a.mapv(Arith::neg)),
        other => return Err(ctx.bad_dtype(0, other)))])
}

pub(crate) fn sign(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    Ok(vec![numeric!(x, (a, wrap) => wrap(a.mapv(Arith::sign)),
        other => return Err(ctx.bad_dtype(0, other)))])
}

pub(crate) fn is_nan(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    Ok(vec![
        floats!(x, (a, _wrap) => Value::Bool(a.mapv(Arith::is_nan)),
        other => return Err(ctx.bad_dtype(0, other))),
    ])
}

pub(crate) fn is_inf(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let pos = ctx.attr_int("detect_positive", 1)? != 0;
    let neg = ctx.attr_int("detect_negative", 1)? != 0;
    let x = ctx.required(0)?;
    let test = |v: f64| (pos && v == f64::INFINITY) || (neg && v == f64::NEG_INFINITY);
    Ok(vec![
        floats!(x, (a, _wrap) => Value::Bool(a.mapv(|v| test(v.to_f64()))),
        other => return Err(ctx.bad_dtype(0, other))),
    ])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    fn un(f: crate::ops::OpFn, op: &str, x: &Value) -> Value {
        run(f, op, 22, vec![], &[x]).unwrap()
    }

    // Expected values from numpy (np.round, np.floor, np.sqrt, ... on float32), by hand for
    // the integer cases.
    #[test]
    fn rounding() {
        let x = f32s(&[6], &[-2.5, -0.5, 0.5, 1.5, 2.5, -1.7]);
        close(
            &un(round, "Round", &x),
            &f32s(&[6], &[-2.0, -0.0, 0.0, 2.0, 2.0, -2.0]),
            0.0,
        );
        close(
            &un(floor, "Floor", &x),
            &f32s(&[6], &[-3.0, -1.0, 0.0, 1.0, 2.0, -2.0]),
            0.0,
        );
        close(
            &un(ceil, "Ceil", &x),
            &f32s(&[6], &[-2.0, -0.0, 1.0, 2.0, 3.0, -1.0]),
            0.0,
        );
        let x = f64s(&[2], &[0.5, -3.5]);
        close(&un(round, "Round", &x), &f64s(&[2], &[0.0, -4.0]), 0.0);
        let x = f16s(&[2], &[2.5, 3.5]);
        assert_eq!(un(round, "Round", &x), f16s(&[2], &[2.0, 4.0]));
    }

    #[test]
    fn float_math() {
        let x = f32s(&[4], &[0.25, 1.0, 4.0, 2.0]);
        close(
            &un(sqrt, "Sqrt", &x),
            &f32s(&[4], &[0.5, 1.0, 2.0, 1.4142135]),
            1e-7,
        );
        close(
            &un(exp, "Exp", &x),
            &f32s(&[4], &[1.2840255, 2.718282, 54.598148, 7.389056]),
            1e-7,
        );
        close(
            &un(log, "Log", &x),
            &f32s(&[4], &[-1.3862944, 0.0, 1.3862944, 0.6931472]),
            1e-7,
        );
        close(
            &un(reciprocal, "Reciprocal", &x),
            &f32s(&[4], &[4.0, 1.0, 0.25, 0.5]),
            0.0,
        );
        let z = f32s(&[3], &[0.0, -1.0, -0.0]);
        close(
            &un(log, "Log", &z),
            &f32s(&[3], &[f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY]),
            0.0,
        );
        close(
            &un(sqrt, "Sqrt", &z),
            &f32s(&[3], &[0.0, f32::NAN, 0.0]),
            0.0,
        );
        close(
            &un(reciprocal, "Reciprocal", &z),
            &f32s(&[3], &[f32::INFINITY, -1.0, f32::NEG_INFINITY]),
            0.0,
        );
        close(
            &un(sin, "Sin", &f32s(&[1], &[0.5])),
            &f32s(&[1], &[0.47942555]),
            1e-7,
        );
        close(
            &un(acosh, "Acosh", &f32s(&[1], &[2.0])),
            &f32s(&[1], &[1.3169580]),
            1e-7,
        );
        close(
            &un(atanh, "Atanh", &f64s(&[1], &[0.5])),
            &f64s(&[1], &[0.5493061443340549]),
            1e-15,
        );
        // bf16 computed in f32: exp(1) = 2.71828 rounds to bf16 2.71875.
        assert_eq!(
            un(exp, "Exp", &bf16s(&[1], &[1.0])),
            bf16s(&[1], &[2.71875])
        );
        assert!(run(sqrt, "Sqrt", 13, vec![], &[&i32s(&[1], &[4])]).is_err());
    }

    #[test]
    fn erf_values() {
        // math.erf(0.3) = 0.3286267594591274; float32(math.erf(float32(-1.2))) = -0.91031396
        close(
            &un(erf, "Erf", &f64s(&[1], &[0.3])),
            &f64s(&[1], &[0.3286267594591274]),
            1e-15,
        );
        close(
            &un(erf, "Erf", &f32s(&[1], &[-1.2])),
            &f32s(&[1], &[-0.91031396]),
            1e-7,
        );
        // Erf-9 on integers: erf(n) truncated is 0 for every integer.
        assert_eq!(
            run(erf, "Erf", 9, vec![], &[&i32s(&[3], &[-2, 0, 3])]).unwrap(),
            i32s(&[3], &[0, 0, 0])
        );
    }

    #[test]
    fn abs_neg_sign() {
        let x = i32s(&[3], &[-3, 0, 5]);
        assert_eq!(un(abs, "Abs", &x), i32s(&[3], &[3, 0, 5]));
        assert_eq!(un(neg, "Neg", &x), i32s(&[3], &[3, 0, -5]));
        assert_eq!(un(sign, "Sign", &x), i32s(&[3], &[-1, 0, 1]));
        assert_eq!(
            un(abs, "Abs", &Value::I8(arr(&[1], &[i8::MIN]))),
            Value::I8(arr(&[1], &[i8::MIN]))
        );
        assert_eq!(
            un(sign, "Sign", &Value::U8(arr(&[2], &[0, 9]))),
            Value::U8(arr(&[2], &[0, 1]))
        );
        let f = f32s(&[4], &[-2.5, 0.0, 3.0, f32::NAN]);
        close(
            &un(sign, "Sign", &f),
            &f32s(&[4], &[-1.0, 0.0, 1.0, f32::NAN]),
            0.0,
        );
        close(
            &un(abs, "Abs", &f),
            &f32s(&[4], &[2.5, 0.0, 3.0, f32::NAN]),
            0.0,
        );
        close(
            &un(neg, "Neg", &f),
            &f32s(&[4], &[2.5, 0.0, -3.0, f32::NAN]),
            0.0,
        );
        assert_eq!(un(neg, "Neg", &f16s(&[1], &[1.5])), f16s(&[1], &[-1.5]));
        assert!(run(abs, "Abs", 13, vec![], &[&bools(&[1], &[true])]).is_err());
    }

    #[test]
    fn nan_inf() {
        let x = f32s(
            &[5],
            &[1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0],
        );
        assert_eq!(
            un(is_nan, "IsNaN", &x),
            bools(&[5], &[false, true, false, false, false])
        );
        assert_eq!(
            un(is_inf, "IsInf", &x),
            bools(&[5], &[false, false, true, true, false])
        );
        let pos = run(is_inf, "IsInf", 20, vec![ai("detect_negative", 0)], &[&x]).unwrap();
        assert_eq!(pos, bools(&[5], &[false, false, true, false, false]));
        let neg = run(is_inf, "IsInf", 20, vec![ai("detect_positive", 0)], &[&x]).unwrap();
        assert_eq!(neg, bools(&[5], &[false, false, false, true, false]));
        let none = run(
            is_inf,
            "IsInf",
            20,
            vec![ai("detect_positive", 0), ai("detect_negative", 0)],
            &[&x],
        )
        .unwrap();
        assert_eq!(none, bools(&[5], &[false; 5]));
        let h = Value::F16(arr(&[2], &[half::f16::NAN, half::f16::INFINITY]));
        assert_eq!(un(is_nan, "IsNaN", &h), bools(&[2], &[true, false]));
        assert_eq!(un(is_inf, "IsInf", &h), bools(&[2], &[false, true]));
        assert!(run(is_nan, "IsNaN", 13, vec![], &[&i32s(&[1], &[1])]).is_err());
    }
}
