//! Which values are computable before run time.
//!
//! [`constant_values`] returns the names of the values of a graph whose contents do not depend
//! on what is fed at run time, so a later pass can fold them into constants:
//! - initialisers, except those a caller may feed ([`Graph::overridable_initializers`]);
//! - outputs of `Constant` nodes;
//! - outputs of `Shape` and `Size` whose input's shape is fully known (after inference);
//! - outputs whose small integer value inference knows completely (`sym_value` with every
//!   element a number: `Gather(Shape(x), 1)` of a `[batch, 3]` tensor is 3);
//! - outputs of deterministic default-domain nodes whose inputs are all constant.
//!
//! Never constant: graph inputs; outputs of random ops (`RandomNormal`, `RandomUniform`,
//! their `Like` forms, `Bernoulli`, `Multinomial`) and of `Dropout` given a `training_mode`;
//! outputs of ops of other domains (their semantics are unknown here); outputs of nodes with
//! subgraphs (`If`, `Loop`, `Scan`: their bodies may read values that are not inputs).
//!
//! Inference is run (without changing the graph) to learn `sym_value`s; if it fails, only the
//! shapes stored in the graph are used.

use std::collections::HashSet;

use kiln_core::Dim;

use crate::attribute::AttrValue;
use crate::graph::{Graph, Node, is_onnx_domain};

/// Ops whose outputs differ from run to run.
const RANDOM_OPS: [&str; 6] = [
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Bernoulli",
    "Multinomial",
];

fn has_subgraph(node: &Node) -> bool {
    node.attributes
        .iter()
        .any(|a| matches!(a.value, AttrValue::Graph(_) | AttrValue::Graphs(_)))
}

fn shape_fully_known(graph: &Graph, name: &str) -> bool {
    graph
        .value(name)
        .and_then(|v| v.shape)
        .is_some_and(|s| s.is_fully_known())
}

/// The names of the values of `graph` computable before run time (see the module docs).
pub fn constant_values(graph: &Graph) -> HashSet<String> {
    let facts = match crate::infer::infer_facts(graph) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "inference failed; constness uses stored shapes only");
            Default::default()
        }
    };
    let mut consts: HashSet<String> = graph
        .initializers
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| !graph.overridable_initializers.contains(n))
        .collect();
    for node in &graph.nodes {
        let default_domain = is_onnx_domain(&node.domain);
        let op = node.op_type.as_str();
        let random = default_domain
            && (RANDOM_OPS.contains(&op) || (op == "Dropout" && node.input(2).is_some()));
        let deterministic = default_domain && !random && !has_subgraph(node);
        let whole = deterministic
            && match op {
                "Constant" => true,
                "Shape" | "Size" => node.input(0).is_some_and(|x| {
                    consts.contains(x)
                        || shape_fully_known(graph, x)
                        || facts
                            .get(x)
                            .and_then(|f| f.shape.as_ref())
                            .is_some_and(|s| s.is_fully_known())
                }),
                _ => node
                    .inputs
                    .iter()
                    .filter(|n| !n.is_empty())
                    .all(|n| consts.contains(n)),
            };
        for name in node.outputs.iter().filter(|n| !n.is_empty()) {
            let by_value = deterministic
                && facts
                    .get(name)
                    .and_then(|f| f.sym_value.as_ref())
                    .is_some_and(|v| v.iter().all(Dim::is_known));
            if whole || by_value {
                consts.insert(name.clone());
            }
        }
    }
    consts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::Attribute;
    use crate::graph::ValueInfo;
    use crate::infer::tests::{graph, node, torch_chain};
    use crate::tensor::Tensor;
    use kiln_core::{DataType, Shape};

    fn sorted(s: HashSet<String>) -> Vec<String> {
        let mut v: Vec<String> = s.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn torch_chain_with_known_batch_is_constant_up_to_reshape() {
        let mut g = torch_chain(Dim::Known(4));
        crate::infer_shapes(&mut g).unwrap();
        assert_eq!(
            sorted(constant_values(&g)),
            [
                "axes0", "c1", "g0", "i0", "i1", "minus1", "s", "target", "u"
            ]
        );
    }

    #[test]
    fn torch_chain_with_symbolic_batch() {
        let g = torch_chain(Dim::symbol("batch"));
        // Without running infer_shapes first: inference is run inside.
        let c = constant_values(&g);
        // Shape(x) depends on the batch, but its element 1 (2048) does not.
        assert_eq!(sorted(c), ["axes0", "c1", "i0", "i1", "minus1"]);
    }

    #[test]
    fn random_ops_and_fed_initialisers_are_not_constant() {
        let x = ValueInfo::tensor("x", DataType::F32, Shape::from_known(&[2]));
        let shape = Tensor::from_vec("shape", vec![1], vec![2i64]).unwrap();
        let w = Tensor::from_vec("w", vec![2], vec![1f32, 2.0]).unwrap();
        let nodes = vec![
            node(
                "RandomNormal",
                "rn",
                &[],
                &["r"],
                vec![Attribute::new("shape", AttrValue::Ints(vec![2]))],
            ),
            node("Add", "add_r", &["r", "w"], &["a"], vec![]),
            node("ConstantOfShape", "cos", &["shape"], &["z"], vec![]),
            node("Add", "add_z", &["z", "w"], &["b"], vec![]),
            node("Add", "add_x", &["x", "w"], &["c"], vec![]),
            node("Relu", "relu", &["b"], &["d"], vec![]),
            node("Custom", "custom", &["d"], &["e"], vec![]),
        ];
        let mut g = graph(vec![x], nodes, vec![shape, w], &["a", "c", "e"]);
        g.nodes[6].domain = "com.example".into();
        assert_eq!(sorted(constant_values(&g)), ["b", "d", "shape", "w", "z"]);
        g.overridable_initializers.push("w".into());
        assert_eq!(sorted(constant_values(&g)), ["shape", "z"]);
    }
}
