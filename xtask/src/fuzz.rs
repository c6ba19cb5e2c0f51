//! `cargo xtask fuzz`: cargo-fuzz on a loader entry point, for a bounded time.
//!
//! Runs `cargo +nightly fuzz run <target> <corpus> <seeds> -- -max_total_time=N` in fuzz/.
//! libFuzzer writes new inputs into the first folder only (fuzz/corpus/<target>, git-ignored),
//! so the committed seeds in fuzz/seeds stay as they are. Crashes land in fuzz/artifacts/.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to fuzz, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The fuzz target (a file in fuzz/fuzz_targets/).
    #[arg(long, default_value = "from_bytes")]
    pub target: String,
}

/// The seed folder for `target`: fuzz/seeds/<target> if it exists, else fuzz/seeds.
fn seeds_dir(fuzz: &Path, target: &str) -> Option<PathBuf> {
    [fuzz.join("seeds").join(target), fuzz.join("seeds")]
        .into_iter()
        .find(|p| p.is_dir())
}

/// The arguments after `cargo`.
pub fn fuzz_args(target: &str, corpus: &Path, seeds: Option<&Path>, seconds: u64) -> Vec<String> {
    let mut args: Vec<String> = ["+nightly", "fuzz", "run", target]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(corpus.display().to_string());
    if let Some(s) = seeds {
        args.push(s.display().to_string());
    }
    args.push("--".into());
    args.push(format!("-max_total_time={seconds}"));
    args
}

/// A `cargo` that runs outside this xtask's toolchain pin (`+nightly` decides).
fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
    c
}

fn works(mut cmd: Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let fuzz = root.join("fuzz");
    if !fuzz.join("Cargo.toml").is_file() {
        bail!("no fuzz project at {} (fuzz/Cargo.toml)", fuzz.display());
    }
    let target_file = fuzz
        .join("fuzz_targets")
        .join(format!("{}.rs", args.target));
    if !target_file.is_file() {
        bail!(
            "no fuzz target '{}' ({} does not exist)",
            args.target,
            target_file.display()
        );
    }
    let mut probe = cargo();
    probe.args(["+nightly", "--version"]);
    if !works(probe) {
        bail!(
            "cargo-fuzz needs a nightly toolchain: `rustup toolchain install nightly` \
             (sanitizer instrumentation is nightly-only)"
        );
    }
    let mut probe = cargo();
    probe.args(["+nightly", "fuzz", "--version"]);
    if !works(probe) {
        bail!("cargo-fuzz is not installed: `cargo install cargo-fuzz`");
    }
    let corpus = fuzz.join("corpus").join(&args.target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("creating the corpus folder {}", corpus.display()))?;
    let seeds = seeds_dir(&fuzz, &args.target);
    if seeds.is_none() {
        println!("xtask fuzz: no fuzz/seeds folder; starting from an empty corpus");
    }
    let argv = fuzz_args(&args.target, &corpus, seeds.as_deref(), args.seconds);
    println!("xtask fuzz: (in fuzz/) cargo {}", argv.join(" "));
    let status = cargo()
        .args(&argv)
        .current_dir(&fuzz)
        .status()
        .context("starting cargo +nightly fuzz")?;
    if !status.success() {
        bail!(
            "fuzzing '{}' failed ({status}): a crash input, if any, is in {}",
            args.target,
            fuzz.join("artifacts").join(&args.target).display()
        );
    }
    println!(
        "xtask fuzz: '{}' ran {} s without a crash; corpus in {}",
        args.target,
        args.seconds,
        corpus.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_puts_the_writable_corpus_first() {
        let a = fuzz_args(
            "from_bytes",
            Path::new("/r/fuzz/corpus/from_bytes"),
            Some(Path::new("/r/fuzz/seeds")),
            30,
        );
        assert_eq!(
            a.join(" "),
            "+nightly fuzz run from_bytes /r/fuzz/corpus/from_bytes /r/fuzz/seeds -- \
             -max_total_time=30"
        );
        let a = fuzz_args("x", Path::new("c"), None, 5);
        assert_eq!(a.join(" "), "+nightly fuzz run x c -- -max_total_time=5");
    }

    #[test]
    fn seeds_prefer_the_target_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(seeds_dir(dir.path(), "t"), None);
        std::fs::create_dir_all(dir.path().join("seeds")).unwrap();
        assert_eq!(seeds_dir(dir.path(), "t"), Some(dir.path().join("seeds")));
        std::fs::create_dir_all(dir.path().join("seeds/t")).unwrap();
        assert_eq!(seeds_dir(dir.path(), "t"), Some(dir.path().join("seeds/t")));
    }

    #[test]
    fn a_missing_fuzz_project_or_target_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            seconds: 1,
            target: "from_bytes".into(),
        };
        let e = run(dir.path(), &args).unwrap_err().to_string();
        assert!(e.contains("no fuzz project"), "{e}");
        std::fs::create_dir_all(dir.path().join("fuzz")).unwrap();
        std::fs::write(dir.path().join("fuzz/Cargo.toml"), "").unwrap();
        let e = run(dir.path(), &args).unwrap_err().to_string();
        assert!(e.contains("no fuzz target 'from_bytes'"), "{e}");
    }
}
