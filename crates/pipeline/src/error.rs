//! The error type of `pipeline`.

use std::path::PathBuf;

use crate::fetch::FetchError;

/// Everything that can stop a pipeline run. Each message names the input and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A data file is empty, lacks a column, holds an unknown label or a non-UTF-8 line.
    #[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Data {
        /// The file.
        path: PathBuf,
        /// The 1-based line, where known.
        line: Option<u64>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A run config holds an impossible value.
    #[error("invalid config `{field}`: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A loss became NaN or infinite.
    #[error("stage {stage}, step {step}: loss term `{term}` is {value}; the last good checkpoint is kept in {checkpoint}; lower the learning rate and resume with --resume")]
    NonFinite {
        /// The stage.
        stage: String,
        /// The optimizer step.
        step: usize,
        /// The term.
        term: String,
        /// Its value.
        value: f32,
        /// Where the last good checkpoint is.
        checkpoint: String,
    },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// From `student-arch`.
    #[error(transparent)]
    Arch(#[from] student_arch::ArchError),
    /// From `kd-losses`.
    #[error(transparent)]
    Loss(#[from] kd_losses::LossError),
    /// From the curvature estimates.
    #[error(transparent)]
    Hessian(#[from] hessian::HessianError),
    /// From `quant`.
    #[error(transparent)]
    Quant(#[from] quant::QuantError),
    /// From fetching.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// From the ONNX writer.
    #[error(transparent)]
    Export(#[from] onnx_export::ExportError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> PipelineError {
    let path = path.into();
    move |source| PipelineError::Io { op, path, source }
}
