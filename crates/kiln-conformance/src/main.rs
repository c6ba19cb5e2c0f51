//! `kiln-conformance`: prepares the ONNX backend test data and runs it by allow-list.
//!
//! `cargo xtask conformance` runs `kiln-conformance all`, which:
//! 1. creates a Python venv under `target/conformance/venv` and installs the pinned onnx
//!    package (once);
//! 2. writes the node tests as files with `python/gen_node_tests.py` (once per onnx version);
//! 3. runs the suites `node`, `simple`, `pytorch-converted`, `pytorch-operator`;
//! 4. writes `target/conformance/report.json` and `report.md`, and fails if an allow-listed test
//!    fails or an allow-list entry names no test.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use kiln_conformance::allowlist::AllowList;
use kiln_conformance::case::{Case, discover};
use kiln_conformance::report::Report;

/// The onnx package whose test data is the suite.
const ONNX_VERSION: &str = "1.23.2";

#[derive(Parser)]
#[command(about = "Run the ONNX backend test data through kiln's loader and CPU reference")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prepare the data (venv, onnx package, node tests) and run every suite.
    All(RunArgs),
    /// Only prepare the data; print where it is.
    Prepare {
        #[arg(long, default_value = "target/conformance")]
        work: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Working folder: venv, generated data, reports.
    #[arg(long, default_value = "target/conformance")]
    work: PathBuf,
    /// The allow-list.
    #[arg(long, default_value = "crates/kiln-conformance/allowlist.txt")]
    allowlist: PathBuf,
    /// Run only tests whose `suite/name` contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Print allow-list lines for passing tests that are not listed.
    #[arg(long)]
    propose: bool,
    /// Append those lines to the allow-list file.
    #[arg(long)]
    write_proposals: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Prepare { work } => {
            let prepared = prepare(&work)?;
            for (name, dir) in prepared.suites {
                println!("{name}: {}", dir.display());
            }
            Ok(())
        }
        Cmd::All(args) => run(args),
    }
}

/// The venv's python, creating the venv and installing onnx when needed.
fn python(work: &Path) -> Result<PathBuf> {
    let venv = work.join("venv");
    let py = venv.join("bin").join("python");
    let stamp = venv.join(format!("onnx-{ONNX_VERSION}.installed"));
    if stamp.is_file() && py.is_file() {
        return Ok(py);
    }
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    println!(
        "conformance: creating {} and installing onnx=={ONNX_VERSION}",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (is Python 3 installed?)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("onnx=={ONNX_VERSION}"))
        .arg("numpy<3")
        .status()
        .context("running pip in the venv")?;
    if !status.success() {
        bail!("pip install onnx=={ONNX_VERSION} failed (is PyPI reachable?)");
    }
    fs::write(&stamp, b"")?;
    Ok(py)
}

/// The prepared data: suites as `(name, folder)` and the op of each node test.
struct Prepared {
    suites: Vec<(String, PathBuf)>,
    node_ops: HashMap<String, String>,
}

/// Ensures the data exists.
fn prepare(work: &Path) -> Result<Prepared> {
    let py = python(work)?;
    let node = work.join("node");
    let index = node.join("index.json");
    let fresh = fs::read_to_string(&index)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v["onnx_version"] == ONNX_VERSION && v["format"] == 2);
    let index_json = match fresh {
        Some(v) => v,
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/gen_node_tests.py");
            let status = Command::new(&py)
                .arg(&script)
                .arg(&node)
                .env("PYTHONWARNINGS", "ignore")
                .status()
                .context("running gen_node_tests.py")?;
            if !status.success() {
                bail!("{} failed", script.display());
            }
            serde_json::from_str(&fs::read_to_string(&index)?)?
        }
    };
    let wheel = PathBuf::from(
        index_json["wheel_data"]
            .as_str()
            .context("index.json has no wheel_data")?,
    );
    let mut suites = vec![("node".to_string(), node)];
    for s in ["simple", "pytorch-converted", "pytorch-operator"] {
        suites.push((s.to_string(), wheel.join(s)));
    }
    let node_ops = index_json["ops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((format!("node/{k}"), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Prepared { suites, node_ops })
}

fn run(args: RunArgs) -> Result<()> {
    let prepared = prepare(&args.work)?;
    let suites = &prepared.suites;
    let allow_text = fs::read_to_string(&args.allowlist)
        .with_context(|| format!("reading {}", args.allowlist.display()))?;
    let allow = AllowList::parse(&allow_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.allowlist.display()))?;
    let mut cases: Vec<Case> = Vec::new();
    for (name, dir) in suites {
        let found = discover(name, dir).with_context(|| format!("listing {}", dir.display()))?;
        cases.extend(found);
    }
    let all_keys: std::collections::HashSet<String> = cases.iter().map(Case::key).collect();
    let missing: Vec<String> = allow
        .entries
        .keys()
        .filter(|k| !all_keys.contains(*k))
        .cloned()
        .collect();
    if let Some(f) = &args.filter {
        cases.retain(|c| c.key().contains(f.as_str()));
    }
    println!("conformance: running {} tests", cases.len());
    // Panics inside kiln are caught per test and reported; keep their default print quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let outcomes = kiln_conformance::run_all(&cases, &allow, &prepared.node_ops);
    let _ = std::panic::take_hook();
    let report = Report::new(outcomes, missing);
    fs::write(
        args.work.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    fs::write(args.work.join("report.md"), report.markdown())?;
    let s = &report.summary;
    for o in report
        .tests
        .iter()
        .filter(|o| o.claimed && o.status == kiln_conformance::report::Status::Fail)
    {
        println!("FAILED {}: {}", o.key, o.message);
    }
    if args.propose || args.write_proposals {
        let lines = kiln_conformance::propose(&report.tests);
        for l in &lines {
            println!("propose: {l}");
        }
        if args.write_proposals && !lines.is_empty() {
            let mut text = allow_text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&lines.join("\n"));
            text.push('\n');
            fs::write(&args.allowlist, text)?;
            println!(
                "appended {} entries to {}",
                lines.len(),
                args.allowlist.display()
            );
        }
    }
    println!(
        "conformance: {} passed, {} failed (claimed {} of {} tests; {} more pass unclaimed); report: {}",
        s.claimed_passed,
        s.claimed_failed,
        s.claimed,
        s.total,
        s.not_claimed_passing,
        args.work.join("report.md").display()
    );
    if !s.missing.is_empty() && args.filter.is_none() {
        bail!(
            "{} allow-list entries name tests that do not exist (first: {}); remove them",
            s.missing.len(),
            s.missing[0]
        );
    }
    if s.claimed_failed > 0 {
        bail!("{} allow-listed conformance tests failed", s.claimed_failed);
    }
    Ok(())
}
