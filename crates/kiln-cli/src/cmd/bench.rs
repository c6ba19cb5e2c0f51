//! `kiln bench MODEL|PLAN [build flags] [--batch N | --shapes NAME:DIMS] [--warmup 200ms]
//! [--duration 3s] [--iterations N] [--streams N] [--cuda-graph | --no-cuda-graph]
//! [--no-transfers] [--dump-profile] [--export-json FILE] [--plot FILE.png]`: latency and
//! throughput in trtexec's terms.
//!
//! The engine comes from [`crate::engine_source::open`] (an ONNX model is built first; a kiln
//! plan is loaded). Then, per `--backend`:
//! - `kiln` (GPU; the default `auto` picks it when a CUDA device is found): [`crate::bench::gpu`]
//!   times H2D, GPU compute, D2H with CUDA events, the enqueue call and the host latency of
//!   each iteration, on `--streams` contexts at once. GPU-only: no CPU test covers it (it ran
//!   on an H200, see that module's doc); without a GPU `--backend kiln` fails with an error
//!   saying so.
//! - `cpu` (or `auto` without a GPU): [`crate::bench::host`] times `execute_host` on kiln's
//!   CPU reference; only host latency exists there, and a note says the GPU columns need a
//!   CUDA device. Works anywhere (CI).
//! - `tensorrt`: not wired into bench; an error says so.
//!
//! The summary goes to stdout, notes to stderr. `--export-json` writes the report whose schema
//! is in [`crate::bench`]'s module doc; `--plot` the latency histograms (and the per-step bars
//! with `--dump-profile`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::bench::report::{Meta, Report};
use crate::bench::{self, Schedule, gpu, host};
use crate::engine_source::{self, BuildFlags, FileKind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model (built first with the build flags) or a saved kiln plan.
    pub model: PathBuf,
    #[command(flatten)]
    pub build: BuildFlags,
    /// Items per query: sets the leading dim of every input whose leading dim is not fixed
    /// (for an ONNX model the engine is built for it). Use --shapes for anything else.
    #[arg(long, value_name = "N", conflicts_with = "shapes",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: Option<u64>,
    /// Warm-up time before measuring: 200ms, 1s, 500us, 0.5s (a bare number is seconds).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measure for at least this long.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Measure at least this many iterations (all streams together).
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    /// Contexts run concurrently, each on its own stream (thread): throughput mode.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub streams: u64,
    /// Replay each run as a CUDA graph (kiln backend).
    #[arg(long, overrides_with = "no_cuda_graph")]
    pub cuda_graph: bool,
    /// Issue each run step by step (the default).
    #[arg(long, overrides_with = "cuda_graph")]
    pub no_cuda_graph: bool,
    /// Leave inputs and outputs on the device: time GPU compute without copies.
    #[arg(long)]
    pub no_transfers: bool,
    /// Profile one more run step by step and print the per-step table (kiln backend).
    #[arg(long)]
    pub dump_profile: bool,
    /// Write everything measured as JSON (schema: `kiln bench` docs).
    #[arg(long, value_name = "FILE")]
    pub export_json: Option<PathBuf>,
    /// Draw the latency distribution (and the per-step profile) as a PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Slowest steps listed with --dump-profile.
    #[arg(long, default_value_t = 15)]
    pub profile_top: usize,
}

/// `200ms`, `3s`, `1.5s`, `500us`, `2m`, `3` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "'{text}': unknown unit '{other}' (use us, ms, s or m, e.g. 200ms)"
            ));
        }
    };
    let v: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 200ms or 3s"))?;
    let secs = v * scale;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("'{text}' is out of range (0 to 24 h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// With `--batch` on an ONNX model and no shape flags: the fixed build shapes that give every
/// input with a free leading dim that batch (other free dims 1, as `engine_source` does).
fn batch_build_shapes(args: &Args, batch: usize) -> Result<Vec<String>> {
    let b = &args.build;
    let shape_flags = !(b.shapes.is_empty()
        && b.min_shapes.is_empty()
        && b.opt_shapes.is_empty()
        && b.max_shapes.is_empty());
    if shape_flags || engine_source::file_kind(&args.model)? != FileKind::Onnx {
        return Ok(Vec::new());
    }
    let graph = kiln_onnx::load(&args.model)?;
    let mut specs = Vec::new();
    for v in &graph.inputs {
        let (Some(dtype), Some(shape)) = (v.dtype, &v.shape) else {
            continue;
        };
        specs.push(kiln_core::TensorSpec::new(
            v.name.clone(),
            dtype,
            shape.clone(),
        ));
    }
    let shapes = bench::input_shapes(&specs, &[], Some(batch), &HashMap::new())?;
    Ok(shapes
        .iter()
        .zip(&specs)
        .filter(|(_, s)| s.shape.as_known().is_none())
        .map(|((n, d), _)| format!("{n}:{}", bench::report::dims_text(d)))
        .collect())
}

pub fn run(args: &Args) -> Result<()> {
    if args.iterations == 0 && args.duration.is_zero() {
        bail!("--iterations 0 with --duration 0 measures nothing; give one of them");
    }
    if args.build.backend == engine_source::BackendChoice::Tensorrt {
        bail!(
            "`kiln bench` times the kiln (GPU) and cpu backends; TensorRT is not wired into \
             bench yet (use --backend kiln, cpu or auto)"
        );
    }
    let batch = args.batch.map(|b| b as usize);
    let mut flags = args.build.clone();
    if let Some(b) = batch {
        flags.shapes = batch_build_shapes(args, b)?;
    }
    let opened = engine_source::open(&args.model, &flags)?;
    let engine = opened.engine.clone();
    let given: HashMap<String, Vec<usize>> =
        engine_source::parse_shape_list("--shapes", &flags.shapes)?
            .into_iter()
            .collect();
    let shapes = bench::input_shapes(engine.inputs(), engine.profiles(), batch, &given)?;
    let inputs = bench::random_inputs(engine.inputs(), &shapes, args.seed)?;
    let sched = Schedule {
        warmup: args.warmup,
        duration: args.duration,
        iterations: args.iterations,
        streams: args.streams as usize,
    };
    let shape_text: Vec<String> = shapes
        .iter()
        .map(|(n, d)| format!("{n}:{}", bench::report::dims_text(d)))
        .collect();
    eprintln!(
        "benchmarking {} on {} ({}): {} warm-up, then at least {} and {} iteration(s), {} stream(s)",
        args.model.display(),
        opened.backend,
        shape_text.join(", "),
        fmt_duration(args.warmup),
        fmt_duration(args.duration),
        args.iterations,
        sched.streams
    );
    let mut notes = Vec::new();
    if let Some(b) = batch
        && bench::batch_of(&shapes) != b
    {
        notes.push(format!(
            "--batch {b} does not apply: the first input's leading dim is fixed at {}",
            bench::batch_of(&shapes)
        ));
    }
    let (measured, precision, device, cuda_graph_req, transfers) =
        match (opened.backend, opened.kiln.as_ref()) {
            ("kiln", Some(kiln)) => {
                let opts = gpu::GpuOptions {
                    cuda_graph: args.cuda_graph && !args.no_cuda_graph,
                    transfers: !args.no_transfers,
                };
                let m = gpu::run(kiln, &inputs, &sched, opts, args.dump_profile)?;
                let precision = kiln.header().config.precision.name().to_string();
                (
                    m,
                    precision,
                    opened.device_name.clone(),
                    opts.cuda_graph,
                    opts.transfers,
                )
            }
            ("cpu", _) => {
                notes.push(
                "CPU backend: only host latency is measured; enqueue, H2D, GPU compute and D2H \
                 need a CUDA device and the kiln backend"
                    .to_string(),
            );
                let gpu_flags = [
                    (args.cuda_graph, "--cuda-graph"),
                    (args.no_transfers, "--no-transfers"),
                    (args.dump_profile, "--dump-profile"),
                ];
                for (_, flag) in gpu_flags.iter().filter(|(on, _)| *on) {
                    notes.push(format!(
                        "{flag} applies to the kiln GPU backend; ignored on the CPU"
                    ));
                }
                if flags.precision() != kiln_core::Precision::Fp32 {
                    notes.push(format!(
                        "--{} is a GPU build flag; the CPU reference computes in the model's types",
                        flags.precision().name()
                    ));
                }
                let m = host::run(&engine, &inputs, &sched)?;
                (m, "fp32".to_string(), "cpu".to_string(), false, false)
            }
            (other, _) => bail!(
                "`kiln bench` times the kiln (GPU) and cpu backends; the {other} backend is not \
             wired into bench yet (use --backend kiln or --backend cpu)"
            ),
        };
    notes.extend(measured.end.notes.iter().cloned());
    let meta = Meta {
        model: args.model.display().to_string(),
        backend: opened.backend.to_string(),
        device,
        precision,
        batch: bench::batch_of(&shapes),
        input_shapes: bench::shape_map(&shapes),
        streams: sched.streams,
        cuda_graph: measured.end.cuda_graph,
        cuda_graph_requested: cuda_graph_req,
        transfers,
        warmup_ms: args.warmup.as_secs_f64() * 1e3,
        duration_ms: args.duration.as_secs_f64() * 1e3,
        min_iterations: args.iterations,
        notes,
    };
    let mut report = Report::new(meta, measured.samples, measured.walltime_s)?;
    report.profile = measured.end.profile;
    print!("{}", report.render_text(args.profile_top));
    if let Some(path) = &args.export_json {
        let mut text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        text.push('\n');
        std::fs::write(path, text)
            .with_context(|| format!("writing the JSON report to {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} ({}, {}, batch {})",
            args.model
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            report.backend,
            report.precision,
            report.batch
        );
        let text = bench::plot::write_png(path, &title, &report.samples, report.profile.as_ref())?;
        if !text {
            engine_source::note(
                "no TTF font found (set KILN_PLOT_FONT to one): the plot has no text",
            );
        }
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(
            parse_duration("3 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
