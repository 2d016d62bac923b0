//! `BertConfig`: a serde mirror of a Hugging Face BERT `config.json`, validated before use.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ArchError, Result};

/// The activation of the feed-forward block, as named by `hidden_act` in `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiddenAct {
    /// `gelu`: the exact, erf-based GELU (BERT, MiniLM).
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl HiddenAct {
    /// Parses the `hidden_act` string of `config.json`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(HiddenAct::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(HiddenAct::GeluTanh),
            "relu" => Ok(HiddenAct::Relu),
            other => Err(ArchError::InvalidConfig {
                field: "hidden_act",
                message: format!(
                    "unknown activation `{other}`; expected one of gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu"
                ),
            }),
        }
    }
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_max_position_embeddings() -> usize {
    512
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_dropout() -> f64 {
    0.1
}
fn default_model_type() -> String {
    "bert".into()
}
fn default_position_embedding_type() -> String {
    "absolute".into()
}

/// The `model_type`s read: BERT's encoder, saved as `BertModel`, `BertForMaskedLM`, `BertForPreTraining` or
/// `BertForSequenceClassification`.
pub const SUPPORTED_MODEL_TYPES: [&str; 2] = ["bert", MEAN_CLASSIFIER_MODEL_TYPE];

/// The `model_type` bert-compress writes for a BERT classifier with a mean-pooling head, so that transformers
/// does not open it as a `BertForSequenceClassification` with a random head; its encoder is a BERT's, and it
/// reads as `bert`.
pub const MEAN_CLASSIFIER_MODEL_TYPE: &str = "bert_compress_mean";

fn check_model_type(kind: &str) -> Result<()> {
    if SUPPORTED_MODEL_TYPES.contains(&kind) {
        return Ok(());
    }
    Err(ArchError::InvalidConfig {
        field: "model_type",
        message: format!(
            "{kind:?} is not supported: only BERT encoders (model_type \"bert\": BertModel, BertForMaskedLM, \
             BertForPreTraining, BertForSequenceClassification) are read; a {kind} checkpoint has other weights"
        ),
    })
}

/// The fields of a Hugging Face BERT `config.json` that define the encoder.
///
/// Unknown fields are ignored when reading and dropped when writing. `type_vocab_size = 0` means the
/// encoder has no token-type embeddings (a DistilBERT-style student).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Size of the word-piece vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state, `d_model`.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Feed-forward activation. Default: "gelu".
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Number of learnt positions. Default: 512.
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Number of token types; 0 removes the token-type embeddings. Default: 2.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon. Default: 1e-12.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token. Default: 0.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Standard deviation of the random initialisation. Default: 0.02.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    /// Dropout on hidden states during training. Default: 0.1.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities during training. Default: 0.1.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Always "bert". Default: "bert".
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Only "absolute" is supported. Default: "absolute".
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// `["BertModel"]` and the like; kept so that other tools recognise a saved model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
}

/// Largest `vocab_size` accepted (multilingual BERTs have ~250k word pieces).
pub const MAX_VOCAB: usize = 1 << 22;
/// Largest `hidden_size` accepted (BERT-large is 1,024 wide).
pub const MAX_WIDTH: usize = 1 << 14;
/// Largest `num_hidden_layers` accepted.
pub const MAX_LAYERS: usize = 256;
/// Largest `num_attention_heads` accepted.
pub const MAX_HEADS: usize = 1024;
/// Largest `max_position_embeddings` accepted.
pub const MAX_POSITIONS: usize = 1 << 16;
/// Largest `type_vocab_size` accepted.
pub const MAX_TYPES: usize = 1024;
/// Largest parameter count accepted (40 GB in f32).
pub const MAX_PARAMETERS: u64 = 10_000_000_000;

impl BertConfig {
    /// A config with the given sizes and BERT's defaults elsewhere. Call [`BertConfig::validate`] before use.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act: default_hidden_act(),
            max_position_embeddings: default_max_position_embeddings(),
            type_vocab_size: default_type_vocab_size(),
            layer_norm_eps: default_layer_norm_eps(),
            pad_token_id: 0,
            initializer_range: default_initializer_range(),
            hidden_dropout_prob: default_dropout(),
            attention_probs_dropout_prob: default_dropout(),
            model_type: default_model_type(),
            position_embedding_type: default_position_embedding_type(),
            architectures: Some(vec!["BertModel".into()]),
        }
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(ArchError::MissingFile {
                path: path.to_path_buf(),
                hint: "a Hugging Face BERT directory needs config.json beside model.safetensors"
                    .into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ArchError::io("reading", path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            ArchError::ConfigParse { message, .. } => ArchError::ConfigParse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        // Another architecture is refused by name before its fields are read (a DistilBERT's config has no
        // `hidden_size`, which would otherwise be the message).
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(text) {
            if let Some(serde_json::Value::String(kind)) = fields.get("model_type") {
                check_model_type(kind)?;
            }
        }
        let config: BertConfig =
            serde_json::from_str(text).map_err(|e| ArchError::ConfigParse {
                path: "config.json".into(),
                message: e.to_string(),
            })?;
        let mut config = config;
        // The config describes the encoder; what a directory holds besides it (a head) is declared by whatever
        // writes the directory, so a config read from a classifier does not call a bare encoder one.
        if config.model_type == MEAN_CLASSIFIER_MODEL_TYPE {
            config.model_type = default_model_type();
        }
        config.architectures = Some(vec!["BertModel".into()]);
        config.validate()?;
        Ok(config)
    }

    /// The config as pretty JSON, in the layout of Hugging Face.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("BertConfig always serialises")
    }

    /// `config.json` as written into a saved model directory: like [`BertConfig::to_json`], but an encoder
    /// without token types is written with `type_vocab_size = 1` (its weights hold a zero table to match), because
    /// Hugging Face `transformers` always looks up token type 0. Loading drops such a zero table again.
    pub fn to_hf_json(&self) -> String {
        let mut c = self.clone();
        c.type_vocab_size = c.type_vocab_size.max(1);
        c.to_json()
    }

    /// Width of one attention head, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The parsed activation. Valid after [`BertConfig::validate`].
    pub fn activation(&self) -> Result<HiddenAct> {
        HiddenAct::parse(&self.hidden_act)
    }

    /// The encoder's parameter count (embeddings, layers and a pooler), or `None` if it overflows.
    pub fn parameter_count(&self) -> Option<u64> {
        let h = self.hidden_size as u64;
        let ffn = self.intermediate_size as u64;
        let tables = (self.vocab_size as u64)
            .checked_add(self.max_position_embeddings as u64)?
            .checked_add(self.type_vocab_size as u64)?;
        let embeddings = tables.checked_mul(h)?.checked_add(2 * h)?;
        let attention = h.checked_mul(h)?.checked_add(h)?.checked_mul(4)?;
        let feed_forward = h.checked_mul(ffn)?.checked_mul(2)?.checked_add(ffn + h)?;
        let layer = attention.checked_add(feed_forward)?.checked_add(4 * h)?;
        let layers = layer.checked_mul(self.num_hidden_layers as u64)?;
        embeddings
            .checked_add(layers)?
            .checked_add(h.checked_mul(h)?.checked_add(h)?)
    }

    /// Checks that the config describes a model that can exist. Each failure names its field.
    pub fn validate(&self) -> Result<()> {
        check_model_type(&self.model_type)?;
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ArchError::InvalidConfig {
                    field,
                    message: "must be positive, found 0".into(),
                });
            }
        }
        // Sizes read from a file are untrusted: bound each one (far above any BERT) and the total, so that a
        // corrupt or hostile config.json is refused before anything is allocated.
        let limits = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("intermediate_size", self.intermediate_size, 4 * MAX_WIDTH),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
            ("type_vocab_size", self.type_vocab_size, MAX_TYPES),
        ];
        for (field, value, max) in limits {
            if value > max {
                return Err(ArchError::InvalidConfig {
                    field,
                    message: format!(
                        "{value} is beyond any BERT (at most {max}); the config.json is corrupt or not a BERT's"
                    ),
                });
            }
        }
        match self.parameter_count() {
            Some(n) if n <= MAX_PARAMETERS => {}
            n => {
                return Err(ArchError::InvalidConfig {
                    field: "hidden_size",
                    message: format!(
                        "the sizes describe {} parameters (at most {MAX_PARAMETERS}); the config.json is corrupt",
                        n.map_or("more than 2^64".to_string(), |n| n.to_string())
                    ),
                });
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ArchError::InvalidConfig {
                field: "hidden_size",
                message: format!(
                    "hidden_size {} is not divisible by num_attention_heads {}; choose sizes where it is (e.g. 384 and 12)",
                    self.hidden_size, self.num_attention_heads
                ),
            });
        }
        self.activation()?;
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(ArchError::InvalidConfig {
                field: "layer_norm_eps",
                message: format!("must be in (0, 1), found {}", self.layer_norm_eps),
            });
        }
        if self.position_embedding_type != "absolute" {
            return Err(ArchError::InvalidConfig {
                field: "position_embedding_type",
                message: format!(
                    "only \"absolute\" is supported, found {:?}",
                    self.position_embedding_type
                ),
            });
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ArchError::InvalidConfig {
                    field,
                    message: format!("must be in [0, 1), found {p}"),
                });
            }
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(ArchError::InvalidConfig {
                field: "pad_token_id",
                message: format!(
                    "{} is outside the vocabulary of {}",
                    self.pad_token_id, self.vocab_size
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"architectures":["BertModel"],"hidden_act":"gelu","hidden_size":384,
        "intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,"model_type":"bert",
        "num_attention_heads":12,"num_hidden_layers":6,"pad_token_id":0,"type_vocab_size":2,"vocab_size":30522,
        "gradient_checkpointing":false}"#;

    #[test]
    fn parses_minilm_config() {
        let c = BertConfig::from_json(MINILM).unwrap();
        assert_eq!(
            (c.hidden_size, c.num_attention_heads, c.head_dim()),
            (384, 12, 32)
        );
        assert_eq!(c.activation().unwrap(), HiddenAct::Gelu);
    }

    #[test]
    fn rejects_hidden_not_divisible_by_heads() {
        let text = MINILM.replace("\"hidden_size\":384", "\"hidden_size\":100");
        let err = BertConfig::from_json(&text).unwrap_err().to_string();
        assert!(
            err.contains("hidden_size") && err.contains("100") && err.contains("12"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn rejects_unknown_activation_and_zero_sizes() {
        let err = BertConfig::from_json(&MINILM.replace("\"gelu\"", "\"swishy\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hidden_act") && err.contains("swishy"),
            "{err}"
        );
        let err = BertConfig::from_json(
            &MINILM.replace("\"num_hidden_layers\":6", "\"num_hidden_layers\":0"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("num_hidden_layers"), "{err}");
    }

    #[test]
    fn rejects_wrong_types_naming_the_field() {
        let err = BertConfig::from_json(&MINILM.replace("384", "\"wide\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hidden_size") || err.contains("invalid type"),
            "{err}"
        );
    }

    #[test]
    fn json_round_trip() {
        let c = BertConfig::from_json(MINILM).unwrap();
        assert_eq!(BertConfig::from_json(&c.to_json()).unwrap(), c);
    }
}
