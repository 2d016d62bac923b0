//! [`PackedF32`]: an f32 weight packed once at load into panels of [`F32_PANEL`] output features, and the GEMM
//! that reads it, `y = x Wᵀ + b`, without packing anything at call time.
//!
//! The `gemm` crate (what Burn's CPU backends use) packs its right-hand side into panels at every call; on the
//! encoder's small products (64 tokens × 384 inputs) that packing took 21% of a forward pass on an AVX2 CPU
//! (`docs/records/profile-encoder-fp32-avx2.txt`). Here the weight is packed at load: panel `p` holds output
//! features `16p..16p + 16` as `[cols][16]` (the last one zero-padded), so a tile of [`F32_TOKENS`] tokens × one
//! panel reads 16 weights per input from one contiguous line and broadcasts each token's input from `x` as it is.
//! The tokens are taken in chunks of [`F32_CHUNK`], the inputs in blocks of at most [`F32_BLOCK`] (a panel's
//! block stays in L1, a chunk's inputs in L2); the tile's 12 AVX2 accumulators start from the bias on the first
//! block and from `y` on the others. While a panel's tiles run they pull the next panel's block towards L2, one
//! line per 4 inputs: a forward pass reads every weight once per chunk, too many megabytes to stay in cache
//! between passes, and the hardware prefetcher stops at every 4 KiB page.
//!
//! [`F32Gemm::best`] picks this kernel on CPUs whose widest f32 tier is AVX2 + FMA; on AVX-512 the `gemm` crate's
//! 512-bit kernels stay (they met the f32 target there), and a CPU without AVX2 keeps the crate too.
//! `kernel_plain` is the portable reference the tests hold the AVX2 tile to.

use super::simd::Tier;

/// Output features per panel: two AVX2 registers of f32.
pub const F32_PANEL: usize = 16;
/// Tokens per register tile: 6 × 2 accumulators, 2 weight registers and one broadcast fill 15 of AVX2's 16.
pub const F32_TOKENS: usize = 6;
/// The most inputs per block: a panel's block is 384 × 16 × 4 = 24 KiB, inside a 32 KiB L1.
pub const F32_BLOCK: usize = 384;
/// Tokens per chunk: a chunk's block of inputs (96 × 384 × 4 = 144 KiB) stays in L2 while every panel passes.
pub const F32_CHUNK: usize = 96;

/// Which f32 GEMM [`crate::encoder::Linear`]'s f32 layers run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Gemm {
    /// Weights packed at load ([`PackedF32`]), the AVX2 tile (the portable loop without AVX2).
    Packed,
    /// The `gemm` crate, its weights transposed at load and packed by it at every call.
    Crate,
}

impl F32Gemm {
    /// [`F32Gemm::Packed`] where the widest f32 tier ([`Tier::best`]) is AVX2 + FMA, else [`F32Gemm::Crate`];
    /// `BERT_COMPRESS_F32_GEMM=packed` or `crate` chooses (to compare both on one machine). Read once.
    pub fn best() -> F32Gemm {
        static BEST: std::sync::OnceLock<F32Gemm> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            match std::env::var("BERT_COMPRESS_F32_GEMM")
                .unwrap_or_default()
                .to_ascii_lowercase()
                .as_str()
            {
                "packed" => F32Gemm::Packed,
                "crate" => F32Gemm::Crate,
                _ if Tier::best() == Tier::Avx2 => F32Gemm::Packed,
                _ => F32Gemm::Crate,
            }
        })
    }
}

/// An f32 weight `[rows = out, cols = in]` packed into panels of [`F32_PANEL`] output features.
#[derive(Clone, Debug)]
pub struct PackedF32 {
    /// Panel `p`, input `k`, lane `j`: `panels[(p · cols + k) · 16 + j]` = `W[16p + j, k]` (0 past the last row).
    panels: Vec<f32>,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

impl PackedF32 {
    /// Packs a row-major `[rows, cols]` weight (`weight.len() == rows · cols`, checked by the caller).
    pub fn new(weight: &[f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(weight.len(), rows * cols);
        let mut panels = vec![0.0; rows.div_ceil(F32_PANEL) * cols * F32_PANEL];
        for r in 0..rows {
            let (p, j) = (r / F32_PANEL, r % F32_PANEL);
            for (k, &w) in weight[r * cols..(r + 1) * cols].iter().enumerate() {
                panels[(p * cols + k) * F32_PANEL + j] = w;
            }
        }
        Self { panels, rows, cols }
    }

    /// Panels of output features.
    pub fn panel_count(&self) -> usize {
        self.rows.div_ceil(F32_PANEL)
    }

    /// Row `r` of the weight as it was given.
    pub fn row(&self, r: usize) -> Vec<f32> {
        let (p, j) = (r / F32_PANEL, r % F32_PANEL);
        (0..self.cols)
            .map(|k| self.panels[(p * self.cols + k) * F32_PANEL + j])
            .collect()
    }

    /// Output features `16 · panels.start ..` (up to `16 · panels.end` or `rows`) of `y = x Wᵀ + bias`.
    /// `x: [n, cols]`, `y: [n, rows]`, row-major; `bias: [rows]`.
    ///
    /// # Safety
    /// `x` points at `n · cols` values, `y` at `n · rows`, `panels.end ≤ self.panel_count()`, and no other
    /// thread touches those columns of `y` meanwhile.
    pub unsafe fn affine(
        &self,
        bias: &[f32],
        x: *const f32,
        n: usize,
        y: *mut f32,
        panels: std::ops::Range<usize>,
    ) {
        let (rows, cols) = (self.rows, self.cols);
        debug_assert!(panels.end <= self.panel_count() && bias.len() == rows);
        let avx2 = Tier::best() != Tier::Plain;
        let block = block_len(cols);
        for (t0, k0) in (0..n)
            .step_by(F32_CHUNK)
            // No inputs at all still makes one empty block, so the bias is written.
            .flat_map(|t0| (0..cols.max(1)).step_by(block).map(move |k0| (t0, k0)))
        {
            let (kc, chunk) = (block.min(cols - k0), F32_CHUNK.min(n - t0));
            for p in panels.clone() {
                let j0 = p * F32_PANEL;
                let block_at = |p: usize| self.panels.as_ptr().add((p * cols + k0) * F32_PANEL);
                // The next panel's block, pulled towards L2 while this one runs (the last panel pulls its own:
                // harmless).
                let next = block_at((p + 1).min(panels.end - 1));
                let tile = Tile {
                    kc,
                    x: x.add(k0),
                    x_stride: cols,
                    w: block_at(p),
                    width: F32_PANEL.min(rows - j0),
                    bias: (k0 == 0).then(|| bias.as_ptr().add(j0)),
                    prefetch: next,
                };
                let mut t = t0;
                while t < t0 + chunk {
                    let mr = F32_TOKENS.min(t0 + chunk - t);
                    // Tile i pulls the quarter i % 4 of the next block: one line of 16 weights per 4 inputs.
                    let quarter = (t - t0) / F32_TOKENS % 4;
                    let at = Tile {
                        x: tile.x.add(t * cols),
                        prefetch: next.add(quarter * (kc / 4) * F32_PANEL),
                        ..tile
                    };
                    run_tile(avx2, mr, at, y.add(t * rows + j0), rows);
                    t += mr;
                }
            }
        }
    }
}

/// Inputs per block for `cols` inputs: blocks of equal size, none over [`F32_BLOCK`] (1536 inputs as 4 × 384,
/// 384 as one); at least 1.
fn block_len(cols: usize) -> usize {
    cols.div_ceil(cols.div_ceil(F32_BLOCK).max(1)).max(1)
}

/// One tile of `mr` tokens on the AVX2 tile when `avx2` (an x86-64 CPU with AVX2 + FMA), else the portable one.
///
/// # Safety
/// As [`kernel_plain`].
unsafe fn run_tile(avx2: bool, mr: usize, tile: Tile, y: *mut f32, y_stride: usize) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return match mr {
            6 => kernel_avx2::<6>(tile, y, y_stride),
            5 => kernel_avx2::<5>(tile, y, y_stride),
            4 => kernel_avx2::<4>(tile, y, y_stride),
            3 => kernel_avx2::<3>(tile, y, y_stride),
            2 => kernel_avx2::<2>(tile, y, y_stride),
            _ => kernel_avx2::<1>(tile, y, y_stride),
        };
    }
    let _ = avx2;
    kernel_plain(mr, tile, y, y_stride)
}

/// One register tile's operands: `kc` inputs of up to [`F32_TOKENS`] tokens against one panel.
#[derive(Clone, Copy)]
struct Tile {
    /// Inputs in this block.
    kc: usize,
    /// The first token's first input of the block; token `t` is `x_stride` values further per token.
    x: *const f32,
    x_stride: usize,
    /// The panel's block: `kc` lines of 16 weights.
    w: *const f32,
    /// Output features of the panel that exist (16 but for the last panel).
    width: usize,
    /// The panel's bias on the first block (the tile starts from it), `None` on the others (it adds to `y`).
    bias: Option<*const f32>,
    /// `kc / 4` lines of 16 weights to pull into L2 meanwhile (the next panel's block, in quarters).
    prefetch: *const f32,
}

/// The portable tile: `mr` tokens, the same sums in the same order as the AVX2 tile's lanes.
///
/// # Safety
/// As [`PackedF32::affine`]: the tile lies in bounds, `y` has `y_stride` values per token.
unsafe fn kernel_plain(mr: usize, tile: Tile, y: *mut f32, y_stride: usize) {
    for t in 0..mr {
        let out = std::slice::from_raw_parts_mut(y.add(t * y_stride), tile.width);
        let mut acc = [0.0f32; F32_PANEL];
        match tile.bias {
            Some(b) => acc[..tile.width].copy_from_slice(std::slice::from_raw_parts(b, tile.width)),
            None => acc[..tile.width].copy_from_slice(out),
        }
        for k in 0..tile.kc {
            let a = *tile.x.add(t * tile.x_stride + k);
            let w = std::slice::from_raw_parts(tile.w.add(k * F32_PANEL), F32_PANEL);
            for j in 0..F32_PANEL {
                acc[j] = a.mul_add(w[j], acc[j]);
            }
        }
        out.copy_from_slice(&acc[..tile.width]);
    }
}

/// The AVX2 tile: `MR` tokens × 16 outputs in 2·`MR` registers over the whole block, one fused multiply-add per
/// token and half-panel per input.
///
/// # Safety
/// The CPU has AVX2 and FMA; as [`kernel_plain`] otherwise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// Tokens index the accumulators and the inputs alike; an index reads better there.
#[allow(clippy::needless_range_loop)]
unsafe fn kernel_avx2<const MR: usize>(tile: Tile, y: *mut f32, y_stride: usize) {
    use std::arch::x86_64::*;
    let full = tile.width == F32_PANEL;
    // A partial panel goes through a zero-padded line of 16.
    let load16 = |src: *const f32| -> [__m256; 2] {
        if full {
            [_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8))]
        } else {
            let mut line = [0.0f32; F32_PANEL];
            line[..tile.width].copy_from_slice(std::slice::from_raw_parts(src, tile.width));
            [
                _mm256_loadu_ps(line.as_ptr()),
                _mm256_loadu_ps(line.as_ptr().add(8)),
            ]
        }
    };
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for t in 0..MR {
        acc[t] = match tile.bias {
            Some(b) => load16(b),
            None => load16(y.add(t * y_stride)),
        };
    }
    macro_rules! input {
        ($k:expr) => {{
            let k = $k;
            let w0 = _mm256_loadu_ps(tile.w.add(k * F32_PANEL));
            let w1 = _mm256_loadu_ps(tile.w.add(k * F32_PANEL + 8));
            for t in 0..MR {
                let a = _mm256_broadcast_ss(&*tile.x.add(t * tile.x_stride + k));
                acc[t][0] = _mm256_fmadd_ps(a, w0, acc[t][0]);
                acc[t][1] = _mm256_fmadd_ps(a, w1, acc[t][1]);
            }
        }};
    }
    // Four inputs a step, each step pulling one line of the next block towards L2.
    let steps = tile.kc / 4;
    for q in 0..steps {
        _mm_prefetch::<_MM_HINT_T1>(tile.prefetch.add(q * F32_PANEL) as *const i8);
        for u in 0..4 {
            input!(4 * q + u);
        }
    }
    for k in 4 * steps..tile.kc {
        input!(k);
    }
    for t in 0..MR {
        let out = y.add(t * y_stride);
        if full {
            _mm256_storeu_ps(out, acc[t][0]);
            _mm256_storeu_ps(out.add(8), acc[t][1]);
        } else {
            let mut line = [0.0f32; F32_PANEL];
            _mm256_storeu_ps(line.as_mut_ptr(), acc[t][0]);
            _mm256_storeu_ps(line.as_mut_ptr().add(8), acc[t][1]);
            std::slice::from_raw_parts_mut(out, tile.width).copy_from_slice(&line[..tile.width]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 - 1001.0) / 1001.0)
            .collect()
    }

    /// `y = x Wᵀ + b` in f64, the plain definition.
    fn reference(w: &[f32], b: &[f32], x: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
        let mut y = vec![0.0; n * rows];
        for t in 0..n {
            for r in 0..rows {
                let dot: f64 = (0..cols)
                    .map(|k| x[t * cols + k] as f64 * w[r * cols + k] as f64)
                    .sum();
                y[t * rows + r] = (dot + b[r] as f64) as f32;
            }
        }
        y
    }

    #[test]
    fn packed_gemm_matches_the_definition_on_every_edge() {
        // Tokens of every tile remainder, outputs with a partial last panel, inputs in one and in several blocks
        // (uneven: 800 = 3 × 267 - 1), tokens in two chunks.
        for &(n, rows, cols) in &[
            (1, 16, 8),
            (5, 3, 7),
            (6, 32, 384),
            (7, 40, 385),
            (13, 48, 800),
            (64, 17, 1536),
            (100, 20, 500),
        ] {
            let (w, b, x) = (values(rows * cols, 1), values(rows, 2), values(n * cols, 3));
            let packed = PackedF32::new(&w, rows, cols);
            assert_eq!(packed.row(rows - 1), w[(rows - 1) * cols..]);
            let want = reference(&w, &b, &x, n, rows, cols);
            let mut y = vec![f32::NAN; n * rows];
            // SAFETY: x is [n, cols], y is [n, rows], every panel in range.
            unsafe { packed.affine(&b, x.as_ptr(), n, y.as_mut_ptr(), 0..packed.panel_count()) };
            let mut plain = vec![f32::NAN; n * rows];
            for t in (0..n).step_by(F32_TOKENS) {
                for p in 0..packed.panel_count() {
                    let block = block_len(cols);
                    for k0 in (0..cols).step_by(block) {
                        let tile = Tile {
                            kc: block.min(cols - k0),
                            x: x[t * cols + k0..].as_ptr(),
                            x_stride: cols,
                            w: packed.panels[(p * cols + k0) * F32_PANEL..].as_ptr(),
                            width: F32_PANEL.min(rows - p * F32_PANEL),
                            bias: (k0 == 0).then(|| b[p * F32_PANEL..].as_ptr()),
                            prefetch: std::ptr::null(),
                        };
                        // SAFETY: the tile lies inside x, the panels and plain.
                        unsafe {
                            kernel_plain(
                                F32_TOKENS.min(n - t),
                                tile,
                                plain[t * rows + p * F32_PANEL..].as_mut_ptr(),
                                rows,
                            )
                        };
                    }
                }
            }
            // f32 rounding of a sum of `cols` terms, relative to its size.
            let tolerance = |want: f32| 1e-6 * cols as f32 * want.abs().max(1.0);
            for (i, ((&got, &plain), &want)) in y.iter().zip(&plain).zip(&want).enumerate() {
                assert!(
                    (got - want).abs() <= tolerance(want),
                    "[{n}, {rows}, {cols}] output {i}: {got} against {want}"
                );
                // The AVX2 lanes add in the plain loop's order with the same fused multiply-adds: equal bits.
                assert_eq!(
                    got.to_bits(),
                    plain.to_bits(),
                    "[{n}, {rows}, {cols}] output {i}"
                );
            }
        }
    }

    #[test]
    fn a_layer_without_inputs_gives_its_bias() {
        let (n, rows) = (7, 20);
        let b = values(rows, 8);
        let packed = PackedF32::new(&[], rows, 0);
        let mut y = vec![f32::NAN; n * rows];
        // SAFETY: x holds n · 0 values, y is [n, rows].
        unsafe { packed.affine(&b, [].as_ptr(), n, y.as_mut_ptr(), 0..packed.panel_count()) };
        for t in 0..n {
            assert_eq!(y[t * rows..(t + 1) * rows], b[..], "token {t}");
        }
    }

    #[test]
    fn a_share_of_panels_writes_only_its_columns() {
        let (n, rows, cols) = (9, 64, 40);
        let (w, b, x) = (values(rows * cols, 4), values(rows, 5), values(n * cols, 6));
        let packed = PackedF32::new(&w, rows, cols);
        let want = reference(&w, &b, &x, n, rows, cols);
        let mut y = vec![f32::NAN; n * rows];
        // SAFETY: as above; panels 1..3 are columns 16..48.
        unsafe { packed.affine(&b, x.as_ptr(), n, y.as_mut_ptr(), 1..3) };
        for t in 0..n {
            for r in 0..rows {
                let got = y[t * rows + r];
                if (16..48).contains(&r) {
                    assert!(
                        (got - want[t * rows + r]).abs() < 1e-4,
                        "token {t}, output {r}"
                    );
                } else {
                    assert!(got.is_nan(), "token {t}, output {r} was written");
                }
            }
        }
    }
}
