//! `cargo xtask compress`: the three methods in one resumable command. Distil the student (TinyBERT or
//! DistilBERT, `distill/`), cut its vocabulary to the task's word pieces (`pruned/`), quantize it with
//! quantization-aware fine-tuning from the fine-tuned teacher (`quantized/`), and report a row per stage —
//! accuracy, macro-F1, size and latency at 1 × 64 and 32 × 64 tokens, each on the path that really runs (Burn for
//! the full-precision models, the integer kernels for the quantized one). A finished step is not run again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::model::SeededRng;

use crate::compress::prune::{prune_vocab, PruneOptions};
use crate::compress::qat::QatConfig;
use crate::compress::quantize::{artifact_bytes, quantize, QuantizeOptions};
use crate::config::DistillConfig;
use crate::distill::run::distill;
use crate::error::{io_err, PipelineError, Result};
use crate::eval::{evaluate_dir, EvalSplit};
use crate::predict::Predictor;
use crate::train::{Encoded, RunOptions};

/// What `compress` does after distillation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressConfig {
    /// The distillation run (its dataset, columns and seed also drive the later steps).
    pub distill: DistillConfig,
    /// Cut the vocabulary to the training split's word pieces before quantizing.
    pub prune_vocab: bool,
    /// Bits of the encoder matrices.
    pub bits: u32,
    /// Bits of the embedding tables.
    pub embedding_bits: u32,
    /// Quantization-aware fine-tuning epochs (0: none).
    pub qat_epochs: usize,
    /// A finished `distill` run to compress instead of distilling one (its config.json replaces `distill`).
    pub from_run: Option<PathBuf>,
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressRow {
    /// "teacher fp32", "student fp32", …
    pub stage: String,
    /// The model directory.
    pub path: PathBuf,
    /// Test accuracy on `engine`.
    pub accuracy: f64,
    /// Test macro-F1 on `engine`.
    pub macro_f1: f64,
    /// Bytes of the weights, config, classifier and tokenizer files.
    pub bytes: u64,
    /// The teacher's bytes divided by these.
    pub smaller_than_teacher: f64,
    /// Accuracy divided by the teacher's.
    pub of_teacher_accuracy: f64,
    /// `dequantized` (Burn) or `integer` (the quantized kernels).
    pub engine: String,
    /// Median milliseconds of one forward pass of 1 sequence of 64 tokens.
    pub latency_ms_b1: f64,
    /// The same for 32 sequences of 64 tokens.
    pub latency_ms_b32: f64,
}

/// `compress_report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressReport {
    /// The dataset.
    pub dataset: String,
    /// Test examples scored.
    pub examples: usize,
    /// The device of the full-precision rows.
    pub device: String,
    /// Rayon's threads for every row.
    pub threads: usize,
    /// One row per stage.
    pub rows: Vec<CompressRow>,
    /// The command, commit, CPU and date of the run (set by `cargo xtask compress`; absent in reports written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::record::Provenance>,
}

/// Runs (or resumes) every step under `options.out_dir` and writes `compress_report.{json,md}`.
pub fn compress_all(config: &CompressConfig, options: &RunOptions) -> Result<CompressReport> {
    config.distill.validate()?;
    let out = &options.out_dir;
    student_arch::io::claim_output_dir(out, "compress", &["compress_report.json"])?;
    let (config, distill_dir) = match &config.from_run {
        Some(run) => (from_run(config, run)?, run.clone()),
        None => {
            check_existing(out, config)?;
            (config.clone(), out.join("distill"))
        }
    };
    let config = &config;
    if !distill_dir.join("report.json").exists() {
        eprintln!("compress: distilling into {}", distill_dir.display());
        let sub = RunOptions {
            out_dir: distill_dir.clone(),
            resume: distill_dir.exists(),
            ..options.clone()
        };
        distill(&config.distill, &sub)?;
    }
    let d = &config.distill;
    let student = distill_dir.join("student");
    let mut to_quantize = student.clone();
    if config.prune_vocab {
        let pruned = out.join("pruned");
        if !pruned.join("prune_report.json").exists() {
            eprintln!("compress: pruning the vocabulary into {}", pruned.display());
            let prune = PruneOptions {
                dataset: d.dataset.clone(),
                columns: d.columns.clone(),
                seed: d.seed,
            };
            prune_vocab(&student, &prune, &pruned, &options.cache, &options.device)?;
        }
        to_quantize = pruned;
    }
    let quantized = out.join("quantized");
    let teacher = distill_dir.join("teacher");
    if !quantized.join("quant_report.json").exists() {
        eprintln!("compress: quantizing into {}", quantized.display());
        let q = QuantizeOptions {
            bits: Some(config.bits),
            embedding_bits: config.embedding_bits,
            dataset: d.dataset.clone(),
            columns: d.columns.clone(),
            seed: d.seed,
            teacher: Some(teacher.clone()),
            qat: (config.qat_epochs > 0).then(|| {
                let mut qat = QatConfig::default();
                qat.stage.epochs = config.qat_epochs;
                qat
            }),
            resume: quantized.exists(),
            ..Default::default()
        };
        quantize(
            &to_quantize,
            &q,
            &quantized,
            &options.cache,
            &options.device,
        )?;
    }
    let mut stages = vec![("teacher fp32", teacher.clone()), ("student fp32", student)];
    if config.prune_vocab {
        stages.push(("student fp32, pruned vocabulary", to_quantize.clone()));
    }
    stages.push(("student quantized", quantized));
    let report = score_rows(config, &stages, options)?;
    write_atomic(
        &out.join("compress_report.json"),
        serde_json::to_string_pretty(&report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    let points: Vec<crate::figures::StagePoint<'_>> = report
        .rows
        .iter()
        .map(|r| crate::figures::StagePoint {
            stage: &r.stage,
            bytes: r.bytes,
            smaller_than_teacher: r.smaller_than_teacher,
            accuracy: r.accuracy,
        })
        .collect();
    let figures: Vec<_> = crate::figures::compress_chart(&report.dataset, &points, out)
        .into_iter()
        .collect();
    let markdown = compress_markdown(&report) + &crate::figures::markdown(&figures);
    write_atomic(&out.join("compress_report.md"), markdown.as_bytes())?;
    Ok(report)
}

/// Scores and times every stage's model on the test split.
fn score_rows(
    config: &CompressConfig,
    stages: &[(&str, PathBuf)],
    options: &RunOptions,
) -> Result<CompressReport> {
    let d = &config.distill;
    let mut rows: Vec<CompressRow> = Vec::new();
    let mut examples = 0;
    for (stage, path) in stages {
        let scored = evaluate_dir(
            path,
            &d.dataset,
            &d.columns,
            d.split_seed(),
            EvalSplit::Test,
            None,
            &options.cache,
            &options.device,
        )?;
        examples = scored.examples;
        let predictor = Predictor::load(path, &options.device, None)?;
        let bytes = artifact_bytes(path);
        let (teacher_bytes, teacher_accuracy) = rows
            .first()
            .map_or((bytes, scored.accuracy), |t| (t.bytes, t.accuracy));
        rows.push(CompressRow {
            stage: stage.to_string(),
            path: path.clone(),
            accuracy: scored.accuracy,
            macro_f1: scored.macro_f1,
            bytes,
            smaller_than_teacher: teacher_bytes as f64 / bytes.max(1) as f64,
            of_teacher_accuracy: scored.accuracy / teacher_accuracy.max(1e-12),
            // What runs the row, in the report's words (an fp32 directory's engine is named `dequantized`).
            engine: match predictor.engine() {
                crate::predict::Engine::Integer => "integer".to_string(),
                crate::predict::Engine::Native => "native f32".to_string(),
                crate::predict::Engine::Dequantized => "Burn f32".to_string(),
            },
            latency_ms_b1: latency(&predictor, 1)?,
            latency_ms_b32: latency(&predictor, 32)?,
        });
    }
    Ok(CompressReport {
        provenance: None,
        dataset: d.dataset.clone(),
        examples,
        device: options.device_name.clone(),
        threads: rayon::current_num_threads(),
        rows,
    })
}

/// Median milliseconds of `batch` sequences of 64 seeded random word pieces on the predictor's path.
fn latency(predictor: &Predictor, batch: usize) -> Result<f64> {
    let tokenizer = predictor.tokenizer();
    let vocab = tokenizer.vocab_size() as u64;
    let mut rng = SeededRng::new(64);
    let data: Vec<Encoded> = (0..batch)
        .map(|_| {
            let mut ids = vec![tokenizer.cls_id];
            // Ids past the special tokens (the first 1,000 of BERT's vocabulary are unused or special).
            ids.extend(
                (0..62).map(|_| (rng.next_u64() % vocab.saturating_sub(5).max(1) + 5) as u32),
            );
            ids.push(tokenizer.sep_id);
            Encoded { ids, label: 0 }
        })
        .collect();
    predictor.logits(&data, batch)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        predictor.logits(&data, batch)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The report as Markdown.
pub fn compress_markdown(r: &CompressReport) -> String {
    let mut s = format!(
        "# Compression report: {}\n\n{} test examples; latency medians of 5 runs on {} with {} threads, each \
         model on the path that runs.\n\n",
        r.dataset, r.examples, r.device, r.threads
    );
    s += "| stage | accuracy | of teacher | macro-F1 | MB | smaller than teacher | engine | ms 1×64 | ms 32×64 |\n";
    s += "|---|---|---|---|---|---|---|---|---|\n";
    for row in &r.rows {
        s += &format!(
            "| {} | {:.4} | {:.1}% | {:.4} | {:.2} | {:.2}× | {} | {:.1} | {:.1} |\n",
            row.stage,
            row.accuracy,
            100.0 * row.of_teacher_accuracy,
            row.macro_f1,
            row.bytes as f64 / 1e6,
            row.smaller_than_teacher,
            row.engine,
            row.latency_ms_b1,
            row.latency_ms_b32
        );
    }
    s
}

/// One table of several compress records (name, report): a row per task and stage, then each record's run.
pub fn compress_records_markdown(records: &[(String, CompressReport)]) -> String {
    let mut s = String::from(
        "| task | stage | accuracy | of teacher | macro-F1 | MB | smaller than teacher | engine | ms 1×64 | ms 32×64 |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (_, r) in records {
        for row in &r.rows {
            s += &format!(
                "| {} | {} | {:.4} | {:.1}% | {:.4} | {:.2} | {:.2}× | {} | {:.1} | {:.1} |\n",
                r.dataset,
                row.stage,
                row.accuracy,
                100.0 * row.of_teacher_accuracy,
                row.macro_f1,
                row.bytes as f64 / 1e6,
                row.smaller_than_teacher,
                row.engine,
                row.latency_ms_b1,
                row.latency_ms_b32
            );
        }
    }
    s += "\n";
    for (name, r) in records {
        let run = crate::record::describe_run(r.provenance.as_ref());
        s += &format!(
            "`{name}`: {run}; {} test examples, latency medians on {} with {} threads, each model on the path that \
             runs.\n\n",
            r.examples, r.device, r.threads
        );
    }
    s + &crate::record::records_line(records)
}

/// `config` with the distillation settings of the finished run `run` (which must hold a report).
fn from_run(config: &CompressConfig, run: &Path) -> Result<CompressConfig> {
    let report = run.join("report.json");
    if !report.exists() {
        return Err(PipelineError::Config {
            field: "from_run",
            message: format!(
                "{} has no report.json: give a finished `cargo xtask distill` run",
                run.display()
            ),
        });
    }
    let path = run.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    let distill: DistillConfig =
        serde_json::from_str(&text).map_err(|e| PipelineError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
    Ok(CompressConfig {
        distill,
        from_run: None,
        ..config.clone()
    })
}

/// Refuses a compress output directory that holds a distill run of another dataset (a typo would mix runs).
pub fn check_existing(out: &Path, config: &CompressConfig) -> Result<()> {
    let path = out.join("distill").join("config.json");
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    let earlier: DistillConfig =
        serde_json::from_str(&text).map_err(|e| PipelineError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if earlier != config.distill {
        return Err(PipelineError::Config {
            field: "out",
            message: format!(
                "{} holds a run with another distill config; continue it with the same flags or choose a new --out",
                out.display()
            ),
        });
    }
    Ok(())
}
