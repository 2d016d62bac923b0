//! `cargo xtask compress` end to end on a tiny configuration of the real code path (the real teacher, a user
//! CSV, one epoch per stage): distillation, vocabulary pruning, 4-bit quantization with QAT, and the report's
//! row per stage on the path that runs. A second call finds every step done and writes the same rows. Needs the
//! teacher (`BERT_COMPRESS_TEACHER`, set by `cargo xtask ci`).

mod common;

use std::path::PathBuf;

use common::{reviews_csv, xtask, Scratch};

#[test]
fn compress_runs_every_method_and_reports_each_stage() {
    let teacher = PathBuf::from(
        std::env::var_os("BERT_COMPRESS_TEACHER")
            .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`"),
    );
    let s = Scratch::new("compress-tiny");
    let csv = s.path().join("reviews.csv");
    reviews_csv(&csv, 6);
    let stage = "epochs = 1\nbatch_size = 8\nlearning_rate = 1e-4\n";
    let config = s.path().join("tiny.toml");
    std::fs::write(
        &config,
        format!(
            "dataset = \"{}\"\nmax_length = 16\nmax_train_examples = 32\n\n[columns]\ntext = \"review\"\nlabel = \"verdict\"\n\n[teacher_finetune]\n{stage}\n[intermediate]\n{stage}\n[prediction]\n{stage}",
            csv.display()
        ),
    )
    .unwrap();
    let out = s.path().join("compress");
    let args = [
        "compress",
        "--device",
        "flex",
        "--config",
        &config.display().to_string(),
        "--teacher",
        &teacher.display().to_string(),
        "--out",
        &out.display().to_string(),
    ];
    let run = xtask(&args, None);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compress_report.json")).unwrap())
            .unwrap();
    let rows = report["rows"].as_array().unwrap();
    let stages: Vec<&str> = rows.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "teacher fp32",
            "student fp32",
            "student fp32, pruned vocabulary",
            "student quantized"
        ]
    );
    let bytes: Vec<u64> = rows.iter().map(|r| r["bytes"].as_u64().unwrap()).collect();
    assert!(
        bytes.windows(2).all(|w| w[1] < w[0]),
        "each stage is smaller: {bytes:?}"
    );
    assert_eq!(rows[3]["engine"], "integer");
    assert_eq!(rows[0]["engine"], "native f32");
    for r in rows {
        assert!(r["latency_ms_b1"].as_f64().unwrap() > 0.0);
        assert!(r["latency_ms_b32"].as_f64().unwrap() >= r["latency_ms_b1"].as_f64().unwrap());
        let a = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
    }
    assert!(out.join("compress_report.md").exists());
    // The charts: size against accuracy here, bits per matrix beside the quantized model, a loss curve per stage
    // of the distillation, each shown in its report.
    let md = std::fs::read_to_string(out.join("compress_report.md")).unwrap();
    assert!(md.contains("](compress_chart.png)"), "{md}");
    for png in [
        out.join("compress_chart.png"),
        out.join("quantized").join("quant_bits.png"),
    ] {
        assert!(
            std::fs::read(&png).unwrap().starts_with(b"\x89PNG"),
            "{}",
            png.display()
        );
    }
    let distilled = std::fs::read_dir(out.join("distill"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("loss_"))
        .count();
    assert!(
        distilled >= 2,
        "{distilled} loss curves in {}",
        out.join("distill").display()
    );
    assert!(out
        .join("quantized")
        .join("model.quant.safetensors")
        .exists());
    // Everything done: a second call runs no step again and reports the same accuracies and sizes.
    let again = xtask(&args, None);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!stderr.contains("compress: distilling"), "{stderr}");
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compress_report.json")).unwrap())
            .unwrap();
    for (a, b) in rows.iter().zip(second["rows"].as_array().unwrap()) {
        assert_eq!(a["accuracy"], b["accuracy"]);
        assert_eq!(a["bytes"], b["bytes"]);
    }
}
