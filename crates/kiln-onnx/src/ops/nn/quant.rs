//! Linear quantisation: QuantizeLinear and DequantizeLinear. The output has x's shape.
//!
//! - [QuantizeLinear](https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html): 10, 13, 19,
//!   21, 23, 24, 25. The output type is the zero point's, uint8 without one; from 21 the
//!   `output_dtype` attribute may name it (and must agree with a zero point). 13 adds per-axis
//!   scales (`axis`, default 1), 19 `saturate` and 8-bit floats, 21 blocked scales
//!   (`block_size`); later versions add types (4-bit ones, which kiln does not support).
//! - [DequantizeLinear](https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html): 10, 13,
//!   19, 21, 23, 24, 25. The output is float up to 18, the scale's type from 19, and the
//!   `output_dtype` attribute's type where set (23+). The zero point has x's type.

use kiln_core::{DataType, Dim};

use super::common::{dims_match, dtype_attr, expect_outputs, int_attr, same_dtype};
use crate::error::Result;
use crate::ops::util::normalize_axis;
use crate::ops::{Fact, InferCtx, OpDef};

/// Checks the scale (input #1) and zero point (input #2) against x: a scalar, or per-axis
/// `[x.shape[axis]]` (13+), or blocked (21+, same rank as x).
fn check_scale(ctx: &InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 3)?;
    expect_outputs(ctx, 1, 1)?;
    ctx.required(0)?;
    ctx.required(1)?;
    let block = if ctx.opset >= 21 {
        int_attr(ctx, "block_size", 0)?
    } else {
        0
    };
    if block < 0 {
        return Err(ctx.err(
            format!("attribute 'block_size' is {block}"),
            "Use 0 (per-tensor or per-axis) or a positive block size",
        ));
    }
    let (Some(x), Some(scale)) = (ctx.input_shape(0), ctx.input_shape(1)) else {
        return Ok(());
    };
    if let (Some(zp), true) = (ctx.input_shape(2), ctx.input(2).is_some())
        && zp != scale
        && zp.rank() == scale.rank()
        && zp.is_fully_known()
        && scale.is_fully_known()
    {
        return Err(ctx.err(
            format!("the zero point has shape {zp} but the scale has {scale}"),
            "Give the zero point the scale's shape",
        ));
    }
    let per_tensor = scale.rank() == 0 || scale.dims() == [Dim::Known(1)];
    if per_tensor || block > 0 {
        return Ok(());
    }
    if ctx.opset < 13 || scale.rank() != 1 {
        return Err(ctx.err(
            format!(
                "the scale has shape {scale}; at opset {} it must be a scalar",
                ctx.opset
            ) + if ctx.opset >= 13 {
                " or 1-D (per axis)"
            } else {
                ""
            },
            "Fix the scale's shape",
        ));
    }
    let axis = normalize_axis(ctx, int_attr(ctx, "axis", 1)?, x.rank())?;
    if let (Some(want), Some(got)) = (x.dims().get(axis), scale.dims().first()) {
        dims_match(
            ctx,
            got,
            want,
            "the per-axis scale's length differs from x's dim at 'axis'",
        )?;
    }
    Ok(())
}

fn infer_quantize(ctx: &mut InferCtx<'_>) -> Result<()> {
    check_scale(ctx)?;
    let attr = if ctx.opset >= 21 {
        int_attr(ctx, "output_dtype", 0)?
    } else {
        0
    };
    let named = if attr != 0 {
        Some(dtype_attr(ctx, "output_dtype", attr)?)
    } else {
        None
    };
    let zp = if ctx.input(2).is_some() {
        Some(ctx.input_dtype(2))
    } else {
        None
    };
    let dtype = match (named, zp) {
        (Some(n), Some(Some(z))) if n != z => {
            return Err(ctx.err(
                format!("'output_dtype' is {n} but the zero point is {z}"),
                "Make them agree, or drop 'output_dtype'",
            ));
        }
        (Some(n), _) => Some(n),
        (None, Some(z)) => z,
        (None, None) => Some(DataType::U8),
    };
    let shape = ctx.input_shape(0).cloned();
    ctx.set_output(0, Fact::new(dtype, shape));
    Ok(())
}

fn infer_dequantize(ctx: &mut InferCtx<'_>) -> Result<()> {
    check_scale(ctx)?;
    if ctx.input(2).is_some() {
        same_dtype(ctx, 0, 2)?;
    }
    let attr = if ctx.opset >= 23 {
        int_attr(ctx, "output_dtype", 0)?
    } else {
        0
    };
    let dtype = if attr != 0 {
        Some(dtype_attr(ctx, "output_dtype", attr)?)
    } else if ctx.opset >= 19 {
        ctx.input_dtype(1)
    } else {
        Some(DataType::F32)
    };
    let shape = ctx.input_shape(0).cloned();
    ctx.set_output(0, Fact::new(dtype, shape));
    Ok(())
}

/// `QuantizeLinear`
pub(super) const QUANTIZE_LINEAR: OpDef = OpDef {
    op_type: "QuantizeLinear",
    domain: "",
    since_opset: 10,
    infer: infer_quantize,
};

/// `DequantizeLinear`
pub(super) const DEQUANTIZE_LINEAR: OpDef = OpDef {
    op_type: "DequantizeLinear",
    domain: "",
    since_opset: 10,
    infer: infer_dequantize,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nn::test_util::*;

    #[test]
    fn quantize_output_type() {
        let q = |opset, attrs, ins| infer(&QUANTIZE_LINEAR, opset, attrs, ins, 1).unwrap();
        let out = q(10, vec![], vec![f32s("batchx64"), f32s("")]);
        assert_eq!(
            (out[0].dtype, out_shape(&out)),
            (Some(DataType::U8), "[batch, 64]".into())
        );
        let out = q(
            13,
            vec![],
            vec![f32s("bx64"), f32s(""), t(DataType::I8, "")],
        );
        assert_eq!(out[0].dtype, Some(DataType::I8));
        let out = q(
            21,
            vec![int("output_dtype", 3)],
            vec![f32s("bx64"), f32s("")],
        );
        assert_eq!(out[0].dtype, Some(DataType::I8));
        // output_dtype is not read before 21.
        let out = q(
            19,
            vec![int("output_dtype", 3)],
            vec![f32s("bx64"), f32s("")],
        );
        assert_eq!(out[0].dtype, Some(DataType::U8));
        // Per-axis scale (13+).
        let out = q(
            13,
            vec![int("axis", 1)],
            vec![f32s("bx64x3x3"), f32s("64"), t(DataType::U8, "64")],
        );
        assert_eq!(out_shape(&out), "[b, 64, 3, 3]");
    }

    #[test]
    fn quantize_errors() {
        let q = |opset, attrs, ins| infer(&QUANTIZE_LINEAR, opset, attrs, ins, 1);
        let ins = vec![f32s("bx64"), f32s(""), t(DataType::U8, "")];
        assert_err(
            q(21, vec![int("output_dtype", 3)], ins),
            "QuantizeLinear",
            &["i8", "u8"],
        );
        let ins = vec![f32s("bx64"), f32s("")];
        assert_err(
            q(21, vec![int("output_dtype", 22)], ins),
            "QuantizeLinear",
            &["INT4"],
        );
        let ins = vec![f32s("bx64x3"), f32s("32")];
        assert_err(q(13, vec![], ins), "QuantizeLinear", &["32 vs 64"]);
        let ins = vec![f32s("bx64x3"), f32s("64")];
        assert_err(q(10, vec![], ins), "QuantizeLinear", &["must be a scalar"]);
        let ins = vec![f32s("bx64x3"), f32s("3")];
        assert_err(
            q(13, vec![int("axis", 3)], ins),
            "QuantizeLinear",
            &["axis 3"],
        );
        assert_err(
            q(13, vec![], vec![f32s("4")]),
            "QuantizeLinear",
            &["has 1 inputs"],
        );
    }

    #[test]
    fn dequantize_output_type_by_opset() {
        let ins = || {
            vec![
                t(DataType::I8, "batchx64"),
                t(DataType::F16, ""),
                t(DataType::I8, ""),
            ]
        };
        let dq = |opset, attrs| infer(&DEQUANTIZE_LINEAR, opset, attrs, ins(), 1).unwrap();
        assert_eq!(dq(13, vec![])[0].dtype, Some(DataType::F32));
        let out = dq(19, vec![]);
        assert_eq!(
            (out[0].dtype, out_shape(&out)),
            (Some(DataType::F16), "[batch, 64]".into())
        );
        assert_eq!(
            dq(23, vec![int("output_dtype", 1)])[0].dtype,
            Some(DataType::F32)
        );
        assert_eq!(
            dq(21, vec![int("output_dtype", 1)])[0].dtype,
            Some(DataType::F16)
        );
        let ins = vec![t(DataType::I8, "4"), f32s(""), t(DataType::U8, "")];
        assert_err(
            infer(&DEQUANTIZE_LINEAR, 13, vec![], ins, 1),
            "DequantizeLinear",
            &["u8"],
        );
        // Blocked scales (21+) are not checked against the per-axis rule.
        let ins = vec![t(DataType::I8, "4x64"), f32s("4x2")];
        assert!(infer(&DEQUANTIZE_LINEAR, 21, vec![int("block_size", 32)], ins, 1).is_ok());
    }
}
