//! `kiln run` through the engine path on a CPU-only machine: the default backend says no GPU
//! was found and runs the cpu backend; a kiln plan's stored graph runs with `--backend cpu`
//! and matches PyTorch's output of the fixture; the kiln backend without a GPU says why not.

mod cli_common;

use cli_common::{fixtures, has_gpu, host_plan, kiln, text};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;

fn read(path: &std::path::Path) -> ArrayD<f32> {
    ArrayD::<f32>::read_npy(std::fs::File::open(path).unwrap()).unwrap()
}

#[test]
fn default_backend_without_a_gpu_runs_on_the_cpu_and_prints_the_seed() {
    if has_gpu() {
        println!("skipped: this machine has a CUDA device");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("transformer_legacy.onnx");
    let out = kiln(&[
        "run",
        model.to_str().unwrap(),
        "--seed",
        "7",
        "--shapes",
        "x:3x16x64",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("no CUDA device found"), "{stderr}");
    assert!(stdout.contains("random (seed 7)"), "{stdout}");
    assert!(stdout.contains("cpu backend"), "{stdout}");
    let y = read(&dir.path().join("y.npy"));
    assert_eq!(y.shape(), &[3, 16, 8]);
    assert!(y.iter().all(|v| v.is_finite()) && y.iter().any(|&v| v != 0.0));
    let x = read(&dir.path().join("input_x.npy"));
    assert_eq!(x.shape(), &[3, 16, 64]);
}

#[test]
fn a_plans_graph_runs_on_the_cpu_and_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("cnn_legacy.onnx");
    let plan = dir.path().join("cnn.kiln");
    host_plan(&model, &plan, "x", &[3, 32, 32]);
    let input = fixtures().join("cnn_input.npy");
    let expect = fixtures().join("cnn_legacy_output.npy");
    let out = kiln(&[
        "run",
        plan.to_str().unwrap(),
        "--backend",
        "cpu",
        "--input",
        &format!("x={}", input.display()),
        "--expect",
        &format!("y={}", expect.display()),
        "--rtol",
        "1e-3",
        "--atol",
        "1e-5",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON only");
    assert_eq!(r["backend"], "cpu");
    assert_eq!(r["random_inputs"], serde_json::json!([]));
    assert_eq!(r["expect"][0]["comparison"]["pass"], true, "{r}");
    // Batch 8 is outside the plan's profile (1..4): a clear error naming the input.
    let out = kiln(&[
        "run",
        plan.to_str().unwrap(),
        "--backend",
        "cpu",
        "--shapes",
        "x:8x3x32x32",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("input 'x'") && stderr.contains("profile"),
        "{stderr}"
    );
}

#[test]
fn the_kiln_backend_without_a_gpu_says_so() {
    if has_gpu() {
        println!("skipped: this machine has a CUDA device");
        return;
    }
    let model = fixtures().join("mlp_legacy.onnx");
    let out = kiln(&["run", model.to_str().unwrap(), "--backend", "kiln"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a CUDA GPU is required for the kiln backend"),
        "{stderr}"
    );
}
