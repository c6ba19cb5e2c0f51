//! QuantizeLinear and DequantizeLinear.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html>,
//! <https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html>.
//!
//! Opset history:
//! - 10: per-tensor scale and zero point (scalars); output uint8 by default or the zero
//!   point's type (uint8 / int8).
//! - 13: per-axis scale and zero point (1-D along `axis`, default 1).
//! - 19: float16 / bfloat16 scales, `saturate` (only for float8 outputs).
//! - 21: blocked quantization (`block_size`: scale has the input's rank, each scale covering
//!   `block_size` consecutive elements along `axis`); int16 / uint16 (and 4-bit / float8 types,
//!   which kiln does not support); QuantizeLinear's `output_dtype`.
//! - 23: DequantizeLinear's `output_dtype`; `precision` for the division (ignored: kiln divides in
//!   f64 and rounds once).
//!
//! Quantize: `y = saturate(round_half_to_even(x / scale) + zero_point)`.
//! Dequantize: `y = (x - zero_point) * scale`, in the scale's float type.

use kiln_core::DataType;
use ndarray::{ArrayD, IxDyn};

use super::common::{from_f64_as, to_f64_array};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

/// `param` (a scale or zero point) expanded to `shape` per the per-tensor / per-axis / blocked
/// rules.
fn expand(
    ctx: &OpCtx<'_>,
    param: &ArrayD<f64>,
    shape: &[usize],
    what: &str,
) -> Result<ArrayD<f64>> {
    let rank = shape.len();
    if param.ndim() == 0 || param.len() == 1 && param.ndim() <= 1 {
        let v = param.iter().next().copied().unwrap_or(0.0);
        return Ok(ArrayD::from_elem(IxDyn(shape), v));
    }
    let axis = ctx.axis(ctx.attr_int("axis", 1)?, rank)?;
    let block = ctx.attr_int("block_size", 0)?;
    if block <= 0 {
        // Per-axis: a 1-D parameter of the axis' size.
        if param.ndim() != 1 || param.len() != shape[axis] {
            return Err(ctx.err(
                format!(
                    "{what} has shape {:?}; per-axis quantization along axis {axis} needs [{}]",
                    param.shape(),
                    shape[axis]
                ),
                "Give a scalar (per tensor) or a 1-D tensor of the axis' size (per axis)",
            ));
        }
        let mut s = vec![1usize; rank];
        s[axis] = shape[axis];
        let p = param
            .clone()
            .into_shape_with_order(IxDyn(&s))
            .map_err(|e| ctx.err(format!("{what}: {e}"), "Check the parameter's shape"))?;
        return p
            .broadcast(IxDyn(shape))
            .map(|v| v.to_owned())
            .ok_or_else(|| ctx.err(format!("{what} does not broadcast"), "Check its shape"));
    }
    // Blocked: same rank; along `axis` each entry covers `block` elements.
    let block = block as usize;
    let ok_shape = param.ndim() == rank
        && (0..rank).all(|d| {
            if d == axis {
                param.shape()[d] == shape[d].div_ceil(block)
            } else {
                param.shape()[d] == shape[d]
            }
        });
    if !ok_shape {
        return Err(ctx.err(
            format!(
                "{what} has shape {:?}, which does not fit blocks of {block} along axis {axis} of {shape:?}",
                param.shape()
            ),
            "The parameter needs the input's shape with the axis divided by block_size (rounded up)",
        ));
    }
    Ok(ArrayD::from_shape_fn(IxDyn(shape), |mut idx| {
        idx[axis] /= block;
        param[&idx]
    }))
}

/// The range of an integer output type.
fn range(dt: DataType) -> Option<(f64, f64)> {
    Some(match dt {
        DataType::U8 => (0.0, 255.0),
        DataType::I8 => (-128.0, 127.0),
        DataType::U16 => (0.0, 65535.0),
        DataType::I16 => (-32768.0, 32767.0),
        _ => return None,
    })
}

fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

pub fn quantize_linear(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let scale = ctx.required(1)?;
    if !matches!(
        x.dtype(),
        DataType::F32 | DataType::F16 | DataType::BF16 | DataType::I32
    ) {
        return Err(ctx.bad_dtype(0, x));
    }
    let out_dt = match ctx.input(2) {
        Some(z) => z.dtype(),
        None => {
            let code = ctx.attr_int("output_dtype", 0)?;
            if code == 0 {
                DataType::U8
            } else {
                DataType::from_onnx_code(code as i32).ok_or_else(|| {
                    ctx.err(
                        format!("output_dtype {code} is not supported"),
                        "kiln quantizes to uint8, int8, uint16 or int16",
                    )
                })?
            }
        }
    };
    let Some((lo, hi)) = range(out_dt) else {
        return Err(ctx.err(
            format!("quantizing to {out_dt} is not supported"),
            "kiln quantizes to uint8, int8, uint16 or int16 (4-bit and float8 types are not supported)",
        ));
    };
    let shape = x.shape().to_vec();
    let s = expand(ctx, &to_f64_array(scale), &shape, "y_scale")?;
    let zp = match ctx.input(2) {
        Some(z) => expand(ctx, &to_f64_array(z), &shape, "y_zero_point")?,
        None => ArrayD::zeros(IxDyn(&shape)),
    };
    let xf = to_f64_array(x);
    // The division happens in the scale's precision in the spec; f32 inputs/scales give the
    // same quotient rounded to f32 before rounding to an integer.
    let scale_is_f32 = scale.dtype() == DataType::F32;
    let mut y = ArrayD::<f64>::zeros(IxDyn(&shape));
    ndarray::Zip::from(&mut y)
        .and(&xf)
        .and(&s)
        .and(&zp)
        .for_each(|y, &x, &s, &z| {
            let q = if scale_is_f32 {
                ((x as f32) / (s as f32)) as f64
            } else {
                x / s
            };
            *y = (round_half_even(q) + z).clamp(lo, hi);
        });
    Ok(vec![from_f64_as(out_dt, y)])
}

pub fn dequantize_linear(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let scale = ctx.required(1)?;
    if !matches!(
        x.dtype(),
        DataType::U8 | DataType::I8 | DataType::U16 | DataType::I16 | DataType::I32
    ) {
        return Err(ctx.bad_dtype(0, x));
    }
    if !scale.dtype().is_float() {
        return Err(ctx.bad_dtype(1, scale));
    }
    let shape = x.shape().to_vec();
    let s = expand(ctx, &to_f64_array(scale), &shape, "x_scale")?;
    let zp = match ctx.input(2) {
        Some(z) => {
            if z.dtype() != x.dtype() {
                return Err(ctx.err(
                    format!("x_zero_point is {} but x is {}", z.dtype(), x.dtype()),
                    "Give the zero point the input's type",
                ));
            }
            expand(ctx, &to_f64_array(z), &shape, "x_zero_point")?
        }
        None => ArrayD::zeros(IxDyn(&shape)),
    };
    let xf = to_f64_array(x);
    let scale_is_f32 = scale.dtype() == DataType::F32;
    let mut y = ArrayD::<f64>::zeros(IxDyn(&shape));
    ndarray::Zip::from(&mut y)
        .and(&xf)
        .and(&s)
        .and(&zp)
        .for_each(|y, &x, &s, &z| {
            *y = if scale_is_f32 {
                ((x - z) as f32 * s as f32) as f64
            } else {
                (x - z) * s
            };
        });
    let code = ctx.attr_int("output_dtype", 0)?;
    let like_dt = if ctx.opset >= 23 && code != 0 {
        DataType::from_onnx_code(code as i32)
            .filter(|d| d.is_float())
            .ok_or_else(|| {
                ctx.err(
                    format!("output_dtype {code} is not a supported float type"),
                    "Use float, float16 or bfloat16",
                )
            })?
    } else {
        scale.dtype()
    };
    Ok(vec![from_f64_as(like_dt, y)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_util::{node, run_op};

    fn f32v(shape: &[usize], v: Vec<f32>) -> Value {
        Value::F32(ArrayD::from_shape_vec(shape.to_vec(), v).unwrap())
    }

    #[test]
    fn quantize_per_tensor_rounds_half_to_even_and_saturates() {
        let x = f32v(&[6], vec![0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0]);
        let s = f32v(&[], vec![2.0]);
        let z = Value::U8(ArrayD::from_shape_vec(vec![], vec![128]).unwrap());
        let out = run_op(
            quantize_linear,
            &node("QuantizeLinear", &[]),
            13,
            &[Some(&x), Some(&s), Some(&z)],
        )
        .unwrap();
        // 0/2=0 -> 128; 1 -> 129; 1.5 -> 2 -> 130; 500 -> 255; -127 -> 1; -500 -> 0
        assert_eq!(
            out[0],
            Value::U8(ArrayD::from_shape_vec(vec![6], vec![128, 129, 130, 255, 1, 0]).unwrap())
        );
        let x = f32v(&[2], vec![2.5, 3.5]);
        let one = f32v(&[], vec![1.0]);
        let out = run_op(
            quantize_linear,
            &node("QuantizeLinear", &[]),
            13,
            &[Some(&x), Some(&one)],
        )
        .unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![2.0, 4.0]);
    }

    #[test]
    fn per_axis_and_dequantize_round_trip() {
        let x = f32v(&[2, 3], vec![1.0, 2.0, 3.0, -4.0, 5.0, 6.0]);
        let s = f32v(&[3], vec![1.0, 0.5, 0.25]);
        let z = Value::I8(ArrayD::from_shape_vec(vec![3], vec![0, 1, -1]).unwrap());
        let q = run_op(
            quantize_linear,
            &node("QuantizeLinear", &[]),
            13,
            &[Some(&x), Some(&s), Some(&z)],
        )
        .unwrap();
        assert_eq!(q[0].to_f64_vec(), vec![1.0, 5.0, 11.0, -4.0, 11.0, 23.0]);
        let d = run_op(
            dequantize_linear,
            &node("DequantizeLinear", &[]),
            13,
            &[Some(&q[0]), Some(&s), Some(&z)],
        )
        .unwrap();
        assert_eq!(d[0].to_f64_vec(), vec![1.0, 2.0, 3.0, -4.0, 5.0, 6.0]);
    }

    #[test]
    fn blocked_quantization() {
        let x = f32v(&[1, 4], vec![2.0, 4.0, 9.0, 12.0]);
        let s = f32v(&[1, 2], vec![2.0, 3.0]);
        let n = node(
            "QuantizeLinear",
            &[("axis", 1i64.into()), ("block_size", 2i64.into())],
        );
        let q = run_op(quantize_linear, &n, 21, &[Some(&x), Some(&s)]).unwrap();
        assert_eq!(q[0].to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
        let bad = f32v(&[1, 3], vec![1.0, 1.0, 1.0]);
        assert!(run_op(quantize_linear, &n, 21, &[Some(&x), Some(&bad)]).is_err());
    }
}
