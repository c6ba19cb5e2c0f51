//! The GPU path (kiln backend): one [`kiln_engine::ExecutionContext`] per stream, inputs and
//! outputs in device buffers with pinned host staging, CUDA events around each part of an
//! iteration.
//!
//! GPU-only: this compiles everywhere but needs a CUDA device to run, so no test covers it on
//! a CPU-only machine. It ran on an H200 (a debug build of commit af4d200 on the cnn, mlp and
//! transformer fixtures: fp32 and fp16, batch 1 and 32, CUDA graphs, 4 streams,
//! `--no-transfers`, `--dump-profile`) and gave consistent numbers; it measures as
//! `crates/kiln-engine/examples/engine_bench.rs` does.
//!
//! One iteration on a lane's stream (the context's own stream):
//! `event0 → H2D copies (pinned → device) → event1 → enqueue → event2 → D2H copies (device →
//! pinned) → event3`, then the host waits for `event3`. H2D = event0→1, GPU compute =
//! event1→2, D2H = event2→3 (GPU clocks); host latency is the host's wall time of the whole
//! iteration, sync included; enqueue time is the host time of the enqueue call. With
//! `--no-transfers` only event1→2 is recorded and the inputs stay on the device (filled once).
//! The bindings never change, so with `--cuda-graph` the context replays one captured graph
//! (the warm-up's second run is the capture). `--dump-profile` makes one more run on stream
//! 0 with events around every step (`run_profiled`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use kiln_core::{DataType, DevicePtr, Engine as _, ExecutionContext as _, HostTensor};
use kiln_cuda::{DeviceAllocator, DeviceBuffer, DeviceMemory, Event, PinnedBuffer, Stream, copy};
use kiln_engine::{Engine, ExecutionContext};

use super::report::ProfileReport;
use super::{Lane, LaneEnd, Measured, Sample, Schedule, drive};

/// What each iteration includes.
#[derive(Debug, Clone, Copy)]
pub struct GpuOptions {
    pub cuda_graph: bool,
    pub transfers: bool,
}

/// A device tensor with its pinned host copy.
struct Io {
    name: String,
    dtype: DataType,
    dev: DeviceBuffer,
    host: PinnedBuffer,
    bytes: usize,
}

/// One stream: a context, its buffers and four timing events.
struct GpuLane {
    // Field order is drop order: the context (which may hold graphs over the buffers) goes
    // first, the allocator last.
    ctx: ExecutionContext,
    inputs: Vec<Io>,
    outputs: Vec<Io>,
    events: [Event; 4],
    stream: Arc<Stream>,
    transfers: bool,
    _alloc: DeviceAllocator,
}

impl GpuLane {
    fn new(engine: &Arc<Engine>, inputs: &[HostTensor], opts: GpuOptions) -> Result<GpuLane> {
        let device = engine.device().clone();
        let mut ctx = ExecutionContext::new(engine.clone())?;
        let stream = ctx.stream().clone();
        let alloc = DeviceAllocator::new(&device);
        let mut ins = Vec::new();
        for t in inputs {
            ctx.set_input_shape(&t.name, &t.dims)?;
            let bytes = t.data.len();
            let mut host = PinnedBuffer::new(&device, bytes.max(1))?;
            host.write()?[..bytes].copy_from_slice(&t.data);
            let mut dev = alloc.alloc(bytes.max(1), &stream)?;
            // Filled once, so that `--no-transfers` runs on the same data.
            copy::htod(&stream, &t.data, &mut dev)
                .with_context(|| format!("copying input '{}' to the device", t.name))?;
            ctx.bind(&t.name, DevicePtr(dev.device_ptr()))?;
            ins.push(Io {
                name: t.name.clone(),
                dtype: t.dtype,
                dev,
                host,
                bytes,
            });
        }
        let mut outs = Vec::new();
        for spec in engine.outputs() {
            let dims = ctx.output_shape(&spec.name)?;
            let bytes = kiln_core::checked_element_count(&dims)
                .and_then(|n| n.checked_mul(spec.dtype.size_in_bytes()))
                .with_context(|| format!("output '{}': shape {dims:?} is too large", spec.name))?;
            let dev = alloc.alloc(bytes.max(1), &stream)?;
            ctx.bind(&spec.name, DevicePtr(dev.device_ptr()))?;
            outs.push(Io {
                name: spec.name.clone(),
                dtype: spec.dtype,
                dev,
                host: PinnedBuffer::new(&device, bytes.max(1))?,
                bytes,
            });
        }
        ctx.set_cuda_graphs(opts.cuda_graph);
        let ev = || Event::new(&device, true);
        Ok(GpuLane {
            ctx,
            inputs: ins,
            outputs: outs,
            events: [ev()?, ev()?, ev()?, ev()?],
            stream,
            transfers: opts.transfers,
            _alloc: alloc,
        })
    }

    /// Whether every f32 output (copied back by the last iteration) is finite.
    fn outputs_finite(&mut self) -> Result<Vec<String>> {
        let mut bad = Vec::new();
        for io in &mut self.outputs {
            if io.dtype != DataType::F32 || io.bytes == 0 {
                continue;
            }
            let bytes = &io.host.read()?[..io.bytes];
            let finite = bytes
                .chunks_exact(4)
                .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite());
            if !finite {
                bad.push(io.name.clone());
            }
        }
        Ok(bad)
    }
}

fn ms(start: &Event, end: &Event) -> Result<f64> {
    Ok(f64::from(start.elapsed_ms(end)?))
}

impl Lane for GpuLane {
    fn step(&mut self) -> Result<Sample> {
        let s = &*self.stream;
        let [e0, e1, e2, e3] = &self.events;
        let t0 = Instant::now();
        if self.transfers {
            e0.record(s)?;
            for io in self.inputs.iter_mut().filter(|io| io.bytes > 0) {
                copy::htod_pinned(s, &mut io.host, 0, &mut io.dev, 0, io.bytes)
                    .with_context(|| format!("H2D copy of input '{}'", io.name))?;
            }
        }
        e1.record(s)?;
        let te = Instant::now();
        // SAFETY: every bound address is a DeviceBuffer of this lane (`inputs`, `outputs`),
        // sized for the shapes set in `new` and never rebound; the lane waits for `e3`/`e2`
        // below before returning, so the run has finished before anything can free them.
        unsafe { self.ctx.enqueue_own() }?;
        let enqueue_ms = te.elapsed().as_secs_f64() * 1e3;
        e2.record(s)?;
        if self.transfers {
            for io in self.outputs.iter_mut().filter(|io| io.bytes > 0) {
                copy::dtoh_pinned(s, &io.dev, 0, &mut io.host, 0, io.bytes)
                    .with_context(|| format!("D2H copy of output '{}'", io.name))?;
            }
            e3.record(s)?;
            e3.synchronize()?;
        } else {
            e2.synchronize()?;
        }
        let host_ms = t0.elapsed().as_secs_f64() * 1e3;
        let compute_ms = ms(e1, e2)?;
        let (h2d_ms, d2h_ms) = if self.transfers {
            (Some(ms(e0, e1)?), Some(ms(e2, e3)?))
        } else {
            (None, None)
        };
        Ok(Sample {
            host_ms,
            enqueue_ms: Some(enqueue_ms),
            h2d_ms,
            compute_ms: Some(compute_ms),
            d2h_ms,
        })
    }

    fn finish(&mut self, profile: bool) -> Result<LaneEnd> {
        let (on, captures) = self.ctx.cuda_graphs();
        let mut notes = Vec::new();
        if self.transfers {
            let bad = self.outputs_finite()?;
            if !bad.is_empty() {
                notes.push(format!(
                    "output(s) {} hold NaN or infinite values on these random inputs",
                    bad.join(", ")
                ));
            }
        }
        let profile = if profile {
            // SAFETY: as in `step`: the bindings are this lane's live buffers; run_profiled
            // waits for the stream before returning.
            let p = unsafe { self.ctx.run_profiled() }.context("the profiled run")?;
            Some(ProfileReport::new(
                p.total_ms,
                p.steps
                    .into_iter()
                    .map(|s| (s.index, s.name, s.op, s.kernel, s.ms))
                    .collect(),
            ))
        } else {
            None
        };
        Ok(LaneEnd {
            profile,
            cuda_graph: on && captures > 0,
            notes,
        })
    }
}

/// Benches `engine` on `inputs` over `sched.streams` contexts, each on its own stream.
pub fn run(
    engine: &Arc<Engine>,
    inputs: &[HostTensor],
    sched: &Schedule,
    opts: GpuOptions,
    profile: bool,
) -> Result<Measured> {
    drive(sched, profile, |_| GpuLane::new(engine, inputs, opts))
}
