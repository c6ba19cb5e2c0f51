//! What the `engines` bench runs, decided without a GPU: the models (the repo's fixtures, and
//! the zoo's ResNet-50 and BERT-base when `$KILN_ZOO_DIR` is set), the batches and precisions
//! (`$KILN_BENCH_BATCHES`, `$KILN_BENCH_PRECISIONS`), and each case's optimisation profile.
//! All of it is unit-tested on the CPU.

use std::path::{Path, PathBuf};

use kiln_core::{OptimizationProfile, Precision, ProfileInput, Shape};

/// One criterion group: a model at one precision and batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub model: PathBuf,
    pub precision: Precision,
    pub batch: usize,
}

impl Case {
    /// `cnn_legacy/fp16/b8`: the group's name.
    pub fn name(&self) -> String {
        let stem = self
            .model
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
        format!("{stem}/{}/b{}", self.precision.name(), self.batch)
    }
}

/// The fixtures folder: `$KILN_FIXTURES_DIR`, else the repo's `fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("KILN_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"))
}

/// Every `*.onnx` of `fixtures` (sorted), then the zoo's two models when `zoo` is given and
/// they are there.
pub fn models(fixtures: &Path, zoo: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    if let Some(z) = zoo {
        for name in ["resnet50_legacy.onnx", "bert_base_legacy.onnx"] {
            let p = z.join(name);
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// A comma list of batches (`1,8,32`); `None` for an empty list or a bad entry.
pub fn parse_batches(s: &str) -> Result<Vec<usize>, String> {
    let v: Vec<usize> = s
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| match x.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("'{x}' is not a batch size")),
        })
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err("no batch size given".into());
    }
    Ok(v)
}

/// A comma list of precisions (`fp32,fp16`).
pub fn parse_precisions(s: &str) -> Result<Vec<Precision>, String> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| x.trim().parse::<Precision>().map_err(|e| e.to_string()))
        .collect()
}

/// Every case: models × precisions × batches, from the environment (defaults: batches 1 and
/// 32, precisions fp32 and fp16).
pub fn cases_from_env() -> Result<Vec<Case>, String> {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let batches = parse_batches(&var("KILN_BENCH_BATCHES", "1,32"))
        .map_err(|e| format!("KILN_BENCH_BATCHES: {e}"))?;
    let precisions = parse_precisions(&var("KILN_BENCH_PRECISIONS", "fp32,fp16"))
        .map_err(|e| format!("KILN_BENCH_PRECISIONS: {e}"))?;
    let zoo = std::env::var_os("KILN_ZOO_DIR").map(PathBuf::from);
    let models = models(&fixtures_dir(), zoo.as_deref());
    if models.is_empty() {
        return Err(format!(
            "no *.onnx model in {} (set KILN_FIXTURES_DIR)",
            fixtures_dir().display()
        ));
    }
    Ok(cases(&models, &precisions, &batches))
}

pub fn cases(models: &[PathBuf], precisions: &[Precision], batches: &[usize]) -> Vec<Case> {
    let mut out = Vec::new();
    for m in models {
        for &precision in precisions {
            for &batch in batches {
                out.push(Case {
                    model: m.clone(),
                    precision,
                    batch,
                });
            }
        }
    }
    out
}

/// Concrete dims of `shape` at `batch`: a dimension that is not fixed is the batch when it
/// comes first, else `other` (e.g. a sequence length).
pub fn dims_at(shape: &Shape, batch: usize, other: usize) -> Vec<usize> {
    shape
        .dims()
        .iter()
        .enumerate()
        .map(|(i, d)| d.known().unwrap_or(if i == 0 { batch } else { other }))
        .collect()
}

/// The profile a case is built with: every input fixed at `batch` (min = opt = max), so the
/// engine's tactics are chosen for exactly the shapes the bench runs.
pub fn profile(inputs: &[(String, Shape)], batch: usize, other: usize) -> OptimizationProfile {
    OptimizationProfile {
        inputs: inputs
            .iter()
            .map(|(name, shape)| {
                let d = dims_at(shape, batch, other);
                ProfileInput {
                    name: name.clone(),
                    min: d.clone(),
                    opt: d.clone(),
                    max: d,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Dim;

    #[test]
    fn cases_cover_every_model_precision_and_batch() {
        let dir = tempfile::tempdir().unwrap();
        let zoo = tempfile::tempdir().unwrap();
        let mut rng = fastrand::Rng::new();
        let n = rng.usize(1..5);
        for i in 0..n {
            std::fs::write(dir.path().join(format!("m{i}.onnx")), b"x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::write(zoo.path().join("resnet50_legacy.onnx"), b"x").unwrap();
        let m = models(dir.path(), Some(zoo.path()));
        assert_eq!(m.len(), n + 1, "{m:?}");
        assert!(m[n].ends_with("resnet50_legacy.onnx"));
        assert_eq!(models(dir.path(), None).len(), n);
        let batches = parse_batches(" 1, 8,32").unwrap();
        let precisions = parse_precisions("fp32,fp16").unwrap();
        let c = cases(&m, &precisions, &batches);
        assert_eq!(c.len(), (n + 1) * 2 * 3);
        assert_eq!(c[1].name(), "m0/fp32/b8");
        assert!(parse_batches("1,0").is_err() && parse_batches("").is_err());
        assert!(parse_precisions("fp16,fp7").is_err());
    }

    #[test]
    fn profiles_fix_the_batch_and_other_dims() {
        let mut rng = fastrand::Rng::new();
        let (batch, seq) = (rng.usize(1..256), rng.usize(1..512));
        let x = Shape::new(vec![
            Dim::symbol("batch"),
            Dim::Known(3),
            Dim::symbol("seq"),
        ]);
        let p = profile(&[("x".to_string(), x)], batch, seq);
        assert_eq!(p.inputs[0].min, vec![batch, 3, seq]);
        assert_eq!(p.inputs[0].opt, p.inputs[0].max);
        assert_eq!(p.inputs[0].min, p.inputs[0].max);
    }
}
