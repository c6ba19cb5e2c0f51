//! Per-step profile of one run: a pair of CUDA events around every step of the program, read
//! back after the stream finishes. Profiling serialises nothing beyond what the events cost
//! (a few microseconds per step on the host), so the times are each step's GPU time in a
//! normal run; the whole run's time is the span from the first event to the last.

use serde::Serialize;

use super::libs::LibCall;
use crate::builder::lower::{Program, Step, StepKind, root};

/// The GPU time of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTime {
    /// Position in the program.
    pub index: usize,
    /// The ONNX node's name, or what the step is (`cast`, `copy`, `pad`).
    pub name: String,
    /// The op type (`Conv`, `MatMul`, …) or the step kind.
    pub op: String,
    /// What ran: the library and tactic, or `nvrtc`.
    pub kernel: String,
    /// Dims of the step's first output.
    pub output_dims: Vec<usize>,
    pub ms: f64,
    /// Arithmetic of the library calls (2 per multiply-add; 0 for memory-bound steps).
    pub flops: u64,
    /// Bytes the step must move at least: every distinct operand read once, every output
    /// written once.
    pub bytes: u64,
    /// The step's floor at the profile's [`Peaks`]: the larger of bytes over bandwidth and
    /// FLOPs over the matrix rate.
    pub floor_ms: f64,
}

/// Ceilings a profile's floors are computed with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peaks {
    /// Device memory bandwidth, bytes read plus written per second.
    pub bytes_per_s: f64,
    /// Matrix (tensor-core) rate of the engine's precision, FLOP per second.
    pub flops_per_s: f64,
    /// Where the figures come from.
    pub source: String,
}

impl Peaks {
    /// Ceilings measured on the lent machines (device-to-device copy bandwidth, 8192³
    /// bf16 matrix product on random data; the device library's KINDS.md): H100 3.0 TB/s,
    /// H200 4.3 TB/s, 790 TFLOP/s on both for fp16/bf16, half that for tf32 and 60 TFLOP/s
    /// for plain fp32 (the datasheet's 67 less what copies showed is lost). Other GPUs get
    /// the H100's figures, which the source says.
    pub fn for_device(gpu_name: &str, precision: kiln_core::Precision) -> Peaks {
        use kiln_core::Precision as P;
        let h200 = gpu_name.contains("H200");
        let bytes_per_s = if h200 { 4.3e12 } else { 3.0e12 };
        let flops_per_s = match precision {
            P::Fp16 | P::Bf16 | P::Int8 => 790e12,
            P::Tf32 => 395e12,
            P::Fp32 => 60e12,
        };
        let known = h200 || gpu_name.contains("H100");
        let source = format!(
            "{} ceilings measured on the lent machines (copy bandwidth, bf16 8192^3 GEMM){}",
            if h200 { "H200" } else { "H100" },
            if known {
                ""
            } else {
                "; this GPU was not measured, so its floors are only indicative"
            }
        );
        Peaks {
            bytes_per_s,
            flops_per_s,
            source,
        }
    }

    /// The floor of `flops` and `bytes`, in milliseconds.
    pub fn floor_ms(&self, flops: u64, bytes: u64) -> f64 {
        let t = (bytes as f64 / self.bytes_per_s).max(flops as f64 / self.flops_per_s);
        t * 1e3
    }
}

/// FLOPs and bytes of one step (see [`StepTime`]).
pub(crate) fn step_cost(program: &Program, step: &Step, lib: Option<&LibCall>) -> (u64, u64) {
    let mut seen = Vec::new();
    let mut bytes = 0u64;
    for &t in step.inputs.iter().flatten().chain(&step.outputs) {
        let r = root(&program.tensors, t);
        if !seen.contains(&r) {
            seen.push(r);
            bytes += program.tensors[t].bytes() as u64;
        }
    }
    let flops = match lib {
        Some(LibCall::Gemm { desc, .. }) => {
            2 * (desc.m * desc.n * desc.k * desc.batch.max(1)) as u64
        }
        Some(LibCall::MatMul { plan, .. }) => {
            let d = &plan.desc;
            2 * (d.m * d.n * d.k * d.batch.max(1) * plan.calls.len()) as u64
        }
        Some(LibCall::Conv { desc, .. }) => {
            let g = &desc.geometry;
            let o = g.out_hw().unwrap_or([0, 0]);
            let per_out = (g.c / g.groups.max(1)) * g.kernel[0] * g.kernel[1];
            2 * (g.n * g.k * o[0] * o[1] * per_out) as u64
        }
        None => 0,
    };
    (flops, bytes)
}

/// A profile of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Profile {
    pub steps: Vec<StepTime>,
    /// From the first step's start to the last step's end.
    pub total_ms: f64,
    /// The sum of the steps' floors.
    pub floor_ms: f64,
    /// The ceilings the floors use.
    pub peaks: Option<Peaks>,
}

/// Time per op type, largest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpTotal {
    pub op: String,
    pub count: usize,
    pub ms: f64,
    /// The steps' floors summed.
    pub floor_ms: f64,
}

impl Profile {
    /// The steps' times summed by op type, largest first.
    pub fn by_op(&self) -> Vec<OpTotal> {
        let mut totals: Vec<OpTotal> = Vec::new();
        for s in &self.steps {
            match totals.iter_mut().find(|t| t.op == s.op) {
                Some(t) => {
                    t.count += 1;
                    t.ms += s.ms;
                    t.floor_ms += s.floor_ms;
                }
                None => totals.push(OpTotal {
                    op: s.op.clone(),
                    count: 1,
                    ms: s.ms,
                    floor_ms: s.floor_ms,
                }),
            }
        }
        totals.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        totals
    }

    /// The `n` slowest steps.
    pub fn slowest(&self, n: usize) -> Vec<&StepTime> {
        let mut v: Vec<&StepTime> = self.steps.iter().collect();
        v.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        v.truncate(n);
        v
    }
}

/// The name and op of a step, as the profile shows them.
pub(crate) fn describe(step: &Step) -> (String, String) {
    match &step.kind {
        StepKind::Node(n) => (n.name.clone(), n.op_type.clone()),
        StepKind::Cast => ("cast".into(), "Cast(boundary)".into()),
        StepKind::Copy => ("copy".into(), "Copy".into()),
        StepKind::Pad { .. } => ("pad".into(), "Pad(conv)".into()),
    }
}

/// The first output's dims of a step.
pub(crate) fn output_dims(program: &Program, step: &Step) -> Vec<usize> {
    step.outputs
        .first()
        .map(|&t| program.tensors[t].dims.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(op: &str, ms: f64, index: usize) -> StepTime {
        StepTime {
            index,
            name: format!("n{index}"),
            op: op.into(),
            kernel: "nvrtc".into(),
            output_dims: vec![1],
            ms,
            flops: 0,
            bytes: 1000,
            floor_ms: ms / 2.0,
        }
    }

    #[test]
    fn totals_by_op_are_sorted_and_counted() {
        let p = Profile {
            steps: vec![
                step("Add", 1.0, 0),
                step("Conv", 3.0, 1),
                step("Add", 2.5, 2),
            ],
            total_ms: 6.5,
            ..Profile::default()
        };
        let t = p.by_op();
        assert_eq!(t[0].op, "Add");
        assert_eq!(t[0].count, 2);
        assert!((t[0].ms - 3.5).abs() < 1e-12);
        assert!((t[0].floor_ms - 1.75).abs() < 1e-12);
        assert_eq!(t[1].op, "Conv");
        let s = p.slowest(2);
        assert_eq!(s[0].index, 1);
        assert_eq!(s[1].index, 2);
    }
}

#[cfg(test)]
mod floor_tests {
    use super::*;
    use kiln_core::Precision;

    #[test]
    fn floors_take_the_binding_ceiling() {
        let p = Peaks::for_device("NVIDIA H100 80GB HBM3", Precision::Fp16);
        assert!(!p.source.contains("not measured"));
        // 3 GB at 3 TB/s is 1 ms; 79 GFLOP at 790 TFLOP/s is 0.1 ms.
        assert!((p.floor_ms(79_000_000_000, 3_000_000_000) - 1.0).abs() < 1e-9);
        // 790 GFLOP is 1 ms, more than 3 MB's 1 µs.
        assert!((p.floor_ms(790_000_000_000, 3_000_000) - 1.0).abs() < 1e-9);
        let h200 = Peaks::for_device("NVIDIA H200", Precision::Fp32);
        assert_eq!(h200.bytes_per_s, 4.3e12);
        assert_eq!(h200.flops_per_s, 60e12);
        assert!(
            Peaks::for_device("Tesla T4", Precision::Fp16)
                .source
                .contains("not measured")
        );
    }
}
