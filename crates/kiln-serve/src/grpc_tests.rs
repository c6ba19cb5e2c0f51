//! gRPC round trips through the generated tonic client over a real socket (port 0), CPU
//! backend, checked against kiln-reference run directly; status codes of bad requests and of
//! overload (a queue of capacity 1 held by a long batching delay).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_core::{Engine as _, HostTensor};
use tonic::Code;

use crate::grpc::pb;
use crate::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::grpc::pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::server::{ServeOptions, Server};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn add(dir: &Path, name: &str, fixture: &str, config: &str) {
    let vdir = dir.join(name).join("1");
    std::fs::create_dir_all(&vdir).unwrap();
    std::fs::copy(
        fixtures().join(format!("{fixture}.onnx")),
        vdir.join("model.onnx"),
    )
    .unwrap();
    std::fs::write(dir.join(name).join("config.json"), config).unwrap();
}

fn reference(fixture: &str, input: &HostTensor) -> Vec<f32> {
    let graph = kiln_onnx::load(fixtures().join(format!("{fixture}.onnx"))).unwrap();
    let engine = Arc::new(kiln_reference::CpuEngine::new(graph).unwrap());
    let mut ctx = engine.create_context().unwrap();
    let out = ctx.execute_host(std::slice::from_ref(input)).unwrap();
    out[0].as_slice::<f32>().unwrap().into_owned()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn input(name: &str, dtype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: dtype.into(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents: None,
    }
}

fn request(model: &str, inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        model_version: String::new(),
        id: "g1".into(),
        parameters: HashMap::new(),
        inputs,
        outputs: Vec::new(),
        raw_input_contents: raw,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_inference_metadata_errors_and_overload() {
    let dir = tempfile::tempdir().unwrap();
    add(
        dir.path(),
        "mlp",
        "mlp_legacy",
        r#"{"backend": "cpu", "max_batch": 4}"#,
    );
    add(
        dir.path(),
        "slow",
        "mlp_legacy",
        r#"{"backend": "cpu", "max_batch": 4,
            "batching": {"max_queue_delay_us": 1500000, "queue_capacity": 1}}"#,
    );
    let mut opts = ServeOptions::new(dir.path());
    (opts.http_port, opts.grpc_port, opts.metrics_port) = (0, 0, 0);
    let server = Server::start(&opts).await.unwrap();
    let url = format!("http://127.0.0.1:{}", server.grpc.port());
    let mut c = GrpcInferenceServiceClient::connect(url).await.unwrap();

    assert!(
        c.server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let md = c
        .model_metadata(pb::ModelMetadataRequest {
            name: "mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.inputs[0].shape, [-1, 16]);
    assert_eq!(md.inputs[0].datatype, "FP32");
    let ready = c
        .model_ready(pb::ModelReadyRequest {
            name: "mlp".into(),
            version: "1".into(),
        })
        .await
        .unwrap();
    assert!(ready.into_inner().ready);

    // Raw contents, batch 3.
    let mut rng = fastrand::Rng::new();
    let x: Vec<f32> = (0..48).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let want = reference(
        "mlp_legacy",
        &HostTensor::from_slice("x", &[3, 16], &x).unwrap(),
    );
    let resp = c
        .model_infer(request(
            "mlp",
            vec![input("x", "FP32", &[3, 16])],
            vec![raw],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.id, "g1");
    assert_eq!(resp.outputs[0].shape, [3, 10]);
    let y = f32s(&resp.raw_output_contents[0]);
    assert!(
        y.iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs()))
    );

    // Typed contents, one requested output.
    let mut typed = input("x", "FP32", &[1, 16]);
    typed.contents = Some(pb::InferTensorContents {
        fp32_contents: x[..16].to_vec(),
        ..Default::default()
    });
    let mut req = request("mlp", vec![typed], vec![]);
    req.outputs.push(InferRequestedOutputTensor {
        name: "y".into(),
        parameters: HashMap::new(),
    });
    let resp = c.model_infer(req).await.unwrap().into_inner();
    let y1 = f32s(&resp.raw_output_contents[0]);
    assert!(
        y1.iter()
            .zip(&want[..10])
            .all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs()))
    );

    // Errors.
    let x1: Vec<u8> = x[..16].iter().flat_map(|v| v.to_le_bytes()).collect();
    let e = c
        .model_infer(request(
            "nope",
            vec![input("x", "FP32", &[1, 16])],
            vec![x1.clone()],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let e = c
        .model_infer(request(
            "mlp",
            vec![input("z", "FP32", &[1, 16])],
            vec![x1.clone()],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("no input 'z'"), "{}", e.message());
    let e = c
        .model_infer(request(
            "mlp",
            vec![input("x", "FP32", &[2, 16])],
            vec![x1.clone()],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("64 bytes") || e.message().contains("needs 128"),
        "{}",
        e.message()
    );
    let e = c
        .model_infer(request(
            "mlp",
            vec![input("x", "INT32", &[1, 16])],
            vec![x1.clone()],
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("expects FP32"), "{}", e.message());

    // Overload: the first request holds the queue (capacity 1) for the batching delay.
    let mut c2 = c.clone();
    let held = x1.clone();
    let first = tokio::spawn(async move {
        c2.model_infer(request(
            "slow",
            vec![input("x", "FP32", &[1, 16])],
            vec![held],
        ))
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let e = c
        .model_infer(request(
            "slow",
            vec![input("x", "FP32", &[1, 16])],
            vec![x1.clone()],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(e.message().contains("queue is full"), "{}", e.message());
    assert!(first.await.unwrap().is_ok());
    // A queue timeout (request parameter, µs) is UNAVAILABLE too.
    let mut req = request("slow", vec![input("x", "FP32", &[1, 16])], vec![x1]);
    req.parameters.insert(
        "timeout".into(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(20_000)),
        },
    );
    let e = c.model_infer(req).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(e.message().contains("timeout"), "{}", e.message());

    // Statistics and the repository.
    let st = c
        .model_statistics(pb::ModelStatisticsRequest {
            name: "mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let s = &st.model_stats[0];
    assert_eq!(
        s.inference_stats
            .as_ref()
            .unwrap()
            .success
            .as_ref()
            .unwrap()
            .count,
        2
    );
    assert_eq!(s.inference_count, 4);
    let index = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(index.models.len(), 2);
    c.repository_model_unload(pb::RepositoryModelUnloadRequest {
        model_name: "slow".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let ready = c
        .model_ready(pb::ModelReadyRequest {
            name: "slow".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    assert!(!ready.into_inner().ready);
    c.repository_model_load(pb::RepositoryModelLoadRequest {
        model_name: "slow".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .repository_model_load(pb::RepositoryModelLoadRequest {
            model_name: "ghost".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.shutdown().await;
}
