//! GPU tests of tactic selection by timing (`harness = false`, `kiln_cuda::gpu_test` runner):
//! the conv fixture (`cnn_legacy`: Conv+BN+ReLU, a residual block, a Gemm head) and the GEMM
//! fixture (`mlp_legacy`) are built at optimisation level 0 (heuristics) and 3 (timed), with a
//! timing cache (the second build times nothing, takes every timed tactic from the cache, chooses
//! the same tactics and spends less time on them) and with a workspace limit of 0 (every
//! tactic's workspace is 0). Every engine runs on fresh random inputs with NaN-poisoned output
//! buffers and is compared with kiln-reference (rel-L2 by precision; NaN fails).
//!
//! Without a CUDA device every test is reported as skipped. An optional argument filters tests
//! by name; `KILN_FIXTURES_DIR` points at the fixtures when the binary runs away from its
//! checkout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use kiln_core::{
    DevicePtr, Engine as _, ExecutionContext as _, HostTensor, OptimizationProfile, Precision,
    ProfileInput, StreamHandle,
};
use kiln_cuda::{Device, DeviceMemory as _};
use kiln_engine::plan::Fingerprint;
use kiln_engine::runtime::libs::{TACTICS_SECTION, Tactics};
use kiln_engine::runtime::timing::{Source, TimingCache};
use kiln_engine::runtime::{BuildReport, finish_build_report};
use kiln_engine::{BuildConfig, Engine, ExecutionContext, Plan};
use kiln_reference::{Interpreter, Value};

struct Ctx {
    device: Arc<Device>,
    fixtures: PathBuf,
}

type Test = kiln_cuda::gpu_test::GpuTest<Ctx, anyhow::Error>;

const TESTS: &[Test] = &[
    ("conv_opt0_vs_opt3_fp16", |c| {
        opt_levels(c, "cnn_legacy", Precision::Fp16)
    }),
    ("conv_opt0_vs_opt3_fp32", |c| {
        opt_levels(c, "cnn_legacy", Precision::Fp32)
    }),
    ("gemm_opt0_vs_opt3_fp16", |c| {
        opt_levels(c, "mlp_legacy", Precision::Fp16)
    }),
    ("gemm_opt0_vs_opt3_fp32", |c| {
        opt_levels(c, "mlp_legacy", Precision::Fp32)
    }),
    ("conv_timing_cache_fp16", |c| {
        timing_cache(c, "cnn_legacy", Precision::Fp16)
    }),
    ("gemm_timing_cache_fp16", |c| {
        timing_cache(c, "mlp_legacy", Precision::Fp16)
    }),
    ("conv_workspace_zero_fp16", |c| {
        workspace_zero(c, "cnn_legacy", Precision::Fp16)
    }),
    ("gemm_workspace_zero_fp16", |c| {
        workspace_zero(c, "mlp_legacy", Precision::Fp16)
    }),
    ("opt_level_out_of_range", opt_level_out_of_range),
];

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(TESTS, setup, |_| {})
}

fn setup() -> Result<Ctx, String> {
    let device = Device::open(0).map_err(|e| e.to_string())?;
    let fixtures = std::env::var_os("KILN_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"));
    println!("{:?}", device.info());
    Ok(Ctx { device, fixtures })
}

fn tolerance(p: Precision) -> f64 {
    match p {
        Precision::Fp32 => 1e-5,
        Precision::Tf32 => 1e-3,
        _ => 1e-2,
    }
}

/// A profile over the batch dim of every input: min 1, opt 4, max 8.
fn batch_profile(graph: &kiln_onnx::Graph) -> Result<OptimizationProfile> {
    let mut inputs = Vec::new();
    for input in &graph.inputs {
        let shape = input.shape.as_ref().context("input rank")?;
        let at = |b: usize| -> Vec<usize> {
            shape
                .dims()
                .iter()
                .enumerate()
                .map(|(i, d)| d.known().unwrap_or(if i == 0 { b } else { 1 }))
                .collect()
        };
        inputs.push(ProfileInput {
            name: input.name.clone(),
            min: at(1),
            opt: at(4),
            max: at(8),
        });
    }
    Ok(OptimizationProfile { inputs })
}

fn config(graph: &kiln_onnx::Graph, precision: Precision, opt_level: u8) -> Result<BuildConfig> {
    Ok(BuildConfig {
        precision,
        profiles: vec![batch_profile(graph)?],
        opt_level,
        ..BuildConfig::default()
    })
}

/// A build as `Builder::build` does it, keeping the device half's report and its seconds.
fn build(ctx: &Ctx, graph: &kiln_onnx::Graph, config: &BuildConfig) -> Result<(Plan, BuildReport)> {
    let fingerprint = Fingerprint::of_device(&ctx.device)?;
    let (mut plan, programs) = kiln_engine::builder::prepare_programs(graph, config, fingerprint)?;
    let report = finish_build_report(&ctx.device, &mut plan, &programs)?;
    Ok((plan, report))
}

fn tactics(plan: &Plan) -> Result<Tactics> {
    Ok(Tactics::from_bytes(
        plan.section(TACTICS_SECTION)
            .context("the plan holds no tactics section")?,
    )?)
}

/// The report's choices agree with the plan's tactics section and its level.
fn check_report(plan: &Plan, r: &BuildReport, opt_level: u8) -> Result<()> {
    let t = tactics(plan)?;
    let n = t.gemm.len() + t.conv.len();
    ensure!(n > 0, "no library tactics in the plan");
    ensure!(
        r.tactics.choices.len() == n,
        "{} choices reported, {n} tactics in the plan",
        r.tactics.choices.len()
    );
    ensure!(
        r.tactics.timed + r.tactics.cache_hits + r.tactics.heuristic == n,
        "timed {} + cached {} + heuristic {} != {n}",
        r.tactics.timed,
        r.tactics.cache_hits,
        r.tactics.heuristic
    );
    if opt_level == 0 {
        ensure!(
            r.tactics
                .choices
                .iter()
                .all(|c| c.source == Source::Heuristic)
                && r.tactics.candidates_timed == 0,
            "level 0 timed something: {:?}",
            r.tactics
        );
    }
    for c in &r.tactics.choices {
        if c.source == Source::Timed {
            ensure!(
                c.candidates >= 2 && c.median_ms.is_some_and(|m| m.is_finite() && m > 0.0),
                "timed choice without candidates or time: {c:?}"
            );
        }
    }
    Ok(())
}

/// Random inputs at batch `batch` (host tensors, reference values).
fn random_inputs(
    graph: &kiln_onnx::Graph,
    batch: usize,
    seed: u64,
) -> Result<(Vec<HostTensor>, HashMap<String, Value>)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut host = Vec::new();
    let mut values = HashMap::new();
    for input in &graph.inputs {
        let shape = input.shape.as_ref().context("input rank")?;
        let dims: Vec<usize> = shape
            .dims()
            .iter()
            .enumerate()
            .map(|(i, d)| d.known().unwrap_or(if i == 0 { batch } else { 1 }))
            .collect();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect();
        host.push(HostTensor::from_slice(input.name.clone(), &dims, &data)?);
        let t = kiln_onnx::Tensor::from_vec(input.name.clone(), dims, data)?;
        values.insert(input.name.clone(), Value::from_tensor(&t)?);
    }
    Ok((host, values))
}

/// Loads `plan`, runs it at batches 4 (the opt shape) and 3 (a shape met at run time) on
/// fresh random inputs with NaN-poisoned outputs, and compares with kiln-reference.
fn run_vs_reference(
    ctx: &Ctx,
    graph: &kiln_onnx::Graph,
    plan: &Plan,
    precision: Precision,
    label: &str,
) -> Result<()> {
    let engine = Engine::from_plan(&ctx.device, plan)?;
    let reference = Interpreter::new(graph.clone())?;
    for (batch, seed) in [(4usize, 7u64), (3, 8)] {
        let (inputs, values) = random_inputs(graph, batch, seed)?;
        let want: HashMap<String, Vec<f64>> = reference
            .run(values)?
            .into_iter()
            .map(|(k, v)| (k, v.to_f64_vec()))
            .collect();
        let mut ectx = ExecutionContext::new(engine.clone())?;
        let stream = ectx.stream().clone();
        let alloc = kiln_cuda::DeviceAllocator::new(&ctx.device);
        let mut keep = Vec::new();
        for t in &inputs {
            ectx.set_input_shape(&t.name, &t.dims)?;
            let mut b = alloc.alloc(t.data.len().max(1), &stream)?;
            kiln_cuda::copy::htod(&stream, &t.data, &mut b)?;
            ectx.bind(&t.name, DevicePtr(b.device_ptr()))?;
            keep.push(b);
        }
        let mut outs = Vec::new();
        for spec in engine.outputs() {
            let dims = ectx.output_shape(&spec.name)?;
            let t = HostTensor::zeros(spec.name.clone(), spec.dtype, &dims)?;
            let mut b = alloc.alloc(t.data.len().max(1), &stream)?;
            // NaN bytes: an output the engine never writes cannot pass.
            kiln_cuda::copy::htod(&stream, &vec![0xffu8; t.data.len()], &mut b)?;
            ectx.bind(&spec.name, DevicePtr(b.device_ptr()))?;
            outs.push((t, b));
        }
        // SAFETY: every bound address is a buffer in `keep` / `outs`, alive until the stream
        // is synchronised below.
        let run = unsafe { ectx.enqueue(StreamHandle(stream.id())) };
        stream.synchronize()?;
        run?;
        for (t, b) in &outs {
            let mut t = t.clone();
            kiln_cuda::copy::dtoh(&stream, b, &mut t.data)?;
            let got: Vec<f64> = t
                .as_slice::<f32>()
                .context("f32 output")?
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let w = want
                .get(&t.name)
                .with_context(|| format!("no reference values for {}", t.name))?;
            ensure!(
                w.len() == got.len(),
                "{}: {} values, want {}",
                t.name,
                got.len(),
                w.len()
            );
            ensure!(
                got.iter().all(|v| v.is_finite()),
                "{}: non-finite output",
                t.name
            );
            let num: f64 = w.iter().zip(&got).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f64 = w.iter().map(|a| a * a).sum::<f64>().max(1e-30);
            let rel = (num / den).sqrt();
            let tol = tolerance(precision);
            ensure!(
                rel <= tol,
                "{label} batch {batch} {}: rel-L2 {rel:.3e} > {tol:.1e}",
                t.name
            );
            println!("    {label} batch {batch} {}: rel-L2 {rel:.2e}", t.name);
        }
        stream.synchronize()?;
        drop(keep);
    }
    Ok(())
}

fn load(ctx: &Ctx, model: &str) -> Result<kiln_onnx::Graph> {
    let path = ctx.fixtures.join(format!("{model}.onnx"));
    kiln_onnx::load(&path).with_context(|| format!("{}", path.display()))
}

/// Level 0 and level 3 both build, report what they did and match kiln-reference.
fn opt_levels(ctx: &Ctx, model: &str, precision: Precision) -> Result<()> {
    let graph = load(ctx, model)?;
    let mut timed_any = false;
    for opt in [0u8, 3] {
        let t = Instant::now();
        let (plan, r) = build(ctx, &graph, &config(&graph, precision, opt)?)?;
        check_report(&plan, &r, opt)?;
        timed_any |= opt > 0 && r.tactics.timed > 0;
        println!(
            "    {model} {} opt {opt}: build {:.2} s, tactics {:.3} s: {} timed ({} runs), {} \
             heuristic",
            precision.name(),
            t.elapsed().as_secs_f64(),
            r.tactics.seconds,
            r.tactics.timed,
            r.tactics.candidates_timed,
            r.tactics.heuristic
        );
        run_vs_reference(ctx, &graph, &plan, precision, &format!("opt {opt}"))?;
    }
    if !timed_any {
        println!("    note: every description of {model} had a single candidate at opt 3");
    }
    Ok(())
}

/// A second build with the cache the first wrote times nothing, takes every timed tactic from
/// the cache, chooses the same tactics and spends less time choosing them.
fn timing_cache(ctx: &Ctx, model: &str, precision: Precision) -> Result<()> {
    let graph = load(ctx, model)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("timing.json");
    let config = BuildConfig {
        timing_cache: Some(path.clone()),
        ..config(&graph, precision, 3)?
    };
    let (first, r1) = build(ctx, &graph, &config)?;
    check_report(&first, &r1, 3)?;
    ensure!(r1.tactics.cache_hits == 0, "a fresh cache had hits");
    ensure!(
        r1.tactics.timed > 0,
        "nothing was timed at opt 3 ({} heuristic): the cache test proves nothing",
        r1.tactics.heuristic
    );
    ensure!(
        r1.tactics.cache_written && path.is_file(),
        "the timing cache was not written"
    );
    let cache = TimingCache::from_bytes(&std::fs::read(&path)?)
        .map_err(|e| anyhow::anyhow!("the written cache does not parse: {e}"))?;
    // Descriptions with a single candidate are not timed and not cached.
    ensure!(
        cache.len() == r1.tactics.timed,
        "{} cache entries for {} timed descriptions",
        cache.len(),
        r1.tactics.timed
    );
    let (second, r2) = build(ctx, &graph, &config)?;
    check_report(&second, &r2, 3)?;
    ensure!(
        r2.tactics.timed == 0 && r2.tactics.candidates_timed == 0,
        "the warm build timed {} descriptions",
        r2.tactics.timed
    );
    ensure!(
        r2.tactics.cache_hits == r1.tactics.timed && r2.tactics.heuristic == r1.tactics.heuristic,
        "{} cache hits and {} heuristic, want {} and {}",
        r2.tactics.cache_hits,
        r2.tactics.heuristic,
        r1.tactics.timed,
        r1.tactics.heuristic
    );
    ensure!(
        !r2.tactics.cache_written,
        "the warm build rewrote an unchanged cache"
    );
    ensure!(
        second.section(TACTICS_SECTION) == first.section(TACTICS_SECTION),
        "the warm build chose other tactics"
    );
    ensure!(
        r2.tactics.seconds < r1.tactics.seconds,
        "tactic selection took {:.3} s warm, {:.3} s cold",
        r2.tactics.seconds,
        r1.tactics.seconds
    );
    println!(
        "    {model}: tactics {:.3} s cold ({} timed, {} runs), {:.3} s warm ({} cache hits)",
        r1.tactics.seconds,
        r1.tactics.timed,
        r1.tactics.candidates_timed,
        r2.tactics.seconds,
        r2.tactics.cache_hits
    );
    // A cache from another workspace limit is not used.
    let other = BuildConfig {
        workspace_limit: config.workspace_limit / 2,
        ..config.clone()
    };
    let (_, r3) = build(ctx, &graph, &other)?;
    ensure!(
        r3.tactics.cache_hits == 0,
        "entries of another workspace limit were used"
    );
    run_vs_reference(ctx, &graph, &second, precision, "warm cache")
}

/// With a workspace limit of 0 every tactic needs no workspace, at level 0 and 3.
fn workspace_zero(ctx: &Ctx, model: &str, precision: Precision) -> Result<()> {
    let graph = load(ctx, model)?;
    for opt in [0u8, 3] {
        let config = BuildConfig {
            workspace_limit: 0,
            ..config(&graph, precision, opt)?
        };
        let (plan, r) = build(ctx, &graph, &config)?;
        check_report(&plan, &r, opt)?;
        let t = tactics(&plan)?;
        for (k, g) in &t.gemm {
            ensure!(g.workspace == 0, "GEMM {k}: workspace {}", g.workspace);
        }
        for (k, c) in &t.conv {
            ensure!(c.workspace == 0, "conv {k}: workspace {}", c.workspace);
        }
        for c in &r.tactics.choices {
            ensure!(
                match c.tactic {
                    kiln_engine::runtime::timing::Tactic::Gemm(t) => t.workspace,
                    kiln_engine::runtime::timing::Tactic::Conv(t) => t.workspace,
                } == 0,
                "reported choice with workspace: {c:?}"
            );
        }
        run_vs_reference(
            ctx,
            &graph,
            &plan,
            precision,
            &format!("workspace 0 opt {opt}"),
        )?;
    }
    Ok(())
}

/// A level above 5 is a configuration error naming the level, not a panic.
fn opt_level_out_of_range(ctx: &Ctx) -> Result<()> {
    let graph = load(ctx, "mlp_legacy")?;
    let config = config(&graph, Precision::Fp32, 6)?;
    match build(ctx, &graph, &config) {
        Ok(_) => anyhow::bail!("opt level 6 built"),
        Err(e) => {
            let msg = format!("{e:#}");
            ensure!(
                msg.contains("optimisation level 6"),
                "unexpected error: {msg}"
            );
            Ok(())
        }
    }
}
