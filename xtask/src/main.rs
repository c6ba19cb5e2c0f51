//! `cargo xtask <command>`: the project's task runner (the alias is in .cargo/config.toml).
//!
//! - `test`: formatting, clippy and the whole workspace's tests; what CI runs (`.ci/run`).
//! - `build-engines`: build the engines of the fixtures (needs kiln-engine, issue 5, and a GPU).
//! - `conformance`: the ONNX backend test data through the loader and kiln-reference.
//! - `fuzz`: the cargo-fuzz targets in fuzz/.
//! - `device-bundle`: GPU tests, benches and the CLI, built and packed for the GPU machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bundle;
mod fuzz;
mod pending;
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
    /// Build the fixtures' engines (needs the kiln-engine crate, issue 5, and a CUDA GPU).
    BuildEngines,
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

/// The workspace root: the folder above this package.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Command::Test => steps::run(&root, &steps::test_steps()),
        Command::BuildEngines => pending::build_engines(&root),
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
