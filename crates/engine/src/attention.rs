//! Paged KV storage and attention that reads K/V through block tables.
//!
//! Layout per layer: `[n_blocks][block_size][kv_dim]` for K and for V, so a
//! token's slot is `block * block_size + offset` and its row is contiguous.
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
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvStore {
    pub fn new(n_layers: usize, n_blocks: usize, block_size: usize, kv_dim: usize) -> Self {
        let n = n_blocks * block_size * kv_dim;
        KvStore {
            block_size,
            n_blocks,
            kv_dim,
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

    pub fn write(&mut self, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        let d = self.kv_dim;
        self.k[layer][slot * d..(slot + 1) * d].convert_from_f32_slice(k);
        self.v[layer][slot * d..(slot + 1) * d].convert_from_f32_slice(v);
    }

    pub fn layer(&self, layer: usize) -> KvView<'_> {
        KvView { k: &self.k[layer], v: &self.v[layer], block_size: self.block_size }
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

/// `wide` selects the AVX2/F16C row kernels; callers check the features.
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
    out.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
        let t = i / n_heads;
        let job = HeadJob {
            q: &q[i * hd..(i + 1) * hd],
            kv,
            table: tables[t],
            kv_offset: (i % n_heads) / group * hd,
            kv_dim: n_kv_heads * hd,
            n_ctx: pos[t] + 1,
        };
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` is only true when AVX2, FMA and F16C were detected.
            return unsafe { attend_head_avx2(&job, o) };
        }
        attend_head_portable(&job, o)
    });
}

/// One (token, head) pair of `paged_attention`.
struct HeadJob<'a> {
    q: &'a [f32],
    kv: KvView<'a>,
    table: &'a [u32],
    /// Offset of this head's KV group inside a K/V row.
    kv_offset: usize,
    kv_dim: usize,
    n_ctx: usize,
}

/// Attention with F16C widening fused into 8-wide FMA dot products and
/// V accumulation.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_head_avx2(job: &HeadJob, o: &mut [f32]) {
    use std::arch::x86_64::*;
    let dot = |q: &[f32], k: &[f16]| {
        let n = q.len().min(k.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds both 8-element loads.
            let (kv, qv) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i)),
                    _mm256_loadu_ps(q.as_ptr().add(i)),
                )
            };
            acc = _mm256_fmadd_ps(qv, kv, acc);
            i += 8;
        }
        let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
        for j in i..n {
            sum += q[j] * k[j].to_f32();
        }
        sum
    };
    let axpy = |o: &mut [f32], w: f32, v: &[f16]| {
        let n = o.len().min(v.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds the loads and the store.
            unsafe {
                let vv = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i));
                let ov = _mm256_loadu_ps(o.as_ptr().add(i));
                _mm256_storeu_ps(o.as_mut_ptr().add(i), _mm256_fmadd_ps(wv, vv, ov));
            }
            i += 8;
        }
        for j in i..n {
            o[j] += w * v[j].to_f32();
        }
    };
    attend_head(job, o, dot, axpy)
}

fn attend_head_portable(job: &HeadJob, o: &mut [f32]) {
    let mut buf = vec![0f32; job.q.len()];
    let mut buf2 = vec![0f32; job.q.len()];
    let dot = |q: &[f32], k: &[f16]| {
        k.convert_to_f32_slice(&mut buf);
        dot(q, &buf)
    };
    let axpy = |o: &mut [f32], w: f32, v: &[f16]| {
        v.convert_to_f32_slice(&mut buf2);
        o.iter_mut().zip(&buf2).for_each(|(a, x)| *a += w * x);
    };
    attend_head(job, o, dot, axpy)
}

/// Softmax attention of one query head over its sequence's positions, with
/// the f16 row kernels passed in (SIMD or portable).
#[inline(always)]
fn attend_head(
    job: &HeadJob,
    o: &mut [f32],
    mut dot: impl FnMut(&[f32], &[f16]) -> f32,
    mut axpy: impl FnMut(&mut [f32], f32, &[f16]),
) {
    let hd = job.q.len();
    let bs = job.kv.block_size;
    let scale = 1.0 / (hd as f32).sqrt();
    let row = |p: usize| (job.table[p / bs] as usize * bs + p % bs) * job.kv_dim + job.kv_offset;
    let mut scores = Vec::with_capacity(job.n_ctx);
    let mut max = f32::NEG_INFINITY;
    for p in 0..job.n_ctx {
        let r = row(p);
        let s = dot(job.q, &job.kv.k[r..r + hd]) * scale;
        max = max.max(s);
        scores.push(s);
    }
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    o.fill(0.0);
    let inv = 1.0 / sum;
    for (p, s) in scores.iter().enumerate() {
        let r = row(p);
        axpy(o, s * inv, &job.kv.v[r..r + hd]);
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
        for case in 0..60 {
            let block_size = [1, 2, 3, 4, 8, 16][case % 6];
            let (n_kv_heads, group) = [(1, 1), (1, 4), (2, 3), (3, 3), (4, 2)][case % 5];
            let shape = AttnShape { n_heads: n_kv_heads * group, n_kv_heads, head_dim: [4, 8, 16][case % 3] };
            let kv_dim = n_kv_heads * shape.head_dim;
            let n_seqs = 1 + case % 3;
            let lens: Vec<usize> = (0..n_seqs).map(|_| rng.random_range(1..70)).collect();
            let total_blocks: usize = lens.iter().map(|l| l.div_ceil(block_size)).sum::<usize>() + 5;
            let mut free: Vec<u32> = (0..total_blocks as u32).collect();
            free.shuffle(&mut rng);
            let mut store = KvStore::new(1, total_blocks, block_size, kv_dim);
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
            // One query per sequence at a random position, plus the last one.
            let qd = shape.n_heads * shape.head_dim;
            let mut pos = Vec::new();
            let mut tref: Vec<&[u32]> = Vec::new();
            let mut owners = Vec::new();
            for (s, &len) in lens.iter().enumerate() {
                for p in [rng.random_range(0..len), len - 1] {
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
