//! The f32 parts of [`crate::encoder::QuantEncoder`] between its integer GEMMs: LayerNorm, GELU, attention
//! (scores, softmax, weighted values) and per-token activation quantization, threaded over rows or
//! (sequence, head) pairs. Each body is written for auto-vectorisation (sums in 16 independent lanes, `exp`
//! and `erf` as polynomials, no calls) and compiled per [`Tier`] (`kernels::simd`). The lanes fix the order of
//! every sum and `mul_add` is exact on every path, so every tier gives the same bits (tested).

// Lane loops index several arrays by the same `i`.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;
use student_arch::gelu::kernels::{exp_neg, gelu};

use crate::kernels::simd::{block, lane_sum, multiversion, Tier, LANES};

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
    x.par_chunks_mut(h)
        .enumerate()
        .with_min_len(16)
        .for_each(|(i, row)| {
            add_norm_row(
                tier,
                row,
                residual.map(|r| &r[i * h..(i + 1) * h]),
                gamma,
                beta,
                eps,
            )
        });
}

/// One row of [`add_layer_norm`]: `row ← LayerNorm(row + residual)`.
fn add_norm_row(
    tier: Tier,
    row: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    if let Some(r) = residual {
        for (v, a) in row.iter_mut().zip(r) {
            *v += a;
        }
    }
    layer_norm_row(tier, row, gamma, beta, eps);
}

/// [`add_layer_norm`] on the calling thread alone (rows of `x` and `residual` in step).
pub fn add_layer_norm_serial(
    tier: Tier,
    x: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let h = gamma.len();
    for (i, row) in x.chunks_mut(h).enumerate() {
        add_norm_row(
            tier,
            row,
            residual.map(|r| &r[i * h..(i + 1) * h]),
            gamma,
            beta,
            eps,
        );
    }
}

/// GELU of every value of `x` on the calling thread.
pub fn gelu_serial(tier: Tier, x: &mut [f32]) {
    gelu_slice(tier, x);
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

/// One head of one sequence: `q`, `k`, `v` start at the head's first value and hold its `len` rows of `d`
/// values `stride` apart (the head's columns of `[len, width]` matrices).
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
    /// Tokens.
    pub len: usize,
    /// Head width.
    pub d: usize,
    /// The scores' factor, `1 / sqrt(d)`.
    pub scale: f32,
}

/// Reused buffers of [`attend_head`]: the keys transposed (`[d, len16]`) and the values contiguous
/// (`[len16, d16]`), both padded with zeros to whole blocks of 16; one block of queries' scores, the block's
/// queries transposed (`[d, 4]`) and its attention weights transposed (`[len16, 4]`).
#[derive(Default)]
pub struct Scratch {
    kt: Vec<f32>,
    vh: Vec<f32>,
    scores: Vec<f32>,
    qt: Vec<f32>,
    pt: Vec<f32>,
}

/// Queries per block: each key row and value row loaded serves this many queries.
const QB: usize = 4;

/// `acc[r] += w[r] · row` for the queries of a block, lane by lane (fixed sizes: unrolled into registers).
#[inline(always)]
fn fma4(acc: &mut [[f32; LANES]; QB], w: &[f32; QB], row: &[f32; LANES]) {
    for r in 0..QB {
        for l in 0..LANES {
            acc[r][l] = w[r].mul_add(row[l], acc[r][l]);
        }
    }
}

multiversion! {
    /// One head of one sequence: writes `softmax(q kᵀ · scale) v` into `out: [len, d]`.
    ///
    /// Queries go in blocks of 4 against keys and value columns in blocks of 16, so each loaded row serves
    /// four queries and eight independent chains of FMAs keep the units busy; every sum's order is fixed by
    /// the code (lanes, even and odd halves), not by the vector width.
    fn attend_head(head: Head<'_>, scratch: &mut Scratch, out: &mut [f32]) {
        let Head { q, k, v, stride, len, d, scale } = head;
        let (lp, dp) = (len.next_multiple_of(LANES), d.next_multiple_of(LANES));
        scratch.kt.clear();
        scratch.kt.resize(d * lp, 0.0);
        scratch.vh.clear();
        scratch.vh.resize(lp * dp, 0.0);
        scratch.scores.resize(QB * lp, 0.0);
        scratch.qt.resize(d * QB, 0.0);
        scratch.pt.resize(lp * QB, 0.0);
        let Scratch { kt, vh, scores, qt, pt } = scratch;
        // The head's values contiguous: rows `stride` apart map to few cache sets and evict each other.
        for j in 0..len {
            vh[j * dp..j * dp + d].copy_from_slice(&v[j * stride..j * stride + d]);
        }
        // Each key row read once, contiguously: rows `stride` apart share few cache sets, so reading them all
        // once per column (contiguous writes) missed the L1 cache on every read.
        for j in 0..len {
            for (c, x) in k[j * stride..j * stride + d].iter().enumerate() {
                kt[c * lp + j] = *x;
            }
        }
        for i0 in (0..len).step_by(QB) {
            let rows = QB.min(len - i0);
            qt.fill(0.0);
            for r in 0..rows {
                for c in 0..d {
                    qt[c * QB + r] = q[(i0 + r) * stride + c];
                }
            }
            // Scores: 4 queries × 16 keys, even and odd input columns in separate accumulators.
            for j0 in (0..lp).step_by(LANES) {
                let (mut even, mut odd) = ([[0.0f32; LANES]; QB], [[0.0f32; LANES]; QB]);
                for c in (0..d - d % 2).step_by(2) {
                    fma4(&mut even, block(qt, c * QB), block(kt, c * lp + j0));
                    fma4(&mut odd, block(qt, (c + 1) * QB), block(kt, (c + 1) * lp + j0));
                }
                if d % 2 == 1 {
                    fma4(&mut even, block(qt, (d - 1) * QB), block(kt, (d - 1) * lp + j0));
                }
                for r in 0..QB {
                    for l in 0..LANES {
                        scores[r * lp + j0 + l] = (even[r][l] + odd[r][l]) * scale;
                    }
                }
            }
            // Softmax over the real keys of each query (the padding's weights are zero): each row's maximum in
            // 16 lanes a block (whole blocks, then the rest), its exponentials and their sum's inverse; then the
            // weights of all the block's queries written key by key (a query past the sequence's end gets 0).
            pt.fill(0.0);
            let mut inv = [0.0f32; QB];
            for r in 0..rows {
                let s = &mut scores[r * lp..(r + 1) * lp];
                let mut lanes = [f32::NEG_INFINITY; LANES];
                let blocks = s[..len].chunks_exact(LANES);
                let rest = blocks.remainder();
                for b in blocks {
                    for l in 0..LANES {
                        lanes[l] = if b[l] > lanes[l] { b[l] } else { lanes[l] };
                    }
                }
                for (l, x) in rest.iter().enumerate() {
                    lanes[l] = if *x > lanes[l] { *x } else { lanes[l] };
                }
                let max = lanes.iter().fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
                for x in s[..len].iter_mut() {
                    *x = exp_neg(*x - max);
                }
                inv[r] = 1.0 / lane_sum(&s[..len], |x| x);
            }
            for (j, w) in pt[..len * QB].chunks_exact_mut(QB).enumerate() {
                for r in 0..rows {
                    w[r] = scores[r * lp + j] * inv[r];
                }
            }
            // Weighted values: 4 queries × 16 columns, even and odd keys (lp is even) in separate accumulators.
            for c0 in (0..dp).step_by(LANES) {
                let (mut even, mut odd) = ([[0.0f32; LANES]; QB], [[0.0f32; LANES]; QB]);
                for j in (0..lp).step_by(2) {
                    fma4(&mut even, block(pt, j * QB), block(vh, j * dp + c0));
                    fma4(&mut odd, block(pt, (j + 1) * QB), block(vh, (j + 1) * dp + c0));
                }
                let width = LANES.min(d - c0);
                for r in 0..rows {
                    let o = &mut out[(i0 + r) * d + c0..(i0 + r) * d + c0 + width];
                    for l in 0..width {
                        o[l] = even[r][l] + odd[r][l];
                    }
                }
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
                len,
                d,
                scale: 0.2,
            };
            // A scratch sized for another shape first, as the encoder's thread-local one is.
            let mut scratch = Scratch::default();
            attend_head(
                tier,
                Head {
                    d: 1,
                    len: 3,
                    ..head
                },
                &mut scratch,
                &mut [0.0; 3],
            );
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

    /// Widths and lengths off the blocks of 16 and 4 (padding on both axes), against f64.
    #[test]
    fn attention_off_the_block_sizes() {
        for (len, d) in [(1, 20), (6, 20), (17, 7), (33, 48)] {
            let (q, k, v) = (
                gaussian(len * 2 * d, 1),
                gaussian(len * 2 * d, 2),
                gaussian(len * 2 * d, 3),
            );
            let head = Head {
                q: &q,
                k: &k,
                v: &v,
                stride: 2 * d,
                len,
                d,
                scale: 0.3,
            };
            let mut out = vec![0.0; len * d];
            attend_head(Tier::best(), head, &mut Scratch::default(), &mut out);
            for i in 0..len {
                let sc: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..d)
                            .map(|c| q[i * 2 * d + c] as f64 * k[j * 2 * d + c] as f64)
                            .sum::<f64>()
                            * 0.3
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                let total: f64 = sc.iter().map(|s| (s - m).exp()).sum();
                for c in 0..d {
                    let want: f64 = (0..len)
                        .map(|j| (sc[j] - m).exp() / total * v[j * 2 * d + c] as f64)
                        .sum();
                    assert!(
                        (out[i * d + c] as f64 - want).abs() < 1e-4,
                        "len {len} d {d}: {i},{c}"
                    );
                }
            }
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
