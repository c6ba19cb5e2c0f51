//! `kiln compare` on a CPU-only machine: the cpu backend against the CPU reference on the
//! fixtures (rel-L2 ~0), the optimised graph of a kiln plan against the original model,
//! tolerances that must fail, NaN outputs that never pass, and the JSON export.

mod cli_common;

use cli_common::{fixtures, has_gpu, host_plan, kiln, text};
use kiln_core::{DataType, Dim};

#[test]
fn cpu_backend_matches_the_reference_on_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for (model, shape) in [
        ("mlp_legacy.onnx", "x:3x16"),
        ("cnn_legacy.onnx", "x:2x3x32x32"),
        ("cnn_dynamo.onnx", "x:2x3x32x32"),
        ("transformer_legacy.onnx", "x:2x16x64"),
    ] {
        let json = dir.path().join(format!("{model}.json"));
        let out = kiln(&[
            "compare",
            fixtures().join(model).to_str().unwrap(),
            "--backend",
            "cpu",
            "--shapes",
            shape,
            "--seed",
            "5",
            "--export-json",
            json.to_str().unwrap(),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{model}: {stdout}\n{stderr}");
        assert!(stdout.contains("PASS"), "{stdout}");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(r["pass"], true);
        assert_eq!(r["backend"], "cpu");
        assert_eq!(r["precision"], "fp32");
        let y = &r["outputs"][0];
        assert!(y["rel_l2"].as_f64().unwrap() <= 1e-6, "{model}: {y}");
        assert!(y["cosine"].as_f64().unwrap() > 0.999_999, "{model}: {y}");
        assert_eq!(y["nan_engine"], 0);
        assert!(y["elements"].as_u64().unwrap() > 0);
        let batch: u64 = shape[2..3].parse().unwrap();
        assert_eq!(y["engine_shape"][0], batch, "{y}");
    }
}

#[test]
fn plan_graph_against_the_model_and_a_tolerance_that_must_fail() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("cnn_legacy.onnx");
    let plan = dir.path().join("cnn.kiln");
    host_plan(&model, &plan, "x", &[3, 32, 32]);
    let base = [
        "compare",
        model.to_str().unwrap(),
        "--engine",
        plan.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    // The plan's graph (BatchNorm folded, fused convolutions) runs at the profile's opt batch.
    let json = dir.path().join("ok.json");
    let mut args = base.to_vec();
    args.extend(["--export-json", json.to_str().unwrap()]);
    let out = kiln(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("optimised graph stored in the plan"),
        "{stderr}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let y = &r["outputs"][0];
    assert_eq!(y["engine_shape"], serde_json::json!([2, 10]), "{y}");
    let rel_l2 = y["rel_l2"].as_f64().unwrap();
    assert!(rel_l2 < 1e-5, "{y}");
    // A rel-L2 bound far below what the rewritten graph gives, or a zero element-wise
    // tolerance, fails (rewrites change the rounding, so the error is not exactly 0).
    assert!(
        rel_l2 > 0.0,
        "the folded graph should round differently: {y}"
    );
    for extra in [
        vec!["--rel-l2", "1e-30"],
        vec!["--atol", "0", "--rtol", "0"],
    ] {
        let mut args = base.to_vec();
        args.extend(extra.iter().copied());
        let out = kiln(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stdout}\n{stderr}");
        assert!(stdout.contains("FAIL"), "{stdout}");
        assert!(stderr.contains("differ from the CPU reference"), "{stderr}");
    }
}

#[test]
fn nan_outputs_never_pass() {
    // y = Sqrt(x) on inputs in [-1, 1): NaN where x < 0, in both the engine and the reference.
    let dir = tempfile::tempdir().unwrap();
    let mut b = kiln_onnx::GraphBuilder::new("sqrt").opset(17);
    let x = b.input("x", DataType::F32, &[Dim::Known(64)]);
    let y = b.node("Sqrt", &[&x]).output_named("y");
    b.output(&y, DataType::F32, &[Dim::Known(64)]);
    let model = dir.path().join("sqrt.onnx");
    std::fs::write(&model, kiln_onnx::to_model_bytes(&b.graph()).unwrap()).unwrap();
    let out = kiln(&[
        "compare",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "--rel-l2",
        "1e30",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("NaN"),
        "{stdout}"
    );
}

#[test]
fn default_backend_says_it_compares_the_cpu_backend_without_a_gpu() {
    if has_gpu() {
        println!("skipped: this machine has a CUDA device");
        return;
    }
    let model = fixtures().join("mlp_dynamo.onnx");
    let out = kiln(&["compare", model.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("no CUDA device found"), "{stderr}");
    assert!(stderr.contains("using the cpu backend"), "{stderr}");
    assert!(
        stderr.contains("input 'x'") && stderr.contains("--shapes"),
        "{stderr}"
    );
    assert!(
        stdout.contains("cpu backend") && stdout.contains("PASS"),
        "{stdout}"
    );
}

#[test]
fn given_inputs_set_the_shapes_and_bad_arguments_fail_cleanly() {
    let model = fixtures().join("mlp_legacy.onnx");
    let input = fixtures().join("mlp_input.npy");
    let out = kiln(&[
        "compare",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "--input",
        &format!("x={}", input.display()),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("mlp_input.npy") && stdout.contains("PASS"),
        "{stdout}"
    );
    let m = model.to_str().unwrap();
    for args in [
        vec!["compare", m, "--backend", "cpu", "--input", "nope=/x.npy"],
        vec!["compare", m, "--backend", "cpu", "--rel-l2=-1"],
        vec!["compare", m, "--backend", "cpu", "--shapes", "y:1x16"],
        vec![
            "compare",
            m,
            "--backend",
            "cpu",
            "--engine",
            "/nonexistent.kiln",
        ],
        vec!["compare", "/nonexistent.onnx", "--backend", "cpu"],
    ] {
        let out = kiln(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
