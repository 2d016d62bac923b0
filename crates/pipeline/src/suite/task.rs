//! One task's run within a suite: its config (the recipe with the task's data, seeds and quick caps) and the
//! finished runs' files read back.

use std::path::Path;

use crate::config::DistillConfig;
use crate::error::{io_err, PipelineError, Result};

/// Training examples per task in `--quick` mode.
pub const QUICK_TRAIN: usize = 1200;
/// Dev and test examples per task in `--quick` mode.
pub const QUICK_EVAL: usize = 400;

/// The config of the suite's runs of `task` with `seed`, on the split of `split_seed`.
pub fn task_config(
    base: &DistillConfig,
    task: &str,
    seed: u64,
    split_seed: u64,
    quick: bool,
) -> DistillConfig {
    let mut c = DistillConfig {
        dataset: task.to_string(),
        seed,
        split_seed: Some(split_seed),
        teacher: base.teacher.clone(),
        ..base.clone()
    };
    if quick {
        c.max_train_examples = Some(
            c.max_train_examples
                .map_or(QUICK_TRAIN, |m| m.min(QUICK_TRAIN)),
        );
        c.max_eval_examples = Some(
            c.max_eval_examples
                .map_or(QUICK_EVAL, |m| m.min(QUICK_EVAL)),
        );
    }
    c
}

/// A run's JSON file (`config.json`, `report.json`) or a suite record, read back.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    serde_json::from_str(&text).map_err(|e| PipelineError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("{e}; delete the run's directory to run it again"),
    })
}
