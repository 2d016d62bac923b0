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
//!
//! Split as candle splits its quantized kernels: the formats and reference loops ([`blocks`]), the x86-64
//! kernels (`avx`), run-time dispatch ([`dispatch`]) and the linear layer ([`linear`]).

pub mod activations;
pub mod blocks;
pub mod dispatch;
pub mod f32_gemm;
pub mod int_gemm;
pub mod isa;
pub mod linear;
pub mod shared;
pub mod simd;
pub mod tile;

#[cfg(target_arch = "x86_64")]
mod avx;
#[cfg(target_arch = "x86_64")]
mod gemm_avx;

pub use blocks::{quantize_row_q8, ActRows, BlockQ4_0, BlockQ8_0, QuantBlock, WeightRows, QK};
pub use f32_gemm::{F32Gemm, PackedF32, F32_PANEL};
pub use int_gemm::{is_serial, serial, IntLinear};
pub use isa::Isa;
pub use linear::QuantLinear;
pub use shared::SharedOut;
pub use tile::SATURATION_FREE_CODE;
