//! Load on loopback with exact accounting, CPU backend (no GPU needed):
//!
//! `overload_every_request_answered_once`: 48 HTTP/1.1 client threads (keep-alive, the
//! minimal client of `common`) and 16 gRPC clients (tonic, generated from the same .proto as
//! the server: `kiln_serve::grpc_proto`) send up to 20,000 inference requests in all to the
//! `mlp` fixture behind a queue of capacity 4, so that many are refused. The run stops by
//! itself after the count or 60 s, whichever comes first. Checked: every request got exactly one
//! answer (HTTP: the response carries the request's `id`; no connection errors), each answer is
//! 200 / OK with the right values (PyTorch's committed output) or 503 / UNAVAILABLE with a
//! reason; successes + rejections = sent; at least one of each; the server's statistics
//! endpoint counts exactly the successes (`success`) and the refusals (`fail`); SIGINT then ends
//! the server with status 0.
//!
//! `sigint_drains_in_flight_requests`: requests held in the queue by a long batching delay are
//! all answered 200 after SIGINT arrives, and the server then exits 0.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Http, Server, add_model, fixtures};
use kiln_serve::grpc_proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use kiln_serve::grpc_proto::{
    ModelInferRequest, model_infer_request::InferInputTensor as GrpcInput,
};
use serde_json::json;

const TOTAL: usize = 20_000;
const HTTP_CLIENTS: usize = 48;
const GRPC_CLIENTS: usize = 16;
const CAP: Duration = Duration::from_secs(60);

/// A little-endian f32, C-order .npy file as (shape, values).
fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x93NUMPY"),
        "{}: not .npy",
        path.display()
    );
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{}: expected little-endian f32 in C order, header {header}",
        path.display()
    );
    let dims = header.split("'shape': (").nth(1).unwrap();
    let dims = &dims[..dims.find(')').unwrap()];
    let shape: Vec<usize> = dims
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values: Vec<f32> = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

fn close(got: &[f32], want: &[f32]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (g - w).abs() <= 1e-5 + 1e-3 * w.abs())
}

/// `(success count, fail count)` from the v2 statistics endpoint of `model`.
fn stats(addr: std::net::SocketAddr, model: &str) -> (u64, u64) {
    let r = Http::new(addr)
        .get(&format!("/v2/models/{model}/stats"))
        .unwrap();
    assert_eq!(r.status, 200, "stats: {}", r.text());
    let v = r.json();
    let all = v["model_stats"].as_array().expect("model_stats array");
    let sum = |k: &str| {
        all.iter()
            .map(|s| s["inference_stats"][k]["count"].as_u64().unwrap_or(0))
            .sum()
    };
    (sum("success"), sum("fail"))
}

fn mlp_repo(dir: &Path, batching: serde_json::Value) {
    let config = json!({"backend": "cpu", "max_batch": 8, "batching": batching});
    add_model(dir, "mlp", 1, &fixtures().join("mlp_legacy.onnx"), &config);
}

#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    ok: AtomicUsize,
    rejected: AtomicUsize,
}

#[test]
fn overload_every_request_answered_once() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("models");
    mlp_repo(
        &repo,
        json!({"max_queue_delay_us": 200, "instances_per_gpu": 1, "queue_capacity": 4}),
    );
    let server = Server::start(&repo, &[]);
    let (shape, x) = read_npy_f32(&fixtures().join("mlp_input.npy"));
    let (_, want) = read_npy_f32(&fixtures().join("mlp_legacy_output.npy"));
    let (x, want) = (Arc::new(x), Arc::new(want));
    let (ok0, fail0) = stats(server.http, "mlp");

    let tickets = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let reasons = Arc::new(Reasons::default());
    let start = Instant::now();
    let deadline = start + CAP;
    let take = {
        let tickets = tickets.clone();
        move || {
            if Instant::now() >= deadline {
                return None;
            }
            let t = tickets.fetch_add(1, Ordering::Relaxed);
            (t < TOTAL).then_some(t)
        }
    };

    let mut handles = Vec::new();
    for c in 0..HTTP_CLIENTS {
        let (take, tally, x, want, shape, reasons) = (
            take.clone(),
            tally.clone(),
            x.clone(),
            want.clone(),
            shape.clone(),
            reasons.clone(),
        );
        let addr = server.http;
        handles.push(thread::spawn(move || {
            let mut http = Http::new(addr);
            while let Some(t) = take() {
                let id = format!("h{c}-{t}");
                let body = json!({
                    "id": id,
                    "inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": *x}],
                    "outputs": [{"name": "y"}]
                });
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let r = http
                    .post_json("/v2/models/mlp/infer", &body)
                    .unwrap_or_else(|e| panic!("request {id}: no answer: {e}"));
                match r.status {
                    200 => {
                        let v = r.json();
                        assert_eq!(v["id"], id, "the answer belongs to another request");
                        let y: Vec<f32> = v["outputs"][0]["data"]
                            .as_array()
                            .expect("output data")
                            .iter()
                            .map(|d| d.as_f64().unwrap() as f32)
                            .collect();
                        assert!(close(&y, &want), "request {id}: wrong output {y:?}");
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    503 => {
                        let text = r.text();
                        assert!(!text.trim().is_empty(), "503 without a reason");
                        reasons.note(text);
                        tally.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    s => panic!("request {id}: unexpected status {s}: {}", r.text()),
                }
            }
        }));
    }
    let grpc_addr = format!("http://{}", server.grpc);
    let grpc = {
        let (take, tally, x, want, shape, reasons) = (
            take.clone(),
            tally.clone(),
            x.clone(),
            want.clone(),
            shape.clone(),
            reasons.clone(),
        );
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for c in 0..GRPC_CLIENTS {
                    let mut client = GrpcInferenceServiceClient::connect(grpc_addr.clone())
                        .await
                        .expect("gRPC connects");
                    let (take, tally, x, want, shape, reasons) = (
                        take.clone(),
                        tally.clone(),
                        x.clone(),
                        want.clone(),
                        shape.clone(),
                        reasons.clone(),
                    );
                    tasks.push(tokio::spawn(async move {
                        while let Some(t) = take() {
                            let id = format!("g{c}-{t}");
                            let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
                            let req = ModelInferRequest {
                                model_name: "mlp".into(),
                                id: id.clone(),
                                inputs: vec![GrpcInput {
                                    name: "x".into(),
                                    datatype: "FP32".into(),
                                    shape: shape.iter().map(|&d| d as i64).collect(),
                                    ..Default::default()
                                }],
                                raw_input_contents: vec![raw],
                                ..Default::default()
                            };
                            tally.sent.fetch_add(1, Ordering::Relaxed);
                            match client.model_infer(req).await {
                                Ok(resp) => {
                                    let resp = resp.into_inner();
                                    assert_eq!(
                                        resp.id, id,
                                        "the answer belongs to another request"
                                    );
                                    let y: Vec<f32> = resp.raw_output_contents[0]
                                        .chunks_exact(4)
                                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                                        .collect();
                                    assert!(close(&y, &want), "request {id}: wrong output {y:?}");
                                    tally.ok.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(s) if s.code() == tonic::Code::Unavailable => {
                                    assert!(
                                        !s.message().is_empty(),
                                        "UNAVAILABLE without a reason"
                                    );
                                    reasons.note(s.message().to_string());
                                    tally.rejected.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(s) => panic!("request {id}: unexpected gRPC status {s:?}"),
                            }
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("a gRPC client task panicked");
                }
            });
        })
    };
    for h in handles {
        h.join().expect("an HTTP client thread panicked");
    }
    grpc.join().expect("the gRPC clients panicked");
    let elapsed = start.elapsed();

    let (sent, ok, rejected) = (
        tally.sent.load(Ordering::Relaxed),
        tally.ok.load(Ordering::Relaxed),
        tally.rejected.load(Ordering::Relaxed),
    );
    println!(
        "load: {sent} sent in {elapsed:.1?} ({:.0} req/s): {ok} ok, {rejected} rejected (503 / UNAVAILABLE); reasons seen: {:?}",
        sent as f64 / elapsed.as_secs_f64(),
        reasons.all()
    );
    assert!(
        elapsed < CAP + Duration::from_secs(30),
        "the run stops by itself"
    );
    assert!(
        sent == TOTAL || elapsed >= CAP,
        "{sent} of {TOTAL} sent before the cap"
    );
    assert_eq!(ok + rejected, sent, "every request answered exactly once");
    assert!(ok > 0, "some requests succeed");
    assert!(
        rejected > 0,
        "a queue of 4 under 64 clients refuses some requests"
    );
    let (ok1, fail1) = stats(server.http, "mlp");
    println!(
        "server statistics: success +{}, fail +{}",
        ok1 - ok0,
        fail1 - fail0
    );
    assert_eq!(
        (ok1 - ok0) as usize,
        ok,
        "the statistics endpoint counts exactly the successful requests"
    );
    assert_eq!(
        (fail1 - fail0) as usize,
        rejected,
        "the statistics endpoint counts the refused requests as failures, exactly"
    );
    server.shutdown();
}

/// The distinct rejection reasons seen (a few), shared by the clients.
#[derive(Default)]
struct Reasons(std::sync::Mutex<Vec<String>>, AtomicU64);

impl Reasons {
    fn note(&self, r: String) {
        self.1.fetch_add(1, Ordering::Relaxed);
        let mut v = self.0.lock().unwrap();
        if v.len() < 4 && !v.contains(&r) {
            v.push(r);
        }
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn sigint_drains_in_flight_requests() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("models");
    // A batch waits up to 1.5 s for 8 rows: three single requests sit in the queue.
    mlp_repo(
        &repo,
        json!({"max_queue_delay_us": 1_500_000, "preferred_batch_sizes": [8], "instances_per_gpu": 1}),
    );
    let mut server = Server::start(&repo, &[]);
    let (shape, x) = read_npy_f32(&fixtures().join("mlp_input.npy"));
    let (_, want) = read_npy_f32(&fixtures().join("mlp_legacy_output.npy"));
    let row = shape[1];
    let clients: Vec<_> = (0..3)
        .map(|k| {
            let addr = server.http;
            let (xr, wr) = (x[..row].to_vec(), want[..want.len() / 2].to_vec());
            thread::spawn(move || {
                let body = json!({"id": format!("d{k}"),
                    "inputs": [{"name": "x", "shape": [1, row], "datatype": "FP32", "data": xr}]});
                let t = Instant::now();
                let r = Http::new(addr).post_json("/v2/models/mlp/infer", &body);
                (r, wr, t.elapsed())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let status = server.interrupt(Duration::from_secs(30));
    for c in clients {
        let (r, wr, took) = c.join().unwrap();
        let r = r.expect("an in-flight request is answered during shutdown");
        assert_eq!(
            r.status,
            200,
            "in-flight request after SIGINT: {}",
            r.text()
        );
        let y: Vec<f32> = r.json()["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert!(close(&y, &wr), "{y:?}");
        println!("drained request answered after {took:?}");
    }
    assert!(status.success(), "exit after draining: {status}");
}
