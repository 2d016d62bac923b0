//! TinyBERT's data augmentation: for each training sentence, `variants` copies in which each word is replaced,
//! with probability `probability`, by one of the teacher's `top_k` masked-language-model predictions for it.
//!
//! Words are BERT's basic tokens (whitespace, then punctuation split off). As in TinyBERT, a word is a
//! candidate when it is a single word piece; TinyBERT replaces longer words by GloVe neighbours, which need word
//! vectors we do not ship, so those words stay. The teacher's predictions for a word come from the sentence with
//! that one word masked.

use std::collections::HashSet;
use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::model::SeededRng;
use student_arch::{BertInput, BertModel, BertTokenizer, MlmHead};

use crate::data::labelled::Example;
use crate::error::{io_err, PipelineError, Result};

student_arch::config_defaults! {
    /// How the training set is augmented.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct AugmentConfig {
        /// Variants per sentence (N).
        pub variants: usize = 20,
        /// Probability that a candidate word is replaced (p).
        pub probability: f64 = 0.4,
        /// Predictions a replacement is drawn from (K).
        pub top_k: usize = 15,
    }
}

impl AugmentConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.variants == 0 || self.top_k == 0 {
            return Err(PipelineError::Config {
                field: "augment",
                message: format!(
                    "variants ({}) and top_k ({}) must be positive",
                    self.variants, self.top_k
                ),
            });
        }
        if !(self.probability > 0.0 && self.probability <= 1.0) {
            return Err(PipelineError::Config {
                field: "augment",
                message: format!("probability must be in (0, 1], found {}", self.probability),
            });
        }
        Ok(())
    }
}

/// BERT's basic tokens: split on whitespace, then every punctuation character is a token of its own.
pub fn basic_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in text.split_whitespace() {
        let mut word = String::new();
        for c in chunk.chars() {
            if c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace()) {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// The teacher's replacement candidates for every candidate word of each sentence: `out[s][w]` is empty for a
/// word that is not a candidate.
fn candidates(
    sentences: &[Vec<String>],
    tokenizer: &BertTokenizer,
    teacher: &BertModel,
    head: &MlmHead,
    top_k: usize,
    max_length: usize,
    device: &Device,
) -> Result<Vec<Vec<Vec<String>>>> {
    // Every (sentence, word) to predict, as the sentence with that word masked.
    let mut jobs: Vec<(usize, usize, Vec<u32>, usize)> = Vec::new();
    let mut out: Vec<Vec<Vec<String>>> = sentences
        .iter()
        .map(|s| vec![Vec::new(); s.len()])
        .collect();
    for (si, words) in sentences.iter().enumerate() {
        for (wi, word) in words.iter().enumerate() {
            let lower = word.to_lowercase();
            if !word.chars().all(char::is_alphabetic) || tokenizer.token_to_id(&lower).is_none() {
                continue;
            }
            let mut masked = words.clone();
            masked[wi] = "[MASK]".into();
            let ids = tokenizer.encode(&masked.join(" "), max_length)?;
            if let Some(pos) = ids.iter().position(|&id| id == tokenizer.mask_id) {
                jobs.push((si, wi, ids, pos));
            }
        }
    }
    let vocab = tokenizer.vocab_size();
    let usable: Vec<bool> = (0..vocab as u32)
        .map(|id| {
            tokenizer.id_to_token(id).is_some_and(|t| {
                let special = t.starts_with('[') && t.ends_with(']');
                !t.starts_with("##") && !special && t.chars().all(char::is_alphabetic)
            })
        })
        .collect();
    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    bar.set_prefix("augment");
    for batch in jobs.chunks(64) {
        let seqs: Vec<Vec<u32>> = batch.iter().map(|j| j.2.clone()).collect();
        let seq_length = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let positions: Vec<usize> = batch
            .iter()
            .enumerate()
            .map(|(b, j)| b * seq_length + j.3)
            .collect();
        let input = BertInput::from_token_ids(&seqs, tokenizer.pad_id, vocab, device)?;
        let hidden = teacher.forward(input).last_hidden_state();
        let h = student_arch::gather_positions(hidden, &positions)?;
        let logits: Vec<f32> = head
            .forward(h, teacher.embeddings.word_embeddings.weight.val())
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| PipelineError::Config {
                field: "augment",
                message: format!("reading logits: {e:?}"),
            })?;
        for (b, (si, wi, _, _)) in batch.iter().enumerate() {
            let row = &logits[b * vocab..(b + 1) * vocab];
            let original = sentences[*si][*wi].to_lowercase();
            let mut order: Vec<usize> = (0..vocab).filter(|&id| usable[id]).collect();
            let k = (top_k + 1).min(order.len());
            order.select_nth_unstable_by(k.saturating_sub(1), |&a, &c| row[c].total_cmp(&row[a]));
            order.truncate(k);
            order.sort_by(|&a, &c| row[c].total_cmp(&row[a]));
            out[*si][*wi] = order
                .into_iter()
                .filter_map(|id| tokenizer.id_to_token(id as u32))
                .filter(|t| *t != original)
                .take(top_k)
                .collect();
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// The training examples followed by their variants (duplicates of a sentence or of an earlier variant are
/// dropped). Same seed, same variants.
#[allow(clippy::too_many_arguments)]
pub fn augment(
    examples: &[Example],
    tokenizer: &BertTokenizer,
    teacher: &BertModel,
    head: &MlmHead,
    config: &AugmentConfig,
    max_length: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Example>> {
    config.validate()?;
    let sentences: Vec<Vec<String>> = examples.iter().map(|e| basic_tokens(&e.text)).collect();
    let cands = candidates(
        &sentences,
        tokenizer,
        teacher,
        head,
        config.top_k,
        max_length,
        device,
    )?;
    let mut rng = SeededRng::new(seed ^ 0xA06_3E47);
    let mut out = examples.to_vec();
    for ((example, words), options) in examples.iter().zip(&sentences).zip(&cands) {
        let mut seen: HashSet<String> = HashSet::from([words.join(" ")]);
        for _ in 0..config.variants {
            let variant: Vec<&str> = words
                .iter()
                .zip(options)
                .map(|(w, opts)| {
                    if !opts.is_empty() && rng.uniform() < config.probability {
                        opts[(rng.next_u64() % opts.len() as u64) as usize].as_str()
                    } else {
                        w.as_str()
                    }
                })
                .collect();
            let text = variant.join(" ");
            if seen.insert(text.clone()) {
                out.push(Example {
                    text,
                    label: example.label,
                });
            }
        }
    }
    Ok(out)
}

/// Writes augmented examples as JSON lines (`{"text": …, "label": …}`), atomically.
pub fn save_augmented(path: &Path, examples: &[Example]) -> Result<()> {
    let mut text = String::new();
    for e in examples {
        text += &serde_json::to_string(e).expect("example serialises");
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(Into::into)
}

/// Reads what `save_augmented` wrote (`augmented.jsonl` of a run).
pub fn load_augmented(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| PipelineError::Data {
                path: path.to_path_buf(),
                line: Some(i as u64 + 1),
                message: format!("{e}; delete the file to augment again"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_tokens_split_punctuation() {
        assert_eq!(
            basic_tokens("A film's charm, (mostly) wasted!"),
            vec!["A", "film", "'", "s", "charm", ",", "(", "mostly", ")", "wasted", "!"]
        );
    }
}
