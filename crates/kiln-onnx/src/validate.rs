//! Graph validation and topological sort.
//!
//! Every value has at most one producer (a graph input, an initialiser or a node output); every
//! node input and graph output is defined, in this graph or, for subgraphs (If / Loop / Scan
//! bodies), in an enclosing one; there are no cycles. Nodes are put in topological order with
//! Kahn's algorithm, taking the ready node that comes first in the file, so a sorted file keeps
//! its order. A node whose subgraph reads a value of this graph depends on that value's
//! producer just like a node reading it directly.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::attribute::AttrValue;
use crate::error::{OnnxError, Origin, Result};
use crate::graph::{Graph, Node};

/// Who defines a value within one graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Producer {
    Input,
    Initializer,
    /// Position in the graph's node list.
    Node(usize),
}

/// The values visible from a graph: its own, then those of the enclosing graphs.
struct Scope<'a> {
    names: &'a HashMap<String, Producer>,
    parent: Option<&'a Scope<'a>>,
}

impl Scope<'_> {
    fn has(&self, name: &str) -> bool {
        self.names.contains_key(name) || self.parent.is_some_and(|p| p.has(name))
    }
}

fn graph_err(graph: &Graph, problem: String, fix: &str) -> OnnxError {
    OnnxError::Graph {
        file: Origin::bytes(),
        graph: graph.name.clone(),
        problem,
        fix: fix.to_string(),
    }
}

fn describe(graph: &Graph, p: Producer) -> String {
    match p {
        Producer::Input => "a graph input".to_string(),
        Producer::Initializer => "an initialiser".to_string(),
        Producer::Node(i) => graph
            .nodes
            .get(i)
            .map_or_else(|| format!("node #{i}"), |n| n.node_ref().to_string()),
    }
}

/// Checks `graph` (and its subgraphs) and sorts its nodes topologically.
pub fn validate_and_sort(graph: &mut Graph) -> Result<()> {
    check_graph(graph, None).map(|_| ())
}

/// Validates and sorts `graph`; returns the names it reads from enclosing graphs.
fn check_graph(graph: &mut Graph, outer: Option<&Scope<'_>>) -> Result<HashSet<String>> {
    let producers = collect_producers(graph)?;
    let mut free: HashSet<String> = HashSet::new();
    // deps[i]: nodes that must run before node i.
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];

    for i in 0..graph.nodes.len() {
        let mut used: Vec<String> = Vec::new();
        {
            let Some(node) = graph.nodes.get(i) else {
                continue;
            };
            for input in node.inputs.iter().filter(|s| !s.is_empty()) {
                if producers.contains_key(input) {
                    used.push(input.clone());
                } else if outer.is_some_and(|o| o.has(input)) {
                    free.insert(input.clone());
                } else {
                    return Err(undefined(graph, node, input, outer.is_some()));
                }
            }
        }
        // Subgraphs see this graph's values (all of them: order is fixed by the sort).
        let scope = Scope {
            names: &producers,
            parent: outer,
        };
        let mut sub_free: HashSet<String> = HashSet::new();
        if let Some(node) = graph.nodes.get_mut(i) {
            for attr in &mut node.attributes {
                match &mut attr.value {
                    AttrValue::Graph(g) => sub_free.extend(check_graph(g, Some(&scope))?),
                    AttrValue::Graphs(gs) => {
                        for g in gs {
                            sub_free.extend(check_graph(g, Some(&scope))?);
                        }
                    }
                    _ => {}
                }
            }
        }
        for name in sub_free {
            if producers.contains_key(&name) {
                used.push(name);
            } else {
                free.insert(name);
            }
        }
        let Some(d) = deps.get_mut(i) else {
            continue;
        };
        for name in &used {
            if let Some(&Producer::Node(j)) = producers.get(name) {
                d.push(j);
            }
        }
    }

    for out in &graph.outputs {
        if producers.contains_key(&out.name) {
            continue;
        }
        if outer.is_some_and(|o| o.has(&out.name)) {
            free.insert(out.name.clone());
            continue;
        }
        return Err(graph_err(
            graph,
            format!(
                "graph output '{}' is not produced by any node, input or initialiser",
                out.name
            ),
            "Connect the output to a node's output or remove it from the graph's outputs",
        ));
    }

    sort(graph, &deps, &producers)?;
    Ok(free)
}

fn undefined(graph: &Graph, node: &Node, input: &str, is_subgraph: bool) -> OnnxError {
    let where_ = if is_subgraph {
        "this subgraph or any enclosing graph"
    } else {
        "the graph"
    };
    OnnxError::node(
        node.node_ref(),
        format!(
            "input '{input}' is not defined: no node, input or initialiser of {where_} \
             (graph '{}') produces it",
            graph.name
        ),
        "Connect the input to an existing value, add the missing initialiser or graph input, \
         or pass \"\" for an omitted optional input",
    )
}

fn collect_producers(graph: &Graph) -> Result<HashMap<String, Producer>> {
    let mut producers: HashMap<String, Producer> = HashMap::new();
    for v in &graph.inputs {
        if producers.insert(v.name.clone(), Producer::Input).is_some() {
            return Err(graph_err(
                graph,
                format!("graph input '{}' is listed twice", v.name),
                "List each graph input once",
            ));
        }
    }
    for t in &graph.initializers {
        match producers.get(t.name()) {
            None | Some(Producer::Input) => {
                // An initialiser that is also a graph input is a default the caller may
                // override.
                producers.insert(t.name().to_string(), Producer::Initializer);
            }
            Some(_) => {
                return Err(graph_err(
                    graph,
                    format!("two initialisers are named '{}'", t.name()),
                    "Initialiser names must be unique; re-export the model",
                ));
            }
        }
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        for out in node.outputs.iter().filter(|s| !s.is_empty()) {
            if let Some(&prev) = producers.get(out) {
                return Err(OnnxError::node(
                    node.node_ref(),
                    format!(
                        "output '{out}' is already produced by {}; a value may have one producer",
                        describe(graph, prev)
                    ),
                    "Rename one of the two values (the graph must be in SSA form)",
                ));
            }
            producers.insert(out.clone(), Producer::Node(i));
        }
    }
    Ok(producers)
}

/// Kahn's algorithm, smallest file position first among ready nodes.
fn sort(
    graph: &mut Graph,
    deps: &[Vec<usize>],
    producers: &HashMap<String, Producer>,
) -> Result<()> {
    let n = graph.nodes.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            if let (Some(deg), Some(u)) = (indegree.get_mut(i), users.get_mut(j)) {
                *deg += 1;
                u.push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in users.get(i).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(deg) = indegree.get_mut(u) {
                *deg = deg.saturating_sub(1);
                if *deg == 0 {
                    ready.push(Reverse(u));
                }
            }
        }
    }
    if order.len() < n {
        return Err(cycle_error(graph, deps, &indegree, producers));
    }
    if order.iter().enumerate().any(|(pos, &i)| pos != i) {
        tracing::debug!(graph = %graph.name, "nodes were not in topological order; sorted");
        let mut slots: Vec<Option<Node>> = std::mem::take(&mut graph.nodes)
            .into_iter()
            .map(Some)
            .collect();
        graph.nodes = order
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect();
    }
    Ok(())
}

/// Names the nodes of one cycle among the nodes left unsorted.
fn cycle_error(
    graph: &Graph,
    deps: &[Vec<usize>],
    indegree: &[usize],
    producers: &HashMap<String, Producer>,
) -> OnnxError {
    let stuck = |i: usize| indegree.get(i).is_some_and(|&d| d > 0);
    // Walk back along dependencies between stuck nodes until a node repeats.
    let start = (0..indegree.len()).find(|&i| stuck(i)).unwrap_or(0);
    let mut path = vec![start];
    let mut seen: HashMap<usize, usize> = HashMap::from([(start, 0)]);
    let mut cur = start;
    let cycle: Vec<usize> = loop {
        let next = deps
            .get(cur)
            .and_then(|d| d.iter().copied().find(|&j| stuck(j)));
        let Some(next) = next else {
            break path.clone();
        };
        if let Some(&pos) = seen.get(&next) {
            let mut c = path.get(pos..).map(<[usize]>::to_vec).unwrap_or_default();
            c.reverse();
            break c;
        }
        seen.insert(next, path.len());
        path.push(next);
        cur = next;
    };
    // Describe as "A -> (value) -> B -> ...", in data-flow order.
    let mut parts = Vec::new();
    for (k, &i) in cycle.iter().enumerate() {
        let Some(node) = graph.nodes.get(i) else {
            continue;
        };
        parts.push(node.node_ref().to_string());
        let next = cycle.get(k + 1).or(cycle.first()).copied();
        if let Some(next) = next
            && let Some(value) = node
                .outputs
                .iter()
                .find(|o| producers.get(*o) == Some(&Producer::Node(i)) && consumes(graph, next, o))
        {
            parts.push(format!("'{value}'"));
        }
    }
    let first = cycle.first().and_then(|&i| graph.nodes.get(i));
    let problem = format!(
        "the nodes form a cycle: {} -> (back to the first)",
        parts.join(" -> ")
    );
    match first {
        Some(node) => OnnxError::node(
            node.node_ref(),
            problem,
            "ONNX graphs must be acyclic; break the cycle (recurrences belong in a Loop or Scan \
             body)",
        ),
        None => graph_err(graph, problem, "ONNX graphs must be acyclic"),
    }
}

fn consumes(graph: &Graph, node: usize, value: &str) -> bool {
    graph
        .nodes
        .get(node)
        .is_some_and(|n| n.inputs.iter().any(|i| i == value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, inputs: &[&str], outputs: &[&str], index: usize) -> Node {
        Node {
            name: name.into(),
            op_type: "Relu".into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            index,
            ..Node::default()
        }
    }

    fn graph(nodes: Vec<Node>) -> Graph {
        Graph {
            name: "g".into(),
            inputs: vec![crate::ValueInfo::unknown("x")],
            outputs: vec![crate::ValueInfo::unknown("z")],
            nodes,
            ..Graph::default()
        }
    }

    #[test]
    fn sorts_stably() {
        // c is independent; b needs a.
        let mut g = graph(vec![
            node("b", &["y"], &["z"], 0),
            node("c", &["x"], &["w"], 1),
            node("a", &["x"], &["y"], 2),
        ]);
        validate_and_sort(&mut g).unwrap();
        let names: Vec<_> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn cycle_names_the_nodes() {
        let mut g = graph(vec![
            node("p", &["x", "r"], &["q"], 0),
            node("s", &["q"], &["r"], 1),
            node("t", &["q"], &["z"], 2),
        ]);
        let e = validate_and_sort(&mut g).unwrap_err().to_string();
        assert!(
            e.contains("cycle") && e.contains("'p'") && e.contains("'s'"),
            "{e}"
        );
        assert!(!e.contains("'t'"), "{e}");
    }
}
