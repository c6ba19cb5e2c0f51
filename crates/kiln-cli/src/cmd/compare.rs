//! `kiln compare model.onnx [--engine FILE] [build flags] [--atol A --rtol R] [--rel-l2 T]`:
//! an engine's outputs against kiln's CPU reference on the same inputs, as Polygraphy's
//! `run --onnxrt --trt` does.
//!
//! The engine is built from the model with the build flags, or loaded from `--engine` (a kiln
//! plan). The reference is kiln-reference's `Interpreter` on the original model, without
//! constant folding or any other rewrite. Inputs are seeded random values (`--seed`) or files
//! (`--input NAME=FILE.npy`). Per output it reports max abs error, max rel error (over
//! elements whose reference value is not 0), rel-L2 (`‖got − want‖₂ / ‖want‖₂`) and cosine
//! similarity, and passes when
//! - the shapes agree, no value of either side is NaN (a NaN anywhere never passes), and
//!   infinities sit in the same places with the same sign;
//! - rel-L2 ≤ `--rel-l2` (default: the engine precision's `Precision::rel_l2_tolerance`: fp32
//!   1e-5, tf32 1e-3, fp16/bf16 1e-2);
//! - with `--atol` and/or `--rtol` given, every element has `|got − want| ≤ atol + rtol·|want|`.
//!
//! A table goes to stdout, `--export-json FILE` writes the same as JSON (fields: model, engine,
//! backend, device, precision, seed, inputs, tolerance {rel_l2, atol, rtol}, outputs [{name,
//! engine_shape, reference_shape, elements, max_abs, max_rel, rel_l2, cosine, nan_engine,
//! nan_reference, inf_mismatch, violations, pass, reason}], source, build_seconds,
//! load_seconds, engine_seconds, reference_seconds, pass). The exit status is 1 when any
//! output fails.
//!
//! On a CPU-only machine `--backend cpu` (or the default `auto`, which says that no GPU was
//! found) compares kiln's cpu backend (constant-folded `CpuEngine`; or the optimised graph
//! stored in a kiln plan given with `--engine`) with the reference; that works and is tested.
//! The kiln and tensorrt backends need a GPU and are untested here.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use kiln_core::Precision;
use kiln_reference::{Interpreter, Value};
use serde::Serialize;

use super::feeds;
use crate::engine_source::{self, BuildFlags};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model (the reference runs it).
    pub model: PathBuf,
    /// A saved engine (kiln plan) to compare instead of building one from the model.
    #[arg(long, value_name = "FILE")]
    pub engine: Option<PathBuf>,
    #[command(flatten)]
    pub flags: BuildFlags,
    /// An input from a .npy file: NAME=FILE (repeatable). Inputs not given are random.
    #[arg(long = "input", value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Element-wise absolute tolerance (turns on the element-wise check).
    #[arg(long)]
    pub atol: Option<f64>,
    /// Element-wise relative tolerance (turns on the element-wise check).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// Largest accepted rel-L2 error (default: by the engine's precision).
    #[arg(long = "rel-l2", value_name = "TOL")]
    pub rel_l2: Option<f64>,
    /// Write the comparison as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub export_json: Option<PathBuf>,
}

/// What a comparison accepts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    pub rel_l2: f64,
    /// `None`: no element-wise check.
    pub atol: Option<f64>,
    pub rtol: Option<f64>,
}

/// How one output compares.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub name: String,
    pub engine_shape: Vec<usize>,
    pub reference_shape: Vec<usize>,
    pub elements: usize,
    pub max_abs: f64,
    pub max_rel: f64,
    pub rel_l2: f64,
    pub cosine: f64,
    pub nan_engine: usize,
    pub nan_reference: usize,
    /// Elements where one side is infinite and the other is not the same infinity.
    pub inf_mismatch: usize,
    /// Elements outside `atol + rtol·|want|` (0 without the element-wise check).
    pub violations: usize,
    pub pass: bool,
    /// Why it failed (`None` when it passed).
    pub reason: Option<String>,
}

/// Compares `got` (engine) with `want` (reference) under `tol`.
pub fn compare(name: &str, got: &Value, want: &Value, tol: &Tolerance) -> Metrics {
    let mut m = Metrics {
        name: name.to_string(),
        engine_shape: got.shape().to_vec(),
        reference_shape: want.shape().to_vec(),
        elements: want.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        rel_l2: 0.0,
        cosine: 1.0,
        nan_engine: 0,
        nan_reference: 0,
        inf_mismatch: 0,
        violations: 0,
        pass: false,
        reason: None,
    };
    if got.shape() != want.shape() {
        m.reason = Some(format!(
            "shape {:?} where the reference has {:?}",
            got.shape(),
            want.shape()
        ));
        return m;
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let elementwise = tol.atol.is_some() || tol.rtol.is_some();
    let (atol, rtol) = (tol.atol.unwrap_or(0.0), tol.rtol.unwrap_or(0.0));
    let (mut num, mut den, mut dot, mut gg) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in g.iter().zip(&w) {
        if a.is_nan() || b.is_nan() {
            m.nan_engine += usize::from(a.is_nan());
            m.nan_reference += usize::from(b.is_nan());
            continue;
        }
        if a.is_infinite() || b.is_infinite() {
            if a != b {
                m.inf_mismatch += 1;
            }
            continue;
        }
        let d = (a - b).abs();
        m.max_abs = m.max_abs.max(d);
        if b != 0.0 {
            m.max_rel = m.max_rel.max(d / b.abs());
        }
        if elementwise && d > atol + rtol * b.abs() {
            m.violations += 1;
        }
        num += d * d;
        den += b * b;
        dot += a * b;
        gg += a * a;
    }
    m.rel_l2 = if den > 0.0 {
        (num / den).sqrt()
    } else if num == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    m.cosine = match (den > 0.0, gg > 0.0) {
        (true, true) => dot / (den.sqrt() * gg.sqrt()),
        (false, false) => 1.0,
        _ => 0.0,
    };
    let mut why = Vec::new();
    if m.nan_engine + m.nan_reference > 0 {
        why.push(format!(
            "NaN in {} engine and {} reference value(s)",
            m.nan_engine, m.nan_reference
        ));
    }
    if m.inf_mismatch > 0 {
        why.push(format!("{} infinity mismatch(es)", m.inf_mismatch));
    }
    if m.rel_l2.is_nan() || m.rel_l2 > tol.rel_l2 {
        why.push(format!("rel-L2 {:.3e} > {:.3e}", m.rel_l2, tol.rel_l2));
    }
    if m.violations > 0 {
        why.push(format!(
            "{} of {} element(s) beyond atol {atol:e} + rtol {rtol:e}·|want|",
            m.violations, m.elements
        ));
    }
    m.pass = why.is_empty();
    m.reason = (!why.is_empty()).then(|| why.join("; "));
    m
}

fn table(rows: &[Metrics]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(6).max(6);
    let mut out = format!(
        "{:<width$}  {:>16}  {:>10}  {:>10}  {:>10}  {:>12}  result\n",
        "output", "shape", "max abs", "max rel", "rel-L2", "cosine"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:>16}  {:>10.3e}  {:>10.3e}  {:>10.3e}  {:>12.9}  {}\n",
            r.name,
            format!("{:?}", r.engine_shape),
            r.max_abs,
            r.max_rel,
            r.rel_l2,
            r.cosine,
            if r.pass { "PASS" } else { "FAIL" }
        ));
        if let Some(why) = &r.reason {
            out.push_str(&format!("{:<width$}  ({why})\n", ""));
        }
    }
    out
}

pub fn run(args: &Args) -> Result<()> {
    for (what, v) in [
        ("--rel-l2", args.rel_l2),
        ("--atol", args.atol),
        ("--rtol", args.rtol),
    ] {
        if let Some(v) = v
            && (v.is_nan() || v < 0.0)
        {
            bail!("{what} {v} must be a number >= 0");
        }
    }
    let given = feeds::pairs(&args.inputs, "--input")?;
    let flags = feeds::with_given_shapes(&args.flags, &given)?;
    let source = args.engine.as_ref().unwrap_or(&args.model);
    let opened = engine_source::open(source, &flags)?;
    let precision = match (&opened.kiln, opened.backend) {
        (Some(k), _) => k.header().config.precision,
        (None, "cpu") => Precision::Fp32,
        _ => flags.precision(),
    };
    let tol = Tolerance {
        rel_l2: args.rel_l2.unwrap_or(precision.rel_l2_tolerance()),
        atol: args.atol,
        rtol: args.rtol,
    };
    let feed = feeds::make_feed(opened.engine.as_ref(), &flags, &given, args.seed)?;
    println!(
        "engine: {} backend on {}{} ({precision}); reference: kiln-reference on the CPU",
        opened.backend,
        opened.device_name,
        opened
            .build_seconds
            .map(|s| format!(", built in {s:.2} s"))
            .unwrap_or_default()
    );
    for line in &feed.lines {
        println!("input {line}");
    }
    let (engine_out, engine_s) = feeds::run_once(&opened.engine, &feed.host)?;
    let graph = match (&opened.model, &args.engine) {
        (Some(g), None) => g.clone(),
        _ => kiln_onnx::load(&args.model)?,
    };
    let t = Instant::now();
    let reference = Interpreter::new(graph)
        .and_then(|i| i.run(feed.values.clone()))
        .with_context(|| format!("running {} on the CPU reference", args.model.display()))?;
    let reference_s = t.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for (name, got) in &engine_out {
        match reference.get(name) {
            Some(want) => rows.push(compare(name, got, want, &tol)),
            None => bail!(
                "the engine's output '{name}' is not an output of {}",
                args.model.display()
            ),
        }
    }
    print!("{}", table(&rows));
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.pass)
        .map(|r| r.name.as_str())
        .collect();
    println!(
        "tolerance: rel-L2 <= {:e}{}; engine {engine_s:.3} s, reference {reference_s:.3} s",
        tol.rel_l2,
        match (tol.atol, tol.rtol) {
            (None, None) => String::new(),
            (a, r) => format!(
                ", |got - want| <= {:e} + {:e}·|want|",
                a.unwrap_or(0.0),
                r.unwrap_or(0.0)
            ),
        }
    );
    if let Some(path) = &args.export_json {
        let report = serde_json::json!({
            "model": args.model.display().to_string(),
            "engine": args.engine.as_ref().map(|p| p.display().to_string()),
            "backend": opened.backend,
            "device": opened.device_name,
            "precision": precision.name(),
            "seed": args.seed,
            "inputs": feed.lines,
            "tolerance": tol,
            "outputs": rows,
            "source": opened.kind.name(),
            "build_seconds": opened.build_seconds,
            "load_seconds": opened.load_seconds,
            "engine_seconds": engine_s,
            "reference_seconds": reference_s,
            "pass": failed.is_empty(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} output(s) differ from the CPU reference beyond the tolerance: {}",
            failed.len(),
            rows.len(),
            failed.join(", ")
        );
    }
    println!("PASS: {} output(s) within tolerance", rows.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn v(dims: &[usize], data: &[f32]) -> Value {
        Value::F32(ArrayD::from_shape_vec(ndarray::IxDyn(dims), data.to_vec()).unwrap())
    }

    const LOOSE: Tolerance = Tolerance {
        rel_l2: 1e-2,
        atol: None,
        rtol: None,
    };

    #[test]
    fn close_values_pass_and_metrics_are_right() {
        let want = v(&[4], &[1.0, -2.0, 3.0, 4.0]);
        let got = v(&[4], &[1.0, -2.0, 3.0, 4.004]);
        let m = compare("y", &got, &want, &LOOSE);
        assert!(m.pass, "{m:?}");
        assert!((m.max_abs - 0.004).abs() < 1e-6);
        assert!((m.max_rel - 0.001).abs() < 1e-6);
        assert!(
            (m.rel_l2 - 0.004 / 30f64.sqrt()).abs() < 1e-6,
            "{}",
            m.rel_l2
        );
        assert!(m.cosine > 0.99999 && m.cosine <= 1.0);
        let strict = Tolerance {
            rel_l2: 1e-5,
            ..LOOSE
        };
        assert!(!compare("y", &got, &want, &strict).pass);
        let elementwise = Tolerance {
            atol: Some(1e-3),
            rtol: Some(0.0),
            ..LOOSE
        };
        let m = compare("y", &got, &want, &elementwise);
        assert_eq!(m.violations, 1);
        assert!(!m.pass && m.reason.unwrap().contains("beyond atol"));
    }

    #[test]
    fn nan_never_passes() {
        let both = v(&[2], &[f32::NAN, 1.0]);
        let m = compare("y", &both, &both, &LOOSE);
        assert!(!m.pass);
        assert_eq!((m.nan_engine, m.nan_reference), (1, 1));
        let m = compare("y", &v(&[2], &[0.0, 1.0]), &both, &LOOSE);
        assert!(!m.pass && m.reason.unwrap().contains("NaN"));
    }

    #[test]
    fn infinities_and_shapes() {
        let inf = v(&[2], &[f32::INFINITY, 1.0]);
        assert!(compare("y", &inf, &inf, &LOOSE).pass);
        let other = v(&[2], &[f32::NEG_INFINITY, 1.0]);
        let m = compare("y", &other, &inf, &LOOSE);
        assert_eq!(m.inf_mismatch, 1);
        assert!(!m.pass);
        let m = compare("y", &v(&[1, 2], &[1.0, 2.0]), &v(&[2], &[1.0, 2.0]), &LOOSE);
        assert!(!m.pass && m.reason.unwrap().contains("shape"));
        let zeros = v(&[2], &[0.0, 0.0]);
        let m = compare("y", &v(&[2], &[0.0, 1e-3]), &zeros, &LOOSE);
        assert!(!m.pass && m.rel_l2.is_infinite() && m.cosine == 0.0);
    }

    #[test]
    fn the_table_names_every_output() {
        let a = v(&[2], &[1.0, 2.0]);
        let rows = vec![
            compare("logits", &a, &a, &LOOSE),
            compare("y", &v(&[2], &[5.0, 2.0]), &a, &LOOSE),
        ];
        let t = table(&rows);
        assert!(
            t.contains("logits") && t.contains("PASS") && t.contains("FAIL"),
            "{t}"
        );
        assert!(t.contains("rel-L2 "), "{t}");
    }
}
