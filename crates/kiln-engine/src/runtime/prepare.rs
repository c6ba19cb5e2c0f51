//! A program made ready to run at concrete shapes ([`Prepared`]: small constants on the host,
//! initialisers created by specialisation uploaded, each library step's tactic), and the
//! build-time half: the NVRTC modules and tactics a plan stores ([`finish_build`]; tactics
//! are timed or taken from the timing cache as the optimisation level says, see
//! `runtime::timing`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use kiln_cuda::{Device, DeviceBuffer, Stream};
use kiln_onnx::Graph;

use super::libs::{self, LibCall, LibDesc, Tactics, key};
use super::timing::{Chooser, Heuristic, TacticReport, Timed};
use super::{Engine, weight_bytes};
use crate::builder::lower::{self, Program};
use crate::builder::rewrite;
use crate::error::{EngineError, Result};
use crate::kernels::conv::Dnn;
use crate::kernels::gemm::{Blas, MathMode};
use crate::kernels::nvrtc::{KernelBinary, KernelLibrary};
use crate::plan::{KERNEL_PREFIX, Plan};

/// Constants up to this many elements are kept on the host for attribute-like inputs.
const HOST_CONST_MAX: usize = 1 << 16;

/// Separates module, target and NVRTC version in a kernel section's name.
pub const KERNEL_SEP: char = '|';

/// What identifies an initialiser made by specialisation: its name, byte length and two
/// CRC-32s of its bytes (different seeds: a 64-bit content check).
pub(crate) type DerivedKey = (String, usize, u32, u32);

fn derived_key(name: &str, bytes: &[u8]) -> DerivedKey {
    let crc = |seed: u32| {
        let mut h = crc32fast::Hasher::new_with_initial(seed);
        h.update(bytes);
        h.finalize()
    };
    (name.to_string(), bytes.len(), crc(0), crc(0x9e37_79b9))
}

/// A program ready to run.
pub(crate) struct Prepared {
    pub program: Program,
    /// Host values of small initialisers (Slice starts, Pad pads, Clip bounds, ...).
    pub consts: HashMap<String, kiln_onnx::Tensor>,
    /// Initialisers that specialisation created (folded constants, NHWC weights), on the
    /// device; shared with other programs that made the same bytes (`Engine::derived`).
    pub extra: HashMap<String, Arc<DeviceBuffer>>,
    /// The library call of each step (`None`: not a library step).
    pub libs: Vec<Option<LibCall>>,
    /// Most workspace any library step needs.
    pub workspace: usize,
    pub opset: i64,
}

fn ops_in(graph: &Graph, ops: &[&str]) -> bool {
    graph
        .nodes
        .iter()
        .any(|n| ops.contains(&n.op_type.as_str()))
}

/// Optional cuBLASLt and cuDNN handles.
pub(crate) type Handles = (Option<Arc<Blas>>, Option<Arc<Dnn>>);

/// cuBLASLt and cuDNN handles, each only when the graph has ops that need it.
pub(crate) fn handles(device: &Arc<Device>, graph: &Graph) -> Result<Handles> {
    let lib = |e: crate::kernels::gemm::LibError| EngineError::Unsupported(e.to_string());
    let blas = if ops_in(graph, &["Gemm", "MatMul", "FusedGemm"]) {
        Some(Blas::new(device).map_err(lib)?)
    } else {
        None
    };
    let dnn = if ops_in(
        graph,
        &[
            "Conv",
            "ConvTranspose",
            "FusedConv",
            crate::builder::rewrite::nhwc::CONV_OP,
        ],
    ) {
        Some(Dnn::new(device).map_err(lib)?)
    } else {
        None
    };
    Ok((blas, dnn))
}

/// The tactic of a library description: from `tactics`, or chosen now by `chooser` (and
/// remembered).
fn tactic(d: LibDesc, tactics: &mut Tactics, chooser: &mut dyn Chooser) -> Result<LibCall> {
    let mut gemm =
        |g: &crate::kernels::gemm::GemmDesc| -> Result<crate::kernels::gemm::GemmTactic> {
            let k = key(g);
            if let Some(t) = tactics.gemm.get(&k) {
                return Ok(*t);
            }
            let t = chooser.gemm(g)?;
            tactics.gemm.insert(k, t);
            Ok(t)
        };
    Ok(match d {
        LibDesc::Gemm {
            desc,
            expand_c,
            bias,
        } => LibCall::Gemm {
            tactic: gemm(&desc)?,
            desc,
            expand_c,
            bias,
        },
        LibDesc::MatMul(plan) => LibCall::MatMul {
            tactic: gemm(&plan.desc)?,
            plan,
        },
        LibDesc::Conv(desc) => {
            let k = key(&desc);
            let t = match tactics.conv.get(&k) {
                Some(t) => *t,
                None => {
                    let t = chooser.conv(&desc)?;
                    tactics.conv.insert(k, t);
                    t
                }
            };
            LibCall::Conv { desc, tactic: t }
        }
    })
}

/// Library calls of every step of `p`.
fn lib_calls(
    p: &Program,
    math: MathMode,
    tactics: &mut Tactics,
    chooser: &mut dyn Chooser,
) -> Result<Vec<Option<LibCall>>> {
    p.steps
        .iter()
        .map(|s| {
            libs::lib_desc(s, p, math)?
                .map(|d| tactic(d, tactics, chooser))
                .transpose()
        })
        .collect()
}

/// Specialises and lowers the engine's graph at `shapes` and makes it ready to run.
pub(crate) fn prepare(engine: &Engine, shapes: &[(String, Vec<usize>)]) -> Result<Prepared> {
    let g = lower::specialize(&engine.graph, shapes)?;
    let (g, _) = rewrite::rewrite(g, engine.compute, &engine.header.config.fusions)?;
    let program = lower::lower(&g, engine.compute)?;
    let math = libs::math_mode(engine.header.config.precision)?;
    let libs = {
        let mut t = engine
            .tactics
            .lock()
            .map_err(|_| EngineError::Unsupported("tactic cache lock poisoned".into()))?;
        // Shapes met at run time take the heuristic choice: no timing on the enqueue path.
        let mut chooser = Heuristic {
            blas: engine.blas_handle.as_ref(),
            dnn: engine.dnn_handle.as_ref(),
            limit: engine.header.config.workspace_limit,
        };
        lib_calls(&program, math, &mut t, &mut chooser)?
    };
    let workspace = libs
        .iter()
        .flatten()
        .map(LibCall::workspace)
        .max()
        .unwrap_or(0);
    let mut consts = HashMap::new();
    let mut extra = HashMap::new();
    let stream = Stream::new(&engine.device)?;
    for t in &g.initializers {
        if t.dims().iter().product::<usize>() <= HOST_CONST_MAX {
            consts.insert(t.name().to_string(), t.clone());
        }
        if !engine.weights.contains_key(t.name()) {
            let bytes = weight_bytes(t, engine.compute)?;
            let key = derived_key(t.name(), &bytes);
            let known = engine
                .derived
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned());
            let buf = match known {
                Some(b) => b,
                None => {
                    let mut buf = engine.alloc.alloc(bytes.len().max(1), &stream)?;
                    kiln_cuda::copy::htod(&stream, &bytes, &mut buf)?;
                    let buf = Arc::new(buf);
                    if let Ok(mut m) = engine.derived.lock() {
                        m.entry(key).or_insert_with(|| buf.clone());
                    }
                    buf
                }
            };
            extra.insert(t.name().to_string(), buf);
        }
    }
    stream.synchronize()?;
    Ok(Prepared {
        program,
        consts,
        extra,
        libs,
        workspace,
        opset: g.opset_version("").unwrap_or(1),
    })
}

/// The `kernel:` section of one binary: `kernel:<module>|<target>|<nvrtc version>`.
pub fn kernel_sections(binaries: &[KernelBinary]) -> Vec<(String, Vec<u8>)> {
    binaries
        .iter()
        .map(|b| {
            (
                format!(
                    "{KERNEL_PREFIX}{}{KERNEL_SEP}{}{KERNEL_SEP}{}",
                    b.module, b.target, b.nvrtc_version
                ),
                b.image.clone(),
            )
        })
        .collect()
}

/// The kernel binaries a plan holds.
pub fn kernel_binaries(plan: &Plan) -> Result<Vec<KernelBinary>> {
    plan.kernels()
        .map(|(name, image)| {
            let mut it = name.split(KERNEL_SEP);
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some(module), Some(target), Some(nvrtc), None) => Ok(KernelBinary {
                    module: module.to_string(),
                    target: target.to_string(),
                    nvrtc_version: nvrtc.to_string(),
                    image: image.to_vec(),
                }),
                _ => Err(EngineError::BadPlan(format!(
                    "kernel section '{name}' is not module{KERNEL_SEP}target{KERNEL_SEP}nvrtc"
                ))),
            }
        })
        .collect()
}

/// What the device half of a build did: seconds compiling kernels, and tactic selection.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildReport {
    /// Seconds spent making the NVRTC modules (compiled, or read from the disk cache).
    pub kernels_s: f64,
    pub tactics: TacticReport,
}

/// Build-time device work: compiles every NVRTC module the programs launch and chooses every
/// GEMM/convolution tactic within the workspace limit; both go into the plan.
pub fn finish_build(
    device: &Arc<Device>,
    plan: &mut Plan,
    programs: &[(Graph, Program)],
) -> Result<()> {
    finish_build_report(device, plan, programs).map(|_| ())
}

/// [`finish_build`], also saying what it did. Tactics are chosen as the configuration's
/// optimisation level and timing cache say (`runtime::timing`).
pub fn finish_build_report(
    device: &Arc<Device>,
    plan: &mut Plan,
    programs: &[(Graph, Program)],
) -> Result<BuildReport> {
    let config = &plan.header.config;
    let math = libs::math_mode(config.precision)?;
    let started = Instant::now();
    let kernels = KernelLibrary::new(device)
        .map_err(|e| EngineError::Unsupported(e.to_string()))?
        .with_cache_dir(config.kernel_cache_dir.clone());
    let (mut blas, mut dnn) = (None, None);
    for (g, _) in programs {
        let (b, d) = handles(device, g)?;
        blas = blas.or(b);
        dnn = dnn.or(d);
    }
    for (_, p) in programs {
        for step in &p.steps {
            for m in super::ops::modules_for(step, p)? {
                kernels
                    .ensure(&m)
                    .map_err(|e| EngineError::Unsupported(e.to_string()))?;
            }
        }
    }
    let kernels_s = started.elapsed().as_secs_f64();
    let mut tactics = Tactics::default();
    let mut chooser = Timed::new(device, &plan.header.fingerprint, config, blas, dnn)?;
    for (_, p) in programs {
        lib_calls(p, math, &mut tactics, &mut chooser)?;
    }
    let report = chooser.finish();
    let bins = kernels.binaries();
    tracing::info!(
        modules = bins.len(),
        gemm_tactics = tactics.gemm.len(),
        conv_tactics = tactics.conv.len(),
        kernels_s,
        tactics_s = report.seconds,
        "build: kernels compiled, tactics chosen"
    );
    plan.sections
        .retain(|(n, _)| !n.starts_with(KERNEL_PREFIX) && n != libs::TACTICS_SECTION);
    plan.sections.extend(kernel_sections(&bins));
    plan.sections
        .push((libs::TACTICS_SECTION.to_string(), tactics.to_bytes()?));
    Ok(BuildReport {
        kernels_s,
        tactics: report,
    })
}
