//! Graph rewrites as typed patches: a pass inspects the graph and returns a [`GraphPatch`]
//! saying which nodes it replaces or removes, which values it rewires and which initialisers
//! it adds or drops; [`GraphPatch::apply`] checks the patch against the graph (guards) and
//! applies it in one step. Passes never edit the graph in place.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kiln_onnx::{Graph, Node, Tensor};

use crate::error::{EngineError, Result};

/// Fresh names for values and nodes a pass adds: unused by the graph (inputs, outputs,
/// value_info, initialisers, node outputs and node names) and by earlier calls.
pub struct FreshNames {
    taken: HashSet<String>,
}

impl FreshNames {
    pub fn of(graph: &Graph) -> FreshNames {
        let taken = graph
            .inputs
            .iter()
            .chain(&graph.outputs)
            .chain(&graph.value_info)
            .map(|v| v.name.clone())
            .chain(graph.initializers.iter().map(|t| t.name().to_string()))
            .chain(graph.nodes.iter().flat_map(|n| n.outputs.iter().cloned()))
            .chain(graph.nodes.iter().map(|n| n.name.clone()))
            .collect();
        FreshNames { taken }
    }

    /// `base`, or `base.1`, `base.2`, … if taken.
    pub fn fresh(&mut self, base: &str) -> String {
        let name = (0..)
            .map(|k| {
                if k == 0 {
                    base.to_string()
                } else {
                    format!("{base}.{k}")
                }
            })
            .find(|n| !self.taken.contains(n))
            .unwrap_or_default();
        self.taken.insert(name.clone());
        name
    }
}

/// An f32 weight: an initialiser of that type the user cannot override.
pub fn f32_weight<'g>(graph: &'g Graph, name: &str) -> Option<&'g Tensor> {
    let t = graph.initializer(name)?;
    (t.dtype() == kiln_core::DataType::F32
        && !graph.overridable_initializers.iter().any(|o| o == name))
    .then_some(t)
}

/// One rewrite of a graph, built by a pass and applied by [`GraphPatch::apply`].
#[derive(Debug, Clone, Default)]
pub struct GraphPatch {
    /// Which pass made it (for messages).
    pub pass: &'static str,
    /// Nodes (by position in `graph.nodes`) replaced by new nodes (in order) at the same
    /// position.
    replace: BTreeMap<usize, Vec<Node>>,
    /// Nodes (by position) removed.
    remove: BTreeSet<usize>,
    /// Readers of the first value read the second instead.
    rewire: Vec<(String, String)>,
    add_initializers: Vec<Tensor>,
    drop_initializers: BTreeSet<String>,
}

impl GraphPatch {
    pub fn new(pass: &'static str) -> GraphPatch {
        GraphPatch {
            pass,
            ..GraphPatch::default()
        }
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty()
            && self.remove.is_empty()
            && self.rewire.is_empty()
            && self.add_initializers.is_empty()
            && self.drop_initializers.is_empty()
    }

    /// Replaces the node at `index`.
    pub fn replace_node(&mut self, index: usize, node: Node) {
        self.replace.insert(index, vec![node]);
    }

    /// Replaces the node at `index` by `nodes`, run in this order where it was (at least one:
    /// use [`GraphPatch::remove_node`] to remove a node).
    pub fn expand_node(&mut self, index: usize, nodes: Vec<Node>) {
        self.replace.insert(index, nodes);
    }

    /// Removes the node at `index`.
    pub fn remove_node(&mut self, index: usize) {
        self.remove.insert(index);
    }

    /// Makes every reader of `from` read `to` instead.
    pub fn rewire(&mut self, from: impl Into<String>, to: impl Into<String>) {
        self.rewire.push((from.into(), to.into()));
    }

    pub fn add_initializer(&mut self, t: Tensor) {
        self.add_initializers.push(t);
    }

    pub fn drop_initializer(&mut self, name: impl Into<String>) {
        self.drop_initializers.insert(name.into());
    }

    /// Number of nodes the patch touches (for reports).
    pub fn touched_nodes(&self) -> usize {
        self.replace.len() + self.remove.len()
    }

    fn fail(&self, message: String) -> EngineError {
        EngineError::Pass {
            pass: self.pass,
            message,
        }
    }

    /// Checks the patch and applies it, returning the new graph. Guards: indices exist, a node
    /// is not both replaced and removed, graph outputs are never rewired away, new
    /// initialisers do not clash with existing values, and after the patch every value read
    /// is produced by a node, an initialiser or a graph input.
    pub fn apply(&self, graph: &Graph) -> Result<Graph> {
        let n = graph.nodes.len();
        if let Some(&i) = self.replace.keys().chain(&self.remove).find(|&&i| i >= n) {
            return Err(self.fail(format!("node index {i} out of range ({n} nodes)")));
        }
        if let Some(i) = self.replace.keys().find(|i| self.remove.contains(i)) {
            return Err(self.fail(format!("node {i} is both replaced and removed")));
        }
        if let Some((i, _)) = self.replace.iter().find(|(_, v)| v.is_empty()) {
            return Err(self.fail(format!("node {i} is replaced by no node")));
        }
        let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
        if let Some((from, _)) = self
            .rewire
            .iter()
            .find(|(f, _)| outputs.contains(f.as_str()))
        {
            return Err(self.fail(format!("graph output '{from}' cannot be rewired")));
        }
        let existing: HashSet<&str> = graph.initializers.iter().map(|t| t.name()).collect();
        if let Some(t) = self
            .add_initializers
            .iter()
            .find(|t| existing.contains(t.name()) && !self.drop_initializers.contains(t.name()))
        {
            return Err(self.fail(format!("initialiser '{}' exists already", t.name())));
        }
        // Resolve rewiring chains (a -> b, b -> c gives a -> c).
        let map: HashMap<&str, &str> = self
            .rewire
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        let resolve = |name: &str| -> Result<String> {
            let mut cur = name;
            for _ in 0..=map.len() {
                match map.get(cur) {
                    Some(next) => cur = next,
                    None => return Ok(cur.to_string()),
                }
            }
            Err(self.fail(format!("rewiring of '{name}' loops")))
        };
        let mut out = graph.clone();
        out.nodes.clear();
        for (i, node) in graph.nodes.iter().enumerate() {
            if self.remove.contains(&i) {
                continue;
            }
            let new = self
                .replace
                .get(&i)
                .map_or(std::slice::from_ref(node), Vec::as_slice);
            for node in new {
                let mut node = node.clone();
                for input in node.inputs.iter_mut().filter(|s| !s.is_empty()) {
                    *input = resolve(input)?;
                }
                out.nodes.push(node);
            }
        }
        out.initializers
            .retain(|t| !self.drop_initializers.contains(t.name()));
        out.initializers
            .extend(self.add_initializers.iter().cloned());
        check_closed(&out).map_err(|m| self.fail(m))?;
        Ok(out)
    }
}

/// Every value a node or graph output reads is defined before it is read.
pub(crate) fn check_closed(graph: &Graph) -> std::result::Result<(), String> {
    let mut defined: HashSet<&str> = graph.inputs.iter().map(|v| v.name.as_str()).collect();
    defined.extend(graph.initializers.iter().map(|t| t.name()));
    for node in &graph.nodes {
        if let Some(missing) = node
            .inputs
            .iter()
            .find(|i| !i.is_empty() && !defined.contains(i.as_str()))
        {
            return Err(format!(
                "node '{}' ({}) reads '{missing}', which nothing defines before it",
                node.name, node.op_type
            ));
        }
        defined.extend(
            node.outputs
                .iter()
                .filter(|o| !o.is_empty())
                .map(String::as_str),
        );
    }
    match graph
        .outputs
        .iter()
        .find(|o| !defined.contains(o.name.as_str()))
    {
        Some(o) => Err(format!("graph output '{}' is no longer produced", o.name)),
        None => Ok(()),
    }
}

/// How many nodes read each value (graph outputs count as readers).
pub(crate) fn reader_counts(graph: &Graph) -> HashMap<String, usize> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for node in &graph.nodes {
        for i in node.inputs.iter().filter(|s| !s.is_empty()) {
            *m.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.outputs {
        *m.entry(o.name.clone()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::{DataType, Shape};
    use kiln_onnx::ValueInfo;

    pub(crate) fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: format!("{op}_{}", outputs.join("_")),
            op_type: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            ..Node::default()
        }
    }

    fn graph() -> Graph {
        Graph {
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
                node("Relu", &["a"], &["y"]),
            ],
            ..Graph::default()
        }
    }

    #[test]
    fn remove_and_rewire() {
        let g = graph();
        let mut p = GraphPatch::new("t");
        p.remove_node(0);
        p.rewire("a", "x");
        let out = p.apply(&g).unwrap();
        assert_eq!(out.nodes.len(), 1);
        assert_eq!(out.nodes[0].inputs, vec!["x".to_string()]);
    }

    #[test]
    fn guards() {
        let g = graph();
        let mut p = GraphPatch::new("t");
        p.remove_node(0);
        let e = p.apply(&g).unwrap_err().to_string();
        assert!(e.contains("reads 'a'"), "{e}");
        let mut p = GraphPatch::new("t");
        p.rewire("y", "x");
        assert!(p.apply(&g).is_err());
        let mut p = GraphPatch::new("t");
        p.remove_node(7);
        assert!(p.apply(&g).is_err());
        let mut p = GraphPatch::new("t");
        p.remove_node(1);
        assert!(p.apply(&g).unwrap_err().to_string().contains("output 'y'"));
        let mut p = GraphPatch::new("t");
        p.rewire("a", "b");
        p.rewire("b", "a");
        assert!(p.apply(&g).is_err());
        let mut p = GraphPatch::new("t");
        p.expand_node(1, Vec::new());
        assert!(p.apply(&g).unwrap_err().to_string().contains("no node"));
    }

    #[test]
    fn expand_into_several_nodes() {
        let g = graph();
        let mut p = GraphPatch::new("t");
        p.expand_node(
            1,
            vec![node("Relu", &["a"], &["r"]), node("Exp", &["r"], &["y"])],
        );
        let out = p.apply(&g).unwrap();
        let ops: Vec<&str> = out.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Identity", "Relu", "Exp"]);
        assert_eq!(p.touched_nodes(), 1);
        // a reader of a value defined later fails the closure guard
        let mut p = GraphPatch::new("t");
        p.expand_node(
            1,
            vec![node("Exp", &["r"], &["y"]), node("Relu", &["a"], &["r"])],
        );
        assert!(p.apply(&g).unwrap_err().to_string().contains("reads 'r'"));
    }
}
