//! `kiln serve` against the official Triton Python clients (`tritonclient[http,grpc]` from
//! PyPI), on a fresh machine and without a GPU:
//!
//! 1. builds the `kiln` binary (`cargo build -p kiln-cli` into this test's target folder;
//!    `KILN_BIN` overrides) and a venv under `<target>/kiln-serve-venv` with pinned
//!    tritonclient, numpy and PyYAML (`KILN_SERVE_PYTHON` overrides; without PyPI the test
//!    fails and says why, it is never skipped);
//! 2. makes a temporary model repository with every `fixtures/*.onnx` (backend `cpu`);
//! 3. starts `kiln serve` on port 0 for HTTP, gRPC and metrics and reads the ports from its
//!    `kiln-serve listening: http=H grpc=G metrics=M` line;
//! 4. runs `python/test_clients.py` (see its docstring: health, metadata, inference on every
//!    fixture through HTTP binary / JSON and gRPC against PyTorch's committed outputs and
//!    `kiln run --backend cpu`, error codes, statistics, unload / load, metrics);
//! 5. stops the server with SIGINT and checks that it exits with status 0.
//!
//! `load_bench_cpu_tiny` runs `python/load_bench.py` (the benchmark script) for a few hundred
//! requests on the `mlp` fixture and checks its JSON report.

mod common;

use std::time::Duration;

use common::{Server, add_model, fixture_models, fixtures, kiln_bin, python_dir, run_python};
use serde_json::json;

/// The server's body limit in the client test (`kiln serve --max-body`): small, so that the
/// script can send a real body over it.
const MAX_BODY: usize = 1 << 20;

/// The CPU-backend config of the fixture models: small batches, a short queue delay.
fn cpu_config(max_batch: usize) -> serde_json::Value {
    json!({
        "backend": "cpu",
        "max_batch": max_batch,
        "batching": {
            "max_queue_delay_us": 2000,
            "preferred_batch_sizes": [max_batch],
            "instances_per_gpu": 2,
            "queue_capacity": 256,
            "default_timeout_ms": 60000
        }
    })
}

#[test]
fn tritonclient_http_and_grpc_on_every_fixture() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("models");
    let models = fixture_models();
    for (name, path) in &models {
        add_model(&repo, name, 1, path, &cpu_config(8));
    }
    // a model the script may unload and load again
    add_model(
        &repo,
        "mlp_spare",
        1,
        &fixtures().join("mlp_legacy.onnx"),
        &cpu_config(8),
    );
    let server = Server::start(&repo, &["--max-body", &MAX_BODY.to_string()]);
    let names: Vec<&str> = models.iter().map(|(n, _)| n.as_str()).collect();
    let args = vec![
        "--http".to_string(),
        server.http.to_string(),
        "--grpc".into(),
        server.grpc.to_string(),
        "--metrics".into(),
        server.metrics.to_string(),
        "--fixtures".into(),
        fixtures().display().to_string(),
        "--kiln".into(),
        kiln_bin().display().to_string(),
        "--work".into(),
        work.path().join("scratch").display().to_string(),
        "--models".into(),
        names.join(","),
        "--spare-model".into(),
        "mlp_spare".into(),
        "--spare-fixture".into(),
        "mlp_legacy".into(),
        "--max-body-bytes".into(),
        MAX_BODY.to_string(),
    ];
    run_python(
        &python_dir().join("test_clients.py"),
        &args,
        Duration::from_secs(900),
    );
    server.shutdown();
}

#[test]
fn load_bench_cpu_tiny() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("models");
    let (_, mlp) = fixture_models()
        .into_iter()
        .find(|(n, _)| n == "mlp_legacy")
        .expect("fixtures/mlp_legacy.onnx exists");
    add_model(&repo, "mlp", 1, &mlp, &cpu_config(16));
    let server = Server::start(&repo, &[]);
    let report = work.path().join("bench.json");
    let args: Vec<String> = [
        "--http",
        &server.http.to_string(),
        "--grpc",
        &server.grpc.to_string(),
        "--model",
        "mlp",
        "--input",
        &format!("x={}", fixtures().join("mlp_input.npy").display()),
        "--concurrency",
        "4",
        "--requests",
        "200",
        "--warmup",
        "20",
        "--seconds",
        "60",
        "--protocols",
        "http,http-json,grpc",
        "--out",
        &report.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_python(
        &python_dir().join("load_bench.py"),
        &args,
        Duration::from_secs(300),
    );
    let text = std::fs::read_to_string(&report).expect("load_bench.py wrote its report");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let runs = v["runs"].as_array().expect("report has runs");
    assert_eq!(runs.len(), 3, "{v}");
    for r in runs {
        let ok = r["ok"].as_u64().unwrap();
        let errors = r["errors"].as_u64().unwrap();
        assert_eq!(ok + errors, r["sent"].as_u64().unwrap(), "{r}");
        assert_eq!(errors, 0, "no request fails at this load: {r}");
        assert_eq!(ok, 200, "{r}");
        let (p50, p99) = (
            r["latency_ms"]["p50"].as_f64().unwrap(),
            r["latency_ms"]["p99"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{r}");
        assert!(r["requests_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    server.shutdown();
}
