//! The classification head a classifier reads the encoder through.

use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// How a classifier reads the encoder's last hidden states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over real tokens (what all-MiniLM-L6-v2 was trained for).
    #[default]
    Mean,
    /// `BertForSequenceClassification`'s: the pooler's tanh(W·h_[CLS] + b).
    Cls,
}

impl Pooling {
    /// `"mean"` or `"cls"`, as `classifier.json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }

    /// The pooling `classifier.json` names, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mean" => Some(Pooling::Mean),
            "cls" => Some(Pooling::Cls),
            _ => None,
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = PipelineError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| PipelineError::Config {
            field: "head",
            message: format!("{s:?}: expected mean or cls"),
        })
    }
}
