//! Where the commands get an engine from: the build flags shared by `kiln build`, `run`,
//! `compare` and `bench` ([`BuildFlags`]), the backend choice, and [`open`], which turns a path
//! (an ONNX model, built now; a saved kiln plan; a TensorRT engine file) into an
//! `Arc<dyn kiln_core::Engine>`.
//!
//! Flags, in trtexec's vocabulary:
//! - precision: `--fp32` (default), `--tf32`, `--fp16`, `--bf16`;
//! - shapes: `--shapes`, `--min-shapes`, `--opt-shapes`, `--max-shapes`, each a
//!   comma-separated (or repeated) list of `NAME:DIMS` such as `x:1x3x224x224` (a name holding
//!   `:` may be quoted: `'in:0':1x3`). `--shapes` fixes an input (min = opt = max). Of
//!   min/opt/max, a missing one falls back to opt (opt to max, then min). A dynamic input
//!   named by none of them gets 1 for each symbolic dim (min = opt = max) and a printed note;
//!   a dim of unknown size (`?`) is an error naming the input and the flag to pass;
//! - `--workspace 4GiB` (B, KiB/MiB/GiB/TiB, KB/MB/GB/TB, K/M/G = binary), `--timing-cache
//!   FILE`, `--opt-level 0..5`, `--kernel-cache DIR`, `--device N`, `--tensorrt-dir DIR`;
//! - `--backend kiln|tensorrt|cpu|auto` (default auto: kiln when a CUDA device is found, else
//!   the cpu backend with a printed note).
//!
//! What works where: flag parsing, profile resolution and the cpu backend (kiln-reference's
//! `CpuEngine`, also over the optimised graph stored in a kiln plan) work and are tested on a
//! CPU-only machine. The kiln backend (build with `kiln_engine::Builder`'s two halves, or
//! `Engine::from_plan`) needs a CUDA GPU and is untested here; without one it fails with an
//! error saying so. TensorRT goes through kiln-nvinfer and fails with its "not installed"
//! error where TensorRT is absent. Notes go to stderr, so stdout stays clean for JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use kiln_core::{Dim, HostTensor, OptimizationProfile, Precision, ProfileInput, Shape};
use kiln_engine::plan::{DEFAULT_OPT_LEVEL, Fingerprint, Fusions, MAGIC};
use kiln_engine::runtime::BuildReport;
use kiln_engine::{BuildConfig, Plan};
use kiln_onnx::Graph;
use kiln_reference::Value;

/// Which backend runs the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// kiln's own GPU engine (kiln-engine); needs a CUDA GPU.
    Kiln,
    /// TensorRT through kiln-nvinfer; needs TensorRT and a CUDA GPU.
    Tensorrt,
    /// kiln's CPU reference interpreter (kiln-reference); runs anywhere, slowly.
    Cpu,
    /// kiln when a CUDA device is found, else cpu (with a note).
    Auto,
}

/// The build flags shared by `kiln build`, `run`, `compare` and `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildFlags {
    /// Build in fp32 (the default).
    #[arg(long, conflicts_with_all = ["tf32", "fp16", "bf16"])]
    pub fp32: bool,
    /// Allow TF32 tensor-core math for GEMMs and convolutions.
    #[arg(long, conflicts_with_all = ["fp16", "bf16"])]
    pub tf32: bool,
    /// Store and compute in fp16 (accumulations that need it stay fp32).
    #[arg(long, conflicts_with = "bf16")]
    pub fp16: bool,
    /// Store and compute in bf16 (accumulations that need it stay fp32).
    #[arg(long)]
    pub bf16: bool,
    /// Fixed input shapes (min = opt = max): NAME:DIMS[,NAME:DIMS...], e.g. x:1x3x224x224.
    #[arg(long, value_name = "NAME:DIMS")]
    pub shapes: Vec<String>,
    /// Smallest input shapes of the optimisation profile: NAME:DIMS[,...].
    #[arg(long = "min-shapes", value_name = "NAME:DIMS")]
    pub min_shapes: Vec<String>,
    /// Shapes the engine is tuned for: NAME:DIMS[,...].
    #[arg(long = "opt-shapes", value_name = "NAME:DIMS")]
    pub opt_shapes: Vec<String>,
    /// Largest input shapes of the optimisation profile: NAME:DIMS[,...].
    #[arg(long = "max-shapes", value_name = "NAME:DIMS")]
    pub max_shapes: Vec<String>,
    /// Most scratch memory tactics may use: bytes with an optional unit (256MiB, 4GiB, 1GB).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub workspace: Option<usize>,
    /// Timing cache file, read before and written after tactic timing.
    #[arg(long, value_name = "FILE")]
    pub timing_cache: Option<PathBuf>,
    /// Builder optimisation level: 0 = heuristic tactics, 1-5 = time more candidates.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=5))]
    pub opt_level: Option<u8>,
    /// Folder caching compiled NVRTC kernels between builds (kiln backend).
    #[arg(long, value_name = "DIR")]
    pub kernel_cache: Option<PathBuf>,
    /// Which backend builds and runs the engine.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// CUDA device index.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// A folder holding TensorRT's libnvinfer (searched before $KILN_TENSORRT_DIR and the
    /// system path).
    #[arg(long, value_name = "DIR")]
    pub tensorrt_dir: Option<PathBuf>,
}

impl Default for BuildFlags {
    fn default() -> Self {
        BuildFlags {
            fp32: false,
            tf32: false,
            fp16: false,
            bf16: false,
            shapes: Vec::new(),
            min_shapes: Vec::new(),
            opt_shapes: Vec::new(),
            max_shapes: Vec::new(),
            workspace: None,
            timing_cache: None,
            opt_level: None,
            kernel_cache: None,
            backend: BackendChoice::Auto,
            device: 0,
            tensorrt_dir: None,
        }
    }
}

/// Prints a note on stderr (stdout stays clean for reports).
pub fn note(text: &str) {
    eprintln!("note: {text}");
}

/// `4GiB`, `256MiB`, `1.5G`, `1GB`, `1000`: a byte count. Binary units for KiB/MiB/GiB/TiB
/// and the bare K/M/G/T; decimal ones for KB/MB/GB/TB.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "'{text}': unknown unit '{other}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 4GiB, 256MiB or 1000"))?;
    let bytes = (value * scale).round();
    if !bytes.is_finite() || bytes >= usize::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    Ok(bytes as usize)
}

/// One shape flag's list: `NAME:DIMS` items, comma-separated or repeated, every dim a number.
/// Names may hold ':' (the last one separates the dims) and may be quoted.
pub fn parse_shape_list(flag: &str, items: &[String]) -> Result<Vec<(String, Vec<usize>)>> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for spec in items.iter().flat_map(|s| s.split(',')) {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let (name, dims) = spec.rsplit_once(':').with_context(|| {
            format!("{flag} '{spec}' should be NAME:DIMS, e.g. {flag} x:1x3x224x224")
        })?;
        let name = name.trim().trim_matches(|c| c == '\'' || c == '"');
        if name.is_empty() {
            bail!("{flag} '{spec}' has no input name before ':'");
        }
        let shape = Shape::parse(dims).with_context(|| format!("{flag} '{spec}'"))?;
        let known = shape.as_known().with_context(|| {
            format!("{flag} '{spec}': every dim must be a number (e.g. {name}:1x3x224x224)")
        })?;
        if out.iter().any(|(n, _)| n == name) {
            bail!("{flag} names input '{name}' twice");
        }
        out.push((name.to_string(), known));
    }
    Ok(out)
}

impl BuildFlags {
    pub fn precision(&self) -> Precision {
        if self.tf32 {
            Precision::Tf32
        } else if self.fp16 {
            Precision::Fp16
        } else if self.bf16 {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }

    /// The optimisation profiles for inputs `(name, declared shape)`, with the notes the
    /// defaults call for. Empty when every input shape is fixed.
    pub fn resolve_profiles(
        &self,
        inputs: &[(String, Option<Shape>)],
    ) -> Result<(Vec<OptimizationProfile>, Vec<String>)> {
        let fixed = parse_shape_list("--shapes", &self.shapes)?;
        let min = parse_shape_list("--min-shapes", &self.min_shapes)?;
        let opt = parse_shape_list("--opt-shapes", &self.opt_shapes)?;
        let max = parse_shape_list("--max-shapes", &self.max_shapes)?;
        let known: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        for (flag, list) in [
            ("--shapes", &fixed),
            ("--min-shapes", &min),
            ("--opt-shapes", &opt),
            ("--max-shapes", &max),
        ] {
            for (name, _) in list {
                if !known.contains(&name.as_str()) {
                    bail!(
                        "{flag} names '{name}', which is not an input; the inputs are: {}",
                        known.join(", ")
                    );
                }
            }
        }
        let find = |list: &[(String, Vec<usize>)], name: &str| {
            list.iter().find(|(n, _)| n == name).map(|(_, d)| d.clone())
        };
        let mut entries = Vec::new();
        let mut notes = Vec::new();
        for (name, declared) in inputs {
            let fixed_dims = find(&fixed, name);
            let ranged = [find(&min, name), find(&opt, name), find(&max, name)];
            if fixed_dims.is_some() && ranged.iter().any(Option::is_some) {
                bail!(
                    "input '{name}' is in --shapes and in --min/--opt/--max-shapes; give one or the other"
                );
            }
            let Some(declared) = declared else {
                if let Some(d) = fixed_dims.or_else(|| ranged[1].clone()) {
                    let [lo, mid, hi] = ranged.map(|r| r.unwrap_or_else(|| d.clone()));
                    entries.push(profile_input(name, lo, mid, hi));
                    continue;
                }
                bail!(
                    "input '{name}' has no declared shape: give it with --shapes {name}:DIMS \
                     (or --min-shapes/--opt-shapes/--max-shapes)"
                );
            };
            let (lo, mid, hi) = if let Some(d) = fixed_dims {
                (d.clone(), d.clone(), d)
            } else if ranged.iter().any(Option::is_some) {
                let [lo, mid, hi] = ranged;
                let mid = mid.or_else(|| hi.clone()).or_else(|| lo.clone());
                let mid = mid.unwrap_or_default();
                (
                    lo.unwrap_or_else(|| mid.clone()),
                    mid.clone(),
                    hi.unwrap_or(mid),
                )
            } else if declared.is_fully_known() {
                continue;
            } else {
                let dims = default_dims(name, declared)?;
                notes.push(format!(
                    "input '{name}' {declared} has dynamic dims and no shapes were given: using \
                     {} (min = opt = max); pass --shapes {name}:DIMS or \
                     --min-shapes/--opt-shapes/--max-shapes to choose",
                    dims_text(&dims)
                ));
                (dims.clone(), dims.clone(), dims)
            };
            for (what, d) in [("min", &lo), ("opt", &mid), ("max", &hi)] {
                check_against_declared(name, declared, what, d)?;
            }
            if declared.is_fully_known() {
                continue;
            }
            entries.push(profile_input(name, lo, mid, hi));
        }
        if entries.is_empty() {
            return Ok((Vec::new(), notes));
        }
        let profile = OptimizationProfile { inputs: entries };
        profile.validate()?;
        Ok((vec![profile], notes))
    }

    /// The kiln-engine build configuration for `graph` (notes printed on stderr).
    pub fn build_config(&self, graph: &Graph) -> Result<BuildConfig> {
        let (profiles, notes) = self.resolve_profiles(&graph_inputs(graph))?;
        for n in &notes {
            note(n);
        }
        let defaults = BuildConfig::default();
        Ok(BuildConfig {
            precision: self.precision(),
            workspace_limit: self.workspace.unwrap_or(defaults.workspace_limit),
            profiles,
            kernel_cache_dir: self.kernel_cache.clone(),
            opt_level: self.opt_level.unwrap_or(DEFAULT_OPT_LEVEL),
            timing_cache: self.timing_cache.clone(),
            fusions: Fusions::default(),
        })
    }

    /// TensorRT's build options for `graph` (notes printed on stderr).
    pub fn tensorrt_options(&self, graph: &Graph) -> Result<kiln_nvinfer::BuildOptions> {
        let (profiles, notes) = self.resolve_profiles(&graph_inputs(graph))?;
        for n in &notes {
            note(n);
        }
        if self.timing_cache.is_some() || self.kernel_cache.is_some() {
            note(
                "--timing-cache and --kernel-cache apply to the kiln backend; TensorRT ignores them",
            );
        }
        Ok(kiln_nvinfer::BuildOptions {
            workspace: self.workspace,
            precision: self.precision(),
            optimization_level: self.opt_level.map(i32::from),
            profiles,
            ..Default::default()
        })
    }

    pub fn tensorrt_load_options(&self) -> kiln_nvinfer::LoadOptions {
        kiln_nvinfer::LoadOptions {
            dir: self.tensorrt_dir.clone(),
            ..Default::default()
        }
    }
}

fn profile_input(name: &str, min: Vec<usize>, opt: Vec<usize>, max: Vec<usize>) -> ProfileInput {
    ProfileInput {
        name: name.to_string(),
        min,
        opt,
        max,
    }
}

/// `1x3x224x224`.
pub fn dims_text(dims: &[usize]) -> String {
    if dims.is_empty() {
        return "scalar".into();
    }
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// Symbolic dims set to 1; unknown ones are an error naming the flag to pass.
fn default_dims(name: &str, declared: &Shape) -> Result<Vec<usize>> {
    declared
        .dims()
        .iter()
        .map(|d| match d {
            Dim::Known(n) => Ok(*n),
            Dim::Symbol(_) => Ok(1),
            Dim::Unknown => bail!(
                "input '{name}' {declared} has a dim of unknown size: give its shape with \
                 --shapes {name}:DIMS (or --min-shapes/--opt-shapes/--max-shapes)"
            ),
        })
        .collect()
}

fn check_against_declared(name: &str, declared: &Shape, what: &str, dims: &[usize]) -> Result<()> {
    let fits = declared.rank() == dims.len()
        && declared
            .dims()
            .iter()
            .zip(dims)
            .all(|(d, &v)| d.known().is_none_or(|k| k == v));
    if !fits {
        bail!(
            "input '{name}': {what} shape {} does not fit its declared shape {declared}",
            dims_text(dims)
        );
    }
    Ok(())
}

/// A graph's inputs as (name, declared shape).
pub fn graph_inputs(graph: &Graph) -> Vec<(String, Option<Shape>)> {
    graph
        .inputs
        .iter()
        .map(|v| (v.name.clone(), v.shape.clone()))
        .collect()
}

/// The backend after `auto` is decided.
#[derive(Clone)]
pub enum Resolved {
    Kiln(Arc<kiln_cuda::Device>),
    TensorRt,
    Cpu,
}

impl Resolved {
    pub fn name(&self) -> &'static str {
        match self {
            Resolved::Kiln(_) => "kiln",
            Resolved::TensorRt => "tensorrt",
            Resolved::Cpu => "cpu",
        }
    }
}

/// The error of the kiln backend on a machine without a usable CUDA device.
pub fn no_gpu_error(reason: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "a CUDA GPU is required for the kiln backend, and none is usable here ({reason}); run on \
         a machine with an NVIDIA GPU and driver, or pass --backend cpu for the CPU reference"
    )
}

/// Opens CUDA device `index`, or says why it cannot.
pub fn open_gpu(index: usize) -> Result<Arc<kiln_cuda::Device>> {
    kiln_cuda::Probe::run().map_err(|e| no_gpu_error(&e))?;
    kiln_cuda::Device::open(index).map_err(|e| no_gpu_error(&e))
}

/// Decides the backend (`auto`: kiln when a CUDA device is found, else cpu with a note).
pub fn resolve_backend(flags: &BuildFlags) -> Result<Resolved> {
    Ok(match flags.backend {
        BackendChoice::Kiln => Resolved::Kiln(open_gpu(flags.device)?),
        BackendChoice::Tensorrt => Resolved::TensorRt,
        BackendChoice::Cpu => Resolved::Cpu,
        BackendChoice::Auto => {
            match kiln_cuda::Probe::run().and_then(|_| kiln_cuda::Device::open(flags.device)) {
                Ok(device) => Resolved::Kiln(device),
                Err(e) => {
                    note(&format!(
                        "no CUDA device found ({e}); using the cpu backend (kiln-reference)"
                    ));
                    Resolved::Cpu
                }
            }
        }
    })
}

/// What a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Onnx,
    KilnPlan,
    /// Anything else: a TensorRT engine when `--backend tensorrt`, else an error.
    Other,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Onnx => "onnx model",
            FileKind::KilnPlan => "kiln plan",
            FileKind::Other => "tensorrt engine",
        }
    }
}

/// Classifies `path` by its first bytes (kiln plans start with `KILNPLAN`) and extension.
pub fn file_kind(path: &Path) -> Result<FileKind> {
    use std::io::Read as _;
    let mut head = [0u8; 8];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    Ok(if n == head.len() && &head == MAGIC {
        FileKind::KilnPlan
    } else if ext.as_deref() == Some("onnx") {
        FileKind::Onnx
    } else if matches!(ext.as_deref(), Some("kiln" | "plan" | "engine" | "trt")) {
        FileKind::Other
    } else {
        // No magic and no telling extension: ONNX is the one format without a magic.
        FileKind::Onnx
    })
}

/// Reads a kiln plan, with the file named in every error.
pub fn load_plan(path: &Path) -> Result<(Plan, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let plan = Plan::from_bytes(&bytes)
        .with_context(|| format!("{} is not a readable kiln plan", path.display()))?;
    Ok((plan, bytes.len()))
}

/// The device half and the host half of a kiln build, timed.
pub struct KilnBuild {
    pub plan: Plan,
    pub report: BuildReport,
    /// Passes, specialisation and lowering (host).
    pub prepare_s: f64,
    /// NVRTC kernels and tactic selection (device).
    pub device_s: f64,
}

/// The phases of a kiln build, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPhase {
    /// Graph passes, specialisation at the opt shapes, lowering, checks.
    Prepare,
    /// NVRTC kernels and cuBLASLt/cuDNN tactics.
    Device,
}

/// Builds `graph` for `device` as `kiln_engine::Builder::build` does, calling `phase` as each
/// phase starts and keeping the device half's report.
pub fn build_kiln(
    device: &Arc<kiln_cuda::Device>,
    graph: &Graph,
    config: &BuildConfig,
    phase: &mut dyn FnMut(BuildPhase),
) -> Result<KilnBuild> {
    phase(BuildPhase::Prepare);
    let t = Instant::now();
    let fingerprint = Fingerprint::of_device(device).context("reading the GPU's fingerprint")?;
    let (mut plan, programs) = kiln_engine::builder::prepare_programs(graph, config, fingerprint)?;
    let prepare_s = t.elapsed().as_secs_f64();
    phase(BuildPhase::Device);
    let t = Instant::now();
    let report = kiln_engine::runtime::finish_build_report(device, &mut plan, &programs)?;
    Ok(KilnBuild {
        plan,
        report,
        prepare_s,
        device_s: t.elapsed().as_secs_f64(),
    })
}

/// What [`open`] produced and how.
pub struct Opened {
    pub engine: Arc<dyn kiln_core::Engine>,
    /// `kiln`, `tensorrt` or `cpu`.
    pub backend: &'static str,
    /// The file was an ONNX model (built now), a kiln plan, or a TensorRT engine.
    pub kind: FileKind,
    /// Seconds building (ONNX models on kiln or TensorRT).
    pub build_seconds: Option<f64>,
    /// Seconds loading (plan or engine file → engine, weights uploaded).
    pub load_seconds: f64,
    /// The GPU's name, or `CPU` for the cpu backend.
    pub device_name: String,
    /// The ONNX graph, when the path was a model.
    pub model: Option<Graph>,
    /// The concrete kiln engine (kiln backend), for device-level work (bench, profiles).
    pub kiln: Option<Arc<kiln_engine::Engine>>,
}

/// Opens `path` with `flags`: an ONNX model is built now (kiln, TensorRT) or prepared for the
/// CPU reference; a kiln plan is loaded on the GPU (or, with `--backend cpu`, its stored
/// optimised graph runs on the CPU reference); another file is loaded as a TensorRT engine
/// with `--backend tensorrt`.
pub fn open(path: &Path, flags: &BuildFlags) -> Result<Opened> {
    let kind = file_kind(path)?;
    if kind == FileKind::Other && flags.backend != BackendChoice::Tensorrt {
        bail!(
            "{} is neither an ONNX model nor a kiln plan (no KILNPLAN magic); for a TensorRT \
             engine pass --backend tensorrt",
            path.display()
        );
    }
    let backend = resolve_backend(flags)?;
    let name = backend.name();
    if matches!(backend, Resolved::Cpu) && flags.precision() != Precision::Fp32 {
        note(&format!(
            "the cpu backend computes in fp32; --{} applies to GPU builds only",
            flags.precision()
        ));
    }
    let opened = |engine: Arc<dyn kiln_core::Engine>| Opened {
        engine,
        backend: name,
        kind,
        build_seconds: None,
        load_seconds: 0.0,
        device_name: "CPU".into(),
        model: None,
        kiln: None,
    };
    let on_gpu = |engine: Arc<kiln_engine::Engine>, device: Arc<kiln_cuda::Device>| Opened {
        device_name: device.info().name.clone(),
        kiln: Some(engine.clone()),
        ..opened(engine)
    };
    Ok(match (kind, backend) {
        (FileKind::Onnx, Resolved::Cpu) => {
            let graph = kiln_onnx::load(path)?;
            let (profiles, notes) = flags.resolve_profiles(&graph_inputs(&graph))?;
            notes.iter().for_each(|n| note(n));
            let t = Instant::now();
            let engine = kiln_reference::CpuEngine::new(graph.clone())
                .with_context(|| format!("preparing {} for the CPU reference", path.display()))?
                .with_profiles(profiles)?;
            Opened {
                load_seconds: t.elapsed().as_secs_f64(),
                model: Some(graph),
                ..opened(Arc::new(engine))
            }
        }
        (FileKind::KilnPlan, Resolved::Cpu) => {
            let (plan, _) = load_plan(path)?;
            note(&format!(
                "running the optimised graph stored in the plan {} on the CPU reference (its \
                 kernels and tactics need a GPU)",
                path.display()
            ));
            let t = Instant::now();
            let graph = plan
                .graph()
                .with_context(|| format!("reading the graph stored in {}", path.display()))?;
            let engine = kiln_reference::CpuEngine::new(graph)
                .with_context(|| format!("preparing the graph of {}", path.display()))?
                .with_profiles(plan.header.config.profiles.clone())?;
            Opened {
                load_seconds: t.elapsed().as_secs_f64(),
                ..opened(Arc::new(engine))
            }
        }
        (FileKind::Onnx, Resolved::Kiln(device)) => {
            let graph = kiln_onnx::load(path)?;
            let config = flags.build_config(&graph)?;
            let built = build_kiln(&device, &graph, &config, &mut |_| {})
                .with_context(|| format!("building {} with kiln", path.display()))?;
            let t = Instant::now();
            let engine = kiln_engine::Engine::from_plan(&device, &built.plan)?;
            Opened {
                build_seconds: Some(built.prepare_s + built.device_s),
                load_seconds: t.elapsed().as_secs_f64(),
                model: Some(graph),
                ..on_gpu(engine, device)
            }
        }
        (FileKind::KilnPlan, Resolved::Kiln(device)) => {
            let (plan, _) = load_plan(path)?;
            let t = Instant::now();
            let engine = kiln_engine::Engine::from_plan(&device, &plan)
                .with_context(|| format!("loading {}", path.display()))?;
            Opened {
                load_seconds: t.elapsed().as_secs_f64(),
                ..on_gpu(engine, device)
            }
        }
        (FileKind::KilnPlan, Resolved::TensorRt) => bail!(
            "{} is a kiln plan; TensorRT cannot load it (use --backend kiln or cpu)",
            path.display()
        ),
        (FileKind::Onnx, Resolved::TensorRt) => {
            let graph = kiln_onnx::load(path)?;
            let trt = kiln_nvinfer::TensorRt::load(&flags.tensorrt_load_options())?;
            let opts = flags.tensorrt_options(&graph)?;
            let t = Instant::now();
            let built = trt.build(kiln_nvinfer::Model::File(path), &opts)?;
            let build_seconds = Some(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let engine = trt.deserialize(&built.bytes)?;
            Opened {
                build_seconds,
                load_seconds: t.elapsed().as_secs_f64(),
                device_name: format!("GPU {} (TensorRT {})", flags.device, trt.version()),
                model: Some(graph),
                ..opened(Arc::new(engine))
            }
        }
        (FileKind::Other, _) => {
            let trt = kiln_nvinfer::TensorRt::load(&flags.tensorrt_load_options())?;
            let t = Instant::now();
            let engine = trt.load_engine(path)?;
            Opened {
                load_seconds: t.elapsed().as_secs_f64(),
                device_name: format!("GPU {} (TensorRT {})", flags.device, trt.version()),
                ..opened(Arc::new(engine))
            }
        }
    })
}

/// The input dims a run uses on `engine`: `--shapes` when given, else the first profile's opt
/// shapes, else the declared fixed shape, else 1 for each symbolic dim (with a note).
pub fn run_shapes(
    engine: &dyn kiln_core::Engine,
    flags: &BuildFlags,
) -> Result<Vec<(String, Vec<usize>)>> {
    let given = parse_shape_list("--shapes", &flags.shapes)?;
    let mut out = Vec::new();
    for spec in engine.inputs() {
        let from_profile = engine
            .profiles()
            .first()
            .and_then(|p| p.inputs.iter().find(|i| i.name == spec.name))
            .map(|i| i.opt.clone());
        let dims = match given.iter().find(|(n, _)| *n == spec.name) {
            Some((_, d)) => d.clone(),
            None => match from_profile.or_else(|| spec.shape.as_known()) {
                Some(d) => d,
                None => {
                    let d = default_dims(&spec.name, &spec.shape)?;
                    note(&format!(
                        "input '{}' {}: using {} (pass --shapes {}:DIMS to choose)",
                        spec.name,
                        spec.shape,
                        dims_text(&d),
                        spec.name
                    ));
                    d
                }
            },
        };
        out.push((spec.name.clone(), dims));
    }
    Ok(out)
}

/// A reference value as a host tensor.
pub fn value_to_host(name: &str, v: &Value) -> Result<HostTensor> {
    let t = v
        .to_tensor(name)
        .with_context(|| format!("tensor '{name}'"))?;
    Ok(HostTensor {
        name: name.to_string(),
        dtype: t.dtype(),
        dims: t.dims().to_vec(),
        data: t.into_bytes(),
    })
}

/// A host tensor as a reference value.
pub fn host_to_value(t: &HostTensor) -> Result<Value> {
    let tensor =
        kiln_onnx::Tensor::from_bytes(t.name.clone(), t.dtype, t.dims.clone(), t.data.clone())
            .with_context(|| format!("output '{}'", t.name))?;
    Value::from_tensor(&tensor).with_context(|| format!("output '{}'", t.name))
}

#[cfg(test)]
#[path = "engine_source_tests.rs"]
mod tests;
