//! Build, load and latency figures of kiln-engine on real models (issue 5's "recorded" list).
//!
//! `engine_bench [OUT.json] [--model M.onnx]... [--precision fp16[,fp32..]] [--batches 1,128]
//! [--iters N] [--workspace BYTES] [--opt-level N] [--timing-cache PATH]`
//!
//! `--workspace` is the builder's workspace limit (a byte count with an optional suffix:
//! `0`, `256MiB`, `4GiB`, `1GB`; default `BuildConfig`'s), `--opt-level` its optimisation
//! level (0 = heuristic tactics, 1-5 = time the top 2/4/8/16/all candidates; default 3),
//! `--timing-cache` a timing cache file: each case is then built twice, the second build
//! reading what the first wrote, and both build times are printed and recorded (with whether
//! they chose the same tactics).
//!
//! Models default to `$KILN_ZOO_DIR/{resnet50,bert_base}_legacy.onnx` (fixtures/export_zoo.py's
//! output) when that folder is set, else to the repo's cnn and transformer fixtures. For each
//! model, precision and batch it builds an engine whose profile's `opt` is that batch (min 1,
//! max the largest batch; other dynamic dims 128) and records:
//! - build time (split into NVRTC kernels and tactic selection: descriptions timed, taken from
//!   the timing cache or from the heuristics, candidate runs) and the chosen tactics, plan
//!   size, save + load time (plan file → `Engine::load`: parse, checksum,
//!   weight upload, kernel modules),
//! - the first enqueue's host time (specialisation to the input shapes included),
//! - compute-only latency: inputs already on the device, CUDA events around `enqueue` on the
//!   context's stream, median / p90 / min of `iters` runs after 10 warm-ups,
//! - transfer-inclusive latency: pinned host inputs copied in, enqueue, outputs copied back to
//!   pinned memory, all between the events,
//! - the enqueue call's host time (median; the CPU cost of launching a run),
//! - compute-only latency and enqueue time again with CUDA-graph replay on,
//! - a per-step profile of one more run (events around every step): time by op type and the
//!   slowest steps are printed, every step goes into the JSON.
//!
//! Without a CUDA device it says so and exits 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use kiln_core::{
    DataType, DevicePtr, Engine as _, ExecutionContext as _, OptimizationProfile, Precision,
    ProfileInput, StreamHandle,
};
use kiln_cuda::{Device, DeviceBuffer, DeviceMemory, Event, PinnedBuffer, Probe, Stream, copy};
use kiln_engine::plan::{DEFAULT_OPT_LEVEL, Fingerprint, Fusions};
use kiln_engine::runtime::BuildReport;
use kiln_engine::runtime::timing::{Source, Tactic};
use kiln_engine::{BuildConfig, Engine, ExecutionContext, Plan};
use serde_json::{Value, json};

const WARMUP: usize = 10;

#[derive(Parser)]
struct Args {
    /// Where to write the JSON report.
    out: Option<PathBuf>,
    /// ONNX models to bench (repeatable).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Comma-separated precisions.
    #[arg(long, default_value = "fp16")]
    precision: String,
    /// Comma-separated batch sizes.
    #[arg(long, default_value = "1,128")]
    batches: String,
    /// Timed runs per measurement at batch > 8 (4× that at small batches).
    #[arg(long, default_value_t = 50)]
    iters: usize,
    /// Workspace limit of the build (bytes; suffixes KiB/MiB/GiB or KB/MB/GB).
    #[arg(long, value_parser = parse_bytes)]
    workspace: Option<usize>,
    /// Builder optimisation level (0 = heuristics only, 1-5 = time 2/4/8/16/all candidates).
    #[arg(long, default_value_t = DEFAULT_OPT_LEVEL)]
    opt_level: u8,
    /// Timing cache file; each case is built twice (the second build reads the cache).
    #[arg(long)]
    timing_cache: Option<PathBuf>,
    /// Specialisation fusions: `all`, `none`, or a comma list of nhwc, attention,
    /// add_layer_norm, elementwise.
    #[arg(long, default_value = "all", value_parser = parse_fusions)]
    fusions: Fusions,
    /// NVRTC disk cache directory (default: none, every build compiles its kernels).
    #[arg(long)]
    kernel_cache: Option<PathBuf>,
}

fn parse_fusions(s: &str) -> Result<Fusions, String> {
    match s.trim() {
        "all" => return Ok(Fusions::default()),
        "none" | "" => return Ok(Fusions::none()),
        _ => {}
    }
    let mut f = Fusions::none();
    for name in s.split(',') {
        match name.trim() {
            "nhwc" => f.nhwc = true,
            "attention" => f.attention = true,
            "add_layer_norm" => f.add_layer_norm = true,
            "elementwise" => f.elementwise = true,
            other => {
                return Err(format!(
                    "unknown fusion '{other}' (all, none, nhwc, attention, add_layer_norm, elementwise)"
                ));
            }
        }
    }
    Ok(f)
}

/// How the benched engines are built.
#[derive(Clone)]
struct BuildArgs {
    workspace: Option<usize>,
    opt_level: u8,
    timing_cache: Option<PathBuf>,
    fusions: Fusions,
    kernel_cache: Option<PathBuf>,
}

/// `4GiB`, `256MiB`, `64KiB`, `1GB`, `1000` (bytes).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => return Err(format!("unknown size unit '{other}' in '{s}'")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count"))?;
    Ok((v * scale).round() as usize)
}

/// Builds a plan as `Builder::build` does, timing it and keeping the device half's report.
fn build(
    device: &Arc<Device>,
    graph: &kiln_onnx::Graph,
    config: &BuildConfig,
) -> Result<(Plan, f64, BuildReport)> {
    let t = Instant::now();
    let fingerprint = Fingerprint::of_device(device)?;
    let (mut plan, programs) = kiln_engine::builder::prepare_programs(graph, config, fingerprint)?;
    let report = kiln_engine::runtime::finish_build_report(device, &mut plan, &programs)?;
    Ok((plan, t.elapsed().as_secs_f64(), report))
}

/// One line about a build: its time and what tactic selection did.
fn build_line(label: &str, secs: f64, r: &BuildReport) -> String {
    let t = &r.tactics;
    format!(
        "{label} {secs:.2} s (kernels {:.2} s, tactics {:.2} s at opt {}: {} timed over {} \
         candidate runs, {} from the timing cache, {} heuristic; workspace limit {} MiB)",
        r.kernels_s,
        t.seconds,
        t.opt_level,
        t.timed,
        t.candidates_timed,
        t.cache_hits,
        t.heuristic,
        t.workspace_limit as f64 / (1u64 << 20) as f64
    )
}

/// The chosen tactics in short: convolution algorithms (fused or not) and GEMM count, with
/// the largest workspace any of them needs.
fn tactics_line(r: &BuildReport) -> String {
    let mut algos = std::collections::BTreeMap::<String, usize>::new();
    let (mut gemms, mut max_ws) = (0, 0usize);
    for c in &r.tactics.choices {
        match c.tactic {
            Tactic::Conv(t) => {
                *algos
                    .entry(format!(
                        "algo {}{}",
                        t.algo,
                        if t.fused { " fused" } else { "" }
                    ))
                    .or_default() += 1;
                max_ws = max_ws.max(t.workspace);
            }
            Tactic::Gemm(t) => {
                gemms += 1;
                max_ws = max_ws.max(t.workspace);
            }
        }
    }
    let timed: f64 = r
        .tactics
        .choices
        .iter()
        .filter(|c| c.source != Source::Heuristic)
        .filter_map(|c| c.median_ms)
        .sum();
    format!(
        "tactics: {} conv {algos:?}, {gemms} GEMM; largest workspace {:.1} MiB; chosen tactics' \
         timed sum {timed:.3} ms",
        r.tactics.choices.len() - gemms,
        max_ws as f64 / (1u64 << 20) as f64
    )
}

#[derive(Default)]
struct Stats {
    median: f64,
    p90: f64,
    min: f64,
    runs: usize,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Stats::default();
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        median,
        p90: v[(n * 9 / 10).min(n - 1)],
        min: v[0],
        runs: n,
    }
}

fn stats_json(s: &Stats) -> Value {
    json!({"median_ms": s.median, "p90_ms": s.p90, "min_ms": s.min, "runs": s.runs})
}

fn dims_at(shape: &kiln_core::Shape, batch: usize) -> Vec<usize> {
    shape
        .dims()
        .iter()
        .enumerate()
        .map(|(i, d)| d.known().unwrap_or(if i == 0 { batch } else { 128 }))
        .collect()
}

fn profile(graph: &kiln_onnx::Graph, opt: usize, max: usize) -> Result<OptimizationProfile> {
    let mut inputs = Vec::new();
    for v in &graph.inputs {
        let shape = v.shape.as_ref().context("input without a rank")?;
        inputs.push(ProfileInput {
            name: v.name.clone(),
            min: dims_at(shape, 1),
            opt: dims_at(shape, opt),
            max: dims_at(shape, max),
        });
    }
    Ok(OptimizationProfile { inputs })
}

/// Random host bytes for one input (f32 in [-1, 1), integers in {0, 1}: valid ids and masks).
fn random_bytes(dtype: DataType, n: usize, rng: &mut fastrand::Rng) -> Result<Vec<u8>> {
    Ok(match dtype {
        DataType::F32 => {
            let v: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        DataType::I64 => {
            let v: Vec<i64> = (0..n).map(|_| rng.i64(0..2)).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        DataType::I32 => {
            let v: Vec<i32> = (0..n).map(|_| rng.i32(0..2)).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        other => bail!("engine_bench makes no {other} inputs"),
    })
}

struct Io {
    dev: DeviceBuffer,
    host: PinnedBuffer,
    bytes: usize,
}

fn bench_one(
    device: &Arc<Device>,
    path: &std::path::Path,
    precision: Precision,
    batch: usize,
    max_batch: usize,
    iters: usize,
    b: &BuildArgs,
) -> Result<Value> {
    let graph = kiln_onnx::load(path)?;
    let defaults = BuildConfig::default();
    let config = BuildConfig {
        precision,
        profiles: vec![profile(&graph, batch, max_batch)?],
        workspace_limit: b.workspace.unwrap_or(defaults.workspace_limit),
        opt_level: b.opt_level,
        timing_cache: b.timing_cache.clone(),
        fusions: b.fusions,
        kernel_cache_dir: b.kernel_cache.clone(),
    };
    let (plan, build_s, report) = build(device, &graph, &config)?;
    println!("      {}", build_line("build", build_s, &report));
    println!("      {}", tactics_line(&report));
    // With a timing cache: a second build reads what the first wrote.
    let rebuild = match &b.timing_cache {
        Some(_) => {
            let (again, secs, r) = build(device, &graph, &config)?;
            let same = again.section("tactics") == plan.section("tactics");
            println!(
                "      {}; same tactics: {same}",
                build_line("rebuild (timing cache warm)", secs, &r)
            );
            Some(json!({"build_s": secs, "report": r, "same_tactics": same}))
        }
        None => None,
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("model.plan");
    let t = Instant::now();
    plan.save(&file)?;
    let save_s = t.elapsed().as_secs_f64();
    let plan_bytes = std::fs::metadata(&file)?.len();
    drop(plan);
    let t = Instant::now();
    let engine = Engine::load(device, &file)?;
    let load_s = t.elapsed().as_secs_f64();

    let mut ctx = ExecutionContext::new(engine.clone())?;
    let stream: Arc<Stream> = ctx.stream().clone();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut inputs = Vec::new();
    let mut shapes = Vec::new();
    for spec in engine.inputs() {
        let dims = dims_at(&spec.shape, batch);
        let n: usize = dims.iter().product();
        let data = random_bytes(spec.dtype, n, &mut rng)?;
        let mut host = PinnedBuffer::new(device, data.len())?;
        host.write()?.copy_from_slice(&data);
        let mut dev = engine_alloc(device, data.len(), &stream)?;
        copy::htod(&stream, &data, &mut dev)?;
        ctx.set_input_shape(&spec.name, &dims)?;
        ctx.bind(&spec.name, DevicePtr(dev.device_ptr()))?;
        shapes.push((spec.name.clone(), dims));
        inputs.push(Io {
            dev,
            host,
            bytes: data.len(),
        });
    }
    let shape_refs: Vec<(&str, &[usize])> = shapes
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let arena_bytes = engine.device_memory_size(&shape_refs)?;
    let mut outputs = Vec::new();
    for spec in engine.outputs() {
        let dims = ctx.output_shape(&spec.name)?;
        let bytes = dims.iter().product::<usize>() * spec.dtype.size_in_bytes();
        let dev = engine_alloc(device, bytes, &stream)?;
        ctx.bind(&spec.name, DevicePtr(dev.device_ptr()))?;
        outputs.push(Io {
            dev,
            host: PinnedBuffer::new(device, bytes.max(1))?,
            bytes,
        });
    }
    let handle = StreamHandle(stream.id());
    // SAFETY: every bound address is a live DeviceBuffer of the tensor's size (`inputs`,
    // `outputs`), kept until after the stream is synchronised at the end of this function.
    let enqueue = |ctx: &mut ExecutionContext| unsafe { ctx.enqueue(handle) };
    let t = Instant::now();
    enqueue(&mut ctx)?;
    let first_enqueue_ms = t.elapsed().as_secs_f64() * 1e3;
    stream.synchronize()?;

    let iters = if batch > 8 { iters } else { iters * 4 };
    let (start, end) = (Event::new(device, true)?, Event::new(device, true)?);
    // Warm-up, then `iters` runs: (GPU ms between events around each run, host ms of enqueue).
    let timed = |ctx: &mut ExecutionContext| -> Result<(Vec<f64>, Vec<f64>)> {
        for _ in 0..WARMUP {
            enqueue(ctx)?;
        }
        stream.synchronize()?;
        let (mut gpu, mut host) = (Vec::new(), Vec::new());
        for _ in 0..iters {
            start.record(&stream)?;
            let t = Instant::now();
            enqueue(ctx)?;
            host.push(t.elapsed().as_secs_f64() * 1e3);
            end.record(&stream)?;
            gpu.push(f64::from(start.elapsed_ms(&end)?));
        }
        Ok((gpu, host))
    };
    let (compute, host_enqueue) = timed(&mut ctx)?;
    let mut transfer = Vec::new();
    for i in 0..WARMUP + iters {
        start.record(&stream)?;
        for io in inputs.iter_mut() {
            let n = io.bytes;
            copy::htod_pinned(&stream, &mut io.host, 0, &mut io.dev, 0, n)?;
        }
        enqueue(&mut ctx)?;
        for io in outputs.iter_mut() {
            let n = io.bytes;
            copy::dtoh_pinned(&stream, &io.dev, 0, &mut io.host, 0, n)?;
        }
        end.record(&stream)?;
        let ms = f64::from(start.elapsed_ms(&end)?);
        if i >= WARMUP {
            transfer.push(ms);
        }
    }
    stream.synchronize()?;
    for io in outputs.iter_mut() {
        io.host.wait()?;
    }
    let finite = outputs.iter_mut().zip(engine.outputs()).try_fold(
        true,
        |ok, (io, spec)| -> Result<bool> {
            let bytes = io.host.read()?;
            Ok(ok
                && match spec.dtype {
                    DataType::F32 => kiln_cuda::pinned::cast::<f32>(bytes)?
                        .iter()
                        .all(|v| v.is_finite()),
                    _ => true,
                })
        },
    )?;
    // CUDA graphs: same bindings, so the second run is captured and the rest replay it.
    ctx.set_cuda_graphs(true);
    let (g_compute, g_enqueue) = timed(&mut ctx)?;
    let (graphs_on, captures) = ctx.cuda_graphs();
    ctx.set_cuda_graphs(false);
    let (gc, ge) = (stats(g_compute), stats(g_enqueue));
    // SAFETY: as for `enqueue` above; run_profiled waits for the stream before returning.
    let profile = unsafe { ctx.run_profiled() }?;
    let (c, e, x) = (stats(compute), stats(host_enqueue), stats(transfer));
    let model = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    println!(
        "kiln  {model:20} {:4} b{batch:<4} compute median {:.3} ms p90 {:.3}  with transfers {:.3} ms  \
         enqueue {:.1} us  {:.0}/s  build {build_s:.1} s  plan {:.1} MB  load {load_s:.2} s",
        precision.name(),
        c.median,
        c.p90,
        x.median,
        e.median * 1e3,
        batch as f64 / (c.median * 1e-3),
        plan_bytes as f64 / 1e6,
    );
    println!(
        "      with CUDA graphs ({}): compute median {:.3} ms p90 {:.3}  enqueue {:.1} us  {:.0}/s",
        if graphs_on && captures > 0 {
            format!("{captures} captured")
        } else {
            "capture failed, ran without".to_string()
        },
        gc.median,
        gc.p90,
        ge.median * 1e3,
        batch as f64 / (gc.median * 1e-3),
    );
    println!(
        "      profiled run {:.3} ms over {} steps (floor {:.3} ms); by op:",
        profile.total_ms,
        profile.steps.len(),
        profile.floor_ms
    );
    for t in profile.by_op().iter().take(14) {
        println!(
            "        {:24} {:4} steps {:9.3} ms  floor {:8.3} ms",
            t.op, t.count, t.ms, t.floor_ms
        );
    }
    println!("      slowest steps:");
    for st in profile.slowest(10) {
        println!(
            "        {:9.3} ms (floor {:.3}, {:.1} GFLOP, {:.1} MB)  {} {} {:?} [{}]",
            st.ms,
            st.floor_ms,
            st.flops as f64 / 1e9,
            st.bytes as f64 / 1e6,
            st.op,
            st.name,
            st.output_dims,
            st.kernel
        );
    }
    if !finite {
        bail!("{model}: non-finite output values");
    }
    drop(ctx);
    Ok(json!({
        "model": model,
        "file": path.to_string_lossy(),
        "precision": precision.name(),
        "batch": batch,
        "profile_max_batch": max_batch,
        "fusions": format!("{:?}", b.fusions),
        "opt_level": b.opt_level,
        "workspace_limit": b.workspace,
        "build_s": build_s,
        "build": report,
        "rebuild": rebuild,
        "plan_bytes": plan_bytes,
        "save_s": save_s,
        "load_s": load_s,
        "arena_bytes": arena_bytes,
        "first_enqueue_ms": first_enqueue_ms,
        "compute": stats_json(&c),
        "with_transfer": stats_json(&x),
        "enqueue_host": stats_json(&e),
        "throughput_per_s": batch as f64 / (c.median * 1e-3),
        "cuda_graphs": {
            "captured": graphs_on && captures > 0,
            "compute": stats_json(&gc),
            "enqueue_host": stats_json(&ge),
            "throughput_per_s": batch as f64 / (gc.median * 1e-3),
        },
        "profile": {
            "total_ms": profile.total_ms,
            "floor_ms": profile.floor_ms,
            "peaks": profile.peaks,
            "by_op": profile.by_op(),
            "steps": profile.steps,
        },
    }))
}

fn engine_alloc(device: &Arc<Device>, bytes: usize, stream: &Arc<Stream>) -> Result<DeviceBuffer> {
    Ok(kiln_cuda::DeviceAllocator::new(device).alloc(bytes.max(1), stream)?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Err(e) = Probe::run() {
        println!("no CUDA device ({e}); nothing to benchmark");
        return Ok(());
    }
    let device = Device::open(0)?;
    let precisions: Vec<Precision> = args
        .precision
        .split(',')
        .map(|p| p.trim().parse::<Precision>().map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    let batches: Vec<usize> = args
        .batches
        .split(',')
        .map(|b| b.trim().parse::<usize>().context("--batches"))
        .collect::<Result<_>>()?;
    let max_batch = batches.iter().copied().max().unwrap_or(1);
    let build_args = BuildArgs {
        workspace: args.workspace,
        opt_level: args.opt_level,
        timing_cache: args.timing_cache.clone(),
        fusions: args.fusions,
        kernel_cache: args.kernel_cache.clone(),
    };
    let mut models = args.models.clone();
    if models.is_empty() {
        let zoo = std::env::var_os("KILN_ZOO_DIR").map(PathBuf::from);
        let fixtures = std::env::var_os("KILN_FIXTURES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"));
        models = match zoo {
            Some(z) => vec![
                z.join("resnet50_legacy.onnx"),
                z.join("bert_base_legacy.onnx"),
            ],
            None => vec![
                fixtures.join("cnn_legacy.onnx"),
                fixtures.join("transformer_legacy.onnx"),
            ],
        };
        models.retain(|m| m.is_file());
    }
    let info = device.info().clone();
    println!("{} (cc {:?})", info.name, info.compute_capability);
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for m in &models {
        for &p in &precisions {
            for &b in &batches {
                match bench_one(&device, m, p, b, max_batch, args.iters, &build_args) {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        println!("FAILED {} {} b{b}: {e:#}", m.display(), p.name());
                        failures.push(json!({
                            "model": m.to_string_lossy(), "precision": p.name(), "batch": b,
                            "error": format!("{e:#}"),
                        }));
                    }
                }
            }
        }
    }
    let report = json!({
        "device": info.name,
        "compute_capability": info.compute_capability,
        "rows": rows,
        "failures": failures,
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{} bench case(s) failed", failures.len())
    }
}
