//! ONNX Runtime's contrib ops with a fused activation, in domain `com.microsoft` ([`MS_DOMAIN`]):
//! what ONNX Runtime's graph optimiser writes for Conv(+Add)+activation and Gemm+activation
//! chains, and what kiln's builder rewrites such chains into. Spec:
//! <https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md>; the schema
//! there lists the attributes, ONNX Runtime's CPU kernels fix their meaning.
//!
//! - `FusedConv` (since 1 of `com.microsoft`): inputs `X`, `W`, `B` (optional), `Z`
//!   (optional); `Y = act(Conv(X, W, B) + Z)`. Conv's attributes (`auto_pad`, `dilations`,
//!   `group`, `kernel_shape`, `pads`, `strides`) with Conv's defaults, plus `activation`
//!   (STRING) and `activation_params` (FLOATS). `Z` must have exactly `Y`'s shape: ONNX Runtime
//!   adds it without broadcasting. An absent or empty `activation` is the identity (ONNX
//!   Runtime's kernel starts from identity). The activations are those of ONNX Runtime's MLAS
//!   kernel: Relu, Tanh, Sigmoid, Silu (`x * sigmoid(x)`), and with `activation_params` of
//!   exactly the given length LeakyRelu `[alpha]`, Clip `[min, max]`, HardSigmoid
//!   `[alpha, beta]`. `activation_params` of an activation that takes none are ignored, as
//!   ONNX Runtime does.
//! - `FusedGemm` (since 1 of `com.microsoft`): inputs `A`, `B`, `C` (optional); `Y =
//!   act(alpha * A' * B' + beta * C)`. Gemm's attributes (`alpha` 1, `beta` 1, `transA` 0,
//!   `transB` 0) plus `activation` (STRING, required: ONNX Runtime's kernel refuses a node
//!   without one) and `activation_alpha`, `activation_beta`, `activation_gamma` (FLOAT; ONNX
//!   Runtime copies the activation node's attributes with an `activation_` prefix). The
//!   activations are ONNX Runtime's elementwise functors that kiln implements: Relu, Tanh,
//!   Sigmoid, Softplus, Softsign, LeakyRelu (`activation_alpha`, default 0.01), HardSigmoid
//!   (`activation_alpha` 0.2, `activation_beta` 0.5), Elu (`activation_alpha` 1), Selu
//!   (`activation_alpha` 1.6732632, `activation_gamma` 1.050701), Celu (`activation_alpha` 1),
//!   ThresholdedRelu (`activation_alpha` 1); an absent parameter takes the standalone op's
//!   ONNX default. ONNX Runtime's ScaledTanh and ParametricSoftplus are refused. Clip and Silu
//!   are not FusedGemm activations in ONNX Runtime, so kiln refuses them there too.
//!
//! [`FusedActivation`] is the parsed activation, shared by the inference here, the CPU
//! reference and the engine builder: [`FusedActivation::of_node`] reads it from a node,
//! [`FusedActivation::from_activation_node`] from a standalone activation node, and
//! [`FusedActivation::conv_attributes`] / [`FusedActivation::gemm_attributes`] write it back.
//! A model using these ops must import `com.microsoft` (any version from 1).

use kiln_core::{Dim, Shape};

use super::common::{merge_dim, same_dtype};
use super::conv::infer_conv_inputs;
use super::matmul::infer_gemm_inputs;
use crate::attribute::{AttrValue, Attribute};
use crate::error::{OnnxError, Result};
use crate::graph::{Node, is_onnx_domain};
use crate::ops::{Fact, InferCtx, OpDef};

/// ONNX Runtime's contrib domain.
pub const MS_DOMAIN: &str = "com.microsoft";

/// The `com.microsoft` opset version that kiln writes (FusedConv and FusedGemm exist since 1).
pub const MS_OPSET: i64 = 1;

/// Selu's defaults from opset 6 on (the f32 constants of the ONNX spec).
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_GAMMA: f32 = 1.050_701;

const CONV_ACTIVATIONS: &str = "Relu, Tanh, Sigmoid, Silu, LeakyRelu, Clip, HardSigmoid";
const GEMM_ACTIVATIONS: &str = "Relu, Tanh, Sigmoid, Softplus, Softsign, LeakyRelu, \
                                HardSigmoid, Elu, Selu, Celu, ThresholdedRelu";

/// The activation a FusedConv or FusedGemm node applies to its result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FusedActivation {
    /// No activation (FusedConv only: a FusedConv without `activation`).
    Identity,
    Relu,
    Tanh,
    Sigmoid,
    /// `x * sigmoid(x)` (FusedConv only).
    Silu,
    /// `x` if `x > 0` else `alpha * x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `min(max(x, min), max)` (FusedConv only).
    Clip {
        min: f32,
        max: f32,
    },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// FusedGemm only, as are the ones below.
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    Softplus,
    Softsign,
    ThresholdedRelu {
        alpha: f32,
    },
}

fn node_err(node: &Node, problem: impl Into<String>, fix: impl Into<String>) -> OnnxError {
    OnnxError::node(node.node_ref(), problem, fix)
}

fn string_attr(name: &str, v: &str) -> Attribute {
    Attribute::new(name, AttrValue::String(v.as_bytes().to_vec()))
}

impl FusedActivation {
    /// The activation of a `FusedConv` or `FusedGemm` node (any domain spelling is accepted;
    /// the registry checks the domain). Errors name the node: an activation the op does not
    /// take, a wrong number of `activation_params`, an attribute of the wrong kind.
    pub fn of_node(node: &Node) -> Result<FusedActivation> {
        match node.op_type.as_str() {
            "FusedConv" => conv_activation(node),
            "FusedGemm" => gemm_activation(node),
            other => Err(node_err(
                node,
                format!("{other} has no fused activation"),
                "Read activations of FusedConv and FusedGemm nodes only",
            )),
        }
    }

    /// The activation computed by a standalone default-domain node at `opset`, with the ONNX
    /// defaults of its attributes; `None` for other ops. Clip from opset 11 takes its bounds
    /// as inputs, so it gives `None` here: read the bounds' constant values and build
    /// [`FusedActivation::Clip`] (an omitted bound is infinite).
    pub fn from_activation_node(node: &Node, opset: i64) -> Result<Option<FusedActivation>> {
        if !is_onnx_domain(&node.domain) {
            return Ok(None);
        }
        let f = |name: &str, default: f32| -> Result<f32> {
            Ok(node.attr_float(name)?.unwrap_or(default))
        };
        use FusedActivation as A;
        Ok(Some(match node.op_type.as_str() {
            "Relu" => A::Relu,
            "Tanh" => A::Tanh,
            "Sigmoid" => A::Sigmoid,
            "Softplus" => A::Softplus,
            "Softsign" => A::Softsign,
            "LeakyRelu" => A::LeakyRelu {
                alpha: f("alpha", 0.01)?,
            },
            "HardSigmoid" => A::HardSigmoid {
                alpha: f("alpha", 0.2)?,
                beta: f("beta", 0.5)?,
            },
            "Elu" => A::Elu {
                alpha: f("alpha", 1.0)?,
            },
            "Selu" => {
                let (da, dg) = if opset < 6 {
                    (1.6732, 1.0507)
                } else {
                    (SELU_ALPHA, SELU_GAMMA)
                };
                A::Selu {
                    alpha: f("alpha", da)?,
                    gamma: f("gamma", dg)?,
                }
            }
            "Celu" => A::Celu {
                alpha: f("alpha", 1.0)?,
            },
            "ThresholdedRelu" => A::ThresholdedRelu {
                alpha: f("alpha", 1.0)?,
            },
            "Clip" if opset < 11 => A::Clip {
                min: f("min", f32::MIN)?,
                max: f("max", f32::MAX)?,
            },
            _ => return Ok(None),
        }))
    }

    /// The activation's name as the `activation` attribute spells it (`"Identity"` for none).
    pub fn name(&self) -> &'static str {
        use FusedActivation as A;
        match self {
            A::Identity => "Identity",
            A::Relu => "Relu",
            A::Tanh => "Tanh",
            A::Sigmoid => "Sigmoid",
            A::Silu => "Silu",
            A::LeakyRelu { .. } => "LeakyRelu",
            A::Clip { .. } => "Clip",
            A::HardSigmoid { .. } => "HardSigmoid",
            A::Elu { .. } => "Elu",
            A::Selu { .. } => "Selu",
            A::Celu { .. } => "Celu",
            A::Softplus => "Softplus",
            A::Softsign => "Softsign",
            A::ThresholdedRelu { .. } => "ThresholdedRelu",
        }
    }

    /// The `activation` / `activation_params` attributes of a FusedConv applying this
    /// activation (none for the identity); `None` when FusedConv cannot carry it.
    pub fn conv_attributes(&self) -> Option<Vec<Attribute>> {
        use FusedActivation as A;
        let params: Vec<f32> = match *self {
            A::Identity => return Some(Vec::new()),
            A::Relu | A::Tanh | A::Sigmoid | A::Silu => Vec::new(),
            A::LeakyRelu { alpha } => vec![alpha],
            A::Clip { min, max } => vec![min, max],
            A::HardSigmoid { alpha, beta } => vec![alpha, beta],
            _ => return None,
        };
        let mut attrs = vec![string_attr("activation", self.name())];
        if !params.is_empty() {
            attrs.push(Attribute::new(
                "activation_params",
                AttrValue::Floats(params),
            ));
        }
        Some(attrs)
    }

    /// The `activation` and `activation_alpha` / `_beta` / `_gamma` attributes of a FusedGemm
    /// applying this activation, every parameter written; `None` when FusedGemm cannot carry
    /// it (the identity, Clip, Silu).
    pub fn gemm_attributes(&self) -> Option<Vec<Attribute>> {
        use FusedActivation as A;
        let params: Vec<(&str, f32)> = match *self {
            A::Identity | A::Clip { .. } | A::Silu => return None,
            A::Relu | A::Tanh | A::Sigmoid | A::Softplus | A::Softsign => Vec::new(),
            A::LeakyRelu { alpha }
            | A::Elu { alpha }
            | A::Celu { alpha }
            | A::ThresholdedRelu { alpha } => vec![("activation_alpha", alpha)],
            A::HardSigmoid { alpha, beta } => {
                vec![("activation_alpha", alpha), ("activation_beta", beta)]
            }
            A::Selu { alpha, gamma } => {
                vec![("activation_alpha", alpha), ("activation_gamma", gamma)]
            }
        };
        let mut attrs = vec![string_attr("activation", self.name())];
        attrs.extend(
            params
                .into_iter()
                .map(|(n, v)| Attribute::new(n, AttrValue::Float(v))),
        );
        Some(attrs)
    }
}

fn unknown_activation(node: &Node, name: &str, allowed: &str) -> OnnxError {
    node_err(
        node,
        format!("activation '{name}' is not one {} takes", node.op_type),
        format!("Use one of {allowed}, or keep the activation as its own node"),
    )
}

fn conv_activation(node: &Node) -> Result<FusedActivation> {
    use FusedActivation as A;
    let name = node.attr_string("activation")?.unwrap_or_default();
    let params = node.attr_floats("activation_params")?.unwrap_or(&[]);
    let count = |what: &str, n: usize| {
        node_err(
            node,
            format!(
                "activation '{name}' takes {n} value(s) in 'activation_params' ({what}); the \
                 node has {}",
                params.len()
            ),
            format!("Give 'activation_params' as [{what}]"),
        )
    };
    Ok(match name.as_str() {
        "" => A::Identity,
        "Relu" => A::Relu,
        "Tanh" => A::Tanh,
        "Sigmoid" => A::Sigmoid,
        "Silu" => A::Silu,
        "LeakyRelu" => match params {
            [alpha] => A::LeakyRelu { alpha: *alpha },
            _ => return Err(count("alpha", 1)),
        },
        "Clip" => match params {
            [min, max] => A::Clip {
                min: *min,
                max: *max,
            },
            _ => return Err(count("min, max", 2)),
        },
        "HardSigmoid" => match params {
            [alpha, beta] => A::HardSigmoid {
                alpha: *alpha,
                beta: *beta,
            },
            _ => return Err(count("alpha, beta", 2)),
        },
        other => return Err(unknown_activation(node, other, CONV_ACTIVATIONS)),
    })
}

fn gemm_activation(node: &Node) -> Result<FusedActivation> {
    use FusedActivation as A;
    let name = node.attr_string("activation")?.unwrap_or_default();
    let f = |param: &str, default: f32| -> Result<f32> {
        Ok(node
            .attr_float(&format!("activation_{param}"))?
            .unwrap_or(default))
    };
    Ok(match name.as_str() {
        "" => {
            return Err(node_err(
                node,
                "attribute 'activation' is missing or empty; FusedGemm needs one",
                format!("Name the activation ({GEMM_ACTIVATIONS}), or use a plain Gemm"),
            ));
        }
        "Relu" => A::Relu,
        "Tanh" => A::Tanh,
        "Sigmoid" => A::Sigmoid,
        "Softplus" => A::Softplus,
        "Softsign" => A::Softsign,
        "LeakyRelu" => A::LeakyRelu {
            alpha: f("alpha", 0.01)?,
        },
        "HardSigmoid" => A::HardSigmoid {
            alpha: f("alpha", 0.2)?,
            beta: f("beta", 0.5)?,
        },
        "Elu" => A::Elu {
            alpha: f("alpha", 1.0)?,
        },
        "Selu" => A::Selu {
            alpha: f("alpha", SELU_ALPHA)?,
            gamma: f("gamma", SELU_GAMMA)?,
        },
        "Celu" => A::Celu {
            alpha: f("alpha", 1.0)?,
        },
        "ThresholdedRelu" => A::ThresholdedRelu {
            alpha: f("alpha", 1.0)?,
        },
        other @ ("ScaledTanh" | "ParametricSoftplus") => {
            return Err(node_err(
                node,
                format!(
                    "activation '{other}' (an ONNX Runtime functor) is not implemented by kiln"
                ),
                "Keep the activation as its own node",
            ));
        }
        other => return Err(unknown_activation(node, other, GEMM_ACTIVATIONS)),
    })
}

fn infer_fused_conv(ctx: &mut InferCtx<'_>) -> Result<()> {
    infer_conv_inputs(ctx, 4)?;
    FusedActivation::of_node(ctx.node)?;
    if ctx.input(3).is_none() {
        return Ok(());
    }
    same_dtype(ctx, 0, 3)?;
    let y = ctx.output(0).cloned().unwrap_or_default();
    let z = ctx.input_shape(3).cloned();
    let shape = match (y.shape, z) {
        (Some(y), Some(z)) => {
            let bad = || {
                format!(
                    "Z (input #3) has shape {z} but the output is {y}; FusedConv adds Z \
                     without broadcasting"
                )
            };
            if y.rank() != z.rank() {
                return Err(ctx.err(bad(), "Give Z the output's shape"));
            }
            let mut dims: Vec<Dim> = Vec::with_capacity(y.rank());
            for (a, b) in y.dims().iter().zip(z.dims()) {
                if let (Dim::Known(p), Dim::Known(q)) = (a, b)
                    && p != q
                {
                    return Err(ctx.err(bad(), "Give Z the output's shape"));
                }
                dims.push(merge_dim(a, b));
            }
            Some(Shape(dims))
        }
        (y, z) => y.or(z),
    };
    let dtype = y.dtype.or(ctx.input_dtype(3));
    ctx.set_output(0, Fact::new(dtype, shape));
    Ok(())
}

fn infer_fused_gemm(ctx: &mut InferCtx<'_>) -> Result<()> {
    infer_gemm_inputs(ctx, 2)?;
    let act = FusedActivation::of_node(ctx.node)?;
    if let Some(dt) = ctx.input_dtype(0)
        && !dt.is_float()
        && act != FusedActivation::Relu
    {
        return Err(ctx.err(
            format!("activation '{}' needs floats but A is {dt}", act.name()),
            "Use a float type, or keep the activation as its own node",
        ));
    }
    Ok(())
}

/// `com.microsoft::FusedConv`
pub(super) const FUSED_CONV: OpDef = OpDef {
    op_type: "FusedConv",
    domain: MS_DOMAIN,
    since_opset: 1,
    infer: infer_fused_conv,
};

/// `com.microsoft::FusedGemm`
pub(super) const FUSED_GEMM: OpDef = OpDef {
    op_type: "FusedGemm",
    domain: MS_DOMAIN,
    since_opset: 1,
    infer: infer_fused_gemm,
};

#[cfg(test)]
#[path = "fused_tests.rs"]
mod tests;
