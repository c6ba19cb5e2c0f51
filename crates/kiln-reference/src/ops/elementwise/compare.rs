//! Comparisons (bool output) and logic on bools, with numpy broadcasting.
//!
//! - Equal <https://onnx.ai/onnx/operators/onnx__Equal.html>: 1, 7 (broadcasting; bool and
//!   int32/64), 11 (all numeric types), 13 (bf16), 19 (string, which kiln has no values of).
//! - Less <https://onnx.ai/onnx/operators/onnx__Less.html>, Greater
//!   <https://onnx.ai/onnx/operators/onnx__Greater.html>: 1, 7 (broadcasting), 9 (integers),
//!   13 (bf16).
//! - LessOrEqual <https://onnx.ai/onnx/operators/onnx__LessOrEqual.html>, GreaterOrEqual
//!   <https://onnx.ai/onnx/operators/onnx__GreaterOrEqual.html>: 12, 16 (bf16).
//! - Not <https://onnx.ai/onnx/operators/onnx__Not.html>: 1.
//! - And, Or, Xor <https://onnx.ai/onnx/operators/onnx__And.html>: 1, 7 (broadcasting).
//!
//! Comparisons involving NaN are false (Equal too), and -0 equals +0, as IEEE and numpy.

use super::arith::not_numeric_pair;
use super::broadcast::zip2;
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

/// Two values of one type (any), compared elementwise with `$op`.
macro_rules! compare_op {
    ($name:ident, $op:tt) => {
        pub(crate) fn $name(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
            let (a, b) = (ctx.required(0)?, ctx.required(1)?);
            let y = all_zip!(a, b, (x, y, _wrap) => Value::Bool(zip2(ctx, x, y, |p, q| p $op q)?),
                _ => return Err(not_numeric_pair(ctx, 0, a, 1, b)));
            Ok(vec![y])
        }
    };
}

compare_op!(equal, ==);
compare_op!(less, <);
compare_op!(greater, >);
compare_op!(less_or_equal, <=);
compare_op!(greater_or_equal, >=);

/// Two bool values combined elementwise with `$f`.
macro_rules! logic_op {
    ($name:ident, $f:expr) => {
        pub(crate) fn $name(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
            let (a, b) = (ctx.required(0)?, ctx.required(1)?);
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => Ok(vec![Value::Bool(zip2(ctx, x, y, $f)?)]),
                (Value::Bool(_), other) => Err(ctx.bad_dtype(1, other)),
                (other, _) => Err(ctx.bad_dtype(0, other)),
            }
        }
    };
}

logic_op!(and, |p: bool, q: bool| p && q);
logic_op!(or, |p: bool, q: bool| p || q);
logic_op!(xor, |p: bool, q: bool| p ^ q);

pub(crate) fn not(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    match ctx.required(0)? {
        Value::Bool(a) => Ok(vec![Value::Bool(a.mapv(|p| !p))]),
        other => Err(ctx.bad_dtype(0, other)),
    }
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    fn bin(f: crate::ops::OpFn, op: &str, a: &Value, b: &Value) -> Result<Value> {
        run(f, op, 16, vec![], &[a, b])
    }

    #[test]
    fn comparisons() {
        let a = f32s(&[2, 2], &[1.0, 2.0, 3.0, f32::NAN]);
        let b = f32s(&[2], &[2.0, 2.0]);
        let t = |v: [bool; 4]| bools(&[2, 2], &v);
        assert_eq!(
            bin(equal, "Equal", &a, &b).unwrap(),
            t([false, true, false, false])
        );
        assert_eq!(
            bin(less, "Less", &a, &b).unwrap(),
            t([true, false, false, false])
        );
        assert_eq!(
            bin(greater, "Greater", &a, &b).unwrap(),
            t([false, false, true, false])
        );
        assert_eq!(
            bin(less_or_equal, "LessOrEqual", &a, &b).unwrap(),
            t([true, true, false, false])
        );
        assert_eq!(
            bin(greater_or_equal, "GreaterOrEqual", &a, &b).unwrap(),
            t([false, true, true, false])
        );
        let z = bin(equal, "Equal", &f32s(&[1], &[0.0]), &f32s(&[1], &[-0.0])).unwrap();
        assert_eq!(z, bools(&[1], &[true]));
        let i = bin(less, "Less", &i64s(&[3], &[-1, 5, 7]), &i64s(&[], &[5])).unwrap();
        assert_eq!(i, bools(&[3], &[true, false, false]));
        let bb = bin(
            equal,
            "Equal",
            &bools(&[2], &[true, false]),
            &bools(&[1], &[true]),
        )
        .unwrap();
        assert_eq!(bb, bools(&[2], &[true, false]));
        let h = bin(
            greater,
            "Greater",
            &f16s(&[2], &[0.5, -1.0]),
            &f16s(&[1], &[0.0]),
        )
        .unwrap();
        assert_eq!(h, bools(&[2], &[true, false]));
        assert!(bin(equal, "Equal", &f32s(&[1], &[0.0]), &i32s(&[1], &[0])).is_err());
        assert!(
            bin(
                less,
                "Less",
                &f32s(&[2], &[0.0, 1.0]),
                &f32s(&[3], &[0.0; 3])
            )
            .is_err()
        );
    }

    #[test]
    fn logic() {
        let a = bools(&[2, 2], &[false, false, true, true]);
        let b = bools(&[2], &[false, true]);
        let t = |v: [bool; 4]| bools(&[2, 2], &v);
        assert_eq!(
            bin(and, "And", &a, &b).unwrap(),
            t([false, false, false, true])
        );
        assert_eq!(bin(or, "Or", &a, &b).unwrap(), t([false, true, true, true]));
        assert_eq!(
            bin(xor, "Xor", &a, &b).unwrap(),
            t([false, true, true, false])
        );
        assert_eq!(
            run(not, "Not", 1, vec![], &[&b]).unwrap(),
            bools(&[2], &[true, false])
        );
        assert!(
            bin(and, "And", &a, &i32s(&[1], &[1]))
                .unwrap_err()
                .to_string()
                .contains("#1")
        );
        assert!(run(not, "Not", 1, vec![], &[&i32s(&[1], &[1])]).is_err());
    }
}
