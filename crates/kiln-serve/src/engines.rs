//! Turning one model version folder into engines: the CPU reference, or kiln-engine on every
//! configured GPU with a plan cache.
//!
//! - `model.onnx` on the cpu backend: kiln-reference's `CpuEngine` (tested here).
//! - `model.kiln` (a plan from `kiln build`) on the cpu backend: the optimised graph stored in
//!   the plan runs on the CPU reference (tested here).
//! - `model.onnx` on the kiln backend: built with `kiln_engine::Builder` for the first GPU, the
//!   plan saved in `<version>/.kiln-cache/<precision>-<key>.kiln`, where the key hashes the
//!   model's bytes, the build configuration, the GPU's fingerprint and kiln's version; a later
//!   start (or load) with the same key loads the plan instead of building. A cached plan that
//!   fails to load (another driver, a corrupt file) is rebuilt. GPUs with the same fingerprint
//!   share one plan. **GPU-only: compiled, not run on this CPU-only machine.**
//! - `model.kiln` on the kiln backend: loaded on every configured GPU. **GPU-only.**
//!
//! Backend `auto` takes kiln when `kiln_cuda::Probe` finds a usable GPU, else the CPU reference
//! (logged); backend `kiln` without a GPU is a load error saying so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_batch::DeviceEngine;
use kiln_core::{OptimizationProfile, ProfileInput, Shape};
use kiln_engine::plan::{DEFAULT_OPT_LEVEL, Fusions};
use kiln_engine::{BuildConfig, Plan};

use crate::config::{BackendChoice, ModelConfig};
use crate::error::ServeError;

/// The engines of one model version.
pub struct Engines {
    pub devices: Vec<DeviceEngine>,
    /// `kiln` or `cpu`.
    pub backend: &'static str,
    /// What the instances run on, for metadata and logs (`CPU`, `GPU 0 (NVIDIA H100 ...)`).
    pub device: String,
    pub max_batch: usize,
    /// Whether the engine was loaded from the plan cache (GPU), for logs.
    pub cached: bool,
}

/// The model file of a version folder: `model.onnx`, else `model.kiln`.
pub fn model_file(version_dir: &Path) -> Option<PathBuf> {
    ["model.onnx", "model.kiln"]
        .iter()
        .map(|f| version_dir.join(f))
        .find(|p| p.is_file())
}

fn load_err(path: &Path, e: impl std::fmt::Display) -> ServeError {
    ServeError::Load(format!("{}: {e}", path.display()))
}

/// 64-bit FNV-1a, a stable hash for cache keys.
fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The max batch of a model: the config's, else 8 (1 when an input fixes its batch dim to 1).
fn max_batch(inputs: &[(String, Shape)], config: &ModelConfig) -> usize {
    config.max_batch.unwrap_or_else(|| {
        let fixed_one = inputs
            .iter()
            .any(|(_, s)| s.dims().first().and_then(|d| d.known()) == Some(1));
        if fixed_one { 1 } else { 8 }
    })
}

/// The max batch of a plan: the config's, else the default capped by the plan's profiles.
fn plan_max_batch(plan: &Plan, config: &ModelConfig) -> usize {
    let default = max_batch(&specs(&plan.header.inputs), config);
    if config.max_batch.is_some() {
        return default;
    }
    plan.header
        .config
        .profiles
        .iter()
        .flat_map(|p| p.inputs.iter())
        .filter_map(|i| i.max.first().copied())
        .fold(default, usize::min)
        .max(1)
}

/// The optimisation profile: the config's ranges, and `[1..=max_batch, rest]` for inputs whose
/// only symbolic dim is the batch dim. `need_all`: every dynamic input must be covered (GPU
/// builds); the CPU reference runs any shape.
fn profiles(
    inputs: &[(String, Shape)],
    config: &ModelConfig,
    max_batch: usize,
    need_all: bool,
    config_path: &Path,
) -> Result<Vec<OptimizationProfile>, ServeError> {
    let bad = |message: String| ServeError::Config {
        path: config_path.to_path_buf(),
        message,
    };
    for name in config.profiles.keys() {
        if !inputs.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
            return Err(bad(format!(
                "field `profiles.{name}`: the model has no input '{name}'; its inputs are: {}",
                names.join(", ")
            )));
        }
    }
    let mut entries = Vec::new();
    for (name, shape) in inputs {
        if let Some(range) = config.profiles.get(name) {
            let (min, opt, max) = range
                .resolve()
                .map_err(|m| bad(format!("field `profiles.{name}`: {m}")))?;
            if min.len() != shape.rank() {
                return Err(bad(format!(
                    "field `profiles.{name}`: rank {} where input '{name}' {shape} has rank {}",
                    min.len(),
                    shape.rank()
                )));
            }
            entries.push(ProfileInput {
                name: name.clone(),
                min,
                opt,
                max,
            });
            continue;
        }
        if shape.is_fully_known() {
            continue;
        }
        let dims = shape.dims();
        let rest: Option<Vec<usize>> = dims.iter().skip(1).map(|d| d.known()).collect();
        match rest {
            Some(rest) if dims.first().is_some_and(|d| d.known().is_none()) => {
                let at = |b: usize| [vec![b], rest.clone()].concat();
                entries.push(ProfileInput {
                    name: name.clone(),
                    min: at(1),
                    opt: at(max_batch),
                    max: at(max_batch),
                });
            }
            _ if need_all => {
                return Err(bad(format!(
                    "input '{name}' {shape} has symbolic dims besides the batch dim; give its \
                     shape range as `profiles.{name}` (min/opt/max, batch dim included)"
                )));
            }
            _ => {}
        }
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![OptimizationProfile { inputs: entries }])
}

/// Whether a CUDA GPU is usable, and how many (`Err`: why not).
fn gpu_count() -> Result<usize, String> {
    kiln_cuda::Probe::run().map_err(|e| e.to_string())?;
    let n = kiln_cuda::device_count().map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the driver reports no CUDA device".into());
    }
    Ok(n)
}

/// Opens the engines of the model in `version_dir` (`config_path` is named in config errors).
pub fn open(
    model: &str,
    version_dir: &Path,
    config: &ModelConfig,
    config_path: &Path,
) -> Result<Engines, ServeError> {
    let file = model_file(version_dir).ok_or_else(|| {
        ServeError::Load(format!(
            "{}: no model.onnx or model.kiln in this version folder",
            version_dir.display()
        ))
    })?;
    let use_gpu = match config.backend {
        BackendChoice::Cpu => None,
        BackendChoice::Kiln => Some(gpu_count().map_err(|e| {
            ServeError::Load(format!(
                "model '{model}': backend \"kiln\" needs a CUDA GPU, and none is usable here \
                 ({e}); set \"backend\": \"cpu\" or \"auto\" in {}",
                config_path.display()
            ))
        })?),
        BackendChoice::Auto => match gpu_count() {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::info!(model, "no usable CUDA GPU ({e}): using the CPU reference");
                None
            }
        },
    };
    let is_plan = file.extension().is_some_and(|e| e == "kiln");
    match use_gpu {
        None => open_cpu(&file, is_plan, config, config_path),
        Some(count) => open_gpu(&file, is_plan, config, config_path, count),
    }
}

fn specs(inputs: &[kiln_core::TensorSpec]) -> Vec<(String, Shape)> {
    inputs
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect()
}

fn open_cpu(
    file: &Path,
    is_plan: bool,
    config: &ModelConfig,
    config_path: &Path,
) -> Result<Engines, ServeError> {
    let (graph, plan) = if is_plan {
        let plan = Plan::load(file).map_err(|e| load_err(file, e))?;
        (plan.graph().map_err(|e| load_err(file, e))?, Some(plan))
    } else {
        (kiln_onnx::load(file).map_err(|e| load_err(file, e))?, None)
    };
    let engine = kiln_reference::CpuEngine::new(graph).map_err(|e| load_err(file, e))?;
    let inputs = specs(kiln_core::Engine::inputs(&engine));
    let (max_batch, profiles) = match &plan {
        // A plan keeps the shape ranges it was built for, unless config.json gives others.
        Some(plan) if config.profiles.is_empty() => (
            plan_max_batch(plan, config),
            plan.header.config.profiles.clone(),
        ),
        _ => {
            let max_batch = max_batch(&inputs, config);
            let profiles = profiles(&inputs, config, max_batch, false, config_path)?;
            (max_batch, profiles)
        }
    };
    let engine = engine
        .with_profiles(profiles)
        .map_err(|e| load_err(file, e))?;
    Ok(Engines {
        devices: vec![DeviceEngine::host(Arc::new(engine))],
        backend: "cpu",
        device: "CPU".into(),
        max_batch,
        cached: false,
    })
}

/// The GPU path. GPU-only: compiled here, never run on this machine.
fn open_gpu(
    file: &Path,
    is_plan: bool,
    config: &ModelConfig,
    config_path: &Path,
    count: usize,
) -> Result<Engines, ServeError> {
    let ordinals: Vec<usize> = config
        .batching
        .devices
        .clone()
        .unwrap_or_else(|| (0..count).collect());
    if let Some(&bad) = ordinals.iter().find(|&&o| o >= count) {
        return Err(ServeError::Config {
            path: config_path.to_path_buf(),
            message: format!(
                "field `batching.devices`: GPU {bad} does not exist; this machine has {count} \
                 (0..{count})"
            ),
        });
    }
    let gpu = |o: usize| {
        kiln_cuda::Device::open(o).map_err(|e| ServeError::Load(format!("opening GPU {o}: {e}")))
    };
    let mut devices = Vec::new();
    let mut names = Vec::new();
    let mut cached_any = false;
    let max_batch;
    if is_plan {
        let plan = Plan::load(file).map_err(|e| load_err(file, e))?;
        max_batch = plan_max_batch(&plan, config);
        for &o in &ordinals {
            let device = gpu(o)?;
            let engine = kiln_engine::Engine::from_plan(&device, &plan)
                .map_err(|e| load_err(file, format!("loading the plan on GPU {o}: {e}")))?;
            names.push(format!("GPU {o} ({})", device.info().name));
            devices.push(DeviceEngine::gpu(o, engine));
        }
        cached_any = true;
    } else {
        let bytes = std::fs::read(file).map_err(|e| load_err(file, e))?;
        let graph = kiln_onnx::load(file).map_err(|e| load_err(file, e))?;
        let inputs: Vec<(String, Shape)> = graph
            .inputs
            .iter()
            .map(|v| {
                let shape = v.shape.clone().ok_or_else(|| {
                    load_err(file, format!("input '{}' has no declared shape", v.name))
                })?;
                Ok((v.name.clone(), shape))
            })
            .collect::<Result<_, ServeError>>()?;
        max_batch = self::max_batch(&inputs, config);
        let cache_dir = file.with_file_name(".kiln-cache");
        let build_config = BuildConfig {
            precision: config.precision.precision(),
            workspace_limit: config
                .workspace_mib
                .map(|m| m << 20)
                .unwrap_or(BuildConfig::default().workspace_limit),
            profiles: profiles(&inputs, config, max_batch, true, config_path)?,
            kernel_cache_dir: Some(cache_dir.join("kernels")),
            opt_level: config.opt_level.unwrap_or(DEFAULT_OPT_LEVEL),
            timing_cache: Some(cache_dir.join("timing.cache")),
            fusions: Fusions::default(),
        };
        std::fs::create_dir_all(&cache_dir).map_err(|e| load_err(&cache_dir, e))?;
        let mut plans: Vec<(String, Plan)> = Vec::new();
        for &o in &ordinals {
            let device = gpu(o)?;
            let fp = kiln_engine::plan::Fingerprint::of_device(&device)
                .map_err(|e| ServeError::Load(format!("GPU {o}: {e}")))?;
            let key = cache_key(&bytes, &build_config, &fp);
            let path = cache_dir.join(format!("{}-{key}.kiln", build_config.precision));
            let engine = if let Some((_, plan)) = plans.iter().find(|(k, _)| *k == key) {
                kiln_engine::Engine::from_plan(&device, plan).map_err(|e| load_err(file, e))?
            } else {
                let cached = Plan::load(&path).ok().and_then(|plan| {
                    match kiln_engine::Engine::from_plan(&device, &plan) {
                        Ok(engine) => Some((plan, engine)),
                        Err(e) => {
                            tracing::warn!(
                                "cached plan {} is unusable ({e}); rebuilding",
                                path.display()
                            );
                            None
                        }
                    }
                });
                let (plan, engine) = match cached {
                    Some(pe) => {
                        cached_any = true;
                        tracing::info!("GPU {o}: loaded the cached plan {}", path.display());
                        pe
                    }
                    None => {
                        tracing::info!("GPU {o}: building {} (first load)", file.display());
                        let plan = kiln_engine::Builder::new(&device)
                            .build(&graph, &build_config)
                            .map_err(|e| load_err(file, format!("building on GPU {o}: {e}")))?;
                        let tmp = path.with_extension("kiln.tmp");
                        let saved = plan
                            .save(&tmp)
                            .map_err(|e| e.to_string())
                            .and_then(|_| std::fs::rename(&tmp, &path).map_err(|e| e.to_string()));
                        if let Err(e) = saved {
                            tracing::warn!("cannot cache the plan at {}: {e}", path.display());
                        }
                        let engine = kiln_engine::Engine::from_plan(&device, &plan)
                            .map_err(|e| load_err(file, e))?;
                        (plan, engine)
                    }
                };
                plans.push((key, plan));
                engine
            };
            names.push(format!("GPU {o} ({})", device.info().name));
            devices.push(DeviceEngine::gpu(o, engine));
        }
    }
    Ok(Engines {
        devices,
        backend: "kiln",
        device: names.join(", "),
        max_batch,
        cached: cached_any,
    })
}

/// The plan cache key: model bytes, build configuration, GPU fingerprint, kiln version.
fn cache_key(model: &[u8], config: &BuildConfig, fp: &kiln_engine::plan::Fingerprint) -> String {
    let mut h = fnv1a(FNV_OFFSET, model);
    h = fnv1a(h, &serde_json::to_vec(config).unwrap_or_default());
    h = fnv1a(h, &serde_json::to_vec(fp).unwrap_or_default());
    h = fnv1a(h, env!("CARGO_PKG_VERSION").as_bytes());
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Dim;

    fn shape(dims: &[Option<usize>]) -> Shape {
        Shape::new(
            dims.iter()
                .map(|d| match d {
                    Some(k) => Dim::Known(*k),
                    None => Dim::symbol("batch"),
                })
                .collect(),
        )
    }

    #[test]
    fn batch_only_inputs_get_a_default_profile_and_others_need_one() {
        let path = Path::new("r/m/config.json");
        let inputs = vec![("x".to_string(), shape(&[None, Some(16)]))];
        let c = ModelConfig::default();
        let p = profiles(&inputs, &c, 8, true, path).unwrap();
        assert_eq!(p[0].inputs[0].min, [1, 16]);
        assert_eq!(p[0].inputs[0].max, [8, 16]);
        let two = vec![("x".to_string(), shape(&[None, None]))];
        let e = profiles(&two, &c, 8, true, path).unwrap_err().to_string();
        assert!(
            e.contains("r/m/config.json") && e.contains("profiles.x"),
            "{e}"
        );
        assert!(profiles(&two, &c, 8, false, path).unwrap().is_empty());
        let c = ModelConfig::parse(r#"{"profiles": {"y": {"shape": [1]}}}"#, path).unwrap();
        let e = profiles(&inputs, &c, 8, true, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no input 'y'") && e.contains("x"), "{e}");
        let fixed = vec![("x".to_string(), shape(&[Some(1), Some(3)]))];
        assert_eq!(max_batch(&fixed, &ModelConfig::default()), 1);
        assert_eq!(max_batch(&inputs, &ModelConfig::default()), 8);
    }

    #[test]
    fn cache_keys_change_with_model_and_config() {
        let fp = kiln_engine::plan::Fingerprint::default();
        let c = BuildConfig::default();
        let a = cache_key(b"model-a", &c, &fp);
        assert_eq!(a, cache_key(b"model-a", &c, &fp));
        assert_ne!(a, cache_key(b"model-b", &c, &fp));
        let c16 = BuildConfig {
            precision: kiln_core::Precision::Fp16,
            ..BuildConfig::default()
        };
        assert_ne!(a, cache_key(b"model-a", &c16, &fp));
    }

    #[test]
    fn a_kiln_plan_runs_on_the_cpu_backend_with_its_profile() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mlp_legacy.onnx");
        let graph = kiln_onnx::load(&fixture).unwrap();
        let config = BuildConfig {
            profiles: vec![OptimizationProfile {
                inputs: vec![ProfileInput {
                    name: "x".into(),
                    min: vec![1, 16],
                    opt: vec![2, 16],
                    max: vec![4, 16],
                }],
            }],
            ..BuildConfig::default()
        };
        // The host half of a build (no GPU needed) gives a plan with the optimised graph.
        let plan = kiln_engine::prepare(&graph, &config, Default::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let vdir = dir.path().join("m/1");
        std::fs::create_dir_all(&vdir).unwrap();
        plan.save(vdir.join("model.kiln")).unwrap();
        let cfg = ModelConfig::parse(r#"{"backend": "cpu"}"#, Path::new("m/config.json")).unwrap();
        let e = open("m", &vdir, &cfg, Path::new("m/config.json")).unwrap();
        assert_eq!((e.backend, e.max_batch), ("cpu", 4));
        let exec = kiln_batch::Executor::builder(e.devices[0].engine.clone())
            .max_batch(e.max_batch)
            .devices(e.devices)
            .build()
            .unwrap();
        let mut rng = fastrand::Rng::new();
        let x: Vec<f32> = (0..32).map(|_| rng.f32() - 0.5).collect();
        let input = kiln_core::HostTensor::from_slice("x", &[2, 16], &x).unwrap();
        let got = exec
            .infer(kiln_batch::Request::new(vec![input.clone()]))
            .unwrap();
        let reference = Arc::new(kiln_reference::CpuEngine::new(graph).unwrap());
        let want = kiln_core::Engine::create_context(reference)
            .unwrap()
            .execute_host(&[input])
            .unwrap();
        let (a, b) = (
            got.outputs[0].as_slice::<f32>().unwrap(),
            want[0].as_slice::<f32>().unwrap(),
        );
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs()))
        );
    }
}
