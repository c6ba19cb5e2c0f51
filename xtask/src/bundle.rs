//! `cargo xtask device-bundle`: everything the GPU machine needs, in `target/device/`.
//!
//! The GPU machine has CUDA, cuDNN and PyTorch but no Rust: kiln is built here and its
//! binaries travel. This builds the release GPU test binaries (every test target whose name is
//! `gpu`) and GPU benches (examples named `*_bench`), the `kiln` CLI, strips them, and writes
//! `run.sh`, which runs every GPU test with `KILN_GPU_REQUIRED=1` (a missing GPU is a failure
//! there), then every bench (JSON into `$OUT` when set), and prints a summary. It also carries
//! the criterion `engines` bench as `bin/criterion-engines` (run by hand with `--bench`) and
//! writes `compare.sh` (`cargo xtask compare`'s script, default lists). What is carried
//! must stay under 60 MiB: a larger bundle is also packed as `target/device.tar.xz` (xz), and
//! that must fit.

use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Largest bundle we carry to the GPU machine.
const MAX_BYTES: u64 = 60 * 1024 * 1024;

/// The executables cargo reports for `args` (`--message-format=json` artifacts).
fn build_executables(root: &Path, args: &[&str]) -> Result<Vec<(String, String, PathBuf)>> {
    let mut child = Command::new("cargo")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Some(exe) = field(&line, "\"executable\":\"") else {
            continue;
        };
        let kind = field(&line, "\"kind\":[\"").unwrap_or_default();
        let name = field(&line, "\"name\":\"").unwrap_or_default();
        // `path+file:///.../crates/kiln-cuda#0.1.0` -> `kiln-cuda`
        let package = field(&line, "\"package_id\":\"")
            .and_then(|p| {
                p.split('#')
                    .next()
                    .and_then(|p| p.rsplit('/').next())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        out.push((kind, format!("{package}/{name}"), PathBuf::from(exe)));
    }
    if !child.wait()?.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(out)
}

/// The string value after `key` in one line of cargo's JSON (paths and names hold no quotes).
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let end = line[start..].find('"')?;
    Some(line[start..start + end].to_string())
}

pub fn run(root: &Path) -> Result<()> {
    let dir = root.join("target/device");
    let bin = dir.join("bin");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(&bin)?;
    let mut picked: Vec<(String, PathBuf)> = Vec::new();
    for (kind, name, exe) in build_executables(
        root,
        &[
            "test",
            "--release",
            "--workspace",
            "--no-run",
            "--test",
            "gpu*",
        ],
    )? {
        // Every integration-test target whose name starts with `gpu` (gpu, gpu_kernels, ...).
        if let Some((package, target)) = name.split_once('/')
            && kind == "test"
            && target.starts_with("gpu")
        {
            picked.push((format!("test-{package}-{target}"), exe));
        }
    }
    for (kind, name, exe) in build_executables(
        root,
        &["build", "--release", "--workspace", "--examples", "--bins"],
    )? {
        let short = name.rsplit('/').next().unwrap_or_default().to_string();
        if (kind == "example" && short.ends_with("_bench")) || (kind == "bin" && short == "kiln") {
            picked.push((short, exe));
        }
    }
    // The criterion GPU bench (benches/benches/engines.rs): carried, not run by run.sh (it
    // takes long); run it there as `bin/criterion-engines --bench`.
    for (kind, _, exe) in build_executables(
        root,
        &[
            "bench",
            "--no-run",
            "-p",
            "kiln-benches",
            "--bench",
            "engines",
        ],
    )? {
        if kind == "bench" {
            picked.push(("criterion-engines".to_string(), exe));
        }
    }
    if picked.is_empty() {
        bail!("no GPU test or bench binaries were built");
    }
    let mut total = 0u64;
    let mut tests = Vec::new();
    let mut benches = Vec::new();
    for (name, exe) in &picked {
        let dest = bin.join(name);
        fs::copy(exe, &dest).with_context(|| format!("copying {}", exe.display()))?;
        // Stripping is best effort: a bundle with symbols still works.
        let _ = Command::new("strip").arg(&dest).status();
        total += fs::metadata(&dest)?.len();
        if name.starts_with("test-") {
            tests.push(name.clone());
        } else if name.ends_with("_bench") {
            benches.push(name.clone());
        }
    }
    fs::write(dir.join("run.sh"), run_script(&tests, &benches))?;
    // The GPU machines have no fonts: plots drawn there (`kiln bench --plot`) get their text
    // from a TTF of this machine, carried as font.ttf (the scripts point KILN_PLOT_FONT at it).
    match system_font() {
        Some(font) => {
            fs::copy(&font, dir.join("font.ttf"))
                .with_context(|| format!("copying {}", font.display()))?;
        }
        None => println!(
            "note: no TTF font on this machine: plots made on the GPU machine will have no text"
        ),
    }
    // kiln against PyTorch with the default lists (`cargo xtask compare` rewrites it).
    crate::compare::write_script(&dir, &crate::compare::Args::default())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755))?;
    }
    println!(
        "device bundle: {} ({} binaries, {:.1} MiB): {}",
        dir.display(),
        picked.len(),
        total as f64 / (1024.0 * 1024.0),
        picked
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if total <= MAX_BYTES {
        println!(
            "run it on the GPU machine: carry target/device, then `bash target/device/run.sh`"
        );
        return Ok(());
    }
    // Test binaries share most of their code: xz packs 15 of them (~125 MiB) into ~23 MiB.
    let packed = dir.with_extension("tar.xz");
    let status = Command::new("tar")
        .env("XZ_OPT", "-6 -T0")
        .arg("-cJf")
        .arg(&packed)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .context("running tar to pack the bundle")?;
    if !status.success() {
        bail!("tar could not pack {} ({status})", dir.display());
    }
    let size = fs::metadata(&packed)?.len();
    if size > MAX_BYTES {
        bail!("the bundle is {total} bytes ({size} packed), over the {MAX_BYTES}-byte limit");
    }
    println!(
        "packed: {} ({:.1} MiB). Carry target/device.tar.xz; on the GPU machine: \
         `mkdir -p target/device && tar -xJf target/device.tar.xz -C target/device && \
         bash target/device/run.sh`",
        packed.display(),
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// A TTF font of this machine for plot text: DejaVu Sans when present, else the first TTF found
/// under /usr/share/fonts.
fn system_font() -> Option<PathBuf> {
    let preferred = Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
    if preferred.is_file() {
        return Some(preferred.to_path_buf());
    }
    let mut stack = vec![PathBuf::from("/usr/share/fonts")];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ok()?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
                return Some(p);
            }
        }
    }
    None
}

/// The script that runs the bundle on the GPU machine.
fn run_script(tests: &[String], benches: &[String]) -> String {
    let mut s = String::from(
        "#!/usr/bin/env bash\n\
         # Made by `cargo xtask device-bundle`: runs kiln's GPU tests and benches on a GPU machine.\n\
         set -u\n\
         here=$(cd \"$(dirname \"$0\")\" && pwd)\n\
         export LD_LIBRARY_PATH=\"${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64\"\n\
         export KILN_GPU_REQUIRED=1\n\
         if [ -f \"$here/font.ttf\" ]; then export KILN_PLOT_FONT=\"$here/font.ttf\"; fi\n\
         # The bundle sits in <repo>/target/device: the tests find the fixtures from there.\n\
         if [ -d \"$here/../../fixtures\" ]; then export KILN_FIXTURES_DIR=\"$here/../../fixtures\"; fi\n\
         out=\"${OUT:-$here/out}\"; mkdir -p \"$out\"\n\
         nvidia-smi -L 2>/dev/null || echo 'nvidia-smi: not available'\n\
         failed=0; summary=\"\"\n",
    );
    for t in tests {
        s.push_str(&format!(
            "echo \"==> {t}\"\nif \"$here/bin/{t}\"; then summary=\"$summary\\n  {t}: ok\"; else failed=$((failed+1)); summary=\"$summary\\n  {t}: FAILED\"; fi\n"
        ));
    }
    for b in benches {
        s.push_str(&format!(
            "echo \"==> {b}\"\nif \"$here/bin/{b}\" \"$out/{b}.json\"; then summary=\"$summary\\n  {b}: ok ($out/{b}.json)\"; else failed=$((failed+1)); summary=\"$summary\\n  {b}: FAILED\"; fi\n"
        ));
    }
    s.push_str("printf \"device bundle summary:$summary\\n\"\nexit $failed\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_artifact_lines() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/kiln-cuda#0.1.0","target":{"kind":["test"],"name":"gpu"},"executable":"/x/target/release/deps/gpu-abc123"}"#;
        assert_eq!(
            field(line, "\"executable\":\"").unwrap(),
            "/x/target/release/deps/gpu-abc123"
        );
        assert_eq!(field(line, "\"kind\":[\"").unwrap(), "test");
        assert_eq!(field(line, "\"name\":\"").unwrap(), "gpu");
        assert!(field(r#"{"reason":"build-finished"}"#, "\"executable\":\"").is_none());
        assert_eq!(
            field(line, "\"package_id\":\"").unwrap(),
            "path+file:///w/crates/kiln-cuda#0.1.0"
        );
    }

    #[test]
    fn script_runs_every_test_and_bench_and_counts_failures() {
        let s = run_script(&["test-gpu".into()], &["cuda_bench".into()]);
        assert!(s.contains("KILN_GPU_REQUIRED=1"));
        assert!(s.contains("\"$here/bin/test-gpu\""));
        assert!(s.contains("\"$here/bin/cuda_bench\" \"$out/cuda_bench.json\""));
        assert!(s.contains("exit $failed"));
    }
}
