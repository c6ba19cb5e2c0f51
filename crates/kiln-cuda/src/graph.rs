//! CUDA graphs: capture a stream's work, instantiate, replay, update in place.

use std::sync::Arc;

use crate::device::Device;
use crate::error::{CudaError, DriverContext, Result};
use crate::ffi::{self, RawGraph, RawGraphExec};
use crate::probe;
use crate::stream::Stream;

/// A captured graph, not yet instantiated.
pub struct CapturedGraph {
    graph: RawGraph,
    device: Arc<Device>,
}

/// An instantiated graph, ready to launch.
pub struct Graph {
    exec: RawGraphExec,
    /// The graph the executable was last made from or updated with.
    _graph: RawGraph,
    device: Arc<Device>,
}

/// Captures the work `f` queues on `stream` into a graph (thread-local capture mode). Nothing
/// runs during capture; `f` must not allocate device memory or synchronise. Capture is ended
/// even when `f` fails, so the stream stays usable.
pub fn capture(stream: &Stream, f: impl FnOnce(&Stream) -> Result<()>) -> Result<CapturedGraph> {
    ffi::begin_capture(stream.cuda_stream()).op("cuStreamBeginCapture")?;
    let work = f(stream);
    let ended = ffi::end_capture(stream.cuda_stream()).op("cuStreamEndCapture");
    work?;
    Ok(CapturedGraph {
        graph: ended?,
        device: stream.device().clone(),
    })
}

impl CapturedGraph {
    /// Instantiates the graph.
    pub fn instantiate(self) -> Result<Graph> {
        let exec =
            ffi::instantiate(self.device.cuda_context(), &self.graph).op("cuGraphInstantiate")?;
        Ok(Graph {
            exec,
            _graph: self.graph,
            device: self.device,
        })
    }
}

impl Graph {
    /// Uploads the graph to the device ahead of its first launch.
    pub fn upload(&mut self, stream: &Stream) -> Result<()> {
        ffi::graph_upload(stream.cuda_stream(), &self.exec).op("cuGraphUpload")
    }

    /// Replays the graph on `stream`.
    pub fn launch(&mut self, stream: &Stream) -> Result<()> {
        ffi::graph_launch(stream.cuda_stream(), &self.exec).op("cuGraphLaunch")
    }

    /// Updates the executable graph in place with the parameters of `new` (same topology,
    /// e.g. other pointers or scalars). A topology change gives [`CudaError::GraphUpdate`]:
    /// instantiate `new` instead.
    pub fn update(&mut self, new: CapturedGraph) -> Result<()> {
        let driver = probe::driver_probe()?;
        if !driver.graph_update {
            return Err(CudaError::Unsupported {
                feature: "CUDA graph update (cuGraphExecUpdate_v2)",
                detail: format!("{} has no {}", driver.info.file, probe::GRAPH_UPDATE_SYMBOL),
            });
        }
        match ffi::graph_exec_update(self.device.cuda_context(), &mut self.exec, &new.graph) {
            Ok(()) => {
                self._graph = new.graph;
                Ok(())
            }
            Err((e, result)) => Err(CudaError::GraphUpdate {
                reason: format!("{e}; update result {result}"),
            }),
        }
    }
}
