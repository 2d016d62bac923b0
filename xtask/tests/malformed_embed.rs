//! `cargo xtask embed` on malformed model directories and input: every case fails with a message that names the
//! file or field and the fix, and changes no file it was given (issue 16's classes 1, 2, 5, 9).

mod common;

use common::{args, run_cases, tiny_classifier, Case, Scratch};

fn model_with(scratch: &Scratch, name: &str, edit: impl FnOnce(&std::path::Path)) -> String {
    let dir = scratch.path().join(name);
    tiny_classifier(&dir);
    edit(&dir);
    dir.display().to_string()
}

fn set_config(dir: &std::path::Path, field: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    c[field] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
}

#[test]
fn malformed_model_directories_and_input_are_named_errors() {
    let s = Scratch::new("embed");
    let mut cases = Vec::new();
    let mut case = |name: &'static str, model: String, stdin: &str, expect: Vec<&'static str>| {
        cases.push(Case {
            name,
            args: args(&["embed", "--device", "flex", "--model", &model]),
            stdin: Some(stdin.into()),
            expect,
            keep: vec![std::path::PathBuf::from(&model)],
            succeeds: false,
        });
    };
    let m = model_with(&s, "huge-vocab", |d| {
        set_config(d, "vocab_size", serde_json::json!(1_000_000_000_000u64))
    });
    case(
        "vocab_size 1e12",
        m,
        "hello\n",
        vec!["config.json", "vocab_size"],
    );
    let m = model_with(&s, "overflow", |d| {
        set_config(d, "hidden_size", serde_json::json!(1u64 << 60))
    });
    case(
        "hidden_size 2^60",
        m,
        "hello\n",
        vec!["config.json", "hidden_size"],
    );
    let m = model_with(&s, "layers", |d| {
        set_config(d, "num_hidden_layers", serde_json::json!(100_000))
    });
    case("100k layers", m, "hello\n", vec!["num_hidden_layers"]);
    let m = model_with(&s, "not-json", |d| {
        std::fs::write(d.join("config.json"), "{ not json").unwrap()
    });
    case("config not JSON", m, "hello\n", vec!["config.json"]);
    let m = model_with(&s, "truncated", |d| {
        let p = d.join("model.safetensors");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    });
    case("truncated weights", m, "hello\n", vec!["model.safetensors"]);
    let m = model_with(&s, "header-lie", |d| {
        let p = d.join("model.safetensors");
        let mut b = std::fs::read(&p).unwrap();
        b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&p, &b).unwrap();
    });
    case(
        "header length lies",
        m,
        "hello\n",
        vec!["model.safetensors"],
    );
    let m = model_with(&s, "nan", |d| {
        let device = student_arch::device::device("flex").unwrap();
        let (model, meta) = pipeline::SequenceClassifier::load(d, &device).unwrap();
        let mut t = model.named_tensors().unwrap();
        let (_, v) = t.get_mut("embeddings.word_embeddings.weight").unwrap();
        v[3] = f32::NAN;
        std::fs::write(
            d.join("model.safetensors"),
            student_arch::weights::safetensors_bytes(&t).unwrap(),
        )
        .unwrap();
        let _ = meta;
    });
    case("NaN weight", m, "hello\n", vec!["word_embeddings", "nan"]);
    let m = model_with(&s, "big-tokenizer", |d| {
        let p = d.join("vocab.txt");
        let mut v = std::fs::read_to_string(&p).unwrap();
        for i in 0..500 {
            v += &format!("extra{i}\n");
        }
        std::fs::write(&p, v).unwrap();
    });
    case(
        "tokenizer larger than the table",
        m,
        "hello\n",
        vec!["vocab.txt", "vocab_size"],
    );
    let m = model_with(&s, "empty-line", |_| {});
    case(
        "empty input line",
        m,
        "good film\n\nbad film\n",
        vec!["line 2", "empty"],
    );
    let m = model_with(&s, "sbert-type", |d| {
        std::fs::write(
            d.join("sentence_bert_config.json"),
            "{\"max_seq_length\": \"long\"}",
        )
        .unwrap()
    });
    case(
        "sentence_bert_config wrong type",
        m,
        "hello\n",
        vec!["sentence_bert_config.json", "max_seq_length"],
    );
    let m = model_with(&s, "sbert-zero", |d| {
        std::fs::write(
            d.join("sentence_bert_config.json"),
            "{\"max_seq_length\": 1}",
        )
        .unwrap()
    });
    case(
        "max_seq_length 1",
        m,
        "hello\n",
        vec!["sentence_bert_config.json", "max_seq_length"],
    );
    let m = model_with(&s, "sbert-long", |d| {
        std::fs::write(
            d.join("sentence_bert_config.json"),
            "{\"max_seq_length\": 512}",
        )
        .unwrap()
    });
    case(
        "max_seq_length beyond the positions",
        m,
        "hello\n",
        vec!["max_seq_length", "max_position_embeddings"],
    );
    let m = model_with(&s, "quantized", |d| {
        std::fs::rename(
            d.join("model.safetensors"),
            d.join("model.quant.safetensors"),
        )
        .unwrap()
    });
    case(
        "a quantized directory",
        m,
        "hello\n",
        vec!["quantized directory", "full-precision"],
    );
    let missing = s.path().join("nowhere").display().to_string();
    case("missing directory", missing, "hello\n", vec!["nowhere"]);
    let m = model_with(&s, "batch", |_| {});
    cases.push(Case {
        name: "batch size 0",
        args: args(&[
            "embed",
            "--device",
            "flex",
            "--batch-size",
            "0",
            "--model",
            &m,
        ]),
        stdin: Some("hello\n".into()),
        expect: vec!["--batch-size"],
        keep: vec![m.clone().into()],
        succeeds: false,
    });
    run_cases(cases);
}
