//! The error type of `student-arch`.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, loading, saving or running a BERT encoder.
///
/// Each message says what was expected, what was found, and where, so a user can fix the input.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done: "reading", "writing", "renaming".
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A required file of a model directory is missing.
    #[error("{path} is missing: {hint}")]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// `config.json` is not valid JSON or has the wrong types.
    #[error("{path}: not a valid BERT config.json: {message}")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A config field holds an impossible value.
    #[error("invalid config field `{field}`: {message}")]
    InvalidConfig {
        /// The field of `config.json` (or of a student spec).
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A safetensors file is truncated, corrupt or not safetensors at all.
    #[error("{path}: not a readable safetensors file ({message}); re-fetch or re-export it")]
    CorruptWeights {
        /// The weights file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A tensor has a dtype we cannot load.
    #[error("{path}: tensor `{key}` has dtype {dtype}; expected F32, F16 or BF16")]
    UnsupportedDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// An output path that a command must not write into.
    #[error("output {path}: {message}")]
    Output {
        /// The directory or file.
        path: PathBuf,
        /// Why, and what to do instead.
        message: String,
    },
    /// Tensors are missing, misshapen or unexpected. Each entry names a key; shapes are given where relevant.
    #[error("{path}: weights do not match the config: {}", summarise(problems))]
    WeightMismatch {
        /// The weights file.
        path: PathBuf,
        /// One line per problem: `missing encoder.layer.0.attention.self.query.weight [384, 384]`, ...
        problems: Vec<String>,
    },
    /// A tokenizer file could not be loaded or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file (tokenizer.json or vocab.txt).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Inputs have the wrong shape or content.
    #[error("bad input to {op}: {message}")]
    BadInput {
        /// The operation that rejected the input.
        op: &'static str,
        /// What was expected and what was found.
        message: String,
    },
    /// A device name is unknown or its backend was not compiled in.
    #[error("device `{name}` is not available: {message}")]
    Device {
        /// The name asked for.
        name: String,
        /// The devices that are compiled in, or the feature to enable.
        message: String,
    },
    /// A tensor could not be read back from the device.
    #[error("reading tensor data for {what}: {message}")]
    Data {
        /// Which tensor.
        what: String,
        /// The backend's message.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ArchError> = std::result::Result<T, E>;

impl ArchError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArchError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The first problems of a list and how many more there are, so that a message stays readable.
fn summarise(problems: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        s += &format!("; and {} more", problems.len() - SHOWN);
    }
    s
}
