//! CPU tests of [`super`]: the row-major swap against cuBLASLt's column-major semantics,
//! MatMul plans against numpy broadcasting, validation.
use super::*;
use cudarc::cublaslt::sys as lt;
use kiln_cuda::Device;

type Case<'a> = (&'a [usize], &'a [usize], &'a [usize], usize);

/// Row-major reference: D = alpha·op(A)·op(B) + beta·C, then the epilogue.
fn naive(d: &GemmDesc, a: &[f64], b: &[f64], c: &[f64], bias: &[f64]) -> Vec<f64> {
    let mut out = c.to_vec();
    for bt in 0..d.batch {
        for i in 0..d.m {
            for j in 0..d.n {
                let mut acc = 0.0;
                for p in 0..d.k {
                    let av = if d.trans_a {
                        a[bt * d.stride_a + p * d.lda + i]
                    } else {
                        a[bt * d.stride_a + i * d.lda + p]
                    };
                    let bv = if d.trans_b {
                        b[bt * d.stride_b + j * d.ldb + p]
                    } else {
                        b[bt * d.stride_b + p * d.ldb + j]
                    };
                    acc += av * bv;
                }
                let at = bt * d.stride_c + i * d.ldc + j;
                out[at] = epilogue(
                    d.epilogue,
                    d.alpha as f64 * acc
                        + if d.beta == 0.0 {
                            0.0
                        } else {
                            d.beta as f64 * c[at]
                        },
                    bias.get(j),
                );
            }
        }
    }
    out
}

fn epilogue(e: Epilogue, x: f64, bias: Option<&f64>) -> f64 {
    let x = if e.has_bias() {
        x + bias.copied().unwrap_or(f64::NAN)
    } else {
        x
    };
    match e {
        Epilogue::Relu | Epilogue::BiasRelu => x.max(0.0),
        Epilogue::GeluTanh | Epilogue::BiasGeluTanh => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }
        _ => x,
    }
}

/// cuBLASLt's documented semantics on column-major layouts: what the GPU will compute for
/// an [`LtProblem`] (D = alpha·op(A)·op(B) + beta·C, bias along rows). The pointers are
/// passed swapped, as `Blas::enqueue` does.
fn lt_emulate(d: &GemmDesc, a: &[f64], b: &[f64], c: &[f64], bias: &[f64]) -> Vec<f64> {
    let p = d.lt_problem().unwrap();
    let (lt_a, lt_b) = (b, a); // swapped operands
    let mut out = c.to_vec();
    let at = |l: &LtLayout, bt: usize, r: usize, col: usize| {
        bt * l.stride as usize + col * l.ld as usize + r
    };
    for bt in 0..p.c.batch as usize {
        for i in 0..p.m as usize {
            for j in 0..p.n as usize {
                let mut acc = 0.0;
                for q in 0..p.k as usize {
                    let av = if p.trans_a {
                        lt_a[at(&p.a, bt, q, i)]
                    } else {
                        lt_a[at(&p.a, bt, i, q)]
                    };
                    let bv = if p.trans_b {
                        lt_b[at(&p.b, bt, j, q)]
                    } else {
                        lt_b[at(&p.b, bt, q, j)]
                    };
                    acc += av * bv;
                }
                let o = at(&p.c, bt, i, j);
                out[o] = epilogue(
                    d.epilogue,
                    d.alpha as f64 * acc
                        + if d.beta == 0.0 {
                            0.0
                        } else {
                            d.beta as f64 * c[o]
                        },
                    bias.get(i),
                );
            }
        }
    }
    out
}

fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn check_swap(d: &GemmDesc) {
    let (sa, sb, sc) = d.spans().unwrap();
    let (a, b, c, bias) = (data(sa, 1), data(sb, 2), data(sc, 3), data(d.n, 4));
    let want = naive(d, &a, &b, &c, &bias);
    let got = lt_emulate(d, &a, &b, &c, &bias);
    for (i, (x, y)) in got.iter().zip(&want).enumerate() {
        assert!((x - y).abs() < 1e-9, "{d:?}: element {i}: {x} vs {y}");
    }
}

#[test]
fn row_major_swap_matches_naive_for_every_transpose_and_epilogue() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for e in [
            Epilogue::None,
            Epilogue::Relu,
            Epilogue::Bias,
            Epilogue::BiasRelu,
            Epilogue::BiasGeluTanh,
        ] {
            let mut d = GemmDesc::new(MathMode::Fp32, 3, 5, 4).transposed(ta, tb);
            d.epilogue = e;
            d.alpha = 0.5;
            d.beta = 0.25;
            check_swap(&d);
        }
    }
}

#[test]
fn padded_leading_dims_and_batches() {
    let mut d = GemmDesc::new(MathMode::Fp16, 2, 3, 5).transposed(true, false);
    d.lda += 3;
    d.ldb += 1;
    d.ldc += 2;
    d.batch = 3;
    d.stride_a = 5 * d.lda + 1;
    d.stride_b = 0; // one B for all batches
    d.stride_c = 2 * d.ldc + 4;
    check_swap(&d);
    let p = d.lt_problem().unwrap();
    assert_eq!((p.m, p.n, p.k), (3, 2, 5));
    assert_eq!((p.a.rows, p.a.cols, p.a.ld, p.a.stride), (3, 5, 4, 0));
    assert_eq!((p.b.rows, p.b.cols, p.b.ld), (2, 5, 5));
    assert!(p.trans_b && !p.trans_a);
}

#[test]
fn invalid_descriptions_are_errors() {
    let mut d = GemmDesc::new(MathMode::Fp32, 4, 4, 4);
    d.lda = 3;
    assert!(matches!(d.validate(), Err(LibError::Invalid { .. })));
    let mut d = GemmDesc::new(MathMode::Fp32, 4, 4, 4);
    d.batch = 2;
    d.stride_c = 3;
    assert!(d.validate().unwrap_err().to_string().contains("overlaps"));
    assert!(matches!(
        GemmDesc::new(MathMode::Fp32, 0, 4, 4).validate(),
        Err(LibError::Unsupported { .. })
    ));
    let mut d = GemmDesc::new(MathMode::Bf16, 4, 4, 4);
    d.min_align = 1;
    assert!(d.validate().is_err());
    let d = GemmDesc::new(MathMode::Fp32, usize::MAX / 2, 4, 4);
    assert!(d.validate().is_err());
}

fn emulate_plan(p: &MatmulPlan, a: &[f64], b: &[f64], out_len: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; out_len];
    for &(oa, ob, oc) in &p.calls {
        let (sa, sb, sc) = p.desc.spans().unwrap();
        let got = naive(
            &p.desc,
            &a[oa..oa + sa],
            &b[ob..ob + sb],
            &out[oc..oc + sc],
            &[],
        );
        out[oc..oc + sc].copy_from_slice(&got);
    }
    out
}

/// numpy MatMul on contiguous operands (batch broadcasting by index arithmetic).
fn numpy_matmul(ad: &[usize], bd: &[usize], a: &[f64], b: &[f64], out: &[usize]) -> Vec<f64> {
    let a2 = if ad.len() == 1 {
        vec![1, ad[0]]
    } else {
        ad.to_vec()
    };
    let b2 = if bd.len() == 1 {
        vec![bd[0], 1]
    } else {
        bd.to_vec()
    };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let batch: usize = out.iter().product::<usize>() / (m * n);
    let rank = a2.len().max(b2.len()) - 2;
    let bdims: Vec<usize> = (0..rank)
        .map(|i| {
            let g = |d: &[usize]| d.len().checked_sub(2 + rank - i).map_or(1, |j| d[j]);
            g(&a2).max(g(&b2))
        })
        .collect();
    let offset = |d: &[usize], idx: &[usize], mat: usize| {
        let nb = d.len() - 2;
        let mut off = 0;
        let mut mult = mat;
        for j in (0..nb).rev() {
            let i = idx[rank - nb + j];
            off += if d[j] == 1 { 0 } else { i * mult };
            mult *= d[j];
        }
        off
    };
    let mut res = vec![0.0; batch * m * n];
    for bt in 0..batch {
        let mut idx = vec![0; rank];
        let mut r = bt;
        for j in (0..rank).rev() {
            idx[j] = r % bdims[j];
            r /= bdims[j];
        }
        let (oa, ob) = (offset(&a2, &idx, m * k), offset(&b2, &idx, k * n));
        for i in 0..m {
            for j in 0..n {
                res[bt * m * n + i * n + j] =
                    (0..k).map(|p| a[oa + i * k + p] * b[ob + p * n + j]).sum();
            }
        }
    }
    res
}

#[test]
fn matmul_plans_cover_numpy_broadcasting() {
    let cases: &[Case<'_>] = &[
        (&[3, 4], &[4, 5], &[3, 5], 1),
        (&[2, 3, 4], &[4, 5], &[2, 3, 5], 1), // folded into one 6×4 GEMM
        (&[4], &[2, 4, 5], &[2, 5], 1),       // vector · batch
        (&[2, 3, 4], &[4], &[2, 3], 1),       // batch · vector
        (&[4], &[4], &[], 1),                 // dot
        (&[2, 1, 3, 4], &[1, 5, 4, 2], &[2, 5, 3, 2], 2), // outer call per A batch
        (&[3, 4], &[6, 4, 2], &[6, 3, 2], 1), // A shared: stride 0
        (&[2, 3, 3, 4], &[2, 3, 4, 2], &[2, 3, 3, 2], 1), // collapses to batch 6
        (&[1, 1, 3, 4], &[4, 2], &[1, 1, 3, 2], 1),
    ];
    for &(ad, bd, out, ncalls) in cases {
        let p = matmul_plan(MathMode::Fp32, ad, bd).unwrap();
        assert_eq!(p.out_dims, out, "{ad:?}·{bd:?}");
        assert_eq!(p.calls.len(), ncalls, "{ad:?}·{bd:?}: {p:?}");
        let a = data(ad.iter().product(), 7);
        let b = data(bd.iter().product(), 8);
        let n_out = out.iter().product();
        let got = emulate_plan(&p, &a, &b, n_out);
        let want = numpy_matmul(ad, bd, &a, &b, out);
        assert_eq!(got.len(), want.len());
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < 1e-9, "{ad:?}·{bd:?}: {got:?} vs {want:?}");
        }
    }
    let folded = matmul_plan(MathMode::Fp32, &[2, 3, 4], &[4, 5]).unwrap();
    assert_eq!((folded.desc.m, folded.desc.batch), (6, 1));
    let split = matmul_plan(MathMode::Fp16, &[2, 1, 3, 4], &[1, 5, 4, 2]).unwrap();
    assert_eq!(split.desc.min_align, 4, "C offsets of 30 f16 = 60 bytes");
}

#[test]
fn matmul_rejects_mismatches() {
    assert!(matmul_plan(MathMode::Fp32, &[3, 4], &[5, 2]).is_err());
    assert!(matmul_plan(MathMode::Fp32, &[2, 3, 4], &[3, 4, 2]).is_err());
    assert!(matmul_plan(MathMode::Fp32, &[], &[3]).is_err());
}

#[test]
fn modes_and_epilogues_map_to_library_values() {
    assert_eq!(MathMode::from_precision(Precision::Int8), None);
    assert_eq!(MathMode::Tf32.storage(), DataType::F32);
    assert_eq!(
        MathMode::Tf32.lt_compute_type(),
        lt::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
    );
    assert_eq!(
        MathMode::Bf16.lt_data_type(),
        lt::cudaDataType_t::CUDA_R_16BF
    );
    assert_eq!(Epilogue::BiasRelu.lt() as u32, 6);
    assert!(!Epilogue::GeluTanh.has_bias());
    let t = GemmTactic {
        algo: [1, 2, 3, 4, 5, 6, 7, u64::MAX],
        workspace: 1 << 20,
    };
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<GemmTactic>(&json).unwrap(), t);
}

#[test]
fn blas_without_cuda_is_an_err_not_a_panic() {
    if let Ok(dev) = Device::open(0) {
        let _ = Blas::new(&dev); // a GPU machine: covered by tests/gpu_libs.rs
    }
}
