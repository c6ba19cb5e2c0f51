//! CPU tests of the builder: passes keep the model's results (checked with kiln-reference),
//! lowering and the memory plan of the committed fixtures, build errors.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_core::{DataType, OptimizationProfile, Precision, ProfileInput, Shape};
use kiln_onnx::{Graph, Node, Tensor, ValueInfo};
use kiln_reference::{Interpreter, Value};

use super::lower::{self, Storage};
use super::*;

pub(crate) const FIXTURES: &[&str] = &[
    "mlp_legacy",
    "mlp_dynamo",
    "cnn_legacy",
    "cnn_dynamo",
    "transformer_legacy",
    "transformer_dynamo",
];

pub(crate) fn fixture(name: &str) -> Graph {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/{name}.onnx"));
    kiln_onnx::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

type Shapes = Vec<(String, Vec<usize>)>;

/// Random inputs for `graph` with the batch dim set to `batch`.
fn inputs(graph: &Graph, batch: usize, seed: u64) -> (Shapes, HashMap<String, Value>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut shapes = Vec::new();
    let mut values = HashMap::new();
    for vi in &graph.inputs {
        let dims: Vec<usize> = vi
            .shape
            .as_ref()
            .unwrap()
            .dims()
            .iter()
            .map(|d| d.known().unwrap_or(batch))
            .collect();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect();
        let t = Tensor::from_vec(vi.name.clone(), dims.clone(), data).unwrap();
        values.insert(vi.name.clone(), Value::from_tensor(&t).unwrap());
        shapes.push((vi.name.clone(), dims));
    }
    (shapes, values)
}

fn max_rel_diff(a: &Value, b: &Value) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = a.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn passes_keep_results_on_every_fixture() {
    for name in FIXTURES {
        let g = fixture(name);
        let (opt, report) = passes::optimize(&g).unwrap();
        let (shapes, vals) = inputs(&g, 3, 11);
        let want = Interpreter::new(g.clone())
            .unwrap()
            .run(vals.clone())
            .unwrap();
        let got = Interpreter::new(opt.clone())
            .unwrap()
            .run(vals.clone())
            .unwrap();
        for o in &g.outputs {
            let d = max_rel_diff(&want[&o.name], &got[&o.name]);
            assert!(d < 1e-5, "{name} output {}: {d}", o.name);
        }
        // Specialisation folds the shape arithmetic and keeps the results too.
        let spec = lower::specialize(&opt, &shapes).unwrap();
        assert!(
            !spec
                .nodes
                .iter()
                .any(|n| matches!(n.op_type.as_str(), "Shape" | "Constant" | "Identity")),
            "{name}: {:?}",
            spec.op_histogram()
        );
        let got = Interpreter::new(spec).unwrap().run(vals).unwrap();
        for o in &g.outputs {
            let d = max_rel_diff(&want[&o.name], &got[&o.name]);
            assert!(d < 1e-5, "{name} specialised output {}: {d}", o.name);
        }
        if *name == "cnn_legacy" {
            // Three BatchNormalizations follow a Conv; the fourth reads the residual Add.
            assert_eq!(report.folded_batchnorms, 3, "{name}: {report:?}");
            assert_eq!(
                opt.nodes
                    .iter()
                    .filter(|n| n.op_type == "BatchNormalization")
                    .count(),
                1
            );
        }
    }
}

#[test]
fn lowering_places_every_fixture() {
    for name in FIXTURES {
        let (opt, _) = passes::optimize(&fixture(name)).unwrap();
        for batch in [1, 8] {
            let (shapes, _) = inputs(&opt, batch, 1);
            let g = lower::specialize(&opt, &shapes).unwrap();
            for compute in [DataType::F32, DataType::F16, DataType::BF16] {
                let p = lower::lower(&g, compute).unwrap();
                assert_eq!(p.output_dims.len(), opt.outputs.len());
                assert_eq!(p.output_dims[0][0], batch, "{name}");
                // Arena tensors with overlapping lifetimes never share bytes.
                let mut life: HashMap<usize, (usize, usize)> = HashMap::new();
                for (s, st) in p.steps.iter().enumerate() {
                    for &t in st.inputs.iter().flatten().chain(&st.outputs) {
                        let r = lower::root(&p.tensors, t);
                        let e = life.entry(r).or_insert((s, s));
                        e.1 = s;
                    }
                }
                let arena: Vec<(usize, usize, usize, usize)> = life
                    .iter()
                    .filter_map(|(&t, &(a, b))| match p.tensors[t].storage {
                        Storage::Arena(off) => Some((off, off + p.tensors[t].bytes(), a, b)),
                        _ => None,
                    })
                    .collect();
                for (i, x) in arena.iter().enumerate() {
                    assert!(x.1 <= p.arena_bytes);
                    for y in &arena[i + 1..] {
                        let live = x.2 <= y.3 && y.2 <= x.3;
                        assert!(!live || x.1 <= y.0 || y.1 <= x.0, "{name}: {x:?} {y:?}");
                    }
                }
                if compute != DataType::F32 {
                    assert!(p.tensors.iter().any(|t| t.dtype == compute));
                    // I/O keeps the model's declared types.
                    for t in &p.tensors {
                        if matches!(t.storage, Storage::Input(_) | Storage::Output(_)) {
                            assert_eq!(t.dtype, DataType::F32, "{name}: {}", t.name);
                        }
                    }
                }
            }
        }
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: format!("n_{}", outputs[0]),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..Node::default()
    }
}

#[test]
fn unsupported_nodes_are_listed_together() {
    let g = Graph {
        inputs: vec![ValueInfo::tensor(
            "x",
            DataType::F32,
            Shape::from_known(&[2]),
        )],
        outputs: vec![ValueInfo::tensor(
            "z",
            DataType::F32,
            Shape::from_known(&[2]),
        )],
        nodes: vec![
            node("Frobnicate", &["x"], &["y"]),
            node("Zorch", &["y"], &["z"]),
        ],
        ..Graph::default()
    };
    let e = prepare(&g, &BuildConfig::default(), Fingerprint::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Frobnicate") && e.contains("Zorch") && e.contains("2 node"),
        "{e}"
    );
}

#[test]
fn identity_and_dead_nodes() {
    let g = Graph {
        inputs: vec![ValueInfo::tensor(
            "x",
            DataType::F32,
            Shape::from_known(&[2]),
        )],
        outputs: vec![ValueInfo::tensor(
            "y",
            DataType::F32,
            Shape::from_known(&[2]),
        )],
        nodes: vec![
            node("Identity", &["x"], &["a"]),
            node("Relu", &["a"], &["b"]),
            node("Exp", &["b"], &["dead"]),
            node("Identity", &["b"], &["y"]),
        ],
        ..Graph::default()
    };
    let (opt, r) = passes::optimize(&g).unwrap();
    let ops: Vec<&str> = opt.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Relu", "Identity"]);
    assert_eq!((r.removed_identities, r.dead_nodes), (1, 1));
    assert_eq!(opt.nodes[0].inputs, ["x"]);
}

#[test]
fn plans_of_the_fixtures_round_trip() {
    for name in FIXTURES {
        let g = fixture(name);
        let rank = g.inputs[0].shape.as_ref().unwrap().rank();
        let fixed: Vec<usize> = g.inputs[0].shape.as_ref().unwrap().dims()[1..]
            .iter()
            .map(|d| d.known().unwrap())
            .collect();
        let at = |b: usize| [vec![b], fixed.clone()].concat();
        let profile = OptimizationProfile {
            inputs: vec![ProfileInput {
                name: g.inputs[0].name.clone(),
                min: at(1),
                opt: at(4),
                max: at(32),
            }],
        };
        for precision in [Precision::Fp32, Precision::Fp16] {
            let cfg = BuildConfig {
                precision,
                profiles: vec![profile.clone()],
                ..BuildConfig::default()
            };
            let plan = prepare(&g, &cfg, Fingerprint::default()).unwrap();
            assert_eq!(plan.header.inputs[0].shape.rank(), rank);
            let bytes = plan.to_bytes().unwrap();
            let back = Plan::from_bytes(&bytes).unwrap();
            assert_eq!(back, plan);
            assert_eq!(
                back.graph().unwrap().nodes.len(),
                passes::optimize(&g).unwrap().0.nodes.len()
            );
        }
        // Without a profile a dynamic batch is a configuration error naming the input.
        let e = prepare(&g, &BuildConfig::default(), Fingerprint::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("input '{}'", g.inputs[0].name)), "{e}");
    }
}

#[test]
fn bad_configs() {
    let g = fixture("mlp_legacy");
    let cfg = BuildConfig {
        precision: Precision::Int8,
        ..BuildConfig::default()
    };
    assert!(prepare(&g, &cfg, Fingerprint::default()).is_err());
    let cfg = BuildConfig {
        profiles: vec![OptimizationProfile {
            inputs: vec![ProfileInput {
                name: "nope".into(),
                min: vec![1],
                opt: vec![1],
                max: vec![1],
            }],
        }],
        ..BuildConfig::default()
    };
    let e = prepare(&g, &cfg, Fingerprint::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("'nope'"), "{e}");
}
