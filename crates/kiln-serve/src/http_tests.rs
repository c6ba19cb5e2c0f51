//! In-process HTTP round trips (the axum router through `tower::ServiceExt::oneshot`, and one
//! real socket) on fixtures with the CPU backend, checked against kiln-reference run directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kiln_core::{Engine as _, HostTensor};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::core::Core;
use crate::http::{HttpState, router};
use crate::repository::Repository;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A repository with `mlp` (mlp_legacy, versions 1 and 2) and `cnn` (cnn_legacy), all on cpu.
fn repo(dir: &Path) -> Arc<Repository> {
    for (name, fixture, versions) in [
        ("mlp", "mlp_legacy", &[1, 2][..]),
        ("cnn", "cnn_legacy", &[1]),
    ] {
        for v in versions {
            let vdir = dir.join(name).join(v.to_string());
            std::fs::create_dir_all(&vdir).unwrap();
            std::fs::copy(
                fixtures().join(format!("{fixture}.onnx")),
                vdir.join("model.onnx"),
            )
            .unwrap();
        }
        std::fs::write(
            dir.join(name).join("config.json"),
            r#"{"backend": "cpu", "max_batch": 4, "batching": {"max_queue_delay_us": 200}}"#,
        )
        .unwrap();
    }
    let repo = Arc::new(Repository::new(dir).unwrap());
    for name in repo.scan() {
        repo.load(&name).unwrap();
    }
    repo
}

fn reference(fixture: &str, input: &HostTensor) -> Vec<f32> {
    let graph = kiln_onnx::load(fixtures().join(format!("{fixture}.onnx"))).unwrap();
    let engine = Arc::new(kiln_reference::CpuEngine::new(graph).unwrap());
    let mut ctx = engine.create_context().unwrap();
    let out = ctx.execute_host(std::slice::from_ref(input)).unwrap();
    out[0].as_slice::<f32>().unwrap().into_owned()
}

fn random(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect()
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn app(dir: &Path, max_body: usize) -> (axum::Router, Arc<Core>) {
    let core = Arc::new(Core::new(repo(dir)));
    core.set_ready(true);
    (
        router(HttpState {
            core: core.clone(),
            max_body,
        }),
        core,
    )
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_inference_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (app, core) = app(dir.path(), 64 << 20);
    let mut rng = fastrand::Rng::new();

    // JSON in, JSON out, nested data, batch 3.
    let x = random(&mut rng, 3 * 16);
    let nested: Vec<Vec<f32>> = x.chunks(16).map(<[f32]>::to_vec).collect();
    let body = json!({"id": "a1", "inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP32", "data": nested}]});
    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        body.to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["id"], "a1");
    assert_eq!(v["model_version"], "2");
    assert_eq!(v["outputs"][0]["shape"], json!([3, 10]));
    let y: Vec<f32> = serde_json::from_value(v["outputs"][0]["data"].clone()).unwrap();
    let want = reference(
        "mlp_legacy",
        &HostTensor::from_slice("x", &[3, 16], &x).unwrap(),
    );
    assert!(close(&y, &want), "{y:?} vs {want:?}");

    // Binary in, binary out (cnn, batch 2, version 1 named).
    let x = random(&mut rng, 2 * 3 * 32 * 32);
    let head = json!({"inputs": [{"name": "x", "shape": [2, 3, 32, 32], "datatype": "FP32",
        "parameters": {"binary_data_size": x.len() * 4}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}]})
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend(x.iter().flat_map(|v| v.to_le_bytes()));
    let r = call(
        &app,
        "POST",
        "/v2/models/cnn/versions/1/infer",
        body,
        &[("Inference-Header-Content-Length", head.len().to_string())],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let n: usize = r.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let meta: Value = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(
        meta["outputs"][0]["parameters"]["binary_data_size"],
        2 * 10 * 4
    );
    let y: Vec<f32> = r.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want = reference(
        "cnn_legacy",
        &HostTensor::from_slice("x", &[2, 3, 32, 32], &x).unwrap(),
    );
    assert!(close(&y, &want), "{y:?} vs {want:?}");

    // Statistics count both.
    let r = call(&app, "GET", "/v2/models/mlp/versions/2/stats", vec![], &[]).await;
    let s = r.json();
    assert_eq!(
        s["model_stats"][0]["inference_stats"]["success"]["count"],
        1
    );
    assert_eq!(s["model_stats"][0]["inference_count"], 3);
    assert_eq!(s["model_stats"][0]["execution_count"], 1);
    let text = crate::metrics::exposition(&core.counters, &core.repo.loaded());
    assert!(text.contains("model=\"mlp\",version=\"2\""), "{text}");
    assert!(text.contains("kiln_serve_inferences_total{model=\"cnn\",outcome=\"success\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), 4096);
    let infer = |x: Value| x.to_string().into_bytes();
    let ok_input = |name: &str, dtype: &str, shape: Value| {
        json!({"inputs": [{"name": name, "shape": shape, "datatype": dtype,
            "data": vec![0.25f32; 16]}]})
    };

    let r = call(
        &app,
        "POST",
        "/v2/models/nope/infer",
        infer(ok_input("x", "FP32", json!([1, 16]))),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.error().contains("unknown model 'nope'") && r.error().contains("mlp"),
        "{}",
        r.error()
    );

    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/versions/7/infer",
        infer(ok_input("x", "FP32", json!([1, 16]))),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.error().contains("no version '7'") && r.error().contains("1, 2"),
        "{}",
        r.error()
    );

    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        infer(ok_input("input", "FP32", json!([1, 16]))),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().contains("no input 'input'") && r.error().contains("x (FP32 [-1, 16])"),
        "{}",
        r.error()
    );

    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        infer(ok_input("x", "FP64", json!([1, 16]))),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().contains("input 'x'") && r.error().contains("expects FP32"),
        "{}",
        r.error()
    );

    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        infer(ok_input("x", "FP32", json!([2, 8]))),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().contains("input 'x'") && r.error().contains("[-1, 16]"),
        "{}",
        r.error()
    );

    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        infer(ok_input("x", "BYTES", json!([1, 16]))),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("BYTES"), "{}", r.error());

    // Batch above max_batch (4).
    let big = json!({"inputs": [{"name": "x", "shape": [5, 16], "datatype": "FP32", "data": vec![0.5f32; 80]}]});
    let r = call(&app, "POST", "/v2/models/mlp/infer", infer(big), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().contains("batch size 5") && r.error().contains("1 to 4"),
        "{}",
        r.error()
    );

    let r = call(&app, "POST", "/v2/models/mlp/infer", vec![b' '; 5000], &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("4096"), "{}", r.error());

    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        b"{not json".to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = call(&app, "GET", "/v3/anything", vec![], &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("/v3/anything"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_repository_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), 1 << 20);
    assert_eq!(
        call(&app, "GET", "/v2/health/live", vec![], &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/v2/health/ready", vec![], &[])
            .await
            .status,
        StatusCode::OK
    );
    let md = call(&app, "GET", "/v2", vec![], &[]).await.json();
    assert_eq!(md["name"], "kiln");
    assert!(
        md["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );
    let md = call(&app, "GET", "/v2/models/mlp", vec![], &[])
        .await
        .json();
    assert_eq!(md["versions"], json!(["1", "2"]));
    assert_eq!(md["platform"], "kiln_reference");
    assert_eq!(
        md["inputs"][0],
        json!({"name": "x", "datatype": "FP32", "shape": [-1, 16]})
    );
    assert_eq!(md["outputs"][0]["shape"], json!([-1, 10]));
    let r = call(&app, "GET", "/v2/models/mlp/versions/1/ready", vec![], &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&app, "GET", "/v2/models/zzz/ready", vec![], &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let index = call(&app, "POST", "/v2/repository/index", vec![], &[])
        .await
        .json();
    let states: Vec<(String, String)> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(states.len(), 3, "{index}");
    assert!(states.iter().all(|(_, s)| s == "READY"));

    let r = call(
        &app,
        "POST",
        "/v2/repository/models/cnn/unload",
        vec![],
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&app, "GET", "/v2/models/cnn/ready", vec![], &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = json!({"inputs": [{"name": "x", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": vec![0.1f32; 3072]}]});
    let r = call(
        &app,
        "POST",
        "/v2/models/cnn/infer",
        body.to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("unloaded"), "{}", r.error());
    let index = call(
        &app,
        "POST",
        "/v2/repository/index",
        br#"{"ready": true}"#.to_vec(),
        &[],
    )
    .await
    .json();
    assert_eq!(index.as_array().unwrap().len(), 2, "{index}");
    let r = call(&app, "POST", "/v2/repository/models/cnn/load", vec![], &[]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = call(
        &app,
        "POST",
        "/v2/models/cnn/infer",
        body.to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &app,
        "POST",
        "/v2/repository/models/ghost/load",
        vec![],
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &app,
        "POST",
        "/v2/repository/models/cnn/load",
        br#"{"parameters": {"config": "{}"}}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_free_ports_answers_and_shuts_down() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    drop(repo(dir.path()));
    let mut opts = crate::server::ServeOptions::new(dir.path());
    (opts.http_port, opts.grpc_port, opts.metrics_port) = (0, 0, 0);
    let server = crate::server::Server::start(&opts).await.unwrap();
    let line = server.listening_line();
    assert!(line.starts_with("kiln-serve listening: http="), "{line}");
    assert_ne!(server.http.port(), 0);
    let get = |port: u16, path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let live = get(server.http.port(), "/v2/health/ready").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let metrics = get(server.metrics.port(), "/metrics").await;
    assert!(
        metrics.contains("kiln_batch_") && metrics.contains("# EOF"),
        "{metrics}"
    );
    server.shutdown().await;
}
