//! `export --format onnx`: a model directory of ours (a classifier, full precision, pruned or quantized, or a
//! plain encoder) as a directory that ONNX Runtime runs: `model.onnx` (`onnx_export` builds it), the tokenizer
//! (`tokenizer.json` always, plus the source's own files), `classifier.json` (labels, pooling, max length) for a
//! classifier, `export_report.json` (how each matrix is held, sizes beside ours), a README of the inputs and
//! outputs with a Python snippet, and `manifest.json` (sha256 of each file, written last).

use std::path::Path;

use burn::tensor::Device;
use onnx_export::{Head, Pooling, Tensors};
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::weights::CONFIG_FILE;
use student_arch::{BertConfig, BertTokenizer};

use crate::checkpoint::{remove_manifest, write_manifest};
use crate::classifier::{tokenizer_for, ClassifierMeta, SequenceClassifier, CLASSIFIER_FILE};
use crate::error::{PipelineError, Result};

/// The exported model file.
pub const ONNX_FILE: &str = "model.onnx";
/// The export's report.
pub const EXPORT_REPORT: &str = "export_report.json";

/// One matrix or embedding table of the export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedMatrix {
    /// Hugging Face name.
    pub name: String,
    /// Bits of its codes in our file (32: f32).
    pub bits: u32,
    /// How `model.onnx` holds it.
    pub representation: String,
    /// Bytes in `model.onnx`.
    pub onnx_bytes: usize,
    /// Bytes in our file.
    pub our_bytes: usize,
}

/// What `export` wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportReport {
    /// The exported directory.
    pub source: String,
    /// `classifier`, `quantized classifier` or `encoder`.
    pub kind: String,
    /// The graph's output: `logits` or `embeddings`.
    pub output: String,
    /// The classifier's labels, index = class id (none for an encoder).
    pub labels: Vec<String>,
    /// `mean` or `cls`.
    pub pooling: String,
    /// Longest input in tokens the model was trained or configured for.
    pub max_length: usize,
    /// The default domain's opset.
    pub opset: i64,
    /// Whether the graph uses ONNX Runtime's `com.microsoft` operators (MatMulNBits).
    pub contrib_ops: bool,
    /// How quantized matrices compute: `integer` (as our integer engine) or `float` (dequantized weights).
    #[serde(default)]
    pub matmul: String,
    /// Bytes of `model.onnx`.
    pub onnx_bytes: u64,
    /// Bytes of the source's weights file (`model.safetensors` or `model.quant.safetensors`).
    pub source_weights_bytes: u64,
    /// Why `model.onnx` is larger than the source's weights, where it is.
    pub size_note: String,
    /// Every matrix and embedding table.
    pub matrices: Vec<ExportedMatrix>,
}

/// The model a directory holds, read for export.
struct Source {
    config: BertConfig,
    dense: quant::NamedTensors,
    quantized: Option<quant::QuantizedModel>,
    tokenizer: BertTokenizer,
    meta: Option<ClassifierMeta>,
    max_length: usize,
    weights_bytes: u64,
}

fn read_source(dir: &Path, device: &Device) -> Result<Source> {
    let quant_path = dir.join(quant::QUANT_FILE);
    let is_classifier =
        dir.join(CLASSIFIER_FILE).exists() || ClassifierMeta::from_hf_config(dir)?.is_some();
    if quant_path.exists() {
        let (meta, meta_path) = ClassifierMeta::read(dir)?;
        crate::checkpoint::verify_manifest(dir)?;
        let q = quant::QuantizedModel::read(&quant_path)?;
        meta.validate(&meta_path, Some(q.config.max_position_embeddings))?;
        let tokenizer = crate::classifier::checked_tokenizer(dir, q.config.vocab_size)?;
        return Ok(Source {
            config: q.config.clone(),
            dense: Default::default(),
            max_length: meta.max_length,
            meta: Some(meta),
            tokenizer,
            weights_bytes: file_len(&quant_path)?,
            quantized: Some(q),
        });
    }
    let (weights_path, _) = student_arch::weights::weights_bytes(dir)?;
    let weights_bytes = file_len(&weights_path)?;
    if is_classifier {
        let (model, meta) = SequenceClassifier::load(dir, device)?;
        let tokenizer = tokenizer_for(dir, &model)?;
        return Ok(Source {
            config: model.encoder.config.clone(),
            dense: model.named_tensors()?,
            quantized: None,
            tokenizer,
            max_length: meta.max_length,
            meta: Some(meta),
            weights_bytes,
        });
    }
    let encoder = student_arch::SentenceEncoder::load(dir, device)?;
    Ok(Source {
        config: encoder.model.config.clone(),
        dense: student_arch::weights::named_tensors(&encoder.model)?,
        quantized: None,
        tokenizer: encoder.tokenizer,
        meta: None,
        max_length: encoder.max_length,
        weights_bytes,
    })
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| PipelineError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot read its size: {e}"),
        })?
        .len())
}

/// Exports the model in `model_dir` to ONNX in `out` (a new directory, or one an earlier export wrote). A
/// classifier's graph outputs `logits`; an encoder's the L2-normalised mean-pooled `embeddings` (`embed`'s).
///
/// `matmul` says how quantized matrices compute ([`onnx_export::Matmul`]): as our integer engine (`predict`'s
/// default) or as float products of the dequantized weights.
pub fn export_onnx(
    model_dir: &Path,
    out: &Path,
    matmul: onnx_export::Matmul,
    device: &Device,
) -> Result<ExportReport> {
    let source = read_source(model_dir, device)?;
    let (head, pooling) = match &source.meta {
        Some(meta) => {
            let pooling = match meta.pooling.as_str() {
                "cls" => Pooling::Cls,
                _ => Pooling::Mean,
            };
            (
                Head::Classifier {
                    pooling,
                    labels: meta.labels.len(),
                },
                meta.pooling.clone(),
            )
        }
        None => (Head::Embedding { normalize: true }, "mean".to_string()),
    };
    let tensors = match &source.quantized {
        Some(q) => Tensors::quantized(q),
        None => Tensors::dense(&source.dense),
    };
    let labels = source
        .meta
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    let metadata = vec![
        (
            "labels".to_string(),
            serde_json::to_string(&labels).expect("labels serialise"),
        ),
        ("pooling".to_string(), pooling.clone()),
        ("max_length".to_string(), source.max_length.to_string()),
        ("source".to_string(), model_dir.display().to_string()),
    ];
    let exported = onnx_export::export_with(&source.config, tensors, head, matmul, metadata)?;
    student_arch::io::claim_output_dir(out, "export", &[])?;
    remove_manifest(out)?;
    let bytes = exported.to_bytes();
    write_atomic(&out.join(ONNX_FILE), &bytes)?;
    student_arch::weights::copy_tokenizer_files(model_dir, out)?;
    write_atomic(
        &out.join("tokenizer.json"),
        source.tokenizer.to_json()?.as_bytes(),
    )?;
    write_atomic(
        &out.join(CONFIG_FILE),
        source.config.to_hf_json().as_bytes(),
    )?;
    let mut files = vec![ONNX_FILE, CONFIG_FILE];
    files.extend(
        student_arch::weights::TOKENIZER_FILES
            .into_iter()
            .filter(|f| out.join(f).exists()),
    );
    if let Some(meta) = &source.meta {
        files.push(meta.write(out)?);
    }
    let kind = match (&source.quantized, &source.meta) {
        (Some(_), _) => "quantized classifier",
        (None, Some(_)) => "classifier",
        (None, None) => "encoder",
    };
    let matrices: Vec<ExportedMatrix> = exported
        .matrices
        .iter()
        .map(|m| ExportedMatrix {
            name: m.name.clone(),
            bits: m.bits,
            representation: m.representation.clone(),
            onnx_bytes: m.onnx_bytes,
            our_bytes: m.our_bytes,
        })
        .collect();
    let report = ExportReport {
        source: model_dir.display().to_string(),
        kind: kind.into(),
        output: exported.output.into(),
        labels,
        pooling,
        max_length: source.max_length,
        opset: exported.opset,
        contrib_ops: exported.uses_contrib,
        matmul: match (&source.quantized, matmul) {
            (None, _) => "float".into(),
            (Some(_), onnx_export::Matmul::Integer) => "integer".into(),
            (Some(_), onnx_export::Matmul::Float) => "float".into(),
        },
        onnx_bytes: bytes.len() as u64,
        source_weights_bytes: source.weights_bytes,
        size_note: size_note(&matrices, bytes.len() as u64, source.weights_bytes),
        matrices,
    };
    let json = serde_json::to_string_pretty(&report).expect("the report serialises");
    write_atomic(&out.join(EXPORT_REPORT), json.as_bytes())?;
    write_atomic(&out.join("README.md"), readme(&report).as_bytes())?;
    files.extend([EXPORT_REPORT, "README.md"]);
    write_manifest(out, &files)?;
    Ok(report)
}

/// Why the ONNX file is larger than our weights file, by representation (empty when it is not larger).
fn size_note(matrices: &[ExportedMatrix], onnx: u64, ours: u64) -> String {
    if onnx <= ours + ours / 20 {
        return String::new();
    }
    let mut extra: std::collections::BTreeMap<&str, i64> = Default::default();
    for m in matrices {
        let grew = m.onnx_bytes as i64 - m.our_bytes as i64;
        if grew > 0 {
            *extra.entry(m.representation.as_str()).or_default() += grew;
        }
    }
    let mut parts: Vec<(i64, &str)> = extra.into_iter().map(|(r, b)| (b, r)).collect();
    parts.sort_by(|a, b| b.cmp(a));
    let why: Vec<String> = parts
        .iter()
        .map(|(b, r)| format!("{r}: +{:.2} MB", *b as f64 / 1e6))
        .collect();
    format!(
        "model.onnx is {:.2} MB against {:.2} MB: codes of 5 to 7 bits that ONNX Runtime cannot read packed (its \
         Gather, MatMulInteger and DequantizeLinear take one byte per code), f32 scales where ours are f16, and the \
         integer path's per-row sums. {}",
        onnx as f64 / 1e6,
        ours as f64 / 1e6,
        why.join("; ")
    )
}

fn readme(r: &ExportReport) -> String {
    let output = match r.output.as_str() {
        "logits" => format!(
            "`logits`: float32 `[batch, {}]`, one score per label in `classifier.json`'s order ({}); softmax gives \
             `cargo xtask predict`'s probabilities.",
            r.labels.len(),
            r.labels.join(", ")
        ),
        _ => "`embeddings`: float32 `[batch, hidden]`, the mean of the last hidden states over real tokens divided by \
              its L2 norm (`cargo xtask embed`'s output)."
            .to_string(),
    };
    format!(
        "# ONNX export of `{source}`\n\n\
         Written by `cargo xtask export --format onnx` ({kind}, opset {opset}{contrib}).\n\n\
         - Inputs: `input_ids` and `attention_mask`, int64 `[batch, sequence]`, both axes dynamic; tokenise with \
         `tokenizer.json` ([CLS] … [SEP], at most {max_length} tokens as in training), pad with 0 and mask 0.\n\
         - Output: {output}\n\
         - {matmul}\n         - How each matrix is held, and the sizes beside ours: `export_report.json`.\n\n\
         ```python\n\
         import numpy as np, onnxruntime as ort\n\
         from tokenizers import Tokenizer\n\
         tok = Tokenizer.from_file(\"tokenizer.json\"); tok.enable_truncation({max_length}); tok.enable_padding()\n\
         enc = tok.encode_batch([\"a gripping, beautifully acted film\", \"a dull mess\"])\n\
         feed = {{\"input_ids\": np.array([e.ids for e in enc]), \"attention_mask\": np.array([e.attention_mask for e in enc])}}\n\
         print(ort.InferenceSession(\"model.onnx\").run(None, feed)[0])\n\
         ```\n",
        source = r.source,
        kind = r.kind,
        opset = r.opset,
        contrib = if r.contrib_ops { " + com.microsoft" } else { "" },
        max_length = r.max_length,
        matmul = match (r.kind.as_str(), r.matmul.as_str()) {
            ("quantized classifier", "integer") => {
                "Quantized matrices compute as `cargo xtask predict`'s integer engine: each token's inputs quantized \
                 to 8 bits, `MatMulInteger` against the weight codes (codes beyond ±64 as uint8 with zero point 128, \
                 which ONNX Runtime multiplies exactly on CPUs without VNNI too; exported with `--matmul integer`, the default)."
            }
            ("quantized classifier", _) => {
                "Quantized matrices compute in float from their dequantized codes (`--matmul float`): the outputs of \
                 `cargo xtask predict --engine dequantized`."
            }
            _ => "Full-precision weights: float `MatMul`.",
        },
    )
}
