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
//! in the same order whatever `R` and `N` are (per group, tail pairs
//! included: convert, scale by `dw * dx`, FMA into its own 8-lane
//! accumulator; then a horizontal sum whose per-lane order is fixed). `R`,
//! `N` and the split of integer chains only change how integer work is
//! scheduled.
//!
//! Callers check the CPU features before calling (see `kernels::Level`).

use std::arch::x86_64::*;

use super::pack::{GROUP, XGroup, block_parts, packed_row_bytes, split, x_groups};
use crate::quant::GgmlType;

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
            // Pair scales [dA dB mA mB] spread over the pair's lanes: d over
            // all 4 of its block's, m over the first only.
            let spread_d = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
            let spread_m = _mm256_setr_epi32(2, 0, 0, 0, 3, 0, 0, 0);
            let first = _mm256_castsi256_ps(_mm256_setr_epi32(-1, 0, 0, 0, -1, 0, 0, 0));
            let mut facc = [[_mm256_setzero_ps(); N]; R];
            for gi in 0..nf + np {
                let full = gi < nf;
                let (g, start) = if full { (GROUP, gi * GROUP) } else { (2, nf * GROUP + 2 * (gi - nf)) };
                let wp: [*const u8; R] = std::array::from_fn(|r| w[r][start * (sb + qb)..].as_ptr());
                let xg: [&XGroup; N] = std::array::from_fn(|n| &x[n][gi]);
                // SAFETY (weight loads of this group): each row has the
                // group's g * (sb + qb) bytes at `wp` (length checked above):
                // g * sb bytes of scales, then g * qb >= 32 bytes of quants
                // per 32-byte vector read.
                let (dw, mw): ([__m256; R], [__m256; R]) = if full {
                    (
                        std::array::from_fn(|r| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(wp[r] as *const __m128i)) }),
                        std::array::from_fn(|r| {
                            if TY == Q4_1 {
                                unsafe { _mm256_cvtph_ps(_mm_loadu_si128(wp[r].add(16) as *const __m128i)) }
                            } else {
                                _mm256_setzero_ps()
                            }
                        }),
                    )
                } else {
                    let sc: [__m256; R] = std::array::from_fn(|r| {
                        let h = unsafe {
                            if TY == Q4_1 {
                                _mm_loadl_epi64(wp[r] as *const __m128i)
                            } else {
                                _mm_cvtsi32_si128((wp[r] as *const i32).read_unaligned())
                            }
                        };
                        _mm256_castps128_ps256(_mm_cvtph_ps(h))
                    });
                    (
                        sc.map(|v| _mm256_permutevar8x32_ps(v, spread_d)),
                        sc.map(|v| _mm256_and_ps(_mm256_permutevar8x32_ps(v, spread_m), first)),
                    )
                };
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
                // SAFETY: vectors 0..8 of the 256-byte `qs`.
                let xv =
                    |n: usize, j: usize| unsafe { _mm256_loadu_si256(xg[n].qs.as_ptr().add(j * 32) as *const __m256i) };
                for j in 0..if full { 4 } else { 1 } {
                    // Two weight vectors per step: nibbles `j` low/high for
                    // Q4 (activation vectors j, j + 4; a pair's are 0, 1),
                    // vectors 2j and 2j + 1 for Q8.
                    let (xa, xb) = if TY == Q8_0 || !full { (2 * j, 2 * j + 1) } else { (j, j + 4) };
                    let wv: [(__m256i, __m256i, __m256i, __m256i); R] = std::array::from_fn(|r| {
                        // SAFETY: see the group's comment above.
                        let q = unsafe { wp[r].add(g * sb) };
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
                            let (va, vb) =
                                if TY == Q8_0 { (q8_x!($kind, va, sa), q8_x!($kind, vb, sbv)) } else { (va, vb) };
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
            // Horizontal sums four accumulators at a time; each lane's
            // order is the same whichever vectors share the tree.
            for q0 in (0..R * N).step_by(4) {
                let at = |i: usize| ((q0 + i) / N, (q0 + i) % N);
                let v: [__m256; 4] =
                    std::array::from_fn(|i| if q0 + i < R * N { facc[at(i).0][at(i).1] } else { _mm256_setzero_ps() });
                let s = hsum4(v);
                for (i, &si) in s.iter().enumerate().take(R * N - q0) {
                    out[at(i).0][at(i).1] = si;
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

/// Sums of the 8 lanes of four vectors, each as
/// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum4(v: [__m256; 4]) -> [f32; 4] {
    let ab = _mm256_hadd_ps(v[0], v[1]);
    let cd = _mm256_hadd_ps(v[2], v[3]);
    let abcd = _mm256_hadd_ps(ab, cd);
    let s = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
    let mut out = [0f32; 4];
    // SAFETY: `out` holds 4 f32.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
    out
}

pub mod avx2 {
    use super::*;
    impl_tile!("avx2,fma,f16c", maddubs);
}

pub mod vnni {
    use super::*;
    impl_tile!("avx2,fma,f16c,avx512f,avx512vl,avx512vnni", vnni);
}
