//! GPU tests of one engine shared by several execution contexts (`harness = false`).
//!
//! - `threads_*`: one `Arc<Engine>` built from a fixture, four contexts, each on its own thread
//!   and its own stream, each running many iterations with fresh random inputs at random batch
//!   sizes within the profile (1..=16), through device buffers bound with `bind` + `enqueue`.
//! - `foreign_stream_*`: four threads again, each enqueuing on a stream the caller created (not
//!   the context's): the inputs are copied asynchronously on that stream, the outputs are
//!   poisoned on it, and after `enqueue` the outputs are copied back on the same stream with no
//!   synchronisation of the context's stream. Busy work delays the caller's stream before the
//!   input copies (even iterations) or the context's stream before the run (odd ones), so that
//!   a missing wait either way reads inputs not yet copied or copies back the poison. Then one
//!   run on the legacy default stream (handle 0), delayed on the context's stream and copied
//!   back on a kiln stream ordered by an event recorded on the default stream; and, with two or
//!   more GPUs, a stream of another device is refused.
//! - `interleaved_shapes_*`: two contexts that share nothing but the engine, queued one after
//!   the other from one thread with shapes that switch every iteration (small, large, odd).
//!
//! - `graph_cache_*`: one context with CUDA-graph replay on, switching between batch sizes on
//!   fixed buffers per size (as kiln-batch's staging does), then growing the arena with a
//!   larger batch (the graphs made with the old arena must be dropped, not replayed), then with
//!   a cache of one graph (every switch evicts). Replays must see the new inputs.
//!
//! Every output buffer is filled with NaN bytes before each run; every result is compared with
//! kiln-reference on the same input (rel-L2 within the precision's tolerance,
//! `Precision::rel_l2_tolerance`; a NaN or infinity fails; the output dims must match).
//!
//! Without a CUDA device every test is reported as skipped and the run succeeds; set
//! `KILN_GPU_REQUIRED=1` to make a missing device a failure. An optional argument filters tests
//! by substring. `KILN_FIXTURES_DIR` points at the fixtures when the binary runs away from its
//! checkout. Run: `KILN_GPU_REQUIRED=1 cargo test -p kiln-engine --release --test
//! gpu_concurrency`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use kiln_core::{
    DataType, DevicePtr, ExecutionContext as _, HostTensor, OptimizationProfile, Precision,
    ProfileInput, StreamHandle,
};
use kiln_cuda::{
    Device, DeviceAllocator, DeviceBuffer, DeviceMemory as _, ForeignStream, PinnedPool, Stream,
    copy,
};
use kiln_engine::{BuildConfig, Builder, Engine, ExecutionContext, Plan};
use kiln_reference::{Interpreter, Value};

struct Ctx {
    device: Arc<Device>,
}

type TestFn = fn(&Ctx) -> Result<()>;

const TESTS: &[(&str, TestFn)] = &[
    ("threads_cnn_legacy_fp32", |c| {
        threads(c, "cnn_legacy", Precision::Fp32)
    }),
    ("threads_cnn_dynamo_bf16", |c| {
        threads(c, "cnn_dynamo", Precision::Bf16)
    }),
    ("threads_transformer_legacy_tf32", |c| {
        threads(c, "transformer_legacy", Precision::Tf32)
    }),
    ("threads_transformer_dynamo_fp16", |c| {
        threads(c, "transformer_dynamo", Precision::Fp16)
    }),
    ("foreign_stream_cnn_legacy_fp32", |c| {
        foreign_stream(c, "cnn_legacy", Precision::Fp32)
    }),
    ("foreign_stream_transformer_dynamo_fp16", |c| {
        foreign_stream(c, "transformer_dynamo", Precision::Fp16)
    }),
    ("interleaved_shapes_cnn_dynamo_fp32", |c| {
        interleaved_shapes(c, "cnn_dynamo", Precision::Fp32)
    }),
    ("interleaved_shapes_transformer_legacy_bf16", |c| {
        interleaved_shapes(c, "transformer_legacy", Precision::Bf16)
    }),
    ("graph_cache_cnn_legacy_fp16", |c| {
        graph_cache(c, "cnn_legacy", Precision::Fp16)
    }),
    ("graph_cache_transformer_dynamo_fp32", |c| {
        graph_cache(c, "transformer_dynamo", Precision::Fp32)
    }),
];

/// Contexts (and threads) of the threaded tests.
const CONTEXTS: usize = 4;
/// Runs per context.
const ITERATIONS: usize = 24;
/// The batch range of the profile every engine here is built with (opt 4).
const MAX_BATCH: usize = 16;

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(
        TESTS,
        || {
            let device = Device::open(0).map_err(|e| e.to_string())?;
            println!("{:?}", device.info());
            Ok(Ctx { device })
        },
        |_| {},
    )
}

// ---------------------------------------------------------------------------------------------
// Engines, inputs, expected values

/// An engine of a fixture and what checks it.
struct Model {
    name: String,
    precision: Precision,
    graph: kiln_onnx::Graph,
    engine: Arc<Engine>,
}

/// `dims` of `input` with every dynamic dim (the batch, in these fixtures) set to `batch`.
fn dims_at(input: &kiln_onnx::ValueInfo, batch: usize) -> Result<Vec<usize>> {
    let shape = input.shape.as_ref().context("input rank")?;
    Ok(shape
        .dims()
        .iter()
        .map(|d| d.known().unwrap_or(batch))
        .collect())
}

/// Builds (through plan bytes, as `kiln build` and a later load would) an engine of
/// `fixtures/<name>.onnx` with a batch profile of min 1, opt 4, max [`MAX_BATCH`].
fn model(device: &Arc<Device>, name: &str, precision: Precision) -> Result<Model> {
    // The repo's fixtures; KILN_FIXTURES_DIR when the binary runs away from its checkout.
    let dir = std::env::var_os("KILN_FIXTURES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
        });
    let graph = kiln_onnx::load(dir.join(format!("{name}.onnx")))?;
    let mut inputs = Vec::new();
    for input in &graph.inputs {
        ensure!(
            input.dtype == Some(DataType::F32),
            "{name}: input {} is not f32",
            input.name
        );
        inputs.push(ProfileInput {
            name: input.name.clone(),
            min: dims_at(input, 1)?,
            opt: dims_at(input, 4)?,
            max: dims_at(input, MAX_BATCH)?,
        });
    }
    let config = BuildConfig {
        precision,
        profiles: vec![OptimizationProfile { inputs }],
        ..BuildConfig::default()
    };
    let plan = Builder::new(device).build(&graph, &config)?;
    let plan = Plan::from_bytes(&plan.to_bytes()?)?;
    let engine = Engine::from_plan(device, &plan)?;
    Ok(Model {
        name: name.to_string(),
        precision,
        graph,
        engine,
    })
}

/// One run's inputs (fresh random values in [-1, 1), never zeros throughout) and the values
/// kiln-reference gives for them.
struct Sample {
    batch: usize,
    inputs: Vec<HostTensor>,
    values: HashMap<String, Value>,
}

fn sample(graph: &kiln_onnx::Graph, batch: usize, rng: &mut fastrand::Rng) -> Result<Sample> {
    let mut inputs = Vec::new();
    let mut values = HashMap::new();
    for input in &graph.inputs {
        let dims = dims_at(input, batch)?;
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect();
        let t = kiln_onnx::Tensor::from_vec(input.name.clone(), dims.clone(), data.clone())?;
        values.insert(input.name.clone(), Value::from_tensor(&t)?);
        inputs.push(HostTensor::from_slice(input.name.clone(), &dims, &data)?);
    }
    Ok(Sample {
        batch,
        inputs,
        values,
    })
}

/// Expected outputs: (dims, values) by name.
type Expected = HashMap<String, (Vec<usize>, Vec<f64>)>;

fn expected(reference: &Interpreter, values: HashMap<String, Value>) -> Result<Expected> {
    Ok(reference
        .run(values)?
        .into_iter()
        .map(|(k, v)| (k, (v.shape().to_vec(), v.to_f64_vec())))
        .collect())
}

/// Compares every output with kiln-reference's; returns the largest rel-L2.
fn compare(m: &Model, what: &str, want: &Expected, got: &[HostTensor]) -> Result<f64> {
    let tol = m.precision.rel_l2_tolerance();
    let mut worst = 0.0f64;
    ensure!(!got.is_empty(), "{what}: no outputs");
    for out in got {
        let (dims, w) = want
            .get(&out.name)
            .with_context(|| format!("{what}: kiln-reference has no output {}", out.name))?;
        ensure!(
            &out.dims == dims,
            "{what}: output {} has dims {:?}, kiln-reference {dims:?}",
            out.name,
            out.dims
        );
        let g = out
            .as_slice::<f32>()
            .with_context(|| format!("{what}: output {} is not f32", out.name))?;
        ensure!(
            g.len() == w.len(),
            "{what}: output {}: {} values, want {}",
            out.name,
            g.len(),
            w.len()
        );
        if let Some(i) = g.iter().position(|v| !v.is_finite()) {
            bail!(
                "{what}: output {} holds {} at {i} (NaN: the poison was never overwritten)",
                out.name,
                g[i]
            );
        }
        let num: f64 = w
            .iter()
            .zip(g.iter())
            .map(|(a, &b)| (a - f64::from(b)).powi(2))
            .sum();
        let den: f64 = w.iter().map(|a| a * a).sum::<f64>().max(1e-30);
        let rel = (num / den).sqrt();
        ensure!(
            rel <= tol,
            "{what}: output {}: rel-L2 {rel:.3e} > {tol:.0e}",
            out.name
        );
        worst = worst.max(rel);
    }
    Ok(worst)
}

// ---------------------------------------------------------------------------------------------
// Device buffers of one run

/// The device buffers of one run, bound to a context: inputs filled, outputs poisoned.
struct Bound {
    inputs: Vec<DeviceBuffer>,
    /// Host tensors to copy into (dims from the context) with their device buffers.
    outputs: Vec<(HostTensor, DeviceBuffer)>,
    /// Pinned staging of asynchronous input copies (kept until the run is done).
    staged: Vec<kiln_cuda::PinnedBuffer>,
}

/// How inputs reach the device.
enum Upload<'a> {
    /// Pageable copies that return once done.
    Sync,
    /// Asynchronous copies from pinned staging buffers of this pool.
    Pinned(&'a PinnedPool),
}

/// Sets the input shapes of `ctx`, uploads `s`'s inputs on `stream` and binds them, allocates
/// the outputs at the shapes the context reports, fills them with NaN bytes (0xFF: a NaN in
/// f32, f16 and bf16) on `stream` without waiting, and binds them.
fn bind(
    ctx: &mut ExecutionContext,
    engine: &Engine,
    alloc: &DeviceAllocator,
    stream: &Arc<Stream>,
    s: &Sample,
    upload: Upload<'_>,
) -> Result<Bound> {
    let mut b = Bound {
        inputs: Vec::new(),
        outputs: Vec::new(),
        staged: Vec::new(),
    };
    for t in &s.inputs {
        ctx.set_input_shape(&t.name, &t.dims)?;
        let bytes = t.data.len();
        let mut buf = alloc.alloc(bytes.max(1), stream)?;
        match upload {
            Upload::Sync => copy::htod(stream, &t.data, &mut buf)?,
            Upload::Pinned(pool) => {
                let mut pin = pool.get(bytes.max(1))?;
                pin.write()?[..bytes].copy_from_slice(&t.data);
                copy::htod_pinned(stream, &mut pin, 0, &mut buf, 0, bytes)?;
                b.staged.push(pin);
            }
        }
        ctx.bind(&t.name, DevicePtr(buf.device_ptr()))?;
        b.inputs.push(buf);
    }
    for spec in kiln_core::Engine::outputs(engine) {
        let dims = ctx.output_shape(&spec.name)?;
        let t = HostTensor::zeros(spec.name.clone(), spec.dtype, &dims)?;
        let mut buf = alloc.alloc(t.data.len().max(1), stream)?;
        buf.fill(0xFF)?;
        ctx.bind(&spec.name, DevicePtr(buf.device_ptr()))?;
        b.outputs.push((t, buf));
    }
    Ok(b)
}

/// Copies the outputs back on `stream` (each copy waits for `stream` only).
fn read_back(stream: &Stream, b: Bound) -> Result<Vec<HostTensor>> {
    let mut result = Vec::new();
    for (mut t, buf) in b.outputs {
        copy::dtoh(stream, &buf, &mut t.data)?;
        result.push(t);
    }
    drop(b.inputs);
    drop(b.staged);
    Ok(result)
}

/// Joins scoped workers, naming every one that failed.
fn join_all(handles: Vec<std::thread::ScopedJoinHandle<'_, Result<f64>>>) -> Result<f64> {
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(w)) => worst = worst.max(w),
            Ok(Err(e)) => failures.push(format!("context {i}: {e:#}")),
            Err(_) => failures.push(format!("context {i}: panicked")),
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(worst)
}

// ---------------------------------------------------------------------------------------------
// The tests

/// One context on its own thread and stream: `ITERATIONS` runs at random batches.
fn thread_worker(m: &Model, seed: u64) -> Result<f64> {
    let reference = Interpreter::new(m.graph.clone())?;
    let mut ctx = ExecutionContext::new(m.engine.clone())?;
    let stream = ctx.stream().clone();
    let alloc = DeviceAllocator::new(m.engine.device());
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut worst = 0.0f64;
    for it in 0..ITERATIONS {
        let s = sample(&m.graph, rng.usize(1..=MAX_BATCH), &mut rng)?;
        let what = format!("iteration {it}, batch {}", s.batch);
        let b = bind(&mut ctx, &m.engine, &alloc, &stream, &s, Upload::Sync)
            .with_context(|| what.clone())?;
        // SAFETY: every bound address is a buffer of `b`, of the tensor's size at the shapes
        // set, alive until `stream` (the context's own) is synchronised by `read_back`.
        let run = unsafe { ctx.enqueue(StreamHandle(stream.id())) };
        // The reference runs on the CPU while the GPU works (and the other threads enqueue).
        let want = expected(&reference, s.values);
        stream.synchronize()?;
        run.with_context(|| what.clone())?;
        let got = read_back(&stream, b)?;
        worst = worst.max(compare(m, &what, &want?, &got)?);
    }
    Ok(worst)
}

fn threads(c: &Ctx, fixture: &str, precision: Precision) -> Result<()> {
    let m = model(&c.device, fixture, precision)?;
    let worst = std::thread::scope(|scope| {
        let handles = (0..CONTEXTS)
            .map(|i| {
                let m = &m;
                scope.spawn(move || thread_worker(m, 1000 + i as u64))
            })
            .collect();
        join_all(handles)
    })?;
    println!(
        "    {} {}: {CONTEXTS} contexts x {ITERATIONS} runs, worst rel-L2 {worst:.2e}",
        m.name, m.precision
    );
    Ok(())
}

/// Fills `scratch` (on its stream) eight times, 2 GiB in all: most of a millisecond of GPU work
/// that the stream's later work queues behind.
fn busy(scratch: &mut DeviceBuffer) -> Result<()> {
    for v in 0..8u8 {
        scratch.fill(v)?;
    }
    Ok(())
}

/// Bytes of each busy-work buffer.
const SCRATCH: usize = 256 << 20;

/// One context driven through a caller-created stream: inputs copied asynchronously on it,
/// outputs poisoned on it, `enqueue` on it, outputs copied back on it, and the context's own
/// stream never synchronised by the caller. Even iterations queue busy work on the caller's
/// stream before the input copies (a context stream that did not wait for the caller's would
/// read inputs not yet copied); odd ones queue it on the context's stream before the run (a
/// caller's stream that did not wait for the run would copy back the poison). The expected
/// values are computed before the run, so the copies back are queued as soon as `enqueue`
/// returns.
fn foreign_worker(m: &Model, seed: u64) -> Result<f64> {
    let reference = Interpreter::new(m.graph.clone())?;
    let mut ctx = ExecutionContext::new(m.engine.clone())?;
    let caller = Stream::new(m.engine.device())?;
    ensure!(caller.id() != ctx.stream().id());
    let alloc = DeviceAllocator::new(m.engine.device());
    let pinned = PinnedPool::new(m.engine.device(), 8);
    let mut caller_scratch = alloc.alloc(SCRATCH, &caller)?;
    let mut ctx_scratch = alloc.alloc(SCRATCH, ctx.stream())?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut worst = 0.0f64;
    for it in 0..ITERATIONS {
        let s = sample(&m.graph, rng.usize(1..=MAX_BATCH), &mut rng)?;
        let what = format!("iteration {it}, batch {}", s.batch);
        let want = expected(&reference, s.values.clone())?;
        if it % 2 == 0 {
            busy(&mut caller_scratch)?;
        }
        let b = bind(
            &mut ctx,
            &m.engine,
            &alloc,
            &caller,
            &s,
            Upload::Pinned(&pinned),
        )
        .with_context(|| what.clone())?;
        if it % 2 == 1 {
            busy(&mut ctx_scratch)?;
        }
        // SAFETY: every bound address is a buffer of `b`, of the tensor's size at the shapes
        // set, alive until `caller` passes the run: `read_back` synchronises `caller`, which
        // `enqueue` made wait for the run. `caller` is a live stream of the engine's device.
        let run = unsafe { ctx.enqueue(StreamHandle(caller.id())) };
        if let Err(e) = run {
            caller.synchronize()?;
            return Err(e).with_context(|| what.clone());
        }
        // No synchronisation of the context's stream: only the caller's, by the copies.
        let got = read_back(&caller, b)?;
        worst = worst.max(compare(m, &what, &want, &got)?);
    }
    ctx.stream().synchronize()?;
    Ok(worst)
}

/// One run enqueued on the legacy default stream (handle 0); the outputs are copied on a kiln
/// stream ordered after it by an event recorded on the default stream.
fn default_stream_run(m: &Model) -> Result<f64> {
    let reference = Interpreter::new(m.graph.clone())?;
    let mut ctx = ExecutionContext::new(m.engine.clone())?;
    let io = Stream::new(m.engine.device())?;
    let alloc = DeviceAllocator::new(m.engine.device());
    let mut rng = fastrand::Rng::with_seed(77);
    let s = sample(&m.graph, 5, &mut rng)?;
    let want = expected(&reference, s.values.clone())?;
    let b = bind(&mut ctx, &m.engine, &alloc, &io, &s, Upload::Sync)?;
    // The poison fills were queued on `io`; the default stream does not wait for a
    // non-blocking stream, so finish them first.
    io.synchronize()?;
    // Busy work on the context's stream delays the run: the default stream's event below
    // covers the run only if `enqueue` made the default stream wait for it.
    let mut scratch = alloc.alloc(SCRATCH, ctx.stream())?;
    busy(&mut scratch)?;
    // SAFETY: 0 is the legacy default stream, valid in every context.
    let default = unsafe { ForeignStream::from_raw(m.engine.device(), 0) }?;
    // SAFETY: every bound address is a buffer of `b`, alive until `io` (which waits for the
    // default stream's event below) is synchronised by `read_back`. 0 is a valid stream.
    let run = unsafe { ctx.enqueue(StreamHandle(0)) };
    let after = default.record()?;
    io.wait(&after)?;
    if let Err(e) = run {
        default.synchronize()?;
        return Err(e).context("enqueue on the legacy default stream");
    }
    let got = read_back(&io, b)?;
    ctx.stream().synchronize()?;
    compare(m, "legacy default stream, batch 5", &want, &got)
}

/// With a second GPU: enqueue on one of its streams is an error that names the device, and
/// nothing runs.
fn other_device_refused(m: &Model) -> Result<()> {
    let count = kiln_cuda::device_count()?;
    if count < 2 {
        println!("    (one GPU: the other-device refusal is not exercised)");
        return Ok(());
    }
    let other = Device::open(1)?;
    let stream = Stream::new(&other)?;
    let mut ctx = ExecutionContext::new(m.engine.clone())?;
    // Nothing is bound: the device check comes first, before any binding is looked at.
    // SAFETY: `stream` is a live stream (of another device, which enqueue must refuse before
    // queuing anything).
    let e = unsafe { ctx.enqueue(StreamHandle(stream.id())) }
        .err()
        .context("enqueue on another device's stream was accepted")?;
    ensure!(
        e.to_string().contains("another CUDA context"),
        "unexpected error: {e}"
    );
    Ok(())
}

fn foreign_stream(c: &Ctx, fixture: &str, precision: Precision) -> Result<()> {
    let m = model(&c.device, fixture, precision)?;
    let worst = std::thread::scope(|scope| {
        let handles = (0..CONTEXTS)
            .map(|i| {
                let m = &m;
                scope.spawn(move || foreign_worker(m, 2000 + i as u64))
            })
            .collect();
        join_all(handles)
    })?;
    let legacy = default_stream_run(&m)?;
    other_device_refused(&m)?;
    println!(
        "    {} {}: {CONTEXTS} caller streams x {ITERATIONS} runs, worst rel-L2 {worst:.2e}; \
         legacy default stream {legacy:.2e}",
        m.name, m.precision
    );
    Ok(())
}

/// Two contexts that share nothing but the engine, both queued before either is waited for,
/// with shapes that switch every iteration (each context its own sequence).
fn interleaved_shapes(c: &Ctx, fixture: &str, precision: Precision) -> Result<()> {
    let m = model(&c.device, fixture, precision)?;
    let reference = Interpreter::new(m.graph.clone())?;
    let alloc = DeviceAllocator::new(m.engine.device());
    let mut a = ExecutionContext::new(m.engine.clone())?;
    let mut b = ExecutionContext::new(m.engine.clone())?;
    let (sa, sb) = (a.stream().clone(), b.stream().clone());
    ensure!(sa.id() != sb.id(), "two contexts share a stream");
    let batches_a = [1, MAX_BATCH, 3, MAX_BATCH, 1, 7, 2, MAX_BATCH, 5, 1, 11, 4];
    let batches_b = [MAX_BATCH, 1, MAX_BATCH, 2, 9, 1, MAX_BATCH, 3, 1, 13, 4, 6];
    let mut rng = fastrand::Rng::with_seed(3000);
    let mut worst = 0.0f64;
    for (it, (&ba, &bb)) in batches_a.iter().zip(&batches_b).enumerate() {
        let xa = sample(&m.graph, ba, &mut rng)?;
        let xb = sample(&m.graph, bb, &mut rng)?;
        let (wa, wb) = (
            format!("iteration {it}, context A, batch {ba}"),
            format!("iteration {it}, context B, batch {bb}"),
        );
        let ia =
            bind(&mut a, &m.engine, &alloc, &sa, &xa, Upload::Sync).with_context(|| wa.clone())?;
        // SAFETY: the addresses bound to `a` are buffers of `ia`, alive until `sa` (its own
        // stream) is synchronised by `read_back`.
        let ra = unsafe { a.enqueue(StreamHandle(sa.id())) };
        let ib =
            bind(&mut b, &m.engine, &alloc, &sb, &xb, Upload::Sync).with_context(|| wb.clone())?;
        // SAFETY: as above, for `b`, `ib` and `sb`.
        let rb = unsafe { b.enqueue(StreamHandle(sb.id())) };
        let want_a = expected(&reference, xa.values);
        let want_b = expected(&reference, xb.values);
        sa.synchronize()?;
        sb.synchronize()?;
        ra.with_context(|| wa.clone())?;
        rb.with_context(|| wb.clone())?;
        let got_a = read_back(&sa, ia)?;
        let got_b = read_back(&sb, ib)?;
        worst = worst.max(compare(&m, &wa, &want_a?, &got_a)?);
        worst = worst.max(compare(&m, &wb, &want_b?, &got_b)?);
    }
    println!(
        "    {} {}: 2 contexts x {} interleaved shape switches, worst rel-L2 {worst:.2e}",
        m.name,
        m.precision,
        batches_a.len()
    );
    Ok(())
}

/// Fixed device buffers of one batch size: inputs and (host tensor, device buffer) outputs.
type SizeBuffers = (Vec<DeviceBuffer>, Vec<(HostTensor, DeviceBuffer)>);

fn graph_cache(c: &Ctx, fixture: &str, precision: Precision) -> Result<()> {
    let m = model(&c.device, fixture, precision)?;
    let reference = Interpreter::new(m.graph.clone())?;
    let alloc = DeviceAllocator::new(m.engine.device());
    let mut ctx = ExecutionContext::new(m.engine.clone())?;
    ctx.set_cuda_graphs(true);
    let stream = ctx.stream().clone();
    let mut buffers: HashMap<usize, SizeBuffers> = HashMap::new();
    let mut rng = fastrand::Rng::with_seed(4000);
    let mut worst = 0.0f64;
    // Small sizes first (each warmed, captured, replayed), then the largest grows the arena,
    // then the small ones again; then a cache of one graph.
    let phases: [(&[usize], usize); 2] = [
        (&[1, 3, 1, 3, 1, 3, MAX_BATCH, 1, 3, 1, 3, 1, 3], 16),
        (&[1, 3, 1, 3, 1, 3], 1),
    ];
    for (phase, &(sizes, max_graphs)) in phases.iter().enumerate() {
        ctx.set_max_graphs(max_graphs);
        for (it, &batch) in sizes.iter().enumerate() {
            let what = format!("phase {phase}, run {it}, batch {batch}");
            let x = sample(&m.graph, batch, &mut rng)?;
            for t in &x.inputs {
                ctx.set_input_shape(&t.name, &t.dims)?;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = buffers.entry(batch) {
                let mut ins = Vec::new();
                for t in &x.inputs {
                    ins.push(alloc.alloc(t.data.len().max(1), &stream)?);
                }
                let mut outs = Vec::new();
                for spec in kiln_core::Engine::outputs(m.engine.as_ref()) {
                    let dims = ctx.output_shape(&spec.name)?;
                    let t = HostTensor::zeros(spec.name.clone(), spec.dtype, &dims)?;
                    let b = alloc.alloc(t.data.len().max(1), &stream)?;
                    outs.push((t, b));
                }
                slot.insert((ins, outs));
            }
            let (ins, outs) = buffers.get_mut(&batch).context("buffers")?;
            for (t, b) in x.inputs.iter().zip(ins.iter_mut()) {
                copy::htod(&stream, &t.data, b)?;
                ctx.bind(&t.name, DevicePtr(b.device_ptr()))?;
            }
            for (t, b) in outs.iter_mut() {
                b.fill(0xFF)?;
                ctx.bind(&t.name, DevicePtr(b.device_ptr()))?;
            }
            // SAFETY: every bound address is a buffer of `buffers`, alive for the whole test;
            // the stream is synchronised before the outputs are read or the inputs rewritten.
            let run = unsafe { ctx.enqueue(StreamHandle(stream.id())) };
            stream.synchronize()?;
            run.with_context(|| what.clone())?;
            let mut got = Vec::new();
            for (t, b) in outs.iter() {
                let mut t = t.clone();
                copy::dtoh(&stream, b, &mut t.data)?;
                got.push(t);
            }
            let want = expected(&reference, x.values)?;
            worst = worst.max(compare(&m, &what, &want, &got)?);
        }
        let (on, captures) = ctx.cuda_graphs();
        ensure!(
            on,
            "phase {phase}: CUDA graphs were turned off (see the log)"
        );
        ensure!(
            ctx.cuda_graphs_kept() <= max_graphs,
            "phase {phase}: {} graphs kept with a limit of {max_graphs}",
            ctx.cuda_graphs_kept()
        );
        println!(
            "    {} {}: phase {phase} ({} runs, max graphs {max_graphs}): {captures} captures \
             so far, {} kept, worst rel-L2 {worst:.2e}",
            m.name,
            m.precision,
            sizes.len(),
            ctx.cuda_graphs_kept()
        );
        if phase == 0 {
            // Batches 1 and 3 were each captured before the arena grew; at least those two.
            ensure!(captures >= 2, "phase 0: only {captures} graphs captured");
        }
    }
    Ok(())
}
