//! The flags of the commands that apply a finished model, `predict` and `export`, and the device flag that every
//! command running a model shares.

use std::path::PathBuf;

/// The device flag, shared by every command that runs a model.
#[derive(clap::Args, Debug)]
pub struct DeviceFlag {
    /// Device among those compiled in (flex, ndarray, wgpu, tch).
    #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
    pub device: String,
}

#[derive(clap::Args, Debug)]
pub struct Predict {
    /// A classifier directory: written by distill (teacher/, student/) or by quantize.
    #[arg(long)]
    pub model: PathBuf,
    /// A CSV, TSV or JSONL file to read the texts from (default: stdin, one text per line).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The text column of --input or --dataset.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Score a labelled dataset's split instead (rotten-tomatoes, bbc-news, or a file): each line then also
    /// carries the row's `text` and its `gold` label.
    #[arg(long, conflicts_with = "input")]
    pub dataset: Option<String>,
    /// The label column of --dataset.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// The split of --dataset: test (the one the model's training run held out) or all.
    #[arg(long, default_value = "test")]
    pub split: pipeline::EvalSplit,
    /// Seed of --dataset's split when the model does not record its own.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Texts per forward pass; each batch's lines are printed as soon as it is scored.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// integer (a quantized directory's kernels; the default for one), native (the same forward-only encoder on
    /// a full-precision directory's f32 weights; the default for one on a CPU device) or dequantized (Burn on
    /// f32 weights).
    #[arg(long)]
    pub engine: Option<pipeline::Engine>,
    #[command(flatten)]
    pub device: DeviceFlag,
}

/// Formats `export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// ONNX (opset 17; 18 for integer matrices, 21 for blocked 8-bit groups; com.microsoft contrib operators).
    Onnx,
}

/// How a quantized model's matrices compute in an ONNX export.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnnxMatmul {
    /// As predict's integer engine: per-token 8-bit activations and MatMulInteger.
    Integer,
    /// Float products of the dequantized weights (the dequantized engine's outputs).
    Float,
}

impl From<OnnxMatmul> for onnx_export::Matmul {
    fn from(m: OnnxMatmul) -> Self {
        match m {
            OnnxMatmul::Integer => onnx_export::Matmul::Integer,
            OnnxMatmul::Float => onnx_export::Matmul::Float,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Export {
    /// A model directory: a classifier that distill, prune-vocab, quantize or compress wrote, a Hugging Face
    /// BertForSequenceClassification, or a plain encoder (exported as sentence embeddings).
    #[arg(long)]
    pub model: PathBuf,
    /// The format to write.
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    pub format: ExportFormat,
    /// Output directory (new, or one an earlier export wrote).
    #[arg(long)]
    pub out: PathBuf,
    /// How a quantized model's matrices compute in the graph: integer (as predict's integer engine: per-token
    /// 8-bit activations, MatMulInteger) or float (dequantized weights: MatMulNBits / DequantizeLinear → MatMul,
    /// as --engine dequantized).
    #[arg(long, value_enum, default_value_t = OnnxMatmul::Integer)]
    pub matmul: OnnxMatmul,
    /// Check the export in ONNX Runtime on this labelled dataset's split (needs python3 with onnx, onnxruntime,
    /// tokenizers): ONNX Runtime against each of our engines, written to onnx_check.json with the command,
    /// commit, CPU and date.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The text column of --dataset.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// The label column of --dataset.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// The split of --dataset: test (the one the model's training run held out) or all.
    #[arg(long, default_value = "test")]
    pub split: pipeline::EvalSplit,
    /// Seed of --dataset's split when the model does not record its own.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The Python that runs scripts/check_onnx.py.
    #[arg(long, default_value = "python3")]
    pub python: String,
    #[command(flatten)]
    pub device: DeviceFlag,
}
