//! GPU kernel tests: GatherND (batch_dims 0, 1, 2; int64 and int32 indices, negative ones)
//! and MaxPool's `Indices` output (row- and column-major), on random shapes.

use super::*;
use kiln_engine::kernels::nvrtc::gather_nd::{self, GatherNdGeometry};

impl Ctx {
    pub(crate) fn dim(&self, lo: usize, hi: usize) -> usize {
        self.rng.borrow_mut().usize(lo..=hi)
    }

    /// `tuples` index tuples for the dims `addressed`, each component uniform in `[-d, d)`
    /// (negative ones count from the end).
    pub(crate) fn index_tuples(&self, tuples: usize, addressed: &[usize]) -> Vec<f64> {
        let mut r = self.rng.borrow_mut();
        (0..tuples)
            .flat_map(|_| {
                addressed
                    .iter()
                    .map(|&d| r.i64(-(d as i64)..d as i64) as f64)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

pub(crate) fn gather_nd_batch_dims(ctx: &Ctx) -> Result<()> {
    let mut negatives = 0usize;
    for dt in [DataType::F32, DataType::F16, DataType::I64, DataType::Bool] {
        let (lo, hi) = if dt == DataType::Bool {
            (0.0, 2.0)
        } else {
            (-9.0, 9.0)
        };
        for it in [DataType::I64, DataType::I32] {
            // (data rank, batch_dims, tuple length k, extra index dims before the tuple)
            for (rank, b, k, extra) in [
                (3usize, 0usize, 1usize, 2usize),
                (3, 0, 2, 1),
                (3, 0, 3, 2),
                (2, 0, 2, 0),
                (3, 1, 1, 1),
                (3, 1, 2, 2),
                (4, 1, 2, 1),
                (4, 2, 1, 1),
                (4, 2, 2, 0),
            ] {
                let data_dims: Vec<usize> = (0..rank).map(|_| ctx.dim(2, 6)).collect();
                let mut idx_dims = data_dims[..b].to_vec();
                idx_dims.extend((0..extra).map(|_| ctx.dim(1, 4)));
                idx_dims.push(k);
                let geo = GatherNdGeometry::new(&data_dims, &idx_dims, b as i64)?;
                let tuples = geo.batch * geo.tuples;
                let idx = ctx.index_tuples(tuples, &data_dims[b..b + k]);
                negatives += idx.iter().filter(|&&v| v < 0.0).count();
                let n = node("GatherND", 13, vec![ctx.rand(dt, &data_dims, lo, hi)])
                    .konst(t(it, &idx_dims, &idx))
                    .attr("batch_dims", b as i64);
                check(
                    ctx,
                    &format!("GatherND {dt} {it} data {data_dims:?} indices {idx_dims:?} b {b}"),
                    &n,
                    0.0,
                    |i, o| {
                        gather_nd::gather_nd(&ctx.lib, &ctx.stream, dt, it, &geo, i[0], i[1], o[0])
                    },
                )?;
            }
        }
    }
    ensure!(negatives > 0, "no negative index was drawn");
    Ok(())
}

pub(crate) fn gather_nd_out_of_range_writes_zeros(ctx: &Ctx) -> Result<()> {
    // kiln-reference rejects these, so the expected output is written here: tuple 0 is in
    // range (row 1), tuple 1 has a component past the end, tuple 2 one before -d.
    let dims = [3usize, 4];
    let x = ctx.rand(DataType::F32, &dims, 1.0, 9.0);
    let data = decode(DataType::F32, &x.bytes);
    let idx = t(DataType::I64, &[3, 1], &[1.0, 3.0, -4.0]);
    let geo = GatherNdGeometry::new(&dims, &[3, 1], 0)?;
    let mut want = data[4..8].to_vec();
    want.extend([0.0; 8]);
    let (xb, ib) = (ctx.upload(&x)?, ctx.upload(&idx)?);
    let out = ctx.poisoned(12 * 4)?;
    gather_nd::gather_nd(
        &ctx.lib,
        &ctx.stream,
        DataType::F32,
        DataType::I64,
        &geo,
        ptr(&xb),
        ptr(&ib),
        ptr(&out),
    )?;
    let got = ctx.download(&out, 12 * 4)?;
    compare(
        "GatherND out of range",
        &t(DataType::F32, &[3, 4], &want),
        &got,
        0.0,
    )
}

pub(crate) fn max_pool_indices(ctx: &Ctx) -> Result<()> {
    // (kernel, strides, pads [t, l, b, r], dilations, ceil); 1-D cases have height 1.
    let cfgs: [([usize; 2], [usize; 2], [usize; 4], [usize; 2], bool); 4] = [
        ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], false),
        ([2, 2], [2, 2], [0, 0, 0, 0], [1, 1], true),
        ([3, 2], [1, 2], [1, 0, 2, 1], [2, 1], false),
        ([3, 3], [2, 2], [0, 1, 1, 0], [1, 1], true),
    ];
    for dt in FLOATS {
        for (k, s, p, d, ceil) in cfgs {
            for one_d in [false, true] {
                let (batch, c) = (ctx.dim(1, 3), ctx.dim(1, 4));
                let (h, w) = (if one_d { 1 } else { ctx.dim(7, 13) }, ctx.dim(7, 13));
                let (k, s, p, d) = if one_d {
                    ([1, k[1]], [1, s[1]], [0, p[1], 0, p[3]], [1, d[1]])
                } else {
                    (k, s, p, d)
                };
                let dims: Vec<usize> = if one_d {
                    vec![batch, c, w]
                } else {
                    vec![batch, c, h, w]
                };
                let out = [
                    pool::Window2d::output_len(h, k[0], s[0], d[0], (p[0], p[2]), ceil)
                        .context("size")?,
                    pool::Window2d::output_len(w, k[1], s[1], d[1], (p[1], p[3]), ceil)
                        .context("size")?,
                ];
                let win = pool::Window2d {
                    input: [h, w],
                    output: out,
                    kernel: k,
                    strides: s,
                    dilations: d,
                    pad_begin: [p[0], p[1]],
                    pad_end: [p[2], p[3]],
                };
                let sp = if one_d { 1 } else { 2 };
                let pick =
                    |v: [usize; 2]| -> Vec<i64> { v[2 - sp..].iter().map(|&x| x as i64).collect() };
                let pads: Vec<i64> = if one_d {
                    vec![p[1] as i64, p[3] as i64]
                } else {
                    p.iter().map(|&v| v as i64).collect()
                };
                for order in [0i64, 1] {
                    let mut n = node("MaxPool", 12, vec![ctx.rand(dt, &dims, -5.0, 5.0)])
                        .attr("kernel_shape", pick(k))
                        .attr("strides", pick(s))
                        .attr("pads", pads.clone())
                        .attr("dilations", pick(d))
                        .attr("ceil_mode", i64::from(ceil))
                        .attr("storage_order", order);
                    n.outputs = 2;
                    check(
                        ctx,
                        &format!("MaxPool+Indices {dt} {dims:?} {win:?} order {order}"),
                        &n,
                        0.0,
                        |i, o| {
                            pool::max_pool2d_with_indices(
                                &ctx.lib,
                                &ctx.stream,
                                dt,
                                batch * c,
                                &win,
                                i[0],
                                o[0],
                                pool::PoolIndices {
                                    ptr: o[1],
                                    column_major: order == 1,
                                },
                            )
                        },
                    )?;
                }
            }
        }
    }
    Ok(())
}
