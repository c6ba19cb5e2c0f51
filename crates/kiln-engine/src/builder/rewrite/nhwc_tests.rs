//! CPU tests of the NHWC rewrite: the structure it leaves (entry/exit conversions, kiln ops,
//! value_info), the KRSC weights' values, and the rewritten graph's results on kiln-reference
//! (its kiln ops spelled back as Transpose → FusedConv / pool → Transpose, the entry as
//! Transpose → Pad) against the original's on random inputs.

use std::collections::HashMap;

use kiln_core::{DataType, Dim};
use kiln_onnx::{GraphBuilder, MS_DOMAIN, MS_OPSET, OpsetImport};
use kiln_reference::{Interpreter, Value};

use super::*;
use crate::builder::lower;
use crate::builder::passes::optimize;
use crate::kernels::conv::kcrs_to_krsc;

/// The rewrite with channel padding on (off by default, see [`Options::pad_channels`]): these
/// tests cover the padding too.
fn rewrite(g: &mut Graph, compute: DataType) -> Result<usize> {
    rewrite_with(g, compute, Options { pad_channels: true })
}
use crate::runtime::libs::{LibDesc, lib_desc};

fn random(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect()
}

fn known(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

struct Net {
    b: GraphBuilder,
    rng: fastrand::Rng,
    k: usize,
}

impl Net {
    fn new(name: &str) -> Net {
        Net {
            b: GraphBuilder::new(name).opset(17),
            rng: fastrand::Rng::with_seed(11),
            k: 0,
        }
    }

    fn weight(&mut self, dims: &[usize]) -> kiln_onnx::builder::Value {
        self.k += 1;
        let n = dims.iter().product();
        let t = Tensor::from_vec(
            format!("w{}", self.k),
            dims.to_vec(),
            random(&mut self.rng, n),
        )
        .unwrap();
        self.b.initializer(t)
    }

    /// Conv with bias: `c_in` → `c_out`, square kernel `k`, stride, symmetric pad, group.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &kiln_onnx::builder::Value,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: i64,
        pads: [i64; 4],
        group: usize,
    ) -> kiln_onnx::builder::Value {
        let w = self.weight(&[c_out, c_in / group, k, k]);
        let b = self.weight(&[c_out]);
        self.b
            .node("Conv", &[x, &w, &b])
            .attr("pads", pads.to_vec())
            .attr("strides", vec![stride, stride])
            .attr("group", group as i64)
            .output()
    }
}

/// The optimised (fused) and specialised graph at `x` = `dims`.
fn specialised(g: &Graph, dims: &[usize]) -> Graph {
    let (opt, _) = optimize(g).unwrap();
    lower::specialize(&opt, &[("x".to_string(), dims.to_vec())]).unwrap()
}

/// `g` with its kiln ops spelled in ops kiln-reference runs.
fn as_reference(g: &Graph) -> Graph {
    let mut out = g.clone();
    out.nodes.clear();
    let tr = |name: String, x: &str, y: &str, perm: [i64; 4]| Node {
        name,
        op_type: "Transpose".into(),
        inputs: vec![x.to_string()],
        outputs: vec![y.to_string()],
        attributes: vec![Attribute::new("perm", AttrValue::Ints(perm.to_vec()))],
        ..Node::default()
    };
    for n in &g.nodes {
        if n.domain != KILN_DOMAIN {
            out.nodes.push(n.clone());
            continue;
        }
        let t = |s: &str| format!("{}@ref{s}", n.name);
        let y = &n.outputs[0];
        match n.op_type.as_str() {
            ENTRY_OP => {
                let c = g
                    .value(&n.inputs[0])
                    .unwrap()
                    .shape
                    .unwrap()
                    .as_known()
                    .unwrap()[1];
                let cp = g.value(y).unwrap().shape.unwrap().as_known().unwrap()[3];
                if cp == c {
                    out.nodes.push(tr(t("x"), &n.inputs[0], y, TO_NHWC));
                    continue;
                }
                out.nodes.push(tr(t("x"), &n.inputs[0], &t("xv"), TO_NHWC));
                let pads = Tensor::from_vec(
                    t("pads"),
                    vec![8],
                    vec![0, 0, 0, 0, 0, 0, 0, (cp - c) as i64],
                )
                .unwrap();
                out.initializers.push(pads);
                out.nodes.push(Node {
                    name: t("pad"),
                    op_type: "Pad".into(),
                    inputs: vec![t("xv"), t("pads")],
                    outputs: vec![y.clone()],
                    ..Node::default()
                });
            }
            CONV_OP => {
                out.nodes.push(tr(t("x"), &n.inputs[0], &t("xv"), TO_NCHW));
                out.nodes.push(tr(t("w"), &n.inputs[1], &t("wv"), TO_NCHW));
                let mut inputs = vec![t("xv"), t("wv"), n.inputs[2].clone()];
                if !n.inputs[3].is_empty() {
                    out.nodes.push(tr(t("z"), &n.inputs[3], &t("zv"), TO_NCHW));
                    inputs.push(t("zv"));
                }
                out.nodes.push(Node {
                    name: t("conv"),
                    op_type: "FusedConv".into(),
                    domain: MS_DOMAIN.into(),
                    inputs,
                    outputs: vec![t("yv")],
                    attributes: n.attributes.clone(),
                    ..Node::default()
                });
                out.nodes.push(tr(t("y"), &t("yv"), y, TO_NHWC));
            }
            POOL_OP => {
                let op = n.attr_string(POOL_ATTR).unwrap().unwrap();
                out.nodes.push(tr(t("x"), &n.inputs[0], &t("xv"), TO_NCHW));
                out.nodes.push(Node {
                    name: t("pool"),
                    op_type: op,
                    inputs: vec![t("xv")],
                    outputs: vec![t("yv")],
                    attributes: n
                        .attributes
                        .iter()
                        .filter(|a| a.name != POOL_ATTR)
                        .cloned()
                        .collect(),
                    ..Node::default()
                });
                out.nodes.push(tr(t("y"), &t("yv"), y, TO_NHWC));
            }
            other => panic!("unexpected kiln op {other}"),
        }
    }
    if out.opset_version(MS_DOMAIN).is_none() {
        out.opsets.push(OpsetImport {
            domain: MS_DOMAIN.into(),
            version: MS_OPSET,
        });
    }
    out
}

fn run(g: &Graph, dims: &[usize], seed: u64) -> HashMap<String, Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let x = Tensor::from_vec("x", dims.to_vec(), random(&mut rng, dims.iter().product())).unwrap();
    let inputs = HashMap::from([("x".to_string(), Value::from_tensor(&x).unwrap())]);
    Interpreter::new(g.clone()).unwrap().run(inputs).unwrap()
}

/// The rewritten graph computes what the specialised one does (every graph output).
fn same_results(spec: &Graph, rewritten: &Graph, dims: &[usize]) {
    let (want, got) = (run(spec, dims, 5), run(&as_reference(rewritten), dims, 5));
    assert_eq!(want.len(), got.len());
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(w.shape(), g.shape(), "{name}");
        let (w, g) = (w.to_f64_vec(), g.to_f64_vec());
        assert!(w.iter().any(|v| *v != 0.0), "{name}: all zeros");
        let d = w
            .iter()
            .zip(&g)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d < 1e-4, "{name}: max abs diff {d}");
    }
}

fn count(g: &Graph, op: &str) -> usize {
    g.nodes.iter().filter(|n| n.op_type == op).count()
}

fn transposes(g: &Graph, perm: [i64; 4]) -> usize {
    g.nodes
        .iter()
        .filter(|n| {
            n.op_type == "Transpose" && n.attr_ints("perm").ok().flatten() == Some(&perm[..])
        })
        .count()
}

/// Every node output has a concrete type and shape.
fn typed(g: &Graph) {
    for n in &g.nodes {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            let v = g
                .value(o)
                .unwrap_or_else(|| panic!("{o} has no value_info"));
            assert!(v.dtype.is_some(), "{o}");
            assert!(v.shape.and_then(|s| s.as_known()).is_some(), "{o}");
        }
    }
}

/// conv → relu → conv → add(skip) → relu → maxpool → GAP → flatten → gemm.
fn block_net() -> Graph {
    let mut n = Net::new("block");
    let x = n.b.input("x", DataType::F32, &known(&[2, 3, 12, 12]));
    let c1 = n.conv(&x, 3, 8, 3, 1, [1; 4], 1);
    let r1 = n.b.node("Relu", &[&c1]).output();
    let c2 = n.conv(&r1, 8, 8, 3, 1, [1; 4], 1);
    let s = n.b.node("Add", &[&c2, &r1]).output();
    let r2 = n.b.node("Relu", &[&s]).output();
    let p =
        n.b.node("MaxPool", &[&r2])
            .attr("kernel_shape", vec![3i64, 3])
            .attr("strides", vec![2i64, 2])
            .attr("pads", vec![1i64, 1, 1, 1])
            .output();
    let gap = n.b.node("GlobalAveragePool", &[&p]).output();
    let f = n.b.node("Flatten", &[&gap]).output();
    let wf = n.weight(&[5, 8]);
    let bf = n.weight(&[5]);
    let y =
        n.b.node("Gemm", &[&f, &wf, &bf])
            .attr("transB", 1i64)
            .output_named("y");
    n.b.output(&y, DataType::F32, &known(&[2, 5]));
    n.b.build().unwrap()
}

#[test]
fn a_residual_block_runs_in_nhwc_between_one_entry_and_no_exit_transpose() {
    let dims = [2, 3, 12, 12];
    let spec = specialised(&block_net(), &dims);
    assert_eq!(count(&spec, "FusedConv"), 2, "the fusion passes ran");
    let mut g = spec.clone();
    assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 2);
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(count(&g, "FusedConv") + count(&g, "Conv"), 0, "{ops:?}");
    assert_eq!(count(&g, CONV_OP), 2);
    assert_eq!(count(&g, "Transpose"), 0, "{ops:?}");
    assert_eq!(count(&g, ENTRY_OP), 1, "{ops:?}");
    // the entry reads the graph input and pads its 3 channels to 8
    let entry = g.nodes.iter().find(|n| n.op_type == ENTRY_OP).unwrap();
    assert_eq!(entry.inputs, ["x"]);
    assert_eq!(entry.domain, KILN_DOMAIN);
    let ev = g.value(&entry.outputs[0]).unwrap();
    assert_eq!(ev.shape.unwrap().as_known(), Some(vec![2, 12, 12, 8]));
    assert_eq!(ev.dtype, Some(DataType::F32));
    // MaxPool and GAP are NHWC pools; GAP's [N, 1, 1, C] leaves through a Reshape (a view)
    let pools: Vec<String> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == POOL_OP)
        .map(|n| n.attr_string(POOL_ATTR).unwrap().unwrap())
        .collect();
    assert_eq!(pools, ["MaxPool", "GlobalAveragePool"]);
    let gap = g
        .nodes
        .iter()
        .find(|n| n.attr_string(POOL_ATTR).ok().flatten().as_deref() == Some("GlobalAveragePool"))
        .unwrap();
    assert_eq!(
        g.value(&gap.outputs[0]).unwrap().shape.unwrap().as_known(),
        Some(vec![2, 1, 1, 8])
    );
    let reshape = g
        .nodes
        .iter()
        .find(|n| n.op_type == "Reshape" && n.inputs[0] == gap.outputs[0])
        .expect("the GAP's exit is a Reshape");
    let shape = g
        .initializer(&reshape.inputs[1])
        .unwrap()
        .to_i64_vec()
        .unwrap();
    assert_eq!(shape, [2, 8, 1, 1]);
    assert_eq!(count(&g, "Flatten") + count(&g, "Gemm"), 2);
    // the residual conv reads the first conv's NHWC output twice (X and Z)
    let convs: Vec<&Node> = g.nodes.iter().filter(|n| n.op_type == CONV_OP).collect();
    assert_eq!(convs[1].inputs[0], convs[0].outputs[0]);
    assert_eq!(convs[1].inputs[3], convs[0].outputs[0]);
    assert!(convs[0].inputs[3].is_empty());
    // NHWC values are declared with permuted dims
    assert_eq!(
        g.value(&convs[0].outputs[0])
            .unwrap()
            .shape
            .unwrap()
            .as_known(),
        Some(vec![2, 12, 12, 8])
    );
    typed(&g);
    // weights: KRSC copies of the fused convolutions' weights, values checked; the stem's
    // get zero input channels 3..8
    for (i, c) in convs.iter().enumerate() {
        let orig = spec.nodes.iter().find(|n| n.name == c.name).unwrap();
        let w = spec.initializer(&orig.inputs[1]).unwrap();
        let d: [usize; 4] = w.dims().try_into().unwrap();
        let krsc = kcrs_to_krsc(&w.to_f32_vec().unwrap(), d).unwrap();
        let cp = if i == 0 { 8 } else { d[1] };
        let want: Vec<f32> = krsc
            .chunks_exact(d[1])
            .flat_map(|row| {
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0.0, cp - d[1]))
            })
            .collect();
        let got = g.initializer(&c.inputs[1]).unwrap();
        assert_eq!(got.dims(), [d[0], d[2], d[3], cp]);
        assert_eq!(got.to_f32_vec().unwrap(), want);
        assert_ne!(c.inputs[1], orig.inputs[1]);
        // the original NCHW weights are gone from the specialised graph
        assert!(g.initializer(&orig.inputs[1]).is_none());
    }
    same_results(&spec, &g, &dims);
    // bf16 alike; f32 engines are left alone
    let mut b = spec.clone();
    assert_eq!(rewrite(&mut b, DataType::BF16).unwrap(), 2);
    let mut f = spec.clone();
    assert_eq!(rewrite(&mut f, DataType::F32).unwrap(), 0);
    assert_eq!(f, spec);
}

#[test]
fn the_rewritten_block_lowers_to_nhwc_cudnn_and_pool_steps() {
    let spec = specialised(&block_net(), &[2, 3, 12, 12]);
    let (g, report) =
        crate::builder::rewrite::rewrite(spec, DataType::F16, &crate::plan::Fusions::default())
            .unwrap();
    assert_eq!(report.nhwc_convs, 2);
    let p = lower::lower(&g, DataType::F16).unwrap();
    // the entry reads the bound f32 input itself: no boundary Cast of it (the one Cast
    // writes the f32 output)
    let casts: Vec<&lower::Step> = p
        .steps
        .iter()
        .filter(|s| s.kind == lower::StepKind::Cast)
        .collect();
    assert_eq!(casts.len(), 1, "{:?}", p.steps);
    assert_eq!(
        p.tensors[casts[0].outputs[0]].storage,
        lower::Storage::Output(0)
    );
    let entry = p
        .steps
        .iter()
        .find(|s| matches!(&s.kind, lower::StepKind::Node(n) if n.op_type == ENTRY_OP))
        .expect("an entry step");
    let (xi, yi) = (entry.inputs[0].unwrap(), entry.outputs[0]);
    assert_eq!(p.tensors[xi].storage, lower::Storage::Input(0));
    assert_eq!(p.tensors[xi].dtype, DataType::F32);
    assert_eq!(p.tensors[yi].dtype, DataType::F16);
    // the engine's default keeps the stem's 3 channels (Options::pad_channels is off)
    assert_eq!(p.tensors[yi].dims, [2, 12, 12, 3]);
    let lower::StepKind::Node(en) = &entry.kind else {
        unreachable!()
    };
    let m = crate::runtime::kiln_ops::modules(entry, &p, en).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].name, "nhwc_entry_f32_f16");
    let mut flags = Vec::new();
    let mut pools = 0;
    for s in &p.steps {
        let lower::StepKind::Node(n) = &s.kind else {
            continue;
        };
        match n.op_type.as_str() {
            CONV_OP => {
                let Some(LibDesc::Conv(d)) = lib_desc(s, &p, MathMode::Fp16).unwrap() else {
                    panic!("no cuDNN description");
                };
                assert_eq!(d.layout, ConvLayout::Nhwc);
                // the stem reads the input's 3 channels, the next convolution 8
                let dims = d.input_dims();
                assert!(dims == [2, 3, 12, 12] || dims == [2, 8, 12, 12], "{dims:?}");
                flags.push((d.bias, d.relu, d.residual));
            }
            POOL_OP => {
                let m = crate::runtime::kiln_ops::modules(s, &p, n).unwrap();
                assert_eq!(m.len(), 1);
                assert_eq!(m[0].name, "pool_nhwc_f16");
                pools += 1;
            }
            _ => {}
        }
    }
    assert_eq!(flags, [(true, true, false), (true, true, true)]);
    assert_eq!(pools, 2);
    // with the fusion off the graph keeps its FusedConvs
    let spec = specialised(&block_net(), &[2, 3, 12, 12]);
    let (g, report) = crate::builder::rewrite::rewrite(
        spec.clone(),
        DataType::F16,
        &crate::plan::Fusions::none(),
    )
    .unwrap();
    assert_eq!(report.nhwc_convs, 0);
    assert_eq!(g, spec);
}

/// Strided and 1×1 downsample convolutions, a depthwise one, a per-channel scale, Sigmoid,
/// AveragePool, a Concat of channels, a graph output inside the region and a convolution
/// with asymmetric pads (left NCHW).
fn varied_net() -> Graph {
    let mut n = Net::new("varied");
    let x = n.b.input("x", DataType::F32, &known(&[2, 4, 11, 11]));
    let a = n.conv(&x, 4, 8, 3, 2, [1; 4], 1);
    let a = n.b.node("Relu", &[&a]).output();
    let a = n.conv(&a, 8, 8, 3, 1, [1; 4], 1);
    let down = n.conv(&x, 4, 8, 1, 2, [0; 4], 1);
    let s = n.b.node("Add", &[&a, &down]).output();
    let s = n.b.node("Relu", &[&s]).output_named("mid");
    n.b.output(&s, DataType::F32, &known(&[2, 8, 6, 6]));
    let dw = n.conv(&s, 8, 8, 3, 1, [1; 4], 8);
    let scale = n.weight(&[8, 1, 1]);
    let m = n.b.node("Mul", &[&scale, &dw]).output();
    let m = n.b.node("Sigmoid", &[&m]).output();
    let cat = n.b.node("Concat", &[&m, &s]).attr("axis", 1i64).output();
    let avg =
        n.b.node("AveragePool", &[&cat])
            .attr("kernel_shape", vec![2i64, 2])
            .attr("strides", vec![2i64, 2])
            .output();
    let asym = n.conv(&avg, 16, 4, 2, 1, [0, 0, 1, 1], 1);
    let y = n.b.node("Relu", &[&asym]).output_named("y");
    n.b.output(&y, DataType::F32, &known(&[2, 4, 3, 3]));
    n.b.build().unwrap()
}

#[test]
fn strided_downsample_depthwise_concat_and_outputs_keep_their_results() {
    let dims = [2, 4, 11, 11];
    let spec = specialised(&varied_net(), &dims);
    let mut g = spec.clone();
    // four convolutions convert; the asymmetric one stays
    assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 4);
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(count(&g, "FusedConv") + count(&g, "Conv"), 1, "{ops:?}");
    // entry: x (read by two convolutions, converted once, 4 channels padded to 8); exits: the
    // graph output 'mid' and the AveragePool's result for the asymmetric convolution
    assert_eq!(transposes(&g, TO_NHWC), 0, "{ops:?}");
    assert_eq!(count(&g, ENTRY_OP), 1, "{ops:?}");
    let ex = &g.nodes[0].outputs[0];
    assert_eq!(
        g.value(ex).unwrap().shape.unwrap().as_known(),
        Some(vec![2, 11, 11, 8])
    );
    let stem: Vec<&Node> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == CONV_OP && &n.inputs[0] == ex)
        .collect();
    assert_eq!(stem.len(), 2);
    for c in stem {
        assert_eq!(g.initializer(&c.inputs[1]).unwrap().dims()[3], 8);
    }
    assert_eq!(transposes(&g, TO_NCHW), 2, "{ops:?}");
    assert!(
        g.nodes
            .iter()
            .any(|n| n.op_type == "Transpose" && n.outputs[0] == "mid")
    );
    let cat = g.nodes.iter().find(|n| n.op_type == "Concat").unwrap();
    assert_eq!(cat.attr_int("axis").unwrap(), Some(3));
    // the depthwise convolution keeps its group; its weights are [8, 3, 3, 1]
    let dw = g
        .nodes
        .iter()
        .find(|n| n.op_type == CONV_OP && n.attr_int("group").unwrap() == Some(8))
        .unwrap();
    assert_eq!(g.initializer(&dw.inputs[1]).unwrap().dims(), [8, 3, 3, 1]);
    // the per-channel scale is re-declared [C]
    let mul = g.nodes.iter().find(|n| n.op_type == "Mul").unwrap();
    assert_eq!(g.initializer(&mul.inputs[0]).unwrap().dims(), [8]);
    typed(&g);
    same_results(&spec, &g, &dims);
    lower::lower(&g, DataType::F16).unwrap();
}

#[test]
fn nothing_changes_without_a_convertible_convolution() {
    // 1-D convolution and a pool only
    let mut n = Net::new("conv1d");
    let x = n.b.input("x", DataType::F32, &known(&[2, 4, 9]));
    let w = n.weight(&[6, 4, 3]);
    let c = n.b.node("Conv", &[&x, &w]).output();
    let y = n.b.node("Relu", &[&c]).output_named("y");
    n.b.output(&y, DataType::F32, &known(&[2, 6, 7]));
    let spec = specialised(&n.b.build().unwrap(), &[2, 4, 9]);
    let mut g = spec.clone();
    assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 0);
    assert_eq!(g, spec);
    // weights that are a graph input
    let mut b = GraphBuilder::new("winput").opset(17);
    let x = b.input("x", DataType::F32, &known(&[1, 2, 5, 5]));
    let w = b.input("w", DataType::F32, &known(&[3, 2, 3, 3]));
    let y = b.node("Conv", &[&x, &w]).output_named("y");
    b.output(&y, DataType::F32, &known(&[1, 3, 3, 3]));
    let (opt, _) = optimize(&b.build().unwrap()).unwrap();
    let spec = lower::specialize(
        &opt,
        &[
            ("x".to_string(), vec![1, 2, 5, 5]),
            ("w".to_string(), vec![3, 2, 3, 3]),
        ],
    )
    .unwrap();
    let mut g = spec.clone();
    assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 0);
    assert_eq!(g, spec);
}

#[test]
fn krsc_reorders_any_element_size() {
    let v: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32).collect();
    let t = Tensor::from_vec("w", vec![2, 3, 2, 2], v.clone()).unwrap();
    let k = krsc_bytes(&t).unwrap();
    assert_eq!(k.dims(), [2, 2, 2, 3]);
    assert_eq!(
        k.to_f32_vec().unwrap(),
        kcrs_to_krsc(&v, [2, 3, 2, 2]).unwrap()
    );
    // element [k=1, r=0, s=1, c=2] is ONNX's [1, 2, 0, 1]
    assert_eq!(
        k.to_f32_vec().unwrap()[(2 * 2 + 1) * 3 + 2],
        v[((3 + 2) * 2) * 2 + 1]
    );
    let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
    let t = Tensor::from_vec("h", vec![2, 3, 2, 2], h.clone()).unwrap();
    let k = krsc_bytes(&t).unwrap();
    assert_eq!(k.dtype(), DataType::F16);
    assert_eq!(
        k.to_f32_vec().unwrap(),
        kcrs_to_krsc(&v, [2, 3, 2, 2]).unwrap()
    );
}

#[test]
fn the_fixture_cnns_keep_their_results() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    for f in ["cnn_legacy", "cnn_dynamo"] {
        let g = kiln_onnx::load(dir.join(format!("{f}.onnx"))).unwrap();
        let dims = [2, 3, 32, 32];
        let spec = specialised(&g, &dims);
        let mut r = spec.clone();
        let convs = rewrite(&mut r, DataType::F16).unwrap();
        let ops: Vec<&str> = r.nodes.iter().map(|n| n.op_type.as_str()).collect();
        println!("{f}: {convs} convs, {ops:?}");
        assert!(convs > 0, "{f}: {ops:?}");
        assert_eq!(
            count(&r, "Conv") + count(&r, "FusedConv"),
            0,
            "{f}: {ops:?}"
        );
        assert_eq!(transposes(&r, TO_NHWC), 0, "{f}: {ops:?}");
        assert_eq!(count(&r, ENTRY_OP), 1, "{f}: {ops:?}");
        assert_eq!(transposes(&r, TO_NCHW), 0, "{f}: {ops:?}");
        assert_eq!(count(&r, "ReduceMean"), 0, "{f}: {ops:?}");
        typed(&r);
        same_results(&spec, &r, &dims);
        let p = lower::lower(&r, DataType::F16).unwrap();
        // the entry absorbs the input's boundary Cast
        assert!(
            !p.steps.iter().any(|s| s.kind == lower::StepKind::Cast
                && matches!(
                    p.tensors[s.inputs[0].unwrap()].storage,
                    lower::Storage::Input(_)
                )),
            "{f}"
        );
    }
}

#[test]
fn channels_are_padded_only_where_every_reader_is_an_ungrouped_convolution() {
    let entry_dims = |g: &Graph| -> Vec<Vec<usize>> {
        g.nodes
            .iter()
            .filter(|n| n.op_type == ENTRY_OP)
            .map(|n| {
                g.value(&n.outputs[0])
                    .unwrap()
                    .shape
                    .unwrap()
                    .as_known()
                    .unwrap()
            })
            .collect()
    };
    // x read by a convolution and by the residual Add after it: not padded
    let mut n = Net::new("residual_input");
    let x = n.b.input("x", DataType::F32, &known(&[1, 3, 6, 7]));
    let c = n.conv(&x, 3, 3, 3, 1, [1; 4], 1);
    let s = n.b.node("Add", &[&c, &x]).output();
    let y = n.b.node("Relu", &[&s]).output_named("y");
    n.b.output(&y, DataType::F32, &known(&[1, 3, 6, 7]));
    let spec = specialised(&n.b.build().unwrap(), &[1, 3, 6, 7]);
    let mut g = spec.clone();
    assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 1);
    assert_eq!(entry_dims(&g), [vec![1, 6, 7, 3]]);
    let conv = g.nodes.iter().find(|n| n.op_type == CONV_OP).unwrap();
    assert_eq!(g.initializer(&conv.inputs[1]).unwrap().dims(), [3, 3, 3, 3]);
    typed(&g);
    same_results(&spec, &g, &[1, 3, 6, 7]);
    lower::lower(&g, DataType::F16).unwrap();

    // one channel (a view before): an entry padded to 8; a grouped convolution's input (12
    // channels, 2 groups): not padded; 16 channels: an unpadded entry
    let mut n = Net::new("varied_entries");
    let x = n.b.input("x", DataType::F32, &known(&[2, 1, 5, 5]));
    let a = n.conv(&x, 1, 12, 3, 1, [1; 4], 1);
    let a = n.b.node("Relu", &[&a]).output();
    // Softmax over the channels stays NCHW: the next convolutions enter again
    let r = n.b.node("Softmax", &[&a]).attr("axis", 1i64).output();
    let gr = n.conv(&r, 12, 16, 3, 1, [1; 4], 2);
    let t = n.b.node("Softmax", &[&gr]).attr("axis", 1i64).output();
    let w = n.conv(&t, 16, 8, 1, 1, [0; 4], 1);
    let y = n.b.node("Relu", &[&w]).output_named("y");
    n.b.output(&y, DataType::F32, &known(&[2, 8, 5, 5]));
    let spec = specialised(&n.b.build().unwrap(), &[2, 1, 5, 5]);
    let mut g = spec.clone();
    assert_eq!(rewrite(&mut g, DataType::BF16).unwrap(), 3);
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        entry_dims(&g),
        [vec![2, 5, 5, 8], vec![2, 5, 5, 12], vec![2, 5, 5, 16]],
        "{ops:?}"
    );
    let convs: Vec<&Node> = g.nodes.iter().filter(|n| n.op_type == CONV_OP).collect();
    let wdims: Vec<Vec<usize>> = convs
        .iter()
        .map(|c| g.initializer(&c.inputs[1]).unwrap().dims().to_vec())
        .collect();
    assert_eq!(
        wdims,
        [vec![12, 3, 3, 8], vec![16, 3, 3, 6], vec![8, 1, 1, 16]]
    );
    typed(&g);
    same_results(&spec, &g, &[2, 1, 5, 5]);
    let p = lower::lower(&g, DataType::BF16).unwrap();
    assert!(!p.steps.iter().any(|s| s.kind == lower::StepKind::Cast
        && p.tensors[s.inputs[0].unwrap()].storage == lower::Storage::Input(0)));

    // x also read outside the region (Flatten): the boundary Cast stays, and the entry
    // reads the cast copy
    let mut n = Net::new("shared_input");
    let x = n.b.input("x", DataType::F32, &known(&[1, 3, 4, 4]));
    let c = n.conv(&x, 3, 8, 3, 1, [1; 4], 1);
    let y = n.b.node("Relu", &[&c]).output_named("y");
    n.b.output(&y, DataType::F32, &known(&[1, 8, 4, 4]));
    let f = n.b.node("Flatten", &[&x]).output_named("f");
    n.b.output(&f, DataType::F32, &known(&[1, 48]));
    let spec = specialised(&n.b.build().unwrap(), &[1, 3, 4, 4]);
    let mut g = spec.clone();
    assert_eq!(rewrite(&mut g, DataType::F16).unwrap(), 1);
    assert_eq!(entry_dims(&g), [vec![1, 4, 4, 3]]);
    same_results(&spec, &g, &[1, 3, 4, 4]);
    let p = lower::lower(&g, DataType::F16).unwrap();
    let entry = p
        .steps
        .iter()
        .find(|s| matches!(&s.kind, lower::StepKind::Node(n) if n.op_type == ENTRY_OP))
        .unwrap();
    assert_eq!(p.tensors[entry.inputs[0].unwrap()].dtype, DataType::F16);
    assert!(p.steps.iter().any(|s| s.kind == lower::StepKind::Cast
        && p.tensors[s.inputs[0].unwrap()].storage == lower::Storage::Input(0)));
}

#[test]
fn padded_krsc_weights_keep_each_row_and_add_zeros() {
    let v: Vec<f32> = (1..=2 * 2 * 3).map(|i| i as f32).collect();
    let t = Tensor::from_vec("w", vec![2, 1, 2, 3], v.clone()).unwrap();
    let p = pad_channels(t.clone(), 5).unwrap();
    assert_eq!(p.dims(), [2, 1, 2, 5]);
    let got = p.to_f32_vec().unwrap();
    for (row, want) in got.chunks_exact(5).zip(v.chunks_exact(3)) {
        assert_eq!(&row[..3], want);
        assert_eq!(&row[3..], [0.0, 0.0]);
    }
    assert_eq!(pad_channels(t.clone(), 3).unwrap(), t);
}
