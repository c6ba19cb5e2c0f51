//! `kiln build` on a machine without a GPU: the kiln backend (explicit or `auto`) fails with
//! an error saying a CUDA GPU is required and writes nothing; `--backend cpu` is refused with
//! the commands that do run on the CPU; malformed flags are usage errors (exit 2).

mod cli_common;

use cli_common::{fixtures, has_gpu, kiln, text};

#[test]
fn without_a_gpu_the_kiln_backend_says_a_gpu_is_required() {
    if has_gpu() {
        println!("skipped: this machine has a CUDA device");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("mlp_legacy.onnx");
    let out_file = dir.path().join("mlp.kiln");
    let report = dir.path().join("report.json");
    for backend in [None, Some("kiln"), Some("auto")] {
        let mut args = vec![
            "build",
            model.to_str().unwrap(),
            "-o",
            out_file.to_str().unwrap(),
            "--fp16",
            "--report",
            report.to_str().unwrap(),
        ];
        if let Some(b) = backend {
            args.extend(["--backend", b]);
        }
        let out = kiln(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{backend:?}: {stdout}\n{stderr}"
        );
        assert!(
            stderr.contains("a CUDA GPU is required for the kiln backend"),
            "{backend:?}: {stderr}"
        );
        assert!(stderr.contains("--backend cpu"), "{stderr}");
        assert!(!out_file.exists() && !report.exists());
    }
}

#[test]
fn the_cpu_backend_has_no_engine_file() {
    let model = fixtures().join("mlp_legacy.onnx");
    let out = kiln(&["build", model.to_str().unwrap(), "--backend", "cpu"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("kiln run --backend cpu") && stderr.contains("no engine file"),
        "{stderr}"
    );
}

#[test]
fn malformed_flags_are_usage_errors() {
    let m = fixtures().join("mlp_legacy.onnx");
    let m = m.to_str().unwrap();
    for (args, want) in [
        (vec!["build", m, "--workspace", "lots"], "lots"),
        (vec!["build", m, "--workspace", "4 parsecs"], "unknown unit"),
        (vec!["build", m, "--fp16", "--bf16"], "--bf16"),
        (vec!["build", m, "--opt-level", "9"], "9"),
        (vec!["build", m, "--backend", "onnxruntime"], "onnxruntime"),
        (vec!["build"], "MODEL"),
    ] {
        let out = kiln(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
