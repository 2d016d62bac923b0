//! `fit-mlm`: a teacher that can predict masked tokens, on its own, before any distillation. MiniLM ships no MLM
//! head; this fits one on the general corpus (on the frozen teacher, then optionally with the encoder's last
//! layers, `general.mlm_unfreeze_last`) and writes `teacher-mlm/` — the teacher with `cls.predictions.*`, which
//! `--general-teacher` then uses as is — with `mlm_report.json` / `.md`: masked-token accuracy on held-out
//! passages at every evaluation (the curve). No task data is read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;

use crate::config::DistillConfig;
use crate::distill::general::prepare;
use crate::distill::mlm_head::{fit_passages, masked_accuracy, teacher_with_head};
use crate::error::Result;
use crate::train::{RunOptions, StageOutcome};

/// One evaluation of the fit: masked-token accuracy on the held-out passages after `step` steps of `stage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// `mlm-head` (the head on the frozen teacher) or `mlm-encoder` (the head with the last layers).
    pub stage: String,
    /// Steps of that stage.
    pub step: usize,
    /// Masked-token accuracy.
    pub accuracy: f64,
}

/// What `fit-mlm` did: `mlm_report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlmFitReport {
    /// The pre-trained teacher the head was fitted on.
    pub teacher: PathBuf,
    /// The teacher with its head (`--general-teacher` takes this directory).
    pub fitted: PathBuf,
    /// Whether the teacher brought its own head (then nothing was fitted).
    pub teacher_had_head: bool,
    /// Each corpus source and its words.
    pub corpus_sources: Vec<(String, usize)>,
    /// Training and held-out passages.
    pub passages: [usize; 2],
    /// Passages of the seeded sample passed over before these (`general.skip_passages`).
    #[serde(default)]
    pub skipped_passages: usize,
    /// Encoder layers trained with the head after its own fit.
    pub unfreeze_last: usize,
    /// Masked-token accuracy of the result on the held-out passages.
    pub accuracy: f64,
    /// Every evaluation of the fit, in order.
    pub curve: Vec<CurvePoint>,
    /// The stages run in this process.
    pub stages: Vec<StageOutcome>,
    /// Wall seconds in this process.
    pub seconds: f64,
}

/// The evaluations of the MLM stages logged in `dir/metrics.jsonl` (none when it is absent).
fn curve_of(dir: &Path) -> Result<Vec<CurvePoint>> {
    let path = dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let stage = v.get("stage")?.as_str()?;
            (stage.starts_with("mlm-")).then_some(())?;
            Some(CurvePoint {
                stage: stage.to_string(),
                step: v.get("step")?.as_u64()? as usize,
                accuracy: v.get("dev")?.as_f64()?,
            })
        })
        .collect())
}

/// Fits the MLM head (and the last `config.general.mlm_unfreeze_last` layers) on the general corpus and writes
/// `options.out_dir/{teacher-mlm/, mlm_report.json, mlm_report.md}`. With resume, finished stages are not run
/// again.
pub fn fit_mlm(config: &DistillConfig, options: &RunOptions) -> Result<MlmFitReport> {
    config.validate()?;
    let started = Instant::now();
    let out = &options.out_dir;
    student_arch::io::claim_output_dir(out, "fit-mlm", &["mlm_report.json", "checkpoints"])?;
    let p = prepare(config, &[], options)?;
    let g = &config.general;
    let (teacher, head, stages) = teacher_with_head(
        &p.teacher_dir,
        &p.train,
        &p.held,
        g,
        &p.vocab,
        p.tokenizer.pad_id,
        config.seed,
        options,
    )?;
    let had_head = student_arch::MlmHead::file_has_head(
        &p.teacher_dir.join(student_arch::weights::WEIGHTS_FILE),
    );
    let accuracy = masked_accuracy(
        &teacher,
        &head,
        &p.held,
        &p.vocab,
        &g.masking,
        p.tokenizer.pad_id,
        &options.device,
    )?;
    let report = MlmFitReport {
        teacher: p.teacher_dir.clone(),
        fitted: if had_head {
            p.teacher_dir.clone()
        } else {
            out.join("teacher-mlm")
        },
        teacher_had_head: had_head,
        corpus_sources: p.sources.clone(),
        passages: [fit_passages(g, p.train.len()), p.held.len()],
        skipped_passages: g.skip_passages,
        unfreeze_last: if had_head { 0 } else { g.mlm_unfreeze_last },
        accuracy,
        curve: curve_of(out)?,
        stages,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    write_atomic(&out.join("mlm_report.json"), json.as_bytes())?;
    write_atomic(
        &out.join("mlm_report.md"),
        mlm_fit_markdown(&report).as_bytes(),
    )?;
    Ok(report)
}

/// The fit's report as Markdown: the result, then the curve.
pub fn mlm_fit_markdown(r: &MlmFitReport) -> String {
    let mut s = format!(
        "# MLM head of {}\n\nMasked-token accuracy on {} held-out passages: **{:.1}%** ({}).\n\n",
        r.teacher.display(),
        r.passages[1],
        100.0 * r.accuracy,
        if r.teacher_had_head {
            "the teacher's own head; nothing fitted".to_string()
        } else if r.unfreeze_last > 0 {
            format!(
                "head fitted on {} passages, then with the last {} encoder layers",
                r.passages[0], r.unfreeze_last
            )
        } else {
            format!("head fitted on {} passages, encoder frozen", r.passages[0])
        }
    );
    if r.skipped_passages > 0 {
        s += &format!(
            "The fit's passages come after the first {} of the seeded sample (`general.skip_passages`): a \
             distillation run with the same seed and at most that many passages shares none of them.\n\n",
            r.skipped_passages
        );
    }
    s += &format!("Teacher with the head: `{}`.\n\n", r.fitted.display());
    if !r.curve.is_empty() {
        s += "| stage | step | masked-token accuracy |\n|---|---|---|\n";
        for c in &r.curve {
            s += &format!(
                "| {} | {} | {:.1}% |\n",
                c.stage,
                c.step,
                100.0 * c.accuracy
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_reads_the_mlm_evaluations_only() {
        let dir = std::env::temp_dir().join(format!("mlm-fit-curve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.jsonl"),
            "{\"stage\":\"mlm-head\",\"step\":1,\"total\":7.1}\n\
             {\"dev\":0.08,\"stage\":\"mlm-head\",\"step\":10}\n\
             {\"dev\":0.5,\"stage\":\"teacher-finetune\",\"step\":3}\n\
             not json\n\
             {\"dev\":0.21,\"stage\":\"mlm-encoder\",\"step\":20}\n",
        )
        .unwrap();
        let curve = curve_of(&dir).unwrap();
        assert_eq!(
            curve,
            vec![
                CurvePoint {
                    stage: "mlm-head".into(),
                    step: 10,
                    accuracy: 0.08
                },
                CurvePoint {
                    stage: "mlm-encoder".into(),
                    step: 20,
                    accuracy: 0.21
                },
            ]
        );
        let md = mlm_fit_markdown(&MlmFitReport {
            teacher: "t".into(),
            fitted: "o/teacher-mlm".into(),
            teacher_had_head: false,
            corpus_sources: vec![],
            passages: [100, 8],
            skipped_passages: 8000,
            unfreeze_last: 2,
            accuracy: 0.21,
            curve,
            stages: vec![],
            seconds: 1.0,
        });
        assert!(
            md.contains("**21.0%**") && md.contains("last 2 encoder layers"),
            "{md}"
        );
        assert!(md.contains("| mlm-encoder | 20 | 21.0% |"), "{md}");
        assert!(
            md.contains("after the first 8000 of the seeded sample"),
            "{md}"
        );
        assert!(curve_of(&dir.join("absent")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
