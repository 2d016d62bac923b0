//! Scoring a classifier: accuracy, macro-F1, and the latency of one batch.

use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::classifier::{host, SequenceClassifier};
use crate::config::SplitConfig;
use crate::error::Result;
use crate::train::{batch_input, Encoded};

/// Accuracy and macro-F1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Fraction correct.
    pub accuracy: f64,
    /// Mean over classes of F1.
    pub macro_f1: f64,
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

/// Predicted class of each example.
pub fn predict(
    model: &SequenceClassifier,
    data: &[Encoded],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<Vec<usize>> {
    Ok(logits(model, data, batch_size, pad_id, device)?
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(0, |best, (k, v)| if *v > row[best] { k } else { best })
        })
        .collect())
}

/// Accuracy and macro-F1 from predictions.
pub fn scores(predicted: &[usize], gold: &[usize], num_labels: usize) -> Scores {
    let correct = predicted.iter().zip(gold).filter(|(p, g)| p == g).count();
    let mut f1 = 0.0;
    for c in 0..num_labels {
        let tp = predicted
            .iter()
            .zip(gold)
            .filter(|(p, g)| **p == c && **g == c)
            .count() as f64;
        let fp = predicted
            .iter()
            .zip(gold)
            .filter(|(p, g)| **p == c && **g != c)
            .count() as f64;
        let fn_ = predicted
            .iter()
            .zip(gold)
            .filter(|(p, g)| **p != c && **g == c)
            .count() as f64;
        f1 += if tp == 0.0 {
            0.0
        } else {
            2.0 * tp / (2.0 * tp + fp + fn_)
        };
    }
    Scores {
        accuracy: correct as f64 / gold.len().max(1) as f64,
        macro_f1: f1 / num_labels.max(1) as f64,
    }
}

/// Scores `model` on `data`.
pub fn evaluate(
    model: &SequenceClassifier,
    data: &[Encoded],
    num_labels: usize,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<Scores> {
    let predicted = predict(model, data, batch_size, pad_id, device)?;
    let gold: Vec<usize> = data.iter().map(|e| e.label).collect();
    Ok(scores(&predicted, &gold, num_labels))
}

/// Median milliseconds of one forward pass over the first `batch_size` examples (5 timed runs after 1 warm-up).
pub fn latency_ms(
    model: &SequenceClassifier,
    data: &[Encoded],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<f64> {
    let batch: Vec<&Encoded> = data.iter().take(batch_size.max(1)).collect();
    if batch.is_empty() {
        return Ok(0.0);
    }
    let (input, _) = batch_input(&batch, pad_id, model.encoder.config.vocab_size, device)?;
    let mut times = Vec::new();
    for i in 0..6 {
        let start = Instant::now();
        host(model.forward(input.clone()).logits)?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_macro_f1_by_hand() {
        // gold 0 0 1 1 2, predicted 0 1 1 1 0: class 0 F1 = 2/(2+1+1)=0.5, class 1 F1 = 4/(4+1)=0.8, class 2 F1 = 0.
        let s = scores(&[0, 1, 1, 1, 0], &[0, 0, 1, 1, 2], 3);
        assert!((s.accuracy - 0.6).abs() < 1e-12);
        assert!((s.macro_f1 - (0.5 + 0.8) / 3.0).abs() < 1e-12);
    }
}

/// What `cargo xtask eval` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// The model directory.
    pub model: String,
    /// The dataset.
    pub dataset: String,
    /// Examples scored.
    pub examples: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-F1.
    pub macro_f1: f64,
}

/// Scores a classifier saved by the pipeline: on the test split (same seed and fractions as `distill`'s
/// default) of a built-in dataset, or on all of a file.
pub fn evaluate_saved(
    dir: &std::path::Path,
    dataset: &str,
    columns: &crate::data::labelled::Columns,
    seed: u64,
    cache: &std::path::Path,
    device: &Device,
) -> Result<EvalResult> {
    let (model, meta) = SequenceClassifier::load(dir, device)?;
    let tokenizer = crate::classifier::tokenizer_for(dir, &model)?;
    let data = crate::data::labelled::load_dataset(dataset, columns, Some(&meta.labels), cache)?;
    let examples = if crate::data::labelled::BUILT_IN.contains(&dataset) {
        SplitConfig::default().split(&data.examples, seed)?.test
    } else {
        data.examples
    };
    let encoded = crate::train::encode(&tokenizer, &examples, meta.max_length)?;
    let s = evaluate(
        &model,
        &encoded,
        meta.labels.len(),
        64,
        tokenizer.pad_id,
        device,
    )?;
    Ok(EvalResult {
        model: dir.display().to_string(),
        dataset: dataset.into(),
        examples: encoded.len(),
        accuracy: s.accuracy,
        macro_f1: s.macro_f1,
    })
}
