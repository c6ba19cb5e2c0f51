//! The plan header: versions, the machine it was built for, and the build configuration.

use kiln_core::{OptimizationProfile, Precision, TensorSpec};
use serde::{Deserialize, Serialize};

use crate::builder::passes::PassReport;

/// What the builder is asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildConfig {
    pub precision: Precision,
    /// Most scratch memory cuBLASLt/cuDNN algorithms may use, in bytes.
    pub workspace_limit: usize,
    /// Shape ranges of the dynamic inputs (empty: every input shape must be fixed).
    pub profiles: Vec<OptimizationProfile>,
    /// Where NVRTC binaries are cached (None: no disk cache).
    pub kernel_cache_dir: Option<std::path::PathBuf>,
    /// Tactic selection effort, as TensorRT's builder optimisation level: 0 takes the
    /// libraries' heuristic choice; higher levels time more candidates on the device.
    #[serde(default = "default_opt_level")]
    pub opt_level: u8,
    /// A timing cache file (read before timing, written after): rebuilds with it skip the
    /// timing of every description it holds and choose the same tactics.
    #[serde(default)]
    pub timing_cache: Option<std::path::PathBuf>,
    /// Which specialisation-time fusions run (all by default).
    #[serde(default)]
    pub fusions: Fusions,
}

/// The default [`BuildConfig::opt_level`]: the fastest of the heuristics' top 8, timed as
/// CUDA-graph replays (TensorRT's default level is 3 too). On the H200 (2026-11-26) it chose
/// what the heuristics chose for ResNet-50 at b1 and b256 and for BERT-base (0.336 / 6.830 /
/// 7.212 ms against 0.325 / 6.828 / 7.178 ms at level 0) for about 0.5 s more build time.
pub const DEFAULT_OPT_LEVEL: u8 = 3;

fn default_opt_level() -> u8 {
    DEFAULT_OPT_LEVEL
}

/// Fusions applied when a graph is specialised to concrete shapes (see
/// `builder::rewrite`); each can be switched off to compare or to isolate a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fusions {
    /// Convolutions (and the pools and elementwise ops between them) in NHWC, for
    /// fp16/bf16 engines.
    pub nhwc: bool,
    /// MatMul → scale → mask → Softmax → MatMul as one attention kernel.
    pub attention: bool,
    /// Add → LayerNormalization as one kernel.
    pub add_layer_norm: bool,
    /// Chains of elementwise ops as one generated kernel.
    pub elementwise: bool,
}

impl Default for Fusions {
    fn default() -> Self {
        Fusions {
            nhwc: true,
            attention: true,
            add_layer_norm: true,
            elementwise: true,
        }
    }
}

impl Fusions {
    /// Every fusion off.
    pub fn none() -> Fusions {
        Fusions {
            nhwc: false,
            attention: false,
            add_layer_norm: false,
            elementwise: false,
        }
    }
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            precision: Precision::Fp32,
            workspace_limit: 256 << 20,
            profiles: Vec::new(),
            kernel_cache_dir: None,
            opt_level: DEFAULT_OPT_LEVEL,
            timing_cache: None,
            fusions: Fusions::default(),
        }
    }
}

/// The machine a plan is built for: a plan runs only where this matches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    pub gpu_name: String,
    pub compute_capability: (u32, u32),
    /// CUDA version the driver supports, e.g. "13.0".
    pub cuda: String,
    pub nvrtc: Option<String>,
    pub cublaslt: Option<String>,
    pub cudnn: Option<String>,
}

impl Fingerprint {
    /// Human-readable differences between the plan's machine (`self`) and `here`.
    pub fn differences(&self, here: &Fingerprint) -> Vec<String> {
        let mut d = Vec::new();
        if self.gpu_name != here.gpu_name || self.compute_capability != here.compute_capability {
            d.push(format!(
                "built for {} (sm_{}{}), this GPU is {} (sm_{}{})",
                self.gpu_name,
                self.compute_capability.0,
                self.compute_capability.1,
                here.gpu_name,
                here.compute_capability.0,
                here.compute_capability.1
            ));
        }
        let libs = [
            ("CUDA", Some(&self.cuda), Some(&here.cuda)),
            ("NVRTC", self.nvrtc.as_ref(), here.nvrtc.as_ref()),
            ("cuBLASLt", self.cublaslt.as_ref(), here.cublaslt.as_ref()),
            ("cuDNN", self.cudnn.as_ref(), here.cudnn.as_ref()),
        ];
        for (lib, built, now) in libs {
            if built != now {
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "none".into());
                d.push(format!(
                    "built with {lib} {}, here it is {}",
                    show(built),
                    show(now)
                ));
            }
        }
        d
    }

    /// The fingerprint of this machine's `device`.
    pub fn of_device(device: &kiln_cuda::Device) -> crate::Result<Fingerprint> {
        use kiln_cuda::Library;
        let probe = kiln_cuda::Probe::run()?;
        let info = device.info();
        let v = |l| probe.version(l).map(str::to_string);
        Ok(Fingerprint {
            gpu_name: info.name.clone(),
            compute_capability: info.compute_capability,
            cuda: format!("{}.{}", probe.driver_version.0, probe.driver_version.1),
            nvrtc: v(Library::Nvrtc),
            cublaslt: v(Library::CublasLt),
            cudnn: v(Library::Cudnn),
        })
    }
}

/// Everything before the sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanHeader {
    pub kiln_version: String,
    pub fingerprint: Fingerprint,
    pub config: BuildConfig,
    /// The engine's inputs and outputs as the model declares them.
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub passes: PassReport,
}
