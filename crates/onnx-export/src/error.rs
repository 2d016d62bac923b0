//! Errors of the ONNX writer.

use thiserror::Error;

/// What can go wrong while building an ONNX graph from a model's tensors.
#[derive(Debug, Error)]
pub enum ExportError {
    /// A tensor the graph needs is not among the model's tensors.
    #[error("{op}: the model has no tensor `{name}`; {hint}")]
    Missing {
        /// The step that needed it.
        op: &'static str,
        /// Its Hugging Face name.
        name: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// A tensor has another shape than the config says.
    #[error("{op}: `{name}` has shape {found:?}, the config.json says {expected:?}")]
    Shape {
        /// The step that read it.
        op: &'static str,
        /// Its Hugging Face name.
        name: String,
        /// What the config implies.
        expected: Vec<usize>,
        /// What the model holds.
        found: Vec<usize>,
    },
    /// The model uses something that the exported graph cannot express.
    #[error("{what}: {message}")]
    Unsupported {
        /// The field or tensor.
        what: String,
        /// Why, and what would work.
        message: String,
    },
}

/// The writer's result.
pub type Result<T> = std::result::Result<T, ExportError>;
