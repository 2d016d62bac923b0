//! The x86-64 kernels (candle's `avx.rs`): AVX2 + FMA tiles and activation quantization, and the AVX-512 VNNI
//! tile; each is called only after its features were detected at run time.

// The tile loops index several arrays (rows, tokens, accumulators) by the same `r` and `t`; indices read better
// there than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::blocks::{tile_len, ActRows, BlockQ4_0, BlockQ8_0, QuantBlock, WeightRows};
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
pub trait Codes: QuantBlock {
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
