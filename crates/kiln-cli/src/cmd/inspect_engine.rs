//! `kiln inspect ENGINE [--json] [-v]` for a kiln plan (made by `kiln build`).
//!
//! Read from the file, without a GPU: the machine it was built for (GPU, compute capability,
//! CUDA / NVRTC / cuBLASLt / cuDNN versions), kiln version, build configuration (precision,
//! workspace limit, optimisation level, fusions), inputs and outputs, optimisation profiles,
//! what the graph passes did, the optimised graph's ops, the kernel modules, and the chosen
//! GEMM / convolution tactics. The steps are the plan's graph specialised, rewritten and
//! lowered on the host at the first profile's opt shapes (as the builder checks them), with
//! their arena bytes. With a GPU (and a plan built for it) the engine is also loaded and asked
//! for `device_memory_size` at those shapes; without one that line says why not. All of this
//! but the GPU line is tested on a CPU-only machine.
//!
//! Files with an engine extension (`.kiln`, `.plan`, `.engine`, `.trt`) but no kiln magic are
//! read as TensorRT engines when TensorRT is installed (IO and profiles), and otherwise get an
//! error naming the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use kiln_core::{OptimizationProfile, TensorSpec};
use kiln_engine::Plan;
use kiln_engine::runtime::libs::{TACTICS_SECTION, Tactics};
use serde_json::{Value, json};

use crate::engine_source::{self, FileKind};
use crate::human;

/// Whether `inspect` should read `path` as an engine: the kiln magic, or an engine extension.
pub fn is_engine_path(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    matches!(ext.as_deref(), Some("kiln" | "plan" | "engine" | "trt"))
        || engine_source::file_kind(path).is_ok_and(|k| k == FileKind::KilnPlan)
}

pub fn run(path: &Path, json_out: bool, verbose: bool) -> Result<()> {
    let kind = engine_source::file_kind(path)?;
    let report = if kind == FileKind::KilnPlan {
        let (plan, bytes) = engine_source::load_plan(path)?;
        plan_report(path, &plan, bytes)?
    } else {
        tensorrt_report(path)?
    };
    let text = if json_out {
        let mut s = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        s.push('\n');
        s
    } else {
        render(&report, verbose)
    };
    super::inspect::write_stdout(&text)
}

fn spec_json(s: &TensorSpec) -> Value {
    json!({"name": s.name, "dtype": s.dtype.name(), "shape": s.shape.to_string()})
}

/// The opt shapes of the first profile (or the fixed shapes).
fn opt_shapes(
    inputs: &[TensorSpec],
    profiles: &[OptimizationProfile],
) -> Result<Vec<(String, Vec<usize>)>> {
    inputs
        .iter()
        .map(|s| {
            let dims = profiles
                .first()
                .and_then(|p| p.inputs.iter().find(|i| i.name == s.name))
                .map(|i| i.opt.clone())
                .or_else(|| s.shape.as_known())
                .with_context(|| {
                    format!(
                        "input '{}' {} has no profile and no fixed shape",
                        s.name, s.shape
                    )
                })?;
            Ok((s.name.clone(), dims))
        })
        .collect()
}

/// Host lowering at the opt shapes: steps (index, op, name, output dims) and arena bytes.
fn host_steps(plan: &Plan, shapes: &[(String, Vec<usize>)]) -> Result<(Vec<Value>, usize, Value)> {
    use kiln_engine::builder::{compute_dtype, lower, rewrite};
    let config = &plan.header.config;
    let compute = compute_dtype(config.precision)?;
    let graph = plan.graph()?;
    let g = lower::specialize(&graph, shapes)?;
    let (g, fused) = rewrite::rewrite(g, compute, &config.fusions)?;
    let program = lower::lower(&g, compute)?;
    let steps = program
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let (op, name) = match &st.kind {
                lower::StepKind::Node(n) => (
                    if n.domain.is_empty() || n.domain == "ai.onnx" {
                        n.op_type.clone()
                    } else {
                        format!("{}::{}", n.domain, n.op_type)
                    },
                    n.name.clone(),
                ),
                lower::StepKind::Cast => ("Cast (boundary)".into(), String::new()),
                lower::StepKind::Copy => ("Copy".into(), String::new()),
                lower::StepKind::Pad { .. } => ("Pad (conv)".into(), String::new()),
            };
            let out = st
                .outputs
                .first()
                .and_then(|&t| program.tensors.get(t))
                .map(|t| (t.dims.clone(), t.dtype.name()));
            json!({"index": i, "op": op, "name": name,
                   "output_dims": out.as_ref().map(|o| o.0.clone()),
                   "output_dtype": out.map(|o| o.1)})
        })
        .collect();
    Ok((steps, program.arena_bytes, serde_json::to_value(fused)?))
}

/// Device memory from the engine itself, when a GPU is here and the plan is for it.
fn device_memory(plan: &Plan, shapes: &[(String, Vec<usize>)]) -> Value {
    use kiln_core::Engine as _;
    let device = match kiln_cuda::Probe::run().and_then(|_| kiln_cuda::Device::open(0)) {
        Ok(d) => d,
        Err(e) => {
            return json!({"bytes": null,
                          "note": format!("not asked: no usable CUDA GPU here ({e})")});
        }
    };
    let shape_refs: Vec<(&str, &[usize])> = shapes
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    match kiln_engine::Engine::from_plan(&device, plan)
        .map_err(anyhow::Error::from)
        .and_then(|e| Ok(e.device_memory_size(&shape_refs)?))
    {
        Ok(b) => json!({"bytes": b, "gpu": device.info().name}),
        Err(e) => json!({"bytes": null, "note": format!("the engine did not load here: {e:#}")}),
    }
}

fn tactics_json(plan: &Plan) -> Result<Value> {
    let Some(bytes) = plan.section(TACTICS_SECTION) else {
        return Ok(json!({"gemm": [], "conv": []}));
    };
    let t = Tactics::from_bytes(bytes)?;
    let desc = |k: &str| serde_json::from_str::<Value>(k).unwrap_or_else(|_| k.into());
    let mut gemm: Vec<Value> = t
        .gemm
        .iter()
        .map(|(k, v)| json!({"desc": desc(k), "workspace": v.workspace, "algo": v.algo}))
        .collect();
    let mut conv: Vec<Value> = t
        .conv
        .iter()
        .map(|(k, v)| {
            json!({"desc": desc(k), "algo": v.algo, "math_type": v.math_type,
                   "workspace": v.workspace, "fused": v.fused})
        })
        .collect();
    gemm.sort_by_key(|v| v["desc"].to_string());
    conv.sort_by_key(|v| v["desc"].to_string());
    Ok(json!({"gemm": gemm, "conv": conv}))
}

/// Everything inspect says about a kiln plan, as JSON (the text is rendered from it).
fn plan_report(path: &Path, plan: &Plan, file_bytes: usize) -> Result<Value> {
    let h = &plan.header;
    let graph = plan
        .graph()
        .with_context(|| format!("reading the graph stored in {}", path.display()))?;
    let mut ops: Vec<(String, usize)> = graph
        .op_histogram()
        .into_iter()
        .map(|((d, o), n)| (if d.is_empty() { o } else { format!("{d}::{o}") }, n))
        .collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let kernels: Vec<Value> = plan
        .kernels()
        .map(|(k, b)| json!({"key": k, "bytes": b.len()}))
        .collect();
    let (steps, lowering) = match opt_shapes(&h.inputs, &h.config.profiles) {
        Ok(shapes) => match host_steps(plan, &shapes) {
            Ok((steps, arena, fused)) => (
                steps,
                json!({"shapes": shapes, "arena_bytes": arena, "fusions_applied": fused,
                       "device_memory": device_memory(plan, &shapes)}),
            ),
            Err(e) => (
                Vec::new(),
                json!({"shapes": shapes, "error": format!("{e:#}")}),
            ),
        },
        Err(e) => (Vec::new(), json!({"error": format!("{e:#}")})),
    };
    Ok(json!({
        "file": path.display().to_string(),
        "format": "kiln plan",
        "file_bytes": file_bytes,
        "kiln_version": h.kiln_version,
        "built_for": h.fingerprint,
        "precision": h.config.precision.name(),
        "workspace_limit": h.config.workspace_limit,
        "opt_level": h.config.opt_level,
        "fusions": h.config.fusions,
        "inputs": h.inputs.iter().map(spec_json).collect::<Vec<_>>(),
        "outputs": h.outputs.iter().map(spec_json).collect::<Vec<_>>(),
        "profiles": h.config.profiles,
        "passes": h.passes,
        "graph": {"nodes": graph.nodes.len(), "initializers": graph.initializers.len(),
                  "ops": ops.iter().map(|(o, n)| json!([o, n])).collect::<Vec<_>>()},
        "sections": plan.sections.iter().map(|(n, b)| json!({"name": n, "bytes": b.len()}))
            .collect::<Vec<_>>(),
        "kernels": kernels,
        "tactics": tactics_json(plan)?,
        "opt_lowering": lowering,
        "steps": steps,
    }))
}

fn tensorrt_report(path: &Path) -> Result<Value> {
    use kiln_core::Engine as _;
    let trt = kiln_nvinfer::TensorRt::load(&kiln_nvinfer::LoadOptions::default()).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a kiln plan (no KILNPLAN magic at its start); as a TensorRT engine it \
             needs TensorRT, which is not available here: {e}",
            path.display()
        )
    })?;
    let engine = trt.load_engine(path).with_context(|| {
        format!(
            "{} is neither a kiln plan nor a TensorRT engine",
            path.display()
        )
    })?;
    Ok(json!({
        "file": path.display().to_string(),
        "format": format!("TensorRT {} engine", trt.version()),
        "inputs": engine.inputs().iter().map(spec_json).collect::<Vec<_>>(),
        "outputs": engine.outputs().iter().map(spec_json).collect::<Vec<_>>(),
        "profiles": engine.profiles(),
    }))
}

fn render(r: &Value, verbose: bool) -> String {
    let mut out = String::new();
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let bytes = |v: &Value| v.as_u64().map_or("-".into(), |b| human::bytes(b as usize));
    // `write!` to a String cannot fail.
    let _ = writeln!(out, "file:        {} ({})", s(&r["file"]), s(&r["format"]));
    if r["format"] == "kiln plan" {
        let fp = &r["built_for"];
        let cc = &fp["compute_capability"];
        let _ = writeln!(out, "size:        {}", bytes(&r["file_bytes"]));
        if fp["gpu_name"] == "" {
            let _ = writeln!(
                out,
                "built for:   no GPU recorded (a host-only plan: no kernels or tactics); kiln {}",
                s(&r["kiln_version"])
            );
        } else {
            let _ = writeln!(
                out,
                "built for:   {} (sm_{}{}), CUDA {}, NVRTC {}, cuBLASLt {}, cuDNN {}; kiln {}",
                s(&fp["gpu_name"]),
                s(&cc[0]),
                s(&cc[1]),
                s(&fp["cuda"]),
                s(&fp["nvrtc"]),
                s(&fp["cublaslt"]),
                s(&fp["cudnn"]),
                s(&r["kiln_version"])
            );
        }
        let _ = writeln!(
            out,
            "precision:   {}; workspace limit {}; opt level {}",
            s(&r["precision"]),
            bytes(&r["workspace_limit"]),
            s(&r["opt_level"])
        );
    }
    for (title, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
        let list = r[key].as_array().cloned().unwrap_or_default();
        let _ = writeln!(out, "{title} ({}):", list.len());
        for v in list {
            let _ = writeln!(
                out,
                "  {}  {} {}",
                s(&v["name"]),
                s(&v["dtype"]),
                s(&v["shape"])
            );
        }
    }
    let profiles = r["profiles"].as_array().cloned().unwrap_or_default();
    if profiles.is_empty() {
        let _ = writeln!(out, "profiles:    none (fixed shapes)");
    }
    for (i, p) in profiles.iter().enumerate() {
        let _ = writeln!(out, "profile {i}:");
        for inp in p["inputs"].as_array().cloned().unwrap_or_default() {
            let _ = writeln!(
                out,
                "  {}: min {} opt {} max {}",
                s(&inp["name"]),
                inp["min"],
                inp["opt"],
                inp["max"]
            );
        }
    }
    if r["format"] != "kiln plan" {
        return out;
    }
    let _ = writeln!(out, "passes:      {}", r["passes"]);
    let g = &r["graph"];
    let _ = writeln!(
        out,
        "graph:       {} nodes, {} initialisers",
        s(&g["nodes"]),
        s(&g["initializers"])
    );
    for op in g["ops"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(out, "  {:<28} {}", s(&op[0]), op[1]);
    }
    let kernels = r["kernels"].as_array().cloned().unwrap_or_default();
    let kernel_bytes: u64 = kernels.iter().filter_map(|k| k["bytes"].as_u64()).sum();
    let _ = writeln!(
        out,
        "kernels:     {} NVRTC module(s), {}",
        kernels.len(),
        human::bytes(kernel_bytes as usize)
    );
    let t = &r["tactics"];
    let (gemm, conv) = (
        t["gemm"].as_array().cloned().unwrap_or_default(),
        t["conv"].as_array().cloned().unwrap_or_default(),
    );
    let mut algos: BTreeMap<String, usize> = BTreeMap::new();
    for c in &conv {
        let fused = if c["fused"] == true { " fused" } else { "" };
        *algos
            .entry(format!("algo {}{fused}", c["algo"]))
            .or_default() += 1;
    }
    let largest = gemm
        .iter()
        .chain(&conv)
        .filter_map(|v| v["workspace"].as_u64())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "tactics:     {} GEMM, {} convolution {algos:?}; largest workspace {}",
        gemm.len(),
        conv.len(),
        human::bytes(largest as usize)
    );
    if verbose {
        for v in gemm.iter().chain(&conv) {
            let _ = writeln!(
                out,
                "  algo {} ws {}  {}",
                v["algo"],
                bytes(&v["workspace"]),
                v["desc"]
            );
        }
    }
    let l = &r["opt_lowering"];
    if let Some(e) = l["error"].as_str() {
        let _ = writeln!(out, "steps:       not lowered on the host: {e}");
    } else {
        let steps = r["steps"].as_array().cloned().unwrap_or_default();
        let mut by_op: BTreeMap<String, usize> = BTreeMap::new();
        for st in &steps {
            *by_op.entry(s(&st["op"])).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "steps:       {} at the opt shapes {} (lowered on the host): {by_op:?}",
            steps.len(),
            l["shapes"]
        );
        let _ = writeln!(
            out,
            "arena:       {} at the opt shapes",
            bytes(&l["arena_bytes"])
        );
        let dm = &l["device_memory"];
        match dm["bytes"].as_u64() {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "device memory: {} per context on {} (Engine::device_memory_size)",
                    human::bytes(b as usize),
                    s(&dm["gpu"])
                );
            }
            None => {
                let _ = writeln!(out, "device memory: {}", s(&dm["note"]));
            }
        }
        if verbose {
            for st in &steps {
                let _ = writeln!(
                    out,
                    "  #{:<4} {:<24} {:<32} -> {} {}",
                    s(&st["index"]),
                    s(&st["op"]),
                    s(&st["name"]),
                    s(&st["output_dtype"]),
                    st["output_dims"]
                );
            }
        }
    }
    out
}
