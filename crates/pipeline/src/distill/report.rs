//! The report of a distillation run: `report.json` and `report.md`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Method;
use crate::distill::general::GeneralReport;
use crate::train::StageOutcome;

/// Accuracy, size and speed of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// Test accuracy.
    pub accuracy: f64,
    /// Test macro-F1.
    pub macro_f1: f64,
    /// Parameters.
    pub params: usize,
    /// Bytes of the parameters in f32.
    pub bytes: usize,
    /// Layers.
    pub layers: usize,
    /// Median milliseconds of one forward pass of `eval_batch_size` test examples.
    pub latency_ms: f64,
    /// Where it was saved.
    pub path: PathBuf,
}

/// The report of a run: `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The dataset.
    pub dataset: String,
    /// The labels.
    pub labels: Vec<String>,
    /// The method.
    pub method: Method,
    /// The device name.
    pub device: String,
    /// Train, dev and test sizes.
    pub split_sizes: [usize; 3],
    /// The fine-tuned teacher.
    pub teacher: ModelReport,
    /// The student.
    pub student: ModelReport,
    /// Student accuracy / teacher accuracy.
    pub accuracy_ratio: f64,
    /// Every stage with its throughput.
    pub stages: Vec<StageOutcome>,
    /// Wall seconds of the whole run in this process.
    pub seconds: f64,
    /// General distillation, when the run did it.
    pub general: Option<GeneralReport>,
    /// Training examples after augmentation, when augmented.
    pub augmented_train: Option<usize>,
    /// How the teacher came to be a classifier when it was not fine-tuned here (e.g. a
    /// `BertForSequenceClassification` given with `--teacher`, its labels mapped by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_note: Option<String>,
    /// The command, commit, CPU and date of the run (`cargo xtask distill` sets it), so that a copy under
    /// docs/records/ (`distill-*.json`) is a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::record::Provenance>,
}

/// The report as a Markdown page.
pub fn distill_markdown(r: &Report) -> String {
    let mut s = format!(
        "# Distillation report: {} ({:?})\n\nDevice: {}. Split sizes (train/dev/test): {}/{}/{}. Labels: {:?}.\n\n",
        r.dataset, r.method, r.device, r.split_sizes[0], r.split_sizes[1], r.split_sizes[2], r.labels
    );
    s += "| model | layers | test accuracy | macro-F1 | params | MB (f32) | latency (ms / batch) |\n|---|---|---|---|---|---|---|\n";
    for (name, m) in [("teacher", &r.teacher), ("student", &r.student)] {
        s += &format!(
            "| {name} | {} | {:.4} | {:.4} | {} | {:.1} | {:.1} |\n",
            m.layers,
            m.accuracy,
            m.macro_f1,
            m.params,
            m.bytes as f64 / 1e6,
            m.latency_ms
        );
    }
    if let Some(note) = &r.teacher_note {
        s += &format!("\nTeacher: {note}.\n");
    }
    s += &format!(
        "\nStudent / teacher accuracy: {:.2}%. Speed-up: {:.2}x. Size: {:.1}% of the teacher.\n\n",
        100.0 * r.accuracy_ratio,
        r.teacher.latency_ms / r.student.latency_ms.max(1e-9),
        100.0 * r.student.params as f64 / r.teacher.params as f64
    );
    s += "| stage | steps | first loss | last loss | best dev | tokens/s | seconds |\n|---|---|---|---|---|---|---|\n";
    for st in &r.stages {
        s += &format!(
            "| {} | {} | {:.4} | {:.4} | {} | {:.0} | {:.0} |\n",
            st.name,
            st.steps,
            st.first_loss,
            st.last_loss,
            st.best_dev
                .map(|d| format!("{d:.4}"))
                .unwrap_or_else(|| "-".into()),
            st.tokens_per_second,
            st.seconds
        );
    }
    let written: u64 = r.stages.iter().map(|st| st.checkpoint_bytes).sum();
    s += &format!(
        "\nCheckpoints written by these stages: {:.1} MB (a set every `checkpoint_minutes`, the newest \
         `keep_checkpoints` kept).\n",
        written as f64 / 1e6
    );
    s
}

/// The table of distillation records `(name, report)`: one row per run, with the run's own wall time.
pub fn distill_records_markdown(records: &[(String, Report)]) -> String {
    let mut s = String::from(
        "| task | method | device | teacher | student | retention | run (min) | seconds per stage |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (_, r) in records {
        let stages: Vec<String> = r
            .stages
            .iter()
            .map(|st| format!("{} {:.0}", st.name, st.seconds))
            .collect();
        s += &format!(
            "| {} | {:?} | {} | {:.4} | {:.4} | {:.2}% | {:.1} | {} |\n",
            r.dataset,
            r.method,
            r.device,
            r.teacher.accuracy,
            r.student.accuracy,
            100.0 * r.accuracy_ratio,
            r.seconds / 60.0,
            stages.join(", ")
        );
    }
    s += "\n";
    for (name, r) in records {
        s += &format!(
            "`{name}`: {}.\n\n",
            crate::record::describe_run(r.provenance.as_ref())
        );
    }
    s + &crate::record::records_line(records)
}
