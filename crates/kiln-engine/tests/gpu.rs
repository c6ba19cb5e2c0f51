//! End-to-end GPU tests of kiln-engine (`harness = false`): every committed fixture is built,
//! saved, loaded and run at batch 1 and 4 in fp32, tf32, fp16 and bf16, and compared with
//! kiln-reference on fresh random inputs (outputs start as NaN-free zeros from the host path;
//! a NaN in the result fails).
//!
//! Without a CUDA device every case is reported as skipped and the run succeeds; set
//! `KILN_GPU_REQUIRED=1` to make a missing device a failure. An optional argument filters
//! cases by substring.

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

fn case(device: &Arc<kiln_cuda::Device>, name: &str, precision: Precision) -> Result<()> {
    let path = format!("{}/../../fixtures/{name}.onnx", env!("CARGO_MANIFEST_DIR"));
    let graph = kiln_onnx::load(&path)?;
    let input = &graph.inputs[0];
    let rest: Vec<usize> = input.shape.as_ref().context("input rank")?.dims()[1..]
        .iter()
        .map(|d| d.known().context("fixed non-batch dims"))
        .collect::<Result<_>>()?;
    let at = |b: usize| [vec![b], rest.clone()].concat();
    let config = BuildConfig {
        precision,
        profiles: vec![OptimizationProfile {
            inputs: vec![ProfileInput {
                name: input.name.clone(),
                min: at(1),
                opt: at(4),
                max: at(16),
            }],
        }],
        ..BuildConfig::default()
    };
    let plan = Builder::new(device).build(&graph, &config)?;
    let bytes = plan.to_bytes()?;
    let plan = Plan::from_bytes(&bytes)?;
    ensure!(
        plan.to_bytes()? == bytes,
        "plan round trip is not bit-exact"
    );
    let engine = Engine::from_plan(device, &plan)?;
    let reference = Interpreter::new(graph.clone())?;
    let mut rng = fastrand::Rng::with_seed(42);
    for batch in [1, 4] {
        let dims = at(batch);
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect();
        let host = HostTensor::from_slice(input.name.clone(), &dims, &data)?;
        let mem = engine.device_memory_size(&[(input.name.as_str(), dims.as_slice())])?;
        let mut ctx = engine.clone().create_context()?;
        let got = ctx.execute_host(std::slice::from_ref(&host))?;
        let t = kiln_onnx::Tensor::from_vec(input.name.clone(), dims.clone(), data)?;
        let want = reference.run(HashMap::from([(
            input.name.clone(),
            Value::from_tensor(&t)?,
        )]))?;
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
                "    {name} {} batch {batch}: rel-L2 {rel:.2e}, arena {mem} B",
                precision.name()
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
    let cases: Vec<(String, &str, Precision)> = FIXTURES
        .iter()
        .flat_map(|f| {
            precisions
                .iter()
                .map(move |p| (format!("{f}_{}", p.name()), *f, *p))
        })
        .filter(|(n, _, _)| n.contains(&filter))
        .collect();
    let device = match kiln_cuda::Device::open(0) {
        Ok(d) => d,
        Err(e) => {
            println!(
                "kiln-engine gpu: no CUDA device ({e}); {} cases SKIPPED",
                cases.len()
            );
            return if required {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut failed = 0;
    for (label, name, precision) in &cases {
        match case(&device, name, *precision) {
            Ok(()) => println!("ok      {label}"),
            Err(e) => {
                failed += 1;
                println!("FAILED  {label}: {e:#}");
            }
        }
    }
    println!(
        "kiln-engine gpu: {} passed, {failed} failed",
        cases.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
