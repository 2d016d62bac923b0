//! The suite runner on a tiny configuration of the real code path: two user CSV tasks (2 and 3 classes), two
//! seeds, one teacher fine-tuned per task and reused by the other seed and by a second recipe's suite, an
//! interrupted suite continued, and a finished run of another recipe refused. Needs the teacher
//! (`BERT_COMPRESS_TEACHER`, set by `cargo xtask ci`).

use std::path::{Path, PathBuf};

use pipeline::{
    run_suite, DistillConfig, Provenance, Report, RunOptions, SuiteOptions, SuiteReport, SuiteRow,
};

fn write_csv(dir: &Path, name: &str, classes: &[(&str, [&str; 4])]) -> PathBuf {
    let mut text = String::from("text,label\n");
    for i in 0..6 {
        for (label, sentences) in classes {
            for s in sentences {
                text += &format!("\"{s} {i}\",{label}\n");
            }
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn tasks(dir: &Path) -> Vec<String> {
    let reviews = write_csv(
        dir,
        "reviews.csv",
        &[
            (
                "fresh",
                [
                    "a wonderful, moving film",
                    "great acting",
                    "I loved it",
                    "a delight",
                ],
            ),
            (
                "rotten",
                [
                    "a dull mess",
                    "boring and long",
                    "I hated it",
                    "a tedious waste",
                ],
            ),
        ],
    );
    let topics = write_csv(
        dir,
        "topics.csv",
        &[
            (
                "sport",
                [
                    "the team won the match",
                    "a late goal",
                    "the striker scored",
                    "the final whistle",
                ],
            ),
            (
                "food",
                [
                    "the soup was salty",
                    "fresh bread and butter",
                    "a sweet dessert",
                    "grilled fish",
                ],
            ),
            (
                "tech",
                [
                    "the phone battery died",
                    "a new laptop chip",
                    "software update",
                    "the server crashed",
                ],
            ),
        ],
    );
    vec![reviews.display().to_string(), topics.display().to_string()]
}

fn tiny_config(teacher: PathBuf) -> DistillConfig {
    let mut c = DistillConfig::preset("default").unwrap();
    c.teacher = Some(teacher);
    c.max_length = 16;
    c.max_train_examples = Some(32);
    for stage in [
        &mut c.teacher_finetune,
        &mut c.intermediate,
        &mut c.prediction,
    ] {
        stage.epochs = 1;
        stage.min_tokens = 0;
        stage.max_tokens = 0;
        stage.batch_size = 8;
        stage.checkpoint_every = 2;
    }
    c
}

/// The same rows, times equal up to JSON's last digit (serde_json's default float parser may differ by one ulp).
fn assert_same_rows(a: &[SuiteRow], b: &[SuiteRow]) {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(1.0);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!(close(x.teacher_seconds, y.teacher_seconds), "{x:?} {y:?}");
        assert!(
            x.seconds.iter().zip(&y.seconds).all(|(p, q)| close(*p, *q)),
            "{x:?} {y:?}"
        );
        let strip = |r: &SuiteRow| SuiteRow {
            teacher_seconds: 0.0,
            seconds: Vec::new(),
            ..r.clone()
        };
        assert_eq!(strip(x), strip(y));
    }
}

fn read_report(path: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn finetuned_here(run: &Path) -> bool {
    read_report(&run.join("report.json"))
        .stages
        .iter()
        .any(|s| s.name == "teacher-finetune")
}

#[test]
fn tiny_suite_shares_teachers_resumes_and_refuses_another_recipe() {
    let teacher = PathBuf::from(
        std::env::var_os("BERT_COMPRESS_TEACHER")
            .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`"),
    );
    let dir = std::env::temp_dir().join(format!("pipeline-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = tiny_config(teacher);
    let suite = SuiteOptions {
        tasks: tasks(&dir),
        seeds: vec![7, 8],
        quick: false,
        recipe: "tiny".into(),
        teachers_from: Vec::new(),
        provenance: Provenance::now("test".into(), "abc".into()),
        record_only: false,
        carry_from: None,
    };
    let out = dir.join("suite");
    let mut options = RunOptions {
        out_dir: out.clone(),
        device_name: "flex".into(),
        device: burn::tensor::Device::flex(),
        resume: true,
        cache: dir.join("cache"),
        stop_after: Some(1),
    };
    // Interrupted in the first run's first stage; continued by running the suite again.
    let err = run_suite(&config, &suite, &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    assert!(!out.join("suite.json").exists());
    options.stop_after = None;
    let report = run_suite(&config, &suite, &options).unwrap();
    assert_eq!(report.rows.len(), 2);
    for (row, stem, classes) in [
        (&report.rows[0], "reviews", 2),
        (&report.rows[1], "topics", 3),
    ] {
        assert_eq!(row.labels.len(), classes, "{}", row.task);
        assert_eq!(row.seeds, vec![7, 8]);
        assert_eq!(row.student.len(), 2);
        assert!(row.student.iter().all(|a| (0.0..=1.0).contains(a)));
        assert!(row.teacher_seconds > 0.0);
        // The first seed fine-tuned the teacher, the second reused it: the same teacher figure on one split.
        let first = out.join(stem).join("seed-7");
        let second = out.join(stem).join("seed-8");
        assert!(finetuned_here(&first) && !finetuned_here(&second));
        assert_eq!(
            read_report(&first.join("report.json")).teacher.accuracy,
            read_report(&second.join("report.json")).teacher.accuracy
        );
        assert_eq!(
            read_report(&first.join("report.json")).split_sizes,
            read_report(&second.join("report.json")).split_sizes
        );
        assert!(
            !first.join("checkpoints").exists(),
            "a finished run's checkpoints are removed"
        );
    }
    let written: SuiteReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("suite.json")).unwrap()).unwrap();
    assert_same_rows(&written.rows, &report.rows);
    assert!(std::fs::read_to_string(out.join("suite.md"))
        .unwrap()
        .contains("Suite mean retention"));

    // Run again: every run is read back, nothing trains, the same table.
    let again = run_suite(&config, &suite, &options).unwrap();
    assert_same_rows(&again.rows, &report.rows);

    // Record only, with a seed never run: the finished runs' table, the missing seed left out, nothing trained.
    let recorded = run_suite(
        &config,
        &SuiteOptions {
            seeds: vec![7, 8, 9],
            record_only: true,
            ..suite.clone()
        },
        &options,
    )
    .unwrap();
    assert_same_rows(&recorded.rows, &report.rows);
    assert!(!out.join("reviews").join("seed-9").exists());

    // A recipe that differs only in a teacher floor adding no pass on either task: both rows carried from the
    // record, marked so, nothing run; a floor that adds passes carries nothing (record only: no row at all).
    let mut floored = config.clone();
    floored.teacher_finetune.min_tokens = 1;
    let carry = SuiteOptions {
        carry_from: Some(out.join("suite.json")),
        ..suite.clone()
    };
    let carried_dir = dir.join("suite-carried");
    let carried = run_suite(
        &floored,
        &carry,
        &RunOptions {
            out_dir: carried_dir.clone(),
            ..options.clone()
        },
    )
    .unwrap();
    let strip = |rows: &[SuiteRow]| -> Vec<SuiteRow> {
        rows.iter()
            .map(|r| SuiteRow {
                carried_from: None,
                ..r.clone()
            })
            .collect()
    };
    assert_same_rows(&strip(&carried.rows), &report.rows);
    assert!(carried.rows.iter().all(|r| r
        .carried_from
        .as_deref()
        .is_some_and(|c| c.contains("suite.json"))));
    assert!(!carried_dir.join("reviews").exists() && !carried_dir.join("topics").exists());
    assert!(std::fs::read_to_string(carried_dir.join("suite.md"))
        .unwrap()
        .contains("† Carried from"));
    // Into the directory that holds the runs, the runs stand and nothing is carried.
    let mut task_floored = config.clone();
    task_floored.prediction.min_tokens = 1;
    let carry_record_only = SuiteOptions {
        record_only: true,
        ..carry.clone()
    };
    let own = run_suite(&task_floored, &carry_record_only, &options).unwrap();
    assert_same_rows(&own.rows, &report.rows);
    assert!(own.rows.iter().all(|r| r.carried_from.is_none()));
    floored.teacher_finetune.min_tokens = 1_000_000;
    let not_carried = run_suite(
        &floored,
        &carry_record_only,
        &RunOptions {
            out_dir: dir.join("suite-not-carried"),
            ..options.clone()
        },
    )
    .unwrap();
    assert!(not_carried.rows.is_empty(), "{:?}", not_carried.rows);

    // Another recipe in another directory reuses the first suite's teachers.
    let mut scores = config.clone();
    scores.attention_target = kd_losses::AttentionTarget::Scores;
    let other = SuiteOptions {
        seeds: vec![7],
        recipe: "tiny-scores".into(),
        teachers_from: vec![out.clone()],
        ..suite.clone()
    };
    let options2 = RunOptions {
        out_dir: dir.join("suite-scores"),
        ..options.clone()
    };
    let second = run_suite(&scores, &other, &options2).unwrap();
    for (row, stem) in second.rows.iter().zip(["reviews", "topics"]) {
        assert!(!finetuned_here(
            &dir.join("suite-scores").join(stem).join("seed-7")
        ));
        let first = report.rows.iter().find(|r| r.task == row.task).unwrap();
        assert_eq!(row.teacher, first.teacher);
        assert!((row.teacher_seconds - first.teacher_seconds).abs() < 1e-9);
    }

    // The same directory with another recipe is refused, naming the run.
    let err = run_suite(&scores, &suite, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another recipe") && err.contains("seed-7"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
