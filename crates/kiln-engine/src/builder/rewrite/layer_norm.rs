//! Fusion: `Add(A, B) → LayerNormalization` over the last axis becomes kiln's
//! [`OP`] `(A, B, Scale, Bias?) → (Y, Sum?)` with the LayerNormalization's attributes, run as
//! one kernel (`kernels::nvrtc::norm::add_layer_norm`): the residual sum is never written and
//! read back unless something else reads it.
//!
//! Taken when:
//! - the LayerNormalization (default domain) normalises the last axis of its input and its
//!   `Mean` / `InvStdDev` outputs are left out or read by nothing (a graph output counts as a
//!   reader);
//! - its input is the output of an `Add` (default domain) whose operands have the same float
//!   type (f32, f16, bf16) and concrete shapes: one of them the sum's shape, the other the same
//!   shape or one row (`[.., L]` with only ones before the row);
//! - when the sum has other readers (or is a graph output) the fused node also writes it
//!   (second output, same name) and stands where the Add stood, which needs Scale and Bias
//!   defined before the Add; otherwise (or if they are not) it stands where the
//!   LayerNormalization stood, which needs no reader of the sum in between.
//!
//! Values keep their names and `value_info`; statistics outputs that nothing read lose
//! theirs.

use std::collections::{HashMap, HashSet};

use kiln_core::{DataType, Shape};
use kiln_onnx::{Graph, Node};

use super::KILN_DOMAIN;
use crate::builder::patch::reader_counts;
use crate::error::Result;

/// The fused op's type in the kiln domain.
pub const OP: &str = "AddLayerNorm";

/// Whether `b`, broadcast to `a`, is one row of `a`'s axes from `ax` on (dims right-aligned:
/// those over the row equal `a`'s, those before it 1).
pub fn is_row(a: &[usize], ax: usize, b: &[usize]) -> bool {
    let cols: usize = a[ax..].iter().product();
    b.len() <= a.len()
        && b.iter().product::<usize>() == cols
        && b.iter().rev().enumerate().all(|(k, &d)| {
            let pos = a.len() - 1 - k;
            if pos >= ax { d == a[pos] } else { d == 1 }
        })
}

fn is_default(n: &Node, op: &str) -> bool {
    n.op_type == op && (n.domain.is_empty() || n.domain == "ai.onnx")
}

/// Concrete dtype and dims of a value.
fn known(g: &Graph, name: &str) -> Option<(DataType, Vec<usize>)> {
    let vi = g.value(name)?;
    Some((vi.dtype?, vi.shape.as_ref().and_then(Shape::as_known)?))
}

/// One fusion found: node positions and the fused node.
struct Match {
    add: usize,
    ln: usize,
    /// Where the fused node stands (`add` or `ln`).
    at: usize,
    node: Node,
    /// Statistics outputs dropped (unread).
    dropped: Vec<String>,
}

/// The fusion of the LayerNormalization at `li`, if it is taken.
fn find(
    g: &Graph,
    li: usize,
    readers: &HashMap<String, usize>,
    producer: &HashMap<&str, usize>,
    defined_at: &HashMap<&str, usize>,
) -> Option<Match> {
    let ln = &g.nodes[li];
    if !is_default(ln, "LayerNormalization") {
        return None;
    }
    let read = |name: &str| readers.get(name).copied().unwrap_or(0);
    let stats: Vec<String> = ln
        .outputs
        .iter()
        .skip(1)
        .filter(|o| !o.is_empty())
        .cloned()
        .collect();
    if stats.iter().any(|o| read(o) > 0) || ln.outputs.first().is_none_or(String::is_empty) {
        return None;
    }
    let x = ln.input(0)?;
    let scale = ln.input(1)?;
    let bias = ln.input(2);
    let (dt, dims) = known(g, x)?;
    if !matches!(dt, DataType::F32 | DataType::F16 | DataType::BF16) || dims.is_empty() {
        return None;
    }
    let axis = ln.attr_int("axis").ok()?.unwrap_or(-1);
    let rank = dims.len() as i64;
    if axis != -1 && axis != rank - 1 {
        return None;
    }
    let ai = *producer.get(x)?;
    let add = &g.nodes[ai];
    if !is_default(add, "Add") || add.inputs.len() != 2 || ai >= li {
        return None;
    }
    let (p, q) = (add.input(0)?, add.input(1)?);
    let (pt, pd) = known(g, p)?;
    let (qt, qd) = known(g, q)?;
    if pt != dt || qt != dt {
        return None;
    }
    let last = dims.len() - 1;
    let (full, other) = if pd == dims && (qd == dims || is_row(&dims, last, &qd)) {
        (p, q)
    } else if qd == dims && is_row(&dims, last, &pd) {
        (q, p)
    } else {
        return None;
    };
    let mut outputs = vec![ln.outputs[0].clone()];
    let at = if read(x) <= 1 {
        li
    } else {
        outputs.push(x.to_string());
        let before_add = |v: &str| defined_at.get(v).is_some_and(|&d| d < ai);
        if before_add(scale) && bias.is_none_or(before_add) {
            ai
        } else if !g.nodes[ai + 1..li]
            .iter()
            .any(|n| n.inputs.iter().any(|i| i == x))
        {
            li
        } else {
            return None;
        }
    };
    let mut inputs = vec![full.to_string(), other.to_string(), scale.to_string()];
    inputs.extend(bias.map(str::to_string));
    let node = Node {
        name: ln.name.clone(),
        op_type: OP.to_string(),
        domain: KILN_DOMAIN.to_string(),
        inputs,
        outputs,
        attributes: ln.attributes.clone(),
        doc_string: format!("{} + {}", add.name, ln.name),
        index: ln.index,
    };
    Some(Match {
        add: ai,
        ln: li,
        at,
        node,
        dropped: stats,
    })
}

/// Rewrites every matching Add → LayerNormalization of `g`; returns how many.
pub fn rewrite(g: &mut Graph, _compute: DataType) -> Result<usize> {
    let readers = reader_counts(g);
    let mut producer: HashMap<&str, usize> = HashMap::new();
    // Position before which a value exists: graph inputs and initialisers at 0, a node's
    // outputs after the node.
    let mut defined_at: HashMap<&str, usize> = HashMap::new();
    for v in &g.inputs {
        defined_at.insert(&v.name, 0);
    }
    for t in &g.initializers {
        defined_at.insert(t.name(), 0);
    }
    for (i, n) in g.nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
            defined_at.insert(o, i + 1);
        }
    }
    let mut matches = Vec::new();
    let mut taken: HashSet<usize> = HashSet::new();
    for li in 0..g.nodes.len() {
        if let Some(m) = find(g, li, &readers, &producer, &defined_at)
            && taken.insert(m.add)
        {
            matches.push(m);
        }
    }
    if matches.is_empty() {
        return Ok(0);
    }
    let count = matches.len();
    let mut place: HashMap<usize, Node> = HashMap::new();
    let mut gone: HashSet<usize> = HashSet::new();
    let mut dropped: HashSet<String> = HashSet::new();
    for m in matches {
        gone.insert(m.add);
        gone.insert(m.ln);
        gone.remove(&m.at);
        dropped.extend(m.dropped);
        tracing::debug!(node = %m.node.name, outputs = m.node.outputs.len(), "Add + LayerNorm fused");
        place.insert(m.at, m.node);
    }
    let nodes = std::mem::take(&mut g.nodes);
    g.nodes = nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(i, n)| place.remove(&i).unwrap_or(n))
        .collect();
    g.value_info.retain(|v| !dropped.contains(&v.name));
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Dim;
    use kiln_onnx::{AttrValue, GraphBuilder, Tensor, ValueInfo};

    fn f32s(name: &str, dims: &[usize], seed: u64) -> Tensor {
        let mut r = fastrand::Rng::with_seed(seed);
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| r.f32() + 0.5).collect();
        Tensor::from_vec(name, dims.to_vec(), v).unwrap()
    }

    fn known_dims(d: &[usize]) -> Vec<Dim> {
        d.iter().map(|&v| Dim::Known(v)).collect()
    }

    /// x [2, 3, 8] (+ r of `r_dims`) → LayerNorm(axis) with optional extra readers of the sum
    /// and statistics outputs; shapes inferred, as after specialisation.
    fn graph(r_dims: &[usize], axis: i64, sum_read: bool, sum_out: bool, stats: bool) -> Graph {
        let mut b = GraphBuilder::new("t").opset(17);
        let x = b.input("x", DataType::F32, &known_dims(&[2, 3, 8]));
        let r = b.input("r", DataType::F32, &known_dims(r_dims));
        let ld = if axis == -1 { vec![8] } else { vec![3, 8] };
        let s = b.initializer(f32s("s", &ld, 1));
        let bi = b.initializer(f32s("bias", &ld, 2));
        let sum = b.node("Add", &[&x, &r]).output_named("sum");
        let outs: &[&str] = if stats { &["y", "mean", ""] } else { &["y"] };
        let o = b
            .node("LayerNormalization", &[&sum, &s, &bi])
            .attr("axis", AttrValue::Int(axis))
            .attr("epsilon", AttrValue::Float(1e-3))
            .outputs_named(outs);
        b.output_value(ValueInfo::unknown("y"));
        if sum_read {
            let _ = b.node("Relu", &[&sum]).output_named("z");
            b.output_value(ValueInfo::unknown("z"));
        }
        if sum_out {
            b.output_value(ValueInfo::unknown("sum"));
        }
        if stats {
            let _ = b.node("Neg", &[&o[1]]).output_named("m");
            b.output_value(ValueInfo::unknown("m"));
        }
        let mut g = b.build().unwrap();
        g.value_info.clear();
        kiln_onnx::infer_shapes(&mut g).unwrap();
        g
    }

    fn ops(g: &Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.op_type.as_str()).collect()
    }

    fn reference(g: &Graph, x: &Tensor, r: &Tensor) -> HashMap<String, Vec<f32>> {
        let interp = kiln_reference::Interpreter::new(g.clone()).unwrap();
        let feed = [("x", x), ("r", r)]
            .into_iter()
            .map(|(n, t)| {
                (
                    n.to_string(),
                    kiln_reference::Value::from_tensor(t).unwrap(),
                )
            })
            .collect();
        interp
            .run(feed)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_tensor("o").unwrap().to_f32_vec().unwrap()))
            .collect()
    }

    /// Every value a node reads or writes has concrete value info.
    fn all_typed(g: &Graph) {
        for n in &g.nodes {
            for v in n.inputs.iter().chain(&n.outputs).filter(|v| !v.is_empty()) {
                assert!(known(g, v).is_some(), "{v} untyped");
            }
        }
    }

    #[test]
    fn fuses_add_then_layer_norm() {
        let g = graph(&[2, 3, 8], -1, false, false, false);
        let mut f = g.clone();
        assert_eq!(rewrite(&mut f, DataType::F32).unwrap(), 1);
        assert_eq!(ops(&f), ["AddLayerNorm"]);
        let n = &f.nodes[0];
        assert_eq!(n.domain, KILN_DOMAIN);
        assert_eq!(n.inputs, ["x", "r", "s", "bias"]);
        assert_eq!(n.outputs, ["y"]);
        assert_eq!(n.attr_float("epsilon").unwrap(), Some(1e-3));
        all_typed(&f);
        crate::builder::patch::check_closed(&f).unwrap();
    }

    #[test]
    fn row_addend_goes_second() {
        // the row on the left: the fused node reads the full-size operand first
        let mut b = GraphBuilder::new("t").opset(17);
        let x = b.input("x", DataType::F16, &known_dims(&[4, 8]));
        let r = b.input("r", DataType::F16, &known_dims(&[1, 8]));
        let s = b.input("s", DataType::F16, &known_dims(&[8]));
        let sum = b.node("Add", &[&r, &x]).output_named("sum");
        let _ = b
            .node("LayerNormalization", &[&sum, &s])
            .outputs_named(&["y"]);
        b.output_value(ValueInfo::unknown("y"));
        let mut g = b.build().unwrap();
        assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 1);
        assert_eq!(g.nodes[0].inputs, ["x", "r", "s"]);
        // a [4, 1] addend broadcasts along the row: not taken
        let mut b = GraphBuilder::new("t").opset(17);
        let x = b.input("x", DataType::F32, &known_dims(&[4, 8]));
        let r = b.input("r", DataType::F32, &known_dims(&[4, 1]));
        let s = b.input("s", DataType::F32, &known_dims(&[8]));
        let sum = b.node("Add", &[&x, &r]).output_named("sum");
        let _ = b
            .node("LayerNormalization", &[&sum, &s])
            .outputs_named(&["y"]);
        b.output_value(ValueInfo::unknown("y"));
        let mut g = b.build().unwrap();
        assert_eq!(rewrite(&mut g, DataType::F32).unwrap(), 0);
    }

    #[test]
    fn not_taken_other_axis_or_statistics_read() {
        for g in [
            graph(&[2, 3, 8], 1, false, false, false),
            graph(&[2, 3, 8], -1, false, false, true),
        ] {
            let mut f = g.clone();
            assert_eq!(rewrite(&mut f, DataType::F32).unwrap(), 0);
            assert_eq!(f, g);
        }
        // an unread Mean output does not stop the fusion; its value info goes
        let mut g = graph(&[2, 3, 8], -1, false, false, false);
        g.nodes[1].outputs.push("unused_mean".into());
        g.value_info.clear();
        kiln_onnx::infer_shapes(&mut g).unwrap();
        assert!(g.value_info.iter().any(|v| v.name == "unused_mean"));
        assert_eq!(rewrite(&mut g, DataType::F32).unwrap(), 1);
        assert!(!g.value_info.iter().any(|v| v.name == "unused_mean"));
        assert_eq!(g.nodes[0].outputs, ["y"]);
    }

    #[test]
    fn sum_read_elsewhere_is_a_second_output() {
        for (sum_read, sum_out) in [(true, false), (false, true), (true, true)] {
            let g = graph(&[8], -1, sum_read, sum_out, false);
            let mut f = g.clone();
            assert_eq!(rewrite(&mut f, DataType::F32).unwrap(), 1);
            let fused = f.nodes.iter().find(|n| n.op_type == OP).unwrap();
            assert_eq!(fused.outputs, ["y", "sum"]);
            assert_eq!(fused.inputs, ["x", "r", "s", "bias"]);
            all_typed(&f);
            crate::builder::patch::check_closed(&f).unwrap();
            assert_eq!(f.outputs, g.outputs);
        }
    }

    #[test]
    fn sum_reader_between_and_scale_computed_late_is_refused() {
        // scale computed after the Add and the sum read between Add and LayerNorm: neither
        // place works
        let mut b = GraphBuilder::new("t").opset(17);
        let x = b.input("x", DataType::F32, &known_dims(&[4, 8]));
        let r = b.input("r", DataType::F32, &known_dims(&[4, 8]));
        let s0 = b.input("s0", DataType::F32, &known_dims(&[8]));
        let sum = b.node("Add", &[&x, &r]).output_named("sum");
        let z = b.node("Relu", &[&sum]).output_named("z");
        let s = b.node("Abs", &[&s0]).output_named("s");
        let _ = b
            .node("LayerNormalization", &[&sum, &s])
            .outputs_named(&["y"]);
        b.output_value(ValueInfo::unknown("y"));
        b.output_value(ValueInfo::unknown(z.name()));
        let mut g = b.build().unwrap();
        assert_eq!(rewrite(&mut g, DataType::F32).unwrap(), 0);
    }

    /// The fused graph with every AddLayerNorm written back as Add then LayerNormalization
    /// (the sum under its own name when the node writes it, a fresh one otherwise), so
    /// kiln-reference can run it.
    fn unfuse(f: &Graph) -> Graph {
        let mut g = f.clone();
        g.nodes.clear();
        for (k, n) in f.nodes.iter().enumerate() {
            if n.op_type != OP {
                g.nodes.push(n.clone());
                continue;
            }
            let sum = n
                .outputs
                .get(1)
                .cloned()
                .unwrap_or_else(|| format!("unfused_sum_{k}"));
            g.nodes.push(Node {
                name: format!("unfused_add_{k}"),
                op_type: "Add".into(),
                inputs: n.inputs[..2].to_vec(),
                outputs: vec![sum.clone()],
                ..Node::default()
            });
            let mut ln_inputs = vec![sum];
            ln_inputs.extend(n.inputs[2..].iter().cloned());
            g.nodes.push(Node {
                name: n.name.clone(),
                op_type: "LayerNormalization".into(),
                inputs: ln_inputs,
                outputs: vec![n.outputs[0].clone()],
                attributes: n.attributes.clone(),
                ..Node::default()
            });
        }
        g
    }

    #[test]
    fn fused_graph_means_what_the_original_does() {
        for (r_dims, sum_read, sum_out) in [
            (&[2usize, 3, 8][..], false, false),
            (&[8], true, true),
            (&[1, 1, 8], false, true),
        ] {
            let g = graph(r_dims, -1, sum_read, sum_out, false);
            let x = f32s("x", &[2, 3, 8], 3);
            let r = f32s("r", r_dims, 4);
            let want = reference(&g, &x, &r);
            let mut f = g.clone();
            assert_eq!(rewrite(&mut f, DataType::F32).unwrap(), 1);
            assert_eq!(ops(&f).iter().filter(|o| **o == "Add").count(), 0);
            let got = reference(&unfuse(&f), &x, &r);
            assert_eq!(want.len(), got.len());
            for (k, v) in &want {
                assert_eq!(&got[k], v, "{k}");
            }
        }
    }
}
