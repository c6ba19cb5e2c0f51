//! `kiln run --backend cpu`: every committed fixture, on its saved input, matches the output
//! PyTorch computed for it (fixtures/manifest.json names the files); random inputs are seeded
//! and written out; bad arguments fail with a message, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs")
}

#[test]
fn every_fixture_matches_pytorch_on_the_cpu_reference() {
    let text = std::fs::read_to_string(fixtures().join("manifest.json"))
        .expect("fixtures/manifest.json is committed");
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let models = manifest["models"]
        .as_array()
        .expect("manifest lists models");
    assert!(models.len() >= 6, "expected 3 models x 2 exporters");
    for m in models {
        let file = fixtures().join(m["file"].as_str().unwrap());
        let mut args: Vec<String> = vec![
            "run".into(),
            file.display().to_string(),
            "--backend".into(),
            "cpu".into(),
            // PyTorch's own CPU kernels order sums differently: fp32 agreement to ~1e-6.
            "--rtol".into(),
            "1e-3".into(),
            "--atol".into(),
            "1e-5".into(),
        ];
        for (name, f) in m["input_files"].as_object().unwrap() {
            args.push("--input".into());
            args.push(format!(
                "{name}={}",
                fixtures().join(f.as_str().unwrap()).display()
            ));
        }
        for (name, f) in m["output_files"].as_object().unwrap() {
            args.push("--expect".into());
            args.push(format!(
                "{name}={}",
                fixtures().join(f.as_str().unwrap()).display()
            ));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = kiln(&refs);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{stderr}",
            file.display()
        );
        assert!(stdout.contains("PASS"), "{stdout}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
}

#[test]
fn random_inputs_are_seeded_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("cnn_legacy.onnx");
    let run = |sub: &str, seed: &str| {
        let out_dir = dir.path().join(sub);
        let out = kiln(&[
            "run",
            model.to_str().unwrap(),
            "--seed",
            seed,
            "--shapes",
            "x:3x3x32x32",
            "--output-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(out_dir.join("y.npy")).unwrap()
    };
    let a = run("a", "7");
    let b = run("b", "7");
    let c = run("c", "8");
    assert_eq!(a, b, "same seed, same output");
    assert_ne!(a, c, "another seed, another output");
    assert!(dir.path().join("a/input_x.npy").is_file());
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let model = fixtures().join("mlp_legacy.onnx");
    let m = model.to_str().unwrap();
    for args in [
        vec!["run", m, "--backend", "kiln"],
        vec!["run", m, "--input", "nope=/nonexistent.npy"],
        vec!["run", m, "--input", "x=/nonexistent.npy"],
        vec!["run", m, "--shapes", "x:2xq"],
        vec!["run", "/nonexistent.onnx"],
    ] {
        let out = kiln(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
