//! A sequence classifier: a BERT encoder, a pooling of its last hidden states, and a linear head. Two poolings:
//! `cls`, Hugging Face's `BertForSequenceClassification` ([CLS] → pooler dense + tanh → classifier), and `mean`
//! (the mean over real tokens, what all-MiniLM-L6-v2 was trained for). Saved as a Hugging Face directory that
//! declares exactly what it holds ([`hf_files`]): a `cls` model is a `BertForSequenceClassification` with
//! `id2label`, which `transformers.pipeline("text-classification")` runs as we do; a `mean` model has its own
//! `model_type` and ships its modeling code, so transformers refuses it unless `trust_remote_code=True`, and then
//! runs exactly what was trained. A `BertForSequenceClassification` saved by transformers loads as a `cls`
//! classifier whose labels are its `id2label` ([`ClassifierMeta::read`]).

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

mod hf;

pub use crate::config::Pooling;
pub use hf::{hf_files, write_hf_files, MEAN_MODELING_FILE, MEAN_MODEL_TYPE};

/// The file that marks a directory as a fine-tuned classifier.
pub const CLASSIFIER_FILE: &str = "classifier.json";

/// What `classifier.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    /// Label names, index = class id.
    pub labels: Vec<String>,
    /// `"mean"` (the mean of the last hidden states over real tokens) or `"cls"` (the pooler's tanh(W·h_[CLS] + b),
    /// as `BertForSequenceClassification`).
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
            if let Some(meta) = Self::from_hf_config(dir)? {
                return Ok((meta, dir.join(CONFIG_FILE)));
            }
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

    /// Writes `dir/classifier.json` atomically; returns its file name.
    pub fn write(&self, dir: &Path) -> Result<&'static str> {
        write_atomic(
            &dir.join(CLASSIFIER_FILE),
            serde_json::to_string_pretty(self)
                .expect("meta serialises")
                .as_bytes(),
        )?;
        Ok(CLASSIFIER_FILE)
    }

    /// The classifier a `BertForSequenceClassification` saved by transformers is: its `id2label` in id order,
    /// the `cls` pooling, up to `max_position_embeddings` tokens (at most 512). `None` when `config.json` does
    /// not name that architecture; an error when its labels are unusable.
    pub fn from_hf_config(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CONFIG_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Ok(None);
        };
        let is_classifier = json["architectures"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "BertForSequenceClassification"));
        if !is_classifier {
            return Ok(None);
        }
        let err = |message: String| PipelineError::Checkpoint {
            path: path.clone(),
            message,
        };
        let id2label = json["id2label"].as_object().ok_or_else(|| {
            err(
                "a BertForSequenceClassification config without id2label; add the label names"
                    .into(),
            )
        })?;
        if id2label.len() > MAX_LABELS {
            return Err(err(format!("id2label names more than {MAX_LABELS} labels")));
        }
        let mut labels = vec![None; id2label.len()];
        for (id, label) in id2label {
            let i = id
                .parse::<usize>()
                .ok()
                .filter(|&i| i < labels.len())
                .ok_or_else(|| {
                    err(format!(
                        "id2label key {id:?} is not an id in 0..{}",
                        labels.len()
                    ))
                })?;
            labels[i] = label.as_str().map(str::to_string);
        }
        let labels = labels
            .into_iter()
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| err("id2label must map every id 0..n to a label name".into()))?;
        let max_length = json["max_position_embeddings"]
            .as_u64()
            .map_or(512, |m| (m as usize).min(512));
        let meta = Self {
            labels,
            pooling: Pooling::Cls.as_str().into(),
            max_length,
            split: None,
        };
        meta.validate(&path, None)?;
        Ok(Some(meta))
    }

    /// This model's labels in the order of `dataset_labels`: for each dataset label, the model's class id of
    /// the same name. An error names both sets when they differ.
    pub fn label_order(&self, dataset_labels: &[String], dir: &Path) -> Result<Vec<usize>> {
        let mut mine = self.labels.clone();
        let mut theirs = dataset_labels.to_vec();
        mine.sort();
        theirs.sort();
        if mine != theirs {
            return Err(PipelineError::Config {
                field: "teacher",
                message: format!(
                    "{} classifies {:?}, the dataset has {dataset_labels:?}; map the dataset's labels to the \
                     model's names, or give a teacher without a classifier head to fine-tune one",
                    dir.display(),
                    self.labels
                ),
            });
        }
        Ok(dataset_labels
            .iter()
            .map(|l| self.labels.iter().position(|m| m == l).expect("same sets"))
            .collect())
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
        if Pooling::parse(&self.pooling).is_none() {
            return Err(err(format!(
                "pooling {:?}: \"mean\" or \"cls\"",
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

/// Encoder + pooling + linear head.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// The encoder.
    pub encoder: BertModel,
    /// `hidden → num_labels`.
    pub head: Linear,
    /// The head reads the pooler's output ([`Pooling::Cls`]) instead of the mean over real tokens; the encoder
    /// then has a pooler (checked where such a classifier is made).
    pub cls: bool,
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
        Self {
            encoder,
            head,
            cls: false,
        }
    }

    /// This classifier reading the encoder as `pooling` says; `cls` needs an encoder with a pooler.
    pub fn with_pooling(mut self, pooling: Pooling) -> Result<Self> {
        if pooling == Pooling::Cls && self.encoder.pooler.is_none() {
            return Err(PipelineError::Config {
                field: "head",
                message: "the cls head reads the pooler, and this encoder has none; use --head mean, or a \
                          teacher with a pooler"
                    .into(),
            });
        }
        self.cls = pooling == Pooling::Cls;
        Ok(self)
    }

    /// How the head reads the encoder.
    pub fn pooling(&self) -> Pooling {
        if self.cls {
            Pooling::Cls
        } else {
            Pooling::Mean
        }
    }

    /// # Shapes
    /// - input: `[batch_size, seq_length]` ids and mask
    /// - logits: `[batch_size, num_labels]`
    pub fn forward(&self, input: BertInput) -> ClassifierOutput {
        let mask = input.attention_mask.clone();
        let encoder = self.encoder.forward(input);
        let pooled = match (&encoder.pooled, self.cls) {
            (Some(p), true) => p.clone(),
            _ => mean_pool(encoder.last_hidden_state(), mask),
        };
        ClassifierOutput {
            logits: self.head.forward(pooled),
            encoder,
        }
    }

    /// The classifier with its classes in `order` (class `i` of the result is class `order[i]` of this one).
    pub fn reorder_labels(mut self, order: &[usize]) -> Result<Self> {
        let [hidden, labels] = self.head.weight.dims();
        if order.len() != labels || order.iter().any(|&o| o >= labels) {
            return Err(PipelineError::Config {
                field: "labels",
                message: format!("a label order of {} for {labels} labels", order.len()),
            });
        }
        // On the host, so the new parameters are leaves (a `select` on an autodiff parameter is not).
        let device = self.head.weight.device();
        let w = host(self.head.weight.val())?;
        let t: Vec<f32> = (0..hidden)
            .flat_map(|h| order.iter().map(move |&o| (h, o)))
            .map(|(h, o)| w[h * labels + o])
            .collect();
        self.head.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(t, [hidden, labels]),
            &device,
        ));
        if let Some(b) = &self.head.bias {
            let b = host(b.val())?;
            let t: Vec<f32> = order.iter().map(|&o| b[o]).collect();
            self.head.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(t, [labels]),
                &device,
            )));
        }
        Ok(self)
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
        let meta = ClassifierMeta {
            pooling: self.pooling().as_str().into(),
            ..meta.clone()
        };
        let mut files = write_hf_files(
            dir,
            &tensors,
            &self.encoder.config,
            &meta.labels,
            self.pooling(),
        )?;
        files.push(meta.write(dir)?);
        crate::checkpoint::write_manifest(dir, &files)
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
            let (weights_path, bytes) = student_arch::weights::weights_bytes(dir)?;
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
        let pooling = Pooling::parse(&meta.pooling).unwrap_or_default();
        let model = Self {
            encoder,
            head,
            cls: false,
        }
        .with_pooling(pooling)?;
        // Last: the readers above name a truncated or malformed file more precisely than a checksum does.
        crate::checkpoint::verify_manifest(dir)?;
        Ok((model, meta))
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
