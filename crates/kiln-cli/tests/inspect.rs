//! End-to-end tests of `kiln inspect`: the built binary on every committed fixture (cross-checked
//! against fixtures/manifest.json when it exists) and on hostile inputs, which must end in a
//! message and exit code 1, never a panic or a signal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the kiln binary runs")
}

fn inspect(path: &Path, extra: &[&str]) -> Output {
    let p = path.to_str().expect("test paths are UTF-8");
    let mut args = vec!["inspect", p];
    args.extend_from_slice(extra);
    kiln(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Asserts a clean failure: exit code 1 (not 101 for a panic, not a signal), a message on
/// stderr that starts with `error:`, nothing on stdout.
fn assert_clean_failure(out: &Output, what: &str) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{what}: kiln panicked:\n{err}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit code 1, got {:?}; stderr:\n{err}",
        out.status
    );
    assert!(err.starts_with("error: "), "{what}: stderr:\n{err}");
    assert!(
        out.stdout.is_empty(),
        "{what}: stdout should be empty:\n{}",
        text(&out.stdout)
    );
}

/// A run that may succeed or fail, but only cleanly.
fn assert_no_crash(out: &Output, what: &str) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{what}: kiln panicked:\n{err}");
    match out.status.code() {
        Some(0) => {}
        Some(1) => assert!(err.starts_with("error: "), "{what}: stderr:\n{err}"),
        other => panic!("{what}: exit {other:?} (panic or signal); stderr:\n{err}"),
    }
}

fn inspect_json(path: &Path) -> Value {
    let out = inspect(path, &["--json"]);
    assert!(
        out.status.success(),
        "{}: inspect --json failed:\n{}",
        path.display(),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: --json is not JSON ({e}):\n{}",
            path.display(),
            text(&out.stdout)
        )
    })
}

#[test]
fn every_fixture_inspects_as_text_and_json() {
    let all = fixtures();
    assert!(
        !all.is_empty(),
        "no *.onnx in {}: the fixtures are committed (fixtures/README.md)",
        fixtures_dir().display()
    );
    for f in &all {
        let out = inspect(f, &[]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{}: inspect failed:\n{}",
            f.display(),
            text(&out.stderr)
        );
        for label in [
            "file:",
            "IR version:",
            "opsets:",
            "inputs (",
            "outputs (",
            "parameters:",
        ] {
            assert!(
                stdout.contains(label),
                "{}: no '{label}' in:\n{stdout}",
                f.display()
            );
        }

        let v = inspect_json(f);
        for field in [
            "file",
            "ir_version",
            "producer",
            "opsets",
            "inputs",
            "outputs",
            "op_histogram",
            "node_count",
            "parameters",
            "unsupported",
            "constant_values",
        ] {
            assert!(
                v.get(field).is_some(),
                "{}: no '{field}' in {v}",
                f.display()
            );
        }
        let hist = v["op_histogram"]
            .as_object()
            .expect("op_histogram is an object");
        let total: u64 = hist.values().map(|n| n.as_u64().expect("counts")).sum();
        assert_eq!(
            Some(total),
            v["node_count"].as_u64(),
            "{}: histogram and node count disagree",
            f.display()
        );
        let params = &v["parameters"];
        assert!(
            params["bytes"].as_u64() >= params["count"].as_u64(),
            "{}: fewer bytes than parameters: {params}",
            f.display()
        );
        assert!(!v["opsets"].as_array().expect("opsets").is_empty());

        let verbose = inspect(f, &["-v"]);
        assert!(verbose.status.success());
        assert!(text(&verbose.stdout).contains("nodes (topological order):"));
    }
}

// ---- fixtures/manifest.json cross-check ---------------------------------------------------
//
// fixtures/export.py writes the manifest with the `onnx` Python package, so it is an
// independent reading of the same files. Format (fixtures/README.md): `models` is a list of
// entries with `file`, `ir_version`, `producer`, `opsets` ({domain: version}), `inputs` and
// `outputs` ([{name, dtype as an ONNX name such as FLOAT, shape}]), `node_count`,
// `op_histogram` and `parameters` ({count, bytes}).

fn norm_domain(d: &str) -> &str {
    if d == "ai.onnx" { "" } else { d }
}

/// Opsets as sorted `(domain, version)`, from the manifest's map or kiln's list.
fn opset_list(v: &Value) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = match v {
        Value::Array(items) => items
            .iter()
            .map(|o| {
                (
                    norm_domain(o["domain"].as_str().expect("opset domain")).to_string(),
                    o["version"].as_i64().expect("opset version"),
                )
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    norm_domain(k).to_string(),
                    v.as_i64().expect("opset version"),
                )
            })
            .collect(),
        _ => panic!("opsets: unexpected {v}"),
    };
    out.sort();
    out
}

/// The manifest's inputs or outputs as kiln's JSON writes them: ONNX type names (`FLOAT`)
/// become kiln's (`f32`); a value that is not a tensor has no dtype and no shape.
fn as_kiln_values(manifest_values: &Value) -> Value {
    let values = manifest_values.as_array().expect("a list of values");
    Value::Array(
        values
            .iter()
            .map(|v| {
                let dtype = v["dtype"].as_str().map(|name| {
                    name.parse::<kiln_core::DataType>()
                        .unwrap_or_else(|e| panic!("manifest dtype {name}: {e}"))
                        .name()
                        .to_string()
                });
                serde_json::json!({
                    "name": v["name"],
                    "dtype": dtype,
                    "shape": v.get("shape").cloned().unwrap_or(Value::Null),
                })
            })
            .collect(),
    )
}

/// True when kiln's `have` says everything the manifest's `want` says (a `null` in `want` is
/// open): same name, same dtype if known, same rank and fixed or named dims if known.
fn refines(have: &Value, want: &Value) -> bool {
    let open_or_eq = |w: &Value, h: &Value| w.is_null() || w == h;
    have["name"] == want["name"]
        && open_or_eq(&want["dtype"], &have["dtype"])
        && match (&want["shape"], &have["shape"]) {
            (Value::Null, _) => true,
            (Value::Array(w), Value::Array(h)) => {
                w.len() == h.len() && w.iter().zip(h).all(|(w, h)| open_or_eq(w, h))
            }
            _ => false,
        }
}

#[test]
fn fixtures_agree_with_the_manifest() {
    let path = fixtures_dir().join("manifest.json");
    let Ok(raw) = std::fs::read_to_string(&path) else {
        // Written together with the fixtures; every_fixture_inspects_as_text_and_json fails
        // when those are missing.
        eprintln!("no {}: nothing to cross-check", path.display());
        return;
    };
    let manifest: Value = serde_json::from_str(&raw).expect("manifest.json is JSON");
    let entries = manifest["models"]
        .as_array()
        .expect("manifest.json: models");
    let files = fixtures();
    for entry in entries {
        let name = entry["file"].as_str().expect("manifest entry: file");
        let f = files
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("manifest.json lists {name}, which is not in fixtures/"));
        let got = inspect_json(f);
        let what = f.display();
        for key in ["ir_version", "producer", "node_count", "op_histogram"] {
            assert_eq!(entry[key], got[key], "{what}: {key}");
        }
        assert_eq!(
            opset_list(&entry["opsets"]),
            opset_list(&got["opsets"]),
            "{what}: opsets"
        );
        assert_eq!(
            as_kiln_values(&entry["inputs"]),
            got["inputs"],
            "{what}: inputs"
        );
        // Shape inference may fill in what the file leaves open on outputs, never contradict it.
        let want = as_kiln_values(&entry["outputs"]);
        let have = got["outputs"].as_array().expect("outputs");
        assert_eq!(
            want.as_array().map(Vec::len),
            Some(have.len()),
            "{what}: outputs"
        );
        for (w, h) in want.as_array().into_iter().flatten().zip(have) {
            assert!(
                refines(h, w),
                "{what}: output {h} does not agree with the file's {w}"
            );
        }
        assert_eq!(
            entry["parameters"]["count"], got["parameters"]["count"],
            "{what}: parameter count"
        );
        assert_eq!(
            entry["parameters"]["bytes"], got["parameters"]["bytes"],
            "{what}: parameter bytes"
        );
    }
    let unlisted: Vec<_> = files
        .iter()
        .filter(|f| {
            !entries.iter().any(|e| {
                f.file_name()
                    .is_some_and(|n| e["file"].as_str() == n.to_str())
            })
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "fixtures missing from manifest.json: {unlisted:?}"
    );
}

// ---- hostile inputs ---------------------------------------------------------------------

#[test]
fn missing_path_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model.onnx");
    let out = inspect(&missing, &[]);
    assert_clean_failure(&out, "missing path");
    assert!(text(&out.stderr).contains("no-such-model.onnx"));
    assert_clean_failure(&inspect(&missing, &["--json"]), "missing path, --json");
}

#[test]
fn directory_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_clean_failure(&inspect(dir.path(), &[]), "a directory");
}

#[test]
fn empty_file_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.onnx");
    std::fs::write(&p, b"").unwrap();
    let out = inspect(&p, &[]);
    assert_clean_failure(&out, "empty file");
    assert!(text(&out.stderr).contains("empty.onnx"));
}

/// Deterministic pseudo-random bytes (xorshift), so that a failure reproduces.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn random_bytes_are_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, len) in [(1, 1), (2, 16), (3, 1024), (4, 64 * 1024)] {
        let p = dir.path().join(format!("noise-{seed}.onnx"));
        std::fs::write(&p, noise(seed, len)).unwrap();
        assert_clean_failure(&inspect(&p, &[]), &format!("{len} random bytes"));
    }
}

#[test]
fn protobuf_that_is_not_a_model_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    // A ModelProto with ir_version = 7 and nothing else: no graph, no opsets.
    let p = dir.path().join("no-graph.onnx");
    std::fs::write(&p, [0x08, 0x07]).unwrap();
    assert_clean_failure(&inspect(&p, &[]), "model without a graph");
}

#[test]
fn deeply_nested_groups_are_a_clean_error() {
    // Start-group tags nested 200,000 deep: the protobuf 3.4 skip-group recursion would
    // overflow the stack; the loader's pre-scan must reject them first.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("groups.onnx");
    std::fs::write(&p, vec![0x0b_u8; 200_000]).unwrap();
    assert_clean_failure(&inspect(&p, &[]), "nested groups");
    // The same inside a length-delimited field (graph, field 7) at the top level.
    let mut bytes = vec![0x3a];
    let body = vec![0x0b_u8; 100_000];
    let mut len = body.len();
    while len >= 0x80 {
        bytes.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(&body);
    let p = dir.path().join("groups-in-graph.onnx");
    std::fs::write(&p, bytes).unwrap();
    assert_clean_failure(&inspect(&p, &[]), "nested groups inside the graph field");
}

#[test]
fn truncated_fixtures_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    for f in fixtures() {
        let bytes = std::fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        // Losing the last byte always cuts a field short: that must be an error.
        let p = dir.path().join(format!("minus1-{name}"));
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert_clean_failure(&inspect(&p, &[]), &format!("{name} minus its last byte"));
        // Other cuts may land on a field boundary and still decode; they must not crash.
        for cut in [1, 2, bytes.len() / 3, bytes.len() / 2, bytes.len() * 9 / 10] {
            let p = dir.path().join(format!("cut{cut}-{name}"));
            std::fs::write(&p, &bytes[..cut.min(bytes.len())]).unwrap();
            assert_no_crash(&inspect(&p, &[]), &format!("{name} cut to {cut} bytes"));
        }
    }
}

// ---- the rest of the command line --------------------------------------------------------

#[test]
fn unknown_flags_are_usage_errors_naming_the_flag() {
    for cmd in ["build", "bench", "compare", "run"] {
        let out = kiln(&[cmd, "model.onnx", "--no-such-flag"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        let err = text(&out.stderr);
        assert!(err.contains("--no-such-flag"), "{cmd}: {err}");
    }
}

#[test]
fn help_and_version_work() {
    let out = kiln(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["inspect", "build", "run", "bench", "compare"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = kiln(&["--version"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    // A usage error is clap's exit code 2, not a crash.
    assert_eq!(kiln(&["inspect"]).status.code(), Some(2));
}
