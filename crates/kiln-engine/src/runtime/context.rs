//! Per-run state: input shapes, device bindings, the arena, the stream.

use std::sync::Arc;

use kiln_core::{BackendError, DevicePtr, HostTensor, StreamHandle};
use kiln_cuda::{DeviceBuffer, DeviceMemory, Event, ForeignStream, Stream};

use super::exec::{self, Addresses};
use super::profile::Profile;
use super::{Engine, ShapeKey, check_dims, unknown};
use crate::error::{EngineError, Result};

/// One context of an [`Engine`]: runs on its own stream with its own arena; many contexts of
/// one engine run concurrently. `enqueue` accepts any stream of the device and orders the run
/// against it with events (see the `kiln_core::ExecutionContext` impl).
pub struct ExecutionContext {
    engine: Arc<Engine>,
    stream: Arc<Stream>,
    shapes: Vec<Option<Vec<usize>>>,
    inputs: Vec<Option<DevicePtr>>,
    outputs: Vec<Option<DevicePtr>>,
    arena: Option<DeviceBuffer>,
    workspace: Option<DeviceBuffer>,
    /// Events ordering a run against a caller's stream: (caller's work ready, run done).
    fences: Option<(Event, Event)>,
    graphs: GraphState,
}

/// What a captured run depends on: the input shapes and every address it touches.
type GraphKey = (ShapeKey, Vec<u64>, Vec<u64>, u64, u64);

/// Graphs a context keeps by default ([`ExecutionContext::set_max_graphs`]).
pub const DEFAULT_MAX_GRAPHS: usize = 16;

/// CUDA-graph replay of runs (off by default; [`ExecutionContext::set_cuda_graphs`]). Each
/// distinct run (shapes and every address it touches) is run step by step once, captured
/// into a graph the second time, then replayed with one launch: the host cost of a run no
/// longer grows with its step count. Up to `max` graphs are kept (least recently used go
/// first), so a caller alternating between a few shapes (a batcher's batch sizes) replays
/// each of them.
#[derive(Default)]
struct GraphState {
    enabled: bool,
    /// Most graphs kept (0: [`DEFAULT_MAX_GRAPHS`]).
    max: usize,
    /// Runs made once without a graph, most recent last (the run before a capture warms up
    /// modules, tactics and workspaces).
    warm: Vec<GraphKey>,
    /// Captured graphs with the tick of their last use.
    cached: Vec<(GraphKey, kiln_cuda::Graph, u64)>,
    tick: u64,
    captures: usize,
}

impl GraphState {
    fn max(&self) -> usize {
        if self.max == 0 {
            DEFAULT_MAX_GRAPHS
        } else {
            self.max
        }
    }

    /// Forgets graphs and warm runs made with another arena or workspace: those buffers were
    /// replaced (grown), so the graphs point at memory the context no longer owns.
    fn retain_current(&mut self, key: &GraphKey) {
        let same = |k: &GraphKey| k.3 == key.3 && k.4 == key.4;
        self.cached.retain(|(k, _, _)| same(k));
        self.warm.retain(same);
    }

    fn clear(&mut self) {
        self.cached.clear();
        self.warm.clear();
    }
}

impl ExecutionContext {
    pub fn new(engine: Arc<Engine>) -> Result<ExecutionContext> {
        let stream = Stream::new(&engine.device)?;
        let (ni, no) = (engine.header.inputs.len(), engine.header.outputs.len());
        let mut shapes = vec![None; ni];
        for (s, spec) in shapes.iter_mut().zip(&engine.header.inputs) {
            *s = spec.shape.as_known();
        }
        Ok(ExecutionContext {
            engine,
            stream,
            shapes,
            inputs: vec![None; ni],
            outputs: vec![None; no],
            arena: None,
            workspace: None,
            fences: None,
            graphs: GraphState::default(),
        })
    }

    /// The stream this context runs on.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    fn key(&self) -> Result<ShapeKey> {
        self.shapes
            .iter()
            .zip(&self.engine.header.inputs)
            .map(|(s, spec)| {
                s.clone().ok_or_else(|| {
                    BackendError::Unset {
                        name: spec.name.clone(),
                    }
                    .into()
                })
            })
            .collect()
    }

    /// Makes sure the arena holds `bytes`.
    fn arena(&mut self, bytes: usize) -> Result<u64> {
        let small = self.arena.as_ref().is_none_or(|a| a.capacity() < bytes);
        if small {
            self.arena = None;
            self.arena = Some(self.engine.alloc.alloc(bytes.max(256), &self.stream)?);
        }
        Ok(self.arena.as_ref().map_or(0, |a| a.device_ptr()))
    }

    /// Enqueues one run on the context's stream with the bound buffers.
    ///
    /// # Safety
    /// As [`kiln_core::ExecutionContext::enqueue`]: every bound address must be live device
    /// memory of the tensor's size until the stream's work finishes.
    pub unsafe fn enqueue_own(&mut self) -> Result<()> {
        if !self.graphs.enabled {
            return self.with_addresses(|engine, program, addrs, stream, _| {
                exec::run(engine, program, addrs, stream)
            });
        }
        let mut graphs = std::mem::take(&mut self.graphs);
        let r = self.with_addresses(|engine, program, addrs, stream, key| {
            run_graphed(engine, program, addrs, stream, &mut graphs, key)
        });
        self.graphs = graphs;
        r
    }

    /// Turns CUDA-graph replay on or off (off by default). On: the first run at given shapes
    /// and bindings runs step by step, the second is captured into a graph and launched, later
    /// identical runs replay it; up to [`ExecutionContext::set_max_graphs`] distinct runs keep
    /// their graphs. Growing the arena or the workspace (a larger shape) drops the graphs made
    /// with the old buffers. If capture fails (a library call that cannot be captured) the
    /// context says so in the log and runs without graphs.
    pub fn set_cuda_graphs(&mut self, on: bool) {
        self.graphs.enabled = on;
        if !on {
            self.graphs.clear();
        }
    }

    /// How many captured graphs the context keeps (default [`DEFAULT_MAX_GRAPHS`]; at least
    /// 1); the least recently used go first.
    pub fn set_max_graphs(&mut self, n: usize) {
        self.graphs.max = n.max(1);
        let max = self.graphs.max;
        while self.graphs.cached.len() > max {
            evict_lru(&mut self.graphs.cached);
        }
    }

    /// Whether CUDA-graph replay is on, and how many graphs the context has captured so far
    /// (captures, not graphs kept: a graph dropped and captured again counts twice).
    pub fn cuda_graphs(&self) -> (bool, usize) {
        (self.graphs.enabled, self.graphs.captures)
    }

    /// How many captured graphs the context holds now.
    pub fn cuda_graphs_kept(&self) -> usize {
        self.graphs.cached.len()
    }

    /// One run on the context's stream with a pair of timing events around every step; waits
    /// for the stream and returns each step's GPU time (`kiln bench --dump-profile`'s table).
    ///
    /// # Safety
    /// As [`ExecutionContext::enqueue_own`].
    pub unsafe fn run_profiled(&mut self) -> Result<Profile> {
        self.with_addresses(|engine, program, addrs, stream, _| {
            exec::run_profiled(engine, program, addrs, stream)
        })
    }

    /// Resolves the program for the set shapes, the bindings, the arena and the workspace,
    /// then calls `f` with them.
    fn with_addresses<T>(
        &mut self,
        f: impl FnOnce(&Engine, &super::Prepared, &Addresses<'_>, &Stream, GraphKey) -> Result<T>,
    ) -> Result<T> {
        let key = self.key()?;
        let program = self.engine.program(&key)?;
        let bind = |v: &[Option<DevicePtr>], specs: &[kiln_core::TensorSpec]| {
            v.iter()
                .zip(specs)
                .map(|(p, s)| {
                    p.map(|p| p.0).ok_or_else(|| {
                        EngineError::from(BackendError::Unset {
                            name: s.name.clone(),
                        })
                    })
                })
                .collect::<Result<Vec<u64>>>()
        };
        let inputs = bind(&self.inputs, &self.engine.header.inputs)?;
        let outputs = bind(&self.outputs, &self.engine.header.outputs)?;
        let arena = self.arena(program.program.arena_bytes)?;
        let ws_bytes = program.workspace;
        if ws_bytes > 0
            && self
                .workspace
                .as_ref()
                .is_none_or(|w| w.capacity() < ws_bytes)
        {
            self.workspace = None;
            self.workspace = Some(self.engine.alloc.alloc(ws_bytes, &self.stream)?);
        }
        let addrs = Addresses {
            inputs: &inputs,
            outputs: &outputs,
            arena,
            arena_bytes: program.program.arena_bytes,
            workspace: self.workspace.as_ref().map_or(0, |w| w.device_ptr()),
            workspace_bytes: self.workspace.as_ref().map_or(0, |w| w.capacity()),
        };
        let graph_key = (
            key,
            inputs.clone(),
            outputs.clone(),
            addrs.arena,
            addrs.workspace,
        );
        f(&self.engine, &program, &addrs, &self.stream, graph_key)
    }

    /// The two events that order a run against a caller's stream (created on first use).
    fn fences(&mut self) -> Result<&(Event, Event)> {
        let fences = match self.fences.take() {
            Some(f) => f,
            None => {
                let dev = &self.engine.device;
                (Event::new(dev, false)?, Event::new(dev, false)?)
            }
        };
        Ok(self.fences.insert(fences))
    }

    /// Enqueues one run on the context's stream, ordered after the work queued on `caller` so
    /// far, and makes `caller` wait for the run (see the trait impl's `enqueue`).
    ///
    /// # Safety
    /// As [`ExecutionContext::enqueue_own`], with "until `caller` passes this run" for "until
    /// the stream's work finishes".
    pub unsafe fn enqueue_after(&mut self, caller: &ForeignStream) -> Result<()> {
        let stream = self.stream.clone();
        let (ready, _) = self.fences()?;
        caller.record_into(ready)?;
        stream.wait(ready)?;
        // SAFETY: the caller's contract; the bound memory outlives the run because `caller`
        // waits for it below.
        let run = unsafe { self.enqueue_own() };
        // Whatever the run queued (all of it, or the part before an error) comes before the
        // caller's later work.
        let (_, done) = self.fences()?;
        done.record(&stream)?;
        caller.wait(done)?;
        run
    }

    fn run_host(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        let specs = self.engine.header.inputs.clone();
        let mut staged: Vec<Option<&HostTensor>> = vec![None; specs.len()];
        for t in inputs {
            let i = specs
                .iter()
                .position(|s| s.name == t.name)
                .ok_or_else(|| unknown(&t.name, &specs))?;
            if t.dtype != specs[i].dtype {
                return Err(BackendError::WrongType {
                    name: t.name.clone(),
                    expected: specs[i].dtype,
                    got: t.dtype,
                }
                .into());
            }
            self.set_shape(&t.name, &t.dims)?;
            staged[i] = Some(t);
        }
        let mut bufs = Vec::new();
        for (i, t) in staged.iter().enumerate() {
            let t = t.ok_or_else(|| BackendError::Unset {
                name: specs[i].name.clone(),
            })?;
            let mut b = self.engine.alloc.alloc(t.data.len().max(1), &self.stream)?;
            kiln_cuda::copy::htod(&self.stream, &t.data, &mut b)?;
            self.inputs[i] = Some(DevicePtr(b.device_ptr()));
            bufs.push(b);
        }
        let program = self.engine.program(&self.key()?)?;
        let mut outs = Vec::new();
        for (i, spec) in self.engine.header.outputs.iter().enumerate() {
            let t = HostTensor::zeros(
                spec.name.clone(),
                spec.dtype,
                &program.program.output_dims[i],
            )?;
            let b = self.engine.alloc.alloc(t.data.len().max(1), &self.stream)?;
            self.outputs[i] = Some(DevicePtr(b.device_ptr()));
            outs.push((t, b));
        }
        // SAFETY: every binding points into `bufs`/`outs`, alive until after the stream is
        // synchronised by the copies below.
        let run = unsafe { self.enqueue_own() };
        self.stream.synchronize()?;
        run?;
        let mut result = Vec::new();
        for (mut t, b) in outs {
            kiln_cuda::copy::dtoh(&self.stream, &b, &mut t.data)?;
            result.push(t);
        }
        self.inputs.iter_mut().for_each(|p| *p = None);
        self.outputs.iter_mut().for_each(|p| *p = None);
        drop(bufs);
        Ok(result)
    }

    fn set_shape(&mut self, name: &str, dims: &[usize]) -> Result<(), BackendError> {
        let specs = &self.engine.header.inputs;
        let i = specs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| unknown(name, specs))?;
        check_dims(&specs[i], dims, &self.engine.header.config.profiles)?;
        self.shapes[i] = Some(dims.to_vec());
        Ok(())
    }
}

fn evict_lru(cached: &mut Vec<(GraphKey, kiln_cuda::Graph, u64)>) {
    if let Some(i) = cached
        .iter()
        .enumerate()
        .min_by_key(|(_, (_, _, t))| *t)
        .map(|(i, _)| i)
    {
        cached.swap_remove(i);
    }
}

/// One run with CUDA-graph replay (see [`GraphState`]).
fn run_graphed(
    engine: &Engine,
    program: &super::Prepared,
    addrs: &Addresses<'_>,
    stream: &Stream,
    g: &mut GraphState,
    key: GraphKey,
) -> Result<()> {
    g.tick += 1;
    let tick = g.tick;
    if let Some((_, graph, used)) = g.cached.iter_mut().find(|(k, _, _)| *k == key) {
        *used = tick;
        return Ok(graph.launch(stream)?);
    }
    g.retain_current(&key);
    let Some(w) = g.warm.iter().position(|k| *k == key) else {
        exec::run(engine, program, addrs, stream)?;
        if g.warm.len() >= g.max() {
            g.warm.remove(0);
        }
        g.warm.push(key);
        return Ok(());
    };
    g.warm.remove(w);
    // A run made once already: capture it. A step failing now failed in the warm run too
    // unless capture is what it refused, so any failure here turns graphs off.
    let mut step_error = None;
    let captured = kiln_cuda::graph::capture(stream, |s| {
        if let Err(e) = exec::run(engine, program, addrs, s) {
            step_error = Some(e);
        }
        Ok(())
    });
    let graph = match (step_error, captured.and_then(|c| c.instantiate())) {
        (None, Ok(graph)) => graph,
        (step, cuda) => {
            let why = step
                .map(|e| e.to_string())
                .or_else(|| cuda.err().map(|e| e.to_string()))
                .unwrap_or_default();
            tracing::warn!(%why, "CUDA graph capture failed; this context runs without graphs");
            g.enabled = false;
            g.clear();
            return exec::run(engine, program, addrs, stream);
        }
    };
    let mut graph = graph;
    graph.launch(stream)?;
    g.captures += 1;
    if g.cached.len() >= g.max() {
        evict_lru(&mut g.cached);
    }
    g.cached.push((key, graph, tick));
    Ok(())
}

impl kiln_core::ExecutionContext for ExecutionContext {
    fn set_input_shape(&mut self, name: &str, dims: &[usize]) -> Result<(), BackendError> {
        self.set_shape(name, dims)
    }

    fn output_shape(&self, name: &str) -> Result<Vec<usize>, BackendError> {
        let specs = &self.engine.header.outputs;
        let i = specs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| unknown(name, specs))?;
        let program = self.engine.program(&self.key()?)?;
        Ok(program.program.output_dims[i].clone())
    }

    fn execute_host(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError> {
        Ok(self.run_host(inputs)?)
    }

    fn supports_device_io(&self) -> bool {
        true
    }

    fn set_cuda_graphs(&mut self, on: bool) -> bool {
        ExecutionContext::set_cuda_graphs(self, on);
        true
    }

    fn bind(&mut self, name: &str, ptr: DevicePtr) -> Result<(), BackendError> {
        let h = &self.engine.header;
        if let Some(i) = h.inputs.iter().position(|s| s.name == name) {
            self.inputs[i] = Some(ptr);
        } else if let Some(i) = h.outputs.iter().position(|s| s.name == name) {
            self.outputs[i] = Some(ptr);
        } else {
            let all: Vec<_> = h.inputs.iter().chain(&h.outputs).cloned().collect();
            return Err(unknown(name, &all));
        }
        Ok(())
    }

    /// Enqueues one run ordered on `stream`, which may be any CUDA stream of the engine's device
    /// (0, the legacy default stream, included); the run itself executes on the context's own
    /// stream ([`ExecutionContext::stream`]):
    ///
    /// - `stream` is the context's own: the run is queued on it, nothing more.
    /// - any other stream: an event recorded on `stream` makes the context's stream wait for the
    ///   work queued on `stream` so far (e.g. the copies that filled the inputs); the run is
    ///   queued on the context's stream; then an event recorded on the context's stream makes
    ///   `stream` wait for the run. Work the caller queues on `stream` afterwards (copies of the
    ///   outputs, the next run's input copies) sees the outputs, and nothing on `stream` has to
    ///   synchronise with the context's stream by hand. Neither stream blocks the host.
    ///
    /// If the run fails part way, `stream` is still made to wait for whatever it queued, and
    /// the run's error is returned. A stream of another device (another CUDA context) is an
    /// error, before anything is queued.
    ///
    /// # Safety
    /// The trait's contract: every bound address is live device memory of the tensor's size
    /// until `stream` passes this run, and `stream` is a live stream of the engine's device
    /// (the driver cannot check a raw handle; a destroyed or made-up one is undefined
    /// behaviour).
    unsafe fn enqueue(&mut self, stream: StreamHandle) -> Result<(), BackendError> {
        if stream.0 == self.stream.id() {
            // SAFETY: the caller upholds the trait's contract for the bound addresses.
            return Ok(unsafe { self.enqueue_own() }?);
        }
        // SAFETY: the trait's contract makes `stream` a live stream; its device is checked.
        let caller = unsafe { ForeignStream::from_raw(&self.engine.device, stream.0) }
            .map_err(EngineError::from)?;
        // SAFETY: as above; `enqueue_after` orders the run between `caller`'s work before and
        // after it, so the bound memory is in use only until `caller` passes the run.
        Ok(unsafe { self.enqueue_after(&caller) }?)
    }
}
