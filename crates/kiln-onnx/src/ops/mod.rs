//! The op registry: which ONNX ops kiln knows, from which opset, and how each infers the types
//! and shapes of its outputs.
//!
//! One file per op (or per family of ops with one signature, such as the unary activations),
//! each with a module doc holding the spec link and the opset history. Ops are grouped in two
//! folders, each with its own list that this module concatenates:
//! - [`tensor`]: shape and data-movement ops (Shape, Reshape, Gather, Concat, Slice, ...), whose
//!   inference also propagates small integer values symbolically (torch's legacy exporter emits
//!   `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` chains);
//! - [`nn`]: arithmetic and network ops (Conv, Gemm, pooling, normalisation, elementwise, ...),
//!   and ONNX Runtime's FusedConv and FusedGemm of domain `com.microsoft` ([`nn::fused`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use kiln_core::{DataType, Shape};

use crate::error::{OnnxError, Result, UnsupportedNode};
use crate::graph::{Graph, Node, is_onnx_domain};
use crate::tensor::Tensor;

pub mod nn;
pub mod tensor;
pub mod util;

pub use nn::fused::{FusedActivation, MS_DOMAIN, MS_OPSET};

/// What is known about one value during inference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fact {
    pub dtype: Option<DataType>,
    /// Rank and dims when the rank is known.
    pub shape: Option<Shape>,
    /// For integer tensors of rank 0 or 1 holding shape arithmetic: the elements, each a known
    /// number or a symbolic dimension (`Shape` of a `[batch, 3]` value is `[batch, 3]`).
    pub sym_value: Option<Vec<kiln_core::Dim>>,
}

impl Fact {
    pub fn new(dtype: Option<DataType>, shape: Option<Shape>) -> Fact {
        Fact {
            dtype,
            shape,
            sym_value: None,
        }
    }

    pub fn tensor(dtype: DataType, shape: Shape) -> Fact {
        Fact::new(Some(dtype), Some(shape))
    }
}

/// The inputs of one node as inference sees them, and the outputs it writes.
pub struct InferCtx<'a> {
    pub node: &'a Node,
    /// The version of the node's domain imported by the model.
    pub opset: i64,
    /// One entry per input; `None` for an omitted optional input (`""`) or an input beyond the
    /// node's list.
    inputs: Vec<Option<Fact>>,
    /// Constant values of inputs (initialisers, `Constant` outputs, folded values) when known.
    consts: Vec<Option<&'a Tensor>>,
    outputs: Vec<Fact>,
}

impl<'a> InferCtx<'a> {
    pub fn new(
        node: &'a Node,
        opset: i64,
        inputs: Vec<Option<Fact>>,
        consts: Vec<Option<&'a Tensor>>,
    ) -> InferCtx<'a> {
        let outputs = vec![Fact::default(); node.outputs.len()];
        InferCtx {
            node,
            opset,
            inputs,
            consts,
            outputs,
        }
    }

    pub fn num_inputs(&self) -> usize {
        self.node.inputs.len()
    }

    pub fn num_outputs(&self) -> usize {
        self.node.outputs.len()
    }

    /// What is known of input `i`; `None` if omitted.
    pub fn input(&self, i: usize) -> Option<&Fact> {
        self.inputs.get(i).and_then(Option::as_ref)
    }

    pub fn input_dtype(&self, i: usize) -> Option<DataType> {
        self.input(i).and_then(|f| f.dtype)
    }

    pub fn input_shape(&self, i: usize) -> Option<&Shape> {
        self.input(i).and_then(|f| f.shape.as_ref())
    }

    /// The constant value of input `i`, if the graph fixes it.
    pub fn const_input(&self, i: usize) -> Option<&'a Tensor> {
        self.consts.get(i).copied().flatten()
    }

    /// Sets what is known of output `i` (ignored beyond the node's outputs).
    pub fn set_output(&mut self, i: usize, fact: Fact) {
        if let Some(slot) = self.outputs.get_mut(i) {
            *slot = fact;
        }
    }

    pub fn output(&self, i: usize) -> Option<&Fact> {
        self.outputs.get(i)
    }

    pub fn into_outputs(self) -> Vec<Fact> {
        self.outputs
    }

    /// An error about this node.
    pub fn err(&self, problem: impl Into<String>, fix: impl Into<String>) -> OnnxError {
        OnnxError::node(self.node.node_ref(), problem, fix)
    }

    /// Fails unless the node has between `min` and `max` inputs.
    pub fn expect_inputs(&self, min: usize, max: usize) -> Result<()> {
        let n = self.num_inputs();
        if n < min || n > max {
            return Err(self.err(
                format!("has {n} inputs; {} takes {min} to {max}", self.node.op_type),
                "Fix the node's inputs (the ONNX operator spec lists them)",
            ));
        }
        Ok(())
    }

    /// Input `i`'s fact, or an error saying that the required input is missing.
    pub fn required(&self, i: usize) -> Result<&Fact> {
        self.input(i).ok_or_else(|| {
            self.err(
                format!("required input #{i} is missing"),
                "Connect the input (the ONNX operator spec lists it)",
            )
        })
    }
}

/// Type and shape inference of one op.
pub type InferFn = fn(&mut InferCtx<'_>) -> Result<()>;

/// One op kiln knows.
#[derive(Debug)]
pub struct OpDef {
    pub op_type: &'static str,
    /// `""` for the default ONNX domain.
    pub domain: &'static str,
    /// The oldest opset version of this op that kiln implements.
    pub since_opset: i64,
    pub infer: InferFn,
}

/// All ops kiln knows, by domain and op type.
pub struct Registry {
    ops: HashMap<(&'static str, &'static str), &'static OpDef>,
}

impl Registry {
    fn build() -> Registry {
        let mut ops = HashMap::new();
        for def in tensor::DEFS
            .iter()
            .chain(nn::DEFS.iter())
            .chain(nn::MS_DEFS.iter())
        {
            ops.insert((def.domain, def.op_type), *def);
        }
        Registry { ops }
    }

    /// The op `op_type` of `domain`, whatever the opset.
    pub fn get(&self, domain: &str, op_type: &str) -> Option<&'static OpDef> {
        let domain = if is_onnx_domain(domain) { "" } else { domain };
        self.ops.get(&(domain, op_type)).copied()
    }

    /// Every op, sorted by domain then name.
    pub fn ops(&self) -> Vec<&'static OpDef> {
        let mut v: Vec<_> = self.ops.values().copied().collect();
        v.sort_by_key(|d| (d.domain, d.op_type));
        v
    }

    /// Why kiln cannot run `node` at the model's opsets, or `None` when it can.
    pub fn check(&self, graph: &Graph, node: &Node) -> Option<String> {
        let opset = graph.opset_version(&node.domain);
        let Some(opset) = opset else {
            return Some(format!(
                "domain '{}' is not imported by the model",
                display_domain(&node.domain)
            ));
        };
        match self.get(&node.domain, &node.op_type) {
            None if !is_onnx_domain(&node.domain) && !self.knows_domain(&node.domain) => Some(
                format!("domain '{}' is not supported", display_domain(&node.domain)),
            ),
            None => Some("kiln does not implement this op".to_string()),
            Some(def) if opset < def.since_opset => Some(format!(
                "opset {opset} is older than kiln's implementation (from opset {})",
                def.since_opset
            )),
            Some(_) => None,
        }
    }

    fn knows_domain(&self, domain: &str) -> bool {
        self.ops.keys().any(|(d, _)| *d == domain)
    }
}

fn display_domain(d: &str) -> &str {
    if d.is_empty() { "ai.onnx" } else { d }
}

/// The registry (built once).
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::build)
}

/// Every node of `graph` (subgraphs included) that kiln cannot run, all at once.
pub fn unsupported_nodes(graph: &Graph) -> Vec<UnsupportedNode> {
    let mut out = Vec::new();
    collect_unsupported(graph, graph, &mut out);
    out
}

fn collect_unsupported(root: &Graph, graph: &Graph, out: &mut Vec<UnsupportedNode>) {
    let reg = registry();
    for node in &graph.nodes {
        if let Some(reason) = reg.check(root, node) {
            out.push(UnsupportedNode {
                node: node.node_ref(),
                opset: root.opset_version(&node.domain),
                reason,
            });
        }
        for attr in &node.attributes {
            match &attr.value {
                crate::AttrValue::Graph(g) => collect_unsupported(root, g, out),
                crate::AttrValue::Graphs(gs) => {
                    for g in gs {
                        collect_unsupported(root, g, out);
                    }
                }
                _ => {}
            }
        }
    }
}
