//! [`Linear`]: one linear layer of [`super::QuantEncoder`] on the fastest kernel its format allows (the integer
//! GEMM, llama.cpp-style blocks, or f32 on weights packed at load or through the `gemm` crate), whole or as one
//! thread's share.

use crate::error::{QuantError, Result};
use crate::kernels::{
    self, BlockQ4_0, BlockQ8_0, F32Gemm, IntLinear, Isa, PackedF32, QuantLinear, SharedOut,
    F32_PANEL,
};

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
    /// f32 weights (full precision, or dequantized) with bias, on the GEMM [`F32Gemm::best`] picks.
    F32 {
        /// The weight, laid out once at load for that GEMM.
        weight: F32Weight,
        /// `[out]`.
        bias: Vec<f32>,
        /// Output features.
        rows: usize,
        /// Input features.
        cols: usize,
    },
}

/// One f32 matrix to stack: its weight, bias, rows and columns.
type F32Part<'a> = (&'a F32Weight, &'a [f32], usize, usize);

/// An f32 weight laid out for the GEMM that reads it.
#[derive(Clone, Debug)]
pub enum F32Weight {
    /// In panels of 16 output features ([`F32Gemm::Packed`]).
    Packed(PackedF32),
    /// `[in, out]`, row-major: transposed once at load, so the `gemm` crate reads it row by row (it packs it
    /// at every call: [`F32Gemm::Crate`]).
    Transposed(Vec<f32>),
}

impl F32Weight {
    /// `weight: [rows, cols]`, row-major, laid out for `gemm`.
    fn new(weight: &[f32], rows: usize, cols: usize, gemm: F32Gemm) -> Self {
        match gemm {
            F32Gemm::Packed => Self::Packed(PackedF32::new(weight, rows, cols)),
            F32Gemm::Crate => {
                let mut weight_t = vec![0.0; rows * cols];
                for r in 0..rows {
                    for c in 0..cols {
                        weight_t[c * rows + r] = weight[r * cols + c];
                    }
                }
                Self::Transposed(weight_t)
            }
        }
    }

    /// The weight as given, `[rows, cols]` row-major.
    fn rows_major(&self, rows: usize, cols: usize) -> Vec<f32> {
        match self {
            Self::Packed(p) => (0..rows).flat_map(|r| p.row(r)).collect(),
            Self::Transposed(w) => (0..rows)
                .flat_map(|r| (0..cols).map(move |c| w[c * rows + r]))
                .collect(),
        }
    }
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

    /// An f32 linear layer from a row-major `[rows = out, cols = in]` weight, on the GEMM [`F32Gemm::best`] picks.
    pub fn f32(weight: &[f32], bias: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        Self::f32_on(F32Gemm::best(), weight, bias, rows, cols)
    }

    /// [`Linear::f32`] on the GEMM `gemm`.
    pub fn f32_on(
        gemm: F32Gemm,
        weight: &[f32],
        bias: Vec<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
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
        Ok(Self::F32 {
            weight: F32Weight::new(weight, rows, cols, gemm),
            bias,
            rows,
            cols,
        })
    }

    /// The same layer with an f32 weight laid out for `gemm` (other kinds unchanged).
    pub fn on_f32_gemm(self, gemm: F32Gemm) -> Self {
        match self {
            Self::F32 {
                weight,
                bias,
                rows,
                cols,
            } => Self::F32 {
                weight: F32Weight::new(&weight.rows_major(rows, cols), rows, cols, gemm),
                bias,
                rows,
                cols,
            },
            other => other,
        }
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
        let floats: Option<Vec<F32Part<'_>>> = parts
            .iter()
            .map(|p| match p {
                Self::F32 {
                    weight,
                    bias,
                    rows,
                    cols,
                } => Some((weight, bias.as_slice(), *rows, *cols)),
                _ => None,
            })
            .collect();
        let floats = floats?;
        let cols = floats.first()?.3;
        if floats.iter().any(|f| f.3 != cols) {
            return None;
        }
        let rows: usize = floats.iter().map(|f| f.2).sum();
        // The parts' weights one under the other, [rows, cols], laid out again as the first part's.
        let weight: Vec<f32> = floats
            .iter()
            .flat_map(|(w, _, r, c)| w.rows_major(*r, *c))
            .collect();
        let gemm = match floats[0].0 {
            F32Weight::Packed(_) => F32Gemm::Packed,
            F32Weight::Transposed(_) => F32Gemm::Crate,
        };
        Some(Self::F32 {
            weight: F32Weight::new(&weight, rows, cols, gemm),
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
                weight,
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
                let serial = kernels::is_serial() || rayon::current_num_threads() == 1;
                match weight {
                    F32Weight::Packed(packed) => {
                        // One team member's share per thread of the pool (whole panels each).
                        let members = if serial {
                            1
                        } else {
                            rayon::current_num_threads().min(packed.panel_count())
                        };
                        // The operands' addresses, shared by the members.
                        let (xs, ys) = (x.as_ptr() as usize, y.as_mut_ptr() as usize);
                        // SAFETY: x is [n, cols] and y is [n, rows] (checked above); members write disjoint
                        // columns, and y outlives them (the call waits for all).
                        let share = |member: usize| unsafe {
                            self.forward_share(xs as *const f32, n, ys as *mut f32, member, members)
                        };
                        if members == 1 {
                            share(0)?;
                        } else {
                            use rayon::prelude::*;
                            (0..members).into_par_iter().try_for_each(share)?;
                        }
                    }
                    F32Weight::Transposed(weight_t) => {
                        let parallelism = if serial {
                            gemm::Parallelism::None
                        } else {
                            gemm::Parallelism::Rayon(0)
                        };
                        // SAFETY: y is [n, rows], x is [n, cols] and weight_t is [cols, rows], all row-major
                        // and of exactly those lengths (checked above and at construction).
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
                    }
                }
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
                weight,
                bias,
                rows,
                cols,
            } => {
                let (rows, cols) = (*rows, *cols);
                let chunk = rows.div_ceil(members.max(1)).next_multiple_of(F32_PANEL);
                let j0 = (member * chunk).min(rows);
                let j1 = (j0 + chunk).min(rows);
                if n == 0 || j0 == j1 {
                    return Ok(());
                }
                match weight {
                    F32Weight::Packed(packed) => {
                        packed.affine(bias, x, n, y, j0 / F32_PANEL..j1.div_ceil(F32_PANEL))
                    }
                    F32Weight::Transposed(weight_t) => f32_affine_cols(
                        n,
                        (rows, cols),
                        j0..j1,
                        x,
                        (weight_t, bias),
                        y,
                        gemm::Parallelism::None,
                    ),
                }
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
