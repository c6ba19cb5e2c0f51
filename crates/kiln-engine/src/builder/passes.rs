//! Graph passes of the builder. Each pass looks at the graph and returns a [`GraphPatch`];
//! [`optimize`] runs them in order and reports what changed.

use std::collections::HashSet;

use kiln_onnx::{AttrValue, Attribute, Graph, Node, Tensor};

use super::patch::{FreshNames, GraphPatch, f32_weight, reader_counts};
use crate::error::Result;

/// What [`optimize`] did, pass by pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PassReport {
    pub folded_nodes: usize,
    /// Variadic Sum/Min/Max/Mean nodes rewritten as binary steps.
    #[serde(default)]
    pub variadic_rewrites: usize,
    pub removed_identities: usize,
    pub folded_batchnorms: usize,
    /// MatMul + bias Add pairs rewritten as a Gemm with a bias epilogue.
    #[serde(default)]
    pub fused_matmul_bias: usize,
    /// Conv / Gemm nodes that took their residual Add and Relu as epilogues.
    #[serde(default)]
    pub fused_epilogues: usize,
    pub dead_nodes: usize,
}

/// Constant folding (kiln-reference), variadic ops as binary steps, Identity/Dropout removal,
/// BatchNorm folded into the Conv or Gemm before it, fusions ([`super::fuse`]) and dead-node
/// elimination.
pub fn optimize(graph: &Graph) -> Result<(Graph, PassReport)> {
    let mut report = PassReport::default();
    let (mut g, fold) = kiln_reference::fold_constants(graph)?;
    report.folded_nodes = fold.folded_nodes;
    let p = variadic_to_binary(&g);
    report.variadic_rewrites = p.touched_nodes();
    g = p.apply(&g)?;
    let p = remove_identities(&g);
    report.removed_identities = p.touched_nodes();
    g = p.apply(&g)?;
    let p = fold_batchnorm(&g)?;
    report.folded_batchnorms = p.touched_nodes() / 2;
    g = p.apply(&g)?;
    let p = super::fuse::matmul_bias_to_gemm(&g)?;
    report.fused_matmul_bias = p.touched_nodes() / 2;
    g = p.apply(&g)?;
    g = super::fuse::conv_gemm_epilogues(&g)?;
    report.fused_epilogues = g
        .nodes
        .iter()
        .filter(|n| n.domain == kiln_onnx::MS_DOMAIN && n.op_type.starts_with("Fused"))
        .count();
    let p = dead_nodes(&g);
    report.dead_nodes = p.touched_nodes();
    g = p.apply(&g)?;
    tracing::debug!(?report, nodes = g.nodes.len(), "builder passes done");
    Ok((g, report))
}

/// Variadic Sum / Min / Max / Mean (any number of inputs, numpy broadcasting) as the binary
/// steps the kernels run, folded left to right as kiln-reference does: one input becomes an
/// Identity; `n` inputs become `n - 1` binary nodes (Sum and Mean as Add) through fresh
/// values; Mean then divides by `n`, a scalar initialiser of the input's element type (so
/// integer Means truncate, as the reference's). Sum/Min/Max of two inputs stay as they are
/// (the binary kernels take them); a Mean whose element type is unknown stays too, and the
/// lowering reports it.
pub fn variadic_to_binary(graph: &Graph) -> GraphPatch {
    let mut p = GraphPatch::new("variadic-to-binary");
    let mut names = FreshNames::of(graph);
    for (i, n) in graph.nodes.iter().enumerate() {
        let op = n.op_type.as_str();
        if !n.domain.is_empty() || !matches!(op, "Sum" | "Min" | "Max" | "Mean") {
            continue;
        }
        let ins: Vec<&String> = n.inputs.iter().filter(|s| !s.is_empty()).collect();
        let Some(out) = n.output(0) else { continue };
        if ins.is_empty() || (op != "Mean" && ins.len() == 2) {
            continue;
        }
        let step = |op_type: &str, k: usize, inputs: Vec<String>, output: String| Node {
            name: format!("{}@{}{k}", n.name, op_type.to_lowercase()),
            op_type: op_type.into(),
            inputs,
            outputs: vec![output],
            index: n.index,
            ..Node::default()
        };
        if ins.len() == 1 {
            p.replace_node(i, step("Identity", 0, vec![ins[0].clone()], out.into()));
            continue;
        }
        // Mean's divisor: `n` in the input's element type.
        let count = if op == "Mean" {
            let dtype = graph
                .value(ins[0])
                .and_then(|v| v.dtype)
                .or_else(|| graph.initializer(ins[0]).map(Tensor::dtype));
            let bytes = dtype.and_then(|t| {
                crate::runtime::ops::fill_bytes(t, ins.len() as f64)
                    .ok()
                    .map(|b| (t, b))
            });
            let Some((dtype, bytes)) = bytes else {
                continue;
            };
            let name = names.fresh(&format!("{out}@count"));
            let Ok(t) = Tensor::from_bytes(&name, dtype, Vec::new(), bytes) else {
                continue;
            };
            Some(t)
        } else {
            None
        };
        let bin = if op == "Min" || op == "Max" {
            op
        } else {
            "Add"
        };
        let last = if count.is_some() {
            names.fresh(&format!("{out}@sum"))
        } else {
            out.to_string()
        };
        let mut nodes = Vec::with_capacity(ins.len());
        let mut acc = ins[0].clone();
        for (k, x) in ins[1..].iter().enumerate() {
            let o = if k + 2 == ins.len() {
                last.clone()
            } else {
                names.fresh(&format!("{out}@{}{k}", bin.to_lowercase()))
            };
            nodes.push(step(bin, k, vec![acc, (*x).clone()], o.clone()));
            acc = o;
        }
        if let Some(c) = count {
            nodes.push(step("Div", 0, vec![acc, c.name().to_string()], out.into()));
            p.add_initializer(c);
        }
        p.expand_node(i, nodes);
    }
    p
}

/// Identity and Dropout (inference: the identity; its mask output unread) removed by
/// rewiring their readers to their input. Kept when their output is a graph output.
pub fn remove_identities(graph: &Graph) -> GraphPatch {
    let mut p = GraphPatch::new("identity-removal");
    let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    let readers = reader_counts(graph);
    for (i, n) in graph.nodes.iter().enumerate() {
        let is_identity = match n.op_type.as_str() {
            "Identity" => true,
            "Dropout" => n.output(1).is_none_or(|m| !readers.contains_key(m)),
            _ => false,
        };
        let (Some(input), Some(output)) = (n.input(0), n.output(0)) else {
            continue;
        };
        if is_identity && n.domain.is_empty() && !outputs.contains(output) {
            p.remove_node(i);
            p.rewire(output, input);
        }
    }
    p
}

/// Nodes none of whose outputs is read (by a node or as a graph output), removed until none
/// is left; initialisers nothing reads are dropped.
pub fn dead_nodes(graph: &Graph) -> GraphPatch {
    let mut p = GraphPatch::new("dead-node-elimination");
    let mut live: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    for (i, n) in graph.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| live.contains(o.as_str())) {
            live.extend(n.inputs.iter().map(String::as_str));
        } else {
            p.remove_node(i);
        }
    }
    for t in &graph.initializers {
        if !live.contains(t.name()) && !graph.overridable_initializers.iter().any(|o| o == t.name())
        {
            p.drop_initializer(t.name());
        }
    }
    p
}

fn f32_init(graph: &Graph, name: Option<&str>) -> Option<Vec<f32>> {
    f32_weight(graph, name?)?.to_f32_vec().ok()
}

/// BatchNormalization whose input is produced by a Conv (or a Gemm, features on axis 1) read
/// by nothing else, with every parameter an f32 initialiser: the scale and shift move into the
/// producer's weights and bias, and the BatchNormalization disappears.
pub fn fold_batchnorm(graph: &Graph) -> Result<GraphPatch> {
    let mut p = GraphPatch::new("batchnorm-folding");
    let readers = reader_counts(graph);
    let producer: std::collections::HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut used: HashSet<usize> = HashSet::new();
    for (bi, bn) in graph.nodes.iter().enumerate() {
        if bn.op_type != "BatchNormalization" || !bn.domain.is_empty() {
            continue;
        }
        if bn.outputs.iter().skip(1).any(|o| !o.is_empty())
            || bn.attr_int("training_mode")?.unwrap_or(0) != 0
        {
            continue;
        }
        let (Some(x), Some(y)) = (bn.input(0), bn.output(0)) else {
            continue;
        };
        let Some(&pi) = producer.get(x) else { continue };
        let prod = &graph.nodes[pi];
        if readers.get(x) != Some(&1) || used.contains(&pi) || !prod.domain.is_empty() {
            continue;
        }
        let params: Option<Vec<Vec<f32>>> = (1..5).map(|k| f32_init(graph, bn.input(k))).collect();
        let Some(params) = params else { continue };
        let eps = bn.attr_float("epsilon")?.unwrap_or(1e-5);
        let c = params[0].len();
        if params.iter().any(|v| v.len() != c) {
            continue;
        }
        let scale: Vec<f32> = (0..c)
            .map(|k| params[0][k] / (params[3][k] + eps).sqrt())
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|k| params[1][k] - params[2][k] * scale[k])
            .collect();
        let folded = match prod.op_type.as_str() {
            "Conv" => fold_into_conv(graph, prod, &scale, &shift)?,
            "Gemm" => fold_into_gemm(graph, prod, &scale, &shift)?,
            _ => None,
        };
        let Some((mut node, w, b)) = folded else {
            continue;
        };
        node.outputs[0] = y.to_string();
        p.replace_node(pi, node);
        p.remove_node(bi);
        p.add_initializer(w);
        p.add_initializer(b);
        used.insert(pi);
    }
    Ok(p)
}

fn tensor(name: String, dims: Vec<usize>, v: &[f32]) -> Result<Tensor> {
    Ok(Tensor::from_vec(name, dims, v.to_vec())?)
}

/// New Conv with W' = W * scale[oc], B' = B * scale + shift.
fn fold_into_conv(
    graph: &Graph,
    conv: &Node,
    scale: &[f32],
    shift: &[f32],
) -> Result<Option<(Node, Tensor, Tensor)>> {
    let Some(wt) = conv.input(1).and_then(|w| graph.initializer(w)) else {
        return Ok(None);
    };
    let Some(mut w) = f32_init(graph, conv.input(1)) else {
        return Ok(None);
    };
    let oc = wt.dims().first().copied().unwrap_or(0);
    if oc != scale.len() || oc == 0 {
        return Ok(None);
    }
    let bias = match conv.input(2) {
        Some(b) => match f32_init(graph, Some(b)) {
            Some(v) if v.len() == oc => v,
            _ => return Ok(None),
        },
        None => vec![0.0; oc],
    };
    let per = w.len() / oc;
    for (k, chunk) in w.chunks_mut(per).enumerate() {
        chunk.iter_mut().for_each(|v| *v *= scale[k]);
    }
    let b: Vec<f32> = (0..oc).map(|k| bias[k] * scale[k] + shift[k]).collect();
    let stem = unique_stem(graph, conv);
    let (wn, bn) = (
        format!("{stem}.bnfold.weight"),
        format!("{stem}.bnfold.bias"),
    );
    let mut node = conv.clone();
    node.inputs.truncate(1);
    node.inputs.push(wn.clone());
    node.inputs.push(bn.clone());
    Ok(Some((
        node,
        tensor(wn, wt.dims().to_vec(), &w)?,
        tensor(bn, vec![oc], &b)?,
    )))
}

/// New Gemm (2-D output, features on axis 1): B' = B * scale per output column,
/// C' = (beta * C) * scale + shift, beta = 1.
fn fold_into_gemm(
    graph: &Graph,
    gemm: &Node,
    scale: &[f32],
    shift: &[f32],
) -> Result<Option<(Node, Tensor, Tensor)>> {
    let Some(bt) = gemm.input(1).and_then(|w| graph.initializer(w)) else {
        return Ok(None);
    };
    let Some(mut w) = f32_init(graph, gemm.input(1)) else {
        return Ok(None);
    };
    let trans_b = gemm.attr_int("transB")?.unwrap_or(0) != 0;
    let beta = gemm.attr_float("beta")?.unwrap_or(1.0);
    let dims = bt.dims();
    if dims.len() != 2 {
        return Ok(None);
    }
    let (k, n) = if trans_b {
        (dims[1], dims[0])
    } else {
        (dims[0], dims[1])
    };
    if n != scale.len() {
        return Ok(None);
    }
    let c = match gemm.input(2) {
        Some(name) => match (graph.initializer(name), f32_init(graph, Some(name))) {
            (Some(t), Some(v)) if t.dims() == [n] || t.dims() == [1, n] => v,
            (Some(t), Some(v)) if t.len() == 1 => vec![v[0]; n],
            _ => return Ok(None),
        },
        None => vec![0.0; n],
    };
    for r in 0..k {
        for (col, s) in scale.iter().enumerate() {
            let idx = if trans_b { col * k + r } else { r * n + col };
            w[idx] *= s;
        }
    }
    let cb: Vec<f32> = (0..n).map(|j| beta * c[j] * scale[j] + shift[j]).collect();
    let stem = unique_stem(graph, gemm);
    let (wn, cn) = (
        format!("{stem}.bnfold.weight"),
        format!("{stem}.bnfold.bias"),
    );
    let mut node = gemm.clone();
    node.inputs.truncate(1);
    node.inputs.push(wn.clone());
    node.inputs.push(cn.clone());
    node.attributes.retain(|a| a.name != "beta");
    node.attributes
        .push(Attribute::new("beta", AttrValue::Float(1.0)));
    Ok(Some((
        node,
        tensor(wn, dims.to_vec(), &w)?,
        tensor(cn, vec![n], &cb)?,
    )))
}

fn unique_stem(graph: &Graph, node: &Node) -> String {
    let base = if node.name.is_empty() {
        format!("node{}", node.index)
    } else {
        node.name.clone()
    };
    let mut stem = base.clone();
    let mut k = 0;
    while graph
        .initializer(&format!("{stem}.bnfold.weight"))
        .is_some()
    {
        k += 1;
        stem = format!("{base}.{k}");
    }
    stem
}
