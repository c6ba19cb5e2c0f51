//! Shrink <https://onnx.ai/onnx/operators/onnx__Shrink.html>: `x + bias` where `x < -lambd`,
//! `x - bias` where `x > lambd`, else 0. Attributes `bias` = 0, `lambd` = 0.5. Opset 9 (floats
//! and integers). Integers are computed in f64 and truncated back (the reference's `astype`).

use super::float_unary;
use super::num::{Elem, Float, Scalar};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn shrink_of<T: Float>(x: T, bias: f64, lambd: f64) -> T {
    if x < -T::c(lambd) {
        x + T::c(bias)
    } else if x > T::c(lambd) {
        x - T::c(bias)
    } else {
        T::c(0.0)
    }
}

pub(crate) fn shrink(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let bias = f64::from(ctx.attr_float("bias", 0.0)?);
    let lambd = f64::from(ctx.attr_float("lambd", 0.5)?);
    let x = ctx.required(0)?;
    if x.dtype().is_integer() {
        let y = numeric!(x,
            (a, wrap) => wrap(a.mapv(|v| Elem::from_scalar(Scalar::Float(shrink_of(v.to_f64(), bias, lambd))))),
            other => return Err(ctx.bad_dtype(0, other)));
        return Ok(vec![y]);
    }
    Ok(vec![float_unary!(ctx, |x: T| shrink_of(x, bias, lambd))?])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    // Expected values by hand from the formula.
    #[test]
    fn values() {
        let x = f32s(&[5], &[-2.0, -0.5, 0.0, 0.5, 2.0]);
        let y = run(shrink, "Shrink", 9, vec![], &[&x]).unwrap();
        assert_eq!(y, f32s(&[5], &[-2.0, 0.0, 0.0, 0.0, 2.0]));
        let attrs = vec![af("lambd", 1.0), af("bias", 0.5)];
        let y = run(shrink, "Shrink", 9, attrs.clone(), &[&x]).unwrap();
        assert_eq!(y, f32s(&[5], &[-1.5, 0.0, 0.0, 0.0, 1.5]));
        let y = run(
            shrink,
            "Shrink",
            9,
            attrs.clone(),
            &[&f64s(&[2], &[-2.0, 3.0])],
        )
        .unwrap();
        assert_eq!(y, f64s(&[2], &[-1.5, 2.5]));
        // Integers: -3 + 1.5 = -1.5 -> -1, 3 - 1.5 = 1.5 -> 1.
        let attrs = vec![af("lambd", 1.0), af("bias", 1.5)];
        let y = run(shrink, "Shrink", 9, attrs, &[&i32s(&[3], &[-3, 0, 3])]).unwrap();
        assert_eq!(y, i32s(&[3], &[-1, 0, 1]));
        assert!(run(shrink, "Shrink", 9, vec![], &[&bools(&[1], &[true])]).is_err());
    }
}
