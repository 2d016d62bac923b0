//! Rows carried from an earlier suite record into a new one, for the tasks where the new recipe would make the
//! very runs the record holds: the two recipes differ only in stage floors (steps, tokens) and token ceilings,
//! and on that task's training split (counted as `distill` encodes it) no floor or ceiling changes a stage's
//! steps. A recipe change that
//! touches a few tasks is then rerun on those alone, and its record still covers the whole suite, each carried
//! row naming the record it came from.

use std::path::Path;

use crate::config::DistillConfig;
use crate::distill::run::train_pass;
use crate::error::{PipelineError, Result};
use crate::train::stage::steps_run;
use crate::train::StageConfig;

use super::table::{SuiteReport, SuiteRow};
use super::task::{read_json, task_config};

/// The stages whose steps a floor or ceiling sets, as (name, stage) of a config.
fn floored(c: &DistillConfig) -> [(&'static str, &StageConfig); 3] {
    [
        ("teacher-finetune", &c.teacher_finetune),
        ("tinybert-intermediate", &c.intermediate),
        ("prediction", &c.prediction),
    ]
}

/// `c` with the step and token floors and the token ceilings of `from`'s floored stages.
fn with_floors_of(c: &DistillConfig, from: &DistillConfig) -> DistillConfig {
    let mut c = c.clone();
    for (stage, f) in [
        (&mut c.teacher_finetune, &from.teacher_finetune),
        (&mut c.intermediate, &from.intermediate),
        (&mut c.prediction, &from.prediction),
    ] {
        stage.min_steps = f.min_steps;
        stage.min_tokens = f.min_tokens;
        stage.max_tokens = f.max_tokens;
    }
    c
}

/// Why a run of `done` differs from the run of `config` on a training split of `examples` examples holding
/// `tokens` real tokens, or `None` when they are the same run: the configs agree but for stage floors and
/// ceilings, and every floored stage makes as many steps under both. Augmented training data (whose size is known only
/// after augmenting) is never judged the same.
pub fn why_not_same_run(
    done: &DistillConfig,
    config: &DistillConfig,
    examples: usize,
    tokens: usize,
) -> Option<String> {
    if with_floors_of(done, config) != *config {
        return Some(
            "the recipes differ in more than the stages' step and token floors and token ceilings"
                .into(),
        );
    }
    if done == config {
        return None;
    }
    if config.augment.is_some() {
        return Some("augmented training data: its size is not known before augmenting".into());
    }
    floored(done)
        .into_iter()
        .zip(floored(config))
        .find_map(|((name, old), (_, new))| {
            let steps = examples.div_ceil(old.batch_size.max(1));
            let (was, now) = (
                steps_run(old, steps, tokens).unwrap_or(usize::MAX),
                steps_run(new, steps, tokens).unwrap_or(usize::MAX),
            );
            (was != now).then(|| {
                format!(
                    "{name} makes {now} steps of a {steps}-step pass over {tokens} tokens where the record's \
                     run made {was}"
                )
            })
        })
}

/// For each of `tasks`: the row of the record at `path` when the task has no runs of its own (`has_runs`,
/// in the order of `tasks`) and the record's runs are the runs `base` would make with `seeds` (same seeds,
/// same quick mode, and [`why_not_same_run`] on the task's split), marked as carried; else `None`, with the
/// reason logged.
pub fn carried_rows(
    path: &Path,
    base: &DistillConfig,
    tasks: &[String],
    has_runs: &[bool],
    seeds: &[u64],
    quick: bool,
    cache: &Path,
) -> Result<Vec<Option<SuiteRow>>> {
    let record: SuiteReport = read_json(path).map_err(|e| match e {
        PipelineError::Checkpoint { path, message } => PipelineError::Config {
            field: "carry_from",
            message: format!(
                "{}: not a suite record ({}); give --carry-from a suite.json or docs/records/suite-*.json",
                path.display(),
                message.split(';').next().unwrap_or_default()
            ),
        },
        other => other,
    })?;
    let source = format!(
        "{} ({})",
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        ),
        record.provenance.describe()
    );
    let mut out = Vec::with_capacity(tasks.len());
    for (task, &runs) in tasks.iter().zip(has_runs) {
        let Some(row) = record.rows.iter().find(|r| &r.task == task) else {
            out.push(None);
            continue;
        };
        let split_seed = seeds[0];
        let why = if runs {
            Some("its runs under the suite's output directory stand".into())
        } else if row.seeds != seeds {
            Some(format!("its seeds are {:?}, not {seeds:?}", row.seeds))
        } else if record.quick != quick {
            Some("the record's quick mode differs".into())
        } else {
            let new = task_config(base, task, split_seed, split_seed, quick);
            let mut old = task_config(&record.config, task, split_seed, split_seed, quick);
            old.teacher.clone_from(&new.teacher);
            let (examples, tokens) = train_pass(&new, cache)?;
            why_not_same_run(&old, &new, examples, tokens)
        };
        match why {
            Some(why) => {
                eprintln!("suite: {task}: not carried from {}: {why}", path.display());
                out.push(None);
            }
            None => {
                eprintln!(
                    "suite: {task}: carried from {} (the same runs)",
                    path.display()
                );
                out.push(Some(SuiteRow {
                    carried_from: Some(source.clone()),
                    ..row.clone()
                }));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_is_the_same_run_only_where_it_adds_no_pass() {
        let mut old = DistillConfig::default();
        old.teacher_finetune.min_tokens = 0;
        let new = DistillConfig::default();
        assert_ne!(old.teacher_finetune, new.teacher_finetune);
        // rotten-tomatoes' size: 2 teacher passes of ~250k tokens clear the 300k floor.
        assert_eq!(why_not_same_run(&old, &new, 10_246, 250_000), None);
        // debates-2016's: 26,064 tokens a pass, so the teacher's floor makes 12 passes instead of 2.
        let why = why_not_same_run(&old, &new, 898, 26_064).unwrap();
        assert!(why.contains("teacher-finetune makes 348 steps"), "{why}");
        // Just under the floor in 2 passes: one more pass, another run.
        assert!(why_not_same_run(&old, &new, 1000, 149_999).is_some());
        assert_eq!(why_not_same_run(&old, &new, 1000, 150_000), None);
        // Anything else that differs is never the same run, floors or not.
        let mut other = new.clone();
        other.temperature = 2.0;
        assert!(why_not_same_run(&old, &other, 10_246, 250_000)
            .unwrap()
            .contains("more than"));
        // The token ceilings: rotten-tomatoes' 276,276 tokens a pass stay under them, the same run;
        // spam-assassin's 300,623 lose a teacher pass (1 of 148 steps, not 2), another run.
        let mut unceiled = new.clone();
        for s in [
            &mut unceiled.teacher_finetune,
            &mut unceiled.intermediate,
            &mut unceiled.prediction,
        ] {
            s.max_tokens = 0;
        }
        assert_eq!(why_not_same_run(&unceiled, &new, 10_246, 276_276), None);
        let why = why_not_same_run(&unceiled, &new, 4_727, 300_623).unwrap();
        assert!(why.contains("teacher-finetune makes 148 steps"), "{why}");
        // A floor on the task stages only, as bbc-news's 1,779 articles (113,856 tokens a pass) met it: their
        // 2 + 3 passes already hold 200k / 300k, the same run; a step floor of 450 would make 9 passes.
        let mut task_floors_only = new.clone();
        for s in [
            &mut task_floors_only.intermediate,
            &mut task_floors_only.prediction,
        ] {
            s.min_tokens = 0;
        }
        assert_eq!(
            why_not_same_run(&task_floors_only, &new, 1_779, 113_856),
            None
        );
        task_floors_only.prediction.min_steps = 450;
        assert!(why_not_same_run(&task_floors_only, &new, 1_779, 113_856)
            .unwrap()
            .contains("prediction makes 168 steps"));
        // Identical recipes are the same run whatever the split.
        assert_eq!(why_not_same_run(&new, &new, 1, 1), None);
        // Augmented data is never judged by the split's size.
        let mut aug = new.clone();
        aug.augment = Some(Default::default());
        let mut aug_old = old.clone();
        aug_old.augment = aug.augment.clone();
        assert!(why_not_same_run(&aug_old, &aug, 10_246, 250_000).is_some());
    }
}
