//! `cargo xtask suite`: one recipe on several real tasks of different kinds, several seeds each — the
//! yardstick of every recipe change. Runs go seed by seed (every task's first seed, then every task's second). Each task is split once (by the first seed) and its teacher fine-tuned
//! once, by the first seed's run; the other seeds, and later suites given `teachers_from`, reuse that
//! teacher. Every finished run is read back from its `report.json`, so an interrupted suite continues where it
//! stopped. Writes `suite.json` (the record) and `suite.md` (its table) after every run.
//!
//! Layout: `out/{task}/seed-{seed}/` is one `distill` run (its checkpoints removed once its report is written).

pub mod carry;
pub mod table;
pub mod task;

use std::path::{Path, PathBuf};

use student_arch::io::write_atomic;

use crate::config::DistillConfig;
use crate::data::labelled::Columns;
use crate::data::tasks::load_dataset;
use crate::distill::report::Report;
use crate::distill::run::{distill, train_pass};
use crate::error::{io_err, PipelineError, Result};
use crate::record::Provenance;
use crate::train::RunOptions;
use table::{suite_markdown, SuiteReport, SuiteRow};
use task::read_json;
pub use task::{task_config, QUICK_EVAL, QUICK_TRAIN};

/// The suite's built-in tasks with what each classifies.
pub const SUITE_TASKS: [(&str, &str); 5] = [
    ("rotten-tomatoes", "sentiment"),
    ("bbc-news", "news topic"),
    ("convention-party", "speaker's party"),
    ("debates-2016", "speaker's side"),
    ("spam-assassin", "spam"),
];

/// What a suite runs.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Tasks: built-in names (see [`SUITE_TASKS`]) or labelled files read with the config's columns.
    pub tasks: Vec<String>,
    /// Seeds of every task's runs; the first also seeds the split.
    pub seeds: Vec<u64>,
    /// Cap every task's data at [`QUICK_TRAIN`] / [`QUICK_EVAL`] examples (screening).
    pub quick: bool,
    /// The recipe's name in the record.
    pub recipe: String,
    /// Other suites' output directories whose fine-tuned teachers may be reused (same task, split and teacher
    /// recipe).
    pub teachers_from: Vec<PathBuf>,
    /// The command, commit, CPU and date for the record.
    pub provenance: Provenance,
    /// Run nothing: the record of the runs already finished under the output directory (runs made by earlier
    /// invocations, e.g. with other task orders or seeds), the missing ones left out.
    pub record_only: bool,
    /// An earlier suite record whose rows stand for the tasks where this recipe makes the same runs
    /// ([`carry::carried_rows`]); those tasks are not run again.
    pub carry_from: Option<PathBuf>,
}

/// Whether a teacher fine-tuned by a run of `donor` can serve a run of `wanted`: same data, split, training
/// subset, input length, base teacher, classifier head and fine-tuning settings.
pub fn same_teacher_recipe(
    donor: &DistillConfig,
    wanted: &DistillConfig,
    base_teacher: &Option<PathBuf>,
) -> bool {
    donor.dataset == wanted.dataset
        && donor.columns == wanted.columns
        && donor.split_seed() == wanted.split_seed()
        && donor.dev_fraction == wanted.dev_fraction
        && donor.test_fraction == wanted.test_fraction
        && donor.max_train_examples == wanted.max_train_examples
        && donor.max_length == wanted.max_length
        && donor.teacher_finetune == wanted.teacher_finetune
        && donor.head == wanted.head
        && (donor.teacher.is_none() || donor.teacher == *base_teacher)
}

/// A finished run in `dir` whose teacher fits `wanted`: the run directory (its `teacher/` is the classifier).
fn reusable_teacher(
    dir: &Path,
    wanted: &DistillConfig,
    base_teacher: &Option<PathBuf>,
) -> Option<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.join("report.json").exists() && p.join("teacher").join("classifier.json").exists()
        })
        .collect();
    runs.sort();
    runs.into_iter().find(|run| {
        read_json::<DistillConfig>(&run.join("config.json"))
            .is_ok_and(|donor| same_teacher_recipe(&donor, wanted, base_teacher))
    })
}

/// The seconds the teacher's fine-tuning took in the run that did it (0 when that run reused one).
fn teacher_seconds(report: &Report) -> f64 {
    report
        .stages
        .iter()
        .filter(|s| s.name == "teacher-finetune")
        .map(|s| s.seconds)
        .sum()
}

/// The best dev accuracy of the teacher's fine-tuning in the run that did it (`None` when that run reused one).
fn teacher_dev(report: &Report) -> Option<f64> {
    report
        .stages
        .iter()
        .find(|s| s.name == "teacher-finetune")
        .and_then(|s| s.best_dev)
}

/// Median words per text of a task, from its whole dataset.
fn median_words(task: &str, columns: &Columns, cache: &Path) -> Result<usize> {
    let d = load_dataset(task, columns, None, cache)?;
    let mut words: Vec<usize> = d
        .examples
        .iter()
        .map(|e| e.text.split_whitespace().count())
        .collect();
    words.sort_unstable();
    Ok(words.get(words.len() / 2).copied().unwrap_or(0))
}

/// Per task: its empty row and the run whose fine-tuned teacher the other runs reuse (found under `out` or
/// `suite.teachers_from`, else `None` until the first run fine-tunes one).
fn task_rows(
    base: &DistillConfig,
    suite: &SuiteOptions,
    out: &Path,
    split_seed: u64,
    cache: &Path,
) -> Result<(Vec<SuiteRow>, Vec<Option<PathBuf>>)> {
    let mut rows = Vec::with_capacity(suite.tasks.len());
    let mut donors = Vec::with_capacity(suite.tasks.len());
    for task in &suite.tasks {
        let kind = SUITE_TASKS
            .iter()
            .find(|(name, _)| name == task)
            .map_or("user file", |(_, kind)| kind);
        let first = task_config(base, task, split_seed, split_seed, suite.quick);
        let donor = std::iter::once(out.join(sanitise(task)))
            .chain(suite.teachers_from.iter().map(|d| d.join(sanitise(task))))
            .find_map(|d| reusable_teacher(&d, &first, &base.teacher));
        let (teacher_secs, teacher_dev_acc) = match &donor {
            Some(d) => {
                let report: Report = read_json(&d.join("report.json"))?;
                (teacher_seconds(&report), teacher_dev(&report))
            }
            None => (0.0, None),
        };
        rows.push(SuiteRow {
            task: task.clone(),
            kind: kind.to_string(),
            labels: Vec::new(),
            split_sizes: [0; 3],
            median_words: median_words(task, &base.columns, cache)?,
            teacher: f64::NAN,
            teacher_seconds: teacher_secs,
            teacher_dev: teacher_dev_acc,
            seeds: Vec::new(),
            student: Vec::new(),
            student_dev: Vec::new(),
            seconds: Vec::new(),
            carried_from: None,
        });
        donors.push(donor);
    }
    Ok((rows, donors))
}

/// Runs `base` on every task of `suite` with every seed under `options.out_dir`, reusing finished runs and
/// fine-tuned teachers, and returns the record it also writes (`suite.json`, `suite.md`).
pub fn run_suite(
    base: &DistillConfig,
    suite: &SuiteOptions,
    options: &RunOptions,
) -> Result<SuiteReport> {
    if suite.seeds.is_empty() || suite.tasks.is_empty() {
        return Err(PipelineError::Config {
            field: "suite",
            message: "a suite needs at least one task and one seed (e.g. --seeds 42,43,44)".into(),
        });
    }
    if let Some(s) = suite
        .seeds
        .iter()
        .find(|s| suite.seeds.iter().filter(|t| t == s).count() > 1)
    {
        return Err(PipelineError::Config {
            field: "seeds",
            message: format!("seed {s} is given twice; each seed is one run of every task"),
        });
    }
    base.validate()?;
    let out = options.out_dir.clone();
    student_arch::io::claim_output_dir(&out, "suite", &["suite.json"])?;
    let split_seed = suite.seeds[0];
    let mut report = SuiteReport {
        provenance: suite.provenance.clone(),
        recipe: suite.recipe.clone(),
        quick: suite.quick,
        device: options.device_name.clone(),
        config: base.clone(),
        rows: Vec::new(),
        seconds: 0.0,
    };
    let total = suite.tasks.len() * suite.seeds.len();
    let (mut rows, mut donors) = task_rows(base, suite, &out, split_seed, &options.cache)?;
    let carried = match &suite.carry_from {
        Some(path) => {
            // A task whose first seed finished under --out keeps its runs: a row measured anew is not
            // replaced by a carried one.
            let has_runs: Vec<bool> = suite
                .tasks
                .iter()
                .map(|task| {
                    out.join(sanitise(task))
                        .join(format!("seed-{split_seed}"))
                        .join("report.json")
                        .exists()
                })
                .collect();
            carry::carried_rows(
                path,
                base,
                &suite.tasks,
                &has_runs,
                &suite.seeds,
                suite.quick,
                &options.cache,
            )?
        }
        None => vec![None; suite.tasks.len()],
    };
    for (row, c) in rows.iter_mut().zip(&carried) {
        if let Some(c) = c {
            *row = c.clone();
        }
    }
    // Seed by seed, so that an interrupted suite has every task's first seed before any task's second.
    for (s, &seed) in suite.seeds.iter().enumerate() {
        for (t, task) in suite.tasks.iter().enumerate() {
            let config = task_config(base, task, seed, split_seed, suite.quick);
            let dir = out.join(sanitise(task)).join(format!("seed-{seed}"));
            if carried[t].is_some() || (suite.record_only && !dir.join("report.json").exists()) {
                continue;
            }
            eprintln!(
                "suite: {task} seed {seed} (run {} of {total}){}",
                s * suite.tasks.len() + t + 1,
                match &donors[t] {
                    Some(d) => format!(", teacher from {}", d.display()),
                    None => ", fine-tuning the teacher".into(),
                }
            );
            let run = run_one(config, &dir, donors[t].as_deref(), options)?;
            let row = &mut rows[t];
            if donors[t].is_none() {
                row.teacher_seconds = teacher_seconds(&run);
                row.teacher_dev = teacher_dev(&run);
                donors[t] = Some(dir.clone());
            }
            row.labels = run.labels.clone();
            row.split_sizes = run.split_sizes;
            row.teacher = run.teacher.accuracy;
            row.seeds.push(seed);
            row.student.push(run.student.accuracy);
            row.student_dev.push(
                run.stages
                    .iter()
                    .rev()
                    .find_map(|st| st.best_dev)
                    .unwrap_or(f64::NAN),
            );
            row.seconds.push(run.seconds - teacher_seconds(&run));
            write_record(&mut report, &rows, &out)?;
        }
    }
    write_record(&mut report, &rows, &out)?;
    Ok(report)
}

/// Puts the rows with runs into `report` and writes it (`suite.json`) and its table (`suite.md`) under `out`.
fn write_record(report: &mut SuiteReport, rows: &[SuiteRow], out: &Path) -> Result<()> {
    report.rows = rows
        .iter()
        .filter(|r| !r.seeds.is_empty())
        .cloned()
        .collect();
    report.seconds = report
        .rows
        .iter()
        .map(|r| r.teacher_seconds + r.seconds.iter().sum::<f64>())
        .sum();
    write_atomic(
        &out.join("suite.json"),
        serde_json::to_string_pretty(report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    write_atomic(&out.join("suite.md"), suite_markdown(report).as_bytes())?;
    Ok(())
}

/// A task's directory name: a file path's name without extension, other characters kept.
fn sanitise(task: &str) -> String {
    let name = Path::new(task)
        .file_stem()
        .map_or(task.to_string(), |s| s.to_string_lossy().into_owned());
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One run of the suite: read back when `dir` holds its report (refused if that run had another recipe),
/// else run (continuing an interrupted run) with the donor's teacher, and its checkpoints removed after.
fn run_one(
    mut config: DistillConfig,
    dir: &Path,
    donor: Option<&Path>,
    options: &RunOptions,
) -> Result<Report> {
    let report_path = dir.join("report.json");
    if report_path.exists() {
        let mut done: DistillConfig = read_json(&dir.join("config.json"))?;
        done.teacher.clone_from(&config.teacher);
        if done != config {
            // A recipe that differs only in floors or ceilings that change no stage's steps on this task's
            // training split makes this very run: it stands.
            let (examples, tokens) = train_pass(&config, &options.cache)?;
            if let Some(why) = carry::why_not_same_run(&done, &config, examples, tokens) {
                return Err(PipelineError::Config {
                    field: "suite",
                    message: format!(
                        "{} holds a finished run of another recipe ({why}); give the suite a new --out",
                        dir.display()
                    ),
                });
            }
        }
        return read_json(&report_path);
    }
    if let Some(d) = donor {
        config.teacher = Some(d.join("teacher"));
    }
    let run_options = RunOptions {
        out_dir: dir.to_path_buf(),
        resume: dir.join("config.json").exists(),
        ..options.clone()
    };
    let report = distill(&config, &run_options)?;
    let checkpoints = dir.join("checkpoints");
    if checkpoints.is_dir() {
        std::fs::remove_dir_all(&checkpoints)
            .map_err(io_err("removing the finished run's", &checkpoints))?;
    }
    Ok(report)
}
