//! `cargo xtask eval` on malformed classifiers and data sets: every case fails with a message that names the file
//! or field and the fix, and changes no file it was given (issue 16's classes 2, 5, 9).

mod common;

use std::path::{Path, PathBuf};

use common::{args, reviews_csv, run_cases, tiny_classifier, Case, Scratch};

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn malformed_classifiers_and_data_are_named_errors() {
    let s = Scratch::new("eval");
    let data = s.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let good_csv = data.join("reviews.csv");
    reviews_csv(&good_csv, 3);
    let mut cases = Vec::new();
    let model = |name: &str, edit: &dyn Fn(&Path)| -> PathBuf {
        let dir = s.path().join(name);
        tiny_classifier(&dir);
        edit(&dir);
        dir
    };
    let eval_case = |name: &'static str, dir: &Path, csv: &Path, expect: Vec<&'static str>| Case {
        name,
        args: args(&[
            "eval",
            "--device",
            "flex",
            "--model",
            &dir.display().to_string(),
            "--dataset",
            &csv.display().to_string(),
            "--text-column",
            "review",
            "--label-column",
            "verdict",
        ]),
        stdin: None,
        expect,
        keep: vec![dir.to_path_buf(), csv.parent().unwrap().to_path_buf()],
        succeeds: false,
    };
    let meta = |edit: fn(&mut serde_json::Value)| {
        move |d: &Path| edit_json(&d.join("classifier.json"), edit)
    };
    let d = model("long", &meta(|v| v["max_length"] = 1000.into()));
    cases.push(eval_case(
        "max_length beyond the positions",
        &d,
        &good_csv,
        vec!["classifier.json", "max_length", "max_position_embeddings"],
    ));
    let d = model("zero", &meta(|v| v["max_length"] = 0.into()));
    cases.push(eval_case(
        "max_length 0",
        &d,
        &good_csv,
        vec!["classifier.json", "max_length"],
    ));
    let d = model(
        "one-label",
        &meta(|v| v["labels"] = serde_json::json!(["fresh"])),
    );
    cases.push(eval_case(
        "one label in classifier.json",
        &d,
        &good_csv,
        vec!["classifier.json", "labels"],
    ));
    let d = model(
        "dup-label",
        &meta(|v| v["labels"] = serde_json::json!(["fresh", "fresh"])),
    );
    cases.push(eval_case(
        "duplicate labels",
        &d,
        &good_csv,
        vec!["classifier.json", "distinct"],
    ));
    let d = model("pooling", &meta(|v| v["pooling"] = "max".into()));
    cases.push(eval_case(
        "unknown pooling",
        &d,
        &good_csv,
        vec!["classifier.json", "pooling"],
    ));
    let d = model("meta-not-json", &|d: &Path| {
        std::fs::write(d.join("classifier.json"), "labels: [a, b]").unwrap()
    });
    cases.push(eval_case(
        "classifier.json not JSON",
        &d,
        &good_csv,
        vec!["classifier.json"],
    ));
    let d = model("no-meta", &|d: &Path| {
        std::fs::remove_file(d.join("classifier.json")).unwrap()
    });
    cases.push(eval_case(
        "no classifier.json",
        &d,
        &good_csv,
        vec!["classifier.json", "fine-tune"],
    ));
    let d = model("big-tokenizer", &|d: &Path| {
        let p = d.join("vocab.txt");
        let mut v = std::fs::read_to_string(&p).unwrap();
        for i in 0..300 {
            v += &format!("more{i}\n");
        }
        std::fs::write(&p, v).unwrap();
    });
    cases.push(eval_case(
        "tokenizer of another model",
        &d,
        &good_csv,
        vec!["vocab.txt", "vocab_size"],
    ));
    let d = model("head-nan", &|d: &Path| {
        let device = student_arch::device::device("flex").unwrap();
        let (m, _) = pipeline::SequenceClassifier::load(d, &device).unwrap();
        let mut t = m.named_tensors().unwrap();
        t.get_mut("classifier.bias").unwrap().1[0] = f32::INFINITY;
        std::fs::write(
            d.join("model.safetensors"),
            student_arch::weights::safetensors_bytes(&t).unwrap(),
        )
        .unwrap();
    });
    cases.push(eval_case(
        "infinite head bias",
        &d,
        &good_csv,
        vec!["classifier.bias", "non-finite"],
    ));
    let fine = model("fine", &|_: &Path| {});
    let csv = |name: &str, text: &str| -> PathBuf {
        let p = data.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let p = csv(
        "quote.csv",
        "review,verdict\n\"great film,fresh\nbad film,rotten\n",
    );
    cases.push(eval_case(
        "unclosed quote",
        &fine,
        &p,
        vec!["quote.csv", "line 2", "quote"],
    ));
    let p = csv(
        "empty-text.csv",
        "review,verdict\ngreat film,fresh\n  ,rotten\n",
    );
    cases.push(eval_case(
        "empty text",
        &fine,
        &p,
        vec!["empty-text.csv", "line 3", "empty text"],
    ));
    let p = csv(
        "empty-label.csv",
        "review,verdict\ngreat film,fresh\nbad film,\n",
    );
    cases.push(eval_case(
        "empty label",
        &fine,
        &p,
        vec!["empty-label.csv", "line 3", "empty label"],
    ));
    let p = csv(
        "unknown-label.csv",
        "review,verdict\ngreat film,fresh\nbad film,meh\n",
    );
    cases.push(eval_case(
        "label the model does not know",
        &fine,
        &p,
        vec!["unknown-label.csv", "meh"],
    ));
    let p = csv("columns.csv", "text,label\ngreat film,fresh\n");
    cases.push(eval_case(
        "missing column",
        &fine,
        &p,
        vec!["columns.csv", "review", "--text-column"],
    ));
    let p = csv("empty.csv", "\n\n");
    cases.push(eval_case(
        "empty file",
        &fine,
        &p,
        vec!["empty.csv", "empty"],
    ));
    let p = csv("header-only.csv", "review,verdict\n");
    cases.push(eval_case(
        "header only",
        &fine,
        &p,
        vec!["header-only.csv", "no examples"],
    ));
    let p = csv("latin1.csv", "");
    std::fs::write(&p, b"review,verdict\ncaf\xe9 film,fresh\n").unwrap();
    cases.push(eval_case(
        "not UTF-8",
        &fine,
        &p,
        vec!["latin1.csv", "utf-8"],
    ));
    let p = csv(
        "bad.jsonl",
        "{\"review\": \"great\", \"verdict\": \"fresh\"}\n{\"review\": \"bad\"\n",
    );
    cases.push(eval_case(
        "broken JSONL line",
        &fine,
        &p,
        vec!["bad.jsonl", "line 2"],
    ));
    let p = data.join("nowhere.csv");
    cases.push(eval_case(
        "missing data file",
        &fine,
        &p,
        vec!["nowhere.csv", "no such file"],
    ));
    run_cases(cases);
}
