//! [`IntLinear`]: a linear layer whose weight codes run as one integer GEMM. Unlike the llama.cpp-style blocks
//! of [`super::QuantLinear`], whose every 32-wide block carries its own scale and so costs a conversion and
//! two float operations per block pair, the scale here is constant along the whole reduction:
//!
//! - the weights keep their symmetric codes (2 to 8 bits, as `i8`) with one scale per output row (per tensor,
//!   per channel, per head's rows of Q/K/V); a matrix grouped by input columns (O's heads) has its column
//!   scales folded into the activations before they are quantized;
//! - the activations are quantized per token to unsigned 8 bits with a zero point (`x ≈ s · (q − z)`, the
//!   range stretched to include 0), as ONNX Runtime's dynamic quantization does per tensor;
//! - `y = s_x · s_w · (Σ_k q_x q_w − z · Σ_k q_w) + b`: the integer sum is exact in i32 on every path
//!   (AVX-512 VNNI, AVX-VNNI, AVX2, plain loops), so every CPU gives bit-identical outputs (tested).
//!
//! The weights are packed once into panels of 16 rows (`vpdpbusd` layout: 4 consecutive inputs of one row per
//! 32-bit lane); a kernel keeps a tile of tokens × panels in registers over the whole reduction. On AVX2 the
//! panels are also kept (from the first GEMM there on) widened to i16 in input pairs (`vpmaddwd` layout, twice
//! the bytes) and the activations are quantized straight to i16, so the tile does no widening of its own; a
//! matrix whose codes are all within ±64 (7 bits or fewer) multiplies bytes with `vpmaddubsw` instead, exactly.

// The tile loops index rows, tokens and accumulators by the same `t` and `j`; indices read better there.
#![allow(clippy::needless_range_loop)]

use crate::error::{QuantError, Result};
use crate::format::QuantizedTensor;

use super::activations::Groups;
pub use super::activations::{quantize_token, TokenCodes};
use super::isa::Isa;
use super::shared::SharedOut;
use super::simd::{multiversion, Tier};
pub use super::tile::{
    narrow_steps, pair_panels, tile_scalar, Tile, TileAcc, WideTile, MAX_PANELS, MAX_TOKENS, PANEL,
};

thread_local! {
    /// Set while this thread runs [`serial`].
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Each thread's activation codes, reused across calls.
    static ACTS: std::cell::RefCell<TokenCodes> = std::cell::RefCell::default();
}

/// Runs `f` on this thread's activation-code buffer (a re-entrant call, none today, gets a fresh one instead of
/// a borrow panic).
fn with_acts<R>(f: impl FnOnce(&mut TokenCodes) -> R) -> R {
    ACTS.with(|acts| match acts.try_borrow_mut() {
        Ok(mut a) => f(&mut a),
        Err(_) => f(&mut TokenCodes::default()),
    })
}

/// Runs `f` with every [`IntLinear`] GEMM it calls on this thread kept on this thread (for callers that are
/// already one task per thread, like the encoder's groups of sequences).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.replace(true);
    let out = f();
    SERIAL.set(before);
    out
}

/// Whether this thread is inside [`serial`] (its GEMMs must not spread over the thread pool).
pub fn is_serial() -> bool {
    SERIAL.get()
}

/// One tile on `isa` (which must be one this CPU runs: [`Isa::available`]). AVX2 reads `wide` (the same tile
/// widened: [`WideTile`]) unless `steps` is set (codes within ±64: [`narrow_steps`]), then `tile` as every other
/// ISA does.
fn run_tile(isa: Isa, tile: Tile<'_>, wide: WideTile<'_>, steps: usize, acc: &mut TileAcc) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` comes from `Isa::available` (its features were detected at run time) and the tile is in
        // bounds (checked).
        Isa::Avx512Vnni if tile.in_bounds() => unsafe {
            super::gemm_avx::tile_avx512_vnni(tile, acc)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::AvxVnni if tile.in_bounds() => unsafe { super::gemm_avx::tile_avx_vnni(tile, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 if steps > 0 && tile.in_bounds() => unsafe {
            super::gemm_avx::tile_avx2_narrow(tile, steps, acc)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 if steps == 0 && wide.in_bounds() => unsafe {
            super::gemm_avx::tile_avx2(wide, acc)
        },
        Isa::Scalar if tile.in_bounds() => tile_scalar(tile, acc),
        _ => panic!("int_gemm: a {} tile outside its slices", isa.name()),
    }
}

multiversion! {
    /// One token's outputs from its integer sums: `y = (sum − zero · row_sum) · (scale · row_scale) + bias`.
    #[allow(clippy::too_many_arguments)]
    fn dequantize_sums(
        sums: &[i32],
        zero: i32,
        scale: f32,
        row_sums: &[i32],
        row_scale: &[f32],
        bias: &[f32],
        out: &mut [f32]
    ) {
        let n = out.len();
        let (sums, row_sums, row_scale, bias) = (&sums[..n], &row_sums[..n], &row_scale[..n], &bias[..n]);
        for i in 0..n {
            out[i] = (sums[i] - zero * row_sums[i]) as f32 * (scale * row_scale[i]) + bias[i];
        }
    }
}

/// A `[rows = out, cols = in]` matrix of integer codes with one scale per row (and optionally one per column,
/// folded into the activations), computing `y = x Wᵀ + b` as one integer GEMM.
#[derive(Clone, Debug)]
pub struct IntLinear {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Bits of the weight codes (for reports).
    pub bits: u32,
    /// The largest weight code's magnitude (AVX2 multiplies codes within ±64 as bytes: [`narrow_steps`]).
    max_code: u32,
    /// Groups of 4 inputs (`cols` rounded up).
    k4: usize,
    /// `rows.div_ceil(16)` panels of `k4 · 64` codes.
    packed: Vec<i8>,
    /// `packed` re-packed for the AVX2 tile ([`pair_panels`]), made by its first GEMM (never for a matrix only
    /// stacked into another, like Q, K and V, nor on CPUs that do not run that tile).
    pairs: std::sync::OnceLock<Vec<i16>>,
    /// `[rows]`: each row's weight scale.
    row_scale: Vec<f32>,
    /// `[cols]`: each input column's weight scale, multiplied into the activations (O's per-head groups).
    col_scale: Option<Vec<f32>>,
    /// `[rows]`: each row's sum of codes (the zero point's correction).
    row_sums: Vec<i32>,
    /// `[rows]`.
    bias: Vec<f32>,
}

impl IntLinear {
    /// Whether `q` runs here: symmetric codes of at most 8 bits whose groups span whole rows (one scale per row
    /// or per row band) or whole columns (one scale per column band).
    pub fn supports(q: &QuantizedTensor) -> bool {
        let [rows, cols] = q.shape;
        q.spec.symmetric && q.spec.bits <= 8 && (q.group[1] == cols || q.group[0] == rows)
    }

    /// The scales this kernel applies for `q` (which it [`supports`](Self::supports)): one per output row when the
    /// groups span whole rows (`(row_scale, None)`), else one per input column, folded into the activations
    /// before they are quantized (`(vec![1.0; rows], Some(col_scale))`).
    pub fn scales(q: &QuantizedTensor) -> (Vec<f32>, Option<Vec<f32>>) {
        let [rows, cols] = q.shape;
        if q.group[1] == cols {
            let rs = (0..rows)
                .map(|r| q.scales[q.group_of(r, 0)].to_f32())
                .collect();
            (rs, None)
        } else {
            let cs = (0..cols)
                .map(|c| q.scales[q.group_of(0, c)].to_f32())
                .collect();
            (vec![1.0; rows], Some(cs))
        }
    }

    /// Packs a quantized matrix; `bias` is `[rows]`.
    pub fn from_quantized(q: &QuantizedTensor, bias: Vec<f32>) -> Result<Self> {
        let [rows, cols] = q.shape;
        let shape_error = |message: String| QuantError::Shape {
            op: "IntLinear::from_quantized",
            message,
        };
        if !Self::supports(q) {
            return Err(shape_error(format!(
                "needs symmetric codes of at most 8 bits grouped by whole rows or whole columns; found \
                 {}-bit {} groups of {:?} in a [{rows}, {cols}] matrix",
                q.spec.bits,
                if q.spec.symmetric { "symmetric" } else { "asymmetric" },
                q.group
            )));
        }
        if bias.len() != rows || rows == 0 || cols == 0 {
            return Err(shape_error(format!(
                "a bias of {} values for a [{rows}, {cols}] matrix",
                bias.len()
            )));
        }
        let codes: Vec<i8> = q.signed_codes().iter().map(|c| *c as i8).collect();
        let (row_scale, col_scale) = Self::scales(q);
        Ok(Self::pack(
            &codes,
            rows,
            cols,
            q.spec.bits,
            row_scale,
            col_scale,
            bias,
        ))
    }

    /// Packs row-major codes `[rows, cols]` into panels.
    fn pack(
        codes: &[i8],
        rows: usize,
        cols: usize,
        bits: u32,
        row_scale: Vec<f32>,
        col_scale: Option<Vec<f32>>,
        bias: Vec<f32>,
    ) -> Self {
        let k4 = cols.div_ceil(4);
        let panels = rows.div_ceil(PANEL);
        let mut packed = vec![0i8; panels * k4 * 4 * PANEL];
        for r in 0..rows {
            let (p, j) = (r / PANEL, r % PANEL);
            for c in 0..cols {
                let (kk, i) = (c / 4, c % 4);
                packed[((p * k4 + kk) * PANEL + j) * 4 + i] = codes[r * cols + c];
            }
        }
        let row_sums = (0..rows)
            .map(|r| {
                codes[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|c| *c as i32)
                    .sum()
            })
            .collect();
        let max_code = codes
            .iter()
            .map(|c| c.unsigned_abs() as u32)
            .max()
            .unwrap_or(0);
        Self {
            rows,
            cols,
            bits,
            max_code,
            k4,
            packed,
            pairs: Default::default(),
            row_scale,
            col_scale,
            row_sums,
            bias,
        }
    }

    /// Whether a GEMM on `isa` reads i16 operands: AVX2, unless every code is within ±64 (then it multiplies
    /// bytes with `vpmaddubsw`, exactly).
    fn reads_wide(&self, isa: Isa) -> bool {
        isa == Isa::Avx2 && narrow_steps(self.max_code) == 0
    }

    /// The weights as the AVX2 tile reads them.
    fn pairs(&self) -> &[i16] {
        self.pairs.get_or_init(|| pair_panels(&self.packed))
    }

    /// The matrices one under the other (Q, K and V as one GEMM over one quantization of their input), when
    /// each has row scales only, the same inputs and whole panels of rows; `None` otherwise.
    pub fn stack(parts: &[&IntLinear]) -> Option<IntLinear> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.col_scale.is_some() || p.cols != first.cols || !p.rows.is_multiple_of(PANEL))
        {
            return None;
        }
        let cat = |f: &dyn Fn(&IntLinear) -> &[f32]| {
            parts.iter().flat_map(|p| f(p).iter().copied()).collect()
        };
        Some(IntLinear {
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            bits: parts.iter().map(|p| p.bits).max().unwrap_or(8),
            max_code: parts.iter().map(|p| p.max_code).max().unwrap_or(0),
            k4: first.k4,
            packed: parts
                .iter()
                .flat_map(|p| p.packed.iter().copied())
                .collect(),
            row_scale: cat(&|p| &p.row_scale),
            col_scale: None,
            row_sums: parts
                .iter()
                .flat_map(|p| p.row_sums.iter().copied())
                .collect(),
            bias: cat(&|p| &p.bias),
            pairs: Default::default(),
        })
    }

    /// The weights as f32, row-major (`code · row scale · column scale`).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for r in 0..self.rows {
            let (p, j) = (r / PANEL, r % PANEL);
            for c in 0..self.cols {
                let code = self.packed[((p * self.k4 + c / 4) * PANEL + j) * 4 + c % 4];
                let cs = self.col_scale.as_ref().map_or(1.0, |s| s[c]);
                out[r * self.cols + c] = code as f32 * self.row_scale[r] * cs;
            }
        }
        out
    }

    /// Bytes of the packed codes in memory (one byte each, whatever `bits`).
    pub fn weight_bytes(&self) -> usize {
        self.packed.len()
    }

    /// Quantizes `x: [n, cols]` per token into groups of `group` interleaved tokens (threaded over groups).
    pub fn quantize_input(&self, x: &[f32], n: usize, group: usize) -> Result<TokenCodes> {
        let mut acts = TokenCodes::default();
        self.quantize_into(x, n, group, false, &mut acts)?;
        Ok(acts)
    }

    /// [`IntLinear::quantize_input`] into `acts`, reusing its buffers: the codes as bytes, or as i16 in `wide`
    /// (for the AVX2 tile) when `wide` is set.
    fn quantize_into(
        &self,
        x: &[f32],
        n: usize,
        group: usize,
        wide: bool,
        acts: &mut TokenCodes,
    ) -> Result<()> {
        if x.len() != n * self.cols || group == 0 {
            return Err(QuantError::Shape {
                op: "IntLinear::forward",
                message: format!(
                    "input has {} values, expected [{n}, {}] (groups of {group} tokens)",
                    x.len(),
                    self.cols
                ),
            });
        }
        acts.scale.resize(n, 0.0);
        acts.zero.resize(n, 0);
        let parallel = n >= 16 && !SERIAL.get();
        let groups = Groups {
            x,
            cols: self.cols,
            k4: self.k4,
            group,
            col_scale: self.col_scale.as_deref(),
        };
        if wide {
            acts.codes.clear();
            groups.quantize(&mut acts.wide, &mut acts.scale, &mut acts.zero, parallel);
        } else {
            acts.wide.clear();
            groups.quantize(&mut acts.codes, &mut acts.scale, &mut acts.zero, parallel);
        }
        acts.group = group;
        acts.k4 = self.k4;
        Ok(())
    }

    /// `y = x Wᵀ + b` for `x: [n, in]` → `[n, out]` on the fastest kernel this CPU runs.
    ///
    /// # Shapes
    /// - `x`: `[n, cols]`, row-major; returns `[n, rows]`.
    pub fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.forward_on(Isa::best(), x, n)
    }

    /// [`IntLinear::forward`] on a given ISA; an ISA this CPU lacks is an error.
    pub fn forward_on(&self, isa: Isa, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let mut y = vec![];
        self.forward_into(isa, x, n, &mut y)?;
        Ok(y)
    }

    /// [`IntLinear::forward_on`] into `y` (resized to `[n, rows]`; its old values are all overwritten), the
    /// activation codes in a per-thread buffer: reusing buffers saves the page faults of fresh multi-megabyte
    /// vectors on every call.
    pub fn forward_into(&self, isa: Isa, x: &[f32], n: usize, y: &mut Vec<f32>) -> Result<()> {
        if !Isa::detected().contains(&isa) {
            return Err(QuantError::Shape {
                op: "IntLinear::forward_on",
                message: format!("this CPU does not run {}", isa.name()),
            });
        }
        with_acts(|acts| {
            self.quantize_into(x, n, isa.tile().0, self.reads_wide(isa), acts)?;
            y.resize(n * self.rows, 0.0);
            self.gemm(isa, acts, n, y);
            Ok(())
        })
    }

    /// Member `member` of `members` threads' share of `y = x Wᵀ + b`: its panels of rows (whole register tiles),
    /// written into their columns of `out: [n, rows]`, on this thread alone. Each member quantizes the
    /// activations itself (a small fraction of the GEMM's work), so the members need not wait for each other.
    pub fn forward_share(
        &self,
        isa: Isa,
        x: &[f32],
        n: usize,
        out: &SharedOut,
        member: usize,
        members: usize,
    ) -> Result<()> {
        with_acts(|acts| {
            serial(|| self.quantize_into(x, n, isa.tile().0, self.reads_wide(isa), acts))?;
            let panels = self.rows.div_ceil(PANEL);
            let per = panels
                .div_ceil(members.max(1))
                .next_multiple_of(isa.tile().1);
            let p0 = (member * per).min(panels);
            let p1 = (p0 + per).min(panels);
            if n > 0 && p0 < p1 {
                self.panels_into(isa, acts, n, p0..p1, out);
            }
            Ok(())
        })
    }

    /// The GEMM of quantized activations into `y: [n, rows]`, threaded over panels.
    fn gemm(&self, isa: Isa, acts: &TokenCodes, n: usize, y: &mut [f32]) {
        if n == 0 {
            return;
        }
        let panels = self.rows.div_ceil(PANEL);
        let (_, np) = isa.tile();
        // Whole register tiles of panels per thread; one thread when the layer is small, or inside `serial`
        // (the encoder's groups of sequences: already one per thread).
        const MIN_MACS_PER_TASK: usize = 1 << 20;
        let threads = match SERIAL.get() {
            true => 1,
            false => rayon::current_num_threads(),
        };
        let tasks = threads
            .min(n * self.rows * self.cols / MIN_MACS_PER_TASK)
            .clamp(1, panels.div_ceil(np));
        let per_task = panels.div_ceil(tasks).next_multiple_of(np);
        let out = SharedOut::new(y);
        let run = |task: usize| {
            let p0 = task * per_task;
            let p1 = (p0 + per_task).min(panels);
            if p0 < p1 {
                self.panels_into(isa, acts, n, p0..p1, &out);
            }
        };
        if tasks == 1 {
            run(0);
        } else {
            // The calling thread takes the first share and rayon's workers the others.
            let run = &run;
            rayon::in_place_scope(|scope| {
                for task in 1..tasks {
                    scope.spawn(move |_| run(task));
                }
                run(0);
            });
        }
    }

    /// Panels `panels` against every token, written into their columns of `out: [n, rows]`.
    fn panels_into(
        &self,
        isa: Isa,
        acts: &TokenCodes,
        n: usize,
        panels: std::ops::Range<usize>,
        out: &SharedOut,
    ) {
        let (mr, np) = isa.tile();
        let panel_len = self.k4 * 4 * PANEL;
        let wide = self.reads_wide(isa);
        let steps = match isa {
            Isa::Avx2 => narrow_steps(self.max_code),
            _ => 0,
        };
        let tier = Tier::best();
        // Token blocks of about 128 (whole groups), so a block's activation codes stay in the L2 cache across its
        // panels.
        let token_block = mr * (128 / mr).max(1);
        let mut acc: TileAcc = [[0; PANEL * MAX_PANELS]; MAX_TOKENS];
        for t_block in (0..n).step_by(token_block) {
            let t_end = (t_block + token_block).min(n);
            let mut p = panels.start;
            while p < panels.end {
                let tile_np = np.min(panels.end - p);
                let mut t0 = t_block;
                while t0 < t_end {
                    let tile_mr = mr.min(t_end - t0);
                    let panels = p * panel_len..(p + tile_np) * panel_len;
                    // The operands of the tile this ISA reads; the other one is empty.
                    let (x, w, x16, w16): (&[u8], &[i8], &[i16], &[i16]) = match wide {
                        true => (&[], &[], acts.wide_group_of(t0), &self.pairs()[panels]),
                        false => (acts.group_of(t0), &self.packed[panels], &[], &[]),
                    };
                    let tile = Tile {
                        x,
                        group: acts.group,
                        mr: tile_mr,
                        w,
                        np: tile_np,
                        k4: self.k4,
                    };
                    let wide_tile = WideTile {
                        x: x16,
                        w: w16,
                        ..WideTile::from(tile)
                    };
                    run_tile(isa, tile, wide_tile, steps, &mut acc);
                    let r0 = p * PANEL;
                    let r1 = ((p + tile_np) * PANEL).min(self.rows);
                    for t in 0..tile_mr {
                        let token = t0 + t;
                        // SAFETY: rows r0..r1 of token `token` belong to this task's panels alone.
                        let row = unsafe { out.slice(token * self.rows + r0, r1 - r0) };
                        dequantize_sums(
                            tier,
                            &acc[t][..r1 - r0],
                            acts.zero[token],
                            acts.scale[token],
                            &self.row_sums[r0..r1],
                            &self.row_scale[r0..r1],
                            &self.bias[r0..r1],
                            row,
                        );
                    }
                    t0 += tile_mr;
                }
                p += tile_np;
            }
        }
    }
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

    fn quantized(
        rows: usize,
        cols: usize,
        bits: u32,
        head: Option<(HeadAxis, usize)>,
    ) -> QuantizedTensor {
        let granularity = if head.is_some() {
            Granularity::Head
        } else {
            Granularity::Channel
        };
        let spec = QuantSpec::symmetric(bits, granularity);
        QuantizedTensor::quantize("w", &gaussian(rows * cols, 7), [rows, cols], spec, head).unwrap()
    }

    /// Every ISA this CPU runs gives the reference's integer sums exactly, on every tile shape.
    #[test]
    fn every_isa_matches_the_reference_tile() {
        let mut rng = SeededRng::new(3);
        // Weight codes over the whole byte, and within ±64, ±8 and ±7 (the narrow AVX2 tile's cases: one
        // `vpmaddubsw` exact, its i16 sums added over 1, 8 and 9 input groups); activation codes over 0..=255,
        // extremes included.
        for max_code in [128u32, 64, 8, 7] {
            for (k4, mr, np) in [
                (1, 1, 1),
                (3, 5, 2),
                (96, 8, 2),
                (7, 6, 1),
                (384, 2, 1),
                (5, 8, 1),
                (17, 6, 1),
            ] {
                let group = mr + 1;
                let x: Vec<u8> = (0..k4 * group * 4)
                    .map(|i| match i % 7 {
                        0 => 255,
                        _ => (rng.next_u64() % 256) as u8,
                    })
                    .collect();
                let span = 2 * max_code as u64 + 1;
                let w: Vec<i8> = (0..np * k4 * 64)
                    .map(|i| match i % 5 {
                        0 => -(max_code.min(128) as i32) as i8,
                        1 => max_code.min(127) as i8,
                        _ => ((rng.next_u64() % span) as i64 - max_code as i64).clamp(-128, 127)
                            as i8,
                    })
                    .collect();
                let tile = Tile {
                    x: &x,
                    group,
                    mr,
                    w: &w,
                    np,
                    k4,
                };
                let (x16, w16) = (
                    x.iter().map(|c| *c as i16).collect::<Vec<_>>(),
                    pair_panels(&w),
                );
                let wide = WideTile {
                    x: &x16,
                    w: &w16,
                    ..WideTile::from(tile)
                };
                let mut want = [[0; PANEL * MAX_PANELS]; MAX_TOKENS];
                tile_scalar(tile, &mut want);
                for isa in Isa::available() {
                    // Each ISA's own register tile bounds what it is handed.
                    let (imr, inp) = isa.tile();
                    if mr > imr || np > inp {
                        continue;
                    }
                    // AVX2 both ways when the codes allow bytes: i16 pairs and narrow.
                    let steps = match isa {
                        Isa::Avx2 => vec![0, narrow_steps(max_code)],
                        _ => vec![0],
                    };
                    for steps in steps {
                        let mut got = [[0; PANEL * MAX_PANELS]; MAX_TOKENS];
                        run_tile(isa, tile, wide, steps, &mut got);
                        for t in 0..mr {
                            assert_eq!(
                                got[t][..np * PANEL],
                                want[t][..np * PANEL],
                                "{isa:?} codes ±{max_code} steps {steps} k4 {k4} mr {mr} np {np}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Exactly as many input groups as cannot overflow an i16 lane: 2 · 255 · max · steps ≤ 32767 < that with
    /// one more group.
    #[test]
    fn narrow_steps_are_the_most_that_cannot_overflow() {
        assert_eq!(narrow_steps(65), 0);
        assert_eq!(narrow_steps(128), 0);
        for max in 1..=64u32 {
            let steps = narrow_steps(max);
            assert!(steps >= 1);
            assert!(2 * 255 * max as usize * steps <= 32767, "{max}");
            assert!(2 * 255 * max as usize * (steps + 1) > 32767, "{max}");
        }
        assert_eq!(narrow_steps(7), 9);
        assert_eq!(narrow_steps(8), 8);
        assert_eq!(narrow_steps(64), 1);
    }

    /// The whole layer: identical outputs on every ISA, for row-grouped and column-grouped matrices of every
    /// width, odd sizes included; and close to exact f32 arithmetic on the dequantized weights.
    #[test]
    fn forward_is_identical_on_every_isa_and_close_to_f32() {
        for (rows, cols, n, bits, head) in [
            (384, 384, 64, 4, Some((HeadAxis::Rows, 12))),
            (384, 384, 33, 8, Some((HeadAxis::Columns, 12))),
            (40, 1536, 5, 8, None),
            (17, 22, 3, 3, None),
            (64, 96, 1, 2, Some((HeadAxis::Columns, 3))),
        ] {
            let q = quantized(rows, cols, bits, head);
            let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.01).collect();
            let lin = IntLinear::from_quantized(&q, bias.clone()).unwrap();
            assert_eq!(lin.dequantize(), q.dequantize());
            let x = gaussian(n * cols, 11);
            let reference = lin.forward_on(Isa::Scalar, &x, n).unwrap();
            for isa in Isa::available() {
                assert_eq!(
                    lin.forward_on(isa, &x, n).unwrap(),
                    reference,
                    "{isa:?} [{rows}, {cols}] × {n}"
                );
            }
            // Against f64 on the dequantized weights: only the activations' 8-bit rounding differs, at most
            // half a step (range / 255 / 2) per input times the row's weights.
            let w = q.dequantize();
            for t in 0..n {
                let xs = &x[t * cols..(t + 1) * cols];
                let cs: Vec<f32> = match &lin.col_scale {
                    Some(c) => c.clone(),
                    None => vec![1.0; cols],
                };
                let scaled: Vec<f32> = xs.iter().zip(&cs).map(|(a, b)| a * b).collect();
                let (lo, hi) = scaled
                    .iter()
                    .fold((0.0f32, 0.0f32), |(l, h), v| (l.min(*v), h.max(*v)));
                let step = (hi - lo) / 255.0;
                for r in 0..rows {
                    let exact: f64 = (0..cols)
                        .map(|c| xs[c] as f64 * w[r * cols + c] as f64)
                        .sum::<f64>()
                        + bias[r] as f64;
                    let bound: f64 = (0..cols)
                        .map(|c| (w[r * cols + c] / cs[c]).abs() as f64)
                        .sum::<f64>()
                        * step as f64
                        * 0.5
                        + 1e-4 * (1.0 + exact.abs());
                    let got = reference[t * rows + r] as f64;
                    assert!(
                        (got - exact).abs() <= bound,
                        "[{rows}, {cols}] token {t} row {r}: {got} vs {exact} (bound {bound})"
                    );
                }
            }
        }
    }

    /// A hand-computed case: x = [1, −0.5, 0.2, 0] (range [−0.5, 1]: scale 1.5/255, 1/scale = 170, zero 85),
    /// w = 2 · [1, 2, 3, 4], bias 0.5.
    #[test]
    fn hand_computed_token() {
        let x = [1.0, -0.5, 0.2, 0.0];
        let mut codes = [0u8; 4];
        let (s, z) = quantize_token(Tier::Plain, &x, None, &mut codes);
        assert_eq!(z, 85);
        assert_eq!(s, 1.5 / 255.0);
        // 170 + 85 = 255; −85 + 85 = 0; 34 + 85 = 119; 0 + 85.
        assert_eq!(codes, [255, 0, 119, 85]);
        let lin = IntLinear::pack(&[1, 2, 3, 4], 1, 4, 8, vec![2.0], None, vec![0.5]);
        let y = lin.forward_on(Isa::Scalar, &x, 1).unwrap();
        // Σ q w = 255 + 0 + 357 + 340 = 952; − 85 · Σ w (10) = 102; · scale · 2 + 0.5.
        assert_eq!(y, vec![102.0f32 * (s * 2.0) + 0.5]);
        // Exactly 2 · (1 − 1 + 0.6) + 0.5 = 1.7.
        assert!((y[0] - 1.7).abs() < 1e-5);
    }

    /// Q, K and V stacked give the three outputs side by side, to the bit.
    #[test]
    fn stacked_matrices_give_their_outputs_side_by_side() {
        let parts: Vec<IntLinear> = (0..3)
            .map(|i| {
                let q = quantized(32, 64, [2, 4, 8][i], Some((HeadAxis::Rows, 2)));
                IntLinear::from_quantized(&q, vec![i as f32; 32]).unwrap()
            })
            .collect();
        let stacked = IntLinear::stack(&parts.iter().collect::<Vec<_>>()).unwrap();
        let x = gaussian(5 * 64, 3);
        let y = stacked.forward(&x, 5).unwrap();
        for (i, p) in parts.iter().enumerate() {
            let yi = p.forward(&x, 5).unwrap();
            for t in 0..5 {
                assert_eq!(
                    y[t * 96 + i * 32..t * 96 + (i + 1) * 32],
                    yi[t * 32..(t + 1) * 32]
                );
            }
        }
        let o = IntLinear::from_quantized(
            &quantized(64, 64, 4, Some((HeadAxis::Columns, 2))),
            vec![0.0; 64],
        )
        .unwrap();
        assert!(IntLinear::stack(&[&parts[0], &o]).is_none());
    }

    #[test]
    fn unsupported_and_bad_inputs_are_errors() {
        let spec = QuantSpec::symmetric(4, Granularity::Block(32));
        let q =
            QuantizedTensor::quantize("w", &gaussian(64 * 64, 1), [64, 64], spec, None).unwrap();
        assert!(!IntLinear::supports(&q));
        assert!(IntLinear::from_quantized(&q, vec![0.0; 64]).is_err());
        let q = quantized(16, 32, 8, None);
        assert!(IntLinear::from_quantized(&q, vec![0.0; 3]).is_err());
        let lin = IntLinear::from_quantized(&q, vec![0.0; 16]).unwrap();
        assert!(lin.forward(&[0.0; 31], 1).is_err());
        // A token of zeros (or non-finite range) quantizes to zeros, never NaN.
        let y = lin.forward(&[0.0; 64], 2).unwrap();
        assert!(y.iter().all(|v| *v == 0.0));
    }
}
