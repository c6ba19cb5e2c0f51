//! Fusion: groups of float elementwise ops become one `kiln::Elementwise` node, run as one
//! generated kernel (`kernels::nvrtc::fused`), so intermediate values never reach memory.
//!
//! Members: unary ops of `lower::UNARY_OPS` with a float formula (not Not/IsNaN; Clip only
//! with constant bounds) and the binary arithmetic ops Add/Sub/Mul/Div/Pow/Min/Max/PRelu,
//! every operand and result of a float type (f32/f16/bf16 storage). A group grows from its
//! last node (the root, whose output keeps its name) towards its producers: a producer joins
//! when its output has the group's full output shape, is not a graph output, and every reader
//! of it is already in the group (so no intermediate value is needed outside). Values from
//! outside the group are its inputs, in first-use order; they may broadcast to the output
//! shape and be read several times (GELU reads x twice). One-element float initialisers
//! become exact f32 literals of the expression. A lone elementwise node becomes a group of
//! one as well: the fused kernel is the vectorised path.
//!
//! Groups are found from the last node backwards (a max-heap over node positions, so each
//! producer is decided after all its readers): deterministic for a given graph. The
//! expression language is described in `kernels::nvrtc::fused`; the node carries it in the
//! string attribute [`EXPR_ATTR`].

use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use kiln_core::{DataType, Shape};
use kiln_onnx::{AttrValue, Attribute, Graph, Node};

use super::KILN_DOMAIN;
use crate::builder::lower::{UNARY_OPS, storage_dtype};
use crate::error::Result;
use crate::kernels::nvrtc::binary::BinaryOp;
use crate::kernels::nvrtc::fused::{self, MAX_INPUTS};
use crate::kernels::nvrtc::layout::broadcast_strides;
use crate::kernels::nvrtc::prelude::is_float;
use crate::kernels::nvrtc::{MAX_RANK, unary};
use crate::runtime::ops::{binary_op, unary_op};

/// The fused op's type in the kiln domain.
pub const OP: &str = "Elementwise";

/// The string attribute holding the fused expression.
pub const EXPR_ATTR: &str = "expr";

/// What one member node computes.
#[derive(Debug, Clone)]
struct Member {
    /// The op's token in the expression.
    token: String,
    /// The values it reads, in operand order (Clip's bounds are in the token).
    operands: Vec<String>,
    output: String,
}

/// Type and concrete shape of every value the graph declares.
type Values = HashMap<String, (DataType, Vec<usize>)>;

fn values(g: &Graph) -> Values {
    let mut m = Values::new();
    for vi in g.inputs.iter().chain(&g.value_info).chain(&g.outputs) {
        if let (Some(t), Some(d)) = (vi.dtype, vi.shape.as_ref().and_then(Shape::as_known)) {
            m.entry(vi.name.clone()).or_insert((t, d));
        }
    }
    for t in &g.initializers {
        m.insert(t.name().to_string(), (t.dtype(), t.dims().to_vec()));
    }
    m
}

/// One float value of a one-element initialiser the user cannot override, if `name` is one.
fn literal(g: &Graph, name: &str) -> Option<f32> {
    let t = g.initializer(name)?;
    let fixed = !g.overridable_initializers.iter().any(|o| o == name)
        && !g.inputs.iter().any(|v| v.name == name);
    if !fixed || t.len() != 1 || !is_float(t.dtype()) {
        return None;
    }
    t.to_f32_vec().ok()?.first().copied()
}

/// Clip's bound input `i`: `Some(None)` when absent, `Some(Some(v))` when constant, `None`
/// when computed at run time (not fusable).
fn clip_bound(g: &Graph, node: &Node, i: usize) -> Option<Option<f32>> {
    match node.input(i) {
        None | Some("") => Some(None),
        Some(name) => {
            let t = g.initializer(name)?;
            if g.inputs.iter().any(|v| v.name == name) || t.len() != 1 {
                return None;
            }
            Some(Some(*t.to_f32_vec().ok()?.first()?))
        }
    }
}

/// The member a node would be, if it is a fusable float elementwise op.
fn member(g: &Graph, vals: &Values, node: &Node, compute: DataType) -> Option<Member> {
    if !node.domain.is_empty() || node.outputs.len() != 1 || node.outputs[0].is_empty() {
        return None;
    }
    let op = node.op_type.as_str();
    let (token, operands) = if UNARY_OPS.contains(&op) {
        let clip = if op == "Clip" {
            (clip_bound(g, node, 1)?, clip_bound(g, node, 2)?)
        } else {
            (None, None)
        };
        let u = unary_op(node, clip).ok()??;
        let (name, a, b) = u.kernel();
        if unary::float_formula(name).is_none() || !unary::supports(&u, DataType::F32) {
            return None;
        }
        (
            fused::unary_token(name, a, b),
            vec![node.input(0)?.to_string()],
        )
    } else {
        let b = binary_op(op)?;
        use BinaryOp as B;
        let arith = matches!(
            b,
            B::Add | B::Sub | B::Mul | B::Div | B::Pow | B::Min | B::Max | B::PRelu
        );
        if !arith || node.inputs.len() != 2 || node.inputs.iter().any(String::is_empty) {
            return None;
        }
        (fused::binary_token(b), node.inputs.clone())
    };
    let (odt, oshape) = vals.get(&node.outputs[0])?;
    let float = |d: DataType| is_float(d) && is_float(storage_dtype(d, compute));
    if !float(*odt) || oshape.len() > MAX_RANK {
        return None;
    }
    for o in &operands {
        let (dt, shape) = vals.get(o)?;
        if !float(*dt) || broadcast_strides(shape, oshape).is_none() {
            return None;
        }
    }
    Some(Member {
        token,
        operands,
        output: node.outputs[0].clone(),
    })
}

/// Writes the postfix expression of `value` (see `kernels::nvrtc::fused`).
struct Emitter<'a> {
    g: &'a Graph,
    /// Members by the value they produce.
    by_output: HashMap<&'a str, &'a Member>,
    tokens: Vec<String>,
    /// Op results already computed, by value: their `t<k>` index.
    temps: HashMap<String, usize>,
    ops: usize,
    inputs: Vec<String>,
}

impl Emitter<'_> {
    fn emit(&mut self, value: &str) {
        if let Some(m) = self.by_output.get(value).copied() {
            if let Some(&t) = self.temps.get(value) {
                self.tokens.push(format!("t{t}"));
                return;
            }
            for o in &m.operands {
                self.emit(o);
            }
            self.tokens.push(m.token.clone());
            self.temps.insert(value.to_string(), self.ops);
            self.ops += 1;
        } else if let Some(v) = literal(self.g, value) {
            self.tokens.push(fused::literal(v));
        } else {
            let k = match self.inputs.iter().position(|i| i == value) {
                Some(k) => k,
                None => {
                    self.inputs.push(value.to_string());
                    self.inputs.len() - 1
                }
            };
            self.tokens.push(format!("i{k}"));
        }
    }
}

/// The expression and inputs of a group with root output `root` and `members`.
fn expression(g: &Graph, members: &[&Member], root: &str) -> (String, Vec<String>) {
    let mut e = Emitter {
        g,
        by_output: members.iter().map(|m| (m.output.as_str(), *m)).collect(),
        tokens: Vec::new(),
        temps: HashMap::new(),
        ops: 0,
        inputs: Vec::new(),
    };
    e.emit(root);
    (e.tokens.join(" "), e.inputs)
}

/// Rewrites every matching group of `g`; returns how many.
pub fn rewrite(g: &mut Graph, compute: DataType) -> Result<usize> {
    let vals = values(g);
    let members: Vec<Option<Member>> = g
        .nodes
        .iter()
        .map(|n| member(g, &vals, n, compute))
        .collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
        }
        for x in n.inputs.iter().filter(|x| !x.is_empty()) {
            let r = readers.entry(x.as_str()).or_default();
            if r.last() != Some(&i) {
                r.push(i);
            }
        }
    }
    let graph_outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut assigned = vec![false; g.nodes.len()];
    // (root position, member positions, fused node)
    let mut groups: Vec<(usize, BTreeSet<usize>, Node)> = Vec::new();
    for root in (0..g.nodes.len()).rev() {
        let Some(rm) = &members[root] else { continue };
        if assigned[root] {
            continue;
        }
        let shape = &vals[&rm.output].1;
        let mut set = BTreeSet::from([root]);
        let mut heap: BinaryHeap<usize> = BinaryHeap::new();
        let push_producers = |heap: &mut BinaryHeap<usize>, m: &Member| {
            for o in &m.operands {
                if let Some(&p) = producer.get(o.as_str()) {
                    heap.push(p);
                }
            }
        };
        push_producers(&mut heap, rm);
        while let Some(p) = heap.pop() {
            if set.contains(&p) || assigned[p] {
                continue;
            }
            let Some(pm) = &members[p] else { continue };
            let joins = vals[&pm.output].1 == *shape
                && !graph_outputs.contains(pm.output.as_str())
                && readers
                    .get(pm.output.as_str())
                    .is_some_and(|r| r.iter().all(|x| set.contains(x)));
            if joins {
                set.insert(p);
                push_producers(&mut heap, pm);
            }
        }
        let mut group: Vec<&Member> = set.iter().filter_map(|&i| members[i].as_ref()).collect();
        let (mut expr, mut inputs) = expression(g, &group, &rm.output);
        if inputs.len() > MAX_INPUTS {
            // Too many inputs for one kernel: the root alone (its producers stay free).
            set = BTreeSet::from([root]);
            group = vec![rm];
            (expr, inputs) = expression(g, &group, &rm.output);
        }
        for &i in &set {
            assigned[i] = true;
        }
        if inputs.is_empty() {
            // Only literals: nothing to read, left to the single-op kernels.
            continue;
        }
        let r = &g.nodes[root];
        let node = Node {
            name: r.name.clone(),
            op_type: OP.to_string(),
            domain: KILN_DOMAIN.to_string(),
            inputs,
            outputs: vec![rm.output.clone()],
            attributes: vec![Attribute::new(
                EXPR_ATTR,
                AttrValue::String(expr.into_bytes()),
            )],
            index: r.index,
            ..Node::default()
        };
        groups.push((root, set, node));
    }
    let count = groups.len();
    if count == 0 {
        return Ok(0);
    }
    let mut internal: HashSet<String> = HashSet::new();
    let mut drop = vec![false; g.nodes.len()];
    let mut replace: HashMap<usize, Node> = HashMap::new();
    for (root, set, node) in groups {
        for &i in &set {
            drop[i] = true;
            if i != root {
                internal.extend(g.nodes[i].outputs.iter().cloned());
            }
        }
        replace.insert(root, node);
    }
    let old = std::mem::take(&mut g.nodes);
    for (i, n) in old.into_iter().enumerate() {
        match replace.remove(&i) {
            Some(f) => g.nodes.push(f),
            None if drop[i] => {}
            None => g.nodes.push(n),
        }
    }
    g.value_info.retain(|v| !internal.contains(&v.name));
    tracing::debug!(groups = count, "elementwise chains fused");
    Ok(count)
}

#[cfg(test)]
mod tests {
    use kiln_core::Dim;
    use kiln_onnx::builder::Value;
    use kiln_onnx::{GraphBuilder, Tensor};

    use super::*;
    use crate::builder::lower;
    use crate::runtime::ops::modules_for;

    fn dims(d: &[usize]) -> Vec<Dim> {
        d.iter().map(|&v| Dim::Known(v)).collect()
    }

    /// A graph made by `f` (which returns the outputs), specialised (value_info filled).
    fn graph(f: impl FnOnce(&mut GraphBuilder) -> Vec<Value>) -> Graph {
        let mut b = GraphBuilder::new("t").opset(17);
        for o in f(&mut b) {
            b.output_value(kiln_onnx::ValueInfo::unknown(o.name()));
        }
        let g = b.build().unwrap();
        lower::specialize(&g, &[]).unwrap()
    }

    fn scalar(b: &mut GraphBuilder, name: &str, v: f32) -> Value {
        b.initializer(Tensor::scalar(name, v))
    }

    fn fused(g: &Graph) -> Vec<&Node> {
        g.nodes.iter().filter(|n| n.op_type == OP).collect()
    }

    fn expr_of(n: &Node) -> String {
        n.attr_string(EXPR_ATTR).unwrap().unwrap()
    }

    /// The rewritten graph lowers at every storage type and each fused step has its module.
    fn lowers(g: &Graph) {
        for compute in [DataType::F32, DataType::F16, DataType::BF16] {
            let p = lower::lower(g, compute).unwrap();
            for step in &p.steps {
                let m = modules_for(step, &p).unwrap();
                if let lower::StepKind::Node(n) = &step.kind
                    && n.op_type == OP
                {
                    assert_eq!(m.len(), 1);
                    assert!(m[0].name.starts_with("ew_"));
                }
            }
        }
    }

    /// BERT's GELU after the bias add: x + b -> Div(sqrt 2) -> Erf -> Add 1 -> Mul -> Mul 0.5.
    fn gelu() -> Graph {
        graph(|b| {
            let x = b.input("x", DataType::F32, &dims(&[4, 8]));
            let bias = b.initializer(Tensor::from_vec("bias", vec![8], vec![0.5f32; 8]).unwrap());
            let (s2, one, half) = (
                scalar(b, "sqrt2", std::f32::consts::SQRT_2),
                scalar(b, "one", 1.0),
                scalar(b, "half", 0.5),
            );
            let h = b.node("Add", &[&x, &bias]).output();
            let d = b.node("Div", &[&h, &s2]).output();
            let e = b.node("Erf", &[&d]).output();
            let a = b.node("Add", &[&e, &one]).output();
            let m = b.node("Mul", &[&h, &a]).output();
            vec![b.node("Mul", &[&m, &half]).output_named("y")]
        })
    }

    #[test]
    fn gelu_chain_becomes_one_node() {
        let mut g = gelu();
        assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!((n.op_type.as_str(), n.domain.as_str()), (OP, KILN_DOMAIN));
        assert_eq!(n.inputs, vec!["x", "bias"]);
        assert_eq!(n.outputs, vec!["y"]);
        assert_eq!(
            expr_of(n),
            "i0 i1 b:add t0 c3fb504f3 b:div u:erf:00000000:00000000 c3f800000 b:add b:mul \
             c3f000000 b:mul"
        );
        assert!(fused::Expr::parse(&expr_of(n)).is_ok());
        // Internal values lose their value_info; the output keeps its own.
        assert_eq!(g.value_info.iter().filter(|v| v.name != "y").count(), 0);
        lowers(&g);
        // Deterministic.
        let (mut a, mut b) = (gelu(), gelu());
        rewrite(&mut a, DataType::F32).unwrap();
        rewrite(&mut b, DataType::F32).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn values_read_outside_end_a_group() {
        // e is read by Relu and by ReduceSum: Exp and Relu are separate groups.
        let mut g = graph(|b| {
            let a = b.input("a", DataType::F32, &dims(&[3, 5]));
            let e = b.node("Exp", &[&a]).output_named("e");
            let r = b.node("Relu", &[&e]).output_named("r");
            let s = b
                .node("ReduceSum", &[&e])
                .attr("keepdims", 0i64)
                .output_named("s");
            vec![r, s]
        });
        assert_eq!(rewrite(&mut g, DataType::F32).unwrap(), 2);
        let f = fused(&g);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].inputs.clone(), f[0].outputs.clone()),
            (vec!["a".into()], vec!["e".into()])
        );
        assert_eq!(
            (f[1].inputs.clone(), f[1].outputs.clone()),
            (vec!["e".into()], vec!["r".into()])
        );
        assert!(
            g.nodes
                .iter()
                .any(|n| n.op_type == "ReduceSum" && n.inputs[0] == "e")
        );
        assert!(g.value_info.iter().any(|v| v.name == "e"));
        lowers(&g);

        // A graph output in the middle of a chain stays a value.
        let mut g = graph(|b| {
            let a = b.input("a", DataType::F32, &dims(&[6]));
            let c = b.input("c", DataType::F32, &dims(&[6]));
            let t = b.node("Add", &[&a, &c]).output_named("t");
            let u = b.node("Exp", &[&t]).output_named("u");
            let w = b.node("Neg", &[&u]).output_named("w");
            vec![t, w]
        });
        assert_eq!(rewrite(&mut g, DataType::F32).unwrap(), 2);
        let f = fused(&g);
        assert_eq!(f[0].outputs, vec!["t"]);
        assert_eq!(f[1].inputs, vec!["t"]);
        assert_eq!(
            expr_of(f[1]),
            "i0 u:exp:00000000:00000000 u:neg:00000000:00000000"
        );
        lowers(&g);
    }

    #[test]
    fn broadcast_inputs_and_shape_changes() {
        // Attention scores / scale + mask [b, 1, 1, s], then Softmax (not elementwise).
        let mut g = graph(|b| {
            let x = b.input("scores", DataType::F32, &dims(&[2, 3, 4, 4]));
            let m = b.input("mask", DataType::F32, &dims(&[2, 1, 1, 4]));
            let s = scalar(b, "scale", 8.0);
            let d = b.node("Div", &[&x, &s]).output();
            let a = b.node("Add", &[&d, &m]).output();
            vec![
                b.node("Softmax", &[&a])
                    .attr("axis", -1i64)
                    .output_named("p"),
            ]
        });
        assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 1);
        let f = fused(&g);
        assert_eq!(f[0].inputs, vec!["scores", "mask"]);
        assert_eq!(expr_of(f[0]), "i0 c41000000 b:div i1 b:add");
        assert_eq!(g.nodes.last().unwrap().op_type, "Softmax");
        lowers(&g);

        // [4, 1] + [1, 5] -> Relu joins (same output shape); a Relu on [5] feeding a [4, 5]
        // Add does not (its output is smaller than the group's).
        let mut g = graph(|b| {
            let p = b.input("p", DataType::F32, &dims(&[4, 1]));
            let q = b.input("q", DataType::F32, &dims(&[1, 5]));
            let c = b.input("c", DataType::F32, &dims(&[5]));
            let s = b.node("Add", &[&p, &q]).output();
            let r = b.node("Relu", &[&s]).output();
            let rc = b.node("Relu", &[&c]).output();
            vec![b.node("Mul", &[&r, &rc]).output_named("y")]
        });
        assert_eq!(rewrite(&mut g, DataType::F32).unwrap(), 2);
        let f = fused(&g);
        assert_eq!(f[0].inputs, vec!["c"]);
        assert_eq!(f[1].inputs.len(), 3);
        assert_eq!(f[1].inputs[..2], ["p".to_string(), "q".to_string()]);
        assert_eq!(
            expr_of(f[1]),
            "i0 i1 b:add u:relu:00000000:00000000 i2 b:mul"
        );
        lowers(&g);
    }

    #[test]
    fn inputs_read_twice_and_clip_bounds() {
        let mut g = graph(|b| {
            let x = b.input("x", DataType::F32, &dims(&[2, 3]));
            let lo = scalar(b, "lo", 0.0);
            let hi = scalar(b, "hi", 6.0);
            let sq = b.node("Mul", &[&x, &x]).output();
            let c = b.node("Clip", &[&sq, &lo, &hi]).output();
            let l = b.node("LeakyRelu", &[&x]).attr("alpha", 0.25f32).output();
            vec![b.node("Sub", &[&c, &l]).output_named("y")]
        });
        assert_eq!(rewrite(&mut g, DataType::BF16).unwrap(), 1);
        assert_eq!(g.nodes[0].inputs, vec!["x"]);
        assert_eq!(
            expr_of(&g.nodes[0]),
            format!(
                "i0 i0 b:mul u:clip:00000000:40c00000 i0 u:leaky_relu:{:08x}:00000000 b:sub",
                0.25f32.to_bits()
            )
        );
        lowers(&g);

        // A Clip whose bound is computed at run time is left alone.
        let mut g = graph(|b| {
            let x = b.input("x", DataType::F32, &dims(&[2, 3]));
            let hi = b.input("hi", DataType::F32, &[]);
            vec![
                b.node("Clip", &[&x, &Value::absent(), &hi])
                    .output_named("y"),
            ]
        });
        assert_eq!(rewrite(&mut g, DataType::F32).unwrap(), 0);
        assert_eq!(g.nodes[0].op_type, "Clip");
    }

    #[test]
    fn integer_and_bool_ops_are_untouched() {
        let mut g = graph(|b| {
            let x = b.input("x", DataType::I64, &dims(&[4]));
            let y = b.input("f", DataType::F32, &dims(&[4]));
            let s = b.node("Add", &[&x, &x]).output();
            let m = b.node("Mul", &[&s, &x]).output_named("m");
            let n = b.node("IsNaN", &[&y]).output();
            let k = b.node("Not", &[&n]).output_named("k");
            let e = b.node("Equal", &[&y, &y]).output_named("e");
            vec![m, k, e]
        });
        let before = g.clone();
        assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 0);
        assert_eq!(g, before);
    }
}
