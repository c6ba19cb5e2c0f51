//! `kiln build --backend tensorrt` without TensorRT: a clear "not installed" error saying how to
//! point kiln at it, exit 1. The other backends are covered by `cli_build.rs`.

use std::process::Command;

fn kiln(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("the kiln binary runs")
}

#[test]
fn tensorrt_backend_without_tensorrt_says_how_to_fix() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    // An empty KILN_TENSORRT_DIR and LD_LIBRARY_PATH: if the machine had a system-wide
    // TensorRT the probe would find it, so only check the message when the probe fails.
    let out = kiln(
        &["build", "--backend", "tensorrt", "model.onnx"],
        &[("KILN_TENSORRT_DIR", dir), ("LD_LIBRARY_PATH", dir)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("TensorRT is not installed") {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        for want in [
            "libnvinfer.so.11",
            "libnvinfer.so.10",
            "KILN_TENSORRT_DIR",
            "LD_LIBRARY_PATH",
            dir,
        ] {
            assert!(stderr.contains(want), "missing {want:?} in: {stderr}");
        }
    } else {
        println!("skipped: this machine has a TensorRT on the system path ({stderr})");
    }
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
}
