//! Building: builder → network (flags 0) → ONNX parser → config (workspace, precision,
//! optimisation level, profiles) → `buildSerializedNetwork` → bytes.

use std::path::Path;

use kiln_core::{OptimizationProfile, Precision};

use crate::TensorRt;
use crate::error::{NvInferError, Result};
use crate::ffi::{Builder, Config, Network, NetworkTensor, Parser};
use crate::sys::{SEL_MAX, SEL_MIN, SEL_OPT};

/// The model to build from.
#[derive(Debug, Clone, Copy)]
pub enum Model<'a> {
    /// ONNX bytes; `name` is used in messages (and passed to the parser as the model path,
    /// for external weights).
    Bytes { bytes: &'a [u8], name: &'a str },
    /// An ONNX file, read by the parser itself.
    File(&'a Path),
}

/// Builder settings.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The workspace memory pool limit in bytes (TensorRT's default when `None`).
    pub workspace: Option<usize>,
    /// What the builder may compute in. TRT 10: builder flags (TF32/FP16/BF16/INT8). TRT 11
    /// networks are strongly typed: only `Fp32` and `Tf32` are accepted there, other
    /// precisions must come from the model's own types (or Q/DQ nodes).
    pub precision: Precision,
    /// `setBuilderOptimizationLevel` (0..=5; TensorRT's default 3 when `None`).
    pub optimization_level: Option<i32>,
    /// Optimisation profiles; every dynamic input must be in each one.
    pub profiles: Vec<OptimizationProfile>,
    /// Parser verbosity for [`Model::File`] (TensorRT's severity numbers).
    pub parser_verbosity: i32,
}

/// A built engine plan and the network's IO as the parser saw it.
#[derive(Debug, Clone)]
pub struct SerializedEngine {
    pub bytes: Vec<u8>,
    pub inputs: Vec<NetworkTensor>,
    pub outputs: Vec<NetworkTensor>,
}

impl SerializedEngine {
    /// Writes the plan (the bytes as TensorRT made them) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, &self.bytes).map_err(|e| NvInferError::Io {
            path: path.display().to_string(),
            message: format!("cannot write the engine: {e}"),
        })
    }
}

impl TensorRt {
    /// Parses an ONNX model and builds a serialised engine.
    pub fn build(&self, model: Model<'_>, opts: &BuildOptions) -> Result<SerializedEngine> {
        let sh = &self.shared;
        let builder = Builder::new(sh)?;
        let network = builder.create_network()?;
        let source_name = parse(sh, &network, model, opts.parser_verbosity)?;
        let inputs = network.inputs()?;
        let outputs = network.outputs()?;
        tracing::debug!(target: "tensorrt", model = %source_name, ?inputs, ?outputs, "parsed");
        let config = builder.create_config()?;
        configure(self, &builder, &config, &inputs, opts)?;
        let plan = builder.build_serialized(&network, &config)?.to_vec()?;
        // Explicit order (the handles would also keep it): config and network before builder.
        drop(config);
        drop(network);
        drop(builder);
        Ok(SerializedEngine {
            bytes: plan,
            inputs,
            outputs,
        })
    }
}

fn parse(
    sh: &std::sync::Arc<crate::ffi::Shared>,
    network: &Network,
    model: Model<'_>,
    verbosity: i32,
) -> Result<String> {
    let parser = Parser::new(sh, network)?;
    let (name, errors) = match model {
        Model::Bytes { bytes, name } => (name.to_string(), parser.parse(bytes, Some(name))?),
        Model::File(path) => {
            let p = path.to_str().ok_or_else(|| {
                NvInferError::Invalid(format!("{}: path is not UTF-8", path.display()))
            })?;
            (p.to_string(), parser.parse_file(p, verbosity)?)
        }
    };
    if !errors.is_empty() {
        return Err(NvInferError::Parse {
            source_name: name,
            errors,
        });
    }
    Ok(name)
}

fn configure(
    trt: &TensorRt,
    builder: &Builder,
    config: &Config,
    inputs: &[NetworkTensor],
    opts: &BuildOptions,
) -> Result<()> {
    let table = trt.shared.api.table;
    if let Some(ws) = opts.workspace {
        config.set_workspace(ws)?;
    }
    if let Some(level) = opts.optimization_level {
        if !(0..=5).contains(&level) {
            return Err(NvInferError::Invalid(format!(
                "builder optimisation level {level}: TensorRT takes 0 to 5"
            )));
        }
        config.set_optimization_level(level)?;
    }
    let flag = match opts.precision {
        Precision::Fp32 => None,
        Precision::Tf32 => table.flag_tf32,
        Precision::Fp16 => table.flag_fp16,
        Precision::Bf16 => table.flag_bf16,
        Precision::Int8 => table.flag_int8,
    };
    match (opts.precision, flag) {
        (Precision::Fp32, _) => {}
        (_, Some(f)) => config.set_flag(f)?,
        (p, None) => {
            return Err(NvInferError::Unsupported(format!(
                "precision {} as a builder flag: TensorRT {} networks are strongly typed, so \
                 the precision comes from the model's own types; export the model in {} (or \
                 with Q/DQ nodes for int8) and build with fp32",
                p.name(),
                trt.version(),
                p.name()
            )));
        }
    }
    let dynamic: Vec<&NetworkTensor> = inputs
        .iter()
        .filter(|t| t.dims.iter().any(|&d| d < 0))
        .collect();
    if !dynamic.is_empty() && opts.profiles.is_empty() {
        return Err(NvInferError::Invalid(format!(
            "the model has dynamic inputs ({}) but no optimisation profile was given; give \
             min/opt/max shapes for each",
            dynamic
                .iter()
                .map(|t| format!("{} {:?}", t.name, t.dims))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (k, p) in opts.profiles.iter().enumerate() {
        p.validate()
            .map_err(|e| NvInferError::Invalid(format!("profile {k}: {e}")))?;
        for t in &dynamic {
            if !p.inputs.iter().any(|i| i.name == t.name) {
                return Err(NvInferError::Invalid(format!(
                    "profile {k} gives no shapes for dynamic input '{}' {:?}",
                    t.name, t.dims
                )));
            }
        }
        let profile = builder.create_profile()?;
        for i in &p.inputs {
            let Some(t) = inputs.iter().find(|t| t.name == i.name) else {
                return Err(NvInferError::Invalid(format!(
                    "profile {k} names '{}', which is not an input of the model (inputs: {})",
                    i.name,
                    inputs
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let fits = i.min.len() == t.dims.len()
                && t.dims
                    .iter()
                    .zip(&i.min)
                    .zip(&i.max)
                    .all(|((&d, &lo), &hi)| d < 0 || (lo as i64 == d && hi as i64 == d));
            if !fits {
                return Err(NvInferError::Invalid(format!(
                    "profile {k}: input '{}' has dims {:?}; min {:?} / max {:?} must have that rank and keep its fixed dims",
                    i.name, t.dims, i.min, i.max
                )));
            }
            profile.set_dimensions(&i.name, SEL_MIN, &i.min)?;
            profile.set_dimensions(&i.name, SEL_OPT, &i.opt)?;
            profile.set_dimensions(&i.name, SEL_MAX, &i.max)?;
        }
        if !profile.is_valid()? {
            return Err(NvInferError::Invalid(format!(
                "profile {k} ({p}) is not valid for TensorRT"
            )));
        }
        config.add_profile(&profile)?;
    }
    Ok(())
}
