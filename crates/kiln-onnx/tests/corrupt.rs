//! Hostile and corrupt inputs: the loader must return (Ok or Err) and never panic or overflow
//! its stack. Every fixture under `fixtures/` and a few generated models are truncated,
//! bit-flipped and overwritten; random bytes and deep nesting bombs are tried too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_shape_proto, type_proto,
};

/// Seeded xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
}

struct Harness {
    tried: usize,
    ok: usize,
}

impl Harness {
    /// Loads `bytes`; a panic is turned into a test failure naming the variant.
    fn try_bytes(&mut self, what: &dyn Fn() -> String, bytes: &[u8]) {
        self.tried += 1;
        match catch_unwind(AssertUnwindSafe(|| kiln_onnx::from_bytes(bytes))) {
            Ok(Ok(_)) => self.ok += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(!msg.is_empty(), "{}: empty error message", what());
            }
            Err(_) => panic!("the loader panicked on {} ({} bytes)", what(), bytes.len()),
        }
    }

    fn mutate(&mut self, name: &str, original: &[u8], seed: u64) {
        let len = original.len();
        // Every truncation on a coarse grid, plus the last 64.
        let step = (len / 96).max(1);
        let mut cuts: Vec<usize> = (0..len).step_by(step).collect();
        cuts.extend(len.saturating_sub(64)..len);
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            self.try_bytes(&|| format!("{name} truncated to {cut}"), &original[..cut]);
        }
        // Single-bit flips and byte overwrites at seeded positions.
        let mut rng = Rng(seed);
        let mut buf = original.to_vec();
        for _ in 0..300 {
            let pos = rng.below(len);
            let bit = rng.below(8);
            buf[pos] ^= 1 << bit;
            self.try_bytes(
                &|| format!("{name} with bit {bit} of byte {pos} flipped"),
                &buf,
            );
            buf[pos] = original[pos];
        }
        for _ in 0..200 {
            let pos = rng.below(len);
            let value = rng.next() as u8;
            buf[pos] = value;
            self.try_bytes(
                &|| format!("{name} with byte {pos} set to {value:#04x}"),
                &buf,
            );
            buf[pos] = original[pos];
        }
        // A few multi-byte corruptions: groups of 4 random bytes.
        for _ in 0..50 {
            let pos = rng.below(len);
            let end = (pos + 4).min(len);
            for b in &mut buf[pos..end] {
                *b = rng.next() as u8;
            }
            self.try_bytes(
                &|| format!("{name} with bytes {pos}..{end} randomised"),
                &buf,
            );
            buf[pos..end].copy_from_slice(&original[pos..end]);
        }
    }
}

fn fixtures() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
        &mut out,
    );
    out.sort();
    out
}

// ------------------------------------------------------------------ generated models

fn value(name: &str, dims: &[&str]) -> ValueInfoProto {
    let mut s = TensorShapeProto::new();
    for d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(match d.parse::<i64>() {
            Ok(n) => tensor_shape_proto::dimension::Value::DimValue(n),
            Err(_) => tensor_shape_proto::dimension::Value::DimParam(d.to_string()),
        });
        s.dim.push(dim);
    }
    let mut t = type_proto::Tensor::new();
    t.elem_type = 1;
    t.shape = Some(s).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(t));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(tp).into();
    v
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    let mut n = NodeProto::new();
    n.name = name.into();
    n.op_type = op.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n
}

fn model(g: GraphProto) -> ModelProto {
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = OperatorSetIdProto::new();
    o.version = 17;
    m.opset_import.push(o);
    m.producer_name = "corrupt-test".into();
    m.graph = Some(g).into();
    m
}

fn mlp() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "mlp".into();
    g.input.push(value("x", &["batch", "4"]));
    g.output.push(value("y", &["batch", "3"]));
    let mut w = TensorProto::new();
    w.name = "W".into();
    w.data_type = 1;
    w.dims = vec![4, 3];
    w.raw_data = (0..48).collect();
    g.initializer.push(w);
    let mut b = TensorProto::new();
    b.name = "B".into();
    b.data_type = 1;
    b.dims = vec![3];
    b.float_data = vec![0.5, 1.5, -2.0];
    g.initializer.push(b);
    let mut s = TensorProto::new();
    s.name = "shape".into();
    s.data_type = 7;
    s.dims = vec![2];
    s.int64_data = vec![-1, 3];
    g.initializer.push(s);
    g.node.push(node("mm", "MatMul", &["x", "W"], &["h"]));
    g.node.push(node("add", "Add", &["h", "B"], &["hb"]));
    let mut act = node("act", "LeakyRelu", &["hb"], &["r"]);
    let mut a = AttributeProto::new();
    a.name = "alpha".into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = 0.1;
    act.attribute.push(a);
    g.node.push(act);
    g.node.push(node("rs", "Reshape", &["r", "shape"], &["y"]));
    model(g)
}

fn with_subgraph() -> ModelProto {
    let mut branch = GraphProto::new();
    branch.name = "branch".into();
    branch.node.push(node("inner", "Relu", &["x"], &["bo"]));
    branch.output.push(value("bo", &["batch", "4"]));
    let mut iff = node("if", "If", &["c"], &["y"]);
    for name in ["then_branch", "else_branch"] {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = AttributeType::GRAPH.into();
        a.g = Some(branch.clone()).into();
        iff.attribute.push(a);
    }
    let mut k = node("k", "Constant", &[], &["c"]);
    let mut a = AttributeProto::new();
    a.name = "value".into();
    a.type_ = AttributeType::TENSOR.into();
    let mut t = TensorProto::new();
    t.data_type = 9;
    t.int32_data = vec![1];
    a.t = Some(t).into();
    k.attribute.push(a);
    let mut g = GraphProto::new();
    g.name = "cond".into();
    g.input.push(value("x", &["batch", "4"]));
    g.output.push(value("y", &["batch", "4"]));
    g.node.push(iff);
    g.node.push(k);
    model(g)
}

/// ModelProto { graph { node { attribute { g { node { ... } } } } } } nested `levels` deep,
/// written by hand so it does not need the decoder's own recursion.
fn nested_graph_bomb(levels: usize) -> Vec<u8> {
    fn ld(field: u8, payload: Vec<u8>) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2];
        let mut n = payload.len() as u64;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend(payload);
        out
    }
    let mut bytes = Vec::new();
    for i in 0..levels {
        bytes = match i % 3 {
            0 => ld(6, bytes), // AttributeProto.g
            1 => ld(5, bytes), // NodeProto.attribute
            _ => ld(1, bytes), // GraphProto.node
        };
    }
    let mut out = vec![0x08, 0x08]; // ir_version = 8
    out.extend(ld(8, vec![0x10, 17])); // opset_import { version: 17 }
    out.extend(ld(7, bytes)); // graph
    out
}

/// TypeProto { sequence_type { elem_type { sequence_type { ... } } } } in a graph input.
fn nested_type_bomb(levels: usize) -> Vec<u8> {
    let mut m = mlp();
    let mut t = TypeProto::new();
    for _ in 0..levels {
        let mut seq = type_proto::Sequence::new();
        seq.elem_type = Some(t).into();
        t = TypeProto::new();
        t.value = Some(type_proto::Value::SequenceType(seq));
    }
    let mut v = ValueInfoProto::new();
    v.name = "deep".into();
    v.type_ = Some(t).into();
    if let Some(g) = m.graph.as_mut() {
        g.input.push(v);
    }
    m.write_to_bytes().expect("serialise")
}

#[test]
fn corrupt_inputs_never_panic() {
    let mut h = Harness { tried: 0, ok: 0 };

    h.try_bytes(&|| "empty input".into(), &[]);

    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for i in 0..100 {
        let len = 1 + rng.below(4096);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        h.try_bytes(&|| format!("random buffer #{i}"), &bytes);
    }

    // Group bombs: bare, and after a valid model.
    let bomb = vec![0x0Bu8; 1 << 20];
    h.try_bytes(&|| "START_GROUP bomb".into(), &bomb);
    let mut after = mlp().write_to_bytes().expect("serialise");
    after.extend_from_slice(&bomb);
    h.try_bytes(&|| "START_GROUP bomb after a model".into(), &after);
    assert!(kiln_onnx::from_bytes(&after).is_err());

    // Nesting bombs: within and past the limit.
    for levels in [30, 96, 99, 100, 101, 5_000] {
        h.try_bytes(
            &|| format!("graph nesting bomb, {levels} levels"),
            &nested_graph_bomb(levels),
        );
    }
    assert!(kiln_onnx::from_bytes(&nested_graph_bomb(5_000)).is_err());
    for levels in [20, 48, 49, 60, 2_000] {
        h.try_bytes(
            &|| format!("type nesting bomb, {levels} levels"),
            &nested_type_bomb(levels),
        );
    }

    let mut models: Vec<(String, Vec<u8>)> = vec![
        (
            "generated mlp".into(),
            mlp().write_to_bytes().expect("serialise"),
        ),
        (
            "generated If model".into(),
            with_subgraph().write_to_bytes().expect("serialise"),
        ),
    ];
    for (name, bytes) in &models {
        assert!(
            kiln_onnx::from_bytes(bytes).is_ok(),
            "the uncorrupted {name} should load: {:?}",
            kiln_onnx::from_bytes(bytes).err()
        );
    }
    let fixtures = fixtures();
    for p in &fixtures {
        match std::fs::read(p) {
            Ok(bytes) if bytes.len() <= 64 << 20 => models.push((p.display().to_string(), bytes)),
            Ok(_) => println!("skipping {} (over 64 MiB)", p.display()),
            Err(e) => panic!("cannot read fixture {}: {e}", p.display()),
        }
    }
    for (i, (name, bytes)) in models.iter().enumerate() {
        if bytes.is_empty() {
            continue;
        }
        h.mutate(name, bytes, 0x9E37_79B9_7F4A_7C15 ^ (i as u64));
    }

    println!(
        "corrupt-input variants tried: {} ({} fixtures, {} loaded fine)",
        h.tried,
        fixtures.len(),
        h.ok
    );
    assert!(h.tried >= 1_000, "only {} variants were tried", h.tried);
}
