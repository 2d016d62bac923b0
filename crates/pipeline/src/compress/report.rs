//! What `cargo xtask quantize` reports: `quant_report.json` and `quant_report.md`.

use quant::mixed::Unit;
use quant::QuantPlan;
use serde::{Deserialize, Serialize};

use crate::train::StageOutcome;

/// One scored variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// "hessian (qbert)", "uniform", "random", "reverse", ...
    pub name: String,
    /// Bits per unit, in the units' order.
    pub bits: Vec<u32>,
    /// Average bits over the encoder matrices.
    pub avg_layer_bits: f64,
    /// Size of the quantized file.
    pub file_bytes: u64,
    /// Test accuracy on the path that runs (`engine`).
    pub accuracy: f64,
    /// Test macro-F1 on the same path.
    pub macro_f1: f64,
    /// `integer` (the quantized kernels, 8-bit activations) or `dequantized`.
    #[serde(default)]
    pub engine: String,
    /// Test accuracy of the same file on Burn with the dequantized weights, beside the integer figure.
    #[serde(default)]
    pub dequantized_accuracy: Option<f64>,
}

/// What `cargo xtask quantize` writes to `quant_report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizeReport {
    /// The input model directory.
    pub model: String,
    /// The output directory.
    pub out: String,
    /// The plan written.
    pub plan: QuantPlan,
    /// The units bits were assigned to (empty for uniform bits).
    pub units: Vec<Unit>,
    /// Bits of each encoder matrix (Hugging Face name → bits).
    pub matrix_bits: Vec<(String, u32)>,
    /// Average bits over the encoder matrices.
    pub avg_layer_bits: f64,
    /// Size of the quantized weights file.
    pub file_bytes: u64,
    /// Everything a user ships: the weights file, config, tokenizer files and classifier.json.
    pub artifact_bytes: u64,
    /// The fp32 input model's files (same list).
    pub input_bytes: u64,
    /// The fp32 teacher's files (same list), if the teacher was found.
    pub teacher_bytes: Option<u64>,
    /// `teacher_bytes / artifact_bytes`.
    pub compression_vs_teacher: Option<f64>,
    /// `input_bytes / artifact_bytes`.
    pub compression_vs_input: f64,
    /// The fp32 model's test accuracy.
    pub fp32_accuracy: f64,
    /// The fp32 model's macro-F1.
    pub fp32_macro_f1: f64,
    /// The quantized model's accuracy and the baselines at the same budget (the first is the written model).
    pub variants: Vec<Variant>,
    /// Test examples scored.
    pub examples: usize,
    /// Quantization-aware fine-tuning, when it ran.
    #[serde(default)]
    pub qat: Option<QatSummary>,
    /// The command, commit, CPU and date of the run (set by `cargo xtask quantize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::record::Provenance>,
}

/// What quantization-aware fine-tuning did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QatSummary {
    /// Whether it distilled from a fine-tuned teacher (else hard labels only).
    pub teacher_kd: bool,
    /// The training stage (best dev is the fake-quantized model's).
    pub outcome: StageOutcome,
    /// Test accuracy of the same plan without QAT.
    pub accuracy_without_qat: f64,
}

/// The report as Markdown.
pub fn quantize_markdown(r: &QuantizeReport) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let mut s = format!(
        "# Quantized model\n\n`{}` → `{}`; encoder matrices {} (symmetric: {}), embeddings {}-bit per {}.\n\n",
        r.model, r.out, r.plan.granularity, r.plan.symmetric, r.plan.embedding_bits, r.plan.embedding_granularity
    );
    s += "| | bytes | MB |\n|---|---|---|\n";
    s += &format!(
        "| quantized weights file | {} | {:.2} |\n",
        r.file_bytes,
        mb(r.file_bytes)
    );
    s += &format!(
        "| quantized artifact (weights, config, tokenizer, labels) | {} | {:.2} |\n",
        r.artifact_bytes,
        mb(r.artifact_bytes)
    );
    s += &format!(
        "| fp32 input model (same files) | {} | {:.2} |\n",
        r.input_bytes,
        mb(r.input_bytes)
    );
    if let Some(t) = r.teacher_bytes {
        s += &format!("| fp32 teacher (same files) | {t} | {:.2} |\n", mb(t));
    }
    s += &format!(
        "\nCompression: {:.2}× against the fp32 input",
        r.compression_vs_input
    );
    if let Some(c) = r.compression_vs_teacher {
        s += &format!(", {c:.2}× against the fp32 teacher");
    }
    s += &format!(
        ". Average bits over the encoder matrices: {:.3}.\n\n",
        r.avg_layer_bits
    );
    s += &format!("## Accuracy on {} test examples\n\n", r.examples);
    s += "Accuracy is measured on the path that runs: the integer kernels (8-bit activations) for a quantized \
          file; the dequantized-f32 figure of the same file is beside it.\n\n";
    s += "| model | bits per unit | avg bits | file MB | accuracy | Δ vs fp32 | macro-F1 | dequantized f32 |\n|---|---|---|---|---|---|---|---|\n";
    s += &format!(
        "| fp32 | 32 | 32 | {:.2} | {:.4} | | {:.4} | |\n",
        mb(r.input_bytes),
        r.fp32_accuracy,
        r.fp32_macro_f1
    );
    for v in &r.variants {
        s += &format!(
            "| {} | {:?} | {:.3} | {:.2} | {:.4} ({}) | {:+.2} pt | {:.4} | {} |\n",
            v.name,
            v.bits,
            v.avg_layer_bits,
            mb(v.file_bytes),
            v.accuracy,
            v.engine,
            100.0 * (v.accuracy - r.fp32_accuracy),
            v.macro_f1,
            v.dequantized_accuracy
                .map_or("-".to_string(), |a| format!("{a:.4}"))
        );
    }
    if let Some(q) = &r.qat {
        s += &format!(
            "\nQuantization-aware fine-tuning ({}): {} steps, loss {:.4} → {:.4}, best dev (fake-quantized) {}; test accuracy {:.4} without QAT, {:.4} with it.\n",
            if q.teacher_kd { "Hinton loss from the fine-tuned teacher + hard labels" } else { "hard labels only: give --teacher a fine-tuned classifier for KD" },
            q.outcome.steps,
            q.outcome.first_loss,
            q.outcome.last_loss,
            q.outcome.best_dev.map(|d| format!("{d:.4}")).unwrap_or_else(|| "-".into()),
            q.accuracy_without_qat,
            r.variants[0].accuracy
        );
    }
    if !r.units.is_empty() {
        s += "\n## Units (most sensitive first in the report)\n\nScore: the sensitivity report's ranking statistic (Q-BERT's |mean| + std of λ_max unless its header names \
              another).\n\n| unit | score | bits |\n|---|---|---|\n";
        for (u, b) in r.units.iter().zip(&r.variants[0].bits) {
            s += &format!("| {} | {:.4e} | {b} |\n", u.name, u.score);
        }
    }
    s += "\n## Bits per matrix\n\n| matrix | bits |\n|---|---|\n";
    for (n, b) in &r.matrix_bits {
        s += &format!("| {n} | {b} |\n");
    }
    s
}

/// One table of several quantize records (name, report) on the same model: a row per record and variant (the
/// written model first, then the baselines at its budget), then each record's run.
pub fn quantize_records_markdown(records: &[(String, QuantizeReport)]) -> String {
    let mut s = String::from(
        "| record | variant | bits per unit | avg bits | file MB | accuracy | Δ vs fp32 | dequantized f32 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (name, r) in records {
        s += &format!(
            "| `{name}` | fp32 | 32 | 32 | {:.2} | {:.4} | | |\n",
            r.input_bytes as f64 / 1e6,
            r.fp32_accuracy
        );
        for v in &r.variants {
            s += &format!(
                "| `{name}` | {} | {:?} | {:.3} | {:.2} | {:.4} ({}) | {:+.2} pt | {} |\n",
                v.name,
                v.bits,
                v.avg_layer_bits,
                v.file_bytes as f64 / 1e6,
                v.accuracy,
                v.engine,
                100.0 * (v.accuracy - r.fp32_accuracy),
                v.dequantized_accuracy
                    .map_or("-".to_string(), |a| format!("{a:.4}"))
            );
        }
    }
    s += "\n";
    for (name, r) in records {
        let units: Vec<String> = r
            .units
            .iter()
            .map(|u| format!("{} {:.3e}", u.name, u.score))
            .collect();
        let run = crate::record::describe_run(r.provenance.as_ref());
        s += &format!(
            "`{name}`: {run}; {} test examples; units in the sensitivity report's order: {}.\n\n",
            r.examples,
            units.join(", ")
        );
    }
    s + &crate::record::records_line(records)
}
