//! A sequence classifier: a BERT encoder, mean pooling over real tokens, and a linear head. Saved as a Hugging
//! Face BERT directory plus `classifier.weight`/`classifier.bias` in the same safetensors file and a
//! `classifier.json` with the label names, so `cargo xtask embed` and other tools still open the encoder.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::pooling::mean_pool;
use student_arch::weights::load_weights_from_bytes;
use student_arch::weights::{named_tensors, safetensors_bytes, to_f32, CONFIG_FILE, WEIGHTS_FILE};
use student_arch::{BertConfig, BertInput, BertModel, BertOutput};

use crate::error::{io_err, PipelineError, Result};

/// The file that marks a directory as a fine-tuned classifier.
pub const CLASSIFIER_FILE: &str = "classifier.json";

/// What `classifier.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    /// Label names, index = class id.
    pub labels: Vec<String>,
    /// Always "mean": the head reads the mean of the last hidden states over real tokens.
    pub pooling: String,
    /// Longest input in tokens used in training.
    pub max_length: usize,
    /// The train/dev/test split of the run that trained it (`None` in directories written before it was
    /// recorded): every later command on this model and dataset uses this split, so no test row is trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<RecordedSplit>,
}

/// The split a classifier was trained on: its dataset, seed and held-out fractions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedSplit {
    /// The dataset (built-in name or the path given).
    pub dataset: String,
    /// The split seed.
    pub seed: u64,
    /// Fraction held out for dev.
    pub dev_fraction: f64,
    /// Fraction held out for test.
    pub test_fraction: f64,
}

impl ClassifierMeta {
    /// The split seed and fractions to use on `dataset`: the recorded split when the model was trained on that
    /// dataset, else `seed` with the default fractions (another dataset shares no rows with the training one).
    pub fn split_for(&self, dataset: &str, seed: u64) -> (u64, crate::config::SplitConfig) {
        match &self.split {
            Some(r) if r.dataset == dataset => (
                r.seed,
                crate::config::SplitConfig {
                    dev_fraction: r.dev_fraction,
                    test_fraction: r.test_fraction,
                },
            ),
            _ => (seed, crate::config::SplitConfig::default()),
        }
    }

    /// `dataset` read with this model's labels and split as [`ClassifierMeta::split_for`] says: what every
    /// command that trains on or samples from a saved model's task (QAT, prune-vocab, sensitivity) reads.
    pub fn dataset_splits(
        &self,
        dataset: &str,
        columns: &crate::data::labelled::Columns,
        seed: u64,
        cache: &Path,
    ) -> Result<crate::data::labelled::Splits> {
        let data = crate::data::tasks::load_dataset(dataset, columns, Some(&self.labels), cache)?;
        let (split_seed, fractions) = self.split_for(dataset, seed);
        fractions.split(&data.examples, split_seed)
    }
}

/// The sha256 of a classifier directory's weights (`model.quant.safetensors` when quantized, else
/// `model.safetensors`): what identifies the model a sensitivity report was measured on.
pub fn weights_sha256(dir: &Path) -> Result<String> {
    let quantized = dir.join(quant::QUANT_FILE);
    let path = if quantized.exists() {
        quantized
    } else {
        dir.join(WEIGHTS_FILE)
    };
    Ok(crate::fetch::sha256_file(&path)?)
}

/// Most labels a `classifier.json` may name.
pub const MAX_LABELS: usize = 100_000;

impl ClassifierMeta {
    /// Reads and checks `dir/classifier.json` (without the positions, which need the model's config); returns
    /// it with its path.
    pub fn read(dir: &Path) -> Result<(Self, std::path::PathBuf)> {
        let meta_path = dir.join(CLASSIFIER_FILE);
        if !meta_path.exists() {
            return Err(PipelineError::Checkpoint {
                path: meta_path,
                message: "not a fine-tuned classifier (no classifier.json); fine-tune it with `cargo xtask distill --teacher DIR`".into(),
            });
        }
        let meta: ClassifierMeta = serde_json::from_str(
            &std::fs::read_to_string(&meta_path).map_err(io_err("reading", &meta_path))?,
        )
        .map_err(|e| PipelineError::Checkpoint {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        meta.validate(&meta_path, None)?;
        Ok((meta, meta_path))
    }

    /// Checks what `classifier.json` (at `path`) says: at least two distinct labels, mean pooling, and a
    /// `max_length` that fits `max_positions` (the encoder's `max_position_embeddings`, when known).
    pub fn validate(&self, path: &Path, max_positions: Option<usize>) -> Result<()> {
        let err = |message: String| PipelineError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let mut distinct = self.labels.clone();
        distinct.sort();
        distinct.dedup();
        if self.labels.len() < 2
            || distinct.len() != self.labels.len()
            || self.labels.len() > MAX_LABELS
        {
            return Err(err(format!(
                "labels must name 2 to {MAX_LABELS} distinct classes, found {:?}",
                self.labels.iter().take(5).collect::<Vec<_>>()
            )));
        }
        if self.pooling != "mean" {
            return Err(err(format!(
                "pooling {:?}: only \"mean\" is supported",
                self.pooling
            )));
        }
        let max = max_positions.unwrap_or(usize::MAX);
        if self.max_length < 3 || self.max_length > max {
            return Err(err(format!(
                "max_length {} must be in 3..={} ([CLS], one token and [SEP], at most config.json's \
                 max_position_embeddings)",
                self.max_length,
                max_positions.map_or("max_position_embeddings".into(), |m| m.to_string())
            )));
        }
        Ok(())
    }
}

/// The tokenizer of the model directory `dir`, checked against the model's embedding table (a tokenizer from
/// another model would produce ids the table does not have).
pub fn tokenizer_for(
    dir: &Path,
    model: &SequenceClassifier,
) -> Result<student_arch::BertTokenizer> {
    checked_tokenizer(dir, model.encoder.config.vocab_size)
}

/// The tokenizer of `dir`, refused when it has more word pieces than an embedding table of `table` rows.
pub fn checked_tokenizer(dir: &Path, table: usize) -> Result<student_arch::BertTokenizer> {
    let tokenizer = student_arch::BertTokenizer::from_dir(dir)?;
    if tokenizer.vocab_size() > table {
        return Err(PipelineError::Checkpoint {
            path: tokenizer.path().to_path_buf(),
            message: format!(
                "the tokenizer has {} word pieces but config.json's vocab_size is {table}; it belongs to another \
                 model: copy the model's own tokenizer files",
                tokenizer.vocab_size()
            ),
        });
    }
    Ok(tokenizer)
}

/// Encoder + mean pooling + linear head.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// The encoder.
    pub encoder: BertModel,
    /// `hidden → num_labels`.
    pub head: Linear,
}

/// A classifier's output.
#[derive(Clone, Debug)]
pub struct ClassifierOutput {
    /// `[batch_size, num_labels]`.
    pub logits: Tensor<2>,
    /// Everything the encoder computed.
    pub encoder: BertOutput,
}

impl SequenceClassifier {
    /// A new head (seeded, Normal(0, 0.02)) on `encoder`.
    pub fn new(encoder: BertModel, num_labels: usize, seed: u64, device: &Device) -> Self {
        let hidden = encoder.config.hidden_size;
        let mut rng = student_arch::model::SeededRng::new(seed ^ 0xC1A5);
        let w: Vec<f32> = (0..hidden * num_labels)
            .map(|_| (rng.normal() * 0.02) as f32)
            .collect();
        let mut head = LinearConfig::new(hidden, num_labels).init(device);
        head.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [hidden, num_labels]),
            device,
        ));
        head.bias = Some(Param::from_tensor(Tensor::zeros([num_labels], device)));
        Self { encoder, head }
    }

    /// # Shapes
    /// - input: `[batch_size, seq_length]` ids and mask
    /// - logits: `[batch_size, num_labels]`
    pub fn forward(&self, input: BertInput) -> ClassifierOutput {
        let mask = input.attention_mask.clone();
        let encoder = self.encoder.forward(input);
        let pooled = mean_pool(encoder.last_hidden_state(), mask);
        ClassifierOutput {
            logits: self.head.forward(pooled),
            encoder,
        }
    }

    /// Number of labels.
    pub fn num_labels(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// Every tensor under its Hugging Face name (the encoder's, plus `classifier.weight` `[labels, hidden]` and
    /// `classifier.bias`).
    pub fn named_tensors(&self) -> Result<student_arch::weights::NamedTensors> {
        let mut tensors: student_arch::weights::NamedTensors = named_tensors(&self.encoder)?;
        let [hidden, labels] = self.head.weight.dims();
        let w = host(self.head.weight.val())?;
        let mut t = vec![0.0; w.len()];
        for h in 0..hidden {
            for l in 0..labels {
                t[l * hidden + h] = w[h * labels + l];
            }
        }
        tensors.insert("classifier.weight".into(), (vec![labels, hidden], t));
        let bias = self
            .head
            .bias
            .as_ref()
            .map(|b| host(b.val()))
            .transpose()?
            .unwrap_or_else(|| vec![0.0; labels]);
        tensors.insert("classifier.bias".into(), (vec![labels], bias));
        Ok(tensors)
    }

    /// Saves the classifier as an HF BERT directory plus head and `classifier.json`, atomically per file.
    pub fn save(&self, dir: &Path, meta: &ClassifierMeta) -> Result<()> {
        crate::checkpoint::remove_manifest(dir)?;
        let tensors = self.named_tensors()?;
        write_atomic(&dir.join(WEIGHTS_FILE), &safetensors_bytes(&tensors)?)?;
        write_atomic(
            &dir.join(CONFIG_FILE),
            self.encoder.config.to_hf_json().as_bytes(),
        )?;
        write_atomic(
            &dir.join(CLASSIFIER_FILE),
            serde_json::to_string_pretty(meta)
                .expect("meta serialises")
                .as_bytes(),
        )?;
        crate::checkpoint::write_manifest(dir, &[WEIGHTS_FILE, CONFIG_FILE, CLASSIFIER_FILE])
    }

    /// Loads a classifier saved by [`SequenceClassifier::save`].
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, ClassifierMeta)> {
        let (meta, meta_path) = ClassifierMeta::read(dir)?;
        // A quantized directory (`cargo xtask quantize`) holds packed weights; they load dequantized.
        let quant_path = dir.join(quant::QUANT_FILE);
        let (weights_path, bytes, config) = if quant_path.exists() {
            let q = quant::QuantizedModel::read(&quant_path)?;
            (quant_path, safetensors_bytes(&q.dequantize())?, q.config)
        } else {
            let weights_path = dir.join(WEIGHTS_FILE);
            let bytes = std::fs::read(&weights_path).map_err(io_err("reading", &weights_path))?;
            (
                weights_path,
                bytes,
                BertConfig::from_file(&dir.join(CONFIG_FILE))?,
            )
        };
        meta.validate(&meta_path, Some(config.max_position_embeddings))?;
        let (encoder, _) = load_weights_from_bytes(&config, &weights_path, &bytes, device)?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| PipelineError::Checkpoint {
            path: weights_path.clone(),
            message: e.to_string(),
        })?;
        let hidden = encoder.config.hidden_size;
        let labels = meta.labels.len();
        let read = |key: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let view = file.tensor(key).map_err(|_| PipelineError::Checkpoint {
                path: weights_path.clone(),
                message: format!("missing {key} {shape:?}"),
            })?;
            if view.shape() != shape {
                return Err(PipelineError::Checkpoint {
                    path: weights_path.clone(),
                    message: format!(
                        "{key} has shape {:?}, expected {shape:?} ({} labels in classifier.json)",
                        view.shape(),
                        labels
                    ),
                });
            }
            let values =
                to_f32(view.dtype(), view.data()).map_err(|dtype| PipelineError::Checkpoint {
                    path: weights_path.clone(),
                    message: format!("{key} has dtype {dtype}"),
                })?;
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(PipelineError::Checkpoint {
                    path: weights_path.clone(),
                    message: format!(
                        "{key} holds a non-finite value ({v}); the weights are corrupt"
                    ),
                });
            }
            Ok(values)
        };
        let w = read("classifier.weight", &[labels, hidden])?;
        let b = read("classifier.bias", &[labels])?;
        let t = student_arch::transpose(&w, labels, hidden);
        let mut head = LinearConfig::new(hidden, labels).init(device);
        head.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(t, [hidden, labels]),
            device,
        ));
        head.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [labels]),
            device,
        )));
        // Last: the readers above name a truncated or malformed file more precisely than a checksum does.
        crate::checkpoint::verify_manifest(dir)?;
        Ok((Self { encoder, head }, meta))
    }
}

pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| {
            PipelineError::Arch(student_arch::ArchError::Data {
                what: "classifier tensor".into(),
                message: format!("{e:?}"),
            })
        })
}
