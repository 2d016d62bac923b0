//! `quant` will own group-wise quantization (one range per attention head), packed formats, quantized kernels,
//! mixed-precision bit assignment and export. (Issue 6; empty until then.)
//!
//! Architecture invariant: `quant` never depends on `pipeline` or `hessian`; it reads a sensitivity report as
//! data.
#![warn(missing_docs)]
