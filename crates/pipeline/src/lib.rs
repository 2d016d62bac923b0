//! `pipeline` runs the compression stages end to end: fetching the teacher and data by package name, reading
//! labelled data, fine-tuning the teacher, building and distilling the student (TinyBERT or DistilBERT), and
//! evaluating both into `report.json` / `report.md`; and the Hessian sensitivity of a saved classifier.
//!
//! Architecture invariant: `pipeline` is the only crate that depends on all the others; none of them depends on
//! it, and it never names a backend.
#![warn(missing_docs)]

pub mod ablate;
pub mod augment;
pub mod classifier;
pub mod config;
pub mod corpus;
pub mod data;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod general;
pub mod masking;
pub mod mlm_head;
pub mod qat;
pub mod quantize;
pub mod run;
pub mod sensitivity;
pub mod train;

pub use error::{PipelineError, Result};
pub use fetch::{cache_dir, fetch_teacher, FetchError};
pub use run::{distill, general_only, DistillConfig, LossTerm, Method, Report, RunOptions, Stage};
