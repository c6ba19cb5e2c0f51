//! Transfer, timing, graph and allocator benchmarks of kiln-cuda.
//!
//! `cargo run -p kiln-cuda --release --example cuda_bench -- [out.json]`
//!
//! Every GPU time is measured with CUDA events on the stream (median after warm-up), never with
//! host clocks around unsynchronised work; host-side costs are labelled as such. Without a CUDA
//! device it says so and exits 0.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use kiln_cuda::{
    AxpbKernel, Device, DeviceAllocator, DeviceBuffer, Event, PinnedBuffer, Probe, Stream, copy,
    graph,
};
use serde_json::{Value, json};

const BIG: usize = 256 << 20;
const WARMUP: usize = 3;
const ITERS: usize = 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median GPU milliseconds of `f`, bracketed by events on `s`.
fn time_ms(
    dev: &Arc<Device>,
    s: &Stream,
    iters: usize,
    mut f: impl FnMut() -> kiln_cuda::Result<()>,
) -> Result<f64> {
    let (start, end) = (Event::new(dev, true)?, Event::new(dev, true)?);
    for _ in 0..WARMUP {
        f()?;
    }
    s.synchronize()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        start.record(s)?;
        f()?;
        end.record(s)?;
        times.push(start.elapsed_ms(&end)? as f64);
    }
    Ok(median(times))
}

fn gbps(bytes: usize, ms: f64) -> f64 {
    bytes as f64 / (ms * 1e-3) / 1e9
}

struct Row {
    name: &'static str,
    value: f64,
    unit: &'static str,
    note: String,
}

fn main() -> Result<()> {
    let out_path = std::env::args().nth(1);
    let probe = match Probe::run() {
        Ok(p) => p,
        Err(e) => {
            println!("no CUDA device ({e}); nothing to benchmark");
            return Ok(());
        }
    };
    let dev = Device::open(0)?;
    let info = dev.info().clone();
    println!(
        "{} (cc {:?}), driver CUDA {:?}",
        info.name, info.compute_capability, probe.driver_version
    );
    let s = Stream::new(&dev)?;
    let alloc = DeviceAllocator::new(&dev);
    let kernel = AxpbKernel::compile(&dev).context("compiling the bench kernel")?;
    let mut rows = Vec::new();

    // Fresh random bytes: never time copies of zeros.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut host = PinnedBuffer::new(&dev, BIG)?;
    rng.fill(host.write()?);
    let mut back = PinnedBuffer::new(&dev, BIG)?;
    let mut d = alloc.alloc(BIG, &s)?;
    let mut d2 = alloc.alloc(BIG, &s)?;

    let ms = time_ms(&dev, &s, ITERS, || {
        copy::htod_pinned(&s, &mut host, 0, &mut d, 0, BIG)
    })?;
    rows.push(Row {
        name: "h2d_pinned_256MiB",
        value: gbps(BIG, ms),
        unit: "GB/s",
        note: format!("{ms:.3} ms"),
    });
    let ms = time_ms(&dev, &s, ITERS, || {
        copy::dtoh_pinned(&s, &d, 0, &mut back, 0, BIG)
    })?;
    rows.push(Row {
        name: "d2h_pinned_256MiB",
        value: gbps(BIG, ms),
        unit: "GB/s",
        note: format!("{ms:.3} ms"),
    });
    anyhow::ensure!(back.read()? == host.read()?, "pinned round trip differs");

    let mut pageable = vec![0u8; BIG];
    rng.fill(&mut pageable);
    let ms = time_ms(&dev, &s, ITERS, || copy::htod(&s, &pageable, &mut d))?;
    rows.push(Row {
        name: "h2d_pageable_256MiB",
        value: gbps(BIG, ms),
        unit: "GB/s",
        note: format!("{ms:.3} ms"),
    });
    let mut pageable_back = vec![0u8; BIG];
    let ms = time_ms(&dev, &s, ITERS, || copy::dtoh(&s, &d, &mut pageable_back))?;
    rows.push(Row {
        name: "d2h_pageable_256MiB",
        value: gbps(BIG, ms),
        unit: "GB/s",
        note: format!("{ms:.3} ms"),
    });
    anyhow::ensure!(pageable_back == pageable, "pageable round trip differs");

    let ms = time_ms(&dev, &s, ITERS, || copy::dtod(&s, &d, 0, &mut d2, 0, BIG))?;
    rows.push(Row {
        name: "d2d_256MiB",
        value: gbps(BIG, ms),
        unit: "GB/s",
        note: format!("{ms:.3} ms; bytes copied (memory traffic is twice that)"),
    });
    drop((d, d2, host, back));

    // Event overhead: GPU time between two events with nothing between, and host cost of a record.
    let empty = time_ms(&dev, &s, 200, || Ok(()))?;
    let e = Event::new(&dev, true)?;
    let t = Instant::now();
    for _ in 0..1000 {
        e.record(&s)?;
    }
    let host_us = t.elapsed().as_secs_f64() * 1e6 / 1000.0;
    s.synchronize()?;
    rows.push(Row {
        name: "event_pair_gpu_gap",
        value: empty * 1e3,
        unit: "us",
        note: "median of 200 empty event pairs".into(),
    });
    rows.push(Row {
        name: "event_record_host",
        value: host_us,
        unit: "us",
        note: "host cost of cuEventRecord".into(),
    });

    // 100 small kernels: direct launches vs one graph replay.
    let n = 1024;
    let seed: Vec<f32> = (0..n).map(|_| 0.5 + rng.f32()).collect();
    let mut bufs = [alloc.alloc(n * 4, &s)?, alloc.alloc(n * 4, &s)?];
    copy::htod(&s, &seed, &mut bufs[0])?;
    let hundred = |s: &Stream, bufs: &mut [DeviceBuffer; 2]| -> kiln_cuda::Result<()> {
        for i in 0..100 {
            let [p, q] = &mut *bufs;
            let (x, y) = if i % 2 == 0 { (&*p, q) } else { (&*q, p) };
            kernel.launch(s, x, y, 1.0001, 0.0001, n)?;
        }
        Ok(())
    };
    let direct = time_ms(&dev, &s, ITERS, || hundred(&s, &mut bufs))?;
    let mut g = graph::capture(&s, |s| hundred(s, &mut bufs))?.instantiate()?;
    g.upload(&s)?;
    let replay = time_ms(&dev, &s, ITERS, || g.launch(&s))?;
    rows.push(Row {
        name: "kernels_direct",
        value: direct * 1e3 / 100.0,
        unit: "us/kernel",
        note: "100 launches of a 1024-element axpb".into(),
    });
    rows.push(Row {
        name: "kernels_graph",
        value: replay * 1e3 / 100.0,
        unit: "us/kernel",
        note: format!("same 100 as one graph ({:.2}x)", direct / replay),
    });
    drop(bufs);

    // Allocator in a build-like workload: many allocs/frees of varied tensor sizes, two streams.
    let pool = DeviceAllocator::new(&dev);
    let s2 = Stream::new(&dev)?;
    let sizes = [
        256usize,
        4096,
        65_536,
        300_000,
        1 << 20,
        3 << 20,
        12 << 20,
        48 << 20,
    ];
    let mut live: Vec<DeviceBuffer> = Vec::new();
    let t = Instant::now();
    let ops = 20_000;
    for i in 0..ops {
        let size = sizes[rng.usize(..sizes.len())] + rng.usize(..512);
        let stream = if i % 4 == 0 { &s2 } else { &s };
        live.push(pool.alloc(size, stream)?);
        if live.len() > 16 {
            live.swap_remove(rng.usize(..live.len()));
        }
    }
    let per_op_us = t.elapsed().as_secs_f64() * 1e6 / ops as f64;
    drop(live);
    let st = pool.stats();
    rows.push(Row {
        name: "allocator_hit_rate",
        value: st.hit_rate() * 100.0,
        unit: "%",
        note: format!(
            "{ops} allocs, {per_op_us:.2} us/alloc host, peak reserved {} MiB, {} cross-stream reuses",
            st.peak_reserved >> 20,
            st.cross_stream_reuses
        ),
    });
    pool.release_cached()?;

    println!("{:<22} {:>12} {:<10} note", "benchmark", "value", "unit");
    for r in &rows {
        println!("{:<22} {:>12.3} {:<10} {}", r.name, r.value, r.unit, r.note);
    }
    if let Some(path) = out_path {
        let results: Vec<Value> = rows
            .iter()
            .map(|r| json!({"name": r.name, "value": r.value, "unit": r.unit, "note": r.note}))
            .collect();
        let doc = json!({
            "device": info,
            "probe": probe,
            "kernel_built_as": kernel.built_as,
            "iterations": ITERS,
            "warmup": WARMUP,
            "results": results,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    Ok(())
}
