//! The runner of kiln's GPU test binaries (`harness = false` test targets named `gpu*`).
//!
//! Each binary lists named test functions and a setup that probes the GPU. Without a usable
//! device every test is printed as `skipped: no CUDA device (<reason>)` and the closing line
//! counts them (`0 passed, 0 failed, N skipped`): never a silent pass. With
//! `KILN_GPU_REQUIRED=1` (set by the device bundle's run.sh) a missing device fails the run.
//! With a device each test runs once (panics caught and counted as failures) and the run fails
//! if any test failed. The first argument that does not start with `-` filters tests by name.

use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

/// One named test over the suite's context.
pub type GpuTest<C, E> = (&'static str, fn(&C) -> Result<(), E>);

/// Runs `tests` after `setup`; `finish` sees the context after the last test (for summaries).
pub fn run<C, E: Display>(
    tests: &[GpuTest<C, E>],
    setup: impl FnOnce() -> Result<C, String>,
    finish: impl FnOnce(&C),
) -> ExitCode {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let selected: Vec<_> = tests.iter().filter(|(n, _)| n.contains(&filter)).collect();
    let required = std::env::var("KILN_GPU_REQUIRED").is_ok_and(|v| v == "1");
    let ctx = match setup() {
        Ok(ctx) => ctx,
        Err(reason) => {
            println!(
                "{}",
                skip_report(
                    &selected.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                    &reason
                )
            );
            return if required {
                eprintln!("KILN_GPU_REQUIRED=1 but no usable CUDA device: {reason}");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in &selected {
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| test(&ctx)));
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(Ok(())) => {
                passed += 1;
                println!("{name}: ok ({ms:.1} ms)");
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("{name}: FAILED: {e:#}");
            }
            Err(_) => {
                failed += 1;
                println!("{name}: FAILED: panicked");
            }
        }
    }
    finish(&ctx);
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What a run without a GPU prints: one skip line per test and the counting closing line.
pub fn skip_report(names: &[&str], reason: &str) -> String {
    let mut out = format!("no CUDA device: {reason}\n");
    for name in names {
        out.push_str(&format!("{name}: skipped: no CUDA device\n"));
    }
    out.push_str(&format!("0 passed, 0 failed, {} skipped", names.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_visible_and_counted() {
        let r = skip_report(&["a", "b"], "libcuda.so.1 not found");
        assert!(r.starts_with("no CUDA device: libcuda.so.1 not found\n"));
        assert!(r.contains("\na: skipped: no CUDA device\nb: skipped: no CUDA device\n"));
        assert!(r.ends_with("0 passed, 0 failed, 2 skipped"));
    }
}
