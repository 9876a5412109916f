//! x86-64 SIMD dot products of quantized weight rows against Q8 activations.
//!
//! Each block of 32 weights becomes 32 bytes (nibbles zero-extended, or |w|
//! for Q8_0) that are multiplied with the activations' i8 as u8 x i8 pairs:
//! `vpdpbusd` on AVX-512 VNNI, `vpmaddubsw` + `vpmaddwd` on AVX2. Products fit:
//! 15 * 127 * 2 < i16::MAX for maddubs. Q8_0 uses the sign trick
//! (|w| x sign(x, w)); quantizers never emit -128, so negation cannot wrap.
//!
//! Callers check the CPU features before calling (see `kernels::Level`).

use std::arch::x86_64::*;

use crate::quant::BlockQ8;

macro_rules! impl_kernels {
    ($feat:literal, $kind:ident, $dot:ident, $q4_0:ident, $q4_1:ident, $q8_0:ident) => {
        /// Sums of 4-byte groups of u8 x i8 products.
        #[target_feature(enable = $feat)]
        #[inline]
        fn $dot(u: __m256i, s: __m256i) -> __m256i {
            dot_body!($kind, u, s)
        }

        // Each kernel dots one weight row with N token rows at once: the
        // weight block is unpacked once and reused N times. Blocks go in
        // pairs into two accumulator sets (constant indices, so they stay in
        // registers) to halve the FMA latency chain.

        /// # Safety
        /// The CPU must support the enabled features. Lengths are bounded by
        /// `nb` (the shortest input), so short inputs cannot read out of bounds.
        #[target_feature(enable = $feat)]
        pub unsafe fn $q4_0<const N: usize>(w: &[u8], x: [&[BlockQ8]; N]) -> [f32; N] {
            let nb = x.iter().map(|r| r.len()).min().unwrap_or(0).min(w.len() / 18);
            let m4 = _mm_set1_epi8(0x0F);
            let unpack = |b: &[u8]| {
                // SAFETY: `b` has 18 bytes so bytes 2..18 are in range.
                let qs = unsafe { _mm_loadu_si128(b.as_ptr().add(2) as *const __m128i) };
                let lo = _mm_and_si128(qs, m4);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), m4);
                (_mm256_set_m128i(hi, lo), f16_to_f32(b[0], b[1]))
            };
            // q4_0 weights are d * (q - 8): the -8 part is folded in via `s`.
            kernel_loop::<N, 18>(w, x, nb, |b| {
                let (wv, d) = unpack(b);
                (wv, d, -8.0 * d)
            })
        }

        /// # Safety
        /// As for the Q4_0 kernel.
        #[target_feature(enable = $feat)]
        pub unsafe fn $q4_1<const N: usize>(w: &[u8], x: [&[BlockQ8]; N]) -> [f32; N] {
            let nb = x.iter().map(|r| r.len()).min().unwrap_or(0).min(w.len() / 20);
            let m4 = _mm_set1_epi8(0x0F);
            kernel_loop::<N, 20>(w, x, nb, |b| {
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                let d = _mm_cvtss_f32(dm);
                let m = _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1));
                // SAFETY: `b` has 20 bytes so bytes 4..20 are in range.
                let qs = unsafe { _mm_loadu_si128(b.as_ptr().add(4) as *const __m128i) };
                let lo = _mm_and_si128(qs, m4);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), m4);
                let wv = _mm256_set_m128i(hi, lo);
                (wv, d, m)
            })
        }

        /// # Safety
        /// As for the Q4_0 kernel.
        #[target_feature(enable = $feat)]
        pub unsafe fn $q8_0<const N: usize>(w: &[u8], x: [&[BlockQ8]; N]) -> [f32; N] {
            let nb = x.iter().map(|r| r.len()).min().unwrap_or(0).min(w.len() / 34);
            // Signed x signed via |w| x sign(x, w): the second vector is the
            // sign source, applied per token inside the loop.
            kernel_loop_signed::<N>(w, x, nb)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn kernel_loop<const N: usize, const BB: usize>(
            w: &[u8],
            x: [&[BlockQ8]; N],
            nb: usize,
            block: impl Fn(&[u8]) -> (__m256i, f32, f32),
        ) -> [f32; N] {
            let mut acc0 = [_mm256_setzero_ps(); N];
            let mut acc1 = [_mm256_setzero_ps(); N];
            let mut off = [0f32; N];
            let mut off1 = [0f32; N];
            let mut i = 0;
            while i + 2 <= nb {
                let (wa, da, ma) = block(&w[i * BB..(i + 1) * BB]);
                let (wb, db, mb) = block(&w[(i + 1) * BB..(i + 2) * BB]);
                // Weight scales are broadcast once and shared by all N tokens;
                // the token scale then folds into the FMA as a broadcast load.
                let (dva, dvb) = (_mm256_set1_ps(da), _mm256_set1_ps(db));
                for n in 0..N {
                    let (a, b) = (&x[n][i], &x[n][i + 1]);
                    // SAFETY: `qs` arrays are 32 bytes.
                    let (xa, xb) = unsafe {
                        (
                            _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                            _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i),
                        )
                    };
                    let pa = _mm256_cvtepi32_ps($dot(wa, xa));
                    let pb = _mm256_cvtepi32_ps($dot(wb, xb));
                    acc0[n] = _mm256_fmadd_ps(_mm256_mul_ps(pa, dva), _mm256_set1_ps(a.d), acc0[n]);
                    acc1[n] = _mm256_fmadd_ps(_mm256_mul_ps(pb, dvb), _mm256_set1_ps(b.d), acc1[n]);
                    off[n] = ma.mul_add(a.s, off[n]);
                    off1[n] = mb.mul_add(b.s, off1[n]);
                }
                i += 2;
            }
            if i < nb {
                let (wa, da, ma) = block(&w[i * BB..(i + 1) * BB]);
                for n in 0..N {
                    let a = &x[n][i];
                    // SAFETY: `qs` is 32 bytes.
                    let xa = unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) };
                    let pa = _mm256_cvtepi32_ps($dot(wa, xa));
                    acc0[n] = _mm256_fmadd_ps(_mm256_set1_ps(da * a.d), pa, acc0[n]);
                    off[n] += ma * a.s;
                }
            }
            let mut out = [0f32; N];
            for n in 0..N {
                out[n] = hsum(_mm256_add_ps(acc0[n], acc1[n])) + (off[n] + off1[n]);
            }
            out
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn kernel_loop_signed<const N: usize>(w: &[u8], x: [&[BlockQ8]; N], nb: usize) -> [f32; N] {
            let mut acc0 = [_mm256_setzero_ps(); N];
            let mut acc1 = [_mm256_setzero_ps(); N];
            let load = |i: usize| {
                let b = &w[i * 34..(i + 1) * 34];
                // SAFETY: `b` has 34 bytes so bytes 2..34 are in range.
                let ws = unsafe { _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i) };
                (ws, _mm256_sign_epi8(ws, ws), f16_to_f32(b[0], b[1]))
            };
            let mut i = 0;
            while i + 2 <= nb {
                let (sa, wa, da) = load(i);
                let (sb, wb, db) = load(i + 1);
                let (dva, dvb) = (_mm256_set1_ps(da), _mm256_set1_ps(db));
                for n in 0..N {
                    let (a, b) = (&x[n][i], &x[n][i + 1]);
                    // SAFETY: `qs` arrays are 32 bytes.
                    let (xa, xb) = unsafe {
                        (
                            _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                            _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i),
                        )
                    };
                    let pa = _mm256_cvtepi32_ps($dot(wa, _mm256_sign_epi8(xa, sa)));
                    let pb = _mm256_cvtepi32_ps($dot(wb, _mm256_sign_epi8(xb, sb)));
                    acc0[n] = _mm256_fmadd_ps(_mm256_mul_ps(pa, dva), _mm256_set1_ps(a.d), acc0[n]);
                    acc1[n] = _mm256_fmadd_ps(_mm256_mul_ps(pb, dvb), _mm256_set1_ps(b.d), acc1[n]);
                }
                i += 2;
            }
            if i < nb {
                let (sa, wa, da) = load(i);
                for n in 0..N {
                    let a = &x[n][i];
                    // SAFETY: `qs` is 32 bytes.
                    let xa = unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) };
                    let pa = _mm256_cvtepi32_ps($dot(wa, _mm256_sign_epi8(xa, sa)));
                    acc0[n] = _mm256_fmadd_ps(_mm256_set1_ps(da * a.d), pa, acc0[n]);
                }
            }
            let mut out = [0f32; N];
            for n in 0..N {
                out[n] = hsum(_mm256_add_ps(acc0[n], acc1[n]));
            }
            out
        }
    };
}

macro_rules! dot_body {
    (maddubs, $u:ident, $s:ident) => {{
        let p16 = _mm256_maddubs_epi16($u, $s);
        _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
    }};
    (vnni, $u:ident, $s:ident) => {{
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), $u, $s)
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([lo, hi]) as i32)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

pub mod avx2 {
    use super::*;
    impl_kernels!("avx2,fma,f16c", maddubs, dot_u8i8, dot_q4_0, dot_q4_1, dot_q8_0);
}

pub mod vnni {
    use super::*;
    impl_kernels!(
        "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
        vnni,
        dot_u8i8,
        dot_q4_0,
        dot_q4_1,
        dot_q8_0
    );
}
