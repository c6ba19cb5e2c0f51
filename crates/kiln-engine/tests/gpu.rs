//! End-to-end GPU tests of kiln-engine (`harness = false`): every committed fixture is built,
//! saved, loaded and run at batch 1 and 4 in fp32, tf32, fp16 and bf16, and compared with
//! kiln-reference on fresh random inputs, and with the inputs PyTorch's outputs were saved for
//! (fixtures/manifest.json) against those. Inputs and outputs live in device buffers bound to
//! the context; every output buffer is filled with NaN bytes before each run, and a NaN in the
//! result fails. Each case also runs its first check three times with CUDA-graph replay on
//! (step by step, captured, replayed) on the same buffers.
//!
//! Without a CUDA device every case is reported as skipped and the run succeeds; set
//! `KILN_GPU_REQUIRED=1` to make a missing device a failure. An optional argument filters
//! cases by substring. `KILN_FIXTURES_DIR` points at the fixtures when the binary runs away
//! from its checkout.
//!
//! Every plan must hold its NVRTC binaries (`kernel:` sections) and, when the model has
//! Gemm/MatMul/Conv, its tactics. With `KILN_ZOO_DIR=DIR` (the output of
//! `fixtures/export_zoo.py`), every model of its zoo_manifest.json (else every `DIR/*.onnx`) is
//! run the same way: four precisions, batch 1 and 4 against kiln-reference (dynamic non-batch
//! dims at 128; i64 inputs random in {0, 1}: valid ids, masks and token types), and PyTorch's
//! saved batch-2 inputs against PyTorch's outputs. Expected values are computed once per model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use kiln_core::{
    DevicePtr, Engine as _, ExecutionContext as _, HostTensor, OptimizationProfile, Precision,
    ProfileInput, StreamHandle,
};
use kiln_cuda::DeviceMemory as _;
use kiln_engine::{BuildConfig, Builder, Engine, ExecutionContext, Plan};
use kiln_reference::{Interpreter, Value};
use ndarray_npy::ReadNpyExt;

const FIXTURES: &[&str] = &[
    "mlp_legacy",
    "mlp_dynamo",
    "cnn_legacy",
    "cnn_dynamo",
    "transformer_legacy",
    "transformer_dynamo",
];

/// rel-L2 allowed per precision (the per-op tolerances of the engineering standards).
fn tolerance(p: Precision) -> f64 {
    match p {
        Precision::Fp32 => 1e-5,
        Precision::Tf32 => 1e-3,
        _ => 1e-2,
    }
}

/// The tolerance of one output of a zoo model: a deep network with random weights amplifies
/// rounding layer after layer (ResNet-50's logits move ~30× the precision's epsilon), so a
/// model whose manifest entry holds PyTorch's own error at this precision on the same GPU
/// (`export_zoo.py --sensitivity`: `torch_precision_rel_l2`) is allowed twice that, and never
/// less than [`tolerance`].
fn model_tolerance(entry: Option<&serde_json::Value>, p: Precision, output: &str) -> f64 {
    let torch = entry
        .and_then(|e| e["torch_precision_rel_l2"][p.name()][output].as_f64())
        .filter(|v| v.is_finite());
    torch.map_or(tolerance(p), |t| tolerance(p).max(2.0 * t))
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

/// One comparison of a run: inputs and the expected output values by name.
struct Check {
    label: String,
    inputs: Vec<HostTensor>,
    want: HashMap<String, Vec<f64>>,
}

/// rel-L2 of `got` against `want`; errors on a length mismatch or a non-finite value.
fn rel_l2(name: &str, want: &[f64], got: &HostTensor) -> Result<f64> {
    let g: Vec<f64> = got
        .as_slice::<f32>()
        .context("f32 output")?
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    ensure!(
        want.len() == g.len(),
        "{name}: {} values, want {}",
        g.len(),
        want.len()
    );
    ensure!(g.iter().all(|v| v.is_finite()), "{name}: non-finite output");
    let num: f64 = want.iter().zip(&g).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|a| a * a).sum::<f64>().max(1e-30);
    Ok((num / den).sqrt())
}

/// Checks against kiln-reference on random inputs at each batch.
fn reference_checks(graph: &kiln_onnx::Graph, batches: &[usize]) -> Result<Vec<Check>> {
    let reference = Interpreter::new(graph.clone())?;
    let mut rng = fastrand::Rng::with_seed(42);
    let mut checks = Vec::new();
    for &batch in batches {
        let (inputs, values) = random_inputs(graph, batch, &mut rng)?;
        let want = reference
            .run(values)?
            .into_iter()
            .map(|(k, v)| (k, v.to_f64_vec()))
            .collect();
        checks.push(Check {
            label: format!("batch {batch} vs kiln-reference"),
            inputs,
            want,
        });
    }
    Ok(checks)
}

/// The check against PyTorch's own outputs that `export_zoo.py` / `export.py` saved beside the
/// model (`manifest` entry: input_files, output_files), if any.
fn torch_check(dir: &Path, entry: &serde_json::Value) -> Result<Check> {
    let files = |key: &str| -> Vec<(String, String)> {
        entry[key]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut inputs = Vec::new();
    for (name, file) in files("input_files") {
        let path = dir.join(&file);
        let f = std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
        let t = match ndarray::ArrayD::<f32>::read_npy(f) {
            Ok(a) => {
                HostTensor::from_slice(name, a.shape(), &a.iter().copied().collect::<Vec<_>>())?
            }
            Err(_) => {
                let f = std::fs::File::open(&path)?;
                let a = ndarray::ArrayD::<i64>::read_npy(f)
                    .with_context(|| format!("{}: neither f32 nor i64", path.display()))?;
                HostTensor::from_slice(name, a.shape(), &a.iter().copied().collect::<Vec<_>>())?
            }
        };
        inputs.push(t);
    }
    let mut want = HashMap::new();
    for (name, file) in files("output_files") {
        let path = dir.join(&file);
        let a = ndarray::ArrayD::<f32>::read_npy(std::fs::File::open(&path)?)
            .with_context(|| format!("{}", path.display()))?;
        want.insert(name, a.iter().map(|&v| f64::from(v)).collect());
    }
    ensure!(
        !inputs.is_empty() && !want.is_empty(),
        "no saved PyTorch data"
    );
    Ok(Check {
        label: "PyTorch's inputs vs PyTorch's outputs".into(),
        inputs,
        want,
    })
}

/// The outputs of one run.
type Outputs = Vec<HostTensor>;

/// `count` runs of `inputs` through one fresh context (CUDA-graph replay on or off), on device
/// buffers bound once, every output buffer filled with NaN bytes before each run (so a step
/// that never writes its output cannot pass on stale memory). Returns each run's outputs and
/// the context's `cuda_graphs()` state.
fn runs(
    engine: &Arc<Engine>,
    inputs: &[HostTensor],
    graphs: bool,
    count: usize,
) -> Result<(Vec<Outputs>, (bool, usize))> {
    let mut ctx = ExecutionContext::new(engine.clone())?;
    ctx.set_cuda_graphs(graphs);
    let stream = ctx.stream().clone();
    let alloc = kiln_cuda::DeviceAllocator::new(engine.device());
    let mut keep = Vec::new();
    for t in inputs {
        ctx.set_input_shape(&t.name, &t.dims)?;
        let mut b = alloc.alloc(t.data.len().max(1), &stream)?;
        kiln_cuda::copy::htod(&stream, &t.data, &mut b)?;
        ctx.bind(&t.name, DevicePtr(b.device_ptr()))?;
        keep.push(b);
    }
    let mut outs = Vec::new();
    for spec in engine.outputs() {
        let dims = ctx.output_shape(&spec.name)?;
        let t = HostTensor::zeros(spec.name.clone(), spec.dtype, &dims)?;
        let b = alloc.alloc(t.data.len().max(1), &stream)?;
        ctx.bind(&spec.name, DevicePtr(b.device_ptr()))?;
        outs.push((t, b));
    }
    let mut results = Vec::new();
    for _ in 0..count {
        for (t, b) in outs.iter_mut() {
            kiln_cuda::copy::htod(&stream, &vec![0xffu8; t.data.len()], b)?;
        }
        // SAFETY: every bound address is a buffer in `keep` / `outs`, alive until the stream
        // is synchronised below.
        let run = unsafe { ctx.enqueue(StreamHandle(stream.id())) };
        stream.synchronize()?;
        run?;
        let mut result = Vec::new();
        for (t, b) in &outs {
            let mut t = t.clone();
            kiln_cuda::copy::dtoh(&stream, b, &mut t.data)?;
            result.push(t);
        }
        results.push(result);
    }
    drop(keep);
    Ok((results, ctx.cuda_graphs()))
}

/// One run step by step (see [`runs`]).
fn run_poisoned(engine: &Arc<Engine>, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
    let (mut results, _) = runs(engine, inputs, false, 1)?;
    results.pop().context("no run")
}

/// Three runs with CUDA-graph replay on (the first runs step by step, the second is captured
/// and launched, the third replays); fails unless exactly one graph was captured.
fn run_graphed(engine: &Arc<Engine>, inputs: &[HostTensor]) -> Result<Vec<Outputs>> {
    let (results, (on, captures)) = runs(engine, inputs, true, 3)?;
    ensure!(
        on && captures == 1,
        "CUDA graphs: {captures} captured, still on: {on} (see the log for the capture error)"
    );
    Ok(results)
}

fn case(
    device: &Arc<kiln_cuda::Device>,
    path: &str,
    precision: Precision,
    checks: &[Check],
    entry: Option<&serde_json::Value>,
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
    for check in checks {
        let shapes: Vec<(&str, &[usize])> = check
            .inputs
            .iter()
            .map(|t| (t.name.as_str(), t.dims.as_slice()))
            .collect();
        let mem = engine.device_memory_size(&shapes)?;
        let got = run_poisoned(&engine, &check.inputs)?;
        for out in &got {
            let want = check
                .want
                .get(&out.name)
                .with_context(|| format!("no expected values for output {}", out.name))?;
            let rel = rel_l2(&out.name, want, out)?;
            let tol = model_tolerance(entry, precision, &out.name);
            ensure!(
                rel <= tol,
                "{} {}: rel-L2 {rel:.3e} > {tol:.2e}",
                out.name,
                check.label,
            );
            println!(
                "    {path} {} {} {}: rel-L2 {rel:.2e} (allowed {tol:.1e}), arena {mem} B",
                precision.name(),
                check.label,
                out.name
            );
        }
    }
    // CUDA-graph replay gives the same results as the step-by-step run.
    if let Some(check) = checks.first() {
        for (i, run) in run_graphed(&engine, &check.inputs)?.iter().enumerate() {
            for out in run {
                let want = &check.want[&out.name];
                let rel = rel_l2(&out.name, want, out)?;
                let tol = model_tolerance(entry, precision, &out.name);
                ensure!(
                    rel <= tol,
                    "{} {} with CUDA graphs, run {i}: rel-L2 {rel:.3e} > {tol:.2e}",
                    out.name,
                    check.label
                );
            }
        }
        println!(
            "    {path} {}: CUDA-graph runs (step by step, captured, replayed) match",
            precision.name()
        );
    }
    Ok(())
}

/// The zoo's models (`KILN_ZOO_DIR`): from its zoo_manifest.json (with PyTorch's data) or, if
/// there is none, every `*.onnx` in the folder.
fn zoo_models(dir: &Path) -> Vec<(PathBuf, Option<serde_json::Value>)> {
    let manifest: Option<serde_json::Value> = std::fs::read(dir.join("zoo_manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(models) = manifest.as_ref().and_then(|m| m["models"].as_array()) {
        return models
            .iter()
            .filter_map(|m| Some((dir.join(m["file"].as_str()?), Some(m.clone()))))
            .collect();
    }
    let mut models: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                .map(|p| (p, None))
                .collect()
        })
        .unwrap_or_default();
    models.sort_by(|a, b| a.0.cmp(&b.0));
    models
}

/// A model and the precisions and batches it runs in.
struct Model {
    stem: String,
    path: PathBuf,
    precisions: Vec<Precision>,
    batches: Vec<usize>,
    /// The folder and manifest entry holding PyTorch's inputs and outputs, if any.
    torch: Option<(PathBuf, serde_json::Value)>,
}

impl Model {
    fn labels(&self, prefix: &str) -> Vec<(String, Precision)> {
        self.precisions
            .iter()
            .map(|p| (format!("{prefix}{}_{}", self.stem, p.name()), *p))
            .collect()
    }

    fn checks(&self, graph: &kiln_onnx::Graph) -> Result<Vec<Check>> {
        let mut checks = reference_checks(graph, &self.batches)?;
        if let Some((dir, entry)) = &self.torch {
            checks.push(torch_check(dir, entry)?);
        }
        Ok(checks)
    }
}

fn main() -> ExitCode {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let required = std::env::var("KILN_GPU_REQUIRED").is_ok_and(|v| v == "1");
    let all = vec![
        Precision::Fp32,
        Precision::Tf32,
        Precision::Fp16,
        Precision::Bf16,
    ];
    // The repo's fixtures; KILN_FIXTURES_DIR when the binary runs away from its checkout.
    let fixtures = std::env::var_os("KILN_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"));
    let fixture_manifest: Option<serde_json::Value> = std::fs::read(fixtures.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut models: Vec<(String, Model)> = FIXTURES
        .iter()
        .map(|f| {
            let entry = fixture_manifest
                .as_ref()
                .and_then(|m| m["models"].as_array())
                .and_then(|ms| ms.iter().find(|m| m["file"] == format!("{f}.onnx")))
                .cloned();
            (
                String::new(),
                Model {
                    stem: f.to_string(),
                    path: fixtures.join(format!("{f}.onnx")),
                    precisions: all.clone(),
                    batches: vec![1, 4],
                    torch: entry.map(|e| (fixtures.clone(), e)),
                },
            )
        })
        .collect();
    if let Some(dir) = std::env::var_os("KILN_ZOO_DIR").map(PathBuf::from) {
        for (path, entry) in zoo_models(&dir) {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            models.push((
                "zoo_".into(),
                Model {
                    stem,
                    path,
                    precisions: all.clone(),
                    batches: vec![1, 4],
                    torch: entry.map(|e| (dir.clone(), e)),
                },
            ));
        }
    }
    for (prefix, m) in models.iter_mut() {
        let labels = m.labels(prefix);
        m.precisions = labels
            .into_iter()
            .filter(|(l, _)| l.contains(&filter))
            .map(|(_, p)| p)
            .collect();
    }
    models.retain(|(_, m)| !m.precisions.is_empty());
    let names: Vec<String> = models
        .iter()
        .flat_map(|(prefix, m)| m.labels(prefix).into_iter().map(|(l, _)| l))
        .collect();
    let device = match kiln_cuda::Device::open(0) {
        Ok(d) => d,
        Err(e) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
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
    for (prefix, m) in &models {
        let path = m.path.to_string_lossy().to_string();
        // The expected values of a model are computed once and shared by its precisions.
        let checks = kiln_onnx::load(&m.path)
            .map_err(anyhow::Error::from)
            .and_then(|g| m.checks(&g));
        for (label, precision) in m.labels(prefix) {
            let result = match &checks {
                Ok(checks) => case(
                    &device,
                    &path,
                    precision,
                    checks,
                    m.torch.as_ref().map(|(_, e)| e),
                ),
                Err(e) => Err(anyhow::anyhow!("expected values: {e:#}")),
            };
            match result {
                Ok(()) => println!("ok      {label}"),
                Err(e) => {
                    failed += 1;
                    println!("FAILED  {label}: {e:#}");
                }
            }
        }
    }
    println!("{} passed, {failed} failed", names.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
