//! Elementwise one-input ops: activations and math functions. The output has the input's type
//! and shape.
//!
//! Spec pages (`https://onnx.ai/onnx/operators/onnx__<Op>.html`) and the opsets where each
//! changed (later changes only widen the element types, or drop the legacy `consumed_inputs`
//! hint of opset 1, which does not change the result):
//! - [Relu](https://onnx.ai/onnx/operators/onnx__Relu.html): 1, 6, 13, 14
//! - [LeakyRelu](https://onnx.ai/onnx/operators/onnx__LeakyRelu.html): 1, 6, 16 (`alpha` 0.01)
//! - [Sigmoid](https://onnx.ai/onnx/operators/onnx__Sigmoid.html): 1, 6, 13
//! - [HardSigmoid](https://onnx.ai/onnx/operators/onnx__HardSigmoid.html): 1, 6, 22
//!   (`alpha` 0.2, `beta` 0.5)
//! - [HardSwish](https://onnx.ai/onnx/operators/onnx__HardSwish.html): 14, 22
//! - [Tanh](https://onnx.ai/onnx/operators/onnx__Tanh.html): 1, 6, 13
//! - [Gelu](https://onnx.ai/onnx/operators/onnx__Gelu.html): 20 (`approximate` none or tanh)
//! - [Erf](https://onnx.ai/onnx/operators/onnx__Erf.html): 9, 13
//! - [Softplus](https://onnx.ai/onnx/operators/onnx__Softplus.html): 1, 22
//! - [Elu](https://onnx.ai/onnx/operators/onnx__Elu.html): 1, 6, 22 (`alpha` 1.0)
//! - [Selu](https://onnx.ai/onnx/operators/onnx__Selu.html): 1, 6, 22
//! - [Mish](https://onnx.ai/onnx/operators/onnx__Mish.html): 18, 22
//! - [Sqrt](https://onnx.ai/onnx/operators/onnx__Sqrt.html),
//!   [Reciprocal](https://onnx.ai/onnx/operators/onnx__Reciprocal.html),
//!   [Exp](https://onnx.ai/onnx/operators/onnx__Exp.html),
//!   [Log](https://onnx.ai/onnx/operators/onnx__Log.html),
//!   [Abs](https://onnx.ai/onnx/operators/onnx__Abs.html),
//!   [Neg](https://onnx.ai/onnx/operators/onnx__Neg.html),
//!   [Floor](https://onnx.ai/onnx/operators/onnx__Floor.html),
//!   [Ceil](https://onnx.ai/onnx/operators/onnx__Ceil.html): 1, 6, 13
//! - [Round](https://onnx.ai/onnx/operators/onnx__Round.html): 11, 22

use super::common::{expect_outputs, pass_through, string_attr};
use crate::error::Result;
use crate::ops::{InferCtx, OpDef};

fn infer_unary(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    expect_outputs(ctx, 1, 1)?;
    pass_through(ctx, 0)
}

fn infer_gelu(ctx: &mut InferCtx<'_>) -> Result<()> {
    let approx = string_attr(ctx, "approximate", "none")?;
    if approx != "none" && approx != "tanh" {
        return Err(ctx.err(
            format!("attribute 'approximate' is '{approx}'"),
            "Use 'none' (exact erf form) or 'tanh'",
        ));
    }
    infer_unary(ctx)
}

macro_rules! unary_ops {
    ($($name:ident = $op:literal since $v:literal),* $(,)?) => {
        $(
            #[doc = concat!("`", $op, "`")]
            pub(super) const $name: OpDef = OpDef {
                op_type: $op,
                domain: "",
                since_opset: $v,
                infer: infer_unary,
            };
        )*
    };
}

unary_ops!(
    RELU = "Relu" since 1,
    LEAKY_RELU = "LeakyRelu" since 1,
    SIGMOID = "Sigmoid" since 1,
    HARD_SIGMOID = "HardSigmoid" since 1,
    HARD_SWISH = "HardSwish" since 14,
    TANH = "Tanh" since 1,
    ERF = "Erf" since 9,
    SOFTPLUS = "Softplus" since 1,
    ELU = "Elu" since 1,
    SELU = "Selu" since 1,
    MISH = "Mish" since 18,
    SQRT = "Sqrt" since 1,
    RECIPROCAL = "Reciprocal" since 1,
    EXP = "Exp" since 1,
    LOG = "Log" since 1,
    ABS = "Abs" since 1,
    NEG = "Neg" since 1,
    FLOOR = "Floor" since 1,
    CEIL = "Ceil" since 1,
    ROUND = "Round" since 11,
);

/// `Gelu`
pub(super) const GELU: OpDef = OpDef {
    op_type: "Gelu",
    domain: "",
    since_opset: 20,
    infer: infer_gelu,
};

/// Every op of this file (for tests; [`super::DEFS`] lists them for the registry).
#[cfg(test)]
pub(super) const ALL: [&OpDef; 21] = [
    &RELU,
    &LEAKY_RELU,
    &SIGMOID,
    &HARD_SIGMOID,
    &HARD_SWISH,
    &TANH,
    &GELU,
    &ERF,
    &SOFTPLUS,
    &ELU,
    &SELU,
    &MISH,
    &SQRT,
    &RECIPROCAL,
    &EXP,
    &LOG,
    &ABS,
    &NEG,
    &FLOOR,
    &CEIL,
    &ROUND,
];

#[cfg(test)]
mod tests {
    use kiln_core::DataType;

    use super::*;
    use crate::ops::nn::test_util::*;

    #[test]
    fn every_unary_op_keeps_type_and_symbolic_shape() {
        for def in ALL {
            let out = infer(def, 22, vec![], vec![t(DataType::F16, "batchx3x?x7")], 1).unwrap();
            assert_eq!(out[0].dtype, Some(DataType::F16), "{}", def.op_type);
            assert_eq!(out_shape(&out), "[batch, 3, ?, 7]", "{}", def.op_type);
            let out = infer(def, 22, vec![], vec![f32s("2x5")], 1).unwrap();
            assert_eq!(out_shape(&out), "[2, 5]");
            let out = infer(def, 22, vec![], vec![unranked(DataType::F32)], 1).unwrap();
            assert_eq!(out[0].shape, None);
        }
    }

    #[test]
    fn unary_input_and_output_counts_are_checked() {
        assert_err(
            infer(&RELU, 14, vec![], vec![f32s("2"), f32s("2")], 1),
            "Relu",
            &["has 2 inputs", "1 to 1"],
        );
        assert_err(infer(&EXP, 13, vec![], vec![], 1), "Exp", &["has 0 inputs"]);
        assert_err(
            infer(&TANH, 13, vec![], vec![f32s("2")], 2),
            "Tanh",
            &["has 2 outputs"],
        );
        // An omitted (optional-style) input is reported as missing.
        assert_err(
            infer(&SQRT, 13, vec![], vec![None], 1),
            "Sqrt",
            &["missing"],
        );
    }

    #[test]
    fn gelu_approximate_is_checked() {
        let out = infer(
            &GELU,
            20,
            vec![string("approximate", "tanh")],
            vec![f32s("4")],
            1,
        );
        assert_eq!(out_shape(&out.unwrap()), "[4]");
        assert_err(
            infer(
                &GELU,
                20,
                vec![string("approximate", "fast")],
                vec![f32s("4")],
                1,
            ),
            "Gelu",
            &["'fast'", "'tanh'"],
        );
    }

    #[test]
    fn since_opsets_follow_the_schemas() {
        assert_eq!(HARD_SWISH.since_opset, 14);
        assert_eq!(GELU.since_opset, 20);
        assert_eq!(MISH.since_opset, 18);
        assert_eq!(ROUND.since_opset, 11);
        assert_eq!(ERF.since_opset, 9);
    }
}
