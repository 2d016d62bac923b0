//! `pipeline` runs the compression stages end to end: fetching the teacher and data by package name, reading
//! labelled data, fine-tuning the teacher, building and distilling the student (TinyBERT or DistilBERT), and
//! evaluating both into `report.json` / `report.md`; and the Hessian sensitivity, quantization and
//! quantization-aware fine-tuning of a saved classifier.
//!
//! The modules are rooms by stage, private to the crate; this file re-exports one entry point per command
//! with its options and its report, which is all a library user needs:
//!
//! | command | entry point | options | report |
//! |---|---|---|---|
//! | `fetch` | [`fetch_teacher`] | [`cache_dir`] | the directory |
//! | `distill` | [`distill`], [`general_only`] | [`DistillConfig`], [`RunOptions`] | [`Report`], [`GeneralReport`] |
//! | `ablate` | [`ablate`] | [`DistillConfig`], [`Method`] | [`AblationReport`] |
//! | `fit-mlm` | [`fit_mlm`] | [`DistillConfig`] (its `general`), [`RunOptions`] | [`MlmFitReport`] |
//! | `eval` | [`evaluate_dir`], [`evaluate_saved`] | [`Columns`], [`EvalSplit`], [`Engine`] | [`EvalResult`] |
//! | `predict` | [`Predictor::predict`] | [`Engine`] | [`Prediction`] |
//! | `sensitivity` | [`measure_sensitivity`] | [`SensitivityOptions`], [`MeasureControl`] | `hessian::SensitivityReport` |
//! | `quantize` | [`quantize`] | [`QuantizeOptions`], [`QatConfig`] | [`QuantizeReport`] |
//! | `prune-vocab` | [`prune_vocab`] | [`PruneOptions`] | [`PruneReport`] |
//! | `compress` | [`compress_all`] | [`CompressConfig`], [`RunOptions`] | [`CompressReport`] |
//! | `export` | [`export_onnx`] | the model and output directories | [`ExportReport`] |
//! | `suite` | [`run_suite`] | [`DistillConfig`], [`SuiteOptions`], [`Provenance`] | [`SuiteReport`] |
//!
//! Inside, data flows one way: `error`, `fetch`, `checkpoint` → `data` → `train` → `config` → `classifier` →
//! `predict` → `eval` → `distill`, `compress` → `suite` (and `fuzz`, which exercises the readers). Stage modules never import an orchestrator (`distill::run`, `distill::ablate`), and
//! `cargo xtask check-layout` fails on any import cycle.
//!
//! Architecture invariant: `pipeline` is the only crate that depends on all the others; none of them depends on
//! it, and it never names a backend.
#![warn(missing_docs)]

mod checkpoint;
mod classifier;
mod compress;
mod config;
mod data;
mod distill;
mod error;
mod eval;
mod export;
mod export_check;
mod fetch;
mod figures;
mod fuzz;
mod predict;
mod record;
mod suite;
mod train;

pub use classifier::{
    hf_files, write_hf_files, ClassifierMeta, Pooling, RecordedSplit, SequenceClassifier,
    CLASSIFIER_FILE, MEAN_MODELING_FILE, MEAN_MODEL_TYPE,
};
pub use compress::chain::{
    compress_all, compress_markdown, compress_records_markdown, CompressConfig, CompressReport,
    CompressRow,
};
pub use compress::prune::{prune_vocab, PruneOptions, PruneReport};
pub use compress::qat::QatConfig;
pub use compress::quantize::{quantize, QuantizeOptions};
pub use compress::report::{quantize_markdown, quantize_records_markdown, QuantizeReport};
pub use compress::sensitivity::{
    measure_sensitivity, sensitivity_batches_path, sensitivity_partial_path, MeasureControl,
    SavedBatch, SensitivityOptions,
};
pub use config::general::{GeneralConfig, NarrowStudent, StudentInit};
pub use config::{DistillConfig, LossTerm, Method, SplitConfig, Stage};
pub use data::augment::{load_augmented, AugmentConfig};
pub use data::labelled::{stream_texts, Columns, Dataset, Example, Splits, BUILT_IN};
pub use data::masking::MaskingConfig;
pub use data::tasks::load_dataset;
pub use distill::ablate::{
    ablate, ablation_markdown, ablation_records_markdown, AblationReport, AblationRow,
};
pub use distill::general::GeneralReport;
pub use distill::mlm_fit::{fit_mlm, mlm_fit_markdown, CurvePoint, MlmFitReport};
pub use distill::report::{distill_markdown, distill_records_markdown, ModelReport, Report};
pub use distill::run::{distill, general_only};
pub use error::{PipelineError, Result};
pub use eval::{evaluate_dir, evaluate_saved, split_examples, EvalResult, EvalSplit, Scores};
pub use export::{export_onnx, ExportReport, ExportedMatrix, EXPORT_REPORT, ONNX_FILE};
pub use export_check::{onnx_check_markdown, OnnxCheckRecord, OnnxEngineCheck};
pub use fetch::{cache_dir, fetch_teacher, FetchError};
pub use fuzz::{fuzz_readers, FuzzConfig, FuzzReport, READERS};
pub use predict::{Engine, Prediction, Predictor};
pub use quant::mixed::Allocator;
pub use record::{cpu_description, Provenance};
pub use suite::table::{suite_comparison_markdown, suite_markdown, SuiteReport, SuiteRow};
pub use suite::{run_suite, SuiteOptions, QUICK_EVAL, QUICK_TRAIN, SUITE_TASKS};
pub use train::{RunOptions, StageConfig, StageOutcome};

/// One training step of task distillation, as [`distill`] runs it: what `cargo xtask bench` times.
pub mod step {
    pub use crate::distill::task::{cached_logit_loss, task_distill_loss, StudentWithMix};
    pub use crate::train::{optimizer, optimizer_step};
}
