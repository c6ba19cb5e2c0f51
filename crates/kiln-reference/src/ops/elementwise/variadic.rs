//! Variadic elementwise ops with numpy broadcasting of all inputs: Min, Max, Sum, Mean.
//!
//! The inputs (one or more) share one type T, folded left to right (as the ONNX reference, so
//! f16 sums round after each addition). Min and Max propagate NaN (numpy's `minimum` and
//! `maximum`). Mean is the sum divided by the number of inputs, in T.
//!
//! - Min <https://onnx.ai/onnx/operators/onnx__Min.html>, Max
//!   <https://onnx.ai/onnx/operators/onnx__Max.html>: 1, 6, 8 (multidirectional broadcasting;
//!   before, all shapes equal), 12 (integer types), 13 (bf16).
//! - Sum <https://onnx.ai/onnx/operators/onnx__Sum.html>, Mean
//!   <https://onnx.ai/onnx/operators/onnx__Mean.html>: 1, 6, 8 (broadcasting), 13 (bf16).
//!   Integer inputs are accepted too (wrapping sum; Mean truncates).

use super::arith::{AddOp, BinOp, apply_binary};
use super::num::{Arith, Elem, Scalar};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

struct MinOp;
impl BinOp for MinOp {
    fn apply<T: Arith>(x: T, y: T) -> T {
        x.min_nan(y)
    }
}

struct MaxOp;
impl BinOp for MaxOp {
    fn apply<T: Arith>(x: T, y: T) -> T {
        x.max_nan(y)
    }
}

/// `O` folded over every input; also returns the input count.
fn fold<O: BinOp>(ctx: &OpCtx<'_>) -> Result<(Value, usize)> {
    let n = ctx.num_inputs();
    if n == 0 {
        return Err(ctx.err(
            "has no inputs",
            format!("Give {} at least one input", ctx.node.op_type),
        ));
    }
    let first = ctx.required(0)?;
    if !first.dtype().is_float() && !first.dtype().is_integer() {
        return Err(ctx.bad_dtype(0, first));
    }
    let mut acc = first.clone();
    for i in 1..n {
        acc = apply_binary::<O>(ctx, (0, &acc), (i, ctx.required(i)?))?;
    }
    Ok((acc, n))
}

pub(crate) fn min(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![fold::<MinOp>(ctx)?.0])
}

pub(crate) fn max(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![fold::<MaxOp>(ctx)?.0])
}

pub(crate) fn sum(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![fold::<AddOp>(ctx)?.0])
}

pub(crate) fn mean(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let (s, n) = fold::<AddOp>(ctx)?;
    let count = Scalar::Int(n as i128);
    let y = numeric!(&s, (a, wrap) => wrap(a.mapv(|x| x.div(Elem::from_scalar(count)))),
        other => return Err(ctx.bad_dtype(0, other)));
    Ok(vec![y])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    fn var(f: crate::ops::OpFn, op: &str, ins: &[&Value]) -> Result<Value> {
        run(f, op, 13, vec![], ins)
    }

    // Expected values by hand / numpy.
    #[test]
    fn min_max() {
        let a = f32s(&[3], &[1.0, 5.0, f32::NAN]);
        let b = f32s(&[2, 1], &[2.0, 4.0]);
        let want = f32s(&[2, 3], &[1.0, 2.0, f32::NAN, 1.0, 4.0, f32::NAN]);
        close(&var(min, "Min", &[&a, &b]).unwrap(), &want, 0.0);
        let want = f32s(&[2, 3], &[2.0, 5.0, f32::NAN, 4.0, 5.0, f32::NAN]);
        close(&var(max, "Max", &[&a, &b]).unwrap(), &want, 0.0);
        // NaN in a later input propagates too.
        let r = var(max, "Max", &[&b, &f32s(&[1], &[f32::NAN])]).unwrap();
        close(&r, &f32s(&[2, 1], &[f32::NAN, f32::NAN]), 0.0);
        let c = i32s(&[3], &[3, -1, 2]);
        let d = i32s(&[3], &[0, 0, 9]);
        let e = i32s(&[], &[1]);
        assert_eq!(
            var(max, "Max", &[&c, &d, &e]).unwrap(),
            i32s(&[3], &[3, 1, 9])
        );
        assert_eq!(
            var(min, "Min", &[&c, &d, &e]).unwrap(),
            i32s(&[3], &[0, -1, 1])
        );
        assert_eq!(var(min, "Min", &[&c]).unwrap(), c);
    }

    #[test]
    fn sum_mean() {
        let a = f32s(&[2], &[1.0, 2.0]);
        let b = f32s(&[2], &[3.0, 5.0]);
        let c = f32s(&[2], &[4.0, 4.0]);
        assert_eq!(
            var(sum, "Sum", &[&a, &b, &c]).unwrap(),
            f32s(&[2], &[8.0, 11.0])
        );
        // np.mean(...) in float32: [2.6666667, 3.6666667]
        let m = var(mean, "Mean", &[&a, &b, &c]).unwrap();
        assert_eq!(m, f32s(&[2], &[8.0 / 3.0, 11.0 / 3.0]));
        // f16 rounds after each step: (f16[1,2,3] + 0.1 + 0.1) / 3 = [0.3997, 0.733, 1.066].
        let h = f16s(&[3], &[1.0, 2.0, 3.0]);
        let t = f16s(&[1], &[0.1]);
        assert_eq!(
            var(mean, "Mean", &[&h, &t, &t]).unwrap(),
            f16s(&[3], &[0.3997, 0.733, 1.066])
        );
        let s = var(
            sum,
            "Sum",
            &[&f32s(&[2, 1], &[1.0, 2.0]), &f32s(&[3], &[0.0, 10.0, 20.0])],
        );
        assert_eq!(
            s.unwrap(),
            f32s(&[2, 3], &[1.0, 11.0, 21.0, 2.0, 12.0, 22.0])
        );
        assert_eq!(var(mean, "Mean", &[&a]).unwrap(), a);
    }

    #[test]
    fn errors() {
        assert!(
            var(sum, "Sum", &[])
                .unwrap_err()
                .to_string()
                .contains("no inputs")
        );
        let e = var(max, "Max", &[&f32s(&[1], &[1.0]), &f64s(&[1], &[1.0])]);
        assert!(e.unwrap_err().to_string().contains("#1"));
        let e = var(
            sum,
            "Sum",
            &[&f32s(&[2], &[1.0, 1.0]), &f32s(&[3], &[1.0; 3])],
        );
        assert!(e.unwrap_err().to_string().contains("broadcast"));
        assert!(var(min, "Min", &[&bools(&[1], &[true])]).is_err());
    }
}
