//! `kd-losses` owns the distillation losses of DistilBERT and TinyBERT, each separate, named and shaped:
//!
//! - [`SoftTargetLoss`]: Hinton's KL at temperature T, scaled by T² (DistilBERT), and [`SoftCrossEntropyLoss`]
//!   (TinyBERT's prediction layer), both optionally restricted to masked positions;
//! - [`mlm_cross_entropy`] over masked positions, [`classification_cross_entropy`];
//! - [`cosine_embedding_loss`] over non-padding tokens;
//! - [`ProjectedMse`]: hidden-state MSE through a learnt W_h and embedding MSE through a learnt W_e;
//! - [`attention_mse`] on probabilities or pre-softmax scores (TinyBERT's zeroing of masked scores);
//! - [`LossMix`]: named weights, a term skipped when its weight is 0, and [`LossTerms`] with every term and
//!   the weighted total;
//! - [`LayerMap`]: uniform, every other, last-k and explicit student → teacher maps.
//!
//! Architecture invariant: `kd-losses` depends on `student-arch` only (for [`student_arch::BertOutput`]),
//! never on `hessian`, `quant` or `pipeline`, and never names a backend.
#![warn(missing_docs)]

pub mod cosine;
pub mod error;
pub mod hard_label;
pub mod layer_map;
pub mod mix;
pub mod mse;
pub mod soft_target;

pub use cosine::{cosine_distance, cosine_embedding_loss};
pub use error::{LossError, Result};
pub use hard_label::{classification_cross_entropy, mlm_cross_entropy, IGNORE_INDEX};
pub use layer_map::LayerMap;
pub use mix::{DistillInputs, Logits, LossMix, LossMixConfig, LossTerms};
pub use mse::{
    attention_mse, attention_mse_no_reduction, zero_masked_scores, AttentionTarget, ProjectedMse,
    ProjectedMseConfig, Projection,
};
pub use soft_target::{SoftCrossEntropyLoss, SoftTargetLoss};
