//! Library calls of lowered steps: the cuBLASLt GEMM of `Gemm`/`MatMul` and the cuDNN
//! convolution of `Conv` (forward) and `ConvTranspose` (backward data), derived from the node and the program's concrete shapes (host math,
//! unit-tested), with the tactics chosen at build time and kept in the plan's `tactics`
//! section (JSON: descriptions with their tactics). A shape the build did not see gets its
//! tactic chosen when a context first meets it (then cached in the engine).

use std::collections::HashMap;

use kiln_core::Precision;
use kiln_onnx::Node;
use serde::{Deserialize, Serialize};

use crate::builder::lower::{Program, Step, StepKind, conv_pads};
use crate::error::{EngineError, Result};
use crate::kernels::conv::{ConvDesc, ConvLayout, ConvTactic};
use crate::kernels::gemm::{Epilogue, GemmDesc, GemmTactic, MathMode, MatmulPlan, matmul_plan};

/// Name of the plan section holding the chosen GEMM and convolution tactics.
pub const TACTICS_SECTION: &str = "tactics";

/// What a library step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum LibDesc {
    /// ONNX Gemm. `expand_c`: C is broadcast into Y first and read with `beta`; `bias`: C is
    /// a length-n vector added by the bias epilogue.
    Gemm {
        desc: GemmDesc,
        expand_c: bool,
        bias: bool,
    },
    /// ONNX MatMul as one or more strided-batched GEMMs.
    MatMul(MatmulPlan),
    /// ONNX Conv (symmetric pads; asymmetric ones were padded by a step before).
    Conv(ConvDesc),
}

/// A library step with its tactic.
#[derive(Debug, Clone, PartialEq)]
pub enum LibCall {
    Gemm {
        desc: GemmDesc,
        expand_c: bool,
        bias: bool,
        tactic: GemmTactic,
    },
    MatMul {
        plan: MatmulPlan,
        tactic: GemmTactic,
    },
    Conv {
        desc: ConvDesc,
        tactic: ConvTactic,
    },
}

impl LibCall {
    /// Workspace bytes the call needs.
    pub fn workspace(&self) -> usize {
        match self {
            LibCall::Gemm { tactic, .. } | LibCall::MatMul { tactic, .. } => tactic.workspace,
            LibCall::Conv { tactic, .. } => tactic.workspace,
        }
    }
}

fn lower_err(node: &Node, message: impl std::fmt::Display) -> EngineError {
    EngineError::Lowering {
        node: node.name.clone(),
        op: node.op_type.clone(),
        message: message.to_string(),
    }
}

/// The math mode of an engine precision.
pub fn math_mode(p: Precision) -> Result<MathMode> {
    MathMode::from_precision(p).ok_or_else(|| {
        EngineError::Unsupported(format!(
            "{p:?} engines have no GEMM/convolution math mode in kiln-engine v1"
        ))
    })
}

/// The library description of `step`, or `None` for steps that are not library calls.
pub fn lib_desc(step: &Step, p: &Program, math: MathMode) -> Result<Option<LibDesc>> {
    let StepKind::Node(node) = &step.kind else {
        return Ok(None);
    };
    if super::kiln_ops::is_kiln(node) {
        return super::kiln_ops::lib_desc(step, p, math, node);
    }
    let dims = |i: usize| -> Result<&[usize]> {
        step.inputs
            .get(i)
            .copied()
            .flatten()
            .map(|t| p.tensors[t].dims.as_slice())
            .ok_or_else(|| lower_err(node, format!("input {i} is missing")))
    };
    let attr_int = |n: &str, d: i64| -> Result<i64> {
        Ok(node
            .attr_int(n)
            .map_err(|e| lower_err(node, e))?
            .unwrap_or(d))
    };
    let err = |e: crate::kernels::gemm::LibError| lower_err(node, e);
    match node.op_type.as_str() {
        "Gemm" | "FusedGemm" => {
            let relu = fused_relu(node)?;
            let (a, b) = (dims(0)?, dims(1)?);
            if a.len() != 2 || b.len() != 2 {
                return Err(lower_err(
                    node,
                    format!("Gemm of {a:?} and {b:?} (2-D only)"),
                ));
            }
            let (ta, tb) = (attr_int("transA", 0)? != 0, attr_int("transB", 0)? != 0);
            let (m, k) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
            let (kb, n) = if tb { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != kb {
                return Err(lower_err(
                    node,
                    format!("inner dims of {a:?}, {b:?} differ"),
                ));
            }
            let alpha = node
                .attr_float("alpha")
                .map_err(|e| lower_err(node, e))?
                .unwrap_or(1.0);
            let beta = node
                .attr_float("beta")
                .map_err(|e| lower_err(node, e))?
                .unwrap_or(1.0);
            let mut desc = GemmDesc::new(math, m, n, k).transposed(ta, tb);
            desc.alpha = alpha;
            let c = step.inputs.get(2).copied().flatten();
            let (mut expand_c, mut bias) = (false, false);
            if let Some(c) = c {
                let cd = &p.tensors[c].dims;
                let vector = cd.as_slice() == [n] || cd.as_slice() == [1, n];
                if vector && beta == 1.0 {
                    desc.epilogue = Epilogue::Bias;
                    bias = true;
                } else if beta != 0.0 {
                    desc.beta = beta;
                    expand_c = true;
                }
            }
            if relu {
                desc.epilogue = if bias {
                    Epilogue::BiasRelu
                } else {
                    Epilogue::Relu
                };
            }
            desc.validate().map_err(err)?;
            Ok(Some(LibDesc::Gemm {
                desc,
                expand_c,
                bias,
            }))
        }
        "MatMul" => Ok(Some(LibDesc::MatMul(
            matmul_plan(math, dims(0)?, dims(1)?).map_err(err)?,
        ))),
        "Conv" | "FusedConv" => {
            let relu = fused_relu(node)?;
            let (x, w) = (dims(0)?, dims(1)?);
            let pads = conv_pads(node, x, w)?;
            if pads.iter().any(|&p| p < 0) {
                return Err(lower_err(node, format!("negative pads {pads:?}")));
            }
            let pads: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
            let ints = |n: &str| -> Result<Vec<usize>> {
                Ok(node
                    .attr_ints(n)
                    .map_err(|e| lower_err(node, e))?
                    .unwrap_or(&[])
                    .iter()
                    .map(|&v| v.max(0) as usize)
                    .collect())
            };
            let group = attr_int("group", 1)?.max(1) as usize;
            let desc = ConvDesc::from_onnx(
                math,
                ConvLayout::Nchw,
                x,
                w,
                &pads,
                &ints("strides")?,
                &ints("dilations")?,
                group,
            )
            .map_err(err)?
            .with_epilogue(
                step.inputs.get(2).copied().flatten().is_some(),
                relu,
                step.inputs.get(3).copied().flatten().is_some(),
            );
            let out = &p.tensors[step.outputs[0]].dims;
            let got = desc.output_dims();
            if out.iter().product::<usize>() != got.iter().product::<usize>() {
                return Err(lower_err(
                    node,
                    format!("cuDNN's output {got:?} differs from the inferred {out:?}"),
                ));
            }
            Ok(Some(LibDesc::Conv(desc)))
        }
        "ConvTranspose" => {
            let (x, w) = (dims(0)?, dims(1)?);
            if x.len() < 3 || w.len() != x.len() {
                return Err(lower_err(node, format!("input {x:?} with weights {w:?}")));
            }
            let sp = x.len() - 2;
            let ints = |n: &str, d: usize| -> Result<Vec<usize>> {
                Ok(match node.attr_ints(n).map_err(|e| lower_err(node, e))? {
                    Some(v) => v.iter().map(|&v| v.max(0) as usize).collect(),
                    None => vec![d; sp],
                })
            };
            let (strides, dil, out_pad) = (
                ints("strides", 1)?,
                ints("dilations", 1)?,
                ints("output_padding", 0)?,
            );
            let pads = conv_transpose_pads(node, x, w, &strides, &dil, &out_pad)?;
            let group = attr_int("group", 1)?.max(1) as usize;
            let desc = ConvDesc::transpose(
                math,
                ConvLayout::Nchw,
                x,
                w,
                &pads,
                &strides,
                &dil,
                &out_pad,
                group,
            )
            .map_err(err)?
            .with_epilogue(
                step.inputs.get(2).copied().flatten().is_some(),
                false,
                false,
            );
            let out = &p.tensors[step.outputs[0]].dims;
            let got = desc.output_dims();
            if out.iter().product::<usize>() != got.iter().product::<usize>() {
                return Err(lower_err(
                    node,
                    format!("cuDNN's output {got:?} differs from the inferred {out:?}"),
                ));
            }
            Ok(Some(LibDesc::Conv(desc)))
        }
        _ => Ok(None),
    }
}

/// Explicit pads `[x1_begin, .., x1_end, ..]` of a ConvTranspose over `x` with weights `w`, as
/// kiln-reference derives them: from `output_shape` (or SAME_*, whose output is `in * stride`)
/// the total padding `full - out` split in two (the larger half at the end for SAME_UPPER, at
/// the beginning otherwise), else `pads` (zeros for VALID or when absent), where
/// `full = stride * (in - 1) + output_padding + (k - 1) * dilation + 1`. cuDNN pads both sides
/// alike, so negative or asymmetric pads are errors.
pub fn conv_transpose_pads(
    node: &Node,
    x: &[usize],
    w: &[usize],
    strides: &[usize],
    dilations: &[usize],
    output_padding: &[usize],
) -> Result<Vec<usize>> {
    let sp = x.len().saturating_sub(2);
    if strides.len() != sp
        || dilations.len() != sp
        || output_padding.len() != sp
        || w.len() != x.len()
    {
        return Err(lower_err(
            node,
            "strides, dilations or output_padding do not match the spatial rank",
        ));
    }
    let auto = node
        .attr_string("auto_pad")
        .map_err(|e| lower_err(node, e))?
        .unwrap_or_else(|| "NOTSET".into());
    let target: Option<Vec<i64>> = match node
        .attr_ints("output_shape")
        .map_err(|e| lower_err(node, e))?
    {
        Some(os) => {
            let os = if os.len() == sp + 2 { &os[2..] } else { os };
            if os.len() != sp || os.iter().any(|&d| d < 0) {
                return Err(lower_err(node, format!("output_shape {os:?}")));
            }
            Some(os.to_vec())
        }
        None if auto.starts_with("SAME") => {
            Some((0..sp).map(|i| (x[2 + i] * strides[i]) as i64).collect())
        }
        None => None,
    };
    let pads: Vec<i64> = match target {
        Some(t) => {
            let mut pads = vec![0i64; 2 * sp];
            for i in 0..sp {
                let ek = (w[2 + i].max(1) - 1) * dilations[i] + 1;
                let full = strides[i] * (x[2 + i].max(1) - 1) + output_padding[i] + ek;
                let total = full as i64 - t[i];
                let half = total.div_euclid(2);
                let (b, e) = if auto == "SAME_UPPER" {
                    (half, total - half)
                } else {
                    (total - half, half)
                };
                pads[i] = b;
                pads[sp + i] = e;
            }
            pads
        }
        None if auto == "VALID" => vec![0; 2 * sp],
        None => match node.attr_ints("pads").map_err(|e| lower_err(node, e))? {
            Some(p) if p.len() == 2 * sp => p.to_vec(),
            Some(p) => {
                return Err(lower_err(
                    node,
                    format!("{} pads for {sp} spatial dims", p.len()),
                ));
            }
            None => vec![0; 2 * sp],
        },
    };
    if pads.iter().any(|&p| p < 0) || (0..sp).any(|i| pads[i] != pads[sp + i]) {
        return Err(lower_err(
            node,
            format!(
                "pads {pads:?}: cuDNN's transposed convolution pads both ends of an axis alike \
                 and never negatively; give symmetric pads (or an output_shape that needs them)"
            ),
        ));
    }
    Ok(pads.iter().map(|&p| p as usize).collect())
}

/// Whether a `com.microsoft` FusedConv/FusedGemm ends in ReLU (false for plain Conv/Gemm and
/// for FusedConv without an activation); any other activation is not lowered.
fn fused_relu(node: &Node) -> Result<bool> {
    if node.domain != kiln_onnx::MS_DOMAIN {
        return Ok(false);
    }
    match kiln_onnx::FusedActivation::of_node(node).map_err(|e| lower_err(node, e))? {
        kiln_onnx::FusedActivation::Identity => Ok(false),
        kiln_onnx::FusedActivation::Relu => Ok(true),
        other => Err(lower_err(
            node,
            format!(
                "activation {other:?}: kiln-engine runs Relu (or none) as a library epilogue;                  export the model without this fusion"
            ),
        )),
    }
}

/// Tactics by description (the JSON of the description is the key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tactics {
    pub gemm: HashMap<String, GemmTactic>,
    pub conv: HashMap<String, ConvTactic>,
}

#[derive(Serialize, Deserialize)]
struct TacticsFile {
    gemm: Vec<(GemmDesc, GemmTactic)>,
    conv: Vec<(ConvDesc, ConvTactic)>,
}

/// The key of a description.
pub fn key<T: Serialize>(desc: &T) -> String {
    serde_json::to_string(desc).unwrap_or_default()
}

impl Tactics {
    /// The plan section's bytes (sorted, so a build is deterministic).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let parse = |k: &str| serde_json::from_str(k);
        let mut f = TacticsFile {
            gemm: Vec::new(),
            conv: Vec::new(),
        };
        let mut gk: Vec<_> = self.gemm.iter().collect();
        gk.sort_by(|a, b| a.0.cmp(b.0));
        for (k, t) in gk {
            f.gemm.push((
                parse(k).map_err(|e| EngineError::BadPlan(format!("tactic key: {e}")))?,
                *t,
            ));
        }
        let mut ck: Vec<_> = self.conv.iter().collect();
        ck.sort_by(|a, b| a.0.cmp(b.0));
        for (k, t) in ck {
            f.conv.push((
                serde_json::from_str(k)
                    .map_err(|e| EngineError::BadPlan(format!("tactic key: {e}")))?,
                *t,
            ));
        }
        serde_json::to_vec(&f).map_err(|e| EngineError::BadPlan(format!("tactics: {e}")))
    }

    /// Parses the plan section.
    pub fn from_bytes(bytes: &[u8]) -> Result<Tactics> {
        let f: TacticsFile = serde_json::from_slice(bytes)
            .map_err(|e| EngineError::BadPlan(format!("tactics section: {e}")))?;
        Ok(Tactics {
            gemm: f.gemm.iter().map(|(d, t)| (key(d), *t)).collect(),
            conv: f.conv.iter().map(|(d, t)| (key(d), *t)).collect(),
        })
    }
}

#[cfg(test)]
#[path = "libs_tests.rs"]
mod tests;
