//! `cargo xtask build-engines`: every ONNX model of `fixtures/` (or `--models DIR`), for each
//! precision, built into `target/engines/` by the `kiln` CLI, with `target/engines/manifest.json`.
//!
//! xtask does not link kiln-engine (it is compiled before CI's tests): it builds the CLI once
//! (`cargo build --release -p kiln-cli`, or takes `--kiln BIN`) and drives it:
//! `kiln inspect --json MODEL` gives the inputs, from which a profile is made (dimension 0, when
//! not fixed, is the batch: min 1, opt and max `--max-batch`; other symbolic dimensions need
//! `--dim NAME=N`), and `kiln build MODEL -o ENGINE --<precision> --min-shapes ... --opt-shapes
//! ... --max-shapes ... --report R.json` builds it. The report's fields are read defensively:
//! a field the CLI does not write is left out of the manifest, never invented.
//!
//! An engine is reused when the manifest has an entry for the same model and precision whose
//! key matches and whose file is there with the recorded size. The key hashes the model's
//! bytes, the precision and profile, the GPU name and driver (`nvidia-smi`), the CUDA
//! libraries' resolved file names (e.g. `libcudnn.so.9.1.0`, found as the dynamic loader
//! would), the kiln version and the git tree of crates/kiln-engine (so a committed builder
//! change rebuilds; uncommitted ones need `--force`).
//!
//! What works where: everything up to the first build runs anywhere; without a GPU the command
//! stops before building anything, says why and exits non-zero (unit-tested here). The builds
//! themselves need a CUDA GPU and have not been run on this CPU-only machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Folder of ONNX models (every *.onnx in it; default: fixtures/).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Comma-separated precisions (fp32, tf32, fp16, bf16).
    #[arg(long, default_value = "fp32,fp16")]
    pub precisions: String,
    /// Where engines and manifest.json go.
    #[arg(long, default_value = "target/engines")]
    pub out: PathBuf,
    /// Largest batch of each engine's profile (min 1; opt = max).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Value of a symbolic non-batch dimension, e.g. `--dim seq=128` (repeatable).
    #[arg(long = "dim", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Use this `kiln` binary instead of building the CLI with cargo.
    #[arg(long)]
    pub kiln: Option<PathBuf>,
    /// Rebuild every engine even when the manifest says it is up to date.
    #[arg(long)]
    pub force: bool,
}

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=N (e.g. seq=128)"))?;
    let n = v
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("'{v}' in '{s}' is not a dimension size"))?;
    if n == 0 {
        return Err(format!("'{s}': a dimension of 0 builds nothing"));
    }
    Ok((k.trim().to_string(), n))
}

/// What the GPU probe found: what the key needs before anything is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub name: String,
    pub driver: String,
    /// Library short name (`cudnn`) to its resolved file name (`libcudnn.so.9.1.0`).
    pub libraries: BTreeMap<String, String>,
}

/// The GPU, or why there is none. Probed at run time (never at build time), with `nvidia-smi`.
pub fn probe_gpu() -> Result<GpuInfo, String> {
    if !Path::new("/dev/nvidia0").exists() {
        return Err("no /dev/nvidia0 (no NVIDIA GPU or driver on this machine)".into());
    }
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("/dev/nvidia0 exists but nvidia-smi cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nvidia-smi failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").trim();
    let Some((name, driver)) = first.rsplit_once(',') else {
        return Err(format!("nvidia-smi lists no GPU (output: '{first}')"));
    };
    Ok(GpuInfo {
        name: name.trim().to_string(),
        driver: driver.trim().to_string(),
        libraries: cuda_libraries(),
    })
}

/// The CUDA libraries kiln-engine opens, each resolved through its symlinks to the versioned
/// file, in the folders the dynamic loader searches (LD_LIBRARY_PATH, /usr/local/cuda/lib64,
/// then `ldconfig -p`). A library not found is left out (the build itself will say so).
fn cuda_libraries() -> BTreeMap<String, String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    let ldconfig = Command::new("ldconfig")
        .arg("-p")
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for (short, stem) in [
        ("cudart", "libcudart.so"),
        ("nvrtc", "libnvrtc.so"),
        ("cublas", "libcublas.so"),
        ("cublasLt", "libcublasLt.so"),
        ("cudnn", "libcudnn.so"),
    ] {
        let from_dirs = dirs.iter().find_map(|d| {
            let entries = fs::read_dir(d).ok()?;
            let mut names: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{stem}.")))
                })
                .collect();
            names.sort();
            names.pop()
        });
        let from_ldconfig = || {
            ldconfig.lines().find_map(|l| {
                let (lhs, path) = l.split_once("=>")?;
                lhs.trim()
                    .starts_with(&format!("{stem}."))
                    .then(|| PathBuf::from(path.trim()))
            })
        };
        if let Some(p) = from_dirs.or_else(from_ldconfig) {
            let real = fs::canonicalize(&p).unwrap_or(p);
            if let Some(n) = real.file_name() {
                out.insert(short.to_string(), n.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// One input's profile: dims at min, opt and max.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInput {
    pub name: String,
    pub min: Vec<usize>,
    pub opt: Vec<usize>,
    pub max: Vec<usize>,
}

/// The profile of a model from `kiln inspect --json`'s `inputs` (`shape` entries: a number
/// when fixed, a string when symbolic, null when unknown).
pub fn profile_from_inspect(
    inspect: &Value,
    max_batch: usize,
    dims: &[(String, usize)],
) -> Result<Vec<ProfileInput>> {
    let inputs = inspect["inputs"]
        .as_array()
        .context("`kiln inspect --json` gave no `inputs` list")?;
    let mut out = Vec::new();
    for input in inputs {
        let name = input["name"]
            .as_str()
            .context("an input without a name in `kiln inspect --json`")?;
        let shape = input["shape"].as_array().with_context(|| {
            format!("input '{name}' has no known rank: kiln cannot build an engine for it")
        })?;
        let (mut min, mut max) = (Vec::new(), Vec::new());
        for (i, d) in shape.iter().enumerate() {
            let (lo, hi) = match d {
                Value::Number(n) => {
                    let n = n.as_u64().with_context(|| {
                        format!("input '{name}' dimension {i} is not a size: {n}")
                    })? as usize;
                    (n, n)
                }
                Value::String(s) => match dims.iter().find(|(k, _)| k == s) {
                    Some(&(_, v)) => (v, v),
                    None if i == 0 => (1, max_batch),
                    None => bail!(
                        "input '{name}' dimension {i} is symbolic ('{s}'); give its size with \
                         --dim {s}=N"
                    ),
                },
                _ if i == 0 => (1, max_batch),
                _ => bail!(
                    "input '{name}' dimension {i} is unknown; kiln cannot build a profile for it \
                     (fix the model's shape)"
                ),
            };
            min.push(lo);
            max.push(hi);
        }
        out.push(ProfileInput {
            name: name.to_string(),
            min,
            opt: max.clone(),
            max,
        });
    }
    Ok(out)
}

/// `--min-shapes a:1x3,b:1x5`-style values for one of min/opt/max.
fn shapes_arg(profile: &[ProfileInput], pick: fn(&ProfileInput) -> &Vec<usize>) -> String {
    profile
        .iter()
        .map(|p| {
            let dims: Vec<String> = pick(p).iter().map(usize::to_string).collect();
            format!("{}:{}", p.name, dims.join("x"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// FNV-1a over 128 bits: stable across Rust versions and machines (std's hasher is not).
pub fn fnv128(bytes: &[u8]) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bytes {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    format!("{h:032x}")
}

/// Everything an engine depends on besides the model's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub model_hash: &'a str,
    pub precision: &'a str,
    pub profile: &'a [ProfileInput],
    pub gpu: &'a GpuInfo,
    pub kiln_version: &'a str,
    pub engine_tree: &'a str,
}

/// The reuse key: a hash of every part, in a fixed text form.
pub fn engine_key(k: &KeyParts<'_>) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "model {}", k.model_hash);
    let _ = writeln!(text, "precision {}", k.precision);
    for p in k.profile {
        let _ = writeln!(text, "input {} {:?} {:?} {:?}", p.name, p.min, p.opt, p.max);
    }
    let _ = writeln!(text, "gpu {}", k.gpu.name);
    let _ = writeln!(text, "driver {}", k.gpu.driver);
    for (lib, file) in &k.gpu.libraries {
        let _ = writeln!(text, "lib {lib} {file}");
    }
    let _ = writeln!(text, "kiln {}", k.kiln_version);
    let _ = writeln!(text, "engine-tree {}", k.engine_tree);
    fnv128(text.as_bytes())
}

/// One engine of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The model file as given (relative to the workspace root when under it).
    pub model: String,
    pub model_hash: String,
    pub precision: String,
    pub profile: Vec<ProfileInput>,
    /// The engine's file name inside the output folder.
    pub engine: String,
    pub bytes: u64,
    /// Wall time of `kiln build` as xtask saw it.
    pub build_s: f64,
    pub gpu: GpuInfo,
    pub kiln_version: String,
    pub key: String,
    /// `kiln build --report`'s JSON as written (null if the CLI wrote none).
    #[serde(default)]
    pub report: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub engines: Vec<Entry>,
}

impl Manifest {
    /// The manifest at `path`; an empty one when there is none. A damaged one is an error
    /// (delete it, or use --force, to rebuild everything).
    pub fn read(path: &Path) -> Result<Manifest> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a build-engines manifest; delete it to rebuild every engine",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes through a temporary file, so an interrupted run leaves the old manifest.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    }

    /// Replaces the entry for the same model and precision, or adds one.
    pub fn upsert(&mut self, e: Entry) {
        self.engines
            .retain(|x| !(x.model == e.model && x.precision == e.precision));
        self.engines.push(e);
    }
}

/// Why an engine is rebuilt, or `None` when the manifest's entry can be reused.
pub fn rebuild_reason(entry: Option<&Entry>, key: &str, dir: &Path) -> Option<String> {
    let Some(e) = entry else {
        return Some("not built yet".into());
    };
    if e.key != key {
        return Some("model, precision, profile, GPU, libraries or kiln changed".into());
    }
    match fs::metadata(dir.join(&e.engine)) {
        Ok(m) if m.len() == e.bytes => None,
        Ok(m) => Some(format!(
            "engine file has {} bytes, the manifest says {}",
            m.len(),
            e.bytes
        )),
        Err(_) => Some("engine file is missing".into()),
    }
}

fn precision_flag(p: &str) -> Result<&'static str> {
    Ok(match p.trim().to_ascii_lowercase().as_str() {
        "fp32" => "--fp32",
        "tf32" => "--tf32",
        "fp16" => "--fp16",
        "bf16" => "--bf16",
        other => bail!("unknown precision '{other}' (fp32, tf32, fp16, bf16)"),
    })
}

/// The `*.onnx` files of `dir`, sorted.
fn list_models(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut models: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading the model folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx") && p.is_file())
        .collect();
    models.sort();
    if models.is_empty() {
        bail!("no *.onnx model in {}", dir.display());
    }
    Ok(models)
}

fn run_capture(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The git tree of crates/kiln-engine at HEAD (`-` outside a git checkout).
fn engine_tree(root: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD:crates/kiln-engine"])
        .current_dir(root)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "-".into())
}

/// The `kiln` binary: `--kiln`, or the release CLI built now.
fn kiln_binary(root: &Path, args: &Args) -> Result<PathBuf> {
    if let Some(k) = &args.kiln {
        return Ok(k.clone());
    }
    println!("xtask build-engines: cargo build --release -p kiln-cli");
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "kiln-cli"])
        .current_dir(root)
        .status()
        .context("starting cargo")?;
    if !status.success() {
        bail!("cargo build --release -p kiln-cli failed ({status})");
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"));
    Ok(dir.join("release/kiln"))
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    build_engines_with(root, args, probe_gpu())
}

/// The command with the GPU probe's result given (tests pass a fake one).
pub fn build_engines_with(root: &Path, args: &Args, gpu: Result<GpuInfo, String>) -> Result<()> {
    let gpu = match gpu {
        Ok(g) => g,
        Err(why) => bail!(
            "no CUDA device: the kiln backend needs one to build engines ({why}). No engine \
             was built; run this on a machine with an NVIDIA GPU and driver"
        ),
    };
    println!(
        "xtask build-engines: {} (driver {}), libraries {:?}",
        gpu.name, gpu.driver, gpu.libraries
    );
    let precisions: Vec<(String, &str)> = args
        .precisions
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| Ok((p.trim().to_ascii_lowercase(), precision_flag(p)?)))
        .collect::<Result<_>>()?;
    let model_dir = args.models.clone().unwrap_or_else(|| root.join("fixtures"));
    let models = list_models(&model_dir)?;
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let manifest_path = out.join("manifest.json");
    let mut manifest = Manifest::read(&manifest_path)?;
    let kiln = kiln_binary(root, args)?;
    let kiln_version = run_capture(Command::new(&kiln).arg("--version"), "kiln --version")?
        .trim()
        .to_string();
    let tree = engine_tree(root);
    let (mut built, mut reused, mut failed) = (0, 0, Vec::new());
    for model in &models {
        let label = model
            .strip_prefix(root)
            .unwrap_or(model)
            .to_string_lossy()
            .into_owned();
        match build_model(
            &kiln,
            model,
            &label,
            &precisions,
            args,
            &gpu,
            &kiln_version,
            &tree,
            &out,
            &mut manifest,
            &manifest_path,
        ) {
            Ok((b, r, f)) => {
                built += b;
                reused += r;
                failed.extend(f);
            }
            Err(e) => failed.push(format!("{label}: {e:#}")),
        }
    }
    println!(
        "xtask build-engines: {built} built, {reused} up to date, {} failed; manifest {}",
        failed.len(),
        manifest_path.display()
    );
    if !failed.is_empty() {
        let list: String = failed.iter().map(|f| format!("\n  - {f}")).collect();
        bail!("{} engine(s) failed:{list}", failed.len());
    }
    Ok(())
}

/// Builds (or reuses) one model's engines; returns (built, reused, failures).
#[allow(clippy::too_many_arguments)]
fn build_model(
    kiln: &Path,
    model: &Path,
    label: &str,
    precisions: &[(String, &str)],
    args: &Args,
    gpu: &GpuInfo,
    kiln_version: &str,
    tree: &str,
    out: &Path,
    manifest: &mut Manifest,
    manifest_path: &Path,
) -> Result<(usize, usize, Vec<String>)> {
    let bytes = fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let model_hash = fnv128(&bytes);
    let inspect_text = run_capture(
        Command::new(kiln).arg("inspect").arg("--json").arg(model),
        &format!("kiln inspect --json {}", model.display()),
    )?;
    let inspect: Value = serde_json::from_str(&inspect_text)
        .with_context(|| format!("kiln inspect --json {} is not JSON", model.display()))?;
    let profile = profile_from_inspect(&inspect, args.max_batch, &args.dims)?;
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let (mut built, mut reused, mut failed) = (0, 0, Vec::new());
    for (precision, flag) in precisions {
        let key = engine_key(&KeyParts {
            model_hash: &model_hash,
            precision,
            profile: &profile,
            gpu,
            kiln_version,
            engine_tree: tree,
        });
        let old = manifest
            .engines
            .iter()
            .find(|e| e.model == label && &e.precision == precision);
        let reason = if args.force {
            Some("--force".to_string())
        } else {
            rebuild_reason(old, &key, out)
        };
        let Some(reason) = reason else {
            println!("  {label} {precision}: up to date");
            reused += 1;
            continue;
        };
        println!("  {label} {precision}: building ({reason})");
        let engine = format!("{stem}.{precision}.kiln");
        let tmp = out.join(format!("{engine}.partial"));
        let report_path = out.join(format!("{stem}.{precision}.report.json"));
        let _ = fs::remove_file(&report_path);
        let t = Instant::now();
        let status = Command::new(kiln)
            .arg("build")
            .arg(model)
            .arg("-o")
            .arg(&tmp)
            .arg(flag)
            .arg("--min-shapes")
            .arg(shapes_arg(&profile, |p| &p.min))
            .arg("--opt-shapes")
            .arg(shapes_arg(&profile, |p| &p.opt))
            .arg("--max-shapes")
            .arg(shapes_arg(&profile, |p| &p.max))
            .arg("--report")
            .arg(&report_path)
            .status()
            .context("starting kiln build")?;
        let build_s = t.elapsed().as_secs_f64();
        if !status.success() {
            let _ = fs::remove_file(&tmp);
            failed.push(format!("{label} {precision}: kiln build failed ({status})"));
            continue;
        }
        let path = out.join(&engine);
        fs::rename(&tmp, &path)
            .with_context(|| format!("moving the engine to {}", path.display()))?;
        let size = fs::metadata(&path)?.len();
        let report = fs::read(&report_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        // `gpu` is `{name, ...}` in `kiln build --report`; a plain string is read too.
        let r_gpu = report
            .get("gpu")
            .and_then(|g| g.get("name").unwrap_or(g).as_str());
        if let Some(r_gpu) = r_gpu
            && !r_gpu.contains(&gpu.name)
            && !gpu.name.contains(r_gpu)
        {
            println!(
                "    note: kiln built on '{r_gpu}', nvidia-smi named '{}'",
                gpu.name
            );
        }
        println!(
            "    {:.1} s, {:.2} MB -> {}",
            build_s,
            size as f64 / 1e6,
            path.display()
        );
        manifest.upsert(Entry {
            model: label.to_string(),
            model_hash: model_hash.clone(),
            precision: precision.clone(),
            profile: profile.clone(),
            engine,
            bytes: size,
            build_s,
            gpu: gpu.clone(),
            kiln_version: kiln_version.to_string(),
            key,
            report,
        });
        manifest.write(manifest_path)?;
        built += 1;
    }
    Ok((built, reused, failed))
}

#[cfg(test)]
#[path = "engines_tests.rs"]
mod tests;
