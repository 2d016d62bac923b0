//! The papers' ablations, each row a full run of the same recipe with one thing changed:
//! - DistilBERT (general, then task distillation): the triple loss; without the MLM term; without the Hinton
//!   term; without the cosine term; random initialisation instead of copied layers.
//! - TinyBERT (general, then task distillation, with augmentation when configured): all terms; without the
//!   embedding term; without the prediction term; without the transformer (attention + hidden) terms; without
//!   general distillation (task distillation of a randomly initialised student of the same shape); and, when
//!   the recipe augments, without data augmentation.
//!
//! Rows after the first reuse its fine-tuned teacher, its fitted MLM head and its augmented training set, so
//! every row sees the same teacher and data. Writes `ablation.json` and `ablation.md`; with resume, rows with a
//! report are not run again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;

use crate::config::general::StudentInit;
use crate::config::{DistillConfig, LossTerm, Method, Stage};
use crate::distill::general::general_mix;
use crate::distill::report::Report;
use crate::distill::run::distill;
use crate::error::{io_err, Result};
use crate::train::RunOptions;

/// One row of an ablation table: the mean over the seeds and each seed's figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationRow {
    /// Short name, also the row's directory.
    pub name: String,
    /// What differs from the full method.
    pub change: String,
    /// Best dev accuracy of the student (the checkpoint kept), mean over the seeds run.
    pub dev: f64,
    /// Test accuracy of the student, mean over the seeds run.
    pub test: f64,
    /// Dev accuracy per seed, in the order of the report's `seeds` (fewer while a run is partial).
    #[serde(default)]
    pub dev_runs: Vec<f64>,
    /// Test accuracy per seed, in the order of the report's `seeds`.
    #[serde(default)]
    pub test_runs: Vec<f64>,
    /// Wall seconds of the row, summed over its runs (each in the process that ran it).
    pub seconds: f64,
}

impl AblationRow {
    /// Sample standard deviation of the dev accuracies (0 with fewer than two runs).
    pub fn dev_std(&self) -> f64 {
        sample_std(&self.dev_runs)
    }

    /// Sample standard deviation of the test accuracies (0 with fewer than two runs).
    pub fn test_std(&self) -> f64 {
        sample_std(&self.test_runs)
    }
}

/// An ablation: `ablation.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationReport {
    /// The method.
    pub method: Method,
    /// The dataset.
    pub dataset: String,
    /// The fine-tuned teacher's test accuracy.
    pub teacher_test: f64,
    /// The seeds of the runs (initialisation, data order, masking, dropout); one split for all of them.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Rows, the full method first.
    pub rows: Vec<AblationRow>,
    /// The command, commit, CPU and date of the run, so that a copy under docs/records/ is a record (set by the
    /// command line once the table is complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::record::Provenance>,
}

/// Mean of `xs` (NaN when empty).
fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n − 1) of `xs`; 0 with fewer than two values.
pub fn sample_std(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Whether the difference between the means of `a` and `b` exceeds twice their pooled standard deviation
/// √((s_a² + s_b²) / 2). False unless both have at least two runs: one run says nothing about its noise.
pub fn exceeds_noise(a: &[f64], b: &[f64]) -> bool {
    if a.len() < 2 || b.len() < 2 {
        return false;
    }
    let (sa, sb) = (sample_std(a), sample_std(b));
    let pooled = ((sa * sa + sb * sb) / 2.0).sqrt();
    (mean(a) - mean(b)).abs() > 2.0 * pooled
}

/// The rows of `method`'s ablation as (name, change, config).
pub fn ablation_configs(
    base: &DistillConfig,
    method: Method,
) -> Vec<(String, String, DistillConfig)> {
    let full = DistillConfig {
        method,
        stage: Stage::Both,
        drop_terms: Vec::new(),
        narrow_student: None,
        student_init: None,
        ..base.clone()
    };
    let drop = |terms: &[LossTerm]| DistillConfig {
        drop_terms: terms.to_vec(),
        ..full.clone()
    };
    let row =
        |name: &str, change: &str, c: DistillConfig| (name.to_string(), change.to_string(), c);
    match method {
        Method::Distilbert => {
            // DistilBERT's recipe has no data augmentation.
            let full = DistillConfig {
                augment: None,
                ..full
            };
            let drop = |terms: &[LossTerm]| DistillConfig {
                drop_terms: terms.to_vec(),
                ..full.clone()
            };
            let mut random = full.clone();
            random.general.distilbert_init = StudentInit::Random;
            vec![
                row(
                    "full",
                    "triple loss (MLM + Hinton + cosine), copied layers",
                    full.clone(),
                ),
                row("no-mlm", "without the MLM term", drop(&[LossTerm::Mlm])),
                row(
                    "no-hinton",
                    "without the Hinton term",
                    drop(&[LossTerm::Ce]),
                ),
                row(
                    "no-cosine",
                    "without the cosine term",
                    drop(&[LossTerm::Cos]),
                ),
                row(
                    "random-init",
                    "random initialisation instead of copied layers",
                    random,
                ),
            ]
        }
        Method::Tinybert => {
            let mut rows = vec![
                row(
                    "full",
                    "all terms, general then task distillation",
                    full.clone(),
                ),
                row(
                    "no-emb",
                    "without the embedding term",
                    drop(&[LossTerm::Emb]),
                ),
                row(
                    "no-pred",
                    "without the prediction term (hard labels instead)",
                    drop(&[LossTerm::Pred]),
                ),
                row(
                    "no-trm",
                    "without the transformer terms (attention + hidden)",
                    drop(&[LossTerm::Att, LossTerm::Hidden]),
                ),
                row(
                    "no-general",
                    "without general distillation (task distillation from random init)",
                    DistillConfig {
                        stage: Stage::Task,
                        narrow_student: Some(full.general.tinybert_student.clone()),
                        ..full.clone()
                    },
                ),
            ];
            if full.augment.is_some() {
                rows.push(row(
                    "no-augment",
                    "without data augmentation (task distillation on the original examples)",
                    DistillConfig {
                        augment: None,
                        ..full.clone()
                    },
                ));
            }
            rows
        }
    }
}

fn dev_of(report: &Report) -> f64 {
    report
        .stages
        .iter()
        .rev()
        .find_map(|s| s.best_dev)
        .unwrap_or(f64::NAN)
}

/// Where `seed`'s runs go: `out` itself for a single seed (the layout of one-seed tables), else
/// `out/seed-{seed}`.
fn seed_dir(out: &Path, seeds: &[u64], seed: u64) -> PathBuf {
    if seeds.len() == 1 {
        out.to_path_buf()
    } else {
        out.join(format!("seed-{seed}"))
    }
}

/// Whether `row`'s general distillation is the very stage that `full` runs: both run one, and they differ in
/// nothing it reads (the corpus, teacher, student, seed and loss mix are the same; only the dropped task-stage
/// terms or the augmentation differ). TinyBERT's rows without the prediction term and without augmentation are
/// such rows; the same seed then gives the same general student, so running it again only costs time.
pub fn same_general_stage(row: &DistillConfig, full: &DistillConfig) -> bool {
    let task_choices_dropped = |c: &DistillConfig| DistillConfig {
        drop_terms: Vec::new(),
        augment: None,
        ..c.clone()
    };
    row.stage == Stage::Both
        && full.stage == Stage::Both
        && general_mix(row) == general_mix(full)
        && task_choices_dropped(row) == task_choices_dropped(full)
}

/// One run of an ablation: `config` under `dir`, reusing the donor run's (the first seed's full row)
/// fine-tuned teacher, fitted MLM head and augmented training set, and, when given, the general distillation of
/// `general_from` (the same seed's full row, whose general stage is this row's). Returns the run's report (read
/// back when resuming a finished run).
fn run_row(
    mut config: DistillConfig,
    dir: &Path,
    (donor, general_from): (Option<&Path>, Option<&Path>),
    options: &RunOptions,
    label: &str,
) -> Result<Report> {
    let report_path = dir.join("report.json");
    let mut row_options = RunOptions {
        out_dir: dir.to_path_buf(),
        ..options.clone()
    };
    if let Some(first_dir) = donor {
        config.teacher = Some(first_dir.join("teacher"));
        let head_dir = first_dir.join("teacher-mlm");
        if head_dir.exists() {
            config.general.teacher = Some(head_dir);
        }
        let augmented = first_dir.join("augmented.jsonl");
        if config.augment.is_some() && augmented.exists() && !dir.join("augmented.jsonl").exists() {
            student_arch::io::claim_output_dir(dir, "distill", &["report.json", "checkpoints"])?;
            std::fs::copy(&augmented, dir.join("augmented.jsonl"))
                .map_err(io_err("copying", &augmented))?;
        }
        // A fresh row directory holds no checkpoints, so resuming only picks up the copied data.
        row_options.resume = true;
    }
    if options.resume && report_path.exists() {
        let text =
            std::fs::read_to_string(&report_path).map_err(io_err("reading", &report_path))?;
        return serde_json::from_str(&text).map_err(|e| crate::error::PipelineError::Checkpoint {
            path: report_path.clone(),
            message: format!("{e}; delete it to run the row again"),
        });
    }
    if let Some(full_dir) = general_from {
        let (from, to) = (full_dir.join("general"), dir.join("general"));
        if from.join("report.json").exists() && !to.exists() {
            student_arch::io::claim_output_dir(dir, "distill", &["report.json", "checkpoints"])?;
            // Copied whole, then renamed into place: an interrupted copy is never taken for a finished stage.
            let partial = dir.join("general.partial");
            crate::checkpoint::copy_dir(&from, &partial)?;
            std::fs::rename(&partial, &to).map_err(io_err("renaming into", &to))?;
            eprintln!(
                "ablation: {label}: general distillation is the full row's; copied from {}",
                from.display()
            );
        }
        // The copied stage is read back as finished, as a resumed run reads its own.
        row_options.resume = true;
    }
    eprintln!("ablation: {label}");
    distill(&config, &row_options)
}

/// Runs every row of `method`'s ablation once per seed — under `options.out_dir/{row}` for one seed,
/// `options.out_dir/seed-{s}/{row}` for several — and writes the table (`ablation.json`, `ablation.md`) after
/// every run. Every run uses the split of `base` (its `split_seed`, else its `seed`) and the first run's
/// teacher, MLM head and augmented data; the seeds vary initialisation, data order, masking and dropout.
pub fn ablate(
    base: &DistillConfig,
    method: Method,
    seeds: &[u64],
    options: &RunOptions,
) -> Result<AblationReport> {
    if seeds.is_empty() {
        return Err(crate::error::PipelineError::Config {
            field: "seeds",
            message: "an ablation needs at least one seed (e.g. --seeds 42,43,44)".into(),
        });
    }
    if let Some(seed) = seeds
        .iter()
        .find(|s| seeds.iter().filter(|t| t == s).count() > 1)
    {
        return Err(crate::error::PipelineError::Config {
            field: "seeds",
            message: format!("seed {seed} is given twice; each seed is one run of every row"),
        });
    }
    let out = options.out_dir.clone();
    student_arch::io::claim_output_dir(&out, "ablate", &["ablation.json", "ablation.md"])?;
    let configs = ablation_configs(base, method);
    let mut report = AblationReport {
        method,
        dataset: base.dataset.clone(),
        teacher_test: f64::NAN,
        seeds: seeds.to_vec(),
        rows: configs
            .iter()
            .map(|(name, change, _)| AblationRow {
                name: name.clone(),
                change: change.clone(),
                dev: f64::NAN,
                test: f64::NAN,
                dev_runs: Vec::new(),
                test_runs: Vec::new(),
                seconds: 0.0,
            })
            .collect(),
        provenance: None,
    };
    let mut donor: Option<PathBuf> = None;
    for &seed in seeds {
        let root = seed_dir(&out, seeds, seed);
        let seeded = |c: &DistillConfig| DistillConfig {
            seed,
            split_seed: Some(base.split_seed()),
            ..c.clone()
        };
        let full = seeded(&configs[0].2);
        for (i, (name, change, config)) in configs.iter().enumerate() {
            let config = seeded(config);
            let dir = root.join(name);
            let label = format!("{method:?} seed {seed}, row {name} ({change})");
            // A row whose general stage is the full row's (it drops a task-stage term or the augmentation
            // only) starts from a copy of that stage's output instead of running it again.
            let general_from =
                (i > 0 && same_general_stage(&config, &full)).then(|| root.join(&configs[0].0));
            let run = run_row(
                config,
                &dir,
                (donor.as_deref(), general_from.as_deref()),
                options,
                &label,
            )?;
            if donor.is_none() {
                report.teacher_test = run.teacher.accuracy;
                donor = Some(dir.clone());
            }
            let row = &mut report.rows[i];
            row.dev_runs.push(dev_of(&run));
            row.test_runs.push(run.student.accuracy);
            row.dev = mean(&row.dev_runs);
            row.test = mean(&row.test_runs);
            row.seconds += run.seconds;
            write_atomic(
                &out.join("ablation.json"),
                serde_json::to_string_pretty(&report)
                    .expect("report serialises")
                    .as_bytes(),
            )?;
            write_atomic(
                &out.join("ablation.md"),
                ablation_markdown(&report).as_bytes(),
            )?;
        }
    }
    Ok(report)
}

/// The paper's figure for a row: DistilBERT's Table 4 (change of the GLUE macro-score against the
/// triple loss with copied layers) and TinyBERT's ablations of its distillation objectives (Table 7) and of its
/// procedures (Table 6: without general distillation, without data augmentation), both the average score of
/// TinyBERT4 on MNLI-m, MNLI-mm, MRPC and CoLA dev. `None` where the paper has no such row.
pub fn paper_figure(method: Method, row: &str) -> Option<f64> {
    match (method, row) {
        (Method::Distilbert, "full") => Some(0.0),
        (Method::Distilbert, "no-hinton") => Some(-2.96),
        (Method::Distilbert, "no-cosine") => Some(-1.46),
        (Method::Distilbert, "no-mlm") => Some(-0.31),
        (Method::Distilbert, "random-init") => Some(-3.69),
        (Method::Tinybert, "full") => Some(75.6),
        (Method::Tinybert, "no-emb") => Some(74.1),
        (Method::Tinybert, "no-pred") => Some(73.5),
        (Method::Tinybert, "no-trm") => Some(56.3),
        (Method::Tinybert, "no-general") => Some(72.5),
        (Method::Tinybert, "no-augment") => Some(68.4),
        _ => None,
    }
}

/// The rows with a paper figure, most harmful removal first, by our mean test change and by the paper's.
pub fn orderings(r: &AblationReport) -> (Vec<String>, Vec<String>) {
    let rows: Vec<(&AblationRow, f64)> = r
        .rows
        .iter()
        .skip(1)
        .filter_map(|row| paper_figure(r.method, &row.name).map(|p| (row, p)))
        .filter(|(row, _)| !row.test_runs.is_empty())
        .collect();
    let order = |key: &dyn Fn(&(&AblationRow, f64)) -> f64| {
        let mut v = rows.clone();
        v.sort_by(|a, b| key(a).total_cmp(&key(b)));
        v.iter()
            .map(|(row, _)| row.name.clone())
            .collect::<Vec<_>>()
    };
    (order(&|(row, _)| row.test), order(&|(_, p)| *p))
}

/// The table: each row's dev and test accuracy (mean ± std over the seeds) and its difference from the full
/// method in points, marked `*` where it exceeds twice the pooled std; the paper's figure beside it; and
/// whether the order of the removals' costs agrees with the paper's.
pub fn ablation_markdown(r: &AblationReport) -> String {
    format!(
        "# Ablation: {:?} on {}\n\n{}",
        r.method,
        r.dataset,
        ablation_table(r)
    )
}

/// The tables of committed ablation records (`docs/records/ablate-*.json`), each with its run and its record.
pub fn ablation_records_markdown(records: &[(String, AblationReport)]) -> String {
    records
        .iter()
        .map(|(name, r)| {
            format!(
                "{:?} on {}. {}\nRecord: `docs/records/{name}.json`.\n",
                r.method,
                r.dataset,
                ablation_table(r)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`ablation_markdown`] without its title: what the figures are, the table, each seed's test figure, the
/// order of the removals' costs against the paper's, and the run that produced it.
fn ablation_table(r: &AblationReport) -> String {
    let n = r.rows.first().map_or(0, |f| f.test_runs.len());
    let paper_head = match r.method {
        Method::Distilbert => "paper: Δ GLUE (Table 4)",
        Method::Tinybert => "paper: avg score",
    };
    let mut s = format!(
        "Fine-tuned teacher, test accuracy: {:.4}. Seeds: {:?} ({n} run(s) per row so far), \
         one split. Δ is in accuracy points against the first row; `*` marks a difference of the means larger than \
         twice the pooled std √((s_row² + s_full²)/2) (needs two or more seeds).\n\n",
        r.teacher_test, r.seeds
    );
    s += &format!(
        "| row | change | dev acc | Δ dev | test acc | Δ test | {paper_head} | seconds |\n|---|---|---|---|---|---|---|---|\n"
    );
    let full = r.rows.first();
    let acc = |m: f64, sd: f64, runs: usize| {
        if runs > 1 {
            format!("{m:.4} ± {sd:.4}")
        } else {
            format!("{m:.4}")
        }
    };
    let delta = |row: f64, full: f64, a: &[f64], b: &[f64]| {
        let mark = if exceeds_noise(a, b) { " *" } else { "" };
        format!("{:+.1}{mark}", 100.0 * (row - full))
    };
    for row in &r.rows {
        if row.test_runs.is_empty() && row.test.is_nan() {
            s += &format!(
                "| {} | {} | not run yet | | | | | |\n",
                row.name, row.change
            );
            continue;
        }
        let (fd, ft, fdr, ftr) = full.map_or((f64::NAN, f64::NAN, &[][..], &[][..]), |f| {
            (f.dev, f.test, &f.dev_runs[..], &f.test_runs[..])
        });
        let paper =
            paper_figure(r.method, &row.name).map_or("—".to_string(), |p| match r.method {
                Method::Distilbert => format!("{p:+.2}"),
                Method::Tinybert => format!("{p:.1}"),
            });
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            row.name,
            row.change,
            acc(row.dev, row.dev_std(), row.dev_runs.len()),
            delta(row.dev, fd, &row.dev_runs, fdr),
            acc(row.test, row.test_std(), row.test_runs.len()),
            delta(row.test, ft, &row.test_runs, ftr),
            paper,
            row.seconds
        );
    }
    let (ours, paper) = orderings(r);
    if ours.len() > 1 {
        s +=
            &format!(
            "\nCost of each removal, largest first — here (mean test): {}; in the paper: {}. {}\n",
            ours.join(" > "),
            paper.join(" > "),
            if ours == paper { "The orders agree." } else { "The orders differ." }
        );
    }
    if r.rows.iter().any(|row| row.test_runs.len() > 1) {
        let per_row: Vec<String> = r
            .rows
            .iter()
            .filter(|row| !row.test_runs.is_empty())
            .map(|row| {
                let runs: Vec<String> = row.test_runs.iter().map(|t| format!("{t:.3}")).collect();
                format!("{} {}", row.name, runs.join(" / "))
            })
            .collect();
        s += &format!("\nPer seed, test: {}.\n", per_row.join("; "));
    }
    if let Some(p) = &r.provenance {
        s += &format!("\nRun: {}.\n", p.describe());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, test_runs: &[f64]) -> AblationRow {
        AblationRow {
            name: name.into(),
            change: String::new(),
            dev: mean(test_runs),
            test: mean(test_runs),
            dev_runs: test_runs.to_vec(),
            test_runs: test_runs.to_vec(),
            seconds: 1.0,
        }
    }

    #[test]
    fn tinybert_rows_drop_augmentation_only_when_the_recipe_augments() {
        let plain = DistillConfig::default();
        assert_eq!(
            names_of(&plain, Method::Tinybert),
            ["full", "no-emb", "no-pred", "no-trm", "no-general"]
        );
        let augmented = DistillConfig {
            augment: Some(crate::data::augment::AugmentConfig::default()),
            ..plain
        };
        let rows = ablation_configs(&augmented, Method::Tinybert);
        assert_eq!(rows.len(), 6);
        let (name, _, last) = &rows[5];
        assert_eq!(name, "no-augment");
        assert!(last.augment.is_none() && last.stage == Stage::Both && last.drop_terms.is_empty());
        assert!(rows[..5].iter().all(|(_, _, c)| c.augment.is_some()));
        // DistilBERT's recipe never augments, so it has no such row.
        assert!(!names_of(&augmented, Method::Distilbert).contains(&"no-augment".to_string()));
    }

    #[test]
    fn rows_share_the_full_rows_general_stage_only_where_they_change_a_task_stage_alone() {
        let augmented = DistillConfig {
            augment: Some(crate::data::augment::AugmentConfig::default()),
            ..DistillConfig::default()
        };
        let sharing = |method: Method| -> Vec<String> {
            let rows = ablation_configs(&augmented, method);
            let full = &rows[0].2;
            rows.iter()
                .skip(1)
                .filter(|(_, _, c)| same_general_stage(c, full))
                .map(|(name, _, _)| name.clone())
                .collect()
        };
        // TinyBERT's general stage has no prediction term and no augmentation; every DistilBERT row changes
        // its general stage (a term of the triple loss, or the student's initialisation).
        assert_eq!(sharing(Method::Tinybert), ["no-pred", "no-augment"]);
        assert!(sharing(Method::Distilbert).is_empty());
        // Another seed is another stage.
        let rows = ablation_configs(&augmented, Method::Tinybert);
        let other_seed = DistillConfig {
            seed: 7,
            ..rows[2].2.clone()
        };
        assert!(!same_general_stage(&other_seed, &rows[0].2));
    }

    fn names_of(c: &DistillConfig, method: Method) -> Vec<String> {
        ablation_configs(c, method)
            .into_iter()
            .map(|(name, _, _)| name)
            .collect()
    }

    #[test]
    fn noise_test_by_hand() {
        // a: mean 0.70, sample std 0.01; b: mean 0.67, sample std 0.01 → pooled 0.01, |Δ| 0.03 > 0.02.
        let a = [0.69, 0.70, 0.71];
        assert!((sample_std(&a) - 0.01).abs() < 1e-12);
        assert!(exceeds_noise(&a, &[0.66, 0.67, 0.68]));
        // Δ 0.015 < 0.02: within the noise.
        assert!(!exceeds_noise(&a, &[0.675, 0.685, 0.695]));
        // Pooled over unequal spreads: stds 0.01 and 0.03 → √((1e-4 + 9e-4)/2) ≈ 0.02236; Δ 0.04 < 0.0447.
        assert!(!exceeds_noise(&a, &[0.63, 0.66, 0.69]));
        // One run says nothing about noise.
        assert!(!exceeds_noise(&[0.7], &[0.1]));
        assert_eq!(sample_std(&[0.5]), 0.0);
    }

    #[test]
    fn table_marks_differences_and_orders_against_the_paper() {
        let r = AblationReport {
            method: Method::Tinybert,
            dataset: "d".into(),
            teacher_test: 0.8,
            seeds: vec![1, 2, 3],
            rows: vec![
                row("full", &[0.69, 0.70, 0.71]),
                row("no-emb", &[0.68, 0.69, 0.70]),
                row("no-pred", &[0.66, 0.67, 0.68]),
                row("no-trm", &[0.55, 0.56, 0.57]),
                row("no-general", &[0.60, 0.61, 0.62]),
                row("no-augment", &[0.58, 0.59, 0.60]),
                row("unknown-row", &[0.69, 0.70, 0.71]),
            ],
            provenance: None,
        };
        let md = ablation_markdown(&r);
        assert!(
            md.contains("| no-emb |  | 0.6900 ± 0.0100 | -1.0 | 0.6900 ± 0.0100 | -1.0 | 74.1 |"),
            "{md}"
        );
        assert!(
            md.contains("| -3.0 * | 0.6700 ± 0.0100 | -3.0 * | 73.5 |"),
            "{md}"
        );
        // Table 6 of TinyBERT (procedures) beside Table 7 (objectives); a row the paper lacks gets a dash and
        // stays out of the order.
        assert!(md.contains("| -9.0 * | 72.5 |"), "{md}");
        assert!(md.contains("| -11.0 * | 68.4 |"), "{md}");
        assert!(md.contains("| +0.0 | — |"), "{md}");
        assert!(
            md.contains(
                "no-trm > no-augment > no-general > no-pred > no-emb; \
                 in the paper: no-trm > no-augment > no-general > no-pred > no-emb. The orders agree."
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "Per seed, test: full 0.690 / 0.700 / 0.710; no-emb 0.680 / 0.690 / 0.700;"
            ),
            "{md}"
        );
        // A record names its run and its file.
        let recorded = AblationReport {
            provenance: Some(crate::record::Provenance {
                command: "cargo xtask ablate --method tinybert".into(),
                commit: "abc".into(),
                cpu: "cpu".into(),
                date: "2026-12-03".into(),
            }),
            ..r.clone()
        };
        let rec = ablation_records_markdown(&[("ablate-x".into(), recorded)]);
        assert!(
            rec.starts_with("Tinybert on d. Fine-tuned teacher")
                && rec.contains(
                    "Run: `cargo xtask ablate --method tinybert` at commit abc on cpu, 2026-12-03."
                )
                && rec.ends_with("Record: `docs/records/ablate-x.json`.\n")
                && !rec.contains("# Ablation"),
            "{rec}"
        );
        let mut swapped = r.clone();
        swapped.rows[1] = row("no-emb", &[0.64, 0.65, 0.66]);
        assert!(ablation_markdown(&swapped).contains("The orders differ."));
        // An old one-seed report (no per-seed figures) still reads and prints without a ± or a mark.
        let old: AblationReport = serde_json::from_str(
            r#"{"method":"distilbert","dataset":"d","teacher_test":0.8,"rows":[{"name":"full","change":"c","dev":0.7,"test":0.6,"seconds":3.0}]}"#,
        )
        .unwrap();
        assert!(old.seeds.is_empty() && !ablation_markdown(&old).contains('±'));
        // A partial table says which rows have not run yet instead of printing NaN.
        let mut partial = r.clone();
        partial.rows[4] = AblationRow {
            dev: f64::NAN,
            test: f64::NAN,
            dev_runs: vec![],
            test_runs: vec![],
            seconds: 0.0,
            ..row("no-general", &[])
        };
        let md = ablation_markdown(&partial);
        assert!(
            md.contains("| no-general |  | not run yet |") && !md.contains("NaN"),
            "{md}"
        );
    }
}
