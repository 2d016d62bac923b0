//! [`Linear`]: one linear layer of [`super::QuantEncoder`] on the fastest kernel its format allows (the integer
//! GEMM, llama.cpp-style blocks, or f32 through the `gemm` crate), whole or as one thread's share.

use crate::error::{QuantError, Result};
use crate::kernels::{self, BlockQ4_0, BlockQ8_0, IntLinear, Isa, QuantLinear, SharedOut};

/// One linear layer, on the fastest kernel its format allows.
#[derive(Clone, Debug)]
pub enum Linear {
    /// Symmetric codes of 2 to 8 bits with one scale per row or per column band: one integer GEMM against
    /// per-token 8-bit activations.
    Int(IntLinear),
    /// 8-bit blocks.
    Q8(QuantLinear<BlockQ8_0>),
    /// 4-bit blocks.
    Q4(QuantLinear<BlockQ4_0>),
    /// f32 weights (full precision, or dequantized) with bias: one `gemm` call (the crate Burn's CPU backends
    /// use), the bias written into the output first.
    F32 {
        /// `[in, out]`, row-major: the weight transposed once at load, so the GEMM reads it row by row.
        weight_t: Vec<f32>,
        /// `[out]`.
        bias: Vec<f32>,
        /// Output features.
        rows: usize,
        /// Input features.
        cols: usize,
    },
}

impl Linear {
    /// Output features.
    pub fn rows(&self) -> usize {
        match self {
            Self::Int(l) => l.rows,
            Self::Q8(l) => l.rows,
            Self::Q4(l) => l.rows,
            Self::F32 { rows, .. } => *rows,
        }
    }

    /// `y = x Wᵀ + b`, `x: [n, in]` → `[n, out]`.
    pub fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        match self {
            Self::Int(l) => l.forward(x, n),
            Self::Q8(l) => l.forward(x, n),
            Self::Q4(l) => l.forward(x, n),
            Self::F32 { .. } => {
                let mut y = vec![];
                self.forward_into(x, n, &mut y)?;
                Ok(y)
            }
        }
    }

    /// An f32 linear layer from a row-major `[rows = out, cols = in]` weight.
    pub fn f32(weight: &[f32], bias: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        if weight.len() != rows * cols || bias.len() != rows {
            return Err(QuantError::Shape {
                op: "Linear::f32",
                message: format!(
                    "a weight of {} values and a bias of {} for [{rows}, {cols}]",
                    weight.len(),
                    bias.len()
                ),
            });
        }
        let mut weight_t = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                weight_t[c * rows + r] = weight[r * cols + c];
            }
        }
        Ok(Self::F32 {
            weight_t,
            bias,
            rows,
            cols,
        })
    }

    /// The matrices `parts` (same input width) as one, their outputs side by side: one GEMM instead of several.
    /// Integer matrices with row scales stack into one [`IntLinear`], f32 ones into one f32 matrix; `None` for
    /// any other mix.
    pub fn stack(parts: &[&Linear]) -> Option<Linear> {
        let ints: Option<Vec<&IntLinear>> = parts
            .iter()
            .map(|p| match p {
                Self::Int(l) => Some(l),
                _ => None,
            })
            .collect();
        if let Some(ints) = ints {
            return IntLinear::stack(&ints).map(Self::Int);
        }
        let floats: Option<Vec<(&[f32], &[f32], usize, usize)>> = parts
            .iter()
            .map(|p| match p {
                Self::F32 {
                    weight_t,
                    bias,
                    rows,
                    cols,
                } => Some((weight_t.as_slice(), bias.as_slice(), *rows, *cols)),
                _ => None,
            })
            .collect();
        let floats = floats?;
        let cols = floats.first()?.3;
        if floats.iter().any(|f| f.3 != cols) {
            return None;
        }
        let rows: usize = floats.iter().map(|f| f.2).sum();
        // weight_t is [cols, rows]: each input feature's row holds every part's outputs in turn.
        let mut weight_t = Vec::with_capacity(cols * rows);
        for c in 0..cols {
            for (w, _, r, _) in &floats {
                weight_t.extend_from_slice(&w[c * r..(c + 1) * r]);
            }
        }
        Some(Self::F32 {
            weight_t,
            bias: floats.iter().flat_map(|f| f.1.iter().copied()).collect(),
            rows,
            cols,
        })
    }

    /// [`Linear::forward`] into `y`, reusing its buffer on the integer GEMM.
    pub fn forward_into(&self, x: &[f32], n: usize, y: &mut Vec<f32>) -> Result<()> {
        match self {
            Self::Int(l) => l.forward_into(Isa::best(), x, n, y),
            Self::F32 {
                weight_t,
                bias,
                rows,
                cols,
            } => {
                let (rows, cols) = (*rows, *cols);
                if x.len() != n * cols {
                    return Err(QuantError::Shape {
                        op: "Linear::forward",
                        message: format!("input has {} values, expected [{n}, {cols}]", x.len()),
                    });
                }
                y.resize(n * rows, 0.0);
                if n == 0 {
                    return Ok(());
                }
                let parallelism = if kernels::is_serial() || rayon::current_num_threads() == 1 {
                    gemm::Parallelism::None
                } else {
                    gemm::Parallelism::Rayon(0)
                };
                // SAFETY: y is [n, rows], x is [n, cols] and weight_t is [cols, rows], all row-major and of
                // exactly those lengths (checked above and at construction).
                unsafe {
                    f32_affine_cols(
                        n,
                        (rows, cols),
                        0..rows,
                        x.as_ptr(),
                        (weight_t, bias),
                        y.as_mut_ptr(),
                        parallelism,
                    )
                };
                Ok(())
            }
            _ => {
                *y = self.forward(x, n)?;
                Ok(())
            }
        }
    }

    /// Member `member` of `members` threads' share of `y = x Wᵀ + b` on the calling thread: its columns of an f32
    /// matrix (whole vectors of 16), its panels of rows of an integer one. Other kinds are not run by a team and
    /// do nothing here.
    ///
    /// # Safety
    /// `x` points at `n · cols` values that nobody writes meanwhile; `y` at `n · rows` values whose share no
    /// other thread touches meanwhile (each member of `members` calls this with its own `member`).
    pub(super) unsafe fn forward_share(
        &self,
        x: *const f32,
        n: usize,
        y: *mut f32,
        member: usize,
        members: usize,
    ) -> Result<()> {
        match self {
            Self::Int(l) => l.forward_share(
                Isa::best(),
                std::slice::from_raw_parts(x, n * l.cols),
                n,
                &SharedOut::from_raw(y, n * l.rows),
                member,
                members,
            ),
            Self::F32 {
                weight_t,
                bias,
                rows,
                cols,
            } => {
                let (rows, cols) = (*rows, *cols);
                let chunk = rows.div_ceil(members.max(1)).next_multiple_of(16);
                let j0 = (member * chunk).min(rows);
                let j1 = (j0 + chunk).min(rows);
                if n == 0 || j0 == j1 {
                    return Ok(());
                }
                f32_affine_cols(
                    n,
                    (rows, cols),
                    j0..j1,
                    x,
                    (weight_t, bias),
                    y,
                    gemm::Parallelism::None,
                );
                Ok(())
            }
            Self::Q8(_) | Self::Q4(_) => Ok(()),
        }
    }

    /// The kernel's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Int(l) => match l.bits {
                8 => "int8",
                4 => "int4",
                3 => "int3",
                _ => "int2",
            },
            Self::Q8(_) => "q8_0",
            Self::Q4(_) => "q4_0",
            Self::F32 { .. } => "f32",
        }
    }
}

/// Output columns `out` of `y = x · weight_t + bias`: the bias written into those columns, then one `gemm`
/// call adding the product. `x: [n, cols]`, `weight_t: [cols, rows]`, `y: [n, rows]`, all row-major, `(rows,
/// cols)` given; `bias: [rows]`.
///
/// # Safety
/// `x` and `y` point at `n · cols` and `n · rows` values, `weight_t` holds `cols · rows`, `out` lies in
/// `0..rows`, and nobody else touches columns `out` of `y` meanwhile.
unsafe fn f32_affine_cols(
    n: usize,
    (rows, cols): (usize, usize),
    out: std::ops::Range<usize>,
    x: *const f32,
    (weight_t, bias): (&[f32], &[f32]),
    y: *mut f32,
    parallelism: gemm::Parallelism,
) {
    for t in 0..n {
        std::slice::from_raw_parts_mut(y.add(t * rows + out.start), out.len())
            .copy_from_slice(&bias[out.clone()]);
    }
    gemm::gemm(
        n,
        out.len(),
        cols,
        y.add(out.start),
        1,
        rows as isize,
        true,
        x,
        1,
        cols as isize,
        weight_t.as_ptr().add(out.start),
        1,
        rows as isize,
        1.0f32,
        1.0f32,
        false,
        false,
        false,
        parallelism,
    );
}
