//! Attention for a run of consecutive prompt tokens of one sequence (a
//! prefill chunk), as two small matrix products per KV head.
//!
//! Token by token, every query re-reads and re-widens the K/V rows of the
//! whole context and reduces each dot product on its own; over a long
//! prompt that cost more than all the weight matmuls together. A tile of
//! `TILE_TOKENS` tokens shares one context: its K/V rows are widened to f32
//! once, then scores = Q K^T and output = softmax(scores) V run as GEMMs
//! (`matrixmultiply`, which packs and blocks for the cache and picks the
//! CPU's widest kernels), with the causal mask applied by giving each
//! token's softmax only the positions up to its own.

use half::slice::HalfFloatSliceExt;

use super::{AttnShape, KvView};

/// Prompt tokens one tile covers: large enough that the widened K/V rows
/// and the GEMM packing pay off, small enough that a 128-token step still
/// splits into several parallel tiles.
pub(super) const TILE_TOKENS: usize = 16;

/// A tile: `tokens` consecutive tokens of one sequence, the first at
/// position `first_pos`, all reading through `table`.
pub(super) struct Tile<'a> {
    /// `[tokens][n_heads * head_dim]`.
    pub q: &'a [f32],
    pub kv: KvView<'a>,
    pub table: &'a [u32],
    pub first_pos: usize,
    pub tokens: usize,
}

/// Writes the tile's attention output into `out` (`[tokens][n_heads * head_dim]`).
/// `wide`: the CPU has AVX2, FMA and F16C (the softmax then runs 8 lanes wide).
pub(super) fn attend_tile(wide: bool, shape: AttnShape, tile: &Tile, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true when AVX2, FMA and F16C were detected.
        return unsafe { attend_tile_avx2(shape, tile, out) };
    }
    attend_tile_any(shape, tile, out)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_tile_avx2(shape: AttnShape, tile: &Tile, out: &mut [f32]) {
    attend_tile_any(shape, tile, out)
}

#[inline(always)]
fn attend_tile_any(shape: AttnShape, tile: &Tile, out: &mut [f32]) {
    let AttnShape { n_heads, n_kv_heads, head_dim: hd } = shape;
    let group = n_heads / n_kv_heads;
    let qd = n_heads * hd;
    let n = tile.first_pos + tile.tokens;
    let nq = tile.tokens * group;
    let scale = 1.0 / (hd as f32).sqrt();
    // Reused by each KV head in turn.
    let (mut k, mut v) = (vec![0f32; n * hd], vec![0f32; n * hd]);
    let (mut q, mut weights, mut heads_out) = (vec![0f32; nq * hd], vec![0f32; nq * n], vec![0f32; nq * hd]);
    let bs = tile.kv.block_size;
    for kv_head in 0..n_kv_heads {
        // This head's K/V rows for positions 0..n, widened, `[n][hd]`.
        for (p, (k_row, v_row)) in k.chunks_exact_mut(hd).zip(v.chunks_exact_mut(hd)).enumerate() {
            let block = tile.table[p / bs] as usize;
            let at = ((block * tile.kv.n_kv_heads + kv_head) * bs + p % bs) * hd;
            tile.kv.k[at..at + hd].convert_to_f32_slice(k_row);
            tile.kv.v[at..at + hd].convert_to_f32_slice(v_row);
        }
        // The group's queries, token-major: row `t * group + h`.
        for (t, rows) in q.chunks_exact_mut(group * hd).enumerate() {
            let from = t * qd + kv_head * group * hd;
            rows.copy_from_slice(&tile.q[from..from + group * hd]);
        }
        // weights[nq][n] = scale * Q[nq][hd] . K[n][hd]^T (scores, then softmax in place)
        // SAFETY: each matrix's extent under its strides lies within its
        // buffer: q is nq x hd, k is n x hd (read transposed), weights nq x n.
        unsafe {
            matrixmultiply::sgemm(
                nq,
                hd,
                n,
                scale,
                q.as_ptr(),
                hd as isize,
                1,
                k.as_ptr(),
                1,
                hd as isize,
                0.0,
                weights.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        // Causal: token t sees positions 0..=first_pos + t; the rest weigh 0.
        for (i, row) in weights.chunks_exact_mut(n).enumerate() {
            let seen = tile.first_pos + i / group + 1;
            softmax_row(&mut row[..seen]);
            row[seen..].fill(0.0);
        }
        // heads_out[nq][hd] = weights[nq][n] . V[n][hd]
        // SAFETY: as above: weights is nq x n, v is n x hd, heads_out is nq x hd.
        unsafe {
            matrixmultiply::sgemm(
                nq,
                n,
                hd,
                1.0,
                weights.as_ptr(),
                n as isize,
                1,
                v.as_ptr(),
                hd as isize,
                1,
                0.0,
                heads_out.as_mut_ptr(),
                hd as isize,
                1,
            );
        }
        for (t, rows) in heads_out.chunks_exact(group * hd).enumerate() {
            let to = t * qd + kv_head * group * hd;
            out[to..to + group * hd].copy_from_slice(rows);
        }
    }
}

/// Turns one row of scores into softmax weights, for a prompt tile. Written
/// as plain passes over eight lanes so that each vectorizes (a reduction in
/// one f32 accumulator would not): a tile calls it once per query and head,
/// over the whole context, so it is a good share of the tile's work.
#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail_max = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for i in 0..8 {
            lanes[i] = lanes[i].max(c[i]);
        }
    }
    let max = lanes.iter().copied().fold(tail_max, f32::max);
    row.iter_mut().for_each(|s| *s = exp_nonpositive(*s - max));
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|s| *s *= inv);
}

#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            lanes[i] += c[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// e^x for x <= 0, within a few ulp of `f32::exp` (Cephes' expf: x = n ln 2 + r
/// with |r| <= ln 2 / 2, a degree-6 polynomial for e^r, then 2^n put
/// straight into the exponent bits). Branch-free, so a loop of it
/// vectorizes, where `f32::exp` is a call per element. Below -87 it returns
/// about 1.6e-38 instead of a smaller number, which no softmax weight can
/// tell from 0.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // Round to nearest by adding and taking away 1.5 * 2^23 (no floor call).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = p * r + c;
    }
    let e_r = p * r * r + r + 1.0;
    // n is in [-126, 0]: 2^n is a normal f32 with exponent bits n + 127.
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_library_over_the_softmax_range() {
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!(((got - want) / want).abs() < 4e-7, "e^{x}: {got} vs {want}");
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 2e-38, "far below: as good as 0");
    }

    #[test]
    fn softmax_row_sums_to_one_in_order() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 9.0).collect();
        let want: Vec<f64> = {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|x| x / z).collect()
        };
        softmax_row(&mut row);
        for (a, b) in row.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
