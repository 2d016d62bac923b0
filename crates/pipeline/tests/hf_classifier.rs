//! A `BertForSequenceClassification` saved by transformers (the fixture of `scripts/hf_layouts.py`) is a
//! classifier here: its labels from `id2label`, its [CLS] → pooler → classifier head giving transformers'
//! logits. What we write declares what it holds: `cls` as `BertForSequenceClassification`, `mean` under its own
//! `model_type` with its modeling code. Needs no teacher, torch or transformers.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use pipeline::{ClassifierMeta, Pooling, SequenceClassifier, MEAN_MODELING_FILE, MEAN_MODEL_TYPE};
use student_arch::BertInput;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../student-arch/tests/data/hf")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn batch(e: &serde_json::Value) -> Vec<Vec<u32>> {
    e["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["lengths"].as_array().unwrap())
        .map(|(row, n)| {
            row.as_array().unwrap()[..n.as_u64().unwrap() as usize]
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn logits(model: &SequenceClassifier, ids: &[Vec<u32>], device: &Device) -> Vec<f32> {
    let input = BertInput::from_token_ids(ids, 0, model.encoder.config.vocab_size, device).unwrap();
    model
        .forward(input)
        .logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_transformers_classifier_loads_with_its_labels_and_logits() {
    let device = Device::flex();
    let e = expected();
    let dir = fixtures().join("bert-classifier-safetensors");
    let (meta, _) = ClassifierMeta::read(&dir).unwrap();
    assert_eq!(meta.labels, ["negative", "neutral", "positive"]);
    assert_eq!(meta.pooling, "cls");
    let (model, _) = SequenceClassifier::load(&dir, &device).unwrap();
    assert_eq!(model.pooling(), Pooling::Cls);
    let want: Vec<f32> = e["models"]["bert-classifier-safetensors"]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let got = logits(&model, &batch(&e), &device);
    assert!(
        max_diff(&got, &want) < 1e-4,
        "ours {got:?}, transformers {want:?}"
    );

    // Labels mapped by name: the dataset's order (positive, negative, neutral) picks the model's columns.
    let order = meta
        .label_order(
            &["positive".into(), "negative".into(), "neutral".into()],
            &dir,
        )
        .unwrap();
    assert_eq!(order, [2, 0, 1]);
    let reordered = logits(&model.reorder_labels(&order).unwrap(), &batch(&e), &device);
    for row in 0..2 {
        for (i, &o) in order.iter().enumerate() {
            assert_eq!(reordered[row * 3 + i], got[row * 3 + o]);
        }
    }
    // Other label sets are refused, naming both.
    let err = meta
        .label_order(&["fresh".into(), "rotten".into()], &dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("negative") && err.contains("fresh"), "{err}");
}

#[test]
fn what_we_write_declares_its_head() {
    let device = Device::flex();
    let e = expected();
    let (model, meta) =
        SequenceClassifier::load(&fixtures().join("bert-classifier-safetensors"), &device).unwrap();
    let before = logits(&model, &batch(&e), &device);
    let out = scratch("hf-classifier-save");

    // cls: a BertForSequenceClassification with id2label, its encoder under `bert.` as transformers names it.
    let cls_dir = out.join("cls");
    std::fs::create_dir_all(&cls_dir).unwrap();
    model.save(&cls_dir, &meta).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cls_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["id2label"]["2"], "positive");
    assert_eq!(config["label2id"]["neutral"], 1);
    let bytes = std::fs::read(cls_dir.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert!(names.contains(&"bert.pooler.dense.weight"));
    assert!(names.contains(&"classifier.weight"));
    assert!(
        !names.iter().any(|n| n.starts_with("embeddings.")),
        "{names:?}"
    );
    assert!(!cls_dir.join(MEAN_MODELING_FILE).exists());
    let (back, _) = SequenceClassifier::load(&cls_dir, &device).unwrap();
    assert_eq!(logits(&back, &batch(&e), &device), before);

    // mean: its own model_type, the modeling code beside it, and it reads back as a mean classifier.
    let mean = SequenceClassifier {
        cls: false,
        ..model
    };
    let mean_dir = out.join("mean");
    std::fs::create_dir_all(&mean_dir).unwrap();
    mean.save(&mean_dir, &meta).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mean_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], MEAN_MODEL_TYPE);
    assert_eq!(
        config["auto_map"]["AutoModelForSequenceClassification"],
        "modeling_bert_compress.BertCompressMeanForSequenceClassification"
    );
    let code = std::fs::read_to_string(mean_dir.join(MEAN_MODELING_FILE)).unwrap();
    assert!(code.contains("model_type = \"bert_compress_mean\""));
    let (back, back_meta) = SequenceClassifier::load(&mean_dir, &device).unwrap();
    assert_eq!(back.pooling(), Pooling::Mean);
    assert_eq!(back_meta.pooling, "mean");
    // The encoder alone still opens as a BERT, with its plain architecture.
    let (encoder, _) = student_arch::load_pretrained(&mean_dir, &device).unwrap();
    assert_eq!(encoder.config.model_type, "bert");
    // Writing the mean model as cls again removes the modeling code.
    let (cls_again, _) = SequenceClassifier::load(&mean_dir, &device).unwrap();
    cls_again
        .with_pooling(Pooling::Cls)
        .unwrap()
        .save(&mean_dir, &meta)
        .unwrap();
    assert!(!mean_dir.join(MEAN_MODELING_FILE).exists());
    std::fs::remove_dir_all(&out).ok();
}

/// A copy of the transformers classifier fixture whose class ids are in another order than the dataset's
/// (sorted) labels, with a word-piece vocabulary so that text can be tokenised.
fn teacher_with_vocab(dir: &Path) -> PathBuf {
    let teacher = dir.join("hf-teacher");
    std::fs::create_dir_all(&teacher).unwrap();
    let from = fixtures().join("bert-classifier-safetensors");
    std::fs::copy(
        from.join("model.safetensors"),
        teacher.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("config.json")).unwrap()).unwrap();
    config["id2label"] = serde_json::json!({"0": "positive", "1": "negative", "2": "neutral"});
    config["label2id"] = serde_json::json!({"positive": 0, "negative": 1, "neutral": 2});
    std::fs::write(teacher.join("config.json"), config.to_string()).unwrap();
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend((0..59).map(|i| format!("w{i}")));
    std::fs::write(teacher.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    teacher
}

#[test]
fn a_transformers_classifier_is_distilled_without_fine_tuning_and_its_labels_mapped() {
    let dir = scratch("hf-teacher-distill");
    let teacher = teacher_with_vocab(&dir);
    let mut csv = String::from("text,label\n");
    for i in 0..60 {
        let label = ["negative", "neutral", "positive"][i % 3];
        csv += &format!("w{} w{} w{},{label}\n", i % 59, (i * 7) % 59, (i * 13) % 59);
    }
    std::fs::write(dir.join("task.csv"), csv).unwrap();
    let mut config = pipeline::DistillConfig::preset("default").unwrap();
    config.teacher = Some(teacher.clone());
    config.dataset = dir.join("task.csv").display().to_string();
    config.max_length = 8;
    for stage in [&mut config.intermediate, &mut config.prediction] {
        stage.epochs = 1;
        stage.min_tokens = 0;
        stage.batch_size = 8;
    }
    let options = pipeline::RunOptions {
        out_dir: dir.join("run"),
        device_name: "flex".into(),
        device: Device::flex(),
        resume: false,
        cache: dir.join("cache"),
        stop_after: None,
    };
    let report = pipeline::distill(&config, &options).unwrap();
    let note = report
        .teacher_note
        .clone()
        .expect("the report says the teacher was given");
    assert!(
        note.contains("not fine-tuned again") && note.contains("mapped"),
        "{note}"
    );
    assert!(
        !report.stages.iter().any(|s| s.name == "teacher-finetune"),
        "{:?}",
        report.stages.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The saved teacher is the given one with its classes in the dataset's order: same logits, permuted.
    let device = Device::flex();
    let (given, _) = SequenceClassifier::load(&teacher, &device).unwrap();
    let (saved, saved_meta) = SequenceClassifier::load(&dir.join("run/teacher"), &device).unwrap();
    assert_eq!(saved_meta.labels, ["negative", "neutral", "positive"]);
    let ids = vec![vec![2, 9, 17, 3], vec![2, 30, 3]];
    let a = logits(&given, &ids, &device);
    let b = logits(&saved, &ids, &device);
    for row in 0..2 {
        for (i, o) in [1, 2, 0].into_iter().enumerate() {
            assert!((b[row * 3 + i] - a[row * 3 + o]).abs() < 1e-6);
        }
    }
    // Its student keeps the cls head and is declared as transformers reads it.
    let (student, _) = SequenceClassifier::load(&dir.join("run/student"), &device).unwrap();
    assert_eq!(student.pooling(), Pooling::Cls);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("run/student/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"]["0"], "negative");

    // Quantized, the cls student's integer kernels pool through the pooler as the dequantized model does.
    let options = pipeline::QuantizeOptions {
        dataset: dir.join("task.csv").display().to_string(),
        ..Default::default()
    };
    let quantized = dir.join("quantized");
    pipeline::quantize(
        &dir.join("run/student"),
        &options,
        &quantized,
        &dir.join("cache"),
        &device,
    )
    .unwrap();
    let texts: Vec<String> = ["w1 w7 w13", "w30 w2", "w5 w5 w5 w40"]
        .map(String::from)
        .into();
    let integer = pipeline::Predictor::load(&quantized, &device, Some(pipeline::Engine::Integer))
        .unwrap()
        .predict(&texts, 8)
        .unwrap();
    let dequantized =
        pipeline::Predictor::load(&quantized, &device, Some(pipeline::Engine::Dequantized))
            .unwrap()
            .predict(&texts, 8)
            .unwrap();
    let gap = |x: &[pipeline::Prediction], y: &[pipeline::Prediction]| {
        x.iter()
            .zip(y)
            .flat_map(|(a, b)| {
                a.probabilities
                    .iter()
                    .map(|(l, p)| (p - b.probabilities[l]).abs())
            })
            .fold(0.0f64, f64::max)
    };
    // The same model read through the mean over tokens: what a wrong pooling would give.
    let mean_dir = dir.join("as-mean");
    std::fs::create_dir_all(&mean_dir).unwrap();
    let (student, meta) = SequenceClassifier::load(&dir.join("run/student"), &device).unwrap();
    SequenceClassifier {
        cls: false,
        ..student
    }
    .save(&mean_dir, &meta)
    .unwrap();
    std::fs::copy(
        dir.join("run/student/vocab.txt"),
        mean_dir.join("vocab.txt"),
    )
    .unwrap();
    let as_mean = pipeline::Predictor::load(&mean_dir, &device, None)
        .unwrap()
        .predict(&texts, 8)
        .unwrap();
    let quantization = gap(&integer, &dequantized);
    let pooling = gap(&dequantized, &as_mean);
    eprintln!("integer vs dequantized {quantization:.2e}; cls vs mean pooling {pooling:.2e}");
    assert!(
        quantization < pooling / 10.0,
        "integer vs dequantized {quantization}, cls vs mean {pooling}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
