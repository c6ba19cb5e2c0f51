//! GPU tests of the NVRTC kernels (`harness = false`): every kernel family against
//! kiln-reference on fresh random inputs (never zeros), with outputs poisoned (all bits set:
//! NaN for floats) before each launch. Tolerances: relative L2 error 1e-5 for f32, 1e-2 for
//! f16/bf16, exact for integers and bools; a NaN where the reference has none never passes.
//!
//! Without a CUDA device every test is reported as skipped and the run succeeds; with
//! `KILN_GPU_REQUIRED=1` a missing device fails. An optional argument filters tests by name.
//! Run: `KILN_GPU_REQUIRED=1 cargo test -p kiln-engine --release --test gpu_kernels`.

#![allow(clippy::type_complexity)]

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context as _, Result, ensure};
use kiln_core::{DataType, Dim};
use kiln_cuda::{DeviceBuffer, DeviceMemory, copy};
use kiln_engine::kernels::nvrtc::{
    DevicePtr, binary, cast, gather, layout, movement, norm, pad, pool, reduce, resize, softmax,
    unary,
};
use kiln_onnx::{AttrValue, GraphBuilder, Tensor};
use kiln_reference::{Interpreter, Value};

#[path = "gpu_kernels/elementwise.rs"]
mod elementwise;
#[path = "gpu_kernels/engine_ops.rs"]
mod engine_ops;
#[path = "gpu_kernels/indexing.rs"]
mod indexing;
#[path = "gpu_kernels/structured.rs"]
mod structured;

use elementwise::*;
use engine_ops::*;
use indexing::*;
use structured::*;

#[path = "common/kernel_ctx.rs"]
mod kernel_ctx;
use kernel_ctx::{Ctx, decode, encode};

fn setup() -> Result<Ctx> {
    kernel_ctx::setup(0x6b69_6c6e)
}

type TestFn = fn(&Ctx) -> Result<()>;

const TESTS: &[(&str, TestFn)] = &[
    ("unary_float", unary_float),
    ("unary_int_and_bool", unary_int_and_bool),
    ("binary_broadcast", binary_broadcast),
    ("binary_int_and_logic", binary_int_and_logic),
    ("where_select", where_select),
    ("cast_pairs", cast_pairs),
    ("reductions", reductions),
    ("argmax_argmin", argmax_argmin),
    ("softmax_logsoftmax", softmax_logsoftmax),
    ("layer_norm", layer_norm),
    ("group_and_instance_norm", group_and_instance_norm),
    ("pools", pools),
    ("transpose_slice_expand_tile", transpose_slice_expand_tile),
    ("concat_split", concat_split),
    ("gather_axis", gather_axis),
    ("pad_modes", pad_modes),
    ("resize_modes", resize_modes),
    ("gather_nd_batch_dims", gather_nd_batch_dims),
    (
        "gather_nd_out_of_range_writes_zeros",
        gather_nd_out_of_range_writes_zeros,
    ),
    ("max_pool_indices", max_pool_indices),
    ("engine_variadic", engine_variadic),
    ("engine_layer_norm_statistics", engine_layer_norm_statistics),
    ("engine_max_pool_indices", engine_max_pool_indices),
    ("engine_gather_nd", engine_gather_nd),
    ("engine_resize", engine_resize),
    ("engine_conv_transpose", engine_conv_transpose),
];

const FLOATS: [DataType; 3] = [DataType::F32, DataType::F16, DataType::BF16];

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
// Host tensors, the reference and device buffers

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

impl Ctx {
    /// Uniform in [lo, hi), avoiding exact zero (so a zero output is never "right" by luck).
    fn uniform(&self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        let mut r = self.rng.borrow_mut();
        (0..n)
            .map(|_| {
                loop {
                    let v = lo + (hi - lo) * r.f64();
                    if v != 0.0 {
                        break v;
                    }
                }
            })
            .collect()
    }

    fn ints(&self, n: usize, lo: i64, hi: i64) -> Vec<f64> {
        let mut r = self.rng.borrow_mut();
        (0..n).map(|_| r.i64(lo..hi) as f64).collect()
    }

    fn rand(&self, dtype: DataType, dims: &[usize], lo: f64, hi: f64) -> T {
        let n = dims.iter().product();
        let v = if dtype.is_float() {
            self.uniform(n, lo, hi)
        } else {
            self.ints(n, lo as i64, hi as i64)
        };
        t(dtype, dims, &v)
    }

    fn upload(&self, x: &T) -> Result<DeviceBuffer> {
        let mut b = self.alloc.alloc(x.bytes.len().max(8), &self.stream)?;
        if !x.bytes.is_empty() {
            copy::htod(&self.stream, &x.bytes, &mut b)?;
        }
        Ok(b)
    }

    fn poisoned(&self, bytes: usize) -> Result<DeviceBuffer> {
        let mut b = self.alloc.alloc(bytes.max(8), &self.stream)?;
        b.fill(0xff)?;
        Ok(b)
    }

    fn download(&self, b: &DeviceBuffer, bytes: usize) -> Result<Vec<u8>> {
        self.stream.synchronize()?;
        let mut out = vec![0u8; bytes];
        if bytes > 0 {
            copy::dtoh(&self.stream, b, &mut out)?;
        }
        Ok(out)
    }
}

fn ptr(b: &DeviceBuffer) -> DevicePtr {
    DevicePtr(b.device_ptr())
}

fn to_value(x: &T, name: &str) -> Result<Value> {
    let tensor = Tensor::from_bytes(name, x.dtype, x.dims.clone(), x.bytes.clone())?;
    Ok(Value::from_tensor(&tensor)?)
}

/// A one-node model run by kiln-reference: `inputs` are graph inputs, `consts` initialisers
/// (named `c0`, `c1`, ... and placed after the inputs, or at the positions given by `order`).
struct Node<'a> {
    op: &'a str,
    opset: i64,
    attrs: Vec<(&'a str, AttrValue)>,
    inputs: Vec<T>,
    consts: Vec<T>,
    outputs: usize,
}

fn node<'a>(op: &'a str, opset: i64, inputs: Vec<T>) -> Node<'a> {
    Node {
        op,
        opset,
        attrs: Vec::new(),
        inputs,
        consts: Vec::new(),
        outputs: 1,
    }
}

impl<'a> Node<'a> {
    fn attr(mut self, name: &'a str, v: impl Into<AttrValue>) -> Self {
        self.attrs.push((name, v.into()));
        self
    }
    fn konst(mut self, c: T) -> Self {
        self.consts.push(c);
        self
    }

    fn reference(&self) -> Result<Vec<T>> {
        let mut b = GraphBuilder::new("t").opset(self.opset);
        let mut vals = Vec::new();
        let mut feed = HashMap::new();
        for (i, x) in self.inputs.iter().enumerate() {
            let name = format!("x{i}");
            let dims: Vec<Dim> = x.dims.iter().map(|&d| Dim::Known(d)).collect();
            vals.push(b.input(&name, x.dtype, &dims));
            feed.insert(name.clone(), to_value(x, &name)?);
        }
        for (i, c) in self.consts.iter().enumerate() {
            let name = format!("c{i}");
            vals.push(b.initializer(Tensor::from_bytes(
                &name,
                c.dtype,
                c.dims.clone(),
                c.bytes.clone(),
            )?));
        }
        let refs: Vec<&kiln_onnx::builder::Value> = vals.iter().collect();
        let mut nb = b.node(self.op, &refs);
        for (k, v) in &self.attrs {
            nb = nb.attr(k, v.clone());
        }
        let outs = nb.outputs(self.outputs);
        for o in &outs {
            b.output(o, DataType::F32, &[]);
        }
        let interp = Interpreter::new(b.graph()).context("reference model")?;
        let mut res = interp.run(feed).context("reference run")?;
        outs.iter()
            .map(|o| {
                let v = res.remove(o.name()).context("reference output missing")?;
                let tensor = v.to_tensor(o.name())?;
                Ok(T {
                    dtype: v.dtype(),
                    dims: v.shape().to_vec(),
                    bytes: tensor.as_bytes().to_vec(),
                })
            })
            .collect()
    }
}

fn tolerance(dtype: DataType) -> f64 {
    match dtype {
        DataType::F32 => 1e-5,
        DataType::F16 | DataType::BF16 => 1e-2,
        _ => 0.0,
    }
}

/// Compares the GPU's bytes with the reference's output.
fn compare(what: &str, want: &T, got: &[u8], tol: f64) -> Result<()> {
    ensure!(
        got.len() == want.bytes.len(),
        "{what}: {} bytes, want {}",
        got.len(),
        want.bytes.len()
    );
    let (w, g) = (decode(want.dtype, &want.bytes), decode(want.dtype, got));
    if tol == 0.0 {
        for (i, (a, b)) in w.iter().zip(&g).enumerate() {
            let same = a == b || (a.is_nan() && b.is_nan());
            ensure!(same, "{what}: element {i} is {b}, want {a}");
        }
        return Ok(());
    }
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

/// Runs `n` by the reference, then `gpu` on uploaded inputs (inputs then consts) and
/// poisoned outputs, and compares every output.
fn check(
    ctx: &Ctx,
    what: &str,
    n: &Node<'_>,
    tol: f64,
    gpu: impl FnOnce(&[DevicePtr], &[DevicePtr]) -> kiln_engine::kernels::nvrtc::Result<()>,
) -> Result<()> {
    let want = n
        .reference()
        .with_context(|| format!("{what}: reference"))?;
    let ins: Vec<DeviceBuffer> = n
        .inputs
        .iter()
        .chain(&n.consts)
        .map(|x| ctx.upload(x))
        .collect::<Result<_>>()?;
    let outs: Vec<DeviceBuffer> = want
        .iter()
        .map(|w| ctx.poisoned(w.bytes.len()))
        .collect::<Result<_>>()?;
    let ip: Vec<DevicePtr> = ins.iter().map(ptr).collect();
    let op: Vec<DevicePtr> = outs.iter().map(ptr).collect();
    gpu(&ip, &op).with_context(|| format!("{what}: launch"))?;
    for (k, (w, b)) in want.iter().zip(&outs).enumerate() {
        let got = ctx.download(b, w.bytes.len())?;
        compare(&format!("{what} output {k}"), w, &got, tol)?;
    }
    Ok(())
}

fn numel(d: &[usize]) -> usize {
    d.iter().product()
}
