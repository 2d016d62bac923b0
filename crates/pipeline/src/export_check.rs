//! The record of an exported classifier checked in ONNX Runtime on a real task's test split: for each of our
//! engines, how far ONNX Runtime's probabilities are from ours, how often the labels agree, and both
//! accuracies (`export --dataset`, rendered by `cargo xtask results` from `docs/records/onnx-*.json`).

use serde::{Deserialize, Serialize};

use crate::record::Provenance;

/// ONNX Runtime against one of our engines, on every example of the split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxEngineCheck {
    /// Our engine: `integer` (the quantized kernels, 8-bit activations), `dequantized` (Burn on the dequantized
    /// f32 weights) or `burn f32` (a full-precision model).
    pub engine: String,
    /// Largest absolute difference of a class probability.
    pub max_abs_diff: f64,
    /// Share of examples whose labels agree.
    pub label_agreement: f64,
    /// ONNX Runtime's accuracy on the split.
    pub accuracy_onnxruntime: f64,
    /// Our engine's accuracy on the split.
    pub accuracy_ours: f64,
}

/// An export checked on a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxCheckRecord {
    /// The run behind it.
    pub provenance: Provenance,
    /// The exported model directory.
    pub model: String,
    /// `classifier` or `quantized classifier`.
    pub kind: String,
    /// The task.
    pub dataset: String,
    /// `test` or `all`.
    pub split: String,
    /// Examples checked.
    pub examples: usize,
    /// ONNX Runtime's version.
    pub onnxruntime: String,
    /// Bytes of `model.onnx`.
    pub onnx_bytes: u64,
    /// Bytes of the source's weights file.
    pub source_weights_bytes: u64,
    /// The representations of the export's matrices, each with how many matrices use it.
    pub representations: Vec<(String, usize)>,
    /// One row per engine.
    pub checks: Vec<OnnxEngineCheck>,
}

/// The Markdown table of `records` (name, record), one row per record and engine.
pub fn onnx_check_markdown(records: &[(String, OnnxCheckRecord)]) -> String {
    let mut s = String::from(
        "| task | model | export | examples | engine | ONNX Runtime accuracy | our accuracy | labels agree | largest \
         probability difference | model.onnx MB | our weights MB |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (_, r) in records {
        // How the quantized matrices compute in the file: as our integer engine, or in float.
        let form = if r
            .representations
            .iter()
            .any(|(how, _)| how.contains("MatMulInteger"))
        {
            "integer"
        } else if r.kind.contains("quantized") {
            "float"
        } else {
            "f32"
        };
        for c in &r.checks {
            s += &format!(
                "| {} | {} | {form} | {} | {} | {:.4} | {:.4} | {:.2}% | {:.1e} | {:.2} | {:.2} |\n",
                r.dataset,
                r.kind,
                r.examples,
                c.engine,
                c.accuracy_onnxruntime,
                c.accuracy_ours,
                100.0 * c.label_agreement,
                c.max_abs_diff,
                r.onnx_bytes as f64 / 1e6,
                r.source_weights_bytes as f64 / 1e6,
            );
        }
    }
    s += "\n";
    for (name, r) in records {
        let held: Vec<String> = r
            .representations
            .iter()
            .map(|(how, n)| format!("{n} × {how}"))
            .collect();
        s += &format!(
            "`{name}`: {}, ONNX Runtime {}. Matrices: {}.\n\n",
            r.provenance.describe(),
            r.onnxruntime,
            held.join("; ")
        );
    }
    s + &crate::record::records_line(records)
}
