//! The runner of kiln's GPU test binaries (`harness = false` test targets named `gpu*`).
//!
//! Each binary lists named test functions and a setup that probes the GPU. Without a usable
//! device every test is printed as `skipped: no CUDA device (<reason>)` and the closing line
//! counts them (`0 passed, 0 failed, N skipped`): never a silent pass. With
//! `KILN_GPU_REQUIRED=1` (set by the device bundle's run.sh) a missing device fails the run.
//! With a device each test runs once (panics caught and counted as failures) and the run fails
//! if any test failed. A test that needs more than the machine has (a second GPU) returns a
//! [`Skipped`] error: it is printed as `skipped: <reason>` and counted apart, never as a pass.
//! The first argument that does not start with `-` filters tests by name.

use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

/// What a test's error displays as when it skips itself; see [`Skipped`].
pub const SKIP_PREFIX: &str = "skipped: ";

/// The error a test returns when this machine cannot run it (e.g. it needs two GPUs): the
/// runner prints and counts it as skipped. Return it as the test's error itself (with
/// `anyhow`, `Err(Skipped(..).into())`, no context added), since the runner recognises it by
/// its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped(pub String);

impl Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SKIP_PREFIX}{}", self.0)
    }
}

impl std::error::Error for Skipped {}

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
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, test) in &selected {
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| test(&ctx)));
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(Ok(())) => {
                passed += 1;
                println!("{name}: ok ({ms:.1} ms)");
            }
            Ok(Err(e)) if e.to_string().starts_with(SKIP_PREFIX) => {
                skipped += 1;
                println!("{name}: {e}");
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
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
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

    #[test]
    fn a_skipped_test_says_why() {
        let e = Skipped("needs 2 GPUs, this machine has 1".into());
        assert_eq!(e.to_string(), "skipped: needs 2 GPUs, this machine has 1");
        assert!(e.to_string().starts_with(SKIP_PREFIX));
    }
}
