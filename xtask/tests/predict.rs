//! `cargo xtask predict` agrees with `cargo xtask eval` on a full-precision and on a quantized directory: the
//! accuracy of its labels on a file equals eval's on the same rows and engine (the integer kernels for the
//! quantized one), every line carries a probability per label summing to 1, and stdin and a CSV give the same.

mod common;

use common::{reviews_csv, tiny_classifier, xtask, Scratch};

fn eval_accuracy(model: &str, csv: &str) -> (f64, String) {
    let out = xtask(
        &[
            "eval",
            "--device",
            "flex",
            "--model",
            model,
            "--dataset",
            csv,
            "--text-column",
            "review",
            "--label-column",
            "verdict",
            "--split",
            "all",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["accuracy"].as_f64().unwrap(),
        v["engine"].as_str().unwrap().to_string(),
    )
}

fn predicted(model: &str, args: &[&str], stdin: Option<&str>) -> Vec<serde_json::Value> {
    let mut all = vec![
        "predict",
        "--device",
        "flex",
        "--batch-size",
        "5",
        "--model",
        model,
    ];
    all.extend(args);
    let out = xtask(&all, stdin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn predict_agrees_with_eval_on_fp32_and_quantized_directories() {
    let s = Scratch::new("predict");
    let model = s.path().join("student");
    tiny_classifier(&model);
    let csv = s.path().join("reviews.csv");
    reviews_csv(&csv, 3);
    let quantized = s.path().join("quantized");
    let q = xtask(
        &[
            "quantize",
            "--device",
            "flex",
            "--granularity",
            "tensor",
            "--model",
            &model.display().to_string(),
            "--out",
            &quantized.display().to_string(),
            "--dataset",
            &csv.display().to_string(),
            "--text-column",
            "review",
            "--label-column",
            "verdict",
        ],
        None,
    );
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let (t, label) = l.rsplit_once(',').unwrap();
            (t.trim_matches('"').to_string(), label.to_string())
        })
        .collect();
    // On a CPU device a full-precision directory runs on the native f32 encoder, a quantized one on the
    // integer kernels.
    for (dir, engine) in [(&model, "native"), (&quantized, "integer")] {
        let dir = dir.display().to_string();
        let (accuracy, eval_engine) = eval_accuracy(&dir, &csv.display().to_string());
        assert_eq!(eval_engine, engine);
        let from_file = predicted(
            &dir,
            &[
                "--input",
                &csv.display().to_string(),
                "--text-column",
                "review",
            ],
            None,
        );
        assert_eq!(from_file.len(), rows.len());
        let correct = from_file
            .iter()
            .zip(&rows)
            .filter(|(p, (_, gold))| p["label"] == gold.as_str())
            .count();
        assert_eq!(correct as f64 / rows.len() as f64, accuracy, "{dir}");
        for p in &from_file {
            let probs = p["probabilities"].as_object().unwrap();
            assert_eq!(probs.len(), 2);
            let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        }
        let stdin: String = rows.iter().map(|(t, _)| format!("{t}\n")).collect();
        let from_stdin = predicted(&dir, &[], Some(&stdin));
        assert_eq!(from_stdin, from_file, "{dir}: stdin and --input differ");
        if engine == "native" {
            // Burn on the same weights gives the same labels and probabilities up to f32 rounding.
            let burn = predicted(&dir, &["--engine", "dequantized"], Some(&stdin));
            for (a, b) in from_stdin.iter().zip(&burn) {
                assert_eq!(a["label"], b["label"]);
                for (k, v) in a["probabilities"].as_object().unwrap() {
                    let w = b["probabilities"][k].as_f64().unwrap();
                    assert!((v.as_f64().unwrap() - w).abs() < 1e-5, "{k}: {v} vs {w}");
                }
            }
        }
    }
}
