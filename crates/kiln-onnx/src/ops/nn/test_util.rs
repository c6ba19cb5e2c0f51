//! Test helpers: nodes, facts and one-node inference.

use kiln_core::{DataType, Dim, Shape};

use crate::attribute::{AttrValue, Attribute};
use crate::error::Result;
use crate::graph::Node;
use crate::ops::{Fact, InferCtx, OpDef};
use crate::tensor::Tensor;

/// A node named `n` (index 4) of `def`'s op with `inputs` inputs (`""` for `None`-marked omitted
/// ones are made by the caller) and `outputs` outputs.
pub fn node(def: &OpDef, inputs: usize, outputs: usize, attrs: Vec<Attribute>) -> Node {
    Node {
        name: "n".to_string(),
        op_type: def.op_type.to_string(),
        inputs: (0..inputs).map(|i| format!("x{i}")).collect(),
        outputs: (0..outputs).map(|i| format!("y{i}")).collect(),
        attributes: attrs,
        index: 4,
        ..Node::default()
    }
}

pub fn int(name: &str, v: i64) -> Attribute {
    Attribute::new(name, AttrValue::Int(v))
}

pub fn ints(name: &str, v: &[i64]) -> Attribute {
    Attribute::new(name, AttrValue::Ints(v.to_vec()))
}

pub fn float(name: &str, v: f32) -> Attribute {
    Attribute::new(name, AttrValue::Float(v))
}

pub fn string(name: &str, v: &str) -> Attribute {
    Attribute::new(name, AttrValue::String(v.as_bytes().to_vec()))
}

/// A shape from trtexec-style text: `1x3x224x224`, `batchx3`, `?x4`, `` (scalar).
pub fn shape(s: &str) -> Shape {
    Shape::parse(s).unwrap()
}

/// A fact of `dtype` and the shape `s`.
pub fn t(dtype: DataType, s: &str) -> Option<Fact> {
    Some(Fact::tensor(dtype, shape(s)))
}

pub fn f32s(s: &str) -> Option<Fact> {
    t(DataType::F32, s)
}

/// An input with a known dtype but unknown rank.
pub fn unranked(dtype: DataType) -> Option<Fact> {
    Some(Fact::new(Some(dtype), None))
}

/// An i64 fact with a symbolic value.
pub fn sym(dims: Vec<Dim>) -> Option<Fact> {
    let mut f = Fact::tensor(DataType::I64, Shape::from_known(&[dims.len()]));
    f.sym_value = Some(dims);
    Some(f)
}

pub fn i64s(name: &str, v: &[i64]) -> Tensor {
    Tensor::from_vec(name, vec![v.len()], v.to_vec()).unwrap()
}

pub fn f32t(name: &str, v: &[f32]) -> Tensor {
    Tensor::from_vec(name, vec![v.len()], v.to_vec()).unwrap()
}

/// Runs `def`'s inference on `node` at `opset`.
pub fn run(
    def: &OpDef,
    node: &Node,
    opset: i64,
    inputs: Vec<Option<Fact>>,
    consts: Vec<Option<&Tensor>>,
) -> Result<Vec<Fact>> {
    let mut ctx = InferCtx::new(node, opset, inputs, consts);
    (def.infer)(&mut ctx)?;
    Ok(ctx.into_outputs())
}

/// Infers a node of `def` with the given attributes and no constant inputs; output facts.
pub fn infer(
    def: &OpDef,
    opset: i64,
    attrs: Vec<Attribute>,
    inputs: Vec<Option<Fact>>,
    outputs: usize,
) -> Result<Vec<Fact>> {
    let n = node(def, inputs.len(), outputs, attrs);
    run(def, &n, opset, inputs, vec![])
}

/// Output 0's shape, as text.
pub fn out_shape(outs: &[Fact]) -> String {
    outs[0]
        .shape
        .as_ref()
        .map_or("unranked".to_string(), |s| s.to_string())
}

/// Asserts that inference failed with a message that names the node and op and contains each
/// of `parts`.
pub fn assert_err(res: Result<Vec<Fact>>, op: &str, parts: &[&str]) {
    let e = res.expect_err("inference should fail").to_string();
    assert!(e.contains(&format!("node 'n' ({op}, #4)")), "{e}");
    for p in parts {
        assert!(e.contains(p), "'{p}' not in: {e}");
    }
}
