//! Loading a ~100 MB model must not hold much more than its size: the file is streamed (never
//! read whole into memory) and tensor data moves from the decoder into the graph uncopied.
//!
//! The peak resident size (VmHWM) is a high-water mark, so the model is written by a child
//! process (this test binary re-run with an environment variable) and the parent only loads it.

use std::path::Path;

use onnx_protobuf::{
    GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};

const WRITE_ENV: &str = "KILN_MEMORY_TEST_WRITE_MODEL";
const TENSORS: usize = 10;
/// f32 elements per tensor: 10 MiB each.
const ELEMS: usize = 10 << 18;

fn byte_at(tensor: usize, j: usize) -> u8 {
    (tensor.wrapping_mul(31) ^ j.wrapping_mul(7) ^ (j >> 9)) as u8
}

fn value(name: &str) -> ValueInfoProto {
    let mut dim = tensor_shape_proto::Dimension::new();
    dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(ELEMS as i64));
    let mut s = TensorShapeProto::new();
    s.dim.push(dim);
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

/// x + w0 + w1 + ... with ten 10 MiB initialisers.
fn write_model(path: &Path) {
    let mut g = GraphProto::new();
    g.name = "big".into();
    g.input.push(value("x"));
    let mut prev = "x".to_string();
    for i in 0..TENSORS {
        let mut t = TensorProto::new();
        t.name = format!("w{i}");
        t.data_type = 1;
        t.dims = vec![ELEMS as i64];
        t.raw_data = (0..ELEMS * 4).map(|j| byte_at(i, j)).collect();
        g.initializer.push(t);
        let mut n = NodeProto::new();
        n.name = format!("add{i}");
        n.op_type = "Add".into();
        n.input = vec![prev.clone(), format!("w{i}")];
        prev = format!("s{i}");
        n.output = vec![prev.clone()];
        g.node.push(n);
    }
    g.output.push(value(&prev));
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = OperatorSetIdProto::new();
    o.version = 17;
    m.opset_import.push(o);
    m.graph = Some(g).into();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create model file"));
    m.write_to_writer(&mut f).expect("write model");
    drop(f);
}

/// Peak resident set size of this process, in bytes.
fn vm_hwm() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn loading_a_100mb_model_stays_near_its_size() {
    if let Ok(path) = std::env::var(WRITE_ENV) {
        // Child process: write the model and return.
        write_model(Path::new(&path));
        return;
    }
    if vm_hwm().is_none() {
        println!("skipping: /proc/self/status (VmHWM) is not available on this system");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.onnx");
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "loading_a_100mb_model_stays_near_its_size",
            "--nocapture",
        ])
        .env(WRITE_ENV, &path)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the writer child");
    assert!(status.success(), "the child writing the model failed");
    let file_len = std::fs::metadata(&path).expect("model written").len();
    assert!(file_len > 100_000_000, "model is only {file_len} bytes");

    // Start the high-water mark from here where the kernel allows it.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = vm_hwm().expect("VmHWM");
    let graph = kiln_onnx::load(&path).expect("load the big model");
    let after = vm_hwm().expect("VmHWM");

    // The data arrived intact.
    assert_eq!(graph.initializers.len(), TENSORS);
    for (i, t) in graph.initializers.iter().enumerate() {
        let b = t.as_bytes();
        assert_eq!(b.len(), ELEMS * 4);
        for j in [0, 1, 4097, ELEMS * 4 - 1] {
            assert_eq!(b[j], byte_at(i, j), "tensor w{i} byte {j}");
        }
    }
    let growth = after.saturating_sub(before);
    let ratio = growth as f64 / file_len as f64;
    println!(
        "file {:.1} MB, peak RSS growth while loading {:.1} MB ({ratio:.2}x)",
        file_len as f64 / 1e6,
        growth as f64 / 1e6
    );
    assert!(
        ratio < 1.5,
        "loading a {file_len}-byte model raised peak RSS by {growth} bytes ({ratio:.2}x)"
    );
    drop(graph);
}
