//! A quantized BERT model and its file.
//!
//! [`quantize_tensors`] takes a model's tensors under their Hugging Face names (as
//! `student_arch::weights::named_tensors` gives them, plus any extra such as a classifier head) and a
//! [`QuantPlan`], and quantizes:
//!
//! - every encoder weight matrix (`encoder.layer.{i}.attention.self.{query,key,value}`, `attention.output.dense`,
//!   `intermediate.dense`, `output.dense`) at its layer's bits, Q/K/V by the head's output rows and O by the
//!   head's input columns under per-head granularity (the feed-forward matrices fall back to per channel);
//! - the word and position embedding tables at `embedding_bits`, one range per row (per token) or per block;
//! - and keeps every other tensor (biases, LayerNorms, token types, the classifier) in f32.
//!
//! The file ([`QUANT_FILE`]) is safetensors: for a quantized tensor `T`, `T.qweight` (U8, the packed codes),
//! `T.scales` (F16) and `T.zero_points` (F16, asymmetric only); the header's metadata holds the format version
//! and, under `T`, its bits, symmetry, granularity, shape and group. The reader rejects a file whose parts do not
//! fit together, naming the tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use half::f16;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use student_arch::BertConfig;

use crate::error::{QuantError, Result};
use crate::format::{check_bits, Granularity, HeadAxis, QuantSpec, QuantizedTensor};

/// The quantized model file inside a model directory.
pub const QUANT_FILE: &str = "model.quant.safetensors";
/// Format tag in the file's metadata. Version 2 adds [`DATA_SHA256`], which it requires.
pub const FORMAT_VERSION: &str = "bert-compress-quant/2";
/// The previous format tag: the same layout without a checksum (read with a warning).
pub const FORMAT_VERSION_1: &str = "bert-compress-quant/1";

/// The metadata key of the sha256 over every tensor (names and bytes, in name order).
pub const DATA_SHA256: &str = "data_sha256";

/// The sha256 of `(name, bytes)` pairs taken in name order: the name's length and bytes, then the data's.
fn data_sha256<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut h = Sha256::new();
    for (name, bytes) in sorted {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    format!("{:x}", h.finalize())
}

/// Named f32 tensors: name → (shape, row-major values).
pub use student_arch::weights::NamedTensors;

/// The weight matrices of one encoder layer, by Hugging Face name suffix, and their head axis.
pub const LAYER_MATRICES: [(&str, Option<HeadAxis>); 6] = [
    ("attention.self.query", Some(HeadAxis::Rows)),
    ("attention.self.key", Some(HeadAxis::Rows)),
    ("attention.self.value", Some(HeadAxis::Rows)),
    ("attention.output.dense", Some(HeadAxis::Columns)),
    ("intermediate.dense", None),
    ("output.dense", None),
];

/// The Hugging Face name of weight matrix `matrix` (a [`LAYER_MATRICES`] suffix) of encoder layer `layer`.
pub fn matrix_name(layer: usize, matrix: &str) -> String {
    format!("encoder.layer.{layer}.{matrix}.weight")
}

/// Embedding tables that are quantized.
pub const EMBEDDING_TABLES: [&str; 2] = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
];

/// Bits and layout for a whole model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantPlan {
    /// Bits of each encoder layer's six weight matrices, index = layer.
    pub layer_bits: Vec<u32>,
    /// Bits of the word and position embedding tables (Q-BERT keeps 8). Default: 8.
    pub embedding_bits: u32,
    /// Groups of the encoder matrices. Default: per head.
    pub granularity: Granularity,
    /// Groups of the embedding tables: `channel` (one range per token row) or `block:K`. Default: channel.
    pub embedding_granularity: Granularity,
    /// Symmetric (no zero points). Default: true.
    pub symmetric: bool,
    /// Bits of single encoder matrices (Hugging Face tensor name → bits), over `layer_bits`: what a per-matrix
    /// mixed-precision assignment writes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, u32>,
}

impl QuantPlan {
    /// Every layer at `bits`, per head, symmetric, embeddings at 8 bits per row.
    pub fn uniform(layers: usize, bits: u32) -> Self {
        Self {
            layer_bits: vec![bits; layers],
            embedding_bits: 8,
            granularity: Granularity::Head,
            embedding_granularity: Granularity::Channel,
            symmetric: true,
            overrides: BTreeMap::new(),
        }
    }

    /// Checks the plan against a model config.
    pub fn validate(&self, config: &BertConfig) -> Result<()> {
        if self.layer_bits.len() != config.num_hidden_layers {
            return Err(QuantError::Config {
                field: "layer_bits",
                message: format!(
                    "{} entries for a model with {} layers; give one per layer",
                    self.layer_bits.len(),
                    config.num_hidden_layers
                ),
            });
        }
        for (i, b) in self.layer_bits.iter().enumerate() {
            check_bits(*b, &format!("layer {i}"))?;
        }
        check_bits(self.embedding_bits, "the embeddings")?;
        for (name, bits) in &self.overrides {
            check_bits(*bits, name)?;
            let known = (0..config.num_hidden_layers).any(|l| {
                LAYER_MATRICES
                    .iter()
                    .any(|(m, _)| *name == matrix_name(l, m))
            });
            if !known {
                return Err(QuantError::Config {
                    field: "overrides",
                    message: format!(
                        "`{name}` is not a weight matrix of this {}-layer encoder (expected e.g. \
                         encoder.layer.0.attention.self.query.weight)",
                        config.num_hidden_layers
                    ),
                });
            }
        }
        if matches!(
            self.embedding_granularity,
            Granularity::Head | Granularity::Layer
        ) {
            return Err(QuantError::Granularity {
                found: self.embedding_granularity.to_string(),
                message: "embedding tables have no heads or layers; use channel or block:K".into(),
            });
        }
        Ok(())
    }
}

/// Which spec (and head axis) a tensor gets under `plan`, or `None` to keep it in f32.
pub fn spec_for(
    name: &str,
    shape: &[usize],
    plan: &QuantPlan,
    config: &BertConfig,
) -> Option<(QuantSpec, Option<(HeadAxis, usize)>)> {
    if shape.len() != 2 {
        return None;
    }
    if EMBEDDING_TABLES.contains(&name) {
        return Some((
            QuantSpec {
                bits: plan.embedding_bits,
                symmetric: plan.symmetric,
                granularity: plan.embedding_granularity,
            },
            None,
        ));
    }
    let rest = name.strip_prefix("encoder.layer.")?;
    let (layer, matrix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let matrix = matrix.strip_suffix(".weight")?;
    let (_, axis) = LAYER_MATRICES.iter().find(|(m, _)| *m == matrix)?;
    let bits = match plan.overrides.get(name) {
        Some(b) => *b,
        None => *plan.layer_bits.get(layer)?,
    };
    Some((
        QuantSpec {
            bits,
            symmetric: plan.symmetric,
            granularity: plan.granularity,
        },
        axis.map(|a| (a, config.num_attention_heads)),
    ))
}

/// The attention matrices whose range [`Granularity::Layer`] shares within a layer.
const SHARED_IN_LAYER: [&str; 4] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
];

/// Under [`Granularity::Layer`], each layer's `[lo, hi]` over its Q, K, V and O (by layer); empty otherwise.
/// `values` gives a matrix's values by Hugging Face name.
pub fn layer_ranges(
    plan: &QuantPlan,
    config: &BertConfig,
    values: impl Fn(&str) -> Option<Vec<f32>>,
) -> Vec<[f32; 2]> {
    if plan.granularity != Granularity::Layer {
        return Vec::new();
    }
    (0..config.num_hidden_layers)
        .map(|l| {
            SHARED_IN_LAYER
                .iter()
                .filter_map(|m| values(&matrix_name(l, m)))
                .flatten()
                .fold([f32::INFINITY, f32::NEG_INFINITY], |[lo, hi], v| {
                    [lo.min(v), hi.max(v)]
                })
        })
        .collect()
}

/// The shared range of `name` (one of a layer's Q, K, V, O) from [`layer_ranges`], if any.
pub fn shared_range(ranges: &[[f32; 2]], name: &str) -> Option<[f32; 2]> {
    let rest = name.strip_prefix("encoder.layer.")?;
    let (layer, matrix) = rest.split_once('.')?;
    let matrix = matrix.strip_suffix(".weight")?;
    if !SHARED_IN_LAYER.contains(&matrix) {
        return None;
    }
    ranges.get(layer.parse::<usize>().ok()?).copied()
}

/// A model with quantized matrices and f32 everything else.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    /// The model's `config.json` (Hugging Face form).
    pub config: BertConfig,
    /// The plan it was quantized with.
    pub plan: QuantPlan,
    /// Quantized tensors by name.
    pub quantized: BTreeMap<String, QuantizedTensor>,
    /// Tensors kept in f32.
    pub dense: NamedTensors,
}

/// Quantizes `tensors` (Hugging Face names and layout) under `plan`.
pub fn quantize_tensors(
    tensors: &NamedTensors,
    config: &BertConfig,
    plan: &QuantPlan,
) -> Result<QuantizedModel> {
    plan.validate(config)?;
    let mut quantized = BTreeMap::new();
    let mut dense = BTreeMap::new();
    let shared = layer_ranges(plan, config, |name| {
        tensors.get(name).map(|(_, v)| v.clone())
    });
    for (name, (shape, values)) in tensors {
        match spec_for(name, shape, plan, config) {
            Some((spec, head)) => {
                let range = shared_range(&shared, name);
                let q = QuantizedTensor::quantize_in_range(
                    name,
                    values,
                    [shape[0], shape[1]],
                    spec,
                    head,
                    range,
                )?;
                quantized.insert(name.clone(), q);
            }
            None => {
                if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                    return Err(QuantError::NonFinite {
                        op: "quantize_tensors",
                        tensor: name.clone(),
                        index,
                        value: values[index],
                    });
                }
                dense.insert(name.clone(), (shape.clone(), values.clone()));
            }
        }
    }
    for (l, _) in plan.layer_bits.iter().enumerate() {
        for (m, _) in LAYER_MATRICES {
            let name = matrix_name(l, m);
            if !quantized.contains_key(&name) {
                return Err(QuantError::Shape {
                    op: "quantize_tensors",
                    message: format!(
                        "the model has no `{name}`; is it a BERT encoder of {} layers?",
                        plan.layer_bits.len()
                    ),
                });
            }
        }
    }
    Ok(QuantizedModel {
        config: config.clone(),
        plan: plan.clone(),
        quantized,
        dense,
    })
}

#[derive(Serialize, Deserialize)]
struct TensorMeta {
    bits: u32,
    symmetric: bool,
    granularity: Granularity,
    shape: [usize; 2],
    group: [usize; 2],
}

impl QuantizedModel {
    /// Every tensor dequantized to f32, under the original names.
    pub fn dequantize(&self) -> NamedTensors {
        let mut out = self.dense.clone();
        for (name, q) in &self.quantized {
            out.insert(name.clone(), (q.shape.to_vec(), q.dequantize()));
        }
        out
    }

    /// Bits of each quantized weight, averaged over the encoder layers' matrices.
    pub fn average_layer_bits(&self) -> f64 {
        let (mut bits, mut n) = (0.0, 0.0);
        for (name, q) in &self.quantized {
            if name.starts_with("encoder.") {
                let count = (q.shape[0] * q.shape[1]) as f64;
                bits += q.spec.bits as f64 * count;
                n += count;
            }
        }
        bits / n.max(1.0)
    }

    /// The file's bytes (see the module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![];
        let mut metadata: HashMap<String, String> = HashMap::new();
        metadata.insert("format".into(), FORMAT_VERSION.into());
        metadata.insert("config".into(), self.config.to_json());
        metadata.insert(
            "plan".into(),
            serde_json::to_string(&self.plan).expect("plan serialises"),
        );
        let halfs = |v: &[f16]| -> Vec<u8> { v.iter().flat_map(|h| h.to_le_bytes()).collect() };
        for (name, q) in &self.quantized {
            let meta = TensorMeta {
                bits: q.spec.bits,
                symmetric: q.spec.symmetric,
                granularity: q.spec.granularity,
                shape: q.shape,
                group: q.group,
            };
            metadata.insert(
                name.clone(),
                serde_json::to_string(&meta).expect("meta serialises"),
            );
            buffers.push((
                format!("{name}.qweight"),
                Dtype::U8,
                vec![q.packed.len()],
                q.packed.clone(),
            ));
            buffers.push((
                format!("{name}.scales"),
                Dtype::F16,
                vec![q.scales.len()],
                halfs(&q.scales),
            ));
            if !q.spec.symmetric {
                buffers.push((
                    format!("{name}.zero_points"),
                    Dtype::F16,
                    vec![q.zero_points.len()],
                    halfs(&q.zero_points),
                ));
            }
        }
        for (name, (shape, values)) in &self.dense {
            buffers.push((
                name.clone(),
                Dtype::F32,
                shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
        metadata.insert(
            DATA_SHA256.into(),
            data_sha256(
                buffers
                    .iter()
                    .map(|(k, _, _, b)| (k.as_str(), b.as_slice())),
            ),
        );
        let views = buffers
            .iter()
            .map(|(k, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|v| (k.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| QuantError::Shape {
                op: "QuantizedModel::to_bytes",
                message: e.to_string(),
            })?;
        safetensors::serialize(views, Some(metadata)).map_err(|e| QuantError::Shape {
            op: "QuantizedModel::to_bytes",
            message: e.to_string(),
        })
    }

    /// Writes the file atomically (a temporary file, then a rename); returns its size in bytes.
    pub fn write(&self, path: &Path) -> Result<u64> {
        let bytes = self.to_bytes()?;
        student_arch::io::write_atomic(path, &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Reads and checks a file written by [`QuantizedModel::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| QuantError::Io {
            op: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses and checks the file's bytes; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let corrupt = |message: String| QuantError::CorruptFile {
            path: path.to_path_buf(),
            message,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        let metadata = header
            .metadata()
            .clone()
            .ok_or_else(|| corrupt("no metadata in the header".into()))?;
        let checksummed = match metadata.get("format") {
            Some(f) if f == FORMAT_VERSION => true,
            Some(f) if f == FORMAT_VERSION_1 => false,
            other => {
                return Err(corrupt(format!(
                    "format {other:?}, expected {FORMAT_VERSION:?}"
                )))
            }
        };
        let config = BertConfig::from_json(
            metadata
                .get("config")
                .ok_or_else(|| corrupt("no config".into()))?,
        )
        .map_err(|e| corrupt(format!("config: {e}")))?;
        let plan: QuantPlan = serde_json::from_str(
            metadata
                .get("plan")
                .ok_or_else(|| corrupt("no plan".into()))?,
        )
        .map_err(|e| corrupt(format!("plan: {e}")))?;
        let tensor = |key: &str, dtype: Dtype| -> Result<Vec<u8>> {
            let view = file
                .tensor(key)
                .map_err(|_| corrupt(format!("missing tensor `{key}`")))?;
            if view.dtype() != dtype {
                return Err(corrupt(format!(
                    "`{key}` has dtype {:?}, expected {dtype:?}",
                    view.dtype()
                )));
            }
            Ok(view.data().to_vec())
        };
        let halfs = |b: Vec<u8>| -> Vec<f16> {
            b.chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        match metadata.get(DATA_SHA256) {
            None if checksummed => {
                return Err(corrupt(format!(
                    "{FORMAT_VERSION} requires {DATA_SHA256} in the header and it is missing: the file is corrupt"
                )))
            }
            Some(expected) => {
                let names = file.names();
                let mut views = Vec::with_capacity(names.len());
                for name in names {
                    let view = file.tensor(name).map_err(|e| corrupt(e.to_string()))?;
                    views.push((name, view));
                }
                let actual = data_sha256(views.iter().map(|(k, v)| (*k, v.data())));
                if &actual != expected {
                    return Err(corrupt(
                        "the tensors do not match their sha256 in the header: the file is corrupt; quantize the \
                         model again (`cargo xtask quantize`)"
                            .into(),
                    ));
                }
            }
            None => eprintln!(
                "warning: {} is in {FORMAT_VERSION_1}, which has no checksum; its codes cannot be checked \
                 (quantize the model again to get one)",
                path.display()
            ),
        }
        let mut quantized = BTreeMap::new();
        let mut parts = std::collections::BTreeSet::new();
        for (name, value) in &metadata {
            if ["format", "config", "plan", DATA_SHA256].contains(&name.as_str()) {
                continue;
            }
            let meta: TensorMeta = serde_json::from_str(value)
                .map_err(|e| corrupt(format!("metadata of `{name}`: {e}")))?;
            let q = QuantizedTensor {
                shape: meta.shape,
                spec: QuantSpec {
                    bits: meta.bits,
                    symmetric: meta.symmetric,
                    granularity: meta.granularity,
                },
                group: meta.group,
                packed: tensor(&format!("{name}.qweight"), Dtype::U8)?,
                scales: halfs(tensor(&format!("{name}.scales"), Dtype::F16)?),
                zero_points: if meta.symmetric {
                    vec![]
                } else {
                    halfs(tensor(&format!("{name}.zero_points"), Dtype::F16)?)
                },
            };
            q.validate(name).map_err(|e| corrupt(e.to_string()))?;
            for suffix in ["qweight", "scales", "zero_points"] {
                parts.insert(format!("{name}.{suffix}"));
            }
            quantized.insert(name.clone(), q);
        }
        let mut dense = BTreeMap::new();
        for name in file.names() {
            if parts.contains(name) {
                continue;
            }
            let view = file.tensor(name).map_err(|e| corrupt(e.to_string()))?;
            if view.dtype() != Dtype::F32 {
                return Err(corrupt(format!(
                    "`{name}` has dtype {:?} but no quantization metadata; dense tensors are F32",
                    view.dtype()
                )));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            dense.insert(name.to_string(), (view.shape().to_vec(), values));
        }
        let model = Self {
            config,
            plan,
            quantized,
            dense,
        };
        model
            .plan
            .validate(&model.config)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use student_arch::model::SeededRng;

    pub(crate) fn tiny_tensors(config: &BertConfig, seed: u64) -> NamedTensors {
        let mut rng = SeededRng::new(seed);
        let mut t = BTreeMap::new();
        let mut put = |name: String, shape: Vec<usize>| {
            let n = shape.iter().product();
            let v = (0..n).map(|_| (rng.normal() * 0.05) as f32).collect();
            t.insert(name, (shape, v));
        };
        let (h, f) = (config.hidden_size, config.intermediate_size);
        put(
            "embeddings.word_embeddings.weight".into(),
            vec![config.vocab_size, h],
        );
        put(
            "embeddings.position_embeddings.weight".into(),
            vec![config.max_position_embeddings, h],
        );
        put("embeddings.LayerNorm.weight".into(), vec![h]);
        for l in 0..config.num_hidden_layers {
            for (m, _) in LAYER_MATRICES {
                let (o, i) = match m {
                    "intermediate.dense" => (f, h),
                    "output.dense" => (h, f),
                    _ => (h, h),
                };
                put(format!("encoder.layer.{l}.{m}.weight"), vec![o, i]);
                put(format!("encoder.layer.{l}.{m}.bias"), vec![o]);
            }
        }
        put("classifier.weight".into(), vec![2, h]);
        t
    }

    pub(crate) fn tiny_config() -> BertConfig {
        let mut c = BertConfig::from_json(
            r#"{"vocab_size": 50, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 128, "max_position_embeddings": 16, "type_vocab_size": 0}"#,
        )
        .unwrap();
        c.layer_norm_eps = 1e-12;
        c
    }

    #[test]
    fn file_round_trips_and_rejects_corruption() {
        let config = tiny_config();
        let tensors = tiny_tensors(&config, 1);
        let mut plan = QuantPlan::uniform(2, 4);
        plan.layer_bits = vec![8, 3];
        plan.symmetric = false;
        let q = quantize_tensors(&tensors, &config, &plan).unwrap();
        assert_eq!(q.quantized.len(), 2 + 12);
        assert!(q.dense.contains_key("classifier.weight"));
        assert_eq!(
            q.quantized["encoder.layer.0.attention.self.query.weight"].group,
            [32, 64]
        );
        assert_eq!(
            q.quantized["encoder.layer.1.attention.output.dense.weight"].group,
            [64, 32]
        );
        assert_eq!(
            q.quantized["encoder.layer.1.intermediate.dense.weight"].group,
            [1, 64]
        );
        let bytes = q.to_bytes().unwrap();
        let path = Path::new("mem.safetensors");
        let back = QuantizedModel::from_bytes(path, &bytes).unwrap();
        assert_eq!(back, q);
        let deq = back.dequantize();
        assert_eq!(deq.len(), tensors.len());
        for (name, (shape, values)) in &tensors {
            assert_eq!(&deq[name].0, shape);
            let err = crate::format::mse(values, &deq[name].1);
            assert!(err < 1e-3, "{name}: {err}");
        }
        assert!((q.average_layer_bits() - 5.5).abs() < 1e-9);

        // Truncated.
        let err = QuantizedModel::from_bytes(path, &bytes[..bytes.len() - 10]).unwrap_err();
        assert!(
            err.to_string().contains("not a valid quantized model"),
            "{err}"
        );
        // One flipped bit in the codes (the last byte of the file is tensor data).
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x10;
        let err = QuantizedModel::from_bytes(path, &flipped).unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        // Not ours: a plain safetensors file without the metadata.
        let plain = student_arch::weights::safetensors_bytes(&tensors).unwrap();
        let err = QuantizedModel::from_bytes(path, &plain).unwrap_err();
        assert!(err.to_string().contains("format"), "{err}");
        // Inconsistent: metadata says 8 bits for a tensor packed at 3.
        let mut wrong = q.clone();
        wrong
            .quantized
            .get_mut("encoder.layer.1.output.dense.weight")
            .unwrap()
            .spec
            .bits = 8;
        let err = QuantizedModel::from_bytes(path, &wrong.to_bytes().unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("encoder.layer.1.output.dense.weight")
                && err.to_string().contains("packed bytes"),
            "{err}"
        );
    }

    #[test]
    fn layer_granularity_shares_one_range_among_a_layers_attention_matrices() {
        let config = tiny_config();
        let tensors = tiny_tensors(&config, 5);
        let mut plan = QuantPlan::uniform(config.num_hidden_layers, 8);
        plan.granularity = Granularity::Layer;
        let q = quantize_tensors(&tensors, &config, &plan).unwrap();
        for l in 0..config.num_hidden_layers {
            let amax = SHARED_IN_LAYER
                .iter()
                .flat_map(|m| tensors[&matrix_name(l, m)].1.iter().map(|v| v.abs()))
                .fold(0.0f32, f32::max);
            let scales: Vec<f32> = SHARED_IN_LAYER
                .iter()
                .map(|m| {
                    let t = &q.quantized[&matrix_name(l, m)];
                    assert_eq!(t.scales.len(), 1, "one range per matrix");
                    t.scales[0].to_f32()
                })
                .collect();
            assert!(
                scales.iter().all(|s| *s == scales[0]),
                "layer {l}: {scales:?}"
            );
            assert!(scales[0] >= amax / 127.0 && scales[0] <= amax / 127.0 * 1.001);
            // The feed-forward matrices keep their own range.
            let ffn = &q.quantized[&matrix_name(l, "intermediate.dense")];
            let own = tensors[&matrix_name(l, "intermediate.dense")]
                .1
                .iter()
                .map(|v| v.abs())
                .fold(0.0f32, f32::max);
            assert!(ffn.scales[0].to_f32() <= own / 127.0 * 1.001);
        }
        assert_eq!("layer".parse::<Granularity>().unwrap(), Granularity::Layer);
        plan.embedding_granularity = Granularity::Layer;
        assert!(plan.validate(&config).is_err());
    }

    #[test]
    fn impossible_plans_are_errors() {
        let config = tiny_config();
        let tensors = tiny_tensors(&config, 2);
        let err = quantize_tensors(&tensors, &config, &QuantPlan::uniform(3, 4)).unwrap_err();
        assert!(
            err.to_string()
                .contains("3 entries for a model with 2 layers"),
            "{err}"
        );
        let mut plan = QuantPlan::uniform(2, 4);
        plan.overrides
            .insert("encoder.layer.5.intermediate.dense.weight".into(), 8);
        let err = quantize_tensors(&tensors, &config, &plan).unwrap_err();
        assert!(
            err.to_string()
                .contains("not a weight matrix of this 2-layer encoder"),
            "{err}"
        );
        plan.overrides = [("encoder.layer.1.intermediate.dense.weight".to_string(), 8)].into();
        let q = quantize_tensors(&tensors, &config, &plan).unwrap();
        assert_eq!(
            q.quantized["encoder.layer.1.intermediate.dense.weight"]
                .spec
                .bits,
            8
        );
        assert_eq!(
            q.quantized["encoder.layer.1.output.dense.weight"].spec.bits,
            4
        );
        let err = quantize_tensors(&tensors, &config, &QuantPlan::uniform(2, 6)).unwrap_err();
        assert!(
            err.to_string().contains("unsupported bits 6 for layer 0"),
            "{err}"
        );
        let mut plan = QuantPlan::uniform(2, 4);
        plan.embedding_granularity = Granularity::Head;
        assert!(quantize_tensors(&tensors, &config, &plan).is_err());
        let mut bad = tensors.clone();
        bad.get_mut("classifier.weight").unwrap().1[3] = f32::NAN;
        let err = quantize_tensors(&bad, &config, &QuantPlan::uniform(2, 4)).unwrap_err();
        assert!(err.to_string().contains("classifier.weight"), "{err}");
    }
}
