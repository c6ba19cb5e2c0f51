//! Whatever the loader accepts, the writer writes and the loader accepts again; and a second
//! round trip changes nothing (write ∘ load is idempotent on written models).
#![no_main]

use kiln_onnx::{AttrValue, Graph, ValueKind};
use libfuzzer_sys::fuzz_target;

/// True when the graph holds something the writer refuses by design (values or attributes the
/// IR keeps without understanding them).
fn has_unwritable(g: &Graph) -> bool {
    let value_bad = g
        .inputs
        .iter()
        .chain(&g.outputs)
        .chain(&g.value_info)
        .any(|v| matches!(v.kind, ValueKind::Unsupported(_)));
    value_bad
        || g.nodes.iter().flat_map(|n| &n.attributes).any(|a| match &a.value {
            AttrValue::Unsupported(_) => true,
            AttrValue::Graph(sub) => has_unwritable(sub),
            AttrValue::Graphs(subs) => subs.iter().any(has_unwritable),
            _ => false,
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(first) = kiln_onnx::from_bytes(data) else {
        return;
    };
    let bytes = match kiln_onnx::to_model_bytes(&first) {
        Ok(b) => b,
        Err(e) => {
            assert!(has_unwritable(&first), "writer refused a writable graph: {e}");
            return;
        }
    };
    let second = match kiln_onnx::from_bytes(&bytes) {
        Ok(g) => g,
        Err(e) => panic!("the loader rejects what the writer wrote from its own graph: {e}"),
    };
    assert_eq!(first.nodes.len(), second.nodes.len());
    assert_eq!(first.initializers, second.initializers);
    assert_eq!(first.opsets, second.opsets);
    let again = match kiln_onnx::to_model_bytes(&second) {
        Ok(b) => b,
        Err(e) => panic!("the writer refuses a graph it wrote and the loader read back: {e}"),
    };
    assert!(
        again == bytes,
        "write(load(write(load(x)))) differs from write(load(x))"
    );
});
