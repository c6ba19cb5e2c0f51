//! CPU tests of the attention matcher: synthetic graphs (GraphBuilder) are specialised and
//! rewritten; the fused node's attributes are checked by computing attention from its inputs
//! through the kernel geometry's strides (f64, on the host) and comparing with kiln-reference
//! on the original graph.

use std::collections::HashMap;

use kiln_core::{DataType, Dim};
use kiln_onnx::{Graph, GraphBuilder, Tensor, ValueInfo, builder::Value};
use kiln_reference::{Interpreter, Value as RValue};

use super::*;
use crate::builder::lower;

const B: usize = 2;
const H: usize = 3;
const D: usize = 16;

fn known(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&x| Dim::Known(x)).collect()
}

/// Options of the synthetic attention block.
#[derive(Clone, Copy)]
struct Opts {
    sq: usize,
    sk: usize,
    /// Mask shape (None: no mask).
    mask: Option<&'static [usize]>,
    /// Scale by Mul (else Div by sqrt(D)).
    mul_scale: bool,
    /// Softmax axis attribute (None: default).
    axis: Option<i64>,
    opset: i64,
    /// Also output the scores (a second reader).
    leak_scores: bool,
    /// BERT's transposes around Q, K, V and O (else plain [B, H, S, D] inputs, K transposed
    /// by a Transpose of its last two axes).
    bert: bool,
    /// Without `bert`: Kᵀ `[B, H, D, Sk]` is the graph input (D not contiguous).
    kt_input: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            sq: 5,
            sk: 7,
            mask: Some(&[B, 1, 1, 7]),
            mul_scale: false,
            axis: None,
            opset: 17,
            leak_scores: false,
            bert: true,
            kt_input: false,
        }
    }
}

fn i64s(b: &mut GraphBuilder, name: &str, v: &[i64]) -> Value {
    b.initializer(Tensor::from_vec(name, vec![v.len()], v.to_vec()).unwrap())
}

fn scalar(b: &mut GraphBuilder, name: &str, v: f32) -> Value {
    b.initializer(Tensor::from_vec(name, vec![1], vec![v]).unwrap())
}

/// The BERT legacy-export attention block: inputs `[B, S, H·D]`, Reshape → Transpose, Q Kᵀ,
/// scale, mask, Softmax, P V, Transpose back, Reshape to `[B, Sq, H·D]`.
fn bert_block(o: Opts) -> Graph {
    let mut b = GraphBuilder::new("attn").opset(o.opset);
    let f = DataType::F32;
    let (q4, k4t, v4) = if o.bert {
        let q = b.input("q", f, &known(&[B, o.sq, H * D]));
        let k = b.input("k", f, &known(&[B, o.sk, H * D]));
        let v = b.input("v", f, &known(&[B, o.sk, H * D]));
        let sq = i64s(
            &mut b,
            "shape_q",
            &[B as i64, o.sq as i64, H as i64, D as i64],
        );
        let sk = i64s(
            &mut b,
            "shape_k",
            &[B as i64, o.sk as i64, H as i64, D as i64],
        );
        let q = b.node("Reshape", &[&q, &sq]).output();
        let k = b.node("Reshape", &[&k, &sk]).output();
        let v = b.node("Reshape", &[&v, &sk]).output();
        let q4 = b
            .node("Transpose", &[&q])
            .attr("perm", vec![0i64, 2, 1, 3])
            .output();
        let k4t = b
            .node("Transpose", &[&k])
            .attr("perm", vec![0i64, 2, 3, 1])
            .output();
        let v4 = b
            .node("Transpose", &[&v])
            .attr("perm", vec![0i64, 2, 1, 3])
            .output();
        (q4, k4t, v4)
    } else {
        let q = b.input("q", f, &known(&[B, H, o.sq, D]));
        let v = b.input("v", f, &known(&[B, H, o.sk, D]));
        let kt = if o.kt_input {
            b.input("kt", f, &known(&[B, H, D, o.sk]))
        } else {
            let k = b.input("k", f, &known(&[B, H, o.sk, D]));
            b.node("Transpose", &[&k])
                .attr("perm", vec![0i64, 1, 3, 2])
                .output()
        };
        (q, kt, v)
    };
    let s = b.node("MatMul", &[&q4, &k4t]).output_named("scores");
    let s = if o.mul_scale {
        let c = scalar(&mut b, "c", 1.0 / (D as f32).sqrt());
        b.node("Mul", &[&c, &s]).output()
    } else {
        let c = scalar(&mut b, "c", (D as f32).sqrt());
        b.node("Div", &[&s, &c]).output()
    };
    let s = match o.mask {
        Some(m) => {
            let mask = b.input("mask", f, &known(m));
            b.node("Add", &[&s, &mask]).output()
        }
        None => s,
    };
    let mut sm = b.node("Softmax", &[&s]);
    if let Some(a) = o.axis {
        sm = sm.attr("axis", a);
    }
    let p = sm.output();
    let ctx = b.node("MatMul", &[&p, &v4]).output();
    if o.bert {
        let t = b
            .node("Transpose", &[&ctx])
            .attr("perm", vec![0i64, 2, 1, 3])
            .output();
        let shape = i64s(&mut b, "shape_o", &[B as i64, o.sq as i64, (H * D) as i64]);
        let _ = b.node("Reshape", &[&t, &shape]).output_named("y");
    } else {
        let _ = b.node("Identity", &[&ctx]).output_named("y");
    }
    b.output_value(ValueInfo::unknown("y"));
    if o.leak_scores {
        b.output_value(ValueInfo::unknown("scores"));
    }
    b.build().unwrap()
}

fn specialised(g: &Graph) -> Graph {
    lower::specialize(g, &[]).unwrap()
}

fn random_inputs(g: &Graph, seed: u64) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    g.inputs
        .iter()
        .map(|vi| {
            let dims = vi.shape.as_ref().unwrap().as_known().unwrap();
            let n = dims.iter().product();
            let data = if vi.name == "mask" {
                (0..n)
                    .map(|_| if rng.u8(0..4) == 0 { -1e4 } else { 0.0 })
                    .collect()
            } else {
                (0..n).map(|_| rng.f32() * 5.0 - 2.5).collect()
            };
            (vi.name.clone(), (dims, data))
        })
        .collect()
}

fn reference(g: &Graph, inputs: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Vec<f32> {
    let feed = inputs
        .iter()
        .map(|(k, (d, v))| {
            let t = Tensor::from_vec(k.clone(), d.clone(), v.clone()).unwrap();
            (k.clone(), RValue::from_tensor(&t).unwrap())
        })
        .collect();
    let out = Interpreter::new(g.clone()).unwrap().run(feed).unwrap();
    out["y"].to_f64_vec().iter().map(|&x| x as f32).collect()
}

/// Runs the fused node on the host through the kernel geometry (what the GPU kernels
/// compute, in f64), with every other node of `g` evaluated by kiln-reference first.
fn fused_on_host(g: &Graph, inputs: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Vec<f32> {
    let fused = g.nodes.iter().find(|n| n.op_type == OP).unwrap();
    // Values the fused node reads: graph inputs or outputs of the nodes before it.
    let mut pre = g.clone();
    let at = pre.nodes.iter().position(|n| n.op_type == OP).unwrap();
    pre.nodes.truncate(at);
    let mut wanted: Vec<&String> = fused
        .inputs
        .iter()
        .filter(|i| !inputs.contains_key(*i))
        .collect();
    wanted.dedup();
    pre.outputs = wanted
        .into_iter()
        .map(|i| ValueInfo::unknown(i.clone()))
        .collect();
    let mut vals: HashMap<String, (Vec<usize>, Vec<f64>)> = inputs
        .iter()
        .map(|(k, (d, v))| {
            (
                k.clone(),
                (d.clone(), v.iter().map(|&x| f64::from(x)).collect()),
            )
        })
        .collect();
    if !pre.outputs.is_empty() {
        let feed = inputs
            .iter()
            .filter(|(k, _)| pre.inputs.iter().any(|i| &i.name == *k))
            .map(|(k, (d, v))| {
                let t = Tensor::from_vec(k.clone(), d.clone(), v.clone()).unwrap();
                (k.clone(), RValue::from_tensor(&t).unwrap())
            })
            .collect();
        for (k, v) in Interpreter::new(pre).unwrap().run(feed).unwrap() {
            vals.insert(k, (v.shape().to_vec(), v.to_f64_vec()));
        }
    }
    let perm = |name: &str| -> [usize; 4] {
        let v = fused.attr_ints(name).unwrap().unwrap();
        [v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize]
    };
    let val = |i: usize| &vals[&fused.inputs[i]];
    let od = g
        .value(&fused.outputs[0])
        .unwrap()
        .shape
        .unwrap()
        .as_known()
        .unwrap();
    let mask = fused.inputs.get(3).map(|_| val(3));
    let geo = kernel::geometry(
        &Operand {
            dims: &val(0).0,
            perm: perm(ATTR_Q_PERM),
        },
        &Operand {
            dims: &val(1).0,
            perm: perm(ATTR_K_PERM),
        },
        &Operand {
            dims: &val(2).0,
            perm: perm(ATTR_V_PERM),
        },
        &Operand {
            dims: &od,
            perm: perm(ATTR_O_PERM),
        },
        mask.map(|m| m.0.as_slice()),
    )
    .unwrap();
    let scale = f64::from(fused.attr_float(ATTR_SCALE).unwrap().unwrap());
    let at4 = |s: &[i64; 4], i: [usize; 4]| -> usize {
        (0..4).map(|a| s[a] * i[a] as i64).sum::<i64>() as usize
    };
    let mut out = vec![f32::NAN; od.iter().product()];
    for b in 0..geo.batch {
        for h in 0..geo.heads {
            for i in 0..geo.sq {
                let mut s: Vec<f64> = (0..geo.sk)
                    .map(|j| {
                        let dot: f64 = (0..geo.d)
                            .map(|d| {
                                val(0).1[at4(&geo.q, [b, h, i, d])]
                                    * val(1).1[at4(&geo.k, [b, h, j, d])]
                            })
                            .sum();
                        let m = match (&geo.mask, mask) {
                            (Some(ms), Some(mv)) => mv.1[at4(ms, [b, h, i, j])],
                            _ => 0.0,
                        };
                        dot * scale + m
                    })
                    .collect();
                let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                s.iter_mut().for_each(|x| *x = (*x - mx).exp());
                let sum: f64 = s.iter().sum();
                for d in 0..geo.d {
                    let o: f64 = (0..geo.sk)
                        .map(|j| s[j] * val(2).1[at4(&geo.v, [b, h, j, d])])
                        .sum();
                    out[at4(&geo.o, [b, h, i, d])] = (o / sum) as f32;
                }
            }
        }
    }
    out
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let den: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Rewrites `g` for an f16 engine: (count, rewritten graph).
fn fuse(g: &Graph) -> (usize, Graph) {
    let mut s = specialised(g);
    let n = rewrite(&mut s, DataType::F16).unwrap();
    (n, s)
}

/// Fuses once and matches kiln-reference on the original graph.
fn fuses_correctly(o: Opts) -> Graph {
    let g = bert_block(o);
    let (n, fused) = fuse(&g);
    assert_eq!(n, 1);
    assert_eq!(
        fused.nodes.iter().filter(|n| n.op_type == OP).count(),
        1,
        "{:?}",
        fused.nodes.iter().map(|n| &n.op_type).collect::<Vec<_>>()
    );
    let inputs = random_inputs(&g, 7);
    let want = reference(&g, &inputs);
    let got = fused_on_host(&fused, &inputs);
    let err = rel_l2(&want, &got);
    assert!(err < 1e-5, "rel-L2 {err}");
    fused
}

fn ops(g: &Graph) -> Vec<&str> {
    g.nodes.iter().map(|n| n.op_type.as_str()).collect()
}

#[test]
fn bert_pattern_with_transposes_becomes_one_node() {
    let fused = fuses_correctly(Opts::default());
    // The head transposes are strides now; the Reshapes (views) stay.
    assert_eq!(
        ops(&fused),
        ["Reshape", "Reshape", "Reshape", "Attention", "Reshape"]
    );
    let a = fused.nodes.iter().find(|n| n.op_type == OP).unwrap();
    assert_eq!(a.domain, KILN_DOMAIN);
    assert_eq!(a.inputs.len(), 4);
    assert_eq!(a.attr_ints(ATTR_Q_PERM).unwrap().unwrap(), [0, 2, 1, 3]);
    assert_eq!(a.attr_ints(ATTR_K_PERM).unwrap().unwrap(), [0, 2, 1, 3]);
    assert_eq!(a.attr_ints(ATTR_O_PERM).unwrap().unwrap(), [0, 2, 1, 3]);
    let scale = a.attr_float(ATTR_SCALE).unwrap().unwrap();
    assert!((scale - 0.25).abs() < 1e-7, "{scale}");
    // Every value read or written has a concrete type and shape.
    for v in a.inputs.iter().chain(&a.outputs) {
        let vi = fused.value(v).unwrap();
        assert!(
            vi.dtype.is_some() && vi.shape.unwrap().as_known().is_some(),
            "{v}"
        );
    }
}

#[test]
fn variants_that_fuse() {
    // No mask, Mul scale (constant first), plain [B, H, S, D] operands, other mask shapes,
    // tails, opset 11 with axis 3 and opset 13 with axis -1.
    for o in [
        Opts {
            mask: None,
            ..Opts::default()
        },
        Opts {
            mul_scale: true,
            ..Opts::default()
        },
        Opts {
            bert: false,
            mask: Some(&[1, 1, 5, 7]),
            ..Opts::default()
        },
        Opts {
            mask: Some(&[B, 1, 5, 7]),
            ..Opts::default()
        },
        Opts {
            sq: 1,
            sk: 1,
            mask: Some(&[B, 1, 1, 1]),
            ..Opts::default()
        },
        Opts {
            opset: 11,
            axis: Some(3),
            ..Opts::default()
        },
        Opts {
            opset: 13,
            axis: Some(-1),
            ..Opts::default()
        },
    ] {
        fuses_correctly(o);
    }
}

#[test]
fn not_fused() {
    for (what, o) in [
        (
            "scores with a second reader",
            Opts {
                leak_scores: true,
                ..Opts::default()
            },
        ),
        (
            "softmax over another axis",
            Opts {
                axis: Some(2),
                ..Opts::default()
            },
        ),
        (
            "Kᵀ stored [B, H, D, Sk] (D not contiguous)",
            Opts {
                bert: false,
                kt_input: true,
                ..Opts::default()
            },
        ),
        (
            "opset 11 default axis (1: flattens heads and rows)",
            Opts {
                opset: 11,
                ..Opts::default()
            },
        ),
    ] {
        let (n, g) = fuse(&bert_block(o));
        assert_eq!(n, 0, "{what}");
        assert!(!ops(&g).contains(&OP), "{what}");
    }
}

#[test]
fn unsupported_types_and_head_sizes_are_left_alone() {
    let g = bert_block(Opts::default());
    let mut s = specialised(&g);
    // i32 storage is not a kernel type.
    for vi in s.value_info.iter_mut().chain(&mut s.inputs) {
        vi.dtype = Some(DataType::I32);
    }
    assert_eq!(rewrite(&mut s, DataType::F16).unwrap(), 0);
    // D = 12: not a multiple of 8.
    let mut b = GraphBuilder::new("d12").opset(17);
    let f = DataType::F32;
    let q = b.input("q", f, &known(&[1, 2, 4, 12]));
    let kt = b.input("kt", f, &known(&[1, 2, 12, 4]));
    let v = b.input("v", f, &known(&[1, 2, 4, 12]));
    let s = b.node("MatMul", &[&q, &kt]).output();
    let p = b.node("Softmax", &[&s]).output();
    let _ = b.node("MatMul", &[&p, &v]).output_named("y");
    b.output_value(ValueInfo::unknown("y"));
    let (n, _) = fuse(&b.build().unwrap());
    assert_eq!(n, 0);
}

/// PyTorch's scaled_dot_product_attention export: Q and Kᵀ each times sqrt(scale), K
/// transposed through 3-D (dynamo), a float mask added, no scale on the scores.
#[test]
fn sdpa_export_pattern() {
    let (sq, sk) = (6usize, 9usize);
    let mut b = GraphBuilder::new("sdpa").opset(18);
    let f = DataType::F32;
    let q = b.input("q", f, &known(&[B, H, sq, D]));
    let k = b.input("k", f, &known(&[B, H, sk, D]));
    let v = b.input("v", f, &known(&[B, H, sk, D]));
    let mask = b.input("mask", f, &known(&[1, 1, sq, sk]));
    let s3 = i64s(&mut b, "s3", &[-1, sk as i64, D as i64]);
    let s4 = i64s(&mut b, "s4", &[B as i64, H as i64, D as i64, sk as i64]);
    let k3 = b.node("Reshape", &[&k, &s3]).output();
    let k3t = b
        .node("Transpose", &[&k3])
        .attr("perm", vec![0i64, 2, 1])
        .output();
    let kt = b.node("Reshape", &[&k3t, &s4]).output();
    let c = scalar(&mut b, "sqrt_scale", (1.0 / (D as f32).sqrt()).sqrt());
    let qs = b.node("Mul", &[&q, &c]).output();
    let kts = b.node("Mul", &[&kt, &c]).output();
    let s = b.node("MatMul", &[&qs, &kts]).output();
    let s = b.node("Add", &[&s, &mask]).output();
    let p = b.node("Softmax", &[&s]).attr("axis", -1i64).output();
    let _ = b.node("MatMul", &[&p, &v]).output_named("y");
    b.output_value(ValueInfo::unknown("y"));
    let g = b.build().unwrap();
    let (n, fused) = fuse(&g);
    assert_eq!(n, 1);
    assert_eq!(ops(&fused), ["Attention"]);
    let a = &fused.nodes[0];
    assert_eq!(a.inputs, ["q", "k", "v", "mask"]);
    assert_eq!(a.attr_ints(ATTR_K_PERM).unwrap().unwrap(), [0, 1, 2, 3]);
    let inputs = random_inputs(&g, 3);
    let err = rel_l2(&reference(&g, &inputs), &fused_on_host(&fused, &inputs));
    assert!(err < 1e-5, "rel-L2 {err}");
}

#[test]
fn two_layers_fuse_independently() {
    // Two attention blocks in a row (the second reads the first's output as Q, K and V
    // through separate transposes of one Reshape: that Reshape has three readers and stays).
    let mut b = GraphBuilder::new("two").opset(17);
    let f = DataType::F32;
    let s = 4usize;
    let x = b.input("x", f, &known(&[B, s, H * D]));
    let shape = i64s(&mut b, "shape", &[B as i64, s as i64, H as i64, D as i64]);
    let shape_o = i64s(&mut b, "shape_o", &[B as i64, s as i64, (H * D) as i64]);
    let c = scalar(&mut b, "c", (D as f32).sqrt());
    let mut cur = x;
    for layer in 0..2 {
        let r = b.node("Reshape", &[&cur, &shape]).output();
        let q = b
            .node("Transpose", &[&r])
            .attr("perm", vec![0i64, 2, 1, 3])
            .output();
        let kt = b
            .node("Transpose", &[&r])
            .attr("perm", vec![0i64, 2, 3, 1])
            .output();
        let v = b
            .node("Transpose", &[&r])
            .attr("perm", vec![0i64, 2, 1, 3])
            .output();
        let sc = b.node("MatMul", &[&q, &kt]).output();
        let sc = b.node("Div", &[&sc, &c]).output();
        let p = b.node("Softmax", &[&sc]).attr("axis", 3i64).output();
        let o = b.node("MatMul", &[&p, &v]).output();
        let t = b
            .node("Transpose", &[&o])
            .attr("perm", vec![0i64, 2, 1, 3])
            .output();
        let name = if layer == 1 { "y" } else { "h" };
        cur = b.node("Reshape", &[&t, &shape_o]).output_named(name);
    }
    b.output_value(ValueInfo::unknown("y"));
    let g = b.build().unwrap();
    let (n, fused) = fuse(&g);
    assert_eq!(n, 2);
    assert_eq!(fused.nodes.iter().filter(|n| n.op_type == OP).count(), 2);
    let a = fused.nodes.iter().find(|n| n.op_type == OP).unwrap();
    // The transposes of the shared Reshape had one reader each: absorbed.
    assert_eq!(a.inputs[0], a.inputs[1]);
    let inputs = random_inputs(&g, 11);
    let want = reference(&g, &inputs);
    // Evaluate the two fused nodes one after the other on the host (the Reshape after each
    // is a view: the fused node's output holds h's values).
    let mut first = fused.clone();
    let at = first.nodes.iter().position(|n| n.op_type == OP).unwrap();
    first.nodes.truncate(at + 1);
    let h = fused_on_host(&first, &inputs);
    let mut second = fused.clone();
    let keep_from = fused
        .nodes
        .iter()
        .position(|n| n.outputs.iter().any(|o| o == "h"))
        .unwrap()
        + 1;
    second.nodes.drain(..keep_from);
    second.inputs = vec![ValueInfo::tensor(
        "h",
        DataType::F32,
        kiln_core::Shape::from_known(&[B, s, H * D]),
    )];
    let mut in2 = HashMap::new();
    in2.insert("h".to_string(), (vec![B, s, H * D], h));
    let got = fused_on_host(&second, &in2);
    let err = rel_l2(&want, &got);
    assert!(err < 1e-5, "rel-L2 {err}");
}

#[test]
fn f32_engines_keep_the_library_path() {
    let mut s = specialised(&bert_block(Opts::default()));
    assert_eq!(rewrite(&mut s, DataType::F32).unwrap(), 0);
    assert!(!ops(&s).contains(&OP));
}
