//! One conformance test: a folder with `model.onnx` and `test_data_set_N/{input,output}_K.pb`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_reference::{Interpreter, Value};

use crate::compare::mismatch;

/// A test found on disk.
#[derive(Debug, Clone)]
pub struct Case {
    pub suite: String,
    pub name: String,
    pub dir: PathBuf,
}

impl Case {
    /// `suite/name`, the allow-list key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.suite, self.name)
    }
}

/// Every test folder directly under `root` (a folder holding `model.onnx`), sorted by name.
pub fn discover(suite: &str, root: &Path) -> std::io::Result<Vec<Case>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root)? {
        let dir = entry?.path();
        if dir.join("model.onnx").is_file() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Case {
                suite: suite.to_string(),
                name,
                dir,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What a case's model is made of (for filing it under an op).
#[derive(Debug, Clone, Default)]
pub struct ModelFacts {
    /// Distinct ops of the main graph, in order of first appearance.
    pub ops: Vec<String>,
    /// Default-domain opset.
    pub opset: Option<i64>,
}

/// Runs `case` through loader and interpreter; `Err` says what went wrong first.
pub fn run(case: &Case, rtol: f64, atol: f64) -> (ModelFacts, Result<(), String>) {
    let mut facts = ModelFacts::default();
    let graph = match kiln_onnx::load(case.dir.join("model.onnx")) {
        Ok(g) => g,
        Err(e) => return (facts, Err(format!("load: {e}"))),
    };
    facts.opset = graph.opset_version("");
    for n in &graph.nodes {
        if !facts.ops.contains(&n.op_type) {
            facts.ops.push(n.op_type.clone());
        }
    }
    let result = run_graph(case, graph, rtol, atol);
    (facts, result)
}

fn run_graph(case: &Case, graph: kiln_onnx::Graph, rtol: f64, atol: f64) -> Result<(), String> {
    let input_names: Vec<String> = graph.inputs.iter().map(|v| v.name.clone()).collect();
    let overridable = graph.overridable_initializers.clone();
    let output_names: Vec<String> = graph.outputs.iter().map(|v| v.name.clone()).collect();
    let interp = Interpreter::new(graph).map_err(|e| e.to_string())?;
    let sets = data_sets(&case.dir).map_err(|e| format!("reading test data: {e}"))?;
    if sets.is_empty() {
        return Err("no test_data_set_* folders".into());
    }
    for (si, set) in sets.iter().enumerate() {
        let inputs = read_pbs(set, "input").map_err(|e| format!("data set {si}: {e}"))?;
        let expected = read_pbs(set, "output").map_err(|e| format!("data set {si}: {e}"))?;
        let mut feed = HashMap::new();
        for (j, (pb_name, v)) in inputs.into_iter().enumerate() {
            // By name when the file names a graph input, else by position.
            let name = if input_names.contains(&pb_name) || overridable.contains(&pb_name) {
                pb_name
            } else {
                input_names.get(j).cloned().ok_or_else(|| {
                    format!("data set {si}: input_{j}.pb has no matching graph input")
                })?
            };
            feed.insert(name, v);
        }
        let got = interp
            .run(feed)
            .map_err(|e| format!("data set {si}: {e}"))?;
        if expected.len() != output_names.len() {
            return Err(format!(
                "data set {si}: {} expected outputs for {} graph outputs",
                expected.len(),
                output_names.len()
            ));
        }
        for (j, (_, want)) in expected.iter().enumerate() {
            let name = &output_names[j];
            let v = got
                .get(name)
                .ok_or_else(|| format!("data set {si}: output '{name}' missing"))?;
            if let Some(why) = mismatch(v, want, rtol, atol) {
                return Err(format!("data set {si}: output '{name}': {why}"));
            }
        }
    }
    Ok(())
}

fn data_sets(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<(usize, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let idx = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("test_data_set_"))
            .and_then(|n| n.parse::<usize>().ok());
        if let (Some(i), true) = (idx, p.is_dir()) {
            v.push((i, p));
        }
    }
    v.sort();
    Ok(v.into_iter().map(|(_, p)| p).collect())
}

/// `prefix_0.pb`, `prefix_1.pb`, ... in index order, as (tensor name, value).
fn read_pbs(dir: &Path, prefix: &str) -> Result<Vec<(String, Value)>, String> {
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| e.to_string())? {
        let p = e.map_err(|e| e.to_string())?.path();
        let idx = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_prefix('_'))
            .and_then(|n| n.strip_suffix(".pb"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(i) = idx {
            files.push((i, p));
        }
    }
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for (_, p) in files {
        let bytes = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let t = kiln_onnx::tensor_from_pb(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
        let v = Value::from_tensor(&t).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push((t.name().to_string(), v));
    }
    Ok(out)
}
