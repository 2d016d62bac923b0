//! The distill code path on a tiny configuration: a user CSV, one epoch, a run stopped mid-way and resumed,
//! and every output file written. Needs the teacher (`BERT_COMPRESS_TEACHER`, set by `cargo xtask ci`).

use std::path::PathBuf;

use pipeline::{
    distill, measure_sensitivity, sensitivity_partial_path, DistillConfig, MeasureControl, Method,
    RunOptions, SensitivityOptions,
};

fn csv(dir: &std::path::Path) -> PathBuf {
    let good = [
        "a wonderful, moving film",
        "great acting and a clever story",
        "I loved every minute",
        "a delight from start to end",
    ];
    let bad = [
        "a dull, lifeless mess",
        "boring and far too long",
        "I hated every minute",
        "a tedious waste of time",
    ];
    let mut text = String::from("review,verdict\n");
    for i in 0..6 {
        for g in good {
            text += &format!("\"{g} {i}\",fresh\n");
        }
        for b in bad {
            text += &format!("\"{b} {i}\",rotten\n");
        }
    }
    let path = dir.join("reviews.csv");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn tiny_distill_stops_resumes_and_writes_everything() {
    let teacher = PathBuf::from(
        std::env::var_os("BERT_COMPRESS_TEACHER")
            .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`"),
    );
    let dir = std::env::temp_dir().join(format!("pipeline-tiny-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = DistillConfig::preset("default").unwrap();
    config.teacher = Some(teacher);
    config.dataset = csv(&dir).display().to_string();
    config.columns.text = "review".into();
    config.columns.label = "verdict".into();
    config.method = Method::Tinybert;
    config.max_length = 16;
    config.max_train_examples = Some(32);
    // A split other than the defaults: every later command on the model must use it (issue 29).
    config.split_seed = Some(5);
    config.dev_fraction = 0.2;
    config.test_fraction = 0.25;
    for stage in [
        &mut config.teacher_finetune,
        &mut config.intermediate,
        &mut config.prediction,
    ] {
        stage.epochs = 1;
        stage.min_tokens = 0;
        stage.batch_size = 8;
        stage.checkpoint_every = 1;
    }
    // A token ceiling below one pass: the prediction stage makes one step of its 4, and is scored there.
    config.prediction.epochs = 2;
    config.prediction.max_tokens = 1;
    let out = dir.join("run");
    let mut options = RunOptions {
        out_dir: out.clone(),
        device_name: "flex".into(),
        device: burn::tensor::Device::flex(),
        resume: false,
        cache: dir.join("cache"),
        stop_after: Some(2),
    };
    let err = distill(&config, &options).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    let stage = out.join("checkpoints/teacher-finetune");
    let latest = std::fs::read_to_string(stage.join("LATEST")).unwrap();
    assert!(stage.join(latest.trim()).join("model.bpk").exists());
    assert!(stage.join(latest.trim()).join("manifest.json").exists());
    options.resume = true;
    options.stop_after = None;
    let report = distill(&config, &options).unwrap();
    assert_eq!(
        report.stages[0].steps, 4,
        "the resumed teacher stage ends at its last step"
    );
    let prediction = report.stages.last().unwrap();
    assert_eq!(
        (prediction.name.as_str(), prediction.steps),
        ("tinybert-prediction", 1)
    );
    assert!(
        prediction.best_dev.is_some(),
        "a stage that ends inside a pass is evaluated at its end"
    );
    assert_eq!(report.teacher.layers, 6);
    assert_eq!(report.student.layers, 3);
    assert!(report.student.params < report.teacher.params);
    for f in [
        "config.json",
        "metrics.jsonl",
        "report.json",
        "report.md",
        "teacher/model.safetensors",
        "teacher/classifier.json",
        "student/model.safetensors",
        "student/tokenizer.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The student directory is an ordinary HF BERT directory.
    student_arch::load_pretrained(&out.join("student"), &burn::tensor::Device::flex()).unwrap();
    // The split is recorded with the model, and `eval` on the same dataset scores exactly the run's test rows,
    // whatever seed it is given: the student's test accuracy of the report, on as many examples.
    let (meta, _) = pipeline::ClassifierMeta::read(&out.join("student")).unwrap();
    let recorded = meta.split.clone().expect("distill records its split");
    assert_eq!(
        (recorded.seed, recorded.dev_fraction, recorded.test_fraction),
        (5, 0.2, 0.25)
    );
    let scored = pipeline::evaluate_dir(
        &out.join("student"),
        &config.dataset,
        &config.columns,
        999,
        pipeline::EvalSplit::Test,
        None,
        &dir.join("cache"),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    assert_eq!(scored.examples, report.split_sizes[2]);
    assert_eq!(scored.accuracy, report.student.accuracy);
    // Under the old rule (the given seed, default fractions) the test rows would have overlapped the run's
    // training rows; under the recorded split they never do.
    let data =
        pipeline::load_dataset(&config.dataset, &config.columns, None, &dir.join("cache")).unwrap();
    let (seed, fractions) = meta.split_for(&config.dataset, 999);
    let run_split = fractions.split(&data.examples, seed).unwrap();
    let old_rule = pipeline::SplitConfig::default()
        .split(&data.examples, 999)
        .unwrap();
    let trained: std::collections::HashSet<&str> =
        run_split.train.iter().map(|e| e.text.as_str()).collect();
    assert!(run_split
        .test
        .iter()
        .all(|e| !trained.contains(e.text.as_str())));
    assert!(old_rule
        .test
        .iter()
        .any(|e| trained.contains(e.text.as_str())));

    // Q-BERT sensitivity of the saved student on two batches of the same CSV: the code path of
    // `cargo xtask sensitivity`, with few power-iteration steps.
    let options = SensitivityOptions {
        dataset: config.dataset.clone(),
        columns: config.columns.clone(),
        batches: 2,
        batch_size: 8,
        hessian: hessian::SensitivityConfig {
            power: hessian::PowerIterationConfig {
                max_iterations: 3,
                ..Default::default()
            },
            trace_samples: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let report_path = dir.join("sensitivity.json");
    let measure_to =
        |path: &std::path::Path, options: &SensitivityOptions, control: MeasureControl| {
            measure_sensitivity(
                &out.join("student"),
                options,
                path,
                &dir.join("cache"),
                &burn::tensor::Device::flex(),
                &control,
            )
        };
    let run =
        |options: &SensitivityOptions| measure_to(&report_path, options, MeasureControl::default());
    let sens = run(&options).unwrap();
    assert_eq!(sens.ranking().len(), 3, "one block per student layer");
    for b in &sens.blocks {
        assert_eq!(b.top_eigenvalues.len(), 2);
        assert!(b.top_eigenvalues.iter().all(|v| v.is_finite()), "{b:?}");
        assert_eq!(b.traces.len(), 2);
    }
    assert!(report_path.with_extension("md").exists());
    let batches: Vec<pipeline::SavedBatch> = serde_json::from_str(
        &std::fs::read_to_string(pipeline::sensitivity_batches_path(&report_path)).unwrap(),
    )
    .unwrap();
    assert_eq!(batches.len(), 2);
    // Interrupted after one block, then resumed: the same figures as the uninterrupted run, and the partial
    // file gone. A partial file from other options is refused, naming it.
    let resumed_path = dir.join("sensitivity-resumed.json");
    let measure_with = |options: &SensitivityOptions, control: MeasureControl| {
        measure_to(&resumed_path, options, control)
    };
    let err = measure_with(
        &options,
        MeasureControl {
            stop_after_blocks: Some(1),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--resume"), "{err}");
    assert!(sensitivity_partial_path(&resumed_path).exists());
    let resume = || MeasureControl {
        resume: true,
        ..Default::default()
    };
    let other = SensitivityOptions {
        seed: 7,
        ..options.clone()
    };
    let err = measure_with(&other, resume()).unwrap_err().to_string();
    assert!(
        err.contains("other options") && err.contains("partial.json"),
        "{err}"
    );
    let resumed = measure_with(&options, resume()).unwrap();
    // Equal up to the last bit or so: the resumed block went through JSON, whose parser may round the last
    // digit of an f64 differently.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0);
    assert_eq!(resumed.ranking(), sens.ranking());
    for (a, b) in resumed.blocks.iter().zip(&sens.blocks) {
        assert_eq!(a.iterations, b.iterations);
        for (x, y) in a
            .top_eigenvalues
            .iter()
            .chain(&a.traces)
            .chain([&a.mean, &a.std, &a.score])
            .zip(
                b.top_eigenvalues
                    .iter()
                    .chain(&b.traces)
                    .chain([&b.mean, &b.std, &b.score]),
            )
        {
            assert!(close(*x, *y), "{}: {x} vs {y}", a.name);
        }
    }
    assert!(!sensitivity_partial_path(&resumed_path).exists());
    let too_many = SensitivityOptions {
        batches: 100,
        ..options.clone()
    };
    let err = run(&too_many).unwrap_err().to_string();
    assert!(err.contains("fewer or smaller batches"), "{err}");
    let unknown = SensitivityOptions {
        blocks: vec!["layer.9".into()],
        ..options
    };
    let err = run(&unknown).unwrap_err().to_string();
    assert!(err.contains("layer.9") && err.contains("layer.2"), "{err}");

    // `cargo xtask quantize --bits mixed --sensitivity .. --avg-bits 4 --compare`: the same code path on the
    // tiny student, with the report above.
    use pipeline::{quantize, QuantizeOptions};
    let q_options = QuantizeOptions {
        bits: None,
        sensitivity: Some(report_path.clone()),
        avg_bits: Some(4.0),
        embedding_bits: 4,
        embedding_granularity: quant::Granularity::Block(32),
        compare: true,
        dataset: config.dataset.clone(),
        columns: config.columns.clone(),
        ..Default::default()
    };
    let q_out = dir.join("quantized");
    let device = burn::tensor::Device::flex();
    let q = quantize(
        &out.join("student"),
        &q_options,
        &q_out,
        &dir.join("cache"),
        &device,
    )
    .unwrap();
    assert!(q.avg_layer_bits <= 4.0 + 1e-9, "{}", q.avg_layer_bits);
    let names: Vec<&str> = q.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hessian (Q-BERT rule)",
            "uniform 4-bit",
            "random order (same size)",
            "reverse sensitivity"
        ]
    );
    assert!(q
        .variants
        .iter()
        .all(|v| (0.0..=1.0).contains(&v.accuracy) && v.avg_layer_bits <= 4.0 + 1e-9));
    assert!(
        q.artifact_bytes * 5 < q.input_bytes,
        "{} vs {}",
        q.artifact_bytes,
        q.input_bytes
    );
    for f in [
        quant::QUANT_FILE,
        "config.json",
        "classifier.json",
        "tokenizer.json",
        "quant_report.md",
        "quant_report.json",
    ] {
        assert!(q_out.join(f).exists(), "{f}");
    }
    assert!(!q_out.join("model.safetensors").exists());
    // `cargo xtask eval` reads the quantized directory, and gets the reported accuracy.
    let again = pipeline::evaluate_saved(
        &q_out,
        &config.dataset,
        &config.columns,
        42,
        &dir.join("cache"),
        &device,
    )
    .unwrap();
    assert_eq!(again.accuracy, q.variants[0].accuracy);
    // The quantized-kernel encoder runs the written file.
    let file = quant::QuantizedModel::read(&q_out.join(quant::QUANT_FILE)).unwrap();
    let encoder = quant::encoder::QuantEncoder::new(&file).unwrap();
    assert_eq!(
        encoder.mean_pooled(&[vec![101, 2023, 102]]).unwrap()[0].len(),
        file.config.hidden_size
    );
    // A budget in MB: the file stays within it.
    let budget_mb = q.file_bytes as f64 / 1e6;
    let by_size = quantize(
        &out.join("student"),
        &QuantizeOptions {
            avg_bits: None,
            budget_mb: Some(budget_mb),
            compare: false,
            ..q_options.clone()
        },
        &dir.join("quantized-mb"),
        &dir.join("cache"),
        &device,
    )
    .unwrap();
    assert!(
        by_size.file_bytes as f64 <= budget_mb * 1e6,
        "{} > {budget_mb} MB",
        by_size.file_bytes
    );
    assert_eq!(by_size.variants.len(), 1);
    // `--qat-epochs`: fake-quantized fine-tuning with KD from the fine-tuned teacher, then export.
    let mut qat = pipeline::QatConfig::default();
    qat.stage.epochs = 2;
    qat.stage.batch_size = 8;
    qat.stage.learning_rate = 1e-4;
    let with_qat = quantize(
        &out.join("student"),
        &QuantizeOptions {
            bits: Some(4),
            sensitivity: None,
            avg_bits: None,
            compare: false,
            teacher: Some(out.join("teacher")),
            qat: Some(qat),
            ..q_options.clone()
        },
        &dir.join("quantized-qat"),
        &dir.join("cache"),
        &device,
    )
    .unwrap();
    let names: Vec<&str> = with_qat.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["uniform 4-bit + QAT", "uniform 4-bit without-QAT"]);
    let summary = with_qat.qat.as_ref().unwrap();
    assert!(
        summary.teacher_kd && summary.outcome.steps >= 4,
        "{summary:?}"
    );
    assert!(summary.outcome.best_dev.is_some());
    // QAT changed the weights that were exported.
    let trained = std::fs::read(dir.join("quantized-qat").join(quant::QUANT_FILE)).unwrap();
    let plain = std::fs::read(
        dir.join("quantized-qat/baselines/no-qat")
            .join(quant::QUANT_FILE),
    )
    .unwrap();
    assert_eq!(trained.len(), plain.len());
    assert_ne!(trained, plain);
    let reread = pipeline::evaluate_saved(
        &dir.join("quantized-qat"),
        &config.dataset,
        &config.columns,
        42,
        &dir.join("cache"),
        &device,
    )
    .unwrap();
    assert_eq!(reread.accuracy, with_qat.variants[0].accuracy);
    // Bad input: mixed without a report, a budget below the smallest size, a corrupt file.
    let err = quantize(
        &out.join("student"),
        &QuantizeOptions {
            sensitivity: None,
            ..q_options.clone()
        },
        &q_out,
        &dir.join("cache"),
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--sensitivity"), "{err}");
    let err = quantize(
        &out.join("student"),
        &QuantizeOptions {
            avg_bits: Some(1.0),
            ..q_options.clone()
        },
        &q_out,
        &dir.join("cache"),
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("below the smallest possible size"), "{err}");
    let bytes = std::fs::read(q_out.join(quant::QUANT_FILE)).unwrap();
    std::fs::write(q_out.join(quant::QUANT_FILE), &bytes[..bytes.len() / 2]).unwrap();
    let err = pipeline::evaluate_saved(
        &q_out,
        &config.dataset,
        &config.columns,
        42,
        &dir.join("cache"),
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a valid quantized model"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
