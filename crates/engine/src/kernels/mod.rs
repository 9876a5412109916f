//! Matrix multiplication of (quantized) weights with a batch of activation rows.
//!
//! Weights stay in their ggml encoding. Activations are quantized to Q8 per
//! 32-block once per call, then each weight row is dotted with every token's
//! activations while it is hot in L1: the weights are read once per step
//! whatever the number of tokens. Output rows are split across rayon workers.
//! The SIMD level is detected at run time; the scalar kernels in
//! `quant::scalar` are the reference every SIMD kernel is tested against.

#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

use crate::gguf::Bytes;
use crate::quant::{BlockQ8, GgmlType, QK, dequantize_row, quantize_row_q8, scalar};

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
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
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
            [Level::Avx512Vnni, Level::Avx2]
                .into_iter()
                .find(|l| l.is_available())
                .unwrap_or(Level::Scalar)
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
        [Level::Scalar, Level::Avx2, Level::Avx512Vnni]
            .into_iter()
            .filter(|l| l.is_available())
            .collect()
    }
}

pub type DotFn = fn(&[u8], &[BlockQ8]) -> f32;
pub type Dot4Fn = fn(&[u8], [&[BlockQ8]; 4]) -> [f32; 4];
pub type Dot8Fn = fn(&[u8], [&[BlockQ8]; 8]) -> [f32; 8];

/// Dot kernels for one weight type: one token, or four or eight tokens
/// sharing each unpacked weight block. All three compute each token's dot
/// product with the same operations in the same order, so a token's result
/// does not depend on how many tokens share its step: the engine is batch
/// invariant, which makes failover (recomputing a prefix in one prefill)
/// give exactly the tokens an undisturbed run gives.
#[derive(Clone, Copy)]
pub struct Dot {
    pub one: DotFn,
    pub four: Dot4Fn,
    pub eight: Dot8Fn,
}

/// The dot kernels for a quantized weight type at a level; a level the CPU
/// lacks falls back to scalar, so the returned functions are always safe to call.
pub fn dot_fn(level: Level, ty: GgmlType) -> Option<Dot> {
    let level = if level.is_available() { level } else { Level::Scalar };
    #[cfg(target_arch = "x86_64")]
    {
        // The wrappers are only reachable after the feature check above.
        macro_rules! wrap {
            ($m:ident :: $f:ident) => {{
                fn one(a: &[u8], b: &[BlockQ8]) -> f32 {
                    // SAFETY: `dot_fn` returns this wrapper only when
                    // `Level::is_available` confirmed the CPU features.
                    unsafe { x86::$m::$f::<1>(a, [b])[0] }
                }
                fn four(a: &[u8], b: [&[BlockQ8]; 4]) -> [f32; 4] {
                    // SAFETY: as above.
                    unsafe { x86::$m::$f::<4>(a, b) }
                }
                fn eight(a: &[u8], b: [&[BlockQ8]; 8]) -> [f32; 8] {
                    // SAFETY: as above.
                    unsafe { x86::$m::$f::<8>(a, b) }
                }
                Dot { one, four, eight }
            }};
        }
        match (level, ty) {
            (Level::Avx2, GgmlType::Q4_0) => return Some(wrap!(avx2::dot_q4_0)),
            (Level::Avx2, GgmlType::Q4_1) => return Some(wrap!(avx2::dot_q4_1)),
            (Level::Avx2, GgmlType::Q8_0) => return Some(wrap!(avx2::dot_q8_0)),
            (Level::Avx512Vnni, GgmlType::Q4_0) => return Some(wrap!(vnni::dot_q4_0)),
            (Level::Avx512Vnni, GgmlType::Q4_1) => return Some(wrap!(vnni::dot_q4_1)),
            (Level::Avx512Vnni, GgmlType::Q8_0) => return Some(wrap!(vnni::dot_q8_0)),
            _ => {}
        }
    }
    macro_rules! scalar4 {
        ($f:path) => {{
            fn four(a: &[u8], b: [&[BlockQ8]; 4]) -> [f32; 4] {
                b.map(|x| $f(a, x))
            }
            fn eight(a: &[u8], b: [&[BlockQ8]; 8]) -> [f32; 8] {
                b.map(|x| $f(a, x))
            }
            Dot { one: $f, four, eight }
        }};
    }
    match ty {
        GgmlType::Q4_0 => Some(scalar4!(scalar::dot_q4_0)),
        GgmlType::Q4_1 => Some(scalar4!(scalar::dot_q4_1)),
        GgmlType::Q8_0 => Some(scalar4!(scalar::dot_q8_0)),
        GgmlType::F32 | GgmlType::F16 => None,
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
    /// Quantized rows, still in ggml layout (often a window into the mmap).
    Quant(Bytes),
    /// F32/F16 weights are widened once at load: they are tiny in practice.
    Dense(Vec<f32>),
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
            _ => WeightData::Quant(bytes),
        };
        Some(Weight { ty, rows, cols, data })
    }

    /// Dequantizes row `r` into `out` (embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        match &self.data {
            WeightData::Dense(v) => out.copy_from_slice(&v[r * self.cols..(r + 1) * self.cols]),
            WeightData::Quant(b) => {
                let rb = self.ty.row_bytes(self.cols);
                dequantize_row(self.ty, &b.as_slice()[r * rb..(r + 1) * rb], out);
            }
        }
    }

    /// `out[t * rows + r] = dot(row r, x[t * cols ..])` for `t` in `0..n_tokens`.
    pub fn matmul(&self, x: &[f32], n_tokens: usize, out: &mut [f32]) {
        self.matmul_at(Level::best(), x, n_tokens, out)
    }

    pub fn matmul_at(&self, level: Level, x: &[f32], n_tokens: usize, out: &mut [f32]) {
        let (rows, cols, t) = (self.rows, self.cols, n_tokens);
        assert_eq!(x.len(), t * cols, "matmul input shape");
        assert_eq!(out.len(), t * rows, "matmul output shape");
        if t == 0 {
            return;
        }
        let chunk = rows.div_ceil(rayon::current_num_threads() * 8).clamp(4, 256);
        // Each worker fills rows [r0, r0 + n) for all tokens, laid out row-major
        // in `tmp` (token-major `out` would interleave writers), then we transpose.
        // `row_fn(r, out_row)` fills the `t` outputs of weight row `r`.
        let compute = |row_fn: &(dyn Fn(usize, &mut [f32]) + Sync), dst: &mut [f32]| {
            dst.par_chunks_mut(chunk * t).enumerate().for_each(|(ci, o)| {
                for (j, orow) in o.chunks_exact_mut(t).enumerate() {
                    row_fn(ci * chunk + j, orow);
                }
            });
        };
        let mut tmp = if t == 1 { Vec::new() } else { vec![0f32; rows * t] };
        let dst: &mut [f32] = if t == 1 { out } else { &mut tmp };
        match &self.data {
            WeightData::Quant(b) => {
                let nb = cols / QK;
                let mut xq = vec![BlockQ8::default(); t * nb];
                if t < 16 {
                    xq.chunks_mut(nb).zip(x.chunks(cols)).for_each(|(q, xs)| quantize_row_q8(xs, q));
                } else {
                    xq.par_chunks_mut(nb)
                        .zip(x.par_chunks(cols))
                        .for_each(|(q, xs)| quantize_row_q8(xs, q));
                }
                let rb = self.ty.row_bytes(cols);
                let w = b.as_slice();
                let Some(dot) = dot_fn(level, self.ty) else { return };
                let xr = |tt: usize| &xq[tt * nb..(tt + 1) * nb];
                let groups = t / 8;
                compute(
                    &|r, orow| {
                        let wr = &w[r * rb..(r + 1) * rb];
                        for g in 0..groups {
                            let v = (dot.eight)(wr, std::array::from_fn(|k| xr(g * 8 + k)));
                            orow[g * 8..g * 8 + 8].copy_from_slice(&v);
                        }
                        let mut tt = groups * 8;
                        while tt + 4 <= t {
                            let v = (dot.four)(wr, [xr(tt), xr(tt + 1), xr(tt + 2), xr(tt + 3)]);
                            orow[tt..tt + 4].copy_from_slice(&v);
                            tt += 4;
                        }
                        for (k, o) in orow.iter_mut().enumerate().skip(tt) {
                            *o = (dot.one)(wr, xr(k));
                        }
                    },
                    dst,
                );
            }
            WeightData::Dense(v) => {
                compute(
                    &|r, orow| {
                        let wr = &v[r * cols..(r + 1) * cols];
                        for (tt, o) in orow.iter_mut().enumerate() {
                            *o = wr.iter().zip(&x[tt * cols..(tt + 1) * cols]).map(|(a, b)| a * b).sum();
                        }
                    },
                    dst,
                );
            }
        }
        if t > 1 {
            // Tiled transpose: a 64-row tile of `tmp` (64 * t floats) stays in
            // cache while each token's 64 outputs are written contiguously.
            const TILE: usize = 64;
            for r0 in (0..rows).step_by(TILE) {
                let r1 = (r0 + TILE).min(rows);
                for tt in 0..t {
                    let dst = &mut out[tt * rows + r0..tt * rows + r1];
                    for (k, o) in dst.iter_mut().enumerate() {
                        *o = tmp[(r0 + k) * t + tt];
                    }
                }
            }
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

    #[test]
    fn every_simd_kernel_matches_scalar() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for level in Level::available() {
            for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
                for nb in [1usize, 3, 18, 48] {
                    let w = quantize(ty, &rand_vec(&mut rng, nb * QK));
                    let mut xq = vec![BlockQ8::default(); nb];
                    quantize_row_q8(&rand_vec(&mut rng, nb * QK), &mut xq);
                    let want = (dot_fn(Level::Scalar, ty).unwrap().one)(&w, &xq);
                    let got = (dot_fn(level, ty).unwrap().one)(&w, &xq);
                    assert!(
                        (want - got).abs() <= 1e-4 * want.abs().max(1.0),
                        "{level:?} {ty:?} nb={nb}: {want} vs {got}"
                    );
                    // Eight tokens at once: the same bits per token as one at a
                    // time at this level (batch invariance), and close to scalar.
                    let mut xs8 = vec![vec![BlockQ8::default(); nb]; 8];
                    for x in xs8.iter_mut() {
                        quantize_row_q8(&rand_vec(&mut rng, nb * QK), x);
                    }
                    let kernels = dot_fn(level, ty).unwrap();
                    let eight = (kernels.eight)(&w, std::array::from_fn(|k| xs8[k].as_slice()));
                    let four = (kernels.four)(&w, [&xs8[0], &xs8[1], &xs8[2], &xs8[3]]);
                    for (n, (x, got)) in xs8.iter().zip(eight).enumerate() {
                        let alone = (kernels.one)(&w, x);
                        assert_eq!(got.to_bits(), alone.to_bits(), "{level:?} {ty:?}: token {n} of 8 differs from alone");
                        if n < 4 {
                            assert_eq!(four[n].to_bits(), alone.to_bits(), "{level:?} {ty:?}: token {n} of 4 differs");
                        }
                        let want = (dot_fn(Level::Scalar, ty).unwrap().one)(&w, x);
                        assert!((want - got).abs() <= 1e-4 * want.abs().max(1.0), "{level:?} {ty:?} x8: {want} vs {got}");
                    }
                    // The 4-token kernel must agree with the 1-token one per token.
                    let mut xs = vec![vec![BlockQ8::default(); nb]; 4];
                    for x in xs.iter_mut() {
                        quantize_row_q8(&rand_vec(&mut rng, nb * QK), x);
                    }
                    let four = (dot_fn(level, ty).unwrap().four)(&w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                    for (x, got) in xs.iter().zip(four) {
                        let want = (dot_fn(Level::Scalar, ty).unwrap().one)(&w, x);
                        assert!((want - got).abs() <= 1e-4 * want.abs().max(1.0), "{level:?} {ty:?} x4");
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
