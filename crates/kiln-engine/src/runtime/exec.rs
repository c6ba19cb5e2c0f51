//! Runs a lowered program's steps on a stream.

use kiln_cuda::{DeviceMemory, Stream};

use super::Engine;
use crate::builder::lower::{Program, Step, StepKind, Storage, TensorId};
use crate::error::{EngineError, Result};

/// Device addresses of one run.
pub(crate) struct Addresses<'a> {
    pub inputs: &'a [u64],
    pub outputs: &'a [u64],
    pub arena: u64,
    pub arena_bytes: usize,
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

/// The device range of tensor `id`.
pub(crate) fn address(
    engine: &Engine,
    p: &Program,
    a: &Addresses<'_>,
    id: TensorId,
) -> Result<Raw> {
    let t = &p.tensors[id];
    let ptr = match &t.storage {
        Storage::Input(i) => a.inputs[*i],
        Storage::Output(i) => a.outputs[*i],
        Storage::Weight(name) => engine
            .weights
            .get(name)
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
        Storage::View(src) => address(engine, p, a, *src)?.ptr,
    };
    Ok(Raw {
        ptr,
        len: t.bytes(),
    })
}

/// Enqueues every step.
pub(crate) fn run(engine: &Engine, p: &Program, a: &Addresses<'_>, stream: &Stream) -> Result<()> {
    for step in &p.steps {
        run_step(engine, p, a, step, stream)?;
    }
    Ok(())
}

fn run_step(
    engine: &Engine,
    p: &Program,
    a: &Addresses<'_>,
    step: &Step,
    stream: &Stream,
) -> Result<()> {
    match &step.kind {
        StepKind::Copy => {
            let (Some(Some(src)), Some(&dst)) = (step.inputs.first(), step.outputs.first()) else {
                return Err(EngineError::Memory("copy step without operands".into()));
            };
            let src = address(engine, p, a, *src)?;
            let mut dst = address(engine, p, a, dst)?;
            let n = src.len.min(dst.len);
            kiln_cuda::copy::dtod(stream, &src, 0, &mut dst, 0, n)?;
            Ok(())
        }
        StepKind::Cast => Err(EngineError::Unsupported(
            "the boundary Cast step of fp16/bf16 engines is not wired to the NVRTC cast kernel yet"
                .into(),
        )),
        StepKind::Node(node) => Err(EngineError::Unsupported(format!(
            "the GPU kernel for {} (node '{}') is not wired into kiln-engine's runtime yet",
            node.op_type, node.name
        ))),
    }
}
