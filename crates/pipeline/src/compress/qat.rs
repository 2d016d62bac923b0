//! Quantization-aware fine-tuning with distillation (Q-BERT's QAT with KD): the classifier is trained through
//! its fake-quantized view (`quant::fake`: the forward sees exactly the weights the file will hold, the backward
//! is straight-through), on the task's training split, with the Hinton loss from the full-precision fine-tuned
//! teacher plus the hard labels. The full-precision weights are what the optimizer updates; they are quantized
//! with the same plan afterwards.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_losses::{LossMixConfig, LossTerms};
use quant::fake::fake_quantize_model;
use quant::QuantPlan;
use serde::{Deserialize, Serialize};
use student_arch::BertInput;

use crate::classifier::{SequenceClassifier, CLASSIFIER_FILE};
use crate::data::labelled::Columns;
use crate::error::{PipelineError, Result};
use crate::eval::evaluate;
use crate::train::{run_stage, StageConfig, StageContext, StageOutcome};

student_arch::config_defaults! {
    /// Settings of quantization-aware fine-tuning.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct QatConfig {
        /// The training stage (epochs, learning rate, ...).
        pub stage: StageConfig = StageConfig {
            epochs: 1,
            learning_rate: 2e-5,
            ..Default::default()
        },
        /// Use at most this many training examples.
        pub max_train_examples: Option<usize> = Some(2400),
        /// Score on at most this many dev examples.
        pub max_dev_examples: Option<usize> = Some(1000),
        /// Temperature of the Hinton term.
        pub temperature: f64 = 1.0,
    }
}

/// The classifier as fake-quantized under `plan` (same parameter ids as `model`).
pub fn fake_quantized(model: &SequenceClassifier, plan: &QuantPlan) -> Result<SequenceClassifier> {
    Ok(SequenceClassifier {
        encoder: fake_quantize_model(&model.encoder, plan)?,
        head: model.head.clone(),
        cls: model.cls,
    })
}

/// Fine-tunes the classifier in `model_dir` through its fake-quantized view under `plan`, with KD from the
/// fine-tuned classifier in `teacher_dir` when given (else hard labels only). Checkpoints go to
/// `work_dir/checkpoints/qat` (resumable). Returns the trained full-precision classifier (on `device`) and the
/// stage's outcome; the best dev score is that of the fake-quantized model.
#[allow(clippy::too_many_arguments)]
pub fn quantization_aware_finetune(
    model_dir: &Path,
    teacher_dir: Option<&Path>,
    plan: &QuantPlan,
    dataset: &str,
    columns: &Columns,
    seed: u64,
    config: &QatConfig,
    work_dir: &Path,
    resume: bool,
    cache: &Path,
    device: &Device,
) -> Result<(SequenceClassifier, StageOutcome)> {
    let (model, meta) = SequenceClassifier::load(model_dir, device)?;
    plan.validate(&model.encoder.config)?;
    let tokenizer = crate::classifier::tokenizer_for(model_dir, &model)?;
    let mut splits = meta.dataset_splits(dataset, columns, seed, cache)?;
    if let Some(n) = config.max_train_examples {
        splits.train.truncate(n);
    }
    if let Some(n) = config.max_dev_examples {
        splits.dev.truncate(n);
    }
    let train = crate::train::encode(&tokenizer, &splits.train, meta.max_length)?;
    let dev = crate::train::encode(&tokenizer, &splits.dev, meta.max_length)?;
    let teacher = qat_teacher(teacher_dir, &meta.labels, device)?;
    let ad = device.clone().autodiff();
    let mix_config = LossMixConfig {
        alpha_ce: if teacher.is_some() { 1.0 } else { 0.0 },
        alpha_label: 1.0,
        temperature: config.temperature,
        seed,
        ..Default::default()
    };
    let hidden = model.encoder.config.hidden_size;
    let mix = mix_config.init(hidden, hidden, &ad)?;
    let student = model.fork(&ad).train();
    // The teacher's logits on the training split, once, each example tokenised by the teacher's own tokenizer:
    // a student whose vocabulary was pruned numbers its word pieces differently.
    let teacher_logits = match (&teacher, teacher_dir) {
        (Some(t), Some(dir)) => {
            let t_tokenizer = crate::classifier::tokenizer_for(dir, t)?;
            let length = meta
                .max_length
                .min(t.encoder.config.max_position_embeddings);
            let t_train = crate::train::encode(&t_tokenizer, &splits.train, length)?;
            Some(crate::predict::logits(
                t,
                &t_train,
                64,
                t_tokenizer.pad_id,
                device,
            )?)
        }
        _ => None,
    };
    drop(teacher);
    let ctx = StageContext {
        name: "qat".into(),
        out_dir: work_dir.to_path_buf(),
        seed,
        resume,
        pad_id: tokenizer.pad_id,
        vocab_size: student.encoder.config.vocab_size,
        device: ad.clone(),
        stop_after: None,
    };
    let labels = meta.labels.len();
    let (trained, outcome) = run_stage(
        &ctx,
        student,
        &train,
        &config.stage,
        |m: &SequenceClassifier,
         input: BertInput,
         y: Tensor<1, Int>,
         indices: &[usize]|
         -> Result<LossTerms> {
            let fq = fake_quantized(m, plan)?;
            let s_logits = fq.forward(input).logits;
            let t_logits = match &teacher_logits {
                Some(all) => {
                    let rows: Vec<f32> = indices
                        .iter()
                        .flat_map(|&i| all[i].iter().copied())
                        .collect();
                    Tensor::<2>::from_data(TensorData::new(rows, [indices.len(), labels]), &ad)
                }
                // No teacher: the Hinton weight is 0 and this stand-in is never used.
                None => s_logits.clone().detach(),
            };
            Ok(mix.forward_logits(s_logits, t_logits, y)?)
        },
        |m: &SequenceClassifier| {
            if dev.is_empty() {
                return Ok(None);
            }
            let fq = fake_quantized(&m.valid(), plan)?;
            Ok(Some(
                evaluate(&fq, &dev, meta.labels.len(), 64, tokenizer.pad_id, device)?.accuracy,
            ))
        },
    )?;
    Ok((trained.valid(), outcome))
}

/// The fine-tuned teacher QAT distils from (its labels must be `labels`); `None` without one.
fn qat_teacher(
    teacher_dir: Option<&Path>,
    labels: &[String],
    device: &Device,
) -> Result<Option<SequenceClassifier>> {
    Ok(match teacher_dir {
        Some(dir) if dir.join(CLASSIFIER_FILE).exists() => {
            let (t, t_meta) = SequenceClassifier::load(dir, device)?;
            if t_meta.labels != labels {
                return Err(PipelineError::Config {
                    field: "teacher",
                    message: format!(
                        "{} was fine-tuned for labels {:?}, the model has {:?}",
                        dir.display(),
                        t_meta.labels,
                        labels
                    ),
                });
            }
            Some(t)
        }
        Some(dir) => {
            return Err(PipelineError::Config {
                field: "teacher",
                message: format!(
                    "{} is not a fine-tuned classifier (no {CLASSIFIER_FILE}); QAT distils from the task's fine-tuned teacher, e.g. runs/distill/teacher",
                    dir.display()
                ),
            })
        }
        None => None,
    })
}
