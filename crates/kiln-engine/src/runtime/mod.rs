//! The runtime: [`Engine`] (immutable, weights on the device, shared through `Arc`) and
//! [`ExecutionContext`] (per stream: input shapes, bindings, its own arena).
//!
//! A context specialises the plan's graph to the input shapes it is given (host work, cached
//! per shape set in the engine as a `Prepared` program: small constants on the host, folded
//! initialisers on the device, each library step's tactic), then runs the lowered steps on
//! its stream (`exec`): node steps on E2's NVRTC kernels ([`ops`]), Gemm/MatMul on cuBLASLt
//! and Conv on cuDNN ([`libs`]; tactics from the plan's `tactics` section, chosen on first
//! use for shapes the build did not see), boundary casts of fp16/bf16 engines on the cast
//! kernel. The engine loads the plan's `kernel:` sections with
//! `KernelLibrary::from_binaries` and creates its cuBLASLt/cuDNN handles once;
//! [`finish_build`] is the device half of a build (modules compiled, tactics chosen).

mod context;
mod exec;
pub mod kiln_ops;
pub mod libs;
pub mod ops;
mod prepare;
pub mod profile;
pub mod timing;

pub use context::{DEFAULT_MAX_GRAPHS, ExecutionContext};
pub(crate) use prepare::Prepared;
pub use prepare::{
    BuildReport, KERNEL_SEP, finish_build, finish_build_report, kernel_binaries, kernel_sections,
};
pub use profile::{OpTotal, Peaks, Profile, StepTime};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_core::{BackendError, DataType, OptimizationProfile, TensorSpec};
use kiln_cuda::{Device, DeviceAllocator, DeviceBuffer, Stream};

use crate::builder::{compute_dtype, lower};
use crate::error::{EngineError, Result};
use crate::plan::{Fingerprint, Plan, PlanHeader};

/// Input shapes of one run, in the engine's input order.
pub(crate) type ShapeKey = Vec<Vec<usize>>;

/// A loaded plan: weights on the device, immutable, shared by every context.
pub struct Engine {
    pub(crate) device: Arc<Device>,
    pub(crate) alloc: DeviceAllocator,
    pub(crate) header: PlanHeader,
    pub(crate) graph: kiln_onnx::Graph,
    pub(crate) compute: DataType,
    /// Weights by initialiser name, in the storage type of the engine.
    pub(crate) weights: HashMap<String, DeviceBuffer>,
    /// The NVRTC kernels (from the plan's `kernel:` sections).
    pub(crate) kernels: crate::kernels::nvrtc::KernelLibrary,
    /// cuBLASLt / cuDNN handles, created once when the graph has such ops.
    pub(crate) blas_handle: Option<Arc<crate::kernels::gemm::Blas>>,
    pub(crate) dnn_handle: Option<Arc<crate::kernels::conv::Dnn>>,
    /// Tactics by description: the plan's, plus those chosen for shapes met later.
    pub(crate) tactics: Mutex<libs::Tactics>,
    programs: Mutex<HashMap<ShapeKey, Arc<Prepared>>>,
    /// Initialisers made by specialisation, shared by every program that made the same bytes
    /// under the same name (NHWC weights do not depend on the batch size): one upload and one
    /// copy on the device however many shapes are specialised.
    pub(crate) derived: Mutex<HashMap<prepare::DerivedKey, Arc<DeviceBuffer>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("inputs", &self.header.inputs)
            .field("outputs", &self.header.outputs)
            .field("precision", &self.header.config.precision)
            .field("weights", &self.weights.len())
            .finish()
    }
}

/// Converts an initialiser to the engine's storage type (f32 → f16/bf16 in half engines).
pub(crate) fn weight_bytes(t: &kiln_onnx::Tensor, compute: DataType) -> Result<Vec<u8>> {
    let target = lower::storage_dtype(t.dtype(), compute);
    if target == t.dtype() {
        return Ok(t.as_bytes().to_vec());
    }
    let v = t.to_f32_vec()?;
    Ok(match target {
        DataType::F16 => {
            // Finite values beyond f16's range saturate at ±65504 rather than becoming ±inf
            // (masks like `(1 - m) * f32::MIN` must stay finite: 0 · inf is NaN).
            let h: Vec<half::f16> = v
                .iter()
                .map(|&x| {
                    let x = if x.is_finite() {
                        x.clamp(-65504.0, 65504.0)
                    } else {
                        x
                    };
                    half::f16::from_f32(x)
                })
                .collect();
            bytemuck::cast_slice(&h).to_vec()
        }
        DataType::BF16 => {
            let h: Vec<half::bf16> = v.iter().map(|&x| half::bf16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
        other => {
            return Err(EngineError::Unsupported(format!(
                "weights stored as {other}"
            )));
        }
    })
}

impl Engine {
    /// Loads a plan on `device`: checks that it was built for this GPU and these libraries,
    /// then uploads the weights.
    pub fn from_plan(device: &Arc<Device>, plan: &Plan) -> Result<Arc<Engine>> {
        plan.check_compatible(&Fingerprint::of_device(device)?)?;
        let graph = plan.graph()?;
        let compute = compute_dtype(plan.header.config.precision)?;
        let alloc = DeviceAllocator::new(device);
        let stream = Stream::new(device)?;
        let mut weights = HashMap::new();
        for t in &graph.initializers {
            let bytes = weight_bytes(t, compute)?;
            let mut buf = alloc.alloc(bytes.len().max(1), &stream)?;
            kiln_cuda::copy::htod(&stream, &bytes, &mut buf)?;
            weights.insert(t.name().to_string(), buf);
        }
        stream.synchronize()?;
        let kernels =
            crate::kernels::nvrtc::KernelLibrary::from_binaries(device, kernel_binaries(plan)?)
                .map_err(|e| EngineError::BadPlan(e.to_string()))?;
        let tactics = match plan.section(libs::TACTICS_SECTION) {
            Some(b) => libs::Tactics::from_bytes(b)?,
            None => libs::Tactics::default(),
        };
        let (blas_handle, dnn_handle) = prepare::handles(device, &graph)?;
        tracing::info!(
            weights = weights.len(),
            kernel_modules = kernels.module_names().len(),
            "engine loaded"
        );
        Ok(Arc::new(Engine {
            device: device.clone(),
            alloc,
            header: plan.header.clone(),
            graph,
            compute,
            weights,
            kernels,
            blas_handle,
            dnn_handle,
            tactics: Mutex::new(tactics),
            programs: Mutex::new(HashMap::new()),
            derived: Mutex::new(HashMap::new()),
        }))
    }

    /// Reads and loads a plan file.
    pub fn load(device: &Arc<Device>, path: impl AsRef<std::path::Path>) -> Result<Arc<Engine>> {
        Engine::from_plan(device, &Plan::load(path)?)
    }

    pub fn header(&self) -> &PlanHeader {
        &self.header
    }

    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Checks input shapes against the declared ranks/fixed dims and the profiles, in input
    /// order.
    pub(crate) fn check_shapes(&self, shapes: &[(&str, &[usize])]) -> Result<ShapeKey> {
        let mut key = Vec::new();
        for spec in &self.header.inputs {
            let Some((_, dims)) = shapes.iter().find(|(n, _)| *n == spec.name) else {
                return Err(BackendError::Unset {
                    name: spec.name.clone(),
                }
                .into());
            };
            check_dims(spec, dims, &self.header.config.profiles)?;
            key.push(dims.to_vec());
        }
        if let Some((n, _)) = shapes
            .iter()
            .find(|(n, _)| !self.header.inputs.iter().any(|s| s.name == *n))
        {
            return Err(unknown(n, &self.header.inputs).into());
        }
        Ok(key)
    }

    /// The prepared program at these input shapes (specialised once, then cached).
    pub(crate) fn program(&self, key: &ShapeKey) -> Result<Arc<Prepared>> {
        if let Some(p) = self.programs.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(p);
        }
        let shapes: Vec<(String, Vec<usize>)> = self
            .header
            .inputs
            .iter()
            .zip(key)
            .map(|(s, d)| (s.name.clone(), d.clone()))
            .collect();
        let p = Arc::new(prepare::prepare(self, &shapes)?);
        if let Ok(mut m) = self.programs.lock() {
            m.insert(key.clone(), p.clone());
        }
        Ok(p)
    }

    pub(crate) fn blas(&self) -> Result<&Arc<crate::kernels::gemm::Blas>> {
        self.blas_handle
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("the engine has no cuBLASLt handle".into()))
    }

    pub(crate) fn dnn(&self) -> Result<&Arc<crate::kernels::conv::Dnn>> {
        self.dnn_handle
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("the engine has no cuDNN handle".into()))
    }
}

pub(crate) fn unknown(name: &str, specs: &[TensorSpec]) -> BackendError {
    BackendError::UnknownTensor {
        name: name.to_string(),
        known: specs.iter().map(|s| s.name.clone()).collect(),
    }
}

/// Rank and fixed dims as declared, then every profile that names the input.
pub(crate) fn check_dims(
    spec: &TensorSpec,
    dims: &[usize],
    profiles: &[OptimizationProfile],
) -> Result<(), BackendError> {
    let fixed_ok = spec.shape.rank() == dims.len()
        && spec
            .shape
            .dims()
            .iter()
            .zip(dims)
            .all(|(d, &v)| d.known().is_none_or(|k| k == v));
    if !fixed_ok {
        let expected = spec
            .shape
            .dims()
            .iter()
            .map(|d| d.known().unwrap_or(0))
            .collect();
        return Err(BackendError::WrongShape {
            name: spec.name.clone(),
            expected,
            got: dims.to_vec(),
        });
    }
    for p in profiles {
        p.check(&spec.name, dims)?;
    }
    Ok(())
}

impl kiln_core::Engine for Engine {
    fn backend(&self) -> &str {
        "kiln"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.header.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.header.outputs
    }

    fn profiles(&self) -> &[OptimizationProfile] {
        &self.header.config.profiles
    }

    fn device_memory_size(&self, input_shapes: &[(&str, &[usize])]) -> Result<usize, BackendError> {
        let key = self.check_shapes(input_shapes)?;
        Ok(self.program(&key)?.program.arena_bytes)
    }

    fn create_context(
        self: Arc<Self>,
    ) -> Result<Box<dyn kiln_core::ExecutionContext>, BackendError> {
        Ok(Box::new(ExecutionContext::new(self)?))
    }
}

#[cfg(test)]
mod tests;
