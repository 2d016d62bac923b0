//! Checkpoints saved by Hugging Face `transformers` in each of its layouts (written by `scripts/hf_layouts.py`,
//! with the outputs transformers gave on fixed inputs): each loads and reproduces those outputs, or is refused
//! by name. Needs neither torch nor transformers.

mod common;

use std::path::{Path, PathBuf};

use common::{cpu_devices, max_abs_diff, scratch, values};
use student_arch::weights::{
    load_weights, named_tensors, safetensors_bytes, weights_bytes, WEIGHTS_FILE,
};
use student_arch::{
    gather_positions, load_pretrained, save_pretrained, ArchError, BertConfig, BertInput, MlmHead,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hf")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn inputs(e: &serde_json::Value) -> (Vec<Vec<u32>>, Vec<usize>) {
    let lengths: Vec<usize> = e["lengths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let ids = e["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&lengths)
        .map(|(row, &n)| {
            row.as_array().unwrap()[..n]
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    (ids, lengths)
}

/// Flat positions of the real tokens of a batch padded to its longest sequence.
fn real_positions(lengths: &[usize]) -> Vec<usize> {
    let s = *lengths.iter().max().unwrap();
    lengths
        .iter()
        .enumerate()
        .flat_map(|(b, &n)| (0..n).map(move |t| b * s + t))
        .collect()
}

const LAYOUTS: [&str; 6] = [
    "bert-model-safetensors",
    "bert-model-sharded",
    "bert-mlm-bin-buffers",
    "bert-pretraining-safetensors",
    "bert-classifier-safetensors",
    "bert-model-bin",
];

#[test]
fn every_layout_loads_and_gives_transformers_outputs() {
    let e = expected();
    let (ids, lengths) = inputs(&e);
    let positions = real_positions(&lengths);
    for (device_name, device) in cpu_devices() {
        for name in LAYOUTS {
            let dir = root().join(name);
            let want = &e["models"][name];
            let (model, report) = load_pretrained(&dir, &device)
                .unwrap_or_else(|err| panic!("{name} did not load: {err}"));
            let input =
                BertInput::from_token_ids(&ids, 0, model.config.vocab_size, &device).unwrap();
            let out = model.forward(input);
            let hidden = gather_positions(out.last_hidden_state(), &positions).unwrap();
            let got = values(hidden.clone());
            let diff = max_abs_diff(&got, &floats(&want["last_hidden_state"]));
            assert!(
                diff < 1e-4,
                "{device_name} {name}: hidden states differ by {diff}"
            );
            if let Some(pooled) = want.get("pooler_output") {
                let ours = values(out.pooled.clone().expect("the file has a pooler"));
                let diff = max_abs_diff(&ours, &floats(pooled));
                assert!(
                    diff < 1e-4,
                    "{device_name} {name}: pooler differs by {diff}"
                );
            }
            if let Some(logits) = want.get("mlm_logits") {
                let head = MlmHead::load(&dir, &model.config, &device)
                    .unwrap_or_else(|err| panic!("{name}: MLM head: {err}"));
                let ours =
                    values(head.forward(hidden, model.embeddings.word_embeddings.weight.val()));
                let diff = max_abs_diff(&ours, &floats(logits));
                assert!(
                    diff < 1e-4,
                    "{device_name} {name}: MLM logits differ by {diff}"
                );
            }
            // Heads, next-sentence weights and buffers are skipped by name, never fatal.
            let skipped = report.skipped.join(" ");
            match name {
                "bert-mlm-bin-buffers" => {
                    assert!(
                        skipped.contains("bert.embeddings.token_type_ids"),
                        "{skipped}"
                    );
                    assert!(
                        skipped.contains("bert.embeddings.position_ids"),
                        "{skipped}"
                    );
                    assert!(
                        skipped.contains("cls.predictions.transform.dense.weight"),
                        "{skipped}"
                    );
                }
                "bert-pretraining-safetensors" => {
                    assert!(skipped.contains("cls.seq_relationship.weight"), "{skipped}")
                }
                "bert-classifier-safetensors" => {
                    assert!(skipped.contains("classifier.weight"), "{skipped}")
                }
                _ => {}
            }
        }
    }
}

#[test]
fn the_layouts_are_what_their_names_say() {
    let has = |name: &str, file: &str| root().join(name).join(file).exists();
    assert!(has("bert-model-sharded", "model.safetensors.index.json"));
    assert!(!has("bert-model-sharded", WEIGHTS_FILE));
    assert!(has("bert-mlm-bin-buffers", "pytorch_model.bin"));
    assert!(!has("bert-mlm-bin-buffers", WEIGHTS_FILE));
    assert!(has("bert-model-bin", "pytorch_model.bin"));
    // The sharded model really is in several files, and the .bin models read as one buffer.
    let shards = std::fs::read_dir(root().join("bert-model-sharded"))
        .unwrap()
        .filter(|f| {
            let n = f.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("model-") && n.ends_with(".safetensors")
        })
        .count();
    assert!(shards >= 2, "{shards} shards");
    let (path, bytes) = weights_bytes(&root().join("bert-mlm-bin-buffers")).unwrap();
    assert!(path.ends_with("pytorch_model.bin"));
    assert!(!bytes.is_empty());
}

#[test]
fn another_model_type_is_refused_by_name() {
    let device = &cpu_devices()[0].1;
    let err = load_pretrained(&root().join("distilbert"), device).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            ArchError::InvalidConfig {
                field: "model_type",
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("\"distilbert\"") && message.contains("BertForSequenceClassification"),
        "{message}"
    );
    let mut roberta = BertConfig::new(50, 16, 2, 4, 32);
    roberta.model_type = "roberta".into();
    assert!(roberta
        .validate()
        .unwrap_err()
        .to_string()
        .contains("\"roberta\""));
    let text = roberta.to_json();
    assert!(BertConfig::from_json(&text)
        .unwrap_err()
        .to_string()
        .contains("roberta"));
}

#[test]
fn an_unknown_tensor_is_skipped_but_an_extra_layer_is_an_error() {
    let device = &cpu_devices()[0].1;
    let config = BertConfig::new(50, 16, 2, 4, 32);
    let model = config.init_random(true, 3, device).unwrap();
    let dir = scratch("hf-extra-tensors");
    save_pretrained(&model, &dir).unwrap();
    let mut tensors = named_tensors(&model).unwrap();
    tensors.insert("encoder.adapter.weight".into(), (vec![2], vec![1.0, 2.0]));
    tensors.insert("some_head.bias".into(), (vec![2], vec![1.0, 2.0]));
    std::fs::write(dir.join(WEIGHTS_FILE), safetensors_bytes(&tensors).unwrap()).unwrap();
    let (_, report) = load_pretrained(&dir, device).unwrap();
    assert!(
        report
            .skipped
            .contains(&"encoder.adapter.weight".to_string()),
        "{:?}",
        report.skipped
    );
    assert!(report.skipped.contains(&"some_head.bias".to_string()));
    // A file of three layers read with a config of two would silently drop a layer.
    let deeper = BertConfig::new(50, 16, 3, 4, 32)
        .init_random(true, 3, device)
        .unwrap();
    save_pretrained(&deeper, &dir).unwrap();
    let err = load_weights(&config, &dir.join(WEIGHTS_FILE), device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer 2 is beyond config.json's num_hidden_layers = 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_directory_without_weights_names_every_layout() {
    let dir = scratch("hf-no-weights");
    let err = weights_bytes(&dir).unwrap_err().to_string();
    for layout in [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ] {
        assert!(err.contains(layout), "{err}");
    }
    // A shard named outside the directory is refused.
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map": {"embeddings.word_embeddings.weight": "../elsewhere.safetensors"}}"#,
    )
    .unwrap();
    let err = weights_bytes(&dir).unwrap_err().to_string();
    assert!(
        err.contains("not a file name in the model directory"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
