use super::*;
use kiln_core::{DataType, Precision, Shape, TensorSpec};

fn plan() -> Plan {
    Plan {
        header: PlanHeader {
            kiln_version: env!("CARGO_PKG_VERSION").into(),
            fingerprint: Fingerprint {
                gpu_name: "NVIDIA H100 80GB HBM3".into(),
                compute_capability: (9, 0),
                cuda: "13.0".into(),
                nvrtc: Some("13.0".into()),
                cublaslt: Some("13.0.0".into()),
                cudnn: Some("9.10.2".into()),
            },
            config: BuildConfig {
                precision: Precision::Fp16,
                ..BuildConfig::default()
            },
            inputs: vec![TensorSpec::new(
                "x",
                DataType::F32,
                Shape::parse("batchx16").unwrap(),
            )],
            outputs: vec![],
            passes: Default::default(),
        },
        sections: vec![
            (GRAPH_SECTION.into(), (0..200u8).collect()),
            (format!("{KERNEL_PREFIX}relu_f16"), vec![1, 2, 3]),
        ],
    }
}

#[test]
fn round_trip_is_bit_exact() {
    let p = plan();
    let bytes = p.to_bytes().unwrap();
    let q = Plan::from_bytes(&bytes).unwrap();
    assert_eq!(p, q);
    assert_eq!(q.to_bytes().unwrap(), bytes);
    assert_eq!(
        q.kernels().collect::<Vec<_>>(),
        vec![("relu_f16", &[1u8, 2, 3][..])]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.plan");
    p.save(&path).unwrap();
    assert_eq!(Plan::load(&path).unwrap(), p);
}

#[test]
fn truncated_and_corrupt_plans_are_errors() {
    let bytes = plan().to_bytes().unwrap();
    for n in 0..bytes.len() {
        assert!(Plan::from_bytes(&bytes[..n]).is_err(), "prefix {n} parsed");
    }
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..500 {
        let mut b = bytes.clone();
        let i = rng.usize(..b.len());
        b[i] ^= 1 << rng.u8(0..8);
        assert!(Plan::from_bytes(&b).is_err(), "flip at {i} parsed");
    }
    let e = Plan::from_bytes(b"hello world").unwrap_err().to_string();
    assert!(e.contains("not a kiln plan"), "{e}");
}

#[test]
fn lengths_are_checked_even_with_a_valid_checksum() {
    // A header length far beyond the data, with the checksum fixed up.
    let mut b = Vec::new();
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let e = Plan::from_bytes(&b).unwrap_err().to_string();
    assert!(e.contains("length"), "{e}");
}

#[test]
fn other_versions_and_machines_say_rebuild() {
    let p = plan();
    let mut bytes = p.to_bytes().unwrap();
    bytes[8] = 99;
    let e = Plan::from_bytes(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("format version 99") && e.contains("rebuild"),
        "{e}"
    );
    p.check_compatible(&p.header.fingerprint).unwrap();
    let mut here = p.header.fingerprint.clone();
    here.gpu_name = "NVIDIA A100".into();
    here.compute_capability = (8, 0);
    here.cudnn = Some("9.1.0".into());
    let e = p.check_compatible(&here).unwrap_err().to_string();
    assert!(
        e.contains("sm_80") && e.contains("cuDNN 9.10.2") && e.contains("rebuild"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real plans, mutated

/// A profile over the batch dim (min 1, opt 2, max 8) of every input of `graph`.
fn batch_profile(graph: &kiln_onnx::Graph) -> kiln_core::OptimizationProfile {
    let inputs = graph
        .inputs
        .iter()
        .map(|vi| {
            let at = |b: usize| -> Vec<usize> {
                vi.shape
                    .as_ref()
                    .expect("fixture inputs have a rank")
                    .dims()
                    .iter()
                    .map(|d| d.known().unwrap_or(b))
                    .collect()
            };
            kiln_core::ProfileInput {
                name: vi.name.clone(),
                min: at(1),
                opt: at(2),
                max: at(8),
            }
        })
        .collect();
    kiln_core::OptimizationProfile { inputs }
}

/// Real plans of small fixtures, built host-side with [`crate::builder::prepare_programs`]
/// and the device half of a build faked: the fingerprint of `plan()`, one `kernel:` section
/// per NVRTC module the lowered programs launch (placeholder images) and a `tactics` section
/// with every GEMM/convolution description of the programs (placeholder tactics).
pub(crate) fn fixture_plans() -> Vec<(String, Plan)> {
    use crate::kernels::conv::ConvTactic;
    use crate::kernels::gemm::GemmTactic;
    use crate::kernels::nvrtc::KernelBinary;
    use crate::runtime::libs::{self, LibDesc, Tactics, key};

    let fixtures = [
        ("mlp_legacy", Precision::Fp32),
        ("mlp_dynamo", Precision::Fp16),
        ("cnn_legacy", Precision::Bf16),
    ];
    let mut out = Vec::new();
    for (name, precision) in fixtures {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../fixtures/{name}.onnx"));
        let graph = kiln_onnx::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let config = BuildConfig {
            precision,
            workspace_limit: 1 << 20,
            profiles: vec![batch_profile(&graph)],
            kernel_cache_dir: None,
            ..BuildConfig::default()
        };
        let (mut p, programs) =
            crate::builder::prepare_programs(&graph, &config, plan().header.fingerprint)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let math = libs::math_mode(precision).unwrap();
        let mut modules = std::collections::BTreeSet::new();
        let mut tactics = Tactics::default();
        for (_, program) in &programs {
            for step in &program.steps {
                for m in crate::runtime::ops::modules_for(step, program).unwrap() {
                    modules.insert(m.name.clone());
                }
                let gemm = GemmTactic {
                    algo: [3, 1, 4, 1, 5, 9, 2, 6],
                    workspace: 4096,
                };
                match libs::lib_desc(step, program, math).unwrap() {
                    Some(LibDesc::Gemm { desc, .. }) => {
                        tactics.gemm.insert(key(&desc), gemm);
                    }
                    Some(LibDesc::MatMul(m)) => {
                        tactics.gemm.insert(key(&m.desc), gemm);
                    }
                    Some(LibDesc::Conv(desc)) => {
                        let t = ConvTactic {
                            algo: 1,
                            math_type: 2,
                            workspace: 512,
                            fused: true,
                        };
                        tactics.conv.insert(key(&desc), t);
                    }
                    None => {}
                }
            }
        }
        assert!(!modules.is_empty(), "{name}: no kernel modules");
        assert!(
            !tactics.gemm.is_empty() || !tactics.conv.is_empty(),
            "{name}: no library steps"
        );
        let bins: Vec<KernelBinary> = modules
            .into_iter()
            .map(|module| KernelBinary {
                image: format!("// placeholder image of {module}\n").into_bytes(),
                module,
                target: "compute_90".into(),
                nvrtc_version: "13.0".into(),
            })
            .collect();
        p.sections.extend(crate::runtime::kernel_sections(&bins));
        p.sections
            .push((libs::TACTICS_SECTION.into(), tactics.to_bytes().unwrap()));
        out.push((format!("{name}_{}", precision.name()), p));
    }
    out
}

/// `bytes` with the last four replaced by the CRC-32 of the rest (what a corrupter who knows
/// the format would write).
fn reseal(bytes: &[u8]) -> Vec<u8> {
    let body = &bytes[..bytes.len().saturating_sub(4)];
    let mut out = body.to_vec();
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out
}

/// Everything a loader does with a plan's bytes; panics (the test's failure) only if a
/// parser panics or a parsed plan does not survive a write/read round trip.
fn parse_all(bytes: &[u8]) -> Result<Plan> {
    let p = Plan::from_bytes(bytes)?;
    let again = p.to_bytes()?;
    assert_eq!(Plan::from_bytes(&again)?, p, "round trip of a parsed plan");
    let _ = p.graph();
    if let Some(t) = p.section(crate::runtime::libs::TACTICS_SECTION) {
        let _ = crate::runtime::libs::Tactics::from_bytes(t);
    }
    let _ = crate::runtime::kernel_binaries(&p);
    let _ = p.check_compatible(&p.header.fingerprint);
    Ok(p)
}

/// Byte ranges of `bytes` (a plan written by `to_bytes`) whose corruption must be an error
/// whatever the new value: magic, version, header length, section count, and the last
/// section's name and data lengths.
fn framing(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let le = |at: usize, n: usize| {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&bytes[at..at + n]);
        u64::from_le_bytes(a) as usize
    };
    let hlen = le(12, 8);
    let count_at = 20 + hlen;
    let mut r = vec![0..20, count_at..count_at + 4];
    let count = le(count_at, 4);
    let mut at = count_at + 4;
    for i in 0..count {
        let nlen = le(at, 2);
        let len_at = at + 2 + nlen;
        if i + 1 == count {
            r.push(at..at + 2);
            r.push(len_at..len_at + 8);
        }
        at = len_at + 8 + le(len_at, 8);
    }
    assert_eq!(at + 4, bytes.len(), "framing walked the whole plan");
    r
}

#[test]
fn real_plans_truncated_at_every_length_are_errors() {
    for (name, p) in fixture_plans() {
        let bytes = p.to_bytes().unwrap();
        assert_eq!(parse_all(&bytes).unwrap(), p, "{name}");
        for n in 0..bytes.len() {
            assert!(parse_all(&bytes[..n]).is_err(), "{name}: prefix {n} parsed");
            // The same prefix with a checksum that matches it: the section table is cut
            // (a prefix of all but the checksum, resealed, is the plan itself).
            if n >= 4 && n != bytes.len() - 4 {
                let mut sealed = bytes[..n].to_vec();
                sealed.extend_from_slice(&crc32fast::hash(&bytes[..n]).to_le_bytes());
                assert!(
                    parse_all(&sealed).is_err(),
                    "{name}: prefix {n} with its own checksum parsed"
                );
            }
        }
    }
}

#[test]
fn real_plans_with_flipped_bits_and_fixed_checksums_never_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    for (name, p) in fixture_plans() {
        let bytes = p.to_bytes().unwrap();
        let framing = framing(&bytes);
        let body = bytes.len() - 4;
        // Every bit of the framing, and 3000 random bits elsewhere.
        let mut flips: Vec<(usize, u8)> = framing
            .iter()
            .flat_map(|r| r.clone())
            .flat_map(|i| (0..8).map(move |b| (i, b)))
            .collect();
        flips.extend((0..3000).map(|_| (rng.usize(..body), rng.u8(0..8))));
        let (mut errors, mut parsed) = (0, 0);
        for (i, bit) in flips {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            // Unsealed: the checksum catches every single-bit flip.
            assert!(
                Plan::from_bytes(&b).is_err(),
                "{name}: flip {i}.{bit} parsed"
            );
            match parse_all(&reseal(&b)) {
                Err(_) => errors += 1,
                // A flip inside a section's bytes or a header value can give a valid plan
                // (the header JSON even ignores an unknown key, e.g. a flipped `null` field).
                Ok(_) => {
                    assert!(
                        !framing.iter().any(|r| r.contains(&i)),
                        "{name}: flip {i}.{bit} in the framing parsed"
                    );
                    parsed += 1;
                }
            }
        }
        // Most flips land in the graph section, which the plan parser does not look into.
        assert!(
            errors > 0 && parsed > 0,
            "{name}: {errors} errors, {parsed} parsed"
        );
    }
}

#[test]
fn committed_fuzz_seeds_are_current_plans() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/plan_from_bytes");
    let mut seen = 0;
    for (name, p) in fixture_plans() {
        let path = dir.join(format!("{name}.plan"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate the seeds: cargo test -p kiln-engine --lib \
                 write_fuzz_seeds -- --ignored",
                path.display()
            )
        });
        let q = parse_all(&bytes).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate the seeds: cargo test -p kiln-engine --lib \
                 write_fuzz_seeds -- --ignored",
                path.display()
            )
        });
        assert_eq!(q.sections.len(), p.sections.len(), "{name}");
        seen += 1;
    }
    assert!(seen > 0);
}

/// Regenerates `fuzz/seeds/plan_from_bytes/`: `cargo test -p kiln-engine --lib
/// write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds/plan_from_bytes/; run by hand after changing the plan format"]
fn write_fuzz_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/plan_from_bytes");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, p) in fixture_plans() {
        p.save(dir.join(format!("{name}.plan"))).unwrap();
    }
    // The hand-made plan of the tests above, too (small, two sections).
    plan().save(dir.join("synthetic.plan")).unwrap();
}
