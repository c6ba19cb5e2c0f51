//! `cargo xtask <command>`: the project's task runner (the alias is in .cargo/config.toml).
//!
//! - `test`: formatting, clippy and the whole workspace's tests; what CI runs (`.ci/run`).
//! - `build-engines`: build the engines of the fixtures (needs kiln-engine, issue 5, and a GPU).
//! - `conformance`: the ONNX node-test suite against kiln-reference (issue 3).
//! - `fuzz`: the cargo-fuzz targets in fuzz/.
//! - `device-bundle`: packing work for the GPU machine (issue 4).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Run the ONNX node-test suite against the CPU reference (comes with issue 3).
    Conformance,
    /// Fuzz a loader entry point with cargo-fuzz (needs a nightly toolchain and cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Pack a build for the GPU machine (comes with issue 4).
    DeviceBundle,
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
        Command::Conformance => pending::conformance(),
        Command::Fuzz(args) => fuzz::run(&root, &args),
        Command::DeviceBundle => pending::device_bundle(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
