//! Static checks of `deploy/` (the Dockerfile and the KServe YAML): no container engine or
//! cluster runs here, so the image is never built and nothing is applied. `python/check_deploy.py`
//! parses both YAML files with PyYAML and cross-checks them (runtime name, model format `onnx`,
//! protocol v2, ports against the `kiln serve` flags, probes, GPU resources), parses the
//! Dockerfile's instructions (stages, `COPY --from`, exec-form ENTRYPOINT / CMD, EXPOSE), and
//! checks every `kiln serve` flag used there against `kiln serve --help` of the built binary.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{kiln_bin, python_dir, run_python, workspace_root};

#[test]
fn deploy_files_parse_and_agree_with_the_cli() {
    let out = Command::new(kiln_bin())
        .args(["serve", "--help"])
        .output()
        .expect("kiln serve --help runs");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && help.contains("--model-repository"),
        "kiln serve --help failed ({}): {help}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let help_file = dir.path().join("serve-help.txt");
    std::fs::write(&help_file, help).unwrap();
    run_python(
        &python_dir().join("check_deploy.py"),
        &[
            workspace_root().join("deploy").display().to_string(),
            "--help-file".into(),
            help_file.display().to_string(),
        ],
        Duration::from_secs(120),
    );
}
