//! The papers' ablations, each row a full run of the same recipe with one thing changed:
//! - DistilBERT (general, then task distillation): the triple loss; without the MLM term; without the Hinton
//!   term; without the cosine term; random initialisation instead of copied layers.
//! - TinyBERT (general, then task distillation, with augmentation when configured): all terms; without the
//!   embedding term; without the prediction term; without the transformer (attention + hidden) terms; without
//!   general distillation (task distillation of a randomly initialised student of the same shape).
//!
//! Rows after the first reuse its fine-tuned teacher, its fitted MLM head and its augmented training set, so
//! every row sees the same teacher and data. Writes `ablation.json` and `ablation.md`; with resume, rows with a
//! report are not run again.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;

use crate::config::general::StudentInit;
use crate::config::{DistillConfig, LossTerm, Method, Stage};
use crate::distill::report::Report;
use crate::distill::run::distill;
use crate::error::{io_err, Result};
use crate::train::RunOptions;

/// One row of an ablation table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationRow {
    /// Short name, also the row's directory.
    pub name: String,
    /// What differs from the full method.
    pub change: String,
    /// Best dev accuracy of the student (the checkpoint kept).
    pub dev: f64,
    /// Test accuracy of the student.
    pub test: f64,
    /// Wall seconds of the row (in the process that ran it).
    pub seconds: f64,
}

/// An ablation: `ablation.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationReport {
    /// The method.
    pub method: Method,
    /// The dataset.
    pub dataset: String,
    /// The fine-tuned teacher's test accuracy.
    pub teacher_test: f64,
    /// Rows, the full method first.
    pub rows: Vec<AblationRow>,
}

/// The rows of `method`'s ablation as (name, change, config).
pub fn ablation_configs(
    base: &DistillConfig,
    method: Method,
) -> Vec<(String, String, DistillConfig)> {
    let full = DistillConfig {
        method,
        stage: Stage::Both,
        drop_terms: Vec::new(),
        narrow_student: None,
        student_init: None,
        ..base.clone()
    };
    let drop = |terms: &[LossTerm]| DistillConfig {
        drop_terms: terms.to_vec(),
        ..full.clone()
    };
    let row =
        |name: &str, change: &str, c: DistillConfig| (name.to_string(), change.to_string(), c);
    match method {
        Method::Distilbert => {
            // DistilBERT's recipe has no data augmentation.
            let full = DistillConfig {
                augment: None,
                ..full
            };
            let drop = |terms: &[LossTerm]| DistillConfig {
                drop_terms: terms.to_vec(),
                ..full.clone()
            };
            let mut random = full.clone();
            random.general.distilbert_init = StudentInit::Random;
            vec![
                row(
                    "full",
                    "triple loss (MLM + Hinton + cosine), copied layers",
                    full.clone(),
                ),
                row("no-mlm", "without the MLM term", drop(&[LossTerm::Mlm])),
                row(
                    "no-hinton",
                    "without the Hinton term",
                    drop(&[LossTerm::Ce]),
                ),
                row(
                    "no-cosine",
                    "without the cosine term",
                    drop(&[LossTerm::Cos]),
                ),
                row(
                    "random-init",
                    "random initialisation instead of copied layers",
                    random,
                ),
            ]
        }
        Method::Tinybert => vec![
            row(
                "full",
                "all terms, general then task distillation",
                full.clone(),
            ),
            row(
                "no-emb",
                "without the embedding term",
                drop(&[LossTerm::Emb]),
            ),
            row(
                "no-pred",
                "without the prediction term (hard labels instead)",
                drop(&[LossTerm::Pred]),
            ),
            row(
                "no-trm",
                "without the transformer terms (attention + hidden)",
                drop(&[LossTerm::Att, LossTerm::Hidden]),
            ),
            row(
                "no-general",
                "without general distillation (task distillation from random init)",
                DistillConfig {
                    stage: Stage::Task,
                    narrow_student: Some(full.general.tinybert_student.clone()),
                    ..full.clone()
                },
            ),
        ],
    }
}

fn dev_of(report: &Report) -> f64 {
    report
        .stages
        .iter()
        .rev()
        .find_map(|s| s.best_dev)
        .unwrap_or(f64::NAN)
}

/// Runs every row of `method`'s ablation under `options.out_dir/{row}` and writes the table.
pub fn ablate(
    base: &DistillConfig,
    method: Method,
    options: &RunOptions,
) -> Result<AblationReport> {
    let out = options.out_dir.clone();
    student_arch::io::claim_output_dir(&out, "ablate", &["ablation.json", "ablation.md"])?;
    let mut rows = Vec::new();
    let mut teacher_test = f64::NAN;
    let mut first: Option<PathBuf> = None;
    for (name, change, mut config) in ablation_configs(base, method) {
        let dir = out.join(&name);
        let report_path = dir.join("report.json");
        let mut row_options = RunOptions {
            out_dir: dir.clone(),
            ..options.clone()
        };
        if let Some(first_dir) = &first {
            // The first row's teacher (fine-tuned), MLM head and augmented data.
            config.teacher = Some(first_dir.join("teacher"));
            let head_dir = first_dir.join("teacher-mlm");
            if head_dir.exists() {
                config.general.teacher = Some(head_dir);
            }
            let augmented = first_dir.join("augmented.jsonl");
            if config.augment.is_some()
                && augmented.exists()
                && !dir.join("augmented.jsonl").exists()
            {
                student_arch::io::claim_output_dir(
                    &dir,
                    "distill",
                    &["report.json", "checkpoints"],
                )?;
                std::fs::copy(&augmented, dir.join("augmented.jsonl"))
                    .map_err(io_err("copying", &augmented))?;
            }
            // A fresh row directory holds no checkpoints, so resuming only picks up the copied data.
            row_options.resume = true;
        }
        let done = options.resume && report_path.exists();
        let (report, seconds) = if done {
            let report: Report = serde_json::from_str(
                &std::fs::read_to_string(&report_path).map_err(io_err("reading", &report_path))?,
            )
            .map_err(|e| crate::error::PipelineError::Checkpoint {
                path: report_path.clone(),
                message: format!("{e}; delete it to run the row again"),
            })?;
            let seconds = report.seconds;
            (report, seconds)
        } else {
            eprintln!("ablation {method:?}: row {name} ({change})");
            let report = distill(&config, &row_options)?;
            let seconds = report.seconds;
            (report, seconds)
        };
        if first.is_none() {
            teacher_test = report.teacher.accuracy;
            first = Some(dir.clone());
        }
        rows.push(AblationRow {
            name,
            change,
            dev: dev_of(&report),
            test: report.student.accuracy,
            seconds,
        });
        let partial = AblationReport {
            method,
            dataset: base.dataset.clone(),
            teacher_test,
            rows: rows.clone(),
        };
        write_atomic(
            &out.join("ablation.json"),
            serde_json::to_string_pretty(&partial)
                .expect("report serialises")
                .as_bytes(),
        )?;
        write_atomic(
            &out.join("ablation.md"),
            ablation_markdown(&partial).as_bytes(),
        )?;
    }
    Ok(AblationReport {
        method,
        dataset: base.dataset.clone(),
        teacher_test,
        rows,
    })
}

/// The table: each row's dev and test accuracy and its difference from the full method, in points.
pub fn ablation_markdown(r: &AblationReport) -> String {
    let mut s = format!(
        "# Ablation: {:?} on {}\n\nFine-tuned teacher, test accuracy: {:.4}. Δ is in accuracy points against the first row.\n\n",
        r.method, r.dataset, r.teacher_test
    );
    s += "| row | change | dev acc | Δ dev | test acc | Δ test | seconds |\n|---|---|---|---|---|---|---|\n";
    let (full_dev, full_test) = r
        .rows
        .first()
        .map(|f| (f.dev, f.test))
        .unwrap_or((0.0, 0.0));
    for row in &r.rows {
        s += &format!(
            "| {} | {} | {:.4} | {:+.1} | {:.4} | {:+.1} | {:.0} |\n",
            row.name,
            row.change,
            row.dev,
            100.0 * (row.dev - full_dev),
            row.test,
            100.0 * (row.test - full_test),
            row.seconds
        );
    }
    s
}
