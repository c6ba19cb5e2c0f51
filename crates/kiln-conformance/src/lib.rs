//! `kiln-conformance`: the official ONNX backend test data through kiln's loader and CPU
//! reference interpreter.
//!
//! Suites are folders of tests (`node`, generated from the onnx package's case definitions by
//! `python/gen_node_tests.py`; `simple`, `pytorch-converted` and `pytorch-operator`, shipped as
//! files in the onnx wheel). The allow-list ([`allowlist`]) says which must pass; the report
//! ([`report`]) counts passed / failed / not claimed per op.

pub mod allowlist;
pub mod case;
pub mod compare;
pub mod report;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use allowlist::{AllowList, DEFAULT_ATOL, DEFAULT_RTOL};
use case::Case;
use report::{Outcome, Status};

/// Runs every case (on all cores), each against its allow-list tolerance. A panic inside
/// kiln is caught and reported as that test's failure.
/// `known_ops` files tests under an op (`suite/name` → op) where the data says which.
pub fn run_all(
    cases: &[Case],
    allow: &AllowList,
    known_ops: &HashMap<String, String>,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::with_capacity(cases.len()));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let o = run_one(case, allow, known_ops);
                    if let Ok(mut r) = results.lock() {
                        r.push(o);
                    }
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_default();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

fn run_one(case: &Case, allow: &AllowList, known_ops: &HashMap<String, String>) -> Outcome {
    let key = case.key();
    let entry = allow.entries.get(&key);
    let (rtol, atol) = entry.map_or((DEFAULT_RTOL, DEFAULT_ATOL), |e| (e.rtol, e.atol));
    let start = Instant::now();
    let (facts, result) = match catch_unwind(AssertUnwindSafe(|| case::run(case, rtol, atol))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            (Default::default(), Err(format!("PANIC in kiln: {msg}")))
        }
    };
    let mut message = String::new();
    let mut status = Status::Pass;
    if let Err(m) = result {
        status = Status::Fail;
        message = m;
    }
    Outcome {
        op: entry
            .map(|e| e.op.clone())
            .or_else(|| known_ops.get(&key).cloned())
            .unwrap_or_else(|| guess_op(&case.name, &facts.ops)),
        key,
        suite: case.suite.clone(),
        name: case.name.clone(),
        ops: facts.ops,
        opset: facts.opset,
        claimed: entry.is_some(),
        status,
        message,
        millis: start.elapsed().as_millis() as u64,
    }
}

/// Allow-list lines for tests that pass but are not listed.
pub fn propose(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| !o.claimed && o.status == Status::Pass)
        .map(|o| format!("{} op={} opset={}", o.key, o.op, o.opset.unwrap_or(0)))
        .collect()
}

/// The op a test is about: the model's only op, else the op whose name (lower case, no
/// underscores) is the longest prefix of the test's name (`test_reduce_mean_..._expanded`
/// decomposes ReduceMean into other ops), else the model's first op.
pub fn guess_op(test_name: &str, ops: &[String]) -> String {
    if ops.len() == 1 {
        return ops[0].clone();
    }
    let squashed: String = test_name
        .trim_start_matches("test_")
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let known = kiln_reference::ops::supported_ops();
    let candidates = ops.iter().map(String::as_str).chain(known.iter().copied());
    candidates
        .filter(|op| squashed.starts_with(&op.to_ascii_lowercase()))
        .max_by_key(|op| op.len())
        .map(str::to_string)
        .or_else(|| ops.first().cloned())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_the_op_of_expanded_tests() {
        let ops = vec![
            "Exp".to_string(),
            "ReduceSum".to_string(),
            "Div".to_string(),
        ];
        assert_eq!(
            guess_op("test_softmax_axis_0_expanded", &["Softmax".into()]),
            "Softmax"
        );
        assert_eq!(guess_op("test_div_bcast", &["Div".into()]), "Div");
        assert_eq!(guess_op("test_exp_sum_expanded", &ops), "Exp");
        assert_eq!(guess_op("test_unknownthing", &ops), "Exp");
    }
}
