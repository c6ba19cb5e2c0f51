//! Helpers of the `cli_*` tests: the binary, the fixtures, and kiln plans made by the
//! builder's host half (no GPU needed).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_core::{OptimizationProfile, ProfileInput};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

pub fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Whether this machine has a usable CUDA device (GPU-less expectations are skipped then).
pub fn has_gpu() -> bool {
    kiln_cuda::Probe::run().is_ok()
}

/// A kiln plan of `model` made by the builder's host half (passes, lowering checks; no
/// kernels or tactics): its stored graph has the builder's rewrites applied (constants and
/// BatchNorm folded, fused convolutions). Profile: `input` batch 1..4, opt 2.
pub fn host_plan(model: &Path, out: &Path, input: &str, rest: &[usize]) {
    let graph = kiln_onnx::load(model).unwrap();
    let dims = |b: usize| std::iter::once(b).chain(rest.iter().copied()).collect();
    let config = kiln_engine::BuildConfig {
        profiles: vec![OptimizationProfile {
            inputs: vec![ProfileInput {
                name: input.into(),
                min: dims(1),
                opt: dims(2),
                max: dims(4),
            }],
        }],
        ..Default::default()
    };
    let plan = kiln_engine::prepare(&graph, &config, kiln_engine::plan::Fingerprint::default())
        .expect("the host half of a build works without a GPU");
    plan.save(out).unwrap();
}
