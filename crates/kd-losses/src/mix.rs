//! The loss mix: named weights, every term computed only when its weight is non-zero, and a struct of named
//! terms plus the weighted total, so that logs and ablations need no extra code.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};
use student_arch::BertOutput;

use crate::cosine::cosine_embedding_loss;
use crate::error::{LossError, Result};
use crate::hard_label::{classification_cross_entropy, mlm_cross_entropy, IGNORE_INDEX};
use crate::layer_map::LayerMap;
use crate::mse::{attention_mse, AttentionTarget, ProjectedMse, ProjectedMseConfig, Projection};
use crate::soft_target::{SoftCrossEntropyLoss, SoftTargetLoss};

student_arch::config_defaults! {
    /// The weights of the mix. A weight of 0 removes its term and skips its computation.
    ///
    /// DistilBERT's triple loss: `alpha_ce` (Hinton), `alpha_mlm`, `alpha_cos`. TinyBERT: `alpha_emb`, `alpha_att`,
    /// `alpha_hidden` (intermediate), then `alpha_pred` (prediction layer). `alpha_label` is the hard-label
    /// cross-entropy of sequence classification.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct LossMixConfig {
        /// Hinton soft-target KL, times T².
        pub alpha_ce: f64 = 0.0,
        /// MLM cross-entropy on masked positions.
        pub alpha_mlm: f64 = 0.0,
        /// Hard-label classification cross-entropy.
        pub alpha_label: f64 = 0.0,
        /// Cosine embedding loss on the last hidden states.
        pub alpha_cos: f64 = 0.0,
        /// Embedding-layer MSE through W_e.
        pub alpha_emb: f64 = 0.0,
        /// Attention MSE summed over the mapped layers.
        pub alpha_att: f64 = 0.0,
        /// Hidden-state MSE through W_h summed over the mapped layers.
        pub alpha_hidden: f64 = 0.0,
        /// TinyBERT prediction-layer soft cross-entropy.
        pub alpha_pred: f64 = 0.0,
        /// Softmax temperature of `ce` and `pred`.
        pub temperature: f64 = 2.0,
        /// What the attention loss compares.
        pub attention_target: AttentionTarget = AttentionTarget::Probs,
        /// Whether padding tokens are excluded from the cos, emb, hidden and att terms.
        pub mask_padding: bool = true,
        /// Whether W_h and W_e exist even when the widths match.
        pub projection: Projection = Projection::Auto,
        /// Seed of the initial W_h and W_e (same seed, same projections, on any device).
        pub seed: u64 = 0,
    }
}

impl LossMixConfig {
    /// DistilBERT's pre-training mix: 5·CE + 2·MLM + 1·cos at T = 2 (the weights of its training script).
    pub fn distilbert() -> Self {
        Self {
            alpha_ce: 5.0,
            alpha_mlm: 2.0,
            alpha_cos: 1.0,
            ..Self::default()
        }
    }

    /// TinyBERT's intermediate-layer stage: embedding + attention + hidden.
    pub fn tinybert_intermediate() -> Self {
        Self {
            alpha_emb: 1.0,
            alpha_att: 1.0,
            alpha_hidden: 1.0,
            ..Self::default()
        }
    }

    /// TinyBERT's prediction-layer stage at T = 1.
    pub fn tinybert_prediction() -> Self {
        Self {
            alpha_pred: 1.0,
            temperature: 1.0,
            ..Self::default()
        }
    }

    fn weights(&self) -> [(&'static str, f64); 8] {
        [
            ("ce", self.alpha_ce),
            ("mlm", self.alpha_mlm),
            ("label", self.alpha_label),
            ("cos", self.alpha_cos),
            ("emb", self.alpha_emb),
            ("att", self.alpha_att),
            ("hidden", self.alpha_hidden),
            ("pred", self.alpha_pred),
        ]
    }

    /// Whether a term needs the teacher's hidden states or attention (cos, emb, att, hidden) or per-token
    /// logits (mlm). A mix that needs none of them (ce, pred, label only) can be fed teacher logits computed
    /// once, ahead of training, through [`LossMix::forward_logits`].
    pub fn needs_teacher_states(&self) -> bool {
        [
            self.alpha_mlm,
            self.alpha_cos,
            self.alpha_emb,
            self.alpha_att,
            self.alpha_hidden,
        ]
        .iter()
        .any(|&w| w != 0.0)
    }

    /// Checks weights (finite, ≥ 0, not all 0) and the temperature.
    pub fn validate(&self) -> Result<()> {
        for (name, w) in self.weights() {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(LossError::Config {
                    field: "alpha",
                    message: format!("alpha_{name} must be finite and >= 0, found {w}"),
                });
            }
        }
        if self.weights().iter().all(|(_, w)| *w == 0.0) {
            return Err(LossError::Config {
                field: "alpha",
                message: "every weight is 0; nothing would be trained".into(),
            });
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(LossError::Config {
                field: "temperature",
                message: format!("must be positive, found {}", self.temperature),
            });
        }
        Ok(())
    }

    /// Builds the mix with its learnt projections (W_h for hidden states, W_e for embeddings) where needed.
    pub fn init(&self, d_student: usize, d_teacher: usize, device: &Device) -> Result<LossMix> {
        self.validate()?;
        let projected = |on: bool, stream: u64| {
            on.then(|| {
                ProjectedMseConfig::new(d_student, d_teacher)
                    .with_projection(self.projection)
                    .with_seed(self.seed ^ stream)
                    .init(device)
            })
        };
        Ok(LossMix {
            hidden: projected(self.alpha_hidden > 0.0, 0x57_4B),
            embedding: projected(self.alpha_emb > 0.0, 0x57_45),
            config: self.clone(),
        })
    }
}

/// The loss mix, holding the learnt projections W_h and W_e (trained with the student).
#[derive(Module, Debug)]
pub struct LossMix {
    /// Hidden-state MSE with W_h (shared by every mapped layer, as in TinyBERT).
    pub hidden: Option<ProjectedMse>,
    /// Embedding MSE with W_e.
    pub embedding: Option<ProjectedMse>,
    /// The weights.
    #[module(skip)]
    pub config: LossMixConfig,
}

/// Output logits of a prediction head.
#[derive(Clone, Debug)]
pub enum Logits {
    /// Sequence classification: `[batch_size, num_classes]`.
    PerSequence(Tensor<2>),
    /// Token prediction (MLM): `[batch_size, seq_length, vocab_size]`.
    PerToken(Tensor<3>),
}

/// What one distillation step feeds the mix.
#[derive(Clone, Debug)]
pub struct DistillInputs<'a> {
    /// The student's encoder output.
    pub student: &'a BertOutput,
    /// The teacher's encoder output (computed without gradients).
    pub teacher: &'a BertOutput,
    /// The student's prediction logits, for ce, mlm, label and pred.
    pub student_logits: Option<Logits>,
    /// The teacher's prediction logits, for ce and pred.
    pub teacher_logits: Option<Logits>,
    /// MLM labels, `[batch_size, seq_length]`, [`IGNORE_INDEX`] where a token is not masked. With per-token
    /// logits, `ce` and `pred` are restricted to the masked positions, as DistilBERT does.
    pub mlm_labels: Option<Tensor<2, Int>>,
    /// Class labels, `[batch_size]`.
    pub class_labels: Option<Tensor<1, Int>>,
    /// `[batch_size, seq_length]`, 1 for real tokens.
    pub attention_mask: Tensor<2, Int>,
    /// Which teacher layer each student layer learns from (att, hidden).
    pub layer_map: &'a LayerMap,
}

/// Every named term (None when its weight is 0) and the weighted total.
#[derive(Clone, Debug)]
pub struct LossTerms {
    /// Hinton soft-target KL · T².
    pub ce: Option<Tensor<1>>,
    /// MLM cross-entropy.
    pub mlm: Option<Tensor<1>>,
    /// Classification cross-entropy.
    pub label: Option<Tensor<1>>,
    /// Cosine embedding loss.
    pub cos: Option<Tensor<1>>,
    /// Embedding MSE.
    pub emb: Option<Tensor<1>>,
    /// Attention MSE, summed over mapped layers.
    pub att: Option<Tensor<1>>,
    /// Hidden-state MSE, summed over mapped layers.
    pub hidden: Option<Tensor<1>>,
    /// Prediction-layer soft cross-entropy.
    pub pred: Option<Tensor<1>>,
    /// Σ alpha · term.
    pub total: Tensor<1>,
}

impl LossTerms {
    /// Only the hard-label classification cross-entropy (plain fine-tuning), which is also the total.
    pub fn label_only(loss: Tensor<1>) -> Self {
        Self {
            ce: None,
            mlm: None,
            label: Some(loss.clone()),
            cos: None,
            emb: None,
            att: None,
            hidden: None,
            pred: None,
            total: loss,
        }
    }

    /// Only the MLM cross-entropy (fitting an MLM head), which is also the total.
    pub fn mlm_only(loss: Tensor<1>) -> Self {
        Self {
            mlm: Some(loss.clone()),
            label: None,
            ..Self::label_only(loss)
        }
    }

    /// The terms that were computed, by name.
    pub fn named(&self) -> Vec<(&'static str, Tensor<1>)> {
        [
            ("ce", &self.ce),
            ("mlm", &self.mlm),
            ("label", &self.label),
            ("cos", &self.cos),
            ("emb", &self.emb),
            ("att", &self.att),
            ("hidden", &self.hidden),
            ("pred", &self.pred),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.clone().map(|t| (n, t)))
        .collect()
    }

    /// The values of every computed term and the total, read back from the device. Fails with the name of the
    /// first term that is NaN or infinite.
    pub fn values(&self) -> Result<Vec<(&'static str, f32)>> {
        let mut out = Vec::new();
        for (name, t) in self
            .named()
            .into_iter()
            .chain([("total", self.total.clone())])
        {
            let v = t.into_scalar::<f32>();
            if !v.is_finite() {
                return Err(LossError::NonFinite {
                    term: name,
                    value: v,
                });
            }
            out.push((name, v));
        }
        Ok(out)
    }
}

fn masked_positions(labels: &Tensor<2, Int>) -> Tensor<2, Int> {
    labels.clone().not_equal_elem(IGNORE_INDEX).int()
}

impl LossMix {
    /// Computes every term with a non-zero weight and the weighted total.
    pub fn forward(&self, inputs: DistillInputs<'_>) -> Result<LossTerms> {
        let c = &self.config;
        let DistillInputs {
            student,
            teacher,
            student_logits,
            teacher_logits,
            mlm_labels,
            class_labels,
            attention_mask,
            layer_map,
        } = inputs;
        layer_map.check(student.hidden_states.len(), teacher.hidden_states.len())?;
        let mask = c.mask_padding.then(|| attention_mask.clone());
        let need_logits = |term| -> Result<(Logits, Logits)> {
            match (student_logits.clone(), teacher_logits.clone()) {
                (Some(s), Some(t)) => Ok((s, t)),
                _ => Err(LossError::MissingInput {
                    term,
                    needs: "student and teacher logits",
                }),
            }
        };
        let soft = |term: &'static str,
                    per_row: &dyn Fn(Tensor<2>, Tensor<2>) -> Result<Tensor<1>>|
         -> Result<Tensor<1>> {
            match need_logits(term)? {
                (Logits::PerSequence(s), Logits::PerSequence(t)) => Ok(per_row(s, t)?.mean()),
                (Logits::PerToken(s), Logits::PerToken(t)) => {
                    let positions = match &mlm_labels {
                        Some(labels) => masked_positions(labels),
                        None => attention_mask.clone(),
                    };
                    crate::soft_target::masked_rows(term_op(term), s, t, positions, per_row)
                }
                _ => Err(LossError::Shape {
                    op: term_op(term),
                    message: "student and teacher logits differ in kind".into(),
                }),
            }
        };

        let ce = (c.alpha_ce > 0.0)
            .then(|| {
                let loss = SoftTargetLoss::new(c.temperature)?;
                soft("ce", &|s, t| loss.forward_no_reduction(s, t))
            })
            .transpose()?;
        let pred = (c.alpha_pred > 0.0)
            .then(|| {
                let loss = SoftCrossEntropyLoss::new(c.temperature)?;
                soft("pred", &|s, t| loss.forward_no_reduction(s, t))
            })
            .transpose()?;
        let mlm = (c.alpha_mlm > 0.0)
            .then(|| match (&student_logits, &mlm_labels) {
                (Some(Logits::PerToken(s)), Some(labels)) => {
                    mlm_cross_entropy(s.clone(), labels.clone())
                }
                _ => Err(LossError::MissingInput {
                    term: "mlm",
                    needs: "per-token student logits and mlm_labels",
                }),
            })
            .transpose()?;
        let label = (c.alpha_label > 0.0)
            .then(|| match (&student_logits, &class_labels) {
                (Some(Logits::PerSequence(s)), Some(labels)) => {
                    classification_cross_entropy(s.clone(), labels.clone())
                }
                _ => Err(LossError::MissingInput {
                    term: "label",
                    needs: "per-sequence student logits and class_labels",
                }),
            })
            .transpose()?;
        let cos = (c.alpha_cos > 0.0)
            .then(|| {
                let (s, t) = (student.last_hidden_state(), teacher.last_hidden_state());
                let m = mask.clone().unwrap_or_else(|| attention_mask.ones_like());
                cosine_embedding_loss(s, t, m)
            })
            .transpose()?;
        let projected = |loss: &ProjectedMse, s: Tensor<3>, t: Tensor<3>| match &mask {
            Some(m) => loss.forward_masked(s, t, m.clone()),
            None => loss.forward(s, t),
        };
        let emb = match (&self.embedding, c.alpha_emb > 0.0) {
            (Some(loss), true) => Some(projected(
                loss,
                student.embedding_output.clone(),
                teacher.embedding_output.clone(),
            )?),
            _ => None,
        };
        let hidden = match (&self.hidden, c.alpha_hidden > 0.0) {
            (Some(loss), true) => {
                let mut sum: Option<Tensor<1>> = None;
                for &(s, t) in &layer_map.pairs {
                    let term = projected(
                        loss,
                        student.hidden_states[s].clone(),
                        teacher.hidden_states[t].clone(),
                    )?;
                    sum = Some(sum.map_or(term.clone(), |acc| acc + term));
                }
                sum
            }
            _ => None,
        };
        let att = (c.alpha_att > 0.0)
            .then(|| -> Result<Tensor<1>> {
                let pick = |o: &BertOutput, l: usize| match c.attention_target {
                    AttentionTarget::Probs => o.attention_probs[l].clone(),
                    AttentionTarget::Scores => o.attention_scores[l].clone(),
                };
                let mut sum: Option<Tensor<1>> = None;
                for &(s, t) in &layer_map.pairs {
                    let term = attention_mse(
                        pick(student, s),
                        pick(teacher, t),
                        c.attention_target,
                        mask.clone(),
                    )?;
                    sum = Some(sum.map_or(term.clone(), |acc| acc + term));
                }
                Ok(sum.expect("a layer map has at least one pair"))
            })
            .transpose()?;

        with_total(c, [ce, mlm, label, cos, emb, att, hidden, pred])
    }
}

impl LossMix {
    /// The logit terms alone (ce, pred, label), for a mix whose
    /// [`needs_teacher_states`](LossMixConfig::needs_teacher_states) is false: the same terms and total as
    /// [`LossMix::forward`] gives with per-sequence logits, without the encoders' outputs.
    ///
    /// # Shapes
    /// - student_logits, teacher_logits: `[batch_size, num_labels]`
    /// - class_labels: `[batch_size]`
    pub fn forward_logits(
        &self,
        student_logits: Tensor<2>,
        teacher_logits: Tensor<2>,
        class_labels: Tensor<1, Int>,
    ) -> Result<LossTerms> {
        let c = &self.config;
        if c.needs_teacher_states() {
            return Err(LossError::MissingInput {
                term: "cos/emb/att/hidden/mlm",
                needs: "the encoders' outputs (LossMix::forward)",
            });
        }
        let ce = (c.alpha_ce > 0.0)
            .then(|| {
                SoftTargetLoss::new(c.temperature)?
                    .forward_no_reduction(student_logits.clone(), teacher_logits.clone())
                    .map(Tensor::mean)
            })
            .transpose()?;
        let pred = (c.alpha_pred > 0.0)
            .then(|| {
                SoftCrossEntropyLoss::new(c.temperature)?
                    .forward_no_reduction(student_logits.clone(), teacher_logits.clone())
                    .map(Tensor::mean)
            })
            .transpose()?;
        let label = (c.alpha_label > 0.0)
            .then(|| classification_cross_entropy(student_logits.clone(), class_labels))
            .transpose()?;
        with_total(c, [ce, None, label, None, None, None, None, pred])
    }
}

/// The named terms (in the order of `LossMixConfig::weights`: ce, mlm, label, cos, emb, att, hidden, pred) and
/// their weighted sum, added in that order.
fn with_total(c: &LossMixConfig, terms: [Option<Tensor<1>>; 8]) -> Result<LossTerms> {
    let total = terms
        .iter()
        .zip(c.weights())
        .filter_map(|(t, (_, w))| t.as_ref().map(|t| t.clone().mul_scalar(w)))
        .reduce(|a, b| a + b)
        .ok_or(LossError::Config {
            field: "alpha",
            message: "every weight is 0; nothing would be trained".into(),
        })?;
    let [ce, mlm, label, cos, emb, att, hidden, pred] = terms;
    Ok(LossTerms {
        ce,
        mlm,
        label,
        cos,
        emb,
        att,
        hidden,
        pred,
        total,
    })
}

fn term_op(term: &'static str) -> &'static str {
    match term {
        "ce" => "SoftTargetLoss",
        _ => "SoftCrossEntropyLoss",
    }
}
