//! Lowering: the optimised graph, specialised to concrete input shapes, becomes a
//! [`Program`]: a table of tensors (where each lives: a bound input/output, a device weight,
//! the arena or a view of another tensor) and the steps that run in order.
//!
//! Specialisation runs on the host whenever a context meets new input shapes: the input dims
//! are made concrete, shapes are inferred, and constant folding (kiln-reference) evaluates the
//! shape arithmetic (`Shape` → `Gather` → `Concat` → `Reshape` chains) so that only real
//! tensor work is left for the GPU.

use std::collections::HashMap;

use kiln_core::{DataType, Shape, checked_element_count};
use kiln_onnx::{Graph, Node};

use super::memory::{self, Interval, MemoryPlan};
use super::passes;
use crate::error::{EngineError, Result};

/// Ops the engine lowers (the build error lists nodes of any other op).
pub const SUPPORTED_OPS: &[&str] = &[
    // views and copies
    "Identity",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Dropout",
    // libraries
    "Gemm",
    "MatMul",
    "Conv",
    "ConvTranspose",
    // elementwise unary
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Gelu",
    "Erf",
    "Softplus",
    "Elu",
    "Selu",
    "Mish",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Abs",
    "Neg",
    "Floor",
    "Ceil",
    "Round",
    "Clip",
    "Not",
    "IsNaN",
    "Cast",
    // binary / ternary
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Min",
    "Max",
    "Equal",
    "Less",
    "Greater",
    "And",
    "Or",
    "PRelu",
    "Where",
    // reductions and normalisation
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL2",
    "ArgMax",
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "BatchNormalization",
    // pooling
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    // data movement
    "Transpose",
    "Concat",
    "Slice",
    "Gather",
    "Pad",
    "Expand",
    "Tile",
    "Resize",
];

/// Ops evaluated on the host while specialising (shape arithmetic): accepted by the build, an
/// error only if one is still left once the input shapes are concrete.
pub const HOST_OPS: &[&str] = &[
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Range",
    "NonZero",
];

/// Ops that never move data: the output is the input's bytes under another shape.
pub const VIEW_OPS: &[&str] = &["Reshape", "Flatten", "Squeeze", "Unsqueeze"];

/// Every node the engine cannot lower, as a line naming it (the build fails with all of them).
/// `host_ops` also accepts [`HOST_OPS`] (before specialisation).
pub fn unsupported_nodes(graph: &Graph, host_ops: bool) -> Vec<String> {
    graph
        .nodes
        .iter()
        .filter(|n| {
            let op = n.op_type.as_str();
            !n.domain.is_empty()
                || !(SUPPORTED_OPS.contains(&op) || host_ops && HOST_OPS.contains(&op))
        })
        .map(|n| {
            let domain = if n.domain.is_empty() {
                "ai.onnx"
            } else {
                &n.domain
            };
            format!("  node #{} '{}': {} ({domain})", n.index, n.name, n.op_type)
        })
        .collect()
}

/// Index into [`Program::tensors`].
pub type TensorId = usize;

/// Where a tensor's bytes live while a context runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The i-th engine input (bound by the caller, or staged by `execute_host`).
    Input(usize),
    /// The i-th engine output.
    Output(usize),
    /// An engine weight (device memory owned by the Engine), by initialiser name.
    Weight(String),
    /// At this byte offset of the context's arena.
    Arena(usize),
    /// The same bytes as another tensor (reshape-like ops).
    View(TensorId),
}

/// One tensor of a program.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Storage element type (fp16/bf16 engines store f32 activations and weights in half).
    pub dtype: DataType,
    pub dims: Vec<usize>,
    pub storage: Storage,
}

impl TensorInfo {
    pub fn bytes(&self) -> usize {
        self.dims.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Runs the ONNX node (dispatched on its op type).
    Node(Node),
    /// Element type conversion at the engine boundary (mixed precision).
    Cast,
    /// Device-to-device copy (a graph output that is another value's bytes).
    Copy,
}

/// One step: what runs, and the tensors it reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    /// `None` for omitted optional inputs.
    pub inputs: Vec<Option<TensorId>>,
    pub outputs: Vec<TensorId>,
}

/// A graph lowered at concrete shapes, with its memory plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub tensors: Vec<TensorInfo>,
    pub steps: Vec<Step>,
    pub arena_bytes: usize,
    /// Dims of each engine output, in the engine's output order.
    pub output_dims: Vec<Vec<usize>>,
}

/// The storage type of a value in an engine that computes in `compute` (f32 values become
/// `compute`; everything else keeps its type).
pub fn storage_dtype(dtype: DataType, compute: DataType) -> DataType {
    if dtype == DataType::F32 {
        compute
    } else {
        dtype
    }
}

/// Makes `graph` concrete at `inputs` (name, dims), folds the shape arithmetic away and
/// removes what became dead. Inputs not named keep their declared shapes (they must be
/// fixed).
pub fn specialize(graph: &Graph, inputs: &[(String, Vec<usize>)]) -> Result<Graph> {
    let mut g = graph.clone();
    for vi in &mut g.inputs {
        if let Some((_, dims)) = inputs.iter().find(|(n, _)| *n == vi.name) {
            vi.shape = Some(Shape::from_known(dims));
        }
    }
    g.value_info.clear();
    for o in &mut g.outputs {
        o.shape = None;
    }
    kiln_onnx::infer_shapes(&mut g)?;
    let (mut g, _) = kiln_reference::fold_constants(&g)?;
    g = passes::remove_identities(&g).apply(&g)?;
    g = passes::dead_nodes(&g).apply(&g)?;
    g.value_info.clear();
    kiln_onnx::infer_shapes(&mut g)?;
    Ok(g)
}

/// Lowers a specialised graph (see [`specialize`]) for an engine computing in `compute`.
pub fn lower(graph: &Graph, compute: DataType) -> Result<Program> {
    let bad = unsupported_nodes(graph, false);
    if !bad.is_empty() {
        return Err(EngineError::UnsupportedNodes { nodes: bad });
    }
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut by_name: HashMap<String, TensorId> = HashMap::new();
    let mut steps: Vec<Step> = Vec::new();
    let known = |name: &str| -> Result<(DataType, Vec<usize>)> {
        let vi = graph
            .value(name)
            .ok_or_else(|| EngineError::Memory(format!("value '{name}' has no type")))?;
        let dims = vi.shape.as_ref().and_then(Shape::as_known);
        match (vi.dtype, dims) {
            (Some(t), Some(d)) => Ok((t, d)),
            _ => Err(EngineError::Unsupported(format!(
                "value '{name}' has no concrete type and shape after specialisation"
            ))),
        }
    };
    let add = |tensors: &mut Vec<TensorInfo>, name: &str, dtype, dims, storage| {
        tensors.push(TensorInfo {
            name: name.to_string(),
            dtype,
            dims,
            storage,
        });
        tensors.len() - 1
    };
    // Inputs: bound as declared; f32 inputs of a half engine are cast into the arena.
    for (i, vi) in graph.inputs.iter().enumerate() {
        let (dt, dims) = known(&vi.name)?;
        let io = add(&mut tensors, &vi.name, dt, dims.clone(), Storage::Input(i));
        let st = storage_dtype(dt, compute);
        if st != dt {
            let t = add(
                &mut tensors,
                &format!("{}@{compute}", vi.name),
                st,
                dims,
                Storage::Arena(0),
            );
            steps.push(Step {
                kind: StepKind::Cast,
                inputs: vec![Some(io)],
                outputs: vec![t],
            });
            by_name.insert(vi.name.clone(), t);
        } else {
            by_name.insert(vi.name.clone(), io);
        }
    }
    for t in &graph.initializers {
        let id = add(
            &mut tensors,
            t.name(),
            storage_dtype(t.dtype(), compute),
            t.dims().to_vec(),
            Storage::Weight(t.name().to_string()),
        );
        by_name.insert(t.name().to_string(), id);
    }
    for node in &graph.nodes {
        let inputs = node
            .inputs
            .iter()
            .map(|i| {
                if i.is_empty() {
                    Ok(None)
                } else {
                    by_name
                        .get(i)
                        .copied()
                        .map(Some)
                        .ok_or_else(|| EngineError::Lowering {
                            node: node.name.clone(),
                            op: node.op_type.clone(),
                            message: format!("input '{i}' is not defined"),
                        })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut outputs = Vec::new();
        let is_view = VIEW_OPS.contains(&node.op_type.as_str());
        for o in node.outputs.iter().filter(|o| !o.is_empty()) {
            let (dt, dims) = known(o)?;
            let storage = match (is_view, inputs.first().copied().flatten()) {
                (true, Some(src)) => Storage::View(src),
                _ => Storage::Arena(0),
            };
            let id = add(&mut tensors, o, storage_dtype(dt, compute), dims, storage);
            by_name.insert(o.clone(), id);
            outputs.push(id);
        }
        if !is_view {
            steps.push(Step {
                kind: StepKind::Node(node.clone()),
                inputs,
                outputs,
            });
        }
    }
    // Outputs: written by a Cast or Copy step into the bound output.
    let mut output_dims = Vec::new();
    for (i, vi) in graph.outputs.iter().enumerate() {
        let (dt, dims) = known(&vi.name)?;
        let src = by_name[vi.name.as_str()];
        let out = add(&mut tensors, &vi.name, dt, dims.clone(), Storage::Output(i));
        let kind = if tensors[src].dtype != dt {
            StepKind::Cast
        } else {
            StepKind::Copy
        };
        // Retarget the producing step when it can write the output directly.
        let direct = kind == StepKind::Copy
            && matches!(tensors[src].storage, Storage::Arena(_))
            && !graph.outputs[..i].iter().any(|o| o.name == vi.name)
            && graph.outputs.iter().filter(|o| o.name == vi.name).count() == 1;
        if direct {
            tensors[src].storage = Storage::Output(i);
            tensors.pop();
        } else {
            steps.push(Step {
                kind,
                inputs: vec![Some(src)],
                outputs: vec![out],
            });
        }
        output_dims.push(dims);
    }
    let arena_bytes = place(&mut tensors, &steps)?;
    Ok(Program {
        tensors,
        steps,
        arena_bytes,
        output_dims,
    })
}

/// The tensor whose bytes `id` uses (following views).
pub fn root(tensors: &[TensorInfo], mut id: TensorId) -> TensorId {
    while let Storage::View(src) = tensors[id].storage {
        id = src;
    }
    id
}

/// Liveness of every arena tensor (views keep their root alive), then the memory plan.
fn place(tensors: &mut [TensorInfo], steps: &[Step]) -> Result<usize> {
    let mut life: HashMap<TensorId, (usize, usize)> = HashMap::new();
    for (s, step) in steps.iter().enumerate() {
        for &t in step.inputs.iter().flatten().chain(&step.outputs) {
            let r = root(tensors, t);
            if matches!(tensors[r].storage, Storage::Arena(_)) {
                let e = life.entry(r).or_insert((s, s));
                e.0 = e.0.min(s);
                e.1 = e.1.max(s);
            }
        }
    }
    let mut ids: Vec<TensorId> = life.keys().copied().collect();
    ids.sort_unstable();
    let intervals: Vec<Interval> = ids
        .iter()
        .map(|&id| {
            let bytes = checked_element_count(&tensors[id].dims)
                .and_then(|n| n.checked_mul(tensors[id].dtype.size_in_bytes()))
                .ok_or_else(|| {
                    EngineError::Memory(format!("tensor '{}' is too large", tensors[id].name))
                })?;
            Ok(Interval {
                bytes,
                first: life[&id].0,
                last: life[&id].1,
            })
        })
        .collect::<Result<_>>()?;
    let MemoryPlan {
        offsets,
        arena_bytes,
    } = memory::plan(&intervals)?;
    for (k, &id) in ids.iter().enumerate() {
        tensors[id].storage = Storage::Arena(offsets[k]);
    }
    Ok(arena_bytes)
}
