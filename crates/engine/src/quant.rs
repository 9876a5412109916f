//! ggml tensor types: block layouts, dequantization, and the quantizers used
//! for activations (Q8 per 32-block, like llama.cpp's Q8_1) and for building
//! in-memory test models.
//!
//! Block layouts (little endian, as in ggml):
//! - Q4_0: f16 d, 16 bytes nibbles; w = d * (q - 8)           (18 bytes / 32)
//! - Q4_1: f16 d, f16 m, 16 bytes nibbles; w = d * q + m      (20 bytes / 32)
//! - Q8_0: f16 d, 32 x i8; w = d * q                          (34 bytes / 32)
//!   Nibble j of byte i: low nibble is element i, high nibble is element i + 16.

use half::f16;

pub const QK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 8,
}

impl GgmlType {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            _ => return None,
        })
    }
    /// Elements per block.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            _ => QK,
        }
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q8_0 => 34,
        }
    }
    /// Bytes of one row of `n` elements (`n` must be a multiple of `block_len`).
    pub fn row_bytes(self, n: usize) -> usize {
        n / self.block_len() * self.block_bytes()
    }
}

#[inline]
pub fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantizes one row (`out.len()` elements) from its raw bytes.
/// Callers guarantee `src.len() == ty.row_bytes(out.len())`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(18)) {
                let d = f16_at(b, 0);
                for i in 0..16 {
                    o[i] = d * ((b[2 + i] & 0x0F) as f32 - 8.0);
                    o[i + 16] = d * ((b[2 + i] >> 4) as f32 - 8.0);
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(20)) {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for i in 0..16 {
                    o[i] = d * (b[4 + i] & 0x0F) as f32 + m;
                    o[i + 16] = d * (b[4 + i] >> 4) as f32 + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(34)) {
                let d = f16_at(b, 0);
                for i in 0..QK {
                    o[i] = d * (b[2 + i] as i8) as f32;
                }
            }
        }
    }
}

/// Quantizes f32 values into a ggml type (test models and round-trip tests).
/// `x.len()` must be a multiple of the block length.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ty.row_bytes(x.len()));
    match ty {
        GgmlType::F32 => x.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => x.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes())),
        GgmlType::Q4_0 => {
            for b in x.chunks_exact(QK) {
                // As ggml: the value of largest magnitude maps to -8.
                let max = b.iter().copied().fold(0f32, |a, v| if v.abs() > a.abs() { v } else { a });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                for i in 0..16 {
                    let q0 = ((b[i] * id + 8.5) as i32).clamp(0, 15) as u8;
                    let q1 = ((b[i + 16] * id + 8.5) as i32).clamp(0, 15) as u8;
                    out.push(q0 | (q1 << 4));
                }
            }
        }
        GgmlType::Q4_1 => {
            for b in x.chunks_exact(QK) {
                let min = b.iter().copied().fold(f32::INFINITY, f32::min);
                let max = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
                for i in 0..16 {
                    let q0 = (((b[i] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                    let q1 = (((b[i + 16] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                    out.push(q0 | (q1 << 4));
                }
            }
        }
        GgmlType::Q8_0 => {
            for b in x.chunks_exact(QK) {
                let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                for v in b {
                    out.push((v * id).round().clamp(-127.0, 127.0) as i8 as u8);
                }
            }
        }
    }
    out
}

/// An activation block: 32 values quantized to i8 with scale `d`, plus
/// `s = d * sum(qs)` which the Q4 dot products need for their offset term.
///
/// `qs` comes first and the block is 32-byte aligned so that the kernels'
/// 32-byte loads never straddle a cache line (a 40-byte packed stride split
/// about a third of them); the padding costs 24 bytes per block.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
pub struct BlockQ8 {
    pub qs: [i8; QK],
    pub d: f32,
    pub s: f32,
}

/// Quantizes an activation row (length a multiple of 32) into Q8 blocks.
pub fn quantize_row_q8(x: &[f32], out: &mut [BlockQ8]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("sse4.1") {
        // SAFETY: the features were just checked.
        return unsafe { quantize_row_q8_avx2(x, out) };
    }
    quantize_row_q8_portable(x, out)
}

/// AVX2 quantizer, bit-identical to the portable one (same scale, same
/// ties-to-even rounding), as ggml's `quantize_row_q8_1` AVX2 path.
///
/// # Safety
/// The CPU must support AVX2 and SSE4.1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,sse4.1")]
unsafe fn quantize_row_q8_avx2(x: &[f32], out: &mut [BlockQ8]) {
    use std::arch::x86_64::*;
    let sign = _mm256_set1_ps(-0.0);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        // SAFETY: `xs` has 32 floats, so the four 8-float loads are in range.
        let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * i)) });
        let m = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
        );
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        let amax = _mm_cvtss_f32(m4);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mul = _mm256_set1_ps(id);
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            let r = _mm256_round_ps(_mm256_mul_ps(v[i], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_cvtps_epi32(r)
        });
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b10_11_00_01));
        let sum = _mm_cvtsi128_si32(s4);
        // packs interleave 128-bit lanes; the permute restores element order.
        let p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `qs` is 32 bytes.
        unsafe { _mm256_storeu_si256(blk.qs.as_mut_ptr() as *mut __m256i, p) };
        blk.d = d;
        blk.s = d * sum as f32;
    }
}

pub fn quantize_row_q8_portable(x: &[f32], out: &mut [BlockQ8]) {
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in blk.qs.iter_mut().zip(xs) {
            // Ties to even (as llama.cpp's SIMD quantizers) maps to one
            // `vroundps`; |v * id| <= 127, so the casts cannot saturate.
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        blk.d = d;
        blk.s = d * sum as f32;
    }
}

/// Portable reference dot products of one weight row against Q8 activations.
pub mod scalar {
    use super::*;

    pub fn dot_q4_0(w: &[u8], x: &[BlockQ8]) -> f32 {
        let mut acc = 0f32;
        for (b, a) in w.chunks_exact(18).zip(x) {
            let d = f16_at(b, 0);
            let mut isum = 0i32;
            for i in 0..16 {
                isum += (b[2 + i] & 0x0F) as i32 * a.qs[i] as i32;
                isum += (b[2 + i] >> 4) as i32 * a.qs[i + 16] as i32;
            }
            // sum d*(q-8)*dx*qx = d*(dx*isum - 8*s)
            acc += d * (a.d * isum as f32 - 8.0 * a.s);
        }
        acc
    }

    pub fn dot_q4_1(w: &[u8], x: &[BlockQ8]) -> f32 {
        let mut acc = 0f32;
        for (b, a) in w.chunks_exact(20).zip(x) {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let mut isum = 0i32;
            for i in 0..16 {
                isum += (b[4 + i] & 0x0F) as i32 * a.qs[i] as i32;
                isum += (b[4 + i] >> 4) as i32 * a.qs[i + 16] as i32;
            }
            acc += d * a.d * isum as f32 + m * a.s;
        }
        acc
    }

    pub fn dot_q8_0(w: &[u8], x: &[BlockQ8]) -> f32 {
        let mut acc = 0f32;
        for (b, a) in w.chunks_exact(34).zip(x) {
            let d = f16_at(b, 0);
            let mut isum = 0i32;
            for i in 0..QK {
                isum += (b[2 + i] as i8) as i32 * a.qs[i] as i32;
            }
            acc += d * a.d * isum as f32;
        }
        acc
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantize_dequantize_roundtrip_error_is_small() {
        let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        for (ty, tol) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 1e-3),
            (GgmlType::Q8_0, 1e-2),
            (GgmlType::Q4_1, 0.1),
            (GgmlType::Q4_0, 0.2),
        ] {
            let q = quantize(ty, &x);
            assert_eq!(q.len(), ty.row_bytes(x.len()));
            let mut y = vec![0f32; x.len()];
            dequantize_row(ty, &q, &mut y);
            let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err <= tol, "{ty:?}: {err}");
        }
    }

    #[test]
    fn simd_quantizer_matches_portable_bit_for_bit() {
        let x: Vec<f32> = (0..32 * 40).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
        let mut x = x;
        x[64..96].fill(0.0); // an all-zero block
        x[100] = 0.5 * (x[101].abs().max(1.0)); // values near rounding ties
        let (mut a, mut b) = (vec![BlockQ8::default(); 40], vec![BlockQ8::default(); 40]);
        quantize_row_q8(&x, &mut a);
        quantize_row_q8_portable(&x, &mut b);
        for (p, q) in a.iter().zip(&b) {
            assert_eq!((p.d, p.s, p.qs), (q.d, q.s, q.qs));
        }
    }

    #[test]
    fn scalar_dots_match_dequantized_dot() {
        let w: Vec<f32> = (0..128).map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0).collect();
        let x: Vec<f32> = (0..128).map(|i| ((i * 7 % 23) as f32 / 11.0) - 1.0).collect();
        let mut xq = vec![BlockQ8::default(); 4];
        quantize_row_q8(&x, &mut xq);
        for (ty, f) in [
            (GgmlType::Q4_0, scalar::dot_q4_0 as fn(&[u8], &[BlockQ8]) -> f32),
            (GgmlType::Q4_1, scalar::dot_q4_1),
            (GgmlType::Q8_0, scalar::dot_q8_0),
        ] {
            let wq = quantize(ty, &w);
            let mut wd = vec![0f32; 128];
            dequantize_row(ty, &wq, &mut wd);
            let exact: f32 = wd.iter().zip(&x).map(|(a, b)| a * b).sum();
            let got = f(&wq, &xq);
            assert!((exact - got).abs() < 0.05 * exact.abs().max(1.0), "{ty:?} {exact} {got}");
        }
    }
}
