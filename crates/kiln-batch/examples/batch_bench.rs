//! Throughput and latency of the batching executor on a GPU against offered load.
//!
//! Builds a kiln-engine plan (default: ResNet-50 from `$KILN_ZOO_DIR`, else the repo's
//! `cnn_legacy` fixture) with a batch profile 1..=max_batch, builds one executor to warm the
//! engine up (its instances run every CUDA-graph batch size: specialisation and capture), then
//! measures the closed-loop capacity (many requests outstanding, from several submitting
//! threads), then offers open-loop Poisson arrivals of batch-1 requests at fractions of that
//! capacity for a few seconds each (split over `--generators` threads, each a Poisson process
//! of its share), with a fresh executor per load. For each load: achieved throughput, latency
//! percentiles from acceptance to answer (the executor's metrics), mean batch size, padded
//! rows, rejections. Writes JSON (first argument) for `benches/python/plot_batch.py`.
//!
//! `cargo run -p kiln-batch --release --example batch_bench -- out.json --precision fp16`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use kiln_batch::{DeviceEngine, Executor, Request};
use kiln_core::{HostTensor, OptimizationProfile, Precision, ProfileInput};
use kiln_cuda::Device;
use kiln_engine::{BuildConfig, Builder, Engine};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Where to write the JSON report.
    out: Option<PathBuf>,
    /// The ONNX model (one input with a dynamic batch dim).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "fp16")]
    precision: String,
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    #[arg(long, default_value_t = 2)]
    instances: usize,
    /// Maximum queue delay in microseconds.
    #[arg(long, default_value_t = 2000)]
    delay_us: u64,
    /// Offered loads as fractions of the measured capacity.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.25,0.5,0.7,0.85,0.95,1.1"
    )]
    loads: Vec<f64>,
    /// Seconds per offered load.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// The builder's workspace limit in MiB (default: BuildConfig's).
    #[arg(long)]
    workspace_mib: Option<usize>,
    /// CUDA-graph replay on the executor's contexts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    graphs: bool,
    /// Graph batch sizes (default: the executor's, powers of two and max_batch).
    #[arg(long, value_delimiter = ',')]
    graph_sizes: Vec<usize>,
    /// Threads submitting requests (each request copies the sample image: one thread cannot
    /// make tens of thousands of them per second).
    #[arg(long, default_value_t = 4)]
    generators: usize,
    /// Threads copying one batch into pinned staging (the executor's staging_threads).
    #[arg(long, default_value_t = 4)]
    staging_threads: usize,
}

fn default_model() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_ZOO_DIR") {
        let p = PathBuf::from(dir).join("resnet50_legacy.onnx");
        if p.exists() {
            return p;
        }
    }
    std::env::var_os("KILN_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"))
        .join("cnn_legacy.onnx")
}

struct Setup {
    engine: Arc<dyn kiln_core::Engine>,
    input: String,
    sample: HostTensor,
}

fn executor(s: &Setup, a: &Args) -> Result<Executor> {
    let mut b = Executor::builder(s.engine.clone())
        .max_batch(a.max_batch)
        .max_queue_delay(Duration::from_micros(a.delay_us))
        .instances_per_gpu(a.instances)
        .devices(vec![DeviceEngine::gpu(0, s.engine.clone())])
        .queue_capacity(16384)
        .cuda_graphs(a.graphs)
        .staging_threads(a.staging_threads);
    if !a.graph_sizes.is_empty() {
        b = b.graph_batch_sizes(a.graph_sizes.clone());
    }
    Ok(b.build()?)
}

/// Completed requests per second with `max_batch * instances * 2` requests always in flight,
/// kept there by `generators` threads.
fn capacity(s: &Setup, a: &Args, seconds: f64) -> Result<f64> {
    let exec = executor(s, a)?;
    let threads = a.generators.max(1);
    let outstanding = (a.max_batch * a.instances * 2).div_ceil(threads);
    let start = Instant::now();
    let done = std::thread::scope(|sc| -> Result<u64> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let exec = &exec;
                sc.spawn(move || -> Result<u64> {
                    let mut q = std::collections::VecDeque::new();
                    let mut done = 0u64;
                    while start.elapsed().as_secs_f64() < seconds {
                        while q.len() < outstanding {
                            q.push_back(exec.submit(Request::new(vec![s.sample.clone()])));
                        }
                        if let Some(f) = q.pop_front() {
                            f.wait().map_err(|e| anyhow::anyhow!("{e}"))?;
                            done += 1;
                        }
                    }
                    for f in q {
                        f.wait().map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut done = 0;
        for h in handles {
            done += h
                .join()
                .map_err(|_| anyhow::anyhow!("submitter panicked"))??;
        }
        Ok(done)
    })?;
    let t = start.elapsed().as_secs_f64();
    exec.shutdown();
    Ok(done as f64 / t)
}

/// Open-loop Poisson arrivals at `rate` requests/s for `seconds`.
fn offered(s: &Setup, a: &Args, rate: f64) -> Result<serde_json::Value> {
    let exec = executor(s, a)?;
    let (tx, rx) = mpsc::channel::<kiln_batch::ResponseFuture>();
    let waiter = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0u64, 0u64);
        for f in rx {
            match f.wait() {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        (ok, failed, Instant::now())
    });
    let threads = a.generators.max(1);
    let start = Instant::now();
    let (submitted, rejected) = std::thread::scope(|sc| -> Result<(u64, u64)> {
        let handles: Vec<_> = (0..threads)
            .map(|g| {
                let (exec, tx) = (&exec, tx.clone());
                let share = rate / threads as f64;
                sc.spawn(move || -> Result<(u64, u64)> {
                    let mut rng = fastrand::Rng::with_seed(7 + g as u64);
                    let mut next = -(1.0 - rng.f64()).ln() / share;
                    let (mut submitted, mut rejected) = (0u64, 0u64);
                    while next < a.seconds {
                        let now = start.elapsed().as_secs_f64();
                        if now < next {
                            let wait = next - now;
                            if wait > 200e-6 {
                                std::thread::sleep(Duration::from_secs_f64(wait - 100e-6));
                            }
                            continue;
                        }
                        match exec.try_submit(Request::new(vec![s.sample.clone()])) {
                            Ok(f) => {
                                submitted += 1;
                                tx.send(f).context("waiter gone")?;
                            }
                            Err(_) => rejected += 1,
                        }
                        // Exponential inter-arrival times.
                        next += -(1.0 - rng.f64()).ln() / share;
                    }
                    Ok((submitted, rejected))
                })
            })
            .collect();
        let (mut s, mut r) = (0, 0);
        for h in handles {
            let (a, b) = h
                .join()
                .map_err(|_| anyhow::anyhow!("generator panicked"))??;
            s += a;
            r += b;
        }
        Ok((s, r))
    })?;
    drop(tx);
    let (ok, failed, end) = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiter panicked"))?;
    let m = exec.metrics();
    let report = exec.shutdown();
    let elapsed = end.duration_since(start).as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let v = json!({
        "offered_per_s": rate,
        "achieved_per_s": ok as f64 / elapsed,
        "submitted": submitted,
        "completed": ok,
        "failed": failed,
        "rejected": rejected,
        "mean_batch": m.mean_batch_size(),
        "padded_rows": m.padded_rows,
        "batches": m.batches,
        "latency_ms": {"p50": ms(m.latency.p50), "p90": ms(m.latency.p90),
                       "p99": ms(m.latency.p99), "max": ms(m.latency.max)},
        "queue_ms_p99": ms(m.queue_time.p99),
        "compute_ms_p50": ms(m.compute_time.p50),
        "lost": report.lost,
    });
    println!(
        "offered {:8.0}/s  achieved {:8.0}/s  p50 {:7.2} ms  p99 {:7.2} ms  mean batch {:5.1}  rejected {}",
        rate,
        ok as f64 / elapsed,
        ms(m.latency.p50),
        ms(m.latency.p99),
        m.mean_batch_size(),
        rejected
    );
    Ok(v)
}

fn main() -> Result<()> {
    let a = Args::parse();
    if let Err(e) = kiln_cuda::Probe::run() {
        println!("no CUDA device ({e}); nothing to benchmark");
        return Ok(());
    }
    let precision: Precision = a.precision.parse()?;
    let device = Device::open(0)?;
    let model = a.model.clone().unwrap_or_else(default_model);
    let graph = kiln_onnx::load(&model).with_context(|| model.display().to_string())?;
    if graph.inputs.len() != 1 {
        bail!("{}: one input expected", model.display());
    }
    let vi = &graph.inputs[0];
    let rest: Vec<usize> = vi.shape.as_ref().context("input rank")?.dims()[1..]
        .iter()
        .map(|d| d.known().context("a non-batch dim is dynamic"))
        .collect::<Result<_>>()?;
    let at = |b: usize| [vec![b], rest.clone()].concat();
    let config = BuildConfig {
        precision,
        profiles: vec![OptimizationProfile {
            inputs: vec![ProfileInput {
                name: vi.name.clone(),
                min: at(1),
                opt: at(a.max_batch),
                max: at(a.max_batch),
            }],
        }],
        workspace_limit: a
            .workspace_mib
            .map_or(BuildConfig::default().workspace_limit, |m| m << 20),
        ..BuildConfig::default()
    };
    let t = Instant::now();
    let plan = Builder::new(&device).build(&graph, &config)?;
    let engine: Arc<dyn kiln_core::Engine> = Engine::from_plan(&device, &plan)?;
    println!(
        "{}: {} built in {:.1} s on {}; max batch {}, {} instances, delay {} us",
        model.display(),
        precision.name(),
        t.elapsed().as_secs_f64(),
        device.info().name,
        a.max_batch,
        a.instances,
        a.delay_us
    );
    let mut rng = fastrand::Rng::with_seed(1);
    let n: usize = rest.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let setup = Setup {
        engine,
        input: vi.name.clone(),
        sample: HostTensor::from_slice(vi.name.clone(), &at(1), &values)?,
    };
    // The first executor's instances run every graph batch size: each size's first run
    // specialises a program (shared by every later context of the engine); captures are per
    // context, so every executor below warms its own instances up at build (timed here too).
    let t = Instant::now();
    let warm = executor(&setup, &a)?;
    let first_build_s = t.elapsed().as_secs_f64();
    warm.shutdown();
    let t = Instant::now();
    executor(&setup, &a)?.shutdown();
    let warm_build_s = t.elapsed().as_secs_f64();
    println!(
        "executor build: first {first_build_s:.2} s (specialisation + warm-up), later \
         {warm_build_s:.2} s (warm-up and capture only); graphs {}",
        a.graphs
    );
    capacity(&setup, &a, 1.0)?;
    let cap = capacity(&setup, &a, a.seconds)?;
    println!(
        "closed-loop capacity: {cap:.0} requests/s (input '{}')",
        setup.input
    );
    let mut points = Vec::new();
    for &f in &a.loads {
        points.push(offered(&setup, &a, cap * f)?);
    }
    let report = json!({
        "model": model.file_stem().map(|s| s.to_string_lossy().to_string()),
        "device": device.info().name,
        "precision": precision.name(),
        "max_batch": a.max_batch,
        "instances": a.instances,
        "max_queue_delay_us": a.delay_us,
        "capacity_per_s": cap,
        "cuda_graphs": a.graphs,
        "graph_sizes": a.graph_sizes,
        "workspace_mib": a.workspace_mib,
        "generators": a.generators,
        "staging_threads": a.staging_threads,
        "executor_build_s": {"first": first_build_s, "warm": warm_build_s},
        "points": points,
    });
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
