//! A sentence encoder: tokenizer + encoder + mean pooling, batch by batch.

use std::path::Path;

use burn::tensor::Device;

use crate::error::{ArchError, Result};
use crate::model::{BertInput, BertModel};
use crate::pooling::sentence_embedding;
use crate::tokenizer::BertTokenizer;
use crate::weights::{load_pretrained, LoadReport};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2, used when a directory does not say.
pub const DEFAULT_MAX_LENGTH: usize = 256;

/// Turns sentences into L2-normalised mean-pooled embeddings, as sentence-transformers does.
#[derive(Debug)]
pub struct SentenceEncoder {
    /// The encoder.
    pub model: BertModel,
    /// Its tokenizer.
    pub tokenizer: BertTokenizer,
    /// Where the encoder runs.
    pub device: Device,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included.
    pub max_length: usize,
    /// What loading reported.
    pub report: LoadReport,
}

impl SentenceEncoder {
    /// Loads a Hugging Face BERT directory (weights, config, tokenizer) onto `device`. `max_length` comes from
    /// `sentence_bert_config.json` when present.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (model, report) = load_pretrained(dir, device)?;
        let tokenizer = BertTokenizer::from_dir(dir)?;
        if tokenizer.vocab_size() > model.config.vocab_size {
            return Err(ArchError::InvalidConfig {
                field: "vocab_size",
                message: format!(
                    "the tokenizer {} has {} word pieces but the model's config.json only {}; the tokenizer \
                     belongs to another model",
                    tokenizer.path().display(),
                    tokenizer.vocab_size(),
                    model.config.vocab_size
                ),
            });
        }
        let max_length = max_seq_length(dir, model.config.max_position_embeddings)?;
        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            max_length,
            report,
        })
    }

    /// The batch of `texts`, tokenised, truncated and padded, on this encoder's device.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<BertInput> {
        let ids = self.tokenizer.encode_batch(texts, self.max_length)?;
        BertInput::from_token_ids(
            &ids,
            self.tokenizer.pad_id,
            self.model.config.vocab_size,
            &self.device,
        )
    }

    /// One embedding per text, `batch_size` texts per forward pass.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let batch_size = batch_size.max(1);
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch_size) {
            let input = self.batch(chunk)?;
            let mask = input.attention_mask.clone();
            let output = self.model.try_forward(input)?;
            let emb = sentence_embedding(output.last_hidden_state(), mask);
            let hidden = self.model.config.hidden_size;
            let values = emb
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| ArchError::Data {
                    what: "sentence embeddings".into(),
                    message: format!("{e:?}"),
                })?;
            out.extend(values.chunks(hidden).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

/// `max_seq_length` of `sentence_bert_config.json` ([`DEFAULT_MAX_LENGTH`] without the file, capped at the
/// model's positions); a file that says something else than a length in `2..=max_positions` is an error.
fn max_seq_length(dir: &Path, max_positions: usize) -> Result<usize> {
    let path = dir.join("sentence_bert_config.json");
    if !path.exists() {
        return Ok(DEFAULT_MAX_LENGTH.min(max_positions));
    }
    let bad = |message: String| ArchError::ConfigParse {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ArchError::io("reading", &path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(field) = value.get("max_seq_length") else {
        return Ok(DEFAULT_MAX_LENGTH.min(max_positions));
    };
    let n = field.as_u64().ok_or_else(|| {
        bad(format!(
            "max_seq_length must be a whole number of tokens, found {field}"
        ))
    })?;
    if n < 2 || n > max_positions as u64 {
        return Err(bad(format!(
            "max_seq_length {n} must be in 2..={max_positions} (2 for [CLS] and [SEP], at most the \
             config.json's max_position_embeddings)"
        )));
    }
    Ok(n as usize)
}
