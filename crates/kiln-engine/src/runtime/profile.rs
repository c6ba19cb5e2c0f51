//! Per-step profile of one run: a pair of CUDA events around every step of the program, read
//! back after the stream finishes. Profiling serialises nothing beyond what the events cost
//! (a few microseconds per step on the host), so the times are each step's GPU time in a
//! normal run; the whole run's time is the span from the first event to the last.

use serde::Serialize;

use crate::builder::lower::{Program, Step, StepKind};

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
}

/// A profile of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Profile {
    pub steps: Vec<StepTime>,
    /// From the first step's start to the last step's end.
    pub total_ms: f64,
}

/// Time per op type, largest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpTotal {
    pub op: String,
    pub count: usize,
    pub ms: f64,
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
                }
                None => totals.push(OpTotal {
                    op: s.op.clone(),
                    count: 1,
                    ms: s.ms,
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
        };
        let t = p.by_op();
        assert_eq!(t[0].op, "Add");
        assert_eq!(t[0].count, 2);
        assert!((t[0].ms - 3.5).abs() < 1e-12);
        assert_eq!(t[1].op, "Conv");
        let s = p.slowest(2);
        assert_eq!(s[0].index, 1);
        assert_eq!(s[1].index, 2);
    }
}
