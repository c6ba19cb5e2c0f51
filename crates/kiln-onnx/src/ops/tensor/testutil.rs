//! Helpers for the ops' unit tests.

use kiln_core::{DataType, Dim, Shape};

use crate::attribute::{AttrValue, Attribute};
use crate::error::Result;
use crate::graph::Node;
use crate::ops::{Fact, InferCtx, OpDef};
use crate::tensor::Tensor;

/// A node named `n` of `op` with these inputs, outputs and attributes.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> Node {
    Node {
        name: "n".into(),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attributes: attrs
            .into_iter()
            .map(|(k, v)| Attribute::new(k, v))
            .collect(),
        ..Node::default()
    }
}

/// Runs `def`'s inference; `inputs` and `consts` are matched to the node's inputs by position
/// (an omitted input, `""`, gets `None` whatever the list says).
pub fn run(
    def: &OpDef,
    opset: i64,
    node: &Node,
    inputs: Vec<Option<Fact>>,
    consts: Vec<Option<&Tensor>>,
) -> Result<Vec<Fact>> {
    let n = node.inputs.len();
    let mut facts = inputs;
    facts.resize(n, None);
    let mut cs = consts;
    cs.resize(n, None);
    for (i, name) in node.inputs.iter().enumerate() {
        if name.is_empty() {
            facts[i] = None;
            cs[i] = None;
        }
    }
    let mut ctx = InferCtx::new(node, opset, facts, cs);
    (def.infer)(&mut ctx)?;
    Ok(ctx.into_outputs())
}

pub fn shape(s: &str) -> Shape {
    Shape::parse(s).unwrap()
}

pub fn fact(dtype: DataType, s: &str) -> Option<Fact> {
    Some(Fact::tensor(dtype, shape(s)))
}

pub fn f32s(s: &str) -> Option<Fact> {
    fact(DataType::F32, s)
}

/// A rank-1 int64 fact with a sym_value parsed like a shape (`batchx3`).
pub fn sym(s: &str) -> Option<Fact> {
    let v = shape(s).0;
    let mut f = Fact::tensor(DataType::I64, Shape::from_known(&[v.len()]));
    f.sym_value = Some(v);
    Some(f)
}

pub fn ints(v: &[i64]) -> Tensor {
    Tensor::from_vec("c", vec![v.len()], v.to_vec()).unwrap()
}

/// The fact of a constant tensor (as the driver builds it).
pub fn fact_of(t: &Tensor) -> Option<Fact> {
    Some(Fact::tensor(t.dtype(), t.shape()))
}

pub fn dims(s: &str) -> Vec<Dim> {
    shape(s).0
}

/// Asserts that an inference error names the node and mentions `needle`.
pub fn assert_err(r: Result<Vec<Fact>>, needle: &str) {
    let e = r.expect_err("inference should fail").to_string();
    assert!(e.contains("node 'n'"), "error does not name the node: {e}");
    assert!(e.contains(needle), "error lacks {needle:?}: {e}");
}
