//! Node attributes, typed.

use crate::graph::Graph;
use crate::tensor::Tensor;

/// The value of one node attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    /// ONNX strings are bytes; most are UTF-8 (`mode`, `auto_pad`, ...).
    String(Vec<u8>),
    Tensor(Tensor),
    Graph(Box<Graph>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    /// Attribute kinds kiln keeps but does not interpret (sparse tensors, type protos). An op
    /// that needs one reports it; an op that does not is unaffected.
    Unsupported(&'static str),
}

impl AttrValue {
    /// ONNX's name of the attribute type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Float(_) => "FLOAT",
            AttrValue::Int(_) => "INT",
            AttrValue::String(_) => "STRING",
            AttrValue::Tensor(_) => "TENSOR",
            AttrValue::Graph(_) => "GRAPH",
            AttrValue::Floats(_) => "FLOATS",
            AttrValue::Ints(_) => "INTS",
            AttrValue::Strings(_) => "STRINGS",
            AttrValue::Tensors(_) => "TENSORS",
            AttrValue::Graphs(_) => "GRAPHS",
            AttrValue::Unsupported(k) => k,
        }
    }
}

/// A named attribute of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
    /// Set inside function bodies: the attribute takes the value of the calling node's
    /// attribute of this name.
    pub ref_attr_name: Option<String>,
}

impl Attribute {
    pub fn new(name: impl Into<String>, value: AttrValue) -> Attribute {
        Attribute {
            name: name.into(),
            value,
            ref_attr_name: None,
        }
    }
}
