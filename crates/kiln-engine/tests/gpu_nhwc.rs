//! GPU tests of the NHWC regions (`builder::rewrite::nhwc`, `harness = false`):
//!
//! - `nhwc_pool_kernels`: the NHWC pool kernels (MaxPool / AveragePool windows with strides,
//!   pads, dilations, ceil_mode, count_include_pad; GlobalAverage/MaxPool) in f32, f16 and
//!   bf16, on channel counts that take the 16-byte vector path (8, 24) and the scalar one (3,
//!   5), against kiln-reference's NCHW pools; outputs poisoned with NaN bytes first.
//!   Window cases include overlapping rows (3×3 s1 and s2), row blocks of 4 with a remainder,
//!   dilation, and windows that skip rows (1×1 s2).
//! - `nhwc_entry_kernel`: the NCHW → NHWC entry (`layout_nhwc`) from f32 to f16/bf16/f32 and
//!   same-type f16/bf16, C = 1, 3, 4, 8, 13, 24, 40 unpadded and padded to a multiple of 8,
//!   odd H×W, each of its three kernels (vector, per-position with a misaligned output,
//!   tiled), bit-exact against the host's conversion (round to nearest even), padded channels
//!   exactly zero, outputs poisoned with NaN bytes first.
//! - `engine_resnet_like`: a small ResNet (3-channel 7×7 s2 stem conv + BatchNorm + ReLU,
//!   MaxPool 3×3 s2 p1, a residual block, a strided block with a 1×1 downsample, GAP,
//!   Flatten, Gemm) built in fp16 and bf16 with the default fusions (NHWC on: the profile
//!   must show NhwcConv steps, one NhwcEntry (the stem keeps its 3 channels by default), no
//!   Transpose and only the output's boundary Cast) and with `Fusions::none()` (no
//!   NhwcConv), at batch 1 and 4, against kiln-reference (rel-L2 1e-2) on device buffers
//!   whose outputs are NaN-poisoned before each of two runs (one profiled, one enqueued).
//! - `engine_fixture_cnns`: fixtures/cnn_legacy.onnx and cnn_dynamo.onnx the same way with
//!   the default fusions (NhwcConv steps required).
//! - `nhwc_timing` (printed, not asserted): the entry kernel at ResNet-50's input
//!   `[256, 3, 224, 224]` f32 → `[256, 224, 224, 8]` f16 and the stem MaxPool 3×3 s2 p1 over
//!   `[256, 112, 112, 64]` f16, median of 25 CUDA-event timings after warm-up, with the
//!   effective bandwidth.
//!
//! Run: `KILN_GPU_REQUIRED=1 cargo test -p kiln-engine --release --test gpu_nhwc`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use half::{bf16, f16};
use kiln_core::{
    DataType, DevicePtr, Dim, ExecutionContext as _, OptimizationProfile, Precision, ProfileInput,
    StreamHandle,
};
use kiln_cuda::{Device, DeviceAllocator, DeviceMemory as _, Stream, copy};
use kiln_engine::kernels::conv::{nchw_to_nhwc, nhwc_to_nchw};
use kiln_engine::kernels::nvrtc::{DevicePtr as KPtr, KernelLibrary, layout_nhwc, pool};
use kiln_engine::plan::Fusions;
use kiln_engine::{BuildConfig, Builder, Engine, ExecutionContext};
use kiln_onnx::{Graph, GraphBuilder, Tensor};
use kiln_reference::{Interpreter, Value};

struct Ctx {
    device: Arc<Device>,
    alloc: DeviceAllocator,
    stream: Arc<Stream>,
    lib: KernelLibrary,
}

type TestFn = fn(&Ctx) -> Result<()>;

const TESTS: &[(&str, TestFn)] = &[
    ("nhwc_pool_kernels", nhwc_pool_kernels),
    ("nhwc_entry_kernel", nhwc_entry_kernel),
    ("engine_resnet_like", engine_resnet_like),
    ("engine_fixture_cnns", engine_fixture_cnns),
    ("nhwc_timing", nhwc_timing),
];

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(
        TESTS,
        || setup().map_err(|reason| format!("no CUDA device or NVRTC: {reason:#}")),
        |_| {},
    )
}

fn setup() -> Result<Ctx> {
    let device = Device::open(0)?;
    let stream = Stream::new(&device)?;
    let lib = KernelLibrary::new(&device)?.with_cache_dir(None);
    println!(
        "device: {} (cc {:?})",
        device.info().name,
        device.info().compute_capability
    );
    Ok(Ctx {
        alloc: DeviceAllocator::new(&device),
        device,
        stream,
        lib,
    })
}

// ---------------------------------------------------------------------------------------------
// Host helpers

fn random(rng: &mut fastrand::Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + rng.f32() * (hi - lo)).collect()
}

fn encode(dt: DataType, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * dt.size_in_bytes());
    for &x in v {
        match dt {
            DataType::F16 => out.extend(f16::from_f32(x).to_le_bytes()),
            DataType::BF16 => out.extend(bf16::from_f32(x).to_le_bytes()),
            _ => out.extend(x.to_le_bytes()),
        }
    }
    out
}

fn decode(dt: DataType, b: &[u8]) -> Vec<f32> {
    match dt {
        DataType::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DataType::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

/// rel-L2 of `got` against `want`; a non-finite value in `got` fails.
fn check(what: &str, want: &[f64], got: &[f64], tol: f64) -> Result<()> {
    ensure!(
        want.len() == got.len(),
        "{what}: {} values, want {}",
        got.len(),
        want.len()
    );
    ensure!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite output"
    );
    ensure!(
        want.iter().any(|v| *v != 0.0),
        "{what}: the expected values are all zero"
    );
    let num: f64 = want.iter().zip(got).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|a| a * a).sum::<f64>().max(1e-30);
    let rel = (num / den).sqrt();
    ensure!(rel <= tol, "{what}: rel-L2 {rel:.3e} > {tol:.1e}");
    Ok(())
}

fn known(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

// ---------------------------------------------------------------------------------------------
// NHWC pool kernels

/// kiln-reference's `op` over NCHW `x` (f32 values), with `attrs`.
fn reference_pool(
    op: &str,
    x: &[f32],
    dims: [usize; 4],
    attrs: &[(&str, Vec<i64>)],
    scalar_attrs: &[(&str, i64)],
) -> Result<(Vec<f64>, Vec<usize>)> {
    let mut b = GraphBuilder::new("pool").opset(19);
    let xv = b.input("x", DataType::F32, &known(&dims));
    let mut n = b.node(op, &[&xv]);
    for (k, v) in attrs {
        n = n.attr(k, v.clone());
    }
    for (k, v) in scalar_attrs {
        n = n.attr(k, *v);
    }
    let y = n.output_named("y");
    b.output_value(kiln_onnx::ValueInfo::unknown(y.name()));
    let g = b.build()?;
    let t = Tensor::from_vec("x", dims.to_vec(), x.to_vec())?;
    let mut out =
        Interpreter::new(g)?.run(HashMap::from([("x".to_string(), Value::from_tensor(&t)?)]))?;
    let y = out.remove("y").context("no output")?;
    Ok((y.to_f64_vec(), y.shape().to_vec()))
}

/// Uploads NHWC data of `dt`, runs `launch(x, y)` into a NaN-poisoned `[y_elems]` buffer
/// and returns the output (NHWC, as f32).
fn on_device(
    ctx: &Ctx,
    dt: DataType,
    x: &[f32],
    y_elems: usize,
    launch: impl FnOnce(KPtr, KPtr) -> kiln_engine::kernels::nvrtc::Result<()>,
) -> Result<Vec<f32>> {
    let bytes = encode(dt, x);
    let mut dx = ctx.alloc.alloc(bytes.len().max(1), &ctx.stream)?;
    copy::htod(&ctx.stream, &bytes, &mut dx)?;
    let yb = y_elems * dt.size_in_bytes();
    let mut dy = ctx.alloc.alloc(yb.max(1), &ctx.stream)?;
    copy::htod(&ctx.stream, &vec![0xffu8; yb], &mut dy)?;
    launch(KPtr(dx.device_ptr()), KPtr(dy.device_ptr()))?;
    let mut out = vec![0u8; yb];
    copy::dtoh(&ctx.stream, &dy, &mut out)?;
    ctx.stream.synchronize()?;
    Ok(decode(dt, &out))
}

/// (kernel, strides, pads [t, l, b, r], dilations, ceil)
type WindowCase = ([usize; 2], [usize; 2], [usize; 4], [usize; 2], bool);

fn nhwc_pool_kernels(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(61);
    let cfgs: [WindowCase; 6] = [
        ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], false),
        ([3, 3], [1, 1], [1, 1, 1, 1], [1, 1], false),
        ([1, 1], [2, 2], [0, 0, 0, 0], [1, 1], false),
        ([2, 2], [2, 2], [0, 0, 0, 0], [1, 1], true),
        ([3, 2], [1, 2], [1, 0, 2, 1], [2, 1], false),
        ([3, 3], [2, 2], [0, 1, 1, 0], [1, 1], true),
    ];
    for dt in [DataType::F32, DataType::F16, DataType::BF16] {
        let tol = if dt == DataType::F32 { 1e-5 } else { 1e-2 };
        for c in [8usize, 24, 3, 5] {
            let dims = [2usize, c, 11, 9];
            let n: usize = dims.iter().product();
            // values as the device stores them
            let x = decode(dt, &encode(dt, &random(&mut rng, n, -5.0, 5.0)));
            let xh = nchw_to_nhwc(&x, dims)?;
            for (k, s, p, d, ceil) in cfgs {
                let out = [
                    pool::Window2d::output_len(dims[2], k[0], s[0], d[0], (p[0], p[2]), ceil)
                        .context("size")?,
                    pool::Window2d::output_len(dims[3], k[1], s[1], d[1], (p[1], p[3]), ceil)
                        .context("size")?,
                ];
                let w = pool::Window2d {
                    input: [dims[2], dims[3]],
                    output: out,
                    kernel: k,
                    strides: s,
                    dilations: d,
                    pad_begin: [p[0], p[1]],
                    pad_end: [p[2], p[3]],
                };
                let attrs = [
                    ("kernel_shape", vec![k[0] as i64, k[1] as i64]),
                    ("strides", vec![s[0] as i64, s[1] as i64]),
                    ("pads", p.iter().map(|&v| v as i64).collect()),
                    ("dilations", vec![d[0] as i64, d[1] as i64]),
                ];
                let odims = [dims[0], c, out[0], out[1]];
                let y_elems: usize = odims.iter().product();
                let kinds = [
                    ("MaxPool", pool::PoolKind::Max, None),
                    (
                        "AveragePool",
                        pool::PoolKind::Average {
                            count_include_pad: false,
                        },
                        Some(0),
                    ),
                    (
                        "AveragePool",
                        pool::PoolKind::Average {
                            count_include_pad: true,
                        },
                        Some(1),
                    ),
                ];
                for (op, kind, include) in kinds {
                    let mut scalars = vec![("ceil_mode", i64::from(ceil))];
                    if let Some(i) = include {
                        scalars.push(("count_include_pad", i));
                    }
                    let (want, wdims) = reference_pool(op, &x, dims, &attrs, &scalars)?;
                    ensure!(
                        wdims == odims,
                        "{op}: reference gives {wdims:?}, want {odims:?}"
                    );
                    let got = on_device(ctx, dt, &xh, y_elems, |px, py| {
                        pool::pool2d_nhwc(&ctx.lib, &ctx.stream, dt, kind, dims[0], c, &w, px, py)
                    })?;
                    let got: Vec<f64> = nhwc_to_nchw(&got, odims)?
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect();
                    check(&format!("{op} {dt} C={c} {w:?} {kind:?}"), &want, &got, tol)?;
                }
            }
            for (op, max) in [("GlobalMaxPool", true), ("GlobalAveragePool", false)] {
                let (want, _) = reference_pool(op, &x, dims, &[], &[])?;
                let got = on_device(ctx, dt, &xh, dims[0] * c, |px, py| {
                    pool::global_pool_nhwc(
                        &ctx.lib,
                        &ctx.stream,
                        dt,
                        max,
                        dims[0],
                        dims[2] * dims[3],
                        c,
                        px,
                        py,
                    )
                })?;
                // [N, 1, 1, C] has the bytes of [N, C, 1, 1]
                let got: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
                check(&format!("{op} {dt} C={c}"), &want, &got, tol)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Engines

struct NetBuilder {
    b: GraphBuilder,
    rng: fastrand::Rng,
    k: usize,
}

impl NetBuilder {
    fn weight(&mut self, dims: &[usize], lo: f32, hi: f32) -> kiln_onnx::builder::Value {
        self.k += 1;
        let n = dims.iter().product();
        let t = Tensor::from_vec(
            format!("p{}", self.k),
            dims.to_vec(),
            random(&mut self.rng, n, lo, hi),
        )
        .expect("weight");
        self.b.initializer(t)
    }

    /// Conv with bias, He-like scale so activations keep their size through the layers.
    fn conv(
        &mut self,
        x: &kiln_onnx::builder::Value,
        (c_in, c_out, k, stride, pad): (usize, usize, usize, i64, i64),
    ) -> kiln_onnx::builder::Value {
        let a = (3.0 / (c_in * k * k) as f32).sqrt();
        let w = self.weight(&[c_out, c_in, k, k], -a, a);
        let b = self.weight(&[c_out], -0.1, 0.1);
        self.b
            .node("Conv", &[x, &w, &b])
            .attr("pads", vec![pad; 4])
            .attr("strides", vec![stride, stride])
            .output()
    }
}

/// stem conv 3→16 7×7 s2 p3 + BatchNorm + ReLU, MaxPool 3×3 s2 p1, residual block (16), strided
/// block 16→32 with a 1×1 s2 downsample, GAP, Flatten, Gemm → 10. Input `[N, 3, 32, 32]`.
fn resnet_like() -> Result<Graph> {
    let mut n = NetBuilder {
        b: GraphBuilder::new("resnet_like").opset(17),
        rng: fastrand::Rng::with_seed(71),
        k: 0,
    };
    let x = n.b.input(
        "x",
        DataType::F32,
        &[
            Dim::Symbol("N".into()),
            Dim::Known(3),
            Dim::Known(32),
            Dim::Known(32),
        ],
    );
    let s = n.conv(&x, (3, 16, 7, 2, 3));
    let (g, be, m) = (
        n.weight(&[16], 0.5, 1.5),
        n.weight(&[16], -0.2, 0.2),
        n.weight(&[16], -0.2, 0.2),
    );
    let v = n.weight(&[16], 0.5, 1.5);
    let s =
        n.b.node("BatchNormalization", &[&s, &g, &be, &m, &v])
            .output();
    let s = n.b.node("Relu", &[&s]).output();
    let s =
        n.b.node("MaxPool", &[&s])
            .attr("kernel_shape", vec![3i64, 3])
            .attr("strides", vec![2i64, 2])
            .attr("pads", vec![1i64; 4])
            .output();
    // residual block
    let a = n.conv(&s, (16, 16, 3, 1, 1));
    let a = n.b.node("Relu", &[&a]).output();
    let a = n.conv(&a, (16, 16, 3, 1, 1));
    let a = n.b.node("Add", &[&a, &s]).output();
    let s = n.b.node("Relu", &[&a]).output();
    // strided block with a 1×1 downsample
    let a = n.conv(&s, (16, 32, 3, 2, 1));
    let a = n.b.node("Relu", &[&a]).output();
    let a = n.conv(&a, (32, 32, 3, 1, 1));
    let d = n.conv(&s, (16, 32, 1, 2, 0));
    let a = n.b.node("Add", &[&a, &d]).output();
    let s = n.b.node("Relu", &[&a]).output();
    let s = n.b.node("GlobalAveragePool", &[&s]).output();
    let s = n.b.node("Flatten", &[&s]).output();
    let w = n.weight(&[10, 32], -0.3, 0.3);
    let b = n.weight(&[10], -0.1, 0.1);
    let y =
        n.b.node("Gemm", &[&s, &w, &b])
            .attr("transB", 1i64)
            .output_named("y");
    n.b.output(
        &y,
        DataType::F32,
        &[Dim::Symbol("N".into()), Dim::Known(10)],
    );
    Ok(n.b.build()?)
}

/// A profile over the batch (1..16, opt 4) of every input (other dims as declared).
fn batch_profile(graph: &Graph) -> Result<OptimizationProfile> {
    let mut inputs = Vec::new();
    for i in &graph.inputs {
        let dims = i.shape.as_ref().context("input rank")?.dims().to_vec();
        let at = |b: usize| -> Vec<usize> {
            dims.iter()
                .enumerate()
                .map(|(k, d)| d.known().unwrap_or(if k == 0 { b } else { 1 }))
                .collect()
        };
        inputs.push(ProfileInput {
            name: i.name.clone(),
            min: at(1),
            opt: at(4),
            max: at(16),
        });
    }
    Ok(OptimizationProfile { inputs })
}

/// How the NHWC fusion must show in the profile's steps.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// NhwcConv steps, no Conv/FusedConv, one NhwcEntry (it absorbs the input's boundary
    /// Cast: one Cast, the output's), at most `transposes` Transpose steps.
    Nhwc { transposes: usize },
    /// No NhwcConv step.
    Nchw,
}

/// Builds `graph` at `precision` with `fusions`, then at each batch: random inputs, two runs
/// on bound device buffers (outputs NaN-poisoned before each; the first profiled, the second
/// enqueued), every f32 output against kiln-reference.
fn engine_check(
    ctx: &Ctx,
    what: &str,
    graph: &Graph,
    precision: Precision,
    fusions: Fusions,
    expect: Expect,
) -> Result<()> {
    let config = BuildConfig {
        precision,
        profiles: vec![batch_profile(graph)?],
        kernel_cache_dir: None,
        fusions,
        ..BuildConfig::default()
    };
    let plan = Builder::new(&ctx.device)
        .build(graph, &config)
        .with_context(|| format!("{what}: build"))?;
    let engine = Engine::from_plan(&ctx.device, &plan)?;
    let reference = Interpreter::new(graph.clone())?;
    let mut rng = fastrand::Rng::with_seed(81);
    for batch in [1usize, 4] {
        let mut ec = ExecutionContext::new(engine.clone())?;
        let stream = ec.stream().clone();
        let mut keep = Vec::new();
        let mut feed = HashMap::new();
        for i in &graph.inputs {
            let dims: Vec<usize> = i
                .shape
                .as_ref()
                .context("input rank")?
                .dims()
                .iter()
                .enumerate()
                .map(|(k, d)| d.known().unwrap_or(if k == 0 { batch } else { 1 }))
                .collect();
            let x = random(&mut rng, dims.iter().product(), -1.0, 1.0);
            let t = Tensor::from_vec(i.name.clone(), dims.clone(), x.clone())?;
            feed.insert(i.name.clone(), Value::from_tensor(&t)?);
            ec.set_input_shape(&i.name, &dims)?;
            let bytes = encode(DataType::F32, &x);
            let mut b = ctx.alloc.alloc(bytes.len(), &stream)?;
            copy::htod(&stream, &bytes, &mut b)?;
            ec.bind(&i.name, DevicePtr(b.device_ptr()))?;
            keep.push(b);
        }
        let want = reference.run(feed)?;
        let mut outs = Vec::new();
        for o in &graph.outputs {
            let dims = ec.output_shape(&o.name)?;
            let bytes = dims.iter().product::<usize>() * 4;
            let b = ctx.alloc.alloc(bytes.max(1), &stream)?;
            ec.bind(&o.name, DevicePtr(b.device_ptr()))?;
            outs.push((o.name.clone(), bytes, b));
        }
        for run in 0..2 {
            for (_, bytes, b) in outs.iter_mut() {
                copy::htod(&stream, &vec![0xffu8; *bytes], b)?;
            }
            stream.synchronize()?;
            if run == 0 {
                // SAFETY: every bound address is a live buffer in `keep` / `outs`;
                // run_profiled waits for the stream before returning.
                let profile = unsafe { ec.run_profiled() }?;
                let ops: Vec<&str> = profile.steps.iter().map(|s| s.op.as_str()).collect();
                let count = |op: &str| ops.iter().filter(|o| **o == op).count();
                match expect {
                    Expect::Nhwc { transposes } => {
                        ensure!(
                            count("NhwcConv") > 0
                                && count("Conv") + count("FusedConv") == 0
                                && count("NhwcEntry") == 1
                                && count("Cast(boundary)") == 1
                                && count("Transpose") <= transposes,
                            "{what}: steps {ops:?}"
                        );
                    }
                    Expect::Nchw => {
                        ensure!(count("NhwcConv") == 0, "{what}: steps {ops:?}");
                    }
                }
            } else {
                // SAFETY: as above; the stream is synchronised below before reading.
                unsafe { ec.enqueue(StreamHandle(stream.id())) }?;
                stream.synchronize()?;
            }
            for (name, bytes, b) in &outs {
                let mut host = vec![0u8; *bytes];
                copy::dtoh(&stream, b, &mut host)?;
                stream.synchronize()?;
                let got: Vec<f64> = decode(DataType::F32, &host)
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let w = want.get(name).context("reference output")?.to_f64_vec();
                check(
                    &format!("{what} batch {batch} run {run} output {name}"),
                    &w,
                    &got,
                    1e-2,
                )?;
            }
        }
        drop(keep);
    }
    Ok(())
}

fn engine_resnet_like(ctx: &Ctx) -> Result<()> {
    let g = resnet_like()?;
    for p in [Precision::Fp16, Precision::Bf16] {
        engine_check(
            ctx,
            &format!("resnet_like {} NHWC", p.name()),
            &g,
            p,
            Fusions::default(),
            Expect::Nhwc { transposes: 0 },
        )?;
        engine_check(
            ctx,
            &format!("resnet_like {} no fusions", p.name()),
            &g,
            p,
            Fusions::none(),
            Expect::Nchw,
        )?;
    }
    Ok(())
}

fn engine_fixture_cnns(ctx: &Ctx) -> Result<()> {
    let dir = std::env::var_os("KILN_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"));
    for f in ["cnn_legacy", "cnn_dynamo"] {
        let g = kiln_onnx::load(dir.join(format!("{f}.onnx")))?;
        for p in [Precision::Fp16, Precision::Bf16] {
            engine_check(
                ctx,
                &format!("{f} {} NHWC", p.name()),
                &g,
                p,
                Fusions::default(),
                Expect::Nhwc { transposes: 0 },
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// NHWC entry kernel

/// Runs the entry from `src` into `dst` with `cp` channels, the output `y_off` elements into
/// a NaN-poisoned buffer; returns the output (NHWC, as f32).
#[allow(clippy::too_many_arguments)]
fn entry_on_device(
    ctx: &Ctx,
    (src, dst): (DataType, DataType),
    x: &[f32],
    [n, c, hw]: [usize; 3],
    cp: usize,
    y_off: usize,
) -> Result<Vec<f32>> {
    let xb = encode(src, x);
    let mut dx = ctx.alloc.alloc(xb.len(), &ctx.stream)?;
    copy::htod(&ctx.stream, &xb, &mut dx)?;
    let e = dst.size_in_bytes();
    let yb = (n * hw * cp + y_off) * e;
    let mut dy = ctx.alloc.alloc(yb, &ctx.stream)?;
    copy::htod(&ctx.stream, &vec![0xffu8; yb], &mut dy)?;
    layout_nhwc::nchw_to_nhwc(
        &ctx.lib,
        &ctx.stream,
        (src, dst),
        n,
        c,
        hw,
        cp,
        KPtr(dx.device_ptr()),
        KPtr(dy.device_ptr() + (y_off * e) as u64),
    )?;
    let mut out = vec![0u8; yb];
    copy::dtoh(&ctx.stream, &dy, &mut out)?;
    ctx.stream.synchronize()?;
    Ok(decode(dst, &out[y_off * e..]))
}

fn nhwc_entry_kernel(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(91);
    let pairs = [
        (DataType::F32, DataType::F16),
        (DataType::F32, DataType::BF16),
        (DataType::F16, DataType::F16),
        (DataType::BF16, DataType::BF16),
        (DataType::F32, DataType::F32),
    ];
    let mut paths = std::collections::HashSet::new();
    for (src, dst) in pairs {
        for c in [1usize, 3, 4, 8, 13, 24, 40] {
            for cp in [c, layout_nhwc::padded_channels(c)] {
                // misaligned by one element: 16-byte words are off, the scalar kernels run
                for y_off in [0usize, 1] {
                    let (n, h, w) = (2usize, 7usize, 9usize);
                    let hw = h * w;
                    let x = decode(src, &encode(src, &random(&mut rng, n * c * hw, -3.0, 3.0)));
                    let mut want = vec![0f32; n * hw * cp];
                    for b in 0..n {
                        for ch in 0..c {
                            for p in 0..hw {
                                want[(b * hw + p) * cp + ch] = x[(b * c + ch) * hw + p];
                            }
                        }
                    }
                    // the host's round to nearest even into dst
                    let want = decode(dst, &encode(dst, &want));
                    let got = entry_on_device(ctx, (src, dst), &x, [n, c, hw], cp, y_off)?;
                    let e = dst.size_in_bytes() as u64;
                    let path = layout_nhwc::entry_path(dst, cp, KPtr(0x1000 + y_off as u64 * e));
                    paths.insert(format!("{path:?}"));
                    let what = format!("entry {src}->{dst} C={c} C'={cp} offset {y_off} {path:?}");
                    ensure!(got.len() == want.len(), "{what}: length");
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        ensure!(
                            g.to_bits() == w.to_bits(),
                            "{what}: element {i} (position {}, channel {}) is {g}, want {w}",
                            i / cp,
                            i % cp
                        );
                    }
                }
            }
        }
    }
    ensure!(paths.len() == 3, "not every entry kernel ran: {paths:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Timing (printed)

/// Median milliseconds of `reps` CUDA-event timings of `f` after 3 warm-up runs.
fn median_ms(ctx: &Ctx, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    ctx.stream.synchronize()?;
    let (start, end) = (
        kiln_cuda::Event::new(&ctx.device, true)?,
        kiln_cuda::Event::new(&ctx.device, true)?,
    );
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        start.record(&ctx.stream)?;
        f()?;
        end.record(&ctx.stream)?;
        ctx.stream.synchronize()?;
        ms.push(f64::from(start.elapsed_ms(&end)?));
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[reps / 2])
}

fn nhwc_timing(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(97);
    // ResNet-50 b256 input: f32 NCHW -> f16 NHWC with 8 channels
    let (n, c, hw, cp) = (256usize, 3usize, 224 * 224, 8usize);
    let x = encode(DataType::F32, &random(&mut rng, n * c * hw, -1.0, 1.0));
    let mut dx = ctx.alloc.alloc(x.len(), &ctx.stream)?;
    copy::htod(&ctx.stream, &x, &mut dx)?;
    let dy = ctx.alloc.alloc(n * hw * cp * 2, &ctx.stream)?;
    let (px, py) = (KPtr(dx.device_ptr()), KPtr(dy.device_ptr()));
    let ms = median_ms(ctx, 25, || {
        Ok(layout_nhwc::nchw_to_nhwc(
            &ctx.lib,
            &ctx.stream,
            (DataType::F32, DataType::F16),
            n,
            c,
            hw,
            cp,
            px,
            py,
        )?)
    })?;
    let bytes = (n * c * hw * 4 + n * hw * cp * 2) as f64;
    println!(
        "    entry [256,3,224,224] f32 -> [256,224,224,8] f16 ({:?}): {ms:.3} ms, {:.0} GB/s",
        layout_nhwc::entry_path(DataType::F16, cp, py),
        bytes / ms / 1e6
    );
    drop((dx, dy));
    // ResNet-50 b256 stem MaxPool 3x3 s2 p1, f16
    let (c, h, w) = (64usize, 112usize, 112usize);
    let xb = encode(DataType::F16, &random(&mut rng, n * h * w * c, -1.0, 1.0));
    let mut dx = ctx.alloc.alloc(xb.len(), &ctx.stream)?;
    copy::htod(&ctx.stream, &xb, &mut dx)?;
    let dy = ctx.alloc.alloc(n * 56 * 56 * c * 2, &ctx.stream)?;
    let win = pool::Window2d {
        input: [h, w],
        output: [56, 56],
        kernel: [3, 3],
        strides: [2, 2],
        dilations: [1, 1],
        pad_begin: [1, 1],
        pad_end: [1, 1],
    };
    let (px, py) = (KPtr(dx.device_ptr()), KPtr(dy.device_ptr()));
    let ms = median_ms(ctx, 25, || {
        Ok(pool::pool2d_nhwc(
            &ctx.lib,
            &ctx.stream,
            DataType::F16,
            pool::PoolKind::Max,
            n,
            c,
            &win,
            px,
            py,
        )?)
    })?;
    let bytes = ((n * h * w * c + n * 56 * 56 * c) * 2) as f64;
    println!(
        "    maxpool 3x3 s2 p1 [256,112,112,64] f16: {ms:.3} ms, {:.0} GB/s",
        bytes / ms / 1e6
    );
    Ok(())
}
