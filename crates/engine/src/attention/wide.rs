//! The AVX2/F16C attention kernel: the portable kernel's arithmetic, 8 lanes
//! at a time. Scores for 8 positions (16 when a block holds both runs) of up
//! to `QUERIES` queries come from each widened K column vector (K is stored
//! transposed within a block, so no sum across lanes is needed); the
//! weighted sum of V for 8, 16 or 32 dimensions of those queries comes from
//! each widened V row. Each lane computes exactly what the portable kernel
//! computes for it (fused multiply-adds in the same order), whatever the
//! tile, so a prompt chunk and a decode step agree to the bit.
//!
//! A decode is one query per KV head group, so its attention is a stream
//! through scattered blocks with little arithmetic per byte: how many sums
//! are in flight and whether the next block is already on its way decide its
//! speed (`bench engine --context 1024`), hence the pairs of runs and the
//! prefetches.

use std::arch::x86_64::*;

use half::f16;

use super::{TileJob, softmax_rows};

/// Queries whose accumulators stay in registers at once.
const QUERIES: usize = 4;
/// How far ahead the weighted sum of V asks for rows: about one block, so
/// the next block (elsewhere in memory) is on its way when it is reached.
const PREFETCH_POSITIONS: usize = 16;

/// # Safety
/// The CPU must support AVX2, FMA and F16C; `job.fits_wide()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_tile_avx2(job: &TileJob, o: &mut [f32]) {
    let (hd, bs) = (job.shape.head_dim, job.kv.block_size);
    let nq = job.queries();
    let n_max = job.n_ctx(nq - 1);
    // Rows padded to whole pairs of lanes: lanes past a query's context are
    // computed from whatever the block holds there and never read.
    let stride = n_max.next_multiple_of(16);
    // Two runs of 8 positions at once when they share a block: twice the
    // independent sums in flight, and each K row of a block read once.
    let pairs = bs.is_multiple_of(16);
    let mut scores = vec![0f32; nq * stride];
    let queries: Vec<&[f32]> = (0..nq).map(|j| job.query(j)).collect();
    let n_ctx: Vec<usize> = (0..nq).map(|j| job.n_ctx(j)).collect();
    let scale = _mm256_set1_ps(job.scale());
    let mut p0 = 0;
    while p0 < n_max {
        if p0 % bs == 0 && p0 + bs < n_max {
            // The next block is elsewhere in memory: fetch it while this one is used.
            prefetch(&job.kv.k[job.block_base(p0 + bs)..][..bs * hd]);
        }
        let column = &job.kv.k[job.block_base(p0) + p0 % bs..];
        let two = pairs && p0 + 8 < n_max;
        let mut first = 0;
        while first < nq {
            let qs = &queries[first..nq.min(first + QUERIES)];
            let rows = &mut scores[first * stride + p0..];
            // SAFETY: the caller's CPU has the features; `column` holds
            // `hd` runs of `bs` values from a multiple of 8 (of 16 when
            // `two`) below `bs`, and `rows` holds `qs.len()` rows of
            // `stride` from `p0 + 16 <= stride`.
            unsafe {
                match (qs.len(), two) {
                    (4, true) => scores_for::<4, 2>(qs, column, bs, hd, scale, rows, stride),
                    (3, true) => scores_for::<3, 2>(qs, column, bs, hd, scale, rows, stride),
                    (2, true) => scores_for::<2, 2>(qs, column, bs, hd, scale, rows, stride),
                    (_, true) => scores_for::<1, 2>(qs, column, bs, hd, scale, rows, stride),
                    (4, false) => scores_for::<4, 1>(qs, column, bs, hd, scale, rows, stride),
                    (3, false) => scores_for::<3, 1>(qs, column, bs, hd, scale, rows, stride),
                    (2, false) => scores_for::<2, 1>(qs, column, bs, hd, scale, rows, stride),
                    (_, false) => scores_for::<1, 1>(qs, column, bs, hd, scale, rows, stride),
                }
            }
            first += qs.len();
        }
        p0 += if two { 16 } else { 8 };
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
            // 32 dimensions at once for up to 3 queries (12 accumulators
            // and 4 V vectors fill the 16 registers), else 16 or 8.
            let v = job.kv.v;
            let lanes = if d + 32 <= hd && count <= 3 {
                32
            } else if d + 16 <= hd {
                16
            } else {
                8
            };
            unsafe {
                match (count, lanes) {
                    (3, 32) => weighted_sum::<3, 4>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (2, 32) => weighted_sum::<2, 4>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (_, 32) => weighted_sum::<1, 4>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (4, 16) => weighted_sum::<4, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (3, 16) => weighted_sum::<3, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (2, 16) => weighted_sum::<2, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (_, 16) => weighted_sum::<1, 2>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (4, _) => weighted_sum::<4, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (3, _) => weighted_sum::<3, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (2, _) => weighted_sum::<2, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                    (_, _) => weighted_sum::<1, 1>(&at, &rows, v, &scores, &n_ctx, o, hd),
                }
            }
            d += lanes;
        }
        first += count;
    }
}

/// Asks for `data`'s cache lines ahead of use (a hint: no effect on results).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn prefetch(data: &[f16]) {
    for line in data.chunks(32) {
        _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8);
    }
}

/// `C` queries' scores for `8 * R` positions: `R` widened K vectors per
/// dimension. Each lane sums over dimensions in order, whatever `R`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scores_for<const C: usize, const R: usize>(
    qs: &[&[f32]],
    column: &[f16],
    bs: usize,
    hd: usize,
    scale: __m256,
    rows: &mut [f32],
    stride: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); R]; C];
    let q: [*const f32; C] = core::array::from_fn(|c| qs[c].as_ptr());
    for i in 0..hd {
        let k: [__m256; R] = core::array::from_fn(|r| {
            // SAFETY: `i * bs + 8 * R <= column.len()` (the caller's bound).
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(column.as_ptr().add(i * bs + 8 * r) as *const __m128i)) }
        });
        for c in 0..C {
            // SAFETY: `i < hd`, the query's length.
            let qi = _mm256_set1_ps(unsafe { *q[c].add(i) });
            for r in 0..R {
                acc[c][r] = _mm256_fmadd_ps(qi, k[r], acc[c][r]);
            }
        }
    }
    for (c, a) in acc.iter().enumerate() {
        for (r, lanes) in a.iter().enumerate() {
            // SAFETY: row `c` has `8 * R` values from here (the caller's bound).
            unsafe { _mm256_storeu_ps(rows.as_mut_ptr().add(c * stride + 8 * r), _mm256_mul_ps(*lanes, scale)) };
        }
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
        if let Some(&ahead) = rows.get(p + PREFETCH_POSITIONS) {
            // SAFETY: `ahead + d` is within V (a position's row): a hint only.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(ahead + d) as *const i8) };
        }
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
