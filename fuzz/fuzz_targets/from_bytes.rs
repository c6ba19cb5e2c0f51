//! Arbitrary bytes into the loader: it may refuse them, never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = kiln_onnx::from_bytes(data) {
        // Walk what was loaded, so lazily wrong IR shows up too.
        let _ = graph.parameter_count();
        let _ = graph.op_histogram();
        for n in &graph.nodes {
            let _ = n.node_ref().to_string();
        }
    }
});
