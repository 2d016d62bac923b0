//! Applying a saved classifier to text, on the path that really runs: `quant::encoder::QuantEncoder`, the
//! forward-only CPU encoder, with the integer kernels (8-bit activations against 8- or 4-bit weights) for a
//! quantized directory (`model.quant.safetensors`) and f32 GEMMs for a full-precision one on a CPU device; or,
//! asked for (and on a GPU device), Burn: on a quantized directory's dequantized weights, the figure that
//! quantize reports beside the integer one.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use quant::encoder::QuantEncoder;
use serde::{Deserialize, Serialize};
use student_arch::BertTokenizer;

use crate::classifier::{host, ClassifierMeta, SequenceClassifier};
use crate::error::{PipelineError, Result};
use crate::train::{batch_input, Encoded};

/// Which forward pass scores a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Burn on f32 weights (a quantized directory's dequantized).
    Dequantized,
    /// The quantized integer kernels (only for a quantized directory).
    Integer,
    /// The forward-only encoder of the integer kernels on a full-precision directory's f32 weights: one f32
    /// GEMM per matrix, fused attention and LayerNorm (CPU only). The default for a full-precision directory on
    /// a CPU device.
    Native,
}

impl std::str::FromStr for Engine {
    type Err = PipelineError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dequantized" | "f32" | "burn" => Ok(Self::Dequantized),
            "integer" | "int8" | "kernels" => Ok(Self::Integer),
            "native" => Ok(Self::Native),
            other => Err(PipelineError::Config {
                field: "engine",
                message: format!("{other:?}: expected integer, native or dequantized"),
            }),
        }
    }
}

impl Engine {
    /// The engine's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dequantized => "dequantized",
            Self::Integer => "integer",
            Self::Native => "native",
        }
    }
}

enum Runtime {
    Burn {
        model: Box<SequenceClassifier>,
        device: Device,
    },
    Integer {
        encoder: Box<QuantEncoder>,
        /// `[labels, hidden]`, row-major.
        head_weight: Vec<f32>,
        /// `[labels]`.
        head_bias: Vec<f32>,
        /// A `cls` classifier's pooler: weight `[hidden, hidden]` (out × in, row-major) and bias; `None`: the
        /// head reads the mean over tokens.
        pooler: Option<(Vec<f32>, Vec<f32>)>,
    },
}

/// The pooled vector of one sequence's last hidden states `states` (`[tokens][hidden]` flat): tanh(W·h_[CLS] + b)
/// with a pooler, else the mean over tokens.
fn pool(states: &[f32], hidden: usize, pooler: Option<&(Vec<f32>, Vec<f32>)>) -> Vec<f32> {
    match pooler {
        Some((w, b)) => {
            let cls = &states[..hidden];
            b.iter()
                .enumerate()
                .map(|(o, bias)| {
                    let row = &w[o * hidden..(o + 1) * hidden];
                    (bias + row.iter().zip(cls).map(|(w, x)| w * x).sum::<f32>()).tanh()
                })
                .collect()
        }
        None => quant::encoder::mean_over_tokens(states, hidden),
    }
}

/// The native engine's runtime: the classifier's f32 tensors in `QuantEncoder::full_precision`, its head and
/// pooler beside it.
fn native_runtime(model: &SequenceClassifier) -> Result<Runtime> {
    let tensors = model.named_tensors()?;
    let config = student_arch::BertConfig::from_json(&model.encoder.config.to_hf_json())?;
    let take = |name: &str| -> Result<Vec<f32>> {
        tensors
            .get(name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| PipelineError::Config {
                field: "engine",
                message: format!("the classifier has no {name} for the native engine"),
            })
    };
    let pooler = if model.cls {
        Some((take("pooler.dense.weight")?, take("pooler.dense.bias")?))
    } else {
        None
    };
    Ok(Runtime::Integer {
        encoder: Box::new(QuantEncoder::full_precision(&config, &tensors)?),
        head_weight: take("classifier.weight")?,
        head_bias: take("classifier.bias")?,
        pooler,
    })
}

/// One prediction: the label and every class's probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The most probable label.
    pub label: String,
    /// Each label's probability (softmax of the logits), in `classifier.json`'s label order.
    pub probabilities: BTreeMap<String, f64>,
}

/// A saved classifier ready to score text.
pub struct Predictor {
    meta: ClassifierMeta,
    tokenizer: BertTokenizer,
    engine: Engine,
    runtime: Runtime,
}

impl Predictor {
    /// Loads the classifier in `dir`. `engine` `None` picks the integer kernels for a quantized directory, the
    /// native f32 encoder for a full-precision one on a CPU device, and Burn on any other device; the integer
    /// engine on a full-precision directory, and the native one on a quantized directory or a GPU device, are
    /// errors.
    pub fn load(dir: &Path, device: &Device, engine: Option<Engine>) -> Result<Self> {
        let quant_path = dir.join(quant::QUANT_FILE);
        let quantized = quant_path.exists();
        let cpu = student_arch::device::is_cpu(device);
        let engine = engine.unwrap_or(match (quantized, cpu) {
            (true, _) => Engine::Integer,
            (false, true) => Engine::Native,
            (false, false) => Engine::Dequantized,
        });
        match engine {
            Engine::Native if quantized => Err(PipelineError::Config {
                field: "engine",
                message: format!(
                    "{} is quantized; the native engine runs full-precision directories (use integer or \
                     dequantized)",
                    dir.display()
                ),
            }),
            Engine::Native if !cpu => Err(PipelineError::Config {
                field: "engine",
                message: "the native engine runs on the CPU; use --device flex (or ndarray), or --engine \
                          dequantized for Burn on this device"
                    .into(),
            }),
            Engine::Native | Engine::Dequantized => {
                let (model, meta) = SequenceClassifier::load(dir, device)?;
                let tokenizer = crate::classifier::tokenizer_for(dir, &model)?;
                let runtime = match engine {
                    Engine::Native => native_runtime(&model)?,
                    _ => Runtime::Burn {
                        model: Box::new(model),
                        device: device.clone(),
                    },
                };
                Ok(Self {
                    meta,
                    tokenizer,
                    engine,
                    runtime,
                })
            }
            Engine::Integer if !quantized => Err(PipelineError::Config {
                field: "engine",
                message: format!(
                    "{} holds no {} (it is full precision); the integer engine runs quantized directories",
                    dir.display(),
                    quant::QUANT_FILE
                ),
            }),
            Engine::Integer => Self::load_integer(dir, &quant_path),
        }
    }

    fn load_integer(dir: &Path, quant_path: &Path) -> Result<Self> {
        let (meta, meta_path) = ClassifierMeta::read(dir)?;
        let q = quant::QuantizedModel::read(quant_path)?;
        meta.validate(&meta_path, Some(q.config.max_position_embeddings))?;
        crate::checkpoint::verify_manifest(dir)?;
        let hidden = q.config.hidden_size;
        let labels = meta.labels.len();
        let dense = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            match q.dense.get(name) {
                Some((s, v)) if s == shape => Ok(v.clone()),
                found => Err(PipelineError::Checkpoint {
                    path: quant_path.to_path_buf(),
                    message: format!(
                        "{name} has shape {:?}, expected {shape:?} ({labels} labels in classifier.json)",
                        found.map(|(s, _)| s.clone())
                    ),
                }),
            }
        };
        let head_weight = dense("classifier.weight", &[labels, hidden])?;
        let head_bias = dense("classifier.bias", &[labels])?;
        // A cls head reads the pooler, at the precision the file holds it (dequantized if it was quantized).
        let pooler = if meta.pooling == crate::classifier::Pooling::Cls.as_str() {
            let all = q.dequantize();
            let take = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
                match all.get(name) {
                    Some((s, v)) if s == shape => Ok(v.clone()),
                    found => Err(PipelineError::Checkpoint {
                        path: quant_path.to_path_buf(),
                        message: format!(
                            "a cls classifier needs {name} {shape:?}, found {:?}",
                            found.map(|(s, _)| s.clone())
                        ),
                    }),
                }
            };
            Some((
                take("pooler.dense.weight", &[hidden, hidden])?,
                take("pooler.dense.bias", &[hidden])?,
            ))
        } else {
            None
        };
        let tokenizer = crate::classifier::checked_tokenizer(dir, q.config.vocab_size)?;
        Ok(Self {
            meta,
            tokenizer,
            engine: Engine::Integer,
            runtime: Runtime::Integer {
                encoder: Box::new(QuantEncoder::new(&q)?),
                head_weight,
                head_bias,
                pooler,
            },
        })
    }

    /// The engine that runs.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The labels, in class order.
    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }

    /// The longest input in tokens (`classifier.json`).
    pub fn max_length(&self) -> usize {
        self.meta.max_length
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The logits of tokenised examples, `labels` values each, in input order.
    pub fn logits(&self, data: &[Encoded], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        match &self.runtime {
            Runtime::Burn { model, device } => {
                logits(model, data, batch_size, self.tokenizer.pad_id, device)
            }
            Runtime::Integer {
                encoder,
                head_weight,
                head_bias,
                pooler,
            } => {
                let mut out = Vec::with_capacity(data.len());
                let hidden = head_weight.len() / head_bias.len().max(1);
                for chunk in data.chunks(batch_size.max(1)) {
                    let ids: Vec<Vec<u32>> = chunk.iter().map(|e| e.ids.clone()).collect();
                    for states in encoder.forward(&ids)? {
                        let pooled = pool(&states, hidden, pooler.as_ref());
                        out.push(
                            head_bias
                                .iter()
                                .enumerate()
                                .map(|(k, b)| {
                                    let row =
                                        &head_weight[k * pooled.len()..(k + 1) * pooled.len()];
                                    b + row.iter().zip(&pooled).map(|(w, x)| w * x).sum::<f32>()
                                })
                                .collect(),
                        );
                    }
                }
                Ok(out)
            }
        }
    }

    /// Tokenises `texts` (truncated to [`Predictor::max_length`]) and predicts each.
    pub fn predict(&self, texts: &[String], batch_size: usize) -> Result<Vec<Prediction>> {
        let data: Vec<Encoded> = texts
            .iter()
            .map(|t| {
                Ok(Encoded {
                    ids: self.tokenizer.encode(t, self.meta.max_length)?,
                    label: 0,
                })
            })
            .collect::<Result<_>>()?;
        Ok(self
            .logits(&data, batch_size)?
            .iter()
            .map(|row| self.prediction(row))
            .collect())
    }

    fn prediction(&self, logits: &[f32]) -> Prediction {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = logits.iter().map(|v| ((v - max) as f64).exp()).collect();
        let sum: f64 = exp.iter().sum();
        let best = argmax(logits);
        Prediction {
            label: self.meta.labels[best].clone(),
            probabilities: self
                .meta
                .labels
                .iter()
                .cloned()
                .zip(exp.iter().map(|e| e / sum))
                .collect(),
        }
    }
}

/// Each example's logits, `num_labels` values per example, in the input order.
pub fn logits(
    model: &SequenceClassifier,
    data: &[Encoded],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    // Batches of similar lengths pad little; logits go back to the input order.
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data[i].ids.len());
    let mut out = vec![Vec::new(); data.len()];
    let vocab = model.encoder.config.vocab_size;
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<&Encoded> = chunk.iter().map(|&i| &data[i]).collect();
        let (input, _) = batch_input(&batch, pad_id, vocab, device)?;
        let logits = host(model.forward(input).logits)?;
        let c = logits.len() / chunk.len();
        for (&i, row) in chunk.iter().zip(logits.chunks(c)) {
            out[i] = row.to_vec();
        }
    }
    Ok(out)
}

/// The index of the largest value (the first of ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (k, v)| if *v > row[best] { k } else { best })
}
