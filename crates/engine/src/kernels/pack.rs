//! The interleaved layouts the SIMD kernels read, for weights (repacked
//! once at load) and activations (packed once per matmul call).
//!
//! A row's blocks go in groups of 8, where dword `j` (4 bytes) of block `b`
//! sits in lane `b` of vector `j`. One integer dot instruction per vector then
//! leaves lane `b` holding part of block `b`'s sum, and after all vectors of
//! the group each lane holds one whole block's integer sum: the float work
//! (convert, scale, accumulate) runs once per 8 blocks instead of once per
//! block, with no horizontal integer reduction. The `nb % 8` blocks left
//! over go in pairs (4 lanes per block; a zero block pads an odd count),
//! whose lanes are scaled and accumulated as they are.
//!
//! Weight groups keep the ggml bytes per block, reordered: the f16 scales of
//! the group's blocks first (`d` of each, then `m` of each for Q4_1), then
//! the interleaved quants. For Q4 a quant byte holds element `i` in its low
//! nibble and `i + 16` in its high one, so vector `j` of the 16-byte nibble
//! data unpacks to the activations' vectors `j` (low) and `j + 4` (high).

use crate::quant::{BlockQ8, GgmlType, QK};

/// Blocks per full group (one per 32-bit lane of a 256-bit vector).
pub const GROUP: usize = 8;

/// Activations of up to 8 blocks, interleaved as above, with each block's
/// scale `d`, `s = d * sum(qs)` and the integer `sum(qs)` (the Q4_0 and
/// offset-Q8_0 kernels subtract `bias * sum` from the integer dot).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct XGroup {
    pub qs: [i8; GROUP * QK],
    pub d: [f32; GROUP],
    pub s: [f32; GROUP],
    pub sum: [i32; GROUP],
}

impl Default for XGroup {
    fn default() -> Self {
        XGroup { qs: [0; GROUP * QK], d: [0.0; GROUP], s: [0.0; GROUP], sum: [0; GROUP] }
    }
}

/// Full groups and tail pairs of a row of `nb` blocks.
pub fn split(nb: usize) -> (usize, usize) {
    (nb / GROUP, (nb % GROUP).div_ceil(2))
}

/// `XGroup`s per token row of `nb` blocks (one per tail pair too).
pub fn x_groups(nb: usize) -> usize {
    let (nf, np) = split(nb);
    nf + np
}

/// Bytes of f16 scales and of quants per block.
pub fn block_parts(ty: GgmlType) -> (usize, usize) {
    match ty {
        GgmlType::Q4_1 => (4, 16),
        GgmlType::Q8_0 => (2, 32),
        _ => (2, 16),
    }
}

/// Bytes of a packed row of `nb` blocks (an odd tail gets a zero block).
pub fn packed_row_bytes(ty: GgmlType, nb: usize) -> usize {
    let (nf, np) = split(nb);
    let (sb, qb) = block_parts(ty);
    (nf * GROUP + np * 2) * (sb + qb)
}

/// Byte offset of dword `j` of block `b` in the quants of a group of `g`
/// blocks (8, or 2 for a tail pair): vector `j / l`, lane `b * l + j % l`.
fn dword_at(g: usize, b: usize, j: usize) -> usize {
    let l = GROUP / g;
    ((j / l) * GROUP + b * l + j % l) * 4
}

/// Repacks one ggml row (`nb` blocks of `ty`) into `dst`
/// (`packed_row_bytes(ty, nb)` bytes).
pub fn pack_row(ty: GgmlType, src: &[u8], dst: &mut [u8]) {
    let (sb, qb) = block_parts(ty);
    let bb = sb + qb;
    let nb = src.len() / bb;
    let (nf, np) = split(nb);
    let groups = (0..nf).map(|g| (g * GROUP, GROUP)).chain((0..np).map(|k| (nf * GROUP + 2 * k, 2)));
    let mut off = 0;
    for (b0, g) in groups {
        let dst = &mut dst[off..off + g * bb];
        dst.fill(0);
        for b in 0..g {
            // A padding block past `nb` stays zero: scale 0 contributes 0.
            let Some(blk) = src.get((b0 + b) * bb..(b0 + b + 1) * bb) else { continue };
            // Scales: d of every block, then (Q4_1) m of every block.
            for (h, pair) in blk[..sb].chunks_exact(2).enumerate() {
                dst[(h * g + b) * 2..(h * g + b) * 2 + 2].copy_from_slice(pair);
            }
            let q = &mut dst[g * sb..];
            for (j, dw) in blk[sb..].chunks_exact(4).enumerate() {
                let at = dword_at(g, b, j);
                q[at..at + 4].copy_from_slice(dw);
            }
        }
        off += g * bb;
    }
}

/// Interleaves one token's Q8 blocks into `x_groups(x.len())` groups.
///
/// A tail pair's group uses vectors 0 and 1 only, and repeats each block's
/// `d` over its 4 lanes so the kernels scale the lanes' partial sums without
/// reducing them first; `s` and `sum` sit in the block's first lane (0 or 4)
/// with zeros beside them, so the terms they feed count once per block.
pub fn pack_x(x: &[BlockQ8], out: &mut [XGroup]) {
    let (nf, np) = split(x.len());
    for (gi, grp) in out.iter_mut().enumerate().take(nf + np) {
        let (b0, g) = if gi < nf { (gi * GROUP, GROUP) } else { (nf * GROUP + 2 * (gi - nf), 2) };
        let l = GROUP / g;
        *grp = XGroup::default();
        for b in 0..g {
            let Some(blk) = x.get(b0 + b) else { continue };
            for (j, dw) in blk.qs.chunks_exact(4).enumerate() {
                let at = dword_at(g, b, j);
                grp.qs[at..at + 4].copy_from_slice(dw);
            }
            grp.d[b * l..(b + 1) * l].fill(blk.d);
            grp.s[b * l] = blk.s;
            grp.sum[b * l] = blk.qs.iter().map(|&q| i32::from(q)).sum();
        }
    }
}
