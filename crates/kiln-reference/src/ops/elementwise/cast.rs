//! Type conversion and pass-through.
//!
//! - Cast <https://onnx.ai/onnx/operators/onnx__Cast.html>: input to the element type `to`
//!   (required; an ONNX `TensorProto.DataType` code). 1 (`to` a string in opset 1), 6 (`to` an
//!   int), 9 (string), 13 (bf16), 19 (`saturate`, float8 only), 21/23/25 (4-, 2-bit and more
//!   float8 types), 24 (`round_mode`, float8e8m0 only). kiln has no string, float8 or 4-bit
//!   values, so `saturate` and `round_mode` never matter and those targets are an error.
//! - CastLike <https://onnx.ai/onnx/operators/onnx__CastLike.html>: Cast to the element type of
//!   input `target_type`. 15, 19 (`saturate`), 21+ as Cast.
//! - Identity <https://onnx.ai/onnx/operators/onnx__Identity.html>: the input. 1, 13, 14
//!   (sequences), 16 (optionals), 19+ (more types); kiln values are tensors only.
//!
//! Conversions are numpy's `astype`: float to integer truncates toward zero (NaN and values out
//! of range are undefined in the spec; here NaN gives 0 and others saturate at 64 bits, then
//! wrap), integer to integer wraps, to float rounds to nearest even (f64 to f16 and bf16
//! directly, without double rounding), to bool is `x != 0` (NaN is true), from bool is 0 or 1.

use kiln_core::DataType;
use ndarray::ArrayD;

use super::num::Elem;
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn conv<S: Elem, D: Elem>(a: &ArrayD<S>) -> ArrayD<D> {
    a.mapv(|x| D::from_scalar(x.to_scalar()))
}

fn convert<S: Elem>(a: &ArrayD<S>, to: DataType) -> Value {
    match to {
        DataType::F32 => Value::F32(conv(a)),
        DataType::F64 => Value::F64(conv(a)),
        DataType::F16 => Value::F16(conv(a)),
        DataType::BF16 => Value::BF16(conv(a)),
        DataType::I8 => Value::I8(conv(a)),
        DataType::I16 => Value::I16(conv(a)),
        DataType::I32 => Value::I32(conv(a)),
        DataType::I64 => Value::I64(conv(a)),
        DataType::U8 => Value::U8(conv(a)),
        DataType::U16 => Value::U16(conv(a)),
        DataType::U32 => Value::U32(conv(a)),
        DataType::U64 => Value::U64(conv(a)),
        DataType::Bool => Value::Bool(conv(a)),
    }
}

/// `v` converted to element type `to`.
pub(crate) fn cast_value(v: &Value, to: DataType) -> Value {
    if v.dtype() == to {
        return v.clone();
    }
    crate::with_array!(v, a => convert(a, to))
}

pub(crate) fn cast(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let to = match ctx.node.attr_int("to") {
        Ok(Some(code)) => code,
        Ok(None) => {
            return Err(ctx.err(
                "attribute 'to' is missing",
                "Set 'to' to the ONNX TensorProto.DataType code of the target type",
            ));
        }
        Err(_) if ctx.opset < 6 => {
            return Err(ctx.err(
                "attribute 'to' is a string (Cast-1), which kiln does not read",
                "Convert the model to opset 6 or later",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let dt = i32::try_from(to).ok().and_then(DataType::from_onnx_code);
    let Some(dt) = dt else {
        let name = i32::try_from(to).map_or("unknown", DataType::onnx_code_name);
        return Err(ctx.err(
            format!("attribute to = {to} ({name}) is not an element type kiln supports"),
            "Cast to a float, integer or bool type",
        ));
    };
    Ok(vec![cast_value(x, dt)])
}

pub(crate) fn cast_like(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let (x, like) = (ctx.required(0)?, ctx.required(1)?);
    Ok(vec![cast_value(x, like.dtype())])
}

pub(crate) fn identity(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![ctx.required(0)?.clone()])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::ops::elementwise::testing::*;

    fn to(x: &Value, dt: DataType) -> Value {
        run(
            cast,
            "Cast",
            21,
            vec![ai("to", i64::from(dt.onnx_code()))],
            &[x],
        )
        .unwrap()
    }

    // Expected values: numpy astype (by hand for the rounding cases).
    #[test]
    fn float_to_int_truncates() {
        let x = f32s(&[4], &[-2.7, 2.7, 0.5, -0.5]);
        assert_eq!(to(&x, DataType::I32), i32s(&[4], &[-2, 2, 0, 0]));
        assert_eq!(to(&x, DataType::I64), i64s(&[4], &[-2, 2, 0, 0]));
        let y = to(&f32s(&[2], &[-1.0, 300.0]), DataType::U8);
        assert_eq!(y, Value::U8(arr(&[2], &[255, 44])));
        let h = to(&f16s(&[2], &[-3.5, 65504.0]), DataType::I64);
        assert_eq!(h, i64s(&[2], &[-3, 65504]));
    }

    #[test]
    fn to_halves_round_once() {
        // 1 + 2^-11 + 2^-40 in f64 rounds up to 1 + 2^-10 in f16 (through f32 it would tie
        // and round down to 1).
        let x = f64s(&[1], &[1.0 + 2f64.powi(-11) + 2f64.powi(-40)]);
        assert_eq!(
            to(&x, DataType::F16),
            Value::F16(arr(&[1], &[f16::from_f64(1.0009765625)]))
        );
        // bf16 ties to even: 1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6.
        let x = f32s(&[2], &[1.00390625, 1.01171875]);
        assert_eq!(
            to(&x, DataType::BF16),
            Value::BF16(arr(&[2], &[bf16::ONE, bf16::from_f32(1.015625)]))
        );
        assert_eq!(
            to(&i64s(&[1], &[70000]), DataType::F16),
            Value::F16(arr(&[1], &[f16::INFINITY]))
        );
        assert_eq!(
            to(&f16s(&[1], &[0.1]), DataType::F32),
            f32s(&[1], &[f16::from_f32(0.1).to_f32()])
        );
    }

    #[test]
    fn ints_and_bools() {
        assert_eq!(
            to(&i32s(&[2], &[-1, 256]), DataType::U8),
            Value::U8(arr(&[2], &[255, 0]))
        );
        assert_eq!(
            to(&Value::U8(arr(&[1], &[200])), DataType::I8),
            Value::I8(arr(&[1], &[-56]))
        );
        assert_eq!(
            to(&i64s(&[1], &[i64::MAX]), DataType::U64),
            Value::U64(arr(&[1], &[i64::MAX as u64]))
        );
        let b = bools(&[2], &[true, false]);
        assert_eq!(to(&b, DataType::F32), f32s(&[2], &[1.0, 0.0]));
        assert_eq!(to(&b, DataType::I64), i64s(&[2], &[1, 0]));
        let f = f32s(&[3], &[0.0, f32::NAN, -2.0]);
        assert_eq!(to(&f, DataType::Bool), bools(&[3], &[false, true, true]));
        assert_eq!(
            to(&i32s(&[2], &[0, 7]), DataType::Bool),
            bools(&[2], &[false, true])
        );
        assert_eq!(to(&b, DataType::Bool), b);
        assert_eq!(to(&i64s(&[1], &[3]), DataType::F64), f64s(&[1], &[3.0]));
    }

    #[test]
    fn cast_like_identity_errors() {
        let x = f32s(&[2], &[1.5, -2.5]);
        let like = i64s(&[0], &[]);
        assert_eq!(
            run(cast_like, "CastLike", 15, vec![], &[&x, &like]).unwrap(),
            i64s(&[2], &[1, -2])
        );
        assert_eq!(run(identity, "Identity", 13, vec![], &[&x]).unwrap(), x);
        let e = run(cast, "Cast", 13, vec![ai("to", 8)], &[&x])
            .unwrap_err()
            .to_string();
        assert!(e.contains("STRING"), "{e}");
        let e = run(cast, "Cast", 13, vec![ai("to", 1 << 40)], &[&x])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown"), "{e}");
        assert!(
            run(cast, "Cast", 13, vec![], &[&x])
                .unwrap_err()
                .to_string()
                .contains("'to'")
        );
        let e = run(cast, "Cast", 1, vec![astr("to", "FLOAT")], &[&x])
            .unwrap_err()
            .to_string();
        assert!(e.contains("opset 6"), "{e}");
    }
}
