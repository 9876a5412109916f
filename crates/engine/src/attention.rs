//! Paged KV storage and attention that reads K/V through block tables.
//!
//! Layout per layer: `[n_blocks][n_kv_heads][block_size][head_dim]` for K
//! and for V. A token's slot is `block * block_size + offset`; within a
//! block, one KV head's rows are contiguous, so attention (which reads one
//! head's rows position after position) streams memory instead of striding
//! over the other heads' values.
//! Values are stored as f16 (llama.cpp's default cache type): half the
//! memory per token, so twice the sequences per KV budget; rows are widened
//! to f32 (F16C when present) as attention reads them.
//! Which blocks belong to whom is the pool's business (`kv.rs`); this file
//! only stores numbers.

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// K/V tensors for every layer, addressed by slot.
pub struct KvStore {
    pub block_size: usize,
    pub n_blocks: usize,
    pub kv_dim: usize,
    pub head_dim: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvStore {
    /// `kv_dim` is a whole number of heads of `head_dim` values.
    pub fn new(n_layers: usize, n_blocks: usize, block_size: usize, kv_dim: usize, head_dim: usize) -> Self {
        let n = n_blocks * block_size * kv_dim;
        KvStore {
            block_size,
            n_blocks,
            kv_dim,
            head_dim: head_dim.max(1),
            k: (0..n_layers).map(|_| vec![f16::ZERO; n]).collect(),
            v: (0..n_layers).map(|_| vec![f16::ZERO; n]).collect(),
        }
    }

    /// Bytes one block costs across all layers (K and V, f16).
    pub fn bytes_per_block(n_layers: usize, block_size: usize, kv_dim: usize) -> usize {
        n_layers * 2 * block_size * kv_dim * std::mem::size_of::<f16>()
    }

    /// The slot of position `pos` under `table`, if the table covers it.
    pub fn slot(&self, table: &[u32], pos: usize) -> Option<usize> {
        let b = *table.get(pos / self.block_size)? as usize;
        (b < self.n_blocks).then_some(b * self.block_size + pos % self.block_size)
    }

    /// Stores one token's K and V rows (`kv_dim` values each, head by head).
    pub fn write(&mut self, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        let (bs, hd) = (self.block_size, self.head_dim);
        let (block, offset) = (slot / bs, slot % bs);
        for (head, (kh, vh)) in k.chunks_exact(hd).zip(v.chunks_exact(hd)).enumerate() {
            let at = ((block * (self.kv_dim / hd) + head) * bs + offset) * hd;
            self.k[layer][at..at + hd].convert_from_f32_slice(kh);
            self.v[layer][at..at + hd].convert_from_f32_slice(vh);
        }
    }

    /// Copies block `from`'s K/V into block `to`, in every layer.
    pub fn copy_block(&mut self, from: usize, to: usize) {
        let n = self.block_size * self.kv_dim;
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            layer.copy_within(from * n..(from + 1) * n, to * n);
        }
    }

    pub fn layer(&self, layer: usize) -> KvView<'_> {
        KvView {
            k: &self.k[layer],
            v: &self.v[layer],
            block_size: self.block_size,
            n_kv_heads: self.kv_dim / self.head_dim,
        }
    }
}

/// Shapes for one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// One layer's K/V storage as attention reads it.
#[derive(Clone, Copy)]
pub struct KvView<'a> {
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub block_size: usize,
    pub n_kv_heads: usize,
}

/// Causal attention for a batch of tokens of possibly different sequences.
/// Token `t` attends to positions `0..=pos[t]` of its sequence, read from the
/// slots its block table `tables[t]` maps them to. `q` is `[T][n_heads*hd]`,
/// `out` the same shape. K/V for every attended position must be written.
pub fn paged_attention(shape: AttnShape, q: &[f32], kv: KvView, tables: &[&[u32]], pos: &[usize], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let wide = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    attention_impl(wide, shape, q, kv, tables, pos, out)
}

/// `wide` selects the AVX2/F16C kernels; callers check the features.
fn attention_impl(
    wide: bool,
    shape: AttnShape,
    q: &[f32],
    kv: KvView,
    tables: &[&[u32]],
    pos: &[usize],
    out: &mut [f32],
) {
    let AttnShape { n_heads, n_kv_heads, head_dim: hd } = shape;
    let group = n_heads / n_kv_heads;
    // One job per (token, KV head): the `group` query heads that share a KV
    // head (grouped-query attention) are consecutive in `q` and `out`, and
    // read each K and V row once between them instead of once each.
    out.par_chunks_mut(group * hd).enumerate().for_each(|(i, o)| {
        let t = i / n_kv_heads;
        let job = GroupJob {
            q: &q[i * group * hd..(i + 1) * group * hd],
            kv,
            table: tables[t],
            kv_head: i % n_kv_heads,
            n_ctx: pos[t] + 1,
            head_dim: hd,
        };
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` is only true when AVX2, FMA and F16C were detected.
            return unsafe { attend_group_avx2(&job, o) };
        }
        attend_group_portable(&job, o)
    });
}

/// One (token, KV head) pair of `paged_attention`: the query heads of one
/// group against the positions of one sequence.
struct GroupJob<'a> {
    /// `[heads of the group][head_dim]`.
    q: &'a [f32],
    kv: KvView<'a>,
    table: &'a [u32],
    kv_head: usize,
    n_ctx: usize,
    head_dim: usize,
}

impl GroupJob<'_> {
    /// Where each attended position's K (and V) values start, in position
    /// order: walked block by block, with no division per position.
    fn rows(&self) -> impl Iterator<Item = usize> + '_ {
        let (bs, hd) = (self.kv.block_size, self.head_dim);
        self.table
            .iter()
            .flat_map(move |&b| {
                let first = ((b as usize * self.kv.n_kv_heads + self.kv_head) * bs) * hd;
                (0..bs).map(move |o| first + o * hd)
            })
            .take(self.n_ctx)
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Turns each head's row of scores (`[head][n]`) into softmax weights.
fn softmax_rows(scores: &mut [f32], n: usize) {
    for row in scores.chunks_exact_mut(n) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

fn attend_group_portable(job: &GroupJob, o: &mut [f32]) {
    let (hd, n) = (job.head_dim, job.n_ctx);
    let heads = job.q.len() / hd;
    let scale = job.scale();
    let mut row = vec![0f32; hd];
    let mut scores = vec![0f32; heads * n];
    for (p, r) in job.rows().enumerate() {
        job.kv.k[r..r + hd].convert_to_f32_slice(&mut row);
        for h in 0..heads {
            scores[h * n + p] = dot(&job.q[h * hd..(h + 1) * hd], &row) * scale;
        }
    }
    softmax_rows(&mut scores, n);
    o.fill(0.0);
    for (p, r) in job.rows().enumerate() {
        job.kv.v[r..r + hd].convert_to_f32_slice(&mut row);
        for h in 0..heads {
            let w = scores[h * n + p];
            o[h * hd..(h + 1) * hd].iter_mut().zip(&row).for_each(|(a, x)| *a += w * x);
        }
    }
}

/// Heads handled together by the AVX2 kernel: their accumulators stay in
/// registers (four heads x one 8-lane vector each, plus the row).
#[cfg(target_arch = "x86_64")]
const WIDE_HEADS: usize = 4;

/// How many positions ahead the AVX2 kernel prefetches K rows.
#[cfg(target_arch = "x86_64")]
const PREFETCH_POSITIONS: usize = 4;

/// Asks for every cache line of `row` to be brought in (a hint: no fault,
/// no effect on results).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_row<const HINT: i32>(row: &[f16]) {
    use std::arch::x86_64::_mm_prefetch;
    // 32 f16 values per 64-byte line.
    for line in row.chunks(32) {
        // SAFETY: prefetching is a hint and never faults; the address is in `row`.
        unsafe { _mm_prefetch::<HINT>(line.as_ptr() as *const i8) };
    }
}

/// Grouped attention with F16C widening fused into 8-wide FMAs. Scores: each
/// K row is widened once for all heads of the group, and each head's dot
/// product runs on two accumulators. Weighted sum of V: 8 dimensions at a
/// time over all positions, each head's sum held in a register.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_group_avx2(job: &GroupJob, o: &mut [f32]) {
    use std::arch::x86_64::*;
    let (hd, n) = (job.head_dim, job.n_ctx);
    let heads = job.q.len() / hd;
    let wide = hd / 8 * 8;
    let scale = job.scale();
    let mut row = vec![0f32; hd];
    let mut scores = vec![0f32; heads * n];
    let rows: Vec<usize> = job.rows().collect();
    for (p, &r) in rows.iter().enumerate() {
        // The K row a few positions on, into L1; this V row, into L2 for the
        // weighted sum below. Blocks lie anywhere in memory, so the hardware
        // prefetcher alone stalls at every block boundary.
        if let Some(&ahead) = rows.get(p + PREFETCH_POSITIONS) {
            prefetch_row::<_MM_HINT_T0>(&job.kv.k[ahead..ahead + hd]);
        }
        prefetch_row::<_MM_HINT_T1>(&job.kv.v[r..r + hd]);
        let k = &job.kv.k[r..r + hd];
        let mut i = 0;
        while i < wide {
            // SAFETY: i + 8 <= wide <= hd bounds the load from `k` and the store to `row`.
            unsafe {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
                _mm256_storeu_ps(row.as_mut_ptr().add(i), x);
            }
            i += 8;
        }
        for j in wide..hd {
            row[j] = k[j].to_f32();
        }
        for h in 0..heads {
            let q = &job.q[h * hd..(h + 1) * hd];
            let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= wide {
                // SAFETY: i + 16 <= wide <= hd bounds the four loads.
                unsafe {
                    a = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(row.as_ptr().add(i)), a);
                    b = _mm256_fmadd_ps(
                        _mm256_loadu_ps(q.as_ptr().add(i + 8)),
                        _mm256_loadu_ps(row.as_ptr().add(i + 8)),
                        b,
                    );
                }
                i += 16;
            }
            if i < wide {
                // SAFETY: i + 8 <= wide <= hd bounds both loads.
                unsafe {
                    a = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(row.as_ptr().add(i)), a);
                }
            }
            let v = _mm256_add_ps(a, b);
            let h4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
            let mut sum = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
            for j in wide..hd {
                sum += q[j] * row[j];
            }
            scores[h * n + p] = sum * scale;
        }
    }
    softmax_rows(&mut scores, n);
    o.fill(0.0);
    for first in (0..heads).step_by(WIDE_HEADS) {
        let tile = WIDE_HEADS.min(heads - first);
        let mut d = 0;
        while d < wide {
            let mut acc = [_mm256_setzero_ps(); WIDE_HEADS];
            for (p, &r) in rows.iter().enumerate() {
                // SAFETY: d + 8 <= wide <= hd bounds the load within the row.
                let v = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(job.kv.v.as_ptr().add(r + d) as *const __m128i)) };
                for (t, a) in acc.iter_mut().enumerate().take(tile) {
                    *a = _mm256_fmadd_ps(_mm256_set1_ps(scores[(first + t) * n + p]), v, *a);
                }
            }
            for (t, a) in acc.iter().enumerate().take(tile) {
                // SAFETY: d + 8 <= hd bounds the store within head `first + t`'s output.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr().add((first + t) * hd + d), *a) };
            }
            d += 8;
        }
        for (p, &r) in rows.iter().enumerate() {
            for j in wide..hd {
                let x = job.kv.v[r + j].to_f32();
                for t in 0..tile {
                    o[(first + t) * hd + j] += scores[(first + t) * n + p] * x;
                }
            }
        }
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent lanes let the compiler vectorize without reassociation flags.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// Plain attention over a contiguous `[pos][kv_dim]` cache.
    fn contiguous(shape: AttnShape, q: &[f32], k: &[f32], v: &[f32], n_ctx: usize) -> Vec<f32> {
        let AttnShape { n_heads, n_kv_heads, head_dim: hd } = shape;
        let kv_dim = n_kv_heads * hd;
        let mut out = vec![0f32; n_heads * hd];
        for h in 0..n_heads {
            let g = h / (n_heads / n_kv_heads);
            let s: Vec<f64> = (0..n_ctx)
                .map(|p| {
                    (0..hd).map(|d| (q[h * hd + d] * k[p * kv_dim + g * hd + d]) as f64).sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out[h * hd + d] = (0..n_ctx).map(|p| e[p] / z * v[p * kv_dim + g * hd + d] as f64).sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn paged_attention_equals_contiguous_attention() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        for case in 0..70 {
            let block_size = [1, 2, 3, 4, 8, 16][case % 6];
            let (n_kv_heads, group) = [(1, 1), (1, 4), (2, 3), (3, 3), (4, 2), (1, 6), (2, 9)][case % 7];
            let shape = AttnShape {
                n_heads: n_kv_heads * group,
                n_kv_heads,
                head_dim: [4, 8, 16, 64, 20, 72, 24][(case / 7) % 7],
            };
            let kv_dim = n_kv_heads * shape.head_dim;
            let n_seqs = 1 + case % 3;
            let lens: Vec<usize> = (0..n_seqs).map(|_| rng.random_range(1..70)).collect();
            let total_blocks: usize = lens.iter().map(|l| l.div_ceil(block_size)).sum::<usize>() + 5;
            let mut free: Vec<u32> = (0..total_blocks as u32).collect();
            free.shuffle(&mut rng);
            let mut store = KvStore::new(1, total_blocks, block_size, kv_dim, shape.head_dim);
            let mut tables = Vec::new();
            let mut conts = Vec::new();
            for &len in &lens {
                let table: Vec<u32> = (0..len.div_ceil(block_size)).map(|_| free.pop().unwrap()).collect();
                // The store keeps f16: the reference uses the same rounded values.
                let r16 = |x: f32| f16::from_f32(x).to_f32();
                let kc: Vec<f32> = (0..len * kv_dim).map(|_| r16(rng.random_range(-1.0..1.0))).collect();
                let vc: Vec<f32> = (0..len * kv_dim).map(|_| r16(rng.random_range(-1.0..1.0))).collect();
                for p in 0..len {
                    let slot = store.slot(&table, p).unwrap();
                    store.write(0, slot, &kc[p * kv_dim..(p + 1) * kv_dim], &vc[p * kv_dim..(p + 1) * kv_dim]);
                }
                tables.push(table);
                conts.push((kc, vc));
            }
            // Per sequence, one query at a random position (a decode), then
            // a run of consecutive positions ending at the last one (a
            // prompt chunk).
            let qd = shape.n_heads * shape.head_dim;
            let mut pos = Vec::new();
            let mut tref: Vec<&[u32]> = Vec::new();
            let mut owners = Vec::new();
            for (s, &len) in lens.iter().enumerate() {
                let chunk = rng.random_range(1..=len.min(40));
                for p in std::iter::once(rng.random_range(0..len)).chain(len - chunk..len) {
                    pos.push(p);
                    tref.push(&tables[s]);
                    owners.push(s);
                }
            }
            let q: Vec<f32> = (0..pos.len() * qd).map(|_| rng.random_range(-2.0..2.0)).collect();
            #[cfg(target_arch = "x86_64")]
            let wide =
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            #[cfg(not(target_arch = "x86_64"))]
            let wide = false;
            for use_wide in [false, wide] {
                let mut out = vec![0f32; q.len()];
                attention_impl(use_wide, shape, &q, store.layer(0), &tref, &pos, &mut out);
                for (t, (&p, &s)) in pos.iter().zip(&owners).enumerate() {
                    let want = contiguous(shape, &q[t * qd..(t + 1) * qd], &conts[s].0, &conts[s].1, p + 1);
                    for (a, b) in want.iter().zip(&out[t * qd..(t + 1) * qd]) {
                        assert!((a - b).abs() < 1e-4, "case {case} wide={use_wide}: {a} vs {b}");
                    }
                }
            }
        }
    }
}
