//! `kiln build model.onnx -o model.kiln [build flags] [--report FILE.json]`: ONNX model →
//! serialised engine, as `trtexec --onnx ... --saveEngine ...`.
//!
//! The kiln backend (`--backend kiln`, or `auto`, the default) runs kiln-engine's builder in
//! its two halves with a progress spinner per phase (load ONNX; passes, specialisation and
//! lowering; NVRTC kernels and tactics; serialise) and prints the build time and plan size.
//! It needs a CUDA GPU: without one it fails with an error saying so (`auto` does not fall
//! back to the CPU here: a plan is GPU code). `--backend tensorrt` builds through kiln-nvinfer
//! and fails with its "not installed" error where TensorRT is absent. `--backend cpu` is an
//! error: the CPU reference has no engine file (`kiln run`/`kiln compare` use it directly).
//!
//! `--report FILE.json` writes one JSON object (`cargo xtask build-engines` reads it; keep the
//! names stable):
//! - `kiln_version`, `backend` (`kiln` | `tensorrt`), `model` (path as given), `model_bytes`,
//!   `model_fnv1a64` (FNV-1a 64 of the model file's bytes as 16 hex digits; external weight
//!   files are not included), `output` (engine path), `plan_bytes`;
//! - `precision` (`fp32` | `tf32` | `fp16` | `bf16`), `profiles` (list of `{inputs: [{name,
//!   min, opt, max}]}`; empty when every input is fixed), `workspace_bytes` (the limit; `null`
//!   for TensorRT's default), `opt_level` (`null`: backend default), `timing_cache` (path or
//!   `null`);
//! - `build_seconds` (the builder itself: prepare + device for kiln, TensorRT's build for
//!   tensorrt), `total_seconds` (everything, load and save included), `phases` (seconds of
//!   `load_onnx`, `prepare`, `kernels_tactics`, `serialise`; kiln only);
//! - `gpu` (`{name, compute_capability: [major, minor], index}`; `null` for tensorrt),
//!   `versions` (`{cuda, nvrtc, cublas, cublaslt, cudnn}` as kiln-cuda's probe reads them, a
//!   missing library `null`; `{tensorrt}` for tensorrt);
//! - `tactics` (kiln only: `{seconds, timed, cache_hits, heuristic, candidates_timed}`) and
//!   `kernels_seconds`.
//!
//! Tested here (CPU only): argument handling, the no-GPU error and the cpu-backend error. The
//! build itself and the report's GPU fields are GPU-only and untested on this machine.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::engine_source::{self, BackendChoice, BuildFlags, BuildPhase};
use crate::human;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model.
    pub model: PathBuf,
    /// Where to save the engine (default: the model's path with `.kiln`, or `.engine` for
    /// TensorRT).
    #[arg(short, long, alias = "save-engine", value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub flags: BuildFlags,
    /// Write a JSON report of the build to this file (fields in `kiln build`'s docs).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}

/// FNV-1a 64 of a file's bytes (read in chunks).
pub fn fnv1a64(path: &Path) -> Result<(u64, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok((h, total));
        }
        total += n as u64;
        for &b in &buf[..n] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// One spinner per phase; a finished phase leaves a line with its time.
struct Phases {
    current: Option<(ProgressBar, &'static str, Instant)>,
    times: Vec<(&'static str, f64)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            current: None,
            times: Vec::new(),
        }
    }

    fn start(&mut self, name: &'static str) {
        self.finish();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(name);
        bar.enable_steady_tick(Duration::from_millis(100));
        self.current = Some((bar, name, Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((bar, name, t)) = self.current.take() {
            let s = t.elapsed().as_secs_f64();
            bar.finish_and_clear();
            println!("  {name:<22} {s:8.2} s");
            self.times.push((name, s));
        }
    }

    fn seconds(&self, name: &str) -> f64 {
        self.times
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, s)| *s)
    }
}

const LOAD: &str = "load ONNX";
const PREPARE: &str = "build / specialise";
const DEVICE: &str = "kernels + tactics";
const SAVE: &str = "serialise";

pub fn run(args: &Args) -> Result<()> {
    match args.flags.backend {
        BackendChoice::Cpu => bail!(
            "`kiln build` makes GPU engines and the cpu backend has no engine file; run the \
             model on the CPU with `kiln run --backend cpu` or check it with `kiln compare \
             --backend cpu`"
        ),
        BackendChoice::Tensorrt => build_tensorrt(args),
        BackendChoice::Kiln | BackendChoice::Auto => build_kiln(args),
    }
}

fn write_report(path: &Path, report: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing the build report {}", path.display()))?;
    println!("report: {}", path.display());
    Ok(())
}

fn build_kiln(args: &Args) -> Result<()> {
    let total = Instant::now();
    let device = engine_source::open_gpu(args.flags.device)?;
    let info = device.info().clone();
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.model.with_extension("kiln"));
    println!(
        "building {} for {} (sm_{}{}) -> {}",
        args.model.display(),
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        output.display()
    );
    let mut phases = Phases::new();
    phases.start(LOAD);
    let graph = kiln_onnx::load(&args.model)?;
    let (hash, model_bytes) = fnv1a64(&args.model)?;
    phases.finish();
    let config = args.flags.build_config(&graph)?;
    let built = engine_source::build_kiln(&device, &graph, &config, &mut |p| match p {
        BuildPhase::Prepare => phases.start(PREPARE),
        BuildPhase::Device => phases.start(DEVICE),
    });
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            phases.finish();
            return Err(e.context(format!("building {}", args.model.display())));
        }
    };
    phases.start(SAVE);
    let bytes = built.plan.to_bytes()?;
    std::fs::write(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    phases.finish();
    let build_s = built.prepare_s + built.device_s;
    println!(
        "built {} in {build_s:.2} s ({} {}; {} in total): {} ({})",
        args.model.display(),
        config.precision,
        if config.profiles.is_empty() {
            "fixed shapes".to_string()
        } else {
            config
                .profiles
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        },
        format_args!("{:.2} s", total.elapsed().as_secs_f64()),
        output.display(),
        human::bytes(bytes.len())
    );
    let t = &built.report.tactics;
    println!(
        "tactics: {} timed ({} candidate runs), {} from the timing cache, {} heuristic, in \
         {:.2} s; kernels {:.2} s",
        t.timed, t.candidates_timed, t.cache_hits, t.heuristic, t.seconds, built.report.kernels_s
    );
    if let Some(path) = &args.report {
        let fp = &built.plan.header.fingerprint;
        let cublas = kiln_cuda::Probe::run()
            .ok()
            .and_then(|p| p.version(kiln_cuda::Library::Cublas).map(str::to_string));
        let report = json!({
            "kiln_version": env!("CARGO_PKG_VERSION"),
            "backend": "kiln",
            "model": args.model.display().to_string(),
            "model_bytes": model_bytes,
            "model_fnv1a64": format!("{hash:016x}"),
            "output": output.display().to_string(),
            "plan_bytes": bytes.len(),
            "precision": config.precision.name(),
            "profiles": config.profiles,
            "workspace_bytes": config.workspace_limit,
            "opt_level": config.opt_level,
            "timing_cache": config.timing_cache.as_ref().map(|p| p.display().to_string()),
            "build_seconds": build_s,
            "total_seconds": total.elapsed().as_secs_f64(),
            "phases": {
                "load_onnx": phases.seconds(LOAD),
                "prepare": phases.seconds(PREPARE),
                "kernels_tactics": phases.seconds(DEVICE),
                "serialise": phases.seconds(SAVE),
            },
            "gpu": {
                "name": info.name,
                "compute_capability": [info.compute_capability.0, info.compute_capability.1],
                "index": info.index,
            },
            "versions": {
                "cuda": fp.cuda,
                "nvrtc": fp.nvrtc,
                "cublas": cublas,
                "cublaslt": fp.cublaslt,
                "cudnn": fp.cudnn,
            },
            "tactics": {
                "seconds": t.seconds,
                "timed": t.timed,
                "cache_hits": t.cache_hits,
                "heuristic": t.heuristic,
                "candidates_timed": t.candidates_timed,
            },
            "kernels_seconds": built.report.kernels_s,
        });
        write_report(path, &report)?;
    }
    Ok(())
}

fn build_tensorrt(args: &Args) -> Result<()> {
    let total = Instant::now();
    let trt = kiln_nvinfer::TensorRt::load(&args.flags.tensorrt_load_options())?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.model.with_extension("engine"));
    let graph = kiln_onnx::load(&args.model)?;
    let opts = args.flags.tensorrt_options(&graph)?;
    let (hash, model_bytes) = fnv1a64(&args.model)?;
    let t = Instant::now();
    let built = trt.build(kiln_nvinfer::Model::File(&args.model), &opts)?;
    let build_s = t.elapsed().as_secs_f64();
    built.save(&output)?;
    println!(
        "built {} with TensorRT {} in {build_s:.2} s -> {} ({} bytes)",
        args.model.display(),
        trt.version(),
        output.display(),
        built.bytes.len()
    );
    if let Some(path) = &args.report {
        let report = json!({
            "kiln_version": env!("CARGO_PKG_VERSION"),
            "backend": "tensorrt",
            "model": args.model.display().to_string(),
            "model_bytes": model_bytes,
            "model_fnv1a64": format!("{hash:016x}"),
            "output": output.display().to_string(),
            "plan_bytes": built.bytes.len(),
            "precision": opts.precision.name(),
            "profiles": opts.profiles,
            "workspace_bytes": opts.workspace,
            "opt_level": opts.optimization_level,
            "timing_cache": serde_json::Value::Null,
            "build_seconds": build_s,
            "total_seconds": total.elapsed().as_secs_f64(),
            "gpu": serde_json::Value::Null,
            "versions": {"tensorrt": trt.version().to_string()},
        });
        write_report(path, &report)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(fnv1a64(&p).unwrap(), (0xcbf2_9ce4_8422_2325, 0));
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        std::fs::write(&p, b"a").unwrap();
        assert_eq!(fnv1a64(&p).unwrap(), (0xaf63_dc4c_8601_ec8c, 1));
        std::fs::write(&p, b"b").unwrap();
        assert_ne!(fnv1a64(&p).unwrap().0, 0xaf63_dc4c_8601_ec8c);
    }
}
