//! What a classifier directory declares to Hugging Face tools: its weights under transformers' names and a
//! `config.json` that says which model it is (see the parent module's documentation).

use std::path::Path;

use student_arch::io::write_atomic;
use student_arch::weights::{safetensors_bytes, CONFIG_FILE, WEIGHTS_FILE};
use student_arch::BertConfig;

use crate::config::Pooling;
use crate::error::{io_err, Result};

/// The `model_type` of a `mean` classifier's `config.json`: not `bert`, so that transformers does not open it as
/// a `BertForSequenceClassification` with a random pooler and head.
pub const MEAN_MODEL_TYPE: &str = student_arch::config::MEAN_CLASSIFIER_MODEL_TYPE;
/// The modeling code a `mean` classifier ships for transformers (`trust_remote_code=True`).
pub const MEAN_MODELING_FILE: &str = "modeling_bert_compress.py";
const MEAN_MODELING_CODE: &str = include_str!("modeling_bert_compress.py");

/// The weights (safetensors bytes) and `config.json` text of a classifier directory: the encoder's tensors
/// under `bert.` as transformers names them in a model with a head, the head as `classifier.*`, and a config
/// that says which model this is (see the module's documentation).
pub fn hf_files(
    tensors: &student_arch::weights::NamedTensors,
    config: &BertConfig,
    labels: &[String],
    pooling: Pooling,
) -> Result<(Vec<u8>, String)> {
    let prefixed: student_arch::weights::NamedTensors = tensors
        .iter()
        .map(|(k, v)| {
            let key = if k.starts_with("classifier.") || k.starts_with("bert.") {
                k.clone()
            } else {
                format!("bert.{k}")
            };
            (key, v.clone())
        })
        .collect();
    let mut json: serde_json::Value =
        serde_json::from_str(&config.to_hf_json()).expect("a config's JSON parses");
    let fields = json.as_object_mut().expect("a config is an object");
    let id2label: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone().into()))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i.into()))
        .collect();
    fields.insert("id2label".into(), id2label.into());
    fields.insert("label2id".into(), label2id.into());
    match pooling {
        Pooling::Cls => {
            fields.insert(
                "architectures".into(),
                serde_json::json!(["BertForSequenceClassification"]),
            );
        }
        Pooling::Mean => {
            fields.insert("model_type".into(), MEAN_MODEL_TYPE.into());
            fields.insert(
                "architectures".into(),
                serde_json::json!(["BertCompressMeanForSequenceClassification"]),
            );
            fields.insert(
                "auto_map".into(),
                serde_json::json!({
                    "AutoConfig": "modeling_bert_compress.BertCompressMeanConfig",
                    "AutoModelForSequenceClassification":
                        "modeling_bert_compress.BertCompressMeanForSequenceClassification"
                }),
            );
        }
    }
    Ok((
        safetensors_bytes(&prefixed)?,
        serde_json::to_string_pretty(&json).expect("JSON serialises"),
    ))
}

/// Writes a classifier directory's weights, `config.json` and (for `mean`) its modeling code, each atomically;
/// returns the files written.
pub fn write_hf_files(
    dir: &Path,
    tensors: &student_arch::weights::NamedTensors,
    config: &BertConfig,
    labels: &[String],
    pooling: Pooling,
) -> Result<Vec<&'static str>> {
    let (weights, config_json) = hf_files(tensors, config, labels, pooling)?;
    write_atomic(&dir.join(WEIGHTS_FILE), &weights)?;
    write_atomic(&dir.join(CONFIG_FILE), config_json.as_bytes())?;
    let modeling = dir.join(MEAN_MODELING_FILE);
    match pooling {
        Pooling::Mean => {
            write_atomic(&modeling, MEAN_MODELING_CODE.as_bytes())?;
            Ok(vec![WEIGHTS_FILE, CONFIG_FILE, MEAN_MODELING_FILE])
        }
        Pooling::Cls => {
            if modeling.exists() {
                std::fs::remove_file(&modeling).map_err(io_err("removing", &modeling))?;
            }
            Ok(vec![WEIGHTS_FILE, CONFIG_FILE])
        }
    }
}
