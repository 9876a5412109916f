//! Paged KV storage and attention that reads K/V through block tables.
//!
//! Layout per layer: V is `[n_blocks][n_kv_heads][block_size][head_dim]`,
//! K is `[n_blocks][n_kv_heads][head_dim][block_size]` (transposed within a
//! block: one dimension's values of consecutive positions side by side, so
//! scores for 8 positions come from 8-wide multiply-adds with no sum across
//! lanes). A token's slot is `block * block_size + offset`; within a block,
//! one KV head's values are contiguous, so attention (which reads one head
//! position after position) streams memory instead of striding over the
//! other heads' values.
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

    /// Stores one token's K and V values (`kv_dim` each, head by head): V as
    /// the row of its slot, K down the column of its slot.
    pub fn write(&mut self, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        let (bs, hd) = (self.block_size, self.head_dim);
        let (block, offset) = (slot / bs, slot % bs);
        for (head, (kh, vh)) in k.chunks_exact(hd).zip(v.chunks_exact(hd)).enumerate() {
            let base = (block * (self.kv_dim / hd) + head) * bs * hd;
            for (i, &x) in kh.iter().enumerate() {
                self.k[layer][base + i * bs + offset] = f16::from_f32(x);
            }
            let at = base + offset * hd;
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

/// Tokens of one sequence at consecutive positions (a prompt chunk) are
/// attended together, up to this many: each K and V row is read once for
/// all their queries. A query's arithmetic does not depend on the tile it
/// is in, so a prompt prefilled in one step gives the logits its tokens get
/// decoded one by one.
const TILE_TOKENS: usize = 8;

/// `wide` selects the AVX2/F16C kernel; callers check the features.
fn attention_impl(
    wide: bool,
    shape: AttnShape,
    q: &[f32],
    kv: KvView,
    tables: &[&[u32]],
    pos: &[usize],
    out: &mut [f32],
) {
    let (hd, group) = (shape.head_dim, shape.n_heads / shape.n_kv_heads);
    let qd = shape.n_heads * hd;
    // Consecutive tokens of one sequence (same table, next position) share a tile.
    let mut tiles: Vec<(usize, usize)> = Vec::new();
    for t in 0..pos.len() {
        match tiles.last_mut() {
            Some((start, len))
                if *len < TILE_TOKENS && std::ptr::eq(tables[*start], tables[t]) && pos[t] == pos[*start] + *len =>
            {
                *len += 1
            }
            _ => tiles.push((t, 1)),
        }
    }
    // One job per (tile, KV head), so a lone decode still spreads over the
    // threads; each writes `[tokens][group][head_dim]` into its own part of
    // `scratch`, copied into `out` after.
    let jobs: Vec<(usize, usize, usize)> =
        tiles.iter().flat_map(|&(start, len)| (0..shape.n_kv_heads).map(move |h| (start, len, h))).collect();
    let mut scratch = vec![0f32; out.len()];
    let mut parts: Vec<&mut [f32]> = Vec::with_capacity(jobs.len());
    let mut rest = scratch.as_mut_slice();
    for &(_, len, _) in &jobs {
        let (mine, after) = std::mem::take(&mut rest).split_at_mut(len * group * hd);
        parts.push(mine);
        rest = after;
    }
    parts.into_par_iter().zip(jobs.par_iter()).for_each(|(o, &(start, len, kv_head))| {
        let job = TileJob {
            shape,
            q: &q[start * qd..(start + len) * qd],
            kv,
            table: tables[start],
            first_pos: pos[start],
            tokens: len,
            kv_head,
        };
        #[cfg(target_arch = "x86_64")]
        if wide && job.fits_wide() {
            // SAFETY: `wide` is only true when AVX2, FMA and F16C were detected.
            return unsafe { attend_tile_avx2(&job, o) };
        }
        attend_tile_portable(&job, o)
    });
    let mut done = scratch.as_slice();
    for &(start, len, kv_head) in &jobs {
        let (mine, after) = done.split_at(len * group * hd);
        for (t, rows) in mine.chunks_exact(group * hd).enumerate() {
            let at = (start + t) * qd + kv_head * group * hd;
            out[at..at + group * hd].copy_from_slice(rows);
        }
        done = after;
    }
}

/// One KV head of a tile: the `group` query heads that share it (grouped-
/// query attention) of each of the tile's tokens, against the positions of
/// their sequence. Query `j` is token `j / group`, head `j % group` of the
/// group; it attends to `first_pos + j / group + 1` positions, and its
/// output is `head_dim` values at `j * head_dim`.
struct TileJob<'a> {
    shape: AttnShape,
    /// The tile's rows of `q`: `[tokens][n_heads * head_dim]`.
    q: &'a [f32],
    kv: KvView<'a>,
    table: &'a [u32],
    first_pos: usize,
    tokens: usize,
    kv_head: usize,
}

impl TileJob<'_> {
    fn group(&self) -> usize {
        self.shape.n_heads / self.shape.n_kv_heads
    }

    fn queries(&self) -> usize {
        self.tokens * self.group()
    }

    /// Positions query `j` attends to.
    fn n_ctx(&self, j: usize) -> usize {
        self.first_pos + j / self.group() + 1
    }

    /// Query `j`'s `head_dim` values.
    fn query(&self, j: usize) -> &[f32] {
        let (group, hd) = (self.group(), self.shape.head_dim);
        let at = (j / group) * self.shape.n_heads * hd + (self.kv_head * group + j % group) * hd;
        &self.q[at..at + hd]
    }

    /// Where position `p`'s block starts, for this KV head: K is stored
    /// `[head_dim][block_size]` per block and head (a dimension's values of
    /// consecutive positions side by side), V `[block_size][head_dim]`.
    fn block_base(&self, p: usize) -> usize {
        let bs = self.kv.block_size;
        (self.table[p / bs] as usize * self.kv.n_kv_heads + self.kv_head) * bs * self.shape.head_dim
    }

    fn scale(&self) -> f32 {
        1.0 / (self.shape.head_dim as f32).sqrt()
    }

    /// The AVX2 kernel takes 8 positions and 8 dimensions at a time.
    #[cfg(target_arch = "x86_64")]
    fn fits_wide(&self) -> bool {
        self.shape.head_dim.is_multiple_of(8) && self.kv.block_size.is_multiple_of(8)
    }
}

/// Turns each query's row of scores (`stride` apart, the first `n(j)` of
/// each) into softmax weights.
fn softmax_rows(scores: &mut [f32], stride: usize, n: impl Fn(usize) -> usize) {
    for (j, row) in scores.chunks_exact_mut(stride).enumerate() {
        let row = &mut row[..n(j)];
        let max = max_of(row);
        let mut sum = 0f32;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

/// The largest of `xs` (finite scores): eight running maxima side by side,
/// which the compiler keeps in one vector register (the maximum does not
/// depend on the order it is taken in, so the result is the same bits).
fn max_of(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = m.max(x);
        }
    }
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    lanes.into_iter().fold(tail, f32::max)
}

/// Each query on its own: a score is a fused multiply-add over dimensions
/// in order, a weighted sum of V one over positions in order.
fn attend_tile_portable(job: &TileJob, o: &mut [f32]) {
    let (hd, bs) = (job.shape.head_dim, job.kv.block_size);
    let scale = job.scale();
    let n_max = job.n_ctx(job.queries() - 1);
    let mut scores = vec![0f32; job.queries() * n_max];
    for j in 0..job.queries() {
        let q = job.query(j);
        for p in 0..job.n_ctx(j) {
            let at = job.block_base(p) + p % bs;
            let dot = (0..hd).fold(0f32, |acc, i| q[i].mul_add(job.kv.k[at + i * bs].to_f32(), acc));
            scores[j * n_max + p] = dot * scale;
        }
    }
    softmax_rows(&mut scores, n_max, |j| job.n_ctx(j));
    for (j, out) in o.chunks_exact_mut(hd).enumerate() {
        out.fill(0.0);
        for p in 0..job.n_ctx(j) {
            let at = job.block_base(p) + (p % bs) * hd;
            let w = scores[j * n_max + p];
            for (a, x) in out.iter_mut().zip(&job.kv.v[at..at + hd]) {
                *a = w.mul_add(x.to_f32(), *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod wide;
#[cfg(target_arch = "x86_64")]
use wide::attend_tile_avx2;

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
    fn a_query_gets_the_same_bits_in_a_tile_alone_and_from_either_kernel() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let shape = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64 };
        let (kv_dim, qd, len) = (3 * 64, 9 * 64, 53);
        let mut store = KvStore::new(1, 8, 16, kv_dim, 64);
        let table: Vec<u32> = vec![5, 1, 7, 2];
        for p in 0..len {
            let k: Vec<f32> = (0..kv_dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let v: Vec<f32> = (0..kv_dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            store.write(0, store.slot(&table, p).unwrap(), &k, &v);
        }
        // A chunk of 21 consecutive positions (tiles of 8, 8 and 5), all at once...
        let pos: Vec<usize> = (len - 21..len).collect();
        let q: Vec<f32> = (0..pos.len() * qd).map(|_| rng.random_range(-2.0..2.0)).collect();
        let tables = vec![table.as_slice(); pos.len()];
        #[cfg(target_arch = "x86_64")]
        let wide =
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        #[cfg(not(target_arch = "x86_64"))]
        let wide = false;
        let mut outs = Vec::new();
        for use_wide in [false, wide] {
            let mut together = vec![0f32; q.len()];
            attention_impl(use_wide, shape, &q, store.layer(0), &tables, &pos, &mut together);
            // ...and each token alone, as decode steps see it.
            for (t, &p) in pos.iter().enumerate() {
                let mut alone = vec![0f32; qd];
                attention_impl(
                    use_wide,
                    shape,
                    &q[t * qd..(t + 1) * qd],
                    store.layer(0),
                    &tables[..1],
                    &[p],
                    &mut alone,
                );
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&alone), bits(&together[t * qd..(t + 1) * qd]), "token {t} wide={use_wide}");
            }
            outs.push(together);
        }
        assert!(outs[0].iter().zip(&outs[1]).all(|(a, b)| a.to_bits() == b.to_bits()), "the kernels agree");
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
