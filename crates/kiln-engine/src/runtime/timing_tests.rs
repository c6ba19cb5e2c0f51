//! Host tests of tactic timing: candidate counts per level, the workspace filter, the pick,
//! and the timing cache file (round trip, corrupt and foreign files, other devices).

use super::*;

fn device(name: &str) -> DeviceKey {
    DeviceKey {
        gpu_name: name.into(),
        compute_capability: (9, 0),
        cublaslt: Some("13.1.0".into()),
        cudnn: Some("9.14.0".into()),
    }
}

fn gemm_tactic(seed: u64, workspace: usize) -> Tactic {
    Tactic::Gemm(GemmTactic {
        algo: [seed, 1, 2, 3, 4, 5, 6, u64::MAX - seed],
        workspace,
    })
}

fn entry(dev: &DeviceKey, limit: usize, desc: &str, opt: u8, t: Tactic) -> CacheEntry {
    CacheEntry {
        device: dev.clone(),
        workspace_limit: limit,
        desc: desc.into(),
        opt_level: opt,
        chosen: t,
        timings: vec![
            Measured {
                tactic: t,
                median_ms: Some(0.25),
            },
            Measured {
                tactic: gemm_tactic(99, 0),
                median_ms: None,
            },
        ],
    }
}

#[test]
fn candidate_counts_per_level() {
    let counts: Vec<usize> = (0..=MAX_OPT_LEVEL)
        .map(|l| candidate_count(l).unwrap())
        .collect();
    assert_eq!(counts, vec![1, 2, 4, 8, 16, usize::MAX]);
    let e = candidate_count(6).unwrap_err().to_string();
    assert!(e.contains("optimisation level 6"), "{e}");
    assert_eq!(
        crate::plan::DEFAULT_OPT_LEVEL,
        3,
        "the module doc's table names 3 as the default"
    );
}

fn names(v: Vec<(&'static str, usize)>) -> Vec<&'static str> {
    v.into_iter().map(|c| c.0).collect()
}

#[test]
fn shortlist_respects_workspace_and_count() {
    let cands = vec![
        ("a", 0usize),
        ("b", 4096),
        ("c", 0),
        ("d", 1 << 30),
        ("e", 16),
    ];
    let ws = |c: &(&str, usize)| c.1;
    assert_eq!(
        names(shortlist(cands.clone(), ws, 0, usize::MAX)),
        ["a", "c"]
    );
    assert_eq!(
        names(shortlist(cands.clone(), ws, 4096, usize::MAX)),
        ["a", "b", "c", "e"]
    );
    assert_eq!(names(shortlist(cands.clone(), ws, 4096, 2)), ["a", "b"]);
    assert_eq!(names(shortlist(cands.clone(), ws, usize::MAX, 1)), ["a"]);
    let counts: Vec<usize> = (0..=MAX_OPT_LEVEL)
        .map(|l| shortlist(cands.clone(), ws, usize::MAX, candidate_count(l).unwrap()).len())
        .collect();
    assert_eq!(counts, vec![1, 2, 4, 5, 5, 5]);
}

#[test]
fn pick_takes_fastest_with_ties_to_the_heuristics() {
    assert_eq!(pick(&[Some(1.0), Some(0.5), Some(0.7)]), Some(1));
    // Within 2 % of the fastest: the earlier (heuristically better) candidate wins.
    assert_eq!(pick(&[Some(1.0), Some(0.505), Some(0.5)]), Some(1));
    assert_eq!(pick(&[Some(0.51), Some(0.5)]), Some(0));
    assert_eq!(pick(&[None, Some(2.0), None]), Some(1));
    assert_eq!(pick(&[Some(f64::NAN), Some(3.0)]), Some(1));
    assert_eq!(pick(&[None, None]), None);
    assert_eq!(pick(&[]), None);
}

#[test]
fn cache_round_trip_is_exact_and_ordered() {
    let dev = device("NVIDIA H100 80GB HBM3");
    let conv = Tactic::Conv(ConvTactic {
        algo: 1,
        math_type: 1,
        workspace: 1024,
        fused: true,
    });
    let mut a = TimingCache::default();
    a.insert(entry(&dev, 256 << 20, "{\"m\":8}", 3, gemm_tactic(7, 4096)));
    a.insert(entry(&dev, 0, "{\"geometry\":1}", 5, conv));
    let mut b = TimingCache::default();
    b.insert(entry(&dev, 0, "{\"geometry\":1}", 5, conv));
    b.insert(entry(&dev, 256 << 20, "{\"m\":8}", 3, gemm_tactic(7, 4096)));
    let bytes = a.to_bytes().unwrap();
    assert_eq!(
        bytes,
        b.to_bytes().unwrap(),
        "insertion order changed the bytes"
    );
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("\"library\": \"gemm\"") && text.contains("\"library\": \"conv\""));
    let back = TimingCache::from_bytes(&bytes).unwrap();
    assert_eq!(back.len(), 2);
    assert!(!back.is_dirty());
    let e = back.lookup(&dev, 256 << 20, "{\"m\":8}", 3).unwrap();
    assert_eq!(e.chosen, gemm_tactic(7, 4096));
    assert_eq!(e.timings[0].median_ms, Some(0.25));
    assert_eq!(e.timings[1].median_ms, None);
    assert_eq!(
        back.lookup(&dev, 0, "{\"geometry\":1}", 3).unwrap().chosen,
        conv
    );
    assert_eq!(back.to_bytes().unwrap(), bytes);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("timing.json");
    a.save(&path).unwrap();
    let loaded = TimingCache::load(&path);
    assert_eq!(loaded.to_bytes().unwrap(), bytes);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("timing.json")]);
}

#[test]
fn lookup_needs_same_device_limit_and_level() {
    let h100 = device("NVIDIA H100 80GB HBM3");
    let h200 = device("NVIDIA H200");
    let mut other_lib = h100.clone();
    other_lib.cudnn = Some("9.15.0".into());
    let mut c = TimingCache::default();
    c.insert(entry(&h100, 4 << 30, "d", 3, gemm_tactic(1, 0)));
    c.insert(entry(&h200, 4 << 30, "d", 3, gemm_tactic(2, 0)));
    assert_eq!(
        c.lookup(&h100, 4 << 30, "d", 3).unwrap().chosen,
        gemm_tactic(1, 0)
    );
    assert_eq!(
        c.lookup(&h200, 4 << 30, "d", 3).unwrap().chosen,
        gemm_tactic(2, 0)
    );
    assert!(c.lookup(&other_lib, 4 << 30, "d", 3).is_none());
    assert!(
        c.lookup(&h100, 0, "d", 3).is_none(),
        "another workspace limit"
    );
    assert!(c.lookup(&h100, 4 << 30, "e", 3).is_none());
    assert!(
        c.lookup(&h100, 4 << 30, "d", 2).is_some(),
        "a higher level serves"
    );
    assert!(
        c.lookup(&h100, 4 << 30, "d", 4).is_none(),
        "a lower level does not"
    );
}

#[test]
fn foreign_device_entries_are_kept_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timing.json");
    let (h100, h200) = (device("NVIDIA H100"), device("NVIDIA H200"));
    let mut first = TimingCache::default();
    first.insert(entry(&h200, 0, "d", 3, gemm_tactic(2, 0)));
    first.save(&path).unwrap();
    // A build on the H100 reads the file, finds nothing of its own, adds its entry.
    let mut second = TimingCache::load(&path);
    assert!(second.lookup(&h100, 0, "d", 3).is_none());
    second.insert(entry(&h100, 0, "d", 3, gemm_tactic(1, 0)));
    second.save(&path).unwrap();
    let third = TimingCache::load(&path);
    assert_eq!(third.len(), 2);
    assert_eq!(
        third.lookup(&h200, 0, "d", 3).unwrap().chosen,
        gemm_tactic(2, 0)
    );
    assert_eq!(
        third.lookup(&h100, 0, "d", 3).unwrap().chosen,
        gemm_tactic(1, 0)
    );
}

#[test]
fn corrupt_or_foreign_files_are_ignored_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let dev = device("NVIDIA H100");
    let good = {
        let mut c = TimingCache::default();
        c.insert(entry(&dev, 0, "d", 3, gemm_tactic(1, 0)));
        c.to_bytes().unwrap()
    };
    let mut wrong_version = String::from_utf8(good.clone()).unwrap();
    wrong_version = wrong_version.replace("\"version\": 1", "\"version\": 999");
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("binary", vec![0xff, 0x00, 0x13, 0x37]),
        ("empty", Vec::new()),
        (
            "other json",
            b"{\"format\": \"something-else\", \"version\": 1, \"entries\": []}".to_vec(),
        ),
        ("plain array", b"[1, 2, 3]".to_vec()),
        ("wrong version", wrong_version.into_bytes()),
    ];
    for (what, bytes) in bad {
        assert!(TimingCache::from_bytes(&bytes).is_err(), "{what} parsed");
        let path = dir.path().join(format!("{}.json", what.replace(' ', "_")));
        std::fs::write(&path, &bytes).unwrap();
        let c = TimingCache::load(&path);
        assert!(c.is_empty(), "{what}: entries from a bad file");
        let mut c = c;
        c.insert(entry(&dev, 0, "d", 3, gemm_tactic(1, 0)));
        c.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what}: not replaced");
    }
    // A folder where the file should be: a warning and an empty cache, never a panic.
    let c = TimingCache::load(dir.path());
    assert!(c.is_empty());
    assert!(c.save(dir.path()).is_err());
    // A missing file is simply empty.
    assert!(TimingCache::load(&dir.path().join("absent.json")).is_empty());
}
