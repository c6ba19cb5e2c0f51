//! Runs a lowered program's steps on a stream.

use kiln_core::DevicePtr;
use kiln_cuda::{DeviceMemory, Stream};
use kiln_onnx::Node;

use super::libs::LibCall;
use super::ops::{fill_bytes, node_err, run_node};
use super::{Engine, Prepared};
use crate::builder::lower::{Step, StepKind, Storage, TensorId};
use crate::error::{EngineError, Result};
use crate::kernels::conv::ConvArgs;
use crate::kernels::gemm::GemmArgs;
use crate::kernels::nvrtc::pad::{self, PadMode};
use crate::kernels::nvrtc::{cast, movement};

/// Device addresses of one run.
pub(crate) struct Addresses<'a> {
    pub inputs: &'a [u64],
    pub outputs: &'a [u64],
    pub arena: u64,
    pub arena_bytes: usize,
    pub workspace: u64,
    pub workspace_bytes: usize,
}

/// A raw device range (bound by the caller or inside the arena).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw {
    pub ptr: u64,
    pub len: usize,
}

impl DeviceMemory for Raw {
    fn device_ptr(&self) -> u64 {
        self.ptr
    }
    fn byte_len(&self) -> usize {
        self.len
    }
}

/// One run: the engine, the prepared program, the addresses, the stream.
pub(crate) struct Run<'a> {
    pub engine: &'a Engine,
    pub prep: &'a Prepared,
    pub a: &'a Addresses<'a>,
    pub stream: &'a Stream,
}

impl Run<'_> {
    /// The device range of tensor `id`.
    pub fn raw(&self, id: TensorId) -> Result<Raw> {
        let p = &self.prep.program;
        let t = &p.tensors[id];
        let a = self.a;
        let ptr = match &t.storage {
            Storage::Input(i) => a.inputs[*i],
            Storage::Output(i) => a.outputs[*i],
            Storage::Weight(name) => self
                .engine
                .weights
                .get(name)
                .or_else(|| self.prep.extra.get(name).map(|b| b.as_ref()))
                .map(|b| b.device_ptr())
                .ok_or_else(|| EngineError::BadPlan(format!("weight '{name}' is not loaded")))?,
            Storage::Arena(off) => {
                if off + t.bytes() > a.arena_bytes {
                    return Err(EngineError::Memory(format!(
                        "tensor '{}' at {off} exceeds the arena of {} bytes",
                        t.name, a.arena_bytes
                    )));
                }
                a.arena + *off as u64
            }
            Storage::View(src) => self.raw(*src)?.ptr,
        };
        Ok(Raw {
            ptr,
            len: t.bytes(),
        })
    }

    pub fn ptr(&self, id: TensorId) -> Result<DevicePtr> {
        Ok(DevicePtr(self.raw(id)?.ptr))
    }

    /// Device-to-device copy of `src` into `dst`.
    pub fn copy(&self, src: TensorId, dst: TensorId) -> Result<()> {
        let s = self.raw(src)?;
        let mut d = self.raw(dst)?;
        let n = s.len.min(d.len);
        if n > 0 && s.ptr != d.ptr {
            kiln_cuda::copy::dtod(self.stream, &s, 0, &mut d, 0, n)?;
        }
        Ok(())
    }

    pub fn constant(
        &self,
        step: &Step,
        i: usize,
        node: &Node,
    ) -> Result<Option<&kiln_onnx::Tensor>> {
        let Some(Some(id)) = step.inputs.get(i).copied() else {
            return Ok(None);
        };
        let name = &self.prep.program.tensors[id].name;
        self.prep.consts.get(name).map(Some).ok_or_else(|| {
            node_err(
                node,
                format!("input {i} ('{name}') must be a constant once the input shapes are known"),
            )
        })
    }

    /// Input `i` as host integers (it must be constant), `None` when omitted.
    pub fn const_i64(&self, step: &Step, i: usize, node: &Node) -> Result<Option<Vec<i64>>> {
        self.constant(step, i, node)?
            .map(|t| t.to_i64_vec().map_err(|e| node_err(node, e)))
            .transpose()
    }

    /// Input `i` as one host float, `None` when omitted.
    pub fn const_f64(&self, step: &Step, i: usize, node: &Node) -> Result<Option<f64>> {
        let Some(t) = self.constant(step, i, node)? else {
            return Ok(None);
        };
        let v = if t.dtype().is_float() {
            t.to_f32_vec()
                .map_err(|e| node_err(node, e))?
                .first()
                .map(|&v| f64::from(v))
        } else {
            t.to_i64_vec()
                .map_err(|e| node_err(node, e))?
                .first()
                .map(|&v| v as f64)
        };
        Ok(v)
    }

    pub fn const_f32(&self, step: &Step, i: usize, node: &Node) -> Result<Option<f32>> {
        Ok(self.const_f64(step, i, node)?.map(|v| v as f32))
    }
}

/// Enqueues every step.
pub(crate) fn run(
    engine: &Engine,
    prep: &Prepared,
    a: &Addresses<'_>,
    stream: &Stream,
) -> Result<()> {
    let r = Run {
        engine,
        prep,
        a,
        stream,
    };
    for (i, step) in prep.program.steps.iter().enumerate() {
        run_step(&r, i, step)?;
    }
    Ok(())
}

/// [`run`] with a pair of timing events around every step; waits for the stream and returns
/// each step's GPU time.
pub(crate) fn run_profiled(
    engine: &Engine,
    prep: &Prepared,
    a: &Addresses<'_>,
    stream: &Stream,
) -> Result<super::profile::Profile> {
    use super::profile::{Profile, StepTime, describe, output_dims};
    let r = Run {
        engine,
        prep,
        a,
        stream,
    };
    let steps = &prep.program.steps;
    let events = (0..=steps.len())
        .map(|_| kiln_cuda::Event::new(&engine.device, true))
        .collect::<kiln_cuda::Result<Vec<_>>>()?;
    for (i, step) in steps.iter().enumerate() {
        events[i].record(stream)?;
        run_step(&r, i, step)?;
    }
    events[steps.len()].record(stream)?;
    stream.synchronize()?;
    let peaks = super::profile::Peaks::for_device(
        &engine.device.info().name,
        engine.header.config.precision,
    );
    let mut profile = Profile::default();
    for (i, step) in steps.iter().enumerate() {
        let (name, op) = describe(step);
        let lib = prep.libs.get(i).and_then(Option::as_ref);
        let (flops, bytes) = super::profile::step_cost(&prep.program, step, lib);
        let kernel = match lib {
            Some(LibCall::Gemm { tactic, .. }) | Some(LibCall::MatMul { tactic, .. }) => {
                format!("cuBLASLt {tactic:?}")
            }
            Some(LibCall::Conv { tactic, .. }) => format!("cuDNN {tactic:?}"),
            None => "nvrtc".into(),
        };
        profile.steps.push(StepTime {
            index: i,
            name,
            op,
            kernel,
            output_dims: output_dims(&prep.program, step),
            ms: f64::from(events[i].elapsed_ms(&events[i + 1])?),
            flops,
            bytes,
            floor_ms: peaks.floor_ms(flops, bytes),
        });
    }
    profile.total_ms = f64::from(events[0].elapsed_ms(&events[steps.len()])?);
    profile.floor_ms = profile.steps.iter().map(|s| s.floor_ms).sum();
    profile.peaks = Some(peaks);
    Ok(profile)
}

fn run_step(r: &Run<'_>, index: usize, step: &Step) -> Result<()> {
    let tensors = &r.prep.program.tensors;
    let first = || -> Result<(TensorId, TensorId)> {
        match (step.inputs.first(), step.outputs.first()) {
            (Some(Some(src)), Some(&dst)) => Ok((*src, dst)),
            _ => Err(EngineError::Memory("step without operands".into())),
        }
    };
    let kerr = |e: crate::kernels::nvrtc::KernelError| EngineError::Unsupported(e.to_string());
    match &step.kind {
        StepKind::Copy => {
            let (src, dst) = first()?;
            r.copy(src, dst)
        }
        StepKind::Cast => {
            let (src, dst) = first()?;
            let (from, to) = (tensors[src].dtype, tensors[dst].dtype);
            if from == to {
                return r.copy(src, dst);
            }
            let n = tensors[dst].dims.iter().product();
            cast::cast(
                &r.engine.kernels,
                r.stream,
                from,
                to,
                r.ptr(src)?,
                r.ptr(dst)?,
                n,
            )
            .map_err(kerr)
        }
        StepKind::Pad { pads } => {
            let (src, dst) = first()?;
            let t = &tensors[src];
            let fill = fill_bytes(t.dtype, 0.0)?;
            pad::pad(
                &r.engine.kernels,
                r.stream,
                t.dtype,
                &t.dims,
                pads,
                PadMode::Constant,
                &fill,
                r.ptr(src)?,
                r.ptr(dst)?,
            )
            .map_err(kerr)
        }
        StepKind::Node(node) => match r.prep.libs.get(index).and_then(Option::as_ref) {
            Some(call) => run_lib(r, step, node, call),
            None if super::kiln_ops::is_kiln(node) => super::kiln_ops::run(r, step, node),
            None => run_node(r, step, node),
        },
    }
}

/// A cuBLASLt or cuDNN step.
fn run_lib(r: &Run<'_>, step: &Step, node: &Node, call: &LibCall) -> Result<()> {
    let tensors = &r.prep.program.tensors;
    let e = |x: crate::kernels::gemm::LibError| node_err(node, x);
    let input = |i: usize| -> Result<TensorId> {
        step.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| node_err(node, format!("input {i} is missing")))
    };
    let y = *step
        .outputs
        .first()
        .ok_or_else(|| node_err(node, "no output"))?;
    let (ws, ws_bytes) = (DevicePtr(r.a.workspace), r.a.workspace_bytes);
    match call {
        LibCall::Gemm {
            desc,
            expand_c,
            bias,
            tactic,
        } => {
            let blas = r.engine.blas()?;
            let c = step.inputs.get(2).copied().flatten();
            if *expand_c {
                let c = c.ok_or_else(|| node_err(node, "C is missing"))?;
                movement::expand(
                    &r.engine.kernels,
                    r.stream,
                    tensors[y].dtype,
                    &tensors[c].dims,
                    &[desc.m, desc.n],
                    r.ptr(c)?,
                    r.ptr(y)?,
                )
                .map_err(|x| node_err(node, x))?;
            }
            let args = GemmArgs {
                a: r.ptr(input(0)?)?,
                b: r.ptr(input(1)?)?,
                c: None,
                d: r.ptr(y)?,
                bias: if *bias {
                    c.map(|c| r.ptr(c)).transpose()?
                } else {
                    None
                },
                workspace: ws,
                workspace_bytes: ws_bytes,
            };
            blas.enqueue(r.stream, desc, tactic, &args).map_err(e)
        }
        LibCall::MatMul { plan, tactic } => {
            let blas = r.engine.blas()?;
            let eb = plan.desc.math.elem_bytes() as u64;
            let (a, b, d) = (r.ptr(input(0)?)?, r.ptr(input(1)?)?, r.ptr(y)?);
            for &(oa, ob, oc) in &plan.calls {
                let args = GemmArgs {
                    a: DevicePtr(a.0 + oa as u64 * eb),
                    b: DevicePtr(b.0 + ob as u64 * eb),
                    c: None,
                    d: DevicePtr(d.0 + oc as u64 * eb),
                    bias: None,
                    workspace: ws,
                    workspace_bytes: ws_bytes,
                };
                blas.enqueue(r.stream, &plan.desc, tactic, &args)
                    .map_err(e)?;
            }
            Ok(())
        }
        LibCall::Conv { desc, tactic } => {
            let dnn = r.engine.dnn()?;
            let args = ConvArgs {
                input: r.ptr(input(0)?)?,
                weight: r.ptr(input(1)?)?,
                output: r.ptr(y)?,
                bias: step
                    .inputs
                    .get(2)
                    .copied()
                    .flatten()
                    .map(|b| r.ptr(b))
                    .transpose()?,
                residual: step
                    .inputs
                    .get(3)
                    .copied()
                    .flatten()
                    .map(|z| r.ptr(z))
                    .transpose()?,
                workspace: ws,
                workspace_bytes: ws_bytes,
            };
            dnn.enqueue(r.stream, desc, tactic, &args).map_err(e)
        }
    }
}
