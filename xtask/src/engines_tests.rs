//! Unit tests of build-engines: the key, the manifest, the reuse decision, profiles and the
//! no-GPU path (a fake probe result).

use super::*;

fn gpu(name: &str) -> GpuInfo {
    GpuInfo {
        name: name.into(),
        driver: "580.1".into(),
        libraries: [("cudnn".to_string(), "libcudnn.so.9.1.0".to_string())].into(),
    }
}

fn random_bytes(rng: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            (*rng >> 24) as u8
        })
        .collect()
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        | 1
}

fn profile() -> Vec<ProfileInput> {
    vec![ProfileInput {
        name: "x".into(),
        min: vec![1, 3],
        opt: vec![8, 3],
        max: vec![8, 3],
    }]
}

#[test]
fn the_key_changes_with_model_bytes_precision_gpu_and_versions() {
    let mut rng = seed();
    let mut model = random_bytes(&mut rng, 4096);
    let (g, p) = (gpu("NVIDIA H100 80GB HBM3"), profile());
    let h = fnv128(&model);
    let base = KeyParts {
        model_hash: &h,
        precision: "fp16",
        profile: &p,
        gpu: &g,
        kiln_version: "kiln 0.1.0",
        engine_tree: "abc",
    };
    let key = engine_key(&base);
    assert_eq!(key, engine_key(&base.clone()), "the key is deterministic");
    assert_eq!(key.len(), 32);

    let i = (rng as usize) % model.len();
    model[i] ^= 1 << (rng % 8);
    let h2 = fnv128(&model);
    assert_ne!(h, h2, "one flipped bit changes the model hash");
    assert_ne!(
        key,
        engine_key(&KeyParts {
            model_hash: &h2,
            ..base.clone()
        })
    );
    assert_ne!(
        key,
        engine_key(&KeyParts {
            precision: "fp32",
            ..base.clone()
        })
    );
    let g2 = gpu("NVIDIA H200");
    assert_ne!(
        key,
        engine_key(&KeyParts {
            gpu: &g2,
            ..base.clone()
        })
    );
    let mut g3 = g.clone();
    g3.libraries
        .insert("cudnn".into(), "libcudnn.so.9.2.0".into());
    assert_ne!(
        key,
        engine_key(&KeyParts {
            gpu: &g3,
            ..base.clone()
        })
    );
    let mut p2 = p.clone();
    p2[0].max[0] = 16;
    assert_ne!(
        key,
        engine_key(&KeyParts {
            profile: &p2,
            ..base.clone()
        })
    );
    assert_ne!(
        key,
        engine_key(&KeyParts {
            kiln_version: "kiln 0.2.0",
            ..base.clone()
        })
    );
    assert_ne!(
        key,
        engine_key(&KeyParts {
            engine_tree: "abd",
            ..base
        })
    );
}

fn entry(key: &str, bytes: u64) -> Entry {
    Entry {
        model: "fixtures/cnn_legacy.onnx".into(),
        model_hash: fnv128(b"m"),
        precision: "fp16".into(),
        profile: profile(),
        engine: "cnn_legacy.fp16.kiln".into(),
        bytes,
        build_s: 1.25,
        gpu: gpu("NVIDIA H100"),
        kiln_version: "kiln 0.1.0".into(),
        key: key.into(),
        report: serde_json::json!({"plan_bytes": bytes, "gpu": "NVIDIA H100"}),
    }
}

#[test]
fn the_manifest_round_trips_and_replaces_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    assert_eq!(Manifest::read(&path).unwrap(), Manifest::default());
    let mut m = Manifest::default();
    let n = (seed() % 1000) + 1;
    m.upsert(entry("k1", n));
    let mut other = entry("k2", n + 1);
    other.precision = "fp32".into();
    m.upsert(other);
    m.upsert(entry("k3", n + 2));
    assert_eq!(m.engines.len(), 2, "same model and precision replaces");
    m.write(&path).unwrap();
    let back = Manifest::read(&path).unwrap();
    assert_eq!(back, m);
    assert!(!path.with_extension("json.tmp").exists());
    fs::write(&path, b"{ not json").unwrap();
    let e = Manifest::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("manifest.json") && e.contains("delete it"),
        "{e}"
    );
}

#[test]
fn reuses_only_a_matching_key_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = seed();
    let n = 100 + (rng % 500) as usize;
    let data = random_bytes(&mut rng, n);
    let e = entry("key", data.len() as u64);
    assert_eq!(
        rebuild_reason(None, "key", dir.path()).unwrap(),
        "not built yet"
    );
    assert!(
        rebuild_reason(Some(&e), "key", dir.path())
            .unwrap()
            .contains("missing")
    );
    fs::write(dir.path().join(&e.engine), &data).unwrap();
    assert_eq!(rebuild_reason(Some(&e), "key", dir.path()), None);
    assert!(
        rebuild_reason(Some(&e), "other", dir.path())
            .unwrap()
            .contains("changed")
    );
    fs::write(dir.path().join(&e.engine), &data[1..]).unwrap();
    assert!(
        rebuild_reason(Some(&e), "key", dir.path())
            .unwrap()
            .contains("bytes")
    );
}

fn args() -> Args {
    Args {
        models: None,
        precisions: "fp32,fp16".into(),
        out: PathBuf::from("target/engines"),
        max_batch: 32,
        dims: vec![],
        kiln: Some(PathBuf::from("/nonexistent/kiln")),
        force: false,
    }
}

#[test]
fn without_a_gpu_it_fails_with_the_reason_and_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = build_engines_with(dir.path(), &args(), Err("no /dev/nvidia0 (test)".into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no CUDA device") && e.contains("no /dev/nvidia0 (test)"),
        "{e}"
    );
    assert!(e.contains("No engine was built"), "{e}");
    assert!(!dir.path().join("target/engines").exists());
}

#[test]
fn the_probe_on_this_machine_says_why_when_there_is_no_gpu() {
    match probe_gpu() {
        Ok(g) => assert!(!g.name.is_empty()),
        Err(why) => assert!(why.contains("nvidia"), "{why}"),
    }
}

#[test]
fn profiles_come_from_inspect_json() {
    let max = 2 + (seed() % 60) as usize;
    let inspect = serde_json::json!({"inputs": [
        {"name": "x", "dtype": "f32", "shape": ["batch", 3, 32, 32]},
        {"name": "ids", "dtype": "i64", "shape": [null, "seq"]},
    ]});
    let e = profile_from_inspect(&inspect, max, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'ids'") && e.contains("--dim seq=N"), "{e}");
    let p = profile_from_inspect(&inspect, max, &[("seq".into(), 77)]).unwrap();
    assert_eq!(p[0].min, vec![1, 3, 32, 32]);
    assert_eq!(p[0].max, vec![max, 3, 32, 32]);
    assert_eq!(p[1].min, vec![1, 77]);
    assert_eq!(p[1].opt, vec![max, 77]);
    assert_eq!(
        shapes_arg(&p, |p| &p.max),
        format!("x:{max}x3x32x32,ids:{max}x77")
    );
    let e = profile_from_inspect(
        &serde_json::json!({"inputs": [{"name": "y", "shape": null}]}),
        4,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'y'") && e.contains("rank"), "{e}");
    assert!(parse_dim("seq=0").is_err() && parse_dim("seq").is_err());
    assert_eq!(parse_dim(" seq = 128").unwrap(), ("seq".into(), 128));
}
