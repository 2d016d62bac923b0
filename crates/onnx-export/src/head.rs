//! What the exported graph outputs, and what the export holds.

use prost::Message;

use crate::proto;

/// How a classifier pools the last hidden states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over real tokens.
    Mean,
    /// `tanh(W·h_[CLS] + b)`: Hugging Face's `BertForSequenceClassification` (needs `pooler.dense.*`).
    Cls,
}

/// How quantized matrices compute in the exported graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Matmul {
    /// As our integer engine (`predict`'s default on a quantized model) computes them, where it runs them:
    /// per-token 8-bit activations and `MatMulInteger` (module `linear`). Other matrices as [`Matmul::Float`].
    #[default]
    Integer,
    /// Float `MatMul` of the dequantized weights (`MatMulNBits` or `DequantizeLinear`): the dequantized engine's
    /// outputs, and a smaller graph.
    Float,
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
