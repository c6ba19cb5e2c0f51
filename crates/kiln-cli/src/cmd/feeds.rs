//! Inputs and outputs of one run, shared by `kiln run` and `kiln compare`: `--input
//! NAME=FILE.npy` pairs, seeded random inputs at the shapes [`engine_source::run_shapes`]
//! gives, `.npy` shapes read from the header (so that a given input's shape becomes the build
//! shape), and one `execute_host` run on any backend.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use kiln_core::{Engine, HostTensor};
use kiln_reference::Value;

use crate::engine_source::{self, BuildFlags, parse_shape_list};
use crate::tensors;

/// `NAME=FILE` items.
pub fn pairs(items: &[String], what: &str) -> Result<Vec<(String, PathBuf)>> {
    items
        .iter()
        .map(|s| {
            let (n, f) = s
                .split_once('=')
                .with_context(|| format!("{what} '{s}' should be NAME=FILE"))?;
            Ok((n.to_string(), PathBuf::from(f)))
        })
        .collect()
}

/// A file name for a value name (ONNX names may hold '/' or ':').
pub fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The shape stored in a `.npy` header.
pub fn npy_dims(path: &Path) -> Result<Vec<usize>> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(65_536)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    let bad = || {
        anyhow::anyhow!(
            "{} is not a .npy file (numpy's np.save format)",
            path.display()
        )
    };
    if head.len() < 10 || &head[..6] != b"\x93NUMPY" {
        return Err(bad());
    }
    let (len, start): (usize, usize) = match head[6] {
        1 => (usize::from(u16::from_le_bytes([head[8], head[9]])), 10),
        2 | 3 if head.len() >= 12 => (
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
            12,
        ),
        _ => return Err(bad()),
    };
    let text = head
        .get(start..start.saturating_add(len))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(bad)?;
    let after = text.split_once("'shape'").ok_or_else(bad)?.1;
    let open = after.find('(').ok_or_else(bad)?;
    let close = after.find(')').ok_or_else(bad)?;
    after
        .get(open + 1..close)
        .ok_or_else(bad)?
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>().map_err(|_| bad()))
        .collect()
}

/// `flags` with a `--shapes` entry for every given input no shape flag names, so that
/// engines are built for the shapes of the given files.
pub fn with_given_shapes(flags: &BuildFlags, given: &[(String, PathBuf)]) -> Result<BuildFlags> {
    let mut named = Vec::new();
    for (flag, list) in [
        ("--shapes", &flags.shapes),
        ("--min-shapes", &flags.min_shapes),
        ("--opt-shapes", &flags.opt_shapes),
        ("--max-shapes", &flags.max_shapes),
    ] {
        named.extend(parse_shape_list(flag, list)?.into_iter().map(|(n, _)| n));
    }
    let mut out = flags.clone();
    for (name, path) in given {
        if !named.contains(name) {
            let dims = npy_dims(path)?;
            out.shapes
                .push(format!("{name}:{}", engine_source::dims_text(&dims)));
        }
    }
    Ok(out)
}

/// The inputs of one run.
pub struct Feed {
    /// In the engine's input order.
    pub host: Vec<HostTensor>,
    pub values: HashMap<String, Value>,
    /// One line per input: where it came from, its type and shape.
    pub lines: Vec<String>,
    /// Inputs made at random (the others came from files).
    pub random: Vec<String>,
}

/// Given inputs read from their files (in the engine's declared type), the others random from
/// `seed` at the run shapes.
pub fn make_feed(
    engine: &dyn Engine,
    flags: &BuildFlags,
    given: &[(String, PathBuf)],
    seed: u64,
) -> Result<Feed> {
    for (n, _) in given {
        if !engine.inputs().iter().any(|s| &s.name == n) {
            let known: Vec<&str> = engine.inputs().iter().map(|s| s.name.as_str()).collect();
            bail!(
                "--input names '{n}', which is not an input; the inputs are: {}",
                known.join(", ")
            );
        }
    }
    let shapes = engine_source::run_shapes(engine, flags)?;
    let mut rng = tensors::rng(seed);
    let mut feed = Feed {
        host: Vec::new(),
        values: HashMap::new(),
        lines: Vec::new(),
        random: Vec::new(),
    };
    for (spec, (_, dims)) in engine.inputs().iter().zip(&shapes) {
        let (value, from) = match given.iter().find(|(n, _)| *n == spec.name) {
            Some((_, path)) => (
                tensors::read_npy(path, spec.dtype)?,
                path.display().to_string(),
            ),
            None => {
                feed.random.push(spec.name.clone());
                (
                    tensors::random_value(spec.dtype, dims, &mut rng),
                    format!("random (seed {seed})"),
                )
            }
        };
        feed.lines.push(format!(
            "{}: {} {:?} from {from}",
            spec.name,
            value.dtype(),
            value.shape()
        ));
        feed.host
            .push(engine_source::value_to_host(&spec.name, &value)?);
        feed.values.insert(spec.name.clone(), value);
    }
    Ok(feed)
}

/// One synchronous run on host tensors; outputs as values in the engine's output order, and
/// the seconds it took (for GPU engines the first run includes specialisation to the shapes).
pub fn run_once(
    engine: &Arc<dyn Engine>,
    inputs: &[HostTensor],
) -> Result<(Vec<(String, Value)>, f64)> {
    let mut ctx = engine.clone().create_context()?;
    let t = Instant::now();
    let outs = ctx.execute_host(inputs)?;
    let secs = t.elapsed().as_secs_f64();
    let values = outs
        .iter()
        .map(|t| Ok((t.name.clone(), engine_source::host_to_value(t)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok((values, secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;
    use ndarray_npy::WriteNpyExt;

    #[test]
    fn npy_header_shapes() {
        let dir = tempfile::tempdir().unwrap();
        for dims in [vec![2usize, 3, 4], vec![5], vec![]] {
            let p = dir.path().join("a.npy");
            let a = ArrayD::<f32>::zeros(ndarray::IxDyn(&dims));
            a.write_npy(std::fs::File::create(&p).unwrap()).unwrap();
            assert_eq!(npy_dims(&p).unwrap(), dims);
        }
        let p = dir.path().join("b.npy");
        std::fs::write(&p, b"not numpy at all").unwrap();
        assert!(npy_dims(&p).unwrap_err().to_string().contains("b.npy"));
        assert!(npy_dims(&dir.path().join("missing.npy")).is_err());
    }

    #[test]
    fn given_inputs_become_shapes_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        ArrayD::<f32>::zeros(ndarray::IxDyn(&[3, 16]))
            .write_npy(std::fs::File::create(&p).unwrap())
            .unwrap();
        let given = vec![("x".to_string(), p)];
        let f = with_given_shapes(&BuildFlags::default(), &given).unwrap();
        assert_eq!(f.shapes, vec!["x:3x16".to_string()]);
        let named = BuildFlags {
            max_shapes: vec!["x:8x16".into()],
            ..BuildFlags::default()
        };
        assert!(with_given_shapes(&named, &given).unwrap().shapes.is_empty());
    }
}
