//! Matrix multiplication of (quantized) weights with a batch of activation rows.
//!
//! Weights stay in their ggml encoding for the scalar kernels and the
//! embedding lookup, and are repacked once at load into the interleaved
//! layout of `pack` for the SIMD tiles. Activations are quantized to Q8 per
//! 32-block and packed once per call. Workers own ranges of output rows;
//! within a range, sub-chunks of rows small enough for L1 meet every token,
//! two rows by four tokens at a time, and results go straight to their
//! token-major place. The SIMD level is detected at run time; the scalar
//! kernels in `quant::scalar` are the reference every SIMD tile is tested
//! against.

pub mod pack;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

use crate::gguf::Bytes;
use crate::quant::{BlockQ8, GgmlType, QK, dequantize_row, quantize_row_q8, scalar};
use pack::XGroup;

static OVERRIDE: AtomicU8 = AtomicU8::new(0);

/// SIMD instruction set used by the dot-product kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Scalar,
    Avx2,
    Avx512Vnni,
}

impl Level {
    pub fn is_available(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => {
                Level::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The level `Weight::matmul` uses: the override if one is set and
    /// available, else the best this CPU supports (detected once).
    pub fn best() -> Level {
        match OVERRIDE.load(Ordering::Relaxed) {
            1 => return Level::Scalar,
            2 if Level::Avx2.is_available() => return Level::Avx2,
            3 if Level::Avx512Vnni.is_available() => return Level::Avx512Vnni,
            _ => {}
        }
        static BEST: OnceLock<Level> = OnceLock::new();
        *BEST.get_or_init(|| {
            [Level::Avx512Vnni, Level::Avx2].into_iter().find(|l| l.is_available()).unwrap_or(Level::Scalar)
        })
    }

    /// Forces a level process-wide (`None` restores detection). For tests
    /// and benchmarks that compare kernels on the real model.
    pub fn set_override(level: Option<Level>) {
        let v = match level {
            None => 0,
            Some(Level::Scalar) => 1,
            Some(Level::Avx2) => 2,
            Some(Level::Avx512Vnni) => 3,
        };
        OVERRIDE.store(v, Ordering::Relaxed);
    }

    /// All levels usable here (tests compare each against `Scalar`).
    pub fn available() -> Vec<Level> {
        [Level::Scalar, Level::Avx2, Level::Avx512Vnni].into_iter().filter(|l| l.is_available()).collect()
    }
}

/// One instance of the tile kernel: `R` rows by `N` tokens.
type TileFn<const R: usize, const N: usize> = fn([&[u8]; R], [&[XGroup]; N], usize) -> [[f32; N]; R];

/// The tile shapes `matmul` uses for one weight type at one level. All are
/// instances of one generic kernel, so a (row, token) output has the same
/// bits whichever shape computed it: the engine is batch invariant, which
/// makes failover (recomputing a prefix in one prefill) give exactly the
/// tokens an undisturbed run gives.
#[derive(Clone, Copy)]
pub struct Tiles {
    /// Four rows, one token (decode of a single sequence).
    pub r4n1: TileFn<4, 1>,
    /// Two rows, four tokens (batches).
    pub r2n4: TileFn<2, 4>,
    pub r2n1: TileFn<2, 1>,
    pub r1n1: TileFn<1, 1>,
}

/// The tiles for a quantized weight type at a SIMD level; `None` for the
/// scalar level, dense types, or a level the CPU lacks.
pub fn tiles(level: Level, ty: GgmlType) -> Option<Tiles> {
    if !level.is_available() || !matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! wrap {
            ($m:ident, $ty:expr) => {{
                macro_rules! shape {
                    ($r:literal, $n:literal) => {{
                        fn f(w: [&[u8]; $r], x: [&[XGroup]; $n], nb: usize) -> [[f32; $n]; $r] {
                            // SAFETY: `tiles` returns this wrapper only when
                            // `Level::is_available` confirmed the CPU features.
                            unsafe { x86::$m::tile::<{ $ty }, $r, $n>(w, x, nb) }
                        }
                        f
                    }};
                }
                Tiles { r4n1: shape!(4, 1), r2n4: shape!(2, 4), r2n1: shape!(2, 1), r1n1: shape!(1, 1) }
            }};
        }
        use x86::{Q4_0, Q4_1, Q8_0};
        return match (level, x86::ty_code(ty)) {
            (Level::Avx2, Q4_0) => Some(wrap!(avx2, Q4_0)),
            (Level::Avx2, Q4_1) => Some(wrap!(avx2, Q4_1)),
            (Level::Avx2, _) => Some(wrap!(avx2, Q8_0)),
            (Level::Avx512Vnni, Q4_0) => Some(wrap!(vnni, Q4_0)),
            (Level::Avx512Vnni, Q4_1) => Some(wrap!(vnni, Q4_1)),
            (Level::Avx512Vnni, _) => Some(wrap!(vnni, Q8_0)),
            (Level::Scalar, _) => None,
        };
    }
    #[allow(unreachable_code)]
    None
}

/// The portable reference dot of one ggml row with one token.
fn scalar_dot(ty: GgmlType) -> fn(&[u8], &[BlockQ8]) -> f32 {
    match ty {
        GgmlType::Q4_1 => scalar::dot_q4_1,
        GgmlType::Q8_0 => scalar::dot_q8_0,
        _ => scalar::dot_q4_0,
    }
}

/// A weight matrix of `rows` x `cols` (row-major: one output per row).
#[derive(Debug, Clone)]
pub struct Weight {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    data: WeightData,
}

#[derive(Debug, Clone)]
enum WeightData {
    /// Quantized rows in ggml layout (often a window into the mmap), read
    /// by the scalar kernels and the embedding lookup, and the same rows
    /// repacked for the SIMD tiles (`pack`) when the CPU has them.
    Quant { raw: Bytes, packed: Option<Bytes> },
    /// F32/F16 weights are widened once at load: they are tiny in practice.
    Dense(Vec<f32>),
}

/// Computes rows `r0..r1` for every token, handing each result to `put(row, token, value)`.
type RowsFn<'a> = dyn Fn(usize, usize, &mut Put) + Sync + 'a;

/// Output pointer shared by the workers of one matmul.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers write disjoint elements (each owns a range of rows), and
// the matmul call outlives them.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// One worker's writer: rows `r0..r1` of a `[t][rows]` output.
struct Put {
    out: OutPtr,
    rows: usize,
    t: usize,
    r0: usize,
    r1: usize,
}

impl Put {
    #[inline(always)]
    fn put(&mut self, r: usize, tt: usize, v: f32) {
        if r >= self.r0 && r < self.r1 && tt < self.t {
            // SAFETY: r < rows and tt < t, so the index is inside the
            // output (t * rows long); only this worker writes rows r0..r1.
            unsafe { *self.out.0.add(tt * self.rows + r) = v };
        }
    }
}

impl Weight {
    /// `bytes` must hold exactly `rows * ty.row_bytes(cols)` bytes.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, bytes: Bytes) -> Option<Weight> {
        if !cols.is_multiple_of(ty.block_len()) || bytes.len() != rows.checked_mul(ty.row_bytes(cols))? {
            return None;
        }
        let data = match ty {
            GgmlType::F32 | GgmlType::F16 => {
                let mut v = vec![0f32; rows * cols];
                dequantize_row(ty, bytes.as_slice(), &mut v);
                WeightData::Dense(v)
            }
            _ if !cols.is_multiple_of(QK) => return None,
            _ => {
                let packed = Level::Avx2.is_available().then(|| {
                    let (rb, pb) = (ty.row_bytes(cols), pack::packed_row_bytes(ty, cols / QK));
                    let mut p = vec![0u8; rows * pb];
                    p.par_chunks_mut(pb)
                        .zip(bytes.as_slice().par_chunks(rb))
                        .for_each(|(d, s)| pack::pack_row(ty, s, d));
                    Bytes::from_vec(p)
                });
                WeightData::Quant { raw: bytes, packed }
            }
        };
        Some(Weight { ty, rows, cols, data })
    }

    /// Dequantizes row `r` into `out` (embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        match &self.data {
            WeightData::Dense(v) => out.copy_from_slice(&v[r * self.cols..(r + 1) * self.cols]),
            WeightData::Quant { raw, .. } => {
                let rb = self.ty.row_bytes(self.cols);
                dequantize_row(self.ty, &raw.as_slice()[r * rb..(r + 1) * rb], out);
            }
        }
    }

    /// `out[t * rows + r] = dot(row r, x[t * cols ..])` for `t` in `0..n_tokens`.
    pub fn matmul(&self, x: &[f32], n_tokens: usize, out: &mut [f32]) {
        self.matmul_at(Level::best(), x, n_tokens, out)
    }

    pub fn matmul_at(&self, level: Level, x: &[f32], n_tokens: usize, out: &mut [f32]) {
        self.matmul_input(&Input::new(level, x, n_tokens, self.cols), out)
    }

    /// As `matmul`, with the activations already quantized: several weights
    /// reading the same input (Q, K and V; gate and up) quantize it once.
    pub fn matmul_input(&self, input: &Input, out: &mut [f32]) {
        let (rows, cols, t, x, level) = (self.rows, self.cols, input.t, input.x, input.level);
        assert_eq!(x.len(), t * cols, "matmul input shape");
        assert_eq!(out.len(), t * rows, "matmul output shape");
        if t == 0 {
            return;
        }
        let chunk = rows.div_ceil(rayon::current_num_threads() * 8).clamp(4, 256).next_multiple_of(4);
        let dst = OutPtr(out.as_mut_ptr());
        // `rows_fn(r0, r1, put)` computes rows r0..r1 for every token and
        // hands each result to `put(row, token, value)`.
        let compute = |rows_fn: &RowsFn| {
            (0..rows.div_ceil(chunk)).into_par_iter().for_each(|ci| {
                let (r0, r1) = (ci * chunk, ((ci + 1) * chunk).min(rows));
                rows_fn(r0, r1, &mut Put { out: dst, rows, t, r0, r1 });
            });
        };
        let nb = cols / QK;
        match &self.data {
            WeightData::Quant { raw, packed } => match (tiles(level, self.ty), packed) {
                (Some(tl), Some(p)) => {
                    let ng = pack::x_groups(nb);
                    let own;
                    let xq = match &input.packed {
                        Some(q) if input.cols == cols => q.as_slice(),
                        _ => {
                            own = pack_input(x, t, cols);
                            own.as_slice()
                        }
                    };
                    let pb = pack::packed_row_bytes(self.ty, nb);
                    compute(&|r0, r1, put| tiled(&tl, p.as_slice(), pb, xq, ng, nb, t, r0, r1, put));
                }
                _ => {
                    let mut xq = vec![BlockQ8::default(); t * nb];
                    xq.chunks_mut(nb).zip(x.chunks(cols)).for_each(|(q, xs)| quantize_row_q8(xs, q));
                    let (rb, w, dot) = (self.ty.row_bytes(cols), raw.as_slice(), scalar_dot(self.ty));
                    compute(&|r0, r1, put| {
                        for r in r0..r1 {
                            for tt in 0..t {
                                put.put(r, tt, dot(&w[r * rb..(r + 1) * rb], &xq[tt * nb..(tt + 1) * nb]));
                            }
                        }
                    });
                }
            },
            WeightData::Dense(v) => compute(&|r0, r1, put| {
                for r in r0..r1 {
                    let wr = &v[r * cols..(r + 1) * cols];
                    for tt in 0..t {
                        put.put(r, tt, wr.iter().zip(&x[tt * cols..(tt + 1) * cols]).map(|(a, b)| a * b).sum());
                    }
                }
            }),
        }
    }
}

/// Activations of `t` tokens, quantized and packed for the SIMD tiles when
/// the level has them (the scalar kernels quantize their own).
pub struct Input<'a> {
    level: Level,
    x: &'a [f32],
    t: usize,
    cols: usize,
    packed: Option<Vec<XGroup>>,
}

impl<'a> Input<'a> {
    /// `x` is `[t][cols]`.
    pub fn new(level: Level, x: &'a [f32], t: usize, cols: usize) -> Self {
        let simd = cols.is_multiple_of(QK) && tiles(level, GgmlType::Q4_0).is_some() && x.len() == t * cols;
        Input { level, x, t, cols, packed: simd.then(|| pack_input(x, t, cols)) }
    }

    /// At the level `Weight::matmul` uses.
    pub fn best(x: &'a [f32], t: usize, cols: usize) -> Self {
        Input::new(Level::best(), x, t, cols)
    }
}

/// Quantizes and packs `t` rows of `cols` activations.
fn pack_input(x: &[f32], t: usize, cols: usize) -> Vec<XGroup> {
    let ng = pack::x_groups(cols / QK);
    let mut xq = vec![XGroup::default(); t * ng];
    let quant = |(g, xs): (&mut [XGroup], &[f32])| {
        // One group's worth at a time: only 8 blocks of scratch to
        // initialize; the last, partial chunk holds the pairs.
        let mut blocks = [BlockQ8::default(); pack::GROUP];
        for (i, xc) in xs.chunks(pack::GROUP * QK).enumerate() {
            let bl = &mut blocks[..xc.len() / QK];
            quantize_row_q8(xc, bl);
            pack::pack_x(bl, g.get_mut(i..).unwrap_or_default());
        }
    };
    if t < 16 {
        xq.chunks_mut(ng).zip(x.chunks(cols)).for_each(quant);
    } else {
        xq.par_chunks_mut(ng).zip(x.par_chunks(cols)).for_each(quant);
    }
    xq
}

/// Rows `r0..r1` of a packed weight against all `t` packed tokens. Rows go
/// in sub-chunks small enough to stay in L1 while every token passes over
/// them, tokens in fours (each activation load feeds two rows).
#[allow(clippy::too_many_arguments)]
fn tiled(
    tl: &Tiles,
    w: &[u8],
    pb: usize,
    xq: &[pack::XGroup],
    ng: usize,
    nb: usize,
    t: usize,
    r0: usize,
    r1: usize,
    put: &mut Put,
) {
    let row = |r: usize| &w[r * pb..(r + 1) * pb];
    let tok = |tt: usize| &xq[tt * ng..(tt + 1) * ng];
    let sub = (8192 / pb.max(1)).clamp(4, 64) & !3;
    for s0 in (r0..r1).step_by(sub) {
        let s1 = (s0 + sub).min(r1);
        let mut tt = 0;
        while tt < t {
            let n = if t == 1 { 1 } else { (t - tt).min(4) };
            let mut r = s0;
            while r < s1 {
                if t == 1 && r + 4 <= s1 {
                    let v = (tl.r4n1)([row(r), row(r + 1), row(r + 2), row(r + 3)], [tok(tt)], nb);
                    (0..4).for_each(|i| put.put(r + i, tt, v[i][0]));
                    r += 4;
                } else if r + 2 <= s1 {
                    if n == 4 {
                        let v = (tl.r2n4)([row(r), row(r + 1)], std::array::from_fn(|k| tok(tt + k)), nb);
                        (0..2).for_each(|i| (0..4).for_each(|k| put.put(r + i, tt + k, v[i][k])));
                    } else {
                        for k in 0..n {
                            let v = (tl.r2n1)([row(r), row(r + 1)], [tok(tt + k)], nb);
                            (0..2).for_each(|i| put.put(r + i, tt + k, v[i][0]));
                        }
                    }
                    r += 2;
                } else {
                    for k in 0..n {
                        put.put(r, tt + k, (tl.r1n1)([row(r)], [tok(tt + k)], nb)[0][0]);
                    }
                    r += 1;
                }
            }
            tt += n;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::quant::quantize;
    use rand::{Rng, SeedableRng};

    fn rand_vec(rng: &mut impl Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    /// Packed rows and tokens for a tile test: (ggml rows, packed rows, Q8 tokens, packed tokens).
    #[allow(clippy::type_complexity)]
    fn tile_inputs(
        rng: &mut impl Rng,
        ty: GgmlType,
        nb: usize,
        rows: usize,
        toks: usize,
    ) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<BlockQ8>>, Vec<Vec<XGroup>>) {
        let raw: Vec<Vec<u8>> = (0..rows).map(|_| quantize(ty, &rand_vec(rng, nb * QK))).collect();
        let packed = raw
            .iter()
            .map(|w| {
                let mut p = vec![0u8; pack::packed_row_bytes(ty, nb)];
                pack::pack_row(ty, w, &mut p);
                p
            })
            .collect();
        let xs: Vec<Vec<BlockQ8>> = (0..toks)
            .map(|_| {
                let mut q = vec![BlockQ8::default(); nb];
                quantize_row_q8(&rand_vec(rng, nb * QK), &mut q);
                q
            })
            .collect();
        let xp = xs
            .iter()
            .map(|q| {
                let mut g = vec![XGroup::default(); pack::x_groups(nb)];
                pack::pack_x(q, &mut g);
                g
            })
            .collect();
        (raw, packed, xs, xp)
    }

    #[test]
    fn every_simd_tile_matches_scalar_and_is_shape_invariant() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for level in Level::available() {
            for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
                let Some(tl) = tiles(level, ty) else { continue };
                for nb in [1usize, 2, 3, 7, 8, 9, 18, 48] {
                    let (raw, w, xs, xp) = tile_inputs(&mut rng, ty, nb, 4, 4);
                    let four = (tl.r4n1)([&w[0], &w[1], &w[2], &w[3]], [&xp[0]], nb);
                    for r in 0..4 {
                        let r2 = (tl.r2n4)([&w[r & !1], &w[r | 1]], [&xp[0], &xp[1], &xp[2], &xp[3]], nb);
                        for n in 0..4 {
                            let alone = (tl.r1n1)([&w[r]], [&xp[n]], nb)[0][0];
                            let want = scalar_dot(ty)(&raw[r], &xs[n]);
                            assert!(
                                (want - alone).abs() <= 1e-4 * want.abs().max(1.0),
                                "{level:?} {ty:?} nb={nb}: {want} vs {alone}"
                            );
                            // Batch invariance: the same bits whatever tile computed it.
                            let got = r2[r & 1][n];
                            assert_eq!(
                                got.to_bits(),
                                alone.to_bits(),
                                "{level:?} {ty:?} nb={nb} r2n4 row {r} token {n}"
                            );
                            let one = (tl.r2n1)([&w[r & !1], &w[r | 1]], [&xp[n]], nb)[r & 1][0];
                            assert_eq!(one.to_bits(), alone.to_bits(), "{level:?} {ty:?} nb={nb} r2n1");
                        }
                        let alone = (tl.r1n1)([&w[r]], [&xp[0]], nb)[0][0];
                        assert_eq!(four[r][0].to_bits(), alone.to_bits(), "{level:?} {ty:?} nb={nb} r4n1");
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_of_a_batch_equals_each_token_alone_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for level in Level::available() {
            for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
                let (rows, cols) = (43, 18 * QK);
                let w = Weight::new(ty, rows, cols, Bytes::from_vec(quantize(ty, &rand_vec(&mut rng, rows * cols))))
                    .unwrap();
                let x = rand_vec(&mut rng, 40 * cols);
                let alone: Vec<Vec<f32>> = x
                    .chunks(cols)
                    .map(|xs| {
                        let mut o = vec![0f32; rows];
                        w.matmul_at(level, xs, 1, &mut o);
                        o
                    })
                    .collect();
                for t in 1..=40 {
                    // A window that starts mid-batch, so tokens change tile position.
                    let s = (t * 7) % (41 - t);
                    let mut out = vec![0f32; t * rows];
                    w.matmul_at(level, &x[s * cols..(s + t) * cols], t, &mut out);
                    for (k, o) in out.chunks(rows).enumerate() {
                        let same = o.iter().zip(&alone[s + k]).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{level:?} {ty:?}: token {k} of {t} differs from alone");
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_matches_dequantized_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (rows, cols) = (37, 64);
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_1] {
            let wf = rand_vec(&mut rng, rows * cols);
            let w = Weight::new(ty, rows, cols, Bytes::from_vec(quantize(ty, &wf))).unwrap();
            let mut wd = vec![0f32; cols];
            for t in [1usize, 5, 8, 21] {
                let x = rand_vec(&mut rng, t * cols);
                let mut out = vec![0f32; t * rows];
                w.matmul(&x, t, &mut out);
                for tt in 0..t {
                    for r in 0..rows {
                        w.row_f32(r, &mut wd);
                        let xs = &x[tt * cols..(tt + 1) * cols];
                        let exact: f32 = wd.iter().zip(xs).map(|(a, b)| a * b).sum();
                        // Q8 activations carry ~1/254 relative error per element.
                        let tol = 1e-4 + 0.01 * wd.iter().zip(xs).map(|(a, b)| (a * b).abs()).sum::<f32>();
                        let got = out[tt * rows + r];
                        assert!((exact - got).abs() < tol, "{ty:?} t={t} r={r}: {exact} vs {got}");
                    }
                }
            }
        }
    }
}
