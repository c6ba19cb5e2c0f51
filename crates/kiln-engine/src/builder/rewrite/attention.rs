//! Fusion: scaled dot-product attention as one [`OP`] node of the kiln domain, run by the
//! flash-attention kernels of `kernels::nvrtc::attention` (the scores never reach memory).
//!
//! Matched on the specialised graph, from each `Softmax`:
//!
//! ```text
//! S  = MatMul(Q4, K4t)            Q4 [B, H, Sq, D], K4t [B, H, D, Sk]
//! S' = Div(S, c) | Mul(S, c)      optional, c a one-element float constant (several allowed)
//! S''= Add(S', M) | Add(M, S')    optional, M broadcasting to [B, H, Sq, Sk]
//! P  = Softmax(S'', last axis)    opset < 13 flattens from `axis`: the same when axis = 3
//! O  = MatMul(P, V4)              V4 [B, H, Sk, D]
//! ```
//!
//! Every intermediate (S, S', S'', P) must have exactly one reader and not be a graph output.
//! Walking back from Q4, K4t and V4 (and forward from O), nodes whose output has that one
//! reader are absorbed too, as strides and a scale:
//! - `Transpose` (BERT's legacy export: `Reshape [B, S, H, D]` → `Transpose [0, 2, 1, 3]` for
//!   Q and V, `[0, 2, 3, 1]` for K; `[0, 2, 1, 3]` after O);
//! - `Mul`/`Div` by a one-element constant before the MatMul on the Q or K side (the scale
//!   applied to Q, or PyTorch's `scaled_dot_product_attention` export, which multiplies Q
//!   and Kᵀ each by `sqrt(scale)`);
//! - PyTorch dynamo's transpose of K's last two axes through 3-D:
//!   `Reshape [B·H, Sk, D]` → `Transpose [0, 2, 1]` → `Reshape [B, H, D, Sk]`.
//!
//! The fused node reads `(q, k, v[, mask])`, the values before the absorbed nodes, and writes
//! the last absorbed value (name and `value_info` kept). Attributes: [`ATTR_SCALE`] (the
//! product of the absorbed scales) and, per operand, which stored axis holds each logical
//! `[B, H, S, D]` axis ([`ATTR_Q_PERM`], [`ATTR_K_PERM`], [`ATTR_V_PERM`], [`ATTR_O_PERM`]; K
//! in `[B, H, Sk, D]` order). The group is fused only when the kernels take it: storage type
//! f32/f16/bf16 for every operand, D a multiple of 8 up to 128, and the D axis the last
//! (contiguous) axis of each stored tensor.

use std::collections::{HashMap, HashSet};

use kiln_core::{DataType, Shape};
use kiln_onnx::{AttrValue, Attribute, Graph, Node};

use super::KILN_DOMAIN;
use crate::builder::lower::storage_dtype;
use crate::builder::patch::{FreshNames, GraphPatch};
use crate::error::Result;
use crate::kernels::nvrtc::attention::{self as kernel, Operand};

/// The fused op's type in the kiln domain.
pub const OP: &str = "Attention";
/// FLOAT: the factor of Q Kᵀ.
pub const ATTR_SCALE: &str = "scale";
/// INTS (4): stored axis of input q holding logical axis i of `[B, H, Sq, D]`.
pub const ATTR_Q_PERM: &str = "q_perm";
/// INTS (4): stored axis of input k holding logical axis i of `[B, H, Sk, D]`.
pub const ATTR_K_PERM: &str = "k_perm";
/// INTS (4): stored axis of input v holding logical axis i of `[B, H, Sk, D]`.
pub const ATTR_V_PERM: &str = "v_perm";
/// INTS (4): axis of the output holding logical axis i of `[B, H, Sq, D]`.
pub const ATTR_O_PERM: &str = "o_perm";

/// Rewrites every matching group of `g` (an engine storing `compute`); returns how many.
pub fn rewrite(g: &mut Graph, compute: DataType) -> Result<usize> {
    // f32/tf32 engines keep the cuBLASLt path: the CUDA-core kernel (stage 1) ran BERT-base's
    // b128 attention at 0.735 ms per layer on an H200, far from the tensor-core one.
    if !matches!(compute, DataType::F16 | DataType::BF16) {
        return Ok(0);
    }
    let m = Matcher::new(g, compute);
    let mut patch = GraphPatch::new("attention");
    let mut names = FreshNames::of(g);
    let mut used: HashSet<usize> = HashSet::new();
    let mut count = 0;
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type != "Softmax" || !n.domain.is_empty() {
            continue;
        }
        let Some(found) = m.match_at(i) else { continue };
        if found.absorbed.iter().any(|x| used.contains(x)) {
            continue;
        }
        let last = found.last;
        let stem = if g.nodes[last].name.is_empty() {
            format!("attention{i}")
        } else {
            g.nodes[last].name.clone()
        };
        let node = Node {
            name: names.fresh(&format!("{stem}/kiln_attention")),
            op_type: OP.to_string(),
            domain: KILN_DOMAIN.to_string(),
            inputs: found.inputs.clone(),
            outputs: vec![found.output.clone()],
            attributes: found.attributes(),
            ..Node::default()
        };
        for &x in &found.absorbed {
            used.insert(x);
            if x != last {
                patch.remove_node(x);
            }
        }
        patch.replace_node(last, node);
        tracing::debug!(
            softmax = %n.name,
            absorbed = found.absorbed.len(),
            scale = found.scale,
            "attention fused"
        );
        count += 1;
    }
    if count > 0 {
        *g = patch.apply(g)?;
    }
    Ok(count)
}

/// One matched group.
#[derive(Debug)]
struct Found {
    /// Node indices replaced by the fused node.
    absorbed: Vec<usize>,
    /// The node whose place the fused node takes (the group's last).
    last: usize,
    inputs: Vec<String>,
    output: String,
    scale: f64,
    perms: [[usize; 4]; 4],
}

impl Found {
    fn attributes(&self) -> Vec<Attribute> {
        let ints = |p: &[usize; 4]| AttrValue::Ints(p.iter().map(|&x| x as i64).collect());
        vec![
            Attribute::new(ATTR_SCALE, AttrValue::Float(self.scale as f32)),
            Attribute::new(ATTR_Q_PERM, ints(&self.perms[0])),
            Attribute::new(ATTR_K_PERM, ints(&self.perms[1])),
            Attribute::new(ATTR_V_PERM, ints(&self.perms[2])),
            Attribute::new(ATTR_O_PERM, ints(&self.perms[3])),
        ]
    }
}

/// An operand traced back through absorbable nodes.
struct Traced {
    value: String,
    /// perm[i] = axis of `value` holding logical axis i.
    perm: [usize; 4],
    scale: f64,
    nodes: Vec<usize>,
}

struct Matcher<'g> {
    g: &'g Graph,
    compute: DataType,
    /// Readers of each value (node indices, each once).
    readers: HashMap<&'g str, Vec<usize>>,
    producer: HashMap<&'g str, usize>,
    outputs: HashSet<&'g str>,
    opset: i64,
}

impl<'g> Matcher<'g> {
    fn new(g: &'g Graph, compute: DataType) -> Matcher<'g> {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut producer = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for v in n.inputs.iter().filter(|v| !v.is_empty()) {
                let r = readers.entry(v.as_str()).or_default();
                if !r.contains(&i) {
                    r.push(i);
                }
            }
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                producer.insert(o.as_str(), i);
            }
        }
        Matcher {
            g,
            compute,
            readers,
            producer,
            outputs: g.outputs.iter().map(|o| o.name.as_str()).collect(),
            opset: g.opset_version("").unwrap_or(1),
        }
    }

    /// Whether `v` is read by exactly one node, once, and is not a graph output.
    fn single_use(&self, v: &str) -> bool {
        if self.outputs.contains(v) {
            return false;
        }
        match self.readers.get(v).map(Vec::as_slice) {
            Some(&[r]) => self.g.nodes[r].inputs.iter().filter(|i| *i == v).count() == 1,
            _ => false,
        }
    }

    /// The node producing `v` (default domain), when `v` has one reader.
    fn absorbable(&self, v: &str) -> Option<(usize, &'g Node)> {
        if !self.single_use(v) {
            return None;
        }
        let i = *self.producer.get(v)?;
        let n = &self.g.nodes[i];
        (n.domain.is_empty() && n.outputs.len() == 1).then_some((i, n))
    }

    fn dims(&self, v: &str) -> Option<Vec<usize>> {
        self.g.value(v)?.shape.as_ref().and_then(Shape::as_known)
    }

    /// The storage type of `v` in the engine.
    fn storage(&self, v: &str) -> Option<DataType> {
        self.g
            .value(v)?
            .dtype
            .map(|t| storage_dtype(t, self.compute))
    }

    /// The value of a one-element float constant.
    fn scalar(&self, v: &str) -> Option<f64> {
        let t = self.g.initializer(v)?;
        if !t.dtype().is_float()
            || t.len() != 1
            || self.g.overridable_initializers.iter().any(|o| o == v)
        {
            return None;
        }
        t.to_f32_vec().ok()?.first().map(|&x| f64::from(x))
    }

    /// `n` = Mul/Div of a value by a one-element constant: (the value, the factor).
    fn scaling(&self, n: &Node) -> Option<(String, f64)> {
        if n.inputs.len() != 2 {
            return None;
        }
        let (a, b) = (n.input(0)?, n.input(1)?);
        match n.op_type.as_str() {
            "Mul" => self
                .scalar(b)
                .map(|c| (a.to_string(), c))
                .or_else(|| self.scalar(a).map(|c| (b.to_string(), c))),
            "Div" => self
                .scalar(b)
                .filter(|&c| c != 0.0)
                .map(|c| (a.to_string(), 1.0 / c)),
            _ => None,
        }
    }

    /// A Transpose's permutation (rank 4; absent = reversed axes).
    fn transpose_perm(&self, n: &Node, rank: usize) -> Option<Vec<usize>> {
        if n.op_type != "Transpose" {
            return None;
        }
        let p: Vec<usize> = match n.attr_ints("perm").ok()? {
            Some(p) => p
                .iter()
                .map(|&x| usize::try_from(x).ok())
                .collect::<Option<_>>()?,
            None => (0..rank).rev().collect(),
        };
        (p.len() == rank).then_some(p)
    }

    /// Dynamo's swap of the last two axes through 3-D ending in `n` (a Reshape to 4-D):
    /// `Reshape [a·b, c, d]` → `Transpose [0, 2, 1]` → `Reshape [a, b, d, c]`; returns the
    /// 4-D source `[a, b, c, d]` and the two inner nodes.
    fn swap_through_3d(&self, n: &Node) -> Option<(String, [usize; 2])> {
        if n.op_type != "Reshape" {
            return None;
        }
        let out = self.dims(n.output(0)?)?;
        let (ti, t) = self.absorbable(n.input(0)?)?;
        if self.transpose_perm(t, 3)? != [0, 2, 1] {
            return None;
        }
        let (ri, r) = self.absorbable(t.input(0)?)?;
        if r.op_type != "Reshape" {
            return None;
        }
        let src = r.input(0)?;
        let sd = self.dims(src)?;
        let mid = self.dims(r.output(0)?)?;
        let ok = out.len() == 4
            && sd.len() == 4
            && mid == [sd[0] * sd[1], sd[2], sd[3]]
            && out == [sd[0], sd[1], sd[3], sd[2]];
        ok.then(|| (src.to_string(), [ti, ri]))
    }

    /// Follows `value` back through absorbable transposes (and, with `scales`, constant
    /// factors); `perm` maps logical axes to axes of `value` at the start.
    fn trace(&self, value: &str, perm: [usize; 4], scales: bool) -> Traced {
        let mut t = Traced {
            value: value.to_string(),
            perm,
            scale: 1.0,
            nodes: Vec::new(),
        };
        while let Some((i, n)) = self.absorbable(&t.value) {
            if let Some(p) = self.transpose_perm(n, 4) {
                t.perm = t.perm.map(|a| p[a]);
                t.value = n.inputs[0].clone();
                t.nodes.push(i);
            } else if let Some((src, [a, b])) = self.swap_through_3d(n) {
                t.perm = t.perm.map(|a| [0, 1, 3, 2][a]);
                t.value = src;
                t.nodes.extend([i, a, b]);
            } else if let Some((src, c)) = scales.then(|| self.scaling(n)).flatten() {
                t.scale *= c;
                t.value = src;
                t.nodes.push(i);
            } else {
                break;
            }
        }
        t
    }

    /// The group around the Softmax at node `si`, if it fuses.
    fn match_at(&self, si: usize) -> Option<Found> {
        let sm = &self.g.nodes[si];
        let (x, p) = (sm.input(0)?, sm.output(0)?);
        let sdims = self.dims(x)?;
        if sdims.len() != 4 || sm.inputs.len() != 1 {
            return None;
        }
        let default_axis = if self.opset < 13 { 1 } else { -1 };
        let axis = sm.attr_int("axis").ok()?.unwrap_or(default_axis);
        if axis != 3 && axis != -1 {
            return None;
        }
        // P → MatMul(P, V4)
        if !self.single_use(p) {
            return None;
        }
        let pvi = self.readers[p][0];
        let pv = &self.g.nodes[pvi];
        if pv.op_type != "MatMul" || !pv.domain.is_empty() || pv.input(0) != Some(p) {
            return None;
        }
        let v4 = pv.input(1)?;
        let mut absorbed = vec![si, pvi];
        // Back from the Softmax: Add (mask), Div/Mul (scale), MatMul(Q4, K4t).
        let mut mask: Option<String> = None;
        let mut scale = 1.0f64;
        let mut cur = x.to_string();
        let qk = loop {
            let (i, n) = self.absorbable(&cur)?;
            absorbed.push(i);
            match n.op_type.as_str() {
                "MatMul" if n.inputs.len() == 2 => break n,
                // Forward order: scale, then mask (a mask added before the scale would be
                // scaled too).
                "Add" if mask.is_none() && scale == 1.0 && n.inputs.len() == 2 => {
                    let (a, b) = (n.input(0)?, n.input(1)?);
                    // The scores side is the one produced by the chain; prefer a's producer.
                    let scores_side = |s: &str| {
                        self.producer
                            .get(s)
                            .map(|&j| &self.g.nodes[j])
                            .is_some_and(|m| matches!(m.op_type.as_str(), "MatMul" | "Mul" | "Div"))
                            && self.dims(s).as_deref() == Some(&sdims[..])
                    };
                    let (s, m) = if scores_side(a) { (a, b) } else { (b, a) };
                    if !scores_side(s) {
                        return None;
                    }
                    mask = Some(m.to_string());
                    cur = s.to_string();
                }
                "Mul" | "Div" => {
                    let (src, c) = self.scaling(n)?;
                    scale *= c;
                    cur = src;
                }
                _ => return None,
            }
        };
        if !qk.domain.is_empty() {
            return None;
        }
        let (q4, k4t) = (qk.input(0)?, qk.input(1)?);
        // The S value itself was checked single-use by `absorbable`.
        let q = self.trace(q4, [0, 1, 2, 3], true);
        let k = self.trace(k4t, [0, 1, 3, 2], true);
        let v = self.trace(v4, [0, 1, 2, 3], false);
        // Forward from O through absorbable transposes.
        let mut out = pv.output(0)?.to_string();
        let mut last = pvi;
        let mut operm = [0usize, 1, 2, 3];
        while self.single_use(&out) {
            let r = self.readers[out.as_str()][0];
            let n = &self.g.nodes[r];
            let Some(pm) = n
                .domain
                .is_empty()
                .then(|| self.transpose_perm(n, 4))
                .flatten()
            else {
                break;
            };
            if n.input(0) != Some(out.as_str()) {
                break;
            }
            // Output axis j holds axis pm[j] of its input: input axis a is at inv(pm)[a].
            let mut inv = [0usize; 4];
            for (j, &a) in pm.iter().enumerate() {
                inv[a] = j;
            }
            operm = operm.map(|a| inv[a]);
            out = n.output(0)?.to_string();
            last = r;
            absorbed.push(r);
        }
        absorbed.extend(q.nodes.iter().chain(&k.nodes).chain(&v.nodes));
        let uniq: HashSet<usize> = absorbed.iter().copied().collect();
        if uniq.len() != absorbed.len() {
            return None;
        }
        // What the kernels take.
        let qd = self.dims(&q.value)?;
        let kd = self.dims(&k.value)?;
        let vd = self.dims(&v.value)?;
        let od = self.dims(&out)?;
        let md = match &mask {
            Some(m) => Some(self.dims(m)?),
            None => None,
        };
        let geo = kernel::geometry(
            &Operand {
                dims: &qd,
                perm: q.perm,
            },
            &Operand {
                dims: &kd,
                perm: k.perm,
            },
            &Operand {
                dims: &vd,
                perm: v.perm,
            },
            &Operand {
                dims: &od,
                perm: operm,
            },
            md.as_deref(),
        )
        .ok()?;
        let st = self.storage(&q.value)?;
        let mut values = vec![&k.value, &v.value, &out];
        values.extend(mask.as_ref());
        let same_type = values.iter().all(|x| self.storage(x) == Some(st));
        let contiguous_d = [q.perm[3], k.perm[3], v.perm[3], operm[3]]
            .iter()
            .all(|&a| a == 3);
        if !kernel::takes(st) || !same_type || !contiguous_d || [geo.sq, geo.sk].contains(&0) {
            return None;
        }
        let mut inputs = vec![q.value.clone(), k.value.clone(), v.value.clone()];
        inputs.extend(mask);
        Some(Found {
            absorbed,
            last,
            inputs,
            output: out,
            scale: scale * q.scale * k.scale,
            perms: [q.perm, k.perm, v.perm, operm],
        })
    }
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
