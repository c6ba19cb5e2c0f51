//! Build-time checks of a specialised graph that the op list alone does not catch: variadic
//! nodes the builder could not rewrite into binary steps, constant GatherND indices outside
//! the data (the kernels would write zeros where kiln-reference fails), and Resize nodes the
//! kernel cannot run (their scales or sizes not constant, or settings it lacks). Each
//! returns lines for `EngineError::UnsupportedNodes`, so the build lists every node at once.

use kiln_core::Shape;
use kiln_onnx::{Graph, Node};

use crate::kernels::nvrtc::gather_nd::{GatherNdGeometry, first_out_of_range};
use crate::runtime::ops::{resize_inputs, resize_plan};

/// The build error of a variadic node that `passes::variadic_to_binary` left in the graph
/// (Sum/Min/Max with other than two inputs, any Mean).
pub(crate) fn variadic_left(n: &Node) -> Option<String> {
    if !n.domain.is_empty() {
        return None;
    }
    let count = n.inputs.iter().filter(|i| !i.is_empty()).count();
    let left = match n.op_type.as_str() {
        "Sum" | "Min" | "Max" => count != 2,
        "Mean" => true,
        _ => false,
    };
    left.then(|| {
        format!(
            "  node #{} '{}': {} with {count} input(s) was not rewritten into binary steps \
             (its element type is unknown or has no GPU kernel); give its inputs a float or \
             integer type the model declares",
            n.index, n.name, n.op_type
        )
    })
}

/// GatherND nodes whose indices are a constant holding a tuple outside the data (kiln-reference
/// rejects those; the kernel would write zeros). Gather needs no such check: kiln-onnx's
/// inference rejects constant Gather indices outside the data already.
pub(crate) fn constant_index_errors(graph: &Graph) -> Vec<String> {
    let mut bad = Vec::new();
    for n in &graph.nodes {
        if !n.domain.is_empty() || n.op_type != "GatherND" {
            continue;
        }
        let (Some(data), Some(idx)) = (
            n.input(0)
                .and_then(|d| graph.value(d))
                .and_then(|v| v.shape.as_ref().and_then(Shape::as_known)),
            n.input(1).and_then(|i| graph.initializer(i)),
        ) else {
            continue;
        };
        let Ok(values) = idx.to_i64_vec() else {
            continue;
        };
        let b = n.attr_int("batch_dims").ok().flatten().unwrap_or(0);
        let Ok(geo) = GatherNdGeometry::new(&data, idx.dims(), b) else {
            continue;
        };
        if let Some((t, j, v, d)) = first_out_of_range(&geo, &values) {
            bad.push(format!(
                "  node #{} '{}': GatherND: constant indices: tuple {t} has index {v} in \
                 component {j}, outside [-{d}, {d}); fix the model's indices",
                n.index, n.name
            ));
        }
    }
    bad
}

/// Resize nodes whose plan (`runtime::ops::resize_plan`, on the graph's constants) fails or
/// disagrees with the inferred output shape.
pub(crate) fn resize_errors(graph: &Graph) -> Vec<String> {
    let opset = graph.opset_version("").unwrap_or(1);
    let (si, zi) = resize_inputs(opset);
    let known = |name: Option<&str>| {
        name.and_then(|d| graph.value(d))
            .and_then(|v| v.shape.as_ref().and_then(Shape::as_known))
    };
    let mut bad = Vec::new();
    for n in &graph.nodes {
        if !n.domain.is_empty() || n.op_type != "Resize" {
            continue;
        }
        let line = |m: String| format!("  node #{} '{}': Resize: {m}", n.index, n.name);
        let Some(x) = known(n.input(0)) else {
            continue;
        };
        let not_const = [Some(si), zi]
            .into_iter()
            .flatten()
            .filter_map(|i| n.input(i).map(|name| (i, name)))
            .find(|(_, name)| graph.initializer(name).is_none());
        if let Some((i, name)) = not_const {
            bad.push(line(format!(
                "input {i} ('{name}') is not a constant once the input shapes are known; the \
                 GPU kernel takes constant scales or sizes"
            )));
            continue;
        }
        let plan = resize_plan(n, opset, &x, |i| {
            Ok(n.input(i).and_then(|name| graph.initializer(name)))
        });
        match (plan, known(n.output(0))) {
            (Err(e), _) => bad.push(line(e.to_string())),
            (Ok(p), Some(y)) if p.out_shape != y => bad.push(line(format!(
                "the kernel gives {:?}, inferred {y:?}",
                p.out_shape
            ))),
            _ => {}
        }
    }
    bad
}
