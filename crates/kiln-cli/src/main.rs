//! `kiln`: the command-line front end of kiln, in trtexec's vocabulary.
//!
//! `inspect` works today; `build`, `run`, `bench` and `compare` are declared so that the command
//! surface is visible, and fail with a message naming the crate (and issue) they wait for.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod bench;
mod cmd;
mod engine_source;
mod human;
mod tensors;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Turn ONNX models into GPU inference engines, and look inside them.",
    propagate_version = true
)]
struct Cli {
    /// More output: each -v raises the log level (warn, info, debug, trace) and `inspect`
    /// prints details. RUST_LOG, when set, chooses the log filter instead.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what an ONNX model holds: opsets, inputs, outputs, ops, parameters, unsupported ops.
    Inspect(cmd::inspect::Args),
    /// Build a serialised engine from an ONNX model (kiln's engine, or TensorRT when installed).
    Build(cmd::build::Args),
    /// Run a model or engine once on given or random inputs, outputs as .npy.
    Run(cmd::run::Args),
    /// Measure latency and throughput of a model or engine (trtexec-style summary).
    Bench(cmd::bench::Args),
    /// Compare an engine's outputs with the CPU reference on the same inputs.
    Compare(cmd::compare::Args),
    /// Serve a model repository over the Open Inference Protocol (HTTP and gRPC).
    Serve(cmd::serve::Args),
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    // Logs go to stderr so that stdout stays clean for reports (`--json`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Prints an error and its causes, skipping causes whose text the message already includes
/// (kiln-onnx messages embed their I/O cause).
fn report_error(err: &anyhow::Error) {
    let top = err.to_string();
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {top}");
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !top.contains(&text) {
            let _ = writeln!(stderr, "  caused by: {text}");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(&args, cli.verbose),
        Command::Build(args) => cmd::build::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Bench(args) => cmd::bench::run(&args),
        Command::Compare(args) => cmd::compare::run(&args),
        Command::Serve(args) => cmd::serve::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(&err);
            ExitCode::FAILURE
        }
    }
}
