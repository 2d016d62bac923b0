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

student_arch::config_defaults! {
    /// The shape of a randomly initialised, narrower student (TinyBERT).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct NarrowStudent {
        /// Layers.
        pub layers: usize = 4,
        /// Hidden size.
        pub hidden_size: usize = 312,
        /// Attention heads; must divide `hidden_size`.
        pub num_attention_heads: usize = 12,
        /// Feed-forward width.
        pub intermediate_size: usize = 1200,
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

student_arch::config_defaults! {
    /// The general-distillation stage.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct GeneralConfig {
        /// A pre-trained (not fine-tuned) BERT directory; `None`: the fetched MiniLM teacher. A directory whose
        /// weights hold `cls.predictions.*` brings its own MLM head; otherwise one is fitted.
        pub teacher: Option<PathBuf> = None,
        /// Built-in corpus names (`english`, `sotu`, `brown`) or text files / directories.
        pub corpus: Vec<String> = vec!["english".into()],
        /// Words per passage.
        pub words_per_passage: usize = 40,
        /// Use at most this many passages (a seeded sample).
        pub max_passages: Option<usize> = Some(20_000),
        /// Passages of the seeded sample to pass over before taking `max_passages`: with the same split seed,
        /// a run with `max_passages` ≤ this never sees a passage of this one (e.g. an MLM fit kept apart from
        /// the text that general distillation trains and is evaluated on).
        pub skip_passages: usize = 0,
        /// Passages held out to report masked-token accuracy.
        pub held_out_passages: usize = 256,
        /// Longest passage in tokens.
        pub max_length: usize = 64,
        /// BERT's masking.
        pub masking: MaskingConfig = MaskingConfig::default(),
        /// Fitting the MLM head on the frozen teacher.
        pub mlm_head: StageConfig = StageConfig {
            epochs: 1,
            learning_rate: 1e-3,
            warmup_fraction: 0.05,
            ..Default::default()
        },
        /// Passages used to fit the head (and the encoder's last layers with it).
        pub mlm_head_passages: usize = 4000,
        /// After the head's fit on the frozen teacher, train the encoder's last N layers with the head
        /// (`mlm_encoder`); 0 keeps the teacher frozen. MiniLM's layers were never trained to predict tokens,
        /// so a head on the frozen teacher stays near 11% masked-token accuracy.
        pub mlm_unfreeze_last: usize = 0,
        /// The second fit: the head with the encoder's last `mlm_unfreeze_last` layers (embeddings stay frozen).
        pub mlm_encoder: StageConfig = StageConfig {
            epochs: 1,
            learning_rate: 1e-4,
            warmup_fraction: 0.05,
            ..Default::default()
        },
        /// The distillation itself.
        pub distill: StageConfig = StageConfig {
            epochs: 1,
            learning_rate: 1e-4,
            warmup_fraction: 0.05,
            ..Default::default()
        },
        /// Passages used for distillation (of `max_passages`).
        pub distill_passages: Option<usize> = None,
        /// Temperature of DistilBERT's Hinton term.
        pub temperature: f64 = 2.0,
        /// How DistilBERT's student starts.
        pub distilbert_init: StudentInit = StudentInit::Copy,
        /// TinyBERT's student.
        pub tinybert_student: NarrowStudent = NarrowStudent::default(),
    }
}

impl NarrowStudent {
    /// Checks the shape; `field` names it in errors. Sizes are bounded as `config.json`'s are
    /// (`student_arch::config`), so an impossible student is refused before a teacher is fine-tuned.
    pub fn validate(&self, field: &'static str) -> Result<()> {
        let bad = |message: String| Err(PipelineError::Config { field, message });
        if self.layers == 0
            || self.hidden_size == 0
            || self.num_attention_heads == 0
            || self.intermediate_size == 0
        {
            return bad(
                "layers, hidden_size, num_attention_heads and intermediate_size must be positive"
                    .into(),
            );
        }
        use student_arch::config::{MAX_HEADS, MAX_LAYERS, MAX_WIDTH};
        for (name, value, max) in [
            ("layers", self.layers, MAX_LAYERS),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("intermediate_size", self.intermediate_size, 4 * MAX_WIDTH),
        ] {
            if value > max {
                return bad(format!("{name} {value} is beyond any BERT (at most {max})"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}; e.g. 312 and 12",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
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
        self.tinybert_student.validate("general.tinybert_student")?;
        self.masking.validate()?;
        self.mlm_head.validate("general.mlm_head")?;
        self.mlm_encoder.validate("general.mlm_encoder")?;
        self.distill.validate("general.distill")
    }
}
