//! The model repository: a folder laid out like Triton's,
//!
//! ```text
//! DIR/<model>/config.json          optional; schema in `config.rs`
//! DIR/<model>/<version>/model.onnx an ONNX model (or model.kiln, a plan from `kiln build`)
//! DIR/<model>/<version>/.kiln-cache/  built plans, kernel and timing caches (GPU)
//! ```
//!
//! Versions are folders named by a number. Every model is loaded at startup (every version,
//! or those `config.json` lists) and can be loaded (again: the config is re-read) or unloaded
//! through the repository API. Each loaded version runs behind its own `kiln_batch::Executor`;
//! unloading stops it accepting and drains what it accepted before dropping it. Loading is
//! blocking work (an engine build can take minutes on a GPU): the transports call it from a
//! blocking thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln_batch::{Executor, TimeoutAction};
use kiln_core::TensorSpec;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::config::{ModelConfig, TimeoutActionName};
use crate::engines;
use crate::error::ServeError;
use crate::stats::ModelStats;

/// One loaded model version.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    pub executor: Executor,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub max_batch: usize,
    /// `kiln` or `cpu`.
    pub backend: &'static str,
    pub device: String,
    pub stats: ModelStats,
}

impl LoadedModel {
    /// The protocol's platform name.
    pub fn platform(&self) -> &'static str {
        if self.backend == "cpu" {
            "kiln_reference"
        } else {
            "kiln_engine"
        }
    }
}

enum State {
    Loading,
    Ready(BTreeMap<u64, Arc<LoadedModel>>),
    Unloaded,
    Failed(String),
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The models of one repository folder and their states.
pub struct Repository {
    root: PathBuf,
    models: RwLock<BTreeMap<String, State>>,
    /// Loads and unloads one at a time.
    loading: Mutex<()>,
}

fn version_dirs(model_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(model_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u64>().ok()?;
            let p = e.path();
            (p.is_dir() && engines::model_file(&p).is_some()).then_some((v, p))
        })
        .collect();
    out.sort();
    out
}

impl Repository {
    /// A repository over `root` (nothing is loaded yet).
    pub fn new(root: &Path) -> Result<Repository, ServeError> {
        if !root.is_dir() {
            return Err(ServeError::Load(format!(
                "the model repository {} is not a folder; lay it out as \
                 DIR/<model>/<version>/model.onnx",
                root.display()
            )));
        }
        Ok(Repository {
            root: root.to_path_buf(),
            models: RwLock::new(BTreeMap::new()),
            loading: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The models on disk: folders holding at least one version folder with a model file.
    pub fn scan(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let p = e.path();
                (!name.starts_with('.') && p.is_dir() && !version_dirs(&p).is_empty())
                    .then_some(name)
            })
            .collect();
        names.sort();
        names
    }

    /// Loads (or reloads) `name`: reads its config, opens every version's engines and starts
    /// their executors. The versions it replaces drain and stop. Blocking.
    pub fn load(&self, name: &str) -> Result<(), ServeError> {
        let _one = self.loading.lock();
        let dir = self.root.join(name);
        let valid_name = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains(['/', '\\'])
            && name != "..";
        if !valid_name || !dir.is_dir() {
            return Err(ServeError::NotFound(format!(
                "model '{name}' is not in the repository {}; its models are: {}",
                self.root.display(),
                self.scan().join(", ")
            )));
        }
        let replaced = {
            let mut models = self.models.write();
            let old = models.remove(name);
            models.insert(name.to_string(), State::Loading);
            old
        };
        let result = self.open_versions(name, &dir);
        let mut models = self.models.write();
        match result {
            Ok(versions) => {
                let list: Vec<u64> = versions.keys().copied().collect();
                models.insert(name.to_string(), State::Ready(versions));
                drop(models);
                tracing::info!(model = name, versions = ?list, "model loaded");
                if let Some(State::Ready(old)) = replaced {
                    drain(old);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(model = name, "load failed: {e}");
                match replaced {
                    // A failed reload keeps the versions that were serving.
                    Some(State::Ready(old)) => {
                        models.insert(name.to_string(), State::Ready(old));
                    }
                    _ => {
                        models.insert(name.to_string(), State::Failed(e.to_string()));
                    }
                }
                Err(e)
            }
        }
    }

    fn open_versions(
        &self,
        name: &str,
        dir: &Path,
    ) -> Result<BTreeMap<u64, Arc<LoadedModel>>, ServeError> {
        let config_path = dir.join("config.json");
        let config = ModelConfig::load(&config_path)?;
        let mut on_disk = version_dirs(dir);
        if on_disk.is_empty() {
            return Err(ServeError::Load(format!(
                "model '{name}': no version folder (DIR/{name}/<number>/model.onnx) in {}",
                dir.display()
            )));
        }
        if let Some(wanted) = &config.versions {
            if let Some(missing) = wanted
                .iter()
                .find(|v| !on_disk.iter().any(|(d, _)| d == *v))
            {
                return Err(ServeError::Config {
                    path: config_path,
                    message: format!(
                        "field `versions`: version {missing} has no folder with a model file"
                    ),
                });
            }
            on_disk.retain(|(v, _)| wanted.contains(v));
        }
        let mut out = BTreeMap::new();
        for (version, vdir) in on_disk {
            let model = open_version(name, version, &vdir, &config, &config_path)?;
            out.insert(version, Arc::new(model));
        }
        Ok(out)
    }

    /// Unloads `name`: it answers no new request; what its executors accepted drains first.
    /// Blocking.
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        let _one = self.loading.lock();
        let old = {
            let mut models = self.models.write();
            if !models.contains_key(name) && !self.scan().iter().any(|m| m == name) {
                return Err(ServeError::NotFound(format!(
                    "model '{name}' is not in the repository"
                )));
            }
            models.insert(name.to_string(), State::Unloaded)
        };
        if let Some(State::Ready(old)) = old {
            drain(old);
        }
        tracing::info!(model = name, "model unloaded");
        Ok(())
    }

    /// The loaded version `version` of `name` (`None` or empty: the highest loaded).
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedModel>, ServeError> {
        let models = self.models.read();
        let versions = match models.get(name) {
            Some(State::Ready(v)) => v,
            Some(State::Loading) => {
                return Err(ServeError::Unavailable(format!(
                    "model '{name}' is loading; retry when it is ready"
                )));
            }
            Some(State::Unloaded) => {
                return Err(ServeError::NotFound(format!(
                    "model '{name}' is unloaded; load it with POST /v2/repository/models/{name}/load"
                )));
            }
            Some(State::Failed(reason)) => {
                return Err(ServeError::NotFound(format!(
                    "model '{name}' failed to load: {reason}"
                )));
            }
            None => {
                let known: Vec<&String> = models.keys().collect();
                return Err(ServeError::NotFound(format!(
                    "unknown model '{name}'; the models are: {}",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let listed = || {
            versions
                .keys()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match version.filter(|v| !v.is_empty()) {
            None => versions.values().next_back().cloned().ok_or_else(|| {
                ServeError::NotFound(format!("model '{name}' has no loaded version"))
            }),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|n| versions.get(&n).cloned())
                .ok_or_else(|| {
                    ServeError::NotFound(format!(
                        "model '{name}' has no version '{v}'; its loaded versions are: {}",
                        listed()
                    ))
                }),
        }
    }

    /// Whether `name` is a model of the repository (on disk, or known from a load).
    pub fn knows(&self, name: &str) -> bool {
        self.models.read().contains_key(name) || self.scan().iter().any(|m| m == name)
    }

    /// The loaded versions of `name`, ascending.
    pub fn versions(&self, name: &str) -> Vec<u64> {
        match self.models.read().get(name) {
            Some(State::Ready(v)) => v.keys().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Every loaded model version.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.models
            .read()
            .values()
            .filter_map(|s| match s {
                State::Ready(v) => Some(v.values().cloned().collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Whether every model known to the server is loaded (none loading or failed).
    pub fn all_ready(&self) -> bool {
        self.models
            .read()
            .values()
            .all(|s| matches!(s, State::Ready(_) | State::Unloaded))
    }

    /// The repository index: loaded versions (READY), and the other models of the folder
    /// (LOADING, UNAVAILABLE with the reason).
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let models = self.models.read();
        let mut names = self.scan();
        names.extend(models.keys().cloned());
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let entry = |state: &str, reason: &str, version: Option<String>| IndexEntry {
                name: name.clone(),
                version,
                state: state.into(),
                reason: reason.into(),
            };
            match models.get(&name) {
                Some(State::Ready(v)) => {
                    out.extend(v.keys().map(|k| entry("READY", "", Some(k.to_string()))))
                }
                _ if ready_only => {}
                Some(State::Loading) => out.push(entry("LOADING", "", None)),
                Some(State::Unloaded) => out.push(entry("UNAVAILABLE", "unloaded", None)),
                Some(State::Failed(r)) => out.push(entry("UNAVAILABLE", r, None)),
                None => out.push(entry("UNAVAILABLE", "not loaded", None)),
            }
        }
        out
    }

    /// Stops every model: no new requests; in-flight ones drain. Blocking.
    pub fn shutdown(&self) {
        let _one = self.loading.lock();
        let all: Vec<BTreeMap<u64, Arc<LoadedModel>>> = {
            let mut models = self.models.write();
            let names: Vec<String> = models.keys().cloned().collect();
            names
                .into_iter()
                .filter_map(|n| match models.insert(n, State::Unloaded) {
                    Some(State::Ready(v)) => Some(v),
                    _ => None,
                })
                .collect()
        };
        for versions in all {
            drain(versions);
        }
    }
}

/// Drains and stops the executors of `versions` (requests holding an `Arc` to a version
/// submit into a stopped executor and get UNAVAILABLE).
fn drain(versions: BTreeMap<u64, Arc<LoadedModel>>) {
    for (v, m) in versions {
        let r = m.executor.shutdown();
        tracing::info!(
            model = m.name,
            version = v,
            completed = r.completed,
            failed = r.failed,
            timed_out = r.timed_out,
            "drained"
        );
    }
}

fn open_version(
    name: &str,
    version: u64,
    dir: &Path,
    config: &ModelConfig,
    config_path: &Path,
) -> Result<LoadedModel, ServeError> {
    let engines = engines::open(name, dir, config, config_path)?;
    let first = engines
        .devices
        .first()
        .ok_or_else(|| ServeError::Load(format!("model '{name}': no device to run on")))?
        .engine
        .clone();
    let inputs = first.inputs().to_vec();
    let outputs = first.outputs().to_vec();
    let b = &config.batching;
    let mut builder = Executor::builder(first)
        .max_batch(engines.max_batch)
        .max_queue_delay(Duration::from_micros(b.max_queue_delay_us))
        .preferred_batch_sizes(b.preferred_batch_sizes.clone())
        .instances_per_gpu(b.instances_per_gpu)
        .devices(engines.devices)
        .queue_capacity(b.queue_capacity)
        .priority_levels(b.priority_levels)
        .default_priority(b.default_priority)
        .preserve_ordering(b.preserve_ordering)
        .cuda_graphs(b.cuda_graphs);
    if let Some(ms) = b.default_timeout_ms {
        let action = match b.timeout_action {
            TimeoutActionName::Reject => TimeoutAction::Reject,
            TimeoutActionName::Delay => TimeoutAction::Delay,
        };
        builder = builder.default_timeout(Duration::from_millis(ms), action);
    }
    let executor = builder.build().map_err(|e| ServeError::Config {
        path: config_path.to_path_buf(),
        message: format!("model '{name}' version {version}: {e}"),
    })?;
    tracing::info!(
        model = name,
        version,
        backend = engines.backend,
        device = engines.device,
        cached_plan = engines.cached,
        max_batch = engines.max_batch,
        "version ready"
    );
    Ok(LoadedModel {
        name: name.to_string(),
        version,
        executor,
        inputs,
        outputs,
        max_batch: engines.max_batch,
        backend: engines.backend,
        device: engines.device,
        stats: ModelStats::default(),
    })
}
