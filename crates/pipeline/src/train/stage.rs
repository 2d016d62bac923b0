//! The training loop shared by every stage ([`run_stage`]): AdamW with linear warm-up and decay, gradient
//! clipping, a progress bar with the loss terms, a JSON-lines metrics log, evaluation every N steps, the best
//! model kept, checkpoints, resume, and a clear stop on a NaN or infinite loss.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use kd_losses::LossTerms;
use student_arch::BertInput;

use crate::error::{PipelineError, Result};
use crate::train::context::{
    batch_input, epoch_batches, learning_rate, load_record, optimizer, optimizer_step, Encoded,
    StageConfig, StageContext, StageOutcome,
};
use crate::train::progress::Progress;
use crate::train::resume::{fingerprint, Checkpoints, StageState};

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
    let tokens_per_epoch = train.iter().map(|e| e.ids.len()).sum::<usize>();
    let total_steps = steps_run(config, steps_per_epoch, tokens_per_epoch).ok_or_else(|| {
        PipelineError::Config {
            field: "epochs",
            message: format!(
                "{} epochs of {steps_per_epoch} steps overflow; use fewer",
                config.epochs
            ),
        }
    })?;
    let files = Checkpoints::new(ctx, config.keep_checkpoints)?;
    let fresh = StageState {
        total_steps,
        fingerprint: fingerprint(ctx, config, train),
        ..Default::default()
    };
    let (mut model, mut optim, mut state) = files.resume(model, optimizer(config), fresh)?;
    if state.done {
        return Ok((model, outcome(ctx, &state, 0, 0.0, 0)));
    }
    let mut bar = Progress::start(&ctx.name, total_steps, state.step);
    let started = Instant::now();
    let mut last_save = Instant::now();
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
            bar.abandon("stopped; continue with --resume");
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
        let batch_tokens = batch.iter().map(|e| e.ids.len()).sum::<usize>();
        tokens += batch_tokens;
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
        log_step(ctx, state.step, lr, &values)?;
        bar.step(batch_tokens, &values);
        // A stage cut short by its token ceiling ends inside a pass: it is evaluated there too.
        let end_of_epoch = state.step % steps_per_epoch == 0 || state.step == total_steps;
        if (config.eval_every > 0 && state.step % config.eval_every == 0) || end_of_epoch {
            evaluate_now(&model, &mut state)?;
        }
        // The last step's set is written once the stage is marked done, below.
        if checkpoint_due(config, state.step, last_save.elapsed()) && state.step < total_steps {
            files.save(&model, &optim, &state)?;
            last_save = Instant::now();
        }
    }
    bar.finish();
    state.done = true;
    files.save(&model, &optim, &state)?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(best) = &state.best_set {
        model = load_record(model, &ctx.dir().join(best).join("model.bpk"))?;
    }
    Ok((
        model,
        outcome(ctx, &state, tokens, seconds, files.bytes_written()),
    ))
}

/// The whole passes the floors alone ask for: enough for `min_steps` steps and `min_tokens` real tokens.
fn floor_passes(config: &StageConfig, steps_per_epoch: usize, tokens_per_epoch: usize) -> usize {
    config
        .min_steps
        .div_ceil(steps_per_epoch.max(1))
        .max(config.min_tokens.div_ceil(tokens_per_epoch.max(1)))
}

/// The optimizer steps a stage makes (`None` on overflow): `epochs` passes, or more whole passes when that is
/// fewer than `min_steps` steps or `min_tokens` real tokens (a pass holding `tokens_per_epoch`); fewer when they
/// would hold more than `max_tokens` real tokens (whole passes, at least one; a part of one pass, of the steps
/// that hold `max_tokens` at the pass's mean tokens a step, when one pass holds more), and never fewer than the
/// floors ask.
pub fn steps_run(
    config: &StageConfig,
    steps_per_epoch: usize,
    tokens_per_epoch: usize,
) -> Option<usize> {
    let (steps, tokens) = (steps_per_epoch.max(1), tokens_per_epoch.max(1));
    let floor = floor_passes(config, steps, tokens);
    let mut passes = config.epochs.max(floor);
    if config.max_tokens > 0 {
        let fit = config.max_tokens / tokens;
        if fit == 0 && floor <= 1 {
            let part = (config.max_tokens as u128 * steps as u128).div_ceil(tokens as u128);
            return Some((part as usize).clamp(1, steps));
        }
        passes = passes.min(fit.max(1)).max(floor);
    }
    steps.checked_mul(passes)
}

/// Whether a checkpoint set is due after `step`: every `checkpoint_every` steps when that is set, and whenever
/// `checkpoint_minutes` have passed since the last set.
pub fn checkpoint_due(config: &StageConfig, step: usize, since_last: std::time::Duration) -> bool {
    (config.checkpoint_every > 0 && step.is_multiple_of(config.checkpoint_every))
        || since_last.as_secs_f64() >= 60.0 * config.checkpoint_minutes
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

/// Appends the step to `metrics.jsonl`.
fn log_step(
    ctx: &StageContext,
    step: usize,
    lr: f64,
    values: &[(&'static str, f32)],
) -> Result<()> {
    let mut record = serde_json::json!({"stage": ctx.name, "step": step, "lr": lr});
    for (name, v) in values {
        record[*name] = serde_json::json!(v);
    }
    ctx.log(record)
}

fn outcome(
    ctx: &StageContext,
    state: &StageState,
    tokens: usize,
    seconds: f64,
    checkpoint_bytes: u64,
) -> StageOutcome {
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
        checkpoint_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_step_floor_adds_whole_passes_to_small_sets_only() {
        let c = StageConfig {
            epochs: 2,
            min_steps: 300,
            ..Default::default()
        };
        // 28 steps a pass (898 examples): 11 passes (308 steps) instead of 2.
        assert_eq!(steps_run(&c, 28, 26_064), Some(28 * 11));
        // 321 steps a pass: the epochs already exceed the floor.
        assert_eq!(steps_run(&c, 321, 276_276), Some(321 * 2));
        assert_eq!(steps_run(&StageConfig::default(), 5, 100), Some(5));
    }

    #[test]
    fn a_token_floor_stretches_few_short_texts_but_not_long_ones() {
        let c = StageConfig {
            epochs: 2,
            min_tokens: 200_000,
            ..Default::default()
        };
        // debates-2016: 898 statements, 26,064 tokens a pass: ceil(200000 / 26064) = 8 passes.
        assert_eq!(steps_run(&c, 29, 26_064), Some(29 * 8));
        // bbc-news: 1,779 articles at 64 tokens, 113,856 a pass: 2 passes already hold 227,712.
        assert_eq!(steps_run(&c, 56, 113_856), Some(56 * 2));
        // Exactly on the floor: no extra pass.
        assert_eq!(steps_run(&c, 10, 100_000), Some(10 * 2));
        assert_eq!(steps_run(&c, 10, 99_999), Some(10 * 3));
        // Both floors: the larger number of passes wins.
        let both = StageConfig {
            min_steps: 300,
            ..c
        };
        assert_eq!(steps_run(&both, 29, 26_064), Some(29 * 11));
        assert_eq!(steps_run(&both, 100, 20_000), Some(100 * 10));
    }

    #[test]
    fn a_token_ceiling_cuts_long_sets_to_fewer_passes_or_a_part_of_one() {
        let c = StageConfig {
            epochs: 3,
            min_tokens: 300_000,
            max_tokens: 870_000,
            ..Default::default()
        };
        // rotten-tomatoes: 321 steps of 276,276 tokens a pass: 3 passes (828,828) fit under the ceiling.
        assert_eq!(steps_run(&c, 321, 276_276), Some(963));
        // spam-assassin: 148 steps of 300,623 tokens: 3 passes would hold 901,869; 2 fit.
        assert_eq!(steps_run(&c, 148, 300_623), Some(296));
        // Exactly on the ceiling: the passes stand.
        assert_eq!(steps_run(&c, 100, 290_000), Some(300));
        // One pass of 2,000,000 tokens over 1,000 steps: the 435 steps that hold 870,000.
        assert_eq!(steps_run(&c, 1_000, 2_000_000), Some(435));
        // Few short texts: the floor's passes, untouched by the ceiling.
        assert_eq!(steps_run(&c, 29, 26_064), Some(29 * 12));
        // A floor above the ceiling's whole passes wins: ceil(300000 / 295000) = 2 passes, where 1 fits 580,000.
        let tight = StageConfig {
            max_tokens: 580_000,
            ..c.clone()
        };
        assert_eq!(steps_run(&tight, 100, 295_000), Some(200));
        // A step floor over a part-pass ceiling: the floor's passes.
        let stepped = StageConfig {
            min_steps: 1_500,
            ..c.clone()
        };
        assert_eq!(steps_run(&stepped, 1_000, 2_000_000), Some(2_000));
        // No ceiling: epochs and floors alone; overflow is None.
        assert_eq!(steps_run(&StageConfig::default(), 5, 100), Some(5));
        let huge = StageConfig {
            epochs: usize::MAX,
            ..Default::default()
        };
        assert_eq!(steps_run(&huge, 2, 100), None);
    }

    #[test]
    fn checkpoints_by_time_and_optionally_by_steps() {
        let by_time = StageConfig::default();
        assert_eq!(by_time.checkpoint_every, 0);
        assert!(!checkpoint_due(&by_time, 20, Duration::from_secs(599)));
        assert!(checkpoint_due(&by_time, 21, Duration::from_secs(600)));
        let both = StageConfig {
            checkpoint_every: 5,
            checkpoint_minutes: 1.0,
            ..Default::default()
        };
        assert!(checkpoint_due(&both, 10, Duration::ZERO));
        assert!(!checkpoint_due(&both, 11, Duration::from_secs(59)));
        assert!(checkpoint_due(&both, 11, Duration::from_secs(60)));
        let bad = StageConfig {
            checkpoint_minutes: 0.0,
            ..Default::default()
        };
        assert!(bad
            .validate("intermediate")
            .unwrap_err()
            .to_string()
            .contains("checkpoint_minutes"));
    }
}
