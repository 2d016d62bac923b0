//! The settings of general distillation: its corpus, masking, MLM head, stages and students.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use student_arch::{LayerSelection, StudentSpec};

use crate::data::masking::MaskingConfig;
use crate::error::{PipelineError, Result};
use crate::train::StageConfig;

/// How a same-width student starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentInit {
    /// Copy the embeddings and every other teacher layer (DistilBERT).
    Copy,
    /// Seeded random initialisation of the same shape (DistilBERT's ablation).
    Random,
}

/// The shape of a randomly initialised, narrower student (TinyBERT).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NarrowStudent {
    /// Layers. Default: 4.
    pub layers: usize,
    /// Hidden size. Default: 312.
    pub hidden_size: usize,
    /// Attention heads; must divide `hidden_size`. Default: 12.
    pub num_attention_heads: usize,
    /// Feed-forward width. Default: 1200.
    pub intermediate_size: usize,
}

impl Default for NarrowStudent {
    fn default() -> Self {
        Self {
            layers: 4,
            hidden_size: 312,
            num_attention_heads: 12,
            intermediate_size: 1200,
        }
    }
}

impl NarrowStudent {
    /// The student spec (random initialisation with `seed`, no token types, no pooler).
    pub fn spec(&self, seed: u64) -> StudentSpec {
        StudentSpec {
            layers: LayerSelection::Count(self.layers),
            hidden_size: Some(self.hidden_size),
            num_attention_heads: Some(self.num_attention_heads),
            intermediate_size: Some(self.intermediate_size),
            seed,
            ..Default::default()
        }
    }
}

/// The general-distillation stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneralConfig {
    /// A pre-trained (not fine-tuned) BERT directory; `None`: the fetched MiniLM teacher. A directory whose
    /// weights hold `cls.predictions.*` brings its own MLM head; otherwise one is fitted. Default: `None`.
    pub teacher: Option<PathBuf>,
    /// Built-in corpus names (`english`, `sotu`, `brown`) or text files / directories. Default: `["english"]`.
    pub corpus: Vec<String>,
    /// Words per passage. Default: 40.
    pub words_per_passage: usize,
    /// Use at most this many passages (a seeded sample). Default: 20000.
    pub max_passages: Option<usize>,
    /// Passages held out to report masked-token accuracy. Default: 256.
    pub held_out_passages: usize,
    /// Longest passage in tokens. Default: 64.
    pub max_length: usize,
    /// BERT's masking.
    pub masking: MaskingConfig,
    /// Fitting the MLM head on the frozen teacher. Default: 1 epoch at 1e-3.
    pub mlm_head: StageConfig,
    /// Passages used to fit the head. Default: 4000.
    pub mlm_head_passages: usize,
    /// The distillation itself. Default: 1 epoch at 1e-4.
    pub distill: StageConfig,
    /// Passages used for distillation (of `max_passages`). Default: all.
    pub distill_passages: Option<usize>,
    /// Temperature of DistilBERT's Hinton term. Default: 2.0.
    pub temperature: f64,
    /// How DistilBERT's student starts. Default: copy.
    pub distilbert_init: StudentInit,
    /// TinyBERT's student.
    pub tinybert_student: NarrowStudent,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        Self {
            teacher: None,
            corpus: vec!["english".into()],
            words_per_passage: 40,
            max_passages: Some(20_000),
            held_out_passages: 256,
            max_length: 64,
            masking: MaskingConfig::default(),
            mlm_head: StageConfig {
                epochs: 1,
                learning_rate: 1e-3,
                warmup_fraction: 0.05,
                ..Default::default()
            },
            mlm_head_passages: 4000,
            distill: StageConfig {
                epochs: 1,
                learning_rate: 1e-4,
                warmup_fraction: 0.05,
                ..Default::default()
            },
            distill_passages: None,
            temperature: 2.0,
            distilbert_init: StudentInit::Copy,
            tinybert_student: NarrowStudent::default(),
        }
    }
}

impl GeneralConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        if self.max_length < 8 {
            return Err(PipelineError::Config {
                field: "general.max_length",
                message: format!("{} is too short; use at least 8", self.max_length),
            });
        }
        let n = &self.tinybert_student;
        if n.layers == 0 || n.hidden_size == 0 || n.num_attention_heads == 0 {
            return Err(PipelineError::Config {
                field: "general.tinybert_student",
                message: "layers, hidden_size and num_attention_heads must be positive".into(),
            });
        }
        if !n.hidden_size.is_multiple_of(n.num_attention_heads) {
            return Err(PipelineError::Config {
                field: "general.tinybert_student",
                message: format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}; e.g. 312 and 12",
                    n.hidden_size, n.num_attention_heads
                ),
            });
        }
        self.masking.validate()?;
        self.mlm_head.validate("general.mlm_head")?;
        self.distill.validate("general.distill")
    }
}
