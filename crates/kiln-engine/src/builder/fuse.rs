//! Fusion passes: chains of nodes rewritten (as typed [`GraphPatch`]es) into forms whose work a
//! library call does in one go. Every rewrite stays a valid ONNX graph that kiln-reference
//! runs, so each is tested by running the graph before and after on the CPU.
//!
//! - [`matmul_bias_to_gemm`]: `MatMul(A, W) + b` with `W` a 2-D weight `[k, n]` and `b` a
//!   weight `[n]` becomes `Reshape(A, [-1, k])` → `Gemm(·, W, b)` → `Reshape` back to
//!   `A.shape[:-1] + [n]` (the shape arithmetic folds away at specialisation and the
//!   reshapes are views), so the bias rides cuBLASLt's bias epilogue instead of a separate
//!   pass over the output (the Linear layers of transformer exports).
//! - [`conv_gemm_epilogues`]: `Conv` → (`Add` of a residual of the same shape) → (`Relu`)
//!   becomes one `com.microsoft::FusedConv` (cuDNN's bias + residual + ReLU in one call), and
//!   `Gemm` → `Relu` one `com.microsoft::FusedGemm` (cuBLASLt's ReLU epilogue). The fused node
//!   takes the place of the chain's last node, where every input it reads is already defined.

use std::collections::{HashMap, HashSet};

use kiln_onnx::{
    AttrValue, Attribute, FusedActivation, Graph, MS_DOMAIN, MS_OPSET, Node, OpsetImport, Tensor,
};

use super::patch::{FreshNames, GraphPatch, f32_weight};
use crate::error::Result;

/// Lowest default-domain opset the rewrites emit nodes for (Reshape-13, Slice-13, Gemm-13).
const MIN_OPSET: i64 = 13;

fn node(name: String, op: &str, inputs: Vec<String>, output: String) -> Node {
    Node {
        name,
        op_type: op.to_string(),
        inputs,
        outputs: vec![output],
        ..Node::default()
    }
}

/// The nodes reading each value (each node once, in graph order).
fn readers_of(graph: &Graph) -> HashMap<&str, Vec<usize>> {
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for v in n.inputs.iter().filter(|v| !v.is_empty()) {
            let r = readers.entry(v.as_str()).or_default();
            if r.last() != Some(&i) {
                r.push(i);
            }
        }
    }
    readers
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
    let readers = readers_of(graph);
    let mut names = FreshNames::of(graph);
    let mut used: HashSet<usize> = HashSet::new();
    for (mi, mm) in graph.nodes.iter().enumerate() {
        if mm.op_type != "MatMul" || !mm.domain.is_empty() || mm.inputs.len() != 2 {
            continue;
        }
        let (Some(a), Some(w), Some(y)) = (mm.input(0), mm.input(1), mm.output(0)) else {
            continue;
        };
        let Some(wt) = f32_weight(graph, w) else {
            continue;
        };
        let &[k, n] = wt.dims() else { continue };
        let Some(ai) = only_reader(graph, &readers, y) else {
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
        let Some(bt) = f32_weight(graph, bias) else {
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
        let v = |names: &mut FreshNames, s: &str| names.fresh(&format!("{stem}/kiln_gemm/{s}"));
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

/// The single reader of `value` (its index), if `value` is read by exactly one node and is
/// not a graph output.
fn only_reader(graph: &Graph, readers: &HashMap<&str, Vec<usize>>, value: &str) -> Option<usize> {
    if graph.outputs.iter().any(|o| o.name == value) {
        return None;
    }
    match readers.get(value).map(Vec::as_slice) {
        Some(&[i]) => Some(i),
        _ => None,
    }
}

fn plain(n: &Node, op: &str) -> bool {
    n.op_type == op && n.domain.is_empty()
}

/// Conv (+ residual Add) (+ Relu) → FusedConv; Gemm + Relu → FusedGemm (see the module doc).
/// A residual is taken only when shape inference shows it has exactly the Conv output's
/// shape (FusedConv's `Z` does not broadcast). Adds the `com.microsoft` opset import when it
/// fuses anything.
pub fn conv_gemm_epilogues(graph: &Graph) -> Result<Graph> {
    let mut p = GraphPatch::new("conv-gemm-epilogues");
    let mut shaped = graph.clone();
    // Shapes only steer the choice; a graph inference cannot type keeps its chains unfused.
    let shapes_known = kiln_onnx::infer_shapes(&mut shaped).is_ok();
    let readers = readers_of(graph);
    let same_shape = |a: &str, b: &str| -> bool {
        let s = |v: &str| shaped.value(v).and_then(|vi| vi.shape.clone());
        shapes_known && matches!((s(a), s(b)), (Some(x), Some(y)) if x == y && x.rank() > 0)
    };
    let mut used: HashSet<usize> = HashSet::new();
    for (ci, conv) in graph.nodes.iter().enumerate() {
        let is_conv = plain(conv, "Conv");
        if !(is_conv || plain(conv, "Gemm")) || used.contains(&ci) {
            continue;
        }
        let Some(y) = conv.output(0) else { continue };
        let mut chain = vec![ci];
        let mut out = y.to_string();
        let mut residual: Option<String> = None;
        if is_conv
            && let Some(ai) = only_reader(graph, &readers, &out)
            && plain(&graph.nodes[ai], "Add")
            && graph.nodes[ai].inputs.len() == 2
        {
            let add = &graph.nodes[ai];
            let other = if add.inputs[0] == out {
                &add.inputs[1]
            } else {
                &add.inputs[0]
            };
            if other != &out && same_shape(other, &out) && !used.contains(&ai) {
                residual = Some(other.clone());
                chain.push(ai);
                out = add.outputs[0].clone();
            }
        }
        let mut act = FusedActivation::Identity;
        if let Some(ri) = only_reader(graph, &readers, &out)
            && plain(&graph.nodes[ri], "Relu")
            && !used.contains(&ri)
        {
            act = FusedActivation::Relu;
            chain.push(ri);
            out = graph.nodes[ri].outputs[0].clone();
        }
        if chain.len() == 1 {
            continue;
        }
        let mut node = conv.clone();
        node.domain = MS_DOMAIN.to_string();
        node.outputs = vec![out];
        if is_conv {
            node.op_type = "FusedConv".into();
            let Some(attrs) = act.conv_attributes() else {
                continue;
            };
            node.attributes.extend(attrs);
            if let Some(z) = residual {
                node.inputs.resize(3, String::new());
                node.inputs.push(z);
            }
        } else {
            node.op_type = "FusedGemm".into();
            let Some(attrs) = act.gemm_attributes() else {
                continue;
            };
            node.attributes.extend(attrs);
        }
        let last = *chain.last().unwrap_or(&ci);
        for &i in &chain {
            used.insert(i);
            if i != last {
                p.remove_node(i);
            }
        }
        p.replace_node(last, node);
    }
    if p.is_empty() {
        return Ok(graph.clone());
    }
    let mut g = p.apply(graph)?;
    if g.opset_version(MS_DOMAIN).is_none() {
        g.opsets.push(OpsetImport {
            domain: MS_DOMAIN.into(),
            version: MS_OPSET,
        });
    }
    Ok(g)
}

#[cfg(test)]
#[path = "fuse_tests.rs"]
mod tests;
