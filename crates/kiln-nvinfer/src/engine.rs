//! A deserialised engine and its execution contexts, behind kiln-core's backend traits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kiln_core::{
    BackendError, DataType, DevicePtr, Dim, Engine, ExecutionContext, HostTensor,
    OptimizationProfile, ProfileInput, Shape, StreamHandle, TensorSpec,
};

use crate::error::{NvInferError, Result};
use crate::ffi::{CudaEngine, ExecContext, Runtime};
use crate::sys::{Dims64, IO_INPUT, IO_OUTPUT, SEL_MAX, SEL_MIN, SEL_OPT, data_type as dt};
use crate::{BACKEND, TensorRt};

/// TensorRT's element type as kiln's.
pub(crate) fn dtype_from_trt(name: &str, v: i32) -> Result<DataType> {
    Ok(match v {
        dt::FLOAT => DataType::F32,
        dt::HALF => DataType::F16,
        dt::INT8 => DataType::I8,
        dt::INT32 => DataType::I32,
        dt::BOOL => DataType::Bool,
        dt::UINT8 => DataType::U8,
        dt::BF16 => DataType::BF16,
        dt::INT64 => DataType::I64,
        other => {
            return Err(NvInferError::Unsupported(format!(
                "tensor '{name}' has TensorRT element type {other} (fp8/int4/fp4), which kiln \
                 tensors cannot hold"
            )));
        }
    })
}

fn shape_of(name: &str, d: &Dims64) -> Result<Shape> {
    let dims = d.to_vec().ok_or_else(|| NvInferError::CallFailed {
        call: "getTensorShape",
        detail: format!("tensor '{name}' has nbDims {}", d.nb_dims),
    })?;
    Ok(Shape::new(
        dims.iter()
            .enumerate()
            .map(|(i, &v)| match usize::try_from(v) {
                Ok(n) => Dim::Known(n),
                Err(_) => Dim::Symbol(format!("{name}_dim{i}").into()),
            })
            .collect(),
    ))
}

fn known(name: &str, d: &Dims64) -> Result<Vec<usize>> {
    d.to_vec()
        .and_then(|v| v.iter().map(|&x| usize::try_from(x).ok()).collect())
        .ok_or_else(|| NvInferError::CallFailed {
            call: "shape query",
            detail: format!("tensor '{name}' has no fixed shape ({d:?})"),
        })
}

/// A TensorRT engine: immutable, shared by its contexts.
pub struct TrtEngine {
    // Field order is drop order: the engine before the (Arc-shared) runtime it came from.
    engine: CudaEngine,
    _runtime: Runtime,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    profiles: Vec<OptimizationProfile>,
    /// CUDA device for `execute_host`.
    device: usize,
}

impl std::fmt::Debug for TrtEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrtEngine")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("profiles", &self.profiles)
            .finish()
    }
}

impl TensorRt {
    /// Deserialises an engine plan (runtime → `deserializeCudaEngine`) and reads its IO.
    pub fn deserialize(&self, plan: &[u8]) -> Result<TrtEngine> {
        let runtime = Runtime::new(&self.shared)?;
        let engine = runtime.deserialize(plan)?;
        TrtEngine::introspect(engine, runtime)
    }

    /// Loads an engine file written by [`crate::SerializedEngine::save`].
    pub fn load_engine(&self, path: &Path) -> Result<TrtEngine> {
        let bytes = std::fs::read(path).map_err(|e| NvInferError::Io {
            path: path.display().to_string(),
            message: format!("cannot read the engine: {e}"),
        })?;
        self.deserialize(&bytes)
    }
}

impl TrtEngine {
    fn introspect(engine: CudaEngine, runtime: Runtime) -> Result<TrtEngine> {
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        for i in 0..engine.nb_io_tensors()? {
            let name = engine.io_tensor_name(i)?;
            let dtype = dtype_from_trt(&name, engine.tensor_dtype(&name)?)?;
            let shape = shape_of(&name, &engine.tensor_shape(&name)?)?;
            match engine.tensor_io_mode(&name)? {
                IO_INPUT => inputs.push(TensorSpec::new(name, dtype, shape)),
                IO_OUTPUT => outputs.push(TensorSpec::new(name, dtype, shape)),
                other => {
                    tracing::warn!(target: "tensorrt", tensor = %name, mode = other, "IO tensor of unknown mode skipped")
                }
            }
        }
        let mut profiles = Vec::new();
        for k in 0..engine.nb_profiles()? {
            let mut p = OptimizationProfile::default();
            for t in inputs.iter().filter(|t| !t.shape.is_fully_known()) {
                let sel = |s| {
                    engine
                        .profile_shape(&t.name, k, s)
                        .and_then(|d| known(&t.name, &d))
                };
                p.inputs.push(ProfileInput {
                    name: t.name.clone(),
                    min: sel(SEL_MIN)?,
                    opt: sel(SEL_OPT)?,
                    max: sel(SEL_MAX)?,
                });
            }
            profiles.push(p);
        }
        Ok(TrtEngine {
            engine,
            _runtime: runtime,
            inputs,
            outputs,
            profiles,
            device: 0,
        })
    }

    /// The CUDA device `execute_host` runs on (default 0).
    pub fn with_device(mut self, index: usize) -> TrtEngine {
        self.device = index;
        self
    }

    fn tensor(&self, name: &str) -> std::result::Result<&TensorSpec, BackendError> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .find(|t| t.name == name)
            .ok_or_else(|| BackendError::UnknownTensor {
                name: name.to_string(),
                known: self
                    .inputs
                    .iter()
                    .chain(&self.outputs)
                    .map(|t| t.name.clone())
                    .collect(),
            })
    }
}

impl Engine for TrtEngine {
    fn backend(&self) -> &str {
        BACKEND
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn profiles(&self) -> &[OptimizationProfile] {
        &self.profiles
    }
    /// TensorRT reports the size for the largest shapes of every profile
    /// (`getDeviceMemorySizeV2`), whatever `input_shapes` says.
    fn device_memory_size(
        &self,
        _input_shapes: &[(&str, &[usize])],
    ) -> Result<usize, BackendError> {
        let n = self.engine.device_memory_size()?;
        usize::try_from(n).map_err(|_| {
            NvInferError::CallFailed {
                call: "ICudaEngine::getDeviceMemorySizeV2",
                detail: format!("negative size {n}"),
            }
            .into()
        })
    }
    fn create_context(self: Arc<Self>) -> Result<Box<dyn ExecutionContext>, BackendError> {
        Ok(Box::new(TrtContext::new(self)?))
    }
}

struct Cuda {
    stream: Arc<kiln_cuda::Stream>,
    alloc: kiln_cuda::DeviceAllocator,
}

/// One TensorRT execution context (one stream at a time).
pub struct TrtContext {
    // Drop order: the context before the engine it holds.
    ctx: ExecContext,
    engine: Arc<TrtEngine>,
    shapes: HashMap<String, Vec<usize>>,
    cuda: Option<Cuda>,
}

impl TrtContext {
    /// A context on `engine`.
    pub fn new(engine: Arc<TrtEngine>) -> Result<TrtContext> {
        Ok(TrtContext {
            ctx: engine.engine.create_context()?,
            engine,
            shapes: HashMap::new(),
            cuda: None,
        })
    }

    fn cuda(&mut self) -> std::result::Result<&Cuda, BackendError> {
        if self.cuda.is_none() {
            let open = || -> Result<Cuda> {
                let device = kiln_cuda::Device::open(self.engine.device)?;
                Ok(Cuda {
                    stream: kiln_cuda::Stream::new(&device)?,
                    alloc: kiln_cuda::DeviceAllocator::new(&device),
                })
            };
            self.cuda = Some(open()?);
        }
        self.cuda
            .as_ref()
            .ok_or_else(|| unreachable_err("CUDA state"))
    }
}

fn unreachable_err(what: &str) -> BackendError {
    BackendError::Runtime {
        backend: BACKEND.into(),
        message: format!("internal: {what} missing"),
    }
}

fn failed(call: &'static str, detail: String) -> BackendError {
    NvInferError::CallFailed { call, detail }.into()
}

impl ExecutionContext for TrtContext {
    fn set_input_shape(&mut self, name: &str, dims: &[usize]) -> Result<(), BackendError> {
        let spec = self.engine.tensor(name)?;
        if !self.engine.inputs.iter().any(|t| t.name == name) {
            return Err(BackendError::Unsupported {
                backend: BACKEND.into(),
                what: format!("setting the shape of output '{name}'"),
            });
        }
        let fits = spec.shape.rank() == dims.len()
            && spec
                .shape
                .dims()
                .iter()
                .zip(dims)
                .all(|(d, &v)| d.known().is_none_or(|k| k == v));
        if !fits {
            return Err(BackendError::WrongShape {
                name: name.into(),
                expected: spec
                    .shape
                    .dims()
                    .iter()
                    .map(|d| d.known().unwrap_or(0))
                    .collect(),
                got: dims.to_vec(),
            });
        }
        if let Some(p) = self.engine.profiles.first() {
            p.check(name, dims)?;
        }
        if !self.ctx.set_input_shape(name, dims)? {
            return Err(failed(
                "IExecutionContext::setInputShape",
                format!("input '{name}' {dims:?}"),
            ));
        }
        self.shapes.insert(name.to_string(), dims.to_vec());
        Ok(())
    }

    fn output_shape(&self, name: &str) -> Result<Vec<usize>, BackendError> {
        self.engine.tensor(name)?;
        let d = self.ctx.tensor_shape(name)?;
        known(name, &d).map_err(|_| {
            let unset = self
                .engine
                .inputs
                .iter()
                .find(|t| !self.shapes.contains_key(&t.name) && !t.shape.is_fully_known());
            BackendError::Unset {
                name: unset.map_or_else(|| name.to_string(), |t| t.name.clone()),
            }
        })
    }

    fn execute_host(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError> {
        for spec in self.engine.inputs.clone() {
            let t =
                inputs
                    .iter()
                    .find(|t| t.name == spec.name)
                    .ok_or_else(|| BackendError::Unset {
                        name: spec.name.clone(),
                    })?;
            if t.dtype != spec.dtype {
                return Err(BackendError::WrongType {
                    name: t.name.clone(),
                    expected: spec.dtype,
                    got: t.dtype,
                });
            }
            self.set_input_shape(&t.name, &t.dims)?;
        }
        let outputs: Vec<(TensorSpec, Vec<usize>)> = self
            .engine
            .outputs
            .clone()
            .into_iter()
            .map(|s| self.output_shape(&s.name).map(|d| (s, d)))
            .collect::<Result<_, _>>()?;
        let engine = self.engine.clone();
        let (stream, mut buffers) = {
            let cuda = self.cuda()?;
            let mut buffers = Vec::new();
            for t in inputs
                .iter()
                .filter(|t| engine.inputs.iter().any(|s| s.name == t.name))
            {
                let mut b = cuda
                    .alloc
                    .alloc(t.data.len().max(1), &cuda.stream)
                    .map_err(NvInferError::from)?;
                kiln_cuda::copy::htod(&cuda.stream, &t.data, &mut b).map_err(NvInferError::from)?;
                buffers.push((t.name.clone(), b));
            }
            for (s, dims) in &outputs {
                let n = HostTensor::zeros(s.name.clone(), s.dtype, dims)?.data.len();
                let b = cuda
                    .alloc
                    .alloc(n.max(1), &cuda.stream)
                    .map_err(NvInferError::from)?;
                buffers.push((s.name.clone(), b));
            }
            (cuda.stream.clone(), buffers)
        };
        for (name, b) in &buffers {
            use kiln_cuda::DeviceMemory;
            if !self.ctx.set_tensor_address(name, b.device_ptr())? {
                return Err(failed(
                    "IExecutionContext::setTensorAddress",
                    format!("tensor '{name}'"),
                ));
            }
        }
        let owned: Vec<kiln_cuda::DeviceBuffer> = std::mem::take(&mut buffers)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        if !self.ctx.enqueue_and_wait(&stream, &owned)? {
            return Err(failed("IExecutionContext::enqueueV3", String::new()));
        }
        let n_in = owned.len() - outputs.len();
        let mut result = Vec::new();
        for ((s, dims), b) in outputs.iter().zip(&owned[n_in..]) {
            let mut t = HostTensor::zeros(s.name.clone(), s.dtype, dims)?;
            kiln_cuda::copy::dtoh(&stream, b, &mut t.data).map_err(NvInferError::from)?;
            result.push(t);
        }
        Ok(result)
    }

    fn supports_device_io(&self) -> bool {
        true
    }

    fn bind(&mut self, name: &str, ptr: DevicePtr) -> Result<(), BackendError> {
        self.engine.tensor(name)?;
        if self.ctx.set_tensor_address(name, ptr.0)? {
            Ok(())
        } else {
            Err(failed(
                "IExecutionContext::setTensorAddress",
                format!("tensor '{name}'"),
            ))
        }
    }

    #[allow(unsafe_code)]
    unsafe fn enqueue(&mut self, stream: StreamHandle) -> Result<(), BackendError> {
        // SAFETY: the trait's contract (bound memory valid until the stream's work is done,
        // a live stream of the engine's device) is exactly enqueueV3's.
        if unsafe { self.ctx.enqueue_v3(stream.0)? } {
            Ok(())
        } else {
            Err(failed(
                "IExecutionContext::enqueueV3",
                "see the TensorRT log".into(),
            ))
        }
    }
}
