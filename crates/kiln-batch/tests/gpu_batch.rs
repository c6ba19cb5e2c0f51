//! GPU tests of the batching executor over kiln-engine (`harness = false`): the pipeline
//! (pinned staging, H2D on the copy stream, enqueue on the compute stream, D2H back) answers
//! every request of many concurrent callers with the rows that request alone gives on the CPU
//! reference, at fp32 and fp16, with several instances on one GPU; the counts add up after
//! shutdown. With CUDA graphs on (the default) batches run padded to the graph batch sizes
//! (default and custom sets), and padding must happen and never leak into answers; with
//! graphs off nothing is padded. `two_gpus_*` runs one engine per GPU (instances on both must
//! answer); it is reported as skipped on a machine with one GPU.
//!
//! Without a CUDA device every test is reported as skipped; `KILN_GPU_REQUIRED=1` makes a
//! missing device a failure. `KILN_FIXTURES_DIR` points at the fixtures when the binary runs
//! away from its checkout.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use kiln_batch::{DeviceEngine, Executor, Request};
use kiln_core::{Engine as _, HostTensor, OptimizationProfile, Precision, ProfileInput};
use kiln_cuda::Device;
use kiln_engine::{BuildConfig, Builder, Engine};

struct Ctx {
    device: Arc<Device>,
    fixtures: PathBuf,
}

type TestFn = fn(&Ctx) -> Result<()>;

const TESTS: &[(&str, TestFn)] = &[
    ("mlp_fp32_two_instances", |c| {
        run_case(c, "mlp_legacy", Precision::Fp32, 2, Graphs::Default, 1e-5)
    }),
    ("cnn_fp16_three_instances", |c| {
        run_case(c, "cnn_legacy", Precision::Fp16, 3, Graphs::Default, 1e-2)
    }),
    ("cnn_fp32_no_graphs", |c| {
        run_case(c, "cnn_legacy", Precision::Fp32, 2, Graphs::Off, 1e-5)
    }),
    ("mlp_fp16_custom_graph_sizes", |c| {
        run_case(
            c,
            "mlp_legacy",
            Precision::Fp16,
            2,
            Graphs::Sizes(&[3, 10]),
            1e-2,
        )
    }),
    ("two_gpus_cnn_fp16", two_gpus),
    ("cnn_fp16_slo_5ms", |c| {
        run_case(
            c,
            "cnn_legacy",
            Precision::Fp16,
            2,
            Graphs::Slo(Duration::from_millis(5)),
            1e-2,
        )
    }),
];

fn two_gpus(c: &Ctx) -> Result<()> {
    let n = kiln_cuda::device_count()?;
    if n < 2 {
        return Err(
            kiln_cuda::gpu_test::Skipped(format!("needs 2 GPUs, this machine has {n}")).into(),
        );
    }
    run_on(
        c,
        "cnn_legacy",
        Precision::Fp16,
        2,
        Graphs::Default,
        1e-2,
        2,
    )
}

/// How the executor is set up for CUDA graphs.
#[derive(Clone, Copy)]
enum Graphs {
    /// On, default graph batch sizes.
    Default,
    /// On, these graph batch sizes (max_batch is added).
    Sizes(&'static [usize]),
    Off,
    /// On, default sizes, and SLO mode with this latency target (the plan is measured
    /// through the GPU pipeline at build and must meet the target).
    Slo(Duration),
}

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(
        TESTS,
        || setup().map_err(|reason| format!("no CUDA device: {reason:#}")),
        |_| {},
    )
}

fn setup() -> Result<Ctx> {
    let device = Device::open(0)?;
    println!("device: {}", device.info().name);
    let fixtures = std::env::var_os("KILN_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"));
    Ok(Ctx { device, fixtures })
}

/// The fixture's single input with a dynamic batch dim: `(name, dims after the batch)`.
fn batch_input(graph: &kiln_onnx::Graph) -> Result<(String, Vec<usize>)> {
    ensure!(graph.inputs.len() == 1, "one input expected");
    let vi = &graph.inputs[0];
    let dims = vi.shape.as_ref().context("input rank")?.dims();
    let rest = dims[1..]
        .iter()
        .map(|d| d.known().context("a non-batch dim is dynamic"))
        .collect::<Result<Vec<_>>>()?;
    Ok((vi.name.clone(), rest))
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        let d = f64::from(*g) - f64::from(*w);
        num += d * d;
        den += f64::from(*w) * f64::from(*w);
    }
    if got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    (num / den.max(1e-30)).sqrt()
}

fn run_case(
    ctx: &Ctx,
    fixture: &str,
    precision: Precision,
    instances: usize,
    graphs: Graphs,
    tol: f64,
) -> Result<()> {
    run_on(ctx, fixture, precision, instances, graphs, tol, 1)
}

/// [`run_case`] over the first `gpus` GPUs, an engine built on each; with several GPUs every
/// GPU's instances must have answered requests.
fn run_on(
    ctx: &Ctx,
    fixture: &str,
    precision: Precision,
    instances: usize,
    graphs: Graphs,
    tol: f64,
    gpus: usize,
) -> Result<()> {
    const MAX_BATCH: usize = 16;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 150;
    let path = ctx.fixtures.join(format!("{fixture}.onnx"));
    let graph = kiln_onnx::load(&path).with_context(|| path.display().to_string())?;
    let (input, rest) = batch_input(&graph)?;
    let at = |b: usize| [vec![b], rest.clone()].concat();
    let config = BuildConfig {
        precision,
        profiles: vec![OptimizationProfile {
            inputs: vec![ProfileInput {
                name: input.clone(),
                min: at(1),
                opt: at(8),
                max: at(MAX_BATCH),
            }],
        }],
        ..BuildConfig::default()
    };
    let mut devices = Vec::new();
    for ordinal in 0..gpus {
        let device = if ordinal == 0 {
            ctx.device.clone()
        } else {
            Device::open(ordinal)?
        };
        let plan = Builder::new(&device).build(&graph, &config)?;
        let engine: Arc<dyn kiln_core::Engine> = Engine::from_plan(&device, &plan)?;
        devices.push(DeviceEngine::gpu(ordinal, engine));
    }
    let reference = Arc::new(kiln_reference::CpuEngine::new(graph.clone())?);
    let mut builder = Executor::builder(devices[0].engine.clone())
        .max_batch(MAX_BATCH)
        .max_queue_delay(Duration::from_micros(500))
        .instances_per_gpu(instances)
        .devices(devices)
        .queue_capacity(4096);
    builder = match graphs {
        Graphs::Default => builder,
        Graphs::Sizes(s) => builder.graph_batch_sizes(s),
        Graphs::Off => builder.cuda_graphs(false),
        Graphs::Slo(target) => builder.slo(kiln_batch::SloConfig::new(target)),
    };
    let started = std::time::Instant::now();
    let exec = builder.build()?;
    println!(
        "    executor built (instances warmed up) in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    if let Graphs::Slo(target) = graphs {
        let plan = exec.slo_plan().context("SLO mode gave no plan")?;
        println!(
            "    SLO plan for {target:?}: batch {}, delay {:?}, predicted worst {:?}, \
             {:.0} rows/s; measured {:?}",
            plan.batch_size,
            plan.queue_delay,
            plan.predicted_worst_latency,
            plan.predicted_throughput,
            plan.measured
        );
        ensure!(
            plan.meets_target && plan.predicted_worst_latency <= target,
            "the SLO plan misses {target:?}: {plan:?}"
        );
        ensure!(
            plan.measured.len() >= 2 && plan.measured.iter().all(|(_, c)| !c.is_zero()),
            "the plan was not measured per batch size: {plan:?}"
        );
    }
    let exec = Arc::new(exec);
    let row: usize = rest.iter().product();
    let (worst, seen) = std::thread::scope(|s| -> Result<(f64, BTreeSet<usize>)> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let exec = exec.clone();
                let reference = reference.clone();
                let input = input.clone();
                let at = &at;
                s.spawn(move || -> Result<(f64, BTreeSet<usize>)> {
                    let mut rng = fastrand::Rng::with_seed(0x6b69_6c6e + t as u64);
                    let mut cpu = reference.clone().create_context()?;
                    let mut worst = 0f64;
                    let mut seen = BTreeSet::new();
                    // Submit in waves of 10 so requests from this thread share batches too.
                    for wave in 0..PER_THREAD / 10 {
                        let mut pending = Vec::new();
                        for _ in 0..10 {
                            let rows = rng.usize(1..=4);
                            let values: Vec<f32> = (0..rows * row)
                                .map(|_| rng.f32() * 2.0 - 1.0 + 0.01)
                                .collect();
                            let x = HostTensor::from_slice(input.clone(), &at(rows), &values)?;
                            pending.push((x.clone(), exec.submit(Request::new(vec![x]))));
                        }
                        for (x, fut) in pending {
                            let got = fut
                                .wait()
                                .map_err(|e| anyhow::anyhow!("wave {wave}: {e}"))?;
                            seen.insert(got.metrics.instance);
                            let want = cpu.execute_host(&[x])?;
                            ensure!(got.outputs.len() == want.len(), "output count");
                            for (g, w) in got.outputs.iter().zip(&want) {
                                ensure!(g.dims == w.dims, "dims {:?} vs {:?}", g.dims, w.dims);
                                let gv = g.as_slice::<f32>().context("f32 output")?;
                                let wv = w.as_slice::<f32>().context("f32 output")?;
                                worst = worst.max(rel_l2(&gv, &wv));
                            }
                        }
                    }
                    Ok((worst, seen))
                })
            })
            .collect();
        let (mut worst, mut seen) = (0f64, BTreeSet::new());
        for h in handles {
            let (w, s) = h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
            worst = worst.max(w);
            seen.extend(s);
        }
        Ok((worst, seen))
    })?;
    // Instances are numbered device by device: GPU d runs d*instances..(d+1)*instances.
    for d in 0..gpus {
        let ids = d * instances..(d + 1) * instances;
        ensure!(
            seen.iter().any(|i| ids.contains(i)),
            "no request was answered by GPU {d}'s instances ({ids:?}); answered by {seen:?}"
        );
    }
    let report = exec.shutdown();
    let m = &report.metrics;
    println!(
        "    {fixture} {} on {gpus} GPU(s), instances {seen:?} answered: {} requests, {} batches (mean {:.2} rows), worst rel-L2 {worst:.2e}, \
         p99 latency {:?}, padded rows {}",
        precision.name(),
        report.completed,
        m.batches,
        m.mean_batch_size(),
        m.latency.p99,
        m.padded_rows
    );
    match graphs {
        Graphs::Off => ensure!(m.padded_rows == 0, "{} rows padded", m.padded_rows),
        // Random batches of 1..=40 rows capped at 16 fill few sizes exactly.
        _ => ensure!(m.padded_rows > 0, "graphs on, yet no batch was padded"),
    }
    let n = (THREADS * (PER_THREAD / 10) * 10) as u64;
    ensure!(
        report.accepted == n && report.completed == n && report.lost == 0,
        "accounting: {report:?}"
    );
    ensure!(
        report.failed == 0 && report.timed_out == 0 && report.cancelled == 0,
        "{report:?}"
    );
    ensure!(
        m.batches < n,
        "no request shared a batch ({} batches)",
        m.batches
    );
    ensure!(worst <= tol, "worst rel-L2 {worst:.3e} above {tol:.0e}");
    Ok(())
}
