//! Binary arithmetic with numpy broadcasting: Add, Sub, Mul, Div.
//!
//! Both inputs have one numeric type T, the output T. Integers wrap on overflow (as numpy);
//! integer Div truncates toward zero (as C and the ONNX reference), a zero divisor gives 0
//! (numpy's result; the spec leaves it undefined). f16 and bf16 are computed in f32 and rounded
//! back, which is exact rounding of the true result.
//!
//! - Add <https://onnx.ai/onnx/operators/onnx__Add.html>, Sub
//!   <https://onnx.ai/onnx/operators/onnx__Sub.html>, Mul
//!   <https://onnx.ai/onnx/operators/onnx__Mul.html>, Div
//!   <https://onnx.ai/onnx/operators/onnx__Div.html>: 1 and 6 (attributes `broadcast`, `axis`:
//!   legacy broadcasting, before kiln's minimum opset 7 and not handled), 7 (numpy
//!   broadcasting), 13 (bf16), 14 (8- and 16-bit integers).

use super::broadcast::zip2;
use super::num::Arith;
use super::type_mismatch;
use crate::error::{RefError, Result};
use crate::ops::OpCtx;
use crate::value::Value;

/// A binary operation on any numeric element type.
pub(crate) trait BinOp {
    fn apply<T: Arith>(x: T, y: T) -> T;
}

pub(crate) struct AddOp;
impl BinOp for AddOp {
    fn apply<T: Arith>(x: T, y: T) -> T {
        x.add(y)
    }
}

struct SubOp;
impl BinOp for SubOp {
    fn apply<T: Arith>(x: T, y: T) -> T {
        x.sub(y)
    }
}

struct MulOp;
impl BinOp for MulOp {
    fn apply<T: Arith>(x: T, y: T) -> T {
        x.mul(y)
    }
}

struct DivOp;
impl BinOp for DivOp {
    fn apply<T: Arith>(x: T, y: T) -> T {
        x.div(y)
    }
}

/// Error for inputs `i` and `j` that are not both of one numeric type.
pub(crate) fn not_numeric_pair(
    ctx: &OpCtx<'_>,
    i: usize,
    a: &Value,
    j: usize,
    b: &Value,
) -> RefError {
    if a.dtype() == b.dtype() {
        ctx.bad_dtype(i, a)
    } else {
        type_mismatch(ctx, i, a, j, b)
    }
}

/// `O` of two values of one numeric type, broadcast together; `i`, `j` name them in errors.
pub(crate) fn apply_binary<O: BinOp>(
    ctx: &OpCtx<'_>,
    (i, a): (usize, &Value),
    (j, b): (usize, &Value),
) -> Result<Value> {
    Ok(
        numeric_zip!(a, b, (x, y, wrap) => wrap(zip2(ctx, x, y, O::apply)?),
        _ => return Err(not_numeric_pair(ctx, i, a, j, b))),
    )
}

fn binary<O: BinOp>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let (a, b) = (ctx.required(0)?, ctx.required(1)?);
    let b = super::broadcast::legacy_second_operand(ctx, a.shape(), b)?;
    Ok(vec![apply_binary::<O>(ctx, (0, a), (1, &b))?])
}

pub(crate) fn add(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    binary::<AddOp>(ctx)
}

pub(crate) fn sub(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    binary::<SubOp>(ctx)
}

pub(crate) fn mul(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    binary::<MulOp>(ctx)
}

pub(crate) fn div(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    binary::<DivOp>(ctx)
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    fn bin(f: crate::ops::OpFn, op: &str, a: &Value, b: &Value) -> Result<Value> {
        run(f, op, 14, vec![], &[a, b])
    }

    // Expected values by hand / numpy.
    #[test]
    fn broadcasting_f32() {
        let a = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f32s(&[3], &[10.0, 20.0, 30.0]);
        let want = f32s(&[2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        assert_eq!(bin(add, "Add", &a, &b).unwrap(), want);
        let want = f32s(&[2, 3], &[-9.0, -18.0, -27.0, -6.0, -15.0, -24.0]);
        assert_eq!(bin(sub, "Sub", &a, &b).unwrap(), want);
        let want = f32s(&[2, 3], &[10.0, 40.0, 90.0, 40.0, 100.0, 180.0]);
        assert_eq!(bin(mul, "Mul", &a, &b).unwrap(), want);
        let want = f32s(&[2, 3], &[0.1, 0.1, 0.1, 0.4, 0.25, 0.2]);
        assert_eq!(bin(div, "Div", &a, &b).unwrap(), want);
        // Scalar against a column: [2,1] + [] -> [2,1]; [2,1] * [1,3] -> [2,3].
        let col = f32s(&[2, 1], &[1.0, 2.0]);
        let s = f32s(&[], &[0.5]);
        assert_eq!(
            bin(add, "Add", &col, &s).unwrap(),
            f32s(&[2, 1], &[1.5, 2.5])
        );
        let row = f32s(&[1, 3], &[1.0, 2.0, 3.0]);
        let want = f32s(&[2, 3], &[1.0, 2.0, 3.0, 2.0, 4.0, 6.0]);
        assert_eq!(bin(mul, "Mul", &col, &row).unwrap(), want);
        // Empty dims broadcast.
        let e = f32s(&[0, 3], &[]);
        assert_eq!(bin(add, "Add", &e, &row).unwrap(), f32s(&[0, 3], &[]));
        let z = f32s(&[1], &[0.0]);
        let r = bin(div, "Div", &f32s(&[2], &[1.0, 0.0]), &z).unwrap();
        close(&r, &f32s(&[2], &[f32::INFINITY, f32::NAN]), 0.0);
    }

    #[test]
    fn integers() {
        let x = i32s(&[4], &[-7, 7, -7, 7]);
        let y = i32s(&[4], &[2, 2, -2, -2]);
        // Truncation toward zero, as the ONNX reference.
        assert_eq!(
            bin(div, "Div", &x, &y).unwrap(),
            i32s(&[4], &[-3, 3, 3, -3])
        );
        assert_eq!(
            bin(div, "Div", &x, &i32s(&[1], &[0])).unwrap(),
            i32s(&[4], &[0; 4])
        );
        // int8 100 + 100 wraps to -56 (numpy).
        let a = Value::I8(arr(&[1], &[100]));
        assert_eq!(
            bin(add, "Add", &a, &a).unwrap(),
            Value::I8(arr(&[1], &[-56]))
        );
        let u = Value::U8(arr(&[1], &[3]));
        let v = Value::U8(arr(&[1], &[5]));
        assert_eq!(
            bin(sub, "Sub", &u, &v).unwrap(),
            Value::U8(arr(&[1], &[254]))
        );
        assert_eq!(
            bin(mul, "Mul", &i64s(&[2], &[i64::MAX, 3]), &i64s(&[1], &[2])).unwrap(),
            i64s(&[2], &[-2, 6])
        );
    }

    #[test]
    fn halves_and_f64() {
        // np.float16(0.1) + np.float16(0.2) = 0.2998 (rounded once from the f32 sum).
        let r = bin(add, "Add", &f16s(&[1], &[0.1]), &f16s(&[1], &[0.2])).unwrap();
        assert_eq!(r, f16s(&[1], &[0.2998]));
        let r = bin(mul, "Mul", &bf16s(&[1], &[3.0]), &bf16s(&[1], &[1.5])).unwrap();
        assert_eq!(r, bf16s(&[1], &[4.5]));
        let r = bin(div, "Div", &f64s(&[1], &[1.0]), &f64s(&[1], &[3.0])).unwrap();
        assert_eq!(r, f64s(&[1], &[1.0 / 3.0]));
    }

    #[test]
    fn errors() {
        let e = bin(
            add,
            "Add",
            &f32s(&[2], &[1.0, 2.0]),
            &f32s(&[3], &[1.0, 2.0, 3.0]),
        );
        let msg = e.unwrap_err().to_string();
        assert!(
            msg.contains("do not broadcast") && msg.contains("[2]") && msg.contains("Add"),
            "{msg}"
        );
        let e = bin(add, "Add", &f32s(&[1], &[1.0]), &i64s(&[1], &[1]));
        assert!(e.unwrap_err().to_string().contains("same element type"));
        let b = bools(&[1], &[true]);
        assert!(
            bin(add, "Add", &b, &b)
                .unwrap_err()
                .to_string()
                .contains("bool")
        );
    }
}
