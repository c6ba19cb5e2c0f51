//! Loader tests on models built directly as `onnx_protobuf::ModelProto`.

use std::path::Path;

use kiln_core::{DataType, Dim, Shape};
use kiln_onnx::{AttrValue, LoadOptions, OnnxError, ValueKind, from_bytes_with, load_with};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_shape_proto, type_proto,
};

// ---------------------------------------------------------------- model-building helpers

fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    let mut o = OperatorSetIdProto::new();
    o.domain = domain.into();
    o.version = version;
    o
}

fn model(graph: GraphProto) -> ModelProto {
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import.push(opset("", 17));
    m.graph = Some(graph).into();
    m
}

fn dims_of(dims: &[&str]) -> TensorShapeProto {
    let mut s = TensorShapeProto::new();
    for d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = match d.parse::<i64>() {
            Ok(n) => Some(tensor_shape_proto::dimension::Value::DimValue(n)),
            Err(_) if *d == "?" => None,
            Err(_) => Some(tensor_shape_proto::dimension::Value::DimParam(
                d.to_string(),
            )),
        };
        s.dim.push(dim);
    }
    s
}

/// A tensor value; dims are numbers, names (symbols) or "?".
fn value(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
    let mut t = type_proto::Tensor::new();
    t.elem_type = elem;
    t.shape = Some(dims_of(dims)).into();
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

fn raw(name: &str, dtype: i32, dims: &[i64], bytes: Vec<u8>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = dtype;
    t.dims = dims.to_vec();
    t.raw_data = bytes;
    t
}

fn f32_raw(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    raw(name, 1, dims, bytemuck::cast_slice(values).to_vec())
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = ty.into();
    a
}

fn at(name: &str, ty: AttributeType, f: impl FnOnce(&mut AttributeProto)) -> AttributeProto {
    let mut a = attr(name, ty);
    f(&mut a);
    a
}

/// Graph "g" with input x and output y.
fn xy(nodes: Vec<NodeProto>) -> GraphProto {
    graph("g", nodes, &["x"], &["y"])
}

fn graph(name: &str, nodes: Vec<NodeProto>, inputs: &[&str], outputs: &[&str]) -> GraphProto {
    let mut g = GraphProto::new();
    g.name = name.into();
    g.node = nodes;
    g.input = inputs
        .iter()
        .map(|n| value(n, 1, &["batch", "4"]))
        .collect();
    g.output = outputs
        .iter()
        .map(|n| value(n, 1, &["batch", "4"]))
        .collect();
    g
}

fn bytes_of(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().expect("serialise test model")
}

/// Asserts that the message `e` contains every part.
fn has(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "{p:?} missing from: {e}");
    }
}

fn no_infer() -> LoadOptions {
    LoadOptions {
        infer_shapes: false,
    }
}

fn load_bytes(m: &ModelProto) -> Result<kiln_onnx::Graph, OnnxError> {
    from_bytes_with(&bytes_of(m), &no_infer())
}

fn load_err(m: &ModelProto) -> String {
    match load_bytes(m) {
        Ok(_) => panic!("model should have been refused"),
        Err(e) => e.to_string(),
    }
}

/// x[batch,4] -> MatMul(W) -> Add(B) -> Relu -> y
fn mlp() -> ModelProto {
    let mut g = graph(
        "mlp",
        vec![
            node("mm", "MatMul", &["x", "W"], &["h"]),
            node("add", "Add", &["h", "B"], &["hb"]),
            node("act", "Relu", &["hb"], &["y"]),
        ],
        &["x"],
        &[],
    );
    g.output.push(value("y", 1, &["batch", "3"]));
    g.value_info.push(value("h", 1, &["batch", "?"]));
    let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    g.initializer.push(f32_raw("W", &[4, 3], &w));
    let mut b = TensorProto::new();
    b.name = "B".into();
    b.data_type = 1;
    b.dims = vec![3];
    b.float_data = vec![0.1, -0.2, 0.3];
    g.initializer.push(b);
    let mut m = model(g);
    m.producer_name = "kiln-tests".into();
    m.producer_version = "1.2".into();
    m.domain = "org.example".into();
    m.model_version = 7;
    m.doc_string = "a tiny MLP".into();
    let mut p = StringStringEntryProto::new();
    p.key = "author".into();
    p.value = "tests".into();
    m.metadata_props.push(p);
    m
}

// ---------------------------------------------------------------- round trips

#[test]
fn mlp_round_trip() {
    let m = mlp();
    let g = kiln_onnx::from_bytes(&bytes_of(&m)).expect("load with inference");
    assert_eq!(g.name, "mlp");
    assert_eq!(g.metadata.ir_version, 8);
    assert_eq!(g.metadata.producer_name, "kiln-tests");
    assert_eq!(g.metadata.producer_version, "1.2");
    assert_eq!(g.metadata.domain, "org.example");
    assert_eq!(g.metadata.model_version, 7);
    assert_eq!(g.metadata.doc_string, "a tiny MLP");
    assert_eq!(g.metadata.props, vec![("author".into(), "tests".into())]);
    assert_eq!(g.opset_version(""), Some(17));
    assert_eq!(g.opset_version("ai.onnx"), Some(17));

    assert_eq!(g.inputs.len(), 1);
    let x = &g.inputs[0];
    assert_eq!(x.name, "x");
    assert_eq!(x.dtype, Some(DataType::F32));
    assert_eq!(
        x.shape,
        Some(Shape::new(vec![Dim::symbol("batch"), Dim::Known(4)]))
    );
    let dim1 = |g: &kiln_onnx::Graph, name: &str| {
        let v = g.value(name).unwrap_or_else(|| panic!("value {name}"));
        v.shape.map(|s| s.dims()[1].clone())
    };
    assert_eq!(dim1(&g, "y"), Some(Dim::Known(3)));
    // Without inference, a dimension with neither value nor name is unknown.
    let raw_g = load_bytes(&m).expect("load without inference");
    assert_eq!(dim1(&raw_g, "h"), Some(Dim::Unknown));

    let ops: Vec<_> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["MatMul", "Add", "Relu"]);
    assert_eq!(g.nodes[1].inputs, ["h", "B"]);
    assert_eq!(g.nodes[2].index, 2);

    let w = g.initializer("W").expect("W");
    assert_eq!(w.dims(), &[4, 3]);
    assert_eq!(w.as_slice::<f32>().unwrap()[5], 2.5);
    let b = g.initializer("B").expect("B");
    assert_eq!(&*b.as_slice::<f32>().unwrap(), &[0.1, -0.2, 0.3]);
    assert_eq!(g.parameter_count(), (15, 60));
}

#[test]
fn attributes_of_every_kind() {
    let body = graph(
        "body",
        vec![node("inner", "Identity", &["x"], &["bo"])],
        &[],
        &["bo"],
    );
    let mut n = node("custom", "Thing", &["x"], &["y"]);
    n.domain = "com.example".into();
    use AttributeType as T;
    let tensors = vec![f32_raw("t0", &[1], &[3.0]), f32_raw("t1", &[], &[4.0])];
    let strings = vec![b"a".to_vec(), b"bc".to_vec()];
    n.attribute = vec![
        at("f", T::FLOAT, |a| a.f = 0.25),
        at("i", T::INT, |a| a.i = -3),
        at("s", T::STRING, |a| a.s = b"mode".to_vec()),
        at("t", T::TENSOR, |a| {
            a.t = Some(f32_raw("", &[2], &[1.0, 2.0])).into()
        }),
        at("g", T::GRAPH, |a| a.g = Some(body.clone()).into()),
        at("fs", T::FLOATS, |a| a.floats = vec![1.5, 2.5]),
        at("is", T::INTS, |a| a.ints = vec![1, 2, 3]),
        at("ss", T::STRINGS, |a| a.strings = strings),
        at("ts", T::TENSORS, |a| a.tensors = tensors),
        at("gs", T::GRAPHS, |a| a.graphs = vec![body.clone(), body]),
        at("sp", T::SPARSE_TENSOR, |_| {}),
        at("tp", T::TYPE_PROTO, |_| {}),
        // Old files leave the type out; the set field tells it.
        at("legacy", T::UNDEFINED, |a| a.ints = vec![9]),
        at("ref", T::INT, |a| a.ref_attr_name = "outer_i".into()),
    ];

    let mut m = model(graph("attrs", vec![n], &["x"], &["y"]));
    m.opset_import.push(opset("com.example", 1));
    let g = load_bytes(&m).expect("load");
    let n = &g.nodes[0];
    assert_eq!(n.domain, "com.example");
    assert_eq!(n.attr_float("f").unwrap(), Some(0.25));
    assert_eq!(n.attr_int("i").unwrap(), Some(-3));
    assert_eq!(n.attr_string("s").unwrap().as_deref(), Some("mode"));
    let t = n.attr_tensor("t").unwrap().expect("t");
    assert_eq!(&*t.as_slice::<f32>().unwrap(), &[1.0, 2.0]);
    let sub = n.attr_graph("g").unwrap().expect("g");
    assert_eq!(sub.nodes[0].name, "inner");
    assert_eq!(
        sub.opset_version(""),
        Some(17),
        "opsets are copied into subgraphs"
    );
    assert_eq!(sub.opset_version("com.example"), Some(1));
    assert_eq!(n.attr_floats("fs").unwrap(), Some(&[1.5, 2.5][..]));
    assert_eq!(n.attr_ints("is").unwrap(), Some(&[1, 2, 3][..]));
    assert_eq!(
        n.attr("ss"),
        Some(&AttrValue::Strings(vec![b"a".to_vec(), b"bc".to_vec()]))
    );
    match n.attr("ts") {
        Some(AttrValue::Tensors(ts)) => {
            assert_eq!(ts.len(), 2);
            assert_eq!(ts[1].dims(), &[] as &[usize]);
            assert_eq!(ts[1].as_slice::<f32>().unwrap()[0], 4.0);
        }
        other => panic!("ts: {other:?}"),
    }
    match n.attr("gs") {
        Some(AttrValue::Graphs(gs)) => assert_eq!(gs.len(), 2),
        other => panic!("gs: {other:?}"),
    }
    assert_eq!(n.attr("sp"), Some(&AttrValue::Unsupported("SPARSE_TENSOR")));
    assert_eq!(n.attr("tp"), Some(&AttrValue::Unsupported("TYPE_PROTO")));
    assert_eq!(n.attr_ints("legacy").unwrap(), Some(&[9][..]));
    let r = n.attributes.iter().find(|a| a.name == "ref").unwrap();
    assert_eq!(r.ref_attr_name.as_deref(), Some("outer_i"));
    // Wrong kind is an error naming the node.
    let e = n.attr_int("f").unwrap_err().to_string();
    has(&e, &["custom", "FLOAT"]);
}

fn every_dtype_model() -> (ModelProto, Vec<(String, DataType)>) {
    let mut g = graph("dtypes", vec![], &[], &[]);
    let mut names = Vec::new();
    let mut add = |g: &mut GraphProto, t: TensorProto, d: DataType| {
        names.push((t.name.clone(), d));
        g.output.push(value(&t.name, d.onnx_code(), &["2"]));
        g.initializer.push(t);
    };
    // raw_data for every type, written explicitly little-endian
    macro_rules! le {
        ($($x:expr),*) => { [$($x.to_le_bytes()),*].concat() };
    }
    let (f16, bf16) = (half::f16::from_f32, half::bf16::from_f32);
    for (name, d, bytes) in [
        ("r_f32", DataType::F32, le!(1.5f32, -2.0f32)),
        ("r_f64", DataType::F64, le!(1.5f64, -2.0f64)),
        ("r_u8", DataType::U8, vec![1, 255]),
        ("r_i8", DataType::I8, vec![0x7f, 0x80]),
        ("r_u16", DataType::U16, le!(1u16, 65535u16)),
        ("r_i16", DataType::I16, le!(1i16, -2i16)),
        ("r_i32", DataType::I32, le!(1i32, -2i32)),
        ("r_i64", DataType::I64, le!(1i64, -2i64)),
        ("r_bool", DataType::Bool, vec![1, 0]),
        ("r_f16", DataType::F16, le!(f16(1.5), f16(-2.0))),
        ("r_u32", DataType::U32, le!(1u32, 4_000_000_000u32)),
        ("r_u64", DataType::U64, le!(1u64, u64::MAX)),
        ("r_bf16", DataType::BF16, le!(bf16(1.5), bf16(-2.0))),
    ] {
        add(&mut g, raw(name, d.onnx_code(), &[2], bytes), d);
    }
    // typed fields
    let typed = |name: &str, code: i32| {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.data_type = code;
        t.dims = vec![2];
        t
    };
    let mut t = typed("t_f32", 1);
    t.float_data = vec![1.5, -2.0];
    add(&mut g, t, DataType::F32);
    let mut t = typed("t_f64", 11);
    t.double_data = vec![1.5, -2.0];
    add(&mut g, t, DataType::F64);
    let h16 = |x: f32| i32::from(half::f16::from_f32(x).to_bits());
    let b16 = |x: f32| i32::from(half::bf16::from_f32(x).to_bits());
    for (name, code, d, vals) in [
        ("t_u8", 2, DataType::U8, vec![1, 255]),
        ("t_i8", 3, DataType::I8, vec![127, -128]),
        ("t_u16", 4, DataType::U16, vec![1, 65535]),
        ("t_i16", 5, DataType::I16, vec![1, -2]),
        ("t_i32", 6, DataType::I32, vec![1, -2]),
        ("t_bool", 9, DataType::Bool, vec![1, 0]),
        ("t_f16", 10, DataType::F16, vec![h16(1.5), h16(-2.0)]),
        ("t_bf16", 16, DataType::BF16, vec![b16(1.5), b16(-2.0)]),
    ] {
        let mut t = typed(name, code);
        t.int32_data = vals;
        add(&mut g, t, d);
    }
    let mut t = typed("t_i64", 7);
    t.int64_data = vec![1, -2];
    add(&mut g, t, DataType::I64);
    let mut t = typed("t_u32", 12);
    t.uint64_data = vec![1, 4_000_000_000];
    add(&mut g, t, DataType::U32);
    let mut t = typed("t_u64", 13);
    t.uint64_data = vec![1, u64::MAX];
    add(&mut g, t, DataType::U64);
    (model(g), names)
}

#[test]
fn initialisers_of_every_dtype_raw_and_typed() {
    let (m, names) = every_dtype_model();
    let g = load_bytes(&m).expect("load");
    assert_eq!(g.initializers.len(), names.len());
    let mut seen_types = std::collections::HashSet::new();
    for (name, dtype) in &names {
        let t = g.initializer(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(t.dtype(), *dtype, "{name}");
        assert_eq!(t.dims(), &[2], "{name}");
        seen_types.insert((*dtype, name.starts_with("r_")));
        if dtype.is_float() {
            assert_eq!(t.to_f32_vec().unwrap(), vec![1.5, -2.0], "{name}");
        }
    }
    assert_eq!(
        seen_types.len(),
        2 * DataType::ALL.len(),
        "every dtype, raw and typed"
    );
    let get = |n: &str| g.initializer(n).unwrap();
    for p in ["r_", "t_"] {
        assert_eq!(get(&format!("{p}u8")).as_bytes(), &[1, 255]);
        assert_eq!(
            &*get(&format!("{p}i8")).as_slice::<i8>().unwrap(),
            &[127, -128]
        );
        assert_eq!(
            &*get(&format!("{p}u16")).as_slice::<u16>().unwrap(),
            &[1, 65535]
        );
        assert_eq!(
            &*get(&format!("{p}i16")).as_slice::<i16>().unwrap(),
            &[1, -2]
        );
        assert_eq!(
            &*get(&format!("{p}i32")).as_slice::<i32>().unwrap(),
            &[1, -2]
        );
        assert_eq!(
            &*get(&format!("{p}i64")).as_slice::<i64>().unwrap(),
            &[1, -2]
        );
        assert_eq!(
            &*get(&format!("{p}u32")).as_slice::<u32>().unwrap(),
            &[1, 4_000_000_000]
        );
        assert_eq!(
            &*get(&format!("{p}u64")).as_slice::<u64>().unwrap(),
            &[1, u64::MAX]
        );
        assert_eq!(
            get(&format!("{p}bool")).to_bools().unwrap(),
            vec![true, false]
        );
    }
}

#[test]
fn unsupported_types_and_bad_tensors() {
    for (code, kind) in [
        (8, "STRING"),
        (14, "COMPLEX64"),
        (17, "FLOAT8E4M3FN"),
        (22, "INT4"),
    ] {
        let mut g = graph("g", vec![], &[], &[]);
        g.initializer.push(raw("weird", code, &[1], vec![0; 8]));
        let e = load_err(&model(g));
        has(&e, &["tensor 'weird'", kind]);
    }
    // As value types they are kept, marked unsupported.
    let mut g = graph("g", vec![node("n", "Foo", &["s"], &["c"])], &[], &[]);
    g.input.push(value("s", 8, &["2"]));
    g.output.push(value("c", 14, &["2"]));
    let mut seq = TypeProto::new();
    seq.value = Some(type_proto::Value::SequenceType(type_proto::Sequence::new()));
    let mut sv = ValueInfoProto::new();
    sv.name = "seq".into();
    sv.type_ = Some(seq).into();
    g.input.push(sv);
    let loaded = load_bytes(&model(g)).expect("load");
    assert_eq!(
        loaded.inputs[0].kind,
        ValueKind::Unsupported("tensor(string)".into())
    );
    assert_eq!(loaded.inputs[0].dtype, None);
    assert_eq!(
        loaded.outputs[0].kind,
        ValueKind::Unsupported("tensor(complex64)".into())
    );
    assert_eq!(
        loaded.inputs[1].kind,
        ValueKind::Unsupported("sequence".into())
    );

    // Segments, negative dims, wrong byte counts, out-of-range narrowing.
    let mut t = f32_raw("seg", &[1], &[1.0]);
    t.segment = Some(onnx_protobuf::tensor_proto::Segment::new()).into();
    let mut cases = vec![(t, "segment")];
    cases.push((f32_raw("neg", &[-1], &[]), "negative"));
    cases.push((f32_raw("short", &[3], &[1.0]), "holds 4 bytes"));
    let mut t = raw("narrow", 2, &[1], vec![]);
    t.int32_data = vec![256];
    cases.push((t, "does not fit"));
    let mut t = raw("nodata", 1, &[4], vec![]);
    t.int64_data = vec![1, 2, 3, 4];
    cases.push((t, "holds 0 bytes"));
    for (t, want) in cases {
        let name = t.name.clone();
        let mut g = graph("g", vec![], &[], &[]);
        g.initializer.push(t);
        let e = load_err(&model(g));
        has(&e, &[&format!("tensor '{name}'"), want]);
    }
    // Negative dims in value types.
    let mut g = graph("g", vec![], &[], &[]);
    g.input.push(value("v", 1, &["-3"]));
    let e = load_err(&model(g));
    has(&e, &["'v'", "-3"]);
}

#[test]
fn ir3_initialisers_listed_as_inputs() {
    let mut m = mlp();
    m.ir_version = 3;
    m.opset_import = vec![opset("", 8)];
    let g = m.graph.as_mut().unwrap();
    g.input.push(value("W", 1, &["4", "3"]));
    g.input.push(value("B", 1, &["3"]));
    let loaded = load_bytes(&m).expect("load");
    let names: Vec<_> = loaded.inputs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["x"]);
    assert_eq!(loaded.overridable_initializers, ["W", "B"]);
    assert_eq!(loaded.initializers.len(), 2);
}

#[test]
fn ir_versions_opsets_and_model_shape() {
    for ir in [2, 15] {
        let mut m = mlp();
        m.ir_version = ir;
        let e = load_err(&m);
        has(&e, &[&format!("IR version {ir}"), "3..=14"]);
    }
    for v in [0, 29] {
        let mut m = mlp();
        m.opset_import = vec![opset("", v)];
        let e = load_err(&m);
        has(&e, &[&format!("opset {v}"), "1 to 28"]);
        has(&e, &["opset_version=17"]);
    }
    // Newer than the checked opset but within onnx 1.23's: loads (with a warning).
    let mut m = mlp();
    m.opset_import = vec![opset("", 25)];
    assert_eq!(load_bytes(&m).unwrap().opset_version(""), Some(25));
    let mut m = mlp();
    m.opset_import = vec![opset("ai.onnx", 13)];
    assert_eq!(load_bytes(&m).unwrap().opset_version(""), Some(13));
    let mut m = mlp();
    m.opset_import.push(opset("ai.onnx", 12));
    assert!(load_err(&m).contains("imported twice"));
    let mut m = mlp();
    m.graph = None.into();
    assert!(load_err(&m).contains("no graph"));
    let mut m = mlp();
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .push(f32_raw("W", &[1], &[0.0]));
    let e = load_err(&m);
    has(&e, &["two initialisers are named 'W'"]);
    assert!(e.starts_with("<model bytes>"), "{e}");
}

#[test]
fn unsorted_nodes_are_sorted_stably() {
    let mut m = mlp();
    m.graph.as_mut().unwrap().node.reverse();
    let g = load_bytes(&m).expect("load");
    let names: Vec<_> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["mm", "add", "act"]);
    let idx: Vec<_> = g.nodes.iter().map(|n| n.index).collect();
    assert_eq!(idx, [2, 1, 0], "index keeps the file position");
    // A sorted file keeps its order even where independent nodes could be swapped.
    let gp = xy(vec![
        node("b", "Relu", &["x"], &["b"]),
        node("a", "Relu", &["x"], &["a"]),
        node("c", "Add", &["a", "b"], &["y"]),
    ]);
    let g = load_bytes(&model(gp)).unwrap();
    let names: Vec<_> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["b", "a", "c"]);
}

#[test]
fn structural_errors_name_nodes_and_values() {
    let cycle = xy(vec![
        node("first", "Add", &["x", "loop_back"], &["a"]),
        node("second", "Relu", &["a"], &["loop_back"]),
        node("out", "Relu", &["a"], &["y"]),
    ]);
    let e = load_err(&model(cycle));
    has(&e, &["cycle", "'first'", "'second'"]);
    has(&e, &["'loop_back'"]);

    let undefined = xy(vec![node("user", "Relu", &["nowhere"], &["y"])]);
    let e = load_err(&model(undefined));
    has(&e, &["node 'user' (Relu", "'nowhere'"]);

    let double = xy(vec![
        node("one", "Relu", &["x"], &["y"]),
        node("two", "Relu", &["x"], &["y"]),
    ]);
    let e = load_err(&model(double));
    has(&e, &["node 'two'", "'y'", "node 'one'"]);

    let shadows_input = graph("g", vec![node("n", "Relu", &["x"], &["x"])], &["x"], &["x"]);
    assert!(load_err(&model(shadows_input)).contains("graph input"));

    let missing_out = graph("g", vec![node("n", "Relu", &["x"], &["y"])], &["x"], &["z"]);
    let e = load_err(&model(missing_out));
    has(&e, &["graph 'g'", "'z'"]);

    // Omitted optional inputs ("") are fine.
    let optional = xy(vec![node("n", "Clip", &["x", "", ""], &["y"])]);
    assert!(load_bytes(&model(optional)).is_ok());
}

#[test]
fn subgraphs_see_outer_values_and_order_by_them() {
    // The If node comes first in the file but its branch reads `late`, made after it.
    let branch = |name: &str| {
        graph(
            name,
            vec![node("bn", "Add", &["late", "x"], &["bo"])],
            &[],
            &["bo"],
        )
    };
    let mut iff = node("if", "If", &["cond"], &["y"]);
    iff.attribute = vec![
        at("then_branch", AttributeType::GRAPH, |a| {
            a.g = Some(branch("then")).into()
        }),
        at("else_branch", AttributeType::GRAPH, |a| {
            a.g = Some(branch("else")).into()
        }),
    ];
    let mut g = graph(
        "main",
        vec![iff, node("mk", "Relu", &["x"], &["late"])],
        &["x"],
        &["y"],
    );
    g.input.push(value("cond", 9, &[]));
    let loaded = load_bytes(&model(g.clone())).expect("load");
    let names: Vec<_> = loaded.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["mk", "if"]);

    // A branch reading an undefined value is refused, naming the inner node.
    g.node[0].attribute[0].g.as_mut().unwrap().node[0].input[0] = "ghost".into();
    let e = load_err(&model(g));
    has(&e, &["node 'bn'", "'ghost'", "enclosing"]);
}

#[test]
fn groups_in_the_file_are_refused_before_decoding() {
    let mut bytes = bytes_of(&mlp());
    bytes.extend(std::iter::repeat_n(0x0Bu8, 200_000));
    let e = from_bytes_with(&bytes, &no_infer())
        .unwrap_err()
        .to_string();
    has(&e, &["group", "offset"]);
}

// ---------------------------------------------------------------- files and external data

fn external(
    name: &str,
    location: &str,
    offset: Option<u64>,
    length: Option<u64>,
    n: i64,
) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 1;
    t.dims = vec![n];
    t.data_location = DataLocation::EXTERNAL.into();
    let mut kv = |k: &str, v: String| {
        let mut e = StringStringEntryProto::new();
        e.key = k.into();
        e.value = v;
        t.external_data.push(e);
    };
    kv("location", location.into());
    if let Some(o) = offset {
        kv("offset", o.to_string());
    }
    if let Some(l) = length {
        kv("length", l.to_string());
    }
    kv("checksum", "ignored".into());
    t
}

fn ext_model(t: TensorProto) -> ModelProto {
    let mut g = graph(
        "ext",
        vec![node("n", "Add", &["x", &t.name.clone()], &["y"])],
        &["x"],
        &["y"],
    );
    g.initializer.push(t);
    model(g)
}

fn write_model(dir: &Path, m: &ModelProto) -> std::path::PathBuf {
    let p = dir.join("model.onnx");
    std::fs::write(&p, bytes_of(m)).unwrap();
    p
}

fn load_file_err(path: &Path) -> String {
    match load_with(path, &no_infer()) {
        Ok(_) => panic!("{} should have been refused", path.display()),
        Err(e) => {
            assert!(
                matches!(&e, OnnxError::ExternalData { .. } | OnnxError::Io { .. }),
                "{e:?}"
            );
            e.to_string()
        }
    }
}

#[test]
fn external_data_good_case_reads_the_region() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let mut data = vec![0xAAu8; 16]; // padding before the tensor
    data.extend_from_slice(bytemuck::cast_slice(&values));
    data.extend_from_slice(&[0xBB; 5]);
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    std::fs::write(dir.path().join("weights/data.bin"), &data).unwrap();
    let m = ext_model(external("E", "./weights/data.bin", Some(16), Some(32), 8));
    let path = write_model(dir.path(), &m);
    let g = load_with(&path, &no_infer()).expect("load");
    let t = g.initializer("E").unwrap();
    assert_eq!(&*t.as_slice::<f32>().unwrap(), &values[..]);
    assert_eq!(g.source.as_deref(), Some(path.as_path()));

    // Without offset/length keys: from 0, length from the shape.
    let m = ext_model(external("E", "weights/data.bin", None, None, 4));
    let path = write_model(dir.path(), &m);
    let g = load_with(&path, &no_infer()).expect("load");
    assert_eq!(g.initializer("E").unwrap().as_bytes(), &[0xAA; 16]);

    // The same model from bytes has no folder.
    let e = from_bytes_with(&bytes_of(&m), &no_infer())
        .unwrap_err()
        .to_string();
    has(&e, &["loaded from bytes", "kiln_onnx::load"]);
}

#[test]
fn external_data_must_stay_in_the_model_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let secret = root.path().join("secret.bin");
    std::fs::write(&secret, [7u8; 64]).unwrap();

    let p = write_model(
        &dir,
        &ext_model(external("E", "../secret.bin", None, None, 4)),
    );
    let e = load_file_err(&p);
    has(&e, &["'..'", "tensor 'E'", "model.onnx"]);

    let p = write_model(
        &dir,
        &ext_model(external("E", "sub/../../secret.bin", None, None, 4)),
    );
    assert!(load_file_err(&p).contains("'..'"));

    let abs = secret.to_string_lossy().into_owned();
    let p = write_model(&dir, &ext_model(external("E", &abs, None, None, 4)));
    assert!(load_file_err(&p).contains("absolute"));

    std::os::unix::fs::symlink(&secret, dir.join("link.bin")).unwrap();
    let p = write_model(&dir, &ext_model(external("E", "link.bin", None, None, 4)));
    let e = load_file_err(&p);
    has(&e, &["outside the model's folder"]);

    // A symlink that stays inside the folder is fine.
    std::fs::write(dir.join("real.bin"), [0u8; 16]).unwrap();
    std::os::unix::fs::symlink(dir.join("real.bin"), dir.join("alias.bin")).unwrap();
    let p = write_model(&dir, &ext_model(external("E", "alias.bin", None, None, 4)));
    assert!(load_with(&p, &no_infer()).is_ok());
}

#[test]
fn external_data_missing_short_or_mismatched() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(
        dir.path(),
        &ext_model(external("E", "gone.bin", None, None, 4)),
    );
    let e = load_file_err(&p);
    has(&e, &["gone.bin", "does not exist"]);

    std::fs::write(dir.path().join("short.bin"), [0u8; 10]).unwrap();
    let p = write_model(
        dir.path(),
        &ext_model(external("E", "short.bin", Some(4), None, 4)),
    );
    let e = load_file_err(&p);
    has(&e, &["file is 10 bytes", "4..20"]);

    std::fs::write(dir.path().join("ok.bin"), [0u8; 64]).unwrap();
    let p = write_model(
        dir.path(),
        &ext_model(external("E", "ok.bin", None, Some(12), 4)),
    );
    let e = load_file_err(&p);
    has(&e, &["'length' is 12", "needs 16"]);

    let p = write_model(
        dir.path(),
        &ext_model(external("E", "ok.bin", Some(u64::MAX), None, 4)),
    );
    assert!(load_file_err(&p).contains("file is 64 bytes"));

    let mut t = external("E", "ok.bin", None, None, 4);
    t.external_data[0].key = "where".into();
    let p = write_model(dir.path(), &ext_model(t));
    assert!(load_file_err(&p).contains("no 'location'"));
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    let e = load_with(&missing, &no_infer()).unwrap_err().to_string();
    has(&e, &["nope.onnx"]);
    let mut m = mlp();
    m.ir_version = 1;
    let p = write_model(dir.path(), &m);
    let e = load_with(&p, &no_infer()).unwrap_err().to_string();
    assert!(
        e.starts_with(&p.display().to_string()) && e.contains("IR version 1"),
        "{e}"
    );
    let p = dir.path().join("garbage.onnx");
    std::fs::write(&p, [0x0Bu8; 4096]).unwrap();
    let e = load_with(&p, &no_infer()).unwrap_err();
    assert!(matches!(e, OnnxError::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("garbage.onnx"));
    // A good file loads through the streaming path.
    let p = write_model(dir.path(), &mlp());
    let g = kiln_onnx::load(&p).expect("load");
    assert_eq!(g.nodes.len(), 3);
}
