//! Pow <https://onnx.ai/onnx/operators/onnx__Pow.html>: `X ^ Y` elementwise, numpy
//! broadcasting; the output has X's type.
//!
//! Opset history: 1 (legacy `broadcast`/`axis` attributes, before kiln's minimum opset 7), 7
//! (numpy broadcasting; X, Y one float type), 12 (X int32/int64/float, Y any numeric type,
//! possibly different from X's), 13 (bf16 X), 15 (bf16 Y).
//!
//! As the ONNX reference (numpy `power` then `astype(X's type)`): integer ^ non-negative integer
//! is exact integer power, wrapping on overflow; anything involving a float or a negative
//! integer exponent is computed in floating point and cast back (integers truncate toward
//! zero). Floating point is f32 when both types are f32/f16/bf16, else f64.

use ndarray::ArrayD;

use super::broadcast::zip2;
use super::num::{Elem, Scalar};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;
use kiln_core::DataType;

/// `b ^ e` for `e >= 0`, wrapping.
fn int_pow(mut b: i128, mut e: i128) -> i128 {
    let mut r: i128 = 1;
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    r
}

fn pow_scalar(b: Scalar, e: Scalar, in_f32: bool) -> Scalar {
    match (b, e) {
        (Scalar::Int(b), Scalar::Int(e)) if e >= 0 => Scalar::Int(int_pow(b, e)),
        _ => {
            let (b, e) = (b.as_f64(), e.as_f64());
            if in_f32 {
                Scalar::Float(f64::from((b as f32).powf(e as f32)))
            } else {
                Scalar::Float(b.powf(e))
            }
        }
    }
}

fn is_f32ish(d: DataType) -> bool {
    matches!(d, DataType::F32 | DataType::F16 | DataType::BF16)
}

pub(crate) fn pow(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let (x, e) = (ctx.required(0)?, ctx.required(1)?);
    let e = &*super::broadcast::legacy_second_operand(ctx, x.shape(), e)?;
    let in_f32 = is_f32ish(x.dtype()) && is_f32ish(e.dtype());
    let exps: ArrayD<Scalar> = numeric!(e, (a, _wrap) => a.mapv(Elem::to_scalar),
        other => return Err(ctx.bad_dtype(1, other)));
    let y = numeric!(x,
        (a, wrap) => wrap(zip2(ctx, a, &exps, |b, s| Elem::from_scalar(pow_scalar(b.to_scalar(), s, in_f32)))?),
        other => return Err(ctx.bad_dtype(0, other)));
    Ok(vec![y])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    fn p(x: &Value, e: &Value) -> Result<Value> {
        run(pow, "Pow", 15, vec![], &[x, e])
    }

    // Expected values from numpy: np.power(...).astype(X's dtype).
    #[test]
    fn floats() {
        let r = p(
            &f32s(&[3], &[2.0, 4.0, -8.0]),
            &f32s(&[3], &[0.5, -1.0, 1.0 / 3.0]),
        )
        .unwrap();
        close(&r, &f32s(&[3], &[1.4142135, 0.25, f32::NAN]), 1e-7);
        // Broadcast exponent, f32 base with int64 exponent: [8.0, 0.012345679].
        let r = p(&f32s(&[2], &[2.0, 9.0]), &i64s(&[2], &[3, -2])).unwrap();
        assert_eq!(r, f32s(&[2], &[8.0, 1.0 / 81.0]));
        let r = p(&f32s(&[2, 1], &[2.0, 3.0]), &f32s(&[2], &[2.0, 3.0])).unwrap();
        assert_eq!(r, f32s(&[2, 2], &[4.0, 8.0, 9.0, 27.0]));
        // np.float16(1.5) ** np.float16(3.3) = 3.812
        assert_eq!(
            p(&f16s(&[1], &[1.5]), &f16s(&[1], &[3.3])).unwrap(),
            f16s(&[1], &[3.812])
        );
        let r = p(&f64s(&[1], &[2.0]), &f64s(&[1], &[0.5])).unwrap();
        assert_eq!(r, f64s(&[1], &[std::f64::consts::SQRT_2]));
    }

    #[test]
    fn integers() {
        let r = p(&i64s(&[3], &[2, -3, 5]), &i64s(&[3], &[10, 3, 0])).unwrap();
        assert_eq!(r, i64s(&[3], &[1024, -27, 1]));
        // int32 3 ** 40 wraps: 689956897 (numpy).
        assert_eq!(
            p(&i32s(&[1], &[3]), &i32s(&[1], &[40])).unwrap(),
            i32s(&[1], &[689956897])
        );
        // Float exponent: computed in f64 and truncated: [1, 9, 0].
        let r = p(&i32s(&[3], &[2, 3, 7]), &f32s(&[3], &[0.5, 2.0, -1.0])).unwrap();
        assert_eq!(r, i32s(&[3], &[1, 9, 0]));
        // Negative integer exponent: 1/x^n truncated.
        let r = p(&i32s(&[3], &[2, 1, -1]), &i32s(&[1], &[-3])).unwrap();
        assert_eq!(r, i32s(&[3], &[0, 1, -1]));
        assert_eq!(
            p(&i32s(&[1], &[2]), &Value::U8(arr(&[1], &[5]))).unwrap(),
            i32s(&[1], &[32])
        );
    }

    #[test]
    fn errors() {
        assert!(p(&bools(&[1], &[true]), &f32s(&[1], &[1.0])).is_err());
        assert!(p(&f32s(&[1], &[1.0]), &bools(&[1], &[true])).is_err());
        assert!(p(&f32s(&[2], &[1.0, 1.0]), &f32s(&[3], &[1.0; 3])).is_err());
    }
}
