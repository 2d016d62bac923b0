//! `hessian` will own Hessian-vector products, per-block top eigenvalues by power iteration, Hutchinson traces
//! and the Q-BERT sensitivity report. (Issue 5; empty until then.)
//!
//! Architecture invariant: `hessian` depends on `student-arch` only, never on `quant` or `pipeline`.
#![warn(missing_docs)]
