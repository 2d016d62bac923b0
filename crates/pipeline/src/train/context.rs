//! What every stage shares: tokenised examples and their batches, a stage's settings and context (where it
//! keeps its state, how it logs), the run's options, the optimizer and its step, and module records.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_losses::LossTerms;
use serde::{Deserialize, Serialize};
use student_arch::io::temporary_path;
use student_arch::{BertInput, BertTokenizer};

use crate::data::labelled::{shuffle, Example};
use crate::error::{io_err, PipelineError, Result};

/// A tokenised example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Word-piece ids with `[CLS]` and `[SEP]`.
    pub ids: Vec<u32>,
    /// Class id.
    pub label: usize,
}

student_arch::config_defaults! {
    /// Hyper-parameters of one training stage.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct StageConfig {
        /// Passes over the training set.
        pub epochs: usize = 1,
        /// At least this many optimizer steps: a small training set gets as many more whole passes as that
        /// takes (0: `epochs` alone decide; left out of `config.json` then, so earlier runs resume).
        #[serde(skip_serializing_if = "is_zero")]
        pub min_steps: usize = 0,
        /// At least this many real (non-padding) tokens: a set of few or short texts gets as many more whole
        /// passes as that takes, while a set of long texts, whose passes cost more, is not stretched as a step
        /// floor would (0: no floor; left out of `config.json` then, so earlier runs resume).
        #[serde(skip_serializing_if = "is_zero")]
        pub min_tokens: usize = 0,
        /// At most this many real tokens: a set whose passes hold more gets fewer whole passes than `epochs`
        /// (at least one), and a set one pass of which holds more gets the part of a pass that holds them, so
        /// that a stage's time is bounded on long or many texts. A floor above it wins (0: no ceiling; left
        /// out of `config.json` then, so earlier runs resume).
        #[serde(skip_serializing_if = "is_zero")]
        pub max_tokens: usize = 0,
        /// Examples per step.
        pub batch_size: usize = 32,
        /// Peak learning rate.
        pub learning_rate: f64 = 5e-5,
        /// Fraction of steps spent warming up.
        pub warmup_fraction: f64 = 0.1,
        /// AdamW weight decay.
        pub weight_decay: f64 = 0.01,
        /// Gradient-norm clipping.
        pub max_grad_norm: f64 = 1.0,
        /// Evaluate on dev every N steps (0: at the end of each epoch only).
        pub eval_every: usize = 0,
        /// Also write a resumable checkpoint every N steps (0: by time only). A finished stage always writes one.
        pub checkpoint_every: usize = 0,
        /// Write a resumable checkpoint (model and optimizer) when this many minutes have passed since the last
        /// one: a whole set is hundreds of megabytes, so a set every few steps wrote tens of gigabytes per run.
        pub checkpoint_minutes: f64 = 10.0,
        /// Resumable checkpoint sets kept (the newest ones; at least 1): a damaged newest set falls back to
        /// the one before. Left out of `config.json` at the default.
        #[serde(skip_serializing_if = "is_default_keep")]
        pub keep_checkpoints: usize = KEEP_CHECKPOINTS,
    }
}

/// Checkpoint sets a stage keeps by default.
pub const KEEP_CHECKPOINTS: usize = 2;

fn is_default_keep(n: &usize) -> bool {
    *n == KEEP_CHECKPOINTS
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl StageConfig {
    /// Checks the values; `stage` names the stage in errors.
    pub fn validate(&self, stage: &'static str) -> Result<()> {
        let bad = |message: String| {
            Err(PipelineError::Config {
                field: stage,
                message,
            })
        };
        if self.batch_size == 0 {
            return bad("batch_size must be positive".into());
        }
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            return bad(format!(
                "epochs must be in 1..={MAX_EPOCHS}, found {}",
                self.epochs
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!(
                "learning_rate must be positive, found {}",
                self.learning_rate
            ));
        }
        if !(self.checkpoint_minutes > 0.0 && self.checkpoint_minutes.is_finite()) {
            return bad(format!(
                "checkpoint_minutes must be positive, found {}",
                self.checkpoint_minutes
            ));
        }
        if self.max_tokens > 0 && self.max_tokens < self.min_tokens {
            return bad(format!(
                "max_tokens ({}) is below min_tokens ({}): raise max_tokens, or set it to 0 for no ceiling",
                self.max_tokens, self.min_tokens
            ));
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints must be at least 1 (the newest set)".into());
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad(format!(
                "warmup_fraction must be in [0, 1), found {}",
                self.warmup_fraction
            ));
        }
        Ok(())
    }
}

/// Most epochs a stage may run.
pub const MAX_EPOCHS: usize = 10_000;

/// Linear warm-up to the peak, then linear decay to 0 at the last step.
pub fn learning_rate(config: &StageConfig, step: usize, total_steps: usize) -> f64 {
    let warmup = ((total_steps as f64) * config.warmup_fraction).ceil() as usize;
    if step < warmup {
        return config.learning_rate * (step + 1) as f64 / warmup as f64;
    }
    let remaining = total_steps.saturating_sub(step) as f64;
    let decay = (total_steps - warmup).max(1) as f64;
    config.learning_rate * (remaining / decay).clamp(0.0, 1.0)
}

/// What a stage did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageOutcome {
    /// The stage's name.
    pub name: String,
    /// Optimizer steps taken (in this process and before a resume).
    pub steps: usize,
    /// Real (non-padding) tokens trained on in this process.
    pub tokens: usize,
    /// Wall seconds in this process.
    pub seconds: f64,
    /// Bytes of checkpoint sets written in this process.
    #[serde(default)]
    pub checkpoint_bytes: u64,
    /// `tokens / seconds`.
    pub tokens_per_second: f64,
    /// Mean total loss over the first 10% of steps (at least 2 when there are 4 or more).
    pub first_loss: f32,
    /// Mean total loss over the last 10% of steps (at least 2 when there are 4 or more).
    pub last_loss: f32,
    /// Best dev score seen, if evaluated.
    pub best_dev: Option<f64>,
}

/// Where a stage keeps its state, and how it reports.
#[derive(Clone, Debug)]
pub struct StageContext {
    /// The stage's name, e.g. `teacher-finetune`.
    pub name: String,
    /// The run's output directory.
    pub out_dir: PathBuf,
    /// Seed of the data order.
    pub seed: u64,
    /// Continue from this stage's checkpoint if there is one.
    pub resume: bool,
    /// Padding id of the tokenizer.
    pub pad_id: u32,
    /// Vocabulary size of the model.
    pub vocab_size: usize,
    /// The autodiff device the stage trains on.
    pub device: Device,
    /// Stop after this many steps in this process (to test resume); `None` runs to the end.
    pub stop_after: Option<usize>,
}

impl StageContext {
    /// The stage's checkpoint directory, `checkpoints/<stage>`.
    pub fn dir(&self) -> PathBuf {
        self.out_dir.join("checkpoints").join(&self.name)
    }

    pub fn log(&self, value: serde_json::Value) -> Result<()> {
        let path = self.out_dir.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        writeln!(f, "{value}").map_err(io_err("writing", &path))
    }
}

/// How many batches' worth of examples are sorted by length together (see [`epoch_batches`]).
pub const BUCKET_BATCHES: usize = 50;

/// The batches of one epoch, as indices into `examples`: a seeded shuffle, then length bucketing (each run of
/// [`BUCKET_BATCHES`] batches' worth of examples is sorted by length and cut into batches, so that dynamic
/// padding pads little), then a seeded shuffle of the batches. The same seed gives the same batches, which is
/// what makes a resumed run repeat an uninterrupted one.
pub fn epoch_batches(examples: &[Encoded], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    shuffle(&mut order, seed);
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(examples.len().div_ceil(batch_size));
    for bucket in order.chunks(batch_size * BUCKET_BATCHES) {
        let mut bucket = bucket.to_vec();
        bucket.sort_by_key(|&i| examples[i].ids.len());
        batches.extend(bucket.chunks(batch_size).map(<[usize]>::to_vec));
    }
    shuffle(&mut batches, seed ^ 0xB0C4);
    batches
}

/// One batch: ids padded per batch, labels.
pub fn batch_input(
    batch: &[&Encoded],
    pad_id: u32,
    vocab_size: usize,
    device: &Device,
) -> Result<(BertInput, Tensor<1, Int>)> {
    let ids: Vec<Vec<u32>> = batch.iter().map(|e| e.ids.clone()).collect();
    let input = BertInput::from_token_ids(&ids, pad_id, vocab_size, device)?;
    let labels: Vec<i64> = batch.iter().map(|e| e.label as i64).collect();
    Ok((
        input,
        Tensor::from_data(TensorData::new(labels, [batch.len()]), device),
    ))
}

pub fn save_record<M: Module>(model: &M, path: &Path) -> Result<()> {
    let tmp = temporary_path(path);
    model
        .clone()
        .into_record()
        .save(&tmp)
        .map_err(|e| PipelineError::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming into place", path))
}

/// Loads a module record saved by a stage into `model`.
pub fn load_record<M: Module>(model: M, path: &Path) -> Result<M> {
    let record = ModuleRecord::load(path).map_err(|e| PipelineError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("{e}; delete it to start the stage again"),
    })?;
    model
        .try_load_record(record)
        .map_err(|e| PipelineError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("does not fit the model ({e}); it belongs to another configuration"),
        })
}

/// The optimizer of every stage: AdamW with the stage's weight decay and gradient-norm clipping.
pub fn optimizer(config: &StageConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(
            config.max_grad_norm as f32,
        )))
        .init()
}

/// One optimizer step on a batch's loss: backward through `terms.total`, then AdamW at `lr`.
pub fn optimizer_step<M: Module>(
    optim: &mut ModuleOptimizer,
    lr: f64,
    model: M,
    terms: LossTerms,
) -> M {
    let grads = GradientsParams::from_grads(terms.total.backward(), &model);
    optim.step(lr, model, grads)
}

/// Tokenises examples.
pub fn encode(
    tokenizer: &BertTokenizer,
    dataset: &[Example],
    max_length: usize,
) -> Result<Vec<Encoded>> {
    dataset
        .iter()
        .map(|e| {
            Ok(Encoded {
                ids: tokenizer.encode(&e.text, max_length)?,
                label: e.label,
            })
        })
        .collect()
}

/// How a run is executed (not part of the recipe).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The output directory.
    pub out_dir: PathBuf,
    /// The device name (for the report).
    pub device_name: String,
    /// The device.
    pub device: Device,
    /// Continue an interrupted run.
    pub resume: bool,
    /// Cache of fetched packages.
    pub cache: PathBuf,
    /// Stop each stage after this many steps (resume tests).
    pub stop_after: Option<usize>,
}

impl RunOptions {
    /// The context of one training stage of this run, on the autodiff device `device`.
    pub fn stage(
        &self,
        name: &str,
        seed: u64,
        pad_id: u32,
        vocab_size: usize,
        device: &Device,
    ) -> StageContext {
        StageContext {
            name: name.into(),
            out_dir: self.out_dir.clone(),
            seed,
            resume: self.resume,
            pad_id,
            vocab_size,
            device: device.clone(),
            stop_after: self.stop_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_batches_cover_every_example_once_and_pad_little() {
        let examples: Vec<Encoded> = (0..1000)
            .map(|i| Encoded {
                ids: vec![1; 3 + (i * 7919) % 45],
                label: 0,
            })
            .collect();
        let batches = epoch_batches(&examples, 32, 5);
        assert_eq!(batches.len(), 1000usize.div_ceil(32));
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(
            batches,
            epoch_batches(&examples, 32, 5),
            "same seed, same batches"
        );
        assert_ne!(batches, epoch_batches(&examples, 32, 6));
        let padded: usize = batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| examples[i].ids.len()).max().unwrap())
            .sum();
        let real: usize = examples.iter().map(|e| e.ids.len()).sum();
        assert!(
            (padded as f64) < 1.1 * real as f64,
            "{padded} padded tokens for {real}"
        );
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let c = StageConfig {
            learning_rate: 1.0,
            warmup_fraction: 0.1,
            ..Default::default()
        };
        assert!((learning_rate(&c, 0, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 9, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(&c, 50, 100) < 1.0 && learning_rate(&c, 50, 100) > 0.5);
        assert!(learning_rate(&c, 99, 100) > 0.0 && learning_rate(&c, 99, 100) < 0.02);
    }
}
