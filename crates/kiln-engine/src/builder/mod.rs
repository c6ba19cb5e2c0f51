//! The builder: ONNX graph → passes → checks → [`Plan`].
//!
//! [`prepare`] is the host-only part (passes, op support, specialisation and lowering at each
//! profile's `opt` shapes as a check, plan assembly); [`Builder::build`] adds the device:
//! its fingerprint goes into the header.

mod checks;
pub mod fuse;
pub mod lower;
pub mod memory;
pub mod passes;
pub mod patch;
pub mod rewrite;

#[cfg(test)]
mod op_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use kiln_core::{DataType, Precision, TensorSpec};
use kiln_onnx::Graph;

use crate::error::{EngineError, Result};
use crate::plan::{BuildConfig, Fingerprint, GRAPH_SECTION, Plan, PlanHeader};

pub use crate::plan::BuildConfig as Config;

/// Builds plans for one device.
pub struct Builder {
    device: Arc<kiln_cuda::Device>,
}

impl Builder {
    pub fn new(device: &Arc<kiln_cuda::Device>) -> Builder {
        Builder {
            device: device.clone(),
        }
    }

    /// Builds a plan of `graph` for this device.
    pub fn build(&self, graph: &Graph, config: &BuildConfig) -> Result<Plan> {
        let fingerprint = Fingerprint::of_device(&self.device)?;
        let (mut plan, programs) = prepare_programs(graph, config, fingerprint)?;
        crate::runtime::finish_build(&self.device, &mut plan, &programs)?;
        Ok(plan)
    }
}

/// The element type activations are stored in for `precision`.
pub fn compute_dtype(precision: Precision) -> Result<DataType> {
    match precision {
        Precision::Fp32 | Precision::Tf32 => Ok(DataType::F32),
        Precision::Fp16 => Ok(DataType::F16),
        Precision::Bf16 => Ok(DataType::BF16),
        Precision::Int8 => Err(EngineError::Unsupported(
            "int8 engines (calibration / Q-DQ) are not in kiln-engine v1; use fp32, tf32, fp16 or bf16"
                .into(),
        )),
    }
}

/// The engine's inputs or outputs as specs.
pub(crate) fn specs(values: &[kiln_onnx::ValueInfo]) -> Result<Vec<TensorSpec>> {
    values
        .iter()
        .map(|v| {
            let dtype = v.dtype.ok_or_else(|| {
                EngineError::Unsupported(format!("engine I/O '{}' has no element type", v.name))
            })?;
            let shape = v.shape.clone().ok_or_else(|| {
                EngineError::Unsupported(format!("engine I/O '{}' has no rank", v.name))
            })?;
            Ok(TensorSpec::new(v.name.clone(), dtype, shape))
        })
        .collect()
}

/// The input dims a profile's `opt` (or the declared fixed shape) gives.
pub(crate) fn opt_shapes(
    inputs: &[TensorSpec],
    profile: Option<&kiln_core::OptimizationProfile>,
) -> Result<Vec<(String, Vec<usize>)>> {
    inputs
        .iter()
        .map(|spec| {
            let from_profile = profile
                .and_then(|p| p.inputs.iter().find(|i| i.name == spec.name))
                .map(|i| i.opt.clone());
            let dims = from_profile.or_else(|| spec.shape.as_known()).ok_or_else(|| {
                EngineError::Config(format!(
                    "input '{}' has dynamic shape {} and no optimisation profile names it; give min/opt/max shapes",
                    spec.name, spec.shape
                ))
            })?;
            Ok((spec.name.clone(), dims))
        })
        .collect()
}

/// Host part of a build (see the module doc).
pub fn prepare(graph: &Graph, config: &BuildConfig, fingerprint: Fingerprint) -> Result<Plan> {
    Ok(prepare_programs(graph, config, fingerprint)?.0)
}

/// [`prepare`], also returning the specialised graph and program at each profile's `opt`
/// shapes (the device part of the build compiles their kernels and chooses their tactics).
pub fn prepare_programs(
    graph: &Graph,
    config: &BuildConfig,
    fingerprint: Fingerprint,
) -> Result<(Plan, Vec<(Graph, lower::Program)>)> {
    let compute = compute_dtype(config.precision)?;
    for p in &config.profiles {
        p.validate()?;
        for i in &p.inputs {
            if !graph.inputs.iter().any(|v| v.name == i.name) {
                return Err(EngineError::Config(format!(
                    "profile names input '{}', which the model does not have",
                    i.name
                )));
            }
        }
    }
    let bad = lower::unsupported_nodes(graph, true);
    if !bad.is_empty() {
        return Err(EngineError::UnsupportedNodes { nodes: bad });
    }
    let (optimized, passes) = passes::optimize(graph)?;
    let inputs = specs(&optimized.inputs)?;
    let outputs = specs(&graph.outputs)?;
    // Lower once per profile at its opt shapes: unsupported shapes fail the build, not the
    // first run.
    let profiles: Vec<Option<&kiln_core::OptimizationProfile>> = if config.profiles.is_empty() {
        vec![None]
    } else {
        config.profiles.iter().map(Some).collect()
    };
    let mut programs = Vec::new();
    for p in profiles {
        let shapes = opt_shapes(&inputs, p)?;
        let g = lower::specialize(&optimized, &shapes)?;
        let (g, fused) = rewrite::rewrite(g, compute, &config.fusions)?;
        tracing::info!(?fused, "specialisation fusions at opt shapes");
        let program = lower::lower(&g, compute)?;
        let math = crate::runtime::libs::math_mode(config.precision)?;
        let bad = crate::runtime::ops::check_program(&program, math);
        if !bad.is_empty() {
            return Err(EngineError::UnsupportedNodes { nodes: bad });
        }
        tracing::info!(
            steps = program.steps.len(),
            arena_bytes = program.arena_bytes,
            "lowered at opt shapes"
        );
        programs.push((g, program));
    }
    let header = PlanHeader {
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        fingerprint,
        config: config.clone(),
        inputs,
        outputs,
        passes,
    };
    let graph_bytes = kiln_onnx::to_model_bytes(&optimized)?;
    Ok((
        Plan {
            header,
            sections: vec![(GRAPH_SECTION.to_string(), graph_bytes)],
        },
        programs,
    ))
}
