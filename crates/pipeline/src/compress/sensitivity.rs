//! Q-BERT sensitivity of a saved classifier: its task loss on several training batches, each encoder block's
//! top Hessian eigenvalue and trace (through `hessian`), ranked by mean + std. Writes the report and the
//! batches it used, so an independent script (`scripts/reference_sensitivity.py`) can redo the run.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use hessian::{
    bert_blocks, select, BlockGranularity, BlockSensitivity, SensitivityConfig, SensitivityReport,
};
use kd_losses::classification_cross_entropy;
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::{BertInput, BertTokenizer};

use crate::classifier::SequenceClassifier;
use crate::data::labelled::{shuffle, Columns};
use crate::error::{io_err, PipelineError, Result};
use crate::train::{batch_input, Encoded};

student_arch::config_defaults! {
    /// What to measure.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct SensitivityOptions {
        /// A built-in dataset name or a CSV/TSV/JSONL path.
        pub dataset: String = "rotten-tomatoes".into(),
        /// Columns of a file dataset.
        pub columns: Columns = Columns::default(),
        /// Batches of training data.
        pub batches: usize = 4,
        /// Examples per batch.
        pub batch_size: usize = 16,
        /// Blocks per layer, matrix or head.
        pub granularity: BlockGranularity = BlockGranularity::Layer,
        /// Only these blocks (names as in the report); empty: all.
        pub blocks: Vec<String> = vec![],
        /// Seed of the data split and batch choice (and of the power iteration's start vectors).
        pub seed: u64 = 42,
        /// Power iteration, trace samples and finite-difference step.
        pub hessian: SensitivityConfig = SensitivityConfig::default(),
    }
}

/// The batches of a run, written beside the report (`<report>.batches.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedBatch {
    /// Word-piece ids per sequence (unpadded).
    pub input_ids: Vec<Vec<u32>>,
    /// Class ids.
    pub labels: Vec<usize>,
}

/// How [`measure_sensitivity`] runs.
#[derive(Clone, Debug, Default)]
pub struct MeasureControl {
    /// Show a progress bar and a line per finished block.
    pub progress: bool,
    /// Continue from `<out>.partial.json`, which an interrupted run with the same model and options left.
    pub resume: bool,
    /// Stop after this many blocks in this process (to test resume); `None` runs to the end.
    pub stop_after_blocks: Option<usize>,
}

/// The blocks finished so far, saved after each block (`<out>.partial.json`) so an interrupted run resumes.
#[derive(Debug, Serialize, Deserialize)]
struct Partial {
    model: PathBuf,
    options: SensitivityOptions,
    method: String,
    blocks: Vec<BlockSensitivity>,
    gradient_passes: usize,
    seconds: f64,
}

/// Where [`measure_sensitivity`] keeps the blocks finished so far: `<out>.partial.json`, removed when the report is written.
pub fn sensitivity_partial_path(out: &Path) -> PathBuf {
    out.with_extension("partial.json")
}

/// Measures the sensitivity of the classifier saved in `model_dir` and writes `out` (JSON), `out` with `.md`,
/// and `out` with `.batches.json`. `device` is a plain device; the gradients run on its autodiff form. Each
/// finished block is saved to [`sensitivity_partial_path`] at once; with `control.resume` a run picks up from there.
pub fn measure_sensitivity(
    model_dir: &Path,
    options: &SensitivityOptions,
    out: &Path,
    cache: &Path,
    device: &Device,
    control: &MeasureControl,
) -> Result<SensitivityReport> {
    check_outputs(out)?;
    if options.batches == 0 || options.batch_size == 0 {
        return Err(PipelineError::Config {
            field: "batches",
            message: "batches and batch_size must be at least 1".into(),
        });
    }
    let ad = device.clone().autodiff();
    let (model, meta) = SequenceClassifier::load(model_dir, &ad)?;
    // Evaluation mode with gradients: the encoder has no dropout, so `train()` only turns gradients on.
    let model = model.train();
    let tokenizer = crate::classifier::tokenizer_for(model_dir, &model)?;
    let encoded = sample_batches(options, &tokenizer, &meta, cache)?;
    let vocab = model.encoder.config.vocab_size;
    let batches: Vec<(BertInput, Tensor<1, Int>)> = encoded
        .chunks(options.batch_size)
        .map(|chunk| {
            let refs: Vec<&Encoded> = chunk.iter().collect();
            batch_input(&refs, tokenizer.pad_id, vocab, &ad)
        })
        .collect::<Result<_>>()?;
    let params = hessian::parameters(&model);
    let all = bert_blocks(
        &params,
        "encoder",
        model.encoder.config.num_attention_heads,
        options.granularity,
    )?;
    let blocks = if options.blocks.is_empty() {
        all
    } else {
        select(&all, &options.blocks)?
    };
    let mut config = options.hessian.clone();
    config.power.seed ^= options.seed;
    let loss = |m: &SequenceClassifier, (input, labels): &(BertInput, Tensor<1, Int>)| {
        classification_cross_entropy(m.forward(input.clone()).logits, labels.clone())
    };
    let partial_file = sensitivity_partial_path(out);
    let mut done = Partial::resume_or_new(&partial_file, model_dir, options, control.resume)?;
    let mut here = 0;
    for block in &blocks {
        if done.blocks.iter().any(|b| b.name == block.name) {
            continue;
        }
        if control.stop_after_blocks.is_some_and(|n| here >= n) {
            return Err(PipelineError::Checkpoint {
                path: partial_file,
                message: format!("stopped after {here} blocks as asked; continue with --resume"),
            });
        }
        // One block at a time: the power iteration's start vectors depend only on the seed and the batch, so
        // this gives the same figures as all blocks in one call.
        let one = hessian::sensitivity(
            &model,
            &batches,
            std::slice::from_ref(block),
            loss,
            &config,
            control.progress,
        )?;
        done.method = one.method;
        done.gradient_passes += one.gradient_passes;
        done.seconds += one.seconds;
        done.blocks.extend(one.blocks);
        write_atomic(
            &partial_file,
            serde_json::to_string(&done)
                .expect("partial results serialise")
                .as_bytes(),
        )?;
        here += 1;
        if control.progress {
            eprintln!(
                "sensitivity: {} done ({}/{} blocks, {:.0} s)",
                block.name,
                done.blocks.len(),
                blocks.len(),
                done.seconds
            );
        }
    }
    let mut report = SensitivityReport {
        method: done.method,
        batches: batches.len(),
        config,
        blocks: done
            .blocks
            .into_iter()
            .filter(|b| blocks.iter().any(|k| k.name == b.name))
            .collect(),
        gradient_passes: done.gradient_passes,
        seconds: done.seconds,
        model_sha256: Some(crate::classifier::weights_sha256(model_dir)?),
    };
    report.rank();
    report.write(out)?;
    save_batches(&encoded, options.batch_size, out)?;
    // The report is complete; a failure to remove the partial file only leaves a file that --resume reuses.
    let _ = std::fs::remove_file(&partial_file);
    Ok(report)
}

/// Where [`measure_sensitivity`] writes the batches it used: `<out>.batches.json`.
pub fn sensitivity_batches_path(out: &Path) -> PathBuf {
    out.with_extension("batches.json")
}

/// `options.batches` batches of `options.batch_size` examples from the training split (seeded), tokenised.
fn sample_batches(
    options: &SensitivityOptions,
    tokenizer: &BertTokenizer,
    meta: &crate::classifier::ClassifierMeta,
    cache: &Path,
) -> Result<Vec<Encoded>> {
    let max_length = meta.max_length;
    let mut train = meta
        .dataset_splits(&options.dataset, &options.columns, options.seed, cache)?
        .train;
    shuffle(&mut train, options.seed ^ 0x5E45);
    let wanted = options.batches * options.batch_size;
    if train.len() < wanted {
        return Err(PipelineError::Config {
            field: "batches",
            message: format!(
                "{} batches of {} need {wanted} training examples; {} has {}. Use fewer or smaller batches",
                options.batches,
                options.batch_size,
                options.dataset,
                train.len()
            ),
        });
    }
    train.truncate(wanted);
    crate::train::encode(tokenizer, &train, max_length)
}

/// Writes the batches used to [`sensitivity_batches_path`].
fn save_batches(encoded: &[Encoded], batch_size: usize, out: &Path) -> Result<()> {
    let saved: Vec<SavedBatch> = encoded
        .chunks(batch_size)
        .map(|chunk| SavedBatch {
            input_ids: chunk.iter().map(|e| e.ids.clone()).collect(),
            labels: chunk.iter().map(|e| e.label).collect(),
        })
        .collect();
    write_atomic(
        &sensitivity_batches_path(out),
        serde_json::to_string(&saved)
            .expect("batches serialise")
            .as_bytes(),
    )?;
    Ok(())
}

impl Partial {
    /// The blocks an interrupted run of the same model and options finished (with `resume`), else none.
    fn resume_or_new(
        partial_file: &Path,
        model_dir: &Path,
        options: &SensitivityOptions,
        resume: bool,
    ) -> Result<Self> {
        if !(resume && partial_file.exists()) {
            return Ok(Partial {
                model: model_dir.to_path_buf(),
                options: options.clone(),
                method: String::new(),
                blocks: vec![],
                gradient_passes: 0,
                seconds: 0.0,
            });
        }
        let text =
            std::fs::read_to_string(partial_file).map_err(|e| PipelineError::Checkpoint {
                path: partial_file.to_path_buf(),
                message: format!("cannot read it ({e}); delete it to start over"),
            })?;
        let partial: Partial =
            serde_json::from_str(&text).map_err(|e| PipelineError::Checkpoint {
                path: partial_file.to_path_buf(),
                message: format!("not a partial sensitivity run ({e}); delete it to start over"),
            })?;
        if partial.model != model_dir || partial.options != *options {
            return Err(PipelineError::Checkpoint {
                path: partial_file.to_path_buf(),
                message: format!(
                    "it was written for {} with other options; rerun with the same ones, or delete it (or drop --resume) to start over",
                    partial.model.display()
                ),
            });
        }
        Ok(partial)
    }
}

/// Every file a run writes for the report `out`.
fn output_files(out: &Path) -> Vec<PathBuf> {
    let mut files = vec![out.to_path_buf()];
    for ext in ["md", "svg", "png"] {
        files.push(out.with_extension(ext));
    }
    files.push(sensitivity_batches_path(out));
    files.push(sensitivity_partial_path(out));
    files
}

/// Refuses an `out` that is not a `.json` path, and any output file that exists but is not a sensitivity run's
/// (a user's README.md beside `--out README.json` is never overwritten); checks that the directory is
/// writable, all before the first block is measured.
fn check_outputs(out: &Path) -> Result<()> {
    let refuse = |path: &Path, message: &str| PipelineError::Config {
        field: "--out",
        message: format!("{}: {message}", path.display()),
    };
    if out.extension().and_then(|e| e.to_str()) != Some("json") {
        return Err(refuse(
            out,
            "the report is JSON (its Markdown, chart and batches go beside it): give a path ending in .json",
        ));
    }
    let ours = |path: &Path| -> bool {
        if path == out || path == sensitivity_partial_path(out) {
            ours_report(path)
        } else if path == sensitivity_batches_path(out) {
            std::fs::read_to_string(path)
                .is_ok_and(|t| serde_json::from_str::<Vec<SavedBatch>>(&t).is_ok())
        } else {
            // The Markdown, SVG and PNG are ours when the report (or the partial run) beside them is.
            ours_report(out) || ours_report(&sensitivity_partial_path(out))
        }
    };
    for path in output_files(out) {
        if path.exists() && !ours(&path) {
            return Err(refuse(
                &path,
                "exists and was not written by `cargo xtask sensitivity`; it is never overwritten: choose another --out",
            ));
        }
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let probe = dir.join(format!(".sensitivity-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(io_err("writing into", dir))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Whether `path` holds a sensitivity report.
fn ours_report(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("blocks").is_some() && v.get("method").is_some())
}
