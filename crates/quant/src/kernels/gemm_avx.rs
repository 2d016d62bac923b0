//! The x86-64 tiles of [`super::int_gemm`]: `MR` tokens × `NP` panels of 16 rows, the accumulators in
//! registers over the whole reduction. Every path computes the same exact i32 sums as
//! [`super::tile::tile_scalar`]:
//! - AVX-512 VNNI: per 4 inputs, one 64-byte panel load and one `vpdpbusd` (u8 × i8, summed in i32) per token
//!   and panel, the token's 4 codes broadcast to every lane;
//! - AVX-VNNI (the VEX encoding on client CPUs without AVX-512): the same on two 256-bit halves;
//! - AVX2: both operands widened to i16 beforehand (the weights re-packed into input pairs once,
//!   [`super::tile::pair_panels`]; the activations quantized straight to i16) and multiplied with `vpmaddwd`, one
//!   i32 lane per row, the token's input pair broadcast from memory (u8 × i8 through `vpmaddubsw` would
//!   saturate its i16 sums at 8 bits);
//! - AVX2 on narrow codes (every weight within ±64: 7 bits or fewer): `vpmaddubsw` on the bytes as they are,
//!   exact because no pair sum can pass 2 · 255 · 64 = 32640, its i16 sums added over as many input groups as
//!   cannot overflow ([`super::tile::narrow_steps`]: 8 for 4-bit codes) before one `vpmaddwd` against ones widens them.

// The tiles index tokens, panels and accumulators by the same `t` and `p`; indices read better there.
#![allow(clippy::needless_range_loop)]

use super::tile::{Tile, TileAcc, WideTile, PANEL};
use std::arch::x86_64::*;

/// Dispatches a tile's `(mr, np)` to a kernel compiled for exactly that shape.
macro_rules! by_shape {
    ($kernel:ident, $tile:expr, $acc:expr, [$(($mr:literal, $np:literal)),*]) => {
        match ($tile.mr, $tile.np) {
            $(($mr, $np) => $kernel::<$mr, $np>($tile, $acc),)*
            (mr, np) => unreachable!("int_gemm: no {} tile of {mr} tokens × {np} panels", stringify!($kernel)),
        }
    };
}

/// The token's 4 codes at input group `kk`, as one i32.
#[inline(always)]
unsafe fn codes4(tile: &Tile<'_>, t: usize, kk: usize) -> i32 {
    (tile.x.as_ptr().add((kk * tile.group + t) * 4) as *const i32).read_unaligned()
}

/// # Safety
/// The CPU must have AVX-512F, BW and VNNI; the tile must be in bounds and at most 8 tokens × 2 panels.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn tile_avx512_vnni(tile: Tile<'_>, acc: &mut TileAcc) {
    by_shape!(
        vnni512,
        tile,
        acc,
        [
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 1),
            (5, 1),
            (6, 1),
            (7, 1),
            (8, 1),
            (9, 1),
            (10, 1),
            (11, 1),
            (12, 1),
            (1, 2),
            (2, 2),
            (3, 2),
            (4, 2),
            (5, 2),
            (6, 2),
            (7, 2),
            (8, 2),
            (9, 2),
            (10, 2),
            (11, 2),
            (12, 2),
            (1, 3),
            (2, 3),
            (3, 3),
            (4, 3),
            (5, 3),
            (6, 3),
            (7, 3),
            (8, 3),
            (9, 3),
            (10, 3),
            (11, 3),
            (12, 3),
            (1, 4),
            (2, 4),
            (3, 4),
            (4, 4),
            (5, 4),
            (6, 4),
            (7, 4),
            (8, 4),
            (9, 4),
            (10, 4),
            (11, 4),
            (12, 4)
        ]
    )
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni512<const MR: usize, const NP: usize>(tile: Tile<'_>, acc: &mut TileAcc) {
    let panel_len = tile.k4 * 4 * PANEL;
    let w = tile.w.as_ptr();
    let mut a = [[_mm512_setzero_si512(); NP]; MR];
    for kk in 0..tile.k4 {
        let mut wv = [_mm512_setzero_si512(); NP];
        for p in 0..NP {
            wv[p] = _mm512_loadu_si512(w.add(p * panel_len + kk * 4 * PANEL) as *const _);
        }
        for t in 0..MR {
            let xv = _mm512_set1_epi32(codes4(&tile, t, kk));
            for p in 0..NP {
                a[t][p] = _mm512_dpbusd_epi32(a[t][p], xv, wv[p]);
            }
        }
    }
    for t in 0..MR {
        for p in 0..NP {
            _mm512_storeu_si512(acc[t][p * PANEL..].as_mut_ptr() as *mut _, a[t][p]);
        }
    }
}

/// # Safety
/// The CPU must have AVX2 and AVX-VNNI; the tile must be in bounds and at most 6 tokens × 1 panel.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn tile_avx_vnni(tile: Tile<'_>, acc: &mut TileAcc) {
    by_shape!(
        vnni256,
        tile,
        acc,
        [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]
    )
}

#[inline]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn vnni256<const MR: usize, const NP: usize>(tile: Tile<'_>, acc: &mut TileAcc) {
    let w = tile.w.as_ptr();
    // Rows 0–7 and 8–15 of the panel.
    let mut a = [[_mm256_setzero_si256(); 2]; MR];
    for kk in 0..tile.k4 {
        let base = w.add(kk * 4 * PANEL);
        let w0 = _mm256_loadu_si256(base as *const __m256i);
        let w1 = _mm256_loadu_si256(base.add(32) as *const __m256i);
        for t in 0..MR {
            let xv = _mm256_set1_epi32(codes4(&tile, t, kk));
            a[t][0] = _mm256_dpbusd_avx_epi32(a[t][0], xv, w0);
            a[t][1] = _mm256_dpbusd_avx_epi32(a[t][1], xv, w1);
        }
    }
    for t in 0..MR {
        _mm256_storeu_si256(acc[t].as_mut_ptr() as *mut __m256i, a[t][0]);
        _mm256_storeu_si256(acc[t][8..].as_mut_ptr() as *mut __m256i, a[t][1]);
    }
}

/// # Safety
/// The CPU must have AVX2; the tile must be in bounds and at most 6 tokens × 1 panel.
#[target_feature(enable = "avx2")]
pub unsafe fn tile_avx2(tile: WideTile<'_>, acc: &mut TileAcc) {
    by_shape!(
        avx2,
        tile,
        acc,
        [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]
    )
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn avx2<const MR: usize, const NP: usize>(tile: WideTile<'_>, acc: &mut TileAcc) {
    let (w, x) = (tile.w.as_ptr(), tile.x.as_ptr());
    // Per token, rows 0–7 and 8–15 of the panel, one i32 lane per row.
    let mut a = [[_mm256_setzero_si256(); 2]; MR];
    for kk in 0..tile.k4 {
        for h in 0..2 {
            // Inputs 4·kk + 2h and + 1 of rows 0–7 and of rows 8–15.
            let base = w.add((kk * 4 + 2 * h) * PANEL);
            let w0 = _mm256_loadu_si256(base as *const __m256i);
            let w1 = _mm256_loadu_si256(base.add(PANEL) as *const __m256i);
            for t in 0..MR {
                // The token's two codes of those inputs, broadcast as one i32.
                let pair =
                    (x.add((kk * tile.group + t) * 4 + 2 * h) as *const i32).read_unaligned();
                let xv = _mm256_set1_epi32(pair);
                a[t][0] = _mm256_add_epi32(a[t][0], _mm256_madd_epi16(w0, xv));
                a[t][1] = _mm256_add_epi32(a[t][1], _mm256_madd_epi16(w1, xv));
            }
        }
    }
    for t in 0..MR {
        _mm256_storeu_si256(acc[t].as_mut_ptr() as *mut __m256i, a[t][0]);
        _mm256_storeu_si256(acc[t][8..].as_mut_ptr() as *mut __m256i, a[t][1]);
    }
}

/// # Safety
/// The CPU must have AVX2; the tile must be in bounds and at most 6 tokens × 1 panel; every weight code within ±64
/// and `steps · 2 · 255 · max |code| ≤ 32767` ([`super::tile::narrow_steps`]), so no i16 sum can overflow.
#[target_feature(enable = "avx2")]
pub unsafe fn tile_avx2_narrow(tile: Tile<'_>, steps: usize, acc: &mut TileAcc) {
    match (tile.mr, tile.np) {
        (1, 1) => avx2_narrow::<1>(tile, steps, acc),
        (2, 1) => avx2_narrow::<2>(tile, steps, acc),
        (3, 1) => avx2_narrow::<3>(tile, steps, acc),
        (4, 1) => avx2_narrow::<4>(tile, steps, acc),
        (5, 1) => avx2_narrow::<5>(tile, steps, acc),
        (6, 1) => avx2_narrow::<6>(tile, steps, acc),
        (mr, np) => unreachable!("int_gemm: no narrow AVX2 tile of {mr} tokens × {np} panels"),
    }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn avx2_narrow<const MR: usize>(tile: Tile<'_>, steps: usize, acc: &mut TileAcc) {
    let w = tile.w.as_ptr();
    let ones = _mm256_set1_epi16(1);
    // Per token, rows 0–7 and 8–15 of the panel, one i32 lane per row.
    let mut a = [[_mm256_setzero_si256(); 2]; MR];
    let mut kk = 0;
    while kk < tile.k4 {
        let end = (kk + steps).min(tile.k4);
        // i16 lanes 2j and 2j + 1: row j's inputs (0, 1) and (2, 3) of each group, summed over the steps.
        let mut s = [[_mm256_setzero_si256(); 2]; MR];
        for k in kk..end {
            let base = w.add(k * 4 * PANEL);
            let w0 = _mm256_loadu_si256(base as *const __m256i);
            let w1 = _mm256_loadu_si256(base.add(32) as *const __m256i);
            for t in 0..MR {
                let xv = _mm256_set1_epi32(codes4(&tile, t, k));
                s[t][0] = _mm256_add_epi16(s[t][0], _mm256_maddubs_epi16(xv, w0));
                s[t][1] = _mm256_add_epi16(s[t][1], _mm256_maddubs_epi16(xv, w1));
            }
        }
        for t in 0..MR {
            for b in 0..2 {
                a[t][b] = _mm256_add_epi32(a[t][b], _mm256_madd_epi16(s[t][b], ones));
            }
        }
        kk = end;
    }
    for t in 0..MR {
        _mm256_storeu_si256(acc[t].as_mut_ptr() as *mut __m256i, a[t][0]);
        _mm256_storeu_si256(acc[t][8..].as_mut_ptr() as *mut __m256i, a[t][1]);
    }
}
