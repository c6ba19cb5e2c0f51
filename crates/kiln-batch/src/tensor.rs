//! Checking requests against the engine, concatenating them along the batch dim and splitting
//! the outputs back.

use kiln_core::{DataType, Engine, HostTensor};

use crate::config::config_error;
use crate::error::BatchError;

/// The engine inputs as the executor checks requests against them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    pub names: Vec<String>,
    pub dtypes: Vec<DataType>,
    /// Per input, each dim after the batch dim: `Some` when the engine fixes it.
    pub rest: Vec<Vec<Option<usize>>>,
    pub outputs: Vec<String>,
}

impl Layout {
    /// Reads the engine's inputs; every one needs a leading batch dim that can take
    /// `max_batch` rows.
    pub fn of(engine: &dyn Engine, max_batch: usize) -> Result<Layout, BatchError> {
        let mut l = Layout {
            names: Vec::new(),
            dtypes: Vec::new(),
            rest: Vec::new(),
            outputs: engine.outputs().iter().map(|o| o.name.clone()).collect(),
        };
        if engine.inputs().is_empty() {
            return Err(config_error("the engine has no inputs to batch"));
        }
        for spec in engine.inputs() {
            let dims = spec.shape.dims();
            let Some(first) = dims.first() else {
                return Err(config_error(format!(
                    "input '{}' is a scalar: it has no batch dim",
                    spec.name
                )));
            };
            if let Some(k) = first.known()
                && (max_batch > 1 || k != 1)
            {
                return Err(config_error(format!(
                    "input '{}' has a fixed batch dim of {k}; export the model with a symbolic batch dim or set max_batch(1)",
                    spec.name
                )));
            }
            for p in engine.profiles() {
                if let Some(pi) = p.inputs.iter().find(|pi| pi.name == spec.name)
                    && pi.max.first().is_some_and(|&m| m < max_batch)
                {
                    return Err(config_error(format!(
                        "the engine's profile allows batch {} at most for input '{}', below max_batch {max_batch}; lower max_batch or rebuild the engine",
                        pi.max[0], spec.name
                    )));
                }
            }
            l.names.push(spec.name.clone());
            l.dtypes.push(spec.dtype);
            l.rest.push(dims[1..].iter().map(|d| d.known()).collect());
        }
        Ok(l)
    }

    /// Every input's non-batch dims when the engine fixes them all; otherwise the name of an
    /// input with a symbolic one.
    pub fn known_rest(&self) -> Result<Vec<Vec<usize>>, String> {
        self.rest
            .iter()
            .zip(&self.names)
            .map(|(dims, name)| dims.iter().map(|d| d.ok_or_else(|| name.clone())).collect())
            .collect()
    }

    /// Puts the request's tensors in engine order and returns them with the batch size.
    pub fn check(
        &self,
        inputs: Vec<HostTensor>,
        max_batch: usize,
    ) -> Result<(Vec<HostTensor>, usize), BatchError> {
        let bad = |reason: String| BatchError::InvalidRequest { reason };
        if inputs.len() != self.names.len() {
            return Err(bad(format!(
                "{} tensors given where the engine takes {} ({})",
                inputs.len(),
                self.names.len(),
                self.names.join(", ")
            )));
        }
        let mut slots: Vec<Option<HostTensor>> = vec![None; self.names.len()];
        for t in inputs {
            let Some(i) = self.names.iter().position(|n| *n == t.name) else {
                return Err(bad(format!(
                    "the engine has no input '{}'; its inputs are: {}",
                    t.name,
                    self.names.join(", ")
                )));
            };
            if slots[i].is_some() {
                return Err(bad(format!("input '{}' is given twice", t.name)));
            }
            slots[i] = Some(t);
        }
        let ordered: Vec<HostTensor> = slots.into_iter().map(|t| t.expect("all set")).collect();
        let mut rows = None;
        for (i, t) in ordered.iter().enumerate() {
            if t.dtype != self.dtypes[i] {
                return Err(bad(format!(
                    "input '{}' is {} where the engine takes {}",
                    t.name, t.dtype, self.dtypes[i]
                )));
            }
            let rank_ok = t.dims.len() == self.rest[i].len() + 1;
            let dims_ok = rank_ok
                && t.dims[1..]
                    .iter()
                    .zip(&self.rest[i])
                    .all(|(&d, k)| k.is_none_or(|k| k == d));
            if !dims_ok {
                return Err(bad(format!(
                    "input '{}' has dims {:?} where the engine takes [batch, {}]",
                    t.name,
                    t.dims,
                    self.rest[i]
                        .iter()
                        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let expect = kiln_core::checked_element_count(&t.dims)
                .and_then(|n| n.checked_mul(t.dtype.size_in_bytes()));
            if expect != Some(t.data.len()) {
                return Err(bad(format!(
                    "input '{}' has {} bytes where dims {:?} of {} need {:?}",
                    t.name,
                    t.data.len(),
                    t.dims,
                    t.dtype,
                    expect
                )));
            }
            match rows {
                None => rows = Some(t.dims[0]),
                Some(r) if r != t.dims[0] => {
                    return Err(bad(format!(
                        "inputs disagree on the batch dim: {r} and {} (input '{}')",
                        t.dims[0], t.name
                    )));
                }
                Some(_) => {}
            }
        }
        let rows = rows.unwrap_or(0);
        if rows == 0 {
            return Err(bad("the batch dim is 0; send at least one row".into()));
        }
        if rows > max_batch {
            return Err(BatchError::TooLarge {
                rows,
                max: max_batch,
            });
        }
        Ok((ordered, rows))
    }
}

/// Made-up inputs of `rows` rows (non-batch dims `rest`, engine order) for warm-up and SLO
/// measurement: floating-point inputs hold a small non-zero value (no backend gets a zero fast
/// path while being timed), integer and boolean inputs zeros (valid indices and ids).
pub(crate) fn synthetic(
    layout: &Layout,
    rest: &[Vec<usize>],
    rows: usize,
) -> Result<Vec<HostTensor>, BatchError> {
    layout
        .names
        .iter()
        .zip(&layout.dtypes)
        .zip(rest)
        .map(|((name, &dtype), rest)| {
            let mut dims = vec![rows];
            dims.extend_from_slice(rest);
            let mut t = HostTensor::zeros(name.clone(), dtype, &dims).map_err(|source| {
                BatchError::Backend {
                    batch: rows,
                    source,
                }
            })?;
            let one: Option<Vec<u8>> = match dtype {
                DataType::F32 => Some(0.5f32.to_le_bytes().to_vec()),
                DataType::F64 => Some(0.5f64.to_le_bytes().to_vec()),
                DataType::F16 => Some(half::f16::from_f32(0.5).to_le_bytes().to_vec()),
                DataType::BF16 => Some(half::bf16::from_f32(0.5).to_le_bytes().to_vec()),
                _ => None,
            };
            if let Some(one) = one {
                for chunk in t.data.chunks_exact_mut(one.len()) {
                    chunk.copy_from_slice(&one);
                }
            }
            Ok(t)
        })
        .collect()
}

/// Whether two requests (tensors in engine order) can share a batch: same dims after dim 0.
pub(crate) fn compatible(a: &[HostTensor], b: &[HostTensor]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.dims[1..] == y.dims[1..])
}

/// Concatenates the requests' inputs along dim 0 (one request passes through untouched).
pub(crate) fn concat(mut parts: Vec<Vec<HostTensor>>, rows: usize) -> Vec<HostTensor> {
    if parts.len() == 1 {
        return parts.pop().expect("one part");
    }
    let n_inputs = parts[0].len();
    (0..n_inputs)
        .map(|i| {
            let first = &parts[0][i];
            let bytes: usize = parts.iter().map(|p| p[i].data.len()).sum();
            let mut data = Vec::with_capacity(bytes);
            for p in &parts {
                data.extend_from_slice(&p[i].data);
            }
            let mut dims = first.dims.clone();
            dims[0] = rows;
            HostTensor {
                name: first.name.clone(),
                dtype: first.dtype,
                dims,
                data,
            }
        })
        .collect()
}

/// Splits a batch's outputs into one list per request of `row_counts` rows each.
pub(crate) fn split(
    outputs: Vec<HostTensor>,
    row_counts: &[usize],
) -> Result<Vec<Vec<HostTensor>>, BatchError> {
    let total: usize = row_counts.iter().sum();
    if row_counts.len() == 1 {
        return Ok(vec![outputs]);
    }
    let mut per: Vec<Vec<HostTensor>> = (0..row_counts.len())
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for o in outputs {
        if o.dims.first() != Some(&total) || o.data.len() % total != 0 {
            return Err(BatchError::Split {
                output: o.name.clone(),
                batch: total,
                reason: format!(
                    "its dims {:?} do not start with the batch dim {total}",
                    o.dims
                ),
            });
        }
        let row_bytes = o.data.len() / total;
        split_rows(
            &o.name, o.dtype, &o.dims, &o.data, row_bytes, row_counts, &mut per,
        );
    }
    Ok(per)
}

/// Appends to each request's list (`per[k]`) its `row_counts[k]` rows of one output: `data`
/// holds the rows one after another, `row_bytes` each; `dims` is the output's shape, whose
/// first dim becomes the request's row count.
pub(crate) fn split_rows(
    name: &str,
    dtype: DataType,
    dims: &[usize],
    data: &[u8],
    row_bytes: usize,
    row_counts: &[usize],
    per: &mut [Vec<HostTensor>],
) {
    let mut at = 0;
    for (&r, out) in row_counts.iter().zip(per.iter_mut()) {
        let mut d = dims.to_vec();
        d[0] = r;
        out.push(HostTensor {
            name: name.to_string(),
            dtype,
            dims: d,
            data: data[at..at + r * row_bytes].to_vec(),
        });
        at += r * row_bytes;
    }
}
