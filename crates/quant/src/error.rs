//! The error type of `quant`.

use std::path::PathBuf;

/// Everything that can go wrong while quantizing, allocating bits, running kernels or reading a quantized file.
/// Each message names the operation, the input and the sizes, and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A bit width we have no format for.
    #[error("unsupported bits {bits} for {what}; choose 2, 3, 4 or 8")]
    UnsupportedBits {
        /// The bits asked for.
        bits: u32,
        /// Where they were asked for (a tensor, a flag).
        what: String,
    },
    /// A granularity string or value that cannot be used.
    #[error("granularity `{found}`: {message}")]
    Granularity {
        /// What was given.
        found: String,
        /// What is allowed.
        message: String,
    },
    /// Sizes that do not fit together.
    #[error("{op}: {message}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// Expected and found sizes.
        message: String,
    },
    /// A weight is NaN or infinite.
    #[error("{op}: tensor `{tensor}` has a non-finite value {value} at index {index}; fix the model before quantizing")]
    NonFinite {
        /// The operation.
        op: &'static str,
        /// The tensor.
        tensor: String,
        /// Flat index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// An impossible setting of a plan or allocator.
    #[error("invalid setting `{field}`: {message}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A sensitivity report that does not cover the model.
    #[error("sensitivity report {path}: {message}")]
    Sensitivity {
        /// The report file (or `-` in memory).
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// A quantized model file that is corrupt or inconsistent.
    #[error("{path}: not a valid quantized model ({message}); re-run `cargo xtask quantize`")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error of the model crate (loading, saving).
    #[error(transparent)]
    Arch(#[from] student_arch::ArchError),
}

/// `Result` with [`QuantError`].
pub type Result<T> = std::result::Result<T, QuantError>;
