//! Tasks whose machinery comes with later issues. Each says what is missing and fails: none of
//! them pretends to have done work.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::bail;

/// What `build-engines` needs that this machine or workspace lacks.
pub fn missing_for_engines(root: &Path, gpu: Option<String>) -> Vec<String> {
    let mut missing = Vec::new();
    if !root.join("crates/kiln-engine/Cargo.toml").is_file() {
        missing.push(
            "the kiln-engine crate (crates/kiln-engine, issue 5): the builder that turns a Graph \
             into a Plan and a serialised engine"
                .to_string(),
        );
    }
    if gpu.is_none() {
        missing.push(
            "a CUDA GPU: no /dev/nvidia0 and `nvidia-smi -L` lists none (engines are built on \
             the GPU they run on)"
                .to_string(),
        );
    }
    missing
}

/// The first GPU `nvidia-smi -L` lists, if the driver is there. Probed at run time, never at
/// build time, so that CI and containers without a GPU build the same code.
fn probe_gpu() -> Option<String> {
    if !Path::new("/dev/nvidia0").exists() {
        return None;
    }
    let out = Command::new("nvidia-smi")
        .arg("-L")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?.trim();
    (out.status.success() && !first.is_empty()).then(|| first.to_string())
}

pub fn build_engines(root: &Path) -> anyhow::Result<()> {
    let gpu = probe_gpu();
    if let Some(g) = &gpu {
        println!("xtask build-engines: found {g}");
    }
    let mut missing = missing_for_engines(root, gpu);
    if missing.is_empty() {
        // Both exist, but the build step itself is written with issue 5.
        missing.push(
            "the engine build step of this command (written with kiln-engine, issue 5)".into(),
        );
    }
    let list: String = missing.iter().map(|m| format!("\n  - {m}")).collect();
    bail!("build-engines cannot build engines yet; missing:{list}\nNo engine was built.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_engine_crate_and_the_gpu_when_both_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let m = missing_for_engines(dir.path(), None);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("kiln-engine") && m[0].contains("issue 5"));
        assert!(m[1].contains("CUDA GPU"));

        std::fs::create_dir_all(dir.path().join("crates/kiln-engine")).unwrap();
        std::fs::write(dir.path().join("crates/kiln-engine/Cargo.toml"), "").unwrap();
        let m = missing_for_engines(dir.path(), Some("GPU 0: test".into()));
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn pending_tasks_fail_with_their_issue() {
        let dir = tempfile::tempdir().unwrap();
        let e = build_engines(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("kiln-engine") && e.contains("No engine was built"),
            "{e}"
        );
    }
}
