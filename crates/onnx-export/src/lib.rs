//! `onnx-export`: writes a BERT encoder, full precision or quantized in `quant`'s group-wise format, as an ONNX
//! model that ONNX Runtime runs on CPU: the sequence classifier's logits (mean-pooled or Hugging Face's
//! [CLS] + pooler head) or a sentence embedding (mean pooling, optionally L2-normalised, as `embed`).
//!
//! Inputs `input_ids` and `attention_mask` (int64, `[batch, sequence]`, both axes dynamic); output `logits`
//! `[batch, labels]` or `embeddings` `[batch, hidden]`. Quantized matrices keep their bits. By default
//! ([`Matmul::Integer`]) those that our integer engine runs compute as it does (`MatMulInteger` on per-token
//! uint8 activations, 4-bit codes packed two to a byte); with [`Matmul::Float`], and for the others, 4-bit (and
//! fewer) as `com.microsoft.MatMulNBits`, 8-bit as `DequantizeLinear` → `MatMul` with per-channel or blocked
//! scales (module `linear` says which grouping goes where); each dequantizes to exactly our file's values.
//!
//! The protobuf messages are prost's, generated from ONNX's own `onnx.proto` (`generated/onnx.rs`, rebuilt by
//! `codegen/`). This crate reads tensors and writes bytes; it never depends on `pipeline` (which reads model
//! directories and calls it) and never runs a model.

#![warn(missing_docs)]

mod bert;
mod embedding;
pub mod error;
pub mod graph;
mod linear;
pub mod tensors;

mod head;
pub mod proto;

pub use error::{ExportError, Result};
pub use head::{Exported, Head, Matmul, MatrixExport, Pooling};
pub use tensors::Tensors;

use student_arch::BertConfig;

/// Builds the ONNX model of `config`'s encoder from `tensors` (Hugging Face names) with `head` on top;
/// `metadata` goes into the model's `metadata_props` (labels, pooling, the source). Quantized matrices compute
/// as [`Matmul::Integer`].
pub fn export(
    config: &BertConfig,
    tensors: Tensors,
    head: Head,
    metadata: Vec<(String, String)>,
) -> Result<Exported> {
    export_with(config, tensors, head, Matmul::default(), metadata)
}

/// [`export`] with quantized matrices computed as `matmul` says.
pub fn export_with(
    config: &BertConfig,
    tensors: Tensors,
    head: Head,
    matmul: Matmul,
    metadata: Vec<(String, String)>,
) -> Result<Exported> {
    bert::export(config, tensors, &head, matmul, metadata)
}
