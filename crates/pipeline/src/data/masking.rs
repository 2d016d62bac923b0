//! BERT's masking for masked-language modelling: each token (or, with whole-word masking, each word) is chosen
//! with probability 15%; a chosen token becomes `[MASK]` 80% of the time, a random token 10% and stays 10%.
//! Masking is dynamic: each batch is masked afresh from a seed, so a passage seen twice is masked differently.

use serde::{Deserialize, Serialize};
use student_arch::model::SeededRng;
use student_arch::BertTokenizer;

use crate::error::{PipelineError, Result};

student_arch::config_defaults! {
    /// How tokens are masked.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct MaskingConfig {
        /// Probability that a token (or word) is chosen.
        pub probability: f64 = 0.15,
        /// Of the chosen, the fraction replaced by `[MASK]`.
        pub mask_fraction: f64 = 0.8,
        /// Of the chosen, the fraction replaced by a random token (the rest stay).
        pub random_fraction: f64 = 0.1,
        /// Choose whole words: every piece of a word (`##` continuations) is masked with its first.
        pub whole_word: bool = false,
    }
}

impl MaskingConfig {
    /// Checks the fractions.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(PipelineError::Config {
                field: "masking",
                message,
            })
        };
        if !(self.probability > 0.0 && self.probability < 1.0) {
            return bad(format!(
                "probability must be in (0, 1), found {}",
                self.probability
            ));
        }
        if !(self.mask_fraction >= 0.0
            && self.random_fraction >= 0.0
            && self.mask_fraction + self.random_fraction <= 1.0)
        {
            return bad(format!(
                "mask_fraction {} + random_fraction {} must be non-negative and at most 1",
                self.mask_fraction, self.random_fraction
            ));
        }
        Ok(())
    }
}

/// What the masker needs to know about the vocabulary.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    /// `[MASK]`.
    pub mask_id: u32,
    /// Ids never chosen: `[CLS]`, `[SEP]`, `[PAD]`.
    pub special: Vec<u32>,
    /// `continuation[id]`: whether the piece continues a word (`##…`).
    pub continuation: Vec<bool>,
    /// Random replacements are drawn from ids whose piece is an ordinary token (not `[…]` or `[unused…]`).
    pub replaceable: Vec<u32>,
}

impl Vocabulary {
    /// Reads the special ids and word-piece continuations of a tokenizer.
    pub fn of(tokenizer: &BertTokenizer) -> Self {
        let n = tokenizer.vocab_size();
        let mut continuation = vec![false; n];
        let mut replaceable = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let piece = tokenizer.id_to_token(id).unwrap_or_default();
            continuation[id as usize] = piece.starts_with("##");
            let special = piece.starts_with('[') && piece.ends_with(']');
            if !special && !piece.is_empty() {
                replaceable.push(id);
            }
        }
        Self {
            mask_id: tokenizer.mask_id,
            special: vec![tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id],
            continuation,
            replaceable,
        }
    }
}

/// A masked batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedBatch {
    /// The sequences with chosen tokens replaced (same lengths as the input).
    pub input_ids: Vec<Vec<u32>>,
    /// Chosen positions as flat indices into `batch_size × seq_length`, where `seq_length` is the longest
    /// sequence (the padded batch the model sees), in order.
    pub positions: Vec<usize>,
    /// The original token at each chosen position: the MLM labels.
    pub labels: Vec<u32>,
}

/// Masks a batch. The same `seed` gives the same masks; at least one token per batch is chosen.
pub fn mask_batch(
    sequences: &[Vec<u32>],
    vocab: &Vocabulary,
    config: &MaskingConfig,
    seed: u64,
) -> Result<MaskedBatch> {
    config.validate()?;
    let seq_length = sequences.iter().map(Vec::len).max().unwrap_or(0);
    let mut rng = SeededRng::new(seed ^ 0x4D41_534B);
    let is_special = |id: u32| vocab.special.contains(&id);
    let is_continuation = |id: u32| {
        config.whole_word
            && vocab
                .continuation
                .get(id as usize)
                .copied()
                .unwrap_or(false)
    };
    // Choose (sequence, position) pairs: per token, or per word with its continuation pieces.
    let mut chosen: Vec<(usize, usize)> = Vec::new();
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    for (b, seq) in sequences.iter().enumerate() {
        let mut t = 0;
        while t < seq.len() {
            if is_special(seq[t]) {
                t += 1;
                continue;
            }
            let mut end = t + 1;
            while end < seq.len() && !is_special(seq[end]) && is_continuation(seq[end]) {
                end += 1;
            }
            candidates.push((b, t));
            if rng.uniform() < config.probability {
                chosen.extend((t..end).map(|p| (b, p)));
            }
            t = end;
        }
    }
    if candidates.is_empty() {
        return Err(PipelineError::Config {
            field: "masking",
            message: "the batch has no maskable tokens (only [CLS]/[SEP]/[PAD])".into(),
        });
    }
    if chosen.is_empty() {
        let (b, t) = candidates[(rng.next_u64() % candidates.len() as u64) as usize];
        let mut end = t + 1;
        while end < sequences[b].len()
            && !is_special(sequences[b][end])
            && is_continuation(sequences[b][end])
        {
            end += 1;
        }
        chosen.extend((t..end).map(|p| (b, p)));
    }
    let mut input_ids = sequences.to_vec();
    let mut positions = Vec::with_capacity(chosen.len());
    let mut labels = Vec::with_capacity(chosen.len());
    for (b, t) in chosen {
        let original = sequences[b][t];
        let u = rng.uniform();
        input_ids[b][t] = if u < config.mask_fraction {
            vocab.mask_id
        } else if u < config.mask_fraction + config.random_fraction && !vocab.replaceable.is_empty()
        {
            vocab.replaceable[(rng.next_u64() % vocab.replaceable.len() as u64) as usize]
        } else {
            original
        };
        positions.push(b * seq_length + t);
        labels.push(original);
    }
    Ok(MaskedBatch {
        input_ids,
        positions,
        labels,
    })
}

/// A seed for one batch's masks from the run's seed and the batch's tokens, so that masks differ between
/// batches and epochs (the batches are reshuffled) yet a resumed run masks exactly as the uninterrupted one.
pub fn batch_seed(seed: u64, sequences: &[Vec<u32>]) -> u64 {
    // FNV-1a over the ids and lengths.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for seq in sequences {
        for &id in seq.iter().chain([&u32::MAX]) {
            h ^= id as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ids: 0 [PAD], 1 [CLS], 2 [SEP], 3 [MASK], 4..50 words, 50..100 `##` pieces.
    fn vocab() -> Vocabulary {
        Vocabulary {
            mask_id: 3,
            special: vec![1, 2, 0],
            continuation: (0..100).map(|i| i >= 50).collect(),
            replaceable: (4..100).collect(),
        }
    }

    fn corpus(n: usize, seed: u64) -> Vec<Vec<u32>> {
        let mut rng = SeededRng::new(seed);
        (0..n)
            .map(|_| {
                let len = 5 + (rng.next_u64() % 20) as usize;
                let mut s = vec![1];
                s.extend((0..len).map(|_| 4 + (rng.next_u64() % 96) as u32));
                s.push(2);
                s
            })
            .collect()
    }

    #[test]
    fn fifteen_percent_chosen_then_80_10_10() {
        let seqs = corpus(400, 1);
        let v = vocab();
        let (mut chosen, mut masked, mut kept, mut total) = (0, 0, 0, 0);
        for (i, batch) in seqs.chunks(8).enumerate() {
            let m = mask_batch(batch, &v, &MaskingConfig::default(), i as u64).unwrap();
            let len = batch.iter().map(Vec::len).max().unwrap();
            total += batch.iter().map(|s| s.len() - 2).sum::<usize>();
            for (&p, &label) in m.positions.iter().zip(&m.labels) {
                let (b, t) = (p / len, p % len);
                assert_eq!(batch[b][t], label, "labels are the original tokens");
                assert!(
                    !v.special.contains(&label),
                    "special tokens are never chosen"
                );
                chosen += 1;
                match m.input_ids[b][t] {
                    3 => masked += 1,
                    x if x == label => kept += 1,
                    _ => {}
                }
            }
            // Unchosen tokens are untouched.
            let mut changed = 0;
            for (b, s) in batch.iter().enumerate() {
                for (t, &id) in s.iter().enumerate() {
                    if m.input_ids[b][t] != id {
                        changed += 1;
                        assert!(m.positions.contains(&(b * len + t)));
                    }
                }
            }
            assert!(changed <= m.positions.len());
        }
        let rate = chosen as f64 / total as f64;
        assert!((rate - 0.15).abs() < 0.015, "chosen {rate}");
        let mask_rate = masked as f64 / chosen as f64;
        assert!((mask_rate - 0.8).abs() < 0.04, "[MASK] {mask_rate}");
        // A random replacement can draw the original token (1 in 96), so kept is a little over 10%.
        let kept_rate = kept as f64 / chosen as f64;
        assert!((kept_rate - 0.101).abs() < 0.03, "kept {kept_rate}");
    }

    #[test]
    fn whole_words_are_masked_together_and_seeds_repeat() {
        // [CLS] w ##a ##b w ##c w [SEP]
        let seqs: Vec<Vec<u32>> = (0..200)
            .map(|_| vec![1, 10, 60, 61, 11, 62, 12, 2])
            .collect();
        let v = vocab();
        let config = MaskingConfig {
            whole_word: true,
            ..Default::default()
        };
        let m = mask_batch(&seqs, &v, &config, 9).unwrap();
        let chosen: std::collections::BTreeSet<usize> = m.positions.iter().copied().collect();
        for b in 0..200 {
            let at = |t: usize| chosen.contains(&(b * 8 + t));
            assert_eq!(at(1), at(2), "sequence {b}: ##a follows its word");
            assert_eq!(at(1), at(3), "sequence {b}: ##b follows its word");
            assert_eq!(at(4), at(5), "sequence {b}: ##c follows its word");
            assert!(!at(0) && !at(7));
        }
        assert_eq!(m, mask_batch(&seqs, &v, &config, 9).unwrap());
        assert_ne!(m, mask_batch(&seqs, &v, &config, 10).unwrap());
    }

    #[test]
    fn a_batch_always_has_a_masked_token_and_bad_configs_fail() {
        let v = vocab();
        let m = mask_batch(&[vec![1, 7, 2]], &v, &MaskingConfig::default(), 0).unwrap();
        assert_eq!(m.positions, vec![1]);
        assert!(mask_batch(&[vec![1, 2]], &v, &MaskingConfig::default(), 0).is_err());
        let bad = MaskingConfig {
            mask_fraction: 0.95,
            ..Default::default()
        };
        let err = mask_batch(&[vec![1, 7, 2]], &v, &bad, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("masking"), "{err}");
    }
}
