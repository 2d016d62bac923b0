//! The block formats (candle's `k_quants.rs`): [`BlockQ8_0`] and [`BlockQ4_0`], the [`QuantBlock`] trait, the
//! kernel tiles' operands, and the plain reference loops that every optimised kernel is tested against.

// The tile loops index several arrays (rows, tokens, accumulators) by the same `r` and `t`; indices read better
// there than zipped iterators.
#![allow(clippy::needless_range_loop)]

use half::f16;

/// Inputs per block.
pub const QK: usize = 32;

/// 8-bit block: `x[i] = d · qs[i]`, `qs ∈ [−127, 127]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Codes.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 2 + QK);

impl BlockQ8_0 {
    /// All-zero codes, zero scale.
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        qs: [0; QK],
    };
}

/// 4-bit block: `x[i] = d · (nibble_i − 8)`, codes in `[−7, 7]`; byte `j` holds input `j` in its low nibble and
/// input `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 2 + QK / 2);

/// A packed block format with a reference and an optimised dot product against 8-bit activations.
pub trait QuantBlock: Copy + Send + Sync + 'static {
    /// Bits per weight code.
    const BITS: u32;
    /// Name used in benches and errors.
    const NAME: &'static str;
    /// Largest code magnitude.
    const QMAX: i32;
    /// A block from 32 floats with its own max-abs scale.
    fn from_float(xs: &[f32]) -> Self {
        let amax = xs.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = f16::from_f32(amax / Self::QMAX as f32);
        Self::from_codes(&codes_for(xs, d.to_f32(), Self::QMAX), d)
    }
    /// A block from 32 signed codes and a scale.
    fn from_codes(codes: &[i8], d: f16) -> Self;
    /// The 32 signed codes.
    fn codes(&self) -> [i8; QK];
    /// The scale.
    fn scale(&self) -> f32;
    /// Dequantizes into `out[..32]`.
    fn to_float(&self, out: &mut [f32]) {
        let d = self.scale();
        for (o, q) in out.iter_mut().zip(self.codes()) {
            *o = d * q as f32;
        }
    }
    /// `Σ_blocks d_w · d_x · Σ q_w q_x`, plain loops.
    fn vec_dot_unopt(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        w.iter()
            .zip(x)
            .map(|(a, b)| {
                let qa = a.codes();
                let s: i32 = qa
                    .iter()
                    .zip(&b.qs)
                    .map(|(p, q)| *p as i32 * *q as i32)
                    .sum();
                a.scale() * b.d.to_f32() * s as f32
            })
            .sum()
    }
    /// An `R × T` tile of dot products: `R` weight rows against `T` activation rows. Each weight block is
    /// loaded (and unpacked) once per `T` tokens and each activation block once per `R` rows. This default is
    /// the plain loop; the formats override it with AVX-512 VNNI or AVX2 where the CPU has them.
    fn tile<const R: usize, const T: usize>(
        w: WeightRows<'_, Self, R>,
        x: ActRows<'_, T>,
    ) -> [[f32; T]; R] {
        tile_plain(w, x)
    }
}

/// `R` weight rows of a kernel tile: each row's blocks, their scales in f32 and their code sums.
#[derive(Clone, Copy, Debug)]
pub struct WeightRows<'a, B, const R: usize> {
    /// Blocks, one slice per row.
    pub blocks: [&'a [B]; R],
    /// Each block's scale.
    pub scales: [&'a [f32]; R],
    /// Each block's sum of signed codes.
    pub sums: [&'a [i32]; R],
}

/// `T` rows of 8-bit activations of a kernel tile: blocks, scales in f32 and code sums.
#[derive(Clone, Copy, Debug)]
pub struct ActRows<'a, const T: usize> {
    /// Blocks, one slice per token.
    pub blocks: [&'a [BlockQ8_0]; T],
    /// Each block's scale.
    pub scales: [&'a [f32]; T],
    /// Each block's sum of codes.
    pub sums: [&'a [i32]; T],
}

/// Blocks per row of a tile, checking that every slice has that many.
pub(crate) fn tile_len<B, const R: usize, const T: usize>(
    w: &WeightRows<'_, B, R>,
    x: &ActRows<'_, T>,
) -> usize {
    let nb = w.blocks[0].len();
    let ok = |len: usize| len == nb;
    assert!(
        w.blocks.iter().all(|v| ok(v.len()))
            && w.scales.iter().all(|v| ok(v.len()))
            && w.sums.iter().all(|v| ok(v.len()))
            && x.blocks.iter().all(|v| ok(v.len()))
            && x.scales.iter().all(|v| ok(v.len()))
            && x.sums.iter().all(|v| ok(v.len())),
        "tile: every row must have {nb} blocks, scales and sums"
    );
    nb
}

/// [`QuantBlock::tile`] in plain loops.
pub(crate) fn tile_plain<B: QuantBlock, const R: usize, const T: usize>(
    w: WeightRows<'_, B, R>,
    x: ActRows<'_, T>,
) -> [[f32; T]; R] {
    tile_len(&w, &x);
    let mut y = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            y[r][t] = w.blocks[r]
                .iter()
                .zip(x.blocks[t])
                .enumerate()
                .map(|(k, (a, b))| {
                    let s: i32 = a
                        .codes()
                        .iter()
                        .zip(&b.qs)
                        .map(|(p, q)| *p as i32 * *q as i32)
                        .sum();
                    w.scales[r][k] * x.scales[t][k] * s as f32
                })
                .sum();
        }
    }
    y
}

/// The sum of a block's signed codes.
pub(crate) fn code_sum<B: QuantBlock>(b: &B) -> i32 {
    b.codes().iter().map(|c| *c as i32).sum()
}

pub(crate) fn codes_for(xs: &[f32], d: f32, qmax: i32) -> Vec<i8> {
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    xs.iter()
        .map(|x| ((x * inv).round() as i32).clamp(-qmax, qmax) as i8)
        .collect()
}

/// Quantizes one row of activations to 8-bit blocks: per block of 32, `d = f16(max|x| / 127)` and codes
/// `round_ties_even(x / d)` (ties to even, as the SIMD conversion rounds). `x.len()` must be a multiple of 32.
pub fn quantize_row_q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let blocks = x.len() / QK;
    let mut q = vec![BlockQ8_0::ZERO; blocks];
    let (mut d, mut s) = (vec![0.0; blocks], vec![0; blocks]);
    quantize_acts_plain(x, &mut q, &mut d, &mut s);
    q
}

/// [`quantize_row_q8`] into `q`, with each block's scale in f32 (`d`) and code sum (`s`).
pub(crate) fn quantize_acts_plain(x: &[f32], q: &mut [BlockQ8_0], d: &mut [f32], s: &mut [i32]) {
    for (b, xs) in x.chunks_exact(QK).enumerate() {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let dh = f16::from_f32(amax / 127.0);
        let df = dh.to_f32();
        let inv = if df > 0.0 { 1.0 / df } else { 0.0 };
        let mut sum = 0;
        for (c, v) in q[b].qs.iter_mut().zip(xs) {
            *c = ((v * inv).round_ties_even() as i32).clamp(-127, 127) as i8;
            sum += *c as i32;
        }
        q[b].d = dh;
        d[b] = df;
        s[b] = sum;
    }
}
