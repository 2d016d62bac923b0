//! Quantized CPU kernels for linear layers, in llama.cpp's shape: weights in packed blocks of 32 inputs with an
//! f16 scale ([`BlockQ8_0`], [`BlockQ4_0`]); activations quantized per row to [`BlockQ8_0`] on the fly; integer
//! dot products per block, scaled in f32. [`QuantBlock::tile`] computes R weight rows × T tokens at a time with
//! AVX-512 VNNI, else AVX2, else a plain loop (checked at run time); rows are split over rayon's threads, with
//! the calling thread taking one chunk and small layers run on it alone. Every optimised path has a plain
//! reference beside it (`vec_dot_unopt`, `forward_unopt`, `quantize_acts_plain`), and the tests hold them equal.
//!
//! Any symmetric [`QuantizedTensor`](crate::format::QuantizedTensor) whose groups span whole 32-blocks of a row
//! (per tensor, per channel, per head on 384-wide BERT matrices, block:32/64/128) converts to these blocks
//! exactly: each block carries its group's scale.

// The tile loops index several arrays (rows, tokens, accumulators) by the same `r` and `t`; indices read better
// there than zipped iterators.
#![allow(clippy::needless_range_loop)]

use half::f16;

use crate::error::{QuantError, Result};
use crate::format::QuantizedTensor;

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
fn tile_len<B, const R: usize, const T: usize>(
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
fn tile_plain<B: QuantBlock, const R: usize, const T: usize>(
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

/// The fastest [`QuantBlock::tile`] this CPU runs: AVX-512 VNNI, else AVX2, else plain loops.
#[cfg(target_arch = "x86_64")]
fn tile_fastest<B: simd::Codes, const R: usize, const T: usize>(
    w: WeightRows<'_, B, R>,
    x: ActRows<'_, T>,
) -> [[f32; T]; R] {
    if simd::vnni_available() {
        // SAFETY: AVX-512 VNNI and VL, AVX2 and FMA were detected at run time.
        return unsafe { simd::tile_vnni(w, x) };
    }
    if simd::available() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { simd::tile(w, x) };
    }
    tile_plain(w, x)
}

/// The fastest [`QuantBlock::tile`] this CPU runs: plain loops off x86-64.
#[cfg(not(target_arch = "x86_64"))]
fn tile_fastest<B: QuantBlock, const R: usize, const T: usize>(
    w: WeightRows<'_, B, R>,
    x: ActRows<'_, T>,
) -> [[f32; T]; R] {
    tile_plain(w, x)
}

/// The sum of a block's signed codes.
fn code_sum<B: QuantBlock>(b: &B) -> i32 {
    b.codes().iter().map(|c| *c as i32).sum()
}

fn codes_for(xs: &[f32], d: f32, qmax: i32) -> Vec<i8> {
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    xs.iter()
        .map(|x| ((x * inv).round() as i32).clamp(-qmax, qmax) as i8)
        .collect()
}

impl QuantBlock for BlockQ8_0 {
    const BITS: u32 = 8;
    const NAME: &'static str = "q8_0";
    const QMAX: i32 = 127;
    fn from_codes(codes: &[i8], d: f16) -> Self {
        let mut qs = [0i8; QK];
        qs.copy_from_slice(&codes[..QK]);
        Self { d, qs }
    }
    fn codes(&self) -> [i8; QK] {
        self.qs
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn tile<const R: usize, const T: usize>(
        w: WeightRows<'_, Self, R>,
        x: ActRows<'_, T>,
    ) -> [[f32; T]; R] {
        tile_fastest(w, x)
    }
}

impl QuantBlock for BlockQ4_0 {
    const BITS: u32 = 4;
    const NAME: &'static str = "q4_0";
    const QMAX: i32 = 7;
    fn from_codes(codes: &[i8], d: f16) -> Self {
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            qs[j] = ((codes[j] + 8) as u8) | (((codes[j + QK / 2] + 8) as u8) << 4);
        }
        Self { d, qs }
    }
    fn codes(&self) -> [i8; QK] {
        let mut out = [0i8; QK];
        for j in 0..QK / 2 {
            out[j] = (self.qs[j] & 0x0F) as i8 - 8;
            out[j + QK / 2] = (self.qs[j] >> 4) as i8 - 8;
        }
        out
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn tile<const R: usize, const T: usize>(
        w: WeightRows<'_, Self, R>,
        x: ActRows<'_, T>,
    ) -> [[f32; T]; R] {
        tile_fastest(w, x)
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{tile_len, ActRows, BlockQ4_0, BlockQ8_0, WeightRows};
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// A block's 32 signed codes in one AVX2 register. The loads carry the same target features as the dot
    /// products, so they inline into them (a closure would not).
    pub trait Codes: super::QuantBlock {
        /// Whether the VNNI kernel feeds the weights as the unsigned operand (offset codes).
        const WEIGHTS_UNSIGNED: bool;
        /// # Safety
        /// The CPU must have AVX2 and FMA.
        unsafe fn codes256(&self) -> __m256i;
        /// The codes offset to be non-negative (only for `WEIGHTS_UNSIGNED` formats).
        /// # Safety
        /// The CPU must have AVX2 and FMA.
        unsafe fn unsigned256(&self) -> __m256i {
            self.codes256()
        }
    }

    impl Codes for BlockQ8_0 {
        const WEIGHTS_UNSIGNED: bool = false;
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn codes256(&self) -> __m256i {
            _mm256_loadu_si256(self.qs.as_ptr() as *const __m256i)
        }
    }

    impl Codes for BlockQ4_0 {
        const WEIGHTS_UNSIGNED: bool = true;
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn codes256(&self) -> __m256i {
            _mm256_sub_epi8(self.unsigned256(), _mm256_set1_epi8(8))
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn unsigned256(&self) -> __m256i {
            let packed = _mm_loadu_si128(self.qs.as_ptr() as *const __m128i);
            let low = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(packed, low);
            let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
            _mm256_set_m128i(hi, lo)
        }
    }

    /// One weight row against one activation row.
    /// AVX-512 VNNI (`vpdpbusd`, u8 × i8 summed into i32 lanes) on 256-bit registers, with AVX-512VL.
    /// Setting `BERT_COMPRESS_NO_VNNI` (to anything) turns the VNNI path off, to measure the AVX2 one on a CPU
    /// that has both; read once.
    pub fn vnni_available() -> bool {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VNNI.get_or_init(|| {
            available()
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
                && std::env::var_os("BERT_COMPRESS_NO_VNNI").is_none()
        })
    }

    /// `R` weight rows × `T` activation rows with AVX2. Per block: each weight block is unpacked once and its
    /// absolute value taken once for the `T` tokens; each token's sign-adjusted codes go through
    /// `maddubs`/`madd`, and the i32 sums are scaled by `dw · dx` into one f32 accumulator per pair. `R · T`
    /// horizontal sums at the end.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<B: Codes, const R: usize, const T: usize>(
        w: WeightRows<'_, B, R>,
        x: ActRows<'_, T>,
    ) -> [[f32; T]; R] {
        let nb = tile_len(&w, &x);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for k in 0..nb {
            for r in 0..R {
                // SAFETY (every `get_unchecked` here): k < nb, the length of every slice (`tile_len`).
                let wv = w.blocks[r].get_unchecked(k).codes256();
                let wa = _mm256_sign_epi8(wv, wv);
                let wd = _mm256_set1_ps(*w.scales[r].get_unchecked(k));
                for t in 0..T {
                    let xv = load(x.blocks[t].get_unchecked(k));
                    let pairs = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(xv, wv));
                    let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                    let d = _mm256_mul_ps(wd, _mm256_set1_ps(*x.scales[t].get_unchecked(k)));
                    acc[r][t] = _mm256_fmadd_ps(sums, d, acc[r][t]);
                }
            }
        }
        finish(acc)
    }

    /// `R × T` with AVX-512 VNNI: one `vpdpbusd` per block pair instead of sign, `maddubs` and `madd`. Its
    /// first operand is unsigned, so one side is offset and the offset taken back through the accumulator's
    /// start value (spread over the 8 lanes, which are summed at the end):
    /// - q4_0: the weights' nibbles `c + 8` are the unsigned side; `Σ (c+8)·x − 8·Σx`, so the lanes start at
    ///   `−Σx` (the activation block's code sum).
    /// - q8_0: the activations `x + 128` are the unsigned side; `Σ (x+128)·c − 128·Σc`, so the lanes start at
    ///   `−16·Σc` (the weight block's code sum).
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
    pub unsafe fn tile_vnni<B: Codes, const R: usize, const T: usize>(
        w: WeightRows<'_, B, R>,
        x: ActRows<'_, T>,
    ) -> [[f32; T]; R] {
        let nb = tile_len(&w, &x);
        let flip = _mm256_set1_epi8(-128);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for k in 0..nb {
            // SAFETY (every `get_unchecked` here): k < nb, the length of every slice (`tile_len`).
            // Plain loops, not closures: a closure would not inherit the target features, so its loads would
            // not inline.
            let mut xv = [_mm256_setzero_si256(); T];
            let mut xd = [_mm256_setzero_ps(); T];
            let mut xs = [_mm256_setzero_si256(); T];
            for t in 0..T {
                let v = load(x.blocks[t].get_unchecked(k));
                xd[t] = _mm256_set1_ps(*x.scales[t].get_unchecked(k));
                if B::WEIGHTS_UNSIGNED {
                    xv[t] = v;
                    xs[t] = _mm256_set1_epi32(-*x.sums[t].get_unchecked(k));
                } else {
                    xv[t] = _mm256_xor_si256(v, flip);
                }
            }
            for r in 0..R {
                let block = w.blocks[r].get_unchecked(k);
                let wd = _mm256_set1_ps(*w.scales[r].get_unchecked(k));
                if B::WEIGHTS_UNSIGNED {
                    let wv = block.unsigned256();
                    for t in 0..T {
                        let dp = _mm256_dpbusd_epi32(xs[t], wv, xv[t]);
                        let d = _mm256_mul_ps(wd, xd[t]);
                        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), d, acc[r][t]);
                    }
                } else {
                    let wv = block.codes256();
                    let start = _mm256_set1_epi32(-16 * *w.sums[r].get_unchecked(k));
                    for t in 0..T {
                        let dp = _mm256_dpbusd_epi32(start, xv[t], wv);
                        let d = _mm256_mul_ps(wd, xd[t]);
                        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), d, acc[r][t]);
                    }
                }
            }
        }
        finish(acc)
    }

    /// `quantize_acts_plain` in AVX2: max-abs by lanes, `cvtps` (ties to even), saturating packs, and the
    /// lane order restored by one permute.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_acts(x: &[f32], q: &mut [BlockQ8_0], d: &mut [f32], s: &mut [i32]) {
        let sign = _mm256_set1_ps(-0.0);
        let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let ones8 = _mm256_set1_epi8(1);
        let ones16 = _mm256_set1_epi16(1);
        for (b, xs) in x.chunks_exact(32).enumerate() {
            let p = xs.as_ptr();
            let v = [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ];
            let m = _mm256_max_ps(
                _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
            );
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
            let dh = half::f16::from_f32(amax / 127.0);
            let df = dh.to_f32();
            let inv = _mm256_set1_ps(if df > 0.0 { 1.0 / df } else { 0.0 });
            let mut i = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let c = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], inv));
                i[k] = _mm256_min_epi32(_mm256_max_epi32(c, lo), hi);
            }
            let packed = _mm256_packs_epi16(
                _mm256_packs_epi32(i[0], i[1]),
                _mm256_packs_epi32(i[2], i[3]),
            );
            let codes = _mm256_permutevar8x32_epi32(packed, order);
            let block = q.get_mut(b).expect("one block per 32 inputs");
            _mm256_storeu_si256(block.qs.as_mut_ptr() as *mut __m256i, codes);
            block.d = dh;
            d[b] = df;
            let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, codes), ones16);
            let sums = _mm_add_epi32(
                _mm256_castsi256_si128(sums),
                _mm256_extracti128_si256(sums, 1),
            );
            let sums = _mm_add_epi32(sums, _mm_shuffle_epi32(sums, 0b01_00_11_10));
            let sums = _mm_add_epi32(sums, _mm_shuffle_epi32(sums, 0b10_11_00_01));
            s[b] = _mm_cvtsi128_si32(sums);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(b: &BlockQ8_0) -> __m256i {
        _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish<const R: usize, const T: usize>(acc: [[__m256; T]; R]) -> [[f32; T]; R] {
        let mut y = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                y[r][t] = hsum(acc[r][t]);
            }
        }
        y
    }
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
fn quantize_acts_plain(x: &[f32], q: &mut [BlockQ8_0], d: &mut [f32], s: &mut [i32]) {
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

/// [`quantize_acts_plain`] with AVX2 where the CPU has it (the same codes: the products are the same IEEE
/// multiplications and `cvtps` rounds ties to even).
fn quantize_acts(x: &[f32], q: &mut [BlockQ8_0], d: &mut [f32], s: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { simd::quantize_acts(x, q, d, s) };
    }
    quantize_acts_plain(x, q, d, s)
}

/// A `[rows = out, cols = in]` weight matrix in packed blocks, with an optional f32 bias, that computes
/// `y = x Wᵀ + b` for row-major activations `x: [n, in]`.
#[derive(Clone, Debug)]
pub struct QuantLinear<B: QuantBlock> {
    /// Output features.
    pub rows: usize,
    /// Input features (a multiple of 32).
    pub cols: usize,
    /// `rows · cols / 32` blocks, row-major.
    pub blocks: Vec<B>,
    /// `[rows]`, if any.
    pub bias: Option<Vec<f32>>,
    /// Each block's scale in f32, so the kernels never convert f16 in their inner loop.
    scales: Vec<f32>,
    /// Each block's sum of codes (the VNNI kernel's offset correction).
    sums: Vec<i32>,
}

impl<B: QuantBlock> QuantLinear<B> {
    /// Quantizes a row-major f32 matrix with one max-abs scale per block of 32 (llama.cpp's `_0` formats).
    pub fn from_f32(
        weight: &[f32],
        rows: usize,
        cols: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<Self> {
        check_dims("QuantLinear::from_f32", weight.len(), rows, cols)?;
        Ok(Self::new(
            rows,
            cols,
            weight.chunks(QK).map(B::from_float).collect(),
            bias,
        ))
    }

    /// Converts a symmetric group-wise tensor of `B::BITS` bits whose groups span whole blocks of 32; each
    /// block takes its group's scale, so the weights are exactly the tensor's.
    pub fn from_quantized(q: &QuantizedTensor, bias: Option<Vec<f32>>) -> Result<Self> {
        let [rows, cols] = q.shape;
        if q.spec.bits != B::BITS || !q.spec.symmetric {
            return Err(QuantError::Shape {
                op: "QuantLinear::from_quantized",
                message: format!(
                    "{} needs symmetric {}-bit codes, found {}-bit {}",
                    B::NAME,
                    B::BITS,
                    q.spec.bits,
                    if q.spec.symmetric {
                        "symmetric"
                    } else {
                        "asymmetric"
                    }
                ),
            });
        }
        if !q.group[1].is_multiple_of(QK) {
            return Err(QuantError::Shape {
                op: "QuantLinear::from_quantized",
                message: format!(
                    "groups of {} columns do not span whole blocks of {QK}",
                    q.group[1]
                ),
            });
        }
        check_dims("QuantLinear::from_quantized", rows * cols, rows, cols)?;
        let codes = q.signed_codes();
        let blocks = (0..rows * cols / QK)
            .map(|b| {
                let (r, c) = (b * QK / cols, b * QK % cols);
                let c8: Vec<i8> = codes[b * QK..(b + 1) * QK]
                    .iter()
                    .map(|v| *v as i8)
                    .collect();
                B::from_codes(&c8, q.scales[q.group_of(r, c)])
            })
            .collect();
        Ok(Self::new(rows, cols, blocks, bias))
    }

    fn new(rows: usize, cols: usize, blocks: Vec<B>, bias: Option<Vec<f32>>) -> Self {
        let scales = blocks.iter().map(B::scale).collect();
        let sums = blocks.iter().map(code_sum).collect();
        Self {
            rows,
            cols,
            blocks,
            bias,
            scales,
            sums,
        }
    }

    /// The weights as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (b, chunk) in self.blocks.iter().zip(out.chunks_mut(QK)) {
            b.to_float(chunk);
        }
        out
    }

    /// Bytes of the packed weights.
    pub fn weight_bytes(&self) -> usize {
        std::mem::size_of_val(self.blocks.as_slice())
    }

    fn check_input(&self, op: &'static str, x: &[f32], n: usize) -> Result<()> {
        if x.len() != n * self.cols {
            return Err(QuantError::Shape {
                op,
                message: format!(
                    "input has {} values, expected [{n}, {}]",
                    x.len(),
                    self.cols
                ),
            });
        }
        Ok(())
    }

    /// `y = x Wᵀ + b` for `x: [n, in]` → `[n, out]`, with the reference dot product, one thread.
    pub fn forward_unopt(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.check_input("QuantLinear::forward_unopt", x, n)?;
        let bpr = self.cols / QK;
        let mut y = vec![0.0; n * self.rows];
        for i in 0..n {
            let xq = quantize_row_q8(&x[i * self.cols..(i + 1) * self.cols]);
            for r in 0..self.rows {
                let b = self.bias.as_ref().map_or(0.0, |b| b[r]);
                y[i * self.rows + r] =
                    B::vec_dot_unopt(&self.blocks[r * bpr..(r + 1) * bpr], &xq) + b;
            }
        }
        Ok(y)
    }

    /// `y = x Wᵀ + b` for `x: [n, in]` → `[n, out]`: activations quantized per row to 8-bit blocks, then
    /// tiles of 2 weight rows × 4 tokens (4 rows × 1 token below 4 tokens), output rows split over rayon's
    /// threads in as many chunks as there are threads (one chunk when the layer is too small to share).
    pub fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.check_input("QuantLinear::forward", x, n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let bpr = self.cols / QK;
        let blocks = n * bpr;
        let mut xq = vec![BlockQ8_0::ZERO; blocks];
        let (mut xd, mut xs) = (vec![0.0; blocks], vec![0; blocks]);
        quantize_acts(x, &mut xq, &mut xd, &mut xs);
        let acts = Acts {
            q: &xq,
            d: &xd,
            s: &xs,
            bpr,
            n,
        };
        // [out, n] in chunks of whole row tiles, then transposed into [n, out].
        const MIN_BLOCK_DOTS_PER_TASK: usize = 32768;
        let work = self.rows * n * bpr;
        let tasks = rayon::current_num_threads()
            .min(work / MIN_BLOCK_DOTS_PER_TASK)
            .max(1);
        let chunk = self.rows.div_ceil(tasks).next_multiple_of(4);
        let mut yt = vec![0.0f32; self.rows * n];
        let run = |(c, out): (usize, &mut [f32])| {
            let r0 = c * chunk;
            let count = out.len() / n;
            let mut r = 0;
            if n < 4 {
                while r + 4 <= count {
                    self.rows_tile::<4>(r0 + r, &mut out[r * n..(r + 4) * n], &acts);
                    r += 4;
                }
            }
            while r + 2 <= count {
                self.rows_tile::<2>(r0 + r, &mut out[r * n..(r + 2) * n], &acts);
                r += 2;
            }
            if r < count {
                self.rows_tile::<1>(r0 + r, &mut out[r * n..(r + 1) * n], &acts);
            }
        };
        if tasks == 1 {
            run((0, &mut yt[..]));
        } else {
            // The calling thread takes the first chunk and rayon's workers the others, so a call from outside
            // the pool wakes one worker instead of handing the whole job over and sleeping.
            let run = &run;
            rayon::in_place_scope(|scope| {
                let mut chunks = yt.chunks_mut(chunk * n).enumerate();
                let first = chunks.next();
                for c in chunks {
                    scope.spawn(move |_| run(c));
                }
                if let Some(c) = first {
                    run(c);
                }
            });
        }
        if n == 1 {
            return Ok(yt);
        }
        let mut y = vec![0.0; n * self.rows];
        for r in 0..self.rows {
            for i in 0..n {
                y[i * self.rows + r] = yt[r * n + i];
            }
        }
        Ok(y)
    }

    /// Rows `r0..r0 + R` against every token, into `out: [R, n]`, bias added.
    fn rows_tile<const R: usize>(&self, r0: usize, out: &mut [f32], acts: &Acts<'_>) {
        let bpr = self.cols / QK;
        let span = |i: usize| (r0 + i) * bpr..(r0 + i + 1) * bpr;
        let w = WeightRows {
            blocks: std::array::from_fn(|i| &self.blocks[span(i)]),
            scales: std::array::from_fn(|i| &self.scales[span(i)]),
            sums: std::array::from_fn(|i| &self.sums[span(i)]),
        };
        let bias: [f32; R] = std::array::from_fn(|i| self.bias.as_ref().map_or(0.0, |b| b[r0 + i]));
        let n = acts.n;
        let mut t0 = 0;
        while t0 + 4 <= n {
            let y = B::tile::<R, 4>(w, acts.rows(t0));
            for r in 0..R {
                for t in 0..4 {
                    out[r * n + t0 + t] = y[r][t] + bias[r];
                }
            }
            t0 += 4;
        }
        while t0 < n {
            let y = B::tile::<R, 1>(w, acts.rows(t0));
            for r in 0..R {
                out[r * n + t0] = y[r][0] + bias[r];
            }
            t0 += 1;
        }
    }
}

/// One call's activations in 8-bit blocks, `[n, bpr]`, with f32 scales and code sums.
struct Acts<'a> {
    q: &'a [BlockQ8_0],
    d: &'a [f32],
    s: &'a [i32],
    bpr: usize,
    n: usize,
}

impl Acts<'_> {
    fn rows<const T: usize>(&self, t0: usize) -> ActRows<'_, T> {
        let span = |t: usize| (t0 + t) * self.bpr..(t0 + t + 1) * self.bpr;
        ActRows {
            blocks: std::array::from_fn(|t| &self.q[span(t)]),
            scales: std::array::from_fn(|t| &self.d[span(t)]),
            sums: std::array::from_fn(|t| &self.s[span(t)]),
        }
    }
}

fn check_dims(op: &'static str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if !cols.is_multiple_of(QK) || len != rows * cols || rows == 0 {
        return Err(QuantError::Shape {
            op,
            message: format!(
                "a [{rows}, {cols}] matrix with {len} values; columns must be a multiple of {QK}"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Granularity, HeadAxis, QuantSpec};
    use student_arch::model::SeededRng;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SeededRng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    fn reference(w: &[f32], x: &[f32], rows: usize, cols: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0.0; n * rows];
        for i in 0..n {
            for r in 0..rows {
                y[i * rows + r] = (0..cols)
                    .map(|c| x[i * cols + c] as f64 * w[r * cols + c] as f64)
                    .sum::<f64>() as f32;
            }
        }
        y
    }

    fn check<B: QuantBlock>(tolerance: f32, rows: usize, cols: usize, n: usize) {
        let w = gaussian(rows * cols, 1);
        let x = gaussian(n * cols, 2);
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.01).collect();
        let q = QuantLinear::<B>::from_f32(&w, rows, cols, Some(bias.clone())).unwrap();
        let fast = q.forward(&x, n).unwrap();
        let slow = q.forward_unopt(&x, n).unwrap();
        for (a, b) in fast.iter().zip(&slow) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{}: SIMD {a} vs reference {b}",
                B::NAME
            );
        }
        // Against exact f32 arithmetic on the dequantized weights: only the 8-bit activations differ.
        let mut exact = reference(&q.dequantize(), &x, rows, cols, n);
        for i in 0..n {
            for r in 0..rows {
                exact[i * rows + r] += bias[r];
            }
        }
        let scale = (cols as f32).sqrt();
        for (a, b) in fast.iter().zip(&exact) {
            assert!(
                (a - b).abs() <= tolerance * scale,
                "{}: {a} vs {b}",
                B::NAME
            );
        }
    }

    #[test]
    fn q8_and_q4_kernels_match_their_references() {
        // Every tile shape and tail: 2×4 tiles with a token tail (n = 5), 4×1 tiles with an odd row left over
        // (n = 1 and 3, 37 rows), and a layer large enough to be split over threads (130 × 384, n = 9).
        for (rows, cols, n) in [
            (48, 96, 5),
            (37, 64, 1),
            (37, 64, 3),
            (130, 384, 9),
            (1536, 384, 1),
        ] {
            check::<BlockQ8_0>(0.05, rows, cols, n);
            check::<BlockQ4_0>(0.05, rows, cols, n);
        }
        let l = QuantLinear::<BlockQ4_0>::from_f32(&[0.5; 64], 2, 32, None).unwrap();
        assert!(l.forward(&[], 0).unwrap().is_empty());
    }

    #[cfg(target_arch = "x86_64")]
    fn every_tile_path<B: simd::Codes>() {
        let w = QuantLinear::<B>::from_f32(&gaussian(3 * 64, 5), 3, 64, None).unwrap();
        let xq: Vec<BlockQ8_0> = gaussian(2 * 64, 6)
            .chunks(QK)
            .map(BlockQ8_0::from_float)
            .collect();
        let xd: Vec<f32> = xq.iter().map(|b| b.d.to_f32()).collect();
        let xs: Vec<i32> = xq.iter().map(code_sum).collect();
        let acts = Acts {
            q: &xq,
            d: &xd,
            s: &xs,
            bpr: 2,
            n: 2,
        };
        let span = |r: usize| r * 2..r * 2 + 2;
        let rows = WeightRows {
            blocks: [0, 1, 2].map(|r| &w.blocks[span(r)]),
            scales: [0, 1, 2].map(|r| &w.scales[span(r)]),
            sums: [0, 1, 2].map(|r| &w.sums[span(r)]),
        };
        let x: ActRows<'_, 2> = acts.rows(0);
        let mut results = vec![("plain", tile_plain(rows, x))];
        if simd::available() {
            // SAFETY: detected at run time.
            results.push(("avx2", unsafe { simd::tile(rows, x) }));
        }
        if simd::vnni_available() {
            // SAFETY: detected at run time.
            results.push(("vnni", unsafe { simd::tile_vnni(rows, x) }));
        }
        eprintln!(
            "{}: checked {:?}",
            B::NAME,
            results.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        for (path, y) in results {
            for r in 0..3 {
                for t in 0..2 {
                    let want = B::vec_dot_unopt(rows.blocks[r], x.blocks[t]);
                    assert!(
                        (y[r][t] - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{} {path}: {} vs {want}",
                        B::NAME,
                        y[r][t]
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_tile_path_matches_the_reference_dot() {
        every_tile_path::<BlockQ8_0>();
        every_tile_path::<BlockQ4_0>();
    }

    #[test]
    fn activation_quantizers_agree() {
        // Gaussian values, a block of exact ties (max 63.5, so d = 0.5 and x/d = k + 0.5), and zeros.
        let mut x = gaussian(4 * QK, 9);
        for (i, v) in x[QK..2 * QK].iter_mut().enumerate() {
            *v = (i as f32 - 16.0) * 0.5 + 0.25;
        }
        x[2 * QK - 1] = 63.5;
        x[2 * QK..3 * QK].fill(0.0);
        let blocks = x.len() / QK;
        let (mut q1, mut q2) = (vec![BlockQ8_0::ZERO; blocks], vec![BlockQ8_0::ZERO; blocks]);
        let (mut d1, mut d2) = (vec![0.0; blocks], vec![0.0; blocks]);
        let (mut s1, mut s2) = (vec![0; blocks], vec![0; blocks]);
        quantize_acts_plain(&x, &mut q1, &mut d1, &mut s1);
        quantize_acts(&x, &mut q2, &mut d2, &mut s2);
        assert_eq!(q1, q2);
        assert_eq!((d1, &s1), (d2, &s2));
        assert_eq!(s1, q1.iter().map(code_sum).collect::<Vec<_>>());
        // Codes within half a step: |x − d·q| ≤ d/2.
        for (b, block) in q1.iter().enumerate() {
            for (c, v) in block.qs.iter().zip(&x[b * QK..(b + 1) * QK]) {
                let d = block.d.to_f32();
                assert!(
                    (v - d * *c as f32).abs() <= d / 2.0 + 1e-6,
                    "{v} vs {c}·{d}"
                );
            }
        }
    }

    #[test]
    fn block_codes_round_trip() {
        let codes: Vec<i8> = (0..32).map(|i| (i % 15) as i8 - 7).collect();
        let b = BlockQ4_0::from_codes(&codes, f16::from_f32(0.5));
        assert_eq!(b.codes().to_vec(), codes);
        let mut out = [0.0; 32];
        b.to_float(&mut out);
        assert_eq!(out[0], -3.5);
    }

    #[test]
    fn group_wise_tensors_convert_exactly() {
        let (rows, cols) = (64, 128);
        let w: Vec<f32> = gaussian(rows * cols, 4).iter().map(|v| v * 0.05).collect();
        for (g, head) in [
            (Granularity::Head, Some((HeadAxis::Rows, 4))),
            (Granularity::Head, Some((HeadAxis::Columns, 4))),
            (Granularity::Channel, None),
            (Granularity::Block(64), None),
        ] {
            let q8 =
                QuantizedTensor::quantize("w", &w, [rows, cols], QuantSpec::symmetric(8, g), head)
                    .unwrap();
            let l8 = QuantLinear::<BlockQ8_0>::from_quantized(&q8, None).unwrap();
            assert_eq!(l8.dequantize(), q8.dequantize(), "{g:?}");
            let q4 =
                QuantizedTensor::quantize("w", &w, [rows, cols], QuantSpec::symmetric(4, g), head)
                    .unwrap();
            let l4 = QuantLinear::<BlockQ4_0>::from_quantized(&q4, None).unwrap();
            assert_eq!(l4.dequantize(), q4.dequantize(), "{g:?}");
            assert!(QuantLinear::<BlockQ4_0>::from_quantized(&q8, None).is_err());
        }
        let err = QuantLinear::<BlockQ8_0>::from_f32(&w[..100], 1, 100, None).unwrap_err();
        assert!(err.to_string().contains("multiple of 32"), "{err}");
        let l = QuantLinear::<BlockQ8_0>::from_f32(&w, rows, cols, None).unwrap();
        assert!(l
            .forward(&[0.0; 10], 1)
            .unwrap_err()
            .to_string()
            .contains("expected [1, 128]"));
    }
}
