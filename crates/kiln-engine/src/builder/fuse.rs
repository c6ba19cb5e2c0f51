//! Fusion passes: chains of nodes rewritten (as typed [`GraphPatch`]es) into forms whose work a
//! library call does in one go. Every rewrite stays a valid ONNX graph that kiln-reference
//! runs, so each is tested by running the graph before and after on the CPU.
//!
//! - [`matmul_bias_to_gemm`]: `MatMul(A, W) + b` with `W` a 2-D weight `[k, n]` and `b` a
//!   weight `[n]` becomes `Reshape(A, [-1, k])` → `Gemm(·, W, b)` → `Reshape` back to
//!   `A.shape[:-1] + [n]` (the shape arithmetic folds away at specialisation and the
//!   reshapes are views), so the bias rides cuBLASLt's bias epilogue instead of a separate
//!   pass over the output (the Linear layers of transformer exports).

use std::collections::{HashMap, HashSet};

use kiln_core::DataType;
use kiln_onnx::{AttrValue, Attribute, Graph, Node, Tensor};

use super::patch::{GraphPatch, reader_counts};
use crate::error::Result;

/// Lowest default-domain opset the rewrites emit nodes for (Reshape-13, Slice-13, Gemm-13).
const MIN_OPSET: i64 = 13;

/// Fresh value names: unused by the graph and by earlier calls.
struct Names {
    taken: HashSet<String>,
}

impl Names {
    fn of(graph: &Graph) -> Names {
        let taken = graph
            .inputs
            .iter()
            .chain(&graph.outputs)
            .chain(&graph.value_info)
            .map(|v| v.name.clone())
            .chain(graph.initializers.iter().map(|t| t.name().to_string()))
            .chain(graph.nodes.iter().flat_map(|n| n.outputs.iter().cloned()))
            .chain(graph.nodes.iter().map(|n| n.name.clone()))
            .collect();
        Names { taken }
    }

    fn fresh(&mut self, base: &str) -> String {
        let mut k = 0usize;
        loop {
            let name = if k == 0 {
                base.to_string()
            } else {
                format!("{base}.{k}")
            };
            if self.taken.insert(name.clone()) {
                return name;
            }
            k += 1;
        }
    }
}

fn node(name: String, op: &str, inputs: Vec<String>, output: String) -> Node {
    Node {
        name,
        op_type: op.to_string(),
        domain: String::new(),
        inputs,
        outputs: vec![output],
        attributes: Vec::new(),
        doc_string: String::new(),
        index: 0,
    }
}

/// An f32 weight (an initialiser the user cannot override) and its dims.
fn weight<'g>(graph: &'g Graph, name: &str) -> Option<&'g Tensor> {
    let t = graph.initializer(name)?;
    (t.dtype() == DataType::F32 && !graph.overridable_initializers.iter().any(|o| o == name))
        .then_some(t)
}

/// `MatMul(A, W) + b` → `Reshape` → `Gemm(bias)` → `Reshape` (see the module doc). Applies
/// when `W` is a 2-D f32 weight `[k, n]`, `b` an f32 weight `[n]`, the MatMul's output is read
/// only by the Add and is not a graph output, and the model imports default-domain opset 13
/// or newer.
pub fn matmul_bias_to_gemm(graph: &Graph) -> Result<GraphPatch> {
    let mut p = GraphPatch::new("matmul-bias-to-gemm");
    if graph.opset_version("").unwrap_or(0) < MIN_OPSET {
        return Ok(p);
    }
    let readers = reader_counts(graph);
    let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    let reader_of: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.inputs.iter().map(move |v| (v.as_str(), i)))
        .collect();
    let mut names = Names::of(graph);
    let mut used: HashSet<usize> = HashSet::new();
    for (mi, mm) in graph.nodes.iter().enumerate() {
        if mm.op_type != "MatMul" || !mm.domain.is_empty() || mm.inputs.len() != 2 {
            continue;
        }
        let (Some(a), Some(w), Some(y)) = (mm.input(0), mm.input(1), mm.output(0)) else {
            continue;
        };
        let Some(wt) = weight(graph, w) else { continue };
        let &[k, n] = wt.dims() else { continue };
        if readers.get(y) != Some(&1) || outputs.contains(y) {
            continue;
        }
        let Some(&ai) = reader_of.get(y) else {
            continue;
        };
        let add = &graph.nodes[ai];
        if add.op_type != "Add" || !add.domain.is_empty() || add.inputs.len() != 2 {
            continue;
        }
        let bias = if add.input(0) == Some(y) {
            add.input(1)
        } else {
            add.input(0)
        };
        let Some(bias) = bias else { continue };
        let Some(bt) = weight(graph, bias) else {
            continue;
        };
        if bt.dims() != [n] || used.contains(&mi) || used.contains(&ai) {
            continue;
        }
        let Some(out) = add.output(0) else { continue };
        let stem = if mm.name.is_empty() {
            format!("matmul{mi}")
        } else {
            mm.name.clone()
        };
        let v = |names: &mut Names, s: &str| names.fresh(&format!("{stem}/kiln_gemm/{s}"));
        let (shape_k, a2, g, sa, lead, n_t, s_out) = (
            v(&mut names, "shape_k"),
            v(&mut names, "a2d"),
            v(&mut names, "gemm"),
            v(&mut names, "a_shape"),
            v(&mut names, "lead"),
            v(&mut names, "n"),
            v(&mut names, "out_shape"),
        );
        let (starts, ends, axes) = (
            v(&mut names, "starts"),
            v(&mut names, "ends"),
            v(&mut names, "axes"),
        );
        let i64s =
            |name: &str, vals: Vec<i64>| Tensor::from_vec(name.to_string(), vec![vals.len()], vals);
        p.add_initializer(i64s(&shape_k, vec![-1, k as i64])?);
        p.add_initializer(i64s(&n_t, vec![n as i64])?);
        p.add_initializer(i64s(&starts, vec![0])?);
        p.add_initializer(i64s(&ends, vec![-1])?);
        p.add_initializer(i64s(&axes, vec![0])?);
        let mut concat = node(
            v(&mut names, "concat"),
            "Concat",
            vec![lead.clone(), n_t],
            s_out.clone(),
        );
        concat
            .attributes
            .push(Attribute::new("axis", AttrValue::Int(0)));
        p.expand_node(
            mi,
            vec![
                node(
                    v(&mut names, "reshape_in"),
                    "Reshape",
                    vec![a.to_string(), shape_k],
                    a2.clone(),
                ),
                node(
                    stem.clone(),
                    "Gemm",
                    vec![a2, w.to_string(), bias.to_string()],
                    g.clone(),
                ),
                node(
                    v(&mut names, "shape"),
                    "Shape",
                    vec![a.to_string()],
                    sa.clone(),
                ),
                node(
                    v(&mut names, "slice"),
                    "Slice",
                    vec![sa, starts, ends, axes],
                    lead,
                ),
                concat,
                node(
                    v(&mut names, "reshape_out"),
                    "Reshape",
                    vec![g, s_out],
                    out.to_string(),
                ),
            ],
        );
        p.remove_node(ai);
        used.insert(mi);
        used.insert(ai);
    }
    Ok(p)
}

#[cfg(test)]
#[path = "fuse_tests.rs"]
mod tests;
