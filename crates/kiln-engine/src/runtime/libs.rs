//! Library calls of lowered steps: the cuBLASLt GEMM of `Gemm`/`MatMul` and the cuDNN
//! convolution of `Conv`, derived from the node and the program's concrete shapes (host math,
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
        "Gemm" => {
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
        "Conv" => {
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
