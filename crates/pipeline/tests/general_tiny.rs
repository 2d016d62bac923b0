//! General distillation, augmentation and the ablation runner on tiny configurations of the real code paths:
//! a small user corpus, a few steps per stage. Needs the teacher (`BERT_COMPRESS_TEACHER`, set by
//! `cargo xtask ci`).

use std::path::{Path, PathBuf};

use pipeline::{
    ablate, distill, general_only, DistillConfig, GeneralReport, Method, RunOptions, Stage,
};
use student_arch::weights::WEIGHTS_FILE;
use student_arch::MlmHead;

fn teacher() -> PathBuf {
    PathBuf::from(
        std::env::var_os("BERT_COMPRESS_TEACHER")
            .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`"),
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A labelled CSV and a plain-text corpus whose sentences repeat, so that a few steps can learn something.
fn data(dir: &Path) -> (PathBuf, PathBuf) {
    let good = [
        "a wonderful moving film",
        "great acting and a clever story",
        "I loved every minute",
    ];
    let bad = [
        "a dull lifeless mess",
        "boring and far too long",
        "I hated every minute",
    ];
    let mut csv = String::from("review,verdict\n");
    for i in 0..6 {
        for g in good {
            csv += &format!("\"{g} {i}\",fresh\n");
        }
        for b in bad {
            csv += &format!("\"{b} {i}\",rotten\n");
        }
    }
    let csv_path = dir.join("reviews.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let sentences = [
        "the cat sat on the mat and looked at the dog.",
        "the dog ran in the park with the other dogs.",
        "people in the city like to walk in the park.",
        "the film was long but the story was good.",
    ];
    let mut text = String::new();
    for i in 0..40 {
        text += sentences[i % sentences.len()];
        text += if i % 3 == 2 { "\n" } else { " " };
    }
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, text).unwrap();
    (csv_path, corpus)
}

fn tiny_config(dir: &Path, method: Method) -> DistillConfig {
    let (csv, corpus) = data(dir);
    let mut c = DistillConfig::preset("small").unwrap();
    c.teacher = Some(teacher());
    c.dataset = csv.display().to_string();
    c.columns.text = "review".into();
    c.columns.label = "verdict".into();
    c.method = method;
    c.max_length = 16;
    c.max_train_examples = Some(16);
    c.max_eval_examples = Some(8);
    for stage in [
        &mut c.teacher_finetune,
        &mut c.intermediate,
        &mut c.prediction,
    ] {
        stage.epochs = 1;
        stage.batch_size = 8;
    }
    let g = &mut c.general;
    g.teacher = Some(teacher());
    g.corpus = vec![corpus.display().to_string()];
    g.words_per_passage = 10;
    g.max_length = 16;
    g.held_out_passages = 4;
    g.mlm_head_passages = 24;
    g.mlm_head.batch_size = 8;
    g.mlm_head.epochs = 2;
    g.distill.batch_size = 8;
    g.distill.epochs = 2;
    g.distill.learning_rate = 3e-4;
    g.tinybert_student.layers = 2;
    g.tinybert_student.hidden_size = 96;
    g.tinybert_student.num_attention_heads = 12;
    g.tinybert_student.intermediate_size = 192;
    c
}

fn options(out: PathBuf, dir: &Path) -> RunOptions {
    RunOptions {
        out_dir: out,
        device_name: "flex".into(),
        device: burn::tensor::Device::flex(),
        resume: false,
        cache: dir.join("cache"),
        stop_after: None,
    }
}

#[test]
fn distilbert_general_then_task_with_augmentation() {
    let dir = scratch("general-distilbert");
    let mut config = tiny_config(&dir, Method::Distilbert);
    config.stage = Stage::Both;
    config.augment = Some(pipeline::AugmentConfig {
        variants: 2,
        ..Default::default()
    });
    let out = dir.join("run");
    let report = distill(&config, &options(out.clone(), &dir)).unwrap();

    let general = report
        .general
        .as_ref()
        .expect("the run did general distillation");
    assert!(
        general.head_fitted,
        "MiniLM has no MLM head, so one is fitted"
    );
    let names: Vec<&str> = general.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mlm-head", "distilbert-general"]);
    for stage in &general.stages {
        assert!(
            stage.last_loss < stage.first_loss,
            "{}: loss did not fall ({} -> {})",
            stage.name,
            stage.first_loss,
            stage.last_loss
        );
    }
    assert!(general.teacher_mlm_accuracy > 0.0 && general.student_mlm_accuracy.is_some());
    // The head is saved with the teacher, and the student keeps its own copy.
    assert!(MlmHead::file_has_head(
        &out.join("teacher-mlm").join(WEIGHTS_FILE)
    ));
    assert!(MlmHead::file_has_head(
        &out.join("general/student").join(WEIGHTS_FILE)
    ));
    let (student, _) =
        student_arch::load_pretrained(&out.join("general/student"), &burn::tensor::Device::flex())
            .unwrap();
    assert_eq!(student.num_layers(), 3);
    assert!(student.embeddings.token_type_embeddings.is_none() && student.pooler.is_none());
    // Augmentation: the originals first, then variants with the same labels.
    let augmented = pipeline::load_augmented(&out.join("augmented.jsonl")).unwrap();
    assert!(
        augmented.len() > 16 && augmented.len() <= 16 * 3,
        "{}",
        augmented.len()
    );
    assert_eq!(report.augmented_train, Some(augmented.len()));
    assert!(out.join("general/report.json").exists() && out.join("report.md").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tinybert_general_stage_alone_then_the_ablation_table() {
    let dir = scratch("general-tinybert");
    let mut config = tiny_config(&dir, Method::Tinybert);
    config.stage = Stage::General;
    let out = dir.join("general-only");
    let report: GeneralReport = general_only(&config, &options(out.clone(), &dir)).unwrap();
    let stage = report.stages.last().unwrap();
    assert_eq!(stage.name, "tinybert-general");
    assert!(stage.last_loss < stage.first_loss, "{stage:?}");
    let (student, _) =
        student_arch::load_pretrained(&out.join("general/student"), &burn::tensor::Device::flex())
            .unwrap();
    assert_eq!((student.num_layers(), student.config.hidden_size), (2, 96));
    // A stage-general config passed to the task pipeline says what to call.
    let err = distill(&config, &options(out, &dir))
        .unwrap_err()
        .to_string();
    assert!(err.contains("general_only"), "{err}");

    // The ablation: five rows, each a whole run, sharing the first row's teacher and head; two seeds on one split.
    let ablation_out = dir.join("ablate");
    let seeds = [config.seed, config.seed + 1];
    let table = ablate(
        &config,
        Method::Tinybert,
        &seeds,
        &options(ablation_out.clone(), &dir),
    )
    .unwrap();
    assert_eq!(table.seeds, seeds);
    let twice = ablate(
        &config,
        Method::Tinybert,
        &[1, 2, 1],
        &options(dir.join("ablate-twice"), &dir),
    )
    .unwrap_err()
    .to_string();
    assert!(twice.contains("seed 1 is given twice"), "{twice}");
    assert!(
        !dir.join("ablate-twice").exists(),
        "nothing written for a bad seed list"
    );
    let rows: Vec<&str> = table.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rows, ["full", "no-emb", "no-pred", "no-trm", "no-general"]);
    assert!(table.rows.iter().all(|r| r.test_runs.len() == 2
        && r.dev_runs
            .iter()
            .chain(&r.test_runs)
            .all(|a| (0.0..=1.0).contains(a))
        && (r.test - (r.test_runs[0] + r.test_runs[1]) / 2.0).abs() < 1e-12));
    let md = std::fs::read_to_string(ablation_out.join("ablation.md")).unwrap();
    assert!(
        md.contains("| no-general |")
            && md.contains("Δ dev")
            && md.contains(" ± ")
            && md.contains("in the paper"),
        "{md}"
    );
    let read = |path: &str| -> pipeline::Report {
        serde_json::from_str(&std::fs::read_to_string(ablation_out.join(path)).unwrap()).unwrap()
    };
    // Every run after the first reuses the first run's fine-tuned teacher and MLM head, the second seed's full
    // row included, and all of them test on the first seed's split.
    for path in [
        format!("seed-{}/no-emb/report.json", seeds[0]),
        format!("seed-{}/full/report.json", seeds[1]),
    ] {
        let run = read(&path);
        assert!(
            run.stages.iter().all(|s| s.name != "teacher-finetune"),
            "{path}"
        );
        assert!(
            run.general.as_ref().is_some_and(|g| !g.head_fitted),
            "{path}"
        );
    }
    let second: DistillConfig = serde_json::from_str(
        &std::fs::read_to_string(ablation_out.join(format!("seed-{}/full/config.json", seeds[1])))
            .unwrap(),
    )
    .unwrap();
    assert_eq!((second.seed, second.split_seed()), (seeds[1], seeds[0]));
    // The row without the prediction term runs the full row's general stage, so it starts from a copy of it;
    // running that stage again gives the same student to the last bit (the general-only run above is it,
    // made apart from the ablation), while the row without the embedding term trains its own.
    let weights =
        |run: PathBuf| std::fs::read(run.join("general/student").join(WEIGHTS_FILE)).unwrap();
    let seed0 = ablation_out.join(format!("seed-{}", seeds[0]));
    assert_eq!(weights(seed0.join("no-pred")), weights(seed0.join("full")));
    assert_eq!(
        weights(dir.join("general-only")),
        weights(seed0.join("full"))
    );
    assert_ne!(weights(seed0.join("no-emb")), weights(seed0.join("full")));
    assert!(!seed0.join("no-pred/general.partial").exists());
    // Copied, not run again: its general report is the full row's to the wall seconds.
    let general_seconds = |row: &str| {
        read(&format!("seed-{}/{row}/report.json", seeds[0]))
            .general
            .map(|g| g.seconds)
    };
    assert_eq!(general_seconds("no-pred"), general_seconds("full"));
    assert_ne!(general_seconds("no-emb"), general_seconds("full"));
    let no_general = read(&format!("seed-{}/no-general/report.json", seeds[1]));
    assert!(no_general.general.is_none());
    assert_eq!(no_general.student.layers, 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fit_mlm_trains_the_head_then_only_the_last_layers() {
    let dir = scratch("fit-mlm");
    let mut config = tiny_config(&dir, Method::Distilbert);
    let g = &mut config.general;
    g.mlm_unfreeze_last = 1;
    g.mlm_encoder.batch_size = 8;
    g.mlm_encoder.epochs = 2;
    g.mlm_encoder.learning_rate = 3e-4;
    let out = dir.join("fit");
    let report = pipeline::fit_mlm(&config, &options(out.clone(), &dir)).unwrap();
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mlm-head", "mlm-encoder"]);
    assert!(
        report.stages.iter().all(|s| s.last_loss < s.first_loss),
        "{:?}",
        report.stages
    );
    // One evaluation per epoch of each stage, in order, and the result scored on the held-out passages.
    let curve: Vec<&str> = report.curve.iter().map(|c| c.stage.as_str()).collect();
    assert_eq!(
        curve,
        ["mlm-head", "mlm-head", "mlm-encoder", "mlm-encoder"]
    );
    assert!(
        (0.0..=1.0).contains(&report.accuracy)
            && report.passages == [24.min(report.passages[0]), 4]
    );
    assert_eq!(report.fitted, out.join("teacher-mlm"));
    assert!(MlmHead::file_has_head(&report.fitted.join(WEIGHTS_FILE)));
    // The embeddings and every layer but the last are the teacher's, bit for bit; the last one moved.
    let flex = burn::tensor::Device::flex();
    let (before, _) = student_arch::load_pretrained(&teacher(), &flex).unwrap();
    let (after, _) = student_arch::load_pretrained(&report.fitted, &flex).unwrap();
    let (before, after) = (
        student_arch::weights::named_tensors(&before).unwrap(),
        student_arch::weights::named_tensors(&after).unwrap(),
    );
    let last = format!("encoder.layer.{}.", 5);
    for (name, (_, values)) in &before {
        if name.starts_with(&last) {
            continue;
        }
        assert!(after[name].1 == *values, "{name} changed");
    }
    let moved = before
        .iter()
        .filter(|(name, (_, v))| name.starts_with(&last) && after[*name].1 != *v)
        .count();
    assert!(moved > 10, "only {moved} tensors of the last layer changed");
    // Resuming a finished fit runs nothing and gives the same teacher.
    let mut resumed = options(out.clone(), &dir);
    resumed.resume = true;
    let again = pipeline::fit_mlm(&config, &resumed).unwrap();
    assert!(again.stages.is_empty());
    assert_eq!(again.accuracy, report.accuracy);
    // More layers than the teacher has: an error naming the field.
    config.general.mlm_unfreeze_last = 7;
    let err = pipeline::fit_mlm(&config, &options(dir.join("fit-bad"), &dir))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mlm_unfreeze_last") && err.contains("at most 6"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
