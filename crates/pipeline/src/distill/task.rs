//! Task distillation: the stages of each method with their loss mixes, and the loss of one step (what
//! `cargo xtask bench` times).

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use kd_losses::{DistillInputs, LayerMap, Logits, LossMixConfig, LossTerms};
use student_arch::BertInput;

use crate::classifier::SequenceClassifier;
use crate::config::{DistillConfig, LossTerm, Method};
use crate::error::Result;
use crate::train::StageConfig;

/// The task-distillation stages of `config.method`, in order: name, loss mix and stage settings. TinyBERT's
/// intermediate stage is left out when the ablation removed all of its terms.
pub fn task_phases(config: &DistillConfig) -> Vec<(&'static str, LossMixConfig, &StageConfig)> {
    match config.method {
        Method::Tinybert => {
            let drop = &config.drop_terms;
            let intermediate = LossTerm::apply(
                &LossMixConfig {
                    attention_target: config.attention_target,
                    ..LossMixConfig::tinybert_intermediate()
                },
                drop,
                config.seed,
            );
            let mut prediction = LossTerm::apply(
                &LossMixConfig {
                    temperature: config.temperature,
                    ..LossMixConfig::tinybert_prediction()
                },
                drop,
                config.seed,
            );
            if prediction.alpha_pred == 0.0 {
                // Without prediction-layer distillation the classifier still has to learn: hard labels.
                prediction.alpha_label = 1.0;
            }
            let mut phases = Vec::new();
            if intermediate.validate().is_ok() {
                phases.push(("tinybert-intermediate", intermediate, &config.intermediate));
            }
            phases.push(("tinybert-prediction", prediction, &config.prediction));
            phases
        }
        Method::Distilbert => vec![(
            "distilbert-task",
            LossMixConfig {
                alpha_ce: 1.0,
                alpha_label: 1.0,
                alpha_cos: 1.0,
                temperature: config.temperature.max(1.0),
                seed: config.seed,
                ..Default::default()
            },
            &config.prediction,
        )],
    }
}

/// The loss of one task-distillation step (TinyBERT's intermediate or prediction stage, or DistilBERT's task
/// stage, as `m.mix` weighs its terms): the teacher's forward pass on its own device without a graph, then the
/// student's forward pass and every term of the mix. `cargo xtask bench` times exactly this.
pub fn task_distill_loss(
    teacher: &SequenceClassifier,
    m: &StudentWithMix,
    input: BertInput,
    class_labels: Tensor<1, Int>,
    map: &LayerMap,
) -> Result<LossTerms> {
    let plain = teacher.head.weight.val().device();
    let plain_input = BertInput {
        input_ids: Tensor::<2, Int>::from_data(input.input_ids.to_data(), &plain),
        attention_mask: Tensor::<2, Int>::from_data(input.attention_mask.to_data(), &plain),
        token_type_ids: None,
    };
    let t_out = teacher.forward(plain_input);
    let mask = input.attention_mask.clone();
    let s_out = m.student.forward(input);
    Ok(m.mix.forward(DistillInputs {
        student: &s_out.encoder,
        teacher: &t_out.encoder,
        student_logits: Some(Logits::PerSequence(s_out.logits)),
        teacher_logits: Some(Logits::PerSequence(t_out.logits)),
        mlm_labels: None,
        class_labels: Some(class_labels),
        attention_mask: mask,
        layer_map: map,
    })?)
}

/// The loss of one step of a stage whose mix needs only the teacher's logits (see
/// [`LossMixConfig::needs_teacher_states`]), with the teacher's logits of every training example computed
/// ahead (`all[i]` for example `i`; `indices` are the batch's examples).
pub fn cached_logit_loss(
    m: &StudentWithMix,
    all: &[Vec<f32>],
    input: BertInput,
    class_labels: Tensor<1, Int>,
    indices: &[usize],
) -> Result<LossTerms> {
    let device = class_labels.device();
    let num_labels = all.first().map_or(0, Vec::len);
    let rows: Vec<f32> = indices
        .iter()
        .flat_map(|&i| all[i].iter().copied())
        .collect();
    let teacher_logits = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(rows, [indices.len(), num_labels]),
        &device,
    );
    let s_out = m.student.forward(input);
    Ok(m.mix
        .forward_logits(s_out.logits, teacher_logits, class_labels)?)
}

/// The student and the loss mix (with W_h, W_e) trained together.
#[derive(Module, Debug)]
pub struct StudentWithMix {
    /// The student classifier.
    pub student: SequenceClassifier,
    /// The loss mix and its projections.
    pub mix: kd_losses::LossMix,
}
