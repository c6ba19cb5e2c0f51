//! `cargo xtask <command>`: the project's task runner (the alias is in .cargo/config.toml).
//!
//! - `test`: formatting, clippy and the whole workspace's tests; what CI runs (`.ci/run`).
//! - `build-engines`: the fixtures' engines for each precision into target/engines/ (needs a GPU).
//! - `compare`: kiln beside PyTorch on the zoo, as a script for the GPU machine (`compare.sh`).
//! - `conformance`: the ONNX backend test data through the loader and kiln-reference.
//! - `fuzz`: the cargo-fuzz targets in fuzz/.
//! - `device-bundle`: GPU tests, benches and the CLI, built and packed for the GPU machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bundle;
mod compare;
mod engines;
mod fuzz;
mod steps;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "kiln's task runner")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// cargo fmt --check, cargo clippy -D warnings and cargo test, for the whole workspace.
    Test,
    /// Build every model's engines (fixtures/ or --models DIR) for each precision into
    /// target/engines/ with manifest.json, through the `kiln` CLI; up-to-date ones are reused.
    /// Needs a CUDA GPU (without one it says so and fails).
    BuildEngines(engines::Args),
    /// kiln against PyTorch (eager, CUDA graph, torch.compile) on the zoo: writes
    /// target/device/compare.sh for the GPU machine, or merges its results (--merge DIR) into
    /// target/compare/compare.{md,png}.
    Compare(compare::Args),
    /// Run the ONNX backend test data through the loader and CPU reference, by allow-list;
    /// writes target/conformance/report.{json,md}.
    Conformance(ConformanceArgs),
    /// Fuzz a loader entry point with cargo-fuzz (needs a nightly toolchain and cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Build the GPU test and bench binaries and a run.sh into target/device/ for the GPU machine.
    DeviceBundle,
}

#[derive(Debug, clap::Args)]
struct ConformanceArgs {
    /// Print allow-list lines for passing tests that are not listed.
    #[arg(long)]
    propose: bool,
    /// Append those lines to crates/kiln-conformance/allowlist.txt.
    #[arg(long)]
    write_proposals: bool,
    /// Run only tests whose `suite/name` contains this text.
    #[arg(long)]
    filter: Option<String>,
}

fn conformance(root: &Path, args: &ConformanceArgs) -> anyhow::Result<()> {
    let mut argv: Vec<String> = steps::CONFORMANCE.iter().map(|s| s.to_string()).collect();
    if args.propose {
        argv.push("--propose".into());
    }
    if args.write_proposals {
        argv.push("--write-proposals".into());
    }
    if let Some(f) = &args.filter {
        argv.push("--filter".into());
        argv.push(f.clone());
    }
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    steps::run(root, &[steps::Step::cargo("conformance", &refs)])
}

/// The workspace root: `$KILN_WORKSPACE_ROOT` when set (an xtask binary carried to the GPU
/// machine, away from the checkout it was built in), else the folder above this package.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os("KILN_WORKSPACE_ROOT") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Command::Test => steps::run(&root, &steps::test_steps()),
        Command::BuildEngines(args) => engines::run(&root, &args),
        Command::Compare(args) => compare::run(&root, &args),
        Command::Conformance(args) => conformance(&root, &args),
        Command::Fuzz(args) => fuzz::run(&root, &args),
        Command::DeviceBundle => bundle::run(&root),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
