//! `cargo xtask test`: named steps run one after the other, each timed, failing fast.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One command of a task, with the name its failure is reported under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub program: String,
    pub args: Vec<String>,
}

impl Step {
    pub fn new(name: &'static str, program: &str, args: &[&str]) -> Step {
        Step {
            name,
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn cargo(name: &'static str, args: &[&str]) -> Step {
        Step::new(name, "cargo", args)
    }

    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What `cargo xtask test` runs, in order. CI runs exactly this (through `.ci/run`).
pub fn test_steps() -> Vec<Step> {
    vec![
        Step::cargo("fmt", &["fmt", "--all", "--", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::cargo("test", &["test", "--workspace"]),
        // The ONNX backend test data through loader + CPU reference, by allow-list (issue 3).
        Step::cargo("conformance", &CONFORMANCE),
    ]
}

/// How `test` and `cargo xtask conformance` start the conformance runner.
pub const CONFORMANCE: [&str; 6] = ["run", "--quiet", "-p", "kiln-conformance", "--", "all"];

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Runs `steps` in `root`, printing each with its time; stops at the first failure, naming it.
pub fn run(root: &Path, steps: &[Step]) -> anyhow::Result<()> {
    let total = Instant::now();
    let mut done: Vec<(&str, Duration)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        println!(
            "==> [{}/{}] {}: {}",
            i + 1,
            steps.len(),
            step.name,
            step.command_line()
        );
        let start = Instant::now();
        let status = Command::new(&step.program)
            .args(&step.args)
            .current_dir(root)
            .status()
            .with_context(|| format!("step '{}': cannot start {}", step.name, step.program))?;
        let took = start.elapsed();
        if !status.success() {
            bail!(
                "step '{}' failed ({status}) after {}: {}",
                step.name,
                secs(took),
                step.command_line()
            );
        }
        println!("<== {} ok in {}", step.name, secs(took));
        done.push((step.name, took));
    }
    let summary: Vec<String> = done
        .iter()
        .map(|(n, d)| format!("{n} {}", secs(*d)))
        .collect();
    println!(
        "xtask: all {} steps passed in {} ({})",
        done.len(),
        secs(total.elapsed()),
        summary.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_runs_fmt_clippy_then_the_whole_workspace() {
        let steps = test_steps();
        let names: Vec<_> = steps.iter().map(|s| s.name).collect();
        assert_eq!(names, ["fmt", "clippy", "test", "conformance"]);
        assert_eq!(steps[0].command_line(), "cargo fmt --all -- --check");
        assert_eq!(
            steps[1].command_line(),
            "cargo clippy --workspace --all-targets -- -D warnings"
        );
        assert_eq!(steps[2].command_line(), "cargo test --workspace");
        assert_eq!(
            steps[3].command_line(),
            "cargo run --quiet -p kiln-conformance -- all"
        );
    }

    #[test]
    fn steps_run_in_order_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let log_s = log.to_str().unwrap().to_string();
        // `sh -c` steps that append their name to a log file.
        let step = |name: &'static str, code: i32| {
            let script = format!("echo {name} >> '{log_s}'; exit {code}");
            Step::new(name, "sh", &["-c", &script])
        };
        run(dir.path(), &[step("one", 0), step("two", 0)]).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");

        std::fs::remove_file(&log).unwrap();
        let err = run(dir.path(), &[step("a", 0), step("b", 3), step("c", 0)]).unwrap_err();
        assert!(err.to_string().starts_with("step 'b' failed"), "{err}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n");

        let missing = Step::new("nope", "kiln-xtask-no-such-program", &[]);
        let err = run(dir.path(), &[missing]).unwrap_err();
        assert!(err.to_string().contains("step 'nope'"), "{err}");
    }
}
