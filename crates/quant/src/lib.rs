//! `quant` owns quantization of BERT encoders: group-wise formats with one range per attention head
//! ([`format`]), packed blocks and quantized CPU kernels ([`kernels`]), mixed-precision bit assignment from a
//! sensitivity report ([`mixed`]), the quantized model and its file ([`model`]), and fake quantization with a
//! straight-through gradient for quantization-aware fine-tuning ([`fake`]).
//!
//! Architecture invariant: `quant` never depends on `pipeline` or `hessian`; it reads a sensitivity report as
//! data (JSON with blocks named `layer.N`).
#![warn(missing_docs)]

pub mod encoder;
mod encoder_ops;
pub mod error;
pub mod fake;
pub mod format;
pub mod kernels;
pub mod mixed;
pub mod model;

pub use error::{QuantError, Result};
pub use format::{Granularity, HeadAxis, QuantSpec, QuantizedTensor};
pub use kernels::{BlockQ4_0, BlockQ8_0, QuantBlock, QuantLinear};
pub use model::{quantize_tensors, NamedTensors, QuantPlan, QuantizedModel, QUANT_FILE};
