//! The transport-independent server: inference requests and responses as the Open Inference
//! Protocol (v2) defines them, their checks against the model, the call into kiln-batch,
//! metadata, readiness and statistics. `http.rs` and `grpc.rs` only translate to and from
//! their wire formats.
//!
//! Request parameters understood: `priority` (a kiln-batch priority level, 0 highest),
//! `timeout` (queue timeout in microseconds, Triton's meaning; past it the request is answered
//! UNAVAILABLE), `binary_data_output` (HTTP: every output in binary form). Others are ignored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_batch::{Request, TimeoutAction};
use kiln_core::{DataType, HostTensor, Shape, TensorSpec};
use serde::Serialize;

use crate::error::ServeError;
use crate::metrics::Counters;
use crate::repository::{LoadedModel, Repository};
use crate::stats::ModelStatistics;
use crate::tensor;

/// The extensions this server implements, as server metadata lists them.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_repository", "statistics"];

/// An input's data as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum InputData {
    /// Little-endian bytes, row-major (binary extension, gRPC).
    Raw(Vec<u8>),
    /// A JSON array, flat or nested (HTTP).
    Json(serde_json::Value),
}

/// One input tensor of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferInput {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: InputData,
}

/// An output the client asked for; `binary` is the HTTP binary-extension flag (`None`: the
/// request's default).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: Option<bool>,
}

/// An inference request, whichever transport it came over.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    pub model: String,
    pub version: Option<String>,
    pub id: Option<String>,
    pub inputs: Vec<InferInput>,
    /// Empty: every output of the model.
    pub outputs: Vec<RequestedOutput>,
    pub priority: Option<u64>,
    /// Queue timeout in microseconds.
    pub timeout_us: Option<u64>,
    /// Outputs without their own flag are sent in binary (HTTP).
    pub binary_output: bool,
}

/// One output tensor of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<usize>,
    /// Little-endian bytes, row-major.
    pub data: Vec<u8>,
    /// Send in binary form (HTTP binary extension).
    pub binary: bool,
}

/// The answer to an inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

/// Tensor metadata: `-1` for a dim of variable size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// Model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// Server metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// What both transports share: the repository, readiness and counters.
pub struct Core {
    pub repo: Arc<Repository>,
    /// False before startup loading finishes and once shutdown starts.
    ready: AtomicBool,
    pub counters: Counters,
}

fn shape_meta(shape: &Shape) -> Vec<i64> {
    shape
        .dims()
        .iter()
        .map(|d| d.known().and_then(|k| i64::try_from(k).ok()).unwrap_or(-1))
        .collect()
}

fn tensor_meta(spec: &TensorSpec) -> TensorMetadata {
    TensorMetadata {
        name: spec.name.clone(),
        datatype: tensor::datatype_name(spec.dtype).into(),
        shape: shape_meta(&spec.shape),
    }
}

impl Core {
    pub fn new(repo: Arc<Repository>) -> Core {
        Core {
            repo,
            ready: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Server readiness: startup done, not shutting down, no model loading or failed.
    pub fn server_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.repo.all_ready()
    }

    pub fn server_metadata(&self) -> ServerMetadata {
        ServerMetadata {
            name: "kiln".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Whether `name` (at `version`) is loaded; unknown models are NotFound.
    pub fn model_ready(&self, name: &str, version: Option<&str>) -> Result<bool, ServeError> {
        match self.repo.get(name, version) {
            Ok(_) => Ok(true),
            Err(ServeError::Unavailable(_)) => Ok(false),
            Err(e) => {
                let any_version = version.is_none_or(str::is_empty);
                if any_version && self.repo.knows(name) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub fn model_metadata(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<ModelMetadata, ServeError> {
        let m = self.repo.get(name, version)?;
        let versions = match version.filter(|v| !v.is_empty()) {
            Some(_) => vec![m.version.to_string()],
            None => self
                .repo
                .versions(name)
                .iter()
                .map(u64::to_string)
                .collect(),
        };
        Ok(ModelMetadata {
            name: m.name.clone(),
            versions,
            platform: m.platform().into(),
            inputs: m.inputs.iter().map(tensor_meta).collect(),
            outputs: m.outputs.iter().map(tensor_meta).collect(),
        })
    }

    /// Statistics of `name` (every loaded version, or `version`), or of every loaded model.
    pub fn statistics(
        &self,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<ModelStatistics>, ServeError> {
        let models: Vec<Arc<LoadedModel>> = match name.filter(|n| !n.is_empty()) {
            None => self.repo.loaded(),
            Some(n) => match version.filter(|v| !v.is_empty()) {
                Some(v) => vec![self.repo.get(n, Some(v))?],
                None => {
                    self.repo.get(n, None)?;
                    self.repo
                        .loaded()
                        .into_iter()
                        .filter(|m| m.name == n)
                        .collect()
                }
            },
        };
        Ok(models
            .iter()
            .map(|m| {
                let sizes = m.executor.metrics().batch_sizes;
                m.stats.report(&m.name, m.version, &sizes)
            })
            .collect())
    }

    /// Runs one inference request through the model's executor.
    pub async fn infer(&self, req: InferRequest) -> Result<InferResponse, ServeError> {
        let start = Instant::now();
        let model = self.repo.get(&req.model, req.version.as_deref())?;
        let result = run(&model, req, start).await;
        match &result {
            Ok(_) => self.counters.infer(&model.name, "success"),
            Err(e) => {
                model.stats.fail(start.elapsed());
                self.counters.infer(&model.name, e.kind());
            }
        }
        result
    }
}

async fn run(
    model: &LoadedModel,
    req: InferRequest,
    start: Instant,
) -> Result<InferResponse, ServeError> {
    let (request, rows, wanted) = check(model, &req)?;
    let input_time = start.elapsed();
    let response = model
        .executor
        .submit(request)
        .await
        .map_err(|e| ServeError::from_batch(&model.name, e))?;
    let mut outputs = Vec::with_capacity(wanted.len());
    for (i, binary) in wanted {
        let t = &response.outputs[i];
        outputs.push(OutputTensor {
            name: t.name.clone(),
            dtype: t.dtype,
            dims: t.dims.clone(),
            data: t.data.clone(),
            binary,
        });
    }
    model
        .stats
        .success(start.elapsed(), input_time, rows, &response.metrics);
    Ok(InferResponse {
        model_name: model.name.clone(),
        model_version: model.version.to_string(),
        id: req.id,
        outputs,
    })
}

fn invalid(msg: String) -> ServeError {
    ServeError::InvalidArgument(msg)
}

fn expected_shape(spec: &TensorSpec) -> String {
    let dims: Vec<String> = shape_meta(&spec.shape)
        .iter()
        .map(|d| d.to_string())
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Checks `req` against `model` and builds the kiln-batch request, its rows, and the outputs
/// to send (engine index, binary flag).
#[allow(clippy::type_complexity)]
pub fn check(
    model: &LoadedModel,
    req: &InferRequest,
) -> Result<(Request, usize, Vec<(usize, bool)>), ServeError> {
    let names = || {
        model
            .inputs
            .iter()
            .map(|s| {
                format!(
                    "{} ({} {})",
                    s.name,
                    tensor::datatype_name(s.dtype),
                    expected_shape(s)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut tensors: Vec<HostTensor> = Vec::with_capacity(req.inputs.len());
    let mut rows = None;
    for input in &req.inputs {
        let name = &input.name;
        let Some(spec) = model.inputs.iter().find(|s| s.name == *name) else {
            return Err(invalid(format!(
                "model '{}' has no input '{name}'; its inputs are: {}",
                model.name,
                names()
            )));
        };
        if tensors.iter().any(|t| t.name == *name) {
            return Err(invalid(format!("input '{name}' is given twice")));
        }
        let dtype = tensor::parse_datatype(&input.datatype, name)?;
        if dtype != spec.dtype {
            return Err(invalid(format!(
                "input '{name}' has datatype {} where model '{}' expects {}",
                input.datatype,
                model.name,
                tensor::datatype_name(spec.dtype)
            )));
        }
        let dims = tensor::shape_to_dims(&input.shape, name)?;
        let fits = dims.len() == spec.shape.rank()
            && dims
                .iter()
                .zip(spec.shape.dims())
                .all(|(&d, s)| s.known().is_none_or(|k| k == d));
        if !fits {
            return Err(invalid(format!(
                "input '{name}' has shape {:?} where model '{}' expects {} (-1: any size)",
                input.shape,
                model.name,
                expected_shape(spec)
            )));
        }
        let batch = dims.first().copied().unwrap_or(1);
        if batch == 0 || batch > model.max_batch {
            return Err(invalid(format!(
                "input '{name}' has batch size {batch} (dim 0) where model '{}' takes 1 to {}",
                model.name, model.max_batch
            )));
        }
        match rows {
            None => rows = Some(batch),
            Some(r) if r != batch => {
                return Err(invalid(format!(
                    "inputs disagree on the batch size (dim 0): {r} and {batch} (input '{name}')"
                )));
            }
            Some(_) => {}
        }
        let size = tensor::byte_size(dtype, &dims, name)?;
        let data = match &input.data {
            InputData::Raw(bytes) => {
                if bytes.len() != size {
                    return Err(invalid(format!(
                        "input '{name}' has {} bytes of data where shape {:?} of {} needs {size}",
                        bytes.len(),
                        input.shape,
                        input.datatype
                    )));
                }
                bytes.clone()
            }
            InputData::Json(v) => {
                tensor::json_to_bytes(v, dtype, size / dtype.size_in_bytes().max(1), name)?
            }
        };
        tensors.push(HostTensor {
            name: name.clone(),
            dtype,
            dims,
            data,
        });
    }
    let missing: Vec<&str> = model
        .inputs
        .iter()
        .filter(|s| !tensors.iter().any(|t| t.name == s.name))
        .map(|s| s.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "model '{}' needs input(s) {} which the request does not give; its inputs are: {}",
            model.name,
            missing.join(", "),
            names()
        )));
    }
    let wanted: Vec<(usize, bool)> = if req.outputs.is_empty() {
        (0..model.outputs.len())
            .map(|i| (i, req.binary_output))
            .collect()
    } else {
        let mut w = Vec::new();
        for o in &req.outputs {
            let Some(i) = model.outputs.iter().position(|s| s.name == o.name) else {
                let outs: Vec<&str> = model.outputs.iter().map(|s| s.name.as_str()).collect();
                return Err(invalid(format!(
                    "model '{}' has no output '{}'; its outputs are: {}",
                    model.name,
                    o.name,
                    outs.join(", ")
                )));
            };
            w.push((i, o.binary.unwrap_or(req.binary_output)));
        }
        w
    };
    let mut request = Request::new(tensors);
    if let Some(p) = req.priority {
        request.priority = Some(usize::try_from(p).unwrap_or(usize::MAX));
    }
    if let Some(us) = req.timeout_us.filter(|&us| us > 0) {
        request = request.with_timeout(Duration::from_micros(us), TimeoutAction::Reject);
    }
    Ok((request, rows.unwrap_or(1), wanted))
}
