//! Resuming a stage: its state, its checkpoint sets (see [`crate::checkpoint`]), the check that a resumed run has
//! the same settings and data, and `metrics.jsonl` cut back to the resumed step.

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;

use crate::checkpoint::{best_set, step_set, CheckpointDir};
use crate::error::{io_err, PipelineError, Result};
use crate::train::context::{
    load_record, save_record, Encoded, StageConfig, StageContext, KEEP_CHECKPOINTS,
};

/// A stage's progress, saved in every checkpoint set as `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageState {
    pub step: usize,
    pub done: bool,
    pub best_dev: Option<f64>,
    /// The checkpoint set of the best model (`best-…`), when there is one.
    pub best_set: Option<String>,
    pub losses: Vec<f32>,
    /// The stage's steps in all, and a fingerprint of its settings and training data: a resume must match both.
    pub total_steps: usize,
    pub fingerprint: String,
}

/// A stage's checkpoints (see [`crate::checkpoint`]): each a set of the model, the optimizer and the state;
/// the best model in a set of its own, named by the state.
pub struct Checkpoints<'a> {
    ctx: &'a StageContext,
    /// Step sets kept (`StageConfig::keep_checkpoints`).
    keep: usize,
    dir: CheckpointDir,
    /// The step of the set written last in this process.
    saved: std::cell::Cell<Option<usize>>,
    /// Bytes of the checkpoint sets written in this process.
    written: std::cell::Cell<u64>,
}

impl<'a> Checkpoints<'a> {
    pub fn new(ctx: &'a StageContext, keep: usize) -> Result<Self> {
        Ok(Self {
            ctx,
            keep,
            dir: CheckpointDir::open(&ctx.dir())?,
            saved: std::cell::Cell::new(None),
            written: std::cell::Cell::new(0),
        })
    }

    /// Bytes of the checkpoint sets written in this process.
    pub fn bytes_written(&self) -> u64 {
        self.written.get()
    }

    /// The best-model set that the state of step set `name` names, if it can be read.
    fn best_of(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.root().join(name).join("state.json")).ok()?;
        serde_json::from_str::<StageState>(&text).ok()?.best_set
    }

    /// The model, optimizer and state to continue from: the newest complete set when resuming (the best model
    /// of a finished stage), checked against its manifest and against this stage's settings; else those given
    /// and a fresh state (earlier sets removed).
    pub fn resume<M: Module>(
        &self,
        model: M,
        optim: ModuleOptimizer,
        fresh: StageState,
    ) -> Result<(M, ModuleOptimizer, StageState)> {
        let latest = if self.ctx.resume {
            self.dir.latest_usable()?
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
    pub fn save<M: Module>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        state: &StageState,
    ) -> Result<()> {
        if !state.done && self.saved.get() == Some(state.step) {
            return Ok(());
        }
        let name = step_set(state.step);
        let set = self.dir.write(&name, true, |tmp| {
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
        self.written
            .set(self.written.get() + CheckpointDir::set_bytes(&set));
        // The newest `keep_checkpoints` step sets (a damaged newest one falls back to the one before), and the
        // best-model sets their states name.
        let sets = self.dir.step_sets()?;
        let kept: Vec<String> = sets
            .iter()
            .rev()
            .take(self.ctx_keep())
            .map(|(_, n)| n.clone())
            .collect();
        let mut bests: Vec<String> = kept.iter().filter_map(|n| self.best_of(n)).collect();
        bests.extend(state.best_set.clone());
        let mut keep: Vec<&str> = kept.iter().map(String::as_str).collect();
        keep.push(name.as_str());
        keep.extend(bests.iter().map(String::as_str));
        self.dir.retain(&keep)
    }

    fn ctx_keep(&self) -> usize {
        self.keep.max(1)
    }

    /// Writes the best model found at `step` in a set of its own; the next [`Checkpoints::save`] records it.
    pub fn save_best<M: Module>(&self, model: &M, step: usize) -> Result<String> {
        let name = best_set(step);
        let set = self.dir.write(&name, false, |tmp| {
            save_record(model, &tmp.join("model.bpk"))
        })?;
        self.written
            .set(self.written.get() + CheckpointDir::set_bytes(&set));
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
pub fn fingerprint(ctx: &StageContext, config: &StageConfig, train: &[Encoded]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // How often checkpoints are written does not change the result, so a resume may change it.
    let settings = StageConfig {
        checkpoint_every: 0,
        checkpoint_minutes: 0.0,
        keep_checkpoints: KEEP_CHECKPOINTS,
        ..config.clone()
    };
    h.update(serde_json::to_string(&settings).expect("config serialises"));
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
