//! x86-64 SIMD tiles: `R` packed weight rows (see `pack`) dotted with `N`
//! tokens' packed Q8 activations.
//!
//! Quants are multiplied as u8 x i8 pairs: `vpdpbusd` on AVX-512 VNNI,
//! `vpmaddubsw` + `vpmaddwd` on AVX2 (Q4: 15 * 127 * 2 < i16::MAX). Q8_0
//! weights are signed: VNNI flips their sign bit (w + 128 as u8) and starts
//! the integer sum at -128 * sum(x); AVX2 uses the sign trick (|w| x sign(x,
//! w); |-128| reads as u8 128, still exact). Q4_0's -8 offset likewise starts
//! the sum at -8 * sum(x). All of that is integer and exact.
//!
//! Batch invariance: every (row, token) pair gets the same float operations
//! in the same order whatever `R` and `N` are (per group: convert, scale by
//! `dw * dx`, FMA into its own 8-lane accumulator; then a fixed horizontal
//! sum; then the tail pairs in scalar order). `R`, `N` and the split of
//! integer chains only change how integer work is scheduled.
//!
//! Callers check the CPU features before calling (see `kernels::Level`).

use std::arch::x86_64::*;

use super::pack::{GROUP, XGroup, block_parts, packed_row_bytes, split, x_groups};
use crate::quant::{GgmlType, QK};

pub const Q4_0: u8 = 0;
pub const Q4_1: u8 = 1;
pub const Q8_0: u8 = 2;

pub const fn ty_code(ty: GgmlType) -> u8 {
    match ty {
        GgmlType::Q4_1 => Q4_1,
        GgmlType::Q8_0 => Q8_0,
        _ => Q4_0,
    }
}

const fn ggml(ty: u8) -> GgmlType {
    match ty {
        Q4_1 => GgmlType::Q4_1,
        Q8_0 => GgmlType::Q8_0,
        _ => GgmlType::Q4_0,
    }
}

macro_rules! impl_tile {
    ($feat:literal, $kind:ident) => {
        /// Lane-wise u8 x i8 dot of 4-byte groups, added to `acc`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            dot_body!($kind, acc, u, s)
        }

        /// Rows `w` (packed, `nb` blocks each) times tokens `x` (packed):
        /// `out[r][n]`. Too-short inputs give zeros rather than reading out
        /// of bounds.
        ///
        /// # Safety
        /// The CPU must support the enabled features.
        #[target_feature(enable = $feat)]
        pub unsafe fn tile<const TY: u8, const R: usize, const N: usize>(
            w: [&[u8]; R],
            x: [&[XGroup]; N],
            nb: usize,
        ) -> [[f32; N]; R] {
            let mut out = [[0f32; N]; R];
            if w.iter().any(|r| r.len() < packed_row_bytes(ggml(TY), nb)) || x.iter().any(|r| r.len() < x_groups(nb)) {
                return out;
            }
            let (sb, qb) = block_parts(ggml(TY));
            let (nf, np) = split(nb);
            let bias = q_bias!($kind, TY);
            // Few independent (row, token) chains cannot hide the integer
            // dot's latency: give each a second one (integer, so exact).
            let two = R * N < 4;
            let m4 = _mm256_set1_epi8(0x0F);
            let zero = _mm256_setzero_si256();
            let mut facc = [[_mm256_setzero_ps(); N]; R];
            for g in 0..nf {
                let wp: [*const u8; R] = std::array::from_fn(|r| w[r][g * GROUP * (sb + qb)..].as_ptr());
                let xg: [&XGroup; N] = std::array::from_fn(|n| &x[n][g]);
                // SAFETY (all loads of this group): each row has a full group
                // of GROUP * (sb + qb) bytes at `wp` (length checked above):
                // scales in the first GROUP * sb, quants after them.
                let dw: [__m256; R] = std::array::from_fn(|r| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(wp[r] as *const __m128i)) });
                let mw: [__m256; R] = std::array::from_fn(|r| {
                    if TY == Q4_1 { unsafe { _mm256_cvtph_ps(_mm_loadu_si128(wp[r].add(16) as *const __m128i)) } } else { _mm256_setzero_ps() }
                });
                let init: [__m256i; N] = std::array::from_fn(|n| {
                    if bias == 0 {
                        zero
                    } else {
                        // SAFETY: `sum` is 8 i32.
                        let s = unsafe { _mm256_loadu_si256(xg[n].sum.as_ptr() as *const __m256i) };
                        _mm256_mullo_epi32(s, _mm256_set1_epi32(-bias))
                    }
                });
                let mut ia: [[__m256i; N]; R] = [init; R];
                let mut ib = [[zero; N]; R];
                let xv = |n: usize, j: usize| unsafe { _mm256_loadu_si256(xg[n].qs.as_ptr().add(j * 32) as *const __m256i) };
                for j in 0..4 {
                    // Two weight vectors per step: nibbles `j` low/high for
                    // Q4, vectors 2j and 2j + 1 for Q8.
                    let (xa, xb) = if TY == Q8_0 { (2 * j, 2 * j + 1) } else { (j, j + 4) };
                    let wv: [(__m256i, __m256i, __m256i, __m256i); R] = std::array::from_fn(|r| {
                        let q = unsafe { wp[r].add(GROUP * sb) };
                        if TY == Q8_0 {
                            let a = unsafe { _mm256_loadu_si256(q.add(xa * 32) as *const __m256i) };
                            let b = unsafe { _mm256_loadu_si256(q.add(xb * 32) as *const __m256i) };
                            let (ua, sa) = q8_prep!($kind, a);
                            let (ub, sbv) = q8_prep!($kind, b);
                            (ua, ub, sa, sbv)
                        } else {
                            let p = unsafe { _mm256_loadu_si256(q.add(j * 32) as *const __m256i) };
                            (_mm256_and_si256(p, m4), _mm256_and_si256(_mm256_srli_epi16(p, 4), m4), zero, zero)
                        }
                    });
                    for n in 0..N {
                        let (va, vb) = (xv(n, xa), xv(n, xb));
                        for r in 0..R {
                            let (ua, ub, sa, sbv) = wv[r];
                            let (va, vb) = if TY == Q8_0 { (q8_x!($kind, va, sa), q8_x!($kind, vb, sbv)) } else { (va, vb) };
                            ia[r][n] = dot(ia[r][n], ua, va);
                            if two {
                                ib[r][n] = dot(ib[r][n], ub, vb);
                            } else {
                                ia[r][n] = dot(ia[r][n], ub, vb);
                            }
                        }
                    }
                }
                for n in 0..N {
                    // SAFETY: `d` and `s` are 8 f32.
                    let (dx, sx) = unsafe { (_mm256_loadu_ps(xg[n].d.as_ptr()), _mm256_loadu_ps(xg[n].s.as_ptr())) };
                    for r in 0..R {
                        let isum = if two { _mm256_add_epi32(ia[r][n], ib[r][n]) } else { ia[r][n] };
                        let dd = _mm256_mul_ps(dw[r], dx);
                        facc[r][n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dd, facc[r][n]);
                        if TY == Q4_1 {
                            facc[r][n] = _mm256_fmadd_ps(mw[r], sx, facc[r][n]);
                        }
                    }
                }
            }
            for r in 0..R {
                for n in 0..N {
                    out[r][n] = hsum(facc[r][n]);
                }
            }
            for k in 0..np {
                let pb = 2 * (sb + qb);
                for r in 0..R {
                    let wr = &w[r][nf * GROUP * (sb + qb) + k * pb..][..pb];
                    // SAFETY: the pair's quants are 2 * qb >= 32 bytes after its
                    // 2 * sb bytes of scales (`wr` has `pb` bytes).
                    let q = unsafe { wr.as_ptr().add(2 * sb) };
                    let (ua, ub, sa, sbv) = if TY == Q8_0 {
                        let a = unsafe { _mm256_loadu_si256(q as *const __m256i) };
                        let b = unsafe { _mm256_loadu_si256(q.add(32) as *const __m256i) };
                        let (ua, sa) = q8_prep!($kind, a);
                        let (ub, sbv) = q8_prep!($kind, b);
                        (ua, ub, sa, sbv)
                    } else {
                        let p = unsafe { _mm256_loadu_si256(q as *const __m256i) };
                        (_mm256_and_si256(p, m4), _mm256_and_si256(_mm256_srli_epi16(p, 4), m4), zero, zero)
                    };
                    for n in 0..N {
                        let xg = &x[n][nf];
                        // SAFETY: pair `k` < 4 occupies qs[64k..64k + 64].
                        let (va, vb) = unsafe {
                            let p = xg.qs.as_ptr().add(k * 2 * QK);
                            (_mm256_loadu_si256(p as *const __m256i), _mm256_loadu_si256(p.add(32) as *const __m256i))
                        };
                        let (va, vb) = if TY == Q8_0 { (q8_x!($kind, va, sa), q8_x!($kind, vb, sbv)) } else { (va, vb) };
                        // Lanes 0-3 hold block 2k's partial sums, 4-7 block 2k + 1's.
                        let s = dot(dot(zero, ua, va), ub, vb);
                        let s = _mm256_hadd_epi32(s, s);
                        let s = _mm256_hadd_epi32(s, s);
                        let isum = [_mm256_extract_epi32(s, 0), _mm256_extract_epi32(s, 4)];
                        let mut acc = out[r][n];
                        for (i, &iv) in isum.iter().enumerate() {
                            let e = 2 * k + i;
                            let iv = iv - bias * xg.sum[e];
                            let dw = f16_to_f32(wr[2 * i], wr[2 * i + 1]);
                            acc = (iv as f32).mul_add(dw * xg.d[e], acc);
                            if TY == Q4_1 {
                                acc = f16_to_f32(wr[4 + 2 * i], wr[5 + 2 * i]).mul_add(xg.s[e], acc);
                            }
                        }
                        out[r][n] = acc;
                    }
                }
            }
            out
        }
    };
}

macro_rules! dot_body {
    (maddubs, $acc:ident, $u:ident, $s:ident) => {{
        let p16 = _mm256_maddubs_epi16($u, $s);
        _mm256_add_epi32($acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }};
    (vnni, $acc:ident, $u:ident, $s:ident) => {{ _mm256_dpbusd_epi32($acc, $u, $s) }};
}

/// The integer offset the sum starts from, times sum(x): Q4_0's -8, and
/// VNNI's +128 on Q8_0 weights.
macro_rules! q_bias {
    (maddubs, $ty:ident) => {
        if $ty == Q4_0 { 8 } else { 0 }
    };
    (vnni, $ty:ident) => {
        match $ty {
            Q4_0 => 8,
            Q8_0 => 128,
            _ => 0,
        }
    };
}

/// A Q8_0 weight vector as (u8 operand, sign source for the activations).
macro_rules! q8_prep {
    (maddubs, $w:ident) => {
        (_mm256_sign_epi8($w, $w), $w)
    };
    (vnni, $w:ident) => {
        (_mm256_xor_si256($w, _mm256_set1_epi8(-128)), $w)
    };
}

macro_rules! q8_x {
    (maddubs, $x:expr, $s:expr) => {
        _mm256_sign_epi8($x, $s)
    };
    (vnni, $x:expr, $s:expr) => {{
        let _ = $s;
        $x
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le_bytes([lo, hi])))))
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
    impl_tile!("avx2,fma,f16c", maddubs);
}

pub mod vnni {
    use super::*;
    impl_tile!("avx2,fma,f16c,avx512f,avx512vl,avx512vnni", vnni);
}
