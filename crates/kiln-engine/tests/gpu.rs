//! End-to-end GPU tests of kiln-engine (`harness = false`): every committed fixture is built,
//! saved, loaded and run at batch 1 and 4 in fp32, tf32, fp16 and bf16, and compared with
//! kiln-reference on fresh random inputs (outputs start as NaN-free zeros from the host path;
//! a NaN in the result fails).
//!
//! Without a CUDA device every case is reported as skipped and the run succeeds; set
//! `KILN_GPU_REQUIRED=1` to make a missing device a failure. An optional argument filters
//! cases by substring.
//!
//! Every plan must hold its NVRTC binaries (`kernel:` sections) and, when the model has
//! Gemm/MatMul/Conv, its tactics. With `KILN_ZOO_DIR=DIR` (the output of
//! `fixtures/export_zoo.py`), every `DIR/*.onnx` is also run in fp32 and fp16 at batch 2
//! (dynamic non-batch dims at 128; i64 inputs random in {0, 1}: valid ids, masks and token
//! types), against kiln-reference.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use kiln_core::{Engine as _, HostTensor, OptimizationProfile, Precision, ProfileInput};
use kiln_engine::{BuildConfig, Builder, Engine, Plan};
use kiln_reference::{Interpreter, Value};

const FIXTURES: &[&str] = &[
    "mlp_legacy",
    "mlp_dynamo",
    "cnn_legacy",
    "cnn_dynamo",
    "transformer_legacy",
    "transformer_dynamo",
];

fn tolerance(p: Precision) -> f64 {
    match p {
        Precision::Fp32 => 1e-4,
        Precision::Tf32 => 1e-2,
        _ => 3e-2,
    }
}

/// Random inputs at `batch` (other dynamic dims 128): (host tensors, reference values).
fn random_inputs(
    graph: &kiln_onnx::Graph,
    batch: usize,
    rng: &mut fastrand::Rng,
) -> Result<(Vec<HostTensor>, HashMap<String, Value>)> {
    let mut host = Vec::new();
    let mut values = HashMap::new();
    for input in &graph.inputs {
        let shape = input.shape.as_ref().context("input rank")?;
        let dims: Vec<usize> = shape
            .dims()
            .iter()
            .enumerate()
            .map(|(i, d)| d.known().unwrap_or(if i == 0 { batch } else { 128 }))
            .collect();
        let n: usize = dims.iter().product();
        let (h, t) = match input.dtype {
            Some(kiln_core::DataType::I64) => {
                let data: Vec<i64> = (0..n).map(|_| rng.i64(0..2)).collect();
                (
                    HostTensor::from_slice(input.name.clone(), &dims, &data)?,
                    kiln_onnx::Tensor::from_vec(input.name.clone(), dims.clone(), data)?,
                )
            }
            _ => {
                let data: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect();
                (
                    HostTensor::from_slice(input.name.clone(), &dims, &data)?,
                    kiln_onnx::Tensor::from_vec(input.name.clone(), dims.clone(), data)?,
                )
            }
        };
        host.push(h);
        values.insert(input.name.clone(), Value::from_tensor(&t)?);
    }
    Ok((host, values))
}

/// A profile over the batch dim (min 1, opt 4, max 16) of every input.
fn batch_profile(graph: &kiln_onnx::Graph) -> Result<OptimizationProfile> {
    let mut inputs = Vec::new();
    for input in &graph.inputs {
        let shape = input.shape.as_ref().context("input rank")?;
        let at = |b: usize| -> Vec<usize> {
            shape
                .dims()
                .iter()
                .enumerate()
                .map(|(i, d)| d.known().unwrap_or(if i == 0 { b } else { 128 }))
                .collect()
        };
        inputs.push(ProfileInput {
            name: input.name.clone(),
            min: at(1),
            opt: at(4),
            max: at(16),
        });
    }
    Ok(OptimizationProfile { inputs })
}

fn case(
    device: &Arc<kiln_cuda::Device>,
    path: &str,
    precision: Precision,
    batches: &[usize],
) -> Result<()> {
    let graph = kiln_onnx::load(path)?;
    let config = BuildConfig {
        precision,
        profiles: vec![batch_profile(&graph)?],
        ..BuildConfig::default()
    };
    let plan = Builder::new(device).build(&graph, &config)?;
    ensure!(
        plan.kernels().count() > 0,
        "the plan holds no kernel binaries"
    );
    let uses_libs = graph
        .nodes
        .iter()
        .any(|n| matches!(n.op_type.as_str(), "Gemm" | "MatMul" | "Conv"));
    ensure!(
        !uses_libs || plan.section("tactics").is_some(),
        "the plan holds no tactics section"
    );
    let bytes = plan.to_bytes()?;
    let plan = Plan::from_bytes(&bytes)?;
    ensure!(
        plan.to_bytes()? == bytes,
        "plan round trip is not bit-exact"
    );
    let engine = Engine::from_plan(device, &plan)?;
    let reference = Interpreter::new(graph.clone())?;
    let mut rng = fastrand::Rng::with_seed(42);
    for &batch in batches {
        let (host, values) = random_inputs(&graph, batch, &mut rng)?;
        let shapes: Vec<(&str, &[usize])> = host
            .iter()
            .map(|t| (t.name.as_str(), t.dims.as_slice()))
            .collect();
        let mem = engine.device_memory_size(&shapes)?;
        let mut ctx = engine.clone().create_context()?;
        let got = ctx.execute_host(&host)?;
        let want = reference.run(values)?;
        for out in &got {
            let w = want[&out.name].to_f64_vec();
            let g: Vec<f64> = out
                .as_slice::<f32>()
                .context("f32 output")?
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            ensure!(
                w.len() == g.len(),
                "{}: {} values, want {}",
                out.name,
                g.len(),
                w.len()
            );
            ensure!(
                g.iter().all(|v| v.is_finite()),
                "{}: non-finite output",
                out.name
            );
            let num: f64 = w.iter().zip(&g).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f64 = w.iter().map(|a| a * a).sum::<f64>().max(1e-30);
            let rel = (num / den).sqrt();
            ensure!(
                rel <= tolerance(precision),
                "{} batch {batch}: rel-L2 {rel:.3e} > {:.0e}",
                out.name,
                tolerance(precision)
            );
            println!(
                "    {path} {} batch {batch} {}: rel-L2 {rel:.2e}, arena {mem} B",
                precision.name(),
                out.name
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let required = std::env::var("KILN_GPU_REQUIRED").is_ok_and(|v| v == "1");
    let precisions = [
        Precision::Fp32,
        Precision::Tf32,
        Precision::Fp16,
        Precision::Bf16,
    ];
    let fixtures = format!("{}/../../fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut cases: Vec<(String, String, Precision, Vec<usize>)> = FIXTURES
        .iter()
        .flat_map(|f| {
            let path = format!("{fixtures}/{f}.onnx");
            precisions
                .iter()
                .map(move |p| (format!("{f}_{}", p.name()), path.clone(), *p, vec![1, 4]))
        })
        .collect();
    if let Ok(dir) = std::env::var("KILN_ZOO_DIR") {
        let mut models: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                    .collect()
            })
            .unwrap_or_default();
        models.sort();
        for m in models {
            let stem = m
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            for p in [Precision::Fp32, Precision::Fp16] {
                cases.push((
                    format!("zoo_{stem}_{}", p.name()),
                    m.to_string_lossy().to_string(),
                    p,
                    vec![2],
                ));
            }
        }
    }
    cases.retain(|(n, ..)| n.contains(&filter));
    let device = match kiln_cuda::Device::open(0) {
        Ok(d) => d,
        Err(e) => {
            let names: Vec<&str> = cases.iter().map(|(n, ..)| n.as_str()).collect();
            println!(
                "{}",
                kiln_cuda::gpu_test::skip_report(&names, &e.to_string())
            );
            return if required {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut failed = 0;
    for (label, path, precision, batches) in &cases {
        match case(&device, path, *precision, batches) {
            Ok(()) => println!("ok      {label}"),
            Err(e) => {
                failed += 1;
                println!("FAILED  {label}: {e:#}");
            }
        }
    }
    println!("{} passed, {failed} failed", cases.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
