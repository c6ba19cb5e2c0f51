//! gRPC (tonic): `inference.GRPCInferenceService` from `proto/grpc_predict_v2.proto`, compiled
//! at build time by protox (no system protoc).
//!
//! RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer
//! (inputs in `contents` or `raw_input_contents`; outputs always in `raw_output_contents`, as
//! Triton answers), ModelStatistics, RepositoryIndex, RepositoryModelLoad and
//! RepositoryModelUnload. Others (ModelConfig, streaming, shared memory, trace, log settings)
//! answer UNIMPLEMENTED. Errors: NOT_FOUND (unknown model or version), INVALID_ARGUMENT (bad
//! input), UNAVAILABLE (overload, shutdown, queue timeout), RESOURCE_EXHAUSTED (message above
//! the limit), INTERNAL (backend failure). FP16 and BF16 have no typed `contents` list in the
//! protocol: they must come raw.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::core::{Core, InferInput, InferRequest, InputData, RequestedOutput};
use crate::error::ServeError;
use crate::stats::{self, ModelStatistics};
use crate::tensor;
use crate::tls::Tls;

/// The generated protocol messages and service.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::infer_parameter::ParameterChoice;
use pb::model_infer_request::InferInputTensor;

/// The service over the shared core.
pub struct Service {
    core: Arc<Core>,
}

impl Service {
    fn done<T>(&self, method: &str, r: Result<T, ServeError>) -> Result<Response<T>, Status> {
        let code = match &r {
            Ok(_) => "OK".to_string(),
            Err(e) => format!("{:?}", e.grpc_code()),
        };
        self.core.counters.request("grpc", method, &code);
        r.map(Response::new).map_err(Status::from)
    }
}

fn invalid(msg: String) -> ServeError {
    ServeError::InvalidArgument(msg)
}

fn uint_param(
    params: &HashMap<String, pb::InferParameter>,
    key: &str,
) -> Result<Option<u64>, ServeError> {
    match params.get(key).and_then(|p| p.parameter_choice.as_ref()) {
        None => Ok(None),
        Some(ParameterChoice::Uint64Param(v)) => Ok(Some(*v)),
        Some(ParameterChoice::Int64Param(v)) => u64::try_from(*v)
            .map(Some)
            .map_err(|_| invalid(format!("parameter '{key}' must not be negative ({v})"))),
        Some(other) => Err(invalid(format!(
            "parameter '{key}' must be an integer, not {other:?}"
        ))),
    }
}

/// Typed `contents` of input `name` as little-endian bytes of `dtype`.
fn contents_to_bytes(
    c: &pb::InferTensorContents,
    dtype: kiln_core::DataType,
    name: &str,
) -> Result<Vec<u8>, ServeError> {
    use kiln_core::DataType as D;
    let narrow = |what: &str| {
        invalid(format!(
            "input '{name}': a value of {what} does not fit {}",
            tensor::datatype_name(dtype)
        ))
    };
    macro_rules! conv {
        ($list:expr, $t:ty) => {{
            let mut out = Vec::with_capacity($list.len() * std::mem::size_of::<$t>());
            for &v in $list.iter() {
                let x = <$t>::try_from(v).map_err(|_| narrow(&v.to_string()))?;
                out.extend_from_slice(&x.to_le_bytes());
            }
            out
        }};
    }
    Ok(match dtype {
        D::Bool => c.bool_contents.iter().map(|&b| u8::from(b)).collect(),
        D::I8 => conv!(c.int_contents, i8),
        D::I16 => conv!(c.int_contents, i16),
        D::I32 => conv!(c.int_contents, i32),
        D::I64 => conv!(c.int64_contents, i64),
        D::U8 => conv!(c.uint_contents, u8),
        D::U16 => conv!(c.uint_contents, u16),
        D::U32 => conv!(c.uint_contents, u32),
        D::U64 => conv!(c.uint64_contents, u64),
        D::F32 => c
            .fp32_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        D::F64 => c
            .fp64_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        D::F16 | D::BF16 => {
            return Err(invalid(format!(
                "input '{name}': {} data has no typed contents list in the protocol; send it \
                 in raw_input_contents",
                tensor::datatype_name(dtype)
            )));
        }
    })
}

/// A gRPC inference request in the core's form.
pub fn to_core_request(req: pb::ModelInferRequest) -> Result<InferRequest, ServeError> {
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} entries for {} inputs; give one per input, in order",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for t in req.inputs {
        let InferInputTensor {
            name,
            datatype,
            shape,
            contents,
            ..
        } = t;
        let data = match (raw.next(), contents) {
            (Some(_), Some(c)) if c != pb::InferTensorContents::default() => {
                return Err(invalid(format!(
                    "input '{name}' has both contents and raw_input_contents; give one"
                )));
            }
            (Some(bytes), _) => bytes,
            (None, Some(c)) => {
                let dtype = tensor::parse_datatype(&datatype, &name)?;
                contents_to_bytes(&c, dtype, &name)?
            }
            (None, None) => {
                return Err(invalid(format!(
                    "input '{name}' has no data: give contents or raw_input_contents"
                )));
            }
        };
        inputs.push(InferInput {
            name,
            datatype,
            shape,
            data: InputData::Raw(data),
        });
    }
    Ok(InferRequest {
        model: req.model_name,
        version: Some(req.model_version).filter(|v| !v.is_empty()),
        id: Some(req.id).filter(|s| !s.is_empty()),
        priority: uint_param(&req.parameters, "priority")?,
        timeout_us: uint_param(&req.parameters, "timeout")?,
        inputs,
        outputs: req
            .outputs
            .into_iter()
            .map(|o| RequestedOutput {
                name: o.name,
                binary: None,
            })
            .collect(),
        binary_output: true,
    })
}

fn duration(d: stats::StatDuration) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

fn statistics(s: ModelStatistics) -> pb::ModelStatistics {
    let i = s.inference_stats;
    pb::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(i.success),
            fail: duration(i.fail),
            queue: duration(i.queue),
            compute_input: duration(i.compute_input),
            compute_infer: duration(i.compute_infer),
            compute_output: duration(i.compute_output),
            cache_hit: duration(i.cache_hit),
            cache_miss: duration(i.cache_miss),
        }),
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(b.compute_input),
                compute_infer: duration(b.compute_infer),
                compute_output: duration(b.compute_output),
            })
            .collect(),
        memory_usage: Vec::new(),
    }
}

fn tensor_md(t: crate::core::TensorMetadata) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
    }
}

fn check_load_parameters(
    p: &HashMap<String, pb::ModelRepositoryParameter>,
) -> Result<(), ServeError> {
    if let Some(k) = p.keys().find(|k| *k == "config" || k.starts_with("file:")) {
        return Err(invalid(format!(
            "load parameter '{k}' is not supported: kiln reads the model's files and config.json \
             from the repository folder; edit them there and load again"
        )));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))?
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        self.done("server_live", Ok(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = self.core.server_ready();
        self.done("server_ready", Ok(pb::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = r.into_inner();
        let ready = self.core.model_ready(&r.name, Some(&r.version));
        self.done(
            "model_ready",
            ready.map(|ready| pb::ModelReadyResponse { ready }),
        )
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        let m = self.core.server_metadata();
        self.done(
            "server_metadata",
            Ok(pb::ServerMetadataResponse {
                name: m.name,
                version: m.version,
                extensions: m.extensions,
            }),
        )
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = self.core.model_metadata(&r.name, Some(&r.version));
        self.done(
            "model_metadata",
            m.map(|m| pb::ModelMetadataResponse {
                name: m.name,
                versions: m.versions,
                platform: m.platform,
                inputs: m.inputs.into_iter().map(tensor_md).collect(),
                outputs: m.outputs.into_iter().map(tensor_md).collect(),
            }),
        )
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let result = async {
            let req = to_core_request(r.into_inner())?;
            let resp = self.core.infer(req).await?;
            let mut outputs = Vec::with_capacity(resp.outputs.len());
            let mut raw = Vec::with_capacity(resp.outputs.len());
            for o in resp.outputs {
                outputs.push(pb::model_infer_response::InferOutputTensor {
                    name: o.name,
                    datatype: tensor::datatype_name(o.dtype).into(),
                    shape: o.dims.iter().map(|&d| d as i64).collect(),
                    parameters: HashMap::new(),
                    contents: None,
                });
                raw.push(o.data);
            }
            Ok(pb::ModelInferResponse {
                model_name: resp.model_name,
                model_version: resp.model_version,
                id: resp.id.unwrap_or_default(),
                parameters: HashMap::new(),
                outputs,
                raw_output_contents: raw,
            })
        }
        .await;
        self.done("model_infer", result)
    }

    async fn model_statistics(
        &self,
        r: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = r.into_inner();
        let s = self.core.statistics(Some(&r.name), Some(&r.version));
        self.done(
            "statistics",
            s.map(|s| pb::ModelStatisticsResponse {
                model_stats: s.into_iter().map(statistics).collect(),
            }),
        )
    }

    async fn repository_index(
        &self,
        r: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let ready = r.into_inner().ready;
        let repo = self.core.repo.clone();
        let index = blocking(move || Ok(repo.index(ready))).await;
        self.done(
            "repository_index",
            index.map(|index| pb::RepositoryIndexResponse {
                models: index
                    .into_iter()
                    .map(|e| pb::repository_index_response::ModelIndex {
                        name: e.name,
                        version: e.version.unwrap_or_default(),
                        state: e.state,
                        reason: e.reason,
                    })
                    .collect(),
            }),
        )
    }

    async fn repository_model_load(
        &self,
        r: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let r = r.into_inner();
        let repo = self.core.repo.clone();
        let result = match check_load_parameters(&r.parameters) {
            Ok(()) => blocking(move || repo.load(&r.model_name)).await,
            Err(e) => Err(e),
        };
        self.done(
            "repository_load",
            result.map(|_| pb::RepositoryModelLoadResponse {}),
        )
    }

    async fn repository_model_unload(
        &self,
        r: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let r = r.into_inner();
        let repo = self.core.repo.clone();
        let result = blocking(move || repo.unload(&r.model_name)).await;
        self.done(
            "repository_unload",
            result.map(|_| pb::RepositoryModelUnloadResponse {}),
        )
    }
}

/// The gRPC server on `listener` until `signal`; in-flight calls finish first.
pub fn serve(
    core: Arc<Core>,
    listener: TcpListener,
    tls: Option<&Tls>,
    max_message: usize,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static, ServeError>
{
    let svc = GrpcInferenceServiceServer::new(Service { core })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    // Large tensors (a 224x224 image is 602 KB) need more than HTTP/2's 64 KiB default
    // windows, or each request waits for window updates.
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(8u32 << 20)
        .initial_connection_window_size(32u32 << 20);
    if let Some(t) = tls {
        let identity = tonic::transport::Identity::from_pem(&t.cert_pem, &t.key_pem);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServeError::Load(format!("gRPC TLS: {e}")))?;
    }
    // `tcp_nodelay` above applies only to sockets tonic accepts itself: set it on these too,
    // or small answers wait for the peer's delayed ACK (~40 ms per call at low concurrency).
    let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |conn| {
        conn.inspect(|s| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY on a gRPC connection: {e}");
            }
        })
    });
    Ok(builder
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, signal))
}
