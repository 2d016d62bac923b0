//! Shapes other than MiniLM's: a BERT-base-shaped teacher (12 layers, 768 wide, 12 heads, FFN 3072, token types
//! and a pooler; random weights, a vocabulary of a few hundred pieces) goes through fine-tune → distil → export →
//! reload on a handful of examples, one step per stage (no timing asserted): the default student is 6 × 768 (every
//! other teacher layer), it reloads for `predict` and its ONNX export matches it; a narrower student is one set of
//! flags away, and a shape that TinyBERT's losses cannot compare is refused before anything trains.

mod common;

use std::path::Path;

use common::{reviews_csv, xtask, Scratch};

fn config_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn distill(s: &Scratch, teacher: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let csv = s.path().join("reviews.csv");
    reviews_csv(&csv, 2);
    let stage = "epochs = 1\nbatch_size = 8\nlearning_rate = 1e-4\nmin_tokens = 0\n";
    let config = s.path().join("tiny.toml");
    std::fs::write(
        &config,
        format!(
            "dataset = \"{}\"\nmax_length = 16\n\n[columns]\ntext = \"review\"\nlabel = \"verdict\"\n\n\
             [teacher_finetune]\n{stage}\n[intermediate]\n{stage}\n[prediction]\n{stage}",
            csv.display()
        ),
    )
    .unwrap();
    let mut args = vec![
        "distill".to_string(),
        "--device".into(),
        "flex".into(),
        "--config".into(),
        config.display().to_string(),
        "--teacher".into(),
        teacher.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    xtask(&refs, None)
}

#[test]
fn a_bert_base_shaped_teacher_is_fine_tuned_distilled_exported_and_reloaded() {
    let s = Scratch::new("bert-base");
    let teacher = s.path().join("bert-base");
    let mut config = common::tiny_config(&teacher);
    config.hidden_size = 768;
    config.num_hidden_layers = 12;
    config.num_attention_heads = 12;
    config.intermediate_size = 3072;
    config.type_vocab_size = 2;
    let device = student_arch::device::device("flex").unwrap();
    let model = config.init_random(true, 5, &device).unwrap();
    student_arch::save_pretrained(&model, &teacher).unwrap();
    drop(model);

    let out = s.path().join("distill");
    let run = distill(&s, &teacher, &out, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let student = config_json(&out.join("student"));
    assert_eq!(student["num_hidden_layers"], 6);
    assert_eq!(student["hidden_size"], 768);
    assert_eq!(student["num_attention_heads"], 12);
    assert_eq!(student["intermediate_size"], 3072);
    assert_eq!(config_json(&out.join("teacher"))["num_hidden_layers"], 12);

    // Reload: the saved student scores text, and its ONNX export reads it the same way.
    let texts = "a wonderful moving film\na tedious waste of time\n";
    let predicted = xtask(
        &[
            "predict",
            "--device",
            "flex",
            "--model",
            &out.join("student").display().to_string(),
        ],
        Some(texts),
    );
    assert!(
        predicted.status.success(),
        "{}",
        String::from_utf8_lossy(&predicted.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&predicted.stdout).lines().count(),
        2
    );
    let onnx = s.path().join("onnx");
    let exported = xtask(
        &[
            "export",
            "--device",
            "flex",
            "--model",
            &out.join("student").display().to_string(),
            "--out",
            &onnx.display().to_string(),
        ],
        None,
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(onnx.join("export_report.json")).unwrap())
            .unwrap();
    // 6 layers × 6 matrices, the two embedding tables and the classifier.
    assert_eq!(report["matrices"].as_array().unwrap().len(), 6 * 6 + 2 + 1);

    // A narrower student from the fine-tuned teacher (not fine-tuned again): 3 × 384, the teacher's 12 heads.
    let narrow = s.path().join("narrow");
    let flags = [
        "--student-hidden",
        "384",
        "--student-heads",
        "12",
        "--student-ffn",
        "1536",
        "--student-depth",
        "3",
    ];
    let run = distill(&s, &out.join("teacher"), &narrow, &flags);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let student = config_json(&narrow.join("student"));
    assert_eq!(
        (
            student["num_hidden_layers"].as_u64(),
            student["hidden_size"].as_u64()
        ),
        (Some(3), Some(384))
    );
    assert_eq!(student["intermediate_size"], 1536);

    // 8 heads cannot be compared one by one with the teacher's 12: refused before anything is written.
    let refused = s.path().join("refused");
    let run = distill(
        &s,
        &out.join("teacher"),
        &refused,
        &["--student-hidden", "384", "--student-heads", "8"],
    );
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("12 heads") && err.contains("num_attention_heads = 8"),
        "{err}"
    );
    assert!(!refused.join("student").exists());
}
