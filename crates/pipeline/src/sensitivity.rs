//! Q-BERT sensitivity of a saved classifier: its task loss on several training batches, each encoder block's
//! top Hessian eigenvalue and trace (through `hessian`), ranked by mean + std. Writes the report and the
//! batches it used, so an independent script (`scripts/reference_sensitivity.py`) can redo the run.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use hessian::{bert_blocks, select, Granularity, SensitivityConfig, SensitivityReport};
use kd_losses::classification_cross_entropy;
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::{BertInput, BertTokenizer};

use crate::classifier::SequenceClassifier;
use crate::data::{load_dataset, shuffle, split, Columns};
use crate::error::{PipelineError, Result};
use crate::train::{batch_input, Encoded};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensitivityOptions {
    /// A built-in dataset name or a CSV/TSV/JSONL path.
    pub dataset: String,
    /// Columns of a file dataset.
    pub columns: Columns,
    /// Batches of training data. Default: 4.
    pub batches: usize,
    /// Examples per batch. Default: 16.
    pub batch_size: usize,
    /// Blocks per layer, matrix or head. Default: layer.
    pub granularity: Granularity,
    /// Only these blocks (names as in the report); empty: all. Default: empty.
    pub blocks: Vec<String>,
    /// Seed of the data split and batch choice (and of the power iteration's start vectors). Default: 42.
    pub seed: u64,
    /// Power iteration, trace samples and finite-difference step.
    pub hessian: SensitivityConfig,
}

impl Default for SensitivityOptions {
    fn default() -> Self {
        Self {
            dataset: "rotten-tomatoes".into(),
            columns: Columns::default(),
            batches: 4,
            batch_size: 16,
            granularity: Granularity::Layer,
            blocks: vec![],
            seed: 42,
            hessian: SensitivityConfig::default(),
        }
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

/// Measures the sensitivity of the classifier saved in `model_dir` and writes `out` (JSON), `out` with `.md`,
/// and `out` with `.batches.json`. `device` is a plain device; the gradients run on its autodiff form.
pub fn measure(
    model_dir: &Path,
    options: &SensitivityOptions,
    out: &Path,
    cache: &Path,
    device: &Device,
    progress: bool,
) -> Result<SensitivityReport> {
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
    let tokenizer = BertTokenizer::from_dir(model_dir)?;
    let data = load_dataset(
        &options.dataset,
        &options.columns,
        Some(&meta.labels),
        cache,
    )?;
    let defaults = crate::run::DistillConfig::default();
    let mut train = split(
        &data.examples,
        options.seed,
        defaults.dev_fraction,
        defaults.test_fraction,
    )?
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
    let encoded = crate::run::encode(&tokenizer, &train, meta.max_length)?;
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
    let report = hessian::sensitivity(&model, &batches, &blocks, loss, &config, progress)?;
    report.write(out)?;
    let saved: Vec<SavedBatch> = encoded
        .chunks(options.batch_size)
        .map(|chunk| SavedBatch {
            input_ids: chunk.iter().map(|e| e.ids.clone()).collect(),
            labels: chunk.iter().map(|e| e.label).collect(),
        })
        .collect();
    write_atomic(
        &batches_path(out),
        serde_json::to_string(&saved)
            .expect("batches serialise")
            .as_bytes(),
    )?;
    Ok(report)
}

/// Where [`measure`] writes the batches it used: `<out>.batches.json`.
pub fn batches_path(out: &Path) -> PathBuf {
    out.with_extension("batches.json")
}
