//! `kd-losses` will own the distillation losses of DistilBERT and TinyBERT: the Hinton soft-target loss, MLM
//! cross-entropy, cosine embedding loss, hidden-state and embedding MSE through learnt projections, attention
//! MSE, the weighted loss mix, and layer maps. (Issue 3; empty until then.)
//!
//! Architecture invariant: `kd-losses` depends on no other crate of the workspace; it works on tensors and
//! named encoder outputs only.
#![warn(missing_docs)]
