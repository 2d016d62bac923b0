//! The crate's error type.

/// Everything that can go wrong while estimating curvature.
#[derive(Debug, thiserror::Error)]
pub enum HessianError {
    /// A block names a parameter the model does not have.
    #[error(
        "block {block:?}: the model has no parameter {path:?}; parameters look like {examples}"
    )]
    UnknownParameter {
        /// The block.
        block: String,
        /// The missing path.
        path: String,
        /// A few of the model's parameter paths.
        examples: String,
    },
    /// A block name that does not exist (e.g. a layer index past the last layer).
    #[error("unknown block {name:?}: {message}")]
    UnknownBlock {
        /// The name asked for.
        name: String,
        /// Which names exist.
        message: String,
    },
    /// A slice of a parameter that does not fit its shape.
    #[error("block {block:?}: {message}")]
    BadSlice {
        /// The block.
        block: String,
        /// What does not fit.
        message: String,
    },
    /// A vector of the wrong length for its block.
    #[error("{op}: expected a vector of {expected} values for block {block:?}, found {found}")]
    Length {
        /// The operation.
        op: &'static str,
        /// The block.
        block: String,
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// A zero (or non-finite) vector where a direction is needed.
    #[error("{op}: the vector is zero or not finite (norm {norm}); power iteration needs a non-zero start vector")]
    ZeroVector {
        /// The operation.
        op: &'static str,
        /// Its norm.
        norm: f64,
    },
    /// The loss or a gradient is NaN or infinite.
    #[error("{what} is not finite ({value}) in block {block:?}; check the model and batch, or lower eps_rel")]
    NonFinite {
        /// What was computed.
        what: &'static str,
        /// The block.
        block: String,
        /// The value.
        value: f64,
    },
    /// A parameter that received no gradient: the loss does not depend on it.
    #[error("block {block:?}: parameter {path:?} got no gradient; the loss does not depend on it (is it frozen or on a plain device?)")]
    NoGradient {
        /// The block.
        block: String,
        /// The parameter.
        path: String,
    },
    /// A configuration value out of range.
    #[error("{field}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A batch that cannot give a loss (no labels, empty).
    #[error("batch {index}: {message}")]
    Batch {
        /// The batch's index.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A loss closure's own error.
    #[error("loss: {0}")]
    Loss(String),
    /// Writing a report (the message names the file).
    #[error(transparent)]
    Write(#[from] student_arch::ArchError),
    /// Drawing a report's chart.
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, HessianError>;
