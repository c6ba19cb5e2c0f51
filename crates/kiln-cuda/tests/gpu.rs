//! GPU tests of kiln-cuda (`harness = false`): a small runner of named tests.
//!
//! Without a CUDA device every test is reported as skipped and the run succeeds; set
//! `KILN_GPU_REQUIRED=1` to make a missing device a failure instead (use it on GPU machines).
//! Arguments: an optional substring filter on test names (flags such as `--nocapture` are
//! ignored).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use kiln_cuda::{
    AxpbKernel, CudaError, Device, DeviceAllocator, DeviceArena, DeviceMemory, Event,
    ForeignStream, Overlap, PinnedBuffer, PinnedPool, Priority, Probe, Stream, StreamPool, copy,
    graph, list_devices,
};

struct Ctx {
    device: Arc<Device>,
    alloc: DeviceAllocator,
    stream: Arc<Stream>,
    kernel: AxpbKernel,
}

type TestFn = fn(&Ctx) -> Result<()>;

const TESTS: &[(&str, TestFn)] = &[
    ("device_list", device_list),
    ("h2d_d2h_round_trip", h2d_d2h_round_trip),
    ("d2d_copy", d2d_copy),
    ("event_timing", event_timing),
    ("stream_pool_priorities", stream_pool_priorities),
    (
        "allocator_stream_ordered_reuse",
        allocator_stream_ordered_reuse,
    ),
    ("oom_recovery", oom_recovery),
    ("arena_regions", arena_regions),
    ("pinned_pool_reuse", pinned_pool_reuse),
    ("nvrtc_kernel_matches_cpu", nvrtc_kernel_matches_cpu),
    ("graph_capture_replay_update", graph_capture_replay_update),
    ("overlap_matches_serial", overlap_matches_serial),
    ("foreign_stream_ordering", foreign_stream_ordering),
];

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(
        TESTS,
        || {
            setup().map_err(|reason| match reason.downcast_ref::<CudaError>() {
                Some(CudaError::LibraryMissing { library, .. }) => format!("{library} not found"),
                _ => format!("{reason:#}"),
            })
        },
        |_| {},
    )
}

fn setup() -> Result<Ctx> {
    let probe = Probe::run()?;
    println!(
        "probe: driver CUDA {}.{} (bindings {}.{}), {} device(s), graph update {}",
        probe.driver_version.0,
        probe.driver_version.1,
        probe.built_for.0,
        probe.built_for.1,
        probe.device_count,
        probe.graph_update
    );
    for lib in &probe.found {
        println!("  found {:?}: {} {:?}", lib.library, lib.file, lib.version);
    }
    for (lib, why) in &probe.missing {
        println!("  missing {lib:?}: {why}");
    }
    let device = Device::open(0)?;
    let stream = Stream::new(&device)?;
    let kernel = AxpbKernel::compile(&device).context("compiling the test kernel")?;
    println!("  {:?}, kernel built as {}", device.info(), kernel.built_as);
    Ok(Ctx {
        alloc: DeviceAllocator::new(&device),
        device,
        stream,
        kernel,
    })
}

/// Random, non-zero, finite floats in [0.5, 1.5) with random signs.
fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| {
            let v = 0.5 + rng.f32();
            if rng.bool() { v } else { -v }
        })
        .collect()
}

fn check_equal(what: &str, got: &[f32], want: &[f32]) -> Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: {} vs {} elements",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        ensure!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
    Ok(())
}

fn device_list(ctx: &Ctx) -> Result<()> {
    let devices = list_devices()?;
    ensure!(!devices.is_empty(), "no devices listed");
    for d in &devices {
        println!("  {d:?}");
        ensure!(!d.name.is_empty(), "empty name");
        ensure!(d.compute_capability.0 >= 5, "odd compute capability");
        ensure!(d.total_memory > 0 && d.sm_count > 0 && d.l2_cache_bytes > 0);
    }
    let (free, total) = ctx.device.memory_info()?;
    ensure!(free > 0 && free <= total, "memory info {free}/{total}");
    match Device::open(devices.len()) {
        Err(CudaError::DeviceIndex { .. }) => Ok(()),
        other => bail!("opening a device past the end gave {other:?}"),
    }
}

fn h2d_d2h_round_trip(ctx: &Ctx) -> Result<()> {
    let n = 1_000_003;
    let data = random_f32(n, 1);
    let bytes = n * 4;
    let mut dev = ctx.alloc.alloc(bytes, &ctx.stream)?;
    dev.fill(0xAB)?;
    // Pinned path.
    let mut src = PinnedBuffer::new(&ctx.device, bytes)?;
    src.write_as::<f32>()?.copy_from_slice(&data);
    let mut dst = PinnedBuffer::new(&ctx.device, bytes)?;
    dst.write()?.fill(0xCD);
    copy::htod_pinned(&ctx.stream, &mut src, 0, &mut dev, 0, bytes)?;
    copy::dtoh_pinned(&ctx.stream, &dev, 0, &mut dst, 0, bytes)?;
    check_equal("pinned round trip", dst.read_as::<f32>()?, &data)?;
    // Pageable path.
    dev.fill(0xAB)?;
    copy::htod(&ctx.stream, &data, &mut dev)?;
    let mut back = vec![f32::from_bits(0x7FC0_DEAD); n];
    copy::dtoh(&ctx.stream, &dev, &mut back)?;
    check_equal("pageable round trip", &back, &data)?;
    // A copy past the end is an error, not a fault.
    ensure!(copy::dtoh(&ctx.stream, &dev, &mut vec![0f32; n + 1]).is_err());
    Ok(())
}

fn d2d_copy(ctx: &Ctx) -> Result<()> {
    let n = 300_000;
    let data = random_f32(n, 2);
    let mut a = ctx.alloc.alloc(n * 4, &ctx.stream)?;
    let mut b = ctx.alloc.alloc(n * 4 + 4096, &ctx.stream)?;
    b.fill(0x5A)?;
    copy::htod(&ctx.stream, &data, &mut a)?;
    copy::dtod(&ctx.stream, &a, 0, &mut b, 4096, n * 4)?;
    let view = b.view(4096, n * 4)?;
    let mut back = vec![0f32; n];
    copy::dtoh(&ctx.stream, &view, &mut back)?;
    check_equal("d2d", &back, &data)
}

fn event_timing(ctx: &Ctx) -> Result<()> {
    let n = 16 << 20;
    let x = ctx.alloc.alloc(n * 4, &ctx.stream)?;
    let mut y = ctx.alloc.alloc(n * 4, &ctx.stream)?;
    let start = Event::new(&ctx.device, true)?;
    let end = Event::new(&ctx.device, true)?;
    start.record(&ctx.stream)?;
    for _ in 0..10 {
        ctx.kernel.launch(&ctx.stream, &x, &mut y, 2.0, 1.0, n)?;
    }
    end.record(&ctx.stream)?;
    let ms = start.elapsed_ms(&end)?;
    println!("  10 axpb launches over 16M floats: {ms:.3} ms");
    ensure!(ms > 0.0, "elapsed {ms} ms");
    ensure!(end.is_done()?, "event not done after elapsed_ms");
    let untimed = Event::new(&ctx.device, false)?;
    untimed.record(&ctx.stream)?;
    ensure!(
        start.elapsed_ms(&untimed).is_err(),
        "timing a non-timing event"
    );
    Ok(())
}

fn stream_pool_priorities(ctx: &Ctx) -> Result<()> {
    let pool = StreamPool::new(&ctx.device, 2)?;
    let hi = pool.get(Priority::High);
    let lo = pool.get(Priority::Low);
    ensure!(
        hi.priority() <= lo.priority(),
        "high priority must be numerically lower"
    );
    ensure!(
        pool.get(Priority::High).id() != hi.id(),
        "round robin over 2 streams"
    );
    // Cross-stream ordering through an event.
    let data = random_f32(4096, 3);
    let mut a = ctx.alloc.alloc(4096 * 4, &hi)?;
    copy::htod(&hi, &data, &mut a)?;
    let mut b = ctx.alloc.alloc(4096 * 4, &lo)?;
    let done = hi.record()?;
    lo.wait(&done)?;
    ctx.kernel.launch(&lo, &a, &mut b, 1.0, 0.0, 4096)?;
    let mut back = vec![0f32; 4096];
    copy::dtoh(&lo, &b, &mut back)?;
    pool.synchronize()?;
    check_equal("cross-stream", &back, &data)
}

fn allocator_stream_ordered_reuse(ctx: &Ctx) -> Result<()> {
    let alloc = DeviceAllocator::new(&ctx.device);
    let s1 = Stream::new(&ctx.device)?;
    let s2 = Stream::new(&ctx.device)?;
    let n = 1 << 20;
    let x = alloc.alloc(n * 4, &s1)?;
    let mut a = alloc.alloc(n * 4, &s1)?;
    let a_ptr = a.device_ptr();
    for _ in 0..20 {
        ctx.kernel.launch(&s1, &x, &mut a, 1.0, 1.0, n)?;
    }
    drop(a); // freed in s1's order while the kernels may still run
    let b = alloc.alloc(n * 4, &s1)?;
    ensure!(b.device_ptr() == a_ptr, "same stream must reuse at once");
    drop(b);
    s1.synchronize()?;
    let c = alloc.alloc(n * 4, &s2)?;
    ensure!(
        c.device_ptr() == a_ptr,
        "after the event, another stream reuses the block"
    );
    let st = alloc.stats();
    println!("  {st:?}");
    ensure!(st.hits >= 2 && st.cross_stream_reuses >= 1, "{st:?}");
    Ok(())
}

fn oom_recovery(ctx: &Ctx) -> Result<()> {
    let limited = DeviceAllocator::with_limit(&ctx.device, 64 << 20);
    let keep = limited.alloc(48 << 20, &ctx.stream)?;
    match limited.alloc(32 << 20, &ctx.stream) {
        Err(CudaError::OutOfMemory { requested, .. }) => ensure!(requested == 32 << 20),
        other => bail!("over the limit gave {other:?}"),
    }
    ensure!(
        limited.alloc(8 << 20, &ctx.stream).is_ok(),
        "pool unusable after limit OOM"
    );
    drop(keep);
    // A real device OOM: more than is free.
    let (free, _) = ctx.device.memory_info()?;
    let alloc = DeviceAllocator::new(&ctx.device);
    let cached = alloc.alloc(64 << 20, &ctx.stream)?;
    drop(cached); // cached: released on OOM before the retry
    match alloc.alloc(free + (1 << 30), &ctx.stream) {
        Err(CudaError::OutOfMemory { requested, free }) => {
            println!("  device OOM as expected: {requested} requested, {free} free")
        }
        other => bail!("asking for more than free gave {other:?}"),
    }
    let st = alloc.stats();
    ensure!(st.ooms == 1 && st.cache_flushes == 1, "{st:?}");
    let mut after = alloc.alloc(1 << 20, &ctx.stream)?;
    after.fill(1)?;
    ctx.stream.synchronize()?;
    Ok(())
}

fn arena_regions(ctx: &Ctx) -> Result<()> {
    let sizes = [1000usize, 4, 65536, 77];
    let need = kiln_cuda::Arena::required(sizes)?;
    let mut arena = DeviceArena::new(&ctx.alloc, need, &ctx.stream)?;
    let regions: Vec<_> = sizes
        .iter()
        .map(|&s| arena.alloc(s))
        .collect::<Result<_, _>>()?;
    ensure!(arena.alloc(1).is_err(), "arena must be full");
    for (i, r) in regions.iter().enumerate() {
        let mut v = arena.view(*r)?;
        ensure!(v.device_ptr() % 256 == 0, "region {i} misaligned");
        let fill = vec![i as u8 + 1; r.len];
        copy::htod(&ctx.stream, &fill, &mut v)?;
    }
    for (i, r) in regions.iter().enumerate() {
        let mut back = vec![0u8; r.len];
        copy::dtoh(&ctx.stream, &arena.view(*r)?, &mut back)?;
        ensure!(
            back.iter().all(|&b| b == i as u8 + 1),
            "region {i} overwritten"
        );
    }
    Ok(())
}

fn pinned_pool_reuse(ctx: &Ctx) -> Result<()> {
    let pool = PinnedPool::new(&ctx.device, 64 << 20);
    let mut a = pool.get(3 << 20)?;
    a.write_as::<half::f16>()?.fill(half::f16::from_f32(0.25));
    drop(a);
    ensure!(
        pool.cached_bytes() >= 3 << 20,
        "buffer not returned to the pool"
    );
    let mut b = pool.get(3 << 20)?;
    ensure!(pool.cached_bytes() == 0, "buffer not reused");
    ensure!(b.read_as::<half::f16>()?.len() == 3 << 19);
    Ok(())
}

fn nvrtc_kernel_matches_cpu(ctx: &Ctx) -> Result<()> {
    let n = 1_234_567;
    let x = random_f32(n, 4);
    let (a, b) = (1.7f32, -0.3f32);
    let mut dx = ctx.alloc.alloc(n * 4, &ctx.stream)?;
    let mut dy = ctx.alloc.alloc(n * 4, &ctx.stream)?;
    dy.fill(0xEE)?;
    copy::htod(&ctx.stream, &x, &mut dx)?;
    ctx.kernel.launch(&ctx.stream, &dx, &mut dy, a, b, n)?;
    let mut y = vec![0f32; n];
    copy::dtoh(&ctx.stream, &dy, &mut y)?;
    let want: Vec<f32> = x.iter().map(|&v| a * v + b).collect();
    check_equal("axpb", &y, &want)?;
    ensure!(
        ctx.kernel
            .launch(&ctx.stream, &dx, &mut dy, a, b, n + 1)
            .is_err()
    );
    Ok(())
}

/// Ten kernels ping-ponging between two buffers with per-step scalars.
fn chain(
    ctx: &Ctx,
    s: &Stream,
    bufs: &mut [kiln_cuda::DeviceBuffer; 2],
    scale: f32,
    n: usize,
) -> kiln_cuda::Result<()> {
    for i in 0..10 {
        let [p, q] = &mut *bufs;
        let (x, y) = if i % 2 == 0 { (&*p, q) } else { (&*q, p) };
        let (a, b) = (scale * (1.0 + i as f32 * 0.01), 0.5 - i as f32 * 0.1);
        ctx.kernel.launch(s, x, y, a, b, n)?;
    }
    Ok(())
}

fn graph_capture_replay_update(ctx: &Ctx) -> Result<()> {
    let n = 100_000;
    let x = random_f32(n, 5);
    let s = Stream::new(&ctx.device)?;
    let mut bufs = [ctx.alloc.alloc(n * 4, &s)?, ctx.alloc.alloc(n * 4, &s)?];
    let run_direct = |bufs: &mut [kiln_cuda::DeviceBuffer; 2], scale: f32| -> Result<Vec<f32>> {
        copy::htod(&s, &x, &mut bufs[0])?;
        chain(ctx, &s, bufs, scale, n)?;
        let mut out = vec![0f32; n];
        copy::dtoh(&s, &bufs[0], &mut out)?;
        Ok(out)
    };
    let direct = run_direct(&mut bufs, 1.0)?;
    let direct2 = run_direct(&mut bufs, 0.9)?;

    let captured = graph::capture(&s, |s| chain(ctx, s, &mut bufs, 1.0, n))?;
    let mut g = captured.instantiate()?;
    g.upload(&s)?;
    for round in 0..2 {
        copy::htod(&s, &x, &mut bufs[0])?;
        g.launch(&s)?;
        let mut out = vec![0f32; n];
        copy::dtoh(&s, &bufs[0], &mut out)?;
        check_equal(&format!("graph replay {round}"), &out, &direct)?;
    }
    let recaptured = graph::capture(&s, |s| chain(ctx, s, &mut bufs, 0.9, n))?;
    match g.update(recaptured) {
        Ok(()) => {
            copy::htod(&s, &x, &mut bufs[0])?;
            g.launch(&s)?;
            let mut out = vec![0f32; n];
            copy::dtoh(&s, &bufs[0], &mut out)?;
            check_equal("updated graph", &out, &direct2)
        }
        Err(CudaError::Unsupported { detail, .. }) => {
            println!("  graph update unsupported here: {detail}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn overlap_matches_serial(ctx: &Ctx) -> Result<()> {
    let n = (8 << 20) + 12_345;
    let x = random_f32(n, 6);
    let (a, b) = (0.75f32, 2.0f32);
    let copy_s = Stream::with_priority(&ctx.device, Priority::High)?;
    let compute_s = Stream::new(&ctx.device)?;
    let mut host = PinnedBuffer::new(&ctx.device, n * 4)?;
    host.write_as::<f32>()?.copy_from_slice(&x);
    let mut out = ctx.alloc.alloc(n * 4, &compute_s)?;
    out.fill(0xFF)?;
    compute_s.synchronize()?;
    let mut ov = Overlap::new(&ctx.alloc, &copy_s, &compute_s, 1 << 20)?;
    let mut chunks = 0;
    ov.run(&mut host, |s, chunk| {
        chunks += 1;
        let mut dst = out.view(chunk.offset, chunk.len)?;
        ctx.kernel
            .launch(s, chunk.data, &mut dst, a, b, chunk.len / 4)
    })?;
    ensure!(chunks == (n * 4).div_ceil(1 << 20), "{chunks} chunks");
    let mut got = vec![0f32; n];
    copy::dtoh(&compute_s, &out, &mut got)?;
    let want: Vec<f32> = x.iter().map(|&v| a * v + b).collect();
    check_equal("overlap", &got, &want)
}

/// What `chain` computes, on the CPU (same operations, no FMA: bit-exact).
fn chain_cpu(x: &[f32], scale: f32) -> Vec<f32> {
    x.iter()
        .map(|&v| {
            (0..10).fold(v, |v, i| {
                let (a, b) = (scale * (1.0 + i as f32 * 0.01), 0.5 - i as f32 * 0.1);
                a * v + b
            })
        })
        .collect()
}

/// A stream known only by its raw handle (`ForeignStream`) is ordered against kiln's streams
/// by events, both ways: a copy on it waits for kernels queued on a kiln stream, and a copy on
/// a kiln stream waits for kernels queued on it. The legacy default stream (0) is accepted;
/// with two GPUs, a stream of the other one is refused.
fn foreign_stream_ordering(ctx: &Ctx) -> Result<()> {
    let n = 16 << 20;
    let x = random_f32(n, 7);
    let want = chain_cpu(&x, 1.0);
    let kiln_s = Stream::new(&ctx.device)?;
    let other = Stream::new(&ctx.device)?;
    // SAFETY: `other` is a live stream of this device and outlives `foreign`.
    let foreign = unsafe { ForeignStream::from_raw(&ctx.device, other.id()) }?;
    ensure!(foreign.handle() == other.id());

    // kiln stream → foreign stream: ten kernels on `kiln_s`, the copy back on `other`.
    let mut bufs = [
        ctx.alloc.alloc(n * 4, &kiln_s)?,
        ctx.alloc.alloc(n * 4, &kiln_s)?,
    ];
    bufs[1].fill(0xFF)?;
    copy::htod(&kiln_s, &x, &mut bufs[0])?;
    chain(ctx, &kiln_s, &mut bufs, 1.0, n)?;
    let done = kiln_s.record()?;
    foreign.wait(&done)?;
    let mut got = vec![0f32; n];
    copy::dtoh(&other, &bufs[0], &mut got)?;
    check_equal("kiln stream -> foreign stream", &got, &want)?;

    // foreign stream → kiln stream: the kernels on `other`, the copy back on `kiln_s`.
    kiln_s.synchronize()?;
    for b in &mut bufs {
        b.set_stream(&other);
    }
    copy::htod(&other, &x, &mut bufs[0])?;
    bufs[1].fill(0xFF)?;
    chain(ctx, &other, &mut bufs, 1.0, n)?;
    let done = foreign.record()?;
    kiln_s.wait(&done)?;
    let mut got = vec![0f32; n];
    copy::dtoh(&kiln_s, &bufs[0], &mut got)?;
    check_equal("foreign stream -> kiln stream", &got, &want)?;
    foreign.synchronize()?;

    // The legacy default stream.
    // SAFETY: 0 is the legacy default stream, valid in every context.
    let legacy = unsafe { ForeignStream::from_raw(&ctx.device, 0) }?;
    let e = Event::new(&ctx.device, false)?;
    legacy.record_into(&e)?;
    legacy.wait(&e)?;
    legacy.synchronize()?;
    e.synchronize()?;

    if kiln_cuda::device_count()? >= 2 {
        let dev1 = Device::open(1)?;
        let s1 = Stream::new(&dev1)?;
        // SAFETY: `s1` is a live stream (of device 1, which device 0 must refuse).
        match unsafe { ForeignStream::from_raw(&ctx.device, s1.id()) } {
            Err(CudaError::Invalid(m)) => ensure!(m.contains("another CUDA context"), "{m}"),
            other => bail!("a stream of device 1 as one of device 0: {other:?}"),
        }
    } else {
        println!("  one GPU: the other-device refusal is not exercised");
    }
    Ok(())
}
