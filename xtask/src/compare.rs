//! `cargo xtask compare`: kiln beside PyTorch (eager, CUDA graph, torch.compile) on the zoo.
//!
//! The GPU machine has no cargo, so this command does not time anything itself. It writes
//! `target/device/compare.sh` (`cargo xtask device-bundle` writes one with the defaults too),
//! which runs there from the unpacked bundle inside the repository tree:
//! 1. exports the zoo with `fixtures/export_zoo.py` (legacy exporter) unless already there,
//! 2. per model, precision and batch: `kiln build` (profile fixed at that batch, shapes from
//!    `kiln inspect --json`) and `kiln bench ENGINE --batch B --no-transfers --cuda-graph
//!    --export-json` (CUDA-graph replay, as PyTorch's CUDA-graph column),
//! 3. `benches/python/torch_compare.py` on the same models, batches and precisions,
//! 4. `benches/python/compare_merge.py` into `compare.md` and `compare.png` in `$OUT/compare`
//!    (or `target/compare/` when `$OUT` is not set).
//!
//! `cargo xtask compare --merge DIR` runs step 4 here on results brought back from the GPU
//! machine (`DIR` holds the `kiln_*.json` and `torch.json` files). `--run` runs the script on
//! this machine when it has a GPU (it says why not otherwise).
//!
//! What works where: the script generation and the merge run anywhere (the merge is tested here
//! on synthetic files when python3 is present); the script's steps 1-3 need the GPU machine and
//! have not run on this CPU-only machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The zoo models `fixtures/export_zoo.py` knows.
const ZOO: [&str; 4] = ["resnet50", "mobilenet_v2", "vit_b_16", "bert_base"];
/// Precisions both kiln and torch_compare.py run.
const PRECISIONS: [&str; 3] = ["fp32", "fp16", "bf16"];

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Comma-separated zoo models (resnet50, mobilenet_v2, vit_b_16, bert_base).
    #[arg(long, default_value = "resnet50,bert_base")]
    pub models: String,
    /// Comma-separated batch sizes.
    #[arg(long, default_value = "1,8,32,128")]
    pub batches: String,
    /// Comma-separated precisions (fp32, fp16, bf16).
    #[arg(long, default_value = "fp16")]
    pub precisions: String,
    /// Merge the results in this folder (compare.sh's `raw/`) into --out instead.
    #[arg(long)]
    pub merge: Option<PathBuf>,
    /// Where --merge writes compare.md and compare.png.
    #[arg(long, default_value = "target/compare")]
    pub out: PathBuf,
    /// Also run the script here (needs a GPU, python3 with torch, and the bundle's kiln).
    #[arg(long)]
    pub run: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            models: "resnet50,bert_base".into(),
            batches: "1,8,32,128".into(),
            precisions: "fp16".into(),
            merge: None,
            out: PathBuf::from("target/compare"),
            run: false,
        }
    }
}

/// The checked lists: (models, batches, precisions).
pub fn lists(args: &Args) -> Result<(Vec<String>, Vec<usize>, Vec<String>)> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|x| x.trim().to_ascii_lowercase())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let models = split(&args.models);
    if let Some(m) = models.iter().find(|m| !ZOO.contains(&m.as_str())) {
        bail!("unknown zoo model '{m}' (one of {})", ZOO.join(", "));
    }
    let precisions = split(&args.precisions);
    if let Some(p) = precisions
        .iter()
        .find(|p| !PRECISIONS.contains(&p.as_str()))
    {
        bail!("unknown precision '{p}' (one of {})", PRECISIONS.join(", "));
    }
    let batches = split(&args.batches)
        .iter()
        .map(|b| match b.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("'{b}' in --batches is not a batch size (1, 2, ...)"),
        })
        .collect::<Result<Vec<_>>>()?;
    if models.is_empty() || batches.is_empty() || precisions.is_empty() {
        bail!("--models, --batches and --precisions each need at least one value");
    }
    Ok((models, batches, precisions))
}

/// compare.sh for these lists (checked by [`lists`] first: they go into the script as words).
pub fn script(args: &Args) -> Result<String> {
    let (models, batches, precisions) = lists(args)?;
    let batches: Vec<String> = batches.iter().map(usize::to_string).collect();
    Ok(format!(
        r#"#!/usr/bin/env bash
# Made by `cargo xtask compare`: kiln against PyTorch (eager, CUDA graph, torch.compile) on the
# zoo, on the GPU machine. Runs from the device bundle unpacked in <repo>/target/device.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export LD_LIBRARY_PATH="${{LD_LIBRARY_PATH:-}}:/usr/local/cuda/lib64"
MODELS="${{MODELS:-{models}}}"
BATCHES="${{BATCHES:-{batches}}}"
PRECISIONS="${{PRECISIONS:-{precisions}}}"
out="${{OUT:-$repo/target}}/compare"; raw="$out/raw"; mkdir -p "$raw"
zoo="${{KILN_ZOO_DIR:-/tmp/kiln-zoo}}"
kiln="$here/bin/kiln"
if [ -f "$here/font.ttf" ]; then export KILN_PLOT_FONT="$here/font.ttf"; fi
py="$repo/benches/python"
if ! nvidia-smi -L; then echo "compare: no CUDA device (nvidia-smi lists none); nothing measured"; exit 1; fi
if [ ! -x "$kiln" ]; then echo "compare: $kiln is missing: run cargo xtask device-bundle first"; exit 1; fi
failed=0
for m in ${{MODELS//,/ }}; do
  if [ ! -f "$zoo/${{m}}_legacy.onnx" ]; then
    echo "==> export $m"
    python3 "$repo/fixtures/export_zoo.py" "$zoo" --only "$m" --exporters legacy > "$raw/export_$m.log" 2>&1 \
      || {{ echo "compare: exporting $m failed (see $raw/export_$m.log)"; failed=$((failed+1)); continue; }}
  fi
  onnx="$zoo/${{m}}_legacy.onnx"
  "$kiln" inspect --json "$onnx" > "$raw/inspect_$m.json" || {{ failed=$((failed+1)); continue; }}
  for p in ${{PRECISIONS//,/ }}; do
    for b in ${{BATCHES//,/ }}; do
      tag="${{m}}_${{p}}_b$b"; eng="/tmp/kiln-compare-$tag.kiln"
      echo "==> kiln $tag"
      shapes=$(python3 "$py/compare_merge.py" shapes "$raw/inspect_$m.json" "$b") || {{ failed=$((failed+1)); continue; }}
      # shellcheck disable=SC2086 # the shapes are words without spaces
      if ! "$kiln" build "$onnx" -o "$eng" --$p $shapes > "$raw/build_$tag.log" 2>&1; then
        echo "compare: kiln build $tag failed (see $raw/build_$tag.log)"; failed=$((failed+1)); continue
      fi
      if ! "$kiln" bench "$eng" --batch "$b" --no-transfers --cuda-graph --export-json "$raw/kiln_$tag.json" > "$raw/bench_$tag.log" 2>&1; then
        echo "compare: kiln bench $tag failed (see $raw/bench_$tag.log)"; failed=$((failed+1))
      fi
      grep -iE "throughput|compute" "$raw/bench_$tag.log" | head -3
      rm -f "$eng"
    done
  done
done
echo "==> torch"
python3 "$py/torch_compare.py" "$raw/torch.json" --models "$MODELS" --batches "$BATCHES" --precisions "$PRECISIONS" 2>&1 | tee "$raw/torch.log" \
  || failed=$((failed+1))
python3 "$py/compare_merge.py" merge "$raw" "$out" || failed=$((failed+1))
echo "compare: $failed step(s) failed; results in $out"
exit $failed
"#,
        models = models.join(","),
        precisions = precisions.join(","),
        batches = batches.join(",")
    ))
}

/// Writes compare.sh into `dir` (made executable).
pub fn write_script(dir: &Path, args: &Args) -> Result<PathBuf> {
    let path = dir.join("compare.sh");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(&path, script(args)?).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    Ok(path)
}

/// Runs the merge script on `raw` into `out`.
pub fn merge(root: &Path, raw: &Path, out: &Path) -> Result<()> {
    if !raw.is_dir() {
        bail!(
            "{} is not a folder of compare results (kiln_*.json, torch.json)",
            raw.display()
        );
    }
    let script = root.join("benches/python/compare_merge.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg("merge")
        .arg(raw)
        .arg(out)
        .status()
        .context("starting python3 (the merge step needs it)")?;
    if !status.success() {
        bail!("{} merge failed ({status})", script.display());
    }
    Ok(())
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    if let Some(raw) = &args.merge {
        return merge(root, &abs(raw), &abs(&args.out));
    }
    let path = write_script(&root.join("target/device"), args)?;
    println!("compare: wrote {}", path.display());
    if !args.run {
        println!(
            "run it on the GPU machine with the device bundle (cargo xtask device-bundle first): \
             `bash target/device/compare.sh` (results in $OUT/compare, or target/compare); \
             bring $OUT/compare/raw back and `cargo xtask compare --merge DIR` redraws the table"
        );
        return Ok(());
    }
    if let Err(why) = crate::engines::probe_gpu() {
        bail!("no CUDA device: compare times kiln and PyTorch on a GPU ({why}); nothing measured");
    }
    let status = Command::new("bash")
        .arg(&path)
        .status()
        .context("starting bash")?;
    if !status.success() {
        bail!("compare.sh failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checked_before_they_reach_the_script() {
        let a = Args {
            models: "resnet50, bert_base".into(),
            batches: "1,8,32".into(),
            ..Args::default()
        };
        let (m, b, p) = lists(&a).unwrap();
        assert_eq!(
            (m.len(), b, p),
            (2, vec![1, 8, 32], vec!["fp16".to_string()])
        );
        let bad = |f: fn(&mut Args)| {
            let mut a = Args::default();
            f(&mut a);
            lists(&a).unwrap_err().to_string()
        };
        assert!(bad(|a| a.models = "resnet50;rm -rf /".into()).contains("unknown zoo model"));
        assert!(bad(|a| a.batches = "0".into()).contains("not a batch size"));
        assert!(bad(|a| a.batches = "$(x)".into()).contains("not a batch size"));
        assert!(bad(|a| a.precisions = "int8".into()).contains("unknown precision"));
    }

    #[test]
    fn the_script_runs_kiln_torch_and_the_merge_on_the_same_lists() {
        let a = Args {
            models: "bert_base".into(),
            batches: "2,64".into(),
            precisions: "fp32,fp16".into(),
            ..Args::default()
        };
        let s = script(&a).unwrap();
        assert!(s.contains("MODELS=\"${MODELS:-bert_base}\""), "{s}");
        assert!(s.contains("BATCHES=\"${BATCHES:-2,64}\""));
        assert!(s.contains("PRECISIONS=\"${PRECISIONS:-fp32,fp16}\""));
        assert!(s.contains(
            "\"$kiln\" bench \"$eng\" --batch \"$b\" --no-transfers --cuda-graph --export-json"
        ));
        assert!(s.contains("torch_compare.py\" \"$raw/torch.json\""));
        assert!(s.contains("compare_merge.py\" merge \"$raw\" \"$out\""));
        assert!(s.contains("exit $failed"));
        let dir = tempfile::tempdir().unwrap();
        let p = write_script(dir.path(), &a).unwrap();
        assert_eq!(fs::read_to_string(p).unwrap(), s);
    }

    /// xorshift numbers in [lo, hi), seeded from the clock: the merge must compute, not echo.
    fn uniform(state: &mut u64, lo: f64, hi: f64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        lo + (hi - lo) * ((*state >> 11) as f64 / (1u64 << 53) as f64)
    }

    #[test]
    fn the_merge_writes_the_table_and_plot_from_synthetic_results() {
        let has = |code: &str| {
            Command::new("python3")
                .args(["-c", code])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !has("pass") {
            eprintln!("skipped: python3 is not available here; the compare merge is not tested");
            return;
        }
        let matplotlib = has("import matplotlib");
        let root = crate::workspace_root();
        let dir = tempfile::tempdir().unwrap();
        let (raw, out) = (dir.path().join("raw"), dir.path().join("out"));
        fs::create_dir_all(&raw).unwrap();
        let mut rng = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
            | 1;
        let mut torch_rows = Vec::new();
        let mut expect = Vec::new();
        for model in ["resnet50", "bert_base"] {
            for batch in [1usize, 8, 32] {
                let kiln_ms = uniform(&mut rng, 0.2, 20.0);
                let host_ms = kiln_ms + uniform(&mut rng, 0.01, 0.5);
                let kiln = serde_json::json!({
                    "model": format!("/tmp/zoo/{model}_legacy.onnx"), "batch": batch,
                    "precision": "fp16", "device": "NVIDIA H100 80GB HBM3",
                    "throughput_qps": 1e3 / host_ms,
                    "throughput_items_per_s": batch as f64 * 1e3 / host_ms,
                    "gpu_compute_ms": {"min": kiln_ms * 0.9, "median": kiln_ms, "p99": kiln_ms * 1.2},
                    "host_latency_ms": {"median": host_ms},
                });
                fs::write(
                    raw.join(format!("kiln_{model}_fp16_b{batch}.json")),
                    serde_json::to_vec(&kiln).unwrap(),
                )
                .unwrap();
                let eager = uniform(&mut rng, 0.2, 40.0);
                let graph = uniform(&mut rng, 0.2, 40.0);
                // bert_base's compile "fails": the row must say so and use the other two.
                let compile = (model == "resnet50").then(|| uniform(&mut rng, 0.2, 40.0));
                let best = compile.map_or(eager.min(graph), |c| c.min(eager).min(graph));
                torch_rows.push(serde_json::json!({
                    "model": model, "precision": "fp16", "batch": batch,
                    "eager": {"median_ms": eager, "p90_ms": eager * 1.1, "min_ms": eager * 0.9, "runs": 50},
                    "cuda_graph": {"median_ms": graph},
                    "compile": match compile {
                        Some(c) => serde_json::json!({"median_ms": c}),
                        None => serde_json::json!({"error": "BackendCompilerFailed: synthetic"}),
                    },
                }));
                expect.push((model, batch, kiln_ms, eager, best / kiln_ms));
            }
        }
        let torch = serde_json::json!({"device": "NVIDIA H100 80GB HBM3", "rows": torch_rows});
        fs::write(raw.join("torch.json"), serde_json::to_vec(&torch).unwrap()).unwrap();
        merge(&root, &raw, &out).unwrap();
        let md = fs::read_to_string(out.join("compare.md")).unwrap();
        for (model, batch, kiln_ms, eager, speedup) in &expect {
            let row = md
                .lines()
                .find(|l| l.starts_with(&format!("| {model} | fp16 | {batch} |")))
                .unwrap_or_else(|| panic!("no row for {model} b{batch} in\n{md}"));
            assert!(row.contains(&format!("| {kiln_ms:.3} |")), "{row}");
            assert!(row.contains(&format!("| {eager:.3} |")), "{row}");
            assert!(
                row.ends_with(&format!("| {speedup:.2} |")),
                "{row} vs {speedup}"
            );
        }
        assert!(
            md.contains("bert_base fp16 b8: torch.compile: BackendCompilerFailed"),
            "{md}"
        );
        let merged: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("compare.json")).unwrap()).unwrap();
        assert_eq!(merged["rows"].as_array().unwrap().len(), expect.len());
        if matplotlib {
            let png = fs::read(out.join("compare.png")).unwrap();
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "{}",
                png.len()
            );
        } else {
            eprintln!("skipped: matplotlib is not installed; compare.png is not checked");
            assert!(!out.join("compare.png").exists());
        }
    }
}
