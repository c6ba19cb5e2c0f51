//! Executes a [`Graph`] on the CPU, node by node in topological order.

use std::collections::HashMap;

use kiln_core::Dim;
use kiln_onnx::{Graph, UnsupportedNode};

use crate::error::{RefError, Result};
use crate::ops::{self, OpCtx, OpFn};
use crate::value::Value;

/// A graph prepared for execution: every node's function looked up once, and for each node the
/// values that die after it (so memory is released as the run goes).
pub struct Interpreter {
    graph: Graph,
    steps: Vec<Step>,
    initializers: HashMap<String, Value>,
}

struct Step {
    node: usize,
    op: OpFn,
    opset: i64,
    /// Values no later node or graph output reads.
    release: Vec<String>,
}

impl Interpreter {
    /// Prepares `graph`. Fails, listing every node at once, if some op is not implemented.
    pub fn new(graph: Graph) -> Result<Interpreter> {
        let mut unsupported = Vec::new();
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate() {
            let imported = graph.opset_version(&node.domain);
            // The op's meaning at this opset must be the one kiln implements.
            if let Some(def) = kiln_onnx::registry().get(&node.domain, &node.op_type)
                && imported.is_none_or(|v| v < def.since_opset)
            {
                let reason = match imported {
                    Some(v) => format!(
                        "opset {v} is older than kiln's implementation (from opset {})",
                        def.since_opset
                    ),
                    None => format!(
                        "domain '{}' is not imported by the model",
                        if node.domain.is_empty() {
                            "ai.onnx"
                        } else {
                            &node.domain
                        }
                    ),
                };
                unsupported.push(UnsupportedNode {
                    node: node.node_ref(),
                    opset: imported,
                    reason,
                });
                continue;
            }
            let opset = imported.unwrap_or(0);
            match ops::lookup(&node.domain, &node.op_type) {
                Some(op) => steps.push(Step {
                    node: i,
                    op,
                    opset,
                    release: Vec::new(),
                }),
                None => unsupported.push(UnsupportedNode {
                    node: node.node_ref(),
                    opset: graph.opset_version(&node.domain),
                    reason: "not implemented in the CPU reference".to_string(),
                }),
            }
        }
        if !unsupported.is_empty() {
            return Err(RefError::Unsupported { nodes: unsupported });
        }
        // Last reader of each value (graph outputs are never released).
        let mut last_use: HashMap<&str, usize> = HashMap::new();
        for (si, step) in steps.iter().enumerate() {
            for name in &graph.nodes[step.node].inputs {
                if !name.is_empty() {
                    last_use.insert(name.as_str(), si);
                }
            }
        }
        for o in &graph.outputs {
            last_use.remove(o.name.as_str());
        }
        let mut release: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
        for (name, si) in last_use {
            if graph.initializer(name).is_none() {
                release[si].push(name.to_string());
            }
        }
        for (step, r) in steps.iter_mut().zip(release) {
            step.release = r;
        }
        let mut initializers = HashMap::new();
        for t in &graph.initializers {
            initializers.insert(t.name().to_string(), Value::from_tensor(t)?);
        }
        Ok(Interpreter {
            graph,
            steps,
            initializers,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs the graph. `inputs` must hold every graph input (an overridable initialiser may be
    /// given too). Returns the graph outputs by name.
    pub fn run(&self, inputs: HashMap<String, Value>) -> Result<HashMap<String, Value>> {
        self.check_inputs(&inputs)?;
        let mut env: HashMap<String, Value> = inputs;
        for step in &self.steps {
            let node = &self.graph.nodes[step.node];
            let outputs = {
                let mut args = Vec::with_capacity(node.inputs.len());
                for name in &node.inputs {
                    if name.is_empty() {
                        args.push(None);
                        continue;
                    }
                    let v = env
                        .get(name)
                        .or_else(|| self.initializers.get(name))
                        .ok_or_else(|| RefError::Internal {
                            what: format!(
                                "value '{name}' read by {} was never computed",
                                node.node_ref()
                            ),
                        })?;
                    args.push(Some(v));
                }
                let ctx = OpCtx::new(node, step.opset, args);
                (step.op)(&ctx)?
            };
            if outputs.len() < node.outputs.iter().filter(|o| !o.is_empty()).count() {
                return Err(RefError::Internal {
                    what: format!(
                        "{} produced {} outputs for {} names",
                        node.node_ref(),
                        outputs.len(),
                        node.outputs.len()
                    ),
                });
            }
            for (name, v) in node.outputs.iter().zip(outputs) {
                if !name.is_empty() {
                    env.insert(name.clone(), v);
                }
            }
            for name in &step.release {
                env.remove(name);
            }
        }
        let mut out = HashMap::new();
        for o in &self.graph.outputs {
            let v = env
                .remove(&o.name)
                .or_else(|| self.initializers.get(&o.name).cloned())
                .ok_or_else(|| RefError::Internal {
                    what: format!("graph output '{}' was never computed", o.name),
                })?;
            out.insert(o.name.clone(), v);
        }
        Ok(out)
    }

    /// Every graph input given, with the declared element type and a shape that fits the
    /// declared one (symbolic dims consistent across inputs).
    fn check_inputs(&self, inputs: &HashMap<String, Value>) -> Result<()> {
        let mut symbols: HashMap<&str, (usize, &str)> = HashMap::new();
        for vi in &self.graph.inputs {
            let Some(v) = inputs.get(&vi.name) else {
                return Err(RefError::Input {
                    name: vi.name.clone(),
                    problem: "was not given".into(),
                    fix: "Give a value for every graph input".into(),
                });
            };
            if let Some(dt) = vi.dtype
                && dt != v.dtype()
            {
                return Err(RefError::Input {
                    name: vi.name.clone(),
                    problem: format!("is {} but the model declares {dt}", v.dtype()),
                    fix: format!("Give a {dt} tensor"),
                });
            }
            if let Some(shape) = &vi.shape {
                let got = v.shape();
                let bad = || RefError::Input {
                    name: vi.name.clone(),
                    problem: format!("has shape {got:?} but the model declares {shape}"),
                    fix: "Give a tensor of the declared shape".into(),
                };
                if shape.rank() != got.len() {
                    return Err(bad());
                }
                for (d, &g) in shape.dims().iter().zip(got) {
                    match d {
                        Dim::Known(n) if *n != g => return Err(bad()),
                        Dim::Symbol(s) => {
                            if let Some((prev, who)) = symbols.get(s.as_ref())
                                && *prev != g
                            {
                                return Err(RefError::Input {
                                    name: vi.name.clone(),
                                    problem: format!(
                                        "gives dim '{s}' = {g} but input '{who}' gave it {prev}"
                                    ),
                                    fix: "Give inputs whose shared dims agree".into(),
                                });
                            }
                            symbols.insert(s.as_ref(), (g, vi.name.as_str()));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}
