//! Activations with more than one input or an axis: Clip, PRelu, Softmax, LogSoftmax.
//!
//! - [Clip](https://onnx.ai/onnx/operators/onnx__Clip.html): 1, 6, 11, 12, 13. Up to 10 the
//!   bounds are the `min`/`max` attributes; from 11 they are optional scalar inputs of the
//!   input's type. The output has the input's type and shape either way.
//! - [PRelu](https://onnx.ai/onnx/operators/onnx__PRelu.html): 1, 6, 7, 9, 16. From 7 the
//!   slope broadcasts one way to X (before, it had X's shape or one element: a special case).
//! - [Softmax](https://onnx.ai/onnx/operators/onnx__Softmax.html),
//!   [LogSoftmax](https://onnx.ai/onnx/operators/onnx__LogSoftmax.html): 1, 11, 13. Up to 12
//!   the input is coerced to 2-D at `axis` (default 1); from 13 the op runs along one `axis`
//!   (default -1). The output shape is the input's in both forms.

use super::common::{expect_outputs, int_attr, pass_through, unidirectional};
use crate::error::Result;
use crate::ops::util::normalize_axis;
use crate::ops::{InferCtx, OpDef};

fn infer_clip(ctx: &mut InferCtx<'_>) -> Result<()> {
    let max_inputs = if ctx.opset >= 11 { 3 } else { 1 };
    ctx.expect_inputs(1, max_inputs)?;
    expect_outputs(ctx, 1, 1)?;
    for (i, what) in [(1, "min"), (2, "max")] {
        if ctx.input(i).is_none() {
            continue;
        }
        super::common::same_dtype(ctx, 0, i)?;
        if let Some(s) = ctx.input_shape(i)
            && s.element_count().ok().flatten().is_some_and(|n| n != 1)
        {
            return Err(ctx.err(
                format!("bound '{what}' (input #{i}) has shape {s}; it must be a scalar"),
                format!("Give '{what}' as a single value"),
            ));
        }
    }
    pass_through(ctx, 0)
}

fn infer_prelu(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    expect_outputs(ctx, 1, 1)?;
    super::common::same_dtype(ctx, 0, 1)?;
    if let (Some(x), Some(slope)) = (ctx.input_shape(0), ctx.input_shape(1)) {
        // Before opset 7 a 1-D slope of C values applies per channel (axis 1).
        let per_channel =
            ctx.opset < 7 && slope.rank() == 1 && x.rank() >= 2 && slope.dims()[0] == x.dims()[1];
        if !per_channel {
            unidirectional(ctx, x, slope, "slope (input #1)")?;
        }
    }
    pass_through(ctx, 0)
}

fn infer_softmax(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    expect_outputs(ctx, 1, 1)?;
    let axis = int_attr(ctx, "axis", if ctx.opset >= 13 { -1 } else { 1 })?;
    if let Some(s) = ctx.input_shape(0) {
        // Before 13 a rank-0 input is not allowed either: the 2-D coercion needs an axis.
        normalize_axis(ctx, axis, s.rank())?;
    }
    pass_through(ctx, 0)
}

/// `Clip`
pub(super) const CLIP: OpDef = OpDef {
    op_type: "Clip",
    domain: "",
    since_opset: 1,
    infer: infer_clip,
};

/// `PRelu`
pub(super) const PRELU: OpDef = OpDef {
    op_type: "PRelu",
    domain: "",
    since_opset: 1,
    infer: infer_prelu,
};

/// `Softmax`
pub(super) const SOFTMAX: OpDef = OpDef {
    op_type: "Softmax",
    domain: "",
    since_opset: 1,
    infer: infer_softmax,
};

/// `LogSoftmax`
pub(super) const LOG_SOFTMAX: OpDef = OpDef {
    op_type: "LogSoftmax",
    domain: "",
    since_opset: 1,
    infer: infer_softmax,
};

#[cfg(test)]
mod tests {
    use kiln_core::DataType;

    use super::*;
    use crate::ops::nn::test_util::*;

    #[test]
    fn clip_bounds_by_opset() {
        let out = infer(
            &CLIP,
            13,
            vec![],
            vec![f32s("batchx8"), f32s(""), f32s("")],
            1,
        );
        assert_eq!(out_shape(&out.unwrap()), "[batch, 8]");
        // min omitted, max given.
        let out = infer(&CLIP, 13, vec![], vec![f32s("batchx8"), None, f32s("1")], 1);
        assert_eq!(out_shape(&out.unwrap()), "[batch, 8]");
        let out = infer(&CLIP, 6, vec![float("min", 0.0)], vec![f32s("2x8")], 1).unwrap();
        assert_eq!(out_shape(&out), "[2, 8]");
        assert_err(
            infer(&CLIP, 6, vec![], vec![f32s("2"), f32s("")], 1),
            "Clip",
            &["has 2 inputs", "1 to 1"],
        );
        assert_err(
            infer(&CLIP, 13, vec![], vec![f32s("2"), f32s("2")], 1),
            "Clip",
            &["'min'", "scalar"],
        );
        assert_err(
            infer(&CLIP, 13, vec![], vec![f32s("2"), t(DataType::F64, "")], 1),
            "Clip",
            &["f64"],
        );
    }

    #[test]
    fn prelu_slope_broadcasts_to_x() {
        let out = infer(
            &PRELU,
            16,
            vec![],
            vec![f32s("batchx64x56x56"), f32s("64x1x1")],
            1,
        );
        assert_eq!(out_shape(&out.unwrap()), "[batch, 64, 56, 56]");
        let out = infer(
            &PRELU,
            9,
            vec![],
            vec![f32s("batchx64x56x56"), f32s("1")],
            1,
        );
        assert_eq!(out_shape(&out.unwrap()), "[batch, 64, 56, 56]");
        assert_err(
            infer(
                &PRELU,
                16,
                vec![],
                vec![f32s("1x64x8x8"), f32s("32x1x1")],
                1,
            ),
            "PRelu",
            &["slope", "does not broadcast"],
        );
        assert_err(
            infer(&PRELU, 16, vec![], vec![f32s("64"), f32s("2x64")], 1),
            "PRelu",
            &["does not broadcast"],
        );
    }

    #[test]
    fn softmax_axis_defaults_and_range() {
        for def in [&SOFTMAX, &LOG_SOFTMAX] {
            let out = infer(def, 13, vec![], vec![f32s("batchx12xseqxseq")], 1).unwrap();
            assert_eq!(out_shape(&out), "[batch, 12, seq, seq]");
            let out = infer(def, 11, vec![int("axis", -1)], vec![f32s("batchx10")], 1).unwrap();
            assert_eq!(out_shape(&out), "[batch, 10]");
            assert_err(
                infer(def, 13, vec![int("axis", 2)], vec![f32s("2x3")], 1),
                def.op_type,
                &["axis 2 is out of range for rank 2"],
            );
            // The opset-11 default axis 1 does not exist on a 1-D input; -1 (13+) does.
            assert_err(
                infer(def, 11, vec![], vec![f32s("5")], 1),
                def.op_type,
                &["axis 1"],
            );
            assert!(infer(def, 13, vec![], vec![f32s("5")], 1).is_ok());
        }
    }
}
