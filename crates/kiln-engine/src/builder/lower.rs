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

use super::checks;
use super::memory::{self, Interval, MemoryPlan};
use super::passes;
use crate::error::{EngineError, Result};

/// Elementwise unary ops: one NVRTC template family.
pub const UNARY_OPS: &[&str] = &[
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
];

/// Whether the engine lowers `op` (the build error lists nodes of any other op).
pub fn is_supported(op: &str) -> bool {
    SUPPORTED_OPS.contains(&op) || UNARY_OPS.contains(&op)
}

/// Ops the engine lowers besides [`UNARY_OPS`].
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
    "Cast",
    // binary / ternary
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Min",
    "Max",
    // variadic: more or fewer than two inputs become binary steps (passes::variadic_to_binary)
    "Sum",
    "Mean",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Xor",
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
    "ReduceL1",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    "ArgMax",
    "ArgMin",
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    // rewritten as Mul + Add at specialisation when its parameters are constant
    "BatchNormalization",
    // pooling
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    // data movement
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "GatherND",
    "Pad",
    "Resize",
    "Expand",
    "Tile",
];

/// `com.microsoft` ops the engine lowers (made by the builder's fusion passes, or found in
/// models ONNX Runtime's optimiser wrote): Conv/Gemm with their epilogues in one library call.
pub const FUSED_OPS: &[&str] = &["FusedConv", "FusedGemm"];

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
            if n.domain == kiln_onnx::MS_DOMAIN {
                return !FUSED_OPS.contains(&op);
            }
            if n.domain == super::rewrite::KILN_DOMAIN {
                return !super::rewrite::KILN_OPS.contains(&op);
            }
            !n.domain.is_empty() || !(is_supported(op) || host_ops && HOST_OPS.contains(&op))
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
    /// Zero padding before a convolution whose pads are asymmetric (cuDNN pads both sides
    /// alike): ONNX `pads` layout, `[x1_begin, .., x1_end, ..]` over every axis.
    Pad { pads: Vec<i64> },
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

/// Most infer-and-fold rounds of [`specialize`] after the first.
const SPECIALIZE_ROUNDS: usize = 8;

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
    let (mut g, mut fold) = kiln_reference::fold_constants(&g)?;
    // A fold can make more shapes known (a Reshape whose shape input became constant), and
    // with them more Shape nodes foldable: infer and fold again until nothing changes.
    for _ in 0..SPECIALIZE_ROUNDS {
        if fold.folded_nodes == 0 {
            break;
        }
        g.value_info.clear();
        for o in &mut g.outputs {
            o.shape = None;
        }
        kiln_onnx::infer_shapes(&mut g)?;
        (g, fold) = kiln_reference::fold_constants(&g)?;
    }
    batch_norm_to_elementwise(&mut g)?;
    g = passes::remove_identities(&g).apply(&g)?;
    g = passes::dead_nodes(&g).apply(&g)?;
    g.value_info.clear();
    kiln_onnx::infer_shapes(&mut g)?;
    Ok(g)
}

/// Lowers a specialised graph (see [`specialize`]) for an engine computing in `compute`.
pub fn lower(graph: &Graph, compute: DataType) -> Result<Program> {
    let mut bad = unsupported_nodes(graph, false);
    bad.extend(
        graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "BatchNormalization")
            .map(|n| {
                format!(
                    "  node #{} '{}': BatchNormalization (inference form with constant f32 \
                     parameters only; it could not be folded into a Conv/Gemm)",
                    n.index, n.name
                )
            }),
    );
    bad.extend(graph.nodes.iter().filter_map(checks::variadic_left));
    bad.extend(checks::constant_index_errors(graph));
    bad.extend(checks::resize_errors(graph));
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
    // Inputs: bound as declared; f32 inputs of a half engine are cast into the arena, except
    // those only NHWC entries read (they convert while they transpose).
    for (i, vi) in graph.inputs.iter().enumerate() {
        let (dt, dims) = known(&vi.name)?;
        let io = add(&mut tensors, &vi.name, dt, dims.clone(), Storage::Input(i));
        let st = storage_dtype(dt, compute);
        let mut readers = graph.nodes.iter().filter(|n| n.inputs.contains(&vi.name));
        let entries_only = readers.clone().next().is_some()
            && readers.all(|n| {
                n.domain == super::rewrite::KILN_DOMAIN
                    && n.op_type == super::rewrite::nhwc::ENTRY_OP
            });
        if st != dt && !entries_only {
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
    // Tensors a kernel writes in f32 whatever the engine stores (LayerNormalization's
    // statistics), with the storage type their readers take; `narrowed` holds the copy made
    // for readers (one Cast step, at the first reader).
    let mut wide: HashMap<TensorId, DataType> = HashMap::new();
    let mut narrowed: HashMap<TensorId, TensorId> = HashMap::new();
    for node in &graph.nodes {
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for i in &node.inputs {
            if i.is_empty() {
                inputs.push(None);
                continue;
            }
            let mut id = by_name
                .get(i)
                .copied()
                .ok_or_else(|| EngineError::Lowering {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    message: format!("input '{i}' is not defined"),
                })?;
            if let Some(&st) = wide.get(&id) {
                id = match narrowed.get(&id) {
                    Some(&n) => n,
                    None => {
                        let src = &tensors[id];
                        let (name, dims) = (format!("{}@{st}", src.name), src.dims.clone());
                        let n = add(&mut tensors, &name, st, dims, Storage::Arena(0));
                        steps.push(Step {
                            kind: StepKind::Cast,
                            inputs: vec![Some(id)],
                            outputs: vec![n],
                        });
                        narrowed.insert(id, n);
                        n
                    }
                };
            }
            inputs.push(Some(id));
        }
        let (node, inputs) = pre_pad_conv(node, inputs, &mut tensors, &mut steps)?;
        let node = &node;
        let mut outputs = Vec::new();
        let is_view = VIEW_OPS.contains(&node.op_type.as_str());
        for (pos, o) in node.outputs.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            let (dt, dims) = known(o)?;
            let storage = match (is_view, inputs.first().copied().flatten()) {
                (true, Some(src)) => Storage::View(src),
                _ => Storage::Arena(0),
            };
            let st = storage_dtype(dt, compute);
            let written = if writes_f32(node, pos) {
                DataType::F32
            } else {
                st
            };
            let id = add(&mut tensors, o, written, dims, storage);
            if written != st {
                wide.insert(id, st);
            }
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

/// Whether the kernel of `node` writes output `pos` in f32 whatever the engine's storage type:
/// LayerNormalization's Mean and InvStdDev (f32 per the spec's default `stash_type`; readers
/// in a half engine get a cast copy, a graph output keeps the f32 values).
fn writes_f32(node: &Node, pos: usize) -> bool {
    node.domain.is_empty() && node.op_type == "LayerNormalization" && (pos == 1 || pos == 2)
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

fn node_err(node: &Node, message: impl std::fmt::Display) -> EngineError {
    EngineError::Lowering {
        node: node.name.clone(),
        op: node.op_type.clone(),
        message: message.to_string(),
    }
}

/// Explicit pads `[x1_begin, .., x1_end, ..]` of a sliding window over the spatial dims
/// `input` with window `kernel`: `auto_pad` resolved (SAME_UPPER puts the odd cell at the
/// end, SAME_LOWER at the beginning), `pads` otherwise (zeros when absent).
pub fn window_pads(node: &Node, input: &[usize], kernel: &[usize]) -> Result<Vec<i64>> {
    let sp = input.len();
    let ints = |n: &str, d: i64| -> Result<Vec<i64>> {
        let v = node.attr_ints(n).map_err(|e| node_err(node, e))?;
        Ok(v.map(<[i64]>::to_vec).unwrap_or_else(|| vec![d; sp]))
    };
    let auto = node
        .attr_string("auto_pad")
        .map_err(|e| node_err(node, e))?
        .unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = ints("pads", 0)?;
            if p.len() == 2 * sp {
                Ok(p)
            } else if node.attr("pads").is_none() {
                Ok(vec![0; 2 * sp])
            } else {
                Err(node_err(
                    node,
                    format!("{} pads for {sp} spatial dims", p.len()),
                ))
            }
        }
        "VALID" => Ok(vec![0; 2 * sp]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let (strides, dil) = (ints("strides", 1)?, ints("dilations", 1)?);
            if strides.len() != sp || dil.len() != sp || kernel.len() != sp {
                return Err(node_err(
                    node,
                    "strides/dilations/kernel do not match the rank",
                ));
            }
            let mut pads = vec![0i64; 2 * sp];
            for i in 0..sp {
                let (x, s, d, k) = (input[i] as i64, strides[i].max(1), dil[i], kernel[i] as i64);
                let out = (x + s - 1) / s;
                let total = ((out - 1) * s + (k - 1) * d + 1 - x).max(0);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = b;
                pads[sp + i] = e;
            }
            Ok(pads)
        }
        other => Err(node_err(node, format!("auto_pad '{other}'"))),
    }
}

/// The explicit pads of a `Conv` with input dims `x` and weight dims `w`.
pub fn conv_pads(node: &Node, x: &[usize], w: &[usize]) -> Result<Vec<i64>> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(node_err(node, format!("input {x:?} with weights {w:?}")));
    }
    window_pads(node, &x[2..], &w[2..])
}

/// A `Conv` with asymmetric pads reads a zero-padded copy of its input (a [`StepKind::Pad`]
/// step is added) and keeps the symmetric part of its pads.
fn pre_pad_conv(
    node: &Node,
    inputs: Vec<Option<TensorId>>,
    tensors: &mut Vec<TensorInfo>,
    steps: &mut Vec<Step>,
) -> Result<(Node, Vec<Option<TensorId>>)> {
    let (Some(Some(x)), Some(Some(w))) = (inputs.first().copied(), inputs.get(1).copied()) else {
        return Ok((node.clone(), inputs));
    };
    if node.op_type != "Conv" && node.op_type != "FusedConv" {
        return Ok((node.clone(), inputs));
    }
    let (xd, wd) = (tensors[x].dims.clone(), tensors[w].dims.clone());
    let pads = conv_pads(node, &xd, &wd)?;
    if pads.iter().any(|&p| p < 0) {
        return Err(node_err(node, format!("negative pads {pads:?}")));
    }
    let sp = xd.len() - 2;
    let sym: Vec<i64> = (0..sp).map(|i| pads[i].min(pads[sp + i])).collect();
    let mut node = node.clone();
    node.attributes
        .retain(|a| a.name != "pads" && a.name != "auto_pad");
    let mut sym_pads = sym.clone();
    sym_pads.extend(&sym);
    node.attributes.push(kiln_onnx::Attribute::new(
        "pads",
        kiln_onnx::AttrValue::Ints(sym_pads),
    ));
    if (0..sp).all(|i| pads[i] == pads[sp + i]) {
        return Ok((node, inputs));
    }
    let rank = xd.len();
    let mut full = vec![0i64; 2 * rank];
    let mut dims = xd.clone();
    for i in 0..sp {
        let (b, e) = (pads[i] - sym[i], pads[sp + i] - sym[i]);
        full[2 + i] = b;
        full[rank + 2 + i] = e;
        dims[2 + i] += (b + e) as usize;
    }
    tensors.push(TensorInfo {
        name: format!("{}@padded", tensors[x].name),
        dtype: tensors[x].dtype,
        dims,
        storage: Storage::Arena(0),
    });
    let padded = tensors.len() - 1;
    steps.push(Step {
        kind: StepKind::Pad { pads: full },
        inputs: vec![Some(x)],
        outputs: vec![padded],
    });
    let mut inputs = inputs;
    inputs[0] = Some(padded);
    Ok((node, inputs))
}

/// BatchNormalization (inference form) with constant f32 parameters that survived folding
/// into a Conv/Gemm becomes `Mul(x, a)` then `Add(., b)` with per-channel constants
/// `a = scale / sqrt(var + eps)`, `b = bias - mean * a` (shaped `[C, 1, ..]` to broadcast
/// over `[N, C, ..]`). Others are left for [`lower`] to report.
pub fn batch_norm_to_elementwise(g: &mut Graph) -> Result<()> {
    let mut nodes = Vec::with_capacity(g.nodes.len());
    let mut added = Vec::new();
    for n in std::mem::take(&mut g.nodes) {
        match bn_constants(g, &n)? {
            Some((a, b, rank)) => {
                let y = n.outputs[0].clone();
                let c = a.len();
                let mut dims = vec![c];
                dims.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
                let (an, bn, mid) = (
                    format!("{y}@bn_scale"),
                    format!("{y}@bn_shift"),
                    format!("{y}@bn_scaled"),
                );
                added.push(kiln_onnx::Tensor::from_vec(an.clone(), dims.clone(), a)?);
                added.push(kiln_onnx::Tensor::from_vec(bn.clone(), dims, b)?);
                nodes.push(Node {
                    name: format!("{}@mul", n.name),
                    op_type: "Mul".into(),
                    inputs: vec![n.inputs[0].clone(), an],
                    outputs: vec![mid.clone()],
                    index: n.index,
                    ..Node::default()
                });
                nodes.push(Node {
                    name: format!("{}@add", n.name),
                    op_type: "Add".into(),
                    inputs: vec![mid, bn],
                    outputs: vec![y],
                    index: n.index,
                    ..Node::default()
                });
            }
            None => nodes.push(n),
        }
    }
    g.nodes = nodes;
    g.initializers.extend(added);
    Ok(())
}

/// (a, b, rank of X) of a rewritable BatchNormalization.
type BnConstants = (Vec<f32>, Vec<f32>, usize);

fn bn_constants(g: &Graph, n: &Node) -> Result<Option<BnConstants>> {
    if n.op_type != "BatchNormalization" || !n.domain.is_empty() {
        return Ok(None);
    }
    let training = n.attr_int("training_mode").map_err(|e| node_err(n, e))?;
    if training.unwrap_or(0) != 0 || n.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Ok(None);
    }
    let eps = n
        .attr_float("epsilon")
        .map_err(|e| node_err(n, e))?
        .unwrap_or(1e-5);
    let mut params = Vec::new();
    for i in 1..5 {
        let Some(t) = n.input(i).and_then(|name| g.initializer(name)) else {
            return Ok(None);
        };
        if t.dtype() != DataType::F32 {
            return Ok(None);
        }
        params.push(t.to_f32_vec()?);
    }
    let rank = match n
        .input(0)
        .and_then(|x| g.value(x))
        .and_then(|v| v.shape.map(|s| s.rank()))
    {
        Some(r) if r >= 2 => r,
        _ => return Ok(None),
    };
    let (scale, bias, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let c = scale.len();
    if bias.len() != c || mean.len() != c || var.len() != c {
        return Ok(None);
    }
    let a: Vec<f32> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
    let b: Vec<f32> = (0..c).map(|i| bias[i] - mean[i] * a[i]).collect();
    Ok(Some((a, b, rank)))
}
