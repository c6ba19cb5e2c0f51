//! Type and shape inference over a whole graph.
//!
//! [`infer_shapes`] walks the nodes in order (the loader sorts them topologically) and runs
//! the inference of each op of the [`crate::ops`] registry. What each node sees of an input:
//! - graph inputs: their declared type and shape;
//! - initialisers: type and shape, their data as a constant, and for small int64 / int32
//!   tensors of rank 0 or 1 their values as a `sym_value` (initialisers a caller may feed,
//!   [`Graph::overridable_initializers`], give type and shape only);
//! - `Constant` outputs: the constant's tensor;
//! - outputs of earlier nodes: what their inference found, merged with the file's annotation;
//! - any other value: the file's annotation (`value_info`, graph outputs) or nothing.
//!
//! Values whose `sym_value` is fully known (a `Shape` of a fully known shape, ...) are also
//! handed to later nodes as constants, so ops that only read constants benefit.
//!
//! Ops kiln does not register (or registers only from a newer opset) are skipped: their outputs
//! keep what the file says. Unsupported ops are reported elsewhere, all at once. An op's
//! inference error (a contradiction in the model) is returned; it names the node.
//!
//! Results are merged into [`Graph::value_info`] (entries added or refined) and into
//! [`Graph::outputs`] (missing types, shapes and unknown dims filled in). What the file says is
//! never dropped: where the file and inference disagree on a known dim or the type, the file's
//! is kept and a warning is logged.
//!
//! Subgraphs (`If` branches, `Loop` and `Scan` bodies) are inferred best-effort after their
//! graph: the outer graph's values are visible with their types, shapes and `sym_value`s, but
//! not as constants; errors there are returned like any other.

use std::collections::HashMap;

use kiln_core::{DataType, Dim, Shape};

use crate::attribute::AttrValue;
use crate::error::{Origin, Result};
use crate::graph::{Graph, Node, OpsetImport, ValueInfo, ValueKind, is_onnx_domain};
use crate::ops::tensor::constant::{constant_tensor, fact_of_tensor};
use crate::ops::util::MAX_SYM_LEN;
use crate::ops::{Fact, InferCtx, registry};
use crate::tensor::Tensor;

/// Infers the types and shapes of `graph`'s values (see the module documentation).
pub fn infer_shapes(graph: &mut Graph) -> Result<()> {
    let origin = Origin(graph.source.clone());
    infer_graph(graph, &HashMap::new(), &[]).map_err(|e| e.in_file(&origin))
}

fn infer_graph(
    graph: &mut Graph,
    outer: &HashMap<String, Fact>,
    outer_opsets: &[OpsetImport],
) -> Result<()> {
    let facts = infer_facts_in(graph, outer, outer_opsets)?;
    write_back(graph, &facts);
    let has_subgraphs = graph.nodes.iter().any(|n| {
        n.attributes
            .iter()
            .any(|a| matches!(a.value, AttrValue::Graph(_) | AttrValue::Graphs(_)))
    });
    if !has_subgraphs {
        return Ok(());
    }
    let mut scope = outer.clone();
    scope.extend(seed(graph).0);
    scope.extend(facts);
    let opsets = if graph.opsets.is_empty() {
        outer_opsets.to_vec()
    } else {
        graph.opsets.clone()
    };
    for node in &mut graph.nodes {
        for attr in &mut node.attributes {
            match &mut attr.value {
                AttrValue::Graph(g) => infer_graph(g, &scope, &opsets)?,
                AttrValue::Graphs(gs) => {
                    for g in gs {
                        infer_graph(g, &scope, &opsets)?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The facts inference finds for the outputs of `graph`'s nodes (merged with the file's
/// annotations), without changing the graph. Used by [`crate::constant_values`].
pub(crate) fn infer_facts(graph: &Graph) -> Result<HashMap<String, Fact>> {
    infer_facts_in(graph, &HashMap::new(), &[])
}

/// File annotations by name (value_info first, then graph outputs filling what it lacks).
fn annotations(graph: &Graph) -> HashMap<&str, ValueInfo> {
    let mut m: HashMap<&str, ValueInfo> = HashMap::new();
    for v in graph.value_info.iter().chain(&graph.outputs) {
        if v.kind != ValueKind::Tensor {
            continue;
        }
        match m.get_mut(v.name.as_str()) {
            Some(prev) => refine(prev, &Fact::new(v.dtype, v.shape.clone())),
            None => {
                m.insert(&v.name, v.clone());
            }
        }
    }
    m
}

/// Facts of the graph's inputs and initialisers, and the initialisers that are constants.
fn seed(graph: &Graph) -> (HashMap<String, Fact>, HashMap<&str, &Tensor>) {
    let mut facts = HashMap::new();
    let mut consts = HashMap::new();
    for v in &graph.inputs {
        facts.insert(v.name.clone(), Fact::new(v.dtype, v.shape.clone()));
    }
    for t in &graph.initializers {
        if graph.overridable_initializers.iter().any(|n| n == t.name()) {
            facts.insert(t.name().to_string(), Fact::tensor(t.dtype(), t.shape()));
        } else {
            facts.insert(t.name().to_string(), fact_of_tensor(t));
            consts.insert(t.name(), t);
        }
    }
    (facts, consts)
}

fn infer_facts_in(
    graph: &Graph,
    outer: &HashMap<String, Fact>,
    outer_opsets: &[OpsetImport],
) -> Result<HashMap<String, Fact>> {
    let annots = annotations(graph);
    let (seeded, mut consts) = seed(graph);
    let mut known: HashMap<String, Fact> = outer.clone();
    for (name, v) in &annots {
        known.insert((*name).to_string(), Fact::new(v.dtype, v.shape.clone()));
    }
    known.extend(seeded);
    let mut synth: HashMap<String, Tensor> = HashMap::new();
    let mut out: HashMap<String, Fact> = HashMap::new();
    let reg = registry();
    for node in &graph.nodes {
        let Some(def) = reg.get(&node.domain, &node.op_type) else {
            continue;
        };
        let opset = graph.opset_version(&node.domain).or_else(|| {
            outer_opsets
                .iter()
                .find(|o| {
                    o.domain == node.domain
                        || (is_onnx_domain(&node.domain) && is_onnx_domain(&o.domain))
                })
                .map(|o| o.version)
        });
        let Some(opset) = opset.filter(|v| *v >= def.since_opset) else {
            continue;
        };
        let outputs = {
            let inputs: Vec<Option<Fact>> = node
                .inputs
                .iter()
                .map(|n| (!n.is_empty()).then(|| known.get(n).cloned().unwrap_or_default()))
                .collect();
            let cs: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|n| consts.get(n.as_str()).copied().or_else(|| synth.get(n)))
                .collect();
            let mut ctx = InferCtx::new(node, opset, inputs, cs);
            (def.infer)(&mut ctx)?;
            ctx.into_outputs()
        };
        if is_onnx_domain(&node.domain)
            && node.op_type == "Constant"
            && let Some(name) = node.output(0)
        {
            match constant_tensor(node)? {
                Some(std::borrow::Cow::Borrowed(t)) => {
                    consts.insert(name, t);
                }
                Some(std::borrow::Cow::Owned(mut t)) => {
                    t.set_name(name);
                    synth.insert(name.to_string(), t);
                }
                None => {}
            }
        }
        for (name, fact) in node.outputs.iter().zip(outputs) {
            if name.is_empty() {
                continue;
            }
            let merged = merge(annots.get(name.as_str()), fact, node);
            if let Some(t) = sym_tensor(name, &merged)
                && !consts.contains_key(name.as_str())
            {
                synth.entry(name.clone()).or_insert(t);
            }
            known.insert(name.clone(), merged.clone());
            out.insert(name.clone(), merged);
        }
    }
    Ok(out)
}

/// A constant tensor for a fact whose small integer value is fully known.
fn sym_tensor(name: &str, f: &Fact) -> Option<Tensor> {
    let v = f.sym_value.as_ref()?;
    if v.len() > MAX_SYM_LEN {
        return None;
    }
    let vals: Vec<usize> = v.iter().map(Dim::known).collect::<Option<_>>()?;
    let dims = match f.shape.as_ref()?.dims() {
        [] if vals.len() == 1 => vec![],
        [Dim::Known(n)] if *n == vals.len() => vec![*n],
        _ => return None,
    };
    match f.dtype? {
        DataType::I64 => {
            let v: Vec<i64> = vals
                .iter()
                .map(|&x| i64::try_from(x).ok())
                .collect::<Option<_>>()?;
            Tensor::from_vec(name, dims, v).ok()
        }
        DataType::I32 => {
            let v: Vec<i32> = vals
                .iter()
                .map(|&x| i32::try_from(x).ok())
                .collect::<Option<_>>()?;
            Tensor::from_vec(name, dims, v).ok()
        }
        _ => None,
    }
}

/// The inferred fact refined by the file's annotation: the file wins where both know something
/// and they disagree (with a warning); inference fills what the file leaves unknown.
fn merge(file: Option<&ValueInfo>, inferred: Fact, node: &Node) -> Fact {
    let Some(file) = file else {
        return inferred;
    };
    let name = file.name.as_str();
    let dtype = match (file.dtype, inferred.dtype) {
        (Some(f), Some(i)) if f != i => {
            tracing::warn!(value = name, node = %node.node_ref(), file = %f, inferred = %i,
                "the model's type annotation disagrees with inference; keeping the model's");
            Some(f)
        }
        (f, i) => f.or(i),
    };
    let shape = match (&file.shape, inferred.shape) {
        (None, s) => s,
        (Some(f), None) => Some(f.clone()),
        (Some(f), Some(i)) if f.rank() != i.rank() => {
            tracing::warn!(value = name, node = %node.node_ref(), file = %f, inferred = %i,
                "the model's shape annotation disagrees with inference (rank); keeping the model's");
            Some(f.clone())
        }
        (Some(f), Some(i)) => {
            let dims = f
                .dims()
                .iter()
                .zip(i.dims())
                .map(|(fd, id)| match (fd, id) {
                    (Dim::Known(a), Dim::Known(b)) if a != b => {
                        tracing::warn!(value = name, node = %node.node_ref(), file = %f,
                            inferred = %i,
                            "the model's shape annotation disagrees with inference; keeping the model's");
                        fd.clone()
                    }
                    (Dim::Unknown, _) => id.clone(),
                    _ => fd.clone(),
                })
                .collect();
            Some(Shape(dims))
        }
    };
    let sym_value = inferred
        .sym_value
        .filter(|v| match shape.as_ref().map(Shape::dims) {
            Some([]) => v.len() == 1,
            Some([Dim::Known(n)]) => *n == v.len(),
            // The file names the length with a symbol (or not at all): inference knows better.
            Some([_]) => true,
            _ => false,
        });
    Fact {
        dtype,
        shape,
        sym_value,
    }
}

/// Fills what `vi` does not know from `f`, keeping everything `vi` says.
fn refine(vi: &mut ValueInfo, f: &Fact) {
    if vi.dtype.is_none() {
        vi.dtype = f.dtype;
    }
    match (&mut vi.shape, &f.shape) {
        (None, s) => vi.shape = s.clone(),
        (Some(have), Some(new)) if have.rank() == new.rank() => {
            for (h, n) in have.0.iter_mut().zip(new.dims()) {
                if *h == Dim::Unknown {
                    *h = n.clone();
                }
            }
        }
        _ => {}
    }
}

fn write_back(graph: &mut Graph, facts: &HashMap<String, Fact>) {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for vi in graph.outputs.iter_mut().chain(graph.value_info.iter_mut()) {
        if vi.kind != ValueKind::Tensor {
            seen.insert(vi.name.clone());
            continue;
        }
        if let Some(f) = facts.get(&vi.name) {
            refine(vi, f);
        }
        seen.insert(vi.name.clone());
    }
    // New entries in node order, for stable output.
    for node in &graph.nodes {
        for name in &node.outputs {
            if name.is_empty() || seen.contains(name) {
                continue;
            }
            if let Some(f) = facts.get(name)
                && (f.dtype.is_some() || f.shape.is_some())
            {
                graph.value_info.push(ValueInfo {
                    name: name.clone(),
                    dtype: f.dtype,
                    shape: f.shape.clone(),
                    kind: ValueKind::Tensor,
                    doc_string: String::new(),
                });
                seen.insert(name.clone());
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attribute::Attribute;
    use crate::graph::ModelMetadata;

    pub(crate) fn node(
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<Attribute>,
    ) -> Node {
        Node {
            name: name.into(),
            op_type: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: attrs,
            ..Node::default()
        }
    }

    pub(crate) fn graph(
        inputs: Vec<ValueInfo>,
        nodes: Vec<Node>,
        inits: Vec<Tensor>,
        outputs: &[&str],
    ) -> Graph {
        Graph {
            name: "g".into(),
            inputs,
            outputs: outputs.iter().map(|o| ValueInfo::unknown(*o)).collect(),
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, mut n)| {
                    n.index = i;
                    n
                })
                .collect(),
            initializers: inits,
            opsets: vec![OpsetImport {
                domain: String::new(),
                version: 13,
            }],
            metadata: ModelMetadata::default(),
            ..Graph::default()
        }
    }

    /// torch's legacy flatten: `Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))`, plus
    /// `Gather(Shape(x), 1)` as `c1`.
    pub(crate) fn torch_chain(batch: Dim) -> Graph {
        let x = ValueInfo::tensor(
            "x",
            DataType::F32,
            Shape(vec![batch, Dim::Known(2048), Dim::Known(1), Dim::Known(1)]),
        );
        let inits = vec![
            Tensor::from_vec("axes0", vec![1], vec![0i64]).unwrap(),
            Tensor::from_vec("minus1", vec![1], vec![-1i64]).unwrap(),
        ];
        let nodes = vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node(
                "Constant",
                "zero",
                &[],
                &["i0"],
                vec![Attribute::new(
                    "value",
                    AttrValue::Tensor(Tensor::scalar("v", 0i64)),
                )],
            ),
            node(
                "Constant",
                "one",
                &[],
                &["i1"],
                vec![Attribute::new("value_int", AttrValue::Int(1))],
            ),
            node("Gather", "gather0", &["s", "i0"], &["g0"], vec![]),
            node("Gather", "gather1", &["s", "i1"], &["c1"], vec![]),
            node("Unsqueeze", "unsq", &["g0", "axes0"], &["u"], vec![]),
            node(
                "Concat",
                "concat",
                &["u", "minus1"],
                &["target"],
                vec![Attribute::new("axis", AttrValue::Int(0))],
            ),
            node("Reshape", "reshape", &["x", "target"], &["y"], vec![]),
        ];
        graph(vec![x], nodes, inits, &["y"])
    }

    fn vi<'g>(g: &'g Graph, name: &str) -> &'g ValueInfo {
        g.value_info
            .iter()
            .chain(&g.outputs)
            .find(|v| v.name == name)
            .unwrap()
    }

    #[test]
    fn torch_chain_symbolic_batch() {
        let mut g = torch_chain(Dim::symbol("batch"));
        infer_shapes(&mut g).unwrap();
        assert_eq!(g.outputs[0].dtype, Some(DataType::F32));
        assert_eq!(
            g.outputs[0].shape,
            Some(Shape::parse("batchx2048").unwrap())
        );
        assert_eq!(vi(&g, "s").shape, Some(Shape::from_known(&[4])));
        assert_eq!(vi(&g, "g0").shape, Some(Shape::scalar()));
        assert_eq!(vi(&g, "u").shape, Some(Shape::from_known(&[1])));
        assert_eq!(vi(&g, "target").dtype, Some(DataType::I64));
        assert_eq!(vi(&g, "target").shape, Some(Shape::from_known(&[2])));
        // y is a graph output: refined there, not duplicated into value_info.
        assert!(!g.value_info.iter().any(|v| v.name == "y"));
    }

    #[test]
    fn torch_chain_known_batch() {
        let mut g = torch_chain(Dim::Known(4));
        infer_shapes(&mut g).unwrap();
        assert_eq!(g.outputs[0].shape, Some(Shape::from_known(&[4, 2048])));
    }

    #[test]
    fn flatten_and_reshape_in_a_graph() {
        let x = ValueInfo::tensor("x", DataType::F16, Shape::parse("batchx512x7x7").unwrap());
        let t = Tensor::from_vec("t", vec![2], vec![-1i64, 512]).unwrap();
        let nodes = vec![
            node("Flatten", "flat", &["x"], &["f"], vec![]),
            node("Reshape", "re", &["x", "t"], &["r"], vec![]),
        ];
        let mut g = graph(vec![x], nodes, vec![t], &["f", "r"]);
        infer_shapes(&mut g).unwrap();
        assert_eq!(
            g.outputs[0].shape,
            Some(Shape::parse("batchx25088").unwrap())
        );
        assert_eq!(g.outputs[0].dtype, Some(DataType::F16));
        // batch*49 is not one dim.
        assert_eq!(
            g.outputs[1].shape,
            Some(Shape(vec![Dim::Unknown, Dim::Known(512)]))
        );
    }

    #[test]
    fn file_annotations_win_and_are_refined() {
        let mut g = torch_chain(Dim::symbol("batch"));
        g.outputs[0] = ValueInfo {
            name: "y".into(),
            dtype: None,
            shape: Some(Shape(vec![Dim::Unknown, Dim::Known(999)])),
            ..ValueInfo::default()
        };
        g.value_info.push(ValueInfo::tensor(
            "s",
            DataType::I64,
            Shape(vec![Dim::symbol("r")]),
        ));
        infer_shapes(&mut g).unwrap();
        // The file's 999 is kept (with a warning); the unknown dim and the type are filled.
        assert_eq!(
            g.outputs[0].shape,
            Some(Shape(vec![Dim::symbol("batch"), Dim::Known(999)]))
        );
        assert_eq!(g.outputs[0].dtype, Some(DataType::F32));
        assert_eq!(vi(&g, "s").shape, Some(Shape(vec![Dim::symbol("r")])));
        assert_eq!(g.value_info.iter().filter(|v| v.name == "s").count(), 1);
    }

    #[test]
    fn unregistered_ops_leave_outputs_unknown() {
        let x = ValueInfo::tensor("x", DataType::F32, Shape::from_known(&[2, 3]));
        let nodes = vec![
            node("FancyOp", "fancy", &["x"], &["a"], vec![]),
            node("Transpose", "t", &["a"], &["b"], vec![]),
            node("Shape", "s", &["b"], &["c"], vec![]),
        ];
        let mut g = graph(vec![x], nodes, vec![], &["c"]);
        infer_shapes(&mut g).unwrap();
        // Nothing is known of a and b: no entries for them.
        assert!(!g.value_info.iter().any(|v| v.name == "a" || v.name == "b"));
        assert_eq!(g.outputs[0].shape, Some(Shape(vec![Dim::Unknown])));
    }

    #[test]
    fn op_errors_name_the_node() {
        let x = ValueInfo::tensor("x", DataType::F32, Shape::from_known(&[2, 3]));
        let t = Tensor::from_vec("t", vec![1], vec![7i64]).unwrap();
        let nodes = vec![node("Reshape", "bad_reshape", &["x", "t"], &["y"], vec![])];
        let mut g = graph(vec![x], nodes, vec![t], &["y"]);
        g.source = Some("model.onnx".into());
        let e = infer_shapes(&mut g).unwrap_err().to_string();
        assert!(e.contains("model.onnx"), "{e}");
        assert!(e.contains("node 'bad_reshape' (Reshape, #0)"), "{e}");
    }

    #[test]
    fn ops_older_than_kiln_are_skipped() {
        let x = ValueInfo::tensor("x", DataType::F32, Shape::from_known(&[2, 3]));
        let nodes = vec![node("Reshape", "old", &["x"], &["y"], vec![])];
        let mut g = graph(vec![x], nodes, vec![], &["y"]);
        g.opsets[0].version = 4;
        infer_shapes(&mut g).unwrap();
        assert_eq!(g.outputs[0].shape, None);
    }

    #[test]
    fn sym_values_become_constants_for_later_nodes() {
        // Expand only needs sym_value, but ConstantOfShape's output is a constant here
        // because Shape of a fully known shape is synthesised as a tensor.
        let x = ValueInfo::tensor("x", DataType::F32, Shape::from_known(&[2, 3]));
        let nodes = vec![
            node("Shape", "s", &["x"], &["s"], vec![]),
            node(
                "Cast",
                "c",
                &["s"],
                &["s32"],
                vec![Attribute::new("to", AttrValue::Int(6))],
            ),
        ];
        let g = graph(vec![x], nodes, vec![], &["s32"]);
        let facts = infer_facts(&g).unwrap();
        let f = facts.get("s32").unwrap();
        assert_eq!(
            sym_tensor("s32", f).unwrap().to_i64_vec().unwrap(),
            vec![2, 3]
        );
        assert_eq!(f.dtype, Some(DataType::I32));
    }

    #[test]
    fn subgraphs_see_outer_values() {
        let x = ValueInfo::tensor("x", DataType::F32, Shape::parse("batchx3").unwrap());
        let cond = ValueInfo::tensor("cond", DataType::Bool, Shape::scalar());
        let mut body = graph(
            vec![],
            vec![node("Transpose", "inner", &["x"], &["xt"], vec![])],
            vec![],
            &["xt"],
        );
        body.opsets.clear();
        let nodes = vec![node(
            "If",
            "if",
            &["cond"],
            &["y"],
            vec![
                Attribute::new("then_branch", AttrValue::Graph(Box::new(body.clone()))),
                Attribute::new("else_branch", AttrValue::Graph(Box::new(body))),
            ],
        )];
        let mut g = graph(vec![x, cond], nodes, vec![], &["y"]);
        infer_shapes(&mut g).unwrap();
        let Some(AttrValue::Graph(b)) = g.nodes[0].attr("then_branch") else {
            panic!("then_branch lost");
        };
        assert_eq!(b.outputs[0].shape, Some(Shape::parse("3xbatch").unwrap()));
    }
}
