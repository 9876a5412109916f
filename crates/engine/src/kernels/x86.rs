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

        /// # Safety
        /// The CPU must support the enabled features; `w` must hold
        /// `x.len()` Q4_0 blocks.
        #[target_feature(enable = $feat)]
        pub unsafe fn $q4_0(w: &[u8], x: &[BlockQ8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut off = 0f32;
            let m4 = _mm_set1_epi8(0x0F);
            for (b, a) in w.chunks_exact(18).zip(x) {
                let d = f16_to_f32(b[0], b[1]);
                // SAFETY: `b` has 18 bytes so bytes 2..18 are in range; `a.qs` is 32 bytes.
                let (qs, xs) = unsafe {
                    (
                        _mm_loadu_si128(b.as_ptr().add(2) as *const __m128i),
                        _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                    )
                };
                let lo = _mm_and_si128(qs, m4);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), m4);
                let p = $dot(_mm256_set_m128i(hi, lo), xs);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(p), acc);
                off += d * a.s;
            }
            hsum(acc) - 8.0 * off
        }

        /// # Safety
        /// The CPU must support the enabled features; `w` must hold
        /// `x.len()` Q4_1 blocks.
        #[target_feature(enable = $feat)]
        pub unsafe fn $q4_1(w: &[u8], x: &[BlockQ8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut off = 0f32;
            let m4 = _mm_set1_epi8(0x0F);
            for (b, a) in w.chunks_exact(20).zip(x) {
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                let d = _mm_cvtss_f32(dm);
                let m = _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1));
                // SAFETY: `b` has 20 bytes so bytes 4..20 are in range; `a.qs` is 32 bytes.
                let (qs, xs) = unsafe {
                    (
                        _mm_loadu_si128(b.as_ptr().add(4) as *const __m128i),
                        _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                    )
                };
                let lo = _mm_and_si128(qs, m4);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), m4);
                let p = $dot(_mm256_set_m128i(hi, lo), xs);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(p), acc);
                off += m * a.s;
            }
            hsum(acc) + off
        }

        /// # Safety
        /// The CPU must support the enabled features; `w` must hold
        /// `x.len()` Q8_0 blocks.
        #[target_feature(enable = $feat)]
        pub unsafe fn $q8_0(w: &[u8], x: &[BlockQ8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (b, a) in w.chunks_exact(34).zip(x) {
                let d = f16_to_f32(b[0], b[1]);
                // SAFETY: `b` has 34 bytes so bytes 2..34 are in range; `a.qs` is 32 bytes.
                let (ws, xs) = unsafe {
                    (
                        _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i),
                        _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                    )
                };
                let p = $dot(_mm256_sign_epi8(ws, ws), _mm256_sign_epi8(xs, ws));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(p), acc);
            }
            hsum(acc)
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
