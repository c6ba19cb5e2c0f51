//! GPU tests of the row kernels of LayerNormalization, kiln's AddLayerNorm and Softmax /
//! LogSoftmax (`harness = false`), and of the Add → LayerNormalization fusion through the
//! whole engine.
//!
//! Kernel tests: f32, f16 and bf16 rows of 1, 7, 64, 127, 768, 1000, 1024, 3000, 4096 and
//! 9001 values (every plan: a few threads per row, a full warp, a block, the multi-pass
//! kernel), 1, 5 and 130 rows, against kiln-reference on fresh random inputs. Every output is
//! poisoned (NaN bytes) before the launch and sits between 16-byte guards that must still
//! hold their poison afterwards (nothing written past a row); the shifted cases move every
//! address one element off 16-byte alignment (the element-by-element path). Tolerances:
//! relative L2 1e-5 for f32, 1e-2 for f16/bf16; a NaN where the reference has none fails.
//!
//! Engine test: Add → LayerNormalization models (the sum read by nothing else, by a Relu, or a
//! graph output; the addend full-size or one row) built with the fusion on and with
//! `Fusions::none()`, fp32/fp16/bf16, run on bound device buffers poisoned before each run
//! and compared with kiln-reference; the fused build must hold an AddLayerNorm step and no
//! Add or LayerNormalization step, the other build none.
//!
//! Without a CUDA device every test is reported as skipped and the run succeeds; with
//! `KILN_GPU_REQUIRED=1` a missing device fails. An optional argument filters tests by name.
//! Run: `KILN_GPU_REQUIRED=1 cargo test -p kiln-engine --release --test gpu_norm_fusion`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use kiln_core::{
    DataType, DevicePtr, Dim, Engine as _, ExecutionContext as _, HostTensor, Precision,
    StreamHandle,
};
use kiln_cuda::{DeviceAllocator, DeviceBuffer, DeviceMemory as _, copy};
use kiln_engine::kernels::nvrtc::{norm, softmax};
use kiln_engine::plan::Fusions;
use kiln_engine::{BuildConfig, Builder, Engine, ExecutionContext};
use kiln_onnx::{AttrValue, Graph, GraphBuilder, Tensor, ValueInfo};
use kiln_reference::{Interpreter, Value};

#[path = "common/kernel_ctx.rs"]
mod kernel_ctx;
use kernel_ctx::{Ctx, decode, encode};

fn setup() -> Result<Ctx> {
    kernel_ctx::setup(0x6e6f_726d)
}

type TestFn = fn(&Ctx) -> Result<()>;

const TESTS: &[(&str, TestFn)] = &[
    ("layer_norm_rows", layer_norm_rows),
    ("add_layer_norm_rows", add_layer_norm_rows),
    ("softmax_rows", softmax_rows),
    ("softmax_special_values", softmax_special_values),
    ("engine_add_layer_norm", engine_add_layer_norm),
];

const FLOATS: [DataType; 3] = [DataType::F32, DataType::F16, DataType::BF16];
const LENS: [usize; 10] = [1, 7, 64, 127, 768, 1000, 1024, 3000, 4096, 9001];
const ROWS: [usize; 3] = [1, 5, 130];
/// Bytes of poison on either side of every output.
const GUARD: usize = 16;

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(
        TESTS,
        || setup().map_err(|reason| format!("no CUDA device or NVRTC: {reason:#}")),
        |ctx| {
            println!(
                "kernel modules compiled: {}",
                ctx.lib.module_names().join(", ")
            );
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Host tensors, device placement, the reference, comparison

#[derive(Debug, Clone)]
struct T {
    dtype: DataType,
    dims: Vec<usize>,
    bytes: Vec<u8>,
}

fn t(dtype: DataType, dims: &[usize], v: &[f64]) -> T {
    T {
        dtype,
        dims: dims.to_vec(),
        bytes: encode(dtype, v),
    }
}

fn tolerance(dtype: DataType) -> f64 {
    match dtype {
        DataType::F32 => 1e-5,
        _ => 1e-2,
    }
}

impl Ctx {
    /// Uniform in [lo, hi), never exactly zero.
    fn rand(&self, dtype: DataType, dims: &[usize], lo: f64, hi: f64) -> T {
        let n: usize = dims.iter().product();
        let mut r = self.rng.borrow_mut();
        let v: Vec<f64> = (0..n)
            .map(|_| {
                loop {
                    let v = lo + (hi - lo) * r.f64();
                    if v != 0.0 {
                        break v;
                    }
                }
            })
            .collect();
        t(dtype, dims, &v)
    }
}

/// A device copy of some bytes at `GUARD + shift` inside a buffer whose other bytes are
/// poison (0xff).
struct Placed {
    buf: DeviceBuffer,
    off: usize,
    bytes: usize,
}

impl Placed {
    fn ptr(&self) -> DevicePtr {
        DevicePtr(self.buf.device_ptr() + self.off as u64)
    }
}

fn place_bytes(ctx: &Ctx, bytes: Option<&[u8]>, len: usize, shift: usize) -> Result<Placed> {
    let off = GUARD + shift;
    let mut host = vec![0xffu8; off + len + GUARD];
    if let Some(b) = bytes {
        host[off..off + len].copy_from_slice(b);
    }
    let mut buf = ctx.alloc.alloc(host.len(), &ctx.stream)?;
    copy::htod(&ctx.stream, &host, &mut buf)?;
    Ok(Placed {
        buf,
        off,
        bytes: len,
    })
}

/// `x` uploaded `shift` bytes off 16-byte alignment.
fn upload(ctx: &Ctx, x: &T, shift: usize) -> Result<Placed> {
    place_bytes(ctx, Some(&x.bytes), x.bytes.len(), shift)
}

/// A poisoned output of `bytes`.
fn poisoned(ctx: &Ctx, bytes: usize, shift: usize) -> Result<Placed> {
    place_bytes(ctx, None, bytes, shift)
}

/// The output's bytes, after checking that the guards still hold their poison.
fn read(ctx: &Ctx, what: &str, p: &Placed) -> Result<Vec<u8>> {
    ctx.stream.synchronize()?;
    let mut host = vec![0u8; p.off + p.bytes + GUARD];
    copy::dtoh(&ctx.stream, &p.buf, &mut host)?;
    let end = p.off + p.bytes;
    ensure!(
        host[..p.off].iter().chain(&host[end..]).all(|&b| b == 0xff),
        "{what}: bytes written outside the output"
    );
    Ok(host[p.off..end].to_vec())
}

fn to_value(x: &T, name: &str) -> Result<Value> {
    let tensor = Tensor::from_bytes(name, x.dtype, x.dims.clone(), x.bytes.clone())?;
    Ok(Value::from_tensor(&tensor)?)
}

fn tensor(name: &str, x: &T) -> Tensor {
    Tensor::from_bytes(name, x.dtype, x.dims.clone(), x.bytes.clone()).expect("tensor")
}

fn dims_of(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

/// kiln-reference's outputs of `g` fed `feed` (name, tensor), by name.
fn reference(g: Graph, feed: &[(&str, &T)]) -> Result<HashMap<String, T>> {
    let interp = Interpreter::new(g).context("reference model")?;
    let mut inputs = HashMap::new();
    for (name, x) in feed {
        inputs.insert(name.to_string(), to_value(x, name)?);
    }
    let res = interp.run(inputs).context("reference run")?;
    res.into_iter()
        .map(|(k, v)| {
            let bytes = v.to_tensor(&k)?.as_bytes().to_vec();
            Ok((
                k,
                T {
                    dtype: v.dtype(),
                    dims: v.shape().to_vec(),
                    bytes,
                },
            ))
        })
        .collect()
}

/// Relative L2 error of `got` against `want` within `tol`; NaN only where the reference has
/// NaN, infinities equal.
fn compare(what: &str, want: &T, got: &[u8], tol: f64) -> Result<()> {
    ensure!(
        got.len() == want.bytes.len(),
        "{what}: {} bytes, want {}",
        got.len(),
        want.bytes.len()
    );
    let (w, g) = (decode(want.dtype, &want.bytes), decode(want.dtype, got));
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (a, b)) in w.iter().zip(&g).enumerate() {
        if a.is_nan() {
            ensure!(b.is_nan(), "{what}: element {i} is {b}, want NaN");
            continue;
        }
        ensure!(!b.is_nan(), "{what}: element {i} is NaN, want {a}");
        if a.is_infinite() {
            ensure!(a == b, "{what}: element {i} is {b}, want {a}");
            continue;
        }
        num += (a - b) * (a - b);
        den += a * a;
    }
    let rel = num.sqrt() / den.sqrt().max(1e-30);
    ensure!(
        rel <= tol || num.sqrt() <= tol * 1e-3,
        "{what}: relative L2 error {rel:.3e} > {tol:.0e}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// Byte shift that breaks 16-byte alignment (one element), or 0.
fn shift_of(dtype: DataType, unaligned: bool) -> usize {
    if unaligned { dtype.size_in_bytes() } else { 0 }
}

fn layer_norm_rows(ctx: &Ctx) -> Result<()> {
    for dt in FLOATS {
        for len in LENS {
            for rows in ROWS {
                // (unaligned, scale of one value, bias, statistics)
                for (unaligned, scalar_scale, with_bias, stats) in [
                    (false, false, true, true),
                    (true, false, false, false),
                    (false, true, true, false),
                ] {
                    let what = format!(
                        "LayerNorm {dt} [{rows}, {len}] unaligned {unaligned} scalar scale \
                         {scalar_scale} bias {with_bias} stats {stats}"
                    );
                    let dims = [rows, len];
                    let x = ctx.rand(dt, &dims, -3.0, 5.0);
                    let sdims = if scalar_scale { vec![1] } else { vec![len] };
                    let scale = ctx.rand(dt, &sdims, 0.5, 1.5);
                    let bias = ctx.rand(dt, &[len], -0.5, 0.5);
                    let outs: &[&str] = if stats { &["y", "mean", "inv"] } else { &["y"] };
                    let mut b = GraphBuilder::new("t").opset(17);
                    let xv = b.input("x", dt, &dims_of(&dims));
                    let sv = b.initializer(tensor("s", &scale));
                    let mut ins = vec![xv, sv];
                    if with_bias {
                        ins.push(b.initializer(tensor("b", &bias)));
                    }
                    let refs: Vec<&kiln_onnx::builder::Value> = ins.iter().collect();
                    let _ = b
                        .node("LayerNormalization", &refs)
                        .attr("axis", -1i64)
                        .attr("epsilon", AttrValue::Float(1e-5))
                        .outputs_named(outs);
                    for o in outs {
                        b.output_value(ValueInfo::unknown(*o));
                    }
                    let want = reference(b.graph(), &[("x", &x)])
                        .with_context(|| format!("{what}: reference"))?;
                    let sh = shift_of(dt, unaligned);
                    let px = upload(ctx, &x, sh)?;
                    let ps = upload(ctx, &scale, 0)?;
                    let pb = upload(ctx, &bias, 0)?;
                    let py = poisoned(ctx, x.bytes.len(), sh)?;
                    let pm = poisoned(ctx, rows * 4, 0)?;
                    let pi = poisoned(ctx, rows * 4, 0)?;
                    let io = norm::LayerNormIo {
                        x: px.ptr(),
                        scale: ps.ptr(),
                        bias: if with_bias { pb.ptr() } else { DevicePtr(0) },
                        y: py.ptr(),
                        mean: if stats { pm.ptr() } else { DevicePtr(0) },
                        inv_std: if stats { pi.ptr() } else { DevicePtr(0) },
                    };
                    let blen = if with_bias { len } else { 0 };
                    norm::layer_norm(
                        &ctx.lib,
                        &ctx.stream,
                        dt,
                        rows,
                        len,
                        (sdims[0], blen),
                        1e-5,
                        io,
                    )
                    .with_context(|| format!("{what}: launch"))?;
                    compare(&what, &want["y"], &read(ctx, &what, &py)?, tolerance(dt))?;
                    if stats {
                        // statistics are f32 (stash_type 1) whatever the element type
                        compare(&what, &want["mean"], &read(ctx, &what, &pm)?, 1e-5)?;
                        compare(&what, &want["inv"], &read(ctx, &what, &pi)?, 1e-4)?;
                    } else {
                        ensure!(
                            read(ctx, &what, &pm)?.iter().all(|&b| b == 0xff),
                            "{what}: statistics written though not asked for"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn add_layer_norm_rows(ctx: &Ctx) -> Result<()> {
    for dt in FLOATS {
        for len in LENS {
            for rows in ROWS {
                // (unaligned, B one row, sum written)
                for (unaligned, b_row, write_sum) in [
                    (false, false, true),
                    (true, false, false),
                    (false, true, true),
                ] {
                    let what = format!(
                        "AddLayerNorm {dt} [{rows}, {len}] unaligned {unaligned} row addend \
                         {b_row} sum {write_sum}"
                    );
                    let dims = [rows, len];
                    let bdims = if b_row { vec![len] } else { dims.to_vec() };
                    let a = ctx.rand(dt, &dims, -3.0, 5.0);
                    let bb = ctx.rand(dt, &bdims, -2.0, 2.0);
                    let scale = ctx.rand(dt, &[len], 0.5, 1.5);
                    let bias = ctx.rand(dt, &[len], -0.5, 0.5);
                    let mut b = GraphBuilder::new("t").opset(17);
                    let av = b.input("a", dt, &dims_of(&dims));
                    let bv = b.input("b", dt, &dims_of(&bdims));
                    let sv = b.initializer(tensor("s", &scale));
                    let biv = b.initializer(tensor("bias", &bias));
                    let sum = b.node("Add", &[&av, &bv]).output_named("sum");
                    let _ = b
                        .node("LayerNormalization", &[&sum, &sv, &biv])
                        .attr("epsilon", AttrValue::Float(1e-5))
                        .outputs_named(&["y"]);
                    b.output_value(ValueInfo::unknown("y"));
                    b.output_value(ValueInfo::unknown("sum"));
                    let want = reference(b.graph(), &[("a", &a), ("b", &bb)])
                        .with_context(|| format!("{what}: reference"))?;
                    let sh = shift_of(dt, unaligned);
                    let pa = upload(ctx, &a, sh)?;
                    let pbb = upload(ctx, &bb, sh)?;
                    let ps = upload(ctx, &scale, 0)?;
                    let pbias = upload(ctx, &bias, 0)?;
                    let py = poisoned(ctx, a.bytes.len(), sh)?;
                    let psum = poisoned(ctx, a.bytes.len(), sh)?;
                    let io = norm::AddLayerNormIo {
                        a: pa.ptr(),
                        b: pbb.ptr(),
                        b_full: !b_row,
                        scale: ps.ptr(),
                        bias: pbias.ptr(),
                        y: py.ptr(),
                        sum: if write_sum { psum.ptr() } else { DevicePtr(0) },
                    };
                    norm::add_layer_norm(
                        &ctx.lib,
                        &ctx.stream,
                        dt,
                        rows,
                        len,
                        (len, len),
                        1e-5,
                        io,
                    )
                    .with_context(|| format!("{what}: launch"))?;
                    compare(&what, &want["y"], &read(ctx, &what, &py)?, tolerance(dt))?;
                    let got_sum = read(ctx, &what, &psum)?;
                    if write_sum {
                        // rounded once to the element type, as the Add stores it
                        compare(
                            &format!("{what} sum"),
                            &want["sum"],
                            &got_sum,
                            tolerance(dt),
                        )?;
                    } else {
                        ensure!(
                            got_sum.iter().all(|&b| b == 0xff),
                            "{what}: sum written though not asked for"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn softmax_case(ctx: &Ctx, what: &str, x: &T, log: bool, unaligned: bool) -> Result<()> {
    let (rows, len) = (x.dims[0], x.dims[1]);
    let op = if log { "LogSoftmax" } else { "Softmax" };
    let mut b = GraphBuilder::new("t").opset(13);
    let xv = b.input("x", x.dtype, &dims_of(&x.dims));
    let _ = b.node(op, &[&xv]).attr("axis", -1i64).outputs_named(&["y"]);
    b.output_value(ValueInfo::unknown("y"));
    let want = reference(b.graph(), &[("x", x)]).with_context(|| format!("{what}: reference"))?;
    let sh = shift_of(x.dtype, unaligned);
    let px = upload(ctx, x, sh)?;
    let py = poisoned(ctx, x.bytes.len(), sh)?;
    let geo = softmax::softmax_geometry(&[rows, len], 1, false)?;
    softmax::softmax(&ctx.lib, &ctx.stream, x.dtype, geo, log, px.ptr(), py.ptr())
        .with_context(|| format!("{what}: launch"))?;
    compare(what, &want["y"], &read(ctx, what, &py)?, tolerance(x.dtype))
}

fn softmax_rows(ctx: &Ctx) -> Result<()> {
    for dt in FLOATS {
        for len in LENS {
            for rows in ROWS {
                for log in [false, true] {
                    for unaligned in [false, true] {
                        let x = ctx.rand(dt, &[rows, len], -6.0, 6.0);
                        let what = format!(
                            "{} {dt} [{rows}, {len}] unaligned {unaligned}",
                            if log { "LogSoftmax" } else { "Softmax" }
                        );
                        softmax_case(ctx, &what, &x, log, unaligned)?;
                    }
                }
            }
        }
    }
    // BERT-base's attention scores, one head-batch's worth: [12 * 128, 128]
    for dt in FLOATS {
        let x = ctx.rand(dt, &[12 * 128, 128], -8.0, 8.0);
        softmax_case(ctx, &format!("Softmax {dt} scores"), &x, false, false)?;
    }
    Ok(())
}

/// Rows with a NaN, all -inf, a +inf and a -inf among finite values, next to plain rows: NaN
/// propagates over its row only, -inf values give 0 (Softmax) / -inf (LogSoftmax).
fn softmax_special_values(ctx: &Ctx) -> Result<()> {
    for dt in FLOATS {
        for len in [64usize, 127, 768, 3000] {
            let rows = 6;
            let mut v: Vec<f64> = {
                let x = ctx.rand(DataType::F32, &[rows, len], -6.0, 6.0);
                decode(DataType::F32, &x.bytes)
            };
            v[len + 3] = f64::NAN;
            for k in 0..len {
                v[2 * len + k] = f64::NEG_INFINITY;
            }
            v[3 * len + len / 2] = f64::INFINITY;
            v[4 * len + 1] = f64::NEG_INFINITY;
            let x = t(dt, &[rows, len], &v);
            for log in [false, true] {
                for unaligned in [false, true] {
                    let what = format!("special {dt} len {len} log {log} unaligned {unaligned}");
                    softmax_case(ctx, &what, &x, log, unaligned)?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Engine

/// Ops of the steps of `engine` run at the bound shapes (one profiled run), with every
/// output of `count` poisoned runs.
fn engine_runs(
    engine: &Arc<Engine>,
    inputs: &[HostTensor],
    count: usize,
) -> Result<(Vec<Vec<HostTensor>>, Vec<String>)> {
    let mut ctx = ExecutionContext::new(engine.clone())?;
    let stream = ctx.stream().clone();
    let alloc = DeviceAllocator::new(engine.device());
    let mut keep = Vec::new();
    for t in inputs {
        ctx.set_input_shape(&t.name, &t.dims)?;
        let mut b = alloc.alloc(t.data.len().max(1), &stream)?;
        copy::htod(&stream, &t.data, &mut b)?;
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
            copy::htod(&stream, &vec![0xffu8; t.data.len()], b)?;
        }
        // SAFETY: every bound address is a buffer in `keep` / `outs`, alive until the stream
        // is synchronised below.
        let run = unsafe { ctx.enqueue(StreamHandle(stream.id())) };
        stream.synchronize()?;
        run?;
        let mut result = Vec::new();
        for (t, b) in &outs {
            let mut t = t.clone();
            copy::dtoh(&stream, b, &mut t.data)?;
            result.push(t);
        }
        results.push(result);
    }
    // SAFETY: as above; run_profiled waits for its stream before returning.
    let profile = unsafe { ctx.run_profiled() }?;
    stream.synchronize()?;
    let ops = profile.steps.iter().map(|s| s.op.clone()).collect();
    drop(keep);
    Ok((results, ops))
}

fn engine_add_layer_norm(ctx: &Ctx) -> Result<()> {
    // (hidden, the addend one row, Relu reads the sum, the sum is a graph output)
    let cases = [
        (768usize, false, false, false),
        (768, false, true, false),
        (768, false, false, true),
        (100, true, true, true),
        (1000, true, false, false),
    ];
    for (h, b_row, relu, sum_out) in cases {
        let dims = [2usize, 5, h];
        let rdims = if b_row { vec![h] } else { dims.to_vec() };
        let scale = ctx.rand(DataType::F32, &[h], 0.5, 1.5);
        let bias = ctx.rand(DataType::F32, &[h], -0.5, 0.5);
        let mut b = GraphBuilder::new("t").opset(17);
        let x = b.input("x", DataType::F32, &dims_of(&dims));
        let r = b.input("r", DataType::F32, &dims_of(&rdims));
        let s = b.initializer(tensor("s", &scale));
        let bi = b.initializer(tensor("bias", &bias));
        let sum = b.node("Add", &[&x, &r]).output_named("sum");
        let _ = b
            .node("LayerNormalization", &[&sum, &s, &bi])
            .attr("axis", -1i64)
            .attr("epsilon", AttrValue::Float(1e-5))
            .outputs_named(&["y"]);
        b.output_value(ValueInfo::unknown("y"));
        if relu {
            let _ = b.node("Relu", &[&sum]).output_named("z");
            b.output_value(ValueInfo::unknown("z"));
        }
        if sum_out {
            b.output_value(ValueInfo::unknown("sum"));
        }
        let graph = b.build()?;
        for precision in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
            let tol = if precision == Precision::Fp32 {
                1e-5
            } else {
                1e-2
            };
            for fused in [true, false] {
                let what = format!(
                    "Add+LN h {h} row {b_row} relu {relu} sum out {sum_out} [{}] fused {fused}",
                    precision.name()
                );
                let fusions = if fused {
                    Fusions {
                        add_layer_norm: true,
                        ..Fusions::none()
                    }
                } else {
                    Fusions::none()
                };
                let config = BuildConfig {
                    precision,
                    kernel_cache_dir: None,
                    fusions,
                    ..BuildConfig::default()
                };
                let plan = Builder::new(&ctx.device)
                    .build(&graph, &config)
                    .with_context(|| format!("{what}: build"))?;
                let engine = Engine::from_plan(&ctx.device, &plan)?;
                let xs = ctx.rand(DataType::F32, &dims, -3.0, 5.0);
                let rs = ctx.rand(DataType::F32, &rdims, -2.0, 2.0);
                let host = [("x", &xs), ("r", &rs)]
                    .iter()
                    .map(|(n, t)| HostTensor {
                        name: n.to_string(),
                        dtype: t.dtype,
                        dims: t.dims.clone(),
                        data: t.bytes.clone(),
                    })
                    .collect::<Vec<_>>();
                let want = reference(graph.clone(), &[("x", &xs), ("r", &rs)])?;
                let (results, ops) =
                    engine_runs(&engine, &host, 2).with_context(|| format!("{what}: run"))?;
                let has = |op: &str| ops.iter().any(|o| o == op);
                if fused {
                    ensure!(
                        has("AddLayerNorm") && !has("Add") && !has("LayerNormalization"),
                        "{what}: steps {ops:?}"
                    );
                } else {
                    ensure!(
                        !has("AddLayerNorm") && has("Add") && has("LayerNormalization"),
                        "{what}: steps {ops:?}"
                    );
                }
                for (k, result) in results.iter().enumerate() {
                    ensure!(result.len() == graph.outputs.len(), "{what}: output count");
                    for out in result {
                        let w = want.get(&out.name).context("reference output missing")?;
                        ensure!(
                            out.dims == w.dims && out.dtype == w.dtype,
                            "{what}: output {} is {} {:?}, want {} {:?}",
                            out.name,
                            out.dtype,
                            out.dims,
                            w.dtype,
                            w.dims
                        );
                        compare(&format!("{what} run {k} {}", out.name), w, &out.data, tol)?;
                    }
                }
            }
        }
    }
    Ok(())
}
