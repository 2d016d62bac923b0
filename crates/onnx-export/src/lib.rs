//! `onnx-export`: writes a BERT encoder, full precision or quantized in `quant`'s group-wise format, as an ONNX
//! model that ONNX Runtime runs on CPU: the sequence classifier's logits (mean-pooled or Hugging Face's
//! [CLS] + pooler head) or a sentence embedding (mean pooling, optionally L2-normalised, as `embed`).
//!
//! Inputs `input_ids` and `attention_mask` (int64, `[batch, sequence]`, both axes dynamic); output `logits`
//! `[batch, labels]` or `embeddings` `[batch, hidden]`. Quantized matrices keep their bits: 4-bit (and fewer)
//! as `com.microsoft.MatMulNBits`, 8-bit as `DequantizeLinear` → `MatMul` with per-channel or blocked scales
//! (module `linear` says which grouping goes where); each dequantizes to exactly our file's values.
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

/// The ONNX protobuf messages (prost, from ONNX 1.23.2's `onnx.proto`).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/generated/onnx.rs"));
}

pub use error::{ExportError, Result};
pub use tensors::Tensors;

use prost::Message;
use student_arch::BertConfig;

/// How a classifier pools the last hidden states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over real tokens.
    Mean,
    /// `tanh(W·h_[CLS] + b)`: Hugging Face's `BertForSequenceClassification` (needs `pooler.dense.*`).
    Cls,
}

/// What the exported graph outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// `logits` `[batch, labels]` from `classifier.weight` `[labels, hidden]` and `classifier.bias`.
    Classifier {
        /// How the classifier pools.
        pooling: Pooling,
        /// Number of labels.
        labels: usize,
    },
    /// `embeddings` `[batch, hidden]`: the mean over real tokens.
    Embedding {
        /// Divide each embedding by its L2 norm (sentence-transformers' and `embed`'s output).
        normalize: bool,
    },
}

/// One weight matrix or embedding table of the exported file.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixExport {
    /// Its Hugging Face name.
    pub name: String,
    /// Bits of its codes in our file (32: f32).
    pub bits: u32,
    /// How the ONNX file holds it.
    pub representation: String,
    /// Bytes of its initializers in the ONNX file.
    pub onnx_bytes: usize,
    /// Bytes it takes in our file (codes, scales and zero points; 4 per value for f32).
    pub our_bytes: usize,
}

/// An exported model.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The ONNX model.
    pub model: proto::ModelProto,
    /// How each matrix and embedding table is held.
    pub matrices: Vec<MatrixExport>,
    /// The graph output's name: `logits` or `embeddings`.
    pub output: &'static str,
    /// The default domain's opset.
    pub opset: i64,
    /// Whether the graph uses ONNX Runtime's contrib operators (`com.microsoft`).
    pub uses_contrib: bool,
    /// Bytes of all initializers.
    pub initializer_bytes: usize,
}

impl Exported {
    /// The serialised model (an `.onnx` file's bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }
}

/// Builds the ONNX model of `config`'s encoder from `tensors` (Hugging Face names) with `head` on top;
/// `metadata` goes into the model's `metadata_props` (labels, pooling, the source).
pub fn export(
    config: &BertConfig,
    tensors: Tensors,
    head: Head,
    metadata: Vec<(String, String)>,
) -> Result<Exported> {
    bert::export(config, tensors, &head, metadata)
}
