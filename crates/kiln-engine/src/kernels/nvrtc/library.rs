//! [`KernelLibrary`]: compiles generated modules with NVRTC (or takes them from the disk cache
//! or from a plan), loads them on the device and hands out their functions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use cudarc::driver::{CudaFunction, CudaModule, LaunchConfig};
use cudarc::nvrtc::Ptx;
use kiln_cuda::probe::{Library, probe_library};
use kiln_cuda::{Device, Stream};
use serde::{Deserialize, Serialize};

use super::cache::{self, CacheKey};
use super::ffi::{self, Arg};
use super::{KernelError, Result};

/// One compiled module as the plan stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBinary {
    /// The module's name (family and element types, e.g. `unary_f16`).
    pub module: String,
    /// `sm_XY` for a CUBIN, `compute_XY` for PTX.
    pub target: String,
    /// NVRTC's version ("13.0"), for the plan header and the cache key.
    pub nvrtc_version: String,
    /// The CUBIN, or PTX text.
    pub image: Vec<u8>,
}

impl KernelBinary {
    pub fn is_ptx(&self) -> bool {
        self.target.starts_with("compute_")
    }
}

/// A module to compile: its name and generated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    pub name: String,
    pub source: String,
}

struct Loaded {
    binary: KernelBinary,
    module: Arc<CudaModule>,
    functions: RwLock<HashMap<String, CudaFunction>>,
}

/// The NVRTC kernels of one device: modules compiled (or loaded) once, shared by every
/// execution context (`Sync`; lookups take a read lock).
pub struct KernelLibrary {
    device: Arc<Device>,
    nvrtc_version: Option<String>,
    cache_dir: Option<PathBuf>,
    modules: RwLock<HashMap<String, Arc<Loaded>>>,
}

impl std::fmt::Debug for KernelLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelLibrary")
            .field("device", &self.device.info().name)
            .field("nvrtc_version", &self.nvrtc_version)
            .field("cache_dir", &self.cache_dir)
            .field("modules", &self.module_names())
            .finish()
    }
}

fn lock_err(what: &str) -> KernelError {
    KernelError::Invalid {
        op: "kernel library".into(),
        problem: format!("{what} lock poisoned by an earlier panic"),
    }
}

impl KernelLibrary {
    /// A library that compiles with NVRTC (probed now: a missing NVRTC is an `Err`), caching
    /// in [`cache::default_dir`].
    pub fn new(device: &Arc<Device>) -> Result<KernelLibrary> {
        let info = probe_library(Library::Nvrtc)?;
        Ok(KernelLibrary {
            device: device.clone(),
            nvrtc_version: Some(info.version.unwrap_or_else(|| "unknown".into())),
            cache_dir: cache::default_dir(),
            modules: RwLock::new(HashMap::new()),
        })
    }

    /// Uses `dir` as the disk cache (`None`: no disk cache).
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> KernelLibrary {
        self.cache_dir = dir;
        self
    }

    /// A library from a plan's binaries. Each must target this device's architecture; NVRTC
    /// is optional (only needed if a module missing from the plan is asked for).
    pub fn from_binaries(
        device: &Arc<Device>,
        binaries: Vec<KernelBinary>,
    ) -> Result<KernelLibrary> {
        let nvrtc_version = probe_library(Library::Nvrtc)
            .ok()
            .map(|i| i.version.unwrap_or_else(|| "unknown".into()));
        let lib = KernelLibrary {
            device: device.clone(),
            nvrtc_version,
            cache_dir: None,
            modules: RwLock::new(HashMap::new()),
        };
        let (sm, compute) = lib.targets();
        for b in binaries {
            if b.target != sm && b.target != compute {
                return Err(KernelError::WrongArch {
                    module: b.module,
                    built: b.target,
                    wanted: sm,
                });
            }
            let loaded = lib.load(b)?;
            lib.modules
                .write()
                .map_err(|_| lock_err("module"))?
                .insert(loaded.binary.module.clone(), Arc::new(loaded));
        }
        Ok(lib)
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// NVRTC's version, if NVRTC is present.
    pub fn nvrtc_version(&self) -> Option<&str> {
        self.nvrtc_version.as_deref()
    }

    /// ("sm_XY", "compute_XY") of the device.
    pub fn targets(&self) -> (String, String) {
        let (maj, min) = self.device.info().compute_capability;
        (format!("sm_{maj}{min}"), format!("compute_{maj}{min}"))
    }

    /// Every module compiled or loaded so far, sorted by name: what a plan stores.
    pub fn binaries(&self) -> Vec<KernelBinary> {
        let mut v: Vec<KernelBinary> = match self.modules.read() {
            Ok(m) => m.values().map(|l| l.binary.clone()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by(|a, b| a.module.cmp(&b.module));
        v
    }

    /// Names of the modules held.
    pub fn module_names(&self) -> Vec<String> {
        self.binaries().into_iter().map(|b| b.module).collect()
    }

    /// Compiles (or finds) `spec` now, so a plan built afterwards holds it.
    pub fn ensure(&self, spec: &ModuleSpec) -> Result<()> {
        self.module(&spec.name, || spec.source.clone()).map(|_| ())
    }

    fn load(&self, binary: KernelBinary) -> Result<Loaded> {
        let image = if binary.is_ptx() {
            let text =
                String::from_utf8(binary.image.clone()).map_err(|_| KernelError::Invalid {
                    op: binary.module.clone(),
                    problem: "stored PTX is not UTF-8; rebuild the plan".into(),
                })?;
            Ptx::from_src(text)
        } else {
            Ptx::from_binary(binary.image.clone())
        };
        let module =
            self.device
                .cuda_context()
                .load_module(image)
                .map_err(|e| KernelError::Driver {
                    op: "cuModuleLoadData",
                    kernel: binary.module.clone(),
                    message: e.to_string(),
                })?;
        Ok(Loaded {
            binary,
            module,
            functions: RwLock::new(HashMap::new()),
        })
    }

    fn compile(&self, name: &str, source: &str) -> Result<KernelBinary> {
        let Some(version) = self.nvrtc_version.clone() else {
            return Err(KernelError::Invalid {
                op: name.to_string(),
                problem: "the module is not in the plan and NVRTC is not available to \
                          compile it; rebuild the plan with this kiln version"
                    .into(),
            });
        };
        let (sm, compute) = self.targets();
        for (target, cubin) in [(sm.clone(), true), (compute, false)] {
            let key = CacheKey {
                source,
                arch: &target,
                nvrtc_version: &version,
            };
            if let Some(dir) = &self.cache_dir
                && let Some(image) = cache::load(dir, &key)
            {
                tracing::debug!(module = name, %target, "kernel cache hit");
                return Ok(KernelBinary {
                    module: name.to_string(),
                    target,
                    nvrtc_version: version,
                    image,
                });
            }
            let opts = vec![
                format!("--gpu-architecture={target}"),
                "--std=c++17".to_string(),
            ];
            let started = std::time::Instant::now();
            match ffi::compile(source, &format!("{name}.cu"), &opts, cubin) {
                Ok(image) => {
                    tracing::debug!(module = name, %target, ms = started.elapsed().as_millis() as u64, "NVRTC compiled");
                    if let Some(dir) = &self.cache_dir {
                        cache::store(dir, &key, &image);
                    }
                    return Ok(KernelBinary {
                        module: name.to_string(),
                        target,
                        nvrtc_version: version,
                        image,
                    });
                }
                // An unknown architecture: try PTX; a source error: report it.
                Err(log) if cubin && log.contains("INVALID_OPTION") => {
                    tracing::debug!(module = name, %log, "CUBIN target refused; trying PTX");
                }
                Err(log) => {
                    return Err(KernelError::Compile {
                        module: name.to_string(),
                        arch: target,
                        log,
                    });
                }
            }
        }
        Err(KernelError::Compile {
            module: name.to_string(),
            arch: sm,
            log: "NVRTC knows neither the CUBIN nor the PTX target of this device".into(),
        })
    }

    fn module(&self, name: &str, source: impl FnOnce() -> String) -> Result<Arc<Loaded>> {
        if let Some(m) = self
            .modules
            .read()
            .map_err(|_| lock_err("module"))?
            .get(name)
        {
            return Ok(m.clone());
        }
        let binary = self.compile(name, &source())?;
        let loaded = Arc::new(self.load(binary)?);
        let mut w = self.modules.write().map_err(|_| lock_err("module"))?;
        Ok(w.entry(name.to_string()).or_insert(loaded).clone())
    }

    /// Function `func` of module `module` (compiled from `source()` on first use).
    pub(crate) fn function(
        &self,
        module: &str,
        source: impl FnOnce() -> String,
        func: &str,
    ) -> Result<CudaFunction> {
        let m = self.module(module, source)?;
        if let Some(f) = m
            .functions
            .read()
            .map_err(|_| lock_err("function"))?
            .get(func)
        {
            return Ok(f.clone());
        }
        let f = m
            .module
            .load_function(func)
            .map_err(|e| KernelError::Driver {
                op: "cuModuleGetFunction",
                kernel: format!("{module}::{func}"),
                message: e.to_string(),
            })?;
        m.functions
            .write()
            .map_err(|_| lock_err("function"))?
            .insert(func.to_string(), f.clone());
        Ok(f)
    }

    /// Queues `module::func` on `stream` with a 1-D grid.
    pub(crate) fn launch(
        &self,
        stream: &Stream,
        module: &str,
        source: impl FnOnce() -> String,
        func: &str,
        (grid, block, shmem): (u32, u32, u32),
        args: &[Arg],
    ) -> Result<()> {
        let f = self.function(module, source, func)?;
        let cfg = LaunchConfig {
            grid_dim: (grid.max(1), 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: shmem,
        };
        ffi::launch(stream, &f, cfg, args).map_err(|e| KernelError::Driver {
            op: "cuLaunchKernel",
            kernel: format!("{module}::{func}"),
            message: e.to_string(),
        })
    }
}
