//! The Graph IR: values, nodes, initialisers, opsets and metadata.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_core::{DataType, Shape};

use crate::attribute::{AttrValue, Attribute};
use crate::error::{NodeRef, OnnxError, Result};
use crate::tensor::Tensor;

/// The default ONNX domain, written `""` or `"ai.onnx"` in files.
pub const ONNX_DOMAIN: &str = "";

/// True for both spellings of the default domain.
pub fn is_onnx_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// What kind of value a [`ValueInfo`] describes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ValueKind {
    /// A dense tensor (its element type may still be unknown).
    #[default]
    Tensor,
    /// Something kiln does not compute with: sequences, maps, optionals, sparse tensors, or
    /// tensors of an unsupported element type (strings, complex, fp8). The text says which.
    Unsupported(String),
}

/// A named value of a graph with what is known of its type and shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValueInfo {
    pub name: String,
    /// Element type, when known.
    pub dtype: Option<DataType>,
    /// Shape, when the rank is known; dims may be symbolic or unknown.
    pub shape: Option<Shape>,
    pub kind: ValueKind,
    pub doc_string: String,
}

impl ValueInfo {
    pub fn tensor(name: impl Into<String>, dtype: DataType, shape: Shape) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            dtype: Some(dtype),
            shape: Some(shape),
            kind: ValueKind::Tensor,
            doc_string: String::new(),
        }
    }

    /// A value with nothing known but its name.
    pub fn unknown(name: impl Into<String>) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            ..ValueInfo::default()
        }
    }
}

/// One operator application.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    /// `""` for the default ONNX domain.
    pub domain: String,
    /// Input value names; `""` marks an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names; `""` marks an omitted optional output.
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
    pub doc_string: String,
    /// Position in the node list as stored in the file (kept through sorting, for messages).
    pub index: usize,
}

impl Node {
    /// How messages name this node.
    pub fn node_ref(&self) -> NodeRef {
        NodeRef {
            name: self.name.clone(),
            op_type: self.op_type.clone(),
            domain: self.domain.clone(),
            index: self.index,
        }
    }

    /// The `i`-th input's name, `None` when absent or omitted (`""`).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The `i`-th output's name, `None` when absent or omitted.
    pub fn output(&self, i: usize) -> Option<&str> {
        self.outputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    fn wrong_kind(&self, name: &str, want: &str, got: &AttrValue) -> OnnxError {
        OnnxError::node(
            self.node_ref(),
            format!(
                "attribute '{name}' is {} where {want} was expected",
                got.kind()
            ),
            "Fix the attribute's type in the model (the ONNX operator spec lists it)",
        )
    }

    /// An INT attribute, `None` if absent.
    pub fn attr_int(&self, name: &str) -> Result<Option<i64>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(self.wrong_kind(name, "INT", other)),
        }
    }

    /// A FLOAT attribute, `None` if absent.
    pub fn attr_float(&self, name: &str) -> Result<Option<f32>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Float(v)) => Ok(Some(*v)),
            Some(other) => Err(self.wrong_kind(name, "FLOAT", other)),
        }
    }

    /// A STRING attribute as UTF-8, `None` if absent.
    pub fn attr_string(&self, name: &str) -> Result<Option<String>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::String(v)) => String::from_utf8(v.clone()).map(Some).map_err(|_| {
                OnnxError::node(
                    self.node_ref(),
                    format!("attribute '{name}' is not valid UTF-8"),
                    "Fix the attribute's value in the model",
                )
            }),
            Some(other) => Err(self.wrong_kind(name, "STRING", other)),
        }
    }

    /// An INTS attribute, `None` if absent.
    pub fn attr_ints(&self, name: &str) -> Result<Option<&[i64]>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, "INTS", other)),
        }
    }

    /// A FLOATS attribute, `None` if absent.
    pub fn attr_floats(&self, name: &str) -> Result<Option<&[f32]>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, "FLOATS", other)),
        }
    }

    /// A TENSOR attribute, `None` if absent.
    pub fn attr_tensor(&self, name: &str) -> Result<Option<&Tensor>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(self.wrong_kind(name, "TENSOR", other)),
        }
    }

    /// A GRAPH attribute, `None` if absent.
    pub fn attr_graph(&self, name: &str) -> Result<Option<&Graph>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Graph(g)) => Ok(Some(g)),
            Some(other) => Err(self.wrong_kind(name, "GRAPH", other)),
        }
    }
}

/// An `opset_import` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsetImport {
    /// `""` for the default ONNX domain.
    pub domain: String,
    pub version: i64,
}

/// Model-level facts kept from the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelMetadata {
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc_string: String,
    /// `metadata_props`, in file order.
    pub props: Vec<(String, String)>,
}

/// A computation graph: the model's main graph, or a subgraph (If / Loop / Scan body).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    /// The graph's real inputs: IR-3 files also list initialisers as inputs; those are kept in
    /// [`Graph::initializers`] only, unless a value is fed at run time (see
    /// [`Graph::overridable_initializers`]).
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Type and shape annotations of intermediate values (from the file and from inference).
    pub value_info: Vec<ValueInfo>,
    /// Nodes in topological order once loaded.
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
    /// Initialisers that were also listed as graph inputs (IR < 4 style): a caller may feed them.
    pub overridable_initializers: Vec<String>,
    /// Opset imports (copied into subgraphs from their model).
    pub opsets: Vec<OpsetImport>,
    /// Model metadata (empty for subgraphs).
    pub metadata: ModelMetadata,
    /// The file the model was loaded from, for messages and external data.
    pub source: Option<PathBuf>,
    pub doc_string: String,
}

impl Graph {
    /// The opset version imported for `domain` (`""` and `"ai.onnx"` are the same domain).
    pub fn opset_version(&self, domain: &str) -> Option<i64> {
        self.opsets
            .iter()
            .find(|o| o.domain == domain || (is_onnx_domain(domain) && is_onnx_domain(&o.domain)))
            .map(|o| o.version)
    }

    pub fn initializer(&self, name: &str) -> Option<&Tensor> {
        self.initializers.iter().find(|t| t.name() == name)
    }

    /// Initialisers by name (built on each call: hold on to it in loops).
    pub fn initializer_map(&self) -> HashMap<&str, &Tensor> {
        self.initializers.iter().map(|t| (t.name(), t)).collect()
    }

    /// The best-known type and shape of a value: graph input, output, initialiser or
    /// value_info annotation.
    pub fn value(&self, name: &str) -> Option<ValueInfo> {
        if let Some(t) = self.initializer(name) {
            return Some(ValueInfo::tensor(name, t.dtype(), t.shape()));
        }
        self.inputs
            .iter()
            .chain(&self.value_info)
            .chain(&self.outputs)
            .find(|v| v.name == name)
            .cloned()
    }

    /// Number of parameters (initialiser elements) and their bytes.
    pub fn parameter_count(&self) -> (usize, usize) {
        self.initializers
            .iter()
            .fold((0, 0), |(n, b), t| (n + t.len(), b + t.byte_len()))
    }

    /// Op histogram: `(domain, op_type) -> count`, sorted by op.
    pub fn op_histogram(&self) -> Vec<((String, String), usize)> {
        let mut m: std::collections::BTreeMap<(String, String), usize> = Default::default();
        for n in &self.nodes {
            *m.entry((n.domain.clone(), n.op_type.clone())).or_default() += 1;
        }
        m.into_iter().collect()
    }
}
