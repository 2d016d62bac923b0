//! Loading and saving encoders in the Hugging Face layout (`config.json` + `model.safetensors`).
//!
//! Key table (Hugging Face name → our module path; `bert.` prefixes are stripped, both LayerNorm styles load):
//!
//! | Hugging Face | `BertModel` |
//! |---|---|
//! | `embeddings.{word,position,token_type}_embeddings.weight` | `embeddings.*_embeddings.weight` |
//! | `embeddings.LayerNorm.{weight,bias}` or `{gamma,beta}` | `embeddings.layer_norm.{gamma,beta}` |
//! | `encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}` | `layers[i].attention.{query,key,value}` (weight transposed) |
//! | `encoder.layer.{i}.attention.output.dense.*` | `layers[i].attention.output` |
//! | `encoder.layer.{i}.attention.output.LayerNorm.*` | `layers[i].attention.layer_norm` |
//! | `encoder.layer.{i}.intermediate.dense.*` | `layers[i].intermediate` |
//! | `encoder.layer.{i}.output.dense.*` | `layers[i].output` |
//! | `encoder.layer.{i}.output.LayerNorm.*` | `layers[i].layer_norm` |
//! | `pooler.dense.*` | `pooler` (present only if the file has it) |
//!
//! Buffers that older `transformers` saved (`embeddings.position_ids`, `embeddings.token_type_ids`) and every
//! tensor the encoder does not use (an MLM head under `cls.`, a classifier) are skipped and listed in the
//! [`LoadReport`]; a layer beyond `num_hidden_layers` is an error. The weights may be `model.safetensors`,
//! sharded safetensors or `pytorch_model.bin` ([`weights_bytes`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use crate::config::BertConfig;
use crate::error::{ArchError, Result};
use crate::io::write_atomic;
use crate::layouts::check_size;
pub use crate::layouts::{
    weights_bytes, MAX_WEIGHTS_BYTES, PYTORCH_FILE, SHARDED_INDEX_FILE, WEIGHTS_FILE,
};
use crate::model::{BertModel, Builder, Init, ParamSource};

/// Tensors by Hugging Face name: shape and row-major f32 values.
pub type NamedTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// `(name, shape, values)` of one module's tensors.
type Entries = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The config file of a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// Files of a tokenizer that travel with a model.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// What loading did besides building the model.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// The prefix stripped from every key (`""` or `"bert."`).
    pub prefix: String,
    /// Tensors in the file that the encoder does not use, e.g. `cls.predictions.bias`.
    pub skipped: Vec<String>,
    /// Whether the file had a pooler.
    pub has_pooler: bool,
}

/// Reads tensors out of a safetensors buffer, converting F16 and BF16 to f32, and records every problem.
pub struct SafetensorsSource<'a> {
    path: PathBuf,
    file: SafeTensors<'a>,
    prefix: String,
    used: BTreeSet<String>,
    problems: Vec<String>,
    /// Layers the config describes; a tensor of a later layer is an error.
    layers: usize,
}

impl<'a> SafetensorsSource<'a> {
    /// Parses `bytes`, read from `path`.
    pub fn new(path: &Path, bytes: &'a [u8]) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| ArchError::CorruptWeights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let names = file.names();
        let prefix = if !names.contains(&"embeddings.word_embeddings.weight")
            && names.contains(&"bert.embeddings.word_embeddings.weight")
        {
            "bert.".to_string()
        } else {
            String::new()
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            prefix,
            used: BTreeSet::new(),
            problems: Vec::new(),
            layers: usize::MAX,
        })
    }

    /// Whether the file holds `key` (after the prefix).
    pub fn contains(&self, key: &str) -> bool {
        self.file.tensor(&format!("{}{key}", self.prefix)).is_ok()
    }

    fn alternatives(key: &str) -> Vec<String> {
        let mut keys = vec![key.to_string()];
        if let Some(stem) = key.strip_suffix("LayerNorm.weight") {
            keys.push(format!("{stem}LayerNorm.gamma"));
        } else if let Some(stem) = key.strip_suffix("LayerNorm.bias") {
            keys.push(format!("{stem}LayerNorm.beta"));
        }
        keys
    }

    /// Every problem found so far, and the unused tensors under the encoder's namespaces.
    pub fn finish(mut self) -> Result<LoadReport> {
        let mut skipped = Vec::new();
        for name in self.file.names() {
            let Some(key) = name.strip_prefix(&self.prefix) else {
                skipped.push(name.to_string());
                continue;
            };
            if self.used.contains(key) {
                continue;
            }
            if let Some(problem) = unexpected(key, self.layers) {
                let shape = self
                    .file
                    .tensor(name)
                    .map(|t| t.shape().to_vec())
                    .unwrap_or_default();
                self.problems.push(format!("{problem}: {name} {shape:?}"));
            } else {
                skipped.push(name.to_string());
            }
        }
        skipped.sort();
        if !self.problems.is_empty() {
            return Err(ArchError::WeightMismatch {
                path: self.path,
                problems: self.problems,
            });
        }
        Ok(LoadReport {
            prefix: self.prefix,
            skipped,
            has_pooler: false,
        })
    }
}

/// Why an unused tensor means the file and `config.json` disagree, or `None` when it is only skipped: buffers
/// that older `transformers` saved (`embeddings.position_ids`, `embeddings.token_type_ids`), heads (`cls.*`,
/// `classifier.*`) and any other tensor outside the encoder are named in [`LoadReport::skipped`]; a layer beyond
/// the config's `num_hidden_layers` is an error, because loading fewer layers than the file holds would
/// silently misread it.
fn unexpected(key: &str, layers: usize) -> Option<String> {
    let index = key
        .strip_prefix("encoder.layer.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok());
    match index {
        Some(i) if i >= layers => Some(format!(
            "layer {i} is beyond config.json's num_hidden_layers = {layers}; the config belongs to another model"
        )),
        _ => None,
    }
}

/// Converts a safetensors buffer of `dtype` to f32, or says which dtype it was.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    match dtype {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        Dtype::F16 => Ok(bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()),
        Dtype::BF16 => Ok(bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()),
        Dtype::F64 => Ok(bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect()),
        other => Err(format!("{other:?}")),
    }
}

impl ParamSource for SafetensorsSource<'_> {
    fn take(&mut self, key: &str, shape: &[usize], _init: Init) -> Vec<f32> {
        let n = shape.iter().product();
        for candidate in Self::alternatives(key) {
            let Ok(view) = self.file.tensor(&format!("{}{candidate}", self.prefix)) else {
                continue;
            };
            self.used.insert(candidate.clone());
            if view.shape() != shape {
                self.problems.push(format!(
                    "{}{candidate} has shape {:?}, expected {shape:?}",
                    self.prefix,
                    view.shape()
                ));
                return vec![0.0; n];
            }
            return match to_f32(view.dtype(), view.data()) {
                Ok(values) => {
                    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                        self.problems.push(format!(
                            "{}{candidate} holds a non-finite value ({v}, NaN or infinite) at index {i}; the \
                             weights are corrupt or diverged, use another checkpoint",
                            self.prefix
                        ));
                    }
                    values
                }
                Err(dtype) => {
                    self.problems.push(format!(
                        "{}{candidate} has dtype {dtype}, expected F32, F16, BF16 or F64",
                        self.prefix
                    ));
                    vec![0.0; n]
                }
            };
        }
        self.problems
            .push(format!("missing {}{key} {shape:?}", self.prefix));
        vec![0.0; n]
    }
}

fn read(path: &Path, hint: &str) -> Result<Vec<u8>> {
    if !path.exists() {
        return Err(ArchError::MissingFile {
            path: path.to_path_buf(),
            hint: hint.into(),
        });
    }
    std::fs::read(path).map_err(|e| ArchError::io("reading", path, e))
}

/// Builds an encoder of `config` from the safetensors file at `weights_path`.
pub fn load_weights(
    config: &BertConfig,
    weights_path: &Path,
    device: &Device,
) -> Result<(BertModel, LoadReport)> {
    let quantized = weights_path.with_file_name("model.quant.safetensors");
    let hint = if quantized.exists() {
        "this is a quantized directory (`cargo xtask quantize`), whose weights are in model.quant.safetensors; \
         give the full-precision directory it was made from, or use `cargo xtask eval` on it"
    } else {
        "the model directory needs its weights; run `cargo xtask fetch` for the teacher"
    };
    if !weights_path.exists() && weights_path.file_name() == Some(WEIGHTS_FILE.as_ref()) {
        if let Some(dir) = weights_path.parent() {
            let other = [SHARDED_INDEX_FILE, PYTORCH_FILE]
                .iter()
                .any(|f| dir.join(f).exists());
            if other {
                let (path, bytes) = weights_bytes(dir)?;
                return load_weights_from_bytes(config, &path, &bytes, device);
            }
        }
    }
    if weights_path.exists() {
        check_size(weights_path)?;
    }
    let bytes = read(weights_path, hint)?;
    load_weights_from_bytes(config, weights_path, &bytes, device)
}

/// Builds an encoder of `config` from safetensors `bytes` already in memory (for example dequantized weights);
/// `weights_path` names them in errors.
pub fn load_weights_from_bytes(
    config: &BertConfig,
    weights_path: &Path,
    bytes: &[u8],
    device: &Device,
) -> Result<(BertModel, LoadReport)> {
    let mut source = SafetensorsSource::new(weights_path, bytes)?;
    source.layers = config.num_hidden_layers;
    // Missing tensors are filled with zeros while every problem is collected, so the config's sizes are checked
    // against the values the file really holds before anything of that size is allocated.
    let held: u64 = source
        .file
        .tensors()
        .iter()
        .map(|(_, v)| v.shape().iter().map(|d| *d as u64).product::<u64>())
        .sum();
    let wanted = config.parameter_count().unwrap_or(u64::MAX);
    if wanted > held.saturating_add(held / 2).saturating_add(1 << 20) {
        return Err(ArchError::CorruptWeights {
            path: weights_path.to_path_buf(),
            message: format!(
                "config.json describes {wanted} parameters but the file holds {held} values; the config belongs to \
                 another model"
            ),
        });
    }
    let has_pooler = source.contains("pooler.dense.weight");
    let model = Builder {
        source: &mut source,
        device,
        config,
    }
    .model(has_pooler)?;
    let mut report = source.finish()?;
    // A single all-zero token-type table adds nothing: it is how an encoder without token types is saved for
    // `transformers` (see `BertConfig::to_hf_json`), so it loads back without one.
    let mut model = model;
    let zero_table = match &model.embeddings.token_type_embeddings {
        Some(t) if t.weight.dims()[0] == 1 => host(t.weight.val(), "token types")?
            .iter()
            .all(|v| *v == 0.0),
        _ => false,
    };
    if zero_table {
        model.embeddings.token_type_embeddings = None;
        model.config.type_vocab_size = 0;
    }
    report.has_pooler = has_pooler;
    Ok((model, report))
}

/// Loads `config.json` and `model.safetensors` from a Hugging Face BERT directory.
pub fn load_pretrained(dir: &Path, device: &Device) -> Result<(BertModel, LoadReport)> {
    if !dir.is_dir() {
        return Err(ArchError::MissingFile {
            path: dir.to_path_buf(),
            hint: "expected a model directory with config.json and model.safetensors".into(),
        });
    }
    let config = BertConfig::from_file(&dir.join(CONFIG_FILE))?;
    load_weights(&config, &dir.join(WEIGHTS_FILE), device)
}

fn host<const D: usize>(tensor: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ArchError::Data {
            what: what.to_string(),
            message: format!("{e:?}"),
        })
}

/// Every tensor of `model` under its Hugging Face name, with its shape, in Hugging Face's layout.
pub fn named_tensors(model: &BertModel) -> Result<NamedTensors> {
    let mut out = BTreeMap::new();
    let mut put = |key: String, shape: Vec<usize>, values: Vec<f32>| {
        out.insert(key, (shape, values));
    };
    let linear = |l: &burn::nn::Linear, key: &str| -> Result<Entries> {
        let [d_in, d_out] = l.weight.dims();
        let w = host(l.weight.val(), key)?;
        let t = crate::transpose::transpose(&w, d_in, d_out);
        let mut v = vec![(format!("{key}.weight"), vec![d_out, d_in], t)];
        if let Some(b) = &l.bias {
            v.push((format!("{key}.bias"), vec![d_out], host(b.val(), key)?));
        }
        Ok(v)
    };
    let norm = |n: &burn::nn::LayerNorm, key: &str| -> Result<Entries> {
        let d = n.gamma.dims()[0];
        let mut v = vec![(format!("{key}.weight"), vec![d], host(n.gamma.val(), key)?)];
        if let Some(b) = &n.beta {
            v.push((format!("{key}.bias"), vec![d], host(b.val(), key)?));
        }
        Ok(v)
    };
    let emb = |e: &burn::nn::Embedding, key: &str| -> Result<(String, Vec<usize>, Vec<f32>)> {
        Ok((
            key.to_string(),
            e.weight.dims().to_vec(),
            host(e.weight.val(), key)?,
        ))
    };
    let e = &model.embeddings;
    let mut all = vec![
        emb(&e.word_embeddings, "embeddings.word_embeddings.weight")?,
        emb(
            &e.position_embeddings,
            "embeddings.position_embeddings.weight",
        )?,
    ];
    match &e.token_type_embeddings {
        Some(t) => all.push(emb(t, "embeddings.token_type_embeddings.weight")?),
        // A zero table of one type, so that `transformers` can run the model unchanged (see `to_hf_json`).
        None => all.push((
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![1, model.config.hidden_size],
            vec![0.0; model.config.hidden_size],
        )),
    }
    all.extend(norm(&e.layer_norm, "embeddings.LayerNorm")?);
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("encoder.layer.{i}");
        let a = &layer.attention;
        all.extend(linear(&a.query, &format!("{p}.attention.self.query"))?);
        all.extend(linear(&a.key, &format!("{p}.attention.self.key"))?);
        all.extend(linear(&a.value, &format!("{p}.attention.self.value"))?);
        all.extend(linear(&a.output, &format!("{p}.attention.output.dense"))?);
        all.extend(norm(
            &a.layer_norm,
            &format!("{p}.attention.output.LayerNorm"),
        )?);
        all.extend(linear(
            &layer.intermediate,
            &format!("{p}.intermediate.dense"),
        )?);
        all.extend(linear(&layer.output, &format!("{p}.output.dense"))?);
        all.extend(norm(&layer.layer_norm, &format!("{p}.output.LayerNorm"))?);
    }
    if let Some(pooler) = &model.pooler {
        all.extend(linear(pooler, "pooler.dense")?);
    }
    for (k, s, v) in all {
        put(k, s, v);
    }
    Ok(out)
}

/// Serialises named f32 tensors to safetensors bytes.
pub fn safetensors_bytes(tensors: &NamedTensors) -> Result<Vec<u8>> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, values))| {
            (
                k.clone(),
                shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(k, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ArchError::BadInput {
            op: "safetensors_bytes",
            message: e.to_string(),
        })?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(views, Some(metadata)).map_err(|e| ArchError::BadInput {
        op: "safetensors_bytes",
        message: e.to_string(),
    })
}

/// Saves `model` as a Hugging Face BERT directory (`config.json` + `model.safetensors`), each file written
/// atomically. A model saved this way loads back with [`load_pretrained`] to identical tensors.
pub fn save_pretrained(model: &BertModel, dir: &Path) -> Result<()> {
    let bytes = safetensors_bytes(&named_tensors(model)?)?;
    write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
    write_atomic(&dir.join(CONFIG_FILE), model.config.to_hf_json().as_bytes())
}

/// Copies the tokenizer files that exist in `from` into `to`, so a saved model directory is self-contained.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if src.exists() && from != to {
            let bytes = std::fs::read(&src).map_err(|e| ArchError::io("reading", &src, e))?;
            write_atomic(&to.join(name), &bytes)?;
        }
    }
    Ok(())
}
