//! [`QuantLinear`]: a weight matrix in packed blocks that computes `y = x Wᵀ + b`, tiled over rows and tokens
//! and threaded over rows.

// The tile loops index several arrays (rows, tokens, accumulators) by the same `r` and `t`; indices read better
// there than zipped iterators.
#![allow(clippy::needless_range_loop)]

use crate::error::{QuantError, Result};
use crate::format::QuantizedTensor;

use super::blocks::{code_sum, quantize_row_q8, ActRows, BlockQ8_0, QuantBlock, WeightRows, QK};
use super::dispatch::quantize_acts;

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
    #[cfg(target_arch = "x86_64")]
    use crate::kernels::avx;
    use crate::kernels::blocks::{quantize_acts_plain, tile_plain, BlockQ4_0};
    use half::f16;
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
    fn every_tile_path<B: avx::Codes>() {
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
        if avx::available() {
            // SAFETY: detected at run time.
            results.push(("avx2", unsafe { avx::tile(rows, x) }));
        }
        if avx::vnni_available() {
            // SAFETY: detected at run time.
            results.push(("vnni", unsafe { avx::tile_vnni(rows, x) }));
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
