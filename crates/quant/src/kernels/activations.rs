//! Activations quantized per token for [`super::IntLinear`]: unsigned 8-bit codes with a zero point, the range
//! stretched to include 0, laid out in groups of a register tile's tokens ([`TokenCodes`]).

// Lane loops index several arrays by the same `l`.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::simd::{block, multiversion, Tier, LANES};

/// Activations quantized per token: `x[t][k] · col_scale[k] ≈ scale[t] · (code(t, k) − zero[t])`.
#[derive(Clone, Debug, Default)]
pub struct TokenCodes {
    /// Groups of `group` tokens, each `[k4][group][4]` (the layout of [`super::tile::Tile`]); the inputs past
    /// `cols` and the tokens past `n` in the last group are zero.
    pub codes: Vec<u8>,
    /// The same codes as i16 in the same layout, instead of `codes`, for the AVX2 tile (which multiplies i16
    /// pairs); empty otherwise.
    pub wide: Vec<i16>,
    /// `[n]`.
    pub scale: Vec<f32>,
    /// `[n]`, in `0..=255`.
    pub zero: Vec<i32>,
    /// Tokens per interleaved group.
    pub group: usize,
    /// Groups of 4 inputs.
    pub k4: usize,
}

impl TokenCodes {
    /// The group holding token `t` (which must be its group's first token, as tiles start).
    pub(crate) fn group_of(&self, t: usize) -> &[u8] {
        let len = self.k4 * self.group * 4;
        &self.codes[t / self.group * len..][..len]
    }

    /// [`TokenCodes::group_of`] in `wide`.
    pub(crate) fn wide_group_of(&self, t: usize) -> &[i16] {
        let len = self.k4 * self.group * 4;
        &self.wide[t / self.group * len..][..len]
    }
}

/// 1.5 · 2²³: adding and subtracting it rounds to the nearest integer, ties to even.
const ROUND: f32 = 12_582_912.0;

/// Lane-wise `lo = min(lo, v)` and `hi = max(hi, v)` (`f32::min`/`max`: a NaN leaves both as they are).
/// Plain functions, not closures, inside [`quantize_token`]: a closure is not compiled for the enclosing
/// function's features.
#[inline(always)]
fn extremes(lo: &mut [f32; LANES], hi: &mut [f32; LANES], v: &[f32; LANES]) {
    for l in 0..LANES {
        lo[l] = lo[l].min(v[l]);
        hi[l] = hi[l].max(v[l]);
    }
}

/// The code of `v` with `1 / scale = inv` and zero point `zero`, in `0..=255`.
#[inline(always)]
fn code(v: f32, inv: f32, zero: f32) -> u8 {
    // `max` first: it maps NaN to 0, so the value is finite and in 0..=255 before the conversion (`clamp`
    // would keep NaN).
    #[allow(clippy::manual_clamp)]
    let q = ((((v * inv + zero) + ROUND) - ROUND).max(0.0)).min(255.0);
    // SAFETY: q is finite and within i32's range (just clamped); a saturating `as u8` would not vectorise.
    unsafe { q.to_int_unchecked::<i32>() as u8 }
}

multiversion! {
    /// One token's `x · col_scale` quantized to unsigned 8 bits into `out`; returns `(scale, zero)` with
    /// `x · col_scale ≈ scale · (code − zero)`, the range stretched to include 0. A token of zeros (or of a
    /// non-finite range) gets codes 0, scale 1, zero 0.
    fn quantize_token(x: &[f32], col_scale: Option<&[f32]>, out: &mut [u8]) -> (f32, i32) {
        let (mut lo, mut hi) = ([0.0f32; LANES], [0.0f32; LANES]);
        let full = x.len() / LANES * LANES;
        for i in (0..full).step_by(LANES) {
            let mut v = *block::<LANES>(x, i);
            if let Some(cs) = col_scale {
                let c = block::<LANES>(cs, i);
                for l in 0..LANES {
                    v[l] *= c[l];
                }
            }
            extremes(&mut lo, &mut hi, &v);
        }
        for i in full..x.len() {
            let v = x[i] * col_scale.map_or(1.0, |cs| cs[i]);
            let l = i - full;
            (lo[l], hi[l]) = (lo[l].min(v), hi[l].max(v));
        }
        let lo = lo.iter().fold(0.0f32, |m, v| m.min(*v));
        let hi = hi.iter().fold(0.0f32, |m, v| m.max(*v));
        let range = hi - lo;
        if range <= 0.0 || !range.is_finite() {
            out[..x.len()].fill(0);
            return (1.0, 0);
        }
        let scale = range / 255.0;
        let inv = 1.0 / scale;
        let zero = (((-lo * inv) + ROUND) - ROUND).clamp(0.0, 255.0);
        match col_scale {
            Some(cs) => {
                for ((o, v), s) in out.iter_mut().zip(x).zip(cs) {
                    *o = code(v * s, inv, zero);
                }
            }
            None => {
                for (o, v) in out.iter_mut().zip(x) {
                    *o = code(*v, inv, zero);
                }
            }
        }
        (scale, zero as i32)
    }
}

/// Tokens `x: [n, cols]` to quantize into groups of `group` interleaved tokens ([`TokenCodes`]' layout, for [`super::IntLinear`]).
pub(crate) struct Groups<'a> {
    pub x: &'a [f32],
    pub cols: usize,
    pub k4: usize,
    pub group: usize,
    pub col_scale: Option<&'a [f32]>,
}

impl Groups<'_> {
    /// Quantizes every token into `codes` (bytes or i16), `scale` and `zero` (both `[n]`), threaded over groups
    /// when `parallel`.
    pub(crate) fn quantize<T: From<u8> + Copy + Default + Send>(
        &self,
        codes: &mut Vec<T>,
        scale: &mut [f32],
        zero: &mut [i32],
        parallel: bool,
    ) {
        let (k4, cols, group, cs) = (self.k4, self.cols, self.group, self.col_scale);
        let group_len = k4 * group * 4;
        // Every element is written below (padding included), so old contents may stay.
        codes.resize(scale.len().div_ceil(group) * group_len, T::default());
        let tier = Tier::best();
        type Job<'a, T> = (((&'a mut [T], &'a mut [f32]), &'a mut [i32]), &'a [f32]);
        let quantize = |(((out, scale), zero), xs): Job<'_, T>| {
            // One token row-major, then its 4-code groups to their places in the interleaved group; the tokens
            // missing from a last, partial group are zeros.
            let mut row = vec![0u8; k4 * 4];
            for t in 0..group {
                match xs.chunks(cols).nth(t) {
                    Some(xs) => (scale[t], zero[t]) = quantize_token(tier, xs, cs, &mut row),
                    None => row.fill(0),
                }
                for (kk, c) in row.chunks_exact(4).enumerate() {
                    for (o, c) in out[(kk * group + t) * 4..][..4].iter_mut().zip(c) {
                        *o = T::from(*c);
                    }
                }
            }
        };
        if parallel {
            codes
                .par_chunks_mut(group_len)
                .zip(scale.par_chunks_mut(group))
                .zip(zero.par_chunks_mut(group))
                .zip(self.x.par_chunks(group * cols))
                .for_each(quantize);
        } else {
            codes
                .chunks_mut(group_len)
                .zip(scale.chunks_mut(group))
                .zip(zero.chunks_mut(group))
                .zip(self.x.chunks(group * cols))
                .for_each(quantize);
        }
    }
}
