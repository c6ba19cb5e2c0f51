//! A model's `config.json`: backend, precision, shapes, and the kiln-batch policy it runs
//! behind. Every field is optional (a model folder without `config.json` gets the defaults);
//! unknown fields are errors, and every error names the file and the field.
//!
//! ```json
//! {
//!   "backend": "auto",            // "auto" (kiln on a GPU when one is found, else cpu),
//!                                 // "kiln" (GPU required) or "cpu" (kiln-reference)
//!   "precision": "fp32",          // "fp32" | "tf32" | "fp16" | "bf16" (GPU builds; cpu is fp32)
//!   "max_batch": 8,               // largest batch (rows along dim 0) a run takes; default 8,
//!                                 // or 1 when the model's batch dim is fixed to 1
//!   "profiles": {                 // shape ranges per input (the batch dim included); inputs
//!     "x": { "min": [1, 16], "opt": [8, 16], "max": [8, 16] },   // left out get
//!     "mask": { "shape": [1, 128] }                               // [1..max_batch, rest]
//!   },
//!   "opt_level": 3,               // kiln builder optimisation level 0..=5
//!   "workspace_mib": 1024,        // scratch memory tactics may use
//!   "versions": [1, 2],           // versions to load (default: every version folder)
//!   "batching": {                 // kiln-batch's knobs (Triton's dynamic batcher vocabulary)
//!     "max_queue_delay_us": 100,
//!     "preferred_batch_sizes": [4, 8],
//!     "instances_per_gpu": 1,     // also the number of CPU instances on the cpu backend
//!     "devices": [0, 1],          // GPU ordinals (default: every GPU); ignored on cpu
//!     "queue_capacity": 1024,     // past it requests are refused with 503 / UNAVAILABLE
//!     "default_timeout_ms": 1000, // queue timeout of requests that set none (default none)
//!     "timeout_action": "reject", // "reject" | "delay"
//!     "priority_levels": 1,
//!     "default_priority": 0,
//!     "preserve_ordering": false,
//!     "cuda_graphs": true
//!   }
//! }
//! ```
//! (JSON has no comments: they are here only to explain.)

use std::collections::BTreeMap;
use std::path::Path;

use kiln_core::Precision;
use serde::Deserialize;

use crate::error::ServeError;

/// Which backend runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// kiln's GPU engine when a CUDA device is usable, else the CPU reference.
    #[default]
    Auto,
    /// kiln's GPU engine (kiln-engine); loading fails without a GPU.
    Kiln,
    /// The CPU reference (kiln-reference's `CpuEngine`).
    Cpu,
}

/// Build precision of GPU engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionName {
    #[default]
    Fp32,
    Tf32,
    Fp16,
    Bf16,
}

impl PrecisionName {
    pub fn precision(self) -> Precision {
        match self {
            PrecisionName::Fp32 => Precision::Fp32,
            PrecisionName::Tf32 => Precision::Tf32,
            PrecisionName::Fp16 => Precision::Fp16,
            PrecisionName::Bf16 => Precision::Bf16,
        }
    }
}

/// The shape range of one input: either `shape` (fixed) or some of `min` / `opt` / `max`
/// (a missing one falls back to opt, then max, then min).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeRange {
    pub shape: Option<Vec<usize>>,
    pub min: Option<Vec<usize>>,
    pub opt: Option<Vec<usize>>,
    pub max: Option<Vec<usize>>,
}

impl ShapeRange {
    /// `(min, opt, max)`, or why the range is empty or contradictory.
    pub fn resolve(&self) -> Result<ShapeTriple, String> {
        if let Some(s) = &self.shape {
            if self.min.is_some() || self.opt.is_some() || self.max.is_some() {
                return Err("give either `shape` or `min`/`opt`/`max`, not both".into());
            }
            return Ok((s.clone(), s.clone(), s.clone()));
        }
        let opt = self
            .opt
            .clone()
            .or_else(|| self.max.clone())
            .or_else(|| self.min.clone())
            .ok_or("give `shape`, or at least one of `min`, `opt`, `max`")?;
        let min = self.min.clone().unwrap_or_else(|| opt.clone());
        let max = self.max.clone().unwrap_or_else(|| opt.clone());
        Ok((min, opt, max))
    }
}

/// `(min, opt, max)` dims of one input.
pub type ShapeTriple = (Vec<usize>, Vec<usize>, Vec<usize>);

/// What happens to a request that waited in the queue past its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeoutActionName {
    #[default]
    Reject,
    Delay,
}

/// The kiln-batch policy of a model (see `kiln_batch::Builder` for each knob).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    pub max_queue_delay_us: u64,
    pub preferred_batch_sizes: Vec<usize>,
    pub instances_per_gpu: usize,
    pub devices: Option<Vec<usize>>,
    pub queue_capacity: usize,
    pub default_timeout_ms: Option<u64>,
    pub timeout_action: TimeoutActionName,
    pub priority_levels: usize,
    pub default_priority: usize,
    pub preserve_ordering: bool,
    pub cuda_graphs: bool,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_queue_delay_us: 100,
            preferred_batch_sizes: Vec::new(),
            instances_per_gpu: 1,
            devices: None,
            queue_capacity: 1024,
            default_timeout_ms: None,
            timeout_action: TimeoutActionName::Reject,
            priority_levels: 1,
            default_priority: 0,
            preserve_ordering: false,
            cuda_graphs: true,
        }
    }
}

/// A model's `config.json` (see the module doc for the schema).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub backend: BackendChoice,
    pub precision: PrecisionName,
    pub max_batch: Option<usize>,
    pub profiles: BTreeMap<String, ShapeRange>,
    pub opt_level: Option<u8>,
    pub workspace_mib: Option<usize>,
    pub versions: Option<Vec<u64>>,
    pub batching: Batching,
}

impl ModelConfig {
    /// Parses `text` (read from `path`, named in errors) and checks the values that need no
    /// model.
    pub fn parse(text: &str, path: &Path) -> Result<ModelConfig, ServeError> {
        let bad = |field: &str, msg: String| ServeError::Config {
            path: path.to_path_buf(),
            message: if field.is_empty() {
                msg
            } else {
                format!("field `{field}`: {msg}")
            },
        };
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: ModelConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            bad(&field, e.into_inner().to_string())
        })?;
        if config.max_batch == Some(0) {
            return Err(bad("max_batch", "must be at least 1".into()));
        }
        if let Some(level) = config.opt_level
            && level > 5
        {
            return Err(bad("opt_level", format!("{level} is not within 0..=5")));
        }
        let b = &config.batching;
        for (field, v) in [
            ("batching.instances_per_gpu", b.instances_per_gpu),
            ("batching.queue_capacity", b.queue_capacity),
            ("batching.priority_levels", b.priority_levels),
        ] {
            if v == 0 {
                return Err(bad(field, "must be at least 1".into()));
            }
        }
        if b.default_priority >= b.priority_levels {
            return Err(bad(
                "batching.default_priority",
                format!(
                    "{} is not below priority_levels {}",
                    b.default_priority, b.priority_levels
                ),
            ));
        }
        if let Some(max) = config.max_batch
            && let Some(&p) = b.preferred_batch_sizes.iter().find(|&&p| p == 0 || p > max)
        {
            return Err(bad(
                "batching.preferred_batch_sizes",
                format!("{p} is not within 1..=max_batch ({max})"),
            ));
        }
        if b.devices.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad(
                "batching.devices",
                "is empty; leave it out to use every GPU".into(),
            ));
        }
        for (input, range) in &config.profiles {
            let (min, opt, max) = range
                .resolve()
                .map_err(|m| bad(&format!("profiles.{input}"), m))?;
            let ok = min.len() == opt.len()
                && opt.len() == max.len()
                && min
                    .iter()
                    .zip(&opt)
                    .zip(&max)
                    .all(|((a, b), c)| a <= b && b <= c);
            if !ok {
                return Err(bad(
                    &format!("profiles.{input}"),
                    format!(
                        "min {min:?}, opt {opt:?}, max {max:?} must have one rank and min <= opt <= max"
                    ),
                ));
            }
        }
        Ok(config)
    }

    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<ModelConfig, ServeError> {
        match std::fs::read_to_string(path) {
            Ok(text) => ModelConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ModelConfig::default()),
            Err(e) => Err(ServeError::Config {
                path: path.to_path_buf(),
                message: format!("cannot read it: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig, String> {
        ModelConfig::parse(text, Path::new("repo/m/config.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_config_gives_the_defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c, ModelConfig::default());
        assert_eq!(c.batching.queue_capacity, 1024);
        assert_eq!(c.backend, BackendChoice::Auto);
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"{"backend": "cpu", "precision": "fp16", "max_batch": 16,
                "profiles": {"x": {"min": [1, 16], "max": [16, 16]}, "m": {"shape": [2, 3]}},
                "opt_level": 2, "workspace_mib": 512, "versions": [1, 3],
                "batching": {"max_queue_delay_us": 250, "preferred_batch_sizes": [4, 8],
                  "instances_per_gpu": 2, "devices": [0, 1], "queue_capacity": 64,
                  "default_timeout_ms": 1500, "timeout_action": "delay", "priority_levels": 2,
                  "default_priority": 1, "preserve_ordering": true, "cuda_graphs": false}}"#,
        )
        .unwrap();
        assert_eq!(c.backend, BackendChoice::Cpu);
        assert_eq!(c.precision.precision(), Precision::Fp16);
        assert_eq!(c.max_batch, Some(16));
        let (min, opt, max) = c.profiles["x"].resolve().unwrap();
        assert_eq!((min, opt, max), (vec![1, 16], vec![16, 16], vec![16, 16]));
        assert_eq!(c.profiles["m"].resolve().unwrap().0, vec![2, 3]);
        assert_eq!(c.batching.devices, Some(vec![0, 1]));
        assert_eq!(c.batching.timeout_action, TimeoutActionName::Delay);
        assert!(!c.batching.cuda_graphs);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = parse(r#"{"batching": {"max_queue_delay": 5}}"#).unwrap_err();
        assert!(e.contains("repo/m/config.json"), "{e}");
        assert!(e.contains("batching"), "{e}");
        assert!(e.contains("max_queue_delay"), "{e}");
        let e = parse(r#"{"precision": "fp8"}"#).unwrap_err();
        assert!(e.contains("`precision`") && e.contains("fp8"), "{e}");
        let e = parse(r#"{"max_batch": "eight"}"#).unwrap_err();
        assert!(e.contains("`max_batch`"), "{e}");
        let e = parse(r#"{"max_batch": 4, "batching": {"preferred_batch_sizes": [2, 8]}}"#)
            .unwrap_err();
        assert!(
            e.contains("preferred_batch_sizes") && e.contains('8'),
            "{e}"
        );
        let e =
            parse(r#"{"batching": {"priority_levels": 2, "default_priority": 2}}"#).unwrap_err();
        assert!(e.contains("batching.default_priority"), "{e}");
        let e = parse(r#"{"profiles": {"x": {"min": [4], "max": [2]}}}"#).unwrap_err();
        assert!(
            e.contains("profiles.x") && e.contains("min <= opt <= max"),
            "{e}"
        );
        let e = parse(r#"{"profiles": {"x": {}}}"#).unwrap_err();
        assert!(e.contains("profiles.x"), "{e}");
        let e = parse("{,}").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
