//! The f32 parts of [`crate::encoder::QuantEncoder`] between its integer GEMMs: LayerNorm, GELU, attention
//! (scores, softmax, weighted values) and per-token activation quantization, threaded over rows or
//! (sequence, head) pairs. Each body is written for auto-vectorisation (sums in 16 independent lanes, `exp`
//! and `erf` as polynomials, no calls) and compiled per [`Tier`] (`kernels::simd`). The lanes fix the order of
//! every sum and `mul_add` is exact on every path, so every tier gives the same bits (tested).

// Lane loops index several arrays by the same `i`.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;
use student_arch::gelu::kernels::{exp_neg, gelu};

use crate::kernels::simd::{lane_sum, multiversion, Tier, LANES};

multiversion! {
    /// LayerNorm of one row in place: `(x − mean) / sqrt(var + eps) · gamma + beta`.
    fn layer_norm_row(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let h = x.len() as f32;
        let mean = lane_sum(x, |v| v) / h;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / h;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
            *v = ((*v - mean) * inv).mul_add(*g, *b);
        }
    }
}

/// LayerNorm of every `gamma.len()`-wide row of `x` after adding `residual` (when given), threaded over rows.
pub fn add_layer_norm(
    tier: Tier,
    x: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let h = gamma.len();
    let work = |(i, row): (usize, &mut [f32])| {
        if let Some(r) = residual {
            for (v, a) in row.iter_mut().zip(&r[i * h..(i + 1) * h]) {
                *v += a;
            }
        }
        layer_norm_row(tier, row, gamma, beta, eps);
    };
    x.par_chunks_mut(h)
        .enumerate()
        .with_min_len(16)
        .for_each(work);
}

multiversion! {
    /// GELU (erf form) of a slice in place, as `student_arch`'s kernel for flex computes it.
    fn gelu_slice(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = gelu(*v);
        }
    }
}

/// GELU of every value of `x`, threaded.
pub fn gelu_all(tier: Tier, x: &mut [f32]) {
    x.par_chunks_mut(4096).for_each(|c| gelu_slice(tier, c));
}

/// One head of one sequence: `q`, `k`, `v` start at the head's first value and hold its rows of `d` values
/// `stride` apart (the head's columns of `[len, width]` matrices).
#[derive(Clone, Copy)]
pub struct Head<'a> {
    /// Queries.
    pub q: &'a [f32],
    /// Keys.
    pub k: &'a [f32],
    /// Values.
    pub v: &'a [f32],
    /// Distance between consecutive rows.
    pub stride: usize,
    /// Head width.
    pub d: usize,
    /// The scores' factor, `1 / sqrt(d)`.
    pub scale: f32,
}

/// Reused buffers of [`attend_head`]: the keys transposed (`[d, len]`), the values contiguous (`[len, d]`) and
/// one query's scores (`[len]`).
#[derive(Default)]
pub struct Scratch {
    kt: Vec<f32>,
    vh: Vec<f32>,
    scores: Vec<f32>,
}

multiversion! {
    /// One head of one sequence: writes `softmax(q kᵀ · scale) v` into `out: [len, d]`.
    fn attend_head(head: Head<'_>, scratch: &mut Scratch, out: &mut [f32]) {
        let Head { q, k, v, stride, d, scale } = head;
        let len = out.len() / d;
        scratch.kt.resize(d * len, 0.0);
        scratch.vh.resize(len * d, 0.0);
        scratch.scores.resize(len, 0.0);
        let Scratch { kt, vh, scores } = scratch;
        // The head's values contiguous: rows `stride` apart map to few cache sets and evict each other.
        for (j, row) in vh.chunks_exact_mut(d).enumerate() {
            row.copy_from_slice(&v[j * stride..j * stride + d]);
        }
        let (v, stride_v) = (&*vh, d);
        // Contiguous writes, strided reads: cheaper than the other way round.
        for c in 0..d {
            for j in 0..len {
                kt[c * len + j] = k[j * stride + c];
            }
        }
        for (i, out_i) in out.chunks_exact_mut(d).enumerate() {
            let qi = &q[i * stride..i * stride + d];
            // Scores 64 keys at a time in four registers (four independent chains of FMAs over the head's
            // width), then 16 at a time, then one by one.
            let mut j0 = 0;
            while j0 + 4 * LANES <= len {
                let mut acc = [[0.0f32; LANES]; 4];
                for (c, qc) in qi.iter().enumerate() {
                    let row = &kt[c * len + j0..c * len + j0 + 4 * LANES];
                    for b in 0..4 {
                        for l in 0..LANES {
                            acc[b][l] = qc.mul_add(row[b * LANES + l], acc[b][l]);
                        }
                    }
                }
                for b in 0..4 {
                    scores[j0 + b * LANES..j0 + (b + 1) * LANES].copy_from_slice(&acc[b]);
                }
                j0 += 4 * LANES;
            }
            while j0 + LANES <= len {
                let mut acc = [0.0f32; LANES];
                for (c, qc) in qi.iter().enumerate() {
                    let row = &kt[c * len + j0..c * len + j0 + LANES];
                    for l in 0..LANES {
                        acc[l] = qc.mul_add(row[l], acc[l]);
                    }
                }
                scores[j0..j0 + LANES].copy_from_slice(&acc);
                j0 += LANES;
            }
            for j in j0..len {
                scores[j] = qi.iter().enumerate().fold(0.0, |a, (c, qc)| qc.mul_add(kt[c * len + j], a));
            }
            // Scaled, and their maximum in 16 lanes (one compare chain per lane, not one for all).
            let mut lanes = [f32::NEG_INFINITY; LANES];
            let mut blocks = scores.chunks_exact_mut(LANES);
            for block in blocks.by_ref() {
                for l in 0..LANES {
                    block[l] *= scale;
                    lanes[l] = if block[l] > lanes[l] { block[l] } else { lanes[l] };
                }
            }
            for (l, s) in blocks.into_remainder().iter_mut().enumerate() {
                *s *= scale;
                lanes[l] = if *s > lanes[l] { *s } else { lanes[l] };
            }
            let max = lanes.iter().fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
            for s in scores.iter_mut() {
                *s = exp_neg(*s - max);
            }
            let inv = 1.0 / lane_sum(scores, |s| s);
            // The weighted values 16 columns at a time, likewise in registers, with even and odd keys in two
            // chains of FMAs.
            let full = d / LANES * LANES;
            for c0 in (0..full).step_by(LANES) {
                let (mut even, mut odd) = ([0.0f32; LANES], [0.0f32; LANES]);
                let mut pairs = scores.chunks_exact(2);
                for (jj, pair) in pairs.by_ref().enumerate() {
                    let (p0, p1) = (pair[0] * inv, pair[1] * inv);
                    let j = 2 * jj;
                    let r0 = &v[j * stride_v + c0..j * stride_v + c0 + LANES];
                    let r1 = &v[(j + 1) * stride_v + c0..(j + 1) * stride_v + c0 + LANES];
                    for l in 0..LANES {
                        even[l] = p0.mul_add(r0[l], even[l]);
                        odd[l] = p1.mul_add(r1[l], odd[l]);
                    }
                }
                if let [last] = pairs.remainder() {
                    let j = len - 1;
                    let r = &v[j * stride_v + c0..j * stride_v + c0 + LANES];
                    for l in 0..LANES {
                        even[l] = (last * inv).mul_add(r[l], even[l]);
                    }
                }
                let acc = [even, odd];
                for l in 0..LANES {
                    out_i[c0 + l] = acc[0][l] + acc[1][l];
                }
            }
            for c in full..d {
                out_i[c] = scores.iter().enumerate().fold(0.0, |a, (j, s)| (s * inv).mul_add(v[j * stride_v + c], a));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int_gemm::quantize_token;
    use student_arch::model::SeededRng;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SeededRng::new(seed);
        (0..n).map(|_| rng.normal() as f32 * 3.0).collect()
    }

    fn tiers() -> Vec<Tier> {
        let best = Tier::best();
        [Tier::Avx512, Tier::Avx2, Tier::Plain]
            .into_iter()
            .skip_while(|t| *t != best)
            .collect()
    }

    /// Every tier gives the same bits, and each op matches a plain f64 computation.
    #[test]
    fn every_tier_gives_the_same_bits_and_the_f64_values() {
        let (len, d) = (37, 32);
        let (q, k, v) = (
            gaussian(len * d, 1),
            gaussian(len * d, 2),
            gaussian(len * d, 3),
        );
        let gamma = gaussian(384, 4);
        let beta = gaussian(384, 5);
        let x = gaussian(3 * 384, 6);
        let cs: Vec<f32> = gaussian(384, 7).iter().map(|v| v.abs() + 0.1).collect();
        let mut results = vec![];
        for tier in tiers() {
            let mut out = vec![0.0; len * d];
            let head = Head {
                q: &q,
                k: &k,
                v: &v,
                stride: d,
                d,
                scale: 0.2,
            };
            // A scratch sized for another shape first, as the encoder's thread-local one is.
            let mut scratch = Scratch::default();
            attend_head(tier, Head { d: 1, ..head }, &mut scratch, &mut [0.0; 3]);
            attend_head(tier, head, &mut scratch, &mut out);
            let mut norm = x.clone();
            add_layer_norm(tier, &mut norm, Some(&x), &gamma, &beta, 1e-12);
            let mut g = x.clone();
            gelu_all(tier, &mut g);
            let mut codes = vec![0u8; 384];
            let params = quantize_token(tier, &x[..384], Some(&cs), &mut codes);
            results.push((out, norm, g, codes, params));
        }
        for r in &results[1..] {
            assert_eq!(r, &results[0]);
        }
        let (out, norm, g, codes, (s, z)) = &results[0];
        for i in 0..len {
            let sc: Vec<f64> = (0..len)
                .map(|j| {
                    (0..d)
                        .map(|c| q[i * d + c] as f64 * k[j * d + c] as f64)
                        .sum::<f64>()
                        * 0.2
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = sc.iter().map(|s| (s - m).exp()).collect();
            let total: f64 = e.iter().sum();
            for c in 0..d {
                let want: f64 = (0..len).map(|j| e[j] / total * v[j * d + c] as f64).sum();
                assert!(
                    (out[i * d + c] as f64 - want).abs() < 1e-4,
                    "attention {i},{c}"
                );
            }
        }
        for row in 0..3 {
            let xs: Vec<f64> = x[row * 384..(row + 1) * 384]
                .iter()
                .map(|v| 2.0 * *v as f64)
                .collect();
            let mean = xs.iter().sum::<f64>() / 384.0;
            let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 384.0;
            for j in 0..384 {
                let want = (xs[j] - mean) / (var + 1e-12).sqrt() * gamma[j] as f64 + beta[j] as f64;
                assert!(
                    (norm[row * 384 + j] as f64 - want).abs() < 1e-4,
                    "layer norm {row},{j}"
                );
            }
        }
        for (a, b) in g.iter().zip(&x) {
            let want = 0.5 * *b as f64 * (1.0 + erf64(*b as f64 / std::f64::consts::SQRT_2));
            assert!(
                (*a as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                "gelu({b})"
            );
        }
        for j in 0..384 {
            let back = *s as f64 * (codes[j] as f64 - *z as f64);
            assert!(
                (back - (x[j] * cs[j]) as f64).abs() <= *s as f64 * 0.5001,
                "code {j}"
            );
        }
    }

    fn erf64(x: f64) -> f64 {
        // Abramowitz & Stegun 7.1.26 is 1.5e-7; the kernel is checked to 1e-5 relative above.
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let y = 1.0
            - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736)
                * t
                + 0.254_829_592)
                * t
                * (-x * x).exp();
        y.copysign(x)
    }
}
