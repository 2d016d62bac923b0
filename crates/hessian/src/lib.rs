//! `hessian` owns curvature estimates for Q-BERT's mixed precision: Hessian-vector products of a loss with
//! respect to one block of parameters at a time ([`hvp`]), the top eigenvalues of a block's Hessian by power
//! iteration with deflation and Hutchinson's trace ([`power`]), blocks per encoder layer, weight matrix or
//! attention head ([`block`]), and the sensitivity report over several batches ranked by mean + std
//! ([`mod@sensitivity`]).
//!
//! Burn 0.22 has no double backward, so the general product is a central difference of gradients
//! ([`FiniteDifferenceHvp`]); [`SoftmaxHeadHvp`] is an exact product for a classifier head on fixed features.
//!
//! Architecture invariant: `hessian` depends on `student-arch` only, never on `quant` or `pipeline`. It knows
//! nothing about data sets: callers give batches and a loss closure.
#![warn(missing_docs)]

pub mod access;
pub mod block;
pub mod error;
pub mod hvp;
pub mod params;
pub mod power;
pub mod sensitivity;

pub use access::{block_gradient, perturb, read_block};
pub use block::{bert_blocks, select, Block, BlockGranularity, BlockParam, Part, ResolvedBlock};
pub use error::{HessianError, Result};
pub use hvp::{FiniteDifferenceHvp, HessianVectorProduct, SoftmaxHeadHvp};
pub use params::{parameters, ParamInfo};
pub use power::{
    hutchinson_trace, power_iteration_from, top_eigenpairs, Eigenpair, PowerIterationConfig,
    TraceEstimate,
};
pub use sensitivity::{
    sensitivity, BlockSensitivity, Ranking, SensitivityConfig, SensitivityReport,
};
