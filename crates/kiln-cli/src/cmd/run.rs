//! `kiln run`: one inference of a model on given or random inputs, outputs saved as `.npy`.
//!
//! `--backend cpu` runs kiln's CPU reference interpreter (kiln-reference). The GPU backends
//! (`kiln`, `tensorrt`) come with the CLI wiring of kiln-engine and kiln-nvinfer (issue 9).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kiln_reference::{Interpreter, Value};

use crate::tensors;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model.
    pub model: PathBuf,
    /// Which backend runs it: `cpu` (the reference interpreter) today.
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// An input from a .npy file: NAME=FILE (repeatable). Inputs not given are random.
    #[arg(long = "input", value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Shapes of random inputs: NAME:1x3x224x224 (repeatable or comma-separated). Symbolic
    /// dims not given are 1.
    #[arg(long, value_name = "NAME:DIMS")]
    pub shapes: Vec<String>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the outputs (`<output>.npy`) and the random inputs used.
    #[arg(long)]
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

fn pairs(items: &[String], what: &str) -> Result<Vec<(String, PathBuf)>> {
    items
        .iter()
        .map(|s| {
            let (n, f) = s
                .split_once('=')
                .with_context(|| format!("{what} '{s}' should be NAME=FILE"))?;
            Ok((n.to_string(), PathBuf::from(f)))
        })
        .collect()
}

/// A file name for a value name (ONNX names may hold '/' or ':').
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn run(args: &Args) -> Result<()> {
    if args.backend != "cpu" {
        bail!(
            "backend '{}' is not available yet: `kiln run` has the CPU reference (--backend cpu); \
             the GPU engine comes to the CLI with issue 9",
            args.backend
        );
    }
    let graph = kiln_onnx::load(&args.model)?;
    let given = pairs(&args.inputs, "--input")?;
    let shapes = tensors::parse_shapes(&args.shapes)?;
    let mut rng = tensors::rng(args.seed);
    let mut feed: HashMap<String, Value> = HashMap::new();
    let mut random_inputs = Vec::new();
    for vi in &graph.inputs {
        let dtype = vi.dtype.with_context(|| {
            format!(
                "input '{}' has no declared element type; kiln cannot feed it",
                vi.name
            )
        })?;
        let v = match given.iter().find(|(n, _)| *n == vi.name) {
            Some((_, path)) => tensors::read_npy(path, dtype)?,
            None => {
                let shape = tensors::concrete_shape(vi, &shapes)?;
                random_inputs.push(vi.name.clone());
                tensors::random_value(dtype, &shape, &mut rng)
            }
        };
        feed.insert(vi.name.clone(), v);
    }
    for (n, _) in &given {
        if !graph.inputs.iter().any(|vi| &vi.name == n) {
            bail!(
                "--input names '{n}', which is not an input of {}",
                args.model.display()
            );
        }
    }
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for name in &random_inputs {
            tensors::write_npy(
                &dir.join(format!("input_{}.npy", file_name(name))),
                &feed[name],
            )?;
        }
    }
    let output_names: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let interp = Interpreter::new(graph)?;
    let start = Instant::now();
    let outputs = interp.run(feed)?;
    let elapsed = start.elapsed();
    let mut report = serde_json::Map::new();
    report.insert("model".into(), args.model.display().to_string().into());
    report.insert("backend".into(), "cpu".into());
    report.insert("seconds".into(), elapsed.as_secs_f64().into());
    let mut outs = Vec::new();
    for name in &output_names {
        let v = &outputs[name];
        let vals = v.to_f64_vec();
        let finite: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
        let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
        let (lo, hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if !args.json {
            println!(
                "{name}: {} {:?}  min {lo:.6} max {hi:.6} mean {mean:.6}{}",
                v.dtype(),
                v.shape(),
                if finite.len() < vals.len() {
                    "  (non-finite values present)"
                } else {
                    ""
                }
            );
        }
        if let Some(dir) = &args.output_dir {
            tensors::write_npy(&dir.join(format!("{}.npy", file_name(name))), v)?;
        }
        outs.push(serde_json::json!({"name": name, "dtype": v.dtype().name(), "shape": v.shape(), "min": lo, "max": hi, "mean": mean}));
    }
    report.insert("outputs".into(), outs.into());
    let mut failed = Vec::new();
    let mut comps = Vec::new();
    for (name, path) in pairs(&args.expect, "--expect")? {
        let got = outputs
            .get(&name)
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
        println!("ran in {:.3} s on the CPU reference", elapsed.as_secs_f64());
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
