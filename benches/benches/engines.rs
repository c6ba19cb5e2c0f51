//! `cargo bench -p kiln-benches --bench engines`: kiln-engine on the repo's fixtures (and the
//! zoo's ResNet-50 and BERT-base when `$KILN_ZOO_DIR` is set), one criterion group per
//! model × precision × batch (`cnn_legacy/fp16/b32`), each engine built for exactly that batch:
//!
//! - `compute_only`: inputs and outputs stay on the device; each iteration queues one run. Timed
//!   by [`GpuTime`]: CUDA events recorded on the context's stream around the queued runs, so the
//!   value is GPU time (with items/s of GPU time as the throughput).
//! - `transfer_inclusive`: each iteration copies the pinned host inputs in, runs, and copies the
//!   outputs back to pinned memory; the same events around all of it.
//! - `compute_only_graph`: `compute_only` with the run replayed as one CUDA graph (captured
//!   before timing; the replayed outputs are checked too).
//! - `throughput_<N>streams`: N contexts over the same engine, each on its own stream, all
//!   queued before any is waited for (overlapped); host wall time, items/s over all streams.
//!
//! `$KILN_BENCH_BATCHES` (default `1,32`), `$KILN_BENCH_PRECISIONS` (default `fp32,fp16`) and
//! `$KILN_BENCH_STREAMS` (default 4) change the cases. Before timing, each case runs once and
//! its f32 outputs must be finite.
//!
//! Without a CUDA device every group prints `skipped: no CUDA device (<reason>)` and the bench
//! exits 0. A case that fails to build or run is printed as FAILED and makes the bench exit 1
//! at the end. It ran on an H200 on 2026-11-26 (docs/perf/2026-11-26-cli-h200-h100.md).

#[path = "engines/gpu.rs"]
mod gpu;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use criterion::measurement::WallTime;
use criterion::{Criterion, Throughput};
use kiln_benches::gpu_time::{GpuClock, GpuTime};
use kiln_benches::setup::{self, Case};
use kiln_cuda::{Device, Probe};

const KINDS: [&str; 4] = [
    "compute_only",
    "transfer_inclusive",
    "compute_only_graph",
    "throughput",
];

fn must(r: Result<()>, what: &str) {
    if let Err(e) = r {
        panic!("engines bench: {what} failed while timing: {e:#}");
    }
}

fn run_case(
    device: &Arc<Device>,
    case: &Case,
    gpu_c: &mut Criterion<GpuTime>,
    wall_c: &mut Criterion<WallTime>,
    clock: &GpuClock,
    streams: usize,
) -> Result<()> {
    let t = Instant::now();
    let engine = gpu::build(device, case)?;
    println!(
        "{}: engine built in {:.2} s",
        case.name(),
        t.elapsed().as_secs_f64()
    );
    let items = case.batch as u64;

    let mut one = gpu::Bound::new(&engine, case.batch, 1)?;
    one.check(&engine).context("the first run")?;
    clock.set_stream(&one.stream);
    let mut group = gpu_c.benchmark_group(case.name());
    group.throughput(Throughput::Elements(items));
    group.bench_function("compute_only", |b| {
        b.iter(|| must(one.enqueue(), "enqueue"));
    });
    group.bench_function("transfer_inclusive", |b| {
        b.iter(|| must(one.enqueue_with_transfers(), "copies + enqueue"));
    });
    // The same run replayed as one CUDA graph (what `kiln bench --cuda-graph` and kiln-batch
    // do): the host no longer issues every step.
    one.use_cuda_graphs(&engine)
        .context("switching to CUDA graphs")?;
    group.bench_function("compute_only_graph", |b| {
        b.iter(|| must(one.enqueue(), "graph replay"));
    });
    group.finish();
    drop(one);

    let mut many = (0..streams)
        .map(|i| gpu::Bound::new(&engine, case.batch, 100 + i as u64))
        .collect::<Result<Vec<_>>>()?;
    let mut group = wall_c.benchmark_group(case.name());
    group.throughput(Throughput::Elements(items * streams as u64));
    group.bench_function(format!("throughput_{streams}streams"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                for m in many.iter_mut() {
                    must(m.enqueue(), "enqueue");
                }
            }
            for m in &many {
                must(m.stream.synchronize().map_err(Into::into), "stream sync");
            }
            t.elapsed()
        });
    });
    group.finish();
    Ok(())
}

fn main() {
    let cases = match setup::cases_from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("engines bench: {e}");
            std::process::exit(1);
        }
    };
    let device = match Probe::run().and_then(|_| Device::open(0)) {
        Ok(d) => d,
        Err(e) => {
            // The whole reason once, then a short form per group.
            let full = e.to_string();
            println!("engines bench: no CUDA device: {full}");
            let short = full.split(" (searched").next().unwrap_or(&full);
            for case in &cases {
                for kind in KINDS {
                    println!("{}/{kind}: skipped: no CUDA device ({short})", case.name());
                }
            }
            return;
        }
    };
    println!("engines bench on {}", device.info().name);
    let streams = std::env::var("KILN_BENCH_STREAMS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4);
    let (gpu_time, clock) = GpuTime::new();
    let mut gpu_c = Criterion::default()
        .with_measurement(gpu_time)
        .configure_from_args();
    let mut wall_c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut failed = Vec::new();
    for case in &cases {
        if let Err(e) = run_case(&device, case, &mut gpu_c, &mut wall_c, &clock, streams) {
            println!("FAILED {}: {e:#}", case.name());
            failed.push(case.name());
        }
    }
    gpu_c.final_summary();
    wall_c.final_summary();
    if !failed.is_empty() {
        eprintln!(
            "engines bench: {} case(s) failed: {}",
            failed.len(),
            failed.join(", ")
        );
        std::process::exit(1);
    }
}
