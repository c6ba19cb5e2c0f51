//! Fusion: convolutions, pools and the elementwise ops between them in NHWC, for fp16/bf16
//! engines (cuDNN's tensor-core convolutions read and write NHWC; fed NCHW they convert
//! inside every call).
//!
//! On the specialised graph (concrete shapes), every 2-D `Conv` / `com.microsoft::FusedConv`
//! whose weights are a constant initialiser, whose pads are symmetric and whose activation is
//! none or ReLU becomes a [`CONV_OP`] node: FusedConv's inputs (X, W, B, Z) and attributes
//! (`activation`, explicit `pads`, `strides`, `dilations`, `group`), with X, Z and Y in NHWC
//! and W a new initialiser in cuDNN's NHWC filter layout `[K, kh, kw, C/group]` (reordered on
//! the host from the ONNX `[K, C/group, kh, kw]`). Grouped and depthwise convolutions are
//! converted too: cuDNN runs them in NHWC (kernel tests in tests/gpu_libs.rs).
//!
//! The NHWC region then grows through the consumers of NHWC values, in node order:
//! - a convolution's X or residual Z;
//! - unary elementwise ops ([`UNARY_OPS`]) and binary elementwise ops whose other operand is
//!   NHWC with the same shape, a single value (broadcast alike in both layouts) or a
//!   per-channel constant (`[C, 1, 1]` / `[1, C, 1, 1]`, re-declared `[C]`: same bytes);
//! - Concat along the channels (axis 3 in NHWC) when every input is NHWC;
//! - MaxPool / AveragePool (2-D, no `Indices`) → [`POOL_OP`] with the pool's attributes and
//!   [`POOL_ATTR`] naming the ONNX op;
//! - GlobalAveragePool / GlobalMaxPool → [`POOL_OP`] giving `[N, 1, 1, C]`, which has the
//!   bytes of the ONNX `[N, C, 1, 1]` (its NCHW readers get a free Reshape, not a copy).
//! - ReduceMean / ReduceMax over axes `[2, 3]` (how dynamo exports adaptive average pooling)
//!   → the same global [`POOL_OP`]; with `keepdims = 0` a Reshape (a view) then gives the
//!   `[N, C]` result, which is layout-free.
//!
//! A float value enters NHWC through [`ENTRY_OP`] (once per value: `[N, C, H, W]` →
//! `[N, H, W, C']`, one coalesced kernel of `kernels::nvrtc::layout_nhwc`, which also reads an
//! f32 engine input directly, lowering then skipping its boundary Cast) and leaves it through
//! `Transpose(perm [0, 3, 1, 2])` (once per value, for any other reader and for graph
//! outputs), under the value's original name. `C' = C` except where every reader of the value
//! is a convertible ungrouped convolution reading it as X and `C` is not a multiple of 8 (an
//! image's 3 channels): then `C'` is the next multiple of 8, the added channels are zero and
//! those convolutions' KRSC weights get zero input channels to match (same results; cuDNN's
//! NHWC tensor-core kernels want `C % 8 == 0`). Where the two layouts have the same bytes (one
//! channel, or 1×1 spatial) and nothing is padded the entry is a Reshape, a view that moves
//! nothing; non-float values enter through `Transpose(perm [0, 2, 3, 1])`. Values only ever
//! read in NHWC lose their NCHW form. Every new value gets its `value_info`.
//!
//! Not converted (they stay NCHW, fed by exit transposes): 1-D convolutions, asymmetric pads
//! (lowering pads those NCHW convolutions explicitly), activations other than ReLU, weights
//! that are graph inputs or overridable, and MaxPool with `Indices`.

use std::collections::{HashMap, HashSet};

use kiln_core::{DataType, Shape};
use kiln_onnx::{AttrValue, Attribute, FusedActivation, Graph, MS_DOMAIN, Node, Tensor, ValueInfo};

use super::KILN_DOMAIN;
use crate::builder::lower::{UNARY_OPS, conv_pads};
use crate::builder::patch::FreshNames;
use crate::error::{EngineError, Result};
use crate::kernels::conv::{ConvDesc, ConvLayout};
use crate::kernels::gemm::MathMode;

/// A convolution (FusedConv semantics) on NHWC tensors.
pub const CONV_OP: &str = "NhwcConv";
/// A pool on NHWC tensors.
pub const POOL_OP: &str = "NhwcPool";
/// The NHWC entry: X `[N, C, H, W]` (any float type) → Y `[N, H, W, C']`, `C' >= C` (from Y's
/// shape), channels `C..C'` zero.
pub const ENTRY_OP: &str = "NhwcEntry";
/// The string attribute of a [`POOL_OP`] naming the ONNX pool it computes (MaxPool,
/// AveragePool, GlobalAveragePool, GlobalMaxPool).
pub const POOL_ATTR: &str = "pool";

/// `Transpose` permutation from NCHW to NHWC.
pub const TO_NHWC: [i64; 4] = [0, 2, 3, 1];
/// `Transpose` permutation from NHWC back to NCHW.
pub const TO_NCHW: [i64; 4] = [0, 3, 1, 2];

/// Binary elementwise ops whose result does not depend on the layout of same-shape operands.
const BINARY_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Min",
    "Max",
    "PRelu",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
];

/// `[n, c, h, w]` dims in NHWC order.
pub fn nhwc_dims(d: &[usize]) -> Vec<usize> {
    vec![d[0], d[2], d[3], d[1]]
}

/// ONNX weights `[k, c, r, s]` (any element type, as raw bytes) reordered to `[k, r, s, c]`.
fn krsc_bytes(t: &Tensor) -> Result<Tensor> {
    let d = t.dims();
    let [k, c, r, s] = [d[0], d[1], d[2], d[3]];
    let e = t.dtype().size_in_bytes();
    let src = t.as_bytes();
    if e == 0 || src.len() != k * c * r * s * e {
        return Err(EngineError::Pass {
            pass: "nhwc",
            message: format!("weight '{}' holds {} bytes for {d:?}", t.name(), src.len()),
        });
    }
    let mut out = Vec::with_capacity(src.len());
    for kk in 0..k {
        for rr in 0..r {
            for ss in 0..s {
                for cc in 0..c {
                    let i = ((kk * c + cc) * r + rr) * s + ss;
                    out.extend_from_slice(&src[i * e..(i + 1) * e]);
                }
            }
        }
    }
    Ok(Tensor::from_bytes(
        t.name(),
        t.dtype(),
        vec![k, r, s, c],
        out,
    )?)
}

/// KRSC weights `[k, r, s, c]` with zero input channels appended up to `cp`.
fn pad_channels(t: Tensor, cp: usize) -> Result<Tensor> {
    let d = t.dims().to_vec();
    let c = d[3];
    if cp == c {
        return Ok(t);
    }
    let e = t.dtype().size_in_bytes();
    let mut out = Vec::with_capacity(t.as_bytes().len() / c.max(1) * cp);
    for row in t.as_bytes().chunks_exact(c * e) {
        out.extend_from_slice(row);
        out.resize(out.len() + (cp - c) * e, 0);
    }
    Ok(Tensor::from_bytes(
        t.name(),
        t.dtype(),
        vec![d[0], d[1], d[2], cp],
        out,
    )?)
}

/// What a convertible convolution becomes.
struct ConvPlan {
    pads: [i64; 4],
    strides: Vec<i64>,
    dilations: Vec<i64>,
    group: i64,
}

struct Rewriter<'g> {
    g: &'g Graph,
    types: HashMap<String, (DataType, Vec<usize>)>,
    names: FreshNames,
    /// Reshape (opset 5+) may stand for a conversion that moves nothing.
    reshape_views: bool,
    /// NCHW value → its NHWC form.
    nhwc: HashMap<String, String>,
    /// NCHW values whose producer was rewritten: they exist only once materialised.
    converted: HashSet<String>,
    materialised: HashSet<String>,
    /// Values entering NHWC with their channels padded: value → padded channel count.
    pad: HashMap<String, usize>,
    /// (weight, input channels) → its KRSC copy.
    krsc: HashMap<(String, usize), String>,
    channel_consts: HashMap<String, String>,
    nodes: Vec<Node>,
    initializers: Vec<Tensor>,
    value_info: Vec<ValueInfo>,
    convs: usize,
    entries: usize,
    exits: usize,
}

impl<'g> Rewriter<'g> {
    fn new(g: &'g Graph) -> Rewriter<'g> {
        let mut types = HashMap::new();
        for v in g.inputs.iter().chain(&g.value_info).chain(&g.outputs) {
            if let (Some(t), Some(d)) = (v.dtype, v.shape.as_ref().and_then(Shape::as_known)) {
                types.entry(v.name.clone()).or_insert((t, d));
            }
        }
        for t in &g.initializers {
            types.insert(t.name().to_string(), (t.dtype(), t.dims().to_vec()));
        }
        Rewriter {
            g,
            types,
            names: FreshNames::of(g),
            reshape_views: g.opset_version("").unwrap_or(1) >= 5,
            nhwc: HashMap::new(),
            converted: HashSet::new(),
            materialised: HashSet::new(),
            pad: HashMap::new(),
            krsc: HashMap::new(),
            channel_consts: HashMap::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            value_info: Vec::new(),
            convs: 0,
            entries: 0,
            exits: 0,
        }
    }

    fn dims(&self, name: &str) -> Option<&[usize]> {
        self.types.get(name).map(|(_, d)| d.as_slice())
    }

    fn dims4(&self, name: &str) -> Option<[usize; 4]> {
        match self.dims(name)? {
            &[a, b, c, d] => Some([a, b, c, d]),
            _ => None,
        }
    }

    /// A constant weight of a float type the user cannot override.
    fn weight(&self, name: &str) -> Option<&'g Tensor> {
        let t = self.g.initializer(name)?;
        (matches!(t.dtype(), DataType::F32 | DataType::F16 | DataType::BF16)
            && !self.g.overridable_initializers.iter().any(|o| o == name))
        .then_some(t)
    }

    /// Emits `src` (dims `from`) converted by `perm` into `dst` (dims `to`): a Reshape where
    /// the bytes are the same (one channel or 1×1 spatial), else a Transpose.
    fn convert(&mut self, src: &str, dst: &str, from: [usize; 4], perm: [i64; 4]) -> Result<()> {
        let to: Vec<usize> = perm.iter().map(|&p| from[p as usize]).collect();
        let view = self.reshape_views && (from[1] == 1 || from[2] * from[3] == 1);
        let name = self.names.fresh(&format!("{dst}@layout"));
        let node = if view {
            let shape = self.names.fresh(&format!("{dst}@shape"));
            let v: Vec<i64> = to.iter().map(|&d| d as i64).collect();
            self.initializers
                .push(Tensor::from_vec(shape.clone(), vec![4], v)?);
            Node {
                name,
                op_type: "Reshape".into(),
                inputs: vec![src.to_string(), shape],
                outputs: vec![dst.to_string()],
                ..Node::default()
            }
        } else {
            Node {
                name,
                op_type: "Transpose".into(),
                inputs: vec![src.to_string()],
                outputs: vec![dst.to_string()],
                attributes: vec![Attribute::new("perm", AttrValue::Ints(perm.to_vec()))],
                ..Node::default()
            }
        };
        self.nodes.push(node);
        Ok(())
    }

    /// The NHWC form of the rank-4 value `x` (an entry conversion the first time).
    fn nhwc_form(&mut self, x: &str) -> Result<Option<String>> {
        if let Some(n) = self.nhwc.get(x) {
            return Ok(Some(n.clone()));
        }
        let (Some(d), Some(&(dt, _))) = (self.dims4(x), self.types.get(x)) else {
            return Ok(None);
        };
        let y = self.names.fresh(&format!("{x}@nhwc"));
        let float = matches!(dt, DataType::F32 | DataType::F16 | DataType::BF16);
        let cp = self.pad.get(x).copied().filter(|_| float).unwrap_or(d[1]);
        let view = self.reshape_views && (d[1] == 1 || d[2] * d[3] == 1);
        if float && (cp != d[1] || !view) {
            let name = self.names.fresh(&format!("{y}@layout"));
            self.nodes.push(Node {
                name,
                op_type: ENTRY_OP.into(),
                domain: KILN_DOMAIN.into(),
                inputs: vec![x.to_string()],
                outputs: vec![y.clone()],
                ..Node::default()
            });
        } else {
            self.convert(x, &y, d, TO_NHWC)?;
        }
        self.declare(&y, dt, &[d[0], d[2], d[3], cp]);
        self.nhwc.insert(x.to_string(), y.clone());
        self.entries += 1;
        Ok(Some(y))
    }

    /// Makes the NCHW value `x` exist again if its producer was rewritten (an exit
    /// conversion under its original name, once).
    fn nchw_form(&mut self, x: &str) -> Result<()> {
        if !self.converted.contains(x) || self.materialised.contains(x) {
            return Ok(());
        }
        let (Some(src), Some(d)) = (self.nhwc.get(x).cloned(), self.dims4(x)) else {
            return Ok(());
        };
        self.convert(&src, x, [d[0], d[2], d[3], d[1]], TO_NCHW)?;
        self.materialised.insert(x.to_string());
        self.exits += 1;
        Ok(())
    }

    fn declare(&mut self, name: &str, dt: DataType, dims: &[usize]) {
        self.types.insert(name.to_string(), (dt, dims.to_vec()));
        self.value_info
            .push(ValueInfo::tensor(name, dt, Shape::from_known(dims)));
    }

    /// A new NHWC value standing for the rank-4 NCHW output `y` of a rewritten node.
    fn output(&mut self, y: &str) -> Option<String> {
        let d = self.dims4(y)?;
        let dt = self.types.get(y)?.0;
        let n = self.names.fresh(&format!("{y}@nhwc"));
        self.declare(&n, dt, &nhwc_dims(&d));
        self.nhwc.insert(y.to_string(), n.clone());
        self.converted.insert(y.to_string());
        Some(n)
    }

    fn conv_plan(&self, n: &Node) -> Option<ConvPlan> {
        let fused = n.domain == MS_DOMAIN && n.op_type == "FusedConv";
        if !(fused || n.domain.is_empty() && n.op_type == "Conv") {
            return None;
        }
        if fused {
            match FusedActivation::of_node(n).ok()? {
                FusedActivation::Identity | FusedActivation::Relu => {}
                _ => return None,
            }
        }
        let (x, w, y) = (n.input(0)?, n.input(1)?, n.output(0)?);
        let (xd, yd) = (self.dims4(x)?, self.dims4(y)?);
        let wt = self.weight(w)?;
        let wd: [usize; 4] = wt.dims().try_into().ok()?;
        let pads = conv_pads(n, &xd, &wd).ok()?;
        if pads.len() != 4
            || pads.iter().any(|&p| p < 0)
            || pads[0] != pads[2]
            || pads[1] != pads[3]
        {
            return None;
        }
        let ints = |a: &str| -> Option<Vec<i64>> {
            match n.attr_ints(a).ok()? {
                Some(v) if v.len() == 2 && v.iter().all(|&s| s > 0) => Some(v.to_vec()),
                Some(_) => None,
                None => Some(vec![1, 1]),
            }
        };
        let (strides, dilations) = (ints("strides")?, ints("dilations")?);
        let group = n.attr_int("group").ok()?.unwrap_or(1);
        if group < 1 {
            return None;
        }
        let u = |v: &[i64]| v.iter().map(|&s| s as usize).collect::<Vec<_>>();
        let desc = ConvDesc::from_onnx(
            MathMode::Fp16,
            ConvLayout::Nhwc,
            &xd,
            &wd,
            &u(&pads),
            &u(&strides),
            &u(&dilations),
            group as usize,
        )
        .ok()?;
        if desc.output_dims() != yd {
            return None;
        }
        if let Some(b) = n.input(2).filter(|b| !b.is_empty())
            && self.dims(b)? != [wd[0]]
        {
            return None;
        }
        if let Some(z) = n.input(3).filter(|z| !z.is_empty())
            && self.dims(z)? != yd
        {
            return None;
        }
        if n.outputs.len() != 1 {
            return None;
        }
        Some(ConvPlan {
            pads: [pads[0], pads[1], pads[2], pads[3]],
            strides,
            dilations,
            group,
        })
    }

    /// The KRSC copy of weight `w` with `cp` input channels, zero past its own (made once).
    fn krsc_weight(&mut self, w: &str, cp: usize) -> Result<String> {
        let key = (w.to_string(), cp);
        if let Some(n) = self.krsc.get(&key) {
            return Ok(n.clone());
        }
        let t = self.weight(w).ok_or_else(|| EngineError::Pass {
            pass: "nhwc",
            message: format!("weight '{w}' is not a constant"),
        })?;
        let name = self.names.fresh(&format!("{w}@krsc"));
        let mut k = krsc_bytes(t)?;
        if cp < k.dims()[3] {
            return Err(EngineError::Pass {
                pass: "nhwc",
                message: format!("weight '{w}' cannot take {cp} input channels"),
            });
        }
        k = pad_channels(k, cp)?;
        k.set_name(name.clone());
        self.initializers.push(k);
        self.krsc.insert(key, name.clone());
        Ok(name)
    }

    /// Values to enter NHWC with padded channels: those whose channel count is not a multiple
    /// of 8 and whose every reader is a convertible ungrouped convolution reading them as X
    /// only.
    fn paddable(&self, nodes: &[Node]) -> HashMap<String, usize> {
        let mut readers: HashMap<&str, Vec<&Node>> = HashMap::new();
        for n in nodes {
            for i in n.inputs.iter().filter(|i| !i.is_empty()) {
                let r = readers.entry(i.as_str()).or_default();
                if !r.iter().any(|m| std::ptr::eq(*m, n)) {
                    r.push(n);
                }
            }
        }
        let as_x = |n: &Node, x: &str| {
            self.conv_plan(n).is_some_and(|p| p.group == 1)
                && n.inputs.iter().position(|i| i == x) == Some(0)
                && n.inputs.iter().filter(|i| *i == x).count() == 1
        };
        let mut out = HashMap::new();
        for (x, rs) in readers {
            let Some(d) = self.dims4(x) else { continue };
            if !d[1].is_multiple_of(8) && rs.iter().all(|n| as_x(n, x)) {
                out.insert(
                    x.to_string(),
                    crate::kernels::nvrtc::layout_nhwc::padded_channels(d[1]),
                );
            }
        }
        out
    }

    fn try_conv(&mut self, n: &Node) -> Result<bool> {
        let Some(plan) = self.conv_plan(n) else {
            return Ok(false);
        };
        let (x, w, y) = (&n.inputs[0], &n.inputs[1], &n.outputs[0]);
        let Some(xn) = self.nhwc_form(x)? else {
            return Ok(false);
        };
        let z = match n.input(3).filter(|z| !z.is_empty()) {
            Some(z) => match self.nhwc_form(z)? {
                Some(zn) => zn,
                None => return Ok(false),
            },
            None => String::new(),
        };
        // X's NHWC form may carry zero channels past C (see `paddable`): the weights get
        // zero input channels to match.
        let wc = self.dims(w).map_or(0, |d| d[1]);
        let (cx, c) = (
            self.dims(&xn).and_then(|d| d.last().copied()).unwrap_or(0),
            self.dims4(x).map_or(0, |d| d[1]),
        );
        let cp = if cx != c {
            if plan.group != 1 {
                return Err(EngineError::Pass {
                    pass: "nhwc",
                    message: format!("grouped convolution '{}' reads padded channels", n.name),
                });
            }
            cx
        } else {
            wc
        };
        let wn = self.krsc_weight(w, cp)?;
        let Some(yn) = self.output(y) else {
            return Ok(false);
        };
        let mut attributes = vec![
            Attribute::new("pads", AttrValue::Ints(plan.pads.to_vec())),
            Attribute::new("strides", AttrValue::Ints(plan.strides)),
            Attribute::new("dilations", AttrValue::Ints(plan.dilations)),
            Attribute::new("group", AttrValue::Int(plan.group)),
        ];
        if n.domain == MS_DOMAIN {
            attributes.extend(
                n.attributes
                    .iter()
                    .filter(|a| a.name.starts_with("activation"))
                    .cloned(),
            );
        }
        let b = n.input(2).unwrap_or("").to_string();
        self.nodes.push(Node {
            name: n.name.clone(),
            op_type: CONV_OP.into(),
            domain: KILN_DOMAIN.into(),
            inputs: vec![xn, wn, b, z],
            outputs: vec![yn],
            attributes,
            doc_string: n.doc_string.clone(),
            index: n.index,
        });
        self.convs += 1;
        Ok(true)
    }

    /// The operand of a binary op beside an NHWC value of NCHW dims `d`, in NHWC terms: a
    /// single value as it is, a per-channel constant re-declared `[C]`.
    fn beside(&mut self, other: &str, d: [usize; 4]) -> Option<String> {
        let od = self.dims(other)?.to_vec();
        if od.iter().product::<usize>() == 1 && od.len() <= 4 {
            // one value: the same bytes in either layout
            return Some(self.nhwc.get(other).cloned().unwrap_or(other.to_string()));
        }
        if let Some(n) = self.channel_consts.get(other) {
            return Some(n.clone());
        }
        let t = self.g.initializer(other)?;
        if od.len() > 4 || od.len() < 3 {
            return None;
        }
        let mut full = vec![1usize; 4 - od.len()];
        full.extend(&od);
        if full != [1, d[1], 1, 1] {
            return None;
        }
        let name = self.names.fresh(&format!("{other}@channels"));
        let c =
            Tensor::from_bytes(name.clone(), t.dtype(), vec![d[1]], t.as_bytes().to_vec()).ok()?;
        self.initializers.push(c);
        self.channel_consts.insert(other.to_string(), name.clone());
        Some(name)
    }

    fn try_elementwise(&mut self, n: &Node) -> Result<bool> {
        if !n.domain.is_empty() || n.outputs.len() != 1 {
            return Ok(false);
        }
        let op = n.op_type.as_str();
        let y = &n.outputs[0];
        let Some(yd) = self.dims4(y) else {
            return Ok(false);
        };
        let mut inputs = n.inputs.clone();
        let mut attributes = n.attributes.clone();
        if UNARY_OPS.contains(&op) {
            let Some(xn) = inputs.first().and_then(|x| self.nhwc.get(x)).cloned() else {
                return Ok(false);
            };
            if self.dims4(&inputs[0]) != Some(yd) {
                return Ok(false);
            }
            for i in &n.inputs[1..] {
                self.nchw_form(i)?;
            }
            inputs[0] = xn;
        } else if BINARY_OPS.contains(&op) && inputs.len() == 2 {
            let same = |r: &Self, i: usize| {
                r.nhwc.contains_key(&inputs[i]) && r.dims4(&inputs[i]) == Some(yd)
            };
            match (same(self, 0), same(self, 1)) {
                (true, true) => {
                    for i in &mut inputs {
                        *i = self.nhwc[i.as_str()].clone();
                    }
                }
                (true, false) | (false, true) => {
                    let k = usize::from(!same(self, 0));
                    let Some(o) = self.beside(&inputs[1 - k].clone(), yd) else {
                        return Ok(false);
                    };
                    inputs[k] = self.nhwc[inputs[k].as_str()].clone();
                    inputs[1 - k] = o;
                }
                (false, false) => return Ok(false),
            }
        } else if op == "Concat" {
            let axis = n.attr_int("axis").ok().flatten();
            if !matches!(axis, Some(1) | Some(-3)) || inputs.is_empty() {
                return Ok(false);
            }
            if !inputs.iter().all(|i| self.nhwc.contains_key(i)) {
                return Ok(false);
            }
            for i in &mut inputs {
                *i = self.nhwc[i.as_str()].clone();
            }
            attributes.retain(|a| a.name != "axis");
            attributes.push(Attribute::new("axis", AttrValue::Int(3)));
        } else {
            return Ok(false);
        }
        let Some(yn) = self.output(y) else {
            return Ok(false);
        };
        self.nodes.push(Node {
            inputs,
            outputs: vec![yn],
            attributes,
            ..n.clone()
        });
        Ok(true)
    }

    /// ReduceMean / ReduceMax over the spatial axes (`[2, 3]`) of an NHWC value: the NHWC
    /// global pool, then with `keepdims = 0` a Reshape (a view) to `[N, C]`.
    fn try_spatial_reduce(&mut self, n: &Node) -> Result<bool> {
        let pool = match n.op_type.as_str() {
            "ReduceMean" => "GlobalAveragePool",
            "ReduceMax" => "GlobalMaxPool",
            _ => return Ok(false),
        };
        if !n.domain.is_empty() || n.outputs.len() != 1 {
            return Ok(false);
        }
        let (Some(x), Some(y)) = (n.input(0), n.output(0)) else {
            return Ok(false);
        };
        let (Some(xn), Some(xd)) = (self.nhwc.get(x).cloned(), self.dims4(x)) else {
            return Ok(false);
        };
        let axes: Option<Vec<i64>> = if self.g.opset_version("").unwrap_or(1) >= 18 {
            n.input(1)
                .filter(|a| !a.is_empty())
                .and_then(|a| self.g.initializer(a))
                .and_then(|t| t.to_i64_vec().ok())
        } else {
            n.attr_ints("axes").ok().flatten().map(<[i64]>::to_vec)
        };
        let Some(mut axes) = axes else {
            return Ok(false);
        };
        for a in &mut axes {
            if *a < 0 {
                *a += 4;
            }
        }
        axes.sort_unstable();
        if axes != [2, 3] {
            return Ok(false);
        }
        let keep = n.attr_int("keepdims").ok().flatten().unwrap_or(1) != 0;
        let (Some(&(dt, _)), Some(yd)) = (self.types.get(y), self.dims(y)) else {
            return Ok(false);
        };
        let want: &[usize] = if keep {
            &[xd[0], xd[1], 1, 1]
        } else {
            &[xd[0], xd[1]]
        };
        if yd != want || (!keep && !self.reshape_views) {
            return Ok(false);
        }
        let pooled = if keep {
            match self.output(y) {
                Some(p) => p,
                None => return Ok(false),
            }
        } else {
            let p = self.names.fresh(&format!("{y}@nhwc"));
            self.declare(&p, dt, &[xd[0], 1, 1, xd[1]]);
            p
        };
        self.nodes.push(Node {
            name: n.name.clone(),
            op_type: POOL_OP.into(),
            domain: KILN_DOMAIN.into(),
            inputs: vec![xn],
            outputs: vec![pooled.clone()],
            attributes: vec![Attribute::new(
                POOL_ATTR,
                AttrValue::String(pool.as_bytes().to_vec()),
            )],
            doc_string: n.doc_string.clone(),
            index: n.index,
        });
        if !keep {
            let shape = self.names.fresh(&format!("{y}@shape"));
            self.initializers.push(Tensor::from_vec(
                shape.clone(),
                vec![2],
                vec![xd[0] as i64, xd[1] as i64],
            )?);
            let name = self.names.fresh(&format!("{y}@layout"));
            self.nodes.push(Node {
                name,
                op_type: "Reshape".into(),
                inputs: vec![pooled, shape],
                outputs: vec![y.to_string()],
                ..Node::default()
            });
        }
        Ok(true)
    }

    fn try_pool(&mut self, n: &Node) -> bool {
        let op = n.op_type.as_str();
        if !n.domain.is_empty()
            || !matches!(
                op,
                "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool"
            )
        {
            return false;
        }
        if n.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            return false;
        }
        let (Some(x), Some(y)) = (n.input(0), n.output(0)) else {
            return false;
        };
        let Some(xn) = self.nhwc.get(x).cloned() else {
            return false;
        };
        if self.dims4(x).is_none() || self.dims4(y).is_none() {
            return false;
        }
        if op.ends_with("Pool")
            && !op.starts_with("Global")
            && n.attr_ints("kernel_shape").ok().flatten().map(<[i64]>::len) != Some(2)
        {
            return false;
        }
        let Some(yn) = self.output(y) else {
            return false;
        };
        let mut attributes: Vec<Attribute> = n
            .attributes
            .iter()
            .filter(|a| a.name != POOL_ATTR)
            .cloned()
            .collect();
        attributes.push(Attribute::new(
            POOL_ATTR,
            AttrValue::String(op.as_bytes().to_vec()),
        ));
        self.nodes.push(Node {
            name: n.name.clone(),
            op_type: POOL_OP.into(),
            domain: KILN_DOMAIN.into(),
            inputs: vec![xn],
            outputs: vec![yn],
            attributes,
            doc_string: n.doc_string.clone(),
            index: n.index,
        });
        true
    }
}

/// Choices of the NHWC rewrite beyond the engine's types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Pad the channels of values only convolutions read to a multiple of 8 (zeros, with
    /// zero weight channels). Off by default: on the H200, ResNet-50's 7×7 stem at b256 took
    /// 1.44 ms with its 3 channels padded to 8 against 0.59 ms unpadded (cuDNN's choice for
    /// C = 8 was slower), so the engine keeps 3.
    pub pad_channels: bool,
}

/// Rewrites the graph's convolutions to NHWC with the default [`Options`]; returns how many.
pub fn rewrite(g: &mut Graph, compute: DataType) -> Result<usize> {
    rewrite_with(g, compute, Options::default())
}

/// [`rewrite`] with explicit options.
pub fn rewrite_with(g: &mut Graph, compute: DataType, options: Options) -> Result<usize> {
    if !matches!(compute, DataType::F16 | DataType::BF16) {
        return Ok(0);
    }
    let old = g.nodes.clone();
    let mut r = Rewriter::new(g);
    if !old.iter().any(|n| r.conv_plan(n).is_some()) {
        return Ok(0);
    }
    if options.pad_channels {
        r.pad = r.paddable(&old);
    }
    for n in &old {
        if r.try_conv(n)? || r.try_elementwise(n)? || r.try_pool(n) || r.try_spatial_reduce(n)? {
            continue;
        }
        for i in &n.inputs {
            r.nchw_form(i)?;
        }
        r.nodes.push(n.clone());
    }
    for o in &g.outputs {
        r.nchw_form(&o.name)?;
    }
    tracing::debug!(
        convs = r.convs,
        entry_conversions = r.entries,
        exit_conversions = r.exits,
        "NHWC regions"
    );
    let Rewriter {
        nodes,
        initializers,
        value_info,
        converted,
        materialised,
        krsc,
        convs,
        ..
    } = r;
    g.nodes = nodes;
    g.value_info
        .retain(|v| !converted.contains(&v.name) || materialised.contains(&v.name));
    g.value_info.extend(value_info);
    let used: HashSet<&str> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .chain(g.outputs.iter().map(|o| o.name.as_str()))
        .collect();
    let unused: HashSet<String> = krsc
        .keys()
        .map(|(w, _)| w)
        .filter(|w| !used.contains(w.as_str()))
        .cloned()
        .collect();
    g.initializers.retain(|t| !unused.contains(t.name()));
    g.initializers.extend(initializers);
    Ok(convs)
}

#[cfg(test)]
#[path = "nhwc_tests.rs"]
mod tests;
