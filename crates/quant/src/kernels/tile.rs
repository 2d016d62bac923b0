//! The operands of one register tile of [`super::int_gemm`] — `mr` tokens of unsigned activation codes against
//! `np` packed panels of 16 weight rows — and the plain reference every SIMD tile (`gemm_avx`) is tested
//! against.
//!
//! Both operands are packed so that a tile reads two sequential streams: the weights as panels (4 inputs of
//! each of 16 rows per 64 bytes) and the activations as groups of `group` tokens, interleaved by 4 inputs (the
//! 4 codes of token 0, of token 1, …, then the next 4 inputs). Row-major activations made a 12-token tile read
//! 12 streams 1,536 bytes apart on the FFN's second matrix, more than the L1 prefetcher follows.

// The reference indexes tokens, panels and rows by the same `t`, `p` and `j`.
#![allow(clippy::needless_range_loop)]

/// Rows per packed panel (one 512-bit register of i32 lanes).
pub const PANEL: usize = 16;
/// The largest token tile any kernel uses.
pub const MAX_TOKENS: usize = 12;
/// The largest number of panels any kernel keeps in registers at once.
pub const MAX_PANELS: usize = 4;

/// Integer accumulators of one tile: `[token][row within the tile's panels]`.
pub type TileAcc = [[i32; PANEL * MAX_PANELS]; MAX_TOKENS];

/// One tile's operands: the first `mr` tokens of a group of `group` interleaved tokens (unsigned codes; token
/// `t`'s inputs `4·kk .. 4·kk + 4` at elements `(kk · group + t) · 4`) against `np` consecutive packed panels
/// of `k4 · 64` codes. The VNNI tiles and the reference read bytes ([`Tile`]); the AVX2 tile reads both
/// widened to i16, the weights re-packed into pairs ([`WideTile`], [`pair_panels`]).
#[derive(Clone, Copy)]
pub struct Tile<'a, X = u8, W = i8> {
    /// Activation codes from the start of the tile's token group on.
    pub x: &'a [X],
    /// Tokens interleaved in the group.
    pub group: usize,
    /// Tokens in the tile.
    pub mr: usize,
    /// Packed weights from the tile's first panel on.
    pub w: &'a [W],
    /// Panels in the tile.
    pub np: usize,
    /// Groups of 4 inputs.
    pub k4: usize,
}

/// The AVX2 tile's operands: activation codes as i16 in [`Tile`]'s order, weights from [`pair_panels`].
pub type WideTile<'a> = Tile<'a, i16, i16>;

impl<'a> From<Tile<'a>> for WideTile<'a> {
    /// The tile's shape with no operands (to be filled in: `WideTile { x, w, ..tile.into() }`).
    fn from(tile: Tile<'a>) -> Self {
        WideTile {
            x: &[],
            group: tile.group,
            mr: tile.mr,
            w: &[],
            np: tile.np,
            k4: tile.k4,
        }
    }
}

impl<X, W> Tile<'_, X, W> {
    /// Whether the slices hold everything the kernels read.
    pub(crate) fn in_bounds(&self) -> bool {
        self.mr >= 1
            && self.np >= 1
            && self.mr <= MAX_TOKENS
            && self.np <= MAX_PANELS
            && self.mr <= self.group
            && self.x.len() >= self.k4 * self.group * 4
            && self.w.len() >= self.np * self.k4 * 4 * PANEL
    }
}

/// The largest weight code magnitude whose u8 × i8 pair sums stay within i16, whatever the unsigned 8-bit
/// activation codes (2 · 255 · 64 = 32640 ≤ 32767): `vpmaddubsw` (the AVX2 narrow tile here, ONNX Runtime's
/// integer kernel on CPUs without VNNI) is exact on such codes.
pub const SATURATION_FREE_CODE: u32 = 64;

/// Groups of 4 inputs whose `vpmaddubsw` pair sums an i16 lane can add up exactly when no weight code exceeds
/// `max_code` in magnitude (each pair sum is at most 2 · 255 · `max_code`); 0 when a single product could
/// saturate (`max_code` above [`SATURATION_FREE_CODE`]).
pub fn narrow_steps(max_code: u32) -> usize {
    if max_code > SATURATION_FREE_CODE {
        0
    } else {
        (i16::MAX as usize / (2 * 255 * max_code.max(1) as usize)).max(1)
    }
}

/// Panels packed for `vpdpbusd` (per 4 inputs, 16 rows × 4 codes) re-packed for `vpmaddwd` on i16: per 4
/// inputs, four runs of 16 values, run `2h + b` holding inputs `2h, 2h + 1` of rows `8b .. 8b + 8` (row-major
/// pairs), so one 256-bit multiply-add of a run against a token's broadcast input pair leaves each row's partial
/// sum in its own i32 lane.
pub fn pair_panels(packed: &[i8]) -> Vec<i16> {
    let mut out = vec![0i16; packed.len()];
    for (src, dst) in packed
        .chunks_exact(4 * PANEL)
        .zip(out.chunks_exact_mut(4 * PANEL))
    {
        for h in 0..2 {
            for b in 0..2 {
                for j in 0..8 {
                    for i in 0..2 {
                        dst[((h * 2 + b) * 8 + j) * 2 + i] =
                            src[(b * 8 + j) * 4 + 2 * h + i] as i16;
                    }
                }
            }
        }
    }
    out
}

/// The reference kernel: `acc[t][j] = Σ_k x[t][k] · w[row j][k]`, plain loops.
pub fn tile_scalar(tile: Tile<'_>, acc: &mut TileAcc) {
    let panel_len = tile.k4 * 4 * PANEL;
    for t in 0..tile.mr {
        for p in 0..tile.np {
            for j in 0..PANEL {
                let mut s = 0i32;
                for kk in 0..tile.k4 {
                    for i in 0..4 {
                        let x = tile.x[(kk * tile.group + t) * 4 + i] as i32;
                        let w = tile.w[p * panel_len + (kk * PANEL + j) * 4 + i] as i32;
                        s += x * w;
                    }
                }
                acc[t][p * PANEL + j] = s;
            }
        }
    }
}
