//! The training loop shared by every stage: AdamW with linear warm-up and decay, gradient clipping, a progress
//! bar with the loss terms, a JSON-lines metrics log, evaluation every N steps, the best checkpoint kept,
//! atomic checkpoints, resume, and a clear stop on a NaN or infinite loss.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_losses::LossTerms;
use serde::{Deserialize, Serialize};
use student_arch::io::{temporary_path, write_atomic};
use student_arch::{BertInput, BertTokenizer};

use crate::checkpoint::{best_set, step_set, CheckpointDir};
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
        /// Write a resumable checkpoint every N steps.
        pub checkpoint_every: usize = 20,
    }
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

/// A stage's progress, saved in every checkpoint set as `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StageState {
    step: usize,
    done: bool,
    best_dev: Option<f64>,
    /// The checkpoint set of the best model (`best-…`), when there is one.
    best_set: Option<String>,
    losses: Vec<f32>,
    /// The stage's steps in all, and a fingerprint of its settings and training data: a resume must match both.
    total_steps: usize,
    fingerprint: String,
}

impl StageContext {
    /// The stage's checkpoint directory, `checkpoints/<stage>`.
    pub fn dir(&self) -> PathBuf {
        self.out_dir.join("checkpoints").join(&self.name)
    }

    fn log(&self, value: serde_json::Value) -> Result<()> {
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

fn save_record<M: Module>(model: &M, path: &Path) -> Result<()> {
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

/// Runs one stage. `loss` computes the named loss terms of a batch (the model, its input and labels, and the
/// batch's indices into `train`); `evaluate` scores a model on dev (higher is better). Returns the model at the
/// best dev score (or the last step when `evaluate` gives `None`).
pub fn run_stage<M, L, E>(
    ctx: &StageContext,
    model: M,
    train: &[Encoded],
    config: &StageConfig,
    loss: L,
    evaluate: E,
) -> Result<(M, StageOutcome)>
where
    M: Module,
    L: Fn(&M, BertInput, Tensor<1, Int>, &[usize]) -> Result<LossTerms>,
    E: Fn(&M) -> Result<Option<f64>>,
{
    if train.is_empty() {
        return Err(PipelineError::Config {
            field: "dataset",
            message: format!("stage {} has no training examples", ctx.name),
        });
    }
    let steps_per_epoch = train.len().div_ceil(config.batch_size);
    let total_steps =
        steps_per_epoch
            .checked_mul(config.epochs)
            .ok_or_else(|| PipelineError::Config {
                field: "epochs",
                message: format!(
                    "{} epochs of {steps_per_epoch} steps overflow; use fewer",
                    config.epochs
                ),
            })?;
    let files = Checkpoints::new(ctx)?;
    let fresh = StageState {
        total_steps,
        fingerprint: fingerprint(ctx, config, train),
        ..Default::default()
    };
    let (mut model, mut optim, mut state) = files.resume(model, optimizer(config), fresh)?;
    if state.done {
        return Ok((model, outcome(ctx, &state, 0, 0.0)));
    }
    let bar = progress_bar(ctx, total_steps, state.step);
    let started = Instant::now();
    let mut tokens = 0usize;
    let mut steps_here = 0usize;
    let evaluate_now = |model: &M, state: &mut StageState| -> Result<()> {
        if let Some(score) = evaluate(model)? {
            ctx.log(serde_json::json!({"stage": ctx.name, "step": state.step, "dev": score}))?;
            if state.best_dev.is_none_or(|b| score > b) {
                state.best_dev = Some(score);
                state.best_set = Some(files.save_best(model, state.step)?);
            }
        }
        Ok(())
    };
    while state.step < total_steps {
        if ctx.stop_after.is_some_and(|n| steps_here >= n) {
            files.save(&model, &optim, &state)?;
            bar.abandon_with_message("stopped; continue with --resume");
            return Err(PipelineError::Checkpoint {
                path: ctx.dir(),
                message: format!(
                    "stopped after {steps_here} steps as asked; continue with --resume"
                ),
            });
        }
        let epoch = state.step / steps_per_epoch;
        let in_epoch = state.step % steps_per_epoch;
        let batches = epoch_batches(
            train,
            config.batch_size,
            ctx.seed.wrapping_add(epoch as u64 * 7919),
        );
        let indices = &batches[in_epoch];
        let batch: Vec<&Encoded> = indices.iter().map(|&i| &train[i]).collect();
        tokens += batch.iter().map(|e| e.ids.len()).sum::<usize>();
        let (input, labels) = batch_input(&batch, ctx.pad_id, ctx.vocab_size, &ctx.device)?;
        let terms = loss(&model, input, labels, indices)?;
        let values = loss_values(ctx, state.step, &terms)?;
        let lr = learning_rate(config, state.step, total_steps);
        model = optimizer_step(&mut optim, lr, model, terms);
        state.step += 1;
        steps_here += 1;
        state
            .losses
            .push(values.last().map(|(_, v)| *v).unwrap_or(f32::NAN));
        log_step(ctx, &bar, state.step, lr, &values)?;
        let end_of_epoch = state.step % steps_per_epoch == 0;
        if (config.eval_every > 0 && state.step % config.eval_every == 0) || end_of_epoch {
            evaluate_now(&model, &mut state)?;
        }
        // The last step's set is written once the stage is marked done, below.
        if state.step % config.checkpoint_every.max(1) == 0 && state.step < total_steps {
            files.save(&model, &optim, &state)?;
        }
    }
    bar.finish();
    state.done = true;
    files.save(&model, &optim, &state)?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(best) = &state.best_set {
        model = load_record(model, &ctx.dir().join(best).join("model.bpk"))?;
    }
    Ok((model, outcome(ctx, &state, tokens, seconds)))
}

/// The named values of a step's loss terms (the total last); a NaN or infinite term is an error that names the
/// stage, the step and the checkpoint to resume from.
fn loss_values(
    ctx: &StageContext,
    step: usize,
    terms: &LossTerms,
) -> Result<Vec<(&'static str, f32)>> {
    terms.values().map_err(|e| match e {
        kd_losses::LossError::NonFinite { term, value } => PipelineError::NonFinite {
            stage: ctx.name.clone(),
            step,
            term: term.to_string(),
            value,
            checkpoint: ctx.dir().display().to_string(),
        },
        other => other.into(),
    })
}

/// Appends the step to `metrics.jsonl` and shows its terms on the progress bar.
fn log_step(
    ctx: &StageContext,
    bar: &indicatif::ProgressBar,
    step: usize,
    lr: f64,
    values: &[(&'static str, f32)],
) -> Result<()> {
    let mut record = serde_json::json!({"stage": ctx.name, "step": step, "lr": lr});
    for (name, v) in values {
        record[*name] = serde_json::json!(v);
    }
    ctx.log(record)?;
    bar.set_message(
        values
            .iter()
            .map(|(n, v)| format!("{n}={v:.4}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    bar.inc(1);
    Ok(())
}

/// The stage's progress bar, at `step` of `total_steps`.
fn progress_bar(ctx: &StageContext, total_steps: usize, step: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total_steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(ctx.name.clone());
    bar.set_position(step as u64);
    bar
}

/// A stage's checkpoints (see [`crate::checkpoint`]): each a set of the model, the optimizer and the state;
/// the best model in a set of its own, named by the state.
struct Checkpoints<'a> {
    ctx: &'a StageContext,
    dir: CheckpointDir,
    /// The step of the set written last in this process.
    saved: std::cell::Cell<Option<usize>>,
}

impl<'a> Checkpoints<'a> {
    fn new(ctx: &'a StageContext) -> Result<Self> {
        Ok(Self {
            ctx,
            dir: CheckpointDir::open(&ctx.dir())?,
            saved: std::cell::Cell::new(None),
        })
    }

    /// The model, optimizer and state to continue from: the newest complete set when resuming (the best model
    /// of a finished stage), checked against its manifest and against this stage's settings; else those given
    /// and a fresh state (earlier sets removed).
    fn resume<M: Module>(
        &self,
        model: M,
        optim: ModuleOptimizer,
        fresh: StageState,
    ) -> Result<(M, ModuleOptimizer, StageState)> {
        let latest = if self.ctx.resume {
            self.dir.latest()?
        } else {
            None
        };
        let Some(set) = latest else {
            self.dir.clear()?;
            truncate_metrics(self.ctx, 0)?;
            return Ok((model, optim, fresh));
        };
        let fix = format!(
            "remove {} (or drop --resume) to start the stage again",
            self.dir.root().display()
        );
        let state_path = set.join("state.json");
        let text = std::fs::read_to_string(&state_path).map_err(io_err("reading", &state_path))?;
        let state: StageState =
            serde_json::from_str(&text).map_err(|e| PipelineError::Checkpoint {
                path: state_path.clone(),
                message: format!("{e}; {fix}"),
            })?;
        if state.total_steps != fresh.total_steps
            || state.fingerprint != fresh.fingerprint
            || state.step > state.total_steps
        {
            return Err(PipelineError::Checkpoint {
                path: state_path,
                message: format!(
                    "step {} of {} was saved for other settings or data than this run's ({} steps); resume with \
                     the same config, or {fix}",
                    state.step, state.total_steps, fresh.total_steps,
                ),
            });
        }
        let set_name = set
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut keep = vec![set_name.as_str()];
        keep.extend(state.best_set.as_deref());
        self.dir.retain(&keep)?;
        truncate_metrics(self.ctx, state.step)?;
        let best = state.best_set.as_ref().map(|b| self.dir.root().join(b));
        if let Some(b) = &best {
            self.dir.verify(b)?;
        }
        let from = match (&best, state.done) {
            (Some(b), true) => b.join("model.bpk"),
            _ => set.join("model.bpk"),
        };
        let model = load_record(model, &from)?;
        if state.done {
            return Ok((model, optim, state));
        }
        let optim_path = set.join("optim.bpk");
        let record = OptimizerRecord::load(&optim_path).map_err(|e| PipelineError::Checkpoint {
            path: optim_path.clone(),
            message: format!("{e}; {fix}"),
        })?;
        eprintln!("{}: resuming at step {}", self.ctx.name, state.step);
        Ok((model, optim.load_record(record), state))
    }

    /// Writes the set of `state.step`: the model, the optimizer, then the state; then drops older sets. A step
    /// already saved (and not finished since) is not written again.
    fn save<M: Module>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        state: &StageState,
    ) -> Result<()> {
        if !state.done && self.saved.get() == Some(state.step) {
            return Ok(());
        }
        let name = step_set(state.step);
        self.dir.write(&name, true, |tmp| {
            save_record(model, &tmp.join("model.bpk"))?;
            let optim_path = tmp.join("optim.bpk");
            optim
                .to_record()
                .save(&optim_path)
                .map_err(|e| PipelineError::Checkpoint {
                    path: optim_path.clone(),
                    message: e.to_string(),
                })?;
            let state_path = tmp.join("state.json");
            std::fs::write(
                &state_path,
                serde_json::to_string(state).expect("state serialises"),
            )
            .map_err(io_err("writing", &state_path))
        })?;
        self.saved.set(Some(state.step));
        let mut keep = vec![name.as_str()];
        keep.extend(state.best_set.as_deref());
        self.dir.retain(&keep)
    }

    /// Writes the best model found at `step` in a set of its own; the next [`Checkpoints::save`] records it.
    fn save_best<M: Module>(&self, model: &M, step: usize) -> Result<String> {
        let name = best_set(step);
        self.dir.write(&name, false, |tmp| {
            save_record(model, &tmp.join("model.bpk"))
        })?;
        Ok(name)
    }
}

/// Drops the lines of `ctx`'s stage after `step` from `metrics.jsonl` (a resumed stage logs them again), and a
/// torn last line of a killed write.
fn truncate_metrics(ctx: &StageContext, step: usize) -> Result<()> {
    let path = ctx.out_dir.join("metrics.jsonl");
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                return false;
            };
            let later = v["stage"] == ctx.name.as_str()
                && v["step"].as_u64().is_some_and(|s| s as usize > step);
            !later
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    if out != text {
        write_atomic(&path, out.as_bytes())?;
    }
    Ok(())
}

/// A fingerprint of a stage's settings and training data.
fn fingerprint(ctx: &StageContext, config: &StageConfig, train: &[Encoded]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_string(config).expect("config serialises"));
    h.update(ctx.name.as_bytes());
    h.update(ctx.seed.to_le_bytes());
    for e in train {
        h.update((e.ids.len() as u64).to_le_bytes());
        for id in &e.ids {
            h.update(id.to_le_bytes());
        }
        h.update((e.label as u64).to_le_bytes());
    }
    format!("{:x}", h.finalize())
}

fn outcome(ctx: &StageContext, state: &StageState, tokens: usize, seconds: f64) -> StageOutcome {
    let n = state.losses.len();
    // The first and last 10% of steps, but at least 2 of each when there are enough, so that one noisy batch
    // does not decide whether a short run learnt.
    let k = (n / 10).max(2).min(n / 2).max(1).min(n.max(1));
    let mean = |s: &[f32]| {
        if s.is_empty() {
            f32::NAN
        } else {
            s.iter().sum::<f32>() / s.len() as f32
        }
    };
    StageOutcome {
        name: ctx.name.clone(),
        steps: state.step,
        tokens,
        seconds,
        tokens_per_second: if seconds > 0.0 {
            tokens as f64 / seconds
        } else {
            0.0
        },
        first_loss: mean(&state.losses[..k.min(n)]),
        last_loss: mean(&state.losses[n.saturating_sub(k)..]),
        best_dev: state.best_dev,
    }
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
