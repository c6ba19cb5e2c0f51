//! `kiln inspect MODEL.onnx [--json]`: what a model holds, as text or as one JSON object.
//! Engine files (kiln plans, by their magic or an engine extension) go to
//! [`super::inspect_engine`].
//!
//! Loading goes through [`kiln_onnx::load`], so inspect sees exactly what the builder will see.
//! Ops kiln does not implement are listed, not treated as errors: inspect is how one finds out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use kiln_core::{Dim, Shape};
use kiln_onnx::{AttrValue, Graph, ValueInfo, ValueKind, is_onnx_domain};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::human;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model file, or an engine file (a kiln plan made by `kiln build`).
    pub model: PathBuf,
    /// Print one JSON object instead of text (field names are stable).
    #[arg(long)]
    pub json: bool,
}

/// Everything inspect reports. Field names are the JSON interface: keep them stable.
#[derive(Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub ir_version: i64,
    /// Producer name and version, e.g. `pytorch 2.5.1`.
    pub producer: String,
    pub opsets: Vec<OpsetEntry>,
    pub inputs: Vec<ValueEntry>,
    pub outputs: Vec<ValueEntry>,
    /// Op (`Domain::Op` outside the default domain) to node count, most frequent first.
    #[serde(serialize_with = "ordered_map")]
    pub op_histogram: Vec<(String, usize)>,
    /// Nodes of the main graph (subgraph nodes not included).
    pub node_count: usize,
    pub parameters: Parameters,
    pub unsupported: Vec<UnsupportedEntry>,
    /// Values that are fixed before run time (initialisers, constants and what they feed).
    pub constant_values: usize,
}

#[derive(Debug, Serialize)]
pub struct OpsetEntry {
    /// `""` for the default ONNX domain, as stored in the model.
    pub domain: String,
    pub version: i64,
}

#[derive(Debug, Serialize)]
pub struct ValueEntry {
    pub name: String,
    /// Element type (`f32`, `i64`, ...); `null` when unknown or not a tensor type kiln supports.
    pub dtype: Option<String>,
    /// Dimensions: a number when fixed, a string when symbolic, `null` when unknown. The whole
    /// shape is `null` when not even the rank is known.
    pub shape: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Serialize)]
pub struct Parameters {
    /// Elements of all initialisers.
    pub count: usize,
    pub bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct UnsupportedEntry {
    pub node: String,
    pub op: String,
    pub domain: String,
    pub reason: String,
}

fn ordered_map<S: serde::Serializer>(
    entries: &[(String, usize)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

fn op_key(domain: &str, op: &str) -> String {
    if is_onnx_domain(domain) {
        op.to_string()
    } else {
        format!("{domain}::{op}")
    }
}

fn dim_json(d: &Dim) -> serde_json::Value {
    match d {
        Dim::Known(n) => serde_json::Value::from(*n),
        Dim::Symbol(s) => serde_json::Value::from(s.as_ref()),
        Dim::Unknown => serde_json::Value::Null,
    }
}

fn value_entry(v: &ValueInfo) -> ValueEntry {
    ValueEntry {
        name: v.name.clone(),
        dtype: match v.kind {
            ValueKind::Tensor => v.dtype.map(|d| d.name().to_string()),
            ValueKind::Unsupported(_) => None,
        },
        shape: v
            .shape
            .as_ref()
            .map(|s| s.dims().iter().map(dim_json).collect()),
    }
}

impl Report {
    pub fn new(file: String, graph: &Graph) -> Report {
        let meta = &graph.metadata;
        let producer = format!("{} {}", meta.producer_name, meta.producer_version)
            .trim()
            .to_string();
        let mut op_histogram: Vec<(String, usize)> = graph
            .op_histogram()
            .into_iter()
            .map(|((domain, op), n)| (op_key(&domain, &op), n))
            .collect();
        op_histogram.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let (count, bytes) = graph.parameter_count();
        let unsupported = kiln_onnx::unsupported_nodes(graph)
            .into_iter()
            .map(|u| UnsupportedEntry {
                node: u.node.name,
                op: u.node.op_type,
                domain: u.node.domain,
                reason: u.reason,
            })
            .collect();
        Report {
            file,
            ir_version: meta.ir_version,
            producer,
            opsets: graph
                .opsets
                .iter()
                .map(|o| OpsetEntry {
                    domain: o.domain.clone(),
                    version: o.version,
                })
                .collect(),
            inputs: graph.inputs.iter().map(value_entry).collect(),
            outputs: graph.outputs.iter().map(value_entry).collect(),
            op_histogram,
            node_count: graph.nodes.len(),
            parameters: Parameters { count, bytes },
            unsupported,
            constant_values: kiln_onnx::constant_values(graph).len(),
        }
    }
}

fn display_domain(domain: &str) -> &str {
    if domain.is_empty() { "ai.onnx" } else { domain }
}

fn value_line(v: &ValueInfo) -> String {
    let ty = match &v.kind {
        ValueKind::Unsupported(what) => return format!("{}  ({what}; not supported)", v.name),
        ValueKind::Tensor => v.dtype.map_or("?".to_string(), |d| d.name().to_string()),
    };
    let shape = v
        .shape
        .as_ref()
        .map_or("(rank unknown)".to_string(), Shape::to_string);
    format!("{}  {ty} {shape}", v.name)
}

/// Nodes inside If / Loop / Scan bodies, recursively.
fn subgraph_nodes(graph: &Graph) -> usize {
    let mut n = 0;
    for node in &graph.nodes {
        for attr in &node.attributes {
            match &attr.value {
                AttrValue::Graph(g) => n += g.nodes.len() + subgraph_nodes(g),
                AttrValue::Graphs(gs) => {
                    n += gs
                        .iter()
                        .map(|g| g.nodes.len() + subgraph_nodes(g))
                        .sum::<usize>();
                }
                _ => {}
            }
        }
    }
    n
}

/// The text report. `graph` is used for what only the text shows (details with `-v`).
pub fn render_text(r: &Report, graph: &Graph, verbose: bool) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("file:        {}", r.file));
    line(format!("IR version:  {}", r.ir_version));
    line(format!(
        "producer:    {}",
        if r.producer.is_empty() {
            "(not recorded)"
        } else {
            &r.producer
        }
    ));
    let opsets: Vec<String> = r
        .opsets
        .iter()
        .map(|o| format!("{} {}", display_domain(&o.domain), o.version))
        .collect();
    line(format!("opsets:      {}", opsets.join(", ")));
    line(format!("inputs ({}):", graph.inputs.len()));
    for v in &graph.inputs {
        line(format!("  {}", value_line(v)));
    }
    line(format!("outputs ({}):", graph.outputs.len()));
    for v in &graph.outputs {
        line(format!("  {}", value_line(v)));
    }
    let sub = subgraph_nodes(graph);
    if sub > 0 {
        line(format!(
            "nodes:       {} (+{sub} in subgraphs)",
            r.node_count
        ));
    } else {
        line(format!("nodes:       {}", r.node_count));
    }
    line(format!(
        "parameters:  {} params, {} in {} initialiser{}",
        human::count(r.parameters.count),
        human::bytes(r.parameters.bytes),
        graph.initializers.len(),
        if graph.initializers.len() == 1 {
            ""
        } else {
            "s"
        }
    ));
    line(format!("constant values: {}", r.constant_values));
    line("ops (by count):".to_string());
    let width = r
        .op_histogram
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    for (op, n) in &r.op_histogram {
        line(format!("  {op:<width$}  {n}"));
    }
    if r.unsupported.is_empty() {
        line("unsupported ops: none".to_string());
    } else {
        let mut by_op: BTreeMap<String, usize> = BTreeMap::new();
        for u in &r.unsupported {
            *by_op.entry(op_key(&u.domain, &u.op)).or_default() += 1;
        }
        let ops: Vec<String> = by_op.iter().map(|(op, n)| format!("{op} x{n}")).collect();
        line(format!(
            "unsupported ops: {} node(s): {}",
            r.unsupported.len(),
            ops.join(", ")
        ));
        for u in &r.unsupported {
            let name = if u.node.is_empty() {
                "<unnamed>"
            } else {
                &u.node
            };
            line(format!(
                "  {name} ({}): {}",
                op_key(&u.domain, &u.op),
                u.reason
            ));
        }
    }
    if verbose {
        render_details(graph, &mut out);
    }
    out
}

/// `-v`: metadata, the largest initialisers and every node.
fn render_details(graph: &Graph, out: &mut String) {
    let meta = &graph.metadata;
    // `write!` to a String is infallible; the results are ignored on purpose.
    if !meta.domain.is_empty() || meta.model_version != 0 {
        let _ = writeln!(
            out,
            "model:       domain '{}', version {}",
            meta.domain, meta.model_version
        );
    }
    for (k, v) in &meta.props {
        let _ = writeln!(out, "metadata:    {k} = {v}");
    }
    if !graph.overridable_initializers.is_empty() {
        let _ = writeln!(
            out,
            "overridable initialisers: {}",
            graph.overridable_initializers.join(", ")
        );
    }
    let mut inits: Vec<_> = graph.initializers.iter().collect();
    inits.sort_by(|a, b| b.byte_len().cmp(&a.byte_len()).then(a.name().cmp(b.name())));
    let shown = inits.len().min(10);
    let _ = writeln!(out, "largest initialisers ({shown} of {}):", inits.len());
    for t in &inits[..shown] {
        let _ = writeln!(
            out,
            "  {}  {} {}  {}",
            t.name(),
            t.dtype(),
            t.shape(),
            human::bytes(t.byte_len())
        );
    }
    let _ = writeln!(out, "nodes (topological order):");
    for node in &graph.nodes {
        let name = if node.name.is_empty() {
            "<unnamed>"
        } else {
            &node.name
        };
        let _ = writeln!(
            out,
            "  #{} {name}: {}({}) -> {}",
            node.index,
            op_key(&node.domain, &node.op_type),
            node.inputs.join(", "),
            node.outputs.join(", ")
        );
    }
}

pub fn run(args: &Args, verbose: u8) -> anyhow::Result<()> {
    if super::inspect_engine::is_engine_path(&args.model) {
        return super::inspect_engine::run(&args.model, args.json, verbose > 0);
    }
    tracing::info!(model = %args.model.display(), "loading");
    // The OnnxError message already names the file, the place in it and the fix.
    let graph = kiln_onnx::load(&args.model)?;
    tracing::info!(nodes = graph.nodes.len(), "loaded");
    let report = Report::new(args.model.display().to_string(), &graph);
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        s.push('\n');
        s
    } else {
        render_text(&report, &graph, verbose > 0)
    };
    write_stdout(&text)
}

/// Writes a report to stdout; a closed pipe is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`kiln inspect m.onnx | head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the report to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::DataType;
    use kiln_onnx::{Node, OpsetImport, Tensor};

    fn graph() -> Graph {
        let node = |name: &str, op: &str, domain: &str, i: usize| Node {
            name: name.into(),
            op_type: op.into(),
            domain: domain.into(),
            inputs: vec!["x".into()],
            outputs: vec![format!("y{i}")],
            index: i,
            ..Node::default()
        };
        Graph {
            inputs: vec![ValueInfo::tensor(
                "x",
                DataType::F32,
                Shape::new(vec![Dim::symbol("batch"), Dim::Known(3), Dim::Unknown]),
            )],
            outputs: vec![ValueInfo::unknown("y2")],
            nodes: vec![
                node("a", "Relu", "", 0),
                node("b", "Relu", "", 1),
                node("c", "Frobnicate", "com.example", 2),
                node("d", "Add", "", 3),
            ],
            initializers: vec![Tensor::from_vec("w", vec![2, 3], vec![0.5f32; 6]).unwrap()],
            opsets: vec![
                OpsetImport {
                    domain: String::new(),
                    version: 17,
                },
                OpsetImport {
                    domain: "com.example".into(),
                    version: 1,
                },
            ],
            ..Graph::default()
        }
    }

    #[test]
    fn json_has_the_stable_fields_and_order() {
        let g = graph();
        let r = Report::new("m.onnx".into(), &g);
        let s = serde_json::to_string(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        for field in [
            "file",
            "ir_version",
            "producer",
            "opsets",
            "inputs",
            "outputs",
            "op_histogram",
            "node_count",
            "parameters",
            "unsupported",
            "constant_values",
        ] {
            assert!(v.get(field).is_some(), "missing {field} in {s}");
        }
        assert_eq!(
            v["inputs"][0]["shape"],
            serde_json::json!(["batch", 3, null])
        );
        assert_eq!(v["inputs"][0]["dtype"], "f32");
        assert_eq!(v["outputs"][0]["shape"], serde_json::Value::Null);
        assert_eq!(v["parameters"]["count"], 6);
        assert_eq!(v["parameters"]["bytes"], 24);
        assert_eq!(v["node_count"], 4);
        // Most frequent first, then by name; the order survives in the text of the object.
        assert!(
            s.contains(r#""op_histogram":{"Relu":2,"Add":1,"com.example::Frobnicate":1}"#),
            "{s}"
        );
    }

    #[test]
    fn text_names_shapes_params_and_ops() {
        let g = graph();
        let r = Report::new("m.onnx".into(), &g);
        let t = render_text(&r, &g, true);
        assert!(t.contains("x  f32 [batch, 3, ?]"), "{t}");
        assert!(t.contains("y2  ? (rank unknown)"), "{t}");
        assert!(t.contains("opsets:      ai.onnx 17, com.example 1"), "{t}");
        assert!(t.contains("6 params, 24 B in 1 initialiser\n"), "{t}");
        assert!(t.contains("  Relu  "), "{t}");
        assert!(t.contains("  c (com.example::Frobnicate): "), "{t}");
        assert!(
            t.contains("  #2 c: com.example::Frobnicate(x) -> y2"),
            "{t}"
        );
    }
}
