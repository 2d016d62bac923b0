//! The suite's record (`suite.json`) and its table (`suite.md`): per task the teacher, the student and the
//! retention (student / teacher) as mean ± std over the seeds, the suite mean, the worst task and the wall
//! time, with the targets of the default recipe checked.

use serde::{Deserialize, Serialize};

use crate::distill::ablate::sample_std;
use crate::record::Provenance;

/// Suite mean retention the default recipe must reach.
pub const TARGET_MEAN_RETENTION: f64 = 0.99;
/// No task's mean retention may fall below this.
pub const TARGET_WORST_RETENTION: f64 = 0.98;
/// Wall seconds of one task's run (teacher fine-tuning included) on 2 cores.
pub const TARGET_TASK_SECONDS: f64 = 20.0 * 60.0;

/// One task of the suite: its runs over the seeds, all on one split and one fine-tuned teacher.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteRow {
    /// The task (a built-in dataset name or a file).
    pub task: String,
    /// What is classified (e.g. "sentiment", "topic").
    pub kind: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Train, dev and test sizes of the split.
    pub split_sizes: [usize; 3],
    /// Median words per training text.
    #[serde(default)]
    pub median_words: usize,
    /// The fine-tuned teacher's test accuracy.
    pub teacher: f64,
    /// The fine-tuned teacher's best dev accuracy (the checkpoint kept).
    #[serde(default)]
    pub teacher_dev: Option<f64>,
    /// Seconds the teacher's fine-tuning took (0 when it was reused from another suite).
    pub teacher_seconds: f64,
    /// The seeds run so far, in order.
    pub seeds: Vec<u64>,
    /// The student's test accuracy per seed.
    pub student: Vec<f64>,
    /// The student's best dev accuracy per seed.
    pub student_dev: Vec<f64>,
    /// Wall seconds of each seed's distillation (teacher fine-tuning excluded).
    pub seconds: Vec<f64>,
    /// The earlier record this row was carried from (its file and run), where the suite's recipe makes the
    /// same runs on this task (`--carry-from`); `None` for a row run by this suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_from: Option<String>,
}

impl SuiteRow {
    /// Student / teacher per seed.
    pub fn retention(&self) -> Vec<f64> {
        self.student.iter().map(|s| s / self.teacher).collect()
    }

    /// Mean retention over the seeds (NaN before any run).
    pub fn mean_retention(&self) -> f64 {
        mean(&self.retention())
    }

    /// Wall seconds of one whole run of this task: teacher fine-tuning plus the mean distillation.
    pub fn task_seconds(&self) -> f64 {
        self.teacher_seconds + mean(&self.seconds)
    }
}

/// A suite run: `suite.json`, the record the table is rendered from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// The command, commit, CPU and date of the run.
    pub provenance: Provenance,
    /// The recipe's name (`default`, or what `--recipe-name` called it).
    pub recipe: String,
    /// Whether the data were capped for screening (`--quick`).
    pub quick: bool,
    /// The device.
    pub device: String,
    /// The recipe as run (the base config; each task sets its dataset and seeds).
    pub config: crate::config::DistillConfig,
    /// One row per task, in the order run.
    pub rows: Vec<SuiteRow>,
    /// Wall seconds of the whole suite in the processes that ran it.
    pub seconds: f64,
}

impl SuiteReport {
    /// Mean over the tasks with runs of their mean retention.
    pub fn mean_retention(&self) -> f64 {
        let r: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| !r.student.is_empty())
            .map(SuiteRow::mean_retention)
            .collect();
        mean(&r)
    }

    /// The task with the lowest mean retention.
    pub fn worst(&self) -> Option<&SuiteRow> {
        self.rows
            .iter()
            .filter(|r| !r.student.is_empty())
            .min_by(|a, b| a.mean_retention().total_cmp(&b.mean_retention()))
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn pm(xs: &[f64], scale: f64, digits: usize) -> String {
    if xs.is_empty() {
        return "–".into();
    }
    let m = scale * mean(xs);
    if xs.len() > 1 {
        format!("{m:.digits$} ± {:.digits$}", scale * sample_std(xs))
    } else {
        format!("{m:.digits$}")
    }
}

/// The table of a suite run, as `suite.md` holds it and `cargo xtask results` renders it into the docs.
pub fn suite_markdown(r: &SuiteReport) -> String {
    let seeds = r.rows.iter().map(|x| x.seeds.len()).max().unwrap_or(0);
    let mut s = format!(
        "Recipe `{}`{}, device {}; {} task(s) × up to {seeds} seed(s), each task on one split with one fine-tuned \
         teacher. Run {}.\n\n",
        r.recipe,
        if r.quick { " (quick: capped data)" } else { "" },
        r.device,
        r.rows.len(),
        r.provenance.describe(),
    );
    s += "| task | kind | classes | train/dev/test | words | seeds | teacher | student | retention % | dev: teacher / student | teacher min | distil min |\n\
          |---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for row in &r.rows {
        s +=
            &format!(
            "| {}{} | {} | {} | {}/{}/{} | {} | {} | {:.4} | {} | {} | {} / {} | {:.1} | {} |\n",
            row.task,
            if row.carried_from.is_some() { " †" } else { "" },
            row.kind,
            row.labels.len(),
            row.split_sizes[0],
            row.split_sizes[1],
            row.split_sizes[2],
            row.median_words,
            row.seeds.len(),
            row.teacher,
            pm(&row.student, 1.0, 4),
            pm(&row.retention(), 100.0, 1),
            row.teacher_dev.map_or("–".into(), |d| format!("{d:.4}")),
            pm(&row.student_dev, 1.0, 4),
            row.teacher_seconds / 60.0,
            pm(&row.seconds, 1.0 / 60.0, 1),
        );
    }
    // Carried rows grouped by their source: "task, task: source".
    let mut sources: Vec<(&str, Vec<&str>)> = Vec::new();
    for row in &r.rows {
        if let Some(c) = &row.carried_from {
            match sources.iter_mut().find(|(src, _)| *src == c.as_str()) {
                Some((_, tasks)) => tasks.push(&row.task),
                None => sources.push((c, vec![&row.task])),
            }
        }
    }
    let carried: Vec<String> = sources
        .iter()
        .map(|(src, tasks)| format!("{}: {src}", tasks.join(", ")))
        .collect();
    if !carried.is_empty() {
        s += &format!(
            "\n† Carried from an earlier record whose runs this recipe would make again (it differs only in stage \
             floors or token ceilings that change no stage's steps on that task): {}.\n",
            carried.join("; ")
        );
    }
    match r.worst() {
        Some(worst) => {
            let mean_ret = r.mean_retention();
            let slowest = r
                .rows
                .iter()
                .map(SuiteRow::task_seconds)
                .fold(0.0, f64::max);
            let ok = |b: bool| if b { "met" } else { "missed" };
            s += &format!(
                "\nSuite mean retention: **{:.1}%** (target ≥ {:.0}%: {}). Worst task: {} at {:.1}% (target ≥ {:.0}%: \
                 {}). Longest task run (teacher + one distillation): {:.1} min (target ≤ {:.0} min: {}). Time of all \
                 the suite's runs together: {:.1} min.\n",
                100.0 * mean_ret,
                100.0 * TARGET_MEAN_RETENTION,
                ok(mean_ret >= TARGET_MEAN_RETENTION),
                worst.task,
                100.0 * worst.mean_retention(),
                100.0 * TARGET_WORST_RETENTION,
                ok(worst.mean_retention() >= TARGET_WORST_RETENTION),
                slowest / 60.0,
                TARGET_TASK_SECONDS / 60.0,
                ok(slowest <= TARGET_TASK_SECONDS),
                r.seconds / 60.0,
            );
        }
        None => s += "\nNo task has run yet.\n",
    }
    s
}

/// Several suite runs side by side (`(name, record)` pairs, e.g. one recipe change each): per task the
/// student's test accuracy and retention (mean ± std over seeds) under each, then the suite mean and the worst
/// task, and the provenance of every record.
pub fn suite_comparison_markdown(runs: &[(String, &SuiteReport)]) -> String {
    let mut tasks: Vec<&str> = Vec::new();
    for (_, r) in runs {
        for row in &r.rows {
            if !tasks.contains(&row.task.as_str()) {
                tasks.push(&row.task);
            }
        }
    }
    let mut s = String::from("| task | teacher |");
    for (name, r) in runs {
        s += &format!(
            " {name} (`{}`{}) |",
            r.recipe,
            if r.quick { ", quick" } else { "" }
        );
    }
    s += "\n|---|---|";
    s += &"---|".repeat(runs.len());
    s += "\n";
    for task in &tasks {
        // One figure when the records share the task's teacher, else each record's in the columns' order.
        let mut teachers: Vec<String> = runs
            .iter()
            .filter_map(|(_, r)| r.rows.iter().find(|x| x.task == *task))
            .map(|x| format!("{:.4}", x.teacher))
            .collect();
        teachers.dedup();
        let teacher = if teachers.is_empty() {
            "–".to_string()
        } else {
            teachers.join(" / ")
        };
        s += &format!("| {task} | {teacher} |");
        for (_, r) in runs {
            s += &match r
                .rows
                .iter()
                .find(|x| x.task == *task && !x.student.is_empty())
            {
                Some(x) => format!(
                    " {} ({}%) |",
                    pm(&x.student, 1.0, 4),
                    pm(&x.retention(), 100.0, 1)
                ),
                None => " – |".to_string(),
            };
        }
        s += "\n";
    }
    s += "| **suite mean retention** | |";
    for (_, r) in runs {
        s += &format!(" **{:.1}%** |", 100.0 * r.mean_retention());
    }
    s += "\n| worst task | |";
    for (_, r) in runs {
        s += &match r.worst() {
            Some(w) => format!(" {} {:.1}% |", w.task, 100.0 * w.mean_retention()),
            None => " – |".into(),
        };
    }
    s += "\n\nCells: student test accuracy (retention = student / teacher), mean ± std over the seeds run; where the \
          records' teachers differ, the teacher column gives each record's, in the columns' order.\n\n";
    for (name, r) in runs {
        let seeds = r.rows.iter().map(|x| x.seeds.len()).max().unwrap_or(0);
        s += &format!(
            "- `docs/records/{name}.json`: `{}` at {} on {}, {}; {seeds} seed(s), device {}.\n",
            r.provenance.command,
            r.provenance.commit,
            r.provenance.cpu,
            r.provenance.date,
            r.device
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task: &str, teacher: f64, student: &[f64]) -> SuiteRow {
        SuiteRow {
            task: task.into(),
            kind: "sentiment".into(),
            labels: vec!["a".into(), "b".into()],
            split_sizes: [80, 10, 10],
            median_words: 12,
            teacher,
            teacher_dev: Some(teacher),
            teacher_seconds: 600.0,
            seeds: (42..42 + student.len() as u64).collect(),
            student: student.to_vec(),
            student_dev: student.to_vec(),
            seconds: vec![300.0; student.len()],
            carried_from: None,
        }
    }

    #[test]
    fn mean_worst_and_targets_by_hand() {
        let r = SuiteReport {
            provenance: Provenance {
                command: "cargo xtask suite".into(),
                commit: "abc1234".into(),
                cpu: "AMD EPYC, 2 cores: avx2".into(),
                date: "2026-12-02".into(),
            },
            recipe: "default".into(),
            quick: false,
            device: "flex".into(),
            config: crate::config::DistillConfig::default(),
            // Retentions: a 0.9, 1.0 (mean 0.95); b 1.0 (mean 1.0); suite mean 0.975, worst a.
            rows: vec![row("a", 0.8, &[0.72, 0.8]), row("b", 0.5, &[0.5])],
            seconds: 1800.0,
        };
        assert!((r.mean_retention() - 0.975).abs() < 1e-12);
        assert_eq!(r.worst().unwrap().task, "a");
        let md = suite_markdown(&r);
        assert!(md.contains("| a | sentiment | 2 | 80/10/10 | 12 | 2 | 0.8000 | 0.7600 ± 0.0566 | 95.0 ± 7.1 | 0.8000 / 0.7600 ± 0.0566 | 10.0 | 5.0 ± 0.0 |"), "{md}");
        assert!(
            md.contains(
                "| b | sentiment | 2 | 80/10/10 | 12 | 1 | 0.5000 | 0.5000 | 100.0 | 0.5000 / 0.5000 | 10.0 | 5.0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("Suite mean retention: **97.5%** (target ≥ 99%: missed)"),
            "{md}"
        );
        assert!(
            md.contains("Worst task: a at 95.0% (target ≥ 98%: missed)"),
            "{md}"
        );
        assert!(md.contains("15.0 min (target ≤ 20 min: met)"), "{md}");
        assert!(!md.contains('†'), "{md}");
        // Carried rows are marked and their source named once for the tasks that share it.
        let mut carried = r.clone();
        carried.rows.push(row("c", 0.5, &[0.5]));
        carried.rows[0].carried_from = Some("old.json (run X)".into());
        carried.rows[2].carried_from = Some("old.json (run X)".into());
        let md = suite_markdown(&carried);
        assert!(
            md.contains("| a † | sentiment |")
                && md.contains("| c † |")
                && md.contains("| b | sentiment |")
        );
        assert!(
            md.contains("on that task): a, c: old.json (run X).\n"),
            "{md}"
        );
        let mut other = r.clone();
        other.rows[1].student = vec![0.45];
        other.recipe = "probs".into();
        let cmp = suite_comparison_markdown(&[("x".into(), &r), ("y".into(), &other)]);
        assert!(
            cmp.contains("| b | 0.5000 | 0.5000 (100.0%) | 0.4500 (90.0%) |"),
            "{cmp}"
        );
        let mut retaught = other.clone();
        retaught.rows[1].teacher = 0.6;
        let cmp2 = suite_comparison_markdown(&[("x".into(), &r), ("z".into(), &retaught)]);
        assert!(
            cmp2.contains("| b | 0.5000 / 0.6000 | 0.5000 (100.0%) | 0.4500 (75.0%) |"),
            "{cmp2}"
        );
        assert!(
            cmp.contains("| **suite mean retention** | | **97.5%** | **92.5%** |"),
            "{cmp}"
        );
        assert!(
            cmp.contains("| worst task | | a 95.0% | b 90.0% |"),
            "{cmp}"
        );
    }
}
