//! `kiln bench` end to end on the CPU backend (the built binary on committed fixtures): the
//! summary, the exported JSON (sane, self-consistent numbers), `--batch`, `--streams`, the
//! plot, usage errors, and the clear failure of `--backend kiln` without a GPU. The GPU path
//! itself needs a CUDA device and is not exercised here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

/// A summary object: every statistic finite, positive and in order.
fn check_summary(s: &serde_json::Value, what: &str) {
    let keys = ["min", "median", "p90", "p95", "p99", "max"];
    let vals: Vec<f64> = keys.iter().map(|k| num(s, k)).collect();
    assert!(
        vals.iter().all(|v| v.is_finite() && *v > 0.0),
        "{what}: {s}"
    );
    assert!(
        vals.windows(2).all(|w| w[0] <= w[1]),
        "{what} not ordered: {s}"
    );
    let mean = num(s, "mean");
    assert!(vals[0] <= mean && mean <= vals[5], "{what} mean: {s}");
}

fn read_json(path: &Path) -> serde_json::Value {
    let t = std::fs::read_to_string(path).expect("the JSON report was written");
    serde_json::from_str(&t).expect("the report is JSON")
}

#[test]
fn cpu_bench_exports_sane_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let model = fixture("mlp_legacy.onnx");
    let o = kiln(&[
        "bench",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "--warmup",
        "20ms",
        "--duration",
        "200ms",
        "--iterations",
        "12",
        "--export-json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Throughput:",
        "Host latency",
        "GPU compute",
        "need a CUDA device",
    ] {
        assert!(out.contains(needle), "missing {needle}: {}", text(&o));
    }
    let v = read_json(&json);
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["model"], model.to_str().unwrap());
    assert_eq!(v["batch"], 1);
    assert_eq!(v["input_shapes"]["x"], serde_json::json!([1, 16]));
    let queries = num(&v, "queries");
    assert!(queries >= 12.0, "{v}");
    let wall = num(&v, "walltime_s");
    assert!((0.2..60.0).contains(&wall), "walltime {wall}");
    let qps = num(&v, "throughput_qps");
    assert!(
        (qps - queries / wall).abs() <= 1e-6 * qps,
        "{qps} vs {queries}/{wall}"
    );
    assert!((num(&v, "throughput_items_per_s") - qps).abs() <= 1e-9 * qps);
    check_summary(&v["host_latency_ms"], "host_latency_ms");
    // One stream, serialised iterations: the latencies fit in the window.
    let mean = num(&v["host_latency_ms"], "mean");
    assert!(
        mean * queries <= wall * 1e3 * 1.0001,
        "{mean} ms x {queries} > {wall} s"
    );
    for gpu_only in [
        "gpu_compute_ms",
        "enqueue_ms",
        "h2d_ms",
        "d2h_ms",
        "gpu_compute_total_s",
    ] {
        assert!(
            v[gpu_only].is_null(),
            "{gpu_only} should be null on the CPU: {v}"
        );
    }
    assert_eq!(
        v["samples"]["host_latency_ms"].as_array().unwrap().len() as f64,
        queries
    );
    assert!(v["warnings"].is_array());
    assert_eq!(v["precision"], "fp32");
}

#[test]
fn batch_streams_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let png = dir.path().join("b.png");
    let model = fixture("transformer_legacy.onnx");
    let o = kiln(&[
        "bench",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "--batch",
        "3",
        "--streams",
        "2",
        "--warmup",
        "0ms",
        "--duration",
        "150ms",
        "--iterations",
        "6",
        "--export-json",
        json.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v = read_json(&json);
    assert_eq!(v["batch"], 3);
    assert_eq!(v["streams"], 2);
    assert_eq!(v["input_shapes"]["x"], serde_json::json!([3, 16, 64]));
    let qps = num(&v, "throughput_qps");
    assert!((num(&v, "throughput_items_per_s") - 3.0 * qps).abs() <= 1e-9 * qps);
    assert!(num(&v, "queries") >= 6.0);
    check_summary(&v["host_latency_ms"], "host_latency_ms");
    let bytes = std::fs::read(&png).expect("the plot was written");
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
        "{} bytes",
        bytes.len()
    );
}

#[test]
fn usage_and_input_errors_fail_cleanly() {
    let model = fixture("mlp_legacy.onnx");
    let m = model.to_str().unwrap();
    // clap usage errors: exit 2.
    for args in [
        vec!["bench", m, "--batch", "2", "--shapes", "x:2x16"],
        vec!["bench", m, "--duration", "three seconds"],
        vec!["bench", m, "--streams", "0"],
        vec!["bench", m, "--batch", "0"],
    ] {
        let o = kiln(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // Errors found while running: exit 1 with a message that names the problem.
    let o = kiln(&["bench", "/nonexistent/model.onnx", "--backend", "cpu"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/model.onnx"));
    let o = kiln(&[
        "bench",
        m,
        "--backend",
        "cpu",
        "--duration",
        "0s",
        "--iterations",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("measures nothing"));
}

#[test]
fn kiln_backend_without_a_gpu_says_so() {
    if kiln_cuda::Probe::run().is_ok() {
        eprintln!("SKIP kiln_backend_without_a_gpu_says_so: a CUDA device is present");
        return;
    }
    let model = fixture("mlp_legacy.onnx");
    let o = kiln(&[
        "bench",
        model.to_str().unwrap(),
        "--backend",
        "kiln",
        "--duration",
        "100ms",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("CUDA") && err.contains("--backend cpu"),
        "{err}"
    );
}
