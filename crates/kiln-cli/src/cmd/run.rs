//! `kiln run <model.onnx|plan>`: one inference on given or random inputs, outputs saved as
//! `.npy`.
//!
//! The engine comes from [`engine_source::open`] with the build flags: `--backend auto` (the
//! default) builds the model with kiln on a CUDA GPU, or runs kiln's CPU reference
//! (kiln-reference's `CpuEngine`) with a note when there is none; `--backend cpu` always runs
//! the CPU reference; `--backend tensorrt` builds or loads a TensorRT engine. Either way the run
//! goes through `ExecutionContext::execute_host`. Random inputs are seeded (`--seed`, printed);
//! an input given as a file fixes that input's shape for the build unless a shape flag names
//! it. `--expect NAME=FILE.npy` compares an output with expected values.
//!
//! Works and is tested on a CPU-only machine: the cpu backend (models, and the graph stored in
//! a kiln plan). GPU-only and untested here: the kiln and tensorrt backends.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

use super::feeds;
use crate::engine_source::{self, BuildFlags};
use crate::tensors;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model, or a kiln plan made by `kiln build`.
    pub model: PathBuf,
    #[command(flatten)]
    pub flags: BuildFlags,
    /// An input from a .npy file: NAME=FILE (repeatable). Inputs not given are random.
    #[arg(long = "input", value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the outputs (`<output>.npy`) and the random inputs used (`input_<name>.npy`).
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// An expected output: NAME=FILE.npy (repeatable); each is compared, and the command fails
    /// if one does not match within --rtol / --atol.
    #[arg(long = "expect", value_name = "NAME=FILE")]
    pub expect: Vec<String>,
    #[arg(long, default_value_t = 1e-4)]
    pub rtol: f64,
    #[arg(long, default_value_t = 1e-5)]
    pub atol: f64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// min, max and mean of the finite values, and whether any value is not finite.
fn summary(vals: &[f64]) -> (f64, f64, f64, bool) {
    let finite: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    (lo, hi, mean, finite.len() < vals.len())
}

pub fn run(args: &Args) -> Result<()> {
    let given = feeds::pairs(&args.inputs, "--input")?;
    let flags = feeds::with_given_shapes(&args.flags, &given)?;
    let opened = engine_source::open(&args.model, &flags)?;
    let feed = feeds::make_feed(opened.engine.as_ref(), &flags, &given, args.seed)?;
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for name in &feed.random {
            tensors::write_npy(
                &dir.join(format!("input_{}.npy", feeds::file_name(name))),
                &feed.values[name],
            )?;
        }
    }
    if !args.json {
        if let Some(s) = opened.build_seconds {
            println!("built with {} in {s:.2} s", opened.backend);
        }
        for line in &feed.lines {
            println!("input {line}");
        }
    }
    let (outputs, seconds) = feeds::run_once(&opened.engine, &feed.host)?;
    let mut report = serde_json::Map::new();
    report.insert("model".into(), args.model.display().to_string().into());
    report.insert("backend".into(), opened.backend.into());
    report.insert("device".into(), opened.device_name.clone().into());
    report.insert("seed".into(), args.seed.into());
    report.insert("random_inputs".into(), feed.random.clone().into());
    report.insert("source".into(), opened.kind.name().into());
    report.insert("build_seconds".into(), opened.build_seconds.into());
    report.insert("load_seconds".into(), opened.load_seconds.into());
    report.insert("seconds".into(), seconds.into());
    let mut outs = Vec::new();
    for (name, v) in &outputs {
        let (lo, hi, mean, non_finite) = summary(&v.to_f64_vec());
        if !args.json {
            println!(
                "{name}: {} {:?}  min {lo:.6} max {hi:.6} mean {mean:.6}{}",
                v.dtype(),
                v.shape(),
                if non_finite {
                    "  (non-finite values present)"
                } else {
                    ""
                }
            );
        }
        if let Some(dir) = &args.output_dir {
            tensors::write_npy(&dir.join(format!("{}.npy", feeds::file_name(name))), v)?;
        }
        outs.push(
            serde_json::json!({"name": name, "dtype": v.dtype().name(), "shape": v.shape(),
            "min": lo, "max": hi, "mean": mean, "non_finite": non_finite}),
        );
    }
    report.insert("outputs".into(), outs.into());
    let mut failed = Vec::new();
    let mut comps = Vec::new();
    for (name, path) in feeds::pairs(&args.expect, "--expect")? {
        let got = outputs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .with_context(|| format!("--expect names '{name}', which is not an output"))?;
        let want = tensors::read_npy(&path, got.dtype())?;
        let c = tensors::compare(got, &want, args.rtol, args.atol)
            .with_context(|| format!("output '{name}' against {}", path.display()))?;
        if !args.json {
            println!(
                "{name} vs {}: max abs {:.3e}, max rel {:.3e}, rel-L2 {:.3e}, cosine {:.8}: {}",
                path.display(),
                c.max_abs,
                c.max_rel,
                c.rel_l2,
                c.cosine,
                if c.pass { "PASS" } else { "FAIL" }
            );
        }
        if !c.pass {
            failed.push(name.clone());
        }
        comps.push(
            serde_json::json!({"name": name, "file": path.display().to_string(), "comparison": c}),
        );
    }
    report.insert("expect".into(), comps.into());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "ran in {seconds:.3} s on the {} backend ({})",
            opened.backend, opened.device_name
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} output(s) differ from the expected values beyond rtol {} / atol {}: {}",
            failed.len(),
            args.rtol,
            args.atol,
            failed.join(", ")
        );
    }
    Ok(())
}
