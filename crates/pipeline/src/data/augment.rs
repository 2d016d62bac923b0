//! TinyBERT's data augmentation: for each training sentence, `variants` copies in which each word is replaced,
//! with probability `probability`, by one of the teacher's `top_k` masked-language-model predictions for it.
//!
//! Words are BERT's basic tokens (whitespace, then punctuation split off). As in TinyBERT, a word that is a
//! single word piece draws its replacements from the teacher's masked-language-model predictions, from the
//! sentence with that one word masked. TinyBERT replaces longer words by their GloVe nearest neighbours; we ship
//! no GloVe, so a word of several pieces takes the `top_k` whole words of the vocabulary nearest to it (cosine)
//! in the teacher's own embedding of a word: the encoder run on `[CLS] word [SEP]` alone, its pieces' last
//! hidden states averaged (the mean pooling all-MiniLM-L6-v2 is trained for). The teacher's input embedding
//! table was tried first: the mean of a word's piece vectors sits next to word fragments ("unbelievably" →
//! "un", "und", "una"), not words.

use std::collections::HashSet;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::model::SeededRng;
use student_arch::{BertInput, BertModel, BertTokenizer, MlmHead};

use crate::data::labelled::Example;
use crate::error::{io_err, PipelineError, Result};
use crate::train::progress::Progress;

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
    let whole_words = whole_word_ids(tokenizer);
    neighbours_of_multi_piece_words(
        sentences,
        tokenizer,
        teacher,
        &whole_words,
        top_k,
        device,
        &mut out,
    )?;
    // One step a batch of 64 masked sentences: a bar on a terminal, a line every 30 s otherwise.
    let mut progress = Progress::start("augment", jobs.len().div_ceil(64), 0);
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
            out[*si][*wi] = best_tokens(
                &whole_words,
                |i| row[whole_words[i] as usize],
                top_k,
                tokenizer,
                &original,
            );
        }
        progress.step(batch.len() * seq_length, &[]);
    }
    progress.finish();
    Ok(out)
}

/// The vocabulary's whole words: alphabetic pieces that are neither continuations (`##…`) nor special.
fn whole_word_ids(tokenizer: &BertTokenizer) -> Vec<u32> {
    (0..tokenizer.vocab_size() as u32)
        .filter(|&id| {
            tokenizer.id_to_token(id).is_some_and(|t| {
                let special = t.starts_with('[') && t.ends_with(']');
                !t.starts_with("##") && !special && t.chars().all(char::is_alphabetic)
            })
        })
        .collect()
}

/// The `top_k` of `ids` with the highest `score(i)` (the score of `ids[i]`), best first, as tokens, with
/// `exclude` (the word being replaced) left out.
fn best_tokens(
    ids: &[u32],
    score: impl Fn(usize) -> f32,
    top_k: usize,
    tokenizer: &BertTokenizer,
    exclude: &str,
) -> Vec<String> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    // One more than needed, in case `exclude` is among them.
    let k = (top_k + 1).min(order.len());
    if k == 0 {
        return Vec::new();
    }
    order.select_nth_unstable_by(k - 1, |&a, &c| score(c).total_cmp(&score(a)));
    order.truncate(k);
    order.sort_by(|&a, &c| score(c).total_cmp(&score(a)));
    order
        .into_iter()
        .filter_map(|i| tokenizer.id_to_token(ids[i]))
        .filter(|t| t != exclude)
        .take(top_k)
        .collect()
}

/// The word pieces of one word without `[CLS]`/`[SEP]`, when it splits into more than one known piece.
fn pieces(tokenizer: &BertTokenizer, word: &str) -> Option<Vec<u32>> {
    let ids = tokenizer.encode(word, 64).ok()?;
    let inner = ids.get(1..ids.len().checked_sub(1)?)?.to_vec();
    (inner.len() > 1 && !inner.contains(&tokenizer.unk_id)).then_some(inner)
}

/// The teacher's embedding of each word given as its pieces: `[CLS] pieces [SEP]` through the encoder, the
/// pieces' last hidden states averaged, scaled to unit length. `[words, hidden]`.
fn word_vectors(
    words: &[Vec<u32>],
    tokenizer: &BertTokenizer,
    teacher: &BertModel,
    device: &Device,
) -> Result<Tensor<2>> {
    let mut parts = Vec::new();
    for chunk in words.chunks(512) {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| [&[tokenizer.cls_id][..], p, &[tokenizer.sep_id]].concat())
            .collect();
        let seq_length = seqs.iter().map(Vec::len).max().unwrap_or(0);
        // 1 on each word's pieces, 0 on [CLS], [SEP] and padding.
        let weights: Vec<f32> = chunk
            .iter()
            .flat_map(|p| {
                (0..seq_length).map(move |i| {
                    if (1..=p.len()).contains(&i) {
                        1.0 / p.len() as f32
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let weights = Tensor::<3>::from_data(
            TensorData::new(weights, [chunk.len(), seq_length, 1]),
            device,
        );
        let input =
            BertInput::from_token_ids(&seqs, tokenizer.pad_id, tokenizer.vocab_size(), device)?;
        let hidden = teacher.forward(input).last_hidden_state();
        let pooled = (hidden * weights).sum_dim(1).squeeze_dim::<2>(1);
        parts.push(student_arch::pooling::l2_normalize(pooled));
    }
    Ok(Tensor::cat(parts, 0))
}

/// For every alphabetic word of several word pieces: the `top_k` usable whole words nearest to it (cosine of
/// [`word_vectors`]), written into `out[s][w]`.
fn neighbours_of_multi_piece_words(
    sentences: &[Vec<String>],
    tokenizer: &BertTokenizer,
    teacher: &BertModel,
    candidates: &[u32],
    top_k: usize,
    device: &Device,
    out: &mut [Vec<Vec<String>>],
) -> Result<()> {
    // Each distinct multi-piece word once, with where it occurs.
    let mut words: Vec<(String, Vec<u32>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut places: Vec<(usize, usize, usize)> = Vec::new();
    for (si, sentence) in sentences.iter().enumerate() {
        for (wi, word) in sentence.iter().enumerate() {
            let lower = word.to_lowercase();
            if !word.chars().all(char::is_alphabetic) || tokenizer.token_to_id(&lower).is_some() {
                continue;
            }
            let k = match index.get(&lower) {
                Some(k) => *k,
                None => match pieces(tokenizer, &lower) {
                    Some(ids) => {
                        index.insert(lower.clone(), words.len());
                        words.push((lower, ids));
                        words.len() - 1
                    }
                    None => continue,
                },
            };
            places.push((si, wi, k));
        }
    }
    if words.is_empty() || top_k == 0 {
        return Ok(());
    }
    eprintln!(
        "augment: nearest whole words of {} word(s) of several pieces, against {} words of the vocabulary",
        words.len(),
        candidates.len()
    );
    // The vocabulary's whole words, each on its own.
    let vocabulary = word_vectors(
        &candidates.iter().map(|id| vec![*id]).collect::<Vec<_>>(),
        tokenizer,
        teacher,
        device,
    )?;
    let queries = word_vectors(
        &words.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        tokenizer,
        teacher,
        device,
    )?;
    let n = candidates.len();
    let scores: Vec<f32> = queries
        .matmul(vocabulary.transpose())
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PipelineError::Config {
            field: "augment",
            message: format!("reading word similarities: {e:?}"),
        })?;
    let nearest: Vec<Vec<String>> = words
        .iter()
        .enumerate()
        .map(|(q, (word, _))| {
            let row = &scores[q * n..(q + 1) * n];
            best_tokens(candidates, |i| row[i], top_k, tokenizer, word)
        })
        .collect();
    for (si, wi, k) in places {
        out[si][wi] = nearest[k].clone();
    }
    Ok(())
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

#[cfg(test)]
mod neighbour_tests {
    use super::*;

    /// Words of several pieces get replacements now: whole words near them in the real teacher's embedding of
    /// a word alone — for "unbelievably" (5 pieces) adverbs of the same meaning, checked against a hand-picked
    /// set — never the word itself nor a fragment; single-piece words are left to the MLM.
    #[test]
    fn multi_piece_words_get_embedding_neighbours() {
        let dir = std::path::PathBuf::from(
            std::env::var_os("BERT_COMPRESS_TEACHER")
                .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`"),
        );
        let device = Device::flex();
        let (teacher, _) = student_arch::load_pretrained(&dir, &device).unwrap();
        let tokenizer = BertTokenizer::from_dir(&dir).unwrap();
        let sentences: Vec<Vec<String>> = [["an", "unbelievably", "good", "film"]]
            .iter()
            .map(|s| s.iter().map(|w| w.to_string()).collect())
            .collect();
        let pieces_of = pieces(&tokenizer, "unbelievably").expect("several pieces");
        let mut out = vec![vec![Vec::new(); 4]];
        neighbours_of_multi_piece_words(
            &sentences,
            &tokenizer,
            &teacher,
            &whole_word_ids(&tokenizer),
            8,
            &device,
            &mut out,
        )
        .unwrap();
        let near = &out[0][1];
        assert_eq!(near.len(), 8, "{near:?}");
        let synonyms = [
            "incredibly",
            "unbelievable",
            "remarkably",
            "amazingly",
            "astonishingly",
            "extraordinarily",
            "incredible",
            "unbelievably",
        ];
        assert!(
            near.iter().take(3).any(|w| synonyms.contains(&w.as_str())),
            "{near:?}"
        );
        assert!(
            near.iter()
                .all(|w| w != "unbelievably" && !w.starts_with("##")),
            "{near:?}"
        );
        for (w, got) in [0, 2, 3].iter().map(|w| (*w, &out[0][*w])) {
            assert!(got.is_empty(), "word {w} is one piece: {got:?}");
        }
        eprintln!("unbelievably ({pieces_of:?}) → {near:?}");
    }
}
