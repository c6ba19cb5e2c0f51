//! Matrix multiplication through cuBLASLt: ONNX `Gemm`, `MatMul` and batched `MatMul`.
//!
//! kiln's tensors are row-major; cuBLASLt is column-major. A row-major `m × n` matrix is the
//! column-major `n × m` matrix with the same leading dimension, so `D = op(A)·op(B)` (row-major)
//! is computed as `Dᵀ = op(B)ᵀ·op(A)ᵀ` (column-major): the operands swap places, `m` and `n`
//! swap, and the transposes stay as they are ([`GemmDesc::lt_problem`]). A bias epilogue adds a
//! vector along the rows of the column-major result, that is along `n`: exactly ONNX Gemm's `C`
//! of shape `[n]` or `[1, n]`.
//!
//! - [`GemmDesc`]: one (strided-batched) GEMM: shapes, leading dimensions, batch strides (0 =
//!   the same matrix for every batch), transposes, alpha/beta, [`Epilogue`], [`MathMode`].
//! - [`matmul_plan`]: ONNX `MatMul` with numpy batch broadcasting as one strided-batched GEMM,
//!   or a few of them at element offsets when the batch dims cannot be collapsed.
//! - [`Blas`]: the cuBLASLt handle of a device (created once, shared): [`Blas::select`] asks the
//!   heuristics for an algorithm within a workspace limit ([`GemmTactic`], serialisable for the
//!   plan), [`Blas::candidates`] lists the heuristics' top k (the builder times them,
//!   `runtime::timing`), [`Blas::check`] validates a stored tactic, [`Blas::enqueue`] runs it on a stream.
//!
//! Everything except [`Blas`] is plain data and CPU-tested; `tests/gpu_libs.rs` runs the GPU
//! part against kiln-reference.

use cudarc::cublaslt::sys as lt;
use kiln_core::{DataType, Precision};
use kiln_cuda::CudaError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of the library kernels (cuBLASLt here, cuDNN in [`super::conv`]).
#[derive(Debug, Error)]
pub enum LibError {
    /// A library or device is missing, or a CUDA driver call failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// A library call returned an error status.
    #[error("{library} call {call} failed with {status}{hint}")]
    Call {
        library: &'static str,
        call: &'static str,
        status: String,
        hint: &'static str,
    },
    /// The library has no algorithm for this problem within the workspace limit.
    #[error(
        "{library} has no algorithm for {problem} within a workspace of {limit} bytes; raise \
         the workspace limit or use another precision"
    )]
    NoAlgorithm {
        library: &'static str,
        problem: String,
        limit: usize,
    },
    /// A problem the library path does not handle (the builder must lower it otherwise).
    #[error("unsupported {op}: {what}")]
    Unsupported { op: &'static str, what: String },
    /// Shapes, strides or pointers that do not describe a valid call.
    #[error("invalid {op}: {what}")]
    Invalid { op: &'static str, what: String },
}

/// Result alias of the library kernels.
pub type LibResult<T> = Result<T, LibError>;

pub(super) fn invalid(op: &'static str, what: impl Into<String>) -> LibError {
    LibError::Invalid {
        op,
        what: what.into(),
    }
}

/// Storage type and arithmetic of a GEMM or convolution. Accumulation is f32 in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MathMode {
    /// f32 storage, IEEE f32 arithmetic (no TF32).
    Fp32,
    /// f32 storage, TF32 tensor-core arithmetic.
    Tf32,
    /// f16 storage, tensor cores, f32 accumulation.
    Fp16,
    /// bf16 storage, tensor cores, f32 accumulation.
    Bf16,
}

impl MathMode {
    /// The mode for an engine precision (`None` for int8, which these kernels do not do).
    pub fn from_precision(p: Precision) -> Option<MathMode> {
        match p {
            Precision::Fp32 => Some(MathMode::Fp32),
            Precision::Tf32 => Some(MathMode::Tf32),
            Precision::Fp16 => Some(MathMode::Fp16),
            Precision::Bf16 => Some(MathMode::Bf16),
            Precision::Int8 => None,
        }
    }

    /// Element type of every operand (inputs, bias, output).
    pub fn storage(self) -> DataType {
        match self {
            MathMode::Fp32 | MathMode::Tf32 => DataType::F32,
            MathMode::Fp16 => DataType::F16,
            MathMode::Bf16 => DataType::BF16,
        }
    }

    /// Bytes per element of the storage type.
    pub fn elem_bytes(self) -> usize {
        self.storage().size_in_bytes()
    }

    pub(super) fn lt_data_type(self) -> lt::cudaDataType_t {
        match self {
            MathMode::Fp32 | MathMode::Tf32 => lt::cudaDataType_t::CUDA_R_32F,
            MathMode::Fp16 => lt::cudaDataType_t::CUDA_R_16F,
            MathMode::Bf16 => lt::cudaDataType_t::CUDA_R_16BF,
        }
    }

    pub(super) fn lt_compute_type(self) -> lt::cublasComputeType_t {
        match self {
            MathMode::Tf32 => lt::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            _ => lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        }
    }
}

/// What cuBLASLt applies to `alpha·op(A)·op(B) + beta·C` before writing `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Epilogue {
    None,
    Relu,
    /// Adds a length-`n` bias vector (not scaled by beta) to every row.
    Bias,
    BiasRelu,
    /// GELU in its tanh approximation (ONNX `Gelu` with `approximate = "tanh"` only).
    GeluTanh,
    BiasGeluTanh,
}

impl Epilogue {
    /// Whether a bias pointer is read.
    pub fn has_bias(self) -> bool {
        matches!(
            self,
            Epilogue::Bias | Epilogue::BiasRelu | Epilogue::BiasGeluTanh
        )
    }

    pub(super) fn lt(self) -> lt::cublasLtEpilogue_t {
        use lt::cublasLtEpilogue_t as E;
        match self {
            Epilogue::None => E::CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Relu => E::CUBLASLT_EPILOGUE_RELU,
            Epilogue::Bias => E::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::BiasRelu => E::CUBLASLT_EPILOGUE_RELU_BIAS,
            Epilogue::GeluTanh => E::CUBLASLT_EPILOGUE_GELU,
            Epilogue::BiasGeluTanh => E::CUBLASLT_EPILOGUE_GELU_BIAS,
        }
    }
}

/// One row-major GEMM, possibly strided-batched:
/// `D[b] = epilogue(alpha · op(A[b]) · op(B[b]) + beta · C[b])` with `op(A)` `m × k`, `op(B)`
/// `k × n`, `C`/`D` `m × n`. Leading dimensions and strides are in elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmDesc {
    pub math: MathMode,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored `k × m` (ONNX `transA`).
    pub trans_a: bool,
    /// B is stored `n × k` (ONNX `transB`).
    pub trans_b: bool,
    /// Row pitch of the stored A, B and C/D.
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub batch: usize,
    /// Distance between consecutive batch matrices; 0 reuses one matrix (A and B only).
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub alpha: f32,
    /// When non-zero, `C` is read (it may be `D` itself).
    pub beta: f32,
    pub epilogue: Epilogue,
    /// Alignment in bytes that every pointer passed at run time has (a power of two ≥ the
    /// element size); the heuristics pick algorithms that rely on no more.
    pub min_align: usize,
}

/// A matrix as cuBLASLt sees it: column-major `rows × cols` with leading dimension `ld`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LtLayout {
    pub rows: u64,
    pub cols: u64,
    pub ld: i64,
    pub batch: i32,
    pub stride: i64,
}

/// The column-major problem handed to cuBLASLt (operands already swapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LtProblem {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub trans_a: bool,
    pub trans_b: bool,
    /// cuBLASLt's A: kiln's B.
    pub a: LtLayout,
    /// cuBLASLt's B: kiln's A.
    pub b: LtLayout,
    /// C and D.
    pub c: LtLayout,
}

impl GemmDesc {
    /// A packed (contiguous, untransposed, single) GEMM `m×k · k×n`, alpha 1, beta 0, pointers
    /// 256-byte aligned (what the arena gives).
    pub fn new(math: MathMode, m: usize, n: usize, k: usize) -> GemmDesc {
        GemmDesc {
            math,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            lda: k,
            ldb: n,
            ldc: n,
            batch: 1,
            stride_a: m.saturating_mul(k),
            stride_b: k.saturating_mul(n),
            stride_c: m.saturating_mul(n),
            alpha: 1.0,
            beta: 0.0,
            epilogue: Epilogue::None,
            min_align: 256,
        }
    }

    /// Sets the transposes and the packed leading dimensions that go with them.
    pub fn transposed(mut self, trans_a: bool, trans_b: bool) -> GemmDesc {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self.lda = if trans_a { self.m } else { self.k };
        self.ldb = if trans_b { self.k } else { self.n };
        self
    }

    /// (rows, cols) of the stored A and B (row-major).
    fn stored_a(&self) -> (usize, usize) {
        if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }

    fn stored_b(&self) -> (usize, usize) {
        if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }

    /// Elements spanned by one operand over all batches (what its buffer must hold).
    fn span(rows: usize, cols: usize, ld: usize, batch: usize, stride: usize) -> Option<usize> {
        if rows == 0 || cols == 0 || batch == 0 {
            return Some(0);
        }
        let one = (rows - 1).checked_mul(ld)?.checked_add(cols)?;
        (batch - 1).checked_mul(stride)?.checked_add(one)
    }

    /// Elements the A, B and C/D buffers must hold.
    pub fn spans(&self) -> LibResult<(usize, usize, usize)> {
        let (ar, ac) = self.stored_a();
        let (br, bc) = self.stored_b();
        let over = || invalid("gemm", format!("sizes overflow: {self:?}"));
        Ok((
            Self::span(ar, ac, self.lda, self.batch, self.stride_a).ok_or_else(over)?,
            Self::span(br, bc, self.ldb, self.batch, self.stride_b).ok_or_else(over)?,
            Self::span(self.m, self.n, self.ldc, self.batch, self.stride_c).ok_or_else(over)?,
        ))
    }

    /// Checks that the description is a GEMM cuBLASLt can run.
    pub fn validate(&self) -> LibResult<()> {
        let (m, n, k) = (self.m, self.n, self.k);
        if m == 0 || n == 0 || k == 0 || self.batch == 0 {
            return Err(LibError::Unsupported {
                op: "gemm",
                what: format!("empty problem m={m} n={n} k={k} batch={}", self.batch),
            });
        }
        let (_, ac) = self.stored_a();
        let (_, bc) = self.stored_b();
        if self.lda < ac || self.ldb < bc || self.ldc < n {
            return Err(invalid(
                "gemm",
                format!(
                    "leading dimensions lda={} ldb={} ldc={} below the row lengths {ac}, {bc}, {n}",
                    self.lda, self.ldb, self.ldc
                ),
            ));
        }
        if self.batch > 1 && self.stride_c < self.m.saturating_mul(self.ldc) {
            return Err(invalid(
                "gemm",
                format!(
                    "output batch stride {} overlaps ({} needed)",
                    self.stride_c,
                    self.m.saturating_mul(self.ldc)
                ),
            ));
        }
        let eb = self.math.elem_bytes();
        if !self.min_align.is_power_of_two() || self.min_align < eb {
            return Err(invalid(
                "gemm",
                format!("min_align {} is not a power of two ≥ {eb}", self.min_align),
            ));
        }
        let (sa, sb, sc) = self.spans()?;
        let max = i64::MAX as usize / eb;
        if sa > max || sb > max || sc > max || i32::try_from(self.batch).is_err() {
            return Err(invalid(
                "gemm",
                format!("sizes exceed cuBLASLt's range: {self:?}"),
            ));
        }
        Ok(())
    }

    /// The swapped column-major problem (see the module doc).
    pub fn lt_problem(&self) -> LibResult<LtProblem> {
        self.validate()?;
        let batch = self.batch as i32;
        let lay = |rows: usize, cols: usize, ld: usize, stride: usize| LtLayout {
            rows: cols as u64,
            cols: rows as u64,
            ld: ld as i64,
            batch,
            stride: if batch > 1 { stride as i64 } else { 0 },
        };
        let (ar, ac) = self.stored_a();
        let (br, bc) = self.stored_b();
        Ok(LtProblem {
            m: self.n as u64,
            n: self.m as u64,
            k: self.k as u64,
            trans_a: self.trans_b,
            trans_b: self.trans_a,
            a: lay(br, bc, self.ldb, self.stride_b),
            b: lay(ar, ac, self.lda, self.stride_a),
            c: lay(self.m, self.n, self.ldc, self.stride_c),
        })
    }
}

/// ONNX `MatMul` lowered to GEMMs: `calls` lists element offsets `(a, b, c)` of each
/// strided-batched call of `desc` (one entry when the batch dims collapse).
#[derive(Debug, Clone, PartialEq)]
pub struct MatmulPlan {
    pub desc: GemmDesc,
    pub calls: Vec<(usize, usize, usize)>,
    /// ONNX output dims.
    pub out_dims: Vec<usize>,
}

/// Plans `MatMul(a, b)` for row-major contiguous operands of `a_dims` and `b_dims` (numpy
/// semantics: 1-D operands are promoted and the promoted axis dropped, batch dims broadcast).
pub fn matmul_plan(math: MathMode, a_dims: &[usize], b_dims: &[usize]) -> LibResult<MatmulPlan> {
    if a_dims.is_empty() || b_dims.is_empty() {
        return Err(invalid("MatMul", "scalar operands"));
    }
    let a_vec = a_dims.len() == 1;
    let b_vec = b_dims.len() == 1;
    let a2: Vec<usize> = if a_vec {
        vec![1, a_dims[0]]
    } else {
        a_dims.to_vec()
    };
    let b2: Vec<usize> = if b_vec {
        vec![b_dims[0], 1]
    } else {
        b_dims.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        return Err(invalid(
            "MatMul",
            format!("inner dims differ: {a_dims:?} · {b_dims:?}"),
        ));
    }
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let rank = ab.len().max(bb.len());
    let pad = |d: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (ab, bb) = (pad(ab), pad(bb));
    let mut batch = Vec::with_capacity(rank);
    for (x, y) in ab.iter().zip(&bb) {
        batch.push(match (x, y) {
            (x, y) if x == y => *x,
            (1, y) => *y,
            (x, 1) => *x,
            _ => {
                return Err(invalid(
                    "MatMul",
                    format!("batch dims do not broadcast: {a_dims:?} · {b_dims:?}"),
                ));
            }
        });
    }
    // Contiguous strides of each operand over the batch dims; 0 where it broadcasts.
    let strides = |dims: &[usize], mat: usize| -> Vec<usize> {
        let mut s = vec![0; rank];
        let mut acc = mat;
        for i in (0..rank).rev() {
            s[i] = if dims[i] == 1 { 0 } else { acc };
            acc *= dims[i];
        }
        s
    };
    let (sa, sb, sc) = (
        strides(&ab, m * k),
        strides(&bb, k * n),
        strides(&batch, m * n),
    );
    // Collapse adjacent batch dims where every operand's strides nest; drop size-1 dims.
    let mut dims: Vec<(usize, [usize; 3])> = Vec::new();
    for i in 0..rank {
        if batch[i] == 1 {
            continue;
        }
        let s = [sa[i], sb[i], sc[i]];
        if let Some((size, outer)) = dims.last_mut()
            && (0..3).all(|j| outer[j] == s[j] * batch[i])
        {
            *size *= batch[i];
            *outer = s;
            continue;
        }
        dims.push((batch[i], s));
    }
    let mut desc = GemmDesc::new(math, m, n, k);
    let mut calls = vec![(0, 0, 0)];
    if let Some(&(count, [a_s, b_s, c_s])) = dims.last() {
        if dims.len() == 1 && b_s == 0 && a_s == m * k {
            desc.m = m * count; // B shared by all: one taller GEMM
            desc.stride_a = desc.m * k;
            desc.stride_c = desc.m * n;
        } else {
            (desc.batch, desc.stride_a, desc.stride_b, desc.stride_c) = (count, a_s, b_s, c_s);
            for &(size, [oa, ob, oc]) in dims[..dims.len() - 1].iter().rev() {
                calls = (0..size)
                    .flat_map(|i| {
                        calls
                            .iter()
                            .map(move |&(a, b, c)| (a + i * oa, b + i * ob, c + i * oc))
                    })
                    .collect();
            }
            calls.sort_unstable();
        }
    }
    let mut out_dims = batch;
    if !a_vec {
        out_dims.push(m);
    }
    if !b_vec {
        out_dims.push(n);
    }
    desc.validate()?;
    let eb = math.elem_bytes();
    // Offsets reduce the alignment every call can rely on.
    for &(a, b, c) in &calls {
        for off in [a, b, c] {
            if off != 0 {
                desc.min_align = desc.min_align.min(1 << (off * eb).trailing_zeros());
            }
        }
    }
    Ok(MatmulPlan {
        desc,
        calls,
        out_dims,
    })
}

#[path = "gemm_lt.rs"]
mod blas;

pub use blas::{Blas, CUBLASLT_SYMBOLS, GemmArgs, GemmTactic, MAX_CANDIDATES};

#[cfg(test)]
#[path = "gemm_tests.rs"]
mod tests;
