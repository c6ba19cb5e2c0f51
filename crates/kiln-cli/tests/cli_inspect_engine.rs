//! `kiln inspect` on engine files: a kiln plan (made here by the builder's host half) shows
//! its IO, profile, precision, passes, ops, steps at the opt shapes and arena size, and says
//! why the device memory was not asked without a GPU; missing, garbage and corrupt engine
//! files give errors naming the file; ONNX models still get the model report.

mod cli_common;

use cli_common::{fixtures, has_gpu, host_plan, kiln, text};

#[test]
fn a_kiln_plan_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("cnn.kiln");
    host_plan(
        &fixtures().join("cnn_legacy.onnx"),
        &plan,
        "x",
        &[3, 32, 32],
    );
    let p = plan.to_str().unwrap();
    let out = kiln(&["inspect", p, "-v"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    for want in [
        "(kiln plan)",
        "precision:   fp32",
        "inputs (1):",
        "x  f32 [batch, 3, 32, 32]",
        "outputs (1):",
        "profile 0:",
        "x: min [1,3,32,32] opt [2,3,32,32] max [4,3,32,32]",
        "passes:",
        "steps:",
        "arena:",
        "device memory:",
        "#0",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    if !has_gpu() {
        assert!(stdout.contains("device memory: not asked"), "{stdout}");
    }
    let out = kiln(&["inspect", p, "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["format"], "kiln plan");
    assert_eq!(r["inputs"][0]["name"], "x");
    assert_eq!(r["outputs"][0]["name"], "y");
    assert_eq!(
        r["profiles"][0]["inputs"][0]["opt"],
        serde_json::json!([2, 3, 32, 32])
    );
    assert_eq!(
        r["opt_lowering"]["shapes"][0][1],
        serde_json::json!([2, 3, 32, 32])
    );
    assert!(
        r["opt_lowering"]["arena_bytes"].as_u64().unwrap() > 0,
        "{r}"
    );
    let steps = r["steps"].as_array().unwrap();
    assert!(steps.len() >= 3, "{r}");
    assert!(
        steps
            .iter()
            .any(|s| s["op"].as_str().unwrap().contains("Conv")),
        "{r}"
    );
    assert_eq!(
        steps.last().unwrap()["output_dims"],
        serde_json::json!([2, 10])
    );
    assert!(r["graph"]["nodes"].as_u64().unwrap() > 0);
    // The host half chose no tactics and compiled no kernels.
    assert_eq!(r["tactics"]["gemm"], serde_json::json!([]));
    assert_eq!(r["kernels"], serde_json::json!([]));
}

#[test]
fn missing_garbage_and_corrupt_engines_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.kiln");
    std::fs::write(&garbage, b"this is not an engine at all").unwrap();
    let plan = dir.path().join("ok.kiln");
    host_plan(&fixtures().join("mlp_legacy.onnx"), &plan, "x", &[16]);
    let mut bytes = std::fs::read(&plan).unwrap();
    bytes.truncate(bytes.len() / 2);
    let corrupt = dir.path().join("corrupt.plan");
    std::fs::write(&corrupt, &bytes).unwrap();
    let missing = dir.path().join("missing.kiln");
    for (path, want) in [
        (&garbage, "garbage.kiln"),
        (&corrupt, "corrupt.plan"),
        (&missing, "missing.kiln"),
    ] {
        let out = kiln(&["inspect", path.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(
            stderr.starts_with("error: ") && stderr.contains(want),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (_, stderr) = text(&kiln(&["inspect", corrupt.to_str().unwrap()]));
    assert!(stderr.contains("not a readable kiln plan"), "{stderr}");
    let (_, stderr) = text(&kiln(&["inspect", garbage.to_str().unwrap()]));
    assert!(stderr.contains("not a kiln plan"), "{stderr}");
}

#[test]
fn onnx_models_still_get_the_model_report() {
    let out = kiln(&[
        "inspect",
        fixtures().join("mlp_legacy.onnx").to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("IR version:") && stdout.contains("ops (by count):"),
        "{stdout}"
    );
}
