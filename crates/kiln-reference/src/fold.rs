//! Constant folding: every node whose inputs are all known before run time is evaluated once
//! and replaced by initialisers.

use std::collections::{HashMap, HashSet};

use kiln_onnx::Graph;

use crate::error::Result;
use crate::ops::{self, OpCtx};
use crate::value::Value;

/// Ops never folded: their results differ between runs.
const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Bernoulli",
    "Multinomial",
];

/// Limits of [`fold_constants_with`].
#[derive(Debug, Clone)]
pub struct FoldOptions {
    /// A node is folded only if each of its outputs has at most this many elements (so a
    /// `ConstantOfShape` of a huge shape stays a node instead of bloating the model).
    pub max_output_elements: usize,
}

impl Default for FoldOptions {
    fn default() -> Self {
        FoldOptions {
            max_output_elements: 1 << 24,
        }
    }
}

/// What folding did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldReport {
    /// Nodes evaluated and removed.
    pub folded_nodes: usize,
    /// Initialisers removed because nothing reads them any more.
    pub dropped_initializers: usize,
}

/// [`fold_constants_with`] with the default size cap.
pub fn fold_constants(graph: &Graph) -> Result<(Graph, FoldReport)> {
    fold_constants_with(graph, &FoldOptions::default())
}

/// Evaluates every node whose inputs are all constant (initialisers that the caller cannot
/// override, or outputs of folded nodes) and whose op the interpreter implements, and replaces
/// it by initialisers holding its outputs. `Shape` and `Size` of values whose shape is fully
/// known (graph inputs with fixed dims, value_info) fold too. Subgraph-carrying nodes, random
/// ops and nodes with outputs above the size cap are kept. Initialisers nothing reads any more
/// are dropped. Errors from evaluating a node (a model bug) are returned.
pub fn fold_constants_with(graph: &Graph, opts: &FoldOptions) -> Result<(Graph, FoldReport)> {
    let mut consts: HashMap<String, Value> = HashMap::new();
    let overridable: HashSet<&str> = graph
        .overridable_initializers
        .iter()
        .map(String::as_str)
        .collect();
    for t in &graph.initializers {
        if !overridable.contains(t.name()) {
            consts.insert(t.name().to_string(), Value::from_tensor(t)?);
        }
    }
    let mut kept = Vec::with_capacity(graph.nodes.len());
    let mut new_inits: Vec<(String, Value)> = Vec::new();
    let mut report = FoldReport::default();
    for node in &graph.nodes {
        let foldable = kiln_onnx::is_onnx_domain(&node.domain)
            && !NONDETERMINISTIC.contains(&node.op_type.as_str())
            && !node.attributes.iter().any(|a| {
                matches!(
                    a.value,
                    kiln_onnx::AttrValue::Graph(_) | kiln_onnx::AttrValue::Graphs(_)
                )
            });
        let mut outputs: Option<Vec<Value>> = None;
        if foldable {
            if let Some(v) = shape_of_known(graph, node) {
                outputs = Some(vec![v]);
            } else if let Some(op) = ops::lookup(&node.domain, &node.op_type) {
                let all_const = node
                    .inputs
                    .iter()
                    .all(|i| i.is_empty() || consts.contains_key(i));
                if all_const {
                    let args = node
                        .inputs
                        .iter()
                        .map(|i| if i.is_empty() { None } else { consts.get(i) })
                        .collect();
                    let opset = graph.opset_version(&node.domain).unwrap_or(0);
                    outputs = Some(op(&OpCtx::new(node, opset, args))?);
                }
            }
        }
        match outputs {
            Some(vals) if vals.iter().all(|v| v.len() <= opts.max_output_elements) => {
                report.folded_nodes += 1;
                for (name, v) in node.outputs.iter().zip(vals) {
                    if !name.is_empty() {
                        consts.insert(name.clone(), v.clone());
                        new_inits.push((name.clone(), v));
                    }
                }
            }
            _ => kept.push(node.clone()),
        }
    }
    let mut out = graph.clone();
    out.nodes = kept;
    for (name, v) in new_inits {
        out.initializers.push(v.to_tensor(&name)?);
    }
    // Drop initialisers that no node, graph output or caller reads.
    let mut used: HashSet<String> = HashSet::new();
    for n in &out.nodes {
        collect_reads(n, &mut used);
    }
    for o in &out.outputs {
        used.insert(o.name.clone());
    }
    let before = out.initializers.len();
    out.initializers
        .retain(|t| used.contains(t.name()) || overridable.contains(t.name()));
    // Folded values are initialisers now, not value_info entries of intermediates.
    report.dropped_initializers = before - out.initializers.len();
    Ok((out, report))
}

/// Names a node reads, also inside its subgraphs (outer-scope references).
fn collect_reads(node: &kiln_onnx::Node, used: &mut HashSet<String>) {
    for i in &node.inputs {
        if !i.is_empty() {
            used.insert(i.clone());
        }
    }
    for a in &node.attributes {
        let graphs: Vec<&Graph> = match &a.value {
            kiln_onnx::AttrValue::Graph(g) => vec![g],
            kiln_onnx::AttrValue::Graphs(gs) => gs.iter().collect(),
            _ => Vec::new(),
        };
        for g in graphs {
            for n in &g.nodes {
                collect_reads(n, used);
            }
            for o in &g.outputs {
                used.insert(o.name.clone());
            }
        }
    }
}

/// `Shape` / `Size` of a value whose shape the graph fixes completely.
fn shape_of_known(graph: &Graph, node: &kiln_onnx::Node) -> Option<Value> {
    if node.op_type != "Shape" && node.op_type != "Size" {
        return None;
    }
    let input = node.input(0)?;
    let dims = graph.value(input)?.shape?.as_known()?;
    if node.op_type == "Size" {
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        return Some(Value::I64(ndarray::arr0(n as i64).into_dyn()));
    }
    let rank = dims.len() as i64;
    let clamp = |v: i64| -> usize {
        let v = if v < 0 { v + rank } else { v };
        v.clamp(0, rank) as usize
    };
    let start = clamp(node.attr_int("start").ok()?.unwrap_or(0));
    let end = clamp(node.attr_int("end").ok()?.unwrap_or(rank));
    let sel: Vec<i64> = dims
        .get(start..end.max(start))
        .unwrap_or(&[])
        .iter()
        .map(|&d| d as i64)
        .collect();
    Some(Value::I64(ndarray::Array1::from(sel).into_dyn()))
}
