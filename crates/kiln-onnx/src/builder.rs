//! [`GraphBuilder`]: writing ONNX models from Rust, for tests, fuzz seeds and tools.
//!
//! ```
//! use kiln_core::{DataType, Dim};
//! use kiln_onnx::{GraphBuilder, Tensor};
//!
//! # fn main() -> kiln_onnx::Result<()> {
//! let mut b = GraphBuilder::new("mlp").opset(17);
//! let x = b.input("x", DataType::F32, &[Dim::symbol("batch"), Dim::Known(4)]);
//! let w = b.initializer(Tensor::from_vec("w", vec![4, 8], vec![0.5f32; 32])?);
//! let h = b.node("MatMul", &[&x, &w]).output();
//! let y = b.node("LeakyRelu", &[&h]).attr("alpha", 0.1).name("act").output_named("y");
//! b.output(&y, DataType::F32, &[Dim::symbol("batch"), Dim::Known(8)]);
//! let bytes = b.to_bytes()?; // an ONNX file's contents
//! let ir = b.graph(); // the IR, without going through the loader
//! assert_eq!(ir.nodes[1].name, "act");
//! # let _ = bytes;
//! # Ok(())
//! # }
//! ```
//!
//! Names given explicitly are used verbatim, even when they collide: the builder can write
//! invalid models on purpose, for the loader's negative tests. Names the builder makes up
//! (`MatMul_0`, `MatMul_0_out0`, ...) never collide with a name in use when they are made.

use std::collections::HashSet;
use std::path::Path;

use kiln_core::{DataType, Dim, Shape};

use crate::attribute::{AttrValue, Attribute};
use crate::error::Result;
use crate::graph::{
    Graph, ModelMetadata, Node, ONNX_DOMAIN, OpsetImport, ValueInfo, is_onnx_domain,
};
use crate::tensor::Tensor;
use crate::writer::{self, DEFAULT_IR_VERSION};

/// Default-domain opset a new builder imports until [`GraphBuilder::opset`] says otherwise.
pub const DEFAULT_OPSET: i64 = 17;

/// A value of a graph being built: a handle holding the value's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value {
    name: String,
}

impl Value {
    /// A value by name: an outer-scope value used inside a subgraph, or one made elsewhere.
    pub fn named(name: impl Into<String>) -> Value {
        Value { name: name.into() }
    }

    /// An omitted optional input (the empty name).
    pub fn absent() -> Value {
        Value {
            name: String::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_absent(&self) -> bool {
        self.name.is_empty()
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Builds a [`Graph`] node by node; see the module docs.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    graph: Graph,
    /// Value names in use (inputs, initialisers, node outputs).
    values: HashSet<String>,
    node_names: HashSet<String>,
}

impl GraphBuilder {
    /// An empty graph named `name`, importing the default domain at [`DEFAULT_OPSET`], IR
    /// version [`DEFAULT_IR_VERSION`].
    pub fn new(name: impl Into<String>) -> GraphBuilder {
        GraphBuilder {
            graph: Graph {
                name: name.into(),
                opsets: vec![OpsetImport {
                    domain: ONNX_DOMAIN.to_string(),
                    version: DEFAULT_OPSET,
                }],
                metadata: ModelMetadata {
                    ir_version: DEFAULT_IR_VERSION,
                    producer_name: "kiln GraphBuilder".into(),
                    producer_version: env!("CARGO_PKG_VERSION").into(),
                    ..ModelMetadata::default()
                },
                ..Graph::default()
            },
            values: HashSet::new(),
            node_names: HashSet::new(),
        }
    }

    /// Sets the default-domain opset version.
    pub fn opset(self, version: i64) -> GraphBuilder {
        self.import(ONNX_DOMAIN, version)
    }

    /// Imports `domain` at `version` (replacing an earlier import of the same domain).
    pub fn import(mut self, domain: &str, version: i64) -> GraphBuilder {
        let same = |o: &OpsetImport| {
            o.domain == domain || (is_onnx_domain(domain) && is_onnx_domain(&o.domain))
        };
        match self.graph.opsets.iter_mut().find(|o| same(o)) {
            Some(o) => o.version = version,
            None => self.graph.opsets.push(OpsetImport {
                domain: domain.to_string(),
                version,
            }),
        }
        self
    }

    /// Removes every opset import (for writing models the loader must reject).
    pub fn no_opsets(mut self) -> GraphBuilder {
        self.graph.opsets.clear();
        self
    }

    pub fn ir_version(mut self, version: i64) -> GraphBuilder {
        self.graph.metadata.ir_version = version;
        self
    }

    pub fn producer(mut self, name: &str, version: &str) -> GraphBuilder {
        self.graph.metadata.producer_name = name.to_string();
        self.graph.metadata.producer_version = version.to_string();
        self
    }

    pub fn model_version(mut self, version: i64) -> GraphBuilder {
        self.graph.metadata.model_version = version;
        self
    }

    /// The graph's doc string.
    pub fn doc(mut self, text: &str) -> GraphBuilder {
        self.graph.doc_string = text.to_string();
        self
    }

    /// Adds a `metadata_props` entry.
    pub fn metadata_prop(mut self, key: &str, value: &str) -> GraphBuilder {
        self.graph
            .metadata
            .props
            .push((key.to_string(), value.to_string()));
        self
    }

    /// A name not in use among values, `base` itself if free.
    pub fn fresh_name(&self, base: &str) -> String {
        fresh(&self.values, base)
    }

    fn take(&mut self, name: String) -> Value {
        self.values.insert(name.clone());
        Value { name }
    }

    /// A graph input of `dtype` and shape `dims`.
    pub fn input(&mut self, name: &str, dtype: DataType, dims: &[Dim]) -> Value {
        self.input_value(ValueInfo::tensor(name, dtype, Shape::new(dims.to_vec())))
    }

    /// A graph input described in full (dtype or shape may be unknown).
    pub fn input_value(&mut self, info: ValueInfo) -> Value {
        let name = info.name.clone();
        self.graph.inputs.push(info);
        self.take(name)
    }

    /// A constant weight. A tensor without a name gets a fresh one (`init`, `init_2`, ...).
    pub fn initializer(&mut self, mut tensor: Tensor) -> Value {
        if tensor.name().is_empty() {
            tensor.set_name(self.fresh_name("init"));
        }
        let name = tensor.name().to_string();
        self.graph.initializers.push(tensor);
        self.take(name)
    }

    /// An initialiser that is also a graph input, so a caller may feed another value.
    pub fn overridable_initializer(&mut self, tensor: Tensor) -> Value {
        let v = self.initializer(tensor);
        self.graph.overridable_initializers.push(v.name.clone());
        v
    }

    /// A `Constant` node holding `tensor`; its output takes the tensor's name when that is free.
    pub fn constant(&mut self, tensor: Tensor) -> Value {
        let base = if tensor.name().is_empty() {
            "const"
        } else {
            tensor.name()
        };
        let name = self.fresh_name(base);
        self.node("Constant", &[])
            .attr("value", tensor)
            .output_named(&name)
    }

    /// Starts a node of `op_type` (default domain) reading `inputs`; finish it with
    /// [`NodeBuilder::output`], [`NodeBuilder::outputs`] or [`NodeBuilder::outputs_named`].
    pub fn node(&mut self, op_type: &str, inputs: &[&Value]) -> NodeBuilder<'_> {
        NodeBuilder {
            node: Node {
                op_type: op_type.to_string(),
                inputs: inputs.iter().map(|v| v.name.clone()).collect(),
                ..Node::default()
            },
            builder: self,
        }
    }

    /// Marks `value` as a graph output of `dtype` and shape `dims`.
    pub fn output(&mut self, value: &Value, dtype: DataType, dims: &[Dim]) {
        let info = ValueInfo::tensor(value.name.clone(), dtype, Shape::new(dims.to_vec()));
        self.graph.outputs.push(info);
    }

    /// Marks a value as a graph output, described in full (dtype or shape may be unknown).
    pub fn output_value(&mut self, info: ValueInfo) {
        self.graph.outputs.push(info);
    }

    /// Records the type and shape of an intermediate value (`value_info`).
    pub fn annotate(&mut self, value: &Value, dtype: DataType, dims: &[Dim]) {
        let info = ValueInfo::tensor(value.name.clone(), dtype, Shape::new(dims.to_vec()));
        self.graph.value_info.push(info);
    }

    /// The graph as kiln's IR, without going through the loader. Subgraphs in attributes take
    /// this graph's opsets and no metadata, as the loader gives them.
    pub fn graph(&self) -> Graph {
        let mut g = self.graph.clone();
        let opsets = g.opsets.clone();
        for n in &mut g.nodes {
            fix_subgraphs(n, &opsets);
        }
        g
    }

    /// Like [`GraphBuilder::graph`], consuming the builder.
    pub fn into_graph(self) -> Graph {
        self.graph()
    }

    /// The model as ONNX bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        writer::to_model_bytes(&self.graph)
    }

    /// Writes the model as one ONNX file.
    pub fn save(&self, path: &Path) -> Result<()> {
        writer::save(&self.graph, path)
    }

    /// Writes the model and loads it back with [`crate::from_bytes`]: the graph as the real
    /// loader sees it (validated, sorted, shapes inferred), or the loader's error.
    pub fn build(&self) -> Result<Graph> {
        crate::from_bytes(&self.to_bytes()?)
    }
}

fn fresh(taken: &HashSet<String>, base: &str) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2usize..)
        .map(|k| format!("{base}_{k}"))
        .find(|n| !taken.contains(n))
        .unwrap_or_default()
}

fn fix_subgraphs(node: &mut Node, opsets: &[OpsetImport]) {
    let mut fix = |g: &mut Graph| {
        g.opsets = opsets.to_vec();
        g.metadata = ModelMetadata::default();
        for n in &mut g.nodes {
            fix_subgraphs(n, opsets);
        }
    };
    for a in &mut node.attributes {
        match &mut a.value {
            AttrValue::Graph(g) => fix(g),
            AttrValue::Graphs(gs) => gs.iter_mut().for_each(&mut fix),
            _ => {}
        }
    }
}

/// One node being added; see [`GraphBuilder::node`]. The node joins the graph when its outputs
/// are named.
#[must_use = "a node joins the graph only through .output(), .outputs(n) or .outputs_named(..)"]
pub struct NodeBuilder<'b> {
    builder: &'b mut GraphBuilder,
    node: Node,
}

impl NodeBuilder<'_> {
    /// The node's name (by default `<op_type>_<position>`).
    pub fn name(mut self, name: &str) -> Self {
        self.node.name = name.to_string();
        self
    }

    /// The operator's domain (default: the ONNX domain). Import it with
    /// [`GraphBuilder::import`].
    pub fn domain(mut self, domain: &str) -> Self {
        self.node.domain = domain.to_string();
        self
    }

    pub fn doc(mut self, text: &str) -> Self {
        self.node.doc_string = text.to_string();
        self
    }

    /// An attribute: `f32`/`f64` are FLOAT, integers and `bool` INT, `&str` STRING, slices,
    /// arrays and `Vec`s the list kinds, [`Tensor`] TENSOR, [`Graph`] GRAPH; or any
    /// [`AttrValue`].
    pub fn attr(mut self, name: &str, value: impl Into<AttrValue>) -> Self {
        self.node
            .attributes
            .push(Attribute::new(name, value.into()));
        self
    }

    /// An attribute given in full (e.g. with `ref_attr_name`).
    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.node.attributes.push(attribute);
        self
    }

    /// Adds the node with one output of a fresh name.
    pub fn output(self) -> Value {
        self.outputs(1).pop().unwrap_or_else(Value::absent)
    }

    /// Adds the node with `n` outputs of fresh names (`n` = 0 for a node without outputs).
    pub fn outputs(self, n: usize) -> Vec<Value> {
        self.finish(|b, node_name| {
            (0..n)
                .map(|i| b.fresh_name(&format!("{node_name}_out{i}")))
                .collect()
        })
    }

    /// Adds the node with one output named `name`.
    pub fn output_named(self, name: &str) -> Value {
        self.outputs_named(&[name])
            .pop()
            .unwrap_or_else(Value::absent)
    }

    /// Adds the node with outputs named `names`; `""` omits an optional output.
    pub fn outputs_named(self, names: &[&str]) -> Vec<Value> {
        self.finish(|_, _| names.iter().map(|s| s.to_string()).collect())
    }

    fn finish(self, names: impl FnOnce(&GraphBuilder, &str) -> Vec<String>) -> Vec<Value> {
        let NodeBuilder {
            builder: b,
            mut node,
        } = self;
        if node.name.is_empty() {
            node.name = fresh(
                &b.node_names,
                &format!("{}_{}", node.op_type, b.graph.nodes.len()),
            );
        }
        b.node_names.insert(node.name.clone());
        node.outputs = names(b, &node.name);
        node.index = b.graph.nodes.len();
        let values = node
            .outputs
            .iter()
            .map(|n| {
                if n.is_empty() {
                    Value::absent()
                } else {
                    b.take(n.clone())
                }
            })
            .collect();
        b.graph.nodes.push(node);
        values
    }
}

macro_rules! attr_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for AttrValue {
            fn from($v: $t) -> AttrValue {
                $e
            }
        })*
    };
}

attr_from!(
    f32 => |v| AttrValue::Float(v),
    f64 => |v| AttrValue::Float(v as f32),
    i64 => |v| AttrValue::Int(v),
    i32 => |v| AttrValue::Int(i64::from(v)),
    bool => |v| AttrValue::Int(i64::from(v)),
    &str => |v| AttrValue::String(v.as_bytes().to_vec()),
    String => |v| AttrValue::String(v.into_bytes()),
    Vec<f32> => |v| AttrValue::Floats(v),
    &[f32] => |v| AttrValue::Floats(v.to_vec()),
    Vec<i64> => |v| AttrValue::Ints(v),
    &[i64] => |v| AttrValue::Ints(v.to_vec()),
    Vec<&str> => |v| AttrValue::Strings(v.iter().map(|s| s.as_bytes().to_vec()).collect()),
    &[&str] => |v| AttrValue::Strings(v.iter().map(|s| s.as_bytes().to_vec()).collect()),
    Vec<String> => |v| AttrValue::Strings(v.into_iter().map(String::into_bytes).collect()),
    Tensor => |v| AttrValue::Tensor(v),
    Vec<Tensor> => |v| AttrValue::Tensors(v),
    Graph => |v| AttrValue::Graph(Box::new(v)),
    Vec<Graph> => |v| AttrValue::Graphs(v),
);

impl<const N: usize> From<[i64; N]> for AttrValue {
    fn from(v: [i64; N]) -> AttrValue {
        AttrValue::Ints(v.to_vec())
    }
}

impl<const N: usize> From<[f32; N]> for AttrValue {
    fn from(v: [f32; N]) -> AttrValue {
        AttrValue::Floats(v.to_vec())
    }
}

impl<const N: usize> From<[&str; N]> for AttrValue {
    fn from(v: [&str; N]) -> AttrValue {
        AttrValue::Strings(v.iter().map(|s| s.as_bytes().to_vec()).collect())
    }
}

#[cfg(test)]
mod tests {
    use kiln_core::{DataType, Dim};
    use onnx_protobuf::attribute_proto::AttributeType;
    use onnx_protobuf::{Message, ModelProto};

    use super::*;
    use crate::graph::ValueKind;
    use crate::writer::samples::{everything, mlp, sym};

    fn parse(b: &GraphBuilder) -> ModelProto {
        ModelProto::parse_from_bytes(&b.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn mlp_proto_has_the_expected_contents() {
        let b = mlp();
        let m = parse(&b);
        assert_eq!(m.ir_version, 8);
        assert_eq!(m.opset_import.len(), 1);
        assert_eq!(
            (m.opset_import[0].domain.as_str(), m.opset_import[0].version),
            ("", 17)
        );
        let g = m.graph.unwrap();
        assert_eq!(g.name, "mlp");
        let ops: Vec<_> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Add", "LeakyRelu"]);
        assert_eq!(g.node[0].input, ["x", "w"]);
        assert_eq!(g.node[1].input[0], g.node[0].output[0]);
        assert_eq!(g.node[2].name, "act");
        assert_eq!(g.node[2].output, ["y"]);
        let a = &g.node[2].attribute[0];
        assert_eq!((a.name.as_str(), a.f), ("alpha", 0.1));
        assert_eq!(a.type_.enum_value(), Ok(AttributeType::FLOAT));
        assert_eq!(g.initializer.len(), 2);
        assert_eq!(g.initializer[0].raw_data.len(), 4 * 32);
        assert_eq!(
            g.input.len(),
            1,
            "plain initialisers are not listed as inputs"
        );
        assert_eq!(g.output[0].name, "y");
    }

    #[test]
    fn graph_gives_the_ir_directly() {
        let g = mlp().graph();
        assert_eq!(g.inputs[0].shape.as_ref().unwrap().dims()[0], sym("batch"));
        assert_eq!(g.nodes.len(), 3);
        assert_eq!(
            g.nodes.iter().map(|n| n.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(g.parameter_count(), (40, 160));
        assert_eq!(g.opset_version(""), Some(17));
        assert_eq!(g.metadata.ir_version, DEFAULT_IR_VERSION);
    }

    #[test]
    fn generated_names_are_unique_and_explicit_names_are_kept() {
        let mut b = GraphBuilder::new("names");
        let x = b.input("x", DataType::F32, &[Dim::Known(1)]);
        // An explicit value name that a generated one would otherwise take.
        let taken = b.node("Relu", &[&x]).name("n").output_named("Relu_1_out0");
        let a = b.node("Relu", &[&taken]).output();
        let c = b.node("Relu", &[&a]).name("n").output(); // duplicate node name: kept
        let d = b.node("Relu", &[&c]).outputs(3);
        let all = [
            taken.name(),
            a.name(),
            c.name(),
            d[0].name(),
            d[1].name(),
            d[2].name(),
        ];
        let set: HashSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len(), "{all:?}");
        assert_eq!(a.name(), "Relu_1_out0_2");
        let g = b.graph();
        assert_eq!(g.nodes[2].name, "n");
        assert_ne!(g.nodes[3].name, g.nodes[1].name);
        assert_eq!(b.fresh_name("x"), "x_2");
        assert_eq!(b.fresh_name("unused"), "unused");
        // A nameless initialiser gets a fresh name.
        let i = b.initializer(Tensor::from_vec("", vec![1], vec![1i64]).unwrap());
        assert_eq!(i.name(), "init");
        let j = b.initializer(Tensor::from_vec("", vec![1], vec![1i64]).unwrap());
        assert_eq!(j.name(), "init_2");
    }

    #[test]
    fn attribute_conversions_pick_the_right_kind() {
        let cases: Vec<(AttrValue, &str)> = vec![
            (1.5.into(), "FLOAT"),
            (1.5f32.into(), "FLOAT"),
            (3.into(), "INT"),
            (3i64.into(), "INT"),
            (true.into(), "INT"),
            ("same".into(), "STRING"),
            (String::from("x").into(), "STRING"),
            ([3, 3].into(), "INTS"),
            (vec![1i64].into(), "INTS"),
            ((&[1i64, 2][..]).into(), "INTS"),
            ([1.0f32, 2.0].into(), "FLOATS"),
            (vec![1.0f32].into(), "FLOATS"),
            ((&[1.0f32][..]).into(), "FLOATS"),
            (["a", "b"].into(), "STRINGS"),
            (vec!["a"].into(), "STRINGS"),
            (vec![String::from("a")].into(), "STRINGS"),
            (Tensor::scalar("s", 1u8).into(), "TENSOR"),
            (vec![Tensor::scalar("s", 1u8)].into(), "TENSORS"),
            (Graph::default().into(), "GRAPH"),
            (vec![Graph::default()].into(), "GRAPHS"),
        ];
        for (v, kind) in cases {
            assert_eq!(v.kind(), kind, "{v:?}");
        }
        assert_eq!(AttrValue::from(false), AttrValue::Int(0));
        assert_eq!(AttrValue::from(0.5), AttrValue::Float(0.5));
    }

    #[test]
    fn everything_proto_has_every_attribute_kind() {
        let m = parse(&everything());
        assert_eq!((m.ir_version, m.model_version), (9, 5));
        assert_eq!(m.metadata_props[0].value, "kiln");
        assert_eq!(m.opset_import.len(), 2);
        let g = m.graph.unwrap();
        // x, anything, u, then the overridable initialiser.
        let inputs: Vec<_> = g.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(inputs, ["x", "anything", "u", "scale"]);
        assert_eq!(g.initializer.len(), DataType::ALL.len() + 1);
        for (t, d) in g.initializer.iter().zip(DataType::ALL) {
            assert_eq!(t.data_type, d.onnx_code());
            assert_eq!(t.raw_data.len(), 3 * d.size_in_bytes());
        }
        let clip = g.node.iter().find(|n| n.op_type == "Clip").unwrap();
        assert_eq!(clip.input[1], "");
        let node = g.node.iter().find(|n| n.op_type == "AllKinds").unwrap();
        assert_eq!(node.domain, "com.example");
        assert_eq!(node.output, ["c0", "", "c2"]);
        let kinds: Vec<_> = node
            .attribute
            .iter()
            .map(|a| a.type_.enum_value().unwrap())
            .collect();
        use AttributeType as K;
        assert_eq!(
            kinds,
            [
                K::FLOAT,
                K::INT,
                K::STRING,
                K::TENSOR,
                K::GRAPH,
                K::FLOATS,
                K::INTS,
                K::STRINGS,
                K::TENSORS,
                K::GRAPHS,
                K::FLOAT
            ]
        );
        assert_eq!(node.attribute[10].ref_attr_name, "outer_alpha");
        assert_eq!(node.attribute[4].g.node[1].input, ["x", "one"]);
        assert_eq!(node.attribute[9].graphs[1].name, "g1");
        let iff = g.node.iter().find(|n| n.op_type == "If").unwrap();
        assert_eq!(iff.attribute[0].g.output[0].name, "then_out");
        assert_eq!(g.value_info.len(), 1);
    }

    #[test]
    fn subgraphs_in_the_ir_take_the_model_opsets() {
        let g = everything().graph();
        let node = g.nodes.iter().find(|n| n.op_type == "AllKinds").unwrap();
        let sub = node.attr_graph("g").unwrap().unwrap();
        assert_eq!(sub.opsets, g.opsets);
        assert_eq!(sub.metadata, ModelMetadata::default());
        assert!(g.inputs.iter().all(|v| v.kind == ValueKind::Tensor));
    }
}
