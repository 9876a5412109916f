//! The AVX2/F16C attention kernel: the portable kernel's arithmetic, 8 lanes
//! at a time. Scores for 8 positions of up to `QUERIES` queries come from
//! each widened K column vector (K is stored transposed within a block, so
//! no sum across lanes is needed); the weighted sum of V for 8 or 16
//! dimensions of those queries comes from each widened V row. Each lane
//! computes exactly what the portable kernel computes for it (fused
//! multiply-adds in the same order), whatever the tile, so a prompt chunk
//! and a decode step agree to the bit.

use std::arch::x86_64::*;

use half::f16;

use super::{TileJob, softmax_rows};

/// Queries whose accumulators stay in registers at once.
const QUERIES: usize = 4;

/// # Safety
/// The CPU must support AVX2, FMA and F16C; `job.fits_wide()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_tile_avx2(job: &TileJob, o: &mut [f32]) {
    let (hd, bs) = (job.shape.head_dim, job.kv.block_size);
    let nq = job.queries();
    let n_max = job.n_ctx(nq - 1);
    // Rows padded to whole lanes: lanes past a query's context are computed
    // from whatever the block holds there and never read.
    let stride = n_max.next_multiple_of(8);
    let mut scores = vec![0f32; nq * stride];
    let queries: Vec<&[f32]> = (0..nq).map(|j| job.query(j)).collect();
    let n_ctx: Vec<usize> = (0..nq).map(|j| job.n_ctx(j)).collect();
    let scale = _mm256_set1_ps(job.scale());
    for p0 in (0..n_max).step_by(8) {
        let column = &job.kv.k[job.block_base(p0) + p0 % bs..];
        let mut first = 0;
        while first < nq {
            let qs = &queries[first..nq.min(first + QUERIES)];
            let rows = &mut scores[first * stride + p0..];
            // SAFETY: the caller's CPU has the features; `column` holds
            // `hd` runs of `bs` values from a multiple of 8 below `bs`, and
            // `rows` holds `qs.len()` rows of `stride` from `p0 + 8 <= stride`.
            unsafe {
                match qs.len() {
                    4 => scores_for::<4>(qs, column, bs, hd, scale, rows, stride),
                    3 => scores_for::<3>(qs, column, bs, hd, scale, rows, stride),
                    2 => scores_for::<2>(qs, column, bs, hd, scale, rows, stride),
                    _ => scores_for::<1>(qs, column, bs, hd, scale, rows, stride),
                }
            }
            first += qs.len();
        }
    }
    softmax_rows(&mut scores, stride, |j| n_ctx[j]);
    let rows: Vec<usize> = (0..n_max).map(|p| job.block_base(p) + (p % bs) * hd).collect();
    let mut first = 0;
    while first < nq {
        let count = QUERIES.min(nq - first);
        let mut d = 0;
        while d < hd {
            let at = Group { first, d, stride };
            // SAFETY: the caller's CPU has the features; `d + 8 * W <= hd`
            // bounds every V load and output store, the scores rows hold
            // `n_ctx` values each.
            let (v, wide) = (job.kv.v, d + 16 <= hd);
            unsafe {
                match (count, wide) {
                    (4, true) => weighted_sum::<4, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (3, true) => weighted_sum::<3, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (2, true) => weighted_sum::<2, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (_, true) => weighted_sum::<1, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (4, false) => weighted_sum::<4, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (3, false) => weighted_sum::<3, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (2, false) => weighted_sum::<2, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (_, false) => weighted_sum::<1, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                }
            }
            d += if wide { 16 } else { 8 };
        }
        first += count;
    }
}

/// `C` queries' scores for 8 positions: one widened K vector per dimension.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scores_for<const C: usize>(
    qs: &[&[f32]],
    column: &[f16],
    bs: usize,
    hd: usize,
    scale: __m256,
    rows: &mut [f32],
    stride: usize,
) {
    let mut acc = [_mm256_setzero_ps(); C];
    let q: [*const f32; C] = core::array::from_fn(|c| qs[c].as_ptr());
    for i in 0..hd {
        // SAFETY: `i * bs + 8 <= column.len()` (the caller's bound).
        let k = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(column.as_ptr().add(i * bs) as *const __m128i)) };
        for c in 0..C {
            // SAFETY: `i < hd`, the query's length.
            let qi = unsafe { *q[c].add(i) };
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(qi), k, acc[c]);
        }
    }
    for (c, a) in acc.iter().enumerate() {
        // SAFETY: row `c` has 8 values from here (the caller's bound).
        unsafe { _mm256_storeu_ps(rows.as_mut_ptr().add(c * stride), _mm256_mul_ps(*a, scale)) };
    }
}

/// Which queries and dimensions a `weighted_sum` covers.
struct Group {
    first: usize,
    d: usize,
    stride: usize,
}

/// `C` queries' outputs at dimensions `d..d + 8 * W`: over the positions
/// all of them attend to, then each query's own last ones.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn weighted_sum<const C: usize, const W: usize>(
    at: &Group,
    rows: &[usize],
    v: &[f16],
    scores: &[f32],
    n_ctx: &[usize],
    o: &mut [f32],
    hd: usize,
) {
    let Group { first, d, stride } = *at;
    let mut acc = [[_mm256_setzero_ps(); W]; C];
    let load = |p: usize| -> [__m256; W] {
        let mut x = [_mm256_setzero_ps(); W];
        for (w, lane) in x.iter_mut().enumerate() {
            // SAFETY: `d + 8 * W <= hd` keeps the load within position `p`'s row.
            *lane = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(rows[p] + d + 8 * w) as *const __m128i)) };
        }
        x
    };
    let common = n_ctx[first..first + C].iter().copied().min().unwrap_or(0);
    let weights: [&[f32]; C] = core::array::from_fn(|c| &scores[(first + c) * stride..][..n_ctx[first + c]]);
    for p in 0..common {
        let x = load(p);
        for (a, ws) in acc.iter_mut().zip(&weights) {
            // SAFETY: `p < common`, at most every query's context.
            let s = _mm256_set1_ps(unsafe { *ws.get_unchecked(p) });
            for w in 0..W {
                a[w] = _mm256_fmadd_ps(s, x[w], a[w]);
            }
        }
    }
    for (a, ws) in acc.iter_mut().zip(&weights) {
        for (p, &weight) in ws.iter().enumerate().skip(common) {
            let x = load(p);
            let s = _mm256_set1_ps(weight);
            for w in 0..W {
                a[w] = _mm256_fmadd_ps(s, x[w], a[w]);
            }
        }
    }
    for (c, a) in acc.iter().enumerate() {
        for (w, lane) in a.iter().enumerate() {
            // SAFETY: `d + 8 * W <= hd` keeps the store within query `first + c`'s output.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add((first + c) * hd + d + 8 * w), *lane) };
        }
    }
}
