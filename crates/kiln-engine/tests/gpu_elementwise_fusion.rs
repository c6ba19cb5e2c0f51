//! GPU tests of the elementwise fusion (`harness = false`, `kiln_cuda::gpu_test` runner): small
//! graphs of float elementwise chains (BERT's GELU after its bias add, the attention's scale
//! and broadcast mask before Softmax, a residual Add + Relu, chains with several inputs,
//! broadcast operands, runtime one-element inputs and scalar constants, values read outside a
//! chain, 1000003-element tensors for the vector tails, inputs and outputs bound 4 bytes off
//! 16-byte alignment) are built at fp32, fp16 and bf16 with the default fusions and with
//! `Fusions::none()`. The fused builds must hold the expected number of `kiln::Elementwise`
//! steps (the unfused ones none); every engine runs twice on fresh random inputs, with every
//! output buffer filled with NaN bytes before each run, and is compared with kiln-reference
//! (rel-L2 1e-5 at fp32, 1e-2 at fp16/bf16; a NaN fails).
//!
//! `bert_gelu_timing` runs the fused GELU kernel at BERT-base's FFN shape ([128, 128, 3072]
//! fp16) in both code paths of `fused::Variant` (Baseline, Fast): each output checked
//! (poisoned first; the first four sequences against kiln-reference, rel-L2 1e-2; every value
//! finite; the two paths against each other), then timed with CUDA events (median of 30
//! launches after 5 of warm-up), printing microseconds and GB/s. It asserts correctness, not
//! speed.
//!
//! Without a CUDA device every test is reported as skipped. An optional argument filters tests
//! by name. Run: `KILN_GPU_REQUIRED=1 cargo test -p kiln-engine --release --test
//! gpu_elementwise_fusion` (the engine-level tests use `KILN_EW_FAST`'s code path, the fast
//! one unless it is `0`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use kiln_core::{
    DataType, DevicePtr, Dim, Engine as _, ExecutionContext as _, HostTensor, Precision,
    StreamHandle,
};
use kiln_cuda::{Device, DeviceMemory as _};
use kiln_engine::builder::lower::StepKind;
use kiln_engine::builder::prepare_programs;
use kiln_engine::builder::rewrite::elementwise::{EXPR_ATTR, OP};
use kiln_engine::kernels::nvrtc::KernelLibrary;
use kiln_engine::kernels::nvrtc::binary::Operand;
use kiln_engine::kernels::nvrtc::fused::{self, Variant};
use kiln_engine::plan::{Fingerprint, Fusions};
use kiln_engine::{BuildConfig, Builder, Engine, ExecutionContext};
use kiln_onnx::builder::Value as V;
use kiln_onnx::{Graph, GraphBuilder, Tensor, ValueInfo};
use kiln_reference::{Interpreter, Value};

struct Ctx {
    device: Arc<Device>,
    rng: RefCell<fastrand::Rng>,
}

type Test = kiln_cuda::gpu_test::GpuTest<Ctx, anyhow::Error>;

const TESTS: &[Test] = &[
    ("gelu_after_bias", gelu_after_bias),
    ("gelu_odd_length_misaligned", gelu_odd_length_misaligned),
    ("attention_scale_and_mask", attention_scale_and_mask),
    ("residual_add_relu", residual_add_relu),
    ("several_inputs_and_constants", several_inputs_and_constants),
    ("broadcast_operands", broadcast_operands),
    ("values_read_outside", values_read_outside),
    ("bert_gelu_timing", bert_gelu_timing),
];

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(
        TESTS,
        || {
            let device = Device::open(0).map_err(|e| e.to_string())?;
            println!(
                "device: {} (cc {:?})",
                device.info().name,
                device.info().compute_capability
            );
            Ok(Ctx {
                device,
                rng: RefCell::new(fastrand::Rng::with_seed(0x6577_6675)),
            })
        },
        |_| {},
    )
}

const PRECISIONS: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

fn tolerance(p: Precision) -> f64 {
    match p {
        Precision::Fp32 => 1e-5,
        _ => 1e-2,
    }
}

fn dims(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

/// A graph made by `f` (which returns the outputs), written and loaded back.
fn graph(f: impl FnOnce(&mut GraphBuilder) -> Vec<V>) -> Result<Graph> {
    let mut b = GraphBuilder::new("ew").opset(17);
    for o in f(&mut b) {
        b.output_value(ValueInfo::unknown(o.name()));
    }
    Ok(b.build()?)
}

fn scalar(b: &mut GraphBuilder, name: &str, v: f32) -> V {
    b.initializer(Tensor::scalar(name, v))
}

/// A random f32 initialiser (never zero).
fn weight(ctx: &Ctx, b: &mut GraphBuilder, name: &str, d: &[usize]) -> V {
    let n = d.iter().product();
    let v = uniform(ctx, n, -1.0, 1.0);
    b.initializer(Tensor::from_vec(name, d.to_vec(), v).expect("weight"))
}

fn uniform(ctx: &Ctx, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = ctx.rng.borrow_mut();
    (0..n)
        .map(|_| {
            loop {
                let v = lo + (hi - lo) * r.f32();
                if v != 0.0 {
                    break v;
                }
            }
        })
        .collect()
}

/// One test graph: its random inputs' ranges, how many fused steps the default build holds,
/// and whether inputs and outputs are bound 4 bytes past a 16-byte boundary.
struct Case {
    name: &'static str,
    graph: Graph,
    ranges: Vec<(f32, f32)>,
    fused_steps: usize,
    misaligned: bool,
}

impl Case {
    fn new(name: &'static str, graph: Graph, fused_steps: usize) -> Case {
        let ranges = vec![(-2.0, 2.0); graph.inputs.len()];
        Case {
            name,
            graph,
            ranges,
            fused_steps,
            misaligned: false,
        }
    }
}

/// Builds `case` at every precision with and without the fusions and checks each engine.
fn check(ctx: &Ctx, case: &Case) -> Result<()> {
    let reference = Interpreter::new(case.graph.clone())?;
    for precision in PRECISIONS {
        for (label, fusions, want_fused) in [
            ("fused", Fusions::default(), case.fused_steps),
            ("unfused", Fusions::none(), 0),
        ] {
            let what = format!("{} [{} {label}]", case.name, precision.name());
            let config = BuildConfig {
                precision,
                fusions,
                kernel_cache_dir: None,
                ..BuildConfig::default()
            };
            let (_, programs) = prepare_programs(&case.graph, &config, Fingerprint::default())
                .with_context(|| format!("{what}: host build"))?;
            let fused = programs[0]
                .1
                .steps
                .iter()
                .filter(|s| matches!(&s.kind, StepKind::Node(n) if n.op_type == OP))
                .count();
            ensure!(
                fused == want_fused,
                "{what}: {fused} fused elementwise steps, want {want_fused}"
            );
            let plan = Builder::new(&ctx.device)
                .build(&case.graph, &config)
                .with_context(|| format!("{what}: build"))?;
            let engine = Engine::from_plan(&ctx.device, &plan)?;
            for run in 0..2 {
                let (inputs, feed) = random_inputs(ctx, case)?;
                let want = reference.run(feed).context("reference run")?;
                let got = run_poisoned(&engine, &inputs, case.misaligned)
                    .with_context(|| format!("{what}: run {run}"))?;
                for out in &got {
                    let w = want
                        .get(&out.name)
                        .with_context(|| format!("no reference output {}", out.name))?;
                    ensure!(
                        w.shape() == out.dims.as_slice(),
                        "{what}: output {} has dims {:?}, want {:?}",
                        out.name,
                        out.dims,
                        w.shape()
                    );
                    let rel = rel_l2(&w.to_f64_vec(), out)
                        .with_context(|| format!("{what} run {run}: output {}", out.name))?;
                    let tol = tolerance(precision);
                    ensure!(
                        rel <= tol,
                        "{what} run {run}: output {} rel-L2 {rel:.3e} > {tol:.0e}",
                        out.name
                    );
                    if run == 0 {
                        println!("    {what} {}: rel-L2 {rel:.2e}", out.name);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fresh random f32 inputs in each input's range: host tensors and reference values.
fn random_inputs(ctx: &Ctx, case: &Case) -> Result<(Vec<HostTensor>, HashMap<String, Value>)> {
    let mut host = Vec::new();
    let mut feed = HashMap::new();
    for (vi, &(lo, hi)) in case.graph.inputs.iter().zip(&case.ranges) {
        let d: Vec<usize> = vi
            .shape
            .as_ref()
            .and_then(|s| s.as_known())
            .context("input dims")?;
        let v = uniform(ctx, d.iter().product(), lo, hi);
        host.push(HostTensor::from_slice(vi.name.clone(), &d, &v)?);
        let t = Tensor::from_vec(vi.name.clone(), d, v)?;
        feed.insert(vi.name.clone(), Value::from_tensor(&t)?);
    }
    Ok((host, feed))
}

/// One run on device buffers bound to a fresh context, every output buffer filled with NaN
/// bytes first; with `misaligned`, every address is 4 bytes past a 16-byte boundary.
fn run_poisoned(
    engine: &Arc<Engine>,
    inputs: &[HostTensor],
    misaligned: bool,
) -> Result<Vec<HostTensor>> {
    let skew = if misaligned { 4 } else { 0 };
    let mut ctx = ExecutionContext::new(engine.clone())?;
    let stream = ctx.stream().clone();
    let alloc = kiln_cuda::DeviceAllocator::new(engine.device());
    let mut keep = Vec::new();
    for t in inputs {
        ctx.set_input_shape(&t.name, &t.dims)?;
        let mut bytes = vec![0u8; skew];
        bytes.extend_from_slice(&t.data);
        let mut b = alloc.alloc(bytes.len().max(16), &stream)?;
        ensure!(
            b.device_ptr() % 16 == 0,
            "allocator returned an unaligned block"
        );
        kiln_cuda::copy::htod(&stream, &bytes, &mut b)?;
        ctx.bind(&t.name, DevicePtr(b.device_ptr() + skew as u64))?;
        keep.push(b);
    }
    let mut outs = Vec::new();
    for spec in engine.outputs() {
        let d = ctx.output_shape(&spec.name)?;
        let t = HostTensor::zeros(spec.name.clone(), spec.dtype, &d)?;
        let len = t.data.len() + skew;
        let mut b = alloc.alloc(len.max(16), &stream)?;
        kiln_cuda::copy::htod(&stream, &vec![0xffu8; len], &mut b)?;
        ctx.bind(&spec.name, DevicePtr(b.device_ptr() + skew as u64))?;
        outs.push((t, b, len));
    }
    // SAFETY: every bound address lies inside a buffer in `keep` / `outs` (allocated with the
    // skew included), alive until the stream is synchronised below.
    let run = unsafe { ctx.enqueue(StreamHandle(stream.id())) };
    stream.synchronize()?;
    run?;
    let mut result = Vec::new();
    for (mut t, b, len) in outs {
        let mut bytes = vec![0u8; len];
        kiln_cuda::copy::dtoh(&stream, &b, &mut bytes)?;
        t.data.copy_from_slice(&bytes[skew..]);
        result.push(t);
    }
    drop(keep);
    Ok(result)
}

/// rel-L2 of an f32 output against the reference; any NaN or infinity fails.
fn rel_l2(want: &[f64], got: &HostTensor) -> Result<f64> {
    let g = got.as_slice::<f32>().context("f32 output")?;
    ensure!(
        g.len() == want.len(),
        "{} values, want {}",
        g.len(),
        want.len()
    );
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (&w, &v)) in want.iter().zip(g.iter()).enumerate() {
        let v = f64::from(v);
        ensure!(w.is_finite(), "reference value {i} is {w}: a bad test");
        ensure!(v.is_finite(), "element {i} is {v}, want {w}");
        num += (w - v) * (w - v);
        den += w * w;
    }
    ensure!(den > 0.0, "the reference output is all zeros: a bad test");
    Ok(num.sqrt() / den.sqrt())
}

/// BERT's GELU: Div by sqrt 2 -> Erf -> Add 1 -> Mul x -> Mul 0.5 on `x`.
fn gelu(b: &mut GraphBuilder, x: &V) -> V {
    let (s2, one, half) = (
        scalar(b, "sqrt2", std::f32::consts::SQRT_2),
        scalar(b, "one", 1.0),
        scalar(b, "half", 0.5),
    );
    let d = b.node("Div", &[x, &s2]).output();
    let e = b.node("Erf", &[&d]).output();
    let a = b.node("Add", &[&e, &one]).output();
    let m = b.node("Mul", &[x, &a]).output();
    b.node("Mul", &[&m, &half]).output_named("y")
}

fn gelu_after_bias(ctx: &Ctx) -> Result<()> {
    // [rows, 3072] + bias [3072] -> GELU: one kernel with the bias add (broadcast, vectors).
    let g = graph(|b| {
        let x = b.input("x", DataType::F32, &dims(&[24, 3072]));
        let bias = weight(ctx, b, "bias", &[3072]);
        let h = b.node("Add", &[&x, &bias]).output();
        vec![gelu(b, &h)]
    })?;
    check(ctx, &Case::new("gelu_after_bias", g, 1))
}

fn gelu_odd_length_misaligned(ctx: &Ctx) -> Result<()> {
    for misaligned in [false, true] {
        let g = graph(|b| {
            let x = b.input("x", DataType::F32, &dims(&[1_000_003]));
            vec![gelu(b, &x)]
        })?;
        let mut case = Case::new("gelu_odd_length", g, 1);
        case.misaligned = misaligned;
        check(ctx, &case)?;
    }
    Ok(())
}

fn attention_scale_and_mask(ctx: &Ctx) -> Result<()> {
    // scores [b, h, s, s] / 8 + mask [b, 1, 1, s] -> Softmax; s = 16 (vectors) and 15 (not).
    for s in [16usize, 15] {
        let g = graph(|b| {
            let x = b.input("scores", DataType::F32, &dims(&[2, 4, s, s]));
            let m = b.input("mask", DataType::F32, &dims(&[2, 1, 1, s]));
            let scale = scalar(b, "scale", 8.0);
            let d = b.node("Div", &[&x, &scale]).output();
            let a = b.node("Add", &[&d, &m]).output();
            vec![
                b.node("Softmax", &[&a])
                    .attr("axis", -1i64)
                    .output_named("p"),
            ]
        })?;
        let mut case = Case::new("attention_scale_and_mask", g, 1);
        case.ranges = vec![(-4.0, 4.0), (-3.0, 0.0)];
        check(ctx, &case)?;
    }
    Ok(())
}

fn residual_add_relu(ctx: &Ctx) -> Result<()> {
    let g = graph(|b| {
        let x = b.input("x", DataType::F32, &dims(&[128, 768]));
        let r = b.input("r", DataType::F32, &dims(&[128, 768]));
        let a = b.node("Add", &[&x, &r]).output();
        vec![b.node("Relu", &[&a]).output_named("y")]
    })?;
    check(ctx, &Case::new("residual_add_relu", g, 1))
}

fn several_inputs_and_constants(ctx: &Ctx) -> Result<()> {
    // y = Pow(Max(LeakyRelu(a * b) + s, Tanh(a)) - 0.25, 2) with s a runtime [1] input (the
    // contiguous path's one-element operand), over 1000003 elements and over [64, 1024].
    for n in [vec![1_000_003usize], vec![64, 1024]] {
        let g = graph(|b| {
            let a = b.input("a", DataType::F32, &dims(&n));
            let c = b.input("b", DataType::F32, &dims(&n));
            let s = b.input("s", DataType::F32, &dims(&[1]));
            let (q, two) = (scalar(b, "quarter", 0.25), scalar(b, "two", 2.0));
            let m = b.node("Mul", &[&a, &c]).output();
            let l = b.node("LeakyRelu", &[&m]).attr("alpha", 0.1f32).output();
            let p = b.node("Add", &[&l, &s]).output();
            let t = b.node("Tanh", &[&a]).output();
            let x = b.node("Max", &[&p, &t]).output();
            let d = b.node("Sub", &[&x, &q]).output();
            vec![b.node("Pow", &[&d, &two]).output_named("y")]
        })?;
        check(ctx, &Case::new("several_inputs_and_constants", g, 1))?;
    }
    Ok(())
}

fn broadcast_operands(ctx: &Ctx) -> Result<()> {
    // y = Sigmoid(Clip((a + c) * d - e, 0, 6)) * 0.5 with c [1000] (a bias), d [3, 1, 1000],
    // e [5, 1] (broadcast on the inner axis) over a [3, 5, 1000]; and a PRelu slope [5, 1].
    let g = graph(|b| {
        let a = b.input("a", DataType::F32, &dims(&[3, 5, 1000]));
        let c = b.input("c", DataType::F32, &dims(&[1000]));
        let d = b.input("d", DataType::F32, &dims(&[3, 1, 1000]));
        let e = b.input("e", DataType::F32, &dims(&[5, 1]));
        let (lo, hi, half) = (
            scalar(b, "lo", 0.0),
            scalar(b, "hi", 6.0),
            scalar(b, "half", 0.5),
        );
        let s = b.node("Add", &[&a, &c]).output();
        let m = b.node("Mul", &[&s, &d]).output();
        let u = b.node("Sub", &[&m, &e]).output();
        let k = b.node("Clip", &[&u, &lo, &hi]).output();
        let g = b.node("Sigmoid", &[&k]).output();
        let y = b.node("Mul", &[&g, &half]).output_named("y");
        let slope = weight(ctx, b, "slope", &[5, 1]);
        let z = b.node("PRelu", &[&a, &slope]).output();
        let z = b.node("Exp", &[&z]).output_named("z");
        vec![y, z]
    })?;
    check(ctx, &Case::new("broadcast_operands", g, 2))
}

fn values_read_outside(ctx: &Ctx) -> Result<()> {
    // e is read by Relu and by ReduceSum (two groups); t is a graph output in the middle of
    // a chain (two groups).
    let g = graph(|b| {
        let a = b.input("a", DataType::F32, &dims(&[4, 257]));
        let c = b.input("c", DataType::F32, &dims(&[4, 257]));
        let e = b.node("Exp", &[&a]).output();
        let r = b.node("Relu", &[&e]).output_named("r");
        let s = b
            .node("ReduceSum", &[&e])
            .attr("keepdims", 0i64)
            .output_named("s");
        let t = b.node("Add", &[&a, &c]).output_named("t");
        let u = b.node("Exp", &[&t]).output();
        let w = b.node("Neg", &[&u]).output_named("w");
        vec![r, s, t, w]
    })?;
    check(ctx, &Case::new("values_read_outside", g, 4))
}

/// rel-L2 of `got` against `want` (f64 values); any non-finite value fails.
fn rel_l2_f64(what: &str, want: &[f64], got: &[f64]) -> Result<f64> {
    ensure!(want.len() == got.len(), "{what}: lengths differ");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (&w, &g)) in want.iter().zip(got).enumerate() {
        ensure!(w.is_finite(), "{what}: reference value {i} is {w}");
        ensure!(g.is_finite(), "{what}: element {i} is {g}, want {w}");
        num += (w - g) * (w - g);
        den += w * w;
    }
    ensure!(den > 0.0, "{what}: the reference is all zeros");
    Ok(num.sqrt() / den.sqrt())
}

fn bert_gelu_timing(ctx: &Ctx) -> Result<()> {
    // BERT-base b128 s128: the FFN's GELU over [128, 128, 3072] fp16 (the bias rides the GEMM).
    let shape = [128usize, 128, 3072];
    let n: usize = shape.iter().product();
    let g = graph(|b| {
        let x = b.input("x", DataType::F32, &dims(&shape));
        vec![gelu(b, &x)]
    })?;
    // The expression the rewrite makes of it at fp16.
    let config = BuildConfig {
        precision: Precision::Fp16,
        kernel_cache_dir: None,
        ..BuildConfig::default()
    };
    let (_, programs) = prepare_programs(&g, &config, Fingerprint::default())?;
    let exprs: Vec<String> = programs[0]
        .1
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Node(n) if n.op_type == OP => n.attr_string(EXPR_ATTR).ok().flatten(),
            _ => None,
        })
        .collect();
    let [expr] = exprs.as_slice() else {
        anyhow::bail!("{} fused steps in the fp16 GELU, want 1", exprs.len());
    };
    println!("    expression: {expr}");
    let lib = KernelLibrary::new(&ctx.device)?.with_cache_dir(None);
    let stream = kiln_cuda::Stream::new(&ctx.device)?;
    let alloc = kiln_cuda::DeviceAllocator::new(&ctx.device);
    // Inputs: f16 values (the reference reads the same values as f32).
    let xs: Vec<f32> = uniform(ctx, n, -4.0, 4.0)
        .into_iter()
        .map(|v| half::f16::from_f32(v).to_f32())
        .collect();
    let bytes: Vec<u8> = xs
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let mut xb = alloc.alloc(bytes.len(), &stream)?;
    kiln_cuda::copy::htod(&stream, &bytes, &mut xb)?;
    let mut yb = alloc.alloc(bytes.len(), &stream)?;
    ensure!(
        xb.device_ptr() % 16 == 0 && yb.device_ptr() % 16 == 0,
        "unaligned buffers: the vector path would not be timed"
    );
    // kiln-reference over the first four sequences.
    let part = 4 * 128 * 3072;
    let small = graph(|b| {
        let x = b.input("x", DataType::F32, &dims(&[4, 128, 3072]));
        vec![gelu(b, &x)]
    })?;
    let t = Tensor::from_vec("x", vec![4, 128, 3072], xs[..part].to_vec())?;
    let want = Interpreter::new(small)?
        .run(HashMap::from([("x".to_string(), Value::from_tensor(&t)?)]))?;
    let want = want.get("y").context("reference output y")?.to_f64_vec();
    let operands = [Operand {
        ptr: DevicePtr(xb.device_ptr()),
        shape: &shape,
        dtype: DataType::F16,
    }];
    let y = DevicePtr(yb.device_ptr());
    let mut outputs = Vec::new();
    let moved = (2 * n * 2) as f64;
    for variant in [Variant::Baseline, Variant::Fast] {
        let go = || {
            fused::launch_for(
                &lib,
                &stream,
                expr,
                &operands,
                y,
                DataType::F16,
                &shape,
                variant,
            )
        };
        kiln_cuda::copy::htod(&stream, &vec![0xffu8; bytes.len()], &mut yb)?;
        go()?;
        stream.synchronize()?;
        let mut out = vec![0u8; bytes.len()];
        kiln_cuda::copy::dtoh(&stream, &yb, &mut out)?;
        let got: Vec<f64> = out
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect();
        if let Some(i) = got.iter().position(|v| !v.is_finite()) {
            anyhow::bail!("{variant:?}: element {i} is {}", got[i]);
        }
        let rel = rel_l2_f64(&format!("{variant:?}"), &want, &got[..part])?;
        ensure!(
            rel <= 1e-2,
            "{variant:?}: rel-L2 {rel:.3e} against kiln-reference > 1e-2"
        );
        // Timing: 5 launches of warm-up, then 30 launches each between two events.
        for _ in 0..5 {
            go()?;
        }
        let mut times = Vec::new();
        for _ in 0..30 {
            let (start, end) = (
                kiln_cuda::Event::new(&ctx.device, true)?,
                kiln_cuda::Event::new(&ctx.device, true)?,
            );
            start.record(&stream)?;
            go()?;
            end.record(&stream)?;
            end.synchronize()?;
            times.push(f64::from(start.elapsed_ms(&end)?) * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "    {variant:?}: rel-L2 {rel:.2e} vs kiln-reference; median {median:.1} us \
             (min {:.1}, max {:.1}) over 30 launches, {:.0} GB/s ({} MB moved)",
            times[0],
            times[times.len() - 1],
            moved / median / 1e3,
            moved / 1e6
        );
        outputs.push(got);
    }
    let rel = rel_l2_f64("fast vs baseline", &outputs[0], &outputs[1])?;
    let differ = outputs[0]
        .iter()
        .zip(&outputs[1])
        .filter(|(a, b)| a != b)
        .count();
    println!("    fast vs baseline: rel-L2 {rel:.2e}, {differ} of {n} values differ");
    ensure!(rel <= 1e-3, "fast vs baseline: rel-L2 {rel:.3e} > 1e-3");
    Ok(())
}
