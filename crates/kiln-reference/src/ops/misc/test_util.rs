//! Test helpers: nodes with attributes, and running one op.

use kiln_onnx::{AttrValue, Attribute, Node};

use crate::error::Result;
use crate::ops::{OpCtx, OpFn};
use crate::value::Value;

/// A node of `op` with the given attributes (inputs/outputs are not read by the ops).
pub fn node(op: &str, attrs: &[(&str, AttrValue)]) -> Node {
    Node {
        name: format!("test_{op}"),
        op_type: op.to_string(),
        attributes: attrs
            .iter()
            .map(|(n, v)| Attribute::new(*n, v.clone()))
            .collect(),
        ..Node::default()
    }
}

pub fn run_op(f: OpFn, node: &Node, opset: i64, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
    f(&OpCtx::new(node, opset, inputs.to_vec()))
}
