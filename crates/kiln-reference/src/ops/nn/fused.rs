//! ONNX Runtime's contrib ops `com.microsoft::FusedConv` and `com.microsoft::FusedGemm`.
//!
//! Spec: <https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md>; both
//! since version 1 of `com.microsoft`. The inputs, attributes, defaults and the activations
//! each op takes are documented with kiln's parser, [`kiln_onnx::FusedActivation`] (in
//! `kiln_onnx::ops::nn::fused`), which this file uses.
//!
//! - FusedConv: `Y = act(Conv(X, W, B) + Z)`, `Z` optional and of exactly `Y`'s shape.
//! - FusedGemm: `Y = act(alpha * A' * B' + beta * C)`.
//!
//! Both are composed from the interpreter's own ops in the order of the unfused chain: Conv
//! (or Gemm), then Add of `Z`, then the activation (Silu as Sigmoid then Mul), each the
//! default-domain op's function. So a fused node computes bit for bit what the chain
//! `Conv -> Add -> act` or `Gemm -> act` computes, which is what kiln's builder relies on
//! when it rewrites such chains.

use kiln_onnx::{AttrValue, Attribute, FusedActivation, Node};

use crate::error::{RefError, Result};
use crate::ops::{OpCtx, lookup};
use crate::value::Value;

/// The default-domain opset the composing steps run at (Clip runs at 6, where its bounds are
/// FLOAT attributes as in `activation_params`).
const STEP_OPSET: i64 = 22;

fn float(name: &str, v: f32) -> Attribute {
    Attribute::new(name, AttrValue::Float(v))
}

/// Runs default-domain op `op` on `inputs` as a step of the fused node; errors name the fused
/// node and the step.
fn step(
    ctx: &OpCtx<'_>,
    op: &str,
    opset: i64,
    attrs: Vec<Attribute>,
    inputs: &[&Value],
) -> Result<Value> {
    let f = lookup("", op).ok_or_else(|| RefError::Internal {
        what: format!("{}: the interpreter has no {op}", ctx.node.node_ref()),
    })?;
    let node = Node {
        name: ctx.node.name.clone(),
        op_type: op.to_string(),
        inputs: (0..inputs.len()).map(|i| format!("step_in{i}")).collect(),
        outputs: vec!["step_out".to_string()],
        attributes: attrs,
        index: ctx.node.index,
        ..Node::default()
    };
    let args = inputs.iter().map(|v| Some(*v)).collect();
    let out = f(&OpCtx::new(&node, opset, args)).map_err(|e| match e {
        RefError::Op { problem, fix, .. } => ctx.err(format!("its {op} step: {problem}"), fix),
        other => other,
    })?;
    first(ctx, out)
}

fn first(ctx: &OpCtx<'_>, out: Vec<Value>) -> Result<Value> {
    out.into_iter().next().ok_or_else(|| RefError::Internal {
        what: format!("{}: a step gave no output", ctx.node.node_ref()),
    })
}

/// `act(y)` with the default-domain activation ops.
fn activate(ctx: &OpCtx<'_>, act: FusedActivation, y: Value) -> Result<Value> {
    use FusedActivation as A;
    let (op, attrs) = match act {
        A::Identity => return Ok(y),
        A::Silu => {
            let s = step(ctx, "Sigmoid", STEP_OPSET, vec![], &[&y])?;
            return step(ctx, "Mul", STEP_OPSET, vec![], &[&y, &s]);
        }
        A::Clip { min, max } => {
            let attrs = vec![float("min", min), float("max", max)];
            return step(ctx, "Clip", 6, attrs, &[&y]);
        }
        A::Relu | A::Tanh | A::Sigmoid | A::Softplus | A::Softsign => (act.name(), vec![]),
        A::LeakyRelu { alpha }
        | A::Elu { alpha }
        | A::Celu { alpha }
        | A::ThresholdedRelu { alpha } => (act.name(), vec![float("alpha", alpha)]),
        A::HardSigmoid { alpha, beta } => {
            (act.name(), vec![float("alpha", alpha), float("beta", beta)])
        }
        A::Selu { alpha, gamma } => (
            act.name(),
            vec![float("alpha", alpha), float("gamma", gamma)],
        ),
    };
    step(ctx, op, STEP_OPSET, attrs, &[&y])
}

pub fn fused_conv(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    if !(2..=4).contains(&ctx.num_inputs()) {
        return Err(ctx.err(
            format!("has {} inputs; FusedConv takes 2 to 4", ctx.num_inputs()),
            "Give X, W and optionally B and Z",
        ));
    }
    let act = FusedActivation::of_node(ctx.node)?;
    // Conv reads X, W, B and Conv's attributes only.
    let mut y = first(ctx, super::conv::conv(ctx)?)?;
    if let Some(z) = ctx.input(3) {
        if z.shape() != y.shape() {
            return Err(ctx.err(
                format!(
                    "Z (input #3) has shape {:?} but the output is {:?}; FusedConv adds Z \
                     without broadcasting",
                    z.shape(),
                    y.shape()
                ),
                "Give Z the output's shape",
            ));
        }
        y = step(ctx, "Add", STEP_OPSET, vec![], &[&y, z])?;
    }
    Ok(vec![activate(ctx, act, y)?])
}

pub fn fused_gemm(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    if !(2..=3).contains(&ctx.num_inputs()) {
        return Err(ctx.err(
            format!("has {} inputs; FusedGemm takes 2 or 3", ctx.num_inputs()),
            "Give A, B and optionally C",
        ));
    }
    let act = FusedActivation::of_node(ctx.node)?;
    // Gemm reads A, B, C and alpha, beta, transA, transB only.
    let y = first(ctx, super::gemm::gemm(ctx)?)?;
    Ok(vec![activate(ctx, act, y)?])
}
