//! Tests that need no teacher: shapes, masking, the save/load round trip, and every bad input giving a one-line
//! error that names the file or field.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{cpu_devices, max_abs_diff, scratch, values};
use student_arch::weights::{named_tensors, safetensors_bytes};
use student_arch::{load_pretrained, save_pretrained, ArchError, BertConfig, BertInput};

fn tiny_config() -> BertConfig {
    let mut c = BertConfig::new(50, 16, 2, 4, 32);
    c.max_position_embeddings = 24;
    c
}

#[test]
fn forward_shapes_are_named_and_complete() {
    for (name, device) in cpu_devices() {
        let model = tiny_config().init_random(true, 7, &device).unwrap();
        let input =
            BertInput::from_token_ids(&[vec![1, 5, 6, 2], vec![1, 7, 2]], 0, 50, &device).unwrap();
        let out = model.try_forward(input).unwrap();
        assert_eq!(out.embedding_output.dims(), [2, 4, 16], "{name}");
        assert_eq!(out.hidden_states.len(), 2);
        assert_eq!(out.attention_probs[1].dims(), [2, 4, 4, 4]);
        assert_eq!(out.attention_scores[0].dims(), [2, 4, 4, 4]);
        assert_eq!(out.pooled.unwrap().dims(), [2, 16]);
        // Attention rows are distributions.
        let probs = values(out.attention_probs[0].clone().sum_dim(3));
        assert!(probs.iter().all(|p| (p - 1.0).abs() < 1e-5));
    }
}

#[test]
fn padding_changes_nothing_at_real_tokens_and_gets_no_attention() {
    for (name, device) in cpu_devices() {
        let model = tiny_config().init_random(false, 3, &device).unwrap();
        let alone =
            model.forward(BertInput::from_token_ids(&[vec![1, 9, 8, 2]], 0, 50, &device).unwrap());
        let padded = model.forward(
            BertInput::from_token_ids(
                &[vec![1, 9, 8, 2], vec![1, 4, 5, 6, 7, 2, 3]],
                0,
                50,
                &device,
            )
            .unwrap(),
        );
        let a = values(alone.last_hidden_state());
        let p = values(padded.last_hidden_state().slice([0..1, 0..4]));
        assert!(
            max_abs_diff(&a, &p) < 1e-5,
            "{name}: padding changed real tokens"
        );
        // Row 0 of the padded batch gives exactly zero probability to its 3 padding keys.
        let probs = values(
            padded.attention_probs[0]
                .clone()
                .slice([0..1, 0..4, 0..7, 4..7]),
        );
        assert!(
            probs.iter().all(|&p| p == 0.0),
            "{name}: padding keys got attention"
        );
    }
}

#[test]
fn same_seed_same_model_different_seed_different_model() {
    let device = &cpu_devices()[0].1;
    let a = named_tensors(&tiny_config().init_random(false, 1, device).unwrap()).unwrap();
    let b = named_tensors(&tiny_config().init_random(false, 1, device).unwrap()).unwrap();
    let c = named_tensors(&tiny_config().init_random(false, 2, device).unwrap()).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn save_load_round_trip_gives_identical_tensors_and_outputs() {
    for (name, device) in cpu_devices() {
        let dir = scratch(&format!("roundtrip-{name}"));
        let model = tiny_config().init_random(true, 11, &device).unwrap();
        save_pretrained(&model, &dir).unwrap();
        let (loaded, report) = load_pretrained(&dir, &device).unwrap();
        assert!(report.has_pooler && report.skipped.is_empty());
        assert_eq!(
            named_tensors(&model).unwrap(),
            named_tensors(&loaded).unwrap()
        );
        save_pretrained(&loaded, &dir.join("again")).unwrap();
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            std::fs::read(dir.join("again/model.safetensors")).unwrap(),
            "{name}: load-save is not byte-identical"
        );
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 3, 4, 2], [1, 4]), &device);
        let input = BertInput {
            attention_mask: ids.ones_like(),
            input_ids: ids,
            token_type_ids: None,
        };
        let x = values(model.forward(input.clone()).last_hidden_state());
        let y = values(loaded.forward(input).last_hidden_state());
        assert_eq!(x, y);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn student_without_token_types_or_pooler_round_trips() {
    let device = &cpu_devices()[0].1;
    let mut config = tiny_config();
    config.type_vocab_size = 0;
    let dir = scratch("no-types");
    let model = config.init_random(false, 5, device).unwrap();
    save_pretrained(&model, &dir).unwrap();
    let (loaded, report) = load_pretrained(&dir, device).unwrap();
    assert!(
        loaded.embeddings.token_type_embeddings.is_none()
            && loaded.pooler.is_none()
            && !report.has_pooler
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hugging_face_variants_load_bert_prefix_gamma_beta_and_skip_extras() {
    let device = &cpu_devices()[0].1;
    let dir = scratch("variants");
    let model = tiny_config().init_random(false, 9, device).unwrap();
    let mut tensors = std::collections::BTreeMap::new();
    for (k, v) in named_tensors(&model).unwrap() {
        let k = k
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        tensors.insert(format!("bert.{k}"), v);
    }
    tensors.insert(
        "bert.embeddings.position_ids".into(),
        (vec![1, 24], vec![0.0; 24]),
    );
    tensors.insert("cls.predictions.bias".into(), (vec![50], vec![0.0; 50]));
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(&tensors).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), tiny_config().to_json()).unwrap();
    let (loaded, report) = load_pretrained(&dir, device).unwrap();
    assert_eq!(report.prefix, "bert.");
    assert_eq!(
        report.skipped,
        vec![
            "bert.embeddings.position_ids".to_string(),
            "cls.predictions.bias".into()
        ]
    );
    assert_eq!(
        named_tensors(&loaded).unwrap(),
        named_tensors(&model).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn saved_tiny(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    let model = tiny_config()
        .init_random(false, 1, &cpu_devices()[0].1)
        .unwrap();
    save_pretrained(&model, &dir).unwrap();
    dir
}

fn one_line_error(dir: &std::path::Path) -> String {
    let err = load_pretrained(dir, &cpu_devices()[0].1).unwrap_err();
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    text
}

#[test]
fn missing_weights_file_names_the_file() {
    let dir = saved_tiny("missing");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = one_line_error(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn missing_directory_and_config_name_the_path() {
    let err = one_line_error(std::path::Path::new("/no/such/model-dir"));
    assert!(err.contains("/no/such/model-dir"), "{err}");
    let dir = saved_tiny("noconfig");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(one_line_error(&dir).contains("config.json"));
}

#[test]
fn truncated_safetensors_is_reported_as_corrupt() {
    let dir = saved_tiny("truncated");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_pretrained(&dir, &cpu_devices()[0].1).unwrap_err();
    assert!(matches!(err, ArchError::CorruptWeights { .. }), "{err}");
    let text = one_line_error(&dir);
    assert!(
        text.contains("model.safetensors") && text.contains("not a readable safetensors"),
        "{text}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert!(one_line_error(&dir).contains("model.safetensors"));
}

#[test]
fn impossible_config_names_the_field() {
    let dir = saved_tiny("badconfig");
    let mut c = tiny_config();
    c.hidden_size = 100;
    c.num_attention_heads = 12;
    std::fs::write(dir.join("config.json"), serde_json::to_string(&c).unwrap()).unwrap();
    let err = one_line_error(&dir);
    assert!(
        err.contains("hidden_size") && err.contains("num_attention_heads"),
        "{err}"
    );
}

#[test]
fn wrong_shape_missing_and_unexpected_tensors_are_all_listed() {
    let device = &cpu_devices()[0].1;
    let dir = scratch("wrongshape");
    let model = tiny_config().init_random(false, 1, device).unwrap();
    let mut tensors = named_tensors(&model).unwrap();
    tensors.insert(
        "encoder.layer.0.attention.self.query.weight".into(),
        (vec![16, 8], vec![0.0; 128]),
    );
    tensors.remove("encoder.layer.1.output.dense.bias");
    tensors.insert(
        "encoder.layer.7.output.dense.bias".into(),
        (vec![16], vec![0.0; 16]),
    );
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(&tensors).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), tiny_config().to_json()).unwrap();
    let err = one_line_error(&dir);
    assert!(
        err.contains(
            "encoder.layer.0.attention.self.query.weight has shape [16, 8], expected [16, 16]"
        ),
        "{err}"
    );
    assert!(
        err.contains("missing encoder.layer.1.output.dense.bias [16]"),
        "{err}"
    );
    assert!(
        err.contains("layer 7 is beyond config.json's num_hidden_layers = 2")
            && err.contains("encoder.layer.7.output.dense.bias [16]"),
        "{err}"
    );
}

#[test]
fn bad_batches_are_errors_not_panics() {
    let device = &cpu_devices()[0].1;
    assert!(BertInput::from_token_ids(&[], 0, 50, device)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(BertInput::from_token_ids(&[vec![]], 0, 50, device)
        .unwrap_err()
        .to_string()
        .contains("sequence 0"));
    let err = BertInput::from_token_ids(&[vec![1, 99]], 0, 50, device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("99") && err.contains("50"), "{err}");
    let model = tiny_config().init_random(false, 1, device).unwrap();
    let long = BertInput::from_token_ids(&[vec![1; 30]], 0, 50, device).unwrap();
    let err = model.try_forward(long).unwrap_err().to_string();
    assert!(err.contains("max_position_embeddings 24"), "{err}");
}
