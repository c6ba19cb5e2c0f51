//! The GPU half of the `engines` bench: build a case's engine with kiln_engine::Builder, and
//! contexts with device-resident inputs and outputs (random inputs, never zeros) plus pinned
//! host copies for the transfer-inclusive runs. Written against the same APIs as
//! crates/kiln-engine/examples/engine_bench.rs; needs a CUDA GPU (not run on CPU-only machines).

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use kiln_benches::setup::{self, Case};
use kiln_core::{
    DataType, DevicePtr, Engine as _, ExecutionContext as _, StreamHandle, TensorSpec,
};
use kiln_cuda::{Device, DeviceAllocator, DeviceBuffer, DeviceMemory, PinnedBuffer, Stream, copy};
use kiln_engine::{BuildConfig, Builder, Engine, ExecutionContext};

/// Size of a symbolic dimension other than the batch (BERT's sequence, when not fixed).
pub const OTHER_DIM: usize = 128;

/// An engine built for one case.
pub fn build(device: &Arc<Device>, case: &Case) -> Result<Arc<Engine>> {
    let graph = kiln_onnx::load(&case.model)
        .with_context(|| format!("loading {}", case.model.display()))?;
    let mut inputs = Vec::new();
    for v in &graph.inputs {
        let shape = v
            .shape
            .clone()
            .with_context(|| format!("{}: input '{}' has no rank", case.model.display(), v.name))?;
        inputs.push((v.name.clone(), shape));
    }
    let config = BuildConfig {
        precision: case.precision,
        profiles: vec![setup::profile(&inputs, case.batch, OTHER_DIM)],
        ..BuildConfig::default()
    };
    let plan = Builder::new(device)
        .build(&graph, &config)
        .with_context(|| format!("building {}", case.name()))?;
    Ok(Engine::from_plan(device, &plan)?)
}

/// One tensor: its device buffer (bound to the context) and a pinned host copy.
pub struct Io {
    pub dev: DeviceBuffer,
    pub host: PinnedBuffer,
    pub bytes: usize,
}

/// A context with every input and output bound to live device buffers.
pub struct Bound {
    pub ctx: ExecutionContext,
    pub stream: Arc<Stream>,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
}

/// Fills `host` with random values of `dtype` (floats in [-1, 1), integers in {0, 1}: valid
/// token ids, masks and segment ids).
fn fill(host: &mut PinnedBuffer, dtype: DataType, rng: &mut fastrand::Rng) -> Result<()> {
    match dtype {
        DataType::F32 => host
            .write_as::<f32>()?
            .iter_mut()
            .for_each(|v| *v = rng.f32() * 2.0 - 1.0),
        DataType::I64 => host
            .write_as::<i64>()?
            .iter_mut()
            .for_each(|v| *v = rng.i64(0..2)),
        DataType::I32 => host
            .write_as::<i32>()?
            .iter_mut()
            .for_each(|v| *v = rng.i32(0..2)),
        other => bail!("the engines bench makes no {other} inputs"),
    }
    Ok(())
}

fn io(device: &Arc<Device>, stream: &Arc<Stream>, bytes: usize) -> Result<Io> {
    Ok(Io {
        dev: DeviceAllocator::new(device).alloc(bytes.max(1), stream)?,
        host: PinnedBuffer::new(device, bytes.max(1))?,
        bytes,
    })
}

impl Bound {
    /// A new context of `engine` at `batch`, inputs random and already on the device.
    pub fn new(engine: &Arc<Engine>, batch: usize, seed: u64) -> Result<Bound> {
        let device = engine.device().clone();
        let mut ctx = ExecutionContext::new(engine.clone())?;
        let stream = ctx.stream().clone();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut inputs = Vec::new();
        for spec in engine.inputs() {
            let dims = setup::dims_at(&spec.shape, batch, OTHER_DIM);
            let bytes = dims.iter().product::<usize>() * spec.dtype.size_in_bytes();
            let mut t = io(&device, &stream, bytes)?;
            fill(&mut t.host, spec.dtype, &mut rng)
                .with_context(|| format!("input '{}'", spec.name))?;
            copy::htod_pinned(&stream, &mut t.host, 0, &mut t.dev, 0, bytes)?;
            ctx.set_input_shape(&spec.name, &dims)?;
            ctx.bind(&spec.name, DevicePtr(t.dev.device_ptr()))?;
            inputs.push(t);
        }
        let mut outputs = Vec::new();
        let specs: Vec<TensorSpec> = engine.outputs().to_vec();
        for spec in &specs {
            let dims = ctx.output_shape(&spec.name)?;
            let bytes = dims.iter().product::<usize>() * spec.dtype.size_in_bytes();
            let t = io(&device, &stream, bytes)?;
            ctx.bind(&spec.name, DevicePtr(t.dev.device_ptr()))?;
            outputs.push(t);
        }
        stream.synchronize()?;
        Ok(Bound {
            ctx,
            stream,
            inputs,
            outputs,
        })
    }

    /// Queues one run on the context's own stream.
    pub fn enqueue(&mut self) -> Result<()> {
        let handle = StreamHandle(self.stream.id());
        // SAFETY: every bound address is a DeviceBuffer owned by `self.inputs` / `self.outputs`
        // with the tensor's byte size (set in `Bound::new` from the engine's shapes); they
        // live as long as `self`, and `Drop for Bound` waits for the stream before they go.
        unsafe { self.ctx.enqueue(handle) }?;
        Ok(())
    }

    /// Pinned inputs → device, one run, device outputs → pinned, all queued on the stream.
    pub fn enqueue_with_transfers(&mut self) -> Result<()> {
        for t in self.inputs.iter_mut() {
            copy::htod_pinned(&self.stream, &mut t.host, 0, &mut t.dev, 0, t.bytes)?;
        }
        self.enqueue()?;
        for t in self.outputs.iter_mut() {
            copy::dtoh_pinned(&self.stream, &t.dev, 0, &mut t.host, 0, t.bytes)?;
        }
        Ok(())
    }

    /// Turns CUDA-graph replay on for this context and makes the run a captured graph (the
    /// first run after the switch goes step by step, the second is captured), then checks the
    /// replayed outputs.
    pub fn use_cuda_graphs(&mut self, engine: &Engine) -> Result<()> {
        self.ctx.set_cuda_graphs(true);
        for _ in 0..2 {
            self.enqueue()?;
        }
        self.check(engine)?;
        let (on, captures) = self.ctx.cuda_graphs();
        if !on || captures == 0 {
            bail!("CUDA-graph capture failed (on: {on}, captures: {captures}); see the log");
        }
        Ok(())
    }

    /// Runs once with transfers and checks the f32 outputs are finite (a broken engine must
    /// not be timed).
    pub fn check(&mut self, engine: &Engine) -> Result<()> {
        self.enqueue_with_transfers()?;
        self.stream.synchronize()?;
        for (t, spec) in self.outputs.iter_mut().zip(engine.outputs()) {
            if spec.dtype == DataType::F32 {
                let v = t.host.read_as::<f32>()?;
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    bail!("output '{}' has a non-finite value at {i}", spec.name);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Err(e) = self.stream.synchronize() {
            eprintln!("engines bench: waiting for a context's stream failed: {e}");
        }
    }
}
