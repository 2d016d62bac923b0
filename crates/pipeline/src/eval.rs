//! Scoring a classifier: accuracy, macro-F1, and the latency of one batch.

use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::classifier::{host, SequenceClassifier};
use crate::error::Result;
use crate::predict::{argmax, logits, Engine, Predictor};
use crate::train::{batch_input, Encoded};

/// Accuracy and macro-F1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Fraction correct.
    pub accuracy: f64,
    /// Mean over classes of F1.
    pub macro_f1: f64,
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
        .map(|row| argmax(row))
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
/// Which examples `eval` scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The test split that `distill` holds out with the same seed (never rows used for training).
    #[default]
    Test,
    /// Every row (a file held out as a whole).
    All,
}

impl std::str::FromStr for EvalSplit {
    type Err = crate::error::PipelineError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "test" => Ok(Self::Test),
            "all" => Ok(Self::All),
            other => Err(crate::error::PipelineError::Config {
                field: "split",
                message: format!("{other:?}: expected test or all"),
            }),
        }
    }
}

/// What `cargo xtask eval` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// The model directory.
    pub model: String,
    /// The dataset.
    pub dataset: String,
    /// The examples scored (`test` split or `all`).
    pub split: EvalSplit,
    /// Examples scored.
    pub examples: usize,
    /// The forward pass that scored them: `integer` (a quantized directory's kernels) or `dequantized` (Burn).
    pub engine: String,
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-F1.
    pub macro_f1: f64,
    /// For a quantized directory scored on the integer kernels: the same examples on Burn with the dequantized
    /// weights, beside it.
    pub dequantized: Option<Scores>,
}

/// Scores a classifier saved by the pipeline on the test split of `dataset` (the split `distill` holds out with
/// the same `seed`), with the default engine (the integer kernels for a quantized directory, with the
/// dequantized figure beside it). See [`evaluate_dir`] for the other choices.
pub fn evaluate_saved(
    dir: &std::path::Path,
    dataset: &str,
    columns: &crate::data::labelled::Columns,
    seed: u64,
    cache: &std::path::Path,
    device: &Device,
) -> Result<EvalResult> {
    evaluate_dir(
        dir,
        dataset,
        columns,
        seed,
        EvalSplit::Test,
        None,
        cache,
        device,
    )
}

/// The rows of `split` of `dataset` that the classifier in `dir` is scored on (`Test`: the split its training run
/// held out, recorded in its `classifier.json`, else drawn with `seed`), with labels as indices into `labels`.
pub fn split_examples(
    dir: &std::path::Path,
    dataset: &str,
    columns: &crate::data::labelled::Columns,
    seed: u64,
    split: EvalSplit,
    labels: &[String],
    cache: &std::path::Path,
) -> Result<Vec<crate::data::labelled::Example>> {
    let data = crate::data::tasks::load_dataset(dataset, columns, Some(labels), cache)?;
    Ok(match split {
        EvalSplit::Test => {
            let (meta, _) = crate::classifier::ClassifierMeta::read(dir)?;
            let (seed, fractions) = meta.split_for(dataset, seed);
            fractions.split(&data.examples, seed)?.test
        }
        EvalSplit::All => data.examples,
    })
}

/// Scores the classifier in `dir` on `split` of `dataset` with `engine` (`None`: the integer kernels for a
/// quantized directory, Burn otherwise; a quantized directory scored on its kernels also gets the dequantized
/// figure).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_dir(
    dir: &std::path::Path,
    dataset: &str,
    columns: &crate::data::labelled::Columns,
    seed: u64,
    split: EvalSplit,
    engine: Option<Engine>,
    cache: &std::path::Path,
    device: &Device,
) -> Result<EvalResult> {
    let predictor = Predictor::load(dir, device, engine)?;
    let labels = predictor.labels().to_vec();
    let examples = split_examples(dir, dataset, columns, seed, split, &labels, cache)?;
    let encoded = crate::train::encode(predictor.tokenizer(), &examples, predictor.max_length())?;
    let gold: Vec<usize> = encoded.iter().map(|e| e.label).collect();
    let score = |p: &Predictor| -> Result<Scores> {
        let predicted: Vec<usize> = p.logits(&encoded, 64)?.iter().map(|r| argmax(r)).collect();
        Ok(scores(&predicted, &gold, labels.len()))
    };
    let main = score(&predictor)?;
    let dequantized = if predictor.engine() == Engine::Integer {
        Some(score(&Predictor::load(
            dir,
            device,
            Some(Engine::Dequantized),
        )?)?)
    } else {
        None
    };
    Ok(EvalResult {
        model: dir.display().to_string(),
        dataset: dataset.into(),
        split,
        examples: encoded.len(),
        engine: predictor.engine().name().into(),
        accuracy: main.accuracy,
        macro_f1: main.macro_f1,
        dequantized,
    })
}
