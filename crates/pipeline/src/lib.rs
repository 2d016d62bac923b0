//! `pipeline` runs the compression stages end to end: fetching the teacher and data by package name, and (in
//! later issues) fine-tuning, distillation, sensitivity, quantization and reports.
//!
//! Architecture invariant: `pipeline` is the only crate that depends on all the others; none of them depends on
//! it, and it never names a backend.
#![warn(missing_docs)]

pub mod fetch;

pub use fetch::{cache_dir, fetch_teacher, FetchError};
